/* The fuzz targets' shared harness: one ringlet in-process (a lua_State
 * from ringlet_newstate with luaopen_ringlet, on a loop of our own), its
 * servers started by a target's Lua app, and a client socket on 127.0.0.1
 * driven by hand between turns of that loop, so the real core reads the
 * fuzzer's bytes from a real TCP connection.
 *
 * One state and one server per configuration are kept across inputs (a
 * fresh state per input costs more than the input). After each input the
 * harness waits until the server has freed the connection; fz_end()
 * then checks that the server still answers a plain GET. The state is torn
 * down at exit, so ASan's leak check sees everything freed.
 *
 * A target calls, per input:
 *   fz_init(app, name)       once: app is Lua source returning a table
 *                            with start(cfg) -> port (run_server)
 *   fz_port(cfg)             the port of the server for configuration cfg
 *   fz_open / fz_send / fz_finish   one client connection
 *   fz_end(port, proxy)      the server still answers GET /__alive
 * and FZ_TRAP(...) for a finding. The Lua app can call fuzz_trap(msg). */
#ifndef FZ_HARNESS_H
#define FZ_HARNESS_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>

/* Report a finding and crash (libFuzzer saves the input). */
#define FZ_TRAP(...)                                                           \
  do {                                                                         \
    fz_report(__FILE__, __LINE__, __VA_ARGS__);                                \
    __builtin_trap();                                                          \
  } while (0)
void fz_report(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A finding reported and not fixed yet that a fuzzing run should step
 * over, to find others: named in FUZZ_KNOWN (comma-separated), which
 * scripts/fuzz.sh sets from fuzz/known.txt. The replay programs run
 * without it. The Lua apps ask fuzz_known(name). */
int fz_known(const char *issue);

/* A cursor over the input */
typedef struct {
  const uint8_t *p;
  size_t n;
} fz_in;
static inline unsigned fz_byte(fz_in *in) {
  if (in->n == 0)
    return 0;
  in->n--;
  return *in->p++;
}

void fz_init(const char *app, const char *name); /* name: "@file" */
lua_State *fz_L(void);
void fz_push_app(void); /* the table the app returned */
int fz_port(int cfg);

/* One client connection. The server's bytes are handed to on_data as they
 * come (when set), and kept in got when keep is set; the bytes written are
 * kept in sent (fz_send_split's length bytes are not written). */
typedef struct fz_client {
  int fd;
  int eof;      /* the server closed its side, or reset the connection */
  int wclosed;  /* our side is shut down, or writing failed */
  size_t nread; /* bytes the server wrote */
  char *got;    /* keep: what the server wrote (malloc'd) */
  size_t got_len, got_cap;
  int keep;
  char *sent; /* what the client wrote, all of it (malloc'd) */
  size_t sent_len, sent_cap;
  int base; /* the transport's handles before it connected */
  void (*on_data)(struct fz_client *c, const char *p, size_t n);
  void *ud;
} fz_client;

/* Connect to 127.0.0.1:port and let the server accept. */
void fz_open(fz_client *c, int port);
/* Write all of p, running the loop (and reading) while the socket is full;
 * then run the loop so the server reads it as one piece of its own. */
void fz_send(fz_client *c, const void *p, size_t n);
/* Write data in pieces chosen by mode (see harness.c: fz_send_split). */
void fz_send_split(fz_client *c, const uint8_t *data, size_t n, unsigned mode);
/* Run the loop until cond is true (cond may be NULL), the server closed,
 * or nothing happened for idle_ms. */
void fz_wait(fz_client *c, int (*cond)(fz_client *c), unsigned idle_ms);
/* Shut our side down, read until the server closes (a server that never
 * does is a finding), close, and wait until the server has freed the
 * connection. */
void fz_finish(fz_client *c);
/* Free what fz_client holds (after fz_finish). */
void fz_free(fz_client *c);

/* The input is done: GET /__alive on port (unless 0; after a PROXY line
 * when proxy is set) must be answered 200 (every app answers it), so the
 * server is not wedged; then a full GC, so what the input dropped is
 * freed within it. */
void fz_end(int port, int proxy);

/* What the server wrote (out) to the request stream in (after a PROXY line
 * when proxy is 1, enable, or 2, optional) must be responses that llhttp
 * parses, each with a body unless its request was HEAD (harness.c). */
void fz_check_http(const uint8_t *in, size_t n, int proxy, const char *out,
                   size_t outlen);

/* Run the loop once without blocking, read what the client has. */
void fz_pump(fz_client *c);

#endif
