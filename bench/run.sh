#!/bin/sh
# Plain-HTTP throughput of ringlet: examples/hello.lua served on CPU 0,
# loaded by wrk on CPU 1 (wrk -t1 -c50 -d10s), prints requests per second.
#
#   bench/run.sh                      # uses build/ringlet, builds it if missing
#   RINGLET_BIN=/path/ringlet CONNS=100 DURATION=30s bench/run.sh
#
# Needs wrk, taskset and at least 2 CPUs.
set -eu

cd "$(dirname "$0")/.."

BIN=${RINGLET_BIN:-build/ringlet}
CONNS=${CONNS:-50}
DURATION=${DURATION:-10s}

for tool in wrk taskset; do
  command -v "$tool" >/dev/null 2>&1 || { echo "bench: $tool not found" >&2; exit 1; }
done
if [ "$(nproc)" -lt 2 ]; then
  echo "bench: needs 2 CPUs (server on CPU 0, wrk on CPU 1)" >&2
  exit 1
fi

if [ ! -x "$BIN" ]; then
  echo "bench: $BIN missing, building" >&2
  cmake -S . -B build >&2
  cmake --build build -j2 >&2
fi
if [ -f build/CMakeCache.txt ]; then
  build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' build/CMakeCache.txt)
  echo "bench: build type: ${build_type:-<none>}" >&2
fi

out=$(mktemp)
pid=
cleanup() {
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -f "$out"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

taskset -c 0 "$BIN" examples/hello.lua --ip 127.0.0.1 --port 0 >"$out" &
pid=$!

# The CLI prints "ringlet: listening on http://IP:PORT" once it listens.
port=
tries=0
while [ -z "$port" ]; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "bench: server exited before listening" >&2
    exit 1
  fi
  tries=$((tries + 1))
  if [ "$tries" -gt 100 ]; then
    echo "bench: server did not print its port within 10 s" >&2
    exit 1
  fi
  sleep 0.1
  port=$(sed -n 's|^ringlet: listening on http://[^ ]*:\([0-9][0-9]*\)$|\1|p' "$out")
done

url="http://127.0.0.1:$port/"
echo "bench: $BIN (pid $pid, CPU 0) on $url; wrk -t1 -c$CONNS -d$DURATION on CPU 1" >&2
result=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" "$url")
echo "$result" >&2

rps=$(echo "$result" | sed -n 's/^Requests\/sec: *//p')
if [ -z "$rps" ]; then
  echo "bench: wrk gave no Requests/sec" >&2
  exit 1
fi
if echo "$result" | grep -q 'Non-2xx or 3xx responses'; then
  echo "bench: some responses were errors, the figure is not valid" >&2
  exit 1
fi

kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=
if [ "$status" -ne 0 ]; then
  echo "bench: server exited with status $status on SIGTERM" >&2
  exit 1
fi

echo "requests/s: $rps"
