/* The floor for bench/compare.sh: the least a keep-alive HTTP/1.1 server on
 * loopback can do per request, to measure ringlet's cost against.
 *
 *   floor PORT        (0: any port)
 *
 * One thread, one epoll set, level-triggered. It listens on 127.0.0.1:PORT,
 * prints "floor: listening on http://127.0.0.1:PORT" as ringlet's CLI does,
 * and answers every request head (every "\r\n\r\n" on a connection; nothing
 * else is parsed, so a request must not have a body) with the same bytes as
 * ringlet's GET /hello in bench/app.lua: a 200 with content-type, Date and
 * Content-Length, and "Hello, World!". The answers to the heads one read
 * brings in go out in one write, from a buffer of ready-made copies; the
 * Date line in them is rewritten once a second. A write the socket does not
 * take whole waits for EPOLLOUT, and the connection is not read meanwhile.
 * EOF or an error closes the connection; SIGTERM or SIGINT exits 0.
 *
 * Level-triggered, so that one read per readiness is enough: a read that
 * leaves bytes behind is reported again by the next epoll_wait, where
 * edge-triggered would need the read that returns EAGAIN (or trust a short
 * read) to know the socket is drained.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HEAD1 "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nDate: "
#define DATE "Thu, 01 Jan 1970 00:00:00 GMT" /* IMF-fixdate: 29 bytes */
#define HEAD2 "\r\nContent-Length: 13\r\n\r\nHello, World!"
#define RESP_LEN (sizeof HEAD1 - 1 + sizeof DATE - 1 + sizeof HEAD2 - 1)
#define COPIES 64 /* answers one write can carry */

struct conn {
  size_t owed;        /* bytes of answers not yet written */
  unsigned char seen; /* how much of "\r\n\r\n" ends the bytes read so far */
};

static char out[COPIES * RESP_LEN];
static char in[65536];
static struct conn *conns;
static int nconns; /* room in conns: RLIMIT_NOFILE */
static int epfd;
static int stalled;  /* connections waiting for EPOLLOUT */
static time_t dated; /* the second the Date lines in out[] show */

static void on_signal(int sig) {
  (void)sig;
  _exit(0);
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

/* Rewrites the Date line of every copy when the second has changed. Not
 * while a connection waits with part of a copy unwritten: the rest of it
 * must be the same bytes. */
static void date_update(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  if (ts.tv_sec == dated || stalled)
    return;
  dated = ts.tv_sec;
  struct tm tm;
  char d[sizeof DATE];
  gmtime_r(&dated, &tm);
  strftime(d, sizeof d, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  for (size_t i = 0; i < COPIES; i++)
    memcpy(out + i * RESP_LEN + sizeof HEAD1 - 1, d, sizeof DATE - 1);
}

static void set_events(int fd, unsigned events) {
  struct epoll_event ev = {.events = events, .data.fd = fd};
  if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) < 0)
    die("epoll_ctl");
}

static void drop(int fd) {
  if (conns[fd].owed)
    stalled--;
  conns[fd].owed = 0;
  close(fd); /* also leaves the epoll set */
}

/* Writes what fd is owed; returns 0 when all of it went, 1 when the socket
 * is full, -1 when the connection was closed. */
static int flush(int fd) {
  struct conn *c = &conns[fd];
  while (c->owed) {
    size_t at = (RESP_LEN - c->owed % RESP_LEN) % RESP_LEN;
    size_t n = sizeof out - at;
    if (n > c->owed)
      n = c->owed;
    ssize_t w = write(fd, out + at, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 1;
      drop(fd);
      return -1;
    }
    c->owed -= (size_t)w;
  }
  return 0;
}

static void on_readable(int fd) {
  struct conn *c = &conns[fd];
  ssize_t r = read(fd, in, sizeof in);
  if (r <= 0) {
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
      return;
    drop(fd);
    return;
  }
  /* count the request heads that end in these bytes */
  size_t heads = 0;
  unsigned seen = c->seen;
  for (ssize_t i = 0; i < r; i++) {
    if (in[i] == '\r')
      seen = seen == 2 ? 3 : 1;
    else if (in[i] == '\n' && seen == 3) {
      heads++;
      seen = 0;
    } else
      seen = in[i] == '\n' && seen == 1 ? 2 : 0;
  }
  c->seen = (unsigned char)seen;
  if (!heads)
    return;
  c->owed = heads * RESP_LEN;
  if (flush(fd) == 1) {
    stalled++;
    set_events(fd, EPOLLOUT);
  }
}

static void on_writable(int fd) {
  int st = flush(fd);
  if (st == 0) {
    stalled--;
    set_events(fd, EPOLLIN);
  }
}

static void on_accept(int lfd) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        perror("floor: accept4");
      return;
    }
    if (fd >= nconns) {
      close(fd);
      continue;
    }
    int one = 1; /* as ringlet (libuv's uv_tcp_nodelay) */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conns[fd] = (struct conn){0};
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
      perror("floor: epoll_ctl");
      close(fd);
    }
  }
}

int main(int argc, char **argv) {
  char *end = "";
  long port = argc == 2 ? strtol(argv[1], &end, 10) : -1;
  if (argc != 2 || *end || port < 0 || port > 65535) {
    fprintf(stderr, "usage: floor PORT (0: any)\n");
    return 2;
  }

  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
    die("getrlimit");
  nconns = rl.rlim_cur > 1 << 20 ? 1 << 20 : (int)rl.rlim_cur;
  conns = calloc((size_t)nconns, sizeof *conns);
  if (!conns)
    die("calloc");
  for (size_t i = 0; i < COPIES; i++)
    memcpy(out + i * RESP_LEN, HEAD1 DATE HEAD2, RESP_LEN);
  date_update();

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd < 0)
    die("socket");
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sin = {.sin_family = AF_INET,
                            .sin_port = htons((unsigned short)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sin;
  if (bind(lfd, (struct sockaddr *)&sin, sizeof sin) < 0)
    die("bind");
  if (listen(lfd, SOMAXCONN) < 0)
    die("listen");
  if (getsockname(lfd, (struct sockaddr *)&sin, &len) < 0)
    die("getsockname");

  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0)
    die("epoll_create1");
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) < 0)
    die("epoll_ctl");

  printf("floor: listening on http://127.0.0.1:%u\n", ntohs(sin.sin_port));
  fflush(stdout);

  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(epfd, evs, 256, -1);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      die("epoll_wait");
    }
    date_update();
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == lfd)
        on_accept(lfd);
      else if (conns[fd].owed)
        on_writable(fd);
      else
        on_readable(fd);
    }
  }
}
