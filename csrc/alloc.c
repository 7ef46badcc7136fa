/* A lua_Alloc for states ringlet's hosts create (ringlet_newstate): small
 * blocks come from per-size free lists carved out of 64 KiB slabs, so the
 * tables and strings a request makes and drops cost a list push and pop
 * instead of a trip through malloc and free.
 *
 * Lua hands the allocator the old size of every block it frees or resizes,
 * so a block needs no header: its size class is computed again from osize.
 * Blocks above RL_POOL_MAX go to realloc/free. Freed small blocks are kept
 * for reuse, never returned to the system; the slabs are freed with the
 * state (ringlet_closestate).
 *
 * Under AddressSanitizer every block goes to realloc/free, so it still sees
 * each use after free and overflow.
 *
 * Base layer. Owns: the slabs of each state it made. May call: libc, Lua's
 * lua_newstate and lua_close. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "ringlet.h"

#if defined(__SANITIZE_ADDRESS__)
#define RL_POOL_OFF 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RL_POOL_OFF 1
#endif
#endif

enum {
  RL_POOL_STEP = 16,   /* class width and alignment */
  RL_POOL_MAX = 512,   /* larger blocks use malloc */
  RL_SLAB = 64 * 1024, /* carved into small blocks */
  RL_CLASSES = RL_POOL_MAX / RL_POOL_STEP + 1
};

typedef struct rl_slab {
  struct rl_slab *next;
  max_align_t align; /* blocks start after this header, suitably aligned */
} rl_slab;

typedef struct rl_pool {
  void *free[RL_CLASSES]; /* each free block's first word links the next */
  char *bump, *end;       /* the unused rest of the newest slab */
  rl_slab *slabs;
} rl_pool;

#ifdef RL_POOL_OFF
static void *pool_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

#else
static size_t class_of(size_t n) {
  return (n + RL_POOL_STEP - 1) / RL_POOL_STEP;
}

/* A block of n bytes' class from its free list, or NULL when it is empty. */
static inline void *pool_take(rl_pool *p, size_t n) {
  void **list = &p->free[class_of(n)];
  void *b = *list;
  if (b)
    *list = *(void **)b;
  return b;
}

static void *pool_get(rl_pool *p, size_t n) {
  void *b = pool_take(p, n);
  if (b)
    return b;
  size_t sz = class_of(n) * RL_POOL_STEP;
  if ((size_t)(p->end - p->bump) < sz) {
    rl_slab *s = malloc(RL_SLAB);
    if (s == NULL)
      return NULL;
    s->next = p->slabs;
    p->slabs = s;
    /* the tail of the old slab (< one block) is left unused */
    p->bump = (char *)(s + 1);
    p->end = (char *)s + RL_SLAB;
  }
  b = p->bump;
  p->bump += sz;
  return b;
}

static void pool_put(rl_pool *p, void *b, size_t n) {
  size_t k = class_of(n);
  *(void **)b = p->free[k];
  p->free[k] = b;
}

/* Everything but taking a listed block and giving one back: slabs,
 * resizes and large blocks (never ptr NULL with nsize 0). Kept out of line so
 * that pool_alloc's two common cases run without saving a register. */
static __attribute__((noinline)) void *pool_slow(rl_pool *p, void *ptr,
                                                 size_t osize, size_t nsize) {
  if (ptr == NULL)
    osize = 0; /* then osize is the kind of object, not a size */
  int small_old = ptr && osize <= RL_POOL_MAX;
  if (nsize == 0) {
    if (small_old)
      pool_put(p, ptr, osize);
    else
      free(ptr);
    return NULL;
  }
  if (nsize > RL_POOL_MAX) {
    if (ptr == NULL || !small_old)
      return realloc(ptr, nsize);
    void *nb = malloc(nsize);
    if (nb == NULL)
      return NULL;
    memcpy(nb, ptr, osize);
    pool_put(p, ptr, osize);
    return nb;
  }
  if (ptr && small_old && class_of(osize) == class_of(nsize))
    return ptr;
  void *nb = pool_get(p, nsize);
  if (nb == NULL) {
    /* Lua keeps ptr when growing fails, but a shrink must not fail: keep
     * the bigger block. Freed later as a block of nsize it joins that
     * class's list (a malloc'd one is then never given back: this happens
     * only when a new slab cannot be had). */
    return ptr && osize >= nsize ? ptr : NULL;
  }
  if (ptr) {
    memcpy(nb, ptr, osize < nsize ? osize : nsize);
    if (small_old)
      pool_put(p, ptr, osize);
    else
      free(ptr);
  }
  return nb;
}

static void *pool_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  rl_pool *p = ud;
  if (ptr == NULL) { /* a new block; osize is the kind of object */
    if (nsize == 0)
      return NULL; /* Lua frees and resizes empty arrays so */
    void *b = nsize <= RL_POOL_MAX ? pool_take(p, nsize) : NULL;
    if (b)
      return b;
  } else if (nsize == 0 && osize <= RL_POOL_MAX) {
    pool_put(p, ptr, osize);
    return NULL;
  }
  return pool_slow(p, ptr, osize, nsize);
}

#endif

/* Warnings as luaL_newstate's state has them: off until "@on". */
static void warn_off(void *ud, const char *msg, int tocont);
static void warn_on(void *ud, const char *msg, int tocont);

static void warn_cont(void *ud, const char *msg, int tocont) {
  lua_State *L = ud;
  lua_writestringerror("%s", msg);
  if (tocont) {
    lua_setwarnf(L, warn_cont, L);
  } else {
    lua_writestringerror("%s", "\n");
    lua_setwarnf(L, warn_on, L);
  }
}

/* "@on" and "@off" turn warnings on and off; 1 if msg was one of them */
static int warn_control(lua_State *L, const char *msg, int tocont) {
  if (tocont || msg[0] != '@')
    return 0;
  if (strcmp(msg + 1, "off") == 0)
    lua_setwarnf(L, warn_off, L);
  else if (strcmp(msg + 1, "on") == 0)
    lua_setwarnf(L, warn_on, L);
  return 1;
}

static void warn_off(void *ud, const char *msg, int tocont) {
  (void)warn_control(ud, msg, tocont);
}

static void warn_on(void *ud, const char *msg, int tocont) {
  if (warn_control(ud, msg, tocont))
    return;
  lua_writestringerror("%s", "Lua warning: ");
  warn_cont(ud, msg, tocont);
}

static int panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  lua_writestringerror("PANIC: unprotected error in call to Lua API (%s)\n",
                       msg ? msg : "error object is not a string");
  return 0; /* abort */
}

static void free_pool(rl_pool *p) {
#ifndef RL_POOL_OFF
  while (p->slabs) {
    rl_slab *s = p->slabs;
    p->slabs = s->next;
    free(s);
  }
#endif
  free(p);
}

lua_State *ringlet_newstate(void) {
  rl_pool *p = calloc(1, sizeof *p);
  if (p == NULL)
    return NULL;
  lua_State *L = lua_newstate(pool_alloc, p);
  if (L == NULL) {
    free_pool(p);
    return NULL;
  }
  lua_atpanic(L, panic);
  lua_setwarnf(L, warn_off, L);
  return L;
}

void ringlet_closestate(lua_State *L) {
  void *ud;
  lua_Alloc f = lua_getallocf(L, &ud);
  lua_close(L);
  if (f == pool_alloc) /* else not made by ringlet_newstate */
    free_pool(ud);
}
