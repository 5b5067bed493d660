//! Progress events of long registry jobs. The NIF turns them into messages to the calling
//! process, which calls the user's progress fun; here they are plain values.

use std::sync::Arc;

use crate::digest::Digest;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Pull: a manifest or index was read.
    Manifest,
    /// Pull: the image config was read.
    Config,
    /// Pull: a base layer is being downloaded into the cache.
    Layer,
    /// Push: a blob is being uploaded.
    Upload,
    /// Push: the registry already had the blob (HEAD) or mounted it from another repository.
    Exists,
    Mounted,
    /// Push: a manifest, index or tag was put.
    ManifestPut,
}

impl Phase {
    pub fn is_push(self) -> bool {
        matches!(
            self,
            Phase::Upload | Phase::Exists | Phase::Mounted | Phase::ManifestPut
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Phase::Manifest => "manifest",
            Phase::Config => "config",
            Phase::Layer => "layer",
            Phase::Upload => "upload",
            Phase::Exists => "exists",
            Phase::Mounted => "mounted",
            Phase::ManifestPut => "manifest_put",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    pub phase: Phase,
    pub digest: Option<Digest>,
    /// Bytes moved so far for this item (received on pull, sent on push).
    pub bytes: u64,
    pub total: Option<u64>,
}

/// Where progress goes. Cloned into every task of a job.
pub type ProgressSink = Arc<dyn Fn(Progress) + Send + Sync>;

/// A sink that drops everything (tests, and callers without a progress fun).
pub fn ignore() -> ProgressSink {
    Arc::new(|_| {})
}

/// Reports byte counts at most every `step` bytes (and always at the end), so a 1 GB layer
/// sends a few hundred messages rather than one per network read.
pub struct Throttled {
    sink: ProgressSink,
    phase: Phase,
    digest: Option<Digest>,
    total: Option<u64>,
    reported: u64,
    step: u64,
    started: bool,
}

const STEP: u64 = 1 << 20;

impl Throttled {
    pub fn new(
        sink: ProgressSink,
        phase: Phase,
        digest: Option<Digest>,
        total: Option<u64>,
    ) -> Self {
        Throttled {
            sink,
            phase,
            digest,
            total,
            reported: 0,
            step: STEP,
            started: false,
        }
    }

    /// Report `bytes` done if a step has passed since the last report, on the first call, and
    /// when the total is reached.
    pub fn update(&mut self, bytes: u64) {
        let first = !self.started;
        let done = self.total.is_some_and(|t| bytes >= t) && bytes != self.reported;
        if first || done || bytes >= self.reported + self.step {
            self.started = true;
            self.reported = bytes;
            (self.sink)(Progress {
                phase: self.phase,
                digest: self.digest.clone(),
                bytes,
                total: self.total,
            });
        }
    }
}
