-- examples/chat/app.lua, tested as an app's own specs would test it: the
-- app started in this process with ringlet.test, its page over HTTP and
-- its room over WebSockets (ws:receive reads what the server sent).
--
-- From the repository root (examples/spec/README.md):
--   busted --lua=lua5.4 --cpath=build/?.so --lpath=lua/?.lua examples/spec

local test = require "ringlet.test"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local APP = here .. "/../chat/app.lua"

local WAIT = 2000 -- ms: how long a receive waits

describe("examples/chat", function()
  local app, sockets

  -- a fresh app for each test: the room and its history start empty
  before_each(function()
    app = test.start(APP)
    sockets = {}
  end)
  after_each(function()
    for _, ws in ipairs(sockets) do ws:close() end
    app:stop()
  end)

  -- joins as `name` (nil: no name given) and returns the socket and the
  -- welcome message
  local function join(name)
    local path = name and "/ws?name=" .. name or "/ws"
    local ws = assert(app:websocket(path))
    sockets[#sockets + 1] = ws
    return ws, assert(ws:receive(WAIT))
  end

  local function receive(ws)
    local msg, err = ws:receive(WAIT)
    assert(msg, "no message: " .. tostring(err))
    return msg
  end

  describe("the page", function()
    it("serves index.html at /", function()
      local res = assert(app:get("/"))
      assert.equal(200, res.status)
      assert.equal("text/html; charset=utf-8", res.headers["content-type"])
      assert.truthy(res.body:find("<title>ringlet chat</title>", 1, true))
      assert.truthy(res.headers.etag)
    end)

    it("serves its script and stylesheet", function()
      local res = assert(app:get("/chat.js"))
      assert.equal(200, res.status)
      assert.equal("text/javascript; charset=utf-8",
        res.headers["content-type"])
      assert.equal(200, assert(app:get("/chat.css")).status)
    end)

    it("answers 304 to a revalidation", function()
      local etag = assert(app:get("/")).headers.etag
      local res = assert(app:get("/", { ["if-none-match"] = etag }))
      assert.equal(304, res.status)
    end)

    it("serves nothing outside public/", function()
      assert.equal(404, assert(app:get("/app.lua")).status)
      assert.equal(404, assert(app:get("/nothing")).status)
    end)

    it("answers 426 to a plain GET /ws and 405 to a POST", function()
      local res = assert(app:get("/ws"))
      assert.equal(426, res.status)
      assert.equal("websocket", res.headers.upgrade)
      res = assert(app:post("/", "x"))
      assert.equal(405, res.status)
      assert.equal("GET, HEAD", res.headers.allow)
    end)
  end)

  describe("the room", function()
    it("welcomes a member with the count and an empty history", function()
      local _, welcome = join("ann")
      assert.equal('{"type":"welcome","name":"ann","count":1,"history":[]}',
        welcome)
    end)

    it("tells members who joins and who leaves", function()
      local ann = join("ann")
      local bob, welcome = join("bob")
      assert.equal('{"type":"welcome","name":"bob","count":2,"history":[]}',
        welcome)
      assert.equal('{"type":"join","name":"bob","count":2}', receive(ann))
      bob:close()
      assert.equal('{"type":"leave","name":"bob","count":1}', receive(ann))
    end)

    it("sends each line to every member, the sender too", function()
      local ann = join("ann")
      local bob = join("bob")
      receive(ann) -- bob's join
      assert(ann:send("hello, bob"))
      local pattern =
        '^{"type":"message","name":"ann","text":"hello, bob","time":%d+}$'
      assert.matches(pattern, receive(ann))
      assert.matches(pattern, receive(bob))
    end)

    it("gives a newcomer the last messages", function()
      local ann = join("ann")
      for i = 1, 3 do
        assert(ann:send("line " .. i))
        receive(ann)
      end
      local _, welcome = join("carol")
      assert.matches('^{"type":"welcome","name":"carol","count":2,'
        .. '"history":%[{"type":"message","name":"ann","text":"line 1",'
        .. '"time":%d+},{.-"text":"line 2".-},{.-"text":"line 3".-}%]}$',
        welcome)
    end)

    it("keeps the last 20 messages only", function()
      local ann = join("ann")
      for i = 1, 25 do
        assert(ann:send("n" .. i))
        receive(ann)
      end
      local _, welcome = join("dan")
      local texts = {}
      for t in welcome:gmatch('"text":"(n%d+)"') do texts[#texts + 1] = t end
      assert.equal(20, #texts)
      assert.equal("n6", texts[1])
      assert.equal("n25", texts[20])
    end)

    it("decodes names and names the nameless", function()
      local _, welcome = join("J%C3%B6rg+K")
      assert.matches('"name":"Jörg K"', welcome, 1, true)
      _, welcome = join(nil)
      assert.matches('"name":"guest 1"', welcome, 1, true)
      _, welcome = join("%20%20")
      assert.matches('"name":"guest 2"', welcome, 1, true)
    end)

    it("escapes text as JSON and ignores binary and empty messages",
      function()
        local ann = join("ann")
        assert(ann:send("\0\1\2", { binary = true }))
        assert(ann:send(""))
        assert(ann:send('say "hi"\n'))
        assert.matches('"text":"say \\"hi\\"\\n"', receive(ann), 1, true)
      end)
  end)
end)
