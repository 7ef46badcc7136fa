/* A lua_State's context (ctx.h): protected calls, coroutine tasks,
 * ringlet.timer and ringlet.sleep, and the transport's per-loop state.
 *
 * Owns: the rl_ctx, tasks, timers. May call: conn.h (io set-up and close),
 * base.h, Lua, libuv; the module only through ctx->on_close. */
#include <stdlib.h>
#include <string.h>

#include "ctx.h"
#include "ringlet.h"

static const char ctx_key = 'c'; /* registry key: the context userdata */

/* A pending ringlet.sleep or ringlet.timer. Owned by ctx->timers until its
 * close callback frees it. */
typedef struct rl_timer {
  uv_timer_t h; /* data -> this */
  rl_ctx *ctx;
  struct rl_timer *next, *prev;
  rl_task *task;        /* sleep: the task to resume */
  int fn_ref;           /* timer: the function to call */
  int self_ref;         /* timer: the userdata while pending */
  struct rl_timer **ud; /* timer: the userdata's pointer, NULLed on free */
} rl_timer;

rl_ctx *rl__ctx(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ctx_key);
  rl_ctx **pp = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return pp ? *pp : NULL;
}

rl_ctx **rl__ctx_push(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ctx_key);
  return lua_touserdata(L, -1);
}

int rl__protect(rl_ctx *ctx, lua_State *L, lua_CFunction f, void *ud) {
  int top = lua_gettop(L);
  lua_pushcfunction(L, f);
  lua_pushlightuserdata(L, ud);
  if (ctx->protected > 0) {
    /* already inside a protected call: an error unwinds to that one */
    lua_call(L, 1, 0);
    lua_settop(L, top);
    return LUA_OK;
  }
  ctx->protected ++;
  int st = lua_pcall(L, 1, 0, 0);
  ctx->protected --;
  if (st != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    rl__log("internal error: %s", msg ? msg : "(no message)");
  }
  lua_settop(L, top);
  return st;
}

/* ---- tasks --------------------------------------------------------------- */

static void task_finish(rl_ctx *ctx, lua_State *L, rl_task *t, int status) {
  lua_State *co = t->co;
  /* a coroutine left in error (failed, or resumed by user code while its
   * done callback ran: it had finished) is reset before it is reused */
  if (status != LUA_OK || lua_status(co) != LUA_OK) {
#if LUA_VERSION_RELEASE_NUM >= 50406
    lua_closethread(co, L);
#else
    lua_resetthread(co);
#endif
  }
  lua_settop(co, 0);
  if (t->has_arg) { /* the slot exists: setting it allocates nothing */
    lua_pushboolean(L, 0);
    lua_rawseti(L, LUA_REGISTRYINDEX, t->arg_ref);
    t->has_arg = 0;
  }
  t->done = NULL;
  t->data = NULL;
  if (ctx->npool < (int)(sizeof ctx->pool / sizeof ctx->pool[0])) {
    ctx->pool[ctx->npool++] = t;
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->tasks_ref);
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->co_ref);
  lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  luaL_unref(L, LUA_REGISTRYINDEX, t->co_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, t->arg_ref);
  free(t);
}

/* What follows a resume that returned st with nres results on co: a
 * yield parks the task (ringlet.sleep, rl__task_park) or is an error; the
 * done callback gets the results or the error with its traceback; a
 * finished task goes back to the pool. Returns t while it is suspended,
 * NULL once it finished. Raises nothing when st is LUA_OK or the yield of
 * a parked or sleeping task, unless the done callback does. */
static rl_task *task_after(lua_State *L, rl_task *t, int st, int nres) {
  lua_State *co = t->co;
  if (st == LUA_YIELD) {
    if (t->sleep || t->parked) {
      lua_pop(co, nres);
      return t; /* the sleep timer or rl__task_wake resumes it */
    }
    lua_pop(co, nres);
    lua_pushstring(co, "a ringlet handler or callback yielded outside "
                       "ringlet.sleep and ringlet.queue");
    st = LUA_ERRRUN;
  }
  if (st != LUA_OK) {
    const char *msg = lua_tostring(co, -1);
    if (msg == NULL)
      msg = lua_pushfstring(co, "(error object is a %s value)",
                            luaL_typename(co, -1));
    luaL_traceback(L, co, msg, 0);
    lua_xmove(L, co, 1);
    nres = 1;
  }
  if (t->done)
    t->done(t, co, st, nres);
  task_finish(t->ctx, L, t, st);
  return NULL;
}

/* Resume t's coroutine with nargs values on its stack. Returns t while it
 * is suspended, NULL once it finished. */
static rl_task *task_resume(lua_State *L, rl_task *t, int nargs) {
  int nres = 0;
  int st = lua_resume(t->co, L, nargs, &nres);
  return task_after(L, t, st, nres);
}

/* A new task with its coroutine, not yet running. May raise on memory. */
static rl_task *task_new(rl_ctx *ctx, lua_State *L) {
  rl_task *t = malloc(sizeof *t);
  if (t == NULL)
    luaL_error(L, "out of memory");
  memset(t, 0, sizeof *t);
  t->ctx = ctx;
  t->co = lua_newthread(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->tasks_ref);
  lua_pushvalue(L, -2);
  lua_pushlightuserdata(L, t);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  t->co_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops the thread */
  lua_pushboolean(L, 0);
  t->arg_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return t;
}

rl_task *rl__task_start(rl_ctx *ctx, lua_State *L, int anchor, int nargs,
                        rl_task_cb done, void *data, rl_task **slot) {
  if (anchor)
    anchor = lua_absindex(L, anchor);
  rl_task *t = ctx->npool > 0 ? ctx->pool[--ctx->npool] : task_new(ctx, L);
  t->done = done;
  t->data = data;
  if (anchor) {
    lua_pushvalue(L, anchor);
    lua_rawseti(L, LUA_REGISTRYINDEX, t->arg_ref); /* the slot exists */
    t->has_arg = 1;
  }
  if (slot)
    *slot = t; /* the owner can detach it even before it first yields */
  lua_xmove(L, t->co, nargs + 1);
  return task_resume(L, t, nargs);
}

static int pool_task_p(lua_State *L) {
  rl_ctx *ctx = lua_touserdata(L, 1);
  ctx->pool[ctx->npool++] = task_new(ctx, L);
  return 0;
}

typedef struct {
  rl_task *t;
  int st, nres;
} after_args;

static int after_p(lua_State *L) {
  after_args *a = lua_touserdata(L, 1);
  (void)task_after(L, a->t, a->st, a->nres);
  return 0;
}

int rl__task_run(rl_ctx *ctx, lua_State *L, int nargs, lua_CFunction entry,
                 void *ud, rl_task_cb done, void *data, rl_task **slot) {
  if (ctx->npool == 0) {
    if (rl__protect(ctx, L, pool_task_p, ctx) != LUA_OK) {
      lua_pop(L, nargs);
      return -1;
    }
  }
  rl_task *t = ctx->pool[--ctx->npool];
  lua_State *co = t->co;
  t->done = done;
  t->data = data;
  if (slot)
    *slot = t;
  lua_pushcfunction(co, entry); /* a pooled coroutine has LUA_MINSTACK */
  lua_pushlightuserdata(co, ud);
  lua_xmove(L, co, nargs);
  int nres = 0;
  /* running until the done callback returned: user code it runs (a
   * response's metamethods under a pcall of its own) must not run the
   * loop in place either */
  ctx->running++;
  int st = lua_resume(co, L, nargs + 1, &nres);
  if (st == LUA_OK || (st == LUA_YIELD && (t->sleep || t->parked))) {
    (void)task_after(L, t, st, nres); /* raises nothing (see rl_task_cb) */
    ctx->running--;
    return LUA_OK;
  }
  ctx->running--;
  after_args a = {t, st, nres}; /* the traceback and the message allocate */
  return rl__protect(ctx, L, after_p, &a);
}

/* ---- parked tasks -------------------------------------------------------- */

static void list_unlink(rl_task **head, rl_task *t) {
  if (t->prev)
    t->prev->next = t->next;
  else
    *head = t->next;
  if (t->next)
    t->next->prev = t->prev;
  t->prev = t->next = NULL;
}

void rl__task_park(rl_task *t, lua_State *L) {
  rl_ctx *ctx = t->ctx;
  t->parked = 1;
  t->wait_top = lua_gettop(L);
  t->prev = NULL;
  t->next = ctx->parked;
  if (ctx->parked)
    ctx->parked->prev = t;
  ctx->parked = t;
}

static int wake_p(lua_State *L) {
  rl_task *t = lua_touserdata(L, 1);
  t->parked = 3;
  (void)task_resume(L, t, t->nwake);
  return 0;
}

int rl__task_resumed(rl_task *t) {
  if (t->parked != 3)
    return 0;
  t->parked = 0;
  return 1;
}

int rl__task_repark_k(lua_State *L, rl_task *t, lua_KFunction k,
                      lua_KContext ctx) {
  /* drop what the hand-made resume passed; keep a wake's values */
  lua_settop(L, t->wait_top + (t->parked == 2 ? t->nwake : 0));
  return lua_yieldk(L, 0, ctx, k);
}

int rl__task_repark(lua_State *L, rl_task *t, lua_KFunction k) {
  return rl__task_repark_k(L, t, k, (lua_KContext)t);
}

/* Resume ready tasks, those they wake included (a value passed along a
 * chain of tasks goes in one turn), up to RL_WAKE_BUDGET a turn: two
 * tasks passing values to each other forever still let the loop serve
 * everyone else. */
#define RL_WAKE_BUDGET 256

static void wake_cb(uv_check_t *h) {
  rl_ctx *ctx = h->data;
  for (int n = 0; ctx->ready && n < RL_WAKE_BUDGET; n++) {
    rl_task *t = ctx->ready;
    list_unlink(&ctx->ready, t);
    if (ctx->ready == NULL)
      ctx->ready_tail = NULL;
    rl__protect(ctx, ctx->L, wake_p, t);
  }
  if (ctx->ready == NULL) {
    uv_check_stop(ctx->wake);
    uv_idle_stop(ctx->spin);
  }
}

static void spin_cb(uv_idle_t *h) { (void)h; }

static void handle_closed(uv_handle_t *h) {
  rl_ctx *ctx = h->data;
  ctx->handles--;
  free(h);
}

void rl__task_wake(rl_task *t, lua_State *L, int nargs) {
  rl_ctx *ctx = t->ctx;
  if (ctx->wake == NULL) {
    uv_check_t *wake = malloc(sizeof *wake);
    uv_idle_t *spin = malloc(sizeof *spin);
    if (wake == NULL || spin == NULL) {
      free(wake);
      free(spin);
      luaL_error(L, "out of memory");
    }
    uv_check_init(ctx->io.loop, wake);
    uv_idle_init(ctx->io.loop, spin);
    wake->data = spin->data = ctx;
    ctx->handles += 2;
    ctx->wake = wake;
    ctx->spin = spin;
  }
  lua_xmove(L, t->co, nargs);
  t->nwake = nargs;
  list_unlink(&ctx->parked, t);
  t->parked = 2;
  t->prev = ctx->ready_tail;
  if (ctx->ready_tail)
    ctx->ready_tail->next = t;
  else
    ctx->ready = t;
  ctx->ready_tail = t;
  uv_check_start(ctx->wake, wake_cb);
  uv_idle_start(ctx->spin, spin_cb);
}

static void log_done(rl_task *t, lua_State *co, int status, int nres) {
  (void)nres;
  if (status != LUA_OK)
    rl__log("%s: %s", (const char *)t->data, lua_tostring(co, -1));
}

void rl__call_cb(rl_ctx *ctx, lua_State *L, int nargs, const char *what) {
  (void)rl__task_start(ctx, L, 0, nargs, log_done, (void *)what, NULL);
}

/* ---- timers -------------------------------------------------------------- */

static void timer_unlink(rl_timer *tm) {
  if (tm->prev)
    tm->prev->next = tm->next;
  else
    tm->ctx->timers = tm->next;
  if (tm->next)
    tm->next->prev = tm->prev;
  tm->next = tm->prev = NULL;
}

static void timer_closed(uv_handle_t *h) {
  rl_timer *tm = h->data;
  tm->ctx->handles--;
  free(tm);
}

/* Stop and free tm; drop its Lua refs unless the state is closing. */
static void timer_release(lua_State *L, rl_timer *tm) {
  timer_unlink(tm);
  if (tm->ud)
    *tm->ud = NULL;
  if (L && !tm->ctx->closing) {
    luaL_unref(L, LUA_REGISTRYINDEX, tm->fn_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, tm->self_ref);
  }
  tm->fn_ref = tm->self_ref = LUA_NOREF;
  if (L == NULL && tm->task) {
    free(tm->task); /* lua_close: the sleeping task will never resume */
    tm->task = NULL;
  }
  uv_close((uv_handle_t *)&tm->h, timer_closed);
}

static rl_timer *timer_new(lua_State *L, rl_ctx *ctx, uint64_t ms,
                           uv_timer_cb cb) {
  rl_timer *tm = malloc(sizeof *tm);
  if (tm == NULL)
    luaL_error(L, "out of memory");
  memset(tm, 0, sizeof *tm);
  tm->ctx = ctx;
  tm->fn_ref = tm->self_ref = LUA_NOREF;
  uv_timer_init(ctx->io.loop, &tm->h);
  tm->h.data = tm;
  ctx->handles++;
  tm->next = ctx->timers;
  if (ctx->timers)
    ctx->timers->prev = tm;
  ctx->timers = tm;
  uv_timer_start(&tm->h, cb, ms, 0);
  return tm;
}

static int sleep_wake_p(lua_State *L) {
  rl_timer *tm = lua_touserdata(L, 1);
  rl_task *t = tm->task;
  t->sleep = NULL;
  timer_release(L, tm);
  (void)task_resume(L, t, 0);
  return 0;
}

static void sleep_cb(uv_timer_t *h) {
  rl_timer *tm = h->data;
  rl__protect(tm->ctx, tm->ctx->L, sleep_wake_p, tm);
}

/* ringlet.sleep(ms): suspend the calling handler or callback; the loop
 * serves everyone else meanwhile. */
rl_task *rl__current_task(lua_State *L) {
  rl_ctx *ctx = rl__ctx(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, ctx->tasks_ref);
  lua_pushthread(L);
  lua_rawget(L, -2);
  rl_task *t = lua_touserdata(L, -1);
  lua_pop(L, 2);
  return t && t->done ? t : NULL; /* pooled tasks are not running */
}

/* Resumed: by the sleep timer (t->sleep cleared), or by hand (then it
 * goes on sleeping: the timer resumes it). */
static int sleep_k(lua_State *L, int status, lua_KContext k) {
  rl_task *t = (rl_task *)k;
  (void)status;
  if (t->sleep) {
    lua_settop(L, t->wait_top);
    return lua_yieldk(L, 0, k, sleep_k);
  }
  return 0;
}

int rl__wait_mode(lua_State *L, rl_task **t) {
  rl_task *cur = rl__current_task(L);
  if (cur && lua_isyieldable(L)) {
    if (t)
      *t = cur;
    return 1;
  }
  rl_ctx *ctx = rl__ctx(L);
  return ctx->protected > 0 || ctx->running > 0 ? -1 : 0;
}

static void until_timer_cb(uv_timer_t *t) { *(int *)t->data = 1; }

int rl__run_until(rl_ctx *ctx, int (*done)(void *ud), void *ud, uint64_t ms) {
  if (ctx->protected > 0 || ctx->running > 0)
    return -1;
  int timed_out = 0;
  uv_timer_t *t = NULL;
  if (ms > 0 && (t = malloc(sizeof *t)) != NULL) {
    uv_timer_init(ctx->io.loop, t);
    t->data = &timed_out;
    uv_timer_start(t, until_timer_cb, ms, 0);
  }
  int r = 0;
  while (!done(ud)) {
    if (timed_out) {
      r = 1;
      break;
    }
    if (uv_run(ctx->io.loop, UV_RUN_ONCE) == 0 && !done(ud) && !timed_out) {
      r = 1; /* nothing left that could make it done */
      break;
    }
  }
  if (t) {
    t->data = NULL;
    uv_close((uv_handle_t *)t, rl__handle_free);
    uv_run(ctx->io.loop, UV_RUN_NOWAIT); /* lets it close */
  }
  return r;
}

static int never(void *ud) {
  (void)ud;
  return 0;
}

int rl__l_sleep(lua_State *L) {
  lua_Integer ms = luaL_checkinteger(L, 1);
  luaL_argcheck(L, ms >= 0, 1, "must be >= 0");
  rl_ctx *ctx = rl__ctx(L);
  rl_task *t = rl__current_task(L);
  if (rl__wait_mode(L, NULL) == 0) { /* a script: the loop runs meanwhile */
    if (ms > 0)
      rl__run_until(ctx, never, NULL, (uint64_t)ms);
    return 0;
  }
  if (t == NULL || !lua_isyieldable(L))
    return luaL_error(L, "ringlet.sleep: call it inside a handler or "
                         "callback run by ringlet");
  rl_timer *tm = timer_new(L, ctx, (uint64_t)ms, sleep_cb);
  tm->task = t;
  t->sleep = &tm->h;
  t->wait_top = lua_gettop(L);
  return lua_yieldk(L, 0, (lua_KContext)t, sleep_k);
}

static void timer_fire_cb(uv_timer_t *h);

static int timer_fire_p(lua_State *L) {
  rl_timer *tm = lua_touserdata(L, 1);
  rl_ctx *ctx = tm->ctx;
  lua_rawgeti(L, LUA_REGISTRYINDEX, tm->fn_ref);
  timer_release(L, tm);
  rl__call_cb(ctx, L, 0, "timer callback");
  return 0;
}

static void timer_fire_cb(uv_timer_t *h) {
  rl_timer *tm = h->data;
  rl__protect(tm->ctx, tm->ctx->L, timer_fire_p, tm);
}

/* ringlet.timer(ms, fn): call fn once after ms; returns a handle whose
 * :cancel() stops it (true if it was pending). */
int rl__l_timer(lua_State *L) {
  lua_Integer ms = luaL_checkinteger(L, 1);
  luaL_argcheck(L, ms >= 0, 1, "must be >= 0");
  luaL_checktype(L, 2, LUA_TFUNCTION);
  rl_ctx *ctx = rl__ctx(L);
  rl_timer **ud = lua_newuserdatauv(L, sizeof *ud, 0);
  *ud = NULL;
  luaL_setmetatable(L, RL_TIMER_MT);
  rl_timer *tm = timer_new(L, ctx, (uint64_t)ms, timer_fire_cb);
  *ud = tm;
  tm->ud = ud;
  lua_pushvalue(L, 2);
  tm->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, -1);
  tm->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

static int timer_cancel(lua_State *L) {
  rl_timer **ud = luaL_checkudata(L, 1, RL_TIMER_MT);
  if (*ud == NULL) {
    lua_pushboolean(L, 0);
    return 1;
  }
  timer_release(L, *ud);
  lua_pushboolean(L, 1);
  return 1;
}

static int timer_tostring(lua_State *L) {
  rl_timer **ud = luaL_checkudata(L, 1, RL_TIMER_MT);
  lua_pushfstring(L, "ringlet.timer (%s)", *ud ? "pending" : "done");
  return 1;
}

void rl__timer_open_lib(lua_State *L) {
  static const luaL_Reg methods[] = {{"cancel", timer_cancel}, {NULL, NULL}};
  luaL_newmetatable(L, RL_TIMER_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, timer_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}

/* ---- the context ----------------------------------------------------------
 */

/* lua_close: close every handle without calling Lua, let libuv run the
 * close callbacks that free memory, then free the context. */
static int ctx_gc(lua_State *L) {
  rl_ctx **pp = lua_touserdata(L, 1);
  rl_ctx *ctx = *pp;
  if (ctx == NULL)
    return 0;
  ctx->closing = 1;
  if (ctx->on_close)
    ctx->on_close(ctx); /* the module stops its servers */
  while (ctx->timers)
    timer_release(NULL, ctx->timers);
  for (int i = 0; i < ctx->npool; i++)
    free(ctx->pool[i]);
  ctx->npool = 0;
  /* parked and woken tasks will never resume (Lua frees their threads) */
  for (rl_task **list = &ctx->parked; list;
       list = list == &ctx->parked ? &ctx->ready : NULL) {
    while (*list) {
      rl_task *t = *list;
      *list = t->next;
      free(t);
    }
  }
  ctx->ready_tail = NULL;
  if (ctx->wake) {
    uv_close((uv_handle_t *)ctx->wake, handle_closed);
    uv_close((uv_handle_t *)ctx->spin, handle_closed);
    ctx->wake = NULL;
    ctx->spin = NULL;
  }
  rl__io_close(&ctx->io);
  uv_loop_t *loop = ctx->io.loop;
  for (int i = 0; i < 1000 && ctx->handles + ctx->io.handles > 0; i++)
    uv_run(loop, UV_RUN_NOWAIT);
  if (ctx->handles + ctx->io.handles == 0) {
    if (loop == uv_default_loop())
      uv_loop_close(loop);
    rl__io_free(&ctx->io);
    free(ctx);
  }
  *pp = NULL;
  return 0;
}

void rl__ctx_open(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &ctx_key);
  int have = !lua_isnil(L, -1);
  lua_pop(L, 1);
  if (have)
    return;
  rl_ctx **pp = lua_newuserdatauv(L, sizeof *pp, 0);
  *pp = NULL;
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, ctx_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  rl_ctx *ctx = calloc(1, sizeof *ctx);
  if (ctx == NULL)
    luaL_error(L, "out of memory");
  *pp = ctx;
  lua_rawsetp(L, LUA_REGISTRYINDEX, &ctx_key);
  lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
  ctx->L = lua_tothread(L, -1);
  lua_pop(L, 1);
  ctx->keys_ref = LUA_NOREF;
  rl__io_init(&ctx->io, uv_default_loop());
  lua_newtable(L);
  ctx->tasks_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

int ringlet_set_loop(lua_State *L, uv_loop_t *loop) {
  rl_ctx *ctx = rl__ctx(L);
  if (ctx == NULL)
    return UV_EINVAL;
  if (ctx->io.loop == loop)
    return 0;
  if (ctx->handles > 0 || ctx->io.handles > 2) /* beyond the flusher and
                                                    the deadline timer */
    return UV_EBUSY;
  uv_loop_t *old = ctx->io.loop;
  rl__io_close(&ctx->io);
  uv_run(old, UV_RUN_NOWAIT); /* lets the idle handle finish closing */
  rl__io_init(&ctx->io, loop);
  return 0;
}

uv_loop_t *ringlet_get_loop(lua_State *L) {
  rl_ctx *ctx = rl__ctx(L);
  return ctx ? ctx->io.loop : NULL;
}
