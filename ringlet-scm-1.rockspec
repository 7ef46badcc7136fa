rockspec_format = "3.0"
package = "ringlet"
version = "scm-1"
source = {
  -- The project's repository. `luarocks make` builds the checkout it runs
  -- in and never fetches; `luarocks pack` clones this URL (from a checkout,
  -- point git at it: spec/install_spec.lua uses git's url.insteadOf).
  url = "git+https://github.com/ringlet-lua/ringlet.git",
  branch = "main",
}
description = {
  summary = "A Ring-style HTTP/1.1 and WebSocket host for Lua 5.4 on libuv",
  detailed = [[
    ringlet runs Lua handlers that take a Ring-like request table and return
    a response table, on a C core (libuv, llhttp, its own RFC 6455
    WebSocket codec). as_channel turns a request into one asynchronous
    channel for HTTP streaming, long-polling, server-sent events and
    WebSockets; groups broadcast to many. Lua modules give the seeds' own
    APIs: ringlet.httpkit (http-kit), ringlet.async
    (ring-websocket-async), ringlet.sse (Immutant's SSE) and
    ringlet.websocket (Ring 1.11's listener), and Ring's everyday
    middleware: ringlet.middleware (params, multipart uploads, cookies)
    and ringlet.static (files with ETag, Range and HEAD). Installs the
    module, the ringlet command, and libringlet.so with ringlet.h and
    ringlet.pc for C hosts that embed Lua.
  ]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
-- Checked by luarocks before it builds, so a missing one is named; the
-- third, llhttp, is Debian's node-llhttp (its C sources, which CMake
-- compiles) or any libllhttp pkg-config finds: CMake names it when missing.
external_dependencies = {
  LIBUV = { header = "uv.h", library = "uv" },         -- libuv1-dev
  OPENSSL = { header = "openssl/sha.h", library = "crypto" }, -- libssl-dev
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
    RINGLET_LUAROCKS = "ON",
    RINGLET_TESTS = "OFF",
  },
}
-- `luarocks test` (from a checkout) runs the whole suite, as the README's
-- test command does: build, luacheck, LDoc, clang-format, busted specs.
test = {
  type = "command",
  command = "bash scripts/test.sh",
}
