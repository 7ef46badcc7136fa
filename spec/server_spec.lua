-- run_server and its options, server:stop, ringlet.run, timers,
-- ringlet.sleep in handlers, and the CLI. Scripts run in the CLI as child
-- processes (helper.run_script, helper.start).

local helper = require "helper"
local socket = require "socket"

local function touch(name)
  assert(io.open(name, "w")):close()
end

local function assert_stopped(srv)
  local status = srv:stop()
  assert.equal(0, status, "server exit status; stderr:\n" .. srv:stderr())
end

-- For a server told to stop through /stop: the CLI must exit by itself
-- (no signal: one sent while it exits would race with its shutdown).
local function assert_exits(srv)
  local exited = helper.wait_until(function() return not srv:alive() end)
  local status = srv:stop()
  assert.truthy(exited, "the CLI did not exit after server:stop()")
  assert.equal(0, status, "server exit status; stderr:\n" .. srv:stderr())
end

-- Runs source; asserts a clean exit and returns stdout.
local function run_ok(source)
  local ok, out, err, status = helper.run_script(source)
  assert.is_true(ok, ("status %s; stderr:\n%s"):format(status, err))
  return out, err
end

-- The source of an app that starts its own server (port 0) with `handler`
-- and announces it the way the CLI does, so that helper.start can use it.
local function self_started(handler_source, options)
  return ([=[
local ringlet = require "ringlet"
local server
local handler = %s
server = ringlet.run_server(function(req) return handler(req, server) end,
  %s)
print(("ringlet: listening on http://127.0.0.1:%%d"):format(server.port))
io.stdout:flush()
]=]):format(handler_source, options or '{ port = 0, ip = "127.0.0.1" }')
end

-- /sleep?MARKER,MS touches MARKER and sleeps MS; /wait?MARKER,RELEASE
-- touches MARKER and sleeps until RELEASE exists; /stop?MS stops the server
-- with { timeout = MS }; anything else answers "hello".
local HANDLER = [=[
function(req, server)
  local ringlet = require "ringlet"
  local q = req.query_string or ""
  if req.uri == "/sleep" then
    local marker, ms = q:match("^(.-),(%d+)$")
    if marker ~= "" then assert(io.open(marker, "w")):close() end
    ringlet.sleep(tonumber(ms))
    return { status = 200, body = "slept " .. ms }
  elseif req.uri == "/wait" then
    local marker, release = q:match("^(.-),(.*)$")
    assert(io.open(marker, "w")):close()
    while not io.open(release, "r") do ringlet.sleep(10) end
    return { status = 200, body = "released" }
  elseif req.uri == "/stop" then
    server:stop({ timeout = tonumber(q) })
    return { status = 200, body = "stopping" }
  end
  return { status = 200, body = "hello" }
end
]=]

local function send(port, path)
  local sock = assert(helper.connect(port))
  assert(sock:send("GET " .. path .. " HTTP/1.1\r\nHost: h\r\n\r\n"))
  return sock
end

local function refused(port)
  return helper.wait_until(function()
    local sock = helper.connect(port)
    if sock then
      sock:close()
      return false
    end
    return true
  end)
end

describe("ringlet server", function()
  describe("run_server options", function()
    local function try(options_source)
      local out = run_ok(([=[
local ringlet = require "ringlet"
local ok, err = pcall(ringlet.run_server, function() end, %s)
print(ok, err)
]=]):format(options_source))
      return out
    end

    local bad = {
      { "an unknown option", "{ port = 0, bogus_option = 1 }",
        "bogus_option" },
      { "a string port", '{ port = "abc" }', "port" },
      { "a number ip", "{ port = 0, ip = 5 }", "ip" },
      { "a string max_body", '{ port = 0, max_body = "big" }', "max_body" },
      { "a table queue_size", "{ port = 0, queue_size = {} }", "queue_size" },
      { "a boolean max_line", "{ port = 0, max_line = true }", "max_line" },
      { "a string max_ws", '{ port = 0, max_ws = "x" }', "max_ws" },
      { "a string thread", '{ port = 0, thread = "x" }', "thread" },
      { "a string idle_timeout", '{ port = 0, idle_timeout = "x" }',
        "idle_timeout" },
      { "a table header_timeout", "{ port = 0, header_timeout = {} }",
        "header_timeout" },
      { "an unknown proxy_protocol", '{ port = 0, proxy_protocol = "maybe" }',
        "proxy_protocol" },
      { "a number proxy_protocol", "{ port = 0, proxy_protocol = 1 }",
        "proxy_protocol" },
    }
    for _, case in ipairs(bad) do
      it("raises an error naming the option for " .. case[1], function()
        local out = try(case[2])
        assert.truthy(out:find("^false\t"), out)
        assert.truthy(out:find(case[3], 1, true), out)
      end)
    end

    it("raises an error for a handler that is not a function", function()
      local out = run_ok([=[
local ringlet = require "ringlet"
print(pcall(ringlet.run_server, "not a function", { port = 0 }))
]=])
      assert.truthy(out:find("^false\t"), out)
    end)

    it("raises an error for options that are not a table", function()
      local out = run_ok([=[
local ringlet = require "ringlet"
print(pcall(ringlet.run_server, function() end, 8090))
]=])
      assert.truthy(out:find("^false\t"), out)
    end)

    it("accepts every documented option with a value of the right type",
      function()
        local out = run_ok([=[
local ringlet = require "ringlet"
local s = ringlet.run_server(function() end, {
  ip = "127.0.0.1", port = 0, thread = 1, queue_size = 10, max_body = 100,
  max_ws = 100, max_line = 1000, proxy_protocol = "disable",
  idle_timeout = 1000, header_timeout = 1000 })
print("port", s.port)
s:stop()
]=])
        assert.truthy(out:find("^port\t%d+\n$"), out)
      end)

    it("accepts proxy_protocol \"enable\" and \"optional\"", function()
      local out = run_ok([=[
local ringlet = require "ringlet"
for _, v in ipairs({ "enable", "optional" }) do
  local s = ringlet.run_server(function() end,
    { ip = "127.0.0.1", port = 0, proxy_protocol = v })
  print(v, s.port > 0)
  s:stop()
end
]=])
      assert.equal("enable\ttrue\noptional\ttrue\n", out)
    end)

    it("sets server.port to the bound port when port is 0", function()
      local out = run_ok([=[
local ringlet = require "ringlet"
local s = ringlet.run_server(function() end, { ip = "127.0.0.1", port = 0 })
print(math.type(s.port), s.port > 0)
s:stop()
]=])
      assert.equal("integer\ttrue\n", out)
    end)

    it("serves on the port that server.port reports", function()
      local srv = helper.start(self_started(HANDLER))
      finally(function() assert_stopped(srv) end)
      local res = assert(helper.request(srv.port, "GET", "/"))
      assert.same({ 200, "hello" }, { res.status, res.body })
    end)

    it("gives two servers started with port 0 different ports", function()
      local out = run_ok([=[
local ringlet = require "ringlet"
local a = ringlet.run_server(function() end, { ip = "127.0.0.1", port = 0 })
local b = ringlet.run_server(function() end, { ip = "127.0.0.1", port = 0 })
print(a.port ~= b.port)
a:stop()
b:stop()
]=])
      assert.equal("true\n", out)
    end)

    it("returns nil and an error message when the port is in use",
      function()
        -- A runtime failure, not a programmer error: nil, "ENAME: ...".
        local out = run_ok([=[
local ringlet = require "ringlet"
local a = ringlet.run_server(function() end, { ip = "127.0.0.1", port = 0 })
local b, err = ringlet.run_server(function() end,
  { ip = "127.0.0.1", port = a.port })
print(b == nil, type(err))
print(err)
a:stop()
]=])
        assert.truthy(out:find("^true\tstring\n"), out)
        assert.truthy(out:find("EADDRINUSE", 1, true)
          or out:lower():find("in use", 1, true), out)
      end)
  end)

  describe("server:stop", function()
    it("stops accepting new connections", function()
      local srv = helper.start(self_started(HANDLER))
      finally(function() assert_exits(srv) end)
      local res = assert(helper.request(srv.port, "GET", "/stop?1000"))
      assert.equal("stopping", res.body)
      assert.truthy(refused(srv.port))
    end)

    it("lets an in-flight response shorter than the timeout finish",
      function()
        local defer = helper.cleanup(finally)
        local srv = helper.start(self_started(HANDLER))
        local marker = helper.marker_path()
        defer(function()
          os.remove(marker)
          assert_exits(srv)
        end)
        local sock = send(srv.port, "/sleep?" .. marker .. ",300")
        defer(function() sock:close() end)
        assert.truthy(helper.wait_until(function() return helper.exists(marker) end))
        assert.equal("stopping",
          assert(helper.request(srv.port, "GET", "/stop?5000")).body)
        local res = assert(helper.read_response(sock))
        assert.same({ 200, "slept 300" }, { res.status, res.body })
      end)

    it("closes a connection whose handler runs past the timeout", function()
      local defer = helper.cleanup(finally)
      local srv = helper.start(self_started(HANDLER))
      local marker = helper.marker_path()
      defer(function()
        os.remove(marker)
        assert_exits(srv)
      end)
      local sock = send(srv.port, "/sleep?" .. marker .. ",3000")
      defer(function() sock:close() end)
      assert.truthy(helper.wait_until(function() return helper.exists(marker) end))
      assert.equal("stopping",
        assert(helper.request(srv.port, "GET", "/stop?100")).body)
      -- Closed (or reset) without a complete response.
      local res, err = helper.read_response(sock)
      assert.is_nil(res, "got a response")
      assert.truthy(err == "closed" or tostring(err):find("reset"), err)
    end)

    it("closes an idle keep-alive connection", function()
      local defer = helper.cleanup(finally)
      local srv = helper.start(self_started(HANDLER))
      defer(function() assert_exits(srv) end)
      local idle = send(srv.port, "/")
      defer(function() idle:close() end)
      assert.equal(200, assert(helper.read_response(idle)).status)
      assert(helper.request(srv.port, "GET", "/stop?100"))
      assert.is_true(helper.closed(idle))
    end)

    it("lets the CLI exit 0 once the server has stopped", function()
      local srv = helper.start(self_started(HANDLER))
      finally(function() srv:stop() end)
      assert(helper.request(srv.port, "GET", "/stop?100"))
      assert_exits(srv)
    end)

    it("stops a server when called without options", function()
      local out = run_ok([=[
local ringlet = require "ringlet"
local s = ringlet.run_server(function() end, { ip = "127.0.0.1", port = 0 })
ringlet.timer(10, function() s:stop() end)
ringlet.run()
print("stopped")
]=])
      assert.equal("stopped\n", out)
    end)
  end)

  describe("ringlet.run", function()
    it("returns when every server has stopped", function()
      local out = run_ok([=[
local ringlet = require "ringlet"
local h = function() return { status = 200 } end
local a = ringlet.run_server(h, { ip = "127.0.0.1", port = 0 })
local b = ringlet.run_server(h, { ip = "127.0.0.1", port = 0 })
ringlet.timer(10, function() print("stopping a") a:stop() end)
ringlet.timer(50, function() print("stopping b") b:stop() end)
ringlet.run()
print("run returned")
]=])
      assert.equal("stopping a\nstopping b\nrun returned\n", out)
    end)

    it("returns at once when nothing is running", function()
      assert.equal("returned\n", run_ok([=[
local ringlet = require "ringlet"
ringlet.run()
print("returned")
]=]))
    end)
  end)

  describe("timers", function()
    it("fires a timer's function once", function()
      assert.equal("fired\n", run_ok([=[
local ringlet = require "ringlet"
ringlet.timer(10, function() print("fired") end)
ringlet.run()
]=]))
    end)

    it("fires timers in the order of their delays", function()
      assert.equal("early\nlate\n", run_ok([=[
local ringlet = require "ringlet"
ringlet.timer(60, function() print("late") end)
ringlet.timer(5, function() print("early") end)
ringlet.run()
]=]))
    end)

    it("fires a timer set with 0 ms", function()
      assert.equal("zero\n", run_ok([=[
local ringlet = require "ringlet"
ringlet.timer(0, function() print("zero") end)
]=]))
    end)

    it("does not fire a cancelled timer", function()
      assert.equal("done\n", run_ok([=[
local ringlet = require "ringlet"
local t = ringlet.timer(10, function() print("cancelled timer fired") end)
t:cancel()
ringlet.timer(50, function() print("done") end)
ringlet.run()
]=]))
    end)

    it("takes a second cancel quietly", function()
      assert.equal("done\n", run_ok([=[
local ringlet = require "ringlet"
local t = ringlet.timer(10, function() print("cancelled timer fired") end)
t:cancel()
t:cancel()
ringlet.timer(30, function() print("done") end)
]=]))
    end)

    it("takes a cancel after the timer has fired quietly", function()
      assert.equal("fired\ndone\n", run_ok([=[
local ringlet = require "ringlet"
local t
t = ringlet.timer(5, function() print("fired") end)
ringlet.timer(30, function() t:cancel() print("done") end)
]=]))
    end)

    it("runs a timer started from a timer's function", function()
      assert.equal("outer\ninner\n", run_ok([=[
local ringlet = require "ringlet"
ringlet.timer(5, function()
  print("outer")
  ringlet.timer(5, function() print("inner") end)
end)
]=]))
    end)

    it("lets a timer's function sleep without blocking other timers",
      function()
        assert.equal("a\nb\nc\n", run_ok([=[
local ringlet = require "ringlet"
ringlet.timer(0, function()
  print("a")
  ringlet.sleep(60)
  print("c")
end)
ringlet.timer(10, function() print("b") end)
]=]))
      end)

    it("logs an error raised in a timer and keeps running", function()
      local ok, out, err = helper.run_script([=[
local ringlet = require "ringlet"
ringlet.timer(5, function() error("timer-boom") end)
ringlet.timer(30, function() print("after") end)
]=])
      assert.equal("after\n", out, err)
      assert.truthy(err:find("timer-boom", 1, true), err)
      assert.is_not_nil(ok)
    end)

    it("keeps the CLI running until its timers are done", function()
      assert.equal("last\n", run_ok([=[
local ringlet = require "ringlet"
ringlet.timer(80, function() print("last") end)
]=]))
    end)
  end)

  describe("ringlet.sleep in a handler", function()
    local srv, port

    lazy_setup(function()
      srv = helper.start(self_started(HANDLER))
      port = srv.port
    end)

    lazy_teardown(function()
      if srv then assert_stopped(srv) end
    end)

    it("completes two concurrent requests to a handler that sleeps",
      function()
        local a = send(port, "/sleep?,300")
        local b = send(port, "/sleep?,300")
        finally(function()
          a:close()
          b:close()
        end)
        local ra = assert(helper.read_response(a))
        local rb = assert(helper.read_response(b))
        assert.same({ "slept 300", "slept 300" }, { ra.body, rb.body })
      end)

    it("answers a fast request while two handlers sleep", function()
      local ma, mb, release = helper.marker_path(), helper.marker_path(), helper.marker_path()
      local a = send(port, "/wait?" .. ma .. "," .. release)
      local b = send(port, "/wait?" .. mb .. "," .. release)
      finally(function()
        touch(release)
        a:close()
        b:close()
        for _, f in ipairs({ ma, mb, release }) do os.remove(f) end
      end)
      assert.truthy(helper.wait_until(function()
        return helper.exists(ma) and helper.exists(mb)
      end))
      local order = {}
      local fast = assert(helper.request(port, "GET", "/"))
      order[#order + 1] = "fast " .. fast.body
      local readable = socket.select({ a, b }, nil, 0)
      order[#order + 1] = #readable .. " sleepers done"
      touch(release)
      order[#order + 1] = "a " .. assert(helper.read_response(a)).body
      order[#order + 1] = "b " .. assert(helper.read_response(b)).body
      assert.same({ "fast hello", "0 sleepers done", "a released",
                    "b released" }, order)
    end)

    it("answers the fast request first when it comes after a slow one",
      function()
        local defer = helper.cleanup(finally)
        local marker = helper.marker_path()
        local slow = send(port, "/sleep?" .. marker .. ",300")
        defer(function()
          slow:close()
          os.remove(marker)
        end)
        assert.truthy(helper.wait_until(function() return helper.exists(marker) end))
        local fast = send(port, "/")
        defer(function() fast:close() end)
        local order = {}
        local pending = { slow, fast }
        while #pending > 0 do
          local readable = socket.select(pending, nil, helper.TEST_TIMEOUT)
          assert.is_true(#readable > 0, "no response in time")
          local sock = readable[1]
          local res = assert(helper.read_response(sock))
          order[#order + 1] = res.body
          for i, p in ipairs(pending) do
            if p == sock then table.remove(pending, i) end
          end
        end
        assert.same({ "hello", "slept 300" }, order)
      end)
  end)

  describe("the CLI", function()
    it("prints exactly one listening line for an app returning a handler",
      function()
        local srv = helper.start("return function() return { body = 'x' } end")
        local status = srv:stop()
        assert.same({ 0, "" }, { status, srv:stdout() })
        assert.is_true(srv.port > 0)
      end)

    it("serves the handler that app.lua returns", function()
      local srv = helper.start(
        "return function() return { status = 200, body = 'from cli' } end")
      finally(function() assert_stopped(srv) end)
      local out, code = helper.curl("http://127.0.0.1:" .. srv.port .. "/")
      assert.same({ "from cli", 0 }, { out, code })
    end)

    it("applies the options of an app returning a table", function()
      local srv = helper.start([=[
return { handler = function() return { status = 200, body = "ok" } end,
         options = { max_body = 10 } }
]=])
      finally(function() assert_stopped(srv) end)
      local res = assert(helper.request(srv.port, "POST", "/", nil,
        ("x"):rep(20)))
      assert.equal(413, res.status)
    end)

    it("exits 0 on SIGTERM", function()
      local srv = helper.start("return function() return { body = 'x' } end")
      assert.equal(0, srv:stop("TERM"), srv:stderr())
    end)

    it("exits 0 on SIGINT", function()
      local srv = helper.start("return function() return { body = 'x' } end")
      assert.equal(0, srv:stop("INT"), srv:stderr())
    end)

    it("exits 0 on SIGTERM while a keep-alive connection is open",
      function()
        local srv = helper.start("return function() return { body = 'x' } end")
        local sock = send(srv.port, "/")
        finally(function() sock:close() end)
        assert(helper.read_response(sock))
        assert.equal(0, srv:stop("TERM"), srv:stderr())
      end)

    it("lets an in-flight request finish on SIGTERM", function()
      local defer = helper.cleanup(finally)
      local marker = helper.marker_path()
      local srv = helper.start(([=[
local ringlet = require "ringlet"
return function()
  assert(io.open(%q, "w")):close()
  ringlet.sleep(200)
  return { status = 200, body = "finished" }
end
]=]):format(marker))
      defer(function()
        os.remove(marker)
        srv:stop()
      end)
      local sock = send(srv.port, "/")
      defer(function() sock:close() end)
      assert.truthy(helper.wait_until(function() return helper.exists(marker) end))
      srv:signal("TERM")
      local res = assert(helper.read_response(sock))
      assert.same({ 200, "finished" }, { res.status, res.body })
      assert.equal(0, srv:stop(), srv:stderr())
    end)

    it("runs a script that starts its own server until it stops", function()
      local out = run_ok([=[
local ringlet = require "ringlet"
local s = ringlet.run_server(function() end, { ip = "127.0.0.1", port = 0 })
print("started")
ringlet.timer(20, function() print("stopping") s:stop() end)
]=])
      assert.equal("started\nstopping\n", out)
    end)

    it("exits 0 after a script that starts nothing", function()
      assert.equal("hi\n", run_ok("print('hi')"))
    end)

    it("keeps Lua's warnings off until warn('@on'), as lua5.4 does",
      function()
        local ok, _, err = helper.run_script([=[
warn("hidden"); warn("@on"); warn("shown ", "here"); warn("@off"); warn("gone")
]=])
        assert.is_true(ok, err)
        assert.equal("Lua warning: shown here\n", err)
      end)

    it("keeps every byte through blocks that grow and shrink across the "
      .. "allocator's size classes", function()
      -- tables and strings from 1 byte to 4 KiB, grown one element at a
      -- time (each step a realloc, small to large), then dropped and made
      -- again from recycled blocks
      local out = run_ok([=[
local sum = 0
for round = 1, 3 do
  local keep = {}
  for n = 1, 4096, 7 do
    local t = {}
    for i = 1, n // 16 + 1 do t[i] = i * round end
    local s = string.rep(string.char(65 + n % 26), n)
    keep[#keep + 1] = { t = t, s = s, n = n }
  end
  collectgarbage()
  for _, k in ipairs(keep) do
    assert(#k.s == k.n and k.s == string.rep(k.s:sub(1, 1), k.n))
    for i = 1, #k.t do assert(k.t[i] == i * round) end
    sum = sum + #k.s + #k.t
  end
end
print(sum)
]=])
      local sum = 0
      for _ = 1, 3 do
        for n = 1, 4096, 7 do sum = sum + n + n // 16 + 1 end
      end
      assert.equal(sum .. "\n", out)
    end)

    it("exits non-zero and reports an app that raises while loading",
      function()
        local ok, _, err = helper.run_script("error('load-boom')")
        assert.is_false(ok)
        assert.truthy(err:find("load-boom", 1, true), err)
      end)

    it("exits non-zero for an app with a syntax error", function()
      local ok, _, err = helper.run_script("return function(")
      assert.is_false(ok)
      assert.is_true(#err > 0)
    end)

    it("logs a handler's error with a traceback to stderr", function()
      local srv = helper.start(
        "return function() error('cli-handler-boom') end")
      finally(function() assert_stopped(srv) end)
      assert.equal(500, assert(helper.request(srv.port, "GET", "/")).status)
      assert.truthy(helper.wait_until(function()
        return srv:stderr():find("cli-handler-boom", 1, true)
      end))
      assert.truthy(srv:stderr():find("traceback", 1, true), srv:stderr())
    end)
  end)
end)
