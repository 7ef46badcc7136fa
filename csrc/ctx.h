/* A lua_State's context: the loop it runs on, protected calls from libuv
 * callbacks, coroutine tasks, ringlet.timer and ringlet.sleep.
 *
 * Owns: the rl_ctx (freed by the context userdata's __gc at lua_close),
 * the transport's per-loop state (io), tasks and their coroutines, timers.
 * May call: conn.h (the io's set-up and close), base.h, Lua, libuv; the
 * module above only through on_close. */
#ifndef RL_CTX_H
#define RL_CTX_H

#include <lauxlib.h>
#include <lua.h>

#include "conn.h"

#define RL_TIMER_MT "ringlet.timer"

typedef struct rl_ctx rl_ctx;
typedef struct rl_task rl_task;

struct rl_ctx {
  lua_State *L;      /* the main thread */
  rl_io io;          /* the transport's state; io.loop is the host's loop, or
                        uv_default_loop() */
  int handles;       /* other ringlet handles open on the loop (timers, servers'
                        stop timers) */
  int protected;     /* rl__protect calls running (nested ones skip pcall) */
  int running;       /* rl__task_run resumes running (not protected calls) */
  int closing;       /* lua_close is running: no more Lua from callbacks */
  int keys_ref;      /* registry: interned strings (ring.c's RL_K_*) */
  int tasks_ref;     /* registry: thread -> task (light) */
  rl_task *pool[64]; /* finished tasks kept with their coroutines */
  int npool;
  struct rl_timer *timers;     /* pending sleeps and ringlet.timer handles */
  rl_task *parked;             /* tasks waiting for rl__task_wake (a list) */
  rl_task *ready, *ready_tail; /* woken tasks, resumed from the loop */
  uv_check_t *wake;            /* malloc'd on first wake: resumes ready tasks */
  uv_idle_t *spin; /* active with wake: the loop does not block meanwhile */
  void *servers;   /* server.c's list of running servers (ctx never reads it) */
  void *client;    /* lclient.c's rl_client, made on first use (ditto) */
  void *lazy;      /* ring.c's request-table state (a Lua userdata; ditto) */
  /* lua_close: runs first, with closing set (the module stops its servers
   * there); then the context closes its own handles. */
  void (*on_close)(rl_ctx *ctx);
};

rl_ctx *rl__ctx(lua_State *L);
/* Push the context's userdata (to keep in a user value) and return its
 * pointer to the context, which lua_close sets to NULL when it frees it:
 * finalizers that run after that one can tell. */
rl_ctx **rl__ctx_push(lua_State *L);
void rl__ctx_open(lua_State *L);

/* Run f(L) with a lightuserdata argument under lua_pcall, from a libuv
 * callback, so no Lua error longjmps through libuv frames. Errors are
 * logged. Returns the lua_pcall status. */
int rl__protect(rl_ctx *ctx, lua_State *L, lua_CFunction f, void *ud);

/* ---- coroutine tasks ------------------------------------------------------
 * Every handler and callback runs in its own coroutine. The done callback
 * gets the coroutine with `nres` results (status LUA_OK) or the error with
 * its traceback at the top (any other status). It runs inside a protected
 * call, except for a task of rl__task_run that finished well: that call
 * must raise nothing (no allocation outside a pcall of its own). `data`
 * belongs to the starter, who sets it to NULL if it goes away while the
 * task is suspended. */
typedef void (*rl_task_cb)(rl_task *t, lua_State *co, int status, int nres);

struct rl_task {
  rl_ctx *ctx;
  lua_State *co; /* anchored by co_ref in the registry until done */
  int co_ref;
  rl_task_cb done;
  void *data;
  int arg_ref; /* registry slot (made with the task) anchoring one value */
  int has_arg; /* arg_ref holds a value for the running task */
  uv_timer_t *sleep; /* malloc'd while in ringlet.sleep; freed on close */
  int parked;        /* 1: waiting for rl__task_wake; 2: woken, ready; 3: being
                        resumed by the loop */
  int nwake;         /* values rl__task_wake left on its stack */
  int wait_top;      /* its stack's top when it parked or went to sleep */
  rl_task *prev, *next; /* ctx->parked or ctx->ready */
  rl_task *wnext;       /* the owner's list of waiters (queue.c) */
};

/* Call the function below `nargs` arguments on L's stack in a new task.
 * Pops them. `anchor` (a stack index, or 0) names a value kept alive until
 * the task ends, in a registry slot the task owns (no allocation per
 * task). Must run inside a protected call (it may raise on memory).
 * Returns the task while suspended, or NULL. *slot (when given) is set to
 * the task before it first runs; its done callback clears the owner's
 * pointer. */
rl_task *rl__task_start(rl_ctx *ctx, lua_State *L, int anchor, int nargs,
                        rl_task_cb done, void *data, rl_task **slot);

/* Start a task from a loop callback without a protected call around it
 * (the coroutine is one): entry runs as the coroutine's function, with ud
 * (a light userdata) at index 1 and the nargs values popped from L above
 * it. It pushes what it calls and calls it with lua_callk, so that
 * whatever entry does that may raise (make the arguments, on memory) is
 * the task's error, given to done. A pooled coroutine runs it; only when
 * the pool is empty is one made, under rl__protect. Returns LUA_OK; -1
 * when no coroutine could be made (entry did not run, done will not be
 * called); or the status of the protected call that reports the task's
 * error, when that failed (on memory: done may not have run). */
int rl__task_run(rl_ctx *ctx, lua_State *L, int nargs, lua_CFunction entry,
                 void *ud, rl_task_cb done, void *data, rl_task **slot);

/* The task running on L (a coroutine ringlet started), or NULL. */
rl_task *rl__current_task(lua_State *L);

/* Park the running task t (running on L): the caller then returns
 * lua_yieldk(L, 0, (lua_KContext)t, k), and t stays suspended until
 * rl__task_wake. A parked task is the waker's to track (queue.c keeps its
 * waiters); the context frees it at lua_close. */
void rl__task_park(rl_task *t, lua_State *L);
/* Resume the parked task t soon, from the loop (never inside this call),
 * with the nargs values on top of L (popped) as the results of its yield.
 * Tasks resume in the order they were woken. Must run inside a protected
 * call (it may raise on memory). */
void rl__task_wake(rl_task *t, lua_State *L, int nargs);
/* First thing in the parker's continuation k: 1 when the loop resumed t
 * as rl__task_wake asked (its nwake values are on top of L); 0 when
 * something else resumed it (coroutine.resume by hand): k then returns
 * rl__task_repark(L, t, k), and t goes on waiting where it was. */
int rl__task_resumed(rl_task *t);
int rl__task_repark(lua_State *L, rl_task *t, lua_KFunction k);
/* The same for a continuation whose context is not the task. */
int rl__task_repark_k(lua_State *L, rl_task *t, lua_KFunction k,
                      lua_KContext ctx);

/* Call a Lua callback (function below nargs args on L) in a task whose
 * errors are only logged with `what`. */
void rl__call_cb(rl_ctx *ctx, lua_State *L, int nargs, const char *what);

/* Outside a running loop (no task, no protected call: a plain script or a
 * busted spec), run the loop until done(ud) is true or ms pass (0: no
 * limit). Returns 0 when done, 1 when the time passed or nothing is left
 * to wait for, -1 when called where the loop is running (a callback's
 * coroutine that ringlet did not start): the caller raises. */
int rl__run_until(rl_ctx *ctx, int (*done)(void *ud), void *ud, uint64_t ms);
/* How a call that waits waits: 1 in a task (park it; *t is set to it when
 * t is given), 0 by running the loop in place (rl__run_until), -1 neither
 * is possible. */
int rl__wait_mode(lua_State *L, rl_task **t);

/* ringlet.sleep and ringlet.timer */
int rl__l_sleep(lua_State *L);
int rl__l_timer(lua_State *L);
void rl__timer_open_lib(lua_State *L);

#endif
