/* Channels (channel.h): as_channel's one object over two protocols. This
 * file holds the channel userdata, its HTTP stream (chunked streaming and
 * long-polling) and its WebSocket side, behind the same methods.
 *
 * Lifetime: the channel lives in its userdata's memory. While it is attached
 * to a connection (open, or closed with sends not yet written) or a callback
 * of it runs, one registry reference anchors it (anchor_ref), so the C
 * pointers the connection and tasks keep stay valid. Taken at attach (or
 * before), dropped when neither holds: an open channel's callbacks cost no
 * registry work.
 *
 * Owns: the channel's C state, timers and pending sends. May call: http.h,
 * ws.h, ctx.h, conn.h, base.h, Lua. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "channel.h"

/* user values of the channel userdata */
enum {
  CH_OPTS = 1,
  CH_REQ = 2,
  CH_RESP = 3,
  CH_ON_MESSAGE = 4,
  CH_GROUPS = 5, /* the groups it is in: group -> true (group.c's) */
  CH_STREAM = 6, /* a send streamed piece by piece: {src=, ok=, err=} and
                    the sends made meanwhile, [i] = {message, opts} */
  CH_NUV = 6
};

typedef struct {
  uint64_t mark; /* done when conn->written_total reaches it */
  int ok_ref;    /* registry: on_success or LUA_NOREF */
  int err_ref;   /* registry: on_error or LUA_NOREF */
} rl_send;

struct rl_channel {
  rl_ctx *ctx;
  rl_conn *conn;      /* attached connection, NULL once released */
  rl_http *http;      /* its HTTP stream, while attached as one */
  rl_ws *sock;        /* its WebSocket, while attached as one */
  rl_http *origin;    /* the exchange of the request it was made for */
  uint64_t origin_id; /* and its connection's id: an address may be reused */
  uint64_t timeout;   /* ms, 0 = none */
  uv_timer_t *timer;  /* malloc'd; freed by its close callback */
  uint64_t ping_interval; /* ms, 0 = none */
  uv_timer_t *ping;       /* malloc'd; freed by its close callback */
  size_t max_buffered;    /* bytes queued past which send refuses */
  /* a file or iterator sent piece by piece (CH_STREAM holds it) */
  int64_t src_left;  /* bytes still owed under Content-Length; -1: to EOF */
  rl_task *src_task; /* the iterator's call in flight */
  lua_Integer pend_head, pend_tail; /* CH_STREAM[head .. tail - 1] */
  rl_send *sends; /* malloc'd FIFO of sends waiting to be written */
  /* a client's WebSocket (ringlet.client) */
  lua_Integer in_head, in_tail; /* CH_ON_MESSAGE as an inbox: [head, tail) */
  rl_task *receiver;            /* a task waiting in receive() */
  uv_timer_t *recv_timer;       /* malloc'd: its timeout */
  int anchor_ref; /* registry: the userdata while attached or running */
  int running;    /* callbacks running */
  uint32_t nsends, send_head, send_cap; /* sends: [head, head + n) */
  /* flags, in bits: an idle channel is kept per connection */
  uint8_t closed : 1;           /* closed: is_open() false, send returns nil */
  uint8_t close_fired : 1;      /* on_close has been called */
  uint8_t head_sent : 1;        /* an HTTP stream's head is out */
  uint8_t framing : 2;          /* RL_FRAME_* of the response once it is */
  uint8_t ws : 1;               /* the WebSocket transport */
  uint8_t ping_outstanding : 1; /* a ping went out and no pong came back */
  uint8_t has_drain : 1;        /* opts.on_drain is set */
  uint8_t in_groups : 1;        /* CH_GROUPS holds a table */
  uint8_t by_server : 1;        /* the server side started closing it */
  uint8_t streaming : 1;        /* a source is being sent */
  uint8_t src_binary : 1;       /* WebSocket: its pieces are binary messages */
  uint8_t src_close : 1;        /* close the channel once it is sent */
  uint8_t pumping : 1;          /* stream_pump's loop is running */
  uint8_t replaying : 1;        /* stream_drain is sending a waiting send */
  uint8_t src_file : 1;         /* the source is a file (CH_STREAM.src), not an
                               iterator; read through its luaL_Stream each time, so
                               a file the user closed meanwhile is never read */
  uint8_t draining : 1;         /* stream_drain's loop is running */
  uint8_t client : 1;    /* this end is the client: initiator names flip */
  uint8_t in_paused : 1; /* reading stopped: the inbox is full */
};

#define CH_INBOX_MAX 64 /* messages waiting before reading stops */

static const char *const ch_opts[] = {
    "on_open",       "on_message",   "on_close", "on_error",
    "on_pong",       "on_ping",      "on_drain", "timeout",
    "ping_interval", "max_buffered", "origins",  NULL};

/* A response's status at idx read as rl__respond reads it: an integer, or
 * a string or float that is one; nil is 200; anything else (or out of
 * 100-999) is 0, which rl__http_write_head refuses. */
static int status_at(lua_State *L, int idx) {
  if (lua_isnil(L, idx))
    return 200;
  int ok;
  lua_Integer s = lua_tointegerx(L, idx, &ok);
  return ok && s >= 100 && s <= 999 ? (int)s : 0;
}

rl_channel *rl__channel_test(lua_State *L, int idx) {
  return luaL_testudata(L, idx, RL_CHANNEL_MT);
}

/* The channel at index 1. Methods and metamethods have the metatable as
 * their upvalue: one comparison instead of luaL_checkudata's lookup of the
 * metatable by name. */
static rl_channel *check_ch(lua_State *L) {
  rl_channel *ch = lua_touserdata(L, 1);
  if (ch == NULL || !lua_getmetatable(L, 1))
    luaL_typeerror(L, 1, RL_CHANNEL_MT);
  /* (both are tables: the same table has the same address) */
  if (lua_topointer(L, -1) != lua_topointer(L, lua_upvalueindex(1)))
    luaL_typeerror(L, 1, RL_CHANNEL_MT);
  lua_pop(L, 1);
  return ch;
}

static void push_self(lua_State *L, rl_channel *ch) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, ch->anchor_ref);
}

/* Drop the anchor once the channel is neither attached nor running. */
static void ch_unanchor_if_idle(lua_State *L, rl_channel *ch) {
  if (ch->conn || ch->running > 0 || ch->anchor_ref == LUA_NOREF)
    return;
  if (!ch->ctx->closing)
    luaL_unref(L, LUA_REGISTRYINDEX, ch->anchor_ref);
  ch->anchor_ref = LUA_NOREF;
}

/* ---- calling the user's callbacks -----------------------------------------
 */

static void ch_unhold(lua_State *L, rl_channel *ch) {
  ch->running--;
  ch_unanchor_if_idle(L, ch);
}

static void call_on_error(lua_State *L, rl_channel *ch, int uidx,
                          const char *err);

typedef struct {
  rl_channel *ch;
  lua_State *co; /* the finished task's */
  int status, nres;
} done_args;

static int cb_error_p(lua_State *L) {
  done_args *a = lua_touserdata(L, 1);
  /* the channel userdata is the coroutine's first value no more; push it
   * from the anchor */
  push_self(L, a->ch);
  call_on_error(L, a->ch, lua_gettop(L), lua_tostring(a->co, -1));
  return 0;
}

/* A task's done callback runs unprotected when the task was started from
 * a handler or callback that rl__task_run started (no pcall on ctx->L):
 * what may raise on ctx->L goes through rl__protect. */
static void cb_done(rl_task *t, lua_State *co, int status, int nres) {
  rl_channel *ch = t->data;
  if (status != LUA_OK) {
    done_args a = {ch, co, status, nres};
    rl__protect(ch->ctx, ch->ctx->L, cb_error_p, &a);
  }
  ch_unhold(ch->ctx->L, ch);
}

static void err_done(rl_task *t, lua_State *co, int status, int nres) {
  rl_channel *ch = t->data;
  (void)nres;
  if (status != LUA_OK)
    rl__log("on_error failed: %s", lua_tostring(co, -1));
  ch_unhold(ch->ctx->L, ch);
}

/* Call fn (below nargs args on L) in a task; its errors go to on_error
 * (or are only logged, for on_error itself). The channel is anchored
 * (attached, or another callback runs) and stays so until it is done. */
static void ch_start(lua_State *L, rl_channel *ch, int nargs, int is_err) {
  ch->running++;
  (void)rl__task_start(ch->ctx, L, 0, nargs, is_err ? err_done : cb_done, ch,
                       NULL);
}

/* Push the channel's option `name` (nil when not given); its type. A
 * channel given no option but on_message keeps no options table. */
static int ch_opt(lua_State *L, int uidx, const char *name) {
  if (lua_getiuservalue(L, uidx, CH_OPTS) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_pushnil(L);
    return LUA_TNIL;
  }
  int t = lua_getfield(L, -1, name);
  lua_remove(L, -2);
  return t;
}

/* Call opts[name](ch, ...) with nargs extra args already on L. The
 * userdata is at uidx. */
static void ch_call(lua_State *L, rl_channel *ch, int uidx, const char *name,
                    int nargs) {
  if (ch_opt(L, uidx, name) == LUA_TNIL) {
    lua_pop(L, 1 + nargs);
    return;
  }
  lua_insert(L, -1 - nargs);
  lua_pushvalue(L, uidx);
  lua_insert(L, -1 - nargs);
  ch_start(L, ch, nargs + 1, strcmp(name, "on_error") == 0);
}

static void call_on_error(lua_State *L, rl_channel *ch, int uidx,
                          const char *err) {
  lua_pushstring(L, err ? err : "(no message)");
  int have = ch_opt(L, uidx, "on_error") != LUA_TNIL;
  lua_pop(L, 1);
  if (!have) {
    rl__log("channel error: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return;
  }
  ch_call(L, ch, uidx, "on_error", 1);
}

/* ---- sends waiting for their bytes to be written ------------------------- */

static int push_send(lua_State *L, rl_channel *ch, uint64_t mark, int ok_idx,
                     int err_idx) {
  if (ok_idx == 0 && err_idx == 0)
    return 0;
  if (ch->send_head + ch->nsends == ch->send_cap) {
    if (ch->send_head > 0) {
      memmove(ch->sends, ch->sends + ch->send_head,
              ch->nsends * sizeof *ch->sends);
      ch->send_head = 0;
    } else {
      size_t cap = ch->send_cap ? ch->send_cap * 2 : 4;
      rl_send *p = realloc(ch->sends, cap * sizeof *p);
      if (p == NULL)
        return luaL_error(L, "out of memory");
      ch->sends = p;
      ch->send_cap = cap;
    }
  }
  rl_send *s = &ch->sends[ch->send_head + ch->nsends];
  s->mark = mark;
  s->ok_ref = s->err_ref = LUA_NOREF;
  if (ok_idx) {
    lua_pushvalue(L, ok_idx);
    s->ok_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (err_idx) {
    lua_pushvalue(L, err_idx);
    s->err_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  ch->nsends++;
  return 0;
}

/* Fire on_success for sends written (ok) or on_error for all (failed). */
static void settle_sends(lua_State *L, rl_channel *ch, int failed) {
  uint64_t written = ch->conn ? ch->conn->written_total : 0;
  while (ch->nsends > 0) {
    rl_send s = ch->sends[ch->send_head];
    if (!failed && s.mark > written)
      break;
    ch->send_head++;
    ch->nsends--;
    int ref = failed ? s.err_ref : s.ok_ref;
    luaL_unref(L, LUA_REGISTRYINDEX, failed ? s.ok_ref : s.err_ref);
    if (ref == LUA_NOREF)
      continue;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    int nargs = 0;
    if (failed) {
      lua_pushliteral(L, "connection closed before the message was sent");
      nargs = 1;
    }
    ch_start(L, ch, nargs, 0);
  }
  if (ch->nsends == 0)
    ch->send_head = 0;
}

/* ---- closing
 * ------------------------------------------------------------------ */

static void ch_stop_timer(rl_channel *ch) {
  if (ch->timer) {
    ch->timer->data = NULL;
    uv_close((uv_handle_t *)ch->timer, rl__handle_free);
    ch->timer = NULL;
  }
  if (ch->ping) {
    ch->ping->data = NULL;
    uv_close((uv_handle_t *)ch->ping, rl__handle_free);
    ch->ping = NULL;
  }
}

static uv_timer_t *ch_timer(rl_channel *ch, uv_timer_cb cb, uint64_t ms,
                            uint64_t repeat) {
  uv_timer_t *t = malloc(sizeof *t);
  if (t) {
    uv_timer_init(ch->ctx->io.loop, t);
    t->data = ch;
    uv_timer_start(t, cb, ms, repeat);
  }
  return t;
}

static void timeout_cb(uv_timer_t *t);

/* WebSocket activity: the idle timeout starts over. */
static void ch_touch(rl_channel *ch) {
  if (ch->ws && ch->timer)
    uv_timer_start(ch->timer, timeout_cb, ch->timeout, 0);
}

static size_t ch_buffered(rl_channel *ch) {
  rl_conn *c = ch->conn;
  return c ? rl__conn_buffered(c) : 0;
}

/* Let go of the connection. */
static void ch_release(lua_State *L, rl_channel *ch, int response_done) {
  rl_conn *c = ch->conn;
  if (c == NULL)
    return;
  rl_http *h = ch->http;
  ch->conn = NULL;
  ch->http = NULL;
  ch->sock = NULL;
  if (h)
    h->stream = NULL;
  ch_stop_timer(ch);
  ch_unanchor_if_idle(L, ch);
  if (response_done && h)
    rl__http_response_done(h);
}

static void stream_end(lua_State *L, rl_channel *ch, int uidx, const char *err);
static void stream_pump(lua_State *L, rl_channel *ch, int uidx);

/* Closing while a file or iterator is being sent: it fails (a streamed
 * HTTP response is cut off, its end never having been sent). */
static void stream_abort(lua_State *L, rl_channel *ch, int uidx) {
  if (ch->streaming)
    stream_end(L, ch, uidx, "channel closed before the message was sent");
}

static void (*leave_groups)(lua_State *L, int uidx); /* group.c's */

/* ---- a client's inbox: messages waiting for receive() --------------------
 * A client channel made without on_message keeps a table in the
 * CH_ON_MESSAGE user value: message, binary, message, binary ... from
 * in_head to in_tail. */

static void recv_stop_timer(rl_channel *ch) {
  if (ch->recv_timer) {
    ch->recv_timer->data = NULL;
    uv_close((uv_handle_t *)ch->recv_timer, rl__handle_free);
    ch->recv_timer = NULL;
  }
}

/* Wake the task in receive() with the n values on top of L. */
static void recv_wake(lua_State *L, rl_channel *ch, int n) {
  rl_task *t = ch->receiver;
  ch->receiver = NULL;
  recv_stop_timer(ch);
  rl__task_wake(t, L, n);
}

static void inbox_closed(lua_State *L, rl_channel *ch) {
  if (ch->receiver) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    recv_wake(L, ch, 2);
  }
}

void rl__channel_on_leave(void (*fn)(lua_State *L, int uidx)) {
  leave_groups = fn;
}

static void fire_close(lua_State *L, rl_channel *ch, int uidx, int code,
                       const char *reason, int by_server) {
  if (ch->close_fired)
    return;
  ch->close_fired = 1;
  if (ch->in_groups && leave_groups) {
    ch->in_groups = 0;
    leave_groups(L, uidx); /* a member that closes leaves by itself */
  }
  inbox_closed(L, ch);
  lua_createtable(L, 0, 3);
  lua_pushstring(L, by_server != ch->client ? "server" : "client");
  lua_setfield(L, -2, "initiator");
  if (code) {
    lua_pushinteger(L, code);
    lua_setfield(L, -2, "code");
    lua_pushstring(L, reason ? reason : "");
    lua_setfield(L, -2, "reason");
  }
  ch_call(L, ch, uidx, "on_close", 1);
}

/* Close the HTTP stream gracefully: end the response, fire on_close, and
 * release the connection once every send has been written. The userdata is
 * at uidx. */
static void ch_finish(lua_State *L, rl_channel *ch, int uidx) {
  rl_http *h = ch->http;
  if (ch->closed || h == NULL)
    return;
  if (ch->streaming) {
    stream_abort(L, ch, uidx); /* cuts the connection: on_close follows */
    return;
  }
  ch->closed = 1;
  ch_stop_timer(ch);
  const char *err = NULL;
  if (!ch->head_sent) {
    lua_getiuservalue(L, uidx, CH_RESP);
    lua_getfield(L, -1, "status");
    int status = status_at(L, lua_gettop(L));
    lua_pop(L, 1);
    lua_getfield(L, -1, "headers");
    int hidx = lua_istable(L, -1) ? lua_gettop(L) : 0;
    if (rl__http_write_head(h, L, status, hidx, RL_FRAME_LENGTH, 0, NULL,
                            &err)) {
      rl__log("channel response: %s", err);
      rl__http_error(h, 500, NULL);
    }
    lua_pop(L, 2);
    ch->head_sent = 1;
  } else if (ch->framing == RL_FRAME_CHUNKED) {
    rl__http_write(h, "0\r\n\r\n", 5);
  } else if (ch->framing == RL_FRAME_CLOSE) {
    h->keep_alive = 0; /* the end of the body is the end of the connection */
  }
  fire_close(L, ch, uidx, 0, NULL, 1);
  if (ch->conn && ch->nsends == 0)
    ch_release(L, ch, 1);
}

/* The connection is going away: close the channel, fire on_close (with
 * the WebSocket's close code), fail the sends not yet written. */
typedef struct {
  rl_channel *ch;
  int code; /* 0 for an HTTP stream */
  const char *reason;
  size_t n;
} rl_detach;

static int detach_p(lua_State *L) {
  rl_detach *d = lua_touserdata(L, 1);
  rl_channel *ch = d->ch;
  push_self(L, ch);
  int uidx = lua_gettop(L);
  int by_server = ch->closed || ch->by_server ||
                  (ch->sock && rl__ws_initiated(ch->sock)) ||
                  (ch->http && ch->http->goaway);
  const char *why = NULL;
  size_t whyn = 0;
  int failed = !ch->closed && !ch->by_server && ch->sock
                   ? rl__ws_failed(ch->sock, &why, &whyn)
                   : 0;
  ch->closed = 1;
  ch_stop_timer(ch);
  stream_abort(L, ch, uidx);
  if (failed) { /* the peer broke the protocol: an error, then on_close */
    lua_pushfstring(L, "websocket: %s (closed with %d)",
                    lua_pushlstring(L, why, whyn), failed);
    call_on_error(L, ch, uidx, lua_tostring(L, -1));
    lua_pop(L, 2);
  }
  if (d->code) {
    lua_pushlstring(L, d->reason, d->n);
    fire_close(L, ch, uidx, d->code, lua_tostring(L, -1), by_server);
    lua_pop(L, 1);
  }
  fire_close(L, ch, uidx, 0, NULL, by_server);
  settle_sends(L, ch, 1);
  ch_release(L, ch, 0);
  return 0;
}

static void detach(rl_channel *ch, int code, const char *reason, size_t n) {
  if (ch->ctx->closing) {
    ch->closed = 1;
    if (ch->http)
      ch->http->stream = NULL;
    ch->conn = NULL;
    ch->http = NULL;
    ch->sock = NULL;
    ch_stop_timer(ch);
    return;
  }
  rl_detach d = {ch, code, reason, n};
  rl__protect(ch->ctx, ch->ctx->L, detach_p, &d);
}

void rl__channel_detach(rl_channel *ch) { detach(ch, 0, NULL, 0); }

static int written_p(lua_State *L) {
  rl_channel *ch = lua_touserdata(L, 1);
  settle_sends(L, ch, 0);
  if (ch->streaming && ch->src_task == NULL && !ch->pumping) {
    push_self(L, ch);
    stream_pump(L, ch, lua_gettop(L));
    lua_pop(L, 1);
  }
  rl_conn *c = ch->conn;
  if (ch->closed && ch->nsends == 0 && c && !ch->ws) {
    ch_release(L, ch, 1);
    return 0;
  }
  if (c && c->backlogged && ch_buffered(ch) == 0) {
    c->backlogged = 0;
    if (!ch->closed) {
      push_self(L, ch);
      ch_call(L, ch, lua_gettop(L), "on_drain", 0);
    }
  }
  return 0;
}

static void ws_written(void *ud) { rl__channel_written(ud); }

void rl__channel_written(rl_channel *ch) {
  if (ch->nsends == 0 && !ch->closed && !ch->streaming &&
      !(ch->has_drain && ch->conn->backlogged))
    return;
  rl__protect(ch->ctx, ch->ctx->L, written_p, ch);
}

static int timeout_p(lua_State *L) {
  rl_channel *ch = lua_touserdata(L, 1);
  if (ch->ws) {
    if (ch->conn && !ch->closed) {
      push_self(L, ch);
      ch->closed = 1;
      stream_abort(L, ch, lua_gettop(L));
      rl__ws_close(ch->sock, 1000, "idle timeout", 12);
    }
    return 0;
  }
  push_self(L, ch);
  ch_finish(L, ch, lua_gettop(L));
  return 0;
}

/* ping_interval: a peer that did not answer the last ping is gone. */
static void ping_cb(uv_timer_t *t) {
  rl_channel *ch = t->data;
  if (ch == NULL || ch->conn == NULL)
    return;
  if (ch->ping_outstanding) {
    ch->by_server = 1;
    rl__conn_close(ch->conn); /* on_close sees 1006 */
    return;
  }
  if (!ch->closed && rl__ws_send(ch->sock, RL_WS_PING, "", 0) == 0)
    ch->ping_outstanding = 1;
}

static int message_p(lua_State *L) {
  void **a = lua_touserdata(L, 1);
  rl_channel *ch = a[0];
  const char *p = a[1];
  size_t n = *(size_t *)a[2];
  int opcode = *(int *)a[3];
  push_self(L, ch);
  int uidx = lua_gettop(L);
  if (opcode == RL_WS_PONG || opcode == RL_WS_PING) {
    if (opcode == RL_WS_PONG)
      ch->ping_outstanding = 0;
    lua_pushlstring(L, p, n);
    ch_call(L, ch, uidx, opcode == RL_WS_PONG ? "on_pong" : "on_ping", 1);
    return 0;
  }
  /* on_message is kept in a user value of its own rather than looked up
   * by name; a function is called by ws_message itself (the hot path) */
  if (lua_getiuservalue(L, uidx, CH_ON_MESSAGE) == LUA_TTABLE) {
    /* a client's inbox */
    if (ch->receiver) {
      lua_pushlstring(L, p, n);
      lua_pushboolean(L, opcode == 0x2);
      recv_wake(L, ch, 2);
      return 0;
    }
    lua_pushlstring(L, p, n);
    lua_rawseti(L, -2, ch->in_tail++);
    lua_pushboolean(L, opcode == 0x2);
    lua_rawseti(L, -2, ch->in_tail++);
    if (ch->in_tail - ch->in_head >= 2 * CH_INBOX_MAX && ch->conn) {
      ch->in_paused = 1;
      rl__conn_read_stop(ch->conn);
    }
  }
  return 0;
}

static int message_k(lua_State *L, int status, lua_KContext k) {
  (void)L;
  (void)status;
  (void)k;
  return 0;
}

/* on_message's task, first thing in its coroutine (whose resume protects
 * it): the stack holds the message's place, the channel and on_message. */
static int message_run(lua_State *L) {
  void **a = lua_touserdata(L, 1);
  lua_pushvalue(L, 2);
  lua_pushlstring(L, a[1], *(size_t *)a[2]);
  lua_pushboolean(L, *(int *)a[3] == 0x2);
  lua_callk(L, 3, 0, 0, message_k);
  return 0;
}

static void ws_message(void *ud, int opcode, const char *p, size_t n) {
  rl_channel *ch = ud;
  void *a[4] = {ch, (void *)p, &n, &opcode};
  ch_touch(ch);
  if (ch->closed && opcode != RL_WS_PONG)
    return; /* closing: late messages are dropped */
  if (opcode == 0x1 || opcode == 0x2) {
    /* the hot path: on_message(ch, message, binary) without a pcall */
    lua_State *L = ch->ctx->L;
    push_self(L, ch);
    if (lua_getiuservalue(L, -1, CH_ON_MESSAGE) == LUA_TFUNCTION) {
      ch->running++;
      if (rl__task_run(ch->ctx, L, 2, message_run, a, cb_done, ch, NULL) < 0)
        ch_unhold(L, ch);
      return;
    }
    lua_pop(L, 2);
  }
  rl__protect(ch->ctx, ch->ctx->L, message_p, a);
}

static void timeout_cb(uv_timer_t *t) {
  rl_channel *ch = t->data;
  if (ch)
    rl__protect(ch->ctx, ch->ctx->L, timeout_p, ch);
}

static void ws_closed(void *ud, int code, const char *reason, size_t n) {
  detach(ud, code, reason, n);
}

static const rl_ws_cbs ws_cbs = {ws_message, ws_written, ws_closed};

/* ---- attaching: the handler returned the channel's response ----------------
 */

static int open_p(lua_State *L) {
  rl_channel *ch = lua_touserdata(L, 1);
  push_self(L, ch);
  ch_call(L, ch, lua_gettop(L), "on_open", 0);
  return 0;
}

int rl__channel_attach(rl_channel *ch, rl_http *h, lua_State *L, int ridx,
                       size_t max_ws, const char **err) {
  int uidx = lua_absindex(L, -1); /* the body: the channel userdata */
  rl_conn *c = h->conn;
  if (ch->origin != h || ch->origin_id != c->id || ch->conn || ch->closed) {
    *err = "the channel was made for another request or is closed";
    return -1;
  }
  lua_pushvalue(L, ridx);
  lua_setiuservalue(L, uidx, CH_RESP);
  if (ch->anchor_ref == LUA_NOREF) {
    lua_pushvalue(L, uidx);
    ch->anchor_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  if (ch->ws) {
    /* the key was checked by the parser (one, valid); the head answers it */
    size_t kl = 0;
    const char *key = NULL;
    if (rl__http_header(h, "sec-websocket-key", 17, &key, &kl) != 1)
      key = NULL;
    lua_getfield(L, ridx, "headers");
    int hidx = lua_istable(L, -1) ? lua_gettop(L) : 0;
    char accept[29], extra[160];
    rl_ws *ws = NULL;
    int r = -1;
    *err = "invalid Sec-WebSocket-Key";
    if (key && rl__ws_accept_value(key, kl, accept) == 0) {
      snprintf(extra, sizeof extra,
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Accept: %s\r\n",
               accept);
      *err = "out of memory";
      if ((ws = rl__ws_new(max_ws)) != NULL)
        r = rl__http_upgrade(h, L, hidx, extra, err);
    }
    lua_pop(L, 1);
    if (r != 0) {
      rl__ws_free(ws);
      ch_unanchor_if_idle(L, ch); /* not attached */
      return -1;
    }
    rl__ws_start(ws, c, &ws_cbs, ch); /* the connection speaks WebSocket */
    ch->sock = ws;
    lua_pushnil(L); /* the 101's response table: an idle socket keeps none */
    lua_setiuservalue(L, uidx, CH_RESP);
    if (ch->ping_interval > 0)
      ch->ping = ch_timer(ch, ping_cb, ch->ping_interval, ch->ping_interval);
  } else {
    ch->http = h;
    h->stream = ch;
    h->state = RL_STREAM;
  }
  ch->conn = c;
  if (ch->timeout > 0)
    ch->timer = ch_timer(ch, timeout_cb, ch->timeout, 0);
  /* on_open runs once the handler's coroutine is done with this one */
  rl__protect(ch->ctx, L, open_p, ch);
  return 0;
}

/* ---- as_channel
 * ---------------------------------------------------------------- */

/* Make a channel with the options at index 2 (checked and copied), for the
 * request at index 1 (0: none), on the exchange h (NULL: none). Leaves the
 * userdata on the top; returns its index. */
static int ch_create(lua_State *L, int ridx, rl_http *h, const char *who) {
  if (ridx)
    luaL_checktype(L, ridx, LUA_TTABLE);
  int has_opts = !lua_isnoneornil(L, 2);
  if (has_opts)
    luaL_checktype(L, 2, LUA_TTABLE);
  rl_ctx *ctx = rl__ctx(L);
  lua_Integer timeout = 0, ping_interval = 0, max_buffered = 4194304;
  /* copy and check the options: unknown names and wrong types raise. The
   * copy is sized to them and kept only when it holds any: on_message,
   * called for every message, has a user value of its own. */
  int nopts = 0;
  if (has_opts) {
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      lua_pop(L, 1);
      nopts += !(lua_type(L, -1) == LUA_TSTRING &&
                 strcmp(lua_tostring(L, -1), "on_message") == 0);
    }
  }
  lua_pushnil(L); /* on_message */
  int midx = lua_gettop(L);
  lua_createtable(L, 0, nopts);
  int oidx = lua_gettop(L);
  if (has_opts) {
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      const char *k =
          lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
      int i = 0;
      while (k && ch_opts[i] && strcmp(ch_opts[i], k) != 0)
        i++;
      if (k == NULL || ch_opts[i] == NULL)
        return luaL_error(L, "%s: unknown option '%s'", who,
                          k ? k : luaL_typename(L, -2));
      if (strncmp(k, "on_", 3) == 0) {
        if (!lua_isfunction(L, -1))
          return luaL_error(L, "%s: option '%s' must be a function", who, k);
      } else if (strcmp(k, "origins") == 0) {
        if (!lua_istable(L, -1) && !lua_isfunction(L, -1))
          return luaL_error(L,
                            "%s: option 'origins' must be an "
                            "array of origins or a function",
                            who);
      } else {
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0)
          return luaL_error(L, "%s: option '%s' must be an integer >= 0", who,
                            k);
        if (strcmp(k, "timeout") == 0)
          timeout = lua_tointeger(L, -1);
        else if (strcmp(k, "ping_interval") == 0)
          ping_interval = lua_tointeger(L, -1);
        else if (strcmp(k, "max_buffered") == 0)
          max_buffered = lua_tointeger(L, -1);
      }
      if (strcmp(k, "on_message") == 0) {
        lua_replace(L, midx);
        continue;
      }
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, oidx);
    }
  }
  rl_channel *ch = lua_newuserdatauv(L, sizeof *ch, CH_NUV);
  memset(ch, 0, sizeof *ch);
  ch->ctx = ctx;
  ch->anchor_ref = LUA_NOREF;
  ch->timeout = (uint64_t)timeout;
  ch->ping_interval = (uint64_t)ping_interval;
  ch->max_buffered = (size_t)max_buffered;
  lua_getfield(L, oidx, "on_drain");
  ch->has_drain = !lua_isnil(L, -1);
  lua_pop(L, 1);
  ch->ws = h != NULL && h->websocket;
  ch->origin = h;
  ch->origin_id = h ? h->conn->id : 0;
  ch->closed = h == NULL; /* the request's connection is already gone */
  luaL_setmetatable(L, RL_CHANNEL_MT);
  int uidx = lua_gettop(L);
  if (nopts > 0) {
    lua_pushvalue(L, oidx);
    lua_setiuservalue(L, uidx, CH_OPTS);
  }
  if (ridx) {
    lua_pushvalue(L, ridx);
    lua_setiuservalue(L, uidx, CH_REQ);
  }
  lua_pushvalue(L, midx);
  lua_setiuservalue(L, uidx, CH_ON_MESSAGE);
  lua_rotate(L, midx, -2); /* the userdata to midx, then drop the rest */
  lua_pop(L, 2);
  return midx;
}

int rl__channel_new(lua_State *L, rl_http *h) {
  int uidx = ch_create(L, 1, h, "as_channel");
  rl_channel *ch = lua_touserdata(L, uidx);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, ch->ws ? 101 : 200);
  lua_setfield(L, -2, "status");
  lua_newtable(L);
  lua_setfield(L, -2, "headers");
  lua_pushvalue(L, uidx);
  lua_setfield(L, -2, "body");
  return 1;
}

int rl__channel_client(lua_State *L, rl_ws *ws, rl_conn *c) {
  int uidx = ch_create(L, 0, NULL, "websocket");
  rl_channel *ch = lua_touserdata(L, uidx);
  ch->ws = 1;
  ch->client = 1;
  ch->closed = 0;
  if (lua_getiuservalue(L, uidx, CH_ON_MESSAGE) == LUA_TNIL) {
    lua_newtable(L); /* no on_message: messages wait for receive() */
    lua_setiuservalue(L, uidx, CH_ON_MESSAGE);
    ch->in_head = ch->in_tail = 1;
  }
  lua_pop(L, 1);
  lua_pushvalue(L, uidx);
  ch->anchor_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  rl__ws_start(ws, c, &ws_cbs, ch);
  ch->sock = ws;
  ch->conn = c;
  if (ch->ping_interval > 0)
    ch->ping = ch_timer(ch, ping_cb, ch->ping_interval, ch->ping_interval);
  if (ch->timeout > 0)
    ch->timer = ch_timer(ch, timeout_cb, ch->timeout, 0);
  ch_call(L, ch, uidx, "on_open", 0);
  return uidx;
}

/* ---- methods
 * --------------------------------------------------------------------- */

/* The bytes of a message sent whole (nil, a string, an array of strings;
 * files and iterators are streamed), pushed as one string. */
static void gather(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (lua_isnil(L, idx)) {
    lua_pushliteral(L, "");
    return;
  }
  if (lua_type(L, idx) != LUA_TTABLE) { /* a string */
    lua_pushvalue(L, idx);
    return;
  }
  luaL_Buffer b;
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  luaL_buffinit(L, &b);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i); /* a string: check_message saw to it */
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
}

/* headers: base (pending response) with over's entries replacing them,
 * names compared case-insensitively; pushes the merged table. */
static void merge_headers(lua_State *L, int base, int over) {
  lua_newtable(L);
  int t = lua_gettop(L);
  int src[2] = {base, over};
  for (int i = 0; i < 2; i++) {
    if (!src[i] || !lua_istable(L, src[i]))
      continue;
    lua_pushnil(L);
    while (lua_next(L, src[i])) {
      if (lua_type(L, -2) == LUA_TSTRING) {
        size_t n;
        const char *k = lua_tolstring(L, -2, &n);
        luaL_Buffer b;
        char *d = luaL_buffinitsize(L, &b, n);
        for (size_t j = 0; j < n; j++)
          d[j] = (char)((k[j] >= 'A' && k[j] <= 'Z') ? k[j] + 32 : k[j]);
        luaL_pushresultsize(&b, n);
        lua_pushvalue(L, -2);
        lua_rawset(L, t);
      }
      lua_pop(L, 1);
    }
  }
}

/* ---- streamed sends ---------------------------------------------------------
 * ch:send(file or iterator) sends its source in pieces of at most 16 KiB
 * (an HTTP chunk, or a WebSocket message each) while less than
 * RL_STREAM_HWM is queued; each write's completion pumps again. Sends
 * made meanwhile wait in CH_STREAM, in order, and go once it ends. */

#define RL_STREAM_PIECE (16 * 1024)
#define RL_STREAM_HWM (64 * 1024)
#define RL_STREAM_CALLS 64 /* iterator calls in one go */

static int ch_send(lua_State *L);

static void stream_piece(rl_channel *ch, const char *p, size_t n) {
  if (ch->has_drain)
    ch->conn->backlogged = 1; /* on_drain once it is all written */
  if (ch->ws) {
    (void)rl__ws_send(ch->sock, ch->src_binary ? RL_WS_BINARY : RL_WS_TEXT, p,
                      n);
  } else if (ch->framing == RL_FRAME_CHUNKED) {
    if (n > 0)
      rl__http_chunk(ch->http, p, n);
  } else if (ch->framing != RL_FRAME_NONE) {
    rl__http_write(ch->http, p, n);
  }
  ch_touch(ch);
}

/* Replay the sends made while the stream ran, until one streams again;
 * with fail (or once the channel is closed) fail them instead. Never
 * nested: a replayed send whose stream ends at once returns here. */
static void stream_drain(lua_State *L, rl_channel *ch, int uidx, int fail) {
  if (ch->draining)
    return; /* a replayed send ended a stream: the loop below goes on */
  ch->draining = 1;
  while (!ch->streaming && ch->pend_head < ch->pend_tail) {
    lua_getiuservalue(L, uidx, CH_STREAM);
    lua_rawgeti(L, -1, ch->pend_head);
    lua_pushnil(L);
    lua_rawseti(L, -3, ch->pend_head++);
    if (fail || ch->closed || ch->conn == NULL) {
      /* it was accepted (send returned true): its on_error is owed */
      int top = lua_gettop(L);
      if (lua_rawgeti(L, -1, 2) == LUA_TTABLE &&
          lua_getfield(L, -1, "on_error") == LUA_TFUNCTION) {
        lua_pushliteral(L, "channel closed before the message was sent");
        ch_start(L, ch, 1, 0);
      }
      lua_settop(L, top - 2);
      continue;
    }
    if (!lua_getmetatable(L, uidx)) /* ch_send's upvalue, as a method's */
      lua_pushnil(L); /* (debug.setmetatable took it: check_ch refuses) */
    lua_pushcclosure(L, ch_send, 1);
    lua_pushvalue(L, uidx);
    lua_rawgeti(L, -3, 1);
    lua_rawgeti(L, -4, 2);
    ch->replaying = 1;
    int st = lua_pcall(L, 3, 0, 0);
    ch->replaying = 0;
    if (st != LUA_OK)
      call_on_error(L, ch, uidx, lua_tostring(L, -1)), lua_pop(L, 1);
    lua_pop(L, 2);
  }
  if (ch->pend_head == ch->pend_tail)
    ch->pend_head = ch->pend_tail = 0;
  ch->draining = 0;
}

/* The stream ended: err NULL when all of it is queued (its on_success
 * fires once written; close if asked), else the reason it failed (its
 * on_error and the channel's are told, and it is logged if neither is set; a
 * broken HTTP stream ends without its last chunk, so the client sees it was cut
 * short). */
static void stream_end(lua_State *L, rl_channel *ch, int uidx,
                       const char *err) {
  int top = lua_gettop(L);
  ch->streaming = 0;
  if (ch->src_task) {
    ch->src_task->data = NULL; /* its result is not wanted any more */
    ch->src_task = NULL;
  }
  lua_getiuservalue(L, uidx, CH_STREAM);
  int t = lua_gettop(L);
  lua_getfield(L, t, "ok");
  lua_getfield(L, t, "err");
  if (ch->src_file) {
    ch->src_file = 0;
    lua_getfield(L, t, "src"); /* close the file as io.close would */
    luaL_Stream *fs = luaL_testudata(L, -1, LUA_FILEHANDLE);
    if (fs && fs->closef) { /* unless the user closed it already */
      lua_getfield(L, -1, "close");
      lua_insert(L, -2);
      (void)lua_pcall(L, 1, 0, 0);
    }
    lua_settop(L, t + 2);
  }
  lua_pushnil(L);
  lua_setfield(L, t, "src");
  lua_pushnil(L);
  lua_setfield(L, t, "ok");
  lua_pushnil(L);
  lua_setfield(L, t, "err");
  if (err == NULL) {
    if (ch->conn)
      push_send(L, ch, ch->conn->queued_total, lua_isnil(L, t + 1) ? 0 : t + 1,
                lua_isnil(L, t + 2) ? 0 : t + 2);
    if (ch->src_close && ch->conn && !ch->closed) {
      if (ch->ws)
        rl__ws_close(ch->sock, 1000, "", 0), ch->closed = 1;
      else
        ch_finish(L, ch, uidx);
    }
  } else {
    lua_pushstring(L, err);
    int own = !lua_isnil(L, t + 2); /* the send's on_error handles it */
    if (own) {
      lua_pushvalue(L, t + 2);
      lua_pushvalue(L, -2);
      ch_start(L, ch, 1, 0);
    }
    int chan = ch_opt(L, uidx, "on_error") != LUA_TNIL;
    lua_pop(L, 1);
    if (chan || !own) /* the channel's too; logged when neither has one */
      call_on_error(L, ch, uidx, lua_tostring(L, -1));
    if (!ch->ws && ch->conn && !ch->closed) {
      /* the sends behind it fail before on_close, then the stream ends
       * with what was sent and no last chunk */
      lua_settop(L, top);
      stream_drain(L, ch, uidx, 1);
      ch->by_server = 1;
      if (ch->conn)
        rl__conn_shutdown(ch->conn);
      return;
    }
  }
  lua_settop(L, top);
  stream_drain(L, ch, uidx, 0);
}

static int src_done_p(lua_State *L) {
  done_args *a = lua_touserdata(L, 1);
  rl_channel *ch = a->ch;
  lua_State *co = a->co;
  int status = a->status, nres = a->nres;
  push_self(L, ch);
  int uidx = lua_gettop(L);
  int idx = lua_gettop(co) - nres + 1;
  if (status != LUA_OK) {
    stream_end(L, ch, uidx, lua_tostring(co, -1));
  } else if (nres == 0 || lua_isnil(co, idx)) {
    stream_end(L, ch, uidx, NULL);
  } else if (lua_type(co, idx) != LUA_TSTRING) {
    stream_end(L, ch, uidx, "send: an iterator must return strings, then nil");
  } else if (ch->conn && !ch->closed) {
    size_t n;
    const char *p = lua_tolstring(co, idx, &n);
    stream_piece(ch, p, n);
    if (!ch->pumping) /* it had suspended: nobody else pumps */
      stream_pump(L, ch, uidx);
  }
  return 0;
}

static void src_done(rl_task *task, lua_State *co, int status, int nres) {
  rl_channel *ch = task->data;
  if (ch == NULL)
    return; /* the stream ended meanwhile */
  ch->src_task = NULL;
  done_args a = {ch, co, status, nres}; /* (see cb_done) */
  rl__protect(ch->ctx, ch->ctx->L, src_done_p, &a);
}

/* One piece of the file being sent, or its end. */
static void stream_file(lua_State *L, rl_channel *ch, int uidx) {
  lua_getiuservalue(L, uidx, CH_STREAM);
  lua_getfield(L, -1, "src");
  luaL_Stream *fs = luaL_testudata(L, -1, LUA_FILEHANDLE);
  lua_pop(L, 2);
  if (fs == NULL || fs->closef == NULL || fs->f == NULL) {
    stream_end(L, ch, uidx, "send: the file was closed while being sent");
    return;
  }
  char buf[RL_STREAM_PIECE];
  size_t want = sizeof buf;
  if (ch->src_left >= 0 && (uint64_t)ch->src_left < want)
    want = (size_t)ch->src_left;
  size_t n = want ? fread(buf, 1, want, fs->f) : 0;
  if (n > 0)
    stream_piece(ch, buf, n);
  if (ch->src_left >= 0)
    ch->src_left -= (int64_t)n;
  if (ch->src_left == 0)
    stream_end(L, ch, uidx, NULL); /* all the Content-Length promised */
  else if (n < want)
    stream_end(L, ch, uidx,
               ferror(fs->f)      ? "send: cannot read the file"
               : ch->src_left > 0 ? "send: the file shrank while being sent"
                                  : NULL);
}

static void stream_pump(lua_State *L, rl_channel *ch, int uidx) {
  int calls = 0;
  int was = ch->pumping; /* a replayed send may pump inside a pump */
  ch->pumping = 1;
  while (ch->streaming && ch->src_task == NULL) {
    if (ch->conn == NULL || (ch->closed && !ch->src_close)) {
      stream_end(L, ch, uidx, "channel closed before the message was sent");
      break;
    }
    if (ch_buffered(ch) >= RL_STREAM_HWM)
      break; /* the write's completion pumps again */
    if (ch->src_file) {
      stream_file(L, ch, uidx);
      continue;
    }
    if (++calls > RL_STREAM_CALLS) { /* tiny pieces: let the loop breathe */
      rl__conn_defer(ch->conn);      /* the flusher pumps again */
      break;
    }
    lua_getiuservalue(L, uidx, CH_STREAM);
    lua_getfield(L, -1, "src");
    lua_remove(L, -2);
    (void)rl__task_start(ch->ctx, L, uidx, 0, src_done, ch, &ch->src_task);
  }
  ch->pumping = was;
}

/* Start sending the file or iterator at src (the head, if any, is out). */
static void stream_start(lua_State *L, rl_channel *ch, int src, int binary,
                         int close, int64_t left, int ok_idx, int err_idx) {
  luaL_Stream *fs = luaL_testudata(L, src, LUA_FILEHANDLE);
  if (lua_getiuservalue(L, 1, CH_STREAM) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 1, CH_STREAM);
  }
  lua_pushvalue(L, src);
  lua_setfield(L, -2, "src");
  if (ok_idx)
    lua_pushvalue(L, ok_idx), lua_setfield(L, -2, "ok");
  if (err_idx)
    lua_pushvalue(L, err_idx), lua_setfield(L, -2, "err");
  lua_pop(L, 1);
  ch->streaming = 1;
  ch->src_file = fs != NULL;
  ch->src_left = left;
  ch->src_binary = fs ? 1 : binary;
  ch->src_close = close;
  stream_pump(L, ch, 1);
}

/* A send made while a stream runs waits its turn. */
static void stream_defer(lua_State *L, rl_channel *ch) {
  if (lua_getiuservalue(L, 1, CH_STREAM) != LUA_TTABLE)
    luaL_error(L, "send: no stream"); /* cannot happen */
  lua_createtable(L, 2, 0);
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, 1);
  lua_pushvalue(L, 3);
  lua_rawseti(L, -2, 2);
  if (ch->pend_head == 0)
    ch->pend_head = ch->pend_tail = 1;
  lua_rawseti(L, -2, ch->pend_tail++);
  lua_pop(L, 1);
}

/* The message at 2 is one ch_send can send on this channel, or a clear
 * error: checked once, before it is sent or waits its turn. */
static void check_message(lua_State *L, rl_channel *ch, int is_map) {
  int idx = 2;
  if (is_map && ch->ws)
    luaL_error(L, "send: a response table ({status=, headers=, body=}) "
                  "cannot be sent on a WebSocket");
  if (is_map && ch->head_sent)
    luaL_error(L, "send: a response table ({status=, headers=, body=}) is "
                  "allowed only on the first send to an HTTP stream");
  if (is_map) {
    lua_getfield(L, 2, "body");
    idx = lua_gettop(L);
  }
  luaL_Stream *fs;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    if (is_map || !ch->ws) /* an empty body or chunk */
      break;
    /* fall through */
  default:
    /* a file: looked up only here (by the metatable's name) */
    if ((fs = luaL_testudata(L, idx, LUA_FILEHANDLE)) == NULL)
      luaL_error(L,
                 "send: a message must be a string, an array of strings, a "
                 "file or an iterator function (got %s)",
                 luaL_typename(L, idx));
    if (fs->closef == NULL)
      luaL_error(L, "send: the file is closed");
    break;
  case LUA_TSTRING:
  case LUA_TFUNCTION:
    break;
  case LUA_TTABLE:
    for (lua_Integer i = 1, n = (lua_Integer)lua_rawlen(L, idx); i <= n; i++) {
      if (lua_rawgeti(L, idx, i) != LUA_TSTRING)
        luaL_error(L, "send: a message array may hold only strings");
      lua_pop(L, 1);
    }
    break;
  }
  lua_settop(L, 5);
}

static int is_source(lua_State *L, int idx) {
  return lua_isfunction(L, idx) || luaL_testudata(L, idx, LUA_FILEHANDLE);
}

/* Past max_buffered: the send is refused (false), its on_error and the
 * channel's are told. */
static int send_full(lua_State *L, rl_channel *ch, int err_idx) {
  lua_pushliteral(L, "send buffer full: the peer is not reading "
                     "(max_buffered reached)");
  if (err_idx) {
    lua_pushvalue(L, err_idx);
    lua_pushvalue(L, -2);
    ch_start(L, ch, 1, 0);
  }
  call_on_error(L, ch, 1, lua_tostring(L, -1));
  lua_pushboolean(L, 0);
  return 1;
}

/* Queue one WebSocket message: the value at idx (a string). */
static int ws_queue(lua_State *L, rl_ws *ws, int idx, int binary) {
  size_t n;
  const char *p = lua_tolstring(L, idx, &n);
  return rl__ws_send(ws, binary ? RL_WS_BINARY : RL_WS_TEXT, p, n);
}

/* ch:send on a WebSocket: string (text, or binary with binary = true),
 * array (each item a message), file (streamed: each piece of up to 16 KiB
 * a binary message), iterator (streamed: each string it returns a
 * message). */
static int ws_send(lua_State *L, rl_channel *ch, int binary, int close,
                   int ok_idx, int err_idx) {
  rl_conn *c = ch->conn;
  rl_ws *ws = ch->sock;
  int t = lua_type(L, 2);
  if (rl__channel_is_full(ch))
    return send_full(L, ch, err_idx);
  int r = 0;
  if (t == LUA_TSTRING) {
    r = ws_queue(L, ws, 2, binary);
  } else if (t == LUA_TTABLE) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, 2);
    for (lua_Integer i = 1; i <= n && r == 0; i++) {
      lua_rawgeti(L, 2, i); /* a string: check_message saw to it */
      r = ws_queue(L, ws, -1, binary);
      lua_pop(L, 1);
    }
  } else {
    stream_start(L, ch, 2, binary, close, -1, ok_idx, err_idx);
    lua_pushboolean(L, 1);
    return 1;
  }
  if (r != 0) {
    lua_pushnil(L); /* closing: nothing more can be queued */
    return 1;
  }
  ch_touch(ch);
  if (ch->has_drain)
    c->backlogged = 1; /* on_drain once it is all written */
  push_send(L, ch, c->queued_total, ok_idx, err_idx);
  if (close)
    rl__ws_close(ws, 1000, "", 0), ch->closed = 1;
  lua_pushboolean(L, 1);
  return 1;
}

static int ch_send(lua_State *L) {
  rl_channel *ch = check_ch(L);
  int ok_idx = 0, err_idx = 0, close = 0, binary = 0;
  /* 4: on_success, 5: on_error, read only through ok_idx and err_idx, which
   * the options set (so an extra argument there is never taken for one) */
  lua_settop(L, 5);
  int ot = lua_type(L, 3);
  if (ot != LUA_TNIL) {
    if (ot != LUA_TTABLE)
      luaL_typeerror(L, 3, "table");
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      size_t kl = 1;
      const char *k =
          lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &kl) : "?";
      int is_close = kl == 5 && memcmp(k, "close", 5) == 0;
      int is_ok = kl == 10 && memcmp(k, "on_success", 10) == 0;
      if (is_close || (kl == 6 && memcmp(k, "binary", 6) == 0)) {
        if (!lua_isboolean(L, -1))
          return luaL_error(L, "send: option '%s' must be a boolean", k);
        if (is_close)
          close = lua_toboolean(L, -1);
        else
          binary = lua_toboolean(L, -1);
      } else if (is_ok || (kl == 8 && memcmp(k, "on_error", 8) == 0)) {
        if (!lua_isfunction(L, -1))
          return luaL_error(L, "send: option '%s' must be a function", k);
        lua_copy(L, -1, is_ok ? 4 : 5);
        if (is_ok)
          ok_idx = 4;
        else
          err_idx = 5;
      } else {
        return luaL_error(L, "send: unknown option '%s'", k);
      }
      lua_pop(L, 1);
    }
  }

  rl_conn *c = ch->conn;
  int is_map = 0;
  if (lua_istable(L, 2)) {
    is_map = lua_getfield(L, 2, "status") != LUA_TNIL ||
             lua_getfield(L, 2, "headers") != LUA_TNIL ||
             lua_getfield(L, 2, "body") != LUA_TNIL;
    lua_settop(L, 5);
  }
  if (ch->closed || c == NULL) {
    lua_pushnil(L);
    return 1;
  }
  check_message(L, ch, is_map); /* raises now, even for a send that waits */
  if (ch->streaming || (ch->pend_head < ch->pend_tail && !ch->replaying)) {
    stream_defer(L, ch); /* after the stream, in order */
    lua_pushboolean(L, 1);
    return 1;
  }
  if (ch->ws)
    return ws_send(L, ch, binary, close, ok_idx, err_idx);
  if (rl__channel_is_full(ch))
    return send_full(L, ch, err_idx);
  /* 6: status, 7: merged headers, 8: data */
  lua_getiuservalue(L, 1, CH_RESP);
  int resp = lua_gettop(L);
  lua_getfield(L, resp, "status");
  if (is_map && lua_getfield(L, 2, "status") != LUA_TNIL)
    lua_replace(L, -2);
  else if (is_map)
    lua_pop(L, 1);
  int sidx = lua_gettop(L);
  lua_getfield(L, resp, "headers");
  int bh = lua_gettop(L);
  int oh = 0;
  if (is_map) {
    lua_getfield(L, 2, "headers");
    oh = lua_gettop(L);
  }
  merge_headers(L, bh, oh);
  int hidx = lua_gettop(L);
  if (is_map)
    lua_getfield(L, 2, "body");
  else
    lua_pushvalue(L, 2);
  int bidx = lua_gettop(L);
  int src = is_source(L, bidx);
  int64_t srclen = -1; /* a file's size, when it is a regular file */
  size_t n = 0;
  const char *data = NULL;
  if (src) {
    luaL_Stream *fs = luaL_testudata(L, bidx, LUA_FILEHANDLE);
    struct stat st;
    if (fs && fstat(fileno(fs->f), &st) == 0 && S_ISREG(st.st_mode)) {
      off_t pos = ftello(fs->f);
      srclen = st.st_size > pos ? (int64_t)(st.st_size - pos) : 0;
    }
  } else {
    gather(L, bidx);
    data = lua_tolstring(L, -1, &n);
  }
  rl_http *h = ch->http;
  c = ch->conn; /* gathering ran Lua code */
  if (ch->closed || c == NULL || h == NULL) {
    lua_pushnil(L);
    return 1;
  }
  if (!ch->head_sent) {
    int status = status_at(L, sidx);
    int framing = close && (!src || srclen >= 0) ? RL_FRAME_LENGTH
                  : h->http_minor >= 1           ? RL_FRAME_CHUNKED
                                                 : RL_FRAME_CLOSE;
    const char *err = NULL;
    if (rl__http_write_head(h, L, status, hidx, framing,
                            src ? (uint64_t)srclen : n, NULL, &err))
      return luaL_error(L, "send: %s", err);
    ch->head_sent = 1;
    /* HEAD, 1xx, 204 and 304 answers have no body: nothing follows */
    int nobody = h->head_only || status < 200 || status == 204 || status == 304;
    ch->framing = nobody ? RL_FRAME_NONE : framing;
  }
  if (src) {
    stream_start(L, ch, bidx, 0, close,
                 ch->framing == RL_FRAME_LENGTH ? srclen : -1, ok_idx, err_idx);
    lua_pushboolean(L, 1);
    return 1;
  }
  if (ch->framing == RL_FRAME_CHUNKED)
    rl__http_chunk(h, data, n);
  else if (ch->framing != RL_FRAME_NONE)
    rl__http_write(h, data, n); /* Content-Length or close-delimited */
  if (ch->has_drain)
    c->backlogged = 1; /* on_drain once it is all written */
  push_send(L, ch, c->queued_total, ok_idx, err_idx);
  if (close)
    ch_finish(L, ch, 1);
  lua_pushboolean(L, 1);
  return 1;
}

static int valid_close_code(lua_Integer code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

static int ch_close(lua_State *L) {
  rl_channel *ch = check_ch(L);
  lua_Integer code = luaL_optinteger(L, 2, 1000);
  size_t n = 0;
  const char *reason = luaL_optlstring(L, 3, "", &n);
  if (ch->ws) {
    luaL_argcheck(L, valid_close_code(code), 2,
                  "not a close code an endpoint may send");
    luaL_argcheck(L, n <= 123, 3, "a close reason is at most 123 bytes");
    luaL_argcheck(L, rl__ws_utf8(reason, n), 3,
                  "a close reason must be UTF-8 (RFC 6455 5.5.1)");
  }
  if (ch->closed || ch->conn == NULL) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (ch->ws) {
    ch->closed = 1; /* first: the sends waiting behind a stream fail too */
    stream_abort(L, ch, 1);
    rl__ws_close(ch->sock, (int)code, reason, n);
    lua_pushboolean(L, 1);
    return 1;
  }
  ch_finish(L, ch, 1);
  lua_pushboolean(L, 1);
  return 1;
}

static int ch_is_open(lua_State *L) {
  rl_channel *ch = check_ch(L);
  lua_pushboolean(L, ch->conn != NULL && !ch->closed);
  return 1;
}

static int ch_is_websocket(lua_State *L) {
  rl_channel *ch = check_ch(L);
  lua_pushboolean(L, ch->ws);
  return 1;
}

static int ch_originating_request(lua_State *L) {
  check_ch(L);
  lua_getiuservalue(L, 1, CH_REQ);
  return 1;
}

static int ch_buffered_amount(lua_State *L) {
  rl_channel *ch = check_ch(L);
  lua_pushinteger(L, (lua_Integer)ch_buffered(ch));
  return 1;
}

/* ch:ping([payload]) and ch:pong([payload]) (an unsolicited pong is a
 * heartbeat, RFC 6455 5.5.3) */
static int ch_control(lua_State *L, int opcode, const char *name) {
  rl_channel *ch = check_ch(L);
  size_t n = 0;
  const char *p = luaL_optlstring(L, 2, "", &n);
  if (!ch->ws)
    return luaL_error(L,
                      "%s: this channel is an HTTP stream, not a "
                      "WebSocket",
                      name);
  luaL_argcheck(L, n <= 125, 2, "a control payload is at most 125 bytes");
  if (ch->closed || ch->conn == NULL || rl__ws_send(ch->sock, opcode, p, n)) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ch:receive([timeout]): the next message of a client channel without
 * on_message, and whether it is binary; nil, "closed" or nil, "timeout". */
static int inbox_pop(lua_State *L, rl_channel *ch) {
  if (ch->in_head >= ch->in_tail)
    return 0;
  lua_getiuservalue(L, 1, CH_ON_MESSAGE);
  int t = lua_gettop(L);
  lua_rawgeti(L, t, ch->in_head);
  lua_rawgeti(L, t, ch->in_head + 1);
  lua_pushnil(L);
  lua_rawseti(L, t, ch->in_head);
  lua_pushnil(L);
  lua_rawseti(L, t, ch->in_head + 1);
  ch->in_head += 2;
  if (ch->in_head == ch->in_tail)
    ch->in_head = ch->in_tail = 1;
  lua_remove(L, t);
  if (ch->in_paused && ch->in_tail - ch->in_head < CH_INBOX_MAX && ch->conn) {
    ch->in_paused = 0;
    rl__conn_read_start(ch->conn);
  }
  return 2;
}

static int recv_k(lua_State *L, int status, lua_KContext k) {
  rl_task *t = (rl_task *)k;
  (void)status;
  if (!rl__task_resumed(t))
    return rl__task_repark(L, t, recv_k);
  return 2;
}

static int recv_timeout_p(lua_State *L) {
  rl_channel *ch = lua_touserdata(L, 1);
  if (ch->receiver) {
    lua_pushnil(L);
    lua_pushliteral(L, "timeout");
    recv_wake(L, ch, 2);
  }
  return 0;
}

static void recv_timer_cb(uv_timer_t *t) {
  rl_channel *ch = t->data;
  if (ch)
    rl__protect(ch->ctx, ch->ctx->L, recv_timeout_p, ch);
}

static int recv_ready(void *ud) {
  rl_channel *ch = ud;
  return ch->in_head < ch->in_tail || ch->close_fired || ch->conn == NULL;
}

static int ch_receive(lua_State *L) {
  rl_channel *ch = check_ch(L);
  lua_Integer ms = luaL_optinteger(L, 2, 0);
  luaL_argcheck(L, ms >= 0, 2, "must be >= 0");
  lua_settop(L, 1);
  if (lua_getiuservalue(L, 1, CH_ON_MESSAGE) != LUA_TTABLE)
    return luaL_error(L, "receive: only a client WebSocket made without "
                         "on_message keeps its messages");
  lua_pop(L, 1);
  if (inbox_pop(L, ch))
    return 2;
  lua_pushnil(L);
  if (ch->close_fired || ch->conn == NULL) {
    lua_pushliteral(L, "closed");
    return 2;
  }
  if (ch->receiver)
    return luaL_error(L, "receive: another task is waiting on this channel");
  rl_task *t = NULL;
  int mode = rl__wait_mode(L, &t);
  if (mode < 0)
    return luaL_error(L, "receive: call it from a handler, a callback or a "
                         "script (not from a coroutine ringlet did not start)");
  if (mode == 0) { /* a script: run the loop until a message comes */
    int r = rl__run_until(ch->ctx, recv_ready, ch, (uint64_t)ms);
    lua_settop(L, 1);
    if (inbox_pop(L, ch))
      return 2;
    lua_pushnil(L);
    lua_pushstring(L, r == 1 && ms > 0 && ch->conn ? "timeout" : "closed");
    return 2;
  }
  lua_pop(L, 1);
  ch->receiver = t;
  if (ms > 0)
    ch->recv_timer = ch_timer(ch, recv_timer_cb, (uint64_t)ms, 0);
  rl__task_park(t, L);
  return lua_yieldk(L, 0, (lua_KContext)t, recv_k);
}

static int ch_ping(lua_State *L) { return ch_control(L, RL_WS_PING, "ping"); }
static int ch_pong(lua_State *L) { return ch_control(L, RL_WS_PONG, "pong"); }

static int ch_tostring(lua_State *L) {
  rl_channel *ch = check_ch(L);
  lua_pushfstring(L, "ringlet.channel (%s, %s)", ch->ws ? "websocket" : "http",
                  ch->conn && !ch->closed ? "open" : "closed");
  return 1;
}

static int ch_gc(lua_State *L) {
  rl_channel *ch = check_ch(L);
  /* Anchored while attached or running, so nothing of libuv's is left;
   * drop what a never-attached channel may hold. */
  for (size_t i = 0; i < ch->nsends; i++) {
    luaL_unref(L, LUA_REGISTRYINDEX, ch->sends[ch->send_head + i].ok_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, ch->sends[ch->send_head + i].err_ref);
  }
  free(ch->sends);
  ch->sends = NULL;
  ch->nsends = 0;
  return 0;
}

void rl__channel_open_lib(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"send", ch_send},
      {"close", ch_close},
      {"is_open", ch_is_open},
      {"is_websocket", ch_is_websocket},
      {"originating_request", ch_originating_request},
      {"buffered_amount", ch_buffered_amount},
      {"ping", ch_ping},
      {"pong", ch_pong},
      {"receive", ch_receive},
      {NULL, NULL}};
  luaL_newmetatable(L, RL_CHANNEL_MT);
  luaL_newlibtable(L, methods);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, methods, 1); /* the metatable is each one's upvalue */
  lua_setfield(L, -2, "__index");
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, ch_tostring, 1);
  lua_setfield(L, -2, "__tostring");
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, ch_gc, 1);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
}

/* ---- for groups: a broadcast's fast path ----------------------------------
 */

int rl__channel_open(const rl_channel *ch) {
  return ch->conn != NULL && !ch->closed;
}

int rl__channel_is_poll(const rl_channel *ch) {
  return !ch->ws && !ch->head_sent;
}

int rl__channel_is_full(const rl_channel *ch) {
  size_t queued = ch_buffered((rl_channel *)ch);
  return queued > 0 && queued >= ch->max_buffered;
}

void rl__channel_groups_clear(lua_State *L, int idx) {
  rl_channel *ch = lua_touserdata(L, idx);
  lua_pushnil(L);
  lua_setiuservalue(L, idx, CH_GROUPS);
  ch->in_groups = 0;
}

int rl__channel_deliver(rl_channel *ch, rl_msg *m) {
  if (ch->closed || ch->conn == NULL)
    return RL_DELIVER_SKIPPED;
  if (!ch->ws && (ch->streaming || ch->pend_head < ch->pend_tail))
    return RL_DELIVER_SKIPPED; /* a chunk would land inside its stream */
  if (rl__channel_is_full(ch))
    return RL_DELIVER_FULL;
  if (ch->ws) {
    if (m->frame == NULL &&
        (m->frame = rl__ws_frame(m->binary ? RL_WS_BINARY : RL_WS_TEXT, m->p,
                                 m->n)) == NULL)
      return RL_DELIVER_SKIPPED; /* out of memory */
    if (rl__ws_send_shared(ch->sock, m->frame) != 0)
      return RL_DELIVER_SKIPPED; /* closing */
  } else if (!ch->head_sent) {
    return RL_DELIVER_WHOLE;
  } else if (ch->framing == RL_FRAME_CHUNKED) {
    if (m->n == 0)
      return RL_DELIVER_SENT; /* an empty chunk would end the stream */
    if (m->chunk == NULL && (m->chunk = rl__http_chunk_new(m->p, m->n)) == NULL)
      return RL_DELIVER_SKIPPED;
    rl__conn_write_shared(ch->conn, m->chunk);
  } else if (ch->framing != RL_FRAME_NONE) {
    rl__http_write(ch->http, m->p, m->n); /* close-delimited (HTTP/1.0) */
  }
  ch_touch(ch);
  if (ch->has_drain)
    ch->conn->backlogged = 1; /* on_drain once it is all written */
  return RL_DELIVER_SENT;
}

void rl__channel_full(lua_State *L, int idx, int close) {
  rl_channel *ch = lua_touserdata(L, idx);
  idx = lua_absindex(L, idx);
  if (ch->closed || ch->conn == NULL)
    return;
  if (!close) {
    call_on_error(L, ch, idx,
                  "send buffer full: the peer is not reading "
                  "(max_buffered reached); a group message was skipped");
    return;
  }
  if (ch->ws) {
    ch->closed = 1;
    stream_abort(L, ch, idx);
    rl__ws_close(ch->sock, 1013, "send buffer full", 16); /* try again later */
  } else {
    ch_finish(L, ch, idx);
  }
}

void rl__channel_groups(lua_State *L, int idx, int create) {
  rl_channel *ch = lua_touserdata(L, idx);
  idx = lua_absindex(L, idx);
  if (lua_getiuservalue(L, idx, CH_GROUPS) == LUA_TTABLE || !create)
    return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_setiuservalue(L, idx, CH_GROUPS);
  ch->in_groups = 1;
}
