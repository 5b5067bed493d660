//! A tar reader for archives we do not trust, streaming each member's bytes to the caller.
//!
//! Why not the `tar` crate's iterator: it reads GNU long-name and PAX extension members whole
//! into memory, whatever size their header claims (a header can claim 8 GiB), and it follows
//! GNU sparse headers block by block into a growing list. Here every extension member is read
//! only up to a small cap, sparse and other special members are handed to the caller to
//! refuse, and the number of members is bounded. The `tar` crate still parses each header.

use std::io::{self, Read};

use tar::{EntryType, Header};

use crate::{Error, Result};

const BLOCK: u64 = 512;
/// A member name longer than this is not a name any image layout uses.
const MAX_NAME: u64 = 4096;
/// PAX records we read: `path` and `size`; real headers are a few hundred bytes.
const MAX_EXTENSION: u64 = 64 << 10;

/// One archive member as the caller sees it, extension headers already applied.
#[derive(Debug)]
pub struct Member {
    pub name: Vec<u8>,
    pub kind: EntryType,
    pub size: u64,
}

/// Extension records that apply to the next real member.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_size: Option<u64>,
}

pub struct TarStream<R> {
    inner: R,
    members: u64,
    max_members: u64,
}

impl<R: Read> TarStream<R> {
    /// `max_members` counts every header, extension headers included.
    pub fn new(inner: R, max_members: u64) -> TarStream<R> {
        TarStream {
            inner,
            members: 0,
            max_members,
        }
    }

    /// Call `each` with every member and a reader of exactly its bytes; what `each` leaves
    /// unread is skipped. Stops at the end-of-archive marker or at the end of the stream.
    pub fn for_each(
        mut self,
        mut each: impl FnMut(&Member, &mut dyn Read) -> Result<()>,
    ) -> Result<()> {
        while let Some(member) = self.next_member()? {
            let mut data = (&mut self.inner).take(member.size);
            each(&member, &mut data)?;
            io::copy(&mut data, &mut io::sink()).map_err(unreadable)?;
            if data.limit() > 0 {
                return Err(truncated());
            }
            self.skip_padding(member.size)?;
        }
        Ok(())
    }

    fn next_member(&mut self) -> Result<Option<Member>> {
        let mut pending = Pending::default();
        loop {
            let Some(header) = self.next_header()? else {
                if pending.long_name.is_some() || pending.pax_path.is_some() {
                    return Err(bad("an extension header describes no member"));
                }
                return Ok(None);
            };
            let kind = header.entry_type();
            let is_extension = kind.is_gnu_longname()
                || kind.is_gnu_longlink()
                || kind.is_pax_local_extensions()
                || kind.is_pax_global_extensions();
            let header_size = header
                .entry_size()
                .map_err(|e| bad(&format!("a header has no valid size: {e}")))?;
            if is_extension {
                let data = self.read_extension(header_size, kind)?;
                if kind.is_gnu_longname() {
                    pending.long_name = Some(trim_nuls(data));
                } else if kind.is_pax_local_extensions() {
                    apply_pax(&data, &mut pending)?;
                }
                // Long link names and global PAX records say nothing we use.
                continue;
            }
            let name = pending
                .pax_path
                .or(pending.long_name)
                .unwrap_or_else(|| header.path_bytes().into_owned());
            let size = pending.pax_size.unwrap_or(header_size);
            return Ok(Some(Member { name, kind, size }));
        }
    }

    /// The next header block, checksum verified; `None` at the end of the archive.
    fn next_header(&mut self) -> Result<Option<Header>> {
        let mut block = [0u8; BLOCK as usize];
        if !read_block(&mut self.inner, &mut block)? || block.iter().all(|b| *b == 0) {
            return Ok(None);
        }
        self.members += 1;
        if self.members > self.max_members {
            return Err(Error::LoadLimit {
                what: "tarball members".into(),
                limit: self.max_members,
            });
        }
        let mut header = Header::new_old();
        header.as_mut_bytes().copy_from_slice(&block);
        let expected = header
            .cksum()
            .map_err(|_| bad("a header has no valid checksum"))?;
        let actual: u32 = block[..148]
            .iter()
            .chain(&block[156..])
            .map(|b| u32::from(*b))
            .sum::<u32>()
            + 8 * u32::from(b' ');
        if expected != actual {
            return Err(bad("a header checksum does not match"));
        }
        Ok(Some(header))
    }

    fn read_extension(&mut self, size: u64, kind: EntryType) -> Result<Vec<u8>> {
        let limit = if kind.is_gnu_longname() || kind.is_gnu_longlink() {
            MAX_NAME
        } else {
            MAX_EXTENSION
        };
        if size > limit {
            return Err(Error::LoadLimit {
                what: "the bytes of a tar extension header".into(),
                limit,
            });
        }
        let mut data = Vec::with_capacity(size as usize);
        (&mut self.inner)
            .take(size)
            .read_to_end(&mut data)
            .map_err(unreadable)?;
        if data.len() as u64 != size {
            return Err(truncated());
        }
        self.skip_padding(size)?;
        Ok(data)
    }

    fn skip_padding(&mut self, size: u64) -> Result<()> {
        let pad = (BLOCK - size % BLOCK) % BLOCK;
        // A stream that ends inside the last member's padding is accepted, as GNU tar does.
        io::copy(&mut (&mut self.inner).take(pad), &mut io::sink()).map_err(unreadable)?;
        Ok(())
    }
}

fn apply_pax(data: &[u8], pending: &mut Pending) -> Result<()> {
    for record in tar::PaxExtensions::new(data) {
        let record = record.map_err(|_| bad("a PAX header is malformed"))?;
        match record.key_bytes() {
            b"path" => pending.pax_path = Some(record.value_bytes().to_vec()),
            b"size" => {
                let size = std::str::from_utf8(record.value_bytes())
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| bad("a PAX size is not a number"))?;
                pending.pax_size = Some(size);
            }
            _ => {}
        }
    }
    Ok(())
}

fn trim_nuls(mut name: Vec<u8>) -> Vec<u8> {
    while name.last() == Some(&0) {
        name.pop();
    }
    name
}

/// Fill `block`; `false` if the stream ended before its first byte.
fn read_block(r: &mut impl Read, block: &mut [u8]) -> Result<bool> {
    let mut filled = 0;
    while filled < block.len() {
        match r.read(&mut block[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(truncated()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(unreadable(e)),
        }
    }
    Ok(true)
}

fn bad(why: &str) -> Error {
    Error::InvalidLayout(format!("unreadable tarball: {why}"))
}

fn unreadable(e: io::Error) -> Error {
    Error::InvalidLayout(format!("unreadable tarball: {e}"))
}

fn truncated() -> Error {
    bad("the archive ends inside a member")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(bytes: &[u8], max: u64) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = Vec::new();
        TarStream::new(bytes, max).for_each(|m, data| {
            let mut buf = Vec::new();
            data.read_to_end(&mut buf).unwrap();
            out.push((String::from_utf8_lossy(&m.name).into_owned(), buf));
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn reads_what_the_tar_crate_writes_including_long_and_pax_names() {
        let long = format!("blobs/{}/file", "d".repeat(150));
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        b.append_data(&mut h, "short", &b"abc"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        b.append_data(&mut h, &long, &b"x"[..]).unwrap();
        let record = b"17 path=pax/name\n";
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(EntryType::XHeader);
        h.set_size(record.len() as u64);
        b.append_data(&mut h, "PaxHeader", &record[..]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(2);
        b.append_data(&mut h, "ignored", &b"yz"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let members = collect(&bytes, 100).unwrap();
        assert_eq!(
            members,
            [
                ("short".to_string(), b"abc".to_vec()),
                (long, b"x".to_vec()),
                ("pax/name".to_string(), b"yz".to_vec()),
            ]
        );
        assert!(matches!(
            collect(&bytes, 3),
            Err(Error::LoadLimit { limit: 3, .. })
        ));
    }

    #[test]
    fn an_extension_header_claiming_gigabytes_is_refused_without_reading_it() {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(EntryType::GNULongName);
        h.set_size(8 << 30);
        h.set_cksum();
        let bytes = h.as_bytes().to_vec();
        assert!(matches!(
            collect(&bytes, 10),
            Err(Error::LoadLimit {
                limit: MAX_NAME,
                ..
            })
        ));
    }

    #[test]
    fn truncated_and_corrupt_archives_are_errors() {
        let mut h = tar::Header::new_gnu();
        h.set_size(1000);
        h.set_path("a").unwrap();
        h.set_cksum();
        let mut bytes = h.as_bytes().to_vec();
        bytes.extend_from_slice(&[1; 10]);
        assert!(matches!(collect(&bytes, 10), Err(Error::InvalidLayout(_))));
        let mut corrupt = h.as_bytes().to_vec();
        corrupt[0] ^= 1;
        assert!(matches!(
            collect(&corrupt, 10),
            Err(Error::InvalidLayout(_))
        ));
        assert!(collect(&[], 10).unwrap().is_empty());
    }
}
