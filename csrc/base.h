/* The base layer: what every other room of the core uses and that uses
 * nothing of theirs. Growable byte buffers, the character classes and token
 * lists of HTTP, the Date header's cache, logging.
 *
 * Owns: nothing per connection. May call: libc and libuv only.
 *
 * The layers, bottom to top (each file calls only into the rooms below it;
 * a lower room tells an upper one something only through callbacks the
 * upper one registered):
 *
 *   base.h    buf.c, alloc.c      buffers, character classes, Date, log;
 *                                 the Lua allocator (ringlet_newstate)
 *   conn.h    conn.c              transport: a connection's socket, read
 *                                 buffer, write queue, flusher, backpressure,
 *                                 deadlines, close sequence
 *   listen.h  listen.c            transport: the listening socket, accept
 *   sink.h    sink.c              a log file written from the threadpool
 *   ctx.h     ctx.c               a lua_State's context: protected calls,
 *                                 coroutine tasks, timers
 *   http.h    http.c, response.c  protocol: HTTP/1.1 requests and responses
 *   ws.h      websocket.c         protocol: RFC 6455 frames
 *   client.h  client.c            protocol: HTTP/1.1, the client's side
 *   channel.h channel.c           channels over both protocols
 *   group.h   group.c             groups of channels, broadcast
 *   ring.h    ring.c              Ring: request and response tables, bodies
 *   server.h  server.c            servers: a listener, a handler, exchanges
 *   lclient.h lclient.c           ringlet.client, the client's Lua binding
 *   fs.h      fs.c                ringlet.stat, ringlet.realpath
 *             lringlet.c          the Lua module, require "ringlet"
 */
#ifndef RL_BASE_H
#define RL_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <uv.h>

/* ---- growable byte buffer (buf.c) --------------------------------------- */

typedef struct {
  char *base; /* owned: malloc'd, freed by rl__buf_free */
  size_t len;
  size_t cap;
} rl_buf;

int rl__buf_grow(rl_buf *b, size_t extra); /* the slow path of reserve */

/* Make room for `extra` more bytes. 0, or UV_ENOMEM (b unchanged). */
static inline int rl__buf_reserve(rl_buf *b, size_t extra) {
  return b->cap - b->len >= extra ? 0 : rl__buf_grow(b, extra);
}

static inline int rl__buf_append(rl_buf *b, const void *p, size_t n) {
  if (n == 0)
    return 0;
  if (rl__buf_reserve(b, n))
    return UV_ENOMEM;
  memcpy(b->base + b->len, p, n);
  b->len += n;
  return 0;
}
int rl__buf_printf(rl_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void rl__buf_free(rl_buf *b);

/* ---- HTTP text (buf.c) ----------------------------------------------------
 */

/* Character classes: RFC 9110 tchar, and the bytes of a Host value */
enum { RL_C_TCHAR = 1, RL_C_HOST = 2 };
extern const unsigned char rl__cclass[256];

/* Does the comma-separated list v contain token tok (case-insensitive)? */
int rl__has_token(const char *v, size_t n, const char *tok);

/* The Date header's value, made once a second (a loop keeps one: rl_io) */
typedef struct {
  time_t sec;         /* the second it is for */
  char date[40];      /* "Sun, 06 Nov 1994 08:49:37 GMT" */
  char date_line[48]; /* "Date: " date "\r\n" */
} rl_date;

const char *rl__date(rl_date *d);
/* "Jan" ... "Dec" (HTTP-date's and the common log format's) */
extern const char rl__months[12][4];
/* n in decimal at w (at most 20 digits); returns the end */
static inline char *rl__put_uint(char *w, uint64_t n) {
  char d[20];
  int k = 0;
  do {
    d[k++] = (char)('0' + n % 10);
    n /= 10;
  } while (n);
  while (k)
    *w++ = d[--k];
  return w;
}
const char *rl__date_line(rl_date *d); /* 37 bytes */

/* ---- misc (buf.c) ---------------------------------------------------------
 */

void rl__log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void rl__handle_free(uv_handle_t *h); /* a close_cb that frees h */

#endif
