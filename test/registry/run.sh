#!/usr/bin/env bash
# Registry tests: ocibuild's pull and push against real registries started here on loopback
# (CNCF distribution 2.8 from Debian's docker-registry, anonymous, htpasswd and token auth;
# ferro-oci-server as an OCI 1.1 registry), through a fault-injecting proxy for the failures a
# real registry cannot be made to show, and cross-checked with skopeo and podman.
#
#   bash test/registry/run.sh        (as root, after scripts/install-deps.sh)
#
# Each case is one VM running test/registry/cases.escript; checks here compare what it
# reports with what skopeo, podman and the proxy logs say. REGISTRY_KEEP=1 keeps the logs.
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
start "plain proxy" fault_proxy_start PLAIN "$REG_ADDR"
start "reset proxy" fault_proxy_start RESET "$REG_ADDR" --reset-mid-body 'PATCH:/blobs/uploads/:2'
start "5xx proxy" fault_proxy_start FIVE "$REG_ADDR" --status '500:PUT:/manifests/:1' \
    --status '503:HEAD:/blobs/:2' --status '502:PATCH:/blobs/uploads/:1' --retry-after 0
start "429 proxy" fault_proxy_start TOOMANY "$REG_ADDR" --status '429:POST:/blobs/uploads/:1' --retry-after 1
start "416 proxy" fault_proxy_start RANGE "$REG_ADDR" --status '416:PATCH:/blobs/uploads/:1'
start "failing proxy" fault_proxy_start FAILING "$REG_ADDR" --status '500:PUT:/blobs/uploads/' \
    --status '500:PATCH:/blobs/uploads/' --retry-after 0
start "manifest-corrupting proxy" fault_proxy_start BADMANIFEST "$REG_ADDR" --corrupt-blob-get 'GET:/manifests/'
start "slow proxy" fault_proxy_start SLOW "$REG_ADDR" --throttle-get 400000
start "silent proxy" fault_proxy_start SILENT "$REG_ADDR" --delay '3000:GET:/manifests/'
FAULT_PROXY_HOST=127.0.0.2 start "storage proxy on another loopback host" fault_proxy_start STORAGE "$REG_ADDR"
start "storage proxy on another port" fault_proxy_start STORAGE2 "$REG_ADDR"
start "hand-off proxy (upload sessions on 127.0.0.2)" fault_proxy_start HANDOFF "$REG_ADDR" \
    --location-to "http://$STORAGE_ADDR"
start "hand-off proxy (upload sessions on another port)" fault_proxy_start HANDOFF2 "$REG_ADDR" \
    --location-to "http://$STORAGE2_ADDR"
pass "registries and proxies started"

section "registry: push, and read back with skopeo and podman"
run_case "push (chunked, two tags)" push "$REG_ADDR" app/hello:v1 "$work/app.digest"
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
run_case "re-push of the unchanged image sends no blob bytes" repush "$REG_ADDR" app/hello:v2 "$app_digest"
: >"$PLAIN_LOG"
run_case "re-push through a logging proxy" repush "$PLAIN_ADDR" app/hello:v3 "$app_digest"
wait_eq "the re-push's manifest PUT is logged" 1 fault_proxy_count "$PLAIN_LOG" PUT /manifests/
check_eq "the proxy saw 0 bytes of blob uploads" 0 "$(fault_proxy_sum "$PLAIN_LOG" req_bytes 'PATCH|PUT' /blobs/uploads/)"
check_eq "the proxy saw no upload session" 0 "$(fault_proxy_count "$PLAIN_LOG" POST /blobs/uploads/)"

section "registry: bases pushed by skopeo, pulled by us"
run_case "export a two-platform layout" export_multi "$work/multi-layout"
check "skopeo copies the multi-platform base in" skopeo_ copy -q --all --dest-tls-verify=false \
    "oci:$work/multi-layout" "docker://$REG_ADDR/base/multi:1"
run_case "pull both platforms, derive, push_multi (base layers mounted)" pull_multi "$REG_ADDR"
check_eq "skopeo: the derived index lists two platforms" "linux/amd64 linux/arm64" \
    "$(skopeo_ inspect --tls-verify=false --raw "docker://$REG_ADDR/derived/multi:1" |
        jq -r '[.manifests[].platform | .os + "/" + .architecture] | sort | join(" ")')"
check "podman pulls the derived multi-platform image" podman_ pull -q --tls-verify=false "$REG_ADDR/derived/multi:1"
check "the push mounted the base layers" wait_until grep -q 'mount=' "$REG_LOG"
run_case "export a single-platform layout" export_single "$work/single-layout"
check "skopeo pushes it as Docker schema 2" skopeo_ copy -q --format v2s2 --dest-tls-verify=false \
    "oci:$work/single-layout" "docker://$REG_ADDR/base/docker:1"
run_case "a Docker schema 2 base: exact digest, derived image saved and pushed" docker_base "$REG_ADDR" "$work/docker-derived.tar.gz"
check "podman loads the image derived from the Docker base" podman_ load -q -i "$work/docker-derived.tar.gz"
check_eq "and runs it" $'hello from the registry\nderived from docker v2s2' \
    "$(podman_ run --rm --network=none localhost/registry-docker-derived:1 2>&1)"
run_case "digest references and the tuple form" digest_refs "$REG_ADDR" app/hello "$app_digest"
run_case "a pinned digest is verified against the bytes served" pinned_mismatch "$BADMANIFEST_ADDR" app/hello "$app_digest"

section "registry: base layers are fetched lazily into a verified cache"
check "skopeo copies a base with a 12 MiB layer" skopeo_ copy -q --src-tls-verify=false --dest-tls-verify=false \
    "docker://$REG_ADDR/app/hello:v1" "docker://$REG_ADDR/lazy/base:v1"
: >"$PLAIN_LOG"
run_case "from reads manifest and config only" lazy_fetch "$PLAIN_ADDR" lazy/base from "$work/lazy.tar.gz"
wait_eq "from fetched one blob (the config)" 1 fault_proxy_count "$PLAIN_LOG" GET /blobs/sha256:
: >"$PLAIN_LOG"
# The push above built these layers into the same store: start from an empty cache.
rm -rf "$OCIBUILD_CACHE_DIR"
run_case "save fetches the layers into the cache" lazy_fetch "$PLAIN_ADDR" lazy/base save "$work/lazy.tar.gz"
wait_eq "save fetched config + 2 layers" 3 fault_proxy_count "$PLAIN_LOG" GET /blobs/sha256:
: >"$PLAIN_LOG"
run_case "a second save uses the cache" lazy_fetch "$PLAIN_ADDR" lazy/base save "$work/lazy.tar.gz"
wait_eq "only the config was fetched again" 1 fault_proxy_count "$PLAIN_LOG" GET /blobs/sha256:
: >"$PLAIN_LOG"
run_case "a corrupt cache entry is discarded and refetched" lazy_fetch "$PLAIN_ADDR" lazy/base corrupt "$work/lazy.tar.gz"
wait_eq "config + the corrupted layer were fetched" 2 fault_proxy_count "$PLAIN_LOG" GET /blobs/sha256:
check "podman loads the saved image" podman_ load -q -i "$work/lazy.tar.gz"
layer=$(skopeo_ inspect --tls-verify=false --raw "docker://$REG_ADDR/lazy/base:v1" | jq -r '.layers[-1].digest')
layer_size=$(skopeo_ inspect --tls-verify=false --raw "docker://$REG_ADDR/lazy/base:v1" | jq -r '.layers[-1].size')
rm -rf "$OCIBUILD_CACHE_DIR"
start "response-cutting proxy" fault_proxy_start CUT "$REG_ADDR" --cut-response "GET:/blobs/$layer:1"
run_case "a download cut mid-way resumes where it stopped" lazy_fetch "$CUT_ADDR" lazy/base save "$work/cut.tar.gz"
wait_eq "the layer took two GETs" 2 fault_proxy_count "$CUT_LOG" GET "/blobs/$layer"
# The two answers cover the layer; the second is a partial answer (206) carrying less than the
# layer, where starting over would carry all of it again. (The cut answer's count includes
# bytes the reset discarded in the client's socket buffer, which grow with load: the sum alone
# says little about the overlap.)
cut_total=$(fault_proxy_sum "$CUT_LOG" resp_bytes GET "/blobs/$layer")
check "which together carried at least the layer" test "$cut_total" -ge "$layer_size"
resumed=$(_fault_proxy_select "$CUT_LOG" GET "/blobs/$layer" '^-$' | tail -n 1)
log_field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }
check_eq "the second GET was a Range request answered with 206" 206 "$(log_field "$resumed" status)"
check "and carried only the rest of the layer, not all of it again" \
    test "$(log_field "$resumed" resp_bytes)" -gt 0 -a "$(log_field "$resumed" resp_bytes)" -lt "$layer_size"
rm -rf "$OCIBUILD_CACHE_DIR"
start "layer-corrupting proxy" fault_proxy_start BADLAYER "$REG_ADDR" --corrupt-blob-get "GET:/blobs/$layer"
run_case "wrong layer bytes: digest_mismatch, nothing cached" corrupt_layer "$BADLAYER_ADDR" lazy/base "$layer" "$work/bad.tar.gz"
rm -rf "$OCIBUILD_CACHE_DIR"
run_case "a killed caller's download is cancelled and its temp file removed" cancel "$SLOW_ADDR" lazy/base "$work/cancel.tar.gz"

section "registry: faults between us and the registry"
run_case "connection reset mid-chunk: resumed, same digest" push_via "$RESET_ADDR" faults/reset:1 "$app_digest"
wait_eq "the proxy reset two chunk uploads" 2 fault_proxy_count "$RESET_LOG" PATCH /blobs/uploads/ reset
check "the client asked the registry for the upload's offset" \
    wait_until at_least 2 fault_proxy_count "$RESET_LOG" GET /blobs/uploads/
run_case "500 on the manifest, 503 on HEADs, 502 on a chunk: same digest" push_via "$FIVE_ADDR" faults/five:1 "$app_digest"
wait_eq "every injected 5xx fired" 4 fault_proxy_count "$FIVE_LOG" '' '' 'status'
run_case "429 with Retry-After: same digest" push_via "$TOOMANY_ADDR" faults/429:1 "$app_digest"
wait_eq "the 429 fired once" 1 fault_proxy_count "$TOOMANY_LOG" POST /blobs/uploads/ 'status'
run_case "416 on a chunk: monolithic fallback, same digest" push_via "$RANGE_ADDR" faults/range:1 "$app_digest"
wait_eq "the 416 fired once" 1 fault_proxy_count "$RANGE_LOG" PATCH /blobs/uploads/ 'status'
run_case "every blob upload fails: an error" push_fails "$FAILING_ADDR" faults/failed:1
check "a failed push leaves no tag" bash -c "! skopeo --insecure-policy inspect --tls-verify=false --raw docker://$REG_ADDR/faults/failed:1"
check_eq "and never put a manifest" 0 "$(fault_proxy_count "$FAILING_LOG" PUT /manifests/)"

section "registry: credentials stay with the registry, time is bounded"
for via in HANDOFF:STORAGE:"another loopback host" HANDOFF2:STORAGE2:"another port"; do
    IFS=: read -r handoff storage where <<<"$via"
    handoff_addr=${handoff}_ADDR handoff_log=${handoff}_LOG storage_log=${storage}_LOG
    run_case "upload sessions on $where: pushed in chunks, same digest" push_token \
        "${!handoff_addr}" "handoff/${handoff,,}:1" "$app_digest"
    check "the registry got the token with the POST" \
        wait_until grep -q 'method=POST .*fault=location-to .*auth=bearer' "${!handoff_log}"
    check "the chunks and the final PUT went to $where" \
        wait_until at_least 2 fault_proxy_count "${!storage_log}" 'PATCH|PUT' /blobs/uploads/
    check_eq "... and not one request there carried Authorization" 0 \
        "$(grep -c ' auth=[^-]' "${!storage_log}" || true)"
done
OCIBUILD_REGISTRY_TIMEOUT=0.5 run_case "answers slower than OCIBUILD_REGISTRY_TIMEOUT: a timeout, bounded" \
    timeout "$SILENT_ADDR" app/hello
rm -rf "$OCIBUILD_CACHE_DIR"
OCIBUILD_MIN_TRANSFER_RATE=4000000 OCIBUILD_TRANSFER_RATE_WINDOW=0.5 \
    run_case "bodies slower than OCIBUILD_MIN_TRANSFER_RATE: a body timeout" slow_body "$SLOW_ADDR" lazy/base "$work/slow.tar.gz"

section "registry: auth"
run_case "Basic: refused, then explicit, docker config, credential helper, podman auth.json" basic "$BASIC_ADDR" "$work"
basic_digest=$(value "Basic: refused, then explicit, docker config, credential helper, podman auth.json" digest)
check_eq "skopeo with the same credentials sees our digest" "$basic_digest" \
    "$(skopeo_ inspect --tls-verify=false --creds "$REGISTRY_TEST_USER:$REGISTRY_TEST_PASSWORD" --raw \
        "docker://$BASIC_ADDR/auth/app:helper" | sha256sum | awk '{print "sha256:" $1}')"
: >"$TOKEN_TOKEN_LOG"
run_case "Bearer token: push, anonymous pull, ready token" token "$TOKEN_ADDR" "$TOKEN_TOKEN_URL"
wait_eq "one token served the whole chunked push (auth reused)" 1 \
    token_grants "$TOKEN_TOKEN_LOG" '[A-Z]*' repository:tok/app:pull,push
run_case "access_token answers, expiring tokens, an identity token from config.json" token_variants \
    "$TOKEN2_ADDR" "$TOKEN2_TOKEN_URL" "$work"
# expires_in 2 is held for docker's 60 s minimum (distribution itself allows 60 s of
# leeway), so the second push, 2.5 s later, reuses the token.
wait_eq "a 2 s token is kept for the 60 s minimum (two pushes, one token)" 1 \
    token_grants "$TOKEN2_TOKEN_LOG" GET repository:tokv/app:pull,push
wait_eq "the identity token was exchanged by a refresh-token POST" 1 \
    bash -c 'grep "method=POST" "$1" | grep -c "status=200" || true' _ "$TOKEN2_TOKEN_LOG"
run_case "ferro-oci-server (OCI 1.1): push, pull, multi-platform" ferro "$FERRO_ADDR"
: >"$work/leak.out"
run_case "failing pushes with a password" leak "$BASIC_ADDR" "$FAILING_ADDR"
# The password must appear nowhere: our output, the registries' and proxies' logs.
leaks=$(grep -rl --binary-files=text -F "$REGISTRY_TEST_PASSWORD" "$work" "$REGISTRY_RUN_DIR" \
    --exclude=htpasswd --exclude='*.json' --exclude=passwd --exclude=helper-secret 2>/dev/null || true)
check_eq "the password appears in no output or log" "" "$leaks"

section "registry: running on a node"
run_case "a ticker keeps ticking during a 100 MB push" ticker "$REG_ADDR"
printf '        %s\n' "$(grep -E '^(push_ms|ticks|max_gap_ms)=' "$work/a ticker keeps ticking during a 100 MB push.out" | tr '\n' ' ')"
run_case "four processes push at once" concurrent "$REG_ADDR"
run_case "saved tarballs pushed later (single, multi, tag override)" push_loaded "$REG_ADDR" "$work"
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
