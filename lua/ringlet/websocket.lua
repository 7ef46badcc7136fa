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
-- The functions below are Ring's socket functions. Text is a Lua string.
-- Lua has one string type where Ring has String and ByteBuffer, so a
-- binary message is a table `{data = s, binary = true}`: the one binary
-- form of all of ringlet's Lua modules. `websocket.binary(s)` makes one
-- (the same function is `ringlet.httpkit.binary` and
-- `ringlet.async.binary`), and every send of `ringlet.websocket`,
-- `ringlet.httpkit` and `ringlet.async` takes any table whose `binary` is
-- true and whose `data` is a string, so the literal works too. A
-- listener's `on_message` is called by the core with the message as a
-- string and `binary` true for a binary one; to answer in kind, send
-- `binary and websocket.binary(message) or message`.
-- @module ringlet.websocket

local websocket = {}

--- The response key of the listener: `"ring.websocket/listener"`.
websocket.LISTENER = "ring.websocket/listener"
--- The response key of the chosen subprotocol: `"ring.websocket/protocol"`.
websocket.PROTOCOL = "ring.websocket/protocol"

-- A binary message: any table with binary == true and a string data.
local function is_binary(v)
  return type(v) == "table" and v.binary == true and type(v.data) == "string"
end

-- The operand of a concatenation with a binary message: its bytes.
local function bytes_of(v)
  if is_binary(v) then return v.data end
  local t = type(v)
  if t == "string" or t == "number" then return v end
  error("attempt to concatenate a " .. t .. " value", 3)
end

local binary_mt = {
  __name = "ringlet.binary",
  __tostring = function(b) return b.data end,
  __len = function(b) return #b.data end,
  __eq = function(a, b)
    return is_binary(a) and is_binary(b) and a.data == b.data
  end,
  __concat = function(a, b) return bytes_of(a) .. bytes_of(b) end,
}

--- A binary message: `{data = s, binary = true}`, the one binary form of
-- ringlet's Lua modules (`ringlet.httpkit.binary` and
-- `ringlet.async.binary` are this function).
--
-- The table has a metatable for convenience: `#b` is the length of the
-- bytes, `tostring(b)` the bytes, `..` concatenates the bytes (giving a
-- string), and `==` is true for two binary messages with the same bytes.
-- Sends do not need it: a plain `{data = s, binary = true}` is sent the
-- same way. Binary messages received by `ringlet.httpkit` (`on_receive`)
-- and `ringlet.async` (the inbox) are made by this function.
-- @tparam string s the bytes
-- @treturn table `{data = s, binary = true}`
-- @usage websocket.send(socket, websocket.binary("\0\1\2"))
function websocket.binary(s)
  if type(s) ~= "string" then
    error("binary: expected a string, got " .. type(s), 2)
  end
  return setmetatable({ data = s, binary = true }, binary_mt)
end

--- True when `v` is a binary message: a table whose `binary` is true and
-- whose `data` is a string, made by `binary` or written out
-- (`ringlet.httpkit.is_binary` and `ringlet.async.is_binary` are this
-- function).
-- @param v any value
-- @treturn boolean
-- @usage if websocket.is_binary(msg) then print(#msg.data, "bytes") end
function websocket.is_binary(v)
  return is_binary(v)
end

--- True when the socket is open (Ring's `open?`).
-- @param socket the channel a listener callback got
-- @treturn boolean
function websocket.open(socket)
  return socket:is_open()
end

--- Send a text (a string) or binary (`websocket.binary(s)`, or any
-- `{data = s, binary = true}`) message.
-- With `succeed` and `fail` it is Ring's asynchronous form: `succeed()`
-- once the message reached the socket, `fail(err)` if it never will
-- (the socket is closed, or closes before the message is written:
-- "connection closed before the message was sent"; its send buffer is
-- full: "send buffer full: ...").
-- @param socket the channel
-- @param message a string, or a binary message
-- @tparam[opt] function succeed called with no argument once written
-- @tparam[opt] function fail called with the error
-- @return true when queued; nil when the socket is closed; false when its
-- send buffer is full
-- @usage websocket.send(socket, "hello")
function websocket.send(socket, message, succeed, fail)
  local opts
  if is_binary(message) then
    opts = { binary = true }
    message = message.data
  elseif type(message) ~= "string" then
    error("websocket.send: message must be a string or a binary message "
      .. "({data = s, binary = true}, websocket.binary(s)), got "
      .. type(message), 2)
  end
  if succeed or fail then
    opts = opts or {}
    opts.on_success, opts.on_error = succeed, fail
  end
  local ok = socket:send(message, opts)
  if ok == nil and fail then
    fail("connection closed before the message was sent")
  end
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
-- @tparam[opt="Normal Closure"] string reason UTF-8, at most 123 bytes
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
