/* Servers (server.h): a listener whose connections speak HTTP, the Lua
 * handler run for each request in a task of its own, the server userdata
 * (run_server, stop, port) and as_channel's way from a handler's task to
 * the request it answers. It registers HTTP's callbacks and turns them into
 * calls downward: to ring.c for bodies, to channel.c for streams.
 *
 * Owns: each rl_server (freed once closed and its userdata collected) and
 * the handler's task of each exchange. May call: ring.h, channel.h, http.h,
 * listen.h, ctx.h, conn.h, base.h, Lua. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include "server.h"
#include "sink.h"

typedef struct {
  char ip[64];
  int port;
  int thread;
  int queue_size;
  int max_connections; /* open connections before a new one gets 503 */
  size_t max_ws;
  rl_http_cfg http;
  const char *access_log; /* the path given as access_log (the options
                             table's string: valid during run_server) */
  int log_fn;             /* access_log is a function */
  int origins;            /* origins is given */
} rl_config;

typedef struct rl_server rl_server;

struct rl_server {
  rl_ctx *ctx;
  rl_listener listener; /* data -> server */
  uv_timer_t stop_timer;
  rl_config cfg;
  int port;        /* bound port */
  int handler_ref; /* registry: the handler function */
  int self_ref;    /* registry: the userdata, while not fully closed */
  int stopped_ref; /* registry: stop's on_stopped functions (an array) */
  int inflight;    /* handlers started and not finished */
  int stopping;
  int timer_open;    /* stop_timer is not closed yet */
  int listener_done; /* the listener and its connections are gone */
  int closed;        /* all of it is closed */
  rl_server *next;   /* ctx->servers */
  int ud_gone;       /* the userdata was collected: free on close */
  char name[64];     /* ip used as server_name without a Host header */
  int origins_ref;   /* registry: the origins option, or LUA_NOREF */
  rl_sink *log;      /* access_log = path: the file's lines */
  int log_ref;       /* access_log = function: registry ref, or LUA_NOREF */
};

typedef struct {
  rl_server *s; /* owned: freed by __gc once closed, or on close after gc */
} rl_server_ud;

/* ---- exchanges: HTTP's callbacks ----------------------------------------- */

/* respond_p(exchange, response, request) -> nil, or the reason it is not
 * valid */
static int respond_p(lua_State *L) {
  rl_exchange *x = lua_touserdata(L, 1);
  const char *err = NULL;
  if (rl__respond(x, L, 2, 3, 0, &err) != 0) {
    lua_pushstring(L, err);
    return 1;
  }
  return 0;
}

/* The exchange no longer waits for its handler's task: the task ends
 * without an answer to give (handler_done sees no exchange). */
static void let_task_go(rl_exchange *x) {
  x->task->data = NULL;
  x->task = NULL;
  ((rl_server *)x->server)->inflight--;
}

static void handler_done(rl_task *t, lua_State *co, int status, int nres) {
  rl_exchange *x = t->data;
  if (x == NULL)
    return; /* the connection went away meanwhile */
  rl_server *s = x->server;
  x->task = NULL;
  x->req = NULL; /* no longer anchored */
  s->inflight--;
  const char *err = NULL;
  if (status != LUA_OK) {
    rl__log("handler error: %s", lua_tostring(co, -1));
    rl__http_error(&x->http, 500, NULL);
    return;
  }
  int reqidx = lua_gettop(co); /* dispatch_k's, after the results */
  nres--;
  int idx = reqidx - nres;
  if (nres < 1 || !lua_istable(co, idx)) {
    rl__log("handler error: returned %s, expected a response table",
            nres < 1 ? "nothing" : luaL_typename(co, idx));
    rl__http_error(&x->http, 500, NULL);
    return;
  }
  /* A plain response table is read and written without raising; one
   * whose reading may raise (metamethods, a body that makes Lua values) is
   * read under a pcall of its own, so that a bad table is a 500 and never
   * a hung connection */
  int r = lua_checkstack(co, 8) ? rl__respond(x, co, idx, 0, 1, &err) : 1;
  if (r > 0) {
    lua_pushcfunction(co, respond_p);
    lua_pushlightuserdata(co, x);
    lua_pushvalue(co, idx);
    lua_pushvalue(co, reqidx);
    int st = lua_pcall(co, 3, 1, 0); /* nil, the reason, or an error */
    /* (a number is not made a string here: that would allocate) */
    err = lua_type(co, -1) == LUA_TSTRING ? lua_tostring(co, -1) : NULL;
    if (st != LUA_OK && err == NULL)
      err = "(an error that is not a string)";
  }
  if (err) {
    rl__log("bad response: %s", err);
    rl__http_error(&x->http, 500, NULL);
  }
  if (r > 0)
    lua_pop(co, 1);
}

/* Does `origins` (at oidx: an array of origins, "*" among them for any, or
 * a function(origin, req) returning true to allow) allow the WebSocket
 * request at reqidx? A request with no Origin header is allowed: browsers
 * send one with every WebSocket, so its absence is not a page of another
 * site (a function sees origin nil and may refuse it). Origins compare
 * without regard to case. */
static int origin_allowed(rl_http *h, lua_State *L, int oidx, int reqidx) {
  int top = lua_gettop(L), ok = 0;
  size_t ol = 0;
  const char *origin = NULL;
  /* from the wire (a handler's edits to req.headers do not count), as
   * req.headers would have it: repeats joined with ", ", which is then no
   * one origin */
  if (rl__http_header(h, "origin", 6, &origin, &ol) > 1) {
    size_t n;
    rl_header *hd = rl__http_headers(h, &n);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0, first = 1; i < n; i++) {
      if (hd[i].name_len != 6 ||
          memcmp(h->hdrs.base + hd[i].name, "origin", 6) != 0)
        continue;
      if (!first)
        luaL_addstring(&b, ", ");
      luaL_addlstring(&b, h->hdrs.base + hd[i].value, hd[i].value_len);
      first = 0;
    }
    luaL_pushresult(&b);
    origin = lua_tolstring(L, -1, &ol);
  }
  if (lua_isfunction(L, oidx)) {
    lua_pushvalue(L, oidx);
    if (origin)
      lua_pushlstring(L, origin, ol);
    else
      lua_pushnil(L);
    lua_pushvalue(L, reqidx);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
      const char *m = lua_tostring(L, -1);
      rl__log("origins function: %s (the upgrade is refused)",
              m ? m : "(an error that is not a string)");
    } else {
      ok = lua_toboolean(L, -1);
    }
  } else if (origin == NULL) {
    ok = 1;
  } else {
    lua_Integer n = (lua_Integer)lua_rawlen(L, oidx);
    for (lua_Integer i = 1; i <= n && !ok; i++) {
      size_t al;
      const char *a = lua_rawgeti(L, oidx, i) == LUA_TSTRING
                          ? lua_tolstring(L, -1, &al)
                          : 0;
      ok = a && ((al == 1 && a[0] == '*') ||
                 (al == ol && strncasecmp(a, origin, ol) == 0));
      lua_pop(L, 1);
    }
  }
  lua_settop(L, top);
  return ok;
}

/* The handler's results, then the request: what the coroutine returns. */
static int dispatch_k(lua_State *L, int status, lua_KContext k) {
  (void)status;
  (void)k;
  luaL_checkstack(L, 1, NULL); /* the results may fill the stack */
  lua_pushvalue(L, 2);
  return lua_gettop(L) - 2;
}

/* The handler's task, first thing in its coroutine (whose resume protects
 * it): make the request and call the handler with it. The request stays
 * at 2, below the call, until the coroutine returns it after the
 * handler's results: that anchors it while the handler runs (as_channel
 * knows it by its address) and gives it to handler_done. */
static int dispatch_run(lua_State *L) {
  rl_exchange *x = lua_touserdata(L, 1);
  rl_server *s = x->server;
  rl__push_request(L, x, s->port, s->name);
  if (x->http.websocket && s->origins_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->origins_ref);
    int allowed = origin_allowed(&x->http, L, 3, 2);
    lua_pop(L, 1);
    if (x->task == NULL)
      return 0;     /* the origins function closed the connection */
    if (!allowed) { /* cross-site WebSocket hijacking: before the handler */
      let_task_go(x);
      rl__http_error(&x->http, 403, "origin not allowed");
      return 0;
    }
  }
  x->req = lua_topointer(L, 2);
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->handler_ref);
  lua_pushvalue(L, 2);
  lua_callk(L, 1, LUA_MULTRET, 0, dispatch_k);
  return dispatch_k(L, LUA_OK, 0);
}

static void on_request(rl_http *h) {
  rl_exchange *x = (rl_exchange *)h;
  rl_server *s = x->server;
  if (s->stopping)
    h->keep_alive = 0;
  if (s->inflight >= s->cfg.queue_size) {
    rl__http_error(h, 503, "too many requests in flight");
    return;
  }
  s->inflight++;
  int st = rl__task_run(x->ctx, x->ctx->L, 0, dispatch_run, x, handler_done, x,
                        &x->task);
  if (st < 0)
    s->inflight--; /* no task could be made: out of memory */
  if (st != LUA_OK)
    rl__conn_close(h->conn); /* this connection cannot go on */
}

static void on_written(rl_http *h) {
  rl_exchange *x = (rl_exchange *)h;
  if (h->state == RL_STREAM && h->stream)
    rl__channel_written(h->stream);
  else if (h->state == RL_BODY)
    rl__body_pump(x);
}

static void on_close(rl_http *h) {
  rl_exchange *x = (rl_exchange *)h;
  if (x->task)
    let_task_go(x);
  rl__body_release(x);
  if (h->stream)
    rl__channel_detach(h->stream); /* on_close fires */
}

/* ---- the access log ------------------------------------------------------ */

/* The value of request header `name` (lower case), or NULL. */
static const char *header(rl_http *h, const char *name, size_t nl,
                          size_t *len) {
  size_t n;
  rl_header *hs = rl__http_headers(h, &n);
  for (size_t i = 0; i < n; i++)
    if (hs[i].name_len == nl &&
        memcmp(h->hdrs.base + hs[i].name, name, nl) == 0) {
      *len = hs[i].value_len;
      return h->hdrs.base + hs[i].value;
    }
  return NULL;
}

/* Append p[0..n) to w escaped as nginx escapes a log field: '"', '\' and
 * bytes outside printable ASCII become \xHH. Returns the end. */
static char *put_escaped(char *w, const char *p, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)p[i];
    if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\') {
      *w++ = '\\';
      *w++ = 'x';
      *w++ = hex[ch >> 4];
      *w++ = hex[ch & 15];
    } else {
      *w++ = (char)ch;
    }
  }
  return w;
}

/* One line in the combined log format (Apache's and nginx's default):
 * ADDR - - [TIME] "METHOD TARGET HTTP/1.x" STATUS BYTES "REFERER" "AGENT"
 * A request cut short before any answer is logged with 499 (nginx's). */
static void log_line(rl_server *s, rl_http *h, int status, uint64_t bytes) {
  size_t rl = 0, al = 0;
  const char *ref = header(h, "referer", 7, &rl);
  const char *agent = header(h, "user-agent", 10, &al);
  const char *method = llhttp_method_name((llhttp_method_t)h->parser.method);
  size_t ml = strlen(method), ul = h->url.len;
  if (ul == 0)
    method = "", ml = 0;
  /* escaping at most quadruples a field */
  size_t addr_len = strlen(h->conn->remote);
  const char *time = rl__sink_clf_time(s->log);
  size_t tl = strlen(time);
  size_t need = 64 + tl + 4 * (addr_len + ml + ul + rl + al);
  char *line = rl__sink_reserve(s->log, need);
  if (line == NULL)
    return;
  char *w = put_escaped(line, h->conn->remote, addr_len); /* a PROXY header's */
  memcpy(w, " - - [", 6);
  w += 6;
  memcpy(w, time, tl);
  w += tl;
  memcpy(w, "] \"", 3);
  w += 3;
  if (ul) {
    w = put_escaped(w, method, ml);
    *w++ = ' ';
    w = put_escaped(w, h->url.base, ul);
    memcpy(w, " HTTP/1.1", 9);
    w[6] = (char)('0' + h->parser.http_major % 10);
    w[8] = (char)('0' + h->parser.http_minor % 10);
    w += 9;
  } else {
    *w++ = '-';
  }
  memcpy(w, "\" ", 2);
  w = rl__put_uint(w + 2, (uint64_t)(status ? status : 499));
  *w++ = ' ';
  w = rl__put_uint(w, bytes); /* with the quotes: at most 2 + 3 + 1 + 20 + 2 */
  memcpy(w, " \"", 2);
  w += 2;
  w = ref ? put_escaped(w, ref, rl) : (*w++ = '-', w);
  memcpy(w, "\" \"", 3);
  w += 3;
  w = agent ? put_escaped(w, agent, al) : (*w++ = '-', w);
  memcpy(w, "\"\n", 2);
  w += 2;
  rl__sink_commit(s->log, (size_t)(w - line));
}

typedef struct {
  rl_server *s;
  rl_http *h;
  int status;
  uint64_t bytes;
} rl_log_args;

/* access_log's function, called with one entry table; its errors are
 * logged and go no further. */
static int log_fn_p(lua_State *L) {
  rl_log_args *a = lua_touserdata(L, 1);
  rl_http *h = a->h;
  lua_rawgeti(L, LUA_REGISTRYINDEX, a->s->log_ref);
  lua_createtable(L, 0, 10);
  lua_pushstring(L, h->conn->remote);
  lua_setfield(L, -2, "remote_addr");
  lua_pushinteger(L, (lua_Integer)time(NULL));
  lua_setfield(L, -2, "time");
  if (h->url.len) {
    const char *u = h->url.base, *q = memchr(u, '?', h->url.len);
    lua_pushstring(L, llhttp_method_name((llhttp_method_t)h->parser.method));
    lua_setfield(L, -2, "method");
    lua_pushlstring(L, u, q ? (size_t)(q - u) : h->url.len);
    lua_setfield(L, -2, "uri");
    if (q) {
      lua_pushlstring(L, q + 1, h->url.len - (size_t)(q - u) - 1);
      lua_setfield(L, -2, "query_string");
    }
    lua_pushfstring(L, "HTTP/%d.%d", h->parser.http_major % 10,
                    h->parser.http_minor % 10);
    lua_setfield(L, -2, "protocol");
  }
  lua_pushinteger(L, a->status ? a->status : 499);
  lua_setfield(L, -2, "status");
  lua_pushinteger(L, (lua_Integer)a->bytes);
  lua_setfield(L, -2, "bytes");
  size_t n;
  const char *v;
  if ((v = header(h, "referer", 7, &n)) != NULL) {
    lua_pushlstring(L, v, n);
    lua_setfield(L, -2, "referer");
  }
  if ((v = header(h, "user-agent", 10, &n)) != NULL) {
    lua_pushlstring(L, v, n);
    lua_setfield(L, -2, "user_agent");
  }
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    const char *m = lua_tostring(L, -1);
    rl__log("access_log function: %s", m ? m
                                         : "(an error that is not a "
                                           "string)");
  }
  return 0;
}

static void on_done(rl_http *h, int status, uint64_t bytes) {
  rl_server *s = ((rl_exchange *)h)->server;
  if (s->log) {
    log_line(s, h, status, bytes);
  } else if (s->log_ref != LUA_NOREF && !s->ctx->closing) {
    rl_log_args a = {s, h, status, bytes};
    rl__protect(s->ctx, s->ctx->L, log_fn_p, &a);
  }
}

static const rl_http_cbs server_cbs = {on_request, on_written, on_close, NULL};
static const rl_http_cbs logged_cbs = {on_request, on_written, on_close,
                                       on_done};

static void on_accept(rl_listener *l, rl_conn *c) {
  rl_server *s = l->data;
  rl_exchange *x = c->data;
  x->ctx = s->ctx;
  x->server = s;
  x->body.ref = LUA_NOREF;
  x->max_ws = s->cfg.max_ws;
  rl__http_start(&x->http, c, &s->cfg.http,
                 s->log || s->log_ref != LUA_NOREF ? &logged_cbs : &server_cbs);
}

/* Past max_connections: a 503 (logged as any answer) and the connection
 * closes gently, so the client reads why instead of hanging or a reset. */
static void on_refuse(rl_listener *l, rl_conn *c) {
  on_accept(l, c);
  rl_http *h = &((rl_exchange *)c->data)->http;
  h->keep_alive = 0;
  rl__http_error(h, 503, "too many connections");
}

/* ---- as_channel ---------------------------------------------------------- */

int rl__l_as_channel(lua_State *L) {
  /* which exchange is this request on? as_channel is called by the
   * handler, whose task knows its exchange and current request */
  rl_task *t = rl__current_task(L);
  rl_exchange *x = t && t->done == handler_done ? t->data : NULL;
  if (x && (x->req == NULL || x->req != lua_topointer(L, 1)))
    x = NULL; /* the handler's task anchors x->req: no other has its address */
  if (x && x->http.websocket && lua_istable(L, 2) &&
      lua_getfield(L, 2, "origins") != LUA_TNIL) {
    if (!lua_istable(L, -1) && !lua_isfunction(L, -1))
      return luaL_error(L, "as_channel: option 'origins' must be an array "
                           "of origins or a function");
    /* refused: a 403, no channel */
    if (!origin_allowed(&x->http, L, lua_gettop(L), 1)) {
      lua_createtable(L, 0, 3);
      lua_pushinteger(L, 403);
      lua_setfield(L, -2, "status");
      lua_createtable(L, 0, 1);
      lua_pushliteral(L, "text/plain; charset=utf-8");
      lua_setfield(L, -2, "content-type");
      lua_setfield(L, -2, "headers");
      lua_pushliteral(L, "403 Forbidden: origin not allowed\n");
      lua_setfield(L, -2, "body");
      return 1;
    }
    lua_pop(L, 1);
  }
  return rl__channel_new(L, x ? &x->http : NULL);
}

/* ---- starting and stopping ----------------------------------------------- */

static void server_closed(rl_server *s);
static void stop_timer_closed(uv_handle_t *h);

/* Every handle and connection of a stopping server is gone: drop the
 * userdata's anchor (it may then be collected). */
static void maybe_closed(rl_server *s) {
  if (!s->stopping || !s->listener_done || s->closed)
    return;
  if (s->timer_open) {
    if (!uv_is_closing((uv_handle_t *)&s->stop_timer))
      uv_close((uv_handle_t *)&s->stop_timer, stop_timer_closed);
    return;
  }
  server_closed(s);
}

static void listener_closed(rl_listener *l) {
  rl_server *s = l->data;
  s->listener_done = 1;
  maybe_closed(s);
}

static void stop_timer_closed(uv_handle_t *h) {
  rl_server *s = h->data;
  s->ctx->handles--;
  s->timer_open = 0;
  maybe_closed(s);
}

/* Call stop's on_stopped functions, each in a task of its own. */
static int stopped_p(lua_State *L) {
  rl_server *s = lua_touserdata(L, 1);
  rl_ctx *ctx = s->ctx;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->stopped_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, s->stopped_ref);
  s->stopped_ref = LUA_NOREF;
  lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    rl__call_cb(ctx, L, 0, "on_stopped");
  }
  return 0;
}

static void server_closed(rl_server *s) {
  s->closed = 1;
  rl_ctx *ctx = s->ctx;
  if (s->log) {
    rl__sink_close(s->log); /* what is pending is written, then freed */
    s->log = NULL;
  }
  if (s->log_ref != LUA_NOREF) {
    if (!ctx->closing)
      luaL_unref(ctx->L, LUA_REGISTRYINDEX, s->log_ref);
    s->log_ref = LUA_NOREF;
  }
  if (s->origins_ref != LUA_NOREF) {
    if (!ctx->closing)
      luaL_unref(ctx->L, LUA_REGISTRYINDEX, s->origins_ref);
    s->origins_ref = LUA_NOREF;
  }
  if (s->stopped_ref != LUA_NOREF && !ctx->closing)
    rl__protect(ctx, ctx->L, stopped_p, s);
  if (s->self_ref != LUA_NOREF) {
    int ref = s->self_ref;
    s->self_ref = LUA_NOREF;
    if (!ctx->closing)
      luaL_unref(ctx->L, LUA_REGISTRYINDEX, ref);
  }
  if (s->ud_gone)
    free(s);
}

static void stop_timer_cb(uv_timer_t *t) {
  rl_server *s = t->data;
  while (s->listener.conns.head)
    rl__conn_close(s->listener.conns.head);
  if (!uv_is_closing((uv_handle_t *)&s->stop_timer))
    uv_close((uv_handle_t *)&s->stop_timer, stop_timer_closed);
}

static void server_stop(rl_server *s, uint64_t timeout_ms) {
  rl_ctx *ctx = s->ctx;
  if (!s->stopping) {
    s->stopping = 1;
    rl_server *prev = NULL, *it = ctx->servers;
    while (it && it != s) {
      prev = it;
      it = it->next;
    }
    if (it && prev)
      prev->next = s->next;
    else if (it)
      ctx->servers = s->next;
    s->next = NULL;
    rl__listener_close(&s->listener);
    /* idle connections close now; busy ones finish their response */
    rl_conn *c = s->listener.conns.head;
    while (c) {
      rl_conn *next = c->next;
      if (ctx->closing)
        rl__conn_close(c);
      else
        rl__conn_goaway(c);
      c = next;
    }
  }
  if (uv_is_closing((uv_handle_t *)&s->stop_timer))
    return;
  if (timeout_ms == 0 || s->listener.conns.open == 0)
    stop_timer_cb(&s->stop_timer);
  else
    uv_timer_start(&s->stop_timer, stop_timer_cb, timeout_ms, 0);
}

void rl__server_stop_all(rl_ctx *ctx, uint64_t timeout_ms) {
  while (ctx->servers)
    server_stop(ctx->servers, timeout_ms);
}

static int server_start(rl_server *s) {
  rl_ctx *ctx = s->ctx;
  uv_timer_init(ctx->io.loop, &s->stop_timer);
  s->stop_timer.data = s;
  s->timer_open = 1;
  ctx->handles++;
  s->next = ctx->servers;
  ctx->servers = s;
  s->listener.ext = sizeof(rl_exchange);
  s->listener.on_accept = on_accept;
  s->listener.on_refuse = on_refuse;
  s->listener.max_conns = s->cfg.max_connections;
  s->listener.on_closed = listener_closed;
  s->listener.data = s;
  int r = rl__listen(&s->listener, &ctx->io, s->cfg.ip, s->cfg.port);
  if (r) {
    server_stop(s, 0);
    return r;
  }
  s->port = s->listener.port;
  snprintf(s->name, sizeof s->name, "%s", s->cfg.ip);
  return 0;
}

/* ---- options ------------------------------------------------------------- */

static const char *const pp_names[] = {"disable", "enable", "optional", NULL};

/* ---- options
 * ----------------------------------------------------------------- */

static lua_Integer opt_int(lua_State *L, const char *k, lua_Integer lo,
                           lua_Integer hi) {
  if (!lua_isinteger(L, -1)) {
    if (lua_type(L, -1) == LUA_TNUMBER) {
      lua_Number n = lua_tonumber(L, -1);
      if (n == (lua_Number)(lua_Integer)n && n >= (lua_Number)lo &&
          n <= (lua_Number)hi)
        return (lua_Integer)n;
    }
    luaL_error(L, "run_server: option '%s' must be an integer, got %s", k,
               luaL_typename(L, -1));
  }
  lua_Integer v = lua_tointeger(L, -1);
  if (v < lo || v > hi)
    luaL_error(L, "run_server: option '%s' must be from %I to %I", k, lo, hi);
  return v;
}

/* max_connections' default: what the process's descriptor limit allows,
 * less a reserve (an eighth, from 16 to 1024) for files, body files, the
 * log and what the app opens. */
static int default_max_connections(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
      rl.rlim_cur > (rlim_t)1 << 30)
    return 1 << 30;
  rlim_t reserve = rl.rlim_cur / 8;
  reserve = reserve < 16 ? 16 : reserve > 1024 ? 1024 : reserve;
  return rl.rlim_cur > reserve ? (int)(rl.rlim_cur - reserve) : 1;
}

/* Read run_server's options (table at idx) into cfg. Unknown names and
 * wrong types raise, naming the option. */
static void read_config(lua_State *L, int idx, rl_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  strcpy(cfg->ip, "0.0.0.0"); /* ip: string, "0.0.0.0" */
  cfg->port = 8090;           /* port: 0..65535, 8090; 0 picks one */
  cfg->thread = 1;            /* thread: workers, 1 */
  cfg->queue_size = 20480;    /* queue_size: requests in flight */
  cfg->max_connections = default_max_connections();
  cfg->http.max_body = 8388608;     /* max_body: bytes, else 413 */
  cfg->http.body_file = 0;          /* body_file: bodies over it go to a
                                       temporary file; 0 = never */
  cfg->max_ws = 4194304;            /* max_ws: WebSocket message bytes */
  cfg->http.max_line = 4096;        /* max_line: request line (414), header
                                       line (431) */
  cfg->http.proxy_protocol = 0;     /* disable|enable|optional */
  cfg->http.idle_timeout = 60000;   /* idle_timeout: ms, 0 = none */
  cfg->http.header_timeout = 30000; /* header_timeout: ms, 0 = none */
  if (lua_isnoneornil(L, idx))
    return;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "run_server: option names must be strings");
    const char *k = lua_tostring(L, -2);
    if (strcmp(k, "ip") == 0) {
      size_t n = 0;
      const char *v =
          lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
      if (v == NULL || n >= sizeof cfg->ip)
        luaL_error(L, "run_server: option 'ip' must be an address string");
      memcpy(cfg->ip, v, n + 1);
    } else if (strcmp(k, "port") == 0) {
      cfg->port = (int)opt_int(L, k, 0, 65535);
    } else if (strcmp(k, "thread") == 0) {
      cfg->thread = (int)opt_int(L, k, 1, 1024);
    } else if (strcmp(k, "max_connections") == 0) {
      cfg->max_connections = (int)opt_int(L, k, 1, 1 << 30);
    } else if (strcmp(k, "queue_size") == 0) {
      cfg->queue_size = (int)opt_int(L, k, 1, 1 << 30);
    } else if (strcmp(k, "max_body") == 0) {
      cfg->http.max_body = (size_t)opt_int(L, k, 0, (lua_Integer)1 << 40);
    } else if (strcmp(k, "body_file") == 0) {
      cfg->http.body_file = (size_t)opt_int(L, k, 0, (lua_Integer)1 << 40);
    } else if (strcmp(k, "max_ws") == 0) {
      cfg->max_ws = (size_t)opt_int(L, k, 1, (lua_Integer)1 << 40);
    } else if (strcmp(k, "max_line") == 0) {
      cfg->http.max_line = (size_t)opt_int(L, k, 64, 1 << 20);
    } else if (strcmp(k, "idle_timeout") == 0) {
      cfg->http.idle_timeout = (uint64_t)opt_int(L, k, 0, (lua_Integer)1 << 40);
    } else if (strcmp(k, "header_timeout") == 0) {
      cfg->http.header_timeout =
          (uint64_t)opt_int(L, k, 0, (lua_Integer)1 << 40);
    } else if (strcmp(k, "proxy_protocol") == 0) {
      const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
      int i = 0;
      while (pp_names[i] && strcmp(pp_names[i], v) != 0)
        i++;
      if (pp_names[i] == NULL)
        luaL_error(L, "run_server: option 'proxy_protocol' must be "
                      "\"disable\", \"enable\" or \"optional\"");
      cfg->http.proxy_protocol = i;
    } else if (strcmp(k, "origins") == 0) {
      if (!lua_istable(L, -1) && !lua_isfunction(L, -1))
        luaL_error(L, "run_server: option 'origins' must be an array of "
                      "origins or a function");
      cfg->origins = 1;
    } else if (strcmp(k, "access_log") == 0) {
      int t = lua_type(L, -1);
      if (t == LUA_TFUNCTION)
        cfg->log_fn = 1;
      else if (t == LUA_TSTRING && lua_rawlen(L, -1) > 0)
        cfg->access_log = lua_tostring(L, -1);
      else if (t != LUA_TBOOLEAN || lua_toboolean(L, -1))
        luaL_error(L, "run_server: option 'access_log' must be a file path "
                      "(\"-\" for standard output), a function or false");
    } else {
      luaL_error(L, "run_server: unknown option '%s'", k);
    }
    lua_pop(L, 1);
  }
}

/* ---- the server userdata ------------------------------------------------ */

static rl_server *check_server(lua_State *L) {
  rl_server_ud *u = luaL_checkudata(L, 1, RL_SERVER_MT);
  return u->s;
}

int rl__l_run_server(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  rl_config cfg;
  read_config(L, 2, &cfg);
  rl_ctx *ctx = rl__ctx(L);
  rl_sink *log = NULL;
  if (cfg.access_log) {
    char err[300];
    log = rl__sink_open(&ctx->io, cfg.access_log, err, sizeof err);
    if (log == NULL)
      return luaL_error(L, "run_server: option 'access_log': %s", err);
  }
  rl__ring_open(L, ctx);
  rl_server_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->s = NULL;
  luaL_setmetatable(L, RL_SERVER_MT);
  rl_server *s = calloc(1, sizeof *s);
  if (s == NULL) {
    if (log)
      rl__sink_close(log);
    return luaL_error(L, "out of memory");
  }
  u->s = s;
  s->ctx = ctx;
  s->cfg = cfg;
  s->cfg.access_log = NULL; /* not ours to keep */
  s->handler_ref = s->self_ref = s->stopped_ref = s->log_ref = LUA_NOREF;
  s->log = log;
  if (cfg.log_fn) {
    lua_getfield(L, 2, "access_log");
    s->log_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  s->origins_ref = LUA_NOREF;
  if (cfg.origins) {
    lua_getfield(L, 2, "origins");
    s->origins_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  lua_pushvalue(L, 1);
  s->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  s->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  int r = server_start(s);
  if (r != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s (%s port %d)", uv_err_name(r), uv_strerror(r),
                    cfg.ip, cfg.port);
    lua_pushstring(L, uv_err_name(r));
    return 3;
  }
  return 1;
}

static int l_server_stop(lua_State *L) {
  rl_server *s = check_server(L);
  lua_Integer timeout = 100;
  int on_stopped = 0;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      const char *k =
          lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
      if (strcmp(k, "timeout") == 0) {
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0)
          return luaL_error(L, "stop: option 'timeout' must be an integer "
                               ">= 0 (ms)");
        timeout = lua_tointeger(L, -1);
      } else if (strcmp(k, "on_stopped") == 0) {
        if (!lua_isfunction(L, -1))
          return luaL_error(L, "stop: option 'on_stopped' must be a "
                               "function");
        on_stopped = 1;
      } else {
        return luaL_error(L, "stop: unknown option '%s'", k);
      }
      lua_pop(L, 1);
    }
  }
  if (on_stopped && !s->closed) { /* once every connection is gone */
    if (s->stopped_ref == LUA_NOREF) {
      lua_newtable(L);
      s->stopped_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->stopped_ref);
    lua_getfield(L, 2, "on_stopped");
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pop(L, 1);
  } else if (on_stopped) { /* already: call it soon, as if it had waited */
    lua_getfield(L, 2, "on_stopped");
    rl__call_cb(s->ctx, L, 0, "on_stopped");
  }
  int was = s->stopping;
  if (!was)
    server_stop(s, (uint64_t)timeout);
  lua_pushboolean(L, !was);
  return 1;
}

static int server_index(lua_State *L) {
  rl_server *s = check_server(L);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "port") == 0) {
    lua_pushinteger(L, s->port);
    return 1;
  }
  if (strcmp(k, "ip") == 0) {
    lua_pushstring(L, s->cfg.ip);
    return 1;
  }
  if (strcmp(k, "stop") == 0) {
    lua_pushcfunction(L, l_server_stop);
    return 1;
  }
  if (strcmp(k, "status") == 0) {
    lua_pushstring(L, s->closed     ? "stopped"
                      : s->stopping ? "stopping"
                                    : "running");
    return 1;
  }
  return 0;
}

static int server_tostring(lua_State *L) {
  rl_server *s = check_server(L);
  lua_pushfstring(L, "ringlet.server (%s:%d, %s)", s->cfg.ip, s->port,
                  s->closed     ? "stopped"
                  : s->stopping ? "stopping"
                                : "running");
  return 1;
}

static int server_gc(lua_State *L) {
  rl_server_ud *u = luaL_checkudata(L, 1, RL_SERVER_MT);
  rl_server *s = u->s;
  u->s = NULL;
  if (s == NULL)
    return 0;
  rl_ctx *ctx = s->ctx;
  if (!ctx->closing)
    luaL_unref(L, LUA_REGISTRYINDEX, s->handler_ref);
  /* Collected only once closed, except during lua_close, where the context
   * (collected last) closes the server and frees it. */
  if (s->closed)
    free(s);
  else
    s->ud_gone = 1;
  return 0;
}

void rl__server_open_lib(lua_State *L) {
  if (luaL_newmetatable(L, RL_SERVER_MT)) {
    lua_pushcfunction(L, server_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, server_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, server_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
}
