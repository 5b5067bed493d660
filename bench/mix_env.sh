# shellcheck shell=bash
# What the Mix benchmarks (bench/rebuild_bench.sh, bench/release_memory_bench.sh) share:
# sourced, never run. Needs scripts/common.sh (die) and $root.

# isolate_mix WORK: run Mix as a new user would, with nothing of this machine's: Mix and hex
# homes, the blob store and empty docker/podman credentials under WORK, hex unreachable,
# MIX_ENV=prod, no SOURCE_DATE_EPOCH. The NIF builds into the checkout's target dir.
isolate_mix() {
    local work=$1
    export OCIBUILD_CACHE_DIR=$work/cache
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
    export HEX_CDN=http://127.0.0.1:9 HEX_MIRROR=http://127.0.0.1:9
    export MIX_HOME=$work/mix-home HEX_HOME=$work/hex-home MIX_ENV=prod
    export DOCKER_CONFIG=$work/no-docker-config REGISTRY_AUTH_FILE=$work/no-auth.json
    echo '{}' >"$REGISTRY_AUTH_FILE"
    unset SOURCE_DATE_EPOCH
}

# quiet LOG CMD...: run CMD with its output in LOG; stop with the log's tail on failure.
quiet() {
    local log=$1
    shift
    "$@" >"$log" 2>&1 || { tail -n 40 "$log"; die "failed: $*"; }
}
