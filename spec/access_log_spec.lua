-- The access log: run_server's access_log option (a file, "-" for standard
-- output, or a function) and the CLI's --access-log, one line per request
-- in the combined log format, with real clients.
local helper = require "helper"
local socket = require "socket"

-- ADDR - - [TIME] "REQUEST" STATUS BYTES "REFERER" "AGENT"
local LINE = '^(%S+) %- %- %[(%d%d/%a%a%a/%d%d%d%d:%d%d:%d%d:%d%d %+0000)%] '
  .. '"(.-)" (%d+) (%d+) "(.-)" "(.-)"$'

local function parse(line)
  local addr, time, request, status, bytes, ref, agent = line:match(LINE)
  assert(addr, "not a combined log line: " .. line)
  return { addr = addr, time = time, request = request,
           status = tonumber(status), bytes = tonumber(bytes), referer = ref,
           agent = agent }
end

local function lines_of(text)
  local t = {}
  for l in text:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

-- Waits until `file` holds n lines (the log is written within ~200 ms).
local function wait_lines(file, n)
  local got
  helper.wait_until(function()
    got = lines_of(helper.read_file(file))
    return #got >= n
  end)
  return got
end

local APP = [[
local ringlet = require "ringlet"
return { handler = function(req)
  if req.uri == "/ws" then
    return ringlet.as_channel(req, {
      on_message = function(ch, m) ch:send(m) end })
  elseif req.uri == "/stream" then
    return ringlet.as_channel(req, { on_open = function(ch)
      ch:send("abc")
      ch:send("defgh", { close = true })
    end })
  elseif req.uri == "/slow" then
    ringlet.sleep(300)
    return { body = "late" }
  elseif req.uri == "/missing" then
    return { status = 404, body = "no such page" }
  elseif req.uri == "/error" then
    error("boom")
  end
  return { body = "hello " .. (req.body or "") }
end, options = { access_log = LOG } }
]]

describe("access_log", function()
  it("writes one combined line per request, whatever its end",
    function()
      local log = helper.marker_path()
      local srv = helper.start(("local LOG = %q\n"):format(log) .. APP)
      finally(function()
        srv:stop()
        os.remove(log)
      end)
      local port = srv.port
      helper.curl("-o", "/dev/null", "-e", "http://example.com/from",
        "-A", 'agent "quoted" \\ and \xc3\xa9', ("http://127.0.0.1:%d/a/b?x=1&y=%%20")
        :format(port))
      helper.curl("-o", "/dev/null", "-I", ("http://127.0.0.1:%d/head"):format(port))
      helper.curl("-o", "/dev/null", "-d", "body!", ("http://127.0.0.1:%d/post")
        :format(port))
      helper.curl("-o", "/dev/null", ("http://127.0.0.1:%d/missing"):format(port))
      helper.curl("-o", "/dev/null", ("http://127.0.0.1:%d/error"):format(port))
      helper.curl("-o", "/dev/null", ("http://127.0.0.1:%d/stream"):format(port))
      -- a request line that is not HTTP: 400, logged with what was parsed
      local raw = helper.raw(port, "GARBAGE\r\n\r\n")
      assert.truthy(raw:find("^HTTP/1.1 400"), raw)
      -- a body over max_body: 413
      local big = helper.request(port, "POST", "/big",
        { ["Content-Length"] = tostring(9 * 1024 * 1024) }, "")
      assert.equal(413, big and big.status)
      -- a client that resets the connection before the handler answers:
      -- 499, nginx's code for it
      local sock = assert(helper.connect(port))
      sock:send(helper.request_bytes("GET", "/slow",
        { Host = "x", ["User-Agent"] = "leaver" }))
      socket.sleep(0.05)
      sock:setoption("linger", { on = true, timeout = 0 })
      sock:close()
      -- a WebSocket: 101 when it opens
      local rec = helper.ws_session(port, "/ws", { { send = "hi" },
        { ["until"] = 1 }, { close = 1000 } })
      assert.same({ "hi" }, helper.ws_texts(rec))

      local got = wait_lines(log, 10)
      assert.equal(10, #got, table.concat(got, "\n"))
      local e = {}
      for i, l in ipairs(got) do e[i] = parse(l) end
      for _, x in ipairs(e) do
        assert.equal("127.0.0.1", x.addr)
        assert.truthy(x.time:match("^%d%d/%a%a%a/%d%d%d%d"))
      end
      assert.same({ request = "GET /a/b?x=1&y=%20 HTTP/1.1", status = 200,
        bytes = 6, referer = "http://example.com/from",
        agent = 'agent \\x22quoted\\x22 \\x5C and \\xC3\\xA9' },
        { request = e[1].request, status = e[1].status, bytes = e[1].bytes,
          referer = e[1].referer, agent = e[1].agent })
      assert.equal("HEAD /head HTTP/1.1", e[2].request)
      assert.equal(200, e[2].status)
      assert.equal(0, e[2].bytes) -- a HEAD answer sends no body
      assert.equal("-", e[2].referer)
      assert.truthy(e[2].agent:match("^curl/"))
      assert.same({ "POST /post HTTP/1.1", 200, 11 },
        { e[3].request, e[3].status, e[3].bytes })
      assert.same({ "GET /missing HTTP/1.1", 404, 12 },
        { e[4].request, e[4].status, e[4].bytes })
      assert.equal(500, e[5].status)
      assert.same({ "GET /stream HTTP/1.1", 200 }, { e[6].request,
        e[6].status })
      assert.truthy(e[6].bytes >= 8, "chunked body of 8 bytes: "
        .. e[6].bytes)
      assert.equal(400, e[7].status)
      assert.same({ "POST /big HTTP/1.1", 413 }, { e[8].request, e[8].status })
      -- the last two in either order: the leaver is logged when the
      -- server finds it gone
      local slow, ws = e[9], e[10]
      if slow.request ~= "GET /slow HTTP/1.1" then slow, ws = ws, slow end
      assert.same({ "GET /slow HTTP/1.1", 499, 0, "leaver" },
        { slow.request, slow.status, slow.bytes, slow.agent })
      assert.same({ "GET /ws HTTP/1.1", 101, 0 },
        { ws.request, ws.status, ws.bytes })
      assert.equal(0, srv:stop())
      -- nothing more after the stop, nothing lost
      assert.equal(10, #lines_of(helper.read_file(log)))
    end)

  it("logs every request of a keep-alive and pipelined load, once each",
    function()
      local log = helper.marker_path()
      local srv = helper.start(("local LOG = %q\n"):format(log) .. APP)
      finally(function()
        srv:stop()
        os.remove(log)
      end)
      local N = 3000
      local sock = assert(helper.connect(srv.port))
      local batch = {}
      for i = 1, N do
        batch[#batch + 1] = helper.request_bytes("GET", "/n?i=" .. i,
          { Host = "x" })
        if #batch == 100 then -- pipelined, 100 at a time
          assert(sock:send(table.concat(batch)))
          for _ = 1, 100 do
            assert.equal(200, helper.read_response(sock).status)
          end
          batch = {}
        end
      end
      sock:close()
      assert.equal(0, srv:stop()) -- the stop writes what is pending
      local got = lines_of(helper.read_file(log))
      assert.equal(N, #got)
      for i, l in ipairs(got) do
        assert.equal("GET /n?i=" .. i .. " HTTP/1.1", parse(l).request)
      end
    end)

  it("leaves an idle keep-alive connection to close quietly", function()
    local log = helper.marker_path()
    local srv = helper.start(("local LOG = %q\n"):format(log) .. [[
return { handler = function() return { body = "hi" } end,
  options = { access_log = LOG, idle_timeout = 300 } }
]])
    finally(function()
      srv:stop()
      os.remove(log)
    end)
    local sock = assert(helper.connect(srv.port))
    sock:send(helper.request_bytes("GET", "/", { Host = "x" }))
    assert.equal("hi", helper.read_response(sock).body)
    -- past idle_timeout the server closes, with no answer to no request
    local rest, err, partial = sock:receive("*a")
    sock:close()
    assert.equal("", rest or partial, err)
    assert.equal(0, srv:stop())
    assert.equal(1, #lines_of(helper.read_file(log)))
  end)

  it("writes a PROXY header's address in its place",
    function()
      local log = helper.marker_path()
      local srv = helper.start(("local LOG = %q\n"):format(log) .. [[
return { handler = function() return { body = "hi" } end,
  options = { access_log = LOG, proxy_protocol = "enable" } }
]])
      finally(function()
        srv:stop()
        os.remove(log)
      end)
      -- the longest an address can be written; the server logs it as the
      -- system writes it
      local addr = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
      local canonical = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
      local out = helper.raw(srv.port, "PROXY TCP6 " .. addr .. " ::1 1 2\r\n"
        .. helper.request_bytes("GET", "/p", { Host = "x",
          Connection = "close" }))
      assert.truthy(out:find("^HTTP/1.1 200"), out)
      assert.equal(0, srv:stop())
      local got = lines_of(helper.read_file(log))
      assert.equal(1, #got)
      local e = parse(got[1])
      assert.same({ canonical, "GET /p HTTP/1.1", 200 }, { e.addr, e.request,
        e.status })
    end)

  it("goes to standard output with access_log = \"-\" (--access-log -)",
    function()
      local srv = helper.start({ source = helper.repo_file("examples/hello.lua"),
        args = { "--access-log", "-" } })
      finally(function() srv:stop() end)
      for i = 1, 3 do
        helper.curl("-o", "/dev/null", ("http://127.0.0.1:%d/%d"):format(
          srv.port, i))
      end
      assert.equal(0, srv:stop())
      local got = lines_of(srv:stdout())
      assert.equal(3, #got, srv:stdout())
      for i = 1, 3 do
        local e = parse(got[i])
        assert.same({ "GET /" .. i .. " HTTP/1.1", 200, 13 },
          { e.request, e.status, e.bytes })
      end
    end)

  it("calls a function with one entry per request", function()
    local srv = helper.start(helper.SERIALIZER .. [[
local entries = {}
return { handler = function(req)
  if req.uri == "/entries" then
    return { body = serialize(entries) }
  end
  return { status = 201, body = "made" }
end, options = { access_log = function(e)
  if e.uri == "/entries" then return end
  entries[#entries + 1] = e
  if e.uri == "/raise" then error("the log function failed") end
end } }
]])
    finally(function() srv:stop() end)
    helper.curl("-o", "/dev/null", "-e", "r", "-A", "a",
      ("http://127.0.0.1:%d/x?q=1"):format(srv.port))
    helper.curl("-o", "/dev/null", ("http://127.0.0.1:%d/raise"):format(
      srv.port))
    local res = helper.request(srv.port, "GET", "/x")
    assert.equal(201, res.status) -- a failing log function harms no one
    local entries = helper.get_value(srv, "/entries")
    assert.equal(3, #entries)
    local e = entries[1]
    assert.is_number(e.time)
    e.time = nil
    assert.same({ remote_addr = "127.0.0.1", method = "GET", uri = "/x",
      query_string = "q=1", protocol = "HTTP/1.1", status = 201, bytes = 4,
      referer = "r", user_agent = "a" }, e)
    assert.equal(0, srv:stop())
    assert.truthy(srv:stderr():find("access_log function: .*the log "
      .. "function failed"), srv:stderr())
  end)

  it("leaves the next request served when the log function resumes a "
    .. "handler's finished coroutine", function()
    -- the log function runs while the answer is written, after the handler's
    -- coroutine finished; resuming it there must not spoil the pooled
    -- coroutine the next request runs on
    local srv = helper.start([[
local saved
return { handler = function(req)
  if req.uri == "/save" then saved = coroutine.running() end
  return { status = 200, body = "ok" }
end, options = { access_log = function()
  if saved then
    local co = saved
    saved = nil
    coroutine.resume(co)
  end
end } }
]])
    finally(function() srv:stop() end)
    for _, path in ipairs({ "/save", "/next", "/save", "/next", "/next" }) do
      local res = helper.request(srv.port, "GET", path)
      assert.equal(200, res.status, path .. ": " .. srv:stderr())
    end
    assert.equal(0, srv:stop())
  end)

  it("refuses a bad value and a file it cannot open, naming the option",
    function()
      local ok, out = helper.run_script([[
local ringlet = require "ringlet"
local function try(v)
  local ok, err = pcall(ringlet.run_server, function() end,
    { port = 0, access_log = v })
  print(ok, err)
end
try(42)
try("")
try("/nonexistent-dir/access.log")
]])
      assert.is_true(ok, out)
      local l = lines_of(out)
      assert.truthy(l[1]:find("false.*option 'access_log' must be a file "
        .. "path"), l[1])
      assert.truthy(l[2]:find("false.*option 'access_log' must be"), l[2])
      assert.truthy(l[3]:find("false.*option 'access_log': "
        .. "/nonexistent%-dir/access.log: No such file or directory"), l[3])
    end)
end)
