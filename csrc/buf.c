/* Growable byte buffers: the one helper every reader and writer shares. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "rl.h"

int rl__buf_reserve(rl_buf *b, size_t extra) {
  if (b->cap - b->len >= extra)
    return 0;
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

int rl__buf_append(rl_buf *b, const void *p, size_t n) {
  if (n == 0)
    return 0;
  int r = rl__buf_reserve(b, n);
  if (r)
    return r;
  memcpy(b->base + b->len, p, n);
  b->len += n;
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
