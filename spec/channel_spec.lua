-- ringlet.as_channel over plain HTTP: chunked streaming and long-polling.
-- (WebSocket channels have their own spec.)
--
-- Every server runs in a child process (helper.start). An app cannot hand
-- its callbacks' results to busted directly, so each app records events in a
-- log kept in its upvalues, and GET /events answers with that log,
-- serialized. Waits are bounded by helper.TEST_TIMEOUT; nothing is timed.

local helper = require "helper"

-- The part every test app shares: helper.EVENT_LOG (record(...) appends
-- one event to the log, routes maps a path to a handler, GET /events
-- returns the log) and GET /plain.
local PRELUDE = [[
local ringlet = require "ringlet"
]] .. helper.EVENT_LOG .. [[
routes["/plain"] = function()
  return {
    status = 200,
    headers = { ["content-type"] = "text/plain" },
    body = "plain",
  }
end
]]

-- Starts an app made of the prelude, the given route definitions and the
-- dispatcher. The caller stops it in `finally`.
local function start(routes_source)
  return helper.start(PRELUDE .. routes_source .. "\n" .. helper.DISPATCH)
end

local sorted = helper.sorted

local function get(path)
  return helper.request_bytes("GET", path, { host = "127.0.0.1" })
end

-- Reads a response head from sock: status, lower-cased headers.
-- (helper.read_response reads a whole response; a stream that never ends
-- needs its head and chunks one at a time.)
local function read_head(sock)
  local line = assert(sock:receive("*l"))
  local status = tonumber(line:match("^HTTP/1%.1 (%d%d%d)"))
  assert(status, "bad status line: " .. line)
  local headers = {}
  while true do
    local h = assert(sock:receive("*l"))
    if h == "" then break end
    local name, value = h:match("^([^:]+):%s*(.-)%s*$")
    headers[name:lower()] = value
  end
  return status, headers
end

-- Reads one chunk of a chunked body: its data, or "" for the last chunk
-- (whose trailer section is consumed too).
local function read_chunk(sock)
  local line = assert(sock:receive("*l"))
  local size = tonumber(line:match("^(%x+)"), 16)
  assert(size, "bad chunk size line: " .. line)
  if size == 0 then
    repeat
      local trailer = assert(sock:receive("*l"))
    until trailer == ""
    return ""
  end
  local data = assert(sock:receive(size))
  assert.equal("\r\n", sock:receive(2))
  return data
end

describe("ringlet.as_channel over HTTP", function()
  local TWO_CHUNKS = [[
routes["/two"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      ch:send("hello")
      ch:send("world", { close = true })
    end,
  })
end
]]

  it("sends each message as one chunk and ends with the zero chunk",
  function()
    local defer = helper.cleanup(finally)
    local srv = start(TWO_CHUNKS)
    defer(function() srv:stop() end)
    local sock = assert(helper.connect(srv.port))
    defer(function() sock:close() end)

    assert(sock:send(get("/two")))
    local status, headers = read_head(sock)
    assert.equal(200, status)
    assert.equal("chunked", headers["transfer-encoding"])
    assert.is_nil(headers["content-length"])
    local expected = "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n"
    assert.equal(expected, sock:receive(#expected))

    helper.assert_clean_stop(srv)
  end)

  it("keeps the connection open for the next request after the stream ends",
  function()
    local defer = helper.cleanup(finally)
    local srv = start(TWO_CHUNKS)
    defer(function() srv:stop() end)
    local sock = assert(helper.connect(srv.port))
    defer(function() sock:close() end)

    assert(sock:send(get("/two")))
    local res = assert(helper.read_response(sock))
    assert.same({ 200, { "hello", "world" } }, { res.status, res.chunks })

    assert(sock:send(get("/plain")))
    res = assert(helper.read_response(sock))
    assert.same({ 200, "plain" }, { res.status, res.body })

    helper.assert_clean_stop(srv)
  end)

  it("streams to curl, which sees the chunk framing with --raw", function()
    local srv = start(TWO_CHUNKS)
    finally(function() srv:stop() end)
    local url = "http://127.0.0.1:" .. srv.port .. "/two"

    local out, code, err = helper.curl("-N", "--raw", url)
    assert.same({ "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", 0, "" },
      { out, code, err })
    out, code, err = helper.curl("-N", url)
    assert.same({ "helloworld", 0, "" }, { out, code, err })

    helper.assert_clean_stop(srv)
  end)

  it("applies the status and headers the handler set on the response",
  function()
    local srv = start([[
routes["/custom"] = function(req)
  local res = ringlet.as_channel(req, {
    on_open = function(ch)
      ch:send("created")
      ch:close()
    end,
  })
  res.status = 201
  res.headers = res.headers or {}
  res.headers["content-type"] = "text/plain"
  res.headers["x-test"] = "yes"
  return res
end
]])
    finally(function() srv:stop() end)

    local res = assert(helper.request(srv.port, "GET", "/custom"))
    assert.same({ 201, "text/plain", "yes", "chunked", { "created" } }, {
      res.status, res.headers["content-type"], res.headers["x-test"],
      res.headers["transfer-encoding"], res.chunks,
    })

    helper.assert_clean_stop(srv)
  end)

  it("takes status, headers and the first data from a table on the first send",
  function()
    local srv = start([[
routes["/table"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      ch:send({
        status = 202,
        headers = { ["content-type"] = "text/plain", ["x-first"] = "1" },
        body = "first",
      })
      ch:send("second", { close = true })
    end,
  })
end
]])
    finally(function() srv:stop() end)

    local res = assert(helper.request(srv.port, "GET", "/table"))
    assert.same({ 202, "text/plain", "1", "chunked", { "first", "second" } }, {
      res.status, res.headers["content-type"], res.headers["x-first"],
      res.headers["transfer-encoding"], res.chunks,
    })

    helper.assert_clean_stop(srv)
  end)

  it("raises an error for a table on a later send", function()
    local srv = start([[
routes["/later-table"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      ch:send("a")
      local ok, err = pcall(ch.send, ch, { status = 500, body = "b" })
      record("later table", ok, type(err))
      ch:send("c", { close = true })
    end,
  })
end
]])
    finally(function() srv:stop() end)

    local res = assert(helper.request(srv.port, "GET", "/later-table"))
    assert.same({ 200, { "a", "c" } }, { res.status, res.chunks })
    assert.same({ "later table false string" }, helper.events(srv))

    helper.assert_clean_stop(srv)
  end)

  it("answers a long-poll with a plain response when the first send closes",
  function()
    local defer = helper.cleanup(finally)
    local srv = start([[
routes["/poll"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      -- Answered later, from a timer, as a long-poll is.
      ringlet.timer(20, function()
        record("send", ch:send("done", { close = true }))
      end)
    end,
    on_close = function(ch, info)
      record("close", ch:is_open(), info.code, info.reason)
    end,
  })
end
]])
    defer(function() srv:stop() end)
    local sock = assert(helper.connect(srv.port))
    defer(function() sock:close() end)

    assert(sock:send(get("/poll")))
    local res = assert(helper.read_response(sock))
    assert.same({ 200, "4", nil, "done" }, {
      res.status, res.headers["content-length"],
      res.headers["transfer-encoding"], res.body,
    })
    -- A plain response leaves the connection usable.
    assert(sock:send(get("/plain")))
    res = assert(helper.read_response(sock))
    assert.same({ 200, "plain" }, { res.status, res.body })

    assert.same({ "close false nil nil", "send true" },
      sorted(helper.wait_events(srv, "close false nil nil")))

    helper.assert_clean_stop(srv)
  end)

  it("takes status and headers from a table sent with close on first send",
  function()
    local srv = start([[
routes["/poll-table"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      ch:send({
        status = 203,
        headers = { ["content-type"] = "text/plain", ["x-poll"] = "1" },
        body = "answer",
      }, { close = true })
    end,
  })
end
]])
    finally(function() srv:stop() end)

    local res = assert(helper.request(srv.port, "GET", "/poll-table"))
    assert.same({ 203, "text/plain", "1", "6", nil, "answer" }, {
      res.status, res.headers["content-type"], res.headers["x-poll"],
      res.headers["content-length"], res.headers["transfer-encoding"],
      res.body,
    })

    helper.assert_clean_stop(srv)
  end)

  it("calls on_open once, after the handler returned", function()
    local srv = start([[
routes["/order"] = function(req)
  record("handler start")
  local res = ringlet.as_channel(req, {
    on_open = function(ch)
      record("open", ch:is_open())
      ch:send("x", { close = true })
    end,
    on_close = function(ch, info)
      record("close", ch:is_open(), info.code, info.reason)
    end,
  })
  record("handler end")
  return res
end
]])
    finally(function() srv:stop() end)

    local res = assert(helper.request(srv.port, "GET", "/order"))
    assert.same({ 200, "x" }, { res.status, res.body })
    assert.same(
      { "handler start", "handler end", "open true", "close false nil nil" },
      helper.wait_events(srv, "close false nil nil"))

    helper.assert_clean_stop(srv)
  end)

  it("returns true from send and calls on_success once the bytes are written",
  function()
    local srv = start([[
routes["/success"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      local sent = ch:send("payload", {
        on_success = function()
          record("success", ch:buffered_amount())
          ch:close()
        end,
        on_error = function(err) record("error", err) end,
      })
      record("send", sent, type(ch:buffered_amount()))
    end,
    on_close = function() record("on_close") end,
  })
end
]])
    finally(function() srv:stop() end)

    local res = assert(helper.request(srv.port, "GET", "/success"))
    assert.same({ 200, { "payload" } }, { res.status, res.chunks })
    -- Whether on_success runs inside send or later is not specified: only
    -- that each happens exactly once, and nothing is left queued by then.
    assert.same({ "on_close", "send true number", "success 0" },
      sorted(helper.wait_events(srv, "on_close")))

    helper.assert_clean_stop(srv)
  end)

  it("closes once: close returns true, then false; send then returns nil",
  function()
    local srv = start([[
routes["/close"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      ch:send("only")
      record("is_open before", ch:is_open())
      record("close", ch:close())
      record("close again", ch:close())
      record("is_open after", ch:is_open())
      record("send after close", ch:send("late", {
        on_success = function() record("late success") end,
      }))
    end,
    on_close = function(ch, info)
      record("on_close", ch:is_open(), info.code, info.reason)
    end,
  })
end
]])
    finally(function() srv:stop() end)

    local res = assert(helper.request(srv.port, "GET", "/close"))
    assert.same({ 200, { "only" } }, { res.status, res.chunks })
    local log = helper.wait_events(srv, "on_close false nil nil")
    -- on_close may run inside close() or just after it.
    assert.same(sorted({
      "is_open before true", "close true", "close again false",
      "is_open after false", "send after close nil",
      "on_close false nil nil",
    }), sorted(log))

    helper.assert_clean_stop(srv)
  end)

  it("knows its request and that it is not a WebSocket", function()
    local srv = start([[
routes["/introspect"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      local orig = ch:originating_request()
      record("request", orig.uri, orig.query_string, orig.request_method)
      record("is_websocket", ch:is_websocket())
      record("is_open", ch:is_open())
      record("buffered_amount", type(ch:buffered_amount()))
      ch:send("ok", { close = true })
    end,
  })
end
]])
    finally(function() srv:stop() end)

    local res = assert(helper.request(srv.port, "GET", "/introspect?x=1"))
    assert.same({ 200, "ok" }, { res.status, res.body })
    assert.same({
      "request /introspect x=1 get", "is_websocket false", "is_open true",
      "buffered_amount number",
    }, helper.events(srv))

    helper.assert_clean_stop(srv)
  end)

  local HOLD = [[
local held -- the channel of the last /hold request
routes["/hold"] = function(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      held = ch
      ch:send("first")
    end,
    on_close = function(ch, info)
      record("close", ch:is_open(), info.code, info.reason)
    end,
  })
end
routes["/send-held"] = function()
  local sent = held:send("late", {
    on_success = function() record("late success") end,
  })
  return {
    status = 200,
    headers = { ["content-type"] = "text/plain" },
    body = tostring(sent) .. " " .. tostring(held:is_open()),
  }
end
]]

  for _, how in ipairs({ "closes", "resets" }) do
    it("notices a client that " .. how .. " the connection mid-stream",
    function()
      local defer = helper.cleanup(finally)
      local srv = start(HOLD)
      defer(function() srv:stop() end)
      local sock = assert(helper.connect(srv.port))
      defer(function() sock:close() end)

      assert(sock:send(get("/hold")))
      local status, headers = read_head(sock)
      assert.same({ 200, "chunked" }, { status, headers["transfer-encoding"] })
      assert.equal("first", read_chunk(sock))
      if how == "resets" then
        -- SO_LINGER with a zero timeout: close() sends RST, not FIN.
        assert(sock:setoption("linger", { on = true, timeout = 0 }))
      end
      sock:close()

      assert.same({ "close false nil nil" },
        helper.wait_events(srv, "close false nil nil"))
      local res = assert(helper.request(srv.port, "GET", "/send-held"))
      assert.same({ 200, "nil false" }, { res.status, res.body })
      -- on_close did not fire again, and the late send's on_success never.
      assert.same({ "close false nil nil" }, helper.events(srv))

      helper.assert_clean_stop(srv)
    end)
  end

  it("closes a stream open longer than opts.timeout", function()
    local defer = helper.cleanup(finally)
    local srv = start([[
routes["/timeout"] = function(req)
  return ringlet.as_channel(req, {
    timeout = 100,
    on_open = function(ch) ch:send("tick") end,
    on_close = function(ch, info)
      record("close", ch:is_open(), info.code, info.reason)
    end,
  })
end
]])
    defer(function() srv:stop() end)

    local sock = assert(helper.connect(srv.port))
    defer(function() sock:close() end)

    assert(sock:send(get("/timeout")))
    -- read_response returns only once the zero chunk has arrived.
    local res = assert(helper.read_response(sock))
    assert.same({ 200, { "tick" } }, { res.status, res.chunks })
    assert.same({ "close false nil nil" },
      helper.wait_events(srv, "close false nil nil"))

    helper.assert_clean_stop(srv)
  end)

  it("raises an error naming an unknown or mistyped option", function()
    local srv = start([[
local function noop() end
local cases = {
  { on_opne = noop },
  { timeout = "soon" },
  { on_open = 42 },
  { on_close = "x" },
  { on_error = true },
}
routes["/bad-options"] = function(req)
  local results = {}
  for i, opts in ipairs(cases) do
    local ok, err = pcall(ringlet.as_channel, req, opts)
    results[i] = { ok = ok, err = tostring(err) }
  end
  return {
    status = 200,
    headers = { ["content-type"] = "text/plain" },
    body = serialize(results),
  }
end
]])
    finally(function() srv:stop() end)

    local res = assert(helper.request(srv.port, "GET", "/bad-options"))
    assert.equal(200, res.status)
    local results = helper.decode(res.body)
    local names = { "on_opne", "timeout", "on_open", "on_close", "on_error" }
    for i, name in ipairs(names) do
      assert.is_false(results[i].ok, name .. " was accepted")
      assert(results[i].err:find(name, 1, true),
        "error for " .. name .. " does not name it: " .. results[i].err)
    end
    -- The server still serves.
    res = assert(helper.request(srv.port, "GET", "/plain"))
    assert.same({ 200, "plain" }, { res.status, res.body })

    helper.assert_clean_stop(srv)
  end)
end)

describe("examples", function()
  local function source(name)
    local f = assert(io.open("examples/" .. name, "rb"))
    local text = f:read("a")
    f:close()
    return text
  end

  it("hello.lua says Hello, World!", function()
    local srv = helper.start(source("hello.lua"))
    finally(function() srv:stop() end)

    local res = assert(helper.request(srv.port, "GET", "/"))
    assert.same({ 200, "text/plain", "Hello, World!" },
      { res.status, res.headers["content-type"], res.body })

    helper.assert_clean_stop(srv)
  end)

  it("streaming.lua streams messages until the client leaves", function()
    local defer = helper.cleanup(finally)
    local srv = helper.start(source("streaming.lua"))
    defer(function() srv:stop() end)
    local sock = assert(helper.connect(srv.port))
    defer(function() sock:close() end)

    assert(sock:send(get("/")))
    local status, headers = read_head(sock)
    assert.same({ 200, "chunked" }, { status, headers["transfer-encoding"] })
    assert.equal("message from server #0\n", read_chunk(sock))
    assert.equal("message from server #1\n", read_chunk(sock))
    sock:close()

    -- on_close cancels the stream's timers; nothing fails afterwards.
    helper.assert_clean_stop(srv)
  end)

  it("long_polling.lua answers a waiting poll with the published message",
  function()
    local defer = helper.cleanup(finally)
    local srv = helper.start(source("long_polling.lua"))
    defer(function() srv:stop() end)
    local poller = assert(helper.connect(srv.port))
    defer(function() poller:close() end)

    assert(poller:send(get("/poll")))
    -- The poll may not be registered yet: publish until it was delivered.
    local delivered = helper.wait_until(function()
      local res = assert(helper.request(srv.port, "POST", "/publish", {},
        "hi there"))
      return res.body == "delivered to 1 client(s)\n"
    end)
    assert.is_truthy(delivered)
    local res = assert(helper.read_response(poller))
    assert.same({ 200, "8", "hi there" },
      { res.status, res.headers["content-length"], res.body })

    res = assert(helper.request(srv.port, "GET", "/"))
    assert.same({ 200, "text/html; charset=utf-8" },
      { res.status, res.headers["content-type"] })

    helper.assert_clean_stop(srv)
  end)
end)
