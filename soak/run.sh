#!/usr/bin/env bash
# The soak test (soak/README.md), one command:
#
#   soak/run.sh [--duration S] [--clients N] [--rounds R] [--trim] [--out DIR]
#                                          (default 600 s, 400 clients, 1 round)
#   soak/run.sh --stop-at S [--clients N] [--only K1,K2] [--out DIR]
#                                                            graceful-stop mode
#
# --rounds R runs the load R times against the same server (RSS and fds
# sampled after each, 10 s after its end): retention shows as a first step
# that later rounds do not repeat, a leak as growth round after round.
# --only K1,K2 runs only those kinds of client (soak/driver.js's mix(): keepalive,
# pipelined, slow, upload, chunked, stream, poll, ws, wsLimit, slowBody,
# c:half_request, c:mid_response, c:mid_frame, c:reset, c:stop_reading,
# c:slow_loris, c:open_close), the CLIENTS shared among them.
# --trim starts the server with GLIBC_TUNABLES fixing malloc's mmap and
# trim thresholds at 128 KiB, so freed large blocks go back to the system
# (glibc otherwise raises the mmap threshold to the largest freed block,
# and keeps 1 MiB bodies in its heap once freed).
#
# Starts build/ringlet soak/app.lua on a free port, records the server's
# VmRSS and open file descriptors before, every 5 s during and after the
# load, runs soak/driver.js, stops the server (SIGTERM) and prints a
# summary. With --stop-at the driver itself sends SIGTERM after S seconds
# of load and records what became of the operations in flight.
# Everything lands in DIR (default /tmp/ringlet-soak.TIME): server.out,
# server.err (its stderr), samples.txt, driver.json, summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=600
CLIENTS=400
STOP_AT=
OUT=
ROUNDS=1
TUNABLES=
ONLY=()
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --stop-at) STOP_AT=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --only) ONLY=(--only "$2"); shift 2 ;;
    --trim) TUNABLES=glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=131072; shift ;;
    *) echo "usage: soak/run.sh [--duration S] [--clients N] [--rounds R] [--only K1,K2] [--trim] [--stop-at S] [--out DIR]" >&2; exit 2 ;;
  esac
done
OUT=${OUT:-/tmp/ringlet-soak.$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
[ -x build/ringlet ] || { echo "build/ringlet is missing: build first" >&2; exit 1; }
[ -d spec/node/node_modules/ws ] || { echo "spec/node/node_modules/ws is missing: scripts/node-deps.sh" >&2; exit 1; }

# The server, with every signal at its default (as a shell or systemd
# starts it; a background job of a script would otherwise ignore SIGINT).
env --default-signal ${TUNABLES:+GLIBC_TUNABLES=$TUNABLES} build/ringlet soak/app.lua --port 0 --ip 127.0.0.1 \
  >"$OUT/server.out" 2>"$OUT/server.err" &
PID=$!
PORT=
for _ in $(seq 50); do
  PORT=$(sed -n 's/^ringlet: listening on http:\/\/[^:]*:\([0-9]*\)$/\1/p' "$OUT/server.out")
  [ -n "$PORT" ] && break
  sleep 0.1
done
[ -n "$PORT" ] || { echo "the server did not start:"; cat "$OUT/server.err"; kill "$PID" 2>/dev/null; exit 1; }

# VmRSS (KiB), open fds, CPU seconds (utime + stime) of the server
sample() {
  local rss fds cpu
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$PID/status" 2>/dev/null) || return 1
  fds=$(ls "/proc/$PID/fd" 2>/dev/null | wc -l)
  cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$PID/stat" 2>/dev/null)
  echo "$(date +%s) $rss $fds $cpu"
}
# malloc's own count of the bytes in use ("Total (incl. mmap)" of
# malloc_stats(), which the server prints on its stderr), then
# malloc_trim(0) and VmRSS again: what is left once glibc has returned its
# free memory. Through gdb (skipped without it).
probe() {
  command -v gdb >/dev/null || { echo "(no gdb)"; return 0; }
  local n
  n=$(wc -l <"$OUT/server.err")
  gdb "/proc/$PID/exe" -p "$PID" -batch -nx -ex 'call (void)malloc_stats()' -ex 'call (int)malloc_trim(0)' \
    >>"$OUT/gdb.log" 2>&1 || true
  sleep 0.2
  local inuse
  inuse=$(tail -n +$((n + 1)) "$OUT/server.err" |
    awk '/^Total/ {t = 1} t && /^in use bytes/ {printf "%.0f", $5 / 1024; exit}')
  echo "malloc in use ${inuse} KiB; after malloc_trim rss $(awk '/^VmRSS/ {print $2}' "/proc/$PID/status") KiB"
}
sleep 1
BEFORE=$(sample)
PROBE0=$(probe)
echo "# time rss_kib fds cpu_s" >"$OUT/samples.txt"
echo "$BEFORE" >>"$OUT/samples.txt"
( while kill -0 "$PID" 2>/dev/null; do sleep 5; sample >>"$OUT/samples.txt" || break; done ) &
SAMPLER=$!

T0=$(date +%s)
if [ -n "$STOP_AT" ]; then
  node soak/driver.js --port "$PORT" --clients "$CLIENTS" --stop-at "$STOP_AT" "${ONLY[@]}" \
    --pid "$PID" --out "$OUT/driver.json" >"$OUT/driver.out" 2>"$OUT/driver.err" &
  DRIVER=$!
  # the server's exit: status and time after the stop
  set +e
  wait "$PID"
  RC=$?
  set -e
  TEXIT=$(date +%s.%N)
  wait "$DRIVER" || true
  AFTER="(exited)"
else
  AFTER=()
  for r in $(seq "$ROUNDS"); do
    node soak/driver.js --port "$PORT" --duration "$DURATION" --clients "$CLIENTS" "${ONLY[@]}" \
      --out "$OUT/driver.$r.json" >"$OUT/driver.$r.out" 2>>"$OUT/driver.err" || true
    A1=$(sample)
    sleep 10 # a longer settle, then again
    A2=$(sample)
    echo "$A2" >>"$OUT/samples.txt"
    AFTER+=("round $r: after $A1; +10 s $A2; $(probe)")
  done
  kill -TERM "$PID"
  set +e
  wait "$PID"
  RC=$?
  set -e
fi
kill "$SAMPLER" 2>/dev/null || true
wait "$SAMPLER" 2>/dev/null || true
T1=$(date +%s)

{
  echo "== ringlet soak $(git rev-parse --short HEAD 2>/dev/null) $(date -u +%FT%TZ), output in $OUT"
  if [ -n "$STOP_AT" ]; then
    echo "mode: graceful stop at ${STOP_AT} s, $CLIENTS clients; server exit status $RC"
  else
    echo "mode: soak, $ROUNDS x ${DURATION} s, $CLIENTS clients${TUNABLES:+, GLIBC_TUNABLES=$TUNABLES}; server exit status $RC after SIGTERM; wall $((T1 - T0)) s"
  fi
  echo "server (time rss_kib fds cpu_s): before  $BEFORE; $PROBE0"
  awk 'NR > 1 { if ($2 > m) m = $2; if ($3 > f) f = $3 } END { print "server peak: rss_kib " m ", fds " f }' "$OUT/samples.txt"
  if [ -z "$STOP_AT" ]; then
    for a in "${AFTER[@]}"; do echo "server (time rss_kib fds cpu_s): $a"; done
  else
    node -e 'const r = require(process.argv[1]); console.log("server exited " + (Number(process.argv[2]) * 1000 - r.stop_sent_ms).toFixed(0) + " ms after SIGTERM")' \
      "$OUT/driver.json" "$TEXIT" 2>/dev/null || true
  fi
  if [ -n "$STOP_AT" ]; then
    echo "-- driver"
    node soak/summary.js "$OUT/driver.json" || { echo "(no driver report)"; tail -20 "$OUT/driver.err"; }
  else
    for r in $(seq "$ROUNDS"); do
      echo "-- driver, round $r"
      node soak/summary.js "$OUT/driver.$r.json" || { echo "(no driver report)"; tail -20 "$OUT/driver.err"; }
    done
  fi
  echo "-- server stderr: $(wc -l <"$OUT/server.err") lines"
  echo "on_error lines by class (g = well-behaved, l = limit tests, x = chaos) and kind:"
  sed -n 's/^soak: on_error class=\([a-z]*\) kind=\([a-z]*\) id=[0-9]*: /\1 \2 /p' "$OUT/server.err" |
    sed 's/[0-9][0-9]*/N/g' | sort | uniq -c | sort -rn | sed 's/^/  /'
  # (malloc_stats()'s lines are the probe's)
  OTHER=$(grep -Ev '^soak: on_error class=[lx] |^(Arena [0-9]+:|system bytes |in use bytes |Total \(incl\. mmap\):|max mmap (regions|bytes) )' \
    "$OUT/server.err" || true)
  if [ -n "$OTHER" ]; then
    echo "OTHER STDERR (not caused by chaos or limit clients):"
    echo "$OTHER" | sed 's/[0-9][0-9]*/N/g' | sort | uniq -c | sort -rn | head -30 | sed 's/^/  /'
  else
    echo "other stderr: none"
  fi
  [ -s "$OUT/driver.err" ] && { echo "-- driver stderr:"; head -20 "$OUT/driver.err"; }
} | tee "$OUT/summary.txt"
