# Sourced by bench/ws.sh, bench/compare.sh and bench/callgrind.sh (from the
# repository root). wsbench_bin prints the WebSocket load generator to use:
# WSBENCH_BIN, else the CMake target build/ringlet_wsbench, else
# bench/wsbench.c compiled with cc and pkg-config's libuv flags to
# build/ringlet_wsbench-local (again whenever the source is newer).
# Non-zero status if it cannot be built. POSIX sh.
wsbench_bin() {
  if [ -n "${WSBENCH_BIN:-}" ]; then
    echo "$WSBENCH_BIN"
  elif [ -x build/ringlet_wsbench ]; then
    echo build/ringlet_wsbench
  else
    _wsb=build/ringlet_wsbench-local
    # test -nt is not POSIX, but dash, bash and busybox sh have it
    # shellcheck disable=SC3013
    if [ ! -x "$_wsb" ] || [ bench/wsbench.c -nt "$_wsb" ]; then
      echo "compiling $_wsb" >&2
      mkdir -p build
      # shellcheck disable=SC2046 # pkg-config prints a list of flags
      ${CC:-cc} -std=c11 -O2 -Wall -Wextra bench/wsbench.c -o "$_wsb" \
        $(pkg-config --cflags --libs libuv) >&2 || return 1
    fi
    echo "$_wsb"
  fi
}
