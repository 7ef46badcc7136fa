-- examples/httpkit/: http-kit's wiki examples (long polling, streaming,
-- WebSocket echo) and its chatroom handler, ported to ringlet.httpkit. Each
-- example file runs in a ringlet child process (helper.start) and is driven
-- over real sockets: LuaSocket for HTTP, Node's `ws` for WebSockets
-- (spec/node/ws_script.js through helper.ws_sessions, and
-- spec/node/ws_client.js).
--
-- The Node clients need `node` and spec/node/node_modules/ws
-- (scripts/node-deps.sh); without them those specs are pending and say so.

local helper = require "helper"
local socket = require "socket"

local it_ws = helper.it_needs("ws", it, pending)

local function start_example(name)
  return helper.start(helper.repo_file("examples/httpkit/" .. name))
end

describe("examples/httpkit/websocket.lua", function()
  it_ws("echoes text as text and binary as binary, answers a ping, and a "
    .. "close 1000 with 1000", function()
    local defer = helper.cleanup(finally)
    local srv = start_example("websocket.lua")
    defer(function() srv:stop() end)
    local text = "hello, http-kit é"
    local results = helper.ws_sessions(srv.port, { {
      path = "/",
      steps = {
        { send = text }, { binary = "00ff10" }, { ["until"] = 2 },
        { ping = "are you there" }, { close = 1000, reason = "done" },
      },
    } })
    local r = results[1]
    assert.is_true(r.opened)
    assert.same({ { false, text }, { true, "\0\255\16" } }, helper.ws_messages(r))
    assert.equal("are you there", helper.ws_data(r, "pong")[1])
    assert.equal(1000, r.close_code)
    helper.assert_clean_stop(srv)
  end)

  it_ws("passes ws_client.js: every size of text and binary, fragments, "
    .. "ping, close", function()
    local defer = helper.cleanup(finally)
    local srv = start_example("websocket.lua")
    defer(function() srv:stop() end)
    helper.assert_ws_client(srv.port)
    helper.assert_clean_stop(srv)
  end)
end)

describe("examples/httpkit/chatroom.lua", function()
  it("welcomes a plain GET", function()
    local defer = helper.cleanup(finally)
    local srv = start_example("chatroom.lua")
    defer(function() srv:stop() end)
    local res = assert(helper.request(srv.port, "GET", "/"))
    assert.equal(200, res.status)
    assert.equal("Welcome to the chatroom! JS client connecting...", res.body)
    helper.assert_clean_stop(srv)
  end)

  it_ws("prints on-open, each message and on-close with the close status",
  function()
    local defer = helper.cleanup(finally)
    local srv = start_example("chatroom.lua")
    defer(function() srv:stop() end)
    helper.ws_sessions(srv.port, {
      { path = "/", steps = {
        { send = "hi there" }, { send = "second" }, { wait = 50 },
        { close = 1000 },
      } },
      { path = "/", steps = { { close = 1001 } } },
    })
    -- ws reports the close once the server has closed the TCP connection,
    -- which is when the server's on_close runs: all of it is printed now
    helper.assert_clean_stop(srv)
    local out = srv:stdout()
    local want = table.concat({
      "on-open: ringlet.channel (websocket, open)",
      "on-receive: hi there",
      "on-receive: second",
      "on-close: normal",
      "on-open: ringlet.channel (websocket, open)",
      "on-close: going-away",
    }, "\n") .. "\n"
    assert.equal(want, out)
  end)
end)

describe("examples/httpkit/long_polling.lua", function()
  it("answers every waiting client with the event's data, as one "
    .. "JSON response, then closes it", function()
    local defer = helper.cleanup(finally)
    local srv = start_example("long_polling.lua")
    defer(function() srv:stop() end)
    local clients = {}
    for i = 1, 2 do
      local sock = assert(helper.connect(srv.port))
      defer(function() sock:close() end)
      assert(sock:send(helper.request_bytes("GET", "/poll", { Host = "x" })))
      clients[i] = sock
    end
    -- The polls may not have reached the handler yet: publish until both
    -- have had the event (each gets it once).
    local delivered = 0
    assert.is_true(helper.wait_until(function()
      local res = assert(helper.request(srv.port, "POST", "/event", nil,
        '{"hello":"polling"}'))
      assert.equal(200, res.status)
      delivered = delivered + tonumber(res.body:match("delivered to (%d+)"))
      return delivered >= 2
    end))
    assert.equal(2, delivered)
    for _, sock in ipairs(clients) do
      local res = assert(helper.read_response(sock))
      assert.equal(200, res.status)
      assert.equal("application/json; charset=utf-8", res.headers["content-type"])
      assert.equal(tostring(#'{"hello":"polling"}'), res.headers["content-length"])
      assert.is_nil(res.headers["transfer-encoding"])
      assert.equal('{"hello":"polling"}', res.body)
    end
    local res = assert(helper.request(srv.port, "POST", "/event", nil, "x"))
    assert.equal("delivered to 0 client(s)\n", res.body)
    helper.assert_clean_stop(srv)
  end)
end)

describe("examples/httpkit/streaming.lua", function()
  it("streams ten messages 200 ms apart and closes the stream after 10 s; "
    .. "on-close prints who closed", function()
    local defer = helper.cleanup(finally)
    local srv = start_example("streaming.lua")
    defer(function() srv:stop() end)

    -- A client that leaves after the first message
    local early = assert(helper.connect(srv.port))
    assert(early:send(helper.request_bytes("GET", "/", { Host = "x" })))
    local line = early:receive("*l")
    assert.equal("HTTP/1.1 200 OK", line)
    early:close()

    local sock = assert(helper.connect(srv.port))
    defer(function() sock:close() end)
    local t0 = socket.gettime()
    assert(sock:send(helper.request_bytes("GET", "/", { Host = "x" })))
    local res = assert(helper.read_response(sock))
    local elapsed = socket.gettime() - t0
    assert.equal(200, res.status)
    assert.equal("chunked", res.headers["transfer-encoding"])
    assert.equal("text/html; charset=utf-8", res.headers["content-type"])
    local want = {}
    for id = 0, 9 do want[#want + 1] = "message from server #" .. id end
    assert.same(want, res.chunks)
    assert(elapsed > 9.5 and elapsed < 14,
      "the stream ended after " .. elapsed .. " s, not about 10 s")
    helper.assert_clean_stop(srv)
    local out = srv:stdout()
    assert.truthy(out:find("channel closed, client-close\n", 1, true), out)
    assert.truthy(out:find("channel closed, server-close\n", 1, true), out)
  end)

  it("sends its messages 200 ms apart", function()
    local defer = helper.cleanup(finally)
    local srv = start_example("streaming.lua")
    defer(function() srv:stop() end)
    local sock = assert(helper.connect(srv.port))
    defer(function() sock:close() end)
    assert(sock:send(helper.request_bytes("GET", "/", { Host = "x" })))
    assert.equal("HTTP/1.1 200 OK", sock:receive("*l"))
    repeat
      local l = assert(sock:receive("*l"))
    until l == "" -- the end of the head
    -- each chunk: size line, data, CRLF; note when each arrives
    local times = {}
    for _ = 1, 10 do
      local size = tonumber(assert(sock:receive("*l")), 16)
      local data = assert(sock:receive(size + 2))
      times[#times + 1] = socket.gettime()
      assert.truthy(data:match("^message from server #%d\r\n$"), data)
    end
    local span = times[10] - times[1]
    assert(span > 1.5 and span < 3,
      "ten messages took " .. span .. " s, not about 1.8 s")
    sock:close()
    helper.assert_clean_stop(srv)
    assert.equal("channel closed, client-close\n", srv:stdout())
  end)
end)
