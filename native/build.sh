#!/bin/sh
# Build the NIF (release profile) and install it as <repo>/priv/ocibuild_nif.so.
#
# Run by `rebar3 compile` (pre_hooks) and `mix compile` (the :ocibuild_nif compiler in mix.exs),
# also when ocibuild is a dependency: paths are taken from this script's location, never from
# the caller's working directory. CARGO_TARGET_DIR is honoured if set.
set -eu

root=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}

case "$(uname -s)" in
    # Symbols such as enif_* are resolved by the VM at load time, not by the linker.
    Darwin) lib=libocibuild_nif.dylib
            RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-undefined -C link-arg=dynamic_lookup"
            export RUSTFLAGS ;;
    *)      lib=libocibuild_nif.so ;;
esac

if ! command -v cargo >/dev/null 2>&1; then
    echo "ocibuild: cargo not found; install Rust (https://rustup.rs) to build the NIF" >&2
    exit 1
fi

# Without SOURCE_DATE_EPOCH: it dates the images ocibuild builds, not the NIF, but the cc crate
# (ring's and zstd-sys's C code) tracks it, so a `mix ocibuild` run with a new value would
# otherwise rebuild the C code, the core and the NIF (LTO) before it could start.
(
    unset SOURCE_DATE_EPOCH
    cargo build --release --quiet -p ocibuild_nif \
        --manifest-path "$root/Cargo.toml" --target-dir "$target_dir"
)

mkdir -p "$root/priv"
built="$target_dir/release/$lib"
dest="$root/priv/ocibuild_nif.so"
# Leave an up-to-date library alone; otherwise copy next to it and rename, so a running VM
# never sees a half-written file (the rename replaces the inode it has mapped).
if [ -f "$dest" ] && cmp -s "$built" "$dest"; then
    exit 0
fi
# mktemp: a name unique to this call (a PID can be reused, and is shared by subshells).
tmp=$(mktemp "$root/priv/.ocibuild_nif.so.XXXXXX")
trap 'rm -f "$tmp"' EXIT
cp "$built" "$tmp"
# mktemp made it owner-only; a library is read by whoever runs the VM.
chmod 755 "$tmp"
mv -f "$tmp" "$dest"
