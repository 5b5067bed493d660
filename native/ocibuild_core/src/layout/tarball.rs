//! The OCI image layout as a tarball (`ocibuild:save/2,3`), which `podman load`, `skopeo copy
//! oci-archive:` and (with the Docker `manifest.json`) `docker load` read.
//!
//! A path ending in `.tar` gets a plain tar; any other (`.tar.gz`, `.tgz`, ocibuild 0.10's
//! default `<name>-<tag>.tar.gz`) one gzip file in which compressed layer blobs are *stored*
//! ([`stored_gzip`]): the layers are gzip or zstd already, so deflating them again would cost
//! about a second per 100 MB and save nothing. Tar headers and JSON files are deflated.
//!
//! The tar is built by the same deterministic writer as layers (sorted entries, uid/gid 0, one
//! mtime) and framed deterministically, so two saves of the same input are byte-identical
//! files. It is written to a temp file beside the target (a name unique to the call) and
//! renamed into place; every blob goes through the verifying copy on the way, so a blob
//! changed in the blob store fails the save and the temp file is removed.
//!
//! [`stored_gzip`]: super::stored_gzip
use std::collections::HashMap;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use super::save_record::{PlanKey, SaveRecords};
use super::stored_gzip::{Region, StoredGzipWriter};
use super::{
    copy_source, output_permissions, parent_dir, plan_named, render_all, SaveOptions, Source,
    Wanted,
};
use crate::image::{Image, ImageSource};
use crate::layer::{tar_builder, Content, FileEntry};
use crate::{Error, Result};

const FILE_MODE: u32 = 0o644;

/// The ref name a tarball saved without a tag gets, as ocibuild 0.10 gives it.
pub const DEFAULT_TAG: &str = "latest";

/// How the tar is written to the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TarballFraming {
    /// The tar as it is.
    Plain,
    /// One gzip file: compressed layer blobs in stored blocks, the rest deflated.
    Gzip,
}

impl TarballFraming {
    /// `Plain` for a path ending in `.tar` (any case), `Gzip` for every other, as ocibuild 0.10
    /// wrote gzip whatever the name.
    pub fn for_path(path: &Path) -> TarballFraming {
        let name = path.to_string_lossy().to_ascii_lowercase();
        if name.ends_with(".tar") {
            TarballFraming::Plain
        } else {
            TarballFraming::Gzip
        }
    }
}

/// Write `images` (one, or several for a multi-platform index) as a tarball at `path`.
pub fn save_tarball(images: &[Image], path: &Path, opts: &SaveOptions) -> Result<()> {
    save_tarball_while(images, path, opts, Wanted::always())
}

/// [`save_tarball`], giving up (and removing the temp file) once `wanted` says so.
pub fn save_tarball_while(
    images: &[Image],
    path: &Path,
    opts: &SaveOptions,
    wanted: Wanted,
) -> Result<()> {
    save_sources_while(&render_all(images, opts)?, path, opts, wanted)
}

/// Write any image sources (built, loaded or pulled, every layer local) as a tarball.
pub fn save_sources_while(
    sources: &[ImageSource],
    path: &Path,
    opts: &SaveOptions,
    wanted: Wanted,
) -> Result<()> {
    save_sources_recorded(sources, path, opts, SaveRecords::none(), wanted).map(|_| ())
}

/// What a save did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Saved {
    Written,
    /// The file at the path is exactly the one a save of the same plan wrote: left as it is.
    Unchanged,
}

/// [`save_sources_while`], skipping the write when `records` show the output is already
/// there, unchanged ([`save_record`]), and recording what it writes.
///
/// [`save_record`]: super::save_record
pub fn save_sources_recorded(
    sources: &[ImageSource],
    path: &Path,
    opts: &SaveOptions,
    records: SaveRecords,
    wanted: Wanted,
) -> Result<Saved> {
    let tag = opts.tag.as_deref().unwrap_or(DEFAULT_TAG);
    let files: HashMap<String, Source> = plan_named(sources, opts, Some(tag))?
        .into_iter()
        .map(|f| (f.path, f.source))
        .collect();

    // The tar builder orders the members and adds their directories; the bytes of each file
    // are written here, so blobs go through the verifying copy.
    let placeholders: Vec<FileEntry> = files
        .keys()
        .map(|p| FileEntry::new(format!("/{p}"), Content::Bytes(Vec::new()), FILE_MODE))
        .collect();
    let members = tar_builder::plan(&placeholders)?;
    let framing = TarballFraming::for_path(path);

    let mut key = PlanKey::new(framing, opts.created);
    for member in &members {
        if member.is_dir() {
            key.dir(member.path(), member.mode());
        } else {
            let name = String::from_utf8_lossy(member.path());
            key.file(member.path(), FILE_MODE, &files[name.as_ref()]);
        }
    }
    let key = key.finish();
    if records.unchanged(path, &key) {
        return Ok(Saved::Unchanged);
    }

    check_target(path)?;
    let dir = parent_dir(path);
    fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    // A saved image is an ordinary output file: 0666 less the umask, as `cp` or a shell
    // redirect would make it, not the owner-only mode temp files default to. The name is
    // unique per call, and the file is removed on any failure (the guard's drop).
    let tmp = tempfile::Builder::new()
        .prefix(".ocibuild-save-")
        .permissions(output_permissions(0o666))
        .tempfile_in(&dir)
        .map_err(|e| Error::io(format!("creating a temp file in {}", dir.display()), e))?;
    {
        let write_error = |e| Error::io(format!("writing {}", path.display()), e);
        let out = BufWriter::with_capacity(256 * 1024, tmp.as_file());
        let mut sink = FramedSink::new(out, framing);
        for member in &members {
            let name = String::from_utf8_lossy(member.path());
            if member.is_dir() {
                sink.region(Region::Deflated);
                tar_builder::write_dir_header(
                    &mut sink,
                    member.path(),
                    member.mode(),
                    opts.created,
                )
                .map_err(write_error)?;
                continue;
            }
            let source = &files[name.as_ref()];
            // The whole entry (header, bytes, padding) in one region: one boundary per run
            // of layer entries, not three per layer.
            let region = match source {
                Source::Blob {
                    compressed: true, ..
                } => Region::Stored,
                _ => Region::Deflated,
            };
            sink.region(region);
            write_member(&mut sink, member.path(), source, opts.created, path, wanted)?;
        }
        sink.region(Region::Deflated);
        tar_builder::write_end(&mut sink).map_err(write_error)?;
        sink.finish()
            .and_then(|mut out| out.flush())
            .map_err(write_error)?;
    }
    wanted.check("saving the image")?;
    let written = tmp
        .persist(path)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e.error))?;
    records.record(path, &key, &written);
    Ok(Saved::Written)
}

/// The tar's destination: the file as it is, or gzip framed by region.
enum FramedSink<W: Write> {
    Plain(W),
    /// Boxed: the compressor's state is large, and there is one sink per save.
    Gzip(Box<StoredGzipWriter<W>>),
}

impl<W: Write> FramedSink<W> {
    fn new(out: W, framing: TarballFraming) -> Self {
        match framing {
            TarballFraming::Plain => FramedSink::Plain(out),
            TarballFraming::Gzip => FramedSink::Gzip(Box::new(StoredGzipWriter::new(out))),
        }
    }

    /// How the bytes written next are framed (a plain tar has no framing).
    fn region(&mut self, region: Region) {
        if let FramedSink::Gzip(gz) = self {
            gz.region(region)
        }
    }

    fn finish(self) -> io::Result<W> {
        match self {
            FramedSink::Plain(out) => Ok(out),
            FramedSink::Gzip(gz) => gz.finish(),
        }
    }
}

impl<W: Write> Write for FramedSink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            FramedSink::Plain(out) => out.write(buf),
            FramedSink::Gzip(gz) => gz.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            FramedSink::Plain(out) => out.flush(),
            FramedSink::Gzip(gz) => gz.flush(),
        }
    }
}

/// The rename would replace whatever `path` names: a FIFO, a socket, or (for root) a device
/// node such as `/dev/null`. Only a missing path, a regular file or a symlink (the link is
/// replaced, not what it points to) is written.
fn check_target(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Ok(()),
        Ok(meta) => super::load::check_is_file(path, &meta),
        // Missing, or not reachable: the temp file or the rename reports it.
        Err(_) => Ok(()),
    }
}

/// One regular file of the tar: its header (size from the plan, never from the disk), its
/// bytes through the verifying copy, and the padding to the next block.
fn write_member<W: Write>(
    out: &mut W,
    name: &[u8],
    source: &Source,
    mtime: u64,
    dest: &Path,
    wanted: Wanted,
) -> Result<()> {
    let write_error = |e| Error::io(format!("writing {}", dest.display()), e);
    let size = source.size();
    tar_builder::write_file_header(out, name, FILE_MODE, size, mtime).map_err(write_error)?;
    copy_source(source, out, dest, wanted)?;
    tar_builder::write_member_padding(out, size).map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::tests::{image_with_blob, leftovers};

    use crate::special_files_testing::{mkfifo, within_bound};

    #[test]
    fn a_fifo_device_or_directory_target_is_refused_and_left_alone() {
        use std::os::unix::fs::FileTypeExt;
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("image.tar.gz");
        mkfifo(&fifo);
        let dir = tmp.path().join("a-dir");
        fs::create_dir(&dir).unwrap();
        let targets = [
            (fifo.clone(), "other"),
            (dir, "directory"),
            (Path::new("/dev/null").to_path_buf(), "device"),
        ];
        for (target, kind) in targets {
            let image = image_with_blob(tmp.path(), None);
            let dest = target.clone();
            let result =
                within_bound(move || save_tarball(&[image], &dest, &SaveOptions::default()));
            assert!(
                matches!(&result, Err(Error::NotAFile { kind: k, .. }) if *k == kind),
                "{}: {result:?}",
                target.display()
            );
        }
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
        assert!(fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
        let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().collect();
        assert!(
            names.iter().all(|e| !e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".ocibuild-save-")),
            "a temp file was left behind"
        );
    }

    #[test]
    fn a_layer_blob_that_is_a_fifo_fails_the_save_without_blocking() {
        let tmp = tempfile::tempdir().unwrap();
        let mut image = image_with_blob(tmp.path(), None);
        let blob = image.layers[0].layer.blob.clone().unwrap();
        fs::remove_file(&blob).unwrap();
        mkfifo(&blob);
        let out = tmp.path().join("out.tar.gz");
        let dest = out.clone();
        image.layers[0].layer.blob = Some(blob);
        let result = within_bound(move || save_tarball(&[image], &dest, &SaveOptions::default()));
        // The plan finds no regular file there; the open (regular files only, non-blocking)
        // is the second line, for a path swapped after the plan looked.
        assert!(matches!(result, Err(Error::BlobMissing(_))), "{result:?}");
        assert!(!out.exists());
    }

    #[test]
    fn a_saved_tarball_gets_the_mode_of_an_ordinary_new_file() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let image = image_with_blob(tmp.path(), None);
        let out = tmp.path().join("image.tar.gz");
        save_tarball(&[image], &out, &SaveOptions::default()).unwrap();
        // A file made by File::create has 0666 less this process's umask.
        let plain = tmp.path().join("plain");
        fs::File::create(&plain).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&out), mode(&plain));
    }

    /// A file of `tar_gz` by its path inside the tarball (gzip of any members, or plain).
    fn member(tar_gz: &Path, name: &str) -> Vec<u8> {
        let bytes = fs::read(tar_gz).unwrap();
        let tar: Box<dyn std::io::Read> = if bytes.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::MultiGzDecoder::new(&bytes[..]))
        } else {
            Box::new(&bytes[..])
        };
        let mut archive = tar::Archive::new(tar);
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.path().unwrap().to_string_lossy() == name {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
                return bytes;
            }
        }
        panic!("{name} is not in {}", tar_gz.display())
    }

    #[test]
    fn a_blob_changed_on_disk_at_the_same_size_fails_the_save_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let image = image_with_blob(tmp.path(), None);
        let blob = image.layers[0].layer.blob.clone().unwrap();
        let mut bytes = fs::read(&blob).unwrap();
        bytes[0] ^= 0x20;
        fs::write(&blob, &bytes).unwrap();
        let out = tmp.path().join("image.tar.gz");
        let err =
            save_tarball(std::slice::from_ref(&image), &out, &SaveOptions::default()).unwrap_err();
        match err {
            Error::DigestMismatch { expected, .. } => {
                assert_eq!(expected, image.layers[0].layer.digest.to_string())
            }
            other => panic!("expected a digest mismatch, got {other:?}"),
        }
        assert!(!out.exists());
        assert!(leftovers(tmp.path()).is_empty());
    }

    #[test]
    fn a_large_blob_changed_or_truncated_on_disk_fails_the_pipelined_save() {
        // Several pieces, so the blob is read on its own thread while the save writes.
        let tmp = tempfile::tempdir().unwrap();
        let (image, bytes) = image_with_big_blob(
            tmp.path(),
            3 * 1024 * 1024 + 17,
            crate::media_types::OCI_LAYER_GZIP,
        );
        let blob = image.layers[0].layer.blob.clone().unwrap();
        let out = tmp.path().join("image.tar.gz");
        for at in [0, bytes.len() / 2, bytes.len() - 1] {
            let mut changed = bytes.clone();
            changed[at] ^= 0x01;
            fs::write(&blob, &changed).unwrap();
            let err = save_tarball(std::slice::from_ref(&image), &out, &SaveOptions::default())
                .unwrap_err();
            assert!(
                matches!(err, Error::DigestMismatch { .. }),
                "byte {at}: {err:?}"
            );
            assert!(!out.exists());
        }
        // A blob that ends early: the same mismatch, not a short file.
        fs::write(&blob, &bytes[..bytes.len() - 1000]).unwrap();
        let err =
            save_tarball(std::slice::from_ref(&image), &out, &SaveOptions::default()).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
        assert!(!out.exists());
        assert!(leftovers(tmp.path()).is_empty());

        fs::write(&blob, &bytes).unwrap();
        save_tarball(std::slice::from_ref(&image), &out, &SaveOptions::default()).unwrap();
        let digest = image.layers[0].layer.digest.hex().to_string();
        assert_eq!(member(&out, &format!("blobs/sha256/{digest}")), bytes);
    }

    #[test]
    fn a_save_its_caller_gave_up_on_stops_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let mut image = image_with_blob(tmp.path(), None);
        // A blob of several copy pieces, so the save is asked more than once.
        let bytes: Vec<u8> = (0..3 * 1024 * 1024u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let layer = &mut image.layers[0].layer;
        layer.digest = crate::digest::Digest::of(&bytes);
        layer.size = bytes.len() as u64;
        let blob = tmp.path().join(layer.digest.hex());
        fs::write(&blob, &bytes).unwrap();
        layer.blob = Some(blob);

        let asked = std::cell::Cell::new(0);
        let wanted_twice = || {
            asked.set(asked.get() + 1);
            asked.get() <= 2
        };
        let out = tmp.path().join("image.tar.gz");
        let err = save_tarball_while(
            &[image],
            &out,
            &SaveOptions::default(),
            Wanted::while_(&wanted_twice),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Cancelled(_)), "{err:?}");
        assert_eq!(
            asked.get(),
            3,
            "stopped at the first piece after the caller left"
        );
        assert!(!out.exists());
        assert!(leftovers(tmp.path()).is_empty());
    }

    #[test]
    fn an_untagged_save_is_named_latest_in_its_index() {
        let tmp = tempfile::tempdir().unwrap();
        let image = image_with_blob(tmp.path(), None);
        let out = tmp.path().join("image.tar.gz");
        save_tarball(&[image], &out, &SaveOptions::default()).unwrap();
        let index: serde_json::Value = serde_json::from_slice(&member(&out, "index.json")).unwrap();
        assert_eq!(
            index["manifests"][0]["annotations"][crate::media_types::ANNOTATION_REF_NAME],
            DEFAULT_TAG
        );
        // Docker has no repository name to go with the tag: its image loads untagged.
        let docker: serde_json::Value =
            serde_json::from_slice(&member(&out, "manifest.json")).unwrap();
        assert_eq!(docker[0]["RepoTags"], serde_json::json!([]));
    }

    /// `image_with_blob` with a layer of `size` incompressible bytes and the given media type.
    fn image_with_big_blob(dir: &Path, size: u32, media_type: &str) -> (Image, Vec<u8>) {
        let mut image = image_with_blob(dir, None);
        let bytes: Vec<u8> = (0..size)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let layer = &mut image.layers[0].layer;
        layer.media_type = media_type.into();
        layer.digest = crate::digest::Digest::of(&bytes);
        layer.size = bytes.len() as u64;
        let blob = dir.join(layer.digest.hex());
        fs::write(&blob, &bytes).unwrap();
        layer.blob = Some(blob);
        (image, bytes)
    }

    /// The tar inside a saved `.tar.gz`, read as ONE gzip member (as `erl_tar` reads it).
    fn gunzip_one_member(path: &Path) -> Vec<u8> {
        let bytes = fs::read(path).unwrap();
        let mut decoder = flate2::bufread::GzDecoder::new(&bytes[..]);
        let mut tar = Vec::new();
        std::io::Read::read_to_end(&mut decoder, &mut tar).unwrap();
        assert!(decoder.into_inner().is_empty(), "one gzip member");
        tar
    }

    #[test]
    fn a_tar_gz_stores_compressed_layers_and_deflates_the_json() {
        let tmp = tempfile::tempdir().unwrap();
        let (image, blob) =
            image_with_big_blob(tmp.path(), 300_000, crate::media_types::OCI_LAYER_GZIP);
        let digest = image.layers[0].layer.digest.clone();
        let out = tmp.path().join("image.tar.gz");
        save_tarball(&[image], &out, &SaveOptions::default()).unwrap();
        let bytes = fs::read(&out).unwrap();
        // Stored: the layer's bytes are in the file as they are (its first block also holds
        // the entry's 512-byte tar header).
        let block = &blob[..60_000];
        assert!(bytes.windows(block.len()).any(|w| w == block));
        // Deflated: the tar headers, padding and JSON around it shrink well below their size.
        let tar = gunzip_one_member(&out);
        let around_the_blob = tar.len() - blob.len();
        assert!(
            bytes.len() < blob.len() + around_the_blob / 4,
            "{} bytes for {around_the_blob} bytes around a {}-byte blob",
            bytes.len(),
            blob.len()
        );
        assert_eq!(
            member(&out, &format!("blobs/sha256/{}", digest.hex())),
            blob
        );
    }

    #[test]
    fn an_uncompressed_layer_is_deflated_in_a_tar_gz() {
        let tmp = tempfile::tempdir().unwrap();
        let mut image = image_with_blob(tmp.path(), None);
        let bytes = vec![b'a'; 200_000];
        let layer = &mut image.layers[0].layer;
        layer.media_type = crate::media_types::OCI_LAYER_TAR.into();
        layer.digest = crate::digest::Digest::of(&bytes);
        layer.size = bytes.len() as u64;
        let blob = tmp.path().join(layer.digest.hex());
        fs::write(&blob, &bytes).unwrap();
        layer.blob = Some(blob);
        let out = tmp.path().join("image.tgz");
        save_tarball(&[image], &out, &SaveOptions::default()).unwrap();
        let saved = fs::read(&out).unwrap();
        assert!(saved.len() < 20_000, "{} bytes", saved.len());
        assert_eq!(gunzip_one_member(&out).len() % 512, 0);
    }

    #[test]
    fn a_dot_tar_path_gets_a_plain_tar_with_the_same_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let (image, blob) =
            image_with_big_blob(tmp.path(), 100_000, crate::media_types::OCI_LAYER_ZSTD);
        let digest = image.layers[0].layer.digest.clone();
        let opts = SaveOptions {
            tag: Some("app:1".into()),
            created: 1_700_000_000,
            ..Default::default()
        };
        let plain = tmp.path().join("image.TAR");
        let gz = tmp.path().join("image.tar.gz");
        save_tarball(std::slice::from_ref(&image), &plain, &opts).unwrap();
        save_tarball(std::slice::from_ref(&image), &gz, &opts).unwrap();
        let tar = fs::read(&plain).unwrap();
        assert_eq!(&tar[257..262], b"ustar", "a tar header, not gzip");
        assert_eq!(tar.len() % 512, 0);
        assert!(
            gunzip_one_member(&gz) == tar,
            "the .tar.gz holds the same tar"
        );
        assert_eq!(
            member(&plain, &format!("blobs/sha256/{}", digest.hex())),
            blob
        );
        // And it reads back for a push like any saved tarball.
        let staging = tempfile::tempdir().unwrap();
        let loaded = super::super::load_tarball(&plain, staging.path()).unwrap();
        assert_eq!(loaded.images[0].layers[0].digest, digest);
    }

    #[test]
    fn framing_follows_the_file_name() {
        for (name, framing) in [
            ("a.tar", TarballFraming::Plain),
            ("dir.tar.d/A.Tar", TarballFraming::Plain),
            ("a.tar.gz", TarballFraming::Gzip),
            ("a.tgz", TarballFraming::Gzip),
            ("a.tar.zst", TarballFraming::Gzip),
            ("image", TarballFraming::Gzip),
            ("atar", TarballFraming::Gzip),
        ] {
            assert_eq!(TarballFraming::for_path(Path::new(name)), framing, "{name}");
        }
    }

    #[test]
    fn two_saves_are_byte_identical_and_nothing_is_left_on_failure() {
        let tmp = tempfile::tempdir().unwrap();
        let image = image_with_blob(tmp.path(), None);
        let opts = SaveOptions {
            tag: Some("x:1".into()),
            created: 1_700_000_000,
            ..Default::default()
        };
        let a = tmp.path().join("a.tar.gz");
        let b = tmp.path().join("b.tar.gz");
        save_tarball(std::slice::from_ref(&image), &a, &opts).unwrap();
        save_tarball(std::slice::from_ref(&image), &b, &opts).unwrap();
        let bytes = fs::read(&a).unwrap();
        assert_eq!(&bytes[..2], &[0x1f, 0x8b]);
        assert_eq!(bytes, fs::read(&b).unwrap());
        let (plain_a, plain_b) = (tmp.path().join("a.tar"), tmp.path().join("b.tar"));
        save_tarball(std::slice::from_ref(&image), &plain_a, &opts).unwrap();
        save_tarball(std::slice::from_ref(&image), &plain_b, &opts).unwrap();
        assert_eq!(fs::read(&plain_a).unwrap(), fs::read(&plain_b).unwrap());

        fs::remove_file(image.layers[0].layer.blob.as_ref().unwrap()).unwrap();
        let c = tmp.path().join("c.tar.gz");
        assert!(matches!(
            save_tarball(&[image], &c, &opts),
            Err(Error::BlobMissing(_))
        ));
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(!c.exists());
        assert!(names
            .iter()
            .all(|n| !n.to_string_lossy().starts_with(".ocibuild-save-")));
    }
}
