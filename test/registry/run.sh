#!/usr/bin/env bash
# Registry tests: ocibuild's pull and push against real registries started here on loopback
# (CNCF distribution 2.8 from Debian's docker-registry, anonymous, htpasswd and token auth;
# ferro-oci-server as an OCI 1.1 registry) and over TLS, cross-checked with skopeo and
# podman; logging proxies count what went over the wire.
#
#   bash test/registry/run.sh        (as root, after scripts/install-deps.sh)
#
# The protocol itself (auth flows, token expiry, chunked and monolithic uploads, 416
# fallback, resume after a reset, mounts, retries with Retry-After, download resume, corrupt
# bytes) is tested by `cargo test -p ocibuild_core registry::` against an in-process
# registry (native/ocibuild_core/src/registry/testing/): here is what needs another tool or
# a real registry.
#
# Cases run in test/registry/cases.escript, several to a VM; a case that changes the
# environment the native library reads gets a VM of its own. Checks here compare what the
# cases report with what skopeo, podman and the proxy logs say. REGISTRY_KEEP=1 keeps the
# logs.
set -euo pipefail
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
root=$(CDPATH='' cd -- "$here/../.." && pwd)
source "$root/scripts/common.sh"
source "$root/test/support/assert.sh"
source "$here/lib.sh"
source "$root/test/support/registry_read.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/ocibuild-registry.XXXXXX")
export OCIBUILD_TEST_TMP=$work
extra_pids=()
source "$root/test/support/podman.sh"
cleanup() {
    if [ "$failed" -gt 0 ]; then
        section "logs of the failed run"
        registry_dump_logs || true
    fi
    for pid in "${extra_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    podman_clean
    registry_stop_all
    if [ -n "${lo_alias:-}" ]; then ip addr del "$lo_alias/32" dev lo 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

for tool in skopeo podman jq openssl curl docker-registry htpasswd busybox; do
    command -v "$tool" >/dev/null || die "$tool not found: run scripts/install-deps.sh"
done

export OCIBUILD_CACHE_DIR=$work/cache
# Same bytes on every build of the same image, so a re-push can be compared with the first.
export SOURCE_DATE_EPOCH=1700000000
# No login of the machine's user may change the outcome.
export DOCKER_CONFIG=$work/no-docker-config REGISTRY_AUTH_FILE=$work/no-auth.json
echo '{}' >"$REGISTRY_AUTH_FILE"
unset OCIBUILD_INSECURE_REGISTRIES SSL_CERT_FILE

if [ -z "${OCIBUILD_EBIN:-}" ]; then
    (cd "$root" && rebar3 compile >"$work/rebar3-compile.log" 2>&1) ||
        { cat "$work/rebar3-compile.log"; die "rebar3 compile failed"; }
    export OCIBUILD_EBIN=$root/_build/default/lib/ocibuild/ebin
fi

# run_case NAME CASE ARG...: one case in its own VM; passes when it exits 0. Its output is
# kept in $work/NAME.out for the checks that follow.
run_case() {
    local name=$1
    shift
    if escript "$here/cases.escript" "$@" >"$work/$name.out" 2>&1; then
        pass "$name"
    else
        fail "$name" "$(cat "$work/$name.out")"
    fi
}
# queue TITLE CASE ARG...: a case for the next run_queue, which runs every queued case in one
# VM, in order; each passes or fails on its own. Their output is kept in $work/GROUP.out.
queued_titles=()
queued_args=()
queue() {
    queued_titles+=("$1")
    shift
    queued_args+=(-- "$@")
}
run_queue() {
    local group=$1 i out
    out=$work/$group.out
    escript "$here/cases.escript" "${queued_args[@]}" >"$out" 2>&1 || true
    for i in "${!queued_titles[@]}"; do
        if grep -qx "case $i ok" "$out"; then
            pass "${queued_titles[$i]}"
        else
            fail "${queued_titles[$i]}" "$(sed -n "/^case $i start /,/^case $i failed\$/p" "$out")"
        fi
    done
    queued_titles=()
    queued_args=()
}
# value NAME KEY: a KEY=VALUE line a case printed.
value() { sed -n "s/^$2=//p" "$work/$1.out" | head -n 1; }
# at_least N CMD...: CMD prints a number that is at least N (with wait_until: eventually).
at_least() {
    local n=$1
    shift
    [ "$("$@")" -ge "$n" ]
}
wait_until() { _registry_wait_until "$@"; }
# token_grants LOG METHOD SCOPE: the token server's log lines of METHOD granting SCOPE to the
# test user.
token_grants() {
    grep "method=$2" "$1" | grep "scope=$3" | grep -c "user=$REGISTRY_TEST_USER" || true
}

section "registry: start the registries and proxies"
start "anonymous registry" registry_start anon REG
start "htpasswd registry" registry_start basic BASIC
start "token registry" registry_start token TOKEN
start "token registry (access_token only, 2 s tokens)" registry_start token TOKEN2 --token-field access_token --expires-in 2
start "ferro-oci-server" registry_start ferro FERRO
for step in FROM SAVE AGAIN CORRUPT; do
    start "logging proxy ($step)" fault_proxy_start "LAZY_$step" "$REG_ADDR"
done
start "failing proxy" fault_proxy_start FAILING "$REG_ADDR" --status '500:PUT:/blobs/uploads/' \
    --status '500:PATCH:/blobs/uploads/' --retry-after 0
start "slow proxy" fault_proxy_start SLOW "$REG_ADDR" --throttle-get 400000
pass "registries and proxies started"

section "registry: push, and read back with skopeo and podman"
queue "push (chunked, two tags)" push "$REG_ADDR" app/hello:v1 "$work/app.digest"
queue "re-push of the unchanged image sends no blob bytes" repush "$REG_ADDR" app/hello:v2 "$work/app.digest"
queue "export a two-platform layout" export_multi "$work/multi-layout"
queue "export a single-platform layout" export_single "$work/single-layout"
run_queue push
app_digest=$(cat "$work/app.digest" 2>/dev/null || echo none)
check_eq "skopeo reads the pushed manifest with our digest" "$app_digest" "$(digest_of "$REG_ADDR/app/hello:v1")"
check_eq "the extra tag names the same manifest" "$app_digest" "$(digest_of "$REG_ADDR/app/hello:extra")"
check_eq "skopeo: the config's platform" "linux" \
    "$(skopeo_ inspect --tls-verify=false "docker://$REG_ADDR/app/hello:v1" | jq -r .Os)"
check "podman pulls the image" podman_ pull -q --tls-verify=false "$REG_ADDR/app/hello:v1"
check_eq "podman sees the same digest" "$app_digest" \
    "$(podman_ image inspect --format '{{.Digest}}' "$REG_ADDR/app/hello:v1" 2>&1)"
check_eq "podman runs the pulled image" "hello from the registry" \
    "$(podman_ run --rm --network=none "$REG_ADDR/app/hello:v1" 2>&1)"

section "registry: bases pushed by skopeo, pulled by us"
check "skopeo copies the multi-platform base in" skopeo_ copy -q --all --dest-tls-verify=false \
    "oci:$work/multi-layout" "docker://$REG_ADDR/base/multi:1"
check "skopeo pushes the single-platform layout as Docker schema 2" skopeo_ copy -q --format v2s2 \
    --dest-tls-verify=false "oci:$work/single-layout" "docker://$REG_ADDR/base/docker:1"
queue "pull both platforms, derive, push_multi (base layers mounted)" pull_multi "$REG_ADDR"
queue "a Docker schema 2 base: exact digest, derived image saved and pushed" docker_base "$REG_ADDR" "$work/docker-derived.tar.gz"
queue "digest references and the tuple form" digest_refs "$REG_ADDR" app/hello "$app_digest"
run_queue bases
check_eq "skopeo: the derived index lists two platforms" "linux/amd64 linux/arm64" \
    "$(skopeo_ inspect --tls-verify=false --raw "docker://$REG_ADDR/derived/multi:1" |
        jq -r '[.manifests[].platform | .os + "/" + .architecture] | sort | join(" ")')"
check "podman pulls the derived multi-platform image" podman_ pull -q --tls-verify=false "$REG_ADDR/derived/multi:1"
check "the push mounted the base layers" wait_until grep -q 'mount=' "$REG_LOG"
check "podman loads the image derived from the Docker base" podman_ load -q -i "$work/docker-derived.tar.gz"
check_eq "and runs it" $'hello from the registry\nderived from docker v2s2' \
    "$(podman_ run --rm --network=none localhost/registry-docker-derived:1 2>&1)"

section "registry: base layers are fetched lazily into a verified cache"
check "skopeo copies a base with a 12 MiB layer" skopeo_ copy -q --src-tls-verify=false --dest-tls-verify=false \
    "docker://$REG_ADDR/app/hello:v1" "docker://$REG_ADDR/lazy/base:v1"
# The push above built these layers into the same store: start from an empty cache. Each step
# goes through a logging proxy of its own, so its blob GETs can be counted afterwards.
rm -rf "$OCIBUILD_CACHE_DIR"
queue "from reads manifest and config only" lazy_fetch "$LAZY_FROM_ADDR" lazy/base from "$work/lazy.tar.gz"
queue "save fetches the layers into the cache" lazy_fetch "$LAZY_SAVE_ADDR" lazy/base save "$work/lazy.tar.gz"
queue "a second save uses the cache" lazy_fetch "$LAZY_AGAIN_ADDR" lazy/base save "$work/lazy.tar.gz"
queue "a corrupt cache entry is discarded and refetched" lazy_fetch "$LAZY_CORRUPT_ADDR" lazy/base corrupt "$work/lazy.tar.gz"
queue "a killed caller's download is cancelled and its temp file removed" cancel "$SLOW_ADDR" lazy/base "$work/cancel.tar.gz"
run_queue lazy
wait_eq "from fetched one blob (the config)" 1 fault_proxy_count "$LAZY_FROM_LOG" GET /blobs/sha256:
wait_eq "save fetched config + 2 layers" 3 fault_proxy_count "$LAZY_SAVE_LOG" GET /blobs/sha256:
wait_eq "the second save fetched only the config" 1 fault_proxy_count "$LAZY_AGAIN_LOG" GET /blobs/sha256:
wait_eq "config + the corrupted layer were fetched" 2 fault_proxy_count "$LAZY_CORRUPT_LOG" GET /blobs/sha256:
check "podman loads the saved image" podman_ load -q -i "$work/lazy.tar.gz"

section "registry: auth"
run_case "Basic: refused, then explicit, docker config, credential helper, podman auth.json" basic "$BASIC_ADDR" "$work"
basic_digest=$(value "Basic: refused, then explicit, docker config, credential helper, podman auth.json" digest)
check_eq "skopeo with the same credentials sees our digest" "$basic_digest" \
    "$(skopeo_ inspect --tls-verify=false --creds "$REGISTRY_TEST_USER:$REGISTRY_TEST_PASSWORD" --raw \
        "docker://$BASIC_ADDR/auth/app:helper" | sha256sum | awk '{print "sha256:" $1}')"
run_case "access_token answers, expiring tokens, an identity token from config.json" token_variants \
    "$TOKEN2_ADDR" "$TOKEN2_TOKEN_URL" "$work"
# expires_in 2 is held for docker's 60 s minimum (distribution itself allows 60 s of
# leeway), so the second push, 2.5 s later, reuses the token.
wait_eq "a 2 s token is kept for the 60 s minimum (two pushes, one token)" 1 \
    token_grants "$TOKEN2_TOKEN_LOG" GET repository:tokv/app:pull,push
wait_eq "the identity token was exchanged by a refresh-token POST" 1 \
    bash -c 'grep "method=POST" "$1" | grep -c "status=200" || true' _ "$TOKEN2_TOKEN_LOG"
: >"$TOKEN_TOKEN_LOG"
queue "Bearer token: push, anonymous pull, ready token" token "$TOKEN_ADDR" "$TOKEN_TOKEN_URL"
queue "ferro-oci-server (OCI 1.1): push, pull, multi-platform" ferro "$FERRO_ADDR"
queue "failing pushes with a password" leak "$BASIC_ADDR" "$FAILING_ADDR"
run_queue auth
wait_eq "one token served the whole chunked push (auth reused)" 1 \
    token_grants "$TOKEN_TOKEN_LOG" '[A-Z]*' repository:tok/app:pull,push
# The password must appear nowhere: our output, the registries' and proxies' logs.
leaks=$(grep -rl --binary-files=text -F "$REGISTRY_TEST_PASSWORD" "$work" "$REGISTRY_RUN_DIR" \
    --exclude=htpasswd --exclude='*.json' --exclude=passwd --exclude=helper-secret 2>/dev/null || true)
check_eq "the password appears in no output or log" "" "$leaks"

section "registry: running on a node"
queue "a ticker keeps ticking during a 100 MB push" ticker "$REG_ADDR"
queue "four processes push at once" concurrent "$REG_ADDR"
queue "saved tarballs pushed later (single, multi, tag override)" push_loaded "$REG_ADDR" "$work"
run_queue node
printf '        %s\n' "$(grep -E '^(push_ms|ticks|max_gap_ms)=' "$work/node.out" | tr '\n' ' ')"
check "the Elixir API: from, push, push_multi, Ocibuild.Registry.push and push_loaded" \
    bash -c 'cd "$1" && mix run --no-deps-check test/registry/elixir_case.exs "$2" "$3"' _ "$root" "$REG_ADDR" "$work"

section "registry: TLS on a non-loopback address"
# Loopback registries are plain HTTP by design, so HTTPS needs an address that is not.
host_ip=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+\.' | grep -v '^127\.' | head -n 1 || true)
if [ -z "$host_ip" ]; then
    lo_alias=10.254.254.254
    ip addr add "$lo_alias/32" dev lo
    host_ip=$lo_alias
fi
tls=$work/tls
mkdir -p "$tls/data" "$tls/plain"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=ocibuild test CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.pem" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj "/CN=$host_ip" -keyout "$tls/server.key" \
    -out "$tls/server.csr" >/dev/null 2>&1
printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\n' "$host_ip" >"$tls/ext.cnf"
openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 2 -extfile "$tls/ext.cnf" -out "$tls/server.pem" >/dev/null 2>&1
tls_port=$(registry_free_port)
plain_port=$(registry_free_port)
cat >"$tls/config.yml" <<EOF
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $tls/data}}
http:
  addr: $host_ip:$tls_port
  secret: ocibuild-test
  tls: {certificate: $tls/server.pem, key: $tls/server.key}
EOF
sed -e "s|$tls/data|$tls/plain|" -e "s|:$tls_port|:$plain_port|" -e '/tls:/d' "$tls/config.yml" >"$tls/plain.yml"
env -i PATH="$PATH" docker-registry serve "$tls/config.yml" >"$tls/tls.log" 2>&1 &
extra_pids+=($!)
env -i PATH="$PATH" docker-registry serve "$tls/plain.yml" >"$tls/plain.log" 2>&1 &
extra_pids+=($!)
for _ in $(seq 1 100); do
    curl -sf --cacert "$tls/ca.pem" "https://$host_ip:$tls_port/v2/" >/dev/null &&
        curl -sf "http://$host_ip:$plain_port/v2/" >/dev/null && break
    sleep 0.1
done
SSL_CERT_FILE=$tls/ca.pem run_case "HTTPS with SSL_CERT_FILE adding the test CA" tls "$host_ip:$tls_port" trusted
run_case "HTTPS without the CA: a certificate error" tls "$host_ip:$tls_port" untrusted
check_contains "the error names the certificate problem" "ertificate" "$(value "HTTPS without the CA: a certificate error" why)"
OCIBUILD_INSECURE_REGISTRIES="other.example,$host_ip:$plain_port" \
    run_case "plain HTTP for a host in OCIBUILD_INSECURE_REGISTRIES" tls "$host_ip:$plain_port" insecure
run_case "an unlisted plain-HTTP registry is not downgraded to" tls "$host_ip:$plain_port" unlisted
FAULT_PROXY_HOST=$host_ip start "HTTPS proxy handing upload sessions to plain HTTP" fault_proxy_start DOWN \
    "$host_ip:$plain_port" --tls-cert "$tls/server.pem" --tls-key "$tls/server.key" \
    --location-to "http://$host_ip:$plain_port"
SSL_CERT_FILE=$tls/ca.pem run_case "an upload Location from HTTPS down to HTTP: refused, tagged" \
    downgrade "$DOWN_ADDR" "http://$host_ip:$plain_port"
check "the refusal came after the registry handed out the session" \
    wait_until grep -q 'method=POST .*fault=location-to' "$DOWN_LOG"

summary registry
