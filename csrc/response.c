/* Responses: a handler's response table on the wire. The head is checked
 * before a byte is queued, so a bad header or status becomes a 500, never a
 * malformed response. Bodies: string, array of strings, file (sendfile),
 * iterator (chunked) or a channel. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rl.h"

#define RL_BODY_HWM (64 * 1024) /* pump more when less than this is queued */
#define RL_FILE_CHUNK (64 * 1024)

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
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 408:
    return "Request Timeout";
  case 409:
    return "Conflict";
  case 410:
    return "Gone";
  case 411:
    return "Length Required";
  case 413:
    return "Content Too Large";
  case 414:
    return "URI Too Long";
  case 415:
    return "Unsupported Media Type";
  case 417:
    return "Expectation Failed";
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

static int safe_value(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch <= '\r' && (ch == '\r' || ch == '\n' || ch == '\0'))
      return 0;
  }
  return 1;
}

enum { H_DATE = 1, H_CONNECTION = 2, H_CLEN = 4, H_UPGRADE = 8 };

/* "Content-Length: N\r\n" */
static int put_length(rl_buf *b, uint64_t n) {
  char d[20];
  int k = 0;
  do {
    d[k++] = (char)('0' + n % 10);
    n /= 10;
  } while (n);
  if (rl__buf_reserve(b, 18 + (size_t)k))
    return UV_ENOMEM;
  char *w = b->base + b->len;
  memcpy(w, "Content-Length: ", 16);
  for (int i = 0; i < k; i++)
    w[16 + i] = d[k - 1 - i];
  memcpy(w + 16 + k, "\r\n", 2);
  b->len += 18 + (size_t)k;
  return 0;
}

/* Append "name: value\r\n" lines for the table at hidx to b. */
static int put_headers(rl_conn *c, lua_State *L, int hidx, rl_buf *b, int *seen,
                       uint64_t *user_clen, const char **err) {
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
      int t = lua_type(L, -1);
      if (t != LUA_TSTRING && t != LUA_TNUMBER) {
        *err = lua_pushfstring(L, "header '%s' has a %s value", name,
                               lua_typename(L, t));
        lua_pop(L, arr ? 4 : 3);
        return -1;
      }
      size_t vl;
      const char *v = lua_tolstring(L, -1, &vl);
      if (!safe_value(v, vl)) {
        *err = lua_pushfstring(L, "header '%s' value contains CR, LF or NUL",
                               name);
        lua_pop(L, arr ? 4 : 3);
        return -1;
      }
      if (is_conn) {
        *seen |= H_CONNECTION;
        if (rl__has_token(v, vl, "close"))
          c->keep_alive = 0;
      }
      if (is_clen) {
        *seen |= H_CLEN;
        *user_clen = strtoull(v, NULL, 10);
      }
      if (!skip && !is_clen) {
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

int rl__write_head(rl_conn *c, lua_State *L, int status, int hidx, int framing,
                   uint64_t clen, const char *extra, const char **err) {
  rl_buf *b = &c->out;
  size_t start = b->len;
  int seen = 0, keep = c->keep_alive;
  uint64_t user_clen = 0;
  if (status < 100 || status > 999) {
    *err = "status must be an integer from 100 to 999";
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
  if (hidx && put_headers(c, L, hidx, b, &seen, &user_clen, err)) {
    b->len = start;
    c->keep_alive = keep;
    return -1;
  }
  if (!(seen & H_DATE) && rl__buf_append(b, rl__date_line(c->ctx), 37))
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
    c->keep_alive = 0;
    break;
  default:
    /* A HEAD answer with no body may say how long the GET body is. */
    if ((seen & H_CLEN) && c->head_only && status >= 200 && status != 204 &&
        status != 304 && put_length(b, user_clen))
      goto nomem;
    break;
  }
  if (!(seen & H_CONNECTION)) {
    if (!c->keep_alive) {
      if (rl__buf_append(b, "Connection: close\r\n", 19))
        goto nomem;
    } else if (c->http_minor == 0) {
      if (rl__buf_append(b, "Connection: keep-alive\r\n", 24))
        goto nomem;
    }
  }
  if (rl__buf_append(b, "\r\n", 2))
    goto nomem;
  c->queued_total += b->len - start;
  rl__mark_dirty(c);
  return 0;
nomem:
  b->len = start;
  c->keep_alive = keep;
  *err = "out of memory";
  return -1;
}

void rl__chunk(rl_conn *c, const char *p, size_t n) {
  char head[24];
  if (n == 0)
    return; /* an empty chunk would end the stream */
  int hl = snprintf(head, sizeof head, "%zx\r\n", n);
  rl__conn_write(c, head, (size_t)hl);
  rl__conn_write(c, p, n);
  rl__conn_write(c, "\r\n", 2);
}

void rl__respond_error(rl_conn *c, int status, const char *detail) {
  if (uv_is_closing((uv_handle_t *)&c->tcp) || c->state == RL_CLOSING)
    return;
  if (status >= 400 && status != 500 && status != 503)
    c->keep_alive = 0;
  char body[256];
  int bl =
      snprintf(body, sizeof body, "%d %s%s%s\n", status, rl__reason(status),
               detail ? ": " : "", detail ? detail : "");
  if (bl < 0 || (size_t)bl >= sizeof body)
    bl = (int)sizeof body - 1;
  rl_buf *b = &c->out;
  size_t start = b->len;
  if (rl__buf_printf(b,
                     "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: text/plain; "
                     "charset=utf-8\r\nContent-Length: %d\r\n%s%s\r\n",
                     status, rl__reason(status), rl__date(c->ctx), bl,
                     status == 426 ? "Sec-WebSocket-Version: 13\r\n" : "",
                     c->keep_alive ? "" : "Connection: close\r\n") ||
      (!c->head_only && rl__buf_append(b, body, (size_t)bl))) {
    b->len = start;
    rl__conn_close(c, 0);
    return;
  }
  c->queued_total += b->len - start;
  rl__mark_dirty(c);
  rl__conn_response_done(c);
}

/* ---- streamed bodies -------------------------------------------------------
 */

static int close_body_p(lua_State *L) {
  rl_conn *c = lua_touserdata(L, 1);
  rl_body *b = &c->bodys;
  int ref = b->ref, kind = b->kind;
  b->ref = LUA_NOREF;
  b->kind = 0;
  b->fp = NULL;
  if (b->task) {
    b->task->data = NULL;
    b->task = NULL;
  }
  if (kind == 1) {
    /* file:close(), as the user would: io's own bookkeeping stays right */
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    luaL_Stream *s = luaL_testudata(L, -1, LUA_FILEHANDLE);
    if (s && s->closef) {
      lua_getfield(L, -1, "close");
      lua_pushvalue(L, -2);
      if (lua_pcall(L, 1, 0, 0) != LUA_OK)
        rl__log("closing a file body: %s", lua_tostring(L, -1));
    }
  }
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
  return 0;
}

void rl__body_release(rl_conn *c) {
  if (c->bodys.kind == 0)
    return;
  if (c->ctx->closing) {
    c->bodys.kind = 0;
    c->bodys.ref = LUA_NOREF;
    return;
  }
  rl__protect(c->ctx, c->ctx->L, close_body_p, c);
}

static void body_end(rl_conn *c) {
  if (c->bodys.chunked)
    rl__conn_write(c, "0\r\n\r\n", 5);
  rl__body_release(c);
  rl__conn_response_done(c);
}

/* Piece of a body: a chunk, or raw bytes when the response is delimited by
 * length or by close. */
static void body_piece(rl_conn *c, const char *p, size_t n) {
  if (c->bodys.chunked)
    rl__chunk(c, p, n);
  else
    rl__conn_write(c, p, n);
}

static void iter_done(rl_task *t, lua_State *co, int status, int nres) {
  rl_conn *c = t->data;
  if (c == NULL)
    return;
  rl_body *b = &c->bodys;
  b->task = NULL;
  b->busy = 0;
  if (status != LUA_OK) {
    rl__log("body iterator error: %s", lua_tostring(co, -1));
    rl__conn_close(c, 0); /* the head is out: cut the response short */
    return;
  }
  int idx = lua_gettop(co) - nres + 1;
  if (nres == 0 || lua_isnil(co, idx)) {
    body_end(c);
    return;
  }
  if (lua_type(co, idx) != LUA_TSTRING) {
    rl__log("body iterator error: returned a %s, expected a string or nil",
            luaL_typename(co, idx));
    rl__conn_close(c, 0);
    return;
  }
  size_t n;
  const char *p = lua_tolstring(co, idx, &n);
  body_piece(c, p, n);
  c->deferred = 1; /* pump again from the flusher */
  rl__mark_dirty(c);
}

/* Send a file: sendfile(2) straight to the socket while libuv has nothing
 * queued; when the socket is full, queue one pread piece through libuv,
 * whose write callback resumes the pump. */
static void pump_file(rl_conn *c) {
  rl_body *b = &c->bodys;
  int fd = fileno(b->fp);
  uv_os_fd_t sock;
  if (uv_fileno((uv_handle_t *)&c->tcp, &sock) != 0) {
    rl__conn_close(c, 0);
    return;
  }
  for (;;) {
    if (c->out.len || c->nwrites || c->state != RL_BODY)
      return;
    if (b->left == 0) {
      body_end(c);
      return;
    }
    if (b->left > 0 && !b->chunked) {
      size_t want = b->left > (1 << 20) ? (1 << 20) : (size_t)b->left;
      off_t off = (off_t)b->off;
      ssize_t n = sendfile(sock, fd, &off, want);
      if (n > 0) {
        b->off += n;
        b->left -= n;
        c->queued_total += (uint64_t)n;
        c->written_total += (uint64_t)n;
        continue;
      }
      if (n == 0) {
        rl__log("file body ended early (truncated while sending?)");
        rl__conn_close(c, 0);
        return;
      }
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINVAL &&
          errno != ENOSYS) {
        rl__conn_close(c, 0);
        return;
      }
      /* fall through: one piece through libuv */
      size_t piece = want > RL_FILE_CHUNK ? RL_FILE_CHUNK : want;
      if (rl__buf_reserve(&c->out, piece)) {
        rl__conn_close(c, 0);
        return;
      }
      ssize_t r = pread(fd, c->out.base + c->out.len, piece, (off_t)b->off);
      if (r <= 0) {
        rl__conn_close(c, 0);
        return;
      }
      c->out.len += (size_t)r;
      c->queued_total += (uint64_t)r;
      b->off += r;
      b->left -= r;
      rl__mark_dirty(c);
      return;
    }
    /* not a regular file (a pipe): read what comes, in order */
    char tmp[RL_FILE_CHUNK];
    size_t r = fread(tmp, 1, sizeof tmp, b->fp);
    if (r == 0) {
      if (ferror(b->fp))
        rl__log("reading a file body: %s", strerror(errno));
      b->left = 0;
      continue;
    }
    body_piece(c, tmp, r);
    return;
  }
}

static int pump_p(lua_State *L) {
  rl_conn *c = lua_touserdata(L, 1);
  rl_body *b = &c->bodys;
  if (c->state != RL_BODY)
    return 0;
  if (b->kind == 1) {
    pump_file(c);
    return 0;
  }
  for (int calls = 0; c->state == RL_BODY && !b->busy; calls++) {
    if (rl__conn_buffered(c) >= RL_BODY_HWM)
      return 0; /* conn_written pumps again */
    if (calls == 16) {
      c->deferred = 1; /* let the loop breathe */
      rl__mark_dirty(c);
      return 0;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, b->ref);
    b->busy = 1;
    (void)rl__task_start(c->ctx, L, 0, 0, iter_done, c, &b->task);
  }
  return 0;
}

void rl__body_pump(rl_conn *c) {
  if (c->state == RL_BODY && !c->ctx->closing)
    rl__protect(c->ctx, c->ctx->L, pump_p, c);
}

/* ---- a handler's response
 * ---------------------------------------------------- */

int rl__respond(rl_conn *c, lua_State *L, int idx, const char **err) {
  int status = 200;
  idx = lua_absindex(L, idx);
  /* the keys come interned from ctx->keys_ref (lua_getfield would look
   * each up by its C string); lua_gettable still honours __index */
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ctx->keys_ref);
  int K = lua_gettop(L);
  lua_rawgeti(L, K, RL_K_STATUS);
  if (lua_gettable(L, idx) != LUA_TNIL) {
    int ok;
    lua_Integer s = lua_tointegerx(L, -1, &ok);
    if (!ok || s < 100 || s > 999) {
      *err = "status must be an integer from 100 to 999";
      lua_pop(L, 2);
      return -1;
    }
    status = (int)s;
  }
  lua_pop(L, 1);
  lua_rawgeti(L, K, RL_K_HEADERS);
  lua_gettable(L, idx);
  int hidx = lua_gettop(L);
  if (lua_isnil(L, hidx)) {
    hidx = 0;
  } else if (!lua_istable(L, hidx)) {
    *err = "headers must be a table";
    lua_pop(L, 2);
    return -1;
  }
  lua_rawgeti(L, K, RL_K_BODY);
  lua_gettable(L, idx);
  int bidx = lua_gettop(L);
  int no_body = status < 200 || status == 204 || status == 304;
  int chunked_ok = c->http_minor >= 1;
  int r = -1;
  rl_channel *ch = NULL;
  luaL_Stream *fs = NULL;

  switch (lua_type(L, bidx)) {
  case LUA_TNIL:
  case LUA_TSTRING: {
    size_t n = 0;
    const char *p = lua_tolstring(L, bidx, &n);
    r = rl__write_head(c, L, status, hidx,
                       no_body ? RL_FRAME_NONE : RL_FRAME_LENGTH, n, NULL, err);
    if (r == 0 && !no_body && !c->head_only)
      rl__conn_write(c, p, n);
    if (r == 0)
      rl__conn_response_done(c);
    break;
  }
  case LUA_TTABLE: {
    lua_Integer n = (lua_Integer)lua_rawlen(L, bidx);
    uint64_t total = 0;
    for (lua_Integer i = 1; i <= n; i++) {
      int t = lua_rawgeti(L, bidx, i);
      if (t != LUA_TSTRING) {
        *err = "a body array may hold only strings";
        lua_pop(L, 1);
        goto out;
      }
      total += lua_rawlen(L, -1);
      lua_pop(L, 1);
    }
    r = rl__write_head(c, L, status, hidx,
                       no_body ? RL_FRAME_NONE : RL_FRAME_LENGTH, total, NULL,
                       err);
    if (r != 0)
      break;
    for (lua_Integer i = 1; i <= n && !no_body && !c->head_only; i++) {
      size_t l;
      lua_rawgeti(L, bidx, i);
      const char *p = lua_tolstring(L, -1, &l);
      rl__conn_write(c, p, l);
      lua_pop(L, 1);
    }
    rl__conn_response_done(c);
    break;
  }
  case LUA_TUSERDATA:
    if ((ch = rl__channel_test(L, bidx)) != NULL) {
      r = rl__channel_attach(ch, c, L, idx, err);
      break;
    }
    fs = luaL_testudata(L, bidx, LUA_FILEHANDLE);
    if (fs == NULL) {
      *err = "body must be a string, an array of strings, a file, a function "
             "or a channel";
      break;
    }
    if (fs->closef == NULL || fs->f == NULL) {
      *err = "body is a closed file";
      break;
    }
    /* fall through */
  case LUA_TFUNCTION: {
    rl_body *b = &c->bodys;
    memset(b, 0, sizeof *b);
    b->ref = LUA_NOREF;
    int framing;
    uint64_t len = 0;
    if (fs) {
      struct stat st;
      b->kind = 1;
      b->fp = fs->f;
      b->left = -1;
      if (fstat(fileno(fs->f), &st) == 0 && S_ISREG(st.st_mode)) {
        off_t pos = ftello(fs->f);
        b->off = pos < 0 ? 0 : pos;
        b->left = st.st_size > b->off ? st.st_size - b->off : 0;
      }
    } else {
      b->kind = 2;
      b->left = -1;
    }
    if (b->left >= 0) {
      framing = RL_FRAME_LENGTH;
      len = (uint64_t)b->left;
    } else {
      framing = chunked_ok ? RL_FRAME_CHUNKED : RL_FRAME_CLOSE;
      b->chunked = chunked_ok;
    }
    if (no_body)
      framing = RL_FRAME_NONE;
    if (c->head_only && framing == RL_FRAME_CLOSE)
      framing = RL_FRAME_NONE;
    lua_pushvalue(L, bidx);
    b->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    r = rl__write_head(c, L, status, hidx, framing, len, NULL, err);
    if (r != 0 || no_body || c->head_only) {
      rl__body_release(c);
      if (r == 0)
        rl__conn_response_done(c);
      break;
    }
    c->state = RL_BODY; /* conn_written starts the pump once the head is out */
    break;
  }
  default:
    *err = "body must be a string, an array of strings, a file, a function "
           "or a channel";
    break;
  }
out:
  lua_settop(L, K - 1);
  return r;
}
