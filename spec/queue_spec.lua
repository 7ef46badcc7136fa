-- ringlet.queue: the core primitive that tasks wait on (csrc/queue.c).
-- Most specs run a script with the ringlet CLI (helper.run_script): tasks
-- come from ringlet.timer callbacks, and the script ends when nothing is
-- pending. The handler and channel specs start a server (helper.start).
-- Every wait is bounded by helper.TEST_TIMEOUT.

local helper = require "helper"
local socket = require "socket"

-- Runs source; asserts a clean exit and returns stdout.
local function run(source)
  local ok, out, err, status = helper.run_script(source)
  assert(ok, ("status %s; stderr:\n%s"):format(status, err))
  return out, err
end

local PRELUDE = [[
local ringlet = require "ringlet"
local function task(fn) ringlet.timer(0, fn) end
local function show(...)
  local t = table.pack(...)
  for i = 1, t.n do t[i] = tostring(t[i]) end
  print(table.concat(t, " "))
end
]]

local function lines_of(out)
  local list = {}
  for l in out:gmatch("[^\n]*") do
    if l ~= "" then list[#list + 1] = l end
  end
  return list
end

describe("ringlet.queue", function()
  it("holds values first in, first out; offer and poll never wait", function()
    local out = run(PRELUDE .. [[
local q = ringlet.queue()
show(q:offer("a"), q:offer(false), q:offer({}) , #q)
show(q:poll(), q:poll(), type(q:poll()), q:poll(), #q)
show(q:put("x"), q:take(), #q, tostring(q))
for i = 1, 100000 do q:offer(i) end
local ok = true
for i = 1, 100000 do ok = ok and q:poll() == i end
show(ok, #q, q:poll())
]])
    assert.same({
      "true true true 3",
      "a false table nil 0",
      "true x 0 ringlet.queue (0 values)",
      "true 0 nil",
    }, lines_of(out))
  end)

  it("refuses nil values and bad capacities", function()
    local out = run(PRELUDE .. [[
local q = ringlet.queue()
show(pcall(q.put, q, nil))
show(pcall(q.offer, q))
show(pcall(ringlet.queue, -1))
show(pcall(ringlet.queue, 1.5))
show(pcall(ringlet.queue, "x"))
show(pcall(q.take, 42))
]])
    local lines = lines_of(out)
    assert.matches("^false .*queue:put: the value must not be nil", lines[1])
    assert.matches("^false .*queue:offer: the value must not be nil",
      lines[2])
    assert.matches("^false .*capacity must be >= 0", lines[3])
    assert.matches("^false .*number has no integer representation", lines[4])
    assert.matches("^false .*number expected", lines[5])
    assert.matches("^false .*ringlet.queue expected", lines[6])
  end)

  it("raises, naming offer or poll, when put or take would wait outside a "
    .. "task; they work there when they need not wait", function()
    local out = run(PRELUDE .. [[
local q = ringlet.queue(1)
show(pcall(q.take, q))
show(q:put(1))        -- room for it: no wait
show(pcall(q.put, q, 2))
show(q:take())        -- a value is there: no wait
task(function()
  -- inside a task, but where Lua cannot yield (a sort comparator)
  show(pcall(table.sort, { 2, 1 }, function() return q:take() end))
  -- or in a coroutine of one's own: ringlet would never resume it
  show(pcall(coroutine.wrap(function() return q:take() end)))
end)
]])
    local lines = lines_of(out)
    assert.equal("false queue:take would wait outside a handler or callback "
      .. "run by ringlet (use queue:poll)", lines[1])
    assert.equal("true", lines[2])
    assert.equal("false queue:put would wait outside a handler or callback "
      .. "run by ringlet (use queue:offer)", lines[3])
    assert.equal("1", lines[4])
    assert.matches("^false .*queue:take would wait outside", lines[5])
    assert.matches("^false .*queue:take would wait outside", lines[6])
  end)

  it("take waits in a task until a put, which hands the value over",
    function()
      local out = run(PRELUDE .. [[
local q = ringlet.queue()
task(function()
  show("taker waits")
  show("took", q:take())
  show("took", q:take())
end)
ringlet.timer(20, function()
  show("put", q:put("one"))
  show("offer", q:offer("two"))
end)
]])
      assert.same({ "taker waits", "put true", "offer true", "took one",
        "took two" }, lines_of(out))
    end)

  it("put waits while the queue is over its capacity, until a take makes "
    .. "room", function()
    local out = run(PRELUDE .. [[
local q = ringlet.queue(2)
task(function()
  for i = 1, 4 do
    show("put", i, q:put(i), #q)
  end
  show("putter done")
end)
ringlet.timer(20, function()
  show("offer while full", q:offer(9))
  for _ = 1, 4 do show("take", q:take()) ringlet.sleep(5) end
end)
]])
    assert.same({
      "put 1 true 1",
      "put 2 true 2",
      "offer while full false",
      "take 1",
      "put 3 true 2",
      "take 2",
      "put 4 true 2",
      "putter done",
      "take 3",
      "take 4",
    }, lines_of(out))
  end)

  it("with capacity 0 is a rendezvous: put returns once a taker took the "
    .. "value; offer succeeds only with a taker waiting", function()
    local out = run(PRELUDE .. [[
local q = ringlet.queue(0)
show("offer, no taker", q:offer("x"), #q)
task(function()
  show("put a", q:put("a"))
  show("put b", q:put("b"))
end)
ringlet.timer(20, function()
  show("waiting values", #q)
  show("take", q:take())
  show("take", q:take())
  ringlet.timer(10, function() show("offer to taker", q:offer("c")) end)
  show("take", q:take())
end)
]])
    assert.same({
      "offer, no taker false 0",
      "waiting values 1",
      "take a",   -- the putter of "a" is woken; "b" is not put yet
      "put a true",
      "put b true", -- handed to the waiting taker
      "take b",
      "offer to taker true",
      "take c",
    }, lines_of(out))
  end)

  it("close: waiting takers get nil, waiting putters true with their values "
    .. "left to take; later puts and offers return false", function()
    local out = run(PRELUDE .. [[
local q, r = ringlet.queue(), ringlet.queue(0)
for i = 1, 2 do task(function() show("taker", i, q:take()) end) end
for i = 1, 2 do task(function() show("putter", i, r:put("v" .. i)) end) end
ringlet.timer(20, function()
  show("close", q:close(), r:close(), q:close())
  show("is_closed", q:is_closed(), r:is_closed(), tostring(r))
  show("put after", q:put("late"), q:offer("late"), #q)
  show("left", r:take(), r:poll(), r:take(), r:poll())
  show("take after", q:take(), r:take())
end)
]])
    assert.same({
      "close true true false",
      "is_closed true true ringlet.queue (2 values, closed)",
      "put after false false 0",
      "left v1 v2 nil nil",
      "take after nil nil",
      "taker 1 nil",
      "taker 2 nil",
      "putter 1 true",
      "putter 2 true",
    }, lines_of(out))
  end)

  it("wakes many waiters in the order they came", function()
    local out = run(PRELUDE .. [[
local q, r = ringlet.queue(), ringlet.queue(0)
local took, put = {}, {}
for i = 1, 50 do
  task(function()
    local v = q:take()
    took[#took + 1] = i .. "=" .. v
  end)
end
for i = 1, 50 do task(function() r:put(i) put[#put + 1] = i end) end
ringlet.timer(20, function()
  for i = 1, 50 do q:put(i) end
  local got = {}
  for i = 1, 50 do got[i] = r:take() end
  ringlet.timer(20, function()
    local want_took, want = {}, {}
    for i = 1, 50 do want_took[i] = i .. "=" .. i; want[i] = i end
    show(table.concat(took, ",") == table.concat(want_took, ","))
    show(table.concat(got, ",") == table.concat(want, ","),
      table.concat(put, ",") == table.concat(want, ","))
  end)
end)
]])
    assert.same({ "true", "true true" }, lines_of(out))
  end)

  it("waits inside pcall in a task, and a put in a task resumes nothing "
    .. "before it returns", function()
    local out = run(PRELUDE .. [[
local q = ringlet.queue()
task(function()
  show("pcall", pcall(function() return q:take() end))
end)
ringlet.timer(10, function()
  q:put("v")
  show("after put")
end)
]])
    assert.same({ "after put", "pcall true v" }, lines_of(out))
  end)

  it("a waiting task resumed by hand goes on waiting, and gets the real "
    .. "value later (a sleep too)", function()
    local out = run(PRELUDE .. [[
local q = ringlet.queue()
local taker, sleeper
task(function()
  taker = coroutine.running()
  show("took", q:take())
end)
task(function()
  sleeper = coroutine.running()
  ringlet.sleep(30)
  show("slept")
end)
ringlet.timer(5, function()
  show("resume", coroutine.resume(taker, "forged"), coroutine.resume(sleeper, 1))
  ringlet.timer(10, function() show("put", q:put("real")) end)
end)
]])
    assert.same({ "resume true true", "put true", "took real", "slept" },
      lines_of(out))
  end)

  it("lets the loop serve others while two tasks pass values for ever",
    function()
      local out = run(PRELUDE .. [[
local a, b = ringlet.queue(0), ringlet.queue(0)
local n, stop = 0, false
task(function()
  while not stop do a:put(n) n = b:take() + 1 end
end)
task(function()
  while true do b:put(a:take()) end
end)
ringlet.timer(50, function()
  stop = true
  show("timer fired", n > 10)
end)
]])
      assert.same({ "timer fired true" }, lines_of(out))
    end)

  describe("in a server", function()
    local APP = [==[
local ringlet = require "ringlet"
local q = ringlet.queue()
return function(req)
  if req.uri == "/take" then
    return { body = "took " .. q:take() }
  elseif req.uri == "/put" then
    q:put(req.body)
    return { body = "put\n" }
  elseif req.uri == "/poll" then
    return ringlet.as_channel(req, {
      on_open = function(ch) ch:send("polled " .. q:take(), { close = true }) end,
    })
  elseif req.uri == "/timer" then
    ringlet.timer(1, function() q:put("from a timer") end)
    return { body = "armed\n" }
  end
  return { status = 404 }
end
]==]

    local srv
    setup(function() srv = helper.start(APP) end)
    teardown(function() if srv then helper.assert_clean_stop(srv) end end)

    -- Sends a GET without reading the answer; returns the socket.
    local function send_get(path)
      local sock = assert(helper.connect(srv.port))
      assert(sock:send(helper.request_bytes("GET", path,
        { Host = "127.0.0.1" })))
      return sock
    end

    it("a handler waits in take until another request puts", function()
      local defer = helper.cleanup(finally)
      local sock = send_get("/take")
      defer(function() sock:close() end)
      sock:settimeout(0.2)
      assert.is_nil(sock:receive(1)) -- still waiting
      sock:settimeout(helper.TEST_TIMEOUT)
      local res = assert(helper.request(srv.port, "POST", "/put", {}, "v1"))
      assert.equal("put\n", res.body)
      res = assert(helper.read_response(sock))
      assert.equal("took v1", res.body)
    end)

    it("a channel callback (on_open of a long poll) waits in take",
      function()
        local defer = helper.cleanup(finally)
        local sock = send_get("/poll")
        defer(function() sock:close() end)
        assert.equal("put\n",
          assert(helper.request(srv.port, "POST", "/put", {}, "v2")).body)
        local res = assert(helper.read_response(sock))
        assert.equal("polled v2", res.body)
      end)

    it("a timer callback's put wakes a waiting handler", function()
      local defer = helper.cleanup(finally)
      local sock = send_get("/take")
      defer(function() sock:close() end)
      socket.sleep(0.05)
      assert.equal("armed\n",
        assert(helper.request(srv.port, "GET", "/timer")).body)
      assert.equal("took from a timer",
        assert(helper.read_response(sock)).body)
    end)

    it("costs no CPU while a handler waits (nothing polls)", function()
      local defer = helper.cleanup(finally)
      -- the ringlet process: the child of timeout(1)
      local f = assert(io.open(("/proc/%d/task/%d/children")
        :format(srv.pid, srv.pid)))
      local pid = assert(tonumber(f:read("a"):match("%d+")))
      f:close()
      local function cpu_ticks()
        local stat = assert(io.open("/proc/" .. pid .. "/stat")):read("a")
        local fields = {}
        for x in stat:match("^%d+ %b() (.*)$"):gmatch("%S+") do
          fields[#fields + 1] = x
        end
        return tonumber(fields[12]) + tonumber(fields[13]) -- utime, stime
      end
      local sock = send_get("/take")
      defer(function() sock:close() end)
      socket.sleep(0.05)
      local before = cpu_ticks()
      socket.sleep(0.5)
      local used = cpu_ticks() - before
      assert.is_true(used <= 5, used .. " ticks of CPU in 0.5 s of waiting")
      assert(helper.request(srv.port, "POST", "/put", {}, "v3"))
      assert.equal("took v3", assert(helper.read_response(sock)).body)
    end)
  end)
end)
