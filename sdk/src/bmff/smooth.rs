//! Smooth Streaming extensions ([MS-SSTR] 2.2.4): the `uuid` boxes that
//! Smooth encoders and servers put in fragmented MP4, identified by their
//! 16-byte user type.
//!
//! - [`TFXD`]: `TfxdBox` in a `traf`, the fragment's absolute start time and
//!   duration (Smooth's stand-in for `tfdt`), read and written by [`Tfxd`].
//! - [`TFRF`]: `TfrfBox` in a `traf`, look-ahead times of following fragments.
//! - [`LIVE_SERVER_MANIFEST`]: the top-level box of a live ingest stream
//!   carrying the SMIL server manifest (a full box header, then UTF-8 XML).

use super::fields::check_version;
use super::writer::{put_u64, put_version_flags};
use super::{BoxRef, Error, FourCC, Reader, Result, write_box};

/// The `uuid` box type.
pub const UUID: FourCC = FourCC::new(b"uuid");

/// User type of `TfxdBox`: 6D1D9B05-42D5-44E6-80E2-141DAFF757B2.
pub const TFXD: [u8; 16] = [
    0x6d, 0x1d, 0x9b, 0x05, 0x42, 0xd5, 0x44, 0xe6, 0x80, 0xe2, 0x14, 0x1d, 0xaf, 0xf7, 0x57, 0xb2,
];

/// User type of `TfrfBox`: D4807EF2-CA39-4695-8E54-26CB9E46A79F.
pub const TFRF: [u8; 16] = [
    0xd4, 0x80, 0x7e, 0xf2, 0xca, 0x39, 0x46, 0x95, 0x8e, 0x54, 0x26, 0xcb, 0x9e, 0x46, 0xa7, 0x9f,
];

/// User type of the live server manifest box:
/// A5D40B30-E814-11DD-BA2F-0800200C9A66.
pub const LIVE_SERVER_MANIFEST: [u8; 16] = [
    0xa5, 0xd4, 0x0b, 0x30, 0xe8, 0x14, 0x11, 0xdd, 0xba, 0x2f, 0x08, 0x00, 0x20, 0x0c, 0x9a, 0x66,
];

/// Whether `b` is a `uuid` box with the given user type.
pub fn is_uuid(b: &BoxRef<'_>, user_type: &[u8; 16]) -> bool {
    b.fourcc() == UUID && b.header.user_type.as_ref() == Some(user_type)
}

/// `TfxdBox`: the absolute start time and duration of a track fragment,
/// in the track's timescale (10 MHz in Smooth Streaming).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tfxd {
    /// Decode time of the fragment's first sample.
    pub fragment_absolute_time: u64,
    /// Duration of the fragment.
    pub fragment_duration: u64,
}

impl Tfxd {
    /// Decodes a `uuid` box with the [`TFXD`] user type (version 0: 32-bit
    /// fields, version 1: 64-bit), checking that the fields fill it.
    pub fn from_box(b: &BoxRef<'_>) -> Result<Self> {
        if !is_uuid(b, &TFXD) {
            return Err(Error::Invalid(format!("{} is not a tfxd box", b.fourcc())));
        }
        let mut r = b.reader();
        let v = Self::decode_body(&mut r)?;
        r.finish()?;
        Ok(v)
    }

    /// Reads the body after the user type.
    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (v, _) = r.version_flags()?;
        check_version(UUID, v, 1)?;
        let (fragment_absolute_time, fragment_duration) = if v == 1 {
            (r.u64()?, r.u64()?)
        } else {
            (u64::from(r.u32()?), u64::from(r.u32()?))
        };
        Ok(Tfxd {
            fragment_absolute_time,
            fragment_duration,
        })
    }

    /// Appends the box (always version 1) to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<()> {
        write_box(buf, UUID, |buf| {
            buf.extend_from_slice(&TFXD);
            put_version_flags(buf, 1, 0);
            put_u64(buf, self.fragment_absolute_time);
            put_u64(buf, self.fragment_duration);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tfxd_round_trips_and_reads_version_0() {
        let t = Tfxd {
            fragment_absolute_time: 1 << 40,
            fragment_duration: 20_000_000,
        };
        let mut b = Vec::new();
        t.encode(&mut b).unwrap();
        assert_eq!(b.len(), 8 + 16 + 4 + 16);
        let boxed = Reader::new(&b).next_box().unwrap().unwrap();
        assert!(is_uuid(&boxed, &TFXD));
        assert!(!is_uuid(&boxed, &TFRF));
        assert_eq!(Tfxd::from_box(&boxed).unwrap(), t);

        let mut v0 = vec![0, 0, 0, 36];
        v0.extend_from_slice(b"uuid");
        v0.extend_from_slice(&TFXD);
        v0.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 2]);
        let boxed = Reader::new(&v0).next_box().unwrap().unwrap();
        assert_eq!(
            Tfxd::from_box(&boxed).unwrap(),
            Tfxd {
                fragment_absolute_time: 256,
                fragment_duration: 2
            }
        );
    }

    #[test]
    fn tfxd_rejects_other_boxes_and_bad_lengths() {
        let mut b = Vec::new();
        write_box(&mut b, UUID, |buf| {
            buf.extend_from_slice(&TFRF);
            Ok(())
        })
        .unwrap();
        let boxed = Reader::new(&b).next_box().unwrap().unwrap();
        assert!(Tfxd::from_box(&boxed).is_err());

        let mut b = Vec::new();
        Tfxd::default().encode(&mut b).unwrap();
        b.push(0);
        b[3] += 1; // one trailing byte inside the box
        let boxed = Reader::new(&b).next_box().unwrap().unwrap();
        assert_eq!(Tfxd::from_box(&boxed), Err(Error::TrailingData(1)));
        let short = &b[..b.len() - 9];
        let mut short = short.to_vec();
        short[3] = short.len() as u8;
        let boxed = Reader::new(&short).next_box().unwrap().unwrap();
        assert!(matches!(
            Tfxd::from_box(&boxed),
            Err(Error::UnexpectedEnd { .. })
        ));
    }
}
