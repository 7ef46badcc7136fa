-- Shared helpers for ringlet's busted specs.
--
-- Every server under test runs in a child process started from the ringlet
-- CLI ($RINGLET_BIN, default build/ringlet), never inside the busted
-- process: sanitizer CI points RINGLET_BIN at an ASAN build, and a leak or a
-- sanitizer report then shows as a non-zero exit status from `stop()`.
--
-- API (the module returns this table; it sets no globals):
--
--   helper.TEST_TIMEOUT            seconds (10, or $RINGLET_TEST_TIMEOUT);
--                                  bounds every wait in the specs.
--   helper.BIN                     the CLI path in use.
--
--   helper.start(app)              app: Lua source of app.lua (a string), or
--                                  a table {source = string, args = {...},
--                                  env = {NAME = value}, nofile = N}
--                                  (args are extra CLI arguments, env
--                                  extra variables, NAME = false unsets
--                                  one; nofile: ulimit -n for it).
--                                  Starts `ringlet file --port 0 --ip
--                                  127.0.0.1`, waits for its "listening"
--                                  line and returns a server object:
--     srv.port, srv.pid            bound port; pid of the process we signal.
--     srv:stop([signame])          sends SIGTERM (or SIG<signame>, e.g.
--                                  "INT") unless srv:signal already sent
--                                  one, waits for exit; returns the exit
--                                  status (0 on a clean exit; 128+n when it
--                                  died of signal n; 124/137 when timeout(1)
--                                  had to kill it). Idempotent.
--     srv:signal(signame)          sends a signal to ringlet, no waiting.
--     srv:stderr()                 everything the server wrote to stderr.
--     srv:stdout()                 stdout after the listening line (complete
--                                  only after stop()).
--     srv:alive()                  true while the process has not exited.
--   Always stop servers in `finally` (or in teardown).
--
--   helper.cleanup(finally)        busted keeps only the last function
--                                  handed to `finally` in one `it`, so an
--                                  `it` with more than one cleanup calls
--                                  this once, passing busted's `finally`,
--                                  and gets defer(fn): each fn deferred runs
--                                  when the `it` ends, pass or fail, last
--                                  deferred first. Every fn runs even when
--                                  one raises; the first error is raised
--                                  again once all have run. Do not call
--                                  `finally` again in that `it`.
--
--   helper.run_script(source [, args])
--                                  runs `ringlet file` to completion (bounded
--                                  by timeout(1)); returns ok (exit status
--                                  0), stdout, stderr, status.
--
--   helper.connect(port)           LuaSocket TCP client on 127.0.0.1 with
--                                  settimeout(TEST_TIMEOUT); or nil, err.
--   helper.request_bytes(method, path, headers, body [, version])
--                                  formats one request. headers: a map
--                                  name -> string or array of strings (one
--                                  line each), or an array of {name, value}
--                                  pairs (exact order). No header is added.
--   helper.read_response(sock [, method])
--                                  reads one HTTP/1.x response (sock may also
--                                  be helper.string_reader(bytes)). Returns
--                                  {
--                                    version = "HTTP/1.1", status = 200,
--                                    reason = "OK",
--                                    headers = {name = value},  -- names
--                                      -- lower-cased; a repeated header's
--                                      -- values joined with ", "
--                                    header_list = {{name, value}, ...},
--                                      -- every line in order (lower-cased
--                                      -- names, values as sent)
--                                    body = string,   -- "" when none
--                                    chunks = {...},  -- chunked only: the
--                                      -- data of each chunk, in order
--                                    trailers = {...},-- chunked only
--                                    closed = true,   -- body read to close
--                                    bad_line_ending = true, -- a head line
--                                      -- did not end in CRLF
--                                  }
--                                  or nil, err. 1xx, 204, 304 and responses
--                                  to HEAD have no body; a 1xx is returned
--                                  as it is (read again for the final one).
--   helper.parse_responses(bytes [, method])
--                                  every complete response in bytes (array),
--                                  plus the unparsed rest.
--   helper.request(port, method, path [, headers [, body]])
--                                  one request on a new connection. Adds
--                                  Host: 127.0.0.1:port unless headers has
--                                  host (host = false omits it) and a
--                                  Content-Length for a body unless
--                                  content-length or transfer-encoding is
--                                  given. Returns the response or nil, err.
--   helper.raw(port, bytes)        sends bytes and reads until the server
--                                  closes or TEST_TIMEOUT passes; returns
--                                  data, closed (boolean).
--   helper.curl(...)               runs curl -sS --max-time TEST_TIMEOUT
--                                  with these arguments; returns stdout,
--                                  exit status, stderr.
--   helper.wait_until(fn [, timeout])
--                                  polls fn until it returns a truthy value
--                                  (returned) or the timeout passes (false).
--   helper.closed(sock)            true when the peer closed sock within
--                                  TEST_TIMEOUT (data read first is
--                                  discarded).
--
--   helper.SERIALIZER              Lua source defining a local function
--                                  `serialize(value)` for app sources; its
--                                  output is a Lua expression.
--   helper.decode(text)            the value of a serialized expression.
--   helper.quote(s)                s quoted for sh.
--   helper.json(value)             JSON text for a Lua value made of
--                                  strings, numbers, booleans and tables
--                                  (a table with [1], or an empty one, is
--                                  an array; else an object).
--   helper.read_file(name)         a file's contents ("" when unreadable).
--   helper.exists(name)            true when the file can be opened.
--   helper.marker_path()           a fresh temporary path, no file there.
--   helper.assert_clean_stop(srv)  stops srv; raises unless it exited 0
--                                  with no traceback in its stderr.
--   helper.contains(list, item)    true when the array holds item.
--   helper.sorted(list)            a sorted copy of an array.
--
--   helper.ROOT                    the repository's root, absolute (app
--                                  files are written to /tmp, so paths
--                                  handed to them must not be relative).
--   helper.repo_file(path)         the contents of ROOT/path; raises when
--                                  it cannot be read (examples' sources).
--
-- An app's event log, read back over HTTP. Apps under test run in another
-- process, so their callbacks record what they saw in a log that a route
-- answers, serialized:
--   helper.EVENT_LOG               Lua source for an app: SERIALIZER, then
--                                  `log` (an array), `record(...)` (appends
--                                  its arguments through tostring, joined
--                                  with spaces), `routes` (path -> handler)
--                                  with routes["/events"] answering the
--                                  log.
--   helper.DISPATCH                Lua source ending such an app: returns
--                                  the handler calling routes[req.uri]
--                                  (404 for any other path).
--   helper.get_value(srv, path)    GET path on srv, which must answer 200;
--                                  returns the body decoded (decode).
--   helper.events(srv [, tag])     get_value of /events (/events?tag).
--   helper.wait_events(srv, item, ...)
--                                  waits until the log (/events) holds
--                                  every item given, then reads it once
--                                  more (a callback firing twice has had
--                                  one more round trip to show) and
--                                  returns it; raises, showing the log,
--                                  after TEST_TIMEOUT.
--
-- Node clients (spec/node, whose node_modules scripts/node-deps.sh
-- installs). Each script is bounded by $RINGLET_TEST_TIMEOUT (set to
-- TEST_TIMEOUT for it) and by timeout(1) on top:
--   helper.missing(what)           nil when the client can run, else why
--                                  not (a string): what is "ws" (node and
--                                  its ws package) or "browser" (node,
--                                  playwright-core and Chromium:
--                                  $CHROMIUM or /usr/bin/chromium).
--   helper.it_needs(what, it, pending)
--                                  an `it` for specs that need `what`:
--                                  pass busted's it and pending; it calls
--                                  it(name, fn), or pending(name .. "
--                                  [pending: REASON]") when missing(what).
--   helper.it_unless(why, it, pending)
--                                  the same for any condition: why() returns
--                                  the reason a spec cannot run here (nginx
--                                  or ::1 missing...) or nil.
--   helper.node(script, ...)       runs node spec/node/SCRIPT with these
--                                  arguments; returns stdout, exit status,
--                                  stderr.
--   helper.node_start(script, args [, bound])
--                                  the same without waiting (args an
--                                  array; bound: the timeout(1) bound in
--                                  seconds, default 10 * TEST_TIMEOUT);
--                                  returns a handle whose :wait() returns
--                                  stdout, exit status, stderr.
--   helper.assert_ws_client(port [, path])
--                                  runs spec/node/ws_client.js (every size
--                                  of text and binary echoed byte for byte,
--                                  fragments, ping, close 1000) against an
--                                  echo server; raises unless it passed
--                                  and the close was answered with 1000.
--   helper.ws_sessions(port, sessions)
--                                  runs spec/node/ws_script.js: scripted
--                                  sessions with Node's `ws`, one after
--                                  the other, in one process. sessions: an
--                                  array of {path = "/x", steps = STEPS,
--                                  protocol = "a,b", save = FILE}, STEPS a
--                                  Lua array of steps (sent as JSON; write
--                                  {["until"] = n}) or JSON text. The
--                                  steps, the record and its events are
--                                  described at the top of ws_script.js.
--                                  Returns the records, one per session;
--                                  raises when the script printed none or
--                                  a record has an error (a wait that ran
--                                  out, an error ws reported), removing
--                                  any save file.
--   helper.ws_session(port, path [, steps [, opts]])
--                                  one session: ws_sessions(port, {{path =
--                                  path, steps = steps, protocol =
--                                  opts.protocol, save = opts.save}})[1].
--   helper.ws_start(port, sessions)
--                                  ws_sessions without waiting: returns a
--                                  handle whose :records() returns them
--                                  (several clients at once).
--   helper.ws_messages(rec)        a record's messages in order, each
--                                  {binary (boolean), payload}; raises for
--                                  one too long to have been recorded.
--   helper.ws_texts(rec)           the same as strings: the text, or "bin:"
--                                  and the hex of a binary payload.
--   helper.ws_data(rec, type)      the data of a record's events of a type
--                                  ("ping", "pong", "fetch", "message"),
--                                  in order.

local socket = require "socket"

local helper = {}

helper.TEST_TIMEOUT = tonumber(os.getenv("RINGLET_TEST_TIMEOUT")) or 10

helper.BIN = os.getenv("RINGLET_BIN") or "build/ringlet"

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
helper.quote = quote

local function write_file(name, text)
  local f = assert(io.open(name, "wb"))
  assert(f:write(text))
  assert(f:close())
end

local function read_file(name)
  local f = io.open(name, "rb")
  if not f then return "" end
  local text = f:read("a") or ""
  f:close()
  return text
end
helper.read_file = read_file -- "" when it cannot be read

-- source, args, and "NAME=value ..." for env(1) (app.env: a map)
local function app_of(app)
  if type(app) == "table" then
    local env = {}
    for k, v in pairs(app.env or {}) do
      env[#env + 1] = v == false and "-u " .. quote(k) or quote(k .. "=" .. v)
    end
    table.sort(env) -- the -u options first, as env(1) wants them
    return assert(app.source, "app.source missing"), app.args or {},
      table.concat(env, " "), app.nofile
  end
  return app, {}, ""
end

local function join_args(args)
  local parts = {}
  for i, a in ipairs(args) do parts[i] = quote(a) end
  return table.concat(parts, " ")
end

-- Linux: a process we have not reaped yet shows state Z in /proc/PID/stat.
local function exited(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  if stat == "" then return true end
  local state = stat:match("^%d+ %b() (%a)")
  return state == "Z" or state == "X"
end

local function children(pid)
  local text = read_file("/proc/" .. pid .. "/task/" .. pid .. "/children")
  local list = {}
  for child in text:gmatch("%d+") do list[#list + 1] = child end
  return list
end

local server_methods = {}
local server_mt = {
  __name = "helper.server",
  __index = server_methods,
  __tostring = function(s)
    return ("helper.server(port %s, pid %s)"):format(s.port, s.pid)
  end,
}

function server_methods:alive()
  return self.status == nil and not exited(self.pid)
end

function server_methods:stderr()
  return self.errtext or read_file(self.errfile)
end

function server_methods:stdout()
  return self.output
end

-- Signal ringlet itself (the child of timeout(1)), not timeout: timeout
-- would forward the signal twice (to the child and to its group).
function server_methods:signal(signame)
  assert(tostring(signame):match("^%u+$"), "signal name like TERM")
  if self.status ~= nil then return end
  self.signalled = true
  local target = children(self.pid)[1] or self.pid
  os.execute("kill -" .. signame .. " " .. target .. " 2>/dev/null")
end

function server_methods:stop(signame)
  if self.status ~= nil then return self.status end
  if not self.signalled then self:signal(signame or "TERM") end
  if not helper.wait_until(function() return exited(self.pid) end) then
    -- Still running: kill timeout's whole process group (ringlet too).
    os.execute("kill -KILL -- -" .. self.pid .. " 2>/dev/null")
  end
  local rest = self.pipe:read("a") or ""
  self.output = self.output .. rest
  local _, how, code = self.pipe:close()
  if how == "signal" then code = 128 + code end
  self.status = code
  self.errtext = read_file(self.errfile)
  os.remove(self.appfile)
  os.remove(self.errfile)
  return code
end

-- Servers start with every signal at its default action, as from a shell
-- or systemd: busted's LuaSocket ignores SIGPIPE, and an ignored signal
-- would be inherited through exec, hiding a server that dies of it.
local DEFAULT_SIGNALS = "env --default-signal"

function helper.start(app)
  local source, args, env, nofile = app_of(app)
  local appfile = os.tmpname()
  local errfile = os.tmpname()
  write_file(appfile, source)
  local cmd = ("echo $$; %sexec timeout -k 5 120 %s %s %s %s --port 0 "
    .. "--ip 127.0.0.1 %s </dev/null 2>%s"):format(
    nofile and ("ulimit -n %d; "):format(nofile) or "", DEFAULT_SIGNALS, env,
    quote(helper.BIN),
    quote(appfile), join_args(args), quote(errfile))
  local pipe = assert(io.popen(cmd, "r"))
  local pid = assert(tonumber(pipe:read("l")), "no pid from sh")
  local srv = setmetatable({
    pid = pid, pipe = pipe, appfile = appfile, errfile = errfile,
    output = "",
  }, server_mt)
  local port
  while true do
    local line = pipe:read("l")
    if not line then break end
    port = line:match("^ringlet: listening on http://[%d%.]+:(%d+)%s*$")
    if port then break end
    srv.output = srv.output .. line .. "\n"
  end
  if not port then
    local status = srv:stop()
    error(("ringlet did not start (status %s)\nstdout:\n%s\nstderr:\n%s")
      :format(status, srv.output, srv:stderr()), 2)
  end
  srv.port = tonumber(port)
  return srv
end

function helper.run_script(source, args)
  local appfile = os.tmpname()
  local errfile = os.tmpname()
  write_file(appfile, source)
  local cmd = ("exec timeout -k 5 %d %s %s %s %s </dev/null 2>%s"):format(
    helper.TEST_TIMEOUT * 3, DEFAULT_SIGNALS, quote(helper.BIN), quote(appfile),
    join_args(args or {}), quote(errfile))
  local pipe = assert(io.popen(cmd, "r"))
  local out = pipe:read("a") or ""
  local _, how, code = pipe:close()
  if how == "signal" then code = 128 + code end
  local err = read_file(errfile)
  os.remove(appfile)
  os.remove(errfile)
  return code == 0, out, err, code
end

function helper.connect(port)
  local sock = socket.tcp()
  sock:settimeout(helper.TEST_TIMEOUT)
  local ok, err = sock:connect("127.0.0.1", port)
  if not ok then
    sock:close()
    return nil, err
  end
  return sock
end

local function header_lines(headers)
  local lines = {}
  if headers == nil then return lines end
  if headers[1] ~= nil then
    for _, pair in ipairs(headers) do
      lines[#lines + 1] = pair[1] .. ": " .. pair[2] .. "\r\n"
    end
    return lines
  end
  local names = {}
  for name in pairs(headers) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local value = headers[name]
    if type(value) == "table" then
      for _, v in ipairs(value) do
        lines[#lines + 1] = name .. ": " .. v .. "\r\n"
      end
    elseif value ~= false then
      lines[#lines + 1] = name .. ": " .. tostring(value) .. "\r\n"
    end
  end
  return lines
end

function helper.request_bytes(method, path, headers, body, version)
  return method .. " " .. path .. " " .. (version or "HTTP/1.1") .. "\r\n"
    .. table.concat(header_lines(headers)) .. "\r\n" .. (body or "")
end

-- A reader over a string with the subset of LuaSocket's receive() that
-- read_response uses ("*l", "*a", a byte count).
local string_reader_methods = {}
local string_reader_mt = {
  __name = "helper.string_reader", __index = string_reader_methods,
}

function helper.string_reader(bytes)
  return setmetatable({ data = bytes, pos = 1 }, string_reader_mt)
end

function string_reader_methods:receive(pattern)
  local data, pos = self.data, self.pos
  if pattern == "*a" or pattern == "a" then
    self.pos = #data + 1
    return data:sub(pos)
  elseif pattern == "*l" or pattern == "l" then
    local nl = data:find("\n", pos, true)
    if not nl then
      self.pos = #data + 1
      return nil, "closed", data:sub(pos)
    end
    self.pos = nl + 1
    return (data:sub(pos, nl - 1):gsub("\r", ""))
  end
  local n = pattern
  if pos + n - 1 > #data then
    self.pos = #data + 1
    return nil, "closed", data:sub(pos)
  end
  self.pos = pos + n
  return data:sub(pos, pos + n - 1)
end

function string_reader_methods:rest()
  return self.data:sub(self.pos)
end

-- LuaSocket's "*l" drops CRs, so read head lines byte-wise enough to see
-- the line ending: receive the line, and use the raw string reader when we
-- have one. For sockets we check CRLF by reading lines with a pattern that
-- keeps them: receive("*l") strips CR, so we re-read with a byte count.
local function receive_line(sock)
  if getmetatable(sock) == string_reader_mt then
    local data, pos = sock.data, sock.pos
    local nl = data:find("\n", pos, true)
    if not nl then return nil, "closed" end
    sock.pos = nl + 1
    local line = data:sub(pos, nl - 1)
    local crlf = line:sub(-1) == "\r"
    if crlf then line = line:sub(1, -2) end
    return line, nil, crlf
  end
  local buf = {}
  while true do
    local c, err = sock:receive(1)
    if not c then return nil, err end
    if c == "\n" then break end
    buf[#buf + 1] = c
  end
  local line = table.concat(buf)
  local crlf = line:sub(-1) == "\r"
  if crlf then line = line:sub(1, -2) end
  return line, nil, crlf
end

local function read_head(sock, res)
  while true do
    local line, err, crlf = receive_line(sock)
    if not line then return nil, "reading header: " .. tostring(err) end
    if not crlf then res.bad_line_ending = true end
    if line == "" then return true end
    local name, value = line:match("^([^:%s]+):[ \t]*(.-)[ \t]*$")
    if not name then return nil, "malformed header line: " .. line end
    name = name:lower()
    res.header_list[#res.header_list + 1] = { name, value }
    if res.headers[name] then
      res.headers[name] = res.headers[name] .. ", " .. value
    else
      res.headers[name] = value
    end
  end
end

local function read_chunked(sock, res)
  local parts = {}
  while true do
    local line, err = receive_line(sock)
    if not line then return nil, "reading chunk size: " .. tostring(err) end
    local size = tonumber(line:match("^(%x+)"), 16)
    if not size then return nil, "bad chunk size line: " .. line end
    if size == 0 then break end
    local data, err2 = sock:receive(size)
    if not data then return nil, "reading chunk: " .. tostring(err2) end
    res.chunks[#res.chunks + 1] = data
    parts[#parts + 1] = data
    local crlf = sock:receive(2)
    if crlf ~= "\r\n" then return nil, "chunk not followed by CRLF" end
  end
  res.trailers = {}
  while true do
    local line, err = receive_line(sock)
    if not line then return nil, "reading trailers: " .. tostring(err) end
    if line == "" then break end
    res.trailers[#res.trailers + 1] = line
  end
  res.body = table.concat(parts)
  return true
end

function helper.read_response(sock, method)
  local line, err, crlf = receive_line(sock)
  if not line then return nil, err end
  local version, status, reason = line:match("^(HTTP/%d%.%d) (%d%d%d) ?(.*)$")
  if not version then return nil, "malformed status line: " .. line end
  local res = {
    version = version, status = tonumber(status), reason = reason,
    headers = {}, header_list = {}, body = "",
    bad_line_ending = not crlf or nil,
  }
  local ok, herr = read_head(sock, res)
  if not ok then return nil, herr end
  local s = res.status
  if (method and method:upper() == "HEAD") or s < 200 or s == 204
      or s == 304 then
    return res
  end
  local te = res.headers["transfer-encoding"]
  if te and te:lower():match("chunked%s*$") then
    res.chunks = {}
    local cok, cerr = read_chunked(sock, res)
    if not cok then return nil, cerr end
    return res
  end
  local cl = res.headers["content-length"]
  if cl then
    local n = tonumber(cl)
    if not n or cl:find(",") then return nil, "bad content-length: " .. cl end
    if n > 0 then
      local body, berr = sock:receive(n)
      if not body then return nil, "reading body: " .. tostring(berr) end
      res.body = body
    end
    return res
  end
  local body, berr, partial = sock:receive("*a")
  if not body then
    return nil, "reading body to close: " .. tostring(berr), partial
  end
  res.body = body
  res.closed = true
  return res
end

function helper.parse_responses(bytes, method)
  local reader = helper.string_reader(bytes)
  local list = {}
  while reader.pos <= #bytes do
    local start = reader.pos
    local res = helper.read_response(reader, method)
    if not res then
      reader.pos = start
      break
    end
    list[#list + 1] = res
  end
  return list, reader:rest()
end

function helper.request(port, method, path, headers, body)
  local h = {}
  local has = {}
  for k, v in pairs(headers or {}) do
    h[k] = v
    has[k:lower()] = true
  end
  if not has.host then h.Host = "127.0.0.1:" .. port end
  if body and not has["content-length"] and not has["transfer-encoding"] then
    h["Content-Length"] = tostring(#body)
  end
  local sock, err = helper.connect(port)
  if not sock then return nil, err end
  local ok, serr = sock:send(helper.request_bytes(method, path, h, body))
  if not ok then
    sock:close()
    return nil, serr
  end
  local res, rerr = helper.read_response(sock, method)
  sock:close()
  return res, rerr
end

function helper.raw(port, bytes)
  local sock, err = helper.connect(port)
  if not sock then return nil, err end
  sock:send(bytes)
  local data, rerr, partial = sock:receive("*a")
  sock:close()
  if data then return data, true end
  return partial or "", rerr == "closed"
end

function helper.closed(sock)
  local deadline = socket.gettime() + helper.TEST_TIMEOUT
  while socket.gettime() < deadline do
    local _, err = sock:receive(1)
    if err == "closed" then return true end
    if err == "timeout" then return false end
  end
  return false
end

function helper.curl(...)
  local args = { "curl", "-sS", "--max-time", tostring(helper.TEST_TIMEOUT) }
  for _, a in ipairs({ ... }) do args[#args + 1] = a end
  local errfile = os.tmpname()
  local pipe = assert(io.popen(join_args(args) .. " 2>" .. quote(errfile)))
  local out = pipe:read("a") or ""
  local _, _, code = pipe:close()
  local err = read_file(errfile)
  os.remove(errfile)
  return out, code, err
end

function helper.wait_until(fn, timeout)
  local deadline = socket.gettime() + (timeout or helper.TEST_TIMEOUT)
  while true do
    local v = fn()
    if v then return v end
    if socket.gettime() >= deadline then return false end
    socket.sleep(0.01)
  end
end

function helper.cleanup(finally)
  assert(type(finally) == "function",
    "helper.cleanup: pass busted's finally")
  local list = {}
  finally(function()
    local failed, first
    for i = #list, 1, -1 do
      local ok, err = pcall(list[i])
      if not ok and not failed then failed, first = true, err end
    end
    if failed then error(first, 0) end
  end)
  return function(fn)
    assert(type(fn) == "function", "defer: fn must be a function")
    list[#list + 1] = fn
  end
end

helper.SERIALIZER = [==[
local function serialize(v, seen)
  seen = seen or {}
  local t = type(v)
  if t == "string" then
    return string.format("%q", v)
  elseif t == "number" then
    if math.type(v) == "integer" then return string.format("%d", v) end
    return string.format("%.17g", v)
  elseif t == "boolean" or t == "nil" then
    return tostring(v)
  elseif t == "table" then
    if seen[v] then return '"<cycle>"' end
    seen[v] = true
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local out = {}
    for _, k in ipairs(keys) do
      out[#out + 1] = "[" .. serialize(k, seen) .. "]=" .. serialize(v[k], seen)
    end
    seen[v] = nil
    return "{" .. table.concat(out, ",") .. "}"
  end
  return string.format("%q", "<" .. t .. ">")
end
]==]

function helper.decode(text)
  local fn, err = load("return " .. tostring(text), "=serialized", "t", {})
  if not fn then
    error(("not a serialized value (%s): %q"):format(err,
      tostring(text):sub(1, 200)), 2)
  end
  return fn()
end

-- A fresh temporary path with no file behind it (for marker files).
function helper.marker_path()
  local name = os.tmpname()
  os.remove(name)
  return name
end

function helper.exists(name)
  local f = io.open(name, "r")
  if f then f:close() end
  return f ~= nil
end

-- Stops srv and checks it exited cleanly with no Lua error logged.
function helper.assert_clean_stop(srv)
  local status = srv:stop()
  local err = srv:stderr()
  assert(status == 0,
    "server exited with status " .. tostring(status) .. "; stderr:\n" .. err)
  assert(not err:find("traceback", 1, true),
    "server logged an error:\n" .. err)
end

function helper.contains(list, item)
  for _, v in ipairs(list) do
    if v == item then return true end
  end
  return false
end

function helper.sorted(list)
  local copy = { table.unpack(list) }
  table.sort(copy)
  return copy
end

function helper.json(v)
  local t = type(v)
  if t == "table" then
    local parts = {}
    if v[1] ~= nil or next(v) == nil then
      for i, x in ipairs(v) do parts[i] = helper.json(x) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    for _, k in ipairs(keys) do
      parts[#parts + 1] = helper.json(k) .. ":" .. helper.json(v[k])
    end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif t == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c)
      return ("\\u%04x"):format(c:byte())
    end) .. '"'
  elseif t == "number" or t == "boolean" then
    return tostring(v)
  end
  error("helper.json: cannot encode a " .. t, 2)
end

-- The repository's root: the parent of this file's directory.
helper.ROOT = (function()
  local me = debug.getinfo(1, "S").source:match("^@(.*)$") or ""
  local dir = me:match("^(.*)/[^/]*$") or "."
  local pipe = assert(io.popen("cd " .. quote(dir .. "/..") .. " && pwd"))
  local root = pipe:read("l")
  pipe:close()
  return assert(root, "cannot find the repository root")
end)()

function helper.repo_file(path)
  local f, err = io.open(helper.ROOT .. "/" .. path, "rb")
  if not f then error("cannot read " .. path .. ": " .. tostring(err), 2) end
  local text = f:read("a")
  f:close()
  return text
end

-- ---------------------------------------------------------------------------
-- An app's event log

helper.EVENT_LOG = helper.SERIALIZER .. [[
local log = {}
local function record(...)
  local t = table.pack(...)
  for i = 1, t.n do t[i] = tostring(t[i]) end
  log[#log + 1] = table.concat(t, " ", 1, t.n)
end
local routes = {}
routes["/events"] = function()
  return { status = 200, headers = { ["content-type"] = "text/plain" },
           body = serialize(log) }
end
]]

helper.DISPATCH = [[
return function(req)
  local route = routes[req.uri]
  if route then return route(req) end
  return { status = 404, body = "no route for " .. req.uri }
end
]]

function helper.get_value(srv, path)
  local res, err = helper.request(srv.port, "GET", path)
  if not res then error("GET " .. path .. ": " .. tostring(err), 2) end
  if res.status ~= 200 then
    error(("GET %s answered %d: %s"):format(path, res.status, res.body), 2)
  end
  return helper.decode(res.body)
end

function helper.events(srv, tag)
  return helper.get_value(srv, "/events" .. (tag and "?" .. tag or ""))
end

function helper.wait_events(srv, ...)
  local items = { ... }
  local log
  local found = helper.wait_until(function()
    log = helper.events(srv)
    for _, item in ipairs(items) do
      if not helper.contains(log, item) then return false end
    end
    return true
  end)
  if not found then
    error("events never came: " .. table.concat(items, " | ") .. "\nlog:\n"
      .. table.concat(log or {}, "\n"), 2)
  end
  return helper.events(srv)
end

-- ---------------------------------------------------------------------------
-- Node clients

local NODE_DIR = helper.ROOT .. "/spec/node"

local function have_command(name)
  return os.execute("command -v " .. quote(name) .. " >/dev/null 2>&1")
    == true
end

local function package_missing(name)
  if not helper.exists(NODE_DIR .. "/node_modules/" .. name
      .. "/package.json") then
    return "spec/node/node_modules/" .. name
      .. " is missing (scripts/node-deps.sh)"
  end
end

local NEEDS = {
  ws = function() return package_missing("ws") end,
  browser = function()
    local chromium = os.getenv("CHROMIUM") or "/usr/bin/chromium"
    return package_missing("playwright-core")
      or (not helper.exists(chromium)
        and chromium .. " is missing (scripts/node-deps.sh)")
      or nil
  end,
}
local missing_cache = {}

function helper.missing(what)
  local check = assert(NEEDS[what], "helper.missing: ws or browser")
  if missing_cache[what] == nil then
    missing_cache[what] = not have_command("node")
      and "node is not installed (scripts/node-deps.sh)"
      or check() or false
  end
  return missing_cache[what] or nil
end

function helper.it_unless(why, it, pending)
  assert(type(it) == "function" and type(pending) == "function",
    "helper.it_unless: pass busted's it and pending")
  -- Tail calls: busted then names the spec's line, not this one.
  return function(name, fn)
    local reason = why()
    if reason then return pending(name .. " [pending: " .. reason .. "]") end
    return it(name, fn)
  end
end

function helper.it_needs(what, it, pending)
  return helper.it_unless(function() return helper.missing(what) end, it,
    pending)
end

local node_methods = {}
local node_mt = { __name = "helper.node", __index = node_methods }

function helper.node_start(script, args, bound)
  local errfile = os.tmpname()
  local cmd = ("RINGLET_TEST_TIMEOUT=%d exec timeout -k 5 %d node %s %s "
    .. "</dev/null 2>%s"):format(helper.TEST_TIMEOUT,
    bound or helper.TEST_TIMEOUT * 10, quote(NODE_DIR .. "/" .. script),
    join_args(args or {}), quote(errfile))
  return setmetatable({ pipe = assert(io.popen(cmd, "r")), errfile = errfile },
    node_mt)
end

function node_methods:wait()
  if not self.status then
    self.out = self.pipe:read("a") or ""
    local _, how, code = self.pipe:close()
    if how == "signal" then code = 128 + code end
    self.status = code
    self.err = read_file(self.errfile)
    os.remove(self.errfile)
  end
  return self.out, self.status, self.err
end

function helper.node(script, ...)
  return helper.node_start(script, { ... }):wait()
end

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

local function last_object_line(out)
  local line
  for l in out:gmatch("[^\n]+") do
    if l:match("^{") then line = l end
  end
  return line
end

function helper.assert_ws_client(port, path)
  local out, code, err = helper.node("ws_client.js", tostring(port),
    path or "/")
  local line = last_object_line(out) or ""
  local ok = line:match('^{"ok":(%a+)') == "true"
  local close_code = tonumber(line:match('"close_code":(%d+)'))
  if not (code == 0 and ok and close_code == 1000) then
    error(("ws_client.js failed (exit %s, close %s):\n%s%s"):format(code,
      close_code, out, err), 2)
  end
end

local ws_methods = {}
local ws_mt = { __name = "helper.ws_script", __index = ws_methods }

function helper.ws_start(port, sessions)
  local parts, saves, paths = {}, {}, {}
  for i, s in ipairs(sessions) do
    paths[i] = s.path or "/"
    local steps = s.steps or "[]"
    if type(steps) ~= "string" then steps = helper.json(steps) end
    local fields = { '"path":' .. helper.json(s.path or "/"),
      '"steps":' .. steps }
    if s.protocol then
      fields[#fields + 1] = '"protocol":' .. helper.json(s.protocol)
    end
    if s.save then
      fields[#fields + 1] = '"save":' .. helper.json(s.save)
      saves[#saves + 1] = s.save
    end
    parts[i] = "{" .. table.concat(fields, ",") .. "}"
  end
  local node = helper.node_start("ws_script.js",
    { tostring(port), "[" .. table.concat(parts, ",") .. "]" },
    helper.TEST_TIMEOUT * (3 * #sessions + 2))
  return setmetatable({ node = node, saves = saves, paths = paths }, ws_mt)
end

function ws_methods:records()
  local out, code, err = self.node:wait()
  local line = last_object_line(out)
  local ok, records = pcall(helper.decode, line)
  local problem
  if not (line and ok and type(records) == "table") then
    problem = ("ws_script.js printed no record (exit %s):\n%s%s"):format(
      code, out, err)
  else
    for i, r in ipairs(records) do
      if r.error ~= nil and not problem then
        problem = ("ws_script.js: session %d (%s): %s\n%s"):format(i,
          self.paths[i], tostring(r.error), err)
      end
    end
  end
  if problem then
    for _, name in ipairs(self.saves) do os.remove(name) end
    error(problem, 2)
  end
  return records
end

function helper.ws_sessions(port, sessions)
  return helper.ws_start(port, sessions):records()
end

function helper.ws_session(port, path, steps, opts)
  assert(opts == nil or type(opts) == "table",
    "helper.ws_session: opts must be a table")
  opts = opts or {}
  return helper.ws_sessions(port, { {
    path = path, steps = steps, protocol = opts.protocol, save = opts.save,
  } })[1]
end

function helper.ws_messages(rec)
  local list = {}
  for _, e in ipairs(rec.events) do
    if e.type == "message" then
      assert(e.data, "a message of " .. tostring(e.len)
        .. " bytes: too long for ws_script.js to record its data")
      list[#list + 1] = { e.binary, e.data }
    end
  end
  return list
end

function helper.ws_texts(rec)
  local list = {}
  for i, m in ipairs(helper.ws_messages(rec)) do
    list[i] = m[1] and "bin:" .. hex(m[2]) or m[2]
  end
  return list
end

function helper.ws_data(rec, kind)
  local list = {}
  for _, e in ipairs(rec.events) do
    if e.type == kind then list[#list + 1] = e.data end
  end
  return list
end

return helper
