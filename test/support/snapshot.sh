# shellcheck shell=bash
# Sourced by the suites that use ocibuild as a git dependency or plugin.
#
# working_tree_snapshot ROOT DEST: copy ROOT's working tree (tracked files and untracked ones
# that are not ignored, as they are on disk now) to DEST and commit it there, so a test can
# point a git URL at uncommitted work without touching ROOT's own git state. A deleted tracked
# file is left out. Prints nothing; fails if the commit fails.
working_tree_snapshot() {
    local root=$1 dest=$2
    mkdir -p "$dest"
    (cd "$root" && git ls-files -z --cached --others --exclude-standard) |
        (cd "$root" && while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done) |
        (cd "$root" && tar --null -T - -cf -) | tar -xf - -C "$dest"
    (cd "$dest" && git init -q && git add -A &&
        git -c user.name=t -c user.email=t@ocibuild.invalid commit -q -m snapshot)
}
