/* fuzz_client: ringlet.client reading a peer's bytes. app_client.lua makes
 * one call (client.request, a HEAD, client.stream read to its end, or
 * client.websocket that sends, receives until closed) to a plain socket
 * this file listens on; the fuzzer's bytes are what that server answers,
 * written in pieces with loop turns between them, after which it closes.
 * A finding: the call does not end (a hang: every answer ends with the
 * close), a result that breaks the client's promises (app_client.lua
 * checks them), or a sanitizer report.
 *
 * Input: byte 0 the call (app_client.lua: the kind, max_body, max_header,
 *        max_message),
 *        byte 1 the size of the pieces written (0: all at once),
 *        the rest: the server's bytes; "@ACCEPT@" in them becomes the
 *        Sec-WebSocket-Accept of the client's key, so a handshake can
 *        succeed and frames be reached. */
#define _GNU_SOURCE /* accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "client.h"
#include "ctx.h"
#include "harness.h"
#include "ringlet.h"

extern const char fz_app_client[];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int lfd = -1;
static int lport;

static void listen_once(void) {
  if (lfd >= 0)
    return;
  lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
      listen(lfd, 16) != 0 ||
      getsockname(lfd, (struct sockaddr *)&a, &len) != 0)
    FZ_TRAP("listen: %s", strerror(errno));
  lport = ntohs(a.sin_port);
}

static void turn(void) { uv_run(ringlet_get_loop(fz_L()), UV_RUN_NOWAIT); }

static int app_done(void) {
  lua_State *L = fz_L();
  fz_push_app();
  lua_getfield(L, -1, "done");
  lua_call(L, 0, 1);
  int done = lua_toboolean(L, -1);
  lua_pop(L, 2);
  return done;
}

/* The request's Sec-WebSocket-Key, once its head is in: the accept value */
static int accept_of(const char *req, size_t n, char out[29]) {
  const char *k = NULL;
  for (size_t i = 0; i + 19 < n; i++)
    if (strncasecmp(req + i, "\nsec-websocket-key:", 19) == 0) {
      k = req + i + 19;
      break;
    }
  if (k == NULL)
    return -1;
  while (*k == ' ')
    k++;
  size_t kl = strcspn(k, "\r\n");
  unsigned char in[64 + 36], md[SHA_DIGEST_LENGTH];
  if (kl > 64)
    return -1;
  memcpy(in, k, kl);
  memcpy(in + kl, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
  SHA1(in, kl + 36, md);
  EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_init(fz_app_client, "@fuzz/app_client.lua");
  listen_once();
  lua_State *L = fz_L();
  fz_in in = {data, size};
  unsigned cfg = fz_byte(&in);
  unsigned piece = fz_byte(&in);

  rl_ctx *ctx = rl__ctx(L);
  fz_push_app();
  lua_getfield(L, -1, "start");
  lua_pushinteger(L, lport);
  lua_pushinteger(L, cfg);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK)
    FZ_TRAP("start: %s", lua_tostring(L, -1));
  lua_pop(L, 1);

  /* the client's connection, and its request's head */
  uint64_t t0 = uv_hrtime();
  int fd = -1;
  char req[8192];
  size_t rl = 0;
  while (uv_hrtime() - t0 < 3000000000ull) {
    turn();
    if (fd < 0)
      fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      ssize_t r = read(fd, req + rl, sizeof req - 1 - rl);
      if (r > 0)
        rl += (size_t)r;
      req[rl] = 0;
      if (strstr(req, "\r\n\r\n") || r == 0 || rl == sizeof req - 1)
        break;
    }
    if (fd < 0 && app_done())
      break; /* (a call that failed before connecting) */
  }
  if (fd < 0 && !app_done())
    FZ_TRAP("the client never connected");

  /* the answer: the input, the accept value put in */
  if (fd >= 0) {
    char acc[29] = "";
    accept_of(req, rl, acc);
    size_t n = in.n, w = 0;
    uint8_t *out = malloc(n + n / 8 * 20 + 32); /* 8 bytes become 28 */
    if (out == NULL)
      FZ_TRAP("out of memory");
    for (size_t i = 0; i < in.n;) {
      if (acc[0] && i + 8 <= in.n && memcmp(in.p + i, "@ACCEPT@", 8) == 0) {
        memcpy(out + w, acc, 28);
        w += 28;
        i += 8;
      } else {
        out[w++] = in.p[i++];
      }
    }
    size_t step = piece ? piece : w ? w : 1;
    for (size_t at = 0; at < w;) {
      size_t k = w - at < step ? w - at : step;
      ssize_t r = write(fd, out + at, k);
      if (r < 0 && errno == EAGAIN) {
        turn();
        continue;
      }
      if (r <= 0)
        break; /* the client closed: the rest is not wanted */
      at += (size_t)r;
      turn();
      turn();
    }
    free(out);
    shutdown(fd, SHUT_WR);
  }
  /* every answer ends with the close: the call must end */
  t0 = uv_hrtime();
  while (!app_done()) {
    if (uv_hrtime() - t0 > 10000000000ull)
      FZ_TRAP("the client's call did not end after the server closed");
    turn();
    if (fd >= 0) {
      char sink[4096];
      while (read(fd, sink, sizeof sink) > 0) {
      }
    }
    usleep(100);
  }
  if (fd >= 0)
    close(fd);
  fz_push_app();
  lua_getfield(L, -1, "check");
  if (lua_pcall(L, 0, 0, 0) != LUA_OK)
    FZ_TRAP("check: %s", lua_tostring(L, -1));
  lua_pop(L, 1);
  /* the client lets go of its connection (its timer stays, stopped, for
   * the next call; the teardown closes it) */
  t0 = uv_hrtime();
  while (ctx->client && rl__client_conns(ctx->client) > 0) {
    if (uv_hrtime() - t0 > 5000000000ull)
      FZ_TRAP("the client left %d connections open",
              rl__client_conns(ctx->client));
    turn();
  }
  fz_end(0, 0);
  return 0;
}
