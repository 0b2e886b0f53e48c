#!/bin/sh
# Regenerates the documents that the tool itself produces, so they cannot drift from
# the code (tests/py_cli_fp8.py fails when they are stale).
set -eu
bin=${1:-build/bin/kvfp8}
tmp=$(mktemp)
"$bin" fp8 differences >"$tmp"
mv "$tmp" docs/fp8-differences.md
echo "wrote docs/fp8-differences.md"
