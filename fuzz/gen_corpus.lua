-- Writes the seed corpora, fuzz/corpus/<target>/ (run from the repository's
-- root: lua5.4 fuzz/gen_corpus.lua). The files it makes are committed; run
-- it again after the specs gain raw requests or the input formats change
-- (it removes the old seeds first).
--
--   http       the raw requests the specs send (string literals, and their
--              concatenations and :rep()s, in spec/*_spec.lua that hold
--              "HTTP/1." and a CRLF), whole and split, under a few
--              configurations; and hand-made ones (chunked bodies, upgrades)
--   proxy      the specs' PROXY lines and hand-made ones, before a request
--   websocket  frames after the handshake, raw and described, modeled on
--              spec/websocket_spec.lua's cases
--   response   handler results of every kind (app_response.lua's format)
--   client     answers a server gives ringlet.client: framings, limits,
--              redirects, informational heads, WebSocket handshakes (with
--              "@ACCEPT@") and frames (app_client.lua's calls)
--
-- Each target's input format is described at the top of its fuzz_*.c.

local ROOT = "fuzz/corpus"
local written = {}

local function write(target, name, bytes)
  bytes = bytes:sub(1, 8192) -- a long seed would raise libFuzzer's max_len
  local dir = ROOT .. "/" .. target
  local path = ("%s/%s"):format(dir, name)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
  written[target] = (written[target] or 0) + 1
end

local function reset(target)
  local dir = ROOT .. "/" .. target
  os.execute("mkdir -p " .. dir .. " && rm -f " .. dir .. "/*")
end

local function c(...) return string.char(...) end

-- ---- string literals in Lua source ----------------------------------------

-- The literal or ("literal"):rep(n) at i: its value and where it ends.
local function piece(src, i)
  local q = src:sub(i, i)
  if q == '"' or q == "'" then
    local j = i + 1
    while j <= #src do
      local ch = src:sub(j, j)
      if ch == "\\" then
        j = j + 2
      elseif ch == q then
        local ok, v = pcall(load("return " .. src:sub(i, j)))
        if ok and type(v) == "string" then return v, j + 1 end
        return nil
      elseif ch == "\n" then
        return nil
      else
        j = j + 1
      end
    end
    return nil
  end
  local eq = src:match("^%[(=*)%[", i)
  if eq then
    local close = "]" .. eq .. "]"
    local j = src:find(close, i, true)
    if not j then return nil end
    local ok, v = pcall(load("return " .. src:sub(i, j + #close - 1)))
    if ok then return v, j + #close end
    return nil
  end
  if q == "(" then
    local v, j = piece(src, i + 1)
    if v then
      local n, k = src:match("^%):rep%((%d+)%)()", j)
      if n then return v:rep(math.min(tonumber(n), 5000)), k end
    end
  end
  return nil
end

local function skip_space(src, i)
  while true do
    local j = src:match("^%s+()", i) or i
    if src:sub(j, j + 1) == "--" then
      j = src:match("^%-%-[^\n]*()", j)
    end
    if j == i then return i end
    i = j
  end
end

-- Every group of literals joined by "..": their concatenations.
local function literal_groups(src)
  local groups, i = {}, 1
  while i <= #src do
    if src:sub(i, i + 1) == "--" and not src:match("^%-%-%[=*%[", i) then
      i = src:match("^%-%-[^\n]*()", i)
    else
      local v, j = piece(src, i)
      if v then
        local parts = { v }
        while true do
          local k = skip_space(src, j)
          if src:sub(k, k + 1) ~= ".." then break end
          local w, l = piece(src, skip_space(src, k + 2))
          if not w then break end
          parts[#parts + 1] = w
          j = l
        end
        groups[#groups + 1] = table.concat(parts)
        i = j
      else
        i = i + 1
      end
    end
  end
  return groups
end

local function spec_strings(pred)
  local out, seen = {}, {}
  local files = {}
  for name in io.popen("ls spec/*_spec.lua"):lines() do files[#files + 1] = name end
  table.sort(files)
  for _, name in ipairs(files) do
    local f = assert(io.open(name, "rb"))
    local src = f:read("a")
    f:close()
    for _, s in ipairs(literal_groups(src)) do
      if pred(s) and not seen[s] then
        seen[s] = true
        out[#out + 1] = s
      end
    end
  end
  return out
end

-- ---- http -----------------------------------------------------------------

local GET = "GET /p HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"

reset("http")
local reqs = spec_strings(function(s)
  return s:find("HTTP/1%.") and s:find("\r\n", 1, true)
    and not s:find("^PROXY ")
end)
-- configurations (app_http.lua): 0 defaults; 5 max_body 16, max_line 64;
-- 3 max_body 1000; 32 body_file; 64 access_log file; 128 access_log function
local CFGS = { 5, 3, 32, 64, 128, 0x25 }
for n, s in ipairs(reqs) do
  write("http", ("spec-%03d"):format(n), c(0, 0) .. s)
  write("http", ("spec-%03d-split"):format(n), c(CFGS[n % #CFGS + 1], n % 127 + 1) .. s)
end
local function chunked(parts)
  local out = {}
  for _, p in ipairs(parts) do out[#out + 1] = ("%x\r\n%s\r\n"):format(#p, p) end
  return table.concat(out) .. "0\r\n\r\n"
end
local hand = {
  ["post-chunked"] = "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    .. chunked({ "hello", " world", ("x"):rep(40) }),
  ["post-chunked-trailer"] = "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    .. "5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n" .. GET,
  ["post-length-pipelined"] = "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
    .. "GET /iter HTTP/1.1\r\nHost: h\r\n\r\nHEAD /chan HTTP/1.1\r\nHost: h\r\n\r\n" .. GET,
  ["expect-continue"] = "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
    .. "Expect: 100-continue\r\n\r\nhello",
  ["http10-keepalive"] = "GET /iter HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    .. "GET /chan HTTP/1.0\r\n\r\n",
  ["upgrade-then-frames"] = "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
    .. "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    .. "Sec-WebSocket-Version: 13\r\n\r\n" .. c(0x81, 0x82, 1, 2, 3, 4, 0x69, 0x6b),
  ["absolute-form"] = "GET http://example.com:8080/a?b=c HTTP/1.1\r\nHost: x\r\n\r\n"
    .. "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
  ["headers-folded-repeated"] = "GET /echo HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\n"
    .. "X-Fold: a\r\n  b\r\nReferer: r\r\nUser-Agent: u\r\n\r\n",
  ["http12"] = "GET / HTTP/1.2\r\nHost: h\r\n\r\n",
}
local names = {}
for name in pairs(hand) do names[#names + 1] = name end
table.sort(names)
for i, name in ipairs(names) do
  write("http", "hand-" .. name, c(0, 0) .. hand[name])
  write("http", "hand-" .. name .. "-split", c(CFGS[i % #CFGS + 1], 0x80 + i) .. hand[name])
end

-- ---- proxy ------------------------------------------------------------------

reset("proxy")
local lines = spec_strings(function(s) return s:find("^PROXY ") end)
for _, l in ipairs({ "PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n",
    "PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n", "PROXY UNKNOWN\r\n",
    "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", "PROXY TCP4 nonsense\r\n",
    "PROXY TCP4 999.1.1.1 192.0.2.1 1 2\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 -1 99999\r\n",
    "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
    "PROXY " .. ("x"):rep(120) .. "\r\n", "PROXY", "PROX" }) do
  lines[#lines + 1] = l
end
for n, l in ipairs(lines) do
  local req = l:find("HTTP/1%.") and "" or GET
  write("proxy", ("line-%02d"):format(n), c(0, 0) .. l .. req)
  write("proxy", ("line-%02d-optional-split"):format(n), c(8 + 32, n % 127 + 1) .. l .. req)
end
write("proxy", "optional-without", c(8, 0) .. GET)
write("proxy", "log-function", c(64, 0) .. "PROXY TCP4 203.0.113.7 192.0.2.1 1 2\r\n"
  .. "GET /echo?q HTTP/1.1\r\nHost: h\r\nReferer: \"r\"\r\nUser-Agent: \\u\r\n\r\n")

-- ---- websocket ----------------------------------------------------------------

local OP = { CONT = 0, TEXT = 1, BINARY = 2, CLOSE = 8, PING = 9, PONG = 10 }

-- A client frame: opts.fin (true), opts.mask (true), opts.rsv, opts.len_form
-- (7, 16, 64), opts.len (the length written instead of #payload).
local function frame(op, payload, opts)
  opts = opts or {}
  local fin = opts.fin == false and 0 or 0x80
  local b = { c(fin | (opts.rsv or 0) << 4 | op) }
  local n = opts.len or #payload
  local form = opts.len_form or (opts.len and 64)
    or (n < 126 and 7 or n < 65536 and 16 or 64)
  local m = opts.mask == false and 0 or 0x80
  if form == 7 then
    b[2] = c(m | n)
  elseif form == 16 then
    b[2] = c(m | 126) .. string.pack(">I2", n)
  else
    b[2] = c(m | 127) .. string.pack(">i8", n)
  end
  if m == 0 then return table.concat(b) .. payload end
  local key = { 0x37, 0xfa, 0x21, 0x3d }
  b[3] = c(table.unpack(key))
  local out = {}
  for i = 1, #payload do out[i] = c(payload:byte(i) ~ key[(i - 1) % 4 + 1]) end
  return table.concat(b) .. table.concat(out)
end

-- The same frames in fuzz_websocket's description (structured mode).
local function described(frames)
  local out = {}
  for _, f in ipairs(frames) do
    local op, payload, opts = f[1], f[2], f[3] or {}
    local a = (opts.fin == false and 0 or 0x80) | (opts.rsv or 0) << 4 | op
    local n = #payload
    local form = opts.len and 3 or opts.len_form == 16 and 1 or opts.len_form == 64 and 2 or 0
    local b = (opts.mask == false and 0x80 or 0) | form << 5 | (n & 31)
    out[#out + 1] = c(a, b, n >> 5)
    if opts.len then out[#out + 1] = string.pack(">i8", opts.len) end
    out[#out + 1] = payload
  end
  return table.concat(out)
end

reset("websocket")
local ws_cases = {
  echo = { { OP.TEXT, "hello" }, { OP.BINARY, "\0\1\2\255" }, { OP.CLOSE, "\3\232bye" } },
  fragments = { { OP.TEXT, "a\xE2", { fin = false } }, { OP.PING, "p" },
    { OP.CONT, "\x82\xAC", { fin = false } }, { OP.CONT, "b" } },
  utf8_valid = { { OP.TEXT, "\x7F\xC2\x80\xDF\xBF\xE0\xA0\x80\xEF\xBF\xBF"
    .. "\xF0\x90\x80\x80\xF4\x8F\xBF\xBF" } },
  utf8_surrogate = { { OP.TEXT, "\xED\xA0\x80" } },
  utf8_overlong = { { OP.TEXT, "\xC0\x80" } },
  utf8_split_bad = { { OP.TEXT, "\xF4", { fin = false } }, { OP.CONT, "\x90\x80\x80" } },
  utf8_truncated = { { OP.TEXT, "abc\xE2\x82", { fin = false } }, { OP.CONT, "" } },
  rsv = { { OP.TEXT, "x", { rsv = 4 } } },
  unmasked = { { OP.TEXT, "x", { mask = false } } },
  reserved_opcode = { { 3, "" }, { 11, "" } },
  cont_first = { { OP.CONT, "x" } },
  text_in_fragmented = { { OP.TEXT, "a", { fin = false } }, { OP.TEXT, "b" } },
  big_ping = { { OP.PING, ("p"):rep(126) } },
  fragmented_ping = { { OP.PING, "p", { fin = false } }, { OP.CONT, "q" } },
  close_one_byte = { { OP.CLOSE, "\3" } },
  close_bad_code = { { OP.CLOSE, "\3\237r" } },
  close_no_code = { { OP.CLOSE, "" } },
  close_bad_reason = { { OP.CLOSE, "\3\232\xFF" } },
  len16_short = { { OP.TEXT, "short", { len_form = 16 } } },
  len64_short = { { OP.BINARY, ("x"):rep(200), { len_form = 64 } } },
  len64_top = { { OP.BINARY, "", { len = math.mininteger } } },
  len_huge = { { OP.BINARY, "abc", { len = 5000000 } } },
  message_1025 = { { OP.BINARY, ("m"):rep(1025) } },
  fragments_1025 = { { OP.TEXT, ("m"):rep(600), { fin = false } }, { OP.CONT, ("m"):rep(425) } },
  medium = { { OP.TEXT, ("0123456789"):rep(30) }, { OP.PONG, "unsolicited" } },
  commands = { { OP.TEXT, "?ping me" }, { OP.TEXT, "^pong" }, { OP.TEXT, "*twice" },
    { OP.BINARY, "~iter" }, { OP.TEXT, "#last" } },
  close_command = { { OP.TEXT, "!\3\232reason" } },
  close_command_bad = { { OP.TEXT, "!\0\1" } },
}
names = {}
for name in pairs(ws_cases) do names[#names + 1] = name end
table.sort(names)
for i, name in ipairs(names) do
  local raw = {}
  for _, f in ipairs(ws_cases[name]) do raw[#raw + 1] = frame(f[1], f[2], f[3]) end
  raw = table.concat(raw)
  -- cfg: bits 0-1 max_ws (1000 for the 1025-byte cases), bit 2 with the
  -- handshake, bit 3 described
  local ws = name:find("1025") and 2 or i % 4
  write("websocket", name, c(ws, 0) .. raw)
  write("websocket", name .. "-split", c(ws | 4, i % 127 + 1) .. raw)
  write("websocket", name .. "-described", c(ws | 8, 0) .. described(ws_cases[name]))
end

-- ---- response -------------------------------------------------------------------
-- app_response.lua's decoder, written forwards: byte 0 the requests (bit 0
-- two, bit 1 HTTP/1.0, bits 2-3 HEAD), then per request what its handler
-- reads.

reset("response")
local function str(s, lenbytes)
  if lenbytes == 2 then return c(#s % 256, #s // 256) .. s end
  return c(#s) .. s
end
local ST = { [200] = 0, [201] = 1, [204] = 2, [206] = 3, [301] = 4, [304] = 5, [400] = 6,
  [404] = 7, [426] = 8, [500] = 9, [503] = 10, [100] = 11, [101] = 12, [102] = 13,
  [103] = 14, [199] = 15, [299] = 16, [999] = 17, [1000] = 18, [99] = 19, [0] = 20 }
local function status(s)
  if s == nil then return c(0) end
  if type(s) == "string" then return c(5, 0, ST[tonumber(s)]) end -- "%d"
  if s >= 1 << 32 then return c(4, (s >> 32) - 1, ST[s & 0xffffffff]) end
  if ST[s] then return c(1, ST[s]) end
  return c(2, s >> 8 & 255, s & 255)
end
local NAME = { ["content-type"] = 0, ["Content-Length"] = 1, ["Transfer-Encoding"] = 3,
  Connection = 5, Upgrade = 7, Date = 8, ["Set-Cookie"] = 10, ["x-a"] = 11 }
-- headers: a list of { name, value } (value: a string, or { "raw", bytes })
local function headers(list)
  if list == nil then return c(0) end
  local out = { c(3, #list) }
  for _, h in ipairs(list) do
    out[#out + 1] = c(0, NAME[h[1]])
    if type(h[2]) == "table" then
      out[#out + 1] = c(1, 2) .. str(h[2][2]) -- a scalar of raw bytes
    else
      out[#out + 1] = c(1, 2) .. str(h[2])
    end
  end
  return table.concat(out)
end
local function pieces(t)
  local out = { c(#t) }
  for _, p in ipairs(t) do out[#out + 1] = str(p) end
  return table.concat(out)
end
local B = {
  none = c(0),
  string = function(s) return c(1) .. str(s, 2) end,
  big = function(k) return c(2, k) end,
  array = function(t) return c(3) .. pieces(t) end,
  bad_array = c(4, 0),
  iter = function(t, sleep) return c(5) .. pieces(t) .. c(sleep and 0 or 1) end,
  bad_iter = function(t, how) return c(6) .. pieces(t) .. c(how, 1) end,
  file = function(s, off) return c(7, #s % 256, #s // 256) .. s .. c(off) end,
  closed_file = c(9),
  number = c(12, 0),
  listener = c(13, 0),
}
-- a channel: steps are encoded as decode_channel reads them
local S = {
  send = function(s, close) return c(0, close and 0 or 1) .. str(s) end,
  array = function(t) return c(1, 1) .. pieces(t) end,
  map = function(st, h, body)
    return c(2, 1) .. status(st) .. headers(h) .. (body and c(0) .. str(body) or c(1))
  end,
  iter = function(t, bad) return c(3, 1, bad or 0) .. pieces(t) end,
  file = function(s, off) return c(4, 1) .. str(s) .. c(off) end,
  close = c(5, 1),
  bad = c(6, 1, 0),
}
local function channel(steps, st)
  return c(10, #steps) .. table.concat(steps) .. (st and c(0) .. status(st) or c(1)) .. c(1)
end
local function resp(st, h, body) return c(2) .. status(st) .. headers(h) .. body end

local R = {
  plain = resp(nil, nil, B.string("hello")),
  empty = resp(201, nil, B.none),
  no_content = resp(204, nil, B.string("not sent")),
  not_modified = resp(304, { { "content-type", "text/plain" } }, B.string("x")),
  interim = resp(100, nil, B.string("x")),
  switching = resp(101, nil, B.none),
  odd_status = resp(299, nil, B.string("x")),
  status_999 = resp(999, nil, B.none),
  status_string = resp("404", nil, B.string("nope")),
  status_1000 = resp(1000, nil, B.none),
  status_wide = resp((1 << 34) | 404, nil, B.none),
  headers = resp(nil, { { "content-type", "text/html" }, { "Set-Cookie", "a=1" },
    { "x-a", "b" }, { "Date", "Thu, 01 Jan 1970 00:00:00 GMT" } }, B.string("h")),
  header_crlf = resp(nil, { { "x-a", { "raw", "a\r\nInjected: yes" } } }, B.none),
  header_ctl = resp(nil, { { "x-a", { "raw", "a\1b" } } }, B.none),
  connection_close = resp(nil, { { "Connection", "close" } }, B.string("bye")),
  user_length = resp(nil, { { "Content-Length", "3" } }, B.string("hello")),
  user_te = resp(nil, { { "Transfer-Encoding", "chunked" } }, B.string("hello")),
  big = resp(nil, nil, B.big(100)),
  array = resp(nil, nil, B.array({ "a", "", "bc" })),
  bad_array = resp(nil, nil, B.bad_array),
  iter = resp(nil, nil, B.iter({ "one", "", "two" }, false)),
  iter_sleep = resp(nil, nil, B.iter({ "one", "two", "three" }, true)),
  iter_error = resp(nil, nil, B.bad_iter({ "one" }, 1)),
  iter_number = resp(nil, nil, B.bad_iter({}, 2)),
  file = resp(nil, nil, B.file("0123456789", 2)),
  file_range = resp(206, { { "Content-Length", "4" } }, B.file("0123456789", 3)),
  file_past_end = resp(nil, nil, B.file("abc", 9)),
  closed_file = resp(nil, nil, B.closed_file),
  number_body = resp(nil, nil, B.number),
  listener = resp(nil, nil, B.listener),
  handler_error = c(0),
  handler_nothing = c(1, 0),
  channel_poll = resp(nil, nil, channel({ S.send("whole", true) })),
  channel_stream = resp(nil, nil, channel({ S.send("a"), S.array({ "b", "c" }),
    S.iter({ "d", "e" }), S.file("fghij", 1), S.close })),
  channel_map = resp(nil, nil, channel({ S.map(203, { { "x-a", "m" } }, "mapped") })),
  channel_map_wide = resp(nil, nil, channel({ S.map((1 << 34) | 400, nil, "x") })),
  channel_silent = resp(nil, nil, channel({}, "204")),
  channel_bad = resp(nil, nil, channel({ S.bad, S.iter({ "x" }, 1) })),
}
names = {}
for name in pairs(R) do names[#names + 1] = name end
table.sort(names)
for i, name in ipairs(names) do
  local r = R[name]
  write("response", name, c(0) .. r)
  write("response", name .. "-head", c(4) .. r)
  write("response", name .. "-http10", c(2) .. r)
  -- pipelined behind another response, GET or HEAD, HTTP/1.1 or 1.0
  local other = R[names[i % #names + 1]]
  write("response", name .. "-pipelined", c(1 | (i % 4) << 1 & 2 | (i % 3 == 0 and 8 or 0))
    .. other .. r)
end

-- ---- client -------------------------------------------------------------------

reset("client")
local A = {
  length = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello",
  chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
    .. "6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n",
  close_delimited = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close",
  cut_length = "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort",
  cut_chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc",
  continue = "HTTP/1.1 100 Continue\r\n\r\n"
    .. "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
  no_content = "HTTP/1.1 204 No Content\r\nX-A: 1\r\nX-A: 2\r\n\r\n",
  not_modified = "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
  redirect = "HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n",
  big_header = "HTTP/1.1 200 OK\r\nX-Big: " .. ("v"):rep(600) .. "\r\nContent-Length: 1\r\n\r\nx",
  big_body = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" .. ("b"):rep(100),
  two = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"
    .. "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb",
  garbage = "HTTX/1.1 200 OK\r\n\r\n",
  bad_length = "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\nx",
}
local WS_HEAD = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
  .. "Connection: Upgrade\r\nSec-WebSocket-Accept: @ACCEPT@\r\n\r\n"
local W = {
  ws_text = WS_HEAD .. c(0x81, 2) .. "hi" .. c(0x88, 2, 3, 232),
  ws_binary_fragments = WS_HEAD .. c(0x02, 1) .. "a" .. c(0x80, 1) .. "b" .. c(0x89, 0)
    .. c(0x8a, 1) .. "p" .. c(0x88, 0),
  ws_masked = WS_HEAD .. c(0x81, 0x82, 1, 2, 3, 4) .. "xy",
  ws_long = WS_HEAD .. c(0x82, 126, 0, 200) .. ("z"):rep(200),
  ws_bad_utf8 = WS_HEAD .. c(0x81, 2, 0xc3, 0x28),
  ws_refused = "HTTP/1.1 403 Forbidden\r\nContent-Length: 6\r\n\r\nno way",
  ws_wrong_accept = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    .. "Connection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
}
for name, a in pairs(A) do
  write("client", name, c(0, 0) .. a)
  write("client", name .. "-head", c(1, 0) .. a)
  write("client", name .. "-stream-split", c(2, 7) .. a)
  write("client", name .. "-limits", c(12, 1) .. a)
end
for name, a in pairs(W) do
  write("client", name, c(3, 0) .. a)
  write("client", name .. "-split", c(3 | 16, 3) .. a)
end

for _, t in ipairs({ "http", "proxy", "websocket", "response", "client" }) do
  print(("%s: %d seeds"):format(t, written[t] or 0))
end
