#!/usr/bin/env node
// How long one large response takes, by kind of body, while something else
// loads the server (soak/README.md, "Noticed"): N clients per path, each
// GETting its path over and over on a keep-alive connection for S seconds
// and reading as fast as it can; prints the median, p90 and max seconds
// per response and the count.
//
//   node soak/body_rate.js PORT N S PATH...
//   e.g. node soak/body_rate.js 8090 8 40 '/bigstream?n=256&size=65536' '/big?n=16777216'
//
// Against soak/app.lua: /bigstream is an iterator body (n chunks of size
// bytes, chunked), /big a string body of n bytes (Content-Length).
'use strict';
const net = require('net');

const [port, n, secs] = process.argv.slice(2, 5).map(Number);
const paths = process.argv.slice(5);
if (!port || !n || !secs || !paths.length) {
  console.error('usage: node soak/body_rate.js PORT N SECONDS PATH...');
  process.exit(2);
}
const t0 = Date.now();

// One response: chunked ends with 0 CRLF CRLF; Content-Length counts bytes.
function get(s, path) {
  return new Promise((resolve, reject) => {
    let head = null;
    let buf = Buffer.alloc(0);
    let got = 0;
    let want = -1;
    let tail = '';
    const start = Date.now();
    const done = () => { s.off('data', on); s.off('close', closed); resolve((Date.now() - start) / 1000); };
    const closed = () => reject(new Error('closed'));
    function on(d) {
      if (head === null) {
        buf = Buffer.concat([buf, d]);
        const i = buf.indexOf('\r\n\r\n');
        if (i < 0) return;
        head = buf.subarray(0, i).toString('latin1');
        const m = /content-length: *(\d+)/i.exec(head);
        if (m) want = Number(m[1]);
        d = buf.subarray(i + 4);
      }
      got += d.length;
      tail = (tail + d.subarray(-7).toString('latin1')).slice(-7);
      if (want >= 0 ? got >= want : tail === '\r\n0\r\n\r\n') done();
    }
    s.on('data', on);
    s.once('close', closed);
    s.write(`GET ${path} HTTP/1.1\r\nHost: rate\r\n\r\n`);
  });
}

let errors = 0;
async function client(path, times) {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => {});
  await new Promise((r) => s.once('connect', r));
  try {
    while (Date.now() - t0 < secs * 1000) times.push(await get(s, path));
  } catch (e) { errors++; }
  s.destroy();
}

(async () => {
  const all = paths.map(() => []);
  await Promise.all(paths.flatMap((p, k) => Array.from({ length: n }, () => client(p, all[k]))));
  paths.forEach((p, k) => {
    const v = all[k].sort((a, b) => a - b);
    const q = (f) => v.length ? v[Math.floor(f * (v.length - 1))].toFixed(2) : '-';
    console.log(`${p}: ${v.length} responses, seconds each: median ${q(0.5)}, p90 ${q(0.9)}, max ${q(1)}`);
  });
  if (errors) console.log(`connections lost: ${errors}`);
})();
