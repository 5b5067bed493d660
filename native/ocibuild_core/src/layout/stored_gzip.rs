//! A gzip file whose already-compressed parts are *stored* (deflate stored blocks, BTYPE=00:
//! the bytes as they are, framed in blocks of at most 64 KiB) and whose other parts are
//! deflated, so a saved `.tar.gz` spends no time compressing layer blobs that are gzip or zstd
//! already, while its tar headers and JSON files still shrink.
//!
//! It is ONE gzip member holding one deflate stream, the regions following each other in it:
//! a deflated region ends with a sync flush (an empty stored block, which leaves the stream on a
//! byte boundary), stored blocks are written straight after, and the next deflated region starts
//! a fresh compressor (no back-references across a stored region). A final empty stored block
//! ends the stream, then the CRC32 and length of all the bytes. One member rather than one per
//! region because some readers stop after the first member: OTP's `erl_tar` with `compressed`
//! (a tool Erlang users reach for) reads only the first; gzip, Go (docker, podman, skopeo) and
//! Python read both shapes.
//!
//! The output depends only on the bytes written and their regions, never on how the writes were
//! split: stored blocks are cut every [`BLOCK_MAX`] bytes of a region, the compressor is fed in
//! pieces of that size too (its output depends on the pieces it is given), and the header is a
//! fixed 10 bytes (mtime 0, OS unknown). Memory stays at one piece plus the compressor's state.
//!
//! ```
//! use ocibuild_core::layout::stored_gzip::{Region, StoredGzipWriter};
//! use std::io::{Read, Write};
//!
//! let mut gz = StoredGzipWriter::new(Vec::new());
//! gz.write_all(b"{\"small\":\"json\"}").unwrap();
//! gz.region(Region::Stored);
//! gz.write_all(b"already compressed bytes").unwrap();
//! let bytes = gz.finish().unwrap();
//! let mut all = String::new();
//! flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut all).unwrap();
//! assert_eq!(all, "{\"small\":\"json\"}already compressed bytes");
//! ```

use std::io::{self, Write};

use flate2::{Compress, FlushCompress};

/// The largest stored block (its length field is 16 bits), and the piece the compressor is fed.
pub const BLOCK_MAX: usize = u16::MAX as usize;

/// The gzip header: magic, CM=8 (deflate), no flags, mtime 0 (reproducible), XFL 0, OS 255
/// (unknown, so the same bytes on every host).
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// zlib's default level: the deflated regions are tar headers and small JSON files.
const DEFLATE_LEVEL: u32 = 6;

/// How the bytes written next are framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Region {
    /// Deflate-compressed (the default): tar headers, text and small files.
    Deflated,
    /// Stored blocks: bytes that are compressed already (layer blobs).
    Stored,
}

/// A gzip writer whose bytes are stored or deflated by [`Region`]. Call [`Self::finish`].
pub struct StoredGzipWriter<W: Write> {
    out: W,
    header_written: bool,
    /// The region of the next bytes written.
    region: Region,
    /// The region whose bytes were written since the last boundary, if any.
    open: Option<Region>,
    /// Bytes of the open region not framed yet: the stored block being filled, or the
    /// compressor's next piece.
    pending: Vec<u8>,
    compressor: Compress,
    /// The compressor's output, written out after every call.
    compressed: Vec<u8>,
    crc: crc32fast::Hasher,
    /// The input size modulo 2^32, as the trailer records it (RFC 1952).
    size: u32,
}

impl<W: Write> StoredGzipWriter<W> {
    /// Starts in [`Region::Deflated`].
    pub fn new(out: W) -> Self {
        StoredGzipWriter {
            out,
            header_written: false,
            region: Region::Deflated,
            open: None,
            pending: Vec::with_capacity(BLOCK_MAX),
            // Raw deflate: the gzip framing is ours.
            compressor: Compress::new(flate2::Compression::new(DEFLATE_LEVEL), false),
            compressed: Vec::with_capacity(BLOCK_MAX + 1024),
            crc: crc32fast::Hasher::new(),
            size: 0,
        }
    }

    /// Frame the bytes written from now on as `region`. The region boundary is made when a
    /// byte of the new region is written, so switching back and forth without writing costs
    /// nothing.
    pub fn region(&mut self, region: Region) {
        self.region = region;
    }

    /// End the deflate stream, write the trailer and hand back the output (not flushed).
    pub fn finish(mut self) -> io::Result<W> {
        self.write_header()?;
        self.close_region()?;
        write_stored_block(&mut self.out, &[], true)?;
        self.out.write_all(&self.crc.finalize().to_le_bytes())?;
        self.out.write_all(&self.size.to_le_bytes())?;
        Ok(self.out)
    }

    fn write_header(&mut self) -> io::Result<()> {
        if !self.header_written {
            self.out.write_all(&HEADER)?;
            self.header_written = true;
        }
        Ok(())
    }

    /// Frame the open region's pending bytes as a full piece (more of the region follows).
    fn frame_piece(&mut self) -> io::Result<()> {
        match self.open {
            Some(Region::Stored) => write_stored_block(&mut self.out, &self.pending, false)?,
            Some(Region::Deflated) => self.deflate(FlushCompress::None)?,
            None => {}
        }
        self.pending.clear();
        Ok(())
    }

    /// End the open region: its last bytes framed, and a deflated one flushed to a byte
    /// boundary with a fresh compressor for the next.
    fn close_region(&mut self) -> io::Result<()> {
        match self.open.take() {
            Some(Region::Stored) if !self.pending.is_empty() => {
                write_stored_block(&mut self.out, &self.pending, false)?
            }
            Some(Region::Deflated) => {
                self.deflate(FlushCompress::Sync)?;
                self.compressor.reset();
            }
            _ => {}
        }
        self.pending.clear();
        Ok(())
    }

    /// Compress the pending bytes (all of them) and write what the compressor gives back;
    /// with `Sync`, everything it holds, ending on a byte boundary.
    fn deflate(&mut self, flush: FlushCompress) -> io::Result<()> {
        let mut input = &self.pending[..];
        loop {
            self.compressed.clear();
            let before = self.compressor.total_in();
            self.compressor
                .compress_vec(input, &mut self.compressed, flush)
                .map_err(|e| io::Error::other(format!("deflate: {e}")))?;
            // Bounded by `input.len()`, which is at most BLOCK_MAX.
            let consumed = (self.compressor.total_in() - before) as usize;
            input = &input[consumed..];
            self.out.write_all(&self.compressed)?;
            // Output room left over means the compressor had nothing more to give.
            if input.is_empty() && self.compressed.len() < self.compressed.capacity() {
                return Ok(());
            }
        }
    }
}

impl<W: Write> Write for StoredGzipWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.write_header()?;
        if self.open != Some(self.region) {
            self.close_region()?;
            self.open = Some(self.region);
        }
        // A full piece is framed only once more bytes come, so a region's last piece is
        // framed by `close_region` (a stored one never becomes an extra empty block).
        if self.pending.len() == BLOCK_MAX {
            self.frame_piece()?;
        }
        // A whole stored block with more bytes after it in this very write is framed straight
        // from `buf`: the same block boundaries, one copy of the blob fewer.
        if self.open == Some(Region::Stored) && self.pending.is_empty() && buf.len() > BLOCK_MAX {
            let block = &buf[..BLOCK_MAX];
            write_stored_block(&mut self.out, block, false)?;
            self.crc.update(block);
            self.size = self.size.wrapping_add(BLOCK_MAX as u32);
            return Ok(BLOCK_MAX);
        }
        let n = buf.len().min(BLOCK_MAX - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        // Truncation is the format: ISIZE is the size modulo 2^32.
        self.size = self.size.wrapping_add(n as u32);
        Ok(n)
    }

    /// Flushes what is framed already; pending bytes stay (framing them early would make the
    /// output depend on when flushes happen).
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// One stored block at a byte boundary: the header bits (BFINAL, BTYPE=00) padded to a byte,
/// LEN and its complement NLEN (little-endian), then the bytes.
fn write_stored_block(out: &mut impl Write, data: &[u8], last: bool) -> io::Result<()> {
    let len = u16::try_from(data.len()).map_err(|_| io::Error::other("stored block too long"))?;
    out.write_all(&[u8::from(last)])?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&(!len).to_le_bytes())?;
    out.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Decoded as ONE gzip member: what single-member readers such as `erl_tar` see.
    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut decoder = flate2::bufread::GzDecoder::new(bytes);
        let mut out = Vec::new();
        decoder.read_to_end(&mut out).unwrap();
        assert!(decoder.into_inner().is_empty(), "one member, nothing after");
        out
    }

    fn pseudo_random(len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect()
    }

    #[test]
    fn stored_bytes_appear_verbatim_in_blocks_of_at_most_64_kib() {
        let data = pseudo_random(200_000);
        let mut gz = StoredGzipWriter::new(Vec::new());
        gz.region(Region::Stored);
        gz.write_all(&data).unwrap();
        let bytes = gz.finish().unwrap();
        assert_eq!(gunzip(&bytes), data);
        // header, 4 blocks (3 full) and the final empty one of 5 framing bytes each, trailer
        assert_eq!(bytes.len(), 10 + 5 * 5 + data.len() + 8);
        assert_eq!(&bytes[10..15], &[0, 0xff, 0xff, 0, 0]);
        assert_eq!(&bytes[15..15 + BLOCK_MAX], &data[..BLOCK_MAX]);
        let end = bytes.len() - 8;
        assert_eq!(&bytes[end - 5..end], &[1, 0, 0, 0xff, 0xff]);
        assert_eq!(bytes[end..end + 4], crc32fast::hash(&data).to_le_bytes());
        assert_eq!(bytes[end + 4..], (data.len() as u32).to_le_bytes());
    }

    #[test]
    fn deflated_and_stored_regions_share_one_member() {
        let blob = pseudo_random(100_000);
        let mut gz = StoredGzipWriter::new(Vec::new());
        gz.write_all(&[b'{'; 10_000]).unwrap();
        gz.region(Region::Stored);
        gz.write_all(&blob).unwrap();
        // Back and forth without a write: no boundary.
        gz.region(Region::Deflated);
        gz.region(Region::Stored);
        gz.write_all(b"blob 2").unwrap();
        gz.region(Region::Deflated);
        gz.write_all(&[b'}'; 10_000]).unwrap();
        let bytes = gz.finish().unwrap();
        let mut expected = vec![b'{'; 10_000];
        expected.extend_from_slice(&blob);
        expected.extend_from_slice(b"blob 2");
        expected.extend_from_slice(&[b'}'; 10_000]);
        assert_eq!(gunzip(&bytes), expected);
        // The repeated text shrinks to almost nothing; the blob is stored whole.
        assert!(bytes.len() < blob.len() + 200, "{} bytes", bytes.len());
        assert!(bytes.windows(BLOCK_MAX).any(|w| w == &blob[..BLOCK_MAX]));
    }

    #[test]
    fn nothing_written_is_an_empty_gzip() {
        let bytes = StoredGzipWriter::new(Vec::new()).finish().unwrap();
        assert!(gunzip(&bytes).is_empty());
    }

    #[test]
    fn gzip_reads_a_mixed_stream() {
        // A reader we did not write (the shell suites check saved tarballs with every reader;
        // this checks the framing alone).
        let data = pseudo_random(150_000);
        let mut gz = StoredGzipWriter::new(Vec::new());
        gz.write_all(b"text").unwrap();
        gz.region(Region::Stored);
        gz.write_all(&data).unwrap();
        gz.region(Region::Deflated);
        gz.write_all(b"more text").unwrap();
        let bytes = gz.finish().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gz");
        std::fs::write(&path, &bytes).unwrap();
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&path)
            .output()
            .expect("gzip (scripts/install-deps.sh installs it)");
        assert!(out.status.success(), "{out:?}");
        let mut expected = b"text".to_vec();
        expected.extend_from_slice(&data);
        expected.extend_from_slice(b"more text");
        assert!(out.stdout == expected);
    }

    #[test]
    fn the_output_depends_on_bytes_and_regions_not_on_write_sizes() {
        // Regions as a save makes them: JSON, blobs crossing block boundaries, JSON.
        let json: Vec<u8> = b"{\"mediaType\":\"x\",\"n\":1}".repeat(4000);
        let blob = pseudo_random(3 * BLOCK_MAX + 17);
        let plan = [
            (Region::Deflated, &json[..]),
            (Region::Stored, &blob[..]),
            (Region::Stored, &blob[..1000]),
            (Region::Deflated, &json[..10]),
            (Region::Stored, &blob[..BLOCK_MAX]),
        ];
        let write = |chunk: usize| {
            let mut gz = StoredGzipWriter::new(Vec::new());
            for (region, data) in plan {
                gz.region(region);
                for c in data.chunks(chunk) {
                    gz.write_all(c).unwrap();
                }
            }
            gz.finish().unwrap()
        };
        let reference = write(usize::MAX);
        for chunk in [
            1,
            7,
            512,
            BLOCK_MAX - 1,
            BLOCK_MAX,
            BLOCK_MAX + 1,
            100_000,
            2 * BLOCK_MAX,
        ] {
            assert!(write(chunk) == reference, "chunks of {chunk}");
        }
        let expected: Vec<u8> = plan.iter().flat_map(|(_, d)| d.iter().copied()).collect();
        assert!(gunzip(&reference) == expected);
    }
}
