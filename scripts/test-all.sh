#!/usr/bin/env bash
# Every test and lint of ocibuild, in the order CI runs them (.ci/run calls this script).
#
#   bash scripts/test-all.sh
#
# Installs what it needs first (scripts/install-deps.sh; root on a fresh Debian 12 machine),
# then stops at the first failing step with its name. The shell suites (test/e2e, test/deps)
# add up to the closing "N passed, N failed" line; cargo, EUnit and ExUnit print their own.
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"
root=$(repo_root)
cd "$root"

export CI=${CI:-}
export OCIBUILD_TEST_RESULTS
OCIBUILD_TEST_RESULTS=$(mktemp "${TMPDIR:-/tmp}/ocibuild-results.XXXXXX")
trap 'rm -f "$OCIBUILD_TEST_RESULTS"' EXIT
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

step "install dependencies" bash scripts/install-deps.sh
step "cargo fmt" cargo fmt --all --check
step "cargo clippy" cargo clippy --workspace --all-targets --quiet -- -D warnings
step "cargo test" cargo test --workspace --quiet
step "rebar3 eunit" rebar3 eunit
step "mix format" mix format --check-formatted
step "mix compile" mix compile --warnings-as-errors
step "mix test" mix test
step "end-to-end tests (skopeo, umoci, podman)" bash test/e2e/run.sh
step "dependency tests (mix path dep, rebar3 git dep and plugin)" bash test/deps/run.sh
step "registry test kit self-test" bash test/registry/selftest.sh
step "registry tests (distribution, ferro-oci-server, fault proxy, skopeo, podman)" bash test/registry/run.sh
step "release tests (mix ocibuild, rebar3 ocibuild, release step; pushed and run with podman)" bash test/release/run.sh
step "supply-chain tests (annotations, SBOM, signatures, referrers; skopeo, pyspdxtools, openssl)" bash test/supply/run.sh
step "precompiled NIF tests (no Rust on PATH: download, checksum, OCIBUILD_NIF_PATH, OCIBUILD_BUILD_NIF; podman)" bash test/precompiled/run.sh

section "summary"
printf '%s\n' "${timings[@]}"
printf '%5ss  total\n' $(($(date +%s) - started))
awk '{ p += $2; f += $3 } END { printf "%d passed, %d failed\n", p, f }' "$OCIBUILD_TEST_RESULTS"
