#!/usr/bin/env bash
# Check that the package builds from source and works: one version everywhere, the files of
# src/ocibuild.app.src assembled (scripts/nif-package.sh), `rebar3 compile' in the package
# (native/install_nif.escript: with the repository's checksums.txt, which lists no artifact for
# an unreleased version, that is a cargo build), then the Erlang API saves an image.
#
#   bash scripts/nif-package-check.sh [PACKAGE_DIR]
#
# PACKAGE_DIR: an assembled package to check instead of a fresh one (test/precompiled/run.sh
# passes one with OCIBUILD_BUILD_NIF=1). CARGO_TARGET_DIR is honoured (default: the
# repository's target/, so the crates.io dependencies are not compiled again).
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"
root=$(repo_root)

work=$(mktemp -d "${TMPDIR:-/tmp}/ocibuild-package.XXXXXX")
trap 'rm -rf "$work"' EXIT
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
export REBAR_CACHE_DIR=$work/rebar3-cache HEX_CDN=http://127.0.0.1:9 HEX_MIRROR=http://127.0.0.1:9

section "package: one version number"
vsn=$(escript "$root/native/install_nif.escript" version)
cargo_vsn=$(awk '/^\[workspace.package\]/ { s = 1 } s && /^version *=/ { gsub(/[" ]/, ""); sub(/version=/, ""); print; exit }' "$root/Cargo.toml")
[ "$cargo_vsn" = "$vsn" ] || die "Cargo.toml's workspace version is $cargo_vsn, src/ocibuild.app.src's is $vsn"
for crate in "$root"/native/*/Cargo.toml; do
    grep -qx 'version.workspace = true' "$crate" || die "$crate must take the workspace version (version.workspace = true)"
done
for crate in ocibuild_core ocibuild_nif; do
    locked=$(awk -v n="$crate" '$0 == "name = \"" n "\"" { getline; gsub(/[" ]/, ""); sub(/version=/, ""); print }' "$root/Cargo.lock")
    [ "$locked" = "$vsn" ] || die "Cargo.lock has $crate $locked, not $vsn: run cargo build"
done
grep -q "^## \[\?v\?$vsn\]\?" "$root/CHANGELOG.md" || die "CHANGELOG.md has no section for $vsn"
echo "version $vsn: src/ocibuild.app.src, mix.exs (reads it), Cargo.toml, Cargo.lock, CHANGELOG.md"

pkg=${1:-}
if [ -z "$pkg" ]; then
    section "package: assembled from src/ocibuild.app.src's file list"
    pkg=$work/ocibuild-$vsn
    bash "$root/scripts/nif-package.sh" -o "$pkg"
fi

section "package: rebar3 compile (installs the NIF)"
(cd "$pkg" && rebar3 compile)
[ -f "$pkg/priv/ocibuild_nif.so" ] || die "rebar3 compile installed no priv/ocibuild_nif.so"

section "package: the Erlang API saves an image"
(cd "$work" && erl -noshell -pa "$pkg/_build/default/lib/ocibuild/ebin" -eval '
    {ok, I0} = ocibuild:scratch(),
    I1 = ocibuild:add_layer(I0, [{<<"/app/hello.txt">>, <<"hello from the package\n">>, 8#644}]),
    I2 = ocibuild:entrypoint(I1, [<<"/app/hello">>]),
    ok = ocibuild:save(I2, "smoke.tar.gz", #{tag => <<"smoke:1">>}),
    halt().')
tar -tzf "$work/smoke.tar.gz" | grep -x 'manifest.json' >/dev/null || die "the saved image has no manifest.json"
echo "package check passed: $pkg builds and saves an image"
