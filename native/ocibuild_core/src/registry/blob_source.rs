//! The bytes of a local blob on their way to a registry, hashed in the same pass that sends
//! them (the push side of the rule every sink keeps, see [`crate::digest::Verifier`]).
//!
//! - A whole-blob upload streams the file with a fresh verifier on every attempt
//!   ([`whole_file_body`]). The piece that would complete a blob whose bytes are wrong is never
//!   handed to the connection: the registry sees a body cut short and commits nothing, and the
//!   upload reports the [`Verdict`] instead of the broken connection.
//! - A chunked upload reads the file once, in order, through a [`ChunkSource`], which keeps
//!   the bytes the registry has not confirmed yet: a chunk sent again after a dropped
//!   connection is the bytes already hashed, not a second read of a file that may have changed.
//!   The last chunk is read (and the blob checked) before it is sent, so the PUT that commits
//!   a wrong blob is never made.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;

use super::client::ByteStream;
use super::local_data::LocalData;
use crate::digest::{Digest, Verifier};
use crate::{Error, Result};

/// Bytes read from a file per piece of a streamed body.
const PIECE: usize = 256 * 1024;

/// Why a streamed body stopped, for the upload to report instead of the connection error
/// that stopping causes. Shared between the body factory and the upload that sends it.
#[derive(Clone, Default)]
pub struct Verdict(Arc<Mutex<Option<Error>>>);

impl Verdict {
    /// The failure recorded by a body, once.
    pub fn take(&self) -> Option<Error> {
        self.lock().take()
    }

    fn record(&self, err: Error) {
        self.lock().get_or_insert(err);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Error>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Check bytes held in memory (a config, a signature payload) against their descriptor.
pub fn verify_bytes(bytes: &[u8], digest: &Digest, size: u64) -> Result<()> {
    let mut verifier = Verifier::new(digest, size);
    verifier.update(bytes)?;
    verifier.finish()
}

/// A body of the whole file at `path`, for one attempt: read once, hashed as it goes,
/// `on_sent(bytes_so_far)` called as pieces are handed on. A failure (the blob is not the
/// one named, or the file cannot be read) is recorded in `verdict` and ends the body early.
pub fn whole_file_body(
    path: &Path,
    digest: &Digest,
    size: u64,
    verdict: &Verdict,
    on_sent: impl FnMut(u64) + Send + Sync + 'static,
) -> Result<ByteStream> {
    if let Some(earlier) = verdict.take() {
        // An earlier attempt found the blob wrong: another attempt would only read it again.
        return Err(earlier);
    }
    // A layer map's blob path may name anything: a FIFO there must not block the push.
    let (file, _) = crate::layer::tar_builder::open_regular_file(path)?;
    let feed = Feed {
        file: tokio::fs::File::from_std(file),
        path: path.to_path_buf(),
        verifier: Verifier::new(digest, size),
        verdict: verdict.clone(),
        ended: false,
        on_sent: Box::new(on_sent),
    };
    Ok(Box::pin(pieces(feed)))
}

/// The pieces of one attempt; the first failure is recorded and ends the stream with an
/// error, which makes the HTTP client abandon the request.
fn pieces(feed: Feed) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + Sync {
    futures_util::stream::unfold(feed, |mut feed| async move {
        if feed.ended {
            return None;
        }
        match feed.next_piece().await {
            Ok(Some(piece)) => {
                (feed.on_sent)(feed.verifier.seen());
                Some((Ok(piece), feed))
            }
            Ok(None) => None,
            Err(e) => {
                feed.ended = true;
                feed.verdict.record(e);
                let stop = std::io::Error::other("the blob's bytes were refused before sending");
                Some((Err(stop), feed))
            }
        }
    })
}

/// One attempt's read of a file, in pieces.
struct Feed {
    file: tokio::fs::File,
    path: PathBuf,
    verifier: Verifier,
    verdict: Verdict,
    ended: bool,
    on_sent: Box<dyn FnMut(u64) + Send + Sync>,
}

impl Feed {
    /// The next piece, checked: the piece that completes the blob comes only if the whole
    /// blob hashes right. `None` at the end (where a zero-byte blob is checked).
    async fn next_piece(&mut self) -> Result<Option<Bytes>> {
        let want = self.verifier.remaining().min(PIECE as u64) as usize;
        if want == 0 {
            return self.verifier.finish().map(|()| None);
        }
        let piece = read_exactly(&mut self.file, &self.path, want, &self.verifier).await?;
        self.verifier.update(&piece)?;
        if self.verifier.remaining() == 0 {
            self.verifier.finish()?;
        }
        Ok(Some(piece))
    }
}

/// `want` bytes from `file`; a file that ends first is a blob that is not the one named.
async fn read_exactly(
    file: &mut tokio::fs::File,
    path: &Path,
    want: usize,
    verifier: &Verifier,
) -> Result<Bytes> {
    let mut buf = BytesMut::zeroed(want);
    let mut filled = 0;
    while filled < want {
        let n = file
            .read(&mut buf[filled..])
            .await
            .map_err(|e| read_error(path, e))?;
        if n == 0 {
            let mut short = verifier.clone();
            short.update(&buf[..filled])?;
            return Err(short.finish().unwrap_err());
        }
        filled += n;
    }
    Ok(buf.freeze())
}

fn read_error(path: &Path, source: std::io::Error) -> Error {
    Error::FileRead {
        path: path.to_path_buf(),
        source,
    }
}

/// A blob's bytes for a chunked upload: read from the file once and in order, hashed as read,
/// and kept from the last offset the registry confirmed up to what has been read.
pub struct ChunkSource {
    file: Option<(tokio::fs::File, PathBuf)>,
    verifier: Verifier,
    /// Bytes `[confirmed, verifier.seen())`: read and hashed, not yet confirmed.
    pending: Bytes,
    confirmed: u64,
}

impl ChunkSource {
    /// A source for `data`; bytes in memory are checked at once.
    pub fn open(data: &LocalData, digest: &Digest, size: u64) -> Result<ChunkSource> {
        let mut verifier = Verifier::new(digest, size);
        let (file, pending) = match data {
            LocalData::Bytes(bytes) => {
                verifier.update(bytes)?;
                verifier.finish()?;
                (None, bytes.clone())
            }
            LocalData::File(path) => {
                let (file, _) = crate::layer::tar_builder::open_regular_file(path)?;
                let file = tokio::fs::File::from_std(file);
                (Some((file, path.clone())), Bytes::new())
            }
        };
        Ok(ChunkSource {
            file,
            verifier,
            pending,
            confirmed: 0,
        })
    }

    /// Bytes `[offset, offset + len)`, reading what has not been read yet. `None` when
    /// the range is outside what this source can send without reading a byte twice: before
    /// what the registry confirmed (it lost bytes), past what was read (it claims bytes
    /// nobody sent), or past the blob. The upload then starts over as a whole-blob upload.
    pub async fn take(&mut self, offset: u64, len: u64) -> Result<Option<Bytes>> {
        let size = self.verifier.seen() + self.verifier.remaining();
        let end = match offset.checked_add(len) {
            Some(end) if end <= size => end,
            _ => return Ok(None),
        };
        if offset < self.confirmed || offset > self.verifier.seen() {
            return Ok(None);
        }
        if end > self.verifier.seen() {
            self.read_to(end).await?;
        }
        let start = (offset - self.confirmed) as usize;
        Ok(Some(self.pending.slice(start..start + len as usize)))
    }

    /// The registry holds the first `offset` bytes: they need not be kept any longer.
    pub fn confirm(&mut self, offset: u64) {
        if offset >= self.confirmed && offset <= self.verifier.seen() {
            self.pending = self.pending.slice((offset - self.confirmed) as usize..);
            self.confirmed = offset;
        }
    }

    /// `Ok` once every byte was read and the blob is the one named.
    pub fn finish(&self) -> Result<()> {
        self.verifier.finish()
    }

    async fn read_to(&mut self, end: u64) -> Result<()> {
        let Some((file, path)) = self.file.as_mut() else {
            // Bytes in memory were all seen at open: nothing is left to read.
            return Ok(());
        };
        let want = end - self.verifier.seen();
        let mut grown = BytesMut::with_capacity(self.pending.len() + want as usize);
        grown.extend_from_slice(&self.pending);
        let mut left = want as usize;
        while left > 0 {
            let piece = read_exactly(file, path, left.min(PIECE), &self.verifier).await?;
            self.verifier.update(&piece)?;
            if self.verifier.remaining() == 0 {
                self.verifier.finish()?;
            }
            grown.extend_from_slice(&piece);
            left -= piece.len();
        }
        self.pending = grown.freeze();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    #[tokio::test]
    async fn a_resent_chunk_is_the_bytes_read_the_first_time() {
        let blob: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let digest = Digest::of(&blob);
        let (_dir, path) = file_with(&blob);
        let data = LocalData::File(path.clone());
        let mut source = ChunkSource::open(&data, &digest, 1000).unwrap();
        let first = source.take(0, 400).await.unwrap().unwrap();
        assert_eq!(&first[..], &blob[..400]);
        // The registry confirms 300 of them; the file changes under us; the rest of the
        // unconfirmed chunk is sent again from what was read, not from the changed file.
        source.confirm(300);
        std::fs::write(&path, vec![0u8; 1000]).unwrap();
        let again = source.take(300, 100).await.unwrap().unwrap();
        assert_eq!(&again[..], &blob[300..400]);
        // Before the confirmed offset, or past what was read: not servable from one read.
        assert!(source.take(100, 100).await.unwrap().is_none());
        assert!(source.take(500, 100).await.unwrap().is_none());
        assert!(
            source.take(300, 1000).await.unwrap().is_none(),
            "past the blob's end"
        );
        // The bytes read after the change are the changed ones, and the blob fails.
        let err = source.take(400, 600).await.unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
        assert!(source.finish().is_err());
    }

    #[test]
    fn a_blob_path_that_is_a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("blob");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let digest = Digest::of(b"x");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let _entered = runtime.enter();
            let whole = whole_file_body(&fifo, &digest, 1, &Verdict::default(), |_| {}).err();
            let chunks = ChunkSource::open(&LocalData::File(fifo), &digest, 1).err();
            let _ = tx.send((whole, chunks));
        });
        let (whole, chunks) = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("blocked on a FIFO");
        for err in [whole, chunks] {
            assert!(
                matches!(err, Some(Error::SpecialFile { kind: "fifo", .. })),
                "{err:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_intact_blob_reads_through_in_chunks() {
        let blob = vec![42u8; 777];
        let digest = Digest::of(&blob);
        let (_dir, path) = file_with(&blob);
        let mut source = ChunkSource::open(&LocalData::File(path), &digest, 777).unwrap();
        let mut got = Vec::new();
        for offset in (0..777).step_by(100) {
            let len = 100.min(777 - offset);
            got.extend_from_slice(&source.take(offset, len).await.unwrap().unwrap());
            source.confirm(offset + len);
        }
        assert_eq!(got, blob);
        source.finish().unwrap();
    }

    #[tokio::test]
    async fn a_short_file_or_wrong_bytes_in_memory_are_refused() {
        let digest = Digest::of(&[1u8; 10]);
        let (_dir, path) = file_with(&[1u8; 6]);
        let mut source = ChunkSource::open(&LocalData::File(path), &digest, 10).unwrap();
        let err = source.take(0, 10).await.unwrap_err();
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");

        let wrong = LocalData::Bytes(Bytes::from_static(&[2u8; 10]));
        assert!(matches!(
            ChunkSource::open(&wrong, &digest, 10),
            Err(Error::DigestMismatch { .. })
        ));
        assert!(verify_bytes(&[1u8; 10], &digest, 10).is_ok());
        assert!(verify_bytes(&[1u8; 11], &digest, 11).is_err());
    }

    #[tokio::test]
    async fn a_whole_file_body_withholds_the_last_piece_of_a_changed_blob() {
        use futures_util::StreamExt;
        let blob = vec![7u8; PIECE + 10];
        let digest = Digest::of(&blob);
        let mut changed = blob.clone();
        changed[PIECE + 9] = 8;
        let (_dir, path) = file_with(&changed);
        let verdict = Verdict::default();
        let feed = Feed {
            file: tokio::fs::File::open(&path).await.unwrap(),
            path: path.clone(),
            verifier: Verifier::new(&digest, blob.len() as u64),
            verdict: verdict.clone(),
            ended: false,
            on_sent: Box::new(|_| {}),
        };
        let results: Vec<_> = pieces(feed).collect().await;
        assert_eq!(results.len(), 2);
        assert_eq!(results[0].as_ref().unwrap().len(), PIECE);
        assert!(results[1].is_err(), "the last piece was handed on");
        // The next attempt reports the recorded failure at once, without reading again.
        let retry = whole_file_body(&path, &digest, blob.len() as u64, &verdict, |_| {});
        assert!(matches!(retry, Err(Error::DigestMismatch { .. })));
        assert!(verdict.take().is_none());
    }

    #[tokio::test]
    async fn a_whole_file_body_of_an_intact_blob_passes_every_byte() {
        use futures_util::StreamExt;
        for len in [0, 1, PIECE, PIECE + 1] {
            let blob: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let digest = Digest::of(&blob);
            let (_dir, path) = file_with(&blob);
            let sent = Arc::new(Mutex::new(0u64));
            let counter = Arc::clone(&sent);
            let feed = Feed {
                file: tokio::fs::File::open(&path).await.unwrap(),
                path: path.clone(),
                verifier: Verifier::new(&digest, len as u64),
                verdict: Verdict::default(),
                ended: false,
                on_sent: Box::new(move |n| *counter.lock().unwrap() = n),
            };
            let got: Vec<u8> = pieces(feed)
                .map(|p| p.unwrap().to_vec())
                .collect::<Vec<_>>()
                .await
                .concat();
            assert_eq!(got, blob);
            assert_eq!(*sent.lock().unwrap(), len as u64);
        }
    }
}
