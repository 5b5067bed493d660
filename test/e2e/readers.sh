# shellcheck shell=bash
# Sourced by test/e2e/run.sh (after its other sections): `save` writes a plain tar for a path
# ending in .tar and, for any other, one gzip file whose layer blobs are stored (deflate stored
# blocks) rather than recompressed. Every reader we know takes both: gzip, GNU tar, Python's
# tarfile, OTP's erl_tar, skopeo (docker-archive: and oci-archive:), podman load and docker
# load (a dockerd of our own, vfs storage, its own socket and data under $work).
# shellcheck disable=SC2154 # $work, $out, $src, $here and the helpers are run.sh's

readers=$out/readers
mkdir -p "$readers"

section "e2e: save as .tar and .tar.gz (stored layers): build"
check "build_images.escript readers" build readers "$src" "$readers"

section "e2e: save as .tar and .tar.gz: the bytes"
for name in app app-oci busybox zstd; do
    check "$name.tar is a plain tar (not gzip)" bash -c "! gzip -t '$readers/$name.tar' 2>/dev/null && tar -tf '$readers/$name.tar' >/dev/null"
    check "gzip -t accepts $name.tar.gz" gzip -t "$readers/$name.tar.gz"
    check "$name.tar.gz holds exactly $name.tar" cmp <(gunzip -c "$readers/$name.tar.gz") "$readers/$name.tar"
done
check "app.tgz is the same file as app.tar.gz" cmp "$readers/app.tgz" "$readers/app.tar.gz"
check_eq "tar -tzf and tar -tf list the same entries" "$(tar -tf "$readers/app.tar")" "$(tar -tzf "$readers/app.tar.gz" 2>&1)"
mkdir -p "$work/x/readers-tar"
tar -xf "$readers/app.tar" -C "$work/x/readers-tar"
check "every digest, size and diff_id in the plain tar" bash "$here/validate_layout.sh" "$work/x/readers-tar"
manifest_digest=$(jq -r '.manifests[0].digest' "$work/x/readers-tar/index.json")

# One gzip member (OTP's erl_tar reads no further than the first), the largest layer's bytes in
# the file as they are (stored, not deflated again), and the headers and JSON around them
# deflated: the file is smaller than the tar it holds.
stored_check() {
    python3 - "$1" <<'EOF'
import io, sys, tarfile, zlib
data = open(sys.argv[1], "rb").read()
d = zlib.decompressobj(16 + zlib.MAX_WBITS)
tar = d.decompress(data) + d.flush()
assert d.eof and d.unused_data == b"", "more than one gzip member"
with tarfile.open(fileobj=io.BytesIO(tar)) as t:
    blobs = [m for m in t.getmembers() if m.isfile() and m.name.startswith("blobs/")]
    layer = max(blobs, key=lambda m: m.size)
    head = t.extractfile(layer).read(60000)
assert layer.size > 65535, f"the largest blob is {layer.size} bytes: too small to span blocks"
assert head in data, "the largest layer is not stored verbatim"
assert len(data) < len(tar), f"{len(data)} bytes of gzip for a {len(tar)}-byte tar"
print(f"gzip {len(data)} bytes, tar {len(tar)} bytes, largest blob {layer.size} bytes stored")
EOF
}
for name in app zstd; do
    check "$name.tar.gz: one gzip member, the largest layer stored verbatim, the rest deflated" stored_check "$readers/$name.tar.gz"
done

# Python's tarfile reads each file through and every blob hashes to its name.
python_check() {
    python3 - "$1" "$2" <<'EOF'
import hashlib, json, sys, tarfile
with tarfile.open(sys.argv[1], sys.argv[2]) as t:
    n = 0
    for m in t.getmembers():
        if m.isfile() and m.name.startswith("blobs/sha256/"):
            h, f = hashlib.sha256(), t.extractfile(m)
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
            assert h.hexdigest() == m.name.rsplit("/", 1)[1], m.name
            n += 1
    json.load(t.extractfile("index.json"))
assert n >= 3, f"{n} blobs"
EOF
}
check "python tarfile (r:gz) reads app.tar.gz, every blob hashes to its name" python_check "$readers/app.tar.gz" r:gz
check "python tarfile (r:) reads app.tar, every blob hashes to its name" python_check "$readers/app.tar" r:
erl_tar_count() {
    erl -noshell -eval "{ok, Files} = erl_tar:extract(\"$1\", [$2 memory]),
        io:format(\"~b~n\", [length(Files)]), halt()." 2>&1
}
files_in_tar=$(tar -tf "$readers/app.tar" | grep -vc '/$')
check_eq "erl_tar (compressed) reads every file of app.tar.gz" "$files_in_tar" "$(erl_tar_count "$readers/app.tar.gz" compressed,)"
check_eq "erl_tar reads every file of app.tar" "$files_in_tar" "$(erl_tar_count "$readers/app.tar" '')"

section "e2e: save as .tar and .tar.gz: skopeo"
# skopeo 1.9 reads docker-archive: only uncompressed; a .tar path gives it that directly.
for f in app.tar app.tar.gz app-oci.tar app-oci.tar.gz; do
    check_eq "skopeo inspect oci-archive:$f gives the manifest's digest" "$manifest_digest" \
        "$(skopeo_ inspect "oci-archive:$readers/$f" 2>&1 | jq -r .Digest 2>&1)"
    check "skopeo copy oci-archive:$f -> oci: (verifies every blob)" \
        skopeo_ copy -q "oci-archive:$readers/$f" "oci:$work/readers-copy-${f//./-}:r"
done
check_eq "skopeo inspect docker-archive:app.tar: one layer" "1" \
    "$(skopeo_ inspect "docker-archive:$readers/app.tar" 2>&1 | jq '.Layers | length' 2>&1)"
check "skopeo copy docker-archive:app.tar -> oci: (verifies every blob)" \
    skopeo_ copy -q "docker-archive:$readers/app.tar" "oci:$work/readers-copy-docker:r"
check "skopeo copy docker-archive:zstd.tar -> oci:" \
    skopeo_ copy -q "docker-archive:$readers/zstd.tar" "oci:$work/readers-copy-zstd:r"

section "e2e: save as .tar and .tar.gz: podman load"
podman_ rmi --all --force >/dev/null 2>&1 || true
for f in app.tar app.tar.gz; do
    check "podman load -i $f" podman_ load -q -i "$readers/$f"
    check_eq "podman image inspect ($f): digest" "$manifest_digest" \
        "$(podman_ image inspect localhost/e2e-readers:1.0 2>&1 | jq -r '.[0].Digest' 2>&1)"
    podman_ rmi --all --force >/dev/null 2>&1 || true
done
for f in busybox.tar zstd.tar.gz; do
    check "podman load -i $f" podman_ load -q -i "$readers/$f"
done
check_eq "podman run: the image loaded from busybox.tar runs" "hello from ocibuild" \
    "$(podman_ run --rm --network=none localhost/e2e-readers-busybox:1.0 2>&1)"
check_eq "podman run: the zstd image loaded from zstd.tar.gz runs" "hello from zstd" \
    "$(podman_ run --rm --network=none localhost/e2e-readers-zstd:1.0 2>&1)"

section "e2e: save as .tar and .tar.gz: docker load"
docker_dir=$work/docker
docker_() { DOCKER_HOST=unix://$docker_dir/docker.sock docker "$@"; }
# A daemon of our own: vfs (no overlay mounts), no bridge or iptables changes, nothing of the
# machine's docker (if any) seen or touched. Started outside `check` (a subshell there would
# lose its pid); stopped by that pid with a bound on the wait, then the mounts it leaves under
# its directory (dockerd bind-mounts its data root onto itself) are undone so $work can go.
docker_pid=''
docker_start() {
    mkdir -p "$docker_dir"
    dockerd --data-root "$docker_dir/root" --exec-root "$docker_dir/exec" \
        --pidfile "$docker_dir/dockerd.pid" -H "unix://$docker_dir/docker.sock" \
        --storage-driver vfs --iptables=false --ip6tables=false --bridge=none \
        </dev/null >"$docker_dir/dockerd.log" 2>&1 &
    docker_pid=$!
    for _ in $(seq 1 300); do
        docker_ version >/dev/null 2>&1 && return 0
        kill -0 "$docker_pid" 2>/dev/null || break
        sleep 0.2
    done
    return 1
}
docker_stop() {
    local mount
    if [ -n "$docker_pid" ]; then
        kill "$docker_pid" 2>/dev/null || true
        for _ in $(seq 1 150); do
            kill -0 "$docker_pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -9 "$docker_pid" 2>/dev/null || true
        wait "$docker_pid" 2>/dev/null || true
        docker_pid=''
    fi
    # Deepest first.
    awk -v d="$docker_dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts | sort -r |
        while read -r mount; do umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null || true; done
}
trap 'docker_stop; cleanup' EXIT
if docker_start; then
    pass "dockerd starts (vfs, own socket)"
    for f in app.tar app.tar.gz; do
        check "docker load -i $f" docker_ load -q -i "$readers/$f"
        check_eq "docker image inspect ($f): tag and entrypoint" '["e2e-readers:1.0"] ["/app/bin/run.sh"]' \
            "$(docker_ image inspect e2e-readers:1.0 2>&1 | jq -c '.[0].RepoTags, .[0].Config.Entrypoint' 2>&1 | paste -sd' ')"
        docker_ rmi -f e2e-readers:1.0 >/dev/null 2>&1 || true
    done
    check "docker load -i busybox.tar.gz" docker_ load -q -i "$readers/busybox.tar.gz"
    check_eq "docker image inspect (busybox.tar.gz): cmd" '["cat","/etc/greeting"]' \
        "$(docker_ image inspect e2e-readers-busybox:1.0 2>&1 | jq -c '.[0].Config.Cmd' 2>&1)"
    check_eq "docker run: the image loaded from busybox.tar.gz runs" "hello from ocibuild" \
        "$(timeout 60 env DOCKER_HOST="unix://$docker_dir/docker.sock" docker run --rm --network none e2e-readers-busybox:1.0 2>&1)"
else
    fail "dockerd starts (vfs, own socket)" "$(tail -n 30 "$docker_dir/dockerd.log" 2>&1)"
fi
docker_stop
check_eq "dockerd stopped and left no mount" "" \
    "$(awk -v d="$docker_dir" 'index($2, d) == 1 { print $2 }' /proc/mounts)$(pgrep -f -- "--data-root $docker_dir/root" || true)"
trap cleanup EXIT

section "e2e: save as .tar and .tar.gz: reproducibility"
for run in 1 2; do
    mkdir -p "$work/readers-repro$run"
    check "SOURCE_DATE_EPOCH readers build $run (fresh blob store)" env SOURCE_DATE_EPOCH=1700000000 \
        OCIBUILD_CACHE_DIR="$work/readers-repro$run/cache" escript "$here/build_images.escript" readers "$src" "$work/readers-repro$run"
done
for f in app.tar app.tar.gz app-oci.tar.gz zstd.tar.gz; do
    check "two saves of $f are byte-identical" cmp "$work/readers-repro1/$f" "$work/readers-repro2/$f"
done
