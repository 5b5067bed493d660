//! The OCI image layout as a directory (`ocibuild:export/2`).
//!
//! The layout is written into a temp directory next to the target and renamed into place, so a
//! reader never sees half a layout. An existing layout (or empty directory) at the target is
//! replaced; any other existing path is refused rather than overwritten.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use super::{check_blob_size, parent_dir, plan, PlannedFile, SaveOptions, Source};
use crate::digest::HashingWriter;
use crate::image::Image;
use crate::{Error, Result};

/// Write `images` as an OCI image layout directory at `dir`.
pub fn export_directory(images: &[Image], dir: &Path, opts: &SaveOptions) -> Result<()> {
    let files = plan(images, opts)?;
    check_replaceable(dir)?;
    let parent = parent_dir(dir);
    fs::create_dir_all(&parent)
        .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    let staging = tempfile::Builder::new()
        .prefix(".ocibuild-export-")
        .permissions(super::output_permissions(0o777))
        .tempdir_in(&parent)
        .map_err(|e| {
            Error::io(
                format!("creating a temp directory in {}", parent.display()),
                e,
            )
        })?;
    for file in &files {
        write_file(staging.path(), file)?;
    }
    replace_dir(staging, dir)
}

/// A target we may replace: absent, an empty directory, or a directory holding an OCI layout.
fn check_replaceable(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("inspecting {}", dir.display()), e)),
        Ok(meta) if meta.is_dir() => {
            let empty = fs::read_dir(dir)
                .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?
                .next()
                .is_none();
            if empty || dir.join("oci-layout").is_file() {
                Ok(())
            } else {
                Err(Error::InvalidOption {
                    name: "dir",
                    why: format!(
                        "{} exists and is not an OCI layout; refusing to replace it",
                        dir.display()
                    ),
                })
            }
        }
        Ok(_) => Err(Error::InvalidOption {
            name: "dir",
            why: format!("{} exists and is not a directory", dir.display()),
        }),
    }
}

fn write_file(root: &Path, file: &PlannedFile) -> Result<()> {
    let dest = root.join(&file.path);
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    let out =
        File::create(&dest).map_err(|e| Error::io(format!("creating {}", dest.display()), e))?;
    match &file.source {
        Source::Bytes(bytes) => (&out)
            .write_all(bytes)
            .map_err(|e| Error::io(format!("writing {}", dest.display()), e)),
        Source::Blob { path, digest, size } => {
            // Copy through a hasher: a blob store file damaged since it was built must not
            // end up in an image under a digest it no longer has.
            let mut src = File::open(path).map_err(|e| Error::FileRead {
                path: path.clone(),
                source: e,
            })?;
            let mut sink = HashingWriter::new(io::BufWriter::new(out));
            io::copy(&mut src, &mut sink)
                .map_err(|e| Error::io(format!("copying {}", path.display()), e))?;
            let (mut w, actual, n) = sink.finish();
            w.flush()
                .map_err(|e| Error::io(format!("writing {}", dest.display()), e))?;
            if &actual != digest {
                return Err(Error::DigestMismatch {
                    expected: digest.to_string(),
                    actual: actual.to_string(),
                });
            }
            check_blob_size(digest, n, *size)
        }
    }
}

/// Move the finished staging directory to `dir`, replacing what `check_replaceable` allowed.
fn replace_dir(staging: tempfile::TempDir, dir: &Path) -> Result<()> {
    let staged = staging.keep();
    let fail = |e: io::Error, what: &str| {
        let _ = fs::remove_dir_all(&staged);
        Error::io(format!("{what} {}", dir.display()), e)
    };
    if fs::symlink_metadata(dir).is_ok() {
        // Rename the old layout aside first so the swap is two renames, then delete it.
        let old = parent_dir(dir).join(format!(".ocibuild-old-{}", std::process::id()));
        fs::rename(dir, &old).map_err(|e| fail(e, "moving aside the old layout at"))?;
        if let Err(e) = fs::rename(&staged, dir) {
            let _ = fs::rename(&old, dir);
            return Err(fail(e, "moving the new layout to"));
        }
        let _ = fs::remove_dir_all(&old);
        Ok(())
    } else {
        fs::rename(&staged, dir).map_err(|e| fail(e, "moving the new layout to"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::tests::image_with_blob;

    #[test]
    fn exports_and_replaces_a_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let image = image_with_blob(tmp.path(), None);
        let out = tmp.path().join("nested/layout");
        let opts = SaveOptions {
            tag: Some("x:1".into()),
            ..Default::default()
        };
        export_directory(std::slice::from_ref(&image), &out, &opts).unwrap();
        assert!(out.join("oci-layout").is_file());
        assert!(out.join("index.json").is_file());
        assert_eq!(fs::read_dir(out.join("blobs/sha256")).unwrap().count(), 3);
        export_directory(&[image], &out, &opts).unwrap();
        // no staging or old directories are left behind
        let leftovers: Vec<_> = fs::read_dir(tmp.path().join("nested")).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
    }

    #[test]
    fn refuses_to_replace_other_content_and_detects_damaged_blobs() {
        let tmp = tempfile::tempdir().unwrap();
        let image = image_with_blob(tmp.path(), None);
        let busy = tmp.path().join("busy");
        fs::create_dir(&busy).unwrap();
        fs::write(busy.join("precious.txt"), b"keep").unwrap();
        let err = export_directory(std::slice::from_ref(&image), &busy, &SaveOptions::default())
            .unwrap_err();
        assert!(matches!(err, Error::InvalidOption { name: "dir", .. }));
        assert!(busy.join("precious.txt").is_file());

        fs::write(image.layers[0].layer.blob.as_ref().unwrap(), b"changed").unwrap();
        let out = tmp.path().join("out");
        let err = export_directory(&[image], &out, &SaveOptions::default()).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }));
        assert!(!out.exists(), "nothing half-written");
    }
}
