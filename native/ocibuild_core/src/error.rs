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

    /// An image reference such as `alpine:3.19` or `host:5000/a/b@sha256:...` that does not parse.
    #[error("invalid image reference {0:?}")]
    InvalidReference(String),

    /// An index or manifest list has no manifest for the wanted platform.
    #[error("no manifest for platform {wanted} (available: {})", available.join(", "))]
    NoMatchingPlatform {
        wanted: String,
        available: Vec<String>,
    },

    /// The registry answered with an error status we do not retry (after retries for those we do).
    /// `code` is the first OCI error code of the body (`MANIFEST_UNKNOWN`, `DENIED`, ...).
    #[error("registry {registry} answered {status} to {action}{}", code.as_ref().map(|c| format!(" ({c}: {message})")).unwrap_or_default())]
    Registry {
        registry: String,
        action: String,
        status: u16,
        code: Option<String>,
        message: String,
    },

    /// The registry refused our credentials (or anonymous access) with 401/403.
    #[error("registry {registry} refused access to {scope} ({status}): check the credentials")]
    Unauthorized {
        registry: String,
        scope: String,
        status: u16,
    },

    /// The connection failed (refused, reset, timed out, TLS) and retries ran out.
    #[error("cannot reach registry {registry}: {why}")]
    Http { registry: String, why: String },

    /// A token server or auth challenge we cannot use (plain-HTTP realm, malformed challenge, ...).
    #[error("authentication with {registry} failed: {why}")]
    Auth { registry: String, why: String },

    /// A credentials file or credential helper could not be used.
    #[error("credentials from {source_name}: {why}")]
    Credentials { source_name: String, why: String },

    /// The registry served a manifest type we cannot use.
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),

    /// A signing key we cannot use: not PEM, not ECDSA P-256, a corrupt cosign key, ...
    #[error("signing key: {0}")]
    SignKey(String),

    /// An encrypted (cosign) signing key whose password is missing or wrong.
    #[error("signing key password is {}", match .0 { SignKeyPassword::Missing => "missing: set COSIGN_PASSWORD", SignKeyPassword::Wrong => "wrong (COSIGN_PASSWORD does not decrypt the key)" })]
    SignKeyPassword(SignKeyPassword),

    /// The tarball to load does not exist.
    #[error("tarball {} not found", .0.display())]
    TarballNotFound(PathBuf),

    /// The tarball path names a directory, device or other non-file. `kind` is the word
    /// Erlang's `file:read_file_info/1` uses: `directory`, `device`, `symlink` or `other`.
    #[error("{} is a {kind}, not a tarball", path.display())]
    NotAFile { path: PathBuf, kind: &'static str },

    /// A tarball member whose name has a `..` component.
    #[error("tarball member {0:?} has a `..` component")]
    PathTraversal(String),

    /// A tarball member whose name is absolute.
    #[error("tarball member {0:?} is an absolute path")]
    AbsolutePath(String),

    /// A tarball member that is a symbolic or hard link; image layouts hold only files.
    #[error("tarball member {0:?} is a link; image layouts hold only files")]
    SymlinkNotAllowed(String),

    /// A layout whose index lists no image manifest.
    #[error("invalid OCI layout: index.json lists no image manifest")]
    NoManifests,

    /// An index whose `schemaVersion` is not 2.
    #[error("unsupported index schemaVersion {0}: only 2 is defined")]
    UnsupportedIndexVersion(serde_json::Value),

    /// An index without `schemaVersion` or `manifests`.
    #[error("index has no schemaVersion or no manifests")]
    InvalidIndexSchema,

    /// Untrusted input asked for more than a fixed bound (bytes, members, manifests, layers).
    #[error("{what} exceed the limit of {limit}")]
    LoadLimit { what: String, limit: u64 },
    /// A `{file, HostPath}` source that is not a regular file (a FIFO, socket or device): such
    /// a file can block the reader forever or never end, so it is refused before it is read.
    /// `kind` is `fifo`, `socket`, `character_device`, `block_device` or `unknown`.
    #[error("{path} is a {} special file, not a regular file", kind.replace('_', " "))]
    SpecialFile { path: PathBuf, kind: &'static str },

    /// An image config or manifest value that cannot be stored: `field` is `env`, `labels`,
    /// `annotations`, `entrypoint`, `cmd`, `workdir`, `user` or `exposed_ports`; `key` names
    /// the entry (the variable, label or annotation key, the item or the value itself);
    /// `why` is `nul_byte`, `equals_in_name` or `empty_name`.
    #[error("invalid {field} value {key:?}: {why}")]
    InvalidValue {
        field: &'static str,
        key: String,
        why: &'static str,
    },
    /// The caller of a sink (save, export) exited while it ran; its temp output was removed.
    #[error("{0} stopped: the caller exited")]
    Cancelled(String),
    /// A registry too slow to go on with, after retries: no response headers within the
    /// deadline, or a body (ours or theirs) moving slower than the minimum rate.
    #[error("registry {registry} timed out while {action}: {phase}")]
    Timeout {
        registry: String,
        action: String,
        phase: TimeoutPhase,
    },

    /// A registry sent us from HTTPS to plain HTTP (a redirect, an upload `Location`); `to`
    /// is the refused origin, without path or query.
    #[error("registry {registry} sent us from HTTPS to plain HTTP ({to}); refusing to continue without TLS")]
    Downgrade { registry: String, to: String },

    /// `SOURCE_DATE_EPOCH` is set but is not a non-negative integer of seconds (the raw value).
    #[error("SOURCE_DATE_EPOCH is not a non-negative integer of seconds: {0:?}")]
    InvalidSourceDateEpoch(String),

    /// A DSSE envelope (an attestation) that is not well-formed: not JSON, fields missing, not
    /// base64, too large.
    #[error("malformed DSSE envelope: {0}")]
    Envelope(String),

    /// A public key we cannot verify with: not PEM, not an ECDSA P-256 `PUBLIC KEY` block.
    #[error("public key: {0}")]
    PublicKey(String),
}

/// What a [`Error::Timeout`] ran out of waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// No response headers within `limit` of the request being sent.
    Headers { limit: std::time::Duration },
    /// A body moved fewer than `min_rate` bytes/s over a `window`.
    Body {
        min_rate: u64,
        window: std::time::Duration,
    },
}

impl std::fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TimeoutPhase::Headers { limit } => write!(
                f,
                "no response headers within {:.1} s (OCIBUILD_REGISTRY_TIMEOUT)",
                limit.as_secs_f64()
            ),
            TimeoutPhase::Body { min_rate, window } => write!(
                f,
                "the transfer moved less than {min_rate} bytes/s over {:.1} s (OCIBUILD_MIN_TRANSFER_RATE)",
                window.as_secs_f64()
            ),
        }
    }
}

/// Why an encrypted signing key could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignKeyPassword {
    Missing,
    Wrong,
}

/// How many characters of an outside string an error shows.
const SHOWN_CHARS: usize = 200;

/// Text from outside (a registry's JSON, a tarball's member names, a digest to parse) as an
/// error may carry it: control characters escaped, so the message stays one line and cannot
/// drive a terminal, and at most [`SHOWN_CHARS`] characters then `…`, so a hostile document
/// cannot put megabytes into an error term.
pub fn shown(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == SHOWN_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
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

#[cfg(test)]
mod shown_tests {
    use super::*;

    #[test]
    fn plain_text_is_shown_as_is_and_the_rest_escaped_and_cut() {
        assert_eq!(shown("sha256:abc"), "sha256:abc");
        assert_eq!(shown("a\u{1b}]0;x\u{7}\nb"), "a\\u{1b}]0;x\\u{7}\\nb");
        let long = shown(&"é".repeat(10_000));
        assert_eq!(long.chars().count(), SHOWN_CHARS + 1);
        assert!(long.ends_with('…'));
    }

    proptest::proptest! {
        #[test]
        fn prop_shown_is_one_bounded_line(s in ".*") {
            let out = shown(&s);
            proptest::prop_assert!(!out.chars().any(char::is_control));
            // An escaped control character is at most 10 characters (`\u{10ffff}`).
            proptest::prop_assert!(out.chars().count() <= SHOWN_CHARS * 10 + 1);
            if s.chars().count() <= SHOWN_CHARS && !s.chars().any(char::is_control) {
                proptest::prop_assert_eq!(out, s);
            }
        }
    }
}
