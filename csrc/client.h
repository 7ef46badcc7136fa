/* The HTTP/1.1 client, a protocol above the transport: a request written,
 * its response parsed with llhttp (response mode), connections kept alive
 * in a pool per host and port, names resolved on the threadpool.
 *
 * Owns: the rl_client (one per loop: its pool and its set of connections),
 * each rl_creq (an exchange: the caller makes it with rl__creq_new and
 * lets go of it with rl__creq_free), a connection's client state (in the
 * connection's ext area). May call: conn.h, base.h, llhttp, libuv; the
 * layer above only through the rl_creq_cbs it registered. */
#ifndef RL_CLIENT_H
#define RL_CLIENT_H

#include <llhttp.h>

#include "conn.h"
#include "http.h"

typedef struct rl_client rl_client;
typedef struct rl_creq rl_creq;

/* What the layer above registers. None but on_done may free the rl_creq;
 * each may call rl__creq_pause and rl__creq_deadline. */
typedef struct {
  /* The response's head is in (r->status, headers: rl__creq_headers);
   * informational (1xx) heads other than 101 are skipped. */
  void (*on_head)(rl_creq *r);
  /* Body bytes (valid during the call only). */
  void (*on_body)(rl_creq *r, const char *p, size_t n);
  /* The exchange is over: err is NULL when the response is complete,
   * else one of the plain strings of README's client section. Called
   * once (possibly from inside rl__creq_start, when connecting fails at
   * once); the last callback, so it may free r. For a 101 the
   * connection waits to be taken over (rl__creq_take_conn). */
  void (*on_done)(rl_creq *r, const char *err);
  /* Optional: the request's output is written (a streamed body may send
   * more). */
  void (*on_written)(rl_creq *r);
} rl_creq_cbs;

enum { RL_CREQ_NEW, RL_CREQ_RUNNING, RL_CREQ_DONE };

struct rl_creq {
  rl_client *cl;
  const rl_creq_cbs *cbs;
  void *ud; /* the layer above's */
  /* set by the caller before rl__creq_start */
  char *host; /* owned: the name or address (no brackets) */
  uint16_t port;
  rl_buf out;        /* owned: the request line, headers and any body
                        given whole (rl__creq_head writes them) */
  uint64_t timeout;  /* ms for the whole exchange, 0 = none */
  size_t max_header; /* bytes of the response's head */
  uint64_t max_body; /* body bytes, 0 = no limit */
  uint8_t head_only; /* a HEAD request: no body follows the head */
  uint8_t keepalive; /* the connection may go back to the pool */
  uint8_t retry_ok;  /* may be sent again on a new connection */
  uint8_t body_open; /* more body follows (rl__creq_write, _end) */
  uint8_t chunked;   /* the body that follows is chunked */
  /* the response */
  int status;
  uint8_t http_minor;
  rl_buf hdrs;  /* owned: names (lower-cased) and values */
  rl_buf hlist; /* owned: rl_header array */
  uint64_t body_len;
  /* state */
  uint8_t state;      /* RL_CREQ_* */
  uint8_t field_open; /* 0 expect a name, 1 in a name, 2 in its value */
  uint8_t got_bytes;  /* a byte of the response arrived */
  uint8_t head_done;  /* on_head was called */
  uint8_t paused;     /* reading stopped by rl__creq_pause */
  uint8_t reused;     /* on a pooled connection */
  uint8_t retried;    /* already sent again once */
  uint8_t upgraded;   /* a 101: the connection waits for take_conn */
  uint8_t in_execute; /* llhttp_execute is running */
  uint8_t msg_done;   /* the message is complete */
  uint8_t in_connect; /* rl__conn_connect is running */
  uint8_t sent;       /* r->out went to the connection */
  int last_err;       /* of the last connection attempt */
  const char *err;    /* why it failed, once it did */
  char errbuf[300];   /* err, when it names something */
  llhttp_t parser;
  rl_conn *conn;            /* while attached */
  struct rl_gai *gai;       /* a resolution in flight */
  struct addrinfo *ai;      /* owned: the addresses resolved */
  struct addrinfo *ai_next; /* the next one to try */
  struct rl_ctimer *timer;  /* malloc'd: the exchange's deadline */
  rl_creq *cnext, *cprev;   /* the client's list of exchanges */
};

/* A client for the loop of io. */
rl_client *rl__client_new(rl_io *io);
/* Close every connection; every exchange still running fails with
 * "closed". The client is freed once its connections are gone and every
 * exchange has been let go of (rl__creq_free). */
void rl__client_close(rl_client *cl);
/* The pool: idle connections kept per host and port, and for how long
 * (0: unchanged). */
void rl__client_configure(rl_client *cl, int pool_size, uint64_t idle_ms);
int rl__client_pool_size(const rl_client *cl);
void rl__client_close_idle(rl_client *cl);
/* Its connections not yet freed (pooled ones included). */
int rl__client_conns(const rl_client *cl);

/* A new exchange (zeroed, with the limits' defaults); NULL without
 * memory. */
rl_creq *rl__creq_new(rl_client *cl, const rl_creq_cbs *cbs, void *ud);
/* Go: take a pooled connection or resolve and connect, then write
 * r->out. Returns 0 (on_done follows, from the loop), or -1 when it could
 * not start (r->err says why; no on_done). */
int rl__creq_start(rl_creq *r);
/* More of a streamed body (framed as a chunk when r->chunked) and its
 * end. Bytes queued but not written: rl__creq_buffered. */
void rl__creq_write(rl_creq *r, const char *p, size_t n);
void rl__creq_end(rl_creq *r);
size_t rl__creq_buffered(const rl_creq *r);
/* Set the exchange's deadline ms from now (0: none), replacing its
 * timeout: a stream's timeout is for each wait. */
void rl__creq_deadline(rl_creq *r, uint64_t ms);
/* Stop (1) or resume (0) reading the response. */
void rl__creq_pause(rl_creq *r, int on);
/* The response's headers (offsets into r->hdrs) */
static inline rl_header *rl__creq_headers(rl_creq *r, size_t *n) {
  *n = r->hlist.len / sizeof(rl_header);
  return (rl_header *)r->hlist.base;
}
/* After a 101: the connection is the caller's now (its protocol to set);
 * any bytes after the head are unconsumed in its read buffer. */
rl_conn *rl__creq_take_conn(rl_creq *r);
/* Let go of r: an exchange still running is abandoned (its connection
 * closed). r is freed later (its timer closes first). */
void rl__creq_free(rl_creq *r);

#endif
