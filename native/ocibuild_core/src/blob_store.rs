//! A content-addressed blob store on disk: `<root>/blobs/sha256/<hex>`.
//!
//! Built layers and pulled base layers live here, so large blobs never sit in BEAM memory.
//! Writes go to a temp file in the same directory and are renamed into place once their
//! digest is known, so a reader never sees a half-written blob. Reads can be verified.
//! The layer cache keeps its records next to the blobs (`<root>/layers/`, see
//! `layer::cache`), and [`gc`] bounds the whole store by age and size.

pub mod gc;
pub mod record_file;

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashingReader};
use crate::layer::CacheMode;
use crate::{Error, Result};

#[derive(Clone, Debug)]
pub struct BlobStore {
    root: PathBuf,
    dir: PathBuf,
    layer_cache: CacheMode,
}

impl BlobStore {
    /// Open (creating if needed) a store rooted at `root`; blobs go in `root/blobs/sha256`.
    /// Its layer cache is on ([`CacheMode::On`]).
    pub fn open(root: impl AsRef<Path>) -> Result<BlobStore> {
        let root = root.as_ref().to_path_buf();
        let dir = root.join("blobs").join("sha256");
        fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating blob store {}", dir.display()), e))?;
        Ok(BlobStore {
            root,
            dir,
            layer_cache: CacheMode::default(),
        })
    }

    /// The same store, its layer cache used as `mode` says.
    pub fn with_layer_cache(mut self, mode: CacheMode) -> BlobStore {
        self.layer_cache = mode;
        self
    }

    pub fn layer_cache(&self) -> CacheMode {
        self.layer_cache
    }

    /// The directory the store was opened at.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory holding the blobs, `<root>/blobs/sha256`.
    pub fn blobs_dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob with this digest lives (whether or not it is there yet).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// A new temp file next to the blobs, for a writer that learns the digest only at the end.
    pub fn temp_file(&self) -> Result<tempfile::NamedTempFile> {
        tempfile::Builder::new()
            .prefix(".incoming-")
            .tempfile_in(&self.dir)
            .map_err(|e| Error::io("creating temp file in blob store", e))
    }

    /// Move a finished temp file into place under its digest. If the blob is already present
    /// with the same size (same content built twice) the temp file is simply dropped; one of
    /// another size (truncated on disk) is replaced, so a rebuild repairs it.
    pub fn commit(&self, tmp: tempfile::NamedTempFile, digest: &Digest) -> Result<PathBuf> {
        let dest = self.path(digest);
        let present = fs::symlink_metadata(&dest).ok().filter(|m| m.is_file());
        let size = tmp.as_file().metadata().map(|m| m.len()).ok();
        if present.is_some_and(|m| Some(m.len()) == size) {
            return Ok(dest);
        }
        tmp.persist(&dest)
            .map_err(|e| Error::io(format!("storing blob {digest}"), e.error))?;
        Ok(dest)
    }

    /// Store bytes held in memory (configs, manifests).
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<(Digest, PathBuf)> {
        let digest = Digest::of(bytes);
        let dest = self.path(&digest);
        if !dest.is_file() {
            let mut tmp = self.temp_file()?;
            io::Write::write_all(&mut tmp, bytes).map_err(|e| Error::io("writing blob", e))?;
            self.commit(tmp, &digest)?;
        }
        Ok((digest, dest))
    }

    /// Hash a stored blob and fail with `DigestMismatch` if it does not match its name.
    pub fn verify(&self, digest: &Digest) -> Result<u64> {
        verify_file(&self.path(digest), digest)
    }
}

/// Hash a file and compare with the expected digest; returns its size.
pub fn verify_file(path: &Path, expected: &Digest) -> Result<u64> {
    let (file, _) = crate::layer::tar_builder::open_regular_file(path)?;
    let mut reader = HashingReader::new(file);
    io::copy(&mut reader, &mut io::sink()).map_err(|e| Error::FileRead {
        path: path.to_path_buf(),
        source: e,
    })?;
    let (actual, size) = reader.finish();
    if &actual != expected {
        return Err(Error::DigestMismatch {
            expected: expected.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(size)
}

/// Read a whole small blob (config, manifest) from a file.
pub fn read_small(path: &Path) -> Result<Vec<u8>> {
    let mut f = File::open(path).map_err(|e| Error::FileRead {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).map_err(|e| Error::FileRead {
        path: path.to_path_buf(),
        source: e,
    })?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_then_verify() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let (d, p) = store.put_bytes(b"{}").unwrap();
        assert!(p.ends_with(d.hex()));
        assert_eq!(store.verify(&d).unwrap(), 2);
        std::fs::write(&p, b"{ }").unwrap();
        assert!(matches!(
            store.verify(&d),
            Err(Error::DigestMismatch { .. })
        ));
    }
}
