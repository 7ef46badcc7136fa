-- Long-polling: GET /poll waits until someone publishes a message, and is
-- then answered with it as a plain response (send with close = true).
-- POST /publish hands its body to every waiting client. GET / serves a small
-- page that polls in a loop and has a form to publish.
--
--   ringlet examples/long_polling.lua --port 8090
--   curl http://127.0.0.1:8090/poll                       (waits)
--   curl -d 'hello' http://127.0.0.1:8090/publish         (in another shell)
--
-- A poll nobody answers within POLL_TIMEOUT gets 204 No Content, and the
-- client simply asks again.

local ringlet = require "ringlet"

local POLL_TIMEOUT = 25000 -- ms

local waiting = {} -- channel -> its timeout timer, for every open poll

local function poll(req)
  return ringlet.as_channel(req, {
    on_open = function(ch)
      waiting[ch] = ringlet.timer(POLL_TIMEOUT, function()
        waiting[ch] = nil
        ch:send({ status = 204, body = "" }, { close = true })
      end)
    end,
    on_close = function(ch)
      -- The answer was sent, or the client went away first.
      local timer = waiting[ch]
      if timer then timer:cancel() end
      waiting[ch] = nil
    end,
  })
end

local function publish(req)
  local message = req.body or ""
  local clients = waiting
  waiting = {}
  local delivered = 0
  for ch, timer in pairs(clients) do
    timer:cancel()
    local headers = { ["content-type"] = "text/plain" }
    if ch:send({ status = 200, headers = headers, body = message },
               { close = true }) then
      delivered = delivered + 1
    end
  end
  return {
    status = 200,
    headers = { ["content-type"] = "text/plain" },
    body = "delivered to " .. delivered .. " client(s)\n",
  }
end

local PAGE = [[
<!doctype html>
<meta charset="utf-8">
<title>ringlet long-polling</title>
<form id="f"><input id="m" autofocus> <button>publish</button></form>
<ul id="log"></ul>
<script>
const log = document.getElementById("log");
async function poll() {
  for (;;) {
    try {
      const res = await fetch("/poll");
      if (res.status === 200) {
        const li = document.createElement("li");
        li.textContent = await res.text();
        log.append(li);
      }
    } catch (e) {
      await new Promise(r => setTimeout(r, 1000));
    }
  }
}
document.getElementById("f").onsubmit = e => {
  e.preventDefault();
  const m = document.getElementById("m");
  fetch("/publish", { method: "POST", body: m.value });
  m.value = "";
};
poll();
</script>
]]

return function(req)
  if req.uri == "/poll" and req.request_method == "get" then
    return poll(req)
  elseif req.uri == "/publish" and req.request_method == "post" then
    return publish(req)
  elseif req.uri == "/" then
    return {
      status = 200,
      headers = { ["content-type"] = "text/html; charset=utf-8" },
      body = PAGE,
    }
  end
  return {
    status = 404,
    headers = { ["content-type"] = "text/plain" },
    body = "not found\n",
  }
end
