/* Channels: as_channel's one object over two protocols, an HTTP stream
 * (chunked streaming, long-polling) and a WebSocket, with the user's
 * callbacks.
 *
 * Owns: the channel userdata's C state (in the userdata), its timers, its
 * sends waiting to be written. May call: http.h, ws.h, ctx.h, conn.h,
 * base.h, Lua; nothing above (the server tells it of HTTP events by
 * calling rl__channel_written and rl__channel_detach; a WebSocket through
 * the callbacks the channel registered). */
#ifndef RL_CHANNEL_H
#define RL_CHANNEL_H

#include "ctx.h"
#include "http.h"
#include "ws.h"

#define RL_CHANNEL_MT "ringlet.channel"

typedef struct rl_channel rl_channel;

rl_channel *rl__channel_test(lua_State *L, int idx);
/* as_channel(req, opts) at index 1 and 2: push the response that turns the
 * request being answered on h into a channel. h is NULL when L's task is
 * not that request's handler or its connection is gone (the channel is
 * then born closed). */
int rl__channel_new(lua_State *L, rl_http *h);
/* The handler returned a channel's response (at ridx; the channel on the
 * top): take over h, as a stream or by upgrading it to a WebSocket whose
 * messages may be up to max_ws bytes. */
int rl__channel_attach(rl_channel *ch, rl_http *h, lua_State *L, int ridx,
                       size_t max_ws, const char **err);
/* A client's WebSocket (ringlet.client): push a channel with the
 * as_channel options at index 2, speaking over ws on c (a connection whose
 * 101 came in). Without on_message, messages wait for ch:receive(). Its
 * on_open starts now. Returns the userdata's index. */
int rl__channel_client(lua_State *L, rl_ws *ws, rl_conn *c);
/* An HTTP stream's output reached the socket. */
void rl__channel_written(rl_channel *ch);
/* An HTTP stream's connection is closing: the channel closes (on_close). */
void rl__channel_detach(rl_channel *ch);
void rl__channel_open_lib(lua_State *L);

/* ---- for groups (group.c): a broadcast's fast path ------------------------
 * One message, framed once per transport: the first WebSocket member makes
 * the frame and the first streaming member the chunk; every other member's
 * write queue shares them (rl_shared), so a member costs no copy and no Lua
 * call. The caller drops frame and chunk (rl__shared_unref) at the end. */
typedef struct {
  const char *p;
  size_t n;
  int binary;
  rl_shared *frame; /* the WebSocket frame, once made */
  rl_shared *chunk; /* the HTTP chunk, once made */
} rl_msg;

enum {
  RL_DELIVER_SENT,    /* queued */
  RL_DELIVER_SKIPPED, /* closed, closing or not attached yet */
  RL_DELIVER_FULL,    /* over its max_buffered: nothing queued */
  RL_DELIVER_WHOLE    /* an HTTP channel that has sent nothing (long
                         polling): answer it with ch:send(msg, {close=true}) */
};
/* Attached and not closing: it may join a group. */
int rl__channel_open(const rl_channel *ch);
/* An HTTP channel that has sent nothing yet: a long poll, which a group
 * answers with a whole response. */
int rl__channel_is_poll(const rl_channel *ch);
/* Over its max_buffered: a group skips it (rl__channel_full). */
int rl__channel_is_full(const rl_channel *ch);
/* The channel at idx left all its groups: forget them. */
void rl__channel_groups_clear(lua_State *L, int idx);
/* Queue m on the channel ch. Runs no Lua. */
int rl__channel_deliver(rl_channel *ch, rl_msg *m);
/* The channel at idx was skipped for being full: close it (1013 on a
 * WebSocket) when close is set, else tell its on_error. */
void rl__channel_full(lua_State *L, int idx, int close);
/* Push the set of groups the channel at idx is in (a table group -> true),
 * made on first use when create is set (else nil when it has none). */
void rl__channel_groups(lua_State *L, int idx, int create);
/* The channel at index uidx is closing (on_close fires): fn removes it from
 * its groups. Registered once by the layer above. */
void rl__channel_on_leave(void (*fn)(lua_State *L, int uidx));

#endif
