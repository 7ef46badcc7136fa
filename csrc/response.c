/* HTTP/1.1's response writer (http.h): status lines, header sections,
 * chunks and the core's own error responses, written into the
 * connection's queue. The head is checked before a byte is queued, so a
 * bad header or status fails cleanly, never as a malformed response.
 *
 * Owns: nothing of its own. May call: conn.h, base.h, Lua (reading a
 * header table). */
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lauxlib.h>

#include "http.h"

/* room for a number as Lua writes it (lobject.c: MAXNUMBER2STR is 44) */
#define RL_NUMBUF 64

const char *rl__reason(int status) {
  switch (status) {
  case 100:
    return "Continue";
  case 101:
    return "Switching Protocols";
  case 200:
    return "OK";
  case 201:
    return "Created";
  case 202:
    return "Accepted";
  case 204:
    return "No Content";
  case 206:
    return "Partial Content";
  case 301:
    return "Moved Permanently";
  case 302:
    return "Found";
  case 303:
    return "See Other";
  case 304:
    return "Not Modified";
  case 307:
    return "Temporary Redirect";
  case 308:
    return "Permanent Redirect";
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 402:
    return "Payment Required";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 406:
    return "Not Acceptable";
  case 408:
    return "Request Timeout";
  case 409:
    return "Conflict";
  case 410:
    return "Gone";
  case 411:
    return "Length Required";
  case 412:
    return "Precondition Failed";
  case 413:
    return "Content Too Large";
  case 414:
    return "URI Too Long";
  case 415:
    return "Unsupported Media Type";
  case 416:
    return "Range Not Satisfiable";
  case 417:
    return "Expectation Failed";
  case 421:
    return "Misdirected Request";
  case 422:
    return "Unprocessable Content";
  case 426:
    return "Upgrade Required";
  case 429:
    return "Too Many Requests";
  case 431:
    return "Request Header Fields Too Large";
  case 500:
    return "Internal Server Error";
  case 501:
    return "Not Implemented";
  case 502:
    return "Bad Gateway";
  case 503:
    return "Service Unavailable";
  case 504:
    return "Gateway Timeout";
  case 505:
    return "HTTP Version Not Supported";
  default:
    return "";
  }
}

static int is_token(const char *s, size_t n) {
  if (n == 0)
    return 0;
  for (size_t i = 0; i < n; i++) {
    if (!(rl__cclass[(unsigned char)s[i]] & RL_C_TCHAR))
      return 0;
  }
  return 1;
}

/* RFC 9110 5.5: a field value is visible characters, obs-text, and spaces
 * and tabs between them: no control byte but HTAB (CR, LF and NUL would
 * split or cut the response; the others make clients refuse it). */
static int safe_value(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
      return 0;
  }
  return 1;
}

enum { H_DATE = 1, H_CONNECTION = 2, H_CLEN = 4, H_UPGRADE = 8 };

/* "Content-Length: N\r\n" */
static int put_length(rl_buf *b, uint64_t n) {
  if (rl__buf_reserve(b, 16 + 20 + 2))
    return UV_ENOMEM;
  char *w = b->base + b->len;
  memcpy(w, "Content-Length: ", 16);
  w = rl__put_uint(w + 16, n);
  memcpy(w, "\r\n", 2);
  b->len = (size_t)(w + 2 - b->base);
  return 0;
}

/* A header value's text without making a Lua string (lua_tolstring would
 * turn a number into one, and allocating may raise): a number is written
 * into buf as Lua's tostring writes it. NULL for any other type. */
static const char *value_text(lua_State *L, int idx, char *buf, size_t *n) {
  switch (lua_type(L, idx)) {
  case LUA_TSTRING:
    return lua_tolstring(L, idx, n);
  case LUA_TNUMBER: {
    int len;
    if (lua_isinteger(L, idx)) {
      len = lua_integer2str(buf, RL_NUMBUF, lua_tointeger(L, idx));
    } else {
      len = lua_number2str(buf, RL_NUMBUF, lua_tonumber(L, idx));
      if (buf[strspn(buf, "-0123456789")] == '\0') { /* looks like an int */
        buf[len++] = lua_getlocaledecpoint();
        buf[len++] = '0';
      }
    }
    *n = (size_t)len;
    return buf;
  }
  default:
    return NULL;
  }
}

/* Why a header was refused, with its name: formatted here rather than
 * pushed as a Lua string, so that writing a head never raises. Valid until
 * the next refusal on this thread. */
static _Thread_local char header_error[160];

/* Append "name: value\r\n" lines for the table at hidx to b. Raises no
 * error: header tables are read raw (lua_next, lua_rawgeti). */
static int put_headers(rl_http *h, lua_State *L, int hidx, rl_buf *b, int *seen,
                       uint64_t *user_clen, const char **err) {
  char num[RL_NUMBUF];
  lua_pushnil(L);
  while (lua_next(L, hidx)) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      *err = "header names must be strings";
      lua_pop(L, 2);
      return -1;
    }
    size_t nl;
    const char *name = lua_tolstring(L, -2, &nl);
    if (!is_token(name, nl)) {
      *err = "invalid header name";
      lua_pop(L, 2);
      return -1;
    }
    int skip = (nl == 17 && strcasecmp(name, "transfer-encoding") == 0) ||
               (*seen & H_UPGRADE &&
                ((nl == 10 && strcasecmp(name, "connection") == 0) ||
                 (nl == 7 && strcasecmp(name, "upgrade") == 0)));
    int is_clen = nl == 14 && strcasecmp(name, "content-length") == 0;
    int is_conn = nl == 10 && strcasecmp(name, "connection") == 0;
    if (nl == 4 && strcasecmp(name, "date") == 0)
      *seen |= H_DATE;
    int n = 1, arr = lua_type(L, -1) == LUA_TTABLE;
    if (arr)
      n = (int)lua_rawlen(L, -1);
    for (int i = 1; i <= n; i++) {
      if (arr)
        lua_rawgeti(L, -1, i);
      size_t vl;
      const char *v = value_text(L, -1, num, &vl);
      if (v == NULL) {
        snprintf(header_error, sizeof header_error,
                 "header '%.64s' has a %s value", name, luaL_typename(L, -1));
        *err = header_error;
        lua_pop(L, arr ? 3 : 2);
        return -1;
      }
      if (!safe_value(v, vl)) {
        snprintf(header_error, sizeof header_error,
                 "header '%.64s' value contains a control character (CR, LF, "
                 "NUL...)",
                 name);
        *err = header_error;
        lua_pop(L, arr ? 3 : 2);
        return -1;
      }
      if (is_conn && rl__has_token(v, vl, "close"))
        h->keep_alive = 0; /* the handler may ask to close, no more */
      if (is_clen) {
        *seen |= H_CLEN;
        /* kept only for a HEAD answer: a plain decimal, else dropped */
        uint64_t n = vl > 0 && vl <= 18 ? 0 : UINT64_MAX;
        for (size_t i = 0; n != UINT64_MAX && i < vl; i++)
          n = v[i] >= '0' && v[i] <= '9' ? n * 10 + (uint64_t)(v[i] - '0')
                                         : UINT64_MAX;
        if (n == UINT64_MAX)
          *seen &= ~H_CLEN;
        else
          *user_clen = n;
      }
      if (!skip && !is_clen && !is_conn) {
        if (rl__buf_reserve(b, nl + vl + 4)) {
          *err = "out of memory";
          lua_pop(L, arr ? 3 : 2);
          return -1;
        }
        char *w = b->base + b->len;
        memcpy(w, name, nl);
        memcpy(w + nl, ": ", 2);
        memcpy(w + nl + 2, v, vl);
        memcpy(w + nl + 2 + vl, "\r\n", 2);
        b->len += nl + vl + 4;
      }
      if (arr)
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  return 0;
}

int rl__http_write_head(rl_http *h, lua_State *L, int status, int hidx,
                        int framing, uint64_t clen, const char *extra,
                        const char **err) {
  rl_buf *b = rl__conn_outbuf(h->conn);
  size_t start = b->len;
  int seen = 0, keep = h->keep_alive;
  uint64_t user_clen = 0;
  if (status < 100 || status > 999) {
    *err = "status must be an integer from 100 to 999";
    return -1;
  }
  if (status < 200 && extra == NULL) {
    /* a 1xx is interim (RFC 9110 15.2): as an answer the client would wait
     * on for the final one. Only an upgrade's 101 (extra) is written. */
    *err = "status 1xx is an interim response: an answer needs a final "
           "status (200-999)";
    return -1;
  }
  /* the head is built by hand: printf was a tenth of a request's cost */
  const char *reason = rl__reason(status);
  size_t rl = strlen(reason);
  if (rl__buf_reserve(b, 64 + rl))
    goto nomem;
  char *w = b->base + b->len;
  memcpy(w, "HTTP/1.1 ", 9);
  w[9] = (char)('0' + status / 100);
  w[10] = (char)('0' + status / 10 % 10);
  w[11] = (char)('0' + status % 10);
  w[12] = ' ';
  memcpy(w + 13, reason, rl);
  memcpy(w + 13 + rl, "\r\n", 2);
  b->len += 15 + rl;
  if (status < 200 || status == 204 || status == 304)
    framing = RL_FRAME_NONE; /* RFC 9110: no body, no Content-Length */
  if (extra) {
    if (rl__buf_append(b, extra, strlen(extra)))
      goto nomem;
    seen |= H_CONNECTION | H_UPGRADE; /* extra carries Connection, Upgrade */
  }
  if (hidx && put_headers(h, L, hidx, b, &seen, &user_clen, err)) {
    b->len = start;
    h->keep_alive = keep;
    return -1;
  }
  if (!(seen & H_DATE) &&
      rl__buf_append(b, rl__date_line(&h->conn->io->date), 37))
    goto nomem;
  switch (framing) {
  case RL_FRAME_LENGTH:
    if (put_length(b, clen))
      goto nomem;
    break;
  case RL_FRAME_CHUNKED:
    if (rl__buf_append(b, "Transfer-Encoding: chunked\r\n", 28))
      goto nomem;
    break;
  case RL_FRAME_CLOSE:
    h->keep_alive = 0;
    break;
  default:
    /* A HEAD answer with no body may say how long the GET body is. */
    if ((seen & H_CLEN) && h->head_only && status >= 200 && status != 204 &&
        status != 304 && put_length(b, user_clen))
      goto nomem;
    break;
  }
  if (!(seen & H_CONNECTION)) {
    if (!h->keep_alive) {
      if (rl__buf_append(b, "Connection: close\r\n", 19))
        goto nomem;
    } else if (h->http_minor == 0) {
      if (rl__buf_append(b, "Connection: keep-alive\r\n", 24))
        goto nomem;
    }
  }
  if (rl__buf_append(b, "\r\n", 2))
    goto nomem;
  rl__conn_commit(h->conn, start);
  h->resp_status = (uint16_t)status;
  h->resp_body_at = h->conn->queued_total;
  return 0;
nomem:
  b->len = start;
  h->keep_alive = keep;
  *err = "out of memory";
  return -1;
}

void rl__http_chunk(rl_http *h, const char *p, size_t n) {
  char head[24];
  if (n == 0)
    return; /* an empty chunk would end the stream */
  int hl = snprintf(head, sizeof head, "%zx\r\n", n);
  rl__conn_write(h->conn, head, (size_t)hl);
  rl__conn_write(h->conn, p, n);
  rl__conn_write(h->conn, "\r\n", 2);
}

rl_shared *rl__http_chunk_new(const char *p, size_t n) {
  char head[24];
  int hl = snprintf(head, sizeof head, "%zx\r\n", n);
  rl_shared *s = rl__shared_new(NULL, (size_t)hl + n + 2);
  if (s) {
    memcpy(s->data, head, (size_t)hl);
    memcpy(s->data + hl, p, n);
    memcpy(s->data + hl + n, "\r\n", 2);
  }
  return s;
}

int rl__http_write_error(rl_http *h, int status, const char *detail) {
  if (status >= 400 && status != 500 && status != 503)
    h->keep_alive = 0;
  char body[256];
  int bl =
      snprintf(body, sizeof body, "%d %s%s%s\n", status, rl__reason(status),
               detail ? ": " : "", detail ? detail : "");
  if (bl < 0 || (size_t)bl >= sizeof body)
    bl = (int)sizeof body - 1;
  rl_buf *b = rl__conn_outbuf(h->conn);
  size_t start = b->len;
  if (rl__buf_printf(b,
                     "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: text/plain; "
                     "charset=utf-8\r\nContent-Length: %d\r\n%s%s\r\n",
                     status, rl__reason(status), rl__date(&h->conn->io->date),
                     bl, status == 426 ? "Sec-WebSocket-Version: 13\r\n" : "",
                     h->keep_alive ? "" : "Connection: close\r\n") ||
      (!h->head_only && rl__buf_append(b, body, (size_t)bl))) {
    b->len = start;
    return -1;
  }
  rl__conn_commit(h->conn, start);
  h->resp_status = (uint16_t)status;
  h->resp_body_at = h->conn->queued_total - (h->head_only ? 0 : (size_t)bl);
  return 0;
}
