/* Internal declarations shared by ringlet's C files (rl__ prefix). */
#ifndef RL_H
#define RL_H

#include <lauxlib.h>
#include <llhttp.h>
#include <lua.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "ringlet.h"

#define RL_SERVER_MT "ringlet.server"
#define RL_CHANNEL_MT "ringlet.channel"
#define RL_TIMER_MT "ringlet.timer"

/* ---- growable byte buffer (buf.c) --------------------------------------- */

typedef struct {
  char *base; /* owned: malloc'd, freed by rl__buf_free */
  size_t len;
  size_t cap;
} rl_buf;

int rl__buf_grow(rl_buf *b, size_t extra); /* the slow path of reserve */

/* Make room for `extra` more bytes. 0, or UV_ENOMEM (b unchanged). */
static inline int rl__buf_reserve(rl_buf *b, size_t extra) {
  return b->cap - b->len >= extra ? 0 : rl__buf_grow(b, extra);
}

static inline int rl__buf_append(rl_buf *b, const void *p, size_t n) {
  if (n == 0)
    return 0;
  if (rl__buf_reserve(b, n))
    return UV_ENOMEM;
  memcpy(b->base + b->len, p, n);
  b->len += n;
  return 0;
}
int rl__buf_printf(rl_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void rl__buf_free(rl_buf *b);

/* Character classes (buf.c): RFC 9110 tchar, and the bytes of a Host value */
enum { RL_C_TCHAR = 1, RL_C_HOST = 2 };
extern const unsigned char rl__cclass[256];

typedef struct rl_ctx rl_ctx;
typedef struct rl_server rl_server;
typedef struct rl_conn rl_conn;
typedef struct rl_task rl_task;
typedef struct rl_channel rl_channel;
typedef struct rl_ws rl_ws;

/* ---- per-lua_State context (ctx.c) -------------------------------------- */

struct rl_ctx {
  lua_State *L;       /* the main thread */
  uv_loop_t *loop;    /* the host's, or uv_default_loop() */
  uv_idle_t flusher;  /* runs while conns have output or work deferred */
  rl_conn *dirty;     /* conns to flush: intrusive list via dirty_next */
  rl_server *servers; /* running servers, via next */
  int handles;        /* ringlet handles open on loop (for set_loop) */
  int protected;      /* rl__protect calls running (nested ones skip pcall) */
  uint64_t next_conn_id; /* ids for connections */
  int closing;           /* lua_close is running: no more Lua from callbacks */
  int keys_ref;          /* registry: interned strings, RL_K_* */
  int tasks_ref;         /* registry: thread -> task (light) */
  rl_task *pool[64];     /* finished tasks kept with their coroutines */
  int npool;
  struct rl_timer *timers; /* pending sleeps and ringlet.timer handles */
  time_t date_sec;         /* second the cached Date value is for */
  char date[40];           /* "Sun, 06 Nov 1994 08:49:37 GMT" */
  char date_line[48];      /* "Date: " date "\r\n" */
  char *rbuf;    /* malloc'd: the read buffer WebSockets borrow (http.c) */
  int rbuf_busy; /* lent to a connection for the read in progress */
};

/* ctx->keys_ref: request and response keys, values and method names */
enum {
  RL_K_SERVER_PORT = 1,
  RL_K_SERVER_NAME,
  RL_K_REMOTE_ADDR,
  RL_K_URI,
  RL_K_QUERY_STRING,
  RL_K_SCHEME,
  RL_K_REQUEST_METHOD,
  RL_K_PROTOCOL,
  RL_K_HEADERS,
  RL_K_BODY,
  RL_K_WEBSOCKET,
  RL_K_STATUS,
  RL_V_HTTP,
  RL_V_HTTP11,
  RL_V_HTTP10,
  RL_K_METHODS /* + llhttp method, 64 of them: lower-case names */
};

rl_ctx *rl__ctx(lua_State *L);
void rl__mark_dirty(rl_conn *c);
void rl__unmark_dirty(rl_conn *c);
const char *rl__date(rl_ctx *ctx);
const char *rl__date_line(rl_ctx *ctx); /* 37 bytes */
void rl__handle_free(uv_handle_t *h);   /* close_cb that frees h */

/* Run f(L) with a lightuserdata argument under lua_pcall, from a libuv
 * callback, so no Lua error longjmps through libuv frames. Errors are
 * logged. Returns the lua_pcall status. */
int rl__protect(rl_ctx *ctx, lua_State *L, lua_CFunction f, void *ud);
int rl__has_token(const char *v, size_t n, const char *tok); /* http.c */
void rl__log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- coroutine tasks (ctx.c) ---------------------------------------------
 * Every handler and callback runs in its own coroutine. The done callback
 * gets the coroutine with `nres` results (status LUA_OK) or the error with
 * its traceback at the top (any other status); it runs inside a protected
 * call. `data` belongs to the starter, who sets it to NULL if it goes away
 * while the task is suspended. */
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
};

/* Call the function below `nargs` arguments on L's stack in a new task.
 * Pops them. `anchor` (a stack index, or 0) names a value kept alive until
 * the task ends, in a registry slot the task owns (no allocation per
 * task). Must run inside a protected call (it may raise on memory). */
rl_task *rl__task_start(rl_ctx *ctx, lua_State *L, int anchor, int nargs,
                        rl_task_cb done, void *data, rl_task **slot);
/* Returns the task while suspended, or NULL. *slot (when given) is set to
 * the task before it first runs; its done callback clears the owner's
 * pointer. */

/* The task running on L (a coroutine ringlet started), or NULL. */
rl_task *rl__current_task(lua_State *L);
rl_conn *rl__task_conn(rl_task *t); /* its connection, for a handler */

/* Call a Lua callback (function below nargs args on L) in a task whose
 * errors are only logged with `what`. */
void rl__call_cb(rl_ctx *ctx, lua_State *L, int nargs, const char *what);

/* Lua functions defined in ctx.c */
int rl__l_sleep(lua_State *L);
int rl__l_timer(lua_State *L);
void rl__timer_open_lib(lua_State *L);
void rl__ctx_open(lua_State *L);

/* ---- servers and connections (http.c) ----------------------------------- */

typedef struct {
  char ip[64];
  int port;
  int thread;
  int queue_size;
  size_t max_body;
  size_t max_ws;
  size_t max_line;
  int proxy_protocol;      /* 0 disable, 1 enable, 2 optional */
  uint64_t idle_timeout;   /* ms, 0 = none */
  uint64_t header_timeout; /* ms, 0 = none */
} rl_config;

struct rl_server {
  rl_ctx *ctx;
  uv_tcp_t listener; /* data -> server */
  uv_timer_t stop_timer;
  rl_config cfg;
  int port;        /* bound port */
  int handler_ref; /* registry: the handler function */
  int self_ref;    /* registry: the userdata, while not fully closed */
  rl_conn *conns;  /* open connections (list via next/prev) */
  int nconns;
  int inflight; /* handlers started and not finished */
  int stopping;
  int open_handles; /* listener + stop_timer still open */
  rl_server *next;  /* ctx->servers */
  int ud_gone;      /* the userdata was collected: free on close */
  char name[64];    /* ip used as server_name without a Host header */
};

void rl__server_stop(rl_server *s, uint64_t timeout_ms);
int rl__server_start(rl_server *s);

/* Connection states: one request at a time. */
enum {
  RL_READING,  /* parsing; no request in flight */
  RL_HANDLING, /* the handler's coroutine is suspended */
  RL_BODY,     /* streaming a file or iterator body */
  RL_CHANNEL,  /* an HTTP stream channel owns the response */
  RL_CLOSING   /* flushing, lingering or closing */
};

typedef struct {
  uint32_t name, name_len, value, value_len; /* offsets into conn->hdrs */
} rl_header;

/* What a streamed body reads from. */
typedef struct {
  int kind;      /* 0 none, 1 file, 2 iterator */
  int ref;       /* registry: the file handle or the iterator */
  int chunked;   /* frame pieces as chunks */
  FILE *fp;      /* file: borrowed from the luaL_Stream */
  int64_t off;   /* file: next offset (regular files) */
  int64_t left;  /* file: bytes left, -1 when unknown */
  int busy;      /* iterator: a call is running */
  rl_task *task; /* iterator: the suspended call, if any */
} rl_body;

struct rl_conn {
  uv_tcp_t tcp;     /* data -> conn */
  uv_timer_t timer; /* header, idle and linger timeouts */
  rl_server *server;
  rl_ctx *ctx;
  rl_conn *next, *prev;             /* server->conns */
  rl_conn *dirty_next, *dirty_prev; /* ctx->dirty */
  int is_dirty;
  int state;
  int open_handles; /* tcp + timer; freed when it reaches 0 */
  llhttp_t parser;
  rl_buf in; /* read buffer; [in_pos, in.len) not parsed yet */
  size_t in_pos;
  int in_shared;   /* in.base is ctx->rbuf, lent for one read (WebSocket) */
  rl_buf out;      /* output not yet handed to libuv */
  size_t inflight; /* bytes in uv_write requests */
  int nwrites;     /* uv_write requests pending */
  uint64_t queued_total; /* bytes ever queued (out) */
  uint64_t written_total;
  /* The request being parsed (accumulators; spans are copied because the
   * read buffer moves). */
  rl_buf url;
  rl_buf hdrs;  /* names (lower-cased) and values */
  rl_buf hlist; /* rl_header array */
  rl_buf body;
  int field_open; /* 0 expect a name, 1 in a name, 2 in its value */
  int in_message; /* between message begin and message complete */
  int head_done;  /* the current message's headers are complete */
  int err_status; /* status for an error found in a callback */
  const char *err_reason;
  int head_only;    /* HEAD request */
  int keep_alive;   /* of the current request/response */
  int http_minor;   /* of the current request */
  int websocket;    /* current request asks for an upgrade */
  int msg_complete; /* parser paused at a complete message */
  int want_close;   /* close once output is written */
  int lingering;    /* shut down; discarding input until EOF or timer */
  int reading;      /* uv_read_start is active */
  int read_eof;
  int deferred;        /* continue parsing from the flusher */
  int proxy_pending;   /* PROXY header still expected */
  rl_task *task;       /* the running handler, if any */
  rl_body bodys;       /* the streamed body, if any */
  rl_channel *channel; /* the open channel, if any (userdata memory) */
  const void *req;     /* the request its handler runs for (identity only) */
  int backlogged;      /* output had to wait for the socket since last drain */
  rl_ws *ws;           /* owned: WebSocket state after the upgrade */
  int timer_mode;      /* what the deadline is for (http.c TIMER_*) */
  uint64_t deadline;   /* loop time the timeout is due, 0 = none */
  uint64_t timer_due;  /* when the libuv timer fires next */
  int close_timer;     /* the close timer is armed */
  int out_blocked;     /* reading paused until the output drains */
  uint64_t id;         /* unique per context: tells reused addresses apart */
  char remote[64];     /* peer address */
  int remote_port;
};

void rl__conn_write(rl_conn *c, const void *p, size_t n);
void rl__conn_flush(rl_conn *c);
void rl__conn_close(rl_conn *c, int graceful);
void rl__conn_response_done(rl_conn *c);
void rl__conn_continue(rl_conn *c); /* from the flusher */
size_t rl__conn_buffered(const rl_conn *c);

/* ---- responses (response.c) --------------------------------------------- */

enum { RL_FRAME_NONE, RL_FRAME_LENGTH, RL_FRAME_CHUNKED, RL_FRAME_CLOSE };

/* Write the response at L[idx] (a handler's result) to c, or fail with a
 * message in *err (then nothing was written). */
int rl__respond(rl_conn *c, lua_State *L, int idx, const char **err);
/* Write a status line and headers: status, then the header tables at hidx
 * (0 = none). framing as above; clen for RL_FRAME_LENGTH. */
int rl__write_head(rl_conn *c, lua_State *L, int status, int hidx, int framing,
                   uint64_t clen, const char *extra, const char **err);
/* A core-made response (400, 413, 500 ...) with a short text body. */
void rl__respond_error(rl_conn *c, int status, const char *detail);
void rl__body_pump(rl_conn *c);
void rl__body_release(rl_conn *c);
void rl__chunk(rl_conn *c, const char *p, size_t n);
const char *rl__reason(int status);

/* ---- channels (channel.c) ----------------------------------------------- */

rl_channel *rl__channel_test(lua_State *L, int idx);
/* The handler returned a channel response: take over the connection. */
int rl__channel_attach(rl_channel *ch, rl_conn *c, lua_State *L, int ridx,
                       const char **err);
/* The connection is going away: close the channel (on_close fires). */
void rl__channel_detach(rl_channel *ch, int code, const char *reason);
void rl__channel_written(rl_channel *ch);
void rl__channel_open_lib(lua_State *L);
int rl__as_channel(lua_State *L);

/* ---- WebSocket transport (websocket.c) ---------------------------------- */

int rl__ws_valid_key(const char *key, size_t n);
/* Answer 101 (with the header table at hidx) and start framing. */
int rl__ws_accept(rl_conn *c, lua_State *L, const char *key, size_t keylen,
                  int hidx, const char **err);
void rl__ws_proceed(rl_conn *c); /* parse what arrived; may close c */
int rl__ws_queue(rl_conn *c, int opcode, const char *p, size_t n);
int rl__ws_queue_fragmented(rl_conn *c, const char *p, size_t n);
int rl__ws_close(rl_conn *c, int code, const char *reason, size_t n);
size_t rl__ws_read_hint(rl_conn *c); /* buffer for a frame in progress */
int rl__ws_ping(rl_conn *c, const char *p, size_t n);
/* The close code for on_close: the peer's, else ours, else 1006. */
int rl__ws_close_info(rl_conn *c, const char **reason, size_t *n);
void rl__ws_free(rl_conn *c);
void rl__conn_close_timer(rl_conn *c);  /* close c if still open in a while */
int rl__conn_pause_if_full(rl_conn *c); /* stop reading while output is big */
/* from websocket.c into channel.c: a message or pong arrived */
void rl__channel_message(rl_channel *ch, int opcode, const char *p, size_t n);

/* ---- Lua binding (lringlet.c) ------------------------------------------- */
void rl__server_userdata_closed(rl_server *s);

#endif
