/* A C program that embeds Lua and runs ringlet on its own libuv loop,
 * beside a timer of its own.
 *
 *   build/ringlet_host [port]     then: curl http://127.0.0.1:PORT/
 */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>

#include "ringlet.h"

static uv_loop_t loop;
static uv_timer_t ticker;
static uv_signal_t sigterm;
static unsigned long ticks;
static lua_State *L;

static void tick_cb(uv_timer_t *t) {
  (void)t;
  ticks++; /* the host's own work goes on beside ringlet's */
}

static int host_ticks(lua_State *Ls) {
  lua_pushinteger(Ls, (lua_Integer)ticks);
  return 1;
}

static void on_signal(uv_signal_t *s, int signum) {
  (void)signum;
  ringlet_stop_all(L, 500);
  uv_close((uv_handle_t *)s, NULL);
  uv_close((uv_handle_t *)&ticker, NULL);
}

static const char app[] =
    "local ringlet = require 'ringlet'\n"
    "local port = ...\n"
    "local server = assert(ringlet.run_server(function(req)\n"
    "  return { status = 200, headers = { ['content-type'] = 'text/plain' },\n"
    "           body = 'hello from the C host, ticks=' .. host_ticks() }\n"
    "end, { ip = '127.0.0.1', port = port }))\n"
    "print('ringlet: listening on http://127.0.0.1:' .. server.port)\n"
    "io.stdout:flush()\n";

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 8091;
  uv_loop_init(&loop);
  L = ringlet_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "ringlet", luaopen_ringlet, 0);
  lua_pop(L, 1);
  if (ringlet_set_loop(L, &loop) != 0) {
    fprintf(stderr, "cannot set the loop\n");
    return 1;
  }
  lua_register(L, "host_ticks", host_ticks);
  uv_timer_init(&loop, &ticker);
  uv_timer_start(&ticker, tick_cb, 10, 10);
  uv_signal_init(&loop, &sigterm);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  if (luaL_loadstring(L, app) != LUA_OK ||
      (lua_pushinteger(L, port), lua_pcall(L, 1, 0, 0)) != LUA_OK) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    return 1;
  }
  uv_run(&loop, UV_RUN_DEFAULT); /* returns once everything is closed */
  ringlet_closestate(L);
  uv_loop_close(&loop);
  return 0;
}
