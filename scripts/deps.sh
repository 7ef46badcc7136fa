#!/usr/bin/env bash
# Installs, with apt-get, the Debian 12 packages ringlet needs to build, run
# and test, skipping those already installed. Used by quickstart.sh and CI.
set -euo pipefail
PKGS=(build-essential cmake pkg-config liblua5.4-dev lua5.4 libuv1-dev
      libssl-dev node-llhttp lua-busted lua-check lua-socket luarocks curl
      wrk lua-ldoc lua-discount clang)
bash "$(dirname "$0")/apt-install.sh" dependencies "${PKGS[@]}"
# The independent clients of the specs: Node's ws and headless Chromium.
bash "$(dirname "$0")/node-deps.sh"
