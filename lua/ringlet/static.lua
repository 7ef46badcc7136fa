--- Static files, served the way nginx does and as Ring's `wrap-file`,
-- `file-response`, `wrap-not-modified`, `wrap-content-type` and
-- `wrap-head` do.
--
-- `wrap` puts a directory of files in front of a handler, `serve` is a
-- handler that serves only files, `file_response` answers with one file
-- from a handler of your own. Each file answer carries `Content-Type` (from
-- the extension), `Last-Modified`, a strong `ETag`, `Accept-Ranges: bytes`
-- and, when asked, `Cache-Control`; it answers the conditionals
-- (`If-None-Match`, `If-Modified-Since`, `If-Match`, `If-Unmodified-Since`)
-- with 304 or 412 and a single byte range (`Range`, `If-Range`) with 206
-- or 416. The body is the open file, which the core sends with
-- sendfile(2) and closes.
--
-- How a request path becomes a file (`wrap` and `serve`):
--
-- - Only GET and HEAD requests whose path starts with `/` (and with the
--   prefix, when one is set) are looked at; others go to the handler.
-- - The path is percent-decoded exactly once: `%252e` is looked up as a
--   file literally named `%2e`. A malformed escape (`%` without two hex
--   digits) or an escaped NUL is answered 400 at once.
-- - The decoded path is split at `/` (an escaped `%2F` splits too, as in
--   nginx); empty segments are dropped. A segment that is `.` or `..`,
--   or holds a backslash, or (unless `dotfiles`) starts with a dot, means
--   "not a file": the request goes to the handler (`serve` answers 404).
--   No such path is ever joined to the root.
-- - Unless `allow_symlinks`, the file's `ringlet.realpath` must be the
--   root's realpath or lie under it (compared as `root .. "/"`, so
--   `/srv/www2` is not under `/srv/www`), and that real path is what is
--   opened. The root's realpath is taken on every request, so a root that
--   is a symbolic link may be switched (a deploy) while serving.
-- - A directory is answered with its index file; a directory path
--   without the trailing slash is redirected (301) to the slash form, as
--   nginx does, but only when that index exists. There are no listings.
--
-- `wrap_head`, `wrap_content_type` and `wrap_not_modified` are Ring's
-- middleware of those names for any handler; `ringlet.middleware`
-- re-exports them beside `wrap_static` (this module's `wrap`).
--
-- @module ringlet.static

local ringlet = require "ringlet"

local static = {}

-- ---------------------------------------------------------------------------
-- Media types

-- Text types get "; charset=utf-8" (see with_charset).
local MIME = {
  html = "text/html", htm = "text/html", shtml = "text/html",
  xhtml = "application/xhtml+xml",
  css = "text/css",
  js = "text/javascript", mjs = "text/javascript", cjs = "text/javascript",
  json = "application/json", map = "application/json",
  jsonld = "application/ld+json",
  webmanifest = "application/manifest+json",
  txt = "text/plain", text = "text/plain", log = "text/plain",
  md = "text/markdown", markdown = "text/markdown",
  csv = "text/csv", tsv = "text/tab-separated-values",
  xml = "application/xml", xsl = "application/xml",
  rss = "application/rss+xml", atom = "application/atom+xml",
  ics = "text/calendar", vtt = "text/vtt",
  yaml = "application/yaml", yml = "application/yaml",
  toml = "application/toml",
  svg = "image/svg+xml", svgz = "image/svg+xml",
  png = "image/png", apng = "image/apng",
  jpg = "image/jpeg", jpeg = "image/jpeg",
  gif = "image/gif", webp = "image/webp", avif = "image/avif",
  jxl = "image/jxl", bmp = "image/bmp", tif = "image/tiff",
  tiff = "image/tiff", ico = "image/x-icon",
  heic = "image/heic",
  wasm = "application/wasm",
  pdf = "application/pdf", rtf = "application/rtf",
  epub = "application/epub+zip",
  zip = "application/zip", gz = "application/gzip",
  tgz = "application/gzip", tar = "application/x-tar",
  bz2 = "application/x-bzip2", xz = "application/x-xz",
  zst = "application/zstd", ["7z"] = "application/x-7z-compressed",
  jar = "application/java-archive",
  mp3 = "audio/mpeg", m4a = "audio/mp4", aac = "audio/aac",
  oga = "audio/ogg", ogg = "audio/ogg", opus = "audio/ogg",
  wav = "audio/wav", flac = "audio/flac", weba = "audio/webm",
  mid = "audio/midi", midi = "audio/midi",
  mp4 = "video/mp4", m4v = "video/mp4", webm = "video/webm",
  ogv = "video/ogg", mov = "video/quicktime", avi = "video/x-msvideo",
  mpeg = "video/mpeg", mpg = "video/mpeg", mkv = "video/x-matroska",
  ts = "video/mp2t", m3u8 = "application/vnd.apple.mpegurl",
  woff = "font/woff", woff2 = "font/woff2", ttf = "font/ttf",
  otf = "font/otf", eot = "application/vnd.ms-fontobject",
}

local DEFAULT_TYPE = "application/octet-stream"

-- text/*, XML and the script types say their charset.
local function with_charset(t)
  if t:find("^text/") or t:find("%+xml$") or t == "application/xml" then
    return t .. "; charset=utf-8"
  end
  return t
end

local TYPES = {}
for ext, t in pairs(MIME) do TYPES[ext] = with_charset(t) end

-- The extension of the last segment of path, lower-cased (nil for none:
-- "README", ".profile", "a.").
local function extension(path)
  local base = path:match("([^/]*)$")
  local ext = base:match("^.+%.([^.]+)$")
  return ext and ext:lower()
end

-- extra: an extension -> type map, its keys already lower-cased and
-- without a dot (normalize_types).
local function lookup(path, extra)
  local ext = extension(path)
  if not ext then return nil end
  return extra and extra[ext] or TYPES[ext]
end

-- level: error's level for the caller of the public function.
local function check_types(who, t, level)
  if t == nil then return nil end
  if type(t) ~= "table" then
    error(("%s: option 'mime_types' must be a table (got %s)"):format(who,
      type(t)), level)
  end
  local out = {}
  for k, v in pairs(t) do
    if type(k) ~= "string" or type(v) ~= "string" then
      error(("%s: option 'mime_types' maps extensions (strings) to types "
        .. "(strings)"):format(who), level)
    end
    out[k:gsub("^%.", ""):lower()] = v
  end
  return out
end

--- The media type for a file name, from its extension (case-insensitive).
-- Text types (`text/*`, XML, SVG) carry `; charset=utf-8`; an unknown or
-- missing extension gives `application/octet-stream`. The table covers
-- the web's usual files: html, css, js/mjs, json, map, txt, md, csv, xml,
-- svg, png, jpg, gif, webp, avif, ico, wasm, pdf, zip, gz, mp3, mp4, webm,
-- ogg, woff/woff2, ttf, otf and more.
-- @tparam string path a file name or path (only the last segment counts)
-- @tparam[opt] table extra extension -> type, consulted first (keys with
--   or without the dot, any case; values used as they are)
-- @treturn string the media type
-- @usage
-- static.mime_type("site/app.js")          --> "text/javascript; charset=utf-8"
-- static.mime_type("a.PNG")                --> "image/png"
-- static.mime_type("x.lua", { lua = "text/x-lua" }) --> "text/x-lua"
function static.mime_type(path, extra)
  if type(path) ~= "string" then
    error("static.mime_type: path must be a string (got " .. type(path)
      .. ")", 2)
  end
  return lookup(path, check_types("static.mime_type", extra, 3))
    or DEFAULT_TYPE
end

-- ---------------------------------------------------------------------------
-- HTTP dates

local DAYS = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" }
local MONTHS = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug",
                 "Sep", "Oct", "Nov", "Dec" }
local MONTH = {}
for i, m in ipairs(MONTHS) do MONTH[m] = i end

-- IMF-fixdate (RFC 9110 5.6.7), built by hand: %a and %b follow the locale.
local function http_date(t)
  local d = os.date("!*t", t)
  return ("%s, %02d %s %04d %02d:%02d:%02d GMT"):format(DAYS[d.wday], d.day,
    MONTHS[d.month], d.year, d.hour, d.min, d.sec)
end

-- Seconds since the epoch of a UTC civil date (Howard Hinnant's
-- days_from_civil), with no time zone or locale involved.
local function timegm(y, m, d, hh, mm, ss)
  if m <= 2 then y = y - 1 end
  local era = y // 400
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = (153 * mp + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  local days = era * 146097 + doe - 719468
  return days * 86400 + hh * 3600 + mm * 60 + ss
end

-- An HTTP-date in any of the three forms a recipient must accept
-- (IMF-fixdate, RFC 850, asctime), as seconds; nil when it is none.
local function parse_date(s)
  if type(s) ~= "string" then return nil end
  s = s:match("^%s*(.-)%s*$")
  local d, mon, y, hh, mm, ss = s:match(
    "^%a%a%a, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if not d then
    d, mon, y, hh, mm, ss = s:match(
      "^%a+, (%d%d)%-(%a%a%a)%-(%d%d) (%d%d):(%d%d):(%d%d) GMT$")
    if d then
      y = tonumber(y)
      y = y < 70 and 2000 + y or 1900 + y
    else
      mon, d, hh, mm, ss, y = s:match(
        "^%a%a%a (%a%a%a) ([ %d]%d) (%d%d):(%d%d):(%d%d) (%d%d%d%d)$")
      if not mon then return nil end
    end
  end
  local m = MONTH[mon]
  d, y = tonumber((d:gsub(" ", ""))), tonumber(y)
  hh, mm, ss = tonumber(hh), tonumber(mm), tonumber(ss)
  if not m or d < 1 or d > 31 or hh > 23 or mm > 59 or ss > 60 then
    return nil
  end
  return timegm(y, m, d, hh, mm, ss)
end

-- ---------------------------------------------------------------------------
-- Validators and conditionals (RFC 9110 section 13)

-- nginx's shape, "<mtime hex>-<size hex>", with the mtime in nanoseconds so
-- that two writes within one second give two tags.
local function etag_of(st)
  return ('"%x-%x"'):format(st.mtime * 1000000000 + (st.mtime_ns or 0),
    st.size)
end

local function trim(s)
  return s:match("^%s*(.-)%s*$")
end

-- If-None-Match: weak comparison (W/ ignored on both sides); "*" matches
-- any current representation.
local function none_match(header, tag)
  if trim(header) == "*" then return true end
  if not tag then return false end
  tag = tag:gsub("^W/", "")
  for t in header:gmatch('"[^"]*"') do
    if t == tag then return true end
  end
  return false
end

-- If-Match and If-Range: strong comparison (a weak tag never matches).
local function strong_match(header, tag)
  if not tag or tag:find("^W/") then return false end
  for pos, t in header:gmatch('()("[^"]*")') do
    if t == tag and header:sub(pos - 2, pos - 1) ~= "W/" then return true end
  end
  return false
end

-- The precondition answer for a resource with this tag (or nil) and
-- mtime: 304, 412, or nil to go on. Order per RFC 9110 13.2.2.
local function preconditions(h, method, tag, mtime)
  local safe = method == "get" or method == "head"
  local im = h["if-match"]
  if im then
    if trim(im) ~= "*" and not strong_match(im, tag) then return 412 end
  else
    local t = parse_date(h["if-unmodified-since"])
    if t and mtime > t then return 412 end
  end
  local inm = h["if-none-match"]
  if inm then
    if none_match(inm, tag) then return safe and 304 or 412 end
  elseif safe then
    local t = parse_date(h["if-modified-since"])
    if t and mtime <= t then return 304 end
  end
  return nil
end

-- ---------------------------------------------------------------------------
-- Byte ranges (RFC 9110 section 14)

local UNSATISFIABLE = {}

-- A decimal of up to 18 digits; more saturates (it is past any file).
local function number(digits)
  if #digits > 18 then return math.maxinteger end
  return math.tointeger(tonumber(digits))
end

-- first, last (inclusive) of a single satisfiable range; UNSATISFIABLE; or
-- nil to ignore the header (not bytes, malformed, several ranges, or the
-- suffix form on an empty file) and answer the whole file.
local function parse_range(header, size)
  local spec = header:match("^%s*[Bb][Yy][Tt][Ee][Ss]%s*=(.*)$")
  if not spec then return nil end
  local one
  for item in (spec .. ","):gmatch("([^,]*),") do
    item = trim(item)
    if item ~= "" then
      if one then return nil end -- several: served whole
      one = item
    end
  end
  if not one then return nil end
  local a, b = one:match("^(%d*)%s*%-%s*(%d*)$")
  if not a or (a == "" and b == "") then return nil end
  if a == "" then
    local n = number(b)
    if n == 0 then return UNSATISFIABLE end
    if size == 0 then return nil end
    return math.max(0, size - n), size - 1
  end
  local first = number(a)
  local last = b ~= "" and number(b) or math.maxinteger
  if last < first then return nil end
  if first >= size then return UNSATISFIABLE end
  return first, math.min(last, size - 1)
end

-- If-Range holds: a strong ETag equal to ours, or the exact Last-Modified.
local function if_range_holds(value, tag, mtime)
  value = trim(value)
  if value:find('^"') or value:find("^W/") then
    return strong_match(value, tag)
  end
  return parse_date(value) == mtime
end

-- ---------------------------------------------------------------------------
-- Options

local function text(status, body, headers)
  headers = headers or {}
  headers["content-type"] = "text/plain; charset=utf-8"
  return { status = status, headers = headers, body = body }
end

local FILE_OPTIONS = { etag = "boolean", max_age = "number",
                       mime_types = "table" }
local WRAP_OPTIONS = { etag = "boolean", max_age = "number",
                       mime_types = "table", index = "string|false",
                       prefix = "string", allow_symlinks = "boolean",
                       dotfiles = "boolean" }

local function config(who, opts, known)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    error(("%s: opts must be a table (got %s)"):format(who, type(opts)), 3)
  end
  for k, v in pairs(opts) do
    local want = known[k]
    if not want then
      error(("%s: unknown option '%s'"):format(who, tostring(k)), 3)
    end
    local ok = type(v) == want or (want == "string|false" and
      (type(v) == "string" or v == false))
    if not ok then
      error(("%s: option '%s' must be a %s (got %s)"):format(who, k,
        want == "string|false" and "string or false" or want, type(v)), 3)
    end
  end
  local conf = {
    etag = opts.etag ~= false,
    mime_types = check_types(who, opts.mime_types, 4),
    allow_symlinks = opts.allow_symlinks == true,
    dotfiles = opts.dotfiles == true,
  }
  if opts.max_age ~= nil then
    local n = math.tointeger(opts.max_age)
    if not n or n < 0 then
      error(("%s: option 'max_age' must be an integer >= 0 (seconds)")
        :format(who), 3)
    end
    conf.cache_control = "public, max-age=" .. n
  end
  if known.index then
    local index = opts.index
    if index == nil then index = "index.html" end
    if index and (index == "" or index:find("[/\\\0]") or index == "."
        or index == "..") then
      error(("%s: option 'index' must be a file name (got %q)"):format(who,
        index), 3)
    end
    conf.index = index
  end
  if opts.prefix ~= nil then
    local p = opts.prefix:gsub("/+$", "")
    if opts.prefix:sub(1, 1) ~= "/" then
      error(("%s: option 'prefix' must start with / (got %q)"):format(who,
        opts.prefix), 3)
    end
    if p ~= "" then conf.prefix = p end
  end
  return conf
end

-- ---------------------------------------------------------------------------
-- One file

-- The response for the regular file at `open_path` (the media type from
-- `name`), or nil when it is not one or cannot be opened.
local function respond_file(req, name, open_path, conf)
  local st = ringlet.stat(open_path)
  if not st or st.type ~= "file" then return nil end
  local size, mtime = st.size, st.mtime
  local tag = conf.etag and etag_of(st) or nil
  local h = req.headers or {}
  local method = req.request_method
  local headers = { ["last-modified"] = http_date(mtime), etag = tag,
                    ["cache-control"] = conf.cache_control }
  local pre = preconditions(h, method, tag, mtime)
  if pre == 304 then
    return { status = 304, headers = headers }
  elseif pre == 412 then
    return text(412, "Precondition Failed\n")
  end
  local f = io.open(open_path, "rb")
  if not f then return nil end
  headers["content-type"] = lookup(name, conf.mime_types) or DEFAULT_TYPE
  headers["accept-ranges"] = "bytes"
  local range = h.range
  if range and method == "get" and (h["if-range"] == nil
      or if_range_holds(h["if-range"], tag, mtime)) then
    local first, last = parse_range(range, size)
    if first == UNSATISFIABLE then
      f:close()
      return text(416, "Range Not Satisfiable\n",
        { ["content-range"] = "bytes */" .. size })
    elseif first then
      f:seek("set", first)
      headers["content-range"] = ("bytes %d-%d/%d"):format(first, last, size)
      headers["content-length"] = tostring(last - first + 1)
      return { status = 206, headers = headers, body = f }
    end
  end
  return { status = 200, headers = headers, body = f }
end

--- The response for one file, with every header and conditional `wrap`
-- gives (Ring's `file-response`), for a handler of your own.
--
-- No path checks are made here: `path` is trusted (never build it from
-- the request without the checks `wrap` makes). Symbolic links are
-- followed. The answer is 200 with the open file as its body; 304 (no
-- body) when `If-None-Match` or, without it, `If-Modified-Since` says the
-- client's copy is current (GET and HEAD); 412 when `If-Match` or
-- `If-Unmodified-Since` fails; for GET with one `Range: bytes=a-b`,
-- `bytes=a-` or `bytes=-n` (and a matching `If-Range`, if any) 206 with
-- `Content-Range`, or 416 with `Content-Range: bytes */SIZE` when it lies
-- past the end. A Range header with several ranges, or malformed, is
-- ignored (the whole file, 200).
-- @tparam table req the request
-- @tparam string path the file's path
-- @tparam[opt] table opts `etag` (default true: send a strong ETag,
--   `"<mtime in ns, hex>-<size hex>"`), `max_age` (seconds: adds
--   `Cache-Control: public, max-age=N`), `mime_types` (extension -> type,
--   before the built-in table)
-- @treturn ?table the response, or nil when `path` is not a regular file
--   (missing, a directory, unreadable)
-- @raise on bad options
-- @usage
-- return function(req)
--   if req.uri == "/report.pdf" and user_may_read(req) then
--     return static.file_response(req, "/srv/reports/latest.pdf")
--   end
--   return { status = 404, body = "Not Found" }
-- end
function static.file_response(req, path, opts)
  if type(req) ~= "table" then
    error("static.file_response: req must be a table (got " .. type(req)
      .. ")", 2)
  end
  if type(path) ~= "string" then
    error("static.file_response: path must be a string (got " .. type(path)
      .. ")", 2)
  end
  local conf = config("static.file_response", opts, FILE_OPTIONS)
  if path:find("\0", 1, true) then return nil end
  return respond_file(req, path, path, conf)
end

-- ---------------------------------------------------------------------------
-- A directory of files

-- Percent-decodes s once; nil for a malformed escape or a NUL.
local function decode(s)
  if not s:find("%", 1, true) then return s end
  local out, i = {}, 1
  while true do
    local j = s:find("%", i, true)
    if not j then
      out[#out + 1] = s:sub(i)
      break
    end
    local hex = s:sub(j + 1, j + 2)
    if not hex:find("^%x%x$") then return nil end
    out[#out + 1] = s:sub(i, j - 1)
    out[#out + 1] = string.char(tonumber(hex, 16))
    i = j + 3
  end
  local path = table.concat(out)
  if path:find("\0", 1, true) then return nil end
  return path
end

local function inside(real, root)
  return root == "/" or real == root or real:sub(1, #root + 1) == root .. "/"
end

-- What the request maps to under conf.root: the file's name (for its
-- type) and the path to open; or a response (400, 301); or nil.
local function locate(req, conf)
  local uri = req.uri
  if type(uri) ~= "string" or uri:sub(1, 1) ~= "/" then return nil end
  local rest = uri
  if conf.prefix then
    local p = conf.prefix
    if uri == p then
      rest = ""
    elseif uri:sub(1, #p + 1) == p .. "/" then
      rest = uri:sub(#p + 1)
    else
      return nil
    end
  end
  local path = decode(rest)
  if not path then return text(400, "Bad Request\n") end
  local segments = {}
  for seg in path:gmatch("[^/]+") do
    if seg == "." or seg == ".." or seg:find("\\", 1, true)
        or (not conf.dotfiles and seg:sub(1, 1) == ".") then
      return nil
    end
    segments[#segments + 1] = seg
  end
  local slash = path:sub(-1) == "/" -- "" only at the bare prefix: no slash
  local root = conf.root
  local name = #segments > 0 and root .. "/" .. table.concat(segments, "/")
    or root
  local st = ringlet.stat(name)
  if not st then return nil end
  local is_dir = st.type == "directory"
  if is_dir then
    if not conf.index then return nil end
    name = name .. "/" .. conf.index
    st = ringlet.stat(name)
    if not st then return nil end
  elseif slash then
    return nil -- "/file.txt/"
  end
  if st.type ~= "file" then return nil end
  local open_path = name
  if not conf.allow_symlinks then
    local real_root = ringlet.realpath(root)
    local real = ringlet.realpath(name)
    if not (real_root and real and inside(real, real_root)) then
      return nil
    end
    open_path = real
  end
  if is_dir and not slash then
    local location = uri:gsub("^/+", "/") .. "/"
    if req.query_string then
      location = location .. "?" .. req.query_string
    end
    return text(301, "Moved Permanently\n", { location = location })
  end
  return name, open_path
end

local function root_of(who, root)
  if type(root) ~= "string" then
    error(("%s: root must be a string (got %s)"):format(who, type(root)), 3)
  end
  if root:find("\0", 1, true) then
    error(who .. ": root contains a NUL byte", 3)
  end
  local st = ringlet.stat(root)
  if not st or st.type ~= "directory" then
    error(("%s: root %q is not a directory"):format(who, root), 3)
  end
  if root ~= "/" then root = root:gsub("/+$", "") end
  return root
end

-- wrap's handler, for a checked configuration.
local function files(handler, conf)
  return function(req, ...)
    local method = req.request_method
    if method == "get" or method == "head" then
      local name, open_path = locate(req, conf)
      if type(name) == "table" then return name end
      if name then
        local res = respond_file(req, name, open_path, conf)
        if res then return res end
      end
    end
    return handler(req, ...)
  end
end

--- Serves the files under a directory in front of a handler (Ring's
-- `wrap-file`): a GET or HEAD request whose path names a regular file
-- under `root` is answered with it (as `file_response` does); any other
-- request goes to `handler`.
--
-- See the module's introduction for how a path is checked. A GET or HEAD
-- path (under the prefix, if any) with a malformed percent escape or an
-- escaped NUL is answered 400 without calling the handler; every other
-- path that is not a servable file (a `..` segment, a dot file, a link out
-- of the root, a directory without an index) goes to the handler, which
-- decides what a miss is.
-- @tparam function handler called with the request for what is not a file
-- @tparam string root the directory to serve (it must exist when `wrap`
--   is called; relative to the working directory unless absolute)
-- @tparam[opt] table opts
--
--   - `index` (default `"index.html"`): the file a directory is answered
--     with; `false` answers no directory;
--   - `prefix` (default none): a URI prefix such as `"/assets"`: only
--     paths under it are looked at, and it is stripped before the lookup;
--   - `allow_symlinks` (default false): serve files whose real path lies
--     outside the root (links inside the root are always followed);
--   - `dotfiles` (default false): serve paths with a segment starting
--     with a dot (`..` and `.` never are);
--   - `max_age` (seconds, default none): `Cache-Control: public,
--     max-age=N` on every file answer;
--   - `etag` (default true): send `ETag` and honour it;
--   - `mime_types`: extension -> type, before the built-in table.
-- @treturn function the wrapped handler
-- @raise when `root` is not a directory, or on bad options (an unknown
--   one, a wrong type)
-- @usage
-- local static = require "ringlet.static"
-- local app = function(req)
--   return { status = 404, body = "no route for " .. req.uri }
-- end
-- return static.wrap(app, "public", { prefix = "/assets", max_age = 3600 })
function static.wrap(handler, root, opts)
  if type(handler) ~= "function" then
    error("static.wrap: handler must be a function (got " .. type(handler)
      .. ")", 2)
  end
  local conf = config("static.wrap", opts, WRAP_OPTIONS)
  conf.root = root_of("static.wrap", root)
  return files(handler, conf)
end

--- A handler that serves the files under a directory and nothing else:
-- `wrap` around a handler answering 404 (`text/plain`, "Not Found").
-- Methods other than GET and HEAD get 405 with `Allow: GET, HEAD`.
-- @tparam string root the directory to serve
-- @tparam[opt] table opts as for `wrap`
-- @treturn function the handler
-- @raise as `wrap`
-- @usage
-- -- app.lua: serve ./site on port 8080
-- -- ringlet app.lua --port 8080
-- return require("ringlet.static").serve("site", { max_age = 60 })
function static.serve(root, opts)
  local conf = config("static.serve", opts, WRAP_OPTIONS)
  conf.root = root_of("static.serve", root)
  local serve = files(function()
    return text(404, "Not Found\n")
  end, conf)
  return function(req)
    local method = req.request_method
    if method ~= "get" and method ~= "head" then
      return text(405, "Method Not Allowed\n", { allow = "GET, HEAD" })
    end
    return serve(req)
  end
end

-- ---------------------------------------------------------------------------
-- Middleware for any handler

-- The value of a header in any letter case (the lower-case key first).
local function header(headers, name)
  if type(headers) ~= "table" then return nil end
  local v = headers[name]
  if v ~= nil then return v end
  for k, value in pairs(headers) do
    if type(k) == "string" and k:lower() == name then return value end
  end
  return nil
end

-- A shallow copy of the response with a copy of its headers, so that a
-- response table the handler shares between requests is never changed.
local function copy_response(res)
  local out = {}
  for k, v in pairs(res) do out[k] = v end
  local headers = {}
  for k, v in pairs(type(res.headers) == "table" and res.headers or {}) do
    headers[k] = v
  end
  out.headers = headers
  return out
end

-- A body that is a channel (as_channel's): a stream or an upgrade, left
-- alone by the middleware.
local function is_channel(body)
  return type(body) == "userdata" and io.type(body) == nil
end

--- Ring's `wrap-head`: a HEAD request reaches the handler as a GET (its
-- `request_method` is `"get"` while the handler runs, and `"head"` again
-- after it returns), so handlers need no HEAD case.
--
-- The response's body is left in place, unlike Ring, which drops it: the
-- core never sends a body in answer to HEAD, and it takes the
-- `Content-Length` of the head from the body, so the head says what a GET
-- would get (a dropped string body would say 0). A file body is closed
-- unread. The request table is changed in place, not copied, so that
-- `ringlet.as_channel(req)` still knows it.
-- @tparam function handler the handler to wrap
-- @treturn function the wrapped handler
-- @usage
-- local handler = static.wrap_head(function(req)
--   if req.request_method ~= "get" then return { status = 405 } end
--   return { body = "hello" }       -- HEAD: Content-Length: 5, no body
-- end)
function static.wrap_head(handler)
  if type(handler) ~= "function" then
    error("static.wrap_head: handler must be a function (got "
      .. type(handler) .. ")", 2)
  end
  return function(req, ...)
    if req.request_method ~= "head" then return handler(req, ...) end
    req.request_method = "get"
    local res = handler(req, ...)
    req.request_method = "head"
    return res
  end
end

--- Ring's `wrap-content-type`: a response without a `Content-Type` (in
-- any letter case) gets one from the request path's extension (as
-- `mime_type` gives it), or the default type. Channel responses and nil
-- are passed on as they are; the response is copied, never changed.
-- @tparam function handler the handler to wrap
-- @tparam[opt] table opts `mime_types` (extension -> type, before the
--   built-in table), `default` (the type for an unknown extension;
--   default `"application/octet-stream"`)
-- @treturn function the wrapped handler
-- @raise on bad options
-- @usage
-- local handler = static.wrap_content_type(function(req)
--   return { body = render(req.uri) }   -- /feed.xml: application/xml
-- end, { mime_types = { gmi = "text/gemini" } })
function static.wrap_content_type(handler, opts)
  if type(handler) ~= "function" then
    error("static.wrap_content_type: handler must be a function (got "
      .. type(handler) .. ")", 2)
  end
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    error("static.wrap_content_type: opts must be a table (got "
      .. type(opts) .. ")", 2)
  end
  for k in pairs(opts) do
    if k ~= "mime_types" and k ~= "default" then
      error(("static.wrap_content_type: unknown option '%s'"):format(
        tostring(k)), 2)
    end
  end
  local extra = check_types("static.wrap_content_type", opts.mime_types, 3)
  local default = opts.default
  if default == nil then default = DEFAULT_TYPE end
  if type(default) ~= "string" then
    error("static.wrap_content_type: option 'default' must be a string", 2)
  end
  return function(req, ...)
    local res = handler(req, ...)
    if type(res) ~= "table" or is_channel(res.body)
        or header(res.headers, "content-type") ~= nil then
      return res
    end
    local uri = type(req.uri) == "string" and req.uri or ""
    res = copy_response(res)
    res.headers["content-type"] = lookup(uri, extra) or default
    return res
  end
end

--- Ring's `wrap-not-modified`: a 200 answer to GET or HEAD whose `ETag`
-- matches the request's `If-None-Match` (weak comparison, `*` matches),
-- or, when the request has no `If-None-Match`, whose `Last-Modified` is no
-- later than its `If-Modified-Since`, becomes a 304 with the same headers
-- and no body (a file body is closed). An unparsable date is ignored.
-- The response is copied, never changed.
-- @tparam function handler the handler to wrap
-- @treturn function the wrapped handler
-- @usage
-- local handler = static.wrap_not_modified(function()
--   return { headers = { etag = '"v42"' }, body = page }
-- end)
function static.wrap_not_modified(handler)
  if type(handler) ~= "function" then
    error("static.wrap_not_modified: handler must be a function (got "
      .. type(handler) .. ")", 2)
  end
  return function(req, ...)
    local res = handler(req, ...)
    local method = req.request_method
    if type(res) ~= "table" or (method ~= "get" and method ~= "head")
        or (res.status or 200) ~= 200 or is_channel(res.body) then
      return res
    end
    local h = req.headers or {}
    local inm = h["if-none-match"]
    local match
    if inm then
      local tag = header(res.headers, "etag")
      match = type(tag) == "string" and none_match(inm, tag)
    else
      local since = parse_date(h["if-modified-since"])
      local last = parse_date(header(res.headers, "last-modified"))
      match = since ~= nil and last ~= nil and last <= since
    end
    if not match then return res end
    if io.type(res.body) == "file" then res.body:close() end
    res = copy_response(res)
    res.status, res.body = 304, nil
    for k in pairs(res.headers) do
      if type(k) == "string" and k:lower() == "content-length" then
        res.headers[k] = nil
      end
    end
    return res
  end
end

return static
