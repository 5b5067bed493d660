# shellcheck shell=bash
# Assertions for the shell test suites (test/e2e, test/deps): sourced, never run.
# Each check counts one pass or one failure and never stops the suite; `summary` prints the
# closing "N passed, N failed" line and returns non-zero if anything failed.

passed=0
failed=0

pass() {
    passed=$((passed + 1))
    printf '  ok    %s\n' "$1"
}

# fail NAME [DETAILS]: DETAILS (e.g. a command's output) is shown indented, at most 40 lines.
fail() {
    failed=$((failed + 1))
    printf '  FAIL  %s\n' "$1"
    if [ -n "${2:-}" ]; then
        printf '%s\n' "$2" | head -n 40 | sed 's/^/        /'
    fi
}

# check NAME CMD [ARG...]: passes when CMD exits 0; shows its output when it does not.
check() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then
        pass "$name"
    else
        fail "$name" "exit $?: $*"$'\n'"$out"
    fi
}

# check_eq NAME EXPECTED ACTUAL
check_eq() {
    if [ "$2" == "$3" ]; then
        pass "$1"
    else
        fail "$1" "expected: $2"$'\n'"actual:   $3"
    fi
}

# check_contains NAME NEEDLE HAYSTACK
check_contains() {
    if [[ "$3" == *"$2"* ]]; then
        pass "$1"
    else
        fail "$1" "expected to contain: $2"$'\n'"actual: $3"
    fi
}

# run LOG CMD...: run CMD with its output in LOG; on failure show the log's tail.
run() {
    local log=$1
    shift
    if "$@" >"$log" 2>&1; then
        return 0
    else
        local status=$?
        tail -n 60 "$log"
        return "$status"
    fi
}

# summary SUITE: the closing line; also appended to $OCIBUILD_TEST_RESULTS (if set) so
# scripts/test-all.sh can add up the suites.
summary() {
    if [ -n "${OCIBUILD_TEST_RESULTS:-}" ]; then
        printf '%s %d %d\n' "$1" "$passed" "$failed" >>"$OCIBUILD_TEST_RESULTS"
    fi
    printf '%s: %d passed, %d failed\n' "$1" "$passed" "$failed"
    [ "$failed" -eq 0 ]
}
