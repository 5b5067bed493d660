//! One error type for the whole core. Each variant maps to one tagged Erlang reason in the NIF
//! glue (see `native/ocibuild_nif/src/errors.rs`), so callers can match on what went wrong.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A layer path is unusable: empty, contains NUL, has a `..` component, ...
    #[error("invalid path {path:?}: {why}")]
    InvalidPath { path: String, why: &'static str },

    /// Two entries of one layer land on the same path after normalisation.
    #[error("duplicate path {0:?} in layer")]
    DuplicatePath(String),

    /// A file mode outside 0..=0o7777.
    #[error("invalid mode {mode:#o} for {path:?}: modes must be at most 0o7777")]
    InvalidMode { path: String, mode: u32 },

    /// A `{file, HostPath}` source could not be read.
    #[error("cannot read {path}: {source}")]
    FileRead {
        path: PathBuf,
        source: std::io::Error,
    },

    /// Any other I/O failure, with what we were doing at the time.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },

    /// A blob's bytes do not hash to the digest they were stored or announced under.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },

    /// A string that should be `sha256:<64 hex>` is not.
    #[error("invalid digest {0:?}")]
    InvalidDigest(String),

    /// A platform string such as `linux/amd64` that does not parse.
    #[error("invalid platform {0:?}")]
    InvalidPlatform(String),

    /// Bad JSON from a base image, a tarball or a registry.
    #[error("invalid JSON in {what}: {why}")]
    InvalidJson { what: String, why: String },

    /// An image layout or tarball that does not have the shape the OCI spec requires.
    #[error("invalid image layout: {0}")]
    InvalidLayout(String),

    /// A layer the sink needs whose bytes are not available locally.
    #[error("blob {0} is not available locally")]
    BlobMissing(String),

    /// A caller-supplied option is out of range or of the wrong kind.
    #[error("invalid option {name}: {why}")]
    InvalidOption { name: &'static str, why: String },

    /// Compression failed inside the codec.
    #[error("compression failed: {0}")]
    Compression(String),
}

impl Error {
    /// Wrap an I/O error with a short description of the operation.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
