/* fuzz_response: the response writer, driven by handler results the
 * fuzzer chooses. app_response.lua's handler decodes a response table from
 * the input (status, headers, body of every kind, a channel and its sends)
 * for a GET or HEAD over HTTP/1.1 or 1.0, one request or two pipelined;
 * the client reads all the server wrote and parses it with llhttp in
 * response mode (the llhttp the core links). A finding: llhttp rejects the
 * bytes; a header value with CR, LF or NUL; a response cut short, missing
 * or extra; a status or body other than the handler's (a response the core
 * refuses must be a 500 that parses).
 *
 * Input: byte 0: bit 0 two requests (else one), bit 1 HTTP/1.0 (else 1.1),
 *        bits 2-3 the first and the second request is HEAD (else GET);
 *        the rest: what the handler decodes, request after request. */
#include <lauxlib.h>
#include <llhttp.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

extern const char fz_app_response[];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXRES 4

typedef struct {
  llhttp_t p;
  int nreq;
  int head[MAXRES];
  int n;     /* responses complete */
  int begun; /* one has begun */
  int status[MAXRES], keep[MAXRES], upgrade[MAXRES];
  char *body[MAXRES];
  size_t blen[MAXRES];
} parse_state;

static int on_begin(llhttp_t *p) {
  parse_state *s = p->data;
  if (s->n >= s->nreq)
    FZ_TRAP("a response beyond the %d requests", s->nreq);
  s->begun = 1;
  return 0;
}

static int on_value(llhttp_t *p, const char *at, size_t n) {
  (void)p;
  for (size_t i = 0; i < n; i++)
    if (at[i] == '\r' || at[i] == '\n' || at[i] == '\0')
      FZ_TRAP("a response header value with byte %d: %.*s", at[i], (int)n, at);
  return 0;
}

static int on_headers(llhttp_t *p) {
  parse_state *s = p->data;
  s->status[s->n] = p->status_code;
  return s->head[s->n] ? 1 : 0; /* a HEAD answer has no body */
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  parse_state *s = p->data;
  char *b = realloc(s->body[s->n], s->blen[s->n] + n);
  if (b == NULL)
    FZ_TRAP("out of memory");
  memcpy(b + s->blen[s->n], at, n);
  s->body[s->n] = b;
  s->blen[s->n] += n;
  return 0;
}

static int on_complete(llhttp_t *p) {
  parse_state *s = p->data;
  s->keep[s->n] = llhttp_should_keep_alive(p);
  s->upgrade[s->n] = p->upgrade || p->status_code == 101;
  s->n++;
  s->begun = 0;
  return 0;
}

static int closed(fz_client *c) { return c->eof; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz_init(fz_app_response, "@fuzz/app_response.lua");
  lua_State *L = fz_L();
  fz_in in = {data, size};
  unsigned cfg = fz_byte(&in);
  parse_state s;
  memset(&s, 0, sizeof s);
  s.nreq = cfg & 1 ? 2 : 1;
  int minor = cfg & 2 ? 0 : 1;
  s.head[0] = (cfg >> 2) & 1;
  s.head[1] = (cfg >> 3) & 1;
  int port = fz_port(0);

  /* the handler reads its response from the rest of the input */
  fz_push_app();
  int app = lua_gettop(L);
  lua_getfield(L, app, "reset");
  lua_pushlstring(L, (const char *)in.p, in.n);
  lua_call(L, 1, 0);

  char req[512];
  size_t rl = 0;
  for (int i = 0; i < s.nreq; i++) {
    const char *conn =
        minor == 1 ? (i == s.nreq - 1 ? "Connection: close\r\n" : "")
                   : (i < s.nreq - 1 ? "Connection: keep-alive\r\n" : "");
    rl += (size_t)snprintf(req + rl, sizeof req - rl,
                           "%s /%d HTTP/1.%d\r\nHost: fuzz\r\n%s\r\n",
                           s.head[i] ? "HEAD" : "GET", i, minor, conn);
  }
  fz_client c;
  memset(&c, 0, sizeof c);
  c.keep = 1;
  fz_open(&c, port);
  fz_send(&c, req, rl);
  /* the last request asks to close: the server closes once it is done */
  fz_wait(&c, closed, 3000);
  if (!c.eof)
    FZ_TRAP("the server did not finish the responses (%zu bytes so far)",
            c.got_len);
  fz_finish(&c);

  static llhttp_settings_t settings;
  llhttp_settings_init(&settings);
  settings.on_message_begin = on_begin;
  settings.on_header_value = on_value;
  settings.on_headers_complete = on_headers;
  settings.on_body = on_body;
  settings.on_message_complete = on_complete;
  llhttp_init(&s.p, HTTP_RESPONSE, &settings);
  s.p.data = &s;
  llhttp_errno_t e = HPE_OK;
  if (c.got_len)
    e = llhttp_execute(&s.p, c.got, c.got_len);
  int partial = 0;
  if (e == HPE_OK) {
    partial = llhttp_finish(&s.p) != HPE_OK && s.begun;
  } else if (e != HPE_PAUSED_UPGRADE) {
    size_t at = (size_t)(llhttp_get_error_pos(&s.p) - c.got);
    FZ_TRAP("llhttp rejects the response: %s (%s) at byte %zu of %zu: %.*s",
            llhttp_errno_name(e), llhttp_get_error_reason(&s.p), at, c.got_len,
            (int)(c.got_len > 400 ? 400 : c.got_len), c.got);
  }

  /* app.check(results, nreq) */
  lua_getfield(L, app, "check");
  lua_createtable(L, s.n, 1);
  for (int i = 0; i < s.n; i++) {
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, s.status[i]);
    lua_setfield(L, -2, "status");
    lua_pushlstring(L, s.body[i] ? s.body[i] : "", s.blen[i]);
    lua_setfield(L, -2, "body");
    lua_pushboolean(L, s.keep[i]);
    lua_setfield(L, -2, "keep");
    lua_pushboolean(L, s.upgrade[i]);
    lua_setfield(L, -2, "upgrade");
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushboolean(L, partial);
  lua_setfield(L, -2, "partial");
  lua_pushinteger(L, s.nreq);
  lua_call(L, 2, 0);
  lua_settop(L, app - 1);
  for (int i = 0; i < MAXRES; i++)
    free(s.body[i]);
  fz_free(&c);
  fz_end(port, 0);
  return 0;
}
