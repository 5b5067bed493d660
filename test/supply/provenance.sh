# shellcheck shell=bash
# shellcheck disable=SC2154 # tools, root, keys, work, base_digest, commit, erts_vsn, multi, index_digest are run.sh's
# Signed SLSA provenance of pushed images, checked with tools we did not write: the in-toto
# projects' Python packages (in-toto-attestation's Statement v1 and Provenance v1 protos, the
# in-toto package's DSSE envelope verification), openssl (the ECDSA signature over the PAE
# bytes computed here), curl + jq (the referrer on both registries, the .att tag).
#
# Sourced at the end of test/supply/run.sh: it reuses its registries (REG_ADDR: distribution
# 2.8, fallback tag; FERRO_ADDR: ferro-oci-server, referrers API), its project, keys and
# helpers (ocibuild, manifest, blob, fallback_tag, one_line_error).

section "supply: SLSA provenance, signed (DSSE) and attached on distribution 2.8"
prov_py=$tools/venv/bin/python
check "in-toto and in-toto-attestation are installed" "$prov_py" -c 'import in_toto, in_toto_attestation'
prov_check() { "$prov_py" "$root/test/supply/provenance_check.py" "$@"; }
sde=1700000000
sde_time=2023-11-14T22:13:20Z

# attestation ADDR REPO DIGEST N OUT: the Nth layer of the image's .att manifest, fetched
# with curl to OUT/envelope.json; in-toto verifies it with sec1.pub and writes the PAE bytes,
# which openssl verifies; the statement inside passes in-toto-attestation's checks.
attestation() {
    local addr=$1 repo=$2 digest=$3 n=$4 out=$5 att layer
    mkdir -p "$out"
    att=$(manifest "$addr" "$repo" "$(fallback_tag "$digest").att") || { echo "no .att manifest"; return 1; }
    layer=$(jq -c ".layers[$n]" <<<"$att")
    [ "$(jq -r .mediaType <<<"$layer")" = application/vnd.dsse.envelope.v1+json ] || { echo "layer $n: $layer"; return 1; }
    [ "$(jq -r '.annotations.predicateType' <<<"$layer")" = https://slsa.dev/provenance/v1 ] || { echo "layer $n: $layer"; return 1; }
    blob "$addr" "$repo" "$(jq -r .digest <<<"$layer")" >"$out/envelope.json" || { echo "no envelope blob"; return 1; }
    prov_check envelope "$out/envelope.json" "$keys/sec1.pub" "$out" || return 1
    openssl dgst -sha256 -verify "$keys/sec1.pub" -signature "$out/sig.der" "$out/pae.bin" || return 1
    prov_check statement "$out/payload.json" "$addr/$repo" "$digest"
}

# referrer_envelope ADDR REPO MANIFEST_DIGEST OUT: the in-toto referrer's envelope, checked
# as `attestation' checks a .att layer.
referrer_envelope() {
    local addr=$1 repo=$2 ref=$3 subject=$4 out=$5 art
    mkdir -p "$out"
    art=$(manifest "$addr" "$repo" "$ref") || { echo "no referrer manifest $ref"; return 1; }
    [ "$(jq -r .artifactType <<<"$art")" = application/vnd.in-toto+json ] || { echo "artifactType: $art"; return 1; }
    [ "$(jq -r .subject.digest <<<"$art")" = "$subject" ] || { echo "subject: $art"; return 1; }
    [ "$(jq -r '.annotations["in-toto.io/predicate-type"]' <<<"$art")" = https://slsa.dev/provenance/v1 ] ||
        { echo "annotations: $art"; return 1; }
    blob "$addr" "$repo" "$(jq -r '.layers[0].digest' <<<"$art")" >"$out/envelope.json" || { echo "no envelope blob"; return 1; }
    prov_check envelope "$out/envelope.json" "$keys/sec1.pub" "$out" || return 1
    openssl dgst -sha256 -verify "$keys/sec1.pub" -signature "$out/sig.der" "$out/pae.bin" || return 1
    prov_check statement "$out/payload.json" "$addr/$repo" "$subject"
}

check "push signed, --provenance PATH (SOURCE_DATE_EPOCH)" run "$work/prov1.log" \
    ocibuild SOURCE_DATE_EPOCH=$sde --push "$REG_ADDR/prov" -t hello:1 --sign-key "$keys/sec1.pem" \
    --provenance "$work/provenance.json"
check_contains "the output says where the provenance went" "Provenance attached to $REG_ADDR/prov/hello@sha256:" \
    "$(cat "$work/prov1.log")"
pd=$(digest_of "$REG_ADDR/prov/hello:1" 2>/dev/null || echo none)
check "--provenance: in-toto-attestation accepts the statement (subject: the pushed manifest)" \
    prov_check statement "$work/provenance.json" "$REG_ADDR/prov/hello" "$pd"
stmt=$(cat "$work/provenance.json" 2>/dev/null || echo '{}')
pred() { jq -c ".predicate$1" <<<"$stmt" 2>&1; }
check_eq "buildType: ours, versioned" '"https://github.com/ocibuild/ocibuild/blob/main/docs/buildtype/v1.md"' \
    "$(pred .buildDefinition.buildType)"
check_eq "externalParameters: release, tags, platforms, base, compression" \
    "{\"base\":\"$REG_ADDR/base:1\",\"compression\":\"auto\",\"platforms\":[],\"release\":{\"name\":\"hello_elixir\",\"version\":\"0.1.0\"},\"tags\":[\"hello:1\"]}" \
    "$(pred .buildDefinition.externalParameters)"
deps=$(pred .buildDefinition.resolvedDependencies)
check_eq "the base image by the digest the registry served" "\"${base_digest#sha256:}\"" \
    "$(jq -c --arg n "$REG_ADDR/base:1" '.[] | select(.name == $n) | .digest.sha256' <<<"$deps" 2>&1)"
check_eq "the source repository at its commit" "{\"gitCommit\":\"$commit\"}" \
    "$(jq -c '.[] | select(.name == "source") | .digest' <<<"$deps" 2>&1)"
check_eq "the source repository URI" '"git+https://github.com/acme/hello"' \
    "$(jq -c '.[] | select(.name == "source") | .uri' <<<"$deps" 2>&1)"
check_eq "the hex dependency with the lock's sha256" \
    '{"digest":{"sha256":"fbb01ecdfd565b56261302f7e1fcc27c4fb8f32d56eab74db621fc154604a7a1"},"name":"jason","uri":"pkg:hex/jason@1.4.1"}' \
    "$(jq -c '.[] | select(.name == "jason")' <<<"$deps" 2>&1)"
check_eq "the git dependency at its commit" '{"gitCommit":"0123456789abcdef0123456789abcdef01234567"}' \
    "$(jq -c '.[] | select(.name == "tiny_dep") | .digest' <<<"$deps" 2>&1)"
check_eq "ERTS" "\"pkg:otp/erts@$erts_vsn\"" "$(jq -c '.[] | select(.name == "erts") | .uri' <<<"$deps" 2>&1)"
check_eq "runDetails: the local builder, both times SOURCE_DATE_EPOCH" \
    "{\"builder\":\"https://github.com/ocibuild/ocibuild/blob/main/docs/buildtype/v1.md#local-builder\",\"finishedOn\":\"$sde_time\",\"invocationId\":null,\"startedOn\":\"$sde_time\"}" \
    "$(jq -S -c '.predicate.runDetails | {builder: .builder.id, startedOn: .metadata.startedOn, finishedOn: .metadata.finishedOn, invocationId: .metadata.invocationId}' <<<"$stmt" 2>&1)"

check "the .att tag: one envelope; in-toto and openssl verify it; its statement is valid" \
    attestation "$REG_ADDR" prov/hello "$pd" 0 "$work/att0"
check "the signed statement is the --provenance file" cmp "$work/att0/payload.json" "$work/provenance.json"
# The checks can fail: another subject digest, an unknown field, a changed payload, another key.
check "the checker refuses another subject digest" bash -c \
    '! "$0" "$1" statement "$2" "$3" "sha256:$(printf %064d 0)" 2>/dev/null' "$prov_py" "$root/test/supply/provenance_check.py" \
    "$work/provenance.json" "$REG_ADDR/prov/hello"
jq -c '.predicate.buildDefinition.extra = 1' "$work/provenance.json" >"$work/prov-unknown.json" 2>/dev/null || true
check "the checker refuses a field the SLSA proto does not have" bash -c \
    '! "$0" "$1" statement "$2" "$3" "$4" 2>/dev/null' "$prov_py" "$root/test/supply/provenance_check.py" \
    "$work/prov-unknown.json" "$REG_ADDR/prov/hello" "$pd"
mkdir -p "$work/tampered"
jq -c --arg p "$(jq -c '.predicate.buildDefinition.externalParameters.tags = ["evil:1"]' "$work/provenance.json" | base64 -w0)" \
    '.payload = $p' "$work/att0/envelope.json" >"$work/tampered/envelope.json" 2>/dev/null || true
check "in-toto refuses a changed payload" bash -c '! "$0" "$1" envelope "$2" "$3" "$4" 2>/dev/null' \
    "$prov_py" "$root/test/supply/provenance_check.py" "$work/tampered/envelope.json" "$keys/sec1.pub" "$work/tampered"
pae_tampered() {
    local payload
    payload=$(jq -r .payload "$work/tampered/envelope.json" | base64 -d)
    printf 'DSSEv1 28 application/vnd.in-toto+json %d %s' "${#payload}" "$payload" >"$work/tampered/pae.bin"
    ! openssl dgst -sha256 -verify "$keys/sec1.pub" -signature "$work/att0/sig.der" "$work/tampered/pae.bin" >/dev/null 2>&1
}
check "openssl refuses the signature over a changed payload's PAE" pae_tampered
check "in-toto refuses another key" bash -c '! "$0" "$1" envelope "$2" "$3" "$4" 2>/dev/null' \
    "$prov_py" "$root/test/supply/provenance_check.py" "$work/att0/envelope.json" "$keys/pkcs8.pub" "$work/tampered"
index=$(manifest "$REG_ADDR" prov/hello "$(fallback_tag "$pd")" 2>/dev/null || echo '{}')
check_eq "the fallback index lists the SBOM and the provenance" \
    '["application/spdx+json","application/vnd.in-toto+json"]' \
    "$(jq -c '[.manifests[].artifactType] | sort' <<<"$index" 2>&1)"
ref=$(jq -r '.manifests[] | select(.artifactType == "application/vnd.in-toto+json") | .digest' <<<"$index" 2>/dev/null | head -n 1)
check "the in-toto referrer: subject, envelope verified (in-toto, openssl), statement valid" \
    referrer_envelope "$REG_ADDR" prov/hello "$ref" "$pd" "$work/ref0"
check "the referrer and the .att carry the same envelope" cmp "$work/ref0/envelope.json" "$work/att0/envelope.json"

section "supply: provenance appended, never replaced, never repeated"
check "the same image pushed again with one more tag" run "$work/prov2.log" \
    ocibuild SOURCE_DATE_EPOCH=$sde --push "$REG_ADDR/prov" -t hello:1 -t hello:again --sign-key "$keys/sec1.pem"
check_eq "the image did not change" "$pd" "$(digest_of "$REG_ADDR/prov/hello:again" 2>&1)"
check_eq "the .att image has two envelope layers" 2 \
    "$(manifest "$REG_ADDR" prov/hello "$(fallback_tag "$pd").att" 2>/dev/null | jq '.layers | length' 2>&1)"
check "the first is kept as it was" attestation "$REG_ADDR" prov/hello "$pd" 0 "$work/att1"
check "the first is the first push's" cmp "$work/att1/envelope.json" "$work/att0/envelope.json"
check "the second verifies too" attestation "$REG_ADDR" prov/hello "$pd" 1 "$work/att2"
check_eq "the second states both tags" '["hello:1","hello:again"]' \
    "$(jq -c .predicate.buildDefinition.externalParameters.tags "$work/att2/payload.json" 2>&1)"
check_eq "two in-toto referrers in the fallback index" 2 \
    "$(manifest "$REG_ADDR" prov/hello "$(fallback_tag "$pd")" 2>/dev/null | jq '[.manifests[] | select(.artifactType == "application/vnd.in-toto+json")] | length' 2>&1)"
check "the same push once more" run "$work/prov3.log" \
    ocibuild SOURCE_DATE_EPOCH=$sde --push "$REG_ADDR/prov" -t hello:1 -t hello:again --sign-key "$keys/sec1.pem"
check_eq "adds no duplicate layer" 2 \
    "$(manifest "$REG_ADDR" prov/hello "$(fallback_tag "$pd").att" 2>/dev/null | jq '.layers | length' 2>&1)"

section "supply: provenance in CI (GitHub Actions variables), and without a key"
check "push with GITHUB_* variables" run "$work/prov-gh.log" \
    ocibuild GITHUB_ACTIONS=true GITHUB_SERVER_URL=https://github.example GITHUB_REPOSITORY=acme/from-ci \
    GITHUB_RUN_ID=77 GITHUB_RUN_ATTEMPT=3 RUNNER_ENVIRONMENT=github-hosted \
    --push "$REG_ADDR/prov-ci" -t hello:1 --sign-key "$keys/sec1.pem" --provenance "$work/prov-gh.json"
check_eq "builder id and invocation id from the variables" \
    '{"builder":"https://github.com/actions/runner/github-hosted","invocationId":"https://github.example/acme/from-ci/actions/runs/77/attempts/3"}' \
    "$(jq -c '.predicate.runDetails | {builder: .builder.id, invocationId: .metadata.invocationId}' "$work/prov-gh.json" 2>&1)"
check "without SOURCE_DATE_EPOCH the statement is valid too (startedOn <= finishedOn)" \
    prov_check statement "$work/prov-gh.json" "$REG_ADDR/prov-ci/hello" "$(digest_of "$REG_ADDR/prov-ci/hello:1" 2>/dev/null)"
check "a push without a key writes --provenance" run "$work/prov-nokey.log" \
    ocibuild --push "$REG_ADDR/prov-nokey" -t hello:1 --provenance "$work/prov-nokey.json"
nk=$(digest_of "$REG_ADDR/prov-nokey/hello:1" 2>/dev/null || echo none)
check "... a valid statement" prov_check statement "$work/prov-nokey.json" "$REG_ADDR/prov-nokey/hello" "$nk"
check_eq "... and attaches nothing unsigned (no .att tag)" 404 \
    "$(curl -s -o /dev/null -w '%{http_code}' "http://$REG_ADDR/v2/prov-nokey/hello/manifests/$(fallback_tag "$nk").att")"
one_line_error "--provenance without --push" "--push" ocibuild -t hello:1 --provenance "$work/nopush.json"
check "... wrote nothing" test ! -e "$work/nopush.json"
mkdir -p "$work/prov-dir"
one_line_error "--provenance naming a directory, refused before the build" "$work/prov-dir" \
    ocibuild --push "$REG_ADDR/prov-bad" -t hello:1 --provenance "$work/prov-dir"
check_eq "... nothing pushed" 404 \
    "$(curl -s -o /dev/null -w '%{http_code}' "http://$REG_ADDR/v2/prov-bad/hello/manifests/1")"

section "supply: provenance on ferro-oci-server (referrers API)"
check "push signed to ferro-oci-server" run "$work/prov-ferro.log" \
    ocibuild SOURCE_DATE_EPOCH=$sde --push "$FERRO_ADDR/prov" -t hello:1 --sign-key "$keys/sec1.pem"
check_contains "the output says the registry lists it" "Provenance attached to $FERRO_ADDR/prov/hello@sha256:" \
    "$(grep Provenance "$work/prov-ferro.log" | grep 'referrers API')"
fd=$(digest_of "$FERRO_ADDR/prov/hello:1" 2>/dev/null || echo none)
listing=$(curl -sf "http://$FERRO_ADDR/v2/prov/hello/referrers/$fd" 2>&1) || true
check_eq "GET /referrers lists the SBOM and the provenance" '["application/spdx+json","application/vnd.in-toto+json"]' \
    "$(jq -c '[.manifests[].artifactType] | sort' <<<"$listing" 2>&1)"
ref=$(jq -r '.manifests[] | select(.artifactType == "application/vnd.in-toto+json") | .digest' <<<"$listing" 2>/dev/null | head -n 1)
check "the in-toto referrer verifies (in-toto, openssl), its statement is valid" \
    referrer_envelope "$FERRO_ADDR" prov/hello "$ref" "$fd" "$work/ferro-ref"
check "the .att tag is there too and verifies" attestation "$FERRO_ADDR" prov/hello "$fd" 0 "$work/ferro-att"

section "supply: provenance of a multi-platform push, one per platform manifest"
for d in $(jq -r '.manifests[].digest' <<<"$multi" 2>/dev/null); do
    check "platform manifest ${d:7:12}: its own attestation verifies" \
        attestation "$REG_ADDR" multi/hello "$d" 0 "$work/multi-att-${d:7:12}"
    check_eq "platform manifest ${d:7:12}: the statement names its platform" \
        "$(jq -r --arg d "$d" '.manifests[] | select(.digest == $d) | .platform | "\(.os)/\(.architecture)"' <<<"$multi" 2>&1)" \
        "$(jq -r .predicate.buildDefinition.internalParameters.platform "$work/multi-att-${d:7:12}/payload.json" 2>&1)"
done
check_eq "nothing attested on the index (it is signed)" 404 \
    "$(curl -s -o /dev/null -w '%{http_code}' "http://$REG_ADDR/v2/multi/hello/manifests/$(fallback_tag "$index_digest").att")"
