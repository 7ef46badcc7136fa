/* The transport's listening socket: binds, accepts, and keeps the set of
 * connections it accepted.
 *
 * Owns: the listening uv_tcp_t and the rl_conn_set of its connections.
 * May call: conn.h, base.h, libuv; its owner only through on_accept and
 * on_closed. */
#ifndef RL_LISTEN_H
#define RL_LISTEN_H

#include "conn.h"

typedef struct rl_listener rl_listener;

struct rl_listener {
  uv_tcp_t tcp;   /* the bound socket; data -> listener */
  uv_poll_t poll; /* its readiness: we accept, so EMFILE is ours to answer */
  int reserve_fd; /* a descriptor kept free for EMFILE's 503s, or -1 */
  rl_io *io;
  size_t ext;        /* bytes of protocol state each connection carries */
  rl_conn_set conns; /* the connections it accepted */
  int open_handles;  /* the socket and its poll, until closed */
  int closing;       /* rl__listener_close was called */
  int port;          /* bound port */
  int max_conns;     /* past this many open connections a new one goes to
                        on_refuse (0: no limit) */
  int emfile;        /* out of descriptors: said once an episode */
  /* A connection was accepted (with its ext area zeroed): the owner sets
   * its protocol. */
  void (*on_accept)(rl_listener *l, rl_conn *c);
  /* A connection accepted past max_conns (ext zeroed): the owner answers
   * it (a 503) and closes it; NULL: it is closed at once. */
  void (*on_refuse)(rl_listener *l, rl_conn *c);
  /* Closed, and every connection it accepted is freed. */
  void (*on_closed)(rl_listener *l);
  void *data; /* the owner's */
};

/* Bind ip:port (port 0 picks one; l->port tells) and listen. On an error
 * the listener is closing (on_closed follows) and the error is returned. */
int rl__listen(rl_listener *l, rl_io *io, const char *ip, int port);
/* Stop accepting; on_closed once the connections are gone too. */
void rl__listener_close(rl_listener *l);

#endif
