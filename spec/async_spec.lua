-- ringlet.async (ring-websocket-async in coroutines) and
-- examples/async_echo.lua, over real sockets: Node's `ws` is the client
-- (spec/node/ws_script.js through helper.ws_session, and ws_client.js for
-- the example); the backpressure specs use a raw LuaSocket client
-- (spec/wsclient.lua) that can stop reading. Servers run in child
-- processes (helper.start); every wait is bounded by helper.TEST_TIMEOUT.

local helper = require "helper"
local ws = require "wsclient"
local socket = require "socket"

local it_ws = helper.it_needs("ws", it, pending)
local session = helper.ws_session
local texts = helper.ws_texts

-- The app: one route per behaviour. GET /log returns what the server
-- recorded (LOG, serialized).
local APP = helper.SERIALIZER .. [==[
local ringlet = require "ringlet"
local async = require "ringlet.async"
local websocket = require "ringlet.websocket"
local httpkit = require "ringlet.httpkit"
local BINARY_MT = getmetatable(websocket.binary(""))

local LOG = {}
local STATS = {}
local LISTENER = "ring.websocket/listener"

local function echo(inbox, outbox)
  local msg = inbox:take()
  while msg ~= nil do
    outbox:put(msg)
    msg = inbox:take()
  end
end

local routes = {}

routes["/echo"] = function(req)
  return async.websocket(req, echo)
end

routes["/echo-listener"] = function()
  return async.websocket(echo)
end

routes["/closed"] = function(req)
  return async.websocket(req, function(_, outbox)
    outbox:put("bye")
    outbox:put(async.closed(1001, "Gone Away"))
  end)
end

routes["/close"] = function(req)
  return async.websocket(req, function(_, outbox)
    outbox:put("one")
    outbox:put("two")
    outbox:close()
    LOG.close = { put_after = outbox:put("three") }
  end)
end

routes["/inbox-nil"] = function(req)
  return async.websocket(req, function(inbox, outbox, errors)
    local got, shared = {}, {}
    local msg = inbox:take()
    while msg ~= nil do
      got[#got + 1] = msg
      if type(msg) == "table" then
        shared[#shared + 1] = getmetatable(msg) == BINARY_MT
      end
      msg = inbox:take()
    end
    LOG.inbox_nil = {
      got = got, shared = shared, again = inbox:take() == nil,
      closed = { inbox:is_closed(), outbox:is_closed(), errors:is_closed() },
      put_after = outbox:put("late"),
    }
  end)
end

-- the outbox sends the literal {data =, binary = true} and the other
-- modules' binary values as binary; a table without binary = true as text
routes["/binaries"] = function(req)
  return async.websocket(req, function(inbox, outbox)
    local msg = inbox:take() -- a binary message from the client
    outbox:put({ data = msg.data .. "!", binary = true })
    outbox:put(httpkit.binary("hk"))
    outbox:put(websocket.binary("ws"))
    outbox:put({ data = "as text" })
    outbox:put(async.binary("async"))
    outbox:put(async.closed(1000, "done"))
  end)
end

routes["/returns"] = function(req)
  return async.websocket(req, function(_, outbox)
    outbox:put("hi")
  end)
end

routes["/errors"] = function(req)
  return async.websocket(req, function(inbox, outbox, errors)
    outbox:put(42)
    outbox:put("error: " .. errors:take())
    echo(inbox, outbox)
  end)
end

routes["/vararg"] = function(req)
  return async.websocket(req, function(...)
    local inbox, outbox, errors = ...
    outbox:put({ data = 7 })
    outbox:put("error: " .. errors:take())
    echo(inbox, outbox)
  end)
end

routes["/default-error"] = function(req)
  return async.websocket(req, function(inbox, outbox)
    outbox:put("before")
    outbox:put(42)
    LOG.default_error = { put_after = outbox:put("after"),
      inbox = inbox:take() }
  end)
end

routes["/fn-error"] = function(req)
  local with_errors = req.query_string == "errors"
  local fn = function(_, outbox)
    outbox:put("x")
    error("boom in the websocket function")
  end
  if with_errors then
    fn = function(_, outbox, _)
      outbox:put("x")
      error("boom in the websocket function")
    end
  end
  return async.websocket(req, fn)
end

routes["/pending"] = function(req)
  return async.websocket(req, function() end, { max_pending = 3 })
end

routes["/pending-errors"] = function(req)
  return async.websocket(req, function(inbox, outbox, errors)
    outbox:put("error: " .. errors:take())
    local got = {}
    for i = 1, 3 do got[i] = inbox:take() end
    outbox:put(table.concat(got, " "))
  end, { max_pending = 3 })
end

routes["/timeout"] = function(req)
  return async.websocket(req, function(inbox, outbox)
    outbox:put("open")
    LOG.timeout = { inbox = inbox:take() }
  end, { timeout = 200 })
end

routes["/lower"] = function(req)
  local cap = tonumber(req.query_string or "")
  local inbox, outbox, errors = async.chan(cap), async.chan(cap), async.chan()
  async.go(function()
    local msg = inbox:take()
    while msg ~= nil and msg ~= "stop" do
      outbox:put(msg)
      msg = inbox:take()
    end
    outbox:close() -- closes the websocket
  end)
  return { [LISTENER] = async.websocket_listener(inbox, outbox, errors) }
end

routes["/lower-closed"] = function()
  local inbox, outbox, errors = async.chan(), async.chan(), async.chan()
  async.go(function()
    outbox:put("going")
    outbox:put(async.closed(4000, "custom"))
    LOG.lower_closed = { inbox = inbox:take(), errors = errors:take() }
  end)
  return { [LISTENER] = async.websocket_listener(inbox, outbox, errors) }
end

-- /flood?HIGH_WATER: N messages of SIZE bytes put as fast as the outbox
-- takes them; STATS records how many puts returned and the largest
-- buffered amount seen (after each put and every 2 ms).
local N, SIZE = 300, 65536
routes["/flood"] = function(req)
  local hw = math.tointeger(tonumber(req.query_string))
  local inbox, outbox, errors = async.chan(), async.chan(), async.chan()
  local listener = async.websocket_listener(inbox, outbox, errors,
    { high_water = hw })
  local st = { puts = 0, max = 0, errors = 0, error = nil }
  STATS = st
  local ch
  local function sample()
    if ch then st.max = math.max(st.max, ch:buffered_amount()) end
  end
  local function sampler()
    sample()
    if st.puts < N and not inbox:is_closed() then ringlet.timer(2, sampler) end
  end
  local open = listener.on_open
  listener.on_open = function(c)
    ch = c
    sampler()
    return open(c)
  end
  local pad = ("x"):rep(SIZE - 6)
  async.go(function()
    for i = 1, N do
      if not outbox:put(("%06d"):format(i) .. pad) then break end
      st.puts = i
      sample()
    end
  end)
  async.go(function()
    local err = errors:take()
    while err do
      st.errors = st.errors + 1
      st.error = st.error or err
      err = errors:take()
    end
  end)
  return { [LISTENER] = listener }
end

return function(req)
  if req.uri == "/log" then return { body = serialize(LOG) } end
  if req.uri == "/stats" then
    return { body = serialize({ puts = STATS.puts, max = STATS.max,
      errors = STATS.errors, error = STATS.error }) }
  end
  local route = routes[req.uri]
  if not route then return { status = 404, body = "no such route\n" } end
  return route(req)
end
]==]

local function wait_log(srv, key)
  local entry
  helper.wait_until(function()
    entry = helper.get_value(srv, "/log")[key]
    return entry
  end)
  assert(entry, "the server never logged " .. key)
  return entry
end

describe("ringlet.async", function()
  local srv

  setup(function()
    srv = helper.start(APP)
  end)

  teardown(function()
    if srv then helper.assert_clean_stop(srv) end
  end)

  describe("websocket(req, fn)", function()
    it_ws("echoes text and binary: the inbox gives binary as a table the "
      .. "outbox sends as binary", function()
      local rec = session(srv.port, "/echo", [[
        [{"send": "hello"}, {"binary": "00ff10"}, {"send": ""},
         {"binary": ""}, {"send": "é 😀"}, {"until": 5},
         {"close": 1000, "reason": "done"}]
      ]])
      assert.is_nil(rec.error)
      assert.same({ "hello", "bin:00ff10", "", "bin:", "é 😀" }, texts(rec))
      assert.equal(1000, rec.close_code)
    end)

    it_ws("serves many sockets at once, each with its own queues", function()
      local clients = {}
      finally(function() -- each client is waited for, whatever happens
        for _, client in ipairs(clients) do pcall(client.records, client) end
      end)
      for i = 1, 6 do
        local steps = ('[{"sendn": 20, "prefix": "c%d-"}, {"until": 20}, '
          .. '{"close": 1000}]'):format(i)
        clients[i] = helper.ws_start(srv.port, { { path = "/echo",
          steps = steps } })
      end
      for i, client in ipairs(clients) do
        local rec = client:records()[1]
        local want = {}
        for k = 1, 20 do want[k] = ("c%d-%d"):format(i, k) end
        assert.same(want, texts(rec))
        assert.equal(1000, rec.close_code)
      end
    end)

    it_ws("answers a request that is not an upgrade with 426", function()
      local res = assert(helper.request(srv.port, "GET", "/echo"))
      assert.equal(426, res.status)
      assert.equal("websocket", res.headers.upgrade)
      local rec = session(srv.port, "/echo", '[{"close": 1000}]')
      assert.is_true(rec.opened) -- the same route still upgrades
    end)

    it_ws("closes with the code and reason of async.closed, after what was "
      .. "put before it", function()
      local rec = session(srv.port, "/closed", "[]")
      assert.same({ "bye" }, texts(rec))
      assert.equal(1001, rec.close_code)
      assert.equal("Gone Away", rec.close_reason)
    end)

    it_ws("closes with 1000 Normal Closure on outbox:close(), after what was "
      .. "put before it; a put after close returns false", function()
      local rec = session(srv.port, "/close", "[]")
      assert.same({ "one", "two" }, texts(rec))
      assert.equal(1000, rec.close_code)
      assert.equal("Normal Closure", rec.close_reason)
      assert.same({ put_after = false }, wait_log(srv, "close"))
    end)

    it_ws("gives the messages that came, then nil once the client closed; "
      .. "the three channels are closed", function()
      local rec = session(srv.port, "/inbox-nil", [[
        [{"send": "a"}, {"send": "b"}, {"binary": "01"},
         {"close": 4001, "reason": "client bye"}]
      ]])
      assert.equal(4001, rec.close_code)
      assert.same({
        got = { "a", "b", { data = "\1", binary = true } },
        shared = { true }, -- made by the one binary constructor
        again = true,
        closed = { true, true, true },
        put_after = false,
      }, wait_log(srv, "inbox_nil"))
    end)

    it_ws("sends a literal {data = s, binary = true} and the binary values "
      .. "of ringlet.httpkit and ringlet.websocket as binary", function()
      local rec = session(srv.port, "/binaries", [[
        [{"binary": "6869"}, {"until": 5}]
      ]])
      assert.is_nil(rec.error)
      assert.same({ "bin:686921", "bin:686b", "bin:7773", "as text",
        "bin:6173796e63" }, texts(rec))
      assert.equal(1000, rec.close_code)
      assert.equal("done", rec.close_reason)
    end)

    it_ws("keeps the socket open when the function returns "
      .. "(ring-websocket-async 0.2.0)", function()
      local rec = session(srv.port, "/returns", [[
        [{"until": 1}, {"wait": 200}, {"send": "still there?"},
         {"wait": 100}, {"close": 4002, "reason": "client"}]
      ]])
      assert.same({ "hi" }, texts(rec))
      -- our own close code comes back: the server had not closed first
      assert.equal(4002, rec.close_code)
    end)

    it_ws("with an errors parameter, puts errors there and keeps the "
      .. "socket open", function()
      local rec = session(srv.port, "/errors", [[
        [{"until": 1}, {"send": "echo me"}, {"until": 2},
         {"close": 1000}]
      ]])
      local got = texts(rec)
      assert.equal(2, #got)
      assert.matches("^error: outbox: cannot send a number", got[1])
      assert.equal("echo me", got[2])
      assert.equal(1000, rec.close_code)
    end)

    it_ws("counts `...` as an errors parameter", function()
      local rec = session(srv.port, "/vararg", [[
        [{"until": 1}, {"send": "x"}, {"until": 2}, {"close": 1000}]
      ]])
      local got = texts(rec)
      assert.matches("^error: outbox: cannot send a table", got[1])
      assert.equal("x", got[2])
    end)

    it_ws("without an errors parameter, the first error closes with 1011 "
      .. "Unexpected Error after what was put before it", function()
      local rec = session(srv.port, "/default-error", "[]")
      -- the 1011 close is put on the outbox like any message: a put made
      -- meanwhile ("after") may go before it
      assert.equal("before", texts(rec)[1])
      assert.equal(1011, rec.close_code)
      assert.equal("Unexpected Error", rec.close_reason)
      -- the socket closed: the inbox gives nil
      assert.is_nil(wait_log(srv, "default_error").inbox)
    end)

    it_ws("closes with 1011 when the function raises, with or without an "
      .. "errors parameter, and logs the error", function()
      local defer = helper.cleanup(finally)
      local own = helper.start(APP) -- its stderr gets the traceback
      defer(function() own:stop() end)
      for _, path in ipairs({ "/fn-error", "/fn-error?errors" }) do
        local rec = session(own.port, path, "[]")
        assert.same({ "x" }, texts(rec))
        assert.equal(1011, rec.close_code)
        assert.equal("Unexpected Error", rec.close_reason)
      end
      assert.equal(0, own:stop())
      local _, n = own:stderr():gsub("boom in the websocket function", "")
      assert.equal(2, n, own:stderr())
    end)

    it_ws("past max_pending messages waiting for the inbox, reports an "
      .. "error: 1011 without an errors parameter", function()
      local rec = session(srv.port, "/pending",
        [[ [{"sendn": 10, "prefix": "p"}] ]])
      assert.equal(1011, rec.close_code)
      assert.equal("Unexpected Error", rec.close_reason)
    end)

    it_ws("past max_pending, with an errors parameter, drops the message and "
      .. "puts the error there; the first ones are still taken", function()
      local rec = session(srv.port, "/pending-errors", [[
        [{"sendn": 10, "prefix": "p"}, {"until": 2}, {"close": 1000}]
      ]])
      local got = texts(rec)
      assert.equal(2, #got)
      assert.matches("^error: inbox: 3 messages are waiting", got[1])
      assert.equal("p1 p2 p3", got[2])
      assert.equal(1000, rec.close_code)
    end)

    it_ws("passes the channel options on: timeout closes an idle socket, "
      .. "and the inbox then gives nil", function()
      local rec = session(srv.port, "/timeout", "[]")
      assert.same({ "open" }, texts(rec))
      assert.equal(1000, rec.close_code)
      assert.equal("idle timeout", rec.close_reason)
      assert.same({}, wait_log(srv, "timeout")) -- inbox:take() was nil
    end)
  end)

  describe("websocket(fn), the listener response", function()
    it_ws("echoes text and binary and closes when the client does",
      function()
        local rec = session(srv.port, "/echo-listener", [[
          [{"send": "one"}, {"binary": "cafe"}, {"until": 2},
           {"close": 1000}]
        ]])
        assert.same({ "one", "bin:cafe" }, texts(rec))
        assert.equal(1000, rec.close_code)
      end)

    it("is answered with 426 by the core for a plain request", function()
      local res = assert(helper.request(srv.port, "GET", "/echo-listener"))
      assert.equal(426, res.status)
    end)
  end)

  describe("websocket_listener(inbox, outbox, errors) with async.go",
    function()
      it_ws("echoes through unbuffered channels; closing the outbox closes "
        .. "the socket with 1000", function()
        local rec = session(srv.port, "/lower", [[
          [{"send": "a"}, {"binary": "00"}, {"send": "stop"}]
        ]])
        assert.same({ "a", "bin:00" }, texts(rec))
        assert.equal(1000, rec.close_code)
        assert.equal("Normal Closure", rec.close_reason)
      end)

      it_ws("works the same with buffered channels", function()
        local rec = session(srv.port, "/lower?4", [[
          [{"sendn": 6, "prefix": "m"}, {"until": 6}, {"send": "stop"}]
        ]])
        assert.same({ "m1", "m2", "m3", "m4", "m5", "m6" }, texts(rec))
        assert.equal(1000, rec.close_code)
      end)

      it_ws("closes with async.closed's code; then the inbox and errors "
        .. "give nil", function()
        local rec = session(srv.port, "/lower-closed", "[]")
        assert.same({ "going" }, texts(rec))
        assert.equal(4000, rec.close_code)
        assert.equal("custom", rec.close_reason)
        assert.same({}, wait_log(srv, "lower_closed"))
      end)

      it("gives the core a table of callbacks", function()
        local ok, out, err = helper.run_script([[
local async = require "ringlet.async"
local l = async.websocket_listener(async.chan(), async.chan(), async.chan())
local names = {}
for k, v in pairs(l) do names[#names + 1] = k .. ":" .. type(v) end
table.sort(names)
print(table.concat(names, " "))
]])
        assert.is_true(ok, err)
        assert.equal("on_close:function on_error:function on_message:function "
          .. "on_open:function\n", out)
      end)
    end)

  describe("backpressure", function()
    local N, SIZE = 300, 65536

    local function stats()
      return helper.get_value(srv, "/stats")
    end

    -- Polls /stats until puts stop moving for 300 ms (or reach N).
    local function settled()
      local last, since = -1, socket.gettime()
      local st
      helper.wait_until(function()
        st = stats()
        if st.puts ~= last then
          last, since = st.puts, socket.gettime()
        end
        return st.puts == N or socket.gettime() - since > 0.3
      end)
      return st
    end

    it("makes put wait while the client does not read: the server's send "
      .. "buffer stays under high_water plus one message", function()
      local defer = helper.cleanup(finally)
      local hw = 65536
      local sock = assert(ws.handshake(srv.port, "/flood?" .. hw))
      defer(function() sock:close() end)
      local st = settled()
      -- the kernel's buffers took some; the producer then had to wait
      assert.is_true(st.puts < N, "every put returned: " .. st.puts)
      assert.is_true(st.max <= hw + SIZE + 64,
        "buffered up to " .. st.max .. " bytes")
      -- reading everything lets the rest through, in order
      for i = 1, N do
        local op, payload = ws.read_message(sock)
        assert.equal(ws.OP.TEXT, op, payload)
        assert.equal(SIZE, #payload)
        assert.equal(("%06d"):format(i), payload:sub(1, 6))
      end
      assert.truthy(helper.wait_until(function() return stats().puts == N end))
      st = stats()
      assert.is_true(st.max <= hw + SIZE + 64,
        "buffered up to " .. st.max .. " bytes")
      assert.equal(0, st.errors)
      ws.send_close(sock, 1000)
      assert.truthy(ws.read_close(sock))
    end)

    it("(control) without the wait, the same flood fills the send buffer "
      .. "while the client reads nothing", function()
      local defer = helper.cleanup(finally)
      local sock = assert(ws.handshake(srv.port, "/flood?" .. (1 << 40)))
      defer(function() sock:close() end)
      assert.truthy(helper.wait_until(function() return stats().puts == N end))
      local st = stats()
      assert.is_true(st.max > 1024 * 1024, "buffered only " .. st.max)
      -- past max_buffered (4 MiB) sends are refused: errors says so
      assert.is_true(st.errors > 0)
      assert.matches("send buffer full", st.error)
    end)
  end)
end)

describe("ringlet.async values", function()
  local function script(source)
    local ok, out, err = helper.run_script(source)
    assert(ok, err)
    return out
  end

  it("chan() is a rendezvous ringlet.queue, chan(n) buffers n", function()
    local out = script([[
local async = require "ringlet.async"
local c0, c2 = async.chan(), async.chan(2)
print(tostring(c0):match("^ringlet.queue") ~= nil, c0:offer(1), #c0)
print(c2:offer(1), c2:offer(2), c2:offer(3), #c2, c2:poll(), c2:poll())
for _, bad in ipairs({ -1, 1.5, "2" }) do
  print((select(2, pcall(async.chan, bad))))
end
]])
    assert.equal("true\tfalse\t0\n"
      .. "true\ttrue\tfalse\t2\t1\t2\n"
      .. ("async.chan: the capacity must be an integer >= 0\n"):rep(3),
      (out:gsub("[^\n]*: async%.chan:", "async.chan:")))
  end)

  it("closed(code, reason) checks both where it is made", function()
    local out = script([[
local async = require "ringlet.async"
local c = async.closed(1001, "Gone Away")
print(c.code, c.reason, async.is_closed(c), async.is_closed("x"), tostring(c))
for _, args in ipairs({ { 1001 }, { 999, "" }, { 1005, "" }, { 1001.5, "" },
    { 1000, ("r"):rep(124) }, { 1000, "bad \xff" } }) do
  print(pcall(async.closed, table.unpack(args)))
end
print(pcall(async.closed, 4999, ("r"):rep(123)))
]])
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal('1001\tGone Away\ttrue\tfalse\t'
      .. 'ringlet.async.closed(1001, "Gone Away")', lines[1])
    assert.matches("false\t.*async%.closed: reason must be a string", lines[2])
    for i = 3, 5 do
      assert.matches("false\t.*async%.closed: code must be an integer close code",
        lines[i])
    end
    assert.matches("false\t.*async%.closed: reason must be a string", lines[6])
    assert.matches("false\t.*async%.closed: reason must be a string.*UTF%-8",
      lines[7])
    assert.matches("^true\t", lines[8])
  end)

  it("binary(s) is {data = s, binary = true}, ringlet.websocket's binary; "
    .. "is_binary takes the literal too", function()
    local out = script([[
local async = require "ringlet.async"
local ws = require "ringlet.websocket"
local b = async.binary("\0\1")
print(b.data == "\0\1", b.binary, (pcall(async.binary, 5)),
  async.binary == ws.binary, async.binary == require("ringlet.httpkit").binary)
print(async.is_binary(b), async.is_binary({ data = "x", binary = true }),
  async.is_binary({ data = "x" }), async.is_binary("x"))
]])
    assert.equal("true\ttrue\tfalse\ttrue\ttrue\n"
      .. "true\ttrue\tfalse\tfalse\n", out)
  end)

  it("go(fn, ...) runs fn in a task that may wait; its result channel gets "
    .. "the first result, then closes", function()
    local out = script([[
local async = require "ringlet.async"
local ringlet = require "ringlet"
local c = async.chan()
local sum = async.go(function(a, b)
  ringlet.sleep(10)
  return a + b + c:take()
end, 1, 2)
local none = async.go(function() c:put(4) end)
local failed = async.go(function() error("go-boom") end)
async.go(function()
  print("sum", sum:take(), sum:take(), sum:is_closed())
  print("none", none:take())
  print("failed", failed:take())
end)
]])
    assert.equal("sum\t7\tnil\ttrue\nnone\tnil\nfailed\tnil\n", out)
  end)

  it("go raises at once for a non-function; an error in fn is logged",
    function()
      local ok, out, err = helper.run_script([[
local async = require "ringlet.async"
print(pcall(async.go, 42))
async.go(function() error("go-boom") end)
]])
      assert.is_true(ok, err)
      assert.matches("^false\t.*async%.go: expected a function, got number\n$", out)
      assert.truthy(err:find("go-boom", 1, true), err)
    end)

  it("websocket and websocket_listener check their arguments", function()
    local out = script([[
local async = require "ringlet.async"
local c = async.chan
local function try(...) print((select(2, pcall(...)))) end
try(async.websocket, 42)
try(async.websocket, {}, 42)
try(async.websocket, function() end, { bogus = 1 })
try(async.websocket, function() end, { high_water = -1 })
try(async.websocket, function() end, { timeout = 100 })
try(async.websocket_listener, c(), {}, c())
try(async.websocket_listener, c(), c(), c(), { max_pending = 1.5 })
local r = async.websocket(function() end, { high_water = 0, max_pending = 1 })
print(type(r["ring.websocket/listener"].on_open))
print(async.HIGH_WATER, async.MAX_PENDING)
]])
    local lines = {}
    for l in out:gmatch("[^\n]+") do
      lines[#lines + 1] = l:gsub("^[^:]*:%d+: ", "")
    end
    assert.same({
      "async.websocket: expected (req, fn [, opts]) or (fn [, opts]), got number",
      "async.websocket: fn must be a function(inbox, outbox [, errors]), got number",
      "async.websocket: unknown option 'bogus'",
      "async.websocket: option 'high_water' must be an integer >= 0",
      "async.websocket: option 'timeout' needs the request form "
        .. "(async.websocket(req, fn, opts))",
      "async.websocket_listener: outbox must be a channel (async.chan or "
        .. "ringlet.queue), got table",
      "async.websocket_listener: option 'max_pending' must be an integer >= 0",
      "function",
      "65536\t1024",
    }, lines)
  end)
end)

describe("examples/async_echo.lua", function()
  local function start_example()
    return helper.start(helper.repo_file("examples/async_echo.lua"))
  end

  it_ws("echoes text and binary byte for byte to the ws client, answers "
    .. "its ping and its close 1000", function()
    local defer = helper.cleanup(finally)
    local srv = start_example()
    defer(function() srv:stop() end)
    helper.assert_ws_client(srv.port)
    helper.assert_clean_stop(srv)
  end)

  it("answers a plain GET with 426", function()
    local defer = helper.cleanup(finally)
    local srv = start_example()
    defer(function() srv:stop() end)
    local res = assert(helper.request(srv.port, "GET", "/"))
    assert.equal(426, res.status)
    helper.assert_clean_stop(srv)
  end)
end)
