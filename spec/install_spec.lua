-- Packaging: every way the README installs ringlet gives a working module,
-- CLI, library, header and pkg-config file. Each path installs into a
-- temporary directory, then:
--   * a plain lua5.4 with the tree's paths requires ringlet (from the tree)
--     and its Lua modules, and serves a request;
--   * the installed CLI serves examples/hello.lua with no LD_LIBRARY_PATH
--     nor LUA_PATH, loading the Lua modules installed beside it;
--   * `cc $(pkg-config --cflags --libs ringlet)` builds examples/host.c and
--     the host serves a request.
-- The luarocks paths build ringlet again (a normal build), so they run in
-- the normal suite only; the sanitizer run has nothing to add to them.
local helper = require "helper"
local quote = helper.quote

local SANITIZE = os.getenv("RINGLET_SANITIZE")
local BUILD = helper.BIN:match("^(.*)/[^/]*$") or "."
local MODULES = { "httpkit", "async", "sse", "websocket", "middleware",
                  "static", "client", "test" }

local function sh(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return ok, out, code
end

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p " .. quote(d)))
  return d
end

-- Lua code run by a plain lua5.4: require ringlet (asserting it comes from
-- PREFIX), every Lua module, and serve one request with curl.
local PLAIN = [[
local function from(file, what)
  assert(file and file:find(PREFIX, 1, true),
    what .. " from " .. tostring(file) .. ", not under " .. PREFIX)
end
from(package.searchpath("ringlet", package.cpath), "ringlet")
for name in MODULES:gmatch("%S+") do
  assert(type(require("ringlet." .. name)) == "table", name)
  from(package.searchpath("ringlet." .. name, package.path), name)
end
local ringlet = require "ringlet"
local server = assert(ringlet.run_server(function(req)
  return { body = "installed " .. req.uri }
end, { ip = "127.0.0.1", port = 0 }))
local out = os.tmpname()
os.execute(("(curl -s http://127.0.0.1:%d/x > %s; echo >> %s) &")
  :format(server.port, out, out .. ".done"))
local tries = 0
local function poll()
  tries = tries + 1
  local done = io.open(out .. ".done")
  if done or tries > 500 then
    if done then done:close() end
    local h = io.open(out)
    io.write(h:read("a"))
    h:close()
    os.remove(out)
    os.remove(out .. ".done")
    server:stop()
  else
    ringlet.timer(20, poll)
  end
end
ringlet.timer(20, poll)
ringlet.run()
]]

-- env: shell assignments giving the paths (LUA_PATH/LUA_CPATH).
local function check_plain(prefix, env)
  local ok, out = sh(env .. " timeout 60 lua5.4 -e "
    .. quote(("PREFIX = %q; MODULES = %q"):format(prefix,
      table.concat(MODULES, " "))) .. " -e " .. quote(PLAIN))
  assert.is_true(ok, out)
  assert.equal("installed /x", out)
end

-- The installed CLI serves examples/hello.lua, and an app that says where
-- its Lua modules came from. No library or Lua path in its environment.
local function check_cli(cli, prefix)
  assert.truthy(io.open(cli), cli .. " missing"):close()
  local ok, ldd = sh("ldd " .. quote(cli))
  assert.is_true(ok, ldd)
  assert.falsy(ldd:find("not found", 1, true), ldd)
  local saved = helper.BIN
  helper.BIN = cli
  local clean = { LD_LIBRARY_PATH = false, LUA_PATH = false,
                  LUA_PATH_5_4 = false, LUA_CPATH = false,
                  LUA_CPATH_5_4 = false }
  local srv
  local ok2, err = pcall(function()
    srv = helper.start({ source = helper.repo_file("examples/hello.lua"),
                         env = clean })
    local res = helper.request(srv.port, "GET", "/")
    assert.equal(200, res.status)
    assert.equal("Hello, World!", res.body)
    assert.equal(0, srv:stop())
    srv = helper.start({ env = clean, source = [[
local where = package.searchpath("ringlet.middleware", package.path)
assert(require("ringlet.middleware"))
return function() return { body = where } end
]] })
    local res2 = helper.request(srv.port, "GET", "/")
    assert.truthy(res2.body:find(prefix, 1, true),
      "ringlet.middleware from " .. res2.body)
    assert.equal(0, srv:stop())
  end)
  helper.BIN = saved
  if srv then srv:stop() end
  assert(ok2, err)
end

-- examples/host.c built against the installed library via pkg-config, then
-- run: it serves a request, and a SIGTERM ends it with status 0.
local function check_host(pcdir, dir)
  local host = dir .. "/host"
  local ok, out = sh(("PKG_CONFIG_PATH=%s cc -o %s examples/host.c "
    .. "$(PKG_CONFIG_PATH=%s pkg-config --cflags --libs ringlet)")
    :format(quote(pcdir), quote(host), quote(pcdir)))
  assert.is_true(ok, out)
  local ok2, ldd = sh("ldd " .. quote(host))
  assert.is_true(ok2, ldd)
  local lib = ldd:match("libringlet%.so%.0 => (%S+)")
  assert.truthy(lib, ldd)
  assert.truthy(lib:find(dir, 1, true), "libringlet from " .. lib)
  local pipe = assert(io.popen(("echo $$; exec env -u LD_LIBRARY_PATH "
    .. "timeout 60 %s 0 2>&1"):format(quote(host))))
  local pid = assert(tonumber(pipe:read("l")))
  local line = pipe:read("l") or ""
  local port = tonumber(line:match("listening on http://[%d.]+:(%d+)"))
  local res = port and helper.request(port, "GET", "/")
  os.execute("kill " .. pid)
  local rest = pipe:read("a")
  local ok3, _, code = pipe:close()
  assert.truthy(port, line .. rest)
  assert.equal(200, res and res.status)
  assert.truthy(res.body:find("hello from the C host", 1, true), res.body)
  assert.is_true(ok3, "host exited with " .. tostring(code) .. ": " .. rest)
end

describe("installation", function()
  local dirs = {}
  local function dir()
    local d = tmpdir()
    dirs[#dirs + 1] = d
    return d
  end

  lazy_teardown(function()
    for _, d in ipairs(dirs) do os.execute("rm -rf " .. quote(d)) end
  end)

  it("cmake --install to a prefix", function()
    local prefix = dir()
    local ok, out = sh("cmake --install " .. quote(BUILD) .. " --prefix "
      .. quote(prefix))
    assert.is_true(ok, out)
    if not SANITIZE then -- an ASan module or library needs an ASan host
      check_plain(prefix, ("LUA_PATH=%s LUA_CPATH=%s"):format(
        quote(prefix .. "/share/lua/5.4/?.lua;;"),
        quote(prefix .. "/lib/lua/5.4/?.so;;")))
      check_host(prefix .. "/lib/pkgconfig", prefix)
    end
    check_cli(prefix .. "/bin/ringlet", prefix)
    assert.truthy(io.open(prefix .. "/include/ringlet.h")):close()
  end)

  -- The tree's own paths, as `luarocks path` prints them.
  local function luarocks_env(tree, config)
    local ok, out = sh((config and "LUAROCKS_CONFIG=" .. quote(config) or "")
      .. " luarocks --lua-version=5.4 path"
      .. (tree and " --tree " .. quote(tree) or ""))
    assert.is_true(ok, out)
    local env = {}
    for name, value in out:gmatch("export (LUA_C?PATH)='([^']*)'") do
      env[#env + 1] = name .. "=" .. quote(value)
    end
    assert.equal(2, #env, out)
    return table.concat(env, " ")
  end

  local function check_tree(tree, config)
    check_plain(tree, luarocks_env(tree, config))
    check_cli(tree .. "/bin/ringlet", tree)
    check_host(tree .. "/lib/lua/5.4/pkgconfig", tree)
    assert.truthy(io.open(tree .. "/lib/lua/5.4/include/ringlet.h")):close()
  end

  it("luarocks make into --tree DIR", function()
    if SANITIZE then return pending("checked in the normal run") end
    local tree = dir()
    local ok, out = sh("luarocks --lua-version=5.4 make "
      .. "ringlet-scm-1.rockspec --tree " .. quote(tree))
    assert.is_true(ok, out)
    check_tree(tree)
  end)

  it("luarocks make into the default tree", function()
    if SANITIZE then return pending("checked in the normal run") end
    -- The default tree is the one the configuration names: a private
    -- configuration makes it a temporary directory.
    local d = dir()
    local config = d .. "/config.lua"
    local f = assert(io.open(config, "w"))
    f:write(("rocks_trees = { { name = \"system\", root = %q } }\n")
      :format(d .. "/tree"))
    f:close()
    local ok, out = sh("LUAROCKS_CONFIG=" .. quote(config)
      .. " luarocks --lua-version=5.4 make ringlet-scm-1.rockspec")
    assert.is_true(ok, out)
    check_tree(d .. "/tree", config)
  end)

  it("luarocks pack, then install the .src.rock offline", function()
    if SANITIZE then return pending("checked in the normal run") end
    -- pack clones the rockspec's source URL: git maps it to this checkout
    -- (what is committed is what gets packed).
    local d = dir()
    local gitconfig = d .. "/gitconfig"
    local repo = assert(io.popen("pwd")):read("l")
    local f = assert(io.open(gitconfig, "w"))
    f:write(("[url \"file://%s\"]\n\tinsteadOf = "
      .. "https://github.com/ringlet-lua/ringlet.git\n"):format(repo))
    f:close()
    local ok, out = sh(("cd %s && GIT_CONFIG_GLOBAL=%s luarocks "
      .. "--lua-version=5.4 pack %s"):format(quote(d), quote(gitconfig),
      quote(repo .. "/ringlet-scm-1.rockspec")))
    assert.is_true(ok, out)
    local rock = d .. "/ringlet-scm-1.src.rock"
    assert.truthy(io.open(rock), out):close()
    -- Offline: in a network namespace of its own when we may make one.
    local offline = os.execute("unshare -n true 2>/dev/null") and "unshare -n "
      or ""
    local tree = d .. "/tree"
    local ok2, out2 = sh(("cd %s && %sluarocks --lua-version=5.4 install %s "
      .. "--tree %s"):format(quote(d), offline, quote(rock), quote(tree)))
    assert.is_true(ok2, out2)
    check_tree(tree)
  end)
end)
