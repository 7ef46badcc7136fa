/* The transport: one connection's socket and its bytes, below every
 * protocol. It knows nothing of HTTP or WebSockets.
 *
 * Owns: the socket (a uv_tcp_t); the deadlines (queues per delay under one
 * timer per loop); the read
 * buffer (and the loop-wide buffer an idle connection borrows for a read);
 * the write queue and its batching (the flusher: once per loop turn every
 * connection with output gets one write); backpressure (reading pauses
 * while more than RL_MAX_OUT is queued, and a peer that stays blocked past
 * idle_ms is dropped); deadlines; the close sequence (flush, half-close,
 * linger, close, free). May call: base.h and libuv.
 *
 * A protocol registers an rl_proto, a table of callbacks, and its state
 * pointer (rl__conn_set_proto); the transport hands it bytes and events
 * through that table only, as libuv hands a stream's bytes to its read
 * callback. Swapping the table swaps the protocol (an upgrade). */
#ifndef RL_CONN_H
#define RL_CONN_H

#include "base.h"

#define RL_MAX_OUT (1024 * 1024) /* output queued before reading pauses */
#define RL_READ_CHUNK (16 * 1024)

typedef struct rl_io rl_io;
typedef struct rl_conn rl_conn;
typedef struct rl_conn_set rl_conn_set;

/* ---- shared buffers ---------------------------------------------------------
 * A reference-counted block of bytes that many connections' write queues
 * can hold at once without copying it: a broadcast frames a message once
 * and queues the same block on every member. rl__conn_write_shared takes a
 * reference; the transport drops it once the bytes are written or the
 * connection closes. The creator holds the first reference and drops it
 * with rl__shared_unref when done queueing. */
typedef struct rl_shared {
  size_t refs;
  size_t len;
  char data[]; /* len bytes */
} rl_shared;

/* A block of n bytes (copied from p unless p is NULL), one reference. */
rl_shared *rl__shared_new(const void *p, size_t n);
static inline rl_shared *rl__shared_ref(rl_shared *s) {
  s->refs++;
  return s;
}
void rl__shared_unref(rl_shared *s); /* frees it with the last reference */

/* ---- a protocol's callbacks ---------------------------------------------
 * Each runs from a libuv callback or the flusher, except on_close: it runs
 * inside whichever call starts the close sequence (rl__conn_close or
 * rl__conn_shutdown, from any layer), so it must not free what its caller
 * may still use. After any callback, a caller checks rl__conn_closing. */
typedef struct rl_proto {
  /* Bytes arrived: [in.base + in_pos, in.base + in.len) is unparsed; the
   * protocol consumes by advancing in_pos. */
  void (*on_read)(rl_conn *c);
  /* The peer closed its side (UV_EOF) or a read failed (err < 0); reading
   * has stopped. The protocol closes, or lets a response finish. */
  void (*on_eof)(rl_conn *c, int err);
  /* Some output reached the socket (rl__conn_buffered tells what is left).
   * It still comes while a shut-down connection flushes, after on_close:
   * a protocol forwards nothing upward then. Not for a write made by
   * rl__conn_flush_now that the socket took whole. */
  void (*on_written)(rl_conn *c);
  /* Work asked for with rl__conn_defer, or input to parse again now that
   * the output drained (reading resumed). */
  void (*on_continue)(rl_conn *c);
  /* The deadline set with rl__conn_timeout passed. */
  void (*on_timeout)(rl_conn *c);
  /* Its server is stopping: finish what is in progress and close. */
  void (*on_goaway)(rl_conn *c);
  /* The close sequence started (once): no more input will come; let go of
   * what upper layers hold. Writes are still accepted until lingering. */
  void (*on_close)(rl_conn *c);
  /* The handles are closed: free the protocol's memory. c goes next. */
  void (*on_free)(rl_conn *c);
  /* Optional (NULL: none), for a connection rl__conn_connect made: it is
   * established (status 0; reading has not started) or it failed (a UV
   * error; the protocol closes it). Not called once the close began. */
  void (*on_connect)(rl_conn *c, int status);
} rl_proto;

/* ---- per-loop state ------------------------------------------------------ */

/* Connections armed with the same delay, in the order of the deadlines
 * they were placed with: arming appends at the tail (now + delay is never
 * before the tail's), so one timer per loop serves them all at O(1) a
 * deadline (h2o's way). */
typedef struct {
  uint64_t ms; /* the delay, 0 for a free slot */
  rl_conn *head, *tail;
} rl_dq;
#define RL_DQ_MAX 16

/* Buffers idle connections gave back, for the next busy ones. */
#define RL_SPARES 64
#define RL_SPARE_MAX (16 * 1024) /* larger ones are freed */

struct rl_io {
  uv_loop_t *loop;
  uv_idle_t flusher;   /* runs while connections have output or work deferred */
  rl_conn *dirty;      /* connections to flush: a list via dirty_next, */
  rl_conn *dirty_tail; /* marked ones joining at the tail */
  char *rbuf;          /* malloc'd: the read buffer idle connections borrow */
  int rbuf_busy;       /* lent to a connection for the read in progress */
  int handles;         /* transport handles open on loop (the flusher too) */
  uint64_t next_id;    /* ids for connections */
  rl_date date;        /* the Date header's cache, for this loop's protocols */
  struct {
    char *base;
    size_t cap;
  } spare[RL_SPARES]; /* malloc'd: buffers given back (rl__io_buf_give) */
  int nspare;
  uv_timer_t dtimer;   /* fires at the earliest deadline of the queues */
  uint64_t dtimer_due; /* when it fires, while active */
  rl_dq dq[RL_DQ_MAX];
};

void rl__io_init(rl_io *io, uv_loop_t *loop);
/* An empty buffer (no bytes of its own) gets a spare, if there is one, so
 * that a busy connection rarely mallocs; a buffer whose bytes are done
 * with goes back as a spare (or is freed) and is empty after: an idle
 * connection holds none. */
static inline void rl__io_buf_take(rl_io *io, rl_buf *b) {
  if (b->base == NULL && io->nspare > 0) {
    io->nspare--;
    b->base = io->spare[io->nspare].base;
    b->cap = io->spare[io->nspare].cap;
    b->len = 0;
  }
}
void rl__io_buf_give(rl_io *io, rl_buf *b);
/* Close the flusher; the caller runs the loop until handles is 0, then
 * calls rl__io_free. */
void rl__io_close(rl_io *io);
void rl__io_free(rl_io *io);

/* ---- a set of connections (a listener's, a client pool's) ----------------
 * open counts the connections on the list: those not closed yet
 * (rl__conn_close takes a connection off; one shutting down or lingering
 * stays on, so a server's stop can still cut it short); alive counts those
 * not yet freed. on_empty runs when alive drops to 0. */
struct rl_conn_set {
  rl_conn *head; /* open connections, via next/prev */
  int open;
  int alive;
  void (*on_empty)(rl_conn_set *set);
};

/* ---- connections --------------------------------------------------------- */

/* A slice of a shared buffer queued after `at` bytes of out */
typedef struct {
  size_t at;
  rl_shared *buf;
} rl_slice;

struct rl_conn {
  uv_tcp_t tcp; /* data -> conn */
  rl_io *io;
  const rl_proto *proto;
  void *data;           /* the protocol's state; the ext area unless swapped */
  rl_conn_set *set;     /* the set it belongs to, if any */
  rl_conn *next, *prev; /* set->head */
  rl_conn *dirty_next, *dirty_prev; /* io->dirty */
  /* reading */
  rl_buf in; /* read buffer; [in_pos, in.len) not consumed yet */
  size_t in_pos;
  size_t read_want; /* the protocol expects this many bytes: read them into
                       one buffer (0 = no preference) */
  /* writing */
  rl_buf out;     /* bytes queued, not yet handed to libuv */
  rl_slice *refs; /* malloc'd: shared buffers queued among out's bytes */
  uint32_t nrefs, refs_cap;
  size_t queued;          /* bytes queued: out.len plus the shared slices */
  size_t inflight;        /* bytes in uv_write requests */
  uint64_t queued_total;  /* bytes ever queued */
  uint64_t written_total; /* bytes ever written */
  int nwrites;            /* uv_write requests pending */
  /* deadlines */
  uint64_t idle_ms;       /* drop a peer whose output stays blocked this long */
  uint64_t deadline;      /* loop time the timeout is due, 0 = none */
  uint64_t dkey;          /* its deadline when it took its place in dq */
  rl_dq *dq;              /* the queue it waits in, while armed */
  rl_conn *dnext, *dprev; /* in dq */
  uint64_t id;            /* unique per io: tells reused addresses apart */
  /* flags */
  uint8_t is_dirty;  /* on io's dirty list */
  uint8_t deferred;  /* call on_continue from the flusher */
  uint8_t in_shared; /* in.base is io->rbuf, lent for one read */
  uint8_t borrow;    /* with no buffer of its own, borrow io->rbuf */
  uint8_t reading;   /* uv_read_start is active */
  uint8_t read_eof;
  uint8_t out_blocked; /* reading paused until the output drains */
  uint8_t backlogged;  /* output had to wait for the socket; the upper layer
                          clears it when it has told its user of the drain */
  uint8_t timer_kind;  /* RL_T_*: who the deadline is for */
  uint8_t closing;     /* the close sequence started: on_close has run */
  uint8_t want_close;  /* shut down once the output is written */
  uint8_t lingering;   /* shut down; discarding input until EOF or timer */
  uint8_t broken;      /* a write failed (out of memory): the flusher closes */
  /* who */
  uint16_t remote_port;
  char remote[48]; /* peer address (INET6_ADDRSTRLEN is 46) */
};

/* The handles are closing: nothing more is read or written. */
static inline int rl__conn_closed(const rl_conn *c) {
  return uv_is_closing((const uv_handle_t *)&c->tcp);
}

/* A connection with `ext` bytes of protocol state after it (c->data points
 * there, zeroed). Its handles are open; NULL when out of memory. */
rl_conn *rl__conn_new(rl_io *io, size_t ext);
/* Make c the connection of socket fd (an accepted one: c owns it now) and
 * join `set`. Returns 0, or an error after which c is closing. */
int rl__conn_open(rl_conn *c, uv_os_sock_t fd, rl_conn_set *set);
void rl__conn_set_proto(rl_conn *c, const rl_proto *p, void *data);
/* Connect c to addr (an outbound connection) and join `set`. Returns 0
 * (the protocol's on_connect follows), or an error after which c is
 * closing. */
int rl__conn_connect(rl_conn *c, const struct sockaddr *addr, rl_conn_set *set);
/* Whether c keeps the loop alive (1, the default) or not (an idle
 * connection parked in a client's pool must not hold a script open). */
void rl__conn_ref(rl_conn *c, int ref);

/* Reading. */
void rl__conn_read_start(rl_conn *c); /* unless paused, at EOF or closing */
void rl__conn_read_stop(rl_conn *c);
/* Output backpressure: when RL_MAX_OUT or more is queued, stop reading
 * until it drains (then on_continue) and drop the peer if it stays blocked
 * past idle_ms. Returns 1 when paused. Protocols call it before each
 * request or frame they parse. */
int rl__conn_pause_if_full(rl_conn *c);
/* The protocol has consumed up to in_pos: with nothing left, an idle
 * connection gives up its buffer; else, when `want` more bytes of one unit
 * (a frame) are due and do not fit after in_pos, move the rest to the
 * buffer's start. */
void rl__conn_in_trim(rl_conn *c, size_t want);

/* Writing: queue bytes for the flusher. */
void rl__conn_write(rl_conn *c, const void *p, size_t n);
void rl__conn_mark_dirty(rl_conn *c); /* the flusher visits c this turn */
/* Out of memory while queueing: the connection closes, from the flusher,
 * never inside the caller's call (a group's walk over its members, a
 * channel's send). */
void rl__conn_broken(rl_conn *c);
/* Queue a shared buffer: one of RL_SHARE_MIN bytes or more is queued by
 * reference (it takes one; the bytes are not copied), a smaller one is
 * copied (a memcpy of a few hundred bytes costs less than a slice, its
 * iovec and its reference). */
#define RL_SHARE_MIN 512
void rl__conn_write_shared(rl_conn *c, rl_shared *s);
/* Build output in place: append to rl__conn_outbuf(c) after noting its
 * len, then rl__conn_commit(c, that len) queues what was appended. */
static inline rl_buf *rl__conn_outbuf(rl_conn *c) {
  rl__io_buf_take(c->io, &c->out);
  return &c->out;
}
static inline void rl__conn_commit(rl_conn *c, size_t start) {
  if (c->lingering || c->broken || rl__conn_closed(c)) {
    c->out.len = start; /* shut down: nothing more goes out */
    return;
  }
  size_t n = c->out.len - start;
  c->queued += n;
  c->queued_total += n;
  if (!c->is_dirty)
    rl__conn_mark_dirty(c);
}
/* Send up to n bytes of file fd from off: with sendfile(2) while nothing
 * is queued, else one piece read into the queue. Returns the bytes sent or
 * queued, 0 at the file's end, or a negative UV error. */
int64_t rl__conn_sendfile(rl_conn *c, int fd, int64_t off, size_t n);
static inline size_t rl__conn_buffered(const rl_conn *c) {
  return c->queued + c->inflight;
}
void rl__conn_defer(rl_conn *c); /* on_continue from the flusher */
/* Write what is queued now instead of from the flusher, when no write is
 * in flight: for a producer with a piece ready that goes on while the
 * socket takes everything (a response body's pump). When the socket takes
 * it all, the protocol's on_written is not called (the caller is the
 * writer and goes on); what it does not take goes in a uv_write whose
 * completion calls on_written as usual. */
void rl__conn_flush_now(rl_conn *c);

/* Deadlines. The protocol's (0 clears it): on_timeout when due. Ignored
 * while the transport holds the timer for itself (blocked, lingering,
 * closing: a timer_kind above RL_T_PROTO). */
enum { RL_T_NONE, RL_T_PROTO, RL_T_BLOCKED, RL_T_CLOSE, RL_T_LINGER };
void rl__conn_arm(rl_conn *c, int kind, uint64_t ms);
static inline void rl__conn_timeout(rl_conn *c, uint64_t ms) {
  if (c->timer_kind <= RL_T_PROTO)
    rl__conn_arm(c, ms ? RL_T_PROTO : RL_T_NONE, ms);
}
void rl__conn_close_after(rl_conn *c, uint64_t ms); /* unless closed before */

/* Closing. shutdown: once the output is written, half-close and read until
 * the peer closes or a linger timeout (a peer that takes none of the output
 * for idle_ms is dropped); close: now, dropping the output.
 * Both start the sequence (on_close) once. goaway asks the protocol. */
void rl__conn_shutdown(rl_conn *c);
void rl__conn_close(rl_conn *c);
void rl__conn_goaway(rl_conn *c);
static inline int rl__conn_closing(const rl_conn *c) { return c->closing; }

#endif
