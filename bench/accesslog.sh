#!/usr/bin/env bash
# What the access log costs on GET /hello: two servers of examples/hello.lua
# on CPU 0, one with --access-log FILE and one without, loaded in
# alternating rounds by wrk on CPU 1 (the VM drifts; alternating keeps the
# comparison fair). Prints each round's requests per second and the
# server's CPU per request (utime + stime from /proc), then the medians.
#
#   bench/accesslog.sh                       # 6 rounds of 5 s, 50 connections
#   ROUNDS=10 DURATION=10s LOG=/dev/shm/x bench/accesslog.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${RINGLET_BIN:-build/ringlet}
ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-50}
LOG=${LOG:-$(mktemp /tmp/ringlet-access-XXXXXX.log)}
for tool in wrk taskset; do
  command -v "$tool" >/dev/null || { echo "bench: $tool not found" >&2; exit 1; }
done
pids=()
tmp=$(mktemp -d)
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp" "$LOG"
}
trap cleanup EXIT

start() { # name, extra args...
  local name=$1; shift
  taskset -c 0 "$BIN" examples/hello.lua --ip 127.0.0.1 --port 0 "$@" \
    >"$tmp/$name.out" 2>&1 &
  pids+=($!)
  echo $! >"$tmp/$name.pid"
  for _ in $(seq 100); do
    grep -q listening "$tmp/$name.out" && break
    sleep 0.1
  done
  sed -n 's/.*listening on http:\/\/[0-9.]*:\([0-9]*\).*/\1/p' \
    "$tmp/$name.out" >"$tmp/$name.port"
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

start plain
start logged --access-log "$LOG"
hz=$(getconf CLK_TCK)
echo "round server req/s us_cpu/req"
for r in $(seq "$ROUNDS"); do
  for name in plain logged; do
    pid=$(cat "$tmp/$name.pid")
    port=$(cat "$tmp/$name.port")
    t0=$(cpu_ticks "$pid")
    rps=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" \
      "http://127.0.0.1:$port/hello" | awk '/Requests\/sec/ {print $2}')
    t1=$(cpu_ticks "$pid")
    secs=${DURATION%s}
    us=$(awk -v t="$((t1 - t0))" -v hz="$hz" -v rps="$rps" -v s="$secs" \
      'BEGIN { printf "%.2f", t / hz * 1e6 / (rps * s) }')
    echo "$r $name $rps $us" | tee -a "$tmp/results"
  done
done
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo "medians:"
for name in plain logged; do
  rps=$(awk -v n="$name" '$2 == n {print $3}' "$tmp/results" | median)
  us=$(awk -v n="$name" '$2 == n {print $4}' "$tmp/results" | median)
  echo "$name $rps req/s $us us/req"
done
echo "log lines written: $(wc -l <"$LOG")"
