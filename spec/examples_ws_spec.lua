-- The WebSocket examples with independent clients: examples/echo.lua with
-- the npm package `ws` (spec/node/ws_client.js) and with a raw LuaSocket
-- handshake, and examples/chat in headless Chromium driven by playwright-core
-- (spec/node/chat_browser.js).
--
-- The Node clients need `node`, spec/node/node_modules (scripts/node-deps.sh
-- installs both) and, for the browser, Chromium (helper.missing); without
-- them those specs are pending and say what is missing.
--
-- Servers run in child processes (helper.start). Every wait is bounded by
-- helper.TEST_TIMEOUT (the Node scripts read the same $RINGLET_TEST_TIMEOUT);
-- nothing is timed.

local helper = require "helper"
local ws = require "wsclient"

local it_ws = helper.it_needs("ws", it, pending)
local it_browser = helper.it_needs("browser", it, pending)

local function start_echo()
  return helper.start(helper.repo_file("examples/echo.lua"))
end

-- The chat app reads index.html from its own directory, so it is loaded
-- with dofile from where it lives (its chunk name is then its real path);
-- the file helper.start writes only points there.
local function start_chat()
  return helper.start("return dofile(" .. ("%q"):format(
    helper.ROOT .. "/examples/chat/app.lua") .. ")")
end

-- RFC 6455 section 1.3's example key and its accept value.
local KEY = "dGhlIHNhbXBsZSBub25jZQ=="
local ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

local function upgrade_bytes(path)
  return helper.request_bytes("GET", path, {
    { "Host", "127.0.0.1" },
    { "Upgrade", "websocket" },
    { "Connection", "Upgrade" },
    { "Sec-WebSocket-Key", KEY },
    { "Sec-WebSocket-Version", "13" },
  })
end

-- Sends the upgrade for `path` on a new connection and reads the answer's
-- head; returns the socket and the response (the caller closes the socket).
local function handshake(port, path)
  local sock = assert(helper.connect(port))
  assert(sock:send(upgrade_bytes(path)))
  local res, err = helper.read_response(sock)
  if not res then
    sock:close()
    error("no answer to the upgrade: " .. tostring(err), 2)
  end
  return sock, res
end

local function assert_switched(res)
  assert.equal(101, res.status)
  assert.equal("websocket", (res.headers.upgrade or ""):lower())
  assert.truthy((res.headers.connection or ""):lower():find("upgrade", 1,
    true))
  assert.equal(ACCEPT, res.headers["sec-websocket-accept"])
end

-- One masked client frame (FIN set) with a payload shorter than 126 bytes.
local MASK = "\x37\xfa\x21\x3d"
local function client_frame(opcode, payload)
  assert(#payload < 126)
  local masked = {}
  for i = 1, #payload do
    local m = MASK:byte((i - 1) % 4 + 1)
    masked[i] = string.char(payload:byte(i) ~ m)
  end
  return string.char(0x80 | opcode, 0x80 | #payload) .. MASK
    .. table.concat(masked)
end

-- Reads one unfragmented server frame with a payload shorter than 126
-- bytes: opcode, payload (or nil, err).
local function server_frame(sock)
  local head, err = sock:receive(2)
  if not head then return nil, err end
  local b1, b2 = head:byte(1, 2)
  assert.equal(0x80, b1 & 0xf0, "FIN set, no RSV bits")
  assert.equal(0, b2 & 0x80, "server frames are not masked")
  local len = b2 & 0x7f
  assert(len < 126, "expected a short frame")
  local payload = ""
  if len > 0 then
    payload, err = sock:receive(len)
    if not payload then return nil, err end
  end
  return b1 & 0x0f, payload
end

describe("examples/echo.lua", function()
  it("answers a plain GET with text saying how to connect", function()
    local defer = helper.cleanup(finally)
    local srv = start_echo()
    defer(function() srv:stop() end)
    local res = assert(helper.request(srv.port, "GET", "/"))
    assert.equal(200, res.status)
    assert.truthy(res.headers["content-type"]:find("text/plain", 1, true))
    assert.truthy(res.body:find("ws://127.0.0.1:" .. srv.port .. "/", 1,
      true), res.body)
    helper.assert_clean_stop(srv)
  end)

  it("switches protocols and echoes a frame over a raw socket", function()
    local defer = helper.cleanup(finally)
    local srv = start_echo()
    defer(function() srv:stop() end)
    local sock, res = handshake(srv.port, "/")
    defer(function() sock:close() end)
    assert_switched(res)
    assert(sock:send(client_frame(0x1, "hello, ringlet")))
    assert.same({ 0x1, "hello, ringlet" }, { server_frame(sock) })
    assert(sock:send(client_frame(0x2, "\0\1\2\255")))
    assert.same({ 0x2, "\0\1\2\255" }, { server_frame(sock) })
    -- A close with 1000 is answered with 1000, then the server closes.
    assert(sock:send(client_frame(0x8, "\3\232bye")))
    local opcode, payload = server_frame(sock)
    assert.equal(0x8, opcode)
    assert.equal("\3\232", payload:sub(1, 2))
    assert.is_true(helper.closed(sock))
    helper.assert_clean_stop(srv)
  end)

  it_ws("echoes text and binary byte for byte to the ws client, answers its "
    .. "ping and its close 1000",
    function()
      local defer = helper.cleanup(finally)
      local srv = start_echo()
      defer(function() srv:stop() end)
      helper.assert_ws_client(srv.port)
      -- Another connection is still served after all that.
      assert.equal(200, assert(helper.request(srv.port, "GET", "/")).status)
      helper.assert_clean_stop(srv)
    end)
end)

describe("examples/chat", function()
  it("serves its page at / and declines a plain GET of /ws", function()
    local defer = helper.cleanup(finally)
    local srv = start_chat()
    defer(function() srv:stop() end)
    local res = assert(helper.request(srv.port, "GET", "/"))
    assert.equal(200, res.status)
    assert.truthy(res.headers["content-type"]:find("text/html", 1, true))
    assert.equal(helper.repo_file("examples/chat/public/index.html"), res.body)
    res = assert(helper.request(srv.port, "GET", "/ws"))
    assert.equal(426, res.status)
    res = assert(helper.request(srv.port, "GET", "/nowhere"))
    assert.equal(404, res.status)
    helper.assert_clean_stop(srv)
  end)

  it("welcomes a member with the history, tells the room who joins and "
    .. "leaves, and sends every line to every member with its name",
  function()
    local defer = helper.cleanup(finally)
    local srv = start_chat()
    defer(function() srv:stop() end)
    local a, res_a = handshake(srv.port, "/ws?name=alice")
    defer(function() a:close() end)
    assert_switched(res_a)
    local op, text = ws.read_message(a)
    assert.equal(ws.OP.TEXT, op)
    assert.equal('{"type":"welcome","name":"alice","count":1,"history":[]}',
      text)
    assert(a:send(client_frame(0x1, 'first "line" <b>')))
    text = select(2, ws.read_message(a))
    assert.matches('^{"type":"message","name":"alice","text":"first '
      .. '\\"line\\" <b>","time":%d+}$', text)
    local first = text

    -- a newcomer (its name percent-encoded, cut to 24 characters) gets
    -- the history; the others hear that it joined
    local b, res_b = handshake(srv.port,
      "/ws?name=b%C3%A9a%20" .. ("x"):rep(30))
    defer(function() b:close() end)
    assert_switched(res_b)
    local bob = "béa " .. ("x"):rep(20)
    text = select(2, ws.read_message(b))
    assert.equal('{"type":"welcome","name":"' .. bob .. '","count":2,'
      .. '"history":[' .. first .. ']}', text)
    text = select(2, ws.read_message(a))
    assert.equal('{"type":"join","name":"' .. bob .. '","count":2}', text)

    assert(b:send(client_frame(0x1, "hi\nthere")))
    for _, sock in ipairs({ a, b }) do
      text = select(2, ws.read_message(sock))
      assert.matches('"name":"' .. bob .. '","text":"hi\\nthere"', text,
        1, true)
    end
    b:close()
    text = select(2, ws.read_message(a))
    assert.equal('{"type":"leave","name":"' .. bob .. '","count":1}', text)
    a:close()
    helper.assert_clean_stop(srv)
  end)

  it_browser("in Chromium: names, history for a newcomer, join and leave "
    .. "notices, the member count, messages shown as text",
    function()
      local defer = helper.cleanup(finally)
      local srv = start_chat()
      defer(function() srv:stop() end)
      local out, code, err = helper.node("chat_browser.js",
        "http://127.0.0.1:" .. srv.port .. "/")
      assert(code == 0,
        "chat_browser.js failed (exit " .. tostring(code) .. "):\n" .. out
          .. err)
      helper.assert_clean_stop(srv)
    end)
end)
