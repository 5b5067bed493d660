//! Building layers: a list of files becomes a deterministic tar, compressed and hashed in one
//! streaming pass, and stored in the blob store under its digest.
//!
//! - `tar_builder`: validation, normalisation, ordering and the tar bytes themselves.
//! - `compress`: gzip (fixed-size blocks, compressed in parallel) and zstd (multithreaded).
//! - `build`: the pipeline that ties them to the digests and the blob store.
//! - `progress`: the bytes read so far, reported while a layer is built.
//! - `cache`: the layer cache, so unchanged inputs are not built again.
//! - `file_digest`: each host file's sha256, on several threads (the cache's content key).

mod build;
pub mod cache;
pub mod compress;
pub mod file_digest;
pub mod progress;
pub mod tar_builder;

use std::path::PathBuf;

pub use build::build_layer;
pub use cache::CacheMode;
pub use compress::Compression;

use crate::digest::Digest;

/// Where a file's bytes come from. `File` is streamed from disk while the tar is written, so a
/// layer never needs its whole input in memory.
#[derive(Clone, Debug)]
pub enum Content {
    Bytes(Vec<u8>),
    File(PathBuf),
}

/// One file to put in a layer. `path` is the absolute path inside the image (bytes, as Erlang
/// binaries need not be UTF-8); missing parent directories are created by the tar builder.
#[derive(Clone, Debug)]
pub struct FileEntry {
    pub path: Vec<u8>,
    pub content: Content,
    pub mode: u32,
}

impl FileEntry {
    pub fn new(path: impl Into<Vec<u8>>, content: Content, mode: u32) -> Self {
        FileEntry {
            path: path.into(),
            content,
            mode,
        }
    }
}

/// How to build a layer.
#[derive(Clone, Debug)]
pub struct LayerOptions {
    pub compression: Compression,
    /// mtime of every entry (SOURCE_DATE_EPOCH, else 0: reproducible by default).
    pub mtime: u64,
    /// Compression worker threads; the output bytes never depend on this number.
    pub threads: usize,
    /// Told how many bytes of the files have been read (see `progress`); `None`: nobody asks.
    pub progress: Option<progress::BuildProgressFn>,
}

impl Default for LayerOptions {
    fn default() -> Self {
        LayerOptions {
            compression: Compression::Zstd,
            mtime: 0,
            threads: default_threads(),
            progress: None,
        }
    }
}

/// One thread per core, at least one.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// A layer as the image model sees it (ggcr's `v1.Layer`): the digest of the compressed bytes,
/// the diff_id of the uncompressed tar, the compressed size, the media type, and where the
/// compressed bytes live. `blob` is `None` for a layer whose bytes are elsewhere (a base layer
/// still in its registry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    pub media_type: String,
    pub digest: Digest,
    pub diff_id: Digest,
    pub size: u64,
    pub blob: Option<PathBuf>,
}
