-- A reverse proxy in a handler, with ringlet.client: each request is sent
-- on to an upstream server and its answer comes back, while the loop goes
-- on serving everyone else (only this request's coroutine waits).
--
--   ringlet examples/sse_clock.lua --port 8091 &      # an upstream
--   UPSTREAM=http://127.0.0.1:8091 ringlet examples/proxy.lua --port 8090
--   curl http://127.0.0.1:8090/                       # the clock's page
--   curl -N 'http://127.0.0.1:8090/events?limit=3'    # its event stream
--   curl http://127.0.0.1:8090/_status                # the proxy's own
--
-- A response is streamed through as it comes (client.stream): an endless
-- event stream works, and a client that reads slowly slows the upstream
-- (the proxy stops reading it while 256 KiB wait) instead of filling
-- memory. Keep-alive connections to the upstream are pooled. An upstream
-- that is down or slow gets 502 or 504.

local client = require "ringlet.client"

local UPSTREAM = os.getenv("UPSTREAM") or "http://127.0.0.1:8091"

-- hop-by-hop headers (RFC 9110 7.6.1) are not passed on
local HOP = {
  connection = true, ["keep-alive"] = true, ["proxy-connection"] = true,
  te = true, trailer = true, ["transfer-encoding"] = true, upgrade = true,
  host = true, ["content-length"] = true,
}

local function pass_on(headers)
  local out = {}
  for k, v in pairs(headers) do
    if not HOP[k] then out[k] = v end
  end
  return out
end

local proxied, failed = 0, 0

return function(req)
  if req.uri == "/_status" then
    return { status = 200, headers = { ["content-type"] = "text/plain" },
             body = ("upstream %s\nproxied %d\nfailed %d\n"):format(UPSTREAM, proxied, failed) }
  end
  local headers = pass_on(req.headers)
  headers["x-forwarded-for"] = req.remote_addr
  local res, err = client.stream {
    url = UPSTREAM .. req.uri .. (req.query_string and "?" .. req.query_string or ""),
    method = req.request_method,
    headers = headers,
    body = req.body,
    timeout = 10000,
  }
  if not res then
    failed = failed + 1
    return { status = err == "timeout" and 504 or 502,
             headers = { ["content-type"] = "text/plain" },
             body = "upstream: " .. err .. "\n" }
  end
  proxied = proxied + 1
  return { status = res.status, headers = pass_on(res.headers), body = res.body }
end
