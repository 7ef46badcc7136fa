/* ringlet.queue: a FIFO of Lua values that tasks wait on. take() parks the
 * calling task until a value or a close comes; put() parks it while the
 * queue is over its capacity. Nothing polls: a put or close wakes the
 * waiter through the context's ready list (ctx.h rl__task_wake).
 *
 * Owns: the queue userdata (values in its user value; waiters are the
 * context's tasks, linked through rl_task.wnext). May call: ctx.h,
 * base.h, Lua. */
#ifndef RL_QUEUE_H
#define RL_QUEUE_H

#include "ctx.h"

#define RL_QUEUE_MT "ringlet.queue"

/* ringlet.queue([capacity]) */
int rl__l_queue(lua_State *L);
void rl__queue_open_lib(lua_State *L);

#endif
