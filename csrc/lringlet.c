/* The Lua module (require "ringlet") and the public C API of ringlet.h:
 * the top of the core.
 *
 * Owns: the module table. May call: server.h, channel.h, ctx.h, fs.h (and
 * what they include). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "fs.h"
#include "group.h"
#include "lclient.h"
#include "queue.h"
#include "ringlet.h"
#include "server.h"

/* lua_close: the context stops the servers first (no Lua runs then). */
static void close_servers(rl_ctx *ctx) {
  rl__server_stop_all(ctx, 0);
  rl__client_lib_close(ctx);
}

void ringlet_stop_all(lua_State *L, unsigned timeout_ms) {
  rl_ctx *ctx = rl__ctx(L);
  if (ctx)
    rl__server_stop_all(ctx, timeout_ms);
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
  uv_run(ctx->io.loop, UV_RUN_DEFAULT);
  running = 0;
  return 0;
}

static void on_sigpipe(int sig) { (void)sig; }

int luaopen_ringlet(lua_State *L) {
  static const luaL_Reg funcs[] = {{"run_server", rl__l_run_server},
                                   {"run", l_run},
                                   {"as_channel", rl__l_as_channel},
                                   {"timer", rl__l_timer},
                                   {"sleep", rl__l_sleep},
                                   {"group", rl__l_group},
                                   {"groups", rl__l_groups},
                                   {"queue", rl__l_queue},
                                   {"stat", rl__l_stat},
                                   {"realpath", rl__l_realpath},
                                   {NULL, NULL}};
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
  rl__ctx(L)->on_close = close_servers;
  rl__server_open_lib(L);
  rl__timer_open_lib(L);
  rl__channel_open_lib(L);
  rl__group_open_lib(L);
  rl__queue_open_lib(L);
  luaL_newlib(L, funcs);
  lua_pushliteral(L, RINGLET_VERSION);
  lua_setfield(L, -2, "version");
  rl__client_open_lib(L);
  lua_setfield(L, -2, "client");
  return 1;
}
