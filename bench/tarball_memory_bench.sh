#!/usr/bin/env bash
# Memory check: the BEAM's peak memory while `ocibuild_layout:load_tarball_for_push/1` reads
# hostile tarballs, each built here. Every load must end in `{ok, _}` or a tagged
# `{error, {Tag, ...}}`, with peak RSS under 200 MB; the script exits 1 otherwise.
#
#   bash bench/tarball_memory_bench.sh [MB]     MB of the oversized blob (default 1100)
#
# Tarballs (gzip level 1), each loaded in a fresh `erl` VM:
#   amplify     index.json lists one manifest 100,000 times; its config is 15 MB
#               (a 178 KB tarball once drove the VM to 6 GB)
#   amplify-fit the same, 20,000 times: an index.json under the 4 MiB cap
#   repeat-1000 the same manifest 1,000 times (within the bound on manifests), 3 MB config:
#               loads as one image
#   oversize    a manifest whose descriptor says 100 bytes and whose blob is MB megabytes
#               (once read whole before its size was checked); index.json comes first, so
#               the blob is refused unread
#   oversize-late  the same with index.json last: the blob must be extracted (to disk) before
#               anything says what it should be
#   baseline    a VM that loads ocibuild and reads nothing, for comparison
# The peak is VmHWM of the beam.smp process, sampled from /proc every 20 ms until it exits
# (VmHWM only grows, so the last sample is the peak unless memory rose in the last 20 ms).
set -euo pipefail
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
root=$(CDPATH='' cd -- "$here/.." && pwd)
source "$root/scripts/common.sh"
source "$root/bench/peak_rss.sh"

mb=${1:-1100}
limit_mb=200
work=$(mktemp -d "${TMPDIR:-/tmp}/ocibuild-tarball-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}

section "prepare: compile ocibuild, build the hostile tarballs"
(cd "$root" && rebar3 compile) >"$work/compile.log" 2>&1 || { tail -n 40 "$work/compile.log"; die "rebar3 compile failed"; }
ebin=$root/_build/default/lib/ocibuild/ebin
tarballs="amplify amplify-fit repeat-1000 oversize oversize-late"
python3 - "$work" "$mb" <<'PY'
import gzip, hashlib, io, json, sys, tarfile

work, mb = sys.argv[1], int(sys.argv[2])
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"

def desc(media_type, data):
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}

def add(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))

def image(config_pad):
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": []}, "pad": " " * config_pad}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST, "config": desc(CONFIG, config), "layers": []}).encode()
    return manifest, config

def layout(name, index, blobs):
    with gzip.open(f"{work}/{name}.tar.gz", "wb", compresslevel=1) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add(tar, "index.json", json.dumps(index).encode())
        for blob in blobs:
            add(tar, "blobs/sha256/" + hashlib.sha256(blob).hexdigest(), blob)

manifest, config = image(15 << 20)
layout("amplify", {"schemaVersion": 2, "manifests": [desc(MANIFEST, manifest)] * 100_000}, [manifest, config])
layout("amplify-fit", {"schemaVersion": 2, "manifests": [desc(MANIFEST, manifest)] * 20_000}, [manifest, config])
manifest, config = image(3 << 20)
layout("repeat-1000", {"schemaVersion": 2, "manifests": [desc(MANIFEST, manifest)] * 1000}, [manifest, config])

# The oversized manifest is streamed: hashed in one pass, then written in a second, 1 MiB at a time.
chunk = b" " * (1 << 20)
head = b'{"schemaVersion":2,"mediaType":"' + MANIFEST.encode() + b'","layers":[]'
tail = b"}"
size = len(head) + mb * len(chunk) + len(tail)
h = hashlib.sha256(head)
for _ in range(mb):
    h.update(chunk)
h.update(tail)
digest = h.hexdigest()
index = {"schemaVersion": 2, "manifests": [{"mediaType": MANIFEST, "digest": "sha256:" + digest, "size": 100}]}

class Stream(io.RawIOBase):
    def __init__(self):
        self.parts = iter([head] + [chunk] * mb + [tail])
        self.buf = b""
    def readable(self):
        return True
    def readinto(self, b):
        while not self.buf:
            self.buf = next(self.parts, None)
            if self.buf is None:
                return 0
        n = min(len(b), len(self.buf))
        b[:n], self.buf = self.buf[:n], self.buf[n:]
        return n

def oversize(name, index_first):
    with gzip.open(f"{work}/{name}.tar.gz", "wb", compresslevel=1) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        if index_first:
            add(tar, "index.json", json.dumps(index).encode())
        info = tarfile.TarInfo("blobs/sha256/" + digest)
        info.size = size
        tar.addfile(info, io.BufferedReader(Stream(), 1 << 20))
        if not index_first:
            add(tar, "index.json", json.dumps(index).encode())

oversize("oversize", True)
oversize("oversize-late", False)
PY
for t in $tarballs; do
    echo "$t.tar.gz: $(du -k "$work/$t.tar.gz" | cut -f1) KB"
done

rows=()
failed=0
# measure NAME EXPR: evaluate EXPR (an Erlang expression) in a fresh VM, which prints the
# result's shape; record wall time, peak RSS and that shape.
measure() {
    local name=$1 expr=$2 pid hwm t0 t1 status=0 result
    t0=$(date +%s%N)
    TMPDIR=$work erl -noshell -pa "$ebin" -eval "
        R = $expr,
        Shape = case R of
            {ok, #{images := Is, cleanup := C}} -> C(), {ok, length(Is), images};
            {ok, _} -> ok;
            {error, {Tag, Detail}} when is_atom(Tag) -> {error, Tag, Detail};
            {error, {Tag, _, _} = E} when is_atom(Tag) -> {error, E};
            Other -> {untagged, Other}
        end,
        io:format(\"~0tP~n\", [Shape, 8]),
        halt()." >"$work/$name.log" 2>&1 &
    pid=$!
    hwm=$(peak_rss "$pid")
    wait "$pid" || status=$?
    t1=$(date +%s%N)
    result=$(tail -n 1 "$work/$name.log")
    if [ "$status" -ne 0 ] || ! grep -qE '^(\{ok,|\{error,|ok$)' <<<"$result" || [ $((hwm / 1024)) -ge "$limit_mb" ]; then
        failed=1
        result="FAIL (exit $status) $result"
    fi
    rows+=("$(awk -v p="$name" -v ns=$((t1 - t0)) -v kb="$hwm" -v r="$result" \
        'BEGIN { printf "  %-14s %8.1f %12.1f  %s", p, ns / 1e9, kb / 1024, substr(r, 1, 110) }')")
    echo "$name: $result"
    [ -z "$(find "$work" -maxdepth 1 -name 'ocibuild-load-*' -print -quit)" ] || {
        failed=1
        echo "$name: left an extract directory behind"
    }
}

section "measure"
measure baseline "{ok, #{images => [], cleanup => fun() -> ok end}}"
for t in $tarballs; do
    measure "$t" "ocibuild_layout:load_tarball_for_push(\"$work/$t.tar.gz\")"
done

section "peak memory of the BEAM (VmHWM of beam.smp), $(nproc) cores"
printf '  %-14s %8s %12s  %s\n' tarball seconds "peak RSS MB" result
printf '%s\n' "${rows[@]}"
echo
echo "  bound: every load {ok, _} or a tagged error, peak RSS < $limit_mb MB, no directory left"
[ "$failed" -eq 0 ] || die "a load was unbounded, untagged or left its directory"
