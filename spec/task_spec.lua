-- Handlers and on_message callbacks start in a pooled coroutine without a
-- protected call around it (the coroutine's resume protects them; see
-- ctx.h's rl__task_run): what they may not do still fails cleanly for
-- that one request or message, and more of them at once than the pool
-- holds (64) are all served.
local helper = require "helper"
local ws = require "wsclient"

local APP = [[
local ringlet = require "ringlet"
local client = require "ringlet.client"

local function in_gsub(fn) -- a C call that cannot yield
  local r
  string.gsub("x", "x", function() r = fn() end)
  return r
end

local routes = {
  ["/sleep-in-gsub"] = function()
    in_gsub(function() ringlet.sleep(200) end)
    return { body = "slept" }
  end,
  ["/client-in-gsub"] = function(req)
    local url = "http://127.0.0.1:" .. req.server_port .. "/hello"
    return { body = in_gsub(function() return client.get(url).body end) }
  end,
  ["/yield"] = function()
    coroutine.yield()
    return { body = "yielded" }
  end,
  ["/nap"] = function(req)
    ringlet.sleep(300)
    return { body = req.query_string }
  end,
  ["/sleep-in-response"] = function()
    -- read under a pcall of its own once the handler has returned
    return setmetatable({}, { __index = function(_, k)
      if k == "body" then
        ringlet.sleep(200)
        return "slept"
      end
    end })
  end,
  ["/hello"] = function() return { body = "hello" } end,
  ["/ws"] = function(req)
    return ringlet.as_channel(req, {
      on_message = function(ch, msg)
        if msg == "sleep" then in_gsub(function() ringlet.sleep(200) end) end
        if msg == "yield" then coroutine.yield() end
        ch:send("echo:" .. msg)
      end,
      on_error = function(ch, err)
        ch:send("error:" .. (err:match("ringlet%.sleep: [^\n]*")
          or err:match("yielded outside[^\n]*") or err))
      end,
    })
  end,
}
]] .. helper.DISPATCH

describe("a handler's task", function()
  local srv
  lazy_setup(function() srv = helper.start(APP) end)
  lazy_teardown(function() assert.equal(0, srv:stop(), srv:stderr()) end)

  local function get(path)
    return assert(helper.request(srv.port, "GET", path, { host = "h" }))
  end

  -- path answers 500, the log says pattern, the next request is served
  local function refused(path, pattern)
    assert.equal(500, get(path).status)
    assert.truthy(helper.wait_until(function()
      return srv:stderr():find(pattern)
    end), srv:stderr())
    assert.equal("hello", get("/hello").body)
  end

  it("refuses ringlet.sleep where the handler cannot yield: one 500, and "
    .. "the loop is not run inside the handler", function()
    refused("/sleep-in-gsub", "ringlet%.sleep: call it inside a handler")
  end)

  it("refuses a client call where the handler cannot yield", function()
    refused("/client-in-gsub", "ringlet%.client: call it from a handler")
  end)

  it("refuses ringlet.sleep in the response's metamethods, read after the "
    .. "handler returned: one 500", function()
    refused("/sleep-in-response",
      "bad response: [^\n]*ringlet%.sleep: call it inside a handler")
  end)

  it("answers a stray coroutine.yield with 500, then serves on", function()
    for _ = 1, 3 do -- the pooled coroutine is reset each time
      assert.equal(500, get("/yield").status)
      assert.equal("hello", get("/hello").body)
    end
    assert.truthy(srv:stderr():find("yielded outside ringlet.sleep", 1, true))
  end)

  it("serves more sleeping handlers at once than the pool keeps", function()
    local socks = {}
    for i = 1, 100 do
      local sock = assert(helper.connect(srv.port))
      assert(sock:send(helper.request_bytes("GET", "/nap?" .. i,
        { host = "h" })))
      socks[i] = sock
    end
    for i, sock in ipairs(socks) do
      local res = assert(helper.read_response(sock, "GET"))
      assert.same({ 200, tostring(i) }, { res.status, res.body })
      sock:close()
    end
    assert.equal("hello", get("/hello").body)
  end)
end)

describe("an on_message task", function()
  local srv
  lazy_setup(function() srv = helper.start(APP) end)
  lazy_teardown(function() assert.equal(0, srv:stop(), srv:stderr()) end)

  it("gives on_error what it may not do and goes on with the next message",
    function()
    local sock, res = ws.handshake(srv.port, "/ws")
    assert(sock, res)
    assert.equal(101, res.status)
    local function say(text)
      assert(ws.send_text(sock, text))
      local op, payload = ws.read_message(sock)
      assert.equal(1, op, payload)
      return payload
    end
    assert.equal("echo:a", say("a"))
    assert.equal("error:ringlet.sleep: call it inside a handler or callback "
      .. "run by ringlet", say("sleep"))
    assert.equal("echo:b", say("b"))
    assert.equal("error:yielded outside ringlet.sleep and ringlet.queue",
      say("yield"))
    assert.equal("echo:c", say("c"))
    ws.send_close(sock, 1000)
    ws.read_close(sock)
    sock:close()
  end)
end)
