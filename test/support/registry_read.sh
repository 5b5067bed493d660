# shellcheck shell=bash
# Reading what a loopback registry holds, for the suites that push to one (test/registry,
# test/release, test/supply): sourced, never run. `start` needs $work and `die`.
# shellcheck disable=SC2154 # $work is the sourcing suite's

skopeo_() { skopeo --insecure-policy "$@"; }
# raw REF: the manifest or index bytes skopeo reads (plain HTTP on loopback).
raw() { skopeo_ inspect --tls-verify=false --raw "docker://$1"; }
# digest_of REF: the digest of those bytes.
digest_of() { raw "$1" | sha256sum | awk '{print "sha256:" $1}'; }

# start WHAT CMD...: run CMD quietly (a registry, a proxy); on failure show its output and stop.
start() {
    local what=$1
    shift
    "$@" >"$work/start.out" 2>&1 || { cat "$work/start.out"; die "could not start $what"; }
}
