/* The transport: a connection's socket, read buffer, write queue, flusher,
 * backpressure, deadlines and close sequence (see conn.h). Protocols hear
 * from it only through the rl_proto they registered.
 *
 * Owns: every rl_conn (freed in its close callback, after on_free), the
 * write requests in flight and the buffers they hold, the loop's read
 * buffer. May call: base.h, libuv, and a connection's rl_proto. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "conn.h"

#define RL_BUF_MAX (1u << 30) /* largest piece of one uv_buf_t */
#define RL_LINGER_MS 2000
#define RL_FILE_CHUNK (64 * 1024)
#define RL_EXT_ALIGN(n) (((n) + 15) & ~(size_t)15)

typedef struct {
  uv_write_t req; /* data unused; handle->data is the conn */
  char *base;     /* owned: the conn's former output buffer */
  size_t cap;
  size_t len;     /* bytes this request writes */
  rl_slice *refs; /* owned: shared buffers it holds a reference to */
  size_t nrefs;
} rl_wreq;

static void flush_cb(uv_idle_t *h);
static void dtimer_cb(uv_timer_t *t);
static void start_linger(rl_conn *c);

/* ---- shared buffers ------------------------------------------------------ */

rl_shared *rl__shared_new(const void *p, size_t n) {
  rl_shared *s = malloc(sizeof *s + n);
  if (s == NULL)
    return NULL;
  s->refs = 1;
  s->len = n;
  if (p && n)
    memcpy(s->data, p, n);
  return s;
}

void rl__shared_unref(rl_shared *s) {
  if (s && --s->refs == 0)
    free(s);
}

static void unref_slices(rl_slice *r, size_t n) {
  for (size_t i = 0; i < n; i++)
    rl__shared_unref(r[i].buf);
}

/* ---- the loop's state and the flusher -------------------------------------
 * Writes are appended to a connection's queue and the connection is marked
 * dirty; once per loop turn the flusher hands every dirty queue to libuv,
 * so a burst of sends or pipelined responses costs one write. Work that
 * must not run nested inside a caller (parsing the next pipelined request
 * after a stream ends) is deferred here too. */

static void noop(rl_conn *c) { (void)c; }
static void noop_eof(rl_conn *c, int err) {
  (void)err;
  rl__conn_close(c);
}
/* a connection's protocol until one is set */
static const rl_proto no_proto = {noop, noop_eof, noop, noop, noop,
                                  noop, noop,     noop, NULL};

void rl__io_init(rl_io *io, uv_loop_t *loop) {
  io->loop = loop;
  io->dirty = io->dirty_tail = NULL;
  uv_idle_init(loop, &io->flusher);
  io->flusher.data = io;
  io->handles++;
  memset(io->dq, 0, sizeof io->dq);
  uv_timer_init(loop, &io->dtimer);
  io->dtimer.data = io;
  uv_unref((uv_handle_t *)&io->dtimer); /* the connections keep the loop */
  io->handles++;
}

static void io_handle_closed(uv_handle_t *h) {
  rl_io *io = h->data;
  io->handles--;
}

void rl__io_close(rl_io *io) {
  uv_close((uv_handle_t *)&io->flusher, io_handle_closed);
  uv_close((uv_handle_t *)&io->dtimer, io_handle_closed);
}

void rl__io_free(rl_io *io) {
  free(io->rbuf);
  io->rbuf = NULL;
  while (io->nspare > 0)
    free(io->spare[--io->nspare].base);
}

void rl__io_buf_give(rl_io *io, rl_buf *b) {
  if (b->base == NULL)
    return;
  if (io->nspare < RL_SPARES && b->cap <= RL_SPARE_MAX) {
    io->spare[io->nspare].base = b->base;
    io->spare[io->nspare].cap = b->cap;
    io->nspare++;
  } else {
    free(b->base);
  }
  b->base = NULL;
  b->len = b->cap = 0;
}

void rl__conn_mark_dirty(rl_conn *c) {
  if (c->is_dirty || rl__conn_closed(c))
    return;
  rl_io *io = c->io;
  c->is_dirty = 1;
  c->dirty_next = NULL;
  c->dirty_prev = io->dirty_tail; /* at the tail: first marked, first out */
  if (io->dirty_tail)
    io->dirty_tail->dirty_next = c;
  else
    uv_idle_start(&io->flusher, flush_cb);
  io->dirty_tail = c;
  if (io->dirty == NULL)
    io->dirty = c;
}

static void unmark_dirty(rl_conn *c) {
  if (!c->is_dirty)
    return;
  if (c->dirty_prev)
    c->dirty_prev->dirty_next = c->dirty_next;
  else
    c->io->dirty = c->dirty_next;
  if (c->dirty_next)
    c->dirty_next->dirty_prev = c->dirty_prev;
  else
    c->io->dirty_tail = c->dirty_prev;
  c->is_dirty = 0;
  c->dirty_next = c->dirty_prev = NULL;
}

void rl__conn_defer(rl_conn *c) {
  c->deferred = 1;
  rl__conn_mark_dirty(c);
}

static void flush(rl_conn *c, int tell);

void rl__conn_flush_now(rl_conn *c) {
  if (c->nwrites == 0 && !c->broken)
    flush(c, 0);
}

static void flush_cb(uv_idle_t *h) {
  rl_io *io = h->data;
  int budget = 0;
  for (rl_conn *c = io->dirty; c; c = c->dirty_next)
    budget++;
  /* Connections marked while we work go to the tail and wait for the next
   * turn once the budget is spent, so a connection that keeps marking
   * itself (an iterator body, a callback that keeps sending) neither
   * starves the loop nor the connections marked before it. */
  while (io->dirty && budget-- > 0) {
    rl_conn *c = io->dirty;
    unmark_dirty(c);
    if (c->broken) {
      rl__conn_close(c);
      continue;
    }
    if (c->deferred) {
      c->deferred = 0;
      if (!rl__conn_closed(c))
        c->proto->on_continue(c);
    }
    flush(c, 1);
  }
  if (io->dirty == NULL)
    uv_idle_stop(&io->flusher);
}

/* ---- connections ----------------------------------------------------------
 */

rl_conn *rl__conn_new(rl_io *io, size_t ext) {
  size_t head = RL_EXT_ALIGN(sizeof(rl_conn));
  rl_conn *c = calloc(1, head + ext);
  if (c == NULL)
    return NULL;
  c->io = io;
  c->proto = &no_proto;
  c->data = ext ? (char *)c + head : NULL;
  c->id = ++io->next_id;
  uv_tcp_init(io->loop, &c->tcp);
  c->tcp.data = c;
  io->handles++;
  return c;
}

void rl__conn_set_proto(rl_conn *c, const rl_proto *p, void *data) {
  c->proto = p;
  c->data = data;
}

static void set_unlink(rl_conn *c) {
  rl_conn_set *set = c->set;
  if (set == NULL || (c->prev == NULL && set->head != c))
    return; /* not on the list */
  if (c->prev)
    c->prev->next = c->next;
  else
    set->head = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->next = c->prev = NULL;
  set->open--;
}

static void set_join(rl_conn *c, rl_conn_set *set) {
  if (set == NULL)
    return;
  c->set = set;
  c->next = set->head;
  if (set->head)
    set->head->prev = c;
  set->head = c;
  set->open++;
  set->alive++;
}

static void set_remote(rl_conn *c, const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(a, c->remote, sizeof c->remote);
    c->remote_port = ntohs(a->sin6_port);
  } else {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    uv_ip4_name(a, c->remote, sizeof c->remote);
    c->remote_port = ntohs(a->sin_port);
  }
}

int rl__conn_open(rl_conn *c, uv_os_sock_t fd, rl_conn_set *set) {
  set_join(c, set);
  int r = uv_tcp_open(&c->tcp, fd);
  if (r != 0) {
    close(fd);
    rl__conn_close(c);
    return r;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
    set_remote(c, (struct sockaddr *)&ss);
  return 0;
}

static void connect_cb(uv_connect_t *req, int status) {
  rl_conn *c = req->data;
  free(req);
  if (c->closing || rl__conn_closed(c))
    return; /* UV_ECANCELED: the close began while connecting */
  if (status == 0)
    uv_tcp_nodelay(&c->tcp, 1);
  if (c->proto->on_connect)
    c->proto->on_connect(c, status);
}

int rl__conn_connect(rl_conn *c, const struct sockaddr *addr,
                     rl_conn_set *set) {
  set_join(c, set);
  set_remote(c, addr);
  uv_connect_t *req = malloc(sizeof *req);
  int r = req ? uv_tcp_connect(req, &c->tcp, addr, connect_cb) : UV_ENOMEM;
  if (r != 0) {
    free(req);
    rl__conn_close(c);
    return r;
  }
  req->data = c;
  return 0;
}

void rl__conn_ref(rl_conn *c, int ref) {
  if (rl__conn_closed(c))
    return;
  if (ref)
    uv_ref((uv_handle_t *)&c->tcp);
  else
    uv_unref((uv_handle_t *)&c->tcp);
}

/* ---- deadlines --------------------------------------------------------------
 * Queues of connections armed with the same delay (rl_dq), under one timer
 * per loop, each in the order of the deadline it was placed with (dkey).
 * Lazy, as most deadlines are moved before they come (a keep-alive
 * connection's idle timeout, each request): arming again with the same
 * delay only stores the later deadline, and disarming only clears it; the
 * timer, reaching a connection whose deadline moved, puts it back in
 * order (or drops it), and fires whoever is due. The libuv timer is moved
 * only when a deadline comes before the one it is set for. A connection
 * costs five words for this, not a libuv timer of its own. */

static void dq_unlink(rl_conn *c) {
  rl_dq *q = c->dq;
  if (q == NULL)
    return;
  if (c->dprev)
    c->dprev->dnext = c->dnext;
  else
    q->head = c->dnext;
  if (c->dnext)
    c->dnext->dprev = c->dprev;
  else
    q->tail = c->dprev;
  c->dnext = c->dprev = NULL;
  c->dq = NULL;
}

/* The queue for a delay of ms: its own, else a free slot, else (sixteen
 * other delays in use) the first, where it goes in order by hand. */
static rl_dq *dq_for(rl_io *io, uint64_t ms) {
  rl_dq *free_slot = NULL;
  for (int i = 0; i < RL_DQ_MAX; i++) {
    rl_dq *q = &io->dq[i];
    if (q->ms == ms)
      return q;
    if (q->head == NULL && free_slot == NULL)
      free_slot = q;
  }
  if (free_slot) {
    free_slot->ms = ms;
    return free_slot;
  }
  return &io->dq[0];
}

/* Place c in q by its deadline (after the last one placed no later: the
 * tail, unless q is shared). */
static void dq_place(rl_conn *c, rl_dq *q) {
  c->dkey = c->deadline;
  rl_conn *at = q->tail;
  while (at && at->dkey > c->dkey)
    at = at->dprev;
  c->dq = q;
  c->dprev = at;
  c->dnext = at ? at->dnext : q->head;
  if (c->dnext)
    c->dnext->dprev = c;
  else
    q->tail = c;
  if (at)
    at->dnext = c;
  else
    q->head = c;
}

static void dtimer_set(rl_io *io, uint64_t due) {
  uint64_t now = uv_now(io->loop);
  uv_timer_start(&io->dtimer, dtimer_cb, due > now ? due - now : 0, 0);
  io->dtimer_due = due;
}

void rl__conn_arm(rl_conn *c, int kind, uint64_t ms) {
  c->timer_kind = (uint8_t)kind;
  if (ms == 0) {
    c->deadline = 0; /* the timer drops it from its queue */
    return;
  }
  rl_io *io = c->io;
  c->deadline = uv_now(io->loop) + ms;
  if (c->dq && c->dq->ms == ms && c->deadline >= c->dkey)
    return; /* placed earlier with this delay: the timer moves it on */
  dq_unlink(c);
  dq_place(c, dq_for(io, ms));
  if (!uv_is_active((uv_handle_t *)&io->dtimer) || io->dtimer_due > c->deadline)
    dtimer_set(io, c->deadline);
}

void rl__conn_close_after(rl_conn *c, uint64_t ms) {
  if (c->timer_kind < RL_T_CLOSE)
    rl__conn_arm(c, RL_T_CLOSE, ms);
}

static void conn_due(rl_conn *c) {
  int kind = c->timer_kind;
  dq_unlink(c);
  c->deadline = 0;
  c->timer_kind = RL_T_NONE;
  if (kind == RL_T_PROTO && !c->lingering && !c->out_blocked)
    c->proto->on_timeout(c);
  else
    rl__conn_close(c); /* blocked, lingering or closing too long */
}

static void dtimer_cb(uv_timer_t *t) {
  rl_io *io = t->data;
  uint64_t now = uv_now(io->loop);
  uint64_t next = UINT64_MAX;
  for (int i = 0; i < RL_DQ_MAX; i++) {
    rl_dq *q = &io->dq[i];
    rl_conn *c;
    while ((c = q->head) != NULL) {
      if (c->deadline == 0) {
        dq_unlink(c); /* disarmed */
      } else if (c->deadline <= now) {
        conn_due(c); /* (may arm others: in a later place) */
      } else if (c->deadline != c->dkey) {
        dq_unlink(c); /* moved on: back in order */
        dq_place(c, q);
      } else {
        break;
      }
    }
    if (q->head && q->head->dkey < next)
      next = q->head->dkey;
  }
  if (next != UINT64_MAX)
    dtimer_set(io, next);
}

/* ---- reading ----------------------------------------------------------------
 */

static char linger_buf[RL_READ_CHUNK];

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  rl_conn *c = h->data;
  (void)suggested;
  if (c->lingering) {
    *buf = uv_buf_init(linger_buf, sizeof linger_buf);
    return;
  }
  if (c->in_shared) {
    /* a loop run nested in a callback of this read: never move the
     * loop's buffer (read_cb gets UV_ENOBUFS) */
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  if (c->in_pos == c->in.len)
    c->in_pos = c->in.len = 0;
  size_t want = c->read_want;
  rl_io *io = c->io;
  if (c->borrow && c->in.base == NULL && want <= RL_READ_CHUNK &&
      !io->rbuf_busy &&
      (io->rbuf || (io->rbuf = malloc(RL_READ_CHUNK)) != NULL)) {
    /* An idle connection has no buffer of its own: it borrows the loop's
     * for this read, and read_cb keeps only what is left unconsumed. */
    io->rbuf_busy = 1;
    c->in_shared = 1;
    c->in.base = io->rbuf;
    c->in.cap = RL_READ_CHUNK;
    *buf = uv_buf_init(io->rbuf, RL_READ_CHUNK);
    return;
  }
  if (want > RL_READ_CHUNK && c->in.cap - c->in_pos < want) {
    /* a large unit (a WebSocket frame) is read whole into this buffer */
    if (c->in_pos > 0) {
      memmove(c->in.base, c->in.base + c->in_pos, c->in.len - c->in_pos);
      c->in.len -= c->in_pos;
      c->in_pos = 0;
    }
    if (rl__buf_reserve(&c->in, want - c->in.len)) {
      *buf = uv_buf_init(NULL, 0);
      return;
    }
  }
  if (c->in.cap - c->in.len < RL_READ_CHUNK / 4 && c->in_pos > 0) {
    memmove(c->in.base, c->in.base + c->in_pos, c->in.len - c->in_pos);
    c->in.len -= c->in_pos;
    c->in_pos = 0;
  }
  if (c->in.cap - c->in.len < RL_READ_CHUNK / 4 &&
      rl__buf_reserve(&c->in, RL_READ_CHUNK)) {
    *buf = uv_buf_init(NULL, 0); /* read_cb gets UV_ENOBUFS */
    return;
  }
  *buf = uv_buf_init(c->in.base + c->in.len, c->in.cap - c->in.len);
}

/* Give back the loop's read buffer, keeping what is left unconsumed in a
 * buffer of the connection's own. */
static void unshare_in(rl_conn *c) {
  rl_io *io = c->io;
  size_t left = c->in.len - c->in_pos;
  c->in_shared = 0;
  io->rbuf_busy = 0;
  c->in.base = NULL;
  c->in.len = c->in.cap = 0;
  size_t from = c->in_pos;
  c->in_pos = 0;
  if (left == 0 || rl__conn_closed(c))
    return;
  if (rl__buf_append(&c->in, io->rbuf + from, left))
    rl__conn_close(c); /* out of memory */
}

static void read_some(rl_conn *c, ssize_t nread) {
  if (c->lingering) {
    if (nread < 0)
      rl__conn_close(c);
    return;
  }
  if (nread == 0)
    return;
  if (nread < 0) {
    c->read_eof = 1;
    rl__conn_read_stop(c);
    if (!c->closing)
      c->proto->on_eof(c, (int)nread);
    else if (nread != UV_EOF || rl__conn_buffered(c) == 0)
      rl__conn_close(c);
    return; /* a shutdown in progress lingers no more once written */
  }
  c->in.len += (size_t)nread;
  if (c->closing)
    c->in_pos = c->in.len; /* closing: input is discarded */
  else
    c->proto->on_read(c);
}

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  rl_conn *c = stream->data;
  (void)buf;
  read_some(c, nread);
  if (c->in_shared)
    unshare_in(c);
}

void rl__conn_read_start(rl_conn *c) {
  if (c->reading || c->read_eof || c->out_blocked || c->closing)
    return;
  if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) == 0)
    c->reading = 1;
}

void rl__conn_read_stop(rl_conn *c) {
  if (c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
  }
}

/* Output backpressure: a client that sends requests (or pings) faster
 * than it reads the answers stops being read until its output drains. */
int rl__conn_pause_if_full(rl_conn *c) {
  if (rl__conn_buffered(c) < RL_MAX_OUT)
    return 0;
  c->out_blocked = 1;
  if (c->timer_kind < RL_T_BLOCKED && !c->lingering)
    rl__conn_arm(c, RL_T_BLOCKED,
                 c->idle_ms); /* a peer that never reads is dropped */
  rl__conn_read_stop(c);
  return 1;
}

void rl__conn_in_trim(rl_conn *c, size_t want) {
  if (c->in_pos == 0)
    return;
  if (c->in_pos == c->in.len) {
    /* an idle connection holds no read buffer */
    if (c->in_shared)
      c->in.len = 0; /* read_cb gives it back */
    else
      rl__buf_free(&c->in);
    c->in_pos = 0;
  } else if (want > 0 && c->in.cap - c->in_pos < want) {
    /* make room for the rest of a large unit at the buffer's end */
    memmove(c->in.base, c->in.base + c->in_pos, c->in.len - c->in_pos);
    c->in.len -= c->in_pos;
    c->in_pos = 0;
  }
}

/* ---- writing ----------------------------------------------------------------
 */

void rl__conn_broken(rl_conn *c) {
  c->broken = 1;
  rl__conn_mark_dirty(c);
}

void rl__conn_write(rl_conn *c, const void *p, size_t n) {
  if (c->lingering || c->broken || rl__conn_closed(c))
    return;
  rl__io_buf_take(c->io, &c->out);
  if (rl__buf_append(&c->out, p, n)) {
    rl__conn_broken(c);
    return;
  }
  c->queued += n;
  c->queued_total += n;
  rl__conn_mark_dirty(c);
}

void rl__conn_write_shared(rl_conn *c, rl_shared *s) {
  if (c->lingering || c->broken || rl__conn_closed(c) || s->len == 0)
    return;
  if (s->len < RL_SHARE_MIN) { /* copying is cheaper than one more slice */
    rl__conn_write(c, s->data, s->len);
    return;
  }
  if (c->nrefs == c->refs_cap) {
    uint32_t cap = c->refs_cap ? c->refs_cap * 2 : 4;
    rl_slice *r = realloc(c->refs, cap * sizeof *r);
    if (r == NULL) {
      rl__conn_broken(c);
      return;
    }
    c->refs = r;
    c->refs_cap = cap;
  }
  c->refs[c->nrefs].at = c->out.len;
  c->refs[c->nrefs].buf = rl__shared_ref(s);
  c->nrefs++;
  c->queued += s->len;
  c->queued_total += s->len;
  rl__conn_mark_dirty(c);
}

/* Some output reached the socket; the protocol is told unless the
 * caller wrote it whole itself (rl__conn_flush_now). */
static void conn_written(rl_conn *c, int tell) {
  if (tell)
    c->proto->on_written(c);
  if (rl__conn_closed(c))
    return;
  if (c->queued || c->nwrites) {
    if (c->want_close && !c->lingering && c->timer_kind == RL_T_BLOCKED)
      rl__conn_arm(c, RL_T_BLOCKED, c->idle_ms); /* progress: wait again */
    return;
  }
  if (c->out_blocked) {
    c->out_blocked = 0; /* drained: read and parse again */
    if (c->timer_kind == RL_T_BLOCKED)
      rl__conn_arm(c, RL_T_NONE, 0);
    rl__conn_defer(c);
  }
  if (c->want_close && !c->lingering)
    start_linger(c);
}

static void write_cb(uv_write_t *req, int status) {
  rl_wreq *w = (rl_wreq *)req;
  rl_conn *c = req->handle->data;
  c->nwrites--;
  c->inflight -= w->len;
  rl_buf wb = {w->base, 0, w->cap};
  rl__io_buf_give(c->io, &wb); /* for the next response (this one's too) */
  unref_slices(w->refs, w->nrefs);
  free(w->refs);
  size_t len = w->len;
  free(w);
  if (rl__conn_closed(c))
    return;
  if (status < 0) {
    rl__conn_close(c);
    return;
  }
  c->written_total += len;
  conn_written(c, 1);
}

/* Append p[0..len) to b in pieces of at most RL_BUF_MAX. */
static int add_bufs(uv_buf_t *b, int *n, int max, const char *p, size_t len) {
  while (len > 0) {
    size_t piece = len > RL_BUF_MAX ? RL_BUF_MAX : len;
    if (*n == max)
      return -1;
    b[(*n)++] = uv_buf_init((char *)p, (unsigned)piece);
    p += piece;
    len -= piece;
  }
  return 0;
}

/* The queue as iovecs: out's bytes with the shared slices among them.
 * Returns the count (at most max), or -1 when it does not fit. */
static int queue_bufs(rl_conn *c, uv_buf_t *b, int max) {
  int n = 0;
  size_t at = 0;
  for (size_t i = 0; i < c->nrefs; i++) {
    rl_slice *r = &c->refs[i];
    if (add_bufs(b, &n, max, c->out.base + at, r->at - at) ||
        add_bufs(b, &n, max, r->buf->data, r->buf->len))
      return -1;
    at = r->at;
  }
  if (add_bufs(b, &n, max, c->out.base + at, c->out.len - at))
    return -1;
  return n;
}

/* Hand the queue to libuv: written at once when the socket takes it all
 * (uv_try_write), else in one uv_write that owns the buffers. */
static void flush(rl_conn *c, int tell) {
  if (rl__conn_closed(c) || c->queued == 0)
    return;
  uv_buf_t small[32], *b = small;
  int nb = 1;
  if (c->nrefs == 0 && c->out.len <= RL_BUF_MAX) {
    small[0] = uv_buf_init(c->out.base, (unsigned)c->out.len); /* usual */
  } else {
    /* out's pieces between the slices, the slices, and the splits of any
     * piece past RL_BUF_MAX (uv_buf_t lengths are unsigned int) */
    size_t need = 2 * c->nrefs + 2 + c->queued / RL_BUF_MAX;
    if (need > sizeof small / sizeof small[0] &&
        (b = malloc(need * sizeof *b)) == NULL) {
      rl__conn_close(c);
      return;
    }
    nb = queue_bufs(c, b, (int)need);
    if (nb < 0) { /* cannot happen: need counts every piece */
      if (b != small)
        free(b);
      rl__conn_close(c);
      return;
    }
  }
  size_t off = 0;
  if (c->nwrites == 0 && nb > 0) {
    int n = uv_try_write((uv_stream_t *)&c->tcp, b, (unsigned)nb);
    if (n < 0 && n != UV_EAGAIN) {
      if (b != small)
        free(b);
      rl__conn_close(c);
      return;
    }
    if (n > 0)
      off = (size_t)n;
  }
  c->written_total += off;
  if (off == c->queued) {
    if (b != small)
      free(b);
    rl__io_buf_give(c->io, &c->out); /* written: idle holds no buffer */
    c->queued = 0;
    unref_slices(c->refs, c->nrefs);
    c->nrefs = 0;
    conn_written(c, tell);
    return;
  }
  /* skip what was written */
  int first = 0;
  while (off >= b[first].len) {
    off -= b[first].len;
    first++;
  }
  b[first].base += off;
  b[first].len -= (unsigned)off;
  rl_wreq *w = malloc(sizeof *w);
  if (w == NULL) {
    if (b != small)
      free(b);
    rl__conn_close(c);
    return;
  }
  size_t len = 0;
  for (int i = first; i < nb; i++)
    len += b[i].len;
  w->base = c->out.base; /* hand the buffers over; no copy */
  w->cap = c->out.cap;
  w->len = len;
  w->refs = c->refs;
  w->nrefs = c->nrefs;
  c->out.base = NULL;
  c->out.len = c->out.cap = 0;
  c->refs = NULL;
  c->nrefs = c->refs_cap = 0;
  c->queued = 0;
  int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, b + first,
                   (unsigned)(nb - first), write_cb);
  if (b != small)
    free(b); /* libuv copied the array */
  if (r != 0) {
    free(w->base);
    unref_slices(w->refs, w->nrefs);
    free(w->refs);
    free(w);
    rl__conn_close(c);
    return;
  }
  c->nwrites++;
  c->inflight += len;
  c->backlogged = 1; /* the socket is full: a drain is due when this empties */
}

int64_t rl__conn_sendfile(rl_conn *c, int fd, int64_t off, size_t n) {
  if (rl__conn_closed(c) || c->lingering)
    return UV_ECANCELED;
  if (n > (1 << 20))
    n = 1 << 20;
  if (rl__conn_buffered(c) == 0) {
    uv_os_fd_t sock;
    if (uv_fileno((uv_handle_t *)&c->tcp, &sock) != 0)
      return UV_EBADF;
    for (;;) {
      off_t o = (off_t)off;
      ssize_t r = sendfile(sock, fd, &o, n);
      if (r > 0) {
        c->queued_total += (uint64_t)r;
        c->written_total += (uint64_t)r;
        return r;
      }
      if (r == 0)
        return 0;
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINVAL &&
          errno != ENOSYS)
        return -errno;
      break; /* the socket is full: one piece through the queue */
    }
  }
  size_t piece = n > RL_FILE_CHUNK ? RL_FILE_CHUNK : n;
  rl__io_buf_take(c->io, &c->out);
  if (rl__buf_reserve(&c->out, piece))
    return UV_ENOMEM;
  ssize_t r = pread(fd, c->out.base + c->out.len, piece, (off_t)off);
  if (r <= 0)
    return r < 0 ? -errno : 0;
  size_t start = c->out.len;
  c->out.len += (size_t)r;
  rl__conn_commit(c, start);
  return r;
}

/* ---- closing ------------------------------------------------------------ */

static void conn_closed(uv_handle_t *h) {
  rl_conn *c = h->data;
  if (c->in_shared) { /* a read that never completed: not ours to free */
    c->io->rbuf_busy = 0;
    c->in_shared = 0;
    c->in.base = NULL;
  }
  c->proto->on_free(c);
  rl__buf_free(&c->in);
  rl__buf_free(&c->out);
  unref_slices(c->refs, c->nrefs);
  free(c->refs);
  c->io->handles--;
  rl_conn_set *set = c->set;
  free(c);
  if (set && --set->alive == 0 && set->on_empty)
    set->on_empty(set);
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  rl_conn *c = req->data;
  free(req);
  if (status < 0)
    rl__conn_close(c);
}

/* Half-close and drain: closing a socket with unread input makes the
 * kernel send RST, which can destroy the response we just sent (a 413
 * while the client is still uploading). So shut down our side and read
 * until the peer closes or the linger timer fires. */
static void start_linger(rl_conn *c) {
  c->lingering = 1;
  if (c->read_eof) {
    rl__conn_close(c);
    return;
  }
  uv_shutdown_t *req = malloc(sizeof *req);
  if (req == NULL ||
      uv_shutdown(req, (uv_stream_t *)&c->tcp, shutdown_cb) != 0) {
    free(req);
    rl__conn_close(c);
    return;
  }
  req->data = c;
  rl__conn_arm(c, RL_T_LINGER, RL_LINGER_MS);
  rl__conn_read_stop(c);
  if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) == 0)
    c->reading = 1;
}

/* The close sequence starts: the protocol hears it once. */
static void begin_close(rl_conn *c) {
  if (c->closing)
    return;
  c->closing = 1;
  c->proto->on_close(c);
}

void rl__conn_shutdown(rl_conn *c) {
  if (rl__conn_closed(c))
    return;
  c->want_close = 1;
  begin_close(c);
  if (rl__conn_closed(c) || c->lingering)
    return;
  if (c->queued || c->nwrites) {
    /* conn_written lingers once it is all out; a peer that takes none of
     * it for idle_ms is dropped */
    rl__conn_arm(c, RL_T_BLOCKED, c->idle_ms);
    rl__conn_mark_dirty(c);
    return;
  }
  start_linger(c);
}

void rl__conn_close(rl_conn *c) {
  if (rl__conn_closed(c))
    return;
  begin_close(c);
  if (rl__conn_closed(c))
    return; /* on_close closed it */
  unmark_dirty(c);
  set_unlink(c);
  dq_unlink(c);
  c->deadline = 0;
  uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

void rl__conn_goaway(rl_conn *c) {
  if (!c->closing)
    c->proto->on_goaway(c);
}
