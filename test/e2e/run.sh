#!/usr/bin/env bash
# End-to-end tests: images built through the Erlang API are read by tools we did not write.
#
#   bash test/e2e/run.sh        (as root; needs skopeo, umoci, podman, runc, jq, zstd, busybox-static,
#                                docker.io for dockerd, python3)
#
# build_images.escript writes tarballs and layout directories into a temp dir; each check
# below is one assertion against what skopeo, umoci, podman, tar, gzip, zstd and sha256sum
# make of them. Nothing leaves this machine: podman keeps its images in the temp dir and the
# containers run with --network=none. Set OCIBUILD_EBIN to test an already compiled ebin
# directory instead of running `rebar3 compile`.
set -euo pipefail
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
root=$(CDPATH='' cd -- "$here/../.." && pwd)
source "$root/scripts/common.sh"
source "$root/test/support/assert.sh"

work=$(mktemp -d "${TMPDIR:-/tmp}/ocibuild-e2e.XXXXXX")
source "$root/test/support/podman.sh"
cleanup() {
    podman_clean
    rm -rf "$work"
}
trap cleanup EXIT

export OCIBUILD_CACHE_DIR=$work/cache
# The default build (not the reproducibility section) must not inherit a caller's epoch.
unset SOURCE_DATE_EPOCH
# skopeo's default signature policy comes from the machine; these tests are about formats.
skopeo_() { skopeo --insecure-policy "$@"; }

if [ -z "${OCIBUILD_EBIN:-}" ]; then
    (cd "$root" && rebar3 compile >"$work/rebar3-compile.log" 2>&1) ||
        { cat "$work/rebar3-compile.log"; die "rebar3 compile failed"; }
    export OCIBUILD_EBIN=$root/_build/default/lib/ocibuild/ebin
fi

src=$work/src
out=$work/out
mkdir -p "$src" "$out"
printf '#!/bin/sh\necho "run.sh says hi"\n' >"$src/run.sh"
printf 'data file\n' >"$src/data.txt"
# Several MiB of text: several compression blocks, so parallel gzip output is read by others.
seq 1 700000 >"$src/numbers.txt"
chmod 0755 "$src/run.sh"
chmod 0644 "$src/data.txt" "$src/numbers.txt"

build() { escript "$here/build_images.escript" "$@"; }

section "e2e: build images with the Erlang API"
check "build_images.escript all" build all "$src" "$out"
[ -f "$out/app-docker.tar.gz" ] || { summary e2e || true; die "the images were not built"; }

arch=$(dpkg --print-architecture)
long_path=srv/$(printf 'd%.0s' {1..60})/$(printf 'e%.0s' {1..50})/long-name.txt
pax_path=srv/$(printf 'f%.0s' {1..150}).txt

section "e2e: the saved tarball (docker format)"
tarball=$out/app-docker.tar.gz
check "gzip -t accepts the tarball" gzip -t "$tarball"
listing=$(tar -tzf "$tarball")
for entry in oci-layout index.json manifest.json blobs/sha256/; do
    check_contains "tarball holds $entry" "$entry" "$listing"
done
mkdir -p "$work/x/app-docker"
tar -xzf "$tarball" -C "$work/x/app-docker"
check_eq "manifest.json RepoTags" '["e2e-app:1.0"]' "$(jq -c '.[0].RepoTags' "$work/x/app-docker/manifest.json")"
check_eq "index.json ref.name annotation" "e2e-app:1.0" \
    "$(jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]' "$work/x/app-docker/index.json")"
check "every digest, size and diff_id in the tarball's layout" bash "$here/validate_layout.sh" "$work/x/app-docker"
manifest_digest=$(jq -r '.manifests[0].digest' "$work/x/app-docker/index.json")

# skopeo 1.9 (Debian 12) cannot read a compressed docker-archive: it fails with "loading tar
# component manifest.json: unexpected EOF" on gzip(1)'s own output too. docker load and podman
# load take the gzipped file (checked below); skopeo's docker-archive checks read the same tar
# decompressed.
gunzip -c "$tarball" >"$work/app-docker.tar"
inspect=$(skopeo_ inspect "docker-archive:$work/app-docker.tar" 2>&1) || true
check_eq "skopeo inspect docker-archive: architecture" "$arch" "$(jq -r .Architecture <<<"$inspect" 2>&1)"
check_eq "skopeo inspect docker-archive: env" '["LANG=C.UTF-8","PORT=9090"]' "$(jq -c .Env <<<"$inspect" 2>&1)"
check_eq "skopeo inspect docker-archive: label" "core" "$(jq -r '.Labels["org.example.team"]' <<<"$inspect" 2>&1)"
check_eq "skopeo inspect docker-archive: one layer" "1" "$(jq '.Layers | length' <<<"$inspect" 2>&1)"
# The docker tarball is also an OCI layout, so the oci-archive transport reads it as well.
check_eq "skopeo inspect oci-archive: reads the docker-format tarball" "$manifest_digest" \
    "$(skopeo_ inspect "oci-archive:$tarball" 2>&1 | jq -r .Digest 2>&1)"
check "skopeo copy docker-archive: -> oci: (verifies every blob)" \
    skopeo_ copy -q "docker-archive:$work/app-docker.tar" "oci:$work/copy-docker:app"
check "skopeo copy oci-archive: -> dir:" skopeo_ copy -q "oci-archive:$tarball" "dir:$work/copy-dir"

section "e2e: the saved tarball (oci format)"
oci_tarball=$out/app-oci.tar.gz
check "oci format has no manifest.json" bash -c "! tar -tzf '$oci_tarball' | grep -x manifest.json >/dev/null"
check_eq "skopeo inspect oci-archive:PATH:TAG finds the tag" "$manifest_digest" \
    "$(skopeo_ inspect "oci-archive:$oci_tarball:e2e-app:1.0" 2>&1 | jq -r .Digest 2>&1)"
check "skopeo copy oci-archive: -> oci:" skopeo_ copy -q "oci-archive:$oci_tarball" "oci:$work/copy-oci:app"
mkdir -p "$work/x/app-oci"
tar -xzf "$oci_tarball" -C "$work/x/app-oci"
check "every digest, size and diff_id in the oci tarball" bash "$here/validate_layout.sh" "$work/x/app-oci"

section "e2e: the exported layout directory"
layout=$out/app-layout
check_eq "oci-layout version" "1.0.0" "$(jq -r .imageLayoutVersion "$layout/oci-layout")"
check "every digest, size and diff_id in the exported layout" bash "$here/validate_layout.sh" "$layout"
# Export and save write the same image: the same manifest, so the same digest.
check_eq "skopeo inspect oci:DIR gives the saved manifest's digest" "$manifest_digest" \
    "$(skopeo_ inspect "oci:$layout" 2>&1 | jq -r .Digest 2>&1)"
raw=$(skopeo_ inspect --raw "oci:$layout" 2>&1) || true
check_eq "manifest annotation" "0.1.0" "$(jq -r '.annotations["org.opencontainers.image.version"]' <<<"$raw" 2>&1)"
check_eq "layer media type (gzip)" "application/vnd.oci.image.layer.v1.tar+gzip" "$(jq -r '.layers[0].mediaType' <<<"$raw" 2>&1)"
config=$(skopeo_ inspect --config "oci:$layout" 2>&1) || true
check_eq "config history names ocibuild" "1" "$(jq '[.history[] | select(.created_by | test("ocibuild"))] | length' <<<"$config" 2>&1)"
check_eq "config exposed ports" '["53/udp","8080/tcp"]' "$(jq -c '.config.ExposedPorts | keys' <<<"$config" 2>&1)"
check "skopeo copy oci:DIR -> dir: (verifies every blob)" skopeo_ copy -q "oci:$layout" "dir:$work/copy-layout"
# umoci needs a tagged layout: re-tag with skopeo, which copies our compressed blobs unchanged.
check "skopeo copy oci:DIR -> oci:DIR:TAG for umoci" skopeo_ copy -q "oci:$layout" "oci:$work/tagged:e2e"
check_eq "the re-tagged layout keeps our layer blob" "$(jq -r '.layers[0].digest' <<<"$raw" 2>&1)" \
    "$(skopeo_ inspect --raw "oci:$work/tagged:e2e" 2>&1 | jq -r '.layers[0].digest' 2>&1)"

section "e2e: umoci unpack"
# The OCI tarball's own layout carries the tag, so umoci reads our bytes directly.
check "umoci unpack (saved oci tarball, tag from index.json)" \
    umoci unpack --image "$work/x/app-oci:e2e-app:1.0" "$work/bundle"
check "umoci unpack (exported layout, re-tagged)" umoci unpack --image "$work/tagged:e2e" "$work/bundle2"
rootfs=$work/bundle/rootfs
mode() { stat -c %a "$1" 2>&1; }
check_eq "run.sh mode 0755" "755" "$(mode "$rootfs/app/bin/run.sh")"
check "run.sh content" cmp "$src/run.sh" "$rootfs/app/bin/run.sh"
check_eq "data.txt mode 0644" "644" "$(mode "$rootfs/app/etc/data.txt")"
check "data.txt content" cmp "$src/data.txt" "$rootfs/app/etc/data.txt"
check_eq "secret mode 0600" "600" "$(mode "$rootfs/app/etc/secret")"
check_eq "secret content (binary input)" "s3cret" "$(cat "$rootfs/app/etc/secret" 2>&1)"
check "numbers.txt content (several MiB, streamed from disk)" cmp "$src/numbers.txt" "$rootfs/app/share/numbers.txt"
check_eq "implied parent directory mode 0755" "755 755" "$(mode "$rootfs/app") $(mode "$rootfs/app/bin")"
check_eq "files owned by uid 0" "0:0" "$(stat -c %u:%g "$rootfs/app/bin/run.sh" 2>&1)"
check_eq "${#long_path}-byte path" "long path" "$(cat "$rootfs/$long_path" 2>&1)"
check_eq "${#pax_path}-byte path with a 154-byte name (PAX)" "pax path" "$(cat "$rootfs/$pax_path" 2>&1)"
check "both bundles hold the same files" diff -r "$rootfs" "$work/bundle2/rootfs"
runtime=$(cat "$work/bundle/config.json")
check_eq "config.json process.args = entrypoint + cmd" '["/app/bin/run.sh","--port","9090"]' \
    "$(jq -c .process.args <<<"$runtime")"
check_eq "config.json env (PORT replaced in place)" "LANG=C.UTF-8 PORT=9090" \
    "$(jq -r '[.process.env[] | select(startswith("LANG=") or startswith("PORT="))] | join(" ")' <<<"$runtime")"
check_eq "config.json cwd" "/app" "$(jq -r .process.cwd <<<"$runtime")"
check_eq "config.json user" "1000:1000" "$(jq -r '"\(.process.user.uid):\(.process.user.gid)"' <<<"$runtime")"
check_eq "config.json label" "core" "$(jq -r '.annotations["org.example.team"]' <<<"$runtime")"
check_eq "config.json exposed ports" "8080/tcp,53/udp" \
    "$(jq -r '.annotations["org.opencontainers.image.exposedPorts"] | split(",") | sort | reverse | join(",")' <<<"$runtime")"
check_eq "layer mtimes are 0 without SOURCE_DATE_EPOCH" "1970-01-01 00:00:00" \
    "$(TZ=UTC tar -tvzf "$(find "$layout"/blobs/sha256 -type f -printf '%s %p\n' | sort -rn | head -n 1 | cut -d' ' -f2-)" --full-time | awk '{print $4, $5}' | sort -u)"

section "e2e: podman load and run"
check "podman load -i (oci format)" podman_ load -q -i "$oci_tarball"
check_contains "podman names the oci-format image from its ref.name" "e2e-app:1.0" \
    "$(podman_ images --format '{{.Repository}}:{{.Tag}}' 2>&1)"
podman_ rmi --all --force >/dev/null 2>&1 || true
check "podman load -i (docker format)" podman_ load -q -i "$tarball"
image=$(podman_ image inspect localhost/e2e-app:1.0 2>&1) || true
check_eq "podman image inspect: tag" '["localhost/e2e-app:1.0"]' "$(jq -c '.[0].RepoTags' <<<"$image" 2>&1)"
check_eq "podman image inspect: entrypoint" '["/app/bin/run.sh"]' "$(jq -c '.[0].Config.Entrypoint' <<<"$image" 2>&1)"
check_eq "podman image inspect: workdir and user" "/app 1000:1000" \
    "$(jq -r '.[0].Config | "\(.WorkingDir) \(.User)"' <<<"$image" 2>&1)"
check_eq "podman image inspect: digest" "$manifest_digest" "$(jq -r '.[0].Digest' <<<"$image" 2>&1)"
check "podman load -i (busybox image)" podman_ load -q -i "$out/busybox.tar.gz"
check_eq "podman run: the scratch image runs its cmd" "hello from ocibuild" \
    "$(podman_ run --rm --network=none localhost/e2e-busybox:1.0 2>&1)"
check_eq "podman run: env and workdir reach the process" "hi-from-env /etc" \
    "$(podman_ run --rm --network=none localhost/e2e-busybox:1.0 sh -c 'echo $GREETING $(pwd)' 2>&1)"

section "e2e: zstd layers (copy/3, compression auto)"
zraw=$(skopeo_ inspect --raw "oci:$out/zstd-layout" 2>&1) || true
check_eq "layer media type (zstd)" "application/vnd.oci.image.layer.v1.tar+zstd" "$(jq -r '.layers[0].mediaType' <<<"$zraw" 2>&1)"
check "every digest, size and diff_id (zstd -d)" bash "$here/validate_layout.sh" "$out/zstd-layout"
check_eq "zstd layer lists copied files with modes" "-rwxr-xr-x opt/busybox -rw-r--r-- opt/hello.txt" \
    "$(zstd -dcq "$out/zstd-layout/blobs/sha256/$(jq -r '.layers[0].digest | ltrimstr("sha256:")' <<<"$zraw")" |
        tar -tvf - | awk '$1 !~ /^d/ {printf "%s %s ", $1, $6}' | sed 's/ $//')"
gunzip -c "$out/zstd.tar.gz" >"$work/zstd.tar"
check "skopeo copy docker-archive: (zstd) -> oci:" skopeo_ copy -q "docker-archive:$work/zstd.tar" "oci:$work/copy-zstd:z"
check "podman load -i (zstd image)" podman_ load -q -i "$out/zstd.tar.gz"
check_eq "podman run: the zstd image runs" "hello from zstd" \
    "$(podman_ run --rm --network=none localhost/e2e-zstd:1.0 2>&1)"

section "e2e: multi-platform"
platforms='["linux/amd64","linux/arm64"]'
list_platforms='[.manifests[].platform | "\(.os)/\(.architecture)"] | sort'
for t in multi-oci multi-docker; do
    index=$(skopeo_ inspect --raw "oci-archive:$out/$t.tar.gz" 2>&1) || true
    check_eq "skopeo inspect --raw oci-archive: ($t) is an index" "application/vnd.oci.image.index.v1+json" \
        "$(jq -r .mediaType <<<"$index" 2>&1)"
    check_eq "skopeo inspect --raw oci-archive: ($t) lists two platforms" "$platforms" "$(jq -c "$list_platforms" <<<"$index" 2>&1)"
done
for a in amd64 arm64; do
    check_eq "skopeo inspect --override-arch $a" "$a" \
        "$(skopeo_ inspect --override-os linux --override-arch "$a" "oci-archive:$out/multi-oci.tar.gz" 2>&1 | jq -r .Architecture 2>&1)"
done
check_eq "docker manifest.json: one entry per platform, tag on the first" '[["e2e-multi:1.0"],[]]' \
    "$(tar -xzOf "$out/multi-docker.tar.gz" manifest.json | jq -c '[.[].RepoTags]' 2>&1)"
check "skopeo copy --all oci-archive: -> oci:" skopeo_ copy -q --all "oci-archive:$out/multi-oci.tar.gz" "oci:$work/copy-multi:m"
check_eq "the copy keeps both platforms" "$platforms" \
    "$(skopeo_ inspect --raw "oci:$work/copy-multi:m" 2>&1 | jq -c "$list_platforms" 2>&1)"
check "every digest, size and diff_id in the exported multi-platform layout" \
    bash "$here/validate_layout.sh" "$out/multi-layout"
check_eq "skopeo inspect --raw oci:DIR (multi) lists two platforms" "$platforms" \
    "$(skopeo_ inspect --raw "oci:$out/multi-layout" 2>&1 | jq -c "$list_platforms" 2>&1)"

section "e2e: reproducibility"
epoch=1700000000
for run in 1 2; do
    mkdir -p "$work/repro$run" "$work/plain$run"
    check "SOURCE_DATE_EPOCH build $run (fresh blob store)" env SOURCE_DATE_EPOCH=$epoch \
        OCIBUILD_CACHE_DIR="$work/repro$run/cache" escript "$here/build_images.escript" repro "$src" "$work/repro$run"
    check "default build $run (fresh blob store)" env OCIBUILD_CACHE_DIR="$work/plain$run/cache" \
        escript "$here/build_images.escript" repro "$src" "$work/plain$run"
done
check "with SOURCE_DATE_EPOCH two saves are byte-identical" cmp "$work/repro1/app.tar.gz" "$work/repro2/app.tar.gz"
mkdir -p "$work/x/repro" "$work/x/plain1" "$work/x/plain2"
tar -xzf "$work/repro1/app.tar.gz" -C "$work/x/repro"
config_of() { cat "$1/blobs/sha256/$(jq -r '.[0].Config | ltrimstr("blobs/sha256/")' "$1/manifest.json")"; }
check_eq "config created = SOURCE_DATE_EPOCH" "2023-11-14T22:13:20Z" "$(config_of "$work/x/repro" | jq -r .created)"
check_eq "layer mtimes = SOURCE_DATE_EPOCH" "2023-11-14 22:13:20" \
    "$(TZ=UTC tar -tvzf "$work/x/repro/$(jq -r '.[0].Layers[0]' "$work/x/repro/manifest.json")" --full-time | awk '{print $4, $5}' | sort -u)"
tar -xzf "$work/plain1/app.tar.gz" -C "$work/x/plain1"
tar -xzf "$work/plain2/app.tar.gz" -C "$work/x/plain2"
check_eq "without SOURCE_DATE_EPOCH layer digests are identical" \
    "$(jq -c '.[0].Layers' "$work/x/plain1/manifest.json")" "$(jq -c '.[0].Layers' "$work/x/plain2/manifest.json")"
check_eq "without SOURCE_DATE_EPOCH the layer matches the first build's" \
    "$(jq -c '.[0].Layers' "$work/x/plain1/manifest.json")" "$(jq -c '.[0].Layers' "$work/x/app-docker/manifest.json")"

# .tar and .tar.gz (stored layers) read by gzip, tar, Python, erl_tar, skopeo, podman and docker.
source "$here/readers.sh"

summary e2e
