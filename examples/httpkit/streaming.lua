-- http-kit's HTTP streaming example ("Unified Async/Websocket API"), ported
-- line by line to ringlet.httpkit:
--
--   (defn handler [request]
--     (with-channel request channel
--       (on-close channel (fn [status] (println "channel closed, " status)))
--       (loop [id 0]
--         (when (< id 10)
--           (schedule-task (* id 200) ;; send a message every 200ms
--             (send! channel (str "message from server #" id) false))
--           (recur (inc id))))
--       (schedule-task 10000 (close channel)))) ;; close in 10s.
--   (run-server handler {:port 9090})
--
--   ringlet examples/httpkit/streaming.lua           (port 9090)
--   curl -N http://127.0.0.1:9090/                   (add --raw for chunks)

local httpkit = require "ringlet.httpkit"

local function handler(request)
  return httpkit.with_channel(request, function(channel)
    httpkit.on_close(channel, function(status)
      print("channel closed, " .. status)
    end)
    for id = 0, 9 do
      httpkit.schedule_task(id * 200, function() -- a message every 200ms
        -- false: do not close after this send
        httpkit.send(channel, "message from server #" .. id, false)
      end)
    end
    httpkit.schedule_task(10000, function() httpkit.close(channel) end) -- close in 10s
  end)
end

return { handler = handler, options = { port = 9090 } }
