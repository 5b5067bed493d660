# shellcheck shell=bash
# Shared by the scripts in this folder: sourced, never run. Sets up PATH and locale the same
# way for a login shell, CI (a fresh clone, root, no stdin) and a developer's terminal.

# rustup installs cargo under ~/.cargo/bin, which a non-login shell may not have on PATH.
if [ -d "${CARGO_HOME:-$HOME/.cargo}/bin" ]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
export PATH

# The BEAM warns about (and Elixir mis-handles) file names when the locale is not UTF-8.
export LC_ALL=C.UTF-8 LANG=C.UTF-8

# hex.pm is unreachable from our machines: keep mix from ever trying to fetch Hex itself.
export HEX_OFFLINE=1

repo_root() {
    CDPATH='' cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd
}

section() {
    printf '\n==== %s ====\n' "$*"
}

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# ensure_packages PKG...: apt-get install the Debian packages that are missing (root only);
# does nothing, and needs no network, when all are installed.
ensure_packages() {
    local pkg missing=()
    for pkg in "$@"; do
        if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]; then
            missing+=("$pkg")
        fi
    done
    if [ ${#missing[@]} -eq 0 ]; then
        echo "packages: all $# present"
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "missing Debian packages (${missing[*]}); run this script as root"
    echo "packages: installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# require_rust: the toolchain comes with the machine (rustup); it cannot be downloaded here.
require_rust() {
    command -v cargo >/dev/null || die "cargo not found: this machine should ship a Rust toolchain (rustup)"
}
