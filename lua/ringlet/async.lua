--- ring-websocket-async in coroutines: a WebSocket as three queues.
--
-- The Clojure library `ring.websocket.async` hands a WebSocket to a
-- core.async `go` block as an input channel, an output channel and an
-- error channel. This module does the same with Lua coroutines and
-- `ringlet.queue`: the function you give runs in a task of its own,
-- `inbox:take()` suspends it until the next message (nil once the socket
-- has closed), `outbox:put(msg)` sends one (suspending it while the
-- socket's send buffer is over its high-water mark), and
-- `outbox:close()` closes the socket.
--
-- Messages: text is a Lua string; binary is a table
-- `{data = string, binary = true}`, the one binary form of ringlet's Lua
-- modules (`async.binary(s)`, which is `ringlet.websocket.binary`, makes
-- one). The inbox gives binary messages in that form and the outbox takes
-- it, with or without `binary`'s metatable, so an echo loop
-- (`outbox:put(inbox:take())`) answers binary with binary.
-- `async.closed(code, reason)` put on the outbox closes the socket with
-- that code and reason.
--
-- Channels: `async.chan()` is a rendezvous queue (core.async's `chan`
-- with no buffer, what ring-websocket-async makes): a put waits until a
-- taker takes. `async.chan(n)` buffers n values. Both are `ringlet.queue`
-- objects, so they have `put`, `take`, `offer`, `poll`, `close`,
-- `is_closed` and `#`. A put or take that would wait works only inside
-- a task ringlet runs (a handler, a channel callback, a `ringlet.timer`
-- callback, `async.go`).
--
-- Closing: when either side closes the socket, the inbox, the outbox
-- and the errors queue are closed (values already in the inbox can
-- still be taken). The function returning does not close the socket
-- (ring-websocket-async 0.2.0; 0.1.0 closed it): close the outbox, or
-- put `async.closed(...)`, when you are done.
--
-- @module ringlet.async
-- @usage
-- local async = require "ringlet.async"
-- return function(req)
--   return async.websocket(req, function(inbox, outbox)
--     local msg = inbox:take()
--     while msg ~= nil do
--       outbox:put(msg)
--       msg = inbox:take()
--     end
--   end)
-- end

local ringlet = require "ringlet"
local ws = require "ringlet.websocket"

local async = {}

local LISTENER = ws.LISTENER

--- The default `high_water`: bytes queued on the socket (not yet written)
-- past which the outbox waits for them to be written (64 KiB).
async.HIGH_WATER = 65536

--- The default `max_pending`: messages that may wait to enter the inbox
-- (core.async's limit on pending puts, 1024).
async.MAX_PENDING = 1024

local queue_name = getmetatable(ringlet.queue(0)).__name

local function is_queue(q)
  local mt = getmetatable(q)
  return type(q) == "userdata" and type(mt) == "table"
    and mt.__name == queue_name
end

local function log(fmt, ...)
  io.stderr:write("ringlet: async: ", fmt:format(...), "\n")
  io.stderr:flush()
end

-- Run fn(...) in a task of its own (a timer callback, from the loop's
-- next turn). An error goes to on_error(err) when given, else is raised
-- again in the timer task (ringlet logs it).
local function spawn(fn, on_error, ...)
  local args = table.pack(...)
  ringlet.timer(0, function()
    local ok, err = xpcall(fn, debug.traceback, table.unpack(args, 1, args.n))
    if not ok then
      if on_error then on_error(err) else error(err, 0) end
    end
  end)
end

-- ---- channels and messages ----------------------------------------------

--- A channel: a `ringlet.queue` of capacity `n`.
-- With no `n` it is a rendezvous channel (capacity 0), as core.async's
-- `(chan)` and the channels ring-websocket-async makes: `put` waits until
-- a taker has taken the value. Note that `ringlet.queue()` with no
-- capacity is unbounded instead.
-- @tparam[opt=0] integer n how many values it holds before `put` waits
-- @return a `ringlet.queue`
-- @usage
-- local inbox, outbox, errors = async.chan(), async.chan(), async.chan()
-- local buffered = async.chan(16)
function async.chan(n)
  if n ~= nil and (math.type(n) ~= "integer" or n < 0) then
    error("async.chan: the capacity must be an integer >= 0", 2)
  end
  return ringlet.queue(n or 0)
end

local closed_mt = {
  __name = "ringlet.async.closed",
  __tostring = function(c)
    return ("ringlet.async.closed(%d, %q)"):format(c.code, c.reason)
  end,
}

-- The close codes an endpoint may send (as ch:close checks them).
local function valid_code(code)
  return (code >= 1000 and code <= 1003) or (code >= 1007 and code <= 1014)
    or (code >= 3000 and code <= 4999)
end

--- A message that closes the socket: put on an outbox, it closes the
-- WebSocket with `code` and `reason` (after the messages put before it).
-- Both are required, as in ring-websocket-async; they are checked here,
-- so a bad one raises where it is made.
-- @tparam integer code a close code an endpoint may send: 1000-1003,
-- 1007-1014 or 3000-4999
-- @tparam string reason UTF-8, at most 123 bytes
-- @return the close message (a table with `code` and `reason`)
-- @usage outbox:put(async.closed(1001, "Gone Away"))
function async.closed(code, reason)
  if math.type(code) ~= "integer" or not valid_code(code) then
    error("async.closed: code must be an integer close code an endpoint "
      .. "may send (1000-1003, 1007-1014, 3000-4999)", 2)
  end
  if type(reason) ~= "string" or #reason > 123 or not utf8.len(reason) then
    error("async.closed: reason must be a string of at most 123 bytes, "
      .. "UTF-8 (RFC 6455 5.5.1)", 2)
  end
  return setmetatable({ code = code, reason = reason }, closed_mt)
end

--- True when `msg` is a close message made by `async.closed`.
-- @param msg any value
-- @treturn boolean
-- @usage if async.is_closed(msg) then print(msg.code, msg.reason) end
function async.is_closed(msg)
  return getmetatable(msg) == closed_mt
end

--- A binary message: `{data = s, binary = true}`, the same function as
-- `ringlet.websocket.binary` (see there for its metatable). The inbox
-- gives binary messages made by it; the outbox sends any table with a
-- string `data` as binary when its `binary` is true (as text otherwise),
-- so the literal works too.
-- @function binary
-- @tparam string s the bytes
-- @treturn table `{data = s, binary = true}`
-- @usage outbox:put(async.binary("\0\1\2"))
async.binary = ws.binary

--- True when `msg` is a binary message: a table whose `binary` is true
-- and whose `data` is a string (the same function as
-- `ringlet.websocket.is_binary`).
-- @function is_binary
-- @param msg any value
-- @treturn boolean
-- @usage if async.is_binary(msg) then print(#msg.data, "bytes") end
async.is_binary = ws.is_binary

--- Run `fn(...)` in a task of its own, from the loop's next turn (a
-- `go` block): there it may wait on queues and `ringlet.sleep`.
-- An error in `fn` is logged (with its traceback) and closes the result.
-- @tparam function fn the body
-- @param ... its arguments
-- @return a channel of capacity 1 that gets `fn`'s first result (when it
-- is not nil) and is then closed
-- @usage
-- local done = async.go(function(a, b) return a + b end, 1, 2)
-- -- in another task: done:take() --> 3
function async.go(fn, ...)
  if type(fn) ~= "function" then
    error("async.go: expected a function, got " .. type(fn), 2)
  end
  local result = ringlet.queue(1)
  spawn(function(...)
    local ok, v = xpcall(fn, debug.traceback, ...)
    if ok and v ~= nil then result:offer(v) end
    result:close()
    if not ok then error(v, 0) end
  end, nil, ...)
  return result
end

-- ---- the WebSocket side -------------------------------------------------

local OPTIONS = {
  high_water = "integer", max_pending = "integer",
  timeout = "integer", ping_interval = "integer", max_buffered = "integer",
}
-- the options passed to as_channel (the request form only)
local CHANNEL_OPTIONS = { "timeout", "ping_interval", "max_buffered" }

local function check_options(fname, opts, with_request)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    error(fname .. ": options must be a table, got " .. type(opts), 3)
  end
  for k, v in pairs(opts) do
    local want = OPTIONS[k]
    if want == nil then
      error(("%s: unknown option '%s'"):format(fname, tostring(k)), 3)
    end
    if math.type(v) ~= want or v < 0 then
      error(("%s: option '%s' must be an integer >= 0"):format(fname, k), 3)
    end
  end
  if not with_request then
    for _, k in ipairs(CHANNEL_OPTIONS) do
      if opts[k] ~= nil then
        error(("%s: option '%s' needs the request form "
          .. "(async.websocket(req, fn, opts))"):format(fname, k), 3)
      end
    end
  end
  return opts
end

-- The callbacks that tie a socket to three queues, shared by both forms.
-- report(err) puts err on errors without waiting (a task of its own waits
-- when no taker is there).
local function bind(inbox, outbox, errors, opts)
  local high_water = opts.high_water or async.HIGH_WATER
  local max_pending = opts.max_pending or async.MAX_PENDING
  local pending = 0 -- on_message tasks waiting in inbox:put

  local function report(err)
    if not errors:offer(err) then
      spawn(function() errors:put(err) end)
    end
  end

  -- The outbox pump, in the on_open task: one message at a time, as
  -- ring-websocket-async's loop; past high_water it waits until the
  -- socket has taken what was queued (the last send's on_success), so a
  -- put waits while the peer is slow.
  local function pump(ch)
    local written = ringlet.queue(1)
    local function signal() written:offer(true) end
    local send_opts = {
      [false] = { [false] = nil, [true] = { on_success = signal,
        on_error = signal } },
      [true] = { [false] = { binary = true }, [true] = { binary = true,
        on_success = signal, on_error = signal } },
    }
    while true do
      local msg = outbox:take()
      if msg == nil then
        ch:close(1000, "Normal Closure")
        return
      end
      if getmetatable(msg) == closed_mt then
        ch:close(msg.code, msg.reason)
        return
      end
      local data, binary
      if type(msg) == "string" then
        data, binary = msg, false
      elseif type(msg) == "table" and type(msg.data) == "string" then
        data, binary = msg.data, msg.binary == true
      end
      if data == nil then
        report(("outbox: cannot send a %s: a message is a string (text) or "
          .. "{data = string, binary = true}"):format(type(msg)))
      else
        local wait = ch:buffered_amount() + #data > high_water
        local sent = ch:send(data, send_opts[binary][wait])
        if sent == nil then return end -- closed: on_close closes the rest
        -- false: over max_buffered; the channel's on_error reported it
        if sent and wait then written:take() end
      end
    end
  end

  local cb = {}

  function cb.on_open(ch)
    pump(ch)
  end

  -- A message goes straight in when the inbox takes it now (a taker waits,
  -- or there is room): no task waits. async.websocket's own inbox holds
  -- max_pending messages; a queue of the user's may make this task wait.
  function cb.on_message(_, msg, binary)
    if binary then msg = ws.binary(msg) end
    if inbox:offer(msg) then return end
    local waiting = opts.own_inbox and #inbox or pending
    if opts.own_inbox or pending >= max_pending then
      report(("inbox: %d messages are waiting to be taken (max_pending); "
        .. "a message was dropped"):format(waiting))
      return
    end
    pending = pending + 1
    inbox:put(msg)
    pending = pending - 1
  end

  function cb.on_error(_, err)
    errors:put(err)
  end

  function cb.close()
    inbox:close()
    outbox:close()
    errors:close()
  end

  return cb
end

local function check_queue(fname, q, what)
  if not is_queue(q) then
    error(("%s: %s must be a channel (async.chan or ringlet.queue), got %s")
      :format(fname, what, type(q)), 3)
  end
end

--- A Ring 1.11 WebSocket listener over three channels you made (the
-- lower-level form of ring-websocket-async's `websocket-listener`).
-- Return it from a handler as `{["ring.websocket/listener"] = listener}`.
--
-- Messages from the client are put on `inbox` (text as strings, binary as
-- `{data =, binary = true}`); values taken from `outbox` are sent (a
-- string, a `{data =, binary =}` table, or `async.closed(code, reason)`
-- to close with that code); closing `outbox` closes the socket with 1000
-- "Normal Closure". Errors (the channel's `on_error`: a callback that
-- failed, "send buffer full"; and outbox values that cannot be sent) are
-- put on `errors`. When the socket closes, the three are closed.
--
-- Make the channels and the listener for each request: they belong to
-- one socket. Start the task that uses them with `async.go` (a handler
-- cannot wait for the socket to open); give only WebSocket requests the
-- listener, or that task waits for ever (a plain request gets 426 and no
-- callback).
-- @param inbox channel for the client's messages
-- @param outbox channel of messages to send
-- @param errors channel for errors
-- @tparam[opt] table opts `high_water` (`async.HIGH_WATER`): bytes
-- queued on the socket past which the outbox waits; `max_pending`
-- (`async.MAX_PENDING`): messages waiting to enter the inbox past which
-- a new one is dropped and an error reported
-- @treturn table the listener: `on_open`, `on_message`, `on_error`,
-- `on_close`
-- @usage
-- return function(req)
--   local inbox, outbox, errors = async.chan(), async.chan(), async.chan()
--   async.go(function()
--     local msg = inbox:take()
--     while msg ~= nil do
--       outbox:put(msg)
--       msg = inbox:take()
--     end
--     outbox:close() -- closes the websocket
--   end)
--   return { ["ring.websocket/listener"] =
--     async.websocket_listener(inbox, outbox, errors) }
-- end
function async.websocket_listener(inbox, outbox, errors, opts)
  local fname = "async.websocket_listener"
  check_queue(fname, inbox, "inbox")
  check_queue(fname, outbox, "outbox")
  check_queue(fname, errors, "errors")
  local cb = bind(inbox, outbox, errors, check_options(fname, opts, false))
  return {
    on_open = cb.on_open,
    on_message = cb.on_message,
    on_error = cb.on_error,
    on_close = function() cb.close() end,
  }
end

-- Does fn take an errors parameter (three or more, or `...`)?
local function takes_errors(fn)
  local info = debug.getinfo(fn, "u")
  return info.nparams >= 3 or info.isvararg
end

local UPGRADE_BODY = "this resource speaks WebSocket only\n"

--- A WebSocket handled by `fn(inbox, outbox, errors)` in a task of its
-- own (ring-websocket-async's `go-websocket`): returns the response for
-- the handler to return.
--
-- `fn` starts once the socket is open. `inbox:take()` waits for the next
-- message from the client (a string, or `{data =, binary = true}`) and
-- returns nil once the socket has closed; `outbox:put(msg)` sends one,
-- waiting while more than `high_water` bytes are queued on the socket;
-- `outbox:close()` closes it with 1000, `outbox:put(async.closed(code,
-- reason))` with that code. The outbox and errors are rendezvous
-- channels (`async.chan()`); the inbox holds up to `max_pending` messages
-- (the client's messages wait there, past it one is dropped and reported).
-- All three close when the socket closes. `fn` returning does not close
-- the socket.
--
-- Errors: when `fn` takes a third parameter (or `...`), errors are put on
-- `errors` (see `websocket_listener`) and the socket stays open. Without
-- one, the first error closes the socket with 1011 "Unexpected Error"
-- (after what was put before it) and is logged. An error raised by `fn`
-- itself is logged and closes the socket with 1011 (after what `fn` put
-- before it) in both cases.
-- Protocol errors (bad frames, bad UTF-8, a message over `max_ws`) are
-- answered by the core with their own close code (1002, 1007, 1009), and
-- reach `errors` as the channel's `on_error` gets them.
--
-- Two forms. `async.websocket(req, fn [, opts])` is built on
-- `ringlet.as_channel(req, ...)`: it takes the channel options `timeout`,
-- `ping_interval` and `max_buffered`, and answers a request that is not
-- a WebSocket upgrade with 426. Call it from the handler (as
-- `as_channel`). `async.websocket(fn [, opts])` needs no request: it
-- returns `{["ring.websocket/listener"] = ...}` (Ring 1.11's form, as
-- the macro does), and the core answers a plain request with 426.
-- @tparam[opt] table req the request (the handler's argument)
-- @tparam function fn `function(inbox, outbox [, errors])`
-- @tparam[opt] table opts `high_water` (`async.HIGH_WATER`),
-- `max_pending` (`async.MAX_PENDING`); with `req` also `timeout`,
-- `ping_interval`, `max_buffered` (as `ringlet.as_channel`)
-- @treturn table the response
-- @usage
-- return function(req)
--   return async.websocket(req, function(inbox, outbox)
--     outbox:put("hello")
--     outbox:put(async.closed(1001, "Gone Away"))
--   end)
-- end
function async.websocket(req, fn, opts)
  if type(req) == "function" then
    req, fn, opts = nil, req, fn
  elseif type(req) ~= "table" then
    error("async.websocket: expected (req, fn [, opts]) or (fn [, opts]), "
      .. "got " .. type(req), 2)
  end
  if type(fn) ~= "function" then
    error("async.websocket: fn must be a function(inbox, outbox "
      .. "[, errors]), got " .. type(fn), 2)
  end
  opts = check_options("async.websocket", opts, req ~= nil)
  -- the inbox holds what may wait (max_pending) itself, so a message is
  -- one offer, not a task waiting in put; the others are rendezvous
  local inbox = ringlet.queue(opts.max_pending or async.MAX_PENDING)
  local outbox, errors = async.chan(), async.chan()
  local cb = bind(inbox, outbox, errors, setmetatable({ own_inbox = true },
    { __index = opts }))
  local with_errors = takes_errors(fn)

  local function on_open(ch)
    spawn(fn, function(err)
      log("websocket function failed (closing with 1011): %s", err)
      if not outbox:put(async.closed(1011, "Unexpected Error")) then
        ch:close(1011, "Unexpected Error")
      end
    end, inbox, outbox, errors)
    if not with_errors then
      spawn(function()
        local err = errors:take()
        if err == nil then return end
        log("websocket error (closing with 1011): %s", tostring(err))
        outbox:put(async.closed(1011, "Unexpected Error"))
      end)
    end
    cb.on_open(ch)
  end

  if req == nil then
    return { [LISTENER] = {
      on_open = on_open,
      on_message = cb.on_message,
      on_error = cb.on_error,
      on_close = function() cb.close() end,
    } }
  end
  if not req.websocket then
    return {
      status = 426,
      headers = { upgrade = "websocket", ["content-type"] = "text/plain" },
      body = UPGRADE_BODY,
    }
  end
  local copts = {
    on_open = on_open,
    on_message = cb.on_message,
    on_error = cb.on_error,
    on_close = function() cb.close() end,
  }
  for _, k in ipairs(CHANNEL_OPTIONS) do copts[k] = opts[k] end
  return ringlet.as_channel(req, copts)
end

return async
