//! Movie fragments: `moof` (ISO/IEC 14496-12 8.8.4), `mfhd` (8.8.5),
//! `traf` (8.8.6), `tfhd` (8.8.7), `tfdt` (8.8.12), `trun` (8.8.8).

use super::fields::{check_version, once};
use super::writer::{put_count, put_u32, put_u64, put_version_flags};
use super::{BmffBox, Error, FourCC, Reader, Result};

/// `moof`: one movie fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moof {
    /// Fragment header.
    pub mfhd: Mfhd,
    /// One per track with samples in this fragment.
    pub trafs: Vec<Traf>,
}

impl BmffBox for Moof {
    const TYPE: FourCC = FourCC::new(b"moof");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        self.mfhd.encode(buf)?;
        for t in &self.trafs {
            t.encode(buf)?;
        }
        Ok(())
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (mut mfhd, mut trafs) = (None, Vec::new());
        for b in r.children() {
            let b = b?;
            match &b.fourcc().0 {
                b"mfhd" => once(&mut mfhd, Mfhd::from_box(&b)?, b.fourcc())?,
                b"traf" => trafs.push(Traf::from_box(&b)?),
                _ => {}
            }
        }
        Ok(Moof {
            mfhd: mfhd.ok_or(Error::MissingBox(Mfhd::TYPE))?,
            trafs,
        })
    }
}

/// `mfhd`: the fragment's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mfhd {
    /// Increases from fragment to fragment.
    pub sequence_number: u32,
}

impl BmffBox for Mfhd {
    const TYPE: FourCC = FourCC::new(b"mfhd");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        put_version_flags(buf, 0, 0);
        put_u32(buf, self.sequence_number);
        Ok(())
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (v, _) = r.version_flags()?;
        check_version(Self::TYPE, v, 0)?;
        Ok(Mfhd {
            sequence_number: r.u32()?,
        })
    }
}

/// `traf`: one track's part of a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traf {
    /// Track fragment header.
    pub tfhd: Tfhd,
    /// Decode time of the first sample.
    pub tfdt: Option<Tfdt>,
    /// Runs of samples.
    pub truns: Vec<Trun>,
}

impl BmffBox for Traf {
    const TYPE: FourCC = FourCC::new(b"traf");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        self.tfhd.encode(buf)?;
        if let Some(t) = &self.tfdt {
            t.encode(buf)?;
        }
        for t in &self.truns {
            t.encode(buf)?;
        }
        Ok(())
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (mut tfhd, mut tfdt, mut truns) = (None, None, Vec::new());
        for b in r.children() {
            let b = b?;
            match &b.fourcc().0 {
                b"tfhd" => once(&mut tfhd, Tfhd::from_box(&b)?, b.fourcc())?,
                b"tfdt" => once(&mut tfdt, Tfdt::from_box(&b)?, b.fourcc())?,
                b"trun" => truns.push(Trun::from_box(&b)?),
                _ => {}
            }
        }
        Ok(Traf {
            tfhd: tfhd.ok_or(Error::MissingBox(Tfhd::TYPE))?,
            tfdt,
            truns,
        })
    }
}

/// `tfhd` flag: `base_data_offset` present.
pub const TFHD_BASE_DATA_OFFSET: u32 = 0x00_0001;
/// `tfhd` flag: `sample_description_index` present.
pub const TFHD_SAMPLE_DESCRIPTION_INDEX: u32 = 0x00_0002;
/// `tfhd` flag: `default_sample_duration` present.
pub const TFHD_DEFAULT_SAMPLE_DURATION: u32 = 0x00_0008;
/// `tfhd` flag: `default_sample_size` present.
pub const TFHD_DEFAULT_SAMPLE_SIZE: u32 = 0x00_0010;
/// `tfhd` flag: `default_sample_flags` present.
pub const TFHD_DEFAULT_SAMPLE_FLAGS: u32 = 0x00_0020;
/// `tfhd` flag: the fragment has no samples, only a duration.
pub const TFHD_DURATION_IS_EMPTY: u32 = 0x01_0000;
/// `tfhd` flag: data offsets are relative to the start of the `moof`.
pub const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;

/// `tfhd`: the track and the defaults of its samples in this fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tfhd {
    /// The track.
    pub track_id: u32,
    /// Absolute base of data offsets.
    pub base_data_offset: Option<u64>,
    /// 1-based index into `stsd`.
    pub sample_description_index: Option<u32>,
    /// Duration of samples that do not state one.
    pub default_sample_duration: Option<u32>,
    /// Size of samples that do not state one.
    pub default_sample_size: Option<u32>,
    /// Flags of samples that do not state them.
    pub default_sample_flags: Option<u32>,
    /// The fragment has no samples.
    pub duration_is_empty: bool,
    /// Data offsets are relative to the start of the enclosing `moof`.
    pub default_base_is_moof: bool,
}

impl BmffBox for Tfhd {
    const TYPE: FourCC = FourCC::new(b"tfhd");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        let flag = |present: bool, f: u32| if present { f } else { 0 };
        let flags = flag(self.base_data_offset.is_some(), TFHD_BASE_DATA_OFFSET)
            | flag(
                self.sample_description_index.is_some(),
                TFHD_SAMPLE_DESCRIPTION_INDEX,
            )
            | flag(
                self.default_sample_duration.is_some(),
                TFHD_DEFAULT_SAMPLE_DURATION,
            )
            | flag(self.default_sample_size.is_some(), TFHD_DEFAULT_SAMPLE_SIZE)
            | flag(
                self.default_sample_flags.is_some(),
                TFHD_DEFAULT_SAMPLE_FLAGS,
            )
            | flag(self.duration_is_empty, TFHD_DURATION_IS_EMPTY)
            | flag(self.default_base_is_moof, TFHD_DEFAULT_BASE_IS_MOOF);
        put_version_flags(buf, 0, flags);
        put_u32(buf, self.track_id);
        if let Some(v) = self.base_data_offset {
            put_u64(buf, v);
        }
        for v in [
            self.sample_description_index,
            self.default_sample_duration,
            self.default_sample_size,
            self.default_sample_flags,
        ]
        .into_iter()
        .flatten()
        {
            put_u32(buf, v);
        }
        Ok(())
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (v, flags) = r.version_flags()?;
        check_version(Self::TYPE, v, 0)?;
        let track_id = r.u32()?;
        let mut opt = |f: u32| -> Result<Option<u32>> {
            if flags & f != 0 {
                r.u32().map(Some)
            } else {
                Ok(None)
            }
        };
        // Fields appear in flag order; base_data_offset is 64 bits.
        let base_hi = opt(TFHD_BASE_DATA_OFFSET)?;
        let base_lo = opt(TFHD_BASE_DATA_OFFSET)?;
        let base_data_offset = match (base_hi, base_lo) {
            (Some(hi), Some(lo)) => Some((u64::from(hi) << 32) | u64::from(lo)),
            _ => None,
        };
        Ok(Tfhd {
            track_id,
            base_data_offset,
            sample_description_index: opt(TFHD_SAMPLE_DESCRIPTION_INDEX)?,
            default_sample_duration: opt(TFHD_DEFAULT_SAMPLE_DURATION)?,
            default_sample_size: opt(TFHD_DEFAULT_SAMPLE_SIZE)?,
            default_sample_flags: opt(TFHD_DEFAULT_SAMPLE_FLAGS)?,
            duration_is_empty: flags & TFHD_DURATION_IS_EMPTY != 0,
            default_base_is_moof: flags & TFHD_DEFAULT_BASE_IS_MOOF != 0,
        })
    }
}

/// `tfdt`: decode time of the fragment's first sample (written as version
/// 1, 64 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tfdt {
    /// In the track's timescale.
    pub base_media_decode_time: u64,
}

impl BmffBox for Tfdt {
    const TYPE: FourCC = FourCC::new(b"tfdt");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        put_version_flags(buf, 1, 0);
        put_u64(buf, self.base_media_decode_time);
        Ok(())
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (v, _) = r.version_flags()?;
        check_version(Self::TYPE, v, 1)?;
        let base_media_decode_time = if v == 1 {
            r.u64()?
        } else {
            u64::from(r.u32()?)
        };
        Ok(Tfdt {
            base_media_decode_time,
        })
    }
}

/// `trun` flag: `data_offset` present.
pub const TRUN_DATA_OFFSET: u32 = 0x00_0001;
/// `trun` flag: `first_sample_flags` present.
pub const TRUN_FIRST_SAMPLE_FLAGS: u32 = 0x00_0004;
/// `trun` flag: per-sample duration present.
pub const TRUN_SAMPLE_DURATION: u32 = 0x00_0100;
/// `trun` flag: per-sample size present.
pub const TRUN_SAMPLE_SIZE: u32 = 0x00_0200;
/// `trun` flag: per-sample flags present.
pub const TRUN_SAMPLE_FLAGS: u32 = 0x00_0400;
/// `trun` flag: per-sample composition time offset present.
pub const TRUN_SAMPLE_COMPOSITION_OFFSET: u32 = 0x00_0800;

/// Most samples a `trun` may declare when it carries no per-sample fields
/// (then its body does not bound the count).
pub const MAX_FIELDLESS_TRUN_SAMPLES: u32 = 1 << 16;

/// One sample of a `trun`; absent fields take the `tfhd`/`trex` defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrunSample {
    /// Duration in ticks.
    pub duration: Option<u32>,
    /// Size in bytes.
    pub size: Option<u32>,
    /// Sample flags (see [`sample_flags`](super::sample_flags)).
    pub flags: Option<u32>,
    /// Presentation minus decode time, in ticks.
    pub composition_offset: Option<i32>,
}

impl TrunSample {
    fn presence(&self) -> u32 {
        let flag = |present: bool, f: u32| if present { f } else { 0 };
        flag(self.duration.is_some(), TRUN_SAMPLE_DURATION)
            | flag(self.size.is_some(), TRUN_SAMPLE_SIZE)
            | flag(self.flags.is_some(), TRUN_SAMPLE_FLAGS)
            | flag(
                self.composition_offset.is_some(),
                TRUN_SAMPLE_COMPOSITION_OFFSET,
            )
    }
}

/// `trun`: a run of contiguous samples (written as version 1: signed
/// composition offsets). Every sample must carry the same set of fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Trun {
    /// Offset of the first sample's data from the base (the `moof` start
    /// with default-base-is-moof).
    pub data_offset: Option<i32>,
    /// Flags of the first sample, overriding the default.
    pub first_sample_flags: Option<u32>,
    /// The samples.
    pub samples: Vec<TrunSample>,
}

impl BmffBox for Trun {
    const TYPE: FourCC = FourCC::new(b"trun");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        let presence = self.samples.first().map_or(0, TrunSample::presence);
        if self.samples.iter().any(|s| s.presence() != presence) {
            return Err(Error::Invalid(
                "trun samples with different sets of fields".into(),
            ));
        }
        let mut flags = presence;
        if self.data_offset.is_some() {
            flags |= TRUN_DATA_OFFSET;
        }
        if self.first_sample_flags.is_some() {
            flags |= TRUN_FIRST_SAMPLE_FLAGS;
        }
        put_version_flags(buf, 1, flags);
        put_count(buf, self.samples.len(), "trun sample count")?;
        if let Some(o) = self.data_offset {
            buf.extend_from_slice(&o.to_be_bytes());
        }
        if let Some(f) = self.first_sample_flags {
            put_u32(buf, f);
        }
        for s in &self.samples {
            for v in [s.duration, s.size, s.flags].into_iter().flatten() {
                put_u32(buf, v);
            }
            if let Some(c) = s.composition_offset {
                buf.extend_from_slice(&c.to_be_bytes());
            }
        }
        Ok(())
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (v, flags) = r.version_flags()?;
        check_version(Self::TYPE, v, 1)?;
        let per_sample = [
            TRUN_SAMPLE_DURATION,
            TRUN_SAMPLE_SIZE,
            TRUN_SAMPLE_FLAGS,
            TRUN_SAMPLE_COMPOSITION_OFFSET,
        ]
        .iter()
        .filter(|&&f| flags & f != 0)
        .count();
        // The optional header fields sit between the count and the entries,
        // so check the count against the rest minus those.
        let count = r.u32()?;
        let data_offset = if flags & TRUN_DATA_OFFSET != 0 {
            Some(r.i32()?)
        } else {
            None
        };
        let first_sample_flags = if flags & TRUN_FIRST_SAMPLE_FLAGS != 0 {
            Some(r.u32()?)
        } else {
            None
        };
        let fits = match per_sample {
            0 => count <= MAX_FIELDLESS_TRUN_SAMPLES,
            n => u64::from(count) * 4 * n as u64 <= r.remaining() as u64,
        };
        if !fits {
            return Err(Error::TooManyEntries {
                fourcc: Self::TYPE,
                count: u64::from(count),
            });
        }
        let count = usize::try_from(count).map_err(|_| Error::Overflow("trun sample count"))?;
        let mut samples = Vec::with_capacity(count);
        let field = |r: &mut Reader<'_>, f: u32| -> Result<Option<u32>> {
            if flags & f != 0 {
                r.u32().map(Some)
            } else {
                Ok(None)
            }
        };
        for _ in 0..count {
            let duration = field(r, TRUN_SAMPLE_DURATION)?;
            let size = field(r, TRUN_SAMPLE_SIZE)?;
            let sample_flags = field(r, TRUN_SAMPLE_FLAGS)?;
            let composition_offset = match field(r, TRUN_SAMPLE_COMPOSITION_OFFSET)? {
                None => None,
                Some(raw) if v == 1 => Some(raw as i32),
                Some(raw) => Some(i32::try_from(raw).map_err(|_| {
                    Error::Unsupported(format!("trun v0 composition offset {raw}"))
                })?),
            };
            samples.push(TrunSample {
                duration,
                size,
                flags: sample_flags,
                composition_offset,
            });
        }
        Ok(Trun {
            data_offset,
            first_sample_flags,
            samples,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trun() -> Trun {
        Trun {
            data_offset: Some(120),
            first_sample_flags: None,
            samples: vec![
                TrunSample {
                    duration: Some(3600),
                    size: Some(1000),
                    flags: Some(0x0200_0000),
                    composition_offset: Some(7200),
                },
                TrunSample {
                    duration: Some(3600),
                    size: Some(20),
                    flags: Some(0x0101_0000),
                    composition_offset: Some(-3600),
                },
            ],
        }
    }

    #[test]
    fn trun_round_trips_with_signed_offsets() {
        let t = trun();
        let b = t.to_bytes().unwrap();
        assert_eq!(b.len(), 8 + 4 + 4 + 4 + 2 * 16);
        assert_eq!(b[8], 1, "version 1");
        assert_eq!(&b[9..12], &[0, 0x0f, 0x01]);
        assert_eq!(Trun::decode(&b).unwrap(), t);
        let sparse = Trun {
            data_offset: None,
            first_sample_flags: Some(0x0200_0000),
            samples: vec![
                TrunSample {
                    size: Some(5),
                    ..TrunSample::default()
                };
                3
            ],
        };
        assert_eq!(Trun::decode(&sparse.to_bytes().unwrap()).unwrap(), sparse);
        let mut mixed = trun();
        mixed.samples[1].composition_offset = None;
        assert!(mixed.to_bytes().is_err());
    }

    #[test]
    fn trun_bounds_its_count() {
        let mut b = trun().to_bytes().unwrap();
        b[15] = 200; // 200 samples of 16 bytes in a 32-byte table
        assert!(matches!(
            Trun::decode(&b),
            Err(Error::TooManyEntries { count: 200, .. })
        ));
        let empty = Trun {
            samples: vec![TrunSample::default(); 3],
            ..Trun::default()
        };
        let mut b = empty.to_bytes().unwrap();
        assert_eq!(Trun::decode(&b).unwrap(), empty);
        b[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Trun::decode(&b),
            Err(Error::TooManyEntries { .. })
        ));
    }

    #[test]
    fn tfhd_tfdt_mfhd_round_trip() {
        let t = Tfhd {
            track_id: 1,
            default_base_is_moof: true,
            ..Tfhd::default()
        };
        let b = t.to_bytes().unwrap();
        assert_eq!(b.len(), 16);
        assert_eq!(&b[9..12], &[2, 0, 0]);
        assert_eq!(Tfhd::decode(&b).unwrap(), t);
        let full = Tfhd {
            track_id: 2,
            base_data_offset: Some(1 << 33),
            sample_description_index: Some(1),
            default_sample_duration: Some(1024),
            default_sample_size: Some(300),
            default_sample_flags: Some(0x0200_0000),
            duration_is_empty: true,
            default_base_is_moof: false,
        };
        assert_eq!(Tfhd::decode(&full.to_bytes().unwrap()).unwrap(), full);
        let d = Tfdt {
            base_media_decode_time: 1 << 40,
        };
        let b = d.to_bytes().unwrap();
        assert_eq!(b.len(), 20);
        assert_eq!(Tfdt::decode(&b).unwrap(), d);
        // Version 0 reads too.
        let v0 = [0, 0, 0, 16, b't', b'f', b'd', b't', 0, 0, 0, 0, 0, 0, 1, 0];
        assert_eq!(Tfdt::decode(&v0).unwrap().base_media_decode_time, 256);
        let m = Mfhd { sequence_number: 9 };
        assert_eq!(Mfhd::decode(&m.to_bytes().unwrap()).unwrap(), m);
    }

    #[test]
    fn moof_round_trips() {
        let m = Moof {
            mfhd: Mfhd { sequence_number: 3 },
            trafs: vec![Traf {
                tfhd: Tfhd {
                    track_id: 1,
                    default_base_is_moof: true,
                    ..Tfhd::default()
                },
                tfdt: Some(Tfdt {
                    base_media_decode_time: 180_000,
                }),
                truns: vec![trun()],
            }],
        };
        assert_eq!(Moof::decode(&m.to_bytes().unwrap()).unwrap(), m);
    }
}
