//! ISO BMFF (ISO/IEC 14496-12, "MP4") boxes: a bounded, sans-IO reader and
//! writer, the typed boxes the packagers need, and the two helpers they call.
//!
//! ```text
//!   bytes ─▶ Header::parse (incremental: need more / error / header)
//!         ─▶ Reader (u8..u64, fourcc, bytes(n), sub(len), children(), finish())
//!         ─▶ typed boxes: BmffBox::decode / BmffBox::encode (round trip)
//!
//!   TrackInfo ──▶ init_segment ──▶ ftyp + moov(trak.., mvex(trex..))
//!   SampleEntry.. ──▶ fragment_header ──▶ moof(mfhd, traf(tfhd, tfdt, trun)) + mdat header
//!                                           └─ the host splices the payload after it
//! ```
//!
//! The module tree follows the spec: [`ftyp`] (`ftyp`, `styp`), [`moov`]
//! (`mvhd`, `mvex`, `trex`), [`trak`] (`tkhd`, `mdia`, `mdhd`, `hdlr`,
//! `minf`, `vmhd`, `smhd`, `dinf`, `dref`), [`stbl`] (`stsd` and its sample
//! entries, `stts`, `stsc`, `stsz`, `stco`), [`esds`] (MPEG-4 descriptors),
//! [`moof`] (`mfhd`, `traf`, `tfhd`, `tfdt`, `trun`), [`smooth`] (Smooth
//! Streaming's `uuid` boxes: `tfxd`, the live server manifest). [`init`]
//! and [`media`] hold the high-level helpers; [`dump`](fn@dump) prints a
//! box tree.
//!
//! Every length read from input is checked against what is actually there
//! (and against a caller-given limit where the caller buffers) before
//! anything is allocated for it.

use std::fmt;

pub mod dump;
pub mod esds;
mod fields;
pub mod ftyp;
pub mod init;
pub mod media;
pub mod moof;
pub mod moov;
pub mod reader;
pub mod smooth;
pub mod stbl;
pub mod trak;
pub mod writer;

pub use dump::dump;
pub use esds::Esds;
pub use ftyp::{Ftyp, Styp};
pub use init::{init_segment, is_supported, language_code, language_tag, trak_for};
pub use media::{
    SAMPLE_FLAGS_NON_SYNC, SAMPLE_FLAGS_SYNC, fragment_header, mdat_header, sample_flags,
};
pub use moof::{Mfhd, Moof, Tfdt, Tfhd, Traf, Trun, TrunSample};
pub use moov::{Moov, Mvex, Mvhd, Trex};
pub use reader::{BoxRef, BoxSize, Children, Header, Reader};
pub use smooth::Tfxd;
pub use stbl::{
    Avc1, Mp4a, SampleDescription, Stbl, Stco, Stsc, StscEntry, Stsd, Stsz, Stts, SttsEntry,
};
pub use trak::{Dinf, Dref, Hdlr, Mdhd, Mdia, MediaHeader, Minf, Smhd, Tkhd, Trak, Url, Vmhd};
pub use writer::{BoxWriter, write_box, write_full_box};

/// Errors of the ISO BMFF reader and writer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A read went past the end of the box or buffer.
    #[error("unexpected end of data: wanted {wanted} bytes, {remaining} left")]
    UnexpectedEnd {
        /// Bytes the read needed.
        wanted: u64,
        /// Bytes that were left.
        remaining: u64,
    },
    /// A box declares a size smaller than its own header.
    #[error("box {fourcc} declares size {size}, smaller than its {header_len}-byte header")]
    BoxTooShort {
        /// The box type.
        fourcc: FourCC,
        /// The declared size.
        size: u64,
        /// The length of the header that was read.
        header_len: u64,
    },
    /// A box declares a size larger than the caller's limit.
    #[error("box {fourcc} declares size {size}, over the limit of {limit}")]
    BoxTooLarge {
        /// The box type.
        fourcc: FourCC,
        /// The declared size.
        size: u64,
        /// The limit it exceeds.
        limit: u64,
    },
    /// A box extends past the end of its parent (or of the complete buffer).
    #[error("box {fourcc} declares size {size}, but only {available} bytes remain in its parent")]
    BoxOverrun {
        /// The box type.
        fourcc: FourCC,
        /// The declared size.
        size: u64,
        /// Bytes left in the parent.
        available: u64,
    },
    /// Bytes are left over after a box's fields or after the last box.
    #[error("{0} bytes of trailing data")]
    TrailingData(u64),
    /// A box of one type was expected, another was found.
    #[error("expected box {expected}, found {found}")]
    UnexpectedBox {
        /// The expected type.
        expected: FourCC,
        /// The type found.
        found: FourCC,
    },
    /// A required child box is missing.
    #[error("missing required box {0}")]
    MissingBox(FourCC),
    /// A box that may appear once appears twice.
    #[error("duplicate box {0}")]
    DuplicateBox(FourCC),
    /// A table declares more entries than its box can hold or than allowed.
    #[error("box {fourcc} declares {count} entries, more than it can hold")]
    TooManyEntries {
        /// The box type.
        fourcc: FourCC,
        /// The declared count.
        count: u64,
    },
    /// A field holds a value the format does not allow.
    #[error("invalid {0}")]
    Invalid(String),
    /// Valid but not supported here (box version, codec, sample entry).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A value does not fit the field it must be written to.
    #[error("value does not fit: {0}")]
    Overflow(&'static str),
}

/// Result of ISO BMFF operations.
pub type Result<T> = std::result::Result<T, Error>;

/// A four-character code: a box type, brand, handler or sample entry type.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FourCC(pub [u8; 4]);

impl FourCC {
    /// A code from four bytes, e.g. `FourCC::new(b"moov")`.
    pub const fn new(code: &[u8; 4]) -> Self {
        FourCC(*code)
    }

    /// A code from a string of exactly four bytes.
    pub fn from_str_exact(s: &str) -> Option<Self> {
        <[u8; 4]>::try_from(s.as_bytes()).ok().map(FourCC)
    }

    /// The four bytes.
    pub const fn bytes(self) -> [u8; 4] {
        self.0
    }
}

impl fmt::Display for FourCC {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            if (0x20..0x7f).contains(&b) {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for FourCC {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FourCC(\"{self}\")")
    }
}

/// A typed box: encodes its body, decodes its body, and from those the
/// whole box.
pub trait BmffBox: Sized {
    /// The box type.
    const TYPE: FourCC;

    /// Writes the body (everything after the box header; a full box writes
    /// its version and flags first).
    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()>;

    /// Reads the body. The caller checks that nothing is left over.
    fn decode_body(r: &mut Reader<'_>) -> Result<Self>;

    /// Appends the whole box (header and body) to `buf`.
    fn encode(&self, buf: &mut Vec<u8>) -> Result<()> {
        write_box(buf, Self::TYPE, |buf| self.encode_body(buf))
    }

    /// The whole box as a new buffer.
    fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.encode(&mut buf)?;
        Ok(buf)
    }

    /// Decodes a box found by a [`Reader`]: checks its type and that its
    /// fields fill it exactly.
    fn from_box(b: &BoxRef<'_>) -> Result<Self> {
        if b.fourcc() != Self::TYPE {
            return Err(Error::UnexpectedBox {
                expected: Self::TYPE,
                found: b.fourcc(),
            });
        }
        let mut r = b.reader();
        let v = Self::decode_body(&mut r)?;
        r.finish()?;
        Ok(v)
    }

    /// Decodes a buffer that holds exactly this one box.
    fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let b = r.next_box()?.ok_or(Error::MissingBox(Self::TYPE))?;
        let v = Self::from_box(&b)?;
        r.finish()?;
        Ok(v)
    }
}

/// Entry points for fuzz targets: parse arbitrary bytes without panicking.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Parses `data` every way the module can: incremental headers, the
    /// box tree, every typed top-level box, and the dump. Never panics;
    /// errors are the expected outcome for most inputs.
    pub fn parse(data: &[u8]) {
        let _ = Header::parse(data, 1 << 20);
        let _ = dump(data);
        let mut r = Reader::new(data);
        while let Ok(Some(b)) = r.next_box() {
            let _ = match &b.fourcc().0 {
                b"ftyp" => Ftyp::from_box(&b).map(drop),
                b"styp" => Styp::from_box(&b).map(drop),
                b"moov" => Moov::from_box(&b).map(drop),
                b"moof" => Moof::from_box(&b).map(drop),
                b"trak" => Trak::from_box(&b).map(drop),
                b"stsd" => Stsd::from_box(&b).map(drop),
                b"esds" => Esds::from_box(&b).map(drop),
                b"trun" => Trun::from_box(&b).map(drop),
                b"uuid" => Tfxd::from_box(&b).map(drop),
                _ => Ok(()),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny deterministic PRNG (xorshift64*), so the test needs no crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    #[test]
    fn fourcc_display_escapes() {
        assert_eq!(FourCC::new(b"moov").to_string(), "moov");
        assert_eq!(FourCC([0, b'a', 0xff, b'b']).to_string(), "\\x00a\\xffb");
        assert_eq!(FourCC::from_str_exact("avc1"), Some(FourCC::new(b"avc1")));
        assert_eq!(FourCC::from_str_exact("avc"), None);
    }

    #[test]
    fn fuzzing_survives_random_truncated_and_mutated_input() {
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        // Pure noise, with some box-like headers sprinkled in.
        for _ in 0..2000 {
            let len = rng.below(300);
            let mut v: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if len >= 8 && rng.below(2) == 0 {
                let names: [&[u8; 4]; 8] = [
                    b"moov", b"moof", b"trak", b"stsd", b"esds", b"trun", b"ftyp", b"uuid",
                ];
                let size = (rng.below(len) as u32).to_be_bytes();
                v[..4].copy_from_slice(&size);
                v[4..8].copy_from_slice(names[rng.below(names.len())]);
            }
            fuzzing::parse(&v);
        }
        // Every truncation and many mutations of valid segments.
        let seeds = [
            init::tests::sample_init(),
            media::tests::sample_fragment_with_payload(),
        ];
        for seed in &seeds {
            for n in 0..seed.len() {
                fuzzing::parse(&seed[..n]);
            }
            for _ in 0..3000 {
                let mut v = seed.clone();
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(v.len());
                    v[i] = rng.next() as u8;
                }
                fuzzing::parse(&v);
            }
        }
    }
}
