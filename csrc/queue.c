/* ringlet.queue (queue.h): values in a table, waiters in two FIFOs.
 *
 * The values are the user value's entries first .. first + count - 1. A
 * put over capacity appends its value at once and parks its task, so the
 * number of parked putters is count - capacity: the take that brings
 * count back to capacity wakes the first of them. A parked taker means
 * there are no values: a put hands its value straight to the taker. */
#include <string.h>

#include "queue.h"

typedef struct {
  rl_ctx **home;     /* the context userdata's pointer (the userdata is this
                        one's user value 2): NULL once lua_close freed it */
  lua_Integer cap;   /* values held before put waits; LUA_MAXINTEGER: none */
  lua_Integer first; /* key of the oldest value */
  lua_Integer count;
  int closed;
  rl_task *takers, *takers_tail;
  rl_task *putters, *putters_tail;
} rl_queue;

static rl_queue *check_q(lua_State *L) {
  rl_queue *q = luaL_checkudata(L, 1, RL_QUEUE_MT);
  if (*q->home == NULL) { /* lua_close: its tasks are gone, and so is ctx */
    q->closed = 1;
    q->takers = q->takers_tail = q->putters = q->putters_tail = NULL;
  }
  return q;
}

/* After a take's or put's yield: woken by the queue (its values are on
 * top), or resumed by hand (it goes on waiting, still in the queue). */
static int resumed_k(lua_State *L, int status, lua_KContext k) {
  rl_task *t = (rl_task *)k;
  (void)status;
  if (rl__task_resumed(t))
    return t->nwake;
  return rl__task_repark(L, t, resumed_k);
}

static void waiter_push(rl_task **head, rl_task **tail, rl_task *t) {
  t->wnext = NULL;
  if (*tail)
    (*tail)->wnext = t;
  else
    *head = t;
  *tail = t;
}

static rl_task *waiter_pop(rl_task **head, rl_task **tail) {
  rl_task *t = *head;
  if (t) {
    *head = t->wnext;
    if (*head == NULL)
      *tail = NULL;
    t->wnext = NULL;
  }
  return t;
}

/* The task that may wait here, or a clear error naming the alternative. */
static rl_task *waiting_task(lua_State *L, const char *what,
                             const char *instead) {
  rl_task *t = rl__current_task(L);
  if (t == NULL || !lua_isyieldable(L))
    luaL_error(L,
               "queue:%s would wait outside a handler or callback run by "
               "ringlet (use queue:%s)",
               what, instead);
  return t;
}

static void append(lua_State *L, rl_queue *q, int vidx) {
  lua_getiuservalue(L, 1, 1);
  lua_pushvalue(L, vidx);
  lua_rawseti(L, -2, q->first + q->count);
  lua_pop(L, 1);
  q->count++;
}

/* Push the oldest value and remove it; wake the putter whose value now
 * fits. */
static void shift(lua_State *L, rl_queue *q) {
  lua_getiuservalue(L, 1, 1);
  lua_rawgeti(L, -1, q->first);
  lua_pushnil(L);
  lua_rawseti(L, -3, q->first);
  lua_remove(L, -2);
  q->first++;
  q->count--;
  if (q->count >= q->cap && q->putters) {
    rl_task *t = waiter_pop(&q->putters, &q->putters_tail);
    lua_pushboolean(L, 1);
    rl__task_wake(t, L, 1);
  }
}

/* A value that is not nil (nil is what take returns once closed). */
static void check_value(lua_State *L, const char *what) {
  if (lua_isnoneornil(L, 2))
    luaL_error(L, "queue:%s: the value must not be nil", what);
}

/* Hand the value at 2 to a waiting taker, if there is one. */
static int hand_over(lua_State *L, rl_queue *q) {
  rl_task *t = waiter_pop(&q->takers, &q->takers_tail);
  if (t == NULL)
    return 0;
  lua_pushvalue(L, 2);
  rl__task_wake(t, L, 1);
  return 1;
}

/* q:put(v): true once v is in the queue (waiting while it is over its
 * capacity), false when the queue is closed. */
static int q_put(lua_State *L) {
  rl_queue *q = check_q(L);
  check_value(L, "put");
  if (q->closed) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (hand_over(L, q)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (q->count < q->cap) {
    append(L, q, 2);
    lua_pushboolean(L, 1);
    return 1;
  }
  rl_task *t = waiting_task(L, "put", "offer");
  append(L, q, 2);
  waiter_push(&q->putters, &q->putters_tail, t);
  rl__task_park(t, L);
  return lua_yieldk(L, 0, (lua_KContext)t, resumed_k); /* woken with true */
}

/* q:offer(v): put without waiting; false when full or closed. */
static int q_offer(lua_State *L) {
  rl_queue *q = check_q(L);
  check_value(L, "offer");
  int ok = 0;
  if (!q->closed && !(ok = hand_over(L, q)) && q->count < q->cap) {
    append(L, q, 2);
    ok = 1;
  }
  lua_pushboolean(L, ok);
  return 1;
}

/* q:take(): the oldest value, waiting for one; nil once the queue is
 * closed and empty. */
static int q_take(lua_State *L) {
  rl_queue *q = check_q(L);
  if (q->count > 0) {
    shift(L, q);
    return 1;
  }
  if (q->closed) {
    lua_pushnil(L);
    return 1;
  }
  rl_task *t = waiting_task(L, "take", "poll");
  waiter_push(&q->takers, &q->takers_tail, t);
  rl__task_park(t, L);
  return lua_yieldk(L, 0, (lua_KContext)t, resumed_k); /* a value, or nil */
}

/* q:poll(): the oldest value, or nil at once. */
static int q_poll(lua_State *L) {
  rl_queue *q = check_q(L);
  if (q->count == 0) {
    lua_pushnil(L);
    return 1;
  }
  shift(L, q);
  return 1;
}

/* q:close(): no more puts; waiting takers get nil, waiting putters true
 * (their values stay to be taken). True if this call closed it. */
static int q_close(lua_State *L) {
  rl_queue *q = check_q(L);
  if (q->closed) {
    lua_pushboolean(L, 0);
    return 1;
  }
  q->closed = 1;
  rl_task *t;
  while ((t = waiter_pop(&q->takers, &q->takers_tail))) {
    lua_pushnil(L);
    rl__task_wake(t, L, 1);
  }
  while ((t = waiter_pop(&q->putters, &q->putters_tail))) {
    lua_pushboolean(L, 1);
    rl__task_wake(t, L, 1);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int q_is_closed(lua_State *L) {
  lua_pushboolean(L, check_q(L)->closed);
  return 1;
}

static int q_len(lua_State *L) {
  lua_pushinteger(L, check_q(L)->count);
  return 1;
}

static int q_tostring(lua_State *L) {
  rl_queue *q = check_q(L);
  lua_pushfstring(L, "ringlet.queue (%I values%s)", q->count,
                  q->closed ? ", closed" : "");
  return 1;
}

int rl__l_queue(lua_State *L) {
  lua_Integer cap = LUA_MAXINTEGER;
  if (!lua_isnoneornil(L, 1)) {
    cap = luaL_checkinteger(L, 1);
    luaL_argcheck(L, cap >= 0, 1, "capacity must be >= 0");
  }
  rl_queue *q = lua_newuserdatauv(L, sizeof *q, 2);
  memset(q, 0, sizeof *q);
  q->cap = cap;
  q->first = 1;
  luaL_setmetatable(L, RL_QUEUE_MT);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
  q->home = rl__ctx_push(L);
  lua_setiuservalue(L, -2, 2);
  return 1;
}

void rl__queue_open_lib(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"put", q_put},   {"offer", q_offer}, {"take", q_take},
      {"poll", q_poll}, {"close", q_close}, {"is_closed", q_is_closed},
      {NULL, NULL}};
  luaL_newmetatable(L, RL_QUEUE_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, q_len);
  lua_setfield(L, -2, "__len");
  lua_pushcfunction(L, q_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}
