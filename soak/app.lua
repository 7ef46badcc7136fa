-- The soak test's server (soak/README.md): every answer is a function of
-- what the client sent, so the driver (soak/driver.js) can check it byte
-- for byte; every channel's on_open and on_close are counted; every
-- on_error is counted and logged on stderr with the class of client that
-- caused it (the `c` query parameter: g = well-behaved, l = tests a limit,
-- x = chaos).
--
--   build/ringlet soak/app.lua --port 0 --ip 127.0.0.1
--
-- GET  /k/ID/N              a body made from ID and N (kbody)
-- GET  /slow?ms=M&id=&n=    the same after ringlet.sleep(M)
-- POST /up                  echoes the body (max_body = 1 MiB; the core
--                           answers 413 past it)
-- GET  /big?n=BYTES         a BYTES-long body of a known pattern
-- GET  /bigstream?n=&size=  an iterator body: n chunks of size bytes
-- GET  /stream?id=&n=&gap=  an HTTP stream channel: n numbered lines, one
--                           every gap ms; a member of the group meanwhile
-- GET  /poll                a long poll: a member of the group until the
--                           next broadcast answers it
-- POST /publish             a broadcast now; answers its number
-- GET  /ws (upgrade)        echo; "PUSH n size" sends n numbered messages;
--                           a member of the group
-- GET  /stats, GET /gc      counts as JSON; /gc collects garbage first
--
-- The group "all" gets a numbered broadcast every 100 ms while it has
-- members (so the process can exit once a stop closed them all).

local ringlet = require "ringlet"

local MAX_BODY = 1048576
local MAX_WS = 1048576
local TICK = 100

local all = ringlet.group()

local stats = {
  made = 0, opened = 0, closed = 0,
  open_twice = 0, close_twice = 0, close_unopened = 0,
  live = 0, by_kind = {}, errors = {}, handler_errors = 0,
  broadcasts = 0, deliveries = 0, requests = 0,
  push_refused = 0,
}
local live = {} -- channel id -> kind, while open

local function bump(t, k, n) t[k] = (t[k] or 0) + (n or 1) end

-- ---- the bodies the driver predicts ------------------------------------

local function kbody(id, n)
  local unit = ("k/%d/%d;"):format(id, n)
  local len = (n * 131 + id * 7) % 4000 + 1
  return unit:rep(len // #unit + 1):sub(1, len)
end

local function bline(s) -- broadcast number s
  return ("B %d %s\n"):format(s, string.char(97 + s % 26):rep(s % 300))
end

local function sline(id, i) -- stream line i of stream id
  return ("S %d %d %s\n"):format(id, i,
    string.char(65 + i % 26):rep((i * 17 + id) % 500))
end

local function pmsg(k, size) -- pushed message k
  local head = ("P %d "):format(k)
  return head .. string.char(97 + k % 26):rep(size - #head)
end

local function big(n) -- made afresh each time (a cache would stay in the heap)
  return ("0123456789abcdef"):rep(n // 16 + 1):sub(1, n)
end

local function qchunk(i, size)
  local head = ("Q%08d"):format(i)
  return head .. string.char(97 + i % 26):rep(size - #head)
end

-- ---- broadcasts --------------------------------------------------------

local seq = 0
local ticking = false

local function broadcast_next()
  seq = seq + 1
  stats.broadcasts = stats.broadcasts + 1
  stats.deliveries = stats.deliveries + all:broadcast(bline(seq))
  return seq
end

local function tick()
  if #all == 0 then
    ticking = false
    return
  end
  broadcast_next()
  ringlet.timer(TICK, tick)
end

local function join(ch)
  all:add(ch)
  if not ticking then
    ticking = true
    ringlet.timer(TICK, tick)
  end
end

-- ---- channels, counted -------------------------------------------------

local nextid = 0

local function errkind(err)
  -- the text without numbers, so errors group by kind
  return (tostring(err):gsub("%d+", "N"))
end

-- as_channel with on_open/on_close/on_error wrapped to count them.
local function channel(req, kind, class, opts)
  nextid = nextid + 1
  local id = nextid
  local st = 0 -- 0 made, 1 open, 2 closed
  stats.made = stats.made + 1
  bump(stats.by_kind, kind .. ".made")
  local on_open, on_close = opts.on_open, opts.on_close
  opts.on_open = function(ch)
    if st ~= 0 then
      stats.open_twice = stats.open_twice + 1
      io.stderr:write(("soak: BUG on_open twice id=%d kind=%s\n")
        :format(id, kind))
    end
    st = 1
    stats.opened = stats.opened + 1
    stats.live = stats.live + 1
    live[id] = kind
    bump(stats.by_kind, kind .. ".opened")
    if on_open then on_open(ch) end
  end
  opts.on_close = function(ch, info)
    if st == 1 then
      st = 2
      stats.closed = stats.closed + 1
      stats.live = stats.live - 1
      live[id] = nil
      bump(stats.by_kind, kind .. ".closed")
      if info and info.code then
        bump(stats.by_kind, ("%s.%s.close.%d.%s"):format(kind, class,
          info.code, info.initiator or "?"))
      end
    elseif st == 2 then
      stats.close_twice = stats.close_twice + 1
      io.stderr:write(("soak: BUG on_close twice id=%d kind=%s\n")
        :format(id, kind))
    else
      st = 2
      stats.close_unopened = stats.close_unopened + 1
      bump(stats.by_kind, kind .. ".close_unopened")
    end
    if on_close then on_close(ch, info) end
  end
  opts.on_error = function(_, err)
    bump(stats.errors, class .. " " .. kind .. ": " .. errkind(err))
    io.stderr:write(("soak: on_error class=%s kind=%s id=%d: %s\n")
      :format(class, kind, id, tostring(err)))
  end
  return ringlet.as_channel(req, opts)
end

-- ---- JSON for /stats ---------------------------------------------------

local function json(v)
  local t = type(v)
  if t == "table" then
    local parts = {}
    for k, x in pairs(v) do
      parts[#parts + 1] = ("%q:%s"):format(tostring(k), json(x))
    end
    table.sort(parts)
    return "{" .. table.concat(parts, ",") .. "}"
  elseif t == "string" then
    return ("%q"):format(v):gsub("\\\n", "\\n")
  elseif t == "number" then
    return ("%.17g"):format(v)
  else
    return tostring(v)
  end
end

local function query(req)
  local q = {}
  for k, v in (req.query_string or ""):gmatch("([^&=]+)=([^&]*)") do
    q[k] = v
  end
  return q
end

local function text(status, body)
  return { status = status,
           headers = { ["content-type"] = "text/plain" }, body = body }
end

-- ---- the handler -------------------------------------------------------

local function handler(req)
  stats.requests = stats.requests + 1
  local uri, method = req.uri, req.request_method
  local q = query(req)
  local class = q.c or "g"

  if req.websocket then
    return channel(req, "ws", class, {
      on_open = join,
      on_message = function(ch, msg, binary)
        if not binary and msg:sub(1, 5) == "PUSH " then
          local n, size = msg:match("^PUSH (%d+) (%d+)$")
          for k = 0, tonumber(n) - 1 do
            if not ch:send(pmsg(k, tonumber(size))) then
              stats.push_refused = stats.push_refused + 1
              break
            end
          end
        else
          ch:send(msg, { binary = binary })
        end
      end,
    })
  end

  local id, n = uri:match("^/k/(%d+)/(%d+)$")
  if id then
    return text(200, kbody(tonumber(id), tonumber(n)))
  elseif uri == "/up" and method == "post" then
    return { status = 200,
             headers = { ["content-type"] = "application/octet-stream" },
             body = req.body or "" }
  elseif uri == "/slow" then
    ringlet.sleep(tonumber(q.ms) or 0)
    return text(200, kbody(tonumber(q.id) or 0, tonumber(q.n) or 0))
  elseif uri == "/big" then
    return text(200, big(tonumber(q.n) or 1048576))
  elseif uri == "/bigstream" then
    local count, size = tonumber(q.n) or 64, tonumber(q.size) or 65536
    local i = -1
    return { status = 200, headers = { ["content-type"] = "text/plain" },
             body = function()
               i = i + 1
               if i < count then return qchunk(i, size) end
             end }
  elseif uri == "/stream" then
    local sid, count, gap = tonumber(q.id) or 0, math.max(2, tonumber(q.n) or 10),
      tonumber(q.gap) or 0
    local resp
    resp = channel(req, "stream", class, {
      on_open = function(ch)
        ch:send(sline(sid, 0))
        join(ch)
        local i = 1
        local function step()
          while i < count and ch:is_open() do
            ch:send(sline(sid, i), { close = i == count - 1 })
            i = i + 1
            if gap > 0 then
              if i < count then ringlet.timer(gap, step) end
              return
            end
          end
        end
        step()
      end,
    })
    resp.headers = { ["content-type"] = "text/plain" }
    return resp
  elseif uri == "/poll" then
    local resp = channel(req, "poll", class, { on_open = join })
    resp.headers = { ["content-type"] = "text/plain" }
    return resp
  elseif uri == "/publish" and method == "post" then
    return text(200, "published " .. broadcast_next())
  elseif uri == "/stats" or uri == "/gc" then
    if uri == "/gc" then
      collectgarbage("collect")
      collectgarbage("collect")
    end
    local s = {}
    for k, v in pairs(stats) do s[k] = v end
    local kinds = {}
    for _, kind in pairs(live) do bump(kinds, kind) end
    s.live_by_kind = kinds
    s.group_members = #all
    s.seq = seq
    s.lua_kib = collectgarbage("count")
    return { status = 200,
             headers = { ["content-type"] = "application/json" },
             body = json(s) }
  end
  return text(404, "not found\n")
end

return {
  handler = handler,
  options = { max_body = MAX_BODY, max_ws = MAX_WS, header_timeout = 10000 },
}
