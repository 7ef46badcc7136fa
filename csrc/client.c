/* The HTTP/1.1 client (client.h): exchanges over the transport's
 * connections, a keep-alive pool per host and port, names resolved with
 * uv_getaddrinfo.
 *
 * An exchange (rl_creq) goes: a pooled connection for its host and port,
 * or a resolution (skipped for an address literal) and a connection to
 * each address in turn until one answers; then its bytes are written and
 * the response is parsed as it arrives. Its deadline is a timer of its
 * own, so it covers the resolution and the connecting too. A complete
 * response on a connection both sides keep alive puts the connection back
 * in the pool, where it is read (a close or stray bytes drop it), does not
 * keep the loop alive, and is dropped after the pool's idle time. */
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

#define RL_CLIENT_MAX_HEADER (64 * 1024)
#define RL_CLIENT_MAX_BODY (64 * 1024 * 1024)

typedef struct rl_pool rl_pool;
typedef struct rl_cconn rl_cconn;

struct rl_client {
  rl_conn_set set; /* first: its on_empty finds the client */
  rl_io *io;
  rl_creq *reqs; /* every exchange not freed yet */
  rl_pool *pools;
  int pool_size;
  uint64_t idle_ms;
  int closing;
  struct rl_ctimer *spare; /* stopped timers kept for the next exchanges */
  int nspare;
};

/* The idle connections to one host and port, most recently used first */
struct rl_pool {
  rl_pool *next;
  rl_cconn *idle;
  int nidle;
  uint16_t port;
  char host[]; /* lower-case, as the caller gave it */
};

/* A connection's client state, in its ext area */
struct rl_cconn {
  rl_conn *conn;
  rl_client *cl;
  rl_creq *req;            /* the exchange on it; NULL while idle */
  rl_pool *pool;           /* while idle in a pool */
  rl_cconn *inext, *iprev; /* pool->idle */
};

struct rl_ctimer {
  uv_timer_t h; /* data: the exchange, NULL once freed */
  rl_io *io;
  struct rl_ctimer *next; /* on the client's spare list */
};

#define RL_SPARE_TIMERS 64

typedef struct rl_gai {
  uv_getaddrinfo_t req;
  rl_creq *r; /* NULL once the exchange let go of it */
} rl_gai;

static const rl_proto client_proto;
static llhttp_settings_t settings;
static void finish(rl_creq *r, const char *err);
static void connect_next(rl_creq *r);

/* ---- the client and its pool --------------------------------------------- */

static void timer_closed(uv_handle_t *h);

static void client_free(rl_client *cl) {
  while (cl->spare) {
    struct rl_ctimer *t = cl->spare;
    cl->spare = t->next;
    uv_close((uv_handle_t *)&t->h, timer_closed);
  }
  while (cl->pools) {
    rl_pool *p = cl->pools;
    cl->pools = p->next;
    free(p);
  }
  free(cl);
}

/* Closing, and nothing left: no connection, no exchange. */
static void client_free_if_done(rl_client *cl) {
  if (cl->closing && cl->set.alive == 0 && cl->reqs == NULL)
    client_free(cl);
}

static void set_empty(rl_conn_set *set) {
  client_free_if_done((rl_client *)set);
}

rl_client *rl__client_new(rl_io *io) {
  rl_client *cl = calloc(1, sizeof *cl);
  if (cl == NULL)
    return NULL;
  cl->io = io;
  cl->set.on_empty = set_empty;
  cl->pool_size = 32;
  cl->idle_ms = 60000;
  return cl;
}

int rl__client_pool_size(const rl_client *cl) { return cl->pool_size; }

int rl__client_conns(const rl_client *cl) { return cl->set.alive; }

void rl__client_configure(rl_client *cl, int pool_size, uint64_t idle_ms) {
  cl->pool_size = pool_size;
  if (idle_ms)
    cl->idle_ms = idle_ms;
  rl_pool *p;
  for (p = cl->pools; p; p = p->next)
    while (p->nidle > pool_size) {
      rl_cconn *last = p->idle;
      while (last->inext)
        last = last->inext;
      rl__conn_close(last->conn); /* on_close takes it out */
    }
}

void rl__client_close_idle(rl_client *cl) {
  for (rl_pool *p = cl->pools; p; p = p->next)
    while (p->idle)
      rl__conn_close(p->idle->conn);
}

void rl__client_close(rl_client *cl) {
  cl->closing = 1;
  while (cl->spare) {
    struct rl_ctimer *t = cl->spare;
    cl->spare = t->next;
    uv_close((uv_handle_t *)&t->h, timer_closed);
  }
  cl->nspare = 0;
  for (rl_creq *r = cl->reqs, *next; r; r = next) {
    next = r->cnext; /* on_done frees r */
    finish(r, "closed");
  }
  while (cl->set.head)
    rl__conn_close(cl->set.head);
  client_free_if_done(cl);
}

static rl_pool *pool_of(rl_client *cl, const char *host, uint16_t port,
                        int create) {
  for (rl_pool *p = cl->pools; p; p = p->next)
    if (p->port == port && strcmp(p->host, host) == 0)
      return p;
  if (!create)
    return NULL;
  size_t n = strlen(host) + 1;
  rl_pool *p = malloc(sizeof *p + n);
  if (p == NULL)
    return NULL;
  p->idle = NULL;
  p->nidle = 0;
  p->port = port;
  memcpy(p->host, host, n);
  p->next = cl->pools;
  cl->pools = p;
  return p;
}

static void pool_unlink(rl_cconn *cc) {
  rl_pool *p = cc->pool;
  if (p == NULL)
    return;
  if (cc->iprev)
    cc->iprev->inext = cc->inext;
  else
    p->idle = cc->inext;
  if (cc->inext)
    cc->inext->iprev = cc->iprev;
  cc->inext = cc->iprev = NULL;
  cc->pool = NULL;
  p->nidle--;
}

/* Keep c for the next exchange to the same host and port. */
static void park(rl_creq *r, rl_cconn *cc) {
  rl_client *cl = cc->cl;
  rl_conn *c = cc->conn;
  rl_pool *p = pool_of(cl, r->host, r->port, 1);
  if (p == NULL || p->nidle >= cl->pool_size) {
    rl__conn_close(c);
    return;
  }
  cc->pool = p;
  cc->iprev = NULL;
  cc->inext = p->idle;
  if (p->idle)
    p->idle->iprev = cc;
  p->idle = cc;
  p->nidle++;
  rl__conn_ref(c, 0);
  rl__conn_timeout(c, cl->idle_ms);
  rl__conn_read_start(c); /* a close or stray bytes drop it */
}

static rl_cconn *unpark(rl_client *cl, const char *host, uint16_t port) {
  rl_pool *p = pool_of(cl, host, port, 0);
  if (p == NULL || p->idle == NULL)
    return NULL;
  rl_cconn *cc = p->idle;
  pool_unlink(cc);
  rl__conn_ref(cc->conn, 1);
  rl__conn_timeout(cc->conn, 0);
  return cc;
}

/* ---- parsing the response -------------------------------------------------
 */

static int h_fail(rl_creq *r, const char *err) {
  r->err = err;
  return HPE_USER;
}

static int on_field(llhttp_t *p, const char *at, size_t n) {
  rl_creq *r = p->data;
  if (r->head_done)
    return 0; /* a chunked body's trailers are not kept */
  if (r->hdrs.len + n > r->max_header)
    return h_fail(r, "bad response: headers too big");
  if (r->field_open != 1) {
    rl_header h = {(uint32_t)r->hdrs.len, 0, 0, 0};
    if (rl__buf_append(&r->hlist, &h, sizeof h))
      return h_fail(r, "out of memory");
    r->field_open = 1;
  }
  if (n == 0)
    return 0; /* (an empty name: hdrs.base may still be NULL) */
  if (rl__buf_reserve(&r->hdrs, n))
    return h_fail(r, "out of memory");
  char *w = r->hdrs.base + r->hdrs.len;
  for (size_t i = 0; i < n; i++) {
    char ch = at[i];
    w[i] = ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
  }
  r->hdrs.len += n;
  rl_header *h = (rl_header *)(r->hlist.base + r->hlist.len) - 1;
  h->name_len += (uint32_t)n;
  return 0;
}

static int on_value(llhttp_t *p, const char *at, size_t n) {
  rl_creq *r = p->data;
  if (r->head_done)
    return 0;
  if (r->hdrs.len + n > r->max_header)
    return h_fail(r, "bad response: headers too big");
  rl_header *h = (rl_header *)(r->hlist.base + r->hlist.len) - 1;
  if (r->field_open == 1) {
    h->value = (uint32_t)r->hdrs.len;
    r->field_open = 2;
  }
  if (rl__buf_append(&r->hdrs, at, n))
    return h_fail(r, "out of memory");
  h->value_len += (uint32_t)n;
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  rl_creq *r = p->data;
  r->status = p->status_code;
  r->http_minor = p->http_minor;
  r->field_open = 0;
  if (r->status < 100 || r->status > 999) /* llhttp 8 lets "HTTP/1.0 " by */
    return h_fail(r, "bad response: no status code");
  if (r->status >= 100 && r->status < 200 && r->status != 101)
    return 0; /* informational: its message completes at once */
  r->head_done = 1;
  r->cbs->on_head(r);
  /* 1: no body, whatever Content-Length says (RFC 9112 6.3: a HEAD's
   * answer, 204, 304; a 101's bytes are the next protocol's) */
  return r->head_only || r->status == 101 || r->status == 204 ||
                 r->status == 304
             ? 1
             : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  rl_creq *r = p->data;
  r->body_len += n;
  if (r->max_body && r->body_len > r->max_body)
    return h_fail(r, "body too big");
  r->cbs->on_body(r, at, n);
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  rl_creq *r = p->data;
  if (!r->head_done) { /* a 1xx: the real head follows */
    r->hdrs.len = r->hlist.len = 0;
    return 0;
  }
  r->msg_done = 1;
  if (r->status == 101)
    r->upgraded = 1;
  return HPE_PAUSED; /* stop right after it: what follows is not ours */
}

static void settings_init(void) {
  if (settings.on_message_complete)
    return;
  llhttp_settings_init(&settings);
  settings.on_header_field = on_field;
  settings.on_header_value = on_value;
  settings.on_headers_complete = on_headers_complete;
  settings.on_body = on_body;
  settings.on_message_complete = on_message_complete;
}

/* ---- an exchange's course -------------------------------------------------
 */

static const char *uv_reason(rl_creq *r, int status) {
  switch (status) {
  case UV_ECONNREFUSED:
    return "connection refused";
  case UV_ECONNRESET:
  case UV_EPIPE:
    return "connection reset";
  case UV_ETIMEDOUT:
    return "timeout";
  case UV_EOF:
    return "closed";
  default:
    snprintf(r->errbuf, sizeof r->errbuf, "connect: %s", uv_strerror(status));
    return r->errbuf;
  }
}

static void timer_closed(uv_handle_t *h) {
  struct rl_ctimer *t = (struct rl_ctimer *)h;
  t->io->handles--;
  free(t);
}

static void timer_cb(uv_timer_t *t) {
  rl_creq *r = t->data;
  if (r)
    finish(r, r->err ? r->err : "timeout");
}

/* Report err from the loop, not from inside the caller. */
static void fail_later(rl_creq *r, const char *err) {
  r->err = err;
  uv_timer_start(&r->timer->h, timer_cb, 0, 0);
}

static void detach(rl_creq *r) {
  rl_conn *c = r->conn;
  if (c == NULL)
    return;
  rl_cconn *cc = c->data;
  cc->req = NULL;
  r->conn = NULL;
}

/* Both sides keep the connection and it is clean: it may serve again. */
static int reusable(rl_creq *r, rl_conn *c) {
  return r->keepalive && !r->body_open && r->cl->pool_size > 0 &&
         !r->cl->closing && llhttp_should_keep_alive(&r->parser) &&
         c->in_pos == c->in.len && !c->read_eof && !rl__conn_closing(c);
}

static void finish(rl_creq *r, const char *err) {
  if (r->state != RL_CREQ_RUNNING)
    return;
  r->state = RL_CREQ_DONE;
  r->err = err;
  uv_timer_stop(&r->timer->h);
  if (r->gai) {
    r->gai->r = NULL;
    uv_cancel((uv_req_t *)&r->gai->req);
    r->gai = NULL;
  }
  rl_conn *c = r->conn;
  if (c && r->upgraded && err == NULL) {
    rl__conn_read_stop(c); /* the caller takes it over */
  } else if (c) {
    rl_cconn *cc = c->data;
    detach(r);
    if (err == NULL && reusable(r, c))
      park(r, cc);
    else
      rl__conn_close(c);
  }
  r->cbs->on_done(r, err);
}

/* The connection is up (or was pooled): send the request, read. */
static void send_request(rl_creq *r, rl_conn *c) {
  llhttp_init(&r->parser, HTTP_RESPONSE, &settings);
  r->parser.data = r;
  r->sent = 1;
  rl__conn_write(c, r->out.base, r->out.len);
  rl__conn_read_start(c);
}

static rl_conn *conn_new(rl_creq *r) {
  rl_client *cl = r->cl;
  rl_conn *c = rl__conn_new(cl->io, sizeof(rl_cconn));
  if (c == NULL)
    return NULL;
  rl_cconn *cc = c->data;
  cc->conn = c;
  cc->cl = cl;
  cc->req = r;
  c->borrow = 1; /* idle reads borrow the loop's buffer */
  c->idle_ms = r->timeout ? r->timeout : 60000;
  rl__conn_set_proto(c, &client_proto, cc);
  r->conn = c;
  return c;
}

static void connect_to(rl_creq *r, const struct sockaddr *sa) {
  rl_conn *c = conn_new(r);
  if (c == NULL) {
    finish(r, "out of memory");
    return;
  }
  r->in_connect = 1;
  int e = rl__conn_connect(c, sa, &r->cl->set);
  r->in_connect = 0;
  if (e != 0) { /* c is closing: on_close detached it */
    r->last_err = e;
    connect_next(r);
  }
}

static void connect_next(rl_creq *r) {
  while (r->ai_next) {
    struct addrinfo *a = r->ai_next;
    r->ai_next = a->ai_next;
    if (a->ai_family == AF_INET || a->ai_family == AF_INET6) {
      connect_to(r, a->ai_addr);
      return;
    }
  }
  finish(r, uv_reason(r, r->last_err ? r->last_err : UV_ECONNREFUSED));
}

static void resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  rl_gai *g = (rl_gai *)req;
  rl_creq *r = g->r;
  free(g);
  if (r == NULL) { /* let go of meanwhile */
    if (res)
      uv_freeaddrinfo(res);
    return;
  }
  r->gai = NULL;
  if (status != 0 || res == NULL) {
    if (res)
      uv_freeaddrinfo(res);
    snprintf(r->errbuf, sizeof r->errbuf, "host not found: %s", r->host);
    finish(r, status == UV_ECANCELED ? "closed" : r->errbuf);
    return;
  }
  if (r->ai)
    uv_freeaddrinfo(r->ai);
  r->ai = res;
  r->ai_next = res;
  connect_next(r);
}

/* A new connection: to the address itself, or to each the name resolves
 * to. */
static void open_new(rl_creq *r) {
  union {
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
  } a;
  if (uv_ip4_addr(r->host, r->port, &a.v4) == 0 ||
      uv_ip6_addr(r->host, r->port, &a.v6) == 0) {
    connect_to(r, (struct sockaddr *)&a);
    return;
  }
  rl_gai *g = malloc(sizeof *g);
  if (g == NULL) {
    fail_later(r, "out of memory");
    return;
  }
  g->r = r;
  char port[8];
  snprintf(port, sizeof port, "%u", (unsigned)r->port);
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG;
  int e =
      uv_getaddrinfo(r->cl->io->loop, &g->req, resolved, r->host, port, &hints);
  if (e != 0) {
    free(g);
    snprintf(r->errbuf, sizeof r->errbuf, "host not found: %s", r->host);
    fail_later(r, r->errbuf);
    return;
  }
  r->gai = g;
}

rl_creq *rl__creq_new(rl_client *cl, const rl_creq_cbs *cbs, void *ud) {
  rl_creq *r = calloc(1, sizeof *r);
  if (r == NULL)
    return NULL;
  r->cl = cl;
  r->cbs = cbs;
  r->ud = ud;
  r->timeout = 30000;
  r->max_header = RL_CLIENT_MAX_HEADER;
  r->max_body = RL_CLIENT_MAX_BODY;
  r->keepalive = 1;
  r->cnext = cl->reqs;
  if (cl->reqs)
    cl->reqs->cprev = r;
  cl->reqs = r;
  return r;
}

int rl__creq_start(rl_creq *r) {
  rl_client *cl = r->cl;
  settings_init();
  if (cl->closing) {
    r->err = "closed";
    return -1;
  }
  if (cl->spare) { /* a timer of an earlier exchange: no init, no close */
    r->timer = cl->spare;
    cl->spare = r->timer->next;
    cl->nspare--;
  } else {
    r->timer = malloc(sizeof *r->timer);
    if (r->timer == NULL) {
      r->err = "out of memory";
      return -1;
    }
    uv_timer_init(cl->io->loop, &r->timer->h);
    r->timer->io = cl->io;
    cl->io->handles++;
  }
  r->timer->h.data = r;
  if (r->timeout)
    uv_timer_start(&r->timer->h, timer_cb, r->timeout, 0);
  r->state = RL_CREQ_RUNNING;
  rl_cconn *cc = r->keepalive ? unpark(cl, r->host, r->port) : NULL;
  if (cc) {
    cc->req = r;
    r->conn = cc->conn;
    r->reused = 1;
    send_request(r, cc->conn);
    return 0;
  }
  open_new(r);
  return 0;
}

/* Send again on a new connection: the pooled one was closed under us
 * before any of the answer came. */
static int retry(rl_creq *r) {
  if (!r->reused || !r->retry_ok || r->retried || r->got_bytes || r->body_open)
    return 0;
  r->retried = 1;
  r->reused = 0;
  r->sent = 0;
  open_new(r);
  return 1;
}

void rl__creq_write(rl_creq *r, const char *p, size_t n) {
  if (r->state == RL_CREQ_DONE || n == 0)
    return;
  /* until the head is on the connection, pieces join it in r->out */
  int direct = r->conn && r->sent;
  rl_buf tmp = {0};
  rl_buf *b = direct ? &tmp : &r->out;
  if (r->chunked)
    rl__buf_printf(b, "%zx\r\n", n);
  rl__buf_append(b, p, n);
  if (r->chunked)
    rl__buf_append(b, "\r\n", 2);
  if (direct) {
    rl__conn_write(r->conn, tmp.base, tmp.len);
    rl__buf_free(&tmp);
  }
}

void rl__creq_end(rl_creq *r) {
  if (!r->body_open)
    return;
  if (r->chunked && r->state != RL_CREQ_DONE) {
    if (r->conn && r->sent)
      rl__conn_write(r->conn, "0\r\n\r\n", 5);
    else
      rl__buf_append(&r->out, "0\r\n\r\n", 5);
  }
  r->body_open = 0;
}

size_t rl__creq_buffered(const rl_creq *r) {
  return r->conn && r->sent ? rl__conn_buffered(r->conn) : r->out.len;
}

void rl__creq_deadline(rl_creq *r, uint64_t ms) {
  if (r->state != RL_CREQ_RUNNING)
    return;
  if (ms)
    uv_timer_start(&r->timer->h, timer_cb, ms, 0);
  else
    uv_timer_stop(&r->timer->h);
}

void rl__creq_pause(rl_creq *r, int on) {
  r->paused = (uint8_t)on;
  if (r->conn == NULL || r->in_execute)
    return; /* on_read stops reading after the execute */
  if (on)
    rl__conn_read_stop(r->conn);
  else
    rl__conn_read_start(r->conn);
}

rl_conn *rl__creq_take_conn(rl_creq *r) {
  rl_conn *c = r->conn;
  if (c == NULL || !r->upgraded)
    return NULL;
  detach(r);
  rl__conn_read_stop(c);
  return c;
}

void rl__creq_free(rl_creq *r) {
  if (r == NULL)
    return;
  if (r->state == RL_CREQ_RUNNING) {
    r->state = RL_CREQ_DONE; /* abandoned: no on_done */
    if (r->gai) {
      r->gai->r = NULL;
      uv_cancel((uv_req_t *)&r->gai->req);
    }
  }
  if (r->conn) {
    rl_conn *c = r->conn;
    detach(r);
    rl__conn_close(c);
  }
  rl_client *cl = r->cl;
  if (r->timer) {
    r->timer->h.data = NULL;
    uv_timer_stop(&r->timer->h);
    if (!cl->closing && cl->nspare < RL_SPARE_TIMERS) {
      r->timer->next = cl->spare;
      cl->spare = r->timer;
      cl->nspare++;
    } else {
      uv_close((uv_handle_t *)&r->timer->h, timer_closed);
    }
  }
  if (r->cprev)
    r->cprev->cnext = r->cnext;
  else
    cl->reqs = r->cnext;
  if (r->cnext)
    r->cnext->cprev = r->cprev;
  if (r->ai)
    uv_freeaddrinfo(r->ai);
  free(r->host);
  rl__buf_free(&r->out);
  rl__buf_free(&r->hdrs);
  rl__buf_free(&r->hlist);
  free(r);
  client_free_if_done(cl);
}

/* ---- the transport's events ------------------------------------------------
 */

static void cc_connect(rl_conn *c, int status) {
  rl_cconn *cc = c->data;
  rl_creq *r = cc->req;
  if (r == NULL) {
    rl__conn_close(c);
    return;
  }
  if (status != 0) {
    r->last_err = status;
    detach(r);
    rl__conn_close(c);
    connect_next(r);
    return;
  }
  send_request(r, c);
}

static void cc_read(rl_conn *c) {
  rl_cconn *cc = c->data;
  rl_creq *r = cc->req;
  if (r == NULL) { /* idle: stray bytes */
    rl__conn_close(c);
    return;
  }
  if (r->state != RL_CREQ_RUNNING)
    return; /* a 101's connection waiting to be taken over */
  const char *p = c->in.base + c->in_pos;
  size_t n = c->in.len - c->in_pos;
  r->got_bytes = 1;
  r->in_execute = 1;
  llhttp_errno_t e = llhttp_execute(&r->parser, p, n);
  r->in_execute = 0;
  if (e == HPE_OK) {
    c->in_pos = c->in.len;
  } else if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
    c->in_pos += (size_t)(llhttp_get_error_pos(&r->parser) - p);
  } else {
    if (r->err == NULL) { /* (else a callback of ours said why) */
      snprintf(r->errbuf, sizeof r->errbuf, "bad response: %s",
               llhttp_get_error_reason(&r->parser));
      r->err = r->errbuf;
    }
    finish(r, r->err);
    return;
  }
  if (r->msg_done) {
    finish(r, NULL);
    return;
  }
  rl__conn_in_trim(c, 0);
  if (r->paused)
    rl__conn_read_stop(c);
}

static void cc_eof(rl_conn *c, int err) {
  rl_cconn *cc = c->data;
  rl_creq *r = cc->req;
  if (r == NULL) {
    rl__conn_close(c);
    return;
  }
  if (!r->got_bytes && r->reused && r->retry_ok && !r->retried) {
    detach(r);
    rl__conn_close(c);
    retry(r);
    return;
  }
  if (err == UV_EOF && r->got_bytes) {
    /* a body delimited by the close ends here */
    llhttp_errno_t e = llhttp_finish(&r->parser);
    if ((e == HPE_OK || e == HPE_PAUSED) && r->msg_done) {
      finish(r, NULL);
      return;
    }
  }
  finish(r, err == UV_EOF ? "closed" : uv_reason(r, err));
}

static void cc_written(rl_conn *c) {
  rl_cconn *cc = c->data;
  rl_creq *r = cc->req;
  if (r && r->state == RL_CREQ_RUNNING && r->cbs->on_written)
    r->cbs->on_written(r);
}

static void cc_continue(rl_conn *c) {
  rl_cconn *cc = c->data;
  if (cc->req && c->in_pos < c->in.len)
    cc_read(c);
  if (cc->req && !cc->req->paused)
    rl__conn_read_start(c);
}

static void cc_timeout(rl_conn *c) {
  rl__conn_close(c); /* an idle pooled connection's time is up */
}

static void cc_goaway(rl_conn *c) { (void)c; }

static void cc_close(rl_conn *c) {
  rl_cconn *cc = c->data;
  pool_unlink(cc);
  rl_creq *r = cc->req;
  if (r == NULL)
    return;
  detach(r);
  if (r->state != RL_CREQ_RUNNING || r->in_connect)
    return; /* (connect_to tries the next address) */
  if (!retry(r))
    finish(r, "closed");
}

static void cc_free(rl_conn *c) { (void)c; }

static const rl_proto client_proto = {
    .on_read = cc_read,
    .on_eof = cc_eof,
    .on_written = cc_written,
    .on_continue = cc_continue,
    .on_timeout = cc_timeout,
    .on_goaway = cc_goaway,
    .on_close = cc_close,
    .on_free = cc_free,
    .on_connect = cc_connect,
};
