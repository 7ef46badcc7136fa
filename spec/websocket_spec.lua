-- ringlet.as_channel over WebSocket: the opening handshake, messages, the
-- frames ch:send writes, UTF-8 and protocol checks, sizes, closing,
-- timeouts and pings, backpressure.
--
-- Every server runs in a child process (helper.start); spec/wsclient.lua is
-- the raw client. Servers are shared within a describe block: each test
-- uses its own tag, passed as the query string (/echo?t12), and the app
-- keeps one event log per tag; GET /events?t12 answers with that log,
-- serialized. Every bad-input test ends by checking that a second
-- connection is still served. Waits are bounded by helper.TEST_TIMEOUT;
-- nothing is timed.

local helper = require "helper"
local ws = require "wsclient"
local socket = require "socket"

local OP = ws.OP
local MiB = 1024 * 1024

-- Bytes 0..255 repeated: the app and the specs build the same payloads.
local ALL_BYTES_SOURCE = [[
local ALL_BYTES = {}
for i = 0, 255 do ALL_BYTES[#ALL_BYTES + 1] = string.char(i) end
ALL_BYTES = table.concat(ALL_BYTES)
local function content(n)
  return ALL_BYTES:rep(n // 256 + 1):sub(1, n)
end
]]
local content = assert(load(ALL_BYTES_SOURCE .. "return content"))()

-- The app every server runs. record(...) appends one event (its arguments
-- through tostring, joined with spaces) to the log of the request's tag.
local APP = [[
local ringlet = require "ringlet"
]] .. helper.SERIALIZER .. ALL_BYTES_SOURCE .. [[
local logs = {}
local function recorder(req)
  local tag = req.query_string or ""
  local log = logs[tag]
  if not log then
    log = {}
    logs[tag] = log
  end
  return function(...)
    local t = table.pack(...)
    for i = 1, t.n do t[i] = tostring(t[i]) end
    log[#log + 1] = table.concat(t, " ", 1, t.n)
  end
end
-- A close reason in brackets, so that "" shows.
local function reason(info) return "[" .. tostring(info.reason) .. "]" end

local routes = {}

routes["/events"] = function(req)
  return {
    status = 200,
    headers = { ["content-type"] = "text/plain" },
    body = serialize(logs[req.query_string or ""] or {}),
  }
end

-- Echoes every message with its type; records the channel's life.
routes["/echo"] = function(req)
  local record = recorder(req)
  record("handler", req.websocket)
  return ringlet.as_channel(req, {
    on_open = function(ch) record("open", ch:is_websocket()) end,
    on_message = function(ch, message, binary)
      record("message", #message, binary)
      ch:send(message, { binary = binary })
    end,
    on_pong = function(_, payload) record("pong", payload) end,
    on_error = function(_, err) record("error", err) end,
    on_close = function(ch, info)
      record("close", ch:is_open(), info.code, reason(info))
    end,
  })
end

-- Records what the handler saw; selects the "chat" subprotocol when
-- offered; adds headers to the 101.
routes["/info"] = function(req)
  local record = recorder(req)
  local offered = req.headers["sec-websocket-protocol"]
  record("websocket", req.websocket, req.request_method,
    "[" .. tostring(offered) .. "]")
  if not req.websocket then
    return { status = 200, body = "not websocket" }
  end
  local res = ringlet.as_channel(req, {
    on_message = function(ch, message) ch:send(message) end,
  })
  res.headers = res.headers or {}
  res.headers["set-cookie"] = { "a=1; Path=/", "b=2; Path=/" }
  res.headers["x-test"] = "yes"
  for token in (offered or ""):gmatch("[^,%s]+") do
    if token == "chat" then res.headers["sec-websocket-protocol"] = "chat" end
  end
  return res
end

-- Handlers that answer an upgrade request with plain HTTP.
routes["/deny"] = function(req)
  recorder(req)("handler", req.websocket)
  return { status = 403, headers = { ["content-type"] = "text/plain" },
           body = "denied" }
end
routes["/plain"] = function(req)
  recorder(req)("handler", req.websocket)
  return { status = 200, headers = { ["content-type"] = "text/plain" },
           body = "plain" }
end

-- Each text message is a command: the channel methods under test.
routes["/ctl"] = function(req)
  local record = recorder(req)
  local commands = {}
  function commands.text(ch, arg) record("send", ch:send(arg)) end
  function commands.binary(ch, arg)
    record("send", ch:send(arg, { binary = true }))
  end
  function commands.file(ch, arg)
    local name = os.tmpname()
    local f = assert(io.open(name, "wb"))
    f:write(content(tonumber(arg)))
    f:close()
    f = assert(io.open(name, "rb"))
    os.remove(name)
    record("send file", ch:send(f))
  end
  function commands.array(ch)
    record("send array", ch:send({ "one", "two", "three" }))
  end
  function commands.array_binary(ch)
    record("send array", ch:send({ "x", "y" }, { binary = true }))
  end
  function commands.iter(ch)
    local items, i = { "a", "b", "c" }, 0
    record("send iter", ch:send(function()
      i = i + 1
      return items[i]
    end))
  end
  function commands.table(ch)
    local ok, err = pcall(ch.send, ch, { status = 200, body = "x" })
    record("table", ok, type(err))
    ch:send("after table")
  end
  function commands.bad_options(ch)
    local errs = {}
    for _, opts in ipairs({ 42, { close = 1 }, { binary = "yes" },
      { on_success = true }, { colour = true }, { [1] = true } }) do
      local ok, err = pcall(ch.send, ch, "x", opts)
      errs[#errs + 1] = tostring(ok) .. ": " .. tostring(err)
    end
    for _, self in ipairs({ io.stdout, {}, ringlet.as_channel }) do
      local ok, err = pcall(ch.send, self, "x")
      errs[#errs + 1] = tostring(ok) .. ": " .. tostring(err)
    end
    ch:send(table.concat(errs, "\n"))
  end
  function commands.extra_args(ch)
    -- arguments past the options are not callbacks
    record("send", ch:send("extra", nil,
      function() record("4th argument called") end,
      function() record("5th argument called") end))
  end
  function commands.success(ch)
    record("send", ch:send("payload", {
      on_success = function() record("success") end,
      on_error = function(err) record("send error", err) end,
    }))
  end
  function commands.introspect(ch)
    record("introspect", ch:is_websocket(), ch:is_open(),
      ch:originating_request().uri, type(ch:buffered_amount()))
    ch:send("introspected")
  end
  function commands.ping(ch, arg)
    ch:ping(arg)
    ch:send("pinged")
  end
  function commands.close(ch)
    record("close", ch:close())
    record("close again", ch:close())
    record("is_open after close", ch:is_open())
    record("send after close", ch:send("late", {
      on_success = function() record("late success") end,
    }))
  end
  function commands.close_bad_utf8(ch)
    local ok, err = pcall(ch.close, ch, 4000, "bad \xff")
    ch:send(tostring(ok) .. " " .. tostring(err))
  end
  function commands.close_code(ch, arg)
    local code, why = arg:match("^(%d+) ?(.*)$")
    record("close", ch:close(tonumber(code), why))
  end
  return ringlet.as_channel(req, {
    on_open = function(ch) record("open") end,
    on_message = function(ch, message)
      local name, arg = message:match("^(%S+) ?(.*)$")
      local command = commands[name]
      if command then command(ch, arg) else record("unknown", message) end
    end,
    on_pong = function(_, payload) record("pong", payload) end,
    on_error = function(_, err) record("error", err) end,
    on_close = function(ch, info)
      record("on_close", ch:is_open(), info.code, reason(info))
    end,
  })
end

-- The same handler for an HTTP stream and a WebSocket.
routes["/both"] = function(req)
  local record = recorder(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      record("open", ch:is_websocket())
      ch:send("hello")
      ch:send("world")
      ch:close()
    end,
    on_close = function(_, info)
      record("close", info.code, reason(info))
    end,
  })
end

-- Closed when idle for 200 ms.
routes["/idle"] = function(req)
  local record = recorder(req)
  return ringlet.as_channel(req, {
    timeout = 200,
    on_close = function(_, info) record("close", info.code) end,
  })
end

-- Pings every 100 ms; echoes messages.
routes["/pinger"] = function(req)
  local record = recorder(req)
  return ringlet.as_channel(req, {
    ping_interval = 100,
    on_message = function(ch, message, binary)
      ch:send(message, { binary = binary })
    end,
    on_pong = function() record("pong") end,
    on_close = function(_, info) record("close", info.code) end,
  })
end

-- Sends 64 KiB binary messages to a client that does not read.
-- /flood (max_buffered 32 MiB): "go N" sends N of them and records whether
-- bytes were left queued. /flood-cap (max_buffered 1 MiB): "go" sends until
-- send stops returning true (giving up after 256 MiB).
local function flood(req, cap)
  local record = recorder(req)
  local opts = {
    on_message = function(ch, message)
      local n = tonumber(message:match("^go ?(%d*)$"))
      local chunk = content(65536)
      for i = 1, n or 4096 do
        local sent = ch:send(chunk, {
          binary = true,
          on_error = function(err) record("send error", err) end,
        })
        if sent ~= true then
          record("send returned", sent, i)
          return
        end
      end
      if cap then
        record("never refused")
      else
        record("sent", n, ch:buffered_amount() > 0)
      end
    end,
    on_drain = function(ch) record("drain", ch:buffered_amount()) end,
    on_error = function(_, err) record("error", err) end,
    on_close = function(_, info) record("close", info.code) end,
  }
  opts.max_buffered = cap and 1048576 or 32 * 1048576
  return ringlet.as_channel(req, opts)
end
routes["/flood"] = function(req) return flood(req, false) end
routes["/flood-cap"] = function(req) return flood(req, true) end

local function handler(req)
  local route = routes[req.uri]
  if route then return route(req) end
  return { status = 404, body = "no route for " .. req.uri }
end
]]

-- The app returning its handler, or {handler=, options=} given options
-- (Lua source of a table).
local function app_source(options)
  if options then
    return APP .. "return { handler = handler, options = " .. options .. " }\n"
  end
  return APP .. "return handler\n"
end

local tag_count = 0
local function new_tag()
  tag_count = tag_count + 1
  return "t" .. tag_count
end

-- The tag's event log (GET /events?tag).
local events = helper.events

local function count_matching(list, pattern)
  local n = 0
  for _, v in ipairs(list) do
    if v:find(pattern) then n = n + 1 end
  end
  return n
end

-- Asserts that exactly n events (or at least n, when at_least) of log
-- match the Lua pattern; the message shows the log.
local function assert_count(n, log, pattern, at_least)
  local got = count_matching(log, pattern)
  local ok = at_least and got >= n or got == n
  assert(ok, ("%s%d event(s) matching %q expected, %d in the log: %s"):format(
    at_least and "at least " or "", n, pattern, got,
    table.concat(log, " | ")))
end

-- Waits until the tag's log has an event matching the Lua pattern (at most
-- TEST_TIMEOUT), then returns the log read once more (so a second on_close
-- has had a round trip to show). Specs assert on what it returns.
local function wait_event(srv, tag, pattern)
  helper.wait_until(function()
    return count_matching(events(srv, tag), pattern) > 0
  end)
  return events(srv, tag)
end

local sorted = helper.sorted

-- A WebSocket connection that must be accepted (101, right accept key).
local function connect(port, path, extra)
  local sock, res = assert(ws.handshake(port, path, extra))
  assert.equal(101, res.status)
  return sock, res
end

-- The next data message: opcode, payload, and the frames it came in
-- (read_data_frames) or not (read_data, for comparing {opcode, payload}).
-- Anything else fails.
local function read_data_frames(sock)
  local opcode, payload, frames = ws.read_message(sock)
  assert(opcode, "reading a message: " .. tostring(payload))
  assert(opcode == OP.TEXT or opcode == OP.BINARY,
    ("expected a data message, got opcode %d %q"):format(opcode, payload))
  return opcode, payload, frames
end

local function read_data(sock)
  local opcode, payload = read_data_frames(sock)
  return opcode, payload
end

-- The next message or control frame: opcode, payload.
local function read_any(sock)
  local opcode, payload = ws.read_message(sock)
  assert(opcode, "reading a frame: " .. tostring(payload))
  return opcode, payload
end

-- The next frame must be a close frame with this code; returns its reason.
local function expect_close(sock, code)
  local f, err = ws.read_frame(sock)
  assert(f, "reading a close frame: " .. tostring(err))
  assert.is_false(f.masked)
  if f.opcode ~= OP.CLOSE then
    error(("expected close %s, got opcode %d (%d bytes)"):format(
      tostring(code), f.opcode, #f.payload), 2)
  end
  local got, why = ws.close_code(f)
  assert.equal(code, got)
  return why
end

local function assert_tcp_closed(sock)
  assert(ws.tcp_closed(sock), "the server did not close the TCP connection")
end

-- Proves the server still serves: a fresh handshake, an echo, a clean close.
local function assert_serves(port)
  local sock = connect(port, "/echo?serves")
  local ok, err = pcall(function()
    assert(ws.send_text(sock, "still served"))
    assert.same({ OP.TEXT, "still served" }, { read_data(sock) })
    assert(ws.send_close(sock, 1000))
    expect_close(sock, 1000)
    assert_tcp_closed(sock)
  end)
  sock:close()
  assert(ok, err)
end

-- Sends bytes on a fresh /echo connection, expects a close with `code` as
-- the first frame back and the TCP connection closed; on_close fires
-- exactly once; then a second connection is served.
local function assert_fails(srv, bytes, code)
  local tag = new_tag()
  local sock = connect(srv.port, "/echo?" .. tag)
  local ok, err = pcall(function()
    -- The server may close before it read everything: ignore send errors.
    sock:send(type(bytes) == "table" and table.concat(bytes) or bytes)
    expect_close(sock, code)
    assert_tcp_closed(sock)
  end)
  sock:close()
  assert(ok, err)
  assert_count(1, wait_event(srv, tag, "^close "), "^close ")
  assert_serves(srv.port)
end

-- The pid of ringlet itself: helper's srv.pid is timeout(1)'s.
local function ringlet_pid(srv)
  local f = io.open(("/proc/%d/task/%d/children"):format(srv.pid, srv.pid))
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return tonumber(text:match("%d+"))
end

local function vm_rss_kib(pid)
  local f = pid and io.open("/proc/" .. pid .. "/status")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return tonumber(text:match("VmRSS:%s*(%d+)%s*kB"))
end

describe("WebSocket", function()
  local srv
  lazy_setup(function() srv = helper.start(app_source()) end)
  lazy_teardown(function() if srv then helper.assert_clean_stop(srv) end end)

  describe("opening handshake", function()
    it("answers 101 with Upgrade, Connection and the right accept key",
    function()
      local tag = new_tag()
      local sample = "dGhlIHNhbXBsZSBub25jZQ=="
      local sock, res = connect(srv.port, "/echo?" .. tag,
        { ["Sec-WebSocket-Key"] = sample })
      finally(function() sock:close() end)

      -- RFC 6455's own example (section 1.3).
      assert.same({
        101, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "websocket", "upgrade",
        nil, nil, nil,
      }, {
        res.status, res.headers["sec-websocket-accept"],
        res.headers.upgrade:lower(), res.headers.connection:lower(),
        res.headers["content-length"], res.headers["transfer-encoding"],
        res.headers["sec-websocket-protocol"],
      })
      assert(ws.send_text(sock, "hi"))
      assert.same({ OP.TEXT, "hi" }, { read_data(sock) })
      assert.same({ "handler true", "open true", "message 2 false" },
        events(srv, tag))
    end)

    it("sees req.websocket true for an upgrade, false for a plain GET",
    function()
      local tag = new_tag()
      local sock = connect(srv.port, "/info?" .. tag)
      finally(function() sock:close() end)
      local res = assert(helper.request(srv.port, "GET", "/info?" .. tag))
      assert.same({ 200, "not websocket" }, { res.status, res.body })
      assert.same({ "websocket true get [nil]", "websocket false get [nil]" },
        events(srv, tag))
    end)

    it("delivers frames sent in the same packet as the upgrade request",
    function()
      local tag = new_tag()
      local sock, res = assert(ws.handshake(srv.port, "/echo?" .. tag, nil, {
        then_send = ws.frame(OP.TEXT, "early") .. ws.frame(OP.PING, "p"),
      }))
      finally(function() sock:close() end)
      assert.equal(101, res.status)
      -- Control frames may overtake data: the order is not checked.
      local got = {}
      for _ = 1, 2 do
        local opcode, payload = read_any(sock)
        got[#got + 1] = opcode .. " " .. payload
      end
      assert.same({ OP.TEXT .. " early", OP.PONG .. " p" }, sorted(got))
    end)

    local variants = {
      { Connection = "keep-alive, Upgrade" },
      { Connection = "Upgrade,keep-alive" },
      { Connection = "upgrade", Upgrade = "WebSocket" },
      { Connection = "UPGRADE", Upgrade = "WEBSOCKET" },
    }
    for _, extra in ipairs(variants) do
      it(("accepts Connection: %s with Upgrade: %s"):format(extra.Connection,
        extra.Upgrade or "websocket"), function()
        local sock = connect(srv.port, "/echo?" .. new_tag(), extra)
        finally(function() sock:close() end)
        assert(ws.send_text(sock, "ok"))
        assert.same({ OP.TEXT, "ok" }, { read_data(sock) })
      end)
    end

    it("sends the handler's headers with the 101, an array as repeated lines",
    function()
      local sock, res = connect(srv.port, "/info?" .. new_tag())
      finally(function() sock:close() end)
      local cookies = {}
      for _, pair in ipairs(res.header_list) do
        if pair[1] == "set-cookie" then cookies[#cookies + 1] = pair[2] end
      end
      assert.same({ { "a=1; Path=/", "b=2; Path=/" }, "yes" },
        { cookies, res.headers["x-test"] })
      assert(ws.send_text(sock, "after headers"))
      assert.same({ OP.TEXT, "after headers" }, { read_data(sock) })
    end)

    it("selects the subprotocol the handler names from the offered list",
    function()
      local tag = new_tag()
      local sock, res = connect(srv.port, "/info?" .. tag,
        { ["Sec-WebSocket-Protocol"] = "superchat, chat" })
      finally(function() sock:close() end)
      assert.equal("chat", res.headers["sec-websocket-protocol"])
      assert.same({ "websocket true get [superchat, chat]" }, events(srv, tag))
    end)

    for _, version in ipairs({ "8", "12", "14", "abc" }) do
      it("answers Sec-WebSocket-Version: " .. version
        .. " with 426 and Sec-WebSocket-Version: 13, before the handler",
      function()
        local tag = new_tag()
        local sock, res = assert(ws.handshake(srv.port, "/echo?" .. tag,
          { ["Sec-WebSocket-Version"] = version }))
        sock:close()
        assert.same({ 426, "13" },
          { res.status, res.headers["sec-websocket-version"] })
        assert.same({}, events(srv, tag))
        assert_serves(srv.port)
      end)
    end

    -- The contract names 426 for a version that is not 13; a missing one
    -- is a malformed request as much as an unsupported version.
    it("answers a missing Sec-WebSocket-Version with 400 or 426, before the "
      .. "handler", function()
      local tag = new_tag()
      local sock, res = assert(ws.handshake(srv.port, "/echo?" .. tag,
        { ["Sec-WebSocket-Version"] = false }))
      sock:close()
      assert(res.status == 400 or res.status == 426,
        "expected 400 or 426, got " .. res.status)
      assert.same({}, events(srv, tag))
      assert_serves(srv.port)
    end)

    local bad_keys = {
      { "a missing key", false },
      { "an empty key", "" },
      { "a key too short", "abc" },
      { "base64 of 15 bytes", ws.base64(("k"):rep(15)) },
      { "base64 of 17 bytes", ws.base64(("k"):rep(17)) },
      { "unpadded base64 of 16 bytes", "dGhlIHNhbXBsZSBub25jZQ" },
      { "a 24-character key that is not base64", "dGhlIHNhbXBsZSBub25j*Q==" },
    }
    for _, case in ipairs(bad_keys) do
      it("answers 400 to " .. case[1] .. ", before the handler", function()
        local tag = new_tag()
        local sock, res = assert(ws.handshake(srv.port, "/echo?" .. tag,
          { ["Sec-WebSocket-Key"] = case[2] }))
        sock:close()
        assert.equal(400, res.status)
        assert.same({}, events(srv, tag))
        assert_serves(srv.port)
      end)
    end

    it("answers 400 to an upgrade with POST, before the handler", function()
      local tag = new_tag()
      local sock, res = assert(ws.handshake(srv.port, "/echo?" .. tag,
        { ["Content-Length"] = "0" }, { method = "POST" }))
      sock:close()
      assert.equal(400, res.status)
      assert.same({}, events(srv, tag))
      assert_serves(srv.port)
    end)

    local not_upgrades = {
      { "an HTTP/1.0 request", {}, { version = "HTTP/1.0" } },
      { "a request without Connection: upgrade",
        { Connection = "keep-alive" } },
    }
    for _, case in ipairs(not_upgrades) do
      it("does not upgrade " .. case[1], function()
        local tag = new_tag()
        local sock, res = assert(ws.handshake(srv.port, "/info?" .. tag,
          case[2], case[3]))
        sock:close()
        assert.are_not.equal(101, res.status)
        -- If the handler ran, it did not see a WebSocket request.
        assert.equal(0, count_matching(events(srv, tag), "^websocket true"))
        assert_serves(srv.port)
      end)
    end

    for _, case in ipairs({ { "/deny", 403, "denied" },
                            { "/plain", 200, "plain" } }) do
      it("answers with plain HTTP " .. case[2] .. " when the handler returns "
        .. "a plain response to an upgrade", function()
        local tag = new_tag()
        local sock, res = assert(ws.handshake(srv.port, case[1] .. "?" .. tag))
        sock:close()
        assert.same({ case[2], case[3], nil, nil }, {
          res.status, res.body, res.headers["sec-websocket-accept"],
          res.headers.upgrade,
        })
        assert.same({ "handler true" }, events(srv, tag))
        assert_serves(srv.port)
      end)
    end
  end)

  describe("messages", function()
    it("calls on_open, on_message per message and on_close once, in order",
    function()
      local tag = new_tag()
      local sock = connect(srv.port, "/echo?" .. tag)
      finally(function() sock:close() end)
      assert(ws.send_text(sock, "hello"))
      assert.same({ OP.TEXT, "hello" }, { read_data(sock) })
      assert(ws.send_close(sock, 1000, "bye"))
      expect_close(sock, 1000)
      assert_tcp_closed(sock)
      assert.same({
        "handler true", "open true", "message 5 false",
        "close false 1000 [bye]",
      }, wait_event(srv, tag, "^close "))
    end)

    it("passes binary false for text frames and true for binary frames",
    function()
      local tag = new_tag()
      local sock = connect(srv.port, "/echo?" .. tag)
      finally(function() sock:close() end)
      assert(ws.send_text(sock, "text"))
      assert.same({ OP.TEXT, "text" }, { read_data(sock) })
      assert(ws.send_binary(sock, "\0\1\2\255"))
      assert.same({ OP.BINARY, "\0\1\2\255" }, { read_data(sock) })
      assert.same({ "handler true", "open true", "message 4 false",
                    "message 4 true" }, events(srv, tag))
    end)

    it("reassembles a fragmented message", function()
      local tag = new_tag()
      local sock = connect(srv.port, "/echo?" .. tag)
      finally(function() sock:close() end)
      assert(ws.send_fragments(sock, OP.TEXT, { "frag", "men", "ted" }))
      assert.same({ OP.TEXT, "fragmented" }, { read_data(sock) })
      assert(ws.send_fragments(sock, OP.BINARY, { "\1", "", "\2\3" }))
      assert.same({ OP.BINARY, "\1\2\3" }, { read_data(sock) })
      assert.same({ "handler true", "open true", "message 10 false",
                    "message 3 true" }, events(srv, tag))
    end)

    it("keeps a frame split across reads while another connection's frames "
      .. "are read in between", function()
      -- idle WebSockets read into one buffer the loop lends them; what a
      -- read leaves unparsed must move to the connection's own buffer
      local a = connect(srv.port, "/echo?" .. new_tag())
      finally(function() a:close() end)
      local b = connect(srv.port, "/echo?" .. new_tag())
      finally(function() b:close() end)
      local msg = ("a"):rep(200) .. "|end"
      local frame = ws.frame(OP.TEXT, msg)
      for _, cut in ipairs({ 1, 2, 7, #frame - 1 }) do
        assert(a:send(frame:sub(1, cut)))
        socket.sleep(0.05) -- read by the server on its own
        local other = "b" .. cut
        assert(ws.send_text(b, other))
        assert.same({ OP.TEXT, other }, { read_data(b) })
        assert(a:send(frame:sub(cut + 1)))
        assert.same({ OP.TEXT, msg }, { read_data(a) })
      end
    end)

    it("answers a ping between fragments with a pong, then delivers the message",
    function()
      local sock = connect(srv.port, "/echo?" .. new_tag())
      finally(function() sock:close() end)
      assert(sock:send(ws.frame(OP.TEXT, "one ", { fin = false })
        .. ws.frame(OP.PING, "p1")
        .. ws.frame(OP.CONTINUATION, "two ", { fin = false })
        .. ws.frame(OP.PING, "p2")
        .. ws.frame(OP.CONTINUATION, "three")))
      assert.same({ OP.PONG, "p1" }, { read_any(sock) })
      assert.same({ OP.PONG, "p2" }, { read_any(sock) })
      assert.same({ OP.TEXT, "one two three" }, { read_data(sock) })
    end)

    it("answers every ping with a pong carrying its payload", function()
      local sock = connect(srv.port, "/echo?" .. new_tag())
      finally(function() sock:close() end)
      local payloads = { "", "a", "\0\255", ("p"):rep(125) }
      for _, p in ipairs(payloads) do assert(ws.send_ping(sock, p)) end
      for _, p in ipairs(payloads) do
        local opcode, payload, frames = ws.read_message(sock)
        assert.same({ OP.PONG, p, true, false },
          { opcode, payload, frames[1].fin, frames[1].masked })
      end
    end)

    it("ignores an unsolicited pong and stays open", function()
      local tag = new_tag()
      local sock = connect(srv.port, "/echo?" .. tag)
      finally(function() sock:close() end)
      assert(ws.send_pong(sock, "unsolicited"))
      assert(ws.send_text(sock, "still open"))
      assert.same({ OP.TEXT, "still open" }, { read_data(sock) })
      local log = events(srv, tag)
      -- on_pong may see it; nothing else may happen.
      local expected = { "handler true", "open true", "message 10 false" }
      if log[3] == "pong unsolicited" then
        table.insert(expected, 3, "pong unsolicited")
      end
      assert.same(expected, log)
    end)
  end)

  describe("ch:send", function()
    local function ctl(tag)
      return connect(srv.port, "/ctl?" .. (tag or new_tag()))
    end

    it("sends a string as a text frame and with binary=true as a binary frame",
    function()
      local tag = new_tag()
      local sock = ctl(tag)
      finally(function() sock:close() end)
      assert(ws.send_text(sock, "text héllo"))
      local opcode, payload, frames = read_data_frames(sock)
      assert.same({ OP.TEXT, "héllo", 1, false },
        { opcode, payload, #frames, frames[1].masked })
      assert(ws.send_text(sock, "binary bytes"))
      assert.same({ OP.BINARY, "bytes" }, { read_data(sock) })
      assert.same({ "open", "send true", "send true" }, events(srv, tag))
    end)

    it("sends a file in binary messages of at most 16 KiB each (Immutant)",
    function()
      local tag = new_tag()
      local sock = ctl(tag)
      finally(function() sock:close() end)
      assert(ws.send_text(sock, "file 40000"))
      local got = {}
      for _, size in ipairs({ 16384, 16384, 40000 - 2 * 16384 }) do
        local opcode, payload, frames = read_data_frames(sock)
        assert.same({ OP.BINARY, size, 1, true },
          { opcode, #payload, #frames, frames[1].fin })
        got[#got + 1] = payload
      end
      assert(table.concat(got) == content(40000), "file content differs")

      assert(ws.send_text(sock, "file 10"))
      local opcode, payload, frames = read_data_frames(sock)
      assert.same({ OP.BINARY, content(10), 1 }, { opcode, payload, #frames })
      assert.same({ "open", "send file true", "send file true" },
        events(srv, tag))
    end)

    it("sends each item of an array as its own message", function()
      local tag = new_tag()
      local sock = ctl(tag)
      finally(function() sock:close() end)
      assert(ws.send_text(sock, "array"))
      assert.same({ OP.TEXT, "one" }, { read_data(sock) })
      assert.same({ OP.TEXT, "two" }, { read_data(sock) })
      assert.same({ OP.TEXT, "three" }, { read_data(sock) })
      assert(ws.send_text(sock, "array_binary"))
      assert.same({ OP.BINARY, "x" }, { read_data(sock) })
      assert.same({ OP.BINARY, "y" }, { read_data(sock) })
      assert.same({ "open", "send array true", "send array true" },
        events(srv, tag))
    end)

    it("sends each chunk of an iterator as its own message", function()
      local tag = new_tag()
      local sock = ctl(tag)
      finally(function() sock:close() end)
      assert(ws.send_text(sock, "iter"))
      assert.same({ OP.TEXT, "a" }, { read_data(sock) })
      assert.same({ OP.TEXT, "b" }, { read_data(sock) })
      assert.same({ OP.TEXT, "c" }, { read_data(sock) })
      assert.same({ "open", "send iter true" }, events(srv, tag))
    end)

    it("raises an error for a response table, and the channel still works",
    function()
      local tag = new_tag()
      local sock = ctl(tag)
      finally(function() sock:close() end)
      assert(ws.send_text(sock, "table"))
      assert.same({ OP.TEXT, "after table" }, { read_data(sock) })
      assert.same({ "open", "table false string" }, events(srv, tag))
    end)

    it("refuses bad send options with an error naming the option, and a "
      .. "self that is not a channel", function()
      local tag = new_tag()
      local sock = ctl(tag)
      finally(function() sock:close() end)
      assert(ws.send_text(sock, "bad_options"))
      local op, text = read_data(sock)
      assert.equal(OP.TEXT, op)
      local lines = {}
      for line in text:gmatch("[^\n]+") do lines[#lines + 1] = line end
      assert.matches("^false: bad argument #3 to '[^']+' %(table expected, "
        .. "got number%)$", table.remove(lines, 1))
      assert.same({
        "false: send: option 'close' must be a boolean",
        "false: send: option 'binary' must be a boolean",
        "false: send: option 'on_success' must be a function",
        "false: send: unknown option 'colour'",
        "false: send: unknown option '?'",
      }, { table.unpack(lines, 1, 5) })
      -- ch.send called on what is not a channel
      for i, got in ipairs({ "FILE%*", "table", "function" }) do
        assert.matches("^false: bad argument #1 to '[^']+' %(ringlet%.channel "
          .. "expected, got " .. got .. "%)$", lines[5 + i])
      end
      assert.equal(8, #lines)
    end)

    it("returns true and calls on_success once", function()
      local tag = new_tag()
      local sock = ctl(tag)
      finally(function() sock:close() end)
      assert(ws.send_text(sock, "success"))
      assert.same({ OP.TEXT, "payload" }, { read_data(sock) })
      assert.same({ "open", "send true", "success" },
        sorted(wait_event(srv, tag, "^success$")))
    end)

    it("takes no callback from arguments past the options", function()
      local tag = new_tag()
      local sock = ctl(tag)
      finally(function() sock:close() end)
      assert(ws.send_text(sock, "extra_args"))
      assert.same({ OP.TEXT, "extra" }, { read_data(sock) })
      -- a send with on_success after it: its callback comes once the
      -- first send's would have
      assert(ws.send_text(sock, "success"))
      assert.same({ OP.TEXT, "payload" }, { read_data(sock) })
      assert.same({ "open", "send true", "send true", "success" },
        sorted(wait_event(srv, tag, "^success$")))
    end)

    it("knows its request and that it is a WebSocket", function()
      local tag = new_tag()
      local sock = ctl(tag)
      finally(function() sock:close() end)
      assert(ws.send_text(sock, "introspect"))
      assert.same({ OP.TEXT, "introspected" }, { read_data(sock) })
      assert.same({ "open", "introspect true true /ctl number" },
        events(srv, tag))
    end)

    it("sends a ping with ch:ping and passes the pong to on_pong", function()
      local tag = new_tag()
      local sock = ctl(tag)
      finally(function() sock:close() end)
      assert(ws.send_text(sock, "ping hello"))
      assert.same({ OP.PING, "hello" }, { read_any(sock) })
      assert.same({ OP.TEXT, "pinged" }, { read_data(sock) })
      assert(ws.send_pong(sock, "hello"))
      assert.same({ "open", "pong hello" }, wait_event(srv, tag, "^pong"))
    end)
  end)

  describe("UTF-8", function()
    local valid = {
      { "ASCII", { "hello" } },
      { "two-, three- and four-byte characters", { "κόσμε € 𝄞" } },
      { "the boundary code points U+007F to U+10FFFF",
        { "\x7F\xC2\x80\xDF\xBF\xE0\xA0\x80\xEF\xBF\xBF\xF0\x90\x80\x80"
          .. "\xF4\x8F\xBF\xBF" } },
      { "U+D7FF and U+E000, either side of the surrogates",
        { "\xED\x9F\xBF\xEE\x80\x80" } },
      { "a three-byte character split across two fragments",
        { "a\xE2", "\x82\xACb" } },
      { "a four-byte character split across three fragments",
        { "\xF0\x9D", "\x84", "\x9E" } },
      { "a character split around an empty fragment", { "\xC3", "", "\xA9" } },
    }
    for _, case in ipairs(valid) do
      it("accepts " .. case[1], function()
        local sock = connect(srv.port, "/echo?" .. new_tag())
        finally(function() sock:close() end)
        assert(ws.send_fragments(sock, OP.TEXT, case[2]))
        assert.same({ OP.TEXT, table.concat(case[2]) }, { read_data(sock) })
      end)
    end

    it("does not check binary messages", function()
      local sock = connect(srv.port, "/echo?" .. new_tag())
      finally(function() sock:close() end)
      assert(ws.send_binary(sock, "\xC0\x80\xED\xA0\x80\xFF"))
      assert.same({ OP.BINARY, "\xC0\x80\xED\xA0\x80\xFF" }, { read_data(sock) })
    end)

    local invalid = {
      { "an overlong two-byte form (C0 80)", { "\xC0\x80" } },
      { "an overlong three-byte form (E0 80 80)", { "\xE0\x80\x80" } },
      { "an overlong four-byte form (F0 80 80 80)", { "\xF0\x80\x80\x80" } },
      { "a UTF-16 surrogate (ED A0 80)", { "\xED\xA0\x80" } },
      { "a code point above U+10FFFF (F4 90 80 80)", { "\xF4\x90\x80\x80" } },
      { "a lone continuation byte", { "a\x80b" } },
      { "the byte FF", { "\xFF" } },
      { "a sequence truncated at the end (E2 82)", { "ok\xE2\x82" } },
      { "a sequence cut short by ASCII (E2 82 41)", { "\xE2\x82A" } },
      { "an invalid continuation in the next fragment",
        { "a\xE2\x82", "\x28b" } },
      { "a code point above U+10FFFF split across fragments",
        { "\xF4", "\x90\x80\x80" } },
      { "a surrogate split across fragments", { "\xED", "\xA0\x80" } },
      { "a sequence left truncated by the last fragment",
        { "abc\xE2\x82", "" } },
    }
    for _, case in ipairs(invalid) do
      it("closes with 1007 for " .. case[1], function()
        local bytes = {}
        for i, part in ipairs(case[2]) do
          bytes[i] = ws.frame(i == 1 and OP.TEXT or OP.CONTINUATION, part,
            { fin = i == #case[2] })
        end
        assert_fails(srv, bytes, 1007)
      end)
    end
  end)

  describe("protocol errors", function()
    local function f(opcode, payload, opts)
      return function() return ws.frame(opcode, payload, opts) end
    end
    local function close_with(code)
      return f(OP.CLOSE, string.pack(">I2", code) .. "r")
    end
    local cases = {
      { "RSV1 set", f(OP.TEXT, "x", { rsv = 4 }) },
      { "RSV2 set", f(OP.TEXT, "x", { rsv = 2 }) },
      { "RSV3 set", f(OP.BINARY, "x", { rsv = 1 }) },
      { "RSV1 set on a ping", f(OP.PING, "x", { rsv = 4 }) },
      { "a continuation frame with no message started", f(OP.CONTINUATION, "x") },
      { "a text frame inside a fragmented message", function()
        return ws.frame(OP.TEXT, "a", { fin = false }) .. ws.frame(OP.TEXT, "b")
      end },
      { "a binary frame inside a fragmented message", function()
        return ws.frame(OP.BINARY, "a", { fin = false })
          .. ws.frame(OP.BINARY, "b")
      end },
      { "a ping with a 126-byte payload", f(OP.PING, ("p"):rep(126)) },
      { "a close with a 126-byte payload",
        f(OP.CLOSE, string.pack(">I2", 1000) .. ("r"):rep(124)) },
      { "a fragmented ping", function()
        return ws.frame(OP.PING, "p", { fin = false })
          .. ws.frame(OP.CONTINUATION, "q")
      end },
      { "an unmasked frame", f(OP.TEXT, "x", { mask = false }) },
      { "a close payload of 1 byte", f(OP.CLOSE, "\3") },
      { "a 64-bit length with its top bit set",
        f(OP.BINARY, "", { len_override = math.mininteger }) },
      { "a 16-bit length under 126", f(OP.TEXT, "short", { len_form = 16 }) },
      { "a 64-bit length under 65536",
        f(OP.BINARY, ("x"):rep(200), { len_form = 64 }) },
    }
    for _, opcode in ipairs({ 3, 4, 5, 6, 7, 11, 12, 13, 14, 15 }) do
      cases[#cases + 1] = { "reserved opcode " .. opcode, f(opcode, "") }
    end
    cases[#cases + 1] = { "reserved opcode 3 inside a fragmented message",
      function()
        return ws.frame(OP.TEXT, "a", { fin = false }) .. ws.frame(3, "")
      end }
    for _, code in ipairs({ 0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000,
                            2999, 5000, 65535 }) do
      cases[#cases + 1] = { "a close with the invalid code " .. code,
        close_with(code) }
    end
    for _, case in ipairs(cases) do
      it("closes with 1002 after " .. case[1], function()
        assert_fails(srv, case[2](), 1002)
      end)
    end
  end)

  describe("message sizes", function()
    local function form(n)
      if n < 126 then return 0 elseif n < 65536 then return 2 end
      return 8
    end
    for _, n in ipairs({ 0, 1, 125, 126, 127, 65535, 65536, 4 * MiB }) do
      it("echoes a binary message of " .. n .. " bytes", function()
        local tag = new_tag()
        local sock = connect(srv.port, "/echo?" .. tag)
        finally(function() sock:close() end)
        local data = content(n)
        assert(ws.send_binary(sock, data))
        local opcode, payload, frames = read_data_frames(sock)
        assert.same({ OP.BINARY, n }, { opcode, #payload })
        assert(payload == data, "echoed payload differs")
        for _, fr in ipairs(frames) do
          assert.equal(form(fr.length), fr.len_bytes)
        end
        assert.same({ "handler true", "open true", "message " .. n .. " true" },
          events(srv, tag))
      end)
    end

    it("echoes a 4 MiB text message (max_ws exactly)", function()
      local sock = connect(srv.port, "/echo?" .. new_tag())
      finally(function() sock:close() end)
      local data = ("0123456789abcdef"):rep(4 * MiB // 16)
      assert(ws.send_text(sock, data))
      local opcode, payload = read_data(sock)
      assert.same({ OP.TEXT, 4 * MiB }, { opcode, #payload })
      assert(payload == data, "echoed payload differs")
    end)

    it("echoes a 4 MiB message sent in four fragments", function()
      local sock = connect(srv.port, "/echo?" .. new_tag())
      finally(function() sock:close() end)
      local data = content(4 * MiB)
      local parts = {}
      for i = 0, 3 do parts[#parts + 1] = data:sub(i * MiB + 1, (i + 1) * MiB) end
      assert(ws.send_fragments(sock, OP.BINARY, parts))
      local opcode, payload = read_data(sock)
      assert.same({ OP.BINARY, 4 * MiB }, { opcode, #payload })
      assert(payload == data, "echoed payload differs")
    end)

    it("closes with 1009 for a message of 4 MiB + 1 bytes", function()
      assert_fails(srv, ws.frame(OP.BINARY, content(4 * MiB + 1)), 1009)
    end)

    it("closes with 1009 for fragments adding up to 4 MiB + 1 bytes",
    function()
      local half = content(2 * MiB)
      assert_fails(srv, {
        ws.frame(OP.BINARY, half, { fin = false }),
        ws.frame(OP.CONTINUATION, half .. "x"),
      }, 1009)
    end)
  end)

  describe("closing", function()
    it("ch:close() sends close 1000; on_close sees the code the peer echoed",
    function()
      local tag = new_tag()
      local sock = connect(srv.port, "/ctl?" .. tag)
      finally(function() sock:close() end)
      assert(ws.send_text(sock, "close"))
      expect_close(sock, 1000)
      assert(ws.send_close(sock, 1000))
      assert_tcp_closed(sock)
      local log = wait_event(srv, tag, "^on_close ")
      assert_count(1, log, "^on_close ")
      assert_count(1, log, "^on_close false 1000 %[")
      local rest = {}
      for _, v in ipairs(log) do
        if not v:find("^on_close ") then rest[#rest + 1] = v end
      end
      -- No "late success": on_success is not called for a refused send.
      assert.same({ "open", "close true", "close again false",
                    "is_open after close false", "send after close nil" },
        rest)
    end)

    it("ch:close(code, reason) sends them", function()
      local tag = new_tag()
      local sock = connect(srv.port, "/ctl?" .. tag)
      finally(function() sock:close() end)
      assert(ws.send_text(sock, "close_code 4000 going away"))
      assert.equal("going away", expect_close(sock, 4000))
      -- The peer may answer with another code: on_close reports the peer's.
      assert(ws.send_close(sock, 4001, "ack"))
      assert_tcp_closed(sock)
      local log = wait_event(srv, tag, "^on_close ")
      assert_count(1, log, "^on_close ")
      assert_count(1, log, "^on_close false 4001 %[")
      assert_count(1, log, "^close true$")
    end)

    it("ch:close refuses a reason that is not UTF-8 (RFC 6455 5.5.1) and "
      .. "the socket stays open", function()
      local tag = new_tag()
      local sock = connect(srv.port, "/ctl?" .. tag)
      finally(function() sock:close() end)
      assert(ws.send_text(sock, "close_bad_utf8"))
      local fr = assert(ws.read_frame(sock))
      assert.equal(OP.TEXT, fr.opcode)
      assert.truthy(fr.payload:find("^false .*a close reason must be UTF%-8"),
        fr.payload)
      assert(ws.send_text(sock, "close_code 4000 fine"))
      assert.equal("fine", expect_close(sock, 4000))
    end)

    local valid_codes = { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                          1011, 1012, 1013, 1014, 3000, 4999 }
    for _, code in ipairs(valid_codes) do
      it("answers a client close " .. code .. " with a close " .. code
        .. " and closes TCP; on_close sees it once", function()
        local tag = new_tag()
        local sock = connect(srv.port, "/echo?" .. tag)
        finally(function() sock:close() end)
        assert(ws.send_close(sock, code, "bye"))
        expect_close(sock, code)
        assert_tcp_closed(sock)
        assert.same({ "handler true", "open true",
                      "close false " .. code .. " [bye]" },
          wait_event(srv, tag, "^close "))
      end)
    end

    it("answers a close with no code; on_close sees 1005 and \"\"", function()
      local tag = new_tag()
      local sock = connect(srv.port, "/echo?" .. tag)
      finally(function() sock:close() end)
      assert(ws.send_close(sock))
      local fr = assert(ws.read_frame(sock))
      assert.same({ OP.CLOSE, false }, { fr.opcode, fr.masked })
      local code = ws.close_code(fr)
      assert(code == nil or code == 1000,
        "a close with no code answered with " .. tostring(code))
      assert_tcp_closed(sock)
      assert.same({ "handler true", "open true", "close false 1005 []" },
        wait_event(srv, tag, "^close "))
    end)

    it("stops delivering messages after the client's close", function()
      local tag = new_tag()
      local sock = connect(srv.port, "/echo?" .. tag)
      finally(function() sock:close() end)
      assert(sock:send(ws.frame(OP.CLOSE, string.pack(">I2", 1000))
        .. ws.frame(OP.TEXT, "too late")))
      expect_close(sock, 1000)
      assert_tcp_closed(sock)
      assert.same({ "handler true", "open true", "close false 1000 []" },
        wait_event(srv, tag, "^close "))
    end)

    for _, how in ipairs({ "closes", "resets" }) do
      it("reports 1006 once when the client " .. how
        .. " TCP without a close frame", function()
        local tag = new_tag()
        local sock = connect(srv.port, "/echo?" .. tag)
        assert(ws.send_text(sock, "x"))
        assert.same({ OP.TEXT, "x" }, { read_data(sock) })
        if how == "resets" then
          assert(sock:setoption("linger", { on = true, timeout = 0 }))
        end
        sock:close()
        local log = wait_event(srv, tag, "^close ")
        assert_count(1, log, "^close ")
        assert_count(1, log, "^close false 1006 %[")
        assert_serves(srv.port)
      end)
    end
  end)

  describe("timeout and ping_interval", function()
    it("closes a WebSocket idle longer than timeout; on_close fires",
    function()
      local tag = new_tag()
      local sock = connect(srv.port, "/idle?" .. tag)
      finally(function() sock:close() end)
      local fr = assert(ws.read_frame(sock))
      assert.equal(OP.CLOSE, fr.opcode)
      local code = ws.close_code(fr)
      assert(ws.send_close(sock, code))
      assert_tcp_closed(sock)
      assert.same({ "close " .. tostring(code or 1005) },
        wait_event(srv, tag, "^close "))
    end)

    it("pings; a client that answers stays open, one that stops is closed "
      .. "with 1006", function()
      local tag = new_tag()
      local sock = connect(srv.port, "/pinger?" .. tag)
      finally(function() sock:close() end)
      local pings = 0
      while pings < 3 do
        local opcode, payload = ws.read_message(sock)
        assert.equal(OP.PING, opcode)
        pings = pings + 1
        assert(ws.send_pong(sock, payload))
      end
      assert(ws.send_text(sock, "still open"))
      while true do
        local opcode, payload = ws.read_message(sock)
        assert(opcode, payload)
        if opcode == OP.PING then
          assert(ws.send_pong(sock, payload))
        else
          assert.same({ OP.TEXT, "still open" }, { opcode, payload })
          break
        end
      end
      -- Now stop answering.
      assert_tcp_closed(sock)
      local log = wait_event(srv, tag, "^close ")
      assert_count(1, log, "^close ")
      assert_count(1, log, "^close 1006$")
      assert_count(3, log, "^pong$", true)
    end)
  end)

  describe("one handler for HTTP streams and WebSockets", function()
    it("streams over HTTP and sends messages over WebSocket", function()
      local http_tag, ws_tag = new_tag(), new_tag()
      local res = assert(helper.request(srv.port, "GET", "/both?" .. http_tag))
      assert.same({ 200, { "hello", "world" } }, { res.status, res.chunks })

      local sock = connect(srv.port, "/both?" .. ws_tag)
      finally(function() sock:close() end)
      assert.same({ OP.TEXT, "hello" }, { read_data(sock) })
      assert.same({ OP.TEXT, "world" }, { read_data(sock) })
      expect_close(sock, 1000)
      assert(ws.send_close(sock, 1000))
      assert_tcp_closed(sock)

      assert.same({ "open false", "close nil [nil]" },
        wait_event(srv, http_tag, "^close "))
      local log = wait_event(srv, ws_tag, "^close ")
      assert.equal("open true", log[1])
      assert_count(1, log, "^close ")
      assert_count(1, log, "^close 1000 %[")
      assert.equal(2, #log)
    end)
  end)
end)

describe("WebSocket backpressure", function()
  local srv
  lazy_setup(function() srv = helper.start(app_source()) end)
  lazy_teardown(function() if srv then helper.assert_clean_stop(srv) end end)

  -- The client reads nothing until the server has sent n messages, then
  -- reads them all; returns the log once on_drain has had time to fire.
  local function flood_and_read(n)
    local tag = new_tag()
    local sock = connect(srv.port, "/flood?" .. tag)
    finally(function() sock:close() end)
    assert(ws.send_text(sock, "go " .. n))
    local log = wait_event(srv, tag, "^sent ")
    assert_count(1, log, "^sent " .. n .. " ")
    local chunk = content(65536)
    for i = 1, n do
      local opcode, payload = read_data(sock)
      assert(opcode == OP.BINARY and payload == chunk, "message " .. i)
    end
    return wait_event(srv, tag, "^drain")
  end

  it("calls on_drain with buffered_amount 0 once a send's queued bytes are "
    .. "written", function()
    local log = flood_and_read(1)
    -- A send written at once queues nothing, and no drain is owed.
    if log[1] == "sent 1 false" then
      assert.same({ "sent 1 false" }, log)
    else
      assert.same({ "sent 1 true", "drain 0" }, log)
    end
  end)

  it("counts 16 MiB sent to a client not reading in buffered_amount, and "
    .. "calls on_drain once it read them", function()
    assert.same({ "sent 256 true", "drain 0" }, flood_and_read(256))
  end)

  it("refuses sends past max_buffered with \"send buffer full\", and memory "
    .. "stays bounded", function()
    local tag = new_tag()
    local pid = ringlet_pid(srv)
    local sock = connect(srv.port, "/flood-cap?" .. tag)
    finally(function() sock:close() end)
    local before = vm_rss_kib(pid)
    assert(ws.send_text(sock, "go"))
    local log = wait_event(srv, tag, "^send returned ")
    local after = vm_rss_kib(pid)
    assert_count(0, log, "^never refused")
    assert_count(1, log, "^send returned false %d+$")
    assert_count(1, log, "^error .*send buffer full", true)
    -- The refused send's own on_error hears of it too.
    assert_count(1, log, "^send error .*send buffer full")
    if before and after then
      assert((after - before) < 64 * 1024,
        ("VmRSS grew by %d KiB"):format(after - before))
    end
    -- Others are served meanwhile.
    assert_serves(srv.port)
    -- The stalled client leaves; the channel closes once.
    sock:setoption("linger", { on = true, timeout = 0 })
    sock:close()
    assert_count(1, wait_event(srv, tag, "^close "), "^close ")
  end)
end)

describe("WebSocket with max_ws = 1024", function()
  local srv
  lazy_setup(function() srv = helper.start(app_source("{ max_ws = 1024 }")) end)
  lazy_teardown(function() if srv then helper.assert_clean_stop(srv) end end)

  it("echoes a message of exactly 1024 bytes, whole or in fragments",
  function()
    local sock = connect(srv.port, "/echo?" .. new_tag())
    finally(function() sock:close() end)
    local data = content(1024)
    assert(ws.send_binary(sock, data))
    assert.same({ OP.BINARY, data }, { read_data(sock) })
    assert(ws.send_fragments(sock, OP.BINARY,
      { data:sub(1, 512), data:sub(513) }))
    assert.same({ OP.BINARY, data }, { read_data(sock) })
    -- Control frames are not messages: a 125-byte ping is answered.
    assert(ws.send_ping(sock, ("p"):rep(125)))
    assert.same({ OP.PONG, ("p"):rep(125) }, { read_any(sock) })
  end)

  it("closes with 1009 for a 1025-byte message", function()
    assert_fails(srv, ws.frame(OP.BINARY, content(1025)), 1009)
  end)

  it("closes with 1009 for a 1025-byte text message", function()
    assert_fails(srv, ws.frame(OP.TEXT, ("x"):rep(1025)), 1009)
  end)

  it("closes with 1009 for fragments adding up to 1025 bytes", function()
    assert_fails(srv, {
      ws.frame(OP.BINARY, content(512), { fin = false }),
      ws.frame(OP.CONTINUATION, content(513)),
    }, 1009)
  end)
end)
