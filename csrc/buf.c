/* The base layer (base.h): growable byte buffers, the one helper every
 * reader and writer shares; the character classes and token lists the
 * parser and the response writer check; the Date cache; logging.
 *
 * Owns: nothing beyond each buffer's bytes. May call: libc, libuv. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base.h"

int rl__buf_grow(rl_buf *b, size_t extra) {
  size_t cap = b->cap ? b->cap : 256;
  while (cap - b->len < extra) {
    if (cap > SIZE_MAX / 2)
      return UV_ENOMEM;
    cap *= 2;
  }
  char *p = realloc(b->base, cap);
  if (p == NULL)
    return UV_ENOMEM;
  b->base = p;
  b->cap = cap;
  return 0;
}

int rl__buf_printf(rl_buf *b, const char *fmt, ...) {
  va_list ap;
  int r = rl__buf_reserve(b, 64);
  if (r)
    return r;
  va_start(ap, fmt);
  int n = vsnprintf(b->base + b->len, b->cap - b->len, fmt, ap);
  va_end(ap);
  if (n < 0)
    return UV_EINVAL;
  if ((size_t)n >= b->cap - b->len) {
    if ((r = rl__buf_reserve(b, (size_t)n + 1)))
      return r;
    va_start(ap, fmt);
    vsnprintf(b->base + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
  }
  b->len += (size_t)n;
  return 0;
}

void rl__buf_free(rl_buf *b) {
  free(b->base);
  b->base = NULL;
  b->len = b->cap = 0;
}

/* ---- character classes ------------------------------------------------- */

#define T RL_C_TCHAR
#define H RL_C_HOST
#define TH (RL_C_TCHAR | RL_C_HOST)
/* RFC 9110 tchar (header names) and what a Host value may hold */
const unsigned char rl__cclass[256] = {
    ['!'] = TH, ['#'] = T,  ['$'] = TH, ['%'] = TH, ['&'] = TH, ['\''] = TH,
    ['('] = H,  [')'] = H,  ['*'] = TH, ['+'] = TH, [','] = H,  ['-'] = TH,
    ['.'] = TH, ['0'] = TH, ['1'] = TH, ['2'] = TH, ['3'] = TH, ['4'] = TH,
    ['5'] = TH, ['6'] = TH, ['7'] = TH, ['8'] = TH, ['9'] = TH, [':'] = H,
    [';'] = H,  ['='] = H,  ['A'] = TH, ['B'] = TH, ['C'] = TH, ['D'] = TH,
    ['E'] = TH, ['F'] = TH, ['G'] = TH, ['H'] = TH, ['I'] = TH, ['J'] = TH,
    ['K'] = TH, ['L'] = TH, ['M'] = TH, ['N'] = TH, ['O'] = TH, ['P'] = TH,
    ['Q'] = TH, ['R'] = TH, ['S'] = TH, ['T'] = TH, ['U'] = TH, ['V'] = TH,
    ['W'] = TH, ['X'] = TH, ['Y'] = TH, ['Z'] = TH, ['['] = H,  [']'] = H,
    ['^'] = T,  ['_'] = TH, ['`'] = T,  ['a'] = TH, ['b'] = TH, ['c'] = TH,
    ['d'] = TH, ['e'] = TH, ['f'] = TH, ['g'] = TH, ['h'] = TH, ['i'] = TH,
    ['j'] = TH, ['k'] = TH, ['l'] = TH, ['m'] = TH, ['n'] = TH, ['o'] = TH,
    ['p'] = TH, ['q'] = TH, ['r'] = TH, ['s'] = TH, ['t'] = TH, ['u'] = TH,
    ['v'] = TH, ['w'] = TH, ['x'] = TH, ['y'] = TH, ['z'] = TH, ['|'] = T,
    ['~'] = TH,
};
#undef T
#undef H
#undef TH

/* ---- tokens, Date, log ----------------------------------------------------
 */

int rl__has_token(const char *v, size_t n, const char *tok) {
  size_t tl = strlen(tok);
  size_t i = 0;
  while (i < n) {
    while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
      i++;
    size_t s = i;
    while (i < n && v[i] != ',')
      i++;
    size_t e = i;
    while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
      e--;
    if (e - s == tl && strncasecmp(v + s, tok, tl) == 0)
      return 1;
  }
  return 0;
}

const char rl__months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

const char *rl__date(rl_date *d) {
  static const char days[][4] = {"Sun", "Mon", "Tue", "Wed",
                                 "Thu", "Fri", "Sat"};
  time_t now = time(NULL);
  if (now != d->sec) {
    struct tm tm;
    gmtime_r(&now, &tm);
    snprintf(d->date, sizeof d->date, "%s, %02d %s %04d %02d:%02d:%02d GMT",
             days[tm.tm_wday], tm.tm_mday, rl__months[tm.tm_mon],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    snprintf(d->date_line, sizeof d->date_line, "Date: %s\r\n", d->date);
    d->sec = now;
  }
  return d->date;
}

const char *rl__date_line(rl_date *d) {
  rl__date(d);
  return d->date_line;
}

void rl__log(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("ringlet: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  fflush(stderr);
}

void rl__handle_free(uv_handle_t *h) { free(h); }
