#!/usr/bin/env bash
# What an idle WebSocket costs the server: RSS and Lua heap per connection.
#
#   bench/idle_ws.sh [BIN ...]        # default: build/ringlet
#
# For each binary in turn (ROUNDS [2] times, alternating, so builds compare
# on the same machine state): a fresh server on bench/app.lua (wrapped so
# that GET /gc runs a full collection and answers collectgarbage("count")),
# one GET /hello and one WebSocket echoing ten messages (so code paged in
# on first use is not counted per connection), then wsbench --idle N
# [5000] opens N WebSockets on /ws and holds them. Printed per run: VmRSS
# before and after, the growth per connection, and the Lua heap's growth
# per connection after a full collection (what the request table, the
# channel and their options keep).
# WSBENCH_BIN as bench/wsbench-bin.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/wsbench-bin.sh
WSB=$(wsbench_bin) || exit 1
N=${N:-5000}
ROUNDS=${ROUNDS:-2}
[ $# -gt 0 ] || set -- build/ringlet
ulimit -n $((N + 1000)) 2>/dev/null || {
  echo "idle_ws: ulimit -n $((N + 1000)) refused" >&2
  exit 1
}

tmp=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

cat >"$tmp/app.lua" <<'EOF'
local app = dofile("bench/app.lua")
return function(req)
  if req.uri == "/gc" then
    collectgarbage()
    collectgarbage()
    return { status = 200, body = tostring(collectgarbage("count")) }
  end
  return app(req)
end
EOF

rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

run() {
  local bin=$1 port=
  "$bin" "$tmp/app.lua" --ip 127.0.0.1 --port 0 >"$tmp/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    port=$(grep -o 'listening on http://[^ ]*' "$tmp/server.log" | grep -o '[0-9]*$')
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { cat "$tmp/server.log" >&2; return 1; }
  curl -s "http://127.0.0.1:$port/hello" >/dev/null
  # one WebSocket first: the code and libraries only a WebSocket touches
  # (SHA-1 for the handshake...) are paged in before the baseline
  "$WSB" --host 127.0.0.1 --port "$port" --path /ws --conns 1 --messages 10 \
    >/dev/null 2>&1
  local g0 r0 g1 r1
  g0=$(curl -s "http://127.0.0.1:$port/gc")
  r0=$(rss "$pid")
  "$WSB" --host 127.0.0.1 --port "$port" --path /ws --idle "$N" --hold 8 \
    >"$tmp/wsb.out" 2>&1 &
  local w=$!
  for _ in $(seq 150); do
    grep -q '^idle: ' "$tmp/wsb.out" && break
    sleep 0.2
  done
  sleep 1
  r1=$(rss "$pid")
  g1=$(curl -s "http://127.0.0.1:$port/gc")
  wait "$w"
  kill "$pid"
  wait "$pid" 2>/dev/null
  pid=
  grep -q '^idle: ' "$tmp/wsb.out" || { cat "$tmp/wsb.out" >&2; return 1; }
  awk -v b="$bin" -v n="$N" -v r0="$r0" -v r1="$r1" -v g0="$g0" -v g1="$g1" \
    'BEGIN { printf "%s: %d idle WebSockets: RSS %d -> %d KiB, %.2f KiB each; Lua heap %.0f bytes each\n",
             b, n, r0, r1, (r1 - r0) / n, (g1 - g0) * 1024 / n }'
}

for round in $(seq "$ROUNDS"); do
  for bin in "$@"; do
    run "$bin" || exit 1
  done
done
