-- A chat room: GET / serves index.html, a page that connects to /ws; every
-- message a member sends is broadcast to every connected member (the
-- sender included), as it came: text as text, binary as binary.
--
--   ringlet examples/chat/app.lua --port 8090
--   then open http://127.0.0.1:8090/ in two browser tabs
--
-- The page is read once, at startup, from the directory this file is in,
-- so the app can be started from any working directory.

local ringlet = require "ringlet"

-- This file's directory: the chunk name is "@path/to/app.lua" when the CLI
-- (or dofile) loaded it from a file.
local source = debug.getinfo(1, "S").source
local dir = source:match("^@(.*)/[^/]*$") or "."

local function read_page()
  local path = dir .. "/index.html"
  local f = assert(io.open(path, "rb"))
  local page = assert(f:read("a"))
  f:close()
  return page
end

local PAGE = read_page()

-- Every open channel of the room (a set: channel -> true). A member leaves
-- the set in on_close, whoever closed it.
local members = {}

local function broadcast(message, binary)
  for ch in pairs(members) do
    -- send returns nil for a channel that closed meanwhile; its on_close
    -- removes it.
    ch:send(message, { binary = binary })
  end
end

local function join(req)
  return ringlet.as_channel(req, {
    on_open = function(ch) members[ch] = true end,
    on_message = function(_, message, binary) broadcast(message, binary) end,
    on_close = function(ch) members[ch] = nil end,
  })
end

local function text(status, body, headers)
  headers = headers or {}
  headers["content-type"] = "text/plain; charset=utf-8"
  return { status = status, headers = headers, body = body }
end

return function(req)
  if req.uri == "/ws" then
    if req.websocket then return join(req) end
    return text(426, "/ws is the chat's WebSocket; open / instead\n",
      { upgrade = "websocket" })
  elseif req.uri == "/" then
    if req.request_method ~= "get" and req.request_method ~= "head" then
      return text(405, "method not allowed\n", { allow = "GET, HEAD" })
    end
    return {
      status = 200,
      headers = { ["content-type"] = "text/html; charset=utf-8" },
      body = PAGE,
    }
  end
  return text(404, "not found\n")
end
