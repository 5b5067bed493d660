//! Layer compression: gzip and zstd, both multithreaded, both with output bytes that do not
//! depend on the number of threads (a layer digest must be the same on a laptop and in CI).
//!
//! Gzip is a multi-member stream: the input is cut into fixed 1 MiB blocks and each block is
//! compressed whole by libdeflate (about twice zlib's speed at the same level, and a slightly
//! better ratio) into a gzip member of its own, on a pool of worker threads. Members are
//! concatenated in input order. RFC 1952 defines such a stream as one gzip file, and every
//! reader a layer meets reads it: Go's compress/gzip (containerd, docker, podman, skopeo,
//! umoci), gzip(1), Python's gzip, Erlang's zlib:gunzip, flate2's `MultiGzDecoder`.
//! libdeflate compresses a whole buffer at a time (no streaming, no preset dictionary), which
//! is why blocks are members rather than fragments of one deflate stream.
//! Zstd uses libzstd's own multithreaded mode, whose output is the same for any number of
//! workers as long as there is at least one (0 workers is a different, single-threaded format).
//!
//! ```
//! use std::io::Write;
//! use ocibuild_core::layer::Compression;
//! let mut w = Compression::parse("gzip")?.writer(Vec::new(), 2)?;
//! w.write_all(b"hello").unwrap();
//! let gz = w.finish()?;
//! assert_eq!(&gz[..2], &[0x1f, 0x8b]);
//! # Ok::<(), ocibuild_core::Error>(())
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use libdeflater::{CompressionLvl, Compressor as Deflater};

use crate::media_types::{OCI_LAYER_GZIP, OCI_LAYER_ZSTD};
use crate::{Error, Result};

/// Gzip level: zlib's default, the usual trade-off for layers (docker and crane use it too).
pub const GZIP_LEVEL: u32 = 6;
/// Zstd level: libzstd's default.
pub const ZSTD_LEVEL: i32 = 3;
/// Input bytes per zstd worker job. Part of the output format: changing it changes digests.
pub const ZSTD_JOB_SIZE: u32 = 2 << 20;
/// Input bytes per gzip member. Part of the output format: changing it changes digests.
/// On /usr/lib/erlang as a tar (60 MB), 1 MiB members come out 1.7% smaller than `gzip -6`
/// and only 0.05% larger than 8 MiB members (the 32 KiB window lost at each boundary costs
/// little), while a layer of a few MiB still spreads over both cores and the blocks in flight
/// stay a few MiB.
pub const GZIP_BLOCK_SIZE: usize = 1 << 20;

/// The layer compression formats we write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    Gzip,
    Zstd,
}

impl Compression {
    /// `gzip`, `zstd`, or `auto` (zstd: smaller and much faster, read by every current runtime).
    pub fn parse(s: &str) -> Result<Compression> {
        match s {
            "gzip" => Ok(Compression::Gzip),
            "zstd" | "auto" => Ok(Compression::Zstd),
            _ => Err(Error::InvalidOption {
                name: "compression",
                why: format!("expected gzip, zstd or auto, got {s:?}"),
            }),
        }
    }

    /// The OCI layer media type for tars compressed this way.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => OCI_LAYER_GZIP,
            Compression::Zstd => OCI_LAYER_ZSTD,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }

    /// A writer that compresses into `out` using `threads` worker threads (0 counts as 1).
    pub fn writer<W: Write>(self, out: W, threads: usize) -> Result<Compressor<W>> {
        let threads = threads.max(1);
        let sink = Sink(out);
        Ok(match self {
            Compression::Gzip => Compressor::Gzip(
                GzipWriter::new(sink, threads)
                    .map_err(|e| classify_error(e, "writing gzip header"))?,
            ),
            Compression::Zstd => {
                let codec_err = |e: io::Error| Error::Compression(format!("zstd setup: {e}"));
                let mut enc =
                    zstd::stream::write::Encoder::new(sink, ZSTD_LEVEL).map_err(codec_err)?;
                // u32::MAX workers is impossible anyway; saturate rather than fail.
                enc.multithread(u32::try_from(threads).unwrap_or(u32::MAX))
                    .map_err(codec_err)?;
                // libzstd's default job size keeps ~40 MB in flight per worker; 2 MiB jobs
                // keep a layer build near 20 MB per worker (so a release imaged from a VM
                // stays small) for ~0.15% larger output. Fixed, so still thread-invariant.
                enc.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))
                    .map_err(codec_err)?;
                Compressor::Zstd(enc)
            }
        })
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A compressing writer for either format. Call [`Compressor::finish`] to end the stream.
pub enum Compressor<W: Write> {
    Gzip(GzipWriter<Sink<W>>),
    Zstd(zstd::stream::write::Encoder<'static, Sink<W>>),
}

impl<W: Write> Compressor<W> {
    /// Write everything still buffered and the format's trailer; returns the inner writer.
    pub fn finish(self) -> Result<W> {
        let sink = match self {
            Compressor::Gzip(w) => w.finish(),
            Compressor::Zstd(w) => w.finish(),
        };
        sink.map(|s| s.0)
            .map_err(|e| classify_error(e, "writing compressed output"))
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Gzip(w) => w.write(buf),
            Compressor::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Gzip(w) => w.flush(),
            Compressor::Zstd(w) => w.flush(),
        }
    }
}

/// Turn an error from a [`Compressor`]'s `write` into ours: a failure of the destination
/// writer becomes `Error::Io` with `context`; anything else failed inside the codec.
pub fn classify_error(e: io::Error, context: &str) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<SinkError>()) {
        let inner = e.into_inner().expect("checked above");
        let sink = inner.downcast::<SinkError>().expect("checked above");
        return Error::io(context, sink.0);
    }
    Error::Compression(e.to_string())
}

/// The destination of a [`Compressor`]. It marks the destination's own errors so that
/// [`classify_error`] can tell "disk full" from "the codec failed".
pub struct Sink<W>(W);

#[derive(Debug)]
struct SinkError(io::Error);

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SinkError {}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .write(buf)
            .map_err(|e| io::Error::new(e.kind(), SinkError(e)))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0
            .flush()
            .map_err(|e| io::Error::new(e.kind(), SinkError(e)))
    }
}

/// Parallel gzip: one gzip member per `GZIP_BLOCK_SIZE` block of input. Blocks are compressed
/// by a pool of worker threads and written to `out` in order from the thread that calls
/// `write`, so `out` need not be `Send`. At most `max_pending` blocks are in flight, which
/// bounds memory whatever the input size.
pub struct GzipWriter<W: Write> {
    /// `None` only after `finish` has handed it back.
    out: Option<W>,
    /// The block being filled; always `GZIP_BLOCK_SIZE` of capacity.
    block: Vec<u8>,
    /// Whether the next member's header is already written (the first one is written by
    /// `new`, so a destination that cannot be written fails before any work starts).
    header_written: bool,
    /// Blocks handed to workers, oldest first; their members are written in this order.
    pending: VecDeque<Receiver<Result<Member, String>>>,
    max_pending: usize,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    /// Buffers returned by workers, reused to avoid reallocating a block's worth per block.
    spare_inputs: Vec<Vec<u8>>,
    spare_outputs: Vec<Vec<u8>>,
}

struct Job {
    input: Vec<u8>,
    /// An empty buffer for the member, recycled from an earlier block.
    output: Vec<u8>,
    reply: SyncSender<Result<Member, String>>,
}

/// One compressed block: a gzip member without its header (raw deflate and trailer), and its
/// input handed back for reuse.
struct Member {
    bytes: Vec<u8>,
    input: Vec<u8>,
}

/// gzip header: magic, deflate, no flags, mtime 0, no extra flags, OS "unknown" (255), so the
/// bytes do not depend on when or where they were made. Written by us rather than by
/// libdeflate's gzip wrapper so that they do not depend on the libdeflate version either.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
/// The member trailer: CRC-32 and ISIZE of the block's input.
const GZIP_TRAILER_LEN: usize = 8;

impl<W: Write> GzipWriter<W> {
    /// A gzip writer on `out`, compressing on `threads` worker threads (0 counts as 1).
    /// The first member's header is written at once: a destination that cannot be written
    /// fails here, before any input is compressed.
    pub fn new(mut out: W, threads: usize) -> io::Result<Self> {
        let threads = threads.max(1);
        out.write_all(&GZIP_HEADER)?;
        let (jobs, queue) = mpsc::sync_channel::<Job>(threads);
        let queue = Arc::new(Mutex::new(queue));
        let workers = (0..threads)
            .map(|_| {
                let queue = Arc::clone(&queue);
                std::thread::spawn(move || worker(&queue))
            })
            .collect();
        Ok(GzipWriter {
            out: Some(out),
            block: Vec::with_capacity(GZIP_BLOCK_SIZE),
            header_written: true,
            pending: VecDeque::new(),
            // Enough blocks in flight to keep every worker busy while the oldest is written.
            max_pending: 2 * threads + 1,
            jobs: Some(jobs),
            workers,
            spare_inputs: Vec::new(),
            spare_outputs: Vec::new(),
        })
    }

    /// Compress the last block and return `out`. The last block is empty only when the whole
    /// input was: an empty input still makes one (empty) member, so the output is a gzip file.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit()?;
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        let out = self.out.as_mut().expect("present until finish returns");
        out.flush()?;
        self.stop_workers();
        Ok(self.out.take().expect("present until finish returns"))
    }

    /// Hand the current block to the workers.
    fn submit(&mut self) -> io::Result<()> {
        while self.pending.len() >= self.max_pending {
            self.write_oldest()?;
        }
        let next = self
            .spare_inputs
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(GZIP_BLOCK_SIZE));
        let input = std::mem::replace(&mut self.block, next);
        let output = self.spare_outputs.pop().unwrap_or_default();
        let (reply, result) = mpsc::sync_channel(1);
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| codec_error("gzip writer already finished"))?;
        jobs.send(Job {
            input,
            output,
            reply,
        })
        .map_err(|_| codec_error("gzip workers stopped"))?;
        self.pending.push_back(result);
        // Write whatever is already done, so output (and its hashing) keeps pace with input.
        while let Some(front) = self.pending.front() {
            match front.try_recv() {
                Ok(done) => {
                    self.pending.pop_front();
                    self.write_member(done)?;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(codec_error("gzip worker stopped")),
            }
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let front = self
            .pending
            .pop_front()
            .expect("caller checked pending is non-empty");
        let done = front
            .recv()
            .map_err(|_| codec_error("gzip worker stopped"))?;
        self.write_member(done)
    }

    fn write_member(&mut self, done: Result<Member, String>) -> io::Result<()> {
        let mut done = done.map_err(codec_error)?;
        let out = self.out.as_mut().expect("present until finish returns");
        if !self.header_written {
            out.write_all(&GZIP_HEADER)?;
        }
        out.write_all(&done.bytes)?;
        self.header_written = false;
        done.input.clear();
        done.bytes.clear();
        self.spare_inputs.push(done.input);
        self.spare_outputs.push(done.bytes);
        Ok(())
    }

    fn stop_workers(&mut self) {
        // Closing the queue ends each worker's loop once it has finished its current block.
        self.jobs = None;
        self.pending.clear();
        for w in self.workers.drain(..) {
            // A worker that panicked has already reported through its dropped reply channel.
            let _ = w.join();
        }
    }
}

impl<W: Write> Write for GzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let room = GZIP_BLOCK_SIZE - self.block.len();
            let n = room.min(rest.len());
            self.block.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            // Submit only when more input arrives, so `finish` always has a block to submit
            // and only an empty input ends in an empty member.
            if self.block.len() == GZIP_BLOCK_SIZE && !rest.is_empty() {
                self.submit()?;
            }
        }
        Ok(buf.len())
    }

    /// Member boundaries are independent of flush calls (that would make output depend on
    /// write patterns), so this only flushes `out`.
    fn flush(&mut self) -> io::Result<()> {
        self.out.as_mut().map_or(Ok(()), Write::flush)
    }
}

impl<W: Write> Drop for GzipWriter<W> {
    fn drop(&mut self) {
        self.stop_workers();
    }
}

fn codec_error(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

fn worker(queue: &Mutex<Receiver<Job>>) {
    let level = CompressionLvl::new(GZIP_LEVEL as i32).expect("level 6 is in libdeflate's range");
    let mut deflater = Deflater::new(level);
    loop {
        // Only one idle worker waits on the queue at a time; the rest wait for the lock.
        let job = match queue.lock() {
            Ok(q) => q.recv(),
            Err(_) => return,
        };
        let Ok(mut job) = job else { return };
        let result = gzip_member(&mut deflater, &job.input, &mut job.output).map(|()| Member {
            bytes: job.output,
            input: job.input,
        });
        // The writer may have gone away after an error elsewhere; nothing left to do then.
        let _ = job.reply.send(result);
    }
}

/// Compress `input` into `member` as a gzip member without its header: raw deflate, then the
/// trailer.
fn gzip_member(
    deflater: &mut Deflater,
    input: &[u8],
    member: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    let bound = deflater.deflate_compress_bound(input.len());
    member.clear();
    member.resize(bound, 0);
    // The bound is libdeflate's own worst case for this length, so running out of room
    // would be a libdeflate bug; it is still reported as a codec error, not a panic.
    let n = deflater
        .deflate_compress(input, member)
        .map_err(|e| format!("deflate: {e:?}"))?;
    member.truncate(n);
    member.reserve(GZIP_TRAILER_LEN);
    member.extend_from_slice(&crc32fast::hash(input).to_le_bytes());
    // ISIZE is the input length modulo 2^32, as RFC 1952 says (a block is far below 4 GiB).
    member.extend_from_slice(&(input.len() as u32).to_le_bytes());
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Read;

    use super::*;

    /// Compressible but not trivial input: pseudo-random words, like text and code.
    fn sample(len: usize) -> Vec<u8> {
        let words = [
            &b"erlang "[..],
            b"beam ",
            b"module ",
            b"ocibuild\n",
            b"{ok, Value} ",
            b"0x1f8b ",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut out = Vec::with_capacity(len + 16);
        while out.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let w = words[(state % words.len() as u64) as usize];
            out.extend_from_slice(w);
            if state.is_multiple_of(5) {
                out.push((state >> 32) as u8);
            }
        }
        out.truncate(len);
        out
    }

    fn compress(c: Compression, data: &[u8], threads: usize, chunk: usize) -> Vec<u8> {
        let mut w = c.writer(Vec::new(), threads).unwrap();
        for piece in data.chunks(chunk.max(1)) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap()
    }

    /// Every member, as layer readers do (a single-member decoder would stop after 1 MiB).
    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(gz)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn parses_names() {
        assert_eq!(Compression::parse("gzip").unwrap(), Compression::Gzip);
        assert_eq!(Compression::parse("zstd").unwrap(), Compression::Zstd);
        assert_eq!(Compression::parse("auto").unwrap(), Compression::Zstd);
        assert!(matches!(
            Compression::parse("lz4"),
            Err(Error::InvalidOption {
                name: "compression",
                ..
            })
        ));
        assert_eq!(
            Compression::Gzip.media_type(),
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_eq!(
            Compression::Zstd.media_type(),
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
        assert_eq!(Compression::Zstd.to_string(), "zstd");
    }

    /// Split a multi-member gzip stream into its members, checking each one as we go: our fixed
    /// header, a complete raw deflate stream, and a trailer whose CRC-32 and ISIZE match what
    /// that deflate stream decodes to. Returns each member's decoded bytes.
    fn members(gz: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut rest = gz;
        while !rest.is_empty() {
            assert_eq!(&rest[..10], &GZIP_HEADER, "member {} header", out.len());
            rest = &rest[10..];
            let mut inflate = flate2::Decompress::new(false);
            let mut block = Vec::with_capacity(2 * GZIP_BLOCK_SIZE);
            let status = inflate
                .decompress_vec(rest, &mut block, flate2::FlushDecompress::Finish)
                .unwrap();
            assert_eq!(status, flate2::Status::StreamEnd, "member {}", out.len());
            rest = &rest[inflate.total_in() as usize..];
            assert_eq!(rest[..4], crc32fast::hash(&block).to_le_bytes());
            assert_eq!(rest[4..8], (block.len() as u32).to_le_bytes());
            rest = &rest[8..];
            out.push(block);
        }
        out
    }

    #[test]
    fn gzip_is_one_member_per_block_each_with_fixed_header_and_trailer() {
        let data = sample(5 * GZIP_BLOCK_SIZE + 12_345);
        let gz = compress(Compression::Gzip, &data, 2, 100_000);
        let blocks = members(&gz);
        assert_eq!(blocks.len(), 6);
        assert!(blocks[..5].iter().all(|b| b.len() == GZIP_BLOCK_SIZE));
        assert_eq!(blocks.concat(), data);
        assert_eq!(gunzip(&gz), data);
        assert!(
            gz.len() < data.len() / 3,
            "ratio should stay sane: {} -> {}",
            data.len(),
            gz.len()
        );
    }

    #[test]
    fn gzip_of_empty_input_is_one_empty_member() {
        let gz = compress(Compression::Gzip, &[], 2, 1);
        assert_eq!(members(&gz), vec![Vec::<u8>::new()]);
        assert_eq!(gunzip(&gz), b"");
        // Nothing written at all is not a gzip file; a header, an empty final block and a
        // zero trailer is.
        assert!(gz.len() <= 10 + 5 + 8, "{} bytes", gz.len());
    }

    #[test]
    fn gzip_output_does_not_depend_on_threads_at_block_boundaries() {
        let incompressible: Vec<u8> = {
            let mut state = 0x9e37_79b9_7f4a_7c15u64;
            (0..3 * GZIP_BLOCK_SIZE + 1)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect()
        };
        let inputs = [
            sample(1),
            sample(GZIP_BLOCK_SIZE - 1),
            sample(GZIP_BLOCK_SIZE),
            sample(GZIP_BLOCK_SIZE + 1),
            sample(3 * GZIP_BLOCK_SIZE),
            vec![0u8; 2 * GZIP_BLOCK_SIZE + 17],
            incompressible,
        ];
        for data in &inputs {
            let one = compress(Compression::Gzip, data, 1, data.len());
            assert_eq!(
                one,
                compress(Compression::Gzip, data, 2, 8191),
                "length {}",
                data.len()
            );
            assert_eq!(gunzip(&one), *data, "length {}", data.len());
            assert_eq!(
                members(&one).len(),
                data.len().div_ceil(GZIP_BLOCK_SIZE),
                "length {}",
                data.len()
            );
        }
    }

    #[test]
    fn gzip_output_does_not_depend_on_threads_or_write_sizes() {
        let data = sample(6 * GZIP_BLOCK_SIZE + 777);
        let one = compress(Compression::Gzip, &data, 1, data.len());
        assert_eq!(one, compress(Compression::Gzip, &data, 2, 4096));
        assert_eq!(one, compress(Compression::Gzip, &data, 4, 1_000_003));
        assert_eq!(one, compress(Compression::Gzip, &data, 0, 65_536));
    }

    #[test]
    fn gzip_edge_sizes_roundtrip() {
        for len in [
            0,
            1,
            GZIP_BLOCK_SIZE - 1,
            GZIP_BLOCK_SIZE,
            GZIP_BLOCK_SIZE + 1,
            2 * GZIP_BLOCK_SIZE,
        ] {
            let data = sample(len);
            let gz = compress(Compression::Gzip, &data, 2, 300_000);
            assert_eq!(gunzip(&gz), data, "length {len}");
        }
    }

    #[test]
    fn gzip_keeps_a_fixed_number_of_blocks_in_flight() {
        let data = sample(40 * GZIP_BLOCK_SIZE);
        let mut w = GzipWriter::new(Vec::new(), 2).unwrap();
        assert_eq!(w.max_pending, 5);
        for piece in data.chunks(64 * 1024) {
            w.write_all(piece).unwrap();
            // Every block buffer is pending, being filled, or spare: a fixed few, whatever
            // the input size.
            assert!(w.pending.len() <= w.max_pending);
            assert!(w.pending.len() + w.spare_inputs.len() <= w.max_pending + 1);
            assert!(w.pending.len() + w.spare_outputs.len() <= w.max_pending + 1);
        }
        assert_eq!(gunzip(&w.finish().unwrap()), data);
    }

    /// gzip(1) is an independent reader of our gzip streams. It is part of every Debian system
    /// (and of scripts/install-deps.sh), so a missing gzip fails the test rather than skip it.
    pub(crate) fn assert_passes_gzip_t(path: &std::path::Path) {
        let out = std::process::Command::new("gzip")
            .arg("-t")
            .arg(path)
            .output()
            .expect("running gzip -t");
        assert!(
            out.status.success(),
            "gzip -t: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn gzip_passes_gzip_t() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gz");
        std::fs::write(
            &path,
            compress(
                Compression::Gzip,
                &sample(3 * GZIP_BLOCK_SIZE + 5),
                2,
                1 << 16,
            ),
        )
        .unwrap();
        assert_passes_gzip_t(&path);
    }

    /// Python's gzip module is another independent reader (python3 is in
    /// scripts/install-deps.sh for the registry suite); it must read every member.
    #[test]
    fn gzip_reads_back_with_python() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gz");
        let data = sample(2 * GZIP_BLOCK_SIZE + 3);
        std::fs::write(&path, compress(Compression::Gzip, &data, 2, 1 << 16)).unwrap();
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import gzip, hashlib, sys; d = gzip.open(sys.argv[1]).read(); \
                 print(len(d), hashlib.sha256(d).hexdigest())",
            ])
            .arg(&path)
            .output()
            .expect("running python3");
        assert!(
            out.status.success(),
            "python3: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected = format!(
            "{} {}\n",
            data.len(),
            crate::digest::Digest::of(&data).hex()
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    }

    #[test]
    fn zstd_roundtrips_and_does_not_depend_on_threads_or_write_sizes() {
        let data = sample(8 * GZIP_BLOCK_SIZE + 99);
        let one = compress(Compression::Zstd, &data, 1, data.len());
        assert_eq!(zstd::decode_all(&one[..]).unwrap(), data);
        assert_eq!(one, compress(Compression::Zstd, &data, 2, 4096));
        assert_eq!(one, compress(Compression::Zstd, &data, 4, 1_000_003));
        assert_eq!(one, compress(Compression::Zstd, &data, 0, 65_536));
        assert!(one.len() < data.len() / 3);
    }

    #[test]
    fn destination_errors_are_io_errors_not_codec_errors() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let err = Compression::Gzip
            .writer(Full, 1)
            .err()
            .expect("the header write fails");
        assert!(
            matches!(err, Error::Io { ref source, .. } if source.kind() == io::ErrorKind::StorageFull)
        );
        let mut z = Compression::Zstd.writer(Full, 1).unwrap();
        let err = z
            .write_all(&sample(1 << 20))
            .and_then(|()| z.flush())
            .unwrap_err();
        assert!(matches!(classify_error(err, "x"), Error::Io { .. }));
    }
}
