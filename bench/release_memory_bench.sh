#!/usr/bin/env bash
# Benchmark: the BEAM's peak memory while `mix ocibuild` images a large release. Release files
# are streamed from disk by the NIF, so the peak should not grow with the release's size
# (target: at most 150 MB).
# Not a test: it prints a table and asserts nothing.
#
#   bash bench/release_memory_bench.sh [MB]     MB of random files to add (default 500)
#
# The release is real: examples/hello_elixir (ocibuild as a path dependency), built with
# `MIX_ENV=prod mix release`, then grown with lib/big_dep-1.0.0/priv/ holding MB/2.5 files of
# 2.5 MB from /dev/urandom (incompressible, so every byte goes through the compressor and the
# upload). Phases, each a fresh `mix ocibuild` VM:
#   baseline      `mix run --no-start -e :ok`: Mix and the project loaded, nothing imaged
#   save          `mix ocibuild -o FILE --base tar://BASE` (build every layer, write the tarball)
#   push          `mix ocibuild --push` to a registry on loopback (build, upload everything)
#   push tarball  `mix ocibuild --push REGISTRY FILE` (the saved tarball, to a fresh repository)
# The peak is VmHWM of the beam.smp process, sampled from /proc every 20 ms until it exits
# (VmHWM only grows, so the last sample is the peak unless memory rose in the last 20 ms).
set -euo pipefail
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
root=$(CDPATH='' cd -- "$here/.." && pwd)
source "$root/scripts/common.sh"
source "$root/test/registry/lib.sh"
source "$root/bench/peak_rss.sh"
source "$here/mix_env.sh"

mb=${1:-500}
work=$(mktemp -d "${TMPDIR:-/tmp}/ocibuild-memory-bench.XXXXXX")
export OCIBUILD_TEST_TMP=$work
trap 'registry_stop_all; rm -rf "$work"' EXIT

isolate_mix "$work"
# Each measured run builds its layers (the peak includes building), not a layer cache hit.
export OCIBUILD_LAYER_CACHE=off

section "prepare: the release (examples/hello_elixir), $mb MB of random files, a base image"
app=$work/hello_elixir
cp -R "$root/examples/hello_elixir" "$app"
rm -rf "$app/_build" "$app/deps" "$app"/*.tar.gz
sed -i "s|{:ocibuild, path: \"[^\"]*\"|{:ocibuild, path: \"$root\"|" "$app/mix.exs"
grep -q "path: \"$root\"" "$app/mix.exs" || die "could not point the example's ocibuild dependency at $root"
(cd "$app" && quiet "$work/release.log" mix release --overwrite)
rel=$app/_build/prod/rel/hello_elixir
# host_base.sh builds the base with the ocibuild the project has just compiled.
export OCIBUILD_EBIN=$app/_build/prod/lib/ocibuild/ebin
big=$rel/lib/big_dep-1.0.0/priv
mkdir -p "$big"
files=$((mb * 2 / 5))
for i in $(seq 1 "$files"); do
    head -c 2621440 /dev/urandom >"$big/blob_$i.bin"
done
release_mb=$(du -sm "$rel" | cut -f1)
echo "release: $rel ($release_mb MB, $(find "$rel" -type f | wc -l) files)"
registry_start anon REG >"$work/registry.log" 2>&1 || { cat "$work/registry.log"; die "registry did not start"; }
quiet "$work/base.log" bash "$root/test/support/host_base.sh" --release "$rel" -o "$work/base.tar.gz" \
    -t base:1 --push "$REG_ADDR/base:1"

rows=()
# measure PHASE CMD...: run CMD in the app's directory; record wall time and beam.smp's peak RSS.
measure() {
    local phase=$1 pid hwm t0 t1 status=0
    shift
    t0=$(date +%s%N)
    (cd "$app" && exec "$@") >"$work/$phase.log" 2>&1 &
    pid=$!
    hwm=$(peak_rss "$pid")
    wait "$pid" || status=$?
    t1=$(date +%s%N)
    if [ "$status" -ne 0 ]; then
        tail -n 40 "$work/$phase.log"
        die "$phase failed (exit $status): $*"
    fi
    rows+=("$(awk -v p="$phase" -v s="$release_mb" -v ns=$((t1 - t0)) -v kb="$hwm" \
        'BEGIN { printf "  %-14s %10d %9.1f %13.1f", p, s, ns / 1e9, kb / 1024 }')")
    echo "$phase: done ($(tail -n 2 "$work/$phase.log" | tr '\n' ' '))"
}

section "measure"
measure baseline mix run --no-start -e :ok
measure save mix ocibuild -t big:1 -o "$work/big.tar.gz" --base "tar://$work/base.tar.gz"
measure push mix ocibuild -t big:1 --push "$REG_ADDR/bench" --base "$REG_ADDR/base:1"
measure "push tarball" mix ocibuild --push "$REG_ADDR/bench-tarball" "$work/big.tar.gz"

section "peak memory of the BEAM (VmHWM of beam.smp), $(nproc) cores"
printf '  %-14s %10s %9s %13s\n' phase "release MB" seconds "peak RSS MB"
printf '%s\n' "${rows[@]}"
echo
echo "  target: peak RSS <= 150 MB in every phase"
