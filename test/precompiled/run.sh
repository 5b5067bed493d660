#!/usr/bin/env bash
# Precompiled NIF tests: projects with no Rust toolchain install ocibuild's NIF from a
# checksummed artifact and build images that podman runs.
#
#   bash test/precompiled/run.sh        (as root, after scripts/install-deps.sh)
#
# scripts/nif-build.sh builds this machine's artifact and its checksum line;
# scripts/nif-package.sh assembles the package (the files src/ocibuild.app.src lists) with
# that checksum file, as a release would, and commits it to a git repository here. A python3
# http.server on 127.0.0.1 serves the artifacts (OCIBUILD_NIF_URL). With cargo and rustc off
# PATH, examples/hello_elixir (ocibuild as a git dependency) and examples/hello_erlang (as a
# project_plugin) build their releases and images, on a base from this machine
# (test/support/host_base.sh, `tar://`), and podman runs them with --network=none. Then the
# other ways in: a corrupted artifact (refused, priv/ stays empty), a missing one (falls back
# to cargo with one line; without cargo, one error naming the options), file:// URLs, the
# release's checksum list, https with an untrusted and a trusted (SSL_CERT_FILE) test CA,
# OCIBUILD_NIF_PATH, OCIBUILD_BUILD_NIF=1 (scripts/nif-package-check.sh) and the loader's line
# for a missing or foreign library. hex.pm is unreachable, as in the other suites.
set -euo pipefail
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
root=$(CDPATH='' cd -- "$here/../.." && pwd)
source "$root/scripts/common.sh"
source "$root/test/support/assert.sh"
source "$root/test/support/example.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/ocibuild-precompiled.XXXXXX")
export OCIBUILD_TEST_TMP=$work
source "$root/test/support/podman.sh"
server_pid='' tls_pid=''
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
    if [ -n "$tls_pid" ]; then kill "$tls_pid" 2>/dev/null || true; fi
    podman_clean
    rm -rf "$work"
}
trap cleanup EXIT

for tool in mix rebar3 git python3 podman curl gzip cmp openssl busybox ldd cargo; do
    command -v "$tool" >/dev/null || die "$tool not found: run scripts/install-deps.sh"
done

export OCIBUILD_CACHE_DIR=$work/cache
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
export HEX_CDN=http://127.0.0.1:9 HEX_MIRROR=http://127.0.0.1:9
export REBAR_CACHE_DIR=$work/rebar3-cache MIX_HOME=$work/mix-home HEX_HOME=$work/hex-home
unset SOURCE_DATE_EPOCH MIX_ENV OCIBUILD_BUILD_NIF OCIBUILD_NIF_PATH OCIBUILD_NIF_URL
closed_url=http://127.0.0.1:9

# PATH without the directories that hold cargo or rustc (rustup's ~/.cargo/bin).
no_rust_path=''
IFS=: read -ra path_dirs <<<"$PATH"
for d in "${path_dirs[@]}"; do
    if [ -e "$d/cargo" ] || [ -e "$d/rustc" ]; then continue; fi
    no_rust_path=${no_rust_path:+$no_rust_path:}$d
done
# without_rust CMD...: CMD with neither cargo nor rustc to be found.
without_rust() { env PATH="$no_rust_path" "$@"; }
at() {
    local dir=$1
    shift
    (cd "$dir" && "$@")
}
# priv_files DIR: the files in DIR/priv, one per line (nothing if there is no priv/).
priv_files() { if [ -d "$1/priv" ]; then (cd "$1/priv" && find . -type f | sort); fi; }

section "precompiled: no Rust on PATH"
check "cargo and rustc are not on the reduced PATH" \
    without_rust bash -c '! command -v cargo && ! command -v rustc'

section "precompiled: the artifact (scripts/nif-build.sh)"
dist=$work/dist
check "nif-build.sh builds this machine's artifact" run "$work/nif-build.log" bash "$root/scripts/nif-build.sh" -o "$dist"
name=$(escript "$root/native/install_nif.escript" artifact 2>&1) || true
check_eq "named by version, NIF version and target" \
    "ocibuild_nif-v$(escript "$root/native/install_nif.escript" version)-nif-2.16-$(rustc -vV | sed -n 's/^host: //p').so.gz" "$name"
check "the artifact is there" test -s "$dist/$name"
check "its checksum line (sha256sum format)" grep -qx "[0-9a-f]\{64\}  $name" "$dist/checksums.txt"
check "sha256sum -c agrees" at "$dist" sha256sum -c --quiet checksums.txt
gunzip -c "$dist/$name" >"$work/ocibuild_nif.so" 2>/dev/null || true
check "the artifact is the gzipped release library" cmp "$work/ocibuild_nif.so" "$CARGO_TARGET_DIR/release/libocibuild_nif.so"
# A corrupted copy, next to the good one under another base URL.
mkdir -p "$dist/corrupt" "$dist/none"
cp "$dist/$name" "$dist/corrupt/$name"
printf 'x' | dd of="$dist/corrupt/$name" bs=1 seek=1000 conv=notrunc status=none

section "precompiled: the package (scripts/nif-package.sh), with those checksums, in git"
pkg=$work/ocibuild
check "nif-package.sh assembles the package" \
    run "$work/package.log" bash "$root/scripts/nif-package.sh" -o "$pkg" --checksums "$dist/checksums.txt"
check_eq "the package ships no library" "" "$(priv_files "$pkg")"
check "the package lists the artifact's checksum" grep -q "  $name\$" "$pkg/native/checksums.txt"
check "the package has the native sources" test -f "$pkg/native/ocibuild_nif/src/lib.rs"
check "git repository of the package" run "$work/git.log" at "$pkg" bash -c \
    "git init -q && git add -A && git -c user.name=t -c user.email=t@ocibuild.invalid commit -q -m package"
sha=$(git -C "$pkg" rev-parse HEAD 2>/dev/null || echo none)

section "precompiled: artifacts served on loopback"
# serve.py DIR PORT_FILE [CERT KEY]: DIR over http (https with CERT and KEY) on 127.0.0.1, on a
# port the kernel picks, written to PORT_FILE once it listens (other suites may be choosing
# ports at the same time: a port picked first and bound later could be taken in between). It
# logs each request on stderr, as `python3 -m http.server` does.
cat >"$work/serve.py" <<'EOF'
import functools, http.server, os, ssl, sys
directory, port_file = sys.argv[1], sys.argv[2]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=directory)
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
if len(sys.argv) > 3:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[3], sys.argv[4])
    server.socket = context.wrap_socket(server.socket, server_side=True)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
EOF
# port_of PORT_FILE: the port, once the server has written it (at most 30 s).
port_of() {
    local _
    for _ in $(seq 1 300); do
        if [ -s "$1" ]; then cat "$1"; return 0; fi
        sleep 0.1
    done
    return 1
}
python3 "$work/serve.py" "$dist" "$work/http.port" >"$work/http.log" 2>&1 &
server_pid=$!
port=$(port_of "$work/http.port") || true
served() { curl -sf -o /dev/null "http://127.0.0.1:$port/checksums.txt"; }
check "an http server on loopback answers" served
export OCIBUILD_NIF_URL=http://127.0.0.1:$port
downloads() { grep -c "GET /$1 HTTP/1.1\" 200" "$work/http.log" || true; }

section "precompiled: Elixir project, ocibuild as a git dependency, no Rust"
ex=$work/hello_elixir
example_project hello_elixir "$ex" "git: \"file://$pkg\", ref: \"$sha\""
check "mix.exs depends on the package's git repository" grep -q "git: \"file://$pkg\"" "$ex/mix.exs"
check "mix deps.get" run "$work/mix-deps.log" at "$ex" without_rust mix deps.get
check "MIX_ENV=prod mix release (downloads the NIF)" run "$work/mix-release.log" \
    at "$ex" without_rust env MIX_ENV=prod mix release --overwrite
check "the NIF is the downloaded artifact" cmp "$work/ocibuild_nif.so" "$ex/deps/ocibuild/priv/ocibuild_nif.so"
check_eq "downloaded once" 1 "$(downloads "$name")"
check "no cargo was run" bash -c "! grep -qi 'cargo\|Compiling ocibuild_' '$work/mix-release.log'"

section "precompiled: Erlang project, ocibuild as a project_plugin, no Rust"
erl_ex=$work/hello_erlang
example_project hello_erlang "$erl_ex" "file://$pkg" "$sha"
check "rebar3 release (fetches the plugin, downloads the NIF)" run "$work/rebar3-release.log" \
    at "$erl_ex" without_rust rebar3 release
check "the plugin's NIF is the downloaded artifact" \
    cmp "$work/ocibuild_nif.so" "$erl_ex/_build/default/plugins/ocibuild/priv/ocibuild_nif.so"
check_eq "downloaded twice in all" 2 "$(downloads "$name")"
check "no hex registry access (mix, rebar3)" \
    bash -c "! grep -Eqi 'hex\.pm|hexpm|package registry|127\.0\.0\.1:9' '$work/mix-deps.log' '$work/mix-release.log' '$work/rebar3-release.log'"

section "precompiled: images built and run"
export OCIBUILD_EBIN=$ex/_build/prod/lib/ocibuild/ebin
check "host_base.sh: a base from this machine (tar://)" run "$work/base.log" without_rust bash "$root/test/support/host_base.sh" \
    --release "$ex/_build/prod/rel/hello_elixir" --release "$erl_ex/_build/default/rel/hello_erlang" -o "$work/base.tar.gz" -t base:1
check "mix ocibuild" run "$work/mix-ocibuild.log" at "$ex" without_rust env MIX_ENV=prod \
    mix ocibuild --base "tar://$work/base.tar.gz" -t pc-elixir:1 -o "$work/pc-elixir.tar.gz"
check "rebar3 ocibuild" run "$work/rebar3-ocibuild.log" at "$erl_ex" without_rust \
    rebar3 ocibuild --base "tar://$work/base.tar.gz" -t pc-erlang:1 -o "$work/pc-erlang.tar.gz"
check "the next compile needs no download" run "$work/mix-compile-again.log" at "$ex" without_rust env MIX_ENV=prod mix compile
check_eq "still two downloads" 2 "$(downloads "$name")"
check "podman load the Elixir image" run "$work/load1.log" podman_ load -q -i "$work/pc-elixir.tar.gz"
check "podman load the Erlang image" run "$work/load2.log" podman_ load -q -i "$work/pc-erlang.tar.gz"
greeting=$(run_image localhost/pc-elixir:1 2>&1) || true
check_contains "podman run: the Elixir image greets" "Hello from hello_elixir on ERTS" "$greeting"
check_contains "podman run: it stops with status 0" "exit status: 0" "$greeting"
greeting=$(run_image localhost/pc-erlang:1 2>&1) || true
check_contains "podman run: the Erlang image greets" "Hello from hello_erlang on ERTS" "$greeting"
check_contains "podman run: it stops with status 0" "exit status: 0" "$greeting"

# fresh_package DIR: a copy of the package without its git repository; a project with
# {:ocibuild, path: DIR} in DIR/../app.
fresh_package() {
    local dir=$1
    mkdir -p "$dir/app/lib"
    (cd "$pkg" && tar --exclude=.git --exclude=priv -cf - .) | (mkdir -p "$dir/ocibuild" && tar -xf - -C "$dir/ocibuild")
    cat >"$dir/app/mix.exs" <<EOF
defmodule App.MixProject do
  use Mix.Project

  def project, do: [app: :app, version: "0.1.0", elixir: "~> 1.14", deps: [{:ocibuild, path: "$dir/ocibuild"}]]
end
EOF
    cat >"$dir/app/build.exs" <<'EOF'
{:ok, image} = Ocibuild.scratch()
image = Ocibuild.copy(image, [{"hello.txt", "hello\n"}], "/app")
:ok = Ocibuild.save(image, "app.tar.gz", %{tag: "app:1"})
IO.puts("saved app.tar.gz")
EOF
}

section "precompiled: a corrupted artifact is refused"
bad=$work/bad
fresh_package "$bad"
status=0
at "$bad/app" without_rust env OCIBUILD_NIF_URL="$OCIBUILD_NIF_URL/corrupt" mix compile >"$work/bad.log" 2>&1 || status=$?
check_eq "mix compile fails" 1 "$status"
check "the error says checksum mismatch and names the artifact" grep -q "ocibuild: checksum mismatch for $name" "$work/bad.log"
check "it does not fall back to cargo" bash -c "! grep -q 'building the NIF from source' '$work/bad.log'"
check_eq "nothing landed in priv/" "" "$(priv_files "$bad/ocibuild")"
check "no stack trace" bash -c "! grep -Eqi 'stacktrace|\\.erl:[0-9]|badmatch|function_clause' '$work/bad.log'"

section "precompiled: no artifact, no cargo: one line naming the options"
status=0
without_rust env OCIBUILD_NIF_URL="$OCIBUILD_NIF_URL/none" escript "$bad/ocibuild/native/install_nif.escript" \
    >"$work/none.out" 2>"$work/none.err" || status=$?
check_eq "the installer exits 1" 1 "$status"
check_eq "one line of error" 1 "$(grep -c . "$work/none.err" || true)"
err=$(cat "$work/none.err")
check_contains "it says why (HTTP 404)" "could not download $OCIBUILD_NIF_URL/none/$name (HTTP 404" "$err"
check_contains "it says cargo is missing" "cargo is not on PATH" "$err"
for option in OCIBUILD_BUILD_NIF=1 OCIBUILD_NIF_PATH= OCIBUILD_NIF_URL=; do
    check_contains "it names $option" "$option" "$err"
done
check_eq "nothing landed in priv/" "" "$(priv_files "$bad/ocibuild")"
status=0
without_rust env OCIBUILD_BUILD_NIF=1 escript "$bad/ocibuild/native/install_nif.escript" >/dev/null 2>"$work/build-nocargo.err" || status=$?
check_eq "OCIBUILD_BUILD_NIF=1 without cargo: exit 1" 1 "$status"
check_contains "OCIBUILD_BUILD_NIF=1 without cargo: one line naming cargo" "asks for a build from source, but cargo is not on PATH" \
    "$(cat "$work/build-nocargo.err")"
status=0
env OCIBUILD_NIF_URL=http://example.invalid/nifs escript "$bad/ocibuild/native/install_nif.escript" >/dev/null 2>"$work/http.err" || status=$?
check_eq "plain http off loopback: exit 1" 1 "$status"
check_contains "plain http off loopback: refused, never a fallback" "refusing to download the NIF over plain http" "$(cat "$work/http.err")"

section "precompiled: file:// URLs and the release's checksum file"
filepkg=$work/filepkg
fresh_package "$filepkg"
check "OCIBUILD_NIF_URL=file://...: installed" run "$work/file-url.log" without_rust \
    env OCIBUILD_NIF_URL="file://$dist" escript "$filepkg/ocibuild/native/install_nif.escript"
check "the NIF is the artifact" cmp "$work/ocibuild_nif.so" "$filepkg/ocibuild/priv/ocibuild_nif.so"
# A release's assets: one artifact per target of the CI matrix (copies of this machine's here).
release=$work/release
mkdir -p "$release"
vsn=$(escript "$root/native/install_nif.escript" version)
for target in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu x86_64-unknown-linux-musl \
    aarch64-unknown-linux-musl x86_64-apple-darwin aarch64-apple-darwin; do
    printf '%s' "$target" | cat "$dist/$name" - >"$release/ocibuild_nif-v$vsn-nif-2.16-$target.so.gz"
done
check_eq "install_nif.escript checksums: a line per target, as sha256sum writes them" \
    "$(cd "$release" && sha256sum -- *.so.gz | sort)" \
    "$(OCIBUILD_NIF_URL="file://$release" escript "$root/native/install_nif.escript" checksums 2>&1 | sort)"
rm "$release/ocibuild_nif-v$vsn-nif-2.16-aarch64-apple-darwin.so.gz"
status=0
OCIBUILD_NIF_URL="file://$release" escript "$root/native/install_nif.escript" checksums >/dev/null 2>"$work/checksums.err" || status=$?
check_eq "a missing target's artifact: exit 1" 1 "$status"
check_contains "a missing target's artifact: named" "cannot fetch file://$release/ocibuild_nif-v$vsn-nif-2.16-aarch64-apple-darwin.so.gz" \
    "$(cat "$work/checksums.err")"

section "precompiled: https verifies the server (system CAs, plus SSL_CERT_FILE)"
tls=$work/tls
mkdir -p "$tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=ocibuild test CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.pem" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$tls/server.key" \
    -out "$tls/server.csr" >/dev/null 2>&1
printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$tls/ext.cnf"
openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 2 -extfile "$tls/ext.cnf" -out "$tls/server.pem" >/dev/null 2>&1
check "a test CA and a certificate for localhost" test -s "$tls/server.pem"
python3 "$work/serve.py" "$dist" "$tls/https.port" "$tls/server.pem" "$tls/server.key" >"$work/https.log" 2>&1 &
tls_pid=$!
tls_port=$(port_of "$tls/https.port") || true
served_tls() { curl -sf --cacert "$tls/ca.pem" -o /dev/null "https://localhost:$tls_port/checksums.txt"; }
check "an https server on loopback answers" served_tls
https=$work/https
fresh_package "$https"
status=0
without_rust env OCIBUILD_NIF_URL="https://localhost:$tls_port" escript "$https/ocibuild/native/install_nif.escript" \
    >/dev/null 2>"$work/tls-untrusted.err" || status=$?
check_eq "an unknown CA: the installer exits 1 (no cargo to fall back to)" 1 "$status"
check_contains "an unknown CA: the download was refused by TLS" "unknown_ca" "$(cat "$work/tls-untrusted.err")"
check_eq "an unknown CA: nothing landed in priv/" "" "$(priv_files "$https/ocibuild")"
check "SSL_CERT_FILE with the test CA: installed over https" run "$work/tls-trusted.log" without_rust \
    env OCIBUILD_NIF_URL="https://localhost:$tls_port" SSL_CERT_FILE="$tls/ca.pem" \
    escript "$https/ocibuild/native/install_nif.escript"
check "the NIF is the artifact" cmp "$work/ocibuild_nif.so" "$https/ocibuild/priv/ocibuild_nif.so"
kill "$tls_pid" 2>/dev/null || true
tls_pid=''

section "precompiled: OCIBUILD_NIF_PATH (no network, no Rust)"
local_nif=$work/local
fresh_package "$local_nif"
check "mix compile with OCIBUILD_NIF_PATH" run "$work/local.log" at "$local_nif/app" without_rust \
    env OCIBUILD_NIF_URL="$closed_url" OCIBUILD_NIF_PATH="$work/ocibuild_nif.so" mix compile
check "the NIF is that file" cmp "$work/ocibuild_nif.so" "$local_nif/ocibuild/priv/ocibuild_nif.so"
check "mix run builds and saves an image" run "$work/local-run.log" at "$local_nif/app" without_rust \
    env OCIBUILD_NIF_URL="$closed_url" OCIBUILD_NIF_PATH="$work/ocibuild_nif.so" mix run build.exs
check "the image is saved" test -s "$local_nif/app/app.tar.gz"
status=0
at "$local_nif/app" without_rust env OCIBUILD_NIF_PATH="$work/nowhere.so" mix compile >"$work/local-missing.log" 2>&1 || status=$?
check_eq "a missing OCIBUILD_NIF_PATH fails" 1 "$status"
check "and says so" grep -q "OCIBUILD_NIF_PATH=$work/nowhere.so cannot be read" "$work/local-missing.log"

section "precompiled: OCIBUILD_BUILD_NIF=1 builds from the package's sources (scripts/nif-package-check.sh)"
src=$work/source
fresh_package "$src"
check "nif-package-check.sh with OCIBUILD_BUILD_NIF=1 and no reachable artifacts" run "$work/package-check.log" \
    env OCIBUILD_BUILD_NIF=1 OCIBUILD_NIF_URL="$closed_url" bash "$root/scripts/nif-package-check.sh" "$src/ocibuild"
check "cargo built it" cmp "$CARGO_TARGET_DIR/release/libocibuild_nif.so" "$src/ocibuild/priv/ocibuild_nif.so"
rm -f "$src/ocibuild/priv/ocibuild_nif.so"
status=0
at "$src/ocibuild" env OCIBUILD_NIF_URL="$closed_url" escript native/install_nif.escript >"$work/fallback.out" 2>"$work/fallback.err" || status=$?
check_eq "no network, cargo on PATH: the installer succeeds" 0 "$status"
check_eq "with one line saying why" 1 "$(grep -c . "$work/fallback.err" || true)"
check_contains "the line names the download and the fallback" \
    "could not download $closed_url/$name" "$(cat "$work/fallback.err")"
check_contains "the line says cargo builds it" "building the NIF from source with cargo" "$(cat "$work/fallback.err")"
check "the NIF is installed" test -s "$src/ocibuild/priv/ocibuild_nif.so"

section "precompiled: the loader's line for a missing or foreign library"
loader=$work/loader/ocibuild
mkdir -p "$loader/priv"
cp -R "$src/ocibuild/_build/default/lib/ocibuild/ebin" "$loader/ebin"
call_nif() { (cd "$work" && erl -noshell -pa "$loader/ebin" -eval '
    try ocibuild_nif:job_count() of _ -> io:format("loaded~n")
    catch error:{nif_not_loaded, _} -> io:format("nif_not_loaded~n") end,
    halt().'); }
out=$(call_nif 2>"$work/loader.err") || true
check_eq "missing: calls fail with nif_not_loaded" nif_not_loaded "$out"
check_eq "missing: one line" 1 "$(grep -c . "$work/loader.err" || true)"
check_contains "missing: says missing and names the options" "ocibuild_nif.so (missing); reinstall it" "$(cat "$work/loader.err")"
check_contains "missing: names OCIBUILD_NIF_PATH" "OCIBUILD_NIF_PATH=" "$(cat "$work/loader.err")"
# The same library with e_machine set to aarch64 (183): glibc would only say "No such file".
python3 - "$work/ocibuild_nif.so" "$loader/priv/ocibuild_nif.so" <<'EOF'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[18:20] = (183).to_bytes(2, "little")
open(sys.argv[2], "wb").write(b)
EOF
out=$(call_nif 2>"$work/loader.err") || true
check_eq "foreign: calls fail with nif_not_loaded" nif_not_loaded "$out"
check_eq "foreign: one line" 1 "$(grep -c . "$work/loader.err" || true)"
check_contains "foreign: names the architecture" "wrong architecture: built for linux/aarch64" "$(cat "$work/loader.err")"
cp "$work/ocibuild_nif.so" "$loader/priv/ocibuild_nif.so"
out=$(call_nif 2>"$work/loader.err") || true
check_eq "the right library loads, silently" "loaded" "$out$(cat "$work/loader.err")"

summary precompiled
