--- Ring 1.11's WebSocket API (`ring.websocket`) over ringlet's channels.
--
-- A handler answers a WebSocket upgrade with a response holding a
-- listener, a table of callbacks:
--
--    return { ["ring.websocket/listener"] = {
--      on_open = function(socket) end,
--      on_message = function(socket, message, binary) end,
--      on_pong = function(socket, data) end,
--      on_ping = function(socket, data) end,
--      on_error = function(socket, err) end,
--      on_close = function(socket, code, reason) end,
--    } }
--
-- The core reads the listener (any callback may be left out), answers
-- the upgrade with 101, and calls the callbacks on the same channel
-- machinery as `ringlet.as_channel` (each in its own coroutine, so they
-- may `ringlet.sleep`). `socket` is the channel. Pings are answered by
-- the core; `on_ping` only tells you of one. `on_close` gets the peer's
-- close code (1005 when its close frame had none, 1006 when the
-- connection dropped) and reason. The response may also carry `headers`
-- for the 101 and `["ring.websocket/protocol"]`, the subprotocol chosen
-- from `request_protocols(req)`. A request that is not a WebSocket
-- upgrade gets 426 Upgrade Required.
--
-- The functions below are Ring's socket functions. Text is a Lua string;
-- a binary message is `websocket.binary(s)` (Lua has one string type
-- where Ring has String and ByteBuffer).
-- @module ringlet.websocket

local websocket = {}

--- The response key of the listener: `"ring.websocket/listener"`.
websocket.LISTENER = "ring.websocket/listener"
--- The response key of the chosen subprotocol: `"ring.websocket/protocol"`.
websocket.PROTOCOL = "ring.websocket/protocol"

local binary_mt = { __name = "ringlet.websocket.binary" }

--- Mark a string as a binary message for `send`.
-- @tparam string s the bytes
-- @return a value `send` sends as one binary message
-- @usage websocket.send(socket, websocket.binary("\0\1\2"))
function websocket.binary(s)
  assert(type(s) == "string", "binary: a string expected")
  return setmetatable({ s }, binary_mt)
end

--- True when the socket is open (Ring's `open?`).
-- @param socket the channel a listener callback got
-- @treturn boolean
function websocket.open(socket)
  return socket:is_open()
end

--- Send a text (a string) or binary (`websocket.binary(s)`) message.
-- With `succeed` and `fail` it is Ring's asynchronous form: `succeed()`
-- once the message reached the socket, `fail(err)` if it never will.
-- @param socket the channel
-- @param message a string, or `websocket.binary(s)`
-- @tparam[opt] function succeed called with no argument once written
-- @tparam[opt] function fail called with the error
-- @return true when queued; nil when the socket is closed; false when its
-- send buffer is full
-- @usage websocket.send(socket, "hello")
function websocket.send(socket, message, succeed, fail)
  local opts
  if getmetatable(message) == binary_mt then
    opts = { binary = true }
    message = message[1]
  elseif type(message) ~= "string" then
    error("send: message must be a string or websocket.binary(s)", 2)
  end
  if succeed or fail then
    opts = opts or {}
    opts.on_success, opts.on_error = succeed, fail
  end
  local ok = socket:send(message, opts)
  if ok == nil and fail then fail("closed") end
  return ok
end

--- Send a ping, with an optional payload of up to 125 bytes.
-- @param socket the channel
-- @tparam[opt] string data the payload
-- @return true, or nil when the socket is closed
function websocket.ping(socket, data)
  return socket:ping(data)
end

--- Send an unsolicited pong (a heartbeat), with an optional payload.
-- @param socket the channel
-- @tparam[opt] string data the payload
-- @return true, or nil when the socket is closed
function websocket.pong(socket, data)
  return socket:pong(data)
end

--- Close the socket: code 1000 "Normal Closure" unless given.
-- @param socket the channel
-- @tparam[opt=1000] integer code the close code
-- @tparam[opt="Normal Closure"] string reason at most 123 bytes
-- @treturn boolean true if this call closed it
function websocket.close(socket, code, reason)
  if code == nil then code, reason = 1000, "Normal Closure" end
  return socket:close(code, reason or "")
end

--- True when the request asks for a WebSocket upgrade
-- (Ring's `websocket-request?`; the core has checked the handshake).
-- @tparam table req a request table
-- @treturn boolean
function websocket.is_request(req)
  return req.websocket == true
end

--- True when the response holds a listener (Ring's `websocket-response?`).
-- @tparam table resp a response table
-- @treturn boolean
function websocket.is_response(resp)
  return type(resp) == "table" and resp[websocket.LISTENER] ~= nil
end

--- The subprotocols the client offered (`Sec-WebSocket-Protocol`), in its
-- order (Ring's `request-protocols`).
-- @tparam table req a request table
-- @treturn {string,...} possibly empty
function websocket.request_protocols(req)
  local list = {}
  local h = req.headers and req.headers["sec-websocket-protocol"]
  if h then
    for p in h:gmatch("[^,%s]+") do list[#list + 1] = p end
  end
  return list
end

return websocket
