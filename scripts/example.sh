#!/usr/bin/env bash
# The main job, on the bundled example: build the image in examples/hello with the Elixir API
# and save it to _build/example/hello.tar.gz (tag hello:0.1.0). No network beyond Debian's
# packages on a fresh machine; the Rust toolchain comes with the machine.
#
#   bash scripts/example.sh
set -euo pipefail
source "$(dirname -- "${BASH_SOURCE[0]}")/common.sh"
cd "$(repo_root)"

section "install"
ensure_packages erlang elixir busybox-static
require_rust

section "compile (cargo builds the NIF into priv/)"
mix compile

section "build the example image"
mix run examples/hello/build.exs
