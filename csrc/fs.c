/* ringlet.stat and ringlet.realpath (fs.h). */
#include "fs.h"

#include <errno.h>
#include <lauxlib.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

/* nil, "path: message", "ENOENT" (luv's and io.open's style; the name is
 * libuv's for the errno) */
static int fail(lua_State *L, const char *path, int e) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", path, strerror(e));
  lua_pushstring(L, uv_err_name(-e));
  return 3;
}

/* A path with a NUL in it would be cut short by the system call: refused
 * rather than answered for another file. */
static const char *check_path(lua_State *L, int idx) {
  size_t len;
  const char *path = luaL_checklstring(L, idx, &len);
  if (strlen(path) != len)
    luaL_argerror(L, idx, "path contains a NUL byte");
  return path;
}

/* ringlet.stat(path [, follow = true]) -> {type=, size=, mtime=, mode=, ino=,
 * dev=}, or nil, err, code. type is "file", "directory", "link" (only with
 * follow = false), or "other"; mtime is in seconds since the epoch (an
 * integer) and mtime_ns the nanoseconds within it. */
int rl__l_stat(lua_State *L) {
  const char *path = check_path(L, 1);
  int follow = lua_isnoneornil(L, 2) || lua_toboolean(L, 2);
  struct stat st;
  if ((follow ? stat(path, &st) : lstat(path, &st)) != 0)
    return fail(L, path, errno);
  lua_createtable(L, 0, 7);
  lua_pushstring(L, S_ISREG(st.st_mode)   ? "file"
                    : S_ISDIR(st.st_mode) ? "directory"
                    : S_ISLNK(st.st_mode) ? "link"
                                          : "other");
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, (lua_Integer)st.st_size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)st.st_mtim.tv_sec);
  lua_setfield(L, -2, "mtime");
  lua_pushinteger(L, (lua_Integer)st.st_mtim.tv_nsec);
  lua_setfield(L, -2, "mtime_ns");
  lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
  lua_setfield(L, -2, "mode");
  lua_pushinteger(L, (lua_Integer)st.st_ino);
  lua_setfield(L, -2, "ino");
  lua_pushinteger(L, (lua_Integer)st.st_dev);
  lua_setfield(L, -2, "dev");
  return 1;
}

/* ringlet.realpath(path) -> the absolute path with every symbolic link,
 * "." and ".." resolved, or nil, err, code (the path must exist). */
int rl__l_realpath(lua_State *L) {
  const char *path = check_path(L, 1);
  char *real = realpath(path, NULL);
  if (real == NULL)
    return fail(L, path, errno);
  lua_pushstring(L, real);
  free(real);
  return 1;
}
