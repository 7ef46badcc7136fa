-- ringlet.httpkit (lua/ringlet/httpkit.lua): http-kit's server API over the
-- core's channels, every function over real sockets.
--
-- The app under test (APP below) runs in a ringlet child process
-- (helper.start). Its callbacks record events in a log; GET /events
-- answers with the log, serialized, and every event is also printed to
-- stdout, so what happens while the server stops can be read after it
-- exits. WebSocket clients: Node's `ws` (spec/node/ws_script.js through
-- helper.ws_sessions) and the raw LuaSocket client spec/wsclient.lua, for
-- frames `ws` will not send.
-- Every wait is bounded by helper.TEST_TIMEOUT.

local helper = require "helper"
local socket = require "socket"
local wsc = require "wsclient"

local it_ws = helper.it_needs("ws", it, pending)

-- ---------------------------------------------------------------------------
-- The app under test

local APP = [=[
local ringlet = require "ringlet"
local httpkit = require "ringlet.httpkit"
]=] .. helper.SERIALIZER .. [=[
local log = {}
local function record(...)
  local t = table.pack(...)
  for i = 1, t.n do t[i] = tostring(t[i]) end
  local line = table.concat(t, " ", 1, t.n)
  log[#log + 1] = line
  io.stdout:write(line, "\n")
  io.stdout:flush()
end
local function text(body, status)
  return { status = status or 200, headers = { ["content-type"] = "text/plain" },
           body = body }
end
-- "binary" only for a value of the one binary constructor
-- (ringlet.websocket's): {data = s, binary = true} with its metatable
local BINARY_MT = getmetatable(require("ringlet.websocket").binary(""))
local function kind(m)
  if httpkit.is_binary(m) then
    return getmetatable(m) == BINARY_MT and m.binary == true and "binary"
      or "binary without the shared metatable"
  end
  return type(m)
end

local FILE = os.tmpname()
do
  local f = assert(io.open(FILE, "wb"))
  f:write("file\0bytes")
  f:close()
end

local routes = {}
routes["/events"] = function() return text(serialize(log)) end

-- WebSockets ---------------------------------------------------------------

-- echo, keeping text as text and binary as binary; id = the query string
routes["/ws/echo"] = function(req)
  local id = req.query_string or "-"
  return httpkit.with_channel(req, function(ch)
    httpkit.on_close(ch, function(status) record("close", id, status) end)
    httpkit.on_ping(ch, function(data) record("ping", id, data) end)
    httpkit.on_receive(ch, function(m)
      record("recv", id, kind(m), tostring(m))
      if m == "close please" then
        record("close()", id, httpkit.close(ch), httpkit.close(ch),
          httpkit.open(ch), httpkit.send(ch, "late"))
      elseif m == "send and close" then
        record("send-close", id, httpkit.send(ch, "bye", true),
          httpkit.open(ch), httpkit.send(ch, "late"), httpkit.close(ch))
      else
        httpkit.send(ch, m)
      end
    end)
  end)
end

-- every kind of data, sent before and after the channel opens
routes["/ws/send"] = function(req)
  return httpkit.with_channel(req, function(ch)
    httpkit.on_close(ch, function(status) record("close send", status) end)
    record("before open", httpkit.open(ch), httpkit.websocket(ch),
      httpkit.send(ch, "queued text"))
    httpkit.schedule_task(0, function()
      record("sends",
        httpkit.send(ch, "text"),
        httpkit.send(ch, httpkit.binary("\0\1\2\255")),
        httpkit.send(ch, { status = 500, headers = { ["x-h"] = "v" },
                           body = "map body" }),
        httpkit.send(ch, io.open(FILE, "rb")),
        httpkit.send(ch, nil),
        httpkit.send(ch, "explicit false", false),
        -- the literal, and the other modules' constructors
        httpkit.send(ch, { data = "literal\0", binary = true }),
        httpkit.send(ch, require("ringlet.websocket").binary("ws")),
        httpkit.send(ch, require("ringlet.async").binary("async")),
        httpkit.send(ch, { status = 200, body = { data = "in a map", binary = true } }),
        httpkit.open(ch))
      local ok, err = pcall(httpkit.send, ch, { "an", "array" })
      record("array", ok, err and err:match("must be a string") ~= nil)
    end)
    httpkit.on_receive(ch, function(m)
      if m == "done" then
        record("last", httpkit.send(ch, httpkit.binary("last"), true))
      end
    end)
  end)
end

routes["/ws/as"] = function(req)
  local id = req.query_string or "-"
  local seen
  return httpkit.as_channel(req, {
    init = function(ch)
      seen = ch
      record("init", id, httpkit.websocket(ch))
    end,
    on_open = function(ch)
      record("open", id, ch == seen, httpkit.open(ch))
      httpkit.send(ch, "hello")
    end,
    on_receive = function(ch, m)
      record("recv", id, ch == seen, kind(m), tostring(m))
      httpkit.send(ch, m)
    end,
    on_ping = function(ch, data) record("ping", id, ch == seen, data) end,
    on_close = function(ch, status) record("close", id, ch == seen, status) end,
    on_handshake_error = function() record("handshake error") end,
  })
end

routes["/ws/twice"] = function(req)
  return httpkit.with_channel(req, function(ch)
    local f = function() end
    httpkit.on_receive(ch, f)
    httpkit.on_close(ch, f)
    httpkit.on_ping(ch, f)
    local a, ea = pcall(httpkit.on_receive, ch, f)
    local b, eb = pcall(httpkit.on_close, ch, f)
    local c, ec = pcall(httpkit.on_ping, ch, f)
    local d, ed = pcall(httpkit.on_receive, {}, f)
    record("twice", a, b, c, d,
      ea:match("already has a handler") ~= nil,
      eb:match("already has a handler") ~= nil,
      ec:match("already has a handler") ~= nil,
      ed:match("not a channel made by") ~= nil)
  end)
end

-- HTTP channels ---------------------------------------------------------------

routes["/http/whole"] = function(req)
  return httpkit.with_channel(req, function(ch)
    httpkit.on_close(ch, function(status) record("close whole", status) end)
    httpkit.schedule_task(0, function()
      record("whole", httpkit.websocket(ch), httpkit.send(ch, "whole body"),
        httpkit.open(ch), httpkit.send(ch, "more"), httpkit.close(ch))
    end)
  end)
end

routes["/http/stream"] = function(req)
  return httpkit.with_channel(req, function(ch)
    httpkit.on_close(ch, function(status) record("close stream", status) end)
    httpkit.schedule_task(0, function()
      record("stream",
        httpkit.send(ch, { status = 201, headers = { ["x-first"] = "1" },
                           body = "one\n" }, false),
        httpkit.send(ch, { status = 500, headers = { ["x-second"] = "2" },
                           body = "two\n" }, false),
        httpkit.send(ch, httpkit.binary("three\n"), false),
        httpkit.send(ch, { "fo", "ur\n" }, false),
        httpkit.send(ch, { data = "five\n", binary = true }, false),
        httpkit.send(ch, require("ringlet.async").binary("six\n"), false),
        httpkit.send(ch, { status = 404 }, false),
        httpkit.open(ch),
        httpkit.close(ch), httpkit.close(ch), httpkit.open(ch),
        httpkit.send(ch, "late", false))
    end)
  end)
end

-- sends made before the channel opens are queued, and count
routes["/http/pending"] = function(req)
  return httpkit.with_channel(req, function(ch)
    httpkit.on_close(ch, function(status) record("close pending", status) end)
    record("pending", httpkit.open(ch), httpkit.websocket(ch),
      httpkit.send(ch, { status = 202, headers = { ["x-p"] = "1" },
                         body = "early," }, false),
      httpkit.send(ch, "late"), httpkit.open(ch), httpkit.send(ch, "x"),
      httpkit.close(ch))
  end)
end

routes["/http/close-first"] = function(req)
  return httpkit.with_channel(req, function(ch)
    record("close-first", httpkit.close(ch), httpkit.close(ch),
      httpkit.send(ch, "x"))
  end)
end

routes["/http/wait"] = function(req)
  local id = req.query_string or "-"
  return httpkit.with_channel(req, function(ch)
    httpkit.on_close(ch, function(status)
      record("close", id, status, httpkit.open(ch), httpkit.send(ch, "x"),
        httpkit.close(ch))
    end)
    record("waiting", id)
  end)
end

routes["/http/late"] = function(req)
  return httpkit.with_channel(req, function(ch)
    httpkit.schedule_task(0, function()
      httpkit.send(ch, "done")
      httpkit.on_close(ch, function(status) record("late on_close", status) end)
    end)
  end)
end

routes["/http/nobody"] = function(req)
  return httpkit.with_channel(req, function(ch)
    httpkit.schedule_task(0, function()
      record("nobody", req.request_method,
        httpkit.send(ch, { status = tonumber(req.query_string) or 200,
                           body = "hidden" }, false),
        httpkit.open(ch))
    end)
  end)
end

routes["/http/interim-first"] = function(req)
  return httpkit.with_channel(req, function(ch)
    httpkit.schedule_task(0, function()
      local ok, err = pcall(httpkit.send, ch, { status = 100, body = "x" })
      record("interim", ok, (tostring(err):match("status 1xx[^:]*")))
      -- the head did not go out: this first send still carries one
      httpkit.send(ch, { status = 201, headers = { ["x-a"] = "1" },
                         body = "made" })
    end)
  end)
end

routes["/http/typed"] = function(req)
  local resp = httpkit.with_channel(req, function(ch)
    httpkit.send(ch, "plain text")
  end)
  resp.headers = { ["content-type"] = "text/plain; charset=utf-8" }
  return resp
end

routes["/http/as"] = function(req)
  local seen
  return httpkit.as_channel(req, {
    init = function(ch) seen = ch end,
    on_open = function(ch)
      record("as open", ch == seen, httpkit.open(ch), httpkit.websocket(ch))
      httpkit.send(ch, { status = 200, headers = { ["x-as"] = "1" },
                         body = "as body" })
    end,
    on_receive = function() record("as receive: never on HTTP") end,
    on_close = function(ch, status) record("as close", ch == seen, status) end,
  })
end

-- timers ------------------------------------------------------------------------

routes["/timer"] = function()
  local fired = {}
  local t1 = httpkit.schedule_task(30, function() fired[#fired + 1] = "t1" end)
  local c1, c2 = httpkit.cancel(t1), httpkit.cancel(t1)
  local t2 = httpkit.schedule_task(10, function() fired[#fired + 1] = "t2" end)
  ringlet.sleep(60)
  local c3 = httpkit.cancel(t2)
  local t3 = httpkit.schedule_task(20.5, function() fired[#fired + 1] = "t3" end)
  local c4 = t3:cancel()
  httpkit.schedule_task(-5, function() fired[#fired + 1] = "t4" end)
  ringlet.sleep(60)
  return text(serialize({ c1, c2, c3, c4, fired }))
end

routes["/with_timeout"] = function()
  local out = {}
  local function f(first, ...)
    out[#out + 1] = table.concat({ first, ... }, "+")
    return "f:" .. first
  end
  -- called in time: f runs, the timeout does not
  local r1 = httpkit.with_timeout(f, 40, function() out[#out + 1] = "timeout 1" end,
    function(g) return g("a", "b"), "body" end)
  -- called too late: the timeout ran, f does not, the call returns nil
  local g2 = httpkit.with_timeout(f, 10, function() out[#out + 1] = "timeout 2" end)
  ringlet.sleep(80)
  local r2 = g2("c")
  -- called twice: the second call finds the timeout already cancelled
  local g3 = httpkit.with_timeout(f, 40, function() out[#out + 1] = "timeout 3" end)
  local r3, r4 = g3("d"), g3("e")
  ringlet.sleep(80)
  return text(serialize({ r1 = r1, r2 = r2, r3 = r3, r4 = r4, out = out }))
end

-- servers -----------------------------------------------------------------------

local function inner(req)
  return text("inner " .. req.request_method .. " " .. req.uri)
end

local srv = assert(httpkit.run_server(inner, {
  ip = "127.0.0.1", port = 0, legacy_return_value = false,
  thread = 4, queue_size = 100, max_body = 16, max_ws = 1024, max_line = 128,
  proxy_protocol = "disable", idle_timeout = 5000, header_timeout = 5000,
  worker_name_prefix = "w-", worker_pool = {}, error_logger = print,
  warn_logger = print, event_logger = print, event_names = {},
  server_header = "http-kit", address_finder = print, channel_factory = print,
  pool_opts = {}, n_threads = 2, n_min_threads = 1, n_max_threads = 8,
  prefix = "p-", allow_virtual = false,
}))
-- GET /slow?MS answers after MS ms (a request that holds a stop)
local function slow_inner(req)
  if req.uri == "/slow" then
    record("slow start")
    ringlet.sleep(tonumber(req.query_string) or 500)
    record("slow end")
    return text("slow done")
  end
  return inner(req)
end
local srv2 = assert(httpkit.run_server(slow_inner, {
  ip = "127.0.0.1", port = 0, legacy_return_value = false }))
local stop = assert(httpkit.run_server(inner, { ip = "127.0.0.1", port = 0 }))
local stop2 = assert(httpkit.run_server(inner, {
  ip = "127.0.0.1", port = 0, legacy_return_value = true }))

local async = assert(httpkit.run_server(function(req, respond, raise)
  if req.uri == "/raise" then
    raise("boom")
  elseif req.uri == "/error" then
    error("thrown")
  else
    httpkit.schedule_task(20, function() respond(text("async " .. req.uri)) end)
  end
end, { ip = "127.0.0.1", port = 0, ring_async = true, legacy_return_value = false }))

routes["/srv/info"] = function()
  return text(serialize({
    port = httpkit.server_port(srv), method_port = srv:server_port(),
    status = httpkit.server_status(srv), method_status = srv:server_status(),
    legacy_type = type(stop), legacy_port = httpkit.server_port(stop),
    legacy_status = httpkit.server_status(stop),
    port2 = srv2:server_port(), legacy2_type = type(stop2),
    async_port = async:server_port(),
  }))
end

routes["/srv/stop"] = function(req)
  local p = httpkit.server_stop(srv, { timeout = tonumber(req.query_string) })
  local again = httpkit.server_stop(srv)
  return text(serialize({ type = type(p), realized = p:realized(),
    again = tostring(again), status = srv:server_status() }))
end

routes["/srv/status"] = function()
  return text(httpkit.server_status(srv))
end

routes["/srv2/stop"] = function(req)
  local p = srv2:server_stop({ timeout = tonumber(req.query_string) })
  local status_then = srv2:server_status()
  local early = p:deref(50, "not yet")
  local status_held = srv2:server_status()
  local value = p:deref()
  record("deref returned")
  return text(serialize({ early = early, status_then = status_then,
    status_held = status_held, value = value, realized = p:realized(),
    status = srv2:server_status(), again = tostring(srv2:server_stop()) }))
end

routes["/srv2/status"] = function()
  return text(httpkit.server_status(srv2))
end

routes["/legacy/status"] = function()
  return text(httpkit.server_status(stop) .. " " .. httpkit.server_status(stop2))
end

routes["/legacy/stop"] = function()
  local r1 = stop({ timeout = 0 })
  local status = httpkit.server_status(stop)
  local r2 = stop()
  local r3 = stop2()
  return text(serialize({ r1 = tostring(r1), r2 = tostring(r2),
    r3 = tostring(r3), status = status }))
end

routes["/srv/errors"] = function()
  local function err_of(...)
    local ok, e = pcall(...)
    return ok and "no error" or tostring(e)
  end
  local none, msg, code = httpkit.run_server(inner, {
    ip = "127.0.0.1", port = httpkit.server_port(srv2) })
  return text(serialize({
    unknown = err_of(httpkit.run_server, inner, { port = 0, join = false }),
    bad_type = err_of(httpkit.run_server, inner, { port = "80" }),
    not_fn = err_of(httpkit.run_server, "handler"),
    bad_timeout = err_of(stop2, { timeout = -1 }),
    busy = { tostring(none), type(msg), tostring(code) },
  }))
end

return {
  options = { max_ws = 1024 },
  handler = function(req)
    local route = routes[req.uri]
    if route then return route(req) end
    return text("no route for " .. req.uri, 404)
  end,
}
]=]

-- ---------------------------------------------------------------------------
-- Helpers

local function start()
  return helper.start(APP)
end

local function find(list, pattern)
  for _, v in ipairs(list) do
    if v:find(pattern) then return v end
  end
  return nil
end

-- Waits until an event matches `pattern` (a Lua pattern); returns it.
local function wait_event(srv, pattern)
  local found
  helper.wait_until(function()
    found = find(helper.events(srv), pattern)
    return found
  end)
  return found
end

-- A raw WebSocket on `path`; the caller closes it.
local function raw_ws(port, path)
  local sock, res = wsc.handshake(port, path)
  assert(sock, res)
  assert.equal(101, res.status)
  return sock
end

-- ---------------------------------------------------------------------------

describe("httpkit.on_close statuses", function()
  local srv
  lazy_setup(function() srv = start() end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it_ws("name every close code a client can send, a close without a code "
    .. "and a dropped connection", function()
    local want = {
      [1000] = "normal", [1001] = "going-away", [1002] = "protocol-error",
      [1003] = "unsupported", [1007] = "invalid-payload-data",
      [1008] = "policy-violation", [1009] = "message-too-big",
      [1010] = "mandatory-extension", [1011] = "internal-server-error",
      [1012] = "unknown", [1013] = "unknown", [1014] = "unknown",
      [3000] = "unknown", [3999] = "unknown", [4000] = "unknown",
      [4999] = "unknown",
    }
    local plan, labels = {}, {}
    for code in pairs(want) do labels[#labels + 1] = code end
    table.sort(labels)
    for _, code in ipairs(labels) do
      plan[#plan + 1] = { path = "/ws/echo?c" .. code, steps = {
        { send = "x" }, { ["until"] = 1 }, { close = code, reason = "bye" } } }
    end
    plan[#plan + 1] = { path = "/ws/echo?none", steps = {
      { close_no_code = true } } }
    plan[#plan + 1] = { path = "/ws/echo?drop", steps = {
      { send = "x" }, { ["until"] = 1 }, { drop = true } } }
    local results = helper.ws_sessions(srv.port, plan)
    -- the server answers each close with the client's code
    for i, code in ipairs(labels) do
      assert.equal(code, results[i].close_code, "close " .. code)
    end
    assert.truthy(wait_event(srv, "^close drop "))
    local log = helper.events(srv)
    for code, status in pairs(want) do
      assert.equal("close c" .. code .. " " .. status,
        find(log, "^close c" .. code .. " "))
    end
    assert.equal("close none no-status-received", find(log, "^close none "))
    assert.equal("close drop abnormal", find(log, "^close drop "))
  end)

  it("name what the core closes with when the client breaks the protocol",
  function()
    local cases = {
      { "utf8", function(s) wsc.send_text(s, "\xff\xfe") end, 1007,
        "invalid-payload-data" },
      { "big", function(s) wsc.send_text(s, ("x"):rep(2000)) end, 1009,
        "message-too-big" },
      { "unmasked", function(s) wsc.send_frame(s, wsc.OP.TEXT, "x", { mask = false }) end,
        1002, "protocol-error" },
    }
    -- close codes no endpoint may send: the core answers 1002
    for _, code in ipairs({ 1004, 1005, 1006, 1015, 2999, 5000 }) do
      cases[#cases + 1] = { "bad" .. code, function(s) wsc.send_close(s, code) end,
        1002, "protocol-error" }
    end
    for _, case in ipairs(cases) do
      local id, act, code, status = case[1], case[2], case[3], case[4]
      local sock = raw_ws(srv.port, "/ws/echo?" .. id)
      act(sock)
      local frame = assert(wsc.read_close(sock))
      assert.equal(code, (wsc.close_code(frame)), id)
      sock:close()
      assert.equal("close " .. id .. " " .. status,
        wait_event(srv, "^close " .. id .. " "), id)
    end
  end)

  it("say server-close when the server closes a WebSocket, by close or by a "
    .. "send that closes", function()
    local sock = raw_ws(srv.port, "/ws/echo?byclose")
    wsc.send_text(sock, "close please")
    local frame = assert(wsc.read_close(sock))
    assert.equal(1000, (wsc.close_code(frame)))
    wsc.send_close(sock, 1000)
    assert.is_true(wsc.tcp_closed(sock))
    sock:close()
    assert.equal("close byclose server-close", wait_event(srv, "^close byclose "))
    -- close() was true then false; after it open is false and send false
    assert.truthy(find(helper.events(srv), "^close%(%) byclose true false false false$"))

    sock = raw_ws(srv.port, "/ws/echo?bysend")
    wsc.send_text(sock, "send and close")
    local op, payload = wsc.read_message(sock)
    assert.same({ wsc.OP.TEXT, "bye" }, { op, payload })
    frame = assert(wsc.read_close(sock))
    assert.equal(1000, (wsc.close_code(frame)))
    sock:close() -- the client never answers: still the server's close
    assert.equal("close bysend server-close", wait_event(srv, "^close bysend "))
    assert.truthy(find(helper.events(srv), "^send%-close bysend true false false false$"))
  end)

  it("say client-close when an HTTP client goes away, and server-close when "
    .. "the server ends the response", function()
    local sock = assert(helper.connect(srv.port))
    assert(sock:send(helper.request_bytes("GET", "/http/wait?gone", { Host = "x" })))
    assert.truthy(wait_event(srv, "^waiting gone$"))
    sock:close()
    assert.equal("close gone client-close false false false",
      wait_event(srv, "^close gone "))
    assert.equal(201, assert(helper.request(srv.port, "GET", "/http/stream")).status)
    assert.equal("close stream server-close", wait_event(srv, "^close stream "))
  end)
end)

describe("httpkit.on_close at server stop", function()
  it("says server-close for open WebSockets and HTTP channels", function()
    local defer = helper.cleanup(finally)
    local srv = start()
    defer(function() srv:stop() end)
    local ws = raw_ws(srv.port, "/ws/echo?atstop")
    defer(function() ws:close() end)
    wsc.send_text(ws, "ping?")
    local op, payload = wsc.read_message(ws)
    assert.same({ wsc.OP.TEXT, "ping?" }, { op, payload })
    local http = assert(helper.connect(srv.port))
    defer(function() http:close() end)
    assert(http:send(helper.request_bytes("GET", "/http/wait?atstop", { Host = "x" })))
    assert.truthy(wait_event(srv, "^recv atstop "))
    assert.truthy(wait_event(srv, "^waiting atstop$"))
    helper.assert_clean_stop(srv)
    local out = srv:stdout()
    assert.truthy(out:find("close atstop server-close\n", 1, true), out)
    assert.truthy(out:find("close atstop server-close false false false\n", 1, true),
      out)
  end)
end)

describe("httpkit WebSocket channels", function()
  local srv
  lazy_setup(function() srv = start() end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it_ws("send text as text frames and binary messages (httpkit.binary, the "
    .. "literal {data=, binary=true}, ringlet.websocket's and ringlet.async's) "
    .. "and files as binary frames; a response table sends its body; sends "
    .. "queued before the handshake go out first", function()
    local r = helper.ws_sessions(srv.port, { { path = "/ws/send", steps = {
      { ["until"] = 6 }, { send = "done" } } } })[1]
    assert.is_true(r.opened)
    assert.same({
      { false, "queued text" },
      { false, "text" },
      { true, "\0\1\2\255" },
      { false, "map body" },
      { true, "file\0bytes" },
      { false, "explicit false" },
      { true, "literal\0" },
      { true, "ws" },
      { true, "async" },
      { true, "in a map" },
      { true, "last" },
    }, helper.ws_messages(r))
    assert.equal(1000, r.close_code)
    local log = helper.events(srv)
    -- before the handshake: open, a WebSocket, and the queued send is true
    assert.equal("before open true true true", find(log, "^before open"))
    -- close_after_send defaults to false: the channel stays open
    assert.equal("sends true true true true true true true true true true true",
      find(log, "^sends"))
    assert.equal("array false true", find(log, "^array"))
    assert.equal("last true", find(log, "^last"))
    assert.equal("close send server-close", wait_event(srv, "^close send"))
  end)

  it_ws("deliver text messages as strings and binary ones as values of the "
    .. "shared binary constructor (echoed as they came); on_ping gets the "
    .. "payload and the pong goes out",
  function()
    local r = helper.ws_sessions(srv.port, { { path = "/ws/echo?kinds", steps = {
      { send = "héllo" }, { binary = "00ff41" }, { send = "" },
      { binary = "" }, { ["until"] = 4 }, { ping = "are you there" },
      { wait = 50 }, { close = 1000 } } } })[1]
    assert.same({ { false, "héllo" }, { true, "\0\255A" }, { false, "" },
      { true, "" } }, helper.ws_messages(r))
    local pongs = helper.ws_data(r, "pong")
    assert.equal("are you there", pongs[#pongs])
    assert.truthy(wait_event(srv, "^close kinds "))
    local log = helper.events(srv)
    assert.equal("recv kinds string héllo", find(log, "^recv kinds string h"))
    assert.equal("recv kinds binary \0\255A", find(log, "^recv kinds binary \0"))
    assert.equal("ping kinds are you there", find(log, "^ping kinds"))
    assert.equal("close kinds normal", find(log, "^close kinds"))
  end)

  it_ws("as_channel calls init, on_open, on_receive, on_ping and on_close "
    .. "with the channel", function()
    local r = helper.ws_sessions(srv.port, { { path = "/ws/as?as1", steps = {
      { ["until"] = 1 }, { send = "hi" }, { binary = "0102" }, { ["until"] = 3 },
      { ping = "p" }, { wait = 50 }, { close = 4321 },
    } } })[1]
    assert.same({ { false, "hello" }, { false, "hi" }, { true, "\1\2" } },
      helper.ws_messages(r))
    assert.truthy(wait_event(srv, "^close as1 "))
    local log = helper.events(srv)
    assert.equal("init as1 true", find(log, "^init as1"))
    assert.equal("open as1 true true", find(log, "^open as1"))
    assert.equal("recv as1 true string hi", find(log, "^recv as1 true string"))
    assert.equal("recv as1 true binary \1\2", find(log, "^recv as1 true binary"))
    assert.equal("ping as1 true p", find(log, "^ping as1"))
    assert.equal("close as1 true unknown", find(log, "^close as1"))
    assert.is_nil(find(log, "handshake error"))
  end)

  it("allow one handler of each kind per channel, and only on this "
    .. "module's channels", function()
    local sock = raw_ws(srv.port, "/ws/twice")
    sock:close()
    assert.equal("twice false false false false true true true true",
      wait_event(srv, "^twice"))
  end)
end)

describe("httpkit HTTP channels", function()
  local srv
  lazy_setup(function() srv = start() end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("close after a send by default: one whole response, with http-kit's "
    .. "default content type; later sends and close return false", function()
    local res = assert(helper.request(srv.port, "GET", "/http/whole"))
    assert.equal(200, res.status)
    assert.equal("whole body", res.body)
    assert.equal("10", res.headers["content-length"])
    assert.is_nil(res.headers["transfer-encoding"])
    assert.equal("text/html; charset=utf-8", res.headers["content-type"])
    assert.equal("whole false true false false false", wait_event(srv, "^whole"))
    assert.equal("close whole server-close", wait_event(srv, "^close whole"))
  end)

  it("stream with close_after_send false: status and headers of the first "
    .. "send only, the bodies of later ones; close is true, then false",
  function()
    local res = assert(helper.request(srv.port, "GET", "/http/stream"))
    assert.equal(201, res.status)
    assert.equal("1", res.headers["x-first"])
    assert.is_nil(res.headers["x-second"])
    assert.equal("chunked", res.headers["transfer-encoding"])
    -- no default content type once the first send has headers
    assert.is_nil(res.headers["content-type"])
    assert.same({ "one\n", "two\n", "three\n", "four\n", "five\n", "six\n" },
      res.chunks)
    assert.equal("stream true true true true true true true true true false false false",
      wait_event(srv, "^stream"))
  end)

  it("queue the sends made before the channel opens", function()
    local res = assert(helper.request(srv.port, "GET", "/http/pending"))
    assert.equal(202, res.status)
    assert.equal("1", res.headers["x-p"])
    assert.same({ "early,", "late" }, res.chunks)
    -- open before; both sends true; the second closed (its default): open
    -- false, a third send false, close false
    assert.equal("pending true false true true false false false",
      wait_event(srv, "^pending"))
    assert.equal("close pending server-close", wait_event(srv, "^close pending"))

    res = assert(helper.request(srv.port, "GET", "/http/close-first"))
    assert.equal(200, res.status)
    assert.equal("", res.body)
    assert.equal("close-first true false false", wait_event(srv, "^close%-first"))
  end)

  it("call an on_close set after the close at once", function()
    local res = assert(helper.request(srv.port, "GET", "/http/late"))
    assert.equal("done", res.body)
    assert.equal("late on_close server-close", wait_event(srv, "^late on_close"))
  end)

  it("send no body after a HEAD request or with status 204 or 304, and close",
  function()
    local res = assert(helper.request(srv.port, "HEAD", "/http/nobody"))
    assert.equal(200, res.status)
    assert.is_nil(res.headers["transfer-encoding"])
    assert.equal("nobody head true false", wait_event(srv, "^nobody head"))
    for _, status in ipairs({ 204, 304 }) do
      local sock = assert(helper.connect(srv.port))
      assert(sock:send(helper.request_bytes("GET", "/http/nobody?" .. status,
        { Host = "x" }) .. helper.request_bytes("GET", "/events", { Host = "x" })))
      res = assert(helper.read_response(sock))
      assert.equal(status, res.status)
      assert.equal("", res.body)
      -- the connection serves its next request: the response was whole
      assert.equal(200, assert(helper.read_response(sock)).status)
      sock:close()
    end
  end)

  it("refuse a first send with a 1xx status; the next send is still the "
    .. "first (its status and headers go out)", function()
    local res = assert(helper.request(srv.port, "GET", "/http/interim-first"))
    assert.same({ 201, "1", "made" },
      { res.status, res.headers["x-a"], res.body })
    assert.equal("interim false status 1xx is an interim response",
      wait_event(srv, "^interim"))
  end)

  it("keep the handler response's content type", function()
    local res = assert(helper.request(srv.port, "GET", "/http/typed"))
    assert.equal("text/plain; charset=utf-8", res.headers["content-type"])
    assert.equal("plain text", res.body)
  end)

  it("as_channel: on_open sends the response, on_receive never runs, "
    .. "on_close gets the channel", function()
    local res = assert(helper.request(srv.port, "GET", "/http/as"))
    assert.equal("as body", res.body)
    assert.equal("1", res.headers["x-as"])
    assert.equal("as open true true false", wait_event(srv, "^as open"))
    assert.equal("as close true server-close", wait_event(srv, "^as close"))
    assert.is_nil(find(helper.events(srv), "as receive"))
  end)
end)

describe("httpkit timers", function()
  local srv
  lazy_setup(function() srv = start() end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("schedule_task runs a task once; cancel is true once, before it ran",
  function()
    -- t1 cancelled (true, then false); t2 ran (cancel false); t3 cancelled
    -- with its method; t4 (a negative delay) ran at once
    assert.same({ true, false, false, true, { "t2", "t4" } },
      helper.get_value(srv, "/timer"))
  end)

  it("with_timeout: a call in time runs f and cancels the timeout; a late "
    .. "call or a second call returns nil", function()
    local r = helper.get_value(srv, "/with_timeout")
    assert.same({
      r1 = "f:a", r3 = "f:d",
      out = { "a+b", "timeout 2", "d" },
    }, r)
  end)
end)

describe("httpkit.run_server", function()
  local srv, info
  lazy_setup(function()
    srv = start()
    info = helper.get_value(srv, "/srv/info")
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("returns a server with legacy_return_value = false, else a stop "
    .. "function; both give the port and the status", function()
    assert.is_true(info.port > 0)
    assert.equal(info.port, info.method_port)
    assert.equal("running", info.status)
    assert.equal("running", info.method_status)
    assert.equal("function", info.legacy_type)
    assert.equal("function", info.legacy2_type)
    assert.is_true(info.legacy_port > 0)
    assert.equal("running", info.legacy_status)
    local res = assert(helper.request(info.port, "GET", "/x"))
    assert.equal("inner get /x", res.body)
    res = assert(helper.request(info.legacy_port, "POST", "/y", nil, "body"))
    assert.equal("inner post /y", res.body)
  end)

  it("passes max_body and max_line to the core and accepts http-kit's other "
    .. "options", function()
    local res = assert(helper.request(info.port, "POST", "/", nil, ("b"):rep(17)))
    assert.equal(413, res.status)
    res = assert(helper.request(info.port, "POST", "/", nil, ("b"):rep(16)))
    assert.equal(200, res.status)
    res = assert(helper.request(info.port, "GET", "/" .. ("u"):rep(200)))
    assert.equal(414, res.status)
    -- the other servers keep the defaults
    res = assert(helper.request(info.legacy_port, "POST", "/", nil, ("b"):rep(17)))
    assert.equal(200, res.status)
  end)

  it("raises on an unknown option or a bad value, and returns nil, err, "
    .. "code when it cannot listen", function()
    local e = helper.get_value(srv, "/srv/errors")
    assert.truthy(e.unknown:find("unknown option 'join'", 1, true), e.unknown)
    assert.truthy(e.bad_type:find("port", 1, true), e.bad_type)
    assert.truthy(e.not_fn:find("handler function", 1, true), e.not_fn)
    assert.truthy(e.bad_timeout:find("timeout", 1, true), e.bad_timeout)
    assert.same({ "nil", "string", "EADDRINUSE" }, e.busy)
  end)

  it("ring_async calls handler(req, respond, raise)", function()
    local res = assert(helper.request(info.async_port, "GET", "/later"))
    assert.equal(200, res.status)
    assert.equal("async /later", res.body)
    res = assert(helper.request(info.async_port, "GET", "/raise"))
    assert.equal(500, res.status)
    res = assert(helper.request(info.async_port, "GET", "/error"))
    assert.equal(500, res.status)
  end)

  it("server_stop returns a promise, then nil; the status goes running, "
    .. "stopping, stopped: at once with no connection open, not after the "
    .. "timeout", function()
    local t0 = socket.gettime()
    local r = helper.get_value(srv, "/srv/stop?3000")
    assert.same({ type = "table", realized = false, again = "nil",
      status = "stopping" }, r)
    -- no longer listening
    assert.is_true(helper.wait_until(function()
      return helper.connect(info.port) == nil
    end))
    assert.is_true(helper.wait_until(function()
      return assert(helper.request(srv.port, "GET", "/srv/status")).body == "stopped"
    end))
    local elapsed = socket.gettime() - t0
    assert(elapsed < 1.5, "stopped only after " .. elapsed .. " s (timeout 3 s)")
  end)

  it("server_stop: 'stopping' while an in-flight request holds the stop, "
    .. "'stopped' once its connection has closed, well before the timeout; "
    .. "the promise's deref returns then", function()
    local defer = helper.cleanup(finally)
    -- a request that takes 600 ms, in flight on srv2
    local slow = assert(helper.connect(info.port2))
    defer(function() slow:close() end)
    assert(slow:send(helper.request_bytes("GET", "/slow?600", { Host = "x" })))
    assert.truthy(wait_event(srv, "^slow start$"))
    local t0 = socket.gettime()
    -- stop it with a 5 s timeout; the route derefs the promise
    local stopper = assert(helper.connect(srv.port))
    defer(function() stopper:close() end)
    assert(stopper:send(helper.request_bytes("GET", "/srv2/stop?5000",
      { Host = "x" })))
    assert.equal("stopping",
      assert(helper.request(srv.port, "GET", "/srv2/status")).body)
    -- the slow request gets its answer, then the server ends the
    -- connection (it half-closes and waits for the client's side, as after
    -- any answer it closes; the client closes at once)
    local res = assert(helper.read_response(slow))
    assert.equal(200, res.status)
    assert.equal("slow done", res.body)
    assert.equal("close", res.headers.connection)
    assert.is_true(helper.closed(slow))
    slow:close()
    -- the deref returned: delivered once that connection closed
    res = assert(helper.read_response(stopper))
    local elapsed = socket.gettime() - t0
    assert.same({ early = "not yet", status_then = "stopping",
      status_held = "stopping", value = true, realized = true,
      status = "stopped", again = "nil" }, helper.decode(res.body))
    assert(elapsed > 0.3, "delivered after " .. elapsed
      .. " s, while the slow request still ran")
    assert(elapsed < 2.5, "delivered after " .. elapsed .. " s: the timeout "
      .. "(5 s), not the last connection, ended the stop")
    assert.equal("stopped",
      assert(helper.request(srv.port, "GET", "/srv2/status")).body)
    local log = helper.events(srv)
    local at = {}
    for i, e in ipairs(log) do at[e] = at[e] or i end
    assert.truthy(at["slow end"] and at["deref returned"])
    assert.is_true(at["slow end"] < at["deref returned"])
    assert.is_nil(helper.connect(info.port2))
  end)

  it("the legacy stop function stops the server and returns nil", function()
    local r = helper.get_value(srv, "/legacy/stop")
    assert.same({ r1 = "nil", r2 = "nil", r3 = "nil", status = "stopping" }, r)
    assert.is_true(helper.wait_until(function()
      return helper.connect(info.legacy_port) == nil
    end))
    assert.is_true(helper.wait_until(function()
      return assert(helper.request(srv.port, "GET", "/legacy/status")).body
        == "stopped stopped"
    end))
    helper.assert_clean_stop(srv)
  end)
end)

describe("httpkit.binary and httpkit.close_status", function()
  it("make the shared binary message, and name every close code as http-kit does", function()
    local ok, out, err = helper.run_script([[
local httpkit = require "ringlet.httpkit"
local b = httpkit.binary("\0ab")
local names = {}
for code = 999, 1016 do names[#names + 1] = code .. "=" .. httpkit.close_status(code) end
for _, code in ipairs({ 2999, 3000, 4999, 5000 }) do
  names[#names + 1] = code .. "=" .. httpkit.close_status(code)
end
print(#b, tostring(b) == "\0ab", b.data == "\0ab", httpkit.is_binary(b),
  httpkit.is_binary("\0ab"), b == httpkit.binary("\0ab"), "x" .. b == "x\0ab",
  b.binary, httpkit.is_binary({ data = "\0ab", binary = true }),
  httpkit.binary == require("ringlet.websocket").binary,
  (select(2, pcall(httpkit.binary, 1)):gsub("^[^:]*:%d+: ", "")))
print(table.concat(names, " "))
]])
    assert(ok, err)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.equal("3\ttrue\ttrue\ttrue\tfalse\ttrue\ttrue\ttrue\ttrue\ttrue\t"
      .. "binary: expected a string, got number", lines[1])
    assert.equal(table.concat({
      "999=unknown", "1000=normal", "1001=going-away", "1002=protocol-error",
      "1003=unsupported", "1004=unknown", "1005=no-status-received",
      "1006=abnormal", "1007=invalid-payload-data", "1008=policy-violation",
      "1009=message-too-big", "1010=mandatory-extension",
      "1011=internal-server-error", "1012=unknown", "1013=unknown",
      "1014=unknown", "1015=tls-handshake", "1016=unknown",
      "2999=unknown", "3000=unknown", "4999=unknown", "5000=unknown",
    }, " "), lines[2])
  end)
end)
