-- The fuzz targets' replay programs (fuzz/): each target's
-- LLVMFuzzerTestOneInput with a main() over files, built in every build
-- beside $RINGLET_BIN, runs the real core in-process over the seed corpus
-- (fuzz/corpus/<target>) and over every input that once crashed it
-- (fuzz/regressions/<target>, one test each). A replay exits 0, or aborts
-- on a finding; under the sanitized build (RINGLET_SANITIZE set) no
-- sanitizer report may appear either, leaks at exit included.
local helper = require "helper"

local BIN = helper.BIN
if BIN:sub(1, 1) ~= "/" then BIN = helper.ROOT .. "/" .. BIN end
local DIR = BIN:match("^(.*)/[^/]*$") or "."
local SANITIZED = os.getenv("RINGLET_SANITIZE")

local TARGETS = { "http", "websocket", "proxy", "response", "client" }

local function files(dir)
  local out = {}
  local p = io.popen("ls -1 " .. helper.quote(dir) .. " 2>/dev/null")
  for name in p:lines() do
    if name:sub(1, 1) ~= "." then out[#out + 1] = name end
  end
  p:close()
  table.sort(out)
  return out
end

local function replay(target, path)
  local exe = DIR .. "/ringlet_fuzz_replay_" .. target
  assert(io.open(exe, "rb"), "no " .. exe .. ": build it (RINGLET_TESTS=ON)"):close()
  -- FUZZ_KNOWN unset: a finding not fixed yet fails here
  local p = assert(io.popen("env -u FUZZ_KNOWN timeout -k 5 120 "
    .. helper.quote(exe) .. " " .. helper.quote(path) .. " 2>&1"))
  local out = p:read("a")
  local ok, how, code = p:close()
  assert.is_true(ok, ("%s %s: exit %s %s:\n%s"):format(exe, path, how, code,
    out:sub(-4000)))
  assert.matches("replayed %d+ inputs", out)
  if SANITIZED then
    for _, mark in ipairs({ "ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                            "runtime error:", "UndefinedBehaviorSanitizer" }) do
      assert.is_nil(out:find(mark, 1, true),
        ("a sanitizer report (%s):\n%s"):format(mark, out:sub(-4000)))
    end
  end
  return out
end

for _, target in ipairs(TARGETS) do
  describe("fuzz_" .. target .. " replay", function()
    local corpus = helper.ROOT .. "/fuzz/corpus/" .. target
    it("runs the seed corpus fuzz/corpus/" .. target, function()
      assert.is_true(#files(corpus) > 0, "no seeds in " .. corpus)
      local out = replay(target, corpus)
      assert.matches(("replayed %d inputs"):format(#files(corpus)), out)
    end)
    local regressions = helper.ROOT .. "/fuzz/regressions/" .. target
    for _, name in ipairs(files(regressions)) do
      it("runs fuzz/regressions/" .. target .. "/" .. name, function()
        replay(target, regressions .. "/" .. name)
      end)
    end
  end)
end
