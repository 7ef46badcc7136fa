--- Ring's everyday middleware: functions that wrap a handler and return
-- a handler, as Ring's `wrap-*` do.
--
-- They compose like Ring's, the application's handler innermost:
--
--     local mw = require "ringlet.middleware"
--     return mw.wrap_cookies(mw.wrap_params(mw.wrap_multipart_params(app)))
--
-- Each wrapper adds keys to the request table (it changes the table it is
-- given, as Lua code does, rather than copying it) and calls the inner
-- handler normally, in the handler's own coroutine, so an inner handler may
-- `ringlet.sleep` or wait on a queue. A response the inner handler returns
-- is passed on untouched, a nil one or an `as_channel` one included, except
-- for what a wrapper documents (`wrap_cookies` turns `cookies` into
-- Set-Cookie headers).
--
-- Bad input never raises: a malformed query string, form or multipart body
-- is answered 400 and one past a limit 413, both with a short `text/plain`
-- body naming the problem, and the inner handler is not called. A bad
-- option raises when the wrapper is made; a bad response cookie raises when
-- the response comes back (the core answers 500 for it).
--
-- Keys and values are byte strings: nothing is decoded by charset, and
-- parameter names stay strings (Ring's keyword-params has no counterpart).
--
-- The static-file middleware (`wrap_static`, `wrap_head`,
-- `wrap_content_type`, `wrap_not_modified`) lives in `ringlet.static`; this
-- module hands those names on.
--
-- @module ringlet.middleware

local M = {}

local CHUNK = 65536 -- bytes read from a file body at a time

local KiB, MiB = 1024, 1024 * 1024

-- ---------------------------------------------------------------------------
-- Helpers

-- The short answer to bad input: status, text/plain, the text and a newline.
local function answer(status, text)
  return {
    status = status,
    headers = { ["content-type"] = "text/plain; charset=utf-8" },
    body = text .. "\n",
  }
end

-- A bit of client input fit to quote in an answer: at most 20 bytes, each
-- byte outside printable ASCII as \xHH.
local function shown(s)
  if #s > 20 then s = s:sub(1, 20) .. "..." end
  return '"' .. s:gsub('[^ -~]', function(c)
    return ("\\x%02X"):format(c:byte())
  end):gsub('"', '\\"') .. '"'
end

-- Checks a wrapper's opts against spec (name -> "limit" | "string") and
-- returns a table of values with the defaults filled in.
local function options(fname, opts, spec, defaults)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    error(("middleware.%s: opts must be a table (got %s)"):format(fname,
      type(opts)), 3)
  end
  local out = {}
  for k, v in pairs(defaults) do out[k] = v end
  for k, v in pairs(opts) do
    local kind = spec[k]
    if not kind then
      error(("middleware.%s: unknown option %s"):format(fname,
        type(k) == "string" and "'" .. k .. "'" or "of type " .. type(k)), 3)
    end
    if kind == "limit" and not (type(v) == "number" and v >= 0) then
      error(("middleware.%s: option '%s' must be a number >= 0 (bytes or a "
        .. "count; got %s)"):format(fname, k, tostring(v)), 3)
    elseif kind == "string" and type(v) ~= "string" then
      error(("middleware.%s: option '%s' must be a string (got %s)")
        :format(fname, k, type(v)), 3)
    end
    out[k] = v
  end
  return out
end

local function check_handler(fname, handler)
  if type(handler) ~= "function" and not (type(handler) == "table"
      and getmetatable(handler) and getmetatable(handler).__call) then
    error(("middleware.%s: handler must be a function (got %s)"):format(
      fname, type(handler)), 3)
  end
end

-- The media type of a Content-Type value, lower case, and the value.
local function media_type(req)
  local ct = type(req.headers) == "table" and req.headers["content-type"]
  if type(ct) ~= "string" then return nil end
  return (ct:match("^[ \t]*([^;%s]*)") or ""):lower(), ct
end

-- Adds a value under key in params: the first is kept as it is, a second
-- makes an array of both, later ones are appended (Ring's assoc-conj).
local function add_param(params, key, value, arrays)
  local old = params[key]
  if old == nil then
    params[key] = value
  elseif arrays[key] then
    old[#old + 1] = value
  else
    params[key] = { old, value }
    arrays[key] = true
  end
end

-- ---------------------------------------------------------------------------
-- Percent-decoding

local function hex_byte(h) return string.char(tonumber(h, 16)) end

-- Percent-decodes s, or returns nil, the first bad escape when a `%` is not
-- followed by two hex digits.
local function percent_decode(s)
  if not s:find("%", 1, true) then return s end
  local bad = s:gsub("%%%x%x", ""):match("%%.?.?")
  if bad then return nil, bad end
  return (s:gsub("%%(%x%x)", hex_byte))
end

-- Ring's form-decode-str: `+` is a space, then percent-decoding.
local function form_decode(s)
  return percent_decode((s:gsub("+", " ")))
end

-- Decodes a query string or urlencoded form into a table of params, or
-- returns nil, why.
local function parse_urlencoded(s, where)
  local params, arrays = {}, {}
  for piece in s:gmatch("[^&]+") do
    local k, v = piece:match("^([^=]*)=(.*)$")
    if not k then k, v = piece, "" end
    local key, bad = form_decode(k)
    local value
    if key then value, bad = form_decode(v) end
    if not value then
      return nil, ("malformed percent-encoding %s in %s (%% must be followed "
        .. "by two hex digits)"):format(shown(bad), where)
    end
    add_param(params, key, value, arrays)
  end
  return params
end

-- ---------------------------------------------------------------------------
-- wrap_params

-- The form body as a string: the body itself, or what a file body holds
-- (read from where it is and put back there). Returns nil when it
-- is too large.
local function form_body(req, max)
  local body = req.body
  if type(body) == "string" then
    if #body > max then return nil, "too large" end
    return body
  end
  if io.type(body) ~= "file" then return "" end
  local at = body:seek()
  -- piece by piece: read(n) would allocate n bytes up front
  local parts, size = {}, 0
  while size <= max do
    local s, err = body:read(CHUNK)
    if s == nil then
      if err then
        error("middleware.wrap_params: reading the request body: " .. err)
      end
      break
    end
    parts[#parts + 1] = s
    size = size + #s
  end
  local data = table.concat(parts)
  -- where it was, so the inner handler can read it all; a file that cannot
  -- seek (a pipe) gives the inner handler what was read, as a string
  if not (at and body:seek("set", at)) then req.body = data end
  if #data > max then return nil, "too large" end
  return data
end

--- Decodes the query string and an urlencoded form body into params
-- (Ring's `wrap-params`).
--
-- Before calling the handler it sets:
--
-- - `req.query_params`: from `req.query_string` (`{}` without one);
-- - `req.form_params`: from the body when the Content-Type is
--   `application/x-www-form-urlencoded` (any letter case, with or without
--   parameters such as `; charset=utf-8`), else `{}`;
-- - `req.params`: both merged into what `req.params` already held, a form
--   value replacing a query value of the same name (as Ring merges).
--
-- A request that already has `query_params` (or `form_params`) keeps it.
--
-- Decoding is Ring's form-decode: pieces are split at `&` (empty pieces
-- skipped), then at the first `=`; a piece without `=` is a key with the
-- value `""`. In keys and values `+` is a space and `%XX` the byte XX. A
-- name given once maps to a string; a name given again maps to an array of
-- its values in order (`a=1&a=2` gives `{"1", "2"}`).
--
-- A `%` not followed by two hex digits (`%zz`, `%4`, a trailing `%`) is
-- answered 400 with a short `text/plain` body naming the problem, and so
-- is a form body over `opts.max_form` bytes with 413; the handler is not
-- called then.
--
-- The body may be a string, nil, or a file handle (a spooled upload): a
-- file is read from where it stands, at most `max_form` bytes, and put
-- back there, so the handler can read it again.
-- @tparam function handler the handler to wrap
-- @tparam[opt] table opts `max_form`: the largest form body decoded, in
--   bytes (default 1048576, 1 MiB)
-- @treturn function the wrapped handler
-- @raise on a bad handler or option
-- @usage
-- local mw = require "ringlet.middleware"
-- return mw.wrap_params(function(req)
--   -- GET /greet?name=Ada+L.&tag=a&tag=b
--   -- req.params.name == "Ada L."; req.params.tag == {"a", "b"}
--   return { body = "Hello, " .. (req.params.name or "you") }
-- end)
function M.wrap_params(handler, opts)
  check_handler("wrap_params", handler)
  local o = options("wrap_params", opts, { max_form = "limit" },
    { max_form = MiB })
  return function(req)
    local query, form = req.query_params, req.form_params
    local why
    if query == nil then
      local qs = req.query_string
      query, why = parse_urlencoded(type(qs) == "string" and qs or "",
        "the query string")
      if not query then return answer(400, why) end
    end
    if form == nil then
      if media_type(req) == "application/x-www-form-urlencoded" then
        local text = form_body(req, o.max_form)
        if not text then
          return answer(413, ("form body larger than %d bytes")
            :format(o.max_form))
        end
        form, why = parse_urlencoded(text, "the form body")
        if not form then return answer(400, why) end
      else
        form = {}
      end
    end
    local params = type(req.params) == "table" and req.params or {}
    for k, v in pairs(query) do params[k] = v end
    for k, v in pairs(form) do params[k] = v end
    req.query_params, req.form_params, req.params = query, form, params
    return handler(req)
  end
end

-- ---------------------------------------------------------------------------
-- Header parameters (Content-Type, Content-Disposition)

local TCHAR = "[%w!#$%%&'*+%-.^_`|~]"
local TOKEN = "^" .. TCHAR .. "+$"

-- The parameters of a header value `type; a=b; c="d"` (names lower case),
-- or nil when a quoted string does not end. Inside quotes a backslash
-- escapes `"` and `\` only: any other backslash is kept, as IE sends
-- Windows paths (`C:\dir\name`) unescaped.
local function header_params(s)
  local params = {}
  local i = s:find(";", 1, true)
  if not i then return params end
  i = i + 1
  local n = #s
  while i <= n do
    local _, e, key = s:find("^[ \t]*([^=; \t]+)[ \t]*=[ \t]*", i)
    if not key then
      local j = s:find(";", i, true)
      if not j then break end
      i = j + 1
    else
      i = e + 1
      local value
      if s:sub(i, i) == '"' then
        local buf = {}
        local j = i + 1
        while true do
          local c = s:sub(j, j)
          if c == "" then return nil end
          if c == "\\" and s:sub(j + 1, j + 1):find('^["\\]') then
            buf[#buf + 1] = s:sub(j + 1, j + 1)
            j = j + 2
          elseif c == '"' then
            break
          else
            buf[#buf + 1] = c
            j = j + 1
          end
        end
        value = table.concat(buf)
        local k = s:find(";", j + 1, true)
        i = k and k + 1 or n + 1
      else
        local k = s:find(";", i, true)
        value = s:sub(i, (k or n + 1) - 1):match("^(.-)[ \t]*$")
        i = k and k + 1 or n + 1
      end
      key = key:lower()
      if params[key] == nil then params[key] = value end
    end
  end
  return params
end

-- ---------------------------------------------------------------------------
-- Multipart bodies (RFC 7578, RFC 2046 section 5.1)

-- A source of the body's bytes, piece by piece: nil at the end.
local function body_pieces(body)
  if type(body) == "string" then
    local pos = 1
    return function()
      if pos > #body then return nil end
      local s = body:sub(pos, pos + CHUNK - 1)
      pos = pos + CHUNK
      return s
    end
  elseif io.type(body) == "file" then
    return function()
      local s, err = body:read(CHUNK)
      if s == nil and err then
        error("middleware.wrap_multipart_params: reading the request body: "
          .. err)
      end
      return s
    end
  end
  return function() return nil end
end

-- The parser's buffer: buf holds unread bytes from pos on; fill appends the
-- next piece (dropping what was read), false at the end of the body.
local function fill(p)
  if p.eof then return false end
  local s = p.next()
  if s == nil or s == "" then
    p.eof = true
    return false
  end
  p.buf = p.pos > 1 and p.buf:sub(p.pos) .. s or p.buf .. s
  p.pos = 1
  return true
end

-- The next line (without its CRLF), or nil, status, why: 413 when more
-- than limit bytes (the CRLF counted) come before one, 400 at the end of
-- the body. `what` names the line for the answer.
local function read_line(p, limit, what)
  while true do
    local e = p.buf:find("\r\n", p.pos, true)
    if e then
      if e + 2 - p.pos > limit then break end
      local line = p.buf:sub(p.pos, e - 1)
      p.pos = e + 2
      return line
    end
    if #p.buf - p.pos + 1 > limit then break end
    if not fill(p) then
      return nil, 400, "multipart body ends inside " .. what
    end
  end
  return nil, 413, what .. " longer than the limit"
end

-- Hands sink the bytes up to the next delimiter (CRLF, "--", boundary), in
-- pieces, and moves past it. Returns true, or nil, status, why (from sink,
-- or 400 when the body ends first).
local function read_to_delimiter(p, sink)
  local delim = p.delim
  local keep = #delim - 1 -- bytes that may be the start of a delimiter
  while true do
    local s, e = p.buf:find(delim, p.pos, true)
    if s then
      if s > p.pos then
        local ok, st, why = sink(p.buf:sub(p.pos, s - 1))
        if not ok then return nil, st, why end
      end
      p.pos = e + 1
      return true
    end
    local upto = #p.buf - keep
    if upto >= p.pos then
      local ok, st, why = sink(p.buf:sub(p.pos, upto))
      if not ok then return nil, st, why end
      p.pos = upto + 1
    end
    if not fill(p) then
      return nil, 400, "multipart body has no closing delimiter (--"
        .. p.boundary .. "--)"
    end
  end
end

-- After a delimiter: true for the close delimiter ("--"), false when a part
-- follows (transport padding and CRLF skipped), or nil, status, why.
local function after_delimiter(p)
  while #p.buf - p.pos + 1 < 2 do
    if not fill(p) then
      return nil, 400, "multipart body has no closing delimiter (--"
        .. p.boundary .. "--)"
    end
  end
  if p.buf:sub(p.pos, p.pos + 1) == "--" then return true end
  local line, st, why = read_line(p, 1024, "a delimiter line")
  if not line then return nil, st, why end
  if not line:find("^[ \t]*$") then
    return nil, 400, "multipart delimiter followed by " .. shown(line)
      .. " (the boundary occurs inside a part?)"
  end
  return false
end

-- A fresh temporary file: os.tmpname(), or a new random name in dir.
local counter = 0
local function temp_name(dir)
  if not dir then return os.tmpname() end
  for _ = 1, 100 do
    counter = counter + 1
    local name = ("%s/ringlet-upload-%08x%08x-%d"):format(dir,
      math.random(0, 0x7fffffff), math.random(0, 0x7fffffff), counter)
    local f = io.open(name, "rb")
    if not f then return name end
    f:close()
  end
  error("middleware.wrap_multipart_params: no free temporary name in " .. dir)
end

-- Reads one part's headers: a table (names lower case), or nil, status,
-- why.
local function read_part_headers(p, o, n)
  local headers, left = {}, o.max_header_size
  while true do
    local line, st, why = read_line(p, left, "the headers of part " .. n)
    if not line then
      if st == 413 then
        why = ("the headers of part %d are larger than %d bytes"):format(n,
          o.max_header_size)
      end
      return nil, st, why
    end
    left = left - #line - 2
    if line == "" then return headers end
    local name, value = line:match("^(" .. TCHAR .. "+):[ \t]*(.-)[ \t]*$")
    if not name then
      return nil, 400, ("bad header line %s in part %d"):format(shown(line), n)
    end
    headers[name:lower()] = value
  end
end

-- Parses the body into params; records each temporary file's path in
-- files as soon as it exists. Returns params, or nil, status, why.
local function parse_multipart(p, o, files)
  local params, arrays = {}, {}
  -- the preamble (before the first delimiter) is ignored
  local ok, st, why = read_to_delimiter(p, function() return true end)
  if not ok then return nil, st, why end
  local n = 0
  while true do
    local done
    done, st, why = after_delimiter(p)
    if done == nil then return nil, st, why end
    if done then return params end
    n = n + 1
    if n > o.max_parts then
      return nil, 413, ("more than %d parts in the multipart body")
        :format(o.max_parts)
    end
    local headers
    headers, st, why = read_part_headers(p, o, n)
    if not headers then return nil, st, why end
    local cd = headers["content-disposition"]
    if not cd then
      return nil, 400, ("part %d has no Content-Disposition"):format(n)
    end
    local dparams = header_params(cd)
    if not dparams then
      return nil, 400, ("part %d: unterminated quoted string in its "
        .. "Content-Disposition"):format(n)
    end
    if (cd:match("^[ \t]*([^;%s]*)") or ""):lower() ~= "form-data" then
      return nil, 400, ("part %d: Content-Disposition is not form-data")
        :format(n)
    end
    local name = dparams.name
    if not name then
      return nil, 400, ("part %d: Content-Disposition has no name"):format(n)
    end
    if dparams.filename then
      local path = temp_name(o.tmpdir)
      files[#files + 1] = path
      local f, err = io.open(path, "wb")
      if not f then
        error("middleware.wrap_multipart_params: temporary file: " .. err)
      end
      local size = 0
      ok, st, why = read_to_delimiter(p, function(s)
        size = size + #s
        if size > o.max_file_size then
          return nil, 413, ("file %s (part %d) is larger than %d bytes")
            :format(shown(name), n, o.max_file_size)
        end
        local wok, werr = f:write(s)
        if not wok then
          f:close()
          error("middleware.wrap_multipart_params: temporary file: " .. werr)
        end
        return true
      end)
      f:close()
      if not ok then return nil, st, why end
      add_param(params, name, {
        -- what the client sent, less any directory part (/ or \)
        filename = dparams.filename:match("([^/\\]*)$"),
        content_type = headers["content-type"],
        tempfile = path,
        size = size,
      }, arrays)
    else
      local buf, size = {}, 0
      ok, st, why = read_to_delimiter(p, function(s)
        size = size + #s
        if size > o.max_field_size then
          return nil, 413, ("field %s (part %d) is larger than %d bytes")
            :format(shown(name), n, o.max_field_size)
        end
        buf[#buf + 1] = s
        return true
      end)
      if not ok then return nil, st, why end
      add_param(params, name, table.concat(buf), arrays)
    end
  end
end

-- Removes the files listed in it when closed (a to-be-closed variable: on
-- return and on error alike).
local files_mt = {
  __close = function(files)
    for i = 1, #files do os.remove(files[i]) end
  end,
}

--- Parses a `multipart/form-data` body (RFC 7578: HTML forms with
-- `enctype="multipart/form-data"`, file uploads) into params (Ring's
-- `wrap-multipart-params`).
--
-- Before calling the handler it sets `req.multipart_params` (`{}` when the
-- Content-Type is not `multipart/form-data`) and merges it into
-- `req.params` (made when absent; a multipart value replaces one of the
-- same name). A field is a string, a field sent again makes an array of
-- its values in order; a file part (one whose Content-Disposition has a
-- `filename`) is a table:
--
-- - `filename`: the name the client sent less any directory part (up to
--   the last `/` or `\`: IE sends `C:\dir\name`). It is the client's text,
--   never a path: do not open or create a file by it;
-- - `content_type`: the part's Content-Type, or nil when it had none;
-- - `tempfile`: the path of a temporary file holding the part's bytes;
-- - `size`: their number.
--
-- An empty file input comes from a browser as a part with `filename = ""`
-- and `size = 0`.
--
-- The body is parsed as it is read, 64 KiB at a time (a string body is
-- walked the same way), and a file part's bytes go straight to its
-- temporary file, so they are never held in one Lua string. A body that is
-- a file handle (a spooled upload) is read from where it stands and put
-- back there after.
--
-- The temporary files are removed when the handler returns or raises:
-- the response has been built by then. To keep an upload, move it with
-- `os.rename` (to the same file system) or copy it; a file opened before
-- the handler returns stays readable after its name is gone, so a response
-- `body = io.open(upload.tempfile, "rb")` still streams it. Do not refer to
-- `tempfile` from code that runs later (`on_open`, a timer, a body
-- iterator).
--
-- Limits, each answered 413 with a short `text/plain` body (the handler is
-- not called; temporary files made so far are removed): more than
-- `max_parts` parts, a file part over `max_file_size` bytes, a field over
-- `max_field_size` bytes, a part's headers over `max_header_size` bytes.
-- A malformed body is answered 400: no `boundary` parameter (or one longer
-- than 70 characters), no closing delimiter, a bad header line, a part
-- without a Content-Disposition `form-data` with a `name`.
-- @tparam function handler the handler to wrap
-- @tparam[opt] table opts
--
-- - `max_parts`: default 100;
-- - `max_file_size`: bytes per file part, default 8388608 (8 MiB, the
--   default `max_body` of `run_server`, which bounds a whole body);
-- - `max_field_size`: bytes per plain field, default 1048576 (1 MiB);
-- - `max_header_size`: bytes of one part's headers, default 8192 (8 KiB);
-- - `tmpdir`: the directory for the temporary files (default: where
--   `os.tmpname` makes them, /tmp); names there are random, so it should be
--   a directory only the server writes to.
-- @treturn function the wrapped handler
-- @raise on a bad handler or option
-- @usage
-- local mw = require "ringlet.middleware"
-- return mw.wrap_multipart_params(function(req)
--   local upload = req.params.file     -- <input type="file" name="file">
--   if type(upload) ~= "table" then return { status = 400 } end
--   -- keep it: os.rename(upload.tempfile, "/srv/uploads/" .. some_id)
--   return { body = ("%s: %d bytes"):format(upload.filename, upload.size) }
-- end, { max_file_size = 2 * 1024 * 1024 })
function M.wrap_multipart_params(handler, opts)
  check_handler("wrap_multipart_params", handler)
  local o = options("wrap_multipart_params", opts, {
    max_parts = "limit", max_file_size = "limit", max_field_size = "limit",
    max_header_size = "limit", tmpdir = "string",
  }, {
    max_parts = 100, max_file_size = 8 * MiB, max_field_size = MiB,
    max_header_size = 8 * KiB,
  })
  return function(req)
    local files <close> = setmetatable({}, files_mt)
    local mtype, ct = media_type(req)
    local params = {}
    if mtype == "multipart/form-data" then
      local cparams = header_params(ct) or {}
      local boundary = cparams.boundary
      if not boundary or boundary == "" or #boundary > 70 then
        return answer(400, "multipart/form-data without a valid boundary "
          .. "parameter (1 to 70 characters) in its Content-Type")
      end
      local body = req.body
      local at = io.type(body) == "file" and body:seek()
      -- the buffer starts with a CRLF so that a delimiter at the very
      -- start of the body is found as "\r\n--" .. boundary, as any other
      local p = {
        buf = "\r\n", pos = 1, next = body_pieces(body),
        boundary = boundary, delim = "\r\n--" .. boundary,
      }
      local result, st, why = parse_multipart(p, o, files)
      if at then body:seek("set", at) end
      if not result then return answer(st, why) end
      params = result
    end
    local all = type(req.params) == "table" and req.params or {}
    for k, v in pairs(params) do all[k] = v end
    req.multipart_params, req.params = params, all
    return handler(req)
  end
end

-- ---------------------------------------------------------------------------
-- Cookies (RFC 6265)

-- Parses a Cookie header (`a=1; b=2`) into {name = {value = v}}: the value
-- without surrounding double quotes, percent-decoded when that is valid.
-- A name sent twice keeps its first value (the browser sends the cookie
-- with the longest path first).
local function parse_cookies(header)
  local cookies = {}
  if type(header) ~= "string" then return cookies end
  for pair in header:gmatch("[^;]+") do
    local name, value = pair:match("^[ \t]*([^=]-)[ \t]*=[ \t]*(.-)[ \t]*$")
    if name and name ~= "" and cookies[name] == nil then
      local inner = value:match('^"(.*)"$')
      if inner then value = inner end
      cookies[name] = { value = percent_decode(value) or value }
    end
  end
  return cookies
end

-- Bytes outside RFC 6265's cookie-octet set, and `%` itself (so that
-- decoding gives the value back).
local function cookie_encode(v)
  return (v:gsub("[^!#$&'()*+%-./0-9:<=>?@A-Z%[%]^_`a-z{|}~]", function(c)
    return ("%%%02X"):format(c:byte())
  end))
end

local ATTRS = {
  value = true, path = "Path", domain = "Domain", max_age = "Max-Age",
  expires = "Expires", secure = "Secure", http_only = "HttpOnly",
  same_site = "SameSite",
}
local SAME_SITE = { strict = "Strict", lax = "Lax", none = "None" }

local function cookie_error(name, what)
  error(("middleware.wrap_cookies: cookie %s: %s"):format(shown(name), what),
    0)
end

local function attr_text(name, key, v)
  if type(v) == "number" then return tostring(v) end
  if type(v) ~= "string" then
    cookie_error(name, ("%s must be a string (got %s)"):format(key, type(v)))
  end
  if v:find("[;\r\n%z]") then
    cookie_error(name, key .. " must not contain ';', CR, LF or NUL")
  end
  return v
end

-- One Set-Cookie value for name and spec (a value, or a table of value and
-- attributes).
local function set_cookie_line(name, spec)
  if type(name) ~= "string" or not name:find(TOKEN) then
    cookie_error(tostring(name), "the name must be a token (letters, digits "
      .. "and !#$%&'*+-.^_`|~)")
  end
  if type(spec) ~= "table" then spec = { value = spec } end
  for k in pairs(spec) do
    if not ATTRS[k] then
      cookie_error(name, ("unknown attribute %s (known: value, path, "
        .. "domain, max_age, expires, secure, http_only, same_site)")
        :format(tostring(k)))
    end
  end
  local value = spec.value
  if type(value) == "number" then value = tostring(value) end
  if type(value) ~= "string" then
    cookie_error(name, "value must be a string (got " .. type(value) .. ")")
  end
  local out = { name .. "=" .. cookie_encode(value) }
  if spec.domain ~= nil then
    out[#out + 1] = "Domain=" .. attr_text(name, "domain", spec.domain)
  end
  if spec.path ~= nil then
    out[#out + 1] = "Path=" .. attr_text(name, "path", spec.path)
  end
  if spec.max_age ~= nil then
    local age = type(spec.max_age) == "number" and math.tointeger(spec.max_age)
    if not age then
      cookie_error(name, "max_age must be an integer (seconds)")
    end
    out[#out + 1] = ("Max-Age=%d"):format(age)
  end
  if spec.expires ~= nil then
    local e = spec.expires
    if type(e) == "number" then
      local t = math.tointeger(math.floor(e))
      if not t then cookie_error(name, "expires is not a time") end
      e = os.date("!%a, %d %b %Y %H:%M:%S GMT", t)
    else
      e = attr_text(name, "expires", e)
    end
    out[#out + 1] = "Expires=" .. e
  end
  for _, k in ipairs({ "secure", "http_only" }) do
    local v = spec[k]
    if v ~= nil and type(v) ~= "boolean" then
      cookie_error(name, k .. " must be a boolean")
    end
    if v then out[#out + 1] = ATTRS[k] end
  end
  if spec.same_site ~= nil then
    local s = type(spec.same_site) == "string"
      and SAME_SITE[spec.same_site:lower()]
    if not s then
      cookie_error(name, 'same_site must be "strict", "lax" or "none"')
    end
    out[#out + 1] = "SameSite=" .. s
  end
  return table.concat(out, "; ")
end

-- A copy of res whose headers carry res.cookies as Set-Cookie lines, after
-- any the handler set (under one name, whatever its letter case).
local function write_cookies(res)
  local cookies = res.cookies
  if type(cookies) ~= "table" then
    error("middleware.wrap_cookies: response cookies must be a table (got "
      .. type(cookies) .. ")", 0)
  end
  local names = {}
  for name in pairs(cookies) do
    if type(name) ~= "string" then
      cookie_error(tostring(name), "the name must be a string")
    end
    names[#names + 1] = name
  end
  table.sort(names)
  -- the handler's own lines first, every spelling of the name merged
  -- under the first in sorted order
  local headers, spellings, lines = {}, {}, {}
  for k, v in pairs(type(res.headers) == "table" and res.headers or {}) do
    headers[k] = v
    if type(k) == "string" and k:lower() == "set-cookie" then
      spellings[#spellings + 1] = k
    end
  end
  table.sort(spellings)
  for _, k in ipairs(spellings) do
    local v = headers[k]
    if type(v) == "table" then
      for _, line in ipairs(v) do lines[#lines + 1] = line end
    else
      lines[#lines + 1] = v
    end
    headers[k] = nil
  end
  for _, name in ipairs(names) do
    lines[#lines + 1] = set_cookie_line(name, cookies[name])
  end
  local out = {}
  for k, v in pairs(res) do out[k] = v end
  out.cookies = nil
  if #lines > 0 then headers[spellings[1] or "set-cookie"] = lines end
  out.headers = headers
  return out
end

--- Parses the request's cookies and sets the response's (Ring's
-- `wrap-cookies`).
--
-- Before calling the handler it sets `req.cookies` (unless the request
-- already has them) from the Cookie header, in Ring's shape:
-- `req.cookies.session.value`. A value in double quotes loses them, and a
-- value is percent-decoded when its escapes are valid (else kept as sent).
-- A name sent twice keeps the first value (browsers send the cookie with
-- the most specific path first). No Cookie header gives `{}`.
--
-- When the response has a `cookies` table, each entry becomes one
-- Set-Cookie header line (names in sorted order), after the Set-Cookie
-- lines the handler set itself (a string or an array, under any letter
-- case of the name); the response handed on is a copy without `cookies`,
-- its headers a copy too. An entry is `name = value` or `name = {value =,
-- ...attributes}`:
--
-- - `value`: a string (or number); bytes outside RFC 6265's cookie-octet
--   set, and `%`, are percent-encoded, so the request side decodes it back;
-- - `path`, `domain`: strings;
-- - `max_age`: seconds (an integer; 0 deletes the cookie);
-- - `expires`: an HTTP-date string, or a number of seconds since the epoch
--   (written as an HTTP-date, GMT);
-- - `secure`, `http_only`: true adds `Secure`, `HttpOnly`;
-- - `same_site`: `"strict"`, `"lax"` or `"none"`.
--
-- A name that is not a token, an attribute value with `;`, CR, LF or NUL,
-- an unknown attribute or a value of the wrong type raises an error, which
-- the core answers with 500. A nil response, or one without `cookies`, is
-- passed on as it is; an `as_channel` response gets its headers (they go
-- on the 101 of a WebSocket, or the head of an HTTP stream).
-- @tparam function handler the handler to wrap
-- @tparam[opt] table opts none yet (reserved)
-- @treturn function the wrapped handler
-- @raise on a bad handler or option
-- @usage
-- local mw = require "ringlet.middleware"
-- return mw.wrap_cookies(function(req)
--   local visits = tonumber((req.cookies.visits or {}).value) or 0
--   return {
--     body = "visit " .. (visits + 1),
--     cookies = {
--       visits = { value = tostring(visits + 1), path = "/",
--                  max_age = 3600, http_only = true, same_site = "lax" },
--     },
--   }
-- end)
function M.wrap_cookies(handler, opts)
  check_handler("wrap_cookies", handler)
  options("wrap_cookies", opts, {}, {})
  return function(req)
    if req.cookies == nil then
      req.cookies = parse_cookies(type(req.headers) == "table"
        and req.headers.cookie)
    end
    local res = handler(req)
    if type(res) == "table" and res.cookies ~= nil then
      return write_cookies(res)
    end
    return res
  end
end

-- ---------------------------------------------------------------------------
-- ringlet.static's middleware, handed on

--- Serves files under `root` for the requests they match, else calls the
-- handler: `require("ringlet.static").wrap(handler, root, opts)` (Ring's
-- `wrap-file`). See `ringlet.static` for the options.
-- @tparam function handler the handler for requests no file matches
-- @tparam string root the directory served
-- @tparam[opt] table opts `ringlet.static`'s options
-- @treturn function the wrapped handler
-- @usage
-- local mw = require "ringlet.middleware"
-- return mw.wrap_static(app, "/srv/www/public")
function M.wrap_static(handler, root, opts)
  return require("ringlet.static").wrap(handler, root, opts)
end

--- Answers HEAD requests as GET ones without a body:
-- `require("ringlet.static").wrap_head(handler)` (Ring's `wrap-head`).
-- @tparam function handler the handler to wrap
-- @treturn function the wrapped handler
-- @usage
-- return require("ringlet.middleware").wrap_head(app)
function M.wrap_head(handler)
  return require("ringlet.static").wrap_head(handler)
end

--- Adds a Content-Type from the request path's extension when the response
-- has none: `require("ringlet.static").wrap_content_type(handler, opts)`
-- (Ring's `wrap-content-type`).
-- @tparam function handler the handler to wrap
-- @tparam[opt] table opts `ringlet.static`'s options for it
-- @treturn function the wrapped handler
-- @usage
-- return require("ringlet.middleware").wrap_content_type(app)
function M.wrap_content_type(handler, opts)
  return require("ringlet.static").wrap_content_type(handler, opts)
end

--- Answers 304 Not Modified when the request's conditions match the
-- response's ETag or Last-Modified:
-- `require("ringlet.static").wrap_not_modified(handler)` (Ring's
-- `wrap-not-modified`).
-- @tparam function handler the handler to wrap
-- @treturn function the wrapped handler
-- @usage
-- return require("ringlet.middleware").wrap_not_modified(app)
function M.wrap_not_modified(handler)
  return require("ringlet.static").wrap_not_modified(handler)
end

return M
