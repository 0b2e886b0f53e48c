#!/bin/sh
# The main job (make run): what kvfp8 can say about this machine today.
#  1. the FP8 conformance summary: every optimized CPU path against the reference,
#     for every profile, format, mode and source type;
#  2. the vendor difference table (where FP8 implementations disagree).
# Later stages (hashing, attention, the conformance runner over every backend) add
# their own sections here.
set -u
bin=${1:-build/bin/kvfp8}
status=0
echo "== kvfp8 main job: $(date -u '+%Y-%m-%d %H:%M UTC') on $(uname -m), $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //')"
echo
echo "== FP8 conformance summary (kvfp8 fp8 check)"
"$bin" fp8 check || status=1
echo
echo "== Where the vendor profiles differ (kvfp8 fp8 differences)"
"$bin" fp8 differences || status=1
echo
if [ "$status" = 0 ]; then echo "main job: all checks passed"; else echo "main job: FAILURES above"; fi
exit $status
