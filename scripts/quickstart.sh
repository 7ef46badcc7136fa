#!/usr/bin/env bash
# Quick start on a fresh Debian 12 machine: install what is missing, build,
# and serve examples/hello.lua on http://127.0.0.1:8090 (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
echo "==> cmake -S . -B build && cmake --build build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
echo "==> build/ringlet examples/hello.lua --ip 127.0.0.1 --port 8090"
exec build/ringlet examples/hello.lua --ip 127.0.0.1 --port 8090
