-- The smallest ringlet app: every request gets "Hello, World!".
-- It is also the app bench/run.sh measures.
--
--   ringlet examples/hello.lua --port 8090
--   curl http://127.0.0.1:8090/

local headers = { ["content-type"] = "text/plain" }

return function()
  return { status = 200, headers = headers, body = "Hello, World!" }
end
