#!/usr/bin/env bash
# Installs what spec/examples_ws_spec.lua's independent clients need:
# Debian's chromium, Node.js with npm, and spec/node's npm packages (ws,
# playwright-core, pinned in spec/node/package-lock.json). Skips what is
# already there. Used by CI; run it by hand before those specs.
#
# NodeSource's nodejs package bundles npm and conflicts with Debian's npm
# package, so node and npm are looked for as commands; chromium is looked
# for as a package (dpkg -s).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
dpkg -s chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
if ! command -v npm >/dev/null 2>&1; then
  # With NodeSource's nodejs npm comes along; with Debian's it is a package.
  dpkg -s nodejs 2>/dev/null | grep -q '^Version:.*nodesource' || missing+=(npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "==> apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
else
  echo "==> chromium, node, npm: all installed"
fi

cd spec/node
if [ -f package-lock.json ]; then
  echo "==> npm ci (spec/node)"
  npm ci --no-audit --no-fund
else
  echo "==> npm install (spec/node)"
  npm install --no-audit --no-fund
fi
