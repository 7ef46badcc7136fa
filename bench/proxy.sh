#!/usr/bin/env bash
# A reverse proxy on ringlet.client against nginx's proxy_pass (issue 12):
# wrk loads a proxy, the proxy passes each request to an upstream ringlet
# over keep-alive connections, and the figure is the proxy's CPU time per
# proxied request.
#
#   ringlet proxy  bench/proxy_app.lua: client.request{url = UPSTREAM ..
#                  req.uri, ...} from the handler (its coroutine waits, the
#                  loop serves the others), the client's keep-alive pool
#                  (pool_size KEEPALIVE); status, content-type and body back
#   nginx proxy    bench/nginx/proxy.conf.in: proxy_pass http://upstream;
#                  upstream { keepalive KEEPALIVE; }, proxy_http_version
#                  1.1, Connection "", one worker, no module loaded
#   upstream       ringlet serving bench/app.lua (GET /hello: 13 bytes of
#                  text/plain), the same build, a fresh process per load
#   load           wrk -t1 -cCONNS -dDURATION http://PROXY/hello
#
# Placement on the 2 CPUs: the proxy under test alone on CPU 0 (as every
# server in compare.sh), the upstream and wrk on CPU 1. The proxy's figure
# is its own utime + stime (/proc/PID/stat; nginx: its one worker), so the
# upstream's CPU is never counted in it wherever it runs; on CPU 0 it
# would compete with the proxy for the CPU, and how the scheduler
# interleaves the two would change the proxy's batching (requests per
# loop turn, hence system calls per request) differently for each proxy.
# On CPU 1 the proxy has a CPU to itself and the two proxies face the
# same upstream and client. The upstream's own CPU per request is reported
# too, as a check that both proxies sent it the same work (a proxy that
# reopened connections or sent bigger requests would show there). When
# CPU 1 is the busier one, the run is bound by wrk + upstream rather than
# by the proxy: requests/s then says little, CPU per request still does.
# UPSTREAM_CPU=0 puts the upstream beside the proxy instead.
#
# Every load runs on a fresh upstream and a fresh proxy; the rounds
# alternate the proxies (the order rotates each round). Before each load
# and after it, curl checks GET /hello through the proxy (200, text/plain,
# "Hello, World!") and GET /missing (the upstream's 404 passed on); a wrk
# run with non-2xx answers or socket errors fails. A 1 s wrk run before
# each measured load warms the proxy and fills its pool (not measured).
# Also reported: the upstream connections closed during the load
# (TIME-WAIT sockets on the upstream's port).
#
# KEEPALIVE, the idle upstream connections each proxy keeps, is 64 by
# default, more than the CONNS requests that can be in flight: with 32
# (nginx's documented example and the client's default) and 50 wrk
# connections both proxies closed and reopened an upstream connection for
# one request in 6 to 20 (a burst of answers finds the pool full, the
# next burst of requests finds it short), so the figure measured TCP
# set-up as well as proxying. KEEPALIVE=32 measures that case.
#
#   bench/deps.sh      # once: nginx, wrk, curl (the Lua module is not needed)
#   cmake -S . -B build && cmake --build build -j2   # or RINGLET_COMMIT=HEAD
#   bench/proxy.sh     # table on stdout, progress and wrk's output on stderr
#
# Environment (defaults in brackets): ROUNDS [2], DURATION [5s], CONNS [50]
# (wrk's connections), KEEPALIVE [64] (idle upstream connections kept:
# nginx's keepalive, the client's pool_size), WARMUP [1] (0: none),
# STEAL_MAX [5] and RETRIES [2] (a load during which the hypervisor stole
# more than STEAL_MAX % of either CPU runs again, up to RETRIES times; a
# cell still disturbed is marked with a dagger and left out of the
# ratios), PROXIES ["ringlet nginx"], UPSTREAM_CPU [1], RINGLET_BIN
# [build/ringlet], NGINX_BIN [nginx], KEEP=1 keeps the temporary directory.
# RINGLET_COMMIT=REV builds that commit (git archive, RelWithDebInfo,
# RINGLET_TESTS=OFF) in the temporary directory and uses it for the
# ringlet proxy and the upstream: use it on a work tree that may be rebuilt
# during the run.
#
# Needs Linux /proc, taskset, ss, wrk, curl, nginx and 2 CPUs. Every
# process it starts is stopped by PID (SIGTERM, then SIGKILL after 5 s),
# also when it is interrupted. Exit status 1 when a load or a check failed.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD

ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-50}
KEEPALIVE=${KEEPALIVE:-64}
WARMUP=${WARMUP:-1}
STEAL_MAX=${STEAL_MAX:-5}
RETRIES=${RETRIES:-2}
PROXIES=${PROXIES:-ringlet nginx}
UPSTREAM_CPU=${UPSTREAM_CPU:-1}
RINGLET_BIN=${RINGLET_BIN:-build/ringlet}
NGINX_BIN=${NGINX_BIN:-nginx}
PROXY_CPU=0
LOAD_CPU=1
PATH_HELLO=/hello

log() { echo "proxy: $*" >&2; }
die() {
  log "$*"
  exit 1
}

# ---- checks ----

for tool in taskset ss wrk curl "$NGINX_BIN"; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found (bench/deps.sh installs what is missing)"
done
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (the proxy on CPU 0, wrk on CPU 1)"
for p in $PROXIES; do
  case $p in ringlet | nginx) ;; *) die "unknown proxy '$p' in PROXIES" ;; esac
done
case $UPSTREAM_CPU in 0 | 1) ;; *) die "UPSTREAM_CPU is 0 or 1" ;; esac

tck=$(getconf CLK_TCK)
dir=$(mktemp -d "${TMPDIR:-/tmp}/ringlet-proxy.XXXXXX")
results=$dir/results.tsv # proxy, round, key, value
: >"$results"
failed=0

upid=  # the upstream
ppid_= # the proxy we started (nginx: the master)
mpid=  # the proxy process measured (nginx: its one worker)
uport=
pport=

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
  [ -n "$ppid_" ] && kill_wait "$ppid_"
  # an nginx worker outlives a master that had to be SIGKILLed
  if [ -n "$mpid" ] && kill -0 "$mpid" 2>/dev/null; then kill -KILL "$mpid" 2>/dev/null || true; fi
  [ -n "$upid" ] && kill_wait "$upid"
  if [ "${KEEP:-0}" = 1 ]; then log "kept $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- ringlet ----

if [ -n "${RINGLET_COMMIT:-}" ]; then
  rev=$(git rev-parse --short=7 "$RINGLET_COMMIT^{commit}") || die "no commit $RINGLET_COMMIT"
  log "building $rev in $dir/src (RelWithDebInfo)"
  mkdir -p "$dir/src"
  git archive "$rev" | tar -x -C "$dir/src" || die "git archive $rev failed"
  if ! { cmake -S "$dir/src" -B "$dir/src/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRINGLET_TESTS=OFF &&
    cmake --build "$dir/src/build" -j2 --target ringlet_cli; } >"$dir/build.log" 2>&1; then
    cat "$dir/build.log" >&2
    die "build of $rev failed"
  fi
  RINGLET_BIN=$dir/src/build/ringlet
  ringlet_shown="build/ringlet (a private build of $rev)"
  build_type=RelWithDebInfo
else
  [ -x "$RINGLET_BIN" ] ||
    die "$RINGLET_BIN missing: build it (cmake -S . -B build && cmake --build build -j2), or set RINGLET_BIN or RINGLET_COMMIT=HEAD"
  ringlet_shown=$RINGLET_BIN
  rev=${RINGLET_REV:-$(git describe --always --dirty --abbrev=7 2>/dev/null || echo unknown)}
  build_type=
  cache=$(dirname "$RINGLET_BIN")/CMakeCache.txt
  [ -f "$cache" ] && build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$cache")
fi
# The binary and the libringlet it loads: checked at each start, so that a
# rebuild during the run cannot mix two builds in the figures.
ringlet_files=("$RINGLET_BIN")
lib=$(ldd "$RINGLET_BIN" 2>/dev/null | sed -n 's/^[[:space:]]*libringlet[^ ]* => \([^ ]*\) .*/\1/p')
[ -n "$lib" ] && ringlet_files+=("$lib")
ringlet_sum=$(cat "${ringlet_files[@]}" | cksum)

# ---- processes ----

# A port nothing listens on (nginx needs one in its configuration): below
# the ephemeral range, so no outgoing connection takes it meanwhile.
free_port() {
  local p i
  for i in $(seq 1 100); do
    p=$((20000 + RANDOM % 12000))
    [ -z "$(ss -Htln "( sport = :$p )")" ] && { echo "$p"; return 0; }
  done
  die "no free port found"
}

# Waits for "ringlet: listening on http://IP:PORT" in LOG; prints the port.
wait_port_line() { # PID LOG NAME
  local i=0 port=
  while [ -z "$port" ]; do
    kill -0 "$1" 2>/dev/null || { cat "$2" >&2; die "$3 exited before listening"; }
    i=$((i + 1))
    [ "$i" -le 100 ] || die "$3 did not print its port within 10 s"
    sleep 0.1
    port=$(sed -n 's|^[a-z]*: listening on http://[^ ]*:\([0-9][0-9]*\)$|\1|p' "$2")
  done
  echo "$port"
}

check_build() {
  [ "$(cat "${ringlet_files[@]}" | cksum)" = "$ringlet_sum" ] ||
    die "${ringlet_files[*]} changed during the run (rebuilt?); RINGLET_COMMIT=HEAD builds a private copy"
}

start_upstream() {
  check_build
  : >"$dir/upstream.log"
  taskset -c "$UPSTREAM_CPU" "$RINGLET_BIN" bench/app.lua --ip 127.0.0.1 --port 0 >"$dir/upstream.log" 2>&1 &
  upid=$!
  uport=$(wait_port_line "$upid" "$dir/upstream.log" upstream) || exit 1
  [ "$(curl -s --max-time 2 "http://127.0.0.1:$uport$PATH_HELLO")" = "Hello, World!" ] ||
    die "the upstream does not answer $PATH_HELLO"
}

start_proxy() { # NAME
  local name=$1 i=0 kids
  case $name in
  ringlet)
    check_build
    : >"$dir/proxy.log"
    UPSTREAM=http://127.0.0.1:$uport PROXY_POOL=$KEEPALIVE \
      taskset -c "$PROXY_CPU" "$RINGLET_BIN" bench/proxy_app.lua --ip 127.0.0.1 --port 0 >"$dir/proxy.log" 2>&1 &
    ppid_=$!
    pport=$(wait_port_line "$ppid_" "$dir/proxy.log" "ringlet proxy") || exit 1
    mpid=$ppid_
    ;;
  nginx)
    pport=$(free_port) || exit 1
    rm -rf "$dir/nginx"
    mkdir -p "$dir/nginx"
    sed -e "s|@PORT@|$pport|g" -e "s|@UPSTREAM_PORT@|$uport|g" -e "s|@KEEPALIVE@|$KEEPALIVE|g" \
      -e "s|@TMP@|$dir/nginx|g" bench/nginx/proxy.conf.in >"$dir/nginx/nginx.conf"
    taskset -c "$PROXY_CPU" "$NGINX_BIN" -p "$ROOT/bench/nginx/" -c "$dir/nginx/nginx.conf" \
      -e "$dir/nginx/error.log" >"$dir/proxy.log" 2>&1 &
    ppid_=$!
    mpid=
    while :; do
      kill -0 "$ppid_" 2>/dev/null || {
        cat "$dir/proxy.log" "$dir/nginx/error.log" >&2
        die "nginx exited"
      }
      i=$((i + 1))
      [ "$i" -le 100 ] || die "nginx did not answer within 10 s"
      sleep 0.1
      [ "$(curl -s --max-time 1 "http://127.0.0.1:$pport$PATH_HELLO")" = "Hello, World!" ] || continue
      kids=$(cat "/proc/$ppid_/task/$ppid_/children" 2>/dev/null)
      # shellcheck disable=SC2086 # one pid per word
      set -- $kids
      [ $# -eq 1 ] || die "nginx master $ppid_ has $# children ($kids), expected one worker"
      mpid=$1
      break
    done
    ;;
  esac
  log "$name: pid $ppid_ (measured: $mpid) on 127.0.0.1:$pport, CPU $PROXY_CPU; upstream pid $upid on 127.0.0.1:$uport, CPU $UPSTREAM_CPU"
}

stop_all() { # NAME
  local st=0
  kill_wait "$ppid_" || st=$?
  ppid_=
  mpid=
  if [ "$st" -ne 0 ]; then
    log "$1: exited with status $st on SIGTERM"
    cat "$dir/proxy.log" >&2
    failed=1
  fi
  st=0
  kill_wait "$upid" || st=$?
  upid=
  if [ "$st" -ne 0 ]; then
    log "upstream: exited with status $st on SIGTERM"
    cat "$dir/upstream.log" >&2
    failed=1
  fi
}

# GET /hello and GET /missing through the proxy: the upstream's answers.
check_proxy() { # NAME WHEN
  local base="http://127.0.0.1:$pport" h
  h=$(curl -s -D - -o "$dir/body" --max-time 5 "$base$PATH_HELLO") || die "$1 $2: GET $PATH_HELLO failed"
  grep -q '^HTTP/1.1 200' <<<"$h" || die "$1 $2: GET $PATH_HELLO status: $(echo "$h" | head -1)"
  grep -qi '^content-type: text/plain' <<<"$h" || die "$1 $2: GET $PATH_HELLO is not text/plain"
  [ "$(cat "$dir/body")" = "Hello, World!" ] || die "$1 $2: GET $PATH_HELLO body: $(head -c 200 "$dir/body")"
  h=$(curl -s -D - -o "$dir/body" --max-time 5 "$base/missing") || die "$1 $2: GET /missing failed"
  grep -q '^HTTP/1.1 404' <<<"$h" || die "$1 $2: GET /missing status: $(echo "$h" | head -1)"
  [ "$(cat "$dir/body")" = "not found" ] || die "$1 $2: GET /missing body: $(head -c 200 "$dir/body")"
}

# ---- measurements ----

ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12, $13 }'; } # utime stime
# user+nice+system+irq+softirq and steal of CPU 0 and CPU 1 (/proc/stat)
cpu_stat() { awk '$1 == "cpu0" || $1 == "cpu1" { printf "%d %d ", $2 + $3 + $4 + $7 + $8, $9 }' /proc/stat; }
# sockets in TIME-WAIT on the upstream's port: connections closed
time_wait() { ss -Htan state time-wait "( dport = :$uport or sport = :$uport )" | wc -l; }
# CPU µs per request between two `ticks`: utime (u), stime (s) or both (us)
per_req() { # T0 T1 WHICH REQUESTS
  awk -v a="$1" -v b="$2" -v f="$3" -v hz="$tck" -v n="$4" 'BEGIN {
    split(a, x, " "); split(b, y, " "); t = 0
    if (f ~ /u/) t += y[1] - x[1]
    if (f ~ /s/) t += y[2] - x[2]
    printf "%.3f", t / hz * 1e6 / n }'
}
record() { printf '%s\t%s\t%s\t%s\n' "$proxy" "$round" "$1" "$2" >>"$results"; }

run_load() {
  local try=0 st out n rps p0 p1 u0 u1 c0 c1 w0 w1 tw0 tw1 line busy0 busy1 st0 st1 pbusy steal
  while :; do
    log "$proxy round $round: wrk -t1 -c$CONNS -d$DURATION http://127.0.0.1:$pport$PATH_HELLO (CPU $LOAD_CPU)"
    tw0=$(time_wait)
    c0=$(cpu_stat)
    w0=$(date +%s%N)
    p0=$(ticks "$mpid")
    u0=$(ticks "$upid")
    out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$pport$PATH_HELLO" 2>&1)
    st=$?
    p1=$(ticks "$mpid")
    u1=$(ticks "$upid")
    w1=$(date +%s%N)
    c1=$(cpu_stat)
    tw1=$(time_wait)
    line=$(awk -v a="$c0" -v b="$c1" -v w="$((w1 - w0))" -v hz="$tck" -v p0="$p0" -v p1="$p1" 'BEGIN {
      split(a, x, " "); split(b, y, " "); split(p0, q, " "); split(p1, r, " ")
      secs = w / 1e9 * hz / 100
      printf "%.0f %.0f %.0f %.0f %.0f\n", (y[1] - x[1]) / secs, (y[3] - x[3]) / secs,
        (y[2] - x[2]) / secs, (y[4] - x[4]) / secs, (r[1] + r[2] - q[1] - q[2]) / secs }')
    read -r busy0 busy1 st0 st1 pbusy <<<"$line"
    steal=$((st0 > st1 ? st0 : st1))
    log "$proxy round $round: CPU 0 busy $busy0% (the proxy $pbusy%), CPU 1 busy $busy1%, steal $st0%/$st1%, upstream connections closed $((tw1 - tw0))"
    printf '%s\n' "$out" | sed 's/^/    /' >&2
    if [ "$steal" -gt "$STEAL_MAX" ] && [ "$st" -eq 0 ]; then
      log "$proxy round $round: steal $steal% > $STEAL_MAX%: disturbed"
      [ $((try += 1)) -le "$RETRIES" ] && continue
      record steal "$steal"
    fi
    break
  done
  n=$(echo "$out" | sed -n 's/^ *\([0-9][0-9]*\) requests in .*/\1/p')
  rps=$(echo "$out" | sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p')
  if [ "$st" -ne 0 ] || [ -z "$n" ] || [ -z "$rps" ] || [ "$n" -eq 0 ] ||
    echo "$out" | grep -qE 'Non-2xx|Socket errors'; then
    log "$proxy round $round: FAILED (wrk status $st, errors above)"
    for k in rps cpu user sys up closed busy0 busy1; do record "$k" FAIL; done
    failed=1
    return
  fi
  record rps "$rps"
  record cpu "$(per_req "$p0" "$p1" us "$n")"
  record user "$(per_req "$p0" "$p1" u "$n")"
  record sys "$(per_req "$p0" "$p1" s "$n")"
  record up "$(per_req "$u0" "$u1" us "$n")"
  record closed "$((tw1 - tw0))"
  record busy0 "$busy0"
  record busy1 "$busy1"
}

# ---- versions ----

v_nginx=$("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //')
v_wrk=$(wrk -v 2>&1 | sed -n '1s/^wrk \([^ ]*\).*/\1/p')
cpu_model=$(sed -n '1,/^model name/s/^model name[^:]*: *//p' /proc/cpuinfo | head -1)

# ---- the runs ----

read -r -a order <<<"$PROXIES"
for round in $(seq 1 "$ROUNDS"); do
  shift_by=$(((round - 1) % ${#order[@]}))
  this=("${order[@]:shift_by}" "${order[@]:0:shift_by}")
  for proxy in "${this[@]}"; do
    log "==== round $round/$ROUNDS: $proxy"
    start_upstream
    start_proxy "$proxy"
    check_proxy "$proxy" "before the load"
    if [ "$WARMUP" = 1 ]; then
      taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$pport$PATH_HELLO" >/dev/null 2>&1
    fi
    run_load
    check_proxy "$proxy" "after the load"
    stop_all "$proxy"
  done
done

# ---- the table ----

cmdline="${RINGLET_COMMIT:+RINGLET_COMMIT=$RINGLET_COMMIT }PROXIES=\"$PROXIES\" ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS KEEPALIVE=$KEEPALIVE UPSTREAM_CPU=$UPSTREAM_CPU WARMUP=$WARMUP STEAL_MAX=$STEAL_MAX RETRIES=$RETRIES bench/proxy.sh"

cat <<EOF

- date: $(date -u '+%Y-%m-%d %H:%M UTC')
- machine: $(nproc) CPUs ($cpu_model); the proxy on CPU $PROXY_CPU, the upstream on CPU $UPSTREAM_CPU, wrk on CPU $LOAD_CPU
- ringlet: $rev (${build_type:-unknown build type}), proxy \`$ringlet_shown bench/proxy_app.lua\` (pool_size $KEEPALIVE)
- nginx: $v_nginx, bench/nginx/proxy.conf.in (worker_processes 1, upstream keepalive $KEEPALIVE)
- upstream: \`$ringlet_shown bench/app.lua\`, GET $PATH_HELLO (13 bytes), a fresh process per load
- load: wrk $v_wrk \`-t1 -c$CONNS -d$DURATION\` on GET $PATH_HELLO through the proxy$([ "$WARMUP" = 1 ] && echo ", after 1 s unmeasured")
- command: \`$cmdline\`
- cells: one figure per round, in round order; the ratio is of the means (of the undisturbed runs, where there are any)

EOF

if [ "$UPSTREAM_CPU" = 0 ]; then on0="the proxy + upstream" on1="wrk"; else on0="the proxy" on1="wrk + upstream"; fi
awk -F '\t' -v proxies="$PROXIES" -v rounds="$ROUNDS" -v steal_max="$STEAL_MAX" -v on0="$on0" -v on1="$on1" '
function add(key, text, format) { keys[++n] = key; label[key] = text; kind[key] = format }
function fmt(v, kind,   s, i) {
  if (v == "FAIL") return "FAIL"
  if (kind == "int") {
    s = sprintf("%.0f", v)
    while (s ~ /[0-9][0-9][0-9][0-9]/) {
      i = match(s, /[0-9][0-9][0-9][0-9](,|$)/)
      s = substr(s, 1, i) "," substr(s, i + 1)
    }
    return s
  }
  if (kind == "pct") return sprintf("%.0f%%", v)
  if (v >= 100) return sprintf("%.0f", v)
  return sprintf("%.3g", v)
}
{ val[$1, $3, $2] = $4 }
END {
  add("rps", "requests/s (higher)", "int")
  add("cpu", "**proxy CPU µs/request** (lower)", "")
  add("user", "proxy user µs/request", "")
  add("sys", "proxy system µs/request", "")
  add("up", "upstream CPU µs/request", "")
  add("closed", "upstream connections closed during the load", "int")
  add("busy0", "CPU 0 busy (" on0 ")", "pct")
  add("busy1", "CPU 1 busy (" on1 ")", "pct")
  np = split(proxies, pv, " ")
  hdr = "| figure |"; sep = "| --- |"
  for (j = 1; j <= np; j++) { hdr = hdr " " pv[j] " |"; sep = sep " --- |" }
  both = (proxies ~ /ringlet/ && proxies ~ /nginx/)
  if (both) { hdr = hdr " ringlet / nginx |"; sep = sep " --- |" }
  print hdr; print sep
  for (k = 1; k <= n; k++) {
    key = keys[k]; line = "| " label[key] " |"
    for (j = 1; j <= np; j++) {
      p = pv[j]; cell = ""; sum[p] = 0; cnt[p] = 0; bad[p] = 0; dsum = 0; dcnt = 0
      for (r = 1; r <= rounds; r++) {
        v = ((p, key, r) in val) ? val[p, key, r] : "FAIL"
        dag = (p, "steal", r) in val
        cell = cell (r > 1 ? " · " : "") fmt(v, kind[key]) (dag ? "†" : "")
        if (dag) daggers++
        if (v == "FAIL") bad[p] = 1
        else if (dag) { dsum += v; dcnt++ }
        else { sum[p] += v; cnt[p]++ }
      }
      if (cnt[p] == 0) { sum[p] = dsum; cnt[p] = dcnt }
      line = line " " cell " |"
    }
    if (both && key ~ /^busy/) line = line " |"
    else if (both) {
      if (bad["ringlet"] || bad["nginx"] || !cnt["ringlet"] || !cnt["nginx"] || sum["nginx"] == 0) line = line " – |"
      else {
        ratio = (sum["ringlet"] / cnt["ringlet"]) / (sum["nginx"] / cnt["nginx"])
        line = line sprintf(" %.2f |", ratio)
        if (key == "cpu") target = ratio
      }
    }
    print line
  }
  if (daggers)
    printf "\n† the hypervisor stole more than %s%% of a CPU during that load, in each of its runs; the ratio leaves these out (unless all runs are)\n", steal_max
  if (target != "")
    printf "\nproxy CPU per request, ringlet / nginx: %.2f (target: at most 1.5: %s)\n", target, target <= 1.5 ? "met" : "not met"
}' "$results"

if [ "$failed" -ne 0 ]; then
  log "some loads or checks failed: see FAIL in the table and the log above"
  exit 1
fi
