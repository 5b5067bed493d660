#!/usr/bin/env bash
# A base image for BEAM releases, assembled from this machine with no network: a shell from
# busybox-static plus the shared libraries ERTS needs, found with ldd. Built and saved with
# ocibuild itself (test/support/host_base.escript); optionally pushed to a registry.
#
#   bash test/support/host_base.sh -o base.tar.gz [-t base:1] [--release DIR]... [--host-erts]
#        [--platform linux/amd64,linux/arm64] [--push REGISTRY/REPO:TAG]
#
#   -o, --output FILE   the tarball to write (ocibuild:save, docker format, gzip); a release is
#                       then imaged with `--base tar://FILE`, or FILE is pushed with --push
#   -t, --tag NAME:TAG  the tag saved in the tarball (default ocibuild-host-base:1)
#   --release DIR       ldd the ERTS binaries (DIR/erts-*/bin/*) and every shared object under
#                       DIR/lib/*/priv of this release; repeatable. Without it: the host's ERTS.
#   --host-erts         also carry the host's Erlang/OTP ($ROOT = code:root_dir(), usually
#                       /usr/lib/erlang) at the same path, with PATH=$ROOT/bin:/bin, for
#                       releases built without ERTS. wx, sources and docs are left out (wx
#                       alone would pull in GTK).
#   --platform LIST     save one manifest per platform (an index) holding the same layers: the
#                       host's binaries, so only the host's platform really runs; enough to
#                       test multi-platform images built on top
#   --push REF          push the tarball to REF (REGISTRY/REPO:TAG, e.g. 127.0.0.1:5000/base:1;
#                       plain HTTP on loopback) with ocibuild_registry:push_loaded
#
# Layers: the shell and libraries (/bin/sh, /bin/busybox, the ELF interpreter at its exact
# path, every library at the path ldd names), then with --host-erts the host's ERTS. Debian's
# busybox sh runs its own applets (dirname, sed, ...) without PATH, so no applet links are
# needed. The ocibuild code comes from $OCIBUILD_EBIN, else this checkout's rebar3 or mix build
# (_build/{default,dev,prod,test}).
set -euo pipefail
here=$(CDPATH='' cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
root=$(CDPATH='' cd -- "$here/../.." && pwd)

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}
die() {
    printf 'host_base: %s\n' "$*" >&2
    exit 1
}

output='' tag=ocibuild-host-base:1 host_erts=0 platforms='' push='' releases=()
while [ $# -gt 0 ]; do
    case "$1" in
    -o | --output) output=${2:?}; shift ;;
    -t | --tag) tag=${2:?}; shift ;;
    --release) releases+=("${2:?}"); shift ;;
    --host-erts) host_erts=1 ;;
    --platform) platforms=${2:?}; shift ;;
    --push) push=${2:?}; shift ;;
    -h | --help) usage ;;
    *) printf 'host_base: unknown argument %s\n' "$1" >&2; usage ;;
    esac
    shift
done
[ -n "$output" ] || usage

busybox=$(command -v busybox || true)
[ -n "$busybox" ] || die "busybox not found: install busybox-static"
# A dynamically linked busybox would need libraries of its own from outside the image.
if ldd "$busybox" >/dev/null 2>&1; then die "$busybox is not statically linked: install busybox-static"; fi

if [ -z "${OCIBUILD_EBIN:-}" ]; then
    for d in "$root"/_build/{default,dev,prod,test}/lib/ocibuild/ebin; do
        if [ -f "$d/ocibuild.beam" ]; then OCIBUILD_EBIN=$d; break; fi
    done
fi
if [ -z "${OCIBUILD_EBIN:-}" ] || [ ! -f "$OCIBUILD_EBIN/ocibuild.beam" ]; then
    die "no compiled ocibuild: run rebar3 compile or mix compile, or set OCIBUILD_EBIN"
fi
export OCIBUILD_EBIN

erts_root=$(erl -noshell -eval 'io:format("~s", [code:root_dir()]), halt().')
[ ${#releases[@]} -gt 0 ] || releases=("$erts_root")

list=$(mktemp "${TMPDIR:-/tmp}/ocibuild-host-base.XXXXXX")
trap 'rm -f "$list" "$list.libs"' EXIT

# entry LAYER IMAGE_PATH HOST_PATH: one file of the image, with the host file's mode.
entry() {
    printf '%s\t%s\t%s\t%s\n' "$1" "$(stat -L -c %a "$3")" "$2" "$3" >>"$list"
}

# The ELF objects whose libraries the image needs: ERTS's programs and the NIFs and drivers.
elf_objects() {
    local dir
    for dir in "$@"; do
        # Either may be missing (a release without ERTS, apps without priv/).
        find "$dir"/erts-*/bin -maxdepth 1 -type f 2>/dev/null || true
        find "$dir"/lib/*/priv -name '*.so' \( -type f -o -type l \) -not -path '*/lib/wx-*' 2>/dev/null || true
    done
}
{
    elf_objects "${releases[@]}"
    if [ "$host_erts" = 1 ]; then elf_objects "$erts_root"; fi
} | sort -u | while IFS= read -r f; do
    # Only ELF files: the erl, start and similar shell scripts are not ldd's business.
    [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] || continue
    # "libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)" and the interpreter's own line
    # "/lib64/ld-linux-x86-64.so.2 (0x...)"; "statically linked" and vdso lines have no path.
    ldd "$f" 2>/dev/null | awk -v f="$f" '
        $2 == "=>" && $3 ~ /^\// { print $3; next }
        $1 ~ /^\// { print $1 }
        $2 == "=>" && $3 == "not" { print "MISSING " $1 " (needed by " f ")" }' || true
done >"$list.libs"
if grep -q '^MISSING ' "$list.libs"; then
    die "ldd cannot find libraries on this machine: $(sed -n 's/^MISSING //p' "$list.libs" | sort -u | tr '\n' ' ')"
fi
[ -s "$list.libs" ] || die "ldd found no shared libraries for ${releases[*]}"

entry system /bin/sh "$busybox"
entry system /bin/busybox "$busybox"
while IFS= read -r lib; do
    entry system "$lib" "$lib"
done < <(sort -u "$list.libs")

env_path=/bin
if [ "$host_erts" = 1 ]; then
    env_path=$erts_root/bin:/bin
    while IFS= read -r f; do
        # Symlinks are followed (their content is copied) when they name a file; the man/
        # link to /usr/share/man and other links to directories are skipped.
        [ -f "$f" ] || continue
        entry erts "$f" "$f"
    done < <(find "$erts_root" \( -path "$erts_root/lib/wx-*" -o -path "$erts_root/lib/*/src" \
        -o -path "$erts_root/lib/*/doc" -o -path "$erts_root/lib/*/examples" \) -prune \
        -o \( -type f -o -type l \) -print | sort)
fi

escript "$here/host_base.escript" "$list" "$output" "$tag" "$env_path" "$platforms" "$push"
