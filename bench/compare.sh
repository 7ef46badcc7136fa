#!/usr/bin/env bash
# ringlet against nginx + lua-nginx-module and Node.js (http + ws): each
# server in turn on 127.0.0.1, pinned to CPU 0, loaded from CPU 1, the same
# endpoints on each (bench/app.lua, bench/nginx/, bench/node/server.js):
#
#   hello       wrk -t1 -c50 -dDURATION  GET /hello
#   stream      wrk -t1 -c50 -dDURATION  GET /stream (10 chunks)
#   ws32        wsbench: 32 B text, depth 1,   WS_CONNS x MESSAGES
#   ws32d16     wsbench: 32 B text, depth 16,  WS_CONNS x MESSAGES_D16
#   ws64k       wsbench: 64 KiB binary, depth 1, WS_CONNS x MESSAGES_BIG
#   idle        wsbench --idle IDLE on a fresh server (after one WebSocket
#               echoing ten messages): RSS growth per connection
#
# For every load it also reads the server's utime + stime (/proc/PID/stat)
# before and after and reports the CPU time per request or message. The
# rounds alternate the servers (the order rotates each round); at the end it
# prints a markdown table with each run's figure and the ratios
# ringlet / nginx, ringlet / Node and ringlet / floor (of the means over the
# rounds).
#
# The server "floor" is bench/floor.c, compiled here with cc: one epoll
# thread that answers every request head with the same bytes as ringlet's
# GET /hello, the least a keep-alive server can do per request. It runs the
# hello load only; its cells for the others (and their ratios) are "—".
#
#   bench/deps.sh        # once: nginx + lua module + lua-resty-websocket, npm ci
#   bench/compare.sh     # table on stdout, progress and raw output on stderr
#
# Environment (defaults in brackets): ROUNDS [2], DURATION [5s] (wrk),
# WRK_CONNS [50], WS_CONNS [50], MESSAGES [10000], MESSAGES_D16 [20000],
# MESSAGES_BIG [300] (per connection), IDLE [5000], HOLD [3] (seconds the
# idle connections stay open), WS_TIMEOUT [120] (wsbench --timeout),
# WARMUP [1] (0: no unmeasured warm-up before the loads), STEAL_MAX [5] and
# RETRIES [2] (a load during which the hypervisor stole more than STEAL_MAX %
# of either CPU is run again, up to RETRIES times; a cell still disturbed
# is marked with a dagger),
# SERVERS ["ringlet nginx node floor"], RINGLET_BIN [build/ringlet], WSBENCH_BIN,
# NGINX_BIN [nginx], NGINX_MODULES (directory of ngx_http_lua_module.so,
# found if unset), NODE_BIN [node], KEEP=1 keeps the temporary directory.
# RINGLET_COMMIT=REV builds that commit (git archive, RelWithDebInfo) in the
# temporary directory and measures it instead of RINGLET_BIN: use it on a
# work tree that may be rebuilt during the run. BASE_COMMIT=REV builds
# another commit the same way and adds it as the server "base" (also in the
# rotation, so two builds of ringlet are compared in alternating rounds of
# one run, e.g. BASE_COMMIT=HEAD~3 SERVERS="ringlet base"); BASE_BIN uses
# an existing binary instead. CC [cc] compiles the floor. RINGLET_REV names the
# version shown for RINGLET_BIN (default: git describe of the work tree).
#
# Needs Linux /proc, taskset, wrk, curl, 2 CPUs, and what bench/deps.sh
# installs. Every server it starts is stopped by PID (SIGTERM, then SIGKILL
# after 5 s), also when it is interrupted. Exit status 1 when a load failed
# (its cells say FAIL; the log on stderr says why).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD

ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-5s}
WRK_CONNS=${WRK_CONNS:-50}
WS_CONNS=${WS_CONNS:-50}
MESSAGES=${MESSAGES:-10000}
MESSAGES_D16=${MESSAGES_D16:-20000}
MESSAGES_BIG=${MESSAGES_BIG:-300}
WARMUP=${WARMUP:-1}
IDLE=${IDLE:-5000}
HOLD=${HOLD:-3}
WS_TIMEOUT=${WS_TIMEOUT:-120}
STEAL_MAX=${STEAL_MAX:-5} # % of a CPU the hypervisor may steal during a load
RETRIES=${RETRIES:-2}     # reruns of a load that exceeded it
SERVERS=${SERVERS:-ringlet nginx node floor}
RINGLET_BIN=${RINGLET_BIN:-build/ringlet}
NGINX_BIN=${NGINX_BIN:-nginx}
NODE_BIN=${NODE_BIN:-node}

log() { echo "compare: $*" >&2; }
die() { log "$*"; exit 1; }

# ---- checks ----

for tool in taskset wrk curl "$NGINX_BIN" "$NODE_BIN"; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found (bench/deps.sh installs what is missing)"
done
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (servers on CPU 0, load on CPU 1)"
for s in $SERVERS; do
  case $s in ringlet | base | nginx | node | floor) ;; *) die "unknown server '$s' in SERVERS" ;; esac
done

tck=$(getconf CLK_TCK)
dir=$(mktemp -d "${TMPDIR:-/tmp}/ringlet-compare.XXXXXX")
results=$dir/results.tsv # server, round, key, value
: >"$results"
failed=0

pid=  # the server process we started (nginx: the master)
mpid= # the process measured (nginx: its one worker)
bpid= # a wsbench in the background
port=

kill_wait() { # PID: SIGTERM, wait up to 5 s, then SIGKILL; returns its status
  local p=$1 i=0 st=0
  kill -TERM "$p" 2>/dev/null || true
  while kill -0 "$p" 2>/dev/null && [ "$(awk '{ print $3 }' "/proc/$p/stat" 2>/dev/null)" != Z ]; do
    i=$((i + 1))
    if [ "$i" -gt 50 ]; then
      log "pid $p still running 5 s after SIGTERM: SIGKILL"
      kill -KILL "$p" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
  wait "$p" 2>/dev/null || st=$?
  return "$st"
}

cleanup() {
  [ -n "$bpid" ] && kill_wait "$bpid"
  [ -n "$pid" ] && kill_wait "$pid"
  # an nginx worker outlives a master that had to be SIGKILLed
  if [ -n "$mpid" ] && kill -0 "$mpid" 2>/dev/null; then kill -KILL "$mpid" 2>/dev/null || true; fi
  if [ "${KEEP:-0}" = 1 ]; then log "kept $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- ringlet and wsbench ----

# build_commit REV DIR [cmake --build args]: a private RelWithDebInfo build
# of one commit, so that a rebuild of build/ in this work tree during the
# run (the CLI loads build/libringlet.so) cannot change what is measured.
build_commit() {
  local r=$1 d=$2
  shift 2
  log "building $r in $d (RelWithDebInfo)"
  mkdir -p "$d"
  git archive "$r" | tar -x -C "$d" || die "git archive $r failed"
  if ! { cmake -S "$d" -B "$d/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
    cmake --build "$d/build" -j2 "$@"; } >"$d.log" 2>&1; then
    cat "$d.log" >&2
    die "build of $r failed"
  fi
}

if [ -n "${RINGLET_COMMIT:-}" ]; then
  rev=$(git rev-parse --short=7 "$RINGLET_COMMIT^{commit}") || die "no commit $RINGLET_COMMIT"
  build_commit "$rev" "$dir/src"
  RINGLET_BIN=$dir/src/build/ringlet
  ringlet_shown="build/ringlet (a private build of $rev)"
  build_type=RelWithDebInfo
  if [ -z "${WSBENCH_BIN:-}" ] && [ -x "$dir/src/build/ringlet_wsbench" ]; then
    WSBENCH_BIN=$dir/src/build/ringlet_wsbench
  fi
else
  if [ ! -x "$RINGLET_BIN" ]; then
    log "$RINGLET_BIN missing, building"
    if ! { cmake -S . -B build && cmake --build build -j2; } >&2; then die "build failed"; fi
  fi
  ringlet_shown=$RINGLET_BIN
  rev=${RINGLET_REV:-$(git describe --always --dirty --abbrev=7 2>/dev/null || echo unknown)}
  build_type=
  cache=$(dirname "$RINGLET_BIN")/CMakeCache.txt
  if [ -f "$cache" ]; then
    build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$cache")
  fi
fi
# The base build, when SERVERS names it.
base_rev=
if [[ " $SERVERS " == *" base "* ]]; then
  if [ -n "${BASE_COMMIT:-}" ]; then
    base_rev=$(git rev-parse --short=7 "$BASE_COMMIT^{commit}") || die "no commit $BASE_COMMIT"
    build_commit "$base_rev" "$dir/base" --target ringlet_cli
    BASE_BIN=$dir/base/build/ringlet
  fi
  [ -x "${BASE_BIN:-}" ] || die "SERVERS names base: set BASE_COMMIT or BASE_BIN"
  base_rev=${base_rev:-$BASE_BIN}
fi

# The binary and the libringlet it loads: checked at each start.
ringlet_files=("$RINGLET_BIN")
lib=$(ldd "$RINGLET_BIN" 2>/dev/null | sed -n 's/^[[:space:]]*libringlet[^ ]* => \([^ ]*\) .*/\1/p')
[ -n "$lib" ] && ringlet_files+=("$lib")
ringlet_sum=$(cat "${ringlet_files[@]}" | cksum)

# The WebSocket client (bench/wsbench-bin.sh chooses it, as for ws.sh)
. bench/wsbench-bin.sh
WSB=$(wsbench_bin) || die "cannot build wsbench"

# The floor (when SERVERS names it): compiled for each run, into the
# temporary directory.
floor_flags="-O2 -std=c11 -Wall -Wextra -Werror"
floor_cc=
if [[ " $SERVERS " == *" floor "* ]]; then
  log "compiling the floor: ${CC:-cc} $floor_flags -o $dir/floor bench/floor.c"
  # shellcheck disable=SC2086 # a list of flags
  ${CC:-cc} $floor_flags -o "$dir/floor" bench/floor.c >&2 || die "cannot compile bench/floor.c"
  floor_cc=$(${CC:-cc} --version 2>/dev/null | head -1)
  floor_cc=${floor_cc:-${CC:-cc}}
fi

if [ -z "${NGINX_MODULES:-}" ]; then
  for d in /usr/share/nginx/modules /usr/lib/nginx/modules; do
    if [ -f "$d/ngx_http_lua_module.so" ]; then NGINX_MODULES=$d; break; fi
  done
fi
case " $SERVERS " in *" nginx "*)
  if [ ! -f "${NGINX_MODULES:-}/ngx_http_lua_module.so" ] || [ ! -f "$NGINX_MODULES/ndk_http_module.so" ]; then
    die "ngx_http_lua_module.so / ndk_http_module.so not found (run bench/deps.sh, or set NGINX_MODULES)"
  fi
  [ -f /usr/share/lua/5.1/nginx/websocket/server.lua ] || [ -f /usr/share/lua/5.1/resty/websocket/server.lua ] ||
    die "lua-resty-websocket not found (run bench/deps.sh)"
  ;;
esac
case " $SERVERS " in *" node "*)
  [ -f bench/node/node_modules/ws/package.json ] || die "bench/node/node_modules/ws missing: run bench/deps.sh (npm ci in bench/node)"
  ;;
esac

# A descriptor per idle connection in the server and in wsbench, plus some.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE + 200)) ]; then
  die "ulimit -n is $(ulimit -n), the idle load needs $((IDLE + 200))"
fi

# ---- server life cycle ----

free_port() { # a port nothing listens on now (nginx needs one in its config)
  "$NODE_BIN" -e 'const s = require("net").createServer();
    s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

# Waits for "...listening on http://IP:PORT" in the server's output.
wait_port_line() {
  local i=0
  port=
  while [ -z "$port" ]; do
    kill -0 "$pid" 2>/dev/null || { cat "$dir/server.log" >&2; die "$1 exited before listening"; }
    i=$((i + 1))
    [ "$i" -le 100 ] || die "$1 did not print its port within 10 s"
    sleep 0.1
    port=$(sed -n 's|^[a-z]*: listening on http://[^ ]*:\([0-9][0-9]*\)$|\1|p' "$dir/server.log")
  done
}

start_server() { # NAME
  local name=$1 i=0
  : >"$dir/server.log"
  case $name in
  ringlet)
    [ "$(cat "${ringlet_files[@]}" | cksum)" = "$ringlet_sum" ] ||
      die "${ringlet_files[*]} changed during the run (rebuilt?): the figures would mix two builds; RINGLET_COMMIT=HEAD builds a private copy"
    taskset -c 0 "$RINGLET_BIN" bench/app.lua --ip 127.0.0.1 --port 0 >"$dir/server.log" 2>&1 &
    pid=$!
    wait_port_line ringlet
    mpid=$pid
    ;;
  base)
    taskset -c 0 "$BASE_BIN" bench/app.lua --ip 127.0.0.1 --port 0 >"$dir/server.log" 2>&1 &
    pid=$!
    wait_port_line base
    mpid=$pid
    ;;
  node)
    taskset -c 0 "$NODE_BIN" bench/node/server.js 0 127.0.0.1 >"$dir/server.log" 2>&1 &
    pid=$!
    wait_port_line node
    mpid=$pid
    ;;
  floor)
    taskset -c 0 "$dir/floor" 0 >"$dir/server.log" 2>&1 &
    pid=$!
    wait_port_line floor
    mpid=$pid
    ;;
  nginx)
    port=$(free_port)
    rm -rf "$dir/nginx"
    mkdir -p "$dir/nginx"
    sed -e "s|@PORT@|$port|g" -e "s|@TMP@|$dir/nginx|g" -e "s|@MODULES@|$NGINX_MODULES|g" \
      bench/nginx/nginx.conf.in >"$dir/nginx/nginx.conf"
    taskset -c 0 "$NGINX_BIN" -p "$ROOT/bench/nginx/" -c "$dir/nginx/nginx.conf" \
      -e "$dir/nginx/error.log" >"$dir/server.log" 2>&1 &
    pid=$!
    mpid=
    while :; do
      kill -0 "$pid" 2>/dev/null || { cat "$dir/server.log" "$dir/nginx/error.log" >&2; die "nginx exited"; }
      i=$((i + 1))
      [ "$i" -le 100 ] || die "nginx did not answer within 10 s"
      sleep 0.1
      [ "$(curl -s --max-time 1 "http://127.0.0.1:$port/hello")" = "Hello, World!" ] || continue
      mpid=$(cat "/proc/$pid/task/$pid/children" 2>/dev/null)
      # shellcheck disable=SC2086 # one pid per word
      set -- $mpid
      [ $# -eq 1 ] || die "nginx master $pid has $# children ($mpid), expected one worker"
      mpid=$1
      break
    done
    ;;
  esac
  log "$name: pid $pid (measured: $mpid) on 127.0.0.1:$port, CPU 0"
}

stop_server() { # NAME
  local st=0
  kill_wait "$pid" || st=$?
  pid=
  mpid=
  if [ "$st" -ne 0 ]; then
    log "$1: exited with status $st on SIGTERM"
    cat "$dir/server.log" >&2
    failed=1
  fi
}

# The endpoints answer the same on every server: checked at each start.
check_endpoints() { # NAME
  local base="http://127.0.0.1:$port" want_stream h
  want_stream=$(for n in 1 2 3 4 5 6 7 8 9 10; do echo "chunk $n"; done)
  h=$(curl -s -D - -o "$dir/body" --max-time 5 "$base/hello") || die "$1: GET /hello failed"
  [ "$(cat "$dir/body")" = "Hello, World!" ] || die "$1: GET /hello body: $(cat "$dir/body")"
  grep -qi '^content-type: text/plain' <<<"$h" || die "$1: GET /hello is not text/plain"
  grep -q '^HTTP/1.1 200' <<<"$h" || die "$1: GET /hello status: $(echo "$h" | head -1)"
  if [ "$1" = floor ]; then # /hello only; two requests on one connection
    [ "$(curl -s --max-time 5 "$base/hello" "$base/hello")" = "Hello, World!Hello, World!" ] ||
      die "$1: two GET /hello on one connection failed"
    return
  fi
  h=$(curl -s -D - -o "$dir/body" --max-time 5 "$base/stream") || die "$1: GET /stream failed"
  [ "$(cat "$dir/body")" = "$want_stream" ] || die "$1: GET /stream body differs"
  grep -qi '^transfer-encoding: chunked' <<<"$h" || die "$1: GET /stream is not chunked"
  local b
  for b in "" --binary; do
    # shellcheck disable=SC2086 # $b is empty or one flag
    "$WSB" --host 127.0.0.1 --port "$port" --path /ws --conns 2 --messages 10 --size 100 $b >/dev/null ||
      die "$1: /ws does not echo (wsbench ${b:-text})"
  done
}

# Before the measured loads, an unmeasured pass over every path, so that
# LuaJIT (nginx) and V8 (Node) have compiled their hot code.
warm_up() {
  [ "$WARMUP" = 1 ] || return 0
  log "$server round $round: warm-up (not measured)"
  taskset -c 1 wrk -t1 -c"$WRK_CONNS" -d1s "http://127.0.0.1:$port/hello" >/dev/null 2>&1
  [ "$server" = floor ] && return 0 # it serves nothing else
  taskset -c 1 wrk -t1 -c"$WRK_CONNS" -d1s "http://127.0.0.1:$port/stream" >/dev/null 2>&1
  if ! taskset -c 1 "$WSB" --host 127.0.0.1 --port "$port" --path /ws --conns "$WS_CONNS" \
    --messages 1000 --size 32 --depth 16 >/dev/null ||
    ! taskset -c 1 "$WSB" --host 127.0.0.1 --port "$port" --path /ws --conns "$WS_CONNS" \
      --messages 20 --size 65536 --binary >/dev/null; then
    log "$server round $round: warm-up: wsbench failed (the measured runs will tell)"
  fi
}

# ---- measurements ----

cpu_ticks() { sed 's/.*) //' "/proc/$mpid/stat" | awk '{ print $12 + $13 }'; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$mpid/status"; }
# How busy each CPU was during a run, from /proc/stat (user+nice+system+irq+
# softirq; loopback traffic is partly softirq) and how much of CPU 0 the
# server used, to tell a server-bound run from one disturbed by other work.
cpu_stat() { awk '$1 == "cpu0" || $1 == "cpu1" { printf "%d %d ", $2 + $3 + $4 + $7 + $8, $9 }' /proc/stat; }
snap_begin() { s0=$(cpu_stat); w0=$(date +%s%N); }
snap_log() { # SERVER_TICKS; sets steal (the larger of the two CPUs', in %)
  local s1 w1 line
  s1=$(cpu_stat)
  w1=$(date +%s%N)
  line=$(awk -v a="$s0" -v b="$s1" -v t="$1" -v hz="$tck" -v w="$((w1 - w0))" 'BEGIN {
    split(a, x, " "); split(b, y, " "); secs = w / 1e9 * hz / 100
    s0 = (y[2] - x[2]) / secs; s1 = (y[4] - x[4]) / secs
    printf "%.0f compare:   CPU 0 busy %.0f%% (the server %.0f%%), CPU 1 busy %.0f%%, steal %.0f%%/%.0f%%\n",
      (s0 > s1 ? s0 : s1), (y[1] - x[1]) / secs, t / secs, (y[3] - x[3]) / secs, s0, s1 }')
  steal=${line%% *}
  echo "${line#* }" >&2
}
# A load during which the hypervisor stole more than STEAL_MAX % of either
# CPU measured the host's other tenants as much as the server: it is run
# again, up to RETRIES more times; if it stays disturbed, its cells are
# marked with a dagger.
disturbed() {
  if [ "$steal" -gt "$STEAL_MAX" ]; then
    log "$server round $round: $1: steal ${steal}% > ${STEAL_MAX}%: disturbed"
    return 0
  fi
  return 1
}
# The loads a server does not serve: "—" in the table, no ratio.
not_served() { # KEY...: the loads' keys
  local k f
  for k in "$@"; do
    case $k in
    stream) f="rps cpu" ;;
    idle) f=kib ;;
    *) f="mps p50 p99 cpu" ;;
    esac
    for f in $f; do record "${k}_$f" NA; done
  done
}
record() { printf '%s\t%s\t%s\t%s\n' "$server" "$round" "$1" "$2" >>"$results"; }
per_op_us() { awk -v t="$1" -v hz="$tck" -v n="$2" 'BEGIN { printf "%.3f", t / hz * 1e6 / n }'; }

run_wrk() { # KEY PATH
  local key=$1 path=$2 t0 t1 out n rps st try=0
  while :; do
    log "$server round $round: $key: wrk -t1 -c$WRK_CONNS -d$DURATION http://127.0.0.1:$port$path (CPU 1)"
    snap_begin
    t0=$(cpu_ticks)
    out=$(taskset -c 1 wrk -t1 -c"$WRK_CONNS" -d"$DURATION" "http://127.0.0.1:$port$path" 2>&1)
    st=$?
    t1=$(cpu_ticks)
    snap_log $((t1 - t0))
    printf '%s\n' "$out" | sed 's/^/    /' >&2
    disturbed "$key" && [ $((try += 1)) -le "$RETRIES" ] || break
  done
  disturbed "$key" >/dev/null 2>&1 && record "${key}_steal" "$steal"
  n=$(echo "$out" | sed -n 's/^ *\([0-9][0-9]*\) requests in .*/\1/p')
  rps=$(echo "$out" | sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p')
  if [ "$st" -ne 0 ] || [ -z "$n" ] || [ -z "$rps" ] || [ "$n" -eq 0 ] ||
    echo "$out" | grep -qE 'Non-2xx|Socket errors'; then
    log "$server round $round: $key: FAILED (wrk status $st, errors above)"
    record "${key}_rps" FAIL
    record "${key}_cpu" FAIL
    failed=1
    return
  fi
  record "${key}_rps" "$rps"
  record "${key}_cpu" "$(per_op_us $((t1 - t0)) "$n")"
}

field() { sed -n "s|^$1: *\([0-9.]*\).*|\1|p" "$dir/out"; }

run_ws() { # KEY wsbench-args...
  local key=$1 t0 t1 st n try=0
  shift
  while :; do
    st=0
    log "$server round $round: $key: wsbench --conns $WS_CONNS $* (CPU 1)"
    snap_begin
    t0=$(cpu_ticks)
    taskset -c 1 "$WSB" --host 127.0.0.1 --port "$port" --path /ws --conns "$WS_CONNS" \
      --timeout "$WS_TIMEOUT" "$@" >"$dir/out" 2>"$dir/err" || st=$?
    t1=$(cpu_ticks)
    snap_log $((t1 - t0))
    sed 's/^/    /' "$dir/out" "$dir/err" >&2
    [ "$st" -eq 0 ] && disturbed "$key" && [ $((try += 1)) -le "$RETRIES" ] || break
  done
  disturbed "$key" >/dev/null 2>&1 && record "${key}_steal" "$steal"
  n=$(field messages)
  if [ "$st" -ne 0 ] || [ -z "$n" ]; then
    log "$server round $round: $key: FAILED (wsbench exit status $st)"
    for f in mps p50 p99 cpu; do record "${key}_$f" FAIL; done
    failed=1
    return
  fi
  record "${key}_mps" "$(field messages/s)"
  record "${key}_p50" "$(field 'latency p50')"
  record "${key}_p99" "$(field 'latency p99')"
  record "${key}_cpu" "$(per_op_us $((t1 - t0)) "$n")"
}

run_idle() {
  local rss0 rss1 st=0 i=0
  # one WebSocket first, on every server: code and libraries paged in on
  # first use (the handshake's SHA-1...) are not memory per connection
  taskset -c 1 "$WSB" --host 127.0.0.1 --port "$port" --path /ws --conns 1 \
    --messages 10 --timeout "$WS_TIMEOUT" >/dev/null 2>&1
  sleep 0.5
  rss0=$(rss_kb)
  log "$server round $round: idle: wsbench --idle $IDLE --hold $HOLD (CPU 1); RSS of pid $mpid before: $rss0 KiB"
  taskset -c 1 "$WSB" --host 127.0.0.1 --port "$port" --path /ws --idle "$IDLE" --hold "$HOLD" \
    --timeout "$WS_TIMEOUT" >"$dir/out" 2>"$dir/err" &
  bpid=$!
  while ! grep -q '^idle: ' "$dir/out"; do
    if ! kill -0 "$bpid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  if grep -q '^idle: ' "$dir/out"; then
    sleep 0.5 # the last handshakes' bookkeeping
    rss1=$(rss_kb)
  fi
  wait "$bpid" || st=$?
  bpid=
  sed 's/^/    /' "$dir/out" "$dir/err" >&2
  if [ "$st" -ne 0 ] || [ -z "${rss1:-}" ]; then
    log "$server round $round: idle: FAILED (wsbench exit status $st)"
    record idle_kib FAIL
    failed=1
    return
  fi
  log "$server round $round: idle: RSS $rss0 -> $rss1 KiB with $IDLE connections"
  record idle_kib "$(awk -v a="$rss0" -v b="$rss1" -v n="$IDLE" 'BEGIN { printf "%.2f", (b - a) / n }')"
}

# ---- versions ----

v_nginx=$("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //')
v_lua=$(dpkg-query -W -f '${Version}' libnginx-mod-http-lua 2>/dev/null || echo '?')
v_resty_ws=$(dpkg-query -W -f '${Version}' lua-nginx-websocket 2>/dev/null || echo '?')
v_luajit=$(dpkg-query -W -f '${Version}' libluajit2-5.1-2 2>/dev/null || echo '?')
v_node=$("$NODE_BIN" --version)
v_ws=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' bench/node/node_modules/ws/package.json 2>/dev/null | head -1)
v_wrk=$(wrk -v 2>&1 | sed -n '1s/^wrk \([^ ]*\).*/\1/p')
cpu_model=$(sed -n '1,/^model name/s/^model name[^:]*: *//p' /proc/cpuinfo | head -1)

# ---- the runs ----

read -r -a order <<<"$SERVERS"
for round in $(seq 1 "$ROUNDS"); do
  # rotate the order each round so no server always goes first
  shift_by=$(((round - 1) % ${#order[@]}))
  this=("${order[@]:shift_by}" "${order[@]:0:shift_by}")
  for server in "${this[@]}"; do
    log "==== round $round/$ROUNDS: $server"
    start_server "$server"
    check_endpoints "$server"
    warm_up
    run_wrk hello /hello
    if [ "$server" = floor ]; then
      log "floor round $round: GET /hello only: no stream, ws32, ws32d16, ws64k or idle load"
      not_served stream ws32 ws32d16 ws64k idle
      stop_server "$server"
      continue
    fi
    run_wrk stream /stream
    run_ws ws32 --messages "$MESSAGES" --size 32 --depth 1
    run_ws ws32d16 --messages "$MESSAGES_D16" --size 32 --depth 16
    run_ws ws64k --messages "$MESSAGES_BIG" --size 65536 --depth 1 --binary
    stop_server "$server"
    # idle on a fresh server, so memory freed by the loads above does not
    # absorb the growth
    start_server "$server"
    run_idle
    stop_server "$server"
  done
done

# ---- the table ----

cmdline="${RINGLET_COMMIT:+RINGLET_COMMIT=$RINGLET_COMMIT }${BASE_COMMIT:+BASE_COMMIT=$BASE_COMMIT }SERVERS=\"$SERVERS\" ROUNDS=$ROUNDS DURATION=$DURATION WRK_CONNS=$WRK_CONNS WS_CONNS=$WS_CONNS MESSAGES=$MESSAGES MESSAGES_D16=$MESSAGES_D16 MESSAGES_BIG=$MESSAGES_BIG IDLE=$IDLE HOLD=$HOLD WARMUP=$WARMUP STEAL_MAX=$STEAL_MAX RETRIES=$RETRIES bench/compare.sh"

cat <<EOF

- date: $(date -u +%Y-%m-%d)
- machine: $(nproc) CPUs ($cpu_model), servers on CPU 0, load on CPU 1
- ringlet: $rev (${build_type:-unknown build type}), \`$ringlet_shown bench/app.lua --ip 127.0.0.1 --port 0\`
EOF
[ -n "$base_rev" ] && echo "- base: $base_rev (RelWithDebInfo), the same command"
[ -n "$floor_cc" ] && echo "- floor: bench/floor.c, \`${CC:-cc} $floor_flags\` ($floor_cc), \`floor 0\`: one epoll thread, every request head answered with the 115 bytes of ringlet's /hello (Date included); GET /hello only, — in the other loads"
cat <<EOF
- nginx: $v_nginx, libnginx-mod-http-lua $v_lua, lua-nginx-websocket (lua-resty-websocket) $v_resty_ws, LuaJIT (libluajit2-5.1-2) $v_luajit; worker_processes 1
- Node.js: $v_node, ws $v_ws
- load: wrk $v_wrk \`-t1 -c$WRK_CONNS -d$DURATION\`; wsbench $WS_CONNS connections (32 B d1: $MESSAGES, d16: $MESSAGES_D16, 64 KiB: $MESSAGES_BIG messages each); idle: $IDLE connections
- warm-up before the measured loads of each server start: $([ "$WARMUP" = 1 ] && echo "wrk 1 s on each path, wsbench $WS_CONNS x 1000 at d16 and $WS_CONNS x 20 at 64 KiB (not measured)" || echo none)
- command: \`$cmdline\`
- cells: one figure per round, in round order; ratios are of the means (of the undisturbed runs, where there are any)

EOF

awk -F '\t' -v servers="$SERVERS" -v rounds="$ROUNDS" -v idle="$IDLE" -v steal_max="$STEAL_MAX" -v retries="$RETRIES" '
# the rows of the table, in order: key in results.tsv, label, number format
function add(key, text, format) { keys[++n] = key; label[key] = text; kind[key] = format }
function fmt(v, kind,   s, neg, i) {
  if (v == "FAIL") return "FAIL"
  if (v == "NA") return "—"
  if (kind == "int") {
    s = sprintf("%.0f", v)
    while (s ~ /[0-9][0-9][0-9][0-9]/) {
      i = match(s, /[0-9][0-9][0-9][0-9](,|$)/)
      s = substr(s, 1, i) "," substr(s, i + 1)
    }
    return s
  }
  if (kind == "ms") return sprintf("%.3g", v / 1000)
  if (v >= 100) return sprintf("%.0f", v)
  return sprintf("%.3g", v)
}
{ val[$1, $3, $2] = $4 }
END {
  add("hello_rps", "GET /hello, requests/s", "int")
  add("hello_cpu", "GET /hello, server CPU µs/request", "")
  add("stream_rps", "GET /stream, requests/s", "int")
  add("stream_cpu", "GET /stream, server CPU µs/request", "")
  split("ws32 ws32d16 ws64k", wk, " ")
  wl["ws32"] = "WS 32 B text d1"; wl["ws32d16"] = "WS 32 B text d16"; wl["ws64k"] = "WS 64 KiB binary d1"
  for (w = 1; w <= 3; w++) {
    add(wk[w] "_mps", wl[wk[w]] ", messages/s", "int")
    add(wk[w] "_p50", wl[wk[w]] ", p50 latency ms", "ms")
    add(wk[w] "_p99", wl[wk[w]] ", p99 latency ms", "ms")
    add(wk[w] "_cpu", wl[wk[w]] ", server CPU µs/message", "")
  }
  add("idle_kib", idle " idle WS, server RSS KiB/connection", "")
  ns = split(servers, sv, " ")
  name["ringlet"] = "ringlet"; name["nginx"] = "nginx"; name["node"] = "Node"; name["base"] = "base"; name["floor"] = "floor"
  hdr = "| figure (better) |"; sep = "| --- |"
  for (j = 1; j <= ns; j++) { hdr = hdr " " name[sv[j]] " |"; sep = sep " --- |" }
  for (j = 1; j <= ns; j++) if (sv[j] != "ringlet") { hdr = hdr " ringlet / " name[sv[j]] " |"; sep = sep " --- |" }
  print hdr; print sep
  for (k = 1; k <= n; k++) {
    key = keys[k]
    better = (key ~ /_(rps|mps)$/) ? "higher" : "lower"
    line = "| " label[key] " (" better ") |"
    for (j = 1; j <= ns; j++) {
      cell = ""; sum[sv[j]] = 0; cnt[sv[j]] = 0; bad[sv[j]] = 0; na[sv[j]] = 0
      dsum = 0; dcnt = 0
      for (r = 1; r <= rounds; r++) {
        v = ((sv[j], key, r) in val) ? val[sv[j], key, r] : "FAIL"
        cell = cell (r > 1 ? " · " : "") fmt(v, kind[key])
        pre = key; sub(/_[a-z0-9]+$/, "", pre)
        dag = (sv[j], pre "_steal", r) in val
        if (dag) { cell = cell "†"; daggers++ }
        if (v == "FAIL") bad[sv[j]] = 1
        else if (v == "NA") na[sv[j]] = 1
        else if (dag) { dsum += v; dcnt++ }
        else { sum[sv[j]] += v; cnt[sv[j]]++ }
      }
      if (na[sv[j]] && !cnt[sv[j]] && !dcnt && !bad[sv[j]]) cell = "—" # not served
      # the ratios leave disturbed runs out, unless every run was one
      if (cnt[sv[j]] == 0) { sum[sv[j]] = dsum; cnt[sv[j]] = dcnt }
      line = line " " cell " |"
    }
    for (j = 1; j <= ns; j++) if (sv[j] != "ringlet") {
      o = sv[j]
      if (na["ringlet"] || na[o]) line = line " — |"
      else if (bad["ringlet"] || bad[o] || !cnt["ringlet"] || !cnt[o] || sum[o] == 0) line = line " – |"
      else line = line sprintf(" %.2f |", (sum["ringlet"] / cnt["ringlet"]) / (sum[o] / cnt[o]))
    }
    print line
  }
  if (daggers)
    printf "\n† the hypervisor stole more than %s%% of a CPU during that load, in each of its %d runs; the ratios leave these out (unless all of a server'"'"'s runs of the load are)\n", steal_max, retries + 1
}' "$results"

if [ "$failed" -ne 0 ]; then
  log "some loads failed: see FAIL in the table and the log above"
  exit 1
fi
