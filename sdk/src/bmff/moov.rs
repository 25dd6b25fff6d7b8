//! The movie box and its direct children: `moov` (ISO/IEC 14496-12
//! 8.2.1), `mvhd` (8.2.2), `mvex` (8.8.1), `trex` (8.8.3). Tracks are in
//! [`trak`](super::trak).

use super::fields::{UNITY_MATRIX, check_version, get_time, once, put_time, version_for};
use super::trak::Trak;
use super::writer::{put_u16, put_u32, put_version_flags};
use super::{BmffBox, Error, FourCC, Reader, Result};

/// `moov`: the presentation's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moov {
    /// Movie header.
    pub mvhd: Mvhd,
    /// One per track.
    pub traks: Vec<Trak>,
    /// Present in fragmented files.
    pub mvex: Option<Mvex>,
}

impl BmffBox for Moov {
    const TYPE: FourCC = FourCC::new(b"moov");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        self.mvhd.encode(buf)?;
        for t in &self.traks {
            t.encode(buf)?;
        }
        if let Some(m) = &self.mvex {
            m.encode(buf)?;
        }
        Ok(())
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (mut mvhd, mut traks, mut mvex) = (None, Vec::new(), None);
        for b in r.children() {
            let b = b?;
            match &b.fourcc().0 {
                b"mvhd" => once(&mut mvhd, Mvhd::from_box(&b)?, b.fourcc())?,
                b"trak" => traks.push(Trak::from_box(&b)?),
                b"mvex" => once(&mut mvex, Mvex::from_box(&b)?, b.fourcc())?,
                _ => {}
            }
        }
        Ok(Moov {
            mvhd: mvhd.ok_or(Error::MissingBox(Mvhd::TYPE))?,
            traks,
            mvex,
        })
    }
}

/// `mvhd`: movie-wide timing. Rate, volume and matrix are written as
/// their defaults (1.0, 1.0, unity) and not kept when read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mvhd {
    /// Seconds since 1904-01-01 UTC (0 keeps output deterministic).
    pub creation_time: u64,
    /// Seconds since 1904-01-01 UTC.
    pub modification_time: u64,
    /// Ticks per second of `duration`.
    pub timescale: u32,
    /// Duration of the longest track (0 for fragmented files).
    pub duration: u64,
    /// A track id greater than every id in use.
    pub next_track_id: u32,
}

impl BmffBox for Mvhd {
    const TYPE: FourCC = FourCC::new(b"mvhd");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        let v = version_for(&[self.creation_time, self.modification_time, self.duration]);
        put_version_flags(buf, v, 0);
        put_time(buf, v, self.creation_time);
        put_time(buf, v, self.modification_time);
        put_u32(buf, self.timescale);
        put_time(buf, v, self.duration);
        put_u32(buf, 0x0001_0000); // rate 1.0
        put_u16(buf, 0x0100); // volume 1.0
        buf.extend_from_slice(&[0; 10]); // reserved
        for m in UNITY_MATRIX {
            put_u32(buf, m);
        }
        buf.extend_from_slice(&[0; 24]); // pre_defined
        put_u32(buf, self.next_track_id);
        Ok(())
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (v, _) = r.version_flags()?;
        check_version(Self::TYPE, v, 1)?;
        let creation_time = get_time(r, v)?;
        let modification_time = get_time(r, v)?;
        let timescale = r.u32()?;
        let duration = get_time(r, v)?;
        r.skip(4 + 2 + 10 + 36 + 24)?;
        let next_track_id = r.u32()?;
        Ok(Mvhd {
            creation_time,
            modification_time,
            timescale,
            duration,
            next_track_id,
        })
    }
}

/// `mvex`: the file is fragmented; defaults for the fragments.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mvex {
    /// One per track.
    pub trex: Vec<Trex>,
}

impl BmffBox for Mvex {
    const TYPE: FourCC = FourCC::new(b"mvex");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        for t in &self.trex {
            t.encode(buf)?;
        }
        Ok(())
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let mut trex = Vec::new();
        for b in r.children() {
            let b = b?;
            if b.fourcc() == Trex::TYPE {
                trex.push(Trex::from_box(&b)?);
            }
        }
        Ok(Mvex { trex })
    }
}

/// `trex`: per-track defaults for track fragments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trex {
    /// The track.
    pub track_id: u32,
    /// Default sample description (1-based index into `stsd`).
    pub default_sample_description_index: u32,
    /// Default sample duration in ticks.
    pub default_sample_duration: u32,
    /// Default sample size in bytes.
    pub default_sample_size: u32,
    /// Default sample flags.
    pub default_sample_flags: u32,
}

impl BmffBox for Trex {
    const TYPE: FourCC = FourCC::new(b"trex");

    fn encode_body(&self, buf: &mut Vec<u8>) -> Result<()> {
        put_version_flags(buf, 0, 0);
        put_u32(buf, self.track_id);
        put_u32(buf, self.default_sample_description_index);
        put_u32(buf, self.default_sample_duration);
        put_u32(buf, self.default_sample_size);
        put_u32(buf, self.default_sample_flags);
        Ok(())
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self> {
        let (v, _) = r.version_flags()?;
        check_version(Self::TYPE, v, 0)?;
        Ok(Trex {
            track_id: r.u32()?,
            default_sample_description_index: r.u32()?,
            default_sample_duration: r.u32()?,
            default_sample_size: r.u32()?,
            default_sample_flags: r.u32()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mvhd_round_trips_in_both_versions() {
        let m = Mvhd {
            creation_time: 0,
            modification_time: 0,
            timescale: 1000,
            duration: 0,
            next_track_id: 2,
        };
        let b = m.to_bytes().unwrap();
        assert_eq!(b.len(), 108);
        assert_eq!(b[8], 0);
        assert_eq!(Mvhd::decode(&b).unwrap(), m);
        let m = Mvhd {
            duration: 1 << 40,
            ..m
        };
        let b = m.to_bytes().unwrap();
        assert_eq!(b.len(), 120);
        assert_eq!(b[8], 1);
        assert_eq!(Mvhd::decode(&b).unwrap(), m);
    }

    #[test]
    fn mvex_trex_round_trip() {
        let m = Mvex {
            trex: vec![
                Trex {
                    track_id: 1,
                    default_sample_description_index: 1,
                    ..Trex::default()
                },
                Trex {
                    track_id: 2,
                    default_sample_description_index: 1,
                    default_sample_duration: 1024,
                    default_sample_size: 7,
                    default_sample_flags: 0x0200_0000,
                },
            ],
        };
        let b = m.to_bytes().unwrap();
        assert_eq!(b.len(), 8 + 2 * 32);
        assert_eq!(Mvex::decode(&b).unwrap(), m);
    }

    #[test]
    fn moov_needs_mvhd_once() {
        let mut b = Vec::new();
        super::super::write_box(&mut b, Moov::TYPE, |_| Ok(())).unwrap();
        assert_eq!(Moov::decode(&b), Err(Error::MissingBox(Mvhd::TYPE)));
        let mvhd = Mvhd::default().to_bytes().unwrap();
        let mut b = Vec::new();
        super::super::write_box(&mut b, Moov::TYPE, |b| {
            b.extend_from_slice(&mvhd);
            b.extend_from_slice(&mvhd);
            Ok(())
        })
        .unwrap();
        assert_eq!(Moov::decode(&b), Err(Error::DuplicateBox(Mvhd::TYPE)));
    }
}
