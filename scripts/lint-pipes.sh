#!/usr/bin/env bash
# Fail on `CMD | grep -q` in our shell scripts. Under `set -o pipefail` (every script here sets
# it) grep -q exits at its first match, CMD then dies of SIGPIPE if it was still writing, and
# the pipeline fails: a check that passes or fails by how fast CMD writes (it failed CI once,
# on `tar -tzf | grep -qx manifest.json`). Use `grep ... >/dev/null`, which reads to the end.
#
#   bash scripts/lint-pipes.sh
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"
cd "$(repo_root)"

# Comment lines are skipped: this script's own explanation names the pattern.
found=$(git ls-files -z -- '*.sh' .ci/run | xargs -0 grep -nE '(^|[^|])\|[[:space:]]*grep[[:space:]]+-[a-zA-Z]*q' |
    grep -vE '^[^:]+:[0-9]+:[[:space:]]*#' || true)
if [ -n "$found" ]; then
    printf '%s\n' "$found" >&2
    die "a pipe into grep -q can fail under pipefail when the writer gets SIGPIPE; use grep ... >/dev/null"
fi
echo "lint-pipes: no pipe into grep -q"
