//! Reading a saved tarball back (`ocibuild_layout:load_tarball_for_push/1,2`), so an image
//! built earlier, or on another machine, can be pushed later.
//!
//! The tarball may be gzip-compressed or plain. Blobs are streamed into a content-addressed
//! store under `extract_dir` and each is checked against its name; small JSON files are read
//! into memory. Paths that could escape (absolute, `..`) and links are refused, so a hostile
//! tarball cannot write outside `extract_dir`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use serde_json::Value;

use super::check_blob_size;
use crate::blob_store::{read_small, BlobStore};
use crate::digest::{Digest, HashingWriter};
use crate::image::json;
use crate::image::Platform;
use crate::layer::Layer;
use crate::media_types::{
    ANNOTATION_REF_NAME, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST,
};
use crate::{Error, Result};

/// Cap on the JSON files read into memory (index.json, manifest.json, oci-layout).
const MAX_METADATA: u64 = 16 << 20;

/// One image of a loaded tarball: exact manifest and config bytes, and local layer blobs.
#[derive(Clone, Debug)]
pub struct LoadedImage {
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub layers: Vec<Layer>,
    /// From the index descriptor, when the tarball records one.
    pub platform: Option<Platform>,
    /// The manifest's annotations.
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
pub struct LoadedTarball {
    pub images: Vec<LoadedImage>,
    /// The `org.opencontainers.image.ref.name` (else the first Docker `RepoTags` entry).
    pub tag: Option<String>,
    pub is_multi_platform: bool,
}

/// Read the tarball at `path`, extracting its blobs under `extract_dir`.
pub fn load_tarball(path: &Path, extract_dir: &Path) -> Result<LoadedTarball> {
    let store = BlobStore::open(extract_dir)?;
    let meta = extract(path, &store)?;
    if !meta.contains_key("oci-layout") {
        return Err(Error::InvalidLayout(
            "no oci-layout file: not an OCI image layout tarball".into(),
        ));
    }
    let index_bytes = meta
        .get("index.json")
        .ok_or_else(|| Error::InvalidLayout("no index.json in the tarball".into()))?;
    let index = json::parse_object(index_bytes, "index.json")?;
    let top = descriptors(&index, "index.json")?;
    if top.is_empty() {
        return Err(Error::InvalidLayout("index.json lists no manifests".into()));
    }

    let tag = top
        .iter()
        .find_map(|d| d.annotations.get(ANNOTATION_REF_NAME).cloned())
        .or_else(|| docker_tag(meta.get("manifest.json")));
    let mut images = Vec::new();
    let mut nested = false;
    for d in &top {
        match d.media_type.as_str() {
            OCI_INDEX | DOCKER_MANIFEST_LIST => {
                nested = true;
                let inner =
                    json::parse_object(&read_blob(&store, &d.digest, d.size)?, "nested index")?;
                for m in descriptors(&inner, "nested index")? {
                    if is_image_manifest(&m) {
                        images.push(load_image(&store, &m)?);
                    }
                }
            }
            _ if is_image_manifest(d) => images.push(load_image(&store, d)?),
            _ => {}
        }
    }
    if images.is_empty() {
        return Err(Error::InvalidLayout(
            "the tarball holds no image manifest".into(),
        ));
    }
    let is_multi_platform = nested || images.len() > 1;
    Ok(LoadedTarball {
        images,
        tag,
        is_multi_platform,
    })
}

/// Stream every entry: blobs into the store (verified), small metadata files into memory.
fn extract(path: &Path, store: &BlobStore) -> Result<BTreeMap<String, Vec<u8>>> {
    let read_err = |e| Error::FileRead {
        path: path.to_path_buf(),
        source: e,
    };
    let mut file = BufReader::new(File::open(path).map_err(read_err)?);
    let gzipped = {
        let head = io::BufRead::fill_buf(&mut file).map_err(read_err)?;
        head.starts_with(&[0x1f, 0x8b])
    };
    let reader: Box<dyn Read> = if gzipped {
        Box::new(flate2::bufread::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let bad_tar =
        |e: io::Error| Error::InvalidLayout(format!("unreadable tarball {}: {e}", path.display()));

    let mut archive = tar::Archive::new(reader);
    let mut meta = BTreeMap::new();
    for entry in archive.entries().map_err(bad_tar)? {
        let mut entry = entry.map_err(bad_tar)?;
        let name = safe_name(&entry.path_bytes())?;
        let kind = entry.header().entry_type();
        if kind.is_dir() || name.is_empty() {
            continue;
        }
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            return Err(Error::InvalidLayout(format!(
                "{name} is a link or special file; layouts hold only files"
            )));
        }
        if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            let digest = Digest::parse(&format!("sha256:{hex}")).map_err(|_| {
                Error::InvalidLayout(format!("{name} is not named by a sha256 digest"))
            })?;
            store_blob(store, &digest, &mut entry)?;
        } else if matches!(name.as_str(), "oci-layout" | "index.json" | "manifest.json") {
            if entry.size() > MAX_METADATA {
                return Err(Error::InvalidLayout(format!("{name} is implausibly large")));
            }
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(bad_tar)?;
            meta.insert(name, bytes);
        }
        // Anything else (other digest algorithms, stray files) is not ours to interpret.
    }
    Ok(meta)
}

/// A tar member name as a relative path with no `.` or `..` components.
fn safe_name(raw: &[u8]) -> Result<String> {
    let name = std::str::from_utf8(raw)
        .map_err(|_| Error::InvalidLayout("a tarball entry name is not UTF-8".into()))?;
    if name.starts_with('/') {
        return Err(Error::InvalidLayout(format!(
            "absolute path {name:?} in tarball"
        )));
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(Error::InvalidLayout(format!(
                    "path {name:?} escapes the layout"
                )))
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

fn store_blob(store: &BlobStore, digest: &Digest, src: &mut impl Read) -> Result<()> {
    let tmp = store.temp_file()?;
    let mut sink = HashingWriter::new(io::BufWriter::new(tmp.as_file()));
    io::copy(src, &mut sink)
        .map_err(|e| Error::InvalidLayout(format!("reading blob {digest}: {e}")))?;
    let (w, actual, _) = sink.finish();
    w.into_inner()
        .map_err(|e| Error::io(format!("writing blob {digest}"), e.into_error()))?;
    if &actual != digest {
        return Err(Error::DigestMismatch {
            expected: digest.to_string(),
            actual: actual.to_string(),
        });
    }
    store.commit(tmp, digest)?;
    Ok(())
}

struct Desc {
    media_type: String,
    digest: Digest,
    size: u64,
    platform: Option<Platform>,
    annotations: BTreeMap<String, String>,
}

fn descriptors(doc: &Value, what: &str) -> Result<Vec<Desc>> {
    let list = doc
        .get("manifests")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::InvalidLayout(format!("{what} has no manifests array")))?;
    list.iter().map(|d| descriptor(d, what)).collect()
}

fn descriptor(d: &Value, what: &str) -> Result<Desc> {
    let bad =
        |field: &str| Error::InvalidLayout(format!("a descriptor in {what} has no valid {field}"));
    Ok(Desc {
        media_type: d
            .get("mediaType")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("mediaType"))?
            .to_string(),
        digest: Digest::parse(
            d.get("digest")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("digest"))?,
        )?,
        size: d
            .get("size")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("size"))?,
        platform: d.get("platform").and_then(Platform::from_json),
        annotations: string_map(d.get("annotations")),
    })
}

/// Image manifests, minus buildkit's attestation manifests (platform `unknown/unknown`).
fn is_image_manifest(d: &Desc) -> bool {
    matches!(d.media_type.as_str(), OCI_MANIFEST | DOCKER_MANIFEST)
        && !d.annotations.contains_key("vnd.docker.reference.type")
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn docker_tag(manifest_json: Option<&Vec<u8>>) -> Option<String> {
    let v: Value = serde_json::from_slice(manifest_json?).ok()?;
    Some(v.get(0)?.get("RepoTags")?.get(0)?.as_str()?.to_string())
}

/// A small blob's bytes, checked against the size its descriptor gives.
fn read_blob(store: &BlobStore, digest: &Digest, size: u64) -> Result<Vec<u8>> {
    let path = store.path(digest);
    if !path.is_file() {
        return Err(Error::BlobMissing(digest.to_string()));
    }
    if size > MAX_METADATA {
        return Err(Error::InvalidLayout(format!(
            "{digest} is too large for a manifest or config"
        )));
    }
    let bytes = read_small(&path)?;
    check_blob_size(digest, bytes.len() as u64, size)?;
    Ok(bytes)
}

fn load_image(store: &BlobStore, d: &Desc) -> Result<LoadedImage> {
    let manifest = read_blob(store, &d.digest, d.size)?;
    let doc = json::parse_object(&manifest, "manifest")?;
    let config_desc = descriptor(doc.get("config").unwrap_or(&Value::Null), "manifest config")?;
    let config = read_blob(store, &config_desc.digest, config_desc.size)?;
    let config_doc = json::parse_object(&config, "config")?;
    let diff_ids: Vec<&str> = config_doc
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let layer_values = doc
        .get("layers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if layer_values.len() != diff_ids.len() {
        return Err(Error::InvalidLayout(format!(
            "manifest {} lists {} layers but its config has {} diff_ids",
            d.digest,
            layer_values.len(),
            diff_ids.len()
        )));
    }
    let mut layers = Vec::with_capacity(layer_values.len());
    for (value, diff_id) in layer_values.iter().zip(diff_ids) {
        let l = descriptor(value, "manifest layers")?;
        let path = store.path(&l.digest);
        let on_disk = std::fs::metadata(&path)
            .map_err(|_| Error::BlobMissing(l.digest.to_string()))?
            .len();
        check_blob_size(&l.digest, on_disk, l.size)?;
        layers.push(Layer {
            media_type: l.media_type,
            digest: l.digest,
            diff_id: Digest::parse(diff_id)?,
            size: l.size,
            blob: Some(path),
        });
    }
    Ok(LoadedImage {
        manifest_digest: d.digest.clone(),
        manifest,
        config_digest: config_desc.digest,
        config,
        layers,
        platform: d.platform.clone(),
        annotations: string_map(doc.get("annotations")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{render, RenderOptions};
    use crate::layout::tests::image_with_blob;
    use crate::layout::{save_tarball, SaveFormat, SaveOptions};

    #[test]
    fn round_trips_single_and_multi_platform_tarballs() {
        let tmp = tempfile::tempdir().unwrap();
        let amd = image_with_blob(tmp.path(), Some(Platform::new("linux", "amd64", None)));
        let arm = image_with_blob(
            tmp.path(),
            Some(Platform::new("linux", "arm64", Some("v8"))),
        );
        let opts = SaveOptions {
            tag: Some("app:2".into()),
            format: SaveFormat::Docker,
            created: 7,
        };

        let single = tmp.path().join("one.tar.gz");
        save_tarball(std::slice::from_ref(&amd), &single, &opts).unwrap();
        let loaded = load_tarball(&single, &tmp.path().join("x1")).unwrap();
        assert_eq!(loaded.tag.as_deref(), Some("app:2"));
        assert!(!loaded.is_multi_platform);
        let expected = render(&amd, &RenderOptions { created: 7 }).unwrap();
        let image = &loaded.images[0];
        assert_eq!(image.manifest, expected.manifest);
        assert_eq!(image.manifest_digest, expected.manifest_digest);
        assert_eq!(image.layers[0].digest, amd.layers[0].layer.digest);
        assert_eq!(image.layers[0].diff_id, amd.layers[0].layer.diff_id);
        assert!(image.layers[0]
            .blob
            .as_ref()
            .unwrap()
            .starts_with(tmp.path().join("x1")));

        let multi = tmp.path().join("multi.tar.gz");
        save_tarball(&[amd, arm], &multi, &opts).unwrap();
        let loaded = load_tarball(&multi, &tmp.path().join("x2")).unwrap();
        assert!(loaded.is_multi_platform);
        let platforms: Vec<String> = loaded
            .images
            .iter()
            .map(|i| i.platform.as_ref().unwrap().to_string())
            .collect();
        assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"]);
    }

    fn tar_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            // set_path refuses `..`; write the raw name to build a hostile archive.
            let raw = &mut h.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    type Case<'a> = (&'a [(&'a str, &'a [u8])], fn(&Error) -> bool);

    #[test]
    fn rejects_traversal_bad_digests_and_non_layouts() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("t.tar");
        let cases: [Case; 4] = [
            (&[("../evil", b"x")], |e| {
                matches!(e, Error::InvalidLayout(_))
            }),
            (
                &[(
                    "blobs/sha256/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                    b"x",
                )],
                |e| matches!(e, Error::DigestMismatch { .. }),
            ),
            (&[("blobs/sha256/abc", b"x")], |e| {
                matches!(e, Error::InvalidLayout(_))
            }),
            (&[("hello.txt", b"x")], |e| {
                matches!(e, Error::InvalidLayout(_))
            }),
        ];
        for (entries, check) in cases {
            std::fs::write(&path, tar_with(entries)).unwrap();
            let err = load_tarball(&path, &tmp.path().join("x")).unwrap_err();
            assert!(check(&err), "unexpected {err:?}");
        }
        assert!(!tmp.path().join("evil").exists());
        std::fs::write(&path, b"garbage that is not a tar at all, clearly").unwrap();
        assert!(load_tarball(&path, &tmp.path().join("y")).is_err());
        assert!(matches!(
            load_tarball(&tmp.path().join("missing.tar"), &tmp.path().join("z")),
            Err(Error::FileRead { .. })
        ));
    }
}
