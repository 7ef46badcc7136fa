-- examples/ticker.lua: one group, three transports. WebSocket members get
-- each price as a message, server-sent-events members as an event on their
-- stream, a long poll the next price as a whole response; the prices come
-- in order (seq rises by one) on every transport.
local helper = require "helper"
local ws = require "wsclient"

local function seq_of(json) return tonumber(json:match('"seq":(%d+)')) end

describe("examples/ticker.lua", function()
  local srv
  lazy_setup(function()
    srv = helper.start(helper.read_file("examples/ticker.lua"))
  end)
  lazy_teardown(function() helper.assert_clean_stop(srv) end)

  it("sends WebSocket, event-stream and long-polling members the same "
    .. "prices", function()
    local sock = assert(ws.handshake(srv.port, "/ws"))
    local events = assert(helper.connect(srv.port))
    assert(events:send("GET /events HTTP/1.1\r\nHost: h\r\n\r\n"))
    -- the event stream's head
    assert.equal("HTTP/1.1 200 OK", events:receive("*l"))
    local head = {}
    repeat
      local line = assert(events:receive("*l"))
      head[#head + 1] = line:lower()
    until line == ""
    assert.truthy(table.concat(head, "\n"):find("content-type: text/event-stream",
      1, true))
    assert.truthy(table.concat(head, "\n"):find("transfer-encoding: chunked",
      1, true))

    -- two WebSocket messages, in order
    local op, first = ws.read_message(sock)
    assert.equal(ws.OP.TEXT, op)
    local _, second = ws.read_message(sock)
    assert.matches('^{"seq":%d+,"price":%d+%.%d%d}$', first)
    assert.equal(seq_of(first) + 1, seq_of(second))

    -- events: chunks holding "id: N\ndata: {...}\n\n" (after a comment)
    local function next_event()
      while true do
        local size = tonumber(assert(events:receive("*l")), 16)
        local data = assert(events:receive(size))
        assert.equal("\r\n", events:receive(2))
        local id, json = data:match("^id: (%d+)\ndata: ({.-})\n\n$")
        if id then
          assert.equal(tonumber(id), seq_of(json))
          return tonumber(id)
        end
        assert.equal(": prices\n\n", data)
      end
    end
    local a = next_event()
    assert.equal(a + 1, next_event())

    -- a long poll: the next price, whole, and the request is over
    local res = assert(helper.request(srv.port, "GET", "/poll", { host = "h" }))
    assert.equal(200, res.status)
    assert.equal("application/json", res.headers["content-type"])
    assert.equal(tostring(#res.body), res.headers["content-length"])
    assert.matches('^{"seq":%d+,"price":%d+%.%d%d}$', res.body)
    sock:close()
    events:close()
  end)
end)
