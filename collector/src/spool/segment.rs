//! On-disk format of one spool segment, and its recovery scan.
//!
//! A segment file is named `<first record id, 20 digits>.seg` and holds an 8-byte magic
//! header followed by records, each `len: u32 LE | crc32(payload): u32 LE | payload`. Records
//! are only ever appended; a crash can leave a torn last record, which the CRC (or a length
//! running past the end of the file) reveals.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// First bytes of every segment file, with the format version.
pub(crate) const MAGIC: &[u8; 8] = b"PWSPOOL1";
/// Bytes before each payload.
pub(crate) const RECORD_HEADER: u64 = 8;
/// Largest accepted payload; anything claiming more is corruption.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// Encodes one record (header and payload) into a single buffer, so that it is one write.
pub(crate) fn encode(payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(payload.len() + RECORD_HEADER as usize);
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    buf.extend_from_slice(payload);
    buf
}

/// File name of the segment whose first record id is `base`.
pub(crate) fn file_name(base: u64) -> String {
    format!("{base:020}.seg")
}

/// Parses a segment file name back into its base id.
pub(crate) fn parse_name(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 {
        return None;
    }
    digits.parse().ok()
}

/// Result of scanning one segment file.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Byte offset of each valid record, in order.
    pub offsets: Vec<u64>,
    /// End of the last valid record: where appends continue.
    pub valid_len: u64,
    /// File length before any repair.
    pub file_len: u64,
    /// Why the scan stopped early, if it did.
    pub damage: Option<String>,
}

/// Reads a whole segment and validates every record.
pub(crate) fn scan(path: &Path) -> io::Result<Scan> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let file_len = bytes.len() as u64;
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Ok(Scan {
            offsets: Vec::new(),
            valid_len: 0,
            file_len,
            damage: Some("missing or wrong segment header".into()),
        });
    }
    let mut offsets = Vec::new();
    let mut pos = MAGIC.len();
    let mut damage = None;
    while pos < bytes.len() {
        match decode_at(&bytes, pos) {
            Ok((_, next)) => {
                offsets.push(pos as u64);
                pos = next;
            }
            Err(why) => {
                damage = Some(format!("{why} at byte {pos}"));
                break;
            }
        }
    }
    Ok(Scan {
        offsets,
        valid_len: pos as u64,
        file_len,
        damage,
    })
}

/// Decodes the record starting at `pos` in `bytes`; returns the payload and the next position.
pub(crate) fn decode_at(bytes: &[u8], pos: usize) -> Result<(&[u8], usize), &'static str> {
    let header = bytes
        .get(pos..pos + RECORD_HEADER as usize)
        .ok_or("torn record header")?;
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if len > MAX_RECORD_BYTES {
        return Err("record length out of range");
    }
    let start = pos + RECORD_HEADER as usize;
    let payload = bytes.get(start..start + len).ok_or("torn record payload")?;
    if crc32fast::hash(payload) != crc {
        return Err("record checksum mismatch");
    }
    Ok((payload, start + len))
}

/// A segment as tracked in memory.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Id of the first record.
    pub base: u64,
    pub path: PathBuf,
    /// Byte offset of each record.
    pub offsets: Vec<u64>,
    /// Bytes in the file (header included).
    pub size: u64,
}

impl Segment {
    /// One past the last record id.
    pub fn end(&self) -> u64 {
        self.base + self.offsets.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_roundtrip_and_crc_catches_flips() {
        let mut buf = MAGIC.to_vec();
        buf.extend(encode(b"hello"));
        buf.extend(encode(b""));
        let (p, next) = decode_at(&buf, 8).unwrap();
        assert_eq!(p, b"hello");
        let (p, end) = decode_at(&buf, next).unwrap();
        assert_eq!((p, end), (&b""[..], buf.len()));
        buf[8 + 8] ^= 1;
        assert_eq!(decode_at(&buf, 8), Err("record checksum mismatch"));
        assert_eq!(parse_name(Path::new(&file_name(42))), Some(42));
    }
}
