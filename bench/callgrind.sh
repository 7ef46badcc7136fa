#!/usr/bin/env bash
# Instructions the server executes per operation, under valgrind's callgrind:
# a deterministic figure (unlike CPU time on a shared VM) for comparing two
# builds of ringlet. Two loads on bench/app.lua:
#
#   http: wrk -t1 -c$CONNS on GET $URL_PATH (/hello) for $DURATION;
#         instructions / requests
#   ws:   wsbench, 10 connections x $MESSAGES 32-byte text echoes at depth 1;
#         instructions / messages
#
#   bench/callgrind.sh [http|ws|all]        # default: all
#
# Counting starts once the server listens and has served one warm-up
# operation (callgrind_control -i on), so start-up (about 10 million
# instructions) and work done once per process (the first handshake loads
# OpenSSL's SHA-1 provider: 5.3 million, 179 per message of the ws load)
# are left out; earlier versions of this script spread them over the
# operations. The http figure still
# moves by about 2% from run to run (how many requests each loop turn and
# each GC step serve); compare builds over alternating runs.
#
# APP [bench/app.lua] (any app that echoes WebSocket messages on WS_PATH
# [/ws]: examples/async_echo.lua, examples/httpkit/websocket.lua with
# WS_PATH=/, ...), RINGLET_BIN [build/ringlet], WSBENCH_BIN [bench/wsbench-bin.sh's choice],
# DURATION [8s], CONNS [10] (wrk -c), URL_PATH [/hello] (/stream: the
# chunked iterator body), MESSAGES [3000] and OUT (a directory
# to keep callgrind.out.* in, for callgrind_annotate) override the defaults.
# For function names inside Lua, build liblua5.4 from `apt-get source
# lua5.4` with -g and put its directory in LD_LIBRARY_PATH.
set -uo pipefail
cd "$(dirname "$0")/.."

BIN=${RINGLET_BIN:-build/ringlet}
. bench/wsbench-bin.sh
DURATION=${DURATION:-8s}
MESSAGES=${MESSAGES:-3000}
CONNS=${CONNS:-10}
URL_PATH=${URL_PATH:-/hello}
APP=${APP:-bench/app.lua}
WS_PATH=${WS_PATH:-/ws}
what=${1:-all}

die() {
  echo "callgrind: $*" >&2
  exit 1
}
command -v valgrind >/dev/null || die "valgrind is not installed"
[ -x "$BIN" ] || die "$BIN is missing (cmake --build build)"

tmp=$(mktemp -d)
OUT=${OUT:-$tmp}
mkdir -p "$OUT"
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

# warm_up NAME: one operation of the load, not counted
warm_up() {
  if [ "$1" = ws ]; then
    "$WSBENCH" --port "$port" --path "$WS_PATH" --conns 1 --messages 10 \
      --size 32 --depth 1 >/dev/null 2>&1
  else
    curl -s -o /dev/null "http://127.0.0.1:$port$URL_PATH"
  fi
}

# start_server NAME: ringlet under callgrind; sets pid and port
start_server() {
  valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$OUT/callgrind.out.$1" \
    "$BIN" "$APP" --ip 127.0.0.1 --port 0 >"$tmp/server.log" 2>&1 &
  pid=$!
  port=
  for _ in $(seq 100); do
    port=$(grep -o 'listening on http://[^ ]*' "$tmp/server.log" | grep -o '[0-9]*$')
    if [ -n "$port" ]; then
      warm_up "$1"
      callgrind_control -i on "$pid" >/dev/null 2>&1 ||
        die "callgrind_control failed"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  cat "$tmp/server.log" >&2
  die "the server did not start"
}

# stop_server NAME COUNT LABEL: SIGINT, wait, print instructions per COUNT
stop_server() {
  kill -INT "$pid"
  wait "$pid" || die "the server exited with status $?"
  pid=
  local total
  total=$(callgrind_annotate "$OUT/callgrind.out.$1" 2>/dev/null |
    awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
  [ -n "$total" ] && [ "$2" -gt 0 ] || die "no figures for $1"
  echo "$1: $2 $3, $total instructions, $((total / $2)) instructions per ${3%s}"
}

if [ "$what" = http ] || [ "$what" = all ]; then
  command -v wrk >/dev/null || die "wrk is not installed"
  start_server http
  echo "callgrind: wrk -t1 -c$CONNS -d$DURATION http://127.0.0.1:$port$URL_PATH" >&2
  n=$(wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$port$URL_PATH" |
    awk '/requests in/ { print $1 }')
  stop_server http "${n:-0}" requests
fi

if [ "$what" = ws ] || [ "$what" = all ]; then
  WSBENCH=$(wsbench_bin) || die "cannot build wsbench"
  start_server ws
  echo "callgrind: wsbench --conns 10 --messages $MESSAGES --size 32 --depth 1" >&2
  n=$("$WSBENCH" --port "$port" --path "$WS_PATH" --conns 10 --messages "$MESSAGES" \
    --size 32 --depth 1 | awk '/^messages:/ { print $2 }')
  stop_server ws "${n:-0}" messages
fi
