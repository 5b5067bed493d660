# shellcheck shell=bash
# The example projects as the suites start from them (test/release, test/supply,
# test/precompiled): sourced, never run.
#
# example_project NAME DEST [OCIBUILD]: a fresh copy of examples/NAME at DEST, without what a
# build left there (_build, deps, saved images). For hello_elixir, OCIBUILD is where its
# ocibuild dependency comes from, in mix.exs's words (`path: "/x"`, `git: "file:///x", ref:
# "abc"`); the default is this checkout. For hello_erlang, OCIBUILD is `GIT_URL REF`: ocibuild
# becomes a project_plugin from that commit.
example_project() {
    local name=$1 dest=$2 here
    here=$(CDPATH='' cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
    cp -R "$here/examples/$name" "$dest"
    rm -rf "$dest/_build" "$dest/deps" "$dest"/*.tar.gz
    case "$name" in
    hello_elixir)
        # The suites check the result (a grep of mix.exs) as one of their checks.
        sed -i "s|{:ocibuild, path: \"../..\", runtime: false}|{:ocibuild, ${3:-path: \"$here\"}, runtime: false}|" \
            "$dest/mix.exs" ;;
    hello_erlang)
        if [ $# -ge 4 ]; then
            printf '\n{project_plugins, [{ocibuild, {git, "%s", {ref, "%s"}}}]}.\n' "$3" "$4" >>"$dest/rebar.config"
        fi ;;
    esac
}
