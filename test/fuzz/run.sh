#!/usr/bin/env bash
# Property tests of every parser of untrusted bytes, with a fixed case budget per target.
#
#   bash test/fuzz/run.sh [CASES]      # default 100000 cases per property
#
# Every property test in ocibuild_core is named prop_*; proptest reads PROPTEST_CASES, so the
# same tests run with proptest's small default budget inside plain `cargo test` (CI) and with
# this script's budget here. A crash, panic or failed property fails the run with proptest's
# minimised input; the closing line counts the properties and the cases they ran.
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/../../scripts/common.sh"
cd "$(repo_root)"

cases=${1:-100000}
case $cases in '' | *[!0-9]*) die "usage: bash test/fuzz/run.sh [CASES] (a whole number)" ;; esac

log=$(mktemp "${TMPDIR:-/tmp}/ocibuild-fuzz.XXXXXX")
trap 'rm -f "$log"' EXIT
started=$(date +%s)
# Release mode: the budget is about cases, not about how slow a debug build is.
status=0
PROPTEST_CASES=$cases PROPTEST_MAX_SHRINK_ITERS=2048 \
    cargo test -p ocibuild_core --release --quiet --lib --tests prop_ -- --test-threads=2 2>&1 | tee "$log" || status=$?
# With a name filter, each test binary's summary counts only the prop_* tests it ran.
properties=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($i ~ /^passed;?$/) p += $(i-1) } END { print p + 0 }' "$log")
failed=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($i ~ /^failed;?$/) f += $(i-1) } END { print f + 0 }' "$log")
echo "fuzz: $properties properties x $cases cases = $((properties * cases)) cases in $(($(date +%s) - started)) s; $failed failed"
if [ "$status" != 0 ] || [ "$failed" != 0 ]; then die "a property failed (see proptest's minimal input above)"; fi
