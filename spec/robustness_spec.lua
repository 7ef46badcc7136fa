-- Found in review: each of these once crashed, hung or corrupted a
-- response. Every server must still exit 0 (the sanitizer build turns a
-- use-after-free or leak into a non-zero exit).
local helper = require "helper"
local socket = require "socket"

local APP = [[
local ringlet = require "ringlet"
local big = ("x"):rep(1024 * 1024)
local server
local function handler(req)
  if req.uri == "/stop-then-sleep" then
    server:stop({ timeout = 0 })
    ringlet.sleep(50)
    return { body = "late" }
  elseif req.uri == "/bad-table" then
    return setmetatable({}, { __index = function(_, k) error("no " .. k) end })
  elseif req.uri == "/stream" then
    return ringlet.as_channel(req, {
      on_open = function(ch) ch:send("a"); ch:send("b"); ch:close() end,
    })
  elseif req.uri == "/big" then
    return { body = big }
  elseif req.uri == "/huge" then
    return { body = ("y"):rep(8 * 1024 * 1024) }
  end
  return { body = "ok" }
end
server = assert(ringlet.run_server(handler, { ip = "127.0.0.1", port = 0 }))
print("ringlet: listening on http://127.0.0.1:" .. server.port)
io.stdout:flush()
]]

local function rss_kib(pid)
  local p = io.popen("pgrep -P " .. pid)
  local child = p:read("l")
  p:close()
  local f = io.open("/proc/" .. (child or pid) .. "/status")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return tonumber(text:match("VmRSS:%s*(%d+)"))
end

-- Read what the server sends until it closes (true) or goes quiet; and
-- how many bytes came.
local function drain(sock)
  local total = 0
  for _ = 1, 10000 do
    local data, err, part = sock:receive(65536)
    total = total + #(data or part or "")
    if err == "closed" then return true, total end
    if err == "timeout" then break end
  end
  return false, total
end

describe("robustness", function()
  it("survives a handler that stops its server and then sleeps", function()
    local srv = helper.start(APP)
    local defer = helper.cleanup(finally)
    defer(function() srv:stop() end)
    local out = helper.raw(srv.port,
      "GET /stop-then-sleep HTTP/1.1\r\nHost: h\r\n\r\n")
    assert.is_string(out)
    assert.equal(0, srv:stop(), srv:stderr())
  end)

  it("drops a client that pipelines and never reads, after idle_timeout",
    function()
      local srv = helper.start([[
local big = ("x"):rep(1024 * 1024)
return {
  handler = function() return { body = big } end,
  options = { idle_timeout = 1000 },
}
]])
      local defer = helper.cleanup(finally)
      defer(function() assert.equal(0, srv:stop(), srv:stderr()) end)
      local sock = assert(helper.connect(srv.port))
      defer(function() sock:close() end)
      sock:settimeout(0.5)
      sock:send(("GET / HTTP/1.1\r\nHost: h\r\n\r\n"):rep(200))
      -- the server stopped reading; its idle timer (1 s) runs out well
      -- before we read anything (the same 1 s was a race)
      socket.sleep(2.5)
      sock:settimeout(helper.TEST_TIMEOUT)
      -- drain: what the server had queued, then the close
      local closed, total = drain(sock)
      assert.is_true(closed)
      -- it was dropped while blocked, not after all 200 answers (200 MiB)
      assert.is_true(total < 50 * 1024 * 1024, ("read %d bytes"):format(total))
    end)

  it("drops a client that reads none of a Connection: close answer, after "
    .. "idle_timeout", function()
      -- the response is queued whole and the connection shut down behind
      -- it; a peer that takes none of it is dropped once idle_timeout
      -- passes without progress (before, it was held forever)
      local srv = helper.start([[
local big = ("x"):rep(32 * 1024 * 1024)
return {
  handler = function()
    return { headers = { connection = "close" }, body = big }
  end,
  options = { idle_timeout = 1000 },
}
]])
      local defer = helper.cleanup(finally)
      defer(function() assert.equal(0, srv:stop(), srv:stderr()) end)
      local sock = assert(helper.connect(srv.port))
      defer(function() sock:close() end)
      sock:send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
      socket.sleep(2.5) -- nothing read: the server's deadline passes
      -- (1 s: a reader that makes progress is never dropped, even on a
      -- machine as loaded as CI under AddressSanitizer)
      local closed, total = drain(sock)
      assert.is_true(closed)
      assert.is_true(total < 32 * 1024 * 1024, ("read %d bytes"):format(total))
      -- a client that reads gets all of it
      local res = assert(helper.request(srv.port, "GET", "/", { host = "h" }))
      assert.equal(32 * 1024 * 1024, #res.body)
    end)

  it("leaves SIGPIPE at its default for the commands a handler runs",
    function()
      -- ringlet catches SIGPIPE with a handler, which exec resets; an
      -- ignored SIGPIPE would be inherited by io.popen's commands
      local ok, out, err = helper.run_script([[
require "ringlet"
local p = io.popen("grep '^SigIgn' /proc/self/status")
print(p:read("l"))
p:close()
]])
      assert.is_true(ok, err)
      local mask = assert(tonumber(out:match("SigIgn:%s*(%x+)"), 16), out)
      assert.equal(0, mask & (1 << 12), "SIGPIPE (13) ignored: " .. out)
    end)

  describe("on one server", function()
    local srv
    lazy_setup(function() srv = helper.start(APP) end)
    lazy_teardown(function() assert.equal(0, srv:stop(), srv:stderr()) end)

    it("answers 500 when reading the response table raises", function()
      local res = assert(helper.request(srv.port, "GET", "/bad-table",
        { host = "h" }))
      assert.equal(500, res.status)
      -- the first key read raises (body, since a plain table is known by it)
      assert.truthy(srv:stderr():find("bad response: [^\n]*no body"))
    end)

    it("sends no body bytes for HEAD of a stream, so the next response is "
      .. "intact", function()
      local sock = assert(helper.connect(srv.port))
      local defer = helper.cleanup(finally)
      defer(function() sock:close() end)
      assert(sock:send("HEAD /stream HTTP/1.1\r\nHost: h\r\n\r\n"
        .. "GET /plain HTTP/1.1\r\nHost: h\r\n\r\n"))
      local head = assert(helper.read_response(sock, "HEAD"))
      assert.equal(200, head.status)
      local res = assert(helper.read_response(sock))
      assert.same({ 200, "ok" }, { res.status, res.body })
    end)

    it("goes on serving after clients close or reset connections mid-response "
      .. "(EPIPE, not a SIGPIPE that ends the process)", function()
      for _, wait in ipairs({ false, true, false, true }) do
        local sock = assert(helper.connect(srv.port))
        assert(sock:send("GET /huge HTTP/1.1\r\nHost: h\r\n\r\n"))
        -- gone at once, or with unread data (the kernel resets it)
        if wait then assert(sock:receive(1000)) end
        sock:close()
        socket.sleep(0.1) -- the server writes on into the closed connection
      end
      assert.is_true(srv:alive(), srv:stderr())
      local res = assert(helper.request(srv.port, "GET", "/", { host = "h" }))
      assert.same({ 200, "ok" }, { res.status, res.body })
    end)

    it("writes the whole response to a client that half-closes", function()
      local sock = assert(helper.connect(srv.port))
      local defer = helper.cleanup(finally)
      defer(function() sock:close() end)
      assert(sock:send("GET /huge HTTP/1.1\r\nHost: h\r\n\r\n"))
      sock:shutdown("send")
      local res = assert(helper.read_response(sock))
      assert.equal(8 * 1024 * 1024, #res.body)
    end)

    it("stops reading a client that pipelines without reading the answers",
      function()
        local before = rss_kib(srv.pid)
        local sock = assert(helper.connect(srv.port))
        local defer = helper.cleanup(finally)
        defer(function() sock:close() end)
        sock:settimeout(0.5)
        local req = ("GET /big HTTP/1.1\r\nHost: h\r\n\r\n"):rep(1000)
        sock:send(req) -- may stop part way: the server stopped reading
        socket.sleep(0.5)
        local after = rss_kib(srv.pid)
        -- 1000 answers of 1 MiB would be 1000 MiB; reading pauses at ~1 MiB
        -- queued, so the growth stays a few MiB (kernel buffers aside)
        assert.is_true(after - before < 64 * 1024,
          ("RSS grew by %d KiB"):format(after - before))
        local res = assert(helper.request(srv.port, "GET", "/plain",
          { host = "h" }))
        assert.equal("ok", res.body)
      end)
  end)
end)

describe("idle timeouts of many different lengths at once", function()
  -- The transport keeps deadlines in queues per delay (16 of them); more
  -- distinct delays share a queue, kept in order by hand. 20 servers with
  -- 20 idle_timeouts, a kept-alive connection to each: each is closed
  -- after its own timeout, none early and none forgotten.
  it("closes each connection after its own idle_timeout", function()
    local ok, out, err = helper.run_script([[
local ringlet = require "ringlet"
local client = require "ringlet.client"
local ports, servers, n = {}, {}, 20
for i = 1, n do
  local s = assert(ringlet.run_server(function() return { body = "ok" } end,
    { ip = "127.0.0.1", port = 0, idle_timeout = 200 + 40 * (n - i) }))
  ports[i], servers[i] = s.port, s
end
local function open()
  local by = {}
  for l in io.lines("/proc/net/tcp") do
    local lp, st = l:match("^%s*%d+: %x+:(%x+) %x+:%x+ (%x%x)")
    if lp and st == "01" then by[tonumber(lp, 16)] = true end
  end
  local c = 0
  for _, p in ipairs(ports) do if by[p] then c = c + 1 end end
  return c
end
for i = 1, n do assert(client.get("http://127.0.0.1:" .. ports[i] .. "/").status == 200) end
ringlet.sleep(100)
local early = open()
ringlet.sleep(640)   -- 840 ms: those with timeouts up to 800 ms are gone
local mid = open()
ringlet.sleep(500)
print(early, mid, open())
for _, s in ipairs(servers) do s:stop() end
]])
    assert(ok, err)
    local early, mid, last = out:match("(%d+)%s+(%d+)%s+(%d+)")
    assert.equal("20", early)
    assert.truthy(tonumber(mid) >= 3 and tonumber(mid) <= 6, out)
    assert.equal("0", last)
  end)
end)
