-- ringlet.client: the HTTP and WebSocket client, against ringlet's own
-- server, independent servers (Node's http and ws, Python's http.server,
-- nginx) and peers that break the protocols on purpose.
--
-- Every exchange runs in a script the ringlet CLI runs (helper.run_script,
-- so the specs also run under ASan): client calls in the main chunk run the
-- loop until they complete; calls in a ringlet.timer callback or a handler
-- suspend only that coroutine. A script prints one line "RESULT <table>"
-- (serialized) that the spec decodes and checks. Every wait is bounded: the
-- client's own timeouts are given, and helper.run_script bounds the script.
--
-- The independent servers run as processes of their own, started here and
-- stopped in `finally`/`teardown`:
--   spec/node/upstream.js              Node http + ws + raw net bad peers
--                                      (its routes are listed at its top)
--   spec/fixtures/client_http_server.py Python's http.server on a directory
--   nginx                              a private one (temporary prefix and
--                                      config) when nginx is installed

local helper = require "helper"
local socket = require "socket"

local T = helper.TEST_TIMEOUT
-- Under ASan (scripts/test.sh --sanitize) freed memory sits in quarantine:
-- the RSS bounds are not checked there.
local SANITIZED = os.getenv("RINGLET_SANITIZE") ~= nil

-- ---------------------------------------------------------------------------
-- Processes of our own (Node, Python, nginx)

-- Starts cmd (a shell command) under timeout(1); reads its first stdout line.
-- Returns {pid =, pipe =, line =, errfile =}.
local function spawn(cmd)
  local errfile = os.tmpname()
  local pipe = assert(io.popen(("echo $$; exec timeout -k 5 %d %s "
    .. "</dev/null 2>%s"):format(T * 30, cmd, helper.quote(errfile)), "r"))
  local pid = assert(tonumber(pipe:read("l")), "no pid from sh")
  local proc = { pid = pid, pipe = pipe, errfile = errfile }
  proc.line = pipe:read("l")
  return proc
end

-- SIGTERM (timeout forwards it), wait, reap; idempotent.
local function stop_proc(proc)
  if not proc or proc.stopped then return end
  proc.stopped = true
  os.execute("kill -TERM " .. proc.pid .. " 2>/dev/null")
  local gone = helper.wait_until(function()
    local stat = helper.read_file("/proc/" .. proc.pid .. "/stat")
    return stat == "" or stat:match("^%d+ %b() ([ZX])")
  end)
  if not gone then os.execute("kill -KILL -- -" .. proc.pid .. " 2>/dev/null") end
  proc.pipe:read("a")
  proc.pipe:close()
  proc.err = helper.read_file(proc.errfile)
  os.remove(proc.errfile)
end

local function have(cmd)
  return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true
end

-- A port with nothing listening on it (bound, then closed).
local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local function ipv6_loopback()
  if not socket.tcp6 then return false end
  local s = socket.tcp6()
  local ok = s and s:bind("::1", 0)
  if s then s:close() end
  return ok and true or false
end

-- PATTERN of upstream.js: 16-byte lines, line k is k zero-padded to 15
-- digits and "\n".
local function pattern(size)
  local lines = {}
  for k = 0, (size + 15) // 16 - 1 do lines[#lines + 1] = ("%015d\n"):format(k) end
  return table.concat(lines):sub(1, size)
end

local function write_file(name, text)
  local f = assert(io.open(name, "wb"))
  assert(f:write(text))
  assert(f:close())
end

-- ---------------------------------------------------------------------------
-- Scripts

local PRELUDE = helper.SERIALIZER .. [==[
local ringlet = require "ringlet"
local client = require "ringlet.client"
local socket = require "socket"
local R = {}
local servers = {}
local function now() return socket.gettime() end
local function task(fn) ringlet.timer(0, fn) end
-- Polls pred (running the loop in between) for up to ms; true when it held.
local function wait_for(pred, ms)
  for _ = 1, (ms or 5000) // 10 do
    if pred() then return true end
    ringlet.sleep(10)
  end
  return pred() and true or false
end
-- A ringlet server in this script, on 127.0.0.1 (or opts.ip).
local function serve(handler, opts)
  opts = opts or {}
  opts.port = 0
  opts.ip = opts.ip or "127.0.0.1"
  local s = assert(ringlet.run_server(handler, opts))
  servers[#servers + 1] = s
  local host = s.ip:find(":") and "[" .. s.ip .. "]" or s.ip
  return s, "http://" .. host .. ":" .. s.port, "ws://" .. host .. ":" .. s.port
end
-- What a spec wants of a response (or of an error).
local function keep(res, err)
  if not res then return { err = err } end
  return { status = res.status, headers = res.headers, body = res.body,
    protocol = res.protocol, url = res.url }
end
local function decode(text)
  local fn, err = load("return " .. tostring(text), "=body", "t", {})
  if not fn then error(err .. ": " .. tostring(text):sub(1, 300), 2) end
  return fn()
end
local function get_value(url)
  local res, err = client.request { url = url, timeout = 5000 }
  assert(res, err)
  assert(res.status == 200, res.status)
  return decode(res.body)
end
local function finish()
  client.close_idle()
  for _, s in ipairs(servers) do s:stop() end
  print("RESULT " .. (serialize(R):gsub("\\\n", "\\n")))
end
]==]

-- Runs PRELUDE, `local NAME = value` for each var, then src. Returns the
-- decoded RESULT, stdout, stderr; raises with them when the script failed.
local function run(src, vars)
  local defs = {}
  local names = {}
  for k in pairs(vars or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    local v = vars[k]
    defs[#defs + 1] = ("local %s = %s\n"):format(k,
      type(v) == "string" and ("%q"):format(v) or tostring(v))
  end
  local ok, out, err, status = helper.run_script(PRELUDE .. table.concat(defs)
    .. src)
  local line = out:match("RESULT ([^\n]*)")
  if not ok or not line then
    error(("script failed (status %s)\nstdout:\n%s\nstderr:\n%s"):format(
      status, out, err), 2)
  end
  return helper.decode(line), out, err
end

-- ---------------------------------------------------------------------------

describe("ringlet.client", function()
  local up -- the Node fixture: {http =, raw =} ports, started on first use
  local up_proc

  local function upstream()
    if up then return up end
    up_proc = spawn("node " .. helper.quote(helper.ROOT
      .. "/spec/node/upstream.js"))
    local ok, ports = pcall(helper.decode, up_proc.line)
    if not (ok and type(ports) == "table" and ports.http) then
      stop_proc(up_proc)
      error("upstream.js did not start: " .. tostring(up_proc.line) .. "\n"
        .. tostring(up_proc.err))
    end
    up = ports
    return up
  end

  local function up_vars(extra)
    local u = upstream()
    local v = { UP = "http://127.0.0.1:" .. u.http,
      UPWS = "ws://127.0.0.1:" .. u.http,
      RAW = "http://127.0.0.1:" .. u.raw,
      RAWWS = "ws://127.0.0.1:" .. u.raw }
    for k, x in pairs(extra or {}) do v[k] = x end
    return v
  end

  teardown(function() stop_proc(up_proc) end)

  local it_node = helper.it_needs("ws", it, pending)
  -- an `it` that is pending, saying why, when why() returns a reason
  local function it_unless(why) return helper.it_unless(why, it, pending) end

  it("is require'd as ringlet.client (and the CLI finds it)", function()
    local r = run([[
R.type = type(client)
for _, name in ipairs { "request", "get", "post", "stream", "websocket",
    "configure", "close_idle" } do
  R[name] = type(client[name])
end
finish()
]])
    assert.same({ type = "table", request = "function", get = "function",
      post = "function", stream = "function", websocket = "function",
      configure = "function", close_idle = "function" }, r)
  end)

  -- -------------------------------------------------------------------------
  describe("against ringlet's own server", function()
    local ECHO = [[
local function echo(req)
  local b = req.body
  if b ~= nil and type(b) ~= "string" then b = b:read("a") end
  return { status = 200,
    headers = { ["content-type"] = "text/plain",
                ["x-method"] = req.request_method },
    body = serialize({ method = req.request_method, uri = req.uri,
      query = req.query_string, headers = req.headers, body = b,
      protocol = req.protocol }) }
end
]]

    it("GET, POST, PUT, DELETE and HEAD: status, headers, body, protocol, "
      .. "url", function()
      local r = run(ECHO .. [[
local srv, base = serve(echo)
R.port = srv.port
R.get = keep(client.request(base .. "/a/b?x=1&y=2"))
R.opts = keep(client.request { url = base .. "/o", timeout = 5000,
  headers = { ["x-one"] = "1", ["x-rep"] = { "a", "b" },
              ["X-Case"] = "Kept" } })
R.short_get = keep(client.get(base .. "/g", { headers = { ["x-g"] = "g" } }))
R.post = keep(client.post(base .. "/p", "posted body",
  { headers = { ["content-type"] = "text/plain" } }))
R.put = keep(client.request { url = base .. "/u", method = "PUT",
  body = "put body" })
R.delete = keep(client.request { url = base .. "/d", method = "DELETE" })
R.head = keep(client.request { url = base .. "/h", method = "HEAD" })
R.after_head = keep(client.get(base .. "/after-head"))
R.host = keep(client.request { url = base .. "/host",
  headers = { host = "example.test" } })
finish()
]])
      local base = "http://127.0.0.1:" .. r.port
      local get = r.get
      assert.equal(200, get.status, get.err)
      assert.equal("HTTP/1.1", get.protocol)
      assert.equal(base .. "/a/b?x=1&y=2", get.url)
      assert.equal("text/plain", get.headers["content-type"])
      local e = helper.decode(get.body)
      assert.equal("get", e.method)
      assert.equal("/a/b", e.uri)
      assert.equal("x=1&y=2", e.query)
      assert.equal("127.0.0.1:" .. r.port, e.headers.host)
      assert.is_nil(e.body)

      e = helper.decode(r.opts.body)
      assert.equal("1", e.headers["x-one"])
      assert.equal("a, b", e.headers["x-rep"])
      assert.equal("Kept", e.headers["x-case"])
      e = helper.decode(r.short_get.body)
      assert.equal("g", e.headers["x-g"])

      e = helper.decode(r.post.body)
      assert.equal("post", e.method)
      assert.equal("posted body", e.body)
      assert.equal("11", e.headers["content-length"])
      assert.equal("text/plain", e.headers["content-type"])
      assert.is_nil(e.headers["transfer-encoding"])

      e = helper.decode(r.put.body)
      assert.equal("put", e.method)
      assert.equal("put body", e.body)
      assert.equal("delete", helper.decode(r.delete.body).method)

      assert.equal(200, r.head.status, r.head.err)
      assert.equal("head", r.head.headers["x-method"])
      assert.equal("", r.head.body or "")
      assert.truthy(tonumber(r.head.headers["content-length"]) > 0)
      assert.equal(200, r.after_head.status, r.after_head.err)
      assert.equal("/after-head", helper.decode(r.after_head.body).uri)

      assert.equal("example.test", helper.decode(r.host.body).headers.host)
    end)

    it("sends a string, an array of strings, and an iterator (chunked, or "
      .. "under a given content-length) as the request body", function()
      local r = run(ECHO .. [[
local _, base = serve(echo)
local function iter(list)
  local i = 0
  return function() i = i + 1 return list[i] end
end
local big = {}
for i = 1, 64 do big[i] = string.rep(string.char(64 + i % 26), 16384) end
local function body_of(res, err)
  if not res then return { err = err } end
  if res.status ~= 200 then return { status = res.status, err = res.body } end
  local e = decode(res.body)
  return { body = e.body, te = e.headers["transfer-encoding"],
           cl = e.headers["content-length"] }
end
R.string = body_of(client.post(base .. "/s", "a string"))
R.empty = body_of(client.post(base .. "/e", ""))
R.array = body_of(client.post(base .. "/a", { "one ", "two ", "three" }))
R.big_array = body_of(client.post(base .. "/b", big))
R.big_expected = table.concat(big)
R.iter = body_of(client.request { url = base .. "/i", method = "POST",
  body = iter { "it-1 ", "", "it-2 ", "it-3" } })
R.iter_cl = body_of(client.request { url = base .. "/c", method = "PUT",
  headers = { ["content-length"] = "9" }, body = iter { "abc", "def", "ghi" } })
R.iter_big = body_of(client.request { url = base .. "/ib", method = "POST",
  body = iter(big) })
R.bin = body_of(client.post(base .. "/bin", "\0\1\2\r\n\255"))
finish()
]])
      assert.same({ body = "a string", cl = "8" }, r.string)
      local empty = r.empty
      assert.is_nil(empty.err)
      assert.equal("", empty.body or "")
      assert.same({ body = "one two three", cl = "13" }, r.array)
      assert.equal(#r.big_expected, tonumber(r.big_array.cl))
      assert.is_true(r.big_array.body == r.big_expected)
      assert.same({ body = "it-1 it-2 it-3", te = "chunked" }, r.iter)
      assert.same({ body = "abcdefghi", cl = "9" }, r.iter_cl)
      assert.equal("chunked", r.iter_big.te)
      assert.is_true(r.iter_big.body == r.big_expected)
      assert.equal("\0\1\2\r\n\255", r.bin.body)
    end)

    it("reads Content-Length, chunked and empty response bodies, big ones "
      .. "intact", function()
      local r = run([[
local big = {}
for i = 1, 5 * 64 do big[i] = ("%015d\n"):format(i):rep(1024) end
big = table.concat(big)
local _, base = serve(function(req)
  if req.uri == "/cl" then return { body = "sized" } end
  if req.uri == "/array" then return { body = { "ar", "ray" } } end
  if req.uri == "/big" then return { body = big } end
  if req.uri == "/empty" then return { status = 204 } end
  if req.uri == "/chunked" then
    local i = 0
    return { body = function()
      i = i + 1
      if i <= 3 then return "c" .. i .. ";" end
    end }
  end
  if req.uri == "/bigchunked" then
    local pos = 1
    return { body = function()
      if pos > #big then return nil end
      local piece = big:sub(pos, pos + 70000 - 1)
      pos = pos + #piece
      return piece
    end }
  end
end)
R.cl = keep(client.get(base .. "/cl"))
R.array = keep(client.get(base .. "/array"))
R.chunked = keep(client.get(base .. "/chunked"))
R.empty = keep(client.get(base .. "/empty"))
local res = client.get(base .. "/big", { timeout = 10000 })
R.big_ok = res and res.body == big
R.big_len = res and #res.body
res = client.get(base .. "/bigchunked", { timeout = 10000 })
R.bigchunked_ok = res and res.body == big
R.bigchunked_te = res and res.headers["transfer-encoding"]
R.expected_len = #big
finish()
]])
      assert.equal("sized", r.cl.body)
      assert.equal("5", r.cl.headers["content-length"])
      assert.equal("array", r.array.body)
      assert.equal("c1;c2;c3;", r.chunked.body)
      assert.equal("chunked", r.chunked.headers["transfer-encoding"])
      assert.equal(204, r.empty.status)
      assert.equal("", r.empty.body or "")
      assert.equal(r.expected_len, r.big_len)
      assert.is_true(r.big_ok)
      assert.is_true(r.bigchunked_ok)
      assert.equal("chunked", r.bigchunked_te)
    end)

    it_node("keeps the connection alive: consecutive requests go over one "
      .. "connection (counted by a forwarder); keepalive = false and "
      .. "close_idle close it", function()
      local r = run([[
local srv, base = serve(function(req) return { body = "n:" .. req.uri } end)
local f = get_value(UP .. "/forward?port=" .. srv.port).port
local fbase = "http://127.0.0.1:" .. f
local function stats() return get_value(UP .. "/forward-stats?port=" .. f) end
R.bodies = {}
for i = 1, 5 do
  local res, err = client.get(fbase .. "/k" .. i)
  R.bodies[i] = res and res.body or err
end
R.after_five = stats()
client.close_idle()
R.closed_by_close_idle = wait_for(function() return stats().open == 0 end)
for i = 1, 3 do
  local res, err = client.request { url = fbase .. "/nk" .. i,
    keepalive = false }
  R.bodies[#R.bodies + 1] = res and res.body or err
end
R.closed_after_nk = wait_for(function() return stats().open == 0 end)
R.after_nk = stats()
-- and the local server, straight: still fine
R.direct = keep(client.get(base .. "/direct"))
finish()
]], up_vars())
      assert.same({ "n:/k1", "n:/k2", "n:/k3", "n:/k4", "n:/k5", "n:/nk1",
        "n:/nk2", "n:/nk3" }, r.bodies)
      assert.same({ accepted = 1, open = 1 }, r.after_five)
      assert.is_true(r.closed_by_close_idle)
      assert.is_true(r.closed_after_nk)
      assert.same({ accepted = 4, open = 0 }, r.after_nk)
      assert.equal("n:/direct", r.direct.body)
    end)

    it_node("keeps at most pool_size idle connections per host and port, "
      .. "each for at most pool_timeout", function()
      local r = run([[
client.configure { pool_size = 2 }
local srv = serve(function()
  ringlet.sleep(100)
  return { body = "slow" }
end)
local f = get_value(UP .. "/forward?port=" .. srv.port).port
local url = "http://127.0.0.1:" .. f .. "/slow"
local function stats() return get_value(UP .. "/forward-stats?port=" .. f) end
local function batch(n)
  local done, bodies = 0, {}
  for i = 1, n do
    task(function()
      local res, err = client.get(url, { timeout = 5000 })
      bodies[i] = res and res.body or err
      done = done + 1
    end)
  end
  wait_for(function() return done == n end)
  return bodies
end
R.first = batch(5)
R.two_left = wait_for(function() return stats().open == 2 end, 3000)
R.after_first = stats()
R.second = batch(5)
R.two_left_again = wait_for(function() return stats().open == 2 end, 3000)
R.after_second = stats()
client.configure { pool_size = 2, pool_timeout = 200 }
client.close_idle()
wait_for(function() return stats().open == 0 end)
local t0 = now()
R.third = batch(1)
R.one_open = stats().open
R.expired = wait_for(function() return stats().open == 0 end, 3000)
R.expired_after = now() - t0
R.fourth = batch(1)
R.final = stats()
finish()
]], up_vars())
      local five = { "slow", "slow", "slow", "slow", "slow" }
      assert.same(five, r.first)
      assert.is_true(r.two_left)
      assert.same({ accepted = 5, open = 2 }, r.after_first)
      assert.same(five, r.second)
      assert.is_true(r.two_left_again)
      assert.same({ accepted = 8, open = 2 }, r.after_second)
      assert.same({ "slow" }, r.third)
      assert.equal(1, r.one_open)
      assert.is_true(r.expired)
      assert.truthy(r.expired_after >= 0.2, r.expired_after)
      assert.same({ "slow" }, r.fourth)
      assert.same({ accepted = 10, open = 1 }, r.final)
    end)

    it("follows no redirect by default; follow = n follows n, 303 and "
      .. "301/302 after a POST as GET without a body, 307 keeping both; "
      .. "res.url is the one that answered", function()
      local r = run(ECHO .. [[
local _, base2 = serve(echo)
local _, base = serve(function(req)
  local code, n = req.uri:match("^/r(%d+)/?(%d*)$")
  if code then
    n = tonumber(n) or 1
    local to = n > 1 and ("/r" .. code .. "/" .. (n - 1)) or "/echo"
    return { status = tonumber(code), headers = { location = to } }
  end
  if req.uri == "/away" then
    return { status = 302, headers = { location = base2 .. "/echo?far=1" } }
  end
  if req.uri == "/a/b/dots" then
    return { status = 302, headers = { location = "../up/./echo" } }
  end
  return echo(req)
end)
R.base, R.base2 = base, base2
local function ex(res, err)
  if not res then return { err = err } end
  local r = { status = res.status, url = res.url,
    location = res.headers.location }
  if res.status == 200 then
    local e = decode(res.body)
    r.method, r.body, r.uri, r.host = e.method, e.body, e.uri, e.headers.host
    r.cl = e.headers["content-length"]
  end
  return r
end
R.default = ex(client.get(base .. "/r302"))
R.get302 = ex(client.get(base .. "/r302", { follow = 1 }))
R.post303 = ex(client.post(base .. "/r303", "gone", { follow = 1 }))
R.post302 = ex(client.post(base .. "/r302", "gone", { follow = 1 }))
R.post301 = ex(client.post(base .. "/r301", "gone", { follow = 1 }))
R.post307 = ex(client.post(base .. "/r307", "kept", { follow = 1 }))
R.post308 = ex(client.post(base .. "/r308", "kept", { follow = 1 }))
R.put302 = ex(client.request { url = base .. "/r302", method = "PUT",
  body = "kept", follow = 1 })
R.chain3 = ex(client.get(base .. "/r302/3", { follow = 3 }))
R.chain_short = ex(client.get(base .. "/r302/3", { follow = 2 }))
R.away = ex(client.get(base .. "/away", { follow = 1 }))
local secret = { authorization = "Bearer s", cookie = "id=1", ["x-k"] = "v" }
local res = client.get(base .. "/away", { follow = 1, headers = secret })
R.away_headers = res and decode(res.body).headers
res = client.get(base .. "/r302", { follow = 1, headers = secret })
R.same_headers = res and decode(res.body).headers
R.dots = ex(client.get(base .. "/a/b/dots", { follow = 1 }))
finish()
]])
      local base, base2 = r.base, r.base2
      assert.same({ status = 302, url = base .. "/r302", location = "/echo" },
        r.default)
      assert.equal(200, r.get302.status, r.get302.err)
      assert.equal(base .. "/echo", r.get302.url)
      assert.equal("get", r.get302.method)
      for _, k in ipairs { "post303", "post302", "post301" } do
        local x = r[k]
        assert.equal(200, x.status, k .. ": " .. tostring(x.err))
        assert.equal("get", x.method, k)
        assert.is_nil(x.body, k)
        assert.truthy(x.cl == nil or x.cl == "0", k .. ": " .. tostring(x.cl))
        assert.equal(base .. "/echo", x.url, k)
      end
      for _, k in ipairs { "post307", "post308" } do
        assert.equal(200, r[k].status, k .. ": " .. tostring(r[k].err))
        assert.equal("post", r[k].method, k)
        assert.equal("kept", r[k].body, k)
      end
      assert.equal("put", r.put302.method)
      assert.equal("kept", r.put302.body)
      assert.equal(200, r.chain3.status)
      assert.equal(base .. "/echo", r.chain3.url)
      assert.same({ status = 302, url = base .. "/r302/1", location = "/echo" },
        r.chain_short)
      assert.equal(200, r.away.status, r.away.err)
      assert.equal(base2 .. "/echo?far=1", r.away.url)
      assert.equal(base2:match("//(.*)$"), r.away.host)
      -- credentials stay behind on a redirect to another origin, as curl's
      assert.is_nil(r.away_headers.authorization)
      assert.is_nil(r.away_headers.cookie)
      assert.equal("v", r.away_headers["x-k"])
      assert.equal("Bearer s", r.same_headers.authorization)
      assert.equal("id=1", r.same_headers.cookie)
      -- a relative Location's dot segments resolved (RFC 3986 5.2.4)
      assert.equal(base .. "/a/up/echo", r.dots.url)
    end)

    it("a task waiting in a call goes on waiting when something resumes "
      .. "its coroutine by hand", function()
      local r = run([[
local _, base = serve(function(req)
  ringlet.sleep(200)
  return { body = "slow " .. req.uri }
end)
local co
task(function()
  co = coroutine.running()
  local a, aerr = client.request(base .. "/a")
  local b = client.get(base .. "/b")
  R.a, R.aerr, R.b = a and a.body, aerr, b and b.body
  finish()
end)
ringlet.timer(50, function()
  R.resumed = { coroutine.resume(co, "junk", 1) }
end)
]])
      assert.same({ true }, r.resumed)
      assert.equal("slow /a", r.a, r.aerr)
      assert.equal("slow /b", r.b)
    end)

    it("in a handler, waits without blocking the loop: a proxy to a slow "
      .. "ringlet answers other requests meanwhile, and proxies overlap",
      function()
        local slow = helper.start([[
local ringlet = require "ringlet"
return function(req)
  if req.uri == "/slow" then
    ringlet.sleep(400)
    return { body = "slow done" }
  end
  return { body = "upstream " .. req.uri }
end
]])
        local d = helper.cleanup(finally)
        d(function() helper.assert_clean_stop(slow) end)
        local proxy = helper.start(([[
local client = require "ringlet.client"
return function(req)
  if req.uri == "/proxy" then
    local res, err = client.request { url = "http://127.0.0.1:%d/slow",
      timeout = 5000 }
    if not res then return { status = 502, body = err } end
    return { status = res.status, body = "proxied: " .. res.body }
  end
  return { body = "direct" }
end
]]):format(slow.port))
        d(function() helper.assert_clean_stop(proxy) end)
        local r = run([[
local order, times, bodies = {}, {}, {}
local t0 = now()
local function fetch(name, path, delay)
  task(function()
    if delay then ringlet.sleep(delay) end
    local res, err = client.get(PROXY .. path, { timeout = 5000 })
    order[#order + 1] = name
    times[name] = now() - t0
    bodies[name] = res and res.body or err
  end)
end
fetch("proxy", "/proxy")
fetch("direct", "/direct", 50)
wait_for(function() return #order == 2 end)
R.order, R.times, R.bodies = order, times, bodies
-- five proxied requests at once take about one upstream wait, not five
local done, ok = 0, 0
t0 = now()
for _ = 1, 5 do
  task(function()
    local res = client.get(PROXY .. "/proxy", { timeout = 5000 })
    if res and res.body == "proxied: slow done" then ok = ok + 1 end
    done = done + 1
  end)
end
wait_for(function() return done == 5 end)
R.five_ok, R.five_time = ok, now() - t0
finish()
]], { PROXY = "http://127.0.0.1:" .. proxy.port })
        assert.same({ "direct", "proxy" }, r.order)
        assert.equal("proxied: slow done", r.bodies.proxy)
        assert.equal("direct", r.bodies.direct)
        assert.truthy(r.times.direct < 0.35, r.times.direct)
        assert.truthy(r.times.proxy >= 0.4, r.times.proxy)
        assert.equal(5, r.five_ok)
        assert.truthy(r.five_time < 1.5, r.five_time)
      end)

    it("client.stream reads an endless chunked stream piece by piece; "
      .. "res:close() drops it and the server goes on", function()
      local r = run([[
local _, base = serve(function(req)
  if req.uri == "/endless" then
    local i = 0
    return { body = function()
      i = i + 1
      return ("tick-%d\n"):format(i)
    end }
  end
  return { body = "after" }
end)
local res, err = client.stream { url = base .. "/endless", timeout = 5000 }
R.err = err
R.status = res and res.status
R.te = res and res.headers["transfer-encoding"]
R.body_type = res and type(res.body)
local got = {}
while res and #table.concat(got) < 200 do
  local piece, perr = res.body()
  if not piece then R.piece_err = perr break end
  got[#got + 1] = piece
end
R.text = table.concat(got):sub(1, 200)
if res then res:close() end
R.after = keep(client.get(base .. "/after"))
finish()
]])
      assert.is_nil(r.err)
      assert.equal(200, r.status)
      assert.equal("chunked", r.te)
      assert.equal("function", r.body_type)
      assert.is_nil(r.piece_err)
      local expect = {}
      for i = 1, 40 do expect[i] = ("tick-%d\n"):format(i) end
      assert.equal(table.concat(expect):sub(1, 200), r.text)
      assert.equal("after", r.after.body)
    end)

    it_node("client.stream: a slow consumer slows the upstream; a handler "
      .. "returning a stream's body as its own relays it with "
      .. "backpressure both ways", function()
      local size = 64 * 1024 * 1024
      local r = run([[
local function rss()
  local s = io.open("/proc/self/status"):read("a")
  return tonumber(s:match("VmRSS:%s*(%d+)")) // 1024
end
local function check_rest(res, got)
  local total, last = got, ""
  while true do
    local piece, err = res.body()
    if not piece then return total, err, last end
    total = total + #piece
    last = (last .. piece):sub(-32)
  end
end
-- straight from Node
local res, err = client.stream { url = UP .. "/fast-stream?id=direct&size="
  .. SIZE, timeout = 5000 }
assert(res, err)
local first = res.body()
R.first_line = first:sub(1, 16)
ringlet.sleep(1000)
R.direct_sent = get_value(UP .. "/stats?id=direct").sent
R.direct_rss = rss()
local total, rerr, last = check_rest(res, #first)
R.direct_total, R.direct_err, R.direct_last = total, rerr, last
R.direct_stats = get_value(UP .. "/stats?id=direct")

-- through a ringlet handler
local _, base = serve(function()
  local up, uerr = client.stream { url = UP .. "/fast-stream?id=proxied&size="
    .. SIZE, timeout = 5000 }
  if not up then return { status = 502, body = uerr } end
  return { status = up.status,
    headers = { ["content-type"] = up.headers["content-type"] },
    body = up.body }
end)
res, err = client.stream { url = base .. "/", timeout = 5000 }
assert(res, err)
first = res.body()
R.proxied_first = first:sub(1, 16)
ringlet.sleep(1000)
R.proxied_sent = get_value(UP .. "/stats?id=proxied").sent
R.proxied_rss = rss()
total, rerr, last = check_rest(res, #first)
R.proxied_total, R.proxied_err, R.proxied_last = total, rerr, last
R.proxied_stats = get_value(UP .. "/stats?id=proxied")
finish()
]], up_vars { SIZE = size })
      local last_line = ("%015d\n"):format(size // 16 - 1)
      for _, k in ipairs { "direct", "proxied" } do
        assert.equal("000000000000000\n", r[k == "direct" and "first_line"
          or "proxied_first"])
        -- held back: far less than the whole stream went out while the
        -- consumer slept (kernel buffers on loopback are what lets any go)
        assert.truthy(r[k .. "_sent"] < size // 2,
          k .. " sent " .. r[k .. "_sent"])
        assert.truthy(SANITIZED or r[k .. "_rss"] < 60,
          k .. " rss " .. r[k .. "_rss"])
        assert.is_nil(r[k .. "_err"])
        assert.equal(size, r[k .. "_total"])
        assert.equal(last_line, r[k .. "_last"]:sub(-16))
        assert.is_true(r[k .. "_stats"].done)
      end
    end)

    it("client.websocket: echo with on_message, binary and text, masked "
      .. "(the server fails unmasked frames), subprotocols, close codes "
      .. "both ways", function()
      local r = run([[
local server_closes, server_errors = {}, {}
local _, _, wsbase = serve(function(req)
  if not req.websocket then return { status = 400 } end
  local offered = req.headers["sec-websocket-protocol"] or ""
  local headers = {}
  if offered:find("chat.v2", 1, true) then
    headers["sec-websocket-protocol"] = "chat.v2"
  end
  local resp = ringlet.as_channel(req, {
    on_message = function(ch, msg, binary)
      if msg == "close-me" then ch:close(4002, "server bye") return end
      ch:send(msg, { binary = binary })
    end,
    on_close = function(_, info) server_closes[#server_closes + 1] = info end,
    on_error = function(_, e) server_errors[#server_errors + 1] = e end,
  })
  resp.headers = headers
  return resp
end)
-- on_message
local got, events = {}, {}
local ws, res = client.websocket(wsbase .. "/echo", {
  protocols = { "chat.v1", "chat.v2" },
  headers = { origin = "http://example.test" },
  on_open = function() events[#events + 1] = "open" end,
  on_message = function(_, msg, binary) got[#got + 1] = { msg, binary } end,
  on_pong = function(_, p) events[#events + 1] = "pong " .. tostring(p) end,
  on_close = function(_, info)
    events[#events + 1] = "close " .. tostring(info.code) .. " "
      .. tostring(info.reason)
  end,
})
R.handshake = res and { status = res.status,
  protocol = res.headers["sec-websocket-protocol"] }
R.is_ws = ws and ws:is_websocket()
R.open = ws and ws:is_open()
local bin = ""
for i = 0, 255 do bin = bin .. string.char(i) end
local long = string.rep("0123456789", 7000)
ws:send("hello")
ws:send(bin, { binary = true })
ws:send(long)
ws:send("")
ws:ping("p1")
wait_for(function() return #got == 4 end)
R.got = { got[1], { got[2][1] == bin, got[2][2] },
  { got[3][1] == long, got[3][2] }, got[4] }
wait_for(function() return #events >= 2 end)
ws:close(4000, "client bye")
wait_for(function() return #server_closes == 1 and #events >= 3 end)
R.events = events
R.open_after = ws:is_open()

-- ws:receive, no protocol offered, the server closes
local ws2, res2 = client.websocket(wsbase .. "/recv", { timeout = 5000 })
R.res2_protocol = res2 and res2.headers["sec-websocket-protocol"] or "none"
ws2:send("a")
ws2:send("b", { binary = true })
R.recv = { { ws2:receive(2000) }, { ws2:receive(2000) } }
R.recv_timeout = { ws2:receive(100) }
ws2:send("close-me")
R.recv_closed = { ws2:receive(2000) }
R.server_closes = server_closes
R.server_errors = server_errors
finish()
]])
      assert.same({ status = 101, protocol = "chat.v2" }, r.handshake)
      assert.is_true(r.is_ws)
      assert.is_true(r.open)
      assert.same({ { "hello", false }, { true, true }, { true, false },
        { "", false } }, r.got)
      assert.equal("open", r.events[1])
      assert.equal("pong p1", r.events[2])
      assert.matches("^close 4000 ", r.events[3])
      assert.is_false(r.open_after)
      assert.equal("none", r.res2_protocol)
      assert.same({ { "a", false }, { "b", true } }, r.recv)
      assert.same({ nil, "timeout" }, r.recv_timeout)
      assert.same({ nil, "closed" }, r.recv_closed)
      assert.same({}, r.server_errors)
      assert.equal(4000, r.server_closes[1].code)
      assert.equal("client bye", r.server_closes[1].reason)
      assert.equal("client", r.server_closes[1].initiator)
      assert.equal(4002, r.server_closes[2] and r.server_closes[2].code)
      assert.equal("server", r.server_closes[2].initiator)
    end)

    it_unless(function() return not ipv6_loopback() and "no ::1 here" end)(
      "connects to [::1] (IPv6) when the host has it", function()
      local r = run(ECHO .. [[
local srv, base = serve(echo, { ip = "::1" })
R.base = base
R.port = srv.port
R.res = keep(client.get(base .. "/six"))
finish()
]])
      assert.equal(200, r.res.status, r.res.err)
      assert.equal(r.base .. "/six", r.res.url)
      local e = helper.decode(r.res.body)
      assert.equal("/six", e.uri)
      assert.equal("[::1]:" .. r.port, e.headers.host)
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("against Node's http and ws", function()
    it_node("bodies: Content-Length, chunked, close-delimited, big and slow; "
      .. "repeated headers; HEAD; statuses; keep-alive", function()
      local big = 8 * 1024 * 1024 + 5
      local r = run([[
local function pat(size)
  local lines = {}
  for k = 0, (size + 15) // 16 - 1 do lines[#lines + 1] = ("%015d\n"):format(k) end
  return table.concat(lines):sub(1, size)
end
R.hello = keep(client.get(UP .. "/hello"))
R.chunked = keep(client.get(UP .. "/chunked?n=3"))
R.close = keep(client.get(UP .. "/close-delimited?n=4"))
R.after_close = keep(client.get(UP .. "/hello"))
local want = pat(BIG)
local res, err = client.get(UP .. "/big?size=" .. BIG, { timeout = 10000 })
R.big = res and res.body == want or err
res, err = client.get(UP .. "/big?chunked=1&size=" .. BIG, { timeout = 10000 })
R.bigchunked = res and res.body == want or err
R.slow = keep(client.get(UP .. "/slow?n=4&every=50"))
R.headers = keep(client.get(UP .. "/headers"))
R.head = keep(client.request { url = UP .. "/head", method = "HEAD",
  timeout = 2000 })
R.after_head = keep(client.get(UP .. "/hello", { timeout = 2000 }))
R.statuses = {}
for _, code in ipairs { 204, 304, 404, 418, 500, 503 } do
  local x = keep(client.get(UP .. "/status?code=" .. code, { timeout = 2000 }))
  R.statuses[#R.statuses + 1] = { x.status or x.err, x.body }
end
R.ports = {}
for i = 1, 3 do R.ports[i] = (client.get(UP .. "/conn") or {}).body end
R.fresh_port = (client.get(UP .. "/conn", { keepalive = false }) or {}).body
R.fresh_port2 = (client.get(UP .. "/conn") or {}).body
local e = client.request { url = UP .. "/echo?q=1", method = "POST",
  headers = { ["x-rep"] = { "1", "2" }, ["user-agent"] = "spec" },
  body = { "ab", "cd" } }
R.echo = e and decode(e.body)
finish()
]], up_vars { BIG = big })
      assert.equal("hello from node", r.hello.body)
      assert.equal("HTTP/1.1", r.hello.protocol)
      assert.equal("piece-1\npiece-2\npiece-3\n", r.chunked.body)
      assert.equal("chunked", r.chunked.headers["transfer-encoding"])
      assert.equal(200, r.close.status, r.close.err)
      assert.equal("line-1\nline-2\nline-3\nline-4\n", r.close.body)
      assert.equal("close", r.close.headers.connection)
      assert.equal("hello from node", r.after_close.body)
      assert.is_true(r.big)
      assert.is_true(r.bigchunked)
      assert.equal("slow-1\nslow-2\nslow-3\nslow-4\n", r.slow.body)
      assert.equal("a=1; Path=/, b=2", r.headers.headers["set-cookie"])
      assert.equal("one, two", r.headers.headers["x-multi"])
      assert.equal("Value", r.headers.headers["x-mixed-case"])
      assert.equal(200, r.head.status, r.head.err)
      assert.equal("12345", r.head.headers["content-length"])
      assert.equal("", r.head.body or "")
      assert.equal("hello from node", r.after_head.body, r.after_head.err)
      assert.same({ { 204, "" }, { 304, "" }, { 404, "status 404" },
        { 418, "status 418" }, { 500, "status 500" }, { 503, "status 503" } },
        (function()
          local t = {}
          for i, s in ipairs(r.statuses) do t[i] = { s[1], s[2] or "" } end
          return t
        end)())
      assert.truthy(tonumber(r.ports[1]))
      assert.equal(r.ports[1], r.ports[2])
      assert.equal(r.ports[1], r.ports[3])
      assert.not_equal(r.fresh_port, r.fresh_port2)
      local e = r.echo
      assert.equal("POST", e.method)
      assert.equal("/echo?q=1", e.url)
      assert.equal("abcd", e.body)
      local h = {}
      for _, p in ipairs(e.headers) do
        local k = p[1]:lower()
        h[k] = h[k] and h[k] .. "|" .. p[2] or p[2]
      end
      assert.equal("1|2", h["x-rep"])
      assert.equal("spec", h["user-agent"])
      assert.equal("4", h["content-length"])
      assert.equal("127.0.0.1:" .. upstream().http, h.host)
    end)

    it_node("redirects across Node and ringlet: 303 and 307 chains, an "
      .. "absolute Location to another server", function()
      local r = run([[
local _, base = serve(function(req)
  return { body = "ringlet got " .. req.request_method .. " " .. req.uri
    .. " " .. tostring(req.body) }
end)
local function ex(res, err)
  if not res then return { err = err } end
  local r = { status = res.status, url = res.url }
  local ok, e = pcall(decode, res.body)
  r.body = ok and e or res.body
  return r
end
R.base = base
R.chain303 = ex(client.post(UP .. "/redirect/303/2?k=v", "x", { follow = 2 }))
R.chain307 = ex(client.post(UP .. "/redirect/307/2?k=v", "kept",
  { follow = 5 }))
R.too_few = ex(client.get(UP .. "/redirect/302/3", { follow = 1 }))
R.away = ex(client.get(UP .. "/redirect-to?code=301&url=" .. base .. "/there",
  { follow = 1 }))
finish()
]], up_vars())
      local u = "http://127.0.0.1:" .. upstream().http
      assert.equal(200, r.chain303.status, r.chain303.err)
      assert.equal(u .. "/echo?k=v", r.chain303.url)
      assert.equal("GET", r.chain303.body.method)
      assert.equal("", r.chain303.body.body)
      assert.equal(200, r.chain307.status, r.chain307.err)
      assert.equal("POST", r.chain307.body.method)
      assert.equal("kept", r.chain307.body.body)
      assert.equal(302, r.too_few.status)
      assert.equal(u .. "/redirect/302/2", r.too_few.url)
      assert.equal(200, r.away.status, r.away.err)
      assert.equal(r.base .. "/there", r.away.url)
      assert.equal("ringlet got get /there nil", r.away.body)
    end)

    it_node("client.stream against Node: pieces as they come, a timeout "
      .. "per wait, res:close() ends the upstream's stream", function()
      local r = run([[
local res, err = client.stream { url = UP .. "/stream?id=s1", timeout = 5000 }
R.err = err
local text, pieces = "", 0
while res and select(2, text:gsub("\n", "")) < 5 do
  local piece, perr = res.body()
  if not piece then R.piece_err = perr break end
  pieces = pieces + 1
  text = text .. piece
end
R.text, R.pieces = text, pieces
res:close()
R.closed_upstream = wait_for(function()
  return get_value(UP .. "/stats?id=s1").closed
end, 3000)
-- each wait bounded by timeout: the head comes, the first piece not in time
res, err = client.stream { url = UP .. "/slow?n=3&every=600", timeout = 200 }
R.slow_err = err
if res then
  R.slow_piece = { res.body() }
  R.slow_error_field = res.error
end
-- a stream cut short (no last chunk): an error, in res.error too
res, err = client.stream { url = RAW .. "/chunk-cut", timeout = 2000 }
R.cut_err = err
if res then
  R.cut = { { res.body() }, { res.body() } }
  R.cut_error_field = res.error
end
-- and the whole stream, in time
res = client.stream { url = UP .. "/slow?n=3&every=50", timeout = 2000 }
local all = {}
while true do
  local piece = res.body()
  if not piece then break end
  all[#all + 1] = piece
end
R.slow_all = table.concat(all)
R.after = keep(client.get(UP .. "/hello"))
finish()
]], up_vars())
      assert.is_nil(r.err)
      assert.is_nil(r.piece_err)
      assert.matches("^tick%-1\ntick%-2\ntick%-3\ntick%-4\ntick%-5\n", r.text)
      assert.truthy(r.pieces >= 2, "pieces as they come: " .. r.pieces)
      assert.is_true(r.closed_upstream)
      assert.is_nil(r.slow_err)
      assert.same({ nil, "timeout" }, r.slow_piece)
      assert.equal("timeout", r.slow_error_field)
      assert.is_nil(r.cut_err)
      assert.same({ { "hello" }, { nil, "closed" } }, r.cut)
      assert.equal("closed", r.cut_error_field)
      assert.equal("slow-1\nslow-2\nslow-3\n", r.slow_all)
      assert.equal("hello from node", r.after.body)
    end)

    it_node("WebSocket with Node's ws: echo, fragmented messages with a ping "
      .. "between, server pings, a subprotocol, headers, a close with a "
      .. "code, max_message", function()
      local r = run([[
local bin = ""
for i = 0, 255 do bin = bin .. string.char(i) end
-- echo (ws fails any unmasked client frame with 1002)
local got, closes = {}, {}
local ws, res = client.websocket(UPWS .. "/ws/echo", {
  on_message = function(_, m, b) got[#got + 1] = { m, b } end,
  on_close = function(_, info) closes[#closes + 1] = info end,
})
R.echo_status = res and res.status
local long = string.rep("x", 200000)
ws:send("text é")
ws:send(bin, { binary = true })
ws:send(long)
wait_for(function() return #got == 3 end)
R.echo = { got[1], { got[2][1] == bin, got[2][2] }, { #got[3][1], got[3][2] } }
ws:close()
wait_for(function() return #closes == 1 end)
R.echo_close = closes[1] and closes[1].code

-- fragments from the server, a ping between them
local frag, pings = {}, {}
ws = client.websocket(UPWS .. "/ws/fragments", {
  on_message = function(_, m, b) frag[#frag + 1] = { m, b } end,
  on_ping = function(_, p) pings[#pings + 1] = p end,
})
wait_for(function() return #frag == 3 end)
R.frag = { frag[1], { frag[2] and frag[2][1] == bin, frag[2] and frag[2][2] },
  frag[3] }
R.frag_pings = pings
ws:close()

-- the server pings; the client's pong goes back by itself
local msgs = {}
pings = {}
ws = client.websocket(UPWS .. "/ws/ping", {
  on_message = function(_, m) msgs[#msgs + 1] = m end,
  on_ping = function(_, p) pings[#pings + 1] = p end,
})
wait_for(function() return #msgs == 1 end)
R.ping_msgs, R.pings = msgs, pings
ws:close()

-- subprotocol and headers
ws, res = client.websocket(UPWS .. "/ws/proto",
  { protocols = { "chat.v1", "chat.v2" } })
R.proto_header = res.headers["sec-websocket-protocol"]
R.proto_msg = { ws:receive(2000) }
ws:close()
ws = client.websocket(UPWS .. "/ws/headers", { headers = {
  origin = "http://example.test", cookie = "session=42" } })
R.ws_headers = decode((ws:receive(2000)))
ws:close()

-- a close with a code from the server
closes = {}
ws = client.websocket(UPWS .. "/ws/close?code=4001&reason=bye", {
  on_close = function(_, info) closes[#closes + 1] = info end,
})
ws:send("go")
wait_for(function() return #closes == 1 end)
R.server_close = closes[1]
R.server_close_open = ws:is_open()
ws = client.websocket(UPWS .. "/ws/close?code=4003&reason=recv")
ws:send("go")
R.recv_closed = { ws:receive(2000) }

-- max_message: over it, the client fails the connection with 1009
local errors = {}
closes = {}
ws = client.websocket(UPWS .. "/ws/send?size=2000", { max_message = 1000,
  on_message = function(_, m) errors[#errors + 1] = "message " .. #m end,
  on_error = function(_, e) errors[#errors + 1] = e end,
  on_close = function(_, info) closes[#closes + 1] = info end,
})
wait_for(function() return #closes == 1 end)
R.max_errors, R.max_close = errors, closes[1]
wait_for(function() return get_value(UP .. "/raw-stats").ws_close_code end)
R.node_saw = get_value(UP .. "/raw-stats").ws_close_code
ws = client.websocket(UPWS .. "/ws/send?size=1000", { max_message = 1000 })
local m, b = ws:receive(2000)
R.at_max = { m and #m, b }
ws:close()
finish()
]], up_vars())
      assert.equal(101, r.echo_status)
      assert.same({ { "text é", false }, { true, true }, { 200000, false } },
        r.echo)
      assert.equal(1000, r.echo_close)
      assert.same({ { "one two three", false }, { true, true },
        { "done", false } }, r.frag)
      assert.same({ "between" }, r.frag_pings)
      assert.same({ "hb-1" }, r.pings)
      assert.same({ "pong:hb-1" }, r.ping_msgs)
      assert.equal("chat.v2", r.proto_header)
      assert.same({ "protocol:chat.v2", false }, r.proto_msg)
      assert.equal("http://example.test", r.ws_headers.origin)
      assert.equal("session=42", r.ws_headers.cookie)
      assert.equal("13", r.ws_headers["sec-websocket-version"])
      assert.equal(4001, r.server_close.code)
      assert.equal("bye", r.server_close.reason)
      assert.is_false(r.server_close_open)
      assert.same({ nil, "closed" }, r.recv_closed)
      assert.equal(1009, r.max_close.code)
      assert.equal(1, #r.max_errors, table.concat(r.max_errors, "; "))
      assert.matches("^websocket: .*%(closed with 1009%)$", r.max_errors[1])
      assert.equal(1009, r.node_saw)
      assert.same({ 1000, true }, r.at_max)
    end)

    it_node("WebSocket: ws:receive holds reading back while messages wait "
      .. "(the sender sees its buffer fill), then takes them all in order",
      function()
        local n, size = 800, 65536
        local r = run([[
local function rss()
  local f = io.open("/proc/self/status")
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)")) // 1024
end
local ws, err = client.websocket(UPWS .. "/ws/flood?id=flood&n=" .. N
  .. "&size=" .. SIZE)
assert(ws, err)
ringlet.sleep(1000)
R.buffered = get_value(UP .. "/stats?id=flood").buffered
R.rss = rss()
local ok, got = true, 0
for i = 0, N - 1 do
  local m, b = ws:receive(5000)
  if not (m and b and #m == SIZE and string.unpack(">I4", m) == i
      and m:byte(5) == i % 256 and m:byte(-1) == i % 256) then
    ok = false
    R.bad = { i, m and #m or b }
    break
  end
  got = got + 1
end
R.ok, R.got = ok, got
R.drained = wait_for(function()
  return get_value(UP .. "/stats?id=flood").buffered == 0
end, 3000)
ws:close()
finish()
]], up_vars { N = n, SIZE = size })
        -- 50 MiB sent at once: while nobody read, most of it stayed with
        -- the sender, and the client's memory stayed small
        assert.truthy(r.buffered > n * size // 2, "buffered " .. r.buffered)
        assert.truthy(SANITIZED or r.rss < 60, "rss " .. r.rss)
        assert.is_true(r.ok, r.bad and table.concat(r.bad, " "))
        assert.equal(n, r.got)
        assert.is_true(r.drained)
      end)

    it_node("client.websocket in a handler suspends only its request",
      function()
        local r = run([[
local _, base = serve(function(req)
  if req.uri == "/direct" then return { body = "direct" } end
  local ws, err = client.websocket(UPWS .. "/ws/echo", { timeout = 5000 })
  if not ws then return { status = 502, body = err } end
  ringlet.sleep(200)
  ws:send("via ws " .. req.query_string)
  local msg = ws:receive(5000)
  ws:close()
  return { body = msg }
end)
local order, bodies, done = {}, {}, 0
local function fetch(name, path, delay)
  task(function()
    if delay then ringlet.sleep(delay) end
    local res, err = client.get(base .. path, { timeout = 5000 })
    order[#order + 1] = name
    bodies[name] = res and res.body or err
    done = done + 1
  end)
end
for i = 1, 3 do fetch("ws" .. i, "/bridge?" .. i) end
fetch("direct", "/direct", 50)
wait_for(function() return done == 4 end)
R.order, R.bodies = order, bodies
finish()
]], up_vars())
        assert.equal("direct", r.order[1])
        assert.same({ direct = "direct", ws1 = "via ws 1", ws2 = "via ws 2",
          ws3 = "via ws 3" }, r.bodies)
      end)

    it_node("WebSocket options of as_channel: ping_interval, idle_timeout, "
      .. "on_drain; on_close's initiator from the client's view", function()
      local r = run([[
local function stats(id) return get_value(UP .. "/stats?id=" .. id) end
local closes = {}
local function on_close(_, info) closes[#closes + 1] = info end
local ws = client.websocket(UPWS .. "/ws/echo?id=pi", { ping_interval = 100,
  on_close = on_close })
ringlet.sleep(550)
R.pings, R.ping_open = stats("pi").pings, ws:is_open()
ws:close(4005, "client done")
wait_for(function() return #closes == 1 end)
R.client_close = closes[1]
R.node_saw_client_close = stats("pi")

ws = client.websocket(UPWS .. "/ws/echo?id=idle", { idle_timeout = 200,
  on_close = on_close })
R.idle_waited = wait_for(function() return #closes == 2 end, 2000)
R.idle_close = closes[2]
R.idle_open = ws:is_open()
R.node_saw_idle = stats("idle")

ws = client.websocket(UPWS .. "/ws/close?code=4001&reason=bye",
  { on_close = on_close })
ws:send("go")
wait_for(function() return #closes == 3 end)
R.server_close = closes[3]

local drains = 0
ws = client.websocket(UPWS .. "/ws/echo", { on_message = function() end,
  on_drain = function() drains = drains + 1 end })
R.sent = ws:send(string.rep("x", 3 * 1024 * 1024))
R.buffered = ws:buffered_amount()
wait_for(function() return drains > 0 end, 3000)
R.drains, R.buffered_after = drains, ws:buffered_amount()
ws:close()
finish()
]], up_vars())
      assert.truthy(r.pings >= 3 and r.pings <= 6, "pings " .. r.pings)
      assert.is_true(r.ping_open)
      assert.equal(4005, r.client_close.code)
      assert.equal("client", r.client_close.initiator)
      assert.equal(4005, r.node_saw_client_close.close_code)
      assert.equal("client done", r.node_saw_client_close.close_reason)
      assert.is_true(r.idle_waited)
      assert.equal(1000, r.idle_close.code)
      assert.equal("client", r.idle_close.initiator)
      assert.is_false(r.idle_open)
      assert.equal(1000, r.node_saw_idle.close_code)
      assert.equal("idle timeout", r.node_saw_idle.close_reason)
      assert.equal(4001, r.server_close.code)
      assert.equal("bye", r.server_close.reason)
      assert.equal("server", r.server_close.initiator)
      assert.is_true(r.sent)
      assert.truthy(r.buffered > 0, "buffered " .. r.buffered)
      assert.equal(1, r.drains)
      assert.equal(0, r.buffered_after)
    end)
  end)

  -- -------------------------------------------------------------------------
  describe("against Python's http.server", function()
    local dir
    before_each(function()
      dir = helper.marker_path()
      assert(os.execute("mkdir -p " .. helper.quote(dir .. "/sub")))
      write_file(dir .. "/a.txt", "hello from python\n")
      write_file(dir .. "/big.bin", pattern(1024 * 1024 + 7))
      write_file(dir .. "/sub/inner.txt", "inner")
    end)
    after_each(function()
      os.execute("rm -rf " .. helper.quote(dir))
    end)

    for _, version in ipairs { "HTTP/1.0", "HTTP/1.1" } do
      it_unless(function()
        return not have("python3") and "python3 is not installed"
      end)("(" .. version .. ") files, HEAD, 404, a directory's 301 "
        .. "followed or not", function()
        local py = spawn("python3 " .. helper.quote(helper.ROOT
          .. "/spec/fixtures/client_http_server.py") .. " "
          .. helper.quote(dir) .. " " .. version)
        finally(function() stop_proc(py) end)
        local port = assert(tonumber(py.line), "no port from python")
        local r = run([[
R.a = keep(client.get(PY .. "/a.txt"))
R.a2 = keep(client.get(PY .. "/a.txt"))
local res, err = client.get(PY .. "/big.bin", { timeout = 10000 })
local f = io.open(DIR .. "/big.bin", "rb")
R.big = res and res.body == f:read("a") or err
f:close()
R.head = keep(client.request { url = PY .. "/big.bin", method = "HEAD",
  timeout = 2000 })
R.missing = keep(client.get(PY .. "/nope"))
R.dir = keep(client.get(PY .. "/sub"))
R.dir_followed = keep(client.get(PY .. "/sub", { follow = 1 }))
finish()
]], { PY = "http://127.0.0.1:" .. port, DIR = dir })
        assert.equal(200, r.a.status, r.a.err)
        assert.equal(version, r.a.protocol)
        assert.equal("hello from python\n", r.a.body)
        assert.equal("hello from python\n", r.a2.body, r.a2.err)
        assert.is_true(r.big)
        assert.equal(200, r.head.status, r.head.err)
        assert.equal(tostring(1024 * 1024 + 7), r.head.headers["content-length"])
        assert.equal("", r.head.body or "")
        assert.equal(404, r.missing.status)
        assert.equal(301, r.dir.status)
        assert.equal("/sub/", r.dir.headers.location)
        assert.equal(200, r.dir_followed.status, r.dir_followed.err)
        assert.equal("http://127.0.0.1:" .. port .. "/sub/", r.dir_followed.url)
        assert.matches("inner%.txt", r.dir_followed.body)
      end)
    end
  end)

  -- -------------------------------------------------------------------------
  describe("against nginx", function()
    it_unless(function()
      return not have("nginx") and "nginx is not installed"
    end)("return 200, a static file, keep-alive (same $remote_port), a 301",
      function()
        local prefix = helper.marker_path()
        assert(os.execute("mkdir -p " .. helper.quote(prefix .. "/html")))
        local d = helper.cleanup(finally)
        d(function() os.execute("rm -rf " .. helper.quote(prefix)) end)
        write_file(prefix .. "/html/big.bin", pattern(3 * 1024 * 1024 + 1))
        local port = free_port()
        write_file(prefix .. "/nginx.conf", ([[
daemon off;
master_process off;
worker_processes 1;
pid %s/nginx.pid;
error_log %s/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %s/body;
  proxy_temp_path %s/proxy;
  fastcgi_temp_path %s/fastcgi;
  uwsgi_temp_path %s/uwsgi;
  scgi_temp_path %s/scgi;
  server {
    listen 127.0.0.1:%d;
    root %s/html;
    location = /ok { return 200 "ok from nginx"; }
    location = /port { return 200 "$remote_port"; }
    location = /old { return 301 /ok; }
    location = /echo-post { return 200 "$request_method $content_length"; }
  }
}
]]):gsub("%%s", prefix):gsub("%%d", tostring(port)))
        local ngx = spawn(("sh -c 'nginx -p %s -c %s/nginx.conf & echo $!; "
          .. "wait'"):format(prefix, prefix))
        d(function() stop_proc(ngx) end)
        -- the shell prints nginx's pid first: the specs stop it by it too
        local ngx_pid = tonumber(ngx.line)
        d(function()
          if ngx_pid then os.execute("kill -TERM " .. ngx_pid .. " 2>/dev/null") end
        end)
        assert(helper.wait_until(function()
          local s = socket.connect("127.0.0.1", port)
          if s then s:close() end
          return s ~= nil
        end), "nginx did not start: " .. helper.read_file(prefix
          .. "/error.log"))
        local r = run([[
R.ok = keep(client.get(NGX .. "/ok"))
R.ports = {}
for i = 1, 3 do R.ports[i] = (client.get(NGX .. "/port") or {}).body end
local res, err = client.get(NGX .. "/big.bin", { timeout = 10000 })
local f = io.open(DIR .. "/html/big.bin", "rb")
R.big = res and res.body == f:read("a") or err
f:close()
R.old = keep(client.get(NGX .. "/old"))
R.old_followed = keep(client.get(NGX .. "/old", { follow = 1 }))
R.post = keep(client.post(NGX .. "/echo-post", "12345"))
R.missing = keep(client.get(NGX .. "/missing"))
finish()
]], { NGX = "http://127.0.0.1:" .. port, DIR = prefix })
        assert.equal("ok from nginx", r.ok.body, r.ok.err)
        assert.matches("^nginx", r.ok.headers.server)
        assert.truthy(tonumber(r.ports[1]))
        assert.equal(r.ports[1], r.ports[2])
        assert.equal(r.ports[1], r.ports[3])
        assert.is_true(r.big)
        assert.equal(301, r.old.status)
        assert.equal(200, r.old_followed.status)
        assert.equal("ok from nginx", r.old_followed.body)
        assert.equal("POST 5", r.post.body)
        assert.equal(404, r.missing.status)
      end)
  end)

  -- -------------------------------------------------------------------------
  describe("bad peers", function()
    -- Each case: {name, request options}; every one is followed by a good
    -- request to the script's own server and one to Node, which must work.
    local CASES = [[
local CASES = {
  { "garbage", { url = RAW .. "/garbage", timeout = 2000 } },
  { "bad_status", { url = RAW .. "/bad-status", timeout = 2000 } },
  { "bad_length", { url = RAW .. "/bad-length", timeout = 2000 } },
  { "bad_chunk", { url = RAW .. "/bad-chunk", timeout = 2000 } },
  { "short_length", { url = RAW .. "/short-length", timeout = 2000 } },
  { "chunk_cut", { url = RAW .. "/chunk-cut", timeout = 2000 } },
  { "never", { url = RAW .. "/never", timeout = 300 } },
  { "never_body", { url = RAW .. "/never-body", timeout = 300 } },
  { "slow_head", { url = UP .. "/slow-head?ms=3000", timeout = 300 } },
  { "slow_whole", { url = UP .. "/slow?n=20&every=50", timeout = 300 } },
  { "big_header", { url = RAW .. "/big-header?size=2000", timeout = 2000,
    max_header = 1024 } },
  { "huge_header", { url = RAW .. "/big-header?size=70000", timeout = 2000 } },
  { "header_in_bound", { url = RAW .. "/big-header?size=60000",
    timeout = 2000 } },
  { "body_too_big", { url = UP .. "/big?size=2000", timeout = 2000,
    max_body = 1000 } },
  { "chunked_too_big", { url = UP .. "/big?chunked=1&size=2000",
    timeout = 2000, max_body = 1000 } },
  { "body_at_max", { url = UP .. "/big?size=1000", timeout = 2000,
    max_body = 1000 } },
  { "refused", { url = "http://127.0.0.1:" .. REFUSED .. "/", timeout = 2000 } },
  { "not_found", { url = "http://nonexistent.invalid/", timeout = 5000 } },
  { "https", { url = "https://127.0.0.1:" .. REFUSED .. "/" } },
  { "bad_url_scheme", { url = "ftp://127.0.0.1/" } },
  { "bad_url_empty", { url = "http://" } },
  { "bad_url_words", { url = "not a url" } },
  { "bad_url_port", { url = "http://127.0.0.1:99999/" } },
  { "bad_url_v6", { url = "http://[::1/" } },
  { "bad_header_value", { url = UP .. "/echo",
    headers = { ["x-bad"] = "a\r\nInjected: 1" } } },
  { "bad_header_name", { url = UP .. "/echo", headers = { ["bad name"] = "1" } } },
  { "reset", { url = RAW .. "/reset", timeout = 2000 } },
  { "localhost", { url = "http://localhost:" .. OWN_PORT .. "/own",
    timeout = 2000 } },
}
]]

    it_node("fail with the documented error, in time, and the process goes "
      .. "on (from the main chunk, then all at once in tasks)", function()
      local r = run([[
local own = serve(function(req) return { body = "own " .. req.uri } end)
local OWN_PORT = own.port
]] .. CASES .. [[
local function try(opts)
  local t0 = now()
  -- pcall: a call that raises is recorded (r.raised), not the end of it
  local ok, res, err = pcall(client.request, opts)
  local r = { time = now() - t0 }
  if not ok then
    r.raised = res
  elseif res then
    r.status = res.status
    r.len = #res.body
  else
    r.err = err
  end
  local good = client.get("http://127.0.0.1:" .. own.port .. "/good")
  r.good = good and good.body
  good = client.get(UP .. "/hello")
  r.good_node = good and good.body
  return r
end
R.seq = {}
for _, c in ipairs(CASES) do
  local name, opts = c[1], c[2]
  R.seq[name] = try(opts)
end
R.par = {}
local done = 0
for _, c in ipairs(CASES) do
  task(function()
    local name, opts = c[1], c[2]
    R.par[name] = try(opts)
    done = done + 1
  end)
end
R.par_done = wait_for(function() return done == #CASES end, 15000)
finish()
]], up_vars { REFUSED = free_port() })
      assert.is_true(r.par_done)
      -- every mismatch is listed, then the spec fails once with them all
      local problems = {}
      local function problem(fmt, ...)
        problems[#problems + 1] = fmt:format(...)
      end
      local function check(mode, name, want)
        local x = r[mode][name]
        local where = mode .. " " .. name .. ": "
        if type(x) ~= "table" then return problem("%sno result", where) end
        if x.raised then
          problem("%sraised %q instead of returning nil, err", where, x.raised)
        end
        if x.good ~= "own /good" then
          problem("%sthe next request to the script's server failed", where)
        end
        if x.good_node ~= "hello from node" then
          problem("%sthe next request to Node failed", where)
        end
        if x.raised then return x end
        if type(want) == "number" then
          if x.status ~= want then
            problem("%sstatus %s (err %s), want %d", where, tostring(x.status),
              tostring(x.err), want)
          end
        elseif want:sub(1, 1) == "^" then
          if not tostring(x.err):match(want) then
            problem("%serr %s (status %s), want /%s/", where, tostring(x.err),
              tostring(x.status), want)
          end
        elseif x.err ~= want then
          problem("%serr %s (status %s), want %q", where, tostring(x.err),
            tostring(x.status), want)
        end
        return x
      end
      for _, mode in ipairs { "seq", "par" } do
        for _, n in ipairs { "garbage", "bad_status", "bad_length",
          "bad_chunk" } do
          check(mode, n, "^bad response: .")
        end
        check(mode, "short_length", "closed")
        check(mode, "chunk_cut", "closed")
        for _, n in ipairs { "never", "never_body", "slow_head",
          "slow_whole" } do
          local x = check(mode, n, "timeout")
          if x and not (x.time >= 0.29 and x.time < 1.5) then
            problem("%s %s took %.3f s, timeout 300 ms", mode, n, x.time)
          end
        end
        -- past the header bound: an error, not a timeout, and at once
        for _, n in ipairs { "big_header", "huge_header" } do
          local x = check(mode, n, "^.")
          if x and (x.err == "timeout" or x.time > 1) then
            problem("%s %s: %s after %.3f s", mode, n, tostring(x.err), x.time)
          end
        end
        check(mode, "header_in_bound", 200)
        check(mode, "body_too_big", "body too big")
        check(mode, "chunked_too_big", "body too big")
        local at = check(mode, "body_at_max", 200)
        if at and at.len ~= 1000 then
          problem("%s body_at_max: %s bytes", mode, tostring(at.len))
        end
        check(mode, "refused", "connection refused")
        check(mode, "not_found", "host not found: nonexistent.invalid")
        check(mode, "https", "tls is not supported yet")
        for _, n in ipairs { "bad_url_scheme", "bad_url_empty",
          "bad_url_words", "bad_url_port", "bad_url_v6" } do
          check(mode, n, "^bad url: .")
        end
        check(mode, "bad_header_value", "^bad request: .")
        check(mode, "bad_header_name", "^bad request: .")
        check(mode, "reset", "connection reset")
        check(mode, "localhost", 200)
      end
      assert(#problems == 0, table.concat(problems, "\n"))
    end)

    it_node("HTTP/1.1 details: 1xx heads skipped; Content-Length with "
      .. "chunked, or twice, refused; an early answer taken; Connection: "
      .. "close honoured; no fragment sent; no path is /", function()
      local r = run([[
local function stats() return get_value(UP .. "/raw-stats") end
R.hints = keep(client.get(RAW .. "/early-hints", { timeout = 2000 }))
R.cl_te = keep(client.get(RAW .. "/cl-and-te", { timeout = 2000 }))
R.two_cl = keep(client.get(RAW .. "/two-lengths", { timeout = 2000 }))
R.early = keep(client.post(RAW .. "/answer-early",
  string.rep("x", 8 * 1024 * 1024), { timeout = 3000 }))
local c0 = stats().connections
R.close_after = keep(client.get(RAW .. "/close-after", { timeout = 2000 }))
-- at once, while the peer has not closed yet: a new connection
R.next_post = keep(client.post(RAW .. "/drop-second", "p", { timeout = 2000 }))
R.conns = stats().connections - c0
local e = client.get(UP .. "/echo?a=1#frag")
R.fragment = e and decode(e.body).url
e = client.get(UP)
R.no_path = e and e.body
e = client.get(UP .. "?x=1")
R.no_path_query = e and e.body
R.trailers = keep(client.get(RAW .. "/trailers", { timeout = 2000 }))
R.head_chunked = keep(client.request { url = RAW .. "/head-chunked",
  method = "HEAD", timeout = 2000 })
R.after_head_chunked = keep(client.get(RAW .. "/trailers", { timeout = 2000 }))
R.overflow = keep(client.get(RAW .. "/chunk-overflow", { timeout = 2000 }))
-- client.stream has max_body and max_header too
local function drain(res, err)
  if not res then return { err = err } end
  local total = 0
  while true do
    local piece, perr = res.body()
    if not piece then return { total = total, err = perr } end
    total = total + #piece
  end
end
R.stream_cl = drain(client.stream { url = UP .. "/big?size=2000",
  max_body = 1000, timeout = 2000 })
R.stream_chunked = drain(client.stream { url = UP .. "/big?chunked=1&size=2000",
  max_body = 1000, timeout = 2000 })
R.stream_header = drain(client.stream { url = RAW .. "/big-header?size=2000",
  max_header = 1000, timeout = 2000 })
R.close_delimited = keep(client.get(UP .. "/close-delimited?n=50",
  { max_body = 100, timeout = 2000 }))
finish()
]], up_vars())
      assert.equal("hello!", r.trailers.body, r.trailers.err)
      assert.equal(200, r.head_chunked.status, r.head_chunked.err)
      assert.equal("", r.head_chunked.body or "")
      assert.equal("hello!", r.after_head_chunked.body, r.after_head_chunked.err)
      assert.matches("^bad response: .", tostring(r.overflow.err))
      assert.equal("body too big", r.stream_cl.err)
      assert.truthy((r.stream_cl.total or 0) <= 1000)
      assert.equal("body too big", r.stream_chunked.err)
      assert.truthy((r.stream_chunked.total or 0) <= 1000)
      assert.matches("^bad response: .", tostring(r.stream_header.err))
      assert.equal("body too big", r.close_delimited.err)
      assert.equal(200, r.hints.status, r.hints.err)
      assert.equal("final", r.hints.body)
      assert.matches("^bad response: .", tostring(r.cl_te.err))
      assert.matches("^bad response: .", tostring(r.two_cl.err))
      assert.equal(413, r.early.status, r.early.err)
      assert.equal("too big!", r.early.body)
      assert.equal("ok", r.close_after.body, r.close_after.err)
      assert.equal("ok", r.next_post.body, r.next_post.err)
      assert.equal(2, r.conns)
      assert.equal("/echo?a=1", r.fragment)
      assert.equal("no route for /", r.no_path)
      assert.equal("no route for /", r.no_path_query)
    end)

    it_node("a 204 or a 304 has no body, whatever its Content-Length says "
      .. "(RFC 9112 6.3), and the connection serves the next request",
      function()
        local r = run([[
for _, code in ipairs { 204, 304 } do
  R[code] = keep(client.get(RAW .. "/no-body?code=" .. code,
    { timeout = 1000 }))
  R[code .. "_next"] = keep(client.get(RAW .. "/trailers", { timeout = 1000 }))
end
finish()
]], up_vars())
        for _, code in ipairs { 204, 304 } do
          local x = r[code]
          assert.equal(code, x.status, code .. ": " .. tostring(x.err))
          assert.equal("", x.body or "")
          assert.equal("hello!", r[code .. "_next"].body)
        end
      end)

    it_node("retries an idempotent request once when the server closed the "
      .. "pooled connection while it was idle", function()
      local r = run([[
local function conns() return get_value(UP .. "/raw-stats").connections end
local c0 = conns()
R.first = keep(client.get(RAW .. "/idle-close"))
ringlet.sleep(200) -- the peer has closed it by now, unseen by the pool
R.second = keep(client.get(RAW .. "/idle-close"))
ringlet.sleep(200)
R.put = keep(client.request { url = RAW .. "/idle-close", method = "PUT",
  body = "idempotent" })
R.conns = conns() - c0
finish()
]], up_vars())
      assert.equal("ok", r.first.body, r.first.err)
      assert.equal("ok", r.second.body, r.second.err)
      assert.equal("ok", r.put.body, r.put.err)
      assert.equal(3, r.conns)
    end)

    it_node("retries an idempotent request closed unanswered on a pooled "
      .. "connection on a new one, once; never a POST, nor an iterator body",
      function()
        local r = run([[
local function stats() return get_value(UP .. "/raw-stats") end
local l0 = #stats().log -- what came before this spec is not counted
local function log_of(path)
  local list = {}
  for k, l in ipairs(stats().log) do
    if k > l0 and l:sub(-#path) == path then list[#list + 1] = l end
  end
  return list
end
local c0 = stats().connections
R.get1 = keep(client.get(RAW .. "/drop-second"))  -- a new connection: ok
R.get2 = keep(client.get(RAW .. "/drop-second"))  -- dropped there, retried
R.conns_get = stats().connections - c0
R.post = keep(client.post(RAW .. "/drop-second", "once"))
R.get3 = keep(client.get(RAW .. "/drop-second"))
local i = 0
R.iter = keep(client.request { url = RAW .. "/drop-second", method = "PUT",
  body = function() i = i + 1 if i == 1 then return "x" end end })
R.log = log_of("/drop-second")
finish()
]], up_vars())
        assert.equal("ok", r.get1.body, r.get1.err)
        assert.equal("ok", r.get2.body, r.get2.err)
        assert.equal(2, r.conns_get)
        local count = {}
        for _, l in ipairs(r.log) do
          local m = l:match("^(%u+)")
          count[m] = (count[m] or 0) + 1
        end
        -- each sent once, whether it went on a pooled connection (and
        -- failed: "closed") or on a new one (and was answered)
        assert.equal(1, count.POST, table.concat(r.log, ", "))
        assert.equal(1, count.PUT, table.concat(r.log, ", "))
        for _, k in ipairs { "post", "iter" } do
          local x = r[k]
          assert.truthy(x.body == "ok" or x.err == "closed",
            k .. ": " .. tostring(x.body) .. " " .. tostring(x.err))
        end
        assert.equal("ok", r.get3.body, r.get3.err)
      end)

    it_node("WebSocket: 200 instead of 101, a wrong Sec-WebSocket-Accept, an "
      .. "unoffered subprotocol fail the handshake; a masked frame from the "
      .. "server fails the connection with 1002; every client frame has a "
      .. "fresh mask", function()
      local r = run([[
local function attempt(url, opts)
  local ws, err, res = client.websocket(url, opts or { timeout = 2000 })
  local x = { ws = ws ~= nil, err = err, status = res and res.status }
  if ws then ws:close() end
  local good = client.websocket(UPWS .. "/ws/echo")
  good:send("still")
  x.good = good:receive(2000)
  good:close()
  return x
end
R.ok200 = attempt(RAWWS .. "/ws-200")
R.bad_accept = attempt(RAWWS .. "/ws-bad-accept")
R.unoffered = attempt(RAWWS .. "/ws-proto-unoffered")
R.refused = attempt("ws://127.0.0.1:" .. REFUSED .. "/")
R.never = attempt(RAWWS .. "/never", { timeout = 300 })
R.wss = attempt("wss://127.0.0.1:" .. REFUSED .. "/")
R.bad_url = attempt("http://127.0.0.1:" .. REFUSED .. "/")

local errors, closes, msgs = {}, {}, {}
local ws = client.websocket(RAWWS .. "/ws-masked", {
  on_message = function(_, m) msgs[#msgs + 1] = m end,
  on_error = function(_, e) errors[#errors + 1] = e end,
  on_close = function(_, info) closes[#closes + 1] = info end,
})
R.masked_ws = ws ~= nil
wait_for(function() return #closes == 1 end)
R.masked = { errors = errors, close = closes[1], msgs = msgs }
wait_for(function() return get_value(UP .. "/raw-stats").ws_close_code end)
R.masked_peer_saw = get_value(UP .. "/raw-stats").ws_close_code

ws = client.websocket(RAWWS .. "/ws-masks")
ws:send("a")
ws:send("b")
ws:send("c")
R.masks_reply = { ws:receive(2000) }
R.masks = get_value(UP .. "/raw-stats").masks
ws:close()
finish()
]], up_vars { REFUSED = free_port() })
      for _, k in ipairs { "ok200", "bad_accept", "unoffered", "refused",
        "never", "wss", "bad_url" } do
        local x = r[k]
        assert.is_false(x.ws, k)
        assert.is_string(x.err, k)
        assert.equal("still", x.good, k .. ": the next WebSocket failed")
      end
      assert.equal(200, r.ok200.status)
      assert.equal("connection refused", r.refused.err)
      assert.equal("timeout", r.never.err)
      assert.equal("tls is not supported yet", r.wss.err)
      assert.matches("^bad url: ", r.bad_url.err)
      assert.is_true(r.masked_ws)
      assert.same({}, r.masked.msgs)
      assert.equal(1002, r.masked.close.code)
      assert.equal(1, #r.masked.errors)
      assert.matches("^websocket: .*%(closed with 1002%)$", r.masked.errors[1])
      assert.equal(1002, r.masked_peer_saw)
      assert.same({ "masks", false }, r.masks_reply)
      assert.equal(3, #r.masks)
      local seen = {}
      for i, m in ipairs(r.masks) do
        assert.is_true(m.masked)
        assert.equal(({ "a", "b", "c" })[i], m.payload)
        assert.not_equal("00000000", m.mask)
        assert.is_nil(seen[m.mask], "a mask used twice: " .. m.mask)
        seen[m.mask] = true
      end
    end)

    it_node("WebSocket frames that break RFC 6455 fail the connection with "
      .. "1002 or 1007, told to on_error and on_close; good edge cases pass",
      function()
        local r = run([[
local CASES = {
  { "bad_utf8", "8102fffe" },
  { "reserved_opcode", "8300" },
  { "rsv1", "c1026869" },
  { "long_ping", "897e007e" .. string.rep("61", 126) },
  { "fragmented_ping", "0900" },
  { "lone_continuation", "80026869" },
  { "message_in_fragments", "010161810162" },
  { "close_one_byte", "880100" },
  { "close_code_999", "880203e7" },
  { "close_code_1005", "880203ed" },
  { "close_bad_reason", "880403e8fffe" },
  { "huge_length", "827f8000000000000000" },
  { "utf8_across_fragments", "0101c38001a9" },
  { "close_without_code", "8800" },
  { "close_4100_bye", "88051004627965" },
}
for _, c in ipairs(CASES) do
  local name, hex = c[1], c[2]
  local x = { msgs = {}, errs = {} }
  local ws, res_or_err = client.websocket(RAWWS .. "/ws-raw?hex=" .. hex, {
    timeout = 2000,
    on_message = function(_, m) x.msgs[#x.msgs + 1] = m end,
    on_error = function(_, e) x.errs[#x.errs + 1] = e end,
    on_close = function(_, info) x.close = info end,
  })
  if not ws then x.err = res_or_err end
  wait_for(function() return x.close end, 500)
  if ws and ws:is_open() then
    x.open = true
    ws:close()
    wait_for(function() return x.close end, 1000)
  end
  wait_for(function() return get_value(UP .. "/raw-stats").ws_close_code end,
    1000)
  x.peer_saw = get_value(UP .. "/raw-stats").ws_close_code
  R[name] = x
end
finish()
]], up_vars())
        local problems = {}
        local function want(name, code, reason_pattern)
          local x = r[name]
          local got = x.close and x.close.code
          if x.err or got ~= code or x.peer_saw ~= code then
            problems[#problems + 1] = ("%s: err %s, on_close %s, peer saw %s,"
              .. " want %d"):format(name, tostring(x.err), tostring(got),
              tostring(x.peer_saw), code)
          end
          if reason_pattern and not (#x.errs == 1 and x.errs[1]:match(
              "^websocket: .*%(closed with " .. code .. "%)$")) then
            problems[#problems + 1] = name .. ": on_error got "
              .. table.concat(x.errs, " | ")
          end
          if reason_pattern and #x.msgs > 0 then
            problems[#problems + 1] = name .. ": a message came through"
          end
        end
        want("bad_utf8", 1007, true)
        for _, n in ipairs { "reserved_opcode", "rsv1", "long_ping",
          "fragmented_ping", "lone_continuation", "message_in_fragments",
          "close_one_byte", "close_code_999", "close_code_1005",
          "huge_length" } do
          want(n, 1002, true)
        end
        want("close_bad_reason", 1007, true)
        -- good ones
        want("utf8_across_fragments", 1000)
        assert.same({ "é" }, r.utf8_across_fragments.msgs)
        want("close_without_code", 1005)
        want("close_4100_bye", 4100)
        assert.equal("bye", r.close_4100_bye.close.reason)
        assert(#problems == 0, table.concat(problems, "\n"))
      end)
  end)
end)
