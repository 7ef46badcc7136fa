/* ringlet app.lua [--port N] [--ip A] [--threads N] [--access-log FILE]
 *
 * Runs an app file. The file returns a handler function, or a table
 * {handler = fn, options = {...}}, or nothing (it started its own servers).
 * SIGINT and SIGTERM stop the servers gracefully.
 *
 * A host of its own, outside the core: it calls only the public API of
 * ringlet.h, as examples/host.c does (the core's objects are linked in,
 * so an installed CLI needs no libringlet.so to be found). */
#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ringlet.h"

#define STOP_TIMEOUT_MS 1000
#define FORCE_EXIT_MS 5000

static uv_signal_t sigint, sigterm;
static uv_timer_t force;
static lua_State *gL;

static const char help[] =
    "usage: ringlet APP.lua [options]\n"
    "\n"
    "Serve the handler APP.lua returns (a function, or a table {handler =,\n"
    "options =}); an app that returns nothing starts its own servers.\n"
    "SIGINT and SIGTERM stop the servers gracefully.\n"
    "\n"
    "options (each also as --name=VALUE):\n"
    "  --port N             listen on port N (default 8090; 0 picks one)\n"
    "  --ip ADDRESS         listen on ADDRESS (default 0.0.0.0)\n"
    "  --threads N          worker count (accepted; one worker for now)\n"
    "  --access-log FILE    one line per request, combined log format, to\n"
    "                       FILE (- for standard output)\n"
    "  --help, -h           print this help and exit\n"
    "  --version            print the version and exit\n"
    "\n"
    "Options given here override the app's own options.\n";

/* A usage error: one line on stderr, exit status 2. */
static void bad_usage(const char *fmt, const char *arg) {
  fputs("ringlet: ", stderr);
  fprintf(stderr, fmt, arg);
  fputs(" (ringlet --help lists the options)\n", stderr);
  exit(2);
}

static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL)
    msg =
        lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

static void force_cb(uv_timer_t *t) { uv_stop(t->loop); }

/* The Lua half of the API (ringlet.httpkit, ringlet.sse, ...) lives in
 * lua/ringlet/ beside the sources and in share/lua/5.4/ringlet/ once
 * installed. Find it from where this binary is, so a build in a checkout
 * (build/ringlet) and an installed CLI (PREFIX/bin/ringlet) both load their
 * own modules with no LUA_PATH: the first candidate holding a ringlet/
 * directory goes in front of package.path. */
static void add_module_path(lua_State *L) {
  static const char *const rel[] = {"/../lua", "/../share/lua/5.4", NULL};
  char exe[4096];
  size_t n = sizeof exe - 64;
  if (uv_exepath(exe, &n) != 0)
    return;
  char *slash = strrchr(exe, '/');
  if (slash == NULL)
    return;
  *slash = '\0';
  for (int i = 0; rel[i]; i++) {
    char dir[4160];
    struct stat st;
    snprintf(dir, sizeof dir, "%s%s/ringlet", exe, rel[i]);
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
      continue;
    dir[strlen(dir) - 8] = '\0'; /* drop "/ringlet" */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir,
                    lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 2);
    return;
  }
}

static void signal_cb(uv_signal_t *h, int signum) {
  (void)signum;
  ringlet_stop_all(gL, STOP_TIMEOUT_MS);
  uv_close((uv_handle_t *)&sigint, NULL);
  uv_close((uv_handle_t *)&sigterm, NULL);
  /* timers the app keeps going must not hold the process forever */
  uv_timer_init(h->loop, &force);
  uv_timer_start(&force, force_cb, FORCE_EXIT_MS, 0);
  uv_unref((uv_handle_t *)&force);
}

/* The value of option `name` at argv[*i]: "--name=V" or "--name V". NULL
 * when argv[*i] is not that option. */
static const char *opt_value(int argc, char **argv, int *i, const char *name) {
  size_t n = strlen(name);
  const char *a = argv[*i];
  if (strncmp(a, name, n) != 0)
    return NULL;
  if (a[n] == '=')
    return a + n + 1;
  if (a[n] != '\0')
    return NULL;
  if (*i + 1 >= argc)
    bad_usage("%s needs a value", name);
  return argv[++*i];
}

static long number(const char *v, const char *name, long lo, long hi) {
  char *end;
  long n = strtol(v, &end, 10);
  if (*v == '\0' || *end || n < lo || n > hi) {
    char what[64];
    snprintf(what, sizeof what, "%s needs a number from %ld to %ld", name, lo,
             hi);
    bad_usage("%s", what);
  }
  return n;
}

int main(int argc, char **argv) {
  const char *app = NULL, *ip = NULL, *access_log = NULL, *v;
  long port = -1, threads = -1;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(help, stdout);
      return 0;
    } else if (strcmp(argv[i], "--version") == 0) {
      printf("ringlet %s (%s, libuv %s)\n", RINGLET_VERSION, LUA_RELEASE,
             uv_version_string());
      return 0;
    } else if ((v = opt_value(argc, argv, &i, "--port")) != NULL) {
      port = number(v, "--port", 0, 65535);
    } else if ((v = opt_value(argc, argv, &i, "--ip")) != NULL) {
      ip = v;
    } else if ((v = opt_value(argc, argv, &i, "--threads")) != NULL) {
      threads = number(v, "--threads", 1, 1024);
    } else if ((v = opt_value(argc, argv, &i, "--access-log")) != NULL) {
      if (*v == '\0')
        bad_usage("%s needs a file name (- for standard output)",
                  "--access-log");
      access_log = v;
    } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
      bad_usage("unknown option '%s'", argv[i]);
    } else if (app) {
      bad_usage("one app file only, got '%s' too", argv[i]);
    } else {
      app = argv[i];
    }
  }
  if (app == NULL)
    bad_usage("%s", "no app file given");
  struct stat st;
  errno = 0;
  if (stat(app, &st) != 0 || !S_ISREG(st.st_mode)) {
    fprintf(stderr, "ringlet: %s: %s\n", app,
            errno ? strerror(errno) : "not a file");
    return 2;
  }

#ifdef __GLIBC__
  /* glibc raises its mmap threshold each time a large block is freed, up
   * to 32 MiB, so a server that once held big messages and uploads keeps
   * serving them from the heap, which fragments and never shrinks (the
   * soak, soak/README.md: 335 MiB of RSS after a load that left 1.4 MiB
   * in use). A fixed threshold keeps blocks over 128 KiB in mappings of
   * their own, returned to the system when freed. */
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
  lua_State *L = ringlet_newstate();
  if (L == NULL)
    return 1;
  gL = L;
  luaL_openlibs(L);
  add_module_path(L);
  luaL_requiref(L, "ringlet", luaopen_ringlet, 0);
  int ringlet = lua_gettop(L);
  uv_loop_t *loop = ringlet_get_loop(L);
  int status = 0;

  uv_signal_init(loop, &sigint);
  uv_signal_init(loop, &sigterm);
  uv_signal_start(&sigint, signal_cb, SIGINT);
  uv_signal_start(&sigterm, signal_cb, SIGTERM);
  uv_unref((uv_handle_t *)&sigint);
  uv_unref((uv_handle_t *)&sigterm);
  lua_createtable(L, 1, 1); /* arg, as lua.c makes it */
  lua_pushstring(L, app);
  lua_rawseti(L, -2, 0);
  lua_setglobal(L, "arg");

  lua_pushcfunction(L, msghandler);
  int mh = lua_gettop(L);
  if (luaL_loadfile(L, app) != LUA_OK || lua_pcall(L, 0, 1, mh) != LUA_OK) {
    fprintf(stderr, "ringlet: %s\n", lua_tostring(L, -1));
    ringlet_closestate(L);
    return 1;
  }
  int ret = lua_gettop(L);
  int have_handler = 0;
  if (lua_isfunction(L, ret)) {
    lua_getfield(L, ringlet, "run_server");
    lua_pushvalue(L, ret);
    lua_newtable(L);
    have_handler = 1;
  } else if (lua_istable(L, ret)) {
    lua_getfield(L, ringlet, "run_server");
    lua_getfield(L, ret, "handler");
    if (!lua_isfunction(L, -1)) {
      fprintf(stderr,
              "ringlet: %s: the table it returns needs a 'handler' "
              "function\n",
              app);
      ringlet_closestate(L);
      return 1;
    }
    lua_newtable(L); /* a copy of options: we add ip and port */
    if (lua_getfield(L, ret, "options") == LUA_TTABLE) {
      lua_pushnil(L);
      while (lua_next(L, -2)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_settable(L, -5);
      }
    }
    lua_pop(L, 1);
    have_handler = 1;
  } else if (!lua_isnil(L, ret)) {
    fprintf(stderr,
            "ringlet: %s returned a %s; expected a handler function, "
            "a table {handler=, options=} or nothing\n",
            app, luaL_typename(L, ret));
    ringlet_closestate(L);
    return 1;
  }
  if (have_handler) {
    if (ip) {
      lua_pushstring(L, ip);
      lua_setfield(L, -2, "ip");
    }
    if (port >= 0) {
      lua_pushinteger(L, port);
      lua_setfield(L, -2, "port");
    }
    if (threads >= 0) {
      lua_pushinteger(L, threads);
      lua_setfield(L, -2, "thread");
    }
    if (access_log) {
      lua_pushstring(L, access_log);
      lua_setfield(L, -2, "access_log");
    }
    /* run_server raises only for a bad option: its message names the
     * option, and a traceback into the CLI would tell the user nothing */
    if (lua_pcall(L, 2, 3, 0) != LUA_OK) {
      fprintf(stderr, "ringlet: cannot start the server: %s\n",
              lua_tostring(L, -1));
      ringlet_closestate(L);
      return 1;
    }
    if (lua_isnil(L, -3)) {
      fprintf(stderr, "ringlet: cannot start the server: %s\n",
              lua_tostring(L, -2));
      ringlet_closestate(L);
      return 1;
    }
    lua_pop(L, 2);
    lua_getfield(L, -1, "ip");
    lua_getfield(L, -2, "port");
    printf("ringlet: listening on http://%s:%d\n", lua_tostring(L, -2),
           (int)lua_tointeger(L, -1));
    fflush(stdout);
    lua_pop(L, 3);
  }

  uv_run(loop, UV_RUN_DEFAULT);
  if (!uv_is_closing((uv_handle_t *)&sigint)) {
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_close((uv_handle_t *)&sigterm, NULL);
  }
  if (uv_is_active((uv_handle_t *)&force) || force.loop)
    if (!uv_is_closing((uv_handle_t *)&force))
      uv_close((uv_handle_t *)&force, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  ringlet_closestate(L);
  uv_loop_close(loop);
  return status;
}
