/* Groups: http-kit's ChannelStore built in. A group holds channels (each
 * with an attachment); a broadcast frames its message once per transport
 * and queues the same bytes on every member; members that close leave by
 * themselves. A store holds named groups.
 *
 * Owns: the group and store userdata (their members live in Lua tables in
 * their user values). May call: channel.h, ctx.h, conn.h, base.h, Lua; it
 * registers the channel's leave callback. */
#ifndef RL_GROUP_H
#define RL_GROUP_H

#include "channel.h"

#define RL_GROUP_MT "ringlet.group"
#define RL_GROUPS_MT "ringlet.groups"

int rl__l_group(lua_State *L);  /* ringlet.group([opts]) */
int rl__l_groups(lua_State *L); /* ringlet.groups([opts]) */
void rl__group_open_lib(lua_State *L);

#endif
