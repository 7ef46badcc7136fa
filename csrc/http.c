/* Servers and HTTP/1.1 connections: accept, read, parse with llhttp, run
 * the handler, write, keep alive, time out and close. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "rl.h"

#define RL_MAX_HEADERS 128
#define RL_MAX_HEADER_BYTES (64 * 1024)
#define RL_MAX_PENDING (64 * 1024) /* unparsed input held while busy */
#define RL_MAX_OUT (1024 * 1024)   /* output queued before reading pauses */
#define RL_BUF_MAX (1u << 30)      /* largest piece of one uv_buf_t */
#define RL_READ_CHUNK (16 * 1024)
#define RL_LINGER_MS 2000

enum { TIMER_NONE, TIMER_HEADER, TIMER_IDLE, TIMER_LINGER };

typedef struct {
  uv_write_t req; /* data unused; handle->data is the conn */
  char *base;     /* owned: the conn's former output buffer */
  size_t cap;
  size_t len; /* bytes this request writes */
} rl_wreq;

static llhttp_settings_t settings;
static void conn_process(rl_conn *c);
static void conn_timer_cb(uv_timer_t *t);
static void start_reading(rl_conn *c);

/* ---- small string helpers --------------------------------------------------
 */

static int is_tchar(unsigned char ch) { return rl__cclass[ch] & RL_C_TCHAR; }

/* Does the comma-separated list v contain token tok (case-insensitive)? */
int rl__has_token(const char *v, size_t n, const char *tok) {
  size_t tl = strlen(tok);
  size_t i = 0;
  while (i < n) {
    while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
      i++;
    size_t s = i;
    while (i < n && v[i] != ',')
      i++;
    size_t e = i;
    while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
      e--;
    if (e - s == tl && strncasecmp(v + s, tok, tl) == 0)
      return 1;
  }
  return 0;
}

static rl_header *headers(rl_conn *c, size_t *n) {
  *n = c->hlist.len / sizeof(rl_header);
  return (rl_header *)c->hlist.base;
}

/* The headers the core itself reads, found in one pass over the list */
enum {
  K_HOST,
  K_TRANSFER_ENCODING,
  K_UPGRADE,
  K_CONNECTION,
  K_WS_VERSION,
  K_WS_KEY,
  K_EXPECT,
  K_NONE
};
static const char *const known[K_NONE] = {
    [K_HOST] = "host",
    [K_TRANSFER_ENCODING] = "transfer-encoding",
    [K_UPGRADE] = "upgrade",
    [K_CONNECTION] = "connection",
    [K_WS_VERSION] = "sec-websocket-version",
    [K_WS_KEY] = "sec-websocket-key",
    [K_EXPECT] = "expect",
};

/* Which of `known` is the (lower-case) name h, or K_NONE: the length
 * picks the one candidate, memcmp confirms it. */
static int known_header(rl_conn *c, const rl_header *h) {
  const char *s = c->hdrs.base + h->name;
  int k;
  switch (h->name_len) {
  case 4:
    k = K_HOST;
    break;
  case 6:
    k = K_EXPECT;
    break;
  case 7:
    k = K_UPGRADE;
    break;
  case 10:
    k = K_CONNECTION;
    break;
  case 17:
    k = s[0] == 't' ? K_TRANSFER_ENCODING : K_WS_KEY;
    break;
  case 21:
    k = K_WS_VERSION;
    break;
  default:
    return K_NONE;
  }
  return memcmp(s, known[k], h->name_len) == 0 ? k : K_NONE;
}

#define HVAL(c, h) ((c)->hdrs.base + (h)->value)

/* ---- llhttp callbacks -------------------------------------------------------
 */

static int fail(llhttp_t *p, int status, const char *reason) {
  rl_conn *c = p->data;
  c->err_status = status;
  c->err_reason = reason;
  llhttp_set_error_reason(p, reason);
  return HPE_USER;
}

static int on_message_begin(llhttp_t *p) {
  rl_conn *c = p->data;
  c->url.len = c->hdrs.len = c->hlist.len = c->body.len = 0;
  c->field_open = 0;
  c->in_message = 1;
  c->head_done = 0;
  c->err_status = 0;
  c->websocket = 0;
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  rl_conn *c = p->data;
  if (c->url.len + n > c->server->cfg.max_line)
    return fail(p, 414, "request line too long");
  return rl__buf_append(&c->url, at, n) ? fail(p, 500, "out of memory") : 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  rl_conn *c = p->data;
  size_t count = c->hlist.len / sizeof(rl_header);
  if (c->field_open == 2)
    return fail(p, 400, "malformed header field");
  if (!c->field_open) {
    if (count >= RL_MAX_HEADERS)
      return fail(p, 431, "too many header fields");
    rl_header nh = {.name = (uint32_t)c->hdrs.len};
    if (rl__buf_append(&c->hlist, &nh, sizeof nh))
      return fail(p, 500, "out of memory");
    count++;
    c->field_open = 1;
  }
  rl_header *h = (rl_header *)c->hlist.base + count - 1;
  for (size_t i = 0; i < n; i++)
    if (at[i] == ' ' || at[i] == '\t')
      return fail(p, 400, "whitespace in a header field name");
  if (c->hdrs.len + n > RL_MAX_HEADER_BYTES)
    return fail(p, 431, "header section too large");
  if (h->name_len + n > c->server->cfg.max_line)
    return fail(p, 431, "header field too long");
  if (rl__buf_reserve(&c->hdrs, n))
    return fail(p, 500, "out of memory");
  char *d = c->hdrs.base + c->hdrs.len;
  for (size_t i = 0; i < n; i++)
    d[i] = (char)tolower((unsigned char)at[i]);
  c->hdrs.len += n;
  h->name_len += (uint32_t)n;
  return 0;
}

static int on_header_field_complete(llhttp_t *p) {
  rl_conn *c = p->data;
  rl_header *h = (rl_header *)(c->hlist.base + c->hlist.len) - 1;
  if (c->field_open != 1 || h->name_len == 0)
    return fail(p, 400, "empty header field name");
  c->field_open = 2; /* the value comes next */
  h->value = (uint32_t)c->hdrs.len;
  return 0;
}

static int on_header_value_complete(llhttp_t *p) {
  rl_conn *c = p->data;
  if (c->field_open != 2)
    return fail(p, 400, "empty header field name");
  c->field_open = 0;
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  rl_conn *c = p->data;
  size_t count = c->hlist.len / sizeof(rl_header);
  if (count == 0 || c->field_open != 2)
    return fail(p, 400, "empty header field name");
  rl_header *h = (rl_header *)c->hlist.base + count - 1;
  if (c->hdrs.len + n > RL_MAX_HEADER_BYTES)
    return fail(p, 431, "header section too large");
  if (h->name_len + h->value_len + n > c->server->cfg.max_line)
    return fail(p, 431, "header field too long");
  /* An obsolete line fold reaches us as a second span of the same value;
   * llhttp has dropped the CRLF, so the fold is replaced by its spaces as
   * RFC 9112 section 5.2 allows. */
  if (rl__buf_append(&c->hdrs, at, n))
    return fail(p, 500, "out of memory");
  h->value_len += (uint32_t)n;
  return 0;
}

static int valid_host(const char *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)v[i];
    if (!(rl__cclass[ch] & RL_C_HOST))
      return 0;
  }
  return 1;
}

/* Enforce RFC 9112's request rules that llhttp leaves to the server. */
static int on_headers_complete(llhttp_t *p) {
  rl_conn *c = p->data;
  size_t n;
  rl_header *h = headers(c, &n);
  rl_header *first[K_NONE + 1] = {0}; /* the first of each known header */
  int count[K_NONE + 1] = {0};
  /* Trim trailing whitespace from values (OWS is not part of a value). */
  for (size_t i = 0; i < n; i++) {
    int k = known_header(c, &h[i]);
    if (count[k]++ == 0)
      first[k] = &h[i];
    while (h[i].value_len > 0) {
      char ch = c->hdrs.base[h[i].value + h[i].value_len - 1];
      if (ch != ' ' && ch != '\t')
        break;
      h[i].value_len--;
    }
  }
  c->http_minor = p->http_minor;
  c->head_done = 1;
  if (p->http_major == 0)
    return fail(p, 400, "HTTP/0.9 requests are not supported");
  if (p->http_major != 1)
    return fail(p, 505, "HTTP version not supported");
  int hosts = count[K_HOST];
  rl_header *host = first[K_HOST];
  if (hosts > 1)
    return fail(p, 400, "more than one Host header");
  if (hosts == 0 && p->http_minor >= 1)
    return fail(p, 400, "missing Host header");
  if (host && !valid_host(HVAL(c, host), host->value_len))
    return fail(p, 400, "invalid Host header");
  rl_header *te = first[K_TRANSFER_ENCODING];
  if (te) {
    if (p->http_minor == 0)
      return fail(p, 400, "Transfer-Encoding in an HTTP/1.0 request");
    const char *v = HVAL(c, te);
    size_t vl = te->value_len;
    if (!(vl == 7 && strncasecmp(v, "chunked", 7) == 0))
      return fail(p, 501, "unsupported transfer coding");
  }
  if (p->method == HTTP_CONNECT)
    return fail(p, 501, "CONNECT is not supported");
  if (!(p->flags & F_CHUNKED) && p->content_length > c->server->cfg.max_body)
    return fail(p, 413, "request body too large");
  c->head_only = p->method == HTTP_HEAD;
  c->keep_alive = llhttp_should_keep_alive(p);
  /* A WebSocket upgrade (RFC 6455 4.2.1): checked here, so the handler
   * sees req.websocket only for a valid one. */
  rl_header *up = first[K_UPGRADE];
  rl_header *conn = first[K_CONNECTION];
  /* RFC 9110 7.8: an Upgrade not named in Connection is ignored */
  if (up && rl__has_token(HVAL(c, up), up->value_len, "websocket") && conn &&
      rl__has_token(HVAL(c, conn), conn->value_len, "upgrade")) {
    rl_header *ver = first[K_WS_VERSION];
    int nkeys = count[K_WS_KEY];
    rl_header *key = first[K_WS_KEY];
    if (p->method != HTTP_GET || p->http_minor < 1 || (p->flags & F_CHUNKED) ||
        p->content_length > 0)
      return fail(p, 400, "invalid WebSocket upgrade request");
    if (ver == NULL || ver->value_len != 2 || memcmp(HVAL(c, ver), "13", 2))
      return fail(p, 426, "unsupported WebSocket version");
    if (key == NULL || nkeys != 1 ||
        !rl__ws_valid_key(HVAL(c, key), key->value_len))
      return fail(p, 400, "missing or invalid Sec-WebSocket-Key");
    c->websocket = 1;
  }
  /* Other upgrades are ignored: the request is plain HTTP. */
  p->upgrade = 0;
  rl_header *ex = first[K_EXPECT];
  if (ex && p->http_minor >= 1) {
    if (!(ex->value_len == 12 &&
          strncasecmp(HVAL(c, ex), "100-continue", 12) == 0))
      return fail(p, 417, "unsupported expectation");
    if ((p->flags & F_CHUNKED) || p->content_length > 0) {
      static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
      rl__conn_write(c, cont, sizeof cont - 1);
    }
  }
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  rl_conn *c = p->data;
  if (c->body.len + n > c->server->cfg.max_body)
    return fail(p, 413, "request body too large");
  return rl__buf_append(&c->body, at, n) ? fail(p, 500, "out of memory") : 0;
}

static int on_chunk_header(llhttp_t *p) {
  rl_conn *c = p->data;
  /* refuse an oversized chunk before its data arrives */
  if (p->content_length > c->server->cfg.max_body - c->body.len)
    return fail(p, 413, "request body too large");
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  rl_conn *c = p->data;
  c->msg_complete = 1;
  c->in_message = 0;
  return HPE_PAUSED;
}

/* ---- the request table ------------------------------------------------------
 */

/* Push K[k], an interned key; its value follows, then lua_rawset(L, -3). */
#define KEY(k) lua_rawgeti(L, K, (k))

static void push_request(lua_State *L, rl_conn *c) {
  rl_server *s = c->server;
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ctx->keys_ref);
  int K = lua_gettop(L); /* interned keys: no lookup by C string */
  lua_createtable(L, 0, 12);
  KEY(RL_K_SERVER_PORT);
  lua_pushinteger(L, s->port);
  lua_rawset(L, -3);
  KEY(RL_K_REMOTE_ADDR);
  lua_pushstring(L, c->remote);
  lua_rawset(L, -3);
  KEY(RL_K_SCHEME);
  lua_rawgeti(L, K, RL_V_HTTP);
  lua_rawset(L, -3);

  /* uri and query_string; an absolute-form target names the host. */
  const char *u = c->url.base ? c->url.base : "/";
  size_t ul = c->url.base ? c->url.len : 1;
  const char *auth = NULL;
  size_t authl = 0;
  if (ul > 0 && u[0] != '/' && u[0] != '*') {
    const char *ss = memchr(u, ':', ul);
    if (ss && (size_t)(ss - u) + 3 <= ul && ss[1] == '/' && ss[2] == '/') {
      auth = ss + 3;
      const char *end = u + ul;
      const char *slash = auth;
      while (slash < end && *slash != '/' && *slash != '?')
        slash++;
      authl = (size_t)(slash - auth);
      if (slash == end || *slash == '?') {
        /* "http://host?q" means path "/" */
        KEY(RL_K_URI);
        lua_pushliteral(L, "/");
        lua_rawset(L, -3);
        u = slash;
        ul = (size_t)(end - slash);
      } else {
        ul = (size_t)(end - slash);
        u = slash;
      }
    }
  }
  const char *q = memchr(u, '?', ul);
  if (ul > 0 && u[0] != '?') {
    KEY(RL_K_URI);
    lua_pushlstring(L, u, q ? (size_t)(q - u) : ul);
    lua_rawset(L, -3);
  }
  if (q) {
    KEY(RL_K_QUERY_STRING);
    lua_pushlstring(L, q + 1, ul - (size_t)(q - u) - 1);
    lua_rawset(L, -3);
  }

  size_t i;
  KEY(RL_K_REQUEST_METHOD);
  lua_rawgeti(L, K, RL_K_METHODS + (c->parser.method & 63));
  lua_rawset(L, -3);
  KEY(RL_K_PROTOCOL);
  lua_rawgeti(L, K, c->http_minor == 0 ? RL_V_HTTP10 : RL_V_HTTP11);
  lua_rawset(L, -3);

  size_t nh;
  rl_header *h = headers(c, &nh);
  const char *host = NULL;
  size_t hostl = 0;
  KEY(RL_K_HEADERS);
  lua_createtable(L, 0, (int)nh);
  for (i = 0; i < nh; i++) {
    const char *name = c->hdrs.base + h[i].name;
    lua_pushlstring(L, name, h[i].name_len);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_pushlstring(L, HVAL(c, &h[i]), h[i].value_len);
    } else {
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, HVAL(c, &h[i]), h[i].value_len);
      lua_concat(L, 3);
    }
    lua_rawset(L, -3);
    if (h[i].name_len == 4 && memcmp(name, "host", 4) == 0) {
      host = HVAL(c, &h[i]);
      hostl = h[i].value_len;
    }
  }
  lua_rawset(L, -3);

  if (auth) {
    host = auth;
    hostl = authl;
  }
  KEY(RL_K_SERVER_NAME);
  if (host && hostl > 0) {
    /* strip the port, minding IPv6 literals */
    size_t e = hostl;
    if (host[0] == '[') {
      const char *rb = memchr(host, ']', hostl);
      e = rb ? (size_t)(rb - host) + 1 : hostl;
    } else {
      const char *colon = memchr(host, ':', hostl);
      if (colon)
        e = (size_t)(colon - host);
    }
    lua_pushlstring(L, host, e);
  } else {
    lua_pushstring(L, s->name);
  }
  lua_rawset(L, -3);

  if (c->body.len > 0) {
    KEY(RL_K_BODY);
    lua_pushlstring(L, c->body.base, c->body.len);
    lua_rawset(L, -3);
  }
  KEY(RL_K_WEBSOCKET);
  lua_pushboolean(L, c->websocket);
  lua_rawset(L, -3);
  lua_remove(L, K);
}
#undef KEY

/* ---- dispatch
 * ----------------------------------------------------------------- */

/* respond_p(conn, response) -> nil, or the reason it is not valid */
static int respond_p(lua_State *L) {
  rl_conn *c = lua_touserdata(L, 1);
  const char *err = NULL;
  if (rl__respond(c, L, 2, &err) != 0) {
    lua_pushstring(L, err);
    return 1;
  }
  return 0;
}

static void handler_done(rl_task *t, lua_State *co, int status, int nres) {
  rl_conn *c = t->data;
  if (c == NULL)
    return; /* the connection went away meanwhile */
  c->task = NULL;
  c->req = NULL; /* no longer anchored */
  c->server->inflight--;
  const char *err = NULL;
  if (status != LUA_OK) {
    rl__log("handler error: %s", lua_tostring(co, -1));
    rl__respond_error(c, 500, NULL);
    return;
  }
  int idx = lua_gettop(co) - nres + 1;
  if (nres < 1 || !lua_istable(co, idx)) {
    rl__log("handler error: returned %s, expected a response table",
            nres < 1 ? "nothing" : luaL_typename(co, idx));
    rl__respond_error(c, 500, NULL);
    return;
  }
  /* The response table's metamethods may raise: read it under a pcall
   * of its own, so that a bad table is a 500 and never a hung connection */
  lua_pushcfunction(co, respond_p);
  lua_pushlightuserdata(co, c);
  lua_pushvalue(co, idx);
  if (lua_pcall(co, 2, 1, 0) != LUA_OK) {
    rl__log("bad response: %s", lua_tostring(co, -1));
    rl__respond_error(c, 500, NULL);
  } else if ((err = lua_tostring(co, -1)) != NULL) {
    rl__log("bad response: %s", err);
    rl__respond_error(c, 500, NULL);
  }
  lua_pop(co, 1);
}

/* The connection whose handler t runs, if t is a handler's task. */
rl_conn *rl__task_conn(rl_task *t) {
  return t && t->done == handler_done ? t->data : NULL;
}

static int dispatch_p(lua_State *L) {
  rl_conn *c = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->server->handler_ref);
  push_request(L, c);
  /* the task anchors the request while it runs, so as_channel can know it
   * by its address */
  c->req = lua_topointer(L, -1);
  /* The request's bytes are in the table now. */
  c->url.len = c->hdrs.len = c->hlist.len = c->body.len = 0;
  if (c->body.cap > RL_MAX_PENDING)
    rl__buf_free(&c->body);
  c->state = RL_HANDLING;
  c->server->inflight++;
  (void)rl__task_start(c->ctx, L, -1, 1, handler_done, c, &c->task);
  return 0;
}

static void dispatch(rl_conn *c) {
  rl_server *s = c->server;
  if (s->stopping)
    c->keep_alive = 0;
  if (s->inflight >= s->cfg.queue_size) {
    rl__respond_error(c, 503, "too many requests in flight");
    return;
  }
  if (rl__protect(c->ctx, c->ctx->L, dispatch_p, c) != LUA_OK)
    rl__conn_close(c, 0); /* out of memory: this connection cannot go on */
}

/* ---- reading
 * ------------------------------------------------------------------ */

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
  size_t want = c->ws ? rl__ws_read_hint(c) : 0;
  rl_ctx *ctx = c->ctx;
  if (c->ws && c->in.base == NULL && want <= RL_READ_CHUNK && !ctx->rbuf_busy &&
      (ctx->rbuf || (ctx->rbuf = malloc(RL_READ_CHUNK)) != NULL)) {
    /* An idle WebSocket has no buffer of its own: it borrows the loop's
     * for this read, and read_cb keeps only what is left unparsed. */
    ctx->rbuf_busy = 1;
    c->in_shared = 1;
    c->in.base = ctx->rbuf;
    c->in.cap = RL_READ_CHUNK;
    *buf = uv_buf_init(ctx->rbuf, RL_READ_CHUNK);
    return;
  }
  if (want > RL_READ_CHUNK && c->in.cap - c->in_pos < want) {
    /* a large WebSocket frame is read whole into this buffer */
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

/* Give back the loop's read buffer, keeping what is left unparsed in a
 * buffer of the connection's own. */
static void unshare_in(rl_conn *c) {
  rl_ctx *ctx = c->ctx;
  size_t left = c->in.len - c->in_pos;
  c->in_shared = 0;
  ctx->rbuf_busy = 0;
  c->in.base = NULL;
  c->in.len = c->in.cap = 0;
  size_t from = c->in_pos;
  c->in_pos = 0;
  if (left == 0 || uv_is_closing((uv_handle_t *)&c->tcp))
    return;
  if (rl__buf_append(&c->in, ctx->rbuf + from, left))
    rl__conn_close(c, 0); /* out of memory */
}

static void read_some(rl_conn *c, uv_stream_t *stream, ssize_t nread);

static void read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  rl_conn *c = stream->data;
  (void)buf;
  read_some(c, stream, nread);
  if (c->in_shared)
    unshare_in(c);
}

static void read_some(rl_conn *c, uv_stream_t *stream, ssize_t nread) {
  if (c->lingering) {
    if (nread < 0)
      rl__conn_close(c, 0);
    return;
  }
  if (nread == 0)
    return;
  if (nread < 0) {
    c->read_eof = 1;
    uv_read_stop(stream);
    c->reading = 0;
    /* The peer is gone or half-closed. A handler still running may answer
     * (then we close); anything else closes now, on_close included. */
    if (nread == UV_EOF && !c->ws &&
        (c->state == RL_HANDLING || c->state == RL_BODY)) {
      c->keep_alive = 0;
      return;
    }
    if (nread == UV_EOF && !c->ws && c->state == RL_READING &&
        (c->out.len || c->nwrites)) {
      rl__conn_close(c, 1); /* half-closed: finish writing what it asked */
      return;
    }
    rl__conn_close(c, 0);
    return;
  }
  c->in.len += (size_t)nread;
  if (c->ws)
    rl__ws_proceed(c);
  else if (c->state == RL_READING)
    conn_process(c);
  else if (c->in.len - c->in_pos > RL_MAX_PENDING && c->reading) {
    uv_read_stop(stream); /* resumed when the parser catches up */
    c->reading = 0;
  }
}

static void start_reading(rl_conn *c) {
  if (c->reading || c->read_eof || c->out_blocked ||
      uv_is_closing((uv_handle_t *)&c->tcp))
    return;
  if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) == 0)
    c->reading = 1;
}

/* Timeouts are lazy: arming one stores a deadline, and the libuv timer is
 * started only when it is idle or due later than the new deadline; when it
 * fires early it sleeps again until the deadline. A keep-alive request
 * costs no timer calls this way. */
static void arm_timer(rl_conn *c, int mode) {
  uint64_t ms = 0;
  rl_config *cfg = &c->server->cfg;
  if (mode == TIMER_HEADER)
    ms = cfg->header_timeout;
  else if (mode == TIMER_IDLE)
    ms = cfg->idle_timeout;
  else if (mode == TIMER_LINGER)
    ms = RL_LINGER_MS;
  c->timer_mode = mode;
  if (ms == 0) {
    c->deadline = 0; /* the timer, if running, will find nothing to do */
    return;
  }
  c->deadline = uv_now(c->ctx->loop) + ms;
  if (!uv_is_active((uv_handle_t *)&c->timer) || c->timer_due > c->deadline) {
    uv_timer_start(&c->timer, conn_timer_cb, ms, 0);
    c->timer_due = c->deadline;
  }
}

static void disarm_timer(rl_conn *c) {
  c->timer_mode = TIMER_NONE;
  c->deadline = 0;
}

/* PROXY protocol v1: "PROXY TCP4 src dst sport dport\r\n". Returns 1 when
 * consumed (or absent and optional), 0 when more bytes are needed, -1 on
 * a malformed or missing header. */
static int proxy_header(rl_conn *c) {
  const char *p = c->in.base + c->in_pos;
  size_t n = c->in.len - c->in_pos;
  static const char sig[] = "PROXY ";
  size_t cmp = n < 6 ? n : 6;
  if (memcmp(p, sig, cmp) != 0)
    return c->server->cfg.proxy_protocol == 2 ? (c->proxy_pending = 0, 1) : -1;
  const char *nl = memchr(p, '\n', n < 108 ? n : 108);
  if (nl == NULL)
    return n >= 108 ? -1 : 0;
  if (nl == p || nl[-1] != '\r')
    return -1;
  char line[108];
  size_t ll = (size_t)(nl - p) - 1;
  memcpy(line, p, ll);
  line[ll] = 0;
  char proto[8], src[64], dst[64];
  int sport, dport;
  if (strcmp(line, "PROXY UNKNOWN") == 0 ||
      strncmp(line, "PROXY UNKNOWN ", 14) == 0) {
    /* keep the real peer */
  } else if (sscanf(line, "PROXY %7s %63s %63s %d %d", proto, src, dst, &sport,
                    &dport) == 5 &&
             (strcmp(proto, "TCP4") == 0 || strcmp(proto, "TCP6") == 0)) {
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    if (uv_ip4_addr(src, 0, &a4) != 0 && uv_ip6_addr(src, 0, &a6) != 0)
      return -1;
    snprintf(c->remote, sizeof c->remote, "%s", src);
    c->remote_port = sport;
  } else {
    return -1;
  }
  c->in_pos += (size_t)(nl - p) + 1;
  c->proxy_pending = 0;
  return 1;
}

/* Does the unparsed input start with a line "... HTTP/d.d\r\n"? Tells a
 * version or method we do not speak (505, 501) from garbage (400). */
static int looks_like_request_line(rl_conn *c) {
  const char *p = c->in.base + c->in_pos;
  size_t n = c->in.len - c->in_pos;
  const char *nl = memchr(p, '\n', n);
  if (nl == NULL || nl - p < 12 || nl[-1] != '\r')
    return 0;
  const char *v = nl - 9;
  return v[-1] == ' ' && memcmp(v, "HTTP/", 5) == 0 &&
         isdigit((unsigned char)v[5]) && v[6] == '.' &&
         isdigit((unsigned char)v[7]);
}

/* RFC 9110 2.5: a request with a higher minor version than ours is
 * served as HTTP/1.1. llhttp 8 (Debian 12's) rejects HTTP/1.2 and up, so
 * the request line is rewritten before it parses it. Returns 0 when the
 * line is not complete yet. */
static int serve_as_http11(rl_conn *c, size_t avail) {
  char *p = c->in.base + c->in_pos;
  char *nl = memchr(p, '\n', avail);
  if (nl == NULL)
    return avail > c->server->cfg.max_line + 16; /* llhttp says 414 */
  if (nl - p >= 11 && nl[-1] == '\r' && nl[-10] == ' ' &&
      memcmp(nl - 9, "HTTP/1.", 7) == 0 && nl[-2] >= '2' && nl[-2] <= '9')
    nl[-2] = '1';
  return 1;
}

static int status_for(llhttp_errno_t e, rl_conn *c) {
  if (c->err_status)
    return c->err_status;
  switch (e) {
  case HPE_PAUSED_H2_UPGRADE:
    return 505;
  case HPE_INVALID_VERSION:
    return looks_like_request_line(c) ? 505 : 400;
  case HPE_INVALID_METHOD: {
    /* a well-formed request with a method token we do not know: 501 */
    const char *p = c->in.base + c->in_pos;
    const char *end = c->in.base + c->in.len;
    const char *q = p;
    while (q < end && is_tchar((unsigned char)*q))
      q++;
    return q > p && q < end && *q == ' ' && looks_like_request_line(c) ? 501
                                                                       : 400;
  }
  default:
    return 400;
  }
}

/* Output backpressure: a client that sends requests (or pings) faster
 * than it reads the answers stops being read until its output drains. */
int rl__conn_pause_if_full(rl_conn *c) {
  if (rl__conn_buffered(c) < RL_MAX_OUT)
    return 0;
  c->out_blocked = 1;
  if (c->timer_mode != TIMER_IDLE && !c->close_timer && !c->lingering)
    arm_timer(c, TIMER_IDLE); /* a peer that never reads is dropped */
  if (c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
  }
  return 1;
}

static void conn_process(rl_conn *c) {
  while (c->state == RL_READING && !c->want_close &&
         !uv_is_closing((uv_handle_t *)&c->tcp)) {
    if (c->in_pos == c->in.len)
      break;
    if (rl__conn_pause_if_full(c))
      break;
    if (c->proxy_pending) {
      int r = proxy_header(c);
      if (r == 0)
        break;
      if (r < 0) {
        c->keep_alive = 0;
        rl__respond_error(c, 400, "bad PROXY protocol header");
        break;
      }
      continue;
    }
    const char *p = c->in.base + c->in_pos;
    size_t avail = c->in.len - c->in_pos;
    if (!c->in_message) {
      if (c->timer_mode != TIMER_HEADER)
        arm_timer(c, TIMER_HEADER); /* a new request starts */
      if (!serve_as_http11(c, avail))
        break; /* wait for the whole request line */
    }
    llhttp_errno_t e = llhttp_execute(&c->parser, p, avail);
    if (e == HPE_OK) {
      c->in_pos = c->in.len;
      if (c->head_done && c->in_message)
        arm_timer(c, TIMER_IDLE); /* a body is arriving: not idle */
      break;
    }
    if (e == HPE_PAUSED && c->msg_complete) {
      c->in_pos += (size_t)(llhttp_get_error_pos(&c->parser) - p);
      c->msg_complete = 0;
      llhttp_resume(&c->parser);
      disarm_timer(c);
      dispatch(c);
      continue;
    }
    int status = status_for(e, c);
    const char *reason =
        c->err_status ? c->err_reason : llhttp_get_error_reason(&c->parser);
    c->keep_alive = 0;
    rl__respond_error(c, status, reason);
    break;
  }
  if (c->state == RL_READING && !c->want_close) {
    start_reading(c);
    if (c->in_pos == c->in.len && !c->in_message)
      arm_timer(c, TIMER_IDLE);
  }
}

/* Continue after an asynchronous response completed (from the flusher). */
void rl__conn_continue(rl_conn *c) {
  if (uv_is_closing((uv_handle_t *)&c->tcp))
    return;
  if (c->ws) {
    rl__ws_proceed(c);
    if (!c->out_blocked && c->state == RL_CHANNEL)
      start_reading(c);
  } else if (c->state == RL_READING) {
    conn_process(c);
  } else if (c->state == RL_BODY) {
    rl__body_pump(c);
  }
}

void rl__conn_close_timer(rl_conn *c) {
  if (!c->close_timer) {
    c->close_timer = 1;
    arm_timer(c, TIMER_LINGER);
  }
}

/* The current response is complete: close or read the next request. */
void rl__conn_response_done(rl_conn *c) {
  if (c->state == RL_CLOSING)
    return;
  c->state = RL_READING;
  if (!c->keep_alive || c->server->stopping || c->read_eof) {
    rl__conn_close(c, 1);
    return;
  }
  c->deferred = 1;
  rl__mark_dirty(c);
}

/* ---- writing
 * ------------------------------------------------------------------ */

size_t rl__conn_buffered(const rl_conn *c) { return c->out.len + c->inflight; }

void rl__conn_write(rl_conn *c, const void *p, size_t n) {
  if (c->state == RL_CLOSING && c->lingering)
    return;
  if (uv_is_closing((uv_handle_t *)&c->tcp))
    return;
  if (rl__buf_append(&c->out, p, n)) {
    rl__conn_close(c, 0);
    return;
  }
  c->queued_total += n;
  rl__mark_dirty(c);
}

static void start_linger(rl_conn *c);

/* Some output reached the socket. */
static void conn_written(rl_conn *c) {
  if (c->channel)
    rl__channel_written(c->channel);
  if (c->out.len || c->nwrites || uv_is_closing((uv_handle_t *)&c->tcp))
    return;
  if (c->out_blocked) {
    c->out_blocked = 0; /* drained: read and parse again */
    if (c->timer_mode == TIMER_IDLE)
      disarm_timer(c);
    c->deferred = 1;
    rl__mark_dirty(c);
  }
  if (c->state == RL_BODY)
    rl__body_pump(c);
  else if (c->want_close && !c->lingering)
    start_linger(c);
}

static void write_cb(uv_write_t *req, int status) {
  rl_wreq *w = (rl_wreq *)req;
  rl_conn *c = req->handle->data;
  c->nwrites--;
  c->inflight -= w->len;
  if (c->out.base == NULL) {
    c->out.base = w->base; /* reuse the buffer */
    c->out.cap = w->cap;
    c->out.len = 0;
  } else {
    free(w->base);
  }
  size_t len = w->len;
  free(w);
  if (uv_is_closing((uv_handle_t *)&c->tcp))
    return;
  if (status < 0) {
    rl__conn_close(c, 0);
    return;
  }
  c->written_total += len;
  conn_written(c);
}

void rl__conn_flush(rl_conn *c) {
  if (uv_is_closing((uv_handle_t *)&c->tcp) || c->out.len == 0)
    return;
  size_t off = 0;
  if (c->nwrites == 0) {
    uv_buf_t b = uv_buf_init(
        c->out.base,
        (unsigned)(c->out.len > RL_BUF_MAX ? RL_BUF_MAX : c->out.len));
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n < 0 && n != UV_EAGAIN) {
      rl__conn_close(c, 0);
      return;
    }
    if (n > 0)
      off = (size_t)n;
  }
  c->written_total += off;
  if (off == c->out.len) {
    c->out.len = 0;
    conn_written(c);
    return;
  }
  rl_wreq *w = malloc(sizeof *w);
  if (w == NULL) {
    rl__conn_close(c, 0);
    return;
  }
  w->base = c->out.base; /* hand the buffer over; no copy */
  w->cap = c->out.cap;
  w->len = c->out.len - off;
  c->out.base = NULL;
  c->out.len = c->out.cap = 0;
  /* uv_buf_t lengths are unsigned int: a body past 4 GiB goes in pieces */
  uv_buf_t b[8];
  unsigned nb = 0;
  for (size_t o = 0; o < w->len && nb < 8; nb++) {
    size_t k = w->len - o > RL_BUF_MAX ? RL_BUF_MAX : w->len - o;
    b[nb] = uv_buf_init(w->base + off + o, (unsigned)k);
    o += k;
  }
  if (w->len > (size_t)8 * RL_BUF_MAX ||
      uv_write(&w->req, (uv_stream_t *)&c->tcp, b, nb, write_cb) != 0) {
    free(w->base);
    free(w);
    rl__conn_close(c, 0);
    return;
  }
  c->nwrites++;
  c->inflight += w->len;
  c->backlogged = 1; /* the socket is full: on_drain when this empties */
}

/* ---- closing
 * ------------------------------------------------------------------ */

static void server_maybe_closed(rl_server *s);

static void conn_closed(uv_handle_t *h) {
  rl_conn *c = h->data;
  if (--c->open_handles > 0)
    return;
  rl_server *s = c->server;
  if (c->in_shared) { /* a read that never completed: not ours to free */
    c->ctx->rbuf_busy = 0;
    c->in_shared = 0;
    c->in.base = NULL;
  }
  rl__buf_free(&c->in);
  rl__buf_free(&c->out);
  rl__buf_free(&c->url);
  rl__buf_free(&c->hdrs);
  rl__buf_free(&c->hlist);
  rl__buf_free(&c->body);
  rl__ws_free(c);
  c->ctx->handles -= 2;
  free(c);
  server_maybe_closed(s);
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  rl_conn *c = req->data;
  free(req);
  if (status < 0 && !uv_is_closing((uv_handle_t *)&c->tcp))
    rl__conn_close(c, 0);
}

/* Half-close and drain: closing a socket with unread input makes the
 * kernel send RST, which can destroy the response we just sent (a 413
 * while the client is still uploading). So shut down our side and read
 * until the peer closes or the linger timer fires. */
static void start_linger(rl_conn *c) {
  c->lingering = 1;
  if (c->read_eof) {
    rl__conn_close(c, 0);
    return;
  }
  uv_shutdown_t *req = malloc(sizeof *req);
  if (req == NULL ||
      uv_shutdown(req, (uv_stream_t *)&c->tcp, shutdown_cb) != 0) {
    free(req);
    rl__conn_close(c, 0);
    return;
  }
  req->data = c;
  arm_timer(c, TIMER_LINGER);
  c->reading = 0;
  uv_read_stop((uv_stream_t *)&c->tcp);
  if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) == 0)
    c->reading = 1;
}

void rl__conn_close(rl_conn *c, int graceful) {
  if (uv_is_closing((uv_handle_t *)&c->tcp))
    return;
  rl_server *s = c->server;
  if (graceful) {
    c->want_close = 1;
    if (c->state != RL_CLOSING) {
      c->state = RL_CLOSING;
      rl__body_release(c);
      if (c->channel)
        rl__channel_detach(c->channel, 0, NULL);
    }
    if (c->out.len || c->nwrites) {
      rl__mark_dirty(c);
      return;
    }
    if (!c->lingering)
      start_linger(c);
    return;
  }
  c->state = RL_CLOSING;
  if (c->task) {
    c->task->data = NULL;
    c->task = NULL;
    s->inflight--;
  }
  rl__body_release(c);
  if (c->channel)
    rl__channel_detach(c->channel, 0, NULL);
  rl__unmark_dirty(c);
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->next = c->prev = NULL;
  s->nconns--;
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->tcp, conn_closed);
  uv_close((uv_handle_t *)&c->timer, conn_closed);
}

static void conn_timer_cb(uv_timer_t *t) {
  rl_conn *c = t->data;
  if (c->deadline == 0)
    return; /* disarmed */
  uint64_t now = uv_now(c->ctx->loop);
  if (now < c->deadline) {
    uv_timer_start(t, conn_timer_cb, c->deadline - now, 0); /* not yet */
    c->timer_due = c->deadline;
    return;
  }
  c->deadline = 0;
  if (c->lingering || c->out_blocked || c->state != RL_READING) {
    rl__conn_close(c, 0);
    return;
  }
  if (!c->in_message && c->in_pos == c->in.len && c->url.len == 0) {
    rl__conn_close(c, 0); /* idle keep-alive connection */
    return;
  }
  c->keep_alive = 0;
  rl__respond_error(c, 408, "request header timeout");
}

/* ---- accepting
 * ---------------------------------------------------------------- */

static void on_connection(uv_stream_t *ls, int status) {
  rl_server *s = ls->data;
  if (status < 0 || s->stopping)
    return;
  rl_conn *c = calloc(1, sizeof *c);
  if (c == NULL)
    return;
  c->server = s;
  c->ctx = s->ctx;
  c->id = ++s->ctx->next_conn_id;
  c->bodys.ref = LUA_NOREF;
  uv_tcp_init(s->ctx->loop, &c->tcp);
  uv_timer_init(s->ctx->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->open_handles = 2;
  c->ctx->handles += 2;
  c->next = s->conns;
  if (s->conns)
    s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
    rl__conn_close(c, 0);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
    if (ss.ss_family == AF_INET6) {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
      uv_ip6_name(a, c->remote, sizeof c->remote);
      c->remote_port = ntohs(a->sin6_port);
    } else {
      struct sockaddr_in *a = (struct sockaddr_in *)&ss;
      uv_ip4_name(a, c->remote, sizeof c->remote);
      c->remote_port = ntohs(a->sin_port);
    }
  }
  llhttp_init(&c->parser, HTTP_REQUEST, &settings);
  c->parser.data = c;
  c->proxy_pending = s->cfg.proxy_protocol != 0;
  c->state = RL_READING;
  c->keep_alive = 1;
  arm_timer(c, TIMER_HEADER);
  start_reading(c);
}

int rl__server_start(rl_server *s) {
  static int settings_ready;
  if (!settings_ready) {
    llhttp_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_header_field = on_header_field;
    settings.on_header_field_complete = on_header_field_complete;
    settings.on_header_value = on_header_value;
    settings.on_header_value_complete = on_header_value_complete;
    settings.on_chunk_header = on_chunk_header;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
    settings_ready = 1;
  }
  rl_ctx *ctx = s->ctx;
  struct sockaddr_storage addr;
  int r;
  if (strchr(s->cfg.ip, ':'))
    r = uv_ip6_addr(s->cfg.ip, s->cfg.port, (struct sockaddr_in6 *)&addr);
  else
    r = uv_ip4_addr(s->cfg.ip, s->cfg.port, (struct sockaddr_in *)&addr);
  if (r)
    return r;
  uv_tcp_init(ctx->loop, &s->listener);
  uv_timer_init(ctx->loop, &s->stop_timer);
  s->listener.data = s;
  s->stop_timer.data = s;
  s->open_handles = 2;
  ctx->handles += 2;
  s->next = ctx->servers;
  ctx->servers = s;
  if ((r = uv_tcp_bind(&s->listener, (struct sockaddr *)&addr, 0)) ||
      (r = uv_listen((uv_stream_t *)&s->listener, 511, on_connection))) {
    rl__server_stop(s, 0);
    return r;
  }
  int len = sizeof addr;
  uv_tcp_getsockname(&s->listener, (struct sockaddr *)&addr, &len);
  s->port = addr.ss_family == AF_INET6
                ? ntohs(((struct sockaddr_in6 *)&addr)->sin6_port)
                : ntohs(((struct sockaddr_in *)&addr)->sin_port);
  snprintf(s->name, sizeof s->name, "%s", s->cfg.ip);
  return 0;
}

/* ---- stopping
 * ----------------------------------------------------------------- */

static void server_handle_closed(uv_handle_t *h) {
  rl_server *s = h->data;
  s->ctx->handles--;
  s->open_handles--;
  server_maybe_closed(s);
}

/* Every handle and connection of a stopping server is gone: drop the
 * userdata's anchor (it may then be collected). */
static void server_maybe_closed(rl_server *s) {
  if (!s->stopping || s->nconns > 0)
    return;
  if (!uv_is_closing((uv_handle_t *)&s->stop_timer)) {
    uv_close((uv_handle_t *)&s->stop_timer, server_handle_closed);
    return;
  }
  if (s->open_handles > 0)
    return;
  if (s->self_ref == LUA_NOREF)
    return;
  rl_ctx *ctx = s->ctx;
  int ref = s->self_ref;
  s->self_ref = LUA_NOREF;
  if (!ctx->closing)
    luaL_unref(ctx->L, LUA_REGISTRYINDEX, ref);
  rl__server_userdata_closed(s);
}

static void stop_timer_cb(uv_timer_t *t) {
  rl_server *s = t->data;
  while (s->conns)
    rl__conn_close(s->conns, 0);
  uv_close((uv_handle_t *)&s->stop_timer, server_handle_closed);
}

void rl__server_stop(rl_server *s, uint64_t timeout_ms) {
  rl_ctx *ctx = s->ctx;
  if (!s->stopping) {
    s->stopping = 1;
    for (rl_server **pp = &ctx->servers; *pp; pp = &(*pp)->next) {
      if (*pp == s) {
        *pp = s->next;
        break;
      }
    }
    s->next = NULL;
    uv_close((uv_handle_t *)&s->listener, server_handle_closed);
    /* idle connections close now; busy ones finish their response */
    rl_conn *c = s->conns;
    while (c) {
      rl_conn *next = c->next;
      if (ctx->closing)
        rl__conn_close(c, 0);
      else if (c->ws)
        rl__ws_close(c, 1001, "server stopping", 15); /* going away */
      else if (c->channel)
        rl__conn_close(c, 1); /* streams end now, on_close fires */
      else if (c->state == RL_READING && !c->in_message)
        rl__conn_close(c, 1);
      else
        c->keep_alive = 0;
      c = next;
    }
  }
  if (uv_is_closing((uv_handle_t *)&s->stop_timer))
    return;
  if (timeout_ms == 0 || s->nconns == 0)
    stop_timer_cb(&s->stop_timer);
  else
    uv_timer_start(&s->stop_timer, stop_timer_cb, timeout_ms, 0);
}
