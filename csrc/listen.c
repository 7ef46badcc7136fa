/* The listening socket (listen.h): accept connections into a set and hand
 * each to the owner, which gives it a protocol.
 *
 * Owns: the listening handle, its poll and a reserve descriptor. May call:
 * conn.h, base.h, libuv, the socket calls accept4 and listen. */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

#define ACCEPTS_PER_TURN 64 /* then the loop serves the others */

#define BUSY_BODY "503 Service Unavailable: out of file descriptors\n"
static const char busy_503[] =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; "
    "charset=utf-8\r\nContent-Length: 49\r\nConnection: "
    "close\r\n\r\n" BUSY_BODY;
_Static_assert(sizeof BUSY_BODY - 1 == 49, "busy_503's Content-Length");

/* Out of descriptors (EMFILE, ENFILE): the pending connections would wait
 * in the backlog and be tried again on every turn. Each is taken with the
 * descriptor kept in reserve, told 503 and closed, as nginx and libuv (which
 * only closes them) do; listening goes on, so the server recovers by itself
 * once descriptors free up. Said once an episode. */
static void out_of_descriptors(rl_listener *l, int lfd, int err) {
  if (!l->emfile)
    rl__log("out of file descriptors (%s): new connections on port %d get "
            "503 until some are free (raise ulimit -n, or lower "
            "max_connections)",
            err == EMFILE ? "EMFILE" : "ENFILE", l->port);
  l->emfile = 1;
  if (l->reserve_fd < 0)
    return;
  close(l->reserve_fd);
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0 && errno == EINTR)
      continue;
    if (fd < 0)
      break;
    /* small enough for any socket buffer; a peer that is gone is fine */
    ssize_t w = send(fd, busy_503, sizeof busy_503 - 1, MSG_NOSIGNAL);
    (void)w;
    close(fd);
  }
  l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void on_readable(uv_poll_t *p, int status, int events) {
  rl_listener *l = p->data;
  (void)events;
  if (status < 0 || l->closing)
    return;
  uv_os_fd_t lfd;
  if (uv_fileno((uv_handle_t *)&l->tcp, &lfd) != 0)
    return;
  for (int n = 0; n < ACCEPTS_PER_TURN && !l->closing; n++) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      if (errno == EMFILE || errno == ENFILE)
        out_of_descriptors(l, lfd, errno);
      else if (errno != EAGAIN && errno != EWOULDBLOCK)
        rl__log("accept on port %d: %s", l->port, strerror(errno));
      return;
    }
    if (l->emfile) {
      rl__log("file descriptors free again: port %d accepts connections",
              l->port);
      l->emfile = 0;
    }
    rl_conn *c = rl__conn_new(l->io, l->ext);
    if (c == NULL) {
      close(fd); /* out of memory: this one is refused */
      continue;
    }
    if (rl__conn_open(c, fd, &l->conns) != 0)
      continue;
    if (l->max_conns > 0 && l->conns.open > l->max_conns) {
      if (l->on_refuse)
        l->on_refuse(l, c);
      else
        rl__conn_close(c);
      continue;
    }
    l->on_accept(l, c);
  }
}

static void listener_closed(uv_handle_t *h) {
  rl_listener *l = h->data;
  l->open_handles--;
  l->io->handles--;
  maybe_closed(l);
}

/* uv_tcp_bind keeps a failed bind's error for uv_listen, which we do not
 * call: an unbound socket (port 0) is asked again, to name the error
 * (EADDRINUSE, EACCES) rather than listen on a port the system picks. */
static int bind_error(uv_os_fd_t fd, const struct sockaddr *want) {
  struct sockaddr_storage got;
  socklen_t len = sizeof got;
  if (getsockname(fd, (struct sockaddr *)&got, &len) != 0)
    return uv_translate_sys_error(errno);
  int port = got.ss_family == AF_INET6
                 ? ((struct sockaddr_in6 *)&got)->sin6_port
                 : ((struct sockaddr_in *)&got)->sin_port;
  if (port != 0)
    return 0;
  socklen_t wl = want->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                             : sizeof(struct sockaddr_in);
  return bind(fd, want, wl) == 0 ? 0 : uv_translate_sys_error(errno);
}

int rl__listen(rl_listener *l, rl_io *io, const char *ip, int port) {
  struct sockaddr_storage addr;
  int r;
  l->io = io;
  l->reserve_fd = -1;
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
  uv_os_fd_t fd;
  if ((r = uv_tcp_bind(&l->tcp, (struct sockaddr *)&addr, 0)) ||
      (r = uv_fileno((uv_handle_t *)&l->tcp, &fd)) ||
      (r = bind_error(fd, (struct sockaddr *)&addr)) ||
      (r = listen(fd, 511) ? uv_translate_sys_error(errno) : 0)) {
    rl__listener_close(l);
    return r;
  }
  /* accept ourselves (libuv's uv_listen closes connections it cannot
   * accept without telling us): the socket's readiness, watched */
  uv_poll_init_socket(io->loop, &l->poll, fd);
  l->poll.data = l;
  l->open_handles++;
  io->handles++;
  if ((r = uv_poll_start(&l->poll, UV_READABLE, on_readable))) {
    rl__listener_close(l);
    return r;
  }
  l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
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
  if (l->reserve_fd >= 0) {
    close(l->reserve_fd);
    l->reserve_fd = -1;
  }
  if (l->open_handles == 2) /* the poll first: the socket's close ends it */
    uv_close((uv_handle_t *)&l->poll, listener_closed);
  if (l->open_handles > 0)
    uv_close((uv_handle_t *)&l->tcp, listener_closed);
  else
    maybe_closed(l);
}
