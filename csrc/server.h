/* Servers: a listener whose connections speak HTTP, a Lua handler run for
 * each request, the server userdata, and as_channel's way to the request
 * being answered.
 *
 * Owns: each rl_server (freed once closed and its userdata collected), the
 * handler's task per exchange. May call: ring.h, channel.h, http.h,
 * listen.h, ctx.h, conn.h, base.h, Lua; it registers the HTTP callbacks. */
#ifndef RL_SERVER_H
#define RL_SERVER_H

#include "listen.h"
#include "ring.h"

#define RL_SERVER_MT "ringlet.server"

/* run_server(handler, opts): listen; push the server userdata, or nil, a
 * message and the error's name when it cannot bind. Bad options raise. */
int rl__l_run_server(lua_State *L);
/* ringlet.as_channel(req, opts) */
int rl__l_as_channel(lua_State *L);
/* Stop every running server of ctx, as server:stop{timeout = ms}. */
void rl__server_stop_all(rl_ctx *ctx, uint64_t timeout_ms);
void rl__server_open_lib(lua_State *L);

#endif
