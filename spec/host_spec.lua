-- The C embedding API: examples/host.c runs ringlet on its own uv loop
-- beside a timer of its own, and serves requests that read the host's
-- state.
local helper = require "helper"
local socket = require "socket"

local HOST_BIN = os.getenv("RINGLET_HOST_BIN") or "build/ringlet_host"

local function start_host()
  local pipe = assert(io.popen("sh -c 'echo $$; exec timeout -k 5 60 "
    .. helper.quote(HOST_BIN) .. " 0'"))
  local pid = assert(tonumber(pipe:read("l")))
  local line = pipe:read("l") or ""
  local port = tonumber(line:match("listening on http://[%d.]+:(%d+)"))
  return pipe, pid, port, line
end

local function stop_host(pipe, pid)
  -- timeout(1) is pid; signal the host itself, its child
  local p = io.popen("pgrep -P " .. pid)
  local child = p:read("l")
  p:close()
  os.execute("kill -TERM " .. (child or pid))
  local _, how, code = pipe:close()
  return how == "exit" and code or 128 + code
end

describe("C host", function()
  it("serves from the host's loop while the host's own timer runs",
    function()
      local pipe, pid, port, line = start_host()
      assert.truthy(port, "no listening line: " .. line)
      local status
      finally(function()
        if not status then stop_host(pipe, pid) end
      end)
      local function ticks()
        local res = assert(helper.request(port, "GET", "/",
          { host = "h" }))
        assert.equal(200, res.status)
        return tonumber(res.body:match("^hello from the C host, ticks=(%d+)$"))
      end
      local first = assert(ticks())
      assert.truthy(helper.wait_until(function()
        socket.sleep(0.02)
        return ticks() > first
      end))
      status = stop_host(pipe, pid)
      assert.equal(0, status)
    end)
end)
