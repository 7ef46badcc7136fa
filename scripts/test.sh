#!/usr/bin/env bash
# The whole test suite: build (gcc, and clang when installed), luacheck, LDoc,
# clang-format check, busted specs over real sockets. Ends with "N passed, M failed"; exits non-zero on any
# failure.
#
#   scripts/test.sh              normal build (build/)
#   scripts/test.sh --sanitize   ASan+UBSan build (build-asan/); every server
#                                the specs start runs sanitized and must exit 0
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=build
FLAGS=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [ "${1:-}" = "--sanitize" ]; then
  BUILD=build-asan
  FLAGS=(-DCMAKE_BUILD_TYPE=Debug -DRINGLET_SANITIZE=ON)
  # A sanitizer report makes the server exit non-zero; the specs assert 0.
  export ASAN_OPTIONS=detect_leaks=1:exitcode=23:abort_on_error=0
  export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=23
  export RINGLET_SANITIZE=1
fi
passed=0
failed=0
step() { # name, command...
  local name=$1; shift
  echo "==> $name"
  if "$@"; then passed=$((passed + 1)); else
    echo "FAILED: $name"; failed=$((failed + 1)); fi
}
step "build ($BUILD)" bash -c "cmake -S . -B $BUILD ${FLAGS[*]} >/dev/null &&
  cmake --build $BUILD -j$(nproc) 2>&1 | grep -v '^\[' ; exit \${PIPESTATUS[0]}"
step "layers (no call or include cycle in csrc/)" lua5.4 scripts/layers.lua "$BUILD"
if [ "$BUILD" = build ] && command -v clang >/dev/null; then
  # the core builds warning-free under clang too (-Wall -Wextra -Werror)
  step "build (clang)" bash -c "CC=clang cmake -S . -B build-clang \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
    cmake --build build-clang -j$(nproc) 2>&1 | grep -v '^\[' ;
    exit \${PIPESTATUS[0]}"
fi
lua_dirs=()
for d in lua spec examples bench fuzz soak; do [ -d "$d" ] && lua_dirs+=("$d"); done
step "luacheck" luacheck -q "${lua_dirs[@]}"
if [ "$BUILD" = build ]; then
  step "docs (LDoc, no warnings)" bash scripts/docs.sh
fi
if command -v clang-format >/dev/null; then
  step "clang-format" clang-format --dry-run -Werror csrc/*.c csrc/*.h bench/*.c \
    examples/*.c spec/c/*.c fuzz/*.c fuzz/*.h
fi
echo "==> busted (RINGLET_BIN=$BUILD/ringlet)"
log=$(mktemp)
RINGLET_BIN=$BUILD/ringlet RINGLET_HOST_BIN=$BUILD/ringlet_host \
  RINGLET_TRANSPORT_TEST_BIN=$BUILD/ringlet_transport_test \
  busted --lua=lua5.4 -o utfTerminal spec 2>&1 | tee "$log"
summary=$(grep -aE '^[0-9]+ success' "$log" | tail -1)
rm -f "$log"
if [ -z "$summary" ]; then
  echo "busted printed no summary"
  failed=$((failed + 1))
else
  read -r ok _ bad _ err _ <<<"$(echo "$summary" | tr -d '/:')"
  passed=$((passed + ok))
  failed=$((failed + bad + err))
fi
# A user's specs, as a user runs them (ringlet.test in busted's own
# process, so the plain build only); no ";" in --cpath/--lpath: busted's
# --lua re-runs itself through sh, unquoted
if [ "$BUILD" = build ]; then
  step "examples/spec (a user's busted specs)" busted --lua=lua5.4 \
    --cpath="$BUILD/?.so" --lpath=lua/?.lua -o utfTerminal examples/spec
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
