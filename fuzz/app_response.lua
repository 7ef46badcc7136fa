-- The server side of fuzz_response: the handler decodes its response table
-- from the fuzzer's bytes (FZ_INPUT, read in order by every request of the
-- input) and records what the wire must then carry; check(results) compares
-- that with the responses the client parsed (fuzz_response.c, llhttp in
-- response mode). fuzz_trap on a difference.
--
-- Each response is decoded as: the handler's way to answer (a table, an
-- error, nothing), the status (absent, a common one, any 16- or 64-bit
-- integer, a string, a float, another type), the headers (absent, not a
-- table, or names and values: common ones, raw bytes, numbers, arrays,
-- other types, CR/LF/NUL), the body (nil, a string, a big string, an array
-- of strings, an iterator that ends or fails, a file with a position and
-- an optional Content-Length, a closed file, a channel with a list of
-- sends, another type, a Ring listener).
-- luacheck: read globals fuzz_trap
local ringlet = require "ringlet"
local trap = fuzz_trap

local S, pos = "", 1
local expect = {}

local function byte()
  local b = S:byte(pos)
  if b then
    pos = pos + 1
    return b
  end
  return 0
end

local function bytes(n)
  local s = S:sub(pos, pos + n - 1)
  pos = pos + #s
  return s
end

local function pick(list) return list[byte() % #list + 1] end

-- ---- statuses --------------------------------------------------------------

local STATUSES = { 200, 201, 204, 206, 301, 304, 400, 404, 426, 500, 503,
  100, 101, 102, 103, 199, 299, 999, 1000, 99, 0, -200, 600, 900 }

local function decode_status()
  local k = byte() % 8
  if k == 0 then return nil end
  if k == 1 then return pick(STATUSES) end
  if k == 2 then return byte() << 8 | byte() end
  if k == 3 then return (string.unpack("<i8", bytes(8) .. ("\0"):rep(8))) end
  if k == 4 then return (byte() + 1) << 32 | pick(STATUSES) & 0xffffffff end
  if k == 5 then
    return pick({ "%d", " %d ", "%d.0", "0x%x", "%de0", "%d "
                }):format(pick(STATUSES))
  end
  if k == 6 then return pick(STATUSES) + pick({ 0.0, 0.5, -0.0 }) end
  return pick({ true, "abc", {}, "200x", "", print })
end

-- The status the core takes from v: an integer from 100 to 999, else nil.
-- (An answer's must be final, 200-999: a 1xx is a 500, see final.)
local function status_of(v)
  if v == nil then return 200 end
  local n = math.tointeger(v)
  if n and n >= 100 and n <= 999 then return n end
  return nil
end

-- A status the core sends as the answer: 200-999.
local function final(st)
  return st ~= nil and st >= 200
end

-- ---- headers ---------------------------------------------------------------

local NAMES = { "content-type", "Content-Length", "content-length",
  "Transfer-Encoding", "transfer-encoding", "Connection", "connection",
  "Upgrade", "Date", "date", "Set-Cookie", "x-a", "Location",
  "Cache-Control", "Vary", "Trailer", "Keep-Alive", "Content-Encoding",
  "ETag", "Sec-WebSocket-Accept", "Host", "TE", "Expect", "CONTENT-LENGTH" }
local VALUES = { "text/plain", "close", "keep-alive", "Upgrade", "websocket",
  "chunked", "0", "5", "100", "-1", "12abc", "", " ", "a\r\nInjected: yes",
  "a\0b", "a\rb", "a\nb", "\t x \t", "gzip, chunked", "Close, Upgrade", "1e3",
  "18446744073709551616", "Thu, 01 Jan 1970 00:00:00 GMT", "\xc3\xa9", "\127",
  "\1", "upgrade, close", "007" }

local function decode_name()
  local k = byte() % 5
  if k == 0 or k == 1 then return pick(NAMES) end
  if k == 2 then return bytes(byte() % 16) end
  if k == 3 then
    local n = pick(NAMES)
    local at = byte() % (#n + 1)
    return n:sub(1, at) .. string.char(byte()) .. n:sub(at + 1)
  end
  return pick({ 1, 2.5, true, "" })
end

local function decode_scalar()
  local k = byte() % 6
  if k <= 1 then return pick(VALUES) end
  if k == 2 then return bytes(byte() % 32) end
  if k == 3 then return byte() - 128 end
  if k == 4 then return pick({ 1.5, 1e300, -0.0, math.huge, 0 / 0, 2 ^ 63 }) end
  return pick({ true, false, {}, print })
end

local function decode_value()
  if byte() % 4 ~= 0 then return decode_scalar() end
  local t = {}
  for i = 1, byte() % 4 do t[i] = decode_scalar() end
  return t
end

local function decode_headers()
  local k = byte() % 8
  if k <= 1 then return nil end
  if k == 2 then return pick({ "content-type: x", 5, true }) end
  local h = {}
  for _ = 1, byte() % 6 do
    local name = decode_name()
    h[name] = decode_value()
  end
  return h
end

local TCHAR = "^[%w!#$%%&'*+%-.^_`|~]+$"

-- RFC 9110 5.5: no control byte but HTAB in a value
local function value_ok(v)
  local t = type(v)
  if t ~= "string" and t ~= "number" then return false end
  return not tostring(v):find("[%z\1-\8\10-\31\127]")
end

-- put_headers (response.c) takes the table, or fails.
local function headers_ok(h)
  if h == nil then return true end
  if type(h) ~= "table" then return false end
  for name, v in pairs(h) do
    if type(name) ~= "string" or not name:find(TCHAR) then return false end
    if type(v) == "table" then
      for i = 1, #v do
        if not value_ok(v[i]) then return false end
      end
    elseif not value_ok(v) then
      return false
    end
  end
  return true
end

-- ring.c's user_length: the Content-Length a file body is limited to.
local function user_length(h)
  local n = -1
  for name, v in pairs(h or {}) do
    if type(name) == "string" and #name == 14
        and name:lower() == "content-length" then
      if type(v) == "number" then
        local i = math.tointeger(v)
        n = i and i >= 0 and i or -1
      elseif type(v) == "string" then
        n = (#v > 0 and #v <= 18 and v:find("^%d+$")) and tonumber(v) or -1
      end
    end
  end
  return n
end

-- ---- bodies ------------------------------------------------------------------

local function pieces(max)
  local t = {}
  for i = 1, byte() % max do t[i] = bytes(byte() % 50) end
  return t
end

-- An iterator over t; fails at the end when bad (an error or a number).
local function iterator(t, bad, sleep)
  local i = 0
  return function()
    i = i + 1
    if sleep and i % 2 == 0 then ringlet.sleep(0) end
    if t[i] then return t[i] end
    if bad == 1 then error("iterator failed") end
    if bad == 2 then return 42 end
    return nil
  end
end

local function tmpfile(content)
  local f = assert(io.tmpfile())
  f:write(content)
  f:flush()
  return f
end

-- The sends of a channel, done in its on_open; each may raise.
local function decode_channel(req, e)
  local steps, streamed = {}, false
  for i = 1, byte() % 6 do
    local k = byte() % 9
    local close = byte() % 4 == 0
    local step
    if k == 0 then
      step = { bytes(byte() % 60) }
    elseif k == 1 then
      step = { pieces(4) }
    elseif k == 2 then
      local m = { status = decode_status(), headers = decode_headers() }
      if byte() % 2 == 0 then m.body = bytes(byte() % 40) end
      local st = status_of(m.status)
      if final(st) then e.statuses[st] = true end
      step = { m }
    elseif k == 3 then
      local b = byte() % 3
      step = { iterator(pieces(4), b) }
      if b ~= 0 then e.cut_ok = true end
      streamed = true
    elseif k == 4 then
      local f = tmpfile(bytes(byte() % 100))
      f:seek("set", byte() % 8)
      step = { f }
      streamed = true
    elseif k == 5 then
      -- closing while a file or an iterator is still being sent cuts it
      step = { close = true }
      if streamed then e.cut_ok = true end
    elseif k == 6 then
      step = { pick({ 42, true }) }
    elseif k == 7 then
      step = { nil, nil, { ping = true } }
    else
      step = { bytes(byte() % 20), nil, { binary = true } }
    end
    if close and not step.close then step[3] = { close = true } end
    steps[i] = step
  end
  local resp = ringlet.as_channel(req, {
    timeout = 1000, -- a safety net: every channel ends below
    on_open = function(ch)
      for _, step in ipairs(steps) do
        if step.close then
          pcall(ch.close, ch)
        else
          pcall(ch.send, ch, step[1], step[3])
        end
      end
      -- the end, after any stream still being sent; a head the last send
      -- cannot write (bad headers) is the close's to answer (a 500)
      if not pcall(ch.send, ch, "", { close = true }) then pcall(ch.close, ch) end
    end,
  })
  if byte() % 4 == 0 then resp.status = decode_status() end
  if byte() % 4 == 0 then resp.headers = decode_headers() end
  local st = status_of(resp.status)
  if not st then
    e.statuses = { [500] = true } -- refused before the channel attaches
  elseif not final(st) then
    e.statuses[500] = true -- no head can be written with it
  else
    e.statuses[st] = true
    e.statuses[500] = true -- a head the channel could not write
  end
  return resp
end

-- Decode one response into resp and what the wire must carry into e.
local function decode_response(req, e)
  local resp = { status = decode_status(), headers = decode_headers() }
  local st = status_of(resp.status)
  local ok = final(st) and headers_ok(resp.headers)
  local body -- the body the wire must carry, when known
  local k = byte() % 14
  if k == 0 then
    body = ""
  elseif k == 1 then
    resp.body = bytes(byte() + (byte() % 4) * 256)
    body = resp.body
  elseif k == 2 then
    resp.body = ("z"):rep(byte() * 997)
    body = resp.body
  elseif k == 3 then
    resp.body = pieces(5)
    body = table.concat(resp.body)
  elseif k == 4 then
    resp.body = { "a", pick({ 5, true, {} }) }
    ok = false
  elseif k == 5 or k == 6 then
    local t = pieces(5)
    local bad = k == 6 and byte() % 3 or 0
    resp.body = iterator(t, bad, byte() % 2 == 0)
    if bad == 0 then body = table.concat(t) else e.cut_ok = true end
  elseif k == 7 or k == 8 then
    local content = bytes(byte() + (byte() % 2) * 256)
    local f = tmpfile(content)
    local off = byte() % (#content + 3)
    f:seek("set", off)
    resp.body = f
    local left = math.max(#content - off, 0)
    local want = ok and user_length(resp.headers) or -1
    if want >= 0 and want < left then left = want end
    body = content:sub(off + 1, off + left)
  elseif k == 9 then
    local f = tmpfile("gone")
    f:close()
    resp.body = f
    ok = false
  elseif k == 10 or k == 11 then
    return decode_channel(req, e)
  elseif k == 12 then
    resp.body = pick({ 42, true, coroutine.create(print) })
    ok = false
  else
    -- a Ring listener for a plain request: the core's own 426 (the
    -- handler's headers need only be a table)
    local l = byte() % 2 == 0 and {} or "not a table"
    resp["ring.websocket/listener"] = l
    ok = st ~= nil and type(l) == "table"
      and (resp.headers == nil or type(resp.headers) == "table")
    st, body = 426, "this resource speaks WebSocket only\n"
  end
  if ok then
    e.statuses[st] = true
    if e.head or st < 200 or st == 204 or st == 304 then body = "" end
    e.body = body
  else
    e.statuses[500] = true
  end
  return resp
end

local function handler(req)
  local i = tonumber(req.uri:match("^/(%d+)$"))
  if req.uri == "/__alive" then return { body = "alive" } end
  if not i then trap("a request the client did not send: " .. req.uri) end
  local e = { statuses = {}, head = req.request_method == "head" }
  expect[i + 1] = e
  local how = byte() % 16
  if how == 0 then
    e.statuses[500] = true
    error("the handler failed")
  elseif how == 1 then
    e.statuses[500] = true
    return pick({ false, "a string", 42 })
  end
  return decode_response(req, e)
end

local function fmt_set(set)
  local t = {}
  for s in pairs(set) do t[#t + 1] = tostring(s) end
  table.sort(t)
  return table.concat(t, ",")
end

local function check(res, nreq)
  local function fail(i, what)
    trap(("response %d of %d: %s"):format(i, nreq, what))
  end
  for i = 1, nreq do
    local r, e = res[i], expect[i]
    if r and not e then fail(i, "a response to a request never handled") end
    if r then
      if not e.statuses[r.status] then
        fail(i, ("status %d, expected one of %s"):format(r.status,
          fmt_set(e.statuses)))
      end
      if e.body and r.status ~= 500 and r.body ~= e.body then
        fail(i, ("a body of %d bytes, expected %d"):format(#r.body, #e.body))
      end
      if r.upgrade then return end -- llhttp stops at a 101
    elseif i == #res + 1 and res.partial then
      if not (e and e.cut_ok) then fail(i, "cut short") end
      return
    else
      -- no response: only after one that closed the connection, or whose
      -- body failed (the connection is cut after it, HEAD's too)
      local prev, pe = res[i - 1], expect[i - 1]
      if not (prev and (not prev.keep or pe.cut_ok)) then
        fail(i, "missing" .. (prev and "" or " (no response at all)"))
      end
      return
    end
  end
  if #res > nreq then fail(#res, "more responses than requests") end
end

local server
return {
  start = function()
    server = assert(ringlet.run_server(handler, {
      ip = "127.0.0.1", port = 0, header_timeout = 0 }))
    return server.port
  end,
  reset = function(input)
    S, pos, expect = input, 1, {}
  end,
  check = check,
}
