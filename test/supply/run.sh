#!/usr/bin/env bash
# Supply-chain tests: automatic annotations, the SBOM, cosign-compatible signatures and OCI
# 1.1 referrers of images pushed by `mix ocibuild`, each checked with tools we did not write:
# skopeo (annotations), pyspdxtools (the SPDX project's validator), openssl (signatures),
# curl + jq (referrers API on ferro-oci-server, the fallback tag on distribution 2.8).
#
#   bash test/supply/run.sh        (as root, after scripts/install-deps.sh)
#
# The project is a copy of examples/hello_elixir inside a temporary git repository whose
# origin is an ssh URL; its mix.lock lists a hex package and a git dependency (Mix only reads
# the entries of deps it has, so neither needs fetching). The base image comes from this
# machine (test/support/host_base.sh). Nothing leaves the machine.
set -euo pipefail
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
root=$(CDPATH='' cd -- "$here/../.." && pwd)
source "$root/scripts/common.sh"
source "$root/test/support/assert.sh"
source "$root/test/support/example.sh"
source "$root/test/registry/lib.sh"
source "$root/test/support/registry_read.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/ocibuild-supply.XXXXXX")
export OCIBUILD_TEST_TMP=$work
cleanup() {
    if [ "$failed" -gt 0 ]; then
        section "logs of the failed run"
        registry_dump_logs || true
    fi
    registry_stop_all
    rm -rf "$work"
}
trap cleanup EXIT

tools=${OCIBUILD_TOOLS_DIR:-$HOME/.cache/ocibuild-tools}
pyspdxtools=$tools/venv/bin/pyspdxtools
for tool in mix git skopeo jq curl openssl docker-registry /usr/bin/python3 "$pyspdxtools"; do
    command -v "$tool" >/dev/null || die "$tool not found: run scripts/install-deps.sh"
done

export OCIBUILD_CACHE_DIR=$work/cache
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
export HEX_CDN=http://127.0.0.1:9 HEX_MIRROR=http://127.0.0.1:9
export MIX_HOME=$work/mix-home HEX_HOME=$work/hex-home
export DOCKER_CONFIG=$work/no-docker-config REGISTRY_AUTH_FILE=$work/no-auth.json
echo '{}' >"$REGISTRY_AUTH_FILE"
# Nothing from the machine's own CI or keys may leak into what is tested.
unset SOURCE_DATE_EPOCH MIX_ENV OCIBUILD_INSECURE_REGISTRIES OCIBUILD_SIGN_KEY COSIGN_PASSWORD \
    OCIBUILD_BUILD_NIF OCIBUILD_NIF_PATH OCIBUILD_NIF_URL \
    OCIBUILD_PUSH_USERNAME OCIBUILD_PUSH_PASSWORD OCIBUILD_PUSH_TOKEN OCIBUILD_GIT_TIMEOUT \
    GITHUB_SERVER_URL GITHUB_REPOSITORY GITHUB_SHA CI_PROJECT_URL CI_COMMIT_SHA \
    BUILD_REPOSITORY_URI BUILD_SOURCEVERSION
# blob ADDR REPO DIGEST: a blob's bytes, over plain HTTP.
blob() { curl -sf "http://$1/v2/$2/blobs/$3"; }
# manifest ADDR REPO REF: a manifest or index by tag or digest.
manifest() {
    curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json' \
        "http://$1/v2/$2/manifests/$3"
}
fallback_tag() { echo "sha256-${1#sha256:}"; }

# one_line_error NAME WORD CMD...: CMD fails with status 1 and one line of stderr naming WORD.
one_line_error() {
    local name=$1 word=$2 status=0 err
    shift 2
    "$@" >"$work/err.out" 2>"$work/err.err" || status=$?
    check_eq "$name: exit status 1" 1 "$status"
    err=$(grep -v '^[[:space:]]*$' "$work/err.err" || true)
    check_eq "$name: one line of error" 1 "$(printf '%s\n' "$err" | grep -c . || true)"
    check_contains "$name: the line names the problem" "$word" "$err"
}

section "supply: registries on loopback (distribution 2.8, ferro-oci-server)"
start "distribution" registry_start anon REG
start "ferro-oci-server" registry_start ferro FERRO
pass "registries started"

section "supply: the project, in a git repository with an ssh origin"
ex=$work/hello
example_project hello_elixir "$ex"
check "mix.exs: ocibuild from this checkout" grep -q "path: \"$root\"" "$ex/mix.exs"
# A lock file with a hex package and a git dependency: the SBOM lists what the lock says.
cat >"$ex/mix.lock" <<'EOF'
%{
  "jason": {:hex, :jason, "1.4.1", "af1504e35f629ddcdd6addb3513c3853991f694921b1b9368b0bd32beb9f1b63", [:mix], [], "hexpm", "fbb01ecdfd565b56261302f7e1fcc27c4fb8f32d56eab74db621fc154604a7a1"},
  "tiny_dep": {:git, "https://github.com/acme/tiny_dep.git", "0123456789abcdef0123456789abcdef01234567", [tag: "v0.2.0"]},
}
EOF
git_() { git -C "$ex" -c user.name=t -c user.email=t@ocibuild.invalid "$@"; }
check "git init, commit, ssh origin" run "$work/git.log" bash -c \
    "cd '$ex' && git init -q && git add -A && git -c user.name=t -c user.email=t@ocibuild.invalid commit -q -m hello && git remote add origin git@github.com:acme/hello.git"
commit=$(git_ rev-parse HEAD 2>/dev/null || echo none)
check "MIX_ENV=prod mix release" run "$work/release.log" \
    bash -c "cd '$ex' && MIX_ENV=prod mix deps.get && MIX_ENV=prod mix release --overwrite"
rel=$ex/_build/prod/rel/hello_elixir
# From here on every `mix ocibuild` compiles the ocibuild dependency again, and each compile
# would run cargo to check the NIF: give it the one the release above installed (the same
# bytes) instead, so no run waits for the lock on the cargo build directory while another
# suite builds there (scripts/test-all.sh runs the suites side by side).
check "this checkout's NIF, for the runs below (OCIBUILD_NIF_PATH)" cp "$root/priv/ocibuild_nif.so" "$work/ocibuild_nif.so"
export OCIBUILD_NIF_PATH=$work/ocibuild_nif.so
erts_vsn=$(cut -d' ' -f1 "$rel/releases/start_erl.data" 2>/dev/null || echo none)
export OCIBUILD_EBIN=$ex/_build/prod/lib/ocibuild/ebin
check "base image from this machine, pushed as base:1" run "$work/base.log" \
    bash "$root/test/support/host_base.sh" --release "$rel" -o "$work/base.tar.gz" -t base:1 \
    --push "$REG_ADDR/base:1"
base_digest=$(digest_of "$REG_ADDR/base:1" 2>/dev/null || echo none)

# ocibuild [NAME=VALUE...] ARG...: `mix ocibuild` in the project, on base:1, with the
# environment given first.
ocibuild() {
    local envs=()
    while [ $# -gt 0 ] && [[ "$1" == [A-Z]*=* ]]; do envs+=("$1"); shift; done
    (cd "$ex" && env "${envs[@]}" MIX_ENV=prod mix ocibuild --base "$REG_ADDR/base:1" "$@")
}

section "supply: automatic annotations from git"
check "mix ocibuild --push (git origin and commit)" run "$work/git-push.log" \
    ocibuild --push "$REG_ADDR/supply" -t hello:git --sbom "$work/sbom.spdx.json"
ann=$(raw "$REG_ADDR/supply/hello:git" 2>&1 | jq -c .annotations 2>&1) || true
annotation() { jq -r --arg k "org.opencontainers.image.$2" '.[$k] // "absent"' <<<"$1"; }
check_eq "source: the ssh origin as https, without .git" https://github.com/acme/hello "$(annotation "$ann" source)"
check_eq "revision: git rev-parse HEAD" "$commit" "$(annotation "$ann" revision)"
check_eq "version: the release's" 0.1.0 "$(annotation "$ann" version)"
check "created: ISO 8601 UTC" grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$' \
    <<<"$(annotation "$ann" created)"
check_eq "base.name: the base reference" "$REG_ADDR/base:1" "$(annotation "$ann" base.name)"
check_eq "base.digest: the digest the registry serves" "$base_digest" "$(annotation "$ann" base.digest)"

section "supply: annotations from GitHub Actions variables, SOURCE_DATE_EPOCH"
check "mix ocibuild --push (GITHUB_* set)" run "$work/gh-push.log" ocibuild \
    GITHUB_SERVER_URL=https://github.example GITHUB_REPOSITORY=acme/from-ci \
    GITHUB_SHA=feedfacefeedfacefeedfacefeedfacefeedface SOURCE_DATE_EPOCH=1700000000 \
    --push "$REG_ADDR/supply" -t hello:gh
ann=$(raw "$REG_ADDR/supply/hello:gh" 2>&1 | jq -c .annotations 2>&1) || true
check_eq "source: GITHUB_SERVER_URL/GITHUB_REPOSITORY" https://github.example/acme/from-ci "$(annotation "$ann" source)"
check_eq "revision: GITHUB_SHA" feedfacefeedfacefeedfacefeedfacefeedface "$(annotation "$ann" revision)"
check_eq "created: SOURCE_DATE_EPOCH in ISO 8601" 2023-11-14T22:13:20Z "$(annotation "$ann" created)"

section "supply: --no-vcs-annotations, user annotations"
check "mix ocibuild --no-vcs-annotations -a (created as a unix timestamp)" run "$work/novcs.log" \
    ocibuild --push "$REG_ADDR/supply" -t hello:novcs --no-vcs-annotations \
    -a org.opencontainers.image.created=86400 -a org.opencontainers.image.version=9.9.9 -a team=core
ann=$(raw "$REG_ADDR/supply/hello:novcs" 2>&1 | jq -c .annotations 2>&1) || true
check_eq "no source" absent "$(annotation "$ann" source)"
check_eq "no revision" absent "$(annotation "$ann" revision)"
check_eq "created given as a unix timestamp becomes ISO 8601" 1970-01-02T00:00:00Z "$(annotation "$ann" created)"
check_eq "the command line wins over the automatic version" 9.9.9 "$(annotation "$ann" version)"
check_eq "a custom annotation" core "$(jq -r '.team // "absent"' <<<"$ann")"
one_line_error "a protected annotation is refused" org.opencontainers.image.source \
    ocibuild -t hello:bad -a org.opencontainers.image.source=https://evil.example
one_line_error "a .. path component is refused" path \
    ocibuild -t hello:bad -a 'x.path=a/../b'

section "supply: the SBOM (SPDX 2.2), validated by pyspdxtools"
check "--sbom wrote the file" test -s "$work/sbom.spdx.json"
check "pyspdxtools -i: valid SPDX" run "$work/pyspdxtools.log" "$pyspdxtools" -i "$work/sbom.spdx.json"
sbom=$(cat "$work/sbom.spdx.json" 2>/dev/null || echo '{}')
purls=$(jq -r '.packages[].externalRefs[]?.referenceLocator' <<<"$sbom" 2>&1) || true
check_eq "spdxVersion" SPDX-2.2 "$(jq -r .spdxVersion <<<"$sbom")"
check_contains "the hex dependency as pkg:hex" "pkg:hex/jason@1.4.1" "$purls"
check_contains "the git dependency as pkg:github" "pkg:github/acme/tiny_dep@0123456789abcdef0123456789abcdef01234567" "$purls"
check_contains "the base image as pkg:oci with its digest" "@sha256%3A${base_digest#sha256:}" "$purls"
check_eq "ERTS with the release's version" "$erts_vsn" \
    "$(jq -r '.packages[] | select(.name == "erts") | .versionInfo' <<<"$sbom" 2>&1)"
check_eq "the app with its version" 0.1.0 \
    "$(jq -r '.packages[] | select(.name == "hello_elixir") | .versionInfo' <<<"$sbom" 2>&1)"
app_id=$(jq -r '.packages[] | select(.name == "hello_elixir") | .SPDXID' <<<"$sbom" 2>/dev/null)
check_eq "the document DESCRIBES the app" "$app_id" \
    "$(jq -r '.relationships[] | select(.relationshipType == "DESCRIBES") | .relatedSpdxElement' <<<"$sbom" 2>&1)"
jason_id=$(jq -r '.packages[] | select(.name == "jason") | .SPDXID' <<<"$sbom" 2>/dev/null)
check_eq "the app DEPENDS_ON jason" 1 \
    "$(jq --arg a "$app_id" --arg j "$jason_id" '[.relationships[] | select(.spdxElementId == $a and .relationshipType == "DEPENDS_ON" and .relatedSpdxElement == $j)] | length' <<<"$sbom" 2>&1)"
image=$(raw "$REG_ADDR/supply/hello:git" 2>/dev/null || echo '{}')
last_layer=$(jq -r '.layers[-1].digest' <<<"$image")
check_eq "the image's last layer holds only /sbom.spdx.json" sbom.spdx.json \
    "$(blob "$REG_ADDR" supply/hello "$last_layer" | zstd -dcq 2>/dev/null | tar -tf - 2>&1 | sed 's|^/||')"
check_eq "the embedded SBOM is the written one" "$(sha256sum <"$work/sbom.spdx.json")" \
    "$(blob "$REG_ADDR" supply/hello "$last_layer" | zstd -dcq 2>/dev/null | tar -xOf - 2>/dev/null | sha256sum)"
# Reproducible: with SOURCE_DATE_EPOCH, two builds write the same SBOM.
for n in 1 2; do
    run "$work/sde$n.log" ocibuild SOURCE_DATE_EPOCH=1700000000 -o "$work/sde$n.tar.gz" -t hello:sde \
        --sbom "$work/sde$n.spdx.json" || true
done
check "SOURCE_DATE_EPOCH: two builds, the same SBOM bytes" cmp "$work/sde1.spdx.json" "$work/sde2.spdx.json"
check "SOURCE_DATE_EPOCH: the SBOM of that build is valid too" run "$work/pyspdxtools2.log" "$pyspdxtools" -i "$work/sde1.spdx.json"

# The core's sample documents: odd names, every kind of dependency source, local bases.
samples=$work/sbom-samples
check "the core writes its sample SBOMs" run "$work/samples.log" \
    env "OCIBUILD_SBOM_SAMPLES=$samples" cargo test -q -p ocibuild_core --lib --manifest-path "$root/Cargo.toml" \
    supply::sbom::tests::write_samples -- --ignored
check "at least five sample SBOMs" test "$(find "$samples" -name '*.spdx.json' 2>/dev/null | wc -l)" -ge 5
for f in "$samples"/*.spdx.json; do
    [ -e "$f" ] || continue
    check "pyspdxtools -i: sample $(basename "$f")" run "$work/sample.log" "$pyspdxtools" -i "$f"
done

section "supply: the SBOM referrer on distribution 2.8 (referrers tag schema)"
subject=$(digest_of "$REG_ADDR/supply/hello:git" 2>/dev/null || echo none)
check_eq "no referrers API on distribution 2.8" 404 \
    "$(curl -s -o /dev/null -w '%{http_code}' "http://$REG_ADDR/v2/supply/hello/referrers/$subject")"
index=$(manifest "$REG_ADDR" supply/hello "$(fallback_tag "$subject")" 2>/dev/null || echo '{}')
check_eq "the fallback tag is an image index" application/vnd.oci.image.index.v1+json "$(jq -r .mediaType <<<"$index")"
check_eq "it lists one SPDX referrer" 1 \
    "$(jq '[.manifests[] | select(.artifactType == "application/spdx+json")] | length' <<<"$index" 2>&1)"
ref_digest=$(jq -r '.manifests[0].digest' <<<"$index" 2>/dev/null)
artifact=$(manifest "$REG_ADDR" supply/hello "$ref_digest" 2>/dev/null || echo '{}')
check_eq "the referrer's subject is the image" "$subject" "$(jq -r .subject.digest <<<"$artifact")"
check_eq "the referrer's config is the empty descriptor" application/vnd.oci.empty.v1+json \
    "$(jq -r .config.mediaType <<<"$artifact")"
check_eq "the referrer's blob is the SBOM" "$(sha256sum <"$work/sbom.spdx.json")" \
    "$(blob "$REG_ADDR" supply/hello "$(jq -r '.layers[0].digest' <<<"$artifact")" | sha256sum)"

# Updated, not overwritten: another tool's referrer already in the fallback index stays.
check "the same image again (SOURCE_DATE_EPOCH) to repository a" run "$work/a.log" ocibuild SOURCE_DATE_EPOCH=1700000000 \
    --push "$REG_ADDR/a" -t hello:1
subject_a=$(digest_of "$REG_ADDR/a/hello:1" 2>/dev/null || echo none)
# foreign_referrer REPO SUBJECT: what another tool (oras, cosign) would leave: an artifact
# manifest of its own type, and the fallback index at the subject's tag listing it.
foreign_referrer() {
    local repo=$1 subject=$2 empty=sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a art digest
    local location
    location=$(curl -sf -D - -o /dev/null -X POST "http://$REG_ADDR/v2/$repo/blobs/uploads/" |
        tr -d '\r' | awk 'tolower($1) == "location:" { print $2 }')
    [[ "$location" == http* ]] || location=http://$REG_ADDR$location
    [[ "$location" == *\?* ]] && location=$location'&' || location=$location'?'
    curl -sf -X PUT --data-binary '{}' -H 'Content-Type: application/octet-stream' \
        "${location}digest=$empty" >/dev/null || return 1
    art='{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example.other","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"'$empty'","size":2},"layers":[{"mediaType":"application/vnd.oci.empty.v1+json","digest":"'$empty'","size":2}],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"'$subject'","size":1}}'
    digest=sha256:$(printf '%s' "$art" | sha256sum | cut -d' ' -f1)
    curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "$art" \
        "http://$REG_ADDR/v2/$repo/manifests/$digest" || return 1
    curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.index.v1+json' \
        --data-binary '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"'"$digest"'","size":'"${#art}"',"artifactType":"application/vnd.example.other"}]}' \
        "http://$REG_ADDR/v2/$repo/manifests/$(fallback_tag "$subject")"
}
check "another tool's referrer in repository b's fallback tag (curl)" foreign_referrer b/hello "$subject_a"
check "the same image to repository b" run "$work/b.log" ocibuild SOURCE_DATE_EPOCH=1700000000 \
    --push "$REG_ADDR/b" -t hello:1
check_eq "the same digest in both repositories" "$subject_a" "$(digest_of "$REG_ADDR/b/hello:1" 2>&1)"
index=$(manifest "$REG_ADDR" b/hello "$(fallback_tag "$subject_a")" 2>/dev/null || echo '{}')
check_eq "b's fallback index keeps the foreign referrer and adds the SBOM" \
    '["application/spdx+json","application/vnd.example.other"]' \
    "$(jq -c '[.manifests[].artifactType] | sort' <<<"$index" 2>&1)"
check "pushing again adds no duplicate" run "$work/b2.log" ocibuild SOURCE_DATE_EPOCH=1700000000 \
    --push "$REG_ADDR/b" -t hello:1
check_eq "still two referrers" 2 \
    "$(manifest "$REG_ADDR" b/hello "$(fallback_tag "$subject_a")" 2>/dev/null | jq '.manifests | length' 2>&1)"

section "supply: the SBOM referrer on ferro-oci-server (referrers API)"
check "mix ocibuild --push to ferro-oci-server" run "$work/ferro.log" \
    ocibuild --push "$FERRO_ADDR/supply" -t hello:1
check_contains "the output says the registry lists it" "referrers API" "$(cat "$work/ferro.log")"
subject_f=$(digest_of "$FERRO_ADDR/supply/hello:1" 2>/dev/null || echo none)
listing=$(curl -sf "http://$FERRO_ADDR/v2/supply/hello/referrers/$subject_f" 2>&1) || true
check_eq "GET /referrers lists the SPDX artifact" application/spdx+json \
    "$(jq -r '.manifests[].artifactType' <<<"$listing" 2>&1)"
artifact=$(manifest "$FERRO_ADDR" supply/hello "$(jq -r '.manifests[0].digest' <<<"$listing" 2>/dev/null)" 2>/dev/null || echo '{}')
check_eq "its subject is the image" "$subject_f" "$(jq -r .subject.digest <<<"$artifact")"
check_eq "no fallback tag where the API exists" 404 \
    "$(curl -s -o /dev/null -w '%{http_code}' "http://$FERRO_ADDR/v2/supply/hello/manifests/$(fallback_tag "$subject_f")")"

section "supply: signatures (cosign format), verified with openssl"
keys=$work/keys
mkdir -p "$keys"
check "openssl: a SEC1 P-256 key" openssl ecparam -name prime256v1 -genkey -out "$keys/sec1.pem"
check "openssl: a PKCS#8 P-256 key" openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$keys/pkcs8.pem"
check "openssl: a second PKCS#8 P-256 key" openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$keys/pkcs8-2.pem"
check "that key as a cosign encrypted key (scrypt + NaCl secretbox)" env COSIGN_PASSWORD=s3cret-pw \
    /usr/bin/python3 "$root/test/support/cosign_key.py" "$keys/pkcs8-2.pem" "$keys/cosign.key"
for k in sec1 pkcs8 pkcs8-2; do openssl pkey -in "$keys/$k.pem" -pubout -out "$keys/$k.pub" 2>/dev/null || true; done

# verify_signatures ADDR REPO DIGEST PUB...: the .sig manifest's layers, in order, verify
# with the given public keys: payload and signature fetched over HTTP, checked by openssl.
verify_signatures() {
    local addr=$1 repo=$2 digest=$3 sig n=0 pub payload_digest
    shift 3
    sig=$(manifest "$addr" "$repo" "$(fallback_tag "$digest").sig") || { echo "no .sig manifest"; return 1; }
    [ "$(jq '.layers | length' <<<"$sig")" = "$#" ] || { echo "expected $# signatures: $sig"; return 1; }
    for pub in "$@"; do
        payload_digest=$(jq -r ".layers[$n].digest" <<<"$sig")
        [ "$(jq -r ".layers[$n].mediaType" <<<"$sig")" = application/vnd.dev.cosign.simplesigning.v1+json ] ||
            { echo "layer $n: wrong media type"; return 1; }
        blob "$addr" "$repo" "$payload_digest" >"$work/payload" || { echo "no payload blob"; return 1; }
        jq -r ".layers[$n].annotations[\"dev.cosignproject.cosign/signature\"]" <<<"$sig" | base64 -d >"$work/sig.der" ||
            { echo "no signature annotation"; return 1; }
        [ "$(jq -r '.critical.image["docker-manifest-digest"]' "$work/payload")" = "$digest" ] ||
            { echo "payload names another digest: $(cat "$work/payload")"; return 1; }
        [ "$(jq -r '.critical.identity["docker-reference"]' "$work/payload")" = "$addr/$repo" ] ||
            { echo "payload names another repository: $(cat "$work/payload")"; return 1; }
        [ "$(jq -r '.critical.type' "$work/payload")" = "cosign container image signature" ] ||
            { echo "payload type: $(cat "$work/payload")"; return 1; }
        openssl dgst -sha256 -verify "$pub" -signature "$work/sig.der" "$work/payload" || return 1
        n=$((n + 1))
    done
}

# SOURCE_DATE_EPOCH: the second push below makes the same image, which gets a second signature.
check "push signed with the SEC1 key (--sign-key)" run "$work/sign1.log" \
    ocibuild SOURCE_DATE_EPOCH=1700000000 --push "$REG_ADDR/signed" -t hello:1 --sign-key "$keys/sec1.pem"
check_contains "the output names the signature tag" "Signed: $REG_ADDR/signed/hello:sha256-" "$(cat "$work/sign1.log")"
signed=$(digest_of "$REG_ADDR/signed/hello:1" 2>/dev/null || echo none)
check "openssl verifies the signature" verify_signatures "$REG_ADDR" signed/hello "$signed" "$keys/sec1.pub"
check "a second signature (PKCS#8 key, OCIBUILD_SIGN_KEY) is appended" run "$work/sign2.log" \
    ocibuild SOURCE_DATE_EPOCH=1700000000 "OCIBUILD_SIGN_KEY=$keys/pkcs8.pem" --push "$REG_ADDR/signed" -t hello:1
check_eq "the image did not change" "$signed" "$(digest_of "$REG_ADDR/signed/hello:1" 2>&1)"
check "both signatures verify, the first kept" verify_signatures "$REG_ADDR" signed/hello "$signed" \
    "$keys/sec1.pub" "$keys/pkcs8.pub"
check "push signed with the cosign key (COSIGN_PASSWORD)" run "$work/sign3.log" \
    ocibuild COSIGN_PASSWORD=s3cret-pw --push "$REG_ADDR/cosign" -t hello:1 --sign-key "$keys/cosign.key"
signed=$(digest_of "$REG_ADDR/cosign/hello:1" 2>/dev/null || echo none)
check "openssl verifies the cosign key's signature" verify_signatures "$REG_ADDR" cosign/hello "$signed" "$keys/pkcs8-2.pub"
check "the password appears in no output" bash -c "! grep -rq s3cret-pw '$work'/*.log"

one_line_error "a wrong COSIGN_PASSWORD" COSIGN_PASSWORD \
    ocibuild COSIGN_PASSWORD=wrong --push "$REG_ADDR/nope" -t hello:1 --sign-key "$keys/cosign.key"
one_line_error "no COSIGN_PASSWORD for an encrypted key" COSIGN_PASSWORD \
    ocibuild --push "$REG_ADDR/nope" -t hello:1 --sign-key "$keys/cosign.key"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$keys/rsa.pem" 2>/dev/null || true
one_line_error "an RSA key" "$keys/rsa.pem" ocibuild --push "$REG_ADDR/nope" -t hello:1 --sign-key "$keys/rsa.pem"
one_line_error "a missing key file" "$keys/missing.pem" ocibuild --push "$REG_ADDR/nope" -t hello:1 --sign-key "$keys/missing.pem"
check_eq "nothing was pushed by the failed signed pushes" 404 \
    "$(curl -s -o /dev/null -w '%{http_code}' "http://$REG_ADDR/v2/nope/hello/manifests/1")"

section "supply: a multi-platform image: an SBOM per platform manifest, the index signed"
check "host_base.sh --host-erts: a two-platform base carrying Erlang" run "$work/base-erts.log" \
    bash "$root/test/support/host_base.sh" --host-erts --platform linux/amd64,linux/arm64 \
    -o "$work/base-erts.tar.gz" -t base-erts:1 --push "$REG_ADDR/base-erts:1"
check "a release without ERTS" run "$work/noerts.log" bash -c \
    "cd '$ex' && sed -i 's/include_erts: true/include_erts: false/' mix.exs && rm -rf _build/prod/rel/hello_elixir && MIX_ENV=prod mix release --overwrite"
check "mix ocibuild --platform linux/amd64,linux/arm64 --sign-key" run "$work/multi.log" \
    bash -c "cd '$ex' && MIX_ENV=prod mix ocibuild --base '$REG_ADDR/base-erts:1' --platform linux/amd64,linux/arm64 \
        --push '$REG_ADDR/multi' -t hello:1 --sign-key '$keys/sec1.pem'"
multi=$(raw "$REG_ADDR/multi/hello:1" 2>/dev/null || echo '{}')
check_eq "an index of two platforms" 2 "$(jq '.manifests | length' <<<"$multi" 2>&1)"
for d in $(jq -r '.manifests[].digest' <<<"$multi" 2>/dev/null); do
    idx=$(manifest "$REG_ADDR" multi/hello "$(fallback_tag "$d")" 2>/dev/null || echo '{}')
    # Signed: the SBOM and the provenance (test/supply/provenance.sh checks the latter).
    check_eq "platform manifest ${d:7:12}: an SPDX referrer and an in-toto one" \
        '["application/spdx+json","application/vnd.in-toto+json"]' \
        "$(jq -c '[.manifests[].artifactType] | sort' <<<"$idx" 2>&1)"
    art=$(manifest "$REG_ADDR" multi/hello "$(jq -r '.manifests[] | select(.artifactType == "application/spdx+json") | .digest' <<<"$idx" 2>/dev/null)" 2>/dev/null || echo '{}')
    blob "$REG_ADDR" multi/hello "$(jq -r '.layers[0].digest' <<<"$art")" >"$work/multi-${d:7:12}.spdx.json" 2>/dev/null || true
    check "platform manifest ${d:7:12}: its SBOM is valid SPDX" run "$work/pyspdxtools-${d:7:12}.log" \
        "$pyspdxtools" -i "$work/multi-${d:7:12}.spdx.json"
done
index_digest=$(digest_of "$REG_ADDR/multi/hello:1" 2>/dev/null || echo none)
check "the index's signature verifies" verify_signatures "$REG_ADDR" multi/hello "$index_digest" "$keys/sec1.pub"

# shellcheck source=test/supply/provenance.sh
source "$here/provenance.sh"
# shellcheck source=test/supply/verify.sh
source "$here/verify.sh"

summary supply
