/* HTTP/1.1, a protocol above the transport: requests parsed with llhttp,
 * responses written, keep-alive and pipelining, an upgrade handed off.
 *
 * Owns: an rl_http per connection (in the connection's ext area, so it
 * lives as long as the connection) and the request's accumulators.
 * May call: conn.h, base.h, llhttp, Lua (reading a response's header
 * table); the layer above only through the rl_http_cbs it registered. */
#ifndef RL_HTTP_H
#define RL_HTTP_H

#include <llhttp.h>
#include <lua.h>

#include "conn.h"

/* The limits a server sets (its run_server options). */
typedef struct {
  size_t max_body;
  size_t body_file; /* bodies over this go to a temporary file (0: never) */
  size_t max_line;
  int proxy_protocol;      /* 0 disable, 1 enable, 2 optional */
  uint64_t idle_timeout;   /* ms, 0 = none */
  uint64_t header_timeout; /* ms, 0 = none */
} rl_http_cfg;

typedef struct rl_http rl_http;

/* What the layer above registers. */
typedef struct {
  /* A whole request is parsed (its fields below); the state is
   * RL_HANDLING until a response is written and rl__http_response_done
   * is called. */
  void (*on_request)(rl_http *h);
  /* Output reached the socket during RL_STREAM, or during RL_BODY with
   * nothing left queued (or a deferred body step): write more. (A body
   * pump that flushed its own piece, rl__conn_flush_now, goes on by
   * itself: no call for that write.) */
  void (*on_written)(rl_http *h);
  /* The connection is closing (once): let go of what the response holds. */
  void (*on_close)(rl_http *h);
  /* Optional (NULL: none): a request's exchange is over, once per request
   * that got as far as a response or a parse error: answered (status, body
   * bytes queued after the head; 101 for an upgrade), or cut short by the
   * connection closing (status 0 when no head was written). Called before
   * the request's fields are reused. For an access log. */
  void (*on_done)(rl_http *h, int status, uint64_t bytes);
} rl_http_cbs;

/* One request at a time */
enum {
  RL_READING,  /* parsing; no request in flight */
  RL_HANDLING, /* a request is being answered */
  RL_BODY,     /* a response body with a known end is streaming */
  RL_STREAM,   /* an open-ended response (a channel) owns the connection */
  RL_CLOSING,  /* flushing, lingering or closing */
  RL_UPGRADED  /* another protocol has the connection */
};

typedef struct {
  uint32_t name, name_len, value, value_len; /* offsets into h->hdrs */
} rl_header;

enum { RL_FRAME_NONE, RL_FRAME_LENGTH, RL_FRAME_CHUNKED, RL_FRAME_CLOSE };

struct rl_http {
  rl_conn *conn;
  const rl_http_cfg *cfg;
  const rl_http_cbs *cbs;
  llhttp_t parser;
  /* The request being parsed (accumulators; spans are copied because the
   * read buffer moves). */
  rl_buf url;
  rl_buf hdrs;  /* names (lower-cased) and values */
  rl_buf hlist; /* rl_header array */
  rl_buf body;
  int body_fd; /* fd + 1 of the body's temporary file (body_file), 0: none;
                  the layer above takes it with rl__http_take_body_file.
                  While set, body.len counts the bytes in the file and the
                  buffer is freed (base NULL). */
  const char *err_reason;
  uint64_t resp_body_at; /* conn->queued_total after the response's head */
  void *stream;          /* RL_STREAM: the upper layer's object, for its use */
  uint16_t err_status;   /* status for an error found in a callback */
  uint16_t resp_status;  /* of the response's head, once written */
  uint8_t state;         /* RL_READING ... */
  uint8_t field_open;    /* 0 expect a name, 1 in a name, 2 in its value */
  uint8_t in_message;    /* between message begin and message complete */
  uint8_t head_done;     /* the current message's headers are complete */
  uint8_t head_only;     /* HEAD request */
  uint8_t keep_alive;    /* of the current request/response */
  uint8_t http_minor;    /* of the current request */
  uint8_t websocket;     /* the request is a valid WebSocket upgrade */
  uint8_t msg_complete;  /* parser paused at a complete message */
  uint8_t proxy_pending; /* PROXY header still expected */
  uint8_t timer_mode;    /* http.c's TIMER_*: what the deadline is for */
  uint8_t closed_up;     /* cbs->on_close has run */
  uint8_t ck;            /* a chunked body's framing, followed ahead of
                            llhttp (http.c's CK_*): 0 when not in one */
  uint64_t ck_left;      /* CK_DATA: data bytes left; CK_CRLF: 2, 1 */
  uint8_t goaway;        /* the server is stopping: close after this one */
  uint8_t done_told;     /* cbs->on_done has run for this request */
};

/* Speak HTTP on c (h is its ext area, zeroed): start reading. */
void rl__http_start(rl_http *h, rl_conn *c, const rl_http_cfg *cfg,
                    const rl_http_cbs *cbs);

/* The request's headers */
static inline rl_header *rl__http_headers(rl_http *h, size_t *n) {
  *n = h->hlist.len / sizeof(rl_header);
  return (rl_header *)h->hlist.base;
}

/* How many times the request has the header `name` (lower-case), the
 * first's value in *v and *vl. Valid while the request is answered: for a
 * WebSocket upgrade until the connection is upgraded or the next request
 * begins, for others during the layer above's on_request. */
int rl__http_header(rl_http *h, const char *name, size_t nl, const char **v,
                    size_t *vl);

/* The request's body when it went to a temporary file (cfg->body_file): its
 * descriptor, now the caller's (positioned at the body's start); -1 when
 * the body is in h->body, or when the file could not be rewound (logged;
 * the file is closed and the request has no body). */
int rl__http_take_body_file(rl_http *h);

/* The current response is complete: close, or read the next request. */
void rl__http_response_done(rl_http *h);
/* A core-made response (400, 413, 500 ...) with a short text body; the
 * response is then done. */
void rl__http_error(rl_http *h, int status, const char *detail);
/* Close gracefully (what is queued is written first). */
void rl__http_close(rl_http *h);
/* Answer 101 for an upgrade (the header table at hidx, `extra` header
 * lines) and leave the connection to another protocol: the request's
 * buffers are freed, the state is RL_UPGRADED. */
int rl__http_upgrade(rl_http *h, lua_State *L, int hidx, const char *extra,
                     const char **err);

/* ---- the response writer (response.c) ------------------------------------ */

/* Write a status line and headers: status, then the header table at hidx
 * (0 = none). framing as above; clen for RL_FRAME_LENGTH; extra: header
 * lines that carry Connection and Upgrade. Fails with a message in *err
 * (then nothing was written): a status outside 100-999, or a 1xx without
 * extra (an answer's status is final; only an upgrade writes a 101). */
int rl__http_write_head(rl_http *h, lua_State *L, int status, int hidx,
                        int framing, uint64_t clen, const char *extra,
                        const char **err);
void rl__http_chunk(rl_http *h, const char *p, size_t n); /* one chunk */
/* One chunk as a shared buffer, for many streams (rl__conn_write_shared);
 * NULL when out of memory. n must not be 0. */
rl_shared *rl__http_chunk_new(const char *p, size_t n);
static inline void rl__http_write(rl_http *h, const void *p, size_t n) {
  rl__conn_write(h->conn, p, n);
}
/* The bytes of a core-made response (rl__http_error writes them). */
int rl__http_write_error(rl_http *h, int status, const char *detail);
const char *rl__reason(int status);

#endif
