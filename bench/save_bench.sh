#!/usr/bin/env bash
# Benchmark: what `save` (ocibuild:save/3, `mix ocibuild -o`, `rebar3 ocibuild -o`) costs for a
# large image, as .tar.gz (layers stored, not recompressed) and as .tar, and what it cost when
# the whole tarball was gzip-compressed. Not a test: it prints a table and asserts nothing.
#
#   bash bench/save_bench.sh [MB] [RUNS] [BEFORE_EBIN]
#
# MB (default 150) of random files (incompressible, as a release's compressed layers are) go
# into one gzip layer, built once; each row then saves that image in a fresh VM, RUNS times
# (default 3), and shows the best wall time of the VM, the time of the save call alone, the
# BEAM's peak RSS (VmHWM) and the file's size. BEFORE_EBIN is another build's ebin (e.g. the
# main checkout's _build/default/lib/ocibuild/ebin, its priv/ beside it) whose save is measured
# the same way, for a before/after table; it is copied, never written to. A `gzip -6` row
# shows what recompressing the same tar costs. Timings on a loaded machine are noisy.
set -euo pipefail
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
root=$(CDPATH='' cd -- "$here/.." && pwd)
source "$root/scripts/common.sh"
source "$root/bench/peak_rss.sh"

mb=${1:-150}
runs=${2:-3}
before=${3:-}
case "$mb$runs" in '' | *[!0-9]*) die "usage: bash bench/save_bench.sh [MB] [RUNS] [BEFORE_EBIN]" ;; esac
work=$(mktemp -d "${TMPDIR:-/tmp}/ocibuild-save-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
export OCIBUILD_CACHE_DIR=$work/cache
unset SOURCE_DATE_EPOCH

section "prepare: compile ocibuild, $mb MB of random files in one gzip layer"
(cd "$root" && rebar3 compile) >"$work/compile.log" 2>&1 || { tail -n 40 "$work/compile.log"; die "rebar3 compile failed"; }
after_ebin=$root/_build/default/lib/ocibuild/ebin
if [ -n "$before" ]; then
    if [ ! -d "$before" ] || [ ! -d "$before/../priv" ]; then
        die "$before is not an ebin directory with a priv/ beside it"
    fi
    mkdir -p "$work/before/ocibuild"
    cp -RL "$before" "$work/before/ocibuild/ebin"
    cp -RL "$before/../priv" "$work/before/ocibuild/priv"
    before_ebin=$work/before/ocibuild/ebin
fi
mkdir -p "$work/src"
for i in $(seq 1 $(((mb + 4) / 5))); do
    head -c 5242880 /dev/urandom >"$work/src/file_$i.bin"
done
OCIBUILD_EBIN=$after_ebin escript "$here/save_bench.escript" prepare "$work/src" "$work/image.term" ||
    die "building the layer failed"

rows=()
# measure NAME EBIN OUT: best of $runs fresh VMs saving the image to OUT.
measure() {
    local name=$1 ebin=$2 out=$3 run pid hwm t0 t1 wall call best_wall='' best_call='' peak=0
    for run in $(seq 1 "$runs"); do
        rm -f "$out"
        t0=$(date +%s%N)
        OCIBUILD_EBIN=$ebin escript "$here/save_bench.escript" save "$work/image.term" "$out" >"$work/save.out" 2>&1 &
        pid=$!
        hwm=$(peak_rss "$pid")
        wait "$pid" || { cat "$work/save.out"; die "$name: the save failed"; }
        t1=$(date +%s%N)
        wall=$(awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.3f", ns / 1e9 }')
        call=$(tail -n 1 "$work/save.out")
        if [ -z "$best_wall" ] || awk -v a="$wall" -v b="$best_wall" 'BEGIN { exit !(a < b) }'; then best_wall=$wall; fi
        if [ -z "$best_call" ] || awk -v a="$call" -v b="$best_call" 'BEGIN { exit !(a < b) }'; then best_call=$call; fi
        if [ "$hwm" -gt "$peak" ]; then peak=$hwm; fi
        echo "$name run $run: ${wall}s (save call ${call}s), peak RSS $((hwm / 1024)) MB"
    done
    rows+=("$(awk -v n="$name" -v w="$best_wall" -v c="$best_call" -v kb="$peak" -v sz="$(stat -c %s "$out")" \
        'BEGIN { printf "  %-28s %9.3f %9.3f %13.1f %9.1f", n, w, c, kb / 1024, sz / 1048576 }')")
}

section "measure ($runs runs each, best time, highest peak)"
if [ -n "$before" ]; then
    measure "before: .tar.gz (all gzip)" "$before_ebin" "$work/before.tar.gz"
fi
measure "after: .tar.gz (stored)" "$after_ebin" "$work/after.tar.gz"
measure "after: .tar" "$after_ebin" "$work/after.tar"
t0=$(date +%s%N)
gzip -6 -c "$work/after.tar" >"$work/gzip6.tar.gz"
t1=$(date +%s%N)
rows+=("$(awk -v ns=$((t1 - t0)) -v sz="$(stat -c %s "$work/gzip6.tar.gz")" \
    'BEGIN { printf "  %-28s %9.3f %9s %13s %9.1f", "gzip -6 of the .tar (ref.)", ns / 1e9, "-", "-", sz / 1048576 }')")

section "save of a $mb MB image ($(nproc) cores; wall = the whole VM)"
printf '  %-28s %9s %9s %13s %9s\n' output "wall s" "save s" "peak RSS MB" "MB"
printf '%s\n' "${rows[@]}"
