// Idle keep-alive HTTP connections for a memory measurement: opens N
// connections to 127.0.0.1:PORT (200 at a time), makes one GET /hello on
// each, prints "ready" once all N have their answer, and holds them open
// for HOLD seconds (default 10). Measure the server's VmRSS before and
// after "ready" (bench/README.md, "What changed").
//
//   node bench/node/idle_http.js PORT N [HOLD]
'use strict';

const net = require('net');

const port = Number(process.argv[2]);
const n = Number(process.argv[3]);
const hold = Number(process.argv[4] || 10);
if (!port || !n) {
  console.error('usage: node bench/node/idle_http.js PORT N [HOLD]');
  process.exit(2);
}

let ready = 0;
const sockets = [];

function open(i) {
  const s = net.connect(port, '127.0.0.1', () => {
    s.write('GET /hello HTTP/1.1\r\nHost: bench\r\n\r\n');
  });
  let got = '';
  s.on('data', (d) => {
    got += d;
    if (!got.includes('Hello, World!')) return;
    got = '';
    if (++ready === n) {
      console.log('ready');
      setTimeout(() => process.exit(0), hold * 1000);
    }
    if (i + 200 < n) open(i + 200);
  });
  s.on('error', (e) => {
    console.error(`connection ${i}: ${e.message}`);
    process.exit(1);
  });
  sockets.push(s);
}

for (let i = 0; i < Math.min(200, n); i++) open(i);
