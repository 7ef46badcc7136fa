#!/usr/bin/env node
// The soak test's load and chaos (soak/README.md): CLIENTS clients at once
// against soak/app.lua for DURATION seconds, every answer a well-behaved
// client gets checked byte for byte, chaos clients among them. At the end
// it reads the app's /stats and /gc (after the clients are gone and a
// settle) and prints one JSON object on stdout (and writes it to --out).
//
//   node soak/driver.js --port P [--duration S] [--clients N] [--out FILE]
//                       [--stop-at S --pid PID]
//
// With --stop-at, it sends SIGTERM to PID after S seconds of load, starts
// nothing new from then on, and records what became of every operation in
// flight at that moment (completed, or cut short and how) and the close
// code each open WebSocket got.
'use strict';

const net = require('net');
const path = require('path');
const crypto = require('crypto');
const WebSocket = require(path.join(__dirname, '..', 'spec', 'node',
  'node_modules', 'ws'));

// ---- arguments -----------------------------------------------------------

const argv = process.argv.slice(2);
function arg(name, def) {
  const i = argv.indexOf('--' + name);
  return i >= 0 ? argv[i + 1] : def;
}
const PORT = Number(arg('port'));
const DURATION = Number(arg('duration', 120));
const CLIENTS = Number(arg('clients', 400));
const OUT = arg('out');
const STOP_AT = arg('stop-at') ? Number(arg('stop-at')) : null;
const PID = arg('pid') ? Number(arg('pid')) : null;
const SETTLE = Number(arg('settle', 3));
const ONLY = arg('only') ? arg('only').split(',') : null; // a subset of the mix
if (!PORT || (STOP_AT !== null && !PID)) {
  console.error('usage: node soak/driver.js --port P [--duration S] ' +
    '[--clients N] [--out FILE] [--stop-at S --pid PID]');
  process.exit(2);
}

const HOST = '127.0.0.1';
const MAX_BODY = 1048576; // soak/app.lua's max_body
const MAX_WS = 1048576; // and max_ws
const MAX_BUFFERED = 4 * 1048576; // as_channel's default
const OP_TIMEOUT = 30000; // a well-behaved answer later than this is a hang

// ---- what the app answers (the same functions as in soak/app.lua) --------

function kbody(id, n) {
  const unit = `k/${id}/${n};`;
  const len = (n * 131 + id * 7) % 4000 + 1;
  return Buffer.from(unit.repeat(Math.floor(len / unit.length) + 1)
    .slice(0, len));
}
const bline = (s) =>
  `B ${s} ${String.fromCharCode(97 + s % 26).repeat(s % 300)}\n`;
const sline = (id, i) => `S ${id} ${i} ` +
  `${String.fromCharCode(65 + i % 26).repeat((i * 17 + id) % 500)}\n`;
function pmsg(k, size) {
  const head = `P ${k} `;
  return head + String.fromCharCode(97 + k % 26).repeat(size - head.length);
}
function qchunk(i, size) {
  const head = 'Q' + String(i).padStart(8, '0');
  return head + String.fromCharCode(97 + i % 26).repeat(size - head.length);
}
const BIG = Buffer.from('0123456789abcdef'.repeat(8 * 65536 + 1));
const big = (n) => BIG.subarray(0, n);

// Upload bodies: slices of one random pool, so any body is known.
const POOL = crypto.randomBytes(2 * MAX_BODY + 16);
const TEXT_POOL = Buffer.from(Array.from({ length: 4096 }, (_, i) =>
  ['a', 'b', 'é', '€', '😀', ' ', 'Z', 'ß'][(i * 7 + (i >> 3)) % 8]).join(''));

// ---- small helpers -------------------------------------------------------

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// the driver's own event-loop delay: a client's lateness, not the server's
const loopDelay = require('perf_hooks').monitorEventLoopDelay({ resolution: 20 });
loopDelay.enable();
function loopDelayMs() {
  const ms = (ns) => Math.round(ns / 1e6);
  return { p50: ms(loopDelay.percentile(50)), p99: ms(loopDelay.percentile(99)), max: ms(loopDelay.max) };
}
const rand = (lo, hi) => lo + Math.floor(Math.random() * (hi - lo + 1));
const pick = (a) => a[Math.floor(Math.random() * a.length)];
const now = () => Date.now();
const T0 = now();

let running = true; // false once the load ends (or the stop was sent)
let stopSent = null; // the time SIGTERM went, in stop mode

const checks = {}; // kind -> checks passed
const failures = {}; // kind -> failed checks (and errors of good clients)
const failSamples = []; // the first failures in full
const chaos = {}; // kind -> events injected
const outcomes = {}; // what chaos clients saw, by kind
const maxes = {}; // the longest a paused reader took to get the rest
function count(t, k, n = 1) { t[k] = (t[k] || 0) + n; }
function pass(kind, n = 1) { count(checks, kind, n); }
function fail(kind, detail) {
  if (stopSent !== null) { // errors after the stop are the stop's outcomes
    count(stopErrors, kind + ': ' + String(detail).slice(0, 80));
    return;
  }
  count(failures, kind);
  if (failSamples.length < 50) {
    failSamples.push({ t: (now() - T0) / 1000, kind,
      detail: String(detail).slice(0, 3000) });
  }
}
function check(kind, ok, detail) {
  if (ok) pass(kind); else fail(kind, typeof detail === 'function' ? detail() : detail);
  return ok;
}

// ---- operations in flight, for the stop mode ----------------------------

const inflight = new Set();
const stopOps = {}; // kind -> outcome -> count
const stopLate = {}; // kind -> completed ms after the stop (max)
const stopErrors = {};
const STOP_TIMEOUT = 1000; // the CLI's graceful-stop timeout (csrc/cli.c)
const stopVerdict = {}; // what became of the operations in flight, by class
const stopCut = []; // those that did not complete, each in full
// Why an operation in flight at the stop did not complete, as a class:
// a WebSocket's messages pending when it sends 1001, requests it had not begun
// (pipelined behind the response in progress, or sent on a connection the
// stop closed as idle), those due too late to finish within the timeout,
// and the rest: cut short though they had time to finish.
function stopClass(op, outcome) {
  if (outcome === 'completed') return 'completed';
  if (/^ws\./.test(op.kind) && /^ws closed 1001/.test(outcome)) return 'WebSocket message pending at the 1001';
  const due = op.info && op.info.due !== undefined ? op.info.due - stopSent : null;
  if (due !== null && due > STOP_TIMEOUT + 200) return 'due after the timeout';
  if (due !== null && due > STOP_TIMEOUT - 200) return 'due within 200 ms of the timeout';
  // a stream or poll the server was still producing, behind its schedule,
  // when the timeout closed it (the server goes on with streams until then)
  if (/^(stream|poll)/.test(op.kind) && now() - stopSent >= STOP_TIMEOUT - 50) {
    return 'running late: still in progress at the timeout';
  }
  if (/^(get|pipelined)$/.test(op.kind) && (outcome === 'unanswered' || outcome === 'closed')) {
    return 'request not begun by the server (unanswered)';
  }
  return 'CUT SHORT with time to finish';
}
function begin(kind, info) {
  const op = { kind, t: now(), info, atStop: false };
  inflight.add(op);
  return op;
}
function end(op, outcome) { // outcome: 'completed' or why it did not
  if (!inflight.delete(op)) return;
  if (op.atStop) {
    count(stopOps[op.kind] || (stopOps[op.kind] = {}), outcome);
    const cls = stopClass(op, outcome);
    count(stopVerdict, cls);
    if (outcome !== 'completed' && stopCut.length < 300) {
      stopCut.push({ kind: op.kind, outcome, class: cls, begun_ms_before: stopSent - op.t,
        ended_ms_after: now() - stopSent,
        due_ms_after: op.info && op.info.due !== undefined ? op.info.due - stopSent : undefined,
        bytes: op.info && op.info.bytes });
    }
    if (outcome === 'completed') {
      stopLate[op.kind] = Math.max(stopLate[op.kind] || 0, now() - stopSent);
    }
  }
}

// ---- HTTP/1.1 over a raw socket, responses parsed here -------------------

class HttpConn {
  constructor() {
    this.buf = Buffer.alloc(0);
    this.waiters = []; // {method, resolve, reject, timer}
    this.cur = null; // the response being parsed
    this.closed = false;
    this.err = null;
    this.lastResp = null;
    this.onClose = [];
  }

  static open(timeout = OP_TIMEOUT) {
    const c = new HttpConn();
    return new Promise((resolve, reject) => {
      const s = net.connect(PORT, HOST);
      c.sock = s;
      s.setNoDelay(true);
      const t = setTimeout(() => { s.destroy(); reject(new Error('connect timeout')); }, timeout);
      s.once('connect', () => { clearTimeout(t); c.localPort = s.localPort; resolve(c); });
      s.on('data', (d) => c.data(d));
      s.on('error', (e) => { c.err = e; clearTimeout(t); reject(e); });
      s.on('close', () => c.close_(t));
    });
  }

  close_(t) {
    clearTimeout(t);
    this.closed = true;
    if (this.cur && this.cur.phase === 'eof') this.finish();
    const why = this.err ? this.err.code || this.err.message : 'closed';
    const after = this.lastResp && /close/i.test(this.lastResp.headers.connection || '')
      ? ' after Connection: close' : '';
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      const e = new Error(`connection ${why}${this.cur ? ' mid-response' : ''}${after}`);
      e.partial = this.cur ? this.cur.got : 0;
      e.code = this.cur ? 'midresponse' : after ? 'unanswered' : 'closed';
      w.reject(e);
    }
    this.cur = null;
    for (const f of this.onClose.splice(0)) f();
  }

  // Resolves once the server has closed the connection (or after ms: false).
  waitClose(ms) {
    if (this.closed) return Promise.resolve(true);
    return new Promise((r) => {
      const t = setTimeout(() => r(false), ms);
      this.onClose.push(() => { clearTimeout(t); r(true); });
    });
  }

  expect(method = 'GET', timeout = OP_TIMEOUT) {
    return new Promise((resolve, reject) => {
      if (this.closed) {
        const e = new Error('connection already closed');
        e.code = 'closed';
        return reject(e);
      }
      const w = { method, resolve, reject };
      w.timer = setTimeout(() => {
        const e = new Error(`no answer in ${timeout} ms (${method})` +
          (this.cur ? `, in ${this.cur.phase} with ${this.cur.left} bytes left, ${this.buf.length} unparsed` : ''));
        e.code = 'timeout';
        e.partial = this.cur ? this.cur.got : 0;
        reject(e);
        setTimeout(() => this.sock.destroy(), 1000); // (after the caller had a look)
      }, timeout);
      this.waiters.push(w);
      this.parse();
    });
  }

  request(bytes, method = 'GET', timeout) {
    this.sock.write(bytes);
    return this.expect(method, timeout);
  }

  write(bytes) { if (!this.closed) this.sock.write(bytes); }
  end() { this.sock.end(); }
  destroy() { this.sock.destroy(); }

  data(d) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    this.parse();
  }

  finish() {
    const c = this.cur;
    this.cur = null;
    const w = this.waiters.shift();
    const resp = { status: c.status, headers: c.headers,
      body: Buffer.concat(c.parts), chunked: c.chunked };
    this.lastResp = resp;
    if (w) { clearTimeout(w.timer); w.resolve(resp); }
  }

  parse() {
    for (;;) {
      if (!this.cur) {
        if (!this.buf.length) return;
        if (!this.waiters.length) {
          fail('http.unexpected-bytes', this.buf.subarray(0, 80).toString('latin1'));
          this.buf = Buffer.alloc(0);
          return;
        }
        this.cur = { phase: 'head', parts: [], got: 0 };
      }
      const c = this.cur;
      if (c.phase === 'head') {
        const i = this.buf.indexOf('\r\n\r\n');
        if (i < 0) return;
        const lines = this.buf.subarray(0, i).toString('latin1').split('\r\n');
        this.buf = this.buf.subarray(i + 4);
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
        if (!m) {
          fail('http.bad-status-line', lines[0]);
          this.sock.destroy();
          return;
        }
        c.status = Number(m[1]);
        c.headers = {};
        for (const l of lines.slice(1)) {
          const k = l.indexOf(':');
          c.headers[l.slice(0, k).toLowerCase()] = l.slice(k + 1).trim();
        }
        const method = this.waiters[0].method;
        if (c.status === 101) { // the caller takes the socket over
          c.parts = [];
          this.finish();
          return;
        }
        if (method === 'HEAD' || c.status === 204 || c.status === 304) {
          this.finish();
        } else if (/chunked/i.test(c.headers['transfer-encoding'] || '')) {
          c.chunked = true;
          c.phase = 'size';
        } else if (c.headers['content-length'] !== undefined) {
          c.left = Number(c.headers['content-length']);
          c.phase = 'cl';
          if (c.left === 0) this.finish();
        } else {
          c.phase = 'eof';
        }
        continue;
      }
      if (c.phase === 'cl' || c.phase === 'data' || c.phase === 'eof') {
        const take = c.phase === 'eof' ? this.buf.length
          : Math.min(c.left, this.buf.length);
        if (take) {
          c.parts.push(this.buf.subarray(0, take));
          c.got += take;
          if (c.onChunk) c.onChunk(this.buf.subarray(0, take));
          this.buf = this.buf.subarray(take);
          if (c.phase !== 'eof') c.left -= take;
        }
        if (c.phase === 'eof' || c.left > 0) return;
        if (c.phase === 'cl') { this.finish(); continue; }
        c.phase = 'crlf';
      }
      if (c.phase === 'crlf') {
        if (this.buf.length < 2) return;
        if (this.buf[0] !== 13 || this.buf[1] !== 10) {
          fail('http.bad-chunk', 'no CRLF after a chunk');
          this.sock.destroy();
          return;
        }
        this.buf = this.buf.subarray(2);
        c.phase = 'size';
        continue;
      }
      if (c.phase === 'size') {
        const i = this.buf.indexOf('\r\n');
        if (i < 0) return;
        const size = parseInt(this.buf.subarray(0, i).toString('latin1'), 16);
        this.buf = this.buf.subarray(i + 2);
        if (Number.isNaN(size)) {
          fail('http.bad-chunk', 'bad chunk size');
          this.sock.destroy();
          return;
        }
        if (size === 0) c.phase = 'trailer';
        else { c.left = size; c.phase = 'data'; }
        continue;
      }
      if (c.phase === 'trailer') {
        const i = this.buf.indexOf('\r\n');
        if (i < 0) return;
        this.buf = this.buf.subarray(i + 2);
        if (i === 0) this.finish();
      }
    }
  }
}

const get = (p, extra = '') => `GET ${p} HTTP/1.1\r\nHost: soak\r\n${extra}\r\n`;

// ---- the well-behaved clients --------------------------------------------

// Runs body() until the load ends; an exception in a well-behaved client is
// a failure (a connection it did not expect to lose).
async function loop(kind, body, good = true) {
  while (running) {
    try {
      await body();
    } catch (e) {
      if (good) fail(kind + '.error', e.message || e);
      else count(outcomes, kind + '.error: ' + (e.code || e.message));
      if (running) await sleep(100);
    }
  }
}

let kaIds = 0;
function keepalive(idx) {
  let n = 0;
  return loop('get', async () => {
    const c = await HttpConn.open();
    const count_ = rand(20, 300);
    for (let i = 0; i < count_ && running; i++) {
      const last = i === count_ - 1;
      const k = n++;
      const op = begin('get');
      let r;
      try {
        r = await c.request(get(`/k/${idx}/${k}`, last ? 'Connection: close\r\n' : ''));
      } catch (e) { end(op, e.code || e.message); throw e; }
      end(op, 'completed');
      check('get', r.status === 200 && r.body.equals(kbody(idx, k)),
        () => `GET /k/${idx}/${k}: ${r.status} ${r.body.length} bytes`);
      if (last) check('get.close', await c.waitClose(5000), 'server kept the connection after Connection: close');
      if (Math.random() < 0.3) await sleep(rand(0, 5));
    }
    c.end();
  });
}

function pipelined(idx) {
  let n = 0;
  return loop('pipelined', async () => {
    const c = await HttpConn.open();
    const batches = rand(5, 50);
    for (let b = 0; b < batches && running; b++) {
      const depth = rand(2, 24);
      const reqs = [];
      let bytes = '';
      for (let i = 0; i < depth; i++) {
        const k = n++;
        if (Math.random() < 0.15) { // a small upload among the GETs
          const body = POOL.subarray(k % 4096, k % 4096 + (k % 700) + 1);
          reqs.push({ k, body });
          bytes += `POST /up HTTP/1.1\r\nHost: soak\r\nContent-Length: ${body.length}\r\n\r\n` +
            body.toString('latin1');
        } else {
          reqs.push({ k });
          bytes += get(`/k/${idx}/${k}`);
        }
      }
      c.write(Buffer.from(bytes, 'latin1'));
      const ops = reqs.map(() => begin('pipelined'));
      const answers = reqs.map((q) => c.expect(q.body ? 'POST' : 'GET'));
      answers.forEach((a) => a.catch(() => {}));
      for (let i = 0; i < depth; i++) {
        let r;
        try {
          r = await answers[i];
        } catch (e) { // the requests queued behind this one were not begun
          end(ops[i], e.code === 'closed' || e.code === 'unanswered' ? 'unanswered' : e.code || e.message);
          for (let j = i + 1; j < depth; j++) end(ops[j], 'unanswered');
          throw e;
        }
        end(ops[i], 'completed');
        const want = reqs[i].body || kbody(idx, reqs[i].k);
        check('pipelined', r.status === 200 && r.body.equals(want),
          () => `pipelined #${i} of ${depth}: ${r.status} ${r.body.length} bytes, wanted ${want.length}`);
      }
      if (Math.random() < 0.3) await sleep(rand(0, 10));
    }
    c.end();
  });
}

function slow(idx) {
  let n = 0;
  return loop('slow', async () => {
    const c = await HttpConn.open();
    for (let i = 0; i < 20 && running; i++) {
      const k = n++;
      const ms = rand(0, 1500);
      const op = begin('slow', { due: now() + ms });
      let r;
      try {
        r = await c.request(get(`/slow?ms=${ms}&id=${idx}&n=${k}`));
      } catch (e) { end(op, e.code || e.message); throw e; }
      end(op, 'completed');
      check('slow', r.status === 200 && r.body.equals(kbody(idx, k)),
        () => `slow ${ms}: ${r.status} ${r.body.length} bytes`);
    }
    c.end();
  });
}

// Content-Length uploads at the limit and below it; one byte over: 413.
function upload() {
  return loop('upload', async () => {
    const c = await HttpConn.open();
    for (let i = 0; i < 10 && running; i++) {
      if (Math.random() < 0.12) {
        const body = POOL.subarray(0, MAX_BODY + 1);
        c.write(`POST /up?c=l HTTP/1.1\r\nHost: soak\r\nContent-Length: ${body.length}\r\n\r\n`);
        c.write(body);
        const op = begin('upload.over');
        let r;
        try { r = await c.expect('POST'); } catch (e) { end(op, e.code || e.message); throw e; }
        end(op, 'completed');
        check('upload.413', r.status === 413, () => `over the limit: ${r.status}`);
        check('upload.413-close', await c.waitClose(5000), '413 left the connection open');
        return;
      }
      const size = Math.random() < 0.5 ? MAX_BODY : rand(1, MAX_BODY);
      const off = rand(0, POOL.length - size);
      const body = POOL.subarray(off, off + size);
      c.write(`POST /up HTTP/1.1\r\nHost: soak\r\nContent-Length: ${size}\r\n\r\n`);
      c.write(body);
      const op = begin('upload');
      let r;
      try { r = await c.expect('POST'); } catch (e) { end(op, e.code || e.message); throw e; }
      end(op, 'completed');
      check(size === MAX_BODY ? 'upload.at-limit' : 'upload', r.status === 200 && r.body.equals(body),
        () => `upload of ${size}: ${r.status} ${r.body.length} bytes`);
    }
    c.end();
  });
}

function chunked() {
  return loop('chunked', async () => {
    const c = await HttpConn.open();
    for (let i = 0; i < 10 && running; i++) {
      const over = Math.random() < 0.1;
      const total = over ? MAX_BODY + 1 : Math.random() < 0.3 ? MAX_BODY : rand(1, MAX_BODY);
      const off = rand(0, POOL.length - total);
      const body = POOL.subarray(off, off + total);
      c.write(`POST /up${over ? '?c=l' : ''} HTTP/1.1\r\nHost: soak\r\nTransfer-Encoding: chunked\r\n\r\n`);
      const op = begin(over ? 'chunked.over' : 'chunked');
      const answer = c.expect('POST');
      answer.catch(() => {});
      let at = 0;
      while (at < total && !c.closed) {
        const n = Math.min(total - at, rand(1, 65536));
        c.write(Buffer.concat([Buffer.from(n.toString(16) + '\r\n'),
          body.subarray(at, at + n), Buffer.from('\r\n')]));
        at += n;
        if (Math.random() < 0.05) await sleep(rand(1, 20));
      }
      c.write('0\r\n\r\n');
      let r;
      try { r = await answer; } catch (e) { end(op, e.code || e.message); throw e; }
      end(op, 'completed');
      if (over) {
        check('chunked.413', r.status === 413, () => `chunked over the limit: ${r.status}`);
        check('chunked.413-close', await c.waitClose(5000), '413 left the connection open');
        return;
      }
      check(total === MAX_BODY ? 'chunked.at-limit' : 'chunked', r.status === 200 && r.body.equals(body),
        () => `chunked upload of ${total}: ${r.status} ${r.body.length} bytes`);
    }
    c.end();
  });
}

// The body of a stream: its numbered lines, complete and in order, with the
// group's broadcasts among them, contiguous.
function checkStream(body, sid, n) {
  const lines = body.toString('latin1').split('\n');
  if (lines.pop() !== '') return fail('stream.line', `stream ${sid} ends inside a line`);
  let next = 0;
  let lastB = null;
  let bs = 0;
  for (const l of lines) {
    if (l[0] === 'S') {
      const want = sline(sid, next).slice(0, -1);
      if (!check('stream.line', l === want, () => `stream ${sid} line ${next}: got ${l.slice(0, 40)}`)) return;
      next++;
    } else if (l[0] === 'B') {
      const s = Number(l.split(' ')[1]);
      if (!check('stream.broadcast', l === bline(s).slice(0, -1) &&
        (lastB === null || s === lastB + 1),
      () => `stream ${sid} broadcast ${s} after ${lastB}: ${l.slice(0, 40)}`)) return;
      lastB = s;
      bs++;
    } else {
      return fail('stream.line', `stream ${sid}: a stray line ${l.slice(0, 40)}`);
    }
  }
  check('stream.complete', next === n, () => `stream ${sid}: ${next} of ${n} lines`);
}

function stream(idx) {
  let m = 0;
  return loop('stream', async () => {
    const c = await HttpConn.open();
    for (let i = 0; i < 10 && running; i++) {
      const sid = idx * 100000 + (m++);
      const n = rand(2, 60);
      const gap = pick([0, 0, 5, 20, 50]);
      const op = begin('stream', { due: now() + n * gap });
      let r;
      try {
        r = await c.request(get(`/stream?c=g&id=${sid}&n=${n}&gap=${gap}`));
      } catch (e) { end(op, e.code || e.message); throw e; }
      end(op, 'completed');
      check('stream.head', r.status === 200 && r.chunked, () => `stream: ${r.status} chunked=${r.chunked}`);
      checkStream(r.body, sid, n);
    }
    c.end();
  });
}

function poll() {
  return loop('poll', async () => {
    const c = await HttpConn.open();
    let last = 0;
    for (let i = 0; i < 30 && running; i++) {
      if (Math.random() < 0.1) {
        const op = begin('publish');
        let r;
        try {
          r = await c.request('POST /publish HTTP/1.1\r\nHost: soak\r\nContent-Length: 0\r\n\r\n', 'POST');
        } catch (e) { end(op, e.code || e.message); throw e; }
        end(op, 'completed');
        const m = /^published (\d+)$/.exec(r.body.toString());
        check('publish', r.status === 200 && m && Number(m[1]) > last,
          () => `publish: ${r.status} ${r.body} (last seen ${last})`);
        if (m) last = Number(m[1]);
        continue;
      }
      const op = begin('poll');
      let r;
      try {
        r = await c.request(get('/poll?c=g'));
      } catch (e) { end(op, e.code || e.message); throw e; }
      end(op, 'completed');
      const body = r.body.toString('latin1');
      const s = Number(body.split(' ')[1]);
      check('poll', r.status === 200 && body === bline(s) && s > last,
        () => `poll: ${r.status} ${body.slice(0, 40)} after ${last}`);
      if (s > last) last = s;
    }
    c.end();
  });
}

// A WebSocket with state for checking what comes back.
function wsOpen(query, opts = {}) {
  const ws = new WebSocket(`ws://${HOST}:${PORT}/ws?${query}`,
    { perMessageDeflate: false, maxPayload: 64 * 1048576, ...opts });
  ws.on('error', (e) => { ws.lastError = e; });
  return ws;
}
function opened(ws, timeout = OP_TIMEOUT) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { ws.terminate(); reject(new Error('ws open timeout')); }, timeout);
    ws.once('open', () => { clearTimeout(t); resolve(); });
    ws.once('close', (code) => { clearTimeout(t); reject(new Error(`ws closed before open (${code}) ${ws.lastError ? ws.lastError.message : ''}`)); });
  });
}
function closed(ws, timeout = OP_TIMEOUT) {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve(ws.closeCode);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve('timeout'), timeout);
    ws.once('close', (code) => { clearTimeout(t); resolve(code); });
  });
}

const openSockets = new Set(); // well-behaved WebSockets, for the stop mode
const wsStop = {}; // close code after the stop -> count
let wsStopLate = 0;

// "E" and a run of UTF-8 text (multi-byte characters among ASCII), cut at
// character boundaries: a valid text message.
function textPayload(len) {
  let a = rand(0, TEXT_POOL.length - 8);
  while ((TEXT_POOL[a] & 0xc0) === 0x80) a++;
  let b = Math.min(TEXT_POOL.length, a + len);
  while (b < TEXT_POOL.length && (TEXT_POOL[b] & 0xc0) === 0x80) b--;
  return Buffer.concat([Buffer.from('E'), TEXT_POOL.subarray(a, b)]);
}

function wsGood(idx) {
  return loop('ws', async () => {
    const ws = wsOpen(`c=g&id=${idx}`);
    await opened(ws);
    openSockets.add(ws);
    const fifo = []; // {data, binary, op}
    let push = null; // {n, size, k, op}
    let lastB = null;
    let waiter = null; // {resolve, reject, timer}
    let closeCode = null;
    const idle = () => fifo.length === 0 && push === null;
    ws.on('message', (data, isBinary) => {
      if (!isBinary && data[0] === 0x42 /* B */) {
        const l = data.toString('latin1');
        const s = Number(l.split(' ')[1]);
        check('ws.broadcast', l === bline(s) && (lastB === null || s === lastB + 1),
          () => `ws ${idx}: broadcast ${s} after ${lastB}`);
        lastB = s;
      } else if (!isBinary && data[0] === 0x50 /* P */) {
        if (!check('ws.push', push && data.toString('latin1') === pmsg(push.k, push.size),
          () => `ws ${idx}: push ${push && push.k}: ${data.subarray(0, 30)}`)) return;
        if (++push.k === push.n) { end(push.op, 'completed'); push = null; }
      } else {
        const e = fifo.shift();
        check(e && e.data.length >= 65536 ? 'ws.echo.large' : 'ws.echo',
          e && e.binary === isBinary && e.data.equals(data),
          () => `ws ${idx}: echo of ${e ? e.data.length : 'nothing'} got ${data.length} bytes binary=${isBinary}`);
        if (e) end(e.op, 'completed');
      }
      if (waiter && idle()) { const w = waiter; waiter = null; clearTimeout(w.timer); w.resolve(); }
    });
    ws.on('close', (code) => {
      closeCode = code;
      if (stopSent !== null) {
        count(wsStop, ws.closingByUs ? `${code} (a close the client had started)` : String(code));
        wsStopLate = Math.max(wsStopLate, now() - stopSent);
        for (const e of fifo) end(e.op, `ws closed ${code}`);
        if (push) end(push.op, `ws closed ${code} after ${push.k} of ${push.n}`);
      }
      if (waiter) {
        const w = waiter;
        waiter = null;
        clearTimeout(w.timer);
        w.reject(new Error(`ws ${idx}: closed (${code}) with ${fifo.length} echoes pending${push ? ', a push' : ''}`));
      }
    });
    const settled = () => idle() ? Promise.resolve() : new Promise((resolve, reject) => {
      if (closeCode !== null) return reject(new Error(`ws ${idx}: closed (${closeCode})`));
      waiter = { resolve, reject, timer: setTimeout(() => {
        waiter = null;
        reject(new Error(`ws ${idx}: no echo in ${OP_TIMEOUT} ms (${fifo.length} pending, push ${push && push.k}/${push && push.n})`));
      }, OP_TIMEOUT) };
    });
    const actions = rand(10, 80);
    try {
      for (let a = 0; a < actions && running; a++) {
        const what = pick(['text', 'text', 'binary', 'binary', 'frag', 'frag', 'large', 'push']);
        if (what === 'text') {
          const d = textPayload(rand(1, 2000));
          fifo.push({ data: d, binary: false, op: begin('ws.echo', { bytes: d.length }) });
          ws.send(d, { binary: false });
        } else if (what === 'binary') {
          const off = rand(0, 4096);
          const d = POOL.subarray(off, off + rand(0, 4000));
          fifo.push({ data: d, binary: true, op: begin('ws.echo', { bytes: d.length }) });
          ws.send(d, { binary: true });
        } else if (what === 'frag') { // fragments cut anywhere, inside UTF-8 characters too
          const binary = Math.random() < 0.5;
          const d = binary ? POOL.subarray(0, rand(1, 200000)) : textPayload(rand(2, 4000));
          fifo.push({ data: d, binary, op: begin('ws.echo', { bytes: d.length }) });
          const parts = rand(2, 6);
          let at = 0;
          for (let p = 0; p < parts; p++) {
            const to = p === parts - 1 ? d.length
              : Math.min(d.length, at + rand(0, Math.ceil(d.length / parts) * 2));
            ws.send(d.subarray(at, to), { binary, fin: p === parts - 1 });
            at = to;
          }
          count(checks, 'ws.fragmented-sent');
        } else if (what === 'large') {
          const size = Math.random() < 0.3 ? MAX_WS : rand(65536, MAX_WS);
          const off = rand(0, POOL.length - size);
          const d = POOL.subarray(off, off + size);
          fifo.push({ data: d, binary: true, op: begin('ws.echo', { bytes: d.length }) });
          ws.send(d, { binary: true });
          if (size === MAX_WS) count(checks, 'ws.at-limit-sent');
        } else {
          const n = rand(1, 16);
          const size = rand(32, 65536);
          push = { n, size, k: 0, op: begin('ws.push') };
          ws.send(`PUSH ${n} ${size}`);
        }
        await settled();
      }
      if (stopSent !== null) { // the stop mode: the server is to close it
        const code = await closed(ws, 5000);
        if (code === 'timeout') count(wsStop, 'no close in 5 s');
        return;
      }
      ws.closingByUs = true;
      ws.close(1000, 'bye');
      const code = await closed(ws);
      check('ws.close', code === 1000, () => `ws ${idx}: closed with ${code}`);
    } finally {
      openSockets.delete(ws);
      if (stopSent !== null && ws.readyState !== WebSocket.CLOSED) {
        const code = await closed(ws, 5000);
        if (code === 'timeout') count(wsStop, 'no close in 5 s');
      }
      if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
    }
  });
}

// One message over max_ws (whole or in fragments): 1009.
function wsLimit(idx) {
  return loop('ws.limit', async () => {
    const ws = wsOpen(`c=l&id=${idx}`);
    await opened(ws);
    const frag = Math.random() < 0.5;
    const d = POOL.subarray(0, MAX_WS + 1);
    if (frag) {
      ws.send(d.subarray(0, MAX_WS >> 1), { binary: true, fin: false });
      ws.send(d.subarray(MAX_WS >> 1), { binary: true, fin: true });
    } else {
      ws.send(d, { binary: true });
    }
    const op = begin('ws.limit');
    const code = await closed(ws);
    end(op, 'completed');
    check(frag ? 'ws.1009-fragmented' : 'ws.1009', code === 1009, () => `over max_ws: closed with ${code}`);
    await sleep(rand(50, 300));
  });
}

// A POST whose body comes one byte a second: slow but valid; echoed.
function slowBody() {
  return loop('slow-body', async () => {
    const c = await HttpConn.open();
    const n = rand(3, 25);
    const body = Buffer.from('slow-body-'.repeat(3).slice(0, n));
    c.write(`POST /up HTTP/1.1\r\nHost: soak\r\nContent-Length: ${n}\r\n\r\n`);
    const answer = c.expect('POST', OP_TIMEOUT + n * 1000);
    answer.catch(() => {});
    const op = begin('slow-body', { due: now() + n * 1000 });
    for (let i = 0; i < n && !c.closed; i++) {
      await sleep(1000);
      c.write(body.subarray(i, i + 1));
      op.info.due = now() + (n - i - 1) * 1000; // (timers drift under load)
    }
    let r;
    try { r = await answer; } catch (e) { end(op, e.code || e.message); throw e; }
    end(op, 'completed');
    check('slow-body', r.status === 200 && r.body.equals(body), () => `slow body: ${r.status} ${r.body}`);
    c.end();
  });
}

// ---- chaos ---------------------------------------------------------------

function rawSocket() {
  return new Promise((resolve, reject) => {
    const s = net.connect(PORT, HOST);
    s.on('error', () => {});
    s.once('connect', () => resolve(s));
    s.once('error', reject);
    s.setTimeout(OP_TIMEOUT, () => s.destroy());
  });
}

// A socket that has done the WebSocket handshake by hand.
async function rawWs(cls = 'x') {
  const s = await rawSocket();
  const key = crypto.randomBytes(16).toString('base64');
  s.write(`GET /ws?c=${cls} HTTP/1.1\r\nHost: soak\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  await new Promise((resolve, reject) => {
    let got = '';
    const onData = (d) => {
      got += d.toString('latin1');
      if (got.includes('\r\n\r\n')) {
        s.off('data', onData);
        if (got.startsWith('HTTP/1.1 101')) resolve(); else reject(new Error(got.slice(0, 40)));
      }
    };
    s.on('data', onData);
    s.once('close', () => reject(new Error('closed before 101')));
  });
  return s;
}
function frame(opcode, payload, fin = true) {
  const mask = crypto.randomBytes(4);
  const len = payload.length;
  const head = len < 126 ? Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | len])
    : len < 65536 ? Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | 126, len >> 8, len & 255])
      : Buffer.concat([Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | 127, 0, 0, 0, 0]),
        Buffer.from([len >>> 24, (len >> 16) & 255, (len >> 8) & 255, len & 255])]);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] ^= mask[i & 3];
  return Buffer.concat([head, mask, body]);
}
function readUntil(s, bytes, timeout = 10000) {
  return new Promise((resolve) => {
    let got = 0;
    const t = setTimeout(done, timeout);
    function done() { clearTimeout(t); s.off('data', on); resolve(got); }
    function on(d) { got += d.length; if (got >= bytes) done(); }
    s.on('data', on);
    s.once('close', done);
  });
}

const chaosKinds = {
  // send half a request, then go
  async half_request() {
    const s = await rawSocket();
    const v = pick(['head', 'body', 'chunked', 'upgrade']);
    count(chaos, 'half_request.' + v);
    let bytes;
    if (v === 'head') bytes = Buffer.from(get('/k/1/2'));
    else if (v === 'body') bytes = Buffer.concat([Buffer.from(`POST /up?c=x HTTP/1.1\r\nHost: soak\r\nContent-Length: ${MAX_BODY}\r\n\r\n`), POOL.subarray(0, MAX_BODY)]);
    else if (v === 'chunked') bytes = Buffer.from(`POST /up?c=x HTTP/1.1\r\nHost: soak\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n${'x'.repeat(1024)}\r\n400\r\n${'y'.repeat(1024)}\r\n0\r\n\r\n`);
    else bytes = Buffer.from(`GET /ws?c=x HTTP/1.1\r\nHost: soak\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    s.write(bytes.subarray(0, rand(1, bytes.length - 1)));
    await sleep(rand(0, 300));
    s.destroy();
  },
  // read part of a large answer, then go
  async mid_response() {
    const v = pick(['big', 'stream', 'bigstream', 'ws_push']);
    count(chaos, 'mid_response.' + v);
    if (v === 'ws_push') {
      const ws = wsOpen('c=x');
      ws.on('error', () => {});
      await opened(ws);
      ws.send('PUSH 16 65536');
      await new Promise((r) => { ws.once('message', r); ws.once('close', r); setTimeout(r, 5000); });
      ws.terminate();
      return;
    }
    const s = await rawSocket();
    s.write(get(v === 'big' ? '/big?n=4194304' : v === 'stream'
      ? `/stream?c=x&id=1&n=200&gap=20` : '/bigstream?n=64&size=65536'));
    await readUntil(s, rand(1, v === 'stream' ? 2000 : 2000000));
    s.destroy();
  },
  // send half a WebSocket frame, then go
  async mid_frame() {
    const s = await rawWs();
    const v = pick(['header', 'payload', 'fragment']);
    count(chaos, 'mid_frame.' + v);
    const f = frame(2, POOL.subarray(0, rand(200, 100000)));
    if (v === 'header') s.write(f.subarray(0, rand(1, 5)));
    else if (v === 'payload') s.write(f.subarray(0, rand(15, f.length - 1)));
    else {
      s.write(frame(1, Buffer.from('first fragment '), false));
      const g = frame(0, Buffer.from('second fragment, never ends'), false);
      s.write(g.subarray(0, rand(1, g.length - 1)));
    }
    await sleep(rand(0, 300));
    s.destroy();
  },
  // a TCP reset, at various points
  async reset() {
    const v = pick(['upload', 'download', 'ws', 'stream', 'poll', 'idle']);
    count(chaos, 'reset.' + v);
    if (v === 'ws') {
      const ws = wsOpen('c=x');
      ws.on('error', () => {});
      await opened(ws);
      ws.send(POOL.subarray(0, rand(1, 300000)), { binary: true });
      await sleep(rand(0, 200));
      if (ws._socket) ws._socket.resetAndDestroy(); else ws.terminate();
      return;
    }
    const s = await rawSocket();
    if (v === 'upload') {
      s.write(`POST /up?c=x HTTP/1.1\r\nHost: soak\r\nContent-Length: ${MAX_BODY}\r\n\r\n`);
      s.write(POOL.subarray(0, rand(0, MAX_BODY - 1)));
    } else if (v === 'download') {
      s.write(get('/big?n=4194304'));
      await readUntil(s, rand(1, 1000000));
    } else if (v === 'stream') {
      s.write(get('/stream?c=x&id=2&n=100&gap=20'));
      await readUntil(s, rand(1, 3000));
    } else if (v === 'poll') {
      s.write(get('/poll?c=x'));
    } else {
      s.write(get('/k/1/1'));
      await readUntil(s, 1);
    }
    await sleep(rand(0, 200));
    s.resetAndDestroy();
  },
  // stop reading while the server sends; later read on and check, or go
  async stop_reading() {
    const v = pick(['bigstream', 'big', 'ws_push']);
    count(chaos, 'stop_reading.' + v);
    const pauseMs = rand(2000, 12000);
    if (v === 'ws_push') { // 8 MiB pushed at a paused reader: past max_buffered
      const ws = wsOpen('c=x');
      ws.on('error', () => {});
      await opened(ws);
      const size = 131072;
      const n = Math.ceil(2 * MAX_BUFFERED / size);
      let k = 0;
      let ok = true;
      ws.on('message', (d, isBinary) => {
        if (!isBinary && d[0] === 0x50) {
          if (d.toString('latin1') !== pmsg(k, size)) ok = false;
          k++;
        }
      });
      ws.send(`PUSH ${n} ${size}`);
      await sleep(50);
      ws._socket.pause();
      await sleep(pauseMs);
      ws._socket.resume();
      // the first push (a lagging loop runs a timer before the I/O it
      // waited on, so a short stall window alone could end before any
      // arrives), then until none came for 2 s
      const resumed = now();
      while (k === 0 && now() - resumed < OP_TIMEOUT && ws.readyState === WebSocket.OPEN) await sleep(100);
      let last = k;
      for (;;) { await sleep(2000); if (k === last) break; last = k; }
      // a prefix of the pushes, in order: the rest were refused (send buffer full)
      if (stopSent !== null && ok && k === 0) { // the stop's 1001 came first
        count(outcomes, 'stop_reading.ws_push: closed by the stop before any push');
        ws.terminate();
        return;
      }
      check('stop_reading.ws-prefix', ok && k > 0 && k < n, () => `paused ws got ${k} of ${n} pushes ok=${ok} ` +
        `(${now() - resumed} ms after the resume; socket bytesRead ${ws._socket.bytesRead}, state ${ws.readyState})`);
      count(outcomes, `stop_reading.ws_push got ${k < n ? 'a prefix' : 'all'}`);
      ws.close(1000);
      await closed(ws, 5000);
      ws.terminate();
      return;
    }
    const c = await HttpConn.open();
    const chunks = 128; // 8 MiB, as /big
    const size = 65536;
    // (an iterator body goes 64 KiB a loop turn: next to bulk transfers it
    // takes tens of seconds; README, "Noticed")
    const answer = c.request(get(v === 'big' ? '/big?n=8388608' : `/bigstream?n=${chunks}&size=${size}`),
      'GET', 4 * OP_TIMEOUT + pauseMs);
    answer.catch(() => {});
    await sleep(rand(0, 100));
    c.sock.pause();
    await sleep(pauseMs);
    if (Math.random() < 0.3) { c.destroy(); count(outcomes, 'stop_reading.gone'); return; }
    const atResume = c.cur ? c.cur.got : -1;
    c.sock.resume();
    const resumed = now();
    let r;
    try {
      r = await answer;
      const secs = (now() - resumed) / 1000;
      maxes[`stop_reading.${v} s after the resume`] = Math.max(maxes[`stop_reading.${v} s after the resume`] || 0, secs);
    } catch (e) { // a reader that came back must get the rest (unless the stop came first)
      if (stopSent !== null) {
        count(outcomes, `stop_reading.${v}: cut by the stop's timeout, ${e.partial} bytes read`.replace(/\d{4,}/, (d) => `~${Math.round(d / 1048576)} MiB`));
        c.destroy();
        return;
      }
      if (process.env.SOAK_SS && c.localPort) { // the connection as the kernel sees it
        try {
          e.message += '\n' + require('child_process').execSync(
            `ss -tnoi '( sport = :${c.localPort} or dport = :${c.localPort} )'`).toString();
        } catch (err) { /* no ss */ }
      }
      check('stop_reading.resumed', false, `${v} paused ${pauseMs} ms: body bytes ${atResume} at the resume, ` +
        `${e.partial} at the end: ${e.message}; socket bytesRead ${c.sock.bytesRead}`);
      c.destroy();
      return;
    }
    if (v === 'big') {
      check('stop_reading.big', r.status === 200 && r.body.equals(big(8388608)), () => `paused /big: ${r.status} ${r.body.length}`);
    } else {
      let ok = r.status === 200 && r.body.length === chunks * size;
      for (let i = 0; ok && i < chunks; i++) {
        ok = r.body.subarray(i * size, (i + 1) * size).toString('latin1') === qchunk(i, size);
      }
      check('stop_reading.bigstream', ok, () => `paused /bigstream: ${r.status} ${r.body.length}`);
    }
    c.end();
  },
  // one byte a second: the head (408 at header_timeout)
  async slow_loris() {
    count(chaos, 'slow_loris');
    const s = await rawSocket();
    const req = Buffer.from(`GET /k/1/3?c=x HTTP/1.1\r\nHost: soak\r\nUser-Agent: slow-loris\r\n\r\n`);
    let got = '';
    let closedAt = null;
    s.on('data', (d) => { got += d.toString('latin1'); });
    s.once('close', () => { closedAt = now(); });
    const t = now();
    for (let i = 0; i < req.length && closedAt === null && running; i++) {
      s.write(req.subarray(i, i + 1));
      await sleep(1000);
    }
    await sleep(200);
    const status = (/^HTTP\/1\.1 (\d+)/.exec(got) || [])[1] || 'none';
    if (closedAt === null && !running) count(outcomes, 'slow_loris: cut by the end of the load');
    else count(outcomes, `slow_loris: ${status}${closedAt ? ' then closed' : ''} after ~${Math.round(((closedAt || now()) - t) / 1000)} s`);
    s.destroy();
  },
  // open and close, quickly, in several ways
  async open_close() {
    const v = pick(['destroy', 'end', 'request-and-go', 'ws-close', 'ws-terminate', 'ws-connecting']);
    count(chaos, 'open_close.' + v);
    if (v.startsWith('ws')) {
      const ws = wsOpen('c=x');
      ws.on('error', () => {});
      if (v === 'ws-connecting') { await sleep(rand(0, 2)); ws.terminate(); return; }
      await opened(ws);
      if (v === 'ws-close') { ws.close(1000); await closed(ws, 5000); } else ws.terminate();
      return;
    }
    const s = await rawSocket();
    if (v === 'destroy') s.destroy();
    else if (v === 'end') s.end();
    else { s.write(get(pick(['/k/1/1', '/poll?c=x', '/stream?c=x&id=3&n=10&gap=10']))); s.destroy(); }
    await sleep(rand(5, 20));
  },
};

function chaosClient(kind) {
  return loop('chaos.' + kind, async () => {
    await chaosKinds[kind]();
    await sleep(rand(10, 200));
  }, false);
}

// ---- the run -------------------------------------------------------------

async function fetchJson(p) {
  const c = await HttpConn.open(5000);
  const r = await c.request(get(p, 'Connection: close\r\n'), 'GET', 10000);
  c.destroy();
  return JSON.parse(r.body.toString());
}

function mix(n) {
  // fractions of the clients, by kind
  const shares = [
    ['keepalive', 0.13], ['pipelined', 0.07], ['slow', 0.04], ['upload', 0.04],
    ['chunked', 0.04], ['stream', 0.12], ['poll', 0.12], ['ws', 0.16],
    ['wsLimit', 0.01], ['slowBody', 0.02],
    ['c:half_request', 0.035], ['c:mid_response', 0.035], ['c:mid_frame', 0.035],
    ['c:reset', 0.035], ['c:stop_reading', 0.03], ['c:slow_loris', 0.035],
    ['c:open_close', 0.035],
  ];
  const chosen = ONLY ? shares.filter(([k]) => ONLY.includes(k)) : shares;
  if (ONLY && chosen.length !== ONLY.length) {
    console.error(`--only: kinds are ${shares.map(([k]) => k).join(',')}`);
    process.exit(2);
  }
  const all = chosen.reduce((a, [, f]) => a + f, 0);
  const out = {};
  for (const [k, f] of chosen) out[k] = Math.max(1, Math.round(n * f / all));
  return out;
}

async function main() {
  const m = mix(CLIENTS);
  const tasks = [];
  let idx = 1;
  const starts = {
    keepalive: (i) => keepalive(i), pipelined: (i) => pipelined(i), slow: (i) => slow(i),
    upload: () => upload(), chunked: () => chunked(), stream: (i) => stream(i),
    poll: () => poll(), ws: (i) => wsGood(i), wsLimit: (i) => wsLimit(i), slowBody: () => slowBody(),
  };
  let total = 0;
  for (const [k, n] of Object.entries(m)) {
    for (let j = 0; j < n; j++) {
      const i = idx++;
      total++;
      // spread the start over the first 2 s
      tasks.push(sleep(rand(0, 2000)).then(() =>
        k.startsWith('c:') ? chaosClient(k.slice(2)) : starts[k](i)));
    }
  }
  const statsBefore = STOP_AT === null ? await fetchJson('/stats') : null;

  if (STOP_AT !== null) {
    await sleep(STOP_AT * 1000);
    running = false;
    const snapshot = [...inflight];
    stopSent = now();
    for (const op of snapshot) {
      op.atStop = true;
      if (op.info && op.info.due !== undefined) { // would it have finished within the 1 s?
        const left = op.info.due - stopSent;
        op.kind += left <= 800 ? ' due in <0.8 s' : left <= 1200 ? ' due in 0.8-1.2 s' : ' due in >1.2 s';
      }
    }
    const byKind = {};
    for (const op of snapshot) count(byKind, op.kind);
    process.kill(PID, 'SIGTERM');
    const openWs = openSockets.size;
    await Promise.race([Promise.all(tasks), sleep(15000)]);
    const never = {};
    for (const op of inflight) if (op.atStop) count(never, op.kind);
    const report = {
      mode: 'stop', stop_at_s: STOP_AT, stop_sent_ms: stopSent, clients: total, mix: m,
      in_flight_at_stop: byKind, outcomes_of_those: stopOps,
      latest_completion_ms_after_stop: stopLate, never_ended: never,
      websockets_open_at_stop: openWs, websocket_close_codes: wsStop,
      latest_ws_close_ms_after_stop: wsStopLate,
      errors_after_stop: stopErrors, stop_verdict: stopVerdict, not_completed: stopCut,
      driver_loop_delay_ms: loopDelayMs(),
      checks, failures, failure_samples: failSamples, chaos, chaos_outcomes: outcomes,
    };
    finish(report);
    return;
  }

  await sleep(DURATION * 1000);
  running = false;
  const tEnd = now();
  const done = await Promise.race([Promise.all(tasks).then(() => true), sleep(150000).then(() => false)]);
  const drained = (now() - tEnd) / 1000;
  await sleep(SETTLE * 1000);
  let stats;
  for (let i = 0; i < 20; i++) { // until every channel has closed
    stats = await fetchJson('/stats');
    if (stats.live === 0 && stats.group_members === 0) break;
    await sleep(500);
  }
  const gc = await fetchJson('/gc');
  const channels = {
    made: stats.made, opened: stats.opened, closed: stats.closed, live: stats.live,
    close_unopened: stats.close_unopened, close_twice: stats.close_twice, open_twice: stats.open_twice,
    live_by_kind: stats.live_by_kind, group_members: stats.group_members,
  };
  check('final.on_close==on_open', stats.opened === stats.closed && stats.live === 0 &&
    stats.close_twice === 0 && stats.open_twice === 0, () => JSON.stringify(channels));
  const report = {
    mode: 'soak', duration_s: DURATION, clients: total, mix: m,
    clients_done: done, drain_s: drained,
    checks, checks_total: Object.values(checks).reduce((a, b) => a + b, 0),
    failures, failure_samples: failSamples,
    chaos, chaos_total: Object.values(chaos).reduce((a, b) => a + b, 0), chaos_outcomes: outcomes,
    slowest_after_resume_s: maxes, driver_loop_delay_ms: loopDelayMs(),
    channels, server_errors: stats.errors, by_kind: stats.by_kind,
    requests_seen_by_app: stats.requests - (statsBefore ? statsBefore.requests : 0),
    broadcasts: stats.broadcasts, deliveries: stats.deliveries, push_refused: stats.push_refused,
    lua_kib_before_gc: stats.lua_kib, lua_kib_after_gc: gc.lua_kib,
    lua_kib_at_start: statsBefore ? statsBefore.lua_kib : null,
  };
  finish(report);
}

function finish(report) {
  const s = JSON.stringify(report, null, 1);
  if (OUT) require('fs').writeFileSync(OUT, s + '\n');
  process.stdout.write(s + '\n');
  process.exit(0);
}

process.on('unhandledRejection', (e) => fail('driver.unhandled', e && e.stack || e));
process.on('uncaughtException', (e) => fail('driver.uncaught', e && e.stack || e));
main().catch((e) => { console.error(e); process.exit(1); });
