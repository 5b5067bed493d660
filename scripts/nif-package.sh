#!/usr/bin/env bash
# Assemble the package as hex would publish it: exactly the files that src/ocibuild.app.src's
# `files' names (mix.exs's package/0 reads the same list).
#
#   bash scripts/nif-package.sh -o DIR [--checksums FILE]
#
#   -o DIR             an empty or new directory to copy the files to
#   --checksums FILE   use FILE as the package's native/checksums.txt (e.g. the one
#                      scripts/nif-build.sh or `escript native/install_nif.escript checksums'
#                      wrote), as a release does once its artifacts are built
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"
root=$(repo_root)

out='' checksums=''
while [ $# -gt 0 ]; do
    case "$1" in
    -o) out=${2:?-o needs a directory}; shift ;;
    --checksums) checksums=${2:?--checksums needs a file}; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
    shift
done
[ -n "$out" ] || die "-o DIR is required (see --help)"
mkdir -p "$out"
[ -z "$(ls -A "$out")" ] || die "$out is not empty"

files=$(cd "$root" && erl -noshell -eval '
    {ok, [{application, ocibuild, Props}]} = file:consult("src/ocibuild.app.src"),
    [io:format("~s~n", [F]) || F <- proplists:get_value(files, Props)],
    halt().')
[ -n "$files" ] || die "src/ocibuild.app.src names no files"
while IFS= read -r f; do
    [ -e "$root/$f" ] || die "the package's file list names $f, which does not exist"
    (cd "$root" && tar -cf - -- "$f") | tar -xf - -C "$out"
done <<<"$files"
if [ -n "$checksums" ]; then
    cp "$checksums" "$out/native/checksums.txt"
fi
echo "package: $out ($(find "$out" -type f | wc -l) files)"
