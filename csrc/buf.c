/* Growable byte buffers, the one helper every reader and writer shares, and
 * the character classes the parser and the response writer check. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "rl.h"

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
