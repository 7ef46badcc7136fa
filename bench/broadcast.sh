#!/usr/bin/env bash
# Broadcast benchmark: N WebSocket subscribers and one publisher, ringlet's
# group (bench/app.lua /sub and /pub) against Node's ws broadcasting the
# way its README shows (bench/node/server.js: a loop over the clients,
# client.send). Each server on 127.0.0.1 pinned to CPU 0; wsbench (in its
# --publish mode, which checks every delivery byte for byte and in order)
# on CPU 1.
#
# For each server, subscriber count and message size (a fresh server each
# time): deliveries per second (subscribers x messages over the time), the
# server's CPU (utime + stime from /proc/PID/stat) per delivery, the
# latency from publishing a message to its arrival at the last subscriber;
# and, once per subscriber count, the server's RSS growth per idle
# subscriber (wsbench --idle on /sub: each joins the group). The servers
# alternate within each round. A markdown table goes to stdout, progress
# and wsbench's output to stderr.
#
#   bench/broadcast.sh
#
# Environment (defaults in brackets): SERVERS ["ringlet node"], SUBS
# ["1000 10000"], SIZES ["32 1024"], ROUNDS [2], DEPTH [16] (messages the
# publisher keeps in flight), BURST [1] (the publisher waits until it can
# send this many, then sends them in one write: 1 is a steady stream of
# single messages, DEPTH a bursty publisher), DELIVERIES [2000000] (per run: the messages
# are DELIVERIES / subscribers), HOLD [2] (seconds the idle subscribers
# stay), RINGLET_BIN [build/ringlet], NODE_BIN [node], WSBENCH_BIN.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

SERVERS=${SERVERS:-ringlet node}
SUBS=${SUBS:-1000 10000}
SIZES=${SIZES:-32 1024}
ROUNDS=${ROUNDS:-2}
DEPTH=${DEPTH:-16}
BURST=${BURST:-1}
DELIVERIES=${DELIVERIES:-2000000}
HOLD=${HOLD:-2}
RINGLET_BIN=${RINGLET_BIN:-build/ringlet}
NODE_BIN=${NODE_BIN:-node}

log() { echo "broadcast: $*" >&2; }
die() {
  log "$*"
  exit 1
}

for tool in taskset "$NODE_BIN"; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found (bench/deps.sh)"
done
[ -x "$RINGLET_BIN" ] || die "$RINGLET_BIN missing (cmake --build build)"
[ -d bench/node/node_modules/ws ] || die "bench/node: npm ci first (bench/deps.sh)"
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs"
. bench/wsbench-bin.sh
WSB=$(wsbench_bin) || die "cannot build wsbench"
max=0
for n in $SUBS; do [ "$n" -gt "$max" ] && max=$n; done
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -gt $((max + 100)) ] ||
  die "ulimit -n is $(ulimit -n); $max subscribers need $((max + 100))"

tck=$(getconf CLK_TCK)
tmp=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_server() { # NAME: sets pid and port
  case $1 in # taskset execs the server: $! is its pid
  ringlet)
    taskset -c 0 "$RINGLET_BIN" bench/app.lua --ip 127.0.0.1 --port 0 \
      >"$tmp/server.log" 2>&1 &
    ;;
  node)
    taskset -c 0 "$NODE_BIN" bench/node/server.js 0 127.0.0.1 \
      >"$tmp/server.log" 2>&1 &
    ;;
  *) die "unknown server $1" ;;
  esac
  pid=$!
  port=
  for _ in $(seq 100); do
    port=$(sed -n 's|^[a-z]*: listening on http://[^ ]*:\([0-9][0-9]*\)$|\1|p' "$tmp/server.log")
    [ -n "$port" ] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  cat "$tmp/server.log" >&2
  die "$1 did not start"
}

stop_server() {
  kill -TERM "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  pid=
}

ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"; }

: >"$tmp/results" # server subs size key value
for round in $(seq "$ROUNDS"); do
  for n in $SUBS; do
    for size in $SIZES; do
      for s in $SERVERS; do
        messages=$((DELIVERIES / n))
        log "round $round: $s, $n subscribers, $size B x $messages"
        start_server "$s"
        t0=$(ticks)
        if ! taskset -c 1 "$WSB" --port "$port" --publish /pub --path /sub \
          --conns "$n" --messages "$messages" --size "$size" \
          --depth "$DEPTH" --burst "$BURST" --timeout 300 >"$tmp/out" 2>&1; then
          cat "$tmp/out" >&2
          die "wsbench failed against $s"
        fi
        t1=$(ticks)
        stop_server
        cat "$tmp/out" >&2
        dps=$(awk '/^deliveries\/s:/ { print $2 }' "$tmp/out")
        p50=$(awk '/^latency p50:/ { print $3 }' "$tmp/out")
        cpu=$(awk -v t="$((t1 - t0))" -v hz="$tck" -v d="$((messages * n))" \
          'BEGIN { printf "%.3f", t / hz / d * 1e6 }')
        printf '%s %s %s dps %s\n%s %s %s cpu %s\n%s %s %s p50 %s\n' \
          "$s" "$n" "$size" "$dps" "$s" "$n" "$size" "$cpu" \
          "$s" "$n" "$size" "$p50" >>"$tmp/results"
      done
    done
    if [ "$round" = 1 ]; then
      for s in $SERVERS; do
        log "$s: RSS with $n idle subscribers"
        start_server "$s"
        r0=$(rss)
        taskset -c 1 "$WSB" --port "$port" --path /sub --idle "$n" \
          --hold "$HOLD" >"$tmp/idle" 2>&1 &
        bpid=$!
        for _ in $(seq 600); do
          grep -q '^idle:' "$tmp/idle" && break
          sleep 0.1
        done
        sleep 0.5
        r1=$(rss)
        wait "$bpid" || { cat "$tmp/idle" >&2; die "idle run failed"; }
        stop_server
        awk -v a="$r0" -v b="$r1" -v n="$n" -v s="$s" \
          'BEGIN { printf "%s %s - rss %.2f\n", s, n, (b - a) / n }' >>"$tmp/results"
      done
    fi
  done
done

echo
echo "- date: $(date -u +%Y-%m-%d); $(nproc) CPUs, servers on CPU 0, wsbench on CPU 1"
echo "- ringlet: $(git describe --always --dirty 2>/dev/null) \`$RINGLET_BIN bench/app.lua\`; Node.js $("$NODE_BIN" --version), ws $(node -p "require('./bench/node/node_modules/ws/package.json').version" 2>/dev/null)"
echo "- command: \`SERVERS=\"$SERVERS\" SUBS=\"$SUBS\" SIZES=\"$SIZES\" ROUNDS=$ROUNDS DEPTH=$DEPTH BURST=$BURST DELIVERIES=$DELIVERIES bench/broadcast.sh\`"
echo "- cells: one figure per round"
echo
awk -v servers="$SERVERS" -v subs="$SUBS" -v sizes="$SIZES" '
  { k = $1 " " $2 " " $3 " " $4
    if (k in v) v[k] = v[k] " · " $5; else v[k] = $5
    if ($4 != "rss") { sum[k] += $5; cnt[k]++ } }
  END {
    ns = split(servers, sv, " "); nn = split(subs, nv, " "); nz = split(sizes, zv, " ")
    printf "| subscribers | size |"
    for (j = 1; j <= ns; j++) printf " %s deliveries/s | %s CPU µs/delivery | %s p50 ms |", sv[j], sv[j], sv[j]
    if (ns == 2) printf " %s / %s deliveries/s |", sv[1], sv[2]
    print ""
    printf "| --- | --- |"
    for (j = 1; j <= ns; j++) printf " --- | --- | --- |"
    if (ns == 2) printf " --- |"
    print ""
    for (a = 1; a <= nn; a++) for (b = 1; b <= nz; b++) {
      printf "| %s | %s B |", nv[a], zv[b]
      for (j = 1; j <= ns; j++) {
        base = sv[j] " " nv[a] " " zv[b]
        p = v[base " p50"]; q = ""
        np = split(p, pp, " · ")
        for (i = 1; i <= np; i++) q = q (i > 1 ? " · " : "") sprintf("%.1f", pp[i] / 1000)
        printf " %s | %s | %s |", v[base " dps"], v[base " cpu"], q
      }
      if (ns == 2) {
        x = sv[1] " " nv[a] " " zv[b] " dps"; y = sv[2] " " nv[a] " " zv[b] " dps"
        if (cnt[x] && cnt[y] && sum[y] > 0) printf " %.2f |", (sum[x] / cnt[x]) / (sum[y] / cnt[y])
        else printf " – |"
      }
      print ""
    }
    print ""
    printf "| idle subscribers |"
    for (j = 1; j <= ns; j++) printf " %s RSS KiB/subscriber |", sv[j]
    print ""
    printf "| --- |"
    for (j = 1; j <= ns; j++) printf " --- |"
    print ""
    for (a = 1; a <= nn; a++) {
      printf "| %s |", nv[a]
      for (j = 1; j <= ns; j++) printf " %s |", v[sv[j] " " nv[a] " - rss"]
      print ""
    }
  }' "$tmp/results"
