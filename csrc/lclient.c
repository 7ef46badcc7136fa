/* ringlet.client (README, "HTTP and WebSocket client"): the Lua binding of
 * the HTTP client (client.h) and of client WebSockets (ws.h, channel.h).
 *
 * A call suspends only its coroutine: its state is a userdata on that
 * coroutine's stack, the task parks until the client's callbacks say what
 * it waits for has come, and every step after a wait is a continuation
 * (wait_k -> x->next), so handlers, callbacks and body iterators may wait
 * anywhere. Outside a running loop (a script, a busted spec) a wait runs
 * the loop in place instead (rl__run_until). A call abandoned (its
 * coroutine collected, or an error raised past it) lets go of its
 * exchange in the userdata's __gc.
 *
 * Owns: each call's lc_call (in its userdata), the loop's rl_client (made
 * on first use, closed by rl__client_lib_close). May call: client.h,
 * channel.h, ws.h, http.h, ctx.h, conn.h, base.h, Lua. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "channel.h"
#include "client.h"
#include "lclient.h"
#include "ringlet.h"

#define LC_MT "ringlet.client.call"
#define LC_STREAM_HIGH (256 * 1024) /* body bytes waiting: reading stops */
#define LC_BODY_HIGH                                                           \
  (64 * 1024) /* request bytes queued: the iterator                            \
                 waits */

enum { LC_REQUEST, LC_STREAM, LC_WEBSOCKET };
enum { W_DONE, W_HEAD, W_WRITTEN, W_PIECE };

typedef struct lc_call lc_call;
typedef int (*lc_step)(lua_State *L, lc_call *x);

struct lc_call {
  rl_ctx *ctx;
  rl_creq *r;    /* the exchange, until it is let go of */
  rl_task *task; /* parked in a wait, until its continuation runs */
  int woken;     /* ... and woken: it resumes from the loop */
  lc_step next;  /* what runs after the wait */
  int mode;      /* LC_* */
  int want;      /* W_*: what the wait waits for */
  int head;      /* the head is in */
  int done;      /* on_done came */
  int failed;    /* ... with an error (errbuf) */
  int follow;    /* redirects left */
  int iter_body; /* the request body is an iterator (at index X_BODY) */
  int own_opts;  /* X_OPTS is a copy of the caller's (after a redirect) */
  int status;    /* the response's, once done */
  uint64_t timeout;
  char errbuf[160];
  char ws_accept[29]; /* the Sec-WebSocket-Accept expected */
  rl_buf body;        /* the response body so far; for a stream, what waits */
};

/* The stack of a call: 1 the options (a private copy), 2 the channel
 * options (websocket), 3 the call's userdata, 4 the body iterator. */
enum { X_OPTS = 1, X_CHOPTS = 2, X_CALL = 3, X_BODY = 4 };

static rl_client *client_of(rl_ctx *ctx, lua_State *L) {
  if (ctx->client == NULL && (ctx->client = rl__client_new(&ctx->io)) == NULL)
    luaL_error(L, "out of memory");
  return ctx->client;
}

void rl__client_lib_close(rl_ctx *ctx) {
  if (ctx->client) {
    rl__client_close(ctx->client);
    ctx->client = NULL;
  }
}

static void let_go(lc_call *x);

/* ---- waiting ------------------------------------------------------------- */

static int lc_ready(void *ud) {
  lc_call *x = ud;
  switch (x->want) {
  case W_HEAD:
    return x->head || x->done;
  case W_WRITTEN:
    return x->done || x->r == NULL || rl__creq_buffered(x->r) < LC_BODY_HIGH;
  case W_PIECE:
    return x->body.len > 0 || x->done;
  default:
    return x->done;
  }
}

static int wake_p(lua_State *L) {
  lc_call *x = lua_touserdata(L, 1);
  x->woken = 1;
  rl__task_wake(x->task, L, 0);
  return 0;
}

/* Something came: wake the task if it was waiting for it (once). */
static void lc_poke(lc_call *x) {
  if (x->task && !x->woken && !x->ctx->closing && lc_ready(x))
    rl__protect(x->ctx, x->ctx->L, wake_p, x);
}

static int wait_k(lua_State *L, int status, lua_KContext kc) {
  lc_call *x = (lc_call *)kc;
  (void)status;
  if (!rl__task_resumed(x->task)) /* resumed by hand: wait on */
    return rl__task_repark_k(L, x->task, wait_k, kc);
  x->task = NULL;
  return x->next(L, x);
}

/* Wait until `want`, then return next(L, x) (from a continuation when the
 * task had to park). */
static int lc_wait(lua_State *L, lc_call *x, int want, lc_step next) {
  x->want = want;
  x->next = next;
  if (lc_ready(x))
    return next(L, x);
  rl_task *t = NULL;
  int mode = rl__wait_mode(L, &t);
  if (mode < 0)
    return luaL_error(L, "ringlet.client: call it from a handler, a callback "
                         "or a script (not from a coroutine ringlet did not "
                         "start while the loop runs)");
  if (mode == 0) {
    rl__run_until(x->ctx, lc_ready, x, 0);
    if (!lc_ready(x)) { /* (the loop ran out of work: cannot happen) */
      x->done = x->failed = 1;
      snprintf(x->errbuf, sizeof x->errbuf, "closed");
      let_go(x);
    }
    return next(L, x);
  }
  x->task = t;
  x->woken = 0;
  rl__task_park(t, L);
  return lua_yieldk(L, 0, (lua_KContext)x, wait_k);
}

/* ---- the client's callbacks ------------------------------------------------
 */

static void cb_head(rl_creq *r) {
  lc_call *x = r->ud;
  x->head = 1;
  if (x->mode == LC_STREAM) {
    rl__creq_deadline(r, 0); /* the next wait sets its own */
    lc_poke(x);
  }
}

static void cb_body(rl_creq *r, const char *p, size_t n) {
  lc_call *x = r->ud;
  if (rl__buf_append(&x->body, p, n)) {
    rl__creq_pause(r, 1); /* (the exchange fails below on memory) */
    return;
  }
  if (x->mode == LC_STREAM) {
    if (x->body.len >= LC_STREAM_HIGH)
      rl__creq_pause(r, 1);
    lc_poke(x);
  }
}

static void cb_done(rl_creq *r, const char *err) {
  lc_call *x = r->ud;
  x->done = 1;
  x->status = r->status;
  if (err) {
    x->failed = 1;
    snprintf(x->errbuf, sizeof x->errbuf, "%s", err);
  }
  if (x->ctx->closing) { /* lua_close: no Lua runs any more */
    x->r = NULL;
    rl__creq_free(r);
    return;
  }
  lc_poke(x);
}

static void cb_written(rl_creq *r) { lc_poke(r->ud); }

static const rl_creq_cbs creq_cbs = {cb_head, cb_body, cb_done, cb_written};

static int call_gc(lua_State *L) {
  lc_call *x = lua_touserdata(L, 1);
  if (x->r) {
    rl__creq_free(x->r); /* abandoned: its connection is closed */
    x->r = NULL;
  }
  rl__buf_free(&x->body);
  return 0;
}

static void let_go(lc_call *x) {
  if (x->r) {
    rl__creq_free(x->r);
    x->r = NULL;
  }
}

/* ---- URLs and requests ------------------------------------------------------
 */

typedef struct {
  int secure;    /* https or wss */
  int websocket; /* ws or wss */
  const char *host;
  size_t hostlen;
  int bracketed; /* [IPv6] */
  unsigned port;
  int has_port;
  const char *target; /* path and query ("/" when empty) */
  size_t targetlen;
} lc_url;

static int host_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

/* Parse url; NULL, or what is wrong with it. */
static const char *parse_url(const char *s, size_t n, lc_url *u) {
  memset(u, 0, sizeof *u);
  const char *e = s + n, *p;
  static const struct {
    const char *name;
    int secure, websocket;
  } schemes[] = {
      {"http://", 0, 0}, {"https://", 1, 0}, {"ws://", 0, 1}, {"wss://", 1, 1}};
  size_t i;
  for (i = 0; i < 4; i++) {
    size_t k = strlen(schemes[i].name);
    if (n >= k && strncasecmp(s, schemes[i].name, k) == 0)
      break;
  }
  if (i == 4)
    return "bad url: it must start with http://, https://, ws:// or wss://";
  u->secure = schemes[i].secure;
  u->websocket = schemes[i].websocket;
  p = s + strlen(schemes[i].name);
  const char *a = p; /* the authority */
  while (p < e && *p != '/' && *p != '?' && *p != '#')
    p++;
  const char *ae = p;
  if (memchr(a, '@', (size_t)(ae - a)))
    return "bad url: user information is not supported";
  const char *h = a, *he;
  if (h < ae && *h == '[') {
    he = memchr(h, ']', (size_t)(ae - h));
    if (he == NULL)
      return "bad url: an IPv6 address without its ']'";
    u->bracketed = 1;
    u->host = h + 1;
    u->hostlen = (size_t)(he - h - 1);
    for (const char *q = u->host; q < he; q++)
      if (!(host_char((unsigned char)*q) || *q == ':' || *q == '%'))
        return "bad url: a bad character in the host";
    he++;
  } else {
    he = h;
    while (he < ae && *he != ':')
      he++;
    u->host = h;
    u->hostlen = (size_t)(he - h);
    for (const char *q = h; q < he; q++)
      if (!host_char((unsigned char)*q))
        return "bad url: a bad character in the host";
  }
  if (u->hostlen == 0 || u->hostlen > 253)
    return "bad url: no host";
  u->port = u->secure ? 443 : 80;
  if (he < ae) {
    if (*he != ':' || he + 1 == ae || ae - he > 6)
      return "bad url: a bad port";
    unsigned port = 0;
    for (const char *q = he + 1; q < ae; q++) {
      if (*q < '0' || *q > '9')
        return "bad url: a bad port";
      port = port * 10 + (unsigned)(*q - '0');
    }
    if (port == 0 || port > 65535)
      return "bad url: a bad port";
    u->port = port;
    u->has_port = 1;
  }
  const char *t = ae, *te = t;
  while (te < e && *te != '#')
    te++;
  for (const char *q = t; q < te; q++)
    if ((unsigned char)*q <= 0x20 || *q == 0x7f)
      return "bad url: spaces and control characters must be "
             "percent-encoded";
  u->target = t;
  u->targetlen = (size_t)(te - t);
  return NULL;
}

static int is_token(const char *s, size_t n) {
  if (n == 0)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (!(rl__cclass[(unsigned char)s[i]] & RL_C_TCHAR))
      return 0;
  return 1;
}

static int bad_value(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
      return 1;
  return 0;
}

static int header_is(const char *name, size_t n, const char *lower) {
  return strlen(lower) == n && strncasecmp(name, lower, n) == 0;
}

/* The headers the caller gave that the client would otherwise write */
enum {
  H_HOST = 1,
  H_CLEN = 2,
  H_TE = 4,
  H_UA = 8,
  H_CONN = 16,
  H_WS = 32 /* a header the WebSocket handshake owns */
};

#define BAD(...)                                                               \
  do {                                                                         \
    snprintf(x->errbuf, sizeof x->errbuf, __VA_ARGS__);                        \
    return -1;                                                                 \
  } while (0)

/* Append the caller's headers (the table at hidx) to b; returns the H_*
 * they include, or -1 with "bad request: ..." in x->errbuf. Content-Length
 * and Transfer-Encoding are left out (the client frames the body) unless
 * keep_framing. */
static int put_headers(lua_State *L, lc_call *x, int hidx, rl_buf *b,
                       int keep_framing, int websocket) {
  int seen = 0;
  if (hidx == 0)
    return 0;
  lua_pushnil(L);
  while (lua_next(L, hidx)) {
    size_t nl, vl;
    if (lua_type(L, -2) != LUA_TSTRING)
      BAD("bad request: header names must be strings");
    const char *name = lua_tolstring(L, -2, &nl);
    if (!is_token(name, nl))
      BAD("bad request: header name '%.64s' is not a token", name);
    int flag = header_is(name, nl, "host")                ? H_HOST
               : header_is(name, nl, "content-length")    ? H_CLEN
               : header_is(name, nl, "transfer-encoding") ? H_TE
               : header_is(name, nl, "user-agent")        ? H_UA
               : header_is(name, nl, "connection")        ? H_CONN
                                                          : 0;
    if (websocket &&
        (header_is(name, nl, "upgrade") || header_is(name, nl, "connection") ||
         header_is(name, nl, "sec-websocket-key") ||
         header_is(name, nl, "sec-websocket-version") ||
         header_is(name, nl, "sec-websocket-protocol")))
      BAD("bad request: the handshake's header '%.64s' is the client's", name);
    seen |= flag;
    int skip = !keep_framing && (flag == H_CLEN || flag == H_TE);
    int vidx = lua_gettop(L);
    int n = lua_istable(L, vidx) ? (int)luaL_len(L, vidx) : 1;
    for (int i = 1; i <= n; i++) {
      if (lua_istable(L, vidx))
        lua_rawgeti(L, vidx, i);
      else
        lua_pushvalue(L, vidx);
      if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
        BAD("bad request: header '%.64s' must be a string or an array of "
            "strings",
            name);
      const char *v = lua_tolstring(L, -1, &vl);
      if (bad_value(v, vl))
        BAD("bad request: header '%.64s' has CR, LF or NUL", name);
      if (!skip) {
        rl__buf_append(b, name, nl);
        rl__buf_append(b, ": ", 2);
        rl__buf_append(b, v, vl);
        rl__buf_append(b, "\r\n", 2);
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  return seen;
}

static lua_Integer opt_int(lua_State *L, int idx, const char *k, lua_Integer d,
                           lua_Integer min) {
  lua_getfield(L, idx, k);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return d;
  }
  int ok;
  lua_Integer v = lua_tointegerx(L, -1, &ok);
  if (!ok || v < min)
    luaL_error(L, "ringlet.client: option '%s' must be an integer >= %d", k,
               (int)min);
  lua_pop(L, 1);
  return v;
}

static int idempotent(const char *m) {
  switch (m[0]) {
  case 'G':
    return strcmp(m, "GET") == 0;
  case 'H':
    return strcmp(m, "HEAD") == 0;
  case 'P':
    return strcmp(m, "PUT") == 0;
  case 'D':
    return strcmp(m, "DELETE") == 0;
  case 'O':
    return strcmp(m, "OPTIONS") == 0;
  case 'T':
    return strcmp(m, "TRACE") == 0;
  default:
    return 0;
  }
}

/* Make the exchange the options at X_OPTS describe, and start it. Raises
 * on bad options; returns 0, or -1 with the error in x->errbuf. */
static int start_exchange(lua_State *L, lc_call *x, int websocket) {
  int top = lua_gettop(L);
  size_t ul;
  lua_getfield(L, X_OPTS, "url");
  const char *url = lua_tolstring(L, -1, &ul);
  if (url == NULL)
    return luaL_error(L, "ringlet.client: the option 'url' must be a string");
  lc_url u;
  const char *bad = parse_url(url, ul, &u);
  if (bad) {
    snprintf(x->errbuf, sizeof x->errbuf, "%s", bad);
    lua_settop(L, top);
    return -1;
  }
  if (u.secure) {
    snprintf(x->errbuf, sizeof x->errbuf, "tls is not supported yet");
    lua_settop(L, top);
    return -1;
  }
  if (u.websocket != websocket) {
    snprintf(x->errbuf, sizeof x->errbuf,
             websocket ? "bad url: a WebSocket's is ws:// or wss://"
                       : "bad url: use client.websocket for ws:// and wss://");
    lua_settop(L, top);
    return -1;
  }
  /* the method */
  char method[32] = "GET";
  lua_getfield(L, X_OPTS, "method");
  if (!lua_isnil(L, -1)) {
    size_t ml;
    const char *m = lua_tolstring(L, -1, &ml);
    if (m == NULL || !is_token(m, ml) || ml >= sizeof method)
      return luaL_error(L, "ringlet.client: the option 'method' must be a "
                           "token such as \"GET\"");
    for (size_t i = 0; i <= ml; i++)
      method[i] = m[i] >= 'a' && m[i] <= 'z' ? (char)(m[i] - 32) : m[i];
  }
  lua_pop(L, 1);

  rl_creq *r = rl__creq_new(client_of(x->ctx, L), &creq_cbs, x);
  if (r == NULL)
    return luaL_error(L, "out of memory");
  x->r = r;
  r->timeout = x->timeout;
  r->port = (uint16_t)u.port;
  if ((r->host = malloc(u.hostlen + 1)) == NULL)
    return luaL_error(L, "out of memory");
  for (size_t i = 0; i < u.hostlen; i++)
    r->host[i] = (char)(u.host[i] >= 'A' && u.host[i] <= 'Z' ? u.host[i] + 32
                                                             : u.host[i]);
  r->host[u.hostlen] = 0;
  r->head_only = strcmp(method, "HEAD") == 0;
  r->max_header = (size_t)opt_int(L, X_OPTS, "max_header", 65536, 1);
  r->max_body = (uint64_t)opt_int(L, X_OPTS, "max_body", 67108864, 0);
  lua_getfield(L, X_OPTS, "keepalive");
  r->keepalive = lua_isnil(L, -1) || lua_toboolean(L, -1);
  lua_pop(L, 1);

  /* the head */
  rl_buf *b = &r->out;
  rl__buf_append(b, method, strlen(method));
  rl__buf_append(b, " ", 1);
  if (u.targetlen == 0 || u.target[0] == '?')
    rl__buf_append(b, "/", 1);
  rl__buf_append(b, u.target, u.targetlen);
  rl__buf_append(b, " HTTP/1.1\r\n", 11);
  /* the body: a string, an array of strings, or an iterator */
  lua_getfield(L, X_OPTS, "body");
  int bidx = lua_gettop(L);
  int btype = lua_type(L, bidx);
  if (btype == LUA_TFUNCTION) {
    x->iter_body = 1;
    lua_pushvalue(L, bidx);
    lua_replace(L, X_BODY);
  } else if (btype == LUA_TTABLE) {
    luaL_Buffer lb;
    luaL_buffinit(L, &lb);
    lua_Integer n = luaL_len(L, bidx);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, bidx, i);
      if (!lua_isstring(L, -1))
        return luaL_error(L, "ringlet.client: body[%d] is not a string",
                          (int)i);
      luaL_addvalue(&lb);
    }
    luaL_pushresult(&lb);
    lua_replace(L, bidx);
  } else if (btype != LUA_TNIL && btype != LUA_TSTRING) {
    return luaL_error(L, "ringlet.client: the body must be a string, an "
                         "array of strings or an iterator function");
  }
  lua_getfield(L, X_OPTS, "headers");
  int hidx = lua_istable(L, -1) ? lua_gettop(L) : 0;
  if (!hidx && !lua_isnil(L, -1))
    return luaL_error(L, "ringlet.client: the option 'headers' must be a "
                         "table");
  int seen = put_headers(L, x, hidx, b, x->iter_body, websocket);
  if (seen < 0) {
    lua_settop(L, top);
    let_go(x);
    return -1;
  }
  if (!(seen & H_HOST)) {
    rl__buf_append(b, "Host: ", 6);
    if (u.bracketed)
      rl__buf_append(b, "[", 1);
    rl__buf_append(b, u.host, u.hostlen);
    if (u.bracketed)
      rl__buf_append(b, "]", 1);
    if (u.has_port && u.port != 80 && rl__buf_reserve(b, 6) == 0) {
      b->base[b->len++] = ':';
      b->len = (size_t)(rl__put_uint(b->base + b->len, u.port) - b->base);
    }
    rl__buf_append(b, "\r\n", 2);
  }
  if (!(seen & H_UA))
    rl__buf_append(b, "User-Agent: ringlet/" RINGLET_VERSION "\r\n",
                   sizeof("User-Agent: ringlet/" RINGLET_VERSION "\r\n") - 1);
  if (!r->keepalive && !(seen & H_CONN))
    rl__buf_append(b, "Connection: close\r\n", 19);
  if (websocket) {
    char key[25];
    if (rl__ws_key(key) != 0 || rl__ws_accept_value(key, 24, x->ws_accept) != 0)
      return luaL_error(L, "websocket: no entropy for the key");
    rl__buf_printf(b,
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n",
                   key);
    lua_getfield(L, X_OPTS, "protocols");
    if (lua_istable(L, -1) && luaL_len(L, -1) > 0) {
      rl__buf_append(b, "Sec-WebSocket-Protocol: ", 24);
      lua_Integer n = luaL_len(L, -1);
      for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        size_t pl;
        const char *pr = lua_tolstring(L, -1, &pl);
        if (pr == NULL || !is_token(pr, pl))
          return luaL_error(L, "websocket: protocols must be tokens");
        if (i > 1)
          rl__buf_append(b, ", ", 2);
        rl__buf_append(b, pr, pl);
        lua_pop(L, 1);
      }
      rl__buf_append(b, "\r\n", 2);
    } else if (!lua_isnil(L, -1) && !lua_istable(L, -1)) {
      return luaL_error(L, "websocket: the option 'protocols' must be an "
                           "array of strings");
    }
    lua_pop(L, 1);
  }
  size_t blen = 0;
  const char *body = NULL;
  if (x->iter_body) {
    r->body_open = 1;
    if (!(seen & H_CLEN)) {
      r->chunked = 1;
      rl__buf_append(b, "Transfer-Encoding: chunked\r\n", 28);
    } else {
      r->keepalive = 0; /* the caller promises the length: not reused */
    }
  } else if (btype != LUA_TNIL) {
    body = lua_tolstring(L, bidx, &blen);
    rl__buf_printf(b, "Content-Length: %zu\r\n", blen);
  } else if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
             strcmp(method, "PATCH") == 0) {
    rl__buf_append(b, "Content-Length: 0\r\n", 19);
  }
  rl__buf_append(b, "\r\n", 2);
  if (rl__buf_append(b, body, blen) != 0 || b->base == NULL)
    return luaL_error(L, "out of memory");
  r->retry_ok = !x->iter_body && idempotent(method);
  lua_settop(L, top);
  if (rl__creq_start(r) != 0) {
    snprintf(x->errbuf, sizeof x->errbuf, "%s", r->err);
    let_go(x);
    return -1;
  }
  return 0;
}

/* ---- the response table
 * ------------------------------------------------------ */

static void push_headers(lua_State *L, rl_creq *r) {
  size_t n;
  rl_header *hs = rl__creq_headers(r, &n);
  lua_createtable(L, 0, (int)n);
  int t = lua_gettop(L);
  for (size_t i = 0; i < n; i++) {
    /* (an empty name and value leave hdrs.base NULL: no NULL + 0) */
    const char *name = hs[i].name_len ? r->hdrs.base + hs[i].name : "";
    const char *v = hs[i].value_len ? r->hdrs.base + hs[i].value : "";
    lua_pushlstring(L, name, hs[i].name_len);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, t) == LUA_TSTRING) { /* a repeat: joined with ", " */
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, v, hs[i].value_len);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushlstring(L, v, hs[i].value_len);
    }
    lua_rawset(L, t);
  }
}

/* {status, headers, protocol, url[, body]} */
static void push_response(lua_State *L, lc_call *x, int with_body) {
  rl_creq *r = x->r;
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, r->status);
  lua_setfield(L, -2, "status");
  push_headers(L, r);
  lua_setfield(L, -2, "headers");
  lua_pushstring(L, r->http_minor == 0 ? "HTTP/1.0" : "HTTP/1.1");
  lua_setfield(L, -2, "protocol");
  lua_getfield(L, X_OPTS, "url");
  lua_setfield(L, -2, "url");
  if (with_body) {
    lua_pushlstring(L, x->body.base ? x->body.base : "", x->body.len);
    lua_setfield(L, -2, "body");
    x->body.len = 0;
    if (x->body.cap > LC_STREAM_HIGH)
      rl__buf_free(&x->body);
  }
}

static const char *header_value(rl_creq *r, const char *name, size_t *vl) {
  size_t n, nl = strlen(name);
  rl_header *hs = rl__creq_headers(r, &n);
  for (size_t i = 0; i < n; i++)
    if (hs[i].name_len == nl &&
        memcmp(r->hdrs.base + hs[i].name, name, nl) == 0) {
      *vl = hs[i].value_len;
      return hs[i].value_len ? r->hdrs.base + hs[i].value : "";
    }
  return NULL;
}

/* ---- request
 * ------------------------------------------------------------------ */

static int request_step(lua_State *L, lc_call *x);

static int fail_result(lua_State *L, lc_call *x) {
  let_go(x);
  lua_pushnil(L);
  lua_pushstring(L, x->errbuf);
  return 2;
}

/* Send the iterator's pieces while less than LC_BODY_HIGH is queued. */
static int pump_step(lua_State *L, lc_call *x);

static int piece_in(lua_State *L, lc_call *x) {
  /* the iterator's result is on the top */
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    x->iter_body = 0;
    if (x->r)
      rl__creq_end(x->r);
    return 0;
  }
  size_t n;
  const char *p =
      lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
  if (p == NULL)
    return luaL_error(L,
                      "ringlet.client: the body iterator returned a %s, "
                      "expected a string or nil",
                      luaL_typename(L, -1));
  if (x->r && !x->done)
    rl__creq_write(x->r, p, n);
  lua_pop(L, 1);
  return 0;
}

static int iter_k(lua_State *L, int status, lua_KContext kc) {
  lc_call *x = (lc_call *)kc;
  (void)status;
  piece_in(L, x);
  return pump_step(L, x);
}

static int stream_head_step(lua_State *L, lc_call *x);

static int pump_step(lua_State *L, lc_call *x) {
  int stream = x->mode == LC_STREAM;
  while (x->iter_body && !x->done && !(stream && x->head)) {
    if (x->r && rl__creq_buffered(x->r) >= LC_BODY_HIGH)
      return lc_wait(L, x, W_WRITTEN, pump_step);
    lua_pushvalue(L, X_BODY);
    lua_callk(L, 0, 1, (lua_KContext)x, iter_k);
    piece_in(L, x);
  }
  if (stream)
    return lc_wait(L, x, W_HEAD, stream_head_step);
  return lc_wait(L, x, W_DONE, request_step);
}

/* RFC 3986 5.2.4: the url on the top of the stack with the "." and ".."
 * segments of its path removed. */
static void remove_dot_segments(lua_State *L) {
  size_t n;
  const char *u = lua_tolstring(L, -1, &n);
  const char *s = strstr(u, "://");
  if (s == NULL)
    return;
  s += 3;
  const char *ps = s + strcspn(s, "/?#");
  if (*ps != '/')
    return;
  const char *pe = ps + strcspn(ps, "?#");
  int dots = 0;
  for (const char *q = ps; q + 1 < pe && !dots; q++)
    dots = q[0] == '/' && q[1] == '.';
  if (!dots)
    return;
  luaL_Buffer b;
  char *out = luaL_buffinitsize(L, &b, (size_t)(pe - ps) + 1);
  size_t o = 0;
  for (const char *in = ps; in < pe;) { /* in is at a '/' */
    const char *seg = in + 1, *next = seg;
    while (next < pe && *next != '/')
      next++;
    size_t sl = (size_t)(next - seg);
    if (sl == 1 && seg[0] == '.') {
      if (next == pe)
        out[o++] = '/';
    } else if (sl == 2 && seg[0] == '.' && seg[1] == '.') {
      while (o > 0 && out[o - 1] != '/')
        o--; /* drop the last segment, */
      if (o > 0)
        o--; /* and its '/' */
      if (next == pe)
        out[o++] = '/';
    } else {
      memcpy(out + o, in, (size_t)(next - in));
      o += (size_t)(next - in);
    }
    in = next;
  }
  if (o == 0)
    out[o++] = '/';
  luaL_pushresultsize(&b, o);
  lua_pushlstring(L, u, (size_t)(ps - u));
  lua_insert(L, -2);
  lua_pushstring(L, pe);
  lua_concat(L, 3);
  lua_remove(L, -2); /* the url before */
}

/* The scheme and authority of a url, the part up to its path */
static size_t origin_len(const char *u) {
  const char *s = strstr(u, "://");
  return s ? (size_t)(s + 3 - u) + strcspn(s + 3, "/?#") : 0;
}

/* A redirect to another origin: the caller's credentials stay behind (as
 * curl and browsers do), in a copy of its headers. */
static void drop_credentials(lua_State *L) {
  if (lua_getfield(L, X_OPTS, "headers") != LUA_TTABLE) {
    lua_pop(L, 1);
    return;
  }
  int h = lua_gettop(L);
  lua_newtable(L);
  lua_pushnil(L);
  while (lua_next(L, h)) {
    size_t kl = 0;
    const char *k =
        lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &kl) : NULL;
    if (k && (header_is(k, kl, "authorization") || header_is(k, kl, "cookie") ||
              header_is(k, kl, "proxy-authorization"))) {
      lua_pop(L, 1);
      continue;
    }
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
  lua_setfield(L, X_OPTS, "headers");
  lua_pop(L, 1);
}

/* Where a redirect goes: the Location resolved against the url. */
static int push_location(lua_State *L, lc_call *x) {
  size_t ll, ul;
  const char *loc = header_value(x->r, "location", &ll);
  if (loc == NULL || ll == 0)
    return 0;
  lua_getfield(L, X_OPTS, "url");
  const char *url = lua_tolstring(L, -1, &ul);
  const char *colon = memchr(loc, ':', ll), *slash = memchr(loc, '/', ll);
  if (colon && (slash == NULL || colon < slash)) { /* absolute */
    lua_pushlstring(L, loc, ll);
  } else {
    const char *s = strstr(url, "://") + 3;
    const char *auth_end = s + strcspn(s, "/?#");
    if (ll >= 2 && loc[0] == '/' && loc[1] == '/') { /* scheme-relative */
      lua_pushlstring(L, url, (size_t)(s - url - 2));
      lua_pushlstring(L, loc, ll);
      lua_concat(L, 2);
    } else if (loc[0] == '/') {
      lua_pushlstring(L, url, (size_t)(auth_end - url));
      lua_pushlstring(L, loc, ll);
      lua_concat(L, 2);
    } else { /* relative to the path's directory */
      const char *path_end = auth_end + strcspn(auth_end, "?#");
      const char *dir = path_end;
      while (dir > auth_end && dir[-1] != '/')
        dir--;
      if (dir == auth_end) {
        lua_pushlstring(L, url, (size_t)(auth_end - url));
        lua_pushliteral(L, "/");
      } else {
        lua_pushlstring(L, url, (size_t)(dir - url));
        lua_pushliteral(L, "");
      }
      lua_pushlstring(L, loc, ll);
      lua_concat(L, 3);
    }
  }
  lua_remove(L, -2);
  remove_dot_segments(L);
  return 1;
}

static int go(lua_State *L, lc_call *x);

/* X_OPTS becomes a private copy (once), to be written. */
static void own_opts(lua_State *L, lc_call *x) {
  if (x->own_opts)
    return;
  x->own_opts = 1;
  lua_createtable(L, 0, 8);
  lua_pushnil(L);
  while (lua_next(L, X_OPTS)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -4);
  }
  lua_replace(L, X_OPTS);
}

static int request_step(lua_State *L, lc_call *x) {
  if (x->failed)
    return fail_result(L, x);
  int st = x->status;
  if (x->follow > 0 &&
      (st == 301 || st == 302 || st == 303 || st == 307 || st == 308)) {
    if (push_location(L, x)) {
      lua_getfield(L, X_OPTS, "method");
      const char *m = lua_tostring(L, -1);
      int is_head = m && strcasecmp(m, "HEAD") == 0;
      int to_get = !is_head && (st == 303 || ((st == 301 || st == 302) && m &&
                                              strcasecmp(m, "POST") == 0));
      lua_pop(L, 1);
      lua_getfield(L, X_OPTS, "body");
      int iter = lua_isfunction(L, -1);
      lua_pop(L, 1);
      if (to_get || !iter) { /* an iterator cannot be sent again */
        own_opts(L, x);
        lua_getfield(L, X_OPTS, "url");
        const char *was = lua_tostring(L, -1), *to = lua_tostring(L, -2);
        size_t wl = origin_len(was), tl = origin_len(to);
        int other = wl != tl || strncasecmp(was, to, wl) != 0;
        lua_pop(L, 1);
        if (other)
          drop_credentials(L);
        lua_setfield(L, X_OPTS, "url");
        if (to_get) {
          lua_pushliteral(L, "GET");
          lua_setfield(L, X_OPTS, "method");
          lua_pushnil(L);
          lua_setfield(L, X_OPTS, "body");
        }
        x->follow--;
        let_go(x);
        x->body.len = 0;
        x->done = x->head = x->failed = 0;
        return go(L, x);
      }
      lua_pop(L, 1);
    }
  }
  push_response(L, x, 1);
  let_go(x);
  return 1;
}

static int go(lua_State *L, lc_call *x) {
  if (start_exchange(L, x, 0) != 0)
    return fail_result(L, x);
  if (x->iter_body)
    return pump_step(L, x);
  return lc_wait(L, x, W_DONE, request_step);
}

/* The options (a table, or a url made one) at X_OPTS; push the call's
 * userdata at X_CALL and X_BODY's slot. */
static lc_call *begin(lua_State *L, int mode) {
  if (lua_type(L, 1) == LUA_TSTRING) {
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "url");
    if (lua_istable(L, 2)) { /* websocket(url, opts) */
      lua_pushnil(L);
      while (lua_next(L, 2)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
      }
    } else if (!lua_isnoneornil(L, 2)) {
      luaL_typeerror(L, 2, "table");
    }
  } else {
    luaL_checktype(L, 1, LUA_TTABLE); /* read, never written: a redirect
                                          copies it first (own_opts) */
    lua_pushvalue(L, 1);
  }
  lua_replace(L, X_OPTS);
  lua_settop(L, X_OPTS);
  if (mode == LC_WEBSOCKET)
    lua_newtable(L); /* X_CHOPTS */
  else
    lua_pushnil(L);
  lc_call *x = lua_newuserdatauv(L, sizeof *x, 0);
  memset(x, 0, sizeof *x);
  luaL_setmetatable(L, LC_MT);
  lua_pushnil(L); /* X_BODY */
  x->ctx = rl__ctx(L);
  x->mode = mode;
  x->timeout = (uint64_t)opt_int(L, X_OPTS, "timeout", 30000, 0);
  x->follow = (int)opt_int(L, X_OPTS, "follow", 0, 0);
  return x;
}

static int l_request(lua_State *L) {
  lc_call *x = begin(L, LC_REQUEST);
  return go(L, x);
}

/* ---- stream
 * ------------------------------------------------------------------ */

static int piece_step(lua_State *L, lc_call *x) {
  lua_settop(L, 0);
  if (x->body.len > 0) {
    lua_pushlstring(L, x->body.base, x->body.len);
    x->body.len = 0;
    if (x->body.cap > LC_STREAM_HIGH)
      rl__buf_free(&x->body);
    if (x->r && x->r->paused && !x->done)
      rl__creq_pause(x->r, 0);
    return 1;
  }
  if (x->r)
    rl__creq_deadline(x->r, 0);
  lua_pushnil(L);
  if (x->failed) {
    let_go(x);
    lua_pushstring(L, x->errbuf);
    lua_pushvalue(L, -1);
    lua_setfield(L, lua_upvalueindex(2), "error"); /* res.error */
    return 2;
  }
  let_go(x); /* complete: the connection went back to the pool */
  return 1;
}

/* res.body() (upvalues: the call, res): the next piece, nil at the end,
 * nil, err */
static int stream_next(lua_State *L) {
  lc_call *x = lua_touserdata(L, lua_upvalueindex(1));
  if (x->body.len == 0 && !x->done && x->r)
    rl__creq_deadline(x->r, x->timeout);
  return lc_wait(L, x, W_PIECE, piece_step);
}

/* res:close(): drop the rest */
static int stream_close(lua_State *L) {
  lc_call *x = lua_touserdata(L, lua_upvalueindex(1));
  if (!x->done) {
    x->done = x->failed = 1;
    snprintf(x->errbuf, sizeof x->errbuf, "closed");
  }
  let_go(x);
  x->body.len = 0;
  return 0;
}

static int stream_head_step(lua_State *L, lc_call *x) {
  if (x->failed && !x->head)
    return fail_result(L, x);
  push_response(L, x, 0);
  lua_pushvalue(L, X_CALL);
  lua_pushvalue(L, -2);
  lua_pushcclosure(L, stream_next, 2);
  lua_setfield(L, -2, "body");
  lua_pushvalue(L, X_CALL);
  lua_pushcclosure(L, stream_close, 1);
  lua_setfield(L, -2, "close");
  return 1;
}

static int l_stream(lua_State *L) {
  lc_call *x = begin(L, LC_STREAM);
  if (start_exchange(L, x, 0) != 0) /* (its timeout is the head's) */
    return fail_result(L, x);
  return pump_step(L, x); /* an upload first, if any; then the head */
}

/* ---- websocket
 * ---------------------------------------------------------------- */

static const char *const ws_opts[] = {
    "url",         "protocols",     "headers",      "timeout",
    "max_message", "idle_timeout",  "on_open",      "on_message",
    "on_close",    "on_error",      "on_ping",      "on_pong",
    "on_drain",    "ping_interval", "max_buffered", NULL};

static int ws_fail(lua_State *L, lc_call *x, const char *why) {
  snprintf(x->errbuf, sizeof x->errbuf, "handshake: %s", why);
  lua_pushnil(L);
  lua_pushstring(L, x->errbuf);
  push_response(L, x, 1);
  let_go(x);
  return 3;
}

static int ws_step(lua_State *L, lc_call *x) {
  if (x->failed)
    return fail_result(L, x);
  rl_creq *r = x->r;
  if (r->status != 101) {
    char why[40];
    snprintf(why, sizeof why, "status %d", r->status);
    return ws_fail(L, x, why);
  }
  size_t vl;
  const char *v = header_value(r, "upgrade", &vl);
  if (v == NULL || !rl__has_token(v, vl, "websocket"))
    return ws_fail(L, x, "no Upgrade: websocket");
  v = header_value(r, "connection", &vl);
  if (v == NULL || !rl__has_token(v, vl, "upgrade"))
    return ws_fail(L, x, "no Connection: upgrade");
  v = header_value(r, "sec-websocket-accept", &vl);
  if (v == NULL || vl != 28 || memcmp(v, x->ws_accept, 28) != 0)
    return ws_fail(L, x, "a wrong Sec-WebSocket-Accept");
  v = header_value(r, "sec-websocket-protocol", &vl);
  if (v) { /* it must be one we offered */
    int offered = 0;
    lua_getfield(L, X_OPTS, "protocols");
    if (lua_istable(L, -1))
      for (lua_Integer i = 1; i <= luaL_len(L, -1) && !offered; i++) {
        lua_rawgeti(L, -1, i);
        size_t pl;
        const char *p = lua_tolstring(L, -1, &pl);
        offered = p && pl == vl && memcmp(p, v, vl) == 0;
        lua_pop(L, 1);
      }
    lua_pop(L, 1);
    if (!offered)
      return ws_fail(L, x, "a protocol that was not offered");
  }
  v = header_value(r, "sec-websocket-extensions", &vl);
  if (v && vl)
    return ws_fail(L, x, "an extension that was not offered");
  rl_ws *ws = rl__ws_new((size_t)opt_int(L, X_OPTS, "max_message", 4194304, 1));
  if (ws == NULL)
    return luaL_error(L, "out of memory");
  push_response(L, x, 1); /* the 101 */
  int res = lua_gettop(L);
  rl_conn *c = rl__creq_take_conn(r);
  let_go(x);
  rl__ws_set_client(ws);
  lua_pushvalue(L, X_CHOPTS);
  lua_replace(L, 2); /* rl__channel_client reads its options there */
  rl__channel_client(L, ws, c);
  lua_pushvalue(L, res);
  return 2;
}

static int l_websocket(lua_State *L) {
  lc_call *x = begin(L, LC_WEBSOCKET);
  /* split the options: the channel's go to X_CHOPTS */
  lua_pushnil(L);
  while (lua_next(L, X_OPTS)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
    int i = 0;
    while (ws_opts[i] && strcmp(ws_opts[i], k) != 0)
      i++;
    if (ws_opts[i] == NULL)
      return luaL_error(L, "websocket: unknown option '%s'", k);
    if (strncmp(k, "on_", 3) == 0 || strcmp(k, "ping_interval") == 0 ||
        strcmp(k, "max_buffered") == 0 || strcmp(k, "idle_timeout") == 0) {
      lua_pushstring(L, strcmp(k, "idle_timeout") == 0 ? "timeout" : k);
      lua_pushvalue(L, -2);
      lua_rawset(L, X_CHOPTS);
    }
    lua_pop(L, 1);
  }
  x->follow = 0;
  if (start_exchange(L, x, 1) != 0)
    return fail_result(L, x);
  x->r->keepalive = 0;
  x->r->max_body = 65536; /* the body of a refusal */
  return lc_wait(L, x, W_DONE, ws_step);
}

/* ---- the pool
 * ---------------------------------------------------------------- */

static int l_configure(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  rl_ctx *ctx = rl__ctx(L);
  rl_client *cl = client_of(ctx, L);
  int size = (int)opt_int(L, 1, "pool_size", rl__client_pool_size(cl), 0);
  lua_Integer idle = opt_int(L, 1, "pool_timeout", 0, 1);
  rl__client_configure(cl, size, (uint64_t)idle);
  return 0;
}

static int l_close_idle(lua_State *L) {
  rl_ctx *ctx = rl__ctx(L);
  if (ctx->client)
    rl__client_close_idle(ctx->client);
  return 0;
}

void rl__client_open_lib(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"request", l_request},       {"stream", l_stream},
      {"websocket", l_websocket},   {"configure", l_configure},
      {"close_idle", l_close_idle}, {NULL, NULL}};
  luaL_newmetatable(L, LC_MT);
  lua_pushcfunction(L, call_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
}
