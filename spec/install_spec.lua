-- Packaging: `luarocks make` builds and installs offline, and the installed
-- module serves a request from a plain lua5.4.
local helper = require "helper"

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return ok, out, code
end

describe("installation", function()
  local tree

  lazy_setup(function()
    tree = os.tmpname()
    os.remove(tree)
  end)

  lazy_teardown(function()
    if tree then os.execute("rm -rf " .. helper.quote(tree)) end
  end)

  it("installs with luarocks make and serves from the installed tree",
    function()
      local ok, out = sh("luarocks --lua-version=5.4 make "
        .. "ringlet-scm-1.rockspec --tree " .. helper.quote(tree))
      assert.is_true(ok, out)
      -- A plain interpreter, the installed module, a real request.
      local script = [[
package.cpath = TREE .. "/lib/lua/5.4/?.so;" .. package.cpath
local ringlet = require "ringlet"
assert(package.searchpath("ringlet", package.cpath):find(TREE, 1, true))
local server = assert(ringlet.run_server(function(req)
  return { body = "installed " .. req.uri }
end, { ip = "127.0.0.1", port = 0 }))
local f = os.tmpname()
os.execute(("(curl -s http://127.0.0.1:%d/x > %s; touch %s.done) &")
  :format(server.port, f, f))
local tries = 0
local function poll()
  tries = tries + 1
  local done = io.open(f .. ".done")
  if done or tries > 500 then
    if done then done:close() end
    local h = io.open(f)
    print(h:read("a"))
    h:close()
    os.remove(f)
    os.remove(f .. ".done")
    server:stop()
  else
    ringlet.timer(20, poll)
  end
end
ringlet.timer(20, poll)
ringlet.run()
]]
      local ok2, out2 = sh("timeout 60 lua5.4 -e "
        .. helper.quote("TREE=" .. ("%q"):format(tree)) .. " -e "
        .. helper.quote(script))
      assert.is_true(ok2, out2)
      assert.equal("installed /x\n", out2)
      assert.truthy(io.open(tree .. "/bin/ringlet")):close()
      -- The Lua half of the API comes from the tree too, with the tree's
      -- paths as `luarocks path` gives them.
      local modules = [[
package.path = TREE .. "/share/lua/5.4/?.lua;" .. package.path
package.cpath = TREE .. "/lib/lua/5.4/?.so;" .. package.cpath
for _, name in ipairs({ "httpkit", "async", "sse", "websocket" }) do
  local m = require("ringlet." .. name)
  assert(type(m) == "table", name)
  local file = package.searchpath("ringlet." .. name, package.path)
  assert(file:find(TREE, 1, true), file)
  io.write(name, " ")
end
]]
      local ok3, out3 = sh("timeout 60 lua5.4 -e "
        .. helper.quote("TREE=" .. ("%q"):format(tree)) .. " -e "
        .. helper.quote(modules))
      assert.is_true(ok3, out3)
      assert.equal("httpkit async sse websocket ", out3)
    end)
end)
