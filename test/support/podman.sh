# shellcheck shell=bash
# Sourced by the suites that run podman, after they set `work` (their temporary directory).
#
# podman_ ARGS...: podman with its own store under $work/podman (vfs: no overlay mounts
# needed), so a test never sees or changes the machine's images. podman_clean: remove every
# container and image of that store (for a suite's EXIT trap).
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
