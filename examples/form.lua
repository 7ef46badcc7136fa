-- An HTML form with a file upload, cookies and a search page, written with
-- ringlet.middleware as a Ring app is written with Ring's wrap-* functions.
--
-- Run it:   build/ringlet examples/form.lua --port 8090
-- and open: http://127.0.0.1:8090/
--
--   GET  /             the form (a name, a file); greets a returning visitor
--                      by the `name` cookie and recalls the last upload
--   POST /submit       reads the name and the upload (its file name, size and
--                      first bytes), sets the cookies, answers 303 to /
--   POST /forget       deletes the cookies, 303 to /
--   GET  /search?q=... shows the query parameters
--
-- Nothing is stored on the server: an upload lives in a temporary file that
-- wrap_multipart_params removes once the handler has returned; what the
-- page recalls of it travels in a cookie.

local mw = require "ringlet.middleware"

local function escape(s)
  return (tostring(s):gsub("[&<>\"']", {
    ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
    ["'"] = "&#39;",
  }))
end

local function page(title, body)
  return {
    status = 200,
    headers = { ["content-type"] = "text/html; charset=utf-8" },
    body = ([[<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>%s</title></head>
<body>
%s
</body></html>
]]):format(escape(title), body),
  }
end

local function redirect(to, cookies)
  return { status = 303, headers = { location = to }, cookies = cookies }
end

local function cookie(req, name)
  local c = req.cookies[name]
  return c and c.value ~= "" and c.value or nil
end

-- A params value as text: a string, a list of strings, or an upload.
local function show(v)
  if type(v) ~= "table" then return escape(v) end
  if v.tempfile then return "(a file: " .. escape(v.filename) .. ")" end
  local items = {}
  for i, item in ipairs(v) do items[i] = show(item) end
  return table.concat(items, ", ")
end

local function home(req)
  local name, upload = cookie(req, "name"), cookie(req, "upload")
  local greeting = name and ("<p>Welcome back, %s!</p>"):format(escape(name))
    or "<p>Hello, stranger. Tell us your name.</p>"
  local last = upload and ("<p>Your last upload: %s</p>"):format(
    escape(upload)) or ""
  return page("A form", greeting .. last .. [[

<form method="post" action="/submit" enctype="multipart/form-data">
  <p><label>Name <input type="text" name="name"></label></p>
  <p><label>File <input type="file" name="file"></label></p>
  <p><button type="submit">Send</button></p>
</form>
<form method="post" action="/forget"><button>Forget me</button></form>
<form method="get" action="/search">
  <p><input type="search" name="q"> <button>Search</button></p>
</form>]])
end

-- The upload's summary: its name, size and first bytes (in hex).
local function describe(upload)
  local f = assert(io.open(upload.tempfile, "rb"))
  local head = f:read(16) or ""
  f:close()
  return ("%s, %d bytes, starting %s"):format(upload.filename, upload.size,
    head == "" and "(empty)" or head:gsub(".", function(c)
      return ("%02x"):format(c:byte())
    end))
end

local function submit(req)
  local cookies = {}
  local name = req.params.name
  if type(name) == "string" and name ~= "" then
    cookies.name = { value = name, path = "/", max_age = 30 * 24 * 3600,
                     http_only = true, same_site = "lax" }
  end
  local upload = req.params.file
  -- an empty file input comes as a file part with filename ""
  if type(upload) == "table" and upload.tempfile and upload.filename ~= ""
  then
    cookies.upload = { value = describe(upload), path = "/",
                       http_only = true, same_site = "lax" }
  end
  return redirect("/", cookies)
end

-- A cookie is deleted by one of the same name and path that has expired
-- (expires = 0 is 1 January 1970; max_age = 0 would do too).
local function forget()
  return redirect("/", {
    name = { value = "", path = "/", expires = 0 },
    upload = { value = "", path = "/", expires = 0 },
  })
end

local function search(req)
  local rows = {}
  local keys = {}
  for k in pairs(req.query_params) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    rows[#rows + 1] = ("<li>%s = %s</li>"):format(escape(k),
      show(req.query_params[k]))
  end
  local q = req.query_params.q
  return page("Search", ("<p>You searched for: %s</p>\n<ul>%s</ul>\n"
    .. '<p><a href="/">Back</a></p>'):format(
    type(q) == "string" and escape(q) or "(nothing)", table.concat(rows)))
end

local routes = {
  ["get /"] = home,
  ["post /submit"] = submit,
  ["post /forget"] = forget,
  ["get /search"] = search,
}

local function app(req)
  local route = routes[req.request_method .. " " .. req.uri]
  if route then return route(req) end
  return { status = 404, headers = { ["content-type"] = "text/plain" },
           body = "Not found\n" }
end

-- The user's handler innermost, as in Ring. An upload over 1 MiB is
-- written to a temporary file as it arrives (body_file), and the multipart
-- parser reads it from there: no upload is ever held in memory whole.
return {
  handler = mw.wrap_cookies(mw.wrap_params(mw.wrap_multipart_params(app))),
  options = { body_file = 1024 * 1024, max_body = 64 * 1024 * 1024 },
}
