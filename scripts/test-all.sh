#!/usr/bin/env bash
# Every test and lint of ocibuild, in the order CI runs them (.ci/run calls this script).
#
#   bash scripts/test-all.sh
#
# Installs what it needs first (scripts/install-deps.sh; root on a fresh Debian 12 machine),
# then stops at the first failing step with its name. The shell suites (test/e2e, test/deps, ...)
# add up to the closing "N passed, N failed" line; cargo, EUnit and ExUnit print their own.
#
# Where the time goes, and how it is kept short (README, "Tests"): ferro-oci-server compiles in
# the background from the first second; the shell suites, which spend much of their time waiting
# on registries, podman and fresh VMs, run side by side, each in its own temporary directory,
# registry ports and podman store, with their output printed whole, one suite after the other.
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"
root=$(repo_root)
cd "$root"

export CI=${CI:-}
export OCIBUILD_TEST_RESULTS
OCIBUILD_TEST_RESULTS=$(mktemp "${TMPDIR:-/tmp}/ocibuild-results.XXXXXX")
logs=$(mktemp -d "${TMPDIR:-/tmp}/ocibuild-test-all.XXXXXX")
cleanup() {
    local pidfile
    # A step that failed, or an interrupt, leaves background steps running: stop them (each one
    # is its own process group, so their registries, VMs and containers go too).
    for pidfile in "$logs"/*/pid; do
        if [ -e "$pidfile" ]; then kill -- "-$(cat "$pidfile")" 2>/dev/null || true; fi
    done
    rm -rf "$OCIBUILD_TEST_RESULTS" "$logs"
}
trap cleanup EXIT
# Unit tests write layers into the default blob store; keep it inside _build as documented.
unset OCIBUILD_CACHE_DIR SOURCE_DATE_EPOCH

timings=()
started=$(date +%s)

# step NAME CMD [ARG...]: run one step; on failure name it and stop.
step() {
    local name=$1 t0 status
    shift
    section "$name"
    echo "\$ $*"
    t0=$(date +%s)
    if "$@"; then
        timings+=("$(printf '%5ss  %s' $(($(date +%s) - t0)) "$name")")
    else
        status=$?
        printf '\ntest-all: FAILED at step "%s" (exit %d): %s\n' "$name" "$status" "$*" >&2
        exit "$status"
    fi
}

# in_background NAME CMD [ARG...]: start CMD now, as its own process group, with its output in a
# log of its own; `finish NAME` waits for it. Prints nothing.
declare -A slot=()
slots=0
in_background() {
    local name=$1 dir
    shift
    slots=$((slots + 1))
    dir=$logs/$slots
    slot[$name]=$dir
    mkdir -p "$dir"
    printf '%s\n' "$*" >"$dir/cmd"
    date +%s >"$dir/start"
    # setsid runs CMD in place (a background child is no group leader): its pid is its group.
    setsid bash -c '"$@"; status=$?; date +%s >"$0/end"; exit "$status"' "$dir" "$@" \
        </dev/null >"$dir/log" 2>&1 &
    printf '%s\n' "$!" >"$dir/pid"
}

# finish NAME...: wait for each background step in turn, print its command and whole log under
# its name, and record its own duration; then stop with the names of those that failed.
finish() {
    local name dir status failed=()
    for name in "$@"; do
        dir=${slot[$name]}
        status=0
        wait "$(cat "$dir/pid")" || status=$?
        rm "$dir/pid"
        section "$name"
        echo "\$ $(cat "$dir/cmd")"
        cat "$dir/log"
        if [ "$status" = 0 ]; then
            timings+=("$(printf '%5ss  %s' $(($(cat "$dir/end") - $(cat "$dir/start"))) "$name")")
        else
            printf '\ntest-all: step "%s" failed (exit %d)\n' "$name" "$status" >&2
            failed+=("$name")
        fi
    done
    if [ ${#failed[@]} -gt 0 ]; then
        printf '\ntest-all: FAILED at step(s): %s\n' "$(printf '"%s" ' "${failed[@]}")" >&2
        exit 1
    fi
}

in_background "ferro-oci-server (built in the background)" bash scripts/install-ferro.sh
step "install dependencies" bash scripts/install-deps.sh --no-ferro
step "cargo fmt" cargo fmt --all --check
step "shellcheck" bash -c 'git ls-files -z -- "*.sh" .ci/run | xargs -0 shellcheck'
step "no pipe into grep -q (flaky under pipefail)" bash scripts/lint-pipes.sh
step "cargo clippy" cargo clippy --workspace --all-targets --quiet -- -D warnings
step "cargo test" cargo test --workspace --quiet
step "rebar3 eunit" rebar3 eunit
step "rebar3 xref" rebar3 xref
# Dialyzer (its PLT is built on the first run, most of its time) analyses _build/default, which
# the Mix steps do not touch: it runs next to them.
in_background "rebar3 dialyzer" rebar3 dialyzer
step "mix format" mix format --check-formatted
step "mix compile" mix compile --warnings-as-errors
step "mix test" mix test
finish "rebar3 dialyzer"
# The suites below read the Erlang code compiled here instead of each compiling it in the same
# _build at the same time.
step "rebar3 compile (the code the shell suites load)" rebar3 compile
export OCIBUILD_EBIN=$root/_build/default/lib/ocibuild/ebin
finish "ferro-oci-server (built in the background)"

in_background "end-to-end tests (skopeo, umoci, podman)" bash test/e2e/run.sh
in_background "dependency tests (mix path dep, rebar3 git dep and plugin)" bash test/deps/run.sh
in_background "registry test kit self-test" bash test/registry/selftest.sh
in_background "registry tests (distribution, ferro-oci-server, fault proxy, skopeo, podman)" \
    bash test/registry/run.sh
in_background "release tests (mix ocibuild, rebar3 ocibuild, release step; pushed and run with podman)" \
    bash test/release/run.sh
in_background "supply-chain tests (annotations, SBOM, signatures, referrers; skopeo, pyspdxtools, openssl)" \
    bash test/supply/run.sh
in_background "precompiled NIF tests (no Rust on PATH: download, checksum, OCIBUILD_NIF_PATH, OCIBUILD_BUILD_NIF; podman)" \
    bash test/precompiled/run.sh
finish "end-to-end tests (skopeo, umoci, podman)" \
    "dependency tests (mix path dep, rebar3 git dep and plugin)" \
    "registry test kit self-test" \
    "registry tests (distribution, ferro-oci-server, fault proxy, skopeo, podman)" \
    "release tests (mix ocibuild, rebar3 ocibuild, release step; pushed and run with podman)" \
    "supply-chain tests (annotations, SBOM, signatures, referrers; skopeo, pyspdxtools, openssl)" \
    "precompiled NIF tests (no Rust on PATH: download, checksum, OCIBUILD_NIF_PATH, OCIBUILD_BUILD_NIF; podman)"

section "summary"
printf '%s\n' "${timings[@]}"
printf '%5ss  total\n' $(($(date +%s) - started))
awk '{ p += $2; f += $3 } END { printf "%d passed, %d failed\n", p, f }' "$OCIBUILD_TEST_RESULTS"
