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

PKGS=(nginx-light libnginx-mod-http-lua lua-nginx-websocket wrk curl
      libuv1-dev pkg-config)
missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
command -v node >/dev/null 2>&1 || missing+=(nodejs)
if ! command -v npm >/dev/null 2>&1; then
  # NodeSource's nodejs bundles npm; with Debian's nodejs it is a package.
  dpkg -s nodejs 2>/dev/null | grep -q '^Version:.*nodesource' || missing+=(npm)
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "==> bench dependencies: all installed"
else
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "==> apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

echo "==> npm ci (bench/node)"
cd bench/node
npm ci --no-audit --no-fund
