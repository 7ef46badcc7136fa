-- HTTP streaming, as in http-kit's streaming example: each client gets a
-- chunked response with one message every 200 ms, and the stream is closed
-- after 10 s.
--
--   ringlet examples/streaming.lua --port 8090
--   curl -N http://127.0.0.1:8090/          (add --raw to see the chunks)

local ringlet = require "ringlet"

local INTERVAL = 200 -- ms between two messages
local DURATION = 10000 -- ms before the server closes the stream

local function handler(req)
  local timers = {} -- this stream's pending timers, cancelled on close

  local response = ringlet.as_channel(req, {
    on_open = function(ch)
      local id = 0
      local function tick()
        timers.tick = nil
        if not ch:is_open() then return end
        ch:send("message from server #" .. id .. "\n")
        id = id + 1
        timers.tick = ringlet.timer(INTERVAL, tick)
      end
      tick()
      timers.stop = ringlet.timer(DURATION, function()
        timers.stop = nil
        ch:close()
      end)
    end,

    on_close = function()
      -- Both the server's close and a client that went away end up here.
      for _, timer in pairs(timers) do timer:cancel() end
    end,
  })
  -- The response head goes out with the first message.
  response.headers = { ["content-type"] = "text/plain; charset=utf-8" }
  return response
end

return handler
