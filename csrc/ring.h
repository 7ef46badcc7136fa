/* Ring over HTTP: the request table a handler gets, the response table it
 * returns, and the bodies streamed from files and iterators.
 *
 * Owns: the rl_exchange around each connection's rl_http (in the
 * connection's ext area) and the streamed body's references. May call:
 * channel.h (a response whose body is a channel), http.h, ctx.h, conn.h,
 * base.h, Lua. */
#ifndef RL_RING_H
#define RL_RING_H

#include "channel.h"

/* What a streamed body reads from. */
typedef struct {
  FILE *fp;        /* file: borrowed from the luaL_Stream */
  int64_t off;     /* file: next offset (regular files) */
  int64_t left;    /* file: bytes left, -1 when unknown */
  rl_task *task;   /* iterator: the suspended call, if any */
  int ref;         /* registry: the file handle or the iterator */
  uint8_t kind;    /* 0 none, 1 file, 2 iterator */
  uint8_t chunked; /* frame pieces as chunks */
  uint8_t busy;    /* iterator: a call is running */
} rl_body;

/* One connection's HTTP state and the Ring response being made on it. */
typedef struct rl_exchange {
  rl_http http; /* first: an rl_http of a server is an rl_exchange */
  rl_ctx *ctx;
  void *server;    /* the server layer's */
  rl_task *task;   /* the running handler, if any */
  const void *req; /* the request it runs for (identity only) */
  rl_body body;    /* the streamed body, if any */
  size_t max_ws;   /* the server's limit for a WebSocket message */
} rl_exchange;

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
  RL_K_METHODS, /* + llhttp method, 64 of them: lower-case names */
  RL_R_META = RL_K_METHODS + 64, /* the request tables' metatable */
  RL_R_LAZY                      /* request table -> its snapshot (weak) */
};

/* Intern the keys above in ctx->keys_ref. */
void rl__ring_open(lua_State *L, rl_ctx *ctx);

/* Push the request table of the request just parsed on x; port and name
 * (server_name without a Host header) are the server's. uri,
 * request_method, query_string and body are set; the other keys are made
 * on first use (indexing, pairs) from a copy of the request kept with the
 * table, so a handler pays only for what it reads. */
void rl__push_request(lua_State *L, rl_exchange *x, int port, const char *name);
/* Write the response at L[idx] (a handler's result to the request at
 * L[reqidx]) on x, or fail with a message in *err (then nothing was
 * written). plain: reading must not raise (handler_done runs it after the
 * handler's task, outside any protected call): a response with a metatable, or
 * whose body is nil (a listener), a file, a channel or a function, is left
 * unwritten and 1 returned, for the caller to call again under a pcall. A plain
 * table with a string or array body is read raw and written without making a
 * Lua value. */
int rl__respond(rl_exchange *x, lua_State *L, int idx, int reqidx, int plain,
                const char **err);
/* The socket can take more of a streamed body (from the server's HTTP
 * callbacks); the connection is closing: let the body go. */
void rl__body_pump(rl_exchange *x);
void rl__body_release(rl_exchange *x);

#endif
