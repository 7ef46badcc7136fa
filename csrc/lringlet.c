/* The Lua face of ringlet: require "ringlet". */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "rl.h"

typedef struct {
  rl_server *s; /* owned: freed by __gc once closed, or on close after gc */
} rl_server_ud;

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

/* Read run_server's options (table at idx) into cfg. Unknown names and
 * wrong types raise, naming the option. */
static void read_config(lua_State *L, int idx, rl_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  strcpy(cfg->ip, "0.0.0.0");  /* ip: string, "0.0.0.0" */
  cfg->port = 8090;            /* port: 0..65535, 8090; 0 picks one */
  cfg->thread = 1;             /* thread: workers, 1 */
  cfg->queue_size = 20480;     /* queue_size: requests in flight */
  cfg->max_body = 8388608;     /* max_body: bytes, else 413 */
  cfg->max_ws = 4194304;       /* max_ws: WebSocket message bytes */
  cfg->max_line = 4096;        /* max_line: request line (414), header
                                  line (431) */
  cfg->proxy_protocol = 0;     /* proxy_protocol: disable|enable|optional */
  cfg->idle_timeout = 60000;   /* idle_timeout: ms, 0 = none */
  cfg->header_timeout = 30000; /* header_timeout: ms, 0 = none */
  if (lua_isnoneornil(L, idx))
    return;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "run_server: option names must be strings");
    const char *k = lua_tostring(L, -2);
    if (strcmp(k, "ip") == 0) {
      size_t n;
      const char *v =
          lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
      if (v == NULL || n >= sizeof cfg->ip)
        luaL_error(L, "run_server: option 'ip' must be an address string");
      memcpy(cfg->ip, v, n + 1);
    } else if (strcmp(k, "port") == 0) {
      cfg->port = (int)opt_int(L, k, 0, 65535);
    } else if (strcmp(k, "thread") == 0) {
      cfg->thread = (int)opt_int(L, k, 1, 1024);
    } else if (strcmp(k, "queue_size") == 0) {
      cfg->queue_size = (int)opt_int(L, k, 1, 1 << 30);
    } else if (strcmp(k, "max_body") == 0) {
      cfg->max_body = (size_t)opt_int(L, k, 0, (lua_Integer)1 << 40);
    } else if (strcmp(k, "max_ws") == 0) {
      cfg->max_ws = (size_t)opt_int(L, k, 1, (lua_Integer)1 << 40);
    } else if (strcmp(k, "max_line") == 0) {
      cfg->max_line = (size_t)opt_int(L, k, 64, 1 << 20);
    } else if (strcmp(k, "idle_timeout") == 0) {
      cfg->idle_timeout = (uint64_t)opt_int(L, k, 0, (lua_Integer)1 << 40);
    } else if (strcmp(k, "header_timeout") == 0) {
      cfg->header_timeout = (uint64_t)opt_int(L, k, 0, (lua_Integer)1 << 40);
    } else if (strcmp(k, "proxy_protocol") == 0) {
      const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
      int i = 0;
      while (pp_names[i] && strcmp(pp_names[i], v) != 0)
        i++;
      if (pp_names[i] == NULL)
        luaL_error(L, "run_server: option 'proxy_protocol' must be "
                      "\"disable\", \"enable\" or \"optional\"");
      cfg->proxy_protocol = i;
    } else {
      luaL_error(L, "run_server: unknown option '%s'", k);
    }
    lua_pop(L, 1);
  }
}

/* ---- servers
 * ------------------------------------------------------------------ */

void rl__server_userdata_closed(rl_server *s) {
  if (s->ud_gone)
    free(s);
}

static rl_server *check_server(lua_State *L) {
  rl_server_ud *u = luaL_checkudata(L, 1, RL_SERVER_MT);
  return u->s;
}

/* ringlet.run_server(handler, opts) -> server | nil, err, code */
static int l_run_server(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  rl_config cfg;
  read_config(L, 2, &cfg);
  rl_ctx *ctx = rl__ctx(L);
  rl_server_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->s = NULL;
  luaL_setmetatable(L, RL_SERVER_MT);
  rl_server *s = calloc(1, sizeof *s);
  if (s == NULL)
    return luaL_error(L, "out of memory");
  u->s = s;
  s->ctx = ctx;
  s->cfg = cfg;
  s->handler_ref = s->self_ref = LUA_NOREF;
  lua_pushvalue(L, 1);
  s->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  s->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  int r = rl__server_start(s);
  if (r != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s (%s port %d)", uv_err_name(r), uv_strerror(r),
                    cfg.ip, cfg.port);
    lua_pushstring(L, uv_err_name(r));
    return 3;
  }
  return 1;
}

static int server_stop(lua_State *L) {
  rl_server *s = check_server(L);
  lua_Integer timeout = 100;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      if (lua_type(L, -2) != LUA_TSTRING ||
          strcmp(lua_tostring(L, -2), "timeout") != 0)
        return luaL_error(L, "stop: unknown option '%s'",
                          lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2)
                                                         : "?");
      if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0)
        return luaL_error(L, "stop: option 'timeout' must be an integer "
                             ">= 0 (ms)");
      timeout = lua_tointeger(L, -1);
      lua_pop(L, 1);
    }
  }
  int was = s->stopping;
  if (!was)
    rl__server_stop(s, (uint64_t)timeout);
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
    lua_pushcfunction(L, server_stop);
    return 1;
  }
  return 0;
}

static int server_tostring(lua_State *L) {
  rl_server *s = check_server(L);
  lua_pushfstring(L, "ringlet.server (%s:%d, %s)", s->cfg.ip, s->port,
                  s->stopping ? "stopped" : "running");
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
  if (s->stopping && s->open_handles == 0 && s->nconns == 0)
    free(s);
  else
    s->ud_gone = 1;
  return 0;
}

/* ---- the loop
 * ------------------------------------------------------------------- */

static int running;

/* ringlet.run(): run the loop until every server has stopped and nothing
 * else (timers, sleeps) is pending. */
static int l_run(lua_State *L) {
  rl_ctx *ctx = rl__ctx(L);
  if (running)
    return luaL_error(L, "ringlet.run: the loop is already running");
  running = 1;
  uv_run(ctx->loop, UV_RUN_DEFAULT);
  running = 0;
  return 0;
}

static void on_sigpipe(int sig) { (void)sig; }

int luaopen_ringlet(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"run_server", l_run_server},   {"run", l_run},
      {"as_channel", rl__as_channel}, {"timer", rl__l_timer},
      {"sleep", rl__l_sleep},         {NULL, NULL}};
  luaL_checkversion(L);
  /* Writing to a connection its peer has reset fails with EPIPE, and also
   * raises SIGPIPE, whose default action ends the process: one client
   * leaving mid-response would stop the server. Caught by a handler that
   * does nothing, unless the host has one of its own: unlike SIG_IGN, a
   * handler is not inherited through exec, so io.popen's commands still
   * get the default (`yes | head -1` ends quietly). */
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigpipe;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
  }
  rl__ctx_open(L);
  if (luaL_newmetatable(L, RL_SERVER_MT)) {
    lua_pushcfunction(L, server_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, server_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, server_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  rl__timer_open_lib(L);
  rl__channel_open_lib(L);
  luaL_newlib(L, funcs);
  lua_pushliteral(L, RINGLET_VERSION);
  lua_setfield(L, -2, "version");
  return 1;
}
