-- ringlet.group and ringlet.groups: members over WebSockets, HTTP streams
-- and long polling, broadcast framed once per transport, members leaving
-- as they close, the per-member form, full members, named groups.
--
-- One server for the block; the tests drive it over real sockets
-- (spec/wsclient.lua for WebSockets, raw HTTP for streams and polls) and
-- read its state from GET /state.

local helper = require "helper"
local ws = require "wsclient"

local OP = ws.OP

local APP = helper.SERIALIZER .. [[
local ringlet = require "ringlet"
local g = ringlet.group()                            -- /ws, /stream, /poll
local slow_skip = ringlet.group()                    -- /slow?skip
local slow_close = ringlet.group({ on_full = "close" }) -- /slow?close
local store = ringlet.groups()
local log = {}

local function member(req, group, opts)
  local tag = req.query_string or ""
  opts = opts or {}
  return ringlet.as_channel(req, {
    max_buffered = opts.max_buffered,
    on_open = function(ch)
      -- a stream (its head sent), not a poll
      if req.uri == "/stream" or req.uri == "/slow-stream" then
        ch:send("open\n")
      end
      group:add(ch, tag)
      store:add("room", ch, tag)
    end,
    on_message = function(ch, msg)
      -- "except:x" broadcasts x to the others
      local rest = msg:match("^except:(.*)$")
      if rest then log[#log + 1] = "except " .. g:broadcast(rest, { except = ch }) end
    end,
    on_error = function(_, err) log[#log + 1] = "error " .. tag .. " " .. err:sub(1, 16) end,
    on_close = function(_, info)
      log[#log + 1] = "close " .. tag .. " " .. tostring(info.code)
    end,
  })
end

local function state()
  local tags = {}
  g:each(function(_, tag) tags[#tags + 1] = tag end)
  table.sort(tags)
  local room = store:group("room")
  return { count = #g, tags = tags, room = room and #room or false,
           slow = #slow_skip + #slow_close, log = log }
end

return function(req)
  local u, q = req.uri, req.query_string or ""
  if u == "/ws" or u == "/stream" or u == "/poll" then return member(req, g) end
  if u == "/slow" or u == "/slow-stream" then
    return member(req, q == "close" and slow_close or slow_skip,
      { max_buffered = 1024 })
  end
  local n
  if u == "/broadcast" then
    n = g:broadcast(req.body or "", { binary = q == "binary" })
  elseif u == "/broadcast-fn" then
    n = g:broadcast(function(_, tag)
      if tag == q then return "only " .. tag end
    end)
  elseif u == "/broadcast-room" then
    n = store:broadcast("room", req.body or "")
  elseif u == "/broadcast-slow" or u == "/broadcast-slow-fn" then
    local big = ("s"):rep(4 * 1024 * 1024)
    local group = q == "close" and slow_close or slow_skip
    local counts = {}
    for i = 1, 3 do
      if u == "/broadcast-slow" then
        counts[i] = group:broadcast(big, { binary = true })
      else -- the per-member form skips a full member too
        counts[i] = group:broadcast(function() return big end)
      end
    end
    n = table.concat(counts, ",")
  elseif u == "/regroup" then
    -- a store's group that emptied comes back to its store when added to
    local found
    g:each(function(ch, tag) if tag == q then found = ch end end)
    local room = store:group("room")
    room:remove(found)
    local gone = store:group("room") == nil
    room:add(found, q)
    n = tostring(gone) .. " " .. tostring(store:group("room") == room) .. " "
      .. store:broadcast("room", "again")
  elseif u == "/remove" then
    local found
    g:each(function(ch, tag) if tag == q then found = ch end end)
    local before = found and g:has(found)
    local removed = found and g:remove(found)
    n = tostring(before) .. " " .. tostring(removed) .. " "
      .. tostring(found and g:has(found)) .. " "
      .. tostring(found and g:remove(found))
  elseif u == "/store-remove" then
    local found
    g:each(function(ch, tag) if tag == q then found = ch end end)
    local room = store:group("room")
    n = tostring(store:remove("room", found)) .. " "
      .. tostring(store:remove("room", found)) .. " "
      .. tostring(room and #room) .. " " .. tostring(g:has(found))
  elseif u == "/state" then
    return { status = 200, body = serialize(state()) }
  else
    return { status = 404, body = "no route" }
  end
  return { status = 200, body = tostring(n) }
end
]]

local function state(srv)
  local res = assert(helper.request(srv.port, "GET", "/state", { host = "h" }))
  return helper.decode(res.body)
end

local function post(srv, path, body)
  local res = assert(helper.request(srv.port, "POST", path, { host = "h" },
    body or ""))
  assert.equal(200, res.status, res.body)
  return res.body
end

local function show(t)
  local parts = {}
  for k, v in pairs(t) do
    parts[#parts + 1] = tostring(k) .. "="
      .. (type(v) == "table" and "{" .. table.concat(v, "; ") .. "}"
          or tostring(v))
  end
  return table.concat(parts, " ")
end

local function wait_for(srv, key, n)
  assert.is_true(helper.wait_until(function() return state(srv)[key] == n end),
    key .. " never became " .. n .. ": " .. show(state(srv)))
end

local function wait_count(srv, n) wait_for(srv, "count", n) end

local function logged(srv, pattern)
  for _, line in ipairs(state(srv).log) do
    if line:match(pattern) then return true end
  end
  return false
end

-- the status line and headers of a response whose body goes on
local function read_head(sock)
  local status = assert(sock:receive("*l"))
  repeat local line = assert(sock:receive("*l")) until line == ""
  return tonumber(status:match("^HTTP/1%.1 (%d+)"))
end

-- GET path with the raw socket; returns the socket (the response unread)
local function open_http(srv, path)
  local sock = assert(helper.connect(srv.port))
  assert(sock:send("GET " .. path .. " HTTP/1.1\r\nHost: h\r\n\r\n"))
  return sock
end

local function expect_message(sock, want, opcode)
  local op, payload = ws.read_message(sock)
  assert.equal(opcode or OP.TEXT, op)
  assert.equal(want, payload)
end

describe("ringlet.group", function()
  local srv
  lazy_setup(function() srv = helper.start(APP) end)
  lazy_teardown(function() helper.assert_clean_stop(srv) end)

  it("broadcasts one message to WebSocket, streaming and long-polling "
    .. "members, and drops the poll it answered", function()
    local a = assert(ws.handshake(srv.port, "/ws?a"))
    local b = assert(ws.handshake(srv.port, "/ws?b"))
    local st = open_http(srv, "/stream?s")
    assert.equal(200, read_head(st))
    local poll = open_http(srv, "/poll?p")
    wait_count(srv, 4)
    assert.same({ "a", "b", "p", "s" }, state(srv).tags)

    assert.equal("4", post(srv, "/broadcast", "hello"))
    expect_message(a, "hello")
    expect_message(b, "hello")
    -- the stream: its first chunk ("open\n"), then the broadcast's
    assert.equal("5\r\nopen\n\r\n", st:receive(10))
    assert.equal("5\r\nhello\r\n", st:receive(10))
    -- the long poll: a whole response, Content-Length, and it is over
    local res = assert(helper.read_response(poll))
    assert.equal(200, res.status)
    assert.equal("5", res.headers["content-length"])
    assert.equal("hello", res.body)
    poll:close()
    wait_count(srv, 3)

    assert.equal("3", post(srv, "/broadcast?binary", "\0\1\2"))
    expect_message(a, "\0\1\2", OP.BINARY)
    expect_message(b, "\0\1\2", OP.BINARY)
    assert.equal("3\r\n\0\1\2\r\n", st:receive(8))

    -- a member that closes leaves by itself, from every group
    ws.send_close(a, 1000)
    assert.truthy(ws.read_close(a))
    a:close()
    wait_count(srv, 2)
    st:close()
    wait_count(srv, 1)
    b:close()
    wait_count(srv, 0)
    -- and the named group went with its last member
    assert.is_false(state(srv).room)
  end)

  it("puts an emptied store group back in its store when it gets a member",
    function()
      local z = assert(ws.handshake(srv.port, "/ws?z"))
      wait_count(srv, 1)
      assert.equal("true true 1", post(srv, "/regroup?z"))
      expect_message(z, "again")
      z:close()
      wait_count(srv, 0)
      assert.is_false(state(srv).room)
    end)

  it("skips the sender with except, and reaches only the members the "
    .. "function answers for", function()
    local a = assert(ws.handshake(srv.port, "/ws?a"))
    local b = assert(ws.handshake(srv.port, "/ws?b"))
    local c = assert(ws.handshake(srv.port, "/ws?c"))
    wait_count(srv, 3)
    ws.send_text(a, "except:from a")
    expect_message(b, "from a")
    expect_message(c, "from a")
    -- a got nothing: its next message is the next broadcast
    assert.equal("1", post(srv, "/broadcast-fn?a"))
    expect_message(a, "only a")
    assert.equal("3", post(srv, "/broadcast", "all"))
    for _, s in ipairs({ a, b, c }) do expect_message(s, "all") end
    assert.equal("3", post(srv, "/broadcast-room", "room"))
    for _, s in ipairs({ a, b, c }) do expect_message(s, "room") end
    local log = state(srv).log
    assert.equal("except 2", log[#log])

    -- a store's remove takes it out of that group only
    assert.equal("true false 2 true", post(srv, "/store-remove?c"))
    assert.equal("2", post(srv, "/broadcast-room", "room only"))
    expect_message(a, "room only")
    expect_message(b, "room only")
    -- remove: has before, removed, has after, a second remove
    assert.equal("true true false false", post(srv, "/remove?b"))
    assert.same({ "a", "c" }, state(srv).tags)
    assert.equal("2", post(srv, "/broadcast", "after"))
    expect_message(a, "after")
    expect_message(c, "after")
    for _, s in ipairs({ a, b, c }) do s:close() end
    wait_count(srv, 0)
  end)

  it("skips a member over its max_buffered and tells its on_error",
    function()
      local s = assert(ws.handshake(srv.port, "/slow?skip"))
      wait_for(srv, "slow", 1)
      -- the first 4 MiB is queued; the next two find the buffer full
      assert.equal("1,0,0", post(srv, "/broadcast-slow?skip"))
      assert.is_true(helper.wait_until(function()
        return logged(srv, "^error skip send buffer full")
      end), show(state(srv)))
      expect_message(s, ("s"):rep(4 * 1024 * 1024), OP.BINARY)
      s:close()
      wait_for(srv, "slow", 0)
    end)

  it("skips a full member in the per-member form too", function()
      local s = assert(ws.handshake(srv.port, "/slow?skip"))
      wait_for(srv, "slow", 1)
      -- a text message each time now (the function's value goes to send)
      assert.equal("1,0,0", post(srv, "/broadcast-slow-fn?skip"))
      expect_message(s, ("s"):rep(4 * 1024 * 1024))
      s:close()
      wait_for(srv, "slow", 0)
    end)

  it("closes a full member with 1013 when the group says on_full = "
    .. "\"close\"", function()
      local s = assert(ws.handshake(srv.port, "/slow?close"))
      wait_for(srv, "slow", 1)
      assert.equal("1,0,0", post(srv, "/broadcast-slow?close"))
      expect_message(s, ("s"):rep(4 * 1024 * 1024), OP.BINARY)
      local close = assert(ws.read_close(s))
      assert.equal(1013, (ws.close_code(close)))
      ws.send_close(s, 1013)
      s:close()
      assert.is_true(helper.wait_until(function()
        return logged(srv, "^close close 1013$")
      end), show(state(srv)))
      wait_for(srv, "slow", 0)
    end)
end)

describe("ringlet.group and a full HTTP stream", function()
  it("ends the stream of a full member when on_full is \"close\"",
    function()
      local srv = helper.start(APP)
      local defer = helper.cleanup(finally)
      defer(function() helper.assert_clean_stop(srv) end)
      local st = open_http(srv, "/slow-stream?close")
      defer(function() st:close() end)
      wait_for(srv, "slow", 1)
      assert.equal("1,0,0", post(srv, "/broadcast-slow?close"))
      -- the head, "open\n", the first message, then the end of the stream
      local res = assert(helper.read_response(st))
      assert.equal(200, res.status)
      assert.equal("open\n" .. ("s"):rep(4 * 1024 * 1024), res.body)
      assert.is_true(helper.wait_until(function()
        return logged(srv, "^close close nil$")
      end), show(state(srv)))
      wait_for(srv, "slow", 0)
    end)
end)

describe("ringlet.group's bad input", function()
  it("raises a clear error for a bad option, member or message", function()
    local ok, out, err = helper.run_script([[
local ringlet = require "ringlet"
local function try(f, ...)
  local ok, e = pcall(f, ...)
  print(ok, (tostring(e):gsub("^.-:%d+: ", "")))
end
local g = ringlet.group()
try(ringlet.group, { on_full = "drop" })
try(ringlet.group, { nope = 1 })
try(g.add, g, "not a channel")
try(g.broadcast, g, {})
try(g.broadcast, g, "x", { nope = true })
try(g.broadcast, g, "x", { binary = 1 })
try(g.broadcast, g, "x", { except = g })
print(#g, g:broadcast("nobody"), tostring(g))
local store = ringlet.groups()
print(store:broadcast("none", "x"), store:group("none"))
]])
    assert.is_true(ok, err)
    assert.equal(table.concat({
      "false\tgroup: option 'on_full' must be \"skip\" or \"close\"",
      "false\tgroup: unknown option 'nope'",
      "false\tbad argument #2 to '?' (ringlet.channel expected, got string)",
      "false\tbad argument #2 to '?' (string expected, got table)",
      "false\tbroadcast: unknown option 'nope'",
      "false\tbroadcast: option 'binary' must be a boolean",
      "false\tbroadcast: option 'except' must be a channel",
      "0\t0\tringlet.group (0 members)",
      "0\tnil",
    }, "\n") .. "\n", out)
  end)
end)
