-- The request table's keys made on first use (csrc/ring.c): whatever order
-- a handler reads them in (indexing, pairs, assignment first), it sees what
-- a plain table built at once would hold; pairs over the request and its
-- headers gives exactly the plain table's keys and values; a request kept
-- past its exchange still reads its own values after the connection has
-- parsed others.

local helper = require "helper"

local APP = helper.SERIALIZER .. [==[
local ringlet = require "ringlet"

local LAZY = { "headers", "server_port", "server_name", "remote_addr",
               "scheme", "protocol", "websocket" }
local kept = {}

-- a plain copy made by indexing every key DESIGN.md lists, before any pairs
local function by_index(req)
  local t = {}
  for _, k in ipairs({ "uri", "query_string", "request_method", "body",
                       table.unpack(LAZY) }) do
    t[k] = req[k]
  end
  return t
end

local function by_pairs(req)
  local t = {}
  for k, v in pairs(req) do t[k] = v end
  return t
end

local function headers_by_pairs(h)
  local t = {}
  for k, v in pairs(h) do t[k] = v end
  return t
end

local routes = {}

routes["/index-then-pairs"] = function(req)
  local a = by_index(req)
  local b = by_pairs(req)
  return { status = 200, body = serialize({ a = a, b = b }) }
end

routes["/pairs-then-index"] = function(req)
  local b = by_pairs(req)
  local a = by_index(req)
  return { status = 200, body = serialize({ a = a, b = b }) }
end

routes["/some-then-pairs"] = function(req)
  local first = { remote_addr = req.remote_addr, protocol = req.protocol }
  local b = by_pairs(req)
  return { status = 200, body = serialize({ first = first, b = b,
    h = headers_by_pairs(req.headers) }) }
end

routes["/raw"] = function(req)
  local before = {
    mt = tostring(getmetatable(req)),
    raw_headers = rawget(req, "headers") == nil,
    raw_uri = rawget(req, "uri"),
    setmt = select(2, pcall(setmetatable, req, {})),
  }
  local _ = req.server_name
  before.raw_name = rawget(req, "server_name")
  for _ in pairs(req) do end
  local after = {
    mt = getmetatable(req) == nil,
    raw_headers = type(rawget(req, "headers")),
    raw_port = rawget(req, "server_port"),
  }
  return { status = 200, body = serialize({ before = before, after = after }) }
end

routes["/assign"] = function(req)
  req.headers = nil            -- before it was ever read: stays nil
  req.server_name = "assigned" -- before it was read: the user's value
  req.extra = 1                -- a new key
  local scheme = req.scheme
  req.scheme = nil             -- after it was read
  local seen = by_pairs(req)
  return { status = 200, body = serialize({
    headers = req.headers, server_name = req.server_name, scheme = req.scheme,
    read_scheme = scheme, seen = seen }) }
end

routes["/keep"] = function(req)
  kept[#kept + 1] = req
  return { status = 200, body = tostring(#kept) }
end

routes["/kept"] = function()
  local out = {}
  for i, r in ipairs(kept) do out[i] = by_pairs(r) end
  return { status = 200, body = serialize(out) }
end

-- a full collection: its end makes the next request renew the weak table
-- that finds snapshots (ring.c's lz_renew)
routes["/collect"] = function()
  collectgarbage()
  collectgarbage()
  return { status = 200, body = "collected" }
end

-- reads its lazy keys only after others came (and collections) meanwhile
routes["/sleep-read"] = function(req)
  ringlet.sleep(300)
  return { status = 200, body = serialize({ n = req.headers["x-n"],
    name = req.server_name }) }
end

routes["/passed-on"] = function(req)
  local function inner(r) return r.headers["x-one"], r.server_port end
  local co = coroutine.wrap(function(r) return inner(r) end)
  local a, b = co(req)
  return { status = 200, body = serialize({ a, b }) }
end

-- the handshake answers the key the client sent, and origins judge the
-- Origin it sent, whatever the handler did to req.headers
routes["/ws-edited"] = function(req)
  req.headers["sec-websocket-key"] = "dGhpcyBpcyBub3QgaXQ="
  req.headers.origin = "https://allowed.test"
  return ringlet.as_channel(req, { origins = { "https://allowed.test" },
    on_open = function(ch)
      ch:send(ch:originating_request().headers["sec-websocket-key"])
    end })
end

return function(req)
  local h = routes[req.uri]
  if h then return h(req) end
  return { status = 404, body = "no route" }
end
]==]

describe("the request table's keys made on first use", function()
  local srv, port

  setup(function()
    srv = helper.start(APP)
    port = srv.port
  end)

  teardown(function()
    assert.equal(0, srv:stop())
  end)

  local function get(path, headers, method, body)
    local res = assert(helper.request(port, method or "GET", path, headers,
      body))
    assert.equal(200, res.status, res.body)
    return helper.decode(res.body)
  end

  local HEADERS = { ["X-One"] = "1", ["X-Twice"] = { "a", "b" },
                    ["User-Agent"] = "spec" }

  it("gives the same keys and values by indexing and by pairs", function()
    local r = get("/index-then-pairs?q=1", HEADERS)
    assert.same(r.a, r.b)
    assert.equal("1", r.b.headers["x-one"])
    assert.equal("a, b", r.b.headers["x-twice"])
    assert.equal(port, r.b.server_port)
    assert.equal("127.0.0.1", r.b.remote_addr)
    assert.equal("http", r.b.scheme)
    assert.equal("HTTP/1.1", r.b.protocol)
    assert.equal(false, r.b.websocket)
    assert.equal("q=1", r.b.query_string)
    local r2 = get("/pairs-then-index?q=1", HEADERS)
    assert.same(r2.a, r2.b)
    r2.a.uri, r2.b.uri = r.a.uri, r.b.uri
    assert.same(r.b, r2.b)
  end)

  it("pairs gives every key once, whichever were read first", function()
    local r = get("/some-then-pairs", HEADERS, "POST", "the body")
    local keys = {}
    for k in pairs(r.b) do keys[#keys + 1] = k end
    table.sort(keys)
    assert.same({ "body", "headers", "protocol", "remote_addr",
                  "request_method", "scheme", "server_name", "server_port",
                  "uri", "websocket" }, keys)
    assert.equal("the body", r.b.body)
    assert.equal("post", r.b.request_method)
    assert.equal(r.first.remote_addr, r.b.remote_addr)
    assert.equal(r.first.protocol, r.b.protocol)
    -- the headers table is a plain one: every header, lower-cased
    assert.same(r.b.headers, r.h)
    assert.equal("spec", r.h["user-agent"])
    assert.equal("8", r.h["content-length"])
  end)

  it("differs from a plain table only in raw access and setmetatable until pairs", function()
    local r = get("/raw")
    assert.equal("ringlet.request", r.before.mt)
    assert.is_true(r.before.raw_headers) -- not made yet
    assert.equal("/raw", r.before.raw_uri) -- set when the table is made
    assert.matches("protected metatable", r.before.setmt)
    assert.equal("127.0.0.1", r.before.raw_name) -- made by reading it
    assert.is_true(r.after.mt) -- pairs leaves a plain table
    assert.equal("table", r.after.raw_headers)
    assert.equal(port, r.after.raw_port)
  end)

  it("lets assignment win over keys not made yet, nil included", function()
    local r = get("/assign", HEADERS)
    assert.is_nil(r.headers)
    assert.equal("assigned", r.server_name)
    assert.is_nil(r.scheme)
    assert.equal("http", r.read_scheme)
    assert.is_nil(r.seen.headers)
    assert.is_nil(r.seen.scheme)
    assert.equal("assigned", r.seen.server_name)
    assert.equal(1, r.seen.extra)
    assert.equal(port, r.seen.server_port)
  end)

  it("keeps each request's own values after the connection parsed others", function()
    local sock = assert(helper.connect(port))
    finally(function() sock:close() end)
    for i = 1, 3 do
      assert(sock:send(helper.request_bytes("GET", "/keep", {
        Host = "host" .. i .. ".test:99", ["X-N"] = tostring(i),
        ["X-Pad"] = string.rep("p", i * 300) })))
      local res = assert(helper.read_response(sock))
      assert.equal(tostring(i), res.body)
    end
    assert(sock:send(helper.request_bytes("GET", "/kept",
      { Host = "other.test" })))
    local kept = helper.decode(assert(helper.read_response(sock)).body)
    assert.equal(3, #kept)
    for i = 1, 3 do
      assert.equal("host" .. i .. ".test", kept[i].server_name)
      assert.equal(tostring(i), kept[i].headers["x-n"])
      assert.equal(i * 300, #kept[i].headers["x-pad"])
      assert.equal("/keep", kept[i].uri)
    end
  end)

  it("keeps requests' values across collections and renewals", function()
    local function keep(i)
      local res = assert(helper.request(port, "GET", "/keep",
        { Host = "renew" .. i .. ".test", ["X-N"] = "r" .. i }))
      return tonumber(res.body)
    end
    local first = keep(1)
    -- one request waits in its handler, unread, while the table is renewed
    local sleeper = assert(helper.connect(port))
    finally(function() sleeper:close() end)
    assert(sleeper:send(helper.request_bytes("GET", "/sleep-read",
      { Host = "sleeper.test", ["X-N"] = "s" })))
    for i = 2, 6 do
      assert.equal("collected",
        assert(helper.request(port, "GET", "/collect")).body)
      keep(i)
      for _ = 1, 20 do helper.request(port, "GET", "/nothing") end
    end
    local slept = helper.decode(assert(helper.read_response(sleeper)).body)
    assert.same({ n = "s", name = "sleeper.test" }, slept)
    local kept = get("/kept")
    for i = 1, 6 do
      local r = kept[first + i - 1]
      assert.equal("renew" .. i .. ".test", r.server_name)
      assert.equal("r" .. i, r.headers["x-n"])
    end
  end)

  it("does not let a handler's edits to req.headers change the handshake", function()
    local ws = require "wsclient"
    local sock, res = ws.handshake(port, "/ws-edited")
    assert.truthy(sock, res)
    finally(function() sock:close() end)
    assert.equal(101, res.status)
    assert.equal(ws.accept(res.key), res.headers["sec-websocket-accept"])
    local s2, res2 = ws.handshake(port, "/ws-edited",
      { Origin = "https://elsewhere.test" })
    if s2 then s2:close() end
    assert.equal(403, res2.status)
    -- two Origin lines are no one origin, even when each is allowed
    local s3, res3 = ws.handshake(port, "/ws-edited",
      { Origin = { "https://allowed.test", "https://allowed.test" } })
    if s3 then s3:close() end
    assert.equal(403, res3.status)
  end)

  it("can be passed on to other functions and coroutines", function()
    assert.same({ "1", port }, get("/passed-on", HEADERS))
  end)
end)

describe("the request snapshot's wide lengths", function()
  -- a header length that does not fit 16 bits: only a 65,536-byte name
  -- with an empty value (the header section's cap is 64 KiB), under a
  -- max_line that allows such a line
  local srv

  setup(function()
    srv = helper.start(helper.SERIALIZER .. [==[
local function handler(req)
  local names = {}
  for k, v in pairs(req.headers) do names[#names + 1] = #k .. "=" .. v end
  return { status = 200, body = serialize({ names = names,
    server_name = req.server_name }) }
end
return { handler = handler, options = { max_line = 70000 } }
]==])
  end)

  teardown(function()
    assert.equal(0, srv:stop())
  end)

  it("keeps a 65,536-byte header name", function()
    local name = ("n"):rep(65536)
    local data = helper.raw(srv.port,
      "GET / HTTP/1.0\r\n" .. name .. ":\r\n\r\n")
    local res = helper.parse_responses(data)[1]
    assert.equal(200, res.status, res.body)
    local r = helper.decode(res.body)
    assert.same({ "65536=" }, r.names)
    assert.equal("127.0.0.1", r.server_name) -- no Host: the listening address
  end)
end)
