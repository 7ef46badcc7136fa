#!/usr/bin/env bash
# What bench/compare.sh needs besides ringlet's own build dependencies
# (scripts/deps.sh): Debian's nginx with the Lua module and
# lua-resty-websocket, wrk, and Node.js with bench/node's ws (pinned in
# bench/node/package-lock.json). apt-get installs only what is missing.
# Run it by hand before bench/compare.sh; benchmarks are not part of CI.
#
# lua-nginx-websocket depends on nginx-extras, so apt-get brings that (and
# its modules) along; the harness loads only ndk and the Lua module, into a
# private nginx started with -p/-c, never the system configuration.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/apt-install.sh "bench dependencies" nginx-light \
  libnginx-mod-http-lua lua-nginx-websocket wrk curl libuv1-dev pkg-config \
  node npm

echo "==> npm ci (bench/node)"
cd bench/node
npm ci --no-audit --no-fund
