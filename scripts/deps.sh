#!/usr/bin/env bash
# Installs, with apt-get, the Debian 12 packages ringlet needs to build, run
# and test, skipping those already installed. Used by quickstart.sh and CI.
set -euo pipefail
PKGS=(build-essential cmake pkg-config liblua5.4-dev lua5.4 libuv1-dev
      libssl-dev node-llhttp lua-busted lua-check lua-socket luarocks curl
      wrk)
missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "==> dependencies: all installed"
else
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "==> apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
# The independent clients of the specs: Node's ws and headless Chromium.
bash "$(dirname "$0")/node-deps.sh"
