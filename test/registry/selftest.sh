#!/usr/bin/env bash
# Self-test of the registry test kit (test/registry/lib.sh and its servers): every kind of
# registry takes a push from skopeo and gives the image back, the auth kinds refuse what they
# should, the token server's log shows the scopes, ferro-oci-server answers the referrers API,
# and the fault proxy forwards cleanly and injects each of its faults (status answers, slow
# blob GETs, upload sessions handed to another origin).
#
#   bash test/registry/selftest.sh        (after scripts/install-deps.sh; about 30 s)
#
# Everything listens on 127.0.0.1 and is stopped on exit. REGISTRY_KEEP=1 keeps the state and
# logs of the run; a failing run prints the tail of every log.
set -euo pipefail
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
root=$(CDPATH='' cd -- "$here/../.." && pwd)
source "$root/scripts/common.sh"
source "$root/test/support/assert.sh"
source "$here/lib.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/ocibuild-registry-selftest.XXXXXX")
export OCIBUILD_TEST_TMP=$work
cleanup() {
    if [ "$failed" -gt 0 ]; then
        section "logs of the failed run"
        registry_dump_logs
    fi
    registry_stop_all
    rm -rf "$work"
}
trap cleanup EXIT
trap '[[ $- == *e* ]] && echo "registry-selftest: stopped by a failing command at line $LINENO: $BASH_COMMAND" >&2' ERR
started=$SECONDS

for tool in skopeo curl jq openssl docker-registry htpasswd; do
    command -v "$tool" >/dev/null || die "$tool not found: run scripts/install-deps.sh"
done

# No login of the machine's user may change the outcome.
echo '{}' >"$work/auth.json"
export REGISTRY_AUTH_FILE=$work/auth.json
skopeo_() { skopeo --insecure-policy "$@"; }
push() { skopeo_ copy -q --dest-tls-verify=false "$@"; }
insp() { skopeo_ inspect --tls-verify=false "$@"; }
pw=$REGISTRY_TEST_PASSWORD
user=$REGISTRY_TEST_USER

# start_ok NAME CMD...: a start must work, or nothing after it can.
start_ok() {
    local name=$1
    shift
    if "$@" >"$work/start.out" 2>&1; then
        pass "$name"
    else
        fail "$name" "$(cat "$work/start.out")"
        summary registry-selftest || true
        exit 1
    fi
}

# fails NAME CMD...: passes when CMD exits non-zero.
fails() {
    local name=$1
    shift
    if "$@" >/dev/null 2>&1; then fail "$name" "expected a failure: $*"; else pass "$name"; fi
}

http_code() { curl -s -o /dev/null -w '%{http_code}' "$@" 2>/dev/null || true; }
header() { tr -d '\r' | awk -v h="$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')" 'tolower($0) ~ "^"h":" { sub(/^[^:]*: */, ""); print; exit }'; }

# A tiny OCI image layout, by hand: one gzip layer holding one file, a config, a manifest.
# make_layout DIR TAG TEXT; sets layout_digest to the manifest's digest, layout_size to its size.
make_layout() {
    local dir=$1 tag=$2 text=$3 tmp diff_id layer layer_size config config_size
    tmp=$(mktemp -d "$work/layer.XXXXXX")
    mkdir -p "$dir/blobs/sha256" "$tmp/root"
    printf '%s\n' "$text" >"$tmp/root/hello.txt"
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$tmp/root" -cf "$tmp/layer.tar" hello.txt
    diff_id=$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)
    gzip -n -c "$tmp/layer.tar" >"$tmp/layer.tar.gz"
    layer=$(sha256sum "$tmp/layer.tar.gz" | cut -d' ' -f1)
    layer_size=$(stat -c %s "$tmp/layer.tar.gz")
    mv "$tmp/layer.tar.gz" "$dir/blobs/sha256/$layer"
    jq -cn --arg arch "$(dpkg --print-architecture)" --arg d "sha256:$diff_id" \
        '{architecture: $arch, os: "linux", config: {Cmd: ["/hello.txt"]},
          rootfs: {type: "layers", diff_ids: [$d]}}' | tr -d '\n' >"$tmp/config.json"
    config=$(sha256sum "$tmp/config.json" | cut -d' ' -f1)
    config_size=$(stat -c %s "$tmp/config.json")
    mv "$tmp/config.json" "$dir/blobs/sha256/$config"
    jq -cn --arg c "sha256:$config" --argjson cs "$config_size" --arg l "sha256:$layer" --argjson ls "$layer_size" \
        '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
          config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
          layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $l, size: $ls}]}' |
        tr -d '\n' >"$tmp/manifest.json"
    layout_digest=sha256:$(sha256sum "$tmp/manifest.json" | cut -d' ' -f1)
    layout_size=$(stat -c %s "$tmp/manifest.json")
    mv "$tmp/manifest.json" "$dir/blobs/sha256/${layout_digest#sha256:}"
    jq -cn --arg d "$layout_digest" --argjson s "$layout_size" --arg t "$tag" \
        '{schemaVersion: 2, manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json",
          digest: $d, size: $s, annotations: {"org.opencontainers.image.ref.name": $t}}]}' >"$dir/index.json"
    echo '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
    rm -rf "$tmp"
}

# upload_blob URL REPO FILE: push FILE as a blob with curl (POST, then PUT ?digest= with the
# whole body); prints the final status code.
upload_blob() {
    local url=$1 repo=$2 file=$3 digest loc
    digest=sha256:$(sha256sum "$file" | cut -d' ' -f1)
    loc=$(curl -s -D - -o /dev/null -X POST "$url/v2/$repo/blobs/uploads/" | header Location)
    case "$loc" in http*) ;; *) loc=$url$loc ;; esac
    case "$loc" in *\?*) loc="$loc&digest=$digest" ;; *) loc="$loc?digest=$digest" ;; esac
    curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/octet-stream' \
        --data-binary "@$file" "$loc"
}

layout=$work/layout
make_layout "$layout" v1 "hello from the registry self-test"
image_digest=$layout_digest
image_size=$layout_size
src=oci:$layout:v1

section "registry: anonymous (distribution 2.8)"
start_ok "registry_start anon" registry_start anon ANON
check_eq "GET /v2/ answers 200" 200 "$(http_code "$ANON_URL/v2/")"
check "skopeo copy oci: -> docker:// (push)" push "$src" "docker://$ANON_ADDR/selftest/app:v1"
check_eq "skopeo inspect: the pushed digest" "$image_digest" \
    "$(insp "docker://$ANON_ADDR/selftest/app:v1" 2>&1 | jq -r .Digest 2>&1)"
check_eq "tags/list" '["v1"]' "$(curl -s "$ANON_URL/v2/selftest/app/tags/list" | jq -c .tags 2>&1)"
check "skopeo copy docker:// -> oci: (pull, verifies every blob)" \
    skopeo_ copy -q --src-tls-verify=false "docker://$ANON_ADDR/selftest/app:v1" "oci:$work/pulled:v1"
check_eq "DELETE of a manifest is enabled (202)" 202 \
    "$(http_code -X DELETE "$ANON_URL/v2/selftest/app/manifests/$image_digest")"
check_eq "the deleted manifest is gone (404)" 404 \
    "$(http_code -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$ANON_URL/v2/selftest/app/manifests/$image_digest")"

section "registry: basic auth (htpasswd, bcrypt)"
start_ok "registry_start basic" registry_start basic BASIC
check_eq "GET /v2/ without credentials: 401" 401 "$(http_code "$BASIC_URL/v2/")"
check_contains "the challenge is Basic" 'Basic realm="ocibuild-test"' \
    "$(curl -s -D - -o /dev/null "$BASIC_URL/v2/" | header WWW-Authenticate)"
check_eq "GET /v2/ with the right credentials: 200" 200 "$(http_code -u "$user:$pw" "$BASIC_URL/v2/")"
check_eq "GET /v2/ with a wrong password: 401" 401 "$(http_code -u "$user:wrong" "$BASIC_URL/v2/")"
fails "push without credentials is refused" push "$src" "docker://$BASIC_ADDR/selftest/app:v1"
fails "push with a wrong password is refused" push --dest-creds "$user:wrong" "$src" "docker://$BASIC_ADDR/selftest/app:v1"
check "push with the right credentials" push --dest-creds "$user:$pw" "$src" "docker://$BASIC_ADDR/selftest/app:v1"
check_eq "inspect with credentials: the pushed digest" "$image_digest" \
    "$(insp --creds "$user:$pw" "docker://$BASIC_ADDR/selftest/app:v1" 2>&1 | jq -r .Digest 2>&1)"
fails "inspect without credentials is refused" insp "docker://$BASIC_ADDR/selftest/app:v1"

section "registry: token auth (distribution + token_server.py, x5c)"
start_ok "registry_start token" registry_start token TOK
challenge=$(curl -s -D - -o /dev/null "$TOK_URL/v2/" | header WWW-Authenticate)
check_eq "the challenge names our realm and service" \
    "Bearer realm=\"$TOK_TOKEN_URL\",service=\"ocibuild-test\"" "$challenge"
check "push with credentials (skopeo does the token dance)" \
    push --dest-creds "$user:$pw" "$src" "docker://$TOK_ADDR/selftest/app:v1"
wait_contains "the token log shows the push scope granted to the user" \
    "scope=repository:selftest/app:pull,push user=$user granted=repository:selftest/app:pull,push status=200" \
    "$TOK_TOKEN_LOG"
check_eq "anonymous inspect (anonymous pull is granted)" "$image_digest" \
    "$(insp --no-creds "docker://$TOK_ADDR/selftest/app:v1" 2>&1 | jq -r .Digest 2>&1)"
wait_contains "the token log shows the anonymous pull" \
    "user=anonymous granted=repository:selftest/app:pull status=200" "$TOK_TOKEN_LOG"
fails "anonymous push is refused" push --dest-no-creds "$src" "docker://$TOK_ADDR/selftest/other:v1"
fails "push with a wrong password is refused" push --dest-creds "$user:wrong" "$src" "docker://$TOK_ADDR/selftest/other:v1"
wait_contains "the token server answered the wrong password with 401" \
    "user=$user granted=- status=401 note=bad-credentials" "$TOK_TOKEN_LOG"
token=$(curl -s -u "$user:$pw" "$TOK_TOKEN_URL?service=ocibuild-test&scope=repository:selftest/app:pull" | jq -r .token)
check_eq "curl with a token from GET /token: tags/list" '["v1"]' \
    "$(curl -s -H "Authorization: Bearer $token" "$TOK_URL/v2/selftest/app/tags/list" | jq -c .tags 2>&1)"
check_eq "that pull-only token cannot start an upload (401)" 401 \
    "$(http_code -X POST -H "Authorization: Bearer $token" "$TOK_URL/v2/selftest/app/blobs/uploads/")"
oauth=$(curl -s -d grant_type=password -d "username=$user" --data-urlencode "password=$pw" -d service=ocibuild-test \
    -d 'scope=repository:selftest/app:pull' -d client_id=selftest "$TOK_TOKEN_URL" | jq -r .access_token)
check_eq "POST /token (OAuth2 password grant) gives a token the registry takes" '["v1"]' \
    "$(curl -s -H "Authorization: Bearer $oauth" "$TOK_URL/v2/selftest/app/tags/list" | jq -c .tags 2>&1)"
start_ok "registry_start token --sign kid (libtrust key id)" registry_start token TOKKID --sign kid --anonymous none
check "push with credentials (kid-signed tokens)" \
    push --dest-creds "$user:$pw" "$src" "docker://$TOKKID_ADDR/selftest/app:v1"
fails "anonymous inspect is refused with --anonymous none" insp --no-creds "docker://$TOKKID_ADDR/selftest/app:v1"
check "no log holds the password" bash -c "! grep -rqF -- '$pw' '$REGISTRY_RUN_DIR'"

section "registry: ferro-oci-server (OCI 1.1, referrers)"
start_ok "registry_start ferro" registry_start ferro FERRO
check "push" push "$src" "docker://$FERRO_ADDR/selftest/app:v1"
check_eq "inspect: the pushed digest" "$image_digest" \
    "$(insp "docker://$FERRO_ADDR/selftest/app:v1" 2>&1 | jq -r .Digest 2>&1)"
check_eq "GET /referrers/<digest> answers 200" 200 "$(http_code "$FERRO_URL/v2/selftest/app/referrers/$image_digest")"
check_eq "... with an empty OCI index" 'application/vnd.oci.image.index.v1+json 0' \
    "$(curl -s "$FERRO_URL/v2/selftest/app/referrers/$image_digest" | jq -r '"\(.mediaType) \(.manifests | length)"' 2>&1)"
# An artifact whose subject is the image: the empty config, one empty layer.
printf '{}' >"$work/empty.json"
empty=sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a
check_eq "curl: upload the empty blob (201)" 201 "$(upload_blob "$FERRO_URL" selftest/app "$work/empty.json")"
jq -cn --arg e "$empty" --arg s "$image_digest" --argjson ss "$image_size" \
    '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
      artifactType: "application/vnd.ocibuild.selftest",
      config: {mediaType: "application/vnd.oci.empty.v1+json", digest: $e, size: 2},
      layers: [{mediaType: "application/vnd.oci.empty.v1+json", digest: $e, size: 2}],
      subject: {mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $s, size: $ss}}' |
    tr -d '\n' >"$work/artifact.json"
artifact=sha256:$(sha256sum "$work/artifact.json" | cut -d' ' -f1)
check_eq "curl: PUT the artifact manifest (201)" 201 \
    "$(http_code -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
        --data-binary "@$work/artifact.json" "$FERRO_URL/v2/selftest/app/manifests/$artifact")"
check_eq "the referrers index lists the artifact" "$artifact application/vnd.ocibuild.selftest" \
    "$(curl -s "$FERRO_URL/v2/selftest/app/referrers/$image_digest" | jq -r '.manifests[] | "\(.digest) \(.artifactType)"' 2>&1)"

section "fault proxy: no faults (in front of distribution)"
start_ok "registry_start anon (upstream of the proxies)" registry_start anon UP
start_ok "fault_proxy_start (no faults)" fault_proxy_start PX "$UP_ADDR"
check "push through the proxy" push "$src" "docker://$PX_ADDR/selftest/app:v1"
check_eq "inspect through the proxy" "$image_digest" \
    "$(insp "docker://$PX_ADDR/selftest/app:v1" 2>&1 | jq -r .Digest 2>&1)"
check_eq "inspect of the upstream directly" "$image_digest" \
    "$(insp "docker://$UP_ADDR/selftest/app:v1" 2>&1 | jq -r .Digest 2>&1)"
layer_size=$(jq '[.layers[].size] | add' "$layout/blobs/sha256/${image_digest#sha256:}")
config_size=$(jq '.config.size' "$layout/blobs/sha256/${image_digest#sha256:}")
blob_bytes=$((layer_size + config_size))
wait_eq "the log counts every blob byte of the first push" "$blob_bytes" \
    fault_proxy_sum "$PX_LOG" req_bytes 'PATCH|PUT' '/blobs/uploads/'
wait_eq "... and all of it went upstream" "$blob_bytes" fault_proxy_sum "$PX_LOG" up_bytes 'PATCH|PUT' '/blobs/uploads/'
wait_eq "the push's manifest PUT is logged" 1 fault_proxy_count "$PX_LOG" PUT /manifests/
check_eq "no fault fired" 0 "$(fault_proxy_count "$PX_LOG" '' '' '^[^-]')"
check_eq "Location headers point at the proxy" 0 "$(grep -c "${UP_ADDR##*:}" "$PX_LOG" || true)"
check_eq "no request carried credentials" 0 "$(grep -c ' auth=[^-]' "$PX_LOG" || true)"
lines=$(wc -l <"$PX_LOG")
check "push the same image again" push "$src" "docker://$PX_ADDR/selftest/app:v1"
wait_eq "the re-push's manifest PUT is logged" 2 fault_proxy_count "$PX_LOG" PUT /manifests/
tail -n +"$((lines + 1))" "$PX_LOG" >"$work/second-push.log"
check_eq "the re-push sends 0 blob bytes" 0 "$(fault_proxy_sum "$work/second-push.log" req_bytes 'PATCH|PUT|POST' '/blobs/')"
check_contains "... and PUTs the manifest again" "method=PUT path=/v2/selftest/app/manifests/v1 status=201" \
    "$(cat "$work/second-push.log")"

section "fault proxy: an injected 503"
start_ok "fault_proxy_start --status 503:PUT:/manifests/:1" \
    fault_proxy_start P503 "$UP_ADDR" --status 503:PUT:/manifests/:1 --retry-after 1
fails "push without retries fails on the 503" push "$src" "docker://$P503_ADDR/selftest/retry:v1"
wait_eq "the log shows the one injected 503" 1 fault_proxy_count "$P503_LOG" PUT /manifests/ 'status:503'
check_contains "... answered without reaching the upstream" "status=503 upstream=-" "$(grep 'fault=status:503' "$P503_LOG")"
check "the same push again succeeds (the fault fired its 1 time)" push "$src" "docker://$P503_ADDR/selftest/retry:v1"
wait_eq "the manifest PUT then reached the upstream" 1 \
    bash -c 'grep -c "method=PUT path=/v2/selftest/retry/manifests/v1 status=201 upstream=201" "$1" || true' _ "$P503_LOG"
start_ok "fault_proxy_start --status 503:GET:^/v2/\$:1 --retry-after 7" \
    fault_proxy_start P503B "$UP_ADDR" --status '503:GET:^/v2/$:1' --retry-after 7
check_eq "an injected 503 carries Retry-After" "7" "$(curl -s -D - -o /dev/null "$P503B_URL/v2/" | header Retry-After)"
check_eq "... once: the next GET /v2/ is forwarded" 200 "$(http_code "$P503B_URL/v2/")"

section "fault proxy: upload sessions handed to another origin; the auth log"
FAULT_PROXY_HOST=127.0.0.2 start_ok "fault_proxy_start on 127.0.0.2" fault_proxy_start PS "$UP_ADDR"
check_contains "it listens on 127.0.0.2" "127.0.0.2:" "$PS_ADDR"
start_ok "fault_proxy_start --location-to http://PS" fault_proxy_start PH "$UP_ADDR" --location-to "http://$PS_ADDR"
loc=$(curl -s -D - -o /dev/null -X POST -H 'Authorization: Bearer not-logged' \
    "$PH_URL/v2/selftest/handoff/blobs/uploads/" | header Location)
check_contains "POST /blobs/uploads/: the Location is on the other origin" \
    "http://$PS_ADDR/v2/selftest/handoff/blobs/uploads/" "$loc"
printf 'handed off\n' >"$work/handoff.bin"
handoff=sha256:$(sha256sum "$work/handoff.bin" | cut -d' ' -f1)
check_eq "PUT ?digest= there completes the upload (201)" 201 \
    "$(http_code -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$work/handoff.bin" "$loc&digest=$handoff")"
wait_contains "the log names the hand-off and the auth scheme" "fault=location-to" "$PH_LOG"
check_contains "... the scheme only" "auth=bearer" "$(grep 'fault=location-to' "$PH_LOG")"
wait_contains "the other origin logged the PUT without credentials" \
    "method=PUT path=/v2/selftest/handoff/blobs/uploads/" "$PS_LOG"
check_contains "... auth=-" "auth=-" "$(grep 'method=PUT' "$PS_LOG")"
check "no log holds the token" bash -c "! grep -rqF -- not-logged '$REGISTRY_RUN_DIR'"

section "fault proxy: throttled blob GETs"
head -c 1048576 /dev/urandom >"$work/blob.bin"
blob=sha256:$(sha256sum "$work/blob.bin" | cut -d' ' -f1)
check_eq "upload a 1 MiB blob through the proxy (201)" 201 "$(upload_blob "$PX_URL" selftest/big "$work/blob.bin")"
start_ok "fault_proxy_start --throttle-get 524288" fault_proxy_start PT "$UP_ADDR" --throttle-get 524288
secs=$(curl -s -o "$work/slow.bin" -w '%{time_total}' "$PT_URL/v2/selftest/big/blobs/$blob")
# At least the throttled time; the upper bound only catches a throttle that does nothing
# useful, with room for a busy machine.
check "1 MiB at 512 KiB/s takes about 2 s (took ${secs}s)" awk -v s="$secs" 'BEGIN { exit !(s >= 1.7 && s < 30) }'
check "... and arrives whole" cmp "$work/slow.bin" "$work/blob.bin"

section "fault proxy: a 100 MiB blob streams through without being held in memory"
head -c $((100 * 1024 * 1024)) /dev/zero | tr '\0' 'x' >"$work/huge.bin"
huge=sha256:$(sha256sum "$work/huge.bin" | cut -d' ' -f1)
check_eq "monolithic PUT of 100 MiB through the proxy (201)" 201 \
    "$(upload_blob "$PX_URL" selftest/huge "$work/huge.bin")"
loc=$(curl -s -D - -o /dev/null -X POST "$PX_URL/v2/selftest/huge2/blobs/uploads/" | header Location)
resp=$(curl -s -D - -o /dev/null -X PATCH -H 'Content-Type: application/octet-stream' \
    -H 'Transfer-Encoding: chunked' --data-binary "@$work/huge.bin" "$loc") || true
check_eq "chunked PATCH of 100 MiB through the proxy" "0-$((100 * 1024 * 1024 - 1))" "$(header Range <<<"$resp")"
check_eq "GET of the 100 MiB blob through the proxy: the same bytes" "$huge" \
    "sha256:$(curl -s "$PX_URL/v2/selftest/huge/blobs/$huge" | sha256sum | cut -d' ' -f1)"
rss_kb=$(awk '/^VmHWM/ { print $2 }' "/proc/$PX_PID/status")
check "the proxy's peak memory stayed under 64 MiB (was $((rss_kb / 1024)) MiB)" test "$rss_kb" -lt 65536
rm -f "$work/huge.bin"

section "podman pull from the anonymous registry"
if command -v podman >/dev/null; then
    podman_() {
        CONTAINERS_CONF=$root/test/e2e/containers.conf podman --root "$work/podman/root" \
            --runroot "$work/podman/run" --tmpdir "$work/podman/tmp" --storage-driver vfs "$@"
    }
    check "podman pull --tls-verify=false 127.0.0.1:PORT/repo:tag" \
        podman_ pull -q --tls-verify=false "$UP_ADDR/selftest/app:v1"
    check_eq "podman image inspect: the pushed digest" "$image_digest" \
        "$(podman_ image inspect "$UP_ADDR/selftest/app:v1" 2>&1 | jq -r '.[0].Digest' 2>&1)"
    podman_ rmi --all --force >/dev/null 2>&1 || true
else
    fail "podman pull" "podman is not installed: run scripts/install-deps.sh"
fi

printf '\nregistry self-test took %ds\n' "$((SECONDS - started))"
summary registry-selftest
