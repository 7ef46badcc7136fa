/* fuzz_http: the HTTP/1.1 request path as a server sees it. A ringlet
 * server in-process (app_http.lua: a handler that reads every key of the
 * request table, its headers and its body, and answers) and a client on
 * 127.0.0.1 that writes the fuzzer's bytes as a stream split at
 * fuzzer-chosen points; pipelining comes from the bytes themselves.
 *
 * Input: byte 0 the server's configuration (app_http.lua: max_body,
 *        max_line, proxy_protocol, body_file, access_log)
 *        byte 1 how to split the rest (harness.c fz_send_split)
 *        the rest: the bytes the client writes. */
#include <string.h>

#include "harness.h"

extern const char fz_app_http[];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_init(fz_app_http, "@fuzz/app_http.lua");
  fz_in in = {data, size};
  int cfg = (int)fz_byte(&in);
  unsigned mode = fz_byte(&in);
  int proxy = ((cfg >> 3) & 3) == 1 || ((cfg >> 3) & 3) == 2;
  int port = fz_port(cfg);
  fz_client c;
  memset(&c, 0, sizeof c);
  c.keep = 1;
  fz_open(&c, port);
  fz_send_split(&c, in.p, in.n, mode);
  fz_finish(&c);
  /* all the server writes is responses (a 101 included), framed right */
  fz_check_http((const uint8_t *)c.sent, c.sent_len,
                proxy ? ((cfg >> 3) & 3) : 0, c.got, c.got_len);
  fz_free(&c);
  fz_end(port, proxy);
  return 0;
}
