-- Immutant's immutant.web.async, sentence by sentence, in ringlet's Lua API;
-- and streamed sends (ch:send(file or iterator)).
--
-- ringlet.as_channel descends from Immutant's `as-channel` and ch:send from
-- its `send!` (the later form, with :on-success and :on-error). Each `it`
-- below quotes, in its describe or its name, the docstring sentence it
-- checks, as DESIGN.md and README.md carry it over into Lua: on_open once
-- when the channel can send; on_error for any error, on_close following
-- when the error closes the channel; on_close exactly once for any close,
-- the channel already closed, code and reason nil for HTTP streams;
-- on_message with text or binary; send's message types, a response table
-- on the first HTTP send only, close = true, on_success, on_error, nil when
-- closed; originating_request, is_open, close.
--
-- Then the streamed sends: a file or an iterator given to ch:send goes out
-- in pieces of at most 16 KiB (one chunk each on an HTTP stream, one
-- message each on a WebSocket), read only while less than 64 KiB is queued,
-- with the sends made meanwhile waiting their turn.
--
-- Every server runs in a child process (helper.start); HTTP clients are
-- LuaSocket and curl, WebSocket clients Node's `ws` (spec/node/ws_script.js
-- through helper.ws_session). Apps record events in a log that GET /events
-- returns (helper.EVENT_LOG); GET /stats?NAME returns what a probe of the
-- app reports (buffered amounts, pieces read). Waits are bounded by
-- helper.TEST_TIMEOUT.

local helper = require "helper"
local socket = require "socket"

local it_ws = helper.it_needs("ws", it, pending)

local KiB = 1024
local PIECE = 16 * KiB -- the most a streamed send reads at a time
local HWM = 64 * KiB   -- a source is read only while less is queued
-- The most a stalled stream may hold queued: the high-water mark, one piece
-- and that piece's framing (a chunk's size line and CRLFs, a frame header).
local STALL_MAX = HWM + PIECE + 16

---------------------------------------------------------------------------
-- Fixture files, made once for the whole file, removed by the teardown.

local FIX = helper.marker_path()
assert(os.execute("mkdir " .. helper.quote(FIX)) == true, "mkdir " .. FIX)

local FIXTURE_SIZES = {
  empty = 0,
  ["16k"] = PIECE,
  ["16k1"] = PIECE + 1,
  ["1m"] = 1000000,           -- 61 whole pieces and 576 bytes
  big = 12 * 1024 * 1024,     -- more than the kernel's socket buffers take
}

local fixture_bytes = {}
do
  local random = assert(io.open("/dev/urandom", "rb"))
  for name, size in pairs(FIXTURE_SIZES) do
    local bytes = size > 0 and random:read(size) or ""
    assert(#bytes == size)
    local f = assert(io.open(FIX .. "/" .. name, "wb"))
    f:write(bytes)
    f:close()
    fixture_bytes[name] = bytes
  end
  random:close()
end

-- piece(i, n): n bytes that name i, different for every i (the app and the
-- specs build the same ones).
local PIECE_SOURCE = [[
local function piece(i, n)
  local tag = ("<%d>"):format(i)
  return tag:rep(n // #tag + 1):sub(1, n)
end
]]
local piece = assert(load(PIECE_SOURCE .. "return piece"))()

---------------------------------------------------------------------------
-- The apps.

-- What every app shares: helper.EVENT_LOG (record(...), routes, GET
-- /events); short(err) is an error's message without its position and
-- traceback; fixture(name) opens a fixture file; probes[name] is a
-- function whose table GET /stats?name returns.
local PRELUDE = [[
local ringlet = require "ringlet"
local FIX = ]] .. ("%q"):format(FIX) .. "\n" .. helper.EVENT_LOG
  .. PIECE_SOURCE .. [[
local function short(err)
  return (tostring(err):match("^[^\n]*"):gsub("^[^:]*:%d+: ", ""))
end
local function fixture(name)
  return assert(io.open(FIX .. "/" .. name, "rb"))
end
local probes = {}
routes["/plain"] = function()
  return { status = 200, headers = { ["content-type"] = "text/plain" },
           body = "plain" }
end
routes["/stats"] = function(req)
  local probe = probes[req.query_string or ""]
  return { status = 200, headers = { ["content-type"] = "text/plain" },
           body = serialize(probe and probe() or {}) }
end
]]

local function start(routes_source)
  return helper.start(PRELUDE .. routes_source .. "\n" .. helper.DISPATCH)
end

-- Starts an app; the `it` gets the server, stopped when the `it` ends.
local function serve(routes_source)
  local defer = helper.cleanup(finally)
  local srv = start(routes_source)
  srv.socks = {}
  defer(function()
    for _, sock in ipairs(srv.socks) do sock:close() end
    srv:stop()
  end)
  return srv
end

-- A LuaSocket connection to srv, closed when the `it` ends.
local function connect(srv)
  local sock = assert(helper.connect(srv.port))
  srv.socks[#srv.socks + 1] = sock
  return sock
end

-- Closes the spec's connections (a server gives open ones a second to
-- finish), stops srv and checks it exited cleanly with no error logged.
local function clean_stop(srv)
  for _, sock in ipairs(srv.socks) do sock:close() end
  helper.assert_clean_stop(srv)
end

local function url(srv, path)
  return "http://127.0.0.1:" .. srv.port .. path
end

local function count(list, item)
  local n = 0
  for _, v in ipairs(list) do
    if v == item then n = n + 1 end
  end
  return n
end

local function index_of(list, item)
  for i, v in ipairs(list) do
    if v == item then return i end
  end
  return nil
end

local sorted = helper.sorted

local function stats(srv, name)
  local res = assert(helper.request(srv.port, "GET", "/stats?" .. name))
  return helper.decode(res.body)
end

-- Polls /stats?name until three answers 100 ms apart agree on `key` and
-- the buffered amount, `key` being non-zero: the stream has stopped reading
-- its source. Returns the last answer.
local function settle(srv, name, key)
  local last, same = nil, 0
  local done = helper.wait_until(function()
    local s = stats(srv, name)
    if last ~= nil and s[key] ~= nil and s[key] ~= 0 and s[key] == last[key]
        and s.buffered == last.buffered then
      same = same + 1
    else
      same = 0
    end
    last = s
    if same == 2 then return true end
    socket.sleep(0.1)
    return false
  end)
  assert(done, "the stream never settled: " .. tostring(last and last[key]))
  return last
end

local function get(path, version)
  return helper.request_bytes("GET", path, { host = "127.0.0.1" }, nil,
    version)
end

-- The sizes of a list of strings.
local function sizes(list)
  local out = {}
  for i, s in ipairs(list) do out[i] = #s end
  return out
end

local function pieces(from, to, n)
  local out = {}
  for i = from, to do out[#out + 1] = piece(i, n) end
  return out
end

local function tmpfile_read(name)
  local text = helper.read_file(name)
  os.remove(name)
  return text
end

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

-- A session's messages: "T:text", "B:hex", or "T#len" / "B#len" for ones
-- longer than 256 bytes.
local function messages(rec)
  local list = {}
  for _, e in ipairs(rec.events) do
    if e.type == "message" then
      local kind = e.binary and "B" or "T"
      list[#list + 1] = e.len > 256 and (kind .. "#" .. e.len)
        or (kind .. ":" .. (e.binary and hex(e.data) or e.data))
    end
  end
  return list
end

local function fetched(rec)
  return helper.ws_data(rec, "fetch")
end

describe("ringlet's Immutant-style channels", function()
  teardown(function()
    for name in pairs(FIXTURE_SIZES) do os.remove(FIX .. "/" .. name) end
    os.remove(FIX)
  end)

  -------------------------------------------------------------------------
  describe("as-channel: \"Converts the current ring request in to an "
    .. "asynchronous channel\"", function()

    local BARE = [[
routes["/bare"] = function(req)
  local res = ringlet.as_channel(req, {
    on_open = function(ch) ch:send("bare", { close = true }) end,
  })
  record("response", res.status, type(res.headers),
    tostring(res.body):match("^ringlet%.channel %((%a+)"))
  return { body = res.body }
end
]]

    it_ws("returns a response table whose body is the channel, and returning "
      .. "just that body is enough (\"at least the :body of which must be "
      .. "returned\")", function()
      local srv = serve(BARE)
      local out, code, err = helper.curl("-sS", "-D", "-", url(srv, "/bare"))
      assert.same({ 0, "" }, { code, err })
      assert.truthy(out:match("^HTTP/1%.1 200"), out)
      assert.truthy(out:lower():match("content%-length: 4\r\n"), out)
      assert.truthy(out:match("\r\n\r\nbare$"), out)

      local rec = helper.ws_session(srv.port, "/bare")
      assert.same({ true, { "T:bare" }, 1000 },
        { rec.opened, messages(rec), rec.close_code })
      assert.same({ "response 200 table http", "response 101 table websocket" },
        helper.events(srv))
      clean_stop(srv)
    end)

    it_ws("makes a WebSocket channel for an upgrade request and an HTTP "
      .. "stream otherwise (\"The type of channel created depends on the "
      .. "request\")", function()
      local srv = serve([[
routes["/kind"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      ch:send((ch:is_websocket() and "websocket" or "http") .. " "
        .. tostring(req.websocket == true), { close = true })
    end,
  })
end
]])
      local out, code = helper.curl(url(srv, "/kind"))
      assert.same({ "http false", 0 }, { out, code })
      local rec = helper.ws_session(srv.port, "/kind")
      assert.same({ "T:websocket true" }, messages(rec))
      clean_stop(srv)
    end)

    describe("on_open: \"called when the channel is available for sending. "
      .. "Will only be invoked once.\"", function()
      it("HTTP stream: on_open's sends succeed, and it runs once", function()
        local srv = serve([[
routes["/open"] = function(req)
  local res = ringlet.as_channel(req, {
    on_open = function(ch)
      record("open", ch:is_open())
      record("send", ch:send("one", {
        on_success = function() record("one written") end,
      }))
      ringlet.timer(10, function()
        ch:send("two")
        ch:send("three", { close = true })
      end)
    end,
    on_close = function() record("close") end,
  })
  record("handler returns")
  return res
end
]])
        local res = assert(helper.request(srv.port, "GET", "/open"))
        assert.same({ 200, { "one", "two", "three" } },
          { res.status, res.chunks })
        local log = helper.wait_events(srv, "close", "one written")
        assert.same({ "close", "handler returns", "one written",
          "open true", "send true" }, sorted(log))
        assert.same({ "handler returns", "open true" }, { log[1], log[2] })
        clean_stop(srv)
      end)

      it_ws("WebSocket: on_open's send arrives first, and on_open runs once "
        .. "however many messages come", function()
        local srv = serve([[
routes["/open"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      record("open", ch:is_open())
      record("send", ch:send("welcome", {
        on_success = function() record("welcome written") end,
      }))
    end,
    on_message = function(ch, msg) ch:send("echo " .. msg) end,
    on_close = function(_, info) record("close", info.code) end,
  })
end
]])
        local rec = helper.ws_session(srv.port, "/open", [[
          [{"send": "a"}, {"send": "b"}, {"send": "c"}, {"until": 4},
           {"close": 1000}]
        ]])
        assert.same({ "T:welcome", "T:echo a", "T:echo b", "T:echo c" },
          messages(rec))
        local log = helper.wait_events(srv, "close 1000")
        assert.same({ "close 1000", "open true", "send true",
          "welcome written" }, sorted(log))
        clean_stop(srv)
      end)
    end)

    describe("on_error: \"Called for any error that occurs in relation to "
      .. "the channel. If the error requires the channel to be closed, "
      .. ":on-close will also be invoked.\"", function()
      local ERRORS = [[
routes["/errors"] = function(req)
  return ringlet.as_channel(req, {
    max_buffered = 4096, -- a send after 5000 bytes in one turn finds it full
    on_open = function(ch)
      ch:send("hi", { on_success = function() error("success boom") end })
      if not ch:is_websocket() then
        ringlet.timer(30, function() ch:close() end)
      end
      error("open boom")
    end,
    on_message = function(ch, msg)
      if msg == "raise" then error("message boom") end
      if msg == "full" then
        ch:send(("a"):rep(5000))
        record("full send", ch:send("b", { on_error = function(e)
          record("send on_error", short(e))
          error("send on_error boom")
        end }))
        return
      end
      ch:send("echo " .. msg)
    end,
    on_error = function(ch, err)
      record("on_error", ch:is_open(), short(err))
    end,
    on_close = function(_, info)
      record("close", info.code)
      error("close boom")
    end,
  })
end
]]

      it_ws("WebSocket: errors raised by on_open, on_message, a send's "
        .. "on_success and on_error and on_close, and a refused send, all "
        .. "reach on_error; none of them closes the channel", function()
        local srv = serve(ERRORS)
        local rec = helper.ws_session(srv.port, "/errors", [[
          [{"until": 1}, {"send": "raise"}, {"send": "full"}, {"until": 2},
           {"send": "still here"}, {"until": 3}, {"close": 1000}]
        ]])
        assert.same({ "T:hi", "T#5000", "T:echo still here" }, messages(rec))
        assert.same({ 1000, nil }, { rec.close_code, rec.error })
        local full = "send buffer full: the peer is not reading "
          .. "(max_buffered reached)"
        local log = helper.wait_events(srv, "close 1000", "on_error false close boom")
        assert.same(sorted({
          "on_error true open boom",
          "on_error true success boom",
          "on_error true message boom",
          "full send false",
          "send on_error " .. full,
          "on_error true " .. full,
          "on_error true send on_error boom",
          "close 1000",
          "on_error false close boom",
        }), sorted(log))
        assert.equal(1, count(log, "close 1000"))
        clean_stop(srv)
      end)

      it("HTTP stream: an error raised by on_open reaches on_error and the "
        .. "stream goes on", function()
        local srv = serve(ERRORS)
        local res = assert(helper.request(srv.port, "GET", "/errors"))
        assert.same({ 200, { "hi" } }, { res.status, res.chunks })
        local log = helper.wait_events(srv, "close nil", "on_error false close boom")
        assert.same(sorted({
          "on_error true open boom", "on_error true success boom",
          "close nil", "on_error false close boom",
        }), sorted(log))
        clean_stop(srv)
      end)

      it("HTTP stream: an error that ends the stream (its iterator raises) "
        .. "reaches on_error, then on_close follows", function()
        local srv = serve([[
routes["/broken"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      local n = 0
      ch:send(function()
        n = n + 1
        if n == 3 then error("iterator boom") end
        return "part" .. n
      end)
    end,
    on_error = function(ch, err) record("on_error", short(err)) end,
    on_close = function(ch, info)
      record("close", ch:is_open(), info.code, info.reason)
    end,
  })
end
]])
        local out, code = helper.curl("--raw", url(srv, "/broken"))
        assert.same({ "5\r\npart1\r\n5\r\npart2\r\n", 18 }, { out, code })
        local log = helper.wait_events(srv, "close false nil nil")
        assert.same({ "on_error iterator boom", "close false nil nil" }, log)
        clean_stop(srv)
      end)

      it_ws("WebSocket: a protocol error from the peer (invalid UTF-8 in a "
        .. "text message) reaches on_error, then on_close follows with 1007",
        function()
        local srv = serve([[
routes["/utf8"] = function(req)
  return ringlet.as_channel(req, {
    on_message = function(ch, msg) ch:send(msg) end,
    on_error = function(ch, err) record("on_error", type(err)) end,
    on_close = function(ch, info) record("close", info.code) end,
  })
end
]])
        local rec = helper.ws_session(srv.port, "/utf8", [[
          [{"send": "fine"}, {"until": 1}, {"text_hex": "c328"}]
        ]])
        assert.same({ { "T:fine" }, 1007 }, { messages(rec), rec.close_code })
        local log = helper.wait_events(srv, "close 1007")
        assert.same({ "on_error string", "close 1007" }, log)
        clean_stop(srv)
      end)
    end)

    describe("on_close: \"called for *any* close, including a call to "
      .. "[[close]], but will only be invoked once. `ch` will already be "
      .. "closed by the time this is invoked.\" \"Both will be nil for "
      .. "HTTP streams.\"", function()
      local HTTP_CLOSES = [[
local function channel_opts(extra)
  local opts = {
    on_close = function(ch, info)
      record("close", ch:is_open(), info.code, info.reason, ch:close(),
        ch:send("late", { on_success = function() record("late") end }))
    end,
  }
  for k, v in pairs(extra) do opts[k] = v end
  return opts
end
routes["/close-call"] = function(req)
  return ringlet.as_channel(req, channel_opts({
    on_open = function(ch)
      ch:send("x")
      ringlet.timer(10, function() record("close()", ch:close()) end)
    end,
  }))
end
routes["/close-send"] = function(req)
  return ringlet.as_channel(req, channel_opts({
    on_open = function(ch) ch:send("x", { close = true }) end,
  }))
end
routes["/close-timeout"] = function(req)
  return ringlet.as_channel(req, channel_opts({
    timeout = 50,
    on_open = function(ch) ch:send("x") end,
  }))
end
routes["/close-client"] = function(req)
  return ringlet.as_channel(req, channel_opts({
    on_open = function(ch) ch:send("x") end,
  }))
end
]]
      local CLOSED = "close false nil nil false nil"

      for _, case in ipairs({
        { "a call to ch:close()", "/close-call" },
        { "a send with close = true", "/close-send" },
        { "the timeout option", "/close-timeout" },
      }) do
        it("HTTP stream, closed by " .. case[1], function()
          local srv = serve(HTTP_CLOSES)
          local res = assert(helper.request(srv.port, "GET", case[2]))
          assert.equal(200, res.status)
          assert.same({ "x" }, res.chunks or { res.body })
          local log = helper.wait_events(srv, CLOSED)
          assert.equal(1, count(log, CLOSED))
          assert.is_nil(index_of(log, "late"))
          clean_stop(srv)
        end)
      end

      it("HTTP stream, closed by the client going away", function()
        local srv = serve(HTTP_CLOSES)
        local sock = connect(srv)
        assert(sock:send(get("/close-client")))
        assert(sock:receive("*l"))
        sock:close()
        local log = helper.wait_events(srv, CLOSED)
        assert.same({ CLOSED }, log)
        clean_stop(srv)
      end)

      local WS_CLOSES = [[
routes["/ws-close"] = function(req)
  local how = req.query_string
  return ringlet.as_channel(req, {
    timeout = how == "timeout" and 100 or nil,
    on_open = function(ch)
      if how == "call" then
        ch:send("x")
        record("close()", ch:close(4000, "server bye"))
      elseif how == "send" then
        ch:send("x", { close = true })
      else
        ch:send("x")
      end
    end,
    on_close = function(ch, info)
      record("close", ch:is_open(), info.code, "[" .. info.reason .. "]",
        ch:close(), ch:send("late", { on_success = function()
          record("late") end }))
    end,
  })
end
]]
      for _, case in ipairs({
        { "a call to ch:close(4000, reason)", "call", "[]", 4000,
          "server bye" },
        { "a send with close = true", "send", "[]", 1000, "" },
        { "the client's close frame", "client",
          [[ [{"until": 1}, {"close": 4001, "reason": "bye"}] ]], 4001, "bye" },
        { "the client dropping the connection", "client",
          [[ [{"until": 1}, {"drop": true}] ]], 1006, "" },
        { "the idle timeout option", "timeout", "[]", 1000, "idle timeout" },
      }) do
        it_ws("WebSocket, closed by " .. case[1] .. ": code " .. case[4],
          function()
          local srv = serve(WS_CLOSES)
          local rec = helper.ws_session(srv.port, "/ws-close?" .. case[2], case[3])
          assert.same({ "T:x" }, messages(rec))
          local want = ("close false %d [%s] false nil"):format(case[4],
            case[5])
          local log = helper.wait_events(srv, want)
          assert.equal(1, count(log, want), table.concat(log, "\n"))
          assert.is_nil(index_of(log, "late"))
          if case[2] ~= "client" then
            assert.same({ case[4], case[5] }, { rec.close_code, rec.close_reason })
          elseif case[4] ~= 1006 then
            assert.equal(case[4], rec.close_code) -- the code echoed
          end
          clean_stop(srv)
        end)
      end
    end)

    it_ws("on_message: \"Called for each message from the client. `message` "
      .. "will be a `String` or `byte[]`\" (a string, and binary true for a "
      .. "binary message)", function()
      local srv = serve([[
local function hexs(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end
routes["/msg"] = function(req)
  return ringlet.as_channel(req, {
    on_message = function(ch, msg, binary)
      record("message", type(msg), #msg, binary, hexs(msg))
      ch:send(msg, { binary = binary })
    end,
  })
end
]])
      local text = "h\195\169llo \226\156\147"
      local rec = helper.ws_session(srv.port, "/msg", ([[
        [{"send": "%s"}, {"binary": "00ff7f80"}, {"send": ""},
         {"binary": ""}, {"until": 4}, {"close": 1000}]
      ]]):format(text))
      assert.same({ "T:" .. text, "B:00ff7f80", "T:", "B:" }, messages(rec))
      assert.same({
        "message string 10 false " .. hex(text),
        "message string 4 true 00ff7f80",
        "message string 0 false ",
        "message string 0 true ",
      }, helper.events(srv))
      clean_stop(srv)
    end)

    it_ws("the handler's status and headers apply to the stream's response, "
      .. "and its headers to the 101 (ringlet answers the upgrade with them; "
      .. "Immutant ignored them)", function()
      local srv = serve([[
routes["/headers"] = function(req)
  local res = ringlet.as_channel(req, {
    on_open = function(ch) ch:send("hi", { close = true }) end,
  })
  if not req.websocket then res.status = 203 end
  res.headers["x-from-handler"] = "yes"
  return res
end
]])
      local res = assert(helper.request(srv.port, "GET", "/headers"))
      assert.same({ 203, "yes", { "hi" } },
        { res.status, res.headers["x-from-handler"], res.body ~= "" and
          { res.body } or res.chunks })
      local rec = helper.ws_session(srv.port, "/headers")
      assert.same({ "yes", { "T:hi" } },
        { rec.headers["x-from-handler"], messages(rec) })
      clean_stop(srv)
    end)

    it_ws("originating_request: \"Returns the request map for the request "
      .. "that initiated the channel\", on both transports, also once "
      .. "closed", function()
      local srv = serve([[
routes["/origin"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      local r = ch:originating_request()
      record("open", r == req, r.uri, r.query_string, r.headers["x-test"],
        r.websocket == true)
      ch:send("x", { close = true })
    end,
    on_close = function(ch)
      record("close", ch:originating_request() == req)
    end,
  })
end
]])
      local res = assert(helper.request(srv.port, "GET", "/origin?a=1",
        { ["X-Test"] = "yes" }))
      assert.same({ 200, "x" }, { res.status, res.body })
      assert.same({ "open true /origin a=1 yes false", "close true" },
        helper.wait_events(srv, "close true"))
      local rec = helper.ws_session(srv.port, "/origin?b=2")
      assert.same({ "T:x" }, messages(rec))
      local log = helper.wait_events(srv, "open true /origin b=2 nil true")
      assert.equal(2, count(log, "close true"))
      clean_stop(srv)
    end)

    describe("close: \"Gracefully close the channel. This will trigger the "
      .. ":on-close callback\"; open?: \"Is the channel open?\"", function()
      local GRACEFUL = [[
routes["/graceful"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      ch:send("one")
      ch:send("two")
      record("is_open", ch:is_open())
      record("close", ch:close())
      record("is_open", ch:is_open())
      record("close again", ch:close())
    end,
    on_close = function(ch, info) record("on_close", info.code) end,
  })
end
]]
      it("HTTP stream: what was sent arrives, then the last chunk; the "
        .. "connection serves its next request", function()
        local srv = serve(GRACEFUL)
        local sock = connect(srv)
        assert(sock:send(get("/graceful")))
        local res = assert(helper.read_response(sock))
        assert.same({ 200, { "one", "two" } }, { res.status, res.chunks })
        assert(sock:send(get("/plain")))
        res = assert(helper.read_response(sock))
        assert.same({ 200, "plain" }, { res.status, res.body })
        local log = helper.wait_events(srv, "on_close nil")
        assert.same(sorted({ "is_open true", "close true", "is_open false",
          "close again false", "on_close nil" }), sorted(log))
        clean_stop(srv)
      end)

      it_ws("WebSocket: the messages sent before it arrive, then the close "
        .. "frame (1000)", function()
        local srv = serve(GRACEFUL)
        local rec = helper.ws_session(srv.port, "/graceful")
        assert.same({ { "T:one", "T:two" }, 1000 },
          { messages(rec), rec.close_code })
        local log = helper.wait_events(srv, "on_close 1000")
        assert.same(sorted({ "is_open true", "close true", "is_open false",
          "close again false", "on_close 1000" }), sorted(log))
        clean_stop(srv)
      end)
    end)
  end)

  -------------------------------------------------------------------------
  describe("send!: \"Send a message to the channel, asynchronously.\"",
  function()
    it("returns true at once, with the message still queued, and the loop "
      .. "goes on serving", function()
      local srv = serve([[
routes["/async"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      local written = false
      local sent = ch:send(("a"):rep(1048576), { close = true,
        on_success = function()
          written = true
          record("written")
        end })
      record("send", sent, written, ch:buffered_amount() > 0)
    end,
  })
end
]])
      local out, code = helper.curl(url(srv, "/async"))
      assert.same({ 1048576, 0 }, { #out, code })
      assert.same({ "send true false true", "written" },
        helper.wait_events(srv, "written"))
      clean_stop(srv)
    end)

    describe("\"`message` can either be a `String`, `File`, `InputStream`, "
      .. "`ISeq`, `byte[]`, or map\": in Lua a string, a file, an iterator, "
      .. "an array of strings, or a response table", function()
      local TYPES = [[
routes["/types"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      local items, i = { "i1", "i2" }, 0
      record("string", ch:send("s"))
      record("array", ch:send({ "a1", "a2" }))
      record("file", ch:send(fixture("16k1")))
      record("iterator", ch:send(function() i = i + 1 return items[i] end))
      local closed = fixture("empty")
      closed:close()
      for _, bad in ipairs({ 42, true, { "ok", 3 }, closed }) do
        local ok, err = pcall(ch.send, ch, bad)
        record("bad", io.type(bad) or type(bad), ok,
          (short(err):gsub("%s*%(got %a+%)$", "")))
      end
      ch:send("end", { close = true })
    end,
  })
end
]]
      it("HTTP stream: each is sent (an array as one chunk), other values "
        .. "raise and leave the channel usable", function()
        local srv = serve(TYPES)
        local res = assert(helper.request(srv.port, "GET", "/types"))
        local f = fixture_bytes["16k1"]
        assert.same({ 200, { "s", "a1a2", f:sub(1, PIECE), f:sub(PIECE + 1),
          "i1", "i2", "end" } }, { res.status, res.chunks })
        local types = "send: a message must be a string, an array of "
          .. "strings, a file or an iterator function"
        assert.same({
          "string true", "array true", "file true", "iterator true",
          "bad number false " .. types,
          "bad boolean false " .. types,
          "bad table false send: a message array may hold only strings",
          "bad closed file false send: the file is closed",
        }, helper.events(srv))
        clean_stop(srv)
      end)

      it_ws("WebSocket: each is sent (an array's items each its own message, "
        .. "\"Each item in an ISeq will pass through send!\")", function()
        local srv = serve(TYPES)
        local rec = helper.ws_session(srv.port, "/types")
        local f = fixture_bytes["16k1"]
        -- { "ok", 3 } is refused whole, before any item goes, on both
        -- transports (every message is checked before it is sent)
        assert.same({ "T:s", "T:a1", "T:a2", "B#" .. PIECE,
          "B:" .. hex(f:sub(-1)), "T:i1", "T:i2", "T:end" },
          messages(rec))
        assert.equal(1000, rec.close_code)
        local log = helper.events(srv)
        assert.same({ "string true", "array true", "file true",
          "iterator true" }, { table.unpack(log, 1, 4) })
        assert.equal(8, #log)
        clean_stop(srv)
      end)

      it_ws("WebSocket: binary = true makes each item of an array a binary "
        .. "message", function()
        local srv = serve([[
routes["/array"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      ch:send({ "\0\1", "\2" }, { binary = true })
      ch:send({ "x", "y" }, { close = true })
    end,
  })
end
]])
        local rec = helper.ws_session(srv.port, "/array")
        assert.same({ "B:0001", "B:02", "T:x", "T:y" }, messages(rec))
        clean_stop(srv)
      end)
    end)

    it_ws("\"If it is a `String`, it will be encoded to the character set of "
      .. "the response for HTTP streams, and as UTF-8 for WebSockets\": a "
      .. "Lua string's bytes go out as they are", function()
      local srv = serve([[
routes["/utf8"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      ch:send("caf\195\169 \226\130\172", { close = true })
    end,
  })
end
]])
      local res = assert(helper.request(srv.port, "GET", "/utf8"))
      assert.equal("caf\195\169 \226\130\172", res.body)
      local rec = helper.ws_session(srv.port, "/utf8")
      assert.same({ "T:caf\195\169 \226\130\172" }, messages(rec))
      clean_stop(srv)
    end)

    describe("\"If `message` is a map, its :body entry must be one of the "
      .. "other valid message types, and its :status and :headers entries "
      .. "will be used to override the status or headers returned from the "
      .. "handler\"", function()
      local MAPS = [[
routes["/map"] = function(req)
  local kind = req.query_string
  local res = ringlet.as_channel(req, {
    on_open = function(ch)
      local body
      if kind == "string" then body = "body"
      elseif kind == "array" then body = { "bo", "dy" }
      elseif kind == "file" then body = fixture("16k1")
      else
        local items, i = { "bo", "dy" }, 0
        body = function() i = i + 1 return items[i] end
      end
      record(kind, ch:send({ status = 202,
        headers = { ["X-B"] = "table", ["x-c"] = "table" }, body = body }))
      ch:send("end", { close = true })
    end,
  })
  res.status = 201
  res.headers["x-a"] = "handler"
  res.headers["x-b"] = "handler"
  return res
end
]]
      local f = fixture_bytes["16k1"]
      for _, case in ipairs({
        { "string", { "body", "end" } },
        { "array", { "body", "end" } },
        { "file", { f:sub(1, PIECE), f:sub(PIECE + 1), "end" } },
        { "iterator", { "bo", "dy", "end" } },
      }) do
        it("a body that is " .. (case[1] == "array" and "an " or "a ")
          .. case[1], function()
          local srv = serve(MAPS)
          local res = assert(helper.request(srv.port, "GET", "/map?" .. case[1]))
          assert.same({ 202, "handler", "table", "table", "chunked" }, {
            res.status, res.headers["x-a"], res.headers["x-b"],
            res.headers["x-c"], res.headers["transfer-encoding"] })
          assert.same(case[2], res.chunks)
          assert.same({ case[1] .. " true" }, helper.events(srv))
          clean_stop(srv)
        end)
      end
    end)

    it_ws("\"A map is *only* a valid message on the first send to an HTTP "
      .. "stream channel - an exception is thrown if it is passed on a "
      .. "subsequent send or passed to a WebSocket channel\"", function()
      local srv = serve([[
routes["/map-later"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      if not ch:is_websocket() then ch:send("first") end
      local ok, err = pcall(ch.send, ch, { status = 500, body = "no" })
      record(ch:is_websocket() and "ws" or "http", ok,
        short(err):match("only on the first send") or
        short(err):match("cannot be sent on a WebSocket") or short(err))
      ch:send("after", { close = true })
    end,
  })
end
]])
      local res = assert(helper.request(srv.port, "GET", "/map-later"))
      assert.same({ 200, { "first", "after" } }, { res.status, res.chunks })
      local rec = helper.ws_session(srv.port, "/map-later")
      assert.same({ "T:after" }, messages(rec))
      assert.same({ "http false only on the first send",
        "ws false cannot be sent on a WebSocket" }, helper.events(srv))
      clean_stop(srv)
    end)

    describe(":close? \"if `true`, the channel will be closed when the send "
      .. "completes\"", function()
      local CLOSE = [[
routes["/close"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      ch:send("a")
      record("send", ch:send("b", { close = true,
        on_success = function() record("b written") end }))
      record("is_open", ch:is_open())
    end,
    on_close = function(ch, info) record("on_close", info.code) end,
  })
end
]]
      it("HTTP stream: the message is the last chunk", function()
        local srv = serve(CLOSE)
        local res = assert(helper.request(srv.port, "GET", "/close"))
        assert.same({ 200, { "a", "b" } }, { res.status, res.chunks })
        local log = helper.wait_events(srv, "on_close nil", "b written")
        assert.same(sorted({ "send true", "is_open false", "on_close nil",
          "b written" }), sorted(log))
        clean_stop(srv)
      end)

      it_ws("WebSocket: the message, then the close frame", function()
        local srv = serve(CLOSE)
        local rec = helper.ws_session(srv.port, "/close")
        assert.same({ { "T:a", "T:b" }, 1000, "" },
          { messages(rec), rec.close_code, rec.close_reason })
        local log = helper.wait_events(srv, "on_close 1000", "b written")
        assert.same(sorted({ "send true", "is_open false", "on_close 1000",
          "b written" }), sorted(log))
        clean_stop(srv)
      end)
    end)

    describe("\"Setting this to `true` on the first send to an HTTP stream "
      .. "channel will cause it to behave like a standard HTTP response, and "
      .. "*not* chunk the response.\"", function()
      local PLAIN = [[
routes["/first-close"] = function(req)
  local kind = req.query_string
  return ringlet.as_channel(req, {
    on_open = function(ch)
      local msg
      if kind == "string" then msg = "plain answer"
      elseif kind == "array" then msg = { "plain ", "answer" }
      elseif kind == "file" then msg = fixture("1m")
      elseif kind == "empty-file" then msg = fixture("empty")
      elseif kind == "map-file" then
        msg = { status = 201, headers = { ["x-map"] = "1" },
                body = fixture("16k1") }
      elseif kind == "pipe" then msg = io.popen("printf 'from a pipe'")
      else
        local items, i = { "it", "er", "ator" }, 0
        msg = function() i = i + 1 return items[i] end
      end
      local src = type(msg) == "table" and msg.body or msg
      record("send", ch:send(msg, { close = true,
        on_success = function() record("written", io.type(src)) end }))
    end,
  })
end
]]
      for _, case in ipairs({
        { "string", "12", "plain answer" },
        { "array", "12", "plain answer" },
        { "file", "1000000", fixture_bytes["1m"] },
        { "empty-file", "0", "" },
        { "map-file", "16385", fixture_bytes["16k1"] },
      }) do
        it("a " .. case[1] .. ": Content-Length, and the connection serves "
          .. "its next request", function()
          local srv = serve(PLAIN)
          local sock = connect(srv)
          assert(sock:send(get("/first-close?" .. case[1])))
          local res = assert(helper.read_response(sock))
          assert.same({ case[1] == "map-file" and 201 or 200, case[2], nil },
            { res.status, res.headers["content-length"],
              res.headers["transfer-encoding"] })
          assert.is_true(res.body == case[3], "the body differs")
          assert(sock:send(get("/plain")))
          res = assert(helper.read_response(sock))
          assert.same({ 200, "plain" }, { res.status, res.body })
          local kind = (case[1]:match("file") and "closed file") or "nil"
          assert.same({ "send true", "written " .. kind },
            helper.wait_events(srv, "written " .. kind))
          clean_stop(srv)
        end)
      end

      it("a file over curl arrives byte for byte", function()
        local srv = serve(PLAIN)
        local out = helper.marker_path()
        local _, code, err = helper.curl("-o", out, "-D", "-",
          url(srv, "/first-close?file"))
        local body = tmpfile_read(out)
        assert.same({ 0, "" }, { code, err })
        assert.is_true(body == fixture_bytes["1m"], "the body differs")
        clean_stop(srv)
      end)

      for _, case in ipairs({
        { "an iterator", "iterator", { "it", "er", "ator" } },
        { "a pipe (not a regular file: its size is unknown)", "pipe",
          { "from a pipe" } },
      }) do
        it(case[1] .. " is chunked all the same", function()
          local srv = serve(PLAIN)
          local res = assert(helper.request(srv.port, "GET",
            "/first-close?" .. case[2]))
          assert.same({ 200, nil, "chunked", case[3] }, {
            res.status, res.headers["content-length"],
            res.headers["transfer-encoding"], res.chunks })
          helper.wait_events(srv, "send true")
          clean_stop(srv)
        end)
      end
    end)

    describe(":on-success \"called when the send attempt has completed "
      .. "successfully. If this callback throws an exception, it will be "
      .. "reported to the [[as-channel]] :on-error callback\"", function()
      it("HTTP stream: once per send, in order, once its bytes are written",
      function()
        local srv = serve([[
routes["/success"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      for i = 1, 5 do
        ch:send(("m%d"):format(i), { on_success = function()
          record("success", i)
        end })
      end
      ch:send(("z"):rep(300000), { on_success = function()
        record("big written", ch:buffered_amount())
        ch:close()
      end })
    end,
    on_close = function() record("close") end,
  })
end
]])
        local res = assert(helper.request(srv.port, "GET", "/success"))
        assert.same({ "m1", "m2", "m3", "m4", "m5" },
          { table.unpack(res.chunks, 1, 5) })
        assert.same({ "success 1", "success 2", "success 3", "success 4",
          "success 5", "big written 0", "close" },
          helper.wait_events(srv, "close"))
        clean_stop(srv)
      end)
      -- (an on_success that raises: see on_error's WebSocket spec above)
    end)

    describe(":on-error \"Called when an error occurs on the send. If the "
      .. "error requires the channel to be closed, the [[as-channel]] "
      .. ":on-close callback will also be invoked.\"", function()
      it("HTTP stream: a client that goes away with a message unwritten "
        .. "fails that send, and on_close follows", function()
        local srv = serve([[
routes["/unwritten"] = function(req)
  return ringlet.as_channel(req, {
    max_buffered = 64 * 1024 * 1024,
    on_open = function(ch)
      probes.unwritten = function()
        return { buffered = ch:buffered_amount() }
      end
      ch:send(("u"):rep(16 * 1024 * 1024), {
        on_success = function() record("written") end,
        on_error = function(err) record("send on_error", err) end,
      })
    end,
    on_error = function(ch, err) record("on_error", err) end,
    on_close = function(ch) record("close", ch:is_open()) end,
  })
end
]])
        local sock = connect(srv)
        assert(sock:send(get("/unwritten")))
        local s = settle(srv, "unwritten", "buffered")
        assert.is_true(s.buffered > 0)
        sock:close()
        local err = "connection closed before the message was sent"
        local log = helper.wait_events(srv, "close false", "send on_error " .. err)
        assert.is_nil(index_of(log, "written"))
        assert.equal(1, count(log, "close false"))
        assert.equal(1, count(log, "send on_error " .. err))
        clean_stop(srv)
      end)
      -- (an on_error that raises: see on_error's WebSocket spec above)
    end)

    describe("\"Returns nil if the channel is closed when the send is "
      .. "initiated, true otherwise. If the channel is already closed, "
      .. ":on-success won't be invoked.\"", function()
      local LATE = [[
local held
local function late(ch, when)
  record(when, ch:send("late", {
    on_success = function() record("late success", when) end,
    on_error = function(e) record("late error", when, e) end,
  }))
end
routes["/late"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      held = ch
      record("first", ch:send("first"))
      if req.query_string == "close" then
        ch:close()
        late(ch, "after close()")
      end
    end,
    on_close = function(ch) late(ch, "in on_close") end,
  })
end
routes["/later"] = function()
  late(held, "later")
  return { status = 200, body = "ok" }
end
]]
      it("HTTP stream: after ch:close(), in on_close, and after the client "
        .. "went away", function()
        local srv = serve(LATE)
        local res = assert(helper.request(srv.port, "GET", "/late?close"))
        assert.same({ "first" }, res.chunks)
        local sock = connect(srv)
        assert(sock:send(get("/late")))
        assert(sock:receive("*l"))
        sock:close()
        assert(helper.wait_until(function()
          return count(helper.events(srv), "in on_close nil") == 2
        end), "on_close did not run for both channels")
        assert(helper.request(srv.port, "GET", "/later"))
        local log = helper.events(srv)
        assert.same(sorted({ "first true", "after close() nil",
          "in on_close nil", "first true", "in on_close nil", "later nil" }),
          sorted(log))
        clean_stop(srv)
      end)

      it_ws("WebSocket: after ch:close() (the closing handshake under way), "
        .. "and in on_close", function()
        local srv = serve(LATE)
        local rec = helper.ws_session(srv.port, "/late?close")
        assert.same({ { "T:first" }, 1000 }, { messages(rec), rec.close_code })
        helper.wait_events(srv, "in on_close nil")
        assert(helper.request(srv.port, "GET", "/later"))
        local log = helper.events(srv)
        assert.same(sorted({ "first true", "after close() nil",
          "in on_close nil", "later nil" }), sorted(log))
        clean_stop(srv)
      end)
    end)
  end)

  -------------------------------------------------------------------------
  describe("streamed sends: \"`File`s and `InputStream`s will be sent as up "
    .. "to 16k chunks (each chunk being a `byte[]` message for "
    .. "WebSockets)\"", function()

    -- /file?NAME: the fixture as a streamed send, then "tail", closing.
    local FILE = [[
routes["/file"] = function(req)
  local name = req.query_string
  return ringlet.as_channel(req, {
    on_open = function(ch)
      local f = fixture(name)
      record("send", ch:send(f, {
        on_success = function() record("written", io.type(f)) end,
        on_error = function(e) record("send error", short(e)) end,
      }))
      ch:send("tail", { close = true,
        on_success = function() record("tail written") end })
    end,
    on_error = function(_, e) record("on_error", short(e)) end,
    on_close = function(ch) record("close", ch:is_open()) end,
  })
end
routes["/filec"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      local f = fixture(req.query_string)
      record("send", ch:send(f, { close = true,
        on_success = function() record("written", io.type(f)) end }))
    end,
    on_close = function(ch) record("close", ch:is_open()) end,
  })
end
local ITEMS = { "it1", "", "it2", "it3" }
routes["/iter"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      local i = 0
      record("send", ch:send(function()
        i = i + 1
        return ITEMS[i]
      end, { binary = req.query_string == "binary",
             on_success = function() record("written") end }))
      ch:send("tail", { close = true })
    end,
    on_close = function(ch) record("close", ch:is_open()) end,
  })
end
]]
    local WRITTEN = { "send true", "written closed file", "tail written",
      "close false" }

    describe("over HTTP: each piece is one chunk", function()
      local f1m = fixture_bytes["1m"]
      for _, case in ipairs({
        { "empty", {} },
        { "16k", { PIECE } },
        { "16k1", { PIECE, 1 } },
        { "1m", (function()
          local t = {}
          for i = 1, 61 do t[i] = PIECE end
          t[62] = 1000000 - 61 * PIECE
          return t
        end)() },
      }) do
        local name = case[1]
        it(("a file of %d bytes: chunks of %s, the file closed once it was "
          .. "sent"):format(FIXTURE_SIZES[name], #case[2] <= 2 and
            ("{" .. table.concat(case[2], ", ") .. "}") or "16 KiB and the rest"),
        function()
          local srv = serve(FILE)
          local res = assert(helper.request(srv.port, "GET", "/file?" .. name))
          assert.same({ 200, "chunked" },
            { res.status, res.headers["transfer-encoding"] })
          local chunks = { table.unpack(res.chunks) }
          assert.equal("tail", table.remove(chunks))
          assert.same(case[2], sizes(chunks))
          assert.is_true(table.concat(chunks) == fixture_bytes[name],
            "the body differs from the file")
          assert.same(sorted(WRITTEN), sorted(helper.wait_events(srv, "close false")))
          clean_stop(srv)
        end)
      end

      it("a 1 MB file over curl arrives byte for byte", function()
        local srv = serve(FILE)
        local out = helper.marker_path()
        local _, code, err = helper.curl("-o", out, url(srv, "/file?1m"))
        local body = tmpfile_read(out)
        assert.same({ 0, "" }, { code, err })
        assert.equal(#f1m + 4, #body)
        assert.is_true(body == f1m .. "tail", "the body differs")
        clean_stop(srv)
      end)

      it("close = true on the first send of a regular file: its bytes as "
        .. "they are, under Content-Length (curl, 1 MB)", function()
        local srv = serve(FILE)
        local out = helper.marker_path()
        local head, code, err = helper.curl("-D", "-", "-o", out,
          url(srv, "/filec?1m"))
        local body = tmpfile_read(out)
        assert.same({ 0, "" }, { code, err })
        assert.truthy(head:lower():match("\r\ncontent%-length: 1000000\r\n"),
          head)
        assert.falsy(head:lower():match("transfer%-encoding"), head)
        assert.is_true(body == f1m, "the body differs")
        assert.same({ "close false", "send true", "written closed file" },
          sorted(helper.wait_events(srv, "written closed file")))
        clean_stop(srv)
      end)

      it("an iterator: each string one chunk; an empty string sends "
        .. "nothing and does not end the stream", function()
        local srv = serve(FILE)
        local out, code = helper.curl("--raw", url(srv, "/iter"))
        assert.same({ "3\r\nit1\r\n3\r\nit2\r\n3\r\nit3\r\n4\r\ntail\r\n"
          .. "0\r\n\r\n", 0 }, { out, code })
        assert.same({ "close false", "send true", "written" },
          sorted(helper.wait_events(srv, "close false", "written")))
        clean_stop(srv)
      end)
    end)

    describe("over a WebSocket: each piece is its own message", function()
      local f1m = fixture_bytes["1m"]
      for _, case in ipairs({
        { "empty", {} },
        { "16k", { "B#" .. PIECE } },
        { "16k1", { "B#" .. PIECE, "B:" .. hex(fixture_bytes["16k1"]:sub(-1)) } },
      }) do
        local name = case[1]
        it_ws(("a file of %d bytes: %d binary message(s)"):format(
          FIXTURE_SIZES[name], #case[2]), function()
          local srv = serve(FILE)
          local save = helper.marker_path()
          local rec = helper.ws_session(srv.port, "/file?" .. name, "[]",
            { save = save })
          local saved = tmpfile_read(save)
          local list = messages(rec)
          assert.equal("T:tail", table.remove(list))
          assert.same(case[2], list)
          assert.is_true(saved == fixture_bytes[name] .. "tail",
            "the payloads differ from the file")
          assert.equal(1000, rec.close_code)
          assert.same(sorted(WRITTEN), sorted(helper.wait_events(srv, "close false")))
          clean_stop(srv)
        end)
      end

      it_ws("a 1 MB file: binary messages of 16 KiB and the rest, byte for "
        .. "byte", function()
        local srv = serve(FILE)
        local save = helper.marker_path()
        local rec = helper.ws_session(srv.port, "/file?1m", "[]",
          { save = save })
        local saved = tmpfile_read(save)
        local want = {}
        for i = 1, 61 do want[i] = "B#" .. PIECE end
        want[62] = "B#" .. (1000000 - 61 * PIECE)
        want[63] = "T:tail"
        assert.same(want, messages(rec))
        assert.is_true(saved == f1m .. "tail", "the payloads differ")
        assert.same(sorted(WRITTEN), sorted(helper.wait_events(srv, "close false")))
        clean_stop(srv)
      end)

      it_ws("an iterator: each string a text message (an empty one too), "
        .. "binary with binary = true", function()
        local srv = serve(FILE)
        local rec = helper.ws_session(srv.port, "/iter")
        assert.same({ "T:it1", "T:", "T:it2", "T:it3", "T:tail" },
          messages(rec))
        rec = helper.ws_session(srv.port, "/iter?binary")
        assert.same({ "B:" .. hex("it1"), "B:", "B:" .. hex("it2"),
          "B:" .. hex("it3"), "T:tail" }, messages(rec))
        assert.equal(1000, rec.close_code)
        clean_stop(srv)
      end)

      it_ws("close = true on a streamed send closes (1000) once all of it "
        .. "was sent", function()
        local srv = serve(FILE)
        local save = helper.marker_path()
        local rec = helper.ws_session(srv.port, "/filec?16k1", "[]",
          { save = save })
        assert.is_true(tmpfile_read(save) == fixture_bytes["16k1"])
        assert.same({ 2, 1000 }, { #messages(rec), rec.close_code })
        assert.same({ "close false", "send true", "written closed file" },
          sorted(helper.wait_events(srv, "written closed file")))
        clean_stop(srv)
      end)
    end)

    describe("backpressure: the source is read only while less than 64 KiB "
      .. "is queued", function()
      -- /flood?NAME: 16 KiB pieces until /finish?NAME, then the stream
      -- ends and closes. The probe: pieces read (n), the most that was
      -- queued when the iterator was called (maxbuf), buffered now, ok
      -- (on_success ran).
      local FLOOD = [[
local finish = {}
routes["/flood"] = function(req)
  local name = req.query_string
  local st = { n = 0, maxbuf = 0, ok = false }
  return ringlet.as_channel(req, {
    on_open = function(ch)
      probes[name] = function()
        return { n = st.n, maxbuf = st.maxbuf, ok = st.ok,
                 buffered = ch:buffered_amount() }
      end
      ch:send(function()
        st.maxbuf = math.max(st.maxbuf, ch:buffered_amount())
        if finish[name] then return nil end
        st.n = st.n + 1
        return piece(st.n, 16384)
      end, { close = true, binary = true,
             on_success = function() st.ok = true end,
             on_error = function(e) record(name, "send error", short(e)) end })
    end,
    on_close = function() record(name, "close") end,
  })
end
routes["/finish"] = function(req)
  finish[req.query_string] = true
  return { status = 200, body = "finished" }
end
-- /bigfile?NAME: the 12 MiB fixture, then "tail" closing. The probe: the
-- file's position (or "closed"), buffered now, ok.
routes["/bigfile"] = function(req)
  local name = req.query_string
  local ok = false
  return ringlet.as_channel(req, {
    on_open = function(ch)
      local f = fixture("big")
      probes[name] = function()
        return { pos = io.type(f) == "file" and f:seek() or io.type(f),
                 buffered = ch:buffered_amount(), ok = ok }
      end
      ch:send(f, { on_success = function() ok = true end,
                   on_error = function(e) record(name, "send error", short(e)) end })
      ch:send("tail", { close = true })
    end,
    on_close = function() record(name, "close") end,
  })
end
]]

      it("HTTP stream, an iterator: a client that stops reading stops the "
        .. "source with at most 64 KiB + one piece queued; on_success waits "
        .. "for the rest, which arrives in order", function()
        local srv = serve(FLOOD)
        local sock = connect(srv)
        assert(sock:send(get("/flood?h")))
        local s = settle(srv, "h", "n")
        assert.is_true(s.maxbuf < HWM, "read with " .. s.maxbuf .. " queued")
        assert.is_true(s.buffered > 0 and s.buffered <= STALL_MAX,
          "buffered " .. s.buffered)
        assert.is_false(s.ok)
        socket.sleep(0.2)
        local again = stats(srv, "h")
        assert.same({ s.n, s.buffered, false },
          { again.n, again.buffered, again.ok })

        assert(helper.request(srv.port, "GET", "/finish?h"))
        local res = assert(helper.read_response(sock))
        local final = stats(srv, "h")
        assert.is_true(final.n >= s.n)
        assert.equal(final.n, #res.chunks)
        assert.is_true(final.maxbuf < HWM, "read with " .. final.maxbuf
          .. " queued")
        for i, chunk in ipairs(res.chunks) do
          if chunk ~= piece(i, PIECE) then
            error(("chunk %d is not piece %d"):format(i, i))
          end
        end
        assert.same({ "h close" }, helper.wait_events(srv, "h close"))
        assert.is_true(stats(srv, "h").ok)
        clean_stop(srv)
      end)

      it("HTTP stream, a file: its position stops while the client does "
        .. "not read, then the whole of it arrives byte for byte", function()
        local srv = serve(FLOOD)
        local sock = connect(srv)
        assert(sock:send(get("/bigfile?f")))
        local s = settle(srv, "f", "pos")
        assert.is_number(s.pos)
        assert.is_true(s.pos < FIXTURE_SIZES.big, "the file was read to "
          .. s.pos .. " with the client not reading")
        assert.is_true(s.buffered > 0 and s.buffered <= STALL_MAX,
          "buffered " .. s.buffered)
        assert.is_false(s.ok)
        local res = assert(helper.read_response(sock))
        local body = table.concat(res.chunks)
        assert.equal(FIXTURE_SIZES.big + 4, #body)
        assert.is_true(body == fixture_bytes.big .. "tail", "the body differs")
        assert.same({ "f close" }, helper.wait_events(srv, "f close"))
        assert.same({ "closed file", true }, { stats(srv, "f").pos,
          stats(srv, "f").ok })
        clean_stop(srv)
      end)

      it_ws("WebSocket, an iterator: a client that stops reading stops the "
        .. "source with at most 64 KiB + one piece queued; then every piece "
        .. "arrives, in order", function()
        local srv = serve(FLOOD)
        local save = helper.marker_path()
        local rec = helper.ws_session(srv.port, "/flood?w", [[
          [{"pause": true}, {"settle": "/stats?w"}, {"wait": 200},
           {"fetch": "/stats?w"}, {"fetch": "/finish?w"}, {"resume": true}]
        ]], { save = save })
        local saved = tmpfile_read(save)
        local got = fetched(rec)
        assert.equal(3, #got, "fetches: " .. table.concat(got, " | "))
        local s, again = helper.decode(got[1]), helper.decode(got[2])
        assert.is_true(s.n > 0 and s.maxbuf < HWM, got[1])
        assert.is_true(s.buffered > 0 and s.buffered <= STALL_MAX, got[1])
        assert.same({ s.n, s.buffered, false },
          { again.n, again.buffered, again.ok })
        assert.same({ 1000, nil }, { rec.close_code, rec.error })
        local final = stats(srv, "w")
        assert.is_true(final.ok and final.maxbuf < HWM)
        assert.equal(final.n, #messages(rec))
        assert.is_true(saved == table.concat(pieces(1, final.n, PIECE)),
          "the pieces differ")
        clean_stop(srv)
      end)

      it_ws("WebSocket, a file: its position stops while the client does not "
        .. "read, then the whole of it arrives byte for byte", function()
        local srv = serve(FLOOD)
        local save = helper.marker_path()
        local rec = helper.ws_session(srv.port, "/bigfile?g", [[
          [{"pause": true}, {"settle": "/stats?g"}, {"resume": true}]
        ]], { save = save })
        local saved = tmpfile_read(save)
        local s = helper.decode(fetched(rec)[1])
        assert.is_number(s.pos)
        assert.is_true(s.pos < FIXTURE_SIZES.big, "read to " .. s.pos)
        assert.is_true(s.buffered > 0 and s.buffered <= STALL_MAX,
          "buffered " .. s.buffered)
        assert.is_false(s.ok)
        assert.equal(1000, rec.close_code)
        assert.is_true(saved == fixture_bytes.big .. "tail", "payloads differ")
        assert.same({ "closed file", true }, { stats(srv, "g").pos,
          stats(srv, "g").ok })
        clean_stop(srv)
      end)
    end)

    describe("\"Sends made while a stream runs wait and go after it, in "
      .. "order\"", function()
      local ORDER = [[
routes["/order"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      local n = 0
      local function done(what) return function() record(what) end end
      record("stream", ch:send(function()
        n = n + 1
        if n > 3 then return nil end
        ringlet.sleep(5)
        return "it" .. n
      end, { on_success = done("stream written") }))
      record("a", ch:send("a", { on_success = done("a written") }))
      record("array", ch:send({ "b", "c" }, { on_success = done("bc written") }))
      record("file", ch:send(fixture("16k1"),
        { on_success = done("file written") }))
      record("z", ch:send("z", { close = true, on_success = done("z written") }))
    end,
    on_close = function() record("close") end,
  })
end
]]
      local WRITTEN_ORDER = { "stream written", "a written", "bc written",
        "file written", "z written" }
      local f = fixture_bytes["16k1"]

      it("HTTP stream", function()
        local srv = serve(ORDER)
        local res = assert(helper.request(srv.port, "GET", "/order"))
        assert.same({ "it1", "it2", "it3", "a", "bc", f:sub(1, PIECE),
          f:sub(PIECE + 1), "z" }, res.chunks)
        local log = helper.wait_events(srv, "close", "z written")
        assert.same({ "stream true", "a true", "array true", "file true",
          "z true" }, { table.unpack(log, 1, 5) })
        local written = {}
        for _, e in ipairs(log) do
          if e:match("written$") then written[#written + 1] = e end
        end
        assert.same(WRITTEN_ORDER, written)
        clean_stop(srv)
      end)

      it_ws("WebSocket", function()
        local srv = serve(ORDER)
        local rec = helper.ws_session(srv.port, "/order")
        assert.same({ "T:it1", "T:it2", "T:it3", "T:a", "T:b", "T:c",
          "B#" .. PIECE, "B:" .. hex(f:sub(-1)), "T:z" }, messages(rec))
        assert.equal(1000, rec.close_code)
        local log = helper.wait_events(srv, "close", "z written")
        local written = {}
        for _, e in ipairs(log) do
          if e:match("written$") then written[#written + 1] = e end
        end
        assert.same(WRITTEN_ORDER, written)
        clean_stop(srv)
      end)
    end)

    describe("a send made while a stream runs is still a send", function()
      local DURING = [[
local function slow(n)
  local i = 0
  return function()
    i = i + 1
    if i > n then return nil end
    ringlet.sleep(5)
    return "it" .. i
  end
end
routes["/bad-during"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      ch:send(slow(2))
      for _, bad in ipairs({ { status = 500, body = "x" }, 42 }) do
        record("bad", type(bad), (pcall(ch.send, ch, bad)))
      end
      ch:send("end", { close = true })
    end,
    on_error = function(_, e) record("on_error", short(e)) end,
    on_close = function() record("close") end,
  })
end
routes["/after-close"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      ch:send(slow(2))
      ch:send("a", { close = true })
      record("b", ch:send("b", {
        on_success = function() record("b written") end,
        on_error = function() record("b failed") end,
      }))
    end,
    on_close = function() record("close") end,
  })
end
]]
      local BAD = { "bad table false", "bad number false", "close" }

      it("HTTP stream: a bad message raises at once (a response table after "
        .. "the first send, a number), as it does with no stream running",
      function()
        local srv = serve(DURING)
        local res = assert(helper.request(srv.port, "GET", "/bad-during"))
        assert.same({ "it1", "it2", "end" }, res.chunks)
        assert.same(BAD, helper.wait_events(srv, "close"))
        clean_stop(srv)
      end)

      it_ws("WebSocket: a bad message raises at once (a response table, a "
        .. "number)", function()
        local srv = serve(DURING)
        local rec = helper.ws_session(srv.port, "/bad-during")
        assert.same({ "T:it1", "T:it2", "T:end" }, messages(rec))
        assert.same(BAD, helper.wait_events(srv, "close"))
        clean_stop(srv)
      end)

      -- A send after a close = true send that waits behind a stream: nil
      -- (the channel is closing) and no callback, or true and then exactly
      -- one of on_success and on_error; never sent after the close.
      local function check_after_close(srv)
        local log = helper.wait_events(srv, "close")
        if index_of(log, "b true") then
          helper.wait_until(function()
            log = helper.events(srv)
            return index_of(log, "b written") or index_of(log, "b failed")
          end, 1)
          assert.equal(1, count(log, "b written") + count(log, "b failed"),
            "send returned true, and then: " .. table.concat(log, ", "))
        else
          assert.same({ "b nil", "close" }, log)
        end
      end

      it("HTTP stream: a send after a waiting close = true send is answered "
        .. "(nil, or true and then on_success or on_error)", function()
        local srv = serve(DURING)
        local res = assert(helper.request(srv.port, "GET", "/after-close"))
        assert.same({ "it1", "it2", "a" }, res.chunks)
        check_after_close(srv)
        clean_stop(srv)
      end)

      it_ws("WebSocket: a send after a waiting close = true send is answered "
        .. "(nil, or true and then on_success or on_error)", function()
        local srv = serve(DURING)
        local rec = helper.ws_session(srv.port, "/after-close")
        assert.same({ { "T:it1", "T:it2", "T:a" }, 1000 },
          { messages(rec), rec.close_code })
        check_after_close(srv)
        clean_stop(srv)
      end)
    end)

    describe("files: edge cases", function()
      local EDGES = [[
routes["/unreadable"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      local name = os.tmpname()
      local f = assert(io.open(name, "wb")) -- open for writing only
      os.remove(name)
      ch:send(f, {
        on_success = function() record("written") end,
        on_error = function(e) record("send error", short(e)) end,
      })
      record("file", io.type(f))
    end,
    on_error = function(_, e) record("on_error", short(e)) end,
    on_close = function() record("close") end,
  })
end
routes["/from-16000"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      local f = fixture("16k1")
      f:seek("set", 16000)
      ch:send(f, { close = req.query_string == "close" })
      if req.query_string ~= "close" then ch:send("", { close = true }) end
    end,
  })
end
]]
      it("a file that cannot be read fails the send like a failing "
        .. "iterator, and is closed", function()
        local srv = serve(EDGES)
        local out, code = helper.curl("--raw", url(srv, "/unreadable"))
        assert.same({ "", 18 }, { out, code })
        local err = "send: cannot read the file"
        assert.same(sorted({ "send error " .. err, "on_error " .. err,
          "file closed file", "close" }), sorted(helper.wait_events(srv, "close")))
        clean_stop(srv)
      end)

      it("a file read partly already is sent from its position (chunked, "
        .. "and under Content-Length with close = true)", function()
        local srv = serve(EDGES)
        local rest = fixture_bytes["16k1"]:sub(16001)
        local res = assert(helper.request(srv.port, "GET", "/from-16000"))
        assert.same({ "chunked", { rest } },
          { res.headers["transfer-encoding"], res.chunks })
        res = assert(helper.request(srv.port, "GET", "/from-16000?close"))
        assert.same({ "385", true },
          { res.headers["content-length"], res.body == rest })
        clean_stop(srv)
      end)
    end)

    it("on_success of a streamed send fires once all of it was written "
      .. "(nothing left queued)", function()
      local srv = serve([[
routes["/all-written"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      ch:send(fixture("1m"), { on_success = function()
        record("written", ch:buffered_amount())
        ch:close()
      end })
    end,
  })
end
]])
      local out, code = helper.curl(url(srv, "/all-written"))
      assert.same({ 0, true }, { code, out == fixture_bytes["1m"] })
      assert.same({ "written 0" }, helper.wait_events(srv, "written 0"))
      clean_stop(srv)
    end)

    describe("a failing iterator fails the send: its on_error and the "
      .. "channel's on_error are told", function()
      local FAIL = [[
routes["/fail"] = function(req)
  local how = req.query_string
  return ringlet.as_channel(req, {
    on_open = function(ch)
      local n = 0
      record("send", ch:send(function()
        n = n + 1
        if n < 3 then
          if n == 2 then ringlet.sleep(5) end
          return "part" .. n
        end
        if how == "raise" then error("iterator boom") end
        return 42
      end, {
        on_success = function() record("stream written") end,
        on_error = function(e) record("send error", short(e)) end,
      }))
    end,
    on_message = function(ch, msg) ch:send("echo " .. msg) end,
    on_error = function(ch, e) record("on_error", ch:is_open(), short(e)) end,
    on_close = function(ch, info) record("close", info.code) end,
  })
end
]]
      local ERR = {
        raise = "iterator boom",
        type = "send: an iterator must return strings, then nil",
      }
      for _, how in ipairs({ "raise", "type" }) do
        local what = how == "raise" and "raises" or "returns a non-string"
        it("HTTP stream: an iterator that " .. what .. " ends the stream "
          .. "without its last chunk (curl: partial transfer, exit 18); "
          .. "on_close follows; the server goes on serving", function()
          local srv = serve(FAIL)
          local out, code, err = helper.curl("--raw", url(srv, "/fail?" .. how))
          assert.same({ "5\r\npart1\r\n5\r\npart2\r\n", 18 }, { out, code })
          assert.truthy(err:match("%(18%)"), err)
          local log = helper.wait_events(srv, "close nil")
          assert.same({ "send true", "send error " .. ERR[how],
            "on_error true " .. ERR[how], "close nil" },
            { log[1], log[2], log[3], log[4] })
          assert.equal(4, #log)
          local res = assert(helper.request(srv.port, "GET", "/plain"))
          assert.same({ 200, "plain" }, { res.status, res.body })
          clean_stop(srv)
        end)

        it_ws("WebSocket: an iterator that " .. what .. " leaves the "
          .. "WebSocket open", function()
          local srv = serve(FAIL)
          local rec = helper.ws_session(srv.port, "/fail?" .. how, [[
            [{"until": 2}, {"wait": 50}, {"send": "still open"}, {"until": 3},
             {"close": 1000}]
          ]])
          assert.same({ "T:part1", "T:part2", "T:echo still open" },
            messages(rec))
          local log = helper.wait_events(srv, "close 1000")
          assert.same({ "send true", "send error " .. ERR[how],
            "on_error true " .. ERR[how], "close 1000" }, log)
          clean_stop(srv)
        end)
      end
    end)

    it("HTTP stream: a send waiting behind a stream that fails is not "
      .. "silently dropped: it returned true, so its on_error is told",
    function()
      local srv = serve([[
routes["/fail-queued"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      local n = 0
      ch:send(function()
        n = n + 1
        ringlet.sleep(5)
        if n == 2 then error("iterator boom") end
        return "part" .. n
      end, { on_error = function(e) record("stream error", short(e)) end })
      record("queued", ch:send("after", {
        on_success = function() record("after written") end,
        on_error = function() record("after error") end,
      }))
    end,
    on_close = function() record("close") end,
  })
end
]])
      local out, code = helper.curl("--raw", url(srv, "/fail-queued"))
      assert.same({ "5\r\npart1\r\n", 18 }, { out, code })
      local log = helper.wait_events(srv, "close", "stream error iterator boom")
      -- exactly one of on_success and on_error for a send that returned
      -- true; the connection failed, so on_error
      helper.wait_until(function()
        log = helper.events(srv)
        return log[#log]:match("^after") ~= nil
      end, 1)
      assert.same(sorted({ "queued true", "stream error iterator boom",
        "close", "after error" }), sorted(log))
      clean_stop(srv)
    end)

    it_ws("the iterator runs in a task, so it may ringlet.sleep; the loop "
      .. "serves others meanwhile", function()
      local srv = serve([[
local stage = "sleeping"
routes["/sleepy"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      stage = "sleeping"
      local n = 0
      ch:send(function()
        n = n + 1
        if n > 3 then return nil end
        ringlet.sleep(n == 2 and 300 or 5)
        return "slept" .. n
      end, { close = true, on_success = function()
        stage = "done"
        record("written")
      end })
    end,
  })
end
routes["/stage"] = function()
  return { status = 200, body = stage }
end
]])
      local res = assert(helper.request(srv.port, "GET", "/sleepy"))
      assert.same({ "slept1", "slept2", "slept3" }, res.chunks)
      local rec = helper.ws_session(srv.port, "/sleepy", [[
        [{"until": 1}, {"fetch": "/stage"}]
      ]])
      assert.same({ "T:slept1", "T:slept2", "T:slept3" }, messages(rec))
      assert.same({ "sleeping" }, fetched(rec))
      assert.equal(1000, rec.close_code)
      clean_stop(srv)
    end)

    describe("ch:close() during a stream fails that send (\"channel closed "
      .. "before the message was sent\")", function()
      local CLOSE_MID = [[
routes["/close-mid"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      local n = 0
      ch:send(function()
        n = n + 1
        if n == 3 then
          ringlet.timer(0, function() record("close()", ch:close()) end)
        end
        ringlet.sleep(10)
        return "part" .. n
      end, {
        on_success = function() record("written") end,
        on_error = function(e) record("send error", e) end,
      })
    end,
    on_error = function(ch, e) record("on_error", e) end,
    on_close = function(ch, info) record("close", ch:is_open(), info.code) end,
  })
end
]]
      local ERR = "channel closed before the message was sent"

      it("HTTP stream: the stream is cut short (curl exit 18), on_close "
        .. "fires once", function()
        local srv = serve(CLOSE_MID)
        local out, code = helper.curl("--raw", url(srv, "/close-mid"))
        assert.same({ "5\r\npart1\r\n5\r\npart2\r\n", 18 }, { out, code })
        local log = helper.wait_events(srv, "close false nil", "close() true")
        assert.same(sorted({ "send error " .. ERR, "on_error " .. ERR,
          "close false nil", "close() true" }), sorted(log))
        clean_stop(srv)
      end)

      it_ws("WebSocket: the close handshake follows (1000), on_close fires "
        .. "once", function()
        local srv = serve(CLOSE_MID)
        local rec = helper.ws_session(srv.port, "/close-mid")
        assert.same({ { "T:part1", "T:part2" }, 1000 },
          { messages(rec), rec.close_code })
        local log = helper.wait_events(srv, "close false 1000", "close() true")
        assert.same(sorted({ "send error " .. ERR, "on_error " .. ERR,
          "close false 1000", "close() true" }), sorted(log))
        clean_stop(srv)
      end)
    end)

    it("HEAD: the head as a GET would have it, no body bytes, the source "
      .. "still sent to its end and the file closed; the connection serves "
      .. "its next request", function()
      local srv = serve(FILE)
      local sock = connect(srv)
      local head = helper.request_bytes("HEAD", "/filec?16k1",
        { host = "127.0.0.1" })
      local head2 = helper.request_bytes("HEAD", "/file?1m",
        { host = "127.0.0.1" })
      assert(sock:send(head .. get("/plain") .. head2 .. get("/plain")))
      local res = assert(helper.read_response(sock, "HEAD"))
      assert.same({ 200, "16385", nil }, { res.status,
        res.headers["content-length"], res.headers["transfer-encoding"] })
      res = assert(helper.read_response(sock))
      assert.same({ 200, "plain" }, { res.status, res.body })
      res = assert(helper.read_response(sock, "HEAD"))
      assert.same({ 200, nil, "chunked" }, { res.status,
        res.headers["content-length"], res.headers["transfer-encoding"] })
      res = assert(helper.read_response(sock))
      assert.same({ 200, "plain" }, { res.status, res.body })
      local log = helper.wait_events(srv, "tail written")
      assert.equal(2, count(log, "written closed file"))
      clean_stop(srv)
    end)

    describe("HTTP/1.0 clients: no chunks; the stream is delimited by "
      .. "closing the connection", function()
      for _, case in ipairs({
        { "a file (1 MB)", "/file?1m", fixture_bytes["1m"] .. "tail" },
        { "an iterator", "/iter", "it1it2it3tail" },
      }) do
        it(case[1], function()
          local srv = serve(FILE)
          local data, closed = helper.raw(srv.port, get(case[2], "HTTP/1.0"))
          assert.is_true(closed)
          local res = assert(helper.read_response(helper.string_reader(data)))
          assert.same({ 200, nil, nil, true }, { res.status,
            res.headers["transfer-encoding"], res.headers["content-length"],
            res.closed })
          assert.is_true(res.body == case[3], "the body differs")
          helper.wait_events(srv, "close false")
          clean_stop(srv)
        end)
      end

      it("close = true on the first send of a regular file: "
        .. "Content-Length", function()
        local srv = serve(FILE)
        local data = helper.raw(srv.port, get("/filec?16k1", "HTTP/1.0"))
        local res = assert(helper.read_response(helper.string_reader(data)))
        assert.same({ 200, "16385", true }, { res.status,
          res.headers["content-length"], res.body == fixture_bytes["16k1"] })
        clean_stop(srv)
      end)
    end)

    describe("a client that disconnects mid-stream: the send fails, the "
      .. "source is let go, the server goes on serving", function()
      local ERR = "send error channel closed before the message was sent"
      it("HTTP stream, an iterator: it is not called again", function()
        local srv = serve([[
routes["/flood"] = function(req)
  local name = req.query_string
  local st = { n = 0 }
  return ringlet.as_channel(req, {
    on_open = function(ch)
      probes[name] = function() return { n = st.n } end
      ch:send(function()
        st.n = st.n + 1
        return piece(st.n, 16384)
      end, { on_error = function(e) record(name, "send error", short(e)) end })
    end,
    on_close = function(ch) record(name, "close", ch:is_open()) end,
  })
end
]])
        local sock = connect(srv)
        assert(sock:send(get("/flood?d")))
        assert(sock:receive(100000))
        sock:close()
        local log = helper.wait_events(srv, "d close false", "d " .. ERR)
        assert.same(sorted({ "d close false", "d " .. ERR }), sorted(log))
        local n = stats(srv, "d").n
        socket.sleep(0.1)
        assert.equal(n, stats(srv, "d").n)
        local res = assert(helper.request(srv.port, "GET", "/plain"))
        assert.same({ 200, "plain" }, { res.status, res.body })
        clean_stop(srv)
      end)

      it("HTTP stream, a file: it is closed", function()
        local srv = serve([[
routes["/bigfile"] = function(req)
  local name = req.query_string
  return ringlet.as_channel(req, {
    on_open = function(ch)
      local f = fixture("big")
      probes[name] = function() return { file = io.type(f) } end
      ch:send(f, { on_error = function(e)
        record(name, "send error", short(e))
      end })
    end,
    on_close = function(ch) record(name, "close", ch:is_open()) end,
  })
end
]])
        local sock = connect(srv)
        assert(sock:send(get("/bigfile?e")))
        assert(sock:receive(100000))
        -- a reset, not a FIN: nothing more can be written
        assert(sock:setoption("linger", { on = true, timeout = 0 }))
        sock:close()
        local log = helper.wait_events(srv, "e close false", "e " .. ERR)
        assert.same(sorted({ "e close false", "e " .. ERR }), sorted(log))
        assert.same({ file = "closed file" }, stats(srv, "e"))
        local res = assert(helper.request(srv.port, "GET", "/plain"))
        assert.same({ 200, "plain" }, { res.status, res.body })
        clean_stop(srv)
      end)

      it_ws("WebSocket, a file: on_close sees 1006, the file is closed",
      function()
        local srv = serve([[
routes["/bigfile"] = function(req)
  local name = req.query_string
  return ringlet.as_channel(req, {
    on_open = function(ch)
      local f = fixture("big")
      probes[name] = function() return { file = io.type(f) } end
      ch:send(f, { on_error = function(e)
        record(name, "send error", short(e))
      end })
    end,
    on_close = function(ch, info)
      record(name, "close", ch:is_open(), info.code)
    end,
  })
end
]])
        local rec = helper.ws_session(srv.port, "/bigfile?x", [[
          [{"until": 2}, {"drop": true}]
        ]])
        assert.is_true(#messages(rec) >= 2)
        local log = helper.wait_events(srv, "x close false 1006", "x " .. ERR)
        assert.same(sorted({ "x close false 1006", "x " .. ERR }), sorted(log))
        assert.same({ file = "closed file" }, stats(srv, "x"))
        local res = assert(helper.request(srv.port, "GET", "/plain"))
        assert.same({ 200, "plain" }, { res.status, res.body })
        clean_stop(srv)
      end)
    end)

    it("an iterator of empty pieces never holds the loop: a request made "
      .. "meanwhile is answered before the stream ends", function()
      local srv = serve([[
routes["/empties"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      local n = 0
      ch:send(function()
        n = n + 1
        if n > 1000000 then return nil end
        return ""
      end, { close = true, on_success = function() record("stream done") end })
    end,
  })
end
routes["/quick"] = function() record("quick") return { body = "quick" } end
]])
      local sock = assert(helper.connect(srv.port))
      srv.socks[#srv.socks + 1] = sock
      sock:send(helper.request_bytes("GET", "/empties", { host = "x" }))
      assert.equal("HTTP/1.1 200 OK", sock:receive("*l")) -- it is streaming
      local res = assert(helper.request(srv.port, "GET", "/quick"))
      assert.equal("quick", res.body)
      local log = helper.wait_events(srv, "stream done")
      assert.same({ "quick", "stream done" }, log)
      clean_stop(srv)
    end)

    describe("many concurrent streams", function()
      it("32 LuaSocket clients, each an iterator that sleeps between "
        .. "pieces, read one after the other: each gets its own pieces in "
        .. "order", function()
        local srv = serve([[
routes["/many"] = function(req)
  local id = tonumber(req.query_string)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      local n = 0
      ch:send(function()
        n = n + 1
        if n > 12 then return nil end
        ringlet.sleep(1)
        return piece(id * 100 + n, 8192)
      end, { close = true, on_success = function() record("done", id) end })
    end,
  })
end
]])
        local N = 32
        local socks = {}
        for i = 1, N do
          socks[i] = connect(srv)
          assert(socks[i]:send(get("/many?" .. i)))
        end
        for i = 1, N do
          local res = assert(helper.read_response(socks[i]))
          assert.equal(12, #res.chunks)
          for k, chunk in ipairs(res.chunks) do
            assert(chunk == piece(i * 100 + k, 8192),
              ("stream %d chunk %d differs"):format(i, k))
          end
        end
        local log = helper.wait_events(srv, "done 1", "done " .. N)
        assert.equal(N, #log)
        clean_stop(srv)
      end)

      it("16 curl transfers of the 1 MB file in parallel, each byte for "
        .. "byte", function()
        local srv = serve(FILE)
        local args = { "--no-progress-meter", "--parallel", "--parallel-max",
          "16" }
        local outs = {}
        for i = 1, 16 do
          outs[i] = helper.marker_path()
          args[#args + 1] = "-o"
          args[#args + 1] = outs[i]
          args[#args + 1] = url(srv, i % 2 == 0 and "/file?1m" or "/filec?1m")
        end
        local _, code, err = helper.curl(table.unpack(args))
        local bodies = {}
        for i = 1, 16 do bodies[i] = tmpfile_read(outs[i]) end
        assert.same({ 0, "" }, { code, err })
        for i = 1, 16 do
          local want = fixture_bytes["1m"] .. (i % 2 == 0 and "tail" or "")
          assert(bodies[i] == want, "transfer " .. i .. " differs")
        end
        clean_stop(srv)
      end)
    end)
  end)
  describe("streamed sends, edge cases a review found", function()
    it("a file the user closes while it is sent is never read again: "
      .. "the send fails and the stream is cut", function()
      local srv = serve([[
routes["/closed"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      do
        local f <close> = fixture("big")
        ch:send(f, { on_error = function(e) record("send error", short(e)) end })
      end
      local other = fixture("1m") -- may take the freed FILE's place
      ringlet.timer(1000, function() other:close() end)
    end,
  })
end
]])
      local out, code = helper.curl(url(srv, "/closed"))
      assert.equal(18, code)
      assert.is_true(#out <= STALL_MAX, #out .. " bytes")
      assert(fixture_bytes.big:sub(1, #out) == out, "bytes of another file")
      assert.same({ "send error send: the file was closed while being sent" },
        helper.wait_events(srv, "send error send: the file was closed while "
          .. "being sent"))
      clean_stop(srv)
    end)

    it("a file that grows under Content-Length sends only what the head "
      .. "promised, and the connection serves its next request", function()
      local srv = serve([[
routes["/grows"] = function(req)
  local p = os.tmpname()
  local w = assert(io.open(p, "wb")) w:write(("a"):rep(200000)) w:close()
  return ringlet.as_channel(req, {
    on_open = function(ch)
      ch:send(assert(io.open(p, "rb")), { close = true })
      local a = assert(io.open(p, "ab")) a:write("EXTRA") a:close()
      ringlet.timer(2000, function() os.remove(p) end)
    end,
  })
end
]])
      local out, code = helper.curl("-w", "|%{num_connects}",
        url(srv, "/grows"), url(srv, "/plain"))
      assert.equal(0, code)
      assert.equal(("a"):rep(200000) .. "|1plain|0", out)
      clean_stop(srv)
    end)

    it("a file that shrinks under Content-Length fails the send and cuts "
      .. "the response short (curl: partial transfer)", function()
      local srv = serve([[
routes["/shrinks"] = function(req)
  local p = os.tmpname()
  local w = assert(io.open(p, "wb")) w:write(("a"):rep(1000000)) w:close()
  return ringlet.as_channel(req, {
    on_open = function(ch)
      ch:send(assert(io.open(p, "rb")), { close = true,
        on_error = function(e) record("send error", short(e)) end })
      assert(io.open(p, "wb")):close() -- truncated to nothing
      ringlet.timer(2000, function() os.remove(p) end)
    end,
  })
end
]])
      local out, code = helper.curl(url(srv, "/shrinks"))
      assert.equal(18, code)
      assert.is_true(#out < 1000000 and #out <= STALL_MAX, #out .. " bytes")
      assert.same({ "send error send: the file shrank while being sent" },
        helper.wait_events(srv, "send error send: the file shrank while "
          .. "being sent"))
      clean_stop(srv)
    end)

    it("300 sends waiting behind a stream all go, in order (no recursion "
      .. "on the C stack)", function()
      local srv = serve([[
routes["/many"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      local first = true
      ch:send(function()
        if first then first = false ringlet.sleep(50) return "start\n" end
      end)
      for i = 1, 300 do
        local done = false
        ch:send(function()
          if done then return nil end
          done = true
          return i .. "\n"
        end)
      end
      ch:send("end\n", { close = true })
    end,
  })
end
]])
      local out, code = helper.curl(url(srv, "/many"))
      assert.equal(0, code)
      local want = { "start" }
      for i = 1, 300 do want[#want + 1] = tostring(i) end
      want[#want + 1] = "end"
      assert.equal(table.concat(want, "\n") .. "\n", out)
      clean_stop(srv)
    end)

    local CLOSE_MIDWAY = [[
routes["/midway"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      local n = 0
      ch:send(function()
        n = n + 1
        if n > 5 then return nil end
        ringlet.sleep(60)
        if n == 2 and req.query_string == "raise" then error("boom") end
        return "piece" .. n
      end, { on_error = function(e) record("stream error", short(e)) end })
      ch:send("after", {
        on_success = function() record("after sent") end,
        on_error = function(e) record("after error", short(e)) end,
      })
      if req.query_string == "close" then
        ringlet.timer(150, function() ch:close() end)
      end
    end,
    on_close = function() record("close") end,
  })
end
]]

    it_ws("ch:close() on a WebSocket during a stream fails the sends "
      .. "waiting behind it too: nothing after the close goes out", function()
      local srv = serve(CLOSE_MIDWAY)
      local rec = helper.ws_session(srv.port, "/midway?close",
        [[ [{"wait": 600}] ]])
      for _, e in ipairs(rec.events) do
        assert.is_nil(e.type == "message" and e.data == "after" or nil,
          "'after' went out after the close")
      end
      local log = helper.wait_events(srv, "close")
      assert.same(sorted({ "stream error channel closed before the message "
        .. "was sent", "after error channel closed before the message was "
        .. "sent", "close" }), sorted(log))
      clean_stop(srv)
    end)

    it("an HTTP stream that fails tells the sends waiting behind it before "
      .. "on_close", function()
      local srv = serve(CLOSE_MIDWAY)
      local _, code = helper.curl(url(srv, "/midway?raise"))
      assert.equal(18, code)
      local log = helper.wait_events(srv, "close")
      assert.same({ "stream error boom",
        "after error channel closed before the message was sent", "close" },
        log)
      clean_stop(srv)
    end)
  end)
end)
