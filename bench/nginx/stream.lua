-- GET /stream: ten chunks "chunk N\n" in a chunked response, each flushed
-- to the socket before the next is made (ngx.flush(true) waits for it).
-- luacheck: std ngx_lua

ngx.header["Content-Type"] = "text/plain"
for n = 1, 10 do
  ngx.print("chunk ", n, "\n")
  ngx.flush(true)
end
