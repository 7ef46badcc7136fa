/* fuzz_proxy: the PROXY protocol v1 header, then a request. The server is
 * fuzz_http's (app_http.lua) with proxy_protocol "enable" or "optional";
 * the handler checks remote_addr and the access log takes the address the
 * PROXY line gave.
 *
 * Input: byte 0 the configuration:
 *          bits 0-2  max_body and max_line (app_http.lua's bits 0-2)
 *          bit  3    proxy_protocol "optional", else "enable"
 *          bit  4    body_file 8
 *          bits 5-6  access_log none, "/dev/null", a function, none
 *        byte 1 how to split the rest (harness.c fz_send_split)
 *        the rest: the bytes the client writes, a PROXY line first. */
#include <string.h>

#include "harness.h"

extern const char fz_app_http[];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_init(fz_app_http, "@fuzz/app_http.lua");
  fz_in in = {data, size};
  unsigned b = fz_byte(&in), mode = fz_byte(&in);
  int cfg = (int)((b & 7) | (b & 8 ? 2u : 1u) << 3 | ((b >> 4) & 1) << 5 |
                  ((b >> 5) & 3) << 6);
  int port = fz_port(cfg);
  fz_client c;
  memset(&c, 0, sizeof c);
  c.keep = 1;
  fz_open(&c, port);
  fz_send_split(&c, in.p, in.n, mode);
  fz_finish(&c);
  fz_check_http((const uint8_t *)c.sent, c.sent_len, b & 8 ? 2 : 1, c.got,
                c.got_len);
  fz_free(&c);
  fz_end(port, 1);
  return 0;
}
