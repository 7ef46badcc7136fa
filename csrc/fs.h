/* ringlet.stat and ringlet.realpath: what a Lua module serving files needs
 * to know of a path (its kind, size and modification time; where it really
 * is) and plain Lua cannot ask. Blocking calls on the loop, as nginx's own
 * open and stat of a static file are: cheap against the page cache.
 *
 * Owns: nothing. May call: libc, libuv (error names), Lua. */
#ifndef RL_FS_H
#define RL_FS_H

#include <lua.h>

/* ringlet.stat(path [, follow]) */
int rl__l_stat(lua_State *L);
/* ringlet.realpath(path) */
int rl__l_realpath(lua_State *L);

#endif
