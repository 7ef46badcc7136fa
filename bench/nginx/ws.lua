-- /ws: WebSocket echo with lua-resty-websocket (Debian's lua-nginx-websocket
-- installs it as nginx.websocket.server). Text comes back as text, binary as
-- binary; fragmented messages are reassembled and echoed whole; pings get
-- pongs; a close is answered with the peer's code.
-- luacheck: std ngx_lua

local ok, server = pcall(require, "nginx.websocket.server")
if not ok then server = require "resty.websocket.server" end

local wb, err = server:new({
  timeout = 3600000,           -- ms; the idle test holds connections open
  max_payload_len = 16777216,  -- 64 KiB messages and more
})
if not wb then
  ngx.log(ngx.ERR, "websocket handshake: ", err)
  return ngx.exit(400)
end

local parts, first_type -- a fragmented message being rebuilt

while true do
  local data, typ, info = wb:recv_frame()
  if not data then
    if info and info:find(": timeout", 1, true) then
      goto continue
    end
    break -- the peer went away or sent a bad frame
  end

  if typ == "text" or typ == "binary" then
    if info == "again" then -- first fragment of a message
      parts, first_type = { data }, typ
    elseif typ == "text" then
      wb:send_text(data)
    else
      wb:send_binary(data)
    end
  elseif typ == "continuation" then
    if parts then
      parts[#parts + 1] = data
      if info ~= "again" then -- the last fragment
        local message = table.concat(parts)
        if first_type == "text" then
          wb:send_text(message)
        else
          wb:send_binary(message)
        end
        parts, first_type = nil, nil
      end
    end
  elseif typ == "ping" then
    wb:send_pong(data)
  elseif typ == "close" then
    -- info is the peer's status code (nil when its close had none)
    wb:send_close(info, "")
    break
  end
  -- pongs are ignored
  ::continue::
end
