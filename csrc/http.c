/* HTTP/1.1 (http.h), a protocol above the transport: llhttp's callbacks
 * and the request they build, the connection's one-request-at-a-time state
 * machine, keep-alive and pipelining, header and idle timeouts, and the
 * hand-off of an upgraded connection.
 *
 * Owns: each connection's rl_http (in its ext area) and the request's
 * accumulators. May call: response.c's writer (http.h), conn.h, base.h,
 * llhttp; the layer above through its rl_http_cbs only. */
#define _GNU_SOURCE /* O_TMPFILE, mkostemp */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "http.h"

static void drop_body_file(rl_http *h);

/* h->ck: where a chunked body's framing is (see "chunk lines" below) */
enum { CK_NONE, CK_START, CK_SIZE, CK_DATA, CK_CRLF, CK_TRAILER };

#define RL_MAX_HEADERS 128
#define RL_MAX_HEADER_BYTES (64 * 1024)
#define RL_MAX_PENDING (64 * 1024) /* unparsed input held while busy */

/* What the protocol's deadline is for */
enum { TIMER_NONE, TIMER_HEADER, TIMER_IDLE };

static llhttp_settings_t settings;

static int is_tchar(unsigned char ch) { return rl__cclass[ch] & RL_C_TCHAR; }

/* A Sec-WebSocket-Key: base64 of 16 bytes, 22 characters then "==" */
static int valid_ws_key(const char *key, size_t n) {
  if (n != 24 || key[22] != '=' || key[23] != '=')
    return 0;
  for (size_t i = 0; i < 22; i++) {
    char ch = key[i];
    if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
          (ch >= '0' && ch <= '9') || ch == '+' || ch == '/'))
      return 0;
  }
  return strchr("AQgw", key[21]) != NULL; /* the last 4 bits are zero */
}

/* The headers the core itself reads, found in one pass over the list */
enum {
  K_HOST,
  K_TRANSFER_ENCODING,
  K_UPGRADE,
  K_CONNECTION,
  K_WS_VERSION,
  K_WS_KEY,
  K_EXPECT,
  K_NONE
};
static const char *const known[K_NONE] = {
    [K_HOST] = "host",
    [K_TRANSFER_ENCODING] = "transfer-encoding",
    [K_UPGRADE] = "upgrade",
    [K_CONNECTION] = "connection",
    [K_WS_VERSION] = "sec-websocket-version",
    [K_WS_KEY] = "sec-websocket-key",
    [K_EXPECT] = "expect",
};

/* Which of `known` is the (lower-case) name hd, or K_NONE: the length
 * picks the one candidate, memcmp confirms it. */
static int known_header(rl_http *h, const rl_header *hd) {
  const char *s = h->hdrs.base + hd->name;
  int k;
  switch (hd->name_len) {
  case 4:
    k = K_HOST;
    break;
  case 6:
    k = K_EXPECT;
    break;
  case 7:
    k = K_UPGRADE;
    break;
  case 10:
    k = K_CONNECTION;
    break;
  case 17:
    k = s[0] == 't' ? K_TRANSFER_ENCODING : K_WS_KEY;
    break;
  case 21:
    k = K_WS_VERSION;
    break;
  default:
    return K_NONE;
  }
  return memcmp(s, known[k], hd->name_len) == 0 ? k : K_NONE;
}

#define HVAL(h, hd) ((h)->hdrs.base + (hd)->value)

/* ---- llhttp callbacks -------------------------------------------------------
 */

static int fail(llhttp_t *p, int status, const char *reason) {
  rl_http *h = p->data;
  h->err_status = status;
  h->err_reason = reason;
  llhttp_set_error_reason(p, reason);
  return HPE_USER;
}

static int on_message_begin(llhttp_t *p) {
  rl_http *h = p->data;
  rl_io *io = h->conn->io; /* an idle connection gave its buffers back */
  rl__io_buf_take(io, &h->url);
  rl__io_buf_take(io, &h->hdrs);
  rl__io_buf_take(io, &h->hlist);
  h->url.len = h->hdrs.len = h->hlist.len = h->body.len = 0;
  drop_body_file(h);
  h->field_open = 0;
  h->in_message = 1;
  h->head_done = 0;
  h->err_status = 0;
  h->websocket = 0;
  h->resp_status = 0;
  h->done_told = 0;
  h->ck = CK_NONE;
  h->head_only = 0;
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  rl_http *h = p->data;
  h->head_only = p->method == HTTP_HEAD; /* for an error answer too */
  if (h->url.len + n > h->cfg->max_line)
    return fail(p, 414, "request line too long");
  return rl__buf_append(&h->url, at, n) ? fail(p, 500, "out of memory") : 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  rl_http *h = p->data;
  size_t count = h->hlist.len / sizeof(rl_header);
  if (h->field_open == 2)
    return fail(p, 400, "malformed header field");
  if (!h->field_open) {
    if (count >= RL_MAX_HEADERS)
      return fail(p, 431, "too many header fields");
    rl_header nh = {.name = (uint32_t)h->hdrs.len};
    if (rl__buf_append(&h->hlist, &nh, sizeof nh))
      return fail(p, 500, "out of memory");
    count++;
    h->field_open = 1;
  }
  rl_header *hd = (rl_header *)h->hlist.base + count - 1;
  for (size_t i = 0; i < n; i++)
    if (at[i] == ' ' || at[i] == '\t')
      return fail(p, 400, "whitespace in a header field name");
  if (h->hdrs.len + n > RL_MAX_HEADER_BYTES)
    return fail(p, 431, "header section too large");
  if (hd->name_len + n > h->cfg->max_line)
    return fail(p, 431, "header field too long");
  if (n == 0)
    return 0; /* an empty span (hdrs may have no memory yet) */
  if (rl__buf_reserve(&h->hdrs, n))
    return fail(p, 500, "out of memory");
  char *d = h->hdrs.base + h->hdrs.len;
  for (size_t i = 0; i < n; i++)
    d[i] = (char)tolower((unsigned char)at[i]);
  h->hdrs.len += n;
  hd->name_len += (uint32_t)n;
  return 0;
}

static int on_header_field_complete(llhttp_t *p) {
  rl_http *h = p->data;
  rl_header *hd = (rl_header *)(h->hlist.base + h->hlist.len) - 1;
  if (h->field_open != 1 || hd->name_len == 0)
    return fail(p, 400, "empty header field name");
  h->field_open = 2; /* the value comes next */
  hd->value = (uint32_t)h->hdrs.len;
  return 0;
}

static int on_header_value_complete(llhttp_t *p) {
  rl_http *h = p->data;
  if (h->field_open != 2)
    return fail(p, 400, "empty header field name");
  h->field_open = 0;
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  rl_http *h = p->data;
  size_t count = h->hlist.len / sizeof(rl_header);
  if (count == 0 || h->field_open != 2)
    return fail(p, 400, "empty header field name");
  rl_header *hd = (rl_header *)h->hlist.base + count - 1;
  if (h->hdrs.len + n > RL_MAX_HEADER_BYTES)
    return fail(p, 431, "header section too large");
  if (hd->name_len + hd->value_len + n > h->cfg->max_line)
    return fail(p, 431, "header field too long");
  /* An obsolete line fold reaches us as a second span of the same value;
   * llhttp has dropped the CRLF, so the fold is replaced by its spaces as
   * RFC 9112 section 5.2 allows. */
  if (rl__buf_append(&h->hdrs, at, n))
    return fail(p, 500, "out of memory");
  hd->value_len += (uint32_t)n;
  return 0;
}

static int valid_host(const char *v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)v[i];
    if (!(rl__cclass[ch] & RL_C_HOST))
      return 0;
  }
  return 1;
}

/* Enforce RFC 9112's request rules that llhttp leaves to the server. */
static int on_headers_complete(llhttp_t *p) {
  rl_http *h = p->data;
  size_t n;
  rl_header *hd = rl__http_headers(h, &n);
  rl_header *first[K_NONE + 1] = {0}; /* the first of each known header */
  int count[K_NONE + 1] = {0};
  /* Trim trailing whitespace from values (OWS is not part of a value). */
  for (size_t i = 0; i < n; i++) {
    int k = known_header(h, &hd[i]);
    if (count[k]++ == 0)
      first[k] = &hd[i];
    while (hd[i].value_len > 0) {
      char ch = h->hdrs.base[hd[i].value + hd[i].value_len - 1];
      if (ch != ' ' && ch != '\t')
        break;
      hd[i].value_len--;
    }
  }
  h->http_minor = p->http_minor;
  h->head_done = 1;
  if (p->http_major == 0)
    return fail(p, 400, "HTTP/0.9 requests are not supported");
  if (p->http_major != 1)
    return fail(p, 505, "HTTP version not supported");
  int hosts = count[K_HOST];
  rl_header *host = first[K_HOST];
  if (hosts > 1)
    return fail(p, 400, "more than one Host header");
  if (hosts == 0 && p->http_minor >= 1)
    return fail(p, 400, "missing Host header");
  if (host && !valid_host(HVAL(h, host), host->value_len))
    return fail(p, 400, "invalid Host header");
  rl_header *te = first[K_TRANSFER_ENCODING];
  if (te) {
    if (p->http_minor == 0)
      return fail(p, 400, "Transfer-Encoding in an HTTP/1.0 request");
    const char *v = HVAL(h, te);
    size_t vl = te->value_len;
    if (!(vl == 7 && strncasecmp(v, "chunked", 7) == 0))
      return fail(p, 501, "unsupported transfer coding");
  }
  if (p->method == HTTP_CONNECT)
    return fail(p, 501, "CONNECT is not supported");
  if (!(p->flags & F_CHUNKED) && p->content_length > h->cfg->max_body)
    return fail(p, 413, "request body too large");
  h->head_only = p->method == HTTP_HEAD;
  h->keep_alive = llhttp_should_keep_alive(p) && !h->goaway;
  /* A WebSocket upgrade (RFC 6455 4.2.1): checked here, so the handler
   * sees req.websocket only for a valid one. */
  rl_header *up = first[K_UPGRADE];
  rl_header *conn = first[K_CONNECTION];
  /* RFC 9110 7.8: an Upgrade not named in Connection is ignored */
  if (up && rl__has_token(HVAL(h, up), up->value_len, "websocket") && conn &&
      rl__has_token(HVAL(h, conn), conn->value_len, "upgrade")) {
    rl_header *ver = first[K_WS_VERSION];
    int nkeys = count[K_WS_KEY];
    rl_header *key = first[K_WS_KEY];
    if (p->method != HTTP_GET || p->http_minor < 1 || (p->flags & F_CHUNKED) ||
        p->content_length > 0)
      return fail(p, 400, "invalid WebSocket upgrade request");
    if (ver == NULL || count[K_WS_VERSION] != 1 || ver->value_len != 2 ||
        memcmp(HVAL(h, ver), "13", 2)) /* one, and 13 (a repeat is not) */
      return fail(p, 426, "unsupported WebSocket version");
    if (key == NULL || nkeys != 1 ||
        !valid_ws_key(HVAL(h, key), key->value_len))
      return fail(p, 400, "missing or invalid Sec-WebSocket-Key");
    h->websocket = 1;
  }
  /* Other upgrades are ignored: the request is plain HTTP. */
  p->upgrade = 0;
  rl_header *ex = first[K_EXPECT];
  if (ex && p->http_minor >= 1) {
    if (!(ex->value_len == 12 &&
          strncasecmp(HVAL(h, ex), "100-continue", 12) == 0))
      return fail(p, 417, "unsupported expectation");
    if ((p->flags & F_CHUNKED) || p->content_length > 0) {
      static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
      rl__http_write(h, cont, sizeof cont - 1);
    }
  }
#if LLHTTP_VERSION_MAJOR < 9 /* llhttp 9 parses chunk extensions right */
  if (p->flags & F_CHUNKED) {
    h->ck = CK_START; /* process() reads the chunk lines first */
    return HPE_PAUSED;
  }
#endif
  return 0;
}

/* Write all of p to fd (a regular file: blocking, against the page cache,
 * as nginx writes its client_body_temp files). */
static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* The body outgrew cfg->body_file: what came so far, and all that follows,
 * goes to an unnamed temporary file (gone once closed). */
static int spill_body(rl_http *h) {
  const char *dir = getenv("TMPDIR");
  if (dir == NULL || *dir == '\0')
    dir = "/tmp";
  int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) { /* a file system without O_TMPFILE: make one, unlink it */
    char path[4096];
    snprintf(path, sizeof path, "%s/ringlet-body-XXXXXX", dir);
    fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
      return -1;
    unlink(path);
  }
  if (write_all(fd, h->body.base, h->body.len) != 0) {
    close(fd);
    return -1;
  }
  size_t n = h->body.len; /* from now on a count of the file's bytes */
  rl__buf_free(&h->body);
  h->body.len = n;
  h->body_fd = fd + 1;
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  rl_http *h = p->data;
  if (h->body.len + n > h->cfg->max_body)
    return fail(p, 413, "request body too large");
  if (h->body_fd == 0 && h->cfg->body_file &&
      h->body.len + n > h->cfg->body_file && spill_body(h) != 0) {
    rl__log("request body: cannot write a temporary file: %s", strerror(errno));
    return fail(p, 500, "cannot store the request body");
  }
  if (h->body_fd) {
    h->body.len += n; /* counted against max_body; the bytes are in the file */
    if (write_all(h->body_fd - 1, at, n) != 0) {
      rl__log("request body: cannot write its temporary file: %s",
              strerror(errno));
      return fail(p, 500, "cannot store the request body");
    }
    return 0;
  }
  rl__io_buf_take(h->conn->io, &h->body);
  return rl__buf_append(&h->body, at, n) ? fail(p, 500, "out of memory") : 0;
}

static void drop_body_file(rl_http *h) {
  if (h->body_fd) {
    close(h->body_fd - 1);
    h->body_fd = 0;
  }
}

int rl__http_take_body_file(rl_http *h) {
  int fd = h->body_fd - 1;
  if (fd < 0)
    return -1;
  h->body_fd = 0;
  if (lseek(fd, 0, SEEK_SET) != 0) {
    rl__log("request body: cannot rewind its temporary file: %s",
            strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

static int on_chunk_header(llhttp_t *p) {
  rl_http *h = p->data;
  /* refuse an oversized chunk before its data arrives */
  if (p->content_length > h->cfg->max_body - h->body.len)
    return fail(p, 413, "request body too large");
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  rl_http *h = p->data;
  h->msg_complete = 1;
  h->in_message = 0;
  return HPE_PAUSED;
}

/* PROXY protocol v1: "PROXY TCP4 src dst sport dport\r\n". Returns 1 when
 * consumed (or absent and optional), 0 when more bytes are needed, -1 on
 * a malformed or missing header. */
static int proxy_header(rl_http *h) {
  const char *p = h->conn->in.base + h->conn->in_pos;
  size_t n = h->conn->in.len - h->conn->in_pos;
  static const char sig[] = "PROXY ";
  size_t cmp = n < 6 ? n : 6;
  if (memcmp(p, sig, cmp) != 0)
    return h->cfg->proxy_protocol == 2 ? (h->proxy_pending = 0, 1) : -1;
  const char *nl = memchr(p, '\n', n < 108 ? n : 108);
  if (nl == NULL)
    return n >= 108 ? -1 : 0;
  if (nl == p || nl[-1] != '\r')
    return -1;
  char line[108];
  size_t ll = (size_t)(nl - p) - 1;
  memcpy(line, p, ll);
  line[ll] = 0;
  char proto[8], src[48], dst[48];
  int sport, dport;
  if (strcmp(line, "PROXY UNKNOWN") == 0 ||
      strncmp(line, "PROXY UNKNOWN ", 14) == 0) {
    /* keep the real peer */
  } else if (sscanf(line, "PROXY %7s %47s %47s %d %d", proto, src, dst, &sport,
                    &dport) == 5 &&
             (strcmp(proto, "TCP4") == 0 || strcmp(proto, "TCP6") == 0)) {
    /* the address as the system writes it: TCP4 an IPv4 one, TCP6 an
     * IPv6 one with no zone (uv_ip6_addr would take "fe80::1%anything") */
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    char name[sizeof h->conn->remote];
    int bad;
    if (proto[3] == '4')
      bad = uv_ip4_addr(src, 0, &a4) != 0 ||
            uv_ip4_name(&a4, name, sizeof name) != 0;
    else
      bad = strchr(src, '%') != NULL || uv_ip6_addr(src, 0, &a6) != 0 ||
            uv_ip6_name(&a6, name, sizeof name) != 0;
    if (bad)
      return -1;
    if (sport < 0 || sport > 65535 || dport < 0 || dport > 65535)
      return -1;
    memcpy(h->conn->remote, name, sizeof name);
    h->conn->remote_port = sport;
  } else {
    return -1;
  }
  h->conn->in_pos += (size_t)(nl - p) + 1;
  h->proxy_pending = 0;
  return 1;
}

/* Does the unparsed input start with a line "... HTTP/d.d\r\n"? Tells a
 * version or method we do not speak (505, 501) from garbage (400). */
static int looks_like_request_line(rl_http *h) {
  const char *p = h->conn->in.base + h->conn->in_pos;
  size_t n = h->conn->in.len - h->conn->in_pos;
  const char *nl = memchr(p, '\n', n);
  if (nl == NULL || nl - p < 12 || nl[-1] != '\r')
    return 0;
  const char *v = nl - 9;
  return v[-1] == ' ' && memcmp(v, "HTTP/", 5) == 0 &&
         isdigit((unsigned char)v[5]) && v[6] == '.' &&
         isdigit((unsigned char)v[7]);
}

/* RFC 9110 2.5: a request with a higher minor version than ours is
 * served as HTTP/1.1. llhttp 8 (Debian 12's) rejects HTTP/1.2 and up, so
 * the request line is rewritten before it parses it. Returns 0 when the
 * line is not complete yet. */
static int serve_as_http11(rl_http *h, size_t avail) {
  char *p = h->conn->in.base + h->conn->in_pos;
  char *nl = memchr(p, '\n', avail);
  if (nl == NULL)
    return avail > h->cfg->max_line + 16; /* llhttp says 414 */
  if (nl - p >= 11 && nl[-1] == '\r' && nl[-10] == ' ' &&
      memcmp(nl - 9, "HTTP/1.", 7) == 0 && nl[-2] >= '2' && nl[-2] <= '9')
    nl[-2] = '1';
  return 1;
}

static int status_for(llhttp_errno_t e, rl_http *h) {
  if (h->err_status)
    return h->err_status;
  switch (e) {
  case HPE_PAUSED_H2_UPGRADE:
    return 505;
  case HPE_INVALID_VERSION:
    return looks_like_request_line(h) ? 505 : 400;
  case HPE_INVALID_METHOD: {
    /* a well-formed request with a method token we do not know: 501 */
    const char *p = h->conn->in.base + h->conn->in_pos;
    const char *end = h->conn->in.base + h->conn->in.len;
    const char *q = p;
    while (q < end && is_tchar((unsigned char)*q))
      q++;
    return q > p && q < end && *q == ' ' && looks_like_request_line(h) ? 501
                                                                       : 400;
  }
  default:
    return 400;
  }
}
/* ---- deadlines --------------------------------------------------------------
 */

static void arm_timer(rl_http *h, int mode) {
  h->timer_mode = mode;
  rl__conn_timeout(h->conn, mode == TIMER_HEADER ? h->cfg->header_timeout
                            : mode == TIMER_IDLE ? h->cfg->idle_timeout
                                                 : 0);
}

static void disarm_timer(rl_http *h) {
  h->timer_mode = TIMER_NONE;
  rl__conn_timeout(h->conn, 0);
}

static void http_timeout(rl_conn *c) {
  rl_http *h = c->data;
  h->timer_mode = TIMER_NONE;
  if (h->state != RL_READING ||
      (!h->in_message && c->in_pos == c->in.len && h->url.len == 0)) {
    rl__conn_close(c); /* an idle keep-alive connection, or a stalled body */
    return;
  }
  h->keep_alive = 0;
  rl__http_error(h, 408, "request header timeout");
}

/* ---- parsing ------------------------------------------------------------- */

int rl__http_header(rl_http *h, const char *name, size_t nl, const char **v,
                    size_t *vl) {
  size_t n;
  rl_header *hd = rl__http_headers(h, &n);
  int count = 0;
  for (size_t i = 0; i < n; i++) {
    if (hd[i].name_len == nl &&
        memcmp(h->hdrs.base + hd[i].name, name, nl) == 0 && count++ == 0) {
      *v = HVAL(h, &hd[i]);
      *vl = hd[i].value_len;
    }
  }
  return count;
}

/* A whole request is parsed: the layer above answers it. */
static void dispatch(rl_http *h) {
  h->state = RL_HANDLING;
  h->cbs->on_request(h);
  /* The request's bytes are the upper layer's now; an access log reads
   * the request line and headers again once the exchange is over, a
   * WebSocket upgrade its key (rl__http_header) when the handler answers. */
  if (h->cbs->on_done == NULL) {
    h->url.len = 0;
    if (!h->websocket)
      h->hdrs.len = h->hlist.len = 0;
  }
  h->body.len = 0;
  drop_body_file(h); /* unless the layer above took it */
  if (h->body.cap > RL_MAX_PENDING)
    rl__buf_free(&h->body);
}

/* ---- chunk lines ----------------------------------------------------------
 * llhttp 8.1 (Debian 12's) refuses some chunk extensions RFC 9112 7.1.1
 * allows (a valued one followed by another, "5;a=1;b", fixed upstream in
 * llhttp 9: with llhttp 9 or later this is not used), and accepts some it
 * does not ("5;a=", "5;=1"). So ringlet
 * follows a chunked body's framing just ahead of llhttp: every chunk-size
 * line is checked against the RFC's grammar, and its extensions (which
 * mean nothing to ringlet) are cut out of the read buffer before llhttp
 * sees the line, so llhttp parses "5\r\n". A line the grammar refuses is
 * a 400 here, whatever llhttp would make of it. The data, the CRLF after
 * it and the trailer section pass through untouched; llhttp still checks
 * them, and both count the same sizes. */

/* chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 * with chunk-ext-val = token / quoted-string. 1 if e[0..n) is one. */
static int valid_chunk_ext(const unsigned char *e, size_t n) {
  size_t i = 0;
#define BWS()                                                                  \
  while (i < n && (e[i] == ' ' || e[i] == '\t'))                               \
  i++
  while (i < n) {
    BWS();
    if (i == n || e[i++] != ';')
      return 0;
    BWS();
    size_t start = i;
    while (i < n && is_tchar(e[i]))
      i++;
    if (i == start)
      return 0; /* a name is a token */
    BWS();
    if (i < n && e[i] == '=') {
      i++;
      BWS();
      if (i < n && e[i] == '"') { /* quoted-string */
        i++;
        for (;;) {
          if (i == n)
            return 0;
          unsigned char ch = e[i++];
          if (ch == '"')
            break;
          if (ch == '\\') {
            if (i == n || (e[i] < 0x20 && e[i] != '\t') || e[i] == 0x7f)
              return 0;
            i++;
          } else if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
            return 0;
          }
        }
      } else {
        start = i;
        while (i < n && is_tchar(e[i]))
          i++;
        if (i == start)
          return 0; /* a value is a token or a quoted-string */
      }
      BWS();
    }
  }
#undef BWS
  return 1;
}

/* How many of the unparsed bytes llhttp may have now: all, or those before
 * a chunk-size or trailer line not yet whole. Cuts the extensions out of
 * each whole chunk-size line on the way. -1: a chunk-size line the grammar
 * refuses (or longer than max_line). */
static ssize_t chunk_feed(rl_http *h) {
  rl_conn *c = h->conn;
  size_t at = c->in_pos;
  while (at < c->in.len && h->ck != CK_NONE) {
    char *b = c->in.base;
    size_t avail = c->in.len - at;
    if (h->ck == CK_DATA || h->ck == CK_CRLF) {
      size_t n = avail < h->ck_left ? avail : (size_t)h->ck_left;
      at += n;
      h->ck_left -= n;
      if (h->ck_left == 0 && h->ck == CK_DATA) {
        h->ck = CK_CRLF;
        h->ck_left = 2;
      } else if (h->ck_left == 0) {
        h->ck = CK_SIZE;
      }
      continue;
    }
    /* a line: CK_SIZE or CK_TRAILER */
    char *lf = memchr(b + at, '\n', avail);
    if (lf == NULL) {
      if (avail > h->cfg->max_line)
        return -1;
      break; /* wait for the rest of the line */
    }
    size_t len = (size_t)(lf - (b + at)) + 1;
    if (h->ck == CK_SIZE && len > h->cfg->max_line)
      return -1;
    if (h->ck == CK_TRAILER) { /* llhttp parses trailer fields */
      at += len;
      if (len <= 2) /* the empty line: the message ends */
        h->ck = CK_NONE;
      continue;
    }
    if (len < 3 || lf[-1] != '\r')
      return -1; /* not "SIZE...CRLF" */
    size_t i = 0, end = len - 2;
    uint64_t size = 0;
    while (i < end && i < 16 && isxdigit((unsigned char)b[at + i])) {
      int ch = b[at + i];
      size =
          size * 16 + (uint64_t)(ch <= '9' ? ch - '0' : (ch | 32) - 'a' + 10);
      i++;
    }
    if (i == 0 || (i < end && isxdigit((unsigned char)b[at + i])))
      return -1;   /* no size, or more than 16 hex digits */
    if (i < end) { /* extensions: checked, then cut out */
      if (!valid_chunk_ext((const unsigned char *)b + at + i, end - i))
        return -1;
      memmove(b + at + i, b + at + end, c->in.len - (at + end));
      c->in.len -= end - i;
      len -= end - i;
    }
    at += len;
    if (size == 0) {
      h->ck = CK_TRAILER;
    } else {
      h->ck = CK_DATA;
      h->ck_left = size;
    }
  }
  return (ssize_t)(at - c->in_pos);
}

static void process(rl_http *h) {
  rl_conn *c = h->conn;
  while (h->state == RL_READING && !rl__conn_closing(c)) {
    if (c->in_pos == c->in.len)
      break;
    if (rl__conn_pause_if_full(c))
      break;
    if (h->proxy_pending) {
      int r = proxy_header(h);
      if (r == 0)
        break;
      if (r < 0) {
        h->keep_alive = 0;
        rl__http_error(h, 400, "bad PROXY protocol header");
        break;
      }
      continue;
    }
    const char *p = c->in.base + c->in_pos;
    size_t avail = c->in.len - c->in_pos;
    if (!h->in_message && !serve_as_http11(h, avail)) {
      if (h->timer_mode != TIMER_HEADER)
        arm_timer(h, TIMER_HEADER); /* a new request starts */
      break;                        /* wait for the whole request line */
    }
    size_t feed = avail;
    if (h->ck != CK_NONE) {
      if (h->ck == CK_START)
        h->ck = CK_SIZE;
      ssize_t n = chunk_feed(h);
      if (n < 0) {
        h->keep_alive = 0;
        rl__http_error(h, 400, "invalid chunk size line");
        break;
      }
      avail = c->in.len - c->in_pos; /* extensions were cut out */
      feed = (size_t)n;
      if (feed == 0) { /* wait for the rest of a line */
        if (h->timer_mode != TIMER_IDLE)
          arm_timer(h, TIMER_IDLE); /* the head is done: a body arrives */
        break;
      }
    }
    llhttp_errno_t e = llhttp_execute(&h->parser, p, feed);
    if (e == HPE_OK) {
      c->in_pos += feed;
      if (h->head_done && h->in_message)
        arm_timer(h, TIMER_IDLE); /* a body is arriving: not idle */
      else if (h->in_message && h->timer_mode != TIMER_HEADER)
        arm_timer(h, TIMER_HEADER); /* a head begun: its deadline counts
                                       from now (a whole one needs none) */
      if (feed < avail)
        continue; /* more after a line now whole, or wait for it */
      break;
    }
    if (e == HPE_PAUSED && h->ck == CK_START) { /* a chunked body begins */
      c->in_pos += (size_t)(llhttp_get_error_pos(&h->parser) - p);
      llhttp_resume(&h->parser);
      continue;
    }
    if (e == HPE_PAUSED && h->msg_complete) {
      c->in_pos += (size_t)(llhttp_get_error_pos(&h->parser) - p);
      h->msg_complete = 0;
      llhttp_resume(&h->parser);
      disarm_timer(h);
      dispatch(h);
      continue;
    }
    int status = status_for(e, h);
    const char *reason =
        h->err_status ? h->err_reason : llhttp_get_error_reason(&h->parser);
    h->keep_alive = 0;
    rl__http_error(h, status, reason);
    break;
  }
  if (h->state == RL_READING && !rl__conn_closing(c)) {
    rl__conn_read_start(c);
    if (c->in_pos == c->in.len && !h->in_message) {
      arm_timer(h, TIMER_IDLE);
      rl__conn_in_trim(c, 0);          /* idle: no read buffer of its own, */
      rl__io_buf_give(c->io, &h->url); /* nor request buffers */
      rl__io_buf_give(c->io, &h->hdrs);
      rl__io_buf_give(c->io, &h->hlist);
      if (h->body_fd == 0)
        rl__io_buf_give(c->io, &h->body);
    }
  }
}

/* ---- the transport's events ---------------------------------------------- */

static void http_read(rl_conn *c) {
  rl_http *h = c->data;
  if (h->state == RL_READING)
    process(h);
  else if (c->in.len - c->in_pos > RL_MAX_PENDING)
    rl__conn_read_stop(c); /* resumed when the parser catches up */
}

/* The peer is gone or half-closed. A response in progress may finish
 * (then we close); anything else closes now, on_close included. */
static void http_eof(rl_conn *c, int err) {
  rl_http *h = c->data;
  if (err == UV_EOF && (h->state == RL_HANDLING || h->state == RL_BODY)) {
    h->keep_alive = 0;
    return;
  }
  if (err == UV_EOF && h->state == RL_READING && rl__conn_buffered(c)) {
    rl__http_close(h); /* half-closed: finish writing what it asked */
    return;
  }
  rl__conn_close(c);
}

static void http_written(rl_conn *c) {
  rl_http *h = c->data;
  if (h->state == RL_STREAM ||
      (h->state == RL_BODY && rl__conn_buffered(c) == 0))
    h->cbs->on_written(h);
}

/* Continue after an asynchronous response completed (from the flusher). */
static void http_continue(rl_conn *c) {
  rl_http *h = c->data;
  if (h->state == RL_READING)
    process(h);
  else if (h->state == RL_BODY || h->state == RL_STREAM)
    h->cbs->on_written(h); /* the body or stream asked to go on later */
}

/* cbs->on_done, once per request that reached a response (or a parse
 * error): see http.h. */
static void tell_done(rl_http *h) {
  if (h->cbs->on_done == NULL || h->done_told ||
      (h->state != RL_HANDLING && h->state != RL_BODY &&
       h->state != RL_STREAM && !h->in_message && !h->resp_status))
    return;
  h->done_told = 1;
  uint64_t q = h->conn->queued_total;
  h->cbs->on_done(h, h->resp_status,
                  h->resp_status && q > h->resp_body_at ? q - h->resp_body_at
                                                        : 0);
}

/* The server is stopping: idle connections close now, streams end now
 * (on_close fires), busy ones finish their response and close. */
/* The server is stopping: an idle connection closes now; a response in
 * progress, a stream or a long poll included, goes on (with Connection:
 * close, or the connection closing after it) until it ends or the stop's
 * timeout closes what is left. */
static void http_goaway(rl_conn *c) {
  rl_http *h = c->data;
  h->goaway = 1;
  if (h->state == RL_READING && !h->in_message)
    rl__http_close(h);
  else
    h->keep_alive = 0;
}

static void http_close(rl_conn *c) {
  rl_http *h = c->data;
  if (h->state != RL_UPGRADED)
    tell_done(h); /* a response cut short, or one done as the conn closed */
  h->state = RL_CLOSING;
  if (!h->closed_up) {
    h->closed_up = 1;
    h->cbs->on_close(h);
  }
}

static void free_request(rl_http *h) {
  drop_body_file(h);
  rl__buf_free(&h->url);
  rl__buf_free(&h->hdrs);
  rl__buf_free(&h->hlist);
  rl__buf_free(&h->body);
}

static void http_free(rl_conn *c) { free_request(c->data); }

static const rl_proto http_proto = {
    .on_read = http_read,
    .on_eof = http_eof,
    .on_written = http_written,
    .on_continue = http_continue,
    .on_timeout = http_timeout,
    .on_goaway = http_goaway,
    .on_close = http_close,
    .on_free = http_free,
};

/* ---- what the layer above calls ------------------------------------------ */

void rl__http_start(rl_http *h, rl_conn *c, const rl_http_cfg *cfg,
                    const rl_http_cbs *cbs) {
  static int settings_ready;
  if (!settings_ready) {
    llhttp_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_header_field = on_header_field;
    settings.on_header_field_complete = on_header_field_complete;
    settings.on_header_value = on_header_value;
    settings.on_header_value_complete = on_header_value_complete;
    settings.on_chunk_header = on_chunk_header;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
    settings_ready = 1;
  }
  h->conn = c;
  h->cfg = cfg;
  h->cbs = cbs;
  llhttp_init(&h->parser, HTTP_REQUEST, &settings);
  h->parser.data = h;
  h->proxy_pending = cfg->proxy_protocol != 0;
  h->state = RL_READING;
  h->keep_alive = 1;
  c->idle_ms = cfg->idle_timeout;
  c->borrow = 1; /* an idle connection holds no read buffer of its own */
  rl__conn_set_proto(c, &http_proto, h);
  arm_timer(h, TIMER_HEADER);
  rl__conn_read_start(c);
}

void rl__http_response_done(rl_http *h) {
  if (h->state == RL_CLOSING || h->state == RL_UPGRADED)
    return;
  if (h->cbs->on_done) {
    tell_done(h);
    /* what an access log read is done with: an idle connection's timer
     * looks for an empty request line */
    h->url.len = h->hdrs.len = h->hlist.len = 0;
    if (h->state == RL_CLOSING || rl__conn_closing(h->conn))
      return; /* the log's function stopped the server meanwhile */
  }
  h->state = RL_READING;
  if (!h->keep_alive || h->goaway || h->conn->read_eof) {
    rl__http_close(h);
    return;
  }
  rl__conn_defer(h->conn); /* parse what is pipelined, from the flusher */
}

void rl__http_error(rl_http *h, int status, const char *detail) {
  if (rl__conn_closing(h->conn) || h->state == RL_CLOSING)
    return;
  if (rl__http_write_error(h, status, detail) != 0) {
    rl__conn_close(h->conn);
    return;
  }
  rl__http_response_done(h);
}

void rl__http_close(rl_http *h) {
  h->state = RL_CLOSING;
  rl__conn_shutdown(h->conn);
}

int rl__http_upgrade(rl_http *h, lua_State *L, int hidx, const char *extra,
                     const char **err) {
  if (rl__http_write_head(h, L, 101, hidx, RL_FRAME_NONE, 0, extra, err))
    return -1;
  tell_done(h); /* 101: the request's fields are freed next */
  h->state = RL_UPGRADED;
  h->keep_alive = 0;
  disarm_timer(h);
  /* the request's accumulators are done with: an idle socket keeps no
   * buffers */
  free_request(h);
  return 0;
}
