/* Ring over HTTP (ring.h): the request table a handler gets, the response
 * table it returns on the wire, and bodies streamed from files (sendfile)
 * and iterators (chunked). Bodies: string, array of strings, file,
 * iterator or a channel.
 *
 * Owns: the exchange's streamed body and its references. May call:
 * channel.h, http.h, ctx.h, conn.h, base.h, Lua. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ring.h"

#define RL_BODY_HWM (64 * 1024) /* pump more when less than this is queued */
#define RL_FILE_CHUNK (64 * 1024)

/* ---- the request table ------------------------------------------------------
 */

/* Push K[k], an interned key; its value follows, then lua_rawset(L, R). */
#define HVAL(h, hd) ((h)->hdrs.base + (hd)->value)
#define KEY(k) lua_rawgeti(L, K, (k))

/* A file handle's __close for the body file: as io's own. */
static int body_fclose(lua_State *L) {
  luaL_Stream *p = luaL_checkudata(L, 1, LUA_FILEHANDLE);
  int ok = fclose(p->f) == 0;
  return luaL_fileresult(L, ok, NULL);
}

/* Push the body's temporary file as a Lua file handle (io.open's kind,
 * Ring's InputStream), positioned at its start; it is deleted once closed
 * (by the handler, or when collected). Without the io library's metatable
 * (a host that did not open io), the body is read into a string. */
static void push_body_file(lua_State *L, int fd) {
  if (luaL_getmetatable(L, LUA_FILEHANDLE) != LUA_TTABLE) {
    lua_pop(L, 1);
    struct stat st;
    char *p = NULL;
    size_t n = 0;
    if (fstat(fd, &st) == 0 && (p = malloc((size_t)st.st_size + 1)) != NULL) {
      while (n < (size_t)st.st_size) {
        ssize_t r = read(fd, p + n, (size_t)st.st_size - n);
        if (r < 0 && errno == EINTR)
          continue;
        if (r <= 0)
          break;
        n += (size_t)r;
      }
    }
    close(fd); /* before anything that may raise */
    lua_pushlstring(L, p ? p : "", n);
    free(p);
    return;
  }
  lua_pop(L, 1);
  /* as io.open does: the userdata first (it may raise), then the FILE */
  luaL_Stream *s = lua_newuserdatauv(L, sizeof *s, 0);
  s->closef = NULL; /* a closed file until fdopen succeeds */
  luaL_setmetatable(L, LUA_FILEHANDLE);
  s->f = fdopen(fd, "r+b");
  if (s->f == NULL) {
    rl__log("request body: cannot open its temporary file: %s",
            strerror(errno));
    close(fd);
    return;
  }
  s->closef = body_fclose;
}

/* The request table is a plain table with a shared metatable. uri,
 * request_method, query_string and body are set when it is made: nearly
 * every handler reads them. The other keys (LZ_*) are made on first use
 * from a snapshot of the request, a userdata found through a weak-keyed
 * table (so no key of the request's own holds it; a new one after each
 * collection, lz_renew): __index makes the one
 * key read and stores it; __newindex notes a key assigned before it was
 * read (nil included); __pairs makes every key and then drops the
 * metatable, leaving the table whole and plain. Once every key is made the
 * table is plain too. What differs from a plain table until then: rawget
 * and next (lua_next: C serializers) see only the keys made so far, and
 * setmetatable is refused (a protected metatable). */
enum {
  LZ_HEADERS,
  LZ_SERVER_PORT,
  LZ_SERVER_NAME,
  LZ_REMOTE_ADDR,
  LZ_SCHEME,
  LZ_PROTOCOL,
  LZ_WEBSOCKET,
  LZ_N
};
#define LZ_ALL ((1u << LZ_N) - 1)

static const int lz_key[LZ_N] = {
    RL_K_HEADERS, RL_K_SERVER_PORT, RL_K_SERVER_NAME, RL_K_REMOTE_ADDR,
    RL_K_SCHEME,  RL_K_PROTOCOL,    RL_K_WEBSOCKET};

/* The metamethods' first upvalue: the lazy keys' interned strings, whose
 * addresses identify them (short strings are unique in a state), and what
 * lz_renew needs to know. Their second upvalue is the table of interned
 * keys, whose RL_R_LAZY slot holds the weak table. */
typedef struct {
  const char *key[LZ_N];
  uint8_t stale;    /* a collection finished since the weak table was made */
  uint32_t inserts; /* snapshots put in it since */
} lz_keys;

/* A request's snapshot: this header, then remote_addr and (unless it is
 * in the Host header) server_name, then each header as its name's and its
 * value's lengths (2 bytes each, 4 when `wide`) and their bytes. */
typedef struct {
  uint8_t done; /* bit i: LZ key i is in the table, made or assigned */
  uint8_t minor, websocket, wide, remote_len;
  uint16_t nh;
  int port;
  uint32_t name_at, name_len; /* server_name: at name_at bytes after this
                                 header, in the Host header's value or a
                                 copy after remote_addr */
} lz_snap;

/* The snapshot of the request at r, NULL once the table is whole. */
static lz_snap *lz_snap_of(lua_State *L, int r) {
  lua_rawgeti(L, lua_upvalueindex(2), RL_R_LAZY);
  lua_pushvalue(L, r);
  lz_snap *s =
      lua_rawget(L, -2) == LUA_TUSERDATA ? lua_touserdata(L, -1) : NULL;
  lua_pop(L, 2); /* the weak table anchors it while the request lives */
  return s;
}

/* Which lazy key L[k] is, or -1. */
static int lz_which(lua_State *L, int k) {
  if (lua_type(L, k) != LUA_TSTRING)
    return -1;
  const char *p = lua_tostring(L, k);
  const lz_keys *ks = lua_touserdata(L, lua_upvalueindex(1));
  for (int i = 0; i < LZ_N; i++) {
    if (ks->key[i] == p)
      return i;
  }
  return -1;
}

static size_t lz_len(const char **p, int wide) {
  if (wide) {
    uint32_t n;
    memcpy(&n, *p, 4);
    *p += 4;
    return n;
  }
  uint16_t n;
  memcpy(&n, *p, 2);
  *p += 2;
  return n;
}

/* The headers table: lower-case names; repeats joined with ", " (Ring's
 * rule). */
static void lz_push_headers(lua_State *L, const lz_snap *s, const char *p) {
  lua_createtable(L, 0, s->nh);
  for (size_t i = 0; i < s->nh; i++) {
    size_t nl = lz_len(&p, s->wide), vl = lz_len(&p, s->wide);
    lua_pushlstring(L, p, nl);
    lua_pushvalue(L, -1);
    if (lua_rawget(L, -3) == LUA_TNIL) {
      lua_pop(L, 1);
      lua_pushlstring(L, p + nl, vl);
    } else {
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, p + nl, vl);
      lua_concat(L, 3);
    }
    lua_rawset(L, -3);
    p += nl + vl;
  }
}

static void lz_push(lua_State *L, const lz_snap *s, int i) {
  const char *remote = (const char *)(s + 1);
  switch (i) {
  case LZ_HEADERS:
    lz_push_headers(L, s,
                    remote + s->remote_len +
                        (s->name_at == s->remote_len ? s->name_len : 0));
    break;
  case LZ_SERVER_PORT:
    lua_pushinteger(L, s->port);
    break;
  case LZ_SERVER_NAME:
    lua_pushlstring(L, remote + s->name_at, s->name_len);
    break;
  case LZ_REMOTE_ADDR:
    lua_pushlstring(L, remote, s->remote_len);
    break;
  case LZ_SCHEME:
    lua_pushliteral(L, "http");
    break;
  case LZ_PROTOCOL:
    lua_pushstring(L, s->minor == 0 ? "HTTP/1.0" : "HTTP/1.1");
    break;
  default:
    lua_pushboolean(L, s->websocket);
    break;
  }
}

/* Every key made: the request at 1 is a plain table from now on. */
static void lz_settle(lua_State *L, lz_snap *s) {
  if (s->done != LZ_ALL)
    return;
  lua_rawgeti(L, lua_upvalueindex(2), RL_R_LAZY);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  lua_pushnil(L);
  lua_setmetatable(L, 1);
}

static int req_index(lua_State *L) {
  int i = lz_which(L, 2);
  lz_snap *s;
  if (i < 0 || (s = lz_snap_of(L, 1)) == NULL || s->done & (1u << i))
    return 0; /* absent, or made and then set to nil */
  lz_push(L, s, i);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, -2);
  lua_rawset(L, 1);
  s->done |= 1u << i;
  lz_settle(L, s);
  return 1;
}

static int req_newindex(lua_State *L) {
  int i = lz_which(L, 2);
  lz_snap *s = i < 0 ? NULL : lz_snap_of(L, 1);
  lua_settop(L, 3);
  lua_rawset(L, 1);
  if (s) {
    s->done |= 1u << i; /* the user's value, nil included, stands */
    lz_settle(L, s);
  }
  return 0;
}

static int req_next(lua_State *L) {
  lua_settop(L, 2);
  if (lua_next(L, 1))
    return 2;
  lua_pushnil(L);
  return 1;
}

static int req_pairs(lua_State *L) {
  lz_snap *s = lz_snap_of(L, 1);
  if (s) {
    const lz_keys *ks = lua_touserdata(L, lua_upvalueindex(1));
    for (int i = 0; i < LZ_N; i++) {
      if (s->done & (1u << i))
        continue;
      lua_pushstring(L, ks->key[i]);
      lz_push(L, s, i);
      lua_rawset(L, 1);
    }
    s->done = LZ_ALL;
    lz_settle(L, s);
  }
  lua_pushcfunction(L, req_next);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

/* A collection's end, told by the finalizer of an object nothing refers
 * to, which makes the next such object for the next collection. */
static int lz_cycle_gc(lua_State *L) {
  lz_keys *ks = lua_touserdata(L, lua_upvalueindex(1));
  ks->stale = 1;
  lua_newuserdatauv(L, 0, 0);
  lua_getmetatable(L, 1);
  lua_setmetatable(L, -2);
  return 0;
}

/* After a collection, a new weak table for the snapshots, sized for as many
 * requests as came since the last one, with the old table's live entries
 * (the collector has cleared the others). A table kept across collections
 * costs more: Lua reuses a dead key's slot only for a key that hashes to
 * it, and when the table fills it is rehashed to the size of its live
 * keys, a few, then grows again by doubling; each request paid for that
 * (~270 instructions). Nothing is replaced until the new table is whole,
 * so running out of memory here leaves the old one in use. */
#define RL_LAZY_MAX (1 << 16) /* slots made at once (1.5 MiB); it grows on */
static void lz_renew(lua_State *L, int K, lz_keys *ks) {
  uint32_t n = ks->inserts;
  ks->stale = 0;
  ks->inserts = 0;
  lua_rawgeti(L, K, RL_R_LAZY);
  int old = lua_gettop(L);
  lua_createtable(L, 0, n > RL_LAZY_MAX ? RL_LAZY_MAX : (int)n);
  lua_getmetatable(L, old);
  lua_setmetatable(L, -2);
  lua_pushnil(L);
  while (lua_next(L, old)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, old + 1);
  }
  lua_rawseti(L, K, RL_R_LAZY);
  lua_pop(L, 1);
}

void rl__ring_open(lua_State *L, rl_ctx *ctx) {
  if (ctx->keys_ref != LUA_NOREF)
    return;
  static const char *const keys[] = {
      "server_port",  "server_name", "remote_addr",    "uri",
      "query_string", "scheme",      "request_method", "protocol",
      "headers",      "body",        "websocket",      "status"};
  lua_createtable(L, RL_R_LAZY, 0);
  int K = lua_gettop(L);
  for (int i = 0; i < RL_K_METHODS - 1; i++) {
    lua_pushstring(L, keys[i]);
    lua_rawseti(L, K, i + 1);
  }
  static const struct {
    int num;
    const char *name;
  } methods[] = {
#define RL_XX(num, name, string) {num, #string},
      HTTP_ALL_METHOD_MAP(RL_XX)
#undef RL_XX
  };
  for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) {
    char lower[32];
    const char *name = methods[m].name;
    size_t n = 0;
    for (; name[n] && n < sizeof lower - 1; n++)
      lower[n] =
          (char)(name[n] >= 'A' && name[n] <= 'Z' ? name[n] + 32 : name[n]);
    lua_pushlstring(L, lower, n);
    lua_rawseti(L, K, RL_K_METHODS + (methods[m].num & 63));
  }
  /* the request tables' metatable, its upvalues: the lazy keys and K */
  lz_keys *ks = lua_newuserdatauv(L, sizeof *ks, 1);
  ctx->lazy = ks;
  lua_pushvalue(L, K); /* anchors the strings ks points into */
  lua_setiuservalue(L, -2, 1);
  for (int i = 0; i < LZ_N; i++) {
    lua_rawgeti(L, K, lz_key[i]);
    ks->key[i] = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  ks->stale = 0;
  ks->inserts = 0;
  lua_newtable(L); /* the weak table */
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_rawseti(L, K, RL_R_LAZY);
  /* the first object whose finalizer tells a collection's end */
  lua_newuserdatauv(L, 0, 0);
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, -3); /* ks */
  lua_pushcclosure(L, lz_cycle_gc, 1);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_pop(L, 1);
  lua_createtable(L, 0, 4);
  static const luaL_Reg mms[] = {{"__index", req_index},
                                 {"__newindex", req_newindex},
                                 {"__pairs", req_pairs},
                                 {NULL, NULL}};
  lua_insert(L, -2); /* the metatable below its upvalues: ks, K */
  lua_pushvalue(L, K);
  luaL_setfuncs(L, mms, 2);
  lua_pushliteral(L, "ringlet.request");
  lua_setfield(L, -2, "__metatable");
  lua_rawseti(L, K, RL_R_META);
  ctx->keys_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

void rl__push_request(lua_State *L, rl_exchange *x, int port,
                      const char *name) {
  rl_http *h = &x->http;
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->ctx->keys_ref);
  int K = lua_gettop(L); /* interned keys: no lookup by C string */
  lz_keys *ks = x->ctx->lazy;
  if (ks->stale)
    lz_renew(L, K, ks);
  ks->inserts++;
  lua_createtable(L, 0, 4);
  int R = K + 1;

  /* uri and query_string; an absolute-form target names the host. */
  const char *u = h->url.base ? h->url.base : "/";
  size_t ul = h->url.base ? h->url.len : 1;
  const char *auth = NULL;
  size_t authl = 0;
  if (ul > 0 && u[0] != '/' && u[0] != '*') {
    const char *ss = memchr(u, ':', ul);
    if (ss && (size_t)(ss - u) + 3 <= ul && ss[1] == '/' && ss[2] == '/') {
      auth = ss + 3;
      const char *end = u + ul;
      const char *slash = auth;
      while (slash < end && *slash != '/' && *slash != '?')
        slash++;
      authl = (size_t)(slash - auth);
      if (slash == end || *slash == '?') {
        /* "http://host?q" means path "/" */
        KEY(RL_K_URI);
        lua_pushliteral(L, "/");
        lua_rawset(L, R);
      }
      ul = (size_t)(end - slash);
      u = slash;
    }
  }
  const char *q = memchr(u, '?', ul);
  if (ul > 0 && u[0] != '?') {
    KEY(RL_K_URI);
    lua_pushlstring(L, u, q ? (size_t)(q - u) : ul);
    lua_rawset(L, R);
  }
  if (q) {
    KEY(RL_K_QUERY_STRING);
    lua_pushlstring(L, q + 1, ul - (size_t)(q - u) - 1);
    lua_rawset(L, R);
  }
  KEY(RL_K_REQUEST_METHOD);
  lua_rawgeti(L, K, RL_K_METHODS + (h->parser.method & 63));
  lua_rawset(L, R);

  int fd;
  if (h->body_fd && (fd = rl__http_take_body_file(h)) >= 0) {
    KEY(RL_K_BODY);
    push_body_file(L, fd);
    lua_rawset(L, R);
  } else if (h->body.len > 0 && h->body_fd == 0) {
    KEY(RL_K_BODY);
    lua_pushlstring(L, h->body.base, h->body.len);
    lua_rawset(L, R);
  }

  /* the snapshot the other keys are made from */
  size_t nh, i;
  rl_header *hd = rl__http_headers(h, &nh);
  const char *host = auth;
  size_t hostl = authl, hosti = nh; /* the Host header's index, if used */
  for (i = 0; i < nh && !auth; i++) {
    if (hd[i].name_len == 4 &&
        memcmp(h->hdrs.base + hd[i].name, "host", 4) == 0) {
      host = HVAL(h, &hd[i]);
      hostl = hd[i].value_len;
      hosti = i;
      break;
    }
  }
  if (host && hostl > 0) {
    /* server_name: the host without its port, minding IPv6 literals */
    const char *e =
        host[0] == '[' ? memchr(host, ']', hostl) : memchr(host, ':', hostl);
    if (e)
      hostl = (size_t)(e - host) + (host[0] == '[');
  } else {
    host = name;
    hostl = strlen(name);
    hosti = nh;
  }
  size_t copied = hosti < nh ? 0 : hostl;
  const char *remote = h->conn->remote;
  size_t remotel = strlen(remote), bytes = 0;
  int wide = 0;
  for (i = 0; i < nh; i++) {
    bytes += hd[i].name_len + hd[i].value_len;
    wide |= hd[i].name_len > UINT16_MAX || hd[i].value_len > UINT16_MAX;
  }
  size_t lens = wide ? 4 : 2;
  lz_snap *s = lua_newuserdatauv(
      L, sizeof *s + remotel + copied + nh * 2 * lens + bytes, 0);
  s->done = 0;
  s->minor = h->http_minor;
  s->websocket = h->websocket;
  s->wide = (uint8_t)wide;
  s->remote_len = (uint8_t)remotel; /* rl_conn's remote holds < 48 */
  s->nh = (uint16_t)nh;             /* at most 128 (limits) */
  s->port = port;
  s->name_len = (uint32_t)hostl;
  s->name_at = (uint32_t)remotel; /* its copy, or in the Host header's value */
  char *w = (char *)(s + 1);
  memcpy(w, remote, remotel);
  memcpy(w + remotel, host, copied);
  w += remotel + copied;
  for (i = 0; i < nh; i++) {
    if (i == hosti)
      s->name_at = (uint32_t)(w + 2 * lens + hd[i].name_len - (char *)(s + 1));
    if (wide) {
      uint32_t l[2] = {hd[i].name_len, hd[i].value_len};
      memcpy(w, l, 8);
    } else {
      uint16_t l[2] = {(uint16_t)hd[i].name_len, (uint16_t)hd[i].value_len};
      memcpy(w, l, 4);
    }
    w += 2 * lens;
    if (hd[i].name_len) /* (hdrs.base may be NULL for empty spans) */
      memcpy(w, h->hdrs.base + hd[i].name, hd[i].name_len);
    w += hd[i].name_len;
    if (hd[i].value_len)
      memcpy(w, HVAL(h, &hd[i]), hd[i].value_len);
    w += hd[i].value_len;
  }
  lua_rawgeti(L, K, RL_R_LAZY);
  lua_pushvalue(L, R);
  lua_pushvalue(L, -3);
  lua_rawset(L, -3); /* weak[request] = snapshot */
  lua_pop(L, 2);
  lua_rawgeti(L, K, RL_R_META);
  lua_setmetatable(L, R);
  lua_remove(L, K);
}
#undef KEY
#undef HVAL

/* ---- streamed bodies -------------------------------------------------------
 */

static int close_body_p(lua_State *L) {
  rl_exchange *x = lua_touserdata(L, 1);
  rl_body *b = &x->body;
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

void rl__body_release(rl_exchange *x) {
  if (x->body.kind == 0)
    return;
  if (x->ctx->closing) {
    x->body.kind = 0;
    x->body.ref = LUA_NOREF;
    return;
  }
  rl__protect(x->ctx, x->ctx->L, close_body_p, x);
}

static void body_end(rl_exchange *x) {
  if (x->body.chunked)
    rl__http_write(&x->http, "0\r\n\r\n", 5);
  rl__body_release(x);
  rl__http_response_done(&x->http);
}

/* Piece of a body: a chunk, or raw bytes when the response is delimited by
 * length or by close. */
static void body_piece(rl_exchange *x, const char *p, size_t n) {
  if (x->body.chunked)
    rl__http_chunk(&x->http, p, n);
  else
    rl__http_write(&x->http, p, n);
}

/* A streamed body failed after its head went out: what is queued (a
 * pipelined response before it included) is written, then the connection
 * closes. A chunked body so ends without its last chunk, which tells the
 * client it was cut short; a close-delimited one (HTTP/1.0) cannot say so
 * (nginx does the same), and a reset would lose the responses before it. */
static void cut_short(rl_exchange *x) {
  rl__body_release(x);
  x->http.keep_alive = 0;
  rl__http_close(&x->http);
}

static void iter_done(rl_task *t, lua_State *co, int status, int nres) {
  rl_exchange *x = t->data;
  if (x == NULL)
    return;
  rl_body *b = &x->body;
  b->task = NULL;
  b->busy = 0;
  if (status != LUA_OK) {
    rl__log("body iterator error: %s", lua_tostring(co, -1));
    cut_short(x);
    return;
  }
  int idx = lua_gettop(co) - nres + 1;
  if (nres == 0 || lua_isnil(co, idx)) {
    body_end(x);
    return;
  }
  if (lua_type(co, idx) != LUA_TSTRING) {
    rl__log("body iterator error: returned a %s, expected a string or nil",
            luaL_typename(co, idx));
    cut_short(x);
    return;
  }
  size_t n;
  const char *p = lua_tolstring(co, idx, &n);
  body_piece(x, p, n);
  rl__conn_defer(x->http.conn); /* pump again from the flusher */
}

/* Send a file: straight from the file (sendfile) while nothing is queued;
 * when the socket is full the transport queues one piece, whose write
 * resumes the pump. */
static void pump_file(rl_exchange *x) {
  rl_body *b = &x->body;
  rl_conn *c = x->http.conn;
  int fd = fileno(b->fp);
  for (;;) {
    if (rl__conn_buffered(c) || x->http.state != RL_BODY)
      return;
    if (b->left == 0) {
      body_end(x);
      return;
    }
    if (b->left > 0 && !b->chunked) {
      int64_t n = rl__conn_sendfile(c, fd, b->off, (size_t)b->left);
      if (n <= 0) {
        if (n == 0)
          rl__log("file body ended early (truncated while sending?)");
        rl__conn_close(c);
        return;
      }
      b->off += n;
      b->left -= n;
      continue;
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
    body_piece(x, tmp, r);
    return;
  }
}

static int pump_p(lua_State *L) {
  rl_exchange *x = lua_touserdata(L, 1);
  rl_body *b = &x->body;
  if (x->http.state != RL_BODY)
    return 0;
  if (b->kind == 1) {
    pump_file(x);
    return 0;
  }
  rl_conn *c = x->http.conn;
  for (int calls = 0; x->http.state == RL_BODY && !b->busy; calls++) {
    if (rl__conn_buffered(c) >= RL_BODY_HWM) {
      /* a full piece: the socket may take it at once, as it takes a
       * string body, and then the iterator goes on this turn */
      rl__conn_flush_now(c);
      if (x->http.state != RL_BODY || rl__conn_buffered(c) >= RL_BODY_HWM)
        return 0; /* the next write's completion pumps again */
    }
    if (calls == 64) {
      rl__conn_defer(c); /* let the loop breathe */
      return 0;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, b->ref);
    b->busy = 1;
    (void)rl__task_start(x->ctx, L, 0, 0, iter_done, x, &b->task);
  }
  return 0;
}

void rl__body_pump(rl_exchange *x) {
  if (x->http.state == RL_BODY && !x->ctx->closing)
    rl__protect(x->ctx, x->ctx->L, pump_p, x);
}

/* ---- Ring 1.11's WebSocket listener
 * ------------------------------------------ A response
 * {["ring.websocket/listener"] = {on_open, on_message, on_pong, on_ping,
 * on_error, on_close}} is a channel whose callbacks are the listener's: the
 * same as as_channel's but for on_close, which Ring calls with (socket, code,
 * reason). */

#define RL_LISTENER_KEY "ring.websocket/listener"

static int listener_close_k(lua_State *L, int status, lua_KContext k) {
  (void)L, (void)status, (void)k;
  return 0;
}

/* on_close(ch, info) -> the listener's on_close(ch, code, reason) */
static int listener_close(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, 1);
  lua_getfield(L, 2, "code");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushinteger(L, 1005); /* no status received */
  }
  lua_getfield(L, 2, "reason");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushliteral(L, "");
  }
  lua_callk(L, 3, 0, 0, listener_close_k);
  return 0;
}

static int new_channel(lua_State *L) {
  return rl__channel_new(L, lua_touserdata(L, lua_upvalueindex(1)));
}

/* The response at idx holds a listener (on the top): answer with the
 * upgrade, or 426 to a request that did not ask for one. */
static int respond_listener(rl_exchange *x, lua_State *L, int idx, int reqidx,
                            int hidx, const char **err) {
  rl_http *h = &x->http;
  int lidx = lua_gettop(L);
  static const char *const cbs[] = {"on_open", "on_message", "on_pong",
                                    "on_ping", "on_error",   "on_close"};
  if (!lua_istable(L, lidx)) {
    *err = RL_LISTENER_KEY " must be a table of callbacks";
    return -1;
  }
  if (!h->websocket) {
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "websocket");
    lua_setfield(L, -2, "upgrade");
    lua_pushliteral(L, "text/plain");
    lua_setfield(L, -2, "content-type");
    static const char body[] = "this resource speaks WebSocket only\n";
    int r = rl__http_write_head(h, L, 426, lua_gettop(L), RL_FRAME_LENGTH,
                                sizeof body - 1, NULL, err);
    if (r == 0) {
      if (!h->head_only)
        rl__http_write(h, body, sizeof body - 1);
      rl__http_response_done(h);
    }
    return r;
  }
  lua_pushlightuserdata(L, h);
  lua_pushcclosure(L, new_channel, 1);
  lua_pushvalue(L, reqidx);
  lua_createtable(L, 0, 6);
  for (size_t i = 0; i < sizeof cbs / sizeof cbs[0]; i++) {
    int t = lua_getfield(L, lidx, cbs[i]);
    if (t == LUA_TNIL) {
      lua_pop(L, 1);
      continue;
    }
    if (t != LUA_TFUNCTION) {
      *err = "a listener's callbacks must be functions";
      return -1;
    }
    if (i == 5)
      lua_pushcclosure(L, listener_close, 1);
    lua_setfield(L, -2, cbs[i]);
  }
  lua_call(L, 2, 1); /* the channel's response: status 101, the channel */
  int ridx = lua_gettop(L);
  if (hidx) {
    lua_pushvalue(L, hidx);
    lua_setfield(L, ridx, "headers");
  }
  if (lua_getfield(L, idx, "ring.websocket/protocol") == LUA_TSTRING) {
    lua_getfield(L, ridx, "headers");
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "sec-websocket-protocol");
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_getfield(L, ridx, "body");
  rl_channel *ch = rl__channel_test(L, -1);
  return rl__channel_attach(ch, h, L, ridx, x->max_ws, err);
}

/* ---- a handler's response
 * ---------------------------------------------------- */

/* The Content-Length a handler gave with a regular file as its body: that
 * many bytes from the file's position are sent (a 206 answer seeks and sets
 * it), if no more than the file holds there. -1 when absent, or neither a
 * non-negative integer nor a plain decimal string. */
static int64_t user_length(lua_State *L, int hidx) {
  int64_t n = -1;
  lua_pushnil(L);
  while (lua_next(L, hidx)) {
    size_t nl, vl;
    const char *name, *v;
    int t = lua_type(L, -1);
    if (lua_type(L, -2) == LUA_TSTRING &&
        (name = lua_tolstring(L, -2, &nl), nl == 14) &&
        strcasecmp(name, "content-length") == 0) {
      if (t == LUA_TNUMBER) { /* put_headers takes numbers too */
        int ok;
        lua_Integer i = lua_tointegerx(L, -1, &ok);
        n = ok && i >= 0 ? (int64_t)i : -1;
      } else if (t == LUA_TSTRING) {
        v = lua_tolstring(L, -1, &vl);
        n = vl > 0 && vl <= 18 ? 0 : -1;
        for (size_t i = 0; n >= 0 && i < vl; i++)
          n = v[i] >= '0' && v[i] <= '9' ? n * 10 + (v[i] - '0') : -1;
      }
    }
    lua_pop(L, 1);
  }
  return n;
}

int rl__respond(rl_exchange *x, lua_State *L, int idx, int reqidx, int plain,
                const char **err) {
  rl_http *h = &x->http;
  int status = 200;
  idx = lua_absindex(L, idx);
  if (plain && lua_getmetatable(L, idx)) {
    lua_pop(L, 1); /* its __index may raise */
    return 1;
  }
  /* the keys come interned from ctx->keys_ref (lua_getfield would look
   * each up by its C string); lua_gettable still honours __index. The body
   * first: whether a plain call can write it is known before the rest is
   * read. */
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->ctx->keys_ref);
  int K = lua_gettop(L), r = -1;
  lua_rawgeti(L, K, RL_K_BODY);
  lua_gettable(L, idx);
  int bidx = lua_gettop(L);
  int bt = lua_type(L, bidx);
  if (plain && (bt == LUA_TNIL || bt == LUA_TUSERDATA || bt == LUA_TFUNCTION)) {
    r = 1; /* a listener, channel, file or iterator makes Lua values */
    goto out;
  }
  lua_rawgeti(L, K, RL_K_STATUS);
  if (lua_gettable(L, idx) != LUA_TNIL) {
    int ok;
    lua_Integer s = lua_tointegerx(L, -1, &ok);
    if (!ok || s < 100 || s > 999) {
      *err = "status must be an integer from 100 to 999";
      goto out;
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
    goto out;
  }
  int no_body = status < 200 || status == 204 || status == 304;
  int chunked_ok = h->http_minor >= 1;
  rl_channel *ch = NULL;
  luaL_Stream *fs = NULL;

  switch (bt) {
  case LUA_TNIL:
    if (lua_getfield(L, idx, RL_LISTENER_KEY) != LUA_TNIL) {
      r = respond_listener(x, L, idx, reqidx, hidx, err);
      break;
    }
    lua_pop(L, 1);
    /* fall through */
  case LUA_TSTRING: {
    size_t n = 0;
    const char *p = lua_tolstring(L, bidx, &n);
    r = rl__http_write_head(h, L, status, hidx,
                            no_body ? RL_FRAME_NONE : RL_FRAME_LENGTH, n, NULL,
                            err);
    if (r == 0 && !no_body && !h->head_only)
      rl__http_write(h, p, n);
    if (r == 0)
      rl__http_response_done(h);
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
    r = rl__http_write_head(h, L, status, hidx,
                            no_body ? RL_FRAME_NONE : RL_FRAME_LENGTH, total,
                            NULL, err);
    if (r != 0)
      break;
    for (lua_Integer i = 1; i <= n && !no_body && !h->head_only; i++) {
      size_t l;
      lua_rawgeti(L, bidx, i);
      const char *p = lua_tolstring(L, -1, &l);
      rl__http_write(h, p, l);
      lua_pop(L, 1);
    }
    rl__http_response_done(h);
    break;
  }
  case LUA_TUSERDATA:
    if ((ch = rl__channel_test(L, bidx)) != NULL) {
      lua_pushvalue(L, bidx); /* attach takes the channel at the top */
      r = rl__channel_attach(ch, h, L, idx, x->max_ws, err);
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
    rl_body *b = &x->body;
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
        int64_t want = hidx ? user_length(L, hidx) : -1;
        if (want >= 0 && want < b->left)
          b->left = want; /* a part of the file: a Range answer */
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
    if (h->head_only && framing == RL_FRAME_CLOSE)
      framing = RL_FRAME_NONE;
    lua_pushvalue(L, bidx);
    b->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    r = rl__http_write_head(h, L, status, hidx, framing, len, NULL, err);
    if (r != 0 || no_body || h->head_only) {
      rl__body_release(x);
      if (r == 0)
        rl__http_response_done(h);
      break;
    }
    h->state = RL_BODY; /* the pump starts once the head is written */
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
