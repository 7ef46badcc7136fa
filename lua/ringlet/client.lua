--- An HTTP/1.1 and WebSocket client on ringlet's loop, in the manner of
-- http-kit's `org.httpkit.client` and OpenResty's cosockets.
--
-- The work is the core's (csrc/client.c, csrc/lclient.c): a call suspends
-- only the coroutine that makes it (a handler, a callback, a body
-- iterator) while the loop serves everyone else; outside a running loop
-- (a script, a busted spec) it runs the loop until it completes. This
-- module re-exports the core's functions and adds `get` and `post`.
--
-- README.md, "HTTP and WebSocket client", has every option and error.
--
-- @module ringlet.client

local ringlet = require "ringlet"

local core = ringlet.client
local client = {}

--- One exchange: `request(opts)` or `request(url)`.
-- @param opts `{url =, method =, headers =, body =, timeout =, follow =,
--   max_body =, max_header =, keepalive =}`, or a url
-- @return `{status =, headers =, body =, protocol =, url =}`, or nil and
--   an error string ("timeout", "connection refused", "bad response: ...")
-- @function request
client.request = core.request

--- An exchange whose body is read piece by piece: `res.body()` returns the
-- next piece, nil at the end, or nil and an error; `res:close()` drops the
-- rest. Takes `request`'s options; `timeout` is for each wait.
-- @param opts the options, or a url
-- @return the response (its body an iterator), or nil and an error
-- @function stream
client.stream = core.stream

--- A WebSocket: a channel with the server channel's methods and
-- `ws:receive([timeout])`.
-- @param url `ws://host[:port]/path`
-- @param[opt] opts `protocols`, `headers`, `timeout` (the handshake),
--   `max_message`, `idle_timeout` and as_channel's callbacks
-- @return the channel and the 101 response, or nil, an error and the
--   response when the server answered otherwise
-- @function websocket
client.websocket = core.websocket

--- The keep-alive pool: `{pool_size =, pool_timeout =}` (idle connections
-- kept per host and port, default 32; ms an idle one is kept, default
-- 60000).
-- @param opts the settings
-- @function configure
client.configure = core.configure

--- Close every idle pooled connection.
-- @function close_idle
client.close_idle = core.close_idle

local function with(opts, url, method, body)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.url, o.method = url, method
  if body ~= nil then o.body = body end
  return o
end

--- `GET url`.
-- @param url the url
-- @param[opt] opts more of `request`'s options
-- @return as `request`
function client.get(url, opts)
  return core.request(with(opts, url, "GET"))
end

--- `POST url` with a body.
-- @param url the url
-- @param body a string, an array of strings or an iterator
-- @param[opt] opts more of `request`'s options (`headers` for its
--   content-type)
-- @return as `request`
function client.post(url, body, opts)
  return core.request(with(opts, url, "POST", body))
end

return client
