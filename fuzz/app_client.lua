-- The client side of fuzz_client: start(port, cfg) makes one call to
-- 127.0.0.1:port in a task, reads all of its answer, and checks what the
-- client promises of a result (fuzz_trap when it breaks one); done() says
-- the call has ended; check() runs once the server has closed.
--
--   cfg bits 0-1  the call: client.request GET, a HEAD, client.stream read
--                 to its end, client.websocket (send, receive until closed)
--   cfg bit  2    max_body 64 (else the default)
--   cfg bit  3    max_header 256 (else the default)
--   cfg bit  4    max_message 16 (websocket; else 4096)
-- luacheck: read globals fuzz_trap
local ringlet = require "ringlet"
local client = ringlet.client
local trap = fuzz_trap

local M = {}
local state = { done = true }
local DEBUG = os.getenv("FZ_DEBUG") -- one line per call on stderr

local function say(...)
  if DEBUG then
    local t = table.pack(...)
    for i = 1, t.n do t[i] = tostring(t[i]) end
    io.stderr:write("app_client: ", table.concat(t, " "), "\n")
  end
end

local function check_error(err)
  if type(err) ~= "string" or err == "" then
    trap("a failed call's error is a " .. type(err))
  end
end

local function check_response(res, opts, with_body)
  if type(res) ~= "table" then trap("the response is a " .. type(res)) end
  if math.type(res.status) ~= "integer" or res.status < 100 or res.status > 999 then
    trap("a status " .. tostring(res.status))
  end
  if type(res.headers) ~= "table" then trap("headers") end
  for k, v in pairs(res.headers) do
    if type(k) ~= "string" or k ~= k:lower() or type(v) ~= "string" then
      trap("a header " .. tostring(k))
    end
  end
  if res.protocol ~= "HTTP/1.1" and res.protocol ~= "HTTP/1.0" then trap("protocol") end
  if with_body then
    if type(res.body) ~= "string" then trap("body") end
    if opts.max_body and #res.body > opts.max_body then trap("a body over max_body") end
    if opts.method == "HEAD" and res.body ~= "" then trap("a body after HEAD") end
  end
end

local function call(port, cfg)
  local kind = cfg & 3
  local opts = {
    url = "http://127.0.0.1:" .. port .. "/fuzz",
    timeout = 20000,
    keepalive = false,
    max_body = cfg & 4 ~= 0 and 64 or nil,
    max_header = cfg & 8 ~= 0 and 256 or nil,
  }
  if kind == 0 or kind == 1 then
    if kind == 1 then opts.method = "HEAD" end
    local res, err = client.request(opts)
    say("request", res and res.status, res and #res.body, err)
    if res then check_response(res, opts, true) else check_error(err) end
  elseif kind == 2 then
    opts.max_body = nil
    local res, err = client.stream(opts)
    say("stream", res and res.status, err)
    if not res then return check_error(err) end
    check_response(res, opts, false)
    local n = 0
    while true do
      local piece, perr = res.body()
      if piece == nil then
        if perr ~= nil then check_error(perr) end
        break
      end
      if type(piece) ~= "string" or piece == "" then trap("a piece that is not a string") end
      n = n + 1
      if n > 100000 then trap("pieces without end") end
    end
  else
    local ws, err, res = client.websocket("ws://127.0.0.1:" .. port .. "/fuzz", {
      timeout = 20000, max_message = cfg & 16 ~= 0 and 16 or 4096,
      on_close = function(_, info)
        if math.type(info.code) ~= "integer" then trap("a close code " .. tostring(info.code)) end
        state.closes = (state.closes or 0) + 1
      end,
    })
    say("websocket", ws, err, res and res.status)
    if not ws then
      check_error(err)
      -- (a refusal's body is read up to 64 KiB, whatever max_body says)
      if res ~= nil then check_response(res, { max_body = 65536 }, true) end
      return
    end
    state.ws = true
    ws:send("hello")
    while true do
      local msg, binary = ws:receive(20000)
      if msg == nil then
        if binary ~= "closed" then trap("receive ended with " .. tostring(binary)) end
        break
      end
      say("message", #msg, binary)
      if type(msg) ~= "string" or type(binary) ~= "boolean" then trap("a message") end
      if #msg > (cfg & 16 ~= 0 and 16 or 4096) then trap("a message over max_message") end
    end
    ws:close()
  end
end

function M.start(port, cfg)
  state = { done = false }
  ringlet.timer(0, function()
    local ok, err = pcall(call, port, cfg)
    state.done = true
    if not ok then trap("the call raised: " .. tostring(err)) end
  end)
end

function M.done() return state.done end

function M.check()
  if state.ws then
    if state.closes ~= 1 then trap("on_close ran " .. tostring(state.closes) .. " times") end
  end
end

return M
