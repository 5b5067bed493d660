#!/usr/bin/env bash
# Benchmark: push a ~100 MB image of 4 layers to a registry on loopback (CNCF distribution,
# started here), next to `skopeo copy` of the same image from an OCI layout, in the same run,
# then re-push the unchanged image and count the blob bytes it sent.
# Not a test: it prints a table and asserts nothing.
#
# Every timed push goes to a registry started for it: distribution shares blobs between
# repositories and skopeo remembers where it saw a blob (and then mounts it instead of
# sending it), so a second push to the same registry would measure something else.
#
#   bash bench/push_bench.sh [RUNS]     RUNS timed pushes each, best shown (default 3)
set -euo pipefail
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
root=$(CDPATH='' cd -- "$here/.." && pwd)
source "$root/scripts/common.sh"
source "$root/test/registry/lib.sh"

runs=${1:-3}
work=$(mktemp -d "${TMPDIR:-/tmp}/ocibuild-push-bench.XXXXXX")
export OCIBUILD_TEST_TMP=$work
trap 'registry_stop_all; rm -rf "$work"' EXIT

(cd "$root" && rebar3 compile >"$work/compile.log" 2>&1) || { cat "$work/compile.log"; die "rebar3 compile failed"; }
export OCIBUILD_EBIN=$root/_build/default/lib/ocibuild/ebin
export OCIBUILD_CACHE_DIR=$work/cache
export SOURCE_DATE_EPOCH=1700000000
bench() { escript "$here/push_bench.escript" "$@"; }

bytes=$(bench prepare "$work/layout")
best_ours=; best_skopeo=
for i in $(seq 1 "$runs"); do
    registry_start anon "OURS$i" >"$work/start.log" 2>&1 || { cat "$work/start.log"; die "registry did not start"; }
    addr_var=OURS${i}_ADDR
    read -r ms sent < <(bench push "${!addr_var}" bench/app:1)
    [ -z "$best_ours" ] || [ "$ms" -lt "$best_ours" ] && best_ours=$ms && ours_sent=$sent
    ours_addr=${!addr_var}

    registry_start anon "SKOPEO$i" >"$work/start.log" 2>&1 || { cat "$work/start.log"; die "registry did not start"; }
    addr_var=SKOPEO${i}_ADDR
    t0=$(date +%s%N)
    skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$work/layout" "docker://${!addr_var}/bench/app:1"
    ms=$((($(date +%s%N) - t0) / 1000000))
    [ -z "$best_skopeo" ] || [ "$ms" -lt "$best_skopeo" ] && best_skopeo=$ms
done
read -r repush_ms repush_sent < <(bench push "$ours_addr" bench/app:again)

row() { awk -v n="$1" -v ms="$2" -v b="$3" 'BEGIN {
    s = ms / 1000; rate = (b > 0 && s > 0) ? sprintf("%.1f", b / 1e6 / s) : "-"
    printf "  %-34s %9.3f %10s %12d\n", n, s, rate, b }'; }
echo "push of a 4-layer image ($(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 }') MB) to distribution on loopback, $(nproc) cores, best of $runs:"
echo
printf '  %-34s %9s %10s %12s\n' "" seconds MB/s "blob bytes"
row "ocibuild push" "$best_ours" "$ours_sent"
row "skopeo copy oci: -> docker://" "$best_skopeo" "$bytes"
row "ocibuild re-push (unchanged)" "$repush_ms" "$repush_sent"
echo
awk -v o="$best_ours" -v s="$best_skopeo" 'BEGIN { printf "  throughput ratio ocibuild / skopeo: %.2fx\n", s / o }'
