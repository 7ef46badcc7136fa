-- WebSocket echo: every message comes back as it was sent, text as text and
-- binary as binary. A plain GET (no upgrade) gets a short text saying how to
-- connect.
--
--   ringlet examples/echo.lua --port 8090
--   node spec/node/ws_client.js 8090 /     (or any WebSocket client)
--
-- Pings are answered by the core; a close from the client is answered with
-- the same code.

local ringlet = require "ringlet"

-- The answer to a plain GET; %s is the Host the client asked for.
local HELP = [[
This is ringlet's WebSocket echo example. Connect a WebSocket client to
  ws://%s/
(any path works): every text or binary message you send comes back
unchanged.
]]

local function echo(ch, message, binary)
  ch:send(message, { binary = binary })
end

return function(req)
  if req.websocket then
    return ringlet.as_channel(req, { on_message = echo })
  end
  return {
    status = 200,
    headers = { ["content-type"] = "text/plain; charset=utf-8" },
    body = HELP:format(req.headers.host or "HOST:PORT"),
  }
end
