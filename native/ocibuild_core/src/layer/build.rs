//! The layer pipeline: files -> tar -> sha256 (diff_id) -> compressor -> sha256 (digest) ->
//! temp file in the blob store -> renamed under its digest. One pass, nothing held whole in
//! memory.
//!
//! Two threads plus the compressor's workers share the work, so on a small machine reading and
//! hashing the tar overlaps with compressing it and with hashing and writing the output:
//! - a producer thread writes the tar into 1 MiB chunks, hashes each chunk for the diff_id and
//!   sends it down a short bounded channel (backpressure keeps memory flat);
//! - the calling thread feeds the chunks to the compressor, whose output goes through the
//!   digest hasher into the temp file.
//!
//! With `LayerOptions::progress` set, the producer also reports the bytes of file contents it
//! has read (see `progress`), from its own thread. When the layer cache asks for them, the
//! producer also hashes each host file as it streams it (see `file_digest`), so a build learns
//! its content key without a second read.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

use super::cache;
use super::compress::classify_error;
use super::file_digest::FileDigest;
use super::progress::{self, Reporter};
use super::tar_builder::{self, TarEntry};
use super::{FileEntry, Layer, LayerOptions};
use crate::blob_store::BlobStore;
use crate::digest::{Digest, Hasher, HashingWriter};
use crate::{Error, Result};

/// Size of the tar chunks passed from the producer to the compressor.
const CHUNK_SIZE: usize = 1 << 20;
/// Chunks that may wait in the channel: enough to ride out a slow file read, little memory.
const CHANNEL_DEPTH: usize = 4;
const OUTPUT_BUFFER: usize = 256 * 1024;

/// Build one layer from `entries` and store its compressed bytes in `store`, or take it from
/// the store's layer cache when its inputs are unchanged (see `cache`).
///
/// Fails before writing anything on an invalid path or mode, and leaves nothing behind in the
/// store when a host file cannot be read halfway through.
pub fn build_layer(entries: &[FileEntry], opts: &LayerOptions, store: &BlobStore) -> Result<Layer> {
    let plan = tar_builder::plan(entries)?;
    cache::build_cached(&plan, opts, store, |file_digests| {
        // Only a build that really runs, and that someone watches, pays for a stat of every
        // host file up front (a cache hit reports nothing).
        let total = match opts.progress {
            Some(_) => progress::planned_bytes(entries),
            None => 0,
        };
        build_uncached(&plan, total, opts, store, file_digests)
    })
}

/// The pipeline itself, every time. `total` is the planned content bytes, for progress reports;
/// `file_digests`, when given, receives each host file's size and sha256 in plan order.
pub(super) fn build_uncached(
    plan: &[TarEntry],
    total: u64,
    opts: &LayerOptions,
    store: &BlobStore,
    file_digests: Option<&mut Vec<FileDigest>>,
) -> Result<Layer> {
    let tmp = store.temp_file()?;
    let file: &File = tmp.as_file();
    let (diff_id, digest, size) = stream(
        plan,
        total,
        opts,
        BufWriter::with_capacity(OUTPUT_BUFFER, file),
        file_digests,
    )?;
    let blob = store.commit(tmp, &digest)?;
    Ok(Layer {
        media_type: opts.compression.media_type().to_string(),
        digest,
        diff_id,
        size,
        blob: Some(blob),
    })
}

/// Run the pipeline into `out`; returns (diff_id, digest, compressed size). `total` is the
/// planned content bytes, for progress reports.
fn stream<W: Write>(
    plan: &[TarEntry],
    total: u64,
    opts: &LayerOptions,
    out: W,
    file_digests: Option<&mut Vec<FileDigest>>,
) -> Result<(Digest, Digest, u64)> {
    let (chunks_tx, chunks_rx) = mpsc::sync_channel::<Vec<u8>>(CHANNEL_DEPTH);
    let (spare_tx, spare_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|s| {
        let producer = s.spawn(move || -> Result<Digest> {
            let mut sender = ChunkSender::new(chunks_tx, spare_rx);
            let mut reporter = opts
                .progress
                .clone()
                .map(|sink| Reporter::start(sink, total, progress::REPORT_INTERVAL));
            tar_builder::write_tar_counting(
                plan,
                opts.mtime,
                &mut sender,
                &mut |n| {
                    if let Some(r) = reporter.as_mut() {
                        r.read(n);
                    }
                },
                file_digests,
            )?;
            let diff_id = sender
                .finish()
                .map_err(|e| Error::io("writing layer tar", e))?;
            if let Some(r) = reporter {
                r.finish();
            }
            Ok(diff_id)
        });
        let compressed = compress(chunks_rx, spare_tx, opts, out);
        let produced = producer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        match (produced, compressed) {
            (Ok(diff_id), Ok((digest, size))) => Ok((diff_id, digest, size)),
            // The compressor only sees the tar end early; the producer knows why.
            (Err(e), Ok(_)) => Err(e),
            // The producer's error, if any, is then just the channel the compressor dropped.
            (_, Err(e)) => Err(e),
        }
    })
}

/// The consuming side: chunks in, compressed bytes hashed and written out.
fn compress<W: Write>(
    chunks: Receiver<Vec<u8>>,
    spare: Sender<Vec<u8>>,
    opts: &LayerOptions,
    out: W,
) -> Result<(Digest, u64)> {
    let mut compressor = opts
        .compression
        .writer(HashingWriter::new(out), opts.threads)?;
    for chunk in chunks {
        compressor
            .write_all(&chunk)
            .map_err(|e| classify_error(e, "writing layer blob"))?;
        // The producer may already be done; then the buffer is simply freed.
        let mut chunk = chunk;
        chunk.clear();
        let _ = spare.send(chunk);
    }
    let (mut out, digest, size) = compressor.finish()?.finish();
    out.flush()
        .map_err(|e| Error::io("writing layer blob", e))?;
    Ok((digest, size))
}

/// A `Write` that cuts the tar into fixed chunks, hashes them (the diff_id) and sends them on.
struct ChunkSender {
    tx: SyncSender<Vec<u8>>,
    spare: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    hasher: Hasher,
}

impl ChunkSender {
    fn new(tx: SyncSender<Vec<u8>>, spare: Receiver<Vec<u8>>) -> Self {
        ChunkSender {
            tx,
            spare,
            chunk: Vec::with_capacity(CHUNK_SIZE),
            hasher: Hasher::new(),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        self.hasher.update(&self.chunk);
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(CHUNK_SIZE));
        let full = std::mem::replace(&mut self.chunk, next);
        self.tx
            .send(full)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "layer compressor stopped"))
    }

    /// Send the last partial chunk; returns the diff_id. Dropping `self` closes the channel.
    fn finish(mut self) -> io::Result<Digest> {
        if !self.chunk.is_empty() {
            self.send()?;
        }
        Ok(self.hasher.finish())
    }
}

impl Write for ChunkSender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let n = (CHUNK_SIZE - self.chunk.len()).min(rest.len());
            self.chunk.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if self.chunk.len() == CHUNK_SIZE {
                self.send()?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::layer::compress::tests::assert_passes_gzip_t;
    use crate::layer::{Compression, Content};

    fn decompress(c: Compression, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match c {
            Compression::Gzip => {
                flate2::read::MultiGzDecoder::new(bytes)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Compression::Zstd => out = zstd::decode_all(bytes).unwrap(),
        }
        out
    }

    /// A few small files plus one host file spanning several chunks.
    fn fixture(dir: &std::path::Path) -> Vec<FileEntry> {
        let big = dir.join("big.bin");
        let data: Vec<u8> = (0..3_500_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 % 17)
            .collect();
        std::fs::write(&big, data).unwrap();
        vec![
            FileEntry::new(
                "/app/bin/start",
                Content::Bytes(b"#!/bin/sh\nexec app\n".to_vec()),
                0o755,
            ),
            FileEntry::new("/app/lib/big.bin", Content::File(big), 0o644),
            FileEntry::new(
                "/etc/app.conf",
                Content::Bytes(b"port=8080\n".to_vec()),
                0o600,
            ),
        ]
    }

    fn opts(compression: Compression, mtime: u64, threads: usize) -> LayerOptions {
        LayerOptions {
            compression,
            mtime,
            threads,
            progress: None,
        }
    }

    fn leftovers(store_root: &std::path::Path) -> Vec<String> {
        std::fs::read_dir(store_root.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".incoming"))
            .collect()
    }

    #[test]
    fn digests_sizes_and_contents_check_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("store")).unwrap();
        let files = fixture(dir.path());
        for compression in [Compression::Gzip, Compression::Zstd] {
            let layer = build_layer(&files, &opts(compression, 0, 2), &store).unwrap();
            assert_eq!(layer.media_type, compression.media_type());
            let blob_path = layer.blob.clone().unwrap();
            assert_eq!(blob_path, store.path(&layer.digest));
            let blob = std::fs::read(&blob_path).unwrap();
            assert_eq!(layer.size, blob.len() as u64);
            assert_eq!(layer.digest, Digest::of(&blob));
            let tar_bytes = decompress(compression, &blob);
            assert_eq!(layer.diff_id, Digest::of(&tar_bytes));

            let plan = tar_builder::plan(&files).unwrap();
            let mut expected = Vec::new();
            tar_builder::write_tar(&plan, 0, &mut expected).unwrap();
            assert_eq!(tar_bytes.len(), expected.len(), "{compression}: tar length");
            let first_diff = tar_bytes.iter().zip(&expected).position(|(a, b)| a != b);
            assert_eq!(
                first_diff, None,
                "{compression}: the blob holds exactly the planned tar"
            );
        }
        assert!(leftovers(&dir.path().join("store")).is_empty());
    }

    #[test]
    fn gzip_blob_passes_gzip_t() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let layer =
            build_layer(&fixture(dir.path()), &opts(Compression::Gzip, 0, 2), &store).unwrap();
        assert_passes_gzip_t(&layer.blob.unwrap());
    }

    #[test]
    fn same_input_gives_same_digest_whatever_the_thread_count() {
        let dir = tempfile::tempdir().unwrap();
        let files = fixture(dir.path());
        for compression in [Compression::Gzip, Compression::Zstd] {
            let layers: Vec<Layer> = [1, 2, 4, 2]
                .iter()
                .map(|&threads| {
                    // A fresh store each time, so nothing is deduplicated by accident.
                    let root = tempfile::tempdir().unwrap();
                    let store = BlobStore::open(root.path()).unwrap();
                    build_layer(&files, &opts(compression, 1_700_000_000, threads), &store).unwrap()
                })
                .collect();
            for l in &layers[1..] {
                assert_eq!(
                    (&l.digest, &l.diff_id, l.size),
                    (&layers[0].digest, &layers[0].diff_id, layers[0].size)
                );
            }
        }
    }

    // Progress: from 0 to exactly the content bytes, never backwards, reported from the
    // producer thread (the NIF may only send messages from threads the VM does not manage);
    // and it changes nothing in the layer.
    #[test]
    fn progress_counts_the_content_bytes_up_to_the_total_off_the_calling_thread() {
        use crate::layer::progress::{BuildProgress, BuildProgressFn};
        use std::sync::{Arc, Mutex};

        let dir = tempfile::tempdir().unwrap();
        let files = fixture(dir.path());
        let content: u64 = 19 + 3_500_000 + 10;
        let caller = std::thread::current().id();
        for compression in [Compression::Gzip, Compression::Zstd] {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let sink = seen.clone();
            let progress = BuildProgressFn::new(move |p: BuildProgress| {
                sink.lock().unwrap().push((p, std::thread::current().id()));
            });
            let watched = LayerOptions {
                progress: Some(progress),
                ..opts(compression, 0, 2)
            };
            let store = BlobStore::open(dir.path().join("watched")).unwrap();
            let layer = build_layer(&files, &watched, &store).unwrap();
            let plain_store = BlobStore::open(dir.path().join("plain")).unwrap();
            let plain = build_layer(&files, &opts(compression, 0, 2), &plain_store).unwrap();
            assert_eq!((layer.digest, layer.size), (plain.digest, plain.size));

            let seen = seen.lock().unwrap();
            assert!(seen.iter().all(|(_, thread)| *thread != caller));
            let reports: Vec<BuildProgress> = seen.iter().map(|(p, _)| *p).collect();
            assert_eq!(
                reports.first(),
                Some(&BuildProgress {
                    bytes_read: 0,
                    total_bytes: content
                })
            );
            assert_eq!(
                reports.last(),
                Some(&BuildProgress {
                    bytes_read: content,
                    total_bytes: content
                })
            );
            assert!(reports
                .windows(2)
                .all(|w| w[0].bytes_read < w[1].bytes_read));
            assert!(reports.iter().all(|p| p.bytes_read <= p.total_bytes));
        }
    }

    // A build that fails part way never claims to have read everything.
    #[test]
    fn a_failed_build_sends_no_final_report() {
        use crate::layer::progress::{BuildProgress, BuildProgressFn};
        use std::sync::{Arc, Mutex};

        let dir = tempfile::tempdir().unwrap();
        let mut files = fixture(dir.path());
        // First in tar order, so nothing else has been read when it fails.
        files.push(FileEntry::new(
            "/a/missing",
            Content::File(dir.path().join("missing")),
            0o644,
        ));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let watched = LayerOptions {
            progress: Some(BuildProgressFn::new(move |p: BuildProgress| {
                sink.lock().unwrap().push(p)
            })),
            ..opts(Compression::Zstd, 0, 2)
        };
        let store = BlobStore::open(dir.path().join("store")).unwrap();
        build_layer(&files, &watched, &store).unwrap_err();
        let seen = seen.lock().unwrap();
        assert!(!seen.is_empty());
        assert!(
            seen.iter().all(|p| p.bytes_read < p.total_bytes),
            "{seen:?}"
        );
    }

    #[test]
    fn mtime_changes_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let files = fixture(dir.path());
        let a = build_layer(&files, &opts(Compression::Zstd, 0, 2), &store).unwrap();
        let b = build_layer(&files, &opts(Compression::Zstd, 1, 2), &store).unwrap();
        assert_ne!(a.diff_id, b.diff_id);
        assert_ne!(a.digest, b.digest);
    }

    #[test]
    fn missing_host_file_fails_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("store")).unwrap();
        let mut files = fixture(dir.path());
        let missing = dir.path().join("missing.txt");
        files.push(FileEntry::new(
            "/zzz/missing.txt",
            Content::File(missing.clone()),
            0o644,
        ));
        for compression in [Compression::Gzip, Compression::Zstd] {
            let err = build_layer(&files, &opts(compression, 0, 2), &store).unwrap_err();
            assert!(
                matches!(err, Error::FileRead { ref path, ref source } if *path == missing && source.kind() == io::ErrorKind::NotFound),
                "{err:?}"
            );
        }
        assert!(leftovers(&dir.path().join("store")).is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path().join("store/blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn invalid_entries_are_rejected_before_any_work() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let bad = [FileEntry::new("/a/../b", Content::Bytes(Vec::new()), 0o644)];
        let err = build_layer(&bad, &LayerOptions::default(), &store).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidPath {
                    why: "parent_component",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn an_empty_layer_is_a_valid_empty_tar() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let layer = build_layer(&[], &opts(Compression::Gzip, 0, 1), &store).unwrap();
        let tar_bytes = decompress(
            Compression::Gzip,
            &std::fs::read(layer.blob.unwrap()).unwrap(),
        );
        assert_eq!(tar_bytes, vec![0u8; 1024]);
        assert_eq!(layer.diff_id, Digest::of(&tar_bytes));
    }
}
