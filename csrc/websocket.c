/* WebSockets (ws.h, RFC 6455): a protocol above the transport.
 *
 * Frames are parsed straight out of the connection's read buffer: a
 * payload is unmasked in place, eight bytes at a time, and a whole
 * unfragmented message becomes a Lua string without another copy. Only a
 * fragmented message is gathered in a buffer of its own. Text is checked as
 * UTF-8 as it arrives (ASCII eight bytes at a time), so a bad byte fails the
 * connection at once, across fragments too. Frames we send are written into
 * the connection's output in order, so a close always follows the data
 * queued before it, and the write buffer is the only queue.
 *
 * The per-connection state is a small struct allocated at the upgrade; an
 * idle WebSocket holds no read buffer (see rl__ws_proceed).
 *
 * ringlet used wslay here first; its byte-wise unmasking took 70% of the
 * CPU for 64 KiB messages and its context ~8.8 KB per connection. */
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "ws.h"

#define RL_WS_CLOSE_MS 2000 /* wait this long for the peer's close */

enum {
  OP_CONT = RL_WS_CONT,
  OP_TEXT = RL_WS_TEXT,
  OP_BINARY = RL_WS_BINARY,
  OP_CLOSE = RL_WS_CLOSE,
  OP_PING = RL_WS_PING,
  OP_PONG = RL_WS_PONG
};

struct rl_ws {
  rl_conn *conn;
  const rl_ws_cbs *cbs;
  void *ud;           /* the layer above's */
  size_t max_message; /* bytes, else 1009 */
  /* the frame being received */
  uint64_t left;         /* payload bytes still to come */
  uint64_t pos;          /* payload bytes seen (for the mask's phase) */
  rl_buf msg;            /* owned: a fragmented message so far */
  rl_buf ctrl;           /* owned: a control frame's payload so far */
  uint32_t utf8;         /* UTF-8 state of the text message: bytes still owed
                            (low byte) and the next byte's range (lo, hi) */
  uint8_t mask[4];       /* of the frame */
  char *reason_received; /* owned: the peer's close reason */
  char *reason_sent;     /* owned: ours (an open socket has neither) */
  uint8_t reason_received_len, reason_sent_len; /* at most 123 */
  uint16_t code_sent, code_received;
  uint8_t op, fin;    /* of the frame */
  uint8_t msg_op;     /* OP_TEXT or OP_BINARY while a message is fragmented */
  uint8_t in_payload; /* its header is parsed */
  uint8_t closed_up;  /* cbs->on_close has run */
  uint8_t client;     /* the client's end: frames out masked, in unmasked */
  /* closing */
  uint8_t read_closed; /* we stopped reading frames */
  uint8_t close_sent;  /* a close frame is in the output */
  uint8_t close_received;
  uint8_t initiated; /* our close frame went out before the peer's came */
};

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* ---- UTF-8, incrementally (RFC 3629: no overlongs, surrogates or code
 * points above U+10FFFF) --------------------------------------------------- */

#define U8(need, lo, hi)                                                       \
  ((uint32_t)(need) | (uint32_t)(lo) << 8 | (uint32_t)(hi) << 16)

/* Feed n bytes; returns the new state, or UINT32_MAX on an invalid byte. */
static uint32_t utf8_feed(uint32_t st, const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (st == 0) {
      /* between characters: skip ASCII a word at a time */
      while (i + 8 <= n) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ULL)
          break;
        i += 8;
      }
      if (i == n)
        break;
      unsigned char b = s[i++];
      if (b < 0x80)
        continue;
      if (b >= 0xC2 && b <= 0xDF)
        st = U8(1, 0x80, 0xBF);
      else if (b == 0xE0)
        st = U8(2, 0xA0, 0xBF); /* no overlongs */
      else if (b == 0xED)
        st = U8(2, 0x80, 0x9F); /* no surrogates */
      else if (b >= 0xE1 && b <= 0xEF)
        st = U8(2, 0x80, 0xBF);
      else if (b == 0xF0)
        st = U8(3, 0x90, 0xBF); /* no overlongs */
      else if (b >= 0xF1 && b <= 0xF3)
        st = U8(3, 0x80, 0xBF);
      else if (b == 0xF4)
        st = U8(3, 0x80, 0x8F); /* up to U+10FFFF */
      else
        return UINT32_MAX;
      continue;
    }
    unsigned char b = s[i++];
    if (b < ((st >> 8) & 0xff) || b > ((st >> 16) & 0xff))
      return UINT32_MAX;
    uint32_t need = (st & 0xff) - 1;
    st = need ? U8(need, 0x80, 0xBF) : 0;
  }
  return st;
}

/* ---- writing frames ---------------------------------------------------------
 */

/* A frame header for n payload bytes: returns its length (2, 4 or 10) */
static size_t frame_header(unsigned char h[10], int op, int fin, size_t n) {
  size_t hl = 2;
  h[0] = (unsigned char)((fin ? 0x80 : 0) | op);
  if (n < 126) {
    h[1] = (unsigned char)n;
  } else if (n <= 0xffff) {
    h[1] = 126;
    h[2] = (unsigned char)(n >> 8);
    h[3] = (unsigned char)n;
    hl = 4;
  } else {
    h[1] = 127;
    for (int i = 0; i < 8; i++)
      h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
    hl = 10;
  }
  return hl;
}

/* Four random bytes for a client frame's mask (RFC 6455 5.3: from a
 * strong source, unpredictable per frame), taken from a pool that
 * RAND_bytes refills 1 KiB at a time. */
static int mask_key(uint8_t k[4]) {
  static _Thread_local unsigned char pool[1024];
  static _Thread_local size_t left;
  if (left < 4) {
    if (RAND_bytes(pool, sizeof pool) != 1)
      return -1;
    left = sizeof pool;
  }
  left -= 4;
  memcpy(k, pool + left, 4);
  return 0;
}

static void unmask(unsigned char *p, size_t n, const uint8_t m[4],
                   uint64_t pos);

static void put_frame(rl_ws *ws, int op, int fin, const char *p, size_t n) {
  rl_conn *c = ws->conn;
  unsigned char h[14];
  uint8_t key[4];
  if (c->lingering || c->broken || rl__conn_closed(c))
    return; /* shut down: nothing more goes out */
  size_t hl = frame_header(h, op, fin, n);
  if (ws->client) { /* masked: the key after the length */
    if (mask_key(key) != 0) {
      rl__conn_broken(c); /* no entropy: nothing safe to send */
      return;
    }
    h[1] |= 0x80;
    memcpy(h + hl, key, 4);
    hl += 4;
  }
  /* head and payload in one append to the connection's output */
  rl_buf *out = rl__conn_outbuf(c);
  size_t start = out->len;
  if (rl__buf_reserve(out, hl + n) != 0) {
    rl__conn_broken(c);
    return;
  }
  memcpy(out->base + out->len, h, hl);
  out->len += hl;
  if (n) {
    memcpy(out->base + out->len, p, n);
    if (ws->client) /* the payload XORed where it was copied */
      unmask((unsigned char *)out->base + out->len, n, key, 0);
    out->len += n;
  }
  rl__conn_commit(c, start);
}

rl_shared *rl__ws_frame(int opcode, const char *p, size_t n) {
  unsigned char h[10];
  size_t hl = frame_header(h, opcode, 1, n);
  rl_shared *s = rl__shared_new(NULL, hl + n);
  if (s) {
    memcpy(s->data, h, hl);
    memcpy(s->data + hl, p, n);
  }
  return s;
}

static void send_close(rl_ws *ws, int code, const char *reason, size_t n) {
  char pl[125];
  size_t pn = 0;
  if (ws->close_sent)
    return;
  ws->close_sent = 1;
  ws->initiated = !ws->close_received;
  ws->code_sent = code ? code : 1005;
  if (code) {
    if (n > 123)
      n = 123;
    pl[0] = (char)(code >> 8);
    pl[1] = (char)code;
    memcpy(pl + 2, reason, n);
    /* kept for on_close (a reason lost to a failed malloc is "") */
    if (n > 0 && (ws->reason_sent = malloc(n)) != NULL) {
      memcpy(ws->reason_sent, reason, n);
      ws->reason_sent_len = (uint8_t)n;
    }
    pn = n + 2;
  }
  put_frame(ws, OP_CLOSE, 1, pl, pn);
}

/* Fail the connection (RFC 6455 7.1.7): close with code, read no more. */
static void ws_fail(rl_ws *ws, int code, const char *why) {
  ws->read_closed = 1;
  send_close(ws, code, why, strlen(why));
}

/* ---- reading frames
 * ---------------------------------------------------------- */

/* Unmask p[0..n) in place; pos is the offset in the payload. */
static void unmask(unsigned char *p, size_t n, const uint8_t m[4],
                   uint64_t pos) {
  uint8_t k[8];
  for (int i = 0; i < 8; i++)
    k[i] = m[(pos + (uint64_t)i) & 3];
  uint64_t kw;
  memcpy(&kw, k, 8);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    w ^= kw;
    memcpy(p + i, &w, 8);
  }
  for (; i < n; i++)
    p[i] ^= k[i & 7];
}

static int valid_close_code(int code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

static void deliver(rl_ws *ws, int op, const char *p, size_t n) {
  if (!ws->closed_up)
    ws->cbs->on_message(ws->ud, op, p, n);
}

/* A whole control frame's payload is here. */
static void control(rl_ws *ws, int op, const char *p, size_t n) {
  if (op == OP_PING) {
    if (!ws->close_sent)
      put_frame(ws, OP_PONG, 1, p, n); /* RFC 6455 5.5.3 */
    deliver(ws, OP_PING, p, n);        /* already answered: news only */
    return;
  }
  if (op == OP_PONG) {
    deliver(ws, OP_PONG, p, n);
    return;
  }
  /* close */
  if (n == 1) {
    ws_fail(ws, 1002, "a close payload of one byte");
    return;
  }
  int code = 0;
  if (n >= 2) {
    code = (unsigned char)p[0] << 8 | (unsigned char)p[1];
    if (!valid_close_code(code)) {
      ws_fail(ws, 1002, "invalid close code");
      return;
    }
    if (utf8_feed(0, (const unsigned char *)p + 2, n - 2) != 0) {
      ws_fail(ws, 1007, "invalid UTF-8 in the close reason");
      return;
    }
    if (n > 2 && (ws->reason_received = malloc(n - 2))) {
      memcpy(ws->reason_received, p + 2, n - 2);
      ws->reason_received_len = (uint8_t)(n - 2);
    }
  }
  ws->close_received = 1;
  ws->code_received = code ? code : 1005;
  ws->read_closed = 1;
  send_close(ws, code, "", 0); /* echo the code (RFC 6455 5.5.1) */
}

/* Parse a frame header at p (avail bytes). Returns its length, 0 when more
 * bytes are needed, -1 after failing the connection. */
static int frame_head(rl_ws *ws, const unsigned char *p, size_t avail) {
  if (avail < 2)
    return 0;
  int fin = p[0] >> 7, rsv = (p[0] >> 4) & 7, op = p[0] & 0x0f;
  int masked = p[1] >> 7, len7 = p[1] & 0x7f;
  size_t hl = 2 +
              (len7 == 126   ? 2
               : len7 == 127 ? 8
                             : 0) +
              (ws->client ? 0 : 4);
  if (rsv) /* no extension is negotiated */
    return ws_fail(ws, 1002, "reserved bits set"), -1;
  if (!masked && !ws->client)
    return ws_fail(ws, 1002, "unmasked client frame"), -1;
  if (masked && ws->client) /* RFC 6455 5.1 */
    return ws_fail(ws, 1002, "masked server frame"), -1;
  if ((op > OP_BINARY && op < OP_CLOSE) || op > OP_PONG)
    return ws_fail(ws, 1002, "reserved opcode"), -1;
  if (op >= OP_CLOSE && (!fin || len7 > 125))
    return ws_fail(ws, 1002, "bad control frame"), -1;
  if (avail < hl)
    return 0;
  uint64_t len = (uint64_t)len7;
  if (len7 == 126) {
    len = (uint64_t)p[2] << 8 | p[3];
    if (len < 126)
      return ws_fail(ws, 1002, "non-minimal length"), -1;
  } else if (len7 == 127) {
    len = 0;
    for (int i = 2; i < 10; i++)
      len = len << 8 | p[i];
    if (len >> 63 || len <= 0xffff)
      return ws_fail(ws, 1002, "bad 64-bit length"), -1;
  }
  if (op == OP_CONT && ws->msg_op == 0)
    return ws_fail(ws, 1002, "continuation without a message"), -1;
  if ((op == OP_TEXT || op == OP_BINARY) && ws->msg_op != 0)
    return ws_fail(ws, 1002, "new message inside a fragmented one"), -1;
  if (op < OP_CLOSE && len > ws->max_message - ws->msg.len)
    return ws_fail(ws, 1009, "message too big"), -1;
  ws->op = op;
  ws->fin = fin;
  ws->left = len;
  ws->pos = 0;
  if (ws->client)
    memset(ws->mask, 0, 4);
  else
    memcpy(ws->mask, p + hl - 4, 4);
  ws->in_payload = 1;
  if (op == OP_TEXT || op == OP_BINARY) {
    ws->msg_op = op;
    ws->utf8 = 0;
  }
  return (int)hl;
}

/* Take what has arrived of the current frame's payload. */
static void frame_payload(rl_ws *ws) {
  rl_conn *c = ws->conn;
  unsigned char *p = (unsigned char *)c->in.base + c->in_pos;
  size_t avail = c->in.len - c->in_pos;
  size_t n = avail < ws->left ? avail : (size_t)ws->left;
  int op = ws->op;
  if (op >= OP_CLOSE) {
    /* control: gather it whole (at most 125 bytes) */
    if (!ws->client)
      unmask(p, n, ws->mask, ws->pos);
    if (rl__buf_append(&ws->ctrl, p, n)) {
      ws_fail(ws, 1011, "out of memory");
      return;
    }
    c->in_pos += n;
    ws->pos += n;
    ws->left -= n;
    if (ws->left == 0) {
      ws->in_payload = 0;
      control(ws, op, ws->ctrl.base, ws->ctrl.len);
      ws->ctrl.len = 0;
    }
    return;
  }
  int msg_op = ws->msg_op;
  if (n < ws->left && ws->fin && ws->msg.len == 0 && op != OP_CONT) {
    /* a whole message on its way into the read buffer: wait for the rest
     * there, and deliver it without another copy */
    return;
  }
  if (!ws->client)
    unmask(p, n, ws->mask, ws->pos);
  if (msg_op == OP_TEXT) {
    ws->utf8 = utf8_feed(ws->utf8, p, n);
    if (ws->utf8 == UINT32_MAX) {
      ws_fail(ws, 1007, "invalid UTF-8 in a text message");
      return;
    }
  }
  c->in_pos += n;
  ws->pos += n;
  ws->left -= n;
  int done = ws->left == 0 && ws->fin;
  if (ws->left == 0)
    ws->in_payload = 0;
  if (done && ws->msg.len == 0 && op != OP_CONT) {
    ws->msg_op = 0;
    if (msg_op == OP_TEXT && ws->utf8 != 0) {
      ws_fail(ws, 1007, "truncated UTF-8 in a text message");
      return;
    }
    deliver(ws, msg_op, (const char *)p, n); /* straight from the buffer */
    return;
  }
  if (rl__buf_append(&ws->msg, p, n)) {
    ws_fail(ws, 1009, "out of memory");
    return;
  }
  if (done) {
    ws->msg_op = 0;
    if (msg_op == OP_TEXT && ws->utf8 != 0) {
      ws_fail(ws, 1007, "truncated UTF-8 in a text message");
      return;
    }
    deliver(ws, msg_op, ws->msg.base, ws->msg.len);
    ws->msg.len = 0;
    if (ws->msg.cap > 64 * 1024)
      rl__buf_free(&ws->msg);
  }
}

int rl__ws_utf8(const char *p, size_t n) {
  return utf8_feed(0, (const unsigned char *)p, n) == 0;
}

/* ---- the handshake
 * --------------------------------------------------------------- */

int rl__ws_accept_value(const char *key, size_t n, char out[29]) {
  unsigned char in[64 + sizeof ws_guid], md[SHA_DIGEST_LENGTH];
  if (n > 64)
    return -1;
  memcpy(in, key, n);
  memcpy(in + n, ws_guid, sizeof ws_guid - 1);
  SHA1(in, n + sizeof ws_guid - 1, md);
  EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH);
  return 0;
}

/* ---- driving
 * ------------------------------------------------------------------------ */

/* The read buffer wanted for the frame in progress: a large message is
 * read whole into the buffer so it is delivered from there. */
static size_t read_hint(rl_ws *ws) {
  if (ws->in_payload && ws->msg.len == 0 && ws->fin && ws->op != OP_CONT &&
      ws->left < (uint64_t)ws->max_message)
    return (size_t)ws->left + 16;
  return 0;
}

static void ws_proceed(rl_ws *ws) {
  rl_conn *c = ws->conn;
  while (!ws->read_closed && c->in_pos < c->in.len && !rl__conn_closing(c)) {
    if (rl__conn_pause_if_full(c))
      break; /* the peer is not reading what we send (pongs included) */
    if (!ws->in_payload) {
      int hl = frame_head(ws, (unsigned char *)c->in.base + c->in_pos,
                          c->in.len - c->in_pos);
      if (hl <= 0)
        break;
      c->in_pos += (size_t)hl;
      if (ws->left > 0)
        continue;
      ws->in_payload = 0; /* an empty payload is complete now */
      if (ws->op >= OP_CLOSE) {
        control(ws, ws->op, "", 0);
      } else if (ws->fin) {
        int op = ws->msg_op;
        ws->msg_op = 0;
        if (op == OP_TEXT && ws->utf8 != 0)
          ws_fail(ws, 1007, "truncated UTF-8 in a text message");
        else
          deliver(ws, op, ws->msg.base ? ws->msg.base : "", ws->msg.len);
        ws->msg.len = 0;
      }
      continue;
    }
    size_t before = c->in_pos;
    frame_payload(ws);
    if (c->in_pos == before)
      break; /* waiting for the rest of a message */
  }
  if (rl__conn_closing(c))
    return;
  if (ws->read_closed)
    c->in_pos = c->in.len; /* nothing more is read as frames */
  else
    rl__conn_in_trim(c, ws->in_payload ? (size_t)ws->left : 0);
  c->read_want = read_hint(ws);
  if (ws->close_sent && ws->close_received) {
    rl__conn_shutdown(c); /* the closing handshake is done */
    return;
  }
  if (ws->close_sent && ws->read_closed && !ws->close_received) {
    rl__conn_shutdown(c); /* failed: close once the close frame is out */
    return;
  }
  if (ws->close_sent)
    rl__conn_close_after(c, RL_WS_CLOSE_MS);
}

int rl__ws_initiated(const rl_ws *ws) { return ws->initiated; }

int rl__ws_failed(const rl_ws *ws, const char **reason, size_t *n) {
  int code = ws->initiated ? ws->code_sent : 0;
  if (code != 1002 && code != 1007 && code != 1009)
    return 0;
  *reason = ws->reason_sent ? ws->reason_sent : "";
  *n = ws->reason_sent_len;
  return code;
}

int rl__ws_send(rl_ws *ws, int opcode, const char *p, size_t n) {
  if (ws->close_sent)
    return -1;
  put_frame(ws, opcode, 1, p, n);
  return 0;
}

int rl__ws_send_shared(rl_ws *ws, rl_shared *frame) {
  if (ws->close_sent)
    return -1;
  if (ws->client) { /* masked per frame: framed again, unshared */
    const unsigned char *f = (const unsigned char *)frame->data;
    int len7 = f[1] & 0x7f;
    size_t hl = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
    put_frame(ws, f[0] & 0x0f, 1, frame->data + hl, frame->len - hl);
    return 0;
  }
  rl__conn_write_shared(ws->conn, frame);
  return 0;
}

int rl__ws_close(rl_ws *ws, int code, const char *reason, size_t n) {
  if (ws->close_sent)
    return 0;
  send_close(ws, code, reason, n);
  rl__conn_defer(ws->conn); /* ws_proceed arms the close timer or closes */
  return 0;
}

/* The close code for on_close: the peer's, else ours, else 1006. */
static int close_info(rl_ws *ws, const char **reason, size_t *n) {
  *reason = "";
  *n = 0;
  if (ws->close_received) {
    if (ws->reason_received) {
      *reason = ws->reason_received;
      *n = ws->reason_received_len;
    }
    return ws->code_received;
  }
  if (ws->close_sent) {
    if (ws->reason_sent) {
      *reason = ws->reason_sent;
      *n = ws->reason_sent_len;
    }
    return ws->code_sent;
  }
  return 1006;
}

/* ---- the transport's events ---------------------------------------------- */

static void ws_read(rl_conn *c) { ws_proceed(c->data); }

static void ws_eof(rl_conn *c, int err) {
  (void)err;
  rl__conn_close(c); /* on_close: 1006 unless a close frame was seen */
}

static void ws_written(rl_conn *c) {
  rl_ws *ws = c->data;
  if (!ws->closed_up) /* after on_close the layer above may be gone */
    ws->cbs->on_written(ws->ud);
}

static void ws_continue(rl_conn *c) {
  rl_ws *ws = c->data;
  ws_proceed(ws);
  rl__conn_read_start(c); /* unless paused or closing */
  if (!ws->closed_up && !rl__conn_closing(c))
    ws->cbs->on_written(ws->ud); /* the layer above asked to go on later */
}

static void ws_goaway(rl_conn *c) {
  rl__ws_close(c->data, 1001, "server stopping", 15); /* going away */
}

static void ws_closing(rl_conn *c) {
  rl_ws *ws = c->data;
  if (ws->closed_up)
    return;
  ws->closed_up = 1;
  const char *reason;
  size_t n;
  int code = close_info(ws, &reason, &n);
  ws->cbs->on_close(ws->ud, code, reason, n);
  ws->ud = NULL; /* nothing goes upward after on_close */
}

static void ws_free_conn(rl_conn *c) { rl__ws_free(c->data); }

static void ws_timeout(rl_conn *c) {
  rl__conn_close(c); /* no deadline of its own is set */
}

static const rl_proto ws_proto = {
    .on_read = ws_read,
    .on_eof = ws_eof,
    .on_written = ws_written,
    .on_continue = ws_continue,
    .on_timeout = ws_timeout,
    .on_goaway = ws_goaway,
    .on_close = ws_closing,
    .on_free = ws_free_conn,
};

rl_ws *rl__ws_new(size_t max_message) {
  rl_ws *ws = calloc(1, sizeof *ws);
  if (ws)
    ws->max_message = max_message;
  return ws;
}

void rl__ws_set_client(rl_ws *ws) { ws->client = 1; }

int rl__ws_key(char key[25]) {
  unsigned char k[16];
  if (RAND_bytes(k, sizeof k) != 1)
    return -1;
  EVP_EncodeBlock((unsigned char *)key, k, sizeof k);
  return 0;
}

void rl__ws_start(rl_ws *ws, rl_conn *c, const rl_ws_cbs *cbs, void *ud) {
  ws->conn = c;
  ws->cbs = cbs;
  ws->ud = ud;
  c->borrow = 1; /* idle reads borrow the loop's buffer */
  rl__conn_set_proto(c, &ws_proto, ws);
  rl__conn_defer(c); /* frames that came with the request */
}

void rl__ws_free(rl_ws *ws) {
  if (ws == NULL)
    return;
  rl__buf_free(&ws->msg);
  rl__buf_free(&ws->ctrl);
  free(ws->reason_received);
  free(ws->reason_sent);
  free(ws);
}
