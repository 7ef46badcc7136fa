/* The listening socket (listen.h): accept connections into a set and hand
 * each to the owner, which gives it a protocol.
 *
 * Owns: the listening handle. May call: conn.h, base.h, libuv. */
#include <stdlib.h>
#include <string.h>

#include "listen.h"

static void maybe_closed(rl_listener *l) {
  if (l->closing && l->open_handles == 0 && l->conns.alive == 0 &&
      l->on_closed) {
    void (*cb)(rl_listener *) = l->on_closed;
    l->on_closed = NULL; /* once */
    cb(l);
  }
}

static void conns_empty(rl_conn_set *set) {
  rl_listener *l = (rl_listener *)((char *)set - offsetof(rl_listener, conns));
  maybe_closed(l);
}

static void on_connection(uv_stream_t *ls, int status) {
  rl_listener *l = ls->data;
  if (status < 0 || l->closing)
    return;
  rl_conn *c = rl__conn_new(l->io, l->ext);
  if (c == NULL)
    return;
  if (rl__conn_accept(c, ls, &l->conns) == 0)
    l->on_accept(l, c);
}

static void listener_closed(uv_handle_t *h) {
  rl_listener *l = h->data;
  l->open_handles--;
  l->io->handles--;
  maybe_closed(l);
}

int rl__listen(rl_listener *l, rl_io *io, const char *ip, int port) {
  struct sockaddr_storage addr;
  int r;
  l->io = io;
  l->conns.on_empty = conns_empty;
  if (strchr(ip, ':'))
    r = uv_ip6_addr(ip, port, (struct sockaddr_in6 *)&addr);
  else
    r = uv_ip4_addr(ip, port, (struct sockaddr_in *)&addr);
  if (r)
    return r;
  uv_tcp_init(io->loop, &l->tcp);
  l->tcp.data = l;
  l->open_handles = 1;
  io->handles++;
  if ((r = uv_tcp_bind(&l->tcp, (struct sockaddr *)&addr, 0)) ||
      (r = uv_listen((uv_stream_t *)&l->tcp, 511, on_connection))) {
    rl__listener_close(l);
    return r;
  }
  int len = sizeof addr;
  uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&addr, &len);
  l->port = addr.ss_family == AF_INET6
                ? ntohs(((struct sockaddr_in6 *)&addr)->sin6_port)
                : ntohs(((struct sockaddr_in *)&addr)->sin_port);
  return 0;
}

void rl__listener_close(rl_listener *l) {
  if (l->closing)
    return;
  l->closing = 1;
  if (l->open_handles > 0)
    uv_close((uv_handle_t *)&l->tcp, listener_closed);
  else
    maybe_closed(l);
}
