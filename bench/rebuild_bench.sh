#!/usr/bin/env bash
# Benchmark: the edit -> image loop of issue 15 ("Fast rebuilds") on a large release, next to
# the Mix floor measured in the same run. Not a test: it prints a table and asserts nothing.
#
#   bash bench/rebuild_bench.sh [RUNS]      RUNS runs of each row, the median shown (default 5)
#
# REBUILD_BENCH_MB (default 148) sets the release's size. The release is real:
# examples/hello_elixir (ocibuild as a path dependency, ERTS bundled) plus a path dependency,
# big_data, whose priv/ holds generated files (bench/release_data.py: deterministic, about as
# compressible as BEAM files and shared objects) up to that size, built with
# `MIX_ENV=prod mix release`. The base is a saved tarball of this machine's libraries
# (test/support/host_base.sh, `--base tar://...`); pushes go to a distribution registry on
# loopback. Rows, each a fresh `mix` VM:
#   floor            `mix run --no-compile --no-start -e ''`: Mix starts and stops in the project
#                    and nothing else (no dependency check, no compile, no application
#                    started): what any `mix` task pays before it does anything, so "vs floor"
#                    is what ocibuild adds
#   task start       `mix ocibuild --bogus`: the task up to its option parser (dependency checks,
#                    the NIF install check), then exit 1
#   ... NIF forced   the same with priv/.ocibuild_nif.manifest removed first, so the installer
#                    and cargo's no-op check run, as on every run before the manifest existed
#   cold save        `mix ocibuild -o image.tar.gz`, blob store (and any layer cache) emptied first
#   unchanged save   the same again, nothing changed but the clock: without SOURCE_DATE_EPOCH
#                    the image's `created` time (0.10's default: now) is new on every run, so
#                    its config, manifest and tarball are new bytes that must be written
#   unchanged push   `mix ocibuild --push` of the unchanged release, already pushed once (a
#                    new config and manifest each run, for the same reason)
#   ... with SOURCE_DATE_EPOCH  the same two rows with SOURCE_DATE_EPOCH set, as a reproducible
#                    CI build sets it: truly nothing changed, so the save finds its output
#                    already written and the push finds every blob and manifest in place
#   app-only change  a module edited, then `mix release` (its own row) and `mix ocibuild --push`
#   app layer build  the app layer alone (lib/hello_elixir-*, bin/, releases/), built by
#                    ocibuild_layer:create/2 with the default compression into an empty blob
#                    store, timed inside the VM: the "app layer's own compression" of the goal
# `mix release --overwrite` copies lib/* (OTP applications and dependencies, big_data too)
# afresh each time, with new mtimes and inodes and the same bytes (erts-*/ is left alone), so
# the app-only rows also show how a layer cache treats files copied again unchanged.
# The forced row removes this checkout's priv/.ocibuild_nif.manifest; the installer it starts
# writes it again.
#
# Nothing polls while a row runs: a poller forking awk and sleep every 20 ms steals CPU from the
# run on a 2-core machine and notices its exit late (it made an unchanged push read 0.79 s
# where the command alone took 0.67 s). Wall time is taken around the command; peak RSS is
# GNU time's %M (getrusage of the command once reaped, no sampling): `mix` execs elixir, erl
# and erlexec, which exec beam.smp in the same process, and Linux keeps the largest RSS over
# those execs and over reaped children, so %M is the beam.smp's VmHWM (checked: 354,748 kB
# against the VM's own VmHWM of 355,032 kB for a 300 MB binary). The largest of the runs is
# shown. Timings on a shared machine are noisy: compare rows of one run, not runs of
# different days.
set -euo pipefail
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
root=$(CDPATH='' cd -- "$here/.." && pwd)
source "$root/scripts/common.sh"
source "$root/test/registry/lib.sh"
source "$here/mix_env.sh"
command -v /usr/bin/time >/dev/null || die "GNU time (/usr/bin/time) is needed: apt-get install time"

runs=${1:-5}
target_mb=${REBUILD_BENCH_MB:-148}
work=$(mktemp -d "${TMPDIR:-/tmp}/ocibuild-rebuild-bench.XXXXXX")
export OCIBUILD_TEST_TMP=$work
trap 'registry_stop_all; rm -rf "$work"' EXIT

isolate_mix "$work"

section "prepare: examples/hello_elixir grown to $target_mb MB, a base image, a registry"
app=$work/hello_elixir
cp -R "$root/examples/hello_elixir" "$app"
rm -rf "$app/_build" "$app/deps" "$app"/*.tar.gz
big=$work/big_data
mkdir -p "$big/lib" "$big/priv"
cat >"$big/mix.exs" <<'EOF'
defmodule BigData.MixProject do
  use Mix.Project

  def project, do: [app: :big_data, version: "1.0.0", elixir: "~> 1.14"]
end
EOF
echo 'defmodule BigData do def dir, do: :code.priv_dir(:big_data) end' >"$big/lib/big_data.ex"
sed -i "s|{:ocibuild, path: \"[^\"]*\", runtime: false}|{:ocibuild, path: \"$root\", runtime: false}, {:big_data, path: \"$big\"}|" "$app/mix.exs"
grep -q "path: \"$big\"" "$app/mix.exs" || die "could not add the big_data dependency to the example's mix.exs"
(cd "$app" && quiet "$work/release-0.log" mix release --overwrite --quiet)
rel=$app/_build/prod/rel/hello_elixir
filler=$((target_mb - $(du -sm --apparent-size "$rel" | cut -f1)))
[ "$filler" -gt 0 ] || filler=1
quiet "$work/data.log" python3 "$here/release_data.py" "$big/priv/data" "$filler"
(cd "$app" && quiet "$work/release-1.log" mix release --overwrite --quiet)
release_mb=$(du -sm --apparent-size "$rel" | cut -f1)
echo "release: $release_mb MB in $(find "$rel" -type f | wc -l) files ($(cat "$work/data.log") generated)"
export OCIBUILD_EBIN=$app/_build/prod/lib/ocibuild/ebin
quiet "$work/base.log" bash "$root/test/support/host_base.sh" --release "$rel" -o "$work/base.tar.gz" -t base:1
registry_start anon REG >"$work/registry.log" 2>&1 || { cat "$work/registry.log"; die "registry did not start"; }
base=tar://$work/base.tar.gz

# timed NAME CMD...: run CMD in the app's directory; append its wall time (s) to $work/NAME.s
# and the beam's peak RSS (kB, GNU time's %M) to $work/NAME.kb. `--bogus' exits 1 by design:
# that is allowed for the task start row only.
timed() {
    local name=$1 t0 t1 status=0
    shift
    t0=$(date +%s%N)
    (cd "$app" && exec /usr/bin/time -f '%M' -o "$work/$name.rss" "$@") >"$work/$name.log" 2>&1 || status=$?
    t1=$(date +%s%N)
    if [ "$status" -ne 0 ] && ! { [[ "$name" == task_start* ]] && [ "$status" -eq 1 ]; }; then
        tail -n 40 "$work/$name.log"
        die "$name failed (exit $status): $*"
    fi
    awk -v ns=$((t1 - t0)) 'BEGIN { printf "%.3f\n", ns / 1e9 }' >>"$work/$name.s"
    # time writes "Command exited with non-zero status N" first when the command fails.
    tail -n 1 "$work/$name.rss" >>"$work/$name.kb"
}

save() { timed "$1" mix ocibuild -t bench:1 -o "$work/image.tar.gz" --base "$base"; }
push() { timed "$1" mix ocibuild -t bench:1 --push "$REG_ADDR/bench" --base "$base"; }
# The same with SOURCE_DATE_EPOCH set: a reproducible build, byte for byte the same each run.
sde=1700000000
save_sde() { timed "$1" env SOURCE_DATE_EPOCH=$sde mix ocibuild -t bench:1 -o "$work/image-sde.tar.gz" --base "$base"; }
push_sde() { timed "$1" env SOURCE_DATE_EPOCH=$sde mix ocibuild -t bench:1 --push "$REG_ADDR/bench-sde" --base "$base"; }

section "measure: $runs runs of each row"
for i in $(seq 1 "$runs"); do
    echo "run $i"
    timed floor mix run --no-compile --no-start -e ''
    timed task_start mix ocibuild --bogus
    rm -f "$root/priv/.ocibuild_nif.manifest"
    timed task_start_forced mix ocibuild --bogus
    rm -rf "$OCIBUILD_CACHE_DIR"
    save cold_save
done
for i in $(seq 1 "$runs"); do save unchanged_save; done
push first_push
for i in $(seq 1 "$runs"); do push unchanged_push; done
save_sde first_save_sde
for i in $(seq 1 "$runs"); do save_sde unchanged_save_sde; done
push_sde first_push_sde
for i in $(seq 1 "$runs"); do push_sde unchanged_push_sde; done
for i in $(seq 1 "$runs"); do
    # A new function each time: the app's beam changes, nothing else does.
    printf 'defmodule HelloElixir.BenchEdit do\n  def run, do: %d\nend\n' "$i" >"$app/lib/bench_edit.ex"
    timed app_release mix release --overwrite --quiet
    push app_push
done

# The app layer alone, each run into an empty blob store, timed inside the VM.
app_layer() {
    erl -noshell -pa "$OCIBUILD_EBIN" -eval '
        [Rel, Store] = [list_to_binary(A) || A <- init:get_plain_arguments()],
        Dirs = filelib:wildcard(binary_to_list(Rel) ++ "/lib/hello_elixir-*") ++
            [binary_to_list(Rel) ++ "/" ++ D || D <- ["bin", "releases"]],
        Files = lists:append([filelib:fold_files(D, "", true, fun(F, A) -> [F | A] end, []) || D <- Dirs]),
        Entries = [{list_to_binary("/app" ++ string:prefix(F, binary_to_list(Rel))), {file, F}, 8#755}
                   || F <- lists:sort(Files)],
        os:putenv("OCIBUILD_CACHE_DIR", binary_to_list(Store)),
        {Us, {ok, Layer}} = timer:tc(fun() -> ocibuild_layer:create(Entries) end),
        io:format("~.3f ~b ~b~n", [Us / 1.0e6, maps:get(size, Layer), length(Entries)]),
        halt().' -extra "$rel" "$1"
}
for i in $(seq 1 "$runs"); do
    read -r s size files < <(app_layer "$work/app-layer-$i") || die "the app layer build failed"
    echo "$s" >>"$work/app_layer.s"
done

median() { sort -n "$work/$1.s" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
peak() { if [ -f "$work/$1.kb" ]; then sort -n "$work/$1.kb" | tail -n 1; else echo 0; fi; }
floor=$(median floor)
app_layer_s=$(median app_layer)
# row LABEL NAME [GOAL]: median, min, median - floor, peak RSS and the goal, if any.
row() {
    local label=$1 name=$2 goal=${3:-}
    awk -v l="$label" -v m="$(median "$name")" -v lo="$(sort -n "$work/$name.s" | head -n 1)" \
        -v f="$floor" -v kb="$(peak "$name")" -v g="$goal" 'BEGIN {
        printf "  %-34s %8.3f %8.3f %+10.3f %9s %10s\n", l, m, lo, m - f,
            (kb > 0 ? sprintf("%.0f", kb / 1024) : "-"), (g == "" ? "-" : sprintf("%.3f", g)) }'
}
goal() { awk -v f="$floor" -v a="$1" 'BEGIN { printf "%.3f", f + a }'; }

section "rebuild benchmark: $release_mb MB release, $(nproc) cores, median of $runs"
printf '  %-34s %8s %8s %10s %9s %10s\n' "" median min "vs floor" "RSS MB" "goal"
row "floor (mix run, nothing)" floor
row "task start (--bogus)" task_start
row "task start, NIF check forced" task_start_forced
row "cold save" cold_save
row "unchanged save (created: now)" unchanged_save "$(goal 0.15)"
row "unchanged push (created: now)" unchanged_push "$(goal 0.15)"
row "unchanged save, SOURCE_DATE_EPOCH" unchanged_save_sde "$(goal 0.15)"
row "unchanged push, SOURCE_DATE_EPOCH" unchanged_push_sde "$(goal 0.15)"
row "app-only: mix release" app_release
row "app-only: mix ocibuild --push" app_push "$(goal "$(awk -v a="$app_layer_s" 'BEGIN { print 0.3 + a }')")"
# Timed inside a running VM: no floor to subtract.
printf '  %-34s %8.3f %8.3f %10s %9s %10s\n' "app layer build (in the VM)" "$app_layer_s" \
    "$(sort -n "$work/app_layer.s" | head -n 1)" - - -
echo
echo "  floor: \`mix run --no-compile --no-start -e ''\` in the project, MIX_ENV=prod"
echo "  goals (issue 15): unchanged save or push <= floor + 0.15 s;"
echo "                    app-only push <= floor + 0.3 s + the app layer build"
echo "  first push (everything uploaded): $(median first_push) s;" \
    "saved tarball: $(($(stat -c %s "$work/image.tar.gz") / 1048576)) MB;" \
    "app layer: $files files, $((size / 1024)) KiB compressed"
