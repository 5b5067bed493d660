//! The OCI image layout as a gzip-compressed tarball (`ocibuild:save/2,3`), which `podman
//! load`, `skopeo copy oci-archive:` and (with the Docker `manifest.json`) `docker load` read.
//!
//! The tar is built by the same deterministic writer as layers (sorted entries, uid/gid 0, one
//! mtime) and compressed with the fixed-block gzip writer, so two saves of the same input are
//! byte-identical files. It is written to a temp file beside the target and renamed into place.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::{check_blob_size, output_permissions, parent_dir, plan, SaveOptions, Source};
use crate::image::Image;
use crate::layer::{default_threads, tar_builder, Compression, Content, FileEntry};
use crate::{Error, Result};

const FILE_MODE: u32 = 0o644;

/// Write `images` (one, or several for a multi-platform index) as a tarball at `path`.
pub fn save_tarball(images: &[Image], path: &Path, opts: &SaveOptions) -> Result<()> {
    let files = plan(images, opts)?;
    let mut entries = Vec::with_capacity(files.len());
    for file in files {
        let content = match file.source {
            Source::Bytes(bytes) => Content::Bytes(bytes),
            Source::Blob {
                path: blob,
                digest,
                size,
            } => {
                // The tar header takes its size from the file, so check it matches the
                // descriptor before we commit to writing anything.
                let actual = fs::metadata(&blob)
                    .map_err(|e| Error::FileRead {
                        path: blob.clone(),
                        source: e,
                    })?
                    .len();
                check_blob_size(&digest, actual, size)?;
                Content::File(blob)
            }
        };
        entries.push(FileEntry::new(
            format!("/{}", file.path),
            content,
            FILE_MODE,
        ));
    }
    let tar_plan = tar_builder::plan(&entries)?;

    let dir = parent_dir(path);
    fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    // A saved image is an ordinary output file: 0666 less the umask, as `cp` or a shell
    // redirect would make it, not the owner-only mode temp files default to.
    let tmp = tempfile::Builder::new()
        .prefix(".ocibuild-save-")
        .permissions(output_permissions(0o666))
        .tempfile_in(&dir)
        .map_err(|e| Error::io(format!("creating a temp file in {}", dir.display()), e))?;
    {
        let out = BufWriter::with_capacity(256 * 1024, tmp.as_file());
        let mut gz = Compression::Gzip.writer(out, default_threads())?;
        tar_builder::write_tar(&tar_plan, opts.created, &mut gz)?;
        let mut out = gz.finish()?;
        out.flush()
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    }
    tmp.persist(path)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::tests::image_with_blob;

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
