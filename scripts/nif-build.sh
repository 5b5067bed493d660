#!/usr/bin/env bash
# Build the precompiled NIF artifacts of this version, for the targets this machine can build,
# and their checksum lines.
#
#   bash scripts/nif-build.sh [-o DIR] [TARGET...]
#
#   -o DIR    where to write (default target/nif-artifacts)
#   TARGET    Rust target triples (default: this machine's). One that is not the host needs its
#             standard library (`rustup target add TARGET`) and a linker for it; without them it
#             is skipped with a line saying so. .github/workflows/release.yml builds them all.
#
# Writes DIR/ocibuild_nif-v<version>-nif-2.16-<target>.so.gz (the release-profile library,
# gzipped, no timestamp) and DIR/checksums.txt (`<sha256>  <name>' lines, the format of
# native/checksums.txt; a name built again replaces its line). CARGO_TARGET_DIR is honoured.
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"
root=$(repo_root)
installer=$root/native/install_nif.escript

out=$root/target/nif-artifacts
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
    -o) out=${2:?-o needs a directory}; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) targets+=("$1") ;;
    esac
    shift
done
require_rust
host=$(rustc -vV | sed -n 's/^host: //p')
[ ${#targets[@]} -gt 0 ] || targets=("$host")
target_dir=${CARGO_TARGET_DIR:-$root/target}
# As native/build.sh: the cc crate tracks SOURCE_DATE_EPOCH, which would make this a different
# build from the one `mix compile` and `rebar3 compile` keep up to date (no C here uses dates).
unset SOURCE_DATE_EPOCH
mkdir -p "$out"
touch "$out/checksums.txt"

# build TARGET: prints the path of the built library.
build() {
    local target=$1 lib=libocibuild_nif.so args=(--release --quiet -p ocibuild_nif --manifest-path "$root/Cargo.toml")
    case "$target" in
    # Symbols such as enif_* are resolved by the VM at load time, not by the linker.
    *-apple-darwin)
        lib=libocibuild_nif.dylib
        export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-undefined -C link-arg=dynamic_lookup" ;;
    # musl links statically by default; a NIF must be a shared object the VM can dlopen.
    *-linux-musl) export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=-crt-static" ;;
    esac
    if [ "$target" = "$host" ]; then
        cargo build "${args[@]}" --target-dir "$target_dir" >&2
        echo "$target_dir/release/$lib"
    else
        cargo build "${args[@]}" --target "$target" --target-dir "$target_dir" >&2
        echo "$target_dir/$target/release/$lib"
    fi
}

built=0
for target in "${targets[@]}"; do
    if [ "$target" != "$host" ] && ! rustup target list --installed 2>/dev/null | grep -x "$target" >/dev/null; then
        echo "skipped $target: its standard library is not installed (rustup target add $target); CI builds it"
        continue
    fi
    name=$(escript "$installer" artifact "$target")
    lib=$(build "$target")
    gzip -9 -n -c "$lib" >"$out/.$name.tmp"
    mv -f "$out/.$name.tmp" "$out/$name"
    sum=$(sha256sum "$out/$name" | cut -d' ' -f1)
    { grep -v "  $name\$" "$out/checksums.txt" || true; printf '%s  %s\n' "$sum" "$name"; } >"$out/checksums.txt.tmp"
    mv -f "$out/checksums.txt.tmp" "$out/checksums.txt"
    echo "built $out/$name"
    built=$((built + 1))
done
[ "$built" -gt 0 ] || die "no target could be built here"
echo "checksums: $out/checksums.txt"
