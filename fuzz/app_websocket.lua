-- The server side of fuzz_websocket: start(cfg) runs a server whose
-- handler answers a WebSocket upgrade with a channel that echoes every
-- message, and checks what the core promises its callbacks (fuzz_trap on
-- a broken promise).
--
--   cfg bits 0-1  max_ws   4194304, 16, 1000, 125
--
-- A message's first byte may ask for more than an echo:
--   "!" ch:close(code from bytes 2-3, the rest as the reason)
--   "?" ch:ping(the rest)     "^" ch:pong(the rest)
--   "*" the message twice, as an array     "~" twice, from an iterator
--   "#" the echo with close = true
-- luacheck: read globals fuzz_trap
local ringlet = require "ringlet"
local trap = fuzz_trap

local MAX_WS = { 4194304, 16, 1000, 125 }

local function valid_code(code)
  return (code >= 1000 and code <= 1003) or (code >= 1007 and code <= 1014)
    or (code >= 3000 and code <= 4999)
end

local function channel_opts(max_ws)
  local closed = false
  local function control(what, p)
    if type(p) ~= "string" or #p > 125 then trap(what .. " payload") end
  end
  return {
    on_message = function(ch, msg, binary)
      if closed then trap("on_message after on_close") end
      if type(msg) ~= "string" or type(binary) ~= "boolean" then
        trap("on_message got a " .. type(msg) .. " and a " .. type(binary))
      end
      if #msg > max_ws then
        trap(("a message of %d bytes past max_ws %d"):format(#msg, max_ws))
      end
      if not binary and not utf8.len(msg) then
        trap(("a text message that is not UTF-8: %q"):format(msg))
      end
      local c = msg:sub(1, 1)
      if c == "!" then
        local code = #msg >= 3 and (msg:byte(2) << 8 | msg:byte(3)) or 1000
        local reason = msg:sub(4, 126) -- UTF-8 or not: a bad one is refused
        local ok = pcall(ch.close, ch, code, reason)
        if ok ~= (valid_code(code) and utf8.len(reason) ~= nil) then
          trap(("ch:close(%d, %q) %s"):format(code, reason,
            ok and "accepted" or "refused"))
        end
      elseif c == "?" then
        ch:ping(msg:sub(2, 126))
      elseif c == "^" then
        ch:pong(msg:sub(2, 126))
      elseif c == "*" then
        ch:send({ msg, msg }, { binary = binary })
      elseif c == "~" then
        local i = 0
        ch:send(function()
          i = i + 1
          if i <= 2 then return msg end
        end, { binary = binary })
      elseif c == "#" then
        ch:send(msg, { binary = binary, close = true })
      else
        ch:send(msg, { binary = binary })
      end
    end,
    on_ping = function(_, p) control("on_ping", p) end,
    on_pong = function(_, p) control("on_pong", p) end,
    on_error = function(_, err)
      if type(err) ~= "string" then trap("on_error got a " .. type(err)) end
    end,
    on_close = function(_, info)
      if closed then trap("on_close twice") end
      closed = true
      local code = info.code
      if math.type(code) ~= "integer" or not (valid_code(code)
          or code == 1005 or code == 1006) then
        trap("on_close code " .. tostring(code))
      end
      if type(info.reason) ~= "string" or (info.initiator ~= "server"
          and info.initiator ~= "client") then
        trap("on_close info")
      end
    end,
  }
end

local servers = {}

return {
  start = function(cfg)
    local max_ws = MAX_WS[cfg % 4 + 1]
    local srv = assert(ringlet.run_server(function(req)
      if req.uri == "/__alive" then return { body = "alive" } end
      if not req.websocket then return { status = 400, body = "no" } end
      return ringlet.as_channel(req, channel_opts(max_ws))
    end, { ip = "127.0.0.1", port = 0, max_ws = max_ws, header_timeout = 0,
           queue_size = 1 }))
    servers[#servers + 1] = srv
    return srv.port
  end,
}
