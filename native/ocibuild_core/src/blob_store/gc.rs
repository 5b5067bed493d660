//! Garbage collection of the blob store: blobs and layer-cache records unused for longer than
//! a maximum age are removed, then the least recently used ones until the store fits a maximum
//! size.
//!
//! "Used" is a file's mtime: a blob and its record get one when written, and the layer cache
//! touches both on every hit. What another build may be writing or has just recorded is never
//! removed: anything younger than the grace period stays, whatever the bounds say. Only our
//! own names are considered (64 hex digits, or a `.incoming-` temp file a killed build left
//! behind), only regular files (a symlink is neither followed nor removed), and only in
//! `<root>/blobs/sha256` and `<root>/layers`, each itself a real directory.
//!
//! ```
//! use ocibuild_core::blob_store::{gc, BlobStore};
//! let dir = tempfile::tempdir()?;
//! let store = BlobStore::open(dir.path())?;
//! let report = gc::collect(&store, &gc::Limits::default())?;
//! assert_eq!(report.removed, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::BlobStore;
use crate::layer::cache::RECORDS_DIR;
use crate::{Error, Result};

/// The name of the file whose mtime says when the automatic collection last ran.
const STAMP: &str = "gc-stamp";

/// The bounds a collection enforces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Unused for longer than this: removed.
    pub max_age: Duration,
    /// Then the least recently used go until the store holds at most this many bytes.
    pub max_size: u64,
    /// Younger than this: kept, whatever the two bounds above say.
    pub grace: Duration,
}

/// 30 days, 10 GiB, one hour.
impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_age: Duration::from_secs(30 * 24 * 3600),
            max_size: 10 << 30,
            grace: Duration::from_secs(3600),
        }
    }
}

/// What a collection did: files removed and their bytes, files kept and theirs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub removed: u64,
    pub freed_bytes: u64,
    pub kept: u64,
    pub kept_bytes: u64,
}

/// One file of ours the collector may remove.
struct Item {
    path: PathBuf,
    size: u64,
    age: Duration,
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Blob,
    Record,
    /// A `.incoming-` file: a live writer keeps its mtime fresh, so an old one is a leftover.
    Temp,
}

/// Collect `store` now.
pub fn collect(store: &BlobStore, limits: &Limits) -> Result<Report> {
    collect_at(store, limits, SystemTime::now())
}

/// Collect `store` unless a collection started less than `interval` ago (the automatic bound:
/// run after every layer build, it costs one stat when not due). `None` when not due.
pub fn collect_if_due(
    store: &BlobStore,
    limits: &Limits,
    interval: Duration,
) -> Result<Option<Report>> {
    let stamp = store.root().join(STAMP);
    let now = SystemTime::now();
    if let Ok(meta) = fs::symlink_metadata(&stamp) {
        let last = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if now.duration_since(last).unwrap_or(Duration::ZERO) < interval {
            return Ok(None);
        }
    }
    // The stamp first, so builds finishing meanwhile do not all collect at once.
    write_stamp(&stamp).map_err(|e| Error::io("writing the blob store's gc-stamp", e))?;
    collect_at(store, limits, now).map(Some)
}

fn write_stamp(stamp: &Path) -> io::Result<()> {
    if fs::symlink_metadata(stamp).is_ok_and(|m| !m.is_file()) {
        return Err(io::Error::other("not a regular file"));
    }
    fs::write(stamp, b"")?;
    fs::File::options()
        .write(true)
        .open(stamp)?
        .set_modified(SystemTime::now())
}

/// Collect as if the time were `now` (tests move the clock instead of waiting).
pub fn collect_at(store: &BlobStore, limits: &Limits, now: SystemTime) -> Result<Report> {
    let records_dir = store.root().join(RECORDS_DIR);
    let mut items = scan(store.blobs_dir(), Kind::Blob, now)?;
    items.extend(scan(&records_dir, Kind::Record, now)?);
    let mut report = Report::default();
    let removable = |item: &Item| item.age > limits.grace;

    // Leftover temp files and anything past the maximum age.
    let (old, mut rest): (Vec<Item>, Vec<Item>) = items.into_iter().partition(|item| {
        removable(item) && (item.kind == Kind::Temp || item.age > limits.max_age)
    });
    for item in old {
        remove(item, &mut report)?;
    }

    // Then least recently used first, until the rest fits.
    rest.sort_by_key(|item| std::cmp::Reverse(item.age));
    let mut total: u64 = rest.iter().map(|i| i.size).sum();
    let mut kept = Vec::new();
    for item in rest {
        if total > limits.max_size && removable(&item) {
            total -= item.size;
            remove(item, &mut report)?;
        } else {
            kept.push(item);
        }
    }

    // A record whose blob is gone can only miss: remove it too.
    for item in kept {
        if item.kind == Kind::Record && removable(&item) && blob_gone(store, &item.path) {
            remove(item, &mut report)?;
        } else {
            report.kept += 1;
            report.kept_bytes += item.size;
        }
    }
    Ok(report)
}

/// Our files in `dir`; nothing when `dir` is missing or is not a real directory.
fn scan(dir: &Path, kind: Kind, now: SystemTime) -> Result<Vec<Item>> {
    let context = || format!("reading {} for garbage collection", dir.display());
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Ok(Vec::new()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(context(), e)),
    }
    let mut items = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(context(), e))? {
        let entry = entry.map_err(|e| Error::io(context(), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let kind = if is_hex_name(name) {
            kind
        } else if name.starts_with(".incoming-") {
            Kind::Temp
        } else {
            continue;
        };
        // Not following links: a symlink is not a file of ours.
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        items.push(Item {
            path: entry.path(),
            size: meta.len(),
            // A file from the future is as new as can be.
            age: now.duration_since(used).unwrap_or(Duration::ZERO),
            kind,
        });
    }
    Ok(items)
}

fn is_hex_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn remove(item: Item, report: &mut Report) -> Result<()> {
    match fs::remove_file(&item.path) {
        Ok(()) => {
            report.removed += 1;
            report.freed_bytes += item.size;
            Ok(())
        }
        // Another collection got there first.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", item.path.display()), e)),
    }
}

/// Whether the blob a record names is missing. A record we cannot read or parse names nothing
/// usable, so it counts as gone.
fn blob_gone(store: &BlobStore, record: &Path) -> bool {
    #[derive(serde::Deserialize)]
    struct Named {
        digest: String,
    }
    let named = super::record_file::read(record)
        .and_then(|bytes| serde_json::from_slice::<Named>(&bytes).ok())
        .and_then(|n| crate::digest::Digest::parse(&n.digest).ok());
    match named {
        Some(digest) => !store.path(&digest).is_file(),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    const HOUR: Duration = Duration::from_secs(3600);
    const DAY: Duration = Duration::from_secs(86_400);

    fn limits(max_age: Duration, max_size: u64) -> Limits {
        Limits {
            max_age,
            max_size,
            grace: HOUR,
        }
    }

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        (dir, store)
    }

    /// A blob of `size` bytes last used `age` ago.
    fn blob(store: &BlobStore, size: usize, seed: u8, age: Duration) -> PathBuf {
        let (_, path) = store.put_bytes(&vec![seed; size]).unwrap();
        set_age(&path, age);
        path
    }

    /// A layer-cache record naming `blob`, last used `age` ago.
    fn record(store: &BlobStore, blob: &Path, age: Duration) -> PathBuf {
        let dir = store.root().join(RECORDS_DIR);
        fs::create_dir_all(&dir).unwrap();
        let hex = blob.file_name().unwrap().to_str().unwrap();
        let json = format!(
            r#"{{"digest":"sha256:{hex}","diff_id":"sha256:{hex}","size":1,"media_type":"x"}}"#
        );
        let path = dir.join(Digest::of(json.as_bytes()).hex());
        fs::write(&path, json).unwrap();
        set_age(&path, age);
        path
    }

    fn set_age(path: &Path, age: Duration) {
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(SystemTime::now() - age)
            .unwrap();
    }

    #[test]
    fn removes_what_is_older_than_the_maximum_age() {
        let (_d, store) = store();
        let old = blob(&store, 100, 1, 40 * DAY);
        let old_record = record(&store, &old, 40 * DAY);
        let record_size = fs::metadata(&old_record).unwrap().len();
        let recent = blob(&store, 100, 2, 2 * DAY);
        let report = collect(&store, &limits(30 * DAY, u64::MAX)).unwrap();
        assert_eq!(
            report,
            Report {
                removed: 2,
                freed_bytes: 100 + record_size,
                kept: 1,
                kept_bytes: 100,
            }
        );
        assert!(!old.exists() && !old_record.exists());
        assert!(recent.exists());
    }

    #[test]
    fn then_the_least_recently_used_until_the_store_fits() {
        let (_d, store) = store();
        let oldest = blob(&store, 1000, 1, 5 * DAY);
        let middle = blob(&store, 1000, 2, 3 * DAY);
        let newest = blob(&store, 1000, 3, 2 * HOUR);
        let report = collect(&store, &limits(30 * DAY, 2000)).unwrap();
        assert_eq!((report.removed, report.freed_bytes), (1, 1000));
        assert_eq!((report.kept, report.kept_bytes), (2, 2000));
        assert!(!oldest.exists() && middle.exists() && newest.exists());
        let report = collect(&store, &limits(30 * DAY, 0)).unwrap();
        assert_eq!((report.removed, report.kept), (2, 0));
    }

    #[test]
    fn nothing_younger_than_the_grace_period_goes() {
        let (_d, store) = store();
        let just_written = blob(&store, 1000, 1, Duration::ZERO);
        let just_recorded = record(&store, &just_written, Duration::from_secs(60));
        let report = collect(&store, &limits(Duration::ZERO, 0)).unwrap();
        assert_eq!((report.removed, report.kept), (0, 2));
        assert!(just_written.exists() && just_recorded.exists());
    }

    #[test]
    fn a_record_whose_blob_is_gone_goes_too() {
        let (_d, store) = store();
        let gone = blob(&store, 10, 1, 2 * DAY);
        let orphan = record(&store, &gone, 2 * HOUR);
        fs::remove_file(&gone).unwrap();
        let kept_blob = blob(&store, 10, 2, 2 * DAY);
        let kept_record = record(&store, &kept_blob, 2 * HOUR);
        let report = collect(&store, &limits(30 * DAY, u64::MAX)).unwrap();
        assert_eq!((report.removed, report.kept), (1, 2));
        assert!(!orphan.exists() && kept_record.exists());
    }

    #[test]
    fn leftover_temp_files_go_other_names_and_links_stay() {
        let (d, store) = store();
        let temp = store.blobs_dir().join(".incoming-abc");
        fs::write(&temp, b"half").unwrap();
        set_age(&temp, 2 * HOUR);
        let live_temp = store.blobs_dir().join(".incoming-def");
        fs::write(&live_temp, b"being written").unwrap();
        let foreign = store.blobs_dir().join("README");
        fs::write(&foreign, b"not ours").unwrap();
        set_age(&foreign, 400 * DAY);
        // A link with a blob's name, to a file outside the store.
        let outside = d.path().join("precious");
        fs::write(&outside, b"keep me").unwrap();
        set_age(&outside, 400 * DAY);
        let link = store.blobs_dir().join("a".repeat(64));
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let report = collect(&store, &limits(30 * DAY, 0)).unwrap();
        assert_eq!((report.removed, report.kept), (1, 1));
        assert!(!temp.exists() && live_temp.exists() && foreign.exists());
        assert!(outside.exists() && fs::symlink_metadata(&link).is_ok());
    }

    #[test]
    fn a_records_dir_that_is_a_link_is_not_followed() {
        let (d, store) = store();
        let elsewhere = d.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        let victim = elsewhere.join("b".repeat(64));
        fs::write(&victim, b"x").unwrap();
        set_age(&victim, 400 * DAY);
        std::os::unix::fs::symlink(&elsewhere, store.root().join(RECORDS_DIR)).unwrap();
        let report = collect(&store, &limits(Duration::ZERO, 0)).unwrap();
        assert_eq!(report, Report::default());
        assert!(victim.exists());
    }

    #[test]
    fn the_automatic_collection_runs_once_per_interval() {
        let (_d, store) = store();
        let old = blob(&store, 10, 1, 40 * DAY);
        let l = limits(30 * DAY, u64::MAX);
        let first = collect_if_due(&store, &l, HOUR).unwrap();
        assert_eq!(first.map(|r| r.removed), Some(1));
        assert!(!old.exists());
        let again = blob(&store, 10, 2, 40 * DAY);
        assert_eq!(collect_if_due(&store, &l, HOUR).unwrap(), None);
        assert!(again.exists());
        set_age(&store.root().join(STAMP), 2 * HOUR);
        assert!(collect_if_due(&store, &l, HOUR).unwrap().is_some());
        assert!(!again.exists());
    }
}
