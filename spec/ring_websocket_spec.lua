-- Ring 1.11's WebSocket listener (a response holding
-- ["ring.websocket/listener"]) and ringlet.websocket's socket functions,
-- with Node's `ws` as the client (spec/node/ws_script.js, through
-- helper.ws_session); also the core pieces under them: as_channel's
-- on_ping, ch:pong and on_close's info.initiator.
local helper = require "helper"

local it_ws = helper.it_needs("ws", it, pending)

-- The app records what its callbacks saw; GET /log returns the record.
local APP = [[
local ws = require "ringlet.websocket"
local log = {}
local function add(s) log[#log + 1] = s end
return function(req)
  if req.uri == "/log" then return { body = table.concat(log, "\n") } end
  if req.uri == "/bad" then return { [ws.LISTENER] = "not a table" } end
  if req.uri == "/badcb" then return { [ws.LISTENER] = { on_open = 42 } } end
  local protos = ws.request_protocols(req)
  return {
    status = req.uri == "/s101" and 101 or nil, -- as a Ring app may say
    headers = { ["x-listener"] = "yes" },
    [ws.PROTOCOL] = protos[2],
    [ws.LISTENER] = {
      on_open = function(s)
        add("open " .. tostring(ws.open(s)))
        ws.send(s, "welcome " .. table.concat(protos, "+"))
      end,
      on_message = function(s, m, binary)
        add("message " .. m .. " " .. tostring(binary))
        if m == "close" then ws.close(s)
        elseif m == "close4001" then ws.close(s, 4001, "bye")
        elseif m == "sleep" then ringlet_sleep(20) ws.send(s, "slept")
        elseif m == "binaries" then
          -- the literal, and the other modules' constructors
          ws.send(s, { data = "lit\0", binary = true })
          ws.send(s, require("ringlet.httpkit").binary("hk"))
          ws.send(s, require("ringlet.async").binary("as"))
        elseif binary then ws.send(s, ws.binary(m))
        else
          ws.send(s, m, function() ws.send(s, "written " .. m) end,
            function(e) add("fail " .. tostring(e)) end)
        end
      end,
      on_ping = function(s, d) add("ping " .. d) ws.pong(s, "beat") end,
      on_pong = function(_, d) add("pong " .. d) end,
      on_close = function(s, code, reason)
        add(("close %d %s %s"):format(code, reason, tostring(ws.open(s))))
        -- a send on a closed socket: nil, and fail is told
        add("after " .. tostring(ws.send(s, "x", nil, function(e) add("failed " .. e) end)))
      end,
    },
  }
end
]]

local function start()
  return helper.start(("local ringlet_sleep = require('ringlet').sleep\n") .. APP)
end

local function log_of(srv)
  local res = assert(helper.request(srv.port, "GET", "/log"))
  local list = {}
  for line in res.body:gmatch("[^\n]+") do list[#list + 1] = line end
  return list
end

describe("Ring 1.11 listener", function()
  it_ws("calls on_open, on_message (text and binary), send's succeed, on_ping; "
    .. "close(code, reason) reaches the client", function()
    local srv = start()
    finally(function() srv:stop() end)
    local rec = helper.ws_session(srv.port, "/", [=[[{"send":"hi"},{"binary":"00ff10"},
      {"ping":"pp"},{"until":4},{"wait":50},{"send":"close4001"}]]=],
      { protocol = "a,b" })
    assert.is_true(rec.opened)
    assert.equal("b", rec.protocol) -- ring.websocket/protocol
    local got = helper.ws_texts(rec)
    assert.equal("welcome a+b", table.remove(got, 1))
    table.sort(got) -- "written hi" follows "hi"; the binary echo may come first
    assert.same({ "bin:00ff10", "hi", "written hi" }, got)
    assert.same({ "pp", "beat" }, helper.ws_data(rec, "pong")) -- the core's answer, then ws.pong's
    assert.equal(4001, rec.close_code)
    assert.equal("bye", rec.close_reason)
    local log
    assert.truthy(helper.wait_until(function()
      log = log_of(srv)
      return helper.contains(log, "after nil")
    end))
    assert.same({ "open true", "message hi false", "message \0\255\16 true", "ping pp",
      "message close4001 false", "close 4001 bye false",
      "failed connection closed before the message was sent", "after nil" },
      log)
    assert.equal(0, srv:stop())
  end)

  it_ws("a listener response that says status 101 upgrades as one that "
    .. "says none (a handler's 1xx is refused only without one)", function()
    local srv = start()
    finally(function() srv:stop() end)
    local rec = helper.ws_session(srv.port, "/s101",
      '[{"until":1},{"send":"close"}]')
    assert.is_true(rec.opened)
    assert.equal(1000, rec.close_code)
    assert.equal(0, srv:stop())
  end)

  it_ws("close() with no code is 1000 Normal Closure; a client's close code and a "
    .. "dropped connection reach on_close", function()
    local srv = start()
    finally(function() srv:stop() end)
    local rec = helper.ws_session(srv.port, "/", '[{"until":1},{"send":"close"}]')
    assert.equal(1000, rec.close_code)
    assert.equal("Normal Closure", rec.close_reason)
    rec = helper.ws_session(srv.port, "/", '[{"until":1},{"close":4100,"reason":"later"}]')
    assert.equal(4100, rec.close_code)
    helper.ws_session(srv.port, "/", '[{"until":1},{"close":1000}]')
    helper.ws_session(srv.port, "/", '[{"until":1},{"drop":true}]')
    assert.truthy(helper.wait_until(function()
      local log = log_of(srv)
      return helper.contains(log, "close 4100 later false")
        and helper.contains(log, "close 1000  false")
        and helper.contains(log, "close 1006  false")
    end))
    assert.equal(0, srv:stop())
  end)

  it("a request that is not an upgrade gets 426 with Upgrade: websocket", function()
    local srv = start()
    finally(function() srv:stop() end)
    local res = assert(helper.request(srv.port, "GET", "/"))
    assert.equal(426, res.status)
    assert.equal("websocket", res.headers.upgrade)
    res = assert(helper.request(srv.port, "HEAD", "/"))
    assert.equal(426, res.status)
    assert.equal(0, srv:stop())
  end)

  it_ws("a listener that is not a table of functions is a 500, and the server "
    .. "goes on", function()
    local srv = start()
    finally(function() srv:stop() end)
    for _, path in ipairs({ "/bad", "/badcb" }) do
      local rec = helper.ws_session(srv.port, path, "[]")
      assert.is_false(rec.opened)
      assert.equal(500, rec.status)
    end
    local rec = helper.ws_session(srv.port, "/", '[{"until":1},{"send":"close"}]')
    assert.is_true(rec.opened)
    assert.equal(0, srv:stop())
    assert.matches("ring.websocket/listener must be a table", srv:stderr(), 1, true)
    assert.matches("callbacks must be functions", srv:stderr(), 1, true)
  end)

  it_ws("callbacks may sleep: each runs in its own coroutine", function()
    local srv = start()
    finally(function() srv:stop() end)
    local rec = helper.ws_session(srv.port, "/", '[{"send":"sleep"},{"until":2},{"close":1000}]')
    assert.same({ "welcome ", "slept" }, helper.ws_texts(rec))
    assert.equal(0, srv:stop())
  end)

  it_ws("send takes a literal {data = s, binary = true} and the binary "
    .. "values of ringlet.httpkit and ringlet.async", function()
    local srv = start()
    finally(function() srv:stop() end)
    local rec = helper.ws_session(srv.port, "/", '[{"send":"binaries"},{"until":4},{"close":1000}]')
    assert.same({ "welcome ", "bin:6c697400", "bin:686b", "bin:6173" }, helper.ws_texts(rec))
    assert.equal(0, srv:stop())
  end)

  it("binary is the one binary form: {data = s, binary = true}, shared by "
    .. "ringlet.httpkit and ringlet.async", function()
    local ok, out = helper.run_script([[
      local ws = require "ringlet.websocket"
      local httpkit = require "ringlet.httpkit"
      local async = require "ringlet.async"
      local b = ws.binary("\0ab")
      print(b.data == "\0ab", b.binary, getmetatable(b).__name,
        #b, tostring(b) == "\0ab", "x" .. b == "x\0ab", b .. 1 == "\0ab1",
        b == ws.binary("\0ab"), b == { data = "\0ab", binary = true },
        b == ws.binary("other"), b == { data = "\0ab" })
      print(httpkit.binary == ws.binary, async.binary == ws.binary,
        httpkit.is_binary == ws.is_binary, async.is_binary == ws.is_binary)
      print(ws.is_binary(b), ws.is_binary({ data = "x", binary = true }),
        ws.is_binary({ data = "x" }), ws.is_binary({ data = 1, binary = true }),
        ws.is_binary({ data = "x", binary = "yes" }), ws.is_binary("x"))
      print(select(2, pcall(ws.binary, 1)))
      print(select(2, pcall(ws.send, nil, { data = "x" })))
      print(select(2, pcall(function() return b .. {} end)))
    ]])
    assert.is_true(ok, out)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.same({
      "true\ttrue\tringlet.binary\t3\ttrue\ttrue\ttrue\ttrue\ttrue\tfalse\tfalse",
      "true\ttrue\ttrue\ttrue",
      "true\ttrue\tfalse\tfalse\tfalse\tfalse",
    }, { lines[1], lines[2], lines[3] })
    assert.matches("binary: expected a string, got number$", lines[4])
    assert.matches("websocket.send: message must be a string or a binary message", lines[5],
      1, true)
    assert.matches("attempt to concatenate a table value", lines[6], 1, true)
  end)

  it("request and response predicates, request_protocols", function()
    local ok, out = helper.run_script([[
      local ws = require "ringlet.websocket"
      local r = {}
      r[1] = ws.is_request({ websocket = true })
      r[2] = ws.is_request({ headers = {} })
      r[3] = ws.is_response({ [ws.LISTENER] = {} })
      r[4] = ws.is_response({ status = 200 })
      r[5] = table.concat(ws.request_protocols({ headers =
        { ["sec-websocket-protocol"] = "mqtt, wamp ,v2" } }), "|")
      r[6] = #ws.request_protocols({ headers = {} })
      r[7] = select(2, pcall(ws.send, nil, 42))
      print(tostring(r[1]), tostring(r[2]), tostring(r[3]), tostring(r[4]), r[5], r[6])
      print(r[7])
    ]])
    assert.is_true(ok, out)
    assert.matches("^true\tfalse\ttrue\tfalse\tmqtt|wamp|v2\t0\n", out)
    assert.matches("websocket.send: message must be a string or a binary message "
      .. "({data = s, binary = true}, websocket.binary(s)), got number", out, 1, true)
  end)
end)

describe("as_channel's on_ping, ch:pong and on_close's initiator", function()
  local CORE = [[
local ringlet = require "ringlet"
local log = {}
return function(req)
  if req.uri == "/log" then return { body = table.concat(log, "\n") } end
  if req.uri == "/stream" then
    return ringlet.as_channel(req, {
      on_open = function(ch)
        ch:send("x")
        if req.query_string == "server" then ch:close() end
      end,
      on_close = function(_, info) log[#log + 1] = "http " .. info.initiator end,
    })
  end
  return ringlet.as_channel(req, {
    on_ping = function(ch, d) log[#log + 1] = "ping " .. d; ch:pong("hb") end,
    on_message = function(ch, m)
      if m == "close" then ch:close(4000, "x") end
      if m == "pong-too-big" then
        log[#log + 1] = tostring(pcall(ch.pong, ch, ("x"):rep(126)))
      end
    end,
    on_close = function(_, info)
      log[#log + 1] = ("ws %s %s"):format(info.code, info.initiator)
    end,
  })
end
]]
  it_ws("on_ping gets each ping after the core answered it; pong sends one", function()
    local srv = helper.start(CORE)
    finally(function() srv:stop() end)
    local rec = helper.ws_session(srv.port, "/", [=[[{"ping":"a"},{"ping":"b"},
      {"send":"pong-too-big"},{"wait":100},{"close":1000}]]=])
    assert.same({ "a", "hb", "b", "hb" }, helper.ws_data(rec, "pong"))
    assert.truthy(helper.wait_until(function()
      local body = helper.request(srv.port, "GET", "/log").body
      return body:find("ping a\nping b\nfalse\nws 1000 client", 1, true)
    end))
    assert.equal(0, srv:stop())
  end)

  it_ws("initiator: 'server' when the server closed first, 'client' otherwise", function()
    local srv = helper.start(CORE)
    finally(function() srv:stop() end)
    helper.ws_session(srv.port, "/", '[{"send":"close"}]')
    helper.ws_session(srv.port, "/", '[{"drop":true}]')
    local res = helper.request(srv.port, "GET", "/stream?server")
    assert.equal("x", res.body)
    local sock = assert(helper.connect(srv.port))
    sock:send(helper.request_bytes("GET", "/stream", { host = "x" }))
    assert.truthy(sock:receive("*l"))
    sock:close()
    assert.truthy(helper.wait_until(function()
      local body = helper.request(srv.port, "GET", "/log").body
      return body == "ws 4000 server\nws 1006 client\nhttp server\nhttp client"
    end))
    assert.equal(0, srv:stop())
  end)
end)
