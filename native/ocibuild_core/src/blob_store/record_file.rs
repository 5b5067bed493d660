//! The small records kept beside the blobs (the layer cache's `layers/`, the save records'
//! `saves/`): anyone who can write to the store can write here, so a record is read only when it
//! is a regular file (never through a link, never blocking on a FIFO) of at most
//! [`MAX_RECORD_BYTES`], and written whole by temp file and rename, so a reader never sees half
//! of one.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A record is a few hundred bytes; anything larger is not ours.
pub const MAX_RECORD_BYTES: u64 = 4096;

/// A record's bytes, or `None` for anything that is not a record of ours.
pub fn read(path: &Path) -> Option<Vec<u8>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_RECORD_BYTES {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(MAX_RECORD_BYTES + 1)
        .read_to_end(&mut bytes)
        .ok()?;
    (bytes.len() as u64 <= MAX_RECORD_BYTES).then_some(bytes)
}

/// Put `bytes` at `path` atomically (its directory is created if needed).
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a record path has a parent"))?;
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".incoming-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_records_read_back_and_others_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records").join("a");
        write(&path, b"{\"x\":1}").unwrap();
        assert_eq!(read(&path).unwrap(), b"{\"x\":1}");
        let big = dir.path().join("big");
        fs::write(&big, vec![b' '; MAX_RECORD_BYTES as usize + 1]).unwrap();
        assert_eq!(read(&big), None);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert_eq!(read(&link), None, "never through a link");
        assert_eq!(read(dir.path()), None, "a directory is not a record");
        assert_eq!(read(&dir.path().join("missing")), None);
    }
}
