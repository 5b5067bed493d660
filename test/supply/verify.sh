# shellcheck shell=bash disable=SC2154
# (SC2154: $work, $keys, $ex, $here and the registries are test/supply/run.sh's, which sources this file.)
# The built-in verifier (`mix ocibuild.verify`, `rebar3 ocibuild --verify`) on signed pushes,
# on distribution 2.8 (referrers by the fallback tag) and ferro-oci-server (referrers API).
# Sourced at the end of test/supply/run.sh: its registries, keys ($keys), project ($ex) and
# helpers (ocibuild, manifest, blob, fallback_tag, one_line_error) are this file's too.
#
# A signed push attaches its cosign signature, SBOM referrer and provenance (a `.att` layer and
# an in-toto referrer). Each way to break a push must
# make both tasks exit 1 with one line naming what failed: another key, a tampered `.att`
# payload, a tampered `.sig` payload, no signature at all.
# shellcheck source=test/support/snapshot.sh
source "$root/test/support/snapshot.sh"

# mix_verify ARG...: `mix ocibuild.verify` in the project.
mix_verify() { (cd "$ex" && MIX_ENV=prod mix ocibuild.verify "$@"); }
# rebar_verify ARG...: `rebar3 ocibuild --verify` in the Erlang project.
rebar_verify() { (cd "$erl_verify" && rebar3 ocibuild --verify "$@"); }

# rebar_one_line_error NAME WORD ARG...: `rebar3 ocibuild --verify ARG...` exits 1 and its last
# line (rebar3 reports errors on stdout, as `===> ...`) names WORD; nothing on stderr.
rebar_one_line_error() {
    local name=$1 word=$2 status=0 last
    shift 2
    rebar_verify "$@" >"$work/err.out" 2>"$work/err.err" || status=$?
    check_eq "$name: exit status 1" 1 "$status"
    last=$(sed 's/\x1b\[[0-9;]*m//g' "$work/err.out" | grep -v '^[[:space:]]*$' | tail -n 1 || true)
    check_contains "$name: the last line is rebar3's error" "===> verification failed: " "$last"
    check_contains "$name: the line names the problem" "$word" "$last"
    check_eq "$name: nothing on stderr" "" "$(cat "$work/err.err")"
}

# upload ADDR REPO FILE: put FILE as a blob, print its digest.
upload() {
    local digest location
    digest=sha256:$(sha256sum <"$3" | cut -d' ' -f1)
    location=$(curl -sf -D - -o /dev/null -X POST "http://$1/v2/$2/blobs/uploads/" |
        tr -d '\r' | awk 'tolower($1) == "location:" { print $2 }')
    [[ "$location" == http* ]] || location=http://$1$location
    [[ "$location" == *\?* ]] && location=$location'&' || location=$location'?'
    curl -sf -X PUT --data-binary "@$3" -H 'Content-Type: application/octet-stream' \
        "${location}digest=$digest" >/dev/null && echo "$digest"
}
# put_manifest ADDR REPO TAG FILE
put_manifest() {
    curl -sf -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
        --data-binary "@$4" "http://$1/v2/$2/manifests/$3" >/dev/null
}
# tamper ADDR REPO TAG KIND: what someone with push access but without the key can do: the
# first layer's blob of the image at TAG replaced by a modified copy (the `.sig` payload names
# another repository; the `.att` envelope's statement another builder), the signature kept.
tamper() {
    local addr=$1 repo=$2 tag=$3 kind=$4 m old new
    m=$(manifest "$addr" "$repo" "$tag") || return 1
    old=$(jq -r '.layers[0].digest' <<<"$m")
    blob "$addr" "$repo" "$old" >"$work/tamper.orig" || return 1
    case $kind in
    sig) sed 's|"docker-reference":"[^"]*"|"docker-reference":"evil.example/forged"|' \
        "$work/tamper.orig" >"$work/tamper.new" ;;
    att) jq -c --arg p "$(jq -r .payload "$work/tamper.orig" | base64 -d |
        sed 's|"builder":{"id":"[^"]*"}|"builder":{"id":"https://evil.example/forged"}|; s|"buildType":"[^"]*"|"buildType":"https://evil.example/forged"|' |
        base64 -w0)" '.payload = $p' "$work/tamper.orig" >"$work/tamper.new" ;;
    esac
    cmp -s "$work/tamper.orig" "$work/tamper.new" && { echo "nothing changed"; return 1; }
    new=$(upload "$addr" "$repo" "$work/tamper.new") || return 1
    jq -c --arg d "$new" --argjson n "$(wc -c <"$work/tamper.new")" \
        '.layers[0].digest = $d | .layers[0].size = $n' <<<"$m" >"$work/tamper.manifest"
    put_manifest "$addr" "$repo" "$tag" "$work/tamper.manifest"
}

section "verify: an Erlang project for rebar3 ocibuild --verify"
erl_verify=$work/verify-erlang
check "git snapshot of the working tree (the plugin)" run "$work/verify-snapshot.log" \
    working_tree_snapshot "$root" "$work/verify-ocibuild.git"
example_project hello_erlang "$erl_verify" "file://$work/verify-ocibuild.git" \
    "$(git -C "$work/verify-ocibuild.git" rev-parse HEAD 2>/dev/null || echo none)"
check "rebar3 release (fetches the plugin)" run "$work/verify-rebar3-release.log" \
    bash -c "cd '$erl_verify' && rebar3 release"

for registry in distribution ferro; do
    case $registry in
    distribution) addr=$REG_ADDR ;;
    ferro) addr=$FERRO_ADDR ;;
    esac
    section "verify: a signed push on $registry"
    check "mix ocibuild --push --sign-key (verify/hello:1)" run "$work/verify-push-$registry.log" \
        ocibuild --push "$addr/verify" -t hello:1 --sign-key "$keys/sec1.pem"
    image=$(digest_of "$addr/verify/hello:1" 2>/dev/null || echo none)
    check "the push attached its own .att attestation (provenance)" \
        manifest "$addr" verify/hello "$(fallback_tag "$image").att"

    case $registry in
    distribution) listing=$(manifest "$addr" verify/hello "$(fallback_tag "$image")" 2>&1) ;;
    ferro) listing=$(curl -sf "http://$addr/v2/verify/hello/referrers/$image" 2>&1) ;;
    esac
    check_eq "$registry lists an SBOM and an in-toto referrer (fallback tag / referrers API)" \
        '["application/spdx+json","application/vnd.in-toto+json"]' \
        "$(jq -c '[.manifests[].artifactType] | sort' <<<"$listing" 2>&1)"
    check "mix ocibuild.verify: every check passes" run "$work/verify-mix-$registry.log" \
        mix_verify "$addr/verify/hello:1" --key "$keys/sec1.pub"
    out=$(cat "$work/verify-mix-$registry.log" 2>/dev/null)
    check_contains "the signature line" "ok   signature $image (.sig layer 1): verified with sec1.pub" "$out"
    check_contains "the .att attestation line" "ok   attestation $image (.att layer 1): https://slsa.dev/provenance/v1" "$out"
    check_contains "the in-toto referrer line" "ok   attestation $image (referrer sha256:" "$out"
    check_contains "the SBOM referrer names the image's packages" "ok   sbom $image (referrer sha256:" "$out"
    check_contains "... all of them" "names all" "$out"
    check_eq "no FAIL, no skip" 0 "$(grep -cE '^(FAIL|skip)' <<<"$out" || true)"
    check "mix ocibuild.verify by digest" run "$work/verify-mix-digest-$registry.log" \
        mix_verify "$addr/verify/hello@$image" --key "$keys/sec1.pub"
    check "rebar3 ocibuild --verify: every check passes" run "$work/verify-rebar3-$registry.log" \
        rebar_verify "$addr/verify/hello:1" --key "$keys/sec1.pub"
    check_contains "rebar3 prints the same lines" "ok   signature $image (.sig layer 1)" \
        "$(cat "$work/verify-rebar3-$registry.log" 2>/dev/null)"

    one_line_error "mix: another key" "signature does not verify with pkcs8.pub" \
        mix_verify "$addr/verify/hello:1" --key "$keys/pkcs8.pub"
    rebar_one_line_error "rebar3: another key" "signature does not verify with pkcs8.pub" \
        "$addr/verify/hello:1" --key "$keys/pkcs8.pub"
    one_line_error "mix: no --key" "--key" mix_verify "$addr/verify/hello:1"

    att_tag=$(fallback_tag "$image").att
    manifest "$addr" verify/hello "$att_tag" >"$work/att.orig" 2>/dev/null || true
    check "a tampered .att payload (curl)" tamper "$addr" verify/hello "$att_tag" att
    one_line_error "mix: a tampered attestation" "attestation $image (.att layer 1): signature does not verify with sec1.pub" \
        mix_verify "$addr/verify/hello:1" --key "$keys/sec1.pub"
    rebar_one_line_error "rebar3: a tampered attestation" "attestation $image (.att layer 1): signature does not verify" \
        "$addr/verify/hello:1" --key "$keys/sec1.pub"
    check "the .att put back" put_manifest "$addr" verify/hello "$att_tag" "$work/att.orig"
    check "a tampered .sig payload (curl)" tamper "$addr" verify/hello "$(fallback_tag "$image").sig" sig
    one_line_error "mix: a tampered signature" "signature $image (.sig layer 1): signature does not verify with sec1.pub" \
        mix_verify "$addr/verify/hello:1" --key "$keys/sec1.pub"
    rebar_one_line_error "rebar3: a tampered signature" "signature does not verify with sec1.pub" \
        "$addr/verify/hello:1" --key "$keys/sec1.pub"

    check "mix ocibuild --push, not signed (unsigned/hello:1)" run "$work/verify-unsigned-$registry.log" \
        ocibuild --push "$addr/unsigned" -t hello:1
    one_line_error "mix: no signature" "no signature" mix_verify "$addr/unsigned/hello:1" --key "$keys/sec1.pub"
    rebar_one_line_error "rebar3: no signature" "no signature" "$addr/unsigned/hello:1" --key "$keys/sec1.pub"
done

section "verify: the signed multi-platform push (multi/hello:1 on distribution)"
check "mix ocibuild.verify: the index's signature, each platform's SBOM" run "$work/verify-multi.log" \
    mix_verify "$REG_ADDR/multi/hello:1" --key "$keys/sec1.pub"
out=$(cat "$work/verify-multi.log" 2>/dev/null)
check_contains "the signature is the index's" "ok   signature $index_digest (.sig layer 1)" "$out"
for d in $(jq -r '.manifests[].digest' <<<"$multi" 2>/dev/null); do
    check_contains "platform manifest ${d:7:12}: its SBOM referrer" "ok   sbom $d (referrer" "$out"
done

section "verify: a saved tarball (only what it holds)"
check "mix ocibuild.verify on a saved tarball" run "$work/verify-tarball.log" \
    mix_verify "$work/sde1.tar.gz" --key "$keys/sec1.pub"
out=$(cat "$work/verify-tarball.log" 2>/dev/null)
check_contains "the signature is skipped, and says why" "skip signature sha256:" "$out"
check_contains "... a tarball holds none" "a saved tarball holds no signatures" "$out"
check_contains "the SBOM the image carries is checked" "ok   sbom sha256:" "$out"
one_line_error "mix: a tarball that is not there" "not found" \
    mix_verify "tar://$work/missing.tar.gz" --key "$keys/sec1.pub"
