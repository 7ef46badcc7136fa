-- Limits and checks against hostile or careless clients: max_connections
-- (503 past it), running out of descriptors (EMFILE: logged once, the
-- server recovers), a slow-loris crowd, and the WebSocket origin check.
local helper = require "helper"
local socket = require "socket"

local HELLO = [[
local ringlet = require "ringlet"
return { handler = function(req)
  if req.websocket then
    return ringlet.as_channel(req, {
      on_message = function(ch, m) ch:send(m) end })
  end
  return { body = "served" }
end, options = OPTIONS }
]]

local function app(options)
  return HELLO:gsub("OPTIONS", options)
end

local function count(text, pattern)
  local n = 0
  for _ in text:gmatch(pattern) do n = n + 1 end
  return n
end

-- n connections opened at once; returns them (some may be closed by the
-- server already)
local function open_many(port, n)
  local socks = {}
  for i = 1, n do
    local s = socket.tcp()
    s:settimeout(helper.TEST_TIMEOUT)
    if s:connect("127.0.0.1", port) then socks[i] = s else s:close() end
  end
  return socks
end

local function close_all(socks)
  for _, s in pairs(socks) do s:close() end
end

describe("max_connections", function()
  it("answers 503 and closes past it, and serves again once below",
    function()
      local srv = helper.start(app("{ max_connections = 5 }"))
      finally(function() srv:stop() end)
      local socks = open_many(srv.port, 5)
      socket.sleep(0.1)
      -- the sixth and seventh: a 503 that says why, then the close
      for _ = 1, 2 do
        local extra = assert(helper.connect(srv.port))
        local res = helper.read_response(extra)
        assert.equal(503, res.status)
        assert.truthy(res.body:find("too many connections", 1, true))
        assert.equal("close", res.headers.connection)
        extra:close()
      end
      -- the five held ones are served
      for _, s in ipairs(socks) do
        s:send(helper.request_bytes("GET", "/", { Host = "x" }))
        assert.equal("served", helper.read_response(s).body)
      end
      close_all(socks)
      socket.sleep(0.1)
      assert.equal(200, helper.request(srv.port, "GET", "/").status)
      assert.equal(0, srv:stop())
    end)

  it("defaults to the descriptor limit less a reserve", function()
    -- ulimit -n 200: an eighth (25) is kept back, so 175 connections
    local srv = helper.start({ source = app("nil"), nofile = 200 })
    finally(function() srv:stop() end)
    local socks = open_many(srv.port, 175)
    socket.sleep(0.2)
    local extra = assert(helper.connect(srv.port))
    assert.equal(503, helper.read_response(extra).status)
    extra:close()
    local n = 0
    for _, s in pairs(socks) do
      s:send(helper.request_bytes("GET", "/", { Host = "x" }))
      if helper.read_response(s).status == 200 then n = n + 1 end
    end
    assert.equal(175, n)
    close_all(socks)
    assert.equal(0, srv:stop())
  end)

  it("is an option: an integer from 1", function()
    local ok, out = helper.run_script([[
local ringlet = require "ringlet"
print(pcall(ringlet.run_server, function() end, { port = 0, max_connections = 0 }))
print(pcall(ringlet.run_server, function() end, { port = 0, max_connections = "x" }))
]])
    assert.is_true(ok, out)
    assert.truthy(out:find("option 'max_connections' must be from 1"), out)
    assert.truthy(out:find("option 'max_connections' must be an integer"),
      out)
  end)
end)

describe("running out of file descriptors", function()
  it("says so once, answers 503 to what it cannot take, and recovers by "
    .. "itself",
    function()
      local srv = helper.start({ source = app("{ max_connections = 100000 }"),
        nofile = 48 })
      finally(function() srv:stop() end)
      for round = 1, 2 do
        local socks = open_many(srv.port, 80)
        socket.sleep(0.3)
        -- every connection was served or told 503 at once: none hangs
        local served, refused = 0, 0
        local list = {}
        for _, s in pairs(socks) do list[#list + 1] = s end
        local told = socket.select(list, nil, 0.5)
        for _, s in ipairs(list) do
          s:settimeout(2)
          if told[s] then
            local res = helper.read_response(s)
            assert.equal(503, res and res.status)
            assert.truthy(res.body:find("out of file descriptors", 1, true))
            refused = refused + 1
          else
            s:send(helper.request_bytes("GET", "/", { Host = "x" }))
            assert.equal(200, helper.read_response(s).status)
            served = served + 1
          end
        end
        assert.truthy(served >= 20, "served " .. served)
        assert.truthy(refused >= 1, "refused " .. refused)
        close_all(socks)
        socket.sleep(0.3)
        -- descriptors are free again: served at once
        assert.equal(200, helper.request(srv.port, "GET", "/").status)
        local err = srv:stderr()
        assert.equal(round, count(err, "out of file descriptors"), err)
        assert.equal(round, count(err, "file descriptors free again"), err)
      end
      assert.equal(0, srv:stop())
    end)
end)

describe("a slow-loris crowd", function()
  helper.it_needs("ws", it, pending)("does not keep a normal client waiting, and "
    .. "header_timeout closes it with 408", function()
    local srv = helper.start({ nofile = 8192, source = app(
      "{ header_timeout = 1500 }") })
    finally(function() srv:stop() end)
    local out, status, err = helper.node("slowloris.js", srv.port, 2000,
      500, 3500)
    assert.equal(0, status, err)
    local r = helper.decode(out)
    assert.equal(2000, r.connected)
    -- every slow client was answered 408 and closed by the deadline
    assert.equal(2000, r.got408)
    assert.equal(0, r.open)
    -- the normal client was served all along, promptly
    assert.equal(0, r.normal_failed)
    assert.truthy(#r.normal >= 20, #r.normal)
    table.sort(r.normal)
    local worst = r.normal[#r.normal]
    assert.truthy(worst < 1000, "slowest normal answer: " .. worst .. " ms")
    assert.equal(0, srv:stop())
  end)
end)

describe("origins", function()
  local function upgrade(port, origin, path)
    local headers = { Host = "x", Upgrade = "websocket",
      Connection = "Upgrade", ["Sec-WebSocket-Version"] = "13",
      ["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ==" }
    if origin then headers.Origin = origin end
    local sock = assert(helper.connect(port))
    sock:send(helper.request_bytes("GET", path or "/", headers))
    local res = helper.read_response(sock)
    sock:close()
    return res
  end

  it("refuses an upgrade from another origin with 403, before the handler",
    function()
      local srv = helper.start([[
local ringlet = require "ringlet"
local calls = 0
return { handler = function(req)
  calls = calls + 1
  if req.uri == "/calls" then return { body = tostring(calls - 1) } end
  return ringlet.as_channel(req, {})
end, options = { origins = { "https://app.example", "HTTP://Other.Example:8443" } } }
]])
      finally(function() srv:stop() end)
      assert.equal(101, upgrade(srv.port, "https://app.example").status)
      assert.equal(101, upgrade(srv.port, "http://other.example:8443").status)
      local res = upgrade(srv.port, "https://evil.example")
      assert.equal(403, res.status)
      assert.truthy(res.body:find("origin not allowed", 1, true))
      assert.equal(403, upgrade(srv.port, "https://app.example.evil").status)
      assert.equal(403, upgrade(srv.port, "null").status)
      -- no Origin header: not a browser page, allowed
      assert.equal(101, upgrade(srv.port, nil).status)
      -- plain requests are not checked
      local plain = helper.request(srv.port, "GET", "/calls",
        { Origin = "https://evil.example" })
      -- the handler ran for the three upgrades it allowed, never for a
      -- refused one
      assert.equal("3", plain.body)
      assert.equal(0, srv:stop())
    end)

  it("takes a function, and a per-channel option", function()
    local srv = helper.start([[
local ringlet = require "ringlet"
return { handler = function(req)
  if req.uri == "/chan" then
    return ringlet.as_channel(req, { origins = { "https://chan.example" },
      on_open = function(ch) ch:send("hi") end })
  end
  return ringlet.as_channel(req, {})
end, options = { origins = function(origin, req)
  if req.uri == "/raise" then error("origins function failed") end
  return origin == nil or origin:match("%.example$") ~= nil
end } }
]])
    finally(function() srv:stop() end)
    assert.equal(101, upgrade(srv.port, "https://a.example").status)
    assert.equal(403, upgrade(srv.port, "https://a.evil").status)
    assert.equal(403, upgrade(srv.port, "https://a.example", "/raise").status)
    -- the server's check, then the channel's own
    assert.equal(101, upgrade(srv.port, "https://chan.example", "/chan")
      .status)
    local res = upgrade(srv.port, "https://a.example", "/chan")
    assert.equal(403, res.status)
    assert.truthy(res.body:find("origin not allowed", 1, true))
    assert.equal(0, srv:stop())
    assert.truthy(srv:stderr():find("origins function: .*origins function "
      .. "failed"), srv:stderr())
  end)

  it("is checked: an array or a function", function()
    local ok, out = helper.run_script([[
local ringlet = require "ringlet"
print(pcall(ringlet.run_server, function() end, { port = 0, origins = "x" }))
]])
    assert.is_true(ok, out)
    assert.truthy(out:find("option 'origins' must be an array of origins or "
      .. "a function"), out)
  end)
end)

-- RFC 9112 7.1.1: a recipient MUST ignore unrecognized chunk extensions;
-- chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
describe("chunk extensions", function()
  local srv
  lazy_setup(function()
    srv = helper.start([[
return function(req) return { body = "got:" .. (req.body or "") } end
]])
  end)
  lazy_teardown(function() if srv then assert.equal(0, srv:stop()) end end)

  local function post(ext, split)
    local head = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
      .. "Connection: close\r\n\r\n"
    local body = "5" .. ext .. "\r\nhello\r\n3" .. ext .. "\r\nabc\r\n0" .. ext
      .. "\r\nX-Trailer: t\r\n\r\n"
    local sock = assert(helper.connect(srv.port))
    if split then -- a byte at a time through the chunk lines
      sock:send(head)
      for i = 1, #body do
        sock:send(body:sub(i, i))
        if i % 7 == 0 then socket.sleep(0.001) end
      end
    else
      sock:send(head .. body)
    end
    local res = helper.read_response(sock)
    sock:close()
    return res
  end

  for _, ext in ipairs({ "", ";a", ";a;b", ";a=1", ";a=1;b", ";a=1;b=2",
    ';a="x y";b', ';a="q\\"x";b=c', ' ;a', '; a = 1', '\t;\ta\t=\t"v"',
    ";name=value;flag", ';a=""' }) do
    it(("accepts %q, whole and a byte at a time"):format(ext), function()
      for _, split in ipairs({ false, true }) do
        local res = post(ext, split)
        assert.equal(200, res and res.status)
        assert.equal("got:helloabc", res.body)
      end
    end)
  end

  for _, ext in ipairs({ ";a=", ";=1", ";", " ", ";a b", ';a="open',
    ";a=b c", "x", ";a=\1", ";a=\"\1\"", ";a,b", ";a=b;" }) do
    it(("refuses %q with 400, whole and a byte at a time"):format(ext),
      function()
        for _, split in ipairs({ false, true }) do
          local res = post(ext, split)
          assert.equal(400, res and res.status)
        end
      end)
  end

  it("refuses a chunk-size line longer than max_line, and sizes that are "
    .. "not hex or too long", function()
      assert.equal(400, post(";a=" .. ("v"):rep(5000)).status)
      for _, size in ipairs({ "0x5", "+5", "-5", "5 5", "00000000000000005",
        "" }) do
        local sock = assert(helper.connect(srv.port))
        sock:send("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
          .. "\r\n" .. size .. "\r\nhello\r\n0\r\n\r\n")
        local res = helper.read_response(sock)
        sock:close()
        assert.equal(400, res and res.status, size)
      end
    end)

  it("holds a chunked upload whose first chunk line comes after the "
    .. "header timeout, under idle_timeout", function()
    local slow = helper.start([[
return { handler = function(req) return { body = "got:" .. (req.body or "") } end,
  options = { header_timeout = 300, idle_timeout = 5000 } }
]])
    local sock = assert(helper.connect(slow.port))
    sock:send("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
      .. "\r\n5;a=")
    socket.sleep(0.6)
    sock:send("1\r\nhello\r\n0\r\n\r\n")
    local res = helper.read_response(sock)
    sock:close()
    assert.same({ 200, "got:hello" }, { res and res.status, res and res.body })
    assert.equal(0, slow:stop())
  end)

  it("keeps pipelined requests after a chunked one apart", function()
    local sock = assert(helper.connect(srv.port))
    sock:send("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      .. "5;a=1;b\r\nhello\r\n0;z\r\n\r\n"
      .. helper.request_bytes("POST", "/", { Host = "x",
        ["Content-Length"] = "3" }, "xyz"))
    assert.equal("got:hello", helper.read_response(sock).body)
    assert.equal("got:xyz", helper.read_response(sock).body)
    sock:close()
  end)
end)

-- Each found by fuzz/ (its input is in fuzz/regressions/, which
-- spec/fuzz_spec.lua replays); here as a client sees them.
describe("found by fuzzing", function()
  local srv
  lazy_setup(function()
    srv = helper.start([[
local ringlet = require "ringlet"
local routes = {}
routes["/ctl"] = function()
  return { headers = { ["x-a"] = "a\1b" }, body = "never" }
end
routes["/tab"] = function()
  return { headers = { ["x-a"] = "a\tb" }, body = "fine" }
end
routes["/chan-204"] = function(req)
  local resp = ringlet.as_channel(req, { on_open = function(ch)
    ch:close()
  end })
  resp.status = "204"
  return resp
end
routes["/send-big-status"] = function(req)
  return ringlet.as_channel(req, { on_open = function(ch)
    local ok, err = pcall(ch.send, ch, { status = 2^34 + 400, body = "x" },
      { close = true })
    ch:send({ status = 200, body = tostring(ok) .. " " .. tostring(err) },
      { close = true })
  end })
end
routes["/send-1xx-status"] = function(req)
  return ringlet.as_channel(req, { on_open = function(ch)
    local ok, err = pcall(ch.send, ch, { status = 103, body = "x" })
    ch:send({ status = 200, body = tostring(ok) .. " " .. tostring(err) },
      { close = true })
  end })
end
routes["/chan-1xx"] = function(req)
  local resp = ringlet.as_channel(req, { on_open = function(ch)
    ch:close()
  end })
  resp.status = 100
  return resp
end
routes["/ok"] = function() return { body = "first" } end
routes["/conn"] = function()
  return { headers = { Connection = "keep-alive, x-custom" }, body = "c" }
end
routes["/conn-close"] = function()
  return { headers = { connection = "close" }, body = "bye" }
end
routes["/bad-iter"] = function()
  return { body = function() error("iterator failed at once") end }
end
return function(req) return routes[req.uri](req) end
]])
  end)
  lazy_teardown(function() if srv then srv:stop() end end)

  it("never writes a header value with a control byte (500), HTAB allowed",
    function()
      assert.equal(500, helper.request(srv.port, "GET", "/ctl").status)
      local res = helper.request(srv.port, "GET", "/tab")
      assert.same({ 200, "a\tb" }, { res.status, res.headers["x-a"] })
    end)

  it("answers an upgrade with Sec-WebSocket-Version twice 426, as one "
    .. "that is not 13", function()
    local res = helper.request(srv.port, "GET", "/ok", {
      Host = "h", Upgrade = "websocket", Connection = "Upgrade",
      ["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ==",
      ["Sec-WebSocket-Version"] = { "13", "13" } })
    assert.equal(426, res.status)
  end)

  it("writes a channel's status given as a string when it closes unsent",
    function()
      assert.equal(204, helper.request(srv.port, "GET", "/chan-204").status)
    end)

  for _, case in ipairs({
    { "out of range instead of truncating it", "/send-big-status",
      "status must be an integer from 100 to 999" },
    { "1xx: the client would wait on", "/send-1xx-status",
      "status 1xx is an interim response" },
  }) do
    local what, path, message = case[1], case[2], case[3]
    it("refuses a first send's status " .. what, function()
      local res = helper.request(srv.port, "GET", path)
      assert.equal(200, res.status)
      assert.truthy(res.body:find("^false .*" .. message), res.body)
    end)
  end

  it("answers a channel closed unsent with a 1xx status 500", function()
    local before = #srv:stderr()
    assert.equal(500, helper.request(srv.port, "GET", "/chan-1xx").status)
    assert.truthy(srv:stderr():find("status 1xx is an interim", before + 1,
      true))
  end)

  it("keeps a pipelined response before a body iterator that fails at once",
    function()
      local sock = assert(helper.connect(srv.port))
      sock:send(helper.request_bytes("GET", "/ok", { Host = "x" })
        .. helper.request_bytes("GET", "/bad-iter", { Host = "x" }))
      local first = helper.read_response(sock)
      assert.same({ 200, "first" }, { first.status, first.body })
      -- the second is cut short: its head, and no last chunk
      local rest = sock:receive("*a")
      sock:close()
      assert.truthy(rest:find("^HTTP/1.1 200 OK\r\n"), rest)
      assert.falsy(rest:find("0\r\n\r\n", 1, true), rest)
    end)

  it("writes Connection itself: a handler's value cannot hide a close",
    function()
      local res = helper.request(srv.port, "GET", "/conn",
        { Connection = "close" })
      assert.same({ "c", "close" }, { res.body, res.headers.connection })
      -- kept alive, the handler's value does not go out; its close does
      local sock = assert(helper.connect(srv.port))
      sock:send(helper.request_bytes("GET", "/conn", { Host = "x" }))
      local kept = helper.read_response(sock)
      assert.is_nil(kept.headers.connection)
      sock:send(helper.request_bytes("GET", "/conn-close", { Host = "x" }))
      local closing = helper.read_response(sock)
      assert.same({ "bye", "close" }, { closing.body,
        closing.headers.connection })
      assert.truthy(helper.closed(sock))
      sock:close()
    end)

  describe("HEAD and error answers", function()
    it("gives a 400 after a HEAD its body, and a HEAD's 400 none", function()
      local sock = assert(helper.connect(srv.port))
      sock:send(helper.request_bytes("HEAD", "/ok", { Host = "x" })
        .. "GARBAGE\r\n\r\n")
      local head = helper.read_response(sock, "HEAD")
      assert.equal(200, head.status)
      local bad = helper.read_response(sock)
      sock:close()
      assert.equal(400, bad.status)
      assert.equal(tonumber(bad.headers["content-length"]), #bad.body)
      assert.truthy(#bad.body > 0)
      -- a HEAD with a bad Host: 400, with the length but no body bytes
      local raw = helper.raw(srv.port, "HEAD / HTTP/1.1\r\nHost: a b\r\n\r\n")
      assert.truthy(raw:find("^HTTP/1.1 400"), raw)
      assert.truthy(raw:sub(-4) == "\r\n\r\n", raw)
    end)
  end)

  describe("PROXY addresses", function()
    local function proxied(line)
      local p = helper.start([[
return { handler = function(req) return { body = req.remote_addr } end,
  options = { proxy_protocol = "enable" } }
]])
      local out = helper.raw(p.port, line .. helper.request_bytes("GET", "/",
        { Host = "x", Connection = "close" }))
      assert.equal(0, p:stop())
      return out
    end

    it("takes no IPv6 zone and no address of the other family", function()
      for _, line in ipairs({ "PROXY TCP6 fe80::1%\1 ::1 1 2\r\n",
        "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
        "PROXY TCP4 ::1 ::1 1 2\r\n", "PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n",
        "PROXY TCP4 1.2.3.4 1.2.3.4 1 70000\r\n" }) do
        assert.truthy(proxied(line):find("^HTTP/1.1 400"), line)
      end
      local out = proxied("PROXY TCP6 2001:DB8:0::1 ::1 1 2\r\n")
      assert.truthy(out:find("\r\n\r\n2001:db8::1$"), out)
    end)
  end)
end)

describe("a graceful stop (SIGTERM)", function()
  -- The CLI stops its servers with a 1 s timeout: what ends within it
  -- completes, an HTTP stream and a long poll too; what does not is cut.
  local APP = [[
local ringlet = require "ringlet"
return function(req)
  if req.uri == "/stream" then -- 5 lines, 100 ms apart
    return ringlet.as_channel(req, { on_open = function(ch)
      for i = 1, 5 do
        ringlet.sleep(100)
        ch:send("line " .. i .. "\n", { close = i == 5 })
      end
    end })
  elseif req.uri == "/poll" then -- answered after 300 ms
    return ringlet.as_channel(req, { on_open = function(ch)
      ringlet.timer(300, function() ch:send("polled", { close = true }) end)
    end })
  elseif req.uri == "/forever" then
    return ringlet.as_channel(req, { on_open = function(ch)
      while ch:is_open() do ch:send("tick\n") ringlet.sleep(50) end
    end })
  end
  return { body = "ok" }
end
]]

  it("lets streams and polls that end within the timeout end, and cuts "
    .. "the rest", function()
    local srv = helper.start(APP)
    local function open(path)
      local s = assert(helper.connect(srv.port))
      assert(s:send("GET " .. path .. " HTTP/1.1\r\nHost: h\r\n\r\n"))
      return s
    end
    local stream, poll, forever = open("/stream"), open("/poll"), open("/forever")
    socket.sleep(0.15) -- all three are in flight
    srv:signal("TERM")
    local function all(s)
      local out, err, partial = s:receive("*a")
      s:close()
      return out or partial, err
    end
    local st = all(stream)
    assert.truthy(st:find("line 5\n\r\n0\r\n\r\n$"), st)
    local po = all(poll)
    assert.truthy(po:find("^HTTP/1.1 200"), po)
    assert.truthy(po:lower():find("connection: close"), po)
    assert.truthy(po:find("\r\n\r\npolled$"), po)
    local fo = all(forever)
    assert.truthy(fo:find("tick"), fo)
    assert.falsy(fo:find("\r\n0\r\n\r\n$"), "an endless stream is cut")
    assert.equal(0, srv:stop(), srv:stderr())
  end)
end)
