/* The transport and the WebSocket codec driven on their own, with no HTTP
 * and no Lua: real sockets on 127.0.0.1, clients on the same libuv loop.
 *
 *   1. shared buffers: every accepted connection queues copied bytes and
 *      reference-counted shared buffers interleaved (one big enough to fill
 *      the socket, so the queue goes through uv_write holding references),
 *      then shuts down; each client must read exactly those bytes in that
 *      order, and the shared buffers must end with only the test's own
 *      reference.
 *   2. a WebSocket broadcast: every connection speaks WebSocket at once;
 *      one frame is built once (rl__ws_frame) and queued on all of them
 *      (rl__ws_send_shared), then a close; each client must read the frame
 *      and the close frame, and each connection's on_close must report the
 *      code we sent.
 *   3. nothing goes upward after on_close: each connection queues a frame
 *      bigger than its socket takes, the client sends a close frame and
 *      reads only later; the closing handshake shuts the connection down
 *      (on_close) while it still flushes, and no on_written may follow.
 *   4. the listener's on_closed runs once the listener and all of its
 *      connections are gone (after each round).
 *
 * Prints what it checked and exits 0, or prints the failure and exits 1.
 * spec/transport_spec.lua runs it (under ASan in the sanitized build). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "listen.h"
#include "ws.h"

#define NCLIENTS 20
#define BIG (512 * 1024)

static uv_loop_t *loop;
static rl_io io;
static rl_listener lst;
static int failures, checks, phase, accepted, closes, closed_listener;
static rl_shared *big, *small, *big_frame;
static char hello[600]; /* round 2's message: over RL_SHARE_MIN */
static char expect[2 * BIG + 64];
static size_t expect_len;

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    checks++;                                                                  \
    if (!(cond)) {                                                             \
      failures++;                                                              \
      fprintf(stderr, "FAILED %s:%d: ", __FILE__, __LINE__);                   \
      fprintf(stderr, __VA_ARGS__);                                            \
      fputc('\n', stderr);                                                     \
    }                                                                          \
  } while (0)

/* ---- the server side: a protocol that only writes --------------------- */

static void p_noop(rl_conn *c) { (void)c; }
static void p_eof(rl_conn *c, int err) {
  (void)err;
  rl__conn_close(c);
}
static int queued_writes; /* connections whose queue went to uv_write */
static void p_free(rl_conn *c) { queued_writes += c->backlogged; }
static const rl_proto writer = {p_noop, p_eof,  p_noop, p_noop, p_noop,
                                p_noop, p_noop, p_free, NULL};

/* round 3: per connection, whether on_close ran and upcalls after it */
static int closed_up[NCLIENTS], late_upcalls;

static void ws_message(void *ud, int op, const char *p, size_t n) {
  (void)op, (void)p, (void)n;
  if (ud && *(int *)ud)
    late_upcalls++;
}
static void ws_written(void *ud) {
  if (ud && *(int *)ud)
    late_upcalls++;
}
static void ws_closed(void *ud, int code, const char *reason, size_t n) {
  closes++;
  CHECK(code == 1000, "on_close code %d, want 1000", code);
  if (phase == 2)
    CHECK(n == 3 && memcmp(reason, "bye", 3) == 0, "on_close reason '%.*s'",
          (int)n, reason);
  if (ud)
    *(int *)ud = 1;
}
static const rl_ws_cbs ws_cbs = {ws_message, ws_written, ws_closed};

static void start_round(void);

static void on_accept(rl_listener *l, rl_conn *c) {
  (void)l;
  rl__conn_set_proto(c, &writer, NULL);
  int sndbuf = 32 * 1024; /* a small socket buffer: the queue must wait */
  uv_send_buffer_size((uv_handle_t *)&c->tcp, &sndbuf);
  if (phase == 3) { /* a big frame queued at once, before the peer's close */
    rl_ws *ws = rl__ws_new(1024);
    rl__ws_start(ws, c, &ws_cbs, &closed_up[accepted++]);
    CHECK(rl__ws_send_shared(ws, big_frame) == 0, "send_shared refused");
    return;
  }
  if (++accepted < NCLIENTS)
    return;
  /* everyone is here: write to all of them */
  for (rl_conn *x = lst.conns.head; x; x = x->next) {
    if (phase == 1) {
      rl__conn_write(x, "a", 1);
      rl__conn_write_shared(x, big);
      rl__conn_write(x, "b", 1);
      rl__conn_write_shared(x, small);
      rl__conn_write_shared(x, big);
      rl__conn_write(x, "c", 1);
      rl__conn_shutdown(x);
    } else {
      rl_ws *ws = rl__ws_new(1024);
      rl__ws_start(ws, x, &ws_cbs, NULL);
    }
  }
  if (phase == 2) {
    rl_shared *frame = rl__ws_frame(RL_WS_TEXT, hello, sizeof hello);
    for (rl_conn *x = lst.conns.head; x; x = x->next) {
      rl_ws *ws = x->data;
      CHECK(rl__ws_send_shared(ws, frame) == 0, "send_shared refused");
      rl__ws_close(ws, 1000, "bye", 3);
    }
    CHECK(frame->refs == 1 + NCLIENTS, "frame refs %zu, want %d", frame->refs,
          1 + NCLIENTS);
    rl__shared_unref(frame); /* the queues hold it now */
  }
}

/* ---- the clients ----------------------------------------------------------
 */

typedef struct {
  uv_tcp_t tcp;
  uv_connect_t req;
  rl_buf got;
} client;

static client clients[NCLIENTS];
static int clients_done;
static uv_timer_t later; /* round 3: clients start reading after a while */

static void client_alloc(uv_handle_t *h, size_t s, uv_buf_t *b) {
  client *k = h->data;
  (void)s;
  if (rl__buf_reserve(&k->got, 65536)) {
    *b = uv_buf_init(NULL, 0);
    return;
  }
  *b = uv_buf_init(k->got.base + k->got.len, 65536);
}

static void client_closed(uv_handle_t *h) {
  client *k = h->data;
  rl__buf_free(&k->got);
  if (++clients_done == NCLIENTS)
    rl__listener_close(&lst); /* the round is over */
}

static void client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  client *k = s->data;
  (void)b;
  if (n > 0) {
    k->got.len += (size_t)n;
    /* a WebSocket client closes once it has the close frame */
    if (phase >= 2 && k->got.len >= expect_len)
      n = UV_EOF;
  }
  if (n < 0) {
    CHECK(k->got.len == expect_len &&
              memcmp(k->got.base, expect, expect_len) == 0,
          "client %d read %zu bytes, want %zu (or other bytes)",
          (int)(k - clients), k->got.len, expect_len);
    uv_close((uv_handle_t *)&k->tcp, client_closed);
  }
}

static void read_later(uv_timer_t *t) {
  (void)t;
  for (int i = 0; i < NCLIENTS; i++)
    uv_read_start((uv_stream_t *)&clients[i].tcp, client_alloc, client_read);
}

static int connected;

static void client_connected(uv_connect_t *req, int status) {
  client *k = req->data;
  CHECK(status == 0, "connect: %s", uv_strerror(status));
  if (status != 0)
    return;
  if (phase != 3) {
    uv_read_start((uv_stream_t *)&k->tcp, client_alloc, client_read);
    return;
  }
  /* a masked close frame (code 1000, mask 0), and no reading for now */
  static uv_write_t w[NCLIENTS];
  static char close_frame[] = "\x88\x82\0\0\0\0\x03\xe8";
  uv_buf_t b = uv_buf_init(close_frame, sizeof close_frame - 1);
  uv_write(&w[k - clients], (uv_stream_t *)&k->tcp, &b, 1, NULL);
  if (++connected == NCLIENTS)
    uv_timer_start(&later, read_later, 300, 0);
}

/* ---- rounds ---------------------------------------------------------------
 */

static void listener_closed(rl_listener *l) {
  (void)l;
  closed_listener++;
  CHECK(lst.conns.alive == 0 && lst.conns.open == 0,
        "connections left: %d alive, %d open", lst.conns.alive, lst.conns.open);
  if (phase == 1) {
    CHECK(queued_writes > 0, "no queue had to wait for its socket: the "
                             "references in uv_write went untested");
    CHECK(big->refs == 1 && small->refs == 1,
          "shared refs after round 1: big %zu small %zu, want 1 and 1",
          big->refs, small->refs);
    phase = 2;
    start_round();
  } else if (phase == 2) {
    CHECK(closes == NCLIENTS, "on_close ran %d times, want %d", closes,
          NCLIENTS);
    closes = 0;
    phase = 3;
    start_round();
  } else {
    CHECK(closes == NCLIENTS, "on_close ran %d times, want %d", closes,
          NCLIENTS);
    CHECK(late_upcalls == 0, "%d upcalls after on_close", late_upcalls);
    CHECK(big_frame->refs == 1, "big frame refs %zu, want 1", big_frame->refs);
    uv_close((uv_handle_t *)&later, NULL);
    rl__io_close(&io);
  }
}

static void start_round(void) {
  memset(&lst, 0, sizeof lst);
  accepted = clients_done = connected = 0;
  lst.on_accept = on_accept;
  lst.on_closed = listener_closed;
  int r = rl__listen(&lst, &io, "127.0.0.1", 0);
  CHECK(r == 0, "listen: %s", uv_strerror(r));
  if (r)
    exit(1);
  if (phase == 1) { /* a big b small big c */
    size_t n = 0;
    expect[n++] = 'a';
    memcpy(expect + n, big->data, big->len), n += big->len;
    expect[n++] = 'b';
    memcpy(expect + n, small->data, small->len), n += small->len;
    memcpy(expect + n, big->data, big->len), n += big->len;
    expect[n++] = 'c';
    expect_len = n;
  } else if (phase == 2) {
    /* a 600-byte text frame (shared, not copied), then the close */
    static const char head[] = "\x81\x7e\x02\x58", bye[] = "\x88\x05\x03\xe8"
                                                           "bye";
    memset(hello, 'h', sizeof hello);
    memcpy(expect, head, 4);
    memcpy(expect + 4, hello, sizeof hello);
    memcpy(expect + 4 + sizeof hello, bye, sizeof bye - 1);
    expect_len = 4 + sizeof hello + sizeof bye - 1;
  } else { /* the big frame, then the echo of the client's close */
    memcpy(expect, big_frame->data, big_frame->len);
    memcpy(expect + big_frame->len, "\x88\x02\x03\xe8", 4);
    expect_len = big_frame->len + 4;
  }
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", lst.port, &a);
  for (int i = 0; i < NCLIENTS; i++) {
    client *k = &clients[i];
    memset(k, 0, sizeof *k);
    uv_tcp_init(loop, &k->tcp);
    k->tcp.data = k;
    k->req.data = k;
    uv_tcp_connect(&k->req, &k->tcp, (struct sockaddr *)&a, client_connected);
  }
}

int main(void) {
  loop = uv_default_loop();
  rl__io_init(&io, loop);
  big = rl__shared_new(NULL, BIG);
  for (size_t i = 0; i < BIG; i++)
    big->data[i] = (char)('A' + i % 26);
  small = rl__shared_new("shared!", 7);
  big_frame = rl__ws_frame(RL_WS_BINARY, big->data, big->len);
  uv_timer_init(loop, &later);
  phase = 1;
  start_round();
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK(closed_listener == 3, "listener on_closed ran %d times, want 3",
        closed_listener);
  CHECK(io.handles == 0, "%d transport handles still open", io.handles);
  rl__shared_unref(big);
  rl__shared_unref(small);
  rl__shared_unref(big_frame);
  rl__io_free(&io);
  uv_loop_close(loop);
  printf("transport: %d checks, %d failed (%d of %d queues waited for "
         "their socket)\n",
         checks, failures, queued_writes, NCLIENTS);
  return failures ? 1 : 0;
}
