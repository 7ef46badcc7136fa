#!/usr/bin/env bash
# Installs what spec/examples_ws_spec.lua's independent clients need:
# Debian's chromium, Node.js with npm, and spec/node's npm packages (ws,
# playwright-core, pinned in spec/node/package-lock.json). Skips what is
# already there. Used by CI; run it by hand before those specs.
# (scripts/apt-install.sh looks for node and npm as commands.)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/apt-install.sh "chromium, node, npm" chromium node npm

cd spec/node
if [ -f package-lock.json ]; then
  echo "==> npm ci (spec/node)"
  npm ci --no-audit --no-fund
else
  echo "==> npm install (spec/node)"
  npm install --no-audit --no-fund
fi
