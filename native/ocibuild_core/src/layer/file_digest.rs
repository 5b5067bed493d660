//! The sha256 of each host file of a layer plan, read on several threads: what the layer
//! cache's content key is made of when a file's status changed but maybe not its bytes.
//!
//! One sha256 over a whole layer runs on one core; the files of a layer are independent, so
//! their hashes are computed by `threads` workers at once. Work is split by bytes: the files
//! are handed out largest first from a shared counter, so one worker does not end up with the
//! big shared objects while the others idle (a file itself is hashed by one worker, sha256
//! being sequential). Each worker reads through one bounded buffer, opens files the way the tar
//! builder does (regular files only, never blocking on a FIFO) and checks that a file holds
//! exactly the size it had when opened.
//!
//! ```no_run
//! # use ocibuild_core::layer::{file_digest, tar_builder, Content, FileEntry};
//! let files = vec![FileEntry::new("/app/a.beam", Content::File("a.beam".into()), 0o644)];
//! let plan = tar_builder::plan(&files)?;
//! let digests = file_digest::hash_files(&plan, 2)?;
//! assert_eq!(digests.len(), 1);
//! # Ok::<(), ocibuild_core::Error>(())
//! ```

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::tar_builder::{self, TarEntry, READ_BUFFER};
use super::Content;
use crate::digest::{Digest, Hasher};
use crate::{Error, Result};

/// A host file as its tar member holds it: the size and the sha256 of the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDigest {
    pub size: u64,
    pub digest: Digest,
}

/// The size and sha256 of every `{file, Path}` entry of `plan`, in plan order, hashed on up to
/// `threads` threads (the calling one included). The first file that cannot be read (missing,
/// not a regular file, changed while read) is the error; the remaining work is then dropped.
pub fn hash_files(plan: &[TarEntry], threads: usize) -> Result<Vec<FileDigest>> {
    let files: Vec<&std::path::Path> = plan
        .iter()
        .filter_map(|e| match e.content() {
            Some(Content::File(path)) => Some(path.as_path()),
            _ => None,
        })
        .collect();
    // Largest first: the long jobs start early and the small ones fill the gaps at the end.
    // A file that cannot be stat'ed sorts last and fails when its turn comes.
    let mut order: Vec<(u64, usize)> = files
        .iter()
        .enumerate()
        .map(|(i, p)| (std::fs::metadata(p).map(|m| m.len()).unwrap_or(0), i))
        .collect();
    order.sort_unstable_by(|a, b| b.cmp(a));

    let slots: Vec<Mutex<Option<FileDigest>>> = files.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let work = || {
        let mut buf = vec![0u8; READ_BUFFER];
        while !failed.load(Ordering::Relaxed) {
            let Some(&(_, i)) = order.get(next.fetch_add(1, Ordering::Relaxed)) else {
                break;
            };
            match hash_file(files[i], &mut buf) {
                Ok(d) => *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(d),
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    first_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                }
            }
        }
    };
    let workers = threads.clamp(1, files.len().max(1));
    std::thread::scope(|s| {
        for _ in 1..workers {
            s.spawn(work);
        }
        work();
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    slots
        .into_iter()
        .zip(&files)
        .map(|(slot, path)| {
            slot.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .ok_or_else(|| Error::FileRead {
                    path: path.to_path_buf(),
                    source: std::io::Error::other("file was not hashed"),
                })
        })
        .collect()
}

/// One file's size and sha256, read through `buf`.
fn hash_file(path: &std::path::Path, buf: &mut [u8]) -> Result<FileDigest> {
    let (mut file, size) = tar_builder::open_regular_file(path)?;
    let mut h = Hasher::new();
    tar_builder::read_exactly(&mut file, size, path, buf, &mut |piece| {
        h.update(piece);
        Ok(())
    })?;
    Ok(FileDigest {
        size,
        digest: h.finish(),
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::layer::FileEntry;

    /// Files of many sizes (empty, tiny, several read buffers), named so plan order differs
    /// from size order.
    fn files(dir: &std::path::Path) -> Vec<FileEntry> {
        [
            0usize,
            1,
            511,
            4096,
            READ_BUFFER - 1,
            READ_BUFFER + 1,
            3 * READ_BUFFER + 7,
            70_000,
        ]
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let path = dir.join(format!("f{i}"));
            let bytes: Vec<u8> = (0..len).map(|j| (j * 31 + i * 7) as u8).collect();
            fs::write(&path, bytes).unwrap();
            FileEntry::new(format!("/d{}/f{i}", 9 - i), Content::File(path), 0o644)
        })
        .chain([FileEntry::new(
            "/bytes",
            Content::Bytes(b"x".to_vec()),
            0o644,
        )])
        .collect()
    }

    #[test]
    fn each_file_in_plan_order_whatever_the_thread_count() {
        let dir = tempfile::tempdir().unwrap();
        let entries = files(dir.path());
        let plan = tar_builder::plan(&entries).unwrap();
        let expected: Vec<FileDigest> = plan
            .iter()
            .filter_map(|e| match e.content() {
                Some(Content::File(p)) => {
                    let bytes = fs::read(p).unwrap();
                    Some(FileDigest {
                        size: bytes.len() as u64,
                        digest: Digest::of(&bytes),
                    })
                }
                _ => None,
            })
            .collect();
        assert_eq!(expected.len(), 8);
        for threads in [0, 1, 2, 3, 8, 64] {
            assert_eq!(hash_files(&plan, threads).unwrap(), expected, "{threads}");
        }
    }

    #[test]
    fn the_tar_builder_learns_the_same_digests_while_writing() {
        let dir = tempfile::tempdir().unwrap();
        let entries = files(dir.path());
        let plan = tar_builder::plan(&entries).unwrap();
        let mut seen = Vec::new();
        let mut tar = Vec::new();
        tar_builder::write_tar_counting(&plan, 0, &mut tar, &mut |_| {}, Some(&mut seen)).unwrap();
        assert_eq!(seen, hash_files(&plan, 2).unwrap());
    }

    #[test]
    fn an_unreadable_file_is_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut entries = files(dir.path());
        let missing = dir.path().join("missing");
        entries.push(FileEntry::new("/m", Content::File(missing.clone()), 0o644));
        let plan = tar_builder::plan(&entries).unwrap();
        for threads in [1, 2] {
            let err = hash_files(&plan, threads).unwrap_err();
            assert!(
                matches!(err, Error::FileRead { ref path, .. } if *path == missing),
                "{err:?}"
            );
        }
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let entries = [FileEntry::new("/p", Content::File(fifo), 0o644)];
        let plan = tar_builder::plan(&entries).unwrap();
        let err = hash_files(&plan, 2).unwrap_err();
        assert!(
            matches!(err, Error::SpecialFile { kind: "fifo", .. }),
            "{err:?}"
        );
    }

    #[test]
    fn no_files_no_work() {
        let entries = [FileEntry::new("/b", Content::Bytes(vec![1]), 0o644)];
        let plan = tar_builder::plan(&entries).unwrap();
        assert_eq!(hash_files(&plan, 4).unwrap(), vec![]);
    }
}
