//! The uncompressed layer tar: validation, normalisation, ordering and the bytes themselves.
//!
//! The same file list must always give the same tar, whatever order the caller listed the files
//! in and whatever the host's owners and clocks say. So [`plan`] normalises every path, adds the
//! parent directories nobody listed, sorts everything bytewise and rejects anything ambiguous;
//! [`write_tar`] then writes ustar headers with uid/gid 0, empty owner names and one fixed mtime.
//! A path longer than the 100-byte name field gets a PAX `path` record (never a truncated name,
//! never a GNU long-link entry), which every OCI runtime reads.
//!
//! ```
//! use ocibuild_core::layer::{tar_builder, Content, FileEntry};
//! let files = vec![FileEntry::new("/app/bin/run", Content::Bytes(b"#!/bin/sh\n".to_vec()), 0o755)];
//! let plan = tar_builder::plan(&files)?;
//! let mut tar = Vec::new();
//! tar_builder::write_tar(&plan, 0, &mut tar)?;
//! assert_eq!(plan.iter().map(|e| e.path()).collect::<Vec<_>>(), [&b"app"[..], b"app/bin", b"app/bin/run"]);
//! # Ok::<(), ocibuild_core::Error>(())
//! ```

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use super::file_digest::FileDigest;
use super::{Content, FileEntry};
use crate::digest::Hasher;
use crate::{Error, Result};

/// Mode of the parent directories the builder adds on its own.
pub const IMPLIED_DIR_MODE: u32 = 0o755;

const BLOCK: usize = 512;
const NAME_LEN: usize = 100;
/// The largest value an 11-digit octal header field holds (8 GiB - 1; year 2242 for mtime).
const MAX_OCTAL_11: u64 = 0o77_777_777_777;
/// Linux's PATH_MAX counts the terminating NUL: a usable absolute path has at most 4095 bytes.
/// Tar itself (with PAX) has no limit, but a layer no runtime can unpack is of no use.
pub const MAX_PATH_LEN: usize = 4095;
/// Linux's NAME_MAX: the longest single component any common filesystem accepts.
pub const MAX_COMPONENT_LEN: usize = 255;

/// One tar member in its final position: a normalised path (no leading or trailing `/`) and
/// what goes there.
///
/// An implied directory shares its file's path bytes (`path[..len]`) instead of copying them,
/// so a deep path costs one pointer per parent, not one copy of the prefix per parent: the
/// plan's memory stays linear in its input.
#[derive(Debug)]
pub struct TarEntry<'a> {
    path: Arc<[u8]>,
    len: usize,
    kind: EntryKind<'a>,
    mode: u32,
}

#[derive(Debug)]
enum EntryKind<'a> {
    Dir,
    File(&'a Content),
}

impl TarEntry<'_> {
    /// The normalised path, without the trailing `/` a directory gets in the tar itself.
    pub fn path(&self) -> &[u8] {
        &self.path[..self.len]
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.kind, EntryKind::Dir)
    }

    pub fn mode(&self) -> u32 {
        self.mode
    }

    /// What a file holds; `None` for a directory (the layer cache keys on it).
    pub fn content(&self) -> Option<&Content> {
        match self.kind {
            EntryKind::Dir => None,
            EntryKind::File(content) => Some(content),
        }
    }
}

/// Normalise a path inside the image: strip leading `/`, fold `//` and `.` components.
/// Rejects empty paths, NUL bytes and `..` components (a layer must never write outside its
/// root, and `..` would make two spellings of one path), and paths Linux cannot hold: more
/// than [`MAX_PATH_LEN`] bytes as given, or a component over [`MAX_COMPONENT_LEN`] bytes.
/// The length is checked first, so an enormous path is refused before any other work.
pub fn normalize_path(path: &[u8]) -> Result<Vec<u8>> {
    let invalid = |why| Error::InvalidPath {
        path: String::from_utf8_lossy(path).into_owned(),
        why,
    };
    // As given, plus the leading `/` normalisation would add to a relative path.
    if path.len() + usize::from(!path.starts_with(b"/")) > MAX_PATH_LEN {
        return Err(invalid("path_too_long"));
    }
    if path.contains(&0) {
        return Err(invalid("nul_byte"));
    }
    let mut out = Vec::with_capacity(path.len());
    for component in path.split(|&b| b == b'/') {
        match component {
            b"" | b"." => continue,
            b".." => return Err(invalid("parent_component")),
            long if long.len() > MAX_COMPONENT_LEN => return Err(invalid("component_too_long")),
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(component);
            }
        }
    }
    if out.is_empty() {
        return Err(invalid("empty"));
    }
    Ok(out)
}

/// Validate the entries and put them in tar order: every file plus its implied parent
/// directories, sorted bytewise by path (a prefix sorts first, so a directory always precedes
/// what it contains).
pub fn plan(entries: &[FileEntry]) -> Result<Vec<TarEntry<'_>>> {
    let mut files = Vec::with_capacity(entries.len());
    for entry in entries {
        let path: Arc<[u8]> = normalize_path(&entry.path)?.into();
        if entry.mode > 0o7777 {
            return Err(Error::InvalidMode {
                path: String::from_utf8_lossy(&entry.path).into_owned(),
                mode: entry.mode,
            });
        }
        files.push(TarEntry {
            len: path.len(),
            path,
            kind: EntryKind::File(&entry.content),
            mode: entry.mode,
        });
    }
    files.sort_unstable_by(|a, b| a.path().cmp(b.path()));
    if let Some(pair) = files.windows(2).find(|w| w[0].path() == w[1].path()) {
        return Err(Error::DuplicatePath(image_path(pair[0].path())));
    }

    // Each implied directory once, as (the first file path it is a prefix of, its length).
    let mut seen = BTreeSet::new();
    let mut dirs = Vec::new();
    for file in &files {
        let mut end = file.len;
        while let Some(slash) = file.path[..end].iter().rposition(|&b| b == b'/') {
            // Parents of a path share its prefix, so once one is known all of its own are too.
            if !seen.insert(&file.path[..slash]) {
                break;
            }
            dirs.push(TarEntry {
                path: Arc::clone(&file.path),
                len: slash,
                kind: EntryKind::Dir,
                mode: IMPLIED_DIR_MODE,
            });
            end = slash;
        }
    }
    // A file whose path is also some other entry's directory cannot be both in one tar.
    if let Some(clash) = files.iter().find(|f| seen.contains(f.path())) {
        return Err(Error::DuplicatePath(image_path(clash.path())));
    }
    drop(seen);

    let mut all = dirs;
    all.extend(files);
    all.sort_unstable_by(|a, b| a.path().cmp(b.path()));
    Ok(all)
}

/// Write the tar for planned entries to `out`, every header stamped with `mtime`. File contents
/// are streamed: `Content::File` is read from disk in chunks while being written.
pub fn write_tar<W: Write>(entries: &[TarEntry], mtime: u64, out: &mut W) -> Result<()> {
    write_tar_counting(entries, mtime, out, &mut |_| {}, None)
}

/// [`write_tar`], telling `on_read` how many bytes of file contents went into the tar after each
/// piece (a build's progress). With `file_digests`, each host file's size and sha256 (of the
/// bytes that went into the tar) are pushed onto it in plan order: the layer cache's content
/// key, learnt from the one read the build makes anyway.
pub fn write_tar_counting<W: Write>(
    entries: &[TarEntry],
    mtime: u64,
    out: &mut W,
    on_read: &mut dyn FnMut(u64),
    mut file_digests: Option<&mut Vec<FileDigest>>,
) -> Result<()> {
    let write_err = |e| Error::io("writing layer tar", e);
    let mut buf = vec![0u8; READ_BUFFER];
    for entry in entries {
        match entry.kind {
            EntryKind::Dir => {
                let mut name = entry.path().to_vec();
                name.push(b'/');
                write_header(out, &name, b'5', entry.mode, 0, mtime).map_err(write_err)?;
            }
            EntryKind::File(Content::Bytes(bytes)) => {
                let size = bytes.len() as u64;
                write_header(out, entry.path(), b'0', entry.mode, size, mtime)
                    .map_err(write_err)?;
                out.write_all(bytes).map_err(write_err)?;
                on_read(size);
                write_padding(out, size).map_err(write_err)?;
            }
            EntryKind::File(Content::File(host_path)) => {
                let mut hasher = file_digests.as_ref().map(|_| Hasher::new());
                let size = write_file(out, entry, host_path, mtime, &mut buf, &mut |piece| {
                    if let Some(h) = hasher.as_mut() {
                        h.update(piece);
                    }
                    on_read(piece.len() as u64);
                })?;
                if let (Some(digests), Some(h)) = (file_digests.as_deref_mut(), hasher) {
                    digests.push(FileDigest {
                        size,
                        digest: h.finish(),
                    });
                }
            }
        }
    }
    out.write_all(&[0u8; 2 * BLOCK]).map_err(write_err)
}

/// Bytes read from a host file at a time.
pub(crate) const READ_BUFFER: usize = 256 * 1024;

/// Stream one host file into the tar; returns its size. The size in the header comes from the
/// open file, and the copy must produce exactly that many bytes: a file that changes while we
/// read it would otherwise leave a corrupt tar behind.
fn write_file<W: Write>(
    out: &mut W,
    entry: &TarEntry,
    host_path: &Path,
    mtime: u64,
    buf: &mut [u8],
    on_piece: &mut dyn FnMut(&[u8]),
) -> Result<u64> {
    let write_err = |e| Error::io("writing layer tar", e);
    let (mut file, size) = open_regular_file(host_path)?;
    write_header(out, entry.path(), b'0', entry.mode, size, mtime).map_err(write_err)?;
    read_exactly(&mut file, size, host_path, buf, &mut |piece| {
        out.write_all(piece).map_err(write_err)?;
        on_piece(piece);
        Ok(())
    })?;
    write_padding(out, size).map_err(write_err)?;
    Ok(size)
}

/// Read exactly `size` bytes of `file` (opened at `path`) through `buf`, handing each piece to
/// `each`, and fail if the file ends early or holds more: it changed while being read.
pub(crate) fn read_exactly(
    file: &mut File,
    size: u64,
    path: &Path,
    buf: &mut [u8],
    each: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let read_err = |source| Error::FileRead {
        path: path.to_path_buf(),
        source,
    };
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => return Err(read_err(changed("shrank"))),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        each(&buf[..n])?;
        left -= n as u64;
    }
    loop {
        match file.read(&mut buf[..1]) {
            Ok(0) => return Ok(()),
            Ok(_) => return Err(read_err(changed("grew"))),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        }
    }
}

/// Open a host file for reading only if it is a regular file, and return it with its size.
///
/// Opening a FIFO for reading blocks until a writer appears (forever, on a dirty scheduler
/// that killing the caller does not free), and a device can be endless (`/dev/zero`) or
/// react to being opened (a tape, a terminal). So the path is stat'ed first and refused unless
/// it is a regular file; the open itself is non-blocking and never makes a terminal ours, in
/// case the path was swapped in between; and the opened descriptor must be that same regular
/// file (device and inode), so a swap is caught rather than read. O_NONBLOCK stays set:
/// regular files ignore it, and a kernel file that would block a read (`/proc/kmsg`) fails
/// instead. Symlinks are followed: `{file, Path}` names the content to store, wherever the
/// link points. The one way the core opens a host file it did not create this call (layer
/// sources, blobs named by layer maps, blobs to save, export or push).
pub(crate) fn open_regular_file(path: &Path) -> Result<(File, u64)> {
    let read_err = |source| Error::FileRead {
        path: path.to_path_buf(),
        source,
    };
    let before = std::fs::metadata(path).map_err(read_err)?;
    refuse_unless_regular(path, &before)?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(read_err)?;
    let opened = file.metadata().map_err(read_err)?;
    refuse_unless_regular(path, &opened)?;
    if (opened.dev(), opened.ino()) != (before.dev(), before.ino()) {
        return Err(read_err(changed("was replaced")));
    }
    Ok((file, opened.len()))
}

fn refuse_unless_regular(path: &Path, meta: &std::fs::Metadata) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    let kind = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        return Err(Error::FileRead {
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::IsADirectory, "a directory, not a file"),
        });
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() {
        "character_device"
    } else if t.is_block_device() {
        "block_device"
    } else {
        "unknown"
    };
    Err(Error::SpecialFile {
        path: path.to_path_buf(),
        kind,
    })
}

fn changed(how: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("file {how} while it was being read"),
    )
}

/// A ustar header, preceded by a PAX extended header when a value does not fit its field.
fn write_header<W: Write>(
    out: &mut W,
    name: &[u8],
    typeflag: u8,
    mode: u32,
    size: u64,
    mtime: u64,
) -> io::Result<()> {
    let mut pax = Vec::new();
    if name.len() > NAME_LEN {
        pax_record(&mut pax, b"path", name);
    }
    if size > MAX_OCTAL_11 {
        pax_record(&mut pax, b"size", size.to_string().as_bytes());
    }
    if mtime > MAX_OCTAL_11 {
        pax_record(&mut pax, b"mtime", mtime.to_string().as_bytes());
    }
    if !pax.is_empty() {
        let pax_name = pax_header_name(name);
        let pax_size = pax.len() as u64;
        out.write_all(&ustar_header(
            &pax_name,
            b'x',
            0o644,
            pax_size,
            mtime.min(MAX_OCTAL_11),
        ))?;
        out.write_all(&pax)?;
        write_padding(out, pax_size)?;
    }
    // When PAX carries the path, the name field holds its first 100 bytes for readers that
    // predate PAX; PAX-aware readers (all container runtimes) use the record.
    let short_name = &name[..name.len().min(NAME_LEN)];
    out.write_all(&ustar_header(
        short_name,
        typeflag,
        mode,
        size,
        mtime.min(MAX_OCTAL_11),
    ))
}

/// Go's archive/tar naming for PAX headers (`<dir>/PaxHeaders.0/<base>`), cut to the field.
fn pax_header_name(name: &[u8]) -> Vec<u8> {
    let trimmed = name.strip_suffix(b"/").unwrap_or(name);
    let (dir, base) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
        None => (&b""[..], trimmed),
    };
    let mut pax_name = [dir, b"PaxHeaders.0/", base].concat();
    pax_name.truncate(NAME_LEN);
    pax_name
}

/// `"<len> <key>=<value>\n"`, where `<len>` counts the whole record including its own digits.
fn pax_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn ustar_header(name: &[u8], typeflag: u8, mode: u32, size: u64, mtime: u64) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name);
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0); // uid
    octal(&mut h[116..124], 0); // gid
    if size > MAX_OCTAL_11 {
        // GNU base-256 form, for readers that ignore the PAX `size` record.
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    } else {
        octal(&mut h[124..136], size);
    }
    octal(&mut h[136..148], mtime);
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], 0); // devmajor
    octal(&mut h[337..345], 0); // devminor
                                // The checksum is computed with its own field read as eight spaces.
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..154].copy_from_slice(format!("{sum:06o}").as_bytes());
    h[154] = 0;
    h
}

/// Zero-padded octal filling all but the last byte of the field, then a NUL.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    field[..digits].copy_from_slice(format!("{value:0digits$o}").as_bytes());
    field[digits] = 0;
}

fn write_padding<W: Write>(out: &mut W, size: u64) -> io::Result<()> {
    let rem = (size % BLOCK as u64) as usize;
    if rem == 0 {
        return Ok(());
    }
    out.write_all(&[0u8; BLOCK][..BLOCK - rem])
}

/// A normalised path as users write it in errors: absolute, as in the image.
fn image_path(path: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(path))
}

/// A directory member's header (`path/`, typeflag 5), for a writer that streams members of its
/// own (the layout tarball, whose blobs go through a verifying copy) in [`plan`] order.
pub fn write_dir_header<W: Write>(
    out: &mut W,
    path: &[u8],
    mode: u32,
    mtime: u64,
) -> io::Result<()> {
    let mut name = path.to_vec();
    name.push(b'/');
    write_header(out, &name, b'5', mode, 0, mtime)
}

/// A regular file member's header; the caller then writes exactly `size` bytes and
/// [`write_member_padding`].
pub fn write_file_header<W: Write>(
    out: &mut W,
    path: &[u8],
    mode: u32,
    size: u64,
    mtime: u64,
) -> io::Result<()> {
    write_header(out, path, b'0', mode, size, mtime)
}

/// The zeros that fill a member of `size` bytes to the next block.
pub fn write_member_padding<W: Write>(out: &mut W, size: u64) -> io::Result<()> {
    write_padding(out, size)
}

/// The two zero blocks that end an archive.
pub fn write_end<W: Write>(out: &mut W) -> io::Result<()> {
    out.write_all(&[0u8; 2 * BLOCK])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(path: &str, data: &[u8], mode: u32) -> FileEntry {
        FileEntry::new(path, Content::Bytes(data.to_vec()), mode)
    }

    fn tar_of(entries: &[FileEntry], mtime: u64) -> Vec<u8> {
        let plan = plan(entries).unwrap();
        let mut out = Vec::new();
        write_tar(&plan, mtime, &mut out).unwrap();
        out
    }

    /// (path, type, mode, uid, gid, uname, gname, mtime, contents) of every member.
    type Member = (
        Vec<u8>,
        tar::EntryType,
        u32,
        u64,
        u64,
        Vec<u8>,
        Vec<u8>,
        u64,
        Vec<u8>,
    );

    fn read_back(tar_bytes: &[u8]) -> Vec<Member> {
        let mut archive = tar::Archive::new(tar_bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let h = e.header().clone();
                let path = e.path_bytes().into_owned();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (
                    path,
                    h.entry_type(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.username_bytes().unwrap_or_default().to_vec(),
                    h.groupname_bytes().unwrap_or_default().to_vec(),
                    h.mtime().unwrap(),
                    data,
                )
            })
            .collect()
    }

    #[test]
    fn normalizes_paths() {
        assert_eq!(normalize_path(b"/app//bin/./run").unwrap(), b"app/bin/run");
        assert_eq!(normalize_path(b"app/").unwrap(), b"app");
        assert_eq!(normalize_path(b"./a").unwrap(), b"a");
    }

    #[test]
    fn rejects_unusable_paths() {
        let why = |p: &[u8]| match normalize_path(p) {
            Err(Error::InvalidPath { why, .. }) => why,
            other => panic!("expected InvalidPath for {p:?}, got {other:?}"),
        };
        assert_eq!(why(b""), "empty");
        assert_eq!(why(b"/"), "empty");
        assert_eq!(why(b"/./"), "empty");
        assert_eq!(why(b"/app/a\0b"), "nul_byte");
        assert_eq!(why(b"/app/../etc/passwd"), "parent_component");
        assert_eq!(why(b".."), "parent_component");
    }

    #[test]
    fn paths_linux_cannot_hold_are_refused() {
        let why = |p: &[u8]| match normalize_path(p) {
            Err(Error::InvalidPath { why, .. }) => why,
            other => panic!(
                "expected InvalidPath for a {}-byte path, got {other:?}",
                p.len()
            ),
        };
        let deepest = "/a".repeat(MAX_PATH_LEN / 2);
        assert_eq!(deepest.len(), MAX_PATH_LEN - 1);
        assert!(normalize_path(deepest.as_bytes()).is_ok());
        assert!(normalize_path(format!("{deepest}b").as_bytes()).is_ok());
        assert_eq!(why(format!("{deepest}bc").as_bytes()), "path_too_long");
        // Relative paths get a leading `/` in the image, so that byte counts too.
        assert_eq!(why(&deepest.as_bytes()[1..].repeat(2)), "path_too_long");
        assert_eq!(why(&b"a".repeat(MAX_PATH_LEN)), "path_too_long");
        assert!(normalize_path(&b"a".repeat(MAX_PATH_LEN - 1)).is_err());
        assert_eq!(why(&b"/a".repeat(50_000)), "path_too_long");
        assert_eq!(why(&b"/a".repeat(100_000)), "path_too_long");
        let longest_name = "n".repeat(MAX_COMPONENT_LEN);
        assert!(normalize_path(format!("/app/{longest_name}").as_bytes()).is_ok());
        assert_eq!(
            why(format!("/app/{longest_name}n/x").as_bytes()),
            "component_too_long"
        );
    }

    #[test]
    fn the_deepest_path_plans_with_memory_linear_in_its_length() {
        let deepest = "/a".repeat(MAX_PATH_LEN / 2);
        let files = [bytes(&deepest, b"x", 0o644)];
        let planned = plan(&files).unwrap();
        assert_eq!(planned.len(), MAX_PATH_LEN / 2);
        assert!(owned_path_bytes(&planned) <= deepest.len());
        let tar_bytes = tar_of(&files, 0);
        assert_eq!(read_back(&tar_bytes).len(), MAX_PATH_LEN / 2);
    }

    /// Bytes of path data the plan holds: each distinct allocation once.
    fn owned_path_bytes(planned: &[TarEntry]) -> usize {
        let mut seen = std::collections::HashSet::new();
        planned
            .iter()
            .filter(|e| seen.insert(Arc::as_ptr(&e.path) as *const u8))
            .map(|e| e.path.len())
            .sum()
    }

    /// Runs `write_tar` for one `{file, path}` on another thread and waits a bounded time, so
    /// a regression that blocks (a FIFO open) fails the test instead of hanging the suite.
    fn write_tar_within(host: &Path, limit: std::time::Duration) -> Result<Vec<u8>> {
        let host = host.to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let files = [FileEntry::new("/x", Content::File(host), 0o644)];
            let mut out = Vec::new();
            let result = plan(&files).and_then(|p| write_tar(&p, 0, &mut out));
            let _ = tx.send(result.map(|()| out));
        });
        rx.recv_timeout(limit)
            .expect("write_tar did not return in time: it blocked on the file")
    }

    fn special_kind(host: &Path) -> &'static str {
        match write_tar_within(host, std::time::Duration::from_secs(10)) {
            Err(Error::SpecialFile { path, kind }) => {
                assert_eq!(path, host);
                kind
            }
            other => panic!(
                "expected SpecialFile for {host:?}, got {:?}",
                other.map(|v| v.len())
            ),
        }
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path and a plain mode; mkfifo touches nothing else.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        assert_eq!(special_kind(&fifo), "fifo");
        // Through a symlink too: the link is followed, the FIFO behind it still refused.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&fifo, &link).unwrap();
        assert_eq!(special_kind(&link), "fifo");
    }

    #[test]
    fn devices_and_sockets_are_refused() {
        assert_eq!(special_kind(Path::new("/dev/zero")), "character_device");
        assert_eq!(special_kind(Path::new("/dev/null")), "character_device");
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert_eq!(special_kind(&sock), "socket");
    }

    #[test]
    fn a_file_shorter_than_its_metadata_says_is_an_error() {
        // sysfs attributes report 4096 bytes but yield a few: the same as a file shrinking.
        let sys_file = Path::new("/sys/kernel/mm/transparent_hugepage/enabled");
        assert!(sys_file.is_file(), "this test needs sysfs at /sys");
        let err = write_tar_within(sys_file, std::time::Duration::from_secs(10)).unwrap_err();
        assert!(
            matches!(err, Error::FileRead { ref source, .. } if source.to_string().contains("shrank")),
            "{err:?}"
        );
    }

    #[test]
    fn plan_reports_the_bad_entry() {
        let err = plan(&[bytes("/ok", b"", 0o644), bytes("/x/../y", b"", 0o644)]).unwrap_err();
        assert!(
            matches!(err, Error::InvalidPath { ref path, why: "parent_component" } if path == "/x/../y")
        );
    }

    #[test]
    fn rejects_duplicates_after_normalisation() {
        let err =
            plan(&[bytes("/app/a", b"1", 0o644), bytes("app//./a", b"2", 0o644)]).unwrap_err();
        assert!(
            matches!(err, Error::DuplicatePath(ref p) if p == "/app/a"),
            "{err:?}"
        );
    }

    #[test]
    fn rejects_a_file_that_is_also_a_parent_directory() {
        let err = plan(&[
            bytes("/app", b"file", 0o644),
            bytes("/app/lib/x", b"", 0o644),
        ])
        .unwrap_err();
        assert!(
            matches!(err, Error::DuplicatePath(ref p) if p == "/app"),
            "{err:?}"
        );
        let err = plan(&[
            bytes("/app/lib", b"file", 0o644),
            bytes("/app/lib/x", b"", 0o644),
        ])
        .unwrap_err();
        assert!(
            matches!(err, Error::DuplicatePath(ref p) if p == "/app/lib"),
            "{err:?}"
        );
    }

    #[test]
    fn rejects_modes_above_0o7777() {
        let err = plan(&[bytes("/a", b"", 0o10000)]).unwrap_err();
        assert!(
            matches!(err, Error::InvalidMode { ref path, mode: 0o10000 } if path == "/a"),
            "{err:?}"
        );
        assert!(plan(&[bytes("/a", b"", 0o7777)]).is_ok());
    }

    #[test]
    fn writes_sorted_entries_with_parents_first_and_fixed_metadata() {
        let files = [
            bytes("/z/last", b"zz", 0o600),
            bytes("/app/bin/run", b"#!/bin/sh\n", 0o755),
            bytes("/app-config", b"cfg", 0o644),
            bytes("/app/a.txt", b"hello", 0o4755),
        ];
        let tar_bytes = tar_of(&files, 1_700_000_000);
        assert_eq!(tar_bytes.len() % BLOCK, 0);
        let members = read_back(&tar_bytes);
        let summary: Vec<(&[u8], tar::EntryType, u32, &[u8])> = members
            .iter()
            .map(|m| (m.0.as_slice(), m.1, m.2, m.8.as_slice()))
            .collect();
        use tar::EntryType::{Directory as D, Regular as F};
        assert_eq!(
            summary,
            vec![
                (&b"app/"[..], D, 0o755, &b""[..]),
                (b"app-config", F, 0o644, b"cfg"),
                (b"app/a.txt", F, 0o4755, b"hello"),
                (b"app/bin/", D, 0o755, b""),
                (b"app/bin/run", F, 0o755, b"#!/bin/sh\n"),
                (b"z/", D, 0o755, b""),
                (b"z/last", F, 0o600, b"zz"),
            ]
        );
        for m in &members {
            assert_eq!((m.3, m.4), (0, 0), "uid/gid of {:?}", m.0);
            assert!(m.5.is_empty() && m.6.is_empty(), "owner names of {:?}", m.0);
            assert_eq!(m.7, 1_700_000_000, "mtime of {:?}", m.0);
        }
    }

    #[test]
    fn input_order_does_not_matter() {
        let a = [bytes("/b", b"2", 0o644), bytes("/a/x", b"1", 0o644)];
        let b = [bytes("/a/x", b"1", 0o644), bytes("/b", b"2", 0o644)];
        assert_eq!(tar_of(&a, 0), tar_of(&b, 0));
    }

    #[test]
    fn name_of_exactly_100_bytes_needs_no_pax() {
        let name = format!("d/{}", "n".repeat(98));
        assert_eq!(name.len(), 100);
        let tar_bytes = tar_of(&[bytes(&name, b"x", 0o644)], 0);
        let members = read_back(&tar_bytes);
        assert_eq!(members[1].0, name.as_bytes());
        // dir header, file header, one data block, two end blocks: no PAX header anywhere.
        assert_eq!(tar_bytes.len(), 5 * BLOCK);
        assert!(!contains(&tar_bytes, b"path="));
    }

    #[test]
    fn long_paths_get_a_pax_path_record() {
        // The directory alone (101 bytes, 102 with its slash) is already too long for the field.
        let dir = format!("app/{}", "d".repeat(97));
        let name = format!("{dir}/{}", "f".repeat(60));
        assert!(name.len() >= 150);
        let tar_bytes = tar_of(&[bytes(&name, b"data", 0o644)], 0);
        let members = read_back(&tar_bytes);
        let paths: Vec<&[u8]> = members.iter().map(|m| m.0.as_slice()).collect();
        let dir_entry = format!("{dir}/");
        assert_eq!(
            paths,
            vec![&b"app/"[..], dir_entry.as_bytes(), name.as_bytes()]
        );
        assert_eq!(members[2].8, b"data");
        // " path=" + name + "\n", plus the three digits of the length itself.
        let record = format!("{} path={name}\n", name.len() + 7 + 3);
        assert!(
            contains(&tar_bytes, record.as_bytes()),
            "PAX record for the file"
        );
        let record = format!("{} path={dir_entry}\n", dir_entry.len() + 7 + 3);
        assert!(
            contains(&tar_bytes, record.as_bytes()),
            "PAX record for the directory"
        );
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn pax_record_length_includes_its_digits() {
        for value_len in [0usize, 1, 88, 89, 90, 91, 985, 986, 995, 996, 997] {
            let mut rec = Vec::new();
            pax_record(&mut rec, b"path", &vec![b'a'; value_len]);
            let space = rec.iter().position(|&b| b == b' ').unwrap();
            let declared: usize = std::str::from_utf8(&rec[..space]).unwrap().parse().unwrap();
            assert_eq!(declared, rec.len(), "value length {value_len}");
        }
    }

    #[test]
    fn streams_host_files() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("big.bin");
        let data: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&host, &data).unwrap();
        let files = [FileEntry::new("/data/big.bin", Content::File(host), 0o640)];
        let members = read_back(&tar_of(&files, 0));
        assert_eq!(members[1].0, b"data/big.bin");
        assert_eq!(members[1].2, 0o640);
        assert_eq!(members[1].8, data);
    }

    #[test]
    fn missing_host_file_is_a_file_read_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let files = [FileEntry::new("/a", Content::File(missing.clone()), 0o644)];
        let plan = plan(&files).unwrap();
        let err = write_tar(&plan, 0, &mut Vec::new()).unwrap_err();
        match err {
            Error::FileRead { path, source } => {
                assert_eq!(path, missing);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("expected FileRead, got {other:?}"),
        }
    }

    #[test]
    fn a_directory_as_content_is_a_file_read_error() {
        let dir = tempfile::tempdir().unwrap();
        let files = [FileEntry::new(
            "/a",
            Content::File(dir.path().to_path_buf()),
            0o644,
        )];
        let plan = plan(&files).unwrap();
        let err = write_tar(&plan, 0, &mut Vec::new()).unwrap_err();
        assert!(matches!(err, Error::FileRead { .. }), "{err:?}");
    }

    #[test]
    fn a_file_longer_than_its_metadata_says_is_an_error() {
        // procfs files report size 0 but yield bytes: the same as a file growing mid-read.
        let proc_file = Path::new("/proc/self/status");
        // Linux only, like the rest of the test suite; fail rather than skip without procfs.
        assert!(proc_file.is_file(), "this test needs procfs at /proc");
        let files = [FileEntry::new(
            "/status",
            Content::File(proc_file.to_path_buf()),
            0o644,
        )];
        let err = write_tar(&plan(&files).unwrap(), 0, &mut Vec::new()).unwrap_err();
        assert!(
            matches!(err, Error::FileRead { ref source, .. } if source.to_string().contains("grew")),
            "{err:?}"
        );
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        /// Path bytes biased towards what matters: separators, dots, NUL and plain letters.
        fn path_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
            prop::collection::vec(
                prop_oneof![
                    4 => Just(b'/'),
                    2 => Just(b'.'),
                    1 => Just(0u8),
                    6 => prop::sample::select(b"abc".to_vec()),
                    1 => any::<u8>(),
                ],
                0..max,
            )
        }

        /// The planned paths are valid and unique, at most one directory per `/` of the input
        /// was added, and the plan holds no more path bytes than the input had.
        fn check_plan(files: &[FileEntry]) {
            match plan(files) {
                Ok(planned) => {
                    let input_bytes: usize = files.iter().map(|f| f.path.len()).sum();
                    let slashes: usize = files
                        .iter()
                        .map(|f| f.path.iter().filter(|&&b| b == b'/').count())
                        .sum();
                    assert!(planned.len() <= files.len() + slashes);
                    assert!(owned_path_bytes(&planned) <= input_bytes);
                    for w in planned.windows(2) {
                        assert!(w[0].path() < w[1].path(), "sorted and unique");
                    }
                    for e in &planned {
                        assert!(e.path().len() < MAX_PATH_LEN && !e.path().contains(&0));
                    }
                    let mut out = Vec::new();
                    write_tar(&planned, 0, &mut out).unwrap();
                    assert_eq!(read_back(&out).len(), planned.len());
                }
                Err(
                    Error::InvalidPath { .. } | Error::DuplicatePath(_) | Error::InvalidMode { .. },
                ) => {}
                Err(other) => panic!("untagged error {other:?}"),
            }
        }

        proptest! {
            #[test]
            fn prop_layer_paths_arbitrary_bytes_plan_or_give_a_tagged_error(
                paths in prop::collection::vec(path_bytes(40), 0..8),
            ) {
                let files: Vec<FileEntry> =
                    paths.into_iter().map(|p| bytes_entry(p, 0o644)).collect();
                check_plan(&files);
            }

            #[test]
            fn prop_layer_paths_deep_and_long_are_linear_or_refused(
                components in 0usize..2500,
                width in 1usize..300,
            ) {
                let path = format!("/{}", "d".repeat(width)).repeat(components);
                let fits = path.len() <= MAX_PATH_LEN && width <= MAX_COMPONENT_LEN;
                let files = [bytes_entry(path.into_bytes(), 0o644)];
                match plan(&files) {
                    Ok(_) => prop_assert!(fits && components > 0),
                    Err(Error::InvalidPath { why, .. }) => prop_assert_eq!(
                        why,
                        match () {
                            _ if components == 0 => "empty",
                            _ if !fits && files[0].path.len() > MAX_PATH_LEN => "path_too_long",
                            _ => "component_too_long",
                        }
                    ),
                    Err(other) => prop_assert!(false, "{other:?}"),
                }
                check_plan(&files);
            }
        }

        fn bytes_entry(path: Vec<u8>, mode: u32) -> FileEntry {
            FileEntry::new(path, Content::Bytes(b"x".to_vec()), mode)
        }
    }

    #[test]
    fn large_mtime_goes_through_pax() {
        let mtime = MAX_OCTAL_11 + 1;
        let members = read_back(&tar_of(&[bytes("/a", b"", 0o644)], mtime));
        assert_eq!(members[0].7, MAX_OCTAL_11, "the header field saturates");
        let tar_bytes = tar_of(&[bytes("/a", b"", 0o644)], mtime);
        assert!(contains(&tar_bytes, format!("mtime={mtime}\n").as_bytes()));
    }
}
