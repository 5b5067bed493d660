//! Sinks and sources by medium: an OCI image layout as a directory, and as a (gzipped) tarball
//! that podman, skopeo and docker load; plus reading a saved tarball back for a later push.
//!
//! Both sinks write the same file set, planned once by [`plan`]:
//! - `oci-layout` and `index.json` (one entry, named by the `org.opencontainers.image.ref.name`
//!   annotation; for several images it points at a nested index listing one manifest per
//!   platform);
//! - `blobs/sha256/<hex>` for every manifest, config and layer (shared blobs once);
//! - for the Docker format, `manifest.json` so `docker load` accepts the tarball too.
//!
//! Both copy every blob with [`copy_source`]: hashed while it is written, so a blob that
//! changed in the blob store since it was built fails the sink with `DigestMismatch`, and the
//! sink's temp output is removed as for any other failure.

pub mod directory;
pub mod load;
pub mod save_record;
#[cfg(test)]
mod sources_tests;
pub mod stored_gzip;
pub mod tarball;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

pub use directory::{export_directory, export_directory_while, export_sources_while};
pub use load::{load_tarball, LoadedImage, LoadedTarball};
pub use save_record::SaveRecords;
pub use tarball::{
    save_sources_recorded, save_sources_while, save_tarball, save_tarball_while, Saved,
};

use crate::digest::{from_io, Digest, VerifyingReader};
use crate::image::manifest::{index_json, Descriptor};
use crate::image::{json::canonical, render, Image, ImageSource, RenderOptions};
use crate::media_types::{ANNOTATION_REF_NAME, OCI_INDEX};
use crate::{Error, Result};

/// Whether a saved tarball also carries Docker's `manifest.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SaveFormat {
    /// OCI layout plus `manifest.json`: podman, skopeo and `docker load` all read it.
    #[default]
    Docker,
    /// A pure OCI image layout.
    Oci,
}

/// Options shared by both sinks.
#[derive(Clone, Debug, Default)]
pub struct SaveOptions {
    /// `name:tag` recorded as the layout's ref name (and Docker `RepoTags`).
    pub tag: Option<String>,
    pub format: SaveFormat,
    /// Epoch seconds for the config's `created` and the tarball's mtimes.
    pub created: u64,
}

/// Where a planned file's bytes come from.
#[derive(Clone, Debug)]
pub enum Source {
    Bytes(Vec<u8>),
    /// A layer blob on disk, with the digest and size it must have.
    Blob {
        path: PathBuf,
        digest: Digest,
        size: u64,
        /// Its media type says it is compressed already (gzip, zstd): a compressing sink
        /// stores it as it is.
        compressed: bool,
    },
}

impl Source {
    /// The bytes this file will have: a blob's descriptor size, never what the disk says.
    pub fn size(&self) -> u64 {
        match self {
            Source::Bytes(bytes) => bytes.len() as u64,
            Source::Blob { size, .. } => *size,
        }
    }
}

/// Whether the caller still wants a sink's output. Sinks ask between pieces of every blob
/// they copy, so a sink whose caller died (the NIF asks the VM) stops within a piece.
#[derive(Clone, Copy)]
pub struct Wanted<'a>(&'a dyn Fn() -> bool);

impl<'a> Wanted<'a> {
    /// Wanted for as long as `still_wanted` says so.
    pub fn while_(still_wanted: &'a dyn Fn() -> bool) -> Wanted<'a> {
        Wanted(still_wanted)
    }

    /// Wanted to the end (a caller that cannot go away, such as a test or a CLI).
    pub fn always() -> Wanted<'static> {
        fn yes() -> bool {
            true
        }
        Wanted(&yes)
    }

    fn check(&self, what: &str) -> Result<()> {
        if (self.0)() {
            Ok(())
        } else {
            Err(Error::Cancelled(what.to_string()))
        }
    }
}

/// Piece size of blob copies: the unit of progress, of cancellation and of the final-piece
/// check that keeps a changed blob out of the output.
const COPY_PIECE: usize = 256 * 1024;

/// Pieces a blob's reader may be ahead of its writer: enough to keep both busy, 1 MiB in all.
const PIPELINE_DEPTH: usize = 4;

/// Write a planned file's bytes to `out` (`dest` names the output in errors). A blob is read
/// once, through a [`VerifyingReader`]: the bytes written are the bytes hashed, and a blob
/// whose bytes are not the ones its descriptor names fails before its last piece is written.
///
/// A blob larger than one piece is read and hashed on a thread of its own while this one
/// writes (and, for a gzip tarball, computes the CRC32): the two costs overlap instead of
/// adding up. The reader is at most [`PIPELINE_DEPTH`] pieces ahead, and stops as soon as
/// the writer does (an error, or a caller that went away).
pub(crate) fn copy_source(
    source: &Source,
    out: &mut impl Write,
    dest: &Path,
    wanted: Wanted,
) -> Result<()> {
    let write_error = |e| Error::io(format!("writing {}", dest.display()), e);
    let (path, digest, size) = match source {
        Source::Bytes(bytes) => return out.write_all(bytes).map_err(write_error),
        Source::Blob {
            path, digest, size, ..
        } => (path, digest, *size),
    };
    let read_error = |e| Error::FileRead {
        path: path.clone(),
        source: e,
    };
    // A layer map's blob path may name anything: a FIFO there must not block the save.
    let (file, _) = crate::layer::tar_builder::open_regular_file(path)?;
    let reader = VerifyingReader::new(file, digest, size);
    if size <= COPY_PIECE as u64 {
        return copy_in_turn(reader, size, out, wanted)
            .map_err(|e| e.into_error(read_error, write_error));
    }
    copy_pipelined(reader, out, wanted).map_err(|e| e.into_error(read_error, write_error))
}

/// Why a blob copy stopped.
enum CopyError {
    Read(std::io::Error),
    Write(std::io::Error),
    Stopped(Error),
}

impl CopyError {
    fn into_error(
        self,
        read_error: impl FnOnce(std::io::Error) -> Error,
        write_error: impl FnOnce(std::io::Error) -> Error,
    ) -> Error {
        match self {
            // A digest or size mismatch travels inside the io::Error.
            CopyError::Read(e) => from_io(e, read_error),
            CopyError::Write(e) => write_error(e),
            CopyError::Stopped(e) => e,
        }
    }
}

/// Read, hash and write piece by piece on this thread (a blob of one piece or less).
fn copy_in_turn(
    mut reader: impl Read,
    size: u64,
    out: &mut impl Write,
    wanted: Wanted,
) -> std::result::Result<(), CopyError> {
    let mut buf = vec![0u8; COPY_PIECE.min(usize::try_from(size).unwrap_or(COPY_PIECE))];
    loop {
        wanted
            .check("writing the image")
            .map_err(CopyError::Stopped)?;
        // An empty buffer (a zero-byte blob) still asks the reader, which checks the digest.
        let n = reader.read(&mut buf).map_err(CopyError::Read)?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n]).map_err(CopyError::Write)?;
    }
}

/// Read and hash on a scoped thread, write here; buffers go back to the reader for reuse.
fn copy_pipelined(
    mut reader: impl Read + Send,
    out: &mut impl Write,
    wanted: Wanted,
) -> std::result::Result<(), CopyError> {
    use std::sync::mpsc::sync_channel;
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = sync_channel::<std::io::Result<(Vec<u8>, usize)>>(PIPELINE_DEPTH);
        let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(PIPELINE_DEPTH + 1);
        for _ in 0..=PIPELINE_DEPTH {
            let _ = empty_tx.send(vec![0u8; COPY_PIECE]);
        }
        scope.spawn(move || {
            // Both channels fail once the writer returns: this thread then ends too.
            while let Ok(mut buf) = empty_rx.recv() {
                let read = reader.read(&mut buf).map(|n| (buf, n));
                let last = !matches!(read, Ok((_, n)) if n > 0);
                if full_tx.send(read).is_err() || last {
                    return;
                }
            }
        });
        loop {
            wanted
                .check("writing the image")
                .map_err(CopyError::Stopped)?;
            let (buf, n) = match full_rx.recv() {
                Ok(piece) => piece.map_err(CopyError::Read)?,
                Err(_) => {
                    return Err(CopyError::Read(std::io::Error::other(
                        "the blob's reader stopped",
                    )))
                }
            };
            if n == 0 {
                return Ok(());
            }
            out.write_all(&buf[..n]).map_err(CopyError::Write)?;
            let _ = empty_tx.send(buf);
        }
    })
}

/// One file of a layout, at a path relative to the layout root.
#[derive(Clone, Debug)]
pub struct PlannedFile {
    pub path: String,
    pub source: Source,
}

pub(crate) const OCI_LAYOUT_FILE: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

pub(crate) fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// Permissions for an output file or directory: `mode` as requested of the OS, which applies
/// the process umask when it creates the file.
#[cfg(unix)]
pub(crate) fn output_permissions(mode: u32) -> std::fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    std::fs::Permissions::from_mode(mode)
}

/// The directory an output file or layout goes in (`.` for a bare name), where its temp file
/// or staging directory is made so the final rename stays on one file system.
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Fail unless a blob's actual size is the one its descriptor gives.
pub(crate) fn check_blob_size(digest: &Digest, actual: u64, expected: u64) -> Result<()> {
    if actual == expected {
        Ok(())
    } else {
        Err(Error::InvalidLayout(format!(
            "blob {digest} is {actual} bytes, its descriptor says {expected}"
        )))
    }
}

/// Whether a layer's media type names a compressed blob: OCI's `+gzip`/`+zstd` (and their
/// non-distributable forms) and Docker's `.tar.gzip`. Plain `tar` layers are not.
pub(crate) fn is_compressed_layer(media_type: &str) -> bool {
    let media_type = media_type.to_ascii_lowercase();
    ["gzip", "zstd"].iter().any(|c| media_type.ends_with(c))
}

/// Every file of the layout for `images`, sorted by path, each blob once.
pub fn plan(images: &[Image], opts: &SaveOptions) -> Result<Vec<PlannedFile>> {
    plan_named(&render_all(images, opts)?, opts, opts.tag.as_deref())
}

/// The sources of image values: each rendered with the save's `created` time.
pub fn render_all(images: &[Image], opts: &SaveOptions) -> Result<Vec<ImageSource>> {
    let render_opts = RenderOptions {
        created: opts.created,
    };
    images.iter().map(|i| render(i, &render_opts)).collect()
}

/// [`plan`] of any sources, with `ref_name` as the index's `org.opencontainers.image.ref.name`
/// (a sink may name an untagged image; Docker's `RepoTags` still come from `opts.tag` alone).
/// Every layer must be local by now: a sink fetches remote ones before it plans.
pub(crate) fn plan_named(
    sources: &[ImageSource],
    opts: &SaveOptions,
    ref_name: Option<&str>,
) -> Result<Vec<PlannedFile>> {
    if sources.is_empty() {
        return Err(Error::InvalidOption {
            name: "images",
            why: "no image to write".into(),
        });
    }
    let mut files: BTreeMap<String, Source> = BTreeMap::new();
    let mut descriptors = Vec::new();
    let mut docker_entries = Vec::new();

    for rendered in sources {
        for layer in &rendered.layers {
            // A layer whose bytes are not on this machine (a base layer never fetched, a
            // blob store cleaned since the build) cannot be written out.
            let path = match &layer.blob {
                Some(p) if p.is_file() => p.clone(),
                _ => return Err(Error::BlobMissing(layer.digest.to_string())),
            };
            files.insert(
                blob_path(&layer.digest),
                Source::Blob {
                    path,
                    digest: layer.digest.clone(),
                    size: layer.size,
                    compressed: is_compressed_layer(&layer.media_type),
                },
            );
        }
        files.insert(
            blob_path(&rendered.config_digest),
            Source::Bytes(rendered.config.clone()),
        );
        files.insert(
            blob_path(&rendered.manifest_digest),
            Source::Bytes(rendered.manifest.clone()),
        );

        let mut d = Descriptor::new(
            &rendered.media_type,
            rendered.manifest_digest.clone(),
            rendered.manifest.len() as u64,
        );
        d.platform = rendered.platform.clone();
        descriptors.push(d);

        let repo_tags: Vec<&str> = match (&opts.tag, docker_entries.is_empty()) {
            // One image per tag in Docker's world: later platforms load untagged.
            (Some(tag), true) => vec![tag.as_str()],
            _ => vec![],
        };
        docker_entries.push(json!({
            "Config": blob_path(&rendered.config_digest),
            "RepoTags": repo_tags,
            "Layers": rendered.layers.iter().map(|l| blob_path(&l.digest)).collect::<Vec<_>>(),
        }));
    }

    let ref_name: BTreeMap<String, String> = ref_name
        .iter()
        .map(|t| (ANNOTATION_REF_NAME.to_string(), t.to_string()))
        .collect();
    let top = if sources.len() == 1 {
        let mut d = descriptors.remove(0);
        d.annotations = ref_name;
        d
    } else {
        let nested = canonical(&index_json(&descriptors, &BTreeMap::new()));
        let digest = Digest::of(&nested);
        let mut d = Descriptor::new(OCI_INDEX, digest.clone(), nested.len() as u64);
        d.annotations = ref_name;
        files.insert(blob_path(&digest), Source::Bytes(nested));
        d
    };
    files.insert(
        "index.json".into(),
        Source::Bytes(canonical(&index_json(&[top], &BTreeMap::new()))),
    );
    files.insert("oci-layout".into(), Source::Bytes(OCI_LAYOUT_FILE.to_vec()));
    if opts.format == SaveFormat::Docker {
        files.insert(
            "manifest.json".into(),
            Source::Bytes(canonical(&Value::Array(docker_entries))),
        );
    }
    Ok(files
        .into_iter()
        .map(|(path, source)| PlannedFile { path, source })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{AddedLayer, Platform};
    use crate::layer::Layer;
    use crate::media_types::OCI_LAYER_GZIP;

    /// The temp and aside names our sinks use (`.ocibuild-*`) still present in `dir`: a sink
    /// that failed, or raced another, must leave none.
    pub(crate) fn leftovers(dir: &std::path::Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".ocibuild-"))
            .collect()
    }

    pub(crate) fn image_with_blob(dir: &std::path::Path, platform: Option<Platform>) -> Image {
        let bytes = b"not really gzip".to_vec();
        let digest = Digest::of(&bytes);
        let path = dir.join(digest.hex());
        std::fs::write(&path, &bytes).unwrap();
        Image {
            layers: vec![AddedLayer {
                layer: Layer {
                    media_type: OCI_LAYER_GZIP.into(),
                    digest,
                    diff_id: Digest::of(b"tar"),
                    size: bytes.len() as u64,
                    blob: Some(path),
                },
                layer_type: Some("app".into()),
            }],
            platform,
            ..Default::default()
        }
    }

    #[test]
    fn single_image_plan_has_the_layout_files() {
        let dir = tempfile::tempdir().unwrap();
        let opts = SaveOptions {
            tag: Some("app:1".into()),
            ..Default::default()
        };
        let files = plan(&[image_with_blob(dir.path(), None)], &opts).unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths
                .iter()
                .filter(|p| p.starts_with("blobs/sha256/"))
                .count(),
            3
        );
        assert!(paths.ends_with(&["index.json", "manifest.json", "oci-layout"]));
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
    }

    #[test]
    fn multi_image_plan_nests_an_index_and_shares_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let images = [
            image_with_blob(dir.path(), Some(Platform::new("linux", "amd64", None))),
            image_with_blob(dir.path(), Some(Platform::new("linux", "arm64", None))),
        ];
        let opts = SaveOptions {
            tag: Some("app:1".into()),
            format: SaveFormat::Oci,
            created: 0,
        };
        let files = plan(&images, &opts).unwrap();
        // one shared layer, two configs, two manifests, one nested index
        assert_eq!(
            files
                .iter()
                .filter(|f| f.path.starts_with("blobs/"))
                .count(),
            6
        );
        assert!(!files.iter().any(|f| f.path == "manifest.json"));
        let index = files.iter().find(|f| f.path == "index.json").unwrap();
        let Source::Bytes(bytes) = &index.source else {
            panic!("index.json is bytes")
        };
        let v: Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(v["manifests"][0]["mediaType"], OCI_INDEX);
        assert_eq!(
            v["manifests"][0]["annotations"][ANNOTATION_REF_NAME],
            "app:1"
        );
    }

    #[test]
    fn a_layer_without_local_bytes_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let mut image = image_with_blob(dir.path(), None);
        image.layers[0].layer.blob = None;
        assert!(matches!(
            plan(&[image], &SaveOptions::default()),
            Err(Error::BlobMissing(_))
        ));
        assert!(plan(&[], &SaveOptions::default()).is_err());
    }
}
