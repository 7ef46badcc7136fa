-- examples/hello.lua, tested as an app's own specs would test it: the app
-- file started in this process with ringlet.test, and its handler called
-- directly with a request table.
--
-- From the repository root (examples/spec/README.md):
--   busted --lua=lua5.4 --cpath=build/?.so --lpath=lua/?.lua examples/spec

local test = require "ringlet.test"

-- the app beside this spec's directory, wherever busted runs from
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local APP = here .. "/../hello.lua"

describe("examples/hello.lua", function()
  local app

  setup(function() app = test.start(APP) end)
  teardown(function() app:stop() end)

  it("answers GET / with Hello, World!", function()
    local res = assert(app:get("/"))
    assert.equal(200, res.status)
    assert.equal("text/plain", res.headers["content-type"])
    assert.equal("Hello, World!", res.body)
  end)

  it("answers every path and method the same", function()
    local res = assert(app:get("/any/path?x=1"))
    assert.equal("Hello, World!", res.body)
    res = assert(app:post("/form", "a=1"))
    assert.equal(200, res.status)
    assert.equal("Hello, World!", res.body)
    res = assert(app:request{ method = "DELETE", path = "/item/7" })
    assert.equal("Hello, World!", res.body)
  end)

  it("keeps the connection alive between requests", function()
    for _ = 1, 20 do
      assert.equal("Hello, World!", assert(app:get("/")).body)
    end
  end)

  it("is a plain function of the request (no server)", function()
    local handler = dofile(APP)
    assert.same({ status = 200, headers = { ["content-type"] = "text/plain" },
                  body = "Hello, World!" },
      handler(test.request("get", "/")))
    assert.equal("Hello, World!",
      handler(test.request("post", "/x", { params = { a = "1" } })).body)
  end)
end)
