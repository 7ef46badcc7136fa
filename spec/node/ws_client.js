#!/usr/bin/env node
// An independent WebSocket client (the npm package `ws`) for an echo server:
//
//   node spec/node/ws_client.js PORT [PATH]
//
// Connects to ws://127.0.0.1:PORT/PATH, sends text and binary messages of
// several sizes (around the 7-bit, 16-bit and 64-bit length encodings), a
// fragmented text message, checks that each echo comes back byte for byte
// with the same type, sends a ping and checks the pong's payload, then
// closes with 1000. Prints one JSON object on stdout:
//
//   {"ok": true|false, "close_code": N|null, "close_reason": "...",
//    "checks": [{"name": ..., "ok": ...}, ...], "error": "..."|null}
//
// and exits 0 when ok, 1 otherwise. Every wait is bounded by
// RINGLET_TEST_TIMEOUT seconds (default 10).
"use strict";

const crypto = require("crypto");
const WebSocket = require("ws");

const port = Number(process.argv[2]);
let path = process.argv[3] || "/";
if (!path.startsWith("/")) path = "/" + path;
const TIMEOUT = 1000 * (Number(process.env.RINGLET_TEST_TIMEOUT) || 10);

const report = {
  ok: false, close_code: null, close_reason: null, checks: [], error: null,
};

function finish(exitCode) {
  process.stdout.write(JSON.stringify(report) + "\n", () =>
    process.exit(exitCode));
}

if (!Number.isInteger(port) || port <= 0) {
  report.error = "usage: ws_client.js PORT [PATH]";
  finish(2);
  return;
}

// Bytes 0..255 repeated, so every byte value crosses the wire (binary), and
// a mix of 1- to 4-byte UTF-8 sequences (text).
function binaryOf(size) {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = i % 256;
  return b;
}
function textOf(size) {
  const chars = Array.from("ringlet é€ 😀 \u0000\t\n");
  const out = [];
  let bytes = 0;
  for (let i = 0; ; i++) {
    const c = chars[i % chars.length];
    const n = Buffer.byteLength(c);
    if (bytes + n > size) break;
    out.push(c);
    bytes += n;
  }
  return out.join("") + "a".repeat(size - bytes);
}

// Events arrive in order on one connection; a queue of waiters takes them.
const inbox = [];
const waiters = [];
function deliver(event) {
  const w = waiters.shift();
  if (w) w.resolve(event);
  else inbox.push(event);
}
function next(what) {
  if (inbox.length > 0) return Promise.resolve(inbox.shift());
  return new Promise((resolve, reject) => {
    const w = { resolve: (e) => { clearTimeout(w.timer); resolve(e); } };
    w.timer = setTimeout(() => {
      waiters.splice(waiters.indexOf(w), 1);
      reject(new Error("timed out waiting for " + what));
    }, TIMEOUT);
    waiters.push(w);
  });
}

function check(name, ok, detail) {
  const c = { name, ok: Boolean(ok) };
  if (!ok && detail !== undefined) c.detail = detail;
  report.checks.push(c);
  return c.ok;
}

function describeMismatch(expected, got) {
  if (expected.length !== got.length) {
    return `length ${got.length}, expected ${expected.length}`;
  }
  for (let i = 0; i < expected.length; i++) {
    if (expected[i] !== got[i]) return `first difference at byte ${i}`;
  }
  return "equal";
}

async function roundTrip(ws, name, payload, binary) {
  ws.send(payload, { binary });
  const ev = await next("the echo of " + name);
  if (ev.type !== "message") {
    return check(name, false, `got ${ev.type} instead of the echo`);
  }
  const want = binary ? payload : Buffer.from(payload, "utf8");
  const got = Buffer.isBuffer(ev.data) ? ev.data : Buffer.concat(ev.data);
  if (ev.isBinary !== binary) {
    return check(name, false,
      `echoed as ${ev.isBinary ? "binary" : "text"}`);
  }
  return check(name, want.equals(got), describeMismatch(want, got));
}

async function main() {
  const url = `ws://127.0.0.1:${port}${path}`;
  const ws = new WebSocket(url, { handshakeTimeout: TIMEOUT });
  ws.on("message", (data, isBinary) =>
    deliver({ type: "message", data, isBinary }));
  ws.on("pong", (data) => deliver({ type: "pong", data }));
  ws.on("close", (code, reason) =>
    deliver({ type: "close", code, reason: reason.toString() }));
  ws.on("error", (err) => deliver({ type: "error", err }));
  ws.on("unexpected-response", (req, res) => {
    deliver({ type: "error",
      err: new Error(`handshake answered ${res.statusCode}, not 101`) });
    req.destroy();
  });
  ws.on("open", () => deliver({ type: "open" }));

  const opened = await next("the handshake");
  if (opened.type !== "open") {
    throw opened.err || new Error(`got ${opened.type} before open`);
  }
  check("handshake", true);
  // ws offers permessage-deflate, as browsers do; ringlet should decline.
  check("no extension negotiated", ws.extensions === "",
    `server accepted "${ws.extensions}"`);

  const sizes = [0, 1, 125, 126, 127, 1000, 65535, 65536, 70000, 1 << 20];
  for (const size of sizes) {
    await roundTrip(ws, `text ${size} bytes`, textOf(size), false);
  }
  for (const size of sizes) {
    await roundTrip(ws, `binary ${size} bytes`, binaryOf(size), true);
  }
  // A random binary message, and one with random bytes that would not be
  // valid UTF-8 (so it must travel as binary untouched).
  await roundTrip(ws, "binary random 4096 bytes", crypto.randomBytes(4096),
    true);

  // A text message in three fragments comes back as one message.
  const parts = ["frag", "mented é", " message"];
  ws.send(parts[0], { fin: false, binary: false });
  ws.send(parts[1], { fin: false, binary: false });
  ws.send(parts[2], { fin: true, binary: false });
  const frag = await next("the echo of the fragmented message");
  const fragWant = Buffer.from(parts.join(""), "utf8");
  check("fragmented text", frag.type === "message" && !frag.isBinary &&
    fragWant.equals(frag.data), frag.type === "message"
    ? describeMismatch(fragWant, frag.data) : `got ${frag.type}`);

  const pingPayload = Buffer.from("ringlet-ping-" + Date.now());
  ws.ping(pingPayload);
  const pong = await next("the pong");
  check("pong payload", pong.type === "pong" && pingPayload.equals(pong.data),
    pong.type === "pong" ? `pong carried "${pong.data}"` : `got ${pong.type}`);

  ws.close(1000, "done");
  let ev = await next("the close");
  while (ev.type === "message" || ev.type === "pong") {
    check("nothing after the last echo", false, `unexpected ${ev.type}`);
    ev = await next("the close");
  }
  if (ev.type === "error") throw ev.err;
  report.close_code = ev.code;
  report.close_reason = ev.reason;
  check("close 1000 answered with 1000", ev.code === 1000,
    `close code ${ev.code}`);
}

const watchdog = setTimeout(() => {
  report.error = "gave up: the whole run took longer than its bound";
  finish(1);
}, 6 * TIMEOUT);

main().then(() => {
  clearTimeout(watchdog);
  report.ok = report.checks.length > 0 && report.checks.every((c) => c.ok);
  finish(report.ok ? 0 : 1);
}, (err) => {
  clearTimeout(watchdog);
  report.error = String(err && err.message ? err.message : err);
  finish(1);
});
