#!/usr/bin/env bash
# Benchmark: build one layer from every regular file under a directory (default
# /usr/lib/erlang, about 98 MB in 3.6k files: what a large release weighs), with gzip and with
# zstd, through the public Erlang API (ocibuild_layer:create/2 with {file, Path} contents),
# next to `tar -c | gzip -6` of the same files in the same run; each row shows its speed and
# compressed size relative to that. Not a test: it prints a table and asserts nothing.
#
#   bash bench/layer_bench.sh [DIR] [RUNS]     RUNS timed builds per codec, best shown (default 3)
set -euo pipefail
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
root=$(CDPATH='' cd -- "$here/.." && pwd)
source "$root/scripts/common.sh"

dir=${1:-/usr/lib/erlang}
runs=${2:-3}
work=$(mktemp -d "${TMPDIR:-/tmp}/ocibuild-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

(cd "$root" && rebar3 compile >"$work/compile.log" 2>&1) || { cat "$work/compile.log"; die "rebar3 compile failed"; }
export OCIBUILD_EBIN=$root/_build/default/lib/ocibuild/ebin
export OCIBUILD_CACHE_DIR=$work/cache
# Every run really builds: with the layer cache on, runs after the first are cache hits
# (bench/rebuild_bench.sh and examples/bench_layer_cache.rs measure those).
export OCIBUILD_LAYER_CACHE=off
unset SOURCE_DATE_EPOCH

echo "layer from $dir, $(nproc) cores, best of $runs:"
escript "$here/layer_bench.escript" "$dir" "$runs"
