#!/bin/sh
# WebSocket echo benchmark: examples/echo.lua served by ringlet on CPU 0,
# loaded by bench/wsbench.c on CPU 1. Four runs:
#   1. 32 B text, depth 1     (CONNS x MESSAGES)
#   2. 32 B text, depth 16    (CONNS x MESSAGES_D16)
#   3. 64 KiB binary, depth 1 (CONNS x MESSAGES_BIG)
#   4. IDLE idle connections on a fresh server: RSS growth per connection
# For runs 1-3 it also reports the server's CPU time (utime + stime from
# /proc/PID/stat) per message.
#
#   bench/ws.sh                  # uses build/ringlet, builds it if missing
#   RINGLET_BIN=... WSBENCH_BIN=... CONNS=100 IDLE=10000 bench/ws.sh
#
# Needs taskset, pkg-config and libuv headers (to build wsbench), Linux /proc
# and at least 2 CPUs. Writes its temporary files under build/.
# ulimit -n and test -nt are not POSIX, but dash, bash and busybox sh have them.
# shellcheck disable=SC3013,SC3045
set -eu

cd "$(dirname "$0")/.."

BIN=${RINGLET_BIN:-build/ringlet}
APP=${APP:-examples/echo.lua}
CONNS=${CONNS:-50}
MESSAGES=${MESSAGES:-2000}
MESSAGES_D16=${MESSAGES_D16:-10000}
MESSAGES_BIG=${MESSAGES_BIG:-200}
IDLE=${IDLE:-5000}
HOLD=${HOLD:-3}

command -v taskset >/dev/null 2>&1 || { echo "ws: taskset not found" >&2; exit 1; }
if [ "$(nproc)" -lt 2 ]; then
  echo "ws: needs 2 CPUs (server on CPU 0, wsbench on CPU 1)" >&2
  exit 1
fi

if [ ! -x "$BIN" ]; then
  echo "ws: $BIN missing, building" >&2
  cmake -S . -B build >&2
  cmake --build build -j2 >&2
fi
if [ -f build/CMakeCache.txt ]; then
  build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' build/CMakeCache.txt)
  echo "ws: build type: ${build_type:-<none>}" >&2
fi

# The client (bench/wsbench-bin.sh chooses it, as for compare.sh)
. bench/wsbench-bin.sh
WSB=$(wsbench_bin)

# Both processes need a descriptor per connection, plus some.
want_fds=$((IDLE + 100))
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want_fds" ]; then
  echo "ws: ulimit -n is $(ulimit -n), the idle run needs $want_fds" >&2
  exit 1
fi

mkdir -p build
dir=$(mktemp -d build/wsbench.XXXXXX)
pid=
bpid=
cleanup() {
  if [ -n "$bpid" ]; then
    kill -TERM "$bpid" 2>/dev/null || true
    wait "$bpid" 2>/dev/null || true
  fi
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

tck=$(getconf CLK_TCK)

start_server() {
  taskset -c 0 "$BIN" "$APP" --port 0 --ip 127.0.0.1 >"$dir/server.log" 2>&1 &
  pid=$!
  # The CLI prints "ringlet: listening on http://IP:PORT" once it listens.
  port=
  tries=0
  while [ -z "$port" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "ws: server exited before listening:" >&2
      cat "$dir/server.log" >&2
      exit 1
    fi
    tries=$((tries + 1))
    if [ "$tries" -gt 100 ]; then
      echo "ws: server did not print its port within 10 s" >&2
      exit 1
    fi
    sleep 0.1
    port=$(sed -n 's|^ringlet: listening on http://[^ ]*:\([0-9][0-9]*\)$|\1|p' "$dir/server.log")
  done
  echo "ws: $BIN $APP (pid $pid, CPU 0) on 127.0.0.1:$port" >&2
}

stop_server() {
  kill -TERM "$pid"
  status=0
  wait "$pid" || status=$?
  pid=
  if [ "$status" -ne 0 ]; then
    echo "ws: server exited with status $status on SIGTERM:" >&2
    cat "$dir/server.log" >&2
    exit 1
  fi
}

# utime + stime of the server, in clock ticks (fields 14 and 15; the comm
# field may hold spaces, so count from the ")" that ends it).
cpu_ticks() { sed 's/.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }'; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"; }
field() { sed -n "s|^$1: *\([0-9.]*\).*|\1|p" "$dir/out"; }

# run LABEL wsbench-args...
run() {
  label=$1
  shift
  echo "ws: $label: wsbench --conns $CONNS $* (CPU 1)" >&2
  t0=$(cpu_ticks)
  if ! taskset -c 1 "$WSB" --host 127.0.0.1 --port "$port" --conns "$CONNS" \
    "$@" >"$dir/out"; then
    cat "$dir/out" >&2
    echo "ws: $label: wsbench failed" >&2
    exit 1
  fi
  t1=$(cpu_ticks)
  sed 's/^/  /' "$dir/out" >&2
  msgs=$(field messages)
  cpu=$(awk -v t="$((t1 - t0))" -v hz="$tck" -v n="$msgs" \
    'BEGIN { printf "%.3g", t / hz * 1e6 / n }')
  printf '%s: %s msg/s, %s MB/s, latency p50/p99/max %s/%s/%s us, server CPU %s us/msg\n' \
    "$label" "$(field messages/s)" "$(field MB/s)" "$(field 'latency p50')" \
    "$(field 'latency p99')" "$(field 'latency max')" "$cpu"
}

start_server
run "32 B text, depth 1, $CONNS x $MESSAGES" \
  --messages "$MESSAGES" --size 32 --depth 1
run "32 B text, depth 16, $CONNS x $MESSAGES_D16" \
  --messages "$MESSAGES_D16" --size 32 --depth 16
run "64 KiB binary, depth 1, $CONNS x $MESSAGES_BIG" \
  --messages "$MESSAGES_BIG" --size 65536 --depth 1 --binary
stop_server

# Idle connections, on a fresh server so that memory freed by the runs
# above does not absorb the growth.
start_server
sleep 0.5
rss0=$(rss_kb)
echo "ws: idle: wsbench --idle $IDLE --hold $HOLD (CPU 1)" >&2
taskset -c 1 "$WSB" --host 127.0.0.1 --port "$port" --idle "$IDLE" \
  --hold "$HOLD" >"$dir/out" &
bpid=$!
while ! grep -q '^idle: ' "$dir/out"; do
  if ! kill -0 "$bpid" 2>/dev/null; then
    cat "$dir/out" >&2
    echo "ws: idle: wsbench exited before all connections were open" >&2
    exit 1
  fi
  sleep 0.1
done
sleep 0.5 # let the server finish the last handshakes' bookkeeping
rss1=$(rss_kb)
status=0
wait "$bpid" || status=$?
bpid=
sed 's/^/  /' "$dir/out" >&2
if [ "$status" -ne 0 ]; then
  echo "ws: idle: wsbench exited with status $status" >&2
  exit 1
fi
sleep 0.5
rss2=$(rss_kb)
stop_server
awk -v n="$IDLE" -v a="$rss0" -v b="$rss1" -v c="$rss2" 'BEGIN {
  printf "idle: %d connections, server RSS %d -> %d KiB (+%.1f KiB per connection), %d KiB after closing them\n",
    n, a, b, (b - a) / n, c }'
