-- run_server's body_file: a request body larger than it is written to an
-- unnamed temporary file as it arrives, and the handler gets req.body as a
-- Lua file handle (Ring's InputStream), so an upload never has to fit in a
-- Lua string. Real uploads with curl; the server's descriptors counted.
local helper = require "helper"
local socket = require "socket"

local APP = [[
local ringlet = require "ringlet"
return { handler = function(req)
  local b = req.body
  if req.uri == "/fds" then
    collectgarbage()
    collectgarbage()
    local n = 0
    for _ in io.popen("ls /proc/self/fd"):lines() do n = n + 1 end
    return { body = tostring(n) }
  elseif req.uri == "/echo" then
    return { body = b }                 -- the file handle streams back
  elseif req.uri == "/keep" then
    return { body = io.type(b) or type(b) } -- not closed: GC closes it
  elseif req.uri == "/slow" then
    ringlet.sleep(200)
  end
  if io.type(b) == "file" then
    local data = b:read("a")
    b:close()
    return { body = "file " .. #data .. " " .. data }
  end
  return { body = type(b) .. " " .. #(b or "") .. " " .. (b or "") }
end, options = { body_file = 1000, max_body = 30 * 1024 * 1024 } }
]]

local function random_file(n)
  local name = os.tmpname()
  assert(os.execute(("head -c %d /dev/urandom > %s"):format(n,
    helper.quote(name))))
  return name
end

describe("body_file", function()
  local srv, tmpdir
  lazy_setup(function()
    tmpdir = os.tmpname()
    os.remove(tmpdir)
    assert(os.execute("mkdir " .. helper.quote(tmpdir)))
    -- the server's TMPDIR: the spec looks there for files left behind
    srv = helper.start({ source = APP, env = { TMPDIR = tmpdir } })
  end)
  lazy_teardown(function()
    if srv then assert.equal(0, srv:stop()) end
    os.execute("rm -rf " .. helper.quote(tmpdir))
  end)

  local function url(path) return ("http://127.0.0.1:%d%s"):format(srv.port,
    path) end

  it("leaves a body up to the threshold a string", function()
    local body = ("x"):rep(1000)
    local out = helper.curl("--data-binary", body, url("/"))
    assert.equal("string 1000 " .. body, out)
  end)

  it("hands a larger body over as a file, byte for byte", function()
    local body = ("y"):rep(1001)
    assert.equal("file 1001 " .. body, helper.curl("--data-binary", body,
      url("/")))
    local name = random_file(20 * 1024 * 1024)
    finally(function() os.remove(name) end)
    local back = os.tmpname()
    finally(function() os.remove(back) end)
    -- echoed back from the handle: the same 20 MiB
    local _, code = helper.curl("-o", back, "--data-binary", "@" .. name,
      url("/echo"))
    assert.equal(0, code)
    assert.equal(helper.read_file(name), helper.read_file(back))
  end)

  it("takes a chunked upload the same way", function()
    local name = random_file(300000)
    finally(function() os.remove(name) end)
    local out = helper.curl("-H", "Transfer-Encoding: chunked",
      "--data-binary", "@" .. name, url("/"))
    assert.equal("file 300000 " .. helper.read_file(name), out)
  end)

  it("still answers 413 past max_body, and leaves no file nor descriptor",
    function()
      local before = helper.curl(url("/fds"))
      local res = helper.request(srv.port, "POST", "/", {
        ["Transfer-Encoding"] = "chunked" },
        ("%x\r\n%s\r\n"):format(2000, ("z"):rep(2000)):rep(16000) .. "0\r\n\r\n")
      assert.equal(413, res and res.status)
      -- uploads cut short, and handles the handler never closed
      for _ = 1, 5 do
        local sock = assert(helper.connect(srv.port))
        sock:send(helper.request_bytes("POST", "/slow", { Host = "x",
          ["Content-Length"] = "100000" }) .. ("w"):rep(50000))
        socket.sleep(0.02)
        sock:close()
        assert.equal("file", helper.curl("--data-binary", ("k"):rep(5000),
          url("/keep")))
      end
      socket.sleep(0.3)
      assert.equal(before, helper.curl(url("/fds")))
      local ls = io.popen("ls -A " .. helper.quote(tmpdir)):read("a")
      assert.equal("", ls)
    end)

  it("is an option: an integer of bytes", function()
    local ok, out = helper.run_script([[
local ringlet = require "ringlet"
print(pcall(ringlet.run_server, function() end, { port = 0, body_file = "x" }))
print(pcall(ringlet.run_server, function() end, { port = 0, body_file = -1 }))
]])
    assert.is_true(ok, out)
    assert.truthy(out:find("option 'body_file' must be an integer"), out)
    assert.truthy(out:find("option 'body_file' must be from 0"), out)
  end)
end)
