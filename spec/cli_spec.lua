-- The ringlet command's flags: --help, --version, the options it passes to
-- run_server, and one clear line with status 2 for a usage error.
local helper = require "helper"

describe("the ringlet command", function()
  -- Runs the CLI from another directory (BIN may be relative to the
  -- repository); returns its exit status, stdout and stderr.
  local function cmd(args)
    local bin = helper.BIN:sub(1, 1) == "/" and helper.BIN
      or (helper.ROOT .. "/" .. helper.BIN)
    local p = assert(io.popen("cd /tmp && " .. helper.quote(bin) .. " "
      .. args .. " 2>/tmp/ringlet-cli-err; echo \"status=$?\""))
    local out = p:read("a")
    p:close()
    local status = tonumber(out:match("status=(%d+)\n$"))
    return status, (out:gsub("status=%d+\n$", "")),
      helper.read_file("/tmp/ringlet-cli-err")
  end

  it("prints its help with --help and exits 0", function()
    local status, out, err = cmd("--help")
    assert.equal(0, status)
    assert.equal("", err)
    assert.truthy(out:find("^usage: ringlet APP%.lua %[options%]"), out)
    for _, flag in ipairs({ "--port", "--ip", "--threads", "--access-log",
                            "--help", "--version" }) do
      assert.truthy(out:find(flag, 1, true), flag)
    end
  end)

  it("prints its version with --version and exits 0", function()
    local status, out = cmd("--version")
    assert.equal(0, status)
    assert.truthy(out:match("^ringlet %d+%.%d+%.%d+ %(Lua 5%.4%.%d+, libuv "
      .. "%d+%.%d+%.%d+%)\n$"), out)
  end)

  for _, case in ipairs({
    { "--bogus app.lua", "unknown option '%-%-bogus'" },
    { "", "no app file given" },
    { "--port", "%-%-port needs a value" },
    { "--port 70000 x.lua", "%-%-port needs a number from 0 to 65535" },
    { "--port=abc x.lua", "%-%-port needs a number" },
    { "--threads 0 x.lua", "%-%-threads needs a number from 1" },
    { "--access-log= x.lua", "%-%-access%-log needs a file name" },
    { "a.lua b.lua", "one app file only, got 'b%.lua' too" },
  }) do
    it("answers a usage error with one line and status 2: " .. case[1],
      function()
        local status, out, err = cmd(case[1])
        assert.equal(2, status)
        assert.equal("", out)
        assert.truthy(err:match("^ringlet: [^\n]*\n$"), err)
        assert.truthy(err:find(case[2]), err)
        assert.truthy(err:find("ringlet %-%-help", 1), err)
      end)
  end

  it("says so in one line, with status 2, when the app file is missing",
    function()
      local status, out, err = cmd("/nonexistent/app.lua")
      assert.equal(2, status)
      assert.equal("", out)
      assert.equal("ringlet: /nonexistent/app.lua: No such file or "
        .. "directory\n", err)
      local status2, _, err2 = cmd("/tmp")
      assert.equal(2, status2)
      assert.equal("ringlet: /tmp: not a file\n", err2)
    end)

  it("says in one line why a server cannot start (exit 1)", function()
    local app = helper.ROOT .. "/examples/hello.lua"
    local status, out, err = cmd(helper.quote(app)
      .. " --port 0 --access-log /nonexistent/dir/x.log")
    assert.equal(1, status)
    assert.equal("", out)
    assert.equal("ringlet: cannot start the server: run_server: option "
      .. "'access_log': /nonexistent/dir/x.log: No such file or directory\n",
      err)
  end)

  it("takes --name=VALUE as well as --name VALUE, over the app's options",
    function()
      local srv = helper.start({ source = [[
return { handler = function(req)
  return { body = tostring(req.server_port) }
end, options = { port = 1, ip = "0.0.0.0" } }
]], args = { "--threads=2" } })
      finally(function() srv:stop() end)
      -- helper.start passes --port 0 --ip 127.0.0.1: they win over the
      -- app's port 1 and ip 0.0.0.0
      local res = helper.request(srv.port, "GET", "/")
      assert.equal(200, res.status)
      assert.equal(tostring(srv.port), res.body)
      assert.equal(0, srv:stop())
    end)
end)
