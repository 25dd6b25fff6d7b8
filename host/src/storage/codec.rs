//! The fragment object: one [`Fragment`] as a small self-describing binary.
//!
//! All integers are little-endian. Version 1:
//!
//! ```text
//! offset size  field
//!      0    4  magic "SLF1"
//!      4    2  version (1)
//!      6    2  flags: bit 0 = a discontinuity precedes the fragment; other bits 0
//!      8    8  start: decode time of the first sample, track ticks
//!     16    8  duration, track ticks
//!     24    4  sample count n
//!     28    4  sample record size (16)
//!     32    8  payload length p
//!     40    8  xxh3-64 of bytes 0..40, the sample table and the payload
//!     48  16n  sample table, one record per sample in decode order:
//!                0  u32 duration (ticks)
//!                4  u32 size (bytes)
//!                8  i32 composition offset (presentation − decode time)
//!               12  u8  flags: bit 0 = keyframe; other bits 0
//!               13  3   reserved, 0
//! 48+16n   p  payload: every sample's bytes in decode order
//! ```
//!
//! The object is exactly `48 + 16n + p` bytes and the sample sizes add up
//! to `p`. Decoding checks all of it (length first, so nothing is
//! allocated beyond what the input holds; then the checksum), never panics,
//! and returns the payload as a slice of the input, not a copy.
//!
//! This file is also compiled into the fuzz crate (`fuzz/src/fragment.rs`
//! includes it with `#[path]`), so it uses only `super::Fragment`,
//! `sluice_sdk`, `bytes`, `thiserror` and `xxhash_rust`.

use bytes::{BufMut, Bytes, BytesMut};
use sluice_sdk::plugin::SampleEntry;
use xxhash_rust::xxh3::Xxh3;

use super::Fragment;

/// The first four bytes of every fragment object.
pub const MAGIC: [u8; 4] = *b"SLF1";
/// The format version written (and the only one read).
pub const VERSION: u16 = 1;
/// Bytes before the sample table.
pub const HEADER_LEN: usize = 48;
/// Bytes per sample record.
pub const RECORD_LEN: usize = 16;
/// Bytes of the header the checksum covers (everything before it).
const CHECKED_HEADER: usize = 40;
const FLAG_DISCONTINUITY: u16 = 1;
const SAMPLE_KEYFRAME: u8 = 1;

/// Why bytes are not a valid fragment object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Shorter than the fixed header.
    #[error("{0} bytes, shorter than the {HEADER_LEN}-byte header")]
    Short(usize),
    /// The magic is not `SLF1`.
    #[error("not a fragment object (bad magic)")]
    Magic,
    /// A version this build does not read.
    #[error("unsupported version {0}")]
    Version(u16),
    /// Header flag bits this version does not define.
    #[error("unknown header flags {0:#06x}")]
    Flags(u16),
    /// A sample record size other than 16.
    #[error("sample record size {0}, expected {RECORD_LEN}")]
    RecordSize(u32),
    /// The object's length disagrees with its header.
    #[error("{actual} bytes, the header says {}", expected.map_or("more than 2^64".to_owned(), |n| n.to_string()))]
    Length {
        /// Length the header implies (`None`: it overflows).
        expected: Option<u64>,
        /// Actual length.
        actual: usize,
    },
    /// The checksum does not match.
    #[error("checksum mismatch")]
    Checksum,
    /// A sample record with undefined flag or reserved bits.
    #[error("sample {0}: undefined flag or reserved bits set")]
    SampleFlags(u32),
    /// The sample sizes do not add up to the payload length.
    #[error("sample sizes add up to {sum}, the payload is {payload} bytes")]
    Sizes {
        /// Sum of the sample sizes.
        sum: u64,
        /// Payload length.
        payload: u64,
    },
}

/// The fixed header of a fragment object (what an index needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectHeader {
    /// Decode time of the first sample.
    pub start: u64,
    /// Duration in ticks.
    pub duration: u64,
    /// A discontinuity precedes the fragment.
    pub discontinuity: bool,
    /// Number of samples.
    pub sample_count: u32,
    /// Payload bytes.
    pub payload_len: u64,
    /// The stored checksum.
    pub checksum: u64,
}

impl ObjectHeader {
    /// The object length this header implies (`None` if it overflows).
    pub fn object_len(&self) -> Option<u64> {
        let table = u64::from(self.sample_count).checked_mul(RECORD_LEN as u64)?;
        (HEADER_LEN as u64)
            .checked_add(table)?
            .checked_add(self.payload_len)
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut a = [0; 2];
    a.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(a)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Parses the fixed header (the first [`HEADER_LEN`] bytes; more may
/// follow). Checks magic, version, flags and record size, not the checksum.
pub fn decode_header(bytes: &[u8]) -> Result<ObjectHeader, CodecError> {
    let Some(h) = bytes.get(..HEADER_LEN) else {
        return Err(CodecError::Short(bytes.len()));
    };
    if h[..4] != MAGIC {
        return Err(CodecError::Magic);
    }
    let version = u16_at(h, 4);
    if version != VERSION {
        return Err(CodecError::Version(version));
    }
    let flags = u16_at(h, 6);
    if flags & !FLAG_DISCONTINUITY != 0 {
        return Err(CodecError::Flags(flags));
    }
    let record = u32_at(h, 28);
    if record as usize != RECORD_LEN {
        return Err(CodecError::RecordSize(record));
    }
    Ok(ObjectHeader {
        start: u64_at(h, 8),
        duration: u64_at(h, 16),
        discontinuity: flags & FLAG_DISCONTINUITY != 0,
        sample_count: u32_at(h, 24),
        payload_len: u64_at(h, 32),
        checksum: u64_at(h, 40),
    })
}

/// Decodes a whole fragment object. Never panics; allocates only the
/// sample table, whose size the input's length bounds; the payload is a
/// slice of `bytes`.
pub fn decode_fragment(bytes: Bytes) -> Result<Fragment, CodecError> {
    let header = decode_header(&bytes)?;
    let expected = header.object_len();
    if expected != Some(bytes.len() as u64) {
        return Err(CodecError::Length {
            expected,
            actual: bytes.len(),
        });
    }
    let mut hasher = Xxh3::new();
    hasher.update(&bytes[..CHECKED_HEADER]);
    hasher.update(&bytes[HEADER_LEN..]);
    if hasher.digest() != header.checksum {
        return Err(CodecError::Checksum);
    }
    // The length check above bounds n by bytes.len() / 16.
    let n = header.sample_count as usize;
    let table_end = HEADER_LEN + n * RECORD_LEN;
    let mut samples = Vec::with_capacity(n);
    let mut sum = 0u64;
    for (i, r) in bytes[HEADER_LEN..table_end]
        .chunks_exact(RECORD_LEN)
        .enumerate()
    {
        if r[12] & !SAMPLE_KEYFRAME != 0 || r[13..16] != [0, 0, 0] {
            return Err(CodecError::SampleFlags(
                u32::try_from(i).unwrap_or(u32::MAX),
            ));
        }
        let size = u32_at(r, 4);
        sum += u64::from(size);
        samples.push(SampleEntry {
            duration: u32_at(r, 0),
            size,
            composition_offset: u32_at(r, 8) as i32,
            keyframe: r[12] & SAMPLE_KEYFRAME != 0,
        });
    }
    if sum != header.payload_len {
        return Err(CodecError::Sizes {
            sum,
            payload: header.payload_len,
        });
    }
    Ok(Fragment {
        start: header.start,
        duration: header.duration,
        samples,
        data: bytes.slice(table_end..),
        discontinuity: header.discontinuity,
    })
}

/// The header and sample table of `f`'s object (the checksum covers
/// `f.data`, which follows them). A fragment with more than `u32::MAX`
/// samples or sample sizes that do not add up to its payload encodes to
/// an object that does not decode; check with [`check_fragment`] first.
pub fn encode_head(f: &Fragment) -> Bytes {
    let n = f.samples.len();
    let mut b = BytesMut::with_capacity(HEADER_LEN + n * RECORD_LEN);
    b.put_slice(&MAGIC);
    b.put_u16_le(VERSION);
    b.put_u16_le(if f.discontinuity {
        FLAG_DISCONTINUITY
    } else {
        0
    });
    b.put_u64_le(f.start);
    b.put_u64_le(f.duration);
    b.put_u32_le(u32::try_from(n).unwrap_or(u32::MAX));
    b.put_u32_le(RECORD_LEN as u32);
    b.put_u64_le(f.data.len() as u64);
    b.put_u64_le(0); // checksum, filled in below
    for s in &f.samples {
        b.put_u32_le(s.duration);
        b.put_u32_le(s.size);
        b.put_i32_le(s.composition_offset);
        b.put_u8(if s.keyframe { SAMPLE_KEYFRAME } else { 0 });
        b.put_slice(&[0, 0, 0]);
    }
    let mut hasher = Xxh3::new();
    hasher.update(&b[..CHECKED_HEADER]);
    hasher.update(&b[HEADER_LEN..]);
    hasher.update(&f.data);
    b[CHECKED_HEADER..HEADER_LEN].copy_from_slice(&hasher.digest().to_le_bytes());
    b.freeze()
}

/// The content checksum of a fragment's object (xxh3-64 over its header,
/// sample table and payload): equal fragments have equal checksums, so it
/// names a fragment across nodes.
pub fn checksum(f: &Fragment) -> u64 {
    let head = encode_head(f);
    head.get(CHECKED_HEADER..HEADER_LEN)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_le_bytes)
}

/// `f` as one fragment object (header, sample table and a copy of the
/// payload).
pub fn encode_fragment(f: &Fragment) -> Bytes {
    let head = encode_head(f);
    let mut b = BytesMut::with_capacity(head.len() + f.data.len());
    b.put_slice(&head);
    b.put_slice(&f.data);
    b.freeze()
}

/// Why `f` cannot be stored: more than `u32::MAX` samples, or sample
/// sizes that do not add up to the payload. `None` if it can.
pub fn check_fragment(f: &Fragment) -> Option<String> {
    if u32::try_from(f.samples.len()).is_err() {
        return Some(format!("{} samples", f.samples.len()));
    }
    let sum: u64 = f.samples.iter().map(|s| u64::from(s.size)).sum();
    if sum != f.data.len() as u64 {
        return Some(format!(
            "sample sizes add up to {sum}, the payload is {} bytes",
            f.data.len()
        ));
    }
    None
}
