/* ringlet: a Ring-style HTTP host for Lua 5.4 on libuv.
 *
 * The public C API for hosts that embed Lua. A host opens ringlet in its
 * lua_State (luaopen_ringlet, usually through package.preload or luaL_requiref)
 * and may hand it the host's own libuv loop, so ringlet's sockets and timers
 * run beside the host's handles. */
#ifndef RINGLET_H
#define RINGLET_H

#include <lua.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RINGLET_VERSION "0.1.0"

/* The Lua module: require "ringlet". */
int luaopen_ringlet(lua_State *L);

/* Run ringlet in L on `loop` instead of the default loop. Call it after
 * luaopen_ringlet and before any server or timer is created; the loop stays
 * the host's (ringlet never closes it). Returns 0, or UV_EBUSY when ringlet
 * already has handles on another loop. */
int ringlet_set_loop(lua_State *L, uv_loop_t *loop);

/* The loop ringlet uses in L (the default loop unless one was set). */
uv_loop_t *ringlet_get_loop(lua_State *L);

/* Stop every server of L (as server:stop{timeout = timeout_ms}). A host calls
 * it before it closes the lua_State, then runs its loop until the handles
 * are closed. */
void ringlet_stop_all(lua_State *L, unsigned timeout_ms);

/* A new lua_State like luaL_newstate's (panic function, warnings off until
 * "@on"), whose allocator keeps small blocks (<= 512 bytes) in per-size
 * free lists carved from 64 KiB slabs: the tables and strings each request
 * makes and drops are recycled without malloc and free. Freed blocks stay
 * with the state until ringlet_closestate. NULL when out of memory. */
lua_State *ringlet_newstate(void);

/* lua_close(L), then free the allocator's slabs if ringlet_newstate made L
 * (for any other state it is just lua_close). */
void ringlet_closestate(lua_State *L);

#ifdef __cplusplus
}
#endif
#endif
