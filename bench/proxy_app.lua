-- The reverse proxy bench/proxy.sh measures: every request is passed to
-- the upstream named by $UPSTREAM (e.g. http://127.0.0.1:8091) with
-- ringlet.client, which suspends only this handler's coroutine and reuses
-- keep-alive connections from its pool for that host and port. nginx's
-- counterpart is bench/nginx/proxy.conf.in (proxy_pass, upstream
-- keepalive).
--
-- What goes up: the method, the path and query, the body, and the
-- request's headers but the hop-by-hop ones and host, content-length
-- (the client sets both). What comes back: the upstream's status,
-- content-type and body; a failed exchange is a 502 naming the error.
--
--   UPSTREAM=http://127.0.0.1:8091 build/ringlet bench/proxy_app.lua --port 0
--
-- $PROXY_POOL sets the pool's idle connections per host and port (the
-- client's default is 32, as nginx's `keepalive 32`); $PROXY_TIMEOUT the
-- timeout of an exchange in ms (default 5000). examples/proxy.lua is the
-- same proxy streaming the answer through (client.stream) and passing on
-- every response header.

local ringlet = require "ringlet"

local client = ringlet.client

local UPSTREAM = os.getenv "UPSTREAM"
assert(UPSTREAM and UPSTREAM:match "^http://[^/]+$", "set UPSTREAM to http://HOST:PORT")
local TIMEOUT = tonumber(os.getenv "PROXY_TIMEOUT") or 5000
local POOL = tonumber(os.getenv "PROXY_POOL")
if POOL then client.configure { pool_size = POOL } end

-- not forwarded: hop-by-hop headers (RFC 9110 7.6.1) and those the client
-- computes for the upstream
local SKIP = {
  connection = true,
  ["keep-alive"] = true,
  ["proxy-connection"] = true,
  te = true,
  trailer = true,
  ["transfer-encoding"] = true,
  upgrade = true,
  host = true,
  ["content-length"] = true,
}

local TEXT = { ["content-type"] = "text/plain" }

return function(req)
  local headers = {}
  for name, value in pairs(req.headers) do
    if not SKIP[name] then headers[name] = value end
  end
  local url = UPSTREAM .. req.uri
  if req.query_string then url = url .. "?" .. req.query_string end
  local res, err = client.request {
    url = url,
    method = req.request_method, -- "get": the client sends it upper-case
    headers = headers,
    body = req.body, -- nil for GET; a string (no body_file here)
    timeout = TIMEOUT,
  }
  if not res then
    return { status = 502, headers = TEXT, body = "bad gateway: " .. err .. "\n" }
  end
  return {
    status = res.status,
    headers = { ["content-type"] = res.headers["content-type"] },
    body = res.body,
  }
end
