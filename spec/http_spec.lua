-- The HTTP/1.x core: the request table, response bodies, connection
-- management and the origin-server requirements of RFC 9110 and RFC 9112.
-- One server (a child process) serves the whole file; its app routes by path.

local helper = require "helper"
local socket = require "socket"

local DATA_SIZE = 200000

local function app_source(datafile)
  return helper.SERIALIZER .. ([=[
local ringlet = require "ringlet"
local datafile = %q
local last_file

local function items(list)
  local i = 0
  return function()
    i = i + 1
    return list[i]
  end
end

local routes = {}

routes["/echo"] = function(req)
  return { status = 200, headers = { ["content-type"] = "text/plain" },
           body = serialize(req) }
end
routes["/string"] = function()
  return { status = 200, headers = { ["content-type"] = "text/plain" },
           body = "hello, world" }
end
routes["/default-status"] = function()
  return { body = "no status given" }
end
routes["/array"] = function()
  return { status = 200, body = { "alpha", "-", "beta", "-", "gamma" } }
end
routes["/file"] = function()
  last_file = assert(io.open(datafile, "rb"))
  return { status = 200, body = last_file }
end
routes["/file-part"] = function(req)
  -- from byte 100, as many bytes as the query says (string or number)
  local f = assert(io.open(datafile, "rb"))
  f:seek("set", 100)
  local n = req.query_string or "10"
  local len = n:sub(1, 1) == "n" and tonumber(n:sub(2)) or n
  return { status = 206, headers = { ["Content-Length"] = len }, body = f }
end
routes["/file-state"] = function()
  return { status = 200, body = tostring(io.type(last_file)) }
end
routes["/iter"] = function()
  return { status = 200, body = items({ "one", "two", "three" }) }
end
local big_calls = 0
routes["/iter-big"] = function(req)
  -- query_string pieces of 64 KiB, each starting with its number and ";"
  local n, i = tonumber(req.query_string), 0
  big_calls = 0
  return { status = 200, body = function()
    if i == n then return nil end
    i = i + 1
    big_calls = i
    local tag = i .. ";"
    return tag .. ("x"):rep(65536 - #tag)
  end }
end
routes["/iter-big-calls"] = function()
  return { status = 200, body = tostring(big_calls) }
end
routes["/iter-error"] = function()
  local n = 0
  return { status = 200, body = function()
    n = n + 1
    if n == 1 then return "first" end
    if n == 2 then ringlet.sleep(10) end
    error("iterator-broke-" .. n)
  end }
end
routes["/cookies"] = function()
  return { status = 200,
           headers = { ["set-cookie"] = { "a=1; Path=/", "b=2; Path=/" } },
           body = "cookies" }
end
routes["/status"] = function(req)
  return { status = tonumber(req.query_string), body = "" }
end
routes["/204"] = function()
  return { status = 204 }
end
routes["/204-with-body"] = function()
  return { status = 204, body = "this body must not be sent" }
end
routes["/304"] = function()
  return { status = 304, headers = { etag = '"v1"' } }
end
routes["/304-with-body"] = function()
  return { status = 304, body = "this body must not be sent" }
end
routes["/bad-crlf-value"] = function()
  return { status = 200, headers = { ["x-bad"] = "a\r\nInjected: yes" },
           body = "x" }
end
routes["/bad-lf-value"] = function()
  return { status = 200, headers = { ["x-bad"] = "a\nInjected: yes" },
           body = "x" }
end
routes["/bad-cr-value"] = function()
  return { status = 200, headers = { ["x-bad"] = "a\rInjected: yes" },
           body = "x" }
end
routes["/bad-crlf-array-value"] = function()
  return { status = 200,
           headers = { ["set-cookie"] = { "ok=1", "a\r\nInjected: yes" } },
           body = "x" }
end
routes["/bad-header-boolean"] = function()
  return { status = 200, headers = { ["x-flag"] = true }, body = "x" }
end
routes["/bad-header-item"] = function()
  return { status = 200, headers = { ["x-list"] = { "a", {} } }, body = "x" }
end
local NUMBERS = { 42, -7, 0, 2.5, 2.0, -0.0, 1e100, 1 / 3, 2 ^ 63,
                  math.mininteger, 1 / 0, -1 / 0 }
routes["/number-headers"] = function()
  -- each value, and what tostring makes of it, which the header must be
  local headers, want = {}, {}
  for i, v in ipairs(NUMBERS) do
    headers["x-n" .. i] = v
    want[#want + 1] = "x-n" .. i .. "=" .. tostring(v)
  end
  headers["x-list"] = { 1, 2.5 }
  want[#want + 1] = "x-list=" .. tostring(1) .. "," .. tostring(2.5)
  return { status = 200, headers = headers, body = table.concat(want, "\n") }
end
routes["/indexed-response"] = function()
  -- an object whose fields come through __index: read under a pcall
  return setmetatable({ status = 201 }, {
    __index = function(_, k)
      if k == "body" then return "from __index" end
      if k == "headers" then return { ["x-from"] = "index" } end
    end,
  })
end
routes["/bad-index-error-object"] = function()
  -- raising a value that is not a string while the table is read
  return setmetatable({}, { __index = function() error({}) end })
end
routes["/bad-crlf-name"] = function()
  return { status = 200, headers = { ["x-a\r\nInjected"] = "yes" },
           body = "x" }
end
routes["/bad-status-0"] = function() return { status = 0, body = "x" } end
routes["/bad-status-99"] = function() return { status = 99, body = "x" } end
routes["/bad-status-1000"] = function()
  return { status = 1000, body = "x" }
end
routes["/bad-status-100"] = function() return { status = 100, body = "x" } end
routes["/bad-status-101-array"] = function()
  return { status = 101, body = { "x" } } -- no channel: nothing switches
end
routes["/bad-status-102-file"] = function()
  last_file = assert(io.open(datafile, "rb"))
  return { status = 102, body = last_file }
end
routes["/bad-status-199-iterator"] = function()
  local sent = false
  return { status = 199, body = function()
    if sent then return nil end
    sent = true
    return "x"
  end }
end
routes["/bad-status-abc"] = function()
  return { status = "abc", body = "x" }
end
routes["/bad-body-number"] = function() return { status = 200, body = 42 } end
routes["/bad-body-boolean"] = function()
  return { status = 200, body = true }
end
routes["/no-response"] = function() return nil end
routes["/error"] = function()
  error("handler-boom-" .. "marker")
end

return function(req)
  local route = routes[req.uri]
  if route then return route(req) end
  return { status = 404, body = "not found: " .. req.uri }
end
]=]):format(datafile)
end

local srv, port, datafile, data

local function connect()
  return assert(helper.connect(port))
end

local function get(path, headers, method, body)
  local h = {}
  for k, v in pairs(headers or {}) do h[k] = v end
  return assert(helper.request(port, method or "GET", path, h, body))
end

-- The request table the handler saw, decoded from /echo's body.
local function echo(headers, method, body, path)
  local res = get(path or "/echo", headers, method, body)
  assert.equal(200, res.status)
  return helper.decode(res.body)
end

-- Sends bytes on a new connection; returns the first response (or nil,
-- err) and the socket (the caller closes it).
local function send(bytes, method)
  local sock = connect()
  assert(sock:send(bytes))
  local res, err = helper.read_response(sock, method)
  return res, err, sock
end

local function status_of(bytes)
  local res, err, sock = send(bytes)
  sock:close()
  assert(res, "no response: " .. tostring(err))
  return res.status, res
end

local function assert_served()
  local res = assert(helper.request(port, "GET", "/string"))
  assert.equal(200, res.status)
  assert.equal("hello, world", res.body)
end

-- The status the core answers bad input with, after checking that another
-- connection is still served.
local function rejected(bytes)
  local status = status_of(bytes)
  assert_served()
  return status
end

local function stderr_grows(before)
  return helper.wait_until(function()
    return #srv:stderr() > before
  end)
end

local function header_names(res)
  local names = {}
  for _, pair in ipairs(res.header_list) do names[#names + 1] = pair[1] end
  return names
end

local function count_header(res, name)
  local n = 0
  for _, pair in ipairs(res.header_list) do
    if pair[1] == name then n = n + 1 end
  end
  return n
end

local WEEKDAYS = { Mon = true, Tue = true, Wed = true, Thu = true,
                   Fri = true, Sat = true, Sun = true }
local MONTHS = { Jan = true, Feb = true, Mar = true, Apr = true, May = true,
                 Jun = true, Jul = true, Aug = true, Sep = true, Oct = true,
                 Nov = true, Dec = true }

local function is_imf_fixdate(s)
  if type(s) ~= "string" then return false end
  local wd, day, mon, year, h, m, sec = s:match(
    "^(%a%a%a), (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  return wd ~= nil and WEEKDAYS[wd] and MONTHS[mon]
    and tonumber(day) >= 1 and tonumber(day) <= 31 and tonumber(year) >= 2000
    and tonumber(h) <= 23 and tonumber(m) <= 59 and tonumber(sec) <= 60
    or false
end

local function req11(path, extra)
  return "GET " .. path .. " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    .. (extra or "") .. "\r\n"
end

describe("ringlet HTTP core", function()
  lazy_setup(function()
    datafile = os.tmpname()
    local parts = {}
    for i = 1, DATA_SIZE / 10 do parts[i] = ("%09d\n"):format(i) end
    data = table.concat(parts)
    local f = assert(io.open(datafile, "wb"))
    f:write(data)
    f:close()
    srv = helper.start(app_source(datafile))
    port = srv.port
  end)

  lazy_teardown(function()
    if srv then
      local status = srv:stop()
      os.remove(datafile)
      assert.equal(0, status, "server exit status; stderr:\n" .. srv:stderr())
    end
  end)

  describe("the request table", function()
    it("has server_port set to the port the request arrived on", function()
      assert.equal(port, echo().server_port)
    end)

    it("keeps server_port the listening port whatever Host says", function()
      assert.equal(port, echo({ Host = "example.test:1234" }).server_port)
    end)

    it("has server_name set to the Host header without its port", function()
      assert.equal("example.test",
        echo({ Host = "example.test:1234" }).server_name)
    end)

    it("has server_name set to a Host header that has no port", function()
      assert.equal("example.test", echo({ Host = "example.test" }).server_name)
    end)

    it("has remote_addr set to the client's address", function()
      assert.equal("127.0.0.1", echo().remote_addr)
    end)

    it("has uri set to the path without the query", function()
      assert.equal("/echo", echo(nil, nil, nil, "/echo?a=1&b=2").uri)
    end)

    it("has query_string set to the query without the '?'", function()
      assert.equal("a=1&b=2",
        echo(nil, nil, nil, "/echo?a=1&b=2").query_string)
    end)

    it("has no query_string when the target has no query", function()
      assert.is_nil(echo().query_string)
    end)

    it("keeps percent-encoding in uri and query_string as sent", function()
      local req = echo(nil, nil, nil, "/echo?q=a%20b")
      assert.same({ "/echo", "q=a%20b" }, { req.uri, req.query_string })
    end)

    it("has scheme set to \"http\"", function()
      assert.equal("http", echo().scheme)
    end)

    it("has request_method \"get\" for a GET", function()
      assert.equal("get", echo().request_method)
    end)

    it("has request_method \"post\" for a POST", function()
      assert.equal("post", echo(nil, "POST", "x").request_method)
    end)

    it("has a lower-case request_method for PUT, DELETE, OPTIONS and PATCH",
      function()
        local seen = {}
        for _, m in ipairs({ "PUT", "DELETE", "OPTIONS", "PATCH" }) do
          seen[#seen + 1] = echo(nil, m, "x").request_method
        end
        assert.same({ "put", "delete", "options", "patch" }, seen)
      end)

    it("has protocol \"HTTP/1.1\" for an HTTP/1.1 request", function()
      assert.equal("HTTP/1.1", echo().protocol)
    end)

    it("has protocol \"HTTP/1.0\" for an HTTP/1.0 request", function()
      local res, err, sock = send("GET /echo HTTP/1.0\r\n\r\n")
      sock:close()
      assert(res, err)
      assert.equal("HTTP/1.0", helper.decode(res.body).protocol)
    end)

    it("has headers with lower-case names", function()
      local req = echo({ ["X-Mixed-Case"] = "v", ACCEPT = "text/plain" })
      assert.same({ "v", "text/plain" },
        { req.headers["x-mixed-case"], req.headers.accept })
    end)

    it("has only lower-case header names", function()
      local req = echo({ ["X-Mixed-Case"] = "v" })
      for name in pairs(req.headers) do
        assert.equal(name:lower(), name)
      end
    end)

    it("has the host header among the headers", function()
      assert.equal("example.test:1234",
        echo({ Host = "example.test:1234" }).headers.host)
    end)

    it("joins repeated headers with \", \" in the order received", function()
      local req = echo({ ["X-Multi"] = { "first", "second", "third" } })
      assert.equal("first, second, third", req.headers["x-multi"])
    end)

    it("strips whitespace around header values", function()
      local res = assert(select(1, send("GET /echo HTTP/1.1\r\n"
        .. "Host: h\r\nX-Space: \t padded value \t \r\nConnection: close\r\n"
        .. "\r\n")))
      assert.equal("padded value",
        helper.decode(res.body).headers["x-space"])
    end)

    it("keeps an empty header value as an empty string", function()
      local res = assert(select(1, send("GET /echo HTTP/1.1\r\n"
        .. "Host: h\r\nX-Empty:\r\nConnection: close\r\n\r\n")))
      assert.equal("", helper.decode(res.body).headers["x-empty"])
    end)

    it("has body set to the request body as a string", function()
      assert.equal("hello body", echo(nil, "POST", "hello body").body)
    end)

    it("keeps binary bytes in the body", function()
      local bin = "\0\1\2\255\r\n\0end"
      assert.equal(bin, echo(nil, "POST", bin).body)
    end)

    it("has no body for a GET without content", function()
      assert.is_nil(echo().body)
    end)

    it("has no body for a POST with Content-Length: 0", function()
      assert.is_nil(echo({ ["Content-Length"] = "0" }, "POST").body)
    end)

    it("has a falsy websocket for a plain request", function()
      assert.falsy(echo().websocket)
    end)

    it("has websocket true for a WebSocket upgrade request", function()
      local req = echo({
        Upgrade = "websocket", Connection = "Upgrade",
        ["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ==",
        ["Sec-WebSocket-Version"] = "13",
      })
      assert.is_true(req.websocket)
    end)

    it("has websocket true when Connection lists Upgrade among other options",
      function()
        local req = echo({
          Upgrade = "websocket", Connection = "keep-alive, Upgrade",
          ["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ==",
          ["Sec-WebSocket-Version"] = "13",
        })
        assert.is_true(req.websocket)
      end)

    it("has a falsy websocket for Upgrade without Connection: Upgrade",
      function()
        local req = echo({
          Upgrade = "websocket",
          ["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ==",
          ["Sec-WebSocket-Version"] = "13",
        })
        assert.falsy(req.websocket)
      end)

    it("takes server_name, uri and query from an absolute-form target",
      function()
        -- RFC 9112 3.2.2: an origin server MUST accept the absolute-form
        -- and MUST ignore Host in favour of the target's authority.
        local req = echo({ Host = "ignored.test" }, nil, nil,
          "http://example.test:8081/echo?x=1")
        assert.same({ "example.test", "/echo", "x=1" },
          { req.server_name, req.uri, req.query_string })
      end)
  end)

  describe("response bodies", function()
    it("sends a string body with a matching Content-Length", function()
      local res = get("/string")
      assert.same({ 200, "hello, world", "12" },
        { res.status, res.body, res.headers["content-length"] })
    end)

    it("answers 200 when the response has no status", function()
      local res = get("/default-status")
      assert.same({ 200, "no status given" }, { res.status, res.body })
    end)

    it("sends the items of an array body in turn", function()
      assert.equal("alpha-beta-gamma", get("/array").body)
    end)

    it("streams a file body whole", function()
      local res = get("/file")
      assert.equal(200, res.status)
      assert.equal(#data, #res.body)
      assert.is_true(res.body == data)
    end)

    it("sends a file from its position, no more than a content-length the "
      .. "handler gives (a Range answer), as a string or a number",
      function()
        for _, q in ipairs({ "10", "n10", "0", "n0" }) do
          local res = get("/file-part?" .. q)
          local n = tonumber((q:gsub("n", "")))
          assert.same({ 206, tostring(n), data:sub(101, 100 + n) },
            { res.status, res.headers["content-length"], res.body })
        end
        -- more than the file holds from there: the rest of the file
        local res = get("/file-part?" .. (#data * 2))
        assert.same({ tostring(#data - 100), data:sub(101) },
          { res.headers["content-length"], res.body })
      end)

    it("closes a file body after sending it", function()
      get("/file")
      assert.equal("closed file", get("/file-state").body)
    end)

    it("closes a file body refused with its 1xx status", function()
      assert.equal(500, get("/bad-status-102-file").status)
      assert.equal("closed file", get("/file-state").body)
    end)

    it("sends an iterator body with chunked encoding", function()
      local res = get("/iter")
      assert.equal("chunked", res.headers["transfer-encoding"])
    end)

    it("sends each value of an iterator body as one chunk", function()
      local res = get("/iter")
      assert.same({ "one", "two", "three" }, res.chunks)
    end)

    it("a large iterator body: the iterator stops while the client does "
      .. "not read, then the whole of it arrives in order", function()
      -- Pieces are written as soon as one is ready (as a string body's
      -- bytes are), yet the pump still waits for a socket that does not
      -- take them: 400 x 64 KiB are far more than loopback's buffers.
      local sock = connect()
      finally(function() sock:close() end)
      assert(sock:send(req11("/iter-big?400")))
      local calls
      for _ = 1, 50 do -- until the count stops growing
        socket.sleep(0.1)
        local now = tonumber(get("/iter-big-calls").body)
        if now > 0 and now == calls then break end
        calls = now
      end
      assert.is_true(calls > 0 and calls < 400, "calls " .. tostring(calls))
      local res = assert(helper.read_response(sock))
      assert.equal(400, #res.chunks)
      for i, chunk in ipairs(res.chunks) do
        if #chunk ~= 65536 or chunk:sub(1, #tostring(i) + 1) ~= i .. ";" then
          error(("chunk %d is not piece %d"):format(i, i))
        end
      end
    end)

    it("a large iterator body, then a pipelined request on the same "
      .. "connection", function()
      local sock = connect()
      finally(function() sock:close() end)
      assert(sock:send(req11("/iter-big?40") .. req11("/string")))
      local first = assert(helper.read_response(sock))
      assert.equal(40, #first.chunks)
      assert.equal(40 * 65536, #table.concat(first.chunks))
      local second = assert(helper.read_response(sock))
      assert.same({ 200, "hello, world" }, { second.status, second.body })
    end)

    it("a large iterator body to an HTTP/1.0 client: raw, ended by the "
      .. "close", function()
      local res, err, sock = send("GET /iter-big?40 HTTP/1.0\r\n\r\n")
      local closed = helper.closed(sock)
      sock:close()
      assert(res, err)
      assert.is_nil(res.headers["transfer-encoding"])
      assert.equal(40 * 65536, #res.body)
      assert.equal("40;", res.body:sub(-65536, -65534))
      assert.is_true(closed)
    end)

    it("sends no Content-Length with a chunked body", function()
      assert.is_nil(get("/iter").headers["content-length"])
    end)

    it("sends an iterator body to curl, which decodes it", function()
      local out, code = helper.curl("http://127.0.0.1:" .. port .. "/iter")
      assert.same({ "onetwothree", 0 }, { out, code })
    end)

    it("does not finish the chunked body when the iterator raises",
      function()
        -- The last chunk would tell the client the body is complete.
        local res, err, sock = send(req11("/iter-error"))
        local closed = res == nil and helper.closed(sock)
        sock:close()
        assert.is_nil(res, "a complete response for a broken body")
        assert.is_string(err)
        assert.is_true(closed)
      end)

    it("logs an iterator's error to stderr", function()
      local before = #srv:stderr()
      local _, _, sock = send(req11("/iter-error"))
      sock:close()
      assert.truthy(stderr_grows(before))
      assert.truthy(srv:stderr():sub(before + 1):find("iterator-broke", 1,
        true))
    end)

    it("sends an array header value as repeated header lines", function()
      local res = get("/cookies")
      local cookies = {}
      for _, pair in ipairs(res.header_list) do
        if pair[1] == "set-cookie" then cookies[#cookies + 1] = pair[2] end
      end
      assert.same({ "a=1; Path=/", "b=2; Path=/" }, cookies)
    end)

    it("serves a response that curl reads the same way", function()
      local out, code = helper.curl("http://127.0.0.1:" .. port .. "/string")
      assert.same({ "hello, world", 0 }, { out, code })
    end)

    it("sends a status outside the common set as it is, with its SP",
      function()
        -- RFC 9112 4: the SP after the status code is sent even without a
        -- reason phrase; read_response insists on it.
        assert.equal(599, get("/status?599").status)
      end)

    it("sends status 999, the highest allowed", function()
      assert.equal(999, get("/status?999").status)
    end)

    it("writes number header values as tostring does", function()
      local r = get("/number-headers")
      assert.equal(200, r.status)
      local n = 0
      for line in r.body:gmatch("[^\n]+") do
        local name, want = line:match("^([^=]+)=(.*)$")
        if name == "x-list" then
          -- an array header: one line each, in order
          local a, b = want:match("^(.-),(.*)$")
          local bytes = helper.raw(port, "GET /number-headers HTTP/1.1\r\n"
            .. "Host: h\r\nConnection: close\r\n\r\n")
          assert.truthy(bytes:find("\r\nx-list: " .. a .. "\r\nx-list: "
            .. b .. "\r\n", 1, true), bytes)
        else
          assert.equal(want, r.headers[name], name)
        end
        n = n + 1
      end
      assert.equal(13, n)
    end)

    it("reads a response table through its __index", function()
      local r = get("/indexed-response")
      assert.equal(201, r.status)
      assert.equal("from __index", r.body)
      assert.equal("index", r.headers["x-from"])
    end)

    it("names the header and what is wrong with it in the log", function()
      local cases = {
        { "/bad-header-boolean", "header 'x-flag' has a boolean value" },
        { "/bad-header-item", "header 'x-list' has a table value" },
        { "/bad-crlf-value", "header 'x-bad' value contains a control "
          .. "character" },
      }
      for _, case in ipairs(cases) do
        local before = #srv:stderr()
        assert.equal(500, get(case[1]).status)
        assert.truthy(stderr_grows(before))
        local log = srv:stderr():sub(before + 1)
        assert.truthy(log:find("bad response: " .. case[2], 1, true), log)
      end
    end)

    describe("an invalid response", function()
      local cases = {
        { "/bad-crlf-value", "a CR LF in a header value" },
        { "/bad-lf-value", "a bare LF in a header value" },
        { "/bad-cr-value", "a bare CR in a header value" },
        { "/bad-crlf-array-value", "a CR LF in an item of an array header" },
        { "/bad-crlf-name", "a CR LF in a header name" },
        { "/bad-header-boolean", "a boolean header value" },
        { "/bad-header-item", "a table in an array header value" },
        { "/bad-index-error-object", "__index raising a table" },
        { "/bad-status-0", "status 0" },
        { "/bad-status-99", "status 99" },
        { "/bad-status-1000", "status 1000" },
        -- a 1xx is interim: the client would wait on for the answer
        { "/bad-status-100", "status 100" },
        { "/bad-status-101-array", "status 101 and no channel" },
        { "/bad-status-199-iterator", "status 199 and an iterator body" },
        { "/bad-status-102-file", "status 102 and a file body" },
        { "/bad-status-abc", "status \"abc\"" },
        { "/bad-body-number", "a number body" },
        { "/bad-body-boolean", "a boolean body" },
        { "/no-response", "a handler returning nothing" },
      }
      for _, case in ipairs(cases) do
        local path, what = case[1], case[2]

        it("with " .. what .. " gives one well-formed 500", function()
          local bytes = helper.raw(port, "GET " .. path
            .. " HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
          local list, rest = helper.parse_responses(bytes)
          assert.equal(1, #list, "responses in: " .. bytes)
          assert.equal("", rest)
          assert.equal(500, list[1].status)
          assert.is_nil(list[1].bad_line_ending)
          assert.is_nil(list[1].headers.injected)
        end)

        it("with " .. what .. " logs an error", function()
          local before = #srv:stderr()
          assert.equal(500, get(path).status)
          assert.truthy(stderr_grows(before))
        end)

        it("with " .. what .. " leaves the server serving", function()
          get(path)
          assert_served()
        end)
      end
    end)
  end)

  describe("connections", function()
    it("serves two requests on one keep-alive connection", function()
      local sock = connect()
      finally(function() sock:close() end)
      local statuses = {}
      for i = 1, 2 do
        assert(sock:send(req11("/echo?n=" .. i)))
        local res = assert(helper.read_response(sock))
        statuses[i] = helper.decode(res.body).query_string
      end
      assert.same({ "n=1", "n=2" }, statuses)
    end)

    it("answers three pipelined requests in order", function()
      local sock = connect()
      finally(function() sock:close() end)
      assert(sock:send(req11("/echo?n=1") .. req11("/echo?n=2")
        .. req11("/echo?n=3")))
      local seen = {}
      for i = 1, 3 do
        local res = assert(helper.read_response(sock))
        seen[i] = helper.decode(res.body).query_string
      end
      assert.same({ "n=1", "n=2", "n=3" }, seen)
    end)

    it("answers pipelined requests with bodies in order", function()
      local sock = connect()
      finally(function() sock:close() end)
      local bytes = ""
      for i = 1, 3 do
        local body = ("body%d"):format(i)
        bytes = bytes .. "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: "
          .. #body .. "\r\n\r\n" .. body
      end
      assert(sock:send(bytes))
      local seen = {}
      for i = 1, 3 do
        seen[i] = helper.decode(assert(helper.read_response(sock)).body).body
      end
      assert.same({ "body1", "body2", "body3" }, seen)
    end)

    it("does not read a body the handler ignored as the next request",
      function()
        -- RFC 9112 9.3: the server reads the whole body (or closes).
        local sock = connect()
        finally(function() sock:close() end)
        local body = "GET /echo?smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
        assert(sock:send("POST /string HTTP/1.1\r\nHost: h\r\n"
          .. "Content-Length: " .. #body .. "\r\n\r\n" .. body
          .. req11("/echo?n=2")))
        assert.equal("hello, world", assert(helper.read_response(sock)).body)
        local second = assert(helper.read_response(sock))
        assert.equal("n=2", helper.decode(second.body).query_string)
      end)

    it("closes an HTTP/1.0 connection after the response", function()
      local res, err, sock = send("GET /string HTTP/1.0\r\n\r\n")
      finally(function() sock:close() end)
      assert(res, err)
      assert.equal(200, res.status)
      assert.is_true(helper.closed(sock))
    end)

    it("keeps an HTTP/1.0 connection open with Connection: keep-alive",
      function()
        local sock = connect()
        finally(function() sock:close() end)
        local req = "GET /string HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
        assert(sock:send(req))
        local first = assert(helper.read_response(sock))
        assert(sock:send(req))
        local second = assert(helper.read_response(sock))
        assert.same({ 200, 200 }, { first.status, second.status })
      end)

    it("reads the close option case-insensitively", function()
      local res, err, sock = send(req11("/string", "Connection: CLOSE\r\n"))
      finally(function() sock:close() end)
      assert(res, err)
      assert.is_true(helper.closed(sock))
    end)

    it("reads a POST without Content-Length or Transfer-Encoding as having "
      .. "no body", function()
        -- RFC 9112 6.3: the body length of such a request is zero, so the
        -- bytes that follow are the next request.
        local sock = connect()
        finally(function() sock:close() end)
        assert(sock:send("POST /echo HTTP/1.1\r\nHost: h\r\n\r\n"
          .. req11("/echo?next")))
        local first = helper.decode(assert(helper.read_response(sock)).body)
        local second = helper.decode(assert(helper.read_response(sock)).body)
        assert.same({ "post", nil, "next" }, { first.request_method,
          first.body, second.query_string })
      end)

    it("closes after answering a request with Connection: close", function()
      local res, err, sock = send(req11("/string", "Connection: close\r\n"))
      finally(function() sock:close() end)
      assert(res, err)
      assert.equal(200, res.status)
      assert.is_true(helper.closed(sock))
    end)

    it("sends Connection: close when the client asked to close", function()
      local res, err, sock = send(req11("/string", "Connection: close\r\n"))
      sock:close()
      assert(res, err)
      assert.equal("close", (res.headers.connection or ""):lower())
    end)

    it("does not answer a request pipelined after Connection: close",
      function()
        -- RFC 9112 9.6: no further requests are processed.
        local bytes = helper.raw(port,
          req11("/echo?n=1", "Connection: close\r\n") .. req11("/echo?n=2"))
        local list = helper.parse_responses(bytes)
        assert.equal(1, #list)
        assert.equal("n=1", helper.decode(list[1].body).query_string)
      end)

    it("sends headers only for HEAD, with the GET body's Content-Length",
      function()
        local sock = connect()
        finally(function() sock:close() end)
        assert(sock:send("HEAD /string HTTP/1.1\r\nHost: h\r\n\r\n"))
        local head = assert(helper.read_response(sock, "HEAD"))
        -- Any body bytes would be read as the next response's status line.
        assert(sock:send(req11("/echo?after-head")))
        local after = assert(helper.read_response(sock))
        assert.same({ 200, "12", "after-head" }, { head.status,
          head.headers["content-length"],
          helper.decode(after.body).query_string })
      end)

    it("sends no body bytes to HEAD for an iterator body", function()
      local sock = connect()
      finally(function() sock:close() end)
      assert(sock:send("HEAD /iter HTTP/1.1\r\nHost: h\r\n\r\n"
        .. req11("/echo?after-head")))
      local head = assert(helper.read_response(sock, "HEAD"))
      local after = assert(helper.read_response(sock))
      assert.same({ 200, "after-head" },
        { head.status, helper.decode(after.body).query_string })
    end)

    it("sends HEAD for a file body its size and no body bytes", function()
      local sock = connect()
      finally(function() sock:close() end)
      assert(sock:send("HEAD /file HTTP/1.1\r\nHost: h\r\n\r\n"
        .. req11("/echo?after-head")))
      local head = assert(helper.read_response(sock, "HEAD"))
      local after = assert(helper.read_response(sock))
      assert.same({ 200, tostring(#data), "after-head" }, { head.status,
        head.headers["content-length"],
        helper.decode(after.body).query_string })
    end)

    it("answers HEAD in a way curl -I accepts", function()
      local out, code = helper.curl("-I", "http://127.0.0.1:" .. port
        .. "/string")
      assert.equal(0, code)
      assert.truthy(out:find("^HTTP/1%.1 200"))
    end)

    it("sends 100 Continue before the final response to Expect: 100-continue",
      function()
        local sock = connect()
        finally(function() sock:close() end)
        assert(sock:send("POST /echo HTTP/1.1\r\nHost: h\r\n"
          .. "Content-Length: 5\r\nExpect: 100-continue\r\n\r\n"))
        local interim = assert(helper.read_response(sock))
        assert(sock:send("hello"))
        local final = assert(helper.read_response(sock))
        assert.same({ "HTTP/1.1", 100, 200, "hello" }, { interim.version,
          interim.status, final.status, helper.decode(final.body).body })
      end)

    it("sends 100 Continue without Content-Length or Transfer-Encoding",
      function()
        -- RFC 9110 8.6 and RFC 9112 6.1: neither in a 1xx response.
        local sock = connect()
        finally(function() sock:close() end)
        assert(sock:send("POST /echo HTTP/1.1\r\nHost: h\r\n"
          .. "Content-Length: 5\r\nExpect: 100-continue\r\n\r\n"))
        local interim = assert(helper.read_response(sock))
        assert.same({ 100, nil, nil }, { interim.status,
          interim.headers["content-length"],
          interim.headers["transfer-encoding"] })
      end)

    it("works with curl's Expect: 100-continue", function()
      local body = ("x"):rep(2000000)
      local file = os.tmpname()
      finally(function() os.remove(file) end)
      local f = assert(io.open(file, "wb"))
      f:write(body)
      f:close()
      local out, code = helper.curl("-H", "Expect: 100-continue",
        "--data-binary", "@" .. file, "-o", "/dev/null", "-w",
        "%{http_code}", "http://127.0.0.1:" .. port .. "/string")
      assert.same({ "200", 0 }, { out, code })
    end)

    it("ignores Expect: 100-continue in an HTTP/1.0 request", function()
      -- RFC 9110 10.1.1 and 15.2: no 1xx to an HTTP/1.0 client.
      local res, err, sock = send("POST /echo HTTP/1.0\r\nContent-Length: 5"
        .. "\r\nExpect: 100-continue\r\n\r\nhello")
      sock:close()
      assert(res, err)
      assert.same({ 200, "hello" },
        { res.status, helper.decode(res.body).body })
    end)

    it("decodes a chunked request body into body", function()
      local res, err, sock = send("POST /echo HTTP/1.1\r\nHost: h\r\n"
        .. "Transfer-Encoding: chunked\r\n\r\n"
        .. "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
      sock:close()
      assert(res, err)
      assert.equal("hello world", helper.decode(res.body).body)
    end)

    it("decodes upper-case hex chunk sizes", function()
      local res, err, sock = send("POST /echo HTTP/1.1\r\nHost: h\r\n"
        .. "Transfer-Encoding: chunked\r\n\r\n"
        .. "A\r\n0123456789\r\n0\r\n\r\n")
      sock:close()
      assert(res, err)
      assert.equal("0123456789", helper.decode(res.body).body)
    end)

    it("ignores chunk extensions", function()
      -- RFC 9112 7.1.1: a recipient MUST ignore unrecognized extensions.
      local res, err, sock = send("POST /echo HTTP/1.1\r\nHost: h\r\n"
        .. "Transfer-Encoding: chunked\r\n\r\n"
        .. "5;name=value\r\nhello\r\n0;last\r\n\r\n")
      sock:close()
      assert(res, err)
      assert.equal("hello", helper.decode(res.body).body)
    end)

    it("accepts a chunked request body with trailer fields", function()
      local sock = connect()
      finally(function() sock:close() end)
      assert(sock:send("POST /echo HTTP/1.1\r\nHost: h\r\n"
        .. "Transfer-Encoding: chunked\r\n\r\n"
        .. "5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n" .. req11("/echo?next")))
      local first = assert(helper.read_response(sock))
      local second = assert(helper.read_response(sock))
      assert.same({ "hello", "next" }, {
        helper.decode(first.body).body,
        helper.decode(second.body).query_string })
    end)

    it("takes a chunked body sent in several writes", function()
      local sock = connect()
      finally(function() sock:close() end)
      assert(sock:send("POST /echo HTTP/1.1\r\nHost: h\r\n"
        .. "Transfer-Encoding: chunked\r\n\r\n5\r\nhel"))
      assert(sock:send("lo\r\n3\r\n ab\r\n"))
      assert(sock:send("0\r\n\r\n"))
      local res = assert(helper.read_response(sock))
      assert.equal("hello ab", helper.decode(res.body).body)
    end)

    it("takes a request whose head arrives one byte at a time", function()
      local sock = connect()
      finally(function() sock:close() end)
      local bytes = req11("/echo?bytewise")
      for i = 1, #bytes do assert(sock:send(bytes:sub(i, i))) end
      local res = assert(helper.read_response(sock))
      assert.equal("bytewise", helper.decode(res.body).query_string)
    end)

    it("serves curl's chunked upload", function()
      local out, code = helper.curl("-H", "Transfer-Encoding: chunked",
        "--data-binary", "curl-body", "http://127.0.0.1:" .. port .. "/echo")
      assert.equal(0, code)
      assert.equal("curl-body", helper.decode(out).body)
    end)
  end)

  describe("a Lua error in a handler", function()
    it("gives a 500 for that request", function()
      assert.equal(500, get("/error").status)
    end)

    it("logs the error with a traceback to stderr", function()
      local before = #srv:stderr()
      get("/error")
      assert.truthy(stderr_grows(before))
      local log = srv:stderr():sub(before + 1)
      assert.truthy(log:find("handler-boom-marker", 1, true), log)
      assert.truthy(log:find("traceback", 1, true), log)
    end)

    it("leaves another open connection served", function()
      local other = connect()
      finally(function() other:close() end)
      assert(other:send(req11("/echo?before")))
      assert.equal(200, assert(helper.read_response(other)).status)
      assert.equal(500, get("/error").status)
      assert(other:send(req11("/echo?after")))
      local res = assert(helper.read_response(other))
      assert.same({ 200, "after" },
        { res.status, helper.decode(res.body).query_string })
    end)

    it("leaves a request half sent on another connection served",
      function()
        local other = connect()
        finally(function() other:close() end)
        local bytes = req11("/echo?split")
        assert(other:send(bytes:sub(1, 10)))
        assert.equal(500, get("/error").status)
        assert(other:send(bytes:sub(11)))
        local res = assert(helper.read_response(other))
        assert.equal("split", helper.decode(res.body).query_string)
      end)
  end)

  describe("RFC 9110 and RFC 9112 requirements", function()
    it("sends a Date header in IMF-fixdate format with a 200", function()
      local date = get("/string").headers.date
      assert.is_true(is_imf_fixdate(date), tostring(date))
    end)

    it("sends a Date header with a handler's 404", function()
      local res = get("/nowhere")
      assert.equal(404, res.status)
      assert.is_true(is_imf_fixdate(res.headers.date))
    end)

    it("sends a Date header with a 304", function()
      assert.is_true(is_imf_fixdate(get("/304").headers.date))
    end)

    it("sends a Date header with a chunked response", function()
      assert.is_true(is_imf_fixdate(get("/iter").headers.date))
    end)

    it("sends a Date header with the core's 400", function()
      local _, res = status_of("GET / HTTP/1.1\r\n\r\n")
      assert.is_true(is_imf_fixdate(res.headers.date))
    end)

    it("sends a Date header with a 500", function()
      assert.is_true(is_imf_fixdate(get("/error").headers.date))
    end)

    it("sends one Date header per response", function()
      assert.equal(1, count_header(get("/string"), "date"))
    end)

    it("answers with HTTP/1.1 in the status line", function()
      assert.equal("HTTP/1.1", get("/string").version)
    end)

    it("ends every head line with CRLF", function()
      local res = get("/cookies")
      assert.is_nil(res.bad_line_ending)
    end)

    it("answers 400 to an HTTP/1.1 request without Host", function()
      assert.equal(400, (rejected("GET /string HTTP/1.1\r\n\r\n")))
    end)

    it("answers an HTTP/1.0 request without Host", function()
      local res, err, sock = send("GET /string HTTP/1.0\r\n\r\n")
      sock:close()
      assert(res, err)
      assert.equal(200, res.status)
    end)

    it("answers 400 to a request with two Host headers", function()
      assert.equal(400, (rejected("GET /string HTTP/1.1\r\nHost: a\r\n"
        .. "Host: b\r\n\r\n")))
    end)

    it("answers 400 to a Host header with an invalid value", function()
      assert.equal(400, (rejected("GET /string HTTP/1.1\r\n"
        .. "Host: bad host\r\n\r\n")))
    end)

    it("answers 400 to whitespace between a header name and its colon",
      function()
        assert.equal(400, (rejected("GET /string HTTP/1.1\r\nHost: h\r\n"
          .. "X-Space : v\r\n\r\n")))
      end)

    it("answers 400 to a header name with a character outside tchar",
      function()
        assert.equal(400, (rejected("GET /string HTTP/1.1\r\nHost: h\r\n"
          .. "X(Bad)Name: v\r\n\r\n")))
      end)

    it("answers 400 to a header line without a colon", function()
      assert.equal(400, (rejected("GET /string HTTP/1.1\r\nHost: h\r\n"
        .. "NoColonHere\r\n\r\n")))
    end)

    it("answers 400 to an empty header name", function()
      assert.equal(400, (rejected("GET /string HTTP/1.1\r\nHost: h\r\n"
        .. ": value\r\n\r\n")))
    end)

    it("either rejects obs-fold or unfolds it into spaces", function()
      -- RFC 9112 5.2: 400, or replace each obs-fold with SP.
      local res, err, sock = send("GET /echo HTTP/1.1\r\nHost: h\r\n"
        .. "X-Fold: first\r\n  second\r\nConnection: close\r\n\r\n")
      sock:close()
      assert(res, err)
      if res.status ~= 400 then
        assert.equal(200, res.status)
        local value = helper.decode(res.body).headers["x-fold"]
        assert.is_string(value)
        assert.is_nil(value:find("[\r\n]"))
        assert.truthy(value:find("^first +second$"), value)
      end
    end)

    it("either rejects a bare CR in a header value or makes it a space",
      function()
        -- RFC 9112 2.2 and RFC 9110 5.5.
        local res, err, sock = send("GET /echo HTTP/1.1\r\nHost: h\r\n"
          .. "X-Cr: a\rb\r\nConnection: close\r\n\r\n")
        sock:close()
        assert(res, err)
        if res.status ~= 400 then
          assert.equal(200, res.status)
          local value = helper.decode(res.body).headers["x-cr"]
          assert.is_nil(value:find("[\r\n]"), value)
        end
      end)

    it("either rejects a NUL in a header value or makes it a space",
      function()
        -- RFC 9110 5.5: reject, or replace with SP before processing.
        local res, err, sock = send("GET /echo HTTP/1.1\r\nHost: h\r\n"
          .. "X-Nul: a\0b\r\nConnection: close\r\n\r\n")
        sock:close()
        assert(res, err)
        if res.status ~= 400 then
          assert.equal(200, res.status)
          local value = helper.decode(res.body).headers["x-nul"]
          assert.is_nil(value:find("%z"), value)
        end
      end)

    it("either rejects bare LF line endings or reads them as CRLF",
      function()
        -- RFC 9112 2.2: a recipient MAY take a single LF as a line end.
        local res, err, sock = send("GET /echo?lf HTTP/1.1\nHost: h\n"
          .. "X-Lf: v\nConnection: close\n\n")
        sock:close()
        assert(res, err)
        if res.status ~= 400 then
          assert.equal(200, res.status)
          local req = helper.decode(res.body)
          assert.same({ "lf", "v" }, { req.query_string, req.headers["x-lf"] })
        end
      end)

    it("never lets a header line that starts with whitespace after the "
      .. "request line reach the handler", function()
        -- RFC 9112 2.2: reject, or consume such lines without processing.
        local res, err, sock = send("GET /echo HTTP/1.1\r\n X-Evil: 1\r\n"
          .. "Host: h\r\nConnection: close\r\n\r\n")
        sock:close()
        assert(res, err)
        if res.status ~= 400 then
          assert.equal(200, res.status)
          assert.is_nil(helper.decode(res.body).headers["x-evil"])
        end
      end)

    it("ignores an empty line before the request line", function()
      -- RFC 9112 2.2: a server SHOULD ignore at least one leading CRLF.
      local res, err, sock = send("\r\n" .. req11("/string",
        "Connection: close\r\n"))
      sock:close()
      assert(res, err)
      assert.equal(200, res.status)
    end)

    it("answers 400 and closes an HTTP/1.0 request with Transfer-Encoding",
      function()
        -- RFC 9112 6.1: the framing is faulty; close after responding.
        local res, err, sock = send("POST /echo HTTP/1.0\r\n"
          .. "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        finally(function() sock:close() end)
        assert(res, err)
        assert.equal(400, res.status)
        assert.is_true(helper.closed(sock))
      end)

    it("answers 501 to an unknown transfer coding", function()
      -- RFC 9112 6.1: SHOULD respond with 501 (Not Implemented).
      assert.equal(501, (rejected("POST /echo HTTP/1.1\r\nHost: h\r\n"
        .. "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n")))
    end)

    it("answers 400 when chunked is not the final transfer coding",
      function()
        -- RFC 9112 6.3: MUST respond 400 and close the connection.
        local res, err, sock = send("POST /echo HTTP/1.1\r\nHost: h\r\n"
          .. "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n")
        finally(function() sock:close() end)
        assert(res, err)
        assert.equal(400, res.status)
        assert.is_true(helper.closed(sock))
      end)

    it("answers 400 to an invalid Content-Length and closes", function()
      -- RFC 9112 6.3: MUST respond 400 and close the connection.
      local res, err, sock = send("POST /echo HTTP/1.1\r\nHost: h\r\n"
        .. "Content-Length: abc\r\n\r\n")
      finally(function() sock:close() end)
      assert(res, err)
      assert.equal(400, res.status)
      assert.is_true(helper.closed(sock))
    end)

    it("answers 400 to a negative Content-Length", function()
      assert.equal(400, (rejected("POST /echo HTTP/1.1\r\nHost: h\r\n"
        .. "Content-Length: -1\r\n\r\n")))
    end)

    it("answers 400 to a Content-Length with a sign", function()
      assert.equal(400, (rejected("POST /echo HTTP/1.1\r\nHost: h\r\n"
        .. "Content-Length: +5\r\n\r\nhello")))
    end)

    it("rejects a Content-Length too large for any integer", function()
      -- RFC 9110 8.6: parse large numbers without overflow.
      local status = rejected("POST /echo HTTP/1.1\r\nHost: h\r\n"
        .. "Content-Length: 99999999999999999999999999\r\n\r\n")
      assert.is_true(status == 400 or status == 413, tostring(status))
    end)

    it("rejects a chunk size too large for any integer", function()
      local status = rejected("POST /echo HTTP/1.1\r\nHost: h\r\n"
        .. "Transfer-Encoding: chunked\r\n\r\n"
        .. "fffffffffffffffffffffff\r\nabc\r\n")
      assert.is_true(status == 400 or status == 413, tostring(status))
    end)

    it("answers 400 to a malformed chunk size", function()
      assert.equal(400, (rejected("POST /echo HTTP/1.1\r\nHost: h\r\n"
        .. "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")))
    end)

    it("answers 505 to HTTP/2.0", function()
      assert.equal(505, (rejected("GET /string HTTP/2.0\r\nHost: h\r\n\r\n")))
    end)

    it("answers 505 to HTTP/3.0", function()
      assert.equal(505, (rejected("GET /string HTTP/3.0\r\nHost: h\r\n\r\n")))
    end)

    it("answers 400 to a lower-case HTTP version", function()
      -- RFC 9112 2.3: HTTP-version is case-sensitive.
      assert.equal(400, (rejected("GET /string http/1.1\r\nHost: h\r\n\r\n")))
    end)

    it("answers HTTP/1.2 as HTTP/1.1", function()
      -- RFC 9110 2.5: a higher minor version SHOULD be processed as the
      -- highest minor version implemented.
      local res, err, sock = send("GET /string HTTP/1.2\r\nHost: h\r\n"
        .. "Connection: close\r\n\r\n")
      sock:close()
      assert(res, err)
      assert.same({ 200, "HTTP/1.1" }, { res.status, res.version })
    end)

    it("answers 501 to an unknown method", function()
      -- RFC 9110 9.1: an unrecognized method SHOULD get 501.
      assert.equal(501, (rejected("FOO /string HTTP/1.1\r\nHost: h\r\n\r\n")))
    end)

    it("treats method names as case-sensitive", function()
      -- RFC 9110 9.1: "get" is not GET.
      assert.equal(501, (rejected("get /string HTTP/1.1\r\nHost: h\r\n\r\n")))
    end)

    it("answers 400 to whitespace inside the request target", function()
      assert.equal(400, (rejected("GET /a b HTTP/1.1\r\nHost: h\r\n\r\n")))
    end)

    it("answers 400 or 505 to a request line without a version", function()
      -- Invalid in RFC 9112 (400); also the HTTP/0.9 form (505).
      local status = rejected("GET /string\r\nHost: h\r\n\r\n")
      assert.is_true(status == 400 or status == 505, tostring(status))
    end)

    it("answers 400 to a request line with a word after the version",
      function()
        -- RFC 9112 3: an invalid request-line SHOULD get 400.
        assert.equal(400, (rejected("GET /string HTTP/1.1 extra\r\n"
          .. "Host: h\r\n\r\n")))
      end)

    it("answers 400, not 501, to a request line that is not HTTP at all",
      function()
        -- "this" is a token, but the line is no request-line: 501 is for a
        -- well-formed request with a method the server does not know.
        assert.equal(400, (rejected("this is not http\r\n\r\n")))
      end)

    it("answers a CONNECT request with a well-formed response", function()
      local status = rejected("CONNECT example.test:443 HTTP/1.1\r\n"
        .. "Host: example.test:443\r\n\r\n")
      assert.is_true(status >= 200 and status <= 599)
    end)

    it("sends an iterator body raw to an HTTP/1.0 client and closes",
      function()
        local bytes, closed = helper.raw(port, "GET /iter HTTP/1.0\r\n\r\n")
        local list = helper.parse_responses(bytes)
        assert.equal(1, #list)
        assert.same({ 200, "onetwothree", true, true },
          { list[1].status, list[1].body, list[1].closed, closed })
      end)

    it("sends no Transfer-Encoding to an HTTP/1.0 client", function()
      local bytes = helper.raw(port, "GET /iter HTTP/1.0\r\n\r\n")
      local list = helper.parse_responses(bytes)
      assert.equal(1, #list)
      assert.is_nil(list[1].headers["transfer-encoding"])
    end)

    it("sends neither body nor Content-Length with a 204", function()
      local sock = connect()
      finally(function() sock:close() end)
      assert(sock:send(req11("/204") .. req11("/echo?after")))
      local res = assert(helper.read_response(sock))
      local after = assert(helper.read_response(sock))
      assert.same({ 204, nil, "after" }, { res.status,
        res.headers["content-length"], helper.decode(after.body).query_string })
    end)

    it("sends no Transfer-Encoding with a 204", function()
      local sock = connect()
      finally(function() sock:close() end)
      assert(sock:send(req11("/204")))
      local res = assert(helper.read_response(sock))
      assert.is_nil(res.headers["transfer-encoding"])
    end)

    it("drops a body a handler gave to a 204", function()
      local sock = connect()
      finally(function() sock:close() end)
      assert(sock:send(req11("/204-with-body") .. req11("/echo?after")))
      local res = assert(helper.read_response(sock))
      local after = assert(helper.read_response(sock))
      assert.same({ 204, nil, "after" }, { res.status,
        res.headers["content-length"], helper.decode(after.body).query_string })
    end)

    it("sends no body with a 304", function()
      local sock = connect()
      finally(function() sock:close() end)
      assert(sock:send(req11("/304") .. req11("/echo?after")))
      local res = assert(helper.read_response(sock))
      local after = assert(helper.read_response(sock))
      assert.same({ 304, "after" },
        { res.status, helper.decode(after.body).query_string })
    end)

    it("drops a body a handler gave to a 304", function()
      local sock = connect()
      finally(function() sock:close() end)
      assert(sock:send(req11("/304-with-body") .. req11("/echo?after")))
      local res = assert(helper.read_response(sock))
      local after = assert(helper.read_response(sock))
      assert.same({ 304, "after" },
        { res.status, helper.decode(after.body).query_string })
    end)

    it("sends Connection: close with the core's 400", function()
      local res, err, sock = send("GET / HTTP/1.1\r\n\r\n")
      sock:close()
      assert(res, err)
      assert.equal(400, res.status)
      assert.equal("close", (res.headers.connection or ""):lower())
    end)

    it("closes the connection after the core's 400", function()
      local res, err, sock = send("GET / HTTP/1.1\r\n\r\n")
      finally(function() sock:close() end)
      assert(res, err)
      assert.is_true(helper.closed(sock))
    end)

    it("sends Connection: close with the core's 501", function()
      local res, err, sock = send("FOO / HTTP/1.1\r\nHost: h\r\n\r\n")
      finally(function() sock:close() end)
      assert(res, err)
      assert.equal("close", (res.headers.connection or ""):lower())
      assert.is_true(helper.closed(sock))
    end)

    it("sends a well-formed error response with a consistent length",
      function()
        local bytes = helper.raw(port, "GET / HTTP/1.1\r\n\r\n")
        local list, rest = helper.parse_responses(bytes)
        assert.same({ 1, "" }, { #list, rest })
      end)

    it("does not send the header names twice", function()
      local seen = {}
      for _, name in ipairs(header_names(get("/string"))) do
        assert.is_nil(seen[name], name)
        seen[name] = true
      end
    end)
  end)

  describe("after bad input", function()
    local bad = {
      { "garbage bytes", "\1\2\3 garbage\r\n\r\n" },
      { "a request without Host", "GET / HTTP/1.1\r\n\r\n" },
      { "two Host headers", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" },
      { "a space before a colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n" },
      { "an invalid header name",
        "GET / HTTP/1.1\r\nHost: h\r\nA@B: c\r\n\r\n" },
      { "HTTP/1.0 with Transfer-Encoding", "POST / HTTP/1.0\r\n"
        .. "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" },
      { "an unknown transfer coding", "POST / HTTP/1.1\r\nHost: h\r\n"
        .. "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" },
      { "HTTP/2.0", "GET / HTTP/2.0\r\nHost: h\r\n\r\n" },
      { "an unknown method", "FOO / HTTP/1.1\r\nHost: h\r\n\r\n" },
      { "a bad chunk size", "POST / HTTP/1.1\r\nHost: h\r\n"
        .. "Transfer-Encoding: chunked\r\n\r\nzz\r\n" },
      { "a CONNECT request", "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n" },
      { "a truncated request", "GET / HTTP/1.1\r\nHost: h\r\nX-" },
      { "a NUL in the request line", "GET /\0 HTTP/1.1\r\nHost: h\r\n\r\n" },
    }
    for _, case in ipairs(bad) do
      it("with " .. case[1] .. " the server still serves another connection",
        function()
          local sock = connect()
          assert(sock:send(case[2]))
          sock:shutdown("send")
          helper.read_response(sock)
          sock:close()
          assert_served()
        end)
    end

    it("with a client that resets the connection the server still serves",
      function()
        local sock = connect()
        assert(sock:send("POST /echo HTTP/1.1\r\nHost: h\r\n"
          .. "Content-Length: 100\r\n\r\npartial"))
        sock:setoption("linger", { on = true, timeout = 0 })
        sock:close()
        assert_served()
      end)

    it("with a client that closes before reading the response the server "
      .. "still serves", function()
        local sock = connect()
        assert(sock:send(req11("/file")))
        sock:close()
        assert_served()
      end)
  end)
end)
