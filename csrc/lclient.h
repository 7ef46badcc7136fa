/* ringlet.client, the Lua binding of the HTTP and WebSocket client
 * (lclient.c). May call: client.h, channel.h and what they include. */
#ifndef RL_LCLIENT_H
#define RL_LCLIENT_H

#include "ctx.h"

/* Push the table of ringlet.client's functions. */
void rl__client_open_lib(lua_State *L);
/* lua_close: close the loop's client, its connections and exchanges. */
void rl__client_lib_close(rl_ctx *ctx);

#endif
