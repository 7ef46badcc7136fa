-- The C core's layers, checked: lists each csrc/ file's calls into other
-- files' functions (from the symbols of the built objects: what one object
-- leaves undefined and another defines) and each file's #include "..."
-- lines, and fails when either graph has a cycle: no two files may call
-- (or include) each other, directly or through a third.
--
--   lua5.4 scripts/layers.lua [BUILD_DIR] [-v]
--
-- BUILD_DIR (default build) holds the objects CMake made for rl_core. With
-- -v every edge is printed with the symbols behind it. Prints the files
-- bottom to top, each with the layer number it sits on (1 + the highest
-- layer it calls or includes).

local build, verbose = "build", false
for _, a in ipairs(arg) do
  if a == "-v" then verbose = true else build = a end
end

local function lines(cmd)
  local p = assert(io.popen(cmd))
  local t = {}
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  return t
end

local function base(path) return (path:match("([^/]+)$")) end

-- calls: object symbols
local objs = lines("find '" .. build .. "' -path '*rl_core.dir*' -name '*.c.o' | sort")
if #objs == 0 then
  io.stderr:write("layers: no rl_core objects under " .. build .. " (build first)\n")
  os.exit(2)
end
local defines, undefined, files = {}, {}, {}
for _, o in ipairs(objs) do
  local f = base(o):gsub("%.o$", "") -- conn.c
  files[#files + 1] = f
  undefined[f] = {}
  for _, l in ipairs(lines("nm -g '" .. o .. "'")) do
    local kind, sym = l:match("^%s*%x*%s+(%a)%s+(%S+)$")
    if kind == "U" then
      undefined[f][sym] = true
    elseif kind then
      defines[sym] = f
    end
  end
end

local calls = {} -- calls[a][b] = { symbols }
for _, f in ipairs(files) do
  calls[f] = {}
  for sym in pairs(undefined[f]) do
    local g = defines[sym]
    if g and g ~= f then
      calls[f][g] = calls[f][g] or {}
      table.insert(calls[f][g], sym)
    end
  end
end

-- includes: #include "x" lines of csrc/*.c and csrc/*.h
local includes, inc_files = {}, {}
for _, path in ipairs(lines("ls csrc/*.c csrc/*.h")) do
  local f = base(path)
  inc_files[#inc_files + 1] = f
  includes[f] = {}
  for l in io.lines(path) do
    local h = l:match('^%s*#%s*include%s+"([^"]+)"')
    if h then includes[f][h] = { "#include" } end
  end
end

-- Depth-first search for a cycle; returns the cycle as a list, or nil.
local function find_cycle(nodes, edges)
  local state, stack = {}, {}
  local function visit(n)
    state[n] = "open"
    stack[#stack + 1] = n
    local outs = {}
    for m in pairs(edges[n] or {}) do outs[#outs + 1] = m end
    table.sort(outs)
    for _, m in ipairs(outs) do
      if state[m] == "open" then
        local cyc, on = {}, false
        for _, s in ipairs(stack) do
          if s == m then on = true end
          if on then cyc[#cyc + 1] = s end
        end
        cyc[#cyc + 1] = m
        return cyc
      elseif state[m] == nil then
        local c = visit(m)
        if c then return c end
      end
    end
    stack[#stack] = nil
    state[n] = "done"
  end
  for _, n in ipairs(nodes) do
    if state[n] == nil then
      local c = visit(n)
      if c then return c end
    end
  end
end

-- Layer numbers: 1 + the highest layer of what a node uses.
local function ranks(nodes, edges)
  local r = {}
  local function rank(n)
    if r[n] then return r[n] end
    r[n] = 0
    local best = 0
    for m in pairs(edges[n] or {}) do best = math.max(best, rank(m)) end
    r[n] = best + 1
    return r[n]
  end
  for _, n in ipairs(nodes) do rank(n) end
  return r
end

local function report(title, nodes, edges)
  local cyc = find_cycle(nodes, edges)
  if cyc then
    print(("layers: %s cycle: %s"):format(title, table.concat(cyc, " -> ")))
    for i = 1, #cyc - 1 do
      local syms = edges[cyc[i]][cyc[i + 1]]
      table.sort(syms)
      print(("  %s -> %s: %s"):format(cyc[i], cyc[i + 1], table.concat(syms, ", ")))
    end
    return false
  end
  local r = ranks(nodes, edges)
  local order = {}
  for _, n in ipairs(nodes) do order[#order + 1] = n end
  table.sort(order, function(a, b)
    if r[a] ~= r[b] then return r[a] < r[b] end
    return a < b
  end)
  local parts = {}
  for _, n in ipairs(order) do parts[#parts + 1] = ("%s:%d"):format(n, r[n]) end
  print(("layers: %s: no cycle; bottom to top: %s"):format(title, table.concat(parts, " ")))
  if verbose then
    for _, n in ipairs(order) do
      local outs = {}
      for m in pairs(edges[n]) do outs[#outs + 1] = m end
      table.sort(outs)
      for _, m in ipairs(outs) do
        local syms = edges[n][m]
        table.sort(syms)
        print(("  %s -> %s: %s"):format(n, m, table.concat(syms, ", ")))
      end
    end
  end
  return true
end

local ok = report("calls", files, calls)
ok = report("includes", inc_files, includes) and ok
os.exit(ok and 0 or 1)
