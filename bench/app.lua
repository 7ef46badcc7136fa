-- The app bench/compare.sh measures ringlet with; bench/nginx and bench/node
-- serve the same three endpoints:
--
--   GET /hello   200 text/plain "Hello, World!"
--   GET /stream  200 text/plain, chunked: "chunk 1\n" .. "chunk 10\n"
--   /ws          WebSocket echo, text as text and binary as binary
--   /sub         WebSocket: joins the subscribers' group
--   /pub         WebSocket: each message is broadcast to the subscribers
--
-- Anything else is a 404.
--
--   build/ringlet bench/app.lua --ip 127.0.0.1 --port 0

local ringlet = require "ringlet"

local TEXT = { ["content-type"] = "text/plain" }
local CHUNKS = 10

local function echo(ch, message, binary)
  ch:send(message, { binary = binary })
end

-- nil in builds before groups, which compare.sh may run as "base"
local subscribers = ringlet.group and ringlet.group()

local function websocket_only(req, opts)
  if not req.websocket then
    return { status = 426, headers = TEXT, body = "WebSocket only\n" }
  end
  return ringlet.as_channel(req, opts)
end

local routes = {
  ["/hello"] = function()
    return { status = 200, headers = TEXT, body = "Hello, World!" }
  end,

  ["/stream"] = function()
    local n = 0
    return {
      status = 200,
      headers = TEXT,
      body = function() -- an iterator body is sent chunked
        if n == CHUNKS then return nil end
        n = n + 1
        return "chunk " .. n .. "\n"
      end,
    }
  end,

  ["/ws"] = function(req)
    return websocket_only(req, { on_message = echo })
  end,

  ["/sub"] = subscribers and function(req)
    return websocket_only(req, {
      on_open = function(ch) subscribers:add(ch) end,
    })
  end,

  ["/pub"] = subscribers and function(req)
    return websocket_only(req, {
      on_message = function(_, message, binary)
        subscribers:broadcast(message, { binary = binary })
      end,
    })
  end,
}

return function(req)
  local route = routes[req.uri]
  if route then return route(req) end
  return { status = 404, headers = TEXT, body = "not found\n" }
end
