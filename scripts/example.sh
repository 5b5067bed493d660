#!/usr/bin/env bash
# The main job, on the bundled example: build the release of examples/hello_elixir and its
# image with `mix ocibuild`, with no network. Writes _build/example/hello_elixir-0.1.0.tar.gz
# (tag hello_elixir:0.1.0).
#
#   bash scripts/example.sh
#
# The base image is assembled from this machine (test/support/host_base.sh: busybox-static as
# the shell plus the shared libraries the release's ERTS needs) and saved as a tarball, which
# `mix ocibuild --base tar://...` reads, so no registry is needed. On a fresh machine only
# Debian's packages are installed; the Rust toolchain comes with the machine.
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"
root=$(repo_root)
cd "$root"

section "install"
ensure_packages erlang elixir busybox-static
require_rust

out=$root/_build/example
mkdir -p "$out"
export MIX_ENV=prod

section "compile ocibuild (cargo builds the NIF into priv/)"
mix compile

section "build the release (mix release)"
cd examples/hello_elixir
mix release --overwrite --quiet
release=$PWD/_build/prod/rel/hello_elixir

section "assemble a base image from this machine (busybox + the libraries ERTS needs)"
bash "$root/test/support/host_base.sh" -o "$out/base.tar.gz" -t host-base:1 --release "$release"

section "build the image (mix ocibuild)"
mix ocibuild --base "tar://$out/base.tar.gz" -o "$out/hello_elixir-0.1.0.tar.gz"

echo
echo "wrote ${out#"$root"/}/hello_elixir-0.1.0.tar.gz"
echo "run it with: podman load -i ${out#"$root"/}/hello_elixir-0.1.0.tar.gz && podman run --rm hello_elixir:0.1.0"
