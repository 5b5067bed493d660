# shellcheck shell=bash
# The BEAM's peak memory for the memory benchmarks (bench/release_memory_bench.sh,
# bench/tarball_memory_bench.sh, bench/save_bench.sh): sourced, never run. The poller forks
# every 20 ms, which costs the run it watches CPU on a small machine: a benchmark whose times
# matter more than a sample every 20 ms (bench/rebuild_bench.sh) takes GNU time's %M instead.
#
# peak_rss PID: wait for PID to exit, sampling every 20 ms the VmHWM of its beam.smp (PID itself,
# or its first beam.smp descendant: `mix` and `erl` are scripts that start one), and print the
# peak in kB (0 if no beam.smp was seen). VmHWM only grows, so the last sample is the peak
# unless memory rose in the last 20 ms. Does not reap PID: the caller still `wait`s for its status.
peak_rss() {
    local pid=$1 beam='' hwm=0 v
    while kill -0 "$pid" 2>/dev/null; do
        [ -n "$beam" ] || beam=$(beam_pid "$pid")
        if [ -n "$beam" ]; then
            v=$(awk '/^VmHWM:/ {print $2}' "/proc/$beam/status" 2>/dev/null || true)
            if [ -n "$v" ] && [ "$v" -gt "$hwm" ]; then hwm=$v; fi
        fi
        sleep 0.02
    done
    echo "$hwm"
}

# beam_pid PID: PID if it is beam.smp, else its first beam.smp descendant (empty if none yet).
beam_pid() {
    local pid=$1 child found
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = beam.smp ]; then
        echo "$pid"
        return
    fi
    # shellcheck disable=SC2013 # the children files hold space-separated pids
    for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
        found=$(beam_pid "$child")
        if [ -n "$found" ]; then echo "$found"; return; fi
    done
}
