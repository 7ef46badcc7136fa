rockspec_format = "3.0"
package = "ringlet"
version = "scm-1"
source = {
  url = "git+file:///dev/null", -- built from the checkout: luarocks make
}
description = {
  summary = "A Ring-style HTTP/1.1 and WebSocket host for Lua 5.4 on libuv",
  detailed = [[
    ringlet runs Lua handlers that take a Ring-like request table and return
    a response table, on a C core (libuv, llhttp, its own RFC 6455
    WebSocket codec). as_channel turns a request into one asynchronous
    channel for HTTP streaming, long-polling, server-sent events and
    WebSockets. Lua modules give the seeds' own APIs: ringlet.httpkit
    (http-kit), ringlet.async (ring-websocket-async), ringlet.sse
    (Immutant's SSE) and ringlet.websocket (Ring 1.11's listener).
  ]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
external_dependencies = {
  LIBUV = { header = "uv.h" },
}
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "RelWithDebInfo",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    LUA_INCLUDE_DIR = "$(LUA_INCDIR)",
    LUADIR = "$(LUADIR)",
    LIBDIR = "$(LIBDIR)",
    BINDIR = "$(BINDIR)",
  },
}
