--- http-kit's server API in Lua: `org.httpkit.server` and `org.httpkit.timer`.
--
-- A thin layer over the core's `ringlet.run_server` and
-- `ringlet.as_channel`: the same options, defaults, return values and close
-- statuses as http-kit 2.x, spelled the Lua way (`send!` is `send`,
-- `open?` is `open`, `:on-close` is `on_close`, keywords are strings).
--
-- A channel is the core's channel object; the callbacks registered with
-- `on_receive`, `on_ping` and `on_close` live in a weak-keyed table of this
-- module, so a handler may register them after the fact, as http-kit's
-- `with-channel` body does.
--
-- Lua has one string type where http-kit has `String` and `byte[]`: a
-- plain string is text (a text frame on a WebSocket) and a binary message,
-- `{data = s, binary = true}` (`httpkit.binary(s)` makes one), is bytes (a
-- binary frame). A binary message from a client reaches `on_receive` in
-- that form, so echoing it back sends binary again. It is the one binary
-- form of ringlet's Lua modules (`ringlet.websocket.binary`,
-- `ringlet.async.binary`).
--
-- @module ringlet.httpkit
-- @usage
-- local httpkit = require "ringlet.httpkit"
--
-- local function handler(req)
--   return httpkit.with_channel(req, function(ch)
--     httpkit.on_receive(ch, function(data) httpkit.send(ch, data) end)
--   end)
-- end
--
-- local stop = httpkit.run_server(handler, { port = 9090 })

local ringlet = require "ringlet"
local ws = require "ringlet.websocket"

local M = {}

-- ---------------------------------------------------------------------------
-- Binary messages

local is_binary = ws.is_binary
local binary = ws.binary

--- A binary message, http-kit's `byte[]`: `{data = s, binary = true}`.
--
-- The same function as `ringlet.websocket.binary`. Sent on a WebSocket
-- it is one binary frame (a plain string is a text frame); on an HTTP
-- channel its bytes are the body. Any table whose `binary` is true and
-- whose `data` is a string is sent the same way, so the literal works
-- too. A binary message from a client reaches `on_receive` as a value
-- made by this function: besides `data` and `binary` it has `#b` (the
-- length of the bytes), `tostring(b)` (the bytes), `..` (concatenates the
-- bytes) and `==` (same bytes).
-- @function binary
-- @tparam string s the bytes
-- @treturn table `{data = s, binary = true}`
-- @usage httpkit.send(ch, httpkit.binary("\0\1\2"))
M.binary = binary

--- Whether a value is a binary message: a table whose `binary` is true
-- and whose `data` is a string (the same function as
-- `ringlet.websocket.is_binary`).
-- @function is_binary
-- @param v any value
-- @treturn boolean true for a binary message
-- @usage if httpkit.is_binary(msg) then print(#msg.data, "bytes") end
M.is_binary = is_binary

-- ---------------------------------------------------------------------------
-- Close statuses (http-kit's AsyncChannel names for RFC 6455 7.4.1 codes)

local CLOSE_NAMES = {
  [1000] = "normal",
  [1001] = "going-away",
  [1002] = "protocol-error",
  [1003] = "unsupported",
  [1005] = "no-status-received",
  [1006] = "abnormal",
  [1007] = "invalid-payload-data",
  [1008] = "policy-violation",
  [1009] = "message-too-big",
  [1010] = "mandatory-extension",
  [1011] = "internal-server-error",
  [1015] = "tls-handshake",
}

-- Codes the core closes with when the client breaks the protocol: the
-- client caused them, so they are reported by name, not "server-close".
local PROTOCOL_CLOSE = { [1002] = true, [1007] = true, [1009] = true }

--- The status string http-kit gives a WebSocket close code.
--
-- "normal" (1000), "going-away" (1001), "protocol-error" (1002),
-- "unsupported" (1003), "no-status-received" (1005), "abnormal" (1006),
-- "invalid-payload-data" (1007), "policy-violation" (1008),
-- "message-too-big" (1009), "mandatory-extension" (1010),
-- "internal-server-error" (1011), "tls-handshake" (1015), and "unknown"
-- for any other code (1004, 1012-1014, 3000-4999, ...).
-- @tparam integer code a close code
-- @treturn string its status
-- @usage assert(httpkit.close_status(1001) == "going-away")
function M.close_status(code)
  return CLOSE_NAMES[code] or "unknown"
end

-- ---------------------------------------------------------------------------
-- Channel state: core channel -> its http-kit side

-- Fields: opened (the core's on_open ran), pending (sends made before it,
-- flushed then), closed (closed through this module before it opened),
-- by_us (this module closed it), head_sent (the first HTTP send went out),
-- status (the close status, once closed), resp (the response returned),
-- receive/ping/close (the callbacks) and receive_ch/ping_ch/close_ch (true
-- when the callback takes the channel first, as as_channel's do), open_fn.
local states = setmetatable({}, { __mode = "k" })

local DEFAULT_HEADERS = { ["content-type"] = "text/html; charset=utf-8" }

local function has_content_type(headers)
  if type(headers) ~= "table" then return false end
  for k in pairs(headers) do
    if type(k) == "string" and k:lower() == "content-type" then return true end
  end
  return false
end

local function is_response_map(data)
  return type(data) == "table" and not is_binary(data)
    and (data.status ~= nil or data.headers ~= nil or data.body ~= nil)
end

local function ws_send(ch, data, close)
  if is_response_map(data) and data.body ~= nil then
    data = data.body -- status and headers mean nothing on a WebSocket
  end
  local ok
  if data == nil then
    ok = true -- nothing to send, as http-kit ignores nil
    if close then ch:close() end
  elseif type(data) == "string" then
    ok = ch:send(data, close and { close = true } or nil)
  elseif is_binary(data) then
    ok = ch:send(data.data, { binary = true, close = close })
  elseif io.type(data) == "file" then
    ok = ch:send(data, close and { close = true } or nil) -- one binary message
  else
    error("httpkit.send: on a WebSocket, data must be a string, a binary "
      .. "message ({data = s, binary = true}) or a file (got " .. type(data)
      .. ")", 3)
  end
  return ok == true
end

local function http_send(ch, s, data, close)
  local status, headers, body
  if is_response_map(data) then
    status, headers, body = data.status, data.headers, data.body
  else
    body = data
  end
  if is_binary(body) then body = body.data end
  if not s.head_sent then
    if headers == nil or next(headers) == nil then
      -- http-kit's default for a first send without headers, unless the
      -- response the handler returned names a type
      headers = (s.resp and has_content_type(s.resp.headers)) and {}
        or DEFAULT_HEADERS
    end
    status = status or 200
    local req = ch:originating_request()
    if status == 204 or status == 304
        or (req and req.request_method == "head") then
      close = true -- no body can follow
    end
    -- raises for a bad status or header (the head is not sent then)
    local ok = ch:send({ status = status, headers = headers, body = body or "" },
      { close = close })
    if ok == true then s.head_sent = true end
    return ok == true
  end
  if body == nil or body == "" then -- nothing to write: an empty chunk ends
    if close then ch:close() end
    return true
  end
  return ch:send(body, close and { close = true } or nil) == true
end

local function do_send(ch, s, data, close)
  if close then s.by_us = true end
  if ch:is_websocket() then return ws_send(ch, data, close) end
  return http_send(ch, s, data, close)
end

local function state_of(ch, who)
  local s = states[ch]
  if s == nil then
    error("httpkit." .. who .. ": not a channel made by with_channel or "
      .. "as_channel", 3)
  end
  return s
end

-- The core's callbacks, the same for every channel of this module.

local function core_open(ch)
  local s = states[ch]
  if s == nil then return end
  s.opened = true
  local pending = s.pending
  s.pending = nil
  if pending then
    for i = 1, #pending do
      local p = pending[i]
      if p.close_only then
        ch:close()
      else
        do_send(ch, s, p.data, p.close)
      end
    end
  end
  local f = s.open_fn
  if f then f(ch) end
end

local function core_message(ch, msg, is_bin)
  local s = states[ch]
  local f = s and s.receive
  if f == nil then return end -- http-kit drops messages nobody listens to
  if is_bin then msg = binary(msg) end
  if s.receive_ch then f(ch, msg) else f(msg) end
end

local function core_ping(ch, payload)
  local s = states[ch]
  local f = s and s.ping
  if f == nil then return end
  if s.ping_ch then f(ch, payload) else f(payload) end
end

local function status_of(ch, s, info)
  if not ch:is_websocket() then
    return info.initiator == "server" and "server-close" or "client-close"
  end
  local code = info.code
  if info.initiator == "server" then
    if code and PROTOCOL_CLOSE[code] and not s.by_us then
      return CLOSE_NAMES[code] -- the client broke the protocol
    end
    return "server-close"
  end
  return CLOSE_NAMES[code] or "unknown"
end

local function core_close(ch, info)
  local s = states[ch]
  if s == nil then return end
  local status = status_of(ch, s, info)
  s.status = status
  local f = s.close
  if f == nil then return end
  if s.close_ch then f(ch, status) else f(status) end
end

local CORE_OPTS = {
  on_open = core_open,
  on_message = core_message,
  on_ping = core_ping,
  on_close = core_close,
}

local function new_channel(req, who)
  if type(req) ~= "table" then
    error("httpkit." .. who .. ": expected the request table, got "
      .. type(req), 3)
  end
  local resp = ringlet.as_channel(req, CORE_OPTS)
  local ch = resp.body
  local s = { opened = false, resp = resp }
  states[ch] = s
  return ch, s, resp
end

-- ---------------------------------------------------------------------------
-- Getting the channel

--- Runs `fn(ch)` with the request's channel and returns the response that
-- makes it one (http-kit's `with-channel` macro).
--
-- The channel is a WebSocket when the request is an upgrade, else an HTTP
-- channel (streaming or long polling). Register `on_receive`, `on_close`
-- and `on_ping` in `fn` or later. Sends made in `fn`, before the response
-- is out, are queued and go out, in order, as soon as the channel opens
-- (http-kit answers the handshake before its body runs, so they work
-- there too); `send` returns true for them.
-- @tparam table req the request the handler was given
-- @tparam function fn called as `fn(ch)` before this returns
-- @treturn table the response: return it from the handler
-- @usage
-- return function(req)
--   return httpkit.with_channel(req, function(ch)
--     httpkit.on_close(ch, function(status) print("closed", status) end)
--     httpkit.on_receive(ch, function(data) httpkit.send(ch, data) end)
--   end)
-- end
function M.with_channel(req, fn)
  if type(fn) ~= "function" then
    error("httpkit.with_channel: expected a function, got " .. type(fn), 2)
  end
  local ch, _, resp = new_channel(req, "with_channel")
  fn(ch)
  return resp
end

--- Returns the response that makes the request a channel, with callbacks
-- (http-kit 2.4's `as-channel`).
--
-- Options (all optional): `init(ch)` runs first, before the handshake;
-- `on_open(ch)` once the channel can send; `on_receive(ch, message)` for
-- each WebSocket message (a string, or a binary message);
-- `on_ping(ch, data)` for each WebSocket ping (the core has already
-- answered it with a pong); `on_close(ch, status)` once, with a status of
-- `on_close`. `on_handshake_error` is accepted and never called: the core
-- answers a bad handshake (400, 426) before the handler runs. Other keys
-- are ignored, as in http-kit.
-- @tparam table req the request the handler was given
-- @tparam[opt] table opts the callbacks
-- @treturn table the response: return it from the handler
-- @usage
-- return function(req)
--   return httpkit.as_channel(req, {
--     on_open = function(ch) httpkit.send(ch, "hello", false) end,
--     on_receive = function(ch, msg) httpkit.send(ch, msg) end,
--     on_close = function(ch, status) print("closed:", status) end,
--   })
-- end
function M.as_channel(req, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("httpkit.as_channel: options must be a table, got " .. type(opts), 2)
  end
  opts = opts or {}
  local ch, s, resp = new_channel(req, "as_channel")
  if opts.init then opts.init(ch) end
  if opts.on_close then s.close, s.close_ch = opts.on_close, true end
  if ch:is_websocket() then
    if opts.on_receive then s.receive, s.receive_ch = opts.on_receive, true end
    if opts.on_ping then s.ping, s.ping_ch = opts.on_ping, true end
  end
  s.open_fn = opts.on_open
  return resp
end

-- ---------------------------------------------------------------------------
-- The channel protocol

--- Sends data to the client (http-kit's `send!`).
--
-- `data` is a string, a binary message (`{data = s, binary = true}`, as
-- `binary` makes), a file, or a response table
-- `{status =, headers =, body =}` whose status and headers count on the
-- first send of an HTTP channel only (they are dropped after it, and on a
-- WebSocket, where only the body is sent). On an HTTP channel a body may
-- also be an array of strings or an iterator function, as in a response.
-- The first send of an HTTP channel without headers gets
-- `Content-Type: text/html; charset=utf-8`, as in http-kit, unless the
-- handler's response named a type.
--
-- On a WebSocket a string is a text frame, a binary message or a file a
-- binary frame; nil sends nothing. On an HTTP channel the first send
-- carries the status and headers: with `close_after_send` it is a whole
-- response (Content-Length), without it the head of a chunked stream and
-- its first chunk; later sends are chunks, and closing ends the stream.
-- @param ch the channel
-- @param data what to send
-- @tparam[opt] boolean close_after_send close the channel after this send;
-- defaults to true on an HTTP channel, false on a WebSocket
-- @treturn boolean true when the data was queued; false when the channel
-- is closed (or its send buffer is over `max_buffered`)
-- @usage httpkit.send(ch, { status = 200, body = "done" })   -- HTTP: whole
-- httpkit.send(ch, "a chunk", false)                          -- HTTP: stream
-- httpkit.send(ch, httpkit.binary(bytes))                     -- WebSocket
function M.send(ch, data, close_after_send)
  local s = states[ch]
  if s == nil then -- a channel of the core's own: send straight away
    s = { opened = true }
    states[ch] = s
  end
  local close = close_after_send
  if close == nil then close = not ch:is_websocket() end
  close = close and true or false
  if not s.opened then
    if s.closed then return false end
    if ch:is_websocket() and not (data == nil or type(data) == "string"
        or is_binary(data) or io.type(data) == "file"
        or (is_response_map(data) and data.body ~= nil)) then
      error("httpkit.send: on a WebSocket, data must be a string, a binary "
        .. "message ({data = s, binary = true}) or a file (got " .. type(data)
        .. ")", 2)
    end
    local pending = s.pending or {}
    s.pending = pending
    pending[#pending + 1] = { data = data, close = close }
    if close then s.closed, s.by_us = true, true end
    return true
  end
  if not ch:is_open() then return false end
  return do_send(ch, s, data, close)
end

--- Closes the channel (http-kit's `close`): a WebSocket with close code
-- 1000, an HTTP channel by ending its response.
-- @param ch the channel
-- @treturn boolean true if this call closed it, false if it was already
-- closed
-- @usage if httpkit.close(ch) then print("closed it") end
function M.close(ch)
  local s = states[ch]
  if s and not s.opened then
    if s.closed then return false end
    s.closed, s.by_us = true, true
    local pending = s.pending or {}
    s.pending = pending
    pending[#pending + 1] = { close_only = true }
    return true
  end
  if not ch:is_open() then return false end
  if s then s.by_us = true end
  return ch:close() == true
end

--- Whether the channel is open (http-kit's `open?`).
-- @param ch the channel
-- @treturn boolean true while it is open
-- @usage if httpkit.open(ch) then httpkit.send(ch, "tick", false) end
function M.open(ch)
  local s = states[ch]
  if s and not s.opened then return not s.closed end
  return ch:is_open()
end

--- Whether the channel is a WebSocket (http-kit's `websocket?`).
-- @param ch the channel
-- @treturn boolean true for a WebSocket, false for an HTTP channel
-- @usage if not httpkit.websocket(ch) then httpkit.send(ch, "polling") end
function M.websocket(ch)
  return ch:is_websocket() == true
end

local function set_handler(ch, fn, key, who)
  local s = state_of(ch, who)
  if type(fn) ~= "function" then
    error("httpkit." .. who .. ": expected a function, got " .. type(fn), 3)
  end
  if s[key] ~= nil then
    error("httpkit." .. who .. ": this channel already has a handler", 3)
  end
  s[key] = fn
  return s
end

--- Sets the handler of the client's WebSocket messages (http-kit's
-- `on-receive`): `fn(message)`, in the order they came. A text message is
-- a string, a binary one a binary message made by `binary`. Messages that
-- come before a handler is set are dropped. A channel has one handler:
-- setting a second raises an error, as in http-kit.
-- @param ch the channel
-- @tparam function fn called as `fn(message)`
-- @usage httpkit.on_receive(ch, function(msg) httpkit.send(ch, msg) end)
function M.on_receive(ch, fn)
  set_handler(ch, fn, "receive", "on_receive")
end

--- Sets the handler of the client's WebSocket pings (http-kit's
-- `on-ping`): `fn(data)`, where `data` is the ping's payload (a string).
-- The core has already answered the ping with a pong carrying it. One
-- handler per channel, as `on_receive`.
-- @param ch the channel
-- @tparam function fn called as `fn(data)`
-- @usage httpkit.on_ping(ch, function(data) print("ping", #data) end)
function M.on_ping(ch, fn)
  set_handler(ch, fn, "ping", "on_ping")
end

--- Sets the handler called once when the channel closes (http-kit's
-- `on-close`): `fn(status)`. If the channel is already closed it is called
-- at once. One handler per channel, as `on_receive`.
--
-- `status`: "server-close" when the server closed it (`close`, a send that
-- closes, server stop); "client-close" when the client of an HTTP channel
-- went away; for a WebSocket the client closed, the name of its close code
-- (`close_status`): "normal", "going-away", "protocol-error",
-- "unsupported", "no-status-received" (a close without a code),
-- "abnormal" (the connection dropped without a close), ... or "unknown".
-- When the core closes a WebSocket because the client broke the protocol
-- the status names the code it closed with: "protocol-error",
-- "invalid-payload-data" or "message-too-big".
-- @param ch the channel
-- @tparam function fn called as `fn(status)`
-- @usage httpkit.on_close(ch, function(status) clients[ch] = nil end)
function M.on_close(ch, fn)
  local s = set_handler(ch, fn, "close", "on_close")
  if s.status then fn(s.status) end
end

-- ---------------------------------------------------------------------------
-- Timers (org.httpkit.timer)

local function timer_ms(ms, who)
  if type(ms) ~= "number" then
    error("httpkit." .. who .. ": expected a delay in ms, got " .. type(ms), 3)
  end
  ms = math.tointeger(ms) or math.ceil(ms)
  if ms < 0 then ms = 0 end
  return ms
end

--- Calls `fn()` once after `ms` milliseconds (http-kit's `schedule-task`).
-- @tparam number ms the delay
-- @tparam function fn the task
-- @return the task: `cancel(task)` (or `task:cancel()`) cancels it
-- @usage local task = httpkit.schedule_task(800, function() print("now") end)
function M.schedule_task(ms, fn)
  if type(fn) ~= "function" then
    error("httpkit.schedule_task: expected a function, got " .. type(fn), 2)
  end
  return ringlet.timer(timer_ms(ms, "schedule_task"), fn)
end

--- Cancels a task made by `schedule_task` (http-kit's `cancel`).
-- @param task the task
-- @treturn boolean true if it was cancelled before it ran; false if it
-- already ran or was cancelled
-- @usage if httpkit.cancel(task) then print("cancelled") end
function M.cancel(task)
  return task:cancel() == true
end

--- Schedules `timeout_fn` after `ms` and wraps `f` so that calling it
-- cancels the timeout, if it can (http-kit's `with-timeout` macro).
--
-- The wrapped `f`, called with any arguments, cancels the timeout and then
-- runs `f` with them, returning what it returns; if the timeout already
-- ran (or a call already cancelled it), `f` does not run and the call
-- returns nil. `body(wrapped)` is called at once and its results are
-- returned; without a `body` the wrapped function is returned.
-- @tparam function f the function to wrap
-- @tparam number ms the timeout
-- @tparam function timeout_fn called after `ms` unless the wrapped `f` was
-- called first
-- @tparam[opt] function body called as `body(wrapped)`
-- @return what `body` returns, or the wrapped function without a body
-- @usage
-- httpkit.with_timeout(respond, 1000,
--   function() respond({ status = 504, body = "too slow" }) end,
--   function(respond) call_service(respond) end)
function M.with_timeout(f, ms, timeout_fn, body)
  if type(f) ~= "function" then
    error("httpkit.with_timeout: expected a function, got " .. type(f), 2)
  end
  if type(timeout_fn) ~= "function" then
    error("httpkit.with_timeout: expected a timeout function, got "
      .. type(timeout_fn), 2)
  end
  local task = ringlet.timer(timer_ms(ms, "with_timeout"), timeout_fn)
  local function wrapped(...)
    if task:cancel() then return f(...) end
    return nil
  end
  if body == nil then return wrapped end
  return body(wrapped)
end

-- ---------------------------------------------------------------------------
-- Promises (what server_stop returns)

--- The value `server_stop` returns: delivered once the server has stopped.
-- @type Promise
local Promise = {}
Promise.__index = Promise
Promise.__name = "ringlet.httpkit.promise"

local function new_promise()
  return setmetatable({ delivered = false, waiters = {} }, Promise)
end

local function deliver(p, value)
  if p.delivered then return end
  p.delivered, p.value = true, value
  local waiters = p.waiters
  p.waiters = {}
  for i = 1, #waiters do waiters[i]:close() end
end

--- Whether the promise has been delivered (Clojure's `realized?`).
-- @treturn boolean true once delivered
-- @usage if p:realized() then print("stopped") end
function Promise:realized()
  return self.delivered
end

--- The promise's value, waiting for it (Clojure's `deref`). Waiting
-- suspends only the calling handler or callback; the loop serves others.
-- Outside one (in an app's main chunk) it raises an error instead of
-- waiting.
-- @tparam[opt] integer timeout_ms give up after this long
-- @param[opt] timeout_value returned when it gives up
-- @return the value (true for `server_stop`), or `timeout_value`
-- @usage local stopped = httpkit.server_stop(server); stopped:deref()
function Promise:deref(timeout_ms, timeout_value)
  if self.delivered then return self.value end
  local q = ringlet.queue()
  local waiters = self.waiters
  waiters[#waiters + 1] = q
  local timer
  if timeout_ms then
    timer = ringlet.timer(timer_ms(timeout_ms, "deref"), function() q:close() end)
  end
  q:take() -- nil once closed: delivered, or timed out
  if timer then timer:cancel() end
  if self.delivered then return self.value end
  for i = #waiters, 1, -1 do -- timed out: this waiter is done
    if waiters[i] == q then table.remove(waiters, i) end
  end
  return timeout_value
end

-- ---------------------------------------------------------------------------
-- Servers

--- What `run_server` returns with `legacy_return_value = false` (http-kit's
-- `HttpServer`). The module functions `server_port`, `server_status` and
-- `server_stop` take it too.
-- @type Server
local Server = {}
Server.__index = Server
Server.__name = "ringlet.httpkit.server"

-- Stops the server unless it is already stopping or stopped: a promise
-- delivered by the core's on_stopped, once its last connection has closed.
local function stop_server(server, opts, who)
  local timeout = 100
  if opts ~= nil then
    if type(opts) ~= "table" then
      error("httpkit." .. who .. ": options must be a table, got "
        .. type(opts), 3)
    end
    if opts.timeout ~= nil then timeout = opts.timeout end
  end
  if math.type(timeout) ~= "integer" or timeout < 0 then
    error("httpkit." .. who .. ": timeout must be an integer >= 0 (ms)", 3)
  end
  if server.core.status ~= "running" then return nil end
  local p = new_promise()
  server.core:stop({ timeout = timeout,
    on_stopped = function() deliver(p, true) end })
  return p
end

--- The port the server listens on (http-kit's `server-port`).
-- @treturn integer the bound port
-- @usage print(server:server_port())
function Server:server_port()
  return self.core.port
end

--- The server's status (http-kit's `server-status`), as the core tells
-- it: "running"; "stopping" once stopped (by `server_stop`, the legacy stop
-- function or the CLI's SIGINT/SIGTERM) while connections are still open;
-- "stopped" once the last has closed. A connection the server closes after
-- its answer ends gently (the server half-closes and waits, up to 2 s, for
-- the client to close its side), so "stopped" may come that long after the
-- last answer, but never later than the stop's timeout.
-- @treturn string "running", "stopping" or "stopped"
-- @usage assert(server:server_status() == "running")
function Server:server_status()
  return self.core.status
end

--- Stops the server (http-kit's `server-stop!`): it stops accepting,
-- closes idle connections, lets in-flight requests finish within
-- `timeout` ms, then closes the connections still open.
-- @tparam[opt] table opts `{timeout = ms}` (default 100)
-- @treturn ?Promise a `Promise` delivered (with true) once the server has
-- stopped (`server_status` is "stopped"): as soon as its last connection
-- has closed, at the latest once the timeout has passed. Nil when it was
-- already stopping or stopped
-- @usage local p = server:server_stop({ timeout = 500 })
function Server:server_stop(opts)
  return stop_server(self, opts, "server_stop")
end

--- @section end

-- stop function -> its server, so the module functions take a legacy stop
-- function too (http-kit keeps the server in the function's metadata).
local legacy = setmetatable({}, { __mode = "k" })

local function server_arg(x, who)
  local server = getmetatable(x) == Server and x or legacy[x]
  if server == nil then
    error("httpkit." .. who .. ": expected a server from run_server, got "
      .. type(x), 3)
  end
  return server
end

--- The port a server listens on (http-kit's `server-port`).
-- @param server what `run_server` returned (a server, or a stop function)
-- @treturn integer the bound port
-- @usage local port = httpkit.server_port(server)
function M.server_port(server)
  return server_arg(server, "server_port"):server_port()
end

--- A server's status (http-kit's `server-status`).
-- @param server what `run_server` returned (a server, or a stop function)
-- @treturn string "running", "stopping" or "stopped"
-- @usage print(httpkit.server_status(server))
function M.server_status(server)
  return server_arg(server, "server_status"):server_status()
end

--- Stops a server (http-kit's `server-stop!`).
-- @param server what `run_server` returned (a server, or a stop function)
-- @tparam[opt] table opts `{timeout = ms}` (default 100)
-- @treturn ?Promise a `Promise` delivered once the server has stopped
-- (its last connection closed), or nil when it was already stopping or
-- stopped
-- @usage httpkit.server_stop(server, { timeout = 1000 })
function M.server_stop(server, opts)
  return stop_server(server_arg(server, "server_stop"), opts, "server_stop")
end

-- Options of run_server: passed to the core under the same name, or
-- accepted and ignored (http-kit's options for the JVM, its thread pool
-- and its loggers, which have no counterpart on ringlet's one loop).
local CORE_OPTIONS = {
  ip = true, port = true, thread = true, queue_size = true, max_body = true,
  max_ws = true, max_line = true, proxy_protocol = true,
  idle_timeout = true, header_timeout = true,
}
local IGNORED_OPTIONS = {
  worker_name_prefix = true, worker_pool = true, error_logger = true,
  warn_logger = true, event_logger = true, event_names = true,
  server_header = true, address_finder = true, channel_factory = true,
  pool_opts = true, n_threads = true, n_min_threads = true,
  n_max_threads = true, prefix = true, allow_virtual = true,
  legacy_return_value = true, ring_async = true,
}

-- ring_async: a handler (req, respond, raise) answered through a channel.
local function async_handler(handler)
  return function(req)
    return M.as_channel(req, {
      on_open = function(ch)
        local done = false
        local function respond(response)
          if done then return end
          done = true
          M.send(ch, response, true)
        end
        local function raise(err)
          if done then return end
          done = true
          io.stderr:write("ringlet: httpkit: handler raised: ", tostring(err), "\n")
          io.stderr:flush()
          M.send(ch, { status = 500,
            headers = { ["content-type"] = "text/plain" },
            body = "500 Internal Server Error\n" }, true)
        end
        local ok, err = pcall(handler, req, respond, raise)
        if not ok then raise(err) end
      end,
    })
  end
end

--- Starts a server (http-kit's `run-server`).
--
-- Options, with http-kit's names and defaults: `ip` ("0.0.0.0"), `port`
-- (8090; 0 picks a free one), `thread`, `queue_size` (20480: handlers in
-- flight, past it 503), `max_body` (8388608: past it 413), `max_ws`
-- (4194304: a bigger WebSocket message closes with 1009), `max_line` (4096:
-- 414 or 431), `proxy_protocol` ("disable", "enable" or "optional"), and
-- ringlet's `idle_timeout` and `header_timeout` (ms); these go to
-- `ringlet.run_server`. `ring_async = true` calls the handler as
-- `handler(req, respond, raise)`. Accepted and ignored: `worker_name_prefix`,
-- `worker_pool`, `error_logger`, `warn_logger`, `event_logger`,
-- `event_names`, `server_header`, `address_finder`, `channel_factory` and
-- the thread pool's `pool_opts`, `n_threads`, `n_min_threads`,
-- `n_max_threads`, `prefix`, `allow_virtual`. Any other name raises an
-- error.
--
-- With `legacy_return_value` true (the default) it returns a stop function,
-- `stop({timeout = ms})` (default 100), which stops the server as
-- `server_stop` does and returns nil (`server_status(stop)` tells when it
-- has stopped); with false, a `Server`.
-- @tparam function handler `handler(req)` returns the response
-- @tparam[opt] table opts the options
-- @return a stop function or a `Server`; or nil, an error message and its
-- name ("EADDRINUSE", ...) when it cannot listen
-- @usage
-- local server = httpkit.run_server(handler, {
--   port = 0, legacy_return_value = false })
-- print(httpkit.server_port(server))
function M.run_server(handler, opts)
  if type(handler) ~= "function" then
    error("httpkit.run_server: expected a handler function, got "
      .. type(handler), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("httpkit.run_server: options must be a table, got " .. type(opts), 2)
  end
  opts = opts or {}
  local core_opts = {}
  for k, v in pairs(opts) do
    if CORE_OPTIONS[k] then
      core_opts[k] = v
    elseif not IGNORED_OPTIONS[k] then
      error("httpkit.run_server: unknown option '" .. tostring(k) .. "'", 2)
    end
  end
  if opts.ring_async then handler = async_handler(handler) end
  local core, err, code = ringlet.run_server(handler, core_opts)
  if core == nil then return nil, err, code end
  local server = setmetatable({ core = core }, Server)
  if opts.legacy_return_value == false then return server end
  local function stop(stop_opts)
    stop_server(server, stop_opts, "stop")
    return nil
  end
  legacy[stop] = server
  return stop
end

return M
