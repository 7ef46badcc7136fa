/* fuzz_websocket: the WebSocket frame path. The client upgrades with a
 * valid handshake (app_websocket.lua answers with an echoing channel),
 * then writes the fuzzer's frames, raw or built from a description, split
 * at fuzzer-chosen points; everything the server writes back is checked as
 * a server's frames must be (RFC 6455).
 *
 * Input: byte 0 the configuration:
 *          bits 0-1  max_ws (app_websocket.lua)
 *          bit  2    frames in the same write as the handshake (else after
 *                    the 101 has come)
 *          bit  3    structured: the rest describes frames (below), else
 *                    the rest is raw bytes
 *        byte 1 how to split the frames' bytes (harness.c fz_send_split)
 * Structured, per frame:
 *        A   the first header byte as is (FIN, RSV, opcode)
 *        B   bit 7 unmasked; bits 5-6 the length's form (0 minimal, 1 16-bit,
 *            2 64-bit, 3 64-bit and a length of the next 8 bytes, which
 *            need not be the payload's); bits 0-4 the payload length's low
 *            bits
 *        C   the payload length's high bits (length = B & 31 | C << 5)
 *        the payload (bytes of the input; 'x' once it runs out) */
#define _GNU_SOURCE /* memmem */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

extern const char fz_app_websocket[];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char handshake[] =
    "GET /ws HTTP/1.1\r\nHost: fuzz\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n";
static const char accept_line[] =
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n";

typedef struct {
  uint8_t *p;
  size_t len, cap;
} bytes;

static void put(bytes *b, const void *p, size_t n) {
  if (n == 0)
    return;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + n)
      cap *= 2;
    b->p = realloc(b->p, cap);
    if (b->p == NULL)
      FZ_TRAP("out of memory");
    b->cap = cap;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
}

/* Frames from a description (see the top). */
static void build_frames(fz_in *in, bytes *out) {
  for (int i = 0; in->n > 0 && i < 64; i++) {
    uint8_t h[14];
    size_t hl = 2;
    unsigned a = fz_byte(in), b = fz_byte(in), c = fz_byte(in);
    size_t len = (b & 31) | c << 5;
    int masked = !(b & 0x80), form = (b >> 5) & 3;
    uint64_t declared = len;
    if (form == 0 && len >= 126)
      form = len > 0xffff ? 2 : 1;
    h[0] = (uint8_t)a;
    if (form == 0) {
      h[1] = (uint8_t)len;
    } else if (form == 1) {
      h[1] = 126;
      h[2] = (uint8_t)(len >> 8);
      h[3] = (uint8_t)len;
      hl = 4;
    } else {
      if (form == 3) {
        declared = 0;
        for (int k = 0; k < 8; k++)
          declared = declared << 8 | fz_byte(in);
      }
      h[1] = 127;
      for (int k = 0; k < 8; k++)
        h[2 + k] = (uint8_t)(declared >> (56 - 8 * k));
      hl = 10;
    }
    uint8_t key[4] = {(uint8_t)(i * 59 + 1), (uint8_t)(i * 81 + 2),
                      (uint8_t)(i * 23 + 3), (uint8_t)(i * 45 + 4)};
    if (masked) {
      h[1] |= 0x80;
      memcpy(h + hl, key, 4);
      hl += 4;
    }
    put(out, h, hl);
    for (size_t k = 0; k < len; k++) {
      uint8_t ch = in->n ? (uint8_t)fz_byte(in) : 'x';
      if (masked)
        ch ^= key[k & 3];
      put(out, &ch, 1);
    }
  }
}

/* ---- what the server wrote ------------------------------------------------
 */

static int utf8_ok(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t b = s[i++];
    if (b < 0x80)
      continue;
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF)
      need = 1;
    else if (b == 0xE0)
      need = 2, lo = 0xA0;
    else if (b == 0xED)
      need = 2, hi = 0x9F;
    else if (b >= 0xE1 && b <= 0xEF)
      need = 2;
    else if (b == 0xF0)
      need = 3, lo = 0x90;
    else if (b >= 0xF1 && b <= 0xF3)
      need = 3;
    else if (b == 0xF4)
      need = 3, hi = 0x8F;
    else
      return 0;
    for (int k = 0; k < need; k++, lo = 0x80, hi = 0xBF) {
      if (i >= n || s[i] < lo || s[i] > hi)
        return 0;
      i++;
    }
  }
  return 1;
}

/* ---- what the client sent: the messages a server may echo ------------------
 * The client's frames parsed naively (unmasked, fragments gathered, no
 * rule checked): a correct server echoes only some of these messages, in
 * this order (the app may send one twice), answers pings with their
 * payloads and sends the app's pings and pongs ("?" and "^" messages). */

#define MAXMSG 4096

typedef struct {
  bytes buf;         /* the messages' bytes, one after another */
  size_t at[MAXMSG]; /* where each starts in buf */
  size_t len[MAXMSG];
  int op[MAXMSG]; /* 1 text, 2 binary, 9 a ping's payload */
  int n;
  int full; /* more messages than MAXMSG: the rest are not checked */
} sent;

static void add_msg(sent *m, int op, const uint8_t *p, size_t n) {
  if (m->n == MAXMSG) {
    m->full = 1;
    return;
  }
  m->at[m->n] = m->buf.len;
  m->len[m->n] = n;
  m->op[m->n] = op;
  put(&m->buf, p, n);
  m->n++;
}

static void client_messages(const uint8_t *p, size_t n, sent *m) {
  bytes msg = {0};
  int msg_op = 0;
  while (n >= 2) {
    int fin = p[0] >> 7, op = p[0] & 15, masked = p[1] >> 7;
    uint64_t len = p[1] & 127;
    size_t hl = 2 + (len == 126 ? 2 : len == 127 ? 8 : 0) + (masked ? 4 : 0);
    if (n < hl)
      break;
    if (len == 126) {
      len = (uint64_t)p[2] << 8 | p[3];
    } else if (len == 127) {
      len = 0;
      for (int k = 2; k < 10; k++)
        len = len << 8 | p[k];
    }
    if (len > n - hl)
      len = n - hl; /* the server waits for the rest, or fails */
    uint8_t *pl = malloc(len ? (size_t)len : 1);
    if (pl == NULL)
      FZ_TRAP("out of memory");
    for (size_t k = 0; k < len; k++)
      pl[k] = p[hl + k] ^ (masked ? p[hl - 4 + (k & 3)] : 0);
    if (op == 1 || op == 2) {
      msg.len = 0;
      msg_op = op;
    }
    if (op <= 2) {
      put(&msg, pl, (size_t)len);
      if (fin && msg_op)
        add_msg(m, msg_op, msg.p ? msg.p : pl, msg.len);
      if (fin)
        msg_op = 0;
    } else if (op == 9) {
      add_msg(m, 9, pl, (size_t)len);
    }
    free(pl);
    p += hl + len;
    n -= hl + (size_t)len;
    if (op == 8)
      break; /* the server reads no frame after a close */
  }
  free(msg.p);
}

static int same(const sent *m, int i, const uint8_t *p, size_t n, size_t skip) {
  size_t len = m->len[i] > skip ? m->len[i] - skip : 0;
  if (len > 125 && skip)
    len = 125; /* msg:sub(2, 126) */
  return len == n && (n == 0 || memcmp(m->buf.p + m->at[i] + skip, p, n) == 0);
}

/* A pong's payload: a ping's, or a "^" message's rest. */
static int known_control(const sent *m, int op, const uint8_t *p, size_t n) {
  for (int i = 0; i < m->n; i++) {
    if (op == 10 && m->op[i] == 9 && same(m, i, p, n, 0))
      return 1;
    if (m->op[i] != 9 && m->len[i] > 0 &&
        m->buf.p[m->at[i]] == (op == 10 ? '^' : '?') && same(m, i, p, n, 1))
      return 1;
  }
  return 0;
}

static int sendable_code(int code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

/* The 101 and the frames after it; a frame cut short at the end is allowed
 * (the connection closes at the client's EOF, dropping what is queued). */
static void check_output(const uint8_t *p, size_t n, const sent *m) {
  int next = 0, repeats = 0; /* the echo's place in the client's messages */
  static const char ok[] = "HTTP/1.1 101 Switching Protocols\r\n";
  if (n < sizeof ok - 1 || memcmp(p, ok, sizeof ok - 1) != 0)
    FZ_TRAP("no 101 for a valid handshake: %.*s", (int)(n > 80 ? 80 : n), p);
  const uint8_t *end = NULL;
  for (size_t i = 0; i + 3 < n; i++)
    if (memcmp(p + i, "\r\n\r\n", 4) == 0) {
      end = p + i + 4;
      break;
    }
  if (end == NULL)
    return; /* cut short */
  if (memmem(p, (size_t)(end - p), accept_line, sizeof accept_line - 1) == NULL)
    FZ_TRAP("the 101 lacks the right Sec-WebSocket-Accept");
  size_t left = n - (size_t)(end - p);
  p = end;
  int closed = 0;
  while (left >= 2) {
    int fin = p[0] >> 7, rsv = (p[0] >> 4) & 7, op = p[0] & 15;
    int masked = p[1] >> 7, len7 = p[1] & 127;
    size_t hl = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
    if (closed)
      FZ_TRAP("a frame (opcode %d) after the server's close frame", op);
    if (!fin || rsv || masked)
      FZ_TRAP("a server frame with fin %d, rsv %d, masked %d", fin, rsv,
              masked);
    if (op != 1 && op != 2 && op != 8 && op != 9 && op != 10)
      FZ_TRAP("a server frame with opcode %d", op);
    if (left < hl)
      return;
    uint64_t len = (uint64_t)len7;
    if (len7 == 126) {
      len = (uint64_t)p[2] << 8 | p[3];
      if (len < 126)
        FZ_TRAP("a non-minimal 16-bit length %u", (unsigned)len);
    } else if (len7 == 127) {
      len = 0;
      for (int k = 2; k < 10; k++)
        len = len << 8 | p[k];
      if (len <= 0xffff || len >> 63)
        FZ_TRAP("a bad 64-bit length %llu", (unsigned long long)len);
    }
    if (op >= 8 && len > 125)
      FZ_TRAP("a control frame of %llu bytes", (unsigned long long)len);
    if (left - hl < len)
      return;
    const uint8_t *pl = p + hl;
    if (op == 8) {
      closed = 1;
      if (len == 1)
        FZ_TRAP("a close frame with a one-byte payload");
      if (len >= 2) {
        int code = pl[0] << 8 | pl[1];
        if (!sendable_code(code))
          FZ_TRAP("a close frame with code %d", code);
        if (!utf8_ok(pl + 2, (size_t)len - 2))
          FZ_TRAP("a close reason that is not UTF-8");
      }
    }
    if (op == 1 && !utf8_ok(pl, (size_t)len))
      FZ_TRAP("a text frame that is not UTF-8");
    if (op == 1 || op == 2) { /* an echo of the next messages, in order */
      int i = next;
      if (repeats > 0 && i > 0 && m->op[i - 1] == op &&
          same(m, i - 1, pl, (size_t)len, 0) && repeats < 2) {
        repeats++; /* "*" and "~" send a message twice */
      } else {
        while (i < m->n && !(m->op[i] == op && same(m, i, pl, (size_t)len, 0)))
          i++;
        if (i == m->n && m->full)
          return; /* past what the model holds */
        if (i == m->n)
          FZ_TRAP("the server sent a %s message of %llu bytes the client "
                  "never sent (or out of order)",
                  op == 1 ? "text" : "binary", (unsigned long long)len);
        next = i + 1;
        repeats = 1;
      }
    }
    if ((op == 9 || op == 10) && !m->full &&
        !known_control(m, op, pl, (size_t)len))
      FZ_TRAP("a %s the client did not ask for (%llu bytes)",
              op == 9 ? "ping" : "pong", (unsigned long long)len);
    p += hl + len;
    left -= hl + (size_t)len;
  }
}

static int got_head(fz_client *c) {
  return c->got_len >= 4 && memmem(c->got, c->got_len, "\r\n\r\n", 4) != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_init(fz_app_websocket, "@fuzz/app_websocket.lua");
  fz_in in = {data, size};
  unsigned cfg = fz_byte(&in), mode = fz_byte(&in);
  int port = fz_port((int)(cfg & 3));
  bytes frames = {0};
  if (cfg & 8)
    build_frames(&in, &frames);
  else
    put(&frames, in.p, in.n);
  fz_client c;
  memset(&c, 0, sizeof c);
  c.keep = 1;
  fz_open(&c, port);
  if (cfg & 4) { /* the handshake and the first frames in one write */
    bytes all = {0};
    put(&all, handshake, sizeof handshake - 1);
    if (frames.len)
      put(&all, frames.p, frames.len);
    size_t first =
        frames.len && mode ? 1 + frames.p[0] % frames.len : frames.len;
    fz_send(&c, all.p, sizeof handshake - 1 + first);
    fz_send_split(&c, all.p + sizeof handshake - 1 + first, frames.len - first,
                  mode);
    free(all.p);
  } else {
    fz_send(&c, handshake, sizeof handshake - 1);
    fz_wait(&c, got_head, 50);
    fz_send_split(&c, frames.p, frames.len, mode);
  }
  fz_finish(&c);
  static sent m;
  m.n = m.full = 0;
  m.buf.len = 0;
  if (c.sent_len >= sizeof handshake - 1) /* the frames as written */
    client_messages((const uint8_t *)c.sent + sizeof handshake - 1,
                    c.sent_len - (sizeof handshake - 1), &m);
  check_output((const uint8_t *)c.got, c.got_len, &m);
  fz_free(&c);
  free(frames.p);
  fz_end(port, 0);
  return 0;
}
