//! Media segments: the `moof` + `mdat` header a packager writes in front of
//! sample data it references but never copies.
//!
//! ```text
//!   [moof: mfhd, traf(tfhd default-base-is-moof, tfdt v1, trun v1)] [mdat header] [payload...]
//!    ^ trun.data_offset counts from here ─────────────────────────────────────────^
//! ```

use super::moof::{Mfhd, Moof, Tfdt, Tfhd, Traf, Trun, TrunSample};
use super::writer::{put_u32, put_u64};
use super::{BmffBox, Error, FourCC, Result};
use crate::plugin::SampleEntry;

/// Sample flags of a sync sample: `sample_depends_on` = 2 (does not depend
/// on others).
pub const SAMPLE_FLAGS_SYNC: u32 = 0x0200_0000;

/// Sample flags of a non-sync sample: `sample_depends_on` = 1 and
/// `sample_is_non_sync_sample`.
pub const SAMPLE_FLAGS_NON_SYNC: u32 = 0x0101_0000;

const MDAT: FourCC = FourCC::new(b"mdat");

/// The sample flags for a random access point or any other sample.
pub fn sample_flags(keyframe: bool) -> u32 {
    if keyframe {
        SAMPLE_FLAGS_SYNC
    } else {
        SAMPLE_FLAGS_NON_SYNC
    }
}

/// The header of an `mdat` box with `payload_len` bytes of payload: 8 bytes,
/// or 16 (64-bit `largesize`) when the box does not fit 32 bits.
pub fn mdat_header(payload_len: u64) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(16);
    match payload_len
        .checked_add(8)
        .and_then(|n| u32::try_from(n).ok())
    {
        Some(size) => put_u32(&mut buf, size),
        None => {
            let size = payload_len
                .checked_add(16)
                .ok_or(Error::Overflow("mdat size"))?;
            put_u32(&mut buf, 1);
            buf.extend_from_slice(&MDAT.0);
            put_u64(&mut buf, size);
            return Ok(buf);
        }
    }
    buf.extend_from_slice(&MDAT.0);
    Ok(buf)
}

/// A media fragment's header: `moof` (sequence number, one `traf` for
/// `track_id` with default-base-is-moof, `tfdt` version 1 and a version 1
/// `trun` with per-sample duration, size and flags, plus composition
/// offsets when any is non-zero), then the header of an `mdat` whose
/// payload is the samples' data, in order (its length is the sum of the
/// sizes). The `trun` data offset points at the first payload byte, right
/// after the returned bytes: the caller appends the payload.
pub fn fragment_header(
    sequence_number: u32,
    track_id: u32,
    base_media_decode_time: u64,
    samples: &[SampleEntry],
) -> Result<Vec<u8>> {
    let with_cto = samples.iter().any(|s| s.composition_offset != 0);
    let payload_len: u64 = samples.iter().map(|s| u64::from(s.size)).sum();
    let mdat = mdat_header(payload_len)?;
    let mut moof = Moof {
        mfhd: Mfhd { sequence_number },
        trafs: vec![Traf {
            tfhd: Tfhd {
                track_id,
                default_base_is_moof: true,
                ..Tfhd::default()
            },
            tfdt: Some(Tfdt {
                base_media_decode_time,
            }),
            truns: vec![Trun {
                data_offset: Some(0),
                first_sample_flags: None,
                samples: samples
                    .iter()
                    .map(|s| TrunSample {
                        duration: Some(s.duration),
                        size: Some(s.size),
                        flags: Some(sample_flags(s.keyframe)),
                        composition_offset: with_cto.then_some(s.composition_offset),
                    })
                    .collect(),
            }],
        }],
    };
    // The moof's length does not depend on the offset's value: measure,
    // then write again with the real offset.
    let moof_len = moof.to_bytes()?.len();
    let data_offset =
        i32::try_from(moof_len + mdat.len()).map_err(|_| Error::Overflow("trun data offset"))?;
    for traf in &mut moof.trafs {
        for trun in &mut traf.truns {
            trun.data_offset = Some(data_offset);
        }
    }
    let mut buf = Vec::with_capacity(moof_len + mdat.len());
    moof.encode(&mut buf)?;
    buf.extend_from_slice(&mdat);
    Ok(buf)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bmff::{BoxSize, Header, Reader};

    pub(crate) fn samples() -> Vec<SampleEntry> {
        vec![
            SampleEntry {
                duration: 3600,
                size: 5,
                composition_offset: 7200,
                keyframe: true,
            },
            SampleEntry {
                duration: 3600,
                size: 3,
                composition_offset: -3600,
                keyframe: false,
            },
            SampleEntry {
                duration: 3600,
                size: 4,
                composition_offset: 0,
                keyframe: false,
            },
        ]
    }

    /// A fragment header followed by its payload (`0x11 0x11 ..` for the
    /// first sample, `0x22 ..` for the second, ...).
    pub(crate) fn sample_fragment_with_payload() -> Vec<u8> {
        let mut b = fragment_header(7, 1, 900_000, &samples()).unwrap();
        for (i, s) in samples().iter().enumerate() {
            b.extend(std::iter::repeat_n(0x11 * (i as u8 + 1), s.size as usize));
        }
        b
    }

    #[test]
    fn fragment_parses_back_with_the_right_data_offset() {
        let b = sample_fragment_with_payload();
        let mut r = Reader::new(&b);
        let moof_box = r.next_box().unwrap().unwrap();
        let moof = Moof::from_box(&moof_box).unwrap();
        let mdat = r.next_box().unwrap().unwrap();
        r.finish().unwrap();
        assert_eq!(mdat.fourcc(), MDAT);
        assert_eq!(mdat.body.len(), 12);

        assert_eq!(moof.mfhd.sequence_number, 7);
        let traf = &moof.trafs[0];
        assert_eq!(traf.tfhd.track_id, 1);
        assert!(traf.tfhd.default_base_is_moof);
        assert_eq!(traf.tfdt.unwrap().base_media_decode_time, 900_000);
        let trun = &traf.truns[0];
        let offset = trun.data_offset.unwrap() as usize;
        assert_eq!(offset, moof_box.len() + 8);
        // Walk the samples from the data offset.
        let mut at = offset;
        for (i, s) in trun.samples.iter().enumerate() {
            let size = s.size.unwrap() as usize;
            assert!(b[at..at + size].iter().all(|&x| x == 0x11 * (i as u8 + 1)));
            at += size;
        }
        assert_eq!(at, b.len());
        let flags: Vec<_> = trun.samples.iter().map(|s| s.flags.unwrap()).collect();
        assert_eq!(
            flags,
            [
                SAMPLE_FLAGS_SYNC,
                SAMPLE_FLAGS_NON_SYNC,
                SAMPLE_FLAGS_NON_SYNC
            ]
        );
        let cto: Vec<_> = trun
            .samples
            .iter()
            .map(|s| s.composition_offset.unwrap())
            .collect();
        assert_eq!(cto, [7200, -3600, 0]);
    }

    #[test]
    fn composition_offsets_only_when_needed() {
        let audio: Vec<_> = samples()
            .into_iter()
            .map(|s| SampleEntry {
                composition_offset: 0,
                keyframe: true,
                ..s
            })
            .collect();
        let b = fragment_header(1, 2, 0, &audio).unwrap();
        let moof = Moof::decode(&b[..b.len() - 8]).unwrap();
        let trun = &moof.trafs[0].truns[0];
        assert!(trun.samples.iter().all(|s| s.composition_offset.is_none()));
        assert_eq!(trun.data_offset.unwrap() as usize, b.len());
        // An empty fragment is still well-formed.
        let b = fragment_header(1, 2, 0, &[]).unwrap();
        assert_eq!(&b[b.len() - 8..], &[0, 0, 0, 8, b'm', b'd', b'a', b't']);
    }

    #[test]
    fn mdat_header_sizes() {
        assert_eq!(
            mdat_header(0).unwrap(),
            [0, 0, 0, 8, b'm', b'd', b'a', b't']
        );
        let small = mdat_header(u64::from(u32::MAX) - 8).unwrap();
        assert_eq!(small.len(), 8);
        let large = mdat_header(u64::from(u32::MAX) - 7).unwrap();
        assert_eq!(large.len(), 16);
        let h = Header::parse(&large, u64::MAX).unwrap().unwrap();
        assert_eq!(h.size, BoxSize::Known(u64::from(u32::MAX) + 9));
        assert_eq!(h.header_len, 16);
        assert!(mdat_header(u64::MAX - 10).is_err());
    }
}
