//! The layer cache: a layer whose inputs are unchanged is not read, tarred or compressed again.
//!
//! A key names everything that decides a layer's bytes: the planned entries (image path,
//! directory or file, mode; a binary's sha256), the compression and its parameters, the mtime
//! stamped on every entry, what the compressor makes of a fixed sample (so another codec
//! library never reuses an older one's bytes), and this cache's format and the crate's
//! version. Two kinds of key
//! describe a host file (`{file, Path}`):
//!
//! - the **stat key**: size, mtime, ctime (both to the nanosecond), device and inode. Rewriting
//!   a file changes its ctime, which no user tool can set back (`touch -d` restores the mtime
//!   only), so changed content behind a restored mtime is never reused;
//! - the **content key**: each host file's size and sha256 in place of its status. `mix
//!   release` rewrites every file of `lib/` on each run (new inode, mtime and ctime), so a stat
//!   key alone would miss on every rebuild of a release; hashing the files finds the layer
//!   without compressing anything. The files are hashed on `LayerOptions::threads` threads
//!   (see `file_digest`), not as one sequential sha256 of the tar: the key, with the settings
//!   and the entries, decides the tar as surely as its diff_id does.
//!
//! In mode `On` a stat hit is taken at once. On a stat miss, if this file list (the **shape
//! key**: paths and modes only) was built before, the files are hashed and the content key
//! looked up, and a content hit records the new stat key, so the next run is a stat hit again.
//! A file list never built before goes straight to building (no extra read of its files); the
//! build hashes each file as it streams it into the tar and so records the same content key
//! the next lookup computes. Mode `Content` never trusts timestamps (for filesystems whose
//! clocks cannot be trusted) and always hashes a known file list. `Off` always builds, and
//! hashes nothing.
//!
//! A record, `<root>/layers/<keyhex>`, is a small JSON object naming the blob: `digest`,
//! `diff_id`, `size`, `media_type`. It is written to a temp file and renamed into place, read
//! only when it is a regular file of at most [`MAX_RECORD_BYTES`], and used only when the blob it
//! names is a regular file in the store with exactly that size and the media type is the one
//! asked for. Anything else (missing, truncated, corrupt, hostile) is a miss, and the layer is
//! built again. A hit touches the blob and the record, which is what the store's GC calls
//! "used". Files that change while they are hashed or built leave no record behind.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::compress::{GZIP_BLOCK_SIZE, GZIP_LEVEL, ZSTD_JOB_SIZE, ZSTD_LEVEL};
use super::file_digest::{self, FileDigest};
use super::tar_builder::TarEntry;
use super::{Compression, Content, Layer, LayerOptions};
use crate::blob_store::{record_file, BlobStore};
use crate::digest::{Digest, Hasher};
use crate::{Error, Result};

/// Bumped whenever what a key covers or how a record reads changes: old records then miss.
const FORMAT_VERSION: &str = "2";
pub use crate::blob_store::record_file::MAX_RECORD_BYTES;
/// Where the records live, under the store's root.
pub const RECORDS_DIR: &str = "layers";

/// How the layer cache is used (`OCIBUILD_LAYER_CACHE`: `on`, `content`, `off`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CacheMode {
    /// Never look up or record: every layer is built.
    Off,
    /// Stat key first, then the content key (the default).
    #[default]
    On,
    /// Content key only: every host file is hashed on every build.
    Content,
}

impl CacheMode {
    pub fn parse(s: &str) -> Result<CacheMode> {
        match s {
            "on" => Ok(CacheMode::On),
            "off" => Ok(CacheMode::Off),
            "content" => Ok(CacheMode::Content),
            other => Err(Error::InvalidOption {
                name: "layer_cache",
                why: format!("{other:?} is not on, content or off"),
            }),
        }
    }
}

/// A cache key: the sha256 of what decides the layer's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key(Digest);

impl Key {
    pub fn hex(&self) -> &str {
        self.0.hex()
    }
}

/// What a record says about a layer. Field names are the layer map's.
#[derive(Serialize, Deserialize)]
struct Record {
    digest: String,
    diff_id: String,
    size: u64,
    media_type: String,
}

/// Look `plan` up in the cache of `store`; on a miss, `build` it and record the result.
///
/// `build` is handed a vector to fill with each host file's size and sha256 (in plan order)
/// when the cache wants the content key of what it builds, `None` when it does not.
pub fn build_cached(
    plan: &[TarEntry],
    opts: &LayerOptions,
    store: &BlobStore,
    build: impl FnOnce(Option<&mut Vec<FileDigest>>) -> Result<Layer>,
) -> Result<Layer> {
    let mode = store.layer_cache();
    if mode == CacheMode::Off {
        return build(None);
    }
    // Taken before anything is read: if the files differ afterwards, nothing is recorded.
    // `None` (a file that cannot be stat'ed) builds, and the build reports why.
    let Some(before) = stat_key(plan, opts) else {
        return build(None);
    };
    if !has_host_files(plan) {
        // Paths, modes and bytes: the stat key is already a content key.
        if let Some(hit) = lookup(store, &before, opts) {
            return Ok(hit);
        }
        let built = build(None)?;
        record(store, &before, &built);
        return Ok(built);
    }
    if mode == CacheMode::On {
        if let Some(hit) = lookup(store, &before, opts) {
            return Ok(hit);
        }
    }
    // Hashing the files costs a read of all of them, worth it only when this file list was
    // built before: a first build goes straight to building and learns its content key from
    // the files it streams.
    let shape = shape_key(plan, opts);
    let mut content = None;
    if marked(store, &shape) {
        content = file_digest::hash_files(plan, opts.threads)
            .ok()
            .and_then(|digests| content_key(plan, opts, &digests));
        let hit = content.as_ref().and_then(|key| lookup(store, key, opts));
        if let Some(hit) = hit.filter(|_| unchanged(plan, opts, &before)) {
            if mode == CacheMode::On {
                record(store, &before, &hit);
            }
            return Ok(hit);
        }
    }
    // A content key just computed stands for what the build reads as long as no file's status
    // changes meanwhile (checked below), so the build only hashes the files when it is missing.
    let mut digests = Vec::new();
    let built = build(content.is_none().then_some(&mut digests))?;
    if unchanged(plan, opts, &before) {
        if let Some(content) = content.or_else(|| content_key(plan, opts, &digests)) {
            record(store, &content, &built);
        }
        record(store, &shape, &built);
        if mode == CacheMode::On {
            record(store, &before, &built);
        }
    }
    Ok(built)
}

fn has_host_files(plan: &[TarEntry]) -> bool {
    plan.iter()
        .any(|e| matches!(e.content(), Some(Content::File(_))))
}

fn unchanged(plan: &[TarEntry], opts: &LayerOptions, before: &Key) -> bool {
    stat_key(plan, opts).as_ref() == Some(before)
}

/// The stat key, or `None` when a host file cannot be stat'ed or is not a regular file.
pub fn stat_key(plan: &[TarEntry], opts: &LayerOptions) -> Option<Key> {
    key(plan, opts, "stat", |path, h| {
        let meta = fs::metadata(path).ok()?;
        if !meta.is_file() {
            return None;
        }
        for n in [
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime() as u64,
            meta.mtime_nsec() as u64,
            meta.ctime() as u64,
            meta.ctime_nsec() as u64,
        ] {
            h.update(&n.to_le_bytes());
        }
        Some(())
    })
}

/// The shape key: the entries without what the host files hold. Its record says "this file
/// list was built before", the only case where hashing the files may find a layer.
pub fn shape_key(plan: &[TarEntry], opts: &LayerOptions) -> Key {
    key(plan, opts, "shape", |_, _| Some(())).expect("a shape key needs no file")
}

/// The content key: the settings, the entries, and each host file's size and sha256 from
/// `digests` (one per `{file, Path}` entry, in plan order), which together decide the tar and
/// so the compressed bytes. `None` when `digests` does not match the plan's host files.
pub fn content_key(plan: &[TarEntry], opts: &LayerOptions, digests: &[FileDigest]) -> Option<Key> {
    let mut next = digests.iter();
    let key = key(plan, opts, "content", |_, h| {
        let file = next.next()?;
        h.update(&file.size.to_le_bytes());
        h.update(file.digest.hex().as_bytes());
        Some(())
    })?;
    next.next().is_none().then_some(key)
}

/// Whether a record exists for `key` (and mark it used).
fn marked(store: &BlobStore, key: &Key) -> bool {
    let path = record_path(store, key);
    let exists = fs::symlink_metadata(&path).is_ok_and(|m| m.is_file());
    if exists {
        touch(&path);
    }
    exists
}

/// Hash the settings and the entries; `host_file` adds what identifies one `{file, Path}`.
/// Every variable-length part is length-prefixed, so two different inputs never hash alike.
fn key(
    plan: &[TarEntry],
    opts: &LayerOptions,
    kind: &str,
    mut host_file: impl FnMut(&Path, &mut Hasher) -> Option<()>,
) -> Option<Key> {
    let mut h = Hasher::new();
    let settings = format!(
        "ocibuild-layer-cache/{FORMAT_VERSION}/{}/{kind}/{}/gzip-{GZIP_LEVEL}-{GZIP_BLOCK_SIZE}/\
         zstd-{ZSTD_LEVEL}-{ZSTD_JOB_SIZE}/codec-{}/mtime-{}",
        env!("CARGO_PKG_VERSION"),
        opts.compression.media_type(),
        codec_fingerprint(opts.compression),
        opts.mtime,
    );
    put(&mut h, settings.as_bytes());
    h.update(&(plan.len() as u64).to_le_bytes());
    for entry in plan {
        put(&mut h, entry.path());
        h.update(&entry.mode().to_le_bytes());
        match entry.content() {
            None => h.update(b"d"),
            Some(Content::Bytes(bytes)) => {
                h.update(b"b");
                h.update(&(bytes.len() as u64).to_le_bytes());
                h.update(Digest::of(bytes).hex().as_bytes());
            }
            Some(Content::File(path)) => {
                h.update(b"f");
                host_file(path, &mut h)?;
            }
        }
    }
    Some(Key(h.finish()))
}

/// What this build's compressor makes of a fixed sample. Levels and block sizes are in the key
/// already; this catches what they do not name (another codec library or version, say), so a
/// layer compressed by an older encoder is not reused where a fresh build would give other
/// bytes. Computed once per process and codec (a few milliseconds).
fn codec_fingerprint(compression: Compression) -> &'static str {
    static FINGERPRINTS: [OnceLock<String>; 2] = [OnceLock::new(), OnceLock::new()];
    let slot = match compression {
        Compression::Gzip => &FINGERPRINTS[0],
        Compression::Zstd => &FINGERPRINTS[1],
    };
    slot.get_or_init(|| {
        // Compressible but not trivial: text-like runs with a changing counter.
        let sample: Vec<u8> = (0u32..40_000)
            .flat_map(|i| format!("beam {i:x} {} ", i % 97).into_bytes())
            .collect();
        let compressed = compression.writer(Vec::new(), 1).and_then(|mut w| {
            w.write_all(&sample)
                .map_err(|e| Error::io("fingerprinting the compressor", e))?;
            w.finish()
        });
        match compressed {
            Ok(bytes) => Digest::of(&bytes).hex()[..16].to_string(),
            Err(_) => "unknown".to_string(),
        }
    })
}

fn put(h: &mut Hasher, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

fn record_path(store: &BlobStore, key: &Key) -> PathBuf {
    store.root().join(RECORDS_DIR).join(key.hex())
}

/// The layer a record names, if the record and its blob check out; marks both used.
pub fn lookup(store: &BlobStore, key: &Key, opts: &LayerOptions) -> Option<Layer> {
    let path = record_path(store, key);
    let record: Record = serde_json::from_slice(&record_file::read(&path)?).ok()?;
    if record.media_type != opts.compression.media_type() {
        return None;
    }
    let digest = Digest::parse(&record.digest).ok()?;
    let diff_id = Digest::parse(&record.diff_id).ok()?;
    let blob = store.path(&digest);
    let meta = fs::symlink_metadata(&blob).ok()?;
    if !meta.is_file() || meta.len() != record.size {
        return None;
    }
    touch(&blob);
    touch(&path);
    Some(Layer {
        media_type: record.media_type,
        digest,
        diff_id,
        size: record.size,
        blob: Some(blob),
    })
}

/// Mark a file used for the GC's least-recently-used order. Best effort: a store we may read
/// but not touch still serves hits, it only ages sooner.
fn touch(path: &Path) {
    let opened = File::options()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    if let Ok(f) = opened {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// Record `key` → `layer`, atomically (temp file + rename). Best effort: a record that cannot
/// be written costs a rebuild next time, never this build.
pub fn record(store: &BlobStore, key: &Key, layer: &Layer) {
    let _ = try_record(store, key, layer);
}

fn try_record(store: &BlobStore, key: &Key, layer: &Layer) -> std::io::Result<()> {
    let json = serde_json::to_vec(&Record {
        digest: layer.digest.to_string(),
        diff_id: layer.diff_id.to_string(),
        size: layer.size,
        media_type: layer.media_type.clone(),
    })?;
    record_file::write(&record_path(store, key), &json)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::Duration;

    use super::*;
    use crate::layer::build::build_uncached;
    use crate::layer::tar_builder;
    use crate::layer::FileEntry;

    /// A store, two host files and a binary.
    struct Fixture {
        dir: tempfile::TempDir,
        store: BlobStore,
        entries: Vec<FileEntry>,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("store")).unwrap();
        let a = dir.path().join("a.beam");
        let b = dir.path().join("b.txt");
        fs::write(&a, vec![7u8; 300_000]).unwrap();
        fs::write(&b, b"hello\n").unwrap();
        let entries = vec![
            FileEntry::new("/app/lib/a.beam", Content::File(a), 0o644),
            FileEntry::new("/app/b.txt", Content::File(b), 0o644),
            FileEntry::new("/app/VERSION", Content::Bytes(b"1.0\n".to_vec()), 0o644),
        ];
        Fixture {
            dir,
            store,
            entries,
        }
    }

    fn opts(compression: Compression, mtime: u64) -> LayerOptions {
        LayerOptions {
            compression,
            mtime,
            threads: 2,
            progress: None,
        }
    }

    /// Build through the cache, counting the builds that really ran.
    fn build(
        entries: &[FileEntry],
        opts: &LayerOptions,
        store: &BlobStore,
        builds: &Cell<u32>,
    ) -> Layer {
        let plan = tar_builder::plan(entries).unwrap();
        build_cached(&plan, opts, store, |digests| {
            builds.set(builds.get() + 1);
            build_uncached(&plan, 0, opts, store, digests)
        })
        .unwrap()
    }

    /// What the same inputs give without any cache, in a fresh store.
    fn fresh(entries: &[FileEntry], opts: &LayerOptions) -> Layer {
        let root = tempfile::tempdir().unwrap();
        let store = BlobStore::open(root.path())
            .unwrap()
            .with_layer_cache(CacheMode::Off);
        let mut layer = crate::layer::build_layer(entries, opts, &store).unwrap();
        layer.blob = None;
        layer
    }

    fn assert_same_as_fresh(layer: &Layer, entries: &[FileEntry], opts: &LayerOptions) {
        let mut got = layer.clone();
        let blob = got.blob.take().unwrap();
        assert_eq!(got, fresh(entries, opts));
        assert_eq!(Digest::of(&fs::read(blob).unwrap()), layer.digest);
    }

    fn host(f: &Fixture, i: usize) -> PathBuf {
        match &f.entries[i].content {
            Content::File(p) => p.clone(),
            Content::Bytes(_) => unreachable!(),
        }
    }

    fn set_mtime(path: &Path, t: SystemTime) {
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    fn records(store: &BlobStore) -> usize {
        fs::read_dir(store.root().join(RECORDS_DIR))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    #[test]
    fn second_build_with_nothing_changed_is_a_hit() {
        let f = fixture();
        let builds = Cell::new(0);
        for compression in [Compression::Gzip, Compression::Zstd] {
            let o = opts(compression, 0);
            let first = build(&f.entries, &o, &f.store, &builds);
            let second = build(&f.entries, &o, &f.store, &builds);
            assert_eq!(first, second);
            assert_same_as_fresh(&second, &f.entries, &o);
        }
        assert_eq!(builds.get(), 2, "one build per compression");
    }

    #[test]
    fn each_setting_and_entry_part_is_in_the_key() {
        let f = fixture();
        let builds = Cell::new(0);
        let base = opts(Compression::Zstd, 0);
        build(&f.entries, &base, &f.store, &builds);
        let mut variants: Vec<(Vec<FileEntry>, LayerOptions)> = vec![
            (f.entries.clone(), opts(Compression::Gzip, 0)),
            (f.entries.clone(), opts(Compression::Zstd, 1)),
        ];
        let mut mode = f.entries.clone();
        mode[1].mode = 0o600;
        variants.push((mode, base.clone()));
        let mut path = f.entries.clone();
        path[1].path = b"/app/c.txt".to_vec();
        variants.push((path, base.clone()));
        let mut bytes = f.entries.clone();
        bytes[2].content = Content::Bytes(b"1.1\n".to_vec());
        variants.push((bytes, base.clone()));
        let mut fewer = f.entries.clone();
        fewer.pop();
        variants.push((fewer, base.clone()));
        for (i, (entries, o)) in variants.iter().enumerate() {
            let layer = build(entries, o, &f.store, &builds);
            assert_eq!(builds.get() as usize, i + 2, "variant {i} was rebuilt");
            assert_same_as_fresh(&layer, entries, o);
        }
        // Threads do not change the bytes, so they are not in the key.
        let mut threads = base.clone();
        threads.threads = 1;
        build(&f.entries, &threads, &f.store, &builds);
        assert_eq!(builds.get() as usize, variants.len() + 1);
    }

    #[test]
    fn content_changed_behind_a_restored_mtime_is_rebuilt() {
        for mode in [CacheMode::On, CacheMode::Content] {
            let f = fixture();
            let store = f.store.clone().with_layer_cache(mode);
            let builds = Cell::new(0);
            let o = opts(Compression::Gzip, 0);
            let first = build(&f.entries, &o, &store, &builds);
            let b = host(&f, 1);
            let mtime = fs::metadata(&b).unwrap().modified().unwrap();
            // Same size, same inode, mtime put back as `touch -d` would.
            fs::write(&b, b"HELLO\n").unwrap();
            set_mtime(&b, mtime);
            assert_eq!(fs::metadata(&b).unwrap().modified().unwrap(), mtime);
            let second = build(&f.entries, &o, &store, &builds);
            assert_eq!(builds.get(), 2, "{mode:?}");
            assert_ne!(first.digest, second.digest);
            assert_same_as_fresh(&second, &f.entries, &o);
        }
    }

    #[test]
    fn a_rewritten_file_with_the_same_content_is_a_content_hit() {
        // What `mix release` does to every file of lib/: a new inode, mtime and ctime.
        let f = fixture();
        let builds = Cell::new(0);
        let o = opts(Compression::Zstd, 0);
        let first = build(&f.entries, &o, &f.store, &builds);
        let a = host(&f, 0);
        let ino = fs::metadata(&a).unwrap().ino();
        let bytes = fs::read(&a).unwrap();
        fs::remove_file(&a).unwrap();
        fs::write(f.dir.path().join("other"), b"takes the old inode").unwrap();
        fs::write(&a, &bytes).unwrap();
        set_mtime(&a, SystemTime::now() + Duration::from_secs(5));
        assert_ne!(fs::metadata(&a).unwrap().ino(), ino);
        let plan = tar_builder::plan(&f.entries).unwrap();
        let new_stat = stat_key(&plan, &o).unwrap();
        assert!(lookup(&f.store, &new_stat, &o).is_none());

        let second = build(&f.entries, &o, &f.store, &builds);
        assert_eq!(builds.get(), 1, "found by content");
        assert_eq!(first, second);
        // ... and the new stat key now leads straight to it.
        assert_eq!(lookup(&f.store, &new_stat, &o), Some(second));
    }

    #[test]
    fn a_first_build_records_its_stat_content_and_shape_keys() {
        let f = fixture();
        let o = opts(Compression::Zstd, 0);
        let layer = build(&f.entries, &o, &f.store, &Cell::new(0));
        let plan = tar_builder::plan(&f.entries).unwrap();
        let stat = stat_key(&plan, &o).unwrap();
        // The content key the build recorded is the one hashing the files again computes.
        let digests = file_digest::hash_files(&plan, 2).unwrap();
        let content = content_key(&plan, &o, &digests).unwrap();
        assert_eq!(lookup(&f.store, &stat, &o).as_ref(), Some(&layer));
        assert_eq!(lookup(&f.store, &content, &o).as_ref(), Some(&layer));
        assert!(marked(&f.store, &shape_key(&plan, &o)));
        assert_eq!(records(&f.store), 3);
    }

    #[test]
    fn a_content_key_needs_exactly_one_digest_per_host_file() {
        let f = fixture();
        let o = opts(Compression::Zstd, 0);
        let plan = tar_builder::plan(&f.entries).unwrap();
        let digests = file_digest::hash_files(&plan, 2).unwrap();
        assert_eq!(digests.len(), 2);
        assert!(content_key(&plan, &o, &digests).is_some());
        assert_eq!(content_key(&plan, &o, &digests[..1]), None);
        let mut extra = digests.clone();
        extra.push(digests[0].clone());
        assert_eq!(content_key(&plan, &o, &extra), None);
        // Size and sha256 are both in it.
        let mut other = digests.clone();
        other[1].size += 1;
        assert_ne!(
            content_key(&plan, &o, &other),
            content_key(&plan, &o, &digests)
        );
        let mut other = digests.clone();
        other[1].digest = Digest::of(b"something else");
        assert_ne!(
            content_key(&plan, &o, &other),
            content_key(&plan, &o, &digests)
        );
    }

    /// Many host files of many sizes (a few span several read buffers), as a release has.
    fn many_files(dir: &Path) -> Vec<FileEntry> {
        (0..60usize)
            .map(|i| {
                let len = match i % 6 {
                    0 => 0,
                    1 => 3 * tar_builder::READ_BUFFER + i,
                    _ => i * 997,
                };
                let path = dir.join(format!("m{i}"));
                let bytes: Vec<u8> = (0..len).map(|j| (j * 13 + i) as u8).collect();
                fs::write(&path, bytes).unwrap();
                FileEntry::new(
                    format!("/app/lib/d{}/m{i}", i % 7),
                    Content::File(path),
                    0o644,
                )
            })
            .collect()
    }

    /// Write every file again with the same bytes, as a new file renamed into place (a new
    /// inode, mtime and ctime: what `mix release` leaves).
    fn rewrite_all(entries: &[FileEntry]) {
        for e in entries {
            if let Content::File(path) = &e.content {
                let bytes = fs::read(path).unwrap();
                let tmp = path.with_extension("tmp");
                fs::write(&tmp, bytes).unwrap();
                fs::rename(&tmp, path).unwrap();
            }
        }
    }

    #[test]
    fn after_a_cold_build_every_file_rewritten_unchanged_is_a_content_hit() {
        for (compression, mode) in [
            (Compression::Gzip, CacheMode::On),
            (Compression::Zstd, CacheMode::On),
            (Compression::Zstd, CacheMode::Content),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let store = BlobStore::open(dir.path().join("store"))
                .unwrap()
                .with_layer_cache(mode);
            let entries = many_files(dir.path());
            let o = opts(compression, 0);
            let builds = Cell::new(0);
            let first = build(&entries, &o, &store, &builds);
            rewrite_all(&entries);
            let plan = tar_builder::plan(&entries).unwrap();
            let new_stat = stat_key(&plan, &o).unwrap();
            assert!(lookup(&store, &new_stat, &o).is_none());

            let second = build(&entries, &o, &store, &builds);
            assert_eq!(
                builds.get(),
                1,
                "{compression} {mode:?}: no build after the cold one"
            );
            assert_eq!(second, first);
            assert_same_as_fresh(&second, &entries, &o);
            if mode == CacheMode::On {
                assert_eq!(lookup(&store, &new_stat, &o), Some(second));
            }
        }
    }

    #[test]
    fn one_changed_byte_in_one_file_of_many_misses() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("store")).unwrap();
        let entries = many_files(dir.path());
        let o = opts(Compression::Zstd, 0);
        let builds = Cell::new(0);
        let first = build(&entries, &o, &store, &builds);
        rewrite_all(&entries);
        // Same size, one byte flipped in the middle of a file spanning several buffers.
        let Content::File(victim) = &entries[43].content else {
            unreachable!()
        };
        let mut bytes = fs::read(victim).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        fs::write(victim, &bytes).unwrap();

        let second = build(&entries, &o, &store, &builds);
        assert_eq!(builds.get(), 2, "the changed byte was not seen");
        assert_ne!(second.diff_id, first.diff_id);
        assert_same_as_fresh(&second, &entries, &o);
        // The rebuild recorded its own content key: the same files again are a hit.
        rewrite_all(&entries);
        assert_eq!(build(&entries, &o, &store, &builds), second);
        assert_eq!(builds.get(), 2);
    }

    #[test]
    fn off_hands_the_build_nothing_to_hash() {
        let f = fixture();
        let store = f.store.clone().with_layer_cache(CacheMode::Off);
        let plan = tar_builder::plan(&f.entries).unwrap();
        let o = opts(Compression::Zstd, 0);
        build_cached(&plan, &o, &store, |digests| {
            assert!(digests.is_none());
            build_uncached(&plan, 0, &o, &store, digests)
        })
        .unwrap();
    }

    #[test]
    fn binaries_only_need_one_key() {
        let f = fixture();
        let o = opts(Compression::Gzip, 0);
        let builds = Cell::new(0);
        let entries = &f.entries[2..];
        let first = build(entries, &o, &f.store, &builds);
        assert_eq!(build(entries, &o, &f.store, &builds), first);
        assert_eq!((builds.get(), records(&f.store)), (1, 1));
    }

    #[test]
    fn off_always_builds_and_records_nothing() {
        let f = fixture();
        let store = f.store.clone().with_layer_cache(CacheMode::Off);
        let builds = Cell::new(0);
        let o = opts(Compression::Zstd, 0);
        build(&f.entries, &o, &store, &builds);
        build(&f.entries, &o, &store, &builds);
        assert_eq!(builds.get(), 2);
        assert_eq!(records(&store), 0);
    }

    #[test]
    fn content_mode_ignores_timestamps_but_not_bytes() {
        let f = fixture();
        let store = f.store.clone().with_layer_cache(CacheMode::Content);
        let builds = Cell::new(0);
        let o = opts(Compression::Zstd, 0);
        build(&f.entries, &o, &store, &builds);
        set_mtime(&host(&f, 0), SystemTime::UNIX_EPOCH);
        build(&f.entries, &o, &store, &builds);
        assert_eq!(builds.get(), 1);
        assert_eq!(records(&store), 2, "content and shape keys, no stat key");
    }

    #[test]
    fn a_missing_or_truncated_blob_is_rebuilt() {
        let f = fixture();
        let builds = Cell::new(0);
        let o = opts(Compression::Gzip, 0);
        let first = build(&f.entries, &o, &f.store, &builds);
        let blob = first.blob.clone().unwrap();
        fs::remove_file(&blob).unwrap();
        let second = build(&f.entries, &o, &f.store, &builds);
        assert_eq!(builds.get(), 2);
        assert_same_as_fresh(&second, &f.entries, &o);

        let full = fs::read(&blob).unwrap();
        fs::write(&blob, &full[..full.len() / 2]).unwrap();
        let third = build(&f.entries, &o, &f.store, &builds);
        assert_eq!(builds.get(), 3);
        assert_eq!(third, first);
        // The rebuild replaced the truncated blob.
        assert_same_as_fresh(&third, &f.entries, &o);
    }

    #[test]
    fn corrupt_hostile_or_oversized_records_are_misses() {
        let f = fixture();
        let o = opts(Compression::Zstd, 0);
        let builds = Cell::new(0);
        let layer = build(&f.entries, &o, &f.store, &builds);
        let plan = tar_builder::plan(&f.entries).unwrap();
        let key = stat_key(&plan, &o).unwrap();
        let path = record_path(&f.store, &key);
        let other = f.store.put_bytes(b"some other blob").unwrap().0;
        let good = fs::read(&path).unwrap();
        let rewrite = |from: &str, to: &str| {
            String::from_utf8(good.clone())
                .unwrap()
                .replace(from, to)
                .into_bytes()
        };
        let mut oversized = good.clone();
        oversized.extend(vec![b' '; MAX_RECORD_BYTES as usize]);
        let bad: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"not json".to_vec(),
            good[..good.len() - 3].to_vec(),
            oversized,
            rewrite(&layer.digest.to_string(), &other.to_string()),
            rewrite(&layer.digest.to_string(), "sha256:../../etc/passwd"),
            rewrite(&format!("\"size\":{}", layer.size), "\"size\":15"),
            rewrite(&format!("\"size\":{}", layer.size), "\"size\":-1"),
            rewrite(
                Compression::Zstd.media_type(),
                Compression::Gzip.media_type(),
            ),
        ];
        for bytes in bad {
            fs::write(&path, &bytes).unwrap();
            assert_eq!(
                lookup(&f.store, &key, &o),
                None,
                "{:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
        // A record that is a symlink to a good record elsewhere is not followed.
        let elsewhere = f.dir.path().join("record");
        fs::write(&elsewhere, &good).unwrap();
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        assert_eq!(lookup(&f.store, &key, &o), None);
        fs::remove_file(&path).unwrap();
        fs::write(&path, &good).unwrap();
        assert_eq!(lookup(&f.store, &key, &o), Some(layer));
    }

    #[test]
    fn a_hit_marks_the_blob_and_the_record_used() {
        let f = fixture();
        let o = opts(Compression::Zstd, 0);
        let builds = Cell::new(0);
        let layer = build(&f.entries, &o, &f.store, &builds);
        let plan = tar_builder::plan(&f.entries).unwrap();
        let record = record_path(&f.store, &stat_key(&plan, &o).unwrap());
        let blob = layer.blob.unwrap();
        let old = SystemTime::now() - Duration::from_secs(86_400);
        set_mtime(&blob, old);
        set_mtime(&record, old);
        build(&f.entries, &o, &f.store, &builds);
        assert_eq!(builds.get(), 1);
        for p in [&blob, &record] {
            assert!(fs::metadata(p).unwrap().modified().unwrap() > old + Duration::from_secs(3600));
        }
    }

    #[test]
    fn a_file_changed_during_the_build_leaves_no_record() {
        let f = fixture();
        let o = opts(Compression::Zstd, 0);
        let plan = tar_builder::plan(&f.entries).unwrap();
        let b = host(&f, 1);
        build_cached(&plan, &o, &f.store, |digests| {
            let built = build_uncached(&plan, 0, &o, &f.store, digests);
            fs::write(&b, b"later\n").unwrap();
            built
        })
        .unwrap();
        assert_eq!(records(&f.store), 0);
    }

    #[test]
    fn a_file_changed_during_a_rebuild_leaves_no_record_either() {
        // The rebuild reuses the content key of its lookup: the status check must guard it too.
        let f = fixture();
        let o = opts(Compression::Zstd, 0);
        build(&f.entries, &o, &f.store, &Cell::new(0));
        assert_eq!(records(&f.store), 3);
        let b = host(&f, 1);
        fs::write(&b, b"world\n").unwrap();
        let plan = tar_builder::plan(&f.entries).unwrap();
        let built = build_cached(&plan, &o, &f.store, |digests| {
            assert!(digests.is_none(), "the lookup's content key is reused");
            let built = build_uncached(&plan, 0, &o, &f.store, digests);
            fs::write(&b, b"later\n").unwrap();
            built
        })
        .unwrap();
        assert_eq!(records(&f.store), 3);
        let named: Vec<String> = fs::read_dir(f.store.root().join(RECORDS_DIR))
            .unwrap()
            .map(|r| {
                let record: Record =
                    serde_json::from_slice(&fs::read(r.unwrap().path()).unwrap()).unwrap();
                record.digest
            })
            .collect();
        assert!(!named.contains(&built.digest.to_string()), "{named:?}");
    }

    #[test]
    fn an_unreadable_file_is_the_builds_error_not_the_caches() {
        let f = fixture();
        let mut entries = f.entries.clone();
        let missing = f.dir.path().join("missing");
        entries.push(FileEntry::new("/x", Content::File(missing), 0o644));
        let err =
            crate::layer::build_layer(&entries, &opts(Compression::Zstd, 0), &f.store).unwrap_err();
        assert!(matches!(err, Error::FileRead { .. }), "{err:?}");
        assert_eq!(records(&f.store), 0);
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        /// The blob a record may name: present in the store, so only the checks keep it out.
        fn store_with_a_blob() -> (tempfile::TempDir, BlobStore, Digest) {
            let dir = tempfile::tempdir().unwrap();
            let store = BlobStore::open(dir.path()).unwrap();
            let (digest, _) = store.put_bytes(b"a stored blob").unwrap();
            (dir, store, digest)
        }

        fn lookup_bytes(bytes: &[u8]) -> (Option<Layer>, BlobStore, Digest, tempfile::TempDir) {
            let (dir, store, digest) = store_with_a_blob();
            let key = Key(Digest::of(b"key"));
            let path = record_path(&store, &key);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, bytes).unwrap();
            let found = lookup(&store, &key, &opts(Compression::Zstd, 0));
            (found, store, digest, dir)
        }

        /// Whatever a hit returns is a blob of the store with the size the layer claims.
        fn check_hit(found: Option<Layer>, store: &BlobStore) -> Result<(), TestCaseError> {
            if let Some(layer) = found {
                let blob = layer.blob.clone().unwrap();
                prop_assert_eq!(&blob, &store.path(&layer.digest));
                prop_assert_eq!(fs::metadata(&blob).unwrap().len(), layer.size);
                prop_assert_eq!(layer.media_type, Compression::Zstd.media_type());
            }
            Ok(())
        }

        proptest! {
            #[test]
            fn prop_cache_record_arbitrary_bytes_miss_or_name_a_checked_blob(
                bytes in proptest::collection::vec(any::<u8>(), 0..512)
            ) {
                let (found, store, _, _dir) = lookup_bytes(&bytes);
                check_hit(found, &store)?;
            }

            #[test]
            fn prop_cache_record_fields_only_hit_on_the_real_blob(
                digest in "(sha256:)?[0-9a-f./]{0,70}",
                size in prop_oneof![Just(13i64), any::<i64>()],
                media in prop_oneof![
                    Just(Compression::Zstd.media_type().to_string()),
                    "[a-z./+]{0,40}",
                ],
                real_digest in any::<bool>(),
            ) {
                let (_d, _s, stored) = store_with_a_blob();
                let digest = if real_digest { stored.to_string() } else { digest };
                let json = format!(
                    r#"{{"digest":{digest:?},"diff_id":{digest:?},"size":{size},"media_type":{media:?}}}"#
                );
                let (found, store, stored, _dir) = lookup_bytes(json.as_bytes());
                if let Some(layer) = &found {
                    prop_assert_eq!(&layer.digest, &stored);
                }
                check_hit(found, &store)?;
            }
        }
    }

    #[test]
    fn modes_parse() {
        assert_eq!(CacheMode::parse("on").unwrap(), CacheMode::On);
        assert_eq!(CacheMode::parse("off").unwrap(), CacheMode::Off);
        assert_eq!(CacheMode::parse("content").unwrap(), CacheMode::Content);
        assert!(CacheMode::parse("yes").is_err());
    }
}
