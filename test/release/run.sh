#!/usr/bin/env bash
# End-to-end release tests: the examples' real releases are imaged with `mix ocibuild`,
# `rebar3 ocibuild` and `Ocibuild.MixRelease.build_image/1`, pushed to a registry on loopback
# and run with podman.
#
#   bash test/release/run.sh        (as root, after scripts/install-deps.sh)
#
# The projects are copies of examples/hello_elixir (ocibuild as a `path:` dependency, plus a
# git dependency on a tiny repository made here, so that mix.lock exists and the release is
# layered) and examples/hello_erlang (ocibuild as a project_plugin from a file:// URL of a
# temporary commit of the working tree, as test/deps/run.sh does). The base images come from
# this machine (test/support/host_base.sh: busybox-static and the libraries ldd finds), one
# bare for releases that bundle ERTS and one carrying the host's Erlang for those that do not.
# Nothing leaves the machine: hex is unreachable, the registry listens on 127.0.0.1 and the
# containers run with --network=none. REGISTRY_KEEP=1 keeps the registry's state and logs.
set -euo pipefail
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
root=$(CDPATH='' cd -- "$here/../.." && pwd)
source "$root/scripts/common.sh"
source "$root/test/support/assert.sh"
source "$root/test/support/snapshot.sh"
source "$root/test/support/example.sh"
source "$root/test/registry/lib.sh"
source "$root/test/support/registry_read.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/ocibuild-release.XXXXXX")
export OCIBUILD_TEST_TMP=$work
source "$root/test/support/podman.sh"
cleanup() {
    if [ "$failed" -gt 0 ]; then
        section "logs of the failed run"
        registry_dump_logs || true
    fi
    podman_clean
    registry_stop_all
    rm -rf "$work"
}
trap cleanup EXIT

for tool in mix rebar3 git skopeo podman jq docker-registry python3 busybox ldd; do
    command -v "$tool" >/dev/null || die "$tool not found: run scripts/install-deps.sh"
done

export OCIBUILD_CACHE_DIR=$work/cache
# The crates.io dependencies of the NIF, compiled once, are shared by every project here.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
# hex.pm is unreachable: any attempt fails at once on a closed loopback port.
export HEX_CDN=http://127.0.0.1:9 HEX_MIRROR=http://127.0.0.1:9
# Keep rebar3's and mix's global state out of the user's home; no login of the machine's user
# may change the outcome.
export REBAR_CACHE_DIR=$work/rebar3-cache MIX_HOME=$work/mix-home HEX_HOME=$work/hex-home
export DOCKER_CONFIG=$work/no-docker-config REGISTRY_AUTH_FILE=$work/no-auth.json
echo '{}' >"$REGISTRY_AUTH_FILE"
unset SOURCE_DATE_EPOCH MIX_ENV OCIBUILD_INSECURE_REGISTRIES OCIBUILD_SIGN_KEY \
    OCIBUILD_BUILD_NIF OCIBUILD_NIF_PATH OCIBUILD_NIF_URL \
    OCIBUILD_PUSH_USERNAME OCIBUILD_PUSH_PASSWORD OCIBUILD_PUSH_TOKEN \
    OCIBUILD_PULL_USERNAME OCIBUILD_PULL_PASSWORD OCIBUILD_PULL_TOKEN
# at DIR CMD...: run CMD in DIR.
at() {
    local dir=$1
    shift
    (cd "$dir" && "$@")
}
# What skopeo reads from the registry (plain HTTP on loopback).
config_of() { skopeo_ inspect --tls-verify=false --config "docker://$1"; }
# layers REF: the manifest's layer digests, one per line.
layers() { raw "$1" | jq -r '.layers[].digest'; }

# layer_list BLOB: the paths in a layer blob, gzip or zstd.
layer_list() {
    if [ "$(head -c 2 "$1" | od -An -tx1 | tr -d ' ')" = 1f8b ]; then
        tar -tzf "$1"
    else
        zstd -dcq "$1" | tar -tf -
    fi
}
# layer_files REPO DIGEST: the paths in a layer blob of the registry.
layer_files() {
    curl -sf "http://$REG_ADDR/v2/$1/blobs/$2" -o "$work/layer.blob" && layer_list "$work/layer.blob"
}

# holds LISTING ERE...: each ERE matches a line of LISTING; an ERE written !ERE matches none.
holds() {
    local listing=$1 re
    shift
    for re in "$@"; do
        if [[ "$re" == '!'* ]]; then
            if grep -Eq -- "${re#!}" <<<"$listing"; then
                printf 'unexpected %s:\n%s\n' "${re#!}" "$(grep -E -- "${re#!}" <<<"$listing" | head -n 5)"
                return 1
            fi
        elif ! grep -Eq -- "$re" <<<"$listing"; then
            printf 'no line matches %s in:\n%s\n' "$re" "$(head -n 20 <<<"$listing")"
            return 1
        fi
    done
}

# one_line_error NAME WORD CMD...: CMD fails with status 1 and says why in one line that
# names WORD, with no stack trace. mix: that line is all of stderr. rebar3 prints its
# progress and its errors on stdout: the line is the last one, and the only one naming WORD.
one_line_error() {
    local name=$1 word=$2 status=0 err
    shift 2
    "$@" >"$work/err.out" 2>"$work/err.err" || status=$?
    check_eq "$name: exit status 1" 1 "$status"
    if [[ " $* " != *" rebar3 "* ]]; then
        err=$(grep -v '^[[:space:]]*$' "$work/err.err" || true)
    else
        # without rebar3's colours
        err=$(sed 's/\x1b\[[0-9;]*m//g' "$work/err.out" | grep -v '^[[:space:]]*$' | tail -n 1 || true)
        check_eq "$name: one line names the problem" 1 \
            "$(sed 's/\x1b\[[0-9;]*m//g' "$work/err.out" | grep -cF -- "$word" || true)"
    fi
    check_eq "$name: one line of error" 1 "$(printf '%s\n' "$err" | grep -c . || true)"
    check_contains "$name: the line names the problem" "$word" "$err"
    if grep -Eqi 'stacktrace|\(elixir [0-9]|\.erl:[0-9]|\{.EXIT|badmatch|function_clause' "$work/err.out" "$work/err.err"; then
        fail "$name: no stack trace" "$(cat "$work/err.out" "$work/err.err")"
    else
        pass "$name: no stack trace"
    fi
}

section "release: a registry on loopback, a byte-counting proxy in front of it"
start "anonymous registry" registry_start anon REG
start "proxy" fault_proxy_start PROXY "$REG_ADDR"
pass "registry and proxy started"

section "release: the Elixir project (path dependency on ocibuild, git dependency on tiny_dep)"
# A git dependency, unlike a path one, is written to mix.lock: the lock file is what splits
# the release into ERTS, dependency and application layers.
tiny=$work/tiny_dep
mkdir -p "$tiny/lib"
cat >"$tiny/mix.exs" <<'EOF'
defmodule TinyDep.MixProject do
  use Mix.Project

  def project, do: [app: :tiny_dep, version: "0.1.0", elixir: "~> 1.14"]
end
EOF
cat >"$tiny/lib/tiny_dep.ex" <<'EOF'
defmodule TinyDep do
  @moduledoc "A dependency of the test project, fetched with git."
  def name, do: "tiny_dep"
end
EOF
check "tiny_dep: a git repository with a tag" run "$work/tiny-git.log" bash -c \
    "cd '$tiny' && git init -q && git add -A && git -c user.name=t -c user.email=t@ocibuild.invalid commit -q -m tiny && git tag v0.1.0"

ex=$work/hello_elixir
example_project hello_elixir "$ex"
# The example's project/0 becomes example_project/0; project/0 merges test_overrides.exs on
# top of it (the ocibuild: keyword lists are merged key by key), so the example's mix.exs is
# what is tested, whatever its layout.
cat >"$work/project.ex" <<'EOF'
  # Added by test/release/run.sh: the example's project with test_overrides.exs on top.
  def project do
    {overrides, _} = Code.eval_file("test_overrides.exs", __DIR__)

    Keyword.merge(example_project(), overrides, fn
      :ocibuild, example, override -> Keyword.merge(example, override)
      _key, _example, override -> override
    end)
  end

EOF
awk -v inject="$(cat "$work/project.ex")" '
    /^  def project do$/ && !done { print inject; print "  def example_project do"; done = 1; next }
    { print }' "$root/examples/hello_elixir/mix.exs" >"$ex/mix.exs"
check "mix.exs: project/0 wraps the example's" grep -q 'def example_project do' "$ex/mix.exs"
# Releases: the example's (ERTS bundled), one without ERTS, and one that builds its image as a
# `mix release` step, with its own ocibuild: config (a workdir other than /app, a local base).
cat >"$ex/test_overrides.exs" <<EOF
[
  deps: [
    {:ocibuild, path: "$root", runtime: false},
    {:tiny_dep, git: "file://$tiny", tag: "v0.1.0"}
  ],
  default_release: :hello_elixir,
  releases: [
    hello_elixir: [include_erts: true],
    noerts: [include_erts: false],
    stepped: [
      include_erts: true,
      steps: [:assemble, &Ocibuild.MixRelease.build_image/1],
      ocibuild: [base_image: "tar://$work/base.tar.gz", workdir: "/srv/hello", tag: "stepped:1"]
    ]
  ]
]
EOF
check "mix deps.get (git dependency from a file:// URL)" run "$work/mix-deps.log" at "$ex" mix deps.get
check "mix.lock records the git dependency" grep -q '"tiny_dep": {:git, "file://' "$ex/mix.lock"
check "MIX_ENV=prod mix release (ERTS bundled)" run "$work/mix-release.log" \
    at "$ex" env MIX_ENV=prod mix release --overwrite hello_elixir
rel_elixir=$ex/_build/prod/rel/hello_elixir
# host_base.sh builds the bases with the ocibuild this project has just compiled.
export OCIBUILD_EBIN=$ex/_build/prod/lib/ocibuild/ebin
check "the release bundles ERTS" compgen -G "$rel_elixir/erts-*/bin/beam.smp"
check "the release holds tiny_dep" compgen -G "$rel_elixir/lib/tiny_dep-0.1.0/ebin/*.beam"

section "release: the Erlang project (ocibuild as a project_plugin from git)"
snapshot=$work/ocibuild.git
check "git snapshot commit of the working tree" run "$work/git.log" working_tree_snapshot "$root" "$snapshot"
sha=$(git -C "$snapshot" rev-parse HEAD 2>/dev/null || echo none)
erl_ex=$work/hello_erlang
example_project hello_erlang "$erl_ex" "file://$snapshot" "$sha"
# The plugin's NIF is this checkout's, which the mix release above has just built from the same
# sources: a second release build of the core and the NIF from the plugin's copy of them costs
# minutes and proves nothing new here (test/deps/run.sh checks that a plugin builds its own).
# Every later `mix ocibuild` installs it too, instead of running cargo to check it: no run then
# waits for the lock on the cargo build directory while another suite builds there.
check "this checkout's NIF, for the plugin (OCIBUILD_NIF_PATH)" cp "$root/priv/ocibuild_nif.so" "$work/ocibuild_nif.so"
export OCIBUILD_NIF_PATH=$work/ocibuild_nif.so
check "rebar3 release (fetches and compiles the plugin, installs the NIF)" \
    run "$work/rebar3-release.log" at "$erl_ex" rebar3 release
check "the plugin's NIF is that library" \
    cmp "$work/ocibuild_nif.so" "$erl_ex/_build/default/plugins/ocibuild/priv/ocibuild_nif.so"
rel_erlang=$erl_ex/_build/default/rel/hello_erlang
check "the Erlang release bundles ERTS" compgen -G "$rel_erlang/erts-*/bin/beam.smp"
check "no hex registry access (mix, rebar3)" \
    bash -c "! grep -Eqi 'hex\.pm|hexpm|package registry|127\.0\.0\.1:9' '$work/mix-deps.log' '$work/mix-release.log' '$work/rebar3-release.log'"

section "release: base images assembled from this machine"
host_base=$root/test/support/host_base.sh
check "host_base.sh: busybox and ERTS's libraries, pushed as base:1" run "$work/base.log" \
    bash "$host_base" --release "$rel_elixir" --release "$rel_erlang" -o "$work/base.tar.gz" -t base:1 \
    --push "$REG_ADDR/base:1"
check "host_base.sh --host-erts: the same plus the host's Erlang, two platforms, pushed as base-erts:1" \
    run "$work/base-erts.log" bash "$host_base" --host-erts --platform linux/amd64,linux/arm64 \
    -o "$work/base-erts.tar.gz" -t base-erts:1 --push "$REG_ADDR/base-erts:1"
base_layers=$(layers "$REG_ADDR/base:1" 2>/dev/null | wc -l) || true
check_eq "base:1 has one layer" 1 "$base_layers"
check_eq "base-erts:1 is an index of two platforms" '["linux/amd64","linux/arm64"]' \
    "$(raw "$REG_ADDR/base-erts:1" 2>&1 | jq -c '[.manifests[].platform | "\(.os)/\(.architecture)"] | sort' 2>&1)"

section "release: mix ocibuild --push (ERTS bundled)"
mix_ocibuild() { at "$ex" env MIX_ENV=prod mix ocibuild "$@"; }
# SOURCE_DATE_EPOCH keeps the SBOM (and its layer) the same across the two pushes here.
export SOURCE_DATE_EPOCH=1700000000
check "mix ocibuild --push" run "$work/push1.log" \
    mix_ocibuild --base "$REG_ADDR/base:1" --push "$PROXY_ADDR/e2e" -t hello_elixir:1
out=$(cat "$work/push1.log" 2>&1) || true
check_contains "output: Tagged:" "Tagged: " "$out"
check_contains "output: Digest:" "Digest: sha256:" "$out"
ref1=$REG_ADDR/e2e/hello_elixir:1
check_eq "the printed digest is the pushed manifest's" "$(digest_of "$ref1" 2>&1)" \
    "$(sed -n 's/.*Digest: \(sha256:[0-9a-f]*\).*/\1/p' "$work/push1.log" | tail -n 1)"
config=$(config_of "$ref1" 2>&1) || true
check_eq "config: user 65534" 65534 "$(jq -r .config.User <<<"$config" 2>&1)"
check_eq "config: entrypoint and cmd" '["/app/bin/hello_elixir","start"]' \
    "$(jq -c '(.config.Entrypoint // []) + (.config.Cmd // [])' <<<"$config" 2>&1)"
check_eq "config: workdir" /app "$(jq -r .config.WorkingDir <<<"$config" 2>&1)"
check_contains "config: env from mix.exs" '"LANG=C.UTF-8"' "$(jq -c .config.Env <<<"$config" 2>&1)"
check_eq "config: label from mix.exs" hello_elixir \
    "$(jq -r '.config.Labels["org.opencontainers.image.title"]' <<<"$config" 2>&1)"
mapfile -t l1 < <(layers "$ref1" 2>/dev/null)
check_eq "four layers on top of the base (ERTS, deps, app, SBOM)" 4 $((${#l1[@]} - base_layers))
check_eq "the base layer comes first, unchanged" "$(layers "$REG_ADDR/base:1" 2>&1)" "${l1[0]:-none}"
erts_files=$(layer_files e2e/hello_elixir "${l1[1]:-none}" 2>&1 || true)
deps_files=$(layer_files e2e/hello_elixir "${l1[2]:-none}" 2>&1 || true)
app_files=$(layer_files e2e/hello_elixir "${l1[3]:-none}" 2>&1 || true)
check_eq "SBOM layer: /sbom.spdx.json alone" sbom.spdx.json \
    "$(layer_files e2e/hello_elixir "${l1[4]:-none}" 2>&1 | sed 's|^/||')"
check "ERTS layer: erts-*/bin/beam.smp and kernel" \
    holds "$erts_files" '^/?app/erts-[^/]+/bin/beam\.smp$' '^/?app/lib/kernel-' '!hello_elixir|tiny_dep'
check "deps layer: tiny_dep and nothing else" \
    holds "$deps_files" '^/?app/lib/tiny_dep-0\.1\.0/ebin/' '!hello_elixir-|erts-|/lib/kernel-'
check "app layer: the app, bin/ and releases/" \
    holds "$app_files" '^/?app/lib/hello_elixir-0\.1\.0/ebin/' '^/?app/bin/hello_elixir$' '^/?app/releases/0\.1\.0/' \
    '!erts-|tiny_dep|/lib/kernel-'
greeting=$(run_image "$ref1" 2>&1) || true
check_contains "podman run: the pushed image greets" "Hello from hello_elixir on ERTS" "$greeting"
check_contains "podman run: the release stops with status 0" "exit status: 0" "$greeting"

section "release: change only the app, rebuild, push: only the app layer is uploaded"
sed -i 's/Hello from hello_elixir/Hi again from hello_elixir/' "$ex/lib/hello_elixir.ex"
check "the greeting changed in the source" grep -q 'Hi again from' "$ex/lib/hello_elixir.ex"
# Every blob of the store set back to 2001: a layer the cache reuses is touched again, one
# built again is not (the store keeps a blob already present), so a fresh mtime means reused.
age_blobs() { find "$OCIBUILD_CACHE_DIR/blobs/sha256" -type f -exec touch -d @978307200 {} +; }
# reused DIGEST...: every blob was used since age_blobs.
reused() {
    local d
    for d in "$@"; do
        [ "$(stat -c %Y "$OCIBUILD_CACHE_DIR/blobs/sha256/${d#sha256:}")" -gt 978307200 ] || return 1
    done
}
age_blobs
check "MIX_ENV=prod mix release (again)" run "$work/mix-release2.log" \
    at "$ex" env MIX_ENV=prod mix release --overwrite hello_elixir
before=$(wc -l <"$PROXY_LOG")
check "mix ocibuild --push (again, tag 2)" run "$work/push2.log" \
    mix_ocibuild --base "$REG_ADDR/base:1" --push "$PROXY_ADDR/e2e" -t hello_elixir:2
unset SOURCE_DATE_EPOCH
tail -n "+$((before + 1))" "$PROXY_LOG" >"$work/push2.requests"
ref2=$REG_ADDR/e2e/hello_elixir:2
mapfile -t l2 < <(layers "$ref2" 2>/dev/null)
check_eq "same number of layers" "${#l1[@]}" "${#l2[@]}"
check_eq "base and ERTS layers unchanged" "${l1[*]:0:2}" "${l2[*]:0:2}"
check_eq "deps layer unchanged" "${l1[2]:-none}" "${l2[2]:-}"
# mix release wrote every file again (new inodes and times): found by content, not rebuilt.
check "layer cache: the ERTS, deps and SBOM layers were reused after mix release" \
    reused "${l2[1]:-none}" "${l2[2]:-none}" "${l2[4]:-none}"
if [ "${l1[3]:-x}" != "${l2[3]:-x}" ]; then pass "app layer changed"; else fail "app layer changed" "${l2[3]:-}"; fi
manifest2=$(raw "$ref2" 2>&1) || true
app_size=$(jq '.layers[3].size' <<<"$manifest2" 2>/dev/null || echo 0)
config_size=$(jq '.config.size' <<<"$manifest2" 2>/dev/null || echo 0)
erts_size=$(jq '.layers[1].size' <<<"$manifest2" 2>/dev/null || echo 0)
blob_bytes=$(fault_proxy_sum "$work/push2.requests" req_bytes 'PATCH|PUT|POST' '/blobs/')
# The image's manifest; the SBOM referrer and the referrers index are PUT as well.
manifest_bytes=$(fault_proxy_sum "$work/push2.requests" req_bytes PUT '/hello_elixir/manifests/2$')
echo "  (second push: $blob_bytes blob bytes + $manifest_bytes manifest bytes sent;" \
    "app layer $app_size, config $config_size, ERTS layer $erts_size)"
check_eq "blob bytes sent = the app layer + the config" $((app_size + config_size)) "$blob_bytes"
check_eq "manifest bytes sent under the tag = the manifest" "$(printf '%s' "$manifest2" | wc -c)" "$manifest_bytes"
check "far below the ERTS layer's size" test "$blob_bytes" -lt $((erts_size / 10))
greeting=$(run_image "$ref2" 2>&1) || true
check_contains "podman run: the new image greets with the new text" "Hi again from hello_elixir" "$greeting"

section "release: rebar3 ocibuild --push (ERTS bundled)"
check "rebar3 ocibuild --push" run "$work/rebar3-push.log" at "$erl_ex" \
    rebar3 ocibuild --base "$REG_ADDR/base:1" --push "$REG_ADDR/e2e" -t hello_erlang:1
out=$(cat "$work/rebar3-push.log" 2>&1) || true
check_contains "output: Tagged:" "Tagged: " "$out"
check_contains "output: Digest:" "Digest: sha256:" "$out"
eref=$REG_ADDR/e2e/hello_erlang:1
econfig=$(config_of "$eref" 2>&1) || true
check_eq "config: user 65534" 65534 "$(jq -r .config.User <<<"$econfig" 2>&1)"
check_eq "config: entrypoint and cmd" '["/app/bin/hello_erlang","foreground"]' \
    "$(jq -c '(.config.Entrypoint // []) + (.config.Cmd // [])' <<<"$econfig" 2>&1)"
greeting=$(run_image "$eref" 2>&1) || true
check_contains "podman run: the Erlang image greets" "Hello from hello_erlang on ERTS" "$greeting"
check_contains "podman run: the Erlang release stops with status 0" "exit status: 0" "$greeting"

# Both manuals document every flag.
flags=(--tag --output --push --annotation --label --platform --base --release --cmd --uid
    --chunk-size --sbom --no-vcs-annotations --sign-key --provenance --compression)
check "rebar3 help ocibuild" run "$work/rebar3-help.log" at "$erl_ex" rebar3 help ocibuild
check "mix help ocibuild" run "$work/mix-help.log" at "$ex" env MIX_ENV=prod mix help ocibuild
for f in "${flags[@]}"; do
    check "rebar3 help ocibuild documents $f" grep -qe "$f" "$work/rebar3-help.log"
    check "mix help ocibuild documents $f" grep -qe "$f" "$work/mix-help.log"
done

section "release: without bundled ERTS, on a base that carries Erlang"
check "MIX_ENV=prod mix release noerts" run "$work/mix-release-noerts.log" \
    at "$ex" env MIX_ENV=prod mix release --overwrite noerts
check "the release has no erts-*" bash -c "! compgen -G '$ex/_build/prod/rel/noerts/erts-*'"
check "mix ocibuild --release noerts --push" run "$work/push-noerts.log" \
    mix_ocibuild --release noerts --base "$REG_ADDR/base-erts:1" --push "$REG_ADDR/e2e" -t noerts:1
nref=$REG_ADDR/e2e/noerts:1
check_eq "config: entrypoint and cmd" '["/app/bin/noerts","start"]' \
    "$(config_of "$nref" 2>&1 | jq -c '(.config.Entrypoint // []) + (.config.Cmd // [])' 2>&1)"
greeting=$(run_image "$nref" 2>&1) || true
check_contains "podman run: the release runs on the base's ERTS" "Hi again from hello_elixir on ERTS" "$greeting"
check "rebar3 as noerts ocibuild --push" run "$work/rebar3-push-noerts.log" at "$erl_ex" \
    rebar3 as noerts ocibuild --base "$REG_ADDR/base-erts:1" --push "$REG_ADDR/e2e" -t hello_erlang:noerts
greeting=$(run_image "$REG_ADDR/e2e/hello_erlang:noerts" 2>&1) || true
check_contains "podman run: the Erlang release runs on the base's ERTS and OTP" \
    "Hello from hello_erlang on ERTS" "$greeting"

section "release: Ocibuild.MixRelease.build_image/1 as a release step, workdir /srv/hello"
rm -f "$ex"/stepped-*.tar.gz
check "MIX_ENV=prod mix release stepped writes the image" run "$work/mix-release-stepped.log" \
    at "$ex" env MIX_ENV=prod mix release --overwrite stepped
stepped=$ex/stepped-1.tar.gz
check "the image is saved as stepped-1.tar.gz" test -s "$stepped"
sconfig=$(skopeo_ inspect --config "oci-archive:$stepped" 2>&1) || true
check_eq "config: entrypoint under the workdir" '["/srv/hello/bin/stepped","start"]' \
    "$(jq -c '(.config.Entrypoint // []) + (.config.Cmd // [])' <<<"$sconfig" 2>&1)"
check_eq "config: workdir" /srv/hello "$(jq -r .config.WorkingDir <<<"$sconfig" 2>&1)"
mkdir -p "$work/stepped"
tar -xzf "$stepped" -C "$work/stepped" 2>/dev/null || true
stepped_files=$(for b in $(jq -r '.[0].Layers[1:][]' "$work/stepped/manifest.json" 2>/dev/null); do
    layer_list "$work/stepped/$b" 2>&1
done) || true
check "files under /srv/hello, none under /app" holds "$stepped_files" \
    '^/?srv/hello/bin/stepped$' '^/?srv/hello/erts-[^/]+/bin/beam\.smp$' '^/?srv/hello/lib/hello_elixir-' '!^/?app/'
check "podman load -i stepped-1.tar.gz" podman_ load -q -i "$stepped"
greeting=$(run_image localhost/stepped:1 2>&1) || true
check_contains "podman run: the image from the release step greets" "Hi again from hello_elixir" "$greeting"

section "release: user errors are one line and exit status 1"
one_line_error "mix: an unknown flag" "--bogus" mix_ocibuild --bogus
one_line_error "mix: a release that was not built" "nope" mix_ocibuild --release nope
one_line_error "mix: an unknown --compression" "lzma" mix_ocibuild --compression lzma -o "$work/x.tar.gz"
one_line_error "mix: a saved tarball that does not exist" "missing.tar.gz" \
    mix_ocibuild --push "$REG_ADDR/ns" "$work/missing.tar.gz"
one_line_error "rebar3: an unknown flag" "--bogus" at "$erl_ex" rebar3 ocibuild --bogus
one_line_error "rebar3: an unknown --compression" "lzma" at "$erl_ex" rebar3 ocibuild -t x:1 --compression lzma
one_line_error "rebar3: no tag" "--tag" at "$erl_ex" rebar3 ocibuild
# Fail fast: the registry is checked (GET /v2/, a push-scoped upload start) before any layer.
closed_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
one_line_error "mix: a push to a closed port" "cannot reach 127.0.0.1:$closed_port" \
    mix_ocibuild --base "tar://$work/base.tar.gz" --push "127.0.0.1:$closed_port/e2e" -t hello_elixir:closed
check "mix: a push to a closed port fails before any layer is built" \
    bash -c "! grep -q 'Building' '$work/err.out' '$work/err.err'"

section "release: --compression gzip and zstd; the default tag and file name"
# gzip with the defaults: tag <release>:<version>, file <name>-<tag>.tar.gz in the project.
rm -f "$ex/hello_elixir-0.1.0.tar.gz"
check "mix ocibuild --compression gzip (base from tar://)" run "$work/save-gzip.log" \
    mix_ocibuild --compression gzip --base "tar://$work/base.tar.gz"
check "saved as hello_elixir-0.1.0.tar.gz" test -s "$ex/hello_elixir-0.1.0.tar.gz"
check_eq "tagged hello_elixir:0.1.0" '["hello_elixir:0.1.0"]' \
    "$(tar -xzOf "$ex/hello_elixir-0.1.0.tar.gz" manifest.json 2>&1 | jq -c '.[0].RepoTags' 2>&1)"
mv "$ex/hello_elixir-0.1.0.tar.gz" "$work/gzip.tar.gz" 2>/dev/null || true
check "mix ocibuild --compression zstd -t -o (base from tar://)" run "$work/save-zstd.log" \
    mix_ocibuild --compression zstd --base "tar://$work/base.tar.gz" -t hello_elixir:zstd -o "$work/zstd.tar.gz"
# With nothing changed, a second save reuses every release layer (the SBOM's differs: its
# creation time is now, without SOURCE_DATE_EPOCH).
age_blobs
check "mix ocibuild (again, nothing changed)" run "$work/save-zstd-again.log" \
    mix_ocibuild --compression zstd --base "tar://$work/base.tar.gz" -t hello_elixir:zstd -o "$work/zstd-again.tar.gz"
mapfile -t again < <(skopeo_ inspect --raw "oci-archive:$work/zstd-again.tar.gz" 2>/dev/null |
    jq -r '.layers[1:-1][].digest')
check_eq "layer cache: the second save has the release's three layers" 3 "${#again[@]}"
check "layer cache: the second save reused every release layer" reused "${again[@]}"
for c in gzip zstd; do
    check_eq "$c: the release's layer media types" "[\"application/vnd.oci.image.layer.v1.tar+$c\"]" \
        "$(skopeo_ inspect --raw "oci-archive:$work/$c.tar.gz" 2>&1 | jq -c '[.layers[1:][].mediaType] | unique' 2>&1)"
done

section "release: push a saved tarball"
check "mix ocibuild --push REGISTRY/ns TARBALL" run "$work/push-tarball.log" \
    mix_ocibuild --push "$REG_ADDR/ns" "$work/zstd.tar.gz"
check_eq "the registry has the saved manifest under its saved tag" \
    "$(skopeo_ inspect "oci-archive:$work/zstd.tar.gz" 2>&1 | jq -r .Digest 2>&1)" \
    "$(digest_of "$REG_ADDR/ns/hello_elixir:zstd" 2>&1)"
check "skopeo copy from the registry verifies every blob" \
    skopeo_ copy -q --src-tls-verify=false "docker://$REG_ADDR/ns/hello_elixir:zstd" "oci:$work/copied:x"

section "release: multi-platform"
one_line_error "two platforms with bundled ERTS" "ERTS" \
    mix_ocibuild --platform linux/amd64,linux/arm64 --base "$REG_ADDR/base-erts:1" -o "$work/multi-bad.tar.gz"
check "mix ocibuild --release noerts --platform linux/amd64,linux/arm64 --push" run "$work/push-multi.log" \
    mix_ocibuild --release noerts --platform linux/amd64,linux/arm64 --base "$REG_ADDR/base-erts:1" \
    --push "$REG_ADDR/e2e" -t noerts:multi
mref=$REG_ADDR/e2e/noerts:multi
index=$(raw "$mref" 2>&1) || true
check_eq "an image index" application/vnd.oci.image.index.v1+json "$(jq -r .mediaType <<<"$index" 2>&1)"
check_eq "two platforms" '["linux/amd64","linux/arm64"]' \
    "$(jq -c '[.manifests[].platform | "\(.os)/\(.architecture)"] | sort' <<<"$index" 2>&1)"
amd=$(layers "$REG_ADDR/e2e/noerts@$(jq -r '.manifests[] | select(.platform.architecture == "amd64") | .digest' <<<"$index")" 2>&1 || true)
arm=$(layers "$REG_ADDR/e2e/noerts@$(jq -r '.manifests[] | select(.platform.architecture == "arm64") | .digest' <<<"$index")" 2>&1 || true)
# The last layer is each platform's SBOM (it names the platform and that platform's base).
check "the release's layers are shared by both platforms" \
    test -n "$amd" -a "$(head -n -1 <<<"$amd")" = "$(head -n -1 <<<"$arm")"
check "each platform has its own SBOM layer" test "$(tail -n 1 <<<"$amd")" != "$(tail -n 1 <<<"$arm")"
check_eq "three layers on the base's two (deps, app, SBOM)" 5 "$(wc -l <<<"$amd")"
greeting=$(run_image "$mref" 2>&1) || true
check_contains "podman run: the index runs on this machine's platform" "Hi again from hello_elixir" "$greeting"

section "release: credentials from OCIBUILD_PUSH_* and OCIBUILD_PULL_* (htpasswd registry)"
start "registry with htpasswd" registry_start basic AUTH
creds=(OCIBUILD_PUSH_USERNAME="$REGISTRY_TEST_USER" OCIBUILD_PUSH_PASSWORD="$REGISTRY_TEST_PASSWORD")
check "the saved base tarball, pushed with OCIBUILD_PUSH_USERNAME/PASSWORD" run "$work/auth-base.log" \
    env "${creds[@]}" bash -c "cd '$ex' && MIX_ENV=prod mix ocibuild --push '$AUTH_ADDR/lib' '$work/base.tar.gz'"
one_line_error "no credentials: the push is refused" "OCIBUILD_PUSH" \
    mix_ocibuild --base "tar://$work/base.tar.gz" --push "$AUTH_ADDR/e2e" -t hello_elixir:auth
one_line_error "no pull credentials: the base is refused" "OCIBUILD_PULL" \
    env "${creds[@]}" bash -c "cd '$ex' && MIX_ENV=prod mix ocibuild --base '$AUTH_ADDR/lib/base:1' --push '$AUTH_ADDR/e2e' -t hello_elixir:auth"
check "base pulled with OCIBUILD_PULL_*, image pushed with OCIBUILD_PUSH_*" run "$work/auth-push.log" \
    env "${creds[@]}" OCIBUILD_PULL_USERNAME="$REGISTRY_TEST_USER" OCIBUILD_PULL_PASSWORD="$REGISTRY_TEST_PASSWORD" \
    bash -c "cd '$ex' && MIX_ENV=prod mix ocibuild --base '$AUTH_ADDR/lib/base:1' --push '$AUTH_ADDR/e2e' -t hello_elixir:auth"
check "the image is in the registry" skopeo_ inspect --tls-verify=false \
    --creds "$REGISTRY_TEST_USER:$REGISTRY_TEST_PASSWORD" "docker://$AUTH_ADDR/e2e/hello_elixir:auth"
if grep -rqF -- "$REGISTRY_TEST_PASSWORD" "$work"/auth-*.log "$work/err.out" "$work/err.err"; then
    fail "the password is in no output" "$(grep -rlF -- "$REGISTRY_TEST_PASSWORD" "$work"/auth-*.log "$work"/err.*)"
else
    pass "the password is in no output"
fi

section "release: progress, live on a terminal and plain in CI"
# script(1) gives the task a terminal: every blob gets a line redrawn in place (ESC[2K). The
# layer cache is off here, so every layer is really built and shows its build line (earlier
# runs of this suite have built these layers already).
check "mix ocibuild --push on a terminal" run "$work/tty.log" \
    script -qec "cd '$ex' && OCIBUILD_LAYER_CACHE=off MIX_ENV=prod mix ocibuild --base tar://$work/base.tar.gz --push $REG_ADDR/tty -t hello_elixir:tty" \
    "$work/tty.typescript"
tty_out=$(cat "$work/tty.typescript" 2>&1) || true
check "terminal: lines are redrawn in place" grep -qF $'\e[2K' "$work/tty.typescript"
check_contains "terminal: a progress bar per blob" "] 100% " "$tty_out"
# 8 blobs: base, ERTS, deps, app, SBOM layer, config; then the SBOM referrer's empty config
# and its SPDX document.
check_eq "terminal: a line for each blob (base, ERTS, deps, app, SBOM, config, referrer's two)" 8 \
    "$(grep -aoE '  upload   [0-9a-f]{12} ' "$work/tty.typescript" | sort -u | wc -l)"
# Each layer built gets a live line too (bytes of its files read), ending full.
check_eq "terminal: a live line for each layer built" \
    "$(grep -ac '^Building [a-z]* layer' "$work/tty.typescript" || true)" \
    "$(grep -aoE '  build    [a-z]+ ' "$work/tty.typescript" | sort -u | wc -l)"
check "terminal: the app layer's line is drawn as it starts (0%)" \
    grep -aqE '  build    app +\[> +\]   0% ' "$work/tty.typescript"
check "terminal: the app layer's line ends at 100%" \
    grep -aqE '  build    app +\[=+\] 100% ' "$work/tty.typescript"
check "not a terminal: plain lines, no escape codes" run "$work/plain.log" \
    mix_ocibuild --base "tar://$work/base.tar.gz" --push "$REG_ADDR/plain" -t hello_elixir:plain
check "not a terminal: no escape codes" bash -c "! grep -q $'\e' '$work/plain.log'"
check "not a terminal: the two lines per layer, no build progress" \
    holds "$(cat "$work/plain.log")" '^Building app layer \([0-9]+ files\)$' '^  app layer sha256:' '!^  build '
check_eq "not a terminal: one 'pushed' line per uploaded blob" 8 "$(grep -cE '^  pushed  [0-9a-f]{12} ' "$work/plain.log")"

summary release
