//! The movie fragment box: where each sample's bytes are and what its
//! timing is, resolved against the `tfhd` and `trex` defaults.
//!
//! ```text
//!   moof ─┬─ mfhd (sequence number)
//!         └─ traf* ─┬─ tfhd (track, base-data-offset | default-base-is-moof, defaults)
//!                   ├─ tfdt (base decode time)          ┐ either gives the
//!                   ├─ uuid tfxd (Smooth absolute time) ┘ fragment's start
//!                   └─ trun* (data offset, first-sample flags, per-sample fields)
//! ```
//!
//! Data offsets are resolved to stream offsets (from the start of the POST
//! body) following ISO/IEC 14496-12 8.8.7 and 8.8.8: a `traf`'s base is its
//! explicit `base_data_offset`, else the start of the `moof` (with
//! default-base-is-moof, or for the first `traf`), else the end of the
//! previous `traf`'s data; a `trun` without a data offset follows the
//! previous `trun`'s data.

use sluice_sdk::bmff::smooth::{self, TFXD};
use sluice_sdk::bmff::{self, BmffBox, BoxRef, FourCC, Mfhd, Tfdt, Tfhd, Tfxd, Trex, Trun};

use crate::error::{Error, Result};

const MOOF: FourCC = FourCC::new(b"moof");

/// `sample_is_non_sync_sample` in sample flags.
const FLAG_NON_SYNC: u32 = 0x0001_0000;

/// One `moof`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    /// `mfhd` sequence number (0 when the `mfhd` is missing).
    pub sequence_number: u32,
    /// One per `traf`, in order.
    pub runs: Vec<TrackRun>,
}

impl Fragment {
    /// Total number of samples.
    pub fn sample_count(&self) -> usize {
        self.runs.iter().map(|r| r.samples.len()).sum()
    }
}

/// Where a fragment's start time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSource {
    /// `tfdt` base media decode time.
    Tfdt,
    /// Smooth's `tfxd` fragment absolute time.
    Tfxd,
}

/// The samples of one `traf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackRun {
    /// The track.
    pub track_id: u32,
    /// Decode time of the first sample in the track's media timescale
    /// (`tfdt`, else `tfxd`), read as a two's-complement signed value:
    /// encoders write a negative start (audio priming) that way.
    pub start: Option<(i64, TimeSource)>,
    /// The samples of all `trun`s, in order.
    pub samples: Vec<SampleRef>,
}

/// One sample, with every default applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleRef {
    /// Stream offset of its first byte.
    pub offset: u64,
    /// Size in bytes.
    pub size: u32,
    /// Duration in ticks of the media timescale.
    pub duration: u32,
    /// Presentation minus decode time, in ticks.
    pub composition_offset: i32,
    /// ISO BMFF sample flags.
    pub flags: u32,
}

impl SampleRef {
    /// Whether the flags mark a sync sample (random access point): not
    /// `sample_is_non_sync_sample` and not `sample_depends_on` = 1 (depends
    /// on others), as ffmpeg's demuxer reads them. An I picture
    /// (`depends_on` = 2) is a sync sample unless flagged non-sync.
    pub fn is_sync(&self) -> bool {
        let depends_on = (self.flags >> 24) & 0x3;
        self.flags & FLAG_NON_SYNC == 0 && depends_on != 1
    }
}

/// Reads a `moof` that starts at stream offset `moof_offset`. `trex`
/// gives a track's defaults (`None` for a track the `moov` does not
/// declare: zero defaults). At most `max_samples` samples in all.
pub fn read_moof(
    moof: &BoxRef<'_>,
    moof_offset: u64,
    trex: &dyn Fn(u32) -> Option<Trex>,
    max_samples: usize,
) -> Result<Fragment> {
    let bad = |e| Error::bmff(MOOF, e);
    let mut sequence_number = None;
    let mut runs = Vec::new();
    let mut total = 0usize;
    // End of the previous traf's data, the base of a traf with neither
    // base-data-offset nor default-base-is-moof (the moof for the first).
    let mut previous_end = moof_offset;
    for child in moof.children() {
        let child = child.map_err(bad)?;
        match &child.fourcc().0 {
            b"mfhd" => {
                let m = Mfhd::from_box(&child).map_err(bad)?;
                if sequence_number.replace(m.sequence_number).is_some() {
                    return Err(bad(bmff::Error::DuplicateBox(Mfhd::TYPE)));
                }
            }
            b"traf" => {
                let (run, end) = read_traf(&child, moof_offset, previous_end, trex)?;
                total += run.samples.len();
                if total > max_samples {
                    return Err(Error::Limit(format!(
                        "moof with more than {max_samples} samples"
                    )));
                }
                previous_end = end;
                runs.push(run);
            }
            _ => {}
        }
    }
    Ok(Fragment {
        sequence_number: sequence_number.unwrap_or(0),
        runs,
    })
}

/// Reads a `traf`; returns it and the stream offset where its data ends.
fn read_traf(
    traf: &BoxRef<'_>,
    moof_offset: u64,
    previous_end: u64,
    trex: &dyn Fn(u32) -> Option<Trex>,
) -> Result<(TrackRun, u64)> {
    let bad = |e| Error::bmff(MOOF, e);
    let (mut tfhd, mut tfdt, mut tfxd, mut truns) = (None, None, None, Vec::new());
    for child in traf.children() {
        let child = child.map_err(bad)?;
        let once = |slot: bool, t: FourCC| {
            if slot {
                Err(bad(bmff::Error::DuplicateBox(t)))
            } else {
                Ok(())
            }
        };
        match &child.fourcc().0 {
            b"tfhd" => {
                once(tfhd.is_some(), Tfhd::TYPE)?;
                tfhd = Some(Tfhd::from_box(&child).map_err(bad)?);
            }
            b"tfdt" => {
                once(tfdt.is_some(), Tfdt::TYPE)?;
                tfdt = Some(Tfdt::from_box(&child).map_err(bad)?);
            }
            b"trun" => truns.push(Trun::from_box(&child).map_err(bad)?),
            b"uuid" if smooth::is_uuid(&child, &TFXD) => {
                once(tfxd.is_some(), smooth::UUID)?;
                tfxd = Some(Tfxd::from_box(&child).map_err(bad)?);
            }
            _ => {}
        }
    }
    let tfhd = tfhd.ok_or(bad(bmff::Error::MissingBox(Tfhd::TYPE)))?;
    let defaults = trex(tfhd.track_id).unwrap_or_default();
    // Two's complement: a start before zero is written as a huge u64.
    let start = match (tfdt, tfxd) {
        (Some(t), _) => Some((t.base_media_decode_time as i64, TimeSource::Tfdt)),
        (None, Some(x)) => Some((x.fragment_absolute_time as i64, TimeSource::Tfxd)),
        (None, None) => None,
    };
    let base = match tfhd.base_data_offset {
        Some(b) => b,
        None if tfhd.default_base_is_moof => moof_offset,
        None => previous_end,
    };
    let duration = tfhd
        .default_sample_duration
        .unwrap_or(defaults.default_sample_duration);
    let size = tfhd
        .default_sample_size
        .unwrap_or(defaults.default_sample_size);
    let flags = tfhd
        .default_sample_flags
        .unwrap_or(defaults.default_sample_flags);
    let mut samples = Vec::new();
    let mut pos = base;
    // duration-is-empty: the fragment has no samples, whatever runs say.
    if tfhd.duration_is_empty {
        truns.clear();
    }
    for trun in &truns {
        if let Some(off) = trun.data_offset {
            pos = base.checked_add_signed(i64::from(off)).ok_or_else(|| {
                Error::Overflow(format!(
                    "track {}: data offset {off} from base {base}",
                    tfhd.track_id
                ))
            })?;
        }
        samples.reserve(trun.samples.len());
        for (i, s) in trun.samples.iter().enumerate() {
            let sample_size = s.size.unwrap_or(size);
            let sample_flags = match (i, trun.first_sample_flags) {
                (0, Some(f)) => f,
                _ => s.flags.unwrap_or(flags),
            };
            samples.push(SampleRef {
                offset: pos,
                size: sample_size,
                duration: s.duration.unwrap_or(duration),
                composition_offset: s.composition_offset.unwrap_or(0),
                flags: sample_flags,
            });
            pos = pos.checked_add(u64::from(sample_size)).ok_or_else(|| {
                Error::Overflow(format!("track {}: sample data offset", tfhd.track_id))
            })?;
        }
    }
    Ok((
        TrackRun {
            track_id: tfhd.track_id,
            start,
            samples,
        },
        pos,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::bmff::{Reader, TrunSample};

    fn sample(size: u32) -> TrunSample {
        TrunSample {
            size: Some(size),
            ..TrunSample::default()
        }
    }

    fn moof_with(trafs: &[Vec<u8>]) -> Vec<u8> {
        let mut b = Vec::new();
        bmff::write_box(&mut b, MOOF, |b| {
            Mfhd { sequence_number: 5 }.encode(b)?;
            for t in trafs {
                b.extend_from_slice(t);
            }
            Ok(())
        })
        .unwrap();
        b
    }

    fn traf(tfhd: Tfhd, extra: &[Vec<u8>], truns: &[Trun]) -> Vec<u8> {
        let mut b = Vec::new();
        bmff::write_box(&mut b, FourCC::new(b"traf"), |b| {
            tfhd.encode(b)?;
            for e in extra {
                b.extend_from_slice(e);
            }
            for t in truns {
                t.encode(b)?;
            }
            Ok(())
        })
        .unwrap();
        b
    }

    fn read(bytes: &[u8], at: u64, trex: Option<Trex>) -> Result<Fragment> {
        let b = Reader::new(bytes).next_box().unwrap().unwrap();
        read_moof(&b, at, &|_| trex, 1000)
    }

    #[test]
    fn base_offsets_follow_the_spec() {
        let run = |data_offset, n| Trun {
            data_offset,
            first_sample_flags: None,
            samples: vec![sample(10); n],
        };
        // First traf, no flags: base = moof; second, no flags: base = end
        // of the first traf's data; third: explicit base.
        let t1 = traf(
            Tfhd {
                track_id: 1,
                ..Tfhd::default()
            },
            &[],
            &[run(Some(100), 2), run(None, 1)],
        );
        let t2 = traf(
            Tfhd {
                track_id: 2,
                ..Tfhd::default()
            },
            &[],
            &[run(None, 1)],
        );
        let t3 = traf(
            Tfhd {
                track_id: 3,
                base_data_offset: Some(5000),
                ..Tfhd::default()
            },
            &[],
            &[run(Some(-8), 1)],
        );
        let t4 = traf(
            Tfhd {
                track_id: 4,
                default_base_is_moof: true,
                ..Tfhd::default()
            },
            &[],
            &[run(Some(7), 1)],
        );
        let f = read(&moof_with(&[t1, t2, t3, t4]), 1000, None).unwrap();
        assert_eq!(f.sequence_number, 5);
        let offsets: Vec<Vec<u64>> = f
            .runs
            .iter()
            .map(|r| r.samples.iter().map(|s| s.offset).collect())
            .collect();
        assert_eq!(
            offsets,
            vec![vec![1100, 1110, 1120], vec![1130], vec![4992], vec![1007]]
        );
    }

    #[test]
    fn defaults_come_from_trun_then_tfhd_then_trex() {
        let trex = Trex {
            track_id: 1,
            default_sample_description_index: 1,
            default_sample_duration: 1024,
            default_sample_size: 9,
            default_sample_flags: 0x0101_0000,
        };
        let t = traf(
            Tfhd {
                track_id: 1,
                default_sample_size: Some(4),
                ..Tfhd::default()
            },
            &[],
            &[
                Trun {
                    data_offset: Some(0),
                    first_sample_flags: Some(0x0200_0000),
                    samples: vec![TrunSample {
                        duration: Some(1),
                        ..TrunSample::default()
                    }],
                },
                Trun {
                    data_offset: None,
                    first_sample_flags: None,
                    samples: vec![TrunSample::default()],
                },
            ],
        );
        let f = read(&moof_with(&[t]), 0, Some(trex)).unwrap();
        let s = &f.runs[0].samples;
        assert_eq!((s[0].duration, s[0].size, s[0].flags), (1, 4, 0x0200_0000));
        assert!(s[0].is_sync());
        assert_eq!(
            (s[1].offset, s[1].duration, s[1].size, s[1].flags),
            (4, 1024, 4, 0x0101_0000)
        );
        assert!(!s[1].is_sync());
        assert_eq!(f.runs[0].start, None);
    }

    #[test]
    fn start_times_from_tfdt_or_tfxd() {
        let mut tfxd = Vec::new();
        Tfxd {
            fragment_absolute_time: (-213_333i64) as u64,
            fragment_duration: 20_000_000,
        }
        .encode(&mut tfxd)
        .unwrap();
        let tfdt = Tfdt {
            base_media_decode_time: 42,
        }
        .to_bytes()
        .unwrap();
        let tfhd = Tfhd {
            track_id: 1,
            ..Tfhd::default()
        };
        let only_tfxd = traf(tfhd, std::slice::from_ref(&tfxd), &[]);
        let both = traf(tfhd, &[tfxd.clone(), tfdt.clone()], &[]);
        let f = read(&moof_with(&[only_tfxd, both]), 0, None).unwrap();
        assert_eq!(f.runs[0].start, Some((-213_333, TimeSource::Tfxd)));
        assert_eq!(f.runs[1].start, Some((42, TimeSource::Tfdt)));
        // Twice is an error.
        let twice = traf(tfhd, &[tfdt.clone(), tfdt], &[]);
        assert!(read(&moof_with(&[twice]), 0, None).is_err());
    }

    #[test]
    fn sample_count_is_bounded_and_offsets_checked() {
        let t = traf(
            Tfhd {
                track_id: 1,
                ..Tfhd::default()
            },
            &[],
            &[Trun {
                data_offset: Some(0),
                first_sample_flags: None,
                samples: vec![TrunSample::default(); 1001],
            }],
        );
        assert!(matches!(
            read(&moof_with(&[t]), 0, None),
            Err(Error::Limit(_))
        ));
        let t = traf(
            Tfhd {
                track_id: 1,
                ..Tfhd::default()
            },
            &[],
            &[Trun {
                data_offset: Some(-10),
                first_sample_flags: None,
                samples: vec![sample(1)],
            }],
        );
        assert!(matches!(
            read(&moof_with(&[t]), 0, None),
            Err(Error::Overflow(_))
        ));
        let no_tfhd = traf(Tfhd::default(), &[], &[]);
        let mut broken = moof_with(&[no_tfhd]);
        // Rename the tfhd so the traf has none.
        let at = broken.windows(4).position(|w| w == b"tfhd").unwrap();
        broken[at..at + 4].copy_from_slice(b"xxxx");
        assert!(matches!(read(&broken, 0, None), Err(Error::Box { .. })));
    }
}
