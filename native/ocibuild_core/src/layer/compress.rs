//! Layer compression: gzip and zstd, both multithreaded, both with output bytes that do not
//! depend on the number of threads (a layer digest must be the same on a laptop and in CI).
//!
//! Gzip is compressed pigz-style: the input is cut into fixed 1 MiB blocks; each block is
//! deflated on its own (primed with the previous block's last 32 KiB as dictionary, so the
//! ratio stays close to a single stream) and ends in a sync flush, which byte-aligns it. The
//! blocks are concatenated into one ordinary gzip member, so any gzip reader can read it.
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

use flate2::{Compress, FlushCompress, Status};

use crate::media_types::{OCI_LAYER_GZIP, OCI_LAYER_ZSTD};
use crate::{Error, Result};

/// Gzip level: zlib's default, the usual trade-off for layers (docker and crane use it too).
pub const GZIP_LEVEL: u32 = 6;
/// Zstd level: libzstd's default.
pub const ZSTD_LEVEL: i32 = 3;
/// Input bytes per zstd worker job. Part of the output format: changing it changes digests.
pub const ZSTD_JOB_SIZE: u32 = 2 << 20;
/// Input block size for parallel gzip. Part of the output format: changing it changes digests.
pub const GZIP_BLOCK_SIZE: usize = 1 << 20;
/// Deflate's window: the most history a block can use from its predecessor.
const DICT_SIZE: usize = 32 * 1024;

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

/// Parallel gzip: one gzip member whose deflate stream is made of independently compressed,
/// byte-aligned blocks. Blocks are compressed by a pool of worker threads and written to `out`
/// in order from the thread that calls `write`, so `out` need not be `Send`.
pub struct GzipWriter<W: Write> {
    /// `None` only after `finish` has handed it back.
    out: Option<W>,
    /// The block being filled; always `GZIP_BLOCK_SIZE` of capacity.
    block: Vec<u8>,
    /// The last `DICT_SIZE` bytes of the previous block.
    dict: Vec<u8>,
    crc: crc32fast::Hasher,
    /// Input bytes written so far (the trailer's ISIZE).
    total_in: u64,
    /// Blocks handed to workers, oldest first; their results are written in this order.
    pending: VecDeque<Receiver<Result<Deflated, String>>>,
    max_pending: usize,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    /// Input buffers returned by workers, reused to avoid reallocating 1 MiB per block.
    spare: Vec<Vec<u8>>,
}

struct Job {
    input: Vec<u8>,
    dict: Vec<u8>,
    last: bool,
    reply: SyncSender<Result<Deflated, String>>,
}

struct Deflated {
    output: Vec<u8>,
    input: Vec<u8>,
    crc: crc32fast::Hasher,
}

/// gzip header: magic, deflate, no flags, mtime 0, no extra flags, OS "unknown" (255), so the
/// bytes do not depend on when or where they were made.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

impl<W: Write> GzipWriter<W> {
    /// Start a gzip member on `out`, compressing on `threads` worker threads (0 counts as 1).
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
            dict: Vec::new(),
            crc: crc32fast::Hasher::new(),
            total_in: 0,
            pending: VecDeque::new(),
            // Enough blocks in flight to keep every worker busy while the oldest is written.
            max_pending: 2 * threads + 1,
            jobs: Some(jobs),
            workers,
            spare: Vec::new(),
        })
    }

    /// Compress the last (possibly empty) block, write the trailer, and return `out`.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        let total = self.total_in;
        let crc = std::mem::take(&mut self.crc).finalize();
        let out = self.out.as_mut().expect("present until finish returns");
        out.write_all(&crc.to_le_bytes())?;
        // ISIZE is the input length modulo 2^32, as RFC 1952 says.
        out.write_all(&(total as u32).to_le_bytes())?;
        out.flush()?;
        self.stop_workers();
        Ok(self.out.take().expect("present until finish returns"))
    }

    /// Hand the current block to the workers; `last` makes it end the deflate stream.
    fn submit(&mut self, last: bool) -> io::Result<()> {
        while self.pending.len() >= self.max_pending {
            self.write_oldest()?;
        }
        let next = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(GZIP_BLOCK_SIZE));
        let input = std::mem::replace(&mut self.block, next);
        let tail = input[input.len().saturating_sub(DICT_SIZE)..].to_vec();
        let prev_dict = std::mem::replace(&mut self.dict, tail);
        let (reply, result) = mpsc::sync_channel(1);
        let job = Job {
            input,
            dict: prev_dict,
            last,
            reply,
        };
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| codec_error("gzip writer already finished"))?;
        jobs.send(job)
            .map_err(|_| codec_error("gzip workers stopped"))?;
        self.pending.push_back(result);
        // Write whatever is already done, so output (and its hashing) keeps pace with input.
        while let Some(front) = self.pending.front() {
            match front.try_recv() {
                Ok(done) => {
                    self.pending.pop_front();
                    self.write_block(done)?;
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
        self.write_block(done)
    }

    fn write_block(&mut self, done: Result<Deflated, String>) -> io::Result<()> {
        let mut done = done.map_err(codec_error)?;
        self.out
            .as_mut()
            .expect("present until finish returns")
            .write_all(&done.output)?;
        self.crc.combine(&done.crc);
        self.total_in += done.input.len() as u64;
        done.input.clear();
        self.spare.push(done.input);
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
            // Submit only when more input arrives, so the last block is always the one
            // `finish` marks final (a full block followed by nothing stays here until then).
            if self.block.len() == GZIP_BLOCK_SIZE && !rest.is_empty() {
                self.submit(false)?;
            }
        }
        Ok(buf.len())
    }

    /// Blocks are independent of flush calls (that would make output depend on write
    /// patterns), so this only flushes `out`.
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
    let mut deflate = Compress::new(flate2::Compression::new(GZIP_LEVEL), false);
    loop {
        // Only one idle worker waits on the queue at a time; the rest wait for the lock.
        let job = match queue.lock() {
            Ok(q) => q.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let mut output = Vec::new();
        let result =
            deflate_block(&mut deflate, &job.dict, &job.input, job.last, &mut output).map(|()| {
                let mut crc = crc32fast::Hasher::new();
                crc.update(&job.input);
                Deflated {
                    output,
                    input: job.input,
                    crc,
                }
            });
        // The writer may have gone away after an error elsewhere; nothing left to do then.
        let _ = job.reply.send(result);
    }
}

/// Deflate one block as a raw deflate fragment: primed with `dict`, ending in a sync flush
/// (byte-aligned, so fragments concatenate) or, for the last block, in the final block.
fn deflate_block(
    deflate: &mut Compress,
    dict: &[u8],
    input: &[u8],
    last: bool,
    output: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    deflate.reset();
    if !dict.is_empty() {
        deflate
            .set_dictionary(dict)
            .map_err(|e| format!("deflate dictionary: {e}"))?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    output.reserve(input.len() / 2 + 1024);
    let mut consumed = 0;
    loop {
        let before = deflate.total_in();
        let status = deflate
            .compress_vec(&input[consumed..], output, flush)
            .map_err(|e| format!("deflate: {e}"))?;
        consumed += (deflate.total_in() - before) as usize;
        // A sync flush is complete once all input is in and the codec left output space
        // unused; a finish is complete when the codec says the stream ended.
        let done = match flush {
            FlushCompress::Finish => status == Status::StreamEnd,
            _ => consumed == input.len() && output.len() < output.capacity(),
        };
        if done {
            return Ok(());
        }
        output.reserve(output.capacity().max(64 * 1024));
    }
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

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gz)
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

    #[test]
    fn gzip_roundtrips_as_one_member_with_fixed_header() {
        let data = sample(5 * GZIP_BLOCK_SIZE + 12_345);
        let gz = compress(Compression::Gzip, &data, 2, 100_000);
        assert_eq!(&gz[..10], &GZIP_HEADER);
        // A single member: a decoder that stops after the first member still sees everything.
        assert_eq!(gunzip(&gz), data);
        let trailer = &gz[gz.len() - 8..];
        assert_eq!(trailer[..4], crc32fast::hash(&data).to_le_bytes());
        assert_eq!(trailer[4..], (data.len() as u32).to_le_bytes());
        assert!(
            gz.len() < data.len() / 3,
            "ratio should stay sane: {} -> {}",
            data.len(),
            gz.len()
        );
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
