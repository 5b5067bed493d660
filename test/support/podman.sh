# shellcheck shell=bash
# Sourced by the suites that run podman, after they set `work` (their temporary directory).
#
# podman_ ARGS...: podman with its own store under $work/podman (vfs: no overlay mounts
# needed), so a test never sees or changes the machine's images. podman_clean: remove every
# container and image of that store (for a suite's EXIT trap). run_image: below.
#
# Our containers.conf (cgroupfs, file events, runc; no systemd in CI), so a user's
# ~/.config cannot change the outcome.
# shellcheck disable=SC2154 # $work is the sourcing suite's
CONTAINERS_CONF=$(CDPATH='' cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../e2e" && pwd)/containers.conf
export CONTAINERS_CONF

podman_() {
    podman --root "$work/podman/root" --runroot "$work/podman/run" --tmpdir "$work/podman/tmp" \
        --storage-driver vfs "$@"
}

podman_clean() {
    podman_ rm --all --force >/dev/null 2>&1 || true
    podman_ rmi --all --force >/dev/null 2>&1 || true
}

# run_image REF [PODMAN_RUN_ARGS...]: pull REF (a localhost/ image is already loaded), run it
# with no network, wait for it to stop (at most 60 s) and print what it wrote, then
# "exit status: N" (or "still running", and the container is killed).
run_image() {
    local ref=$1 name _ state=''
    shift
    name=c$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
    if [[ "$ref" != localhost/* ]]; then
        podman_ pull -q --tls-verify=false "$ref" >"$work/pull.out" 2>&1 || { cat "$work/pull.out"; return 1; }
    fi
    podman_ run -d --name "$name" --network=none "$@" "$ref" >"$work/run.out" 2>&1 || { cat "$work/run.out"; return 1; }
    for _ in $(seq 1 300); do
        state=$(podman_ inspect -f '{{.State.Status}}' "$name" 2>/dev/null) || true
        [ "$state" = exited ] && break
        sleep 0.2
    done
    podman_ logs "$name" 2>&1 || true
    if [ "$state" = exited ]; then
        echo "exit status: $(podman_ inspect -f '{{.State.ExitCode}}' "$name" 2>&1)"
    else
        echo "still running"
    fi
    podman_ rm --force --time 0 "$name" >/dev/null 2>&1 || true
}
