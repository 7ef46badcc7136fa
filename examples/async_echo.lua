-- WebSocket echo with ringlet.async (ring-websocket-async's README example
-- in Lua): the function runs in a task of its own once the socket opens;
-- inbox:take() waits for the next message and returns nil once the socket
-- has closed, outbox:put(msg) sends it back (binary stays binary), waiting
-- while the client is slow to read. A plain GET gets 426.
--
--   ringlet examples/async_echo.lua --port 8090
--   node spec/node/ws_client.js 8090 /     (or any WebSocket client)

local async = require "ringlet.async"

return function(req)
  return async.websocket(req, function(inbox, outbox)
    local msg = inbox:take()
    while msg ~= nil do
      outbox:put(msg)
      msg = inbox:take()
    end
  end)
end
