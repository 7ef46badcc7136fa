-- The transport (csrc/conn.c, csrc/listen.c) and the WebSocket codec on
-- their own, with no HTTP and no Lua: spec/c/transport_test.c connects real
-- clients on 127.0.0.1 and checks shared, reference-counted write buffers
-- (interleaved with copied bytes, held by writes the socket made wait), a
-- WebSocket frame built once and queued on every connection, the close
-- codes and the listener's close. Under the sanitized build it runs with
-- ASan, so a leaked reference or a use after free fails it.
local helper = require "helper"

local BIN = os.getenv("RINGLET_TRANSPORT_TEST_BIN")
  or "build/ringlet_transport_test"

describe("transport", function()
  it("writes shared buffers in order, frames a broadcast once, and frees "
    .. "every reference", function()
    local p = assert(io.popen("timeout -k 5 60 " .. helper.quote(BIN)
      .. " 2>&1"))
    local out = p:read("a")
    local ok, how, code = p:close()
    assert.is_true(ok, ("exit %s %s:\n%s"):format(how, code, out))
    assert.matches("transport: %d+ checks, 0 failed %(20 of 20 queues", out)
  end)
end)
