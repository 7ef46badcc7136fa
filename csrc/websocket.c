/* The WebSocket transport: the opening handshake's answer, and wslay driven
 * from the libuv loop without blocking. wslay's callbacks only copy between
 * the connection's buffers: recv takes from the read buffer or says
 * WOULDBLOCK, send appends to the write buffer or says WOULDBLOCK while
 * enough is queued. rl__ws_proceed loops until neither side moves, as h2o's
 * h2o_websocket_proceed does. */
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <wslay/wslay.h>

#include "rl.h"

#define RL_WS_HWM (256 * 1024)  /* pull frames from wslay below this */
#define RL_WS_FRAME (16 * 1024) /* largest frame of a fragmented send */

/* A fragmented message's bytes, owned by conn->wsrc until wslay has read
 * them all (or the connection is freed). */
typedef struct rl_wsrc {
  struct rl_wsrc *next;
  size_t len, off;
  char data[];
} rl_wsrc;

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

int rl__ws_valid_key(const char *key, size_t n) {
  /* base64 of 16 bytes: 22 characters, then "==" */
  if (n != 24 || key[22] != '=' || key[23] != '=')
    return 0;
  for (size_t i = 0; i < 22; i++) {
    char ch = key[i];
    if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
          (ch >= '0' && ch <= '9') || ch == '+' || ch == '/'))
      return 0;
  }
  return strchr("AQgw", key[21]) != NULL; /* the last 4 bits are zero */
}

/* ---- wslay callbacks
 * --------------------------------------------------------- */

static void ws_fail(rl_conn *c, int code);
static void answer_close(rl_conn *c, int code, const unsigned char *reason,
                         size_t n);

/* Hands wslay the input one frame at a time, so each frame's header can be
 * looked at first: wslay refuses close codes 1012-1014 (registered since
 * RFC 6455), so such a close frame is answered here instead. */
static ssize_t recv_cb(wslay_event_context_ptr ws, uint8_t *buf, size_t len,
                       int flags, void *ud) {
  rl_conn *c = ud;
  (void)flags;
  const unsigned char *p = (const unsigned char *)c->in.base + c->in_pos;
  size_t avail = c->in.len - c->in_pos;
  if (c->ws_f_left == 0 && avail >= 2) {
    size_t len7 = p[1] & 0x7f, masked = p[1] >> 7;
    size_t hlen = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4 * masked;
    if (avail < hlen)
      goto wouldblock; /* the header is not all here yet */
    uint64_t plen = len7;
    if (len7 >= 126) {
      plen = 0;
      for (size_t i = 2; i < hlen - 4 * masked; i++)
        plen = plen << 8 | p[i];
    }
    if ((p[0] & 0x0f) == WSLAY_CONNECTION_CLOSE && masked && plen >= 2 &&
        plen <= 125) {
      if (avail < hlen + plen)
        goto wouldblock;
      const unsigned char *m = p + hlen - 4;
      unsigned char pl[125];
      for (size_t i = 0; i < plen; i++)
        pl[i] = p[hlen + i] ^ m[i & 3];
      int code = pl[0] << 8 | pl[1];
      if (code >= 1012 && code <= 1014 && (p[0] & 0x70) == 0) {
        c->in_pos += hlen + plen;
        answer_close(c, code, pl + 2, plen - 2);
        goto wouldblock;
      }
    }
    c->ws_f_left = plen > UINT64_MAX - hlen ? UINT64_MAX : hlen + plen;
  }
  if (avail == 0 || c->ws_f_left == 0)
    goto wouldblock;
  size_t n = avail < len ? avail : len;
  if (n > c->ws_f_left)
    n = (size_t)c->ws_f_left;
  memcpy(buf, p, n);
  c->in_pos += n;
  c->ws_f_left -= n;
  return (ssize_t)n;
wouldblock:
  wslay_event_set_error(ws, WSLAY_ERR_WOULDBLOCK);
  return -1;
}

/* Takes everything: rl__ws_proceed calls wslay_event_send only while less
 * than RL_WS_HWM is queued, and max_buffered bounds what sends may queue. */
static ssize_t send_cb(wslay_event_context_ptr ws, const uint8_t *data,
                       size_t len, int flags, void *ud) {
  rl_conn *c = ud;
  (void)ws;
  (void)flags;
  rl__conn_write(c, data, len);
  return (ssize_t)len;
}

/* Close with `code` ourselves: wslay answers some protocol errors with a
 * close frame without a code and misses others, so the close frame is
 * written here and wslay's sending side is shut. send_cb takes whole frames,
 * so no frame of wslay's is cut in half in the output. */
/* The peer's close with a code wslay does not know: echo it and end. */
static void answer_close(rl_conn *c, int code, const unsigned char *reason,
                         size_t n) {
  free(c->ws_reason);
  c->ws_reason = NULL;
  c->ws_reason_len = 0;
  if (n > 0 && (c->ws_reason = malloc(n))) {
    memcpy(c->ws_reason, reason, n);
    c->ws_reason_len = n;
  }
  c->ws_peer_code = code;
  ws_fail(c, code);
}

static void ws_fail(rl_conn *c, int code) {
  unsigned char f[4] = {0x88, 0x02, (unsigned char)(code >> 8),
                        (unsigned char)(code & 0xff)};
  if (c->ws_fail_code)
    return;
  c->ws_fail_code = code;
  c->ws_closing = 1;
  wslay_event_shutdown_read(c->ws);
  wslay_event_shutdown_write(c->ws);
  rl__conn_write(c, f, sizeof f);
}

static void msg_cb(wslay_event_context_ptr ws,
                   const struct wslay_event_on_msg_recv_arg *arg, void *ud) {
  rl_conn *c = ud;
  (void)ws;
  if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
    if (arg->msg_length == 1) {
      ws_fail(c, WSLAY_CODE_PROTOCOL_ERROR); /* RFC 6455 5.5.1 */
      return;
    }
    free(c->ws_reason);
    c->ws_reason = NULL;
    c->ws_reason_len = 0;
    if (arg->msg_length > 2 && (c->ws_reason = malloc(arg->msg_length - 2))) {
      c->ws_reason_len = arg->msg_length - 2;
      memcpy(c->ws_reason, arg->msg + 2, c->ws_reason_len);
    }
    c->ws_closing = 1;
    return;
  }
  if (arg->opcode == WSLAY_PING)
    return; /* wslay queued the pong */
  if (c->channel)
    rl__channel_message(c->channel, arg->opcode, (const char *)arg->msg,
                        arg->msg_length);
}

static ssize_t frag_read_cb(wslay_event_context_ptr ws, uint8_t *buf,
                            size_t len, const union wslay_event_msg_source *src,
                            int *eof, void *ud) {
  rl_conn *c = ud;
  rl_wsrc *s = src->data;
  (void)ws;
  size_t n = s->len - s->off;
  if (n > len)
    n = len;
  if (n > RL_WS_FRAME)
    n = RL_WS_FRAME;
  memcpy(buf, s->data + s->off, n);
  s->off += n;
  if (s->off == s->len) {
    *eof = 1;
    for (rl_wsrc **pp = &c->wsrc; *pp; pp = &(*pp)->next) {
      if (*pp == s) {
        *pp = s->next;
        break;
      }
    }
    free(s);
  }
  return (ssize_t)n;
}

/* ---- the handshake
 * ------------------------------------------------------------- */

int rl__ws_accept(rl_conn *c, lua_State *L, const char *key, size_t keylen,
                  int hidx, const char **err) {
  static const struct wslay_event_callbacks callbacks = {
      .recv_callback = recv_cb,
      .send_callback = send_cb,
      .on_msg_recv_callback = msg_cb,
  };
  unsigned char in[64 + sizeof ws_guid], md[SHA_DIGEST_LENGTH];
  char extra[160], accept[4 * ((SHA_DIGEST_LENGTH + 2) / 3) + 1];
  if (keylen > 64) {
    *err = "invalid Sec-WebSocket-Key";
    return -1;
  }
  memcpy(in, key, keylen);
  memcpy(in + keylen, ws_guid, sizeof ws_guid - 1);
  SHA1(in, keylen + sizeof ws_guid - 1, md);
  EVP_EncodeBlock((unsigned char *)accept, md, SHA_DIGEST_LENGTH);
  snprintf(extra, sizeof extra,
           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Accept: %s\r\n",
           accept);
  if (wslay_event_context_server_init(&c->ws, &callbacks, c) != 0) {
    *err = "out of memory";
    return -1;
  }
  if (rl__write_head(c, L, 101, hidx, RL_FRAME_NONE, 0, extra, err) != 0) {
    wslay_event_context_free(c->ws);
    c->ws = NULL;
    return -1;
  }
  wslay_event_config_set_max_recv_msg_length(c->ws, c->server->cfg.max_ws);
  c->keep_alive = 0;
  /* HTTP's accumulators are done with: an idle socket keeps no buffers */
  rl__buf_free(&c->url);
  rl__buf_free(&c->hdrs);
  rl__buf_free(&c->hlist);
  rl__buf_free(&c->body);
  return 0;
}

/* ---- driving wslay
 * --------------------------------------------------------------- */

void rl__ws_proceed(rl_conn *c) {
  wslay_event_context_ptr ws = c->ws;
  if (ws == NULL)
    return;
  for (;;) {
    if (uv_is_closing((uv_handle_t *)&c->tcp))
      return;
    int moved = 0;
    if (wslay_event_want_read(ws) && c->in_pos < c->in.len) {
      size_t before = c->in_pos;
      int r = wslay_event_recv(ws);
      if (r == WSLAY_ERR_CALLBACK_FAILURE) {
        ws_fail(c, WSLAY_CODE_PROTOCOL_ERROR); /* a malformed frame */
        moved = 1;
      } else if (r != 0) {
        rl__conn_close(c, 0);
        return;
      }
      moved |= c->in_pos != before;
    }
    if (uv_is_closing((uv_handle_t *)&c->tcp))
      return;
    if (wslay_event_want_write(ws) && rl__conn_buffered(c) < RL_WS_HWM) {
      uint64_t before = c->queued_total;
      if (wslay_event_send(ws) != 0) {
        rl__conn_close(c, 0);
        return;
      }
      moved |= c->queued_total != before;
    }
    /* wslay sends control frames first: a close waits for the data */
    if (c->ws_close_pending && wslay_event_get_queued_msg_count(ws) == 0) {
      c->ws_close_pending = 0;
      wslay_event_queue_close(ws, (uint16_t)c->ws_close_code,
                              (const uint8_t *)c->ws_close_reason,
                              c->ws_close_reason_len);
      moved = 1;
    }
    if (!moved)
      break;
  }
  if (c->in_pos == c->in.len) {
    rl__buf_free(&c->in); /* an idle socket holds no read buffer */
    c->in_pos = 0;
  }
  if (wslay_event_get_close_sent(ws) || wslay_event_get_close_received(ws))
    c->ws_closing = 1;
  if (!wslay_event_want_read(ws) && !wslay_event_want_write(ws)) {
    rl__conn_close(c, 1); /* the closing handshake is done */
    return;
  }
  if (c->ws_closing)
    rl__conn_close_timer(c);
}

int rl__ws_queue(rl_conn *c, int opcode, const char *p, size_t n) {
  struct wslay_event_msg m = {
      .opcode = (uint8_t)opcode, .msg = (const uint8_t *)p, .msg_length = n};
  int r = wslay_event_queue_msg(c->ws, &m); /* copies */
  if (r == 0) {
    c->deferred = 1;
    rl__mark_dirty(c);
  }
  return r;
}

int rl__ws_queue_fragmented(rl_conn *c, const char *p, size_t n) {
  rl_wsrc *s = malloc(sizeof *s + n);
  if (s == NULL)
    return WSLAY_ERR_NOMEM;
  s->len = n;
  s->off = 0;
  memcpy(s->data, p, n);
  struct wslay_event_fragmented_msg m = {
      .opcode = WSLAY_BINARY_FRAME,
      .source = {.data = s},
      .read_callback = frag_read_cb,
  };
  int r = wslay_event_queue_fragmented_msg(c->ws, &m);
  if (r != 0) {
    free(s);
    return r;
  }
  s->next = c->wsrc;
  c->wsrc = s;
  c->deferred = 1;
  rl__mark_dirty(c);
  return 0;
}

int rl__ws_ping(rl_conn *c, const char *p, size_t n) {
  return rl__ws_queue(c, WSLAY_PING, p, n);
}

int rl__ws_close(rl_conn *c, int code, const char *reason, size_t n) {
  if (c->ws_closing || c->ws_close_pending)
    return 0;
  if (n > sizeof c->ws_close_reason)
    n = sizeof c->ws_close_reason;
  c->ws_close_pending = 1;
  c->ws_close_code = code;
  memcpy(c->ws_close_reason, reason, n);
  c->ws_close_reason_len = n;
  c->deferred = 1;
  rl__mark_dirty(c);
  return 0;
}

size_t rl__ws_queued(rl_conn *c) {
  return c->ws ? wslay_event_get_queued_msg_length(c->ws) : 0;
}

size_t rl__ws_queued_count(rl_conn *c) {
  return c->ws ? wslay_event_get_queued_msg_count(c->ws) : 0;
}

int rl__ws_close_info(rl_conn *c, const char **reason, size_t *n) {
  *reason = "";
  *n = 0;
  if (c->ws == NULL)
    return 1006;
  if (c->ws_peer_code) {
    *reason = c->ws_reason ? c->ws_reason : "";
    *n = c->ws_reason_len;
    return c->ws_peer_code;
  }
  if (c->ws_fail_code)
    return c->ws_fail_code;
  if (wslay_event_get_close_received(c->ws)) {
    int code = wslay_event_get_status_code_received(c->ws);
    if (c->ws_reason) {
      *reason = c->ws_reason;
      *n = c->ws_reason_len;
    }
    return code ? code : 1005;
  }
  if (wslay_event_get_close_sent(c->ws)) {
    *reason = c->ws_close_reason;
    *n = c->ws_close_reason_len;
    return wslay_event_get_status_code_sent(c->ws);
  }
  return 1006;
}

void rl__ws_free(rl_conn *c) {
  if (c->ws)
    wslay_event_context_free(c->ws);
  c->ws = NULL;
  while (c->wsrc) {
    rl_wsrc *next = c->wsrc->next;
    free(c->wsrc);
    c->wsrc = next;
  }
  free(c->ws_reason);
  c->ws_reason = NULL;
}
