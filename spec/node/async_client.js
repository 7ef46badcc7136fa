#!/usr/bin/env node
// A scripted WebSocket client (the npm package `ws`) for
// spec/async_spec.lua:
//
//   node spec/node/async_client.js PORT PATH 'STEPS-JSON'
//
// Connects to ws://127.0.0.1:PORT/PATH and, once open, runs STEPS (a JSON
// array) in order:
//   {"send": "text"}              one text message
//   {"binary": "hex"}             one binary message (hex-encoded bytes)
//   {"sendn": N, "prefix": "p"}   N text messages "p1" .. "pN" at once
//   {"until": N}                  wait until N messages have arrived
//   {"wait": ms}                  pause
//   {"close": code, "reason": r}  start the closing handshake
//   {"drop": true}                drop the TCP connection (no close frame)
// then waits for the connection to close (the server's close, or the end
// of our own handshake). Every wait is bounded by RINGLET_TEST_TIMEOUT
// seconds (default 10). Prints one Lua table constructor (for
// helper.decode; every string escaped byte by byte):
//   {opened = bool, status = N|nil (a refused upgrade's HTTP status),
//    messages = {{data = s, binary = bool}, ...} (binary data as hex),
//    close_code = N|nil, close_reason = s|nil, error = s|nil}
"use strict";

const WebSocket = require("ws");

const [port, path, stepsJson] = process.argv.slice(2);
const TIMEOUT = 1000 * (Number(process.env.RINGLET_TEST_TIMEOUT) || 10);
const steps = JSON.parse(stepsJson || "[]");
const out = {
  opened: false, status: null, messages: [], close_code: null,
  close_reason: null, error: null,
};
let done = false;
const waiters = [];

function lua(v) {
  if (v === null || v === undefined) return "nil";
  if (typeof v === "boolean" || typeof v === "number") return String(v);
  if (typeof v === "string") {
    return '"' + Array.from(Buffer.from(v, "utf8"),
      (b) => "\\" + String(b).padStart(3, "0")).join("") + '"';
  }
  if (Array.isArray(v)) return "{" + v.map(lua).join(", ") + "}";
  return "{" + Object.keys(v).map((k) => `${k} = ${lua(v[k])}`).join(", ") +
    "}";
}

function finish() {
  if (done) return;
  done = true;
  process.stdout.write(lua(out) + "\n", () => process.exit(0));
}
setTimeout(() => {
  out.error = out.error || "timeout";
  finish();
}, 3 * TIMEOUT).unref();

// Resolves once fn() holds (checked on every event), or rejects at the
// bound.
function until(fn, what) {
  if (fn()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const w = { fn, resolve };
    w.timer = setTimeout(() => {
      waiters.splice(waiters.indexOf(w), 1);
      reject(new Error("timed out waiting for " + what));
    }, TIMEOUT);
    waiters.push(w);
  });
}
function poke() {
  for (const w of waiters.slice()) {
    if (w.fn()) {
      clearTimeout(w.timer);
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
  }
}

const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`,
  { handshakeTimeout: TIMEOUT });
let closed = false;
ws.on("unexpected-response", (req, res) => {
  out.status = res.statusCode;
  req.destroy();
  finish();
});
ws.on("message", (data, isBinary) => {
  out.messages.push({
    data: isBinary ? data.toString("hex") : data.toString(),
    binary: isBinary,
  });
  poke();
});
ws.on("error", (e) => { out.error = String(e.message || e); });
ws.on("close", (code, reason) => {
  closed = true;
  out.close_code = code;
  out.close_reason = reason.toString();
  poke();
  finish();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

ws.on("open", async () => {
  out.opened = true;
  try {
    for (const s of steps) {
      if (s.send !== undefined) ws.send(s.send);
      else if (s.binary !== undefined) {
        ws.send(Buffer.from(s.binary, "hex"), { binary: true });
      } else if (s.sendn !== undefined) {
        for (let i = 1; i <= s.sendn; i++) ws.send((s.prefix || "") + i);
      } else if (s.until !== undefined) {
        await until(() => out.messages.length >= s.until || closed,
          `${s.until} messages`);
      } else if (s.wait !== undefined) await sleep(s.wait);
      else if (s.close !== undefined) ws.close(s.close, s.reason || "");
      else if (s.drop) ws.terminate();
    }
    await until(() => closed, "the close");
  } catch (e) {
    out.error = String(e.message || e);
    ws.terminate();
  }
  finish();
});
