#!/usr/bin/env bash
# Dependency tests: throwaway projects that depend on this repository build and save an image.
#
#   bash test/deps/run.sh
#
#   mix      {:ocibuild, path: REPO}; `mix run -e` builds with the Elixir API.
#   rebar3   ocibuild as a git dependency (file:// URL) and as a project_plugin; `rebar3 compile`
#            must run cargo and install the NIF in the dependency's priv/, then `erl` builds.
#   no-op    a compile with nothing changed runs neither native/install_nif.escript nor cargo
#            (mix, rebar3); a touched .rs file or a deleted library installs again. escript
#            and cargo are shims on PATH that record each call (cargo's "builds" this
#            checkout's library, into a target directory of its own).
#
# The git URL points at a temporary commit of the current working tree (tracked files plus
# untracked ones that are not ignored), so the test sees uncommitted work and never touches the
# repository's own git state. hex.pm is unreachable: the projects have no hex dependencies, and
# HEX_CDN points at a closed loopback port so any attempt to reach hex fails at once (and the
# check "no hex registry access" below catches it). CARGO_TARGET_DIR is the repo's target/, so
# the crates.io dependencies compiled once are reused by every project.
set -euo pipefail
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
root=$(CDPATH='' cd -- "$here/../.." && pwd)
source "$root/scripts/common.sh"
source "$root/test/support/assert.sh"
source "$root/test/support/snapshot.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/ocibuild-deps.XXXXXX")
trap 'rm -rf "$work"' EXIT

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
export HEX_CDN=http://127.0.0.1:9 HEX_MIRROR=http://127.0.0.1:9
# Keep rebar3's and mix's global state (hex index, plugins, caches) out of the user's home.
export REBAR_CACHE_DIR=$work/rebar3-cache MIX_HOME=$work/mix-home HEX_HOME=$work/hex-home
unset SOURCE_DATE_EPOCH MIX_ENV


# image_ok NAME TARBALL TAG ENTRYPOINT: the saved file exists and skopeo reads the expected config.
image_ok() {
    local name=$1 tarball=$2 tag=$3 entrypoint=$4 inspect
    check "$name: saved $(basename "$tarball")" test -s "$tarball"
    # oci-archive: skopeo 1.9 cannot read a gzipped docker-archive (see test/e2e/run.sh).
    inspect=$(skopeo --insecure-policy inspect --config "oci-archive:$tarball" 2>&1) || true
    check_eq "$name: skopeo reads the entrypoint" "$entrypoint" "$(jq -c .config.Entrypoint <<<"$inspect" 2>&1)"
    check_eq "$name: tag in manifest.json" "[\"$tag\"]" "$(tar -xzOf "$tarball" manifest.json 2>&1 | jq -c '.[0].RepoTags' 2>&1)"
}

no_hex() {
    ! grep -Eqi 'hex\.pm|hexpm|package registry|127\.0\.0\.1:9' "$@"
}

section "deps: a mix project with {:ocibuild, path: ...}"
mixapp=$work/mix_app
mkdir -p "$mixapp/lib"
cat >"$mixapp/mix.exs" <<EOF
defmodule MixApp.MixProject do
  use Mix.Project

  def project do
    [app: :mix_app, version: "0.1.0", elixir: "~> 1.14", deps: [{:ocibuild, path: "$root"}]]
  end
end
EOF
cat >"$mixapp/build.exs" <<'EOF'
{:ok, image} = Ocibuild.scratch()
image = Ocibuild.copy(image, [{"hello.txt", "hello from a mix dependency\n"}], "/app")
image = Ocibuild.entrypoint(image, ["/app/hello"])
:ok = Ocibuild.save(image, "mix_app.tar.gz", %{tag: "deps-mix:1.0"})
IO.puts("saved mix_app.tar.gz")
EOF
check "mix compile (builds the NIF through the path dependency)" \
    run "$work/mix-compile.log" bash -c "cd '$mixapp' && mix compile"
check "no hex registry access (mix)" no_hex "$work/mix-compile.log"
check "mix run builds and saves an image" run "$work/mix-run.log" bash -c "cd '$mixapp' && mix run build.exs"
image_ok "mix" "$mixapp/mix_app.tar.gz" "deps-mix:1.0" '["/app/hello"]'

section "deps: a snapshot git repository of the working tree"
snapshot=$work/ocibuild.git
check "git snapshot commit" run "$work/git.log" working_tree_snapshot "$root" "$snapshot"
sha=$(git -C "$snapshot" rev-parse HEAD 2>/dev/null || echo none)
url=file://$snapshot

# A module that builds and saves an image with the Erlang API; used by both rebar3 projects.
erl_build() {
    local dir=$1 tarball=$2 tag=$3
    local eval="
        {ok, I0} = ocibuild:scratch(),
        I1 = ocibuild:add_layer(I0, [{<<\"/app/hello.txt\">>, <<\"hello from rebar3\\n\">>, 8#644}]),
        I2 = ocibuild:entrypoint(I1, [<<\"/app/hello\">>]),
        ok = ocibuild:save(I2, \"$tarball\", #{tag => <<\"$tag\">>}),
        halt()."
    (cd "$dir" && erl -noshell -pa "$dir"/_build/default/lib/*/ebin -pa "$dir"/_build/default/plugins/*/ebin -eval "$eval")
}

section "deps: a rebar3 project with ocibuild as a git dependency"
rebarapp=$work/rebar_app
mkdir -p "$rebarapp/src"
cat >"$rebarapp/rebar.config" <<EOF
{deps, [{ocibuild, {git, "$url", {ref, "$sha"}}}]}.
EOF
cat >"$rebarapp/src/rebar_app.app.src" <<'EOF'
{application, rebar_app, [{description, "depends on ocibuild"}, {vsn, "0.1.0"}, {applications, [kernel, stdlib, ocibuild]}]}.
EOF
check "rebar3 compile (fetches the git dependency, builds the NIF)" \
    run "$work/rebar-compile.log" bash -c "cd '$rebarapp' && rebar3 compile"
check "no hex registry access (rebar3 git dependency)" no_hex "$work/rebar-compile.log"
check "the NIF is in the dependency's priv/" test -f "$rebarapp/_build/default/lib/ocibuild/priv/ocibuild_nif.so"
check "erl builds and saves an image" run "$work/rebar-run.log" \
    erl_build "$rebarapp" "$rebarapp/rebar_app.tar.gz" "deps-rebar:1.0"
image_ok "rebar3" "$rebarapp/rebar_app.tar.gz" "deps-rebar:1.0" '["/app/hello"]'

section "deps: a rebar3 project with ocibuild as a project_plugin"
pluginapp=$work/plugin_app
mkdir -p "$pluginapp/src"
cat >"$pluginapp/rebar.config" <<EOF
{project_plugins, [{ocibuild, {git, "$url", {ref, "$sha"}}}]}.
EOF
cat >"$pluginapp/src/plugin_app.app.src" <<'EOF'
{application, plugin_app, [{description, "uses ocibuild as a plugin"}, {vsn, "0.1.0"}, {applications, [kernel, stdlib]}]}.
EOF
check "rebar3 compile (fetches and compiles the plugin)" \
    run "$work/plugin-compile.log" bash -c "cd '$pluginapp' && rebar3 compile"
check "no hex registry access (rebar3 plugin)" no_hex "$work/plugin-compile.log"
check "the plugin's beams are compiled" test -f "$pluginapp/_build/default/plugins/ocibuild/ebin/ocibuild.beam"
check "the NIF is in the plugin's priv/" test -f "$pluginapp/_build/default/plugins/ocibuild/priv/ocibuild_nif.so"
check "erl builds and saves an image with the plugin's code" run "$work/plugin-run.log" \
    erl_build "$pluginapp" "$pluginapp/plugin_app.tar.gz" "deps-plugin:1.0"
image_ok "plugin" "$pluginapp/plugin_app.tar.gz" "deps-plugin:1.0" '["/app/hello"]'

section "deps: nothing changed, nothing runs (escript and cargo shims)"
shims=$work/shims
mkdir -p "$shims"
real_escript=$(command -v escript)
cat >"$shims/escript" <<EOF
#!/bin/sh
echo "\$*" >>"$work/escript-calls.log"
exec "$real_escript" "\$@"
EOF
cat >"$shims/cargo" <<EOF
#!/bin/sh
echo "\$*" >>"$work/cargo-calls.log"
mkdir -p "\$CARGO_TARGET_DIR/release"
cp "$root/priv/ocibuild_nif.so" "\$CARGO_TARGET_DIR/release/libocibuild_nif.so"
EOF
chmod 755 "$shims/escript" "$shims/cargo"
# calls NAME: how many times the NAME shim has run so far.
calls() { if [ -f "$work/$1-calls.log" ]; then wc -l <"$work/$1-calls.log" | tr -d ' '; else echo 0; fi; }
# settle: wait until the clock has left the current second; the installer trusts no file
# changed in the second it looks at it (an mtime in seconds could hide a second edit).
settle() { local t; t=$(date +%s); while [ "$(date +%s)" -le "$t" ]; do sleep 0.05; done; }
# shimmed CMD...: CMD with the shims first on PATH and a target directory of their own, so
# the repository's target/ is never written by the fake cargo.
shimmed() { PATH="$shims:$PATH" CARGO_TARGET_DIR="$work/shim-target" "$@"; }

check "rebar3 compile again (git dependency)" run "$work/rebar-again.log" shimmed bash -c "cd '$rebarapp' && rebar3 compile"
check "rebar3 compile again (plugin)" run "$work/plugin-again.log" shimmed bash -c "cd '$pluginapp' && rebar3 compile"
check_eq "rebar3: no cargo on the second compile" 0 "$(calls cargo)"

# A mix project on a copy of the checkout (the snapshot's working tree), so editing its
# sources leaves this repository alone.
skipapp=$work/skip_app
mkdir -p "$skipapp"
sed -e "s|path: \"$root\"|path: \"$snapshot\"|" -e 's/:mix_app/:skip_app/; s/MixApp/SkipApp/' \
    "$mixapp/mix.exs" >"$skipapp/mix.exs"
check "mix compile (the copy installs with the cargo shim)" \
    run "$work/skip-1.log" shimmed bash -c "cd '$skipapp' && mix compile"
check_eq "mix: the first compile ran cargo once" 1 "$(calls cargo)"
check "the installed NIF is what the shim built" cmp "$root/priv/ocibuild_nif.so" "$snapshot/priv/ocibuild_nif.so"
settle
escripts=$(calls escript)
check "mix compile again" run "$work/skip-2.log" shimmed bash -c "cd '$skipapp' && mix compile"
check "mix run loads the NIF" run "$work/skip-3.log" shimmed bash -c "cd '$skipapp' && mix run -e '{:ok, _} = Ocibuild.scratch()'"
check_eq "mix: no installer run on the unchanged compiles" "$escripts" "$(calls escript)"
check_eq "mix: no cargo on the unchanged compiles" 1 "$(calls cargo)"
touch "$snapshot/native/ocibuild_core/src/lib.rs"
settle
check "mix compile after touching lib.rs" run "$work/skip-4.log" shimmed bash -c "cd '$skipapp' && mix compile"
check_eq "mix: a touched .rs file runs cargo" 2 "$(calls cargo)"
rm -f "$snapshot/priv/ocibuild_nif.so"
check "mix compile after deleting the library" run "$work/skip-5.log" shimmed bash -c "cd '$skipapp' && mix compile"
check_eq "mix: a deleted library runs cargo" 3 "$(calls cargo)"
check "the library is back" cmp "$root/priv/ocibuild_nif.so" "$snapshot/priv/ocibuild_nif.so"
check "mix compile once more" run "$work/skip-6.log" shimmed bash -c "cd '$skipapp' && mix compile"
check_eq "mix: and nothing runs after that" 3 "$(calls cargo)"

summary deps
