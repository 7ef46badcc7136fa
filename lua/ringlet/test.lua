--- Testing an app: run it on a free port in the same Lua state and talk to
-- it with `ringlet.client`, or build request tables to call a handler
-- directly (as Clojure's ring-mock does).
--
-- `start` takes a handler, or an app file as the `ringlet` command takes
-- one, and listens on 127.0.0.1 on a port the system picks. No child
-- process runs: the server lives in the state that calls `start`, so a
-- busted spec can reach into the app's modules. The returned object's
-- `get`, `post`, `request` and `websocket` are `ringlet.client` calls:
-- when no loop is running (a busted spec) each runs the loop until it
-- completes, so the server answers meanwhile; inside a running loop (a
-- handler, a timer) each suspends only the calling task.
--
-- `request` builds the table a handler gets, with every key the server
-- sets and the same defaults a real request to `localhost` would have, so
-- a handler can be called as a plain function, with no socket at all.
--
-- @module ringlet.test
-- @usage
-- -- spec/app_spec.lua (busted)
-- local test = require "ringlet.test"
-- describe("my app", function()
--   local app
--   setup(function() app = test.start("app.lua") end)
--   teardown(function() app:stop() end)
--   it("says hello", function()
--     local res = assert(app:get("/"))
--     assert.equal(200, res.status)
--   end)
--   it("handler alone", function()
--     local handler = dofile("app.lua")
--     local res = handler(test.request("get", "/?name=you"))
--     assert.equal(200, res.status)
--   end)
-- end)

local ringlet = require "ringlet"

local test = {}

-- ---------------------------------------------------------------------------
-- Request tables (ring-mock)

local METHOD_DEFAULT = "get"

-- RFC 9110's token characters: what a method or a header name may hold.
local function is_token(s)
  return s ~= "" and not s:find("[^%w!#$%%&'*+%-.^_`|~]")
end

-- application/x-www-form-urlencoded, as a browser writes a form: space as
-- "+", every byte but the unreserved ones as %XX.
local function form_escape(s)
  return (s:gsub("[^%w%-._~ ]", function(c)
    return ("%%%02X"):format(c:byte())
  end):gsub(" ", "+"))
end

-- params: name -> value (a string, number or boolean, or an array of them
-- for a repeated name), names sorted so the text is always the same.
local function encode_params(fn, params)
  if type(params) == "string" then return params end
  if type(params) ~= "table" then
    error(("%s: params must be a table or a string (got %s)")
      :format(fn, type(params)), 3)
  end
  local names = {}
  for k in pairs(params) do
    if type(k) ~= "string" then
      error(("%s: params names must be strings (got %s)"):format(fn, type(k)),
        3)
    end
    names[#names + 1] = k
  end
  table.sort(names)
  local parts = {}
  for _, k in ipairs(names) do
    local v = params[k]
    local values = type(v) == "table" and v or { v }
    for _, x in ipairs(values) do
      local tx = type(x)
      if tx ~= "string" and tx ~= "number" and tx ~= "boolean" then
        error(("%s: params value for %q must be a string, number or "
          .. "boolean (got %s)"):format(fn, k, tx), 3)
      end
      parts[#parts + 1] = form_escape(k) .. "=" .. form_escape(tostring(x))
    end
  end
  return table.concat(parts, "&")
end

-- The headers table as the server builds it: names lower-cased, a value
-- with surrounding spaces and tabs trimmed (as the parser does), an array
-- for a repeated header joined with ", ".
local function build_headers(fn, given)
  local out = {}
  if given == nil then return out end
  if type(given) ~= "table" then
    error(("%s: headers must be a table (got %s)"):format(fn, type(given)), 3)
  end
  -- sorted, so that "A" and "a" given both join in a stable order
  local names = {}
  for k in pairs(given) do
    if type(k) ~= "string" or not is_token(k) then
      error(("%s: bad header name %s"):format(fn, tostring(k)), 3)
    end
    names[#names + 1] = k
  end
  table.sort(names)
  for _, k in ipairs(names) do
    local v = given[k]
    local values = type(v) == "table" and v or { v }
    for _, x in ipairs(values) do
      if type(x) ~= "string" and type(x) ~= "number" then
        error(("%s: header %s must be a string or an array of strings "
          .. "(got %s)"):format(fn, k, type(x)), 3)
      end
      x = tostring(x):match("^[ \t]*(.-)[ \t]*$")
      if x:find("[%z\r\n]") then
        error(("%s: header %s holds CR, LF or NUL"):format(fn, k), 3)
      end
      local name = k:lower()
      out[name] = out[name] and out[name] .. ", " .. x or x
    end
  end
  return out
end

-- true when the comma-separated list holds the token (case-insensitive).
local function has_token(list, token)
  if not list then return false end
  for item in list:gmatch("[^,]+") do
    if item:match("^[ \t]*(.-)[ \t]*$"):lower() == token then return true end
  end
  return false
end

-- The host and port of a Host header value (the port nil when absent),
-- brackets kept around an IPv6 literal as the server keeps them.
local function split_host(value)
  if value:sub(1, 1) == "[" then
    local host, port = value:match("^(%b[])(.*)$")
    if host then return host, tonumber(port:match("^:(%d+)$")) end
    return value
  end
  local host, port = value:match("^([^:]*):(%d*)$")
  if host then return host, tonumber(port) end
  return value
end

-- A WebSocket key must be the base64 of 16 bytes (RFC 6455 4.1).
local function valid_ws_key(key)
  return #key == 24 and key:find("^[%w+/]+==$") ~= nil
end

local SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ==" -- RFC 6455's own example

local REQUEST_OPTIONS = {
  method = "string", uri = "string", query_string = "string",
  params = true, headers = "table", body = true, protocol = "string",
  scheme = "string", server_name = "string", server_port = "number",
  remote_addr = "string", websocket = "boolean",
}

local function build_request(fn, o)
  for k, v in pairs(o) do
    local want = REQUEST_OPTIONS[k]
    if not want then
      error(("%s: unknown option %s"):format(fn, tostring(k)), 3)
    elseif want ~= true and type(v) ~= want then
      error(("%s: %s must be a %s (got %s)"):format(fn, k, want, type(v)), 3)
    end
  end
  local method = (o.method or METHOD_DEFAULT):lower()
  if not is_token(method) then
    error(("%s: bad method %q"):format(fn, method), 3)
  end
  local protocol = o.protocol or "HTTP/1.1"
  if protocol ~= "HTTP/1.1" and protocol ~= "HTTP/1.0" then
    error(("%s: protocol must be \"HTTP/1.1\" or \"HTTP/1.0\" (got %q)")
      :format(fn, protocol), 3)
  end

  -- the target: origin-form, "*", or an absolute URL naming the host
  local target = (o.uri or "/"):gsub("#.*$", "")
  local scheme, authority, rest = target:match("^(%a[%w+.-]*)://([^/?]*)(.*)$")
  if scheme then
    scheme = scheme:lower()
    target = rest == "" and "/" or rest
    if target:sub(1, 1) == "?" then target = "/" .. target end
  elseif target:sub(1, 1) ~= "/" and target ~= "*" then
    error(("%s: uri must start with \"/\", be \"*\" or an absolute URL "
      .. "(got %q)"):format(fn, target), 3)
  end
  if target:find("[%c ]") then
    error(("%s: uri holds a space or a control character"):format(fn), 3)
  end
  local path, query = target:match("^([^?]*)%?(.*)$")
  path = path or target

  if o.query_string then query = o.query_string end
  local body = o.body
  local headers = build_headers(fn, o.headers)
  if o.params ~= nil then
    local text = encode_params(fn, o.params)
    if method == "get" or method == "head" or method == "delete" then
      if text ~= "" then
        query = (query and query ~= "") and query .. "&" .. text or text
      end
    else
      if body ~= nil then
        error(("%s: give params or body, not both (params go in the body "
          .. "of a %s)"):format(fn, method:upper()), 3)
      end
      body = text
      headers["content-type"] = headers["content-type"]
        or "application/x-www-form-urlencoded"
    end
  end

  -- the body: a string (nil when empty), an array of strings, or a file
  -- handle (as the server hands over a body it spooled to a file)
  local length
  if type(body) == "table" then
    for i, piece in ipairs(body) do
      if type(piece) ~= "string" then
        error(("%s: body[%d] must be a string (got %s)")
          :format(fn, i, type(piece)), 3)
      end
    end
    body = table.concat(body)
  end
  if type(body) == "string" then
    length = #body
    if body == "" then body = nil end
  elseif io.type(body) == "file" then
    local here = body:seek()
    length = body:seek("end") - here
    body:seek("set", here)
  elseif body ~= nil then
    error(("%s: body must be a string, an array of strings or a file "
      .. "(got %s)"):format(fn, io.type(body) or type(body)), 3)
  end
  -- framing as a client sends it: the length of a body, even an empty
  -- one, and 0 for a POST, PUT or PATCH without one
  if not length and (method == "post" or method == "put"
      or method == "patch") then
    length = 0
  end
  if length and not headers["content-length"]
      and not headers["transfer-encoding"] then
    headers["content-length"] = tostring(length)
  end

  -- where it went: an absolute URL, else the Host header, else localhost
  scheme = o.scheme or scheme or "http"
  local default_port = scheme == "https" and 443 or 80
  local name, port
  if authority and authority ~= "" then
    name, port = split_host(authority)
    headers.host = headers.host or authority
  elseif headers.host then
    name = split_host(headers.host)
  end
  name = o.server_name or name
  if name == nil or name == "" then name = "localhost" end
  port = o.server_port or port or default_port
  if not headers.host then
    headers.host = port == default_port and name or name .. ":" .. port
  end

  -- a WebSocket upgrade: the headers a client sends, checked as the
  -- server checks them (it answers 400 or 426 and calls no handler)
  if o.websocket then
    headers.connection = headers.connection or "Upgrade"
    headers.upgrade = headers.upgrade or "websocket"
    headers["sec-websocket-version"] = headers["sec-websocket-version"] or "13"
    headers["sec-websocket-key"] = headers["sec-websocket-key"] or SAMPLE_KEY
  end
  local websocket = has_token(headers.upgrade, "websocket")
    and has_token(headers.connection, "upgrade")
  if websocket then
    local why
    if method ~= "get" or protocol ~= "HTTP/1.1" or length and length > 0 then
      why = "a WebSocket upgrade must be a GET on HTTP/1.1 without a body"
    elseif headers["sec-websocket-version"] ~= "13" then
      why = "Sec-WebSocket-Version must be 13 (the server answers 426)"
    elseif not valid_ws_key(headers["sec-websocket-key"] or "") then
      why = "missing or invalid Sec-WebSocket-Key (the server answers 400)"
    end
    if why then error(fn .. ": " .. why, 3) end
  end

  return {
    server_port = port,
    server_name = name,
    remote_addr = o.remote_addr or "127.0.0.1",
    uri = path,
    query_string = query,
    scheme = scheme,
    request_method = method,
    protocol = protocol,
    headers = headers,
    body = body,
    websocket = websocket,
  }
end

--- A request table as the server would hand it to a handler, for calling
-- a handler directly (ring-mock's `request`).
--
-- Every key the server sets is there: `server_port`, `server_name`,
-- `remote_addr`, `uri`, `query_string` (nil when the URI has no `?`),
-- `scheme`, `request_method` (lower-case), `protocol`, `headers`
-- (lower-case names; an array value is a repeated header, joined with
-- ", "; values trimmed), `body` (nil when empty) and `websocket`.
-- Defaults are those of a request to `http://localhost/`: `server_name`
-- "localhost", `server_port` 80, `remote_addr` "127.0.0.1", `protocol`
-- "HTTP/1.1", `scheme` "http", and a `host` header naming the server.
-- A body gets a `content-length` header (unless `transfer-encoding` is
-- given), and so does a POST, PUT or PATCH without one (0), as clients
-- (`ringlet.client`, curl, browsers) send them.
--
-- The table is a plain one with every key set; the server's makes most of
-- its keys on first use (README, "The API at a glance"), which a handler
-- sees only through `rawget`, `next` or `getmetatable`.
--
-- Called as `request(method, uri [, opts])` (ring-mock's form) or
-- `request(opts)`. Options:
--
--   - `method` ("get"; any case), `uri` ("/"): a path with an optional
--     `?query`, `"*"`, or an absolute URL (`http://example.com:8080/a?b`),
--     which sets `server_name`, `server_port` and the `host` header;
--   - `query_string`: replaces the URI's;
--   - `params`: a table of form fields (name -> string, number, boolean,
--     or an array of them) or an already encoded string, form-encoded as
--     ring-mock does: into the query string for GET, HEAD and DELETE,
--     else as the body with `content-type:
--     application/x-www-form-urlencoded`;
--   - `headers`: name -> string, or an array of strings for a repeated
--     header;
--   - `body`: a string, an array of strings (joined), or a file handle
--     (as the server passes a body it spooled to a file);
--   - `protocol`, `scheme`, `server_name`, `server_port`, `remote_addr`:
--     replace the defaults (a `host` header, when given, names the server
--     as it does on the real server);
--   - `websocket = true`: a WebSocket upgrade, with the headers a client
--     sends (`connection`, `upgrade`, `sec-websocket-version`,
--     `sec-websocket-key`; any given win). Headers asking for an upgrade
--     set `websocket` too. An upgrade the server would refuse before the
--     handler (not a GET on HTTP/1.1, a body, a version other than 13, a
--     bad key) raises an error.
-- @tparam string|table method the method (`"get"`, `"POST"`, ...), or a
--   table of options
-- @tparam[opt] string uri the request target (with the method form)
-- @tparam[opt] table|string opts more options (with the method form); a
--   string is the body
-- @treturn table the request table
-- @raise on a bad option: an unknown one, a wrong type, a header value
--   with CR or LF, a URI that is not a path
-- @usage
-- local test = require "ringlet.test"
-- local req = test.request("get", "/search?q=lua")
-- -- req.uri == "/search", req.query_string == "q=lua",
-- -- req.headers.host == "localhost", req.server_port == 80
-- local res = handler(test.request("post", "/form", { params = { a = "1 2" } }))
-- -- the handler got body "a=1+2" with content-type
-- -- application/x-www-form-urlencoded and content-length 5
-- test.request{ uri = "/ws", websocket = true } -- an upgrade request
function test.request(method, uri, opts)
  if type(method) == "table" then
    if uri ~= nil or opts ~= nil then
      error("test.request: give either a table of options or "
        .. "(method, uri [, opts])", 2)
    end
    return build_request("test.request", method)
  end
  if type(method) ~= "string" or type(uri) ~= "string" then
    error(("test.request: expected (method, uri [, opts]) as strings or a "
      .. "table of options (got %s, %s)"):format(type(method), type(uri)), 2)
  end
  local o = {}
  if type(opts) == "string" then
    o.body = opts
  elseif type(opts) == "table" then
    for k, v in pairs(opts) do o[k] = v end
  elseif opts ~= nil then
    error(("test.request: opts must be a table or a string body (got %s)")
      :format(type(opts)), 2)
  end
  if o.method ~= nil or o.uri ~= nil then
    error("test.request: method and uri are the first two arguments here",
      2)
  end
  o.method, o.uri = method, uri
  return build_request("test.request", o)
end

-- ---------------------------------------------------------------------------
-- An app on a free port

local function client()
  return require "ringlet.client"
end

-- Loads an app file as the ringlet command does: the chunk is named after
-- its path (so debug.getinfo finds the file), it runs with the global `arg`
-- holding the path at arg[0] (restored afterwards) and with package.path
-- as it is (the command adds only ringlet's own modules, which are already
-- found here: a `require` of a module beside the app resolves through
-- package.path's `./?.lua`, from the working directory, in both).
local function load_app(path)
  local chunk, err = loadfile(path)
  if not chunk then
    error("test.start: " .. tostring(err), 3)
  end
  local saved = rawget(_G, "arg")
  rawset(_G, "arg", { [0] = path })
  local ok, value = xpcall(chunk, debug.traceback)
  rawset(_G, "arg", saved)
  if not ok then error("test.start: " .. path .. ": " .. tostring(value), 3) end
  return value
end

local App = {}
App.__index = App
App.__name = "ringlet.test.app"
App.__close = function(self) self:stop() end
App.__tostring = function(self)
  return ("ringlet.test.app(%s, %s)"):format(self.url, self.server.status)
end

--- Starts an app on 127.0.0.1 on a free port, in this Lua state.
-- @tparam function|string|table app a handler function; or the path of
--   an app file, as the `ringlet` command takes: a file returning a
--   handler or a table `{handler =, options =}` (it runs with `arg[0]`
--   set to its path while it loads, as under the command, so it finds
--   the files beside it); or such a table itself
-- @tparam[opt] table opts `run_server`'s options; they win over the
--   app's own `options`, as the command's flags do. `ip` defaults to
--   "127.0.0.1" and `port` to 0 (the system picks a free one), whatever
--   the app's options say
-- @treturn table the app: `url` ("http://127.0.0.1:PORT"), `port`, `ip`,
--   `server` (what `run_server` returned), and the methods below. It is
--   a to-be-closed value: `local app <close> = test.start(...)` stops it
--   at the end of the block
-- @raise when the file cannot be loaded or returns nothing usable (an
--   app that starts its own servers cannot be started here), on a bad
--   option, or when the server cannot listen
-- @usage
-- local app = require("ringlet.test").start(function(req)
--   return { body = "hi " .. req.uri }
-- end)
-- local res = assert(app:get("/x")) -- res.status == 200, res.body == "hi /x"
-- app:stop()
function test.start(app, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error(("test.start: opts must be a table (got %s)"):format(type(opts)), 2)
  end
  local value = app
  local what = "app"
  if type(app) == "string" then
    value = load_app(app)
    what = app
  end
  local handler, options
  if type(value) == "function" then
    handler, options = value, {}
  elseif type(value) == "table" then
    handler = value.handler
    if type(handler) ~= "function" then
      error(("test.start: %s: the table needs a 'handler' function")
        :format(what), 2)
    end
    options = {}
    if type(value.options) == "table" then
      for k, v in pairs(value.options) do options[k] = v end
    end
  elseif value == nil and type(app) == "string" then
    error(("test.start: %s returned nothing (an app that starts its own "
      .. "servers); return a handler or {handler =, options =}")
      :format(app), 2)
  else
    error(("test.start: expected a handler, an app file or a table "
      .. "{handler =, options =} (got %s)"):format(type(value)), 2)
  end
  options.ip, options.port = "127.0.0.1", 0
  for k, v in pairs(opts or {}) do options[k] = v end
  local server, err = ringlet.run_server(handler, options)
  if not server then
    error("test.start: cannot start the server: " .. tostring(err), 2)
  end
  local host = server.ip:find(":", 1, true) and "[" .. server.ip .. "]"
    or server.ip
  return setmetatable({
    server = server,
    ip = server.ip,
    port = server.port,
    url = ("http://%s:%d"):format(host, server.port),
    ws_url = ("ws://%s:%d"):format(host, server.port),
  }, App)
end

--- An app `start` returned: `url` ("http://127.0.0.1:PORT"), `ws_url`
-- ("ws://127.0.0.1:PORT"), `port`, `ip`, `server` (what `run_server`
-- returned) and the methods below. It is a to-be-closed value: `local app
-- <close> = test.start(...)` stops it when the block ends.
-- @type App

-- A path ("/x?y") on the app, or a full URL as it is.
local function url_of(self, fn, path)
  if path == nil then return self.url .. "/" end
  if type(path) ~= "string" then
    error(("app:%s: path must be a string (got %s)"):format(fn, type(path)),
      3)
  end
  if path:find("^%a[%w+.-]*://") then return path end
  if path:sub(1, 1) ~= "/" then path = "/" .. path end
  return self.url .. path
end

--- GET a path on the app, with `client.request`: its `url` is the app's
-- URL followed by the path.
-- @tparam[opt] string path ("/") a path with an optional query, or a full
--   URL
-- @tparam[opt] table headers request headers
-- @treturn ?table the response (`status`, `headers`, `body`, ...), or nil
-- @treturn ?string the error (`client.request`'s)
-- @usage
-- local res = assert(app:get("/hello", { accept = "text/plain" }))
function App:get(path, headers)
  return client().request{ url = url_of(self, "get", path), headers = headers }
end

--- POST a body to a path.
-- @tparam string path a path or a full URL
-- @tparam string|table|function body `client.request`'s `body`
-- @tparam[opt] table headers request headers
-- @treturn ?table the response, or nil
-- @treturn ?string the error
-- @usage
-- local res = assert(app:post("/items", "name=x",
--   { ["content-type"] = "application/x-www-form-urlencoded" }))
function App:post(path, body, headers)
  return client().request{ method = "POST", url = url_of(self, "post", path),
                           body = body, headers = headers }
end

--- Any request: `client.request`'s options with `path` (on this app)
-- instead of `url`, or with `url` (a path or a full URL).
-- @tparam table|string opts the options, or a path
-- @treturn ?table the response, or nil
-- @treturn ?string the error
-- @usage
-- local res = assert(app:request{ method = "PUT", path = "/a/1",
--   body = "x", headers = { ["if-match"] = '"v1"' }, timeout = 2000 })
function App:request(opts)
  if type(opts) == "string" then
    return client().request{ url = url_of(self, "request", opts) }
  end
  if type(opts) ~= "table" then
    error(("app:request: opts must be a table or a path (got %s)")
      :format(type(opts)), 2)
  end
  if opts.path ~= nil and opts.url ~= nil then
    error("app:request: give path or url, not both", 2)
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.url = url_of(self, "request", opts.path or opts.url)
  o.path = nil
  return client().request(o)
end

--- Opens a WebSocket to a path on the app, with `client.websocket`: its
-- URL is `ws_url` followed by the path. Without `on_message` in opts,
-- read messages with `ws:receive([timeout])`.
-- @tparam string path a path with an optional query, or a full `ws://` URL
-- @tparam[opt] table opts `client.websocket`'s options
-- @treturn ?table the client channel (`send`, `receive`, `close`, ...),
--   or nil
-- @treturn table|string the 101 response, or the error
-- @treturn ?table on failure, the response when there was one
-- @usage
-- local ws = assert(app:websocket("/ws?name=ann"))
-- ws:send("hi")
-- local msg = ws:receive(1000)
-- ws:close()
function App:websocket(path, opts)
  if type(path) ~= "string" then
    error(("app:websocket: path must be a string (got %s)"):format(type(path)),
      2)
  end
  local url = path
  if not path:find("^%a[%w+.-]*://") then
    url = self.ws_url .. (path:sub(1, 1) == "/" and "" or "/") .. path
  end
  return client().websocket(url, opts)
end

--- Stops the server (`server:stop`), runs the loop until it has stopped
-- (connections closed), and closes the client's idle pooled connections
-- (`client.close_idle()`), so no descriptor is left. Calling it again
-- does nothing more.
-- @tparam[opt] number timeout ms in-flight responses get (`server:stop`'s
--   `timeout`; default 100)
-- @treturn boolean true once the server has stopped
-- @raise when the server has not stopped 5 s after the timeout
-- @usage
-- app:stop()
function App:stop(timeout)
  local server = self.server
  server:stop{ timeout = timeout or 100 }
  local deadline = os.time() + math.ceil((timeout or 100) / 1000) + 5
  while server.status ~= "stopped" do
    if os.time() > deadline then
      error(("app:stop: the server on port %d has not stopped (status %s)")
        :format(self.port, server.status), 2)
    end
    ringlet.sleep(5)
  end
  local loaded = package.loaded["ringlet.client"]
  if type(loaded) == "table" and loaded.close_idle then loaded.close_idle() end
  return true
end

--- @section end

return test
