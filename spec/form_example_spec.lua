-- examples/form.lua: an HTML form with a file upload, cookies and a search
-- page on ringlet.middleware. The example file itself runs in a ringlet
-- child process (helper.start); curl is the browser, with a cookie jar.

local helper = require "helper"

describe("examples/form.lua", function()
  local srv, jar, work
  setup(function()
    srv = helper.start({ source = helper.repo_file("examples/form.lua") })
  end)
  teardown(function() helper.assert_clean_stop(srv) end)
  before_each(function()
    jar = helper.marker_path()
    work = os.tmpname()
  end)
  after_each(function()
    os.remove(jar)
    os.remove(work)
  end)

  local function url(path)
    return ("http://127.0.0.1:%d%s"):format(srv.port, path)
  end

  -- curl with these arguments and the jar; returns the body and the status
  local function curl(...)
    local out, code, err = helper.curl("-b", jar, "-c", jar,
      "-w", "\n%{http_code}", ...)
    assert(code == 0, "curl failed: " .. err)
    local body, status = out:match("^(.*)\n(%d+)$")
    return body, tonumber(status)
  end

  it("serves the form to a new visitor", function()
    local body, status = curl(url("/"))
    assert.equal(200, status)
    assert.truthy(body:find('<form method="post" action="/submit" '
      .. 'enctype="multipart/form-data">', 1, true), body)
    assert.truthy(body:find('<input type="text" name="name">', 1, true))
    assert.truthy(body:find('<input type="file" name="file">', 1, true))
    assert.truthy(body:find('<button type="submit">', 1, true))
    assert.truthy(body:find("Hello, stranger", 1, true))
    local _, missing = curl(url("/nowhere"))
    assert.equal(404, missing)
  end)

  it("takes a name and a file, answers 303 with cookies, and greets the "
    .. "visitor after", function()
    local f = assert(io.open(work, "wb"))
    f:write("\137PNG\r\n\26\n" .. ("\0"):rep(1000))
    f:close()
    local res = assert(helper.curl("-s", "-D", "-", "-o", "/dev/null",
      "-c", jar, "-F", "name=Ada <Lovelace>",
      "-F", "file=@" .. work .. ";filename=picture.png", url("/submit")))
    assert.truthy(res:find("^HTTP/1%.1 303"), res)
    -- header names in lower case
    res = res:gsub("\r\n([^:\r\n]+):", function(n)
      return "\r\n" .. n:lower() .. ":"
    end)
    assert.truthy(res:find("\r\nlocation: /\r\n", 1, true), res)
    assert.truthy(res:find("\r\nset-cookie: name=Ada%20<Lovelace>; Path=/; "
      .. "Max-Age=2592000; HttpOnly; SameSite=Lax", 1, true), res)
    local body, status = curl(url("/"))
    assert.equal(200, status)
    assert.truthy(body:find("Welcome back, Ada &lt;Lovelace&gt;!", 1, true),
      body)
    assert.truthy(body:find("Your last upload: picture.png, 1008 bytes, "
      .. "starting 89504e470d0a1a0a0000000000000000", 1, true), body)
  end)

  it("takes an upload larger than body_file: spooled, then parsed from "
    .. "the file", function()
    assert(os.execute(("head -c %d /dev/urandom > %s"):format(5 * 1024 * 1024,
      helper.quote(work))))
    local first = helper.read_file(work):sub(1, 16):gsub(".", function(c)
      return ("%02x"):format(c:byte())
    end)
    local body, status = curl("-L", "-F", "name=Big", "-F",
      "file=@" .. work .. ";filename=big.bin", url("/submit"))
    assert.equal(200, status)
    assert.truthy(body:find("Your last upload: big.bin, 5242880 bytes, "
      .. "starting " .. first, 1, true), body)
  end)

  it("follows the redirect in one go (curl -L) and forgets on request",
  function()
    local body, status = curl("-L", "-F", "name=Grace", url("/submit"))
    assert.equal(200, status)
    assert.truthy(body:find("Welcome back, Grace!", 1, true), body)
    assert.falsy(body:find("last upload", 1, true), body)
    body, status = curl("-L", "-d", "", url("/forget"))
    assert.equal(200, status)
    -- the page curl was sent to came without the cookies
    assert.truthy(body:find("Hello, stranger", 1, true), body)
    local res = helper.request(srv.port, "POST", "/forget", nil, "")
    assert.equal(303, res.status)
    local lines = {}
    for _, h in ipairs(res.header_list) do
      if h[1] == "set-cookie" then lines[#lines + 1] = h[2] end
    end
    assert.same({
      "name=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
      "upload=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
    }, lines)
  end)

  it("shows the query params of a search", function()
    local body, status = curl(url("/search?q=lua+%3Cring%3E&page=2&tag=a"
      .. "&tag=b"))
    assert.equal(200, status)
    assert.truthy(body:find("You searched for: lua &lt;ring&gt;", 1, true),
      body)
    assert.truthy(body:find("<li>page = 2</li><li>q = lua &lt;ring&gt;</li>"
      .. "<li>tag = a, b</li>", 1, true), body)
  end)
end)
