'use strict';
// A slow-loris crowd against a ringlet server, and a normal client served
// meanwhile (for spec/hardening_spec.lua):
//
//   node spec/node/slowloris.js PORT CLIENTS BYTE_EVERY_MS DURATION_MS
//
// CLIENTS sockets each send the start of a request and then one header
// byte every BYTE_EVERY_MS, never finishing the head. While they trickle,
// a normal client (a fresh connection each time) GETs /normal every 100 ms
// and records how long each answer took. After DURATION_MS it prints one
// JSON line:
//   {"connected": n, "closed": n (by the server), "got408": n,
//    "open": n (still open at the end), "normal": [ms, ...],
//    "normal_failed": n, "errors": {code: count}}
const net = require('net');
const http = require('http');

const [port, clients, every, duration] = process.argv.slice(2).map(Number);
const out = { connected: 0, closed: 0, got408: 0, open: 0, normal: [],
              normal_failed: 0, errors: {} };
const socks = [];
const t0 = Date.now();

for (let i = 0; i < clients; i++) {
  const s = net.connect(port, '127.0.0.1');
  const st = { sock: s, closed: false, data: '' };
  socks.push(st);
  s.on('connect', () => {
    out.connected++;
    s.write('GET /slow HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    st.timer = setInterval(() => { if (!st.closed) s.write('a'); }, every);
  });
  s.on('data', (d) => { st.data += d.toString('latin1'); });
  s.on('error', (e) => { out.errors[e.code] = (out.errors[e.code] || 0) + 1; });
  s.on('close', () => {
    st.closed = true;
    clearInterval(st.timer);
    out.closed++;
    if (st.data.startsWith('HTTP/1.1 408')) out.got408++;
  });
}

function normal() {
  const start = Date.now();
  const req = http.get({ host: '127.0.0.1', port, path: '/normal',
                         agent: false }, (res) => {
    let body = '';
    res.on('data', (d) => { body += d; });
    res.on('end', () => {
      if (res.statusCode === 200 && body === 'served') {
        out.normal.push(Date.now() - start);
      } else {
        out.normal_failed++;
      }
    });
  });
  req.on('error', () => { out.normal_failed++; });
}

const ticker = setInterval(() => {
  if (Date.now() - t0 < duration - 500) normal();
}, 100);

setTimeout(() => {
  clearInterval(ticker);
  for (const st of socks) {
    if (!st.closed) { out.open++; clearInterval(st.timer); st.sock.destroy(); }
  }
  out.closed -= out.open; // those we closed ourselves just now
  const lua = (v) => Array.isArray(v) ? '{' + v.map(lua).join(',') + '}'
    : typeof v === 'object'
      ? '{' + Object.entries(v).map(([k, x]) => `["${k}"]=${lua(x)}`).join(',') + '}'
      : String(v);
  process.stdout.write(lua(out) + '\n');
  process.exit(0);
}, duration);
