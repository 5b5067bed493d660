#!/usr/bin/env bash
# Install what building and testing ocibuild needs on a fresh Debian 12 machine (as root).
# Idempotent and fast on reruns: apt runs only when a package is missing.
#
#   bash scripts/install-deps.sh [--no-ferro]
#
# The Rust toolchain is not installed here: it comes with the machine (rustup) and cannot be
# downloaded on our network. This script only checks that cargo, rustfmt and clippy are there.
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"
root=$(repo_root)

packages=(
    erlang elixir rebar3          # the BEAM, Mix and rebar3
    git                           # rebar3 git dependencies (test/deps)
    skopeo umoci podman runc      # independent readers of the images we write (test/e2e)
    uidmap fuse-overlayfs conmon  # podman's helpers
    busybox-static                # a static binary to run inside a scratch image
    jq gzip zstd curl             # inspecting JSON, layer blobs and registries in the tests
    docker-registry apache2-utils # real registries on loopback (test/registry): distribution 2.8, htpasswd
    python3                       # test/registry's token server and fault proxy (stdlib only)
    python3-venv python3-nacl     # spdx-tools' venv (test/supply); NaCl secretbox for cosign test keys
    openssl                       # test keys and signature checks (test/supply)
    shellcheck                    # the lint of every shell script (scripts/test-all.sh)
    time                          # GNU time: peak RSS without polling (bench/rebuild_bench.sh)
    docker.io                     # dockerd for `docker load` of saved tarballs (test/e2e/readers.sh)
)

ensure_packages "${packages[@]}"

# podman without systemd: keep a containers.conf of our own unless someone wrote theirs.
conf=/etc/containers/containers.conf
if [ "$(id -u)" = 0 ]; then
    if [ ! -e "$conf" ] || grep -q 'scripts/install-deps.sh installs this file' "$conf"; then
        mkdir -p /etc/containers
        if ! cmp -s "$root/test/e2e/containers.conf" "$conf"; then
            cp "$root/test/e2e/containers.conf" "$conf"
            echo "install-deps: wrote $conf"
        fi
    else
        echo "install-deps: leaving the existing $conf alone (tests use CONTAINERS_CONF)"
    fi
fi

# The Rust toolchain: preinstalled by rustup, with the lint components.
require_rust
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    echo "install-deps: adding rustfmt and clippy with rustup"
    rustup component add rustfmt clippy ||
        die "rustfmt/clippy are missing and rustup could not add them (no network to the Rust servers?)"
fi
echo "install-deps: $(cargo --version), $(cargo clippy --version), $(cargo fmt --version)"

# ferro-oci-server, built from crates.io once (scripts/test-all.sh builds it in the background
# instead, and passes --no-ferro).
if [ "${1:-}" != --no-ferro ]; then
    bash "$root/scripts/install-ferro.sh"
fi
tools=${OCIBUILD_TOOLS_DIR:-$HOME/.cache/ocibuild-tools}
# spdx-tools (the SPDX project's validator, pyspdxtools) from PyPI into a venv of our own.
spdx_version=0.8.5
if [ -x "$tools/venv/bin/pyspdxtools" ] && "$tools/venv/bin/pip" show spdx-tools 2>/dev/null | grep -x "Version: $spdx_version" >/dev/null; then
    echo "install-deps: spdx-tools $spdx_version present in $tools/venv"
else
    echo "install-deps: installing spdx-tools $spdx_version into $tools/venv (pip, once)"
    python3 -m venv "$tools/venv"
    "$tools/venv/bin/pip" install --quiet "spdx-tools==$spdx_version" >"$tools/pip-install.log" 2>&1 ||
        { tail -n 30 "$tools/pip-install.log" >&2; die "pip install spdx-tools failed (log: $tools/pip-install.log)"; }
fi
# in-toto-attestation (Statement v1 and SLSA Provenance v1 protos) and in-toto (DSSE envelope
# verification), into the same venv: test/supply/provenance.sh checks our provenance with them.
in_toto_attestation_version=0.9.3
in_toto_version=3.1.0
if "$tools/venv/bin/pip" show in-toto-attestation 2>/dev/null | grep -x "Version: $in_toto_attestation_version" >/dev/null &&
    "$tools/venv/bin/pip" show in-toto 2>/dev/null | grep -x "Version: $in_toto_version" >/dev/null; then
    echo "install-deps: in-toto $in_toto_version, in-toto-attestation $in_toto_attestation_version present in $tools/venv"
else
    echo "install-deps: installing in-toto $in_toto_version, in-toto-attestation $in_toto_attestation_version into $tools/venv (pip, once)"
    "$tools/venv/bin/pip" install --quiet "in-toto==$in_toto_version" \
        "in-toto-attestation==$in_toto_attestation_version" >"$tools/pip-in-toto.log" 2>&1 ||
        { tail -n 30 "$tools/pip-in-toto.log" >&2; die "pip install in-toto failed (log: $tools/pip-in-toto.log)"; }
fi

echo "install-deps: $(erl -noshell -eval 'io:format("OTP ~s", [erlang:system_info(otp_release)]), halt().'), $(elixir --version | tail -n 1), $(rebar3 version)"
