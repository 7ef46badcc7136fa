#!/usr/bin/env node
// A scripted WebSocket session with the npm package `ws` (an independent
// client):
//
//   node spec/node/ws_script.js PORT PATH 'STEPS-JSON' [PROTOCOL]
//
// STEPS is a JSON array run in order once the socket opens:
//   {"send": "text"}           a text message
//   {"binary": "hex"}          a binary message (hex-encoded bytes)
//   {"ping": "payload"}        a ping
//   {"wait": ms}               pause
//   {"until": N}               wait until N messages have arrived
//   {"close": code, "reason": "..."}   start the closing handshake
//   {"drop": true}             drop the TCP connection (no close frame)
// After the last step it waits for the server to close (bounded by
// RINGLET_TEST_TIMEOUT seconds, default 10). Prints one Lua table
// constructor (for helper.decode; strings escaped byte by byte) with:
//   {"opened": bool, "protocol": "...", "status": N|null (a refused
//    upgrade's HTTP status), "events": [{"message": s, "binary": bool} |
//    {"pong": s} | {"ping": s}], "close_code": N|null,
//    "close_reason": s|null, "error": s|null}
"use strict";

const WebSocket = require("ws");

const [port, path, stepsJson, protocol] = process.argv.slice(2);
const TIMEOUT = 1000 * (Number(process.env.RINGLET_TEST_TIMEOUT) || 10);
const steps = JSON.parse(stepsJson || "[]");
const out = {
  opened: false, protocol: null, status: null, events: [], close_code: null,
  close_reason: null, error: null,
};
let messages = 0;
let done = false;

// A Lua constructor for v (strings as UTF-8 bytes, each escaped).
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
setTimeout(() => { out.error = out.error || "timeout"; finish(); }, TIMEOUT);

const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`,
  protocol ? protocol.split(",") : []);
ws.on("unexpected-response", (req, res) => {
  out.status = res.statusCode;
  finish();
});
ws.on("message", (data, isBinary) => {
  messages++;
  out.events.push({ message: isBinary ? data.toString("hex") : data.toString(),
    binary: isBinary });
});
ws.on("pong", (data) => out.events.push({ pong: data.toString() }));
ws.on("ping", (data) => out.events.push({ ping: data.toString() }));
ws.on("error", (e) => { out.error = String(e.message || e); });
ws.on("close", (code, reason) => {
  out.close_code = code;
  out.close_reason = reason.toString();
  finish();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

ws.on("open", async () => {
  out.opened = true;
  out.protocol = ws.protocol || null;
  for (const s of steps) {
    if (s.send !== undefined) ws.send(s.send);
    else if (s.binary !== undefined) ws.send(Buffer.from(s.binary, "hex"));
    else if (s.ping !== undefined) ws.ping(s.ping);
    else if (s.wait !== undefined) await sleep(s.wait);
    else if (s.until !== undefined) {
      while (messages < s.until && !done) await sleep(5);
    } else if (s.close !== undefined) ws.close(s.close, s.reason || "");
    else if (s.drop) ws._socket.destroy();
  }
});
