#!/usr/bin/env bash
# apt-install.sh WHAT PKG...: apt-get install (with sudo unless root) those
# of the Debian packages PKG that dpkg does not have, saying so; WHAT names
# them in the message when none is missing. Used by scripts/deps.sh,
# scripts/node-deps.sh and bench/deps.sh.
#
# `node` and `npm` stand for the commands rather than packages: NodeSource's
# nodejs package bundles npm and conflicts with Debian's npm, so `node`
# installs nodejs only when no node command exists, and `npm` installs
# Debian's npm only when no npm command exists and nodejs is not
# NodeSource's.
set -euo pipefail
what=$1
shift
missing=()
for p in "$@"; do
  case $p in
  node) command -v node >/dev/null 2>&1 || missing+=(nodejs) ;;
  npm)
    command -v npm >/dev/null 2>&1 ||
      grep -q '^Version:.*nodesource' <<<"$(dpkg -s nodejs 2>/dev/null)" ||
      missing+=(npm)
    ;;
  *) dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p") ;;
  esac
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "==> $what: all installed"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "==> apt-get install ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
