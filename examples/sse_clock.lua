-- The server's clock over server-sent events (ringlet.sse): GET / serves a
-- page whose EventSource shows the time; GET /events is the event stream.
--
--   ringlet examples/sse_clock.lua --port 8090
--   then open http://127.0.0.1:8090/, or: curl -N http://127.0.0.1:8090/events
--
-- Each tick is one event:
--
--   id: 7             this browser's 7th tick
--   event: tick
--   data: 12:34:56
--
-- and the first one of a stream also carries "retry: 1000" (reconnect one
-- second after the stream ends). A stream ends after 10 ticks, so you can
-- watch the browser come back: it sends the last id it saw as the
-- Last-Event-ID header and the clock goes on from the next id, none lost
-- and none repeated. The query changes the pace: `interval` (ms between
-- ticks, 1000) and `limit` (ticks per stream, 10; 0 never ends it). The
-- page passes its own query on to /events:
--
--   http://127.0.0.1:8090/?interval=200&limit=5
--   curl -N 'http://127.0.0.1:8090/events?limit=3' -H 'Last-Event-ID: 41'

local ringlet = require "ringlet"
local sse = require "ringlet.sse"

local PAGE = [[
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>ringlet clock</title>
<link rel="icon" href="data:,">
<style>
  body { font-family: sans-serif; margin: 2em; }
  #clock { font-size: 4em; font-variant-numeric: tabular-nums; }
  #log { color: #555; font-size: 0.9em; }
</style>
</head>
<body>
<div id="clock">--:--:--</div>
<p>tick <span id="tick">-</span>, stream <span id="status">connecting</span>,
connected <span id="opens">0</span> times</p>
<ol id="log"></ol>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let opens = 0;

function log(cls, text, id) {
  const li = document.createElement("li");
  li.className = cls;
  li.textContent = text;
  if (id !== undefined) li.dataset.id = id;
  $("log").prepend(li);
  while ($("log").children.length > 100) $("log").lastChild.remove();
}

// The browser reconnects by itself when the stream ends, and sends the
// last id it saw as Last-Event-ID.
const source = new EventSource("/events" + location.search);
source.onopen = () => {
  opens += 1;
  $("opens").textContent = opens;
  $("status").textContent = "open";
  log("open", opens === 1 ? "connected" : "connected again");
};
source.onerror = () => {
  $("status").textContent =
    source.readyState === EventSource.CLOSED ? "closed" : "reconnecting";
};
source.addEventListener("tick", (event) => {
  $("clock").textContent = event.data;
  $("tick").textContent = event.lastEventId;
  log("tick", "#" + event.lastEventId + " " + event.data, event.lastEventId);
});
</script>
</body>
</html>
]]

-- The query's key=value pairs (numbers only are used here, so no decoding).
local function query(qs)
  local q = {}
  for k, v in (qs or ""):gmatch("([^&=]+)=([^&]*)") do q[k] = v end
  return q
end

-- An integer from the query between lo and hi, else the default.
local function int_param(v, lo, hi, default)
  local n = math.tointeger(tonumber(v))
  if n and n >= lo and n <= hi then return n end
  return default
end

-- The id the browser saw last (it reconnects with Last-Event-ID), or 0.
local function last_event_id(req)
  local v = req.headers["last-event-id"]
  if v and v:match("^%d+$") and #v <= 15 then return tonumber(v) end
  return 0
end

local function events(req)
  local q = query(req.query_string)
  local interval = int_param(q.interval, 50, 60000, 1000)
  local limit = int_param(q.limit, 0, 1000000, 10)
  local last = last_event_id(req)
  if req.headers["last-event-id"] then
    io.stderr:write(("sse_clock: Last-Event-ID %s, going on from id %d\n")
      :format(req.headers["last-event-id"], last + 1))
  end
  local timer -- the next tick, cancelled when the stream closes

  return sse.as_channel(req, {
    on_open = function(ch)
      local sent = 0
      local function tick()
        timer = nil
        sent = sent + 1
        local more = limit == 0 or sent < limit
        local ok = sse.send(ch, {
          id = last + sent,
          event = "tick",
          retry = sent == 1 and 1000 or nil,
          data = os.date("%H:%M:%S"),
        }, { close = not more }) -- the last tick ends the stream
        if ok and more then timer = ringlet.timer(interval, tick) end
      end
      tick()
    end,
    on_close = function()
      if timer then timer:cancel() end
    end,
  })
end

return function(req)
  if req.uri == "/" then
    return { status = 200, body = PAGE,
             headers = { ["content-type"] = "text/html; charset=utf-8" } }
  elseif req.uri == "/events" then
    return events(req)
  end
  return { status = 404, headers = { ["content-type"] = "text/plain" },
           body = "try / or /events\n" }
end
