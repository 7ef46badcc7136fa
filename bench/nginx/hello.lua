-- GET /hello: 200 text/plain "Hello, World!" with a Content-Length, as
-- ringlet (bench/app.lua) and Node (bench/node/server.js) answer it.
-- luacheck: std ngx_lua

local BODY = "Hello, World!"

ngx.header["Content-Type"] = "text/plain"
ngx.header["Content-Length"] = #BODY
ngx.print(BODY)
