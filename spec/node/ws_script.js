#!/usr/bin/env node
// Scripted WebSocket sessions with the npm package `ws` (an independent
// client), for helper.ws_session and helper.ws_sessions (spec/helper.lua):
//
//   node spec/node/ws_script.js PORT SESSIONS-JSON
//
// SESSIONS is a JSON array of sessions, run one after the other, each
//   {"path": "/x?y", "steps": [STEP, ...],
//    "protocol": "a,b" (optional: offered subprotocols),
//    "save": "FILE" (optional: every message's payload, in order, is
//                    written there)}
// A session connects to ws://127.0.0.1:PORT/PATH and, once open, runs its
// STEPs in order:
//   {"send": "text"}             a text message
//   {"text_hex": "hex"}          a text message of these bytes (they may be
//                                invalid UTF-8: ws sends them as they are)
//   {"binary": "hex"}            a binary message (hex-encoded bytes)
//   {"sendn": N, "prefix": "p"}  N text messages "p1" .. "pN" at once
//   {"ping": "payload"}          a ping
//   {"wait": ms}                 pause
//   {"until": N}                 wait until N messages have arrived
//   {"until_bytes": N}           wait until N bytes of messages have arrived
//   {"pause": true}              stop reading the socket (ws.pause())
//   {"resume": true}             read it again
//   {"fetch": "/path"}           GET http://127.0.0.1:PORT/path; the body is
//                                recorded as an event {type = "fetch"}
//   {"settle": "/path"}          GET it every 100 ms until three answers in
//                                a row are the same (and not "{}"); the
//                                last is recorded as a fetch event
//   {"close": code, "reason": "..."}  start the closing handshake
//   {"close_no_code": true}      close with no code (an empty close frame)
//   {"drop": true}               drop the TCP connection (no close frame)
// An unknown step is an error. After the last step the session waits for
// the connection to close (the server's close, or the end of our own
// handshake). A session ends as soon as the connection closes or the
// upgrade is refused, even with steps left. Every wait is bounded by
// RINGLET_TEST_TIMEOUT seconds (default 10), a whole session by three
// times that; a wait that runs out is an error, and ends the session
// (dropping the connection).
//
// Prints one line: a Lua table constructor (for helper.decode; strings
// escaped byte by byte), one record per session:
//   {{opened = bool, protocol = s|nil (the one the server chose),
//     status = N|nil (a refused upgrade's HTTP status),
//     headers = {name = value} (the answer's to the upgrade, names in
//     lower case),
//     events = {EVENT, ...} in the order they came, each one of
//       {type = "message", binary = bool, len = n (payload bytes),
//        data = the payload (only when len <= 256; save has them all)}
//       {type = "ping", data = payload} | {type = "pong", data = payload}
//       {type = "fetch", data = body}
//     bytes = total payload bytes of the messages,
//     close_code = N|nil, close_reason = s|nil,
//     error = s|nil (the first error: ws's, a timeout, a bad step)}, ...}
// and exits 0 (2 for bad arguments).
"use strict";

const fs = require("fs");
const http = require("http");
const WebSocket = require("ws");

const TIMEOUT = 1000 * (Number(process.env.RINGLET_TEST_TIMEOUT) || 10);
const KEEP = 256; // a message's data is recorded up to this many bytes

// A Lua constructor for v (strings as UTF-8 bytes and Buffers as their
// bytes, each escaped).
function lua(v) {
  if (v === null || v === undefined) return "nil";
  if (typeof v === "boolean" || typeof v === "number") return String(v);
  if (typeof v === "string" || Buffer.isBuffer(v)) {
    const bytes = Buffer.isBuffer(v) ? v : Buffer.from(v, "utf8");
    return '"' + Array.from(bytes,
      (b) => "\\" + String(b).padStart(3, "0")).join("") + '"';
  }
  if (Array.isArray(v)) return "{" + v.map(lua).join(", ") + "}";
  return "{" + Object.keys(v).map((k) => `[${lua(k)}] = ${lua(v[k])}`)
    .join(", ") + "}";
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function fetch(port, p) {
  return new Promise((resolve) => {
    http.get(`http://127.0.0.1:${port}${p}`, (res) => {
      const parts = [];
      res.on("data", (d) => parts.push(d));
      res.on("end", () => resolve(Buffer.concat(parts).toString()));
    }).on("error", (e) => resolve("fetch error: " + e.message));
  });
}

function session(port, s) {
  const rec = {
    opened: false, protocol: null, status: null, headers: {}, events: [],
    bytes: 0, close_code: null, close_reason: null, error: null,
  };
  const saved = [];
  let messages = 0;
  let closed = false;
  let done = false;
  const waiters = [];
  const fail = (e) => { rec.error = rec.error || String(e.message || e); };

  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${s.path || "/"}`,
      s.protocol ? s.protocol.split(",") : [], { handshakeTimeout: TIMEOUT });

    function finish() {
      if (done) return;
      done = true;
      clearTimeout(watchdog);
      for (const w of waiters.splice(0)) {
        clearTimeout(w.timer);
        w.resolve();
      }
      if (!closed) ws.terminate();
      if (s.save) fs.writeFileSync(s.save, Buffer.concat(saved));
      resolve(rec);
    }
    const watchdog = setTimeout(() => {
      fail("timed out: the session took longer than its bound");
      finish();
    }, 3 * TIMEOUT);

    // Resolves once fn() holds (checked on every event) or the session
    // ended; rejects at the bound.
    function until(fn, what) {
      if (done || fn()) return Promise.resolve();
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

    function answered(res) {
      for (const [k, v] of Object.entries(res.headers)) {
        rec.headers[k] = String(v);
      }
    }
    ws.on("upgrade", answered);
    ws.on("unexpected-response", (req, res) => {
      rec.status = res.statusCode;
      answered(res);
      req.destroy();
      finish();
    });
    // Nothing is recorded once the session has ended.
    ws.on("message", (data, isBinary) => {
      if (done) return;
      messages++;
      rec.bytes += data.length;
      if (s.save) saved.push(Buffer.from(data));
      const e = { type: "message", binary: isBinary, len: data.length };
      if (data.length <= KEEP) e.data = data;
      rec.events.push(e);
      poke();
    });
    ws.on("ping", (data) => {
      if (!done) rec.events.push({ type: "ping", data });
    });
    ws.on("pong", (data) => {
      if (done) return;
      rec.events.push({ type: "pong", data });
      poke();
    });
    ws.on("error", (e) => { if (!done) fail(e); });
    ws.on("close", (code, reason) => {
      closed = true;
      if (done) return;
      rec.close_code = code;
      rec.close_reason = reason;
      finish();
    });

    ws.on("open", async () => {
      rec.opened = true;
      rec.protocol = ws.protocol || null;
      try {
        for (const st of s.steps || []) {
          if (done) break;
          if (st.send !== undefined) ws.send(st.send, { binary: false });
          else if (st.text_hex !== undefined) {
            ws.send(Buffer.from(st.text_hex, "hex"), { binary: false });
          } else if (st.binary !== undefined) {
            ws.send(Buffer.from(st.binary, "hex"), { binary: true });
          } else if (st.sendn !== undefined) {
            for (let i = 1; i <= st.sendn; i++) ws.send((st.prefix || "") + i);
          } else if (st.ping !== undefined) ws.ping(st.ping);
          else if (st.wait !== undefined) await sleep(st.wait);
          else if (st.until !== undefined) {
            await until(() => messages >= st.until, `${st.until} messages`);
          } else if (st.until_bytes !== undefined) {
            await until(() => rec.bytes >= st.until_bytes,
              `${st.until_bytes} bytes`);
          } else if (st.pause) ws.pause();
          else if (st.resume) ws.resume();
          else if (st.fetch !== undefined) {
            const body = await fetch(port, st.fetch);
            if (!done) rec.events.push({ type: "fetch", data: body });
          } else if (st.settle !== undefined) {
            let last = null;
            let same = 0;
            for (;;) {
              const body = await fetch(port, st.settle);
              same = body === last && body !== "{}" ? same + 1 : 0;
              last = body;
              if (same === 2 || done) break;
              await sleep(100);
            }
            if (!done) rec.events.push({ type: "fetch", data: last });
          } else if (st.close !== undefined) ws.close(st.close, st.reason || "");
          else if (st.close_no_code) ws.close();
          else if (st.drop) ws.terminate();
          else throw new Error("unknown step " + JSON.stringify(st));
        }
        await until(() => false, "the close");
      } catch (e) {
        fail(e);
        finish();
      }
    });
  });
}

async function main() {
  const port = Number(process.argv[2]);
  let sessions;
  try {
    sessions = JSON.parse(process.argv[3]);
  } catch (e) {
    sessions = null;
  }
  if (!Number.isInteger(port) || port <= 0 || !Array.isArray(sessions)) {
    process.stderr.write("usage: ws_script.js PORT SESSIONS-JSON\n");
    process.exit(2);
  }
  const records = [];
  for (const s of sessions) records.push(await session(port, s));
  process.stdout.write(lua(records) + "\n", () => process.exit(0));
}

main();
