//! Progress of a layer build: how many bytes of the layer's files have been read, of how many.
//!
//! A large release takes seconds to tar and compress; a caller with a terminal wants to show
//! that as it goes. The build reports through a [`BuildProgressFn`] set in
//! [`LayerOptions::progress`](super::LayerOptions), throttled by [`Reporter`]: a first report
//! (nothing read yet, the total), at most one per [`REPORT_INTERVAL`] while reading, and a last
//! one whose `bytes_read` equals its `total_bytes`. `bytes_read` never goes down.
//!
//! Reports are made on the thread that reads the files (the build's producer thread), never
//! on the thread that called `build_layer`: the NIF sends each one as a message, which the VM
//! allows only from threads it does not manage.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use ocibuild_core::layer::progress::{BuildProgress, BuildProgressFn};
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let sink = seen.clone();
//! let progress = BuildProgressFn::new(move |p: BuildProgress| sink.lock().unwrap().push(p));
//! progress.report(BuildProgress { bytes_read: 0, total_bytes: 10 });
//! assert_eq!(seen.lock().unwrap().len(), 1);
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Content, FileEntry};

/// The longest a build stays silent while it reads: often enough for a live line on a
/// terminal, rarely enough that a fast build sends a few messages per second, not one per read.
pub const REPORT_INTERVAL: Duration = Duration::from_millis(100);

/// One report: bytes of the layer's file contents read so far, and in all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildProgress {
    pub bytes_read: u64,
    pub total_bytes: u64,
}

/// Where a build's reports go (cheap to clone; shared with the producer thread).
#[derive(Clone)]
pub struct BuildProgressFn(Arc<dyn Fn(BuildProgress) + Send + Sync>);

impl BuildProgressFn {
    pub fn new(f: impl Fn(BuildProgress) + Send + Sync + 'static) -> Self {
        BuildProgressFn(Arc::new(f))
    }

    pub fn report(&self, progress: BuildProgress) {
        (self.0)(progress)
    }
}

impl fmt::Debug for BuildProgressFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BuildProgressFn")
    }
}

/// The bytes a layer's files hold, as known before reading them: binaries by their length,
/// host files by what `stat` says now. A file that cannot be stat'ed counts 0 (reading it will
/// fail with the real error); one that changes size before it is opened is corrected by the
/// [`Reporter`], whose last report gives what was really read.
pub fn planned_bytes(entries: &[FileEntry]) -> u64 {
    entries
        .iter()
        .map(|e| match &e.content {
            Content::Bytes(b) => b.len() as u64,
            Content::File(path) => std::fs::metadata(path).map_or(0, |m| m.len()),
        })
        .fold(0u64, u64::saturating_add)
}

/// Counts the bytes read and reports them, throttled.
pub struct Reporter {
    sink: BuildProgressFn,
    interval: Duration,
    read: u64,
    total: u64,
    last_at: Instant,
    last: Option<BuildProgress>,
}

impl Reporter {
    /// Reports "nothing read yet, `total` to go" at once.
    pub fn start(sink: BuildProgressFn, total: u64, interval: Duration) -> Reporter {
        let mut reporter = Reporter {
            sink,
            interval,
            read: 0,
            total,
            last_at: Instant::now(),
            last: None,
        };
        reporter.emit();
        reporter
    }

    /// `n` more bytes were read.
    pub fn read(&mut self, n: u64) {
        self.read = self.read.saturating_add(n);
        // A file that grew between the stat and the open: the total is at least what was read.
        self.total = self.total.max(self.read);
        if self.last_at.elapsed() >= self.interval {
            self.emit();
        }
    }

    /// Everything was read: the last report, `bytes_read == total_bytes` (what was really read).
    pub fn finish(mut self) {
        self.total = self.read;
        self.emit();
    }

    fn emit(&mut self) {
        let now = BuildProgress {
            bytes_read: self.read,
            total_bytes: self.total,
        };
        if self.last != Some(now) {
            self.sink.report(now);
            self.last = Some(now);
        }
        self.last_at = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn recording() -> (BuildProgressFn, Arc<Mutex<Vec<BuildProgress>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        (
            BuildProgressFn::new(move |p| sink.lock().unwrap().push(p)),
            seen,
        )
    }

    fn p(bytes_read: u64, total_bytes: u64) -> BuildProgress {
        BuildProgress {
            bytes_read,
            total_bytes,
        }
    }

    #[test]
    fn reports_start_steps_and_end_without_repeats() {
        let (sink, seen) = recording();
        let mut r = Reporter::start(sink, 10, Duration::ZERO);
        r.read(4);
        r.read(0);
        r.read(6);
        r.finish();
        assert_eq!(*seen.lock().unwrap(), [p(0, 10), p(4, 10), p(10, 10)]);
    }

    #[test]
    fn a_long_interval_leaves_the_first_and_last_report() {
        let (sink, seen) = recording();
        let mut r = Reporter::start(sink, 3 << 20, Duration::from_secs(3600));
        for _ in 0..3 {
            r.read(1 << 20);
        }
        r.finish();
        assert_eq!(*seen.lock().unwrap(), [p(0, 3 << 20), p(3 << 20, 3 << 20)]);
    }

    #[test]
    fn the_last_report_gives_what_was_really_read() {
        // More than planned (a file grew before it was opened): the total follows.
        let (sink, seen) = recording();
        let mut r = Reporter::start(sink, 5, Duration::ZERO);
        r.read(8);
        r.finish();
        assert_eq!(*seen.lock().unwrap(), [p(0, 5), p(8, 8)]);
        // Less (it shrank): the last report still ends where it says the total is.
        let (sink, seen) = recording();
        let mut r = Reporter::start(sink, 5, Duration::ZERO);
        r.read(3);
        r.finish();
        assert_eq!(*seen.lock().unwrap(), [p(0, 5), p(3, 5), p(3, 3)]);
    }

    #[test]
    fn planned_bytes_counts_binaries_and_host_files() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("f");
        std::fs::write(&host, vec![1u8; 1000]).unwrap();
        let entries = [
            FileEntry::new("/a", Content::Bytes(vec![0; 24]), 0o644),
            FileEntry::new("/b", Content::File(host), 0o644),
            FileEntry::new("/c", Content::File(dir.path().join("missing")), 0o644),
        ];
        assert_eq!(planned_bytes(&entries), 1024);
    }
}
