-- ringlet.test itself: start (a handler, an app file), the app's get, post,
-- request, websocket and stop, and request{} against what the real server
-- builds, key by key.
--
-- Unlike the other specs, ringlet.test runs the server inside the calling
-- state, so these checks load build/ringlet.so into the busted process
-- (the build directory is RINGLET_BIN's). An AddressSanitizer build cannot
-- be loaded into plain lua5.4, so under `scripts/test.sh --sanitize` each
-- check runs instead in a script of its own under the ringlet command
-- (RINGLET_BIN), which finds lua/ beside its build: the script loads this
-- file (outside busted it returns its checks) and calls one check, and
-- the command must exit 0 (no leak, no sanitizer report).
--
-- The checks use plain `assert` and the `eq` below, so they run the same
-- in both places.

local checks = {} -- an array of {name, fn}, in order

local function check(name, fn) checks[#checks + 1] = { name, fn } end

-- ---------------------------------------------------------------------------
-- Helpers the checks share (plain Lua: no busted, no LuaSocket)

local function show(v, seen)
  seen = seen or {}
  if type(v) == "string" then return ("%q"):format(v) end
  if type(v) ~= "table" then return tostring(v) end
  if seen[v] then return "<cycle>" end
  seen[v] = true
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local out = {}
  for _, k in ipairs(keys) do
    out[#out + 1] = tostring(k) .. " = " .. show(v[k], seen)
  end
  seen[v] = nil
  return "{ " .. table.concat(out, ", ") .. " }"
end

local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

-- Raises (at the caller's line) unless got is deeply equal to want.
local function eq(want, got, what)
  if not same(want, got) then
    error(("%s: expected %s, got %s"):format(what or "value", show(want),
      show(got)), 2)
  end
end

local function matches(pattern, s, what)
  if type(s) ~= "string" or not s:find(pattern) then
    error(("%s: %s does not match %q"):format(what or "value", show(s),
      pattern), 2)
  end
end

-- Raises unless fn raises an error whose message holds `text`.
local function raises(text, fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then error("expected an error with " .. ("%q"):format(text), 2) end
  if not tostring(err):find(text, 1, true) then
    error(("expected an error with %q, got %s"):format(text, tostring(err)), 2)
  end
end

-- The process's open descriptors (/proc/self/fd; the directory's own
-- descriptor, open while it is read, counts each time alike).
local function fd_count()
  local ok, lfs = pcall(require, "lfs")
  local n = 0
  if ok then
    for name in lfs.dir("/proc/self/fd") do
      if name ~= "." and name ~= ".." then n = n + 1 end
    end
    return n
  end
  local pid = io.open("/proc/self/stat"):read("a"):match("^(%d+)")
  local p = io.popen("ls -1 /proc/" .. pid .. "/fd")
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

local function write_file(name, text)
  local f = assert(io.open(name, "wb"))
  f:write(text)
  f:close()
end

-- A fresh directory for app files; removed by the caller's finally list.
local function tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -m 700 " .. dir))
  return dir
end

local function rmdir(dir)
  os.execute("rm -rf '" .. dir .. "'")
end

-- Runs fn(defer): each function given to defer runs after fn, however fn
-- ends (last deferred first); the first error is raised again.
local function with_cleanup(fn)
  local list = {}
  local ok, err = pcall(fn, function(f) list[#list + 1] = f end)
  for i = #list, 1, -1 do
    local ok2, err2 = pcall(list[i])
    if ok and not ok2 then ok, err = false, err2 end
  end
  if not ok then error(err, 0) end
end

-- An app that tells what it got: method, uri, query, one header, body.
local function echo(req)
  return { status = 200, headers = { ["content-type"] = "text/plain" },
           body = table.concat({ req.request_method, req.uri,
             tostring(req.query_string), tostring(req.headers["x-test"]),
             req.body or "" }, " ") }
end

local T = 5000 -- ms: the bound of every client call below

-- ---------------------------------------------------------------------------
-- The checks

check("start(handler): url, port, server; get", function()
  local test = require "ringlet.test"
  with_cleanup(function(defer)
    local app = test.start(echo)
    defer(function() app:stop() end)
    matches("^http://127%.0%.0%.1:%d+$", app.url, "url")
    eq("http://127.0.0.1:" .. app.port, app.url, "url")
    eq(app.server.port, app.port, "port")
    eq("127.0.0.1", app.server.ip, "server.ip")
    eq("running", app.server.status, "status")
    assert(app.port > 0)
    local res, err = app:get("/a?b=1", { ["x-test"] = "yes" })
    assert(res, err)
    eq(200, res.status, "status")
    eq("text/plain", res.headers["content-type"], "content-type")
    eq("get /a b=1 yes ", res.body, "body")
    res = assert(app:get())
    eq("get / nil nil ", res.body, "get() is GET /")
    res = assert(app:get("no-slash"))
    eq("get /no-slash nil nil ", res.body, "a path without its slash")
  end)
end)

check("post and request (a path, a full url, a string)", function()
  local test = require "ringlet.test"
  with_cleanup(function(defer)
    local app = test.start(echo)
    defer(function() app:stop() end)
    local res = assert(app:post("/p", "hello", { ["x-test"] = "1" }))
    eq("post /p nil 1 hello", res.body, "post")
    res = assert(app:request{ method = "PUT", path = "/r?x", body = "b",
                              timeout = T })
    eq("put /r x nil b", res.body, "request{path}")
    res = assert(app:request{ url = app.url .. "/full", timeout = T })
    eq("get /full nil nil ", res.body, "request{url}")
    res = assert(app:request{ url = "/rel", timeout = T })
    eq("get /rel nil nil ", res.body, "request{url = a path}")
    res = assert(app:request("/s"))
    eq("get /s nil nil ", res.body, "request(path)")
    raises("path or url, not both", app.request, app,
      { path = "/a", url = "/b" })
  end)
end)

check("start(file): a handler, arg[0], options, opts win", function()
  local test = require "ringlet.test"
  with_cleanup(function(defer)
    local dir = tmpdir()
    defer(function() rmdir(dir) end)
    write_file(dir .. "/greeting.txt", "hi from beside the app")
    -- the app reads a file beside itself through arg[0], as under the
    -- command, and finds its own path through debug.getinfo
    write_file(dir .. "/app.lua", [[
      local here = arg[0]:match("^(.*)/") or "."
      local f = assert(io.open(here .. "/greeting.txt"))
      local greeting = f:read("a")
      f:close()
      local source = debug.getinfo(1, "S").source
      return function(req)
        return { body = greeting .. "|" .. source .. "|" .. (req.body or "") }
      end
    ]])
    local before, path = rawget(_G, "arg"), package.path
    local app = test.start(dir .. "/app.lua")
    defer(function() app:stop() end)
    assert(rawget(_G, "arg") == before, "the global arg is restored")
    -- as under the command, whose package.path gains only ringlet's own
    -- modules: a require beside the app resolves from the working directory
    eq(path, package.path, "package.path is left as it is")
    local res = assert(app:get("/"))
    eq("hi from beside the app|@" .. dir .. "/app.lua|", res.body, "body")

    -- {handler =, options =}: the app's options apply, but not its ip and
    -- port (127.0.0.1 and a free port, as the command's flags would)
    write_file(dir .. "/table.lua", [[
      return { handler = function(req) return { body = req.body or "-" } end,
               options = { max_body = 4, port = 1, ip = "0.0.0.0" } }
    ]])
    local small = test.start(dir .. "/table.lua")
    defer(function() small:stop() end)
    eq("127.0.0.1", small.ip, "ip")
    assert(small.port ~= 1, "port 0 wins over the app's")
    eq("1234", assert(small:post("/", "1234")).body, "within max_body")
    eq(413, assert(small:post("/", "12345")).status, "over max_body")
    -- opts win over the app's options
    local big = test.start(dir .. "/table.lua", { max_body = 100 })
    defer(function() big:stop() end)
    eq("12345", assert(big:post("/", "12345")).body, "opts.max_body")
    -- a table given directly works as a file's
    local direct = test.start({ handler = echo, options = { max_body = 2 } })
    defer(function() direct:stop() end)
    eq(413, assert(direct:post("/", "123")).status, "a table's options")
  end)
end)

check("start: errors", function()
  local test = require "ringlet.test"
  with_cleanup(function(defer)
    local dir = tmpdir()
    defer(function() rmdir(dir) end)
    raises("cannot open", test.start, dir .. "/missing.lua")
    write_file(dir .. "/syntax.lua", "return function(")
    raises("syntax.lua", test.start, dir .. "/syntax.lua")
    write_file(dir .. "/boom.lua", "error('boom at load')")
    raises("boom at load", test.start, dir .. "/boom.lua")
    write_file(dir .. "/none.lua", "local x = 1")
    raises("returned nothing", test.start, dir .. "/none.lua")
    write_file(dir .. "/number.lua", "return 42")
    raises("got number", test.start, dir .. "/number.lua")
    write_file(dir .. "/nohandler.lua", "return { options = {} }")
    raises("needs a 'handler' function", test.start, dir .. "/nohandler.lua")
    raises("got nil", test.start, nil)
    raises("opts must be a table", test.start, echo, 5)
    raises("no_such_option", test.start, echo, { no_such_option = 1 })
    local app = test.start(echo)
    defer(function() app:stop() end)
    raises("EADDRINUSE", test.start, echo, { port = app.port })
  end)
end)

check("websocket: send, receive, close; the 101", function()
  local ringlet = require "ringlet"
  local test = require "ringlet.test"
  with_cleanup(function(defer)
    local closed
    local app = test.start(function(req)
      if not req.websocket then return { status = 426 } end
      return ringlet.as_channel(req, {
        on_open = function(ch)
          ch:send("welcome " .. tostring(req.query_string))
        end,
        on_message = function(ch, msg, binary)
          ch:send(msg, { binary = binary })
        end,
        on_close = function(_, info) closed = info end,
      })
    end)
    defer(function() app:stop() end)
    eq("ws://127.0.0.1:" .. app.port, app.ws_url, "ws_url")
    local ws, res = app:websocket("/chat?ann", { timeout = T })
    assert(ws, res)
    eq(101, res.status, "the 101")
    eq("welcome ann", ws:receive(T), "first message")
    assert(ws:send("hello"))
    local msg, binary = ws:receive(T)
    eq("hello", msg, "text echo")
    assert(not binary, "text is not binary")
    assert(ws:send("\0\1\2", { binary = true }))
    msg, binary = ws:receive(T)
    eq("\0\1\2", msg, "binary echo")
    eq(true, binary, "binary")
    ws:close()
    eq(nil, (ws:receive(T)), "receive once closed")
    local deadline = os.time() + 5
    while not closed and os.time() <= deadline do ringlet.sleep(10) end
    eq(1000, closed and closed.code, "the server saw the close")
    -- a full URL too; a plain GET answers
    ws = assert(app:websocket(app.ws_url .. "/x?bob", { timeout = T }))
    eq("welcome bob", ws:receive(T), "full url")
    ws:close()
    local no, err = app:websocket("/x", { timeout = T,
                                          headers = { ["x-no"] = "1" } })
    assert(no, err) -- still an upgrade: the handler answers it
    no:close()
    eq(426, assert(app:get("/x")).status, "plain GET")
  end)
end)

check("stop: no listening socket, no descriptor left, idempotent", function()
  local ringlet = require "ringlet"
  local test = require "ringlet.test"
  local client = require "ringlet.client"
  local function app_with_traffic()
    local app = test.start(function(req)
      if req.websocket then
        return ringlet.as_channel(req, {
          on_message = function(ch, msg) ch:send(msg) end })
      end
      return { body = "ok" }
    end)
    assert(app:get("/"))          -- a keep-alive connection, pooled
    assert(app:post("/", "x"))
    local ws = assert(app:websocket("/", { timeout = T }))
    assert(ws:send("m"))
    eq("m", ws:receive(T), "echo")
    return app, ws              -- the WebSocket left open for stop
  end
  -- once first, so that what the loop and the client open once for good
  -- (the loop's own descriptors, the resolver's) is open before counting
  local warm, warm_ws = app_with_traffic()
  warm:stop()
  eq(nil, (warm_ws:receive(T)), "the server closed the WebSocket")

  local before = fd_count()
  local app, ws = app_with_traffic()
  assert(fd_count() > before, "the app holds descriptors while it runs")
  local port = app.port
  assert(app:stop())
  eq("stopped", app.server.status, "status")
  eq(nil, (ws:receive(T)), "the WebSocket was closed")
  eq(false, ws:is_open(), "is_open")
  eq(before, fd_count(), "descriptors after stop")
  assert(app:stop(), "a second stop")
  local res, err = client.request{ url = "http://127.0.0.1:" .. port .. "/",
                                   timeout = T }
  eq(nil, res, "nobody listens")
  eq("connection refused", err, "error")
  client.close_idle()
  eq(before, fd_count(), "descriptors after a refused request")
end)

check("a to-be-closed app stops at the end of its block", function()
  local test = require "ringlet.test"
  local server
  do
    local app <close> = test.start(echo)
    server = app.server
    eq(200, assert(app:get("/")).status, "status")
  end
  eq("stopped", server.status, "stopped by __close")
end)

check("inside a running loop: the calls suspend the task", function()
  local ringlet = require "ringlet"
  local test = require "ringlet.test"
  local app = test.start(function(req)
    ringlet.sleep(20)              -- the loop serves the client meanwhile
    return { body = "slept " .. req.uri }
  end)
  local got, stopped
  local guard = ringlet.timer(5 * T, function() app.server:stop() end)
  ringlet.timer(0, function()
    got = { app:get("/one"), app:request{ path = "/two", timeout = T } }
    stopped = app:stop()
    guard:cancel()
  end)
  ringlet.run()                    -- until the server has stopped
  eq("slept /one", got and got[1] and got[1].body, "get")
  eq("slept /two", got and got[2] and got[2].body, "request")
  eq(true, stopped, "stop in a task")
end)

-- request{}: what the real server builds, key by key. The same request
-- goes through the client to a server that keeps its request tables, and
-- through test.request (with the headers the client adds by itself).
local CONTRACT = { "server_port", "server_name", "remote_addr", "uri",
  "query_string", "scheme", "request_method", "protocol", "headers", "body",
  "websocket" }

local function same_request(want, got, what)
  for _, k in ipairs(CONTRACT) do
    eq(want[k], got[k], what .. ": " .. k)
  end
  for k in pairs(got) do
    assert(want[k] ~= nil, what .. ": test.request has an extra key " .. k)
  end
  for k in pairs(want) do
    local known = false
    for _, c in ipairs(CONTRACT) do known = known or c == k end
    assert(known, what .. ": the server set a key outside the contract: " .. k)
  end
end

check("request{} is the table the server builds", function()
  local ringlet = require "ringlet"
  local test = require "ringlet.test"
  with_cleanup(function(defer)
    local seen = {}
    local app = test.start(function(req)
      -- a copy: the body may be read later
      local copy = {}
      for k, v in pairs(req) do copy[k] = v end
      seen[#seen + 1] = copy
      if req.websocket then
        return ringlet.as_channel(req, {
          on_open = function(ch) ch:close() end })
      end
      return { body = "ok" }
    end)
    defer(function() app:stop() end)
    local cases = {
      { name = "a plain GET", method = "GET", path = "/" },
      { name = "a query, odd headers", method = "GET",
        path = "/a/b%20c?x=1&y=%2F&z",
        headers = { accept = "*/*", ["X-Mixed-Case"] = "  v  ",
                    ["x-multi"] = { "one", "two" } } },
      { name = "an empty query", method = "GET", path = "/q?" },
      { name = "a POST with a body", method = "POST", path = "/form",
        headers = { ["content-type"] = "application/x-www-form-urlencoded" },
        body = "a=1&b=2" },
      { name = "a PUT with a binary body", method = "PUT", path = "/bin",
        body = "\0\1\2\255" },
      { name = "a DELETE", method = "DELETE", path = "/item/1" },
      { name = "a HEAD", method = "HEAD", path = "/h?x" },
      { name = "OPTIONS", method = "OPTIONS", path = "/o" },
      { name = "a PATCH", method = "PATCH", path = "/p", body = "{}" },
      { name = "a POST without a body", method = "POST", path = "/none" },
      { name = "a PUT with an empty body", method = "PUT", path = "/e",
        body = "" },
      { name = "a GET with an empty body", method = "GET", path = "/g",
        body = "" },
      { name = "a chunked POST (an iterator body)", method = "POST",
        path = "/c", body = { "pieces ", "of ", "a body" }, iterate = true },
    }
    for _, c in ipairs(cases) do
      local n = #seen
      local body = c.body
      if c.iterate then -- the client sends it chunked
        local i = 0
        body = function()
          i = i + 1
          return c.body[i]
        end
      end
      local res, err = app:request{ method = c.method, path = c.path,
        headers = c.headers, body = body, timeout = T }
      assert(res, c.name .. ": " .. tostring(err))
      assert(#seen == n + 1, c.name .. ": the handler ran once")
      local got = seen[#seen]
      -- the headers the client adds by itself (user-agent; for an
      -- iterator, transfer-encoding) go to test.request too; host and
      -- content-length it must make itself
      local headers = {}
      for k, v in pairs(c.headers or {}) do headers[k] = v end
      for k, v in pairs(got.headers) do
        local given = false
        for g in pairs(c.headers or {}) do given = given or g:lower() == k end
        if not given and k ~= "host" and k ~= "content-length" then
          headers[k] = v
        end
      end
      local built = test.request{ method = c.method, uri = app.url .. c.path,
        headers = headers, body = c.body }
      same_request(got, built, c.name)
    end

    -- a WebSocket upgrade: the same with the client's key
    local n = #seen
    local ws = assert(app:websocket("/ws?room=1", { timeout = T }))
    eq(nil, (ws:receive(T)), "closed by the server")
    assert(#seen == n + 1, "the upgrade reached the handler")
    local got = seen[#seen]
    eq(true, got.websocket, "websocket")
    local headers = {}
    for k, v in pairs(got.headers) do
      if k ~= "host" then headers[k] = v end
    end
    local built = test.request{ uri = app.url .. "/ws?room=1",
      headers = headers }
    same_request(got, built, "an upgrade")
    -- websocket = true makes the same headers, but for the key
    local made = test.request{ uri = app.url .. "/ws?room=1",
      websocket = true }
    eq(true, made.websocket, "websocket = true")
    for _, k in ipairs{ "upgrade", "sec-websocket-version" } do
      eq(got.headers[k]:lower(), made.headers[k]:lower(), k)
    end
    assert(made.headers.connection:lower():find("upgrade"), "connection")
  end)
end)

check("request(): defaults, ring-mock's form, params, errors", function()
  local test = require "ringlet.test"
  eq({
    server_port = 80, server_name = "localhost", remote_addr = "127.0.0.1",
    uri = "/", scheme = "http", request_method = "get",
    protocol = "HTTP/1.1", headers = { host = "localhost" },
    websocket = false,
  }, test.request{}, "request{}")
  eq(test.request{}, test.request("GET", "/"), "request(method, uri)")

  local r = test.request("get", "/search?q=lua#frag")
  eq("/search", r.uri, "uri")
  eq("q=lua", r.query_string, "query_string")
  r = test.request("get", "/a?")
  eq("", r.query_string, "an empty query")
  eq(nil, test.request("get", "/a").query_string, "no query")

  -- params: the query of a GET, HEAD or DELETE; else a form body
  r = test.request("get", "/s?x=1", { params = { q = "a b", n = { 1, 2 } } })
  eq("x=1&n=1&n=2&q=a+b", r.query_string, "GET params")
  eq(nil, r.body, "GET body")
  r = test.request("POST", "/f", { params = { a = "1 2", b = "&=" } })
  eq("a=1+2&b=%26%3D", r.body, "POST params")
  eq("application/x-www-form-urlencoded", r.headers["content-type"], "type")
  eq("14", r.headers["content-length"], "length")
  eq("post", r.request_method, "method")
  -- a string is the body
  r = test.request("put", "/x", "data")
  eq("data", r.body, "string body")
  eq("4", r.headers["content-length"], "its length")
  eq(nil, test.request("post", "/x", "").body, "an empty body is nil")
  eq("0", test.request("get", "/x", "").headers["content-length"],
    "an empty body given has its length")
  eq("0", test.request("post", "/x").headers["content-length"],
    "a POST without a body: 0")
  eq(nil, test.request("delete", "/x").headers["content-length"],
    "a DELETE without a body: none")
  eq("ab", test.request{ method = "post", body = { "a", "b" } }.body,
    "an array body")
  local f = assert(io.tmpfile())
  f:write("file body")
  f:seek("set", 5)
  r = test.request{ method = "post", body = f }
  assert(r.body == f, "a file body is passed on")
  eq("4", r.headers["content-length"], "what remains of the file")
  eq(5, f:seek(), "the file's position is kept")
  f:close()
  eq("chunked", test.request{ method = "post", body = "x",
    headers = { ["transfer-encoding"] = "chunked" } }
    .headers["transfer-encoding"], "transfer-encoding kept")
  eq(nil, test.request{ method = "post", body = "x",
    headers = { ["transfer-encoding"] = "chunked" } }
    .headers["content-length"], "no length with chunked")

  -- where it went
  r = test.request("get", "http://Example.com:8080?x")
  eq("Example.com", r.server_name, "server_name from the URL")
  eq(8080, r.server_port, "server_port from the URL")
  eq("Example.com:8080", r.headers.host, "host from the URL")
  eq("/", r.uri, "uri")
  eq("x", r.query_string, "query")
  r = test.request{ headers = { Host = "api.example.org:9000" } }
  eq("api.example.org", r.server_name, "server_name from Host")
  eq(80, r.server_port, "server_port is the server's, not Host's")
  r = test.request{ headers = { host = "[::1]:9000" } }
  eq("[::1]", r.server_name, "an IPv6 literal keeps its brackets")
  r = test.request{ server_name = "s.test", server_port = 8443,
    remote_addr = "10.0.0.9", protocol = "HTTP/1.0" }
  eq("s.test:8443", r.headers.host, "host from server_name and port")
  eq("10.0.0.9", r.remote_addr, "remote_addr")
  eq("HTTP/1.0", r.protocol, "protocol")
  eq("*", test.request("OPTIONS", "*").uri, "an asterisk")

  -- headers: lower-case, trimmed, repeats joined
  r = test.request{ headers = { ["X-A"] = { " 1 ", "2" }, ["Accept"] = "*/*",
    ["x-n"] = 5 } }
  eq({ host = "localhost", ["x-a"] = "1, 2", accept = "*/*", ["x-n"] = "5" },
    r.headers, "headers")

  -- WebSocket upgrades
  r = test.request{ uri = "/ws", websocket = true }
  eq(true, r.websocket, "websocket")
  eq("websocket", r.headers.upgrade, "upgrade")
  eq("13", r.headers["sec-websocket-version"], "version")
  eq(24, #r.headers["sec-websocket-key"], "key")
  r = test.request{ headers = { connection = "keep-alive, Upgrade",
    upgrade = "WebSocket", ["sec-websocket-version"] = "13",
    ["sec-websocket-key"] = "AAAAAAAAAAAAAAAAAAAAAA==" } }
  eq(true, r.websocket, "headers asking for an upgrade")
  eq(false, test.request{ headers = { upgrade = "websocket" } }.websocket,
    "an upgrade not named in connection")
  raises("must be a GET", test.request,
    { method = "post", websocket = true })
  raises("must be 13", test.request, { websocket = true,
    headers = { ["sec-websocket-version"] = "8" } })
  raises("Sec-WebSocket-Key", test.request, { websocket = true,
    headers = { ["sec-websocket-key"] = "short" } })

  -- bad options
  raises("unknown option url", test.request, { url = "/" })
  raises("uri must start with", test.request, "get", "relative")
  raises("method and uri are the first two", test.request, "get", "/",
    { method = "post" })
  raises("give params or body", test.request, "post", "/",
    { params = {}, body = "x" })
  raises("CR, LF or NUL", test.request, { headers = { x = "a\r\nb: c" } })
  raises("bad header name", test.request, { headers = { ["a b"] = "c" } })
  raises("protocol must be", test.request, { protocol = "HTTP/2" })
  raises("headers must be a table", test.request, { headers = "x" })
  raises("expected (method, uri", test.request, "get")
end)

-- ---------------------------------------------------------------------------
-- Outside busted (the ringlet command loads this file): the checks.

if not describe then return checks end

local helper = require "helper"

-- Under ASan the module cannot be loaded here: each check runs under the
-- ringlet command instead.
local sanitized = os.getenv("RINGLET_SANITIZE") == "1"
  or helper.BIN:find("asan", 1, true) ~= nil

describe("ringlet.test", function()
  if sanitized then
    for _, c in ipairs(checks) do
      it(c[1] .. " (under " .. helper.BIN .. ")", function()
        -- the command finds lua/ beside its build; the checkout's, to be sure
        local ok, out, err, code = helper.run_script(([[
package.path = %q .. "/lua/?.lua;" .. package.path
local checks = dofile(%q)
for _, c in ipairs(checks) do
  if c[1] == %q then c[2]() print("check passed") end
end
]]):format(helper.ROOT, helper.ROOT .. "/spec/test_module_spec.lua", c[1]))
        assert(ok and out:find("check passed", 1, true),
          ("the check failed (exit %s)\nstdout:\n%s\nstderr:\n%s")
            :format(code, out, err))
      end)
    end
    return
  end

  -- this process: the build's module and the checkout's Lua modules
  local build = helper.BIN:match("^(.*)/[^/]*$") or "."
  if build:sub(1, 1) ~= "/" then build = helper.ROOT .. "/" .. build end
  local saved_path, saved_cpath = package.path, package.cpath
  setup(function()
    package.cpath = build .. "/?.so;" .. package.cpath
    package.path = helper.ROOT .. "/lua/?.lua;" .. helper.ROOT
      .. "/lua/?/init.lua;" .. package.path
  end)
  teardown(function()
    package.path, package.cpath = saved_path, saved_cpath
  end)
  for _, c in ipairs(checks) do it(c[1], c[2]) end
end)
