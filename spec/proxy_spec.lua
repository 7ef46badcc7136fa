-- proxy_protocol: a PROXY protocol v1 line in front of the request names
-- the real client ("enable": required, "optional": taken when present).
local helper = require "helper"

local APP = [[
return {
  handler = function(req)
    return { body = req.remote_addr .. " " .. req.uri }
  end,
  options = { proxy_protocol = %q },
}
]]

local function ask(port, bytes)
  local out = helper.raw(port, bytes)
  return helper.parse_responses(out)[1]
end

local GET = "GET /p HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"

describe("proxy_protocol", function()
  describe("enable", function()
    local srv
    lazy_setup(function() srv = helper.start(APP:format("enable")) end)
    lazy_teardown(function() assert.equal(0, srv:stop(), srv:stderr()) end)

    it("takes remote_addr from a PROXY TCP4 line", function()
      local res = ask(srv.port,
        "PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n" .. GET)
      assert.same({ 200, "203.0.113.7 /p" }, { res.status, res.body })
    end)

    it("takes remote_addr from a PROXY TCP6 line", function()
      local res = ask(srv.port,
        "PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n" .. GET)
      assert.same({ 200, "2001:db8::1 /p" }, { res.status, res.body })
    end)

    it("keeps the real peer for PROXY UNKNOWN", function()
      local res = ask(srv.port, "PROXY UNKNOWN\r\n" .. GET)
      assert.same({ 200, "127.0.0.1 /p" }, { res.status, res.body })
    end)

    it("answers 400 to a request without the PROXY line", function()
      assert.equal(400, ask(srv.port, GET).status)
    end)

    it("answers 400 to a malformed PROXY line, then serves others", function()
      assert.equal(400, ask(srv.port, "PROXY TCP4 nonsense\r\n" .. GET).status)
      assert.equal(400, ask(srv.port,
        "PROXY TCP4 999.1.1.1 192.0.2.1 1 2\r\n" .. GET).status)
      local res = ask(srv.port,
        "PROXY TCP4 198.51.100.9 192.0.2.1 1 2\r\n" .. GET)
      assert.same({ 200, "198.51.100.9 /p" }, { res.status, res.body })
    end)
  end)

  describe("optional", function()
    local srv
    lazy_setup(function() srv = helper.start(APP:format("optional")) end)
    lazy_teardown(function() assert.equal(0, srv:stop(), srv:stderr()) end)

    it("takes the PROXY line when present", function()
      local res = ask(srv.port,
        "PROXY TCP4 203.0.113.8 192.0.2.1 1 2\r\n" .. GET)
      assert.same({ 200, "203.0.113.8 /p" }, { res.status, res.body })
    end)

    it("serves a plain request with the real peer", function()
      local res = ask(srv.port, GET)
      assert.same({ 200, "127.0.0.1 /p" }, { res.status, res.body })
    end)
  end)

  describe("disable (the default)", function()
    local srv
    lazy_setup(function() srv = helper.start(APP:format("disable")) end)
    lazy_teardown(function() assert.equal(0, srv:stop(), srv:stderr()) end)

    it("treats a PROXY line as a malformed request", function()
      assert.equal(400, ask(srv.port,
        "PROXY TCP4 203.0.113.7 192.0.2.1 1 2\r\n" .. GET).status)
    end)
  end)
end)
