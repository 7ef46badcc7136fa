-- ringlet.sse (lua/ringlet/sse.lua): server-sent events over an HTTP
-- stream channel, and examples/sse_clock.lua.
--
-- Every server runs in a child process (helper.start); the clients are
-- LuaSocket (byte for byte: the head's lines, each chunk), curl and, for the
-- example's page, headless Chromium driven by playwright-core
-- (spec/node/sse_browser.js; pending when node, its node_modules or
-- Chromium are missing). An app hands what its callbacks saw to busted
-- through a log kept in its upvalues, which GET /events answers, serialized
-- (helper.EVENT_LOG). Every wait is bounded by helper.TEST_TIMEOUT.

local helper = require "helper"
local ws = require "wsclient"

local PRELUDE = [[
local ringlet = require "ringlet"
local sse = require "ringlet.sse"
]] .. helper.EVENT_LOG

local function start(routes_source)
  return helper.start(PRELUDE .. routes_source .. "\n" .. helper.DISPATCH)
end

local function get(path, extra)
  local headers = { { "Host", "127.0.0.1" } }
  for _, h in ipairs(extra or {}) do headers[#headers + 1] = h end
  return helper.request_bytes("GET", path, headers)
end

-- Reads a response head line by line from a live stream: the status and
-- the header lines in order ({lower-case name, value}); every line must
-- end in CRLF.
local function read_head(sock)
  local function line()
    local buf = {}
    while true do
      local c = assert(sock:receive(1))
      if c == "\n" then break end
      buf[#buf + 1] = c
    end
    local l = table.concat(buf)
    assert(l:sub(-1) == "\r", "a head line without CRLF: " .. l)
    return l:sub(1, -2)
  end
  local status = tonumber(line():match("^HTTP/1%.1 (%d%d%d) "))
  assert(status, "bad status line")
  local list = {}
  while true do
    local l = line()
    if l == "" then break end
    local name, value = l:match("^([^:]+): (.*)$")
    assert(name, "bad header line: " .. l)
    list[#list + 1] = { name:lower(), value }
  end
  return status, list
end

-- The values a header list holds for name, in order.
local function values(list, name)
  local out = {}
  for _, h in ipairs(list) do
    if h[1] == name then out[#out + 1] = h[2] end
  end
  return out
end

local function names(list)
  local out = {}
  for _, h in ipairs(list) do out[#out + 1] = h[1] end
  table.sort(out)
  return out
end

-- One chunk's data from a live chunked stream ("" for the last chunk).
local function read_chunk(sock)
  local line = assert(sock:receive("*l"))
  local size = tonumber(line:match("^(%x+)\r?$"), 16)
  assert(size, "bad chunk size line: " .. line)
  if size == 0 then
    assert.equal("\r\n", sock:receive(2))
    return ""
  end
  local data = assert(sock:receive(size))
  assert.equal("\r\n", sock:receive(2))
  return data
end

-- true when nothing arrives on sock within 300 ms.
local function silent(sock)
  sock:settimeout(0.3)
  local data, err, partial = sock:receive(1)
  sock:settimeout(helper.TEST_TIMEOUT)
  return data == nil and err == "timeout" and partial == ""
end

local DEFAULT_NAMES = { "cache-control", "content-type", "date",
                        "transfer-encoding", "x-accel-buffering" }

describe("ringlet.sse.as_channel", function()
  it("answers text/event-stream, no caching, no proxy buffering, at once, "
    .. "before any event and before on_open runs", function()
    local defer = helper.cleanup(finally)
    local srv = start([[
local held
routes["/quiet"] = function(req)
  return sse.as_channel(req, {
    on_open = function(ch)
      held = ch          -- sends nothing for now
      record("open", ch:buffered_amount() >= 0)
    end,
    on_close = function(_, info)
      record("close", info.code, info.reason)
    end,
  })
end
routes["/first"] = function()
  record("first", sse.send(held, "first"))
  return { status = 200, body = "sent" }
end
]])
    defer(function() srv:stop() end)
    local sock = assert(helper.connect(srv.port))
    defer(function() sock:close() end)

    assert(sock:send(get("/quiet")))
    local status, list = read_head(sock)
    assert.equal(200, status)
    assert.same(DEFAULT_NAMES, names(list))
    assert.same({ "text/event-stream; charset=utf-8" },
      values(list, "content-type"))
    assert.same({ "no-cache" }, values(list, "cache-control"))
    assert.same({ "no" }, values(list, "x-accel-buffering"))
    assert.same({ "chunked" }, values(list, "transfer-encoding"))
    assert(silent(sock), "bytes after the head before any event")
    helper.wait_events(srv, "open true")

    -- the first event is the stream's first chunk
    assert.equal("sent", assert(helper.request(srv.port, "GET", "/first")).body)
    assert.equal("data: first\n\n", read_chunk(sock))
    sock:close()
    local log = helper.wait_events(srv, "close nil nil")
    assert.same({ "open true", "first true", "close nil nil" }, log)
    helper.assert_clean_stop(srv)
  end)

  it("keeps the handler's status and headers (any letter case) and adds "
    .. "only the defaults it does not set", function()
    local defer = helper.cleanup(finally)
    local srv = start([[
routes["/custom"] = function(req)
  local res = sse.as_channel(req, {
    on_open = function(ch) sse.send(ch, "x", { close = true }) end,
  })
  res.status = 203
  res.headers["Cache-Control"] = "no-store"
  res.headers["set-cookie"] = { "a=1", "b=2" }
  res.headers["X-Extra"] = "yes"
  return res
end
routes["/replaced"] = function(req)
  local res = sse.as_channel(req, {
    on_open = function(ch) sse.send(ch, "x", { close = true }) end,
  })
  res.headers = { ["Content-Type"] = "text/event-stream",
                  ["x-accel-buffering"] = "yes" }
  return res
end
]])
    defer(function() srv:stop() end)

    local res = assert(helper.request(srv.port, "GET", "/custom"))
    assert.equal(203, res.status)
    local list = res.header_list
    assert.same({ "cache-control", "content-type", "date", "set-cookie",
                  "set-cookie", "transfer-encoding", "x-accel-buffering",
                  "x-extra" }, names(list))
    assert.same({ "no-store" }, values(list, "cache-control"))
    assert.same({ "a=1", "b=2" }, values(list, "set-cookie"))
    assert.same({ "text/event-stream; charset=utf-8" },
      values(list, "content-type"))
    assert.same({ "no" }, values(list, "x-accel-buffering"))
    assert.same({ "yes" }, values(list, "x-extra"))
    assert.same({ "data: x\n\n" }, res.chunks)

    res = assert(helper.request(srv.port, "GET", "/replaced"))
    assert.equal(200, res.status)
    list = res.header_list
    assert.same(DEFAULT_NAMES, names(list))
    assert.same({ "text/event-stream" }, values(list, "content-type"))
    assert.same({ "no-cache" }, values(list, "cache-control"))
    assert.same({ "yes" }, values(list, "x-accel-buffering"))
    helper.assert_clean_stop(srv)
  end)

  it("passes ringlet.as_channel's options on: on_close, timeout", function()
    local defer = helper.cleanup(finally)
    local srv = start([[
routes["/timeout"] = function(req)
  return sse.as_channel(req, {
    timeout = 100,
    on_open = function(ch) sse.send(ch, "before the timeout") end,
    on_close = function(ch, info)
      record("closed", ch:is_open(), info.code, info.reason)
    end,
  })
end
]])
    defer(function() srv:stop() end)
    local sock = assert(helper.connect(srv.port))
    defer(function() sock:close() end)
    assert(sock:send(get("/timeout")))
    local res = assert(helper.read_response(sock))
    assert.same({ 200, { "data: before the timeout\n\n" }, {} },
      { res.status, res.chunks, res.trailers })
    helper.wait_events(srv, "closed false nil nil")
    -- the stream ended, the connection serves its next request
    assert(sock:send(get("/events")))
    res = assert(helper.read_response(sock))
    assert.same({ "closed false nil nil" }, helper.decode(res.body))
    helper.assert_clean_stop(srv)
  end)

  it("raises on bad options; sse's own checks point at the caller",
  function()
    local defer = helper.cleanup(finally)
    local srv = start([[
local opts = {
  opts = "fast",
  open = { on_open = true },
  bogus = { bogus = 1 },
  timeout = { timeout = -1 },
}
local function answer(req)
  local res = sse.as_channel(req, opts[req.query_string]) -- not a tail call
  return res
end
routes["/bad"] = function(req)
  local ok, err = pcall(answer, req)
  return { status = 200, body = tostring(ok) .. " " .. tostring(err) }
end
]])
    defer(function() srv:stop() end)
    local function bad(which)
      local res = assert(helper.request(srv.port, "GET", "/bad?" .. which))
      assert.equal(200, res.status)
      return res.body
    end
    assert.matches("^false [^ ]+:%d+: sse%.as_channel: opts must be a table "
      .. "%(got string%)$", bad("opts"))
    assert.matches("^false [^ ]+:%d+: sse%.as_channel: option 'on_open' "
      .. "must be a function$", bad("open"))
    assert.matches("^false .*unknown option 'bogus'", bad("bogus"))
    assert.matches("^false .*'timeout' must be an integer >= 0", bad("timeout"))
    for _, which in ipairs({ "opts", "open" }) do
      assert.is_nil(bad(which):find("sse.lua", 1, true))
    end
    helper.assert_clean_stop(srv)
  end)

  it("on a WebSocket upgrade makes a WebSocket channel: no head, no empty "
    .. "message, each event one text message", function()
    local defer = helper.cleanup(finally)
    local srv = start([[
routes["/ws"] = function(req)
  return sse.as_channel(req, {
    on_open = function(ch)
      record("send", sse.send(ch, { id = 1, data = "a\nb" }))
    end,
  })
end
]])
    defer(function() srv:stop() end)
    local sock, res = ws.handshake(srv.port, "/ws")
    assert(sock, res)
    defer(function() sock:close() end)
    assert.equal(101, res.status)
    assert.is_nil(res.headers["content-type"])
    local op, text = ws.read_message(sock)
    assert.same({ ws.OP.TEXT, "id: 1\ndata: a\ndata: b\n\n" }, { op, text })
    helper.wait_events(srv, "send true")
    helper.assert_clean_stop(srv)
  end)
end)

-- sse.send and sse.comment: each case's code runs in on_open in turn, with
-- its result recorded; each must make exactly one chunk of these bytes.
local CASES = {
  { 'sse.send(ch, "hello")', "data: hello\n\n" },
  { 'sse.send(ch, "")', "data:\n\n" },
  { 'sse.send(ch, "one\\ntwo")', "data: one\ndata: two\n\n" },
  { 'sse.send(ch, "one\\r\\ntwo")', "data: one\ndata: two\n\n" },
  { 'sse.send(ch, "one\\rtwo")', "data: one\ndata: two\n\n" },
  { 'sse.send(ch, "a\\r\\n\\rb\\n\\nc\\r\\r\\nd")',
    "data: a\ndata:\ndata: b\ndata:\ndata: c\ndata:\ndata: d\n\n" },
  { 'sse.send(ch, "end\\n")', "data: end\ndata:\n\n" },
  { 'sse.send(ch, "\\r\\n")', "data:\ndata:\n\n" },
  { 'sse.send(ch, " spaced ")', "data:  spaced \n\n" },
  { 'sse.send(ch, "k: v:")', "data: k: v:\n\n" },
  { 'sse.send(ch, ": not a comment")', "data: : not a comment\n\n" },
  { 'sse.send(ch, "nul\\0inside")', "data: nul\0inside\n\n" },
  { 'sse.send(ch, "é 😀")', "data: é 😀\n\n" },
  { "sse.send(ch, 42)", "data: 42\n\n" },
  { "sse.send(ch, 1.5)", "data: 1.5\n\n" },
  { 'sse.send(ch, { "a", "b" })', "data: a\ndata: b\n\n" },
  { 'sse.send(ch, { "a\\nb", "", "c\\r\\nd", 7 })',
    "data: a\ndata: b\ndata:\ndata: c\ndata: d\ndata: 7\n\n" },
  { 'sse.send(ch, { data = "x" })', "data: x\n\n" },
  { 'sse.send(ch, { comment = "note", id = 7, event = "tick", retry = 2500, '
      .. 'data = "x" })',
    ": note\nid: 7\nevent: tick\nretry: 2500\ndata: x\n\n" },
  { 'sse.send(ch, { data = { "1", "2\\n3" }, event = "list" })',
    "event: list\ndata: 1\ndata: 2\ndata: 3\n\n" },
  { 'sse.send(ch, { data = "x\\ry", id = "abc-1" })',
    "id: abc-1\ndata: x\ndata: y\n\n" },
  { 'sse.send(ch, { id = " lead" })', "id:  lead\n\n" },
  { "sse.send(ch, { id = 9 })", "id: 9\n\n" },
  { 'sse.send(ch, { id = "" })', "id:\n\n" },
  { 'sse.send(ch, { id = -3, data = "" })', "id: -3\ndata:\n\n" },
  { "sse.send(ch, { retry = 0 })", "retry: 0\n\n" },
  { "sse.send(ch, { retry = 3000.0 })", "retry: 3000\n\n" },
  { 'sse.send(ch, { event = "", data = "x" })', "event:\ndata: x\n\n" },
  { 'sse.send(ch, { event = "only" })', "event: only\n\n" },
  { 'sse.send(ch, { comment = "a\\nb", data = "x" })',
    ": a\n: b\ndata: x\n\n" },
  { 'sse.send(ch, { comment = "" })', ":\n\n" },
  { 'sse.send(ch, { comment = { "c1", "c2" }, data = {} , id = 1 })',
    ": c1\n: c2\nid: 1\n\n" },
  { "sse.comment(ch)", ":\n\n" },
  { 'sse.comment(ch, "")', ":\n\n" },
  { 'sse.comment(ch, "keep-alive")', ": keep-alive\n\n" },
  { 'sse.comment(ch, "two\\r\\nlines")', ": two\n: lines\n\n" },
  { "sse.comment(ch, {})", ":\n\n" },
  { 'sse.comment(ch, { "x", 1 })', ": x\n: 1\n\n" },
  { 'ch:send(sse.format({ id = 2, event = "e", data = "d\\nd" }))',
    "id: 2\nevent: e\ndata: d\ndata: d\n\n" },
  { 'ch:send(sse.format("plain"))', "data: plain\n\n" },
}

-- Bad events: the code, then a pattern for the error (its position, the
-- caller's, then the message).
local ERRORS = {
  { 'sse.send(ch, { event = "a\\nb" })', "sse%.send: event must not contain "
    .. "CR or LF$" },
  { 'sse.send(ch, { event = "a\\rb" })', "sse%.send: event must not contain "
    .. "CR or LF$" },
  { "sse.send(ch, { event = 5 })", "sse%.send: event must be a string "
    .. "%(got number%)$" },
  { 'sse.send(ch, { id = "1\\n" })', "sse%.send: id must not contain CR "
    .. "or LF$" },
  { 'sse.send(ch, { id = "1\\r2" })', "sse%.send: id must not contain CR "
    .. "or LF$" },
  { 'sse.send(ch, { id = "a\\0b" })', "sse%.send: id must not contain NUL" },
  { "sse.send(ch, { id = 1.5 })", "sse%.send: id must be a string or an "
    .. "integer %(got float%)$" },
  { "sse.send(ch, { id = true })", "sse%.send: id must be a string or an "
    .. "integer %(got boolean%)$" },
  { "sse.send(ch, { retry = -1 })", "sse%.send: retry must be an integer "
    .. ">= 0 %(milliseconds%), got %-1$" },
  { "sse.send(ch, { retry = 1.5 })", "sse%.send: retry must be an integer "
    .. ">= 0 %(milliseconds%), got 1%.5$" },
  { 'sse.send(ch, { retry = "100" })', "sse%.send: retry must be an integer "
    .. ">= 0 %(milliseconds%), got 100$" },
  { "sse.send(ch, { data = true })", "sse%.send: data must be a string, a "
    .. "number or an array of strings %(got boolean%)$" },
  { "sse.send(ch, { data = { x = 1 } })", "sse%.send: data must be a string, "
    .. "a number or an array of strings %(got a table with other keys%)$" },
  { 'sse.send(ch, { data = { "a", {} } })', "sse%.send: data%[2%] must be a "
    .. "string or a number %(got table%)$" },
  { 'sse.send(ch, { dat = "typo" })', "sse%.send: unknown field 'dat' " },
  { 'sse.send(ch, { [1.5] = "x" })', "sse%.send: unknown field of type "
    .. "number " },
  { "sse.send(ch, {})", "sse%.send: the event has no line to send" },
  { 'sse.send(ch, { "a", id = 1 })', "sse%.send: an event table is an array "
    .. "of data lines or a table of fields, not both$" },
  { "sse.send(ch, true)", "sse%.send: an event must be a string, an array of "
    .. "strings or a table of fields %(got boolean%)$" },
  { "sse.send(ch)", "sse%.send: an event must be a string, an array of "
    .. "strings or a table of fields %(got nil%)$" },
  { "sse.comment(ch, true)", "sse%.comment: comment must be a string, a "
    .. "number or an array of strings %(got boolean%)$" },
  { 'sse.send("ch", "x")', "sse%.send: ch must be a channel %(got string%)$" },
  { 'sse.comment(nil, "x")', "sse%.comment: ch must be a channel %(got nil%)$" },
  { 'sse.format({ event = "\\n" })', "sse%.format: event must not contain "
    .. "CR or LF$" },
  { 'sse.send(ch, "x", { bogus = true })', "send: unknown option 'bogus'" },
}

local function case_app(cases, after)
  local lines = { 'routes["/cases"] = function(req)',
    "  return sse.as_channel(req, { on_open = function(ch)" }
  for i, c in ipairs(cases) do
    lines[#lines + 1] = ("    record(%d, (select(2, pcall(function() return (%s) "
      .. "end))))"):format(i, c[1])
  end
  lines[#lines + 1] = after or "    ch:close()"
  lines[#lines + 1] = "  end })"
  lines[#lines + 1] = "end"
  return table.concat(lines, "\n")
end

describe("ringlet.sse.send and comment", function()
  it("write each event shape as one chunk, byte for byte, and return "
    .. "ch:send's true", function()
    local srv = start(case_app(CASES))
    finally(function() srv:stop() end)
    local res = assert(helper.request(srv.port, "GET", "/cases"))
    assert.equal(200, res.status)
    local expected, returns = {}, {}
    for i, c in ipairs(CASES) do
      expected[i] = c[2]
      returns[i] = i .. " true"
    end
    for i = 1, #CASES do
      assert.equal(expected[i], res.chunks[i], "case " .. i .. ": " .. CASES[i][1])
    end
    assert.equal(#CASES, #res.chunks)
    assert.same(returns, helper.events(srv))
    helper.assert_clean_stop(srv)
  end)

  it("raise a clear error for a bad event or field, at the caller, and "
    .. "send nothing for it", function()
    local srv = start(case_app(ERRORS,
      '    record("after", sse.send(ch, "still open", { close = true }))'))
    finally(function() srv:stop() end)
    local res = assert(helper.request(srv.port, "GET", "/cases"))
    assert.same({ "data: still open\n\n" }, res.chunks)
    local log = helper.events(srv)
    assert.equal(#ERRORS + 1, #log)
    for i, c in ipairs(ERRORS) do
      local prefix = i .. " "
      assert.equal(prefix, log[i]:sub(1, #prefix))
      local err = log[i]:sub(#prefix + 1)
      if i < #ERRORS then
        -- sse's own errors carry the position of the code that called it
        assert.matches("^[^ ]+:%d+: " .. c[2], err, nil, false, c[1])
        assert.is_nil(err:find("sse.lua", 1, true), err)
      else
        assert.matches(c[2], err, nil, false, c[1]) -- the core's
      end
    end
    assert.equal("after true", log[#log])
    helper.assert_clean_stop(srv)
  end)

  it("pass ch:send's options on: close ends the stream (the connection "
    .. "goes on), on_success fires once written", function()
    local defer = helper.cleanup(finally)
    local srv = start([[
routes["/close"] = function(req)
  return sse.as_channel(req, {
    on_open = function(ch)
      sse.comment(ch, "hi", { on_success = function() record("comment ok") end })
      sse.send(ch, { id = 1, data = "last" }, {
        close = true,
        on_success = function() record("send ok", ch:is_open()) end,
      })
      record("after close", ch:is_open())
    end,
    on_close = function() record("on_close") end,
  })
end
]])
    defer(function() srv:stop() end)
    local sock = assert(helper.connect(srv.port))
    defer(function() sock:close() end)
    assert(sock:send(get("/close")))
    local res = assert(helper.read_response(sock))
    assert.same({ ": hi\n\n", "id: 1\ndata: last\n\n" }, res.chunks)
    local log = helper.wait_events(srv, "send ok false")
    table.sort(log)
    assert.same({ "after close false", "comment ok", "on_close",
                  "send ok false" }, log)
    assert(sock:send(get("/events")))
    res = assert(helper.read_response(sock))
    assert.equal(200, res.status)
    helper.assert_clean_stop(srv)
  end)

  it("return nil on a channel closed by the server or by the client, and "
    .. "still raise for a bad event", function()
    local defer = helper.cleanup(finally)
    local srv = start([[
local held
routes["/self"] = function(req)
  return sse.as_channel(req, {
    on_open = function(ch)
      record("close", ch:close())
      record("send", sse.send(ch, "x"))
      record("comment", sse.comment(ch, "x"))
      record("bad", (select(2, pcall(sse.send, ch, { id = "\n" }))))
    end,
  })
end
routes["/hold"] = function(req)
  return sse.as_channel(req, {
    on_open = function(ch) held = ch end,
    on_close = function() record("client went away") end,
  })
end
routes["/later"] = function()
  record("later", sse.send(held, "x"), sse.comment(held),
    sse.send(held, { id = 1 }, { close = true }))
  return { status = 200, body = "done" }
end
]])
    defer(function() srv:stop() end)
    local res = assert(helper.request(srv.port, "GET", "/self"))
    assert.same({ 200, {} }, { res.status, res.chunks })
    assert.same({ "close true", "send nil", "comment nil",
                  "bad sse.send: id must not contain CR or LF" }, helper.events(srv))

    local sock = assert(helper.connect(srv.port))
    assert(sock:send(get("/hold")))
    assert.equal(200, (read_head(sock)))
    sock:close()
    helper.wait_events(srv, "client went away")
    assert.equal("done", assert(helper.request(srv.port, "GET", "/later")).body)
    assert(helper.contains(helper.events(srv), "later nil nil nil"))
    helper.assert_clean_stop(srv)
  end)

  it("format's text broadcast to a group reaches each stream as one chunk",
  function()
    local defer = helper.cleanup(finally)
    local srv = start([[
local members = ringlet.group()
routes["/join"] = function(req)
  return sse.as_channel(req, {
    on_open = function(ch) record("joined", members:add(ch)) end,
  })
end
routes["/publish"] = function()
  local n = members:broadcast(sse.format({ event = "news", data = "a\nb" }))
  return { status = 200, body = tostring(n) }
end
]])
    defer(function() srv:stop() end)
    local socks = {}
    for i = 1, 2 do
      socks[i] = assert(helper.connect(srv.port))
      defer(function() socks[i]:close() end)
      assert(socks[i]:send(get("/join")))
      assert.equal(200, (read_head(socks[i])))
    end
    assert(helper.wait_until(function() return #helper.events(srv) == 2 end))
    assert.equal("2", assert(helper.request(srv.port, "GET", "/publish")).body)
    for i = 1, 2 do
      assert.equal("event: news\ndata: a\ndata: b\n\n", read_chunk(socks[i]))
    end
    helper.assert_clean_stop(srv)
  end)

  it("streams to curl: the chunks with --raw, the events without",
  function()
    local srv = start([[
routes["/three"] = function(req)
  return sse.as_channel(req, {
    on_open = function(ch)
      sse.send(ch, { id = 1, event = "a", data = "x\ny" })
      sse.comment(ch, "ping")
      sse.send(ch, "bye", { close = true })
    end,
  })
end
]])
    finally(function() srv:stop() end)
    local url = "http://127.0.0.1:" .. srv.port .. "/three"
    local out, code, err = helper.curl("-N", "--raw", url)
    assert.same({ "20\r\nid: 1\nevent: a\ndata: x\ndata: y\n\n\r\n"
      .. "8\r\n: ping\n\n\r\nb\r\ndata: bye\n\n\r\n0\r\n\r\n", 0, "" },
      { out, code, err })
    out, code, err = helper.curl("-N", "-i", url)
    assert.equal(0, code, err)
    local head, body = out:match("^(.-\r\n)\r\n(.*)$")
    assert.matches("^HTTP/1%.1 200 OK\r\n", head)
    assert.matches("\r\ncontent%-type: text/event%-stream; charset=utf%-8\r\n",
      head)
    assert.equal("id: 1\nevent: a\ndata: x\ndata: y\n\n: ping\n\n"
      .. "data: bye\n\n", body)
    helper.assert_clean_stop(srv)
  end)
end)

-- ---- examples/sse_clock.lua ------------------------------------------------

local it_browser = helper.it_needs("browser", it, pending)

local function start_clock()
  return helper.start(helper.repo_file("examples/sse_clock.lua"))
end

-- The events of a whole event stream's text, each {id, event, retry, data}
-- (fields as strings); the text must be nothing but such events.
local function parse_events(text)
  local list = {}
  for block in text:gmatch("(.-)\n\n") do
    local e = {}
    for line in (block .. "\n"):gmatch("(.-)\n") do
      local name, value = line:match("^(%a+): (.*)$")
      assert(name and e[name] == nil, "unexpected line: " .. line)
      e[name] = value
    end
    list[#list + 1] = e
  end
  assert.equal(text:gsub(".-\n\n", ""), "", "text after the last event")
  return list
end

local function check_ticks(list, first_id, n)
  assert.equal(n, #list)
  for i, e in ipairs(list) do
    assert.equal(tostring(first_id + i - 1), e.id)
    assert.equal("tick", e.event)
    assert.matches("^%d%d:%d%d:%d%d$", e.data)
    assert.equal(i == 1 and "1000" or nil, e.retry)
  end
end

describe("examples/sse_clock.lua", function()
  it("serves the page and an event stream that ends after `limit` ticks; "
    .. "Last-Event-ID carries on from the next id", function()
    local srv = start_clock()
    finally(function() srv:stop() end)
    local base = "http://127.0.0.1:" .. srv.port

    local out, code, err = helper.curl("-i", base .. "/")
    assert.equal(0, code, err)
    assert.matches("^HTTP/1%.1 200 OK\r\n", out)
    assert.matches("\r\ncontent%-type: text/html; charset=utf%-8\r\n", out)
    assert.truthy(out:find('new EventSource("/events" + location.search)', 1,
      true))

    out, code, err = helper.curl("-N", base .. "/events?limit=3&interval=50")
    assert.equal(0, code, err)
    check_ticks(parse_events(out), 1, 3)

    out, code, err = helper.curl("-N", "-H", "Last-Event-ID: 41",
      base .. "/events?limit=2&interval=50")
    assert.equal(0, code, err)
    check_ticks(parse_events(out), 42, 2)

    out, code, err = helper.curl("-N", "-H", "Last-Event-ID: bogus",
      base .. "/events?limit=1")
    assert.equal(0, code, err)
    check_ticks(parse_events(out), 1, 1)

    local res = assert(helper.request(srv.port, "GET", "/nowhere"))
    assert.equal(404, res.status)
    helper.assert_clean_stop(srv)
    local log = srv:stderr()
    assert.truthy(log:find("sse_clock: Last-Event-ID 41, going on from id 42\n",
      1, true), log)
    assert.truthy(log:find("sse_clock: Last-Event-ID bogus, going on from id 1\n",
      1, true), log)
  end)

  it("stops ticking when the client goes away", function()
    local defer = helper.cleanup(finally)
    local srv = start_clock()
    defer(function() srv:stop() end)
    local sock = assert(helper.connect(srv.port))
    assert(sock:send(get("/events?interval=50&limit=0")))
    assert.equal(200, (read_head(sock)))
    for i = 1, 3 do
      local e = parse_events(read_chunk(sock))
      assert.equal(tostring(i), e[1].id)
    end
    sock:close()
    -- the server stops at once: no tick left pending to hold the loop
    helper.assert_clean_stop(srv)
  end)

  it_browser("in Chromium: the clock ticks, and after the stream ends the "
    .. "browser reconnects with Last-Event-ID and the ids go on, none "
    .. "repeated or lost",
    function()
      local srv = start_clock()
      finally(function() srv:stop() end)
      local out, code, err = helper.node("sse_browser.js",
        "http://127.0.0.1:" .. srv.port .. "/?interval=200&limit=4", "4")
      assert(code == 0,
        "sse_browser.js failed (exit " .. tostring(code) .. "):\n" .. out
          .. err)
      helper.assert_clean_stop(srv)
      -- the server saw the header the browser sent
      assert.truthy(srv:stderr():find(
        "sse_clock: Last-Event-ID 4, going on from id 5\n", 1, true),
        srv:stderr())
    end)
end)
