'use strict';
// Independent servers for spec/client_spec.lua (ringlet.client): Node's
// http, the npm package `ws` and raw `net` peers that break HTTP or
// WebSocket on purpose.
//
//   node spec/node/upstream.js
//
// Listens on 127.0.0.1, ports picked by the kernel, and prints one line, a
// Lua table: {http=PORT, raw=PORT}. It runs until SIGTERM/SIGINT, or until
// 30 * RINGLET_TEST_TIMEOUT seconds have passed (a bound for a spec run
// that forgot it). Answers that describe something are Lua tables too
// (spec/helper.lua's decode reads them).
//
// The http port (Node's http.Server, keep-alive as Node does it):
//   /hello                    200 "hello from node" (Content-Length)
//   /echo                     the request as a Lua table: method, url,
//                             version, headers (an array of {name, value}
//                             in order, names as sent), body
//   /conn                     the client's port: the same on a connection
//                             the client kept alive (also in x-remote-port)
//   /chunked?n=N              chunked, N chunks "piece-1\n", ... one per
//                             write, a few ms apart
//   /close-delimited?n=N      HTTP/1.0 style: Connection: close, no length;
//                             N lines "line-1\n", ... then the close
//   /big?size=N[&chunked=1]   N bytes of PATTERN (below), Content-Length
//                             (or chunked), written as the socket drains
//   /slow?n=N&every=MS        chunked: "slow-1\n", ... one every MS ms
//   /slow-head?ms=MS          the head (and "late") only after MS ms
//   /redirect/CODE/K          K > 1: CODE to /redirect/CODE/K-1; K = 1:
//                             CODE to /echo. 303 and 307 keep the query
//   /redirect-to?url=U&code=C a redirect (default 302) to U, absolute
//   /headers                  repeated headers: two set-cookie, two x-multi
//                             lines, an X-Mixed-Case one
//   /status?code=N            status N, body "status N" (none for 204/304)
//   /head                     Content-Length 12345 and, unless HEAD, that
//                             many bytes "h"
//   /stream?id=ID             an endless chunked stream: "tick-1\n", ...
//                             every 10 ms until the client goes away
//   /fast-stream?id=ID&size=N N bytes of PATTERN chunked as fast as the
//                             client takes them (a write waits for drain)
//   /stats?id=ID              that stream's {sent = bytes handed to the
//                             socket, done = all sent, closed = the
//                             connection closed before it was done}
//   /forward?port=P           starts a TCP forwarder to 127.0.0.1:P (a
//                             ringlet server) on a new port; answers
//                             {port = FORWARDER}
//   /forward-stats?port=F     {accepted = connections so far, open = those
//                             still open} of forwarder F
//   /raw-stats                the raw port's record: {connections = n,
//                             log = {"METHOD /path", ...} every request,
//                             ws_close_code = the code of the last close
//                             frame a client sent it, masks = {...}}
// WebSocket (package ws) on the same port, by path:
//   /ws/echo[?id=ID]          each message back, same type; /stats?id=ID
//                             tells {pings = pings received, close_code,
//                             close_reason}
//   /ws/fragments             sends "one two three" as three text
//                             fragments with a ping between the first
//                             two, then 256 bytes 0..255 as two binary
//                             fragments, then "done"
//   /ws/close?code=C&reason=R closes with C, R once the first message came
//   /ws/ping                  pings "hb-1"; tells "pong:PAYLOAD" when the
//                             pong comes
//   /ws/proto                 picks chat.v2 when offered (else none);
//                             sends "protocol:NAME"
//   /ws/headers               sends the upgrade request's headers as a Lua
//                             table {name = value} (names lower-case)
//   /ws/flood?id=ID&n=N&size=S sends N binary messages of S bytes at
//                             once, message i starting with i (4 bytes,
//                             big-endian); /stats?id=ID then tells
//                             {sent = N, buffered = what ws still holds}
//   /ws/send?size=N           sends N binary bytes of PATTERN, then records
//                             the close code the client sent in /raw-stats
//                             (ws_close_code)
// The raw port (net): reads one request head, then by path:
//   /garbage                  "SSH-2.0-OpenSSH_9.2p1\r\n" and stays open
//   /bad-status               "HTTP/1.1 2x0 OK"
//   /bad-length               Content-Length: twelve
//   /bad-chunk                a chunk size "zz"
//   /short-length             Content-Length: 100, 10 bytes, then a close
//   /chunk-cut                one chunk, then a close (no last chunk)
//   /never                    reads the request, never answers, stays open
//   /reset                    reads the request, resets the connection (RST)
//   /never-body               Content-Length: 100, 10 bytes, stays open
//   /big-header?size=N        a header line with an N-byte value
//   /idle-close               "ok" kept alive, the connection closed by us
//                             50 ms later (connections counted in
//                             /raw-stats)
//   /drop-second              the first request on a connection: "ok",
//                             kept alive; the next one on it: closed
//                             without an answer
//   /early-hints              a 103 and a 100, then 200 "final"
//   /cl-and-te                both Content-Length and chunked
//   /two-lengths              two different Content-Length headers
//   /answer-early             413 (Connection: close) at once, the
//                             request's body left unread
//   /close-after              "ok" with Connection: close, then deaf to
//                             anything more for 300 ms, then the close
//   /no-body?code=N           N (204, 304) with Content-Length: 10 and,
//                             as HTTP has it for those, no body
//   /head-chunked             chunked and no body (an answer to HEAD)
//   /trailers                 chunks with extensions, then a trailer
//   /chunk-overflow           a chunk size past 64 bits
//   /ws-200                   a 200 to an upgrade
//   /ws-bad-accept            101 with a wrong Sec-WebSocket-Accept
//   /ws-proto-unoffered       101 naming a subprotocol not offered
//   /ws-masked                a good 101, then a masked text frame "hi";
//                             records the close code the client sends
//   /ws-raw?hex=HEX           a good 101, then the bytes HEX as they are;
//                             records the close code the client sends
//   /ws-masks                 a good 101; records each client frame's mask
//                             bit and key (masks in /raw-stats); after
//                             three data frames sends "masks" back
// PATTERN: 16-byte lines, line k (from 0) is k in decimal, zero-padded to
// 15 digits, then "\n"; a size not a multiple of 16 cuts the last line.
const http = require('http');
const net = require('net');
const crypto = require('crypto');
const WebSocket = require('ws');

const TIMEOUT = 1000 * (Number(process.env.RINGLET_TEST_TIMEOUT) || 10);

const lua = (v) => {
  if (v === null || v === undefined) return 'nil';
  if (Array.isArray(v)) return '{' + v.map(lua).join(',') + '}';
  if (Buffer.isBuffer(v)) v = v.toString('latin1');
  if (typeof v === 'string') {
    return '"' + v.replace(/[\\"\x00-\x1f\x7f-\xff]/g,
      (c) => '\\' + String(c.charCodeAt(0)).padStart(3, '0')) + '"';
  }
  if (typeof v === 'object') {
    return '{' + Object.entries(v).map(([k, x]) => `[${lua(k)}]=${lua(x)}`)
      .join(',') + '}';
  }
  return String(v);
};

function pattern(start, size) { // bytes [start, start + size) of PATTERN
  const first = Math.floor(start / 16);
  const last = Math.floor((start + size + 15) / 16);
  const lines = [];
  for (let k = first; k < last; k++) {
    lines.push(String(k).padStart(15, '0') + '\n');
  }
  const off = start - first * 16;
  return Buffer.from(lines.join(''), 'latin1').subarray(off, off + size);
}

function text(res, status, body, headers) {
  res.writeHead(status, Object.assign({ 'content-type': 'text/plain',
    'content-length': Buffer.byteLength(body) }, headers || {}));
  res.end(body);
}

// Writes size bytes of PATTERN, waiting for 'drain' whenever write says
// the socket is full; st.sent counts what was handed over.
function pump(res, size, st) {
  const PIECE = 65536;
  const more = () => {
    while (st.sent < size) {
      if (res.destroyed) return;
      const n = Math.min(PIECE, size - st.sent);
      const ok = res.write(pattern(st.sent, n));
      st.sent += n;
      if (!ok) { res.once('drain', more); return; }
    }
    st.done = true;
    res.end();
  };
  more();
}

const streams = {}; // id -> {sent, done, closed, ticks}
const forwarders = {}; // port -> {accepted, open}
const raw = { connections: 0, ws_close_code: null, masks: [], log: [] };

function startForwarder(target, done) {
  const st = { accepted: 0, open: 0 };
  const srv = net.createServer((c) => {
    st.accepted++;
    st.open++;
    const up = net.connect(target, '127.0.0.1');
    c.pipe(up);
    up.pipe(c);
    let closed = false;
    const close = () => {
      if (closed) return;
      closed = true;
      st.open--;
      c.destroy();
      up.destroy();
    };
    c.on('close', close);
    up.on('close', close);
    c.on('error', close);
    up.on('error', close);
  });
  srv.listen(0, '127.0.0.1', () => {
    forwarders[srv.address().port] = st;
    done(srv.address().port);
  });
}

const routes = {
  '/hello': (req, res) => text(res, 200, 'hello from node'),
  '/echo': (req, res) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', () => {
      const headers = [];
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        headers.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);
      }
      text(res, 200, lua({ method: req.method, url: req.url,
        version: req.httpVersion, headers,
        body: Buffer.concat(parts) }));
    });
  },
  '/conn': (req, res) => {
    const port = String(req.socket.remotePort);
    text(res, 200, port, { 'x-remote-port': port });
  },
  '/chunked': (req, res, q) => {
    const n = Number(q.get('n') || 3);
    res.writeHead(200, { 'content-type': 'text/plain' });
    let i = 0;
    const next = () => {
      if (++i > n) { res.end(); return; }
      res.write(`piece-${i}\n`);
      setTimeout(next, 5);
    };
    next();
  },
  '/close-delimited': (req, res, q) => {
    const n = Number(q.get('n') || 3);
    res.useChunkedEncodingByDefault = false; // as to an HTTP/1.0 client
    res.shouldKeepAlive = false;
    res.writeHead(200, { 'content-type': 'text/plain', connection: 'close' });
    let i = 0;
    const next = () => {
      if (++i > n) { res.end(); return; }
      res.write(`line-${i}\n`);
      setTimeout(next, 5);
    };
    next();
  },
  '/big': (req, res, q) => {
    const size = Number(q.get('size'));
    const headers = { 'content-type': 'application/octet-stream' };
    if (q.get('chunked') !== '1') headers['content-length'] = size;
    res.writeHead(200, headers);
    pump(res, size, { sent: 0 });
  },
  '/slow': (req, res, q) => {
    const n = Number(q.get('n') || 3);
    const every = Number(q.get('every') || 50);
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.flushHeaders();
    let i = 0;
    const timer = setInterval(() => {
      if (++i > n) { clearInterval(timer); res.end(); return; }
      res.write(`slow-${i}\n`);
    }, every);
    res.on('close', () => clearInterval(timer));
  },
  '/slow-head': (req, res, q) => {
    const t = setTimeout(() => text(res, 200, 'late'),
      Number(q.get('ms') || 1000));
    res.on('close', () => clearTimeout(t));
  },
  '/redirect-to': (req, res, q) => {
    res.writeHead(Number(q.get('code') || 302),
      { location: q.get('url'), 'content-length': 0 });
    res.end();
  },
  '/headers': (req, res) => {
    res.setHeader('Set-Cookie', ['a=1; Path=/', 'b=2']);
    res.setHeader('X-Multi', ['one', 'two']);
    res.setHeader('X-Mixed-Case', 'Value');
    text(res, 200, 'headers');
  },
  '/status': (req, res, q) => {
    const code = Number(q.get('code'));
    if (code === 204 || code === 304) {
      res.writeHead(code);
      res.end();
    } else {
      text(res, code, `status ${code}`);
    }
  },
  '/head': (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain',
      'content-length': 12345 });
    res.end(req.method === 'HEAD' ? undefined : 'h'.repeat(12345));
  },
  '/stream': (req, res, q) => {
    const st = { sent: 0, done: false, closed: false, ticks: 0 };
    streams[q.get('id')] = st;
    res.writeHead(200, { 'content-type': 'text/plain' });
    const timer = setInterval(() => {
      const piece = `tick-${++st.ticks}\n`;
      st.sent += piece.length;
      res.write(piece);
    }, 10);
    res.on('close', () => { clearInterval(timer); st.closed = true; });
  },
  '/fast-stream': (req, res, q) => {
    const st = { sent: 0, done: false, closed: false };
    streams[q.get('id')] = st;
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.on('close', () => { if (!st.done) st.closed = true; });
    pump(res, Number(q.get('size')), st);
  },
  '/stats': (req, res, q) => text(res, 200, lua(streams[q.get('id')] || {})),
  '/forward': (req, res, q) => startForwarder(Number(q.get('port')),
    (port) => text(res, 200, lua({ port }))),
  '/forward-stats': (req, res, q) =>
    text(res, 200, lua(forwarders[q.get('port')] || {})),
  '/raw-stats': (req, res) => text(res, 200, lua(raw)),
};

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  const m = url.pathname.match(/^\/redirect\/(\d+)\/(\d+)$/);
  if (m) {
    const k = Number(m[2]);
    const to = k > 1 ? `/redirect/${m[1]}/${k - 1}` : '/echo';
    res.writeHead(Number(m[1]), { location: to + url.search,
      'content-length': 0 });
    res.end();
    return;
  }
  const route = routes[url.pathname];
  if (route) return route(req, res, url.searchParams);
  text(res, 404, `no route for ${url.pathname}`);
});

// --- WebSocket (ws) ---------------------------------------------------------

const wss = new WebSocket.Server({
  noServer: true,
  handleProtocols: (protocols) => protocols.has('chat.v2') ? 'chat.v2' : false,
});

const wsRoutes = {
  '/ws/echo': (ws, q) => {
    const st = { pings: 0, close_code: null, close_reason: null };
    if (q.get('id')) streams[q.get('id')] = st;
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on('ping', () => { st.pings++; });
    ws.on('close', (code, reason) => {
      st.close_code = code;
      st.close_reason = reason.toString();
    });
  },
  '/ws/fragments': (ws) => {
    ws.send('one ', { fin: false });
    ws.ping('between');
    ws.send('two ', { fin: false });
    ws.send('three', { fin: true });
    const bytes = Buffer.alloc(256);
    for (let i = 0; i < 256; i++) bytes[i] = i;
    ws.send(bytes.subarray(0, 100), { binary: true, fin: false });
    ws.send(bytes.subarray(100), { binary: true, fin: true });
    ws.send('done');
  },
  '/ws/close': (ws, q) => {
    ws.once('message', () => ws.close(Number(q.get('code') || 1000),
      q.get('reason') || ''));
  },
  '/ws/ping': (ws) => {
    ws.on('pong', (data) => ws.send('pong:' + data.toString()));
    ws.ping('hb-1');
  },
  '/ws/proto': (ws) => ws.send('protocol:' + ws.protocol),
  '/ws/headers': (ws, q, req) => {
    const h = {};
    for (const [k, v] of Object.entries(req.headers)) h[k] = String(v);
    ws.send(lua(h));
  },
  '/ws/flood': (ws, q) => {
    const n = Number(q.get('n'));
    const size = Number(q.get('size'));
    const st = { sent: n, buffered: 0 };
    streams[q.get('id')] = st;
    for (let i = 0; i < n; i++) {
      const b = Buffer.alloc(size, i % 256);
      b.writeUInt32BE(i, 0);
      ws.send(b, { binary: true });
    }
    const timer = setInterval(() => { st.buffered = ws.bufferedAmount; }, 20);
    ws.on('close', () => clearInterval(timer));
  },
  '/ws/send': (ws, q) => {
    raw.ws_close_code = null;
    ws.on('close', (code) => { raw.ws_close_code = code; });
    ws.send(pattern(0, Number(q.get('size'))), { binary: true });
  },
};

server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  const route = wsRoutes[url.pathname];
  if (!route) { socket.destroy(); return; }
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.on('error', () => {});
    route(ws, url.searchParams, req);
  });
});

// --- raw peers --------------------------------------------------------------

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const accept = (key) => crypto.createHash('sha1').update(key + GUID)
  .digest('base64');

function upgradeHead(key, extra) {
  return 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n'
    + `Connection: Upgrade\r\nSec-WebSocket-Accept: ${accept(key)}\r\n`
    + (extra || '') + '\r\n';
}

// Client frames after a handshake: calls fn({fin, opcode, masked, mask,
// payload}) for each whole frame.
function frameReader(fn) {
  let buf = Buffer.alloc(0);
  return (data) => {
    buf = Buffer.concat([buf, data]);
    for (;;) {
      if (buf.length < 2) return;
      const masked = (buf[1] & 0x80) !== 0;
      let len = buf[1] & 0x7f;
      let off = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (buf.length < 10) return;
        len = Number(buf.readBigUInt64BE(2));
        off = 10;
      }
      const mask = masked ? buf.subarray(off, off + 4) : null;
      if (masked) off += 4;
      if (buf.length < off + len) return;
      const payload = Buffer.from(buf.subarray(off, off + len));
      if (masked) for (let i = 0; i < len; i++) payload[i] ^= mask[i % 4];
      fn({ fin: (buf[0] & 0x80) !== 0, opcode: buf[0] & 0x0f, masked,
        mask: mask ? mask.toString('hex') : '', payload });
      buf = buf.subarray(off + len);
    }
  };
}

function frame(opcode, payload, mask) {
  const p = Buffer.from(payload);
  const head = [0x80 | opcode, (mask ? 0x80 : 0) | p.length];
  if (mask) {
    const key = Buffer.from([0x37, 0xfa, 0x21, 0x3d]);
    for (let i = 0; i < p.length; i++) p[i] ^= key[i % 4];
    return Buffer.concat([Buffer.from(head), key, p]);
  }
  return Buffer.concat([Buffer.from(head), p]);
}

function recordClose(f, sock) {
  if (f.opcode === 8) {
    raw.ws_close_code = f.payload.length >= 2 ? f.payload.readUInt16BE(0)
      : 1005;
    sock.end(frame(8, f.payload.subarray(0, 2)));
    return true;
  }
  return false;
}

const rawRoutes = {
  '/garbage': (s) => s.write('SSH-2.0-OpenSSH_9.2p1\r\n'),
  '/bad-status': (s) => s.write('HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n'),
  '/bad-length': (s) =>
    s.write('HTTP/1.1 200 OK\r\nContent-Length: twelve\r\n\r\n'),
  '/bad-chunk': (s) => s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: '
    + 'chunked\r\n\r\n5\r\nhello\r\nzz\r\n'),
  '/short-length': (s) => s.end('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n'
    + '\r\n0123456789'),
  '/chunk-cut': (s) => s.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: '
    + 'chunked\r\n\r\n5\r\nhello\r\n'),
  '/never': () => {},
  '/reset': (s) => s.resetAndDestroy(),
  '/never-body': (s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n'
    + '\r\n0123456789'),
  '/big-header': (s, q) => s.write('HTTP/1.1 200 OK\r\nX-Big: '
    + 'b'.repeat(Number(q.get('size'))) + '\r\nContent-Length: 2\r\n\r\nok'),
  '/drop-second': (s) => {
    if (s.requests === 1) {
      s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    } else {
      s.end(); // the second request on a connection: closed unanswered
    }
  },
  '/early-hints': (s) => s.write('HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n'
    + '\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n'
    + 'Content-Length: 5\r\n\r\nfinal'),
  '/cl-and-te': (s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n'
    + 'Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'),
  '/two-lengths': (s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n'
    + 'Content-Length: 5\r\n\r\nhello'),
  '/answer-early': (s) => {
    // a 413 as soon as the head is in, the body unread; closed after
    s.end('HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\n'
      + 'Connection: close\r\n\r\ntoo big!');
    return () => {};
  },
  '/close-after': (s) => {
    // Connection: close, then deaf: anything more on it goes unanswered
    s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close'
      + '\r\n\r\nok');
    setTimeout(() => s.end(), 300);
    return () => {};
  },
  '/no-body': (s, q) => s.write(`HTTP/1.1 ${q.get('code')} No Body\r\n`
    + 'Content-Length: 10\r\n\r\n'),
  '/head-chunked': (s) => s.write('HTTP/1.1 200 OK\r\n'
    + 'Transfer-Encoding: chunked\r\n\r\n'),
  '/trailers': (s) => s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: '
    + 'chunked\r\nTrailer: X-T\r\n\r\n5;ext=1\r\nhello\r\n'
    + '1;a="b"\r\n!\r\n0\r\nX-T: t\r\n\r\n'),
  '/chunk-overflow': (s) => s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: '
    + 'chunked\r\n\r\nfffffffffffffffff1\r\nhello\r\n'),
  '/idle-close': (s) => {
    s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    setTimeout(() => s.end(), 50);
  },
  '/ws-200': (s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno'),
  '/ws-bad-accept': (s, q, h) => s.write(upgradeHead(h['sec-websocket-key']
    + 'x')),
  '/ws-proto-unoffered': (s, q, h) => s.write(upgradeHead(
    h['sec-websocket-key'], 'Sec-WebSocket-Protocol: never.offered\r\n')),
  '/ws-masked': (s, q, h) => {
    raw.ws_close_code = null;
    s.write(upgradeHead(h['sec-websocket-key']));
    s.write(frame(1, 'hi', true));
    return frameReader((f) => recordClose(f, s));
  },
  '/ws-raw': (s, q, h) => {
    raw.ws_close_code = null;
    s.write(upgradeHead(h['sec-websocket-key']));
    s.write(Buffer.from(q.get('hex'), 'hex'));
    return frameReader((f) => recordClose(f, s));
  },
  '/ws-masks': (s, q, h) => {
    s.write(upgradeHead(h['sec-websocket-key']));
    raw.masks = [];
    return frameReader((f) => {
      if (recordClose(f, s)) return;
      raw.masks.push({ masked: f.masked, mask: f.mask,
        payload: f.payload.toString('latin1') });
      if (raw.masks.length === 3) s.write(frame(1, 'masks'));
    });
  },
};

const rawServer = net.createServer((s) => {
  raw.connections++;
  s.on('error', () => {});
  let buf = Buffer.alloc(0);
  let onData = null; // after the head: what reads the rest
  s.on('data', (d) => {
    if (onData) { onData(d); return; }
    buf = Buffer.concat([buf, d]);
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
    const rest = buf.subarray(end + 4);
    buf = Buffer.alloc(0);
    const target = (lines[0].split(' ')[1]) || '/';
    const headers = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    const url = new URL(target, 'http://127.0.0.1');
    const route = rawRoutes[url.pathname];
    s.requests = (s.requests || 0) + 1;
    raw.log.push(`${lines[0].split(' ')[0]} ${url.pathname}`);
    if (!route) {
      s.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const r = route(s, url.searchParams, headers);
    if (typeof r === 'function') {
      onData = r;
      if (rest.length) r(rest);
    }
  });
});

// --- start ------------------------------------------------------------------

server.listen(0, '127.0.0.1', () => {
  rawServer.listen(0, '127.0.0.1', () => {
    process.stdout.write(lua({ http: server.address().port,
      raw: rawServer.address().port }) + '\n');
  });
});

const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setTimeout(stop, 30 * TIMEOUT).unref();
