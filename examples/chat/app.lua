-- A chat room on a ringlet.group: GET / serves public/index.html (with its
-- chat.css and chat.js), a page that asks for a name and connects to
-- /ws?name=...; every line a member sends goes to every member (the sender
-- included) with the sender's name and the time. Members see who joins and
-- leaves and how many are here, and a newcomer gets the last messages first.
--
--   ringlet examples/chat/app.lua --port 8090
--   then open http://127.0.0.1:8090/ in two browser tabs
--
-- What the server sends is JSON, one object per WebSocket message:
--   {"type":"welcome","name":N,"count":C,"history":[{message}, ...]}
--   {"type":"message","name":N,"text":T,"time":SECONDS} (since the epoch)
--   {"type":"join","name":N,"count":C}  {"type":"leave","name":N,"count":C}
-- What a member sends is the text of one line.
--
-- The page and its assets are files under public/ beside this file, served
-- by ringlet.static (ETag, Last-Modified, 304s, ranges); only that
-- directory is served, so this file and anything else here is not. The
-- directory is found from this file's own path, so the app can be started
-- from any working directory.

local ringlet = require "ringlet"
local static = require "ringlet.static"

local HISTORY = 20    -- messages a newcomer gets
local MAX_TEXT = 2000 -- bytes of one line; longer ones are cut
local MAX_NAME = 24   -- characters of a name

-- This file's directory: the chunk name is "@path/to/app.lua" when the CLI
-- (or dofile) loaded it from a file.
local source = debug.getinfo(1, "S").source
local dir = source:match("^@(.*)/[^/]*$") or "."

local PUBLIC = dir .. "/public"

-- ---- JSON out -------------------------------------------------------------

local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n",
                  ["\r"] = "\\r", ["\t"] = "\\t" }

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return ESCAPES[c] or ("\\u%04x"):format(c:byte())
  end) .. '"'
end

local function json(t)
  local parts = {}
  for _, k in ipairs(t.__order) do
    local v = t[k]
    local out
    if type(v) == "string" then
      out = json_string(v)
    elseif type(v) == "table" then
      out = "[" .. table.concat(v, ",") .. "]" -- an array of JSON texts
    else
      out = tostring(v)
    end
    parts[#parts + 1] = json_string(k) .. ":" .. out
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

local function object(...)
  local t = { __order = {} }
  local args = table.pack(...)
  for i = 1, args.n, 2 do
    t.__order[#t.__order + 1] = args[i]
    t[args[i]] = args[i + 1]
  end
  return json(t)
end

-- ---- the room -------------------------------------------------------------

local room = ringlet.group()
local history = {} -- the last HISTORY messages, as JSON texts
local guests = 0

-- A name from the query string: percent-decoded, valid UTF-8, no control
-- characters, at most MAX_NAME characters; else a guest's number.
local function name_of(req)
  local raw = (req.query_string or ""):match("name=([^&]*)") or ""
  local name = raw:gsub("%+", " "):gsub("%%(%x%x)", function(h)
    return string.char(tonumber(h, 16))
  end):gsub("%c", ""):match("^%s*(.-)%s*$")
  if name == "" or not utf8.len(name) then
    guests = guests + 1
    return "guest " .. guests
  end
  if utf8.len(name) > MAX_NAME then
    name = name:sub(1, utf8.offset(name, MAX_NAME + 1) - 1)
  end
  return name
end

-- Cut s to at most n bytes without splitting a UTF-8 character.
local function cut(s, n)
  if #s <= n then return s end
  local i = n + 1
  while i > 1 and (s:byte(i) or 0) & 0xC0 == 0x80 do i = i - 1 end
  return s:sub(1, i - 1)
end

local function join(req)
  local name = name_of(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      room:add(ch, name)
      ch:send(object("type", "welcome", "name", name, "count", #room,
        "history", history))
      room:broadcast(object("type", "join", "name", name, "count", #room),
        { except = ch })
    end,
    on_message = function(_, text, binary)
      if binary or text == "" then return end
      local message = object("type", "message", "name", name,
        "text", cut(text, MAX_TEXT), "time", os.time())
      history[#history + 1] = message
      if #history > HISTORY then table.remove(history, 1) end
      room:broadcast(message)
    end,
    -- the channel has left the room by the time on_close runs
    on_close = function()
      room:broadcast(object("type", "leave", "name", name, "count", #room))
    end,
  })
end

local function text(status, body, headers)
  headers = headers or {}
  headers["content-type"] = "text/plain; charset=utf-8"
  return { status = status, headers = headers, body = body }
end

-- Everything but the WebSocket is a file under public/ or not found; the
-- page revalidates on each load (max_age = 0: a 304 when it is unchanged).
local function app(req)
  if req.uri == "/ws" then
    if req.websocket then return join(req) end
    return text(426, "/ws is the chat's WebSocket; open / instead\n",
      { upgrade = "websocket" })
  elseif req.request_method ~= "get" and req.request_method ~= "head" then
    return text(405, "method not allowed\n", { allow = "GET, HEAD" })
  end
  return text(404, "not found\n")
end

return static.wrap(app, PUBLIC, { max_age = 0 })
