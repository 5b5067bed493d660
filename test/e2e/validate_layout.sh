#!/usr/bin/env bash
# Validate an OCI image layout directory the way ggcr's validator does, with tools we did not
# write (sha256sum, gzip, zstd, jq): every blob named by a descriptor exists, has the
# descriptor's size and hashes to its digest; every layer, decompressed, hashes to the
# config's diff_id at the same position; nested indexes are followed.
#
#   bash validate_layout.sh DIR     exits 0 if valid, else prints the first problem and exits 1
set -euo pipefail

dir=$1

problem() {
    echo "invalid layout $dir: $*" >&2
    exit 1
}

blob_path() {
    local digest=$1
    [[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || problem "bad digest '$digest'"
    echo "$dir/blobs/sha256/${digest#sha256:}"
}

# check_descriptor JSON: the blob exists with the right size and sha256.
check_descriptor() {
    local digest size path actual
    digest=$(jq -r .digest <<<"$1")
    size=$(jq -r .size <<<"$1")
    path=$(blob_path "$digest")
    [ -f "$path" ] || problem "missing blob $digest"
    [ "$(stat -c %s "$path")" = "$size" ] || problem "blob $digest: size $(stat -c %s "$path") != $size"
    actual=sha256:$(sha256sum "$path" | cut -d' ' -f1)
    [ "$actual" = "$digest" ] || problem "blob $digest hashes to $actual"
}

decompress() {
    case $1 in
        *tar+gzip) gzip -dc "$2" ;;
        *tar+zstd) zstd -dcq "$2" ;;
        *.tar | *tar) cat "$2" ;;
        *) problem "unknown layer media type $1" ;;
    esac
}

check_manifest() {
    local manifest config count diff_ids i layer media path diff_id actual
    manifest=$(cat "$(blob_path "$1")")
    check_descriptor "$(jq -c .config <<<"$manifest")"
    config=$(cat "$(blob_path "$(jq -r .config.digest <<<"$manifest")")")
    count=$(jq '.layers | length' <<<"$manifest")
    diff_ids=$(jq -c '.rootfs.diff_ids' <<<"$config")
    [ "$(jq length <<<"$diff_ids")" = "$count" ] || problem "manifest $1: $count layers but diff_ids $diff_ids"
    for ((i = 0; i < count; i++)); do
        layer=$(jq -c ".layers[$i]" <<<"$manifest")
        check_descriptor "$layer"
        media=$(jq -r .mediaType <<<"$layer")
        path=$(blob_path "$(jq -r .digest <<<"$layer")")
        diff_id=$(jq -r ".[$i]" <<<"$diff_ids")
        actual=sha256:$(decompress "$media" "$path" | sha256sum | cut -d' ' -f1)
        [ "$actual" = "$diff_id" ] || problem "layer $i of manifest $1: diff_id $diff_id but content hashes to $actual"
    done
}

# check_index JSON: each entry is a manifest or a nested index.
check_index() {
    local count i entry media
    count=$(jq '.manifests | length' <<<"$1")
    [ "$count" -gt 0 ] || problem "an index with no manifests"
    for ((i = 0; i < count; i++)); do
        entry=$(jq -c ".manifests[$i]" <<<"$1")
        check_descriptor "$entry"
        media=$(jq -r .mediaType <<<"$entry")
        case $media in
            *image.index.v1+json) check_index "$(cat "$(blob_path "$(jq -r .digest <<<"$entry")")")" ;;
            *image.manifest.v1+json) check_manifest "$(jq -r .digest <<<"$entry")" ;;
            *) problem "unexpected media type $media in an index" ;;
        esac
    done
}

[ "$(jq -r .imageLayoutVersion "$dir/oci-layout")" = "1.0.0" ] || problem "oci-layout is not version 1.0.0"
check_index "$(cat "$dir/index.json")"
echo "valid: $dir"
