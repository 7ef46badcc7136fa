-- http-kit's WebSocket example ("Unified Async/Websocket API"), ported
-- line by line to ringlet.httpkit: every message comes back as it came,
-- text as text and binary as binary.
--
--   (defn handler [request]
--     (with-channel request channel
--       (on-receive channel (fn [data] ;; echo it back
--                             (send! channel data)))))
--   (run-server handler {:port 9090})
--
--   ringlet examples/httpkit/websocket.lua           (port 9090)
--   node spec/node/ws_client.js 9090 /               (or any WebSocket client)

local httpkit = require "ringlet.httpkit"

local function handler(request)
  return httpkit.with_channel(request, function(channel)
    httpkit.on_receive(channel, function(data) -- echo it back
      httpkit.send(channel, data)
    end)
  end)
end

return { handler = handler, options = { port = 9090 } }
