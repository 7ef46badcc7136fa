#!/usr/bin/env node
// A scripted WebSocket session with the npm package `ws` for
// spec/immutant_spec.lua: ws_script.js's steps, plus what streamed sends
// need (pausing the socket, asking the server over HTTP meanwhile, counting
// bytes, saving what arrived).
//
//   node spec/node/immutant_ws.js PORT PATH 'STEPS-JSON' [SAVE-FILE]
//
// STEPS is a JSON array run in order once the socket opens:
//   {"send": "text"}           a text message
//   {"binary": "hex"}          a binary message (hex-encoded bytes)
//   {"text_hex": "hex"}        a text message of these bytes (they may be
//                              invalid UTF-8: ws sends them as they are)
//   {"wait": ms}               pause the script
//   {"until": N}               wait until N messages have arrived
//   {"until_bytes": N}         wait until N bytes of messages have arrived
//   {"pause": true}            stop reading the socket (ws.pause())
//   {"resume": true}           read it again
//   {"fetch": "/path"}         GET http://127.0.0.1:PORT/path; the body is
//                              recorded as an event {"fetch": body}
//   {"settle": "/path"}        GET it every 100 ms until three answers in
//                              a row are the same (and not "{}"); the
//                              last is recorded as {"fetch": body}
//   {"close": code, "reason": "..."}   start the closing handshake
//   {"drop": true}             drop the TCP connection (no close frame)
// After the last step it waits for the server to close (bounded by
// RINGLET_TEST_TIMEOUT seconds, default 10). With SAVE-FILE, the payloads
// of every message, in order, are written there. Prints one Lua table
// constructor (for helper.decode; strings escaped byte by byte):
//   {opened = bool, status = N|nil (a refused upgrade's HTTP status),
//    headers = {name = value} (the 101's, names lower-case),
//    events = {{message = s (text, or hex for binary; only when at most
//    256 bytes), len = n, binary = bool} | {fetch = body}},
//    bytes = total payload bytes, close_code = N|nil,
//    close_reason = s|nil, error = s|nil}
"use strict";

const fs = require("fs");
const http = require("http");
const WebSocket = require("ws");

const [port, path, stepsJson, saveFile] = process.argv.slice(2);
const TIMEOUT = 1000 * (Number(process.env.RINGLET_TEST_TIMEOUT) || 10);
const steps = JSON.parse(stepsJson || "[]");
const out = {
  opened: false, status: null, headers: {}, events: [], bytes: 0,
  close_code: null, close_reason: null, error: null,
};
const saved = [];
let messages = 0;
let done = false;

function lua(v) {
  if (v === null || v === undefined) return "nil";
  if (typeof v === "boolean" || typeof v === "number") return String(v);
  if (typeof v === "string") {
    return '"' + Array.from(Buffer.from(v, "utf8"),
      (b) => "\\" + String(b).padStart(3, "0")).join("") + '"';
  }
  if (Array.isArray(v)) return "{" + v.map(lua).join(", ") + "}";
  return "{" + Object.keys(v).map((k) => `[${lua(k)}] = ${lua(v[k])}`)
    .join(", ") + "}";
}

function finish() {
  if (done) return;
  done = true;
  if (saveFile) fs.writeFileSync(saveFile, Buffer.concat(saved));
  process.stdout.write(lua(out) + "\n", () => process.exit(0));
}
setTimeout(() => { out.error = out.error || "timeout"; finish(); }, TIMEOUT);

const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`);
ws.on("upgrade", (res) => {
  for (const [k, v] of Object.entries(res.headers)) out.headers[k] = String(v);
});
ws.on("unexpected-response", (req, res) => {
  out.status = res.statusCode;
  finish();
});
ws.on("message", (data, isBinary) => {
  messages++;
  out.bytes += data.length;
  if (saveFile) saved.push(Buffer.from(data));
  const e = { len: data.length, binary: isBinary };
  if (data.length <= 256) e.message = isBinary ? data.toString("hex") : data.toString();
  out.events.push(e);
});
ws.on("error", (e) => { out.error = String(e.message || e); });
ws.on("close", (code, reason) => {
  out.close_code = code;
  out.close_reason = reason.toString();
  finish();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function fetch(p) {
  return new Promise((resolve) => {
    http.get(`http://127.0.0.1:${port}${p}`, (res) => {
      const parts = [];
      res.on("data", (d) => parts.push(d));
      res.on("end", () => resolve(Buffer.concat(parts).toString()));
    }).on("error", (e) => resolve("fetch error: " + e.message));
  });
}

ws.on("open", async () => {
  out.opened = true;
  for (const s of steps) {
    if (done) break;
    if (s.send !== undefined) ws.send(s.send);
    else if (s.binary !== undefined) ws.send(Buffer.from(s.binary, "hex"));
    else if (s.text_hex !== undefined) {
      ws.send(Buffer.from(s.text_hex, "hex"), { binary: false });
    }
    else if (s.wait !== undefined) await sleep(s.wait);
    else if (s.until !== undefined) {
      while (messages < s.until && !done) await sleep(5);
    } else if (s.until_bytes !== undefined) {
      while (out.bytes < s.until_bytes && !done) await sleep(5);
    } else if (s.pause) ws.pause();
    else if (s.resume) ws.resume();
    else if (s.fetch !== undefined) out.events.push({ fetch: await fetch(s.fetch) });
    else if (s.settle !== undefined) {
      let last = null;
      let same = 0;
      for (;;) {
        const body = await fetch(s.settle);
        same = body === last && body !== "{}" ? same + 1 : 0;
        last = body;
        if (same === 2 || done) break;
        await sleep(100);
      }
      out.events.push({ fetch: last });
    }
    else if (s.close !== undefined) ws.close(s.close, s.reason || "");
    else if (s.drop) ws._socket.destroy();
  }
});
