/* Groups (group.h): http-kit's ChannelStore, built in.
 *
 * A group is a userdata holding its members twice: in Lua tables of its
 * user values (channel -> attachment, channel -> slot, slot -> channel),
 * which keep the channels alive and answer has/each, and in a C array of
 * the channels' C structs in slot order, which a broadcast walks. Removal
 * moves the last member into the freed slot. Each channel keeps the set of
 * groups it is in (channel.c's CH_GROUPS), so a member that closes leaves
 * every group as its on_close fires. A plain broadcast walks the array and
 * hands each channel the same message, framed once per transport
 * (rl__channel_deliver): one WebSocket frame and one HTTP chunk shared by
 * every member's write queue, and no Lua call per member. What may run Lua
 * (telling a full member, answering a long-polling one with a whole
 * response) waits until the walk is over.
 *
 * A store (ringlet.groups()) maps names to groups, made on first add and
 * dropped when their last member leaves.
 *
 * Owns: the group and store userdata. May call: channel.h, ctx.h, conn.h,
 * base.h, Lua. */
#include <stdlib.h>
#include <string.h>

#include "group.h"

typedef struct {
  int count;          /* members */
  int close_full;     /* on_full = "close": a full member is closed */
  rl_channel **slots; /* malloc'd: the members' C structs, by slot - 1 */
  int cap;
} rl_group;

/* user values of a group: channel -> attachment (or true), channel ->
 * slot, slot -> channel; a store's table and the name in it */
enum { G_MEMBERS = 1, G_INDEX, G_SLOTS, G_STORE, G_NAME, G_NUV = G_NAME };

typedef struct {
  int close_full; /* for the groups it makes */
} rl_store;

/* ---- options ------------------------------------------------------------- */

/* {on_full = "skip" | "close"} at idx (or none): 1 for "close" */
static int read_opts(lua_State *L, int idx, const char *who) {
  int close = 0;
  if (lua_isnoneornil(L, idx))
    return 0;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
    if (strcmp(k, "on_full") != 0)
      luaL_error(L, "%s: unknown option '%s'", who, k);
    const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
    if (strcmp(v, "close") == 0)
      close = 1;
    else if (strcmp(v, "skip") != 0)
      luaL_error(L, "%s: option 'on_full' must be \"skip\" or \"close\"", who);
    lua_pop(L, 1);
  }
  return close;
}

/* ---- membership ---------------------------------------------------------- */

static rl_group *check_group(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, RL_GROUP_MT);
}

static rl_channel *check_channel(lua_State *L, int idx) {
  rl_channel *ch = rl__channel_test(L, idx);
  if (ch == NULL)
    luaL_typeerror(L, idx, RL_CHANNEL_MT);
  return ch;
}

static rl_group *new_group(lua_State *L, int close_full) {
  rl_group *g = lua_newuserdatauv(L, sizeof *g, G_NUV);
  memset(g, 0, sizeof *g);
  g->close_full = close_full;
  luaL_setmetatable(L, RL_GROUP_MT);
  for (int uv = G_MEMBERS; uv <= G_SLOTS; uv++) {
    lua_newtable(L);
    lua_setiuservalue(L, -2, uv);
  }
  return g;
}

static int g_gc(lua_State *L) {
  rl_group *g = lua_touserdata(L, 1);
  free(g->slots);
  g->slots = NULL;
  g->count = g->cap = 0;
  return 0;
}

/* t[k] = v with t the user value uv of the group at gidx; k and v are
 * stack indices (0 for nil) or, for integers, given as ki/vi. */
static void uv_set(lua_State *L, int gidx, int uv, int k, lua_Integer ki, int v,
                   lua_Integer vi) {
  lua_getiuservalue(L, gidx, uv);
  if (k)
    lua_pushvalue(L, k);
  else
    lua_pushinteger(L, ki);
  if (v > 0)
    lua_pushvalue(L, v);
  else if (v < 0)
    lua_pushinteger(L, vi);
  else
    lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* Is the channel at cidx a member of the group at gidx? */
static int is_member(lua_State *L, int gidx, int cidx) {
  lua_getiuservalue(L, gidx, G_MEMBERS);
  lua_pushvalue(L, cidx);
  int has = lua_rawget(L, -2) != LUA_TNIL;
  lua_pop(L, 2);
  return has;
}

/* The group at gidx lost a member: a store's group goes when empty. */
static void shrunk(lua_State *L, int gidx, rl_group *g) {
  if (--g->count > 0)
    return;
  if (lua_getiuservalue(L, gidx, G_STORE) == LUA_TTABLE) {
    lua_getiuservalue(L, gidx, G_NAME);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3); /* store[name] */
    if (lua_rawequal(L, -1, gidx)) {
      lua_pop(L, 1);
      lua_pushnil(L);
      lua_rawset(L, -3); /* store[name] = nil */
    } else {
      lua_pop(L, 2);
    }
  }
  lua_pop(L, 1);
}

/* Add the channel at cidx (attachment at aidx, 0 for none) to the group at
 * gidx. Returns 0 when the channel is not open (closed, or not attached
 * yet: add from on_open), so no member can outlive its connection. */
static int add(lua_State *L, int gidx, int cidx, int aidx) {
  rl_group *g = lua_touserdata(L, gidx);
  int top = lua_gettop(L);
  if (!rl__channel_open(lua_touserdata(L, cidx)))
    return 0;
  int had = is_member(L, gidx, cidx);
  if (!had && g->count == 0 &&
      lua_getiuservalue(L, gidx, G_STORE) == LUA_TTABLE) {
    /* a store's group that emptied left its store: it comes back, unless
     * the store has another group by that name now */
    lua_getiuservalue(L, gidx, G_NAME);
    lua_pushvalue(L, -1);
    int t = lua_rawget(L, -3);
    if (t != LUA_TNIL && !lua_rawequal(L, -1, gidx))
      return luaL_error(L, "add: this group's name belongs to another group "
                           "of its store now");
    lua_pop(L, 1);
    lua_pushvalue(L, gidx);
    lua_rawset(L, -3); /* store[name] = group */
  }
  lua_settop(L, top);
  if (!had && g->count == g->cap) {
    int cap = g->cap ? 2 * g->cap : 8;
    rl_channel **p = realloc(g->slots, (size_t)cap * sizeof *p);
    if (p == NULL)
      return luaL_error(L, "out of memory");
    g->slots = p;
    g->cap = cap;
  }
  lua_getiuservalue(L, gidx, G_MEMBERS);
  lua_pushvalue(L, cidx);
  if (aidx && !lua_isnil(L, aidx))
    lua_pushvalue(L, aidx);
  else
    lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  if (!had) {
    int slot = ++g->count;
    g->slots[slot - 1] = lua_touserdata(L, cidx);
    uv_set(L, gidx, G_INDEX, cidx, 0, -1, slot);
    uv_set(L, gidx, G_SLOTS, 0, slot, cidx, 0);
    rl__channel_groups(L, cidx, 1);
    lua_pushvalue(L, gidx);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
  }
  return 1;
}

/* Take the channel at cidx out of the group at gidx; 0 if not a member. */
static int remove_member(lua_State *L, int gidx, int cidx, int from_channel) {
  rl_group *g = lua_touserdata(L, gidx);
  if (!is_member(L, gidx, cidx))
    return 0;
  /* the last member moves into the freed slot */
  lua_getiuservalue(L, gidx, G_INDEX);
  lua_pushvalue(L, cidx);
  lua_rawget(L, -2);
  int slot = (int)lua_tointeger(L, -1), last = g->count;
  lua_pop(L, 2);
  if (slot != last) {
    lua_getiuservalue(L, gidx, G_SLOTS);
    lua_rawgeti(L, -1, last); /* the last member */
    int moved = lua_gettop(L);
    uv_set(L, gidx, G_SLOTS, 0, slot, moved, 0);
    uv_set(L, gidx, G_INDEX, moved, 0, -1, slot);
    g->slots[slot - 1] = g->slots[last - 1];
    lua_pop(L, 2);
  }
  uv_set(L, gidx, G_SLOTS, 0, last, 0, 0);
  uv_set(L, gidx, G_INDEX, cidx, 0, 0, 0);
  uv_set(L, gidx, G_MEMBERS, cidx, 0, 0, 0);
  if (from_channel) {
    rl__channel_groups(L, cidx, 0);
    if (lua_istable(L, -1)) {
      lua_pushvalue(L, gidx);
      lua_pushnil(L);
      lua_rawset(L, -3);
    }
    lua_pop(L, 1);
  }
  shrunk(L, gidx, g);
  return 1;
}

/* channel.c calls this as a member closes: it leaves all of its groups. */
static void member_left(lua_State *L, int uidx) {
  uidx = lua_absindex(L, uidx);
  rl__channel_groups(L, uidx, 0);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  int t = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    lua_pop(L, 1);
    if (luaL_testudata(L, -1, RL_GROUP_MT))
      remove_member(L, lua_gettop(L), uidx, 0);
  }
  lua_pop(L, 1);
  rl__channel_groups_clear(L, uidx); /* a closed channel holds no group */
}

/* ---- group methods --------------------------------------------------------
 */

static int g_add(lua_State *L) {
  check_group(L, 1);
  check_channel(L, 2);
  lua_settop(L, 3);
  lua_pushboolean(L, add(L, 1, 2, 3));
  return 1;
}

static int g_remove(lua_State *L) {
  check_group(L, 1);
  check_channel(L, 2);
  lua_pushboolean(L, remove_member(L, 1, 2, 1));
  return 1;
}

static int g_has(lua_State *L) {
  check_group(L, 1);
  lua_pushboolean(L, rl__channel_test(L, 2) && is_member(L, 1, 2));
  return 1;
}

static int g_len(lua_State *L) {
  lua_pushinteger(L, check_group(L, 1)->count);
  return 1;
}

/* Push an array {ch1, att1, ch2, att2, ...} of the members now, in the
 * order of their slots. */
static int snapshot(lua_State *L, int gidx, rl_group *g) {
  int n = g->count;
  lua_getiuservalue(L, gidx, G_MEMBERS);
  lua_getiuservalue(L, gidx, G_SLOTS);
  lua_createtable(L, 2 * n, 0);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, -2, i);
    lua_pushvalue(L, -1);
    lua_rawget(L, -5); /* its attachment */
    lua_rawseti(L, -3, 2 * i);
    lua_rawseti(L, -2, 2 * i - 1);
  }
  lua_replace(L, -3);
  lua_pop(L, 1);
  return n;
}

/* ch:send(msg [, {close = true}]) through the channel's own method; returns
 * whether it was sent. */
static int send_via_method(lua_State *L, int cidx, int midx, int close) {
  lua_getfield(L, cidx, "send");
  lua_pushvalue(L, cidx);
  lua_pushvalue(L, midx);
  if (close) {
    lua_createtable(L, 0, 1);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "close");
  }
  if (lua_pcall(L, close ? 3 : 2, 1, 0) != LUA_OK) {
    /* one member's bad response never stops the others */
    rl__log("group broadcast: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return 0;
  }
  int ok = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return ok;
}

/* fn (at 2)(ch, attachment) for each member of the group at 1, skipping
 * those that leave meanwhile; with send, fn's value (unless nil) is sent
 * to that member. Returns how many were sent. */
static int call_each(lua_State *L, rl_group *g, int send) {
  lua_settop(L, 2);
  int n = snapshot(L, 1, g), sent = 0;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 3, 2 * i - 1); /* 4: the channel */
    if (send && is_member(L, 1, 4) &&
        rl__channel_is_full(lua_touserdata(L, 4))) {
      rl__channel_full(L, 4, g->close_full); /* skipped, as in a plain one */
    } else if (is_member(L, 1, 4)) {
      lua_pushvalue(L, 2);
      lua_pushvalue(L, 4);
      lua_rawgeti(L, 3, 2 * i);
      lua_call(L, 2, send); /* 5: what to send */
      /* a long poll gets a whole response, as from a plain broadcast */
      if (send && !lua_isnil(L, 5) &&
          send_via_method(L, 4, 5, rl__channel_is_poll(lua_touserdata(L, 4))))
        sent++;
      lua_settop(L, 4);
    }
    lua_pop(L, 1);
  }
  return sent;
}

/* g:each(fn(ch, attachment)) */
static int g_each(lua_State *L) {
  rl_group *g = check_group(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  call_each(L, g, 0);
  return 0;
}

/* g:broadcast(message [, {binary =, except =}]) -> members it was queued for */
static int g_broadcast(lua_State *L) {
  rl_group *g = check_group(L, 1);
  if (lua_isfunction(L, 2)) { /* g:broadcast(fn(ch, attachment)) */
    lua_pushinteger(L, call_each(L, g, 1));
    return 1;
  }
  rl_msg m = {0};
  m.p = luaL_checklstring(L, 2, &m.n);
  const void *except = NULL;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      const char *k =
          lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
      if (strcmp(k, "binary") == 0) {
        if (!lua_isboolean(L, -1))
          return luaL_error(L, "broadcast: option 'binary' must be a boolean");
        m.binary = lua_toboolean(L, -1);
      } else if (strcmp(k, "except") == 0) {
        if ((except = rl__channel_test(L, -1)) == NULL)
          return luaL_error(L, "broadcast: option 'except' must be a channel");
      } else {
        return luaL_error(L, "broadcast: unknown option '%s'", k);
      }
      lua_pop(L, 1);
    }
  }
  lua_settop(L, 3);
  lua_getiuservalue(L, 1, G_SLOTS); /* 4 */
  lua_pushnil(L);                   /* 5: members to finish after the walk */
  int sent = 0, later = 0, n = g->count;
  /* The walk runs no Lua, so the members cannot change under it. */
  for (int i = 0; i < n; i++) {
    rl_channel *ch = g->slots[i];
    if (ch == except)
      continue;
    int r = rl__channel_deliver(ch, &m);
    if (r == RL_DELIVER_SENT) {
      sent++;
    } else if (r == RL_DELIVER_FULL || r == RL_DELIVER_WHOLE) {
      if (later == 0) {
        lua_newtable(L);
        lua_replace(L, 5);
      }
      lua_rawgeti(L, 4, i + 1);
      lua_rawseti(L, 5, ++later);
      lua_pushinteger(L, r);
      lua_rawseti(L, 5, ++later);
    }
  }
  rl__shared_unref(m.frame); /* the queues hold their own references */
  rl__shared_unref(m.chunk);
  for (int i = 1; i < later; i += 2) {
    lua_rawgeti(L, 5, i); /* 6: the channel */
    lua_rawgeti(L, 5, i + 1);
    int r = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (!is_member(L, 1, 6))
      ; /* it left meanwhile (another member's callback) */
    else if (r == RL_DELIVER_FULL)
      rl__channel_full(L, 6, g->close_full);
    else if (send_via_method(L, 6, 2, 1)) /* long polling: the answer */
      sent++;
    lua_pop(L, 1);
  }
  lua_pushinteger(L, sent);
  return 1;
}

static int g_tostring(lua_State *L) {
  rl_group *g = check_group(L, 1);
  lua_pushfstring(L, "ringlet.group (%d member%s)", g->count,
                  g->count == 1 ? "" : "s");
  return 1;
}

int rl__l_group(lua_State *L) {
  int close = read_opts(L, 1, "group");
  new_group(L, close);
  return 1;
}

/* ---- stores of named groups ---------------------------------------------- */

static rl_store *check_store(lua_State *L) {
  return luaL_checkudata(L, 1, RL_GROUPS_MT);
}

/* Push the group named at index 2 (made when create is set, else nil). */
static void named(lua_State *L, int create) {
  rl_store *s = check_store(L);
  luaL_checkany(L, 2);
  lua_getiuservalue(L, 1, 1);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, -2) != LUA_TNIL || !create) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  new_group(L, s->close_full);
  lua_pushvalue(L, -2);
  lua_setiuservalue(L, -2, G_STORE);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, G_NAME);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, -2);
  lua_rawset(L, -4); /* store[name] = group */
  lua_remove(L, -2);
}

/* store:add(name, ch [, attachment]) */
static int s_add(lua_State *L) {
  check_channel(L, 3);
  lua_settop(L, 4);
  if (!rl__channel_open(lua_touserdata(L, 3))) {
    lua_pushboolean(L, 0);
    return 1;
  }
  named(L, 1); /* 5 */
  lua_pushboolean(L, add(L, 5, 3, 4));
  return 1;
}

/* store:remove(name, ch) */
static int s_remove(lua_State *L) {
  check_channel(L, 3);
  lua_settop(L, 3);
  named(L, 0); /* 4 */
  lua_pushboolean(L, !lua_isnil(L, 4) && remove_member(L, 4, 3, 1));
  return 1;
}

/* store:broadcast(name, message_or_fn [, opts]) -> count */
static int s_broadcast(lua_State *L) {
  lua_settop(L, 4);
  named(L, 0); /* 5 */
  if (lua_isnil(L, 5)) {
    lua_pushinteger(L, 0);
    return 1;
  }
  lua_pushcfunction(L, g_broadcast);
  lua_pushvalue(L, 5);
  lua_pushvalue(L, 3);
  lua_pushvalue(L, 4);
  lua_call(L, 3, 1);
  return 1;
}

/* store:group(name) -> the group, or nil */
static int s_group(lua_State *L) {
  lua_settop(L, 2);
  named(L, 0);
  return 1;
}

int rl__l_groups(lua_State *L) {
  int close = read_opts(L, 1, "groups");
  rl_store *s = lua_newuserdatauv(L, sizeof *s, 1);
  s->close_full = close;
  luaL_setmetatable(L, RL_GROUPS_MT);
  lua_newtable(L);
  lua_setiuservalue(L, -2, 1);
  return 1;
}

void rl__group_open_lib(lua_State *L) {
  static const luaL_Reg group[] = {
      {"add", g_add},   {"remove", g_remove},       {"has", g_has},
      {"each", g_each}, {"broadcast", g_broadcast}, {NULL, NULL}};
  static const luaL_Reg store[] = {{"add", s_add},
                                   {"remove", s_remove},
                                   {"broadcast", s_broadcast},
                                   {"group", s_group},
                                   {NULL, NULL}};
  luaL_newmetatable(L, RL_GROUP_MT);
  luaL_newlib(L, group);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, g_len);
  lua_setfield(L, -2, "__len");
  lua_pushcfunction(L, g_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, g_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newmetatable(L, RL_GROUPS_MT);
  luaL_newlib(L, store);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  rl__channel_on_leave(member_left);
}
