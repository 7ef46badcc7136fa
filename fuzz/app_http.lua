-- The server side of fuzz_http and fuzz_proxy: start(cfg) runs a server
-- whose options come from the configuration byte cfg, and whose handler
-- touches every key of the request table, checks what the core promises of
-- it (fuzz_trap on a broken promise), reads the body and answers.
--
--   cfg bits 0-1  max_body        8388608, 0, 16, 1000
--   cfg bit  2    max_line        4096, 64
--   cfg bits 3-4  proxy_protocol  disable, enable, optional, disable
--   cfg bit  5    body_file       0, 8
--   cfg bits 6-7  access_log      none, "/dev/null", a function, none
--
-- The path picks the answer: /iter (an iterator body), /chan (an HTTP
-- channel that streams two chunks), /echo (the body back), anything else a
-- small text; a WebSocket upgrade gets an echoing channel.
-- luacheck: read globals fuzz_trap
local ringlet = require "ringlet"
local trap = fuzz_trap

local MAX_BODY = { 8388608, 0, 16, 1000 }
local PROXY = { "disable", "enable", "optional", "disable" }
local TCHAR = "^[%w!#$%%&'*+%-.^_`|~]+$"

local function check_request(req, o)
  local n = 0
  for k in pairs(req) do
    n = n + 1
    if type(k) ~= "string" then trap("a request key that is a " .. type(k)) end
  end
  if math.type(req.server_port) ~= "integer" then trap("server_port") end
  for _, k in ipairs({ "server_name", "remote_addr", "scheme",
                       "request_method", "protocol" }) do
    if type(req[k]) ~= "string" then
      trap("req." .. k .. " is a " .. type(req[k]))
    end
  end
  for _, k in ipairs({ "uri", "query_string" }) do
    if req[k] ~= nil and type(req[k]) ~= "string" then
      trap("req." .. k .. " is a " .. type(req[k]))
    end
  end
  if req.scheme ~= "http" then trap("scheme " .. req.scheme) end
  if req.protocol ~= "HTTP/1.1" and req.protocol ~= "HTTP/1.0" then
    trap("protocol " .. req.protocol)
  end
  if not req.request_method:find("^[a-z%-]+$") then
    trap("request_method " .. req.request_method)
  end
  if type(req.websocket) ~= "boolean" then trap("websocket") end
  if o.proxy == "disable" and req.remote_addr ~= "127.0.0.1" then
    trap("remote_addr " .. req.remote_addr .. " without a PROXY line")
  end
  if req.remote_addr:find("[%c ]") or req.remote_addr == "" then
    trap(("remote_addr %q"):format(req.remote_addr))
  end
  if type(req.headers) ~= "table" then trap("headers is a " .. type(req.headers)) end
  for name, value in pairs(req.headers) do
    if type(name) ~= "string" or type(value) ~= "string" then
      trap("a header of types " .. type(name) .. ", " .. type(value))
    end
    if not name:find(TCHAR) or name:find("%u") then
      trap(("header name %q"):format(name))
    end
    if value:find("[\r\n%z]") then
      trap(("header %s's value has CR, LF or NUL: %q"):format(name, value))
    end
  end
  local h = req.headers
  if req.websocket and not (h.upgrade and h.connection
      and h["sec-websocket-key"] and h["sec-websocket-version"] == "13"
      and req.request_method == "get" and req.protocol == "HTTP/1.1") then
    trap("req.websocket for a request that is not a valid upgrade")
  end
  local body = req.body
  if io.type(body) == "file" then
    if o.body_file == 0 then trap("a file body without body_file") end
    local s = body:read("a")
    body:close()
    if #s <= o.body_file then
      trap(("a file body of %d bytes, body_file %d"):format(#s, o.body_file))
    end
    body = s
  elseif body ~= nil and type(body) ~= "string" then
    trap("body is a " .. type(body))
  end
  local cl = h["content-length"]
  cl = cl and not h["transfer-encoding"] and cl:find("^%d+$") and tonumber(cl)
  if body then
    if #body == 0 then trap("an empty body that is not nil") end
    if #body > o.max_body then
      trap(("a body of %d bytes past max_body %d"):format(#body, o.max_body))
    end
    if cl and cl ~= #body then
      trap(("a body of %d bytes for content-length %d"):format(#body, cl))
    end
  elseif cl and cl > 0 then
    trap(("no body for content-length %d"):format(cl))
  end
  return n, body
end

local function echo(ch, msg, binary) ch:send(msg, { binary = binary }) end

local function respond(req, n, body)
  if req.websocket then
    return ringlet.as_channel(req, { on_message = echo })
  end
  local uri = req.uri or ""
  if uri == "/__alive" then return { status = 200, body = "alive" } end
  local kind = uri:match("^/(%a+)")
  if kind == "iter" then
    local i = 0
    return { body = function()
      i = i + 1
      if i <= 2 then return "piece " .. i end
    end }
  elseif kind == "chan" then
    return ringlet.as_channel(req, { on_open = function(ch)
      ch:send("streamed")
      ch:send(body or "", { close = true })
    end })
  elseif kind == "echo" then
    return { headers = { ["content-type"] = "application/octet-stream" },
             body = body or "" }
  end
  return { status = 200,
           headers = { ["content-type"] = "text/plain",
                       ["x-keys"] = tostring(n) },
           body = "ok" }
end

local function check_log(e)
  if type(e) ~= "table" or math.type(e.status) ~= "integer"
      or math.type(e.bytes) ~= "integer" or e.bytes < 0
      or type(e.remote_addr) ~= "string" or math.type(e.time) ~= "integer" then
    trap("an access_log entry with a missing or mistyped field")
  end
  for _, k in ipairs({ "method", "uri", "query_string", "protocol", "referer",
                       "user_agent" }) do
    if e[k] ~= nil and type(e[k]) ~= "string" then
      trap("access_log entry ." .. k .. " is a " .. type(e[k]))
    end
  end
end

local servers = {}

return {
  start = function(cfg)
    local o = {
      max_body = MAX_BODY[cfg % 4 + 1],
      max_line = (cfg >> 2) & 1 == 1 and 64 or 4096,
      proxy = PROXY[(cfg >> 3) % 4 + 1],
      body_file = (cfg >> 5) & 1 == 1 and 8 or 0,
    }
    local opts = {
      ip = "127.0.0.1", port = 0, max_body = o.max_body,
      max_line = o.max_line, proxy_protocol = o.proxy,
      body_file = o.body_file, header_timeout = 0,
      -- one at a time: a handler count that leaks shows as a 503
      queue_size = 1,
    }
    local log = (cfg >> 6) % 4
    if log == 1 then
      opts.access_log = "/dev/null"
    elseif log == 2 then
      opts.access_log = check_log
    end
    local srv = assert(ringlet.run_server(function(req)
      return respond(req, check_request(req, o))
    end, opts))
    servers[#servers + 1] = srv
    return srv.port
  end,
}
