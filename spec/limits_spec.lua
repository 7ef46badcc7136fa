-- Request limits (max_body, max_line, queue_size), message framing errors
-- and the header and idle timeouts. Each describe block starts one server
-- with the options it tests.

local helper = require "helper"

-- The app: /echo returns the request table serialized, /string a fixed
-- body, /slow touches `marker` (when given) and sleeps `ms` (query) in
-- ringlet.sleep steps.
local function app_source(options)
  return helper.SERIALIZER .. ([=[
local ringlet = require "ringlet"
local options = %s

local function handler(req)
  if req.uri == "/echo" then
    return { status = 200, body = serialize(req) }
  elseif req.uri == "/slow" then
    local marker, ms = (req.query_string or ""):match("^(.-),(%%d+)$")
    if marker and marker ~= "" then
      local f = io.open(marker, "w")
      if f then f:close() end
    end
    ringlet.sleep(tonumber(ms) or 300)
    return { status = 200, body = "slept" }
  end
  return { status = 200, body = "hello, world" }
end

return { handler = handler, options = options }
]=]):format(options)
end

local function start(options)
  return helper.start(app_source(options))
end

local function stop(srv)
  if srv then
    local status = srv:stop()
    assert.equal(0, status, "server exit status; stderr:\n" .. srv:stderr())
  end
end

local function send(port, bytes)
  local sock = assert(helper.connect(port))
  assert(sock:send(bytes))
  local res, err = helper.read_response(sock)
  return res, err, sock
end

local function status_of(port, bytes)
  local res, err, sock = send(port, bytes)
  sock:close()
  assert(res, "no response: " .. tostring(err))
  return res.status, res
end

local function assert_served(port)
  local res = assert(helper.request(port, "GET", "/string"))
  assert.equal(200, res.status)
  assert.equal("hello, world", res.body)
end

-- The status the core answers bad input with, after checking that another
-- connection is still served.
local function rejected(port, bytes)
  local status = status_of(port, bytes)
  assert_served(port)
  return status
end

local function post(path, headers, body)
  local lines = { "POST " .. path .. " HTTP/1.1", "Host: h" }
  for _, h in ipairs(headers) do lines[#lines + 1] = h end
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")
end

local function chunked(parts)
  local out = {}
  for _, p in ipairs(parts) do
    out[#out + 1] = ("%x\r\n%s\r\n"):format(#p, p)
  end
  return table.concat(out) .. "0\r\n\r\n"
end

describe("ringlet limits", function()
  describe("with default options", function()
    local srv, port

    lazy_setup(function()
      srv = start("nil")
      port = srv.port
    end)

    lazy_teardown(function() stop(srv) end)

    it("answers 413 to a Content-Length over 8388608", function()
      assert.equal(413, (rejected(port, post("/echo",
        { "Content-Length: 8388609" }))))
    end)

    it("accepts a body of exactly 8388608 bytes", function()
      local body = ("b"):rep(8388608)
      local res, err, sock = send(port, post("/string",
        { "Content-Length: " .. #body }, body))
      sock:close()
      assert(res, err)
      assert.equal(200, res.status)
    end)

    it("answers 414 to a request line longer than 4096 bytes", function()
      local path = "/" .. ("p"):rep(5000)
      assert.equal(414, (rejected(port, "GET " .. path
        .. " HTTP/1.1\r\nHost: h\r\n\r\n")))
    end)

    it("serves a request line well under 4096 bytes", function()
      local path = "/string?" .. ("q"):rep(3500)
      assert.equal(200, (status_of(port, "GET " .. path
        .. " HTTP/1.1\r\nHost: h\r\n\r\n")))
    end)

    it("answers 431 to a header line longer than 4096 bytes", function()
      assert.equal(431, (rejected(port, "GET /string HTTP/1.1\r\nHost: h\r\n"
        .. "X-Long: " .. ("v"):rep(5000) .. "\r\n\r\n")))
    end)

    it("answers 431 to a header name longer than 4096 bytes", function()
      assert.equal(431, (rejected(port, "GET /string HTTP/1.1\r\nHost: h\r\n"
        .. ("X"):rep(5000) .. ": v\r\n\r\n")))
    end)

    it("serves a header line well under 4096 bytes", function()
      assert.equal(200, (status_of(port, "GET /string HTTP/1.1\r\nHost: h\r\n"
        .. "X-Long: " .. ("v"):rep(3500) .. "\r\n\r\n")))
    end)

    it("answers 400 to a malformed request", function()
      -- The start of a TLS ClientHello, a common stray.
      assert.equal(400, (rejected(port,
        "\22\3\1\0\165\1\0\0\161\3\3\r\n\r\n")))
    end)

    it("answers 400 to both Content-Length and Transfer-Encoding", function()
      assert.equal(400, (rejected(port, post("/echo", {
        "Content-Length: 5", "Transfer-Encoding: chunked" },
        "0\r\n\r\n"))))
    end)

    it("does not answer a request smuggled behind Content-Length and "
      .. "Transfer-Encoding", function()
        local smuggled = "GET /echo?smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
        local bytes, closed = helper.raw(port, post("/echo", {
          "Content-Length: " .. (5 + #smuggled),
          "Transfer-Encoding: chunked" }, "0\r\n\r\n" .. smuggled))
        local list = helper.parse_responses(bytes)
        assert.same({ 1, 400, true },
          { #list, list[1] and list[1].status, closed })
      end)

    it("does not answer a request smuggled behind Transfer-Encoding and "
      .. "Content-Length in the other order", function()
        local smuggled = "GET /echo?smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
        local bytes, closed = helper.raw(port, post("/echo", {
          "Transfer-Encoding: chunked",
          "Content-Length: " .. (5 + #smuggled) }, "0\r\n\r\n" .. smuggled))
        local list = helper.parse_responses(bytes)
        assert.same({ 1, 400, true },
          { #list, list[1] and list[1].status, closed })
      end)

    it("answers 400 to two different Content-Length headers", function()
      assert.equal(400, (rejected(port, post("/echo", {
        "Content-Length: 5", "Content-Length: 6" }, "hello!"))))
    end)

    it("answers 400 to a Content-Length list with different values",
      function()
        assert.equal(400, (rejected(port, post("/echo", {
          "Content-Length: 5, 6" }, "hello!"))))
      end)

    it("closes the connection after a 400 for conflicting lengths",
      function()
        local res, err, sock = send(port, post("/echo", {
          "Content-Length: 5", "Content-Length: 6" }, "hello!"))
        finally(function() sock:close() end)
        assert(res, err)
        assert.is_true(helper.closed(sock))
      end)

    it("answers 400 to Transfer-Encoding sent twice with chunked twice",
      function()
        -- chunked applied twice (RFC 9112 6.1: MUST NOT apply it more than
        -- once); the length is not reliably known.
        assert.equal(400, (rejected(port, post("/echo", {
          "Transfer-Encoding: chunked", "Transfer-Encoding: chunked" },
          "0\r\n\r\n"))))
      end)

    for _, case in ipairs({
      { "a Content-Length over max_body", post("/echo",
        { "Content-Length: 8388609" }) },
      { "a request line over max_line", "GET /" .. ("p"):rep(5000)
        .. " HTTP/1.1\r\nHost: h\r\n\r\n" },
      { "a header line over max_line", "GET / HTTP/1.1\r\nHost: h\r\nX: "
        .. ("v"):rep(5000) .. "\r\n\r\n" },
      { "a malformed request", "\22\3\1\0\165\1\0\0\161\3\3\r\n\r\n" },
      { "both Content-Length and Transfer-Encoding", post("/echo",
        { "Content-Length: 5", "Transfer-Encoding: chunked" }, "0\r\n\r\n") },
      { "two Content-Lengths", post("/echo",
        { "Content-Length: 5", "Content-Length: 6" }, "hello!") },
    }) do
      it("still serves another connection after " .. case[1], function()
        status_of(port, case[2])
        assert_served(port)
      end)
    end
  end)

  describe("with max_body = 1024 and max_line = 256", function()
    local srv, port

    lazy_setup(function()
      srv = start("{ max_body = 1024, max_line = 256 }")
      port = srv.port
    end)

    lazy_teardown(function() stop(srv) end)

    it("accepts a body of exactly max_body bytes", function()
      local body = ("x"):rep(1024)
      local res, err, sock = send(port, post("/echo",
        { "Content-Length: 1024" }, body))
      sock:close()
      assert(res, err)
      assert.equal(200, res.status)
      assert.equal(body, helper.decode(res.body).body)
    end)

    it("answers 413 to a Content-Length of max_body + 1", function()
      assert.equal(413, (rejected(port, post("/echo",
        { "Content-Length: 1025" }))))
    end)

    it("answers 413 to a client still sending a body over max_body",
      function()
        -- The response must reach a client that is still writing (a
        -- server that closes with unread data makes the peer's TCP reset
        -- discard it).
        local body = ("x"):rep(256 * 1024)
        local sock = assert(helper.connect(port))
        finally(function() sock:close() end)
        assert(sock:send(post("/echo", { "Content-Length: " .. #body })))
        sock:send(body)
        local res, err = helper.read_response(sock)
        assert(res, err)
        assert.equal(413, res.status)
      end)

    it("accepts a chunked body of exactly max_body bytes", function()
      local res, err, sock = send(port, post("/echo",
        { "Transfer-Encoding: chunked" },
        chunked({ ("a"):rep(512), ("b"):rep(512) })))
      sock:close()
      assert(res, err)
      assert.equal(1024, #helper.decode(res.body).body)
    end)

    it("answers 413 to a chunked body over max_body", function()
      assert.equal(413, (rejected(port, post("/echo",
        { "Transfer-Encoding: chunked" },
        chunked({ ("a"):rep(800), ("b"):rep(800) })))))
    end)

    it("answers 413 to a chunked body whose first chunk is over max_body",
      function()
        -- Only the chunk size line: the core must not wait for the data.
        assert.equal(413, (rejected(port, post("/echo",
          { "Transfer-Encoding: chunked" }, "100000\r\n"))))
      end)

    it("closes the connection after a 413", function()
      local res, err, sock = send(port, post("/echo",
        { "Content-Length: 5000" }))
      finally(function() sock:close() end)
      assert(res, err)
      assert.equal(413, res.status)
      assert.is_true(helper.closed(sock))
    end)

    it("answers 414 to a request line longer than max_line", function()
      assert.equal(414, (rejected(port, "GET /" .. ("p"):rep(400)
        .. " HTTP/1.1\r\nHost: h\r\n\r\n")))
    end)

    it("answers 431 to a header line longer than max_line", function()
      assert.equal(431, (rejected(port, "GET / HTTP/1.1\r\nHost: h\r\n"
        .. "X-Long: " .. ("v"):rep(400) .. "\r\n\r\n")))
    end)

    it("serves a request whose lines are all under max_line", function()
      assert.equal(200, (status_of(port, "GET /" .. ("p"):rep(100)
        .. " HTTP/1.1\r\nHost: h\r\nX-Long: " .. ("v"):rep(100)
        .. "\r\n\r\n")))
    end)

    it("answers 414 to a request line over max_line sent in pieces",
      function()
        local sock = assert(helper.connect(port))
        finally(function() sock:close() end)
        assert(sock:send("GET /"))
        for _ = 1, 10 do assert(sock:send(("p"):rep(50))) end
        assert(sock:send(" HTTP/1.1\r\nHost: h\r\n\r\n"))
        local res, err = helper.read_response(sock)
        assert(res, err)
        assert.equal(414, res.status)
      end)

    it("still serves another connection after a 413 and a 414", function()
      status_of(port, post("/echo", { "Content-Length: 1025" }))
      status_of(port, "GET /" .. ("p"):rep(400) .. " HTTP/1.1\r\n\r\n")
      assert_served(port)
    end)
  end)

  describe("with queue_size = 1", function()
    local srv, port

    lazy_setup(function()
      srv = start("{ queue_size = 1 }")
      port = srv.port
    end)

    lazy_teardown(function() stop(srv) end)

    it("answers 503 to a request beyond the queue", function()
      local marker = helper.marker_path()
      local first = assert(helper.connect(port))
      finally(function()
        first:close()
        os.remove(marker)
      end)
      assert(first:send("GET /slow?" .. marker .. ",300 HTTP/1.1\r\n"
        .. "Host: h\r\n\r\n"))
      assert.truthy(helper.wait_until(function() return helper.exists(marker) end))
      local second = assert(helper.request(port, "GET", "/string"))
      local res = assert(helper.read_response(first))
      assert.same({ 503, 200 }, { second.status, res.status })
    end)

    it("serves again once the queue has drained", function()
      local marker = helper.marker_path()
      local first = assert(helper.connect(port))
      finally(function()
        first:close()
        os.remove(marker)
      end)
      assert(first:send("GET /slow?" .. marker .. ",300 HTTP/1.1\r\n"
        .. "Host: h\r\n\r\n"))
      assert.truthy(helper.wait_until(function() return helper.exists(marker) end))
      helper.request(port, "GET", "/string")
      assert(helper.read_response(first))
      assert_served(port)
    end)
  end)

  describe("with header_timeout = 200 and idle_timeout = 300", function()
    local srv, port

    lazy_setup(function()
      srv = start("{ header_timeout = 200, idle_timeout = 300 }")
      port = srv.port
    end)

    lazy_teardown(function() stop(srv) end)

    it("closes a connection that sent half a request line", function()
      local sock = assert(helper.connect(port))
      finally(function() sock:close() end)
      assert(sock:send("GET /str"))
      assert.is_true(helper.closed(sock))
    end)

    it("closes a connection that stops in the middle of the headers",
      function()
        local sock = assert(helper.connect(port))
        finally(function() sock:close() end)
        assert(sock:send("GET /string HTTP/1.1\r\nHost: h\r\nX-Part"))
        assert.is_true(helper.closed(sock))
      end)

    it("closes a connection that trickles its head a byte at a time",
      function()
        -- header_timeout bounds the whole head, not the gap between bytes.
        local sock = assert(helper.connect(port))
        finally(function() sock:close() end)
        sock:settimeout(0.05)
        local bytes = "GET /string HTTP/1.1\r\nHost: h\r\nX-Slow: "
          .. ("s"):rep(10000)
        local sent = 0
        local closed = helper.wait_until(function()
          local _, err = sock:receive(1)
          if err == "closed" then return true end
          if sent < #bytes then
            sent = sent + 1
            -- A send error means the server has closed (or reset) it.
            if not sock:send(bytes:sub(sent, sent)) then return true end
          end
          return false
        end)
        assert.truthy(closed)
      end)

    it("closes a connection that never sends a byte", function()
      local sock = assert(helper.connect(port))
      finally(function() sock:close() end)
      assert.is_true(helper.closed(sock))
    end)

    it("closes an idle keep-alive connection", function()
      local sock = assert(helper.connect(port))
      finally(function() sock:close() end)
      assert(sock:send("GET /string HTTP/1.1\r\nHost: h\r\n\r\n"))
      local res = assert(helper.read_response(sock))
      assert.equal(200, res.status)
      assert.is_true(helper.closed(sock))
    end)

    it("answers a handler that runs longer than idle_timeout", function()
      local res, err, sock = send(port, "GET /slow?,900 HTTP/1.1\r\n"
        .. "Host: h\r\n\r\n")
      sock:close()
      assert(res, err)
      assert.same({ 200, "slept" }, { res.status, res.body })
    end)

    it("serves two requests in a row on one connection", function()
      local sock = assert(helper.connect(port))
      finally(function() sock:close() end)
      local statuses = {}
      for i = 1, 2 do
        assert(sock:send("GET /string HTTP/1.1\r\nHost: h\r\n\r\n"))
        statuses[i] = assert(helper.read_response(sock)).status
      end
      assert.same({ 200, 200 }, statuses)
    end)

    it("still serves another connection after a timed-out one", function()
      local sock = assert(helper.connect(port))
      assert(sock:send("GET /str"))
      helper.closed(sock)
      sock:close()
      assert_served(port)
    end)
  end)
end)
