/* wsbench: WebSocket echo benchmark client (libuv and libc only).
 *
 *   wsbench --port P [--host 127.0.0.1] [--path /] [--conns N]
 *           [--messages M] [--size S] [--depth D] [--binary] [--timeout T]
 *   wsbench --port P --idle K [--hold SECONDS]
 *   wsbench --port P --publish /pub --path /sub --conns N --messages M
 *           [--size S] [--depth D] [--burst B] [--binary]
 *
 * Echo mode opens N connections on one loop, upgrades them all, then keeps D
 * messages of S bytes in flight on each until M messages per connection have
 * come back, checks every echo byte for byte and in order, and prints the
 * throughput and the latency from send to complete echo. Idle mode upgrades
 * K connections, prints "idle: K connections open", sends nothing for
 * SECONDS and closes them. Both end with a close 1000 handshake on every
 * connection. Broadcast mode (--publish PATH) opens one publisher on PATH
 * and N subscribers on --path; the publisher sends M messages, keeping at
 * most D of them not yet received by every subscriber, and each subscriber
 * must receive all M, byte for byte and in order (with --burst B it waits
 * until B can go and sends them in one write). It prints deliveries per
 * second (N x M over the time) and the latency from publishing a message
 * to its arrival at the last subscriber. Exit status: 0 ok, 1 error or
 * wrong echo, 2 timeout. */
#define _POSIX_C_SOURCE 200809L /* uv.h needs POSIX types under -std=c11 */
#include <ctype.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define MAX_PENDING 256    /* handshakes in progress at once */
#define CLOSE_WAIT_MS 5000 /* for the server's close frame and TCP close */
#define MAX_HEADER 8192    /* handshake response size limit */
#define MAX_FRAME (1u << 30)
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum { ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSING, ST_CLOSED };
enum { PH_HANDSHAKE, PH_RUN, PH_HOLD, PH_CLOSE };

typedef struct conn {
  uv_tcp_t tcp;
  uv_connect_t connect;
  unsigned id;
  int state, got_close;
  char accept[32]; /* expected Sec-WebSocket-Accept */
  unsigned char *rbuf;
  size_t rlen, roff, rcap, want; /* want: bytes missing from a frame */
  unsigned char *frag;           /* a fragmented message being rebuilt */
  size_t fraglen, fragcap;
  int fragop; /* 0: none in progress */
  uint32_t sent, recvd;
  uint64_t *sent_at; /* send times, ring of depth entries */
} conn;

typedef struct wreq {
  uv_write_t req;
  uv_buf_t buf;
  unsigned char data[];
} wreq;

static struct {
  const char *host, *path, *publish;
  uint32_t
      *got; /* broadcast: per message in flight, subscribers that have it */
  int port, binary;
  uint32_t nconns, messages, depth, idle;
  uint32_t burst; /* broadcast: the publisher waits for room for this many */
  size_t size;
  double hold, timeout;
  uv_loop_t *loop;
  struct sockaddr_storage addr;
  conn *conns;
  int phase;
  uint32_t opened, pending, upgraded, done, closed;
  uint32_t fragmented, pings;
  uint32_t close_acked, close_not1000, close_missing, eof_missing;
  int first_code;
  uint64_t t0, hs_end, start, end, now;
  uint64_t *lat;
  size_t nlat;
  unsigned char *pat; /* payload pattern, size + 256 bytes */
  uint64_t rng;
  uv_timer_t timeout_timer, hold_timer, close_timer;
} g;

#define PRINTF(f, a) __attribute__((format(printf, f, a)))
_Noreturn static void vdie(unsigned id, const char *fmt, va_list ap)
    PRINTF(2, 0);
_Noreturn static void die(const char *fmt, ...) PRINTF(1, 2);
_Noreturn static void fail(struct conn *c, const char *fmt, ...) PRINTF(2, 3);

static void vdie(unsigned id, const char *fmt, va_list ap) {
  fputs("wsbench: ", stderr);
  if (id != -1u)
    fprintf(stderr, "conn %u: ", id);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  exit(1);
}

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vdie(-1u, fmt, ap);
}

static void fail(conn *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vdie(c->id, fmt, ap);
}

static void *xrealloc(void *p, size_t n) {
  if (!(p = realloc(p, n ? n : 1)))
    die("out of memory");
  return p;
}

static uint64_t rnd(void) { /* splitmix64 */
  uint64_t z = (g.rng += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* ---- SHA-1 and base64, for Sec-WebSocket-Accept only ---- */

static uint32_t rol(uint32_t x, int n) { return x << n | x >> (32 - n); }

static void sha1(const unsigned char *msg, size_t len, unsigned char out[20]) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  size_t total = ((len + 8) / 64 + 1) * 64;
  for (size_t off = 0; off < total; off += 64) {
    uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 64; i++) {
      size_t k = off + i;
      unsigned byte = k < len ? msg[k] : k == len ? 0x80 : 0;
      if (k >= total - 8)
        byte = (unsigned)((uint64_t)len * 8 >> (8 * (total - 1 - k))) & 0xff;
      if (i % 4 == 0)
        w[i / 4] = 0;
      w[i / 4] |= (uint32_t)byte << (24 - 8 * (i % 4));
    }
    for (int i = 16; i < 80; i++)
      w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    for (int i = 0; i < 80; i++) {
      uint32_t f = i < 20   ? ((b & c) | (~b & d)) + 0x5A827999
                   : i < 40 ? (b ^ c ^ d) + 0x6ED9EBA1
                   : i < 60 ? ((b & c) | (b & d) | (c & d)) + 0x8F1BBCDC
                            : (b ^ c ^ d) + 0xCA62C1D6;
      uint32_t t = rol(a, 5) + f + e + w[i];
      e = d, d = c, c = rol(b, 30), b = a, a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
  }
  for (int i = 0; i < 20; i++)
    out[i] = (unsigned char)(h[i / 4] >> (24 - 8 * (i % 4)));
}

static void base64(const unsigned char *in, size_t n, char *out) {
  static const char t[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? in[i + 1] << 8 : 0) |
                 (i + 2 < n ? in[i + 2] : 0);
    *out++ = t[v >> 18];
    *out++ = t[v >> 12 & 63];
    *out++ = i + 1 < n ? t[v >> 6 & 63] : '=';
    *out++ = i + 2 < n ? t[v & 63] : '=';
  }
  *out = 0;
}

static void ws_accept(const char *key, char out[29]) {
  char buf[64];
  unsigned char md[20];
  int n = snprintf(buf, sizeof buf, "%s%s", key, WS_GUID);
  sha1((unsigned char *)buf, (size_t)n, md);
  base64(md, 20, out);
}

/* ---- payloads: a "conn:msg|" stamp, then a pattern shifted per message ----
 */

static size_t stamp(char *st, unsigned cid, uint32_t m) {
  return (size_t)snprintf(st, 32, "%u:%u|", cid, (unsigned)m);
}

static size_t shift(unsigned cid, uint32_t m) {
  return (cid * 131u + m * 7u) % 256u;
}

static void fill_payload(unsigned char *p, unsigned cid, uint32_t m) {
  char st[32];
  size_t sl = stamp(st, cid, m);
  if (sl > g.size)
    sl = g.size;
  memcpy(p, st, sl);
  memcpy(p + sl, g.pat + shift(cid, m) + sl, g.size - sl);
}

static void mask(unsigned char *p, size_t n, const unsigned char key[4]) {
  unsigned char k8[8];
  uint64_t m64;
  uint32_t m32;
  size_t i = 0;
  memcpy(k8, key, 4);
  memcpy(k8 + 4, key, 4);
  memcpy(&m64, k8, 8);
  memcpy(&m32, k8, 4);
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    memcpy(&v, p + i, 8);
    v ^= m64;
    memcpy(p + i, &v, 8);
  }
  if (i + 4 <= n) {
    uint32_t v;
    memcpy(&v, p + i, 4);
    v ^= m32;
    memcpy(p + i, &v, 4);
    i += 4;
  }
  for (; i < n; i++)
    p[i] ^= key[i & 3];
}

static size_t header_len(size_t n) {
  return 6 + (n < 126 ? 0 : n <= 0xffff ? 2 : 8);
}

/* Writes a masked client frame header at p; returns its length. The mask
 * key is its last 4 bytes. */
static size_t frame_header(unsigned char *p, int op, size_t n) {
  size_t hl = 2;
  uint64_t k = rnd();
  p[0] = (unsigned char)(0x80 | op);
  if (n < 126) {
    p[1] = (unsigned char)(0x80 | n);
  } else if (n <= 0xffff) {
    p[1] = 0x80 | 126;
    p[2] = (unsigned char)(n >> 8), p[3] = (unsigned char)n;
    hl = 4;
  } else {
    p[1] = 0x80 | 127;
    for (int i = 0; i < 8; i++)
      p[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
    hl = 10;
  }
  memcpy(p + hl, &k, 4);
  return hl + 4;
}

/* ---- writes ---- */

static wreq *wreq_new(size_t n) { return xrealloc(NULL, sizeof(wreq) + n); }

static void write_cb(uv_write_t *req, int status) {
  conn *c = req->handle->data;
  free(req);
  if (status < 0 && c->state != ST_CLOSING && c->state != ST_CLOSED)
    fail(c, "write: %s", uv_strerror(status));
}

static void submit(conn *c, wreq *w, size_t len) {
  int r;
  w->buf = uv_buf_init((char *)w->data, (unsigned)len);
  if ((r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &w->buf, 1, write_cb)))
    fail(c, "write: %s", uv_strerror(r));
}

static void send_frame(conn *c, int op, const unsigned char *d, size_t n) {
  wreq *w = wreq_new(header_len(n) + n);
  size_t hl = frame_header(w->data, op, n);
  memcpy(w->data + hl, d, n);
  mask(w->data + hl, n, w->data + hl - 4);
  submit(c, w, hl + n);
}

/* Sends as many messages as the depth and the message count allow, in one
 * write. */
static void pump(conn *c) {
  uint32_t room = g.depth - (c->sent - c->recvd), left = g.messages - c->sent;
  uint32_t n = room < left ? room : left;
  size_t hl = header_len(g.size), len = n * (hl + g.size);
  unsigned char *p;
  wreq *w;
  if (n == 0 || c->state != ST_OPEN || (g.publish && c->id != 0))
    return;
  p = (w = wreq_new(len))->data;
  g.now = uv_hrtime();
  for (uint32_t i = 0; i < n; i++, c->sent++) {
    frame_header(p, g.binary ? 2 : 1, g.size);
    fill_payload(p + hl, c->id, c->sent);
    mask(p + hl, g.size, p + hl - 4);
    c->sent_at[c->sent % g.depth] = g.now;
    p += hl + g.size;
  }
  submit(c, w, len);
}

/* ---- results ---- */

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static double pct(double p) {
  size_t i = (size_t)(p / 100.0 * (double)g.nlat + 0.999999);
  return (double)g.lat[i ? i - 1 : 0] / 1e3;
}

static void print_stats(uint64_t end) {
  double secs = (double)(end - g.start) / 1e9;
  if (g.publish) {
    double deliveries = (double)g.messages * (g.nconns - 1);
    qsort(g.lat, g.nlat, sizeof *g.lat, cmp_u64);
    printf("subscribers: %u\n", g.nconns - 1);
    printf("messages: %u published, %zu B %s, depth %u, burst %u\n", g.messages,
           g.size, g.binary ? "binary" : "text", g.depth, g.burst);
    printf("deliveries: %.0f\n", deliveries);
    printf("elapsed: %.3f s\n", secs);
    printf("deliveries/s: %.0f\n", deliveries / secs);
    printf("messages/s: %.0f\n", (double)g.messages / secs);
    printf("latency p50: %.0f us (publish to the last subscriber)\n", pct(50));
    printf("latency p99: %.0f us\n", pct(99));
    fflush(stdout);
    return;
  }
  printf("connections: %u\n", g.nconns);
  printf("messages: %zu (%u per connection)\n", g.nlat, g.messages);
  printf("payload: %zu B %s\n", g.size, g.binary ? "binary" : "text");
  printf("depth: %u\n", g.depth);
  printf("handshakes: %.1f ms\n", (double)(g.hs_end - g.t0) / 1e6);
  printf("elapsed: %.3f s\n", secs);
  if (g.nlat && secs > 0) {
    qsort(g.lat, g.nlat, sizeof *g.lat, cmp_u64);
    printf("messages/s: %.0f\n", (double)g.nlat / secs);
    printf("MB/s: %.2f\n", (double)g.nlat * (double)g.size / secs / 1e6);
    printf("latency p50: %.0f us\n", pct(50));
    printf("latency p99: %.0f us\n", pct(99));
    printf("latency max: %.0f us\n", (double)g.lat[g.nlat - 1] / 1e3);
  }
  if (g.fragmented)
    printf("fragmented echoes: %u\n", g.fragmented);
  if (g.pings)
    printf("pings answered: %u\n", g.pings);
  fflush(stdout);
}

static void timeout_cb(uv_timer_t *t) {
  static const char *phases[] = {"handshakes", "echoes", "hold", "close"};
  uint64_t now = uv_hrtime();
  (void)t;
  fflush(stdout);
  fprintf(stderr,
          "wsbench: timeout after %.0f s during %s: %u/%u upgraded, "
          "%zu/%llu echoed, %u/%u closed\n",
          g.timeout, phases[g.phase], g.upgraded, g.nconns, g.nlat,
          (unsigned long long)g.nconns * g.messages, g.closed, g.nconns);
  if (g.phase == PH_RUN)
    print_stats(now);
  exit(2);
}

/* ---- connection life cycle ---- */

static void closed_cb(uv_handle_t *h) {
  conn *c = h->data;
  free(c->rbuf), free(c->frag), free(c->sent_at);
  c->rbuf = c->frag = NULL;
  c->sent_at = NULL;
  if (++g.closed == g.nconns)
    uv_timer_stop(&g.close_timer), uv_timer_stop(&g.hold_timer);
}

static void conn_close(conn *c) {
  if (c->state == ST_CLOSED)
    return;
  c->state = ST_CLOSED;
  uv_close((uv_handle_t *)&c->tcp, closed_cb);
}

static void close_timer_cb(uv_timer_t *t) {
  (void)t;
  for (uint32_t i = 0; i < g.nconns; i++) {
    conn *c = &g.conns[i];
    if (c->state == ST_CLOSED)
      continue;
    if (c->got_close)
      g.eof_missing++;
    else
      g.close_missing++;
    conn_close(c);
  }
}

static void start_close(void) {
  static const unsigned char code[2] = {0x03, 0xe8}; /* 1000 */
  g.phase = PH_CLOSE;
  for (uint32_t i = 0; i < g.nconns; i++) {
    conn *c = &g.conns[i];
    if (c->state != ST_OPEN)
      continue;
    send_frame(c, 8, code, 2);
    c->state = ST_CLOSING;
  }
  uv_timer_start(&g.close_timer, close_timer_cb, CLOSE_WAIT_MS, 0);
}

static void hold_cb(uv_timer_t *t) {
  (void)t;
  start_close();
}

static void all_upgraded(void) {
  g.hs_end = uv_hrtime();
  if (g.idle) {
    printf("idle: %u connections open\n", g.nconns);
    printf("handshakes: %.1f ms\n", (double)(g.hs_end - g.t0) / 1e6);
    fflush(stdout);
    g.phase = PH_HOLD;
    uv_timer_start(&g.hold_timer, hold_cb, (uint64_t)(g.hold * 1e3), 0);
    return;
  }
  g.phase = PH_RUN;
  g.start = uv_hrtime();
  if (g.publish)
    printf("subscribers: %u upgraded in %.1f ms\n", g.nconns - 1,
           (double)(g.hs_end - g.t0) / 1e6);
  for (uint32_t i = 0; i < g.nconns; i++)
    pump(&g.conns[i]);
}

/* The connection whose stamp a message to c carries: its own echo, or the
 * publisher's (connection 0) in broadcast mode. */
static unsigned source(const conn *c) { return g.publish ? 0 : c->id; }

static void mismatch(conn *c, uint32_t m, const unsigned char *d, size_t n) {
  unsigned char *want = xrealloc(NULL, g.size);
  size_t i = 0, common = n < g.size ? n : g.size;
  unsigned oc, om;
  char head[32];
  memcpy(head, d, common < 31 ? common : 31);
  head[common < 31 ? common : 31] = 0;
  fill_payload(want, source(c), m);
  while (i < common && want[i] == d[i])
    i++;
  fprintf(stderr, "wsbench: conn %u: echo of message %u differs", c->id,
          (unsigned)m);
  if (n != g.size)
    fprintf(stderr, ": length %zu, expected %zu", n, g.size);
  if (i < common)
    fprintf(stderr,
            "; first difference at byte %zu: got 0x%02x, expected 0x%02x", i,
            d[i], want[i]);
  else
    fprintf(stderr, "; the first %zu bytes match", common);
  fputc('\n', stderr);
  for (int k = 0; k < 2; k++) {
    const unsigned char *s = k ? want : d;
    size_t from = i > 16 ? i - 16 : 0, to = from + 48;
    fprintf(stderr, "  %s [%zu..]:", k ? "expected" : "got     ", from);
    for (size_t j = from; j < to && j < (k ? g.size : n); j++)
      fprintf(stderr, "%s%02x", j == i ? " >" : " ", s[j]);
    fputc('\n', stderr);
  }
  if (sscanf(head, "%u:%u|", &oc, &om) == 2 && oc == source(c) && om != m)
    fprintf(stderr, "  (it carries the stamp of message %u: out of order?)\n",
            om);
  exit(1);
}

/* Broadcast: subscriber c has message m; once every subscriber has the
 * publisher's oldest message in flight, the publisher may send another. */
static void delivered(conn *c, uint32_t m) {
  conn *pub = &g.conns[0];
  c->recvd++;
  if (++g.got[m % g.depth] < g.nconns - 1)
    return;
  while (pub->recvd < pub->sent &&
         g.got[pub->recvd % g.depth] == g.nconns - 1) {
    g.got[pub->recvd % g.depth] = 0;
    g.lat[g.nlat++] = g.now - pub->sent_at[pub->recvd % g.depth];
    pub->recvd++;
  }
  if (pub->recvd == g.messages) {
    g.end = g.now;
    print_stats(g.end);
    start_close();
    return;
  }
  if (g.depth - (pub->sent - pub->recvd) >= g.burst ||
      pub->sent + (g.depth - (pub->sent - pub->recvd)) >= g.messages)
    pump(pub);
}

static void deliver(conn *c, int op, const unsigned char *d, size_t n) {
  uint32_t m = c->recvd;
  char st[32];
  size_t sl;
  if (g.phase != PH_RUN || c->state != ST_OPEN) {
    if (c->state == ST_CLOSING)
      return;
    fail(c, "unexpected %zu-byte message from the server", n);
  }
  if (g.publish ? c->id == 0 || m == g.conns[0].sent : m == c->sent)
    fail(c, "message from the server while none is in flight (%u received)",
         (unsigned)m);
  if (op != (g.binary ? 2 : 1))
    fail(c, "echo of message %u is a %s message, expected %s", (unsigned)m,
         op == 1 ? "text" : "binary", g.binary ? "binary" : "text");
  sl = stamp(st, source(c), m);
  if (sl > g.size)
    sl = g.size;
  if (n != g.size || memcmp(d, st, sl) ||
      memcmp(d + sl, g.pat + shift(source(c), m) + sl, n - sl))
    mismatch(c, m, d, n);
  if (g.publish) {
    delivered(c, m);
    return;
  }
  g.lat[g.nlat++] = g.now - c->sent_at[m % g.depth];
  if (++c->recvd == g.messages && ++g.done == g.nconns) {
    g.end = g.now;
    print_stats(g.end);
    start_close();
  }
}

static void on_close_frame(conn *c, const unsigned char *d, size_t n) {
  int code = n >= 2 ? d[0] << 8 | d[1] : 1005;
  if (c->state != ST_CLOSING)
    fail(c, "server sent close %d (\"%.*s\") during %s", code,
         (int)(n > 2 ? n - 2 : 0), (const char *)d + 2,
         g.phase == PH_RUN ? "the echoes" : "the handshakes or the hold");
  if (c->got_close)
    return;
  c->got_close = 1;
  g.close_acked++;
  if (code != 1000 && g.close_not1000++ == 0)
    g.first_code = code;
}

static void frame(conn *c, int fin, int op, const unsigned char *d, size_t n) {
  if (op >= 8) {
    if (!fin || n > 125)
      fail(c, "control frame 0x%x: %s", op,
           !fin ? "fragmented" : "payload over 125 bytes");
    if (op == 8) {
      on_close_frame(c, d, n);
    } else if (op == 9) {
      g.pings++;
      if (c->state == ST_OPEN)
        send_frame(c, 10, d, n); /* pong */
    } else if (op != 10) {
      fail(c, "unknown control opcode 0x%x", op);
    }
    return;
  }
  if (op != 0 && op != 1 && op != 2)
    fail(c, "unknown opcode 0x%x", op);
  if ((op == 0) != (c->fragop != 0))
    fail(c, op == 0 ? "continuation frame without a message to continue"
                    : "new message before the fragmented one ended");
  if (op != 0 && fin) {
    deliver(c, op, d, n);
    return;
  }
  if (op != 0)
    c->fragop = op, c->fraglen = 0;
  if (c->fraglen + n > MAX_FRAME)
    fail(c, "fragmented message over %u bytes", MAX_FRAME);
  if (c->fraglen + n > c->fragcap)
    c->frag = xrealloc(c->frag, c->fragcap = (c->fraglen + n) * 2);
  memcpy(c->frag + c->fraglen, d, n);
  c->fraglen += n;
  if (fin) {
    op = c->fragop;
    c->fragop = 0;
    g.fragmented++;
    deliver(c, op, c->frag, c->fraglen);
  }
}

static void parse_frames(conn *c) {
  c->want = 0;
  while (c->state != ST_CLOSED && c->rlen - c->roff >= 2) {
    unsigned char *p = c->rbuf + c->roff;
    size_t avail = c->rlen - c->roff, hl = 2;
    uint64_t n = p[1] & 0x7f;
    if (p[1] & 0x80)
      fail(c, "server frame is masked");
    if (p[0] & 0x70)
      fail(c, "server frame has RSV bits 0x%x set", p[0] & 0x70);
    if (n >= 126) {
      hl = n == 126 ? 4 : 10;
      if (avail < hl)
        break;
      n = 0;
      for (size_t i = 2; i < hl; i++)
        n = n << 8 | p[i];
      if (n > MAX_FRAME)
        fail(c, "server frame of %llu bytes", (unsigned long long)n);
    }
    if (avail < hl + n) {
      c->want = hl + n - avail;
      break;
    }
    c->roff += hl + n;
    frame(c, p[0] >> 7, p[0] & 0x0f, p + hl, (size_t)n);
  }
}

static int ieq(const char *a, size_t n, const char *b) {
  if (strlen(b) != n)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (tolower((unsigned char)a[i]) != b[i])
      return 0;
  return 1;
}

static int has_token(const char *v, size_t n, const char *tok) {
  size_t tl = strlen(tok);
  for (size_t i = 0; i + tl <= n; i++)
    if (ieq(v + i, tl, tok))
      return 1;
  return 0;
}

/* Returns 1 once the 101 response is complete and checked. */
static int handshake_response(conn *c) {
  const char *p = (const char *)c->rbuf, *end = NULL, *line, *next;
  int upgrade = 0, connection = 0, accept = 0;
  for (size_t i = 0; i + 4 <= c->rlen && !end; i++)
    if (memcmp(p + i, "\r\n\r\n", 4) == 0)
      end = p + i + 2;
  if (!end) {
    if (c->rlen > MAX_HEADER)
      fail(c, "handshake response header over %d bytes", MAX_HEADER);
    return 0;
  }
  next = strstr(p, "\r\n");
  if (c->rlen < 13 || memcmp(p, "HTTP/1.1 101", 12) || p[12] != ' ')
    fail(c, "handshake: expected HTTP/1.1 101, got \"%.*s\"", (int)(next - p),
         p);
  for (line = next + 2; line < end; line = next + 2) {
    const char *colon = memchr(line, ':', (size_t)(end - line)), *v;
    size_t vn;
    next = strstr(line, "\r\n");
    if (!colon || colon > next)
      fail(c, "handshake: bad header line \"%.*s\"", (int)(next - line), line);
    for (v = colon + 1; v < next && (*v == ' ' || *v == '\t'); v++)
      ;
    vn = (size_t)(next - v);
    while (vn && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
      vn--;
    if (ieq(line, (size_t)(colon - line), "upgrade"))
      upgrade = ieq(v, vn, "websocket");
    else if (ieq(line, (size_t)(colon - line), "connection"))
      connection = has_token(v, vn, "upgrade");
    else if (ieq(line, (size_t)(colon - line), "sec-websocket-accept"))
      accept = vn == 28 && memcmp(v, c->accept, 28) == 0;
    else if (ieq(line, (size_t)(colon - line), "sec-websocket-extensions") ||
             ieq(line, (size_t)(colon - line), "sec-websocket-protocol"))
      fail(c, "handshake: unrequested header \"%.*s\"", (int)(next - line),
           line);
  }
  if (!upgrade || !connection || !accept)
    fail(c, "handshake: %s",
         !upgrade      ? "no Upgrade: websocket"
         : !connection ? "no Connection: Upgrade"
                       : "wrong Sec-WebSocket-Accept");
  c->roff = (size_t)(end + 2 - p);
  c->state = ST_OPEN;
  return 1;
}

static void open_more(void);

static void on_upgraded(void) {
  g.pending--;
  if (++g.upgraded == g.nconns)
    all_upgraded();
  else
    open_more();
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  conn *c = h->data;
  size_t need = (c->want > 16384 ? c->want : 16384) + 1; /* + NUL */
  (void)hint;
  if (c->rcap - c->rlen < need) {
    if (c->roff) {
      memmove(c->rbuf, c->rbuf + c->roff, c->rlen - c->roff);
      c->rlen -= c->roff, c->roff = 0;
    }
    if (c->rcap - c->rlen < need)
      c->rbuf = xrealloc(c->rbuf, c->rcap = c->rlen + need);
  }
  *buf =
      uv_buf_init((char *)c->rbuf + c->rlen, (unsigned)(c->rcap - c->rlen - 1));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn *c = s->data;
  (void)buf;
  if (nread < 0) {
    if (c->state != ST_CLOSING)
      fail(c, "server closed the connection (%s) %s, after %u echoes",
           uv_strerror((int)nread),
           c->state == ST_HANDSHAKE ? "during the handshake"
           : g.phase == PH_RUN      ? "during the echoes"
                                    : "while idle",
           (unsigned)c->recvd);
    if (!c->got_close)
      g.close_missing++;
    conn_close(c);
    return;
  }
  c->rlen += (size_t)nread;
  g.now = uv_hrtime();
  if (c->state == ST_HANDSHAKE) {
    c->rbuf[c->rlen] = 0; /* alloc_cb leaves room: strstr is safe */
    if (!handshake_response(c))
      return;
    on_upgraded();
  }
  parse_frames(c);
  if (c->roff == c->rlen)
    c->roff = c->rlen = 0;
  if (g.phase == PH_RUN)
    pump(c);
}

static void connect_cb(uv_connect_t *req, int status) {
  conn *c = req->handle->data;
  unsigned char key[16];
  char key64[32], host[64];
  const char *path = g.publish && c->id == 0 ? g.publish : g.path;
  wreq *w = wreq_new(512 + strlen(path));
  int n;
  if (status < 0)
    fail(c, "connect to %s port %d: %s", g.host, g.port, uv_strerror(status));
  for (int i = 0; i < 16; i += 8) {
    uint64_t r = rnd();
    memcpy(key + i, &r, 8);
  }
  base64(key, 16, key64);
  ws_accept(key64, c->accept);
  snprintf(host, sizeof host, strchr(g.host, ':') ? "[%s]:%d" : "%s:%d", g.host,
           g.port);
  n = snprintf((char *)w->data, 512 + strlen(path),
               "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n",
               path, host, key64);
  c->state = ST_HANDSHAKE;
  uv_tcp_nodelay(&c->tcp, 1);
  submit(c, w, (size_t)n);
  if ((n = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb)))
    fail(c, "read: %s", uv_strerror(n));
}

static void open_more(void) {
  while (g.opened < g.nconns && g.pending < MAX_PENDING) {
    conn *c = &g.conns[g.opened];
    int r;
    c->id = g.opened++;
    c->tcp.data = c;
    c->sent_at = g.idle ? NULL : xrealloc(NULL, g.depth * sizeof(uint64_t));
    uv_tcp_init(g.loop, &c->tcp);
    if ((r = uv_tcp_connect(&c->connect, &c->tcp,
                            (const struct sockaddr *)&g.addr, connect_cb)))
      fail(c, "connect: %s", uv_strerror(r));
    g.pending++;
  }
}

/* ---- command line ---- */

static void usage(void) {
  fprintf(stderr,
          "usage: wsbench --port P [--host 127.0.0.1] [--path /] [--conns N]\n"
          "         [--messages M] [--size S] [--depth D] [--binary]\n"
          "         [--timeout SECONDS]\n"
          "       wsbench --port P --idle K [--hold SECONDS] ...\n"
          "       wsbench --port P --publish /pub --path /sub --conns N ...\n"
          "  --messages is per connection; --size in bytes; --depth is the\n"
          "  number of messages in flight per connection. --timeout (default\n"
          "  60, plus the hold time) exits 2 with what was measured.\n");
  exit(1);
}

static double num(const char *s, double lo, double hi) {
  char *end;
  double v = strtod(s, &end);
  if (*end || end == s || v < lo || v > hi)
    die("bad number \"%s\" (range %g..%g)", s, lo, hi);
  return v;
}

int main(int argc, char **argv) {
  static const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
  char acc[32];
  int r;
  g.host = "127.0.0.1", g.path = "/", g.port = -1;
  g.nconns = 50, g.messages = 1000, g.size = 32, g.depth = 1, g.burst = 1;
  g.hold = 10, g.timeout = 60;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--binary") == 0) {
      g.binary = 1;
      continue;
    }
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0 || !v)
      usage();
    i++;
    if (strcmp(a, "--host") == 0)
      g.host = v;
    else if (strcmp(a, "--port") == 0)
      g.port = (int)num(v, 1, 65535);
    else if (strcmp(a, "--path") == 0)
      g.path = v;
    else if (strcmp(a, "--publish") == 0)
      g.publish = v;
    else if (strcmp(a, "--burst") == 0)
      g.burst = (uint32_t)num(v, 1, 1e6);
    else if (strcmp(a, "--conns") == 0)
      g.nconns = (uint32_t)num(v, 1, 1e6);
    else if (strcmp(a, "--messages") == 0)
      g.messages = (uint32_t)num(v, 1, 1e9);
    else if (strcmp(a, "--size") == 0)
      g.size = (size_t)num(v, 0, 256 << 20);
    else if (strcmp(a, "--depth") == 0)
      g.depth = (uint32_t)num(v, 1, 1e6);
    else if (strcmp(a, "--idle") == 0)
      g.idle = (uint32_t)num(v, 1, 1e6);
    else if (strcmp(a, "--hold") == 0)
      g.hold = num(v, 0, 86400);
    else if (strcmp(a, "--timeout") == 0)
      g.timeout = num(v, 0.001, 86400);
    else
      usage();
  }
  if (g.port < 0 || g.path[0] != '/' || strpbrk(g.path, " \r\n"))
    usage();
  if ((strchr(g.host, ':')
           ? uv_ip6_addr(g.host, g.port, (struct sockaddr_in6 *)&g.addr)
           : uv_ip4_addr(g.host, g.port, (struct sockaddr_in *)&g.addr)))
    die("--host must be an IP address, got \"%s\"", g.host);
  ws_accept(key, acc);
  if (strcmp(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="))
    die("SHA-1 self-test failed: %s", acc);
  if (g.idle)
    g.nconns = g.idle, g.timeout += g.hold;
  if (g.publish && (g.idle || g.publish[0] != '/'))
    usage();
  if (g.publish)
    g.nconns++; /* connection 0 publishes */
  if (g.depth > g.messages)
    g.depth = g.messages;
  if (g.burst > g.depth)
    g.burst = g.depth;
  if ((double)g.depth * (double)(g.size + 14) > 2e9)
    die("--depth times --size is over 2 GB");
  signal(SIGPIPE, SIG_IGN);
  if (uv_random(NULL, NULL, &g.rng, sizeof g.rng, 0, NULL))
    g.rng = uv_hrtime();

  g.pat = xrealloc(NULL, g.size + 256);
  for (size_t i = 0; i < g.size + 256; i++)
    g.pat[i] = g.binary ? (unsigned char)(rnd() >> 56)
                        : (unsigned char)(' ' + i * 7 % 95);
  g.conns = calloc(g.nconns, sizeof *g.conns);
  g.lat = g.idle      ? NULL
          : g.publish ? calloc(g.messages, 8)
                      : calloc((size_t)g.nconns * g.messages, 8);
  g.got = g.publish ? calloc(g.depth, sizeof *g.got) : NULL;
  if (!g.conns || (!g.idle && !g.lat) || (g.publish && !g.got))
    die("out of memory");

  g.loop = uv_default_loop();
  uv_timer_init(g.loop, &g.timeout_timer);
  uv_timer_init(g.loop, &g.hold_timer);
  uv_timer_init(g.loop, &g.close_timer);
  uv_timer_start(&g.timeout_timer, timeout_cb, (uint64_t)(g.timeout * 1e3), 0);
  uv_unref((uv_handle_t *)&g.timeout_timer);
  g.t0 = uv_hrtime();
  open_more();
  if ((r = uv_run(g.loop, UV_RUN_DEFAULT)))
    die("loop ended with %d active handles", r);

  printf("close: %u/%u answered close", g.close_acked, g.nconns);
  if (g.close_not1000)
    printf(" (%u not with 1000, e.g. %d)", g.close_not1000, g.first_code);
  printf("\n");
  fflush(stdout);
  if (g.eof_missing)
    fprintf(stderr,
            "wsbench: %u connections: the server answered close but kept "
            "the TCP connection open for %d ms\n",
            g.eof_missing, CLOSE_WAIT_MS);
  if (g.close_missing)
    die("%u connections: no close frame from the server", g.close_missing);
  return 0;
}
