-- http-kit's chatroom handler (the WebSocket example of org.httpkit.server's
-- as-channel), ported line by line to ringlet.httpkit:
--
--   (defn my-chatroom-handler [ring-req]
--     (if-not (:websocket? ring-req)
--       {:status 200 :body "Welcome to the chatroom! JS client connecting..."}
--       (as-channel ring-req
--         {:on-receive (fn [ch message] (println "on-receive:" message))
--          :on-close   (fn [ch status]  (println "on-close:"   status))
--          :on-open    (fn [ch]         (println "on-open:"    ch))})))
--
--   ringlet examples/httpkit/chatroom.lua            (port 8090)
--   curl http://127.0.0.1:8090/                      (the welcome text)
--   then connect a WebSocket client to ws://127.0.0.1:8090/ and watch
--   the server's output.

local httpkit = require "ringlet.httpkit"

-- Clojure's println: the values, separated by spaces, and a newline; flushed
-- so the lines show up at once when the output is a pipe.
local function println(...)
  local parts = table.pack(...)
  for i = 1, parts.n do parts[i] = tostring(parts[i]) end
  io.stdout:write(table.concat(parts, " ", 1, parts.n), "\n")
  io.stdout:flush()
end

local function my_chatroom_handler(ring_req)
  if not ring_req.websocket then
    return { status = 200, body = "Welcome to the chatroom! JS client connecting..." }
  end
  return httpkit.as_channel(ring_req, {
    on_receive = function(_, message) println("on-receive:", message) end,
    on_close = function(_, status) println("on-close:", status) end,
    on_open = function(ch) println("on-open:", ch) end,
  })
end

return my_chatroom_handler
