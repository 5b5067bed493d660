//! A blob's bytes as we hold them locally, on their way to a registry: in memory (a config,
//! an SBOM) or in a file (a built layer, a cached base layer). Below both `upload` (which
//! sends them) and `blob_source` (which reads and hashes them as they are sent).

use std::path::PathBuf;

#[derive(Clone, Debug)]
pub enum LocalData {
    Bytes(bytes::Bytes),
    File(PathBuf),
}
