-- The WebSocket examples with independent clients: examples/echo.lua with
-- the npm package `ws` (spec/node/ws_client.js) and with a raw LuaSocket
-- handshake, and examples/chat in headless Chromium driven by playwright-core
-- (spec/node/chat_browser.js).
--
-- The Node clients need `node`, spec/node/node_modules (scripts/node-deps.sh
-- installs both) and, for the browser, /usr/bin/chromium; without them those
-- specs are pending and say what is missing.
--
-- Servers run in child processes (helper.start). Every wait is bounded by
-- helper.TEST_TIMEOUT (the Node scripts read the same $RINGLET_TEST_TIMEOUT);
-- nothing is timed.

local helper = require "helper"
local ws = require "wsclient"

local quote = helper.quote

-- The repository's root, absolute: ringlet loads app files from /tmp, so
-- paths handed to it must not depend on where it looks from.
local function repo_root()
  local spec = debug.getinfo(1, "S").source:match("^@(.*)$") or ""
  local dir = spec:match("^(.*)/[^/]*$") or "."
  local pipe = assert(io.popen("cd " .. quote(dir .. "/..") .. " && pwd"))
  local root = pipe:read("l")
  pipe:close()
  return assert(root, "cannot find the repository root")
end

local ROOT = repo_root()
local NODE_DIR = ROOT .. "/spec/node"
local CHROMIUM = "/usr/bin/chromium"

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  return text
end

local function have_command(name)
  return os.execute("command -v " .. quote(name) .. " >/dev/null 2>&1")
    == true
end

-- nil when the Node clients can run, else why not.
local function node_missing(packages)
  if not have_command("node") then
    return "node is not installed (scripts/node-deps.sh)"
  end
  for _, p in ipairs(packages) do
    if not helper.exists(NODE_DIR .. "/node_modules/" .. p .. "/package.json") then
      return "spec/node/node_modules/" .. p
        .. " is missing (scripts/node-deps.sh)"
    end
  end
  return nil
end

local WS_MISSING = node_missing({ "ws" })
local BROWSER_MISSING = node_missing({ "playwright-core" })
  or (not helper.exists(CHROMIUM) and CHROMIUM .. " is missing (scripts/node-deps.sh)")
  or nil

-- `it` when nothing is missing, else a pending spec naming what is.
local function it_with(missing, name, fn)
  if missing then
    pending(name .. " [pending: " .. missing .. "]")
  else
    it(name, fn)
  end
end

-- Runs a Node script (bounded by timeout(1) on top of its own bounds);
-- returns its stdout and stderr together, and its exit status.
local function node(script, ...)
  local args = {}
  for i, a in ipairs({ ... }) do args[i] = quote(a) end
  local cmd = ("RINGLET_TEST_TIMEOUT=%d timeout -k 5 %d node %s %s 2>&1")
    :format(helper.TEST_TIMEOUT, helper.TEST_TIMEOUT * 10,
      quote(NODE_DIR .. "/" .. script), table.concat(args, " "))
  local pipe = assert(io.popen(cmd, "r"))
  local out = pipe:read("a") or ""
  local _, how, code = pipe:close()
  if how == "signal" then code = 128 + code end
  return out, code
end

-- The last line of `out` that is a JSON object, decoded for the few fields
-- the spec reads: a tiny reader for ws_client.js's flat report (no JSON
-- library needed).
local function report_of(out)
  local line
  for l in out:gmatch("[^\n]+") do
    if l:match("^{") then line = l end
  end
  if not line then return nil end
  return {
    ok = line:match('^{"ok":(%a+)') == "true",
    close_code = tonumber(line:match('"close_code":(%d+)')),
    json = line,
  }
end

local function start_echo()
  return helper.start(read_file(ROOT .. "/examples/echo.lua"))
end

-- The chat app reads index.html from its own directory, so it is loaded
-- with dofile from where it lives (its chunk name is then its real path);
-- the file helper.start writes only points there.
local function start_chat()
  return helper.start("return dofile(" .. ("%q"):format(
    ROOT .. "/examples/chat/app.lua") .. ")")
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

  it_with(WS_MISSING,
    "echoes text and binary byte for byte to the ws client, answers its "
      .. "ping and its close 1000",
    function()
      local defer = helper.cleanup(finally)
      local srv = start_echo()
      defer(function() srv:stop() end)
      local out, code = node("ws_client.js", tostring(srv.port), "/")
      local report = report_of(out)
      assert(report, "ws_client.js printed no report:\n" .. out)
      assert(report.ok and code == 0,
        "ws_client.js failed (exit " .. tostring(code) .. "):\n" .. out)
      assert.equal(1000, report.close_code)
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
    assert.equal(read_file(ROOT .. "/examples/chat/index.html"), res.body)
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

  it_with(BROWSER_MISSING,
    "in Chromium: names, history for a newcomer, join and leave notices, "
    .. "the member count, messages shown as text",
    function()
      local defer = helper.cleanup(finally)
      local srv = start_chat()
      defer(function() srv:stop() end)
      local out, code = node("chat_browser.js",
        "http://127.0.0.1:" .. srv.port .. "/")
      assert(code == 0,
        "chat_browser.js failed (exit " .. tostring(code) .. "):\n" .. out)
      helper.assert_clean_stop(srv)
    end)
end)
