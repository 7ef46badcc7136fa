-- http-kit's long polling example ("Unified Async/Websocket API"), ported
-- line by line to ringlet.httpkit:
--
--   (defn handler [request]
--     (with-channel request channel
--       (on-some-event ;; wait for event
--         (send! channel {:status 200 :headers {...} :body ...} true))))
--   (run-server handler {:port 9090})
--
-- The wiki leaves on-some-event to the reader; here it is a POST to /event,
-- whose body every waiting client gets.
--
--   ringlet examples/httpkit/long_polling.lua        (port 9090)
--   curl http://127.0.0.1:9090/                      (waits)
--   curl -d '{"hello":"polling"}' http://127.0.0.1:9090/event
--                                                    (in another shell)

local httpkit = require "ringlet.httpkit"

local waiting = {} -- what to call when the event comes, one per client

-- Calls fn(data) when the event comes (once).
local function on_some_event(fn)
  waiting[#waiting + 1] = fn
end

local function handler(request)
  return httpkit.with_channel(request, function(channel)
    on_some_event(function(data) -- wait for event
      httpkit.send(channel, {
        status = 200,
        headers = { ["content-type"] = "application/json; charset=utf-8" },
        body = data,
      }, true) -- send and close
    end)
  end)
end

-- The event: POST /event hands its body to every client waiting.
local function event(request)
  local callbacks = waiting
  waiting = {}
  for _, fn in ipairs(callbacks) do fn(request.body or "") end
  return {
    status = 200,
    headers = { ["content-type"] = "text/plain" },
    body = "delivered to " .. #callbacks .. " client(s)\n",
  }
end

return {
  handler = function(request)
    if request.request_method == "post" and request.uri == "/event" then
      return event(request)
    end
    return handler(request)
  end,
  options = { port = 9090 },
}
