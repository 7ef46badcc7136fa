/* The fuzz targets' shared harness (harness.h): ringlet in-process on a
 * loop of our own, and a plain non-blocking client socket written and
 * read between turns of that loop. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <lauxlib.h>
#include <llhttp.h>
#include <lualib.h>

#include "ctx.h"
#include "harness.h"
#include "ringlet.h"

/* How long a server may take to close a connection after the client's
 * EOF, or to free it after that, before it counts as a hang. */
#define FZ_HANG_MS 5000
/* At most this many pieces per fz_send_split; the rest goes at once. */
#define FZ_MAX_PIECES 64

/* The sanitizers' report channel: libFuzzer's -close_fd_mask=2 silences
 * our stderr (the core's log lines) but keeps this one. */
extern void __sanitizer_report_error_summary(const char *s)
    __attribute__((weak));

/* UBSan's defaults in the fuzz build (compiled recoverable): a report
 * stops the run, with its stack. UBSAN_OPTIONS adds to these. */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void) {
  return "halt_on_error=1:print_stacktrace=1";
}

static uv_loop_t loop;
static lua_State *L;
static rl_ctx *ctx;
static uv_timer_t guard;
static int app_ref = LUA_NOREF;
static int ports[256];
static int ready;

void fz_report(const char *file, int line, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  char full[1200];
  snprintf(full, sizeof full, "FUZZ FINDING (%s:%d): %s", file, line, msg);
  fprintf(stderr, "%s\n", full);
  fflush(stderr);
  if (__sanitizer_report_error_summary)
    __sanitizer_report_error_summary(full);
}

static int l_trap(lua_State *Ls) {
  luaL_traceback(Ls, Ls, luaL_optstring(Ls, 1, "fuzz_trap"), 1);
  FZ_TRAP("%s", lua_tostring(Ls, -1));
  return 0;
}

int fz_known(const char *issue) {
  const char *list = getenv("FUZZ_KNOWN");
  size_t n = strlen(issue);
  while (list && *list) {
    list += strspn(list, ", ");
    size_t k = strcspn(list, ", ");
    if (k == n && memcmp(list, issue, n) == 0)
      return 1;
    list += k;
  }
  return 0;
}

static int l_known(lua_State *Ls) {
  lua_pushboolean(Ls, fz_known(luaL_checkstring(Ls, 1)));
  return 1;
}

lua_State *fz_L(void) { return L; }

void fz_push_app(void) { lua_rawgeti(L, LUA_REGISTRYINDEX, app_ref); }

static uint64_t now_ms(void) { return uv_hrtime() / 1000000; }

static void teardown(void) {
  if (!ready)
    return;
  ready = 0;
  uv_close((uv_handle_t *)&guard, NULL);
  ringlet_stop_all(L, 0);
  for (int i = 0; i < 10000 && uv_run(&loop, UV_RUN_NOWAIT); i++)
    if (ctx->io.handles <= 2 && ctx->handles == 0) /* flusher, timer */
      break;
  luaL_unref(L, LUA_REGISTRYINDEX, app_ref);
  ringlet_closestate(L); /* runs the loop until ringlet's handles are gone */
  L = NULL;
  uv_run(&loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop) != 0)
    FZ_TRAP("handles left open on the loop at exit");
}

void fz_init(const char *app, const char *name) {
  if (ready)
    return;
  if (uv_loop_init(&loop) != 0)
    FZ_TRAP("uv_loop_init");
  L = ringlet_newstate();
  if (L == NULL)
    FZ_TRAP("ringlet_newstate");
  luaL_openlibs(L);
  luaL_requiref(L, "ringlet", luaopen_ringlet, 0);
  lua_pop(L, 1);
  if (ringlet_set_loop(L, &loop) != 0)
    FZ_TRAP("ringlet_set_loop");
  ctx = rl__ctx(L);
  lua_register(L, "fuzz_trap", l_trap);
  lua_register(L, "fuzz_known", l_known);
  if (luaL_loadbuffer(L, app, strlen(app), name) != LUA_OK ||
      lua_pcall(L, 0, 1, 0) != LUA_OK)
    FZ_TRAP("the target's Lua app: %s", lua_tostring(L, -1));
  app_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  uv_timer_init(&loop, &guard);
  ready = 1;
  atexit(teardown);
}

int fz_port(int cfg) {
  cfg &= 255;
  if (ports[cfg])
    return ports[cfg];
  lua_rawgeti(L, LUA_REGISTRYINDEX, app_ref);
  lua_getfield(L, -1, "start");
  lua_pushinteger(L, cfg);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK || !lua_isinteger(L, -1))
    FZ_TRAP("start(%d): %s", cfg, lua_tostring(L, -1));
  ports[cfg] = (int)lua_tointeger(L, -1);
  lua_pop(L, 2);
  return ports[cfg];
}

/* ---- the client ---------------------------------------------------------- */

static void append(char **buf, size_t *len, size_t *cap, const char *p,
                   size_t n) {
  if (*len + n > *cap) {
    size_t c = *cap ? *cap : 4096;
    while (c < *len + n)
      c *= 2;
    char *g = realloc(*buf, c);
    if (g == NULL)
      FZ_TRAP("out of memory");
    *buf = g;
    *cap = c;
  }
  memcpy(*buf + *len, p, n);
  *len += n;
}

static void keep(fz_client *c, const char *p, size_t n) {
  append(&c->got, &c->got_len, &c->got_cap, p, n);
}

/* Read what the server wrote; returns how many bytes. */
static size_t drain(fz_client *c) {
  static char buf[65536];
  size_t got = 0;
  while (c && c->fd >= 0 && !c->eof) {
    ssize_t r = recv(c->fd, buf, sizeof buf, 0);
    if (r > 0) {
      c->nread += (size_t)r;
      got += (size_t)r;
      if (c->keep)
        keep(c, buf, (size_t)r);
      if (c->on_data)
        c->on_data(c, buf, (size_t)r);
      continue;
    }
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    c->eof = 1; /* EOF, or a reset */
  }
  return got;
}

void fz_pump(fz_client *c) {
  uv_run(&loop, UV_RUN_NOWAIT);
  drain(c);
}

static void guard_cb(uv_timer_t *t) { (void)t; }

/* One turn of the loop; when nothing visible happened, one more that may
 * wait (at most 1 ms) for a timer or the threadpool. Returns 1 when the
 * client read something or the transport's handles changed. */
static int step(fz_client *c) {
  int h = ctx->io.handles;
  uv_run(&loop, UV_RUN_NOWAIT);
  if (drain(c) || ctx->io.handles != h)
    return 1;
  uv_timer_start(&guard, guard_cb, 1, 0);
  uv_run(&loop, UV_RUN_ONCE);
  uv_timer_stop(&guard);
  return drain(c) > 0 || ctx->io.handles != h;
}

void fz_open(fz_client *c, int port) {
  c->eof = c->wclosed = 0;
  c->base = ctx->io.handles;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->fd < 0)
    FZ_TRAP("socket: %s", strerror(errno));
  int one = 1; /* every piece its own segment, at once */
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  /* the kernel completes the handshake from the listen queue, at once on
   * loopback; a signal (libFuzzer's timers) may interrupt the wait */
  fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
  if (connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0) {
    if (errno != EINPROGRESS && errno != EINTR)
      FZ_TRAP("connect to port %d: %s", port, strerror(errno));
    struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
    int err = 0;
    socklen_t len = sizeof err;
    while (poll(&pfd, 1, FZ_HANG_MS) < 0 && errno == EINTR)
      ;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err)
      FZ_TRAP("connect to port %d: %s", port, strerror(err ? err : errno));
  }
  fz_pump(c); /* the server accepts */
}

void fz_send(fz_client *c, const void *data, size_t n) {
  const char *p = data;
  uint64_t start = 0;
  while (n > 0 && !c->wclosed) {
    ssize_t r = send(c->fd, p, n, MSG_NOSIGNAL);
    if (r > 0) {
      append(&c->sent, &c->sent_len, &c->sent_cap, p, (size_t)r);
      p += r;
      n -= (size_t)r;
      start = 0;
      continue;
    }
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      /* the server is not reading now: let it work, take its output */
      if (start == 0)
        start = now_ms();
      step(c);
      if (now_ms() - start > FZ_HANG_MS)
        c->wclosed = 1; /* give up writing; fz_finish judges the rest */
      continue;
    }
    c->wclosed = 1; /* EPIPE, ECONNRESET: the server closed */
  }
  /* the server reads this piece in a read of its own (on loopback the
   * bytes are in its socket once send returns) */
  fz_pump(c);
}

void fz_send_split(fz_client *c, const uint8_t *data, size_t n, unsigned mode) {
  mode &= 255;
  if (mode == 0) { /* all at once */
    fz_send(c, data, n);
    return;
  }
  int pieces = 0;
  if (mode >= 128) { /* explicit: [len][len bytes] ..., 0 = the rest */
    while (n > 0) {
      size_t len = *data++;
      n--;
      if (len == 0 || len > n || ++pieces >= FZ_MAX_PIECES)
        len = n;
      fz_send(c, data, len);
      data += len;
      n -= len;
    }
    return;
  }
  /* pseudo-random piece sizes from the mode */
  static const size_t maxp[8] = {1, 2, 3, 5, 8, 17, 64, 600};
  uint32_t s = mode * 2654435761u | 1u;
  size_t m = maxp[mode & 7];
  while (n > 0) {
    s ^= s << 13;
    s ^= s >> 17;
    s ^= s << 5;
    size_t len = 1 + s % m;
    if (len > n || ++pieces >= FZ_MAX_PIECES)
      len = n;
    fz_send(c, data, len);
    data += len;
    n -= len;
  }
}

void fz_wait(fz_client *c, int (*cond)(fz_client *c), unsigned idle_ms) {
  uint64_t last = now_ms();
  while (!(cond && cond(c)) && !c->eof && now_ms() - last < idle_ms)
    if (step(c))
      last = now_ms();
}

void fz_finish(fz_client *c) {
  if (c->fd < 0)
    return;
  if (!c->wclosed)
    shutdown(c->fd, SHUT_WR);
  c->wclosed = 1;
  uint64_t start = now_ms();
  while (!c->eof) {
    step(c);
    if (now_ms() - start > FZ_HANG_MS)
      FZ_TRAP("the server did not close the connection within %d ms of "
              "the client's EOF (%zu bytes read)",
              FZ_HANG_MS, c->nread);
  }
  static int verbose = -1;
  if (verbose < 0)
    verbose = getenv("FUZZ_VERBOSE") != NULL;
  if (verbose && c->keep)
    fprintf(stderr, "---- the server wrote %zu bytes:\n%.*s\n----\n",
            c->got_len, (int)c->got_len, c->got ? c->got : "");
  /* a reset, not a FIN: no TIME_WAIT left behind by thousands of inputs */
  struct linger lg = {1, 0};
  setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close(c->fd);
  c->fd = -1;
  start = now_ms();
  while (ctx->io.handles > c->base) {
    step(NULL);
    if (now_ms() - start > FZ_HANG_MS)
      FZ_TRAP("the server did not free the connection within %d ms of "
              "closing it (%d transport handles, %d before)",
              FZ_HANG_MS, ctx->io.handles, c->base);
  }
}

void fz_free(fz_client *c) {
  free(c->got);
  free(c->sent);
  c->got = c->sent = NULL;
  c->got_len = c->got_cap = c->sent_len = c->sent_cap = 0;
}

void fz_end(int port, int proxy) {
  if (port > 0) {
#define FZ_PROXY_LINE "PROXY TCP4 192.0.2.1 192.0.2.2 1234 80\r\n"
    static const char req[] =
        FZ_PROXY_LINE "GET /__alive HTTP/1.1\r\n"
                      "Host: fuzz\r\nConnection: close\r\n\r\n";
    const size_t skip = proxy ? 0 : sizeof FZ_PROXY_LINE - 1;
    fz_client c;
    memset(&c, 0, sizeof c);
    c.keep = 1;
    fz_open(&c, port);
    fz_send(&c, req + skip, sizeof req - 1 - skip);
    fz_finish(&c);
    if (c.got_len < 13 || memcmp(c.got, "HTTP/1.1 200 ", 13) != 0)
      FZ_TRAP("after the input, GET /__alive got: %.*s",
              (int)(c.got_len > 200 ? 200 : c.got_len), c.got ? c.got : "");
    fz_free(&c);
  }
  /* what the input made and dropped is freed now, so libFuzzer's count
   * of mallocs and frees per input tells leaks apart */
  lua_gc(L, LUA_GCCOLLECT, 0);
}

/* ---- the responses to a request stream (fuzz_http, fuzz_proxy) -----------
 * The client parses its own bytes as the server does (llhttp, request
 * mode) to learn which requests are HEAD, then parses what the server wrote
 * with llhttp in response mode, one response at a time: each must parse,
 * with a body unless its request was HEAD, and be followed by the next
 * response or the end. A request whose method is unknown (its request line
 * did not parse) may be answered either way when it starts "HEAD", else
 * with a body; one past the point where the client's parse stopped, either
 * way. Interim 100 responses answer no request of their own; a 101 ends the
 * HTTP part. */

enum { M_BODY, M_NOBODY, M_EITHER };
#define FZ_MAX_MSGS 512

typedef struct {
  int mode[FZ_MAX_MSGS];
  int n;       /* requests begun */
  int url_ok;  /* the current one's request line is parsed */
  int is_head; /* and its method is HEAD */
} req_view;

static int rq_begin(llhttp_t *p) {
  req_view *v = p->data;
  v->url_ok = 0;
  if (v->n < FZ_MAX_MSGS)
    v->mode[v->n] = M_EITHER;
  v->n++;
  return 0;
}

static int rq_url_complete(llhttp_t *p) {
  req_view *v = p->data;
  v->url_ok = 1;
  if (v->n <= FZ_MAX_MSGS)
    v->mode[v->n - 1] = p->method == HTTP_HEAD ? M_NOBODY : M_BODY;
  return 0;
}

static int rq_complete(llhttp_t *p) {
  (void)p;
  return HPE_PAUSED;
}

/* A PROXY v1 line as http.c takes it: 1 taken (*len its length), 0 not a
 * PROXY line (optional), -1 refused, -2 not complete. */
static int proxy_line(const uint8_t *p, size_t n, int mode, size_t *len) {
  size_t cmp = n < 6 ? n : 6;
  if (memcmp(p, "PROXY ", cmp) != 0)
    return mode == 2 ? 0 : -1;
  const uint8_t *nl = memchr(p, '\n', n < 108 ? n : 108);
  if (nl == NULL)
    return n >= 108 ? -1 : -2;
  if (nl == p || nl[-1] != '\r')
    return -1;
  char line[108], proto[8], src[48], dst[48];
  int sport, dport;
  size_t ll = (size_t)(nl - p) - 1;
  memcpy(line, p, ll);
  line[ll] = 0;
  *len = ll + 2;
  if (strcmp(line, "PROXY UNKNOWN") == 0 ||
      strncmp(line, "PROXY UNKNOWN ", 14) == 0)
    return 1;
  struct sockaddr_in6 a6;
  struct sockaddr_in a4;
  if (sscanf(line, "PROXY %7s %47s %47s %d %d", proto, src, dst, &sport,
             &dport) != 5 ||
      sport < 0 || sport > 65535 || dport < 0 || dport > 65535)
    return -1;
  if (strcmp(proto, "TCP4") == 0)
    return uv_ip4_addr(src, 0, &a4) == 0 ? 1 : -1;
  if (strcmp(proto, "TCP6") == 0)
    return strchr(src, '%') == NULL && uv_ip6_addr(src, 0, &a6) == 0 ? 1 : -1;
  return -1;
}

static void request_view(const uint8_t *p, size_t n, int proxy, req_view *v) {
  memset(v, 0, sizeof *v);
  if (n == 0)
    return; /* nothing written: nothing answered */
  if (proxy) {
    size_t len = 0;
    int r = proxy_line(p, n, proxy, &len);
    if (r == -1) { /* a 400 (with its body) and the end */
      v->mode[0] = M_BODY;
      v->n = 1;
      return;
    }
    if (r == -2)
      return; /* the server waits for the rest: no response */
    p += len;
    n -= len;
  }
  static llhttp_settings_t s;
  static int ready_settings;
  if (!ready_settings) {
    llhttp_settings_init(&s);
    s.on_message_begin = rq_begin;
    s.on_url_complete = rq_url_complete;
    s.on_message_complete = rq_complete;
    ready_settings = 1;
  }
  llhttp_t parser;
  llhttp_init(&parser, HTTP_REQUEST, &s);
  parser.data = v;
  const uint8_t *at = p;
  while (n > 0) {
    llhttp_errno_t e = llhttp_execute(&parser, (const char *)at, n);
    if (e == HPE_PAUSED) {
      size_t used =
          (size_t)((const uint8_t *)llhttp_get_error_pos(&parser) - at);
      at += used;
      n -= used;
      llhttp_resume(&parser);
      continue;
    }
    if (e != HPE_OK && v->n > 0 && v->n <= FZ_MAX_MSGS && !v->url_ok) {
      /* its request line did not parse: a body, unless it says HEAD */
      const char *start = (const char *)at;
      while (start < (const char *)at + n && (*start == '\r' || *start == '\n'))
        start++;
      size_t left = (size_t)((const char *)at + n - start);
      v->mode[v->n - 1] =
          left >= 4 && memcmp(start, "HEAD", 4) == 0 ? M_EITHER : M_BODY;
    }
    break; /* an error (the server answers it and closes), an upgrade, or
              all parsed */
  }
}

typedef struct {
  int skip;
  int status;
  int done;
} resp_view;

static int rs_value(llhttp_t *p, const char *at, size_t n) {
  (void)p;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)at[i];
    if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
      FZ_TRAP("a response header value with byte 0x%02x", ch);
  }
  return 0;
}

static int rs_headers(llhttp_t *p) {
  resp_view *r = p->data;
  r->status = p->status_code;
  return r->skip;
}

static int rs_complete(llhttp_t *p) {
  resp_view *r = p->data;
  r->done = 1;
  return HPE_PAUSED;
}

/* One response at p: 1 when it parses (with or without its body, as skip
 * says) and is followed by the end or by another response; *used its
 * length, *status, *upgrade for a 101. */
static int one_response(const char *p, size_t n, int skip, size_t *used,
                        int *status, int *upgrade, const char **why) {
  static llhttp_settings_t s;
  static int ready_settings;
  if (!ready_settings) {
    llhttp_settings_init(&s);
    s.on_header_value = rs_value;
    s.on_headers_complete = rs_headers;
    s.on_message_complete = rs_complete;
    ready_settings = 1;
  }
  llhttp_t parser;
  resp_view r = {skip, 0, 0};
  llhttp_init(&parser, HTTP_RESPONSE, &s);
  parser.data = &r;
  llhttp_errno_t e = llhttp_execute(&parser, p, n);
  *upgrade = 0;
  if (e == HPE_PAUSED_UPGRADE || (e == HPE_PAUSED && r.status == 101)) {
    *upgrade = 1;
    *status = r.status;
    return 1;
  }
  if (e == HPE_PAUSED) {
    *used = (size_t)(llhttp_get_error_pos(&parser) - p);
  } else if (e == HPE_OK) { /* a body up to the end: finish completes it */
    llhttp_errno_t f = llhttp_finish(&parser);
    if ((f != HPE_OK && f != HPE_PAUSED) || !r.done) {
      *why = "cut short";
      return 0;
    }
    *used = n;
  } else {
    *why = llhttp_get_error_reason(&parser);
    return 0;
  }
  *status = r.status;
  static const char next[] = "HTTP/1.1 ";
  size_t left = n - *used, k = left < 9 ? left : 9;
  if (left > 0 && memcmp(p + *used, next, k) != 0) {
    *why = "bytes after it that are not a response";
    return 0;
  }
  return 1;
}

void fz_check_http(const uint8_t *in, size_t n, int proxy, const char *out,
                   size_t outlen) {
  static req_view v;
  request_view(in, n, proxy, &v);
  size_t off = 0;
  int idx = 0;
  while (off < outlen) {
    int mode = idx < v.n && idx < FZ_MAX_MSGS ? v.mode[idx] : M_EITHER;
    size_t used = 0;
    int status = 0, upgrade = 0, ok = 0;
    const char *why = "";
    if (mode != M_NOBODY)
      ok = one_response(out + off, outlen - off, 0, &used, &status, &upgrade,
                        &why);
    if (!ok && mode != M_BODY)
      ok = one_response(out + off, outlen - off, 1, &used, &status, &upgrade,
                        &why);
    if (!ok)
      FZ_TRAP("response %d (to a %s request) does not parse: %s: %.*s", idx,
              mode == M_BODY     ? "GET-like"
              : mode == M_NOBODY ? "HEAD"
                                 : "any",
              why, (int)(outlen - off > 300 ? 300 : outlen - off), out + off);
    if (upgrade)
      return; /* the rest is WebSocket frames */
    off += used;
    if (status != 100)
      idx++;
  }
}
