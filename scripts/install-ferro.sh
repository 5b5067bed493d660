#!/usr/bin/env bash
# Build ferro-oci-server (an OCI distribution 1.1 registry with the referrers API, for
# test/registry and test/supply) from crates.io into a cache of our own, once; test/registry/lib.sh
# looks for it there. Does nothing when it is already built.
#
#   bash scripts/install-ferro.sh
#
# A debug build (`cargo install --debug`): about half the compile time of a release build, and
# the tests only send it a few MB. scripts/test-all.sh runs this in the background from its first
# second, so the compile overlaps the Debian installs and the lints; scripts/install-deps.sh
# runs it in the foreground.
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"

tools=${OCIBUILD_TOOLS_DIR:-$HOME/.cache/ocibuild-tools}
ferro_version=1.0.0
if [ -x "$tools/bin/ferro-oci-server" ]; then
    echo "install-ferro: ferro-oci-server present in $tools/bin"
    exit 0
fi
require_rust
echo "install-ferro: building ferro-oci-server $ferro_version into $tools (cargo install --debug, once)"
mkdir -p "$tools"
# Its own target directory (cargo install's default, a temporary one), never the workspace's:
# the lock on ours would make the lints and tests wait for it.
env -u CARGO_TARGET_DIR cargo install ferro-oci-server --version "=$ferro_version" --locked --debug \
    --root "$tools" >"$tools/cargo-install.log" 2>&1 ||
    { tail -n 30 "$tools/cargo-install.log" >&2; die "cargo install ferro-oci-server failed (log: $tools/cargo-install.log)"; }
echo "install-ferro: built $tools/bin/ferro-oci-server"
