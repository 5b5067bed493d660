//! Reading a saved tarball back (`ocibuild_layout:load_tarball_for_push/1,2`, and `tar://`
//! bases), so an image built earlier, or on another machine, can be pushed or built upon.
//!
//! Everything in the tarball is untrusted, and what it claims costs us nothing until checked:
//! - members are streamed (gzip, zstd or plain) by [`tar_stream`], which bounds their
//!   number and the extension headers it reads; blobs go into a content-addressed store under
//!   the extraction directory, each verified against its name, each distinct blob once;
//! - names that could escape (absolute, `..`) and links are refused, so nothing is written
//!   outside the extraction directory;
//! - JSON documents (index, manifests, configs) are read only up to their descriptor's size
//!   and [`MAX_JSON_BYTES`], a blob whose size on disk is not its descriptor's is refused
//!   before a byte of it is read, each distinct one is read once, and the manifests, layers and
//!   JSON bytes handed back are bounded, so peak memory does not depend on what the tarball
//!   repeats or claims.

mod tar_stream;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde_json::Value;

use super::check_blob_size;
use crate::blob_store::BlobStore;
use crate::digest::{Digest, HashingWriter};
use crate::image::json;
use crate::image::source::{layers_of, LayersError};
use crate::image::{ImageSource, Platform};

use crate::media_types::{
    ANNOTATION_REF_NAME, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST,
};
use crate::{Error, Result};
use tar_stream::{Member, TarStream};

/// Cap on any JSON document read into memory: distribution's limit for a manifest.
pub const MAX_JSON_BYTES: u64 = 4 << 20;
/// Cap on the manifest and config bytes handed back for all images together; an index of
/// twenty ordinary platform images holds well under 1 MiB.
pub const MAX_JSON_HELD: u64 = 32 << 20;
/// Cap on the descriptors listed by index.json and its nested indexes together.
pub const MAX_MANIFESTS: usize = 1024;
/// Cap on the layers of all loaded images together.
pub const MAX_LAYERS: usize = 8192;
/// Cap on tar members (headers), extension headers included.
pub const MAX_MEMBERS: u64 = 65_536;
/// Largest zstd window accepted, as a power of two.
const ZSTD_WINDOW_LOG_MAX: u32 = 27;
/// How often a long blob copy asks whether the caller still wants the result.
const CANCEL_CHECK_BYTES: u64 = 8 << 20;

/// One image of a loaded tarball: an [`ImageSource`] with every layer a local blob, its
/// platform from the index descriptor (when the tarball records one) and its manifest's
/// annotations.
pub type LoadedImage = ImageSource;

#[derive(Clone, Debug)]
pub struct LoadedTarball {
    pub images: Vec<LoadedImage>,
    /// The `org.opencontainers.image.ref.name` (else the first Docker `RepoTags` entry).
    pub tag: Option<String>,
    pub is_multi_platform: bool,
}

/// A fresh directory a tarball is extracted into, removed when this is dropped or closed.
#[derive(Debug)]
pub struct Extraction(tempfile::TempDir);

impl Extraction {
    /// `<parent>/ocibuild-load-<os pid>-<random>`: the pid lets a test or an operator tell
    /// which VM a directory belongs to.
    pub fn create(parent: &Path) -> Result<Extraction> {
        tempfile::Builder::new()
            .prefix(&format!("ocibuild-load-{}-", std::process::id()))
            .tempdir_in(parent)
            .map(Extraction)
            .map_err(|e| {
                Error::io(
                    format!("creating an extract directory in {}", parent.display()),
                    e,
                )
            })
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Remove the directory now, reporting a failure rather than ignoring it.
    pub fn close(self) -> Result<()> {
        let path = self.path().to_path_buf();
        self.0
            .close()
            .map_err(|e| Error::io(format!("removing {}", path.display()), e))
    }
}

/// Read the tarball at `path`, extracting its blobs under `extract_dir`.
pub fn load_tarball(path: &Path, extract_dir: &Path) -> Result<LoadedTarball> {
    load_tarball_unless(path, extract_dir, &|| false)
}

/// [`load_tarball`] that gives up, with an error, once `cancelled` says so; it is asked
/// before each member and every few MiB of a blob.
pub fn load_tarball_unless(
    path: &Path,
    extract_dir: &Path,
    cancelled: &dyn Fn() -> bool,
) -> Result<LoadedTarball> {
    let file = open_tarball(path)?;
    let store = BlobStore::open(extract_dir)?;
    let found = extract(file, &store, cancelled)?;
    read_layout(&store, found)
}

/// [`load_tarball_unless`] into a fresh [`Extraction`] under `parent`; on error the directory
/// is already gone.
pub fn load_tarball_to_temp(
    path: &Path,
    parent: &Path,
    cancelled: &dyn Fn() -> bool,
) -> Result<(LoadedTarball, Extraction)> {
    // Checked first so a missing tarball does not create (and remove) a directory.
    drop(open_tarball(path)?);
    let extraction = Extraction::create(parent)?;
    let loaded = load_tarball_unless(path, extraction.path(), cancelled)?;
    Ok((loaded, extraction))
}

fn open_tarball(path: &Path) -> Result<File> {
    let read_err = |e| Error::FileRead {
        path: path.to_path_buf(),
        source: e,
    };
    match fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::TarballNotFound(path.to_path_buf()))
        }
        Err(e) => return Err(read_err(e)),
        Ok(meta) => check_is_file(path, &meta)?,
    }
    // O_NONBLOCK: a path swapped for a FIFO since the first look must not block the open.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(read_err)?;
    // Again on the open file: the path may have been replaced since the first look.
    check_is_file(path, &file.metadata().map_err(read_err)?)?;
    Ok(file)
}

pub(super) fn check_is_file(path: &Path, meta: &fs::Metadata) -> Result<()> {
    if meta.is_file() {
        return Ok(());
    }
    Err(Error::NotAFile {
        path: path.to_path_buf(),
        kind: file_kind(&meta.file_type()),
    })
}

/// The name `file:read_file_info/1` gives a file type (never `regular` here).
fn file_kind(t: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_block_device() || t.is_char_device() {
            return "device";
        }
    }
    if t.is_dir() {
        "directory"
    } else if t.is_symlink() {
        "symlink"
    } else {
        "other"
    }
}

/// The layout files read into memory during extraction.
#[derive(Default)]
struct Found {
    oci_layout: bool,
    index: Option<Vec<u8>>,
    docker_manifest: Option<Vec<u8>>,
}

fn cancelled_error() -> Error {
    Error::io(
        "loading the tarball",
        io::Error::other("the calling process exited"),
    )
}

/// Stream every member: blobs into the store (verified, each once), layout files into memory.
fn extract(file: File, store: &BlobStore, cancelled: &dyn Fn() -> bool) -> Result<Found> {
    let reader = decompressed(file)?;
    let mut found = Found::default();
    let mut stored: HashSet<Digest> = HashSet::new();
    let mut declared = Declared::default();
    TarStream::new(reader, MAX_MEMBERS).for_each(|member, data| {
        if cancelled() {
            return Err(cancelled_error());
        }
        let Some(name) = file_member_name(member)? else {
            return Ok(());
        };
        if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            let digest = Digest::parse(&format!("sha256:{hex}")).map_err(|_| {
                Error::InvalidLayout(format!("{name} is not named by a sha256 digest"))
            })?;
            // A repeated blob is skipped, not hashed again: its first copy was verified.
            if stored.insert(digest.clone()) {
                let role = declared.check(&digest, member.size)?;
                store_blob(store, &digest, member.size, data, cancelled)?;
                if role == Some(Role::Document) {
                    declared.learn_document(&store.path(&digest));
                }
            }
            return Ok(());
        }
        let slot = match name.as_str() {
            "oci-layout" => {
                found.oci_layout = true;
                return Ok(());
            }
            "index.json" => &mut found.index,
            "manifest.json" => &mut found.docker_manifest,
            // Anything else (other digest algorithms, stray files) is not ours to interpret.
            _ => return Ok(()),
        };
        let bytes = read_member(&name, member.size, data)?;
        if name == "index.json" {
            declared.learn_index(&bytes);
        }
        *slot = Some(bytes);
        Ok(())
    })?;
    Ok(found)
}

/// The tar stream inside a gzip, zstd (`.tar.zst`, which `is_tarball_path/1` accepts) or
/// plain tarball, told apart by their magic bytes.
fn decompressed(file: File) -> Result<Box<dyn Read>> {
    let unreadable = |e: io::Error| Error::InvalidLayout(format!("unreadable tarball: {e}"));
    let mut file = BufReader::new(file);
    let head = io::BufRead::fill_buf(&mut file).map_err(unreadable)?;
    if head.starts_with(&[0x1f, 0x8b]) {
        return Ok(Box::new(flate2::bufread::MultiGzDecoder::new(file)));
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let mut zstd = zstd::stream::read::Decoder::with_buffer(file).map_err(unreadable)?;
        // The decoder allocates the window a frame asks for: zstd's own default cap (2^27,
        // what `zstd --long` uses) keeps a hostile frame from asking for 2 GiB.
        zstd.window_log_max(ZSTD_WINDOW_LOG_MAX)
            .map_err(unreadable)?;
        return Ok(Box::new(zstd));
    }
    Ok(Box::new(file))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// A manifest, nested index or config: JSON read into memory later.
    Document,
    Layer,
}

/// The sizes the layout declares for its blobs, learned from index.json and from manifests as
/// they stream past, so that when a tarball lists its index before its blobs, a blob that
/// disagrees with its descriptor is refused before a byte of it is read or written. Only
/// what [`read_layout`] will check is learned, and only up to a bound; nothing here is
/// needed for correctness, which [`read_layout`] checks again in full.
#[derive(Default)]
struct Declared {
    blobs: HashMap<Digest, (u64, Role)>,
}

impl Declared {
    const MAX: usize = MAX_MANIFESTS + MAX_LAYERS;

    fn note(&mut self, d: &Desc, role: Role) {
        if self.blobs.len() < Self::MAX {
            self.blobs.entry(d.digest.clone()).or_insert((d.size, role));
        }
    }

    fn learn_index(&mut self, bytes: &[u8]) {
        if let Ok(doc) = serde_json::from_slice::<Value>(bytes) {
            self.learn_index_doc(&doc);
        }
    }

    fn learn_index_doc(&mut self, doc: &Value) {
        for d in index_descriptors(doc, "index").unwrap_or_default() {
            if is_image_manifest(&d) || is_index(&d) {
                self.note(&d, Role::Document);
            }
        }
    }

    /// A stored manifest or nested index (at most [`MAX_JSON_BYTES`], [`Declared::check`]
    /// saw to that): what it declares for its own children.
    fn learn_document(&mut self, path: &Path) {
        let Some(doc) = fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        else {
            return;
        };
        if doc.get("manifests").is_some() {
            return self.learn_index_doc(&doc);
        }
        if let Some(config) = doc.get("config").and_then(|c| descriptor(c, "config").ok()) {
            self.note(&config, Role::Document);
        }
        let layers = doc.get("layers").and_then(Value::as_array);
        for layer in layers.into_iter().flatten() {
            if let Ok(l) = descriptor(layer, "layers") {
                self.note(&l, Role::Layer);
            }
        }
    }

    /// Refuse a blob member, unread, whose size is not the declared one or is too large for
    /// a JSON document; its role when declared.
    fn check(&self, digest: &Digest, size: u64) -> Result<Option<Role>> {
        let Some(&(declared, role)) = self.blobs.get(digest) else {
            return Ok(None);
        };
        check_blob_size(digest, size, declared)?;
        if role == Role::Document && size > MAX_JSON_BYTES {
            return Err(Error::LoadLimit {
                what: format!("the bytes of {digest}"),
                limit: MAX_JSON_BYTES,
            });
        }
        Ok(Some(role))
    }
}

/// The member's safe relative name, `None` for directories; links and special files refused.
fn file_member_name(member: &Member) -> Result<Option<String>> {
    let name = safe_name(&member.name)?;
    let kind = member.kind;
    if kind.is_dir() || name.is_empty() {
        return Ok(None);
    }
    if kind.is_symlink() || kind.is_hard_link() {
        return Err(Error::SymlinkNotAllowed(crate::error::shown(&name)));
    }
    if !(kind.is_file() || kind == tar::EntryType::Continuous) {
        return Err(Error::InvalidLayout(format!(
            "{} is a special file; layouts hold only files",
            crate::error::shown(&name)
        )));
    }
    Ok(Some(name))
}

/// A tar member name as a relative path with no `.` or `..` components.
fn safe_name(raw: &[u8]) -> Result<String> {
    let name = std::str::from_utf8(raw)
        .map_err(|_| Error::InvalidLayout("a tarball member name is not UTF-8".into()))?;
    if name.starts_with('/') {
        return Err(Error::AbsolutePath(crate::error::shown(name)));
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(Error::PathTraversal(crate::error::shown(name))),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// A layout file's bytes, refused unread if the member claims more than a JSON document may.
fn read_member(name: &str, size: u64, data: &mut dyn Read) -> Result<Vec<u8>> {
    if size > MAX_JSON_BYTES {
        return Err(Error::LoadLimit {
            what: format!("the bytes of {name}"),
            limit: MAX_JSON_BYTES,
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    data.read_to_end(&mut bytes)
        .map_err(|e| Error::InvalidLayout(format!("unreadable tarball: {e}")))?;
    Ok(bytes)
}

fn store_blob(
    store: &BlobStore,
    digest: &Digest,
    size: u64,
    src: &mut dyn Read,
    cancelled: &dyn Fn() -> bool,
) -> Result<()> {
    let tmp = store.temp_file()?;
    let mut sink = HashingWriter::new(io::BufWriter::new(tmp.as_file()));
    let mut buf = vec![0u8; 64 << 10];
    let mut since_check = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::InvalidLayout(format!(
                    "unreadable tarball: reading blob {digest}: {e}"
                )))
            }
        };
        sink.write_all(&buf[..n])
            .map_err(|e| Error::io(format!("writing blob {digest}"), e))?;
        since_check += n as u64;
        if since_check >= CANCEL_CHECK_BYTES {
            since_check = 0;
            if cancelled() {
                return Err(cancelled_error());
            }
        }
    }
    let (w, actual, written) = sink.finish();
    w.into_inner()
        .map_err(|e| Error::io(format!("writing blob {digest}"), e.into_error()))?;
    if written != size {
        return Err(Error::InvalidLayout(
            "unreadable tarball: the archive ends inside a member".into(),
        ));
    }
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

fn read_layout(store: &BlobStore, found: Found) -> Result<LoadedTarball> {
    if !found.oci_layout {
        return Err(Error::InvalidLayout(
            "no oci-layout file: not an OCI image layout tarball".into(),
        ));
    }
    let index_bytes = found
        .index
        .ok_or_else(|| Error::InvalidLayout("no index.json in the tarball".into()))?;
    let top = index_descriptors(
        &json::parse_object(&index_bytes, "index.json")?,
        "index.json",
    )?;
    drop(index_bytes);
    if top.is_empty() {
        return Err(Error::NoManifests);
    }
    let tag = top
        .iter()
        .find_map(|d| d.annotations.get(ANNOTATION_REF_NAME).cloned())
        .or_else(|| docker_tag(found.docker_manifest.as_deref()));

    let mut loader = ImageLoader::new(store);
    let mut listed = top.len();
    let mut nested = false;
    let mut nested_seen = HashSet::new();
    for d in &top {
        match d.media_type.as_str() {
            _ if is_index(d) => {
                nested = true;
                if !nested_seen.insert(d.digest.clone()) {
                    continue;
                }
                let bytes = read_json_blob(store, d, "nested index")?;
                let inner = index_descriptors(
                    &json::parse_object(&bytes, "nested index")?,
                    "nested index",
                )?;
                listed += inner.len();
                if listed > MAX_MANIFESTS {
                    return Err(too_many_manifests());
                }
                for m in inner.iter().filter(|m| is_image_manifest(m)) {
                    loader.add(m)?;
                }
            }
            _ if is_image_manifest(d) => loader.add(d)?,
            _ => {}
        }
    }
    let images = loader.images;
    if images.is_empty() {
        return Err(Error::NoManifests);
    }
    let is_multi_platform = nested || images.len() > 1;
    Ok(LoadedTarball {
        images,
        tag,
        is_multi_platform,
    })
}

fn too_many_manifests() -> Error {
    Error::LoadLimit {
        what: "manifests listed by the index".into(),
        limit: MAX_MANIFESTS as u64,
    }
}

/// An index's descriptors, after checking it is an index we understand.
fn index_descriptors(index: &Value, what: &str) -> Result<Vec<Desc>> {
    let (version, manifests) = match (index.get("schemaVersion"), index.get("manifests")) {
        (Some(v), Some(m)) => (v, m),
        _ => return Err(Error::InvalidIndexSchema),
    };
    if version.as_u64() != Some(2) {
        return Err(Error::UnsupportedIndexVersion(version.clone()));
    }
    let list = manifests
        .as_array()
        .ok_or_else(|| Error::InvalidLayout(format!("{what}: manifests is not an array")))?;
    if list.len() > MAX_MANIFESTS {
        return Err(too_many_manifests());
    }
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

fn is_index(d: &Desc) -> bool {
    matches!(d.media_type.as_str(), OCI_INDEX | DOCKER_MANIFEST_LIST)
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

fn docker_tag(manifest_json: Option<&[u8]>) -> Option<String> {
    let v: Value = serde_json::from_slice(manifest_json?).ok()?;
    Some(v.get(0)?.get("RepoTags")?.get(0)?.as_str()?.to_string())
}

/// A JSON blob's bytes: refused unread when its descriptor claims more than
/// [`MAX_JSON_BYTES`] or its size on disk is not the descriptor's, so nothing past the
/// declared size is ever read.
fn read_json_blob(store: &BlobStore, d: &Desc, what: &str) -> Result<Vec<u8>> {
    if d.size > MAX_JSON_BYTES {
        return Err(Error::LoadLimit {
            what: format!("the bytes of {what} {}", d.digest),
            limit: MAX_JSON_BYTES,
        });
    }
    let path = store.path(&d.digest);
    let meta = fs::metadata(&path).map_err(|_| Error::BlobMissing(d.digest.to_string()))?;
    if !meta.is_file() {
        return Err(Error::BlobMissing(d.digest.to_string()));
    }
    check_blob_size(&d.digest, meta.len(), d.size)?;
    let read_err = |e| Error::FileRead {
        path: path.clone(),
        source: e,
    };
    let mut bytes = Vec::with_capacity(d.size as usize);
    File::open(&path)
        .map_err(read_err)?
        .take(d.size)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    check_blob_size(&d.digest, bytes.len() as u64, d.size)?;
    Ok(bytes)
}

/// Loads each distinct image once, reading each distinct JSON blob once, within the bounds on
/// layers and on the JSON bytes handed back.
struct ImageLoader<'a> {
    store: &'a BlobStore,
    images: Vec<LoadedImage>,
    seen: HashSet<(Digest, Option<String>)>,
    blobs: HashMap<Digest, Vec<u8>>,
    held: u64,
    layers: usize,
}

impl<'a> ImageLoader<'a> {
    fn new(store: &'a BlobStore) -> ImageLoader<'a> {
        ImageLoader {
            store,
            images: Vec::new(),
            seen: HashSet::new(),
            blobs: HashMap::new(),
            held: 0,
            layers: 0,
        }
    }

    /// The blob's bytes, counted against [`MAX_JSON_HELD`] since the caller keeps a copy.
    fn json(&mut self, d: &Desc, what: &str) -> Result<Vec<u8>> {
        let bytes = match self.blobs.get(&d.digest) {
            Some(b) => {
                check_blob_size(&d.digest, b.len() as u64, d.size)?;
                b.clone()
            }
            None => {
                let b = read_json_blob(self.store, d, what)?;
                self.blobs.insert(d.digest.clone(), b.clone());
                b
            }
        };
        self.held += bytes.len() as u64;
        if self.held > MAX_JSON_HELD {
            return Err(Error::LoadLimit {
                what: "manifest and config bytes of all images".into(),
                limit: MAX_JSON_HELD,
            });
        }
        Ok(bytes)
    }

    /// Load the image `d` names, unless the same manifest for the same platform is loaded.
    fn add(&mut self, d: &Desc) -> Result<()> {
        let key = (d.digest.clone(), d.platform.as_ref().map(|p| p.to_string()));
        if self.seen.contains(&key) {
            return Ok(());
        }
        let image = self.load_image(d)?;
        self.seen.insert(key);
        self.images.push(image);
        Ok(())
    }

    fn load_image(&mut self, d: &Desc) -> Result<LoadedImage> {
        let manifest = self.json(d, "manifest")?;
        let doc = json::parse_object(&manifest, "manifest")?;
        let config_desc = descriptor(doc.get("config").unwrap_or(&Value::Null), "manifest config")?;
        let config = self.json(&config_desc, "config")?;
        let config_doc = json::parse_object(&config, "config")?;
        let mut layers = layers_of(&doc, &config_doc).map_err(|e| match e {
            LayersError::Digest(e) => e,
            LayersError::CountMismatch { layers, diff_ids } => Error::InvalidLayout(format!(
                "manifest {} lists {layers} layers but its config has {diff_ids} diff_ids",
                d.digest
            )),
            LayersError::NoLayersArray | LayersError::MissingField(_) => {
                Error::InvalidLayout(format!("manifest {}: {}", d.digest, e.describe()))
            }
        })?;
        self.layers += layers.len();
        if self.layers > MAX_LAYERS {
            return Err(Error::LoadLimit {
                what: "layers of all images".into(),
                limit: MAX_LAYERS as u64,
            });
        }
        for layer in &mut layers {
            let path = self.store.path(&layer.digest);
            let on_disk = fs::metadata(&path)
                .ok()
                .filter(fs::Metadata::is_file)
                .ok_or_else(|| Error::BlobMissing(layer.digest.to_string()))?
                .len();
            check_blob_size(&layer.digest, on_disk, layer.size)?;
            layer.blob = Some(path);
        }
        Ok(ImageSource {
            media_type: ImageSource::declared_media_type(&manifest),
            remote: None,
            manifest_digest: d.digest.clone(),
            annotations: string_map(doc.get("annotations")),
            manifest,
            config_digest: config_desc.digest,
            config,
            layers,
            platform: d.platform.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{render, RenderOptions};
    use crate::layout::tests::image_with_blob;
    use crate::layout::{save_tarball, SaveFormat, SaveOptions};
    use proptest::prelude::*;
    use serde_json::json;

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

    fn member(b: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(kind);
        // set_path refuses `..` and absolute names; write the raw name to build hostile archives.
        let raw = &mut h.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn tar_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            member(&mut b, name, tar::EntryType::Regular, data);
        }
        b.into_inner().unwrap()
    }

    fn desc(media_type: &str, bytes: &[u8]) -> Value {
        json!({"mediaType": media_type, "digest": Digest::of(bytes).to_string(), "size": bytes.len()})
    }

    fn blob_name(bytes: &[u8]) -> String {
        format!("blobs/sha256/{}", Digest::of(bytes).hex())
    }

    /// A layout tarball with `index` as index.json and `blobs` stored under their digests.
    fn layout_tar(index: &[u8], blobs: &[&[u8]]) -> Vec<u8> {
        let names: Vec<String> = blobs.iter().map(|b| blob_name(b)).collect();
        let mut entries: Vec<(&str, &[u8])> = vec![
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
            ("index.json", index),
        ];
        entries.extend(names.iter().map(String::as_str).zip(blobs.iter().copied()));
        tar_with(&entries)
    }

    /// A manifest with no layers, its config, and an index listing the manifest `copies` times.
    fn image_parts(config: &[u8], copies: usize, note: &str) -> (Vec<u8>, Vec<u8>) {
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": desc("application/vnd.oci.image.config.v1+json", config),
            "layers": [],
            "annotations": {"note": note},
        }))
        .unwrap();
        let d = desc(OCI_MANIFEST, &manifest);
        let index =
            serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": vec![d; copies]})).unwrap();
        (manifest, index)
    }

    const EMPTY_CONFIG: &[u8] = br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#;

    fn load_bytes(tarball: &[u8]) -> Result<LoadedTarball> {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("t.tar");
        fs::write(&path, tarball).unwrap();
        load_tarball(&path, &tmp.path().join("x"))
    }

    #[test]
    fn refuses_escaping_names_links_and_bad_digests() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("t.tar");
        let err = |entries: &[(&str, &[u8])]| load_bytes(&tar_with(entries)).unwrap_err();
        assert!(matches!(err(&[("../evil", b"x")]), Error::PathTraversal(n) if n == "../evil"));
        assert!(matches!(
            err(&[("a/../../evil", b"x")]),
            Error::PathTraversal(_)
        ));
        assert!(matches!(err(&[("/etc/evil", b"x")]), Error::AbsolutePath(n) if n == "/etc/evil"));
        let empty = "blobs/sha256/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(
            err(&[(empty, b"x")]),
            Error::DigestMismatch { .. }
        ));
        assert!(matches!(
            err(&[("blobs/sha256/abc", b"x")]),
            Error::InvalidLayout(_)
        ));
        assert!(matches!(
            err(&[("hello.txt", b"x")]),
            Error::InvalidLayout(_)
        ));
        for kind in [tar::EntryType::Symlink, tar::EntryType::Link] {
            let mut b = tar::Builder::new(Vec::new());
            member(&mut b, "oci-layout", kind, b"");
            let e = load_bytes(&b.into_inner().unwrap()).unwrap_err();
            assert!(
                matches!(e, Error::SymlinkNotAllowed(ref n) if n == "oci-layout"),
                "{e:?}"
            );
        }
        let mut b = tar::Builder::new(Vec::new());
        member(&mut b, "fifo", tar::EntryType::Fifo, b"");
        assert!(matches!(
            load_bytes(&b.into_inner().unwrap()),
            Err(Error::InvalidLayout(_))
        ));
        assert!(!tmp.path().join("evil").exists());
        fs::write(&path, b"garbage that is not a tar at all, clearly").unwrap();
        assert!(load_tarball(&path, &tmp.path().join("y")).is_err());
    }

    use crate::special_files_testing::{mkfifo, within_bound};

    #[test]
    fn a_fifo_or_device_tarball_is_refused_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("image.tar");
        mkfifo(&fifo);
        let out = tmp.path().join("out");
        let result = within_bound(move || load_tarball(&fifo, &out).map(|_| ()));
        assert!(
            matches!(result, Err(Error::NotAFile { kind: "other", .. })),
            "{result:?}"
        );
        let result = within_bound(|| {
            load_tarball(Path::new("/dev/zero"), Path::new("/nonexistent")).map(|_| ())
        });
        assert!(
            matches!(result, Err(Error::NotAFile { kind: "device", .. })),
            "{result:?}"
        );
    }

    #[test]
    fn a_missing_tarball_or_a_directory_is_named_as_such() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("missing.tar");
        assert!(matches!(
            load_tarball(&missing, &tmp.path().join("z")),
            Err(Error::TarballNotFound(p)) if p == missing
        ));
        assert!(matches!(
            load_tarball(tmp.path(), &tmp.path().join("z")),
            Err(Error::NotAFile {
                kind: "directory",
                ..
            })
        ));
        // Nothing was extracted for a tarball that is not there.
        assert!(matches!(
            load_tarball_to_temp(&missing, tmp.path(), &|| false),
            Err(Error::TarballNotFound(_))
        ));
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn checks_the_index_schema_version_and_its_manifests() {
        let (manifest, _) = image_parts(EMPTY_CONFIG, 1, "a");
        let d = desc(OCI_MANIFEST, &manifest);
        let load = |index: Value| {
            let index = serde_json::to_vec(&index).unwrap();
            load_bytes(&layout_tar(&index, &[&manifest, EMPTY_CONFIG]))
        };
        assert!(matches!(
            load(json!({"schemaVersion": 999, "manifests": [d]})),
            Err(Error::UnsupportedIndexVersion(v)) if v == json!(999)
        ));
        assert!(matches!(
            load(json!({"schemaVersion": "2", "manifests": [d]})),
            Err(Error::UnsupportedIndexVersion(_))
        ));
        assert!(matches!(
            load(json!({"manifests": [d]})),
            Err(Error::InvalidIndexSchema)
        ));
        assert!(matches!(
            load(json!({"schemaVersion": 2})),
            Err(Error::InvalidIndexSchema)
        ));
        assert!(matches!(
            load(json!({"schemaVersion": 2, "manifests": []})),
            Err(Error::NoManifests)
        ));
        // Only attestation manifests: nothing to push.
        let mut attestation = d.clone();
        attestation["annotations"] = json!({"vnd.docker.reference.type": "attestation-manifest"});
        assert!(matches!(
            load(json!({"schemaVersion": 2, "manifests": [attestation]})),
            Err(Error::NoManifests)
        ));
        let loaded = load(json!({"schemaVersion": 2, "manifests": [d]})).unwrap();
        assert_eq!(loaded.images.len(), 1);
        assert_eq!(loaded.tag, None);
    }

    #[test]
    fn a_repeated_manifest_is_loaded_once_and_the_count_is_bounded() {
        let (manifest, index) = image_parts(EMPTY_CONFIG, MAX_MANIFESTS, "a");
        let loaded = load_bytes(&layout_tar(&index, &[&manifest, EMPTY_CONFIG])).unwrap();
        assert_eq!(loaded.images.len(), 1);
        assert!(!loaded.is_multi_platform);

        let (manifest, index) = image_parts(EMPTY_CONFIG, MAX_MANIFESTS + 1, "a");
        assert!(matches!(
            load_bytes(&layout_tar(&index, &[&manifest, EMPTY_CONFIG])),
            Err(Error::LoadLimit { limit, .. }) if limit == MAX_MANIFESTS as u64
        ));
    }

    #[test]
    fn json_documents_are_bounded_in_size_each_and_together() {
        // index.json over the cap is refused before it is read.
        let big_index = vec![b' '; MAX_JSON_BYTES as usize + 1];
        assert!(matches!(
            load_bytes(&layout_tar(&big_index, &[])),
            Err(Error::LoadLimit {
                limit: MAX_JSON_BYTES,
                ..
            })
        ));

        // A config over the cap is refused, whatever its descriptor says.
        let mut big_config = EMPTY_CONFIG.to_vec();
        big_config.extend(std::iter::repeat_n(b' ', MAX_JSON_BYTES as usize));
        let (manifest, index) = image_parts(&big_config, 1, "a");
        assert!(matches!(
            load_bytes(&layout_tar(&index, &[&manifest, &big_config])),
            Err(Error::LoadLimit {
                limit: MAX_JSON_BYTES,
                ..
            })
        ));

        // Distinct manifests sharing a 3 MiB config: the bytes handed back are bounded.
        let mut config = EMPTY_CONFIG.to_vec();
        config.extend(std::iter::repeat_n(b' ', 3 << 20));
        let manifests: Vec<Vec<u8>> = (0..12)
            .map(|i| image_parts(&config, 1, &i.to_string()).0)
            .collect();
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": manifests.iter().map(|m| desc(OCI_MANIFEST, m)).collect::<Vec<_>>(),
        }))
        .unwrap();
        let mut blobs: Vec<&[u8]> = manifests.iter().map(Vec::as_slice).collect();
        blobs.push(&config);
        assert!(matches!(
            load_bytes(&layout_tar(&index, &blobs)),
            Err(Error::LoadLimit {
                limit: MAX_JSON_HELD,
                ..
            })
        ));
    }

    #[test]
    fn a_blob_larger_than_its_descriptor_is_refused() {
        let (manifest, _) = image_parts(EMPTY_CONFIG, 1, "a");
        let mut d = desc(OCI_MANIFEST, &manifest);
        d["size"] = json!(10);
        let index = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [d]})).unwrap();
        let err = load_bytes(&layout_tar(&index, &[&manifest, EMPTY_CONFIG])).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidLayout(m) if m.contains("descriptor says 10")),
            "{err:?}"
        );
    }

    fn without_end_marker(b: tar::Builder<Vec<u8>>) -> Vec<u8> {
        let mut bytes = b.into_inner().unwrap();
        bytes.truncate(bytes.len() - 1024);
        bytes
    }

    #[test]
    fn a_blob_after_its_index_is_refused_unread_when_its_size_disagrees() {
        let (manifest, _) = image_parts(EMPTY_CONFIG, 1, "a");
        let mut d = desc(OCI_MANIFEST, &manifest);
        d["size"] = json!(100);
        let index = serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [d]})).unwrap();
        // The manifest's header claims 1 GiB and the archive ends right after it: reading
        // the member would fail as truncated, refusing it unread fails on its size.
        let mut b = tar::Builder::new(Vec::new());
        member(&mut b, "oci-layout", tar::EntryType::Regular, b"{}");
        member(&mut b, "index.json", tar::EntryType::Regular, &index);
        let mut bytes = without_end_marker(b);
        let mut h = tar::Header::new_gnu();
        h.set_path(blob_name(&manifest)).unwrap();
        h.set_size(1 << 30);
        h.set_cksum();
        bytes.extend_from_slice(h.as_bytes());
        bytes.extend_from_slice(&manifest);
        let err = load_bytes(&bytes).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidLayout(m) if m.contains("is 1073741824 bytes, its descriptor says 100")),
            "{err:?}"
        );

        // A config declared by a manifest already seen, larger than any JSON document.
        let mut config = EMPTY_CONFIG.to_vec();
        config.extend(std::iter::repeat_n(b' ', MAX_JSON_BYTES as usize));
        let (manifest, index) = image_parts(&config, 1, "a");
        let mut b = tar::Builder::new(Vec::new());
        member(&mut b, "oci-layout", tar::EntryType::Regular, b"{}");
        member(&mut b, "index.json", tar::EntryType::Regular, &index);
        member(
            &mut b,
            &blob_name(&manifest),
            tar::EntryType::Regular,
            &manifest,
        );
        let mut bytes = without_end_marker(b);
        let mut h = tar::Header::new_gnu();
        h.set_path(blob_name(&config)).unwrap();
        h.set_size(config.len() as u64);
        h.set_cksum();
        bytes.extend_from_slice(h.as_bytes());
        assert!(matches!(
            load_bytes(&bytes),
            Err(Error::LoadLimit {
                limit: MAX_JSON_BYTES,
                ..
            })
        ));
    }

    #[test]
    fn reads_zstd_compressed_tarballs() {
        let (manifest, index) = image_parts(EMPTY_CONFIG, 1, "a");
        let tar = layout_tar(&index, &[&manifest, EMPTY_CONFIG]);
        let loaded = load_bytes(&zstd::encode_all(&tar[..], 3).unwrap()).unwrap();
        assert_eq!(loaded.images[0].manifest, manifest);
    }

    #[test]
    fn temp_extraction_is_removed_on_error_on_drop_and_on_cancel() {
        let tmp = tempfile::tempdir().unwrap();
        let parent = tmp.path().join("parent");
        fs::create_dir(&parent).unwrap();
        let (manifest, index) = image_parts(EMPTY_CONFIG, 1, "a");
        let good = tmp.path().join("good.tar");
        fs::write(&good, layout_tar(&index, &[&manifest, EMPTY_CONFIG])).unwrap();
        let bad = tmp.path().join("bad.tar");
        fs::write(&bad, layout_tar(b"{}", &[])).unwrap();
        let entries = || fs::read_dir(&parent).unwrap().count();

        assert!(load_tarball_to_temp(&bad, &parent, &|| false).is_err());
        assert_eq!(entries(), 0);
        let (loaded, extraction) = load_tarball_to_temp(&good, &parent, &|| false).unwrap();
        assert_eq!(loaded.images.len(), 1);
        assert!(extraction.path().starts_with(&parent));
        assert_eq!(entries(), 1);
        drop(extraction);
        assert_eq!(entries(), 0);
        let (_, extraction) = load_tarball_to_temp(&good, &parent, &|| false).unwrap();
        extraction.close().unwrap();
        assert_eq!(entries(), 0);
        let err = load_tarball_to_temp(&good, &parent, &|| true).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert_eq!(entries(), 0);
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let text = prop_oneof![
            Just(OCI_MANIFEST.to_string()),
            Just(OCI_INDEX.to_string()),
            Just(Digest::of(EMPTY_CONFIG).to_string()),
            Just("linux".to_string()),
            "[a-z0-9:./+-]{0,16}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            (0u64..4096).prop_map(|n| json!(n)),
            text.prop_map(Value::String),
        ];
        let key = prop_oneof![
            Just("schemaVersion".to_string()),
            Just("manifests".to_string()),
            Just("mediaType".to_string()),
            Just("digest".to_string()),
            Just("size".to_string()),
            Just("platform".to_string()),
            Just("annotations".to_string()),
            Just("config".to_string()),
            Just("layers".to_string()),
            Just("rootfs".to_string()),
            Just("diff_ids".to_string()),
            "[a-z]{1,6}",
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(key.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Ok, or one of the errors a bad tarball can give: never a panic, never something else.
    fn is_tagged(result: &Result<LoadedTarball>) -> bool {
        match result {
            Ok(loaded) => !loaded.images.is_empty(),
            Err(e) => !matches!(e, Error::InvalidOption { .. } | Error::Registry { .. }),
        }
    }

    proptest! {
        #[test]
        fn prop_load_arbitrary_bytes_is_ok_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            prop_assert!(is_tagged(&load_bytes(&bytes)));
        }

        #[test]
        fn prop_load_arbitrary_bytes_after_a_compression_magic(
            zstd in any::<bool>(),
            tail in prop::collection::vec(any::<u8>(), 0..2048),
        ) {
            let mut bytes = if zstd { vec![0x28, 0xb5, 0x2f, 0xfd] } else { vec![0x1f, 0x8b, 8, 0] };
            bytes.extend(tail);
            prop_assert!(is_tagged(&load_bytes(&bytes)));
        }

        #[test]
        fn prop_load_arbitrary_bytes_after_a_valid_tar_header(
            name in "[a-z/.]{1,20}",
            size in any::<u64>(),
            kind in any::<u8>(),
            tail in prop::collection::vec(any::<u8>(), 0..1024),
        ) {
            let mut h = tar::Header::new_gnu();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_size(size);
            h.set_entry_type(tar::EntryType::new(kind));
            h.set_cksum();
            let mut bytes = h.as_bytes().to_vec();
            bytes.extend(tail);
            prop_assert!(is_tagged(&load_bytes(&bytes)));
        }

        #[test]
        fn prop_load_arbitrary_index_manifest_and_config(
            index in json_value(),
            manifest in json_value(),
            config in json_value(),
        ) {
            let manifest = serde_json::to_vec(&manifest).unwrap();
            let config = serde_json::to_vec(&config).unwrap();
            let index = serde_json::to_vec(&index).unwrap();
            prop_assert!(is_tagged(&load_bytes(&layout_tar(&index, &[&manifest, &config]))));
        }

        #[test]
        fn prop_load_well_formed_index_with_arbitrary_manifest_and_config(
            manifest in json_value(),
            config in json_value(),
        ) {
            let config = serde_json::to_vec(&config).unwrap();
            let mut manifest = manifest;
            if let Value::Object(m) = &mut manifest {
                m.insert("config".into(), desc("application/vnd.oci.image.config.v1+json", &config));
            }
            let manifest = serde_json::to_vec(&manifest).unwrap();
            let index = serde_json::to_vec(
                &json!({"schemaVersion": 2, "manifests": [desc(OCI_MANIFEST, &manifest)]}),
            ).unwrap();
            prop_assert!(is_tagged(&load_bytes(&layout_tar(&index, &[&manifest, &config]))));
        }

        #[test]
        fn prop_load_index_and_descriptor_parsing_of_arbitrary_json(value in json_value()) {
            let _ = index_descriptors(&value, "index.json");
            let _ = descriptor(&value, "index.json");
            let _ = docker_tag(Some(&serde_json::to_vec(&value).unwrap()));
        }
    }
}
