#!/usr/bin/env bash
# docs.sh: build the reference docs with LDoc (config.ld at the repository
# root) into doc/html/, and fail if LDoc printed anything but its two usual
# lines ("reading configuration ...", "output written to ...") or exited
# non-zero: LDoc reports warnings (an unknown tag, an unresolved @{ref}, a
# file without a module) on stderr and still exits 0, so its output is
# checked line by line as well as run with --fatalwarnings. Then it checks
# that every module got its page.
#
# Needs Debian's lua-ldoc and lua-discount (Markdown for LDoc; without it
# LDoc falls back to plain text): installed here when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> docs: LDoc and its Markdown formatter (lua-ldoc, lua-discount)"
bash scripts/apt-install.sh "docs tools" lua-ldoc lua-discount

echo "==> docs: rm -rf doc/html (generated; git-ignored)"
rm -rf doc/html

out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "==> docs: ldoc --fatalwarnings . (config.ld)"
status=0
ldoc --fatalwarnings . >"$out" 2>&1 || status=$?
sed 's/^/    /' "$out"

fail=0
if [ "$status" -ne 0 ]; then
  echo "docs: FAILED: ldoc exited $status" >&2
  fail=1
fi
unexpected=$(grep -v -e '^reading configuration from config\.ld$' \
  -e '^output written to .*/doc/html$' "$out" || true)
if [ -n "$unexpected" ]; then
  echo "docs: FAILED: ldoc printed warnings or errors:" >&2
  printf '%s\n' "$unexpected" | sed 's/^/    /' >&2
  fail=1
fi

# Every page config.ld should have produced: the index, the C module, one
# page per lua/ringlet/*.lua module, the README topic.
pages=(doc/html/index.html doc/html/modules/ringlet.html
       doc/html/topics/README.md.html)
for f in lua/ringlet/*.lua; do
  pages+=("doc/html/modules/ringlet.$(basename "$f" .lua).html")
done
for p in "${pages[@]}"; do
  if [ ! -s "$p" ]; then
    echo "docs: FAILED: $p was not written" >&2
    fail=1
  fi
done
if [ "$fail" -ne 0 ]; then
  exit 1
fi
echo "==> docs: ${#pages[@]} pages in doc/html/, no warnings"
printf '    %s\n' "${pages[@]}"
