-- A price ticker: every 100 ms one price goes to every member of one group,
-- whichever way they listen:
--
--   /ws      a WebSocket: each price is a text message {"seq":N,"price":P}
--   /events  server-sent events (an HTTP stream, text/event-stream): each
--            price is an event "id: N" / "data: {...}"
--   /poll    long polling: the next price as a whole response, then the
--            request is over (poll again for the one after)
--
--   ringlet examples/ticker.lua --port 8090
--   curl -N http://127.0.0.1:8090/events
--   curl http://127.0.0.1:8090/poll
--
-- The group frames a plain broadcast once per transport; here the events
-- need their own framing, so the ticker uses the per-member form, whose
-- function answers each member with the bytes its transport wants.

local ringlet = require "ringlet"

local listeners = ringlet.group()
local seq, price = 0, 100.00
local ticking = false -- the ticker runs while anyone listens

local function tick()
  if #listeners == 0 then
    ticking = false
    return
  end
  seq = seq + 1
  -- a random walk, in cents
  price = math.max(1, price + math.random(-50, 50) / 100)
  local json = ('{"seq":%d,"price":%.2f}'):format(seq, price)
  local event = ("id: %d\ndata: %s\n\n"):format(seq, json)
  listeners:broadcast(function(_, kind)
    return kind == "events" and event or json
  end)
  ringlet.timer(100, tick)
end

local function listen(req, kind, headers)
  local res = ringlet.as_channel(req, {
    on_open = function(ch)
      if kind == "events" then
        -- the head and a comment go now: the stream is open, and the
        -- group sends it events (not one whole response, as to a poll)
        ch:send({ status = 200, headers = headers, body = ": prices\n\n" })
      end
      listeners:add(ch, kind)
      if not ticking then
        ticking = true
        ringlet.timer(100, tick)
      end
    end,
  })
  res.headers = headers
  return res
end

return function(req)
  if req.uri == "/ws" and req.websocket then
    return listen(req, "ws", {})
  elseif req.uri == "/events" then
    return listen(req, "events", {
      ["content-type"] = "text/event-stream",
      ["cache-control"] = "no-cache",
    })
  elseif req.uri == "/poll" then
    return listen(req, "poll", { ["content-type"] = "application/json" })
  end
  return { status = 404, headers = { ["content-type"] = "text/plain" },
           body = "try /ws, /events or /poll\n" }
end
