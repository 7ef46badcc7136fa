-- Core answers that had no spec of their own: 417 for an unknown
-- expectation, 408 for a request head that never completes, 431 for too
-- many header fields, 505 for the HTTP/2 preface. Each is followed by a
-- second connection being served.
local helper = require "helper"

local APP = [[
return {
  handler = function() return { body = "ok" } end,
  options = { header_timeout = 200 },
}
]]

describe("core answers", function()
  local srv
  lazy_setup(function() srv = helper.start(APP) end)
  lazy_teardown(function() assert.equal(0, srv:stop(), srv:stderr()) end)

  local function first(bytes)
    return helper.parse_responses((helper.raw(srv.port, bytes)))[1]
  end

  local function still_serving()
    local res = assert(helper.request(srv.port, "GET", "/", { host = "h" }))
    assert.same({ 200, "ok" }, { res.status, res.body })
  end

  it("answers 417 to an expectation other than 100-continue", function()
    local res = first("POST / HTTP/1.1\r\nHost: h\r\nExpect: teapot\r\n"
      .. "Content-Length: 2\r\n\r\nhi")
    assert.equal(417, res.status)
    still_serving()
  end)

  it("answers 408 and closes when the head does not complete in time",
    function()
      local sock = assert(helper.connect(srv.port))
      local defer = helper.cleanup(finally)
      defer(function() sock:close() end)
      assert(sock:send("GET / HTTP/1.1\r\nHost: h\r\nX-Slow: "))
      local res = assert(helper.read_response(sock))
      assert.equal(408, res.status)
      assert.equal("close", res.headers.connection)
      assert.is_true(helper.closed(sock))
      still_serving()
    end)

  it("answers 431 to more than 128 header fields", function()
    local lines = {}
    for i = 1, 129 do lines[i] = ("X-H%d: v\r\n"):format(i) end
    local res = first("GET / HTTP/1.1\r\nHost: h\r\n"
      .. table.concat(lines) .. "\r\n")
    assert.equal(431, res.status)
    still_serving()
  end)

  it("answers 505 to the HTTP/2 connection preface", function()
    local res = first("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert.equal(505, res.status)
    still_serving()
  end)
end)
