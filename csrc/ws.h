/* WebSockets (RFC 6455), a protocol above the transport: frames parsed
 * out of the read buffer and written into the write queue, the closing
 * handshake, pings and pongs.
 *
 * Owns: an rl_ws per upgraded connection (malloc'd; freed when the
 * connection is). May call: conn.h, base.h, OpenSSL's SHA-1 and base64;
 * the layer above only through the rl_ws_cbs it registered. */
#ifndef RL_WS_H
#define RL_WS_H

#include "conn.h"

enum {
  RL_WS_CONT = 0x0,
  RL_WS_TEXT = 0x1,
  RL_WS_BINARY = 0x2,
  RL_WS_CLOSE = 0x8,
  RL_WS_PING = 0x9,
  RL_WS_PONG = 0xA
};

typedef struct rl_ws rl_ws;

/* What the layer above registers (ud is its own pointer). */
typedef struct {
  /* A whole message (RL_WS_TEXT, checked as UTF-8, or RL_WS_BINARY), a
   * pong (RL_WS_PONG) or a ping (RL_WS_PING, already answered); p is valid
   * during the call only. */
  void (*on_message)(void *ud, int opcode, const char *p, size_t n);
  /* Output reached the socket. */
  void (*on_written)(void *ud);
  /* The connection is closing (once): the peer's close code (1005 when
   * its close had none), else the one we sent, else 1006. Nothing is
   * called after it, though the connection may still flush for a while. */
  void (*on_close)(void *ud, int code, const char *reason, size_t n);
} rl_ws_cbs;

/* Sec-WebSocket-Accept for a request's key: 28 characters and a NUL */
int rl__ws_accept_value(const char *key, size_t n, char out[29]);

/* A random Sec-WebSocket-Key: 24 characters and a NUL; -1 without
 * entropy. */
int rl__ws_key(char key[25]);

/* A WebSocket with messages up to max_message bytes, not yet speaking. */
rl_ws *rl__ws_new(size_t max_message);
/* Make ws the client's end (before rl__ws_start): frames it sends are
 * masked with a fresh random key each (RFC 6455 5.3), frames it receives
 * must not be. */
void rl__ws_set_client(rl_ws *ws);
void rl__ws_free(rl_ws *ws); /* only one that never started */
/* Take over c (once its 101 is queued): frames are parsed from now on,
 * those that came with the request first (from the flusher). */
void rl__ws_start(rl_ws *ws, rl_conn *c, const rl_ws_cbs *cbs, void *ud);

/* Queue a message of one frame (text, binary, ping). -1 once closing. */
int rl__ws_send(rl_ws *ws, int opcode, const char *p, size_t n);
/* Queue a frame built once and shared (rl__ws_frame) without copying it.
 * -1 once closing. */
int rl__ws_send_shared(rl_ws *ws, rl_shared *frame);
/* A whole unmasked frame (fin set) as a shared buffer, for many sockets. */
rl_shared *rl__ws_frame(int opcode, const char *p, size_t n);
/* Our close frame went out before the peer's (we started the closing). */
int rl__ws_initiated(const rl_ws *ws);
/* We failed the connection for the peer's fault: the code (1002 protocol
 * error, 1007 invalid UTF-8, 1009 too big) and the reason we sent; 0 when
 * not. */
int rl__ws_failed(const rl_ws *ws, const char **reason, size_t *n);
/* Start the closing handshake: the close frame follows what is queued. */
int rl__ws_close(rl_ws *ws, int code, const char *reason, size_t n);
/* Are the n bytes at p UTF-8 (RFC 3629), as a text message or a close
 * frame's reason must be (RFC 6455 5.6, 5.5.1)? */
int rl__ws_utf8(const char *p, size_t n);

#endif
