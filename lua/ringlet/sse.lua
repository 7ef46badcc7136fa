--- Server-sent events over an HTTP stream channel, in the manner of
-- Immutant's `immutant.web.sse`.
--
-- `as_channel` answers a request with `text/event-stream` and makes it an
-- HTTP stream channel (`ringlet.as_channel`); `send` writes one event,
-- `comment` one comment (a keep-alive), `format` gives an event's text (to
-- broadcast it to a group). Everything else is the core channel: `ch:close()`,
-- `ch:is_open()`, `ch:buffered_amount()`, groups.
--
-- The wire format (WHATWG HTML, "Server-sent events"): each call writes one
-- block of lines ending with an empty line, as one chunk. A field is written
-- `name: value` (`name:` when the value is empty), so a value that starts
-- with a space keeps it. Fields come in this order: comment lines, `id`,
-- `event`, `retry`, then one `data` line per line of data.
--
-- @module ringlet.sse

local ringlet = require "ringlet"

local sse = {}

-- The headers every event stream gets unless the response sets them (names
-- compared case-insensitively): the media type, no caching anywhere, and no
-- buffering in nginx (its X-Accel-Buffering), which would hold the events.
local DEFAULTS = {
  { "content-type", "text/event-stream; charset=utf-8" },
  { "cache-control", "no-cache" },
  { "x-accel-buffering", "no" },
}

local FIELDS = { comment = true, id = true, event = true, retry = true,
                 data = true }

-- Appends one line per line of `text` (split at CRLF, LF or CR) to out,
-- each `name: line` (`name:` for an empty line).
local function add_lines(out, name, text)
  local function add(line)
    out[#out + 1] = line == "" and name .. ":\n" or name .. ": " .. line .. "\n"
  end
  if not text:find("[\r\n]") then
    add(text)
    return
  end
  text = text:gsub("\r\n?", "\n")
  local pos = 1
  while true do
    local nl = text:find("\n", pos, true)
    if not nl then
      add(text:sub(pos))
      return
    end
    add(text:sub(pos, nl - 1))
    pos = nl + 1
  end
end

-- true when t is a sequence 1..#t with nothing else in it.
local function is_array(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t
end

-- Adds the lines of a data or comment value: a string, a number, or an
-- array of those (one line or more each). Returns nil, why when it is none.
local function add_text(out, name, what, v)
  local t = type(v)
  if t == "string" then
    add_lines(out, name, v)
  elseif t == "number" then
    add_lines(out, name, tostring(v))
  elseif t == "table" and is_array(v) then
    for i = 1, #v do
      local item = v[i]
      if type(item) == "string" then
        add_lines(out, name, item)
      elseif type(item) == "number" then
        add_lines(out, name, tostring(item))
      else
        return nil, ("%s[%d] must be a string or a number (got %s)")
          :format(what, i, type(item))
      end
    end
  else
    return nil, ("%s must be a string, a number or an array of strings "
      .. "(got %s)"):format(what, t == "table" and "a table with other keys"
      or t)
  end
  return true
end

-- The text of one event, or nil, why.
local function event_text(ev)
  local out = {}
  local t = type(ev)
  if t == "string" or t == "number" then
    add_lines(out, "data", tostring(ev))
  elseif t ~= "table" then
    return nil, "an event must be a string, an array of strings or a table "
      .. "of fields (got " .. t .. ")"
  elseif ev[1] ~= nil then
    if not is_array(ev) then
      return nil, "an event table is an array of data lines or a table of "
        .. "fields, not both"
    end
    local ok, why = add_text(out, "data", "the event", ev)
    if not ok then return nil, why end
  else
    for k in pairs(ev) do
      if not FIELDS[k] then
        return nil, ("unknown field %s (an event's fields are comment, id, "
          .. "event, retry and data)"):format(type(k) == "string"
          and "'" .. k .. "'" or "of type " .. type(k))
      end
    end
    if ev.comment ~= nil then
      local ok, why = add_text(out, "", "comment", ev.comment)
      if not ok then return nil, why end
    end
    local id = ev.id
    if id ~= nil then
      if math.type(id) == "integer" then
        id = ("%d"):format(id)
      elseif type(id) ~= "string" then
        return nil, "id must be a string or an integer (got "
          .. (math.type(id) or type(id)) .. ")"
      elseif id:find("[\r\n]") then
        return nil, "id must not contain CR or LF"
      elseif id:find("\0", 1, true) then
        return nil, "id must not contain NUL (a browser would ignore it)"
      end
      add_lines(out, "id", id)
    end
    local event = ev.event
    if event ~= nil then
      if type(event) ~= "string" then
        return nil, "event must be a string (got " .. type(event) .. ")"
      elseif event:find("[\r\n]") then
        return nil, "event must not contain CR or LF"
      end
      add_lines(out, "event", event)
    end
    local retry = ev.retry
    if retry ~= nil then
      local ms = type(retry) == "number" and math.tointeger(retry)
      if not ms or ms < 0 then
        return nil, "retry must be an integer >= 0 (milliseconds), got "
          .. tostring(retry)
      end
      add_lines(out, "retry", ("%d"):format(ms))
    end
    if ev.data ~= nil then
      local ok, why = add_text(out, "data", "data", ev.data)
      if not ok then return nil, why end
    end
  end
  if #out == 0 then
    return nil, "the event has no line to send (give data, event, id, retry "
      .. "or comment)"
  end
  out[#out + 1] = "\n"
  return table.concat(out)
end

local function check_channel(name, ch)
  if type(ch) ~= "userdata" then
    error(("sse.%s: ch must be a channel (got %s)"):format(name, type(ch)), 3)
  end
end

--- The text of one event, as `send` would write it.
-- Useful to send the same event to many channels: a group broadcast of
-- this string reaches each event-stream member as one chunk.
-- @param event a string (the data), a number (its `tostring` is the data),
--   an array of strings (one `data` line each), or a table of fields:
--
--   - `data`: a string, number or array of strings; text with line breaks
--     (CRLF, LF or CR) becomes one `data` line per line, so the browser's
--     `event.data` is the text with LF between the lines;
--   - `event`: the event type (a string without CR or LF);
--   - `id`: the event id (a string without CR, LF or NUL, or an integer);
--     the browser sends the last one back as `Last-Event-ID` when it
--     reconnects; `""` resets it;
--   - `retry`: the reconnection delay in ms (an integer >= 0);
--   - `comment`: comment lines (a string or array; ignored by browsers).
--
--   A table without `data` sends no data line: the browser then fires no
--   event but still takes the `id` and `retry`.
-- @treturn string the lines of the event, ending with an empty line
-- @raise on a bad event: a value of the wrong type, CR or LF in `event` or
--   `id`, NUL in `id`, an unknown field, or nothing to send
-- @usage
-- local text = sse.format({ id = 7, event = "price", data = "42.10" })
-- -- "id: 7\nevent: price\ndata: 42.10\n\n"
-- prices:broadcast(text)   -- a ringlet.group of sse channels
function sse.format(event)
  local text, why = event_text(event)
  if not text then error("sse.format: " .. why, 2) end
  return text
end

--- Formats one event and sends it on the channel (one chunk).
-- @param ch a channel from `as_channel`
-- @param event a string, number, array of strings or table of fields: see
--   `format`
-- @tparam[opt] table opts the options of `ch:send`: `close` (true: end the
--   stream after this event; the connection then serves its next request),
--   `on_success()`, `on_error(err)`
-- @return what `ch:send` returns: true when the event was queued, nil when
--   the channel was already closed (false if the core refuses it: a full
--   send buffer)
-- @raise on a bad event (see `format`; nothing is sent), or bad options
-- @usage
-- sse.send(ch, "hello")                     -- data: hello
-- sse.send(ch, "two\nlines")                -- data: two / data: lines
-- sse.send(ch, { "a", "b" })                -- data: a / data: b
-- sse.send(ch, { id = 3, event = "tick", data = os.date() })
-- sse.send(ch, { retry = 2000 })            -- reconnect after 2 s
-- sse.send(ch, "bye", { close = true })     -- and end the stream
function sse.send(ch, event, opts)
  check_channel("send", ch)
  local text, why = event_text(event)
  if not text then error("sse.send: " .. why, 2) end
  return ch:send(text, opts)
end

--- Sends a comment: lines starting with a colon, which browsers ignore.
-- Sent every 15 s or so, it keeps proxies from closing a quiet stream.
-- @param ch a channel from `as_channel`
-- @param[opt] text the comment (a string, number or array of strings; line
--   breaks make more comment lines); nil or `""` sends a bare `:` line
-- @tparam[opt] table opts the options of `ch:send`, as for `send`
-- @return what `ch:send` returns (true, or nil when the channel was closed)
-- @usage
-- sse.comment(ch, "hello")            -- ": hello\n\n"
-- local function keep_alive()         -- ":\n\n" every 15 s while open
--   if sse.comment(ch) then ringlet.timer(15000, keep_alive) end
-- end
-- ringlet.timer(15000, keep_alive)
function sse.comment(ch, text, opts)
  check_channel("comment", ch)
  local out = {}
  local ok, why = add_text(out, "", "comment", text == nil and "" or text)
  if not ok then error("sse.comment: " .. why, 2) end
  if #out == 0 then out[1] = ":\n" end -- an empty array
  out[#out + 1] = "\n"
  return ch:send(table.concat(out), opts)
end

-- The head's headers: for each default, the response's own value (any
-- letter case; a name not in lower case is the user's, so it wins over our
-- lower-case entry), else the default.
local function head_headers(headers)
  local out = {}
  for _, d in ipairs(DEFAULTS) do
    local name, value = d[1], nil
    if type(headers) == "table" then
      for k, v in pairs(headers) do
        if type(k) == "string" and k ~= name and k:lower() == name then
          value = v
        end
      end
      if value == nil then value = headers[name] end
    end
    out[name] = value == nil and d[2] or value
  end
  return out
end

--- Answers a request with an event stream; returns the response for the
-- handler to return (as `ringlet.as_channel` does).
--
-- The response's headers hold `content-type: text/event-stream;
-- charset=utf-8`, `cache-control: no-cache` and `x-accel-buffering: no`
-- (so nginx passes events on at once). The handler may change the response
-- before returning it: its own status and headers are kept, and a default
-- it does not set (in any letter case) is added when the head goes out, so
-- replacing `res.headers` keeps the event-stream type. A browser's
-- EventSource accepts only status 200 and this media type.
--
-- The head is sent as the channel opens, before `opts.on_open` runs: the
-- browser sees the stream open (EventSource's `open` event) at once, even
-- when the first event comes much later, and a group sends this channel
-- chunks (never a long-poll's whole response). Return a plain response
-- instead (e.g. 204, which tells EventSource not to reconnect) to refuse.
--
-- A WebSocket upgrade request gets a WebSocket channel, as from
-- `ringlet.as_channel`; `send` then sends each event's text as a text
-- message.
-- @tparam table req the request the handler got
-- @tparam[opt] table opts the options of `ringlet.as_channel`: `on_open(ch)`,
--   `on_close(ch, info)`, `on_error(ch, err)`, `on_drain(ch)`, `timeout`
--   (ms: the stream is closed once it has been open that long),
--   `max_buffered`, ...
-- @treturn table the response: `{status = 200, headers = {...}, body = ch}`
-- @raise on bad options (as `ringlet.as_channel`)
-- @usage
-- local ringlet = require "ringlet"
-- local sse = require "ringlet.sse"
-- return function(req)
--   local res = sse.as_channel(req, {
--     on_open = function(ch)
--       local n = tonumber(req.headers["last-event-id"]) or 0
--       sse.send(ch, { id = n + 1, data = "hello" })
--     end,
--   })
--   res.headers["set-cookie"] = "seen=1"    -- kept beside the defaults
--   return res
-- end
function sse.as_channel(req, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("sse.as_channel: opts must be a table (got " .. type(opts) .. ")", 2)
  end
  local copy = {}
  for k, v in pairs(opts or {}) do copy[k] = v end
  local user_open = copy.on_open
  if user_open ~= nil and type(user_open) ~= "function" then
    error("sse.as_channel: option 'on_open' must be a function", 2)
  end
  local res
  copy.on_open = function(ch)
    if not ch:is_websocket() then
      -- the head alone (an empty body adds no chunk)
      ch:send({ headers = head_headers(res.headers), body = "" })
    end
    if user_open then return user_open(ch) end
  end
  res = ringlet.as_channel(req, copy)
  if not req.websocket then
    for _, d in ipairs(DEFAULTS) do res.headers[d[1]] = d[2] end
  end
  return res
end

return sse
