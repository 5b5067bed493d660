//! The OCI image layout as a directory (`ocibuild:export/2`).
//!
//! The layout is written into a temp directory next to the target and renamed into place, so a
//! reader never sees half a layout. An existing layout (or empty directory) at the target is
//! replaced; any other existing path is refused rather than overwritten. Every blob goes
//! through the verifying copy, so a blob changed in the blob store fails the export. Temp and
//! aside names are unique per call: concurrent exports, to one directory or to siblings, each
//! finish with one whole layout in place and nothing left beside it.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::{copy_source, parent_dir, plan_named, render_all, PlannedFile, SaveOptions, Wanted};
use crate::image::{Image, ImageSource};
use crate::{Error, Result};

/// How often a replacement is retried when concurrent exports to the same directory keep
/// putting their own layout there between our two renames.
const MAX_SWAPS: usize = 32;

/// Write `images` as an OCI image layout directory at `dir`.
pub fn export_directory(images: &[Image], dir: &Path, opts: &SaveOptions) -> Result<()> {
    export_directory_while(images, dir, opts, Wanted::always())
}

/// [`export_directory`], giving up (and removing the staging directory) once `wanted` says so.
pub fn export_directory_while(
    images: &[Image],
    dir: &Path,
    opts: &SaveOptions,
    wanted: Wanted,
) -> Result<()> {
    export_sources_while(&render_all(images, opts)?, dir, opts, wanted)
}

/// Write any image sources (built, loaded or pulled, every layer local) as a layout directory.
pub fn export_sources_while(
    sources: &[ImageSource],
    dir: &Path,
    opts: &SaveOptions,
    wanted: Wanted,
) -> Result<()> {
    let files = plan_named(sources, opts, opts.tag.as_deref())?;
    check_replaceable(dir)?;
    let parent = parent_dir(dir);
    fs::create_dir_all(&parent)
        .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    let staging = unique_dir(
        &parent,
        ".ocibuild-export-",
        super::output_permissions(0o777),
    )?;
    for file in &files {
        write_file(staging.path(), file, wanted)?;
    }
    wanted.check("exporting the image")?;
    replace_dir(staging, dir)
}

/// A fresh directory in `parent` whose name no other call can get (`mkdir` fails on a name
/// that exists, and tempfile tries another), removed on drop unless kept.
fn unique_dir(parent: &Path, prefix: &str, mode: fs::Permissions) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .permissions(mode)
        .tempdir_in(parent)
        .map_err(|e| {
            Error::io(
                format!("creating a temp directory in {}", parent.display()),
                e,
            )
        })
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
                Err(not_a_layout(dir))
            }
        }
        Ok(_) => Err(Error::InvalidOption {
            name: "dir",
            why: format!("{} exists and is not a directory", dir.display()),
        }),
    }
}

fn not_a_layout(dir: &Path) -> Error {
    Error::InvalidOption {
        name: "dir",
        why: format!(
            "{} exists and is not an OCI layout; refusing to replace it",
            dir.display()
        ),
    }
}

fn write_file(root: &Path, file: &PlannedFile, wanted: Wanted) -> Result<()> {
    let dest = root.join(&file.path);
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    let out =
        File::create(&dest).map_err(|e| Error::io(format!("creating {}", dest.display()), e))?;
    let mut out = io::BufWriter::with_capacity(256 * 1024, out);
    copy_source(&file.source, &mut out, &dest, wanted)?;
    out.flush()
        .map_err(|e| Error::io(format!("writing {}", dest.display()), e))
}

/// Move the finished staging directory to `dir`. A layout already there (the previous one, or
/// a concurrent export's) is renamed aside under a name unique to this call and deleted, and
/// the move tried again: at every moment `dir` is absent or one whole layout, and whichever
/// export renames last wins. The staging directory is removed if the move fails.
fn replace_dir(staging: tempfile::TempDir, dir: &Path) -> Result<()> {
    for _ in 0..MAX_SWAPS {
        match fs::rename(staging.path(), dir) {
            Ok(()) => {
                // The staging name is gone: nothing for the guard to remove.
                let _ = staging.keep();
                return Ok(());
            }
            Err(e) if occupied(&e) => move_aside(dir)?,
            Err(e) => {
                return Err(Error::io(
                    format!("moving the new layout to {}", dir.display()),
                    e,
                ))
            }
        }
    }
    Err(Error::io(
        format!("replacing {}", dir.display()),
        io::Error::new(
            io::ErrorKind::DirectoryNotEmpty,
            format!("other exports to the same directory kept replacing it ({MAX_SWAPS} tries)"),
        ),
    ))
}

/// `rename` refused because the destination is a non-empty directory.
fn occupied(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::AlreadyExists
    )
}

/// Rename the layout at `dir` onto a fresh empty directory of our own (rename replaces an
/// empty directory), then delete it. Gone already (a concurrent export moved it) is fine.
/// Something that is not a layout (put there since `check_replaceable`) is put back, refused.
fn move_aside(dir: &Path) -> Result<()> {
    let parent = parent_dir(dir);
    let aside = unique_dir(&parent, ".ocibuild-old-", super::output_permissions(0o700))?;
    match fs::rename(dir, aside.path()) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(Error::io(
                format!("moving aside the old layout at {}", dir.display()),
                e,
            ))
        }
    }
    if check_replaceable(aside.path()).is_err() {
        restore(aside.keep(), dir);
        return Err(not_a_layout(dir));
    }
    // Dropping the guard deletes the old layout; a failure to delete is the only way it stays.
    aside
        .close()
        .map_err(|e| Error::io(format!("deleting the old layout of {}", dir.display()), e))
}

/// Best effort: put back what was moved aside by mistake. If `dir` was taken meanwhile the
/// content stays under its aside name rather than being deleted.
fn restore(aside: PathBuf, dir: &Path) {
    let _ = fs::rename(&aside, dir);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::tests::{image_with_blob, leftovers};

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

        // Same size, different bytes: only a hash tells.
        let blob = image.layers[0].layer.blob.clone().unwrap();
        let mut bytes = fs::read(&blob).unwrap();
        bytes[3] ^= 0x01;
        fs::write(&blob, &bytes).unwrap();
        let out = tmp.path().join("out");
        let err = export_directory(&[image], &out, &SaveOptions::default()).unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }));
        assert!(!out.exists(), "nothing half-written");
        assert!(leftovers(tmp.path()).is_empty());
    }

    /// Fails unless `dir` is one whole layout: index.json parses and every blob hashes to its
    /// name.
    fn assert_whole_layout(dir: &Path) {
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
        assert!(index["manifests"].is_array());
        for blob in fs::read_dir(dir.join("blobs/sha256")).unwrap() {
            let blob = blob.unwrap();
            let name = blob.file_name().to_string_lossy().into_owned();
            let digest = crate::digest::Digest::of(&fs::read(blob.path()).unwrap());
            assert_eq!(digest.hex(), name);
        }
    }

    #[test]
    fn concurrent_exports_to_one_directory_leave_one_whole_layout_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let image = image_with_blob(tmp.path(), None);
        let parent = tmp.path().join("out");
        let dir = parent.join("layout");
        let results: Vec<Result<()>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..10)
                .map(|i| {
                    let (image, dir) = (&image, &dir);
                    scope.spawn(move || {
                        let opts = SaveOptions {
                            // Each export writes a different layout, so a torn mix would show.
                            created: i,
                            ..Default::default()
                        };
                        export_directory(std::slice::from_ref(image), dir, &opts)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for result in &results {
            assert!(result.is_ok(), "{result:?}");
        }
        assert_whole_layout(&dir);
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
        // One manifest and its config: the blobs of exactly one export.
        assert_eq!(fs::read_dir(dir.join("blobs/sha256")).unwrap().count(), 3);
        assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
        assert!(leftovers(&parent).is_empty(), "{:?}", leftovers(&parent));
    }

    #[test]
    fn concurrent_exports_to_sibling_directories_all_succeed() {
        let tmp = tempfile::tempdir().unwrap();
        let image = image_with_blob(tmp.path(), None);
        let parent = tmp.path().join("out");
        // Half of them replace a layout that is already there.
        for i in (0..20).step_by(2) {
            export_directory(
                std::slice::from_ref(&image),
                &parent.join(format!("l{i}")),
                &SaveOptions::default(),
            )
            .unwrap();
        }
        std::thread::scope(|scope| {
            for i in 0..20 {
                let (image, dir) = (&image, parent.join(format!("l{i}")));
                scope.spawn(move || {
                    export_directory(std::slice::from_ref(image), &dir, &SaveOptions::default())
                        .unwrap()
                });
            }
        });
        for i in 0..20 {
            assert_whole_layout(&parent.join(format!("l{i}")));
        }
        assert!(leftovers(&parent).is_empty());
    }

    #[test]
    fn an_export_its_caller_gave_up_on_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let image = image_with_blob(tmp.path(), None);
        let out = tmp.path().join("layout");
        let err = export_directory_while(
            &[image],
            &out,
            &SaveOptions::default(),
            Wanted::while_(&|| false),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Cancelled(_)), "{err:?}");
        assert!(!out.exists());
        assert!(leftovers(tmp.path()).is_empty());
    }

    #[test]
    fn something_put_in_place_of_the_layout_meanwhile_is_not_deleted() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("layout");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("precious.txt"), b"keep").unwrap();
        let err = move_aside(&dir).unwrap_err();
        assert!(
            matches!(err, Error::InvalidOption { name: "dir", .. }),
            "{err:?}"
        );
        assert_eq!(fs::read(dir.join("precious.txt")).unwrap(), b"keep");
        assert!(leftovers(tmp.path()).is_empty());
    }
}
