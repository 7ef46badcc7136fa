-- as_channel belongs to the handler: it finds the connection through the
-- handler's coroutine, also after a ringlet.sleep; called from anywhere
-- else (a timer, a coroutine of the handler's own) it gives a closed
-- channel.
local helper = require "helper"

local APP = [[
local ringlet = require "ringlet"
local log = {}
return function(req)
  if req.uri == "/log" then
    return { body = table.concat(log, ",") }
  end
  if req.uri == "/after-sleep" then
    ringlet.sleep(10)
    return ringlet.as_channel(req, {
      on_open = function(ch) ch:send("slept", { close = true }) end,
    })
  end
  if req.uri == "/own-coroutine" then
    local co = coroutine.wrap(function() return ringlet.as_channel(req) end)
    local res = co()
    log[#log + 1] = "coroutine:" .. tostring(res.body:is_open()) .. ":"
      .. tostring(res.body:send("x"))
    return { body = "ok" }
  end
  if req.uri == "/later" then
    ringlet.timer(0, function()
      local res = ringlet.as_channel(req)
      log[#log + 1] = "timer:" .. tostring(res.body:is_open()) .. ":"
        .. tostring(res.body:send("x"))
    end)
    return { body = "ok" }
  end
  return { status = 404 }
end
]]

describe("as_channel outside the handler", function()
  local srv
  lazy_setup(function() srv = helper.start(APP) end)
  lazy_teardown(function() assert.equal(0, srv:stop(), srv:stderr()) end)

  local function get(path)
    return assert(helper.request(srv.port, "GET", path, { host = "h" }))
  end

  it("works in the handler after a ringlet.sleep", function()
    local res = get("/after-sleep")
    assert.same({ 200, "slept" }, { res.status, res.body })
  end)

  it("gives a closed channel in a coroutine of the handler's own", function()
    assert.equal("ok", get("/own-coroutine").body)
    assert.truthy(get("/log").body:find("coroutine:false:nil", 1, true))
  end)

  it("gives a closed channel in a later callback", function()
    assert.equal("ok", get("/later").body)
    assert.truthy(helper.wait_until(function()
      return get("/log").body:find("timer:false:nil", 1, true)
    end))
  end)
end)
