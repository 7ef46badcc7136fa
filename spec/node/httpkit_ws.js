#!/usr/bin/env node
// A scripted WebSocket client (the npm package `ws`) for the httpkit specs:
//
//   node spec/node/httpkit_ws.js PORT PLAN
//
// PLAN is JSON: an array of connections, run one after the other, each
//   {"path": "/x?y", "steps": [STEP, ...]}
// where a STEP is one of
//   {"text": "..."}            send a text message
//   {"binary_hex": "00ff"}     send a binary message (hex bytes)
//   {"ping": "..."}            send a ping with this payload
//   {"wait": N}                wait until N messages have come on this
//                              connection (or it closed)
//   {"close": CODE, "reason": "..."}  close with CODE
//   {"close_no_code": true}    close with no code (an empty close frame)
//   {"terminate": true}        drop the TCP connection, no close frame
//   {"wait_close": true}       wait for the connection to close
//   {"sleep": MS}              wait MS milliseconds
//
// Prints one line: a Lua table constructor (strings as hex, so no
// escaping questions), one entry per connection:
//   {{opened=true, events={{type="message", binary=false, hex="6869"},
//     {type="pong", hex=""}, {type="close", code=1000, reason_hex=""}},
//     error=nil}, ...}
// An answer other than 101 is an event {type="http", status=N}. Every wait
// is bounded by RINGLET_TEST_TIMEOUT seconds (default 10); exits 0 when
// every step ran, 1 otherwise.
"use strict";

const WebSocket = require("ws");

const port = Number(process.argv[2]);
const TIMEOUT = 1000 * (Number(process.env.RINGLET_TEST_TIMEOUT) || 10);

function hex(buf) {
  return Buffer.from(buf).toString("hex");
}

function luaString(s) {
  return JSON.stringify(String(s)); // only ASCII hex digits and words here
}

function luaEvent(e) {
  const parts = [`type=${luaString(e.type)}`];
  if (e.binary !== undefined) parts.push(`binary=${e.binary}`);
  if (e.hex !== undefined) parts.push(`hex=${luaString(e.hex)}`);
  if (e.code !== undefined) parts.push(`code=${e.code}`);
  if (e.reason_hex !== undefined) {
    parts.push(`reason_hex=${luaString(e.reason_hex)}`);
  }
  if (e.status !== undefined) parts.push(`status=${e.status}`);
  return `{${parts.join(", ")}}`;
}

function luaResult(r) {
  const events = r.events.map(luaEvent).join(", ");
  const err = r.error === null ? "nil" : luaString(r.error);
  return `{opened=${r.opened}, events={${events}}, error=${err}}`;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function run(conn) {
  const result = { opened: false, events: [], error: null };
  let messages = 0;
  let closed = false;
  let wake = null;
  const changed = () => {
    if (wake) {
      const w = wake;
      wake = null;
      w();
    }
  };
  // Resolves when cond() holds, or rejects after TIMEOUT.
  const until = (cond, what) => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("timed out: " + what)),
      TIMEOUT);
    const check = () => {
      if (cond()) {
        clearTimeout(timer);
        resolve();
      } else {
        wake = check;
      }
    };
    check();
  });

  const ws = new WebSocket(`ws://127.0.0.1:${port}${conn.path || "/"}`,
    { handshakeTimeout: TIMEOUT });
  ws.on("open", () => {
    result.opened = true;
    changed();
  });
  ws.on("message", (data, isBinary) => {
    messages++;
    result.events.push({ type: "message", binary: isBinary, hex: hex(data) });
    changed();
  });
  ws.on("ping", (data) => result.events.push({ type: "ping", hex: hex(data) }));
  ws.on("pong", (data) => {
    result.events.push({ type: "pong", hex: hex(data) });
    changed();
  });
  ws.on("close", (code, reason) => {
    closed = true;
    result.events.push({ type: "close", code, reason_hex: hex(reason) });
    changed();
  });
  ws.on("error", (err) => {
    if (result.error === null) result.error = String(err.message || err);
    closed = true;
    changed();
  });
  ws.on("unexpected-response", (req, res) => {
    result.events.push({ type: "http", status: res.statusCode });
    closed = true;
    req.destroy();
    changed();
  });

  try {
    await until(() => result.opened || closed, "the handshake");
    if (!result.opened) return result;
    for (const step of conn.steps || []) {
      if (step.text !== undefined) {
        ws.send(step.text, { binary: false });
      } else if (step.binary_hex !== undefined) {
        ws.send(Buffer.from(step.binary_hex, "hex"), { binary: true });
      } else if (step.ping !== undefined) {
        ws.ping(step.ping);
      } else if (step.wait !== undefined) {
        await until(() => messages >= step.wait || closed,
          `${step.wait} messages`);
      } else if (step.close !== undefined) {
        ws.close(step.close, step.reason || "");
      } else if (step.close_no_code) {
        ws.close();
      } else if (step.terminate) {
        ws.terminate();
      } else if (step.wait_close) {
        await until(() => closed, "the close");
      } else if (step.sleep !== undefined) {
        await sleep(step.sleep);
      } else {
        throw new Error("unknown step " + JSON.stringify(step));
      }
    }
  } catch (err) {
    result.error = String(err.message || err);
  }
  if (!closed) ws.terminate();
  return result;
}

async function main() {
  const plan = JSON.parse(process.argv[3] || "[]");
  const results = [];
  for (const conn of plan) results.push(await run(conn));
  return results;
}

main().then((results) => {
  const line = `{${results.map(luaResult).join(", ")}}\n`;
  const ok = results.every((r) => r.error === null);
  process.stdout.write(line, () => process.exit(ok ? 0 : 1));
}, (err) => {
  process.stdout.write(`{error=${luaString(err.message || err)}}\n`,
    () => process.exit(1));
});
