// Node.js server for bench/compare.sh: the same endpoints as ringlet's
// bench/app.lua and bench/nginx/, on Node's http module and the ws package
// (pinned in package-lock.json; `npm ci` here, or bench/deps.sh).
//
//   GET /hello   200 text/plain "Hello, World!" (Content-Length)
//   GET /stream  200 text/plain, chunked: "chunk 1\n" .. "chunk 10\n"
//   /ws          WebSocket echo, text as text and binary as binary
//   /sub         WebSocket: a subscriber
//   /pub         WebSocket: each message goes to every subscriber, the way
//                ws's README broadcasts (a loop over clients, client.send)
//
//   node bench/node/server.js [PORT] [HOST]   (PORT 0 picks a free one)
//
// Prints "node: listening on http://HOST:PORT" once it listens; SIGTERM and
// SIGINT close the server and every WebSocket and exit 0.
'use strict';

const http = require('http');
const { WebSocket, WebSocketServer } = require('ws');

const port = Number(process.argv[2] || 0);
const host = process.argv[3] || '127.0.0.1';

const HELLO = Buffer.from('Hello, World!');

const server = http.createServer((req, res) => {
  if (req.url === '/hello') {
    res.writeHead(200, {
      'Content-Type': 'text/plain',
      'Content-Length': HELLO.length,
    });
    res.end(HELLO);
  } else if (req.url === '/stream') {
    // No Content-Length: Node sends the writes as chunks.
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    for (let n = 1; n <= 10; n++) res.write(`chunk ${n}\n`);
    res.end();
  } else if (req.url === '/ws') {
    res.writeHead(426, { 'Content-Type': 'text/plain' });
    res.end('WebSocket only\n');
  } else {
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found\n');
  }
});

// ws's defaults: no permessage-deflate on the server side, 100 MiB
// maxPayload, UTF-8 of text messages checked.
const wss = new WebSocketServer({ noServer: true });
const subs = new WebSocketServer({ noServer: true }); // its clients: /sub

server.on('upgrade', (req, socket, head) => {
  if (req.url === '/sub') {
    subs.handleUpgrade(req, socket, head, (ws) => {
      ws.on('error', () => {});
    });
    return;
  }
  if (req.url === '/pub') {
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (data, isBinary) => {
        subs.clients.forEach((client) => {
          if (client.readyState === WebSocket.OPEN) {
            client.send(data, { binary: isBinary });
          }
        });
      });
      ws.on('error', () => {});
    });
    return;
  }
  if (req.url !== '/ws') {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on('error', () => {}); // a peer that goes away; 'close' follows
  });
});

server.listen(port, host, () => {
  const a = server.address();
  console.log(`node: listening on http://${a.address}:${a.port}`);
});

function stop() {
  for (const ws of wss.clients) ws.terminate();
  for (const ws of subs.clients) ws.terminate();
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
