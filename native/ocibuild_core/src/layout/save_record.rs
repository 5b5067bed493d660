//! The save record: a tarball save whose output is already on disk, unchanged, is not written
//! again.
//!
//! Before it writes, the tarball sink knows its whole plan: every member's name and mode, the
//! bytes of each JSON file, each blob's digest, size and framing, the mtime stamped on every
//! member and the framing of the file. The **plan key** is the sha256 of that plan (with this
//! record's format and the crate's version, so another writer never trusts an older one's
//! output). Two saves with the same key write the same bytes.
//!
//! After a save, `<root>/saves/<sha256 of the absolute output path>` records the key and the
//! **identity** of the file written: size, mtime and ctime (both to the nanosecond), device
//! and inode, taken from the written file's own descriptor after its rename. The next save to
//! that path with the same key skips the write when the file there still has exactly that
//! identity. Rewriting, truncating, replacing or touching a file always changes its ctime,
//! which no user tool can set back (`touch -d` restores the mtime only), so any edit is seen
//! and the output is written again. File systems stamp changes with a coarse clock, so the
//! record is written only once that clock has moved past the file's ctime (a wait of at most a
//! jiffy, checked on a probe file beside the output): an edit made after the save returns
//! always gets a later ctime.
//!
//! Records follow the layer cache's rules: read only when a regular file (not a link) of at
//! most [`MAX_RECORD_BYTES`], written to a temp file and renamed into place, and anything in
//! doubt (missing, corrupt, hostile, another key, another identity) means the save writes.
//! Only the cache mode `On` uses records: `off` disables them, and `content` (for file systems
//! whose timestamps cannot be trusted) does too, as the identity is timestamps.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::tarball::TarballFraming;
use super::{parent_dir, Source};
use crate::blob_store::{record_file, BlobStore};
use crate::digest::{Digest, Hasher};
use crate::layer::CacheMode;

/// Bumped whenever what the plan key covers or how a record reads changes: old records then
/// miss.
const FORMAT_VERSION: &str = "1";
pub use crate::blob_store::record_file::MAX_RECORD_BYTES;
/// Where the records live, under the store's root.
pub const RECORDS_DIR: &str = "saves";

/// The sha256 of a save's plan, built member by member in the order they are written.
pub struct PlanKey(Hasher);

impl PlanKey {
    /// A key for a tarball framed as `framing`, every member stamped `mtime`.
    pub fn new(framing: TarballFraming, mtime: u64) -> PlanKey {
        let mut h = Hasher::new();
        let settings = format!(
            "ocibuild-save/{FORMAT_VERSION}/{}/{framing:?}/mtime-{mtime}",
            env!("CARGO_PKG_VERSION"),
        );
        put(&mut h, settings.as_bytes());
        PlanKey(h)
    }

    pub fn dir(&mut self, name: &[u8], mode: u32) {
        self.0.update(b"d");
        put(&mut self.0, name);
        self.0.update(&mode.to_le_bytes());
    }

    /// A regular member: a blob by its digest, size and framing (its bytes are checked against
    /// the digest whenever it is written), any other file by its bytes' sha256.
    pub fn file(&mut self, name: &[u8], mode: u32, source: &Source) {
        self.0.update(b"f");
        put(&mut self.0, name);
        self.0.update(&mode.to_le_bytes());
        match source {
            Source::Bytes(bytes) => {
                self.0.update(b"b");
                self.0.update(&(bytes.len() as u64).to_le_bytes());
                self.0.update(Digest::of(bytes).hex().as_bytes());
            }
            Source::Blob {
                digest,
                size,
                compressed,
                ..
            } => {
                self.0.update(if *compressed { b"z" } else { b"u" });
                self.0.update(&size.to_le_bytes());
                self.0.update(digest.hex().as_bytes());
            }
        }
    }

    pub fn finish(self) -> Digest {
        self.0.finish()
    }
}

/// Every variable-length part is length-prefixed, so two different plans never hash alike.
fn put(h: &mut Hasher, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// What identifies one version of a file: any rewrite changes at least its ctime.
#[derive(Serialize, Deserialize, PartialEq, Eq, Debug)]
struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    ctime: i64,
    ctime_nsec: i64,
}

impl Identity {
    fn of(meta: &fs::Metadata) -> Identity {
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Record {
    key: String,
    identity: Identity,
}

/// The save records of a blob store, or none (mode `off` or `content`).
#[derive(Clone, Copy)]
pub struct SaveRecords<'a>(Option<&'a BlobStore>);

impl<'a> SaveRecords<'a> {
    /// The records of `store`, used only when its cache mode is `On`.
    pub fn of(store: &'a BlobStore) -> SaveRecords<'a> {
        SaveRecords((store.layer_cache() == CacheMode::On).then_some(store))
    }

    /// No records: every save writes.
    pub fn none() -> SaveRecords<'static> {
        SaveRecords(None)
    }

    /// Whether `output` is, exactly, the file a save with `key` wrote there last.
    pub fn unchanged(&self, output: &Path, key: &Digest) -> bool {
        let Some(record_path) = self.record_path(output) else {
            return false;
        };
        let Some(record) = record_file::read(&record_path)
            .and_then(|bytes| serde_json::from_slice::<Record>(&bytes).ok())
        else {
            return false;
        };
        if record.key != key.hex() {
            return false;
        }
        match fs::symlink_metadata(output) {
            Ok(meta) if meta.is_file() => Identity::of(&meta) == record.identity,
            _ => false,
        }
    }

    /// Record that `written` (the open file just renamed to `output`) is what a save with
    /// `key` wrote. Best effort: a record that cannot be written costs a write next time.
    pub fn record(&self, output: &Path, key: &Digest, written: &File) {
        let Some(record_path) = self.record_path(output) else {
            return;
        };
        let _ = try_record(&record_path, output, key, written);
    }

    fn record_path(&self, output: &Path) -> Option<PathBuf> {
        let store = self.0?;
        let absolute = std::path::absolute(output).ok()?;
        let name = Digest::of(absolute.as_os_str().as_encoded_bytes());
        Some(store.root().join(RECORDS_DIR).join(name.hex()))
    }
}

fn try_record(
    record_path: &Path,
    output: &Path,
    key: &Digest,
    written: &File,
) -> std::io::Result<()> {
    let meta = written.metadata()?;
    if !clock_moved_past(&parent_dir(output), &meta)? {
        return Ok(());
    }
    // Still our file at the path: the rename was not undone or raced by another writer.
    match fs::symlink_metadata(output) {
        Ok(now) if now.is_file() && Identity::of(&now) == Identity::of(&meta) => {}
        _ => return Ok(()),
    }
    let json = serde_json::to_vec(&Record {
        key: key.hex().to_string(),
        identity: Identity::of(&meta),
    })?;
    record_file::write(record_path, &json)
}

/// How long [`clock_moved_past`] waits for the file system's clock to tick: a few jiffies on
/// Linux; a file system with coarser timestamps (FAT's 2 s) simply gets no records.
const SETTLE_BOUND: Duration = Duration::from_millis(50);

/// Whether the file system's clock in `dir` has moved past `written`'s ctime, waiting for it
/// at most [`SETTLE_BOUND`]. File systems stamp changes with a coarse clock (one jiffy, 1 to
/// 10 ms): an edit in the same tick as our rename would get the very same ctime and mtime, and
/// an edit of the same size would go unseen. Once a change made now gets a later ctime, every
/// edit after the save returns is visible in the identity.
fn clock_moved_past(dir: &Path, written: &fs::Metadata) -> std::io::Result<bool> {
    let written_at = (written.ctime(), written.ctime_nsec());
    let mut probe = tempfile::Builder::new()
        .prefix(".ocibuild-probe-")
        .tempfile_in(dir)?;
    let deadline = Instant::now() + SETTLE_BOUND;
    loop {
        // A write stamps the probe with the clock's time now.
        probe.write_all(b"t")?;
        let now = probe.as_file().metadata()?;
        if (now.ctime(), now.ctime_nsec()) > written_at {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::time::SystemTime;

    use super::*;
    use crate::image::Image;
    use crate::layout::tests::{image_with_blob, leftovers};
    use crate::layout::{
        render_all, save_sources_recorded, SaveFormat, SaveOptions, Saved, Wanted,
    };

    struct Fixture {
        dir: tempfile::TempDir,
        store: BlobStore,
        image: Image,
        out: PathBuf,
    }

    fn fixture(name: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("store")).unwrap();
        let image = image_with_blob(dir.path(), None);
        let out = dir.path().join(name);
        Fixture {
            dir,
            store,
            image,
            out,
        }
    }

    fn opts() -> SaveOptions {
        SaveOptions {
            tag: Some("app:1".into()),
            created: 1_700_000_000,
            ..Default::default()
        }
    }

    fn save_with(f: &Fixture, image: &Image, opts: &SaveOptions) -> Saved {
        let sources = render_all(std::slice::from_ref(image), opts).unwrap();
        save_sources_recorded(
            &sources,
            &f.out,
            opts,
            SaveRecords::of(&f.store),
            Wanted::always(),
        )
        .unwrap()
    }

    fn save(f: &Fixture) -> Saved {
        save_with(f, &f.image, &opts())
    }

    fn identity(path: &Path) -> (u64, i64, i64) {
        let meta = fs::metadata(path).unwrap();
        (meta.ino(), meta.mtime(), meta.mtime_nsec())
    }

    fn record_file(f: &Fixture) -> PathBuf {
        SaveRecords::of(&f.store).record_path(&f.out).unwrap()
    }

    #[test]
    fn an_unchanged_save_leaves_the_file_as_it_is() {
        for name in ["image.tar.gz", "image.tar"] {
            let f = fixture(name);
            assert_eq!(save(&f), Saved::Written);
            let before = identity(&f.out);
            let bytes = fs::read(&f.out).unwrap();
            assert_eq!(save(&f), Saved::Unchanged, "{name}");
            assert_eq!(identity(&f.out), before, "{name}: same inode and mtime");
            assert_eq!(fs::read(&f.out).unwrap(), bytes);
            assert!(
                leftovers(f.dir.path()).is_empty(),
                "no probe or temp file left"
            );
        }
    }

    #[test]
    fn an_output_edited_in_place_with_its_mtime_restored_is_written_again() {
        let f = fixture("image.tar.gz");
        save(&f);
        let good = fs::read(&f.out).unwrap();
        let mtime = fs::metadata(&f.out).unwrap().modified().unwrap();
        // Same size, other bytes, the old mtime set back: only the ctime tells.
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        fs::write(&f.out, &bad).unwrap();
        File::options()
            .write(true)
            .open(&f.out)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(save(&f), Saved::Written);
        assert_eq!(fs::read(&f.out).unwrap(), good);
    }

    #[test]
    fn a_replaced_touched_or_removed_output_is_written_again() {
        let f = fixture("image.tar.gz");
        save(&f);
        let good = fs::read(&f.out).unwrap();

        // Replaced by a copy of the very same bytes: another inode.
        let copy = f.dir.path().join("copy");
        fs::write(&copy, &good).unwrap();
        fs::rename(&copy, &f.out).unwrap();
        assert_eq!(save(&f), Saved::Written);
        assert_eq!(save(&f), Saved::Unchanged);

        // Touched: the bytes stay, the times move.
        File::options()
            .write(true)
            .open(&f.out)
            .unwrap()
            .set_modified(SystemTime::now())
            .unwrap();
        assert_eq!(save(&f), Saved::Written);

        fs::remove_file(&f.out).unwrap();
        assert_eq!(save(&f), Saved::Written);
        assert_eq!(fs::read(&f.out).unwrap(), good);
    }

    #[test]
    fn another_blob_tag_or_format_is_written() {
        let f = fixture("image.tar.gz");
        save(&f);

        let mut other = f.image.clone();
        let bytes = b"another layer".to_vec();
        let layer = &mut other.layers[0].layer;
        layer.digest = Digest::of(&bytes);
        layer.size = bytes.len() as u64;
        let blob = f.dir.path().join(layer.digest.hex());
        fs::write(&blob, &bytes).unwrap();
        layer.blob = Some(blob);
        assert_eq!(save_with(&f, &other, &opts()), Saved::Written);
        assert_eq!(save_with(&f, &other, &opts()), Saved::Unchanged);

        let retagged = SaveOptions {
            tag: Some("app:2".into()),
            ..opts()
        };
        assert_eq!(save_with(&f, &other, &retagged), Saved::Written);

        let oci = SaveOptions {
            format: SaveFormat::Oci,
            ..retagged
        };
        assert_eq!(save_with(&f, &other, &oci), Saved::Written);

        let later = SaveOptions {
            created: 1_800_000_000,
            ..oci
        };
        assert_eq!(save_with(&f, &other, &later), Saved::Written);
        assert_eq!(save_with(&f, &other, &later), Saved::Unchanged);
    }

    #[test]
    fn a_corrupt_oversized_or_linked_record_means_a_write() {
        let f = fixture("image.tar.gz");
        save(&f);
        let record = record_file(&f);
        let good = fs::read(&record).unwrap();

        fs::write(&record, b"{not json").unwrap();
        assert_eq!(save(&f), Saved::Written);

        fs::write(&record, vec![b' '; MAX_RECORD_BYTES as usize + 1]).unwrap();
        assert_eq!(save(&f), Saved::Written);

        // A link to a record that would match: records are never followed.
        save(&f);
        let elsewhere = f.dir.path().join("elsewhere");
        fs::rename(&record, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &record).unwrap();
        assert_eq!(save(&f), Saved::Written);

        // Another key, the identity right: written.
        let mut text: serde_json::Value = serde_json::from_slice(&good).unwrap();
        save(&f);
        let fresh: serde_json::Value = serde_json::from_slice(&fs::read(&record).unwrap()).unwrap();
        text["identity"] = fresh["identity"].clone();
        text["key"] = serde_json::Value::String("0".repeat(64));
        fs::write(&record, serde_json::to_vec(&text).unwrap()).unwrap();
        assert_eq!(save(&f), Saved::Written);
    }

    #[test]
    fn cache_modes_off_and_content_always_write() {
        for mode in [CacheMode::Off, CacheMode::Content] {
            let mut f = fixture("image.tar.gz");
            f.store = f.store.clone().with_layer_cache(mode);
            assert_eq!(save(&f), Saved::Written);
            assert_eq!(save(&f), Saved::Written, "{mode:?}");
            assert!(!f.store.root().join(RECORDS_DIR).exists());
        }
    }

    #[test]
    fn a_failed_save_keeps_the_old_file_and_the_next_save_finds_it() {
        let f = fixture("image.tar.gz");
        save(&f);
        let before = identity(&f.out);
        // Another plan whose blob is corrupt: the save fails and leaves the old output.
        let mut other = f.image.clone();
        other.layers[0].layer.digest = Digest::of(b"something else");
        let sources = render_all(std::slice::from_ref(&other), &opts()).unwrap();
        let failed = save_sources_recorded(
            &sources,
            &f.out,
            &opts(),
            SaveRecords::of(&f.store),
            Wanted::always(),
        );
        assert!(failed.is_err());
        assert_eq!(identity(&f.out), before);
        assert_eq!(save(&f), Saved::Unchanged);
    }
}
