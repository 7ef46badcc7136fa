-- ringlet.middleware (lua/ringlet/middleware.lua): wrap_params,
-- wrap_multipart_params, wrap_cookies and the re-exports of ringlet.static.
--
-- Most specs run an app in a ringlet child process (helper.start), one per
-- describe block, and talk to it with curl and with LuaSocket (helper's
-- raw requests, for bodies curl would not send). The apps answer with what
-- the middleware put in the request, serialized (helper.SERIALIZER), and
-- the multipart app copies each upload to a directory the spec reads, so
-- its bytes can be compared. The middleware is plain Lua: a few specs call
-- a wrapped handler directly in the busted process (a request body that is
-- a file handle, delimiters at every offset around a 64 KiB read).

local helper = require "helper"
local wsc = require "wsclient"

package.path = helper.ROOT .. "/lua/?.lua;" .. package.path
local mw = require "ringlet.middleware"

local PRELUDE = [[
local ringlet = require "ringlet"
local mw = require "ringlet.middleware"
]] .. helper.SERIALIZER .. [[
local function text(body, status)
  return { status = status or 200,
           headers = { ["content-type"] = "text/plain" }, body = body }
end
]]

local function mktemp_dir()
  local pipe = assert(io.popen("mktemp -d"))
  local dir = pipe:read("l")
  pipe:close()
  return assert(dir)
end

local function remove_dir(dir)
  os.execute("rm -rf " .. helper.quote(dir))
end

-- the names in a directory, sorted
local function list_dir(dir)
  local pipe = assert(io.popen("ls -A " .. helper.quote(dir)))
  local names = {}
  for l in pipe:lines() do names[#names + 1] = l end
  pipe:close()
  table.sort(names)
  return names
end

local function write_file(name, data)
  local f = assert(io.open(name, "wb"))
  assert(f:write(data))
  assert(f:close())
end

-- Stops a server whose handlers raised on purpose (their tracebacks are in
-- its stderr): it must still exit 0.
local function stop_ok(srv)
  local status = srv:stop()
  assert(status == 0, "server exited with status " .. tostring(status)
    .. "; stderr:\n" .. srv:stderr())
end

local function url(srv, path)
  return ("http://127.0.0.1:%d%s"):format(srv.port, path)
end

-- curl's output decoded; raises with curl's stderr when it failed
local function curl_value(...)
  local out, code, err = helper.curl(...)
  assert(code == 0, "curl failed: " .. err)
  return helper.decode(out)
end

-- ---------------------------------------------------------------------------

describe("wrap_params", function()
  local srv
  setup(function()
    srv = helper.start(PRELUDE .. [[
local function show(req)
  if req.uri == "/sleep" then ringlet.sleep(20) end
  return text(serialize({ query = req.query_params, form = req.form_params,
    params = req.params, body = req.body }))
end
local handlers = {
  ["/small"] = mw.wrap_params(show, { max_form = 10 }),
}
local default = mw.wrap_params(show)
return function(req) return (handlers[req.uri] or default)(req) end
]])
  end)
  teardown(function() helper.assert_clean_stop(srv) end)

  local function post(path, ctype, body)
    local res = assert(helper.request(srv.port, "POST", path,
      { ["Content-Type"] = ctype }, body))
    return res
  end

  it("decodes the query string alone", function()
    local v = curl_value(url(srv, "/?a=1&b=two"))
    assert.same({ a = "1", b = "two" }, v.query)
    assert.same({}, v.form)
    assert.same({ a = "1", b = "two" }, v.params)
    v = curl_value(url(srv, "/"))
    assert.same({ query = {}, form = {}, params = {} }, v)
  end)

  it("decodes an urlencoded form alone (curl --data-urlencode)", function()
    local v = curl_value("--data-urlencode", "name=Ada Lovelace",
      "--data-urlencode", "expr=a&b=c+d%", url(srv, "/"))
    assert.same({}, v.query)
    assert.same({ name = "Ada Lovelace", expr = "a&b=c+d%" }, v.form)
    assert.same(v.form, v.params)
  end)

  it("merges both, a form value over a query value", function()
    local res = post("/?a=q&b=q", "application/x-www-form-urlencoded",
      "a=f&c=f")
    assert.equal(200, res.status)
    local v = helper.decode(res.body)
    assert.same({ a = "q", b = "q" }, v.query)
    assert.same({ a = "f", c = "f" }, v.form)
    assert.same({ a = "f", b = "q", c = "f" }, v.params)
  end)

  it("makes arrays of repeats, skips empty pieces, gives a bare key \"\"",
  function()
    local v = curl_value(url(srv, "/?a=1&a=2&&a=3&flag&=v&b=x=y&"))
    assert.same({ a = { "1", "2", "3" }, flag = "", [""] = "v", b = "x=y" },
      v.query)
    local res = post("/", "application/x-www-form-urlencoded",
      "t=1&&t=2&u")
    assert.same({ t = { "1", "2" }, u = "" }, helper.decode(res.body).form)
  end)

  it("decodes + and %20 as a space and %XX bytes, in keys too", function()
    local v = curl_value(url(srv,
      "/?x=a+b%20c%2Bd&k+1=%C3%A9&n%00=%0D%0A"))
    assert.same({ x = "a b c+d", ["k 1"] = "é", ["n\0"] = "\r\n" }, v.query)
    local res = post("/", "application/x-www-form-urlencoded",
      "msg=hello+world%21")
    assert.same({ msg = "hello world!" }, helper.decode(res.body).form)
  end)

  it("matches the form's content type in any case, with parameters, and "
    .. "leaves other bodies alone", function()
    local res = post("/", "APPLICATION/x-www-form-URLENCODED ; charset=UTF-8",
      "a=1")
    assert.same({ a = "1" }, helper.decode(res.body).form)
    res = post("/", "text/plain", "a=1")
    local v = helper.decode(res.body)
    assert.same({}, v.form)
    assert.equal("a=1", v.body)
    res = post("/", "application/x-www-form-urlencodedx", "a=1")
    assert.same({}, helper.decode(res.body).form)
  end)

  it("answers malformed percent-encoding with 400 naming it, and serves "
    .. "the next request", function()
    for _, qs in ipairs({ "a=%zz", "a=%4", "a=1&b=%", "%g1=2" }) do
      local res = assert(helper.request(srv.port, "GET", "/?" .. qs))
      assert.equal(400, res.status, qs)
      assert.equal("text/plain; charset=utf-8", res.headers["content-type"])
      assert.truthy(res.body:find("malformed percent-encoding", 1, true),
        res.body)
      assert.truthy(res.body:find("query string", 1, true), res.body)
    end
    local res = post("/", "application/x-www-form-urlencoded", "x=100%")
    assert.equal(400, res.status)
    assert.truthy(res.body:find("form body", 1, true), res.body)
    -- the same connection and a new one go on being served
    local sock = assert(helper.connect(srv.port))
    sock:send(helper.request_bytes("GET", "/?a=%zz", { Host = "x" })
      .. helper.request_bytes("GET", "/?a=ok", { Host = "x" }))
    assert.equal(400, assert(helper.read_response(sock)).status)
    local ok = assert(helper.read_response(sock))
    sock:close()
    assert.equal(200, ok.status)
    assert.same({ a = "ok" }, helper.decode(ok.body).query)
    assert.same({ a = "1" }, curl_value(url(srv, "/?a=1")).query)
  end)

  it("answers a form body over max_form with 413", function()
    local ctype = "application/x-www-form-urlencoded"
    local res = post("/small", ctype, "a=12345678")  -- 10 bytes
    assert.equal(200, res.status)
    assert.same({ a = "12345678" }, helper.decode(res.body).form)
    res = post("/small", ctype, "a=123456789")       -- 11
    assert.equal(413, res.status)
    assert.truthy(res.body:find("larger than 10 bytes", 1, true), res.body)
  end)

  it("lets the handler sleep", function()
    local v = curl_value(url(srv, "/sleep?z=1"))
    assert.same({ z = "1" }, v.query)
  end)

  it("reads a file body from where it stands and puts it back", function()
    local seen
    local h = mw.wrap_params(function(req)
      seen = req.body:read("a")
      return { status = 200 }
    end, { max_form = 100 })
    local f = io.tmpfile()
    f:write("a=1&b=x+y&a=2")
    f:seek("set", 0)
    local req = { headers = { ["content-type"] =
      "application/x-www-form-urlencoded" }, body = f, query_string = "q=1" }
    assert.same({ status = 200 }, h(req))
    assert.same({ a = { "1", "2" }, b = "x y" }, req.form_params)
    assert.same({ a = { "1", "2" }, b = "x y", q = "1" }, req.params)
    assert.equal("a=1&b=x+y&a=2", seen)
    f:close()
    -- one byte over max_form: 413, the handler not called
    local called = false
    h = mw.wrap_params(function() called = true end, { max_form = 100 })
    f = io.tmpfile()
    f:write(("x"):rep(101))
    f:seek("set", 0)
    local res = h({ headers = { ["content-type"] =
      "application/x-www-form-urlencoded" }, body = f })
    assert.equal(413, res.status)
    assert.is_false(called)
    f:close()
  end)

  it("keeps params already set, passes a nil response on, and checks its "
    .. "options", function()
    local h = mw.wrap_params(function(req)
      assert.same({ old = "1", a = "2" }, req.params)
      return nil
    end)
    assert.is_nil(h({ params = { old = "1" }, query_string = "a=2" }))
    assert.has_error(function() mw.wrap_params(function() end,
      { max_from = 1 }) end, "middleware.wrap_params: unknown option "
      .. "'max_from'")
    assert.has_error(function() mw.wrap_params(function() end,
      { max_form = "big" }) end)
    assert.has_error(function() mw.wrap_params("nope") end)
  end)
end)

-- ---------------------------------------------------------------------------

-- Random bytes, with CRLF, "--" and things like curl's delimiter strewn in.
local function random_bytes(n)
  local parts, size = {}, 0
  local traps = { "\r\n", "--", "\r\n--", "\r\n------------------------",
    "\r\n\r\n", "--\r\n" }
  while size < n do
    local block = {}
    for i = 1, 256 do
      block[i] = string.pack("<I4", math.random(0, 0xffffffff))
    end
    block[#block + 1] = traps[math.random(#traps)]
    local s = table.concat(block)
    parts[#parts + 1] = s
    size = size + #s
  end
  return table.concat(parts):sub(1, n)
end

describe("wrap_multipart_params", function()
  local srv, dir, keep, work
  setup(function()
    dir = mktemp_dir()   -- the middleware's tmpdir
    keep = mktemp_dir()  -- where the app copies the uploads
    work = mktemp_dir()  -- the spec's own files
    srv = helper.start(PRELUDE .. ([[
local DIR, KEEP = %q, %q
local function copy(from, to)
  local a = assert(io.open(from, "rb"))
  local b = assert(io.open(to, "wb"))
  while true do
    local s = a:read(65536)
    if not s then break end
    b:write(s)
  end
  a:close()
  b:close()
end
-- copies each upload to KEEP/<field name>[.<index>]
local function keep_files(params)
  for name, v in pairs(params) do
    if type(v) == "table" and v.tempfile then
      copy(v.tempfile, KEEP .. "/" .. name)
    elseif type(v) == "table" then
      for i, item in ipairs(v) do
        if type(item) == "table" then
          copy(item.tempfile, KEEP .. "/" .. name .. "." .. i)
        end
      end
    end
  end
end
local function show(req)
  keep_files(req.multipart_params)
  return text(serialize({ multipart = req.multipart_params,
    params = req.params, body = type(req.body) }))
end
local function raise(req)
  local f = assert(io.open(KEEP .. "/raised", "wb"))
  for _, v in pairs(req.multipart_params) do
    if type(v) == "table" and v.tempfile then f:write(v.tempfile, "\n") end
  end
  f:close()
  error("boom")
end
local calls = 0
local function count() calls = calls + 1 return text("called " .. calls) end
local handlers = {
  ["/"] = mw.wrap_multipart_params(show, { tmpdir = DIR }),
  ["/default"] = mw.wrap_multipart_params(show),
  ["/sleep"] = mw.wrap_multipart_params(function(req)
    ringlet.sleep(20) -- the uploads are still there after
    return show(req)
  end, { tmpdir = DIR }),
  ["/raise"] = mw.wrap_multipart_params(raise, { tmpdir = DIR }),
  ["/limits"] = mw.wrap_multipart_params(count, { tmpdir = DIR,
    max_parts = 3, max_file_size = 1000, max_field_size = 10,
    max_header_size = 200 }),
  ["/calls"] = function() return text(tostring(calls)) end,
}
return function(req) return handlers[req.uri](req) end
]]):format(dir, keep))
  end)
  teardown(function()
    stop_ok(srv)
    remove_dir(dir)
    remove_dir(keep)
    remove_dir(work)
  end)
  before_each(function()
    os.execute("rm -f " .. helper.quote(keep) .. "/*")
  end)

  local function calls()
    return assert(helper.request(srv.port, "GET", "/calls")).body
  end

  local function multipart(path, boundary, body, ctype)
    return assert(helper.request(srv.port, "POST", path,
      { ["Content-Type"] = ctype or "multipart/form-data; boundary="
        .. boundary }, body))
  end

  it("takes two files and repeated fields from curl -F, each upload byte "
    .. "for byte, and removes the temporary files after", function()
    local big = random_bytes(3 * 1024 * 1024)
    assert.truthy(big:find("\r\n--", 1, true))
    local small = "a,b\r\n1,2\r\n--\r\n"
    write_file(work .. "/big.bin", big)
    write_file(work .. "/small.csv", small)
    local v = curl_value("-H", "Expect:",
      "-F", "name=Ada", "-F", "file1=@" .. work .. "/big.bin",
      "-F", "name=Bob", "-F", "file2=@" .. work .. "/small.csv;type=text/csv",
      "-F", "empty=", url(srv, "/"))
    local m = v.multipart
    assert.same({ "Ada", "Bob" }, m.name)
    assert.equal("", m.empty)
    assert.equal("big.bin", m.file1.filename)
    assert.equal("application/octet-stream", m.file1.content_type)
    assert.equal(#big, m.file1.size)
    assert.equal("small.csv", m.file2.filename)
    assert.equal("text/csv", m.file2.content_type)
    assert.equal(#small, m.file2.size)
    assert.equal(dir, m.file1.tempfile:match("^(.*)/[^/]*$"))
    assert.equal(dir, m.file2.tempfile:match("^(.*)/[^/]*$"))
    assert.are_not.equal(m.file1.tempfile, m.file2.tempfile)
    assert.same(m, v.params)
    assert.equal("string", v.body)
    -- the bytes the handler saw
    assert.is_true(helper.read_file(keep .. "/file1") == big,
      "file1 differs")
    assert.equal(small, helper.read_file(keep .. "/file2"))
    -- and nothing left once the response came
    assert.same({}, list_dir(dir))
  end)

  it("removes the temporary files when the handler raises (500)", function()
    write_file(work .. "/a.txt", "first")
    write_file(work .. "/b.txt", "second")
    local out, code = helper.curl("-o", "/dev/null", "-w", "%{http_code}",
      "-F", "a=@" .. work .. "/a.txt", "-F", "b=@" .. work .. "/b.txt",
      url(srv, "/raise"))
    assert.equal(0, code)
    assert.equal("500", out)
    local paths = {}
    for p in helper.read_file(keep .. "/raised"):gmatch("[^\n]+") do
      paths[#paths + 1] = p
    end
    assert.equal(2, #paths)
    for _, p in ipairs(paths) do assert.is_false(helper.exists(p), p) end
    assert.same({}, list_dir(dir))
  end)

  it("makes its temporary files with os.tmpname by default and removes "
    .. "them", function()
    write_file(work .. "/c.txt", "third")
    local v = curl_value("-F", "c=@" .. work .. "/c.txt", "-F",
      "d=@" .. work .. "/c.txt", url(srv, "/default"))
    assert.equal("third", helper.read_file(keep .. "/c"))
    assert.equal("third", helper.read_file(keep .. "/d"))
    for _, k in ipairs({ "c", "d" }) do
      local p = v.multipart[k].tempfile
      assert.truthy(p:find("^/tmp/"), p)
      assert.is_false(helper.exists(p), p)
    end
  end)

  it("keeps the temporary files while the handler sleeps", function()
    write_file(work .. "/s.txt", "slept on")
    local v = curl_value("-F", "s=@" .. work .. "/s.txt", "-F", "t=x",
      url(srv, "/sleep"))
    assert.equal("x", v.multipart.t)
    assert.equal("slept on", helper.read_file(keep .. "/s"))
    assert.same({}, list_dir(dir))
  end)

  it("finds a delimiter split across two 64 KiB reads (a large field)",
  function()
    local value = ("0123456789abcdef\r\n-"):rep(20000) -- 380000 bytes
    write_file(work .. "/big.txt", value)
    local v = curl_value("-H", "Expect:", "-F", "big=<" .. work .. "/big.txt",
      "-F", "after=yes", url(srv, "/"))
    assert.is_true(v.multipart.big == value, "the big field differs")
    assert.equal("yes", v.multipart.after)
  end)

  it("answers each limit with 413 without calling the handler, and leaves "
    .. "no temporary file", function()
    local function status(...)
      local out, code, err = helper.curl("-w", "\n%{http_code}", ...)
      assert(code == 0, err)
      local body, st = out:match("^(.*)\n(%d+)$")
      return tonumber(st), body
    end
    local before = calls()
    write_file(work .. "/1000", ("x"):rep(1000))
    write_file(work .. "/1001", ("x"):rep(1001))
    local limits = url(srv, "/limits")
    -- at each limit: served
    assert.equal(200, (status("-F", "a=1", "-F", "b=1234567890", "-F",
      "f=@" .. work .. "/1000", limits)))
    local n = tostring(tonumber(before) + 1)
    assert.equal(n, calls())
    -- one past each
    local cases = {
      { { "-F", "a=1", "-F", "b=2", "-F", "c=3", "-F", "d=4" },
        "more than 3 parts" },
      { { "-F", "f=@" .. work .. "/1001" }, "larger than 1000 bytes" },
      { { "-F", "a=1", "-F", "f=@" .. work .. "/1000", "-F", "g=@" .. work
        .. "/1001" }, "larger than 1000 bytes" },
      { { "-F", "b=12345678901" }, "larger than 10 bytes" },
      { { "-F", "f=@" .. work .. "/1000;filename=" .. ("n"):rep(150) },
        "larger than 200 bytes" },
    }
    for _, c in ipairs(cases) do
      local args = c[1]
      args[#args + 1] = limits
      local st, body = status(table.unpack(args))
      assert.equal(413, st, body)
      assert.truthy(body:find(c[2], 1, true), body)
      assert.same({}, list_dir(dir))
    end
    assert.equal(n, calls())
  end)

  it("answers a malformed body with 400, and serves on", function()
    local before = calls()
    local B = "b0undary"
    local ok_part = "--b0undary\r\nContent-Disposition: form-data; "
      .. "name=\"f\"; filename=\"f.txt\"\r\n\r\nsome bytes\r\n"
    local cases = {
      { "multipart/form-data", "--x\r\n\r\n--x--", "boundary" },
      { "multipart/form-data; boundary=\"\"", "", "boundary" },
      { "multipart/form-data; boundary=" .. ("b"):rep(71), "", "boundary" },
      { nil, ok_part, "no closing delimiter" },
      { nil, ok_part .. "--b0undary", "no closing delimiter" },
      { nil, "", "no closing delimiter" },
      { nil, "--b0undary\r\nContent-Type: text/plain\r\n\r\nx\r\n"
        .. "--b0undary--", "no Content-Disposition" },
      { nil, "--b0undary\r\nContent-Disposition: form-data\r\n\r\nx\r\n"
        .. "--b0undary--", "has no name" },
      { nil, "--b0undary\r\nContent-Disposition: attachment; name=a\r\n"
        .. "\r\nx\r\n--b0undary--", "not form-data" },
      { nil, ok_part .. "--b0undary\r\nno colon here\r\n\r\nx\r\n"
        .. "--b0undary--", "bad header line" },
      { nil, "--b0undary\r\nContent-Disposition: form-data; name=\"a\r\n"
        .. "\r\nx\r\n--b0undary--", "unterminated" },
      { nil, "--b0undary\r\nContent-Disposition: form-data; name=a\r\n\r\n"
        .. "x\r\n--b0undaryX\r\n", "delimiter followed by" },
      { nil, "--b0undary\r\nContent-Disposition: form-data; name=a\r\n",
        "ends inside" },
    }
    for i, c in ipairs(cases) do
      local res = multipart("/", B, c[2], c[1])
      assert.equal(400, res.status, "case " .. i .. ": " .. res.body)
      assert.equal("text/plain; charset=utf-8", res.headers["content-type"])
      assert.truthy(res.body:find(c[3], 1, true), "case " .. i .. ": "
        .. res.body)
      assert.same({}, list_dir(dir))
    end
    local res = multipart("/limits", B, ok_part .. "--b0undary--")
    assert.equal(200, res.status)
    assert.equal(tostring(tonumber(before) + 1), calls())
  end)

  it("keeps the client's file name less its directory, takes quoted "
    .. "boundaries, and skips preamble, padding and epilogue", function()
    local B = "a b:c'()+_,-./=?"
    local body = table.concat({
      "This is the preamble.\r\n",
      "--" .. B .. " \t\r\n",
      'Content-Disposition: form-data; name="w"; '
        .. 'filename="C:\\Users\\ada\\photo.jpg"\r\n',
      "Content-Type: image/jpeg\r\n\r\n",
      "JPEG\r\n",
      "--" .. B .. "\r\n",
      "content-disposition: FORM-DATA; filename=../../etc/passwd; name=p\r\n",
      "\r\n\r\nroot\r\n",
      "--" .. B .. "\r\n",
      'Content-Disposition: form-data; name="q\\"uote"; filename=""\r\n',
      "\r\n",
      "\r\n--" .. B .. "--\r\nThe epilogue --" .. B .. "--\r\n",
    })
    local res = multipart("/", nil, body,
      'multipart/form-data; charset=utf-8; boundary="' .. B .. '"')
    assert.equal(200, res.status, res.body)
    local m = helper.decode(res.body).multipart
    assert.equal("photo.jpg", m.w.filename)
    assert.equal("image/jpeg", m.w.content_type)
    assert.equal(4, m.w.size)
    assert.equal("passwd", m.p.filename)
    assert.is_nil(m.p.content_type)
    assert.equal(6, m.p.size)
    assert.equal('', m['q"uote'].filename)
    assert.equal(0, m['q"uote'].size)
    assert.equal("JPEG", helper.read_file(keep .. "/w"))
    assert.equal("\r\nroot", helper.read_file(keep .. "/p"))
    -- the boundary may start the body (no CRLF before the first one)
    res = multipart("/", "z", "--z\r\nContent-Disposition: form-data; "
      .. "name=only\r\n\r\nvalue\r\n--z--")
    assert.same({ only = "value" }, helper.decode(res.body).multipart)
  end)

  it("gives {} for another content type and keeps the body", function()
    local res = assert(helper.request(srv.port, "POST", "/",
      { ["Content-Type"] = "text/plain" }, "--x\r\n"))
    local v = helper.decode(res.body)
    assert.same({ multipart = {}, params = {}, body = "string" }, v)
  end)

  it("parses a body that is a file handle and puts it back at its start",
  function()
    local B = "XYZ"
    local data = random_bytes(200000)
    local body = "--XYZ\r\nContent-Disposition: form-data; name=\"f\"; "
      .. "filename=\"d.bin\"\r\n\r\n" .. data .. "\r\n--XYZ\r\n"
      .. "Content-Disposition: form-data; name=\"t\"\r\n\r\ntext\r\n--XYZ--"
    local f = io.tmpfile()
    f:write(body)
    f:seek("set", 0)
    local seen, path
    local h = mw.wrap_multipart_params(function(req)
      path = req.params.f.tempfile
      seen = helper.read_file(path)
      assert.equal("text", req.params.t)
      assert.equal(body, req.body:read("a"))
      return { status = 204 }
    end)
    local res = h({ headers = { ["content-type"] =
      "multipart/form-data; boundary=" .. B }, body = f })
    assert.same({ status = 204 }, res)
    assert.is_true(seen == data, "the upload differs")
    assert.is_false(helper.exists(path))
    -- a handler that raises leaves no file either
    f:seek("set", 0)
    h = mw.wrap_multipart_params(function(req)
      path = req.params.f.tempfile
      error("boom")
    end)
    assert.has_error(function()
      h({ headers = { ["content-type"] =
        "multipart/form-data; boundary=" .. B }, body = f })
    end)
    assert.is_false(helper.exists(path))
    f:close()
  end)

  it("finds every delimiter whatever its offset from a 64 KiB read",
  function()
    local B = "boundary-" .. ("q"):rep(40)
    local head = "--" .. B .. "\r\nContent-Disposition: form-data; "
      .. "name=\"a\"\r\n\r\n"
    local tail = "\r\n--" .. B .. "\r\nContent-Disposition: form-data; "
      .. "name=\"b\"; filename=\"b\"\r\n\r\nB\r\n--" .. B .. "--"
    local ctype = "multipart/form-data; boundary=" .. B
    for _, kind in ipairs({ "string", "file" }) do
      for shift = -#tail - 2, 4 do
        local n = 65536 - #head + shift
        local value = ("v"):rep(n - 1) .. "\r"
        local body = head .. value .. tail
        if kind == "file" then
          local f = io.tmpfile()
          f:write(body)
          f:seek("set", 0)
          body = f
        end
        local got
        local h = mw.wrap_multipart_params(function(req)
          got = req.params
          got.b.data = helper.read_file(got.b.tempfile)
        end)
        h({ headers = { ["content-type"] = ctype }, body = body })
        assert(got and got.a == value,
          kind .. " body, shift " .. shift .. ": field a differs")
        assert.equal("B", got.b.data)
      end
    end
  end)
end)

-- ---------------------------------------------------------------------------

describe("wrap_cookies", function()
  local srv
  setup(function()
    srv = helper.start(PRELUDE .. [[
local sse = require "ringlet.sse"
local ALL = {
  plain = "v",
  coded = "a b;c,d\"e\\f%é",
  full = { value = "1", path = "/app", domain = "example.com",
           max_age = 3600, expires = 1700000000, secure = true,
           http_only = true, same_site = "strict" },
  lax = { value = 2, expires = "Wed, 21 Oct 2065 07:28:00 GMT",
          same_site = "Lax", secure = false },
  none = { value = "", max_age = 0, same_site = "none" },
}
local routes = {}
routes["/show"] = function(req) return text(serialize(req.cookies)) end
routes["/set"] = function() return { status = 200, body = "ok",
  cookies = ALL } end
routes["/keep"] = function(req)
  return { status = 200, body = "ok", cookies = {
    greeting = "hello world; é", n = { value = "42", path = "/" } } }
end
routes["/merge"] = function()
  return { status = 201, headers = { ["Set-Cookie"] = "own=1; Path=/",
    ["x-other"] = "kept" }, body = "merged", cookies = { a = "1" } }
end
routes["/merge2"] = function()
  return { headers = { ["set-cookie"] = { "x=1", "y=2" },
    ["SET-COOKIE"] = "z=3" }, cookies = { a = { value = "1" } } }
end
routes["/none"] = function()
  return { headers = { ["Set-Cookie"] = "own=1" }, body = "plain" }
end
routes["/badname"] = function() return { cookies = { ["bad name"] = "x" } } end
routes["/badattr"] = function()
  return { cookies = { ok = { value = "1", path = "/a;b" } } }
end
routes["/badcrlf"] = function()
  return { cookies = { ok = { value = "1", domain = "a\r\nX-Evil: 1" } } }
end
routes["/sleep"] = function(req)
  ringlet.sleep(20)
  return { body = "slept", cookies = { seen = req.cookies.a.value } }
end
routes["/stream"] = function(req)
  local res = ringlet.as_channel(req, { on_open = function(ch)
    ch:send("hi", { close = true })
  end })
  res.cookies = { chan = "1" }
  return res
end
routes["/sse"] = function(req)
  local res = sse.as_channel(req, { on_open = function(ch)
    sse.send(ch, "tick", { close = true })
  end })
  res.cookies = { events = "yes" }
  return res
end
routes["/ws"] = function(req)
  local res = ringlet.as_channel(req, { on_open = function(ch)
    ch:close(1000, "bye")
  end })
  res.cookies = { ws = "1" }
  return res
end
return mw.wrap_cookies(function(req)
  return routes[req.uri](req)
end)
]])
  end)
  teardown(function() stop_ok(srv) end)

  local function set_cookies(res)
    local list = {}
    for _, h in ipairs(res.header_list) do
      if h[1] == "set-cookie" then list[#list + 1] = h[2] end
    end
    return list
  end

  it("parses the Cookie header in Ring's shape", function()
    local v = curl_value("-b", 'a=1; b=%41%42; c="quoted"; d=%zz; e=x=y; '
      .. 'a=second; f=; g=%22in%22', url(srv, "/show"))
    assert.same({ a = { value = "1" }, b = { value = "AB" },
      c = { value = "quoted" }, d = { value = "%zz" }, e = { value = "x=y" },
      f = { value = "" }, g = { value = '"in"' } }, v)
    assert.same({}, curl_value(url(srv, "/show")))
  end)

  it("writes every attribute, an expires number as an HTTP-date, and "
    .. "encodes values", function()
    local res = assert(helper.request(srv.port, "GET", "/set"))
    assert.equal(200, res.status)
    assert.equal("ok", res.body)
    assert.same({
      "coded=a%20b%3Bc%2Cd%22e%5Cf%25%C3%A9",
      "full=1; Domain=example.com; Path=/app; Max-Age=3600; "
        .. "Expires=Tue, 14 Nov 2023 22:13:20 GMT; Secure; HttpOnly; "
        .. "SameSite=Strict",
      "lax=2; Expires=Wed, 21 Oct 2065 07:28:00 GMT; SameSite=Lax",
      "none=; Max-Age=0; SameSite=None",
      "plain=v",
    }, set_cookies(res))
  end)

  it("round-trips cookies through curl's cookie jar", function()
    local jar = helper.marker_path()
    finally(function() os.remove(jar) end)
    local out, code, err = helper.curl("-c", jar, url(srv, "/keep"))
    assert(code == 0, err)
    assert.equal("ok", out)
    local v = curl_value("-b", jar, url(srv, "/show"))
    assert.same({ greeting = { value = "hello world; é" },
      n = { value = "42" } }, v)
  end)

  it("adds its lines after the handler's own Set-Cookie, whatever its "
    .. "spelling", function()
    local res = assert(helper.request(srv.port, "GET", "/merge"))
    assert.equal(201, res.status)
    assert.equal("merged", res.body)
    assert.equal("kept", res.headers["x-other"])
    assert.same({ "own=1; Path=/", "a=1" }, set_cookies(res))
    res = assert(helper.request(srv.port, "GET", "/merge2"))
    assert.same({ "z=3", "x=1", "y=2", "a=1" }, set_cookies(res))
    res = assert(helper.request(srv.port, "GET", "/none"))
    assert.same({ "own=1" }, set_cookies(res))
    assert.equal("plain", res.body)
  end)

  it("answers 500 for a bad cookie name or attribute, and serves on",
  function()
    for _, path in ipairs({ "/badname", "/badattr", "/badcrlf" }) do
      local res = assert(helper.request(srv.port, "GET", path))
      assert.equal(500, res.status, path)
      assert.same({}, set_cookies(res))
      assert.is_nil(res.headers["x-evil"])
    end
    local res = assert(helper.request(srv.port, "GET", "/set"))
    assert.equal(200, res.status)
    local err = srv:stderr()
    assert.truthy(err:find("the name must be a token", 1, true), err)
    assert.truthy(err:find("path must not contain", 1, true), err)
  end)

  it("lets the handler sleep", function()
    local res = assert(helper.request(srv.port, "GET", "/sleep",
      { Cookie = "a=7" }))
    assert.equal("slept", res.body)
    assert.same({ "seen=7" }, set_cookies(res))
  end)

  it("sets cookies on an HTTP stream's head, an event stream's and a "
    .. "WebSocket's 101", function()
    local res = assert(helper.request(srv.port, "GET", "/stream"))
    assert.equal(200, res.status)
    assert.equal("hi", res.body)
    assert.same({ "chan=1" }, set_cookies(res))
    res = assert(helper.request(srv.port, "GET", "/sse"))
    assert.equal("text/event-stream; charset=utf-8",
      res.headers["content-type"])
    assert.same({ "events=yes" }, set_cookies(res))
    local sock, hs = wsc.handshake(srv.port, "/ws")
    assert(sock, hs)
    assert.equal(101, hs.status)
    assert.same({ "ws=1" }, set_cookies(hs))
    local frame = assert(wsc.read_close(sock))
    assert.equal(1000, (wsc.close_code(frame)))
    sock:close()
  end)

  it("passes nil and cookie-less responses on as they are, and copies "
    .. "the response it changes", function()
    local h = mw.wrap_cookies(function() return nil end)
    assert.is_nil(h({ headers = {} }))
    local plain = { status = 200, body = "x" }
    h = mw.wrap_cookies(function() return plain end)
    assert.equal(plain, h({ headers = {} }))
    local shared = { status = 200, cookies = { a = "1" } }
    h = mw.wrap_cookies(function() return shared end)
    for _ = 1, 2 do
      local res = h({ headers = {} })
      assert.same({ status = 200, headers = { ["set-cookie"] = { "a=1" } } },
        res)
    end
    assert.same({ a = "1" }, shared.cookies)
    local req = {} -- no headers at all
    assert.same({ status = 200, headers = { ["set-cookie"] = { "a=1" } } },
      h(req))
    assert.same({}, req.cookies)
  end)
end)

-- ---------------------------------------------------------------------------

describe("the static re-exports", function()
  it("call ringlet.static's functions, loading it only then", function()
    local saved = package.loaded["ringlet.static"]
    finally(function() package.loaded["ringlet.static"] = saved end)
    local calls = {}
    local function fake(name)
      return function(...)
        calls[#calls + 1] = { name, select("#", ...), ... }
        return name
      end
    end
    package.loaded["ringlet.static"] = {
      wrap = fake("wrap"), wrap_head = fake("wrap_head"),
      wrap_content_type = fake("wrap_content_type"),
      wrap_not_modified = fake("wrap_not_modified"),
    }
    local h = function() end
    local o = {}
    assert.equal("wrap", mw.wrap_static(h, "/srv", o))
    assert.equal("wrap_head", mw.wrap_head(h))
    assert.equal("wrap_content_type", mw.wrap_content_type(h, o))
    assert.equal("wrap_not_modified", mw.wrap_not_modified(h))
    assert.same({ { "wrap", 3, h, "/srv", o }, { "wrap_head", 1, h },
      { "wrap_content_type", 2, h, o }, { "wrap_not_modified", 1, h } },
      calls)
  end)
end)
