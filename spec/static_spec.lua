-- ringlet.static (lua/ringlet/static.lua): files served as nginx and Ring's
-- wrap-file, file-response, wrap-not-modified, wrap-content-type and
-- wrap-head do.
--
-- Each spec builds a fresh tree under an os.tmpname()-derived directory
-- (removed in `finally`):
--
--   BASE/secret.txt          SECRET, outside the root: never served
--   BASE/www2/secret2.txt    SECRET, a sibling whose name the root prefixes
--   BASE/out/index.html      SECRET, a directory outside the root
--   BASE/www/                the root: a.txt (mtime 1700000000.123456789),
--                            typed files, big.bin (1 MiB of random bytes),
--                            sub/index.html, empty/, a/, "sp ace.txt",
--                            .hidden.txt, .git/config, %2e%2e/secret.txt
--                            (a directory literally named "%2e%2e"),
--                            back\slash.txt (a backslash in its name),
--                            link-in.txt -> a.txt, link-out.txt ->
--                            ../secret.txt, sib.txt -> ../www2/secret2.txt,
--                            outdir -> ../out
--
-- Servers run in child processes (helper.start); clients are raw sockets
-- (helper.request, helper.raw: the bytes as sent, escapes untouched) and
-- curl (-I, -r, -H, --path-as-is). Nothing is timed.

local helper = require "helper"

local SECRET = "TOP SECRET 7f3a"
local A_TXT = "hello, static\n"
local MTIME = 1700000000
local LAST_MODIFIED = "Tue, 14 Nov 2023 22:13:20 GMT"
local A_ETAG = ('"%x-%x"'):format(MTIME * 1000000000 + 123456789, #A_TXT)

local TYPED = {
  ["page.html"] = "text/html; charset=utf-8",
  ["old.htm"] = "text/html; charset=utf-8",
  ["style.css"] = "text/css; charset=utf-8",
  ["app.js"] = "text/javascript; charset=utf-8",
  ["mod.mjs"] = "text/javascript; charset=utf-8",
  ["data.json"] = "application/json",
  ["app.js.map"] = "application/json",
  ["notes.md"] = "text/markdown; charset=utf-8",
  ["table.csv"] = "text/csv; charset=utf-8",
  ["feed.xml"] = "application/xml; charset=utf-8",
  ["logo.svg"] = "image/svg+xml; charset=utf-8",
  ["pic.png"] = "image/png",
  ["PHOTO.JPG"] = "image/jpeg",
  ["anim.gif"] = "image/gif",
  ["img.webp"] = "image/webp",
  ["img.avif"] = "image/avif",
  ["favicon.ico"] = "image/x-icon",
  ["mod.wasm"] = "application/wasm",
  ["doc.pdf"] = "application/pdf",
  ["arch.zip"] = "application/zip",
  ["arch.tar.gz"] = "application/gzip",
  ["song.mp3"] = "audio/mpeg",
  ["clip.mp4"] = "video/mp4",
  ["clip.webm"] = "video/webm",
  ["sound.ogg"] = "audio/ogg",
  ["font.woff"] = "font/woff",
  ["font.woff2"] = "font/woff2",
  ["font.ttf"] = "font/ttf",
  ["font.otf"] = "font/otf",
  ["README"] = "application/octet-stream",
  ["weird.xyz"] = "application/octet-stream",
}

local function sh(script)
  local ok = os.execute(script)
  assert(ok, "shell failed: " .. script)
end

local q = helper.quote

-- Builds the tree above; returns BASE (removed when the spec ends).
local function tree(defer)
  local base = os.tmpname()
  os.remove(base)
  defer(function() os.execute("rm -rf " .. q(base)) end)
  local www = base .. "/www"
  local lines = {
    "set -e",
    "mkdir -p " .. q(www) .. "/sub " .. q(www) .. "/empty " .. q(www)
      .. "/a " .. q(www) .. "/.git " .. q(www .. "/%2e%2e") .. " "
      .. q(base) .. "/www2 " .. q(base) .. "/out",
    "printf %s " .. q(SECRET) .. " > " .. q(base) .. "/secret.txt",
    "printf %s " .. q(SECRET) .. " > " .. q(base) .. "/www2/secret2.txt",
    "printf %s " .. q(SECRET) .. " > " .. q(base) .. "/out/index.html",
    "printf %s " .. q(A_TXT) .. " > " .. q(www) .. "/a.txt",
    "touch -d @" .. MTIME .. ".123456789 " .. q(www) .. "/a.txt",
    "printf %s '<h1>home</h1>' > " .. q(www) .. "/index.html",
    "printf %s '<h1>sub</h1>' > " .. q(www) .. "/sub/index.html",
    "printf %s 'home.htm' > " .. q(www) .. "/sub/home.htm",
    "printf %s 'spaced' > " .. q(www .. "/sp ace.txt"),
    "printf %s 'dot-hidden' > " .. q(www) .. "/.hidden.txt",
    "printf %s 'dot-git' > " .. q(www) .. "/.git/config",
    "printf %s 'literal' > " .. q(www .. "/%2e%2e/secret.txt"),
    "printf %s 'backslash' > " .. q(www .. "/back\\slash.txt"),
    "head -c 1048576 /dev/urandom > " .. q(www) .. "/big.bin",
    "ln -s a.txt " .. q(www) .. "/link-in.txt",
    "ln -s ../secret.txt " .. q(www) .. "/link-out.txt",
    "ln -s ../www2/secret2.txt " .. q(www) .. "/sib.txt",
    "ln -s ../out " .. q(www) .. "/outdir",
  }
  for name in pairs(TYPED) do
    lines[#lines + 1] = "printf x > " .. q(www .. "/" .. name)
  end
  sh(table.concat(lines, "\n"))
  return base
end

local FALLBACK = [[
local function fallback(req)
  return { status = 404, headers = { ["content-type"] = "text/plain" },
           body = "handler " .. req.request_method .. " " .. req.uri }
end
]]

-- A server: static.wrap(fallback, root, opts) (how = "serve":
-- static.serve(root, opts)); opts is Lua source.
local function start(defer, root, opts, how)
  local src = "local static = require 'ringlet.static'\n" .. FALLBACK
    .. ("local ROOT = %q\n"):format(root)
  if how == "serve" then
    src = src .. ("return static.serve(ROOT, %s)\n"):format(opts or "nil")
  else
    src = src .. ("return static.wrap(fallback, ROOT, %s)\n")
      :format(opts or "nil")
  end
  local srv = helper.start(src)
  defer(function() srv:stop() end)
  return srv
end

local function get(srv, path, headers, method)
  local res, err = helper.request(srv.port, method or "GET", path, headers)
  assert(res, "request failed: " .. tostring(err))
  return res
end

local function read(name)
  local f = assert(io.open(name, "rb"))
  local data = f:read("a")
  f:close()
  return data
end

local function url(srv, path)
  return "http://127.0.0.1:" .. srv.port .. path
end

-- curl -si's output parsed as a response (with -I: to HEAD, no body).
local function curl_response(...)
  local out, code, err = helper.curl("-si", ...)
  assert(code == 0, "curl failed: " .. err)
  local head = select(1, ...) == "-I" and "HEAD" or nil
  return assert(helper.read_response(helper.string_reader(out), head))
end

local function without_date(headers)
  local copy = {}
  for k, v in pairs(headers) do
    if k ~= "date" then copy[k] = v end
  end
  return copy
end

describe("ringlet.static.wrap: a file's answer", function()
  it("has a Content-Type from the extension (charset for text), else "
    .. "application/octet-stream", function()
    local defer = helper.cleanup(finally)
    local base = tree(defer)
    local srv = start(defer, base .. "/www")
    for name, want in pairs(TYPED) do
      local res = get(srv, "/" .. name)
      assert.equal(200, res.status, name)
      assert.equal(want, res.headers["content-type"], name)
      assert.equal("x", res.body, name)
    end
    helper.assert_clean_stop(srv)
  end)

  it("sends a 1 MiB random file byte for byte (sendfile) with its "
    .. "Content-Length", function()
    local defer = helper.cleanup(finally)
    local base = tree(defer)
    local srv = start(defer, base .. "/www")
    local want = read(base .. "/www/big.bin")
    local res = get(srv, "/big.bin")
    assert.equal(200, res.status)
    assert.equal("1048576", res.headers["content-length"])
    assert.equal("application/octet-stream", res.headers["content-type"])
    assert.is_true(res.body == want, "raw socket body differs")
    local out = base .. "/got.bin"
    local _, code, err = helper.curl("-o", out, url(srv, "/big.bin"))
    assert(code == 0, err)
    assert.is_true(read(out) == want, "curl body differs")
    helper.assert_clean_stop(srv)
  end)

  it("has ETag (nanosecond mtime and size, hex), Last-Modified, "
    .. "Accept-Ranges, and Cache-Control only with max_age", function()
    local defer = helper.cleanup(finally)
    local base = tree(defer)
    local srv = start(defer, base .. "/www")
    local res = get(srv, "/a.txt")
    assert.equal(200, res.status)
    assert.equal(A_TXT, res.body)
    assert.equal(A_ETAG, res.headers.etag)
    assert.equal(LAST_MODIFIED, res.headers["last-modified"])
    assert.equal("bytes", res.headers["accept-ranges"])
    assert.is_nil(res.headers["cache-control"])
    helper.assert_clean_stop(srv)

    srv = start(defer, base .. "/www", "{ max_age = 3600, etag = false }")
    res = get(srv, "/a.txt")
    assert.equal("public, max-age=3600", res.headers["cache-control"])
    assert.is_nil(res.headers.etag)
    assert.equal(LAST_MODIFIED, res.headers["last-modified"])
    helper.assert_clean_stop(srv)
  end)

  it("answers HEAD with GET's headers and no body bytes on the wire",
    function()
      local defer = helper.cleanup(finally)
      local base = tree(defer)
      local srv = start(defer, base .. "/www")
      for _, path in ipairs({ "/big.bin", "/a.txt", "/sub/" }) do
        local g = get(srv, path)
        local bytes = helper.raw(srv.port, "HEAD " .. path .. " HTTP/1.1\r\n"
          .. "Host: x\r\nConnection: close\r\n\r\n")
        local head_end = assert(bytes:find("\r\n\r\n", 1, true), bytes)
        assert.equal(#bytes, head_end + 3, "bytes after the head of " .. path)
        local h = assert(helper.read_response(helper.string_reader(bytes),
          "HEAD"))
        assert.equal(200, h.status)
        local want = without_date(g.headers)
        want.connection = "close"
        assert.same(want, without_date(h.headers))
        local c = curl_response("-I", url(srv, path))
        assert.same(without_date(g.headers), without_date(c.headers))
      end
      assert.equal("1048576", get(srv, "/big.bin", nil, "HEAD")
        .headers["content-length"])
      helper.assert_clean_stop(srv)
    end)
end)

describe("ringlet.static.wrap: conditional requests", function()
  it("answer If-None-Match (list, weak comparison, *) with 304, ETag and "
    .. "Last-Modified, no body", function()
    local defer = helper.cleanup(finally)
    local base = tree(defer)
    local srv = start(defer, base .. "/www")
    for _, inm in ipairs({ A_ETAG, '"zz", ' .. A_ETAG, "W/" .. A_ETAG,
                           "*" }) do
      local bytes = helper.raw(srv.port, "GET /a.txt HTTP/1.1\r\nHost: x\r\n"
        .. "If-None-Match: " .. inm .. "\r\nConnection: close\r\n\r\n")
      local res = assert(helper.read_response(helper.string_reader(bytes)))
      assert.equal(304, res.status, inm)
      assert.equal(A_ETAG, res.headers.etag)
      assert.equal(LAST_MODIFIED, res.headers["last-modified"])
      assert.is_nil(res.headers["content-length"])
      assert.equal(#bytes, bytes:find("\r\n\r\n", 1, true) + 3,
        "a 304 with body bytes")
    end
    local c = curl_response("-H", "If-None-Match: " .. A_ETAG,
      url(srv, "/a.txt"))
    assert.equal(304, c.status)
    local res = get(srv, "/a.txt", { ["If-None-Match"] = '"other"' })
    assert.equal(200, res.status)
    assert.equal(A_TXT, res.body)
    helper.assert_clean_stop(srv)
  end)

  it("answer If-Modified-Since (three date forms) with 304, ignore a bad "
    .. "date, and ignore it under If-None-Match", function()
    local defer = helper.cleanup(finally)
    local base = tree(defer)
    local srv = start(defer, base .. "/www")
    local cases = {
      { LAST_MODIFIED, 304 },
      { "Wed, 15 Nov 2023 00:00:00 GMT", 304 },
      { "Tuesday, 14-Nov-23 22:13:20 GMT", 304 },
      { "Tue Nov 14 22:13:20 2023", 304 },
      { "Tue, 14 Nov 2023 22:13:19 GMT", 200 },
      { "yesterday", 200 },
      { "Tue, 14 Nov 2023 22:13:20 PST", 200 },
    }
    for _, case in ipairs(cases) do
      local res = get(srv, "/a.txt", { ["If-Modified-Since"] = case[1] })
      assert.equal(case[2], res.status, case[1])
    end
    local res = get(srv, "/a.txt", { ["If-Modified-Since"] = LAST_MODIFIED,
      ["If-None-Match"] = '"other"' })
    assert.equal(200, res.status)
    assert.equal(A_TXT, res.body)
    helper.assert_clean_stop(srv)
  end)

  it("answer a failed If-Match or If-Unmodified-Since with 412", function()
    local defer = helper.cleanup(finally)
    local base = tree(defer)
    local srv = start(defer, base .. "/www")
    assert.equal(412, get(srv, "/a.txt", { ["If-Match"] = '"x"' }).status)
    assert.equal(412, get(srv, "/a.txt",
      { ["If-Match"] = "W/" .. A_ETAG }).status)
    assert.equal(200, get(srv, "/a.txt", { ["If-Match"] = A_ETAG }).status)
    assert.equal(412, get(srv, "/a.txt", { ["If-Unmodified-Since"] =
      "Tue, 14 Nov 2023 22:13:19 GMT" }).status)
    assert.equal(200, get(srv, "/a.txt",
      { ["If-Unmodified-Since"] = LAST_MODIFIED }).status)
    helper.assert_clean_stop(srv)
  end)
end)

describe("ringlet.static.wrap: ranges", function()
  it("answer bytes=a-b, a- and -n with 206 and Content-Range", function()
    local defer = helper.cleanup(finally)
    local base = tree(defer)
    local srv = start(defer, base .. "/www")
    local size = #A_TXT
    local cases = {
      { "bytes=0-4", 0, 4 }, { "bytes=7-", 7, size - 1 },
      { "bytes=-3", size - 3, size - 1 }, { "bytes=2-999999", 2, size - 1 },
      { "bytes=-999", 0, size - 1 }, { "BYTES = 1-1", 1, 1 },
      { "bytes=0-1,", 0, 1 },
    }
    for _, c in ipairs(cases) do
      local res = get(srv, "/a.txt", { Range = c[1] })
      assert.equal(206, res.status, c[1])
      assert.equal(("bytes %d-%d/%d"):format(c[2], c[3], size),
        res.headers["content-range"], c[1])
      assert.equal(A_TXT:sub(c[2] + 1, c[3] + 1), res.body, c[1])
      assert.equal(tostring(c[3] - c[2] + 1), res.headers["content-length"])
    end
    local r = curl_response("-r", "3-8", url(srv, "/a.txt"))
    assert.equal(206, r.status)
    assert.equal(A_TXT:sub(4, 9), r.body)
    -- a range of the big file goes through sendfile from an offset
    local big = read(base .. "/www/big.bin")
    r = get(srv, "/big.bin", { Range = "bytes=1000-600000" })
    assert.equal(206, r.status)
    assert.is_true(r.body == big:sub(1001, 600001))
    helper.assert_clean_stop(srv)
  end)

  it("answer an unsatisfiable range with 416 and bytes */SIZE", function()
    local defer = helper.cleanup(finally)
    local base = tree(defer)
    local srv = start(defer, base .. "/www")
    for _, range in ipairs({ "bytes=14-", "bytes=100-200", "bytes=-0",
                             "bytes=99999999999999999999999-" }) do
      local res = get(srv, "/a.txt", { Range = range })
      assert.equal(416, res.status, range)
      assert.equal("bytes */" .. #A_TXT, res.headers["content-range"])
    end
    helper.assert_clean_stop(srv)
  end)

  it("serve the whole file for several ranges, a malformed Range, or HEAD",
    function()
      local defer = helper.cleanup(finally)
      local base = tree(defer)
      local srv = start(defer, base .. "/www")
      for _, range in ipairs({ "bytes=0-1,3-4", "bytes=5-2", "items=0-1",
                               "bytes=abc", "bytes=-", "bytes=1-2-3",
                               "bytes 0-1" }) do
        local res = get(srv, "/a.txt", { Range = range })
        assert.equal(200, res.status, range)
        assert.equal(A_TXT, res.body, range)
        assert.is_nil(res.headers["content-range"])
      end
      local res = get(srv, "/a.txt", { Range = "bytes=0-1" }, "HEAD")
      assert.equal(200, res.status)
      assert.equal(tostring(#A_TXT), res.headers["content-length"])
      helper.assert_clean_stop(srv)
    end)

  it("honour If-Range: the same strong ETag or date gives the range, "
    .. "anything else the whole file", function()
    local defer = helper.cleanup(finally)
    local base = tree(defer)
    local srv = start(defer, base .. "/www")
    local cases = {
      { A_ETAG, 206 }, { LAST_MODIFIED, 206 }, { '"other"', 200 },
      { "W/" .. A_ETAG, 200 }, { "Tue, 14 Nov 2023 22:13:21 GMT", 200 },
      { "not a date", 200 },
    }
    for _, c in ipairs(cases) do
      local res = get(srv, "/a.txt", { Range = "bytes=0-4",
        ["If-Range"] = c[1] })
      assert.equal(c[2], res.status, c[1])
      assert.equal(c[2] == 206 and "hello" or A_TXT, res.body)
    end
    local r = curl_response("-r", "0-4", "-H", "If-Range: " .. A_ETAG,
      url(srv, "/a.txt"))
    assert.equal(206, r.status)
    helper.assert_clean_stop(srv)
  end)
end)

describe("ringlet.static.wrap: paths", function()
  it("serve a directory's index, redirect the slashless form (301, "
    .. "query kept), and pass directories without one on", function()
    local defer = helper.cleanup(finally)
    local base = tree(defer)
    local srv = start(defer, base .. "/www")
    local res = get(srv, "/")
    assert.equal(200, res.status)
    assert.equal("<h1>home</h1>", res.body)
    assert.equal("text/html; charset=utf-8", res.headers["content-type"])
    assert.equal("<h1>sub</h1>", get(srv, "/sub/").body)
    res = get(srv, "/sub?x=1")
    assert.equal(301, res.status)
    assert.equal("/sub/?x=1", res.headers.location)
    res = get(srv, "//sub")
    assert.equal(301, res.status)
    assert.equal("/sub/", res.headers.location) -- never "//sub/"
    assert.equal("handler get /empty/", get(srv, "/empty/").body)
    assert.equal("handler get /empty", get(srv, "/empty").body)
    assert.equal("handler get /a.txt/", get(srv, "/a.txt/").body)
    assert.equal("handler get /nope", get(srv, "/nope").body)
    assert.equal("handler post /a.txt", get(srv, "/a.txt", nil,
      "POST").body)
    helper.assert_clean_stop(srv)

    srv = start(defer, base .. "/www", "{ index = false }")
    assert.equal("handler get /sub/", get(srv, "/sub/").body)
    assert.equal("handler get /sub", get(srv, "/sub").body)
    helper.assert_clean_stop(srv)

    srv = start(defer, base .. "/www", "{ index = 'home.htm' }")
    assert.equal("home.htm", get(srv, "/sub/").body)
    assert.equal("handler get /", get(srv, "/").body)
    helper.assert_clean_stop(srv)
  end)

  it("with a prefix, serve only under it, stripped", function()
    local defer = helper.cleanup(finally)
    local base = tree(defer)
    local srv = start(defer, base .. "/www", "{ prefix = '/assets/' }")
    assert.equal(A_TXT, get(srv, "/assets/a.txt").body)
    assert.equal("<h1>sub</h1>", get(srv, "/assets/sub/").body)
    local res = get(srv, "/assets")
    assert.equal(301, res.status)
    assert.equal("/assets/", res.headers.location)
    assert.equal("<h1>home</h1>", get(srv, "/assets/").body)
    assert.equal("handler get /a.txt", get(srv, "/a.txt").body)
    assert.equal("handler get /assetsx/a.txt",
      get(srv, "/assetsx/a.txt").body)
    helper.assert_clean_stop(srv)
  end)

  it("decode the path once: escapes name files, %252e is literal, a bad "
    .. "escape or NUL is 400", function()
    local defer = helper.cleanup(finally)
    local base = tree(defer)
    local srv = start(defer, base .. "/www")
    assert.equal("spaced", get(srv, "/sp%20ace.txt").body)
    assert.equal(A_TXT, get(srv, "/a%2Etxt").body)
    assert.equal("<h1>sub</h1>", get(srv, "/sub%2Findex.html").body)
    -- decoded once: "%2e%2e" is a directory's literal name
    assert.equal("literal", get(srv, "/%252e%252e/secret.txt").body)
    assert.equal(404, get(srv, "/%252e%252e/%252e%252e/secret.txt").status)
    for _, bad in ipairs({ "/%zz", "/a%2", "/a%", "/a.txt%00",
                           "/%00/../secret.txt", "/sub%2F%00" }) do
      local res = get(srv, bad)
      assert.equal(400, res.status, bad)
      assert.equal("Bad Request\n", res.body, bad)
    end
    helper.assert_clean_stop(srv)
  end)
end)

describe("ringlet.static.wrap: never outside the root", function()
  local ESCAPES = {
    "/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2e%2Fsecret.txt",
    "/.%2E/secret.txt", "/a/..%2f..%2fsecret.txt",
    "/a/%2e%2e/%2e%2e/secret.txt",
    "/..\\secret.txt", "/a\\..\\..\\secret.txt", "/%5c..%5csecret.txt",
    "/..%5csecret.txt", "/../www2/secret2.txt", "/%2e%2e/www2/secret2.txt",
    "/./a.txt", "/a/./../a.txt", "//../secret.txt",
    "/%252e%252e/%252e%252e/secret.txt", "/..", "/a/..",
    -- a backslash is refused even where it is only part of a name
    "/back\\slash.txt", "/back%5cslash.txt",
  }

  it("refuses . and .. segments and backslashes however spelled (404 from the "
    .. "handler)", function()
    local defer = helper.cleanup(finally)
    local base = tree(defer)
    for _, opts in ipairs({ "nil", "{ allow_symlinks = true, dotfiles = true }",
                            "{ prefix = '/a' }" }) do
      local srv = start(defer, base .. "/www", opts, "serve")
      for _, path in ipairs(ESCAPES) do
        local res = get(srv, path)
        assert.equal(404, res.status, path .. " " .. opts)
        assert.equal("Not Found\n", res.body, path)
        assert.is_nil(res.body:find(SECRET, 1, true), path)
      end
      helper.assert_clean_stop(srv)
    end
  end)

  it("refuses them from curl --path-as-is too", function()
    local defer = helper.cleanup(finally)
    local base = tree(defer)
    local srv = start(defer, base .. "/www", nil, "serve")
    for _, path in ipairs({ "/../secret.txt", "/%2e%2e/secret.txt",
                            "/a/..%2f..%2fsecret.txt", "/..\\secret.txt",
                            "/a/../../secret.txt" }) do
      local res = curl_response("--path-as-is", url(srv, path))
      assert.equal(404, res.status, path)
      assert.is_nil(res.body:find(SECRET, 1, true), path)
    end
    helper.assert_clean_stop(srv)
  end)

  it("refuses links out of the root by default (the sibling www2 too), "
    .. "serves them with allow_symlinks", function()
    local defer = helper.cleanup(finally)
    local base = tree(defer)
    local srv = start(defer, base .. "/www")
    assert.equal(A_TXT, get(srv, "/link-in.txt").body)
    for _, path in ipairs({ "/link-out.txt", "/sib.txt", "/outdir/",
                            "/outdir/index.html", "/outdir" }) do
      local res = get(srv, path)
      assert.equal("handler get " .. path, res.body, path)
    end
    helper.assert_clean_stop(srv)

    srv = start(defer, base .. "/www", "{ allow_symlinks = true }")
    assert.equal(SECRET, get(srv, "/link-out.txt").body)
    assert.equal(SECRET, get(srv, "/sib.txt").body)
    assert.equal(SECRET, get(srv, "/outdir/").body)
    helper.assert_clean_stop(srv)
  end)

  it("compares real paths as root .. '/': a root of BASE/www serves "
    .. "nothing from BASE/www2 even through a root that is a link", function()
    local defer = helper.cleanup(finally)
    local base = tree(defer)
    -- the root itself is a symbolic link: its realpath is what counts
    sh("ln -s www " .. q(base .. "/root-link"))
    local srv = start(defer, base .. "/root-link")
    assert.equal(A_TXT, get(srv, "/a.txt").body)
    assert.equal("handler get /sib.txt", get(srv, "/sib.txt").body)
    helper.assert_clean_stop(srv)
  end)

  it("refuses dotfiles unless dotfiles = true", function()
    local defer = helper.cleanup(finally)
    local base = tree(defer)
    local srv = start(defer, base .. "/www")
    assert.equal("handler get /.hidden.txt", get(srv, "/.hidden.txt").body)
    assert.equal("handler get /.git/config", get(srv, "/.git/config").body)
    assert.equal("handler get /%2egit/config",
      get(srv, "/%2egit/config").body)
    helper.assert_clean_stop(srv)
    srv = start(defer, base .. "/www", "{ dotfiles = true }")
    assert.equal("dot-hidden", get(srv, "/.hidden.txt").body)
    assert.equal("dot-git", get(srv, "/.git/config").body)
    helper.assert_clean_stop(srv)
  end)
end)

describe("ringlet.static.serve and file_response", function()
  it("serve answers 404 Not Found and 405 with Allow for other methods",
    function()
      local defer = helper.cleanup(finally)
      local base = tree(defer)
      local srv = start(defer, base .. "/www", nil, "serve")
      assert.equal(A_TXT, get(srv, "/a.txt").body)
      local res = get(srv, "/nope")
      assert.equal(404, res.status)
      assert.equal("text/plain; charset=utf-8", res.headers["content-type"])
      assert.equal("Not Found\n", res.body)
      for _, m in ipairs({ "POST", "PUT", "DELETE" }) do
        res = get(srv, "/a.txt", { ["Content-Length"] = "0" }, m)
        assert.equal(405, res.status, m)
        assert.equal("GET, HEAD", res.headers.allow)
      end
      helper.assert_clean_stop(srv)
    end)

  it("file_response answers for one file, with validators and ranges, and "
    .. "nil for what is not a regular file", function()
    local defer = helper.cleanup(finally)
    local base = tree(defer)
    local srv = helper.start(([[
local static = require "ringlet.static"
local ROOT = %q
return function(req)
  local path = ({ ["/one"] = ROOT .. "/a.txt", ["/dir"] = ROOT,
                  ["/missing"] = ROOT .. "/nope",
                  ["/nul"] = ROOT .. "\0" })[req.uri]
  local res = static.file_response(req, path, { max_age = 5 })
  return res or { status = 404, body = "nil" }
end
]]):format(base .. "/www"))
    defer(function() srv:stop() end)
    local res = get(srv, "/one")
    assert.equal(A_TXT, res.body)
    assert.equal("text/plain; charset=utf-8", res.headers["content-type"])
    assert.equal("public, max-age=5", res.headers["cache-control"])
    assert.equal(A_ETAG, res.headers.etag)
    assert.equal(304, get(srv, "/one", { ["If-None-Match"] = A_ETAG }).status)
    res = get(srv, "/one", { Range = "bytes=-6" })
    assert.equal(206, res.status)
    assert.equal("tatic\n", res.body)
    for _, p in ipairs({ "/dir", "/missing", "/nul" }) do
      assert.equal("nil", get(srv, p).body, p)
    end
    helper.assert_clean_stop(srv)
  end)
end)

describe("ringlet.static middleware", function()
  it("wrap_head: the handler sees GET, the head keeps the body's "
    .. "Content-Length, no body goes out", function()
    local defer = helper.cleanup(finally)
    local base = tree(defer)
    local srv = helper.start(([[
local static = require "ringlet.static"
local FILE = %q
local seen = {}
local inner = static.wrap_head(function(req)
  seen[#seen + 1] = req.request_method
  if req.uri == "/file" then return { body = io.open(FILE, "rb") } end
  return { headers = { ["content-type"] = "text/plain" }, body = "hello, head" }
end)
return function(req)
  if req.uri == "/seen" then return { body = table.concat(seen, " ") } end
  local res = inner(req)
  seen[#seen + 1] = "after:" .. req.request_method
  return res
end
]]):format(base .. "/www/big.bin"))
    defer(function() srv:stop() end)
    for _, c in ipairs({ { "/text", "11" }, { "/file", "1048576" } }) do
      local bytes = helper.raw(srv.port, "HEAD " .. c[1] .. " HTTP/1.1\r\n"
        .. "Host: x\r\nConnection: close\r\n\r\n")
      assert.equal(#bytes, bytes:find("\r\n\r\n", 1, true) + 3, c[1])
      local res = helper.read_response(helper.string_reader(bytes), "HEAD")
      assert.equal(200, res.status)
      assert.equal(c[2], res.headers["content-length"], c[1])
    end
    assert.equal("hello, head", get(srv, "/text").body)
    assert.equal("get after:head get after:head get after:get",
      get(srv, "/seen").body)
    helper.assert_clean_stop(srv)
  end)

  it("wrap_content_type: a type from the URI when the response has none",
    function()
      local defer = helper.cleanup(finally)
      local srv = helper.start([[
local static = require "ringlet.static"
local SHARED = { body = "x" }   -- one table for every answer: never changed
local function inner(req)
  if req.uri == "/typed.css" then
    return { headers = { ["Content-Type"] = "text/x-mine" }, body = "x" }
  end
  return SHARED
end
local plain = static.wrap_content_type(inner)
local custom = static.wrap_content_type(inner,
  { mime_types = { gmi = "text/gemini" }, default = "text/plain" })
return function(req)
  if req.uri:find("^/custom/") then return custom(req) end
  return plain(req)
end
]])
      defer(function() srv:stop() end)
      local cases = {
        { "/a/style.css", "text/css; charset=utf-8" },
        { "/page.HTML?x=1", "text/html; charset=utf-8" },
        { "/pic.png", "image/png" },
        { "/typed.css", "text/x-mine" },
        { "/noext", "application/octet-stream" },
        { "/x.unknown", "application/octet-stream" },
        { "/custom/a.gmi", "text/gemini" },
        { "/custom/x.unknown", "text/plain" },
        { "/custom/a.js", "text/javascript; charset=utf-8" },
        { "/pic.png", "image/png" },
      }
      for _, c in ipairs(cases) do
        local res = get(srv, c[1])
        assert.equal(c[2], res.headers["content-type"], c[1])
        assert.equal("x", res.body)
      end
      helper.assert_clean_stop(srv)
    end)

  it("wrap_not_modified: a matching 200 becomes a bodiless 304, a file "
    .. "body is closed", function()
    local defer = helper.cleanup(finally)
    local base = tree(defer)
    local srv = helper.start(([[
local static = require "ringlet.static"
local FILE = %q
local last
local inner = static.wrap_not_modified(function(req)
  if req.uri == "/file" then
    last = io.open(FILE, "rb")
    return { headers = { etag = '"f1"' }, body = last }
  elseif req.uri == "/gone" then
    return { status = 404, headers = { etag = '"v1"' }, body = "gone" }
  end
  return { headers = { ETag = '"v1"', ["Last-Modified"] = %q,
                       ["content-type"] = "text/plain" }, body = "payload" }
end)
return function(req)
  if req.uri == "/closed" then return { body = io.type(last) } end
  return inner(req)
end
]]):format(base .. "/www/big.bin", LAST_MODIFIED))
    defer(function() srv:stop() end)
    local cases = {
      { { ["If-None-Match"] = '"v1"' }, 304 },
      { { ["If-None-Match"] = '"x", W/"v1"' }, 304 },
      { { ["If-None-Match"] = "*" }, 304 },
      { { ["If-None-Match"] = '"v2"' }, 200 },
      { { ["If-None-Match"] = '"v2"', ["If-Modified-Since"] =
        LAST_MODIFIED }, 200 },
      { { ["If-Modified-Since"] = LAST_MODIFIED }, 304 },
      { { ["If-Modified-Since"] = "Thu, 01 Jan 2037 00:00:00 GMT" }, 304 },
      { { ["If-Modified-Since"] = "Tue, 14 Nov 2023 22:13:19 GMT" }, 200 },
      { { ["If-Modified-Since"] = "garbage" }, 200 },
      { {}, 200 },
    }
    for i, c in ipairs(cases) do
      local res = get(srv, "/page", c[1])
      assert.equal(c[2], res.status, "case " .. i)
      assert.equal(c[2] == 304 and "" or "payload", res.body)
      assert.equal('"v1"', res.headers.etag)
    end
    local res = get(srv, "/page", { ["If-None-Match"] = '"v1"',
      ["Content-Length"] = "0" }, "POST")
    assert.equal(200, res.status)
    assert.equal(404, get(srv, "/gone", { ["If-None-Match"] = '"v1"' })
      .status)
    local bytes = helper.raw(srv.port, "GET /file HTTP/1.1\r\nHost: x\r\n"
      .. "If-None-Match: \"f1\"\r\nConnection: close\r\n\r\n")
    assert.matches("^HTTP/1.1 304 ", bytes)
    assert.equal(#bytes, bytes:find("\r\n\r\n", 1, true) + 3)
    assert.equal("closed file", get(srv, "/closed").body)
    helper.assert_clean_stop(srv)
  end)
end)

describe("ringlet.static options and mime_type", function()
  it("raise on unknown or ill-typed options and a root that is no "
    .. "directory; mime_type maps extensions", function()
    local defer = helper.cleanup(finally)
    local base = tree(defer)
    local ok, out, err = helper.run_script(([[
local static = require "ringlet.static"
local ROOT = %q
local function h() end
local function try(f, ...)
  local ok, e = pcall(f, ...)
  print(ok and "ok" or e)
end
try(static.wrap, h, ROOT, { bogus = 1 })
try(static.wrap, h, ROOT, { index = 3 })
try(static.wrap, h, ROOT, { index = "../x" })
try(static.wrap, h, ROOT .. "/a.txt")
try(static.wrap, h, ROOT .. "/nope")
try(static.serve, ROOT, { max_age = -1 })
try(static.serve, ROOT, { prefix = "assets" })
try(static.wrap_content_type, h, { colour = 1 })
try(static.wrap, h, ROOT, { index = false, prefix = "/", max_age = 0,
  allow_symlinks = true, dotfiles = true, etag = false,
  mime_types = { lua = "text/x-lua" } })
print(static.mime_type("a.JS"), static.mime_type("dir.d/README"),
  static.mime_type(".profile"), static.mime_type("a.tar.gz"),
  static.mime_type("x.LUA", { [".Lua"] = "text/x-lua" }),
  static.mime_type("page.html", { html = "text/html" }))
]]):format(base .. "/www"))
    assert(ok, err)
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    local want = {
      "static.wrap: unknown option 'bogus'",
      "static.wrap: option 'index' must be a string or false (got number)",
      "static.wrap: option 'index' must be a file name",
      "is not a directory",
      "is not a directory",
      "static.serve: option 'max_age' must be an integer >= 0",
      "static.serve: option 'prefix' must start with /",
      "static.wrap_content_type: unknown option 'colour'",
      "ok",
    }
    for i, w in ipairs(want) do
      assert.truthy(lines[i] and lines[i]:find(w, 1, true),
        ("line %d: want %q, got %q"):format(i, w, tostring(lines[i])))
    end
    assert.equal(table.concat({ "text/javascript; charset=utf-8",
      "application/octet-stream", "application/octet-stream",
      "application/gzip", "text/x-lua", "text/html" }, "\t"), lines[10])
  end)
end)
