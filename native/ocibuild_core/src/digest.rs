//! sha256 digests (`sha256:<hex>`), computed while bytes stream through readers and writers.
//!
//! Every sink (tarball, layout directory, registry upload) sends a stored blob through a
//! [`Verifier`]: the bytes are hashed in the same pass that sends them, and the last of them is
//! withheld when the blob turns out not to be the one its descriptor names. Checking first and
//! sending after would read the file twice, and a file can change between the two reads.

use std::fmt;
use std::io::{self, Read, Write};

use crate::{Error, Result};

/// A content digest in its canonical `sha256:<64 lowercase hex>` form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Parse and validate `sha256:<64 hex>`.
    pub fn parse(s: &str) -> Result<Digest> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| Error::InvalidDigest(crate::error::shown(s)))?;
        if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Digest(s.to_string()))
        } else {
            Err(Error::InvalidDigest(crate::error::shown(s)))
        }
    }

    /// The digest of a byte slice held in memory.
    pub fn of(bytes: &[u8]) -> Digest {
        let mut h = Hasher::new();
        h.update(bytes);
        h.finish()
    }

    /// The 64 hex characters, without the algorithm prefix (the blob's file name in a layout).
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Incremental sha256 that also counts bytes.
///
/// ring, because it is the fastest sha256 we have: it picks SHA-NI at run time like openssl
/// does, and RustCrypto's sha2 (SHA-NI through cpufeatures) measured no faster on the same
/// buffers (`cargo run --release -p ocibuild_core --example bench_sha256` prints both).
#[derive(Clone)]
pub struct Hasher {
    ctx: ring::digest::Context,
    len: u64,
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

impl Hasher {
    pub fn new() -> Self {
        Hasher {
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
            len: 0,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.ctx.update(bytes);
        self.len += bytes.len() as u64;
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Digest {
        Digest(format!(
            "sha256:{}",
            hex::encode(self.ctx.finish().as_ref())
        ))
    }
}

/// A writer that hashes and counts everything written through it before passing it on.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::new(),
        }
    }

    /// The wrapped writer, the digest and the byte count.
    pub fn finish(self) -> (W, Digest, u64) {
        let len = self.hasher.len();
        (self.inner, self.hasher.finish(), len)
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(),
        }
    }

    pub fn finish(self) -> (Digest, u64) {
        let len = self.hasher.len();
        (self.hasher.finish(), len)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The check every sink makes of a stored blob on its way out: exactly `size` bytes whose
/// sha256 is `expected`. The sink feeds it each piece before handing the piece on, and asks
/// [`Verifier::finish`] before it hands on the piece that completes the blob.
#[derive(Clone)]
pub struct Verifier {
    expected: Digest,
    size: u64,
    hasher: Hasher,
}

impl Verifier {
    pub fn new(expected: &Digest, size: u64) -> Verifier {
        Verifier {
            expected: expected.clone(),
            size,
            hasher: Hasher::new(),
        }
    }

    /// Bytes of the blob not yet seen.
    pub fn remaining(&self) -> u64 {
        self.size - self.hasher.len()
    }

    /// Bytes of the blob seen so far.
    pub fn seen(&self) -> u64 {
        self.hasher.len()
    }

    /// Hash the next piece of the blob. A source that offers more than the blob's size is
    /// cut to it by the sinks, so a piece past the end is a caller bug, refused all the same.
    pub fn update(&mut self, piece: &[u8]) -> Result<()> {
        if piece.len() as u64 > self.remaining() {
            let mut over = self.hasher.clone();
            over.update(piece);
            return Err(self.mismatch(over.finish()));
        }
        self.hasher.update(piece);
        Ok(())
    }

    /// `Ok` once all `size` bytes were seen and they hash to the expected digest.
    pub fn finish(&self) -> Result<()> {
        let actual = self.hasher.clone().finish();
        if self.remaining() == 0 && actual == self.expected {
            Ok(())
        } else {
            Err(self.mismatch(actual))
        }
    }

    fn mismatch(&self, actual: Digest) -> Error {
        Error::DigestMismatch {
            expected: self.expected.to_string(),
            actual: actual.to_string(),
        }
    }
}

/// A reader of one stored blob that yields at most its `size` bytes and fails (with
/// [`Error::DigestMismatch`] inside the `io::Error`, see [`from_io`]) on the read that would
/// complete a blob whose bytes are not the expected ones, or when the source ends early.
pub struct VerifyingReader<R> {
    inner: R,
    verifier: Verifier,
}

impl<R: Read> VerifyingReader<R> {
    pub fn new(inner: R, expected: &Digest, size: u64) -> Self {
        VerifyingReader {
            inner,
            verifier: Verifier::new(expected, size),
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.verifier.remaining()).unwrap_or(usize::MAX));
        if want == 0 {
            // End of the blob (or an empty buffer): a zero-byte blob is checked here.
            return self.verifier.finish().map(|()| 0).map_err(into_io);
        }
        let n = loop {
            match self.inner.read(&mut buf[..want]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        if n == 0 {
            return Err(into_io(self.verifier.finish().unwrap_err()));
        }
        self.verifier.update(&buf[..n]).map_err(into_io)?;
        if self.verifier.remaining() == 0 {
            self.verifier.finish().map_err(into_io)?;
        }
        Ok(n)
    }
}

/// Carry a core error through an `io::Read`/`io::Write` interface.
pub fn into_io(err: Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, err)
}

/// The core error an `io::Error` carries (see [`into_io`]), else `otherwise(err)`.
pub fn from_io(err: io::Error, otherwise: impl FnOnce(io::Error) -> Error) -> Error {
    match err.downcast::<Error>() {
        Ok(core) => core,
        Err(err) => otherwise(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_input_is_the_well_known_value() {
        assert_eq!(
            Digest::of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn streaming_and_one_shot_agree() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (bytes, d, n) = w.finish();
        assert_eq!(n, 11);
        assert_eq!(d, Digest::of(&bytes));
    }

    #[test]
    fn a_refused_digest_is_named_on_one_short_line() {
        // A registry's descriptor may hold anything where the digest goes.
        let hostile = format!("sha256:\u{1b}[2J{}", "f".repeat(1 << 20));
        match Digest::parse(&hostile) {
            Err(Error::InvalidDigest(shown)) => {
                assert!(shown.starts_with("sha256:\\u{1b}[2J"), "{shown}");
                assert!(shown.chars().count() < 300);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(Digest::parse("sha256:abc"), Err(Error::InvalidDigest(s)) if s == "sha256:abc")
        );
    }

    #[test]
    fn parse_rejects_malformed_digests() {
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(Digest::parse(
            "md5:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        )
        .is_err());
        assert!(Digest::parse(
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
        )
        .is_err());
        assert!(Digest::parse(
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        )
        .is_ok());
    }

    fn read_all(data: &[u8], expected: &Digest, size: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut reader = VerifyingReader::new(data, expected, size);
        io::copy(&mut reader, &mut out).map_err(|e| from_io(e, |e| Error::io("test", e)))?;
        Ok(out)
    }

    #[test]
    fn verifying_reader_passes_the_expected_bytes() {
        let data = b"layer bytes";
        let got = read_all(data, &Digest::of(data), data.len() as u64).unwrap();
        assert_eq!(got, data);
        assert!(read_all(b"", &Digest::of(b""), 0).unwrap().is_empty());
    }

    #[test]
    fn verifying_reader_withholds_the_last_bytes_of_a_changed_blob() {
        let expected = Digest::of(b"abcdef");
        let mut reader = VerifyingReader::new(&b"abcdeX"[..], &expected, 6);
        let mut buf = [0u8; 4];
        assert_eq!(reader.read(&mut buf).unwrap(), 4);
        let err = reader.read(&mut buf).unwrap_err();
        match from_io(err, |e| Error::io("test", e)) {
            Error::DigestMismatch {
                expected: e,
                actual,
            } => {
                assert_eq!(e, expected.to_string());
                assert_eq!(actual, Digest::of(b"abcdeX").to_string());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn verifying_reader_rejects_short_sources_and_reads_no_further_than_the_size() {
        let expected = Digest::of(b"abcdef");
        assert!(matches!(
            read_all(b"abc", &expected, 6),
            Err(Error::DigestMismatch { .. })
        ));
        assert!(matches!(
            read_all(b"", &expected, 6),
            Err(Error::DigestMismatch { .. })
        ));
        // Bytes after the blob are not part of it: what is sent is exactly the blob.
        assert_eq!(read_all(b"abcdefgh", &expected, 6).unwrap(), b"abcdef");
    }

    #[test]
    fn io_errors_that_are_not_core_errors_pass_through() {
        let plain = io::Error::other("disk on fire");
        assert!(matches!(
            from_io(plain, |e| Error::io("reading", e)),
            Error::Io { .. }
        ));
    }

    proptest::proptest! {
        #[test]
        fn prop_verifier_accepts_exactly_the_blob(
            blob in proptest::collection::vec(proptest::num::u8::ANY, 0..2048),
            flip in proptest::num::usize::ANY,
            piece in 1usize..300,
        ) {
            let expected = Digest::of(&blob);
            let size = blob.len() as u64;
            let mut ok = Verifier::new(&expected, size);
            for chunk in blob.chunks(piece) {
                ok.update(chunk).unwrap();
            }
            proptest::prop_assert!(ok.finish().is_ok());
            if !blob.is_empty() {
                let mut changed = blob.clone();
                let i = flip % changed.len();
                changed[i] ^= 0x01;
                let got = read_all(&changed, &expected, size);
                let is_mismatch = matches!(got, Err(Error::DigestMismatch { .. }));
                proptest::prop_assert!(is_mismatch);
            }
        }
    }
}
