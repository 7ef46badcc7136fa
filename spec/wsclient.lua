-- A raw WebSocket client (RFC 6455) on LuaSocket, for ringlet's specs.
--
-- It does exactly what it is told and nothing more: it never answers a ping
-- or a close by itself, and it can build frames a correct client would not
-- send (unmasked, reserved bits, reserved opcodes, malformed lengths), so
-- specs can check how the server reacts to each.
--
-- API (the module returns this table; it sets no globals):
--
--   ws.handshake(port, path [, extra_headers [, opts]])
--       Connects to 127.0.0.1:port and sends an upgrade request: Host,
--       Upgrade: websocket, Connection: Upgrade, a random
--       Sec-WebSocket-Key (base64 of 16 random bytes) and
--       Sec-WebSocket-Version: 13. extra_headers (name -> string, or array
--       of strings for repeated lines) adds headers; a name that matches a
--       default one (case-insensitively) replaces it, and the value false
--       leaves it out. opts.method ("GET") and opts.version ("HTTP/1.1")
--       change the request line; opts.then_send (bytes, e.g. frames) goes
--       in the same send() as the request, before the response is read.
--       Returns sock, response (helper.read_response's table, plus
--       response.key = the key sent). For a 101 the Sec-WebSocket-Accept
--       header is checked: when it is wrong, returns nil, err, response.
--       A non-101 answer is returned as is (sock still open) so specs can
--       check 400/426/403. On a socket error: nil, err.
--   ws.accept(key)               the Sec-WebSocket-Accept value for key.
--
--   ws.frame(opcode, payload [, opts]) -> bytes of one client frame.
--       opts.fin (true), opts.mask (true: masked with a random key, as a
--       client must), opts.mask_key (4 bytes), opts.rsv (the 3-bit RSV
--       field: 4 = RSV1, 2 = RSV2, 1 = RSV3), opts.len_override (the length
--       written in the header instead of #payload), opts.len_form (7, 16 or
--       64: the length encoding to use, minimal by default).
--   ws.send_frame(sock, opcode, payload [, opts])  sends ws.frame(...).
--   ws.send_text(sock, s [, opts]), ws.send_binary(sock, s [, opts]),
--   ws.send_ping(sock [, payload]), ws.send_pong(sock [, payload]),
--   ws.send_close(sock [, code [, reason]])   (no code: empty payload)
--       Each returns what sock:send returned.
--   ws.send_fragments(sock, opcode, parts [, opts])
--       sends parts (an array of strings) as one fragmented message.
--
--   ws.read_frame(sock) -> frame, or nil, err
--       frame = { fin = bool, rsv = 0..7, opcode = 0..15, masked = bool,
--                 payload = string (unmasked), length = n,
--                 len_bytes = 0 | 2 | 8 (extended length field size) }
--   ws.read_message(sock) -> opcode, payload, frames, or nil, err
--       The next control frame (returned as it comes, even between the
--       fragments of a data message) or the next whole data message
--       (fragments reassembled; frames lists the frames it came in).
--       Answers nothing. A masked server frame, RSV bits, a reserved
--       opcode or a misplaced continuation is an error (nil, err).
--   ws.read_close(sock) -> frame, or nil, err
--       Reads frames, skipping others, until a close frame.
--   ws.close_code(frame) -> code, reason
--       code is nil for an empty payload (reason ""), and for a 1-byte one.
--   ws.tcp_closed(sock [, timeout])
--       true once the peer closed the TCP connection (EOF or reset);
--       anything read first is discarded. false after timeout seconds
--       (default helper.TEST_TIMEOUT).
--
--   ws.sha1(s), ws.base64(s), ws.unbase64(s), ws.mask(key, s),
--   ws.random_bytes(n)           the pieces, for specs that need them.
--   ws.OP                        opcode names: CONTINUATION, TEXT, BINARY,
--                                CLOSE, PING, PONG.

local socket = require "socket"
local helper = require "helper"

local ws = {}

ws.OP = {
  CONTINUATION = 0, TEXT = 1, BINARY = 2, CLOSE = 8, PING = 9, PONG = 10,
}

local GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

-- SHA-1 (FIPS 180-4), on Lua 5.4's 64-bit integers masked to 32 bits.
function ws.sha1(msg)
  local h0, h1, h2, h3, h4 =
    0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0
  local bits = #msg * 8
  msg = msg .. "\128" .. string.rep("\0", (55 - #msg) % 64)
    .. string.pack(">I8", bits)
  local w = {}
  for chunk = 1, #msg, 64 do
    for i = 0, 15 do
      w[i] = string.unpack(">I4", msg, chunk + i * 4)
    end
    for i = 16, 79 do
      local v = w[i - 3] ~ w[i - 8] ~ w[i - 14] ~ w[i - 16]
      w[i] = ((v << 1) | (v >> 31)) & 0xFFFFFFFF
    end
    local a, b, c, d, e = h0, h1, h2, h3, h4
    for i = 0, 79 do
      local f, k
      if i < 20 then
        f, k = (b & c) | (~b & d), 0x5A827999
      elseif i < 40 then
        f, k = b ~ c ~ d, 0x6ED9EBA1
      elseif i < 60 then
        f, k = (b & c) | (b & d) | (c & d), 0x8F1BBCDC
      else
        f, k = b ~ c ~ d, 0xCA62C1D6
      end
      local t = (((a << 5) | (a >> 27)) + (f & 0xFFFFFFFF) + e + k + w[i])
        & 0xFFFFFFFF
      e, d, c, b, a = d, c, ((b << 30) | (b >> 2)) & 0xFFFFFFFF, a, t
    end
    h0 = (h0 + a) & 0xFFFFFFFF
    h1 = (h1 + b) & 0xFFFFFFFF
    h2 = (h2 + c) & 0xFFFFFFFF
    h3 = (h3 + d) & 0xFFFFFFFF
    h4 = (h4 + e) & 0xFFFFFFFF
  end
  return string.pack(">I4I4I4I4I4", h0, h1, h2, h3, h4)
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

function ws.base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = (a << 16) | ((b or 0) << 8) | (c or 0)
    local q = {}
    for j = 1, 4 do
      local idx = (n >> (6 * (4 - j))) & 63
      q[j] = B64:sub(idx + 1, idx + 1)
    end
    if not b then q[3] = "=" end
    if not c then q[4] = "=" end
    out[#out + 1] = table.concat(q)
  end
  return table.concat(out)
end

-- Strict decoding: nil unless s is canonical padded base64.
function ws.unbase64(s)
  if #s % 4 ~= 0 or s:find("[^%w+/=]") or s:find("=[^=]") then
    return nil
  end
  local out = {}
  for i = 1, #s, 4 do
    local n, pad = 0, 0
    for j = i, i + 3 do
      local ch = s:sub(j, j)
      local v
      if ch == "=" then
        pad = pad + 1
        v = 0
      else
        if pad > 0 then return nil end
        v = B64:find(ch, 1, true) - 1
      end
      n = (n << 6) | v
    end
    if pad > 2 or (pad > 0 and i + 3 ~= #s) then return nil end
    local bytes = string.char((n >> 16) & 255, (n >> 8) & 255, n & 255)
    out[#out + 1] = bytes:sub(1, 3 - pad)
  end
  return table.concat(out)
end

function ws.accept(key)
  return ws.base64(ws.sha1(key .. GUID))
end

function ws.random_bytes(n)
  local t = {}
  for i = 1, n do t[i] = string.char(math.random(0, 255)) end
  return table.concat(t)
end

-- XOR with a 4-byte key, 256 bytes (32 64-bit words) per step so that a
-- 4 MiB payload takes a fraction of a second.
local BLOCK_FMT = "<" .. string.rep("i8", 32)

function ws.mask(key, data)
  assert(#key == 4, "mask key must be 4 bytes")
  local k4 = string.unpack("<I4", key)
  local k8 = k4 | (k4 << 32)
  local n = #data
  local out = {}
  local pos = 1
  while pos + 255 <= n do
    local v = { string.unpack(BLOCK_FMT, data, pos) }
    for i = 1, 32 do v[i] = v[i] ~ k8 end
    out[#out + 1] = string.pack(BLOCK_FMT, table.unpack(v, 1, 32))
    pos = pos + 256
  end
  local kb = { key:byte(1, 4) }
  local tail = {}
  for i = pos, n do
    tail[#tail + 1] = string.char(data:byte(i) ~ kb[(i - 1) % 4 + 1])
  end
  out[#out + 1] = table.concat(tail)
  return table.concat(out)
end

function ws.frame(opcode, payload, opts)
  opts = opts or {}
  payload = payload or ""
  local fin = opts.fin ~= false
  local masked = opts.mask ~= false
  local len = opts.len_override or #payload
  local form = opts.len_form
  if not form then
    if len < 0 then
      form = 64
    elseif len < 126 then
      form = 7
    elseif len < 65536 then
      form = 16
    else
      form = 64
    end
  end
  local b0 = (fin and 0x80 or 0) | (((opts.rsv or 0) & 7) << 4)
    | (opcode & 0x0F)
  local mbit = masked and 0x80 or 0
  local head
  if form == 7 then
    assert(len >= 0 and len <= 127, "7-bit length out of range")
    head = string.char(b0, mbit | len)
  elseif form == 16 then
    head = string.char(b0, mbit | 126) .. string.pack(">I2", len)
  elseif form == 64 then
    head = string.char(b0, mbit | 127) .. string.pack(">i8", len)
  else
    error("len_form must be 7, 16 or 64", 2)
  end
  if not masked then return head .. payload end
  local key = opts.mask_key or ws.random_bytes(4)
  return head .. key .. ws.mask(key, payload)
end

function ws.send_frame(sock, opcode, payload, opts)
  return sock:send(ws.frame(opcode, payload, opts))
end

function ws.send_text(sock, s, opts)
  return ws.send_frame(sock, ws.OP.TEXT, s, opts)
end

function ws.send_binary(sock, s, opts)
  return ws.send_frame(sock, ws.OP.BINARY, s, opts)
end

function ws.send_ping(sock, payload)
  return ws.send_frame(sock, ws.OP.PING, payload or "")
end

function ws.send_pong(sock, payload)
  return ws.send_frame(sock, ws.OP.PONG, payload or "")
end

function ws.send_close(sock, code, reason)
  local payload = ""
  if code then payload = string.pack(">I2", code) .. (reason or "") end
  return ws.send_frame(sock, ws.OP.CLOSE, payload)
end

function ws.send_fragments(sock, opcode, parts, opts)
  local bytes = {}
  for i, part in ipairs(parts) do
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    o.fin = i == #parts
    bytes[i] = ws.frame(i == 1 and opcode or ws.OP.CONTINUATION, part, o)
  end
  return sock:send(table.concat(bytes))
end

local function receive(sock, n)
  if n == 0 then return "" end
  local data, err, partial = sock:receive(n)
  if not data then
    return nil, ("%s after %d of %d bytes"):format(err, #(partial or ""), n)
  end
  return data
end

function ws.read_frame(sock)
  local head, err = receive(sock, 2)
  if not head then return nil, err end
  local b0, b1 = head:byte(1, 2)
  local len = b1 & 0x7F
  local len_bytes = 0
  if len == 126 then
    local ext, eerr = receive(sock, 2)
    if not ext then return nil, eerr end
    len, len_bytes = string.unpack(">I2", ext), 2
  elseif len == 127 then
    local ext, eerr = receive(sock, 8)
    if not ext then return nil, eerr end
    len, len_bytes = string.unpack(">i8", ext), 8
    if len < 0 then return nil, "64-bit length with the top bit set" end
  end
  local masked = b1 & 0x80 ~= 0
  local key
  if masked then
    local kerr
    key, kerr = receive(sock, 4)
    if not key then return nil, kerr end
  end
  local payload, perr = receive(sock, len)
  if not payload then return nil, perr end
  if masked then payload = ws.mask(key, payload) end
  return {
    fin = b0 & 0x80 ~= 0, rsv = (b0 >> 4) & 7, opcode = b0 & 0x0F,
    masked = masked, payload = payload, length = len, len_bytes = len_bytes,
  }
end

-- A data message whose fragments are still arriving, per socket.
local partial = setmetatable({}, { __mode = "k" })

function ws.read_message(sock)
  local msg = partial[sock]
  while true do
    local f, err = ws.read_frame(sock)
    if not f then return nil, err end
    if f.masked then return nil, "server frame is masked" end
    if f.rsv ~= 0 then return nil, "server frame has RSV bits " .. f.rsv end
    if f.opcode >= 8 then
      if f.opcode > 10 then return nil, "reserved opcode " .. f.opcode end
      return f.opcode, f.payload, { f }
    elseif f.opcode == 0 then
      if not msg then return nil, "continuation with no message started" end
      msg.parts[#msg.parts + 1] = f.payload
      msg.frames[#msg.frames + 1] = f
    elseif f.opcode <= 2 then
      if msg then return nil, "new data frame inside a fragmented message" end
      msg = { opcode = f.opcode, parts = { f.payload }, frames = { f } }
    else
      return nil, "reserved opcode " .. f.opcode
    end
    if f.fin then
      partial[sock] = nil
      return msg.opcode, table.concat(msg.parts), msg.frames
    end
    partial[sock] = msg
  end
end

function ws.read_close(sock)
  while true do
    local f, err = ws.read_frame(sock)
    if not f then return nil, err end
    if f.opcode == ws.OP.CLOSE then return f end
  end
end

function ws.close_code(frame)
  local p = frame.payload
  if #p < 2 then return nil, #p == 0 and "" or p end
  return string.unpack(">I2", p), p:sub(3)
end

function ws.tcp_closed(sock, timeout)
  local deadline = socket.gettime() + (timeout or helper.TEST_TIMEOUT)
  while true do
    local remaining = deadline - socket.gettime()
    if remaining <= 0 then return false end
    sock:settimeout(remaining)
    local _, err = sock:receive(1)
    if err == "closed" or (err and err:find("reset")) then return true end
    if err == "timeout" then return false end
  end
end

local function header_list(port, key, extra)
  local defaults = {
    { "Host", "127.0.0.1:" .. port },
    { "Upgrade", "websocket" },
    { "Connection", "Upgrade" },
    { "Sec-WebSocket-Key", key },
    { "Sec-WebSocket-Version", "13" },
  }
  local rest = {}
  for name, value in pairs(extra or {}) do rest[name:lower()] = { name, value } end
  local list = {}
  local sent_key
  local function add(name, value)
    if value == false then return end
    if type(value) == "table" then
      for _, v in ipairs(value) do list[#list + 1] = { name, v } end
    else
      list[#list + 1] = { name, tostring(value) }
    end
    if name:lower() == "sec-websocket-key" then sent_key = value end
  end
  for _, pair in ipairs(defaults) do
    local over = rest[pair[1]:lower()]
    rest[pair[1]:lower()] = nil
    if over then add(over[1], over[2]) else add(pair[1], pair[2]) end
  end
  local names = {}
  for lname in pairs(rest) do names[#names + 1] = lname end
  table.sort(names)
  for _, lname in ipairs(names) do add(rest[lname][1], rest[lname][2]) end
  return list, sent_key
end

function ws.handshake(port, path, extra_headers, opts)
  opts = opts or {}
  local key = ws.base64(ws.random_bytes(16))
  local list, sent_key = header_list(port, key, extra_headers)
  local sock, err = helper.connect(port)
  if not sock then return nil, err end
  local ok, serr = sock:send(helper.request_bytes(opts.method or "GET", path,
    list, nil, opts.version) .. (opts.then_send or ""))
  if not ok then
    sock:close()
    return nil, serr
  end
  local res, rerr = helper.read_response(sock)
  if not res then
    sock:close()
    return nil, "reading the handshake response: " .. tostring(rerr)
  end
  res.key = sent_key
  if res.status == 101 then
    local got = res.headers["sec-websocket-accept"]
    local want = type(sent_key) == "string" and ws.accept(sent_key) or nil
    if got == nil or got ~= want then
      sock:close()
      return nil, ("bad Sec-WebSocket-Accept: got %s, want %s"):format(
        tostring(got), tostring(want)), res
    end
  end
  return sock, res
end

return ws
