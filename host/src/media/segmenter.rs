//! Cuts one track's samples into fragments on a media-time grid.
//!
//! Boundaries sit at multiples of the channel's fragment duration on the
//! media timeline. A fragment starts at the first random access point at or
//! after a boundary (video: a keyframe no earlier than a quarter of the grid
//! before it, which absorbs millisecond rounding of encoder timestamps;
//! audio: the first frame at or after it). Decisions depend on timestamps
//! only, so two encoders sending identical timestamps cut identically.
//!
//! A sample's duration is the distance to the next sample (or what the
//! adapter declared), so a fragment is complete when the first sample of the
//! next one arrives.

use bytes::{Bytes, BytesMut};
use sluice_sdk::plugin::{SampleEntry, TrackKind};
use sluice_sdk::time::{mul_div_floor, mul_div_round};

/// A sample entering the segmenter, on the media timeline.
#[derive(Debug)]
pub struct InputSample {
    /// Decode time in track ticks (media time, non-negative).
    pub dts: u64,
    /// Presentation minus decode time.
    pub composition_offset: i32,
    /// Declared duration (0: derive from the next sample).
    pub duration: u32,
    /// Random access point.
    pub keyframe: bool,
    /// Payload.
    pub data: Vec<u8>,
}

/// A finished fragment: immutable, shared.
#[derive(Debug)]
pub struct Fragment {
    /// Decode time of the first sample (its name).
    pub start: u64,
    /// Duration in ticks.
    pub duration: u64,
    /// Sample table.
    pub samples: Vec<SampleEntry>,
    /// Payload: every sample's bytes in decode order.
    pub data: Bytes,
    /// A discontinuity precedes this fragment.
    pub discontinuity: bool,
}

impl Fragment {
    /// `length` payload bytes from `offset`, by reference, if in range.
    pub fn payload(&self, offset: u32, length: u32) -> Option<Bytes> {
        let from = usize::try_from(offset).ok()?;
        let to = from.checked_add(usize::try_from(length).ok()?)?;
        (to <= self.data.len()).then(|| self.data.slice(from..to))
    }
}

/// Errors of the segmenter (they end the ingest session).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// A fragment grew past the byte limit without a cut point.
    #[error("fragment exceeds {0} bytes without a keyframe")]
    TooLarge(usize),
}

/// Cuts one track.
#[derive(Debug)]
pub struct Segmenter {
    grid: u64,
    tolerance: u64,
    video: bool,
    max_bytes: usize,
    current: Option<Building>,
    /// The last sample appended, waiting for its successor to fix its duration.
    last: Option<InputSample>,
    next_boundary: u64,
    pending_discontinuity: bool,
    typical_duration: u32,
    /// Bytes and samples of the last fragment closed: the next one's
    /// buffers are sized from them, so a fragment is built without
    /// regrowing (and recopying) its payload.
    last_size: (usize, usize),
}

#[derive(Debug)]
struct Building {
    start: u64,
    samples: Vec<SampleEntry>,
    data: BytesMut,
    discontinuity: bool,
}

impl Segmenter {
    /// A segmenter for a track of `kind` in `timescale`, cutting on a grid of
    /// `fragment_ms`.
    pub fn new(kind: TrackKind, timescale: u32, fragment_ms: u32, max_bytes: usize) -> Self {
        let grid = mul_div_round(u64::from(fragment_ms), u64::from(timescale), 1000)
            .unwrap_or(u64::from(timescale))
            .max(1);
        let video = kind == TrackKind::Video;
        Segmenter {
            grid,
            tolerance: if video { grid / 4 } else { 0 },
            video,
            max_bytes,
            current: None,
            last: None,
            next_boundary: 0,
            pending_discontinuity: false,
            typical_duration: 0,
            last_size: (0, 0),
        }
    }

    /// Grid length in ticks.
    pub fn grid(&self) -> u64 {
        self.grid
    }

    /// The grid slot a media time falls nearest to.
    pub fn slot(&self, t: u64) -> u64 {
        mul_div_round(t, 1, self.grid).unwrap_or(u64::MAX)
    }

    /// Marks the next fragment as following a discontinuity and flushes what
    /// is buffered (returning the finished fragment, if any).
    pub fn discontinuity(&mut self) -> Option<Fragment> {
        let done = self.flush();
        self.pending_discontinuity = true;
        done
    }

    /// Decode time the next sample is expected at, if known.
    pub fn expected_next(&self) -> Option<u64> {
        self.last.as_ref().map(|s| {
            let d = if s.duration > 0 {
                s.duration
            } else {
                self.typical_duration
            };
            s.dts + u64::from(d)
        })
    }

    /// Adds a sample; returns a fragment when this sample starts a new one.
    pub fn push(&mut self, sample: InputSample) -> Result<Option<Fragment>, SegmentError> {
        // Before the first random access point nothing can be cut.
        if self.current.is_none() && self.last.is_none() && self.video && !sample.keyframe {
            return Ok(None);
        }
        let mut finished = None;
        if let Some(mut last) = self.last.take() {
            if last.duration == 0 {
                last.duration = u32::try_from(sample.dts.saturating_sub(last.dts))
                    .unwrap_or(u32::MAX)
                    .max(1);
            }
            self.typical_duration = last.duration;
            self.append(last)?;
        }
        let cut_point = sample.keyframe || !self.video;
        if cut_point
            && (self.current.is_none() || sample.dts + self.tolerance >= self.next_boundary)
        {
            finished = self.close_current();
            let slot = self.slot(sample.dts);
            self.next_boundary = (slot + 1).saturating_mul(self.grid);
            let (bytes, samples) = self.last_size;
            self.current = Some(Building {
                start: sample.dts,
                samples: Vec::with_capacity(samples + samples / 8),
                data: BytesMut::with_capacity((bytes + bytes / 8).min(self.max_bytes)),
                discontinuity: std::mem::take(&mut self.pending_discontinuity),
            });
        }
        self.last = Some(sample);
        Ok(finished)
    }

    /// Ends the track: the last sample gets its declared or typical duration
    /// and the fragment in progress is returned.
    pub fn flush(&mut self) -> Option<Fragment> {
        if let Some(mut last) = self.last.take() {
            if last.duration == 0 {
                last.duration = self.typical_duration.max(1);
            }
            // A size overflow here cannot be reported; the sample is dropped.
            let _ = self.append(last);
        }
        self.close_current()
    }

    fn append(&mut self, sample: InputSample) -> Result<(), SegmentError> {
        let Some(cur) = self.current.as_mut() else {
            return Ok(());
        };
        if cur.data.len() + sample.data.len() > self.max_bytes {
            return Err(SegmentError::TooLarge(self.max_bytes));
        }
        cur.samples.push(SampleEntry {
            duration: sample.duration,
            size: u32::try_from(sample.data.len()).unwrap_or(u32::MAX),
            composition_offset: sample.composition_offset,
            keyframe: sample.keyframe,
        });
        cur.data.extend_from_slice(&sample.data);
        Ok(())
    }

    fn close_current(&mut self) -> Option<Fragment> {
        let cur = self.current.take()?;
        if cur.samples.is_empty() {
            return None;
        }
        self.last_size = (cur.data.len(), cur.samples.len());
        let duration = cur.samples.iter().map(|s| u64::from(s.duration)).sum();
        Some(Fragment {
            start: cur.start,
            duration,
            samples: cur.samples,
            data: cur.data.freeze(),
            discontinuity: cur.discontinuity,
        })
    }
}

/// Converts milliseconds to ticks of `timescale`, rounding down.
pub fn ms_to_ticks(ms: u64, timescale: u32) -> u64 {
    mul_div_floor(ms, u64::from(timescale), 1000).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(dts: u64, key: bool) -> InputSample {
        InputSample {
            dts,
            composition_offset: 0,
            duration: 0,
            keyframe: key,
            data: vec![1, 2, 3],
        }
    }

    #[test]
    fn cuts_on_grid_at_keyframes() {
        // 90 kHz video, 25 fps (3600 ticks), keyframe every second, 2 s grid.
        let mut seg = Segmenter::new(TrackKind::Video, 90_000, 2000, 1 << 20);
        let mut out = Vec::new();
        for i in 0..250u64 {
            if let Some(f) = seg.push(s(i * 3600, i % 25 == 0)).expect("fits") {
                out.push(f);
            }
        }
        out.extend(seg.flush());
        let starts: Vec<u64> = out.iter().map(|f| f.start).collect();
        assert_eq!(starts, vec![0, 180_000, 360_000, 540_000, 720_000]);
        assert!(out.iter().all(|f| f.samples.len() == 50));
        assert!(out.iter().all(|f| f.duration == 180_000));
        assert!(out.iter().all(|f| f.samples[0].keyframe));
        assert_eq!(out[0].data.len(), 150);
    }

    #[test]
    fn early_keyframe_within_tolerance_cuts_and_leading_non_keyframes_drop() {
        let mut seg = Segmenter::new(TrackKind::Video, 1000, 2000, 1 << 20);
        assert!(seg.push(s(0, false)).expect("ok").is_none());
        assert!(seg.push(s(40, true)).expect("ok").is_none());
        assert!(seg.push(s(1000, false)).expect("ok").is_none());
        // 1999 ms: within a quarter grid of the 2000 ms boundary.
        let f = seg.push(s(1999, true)).expect("ok").expect("cut");
        assert_eq!(f.start, 40);
        assert_eq!(f.duration, 1959);
        assert_eq!(seg.slot(1999), 1);
    }

    #[test]
    fn audio_cuts_at_first_frame_past_boundary() {
        let mut seg = Segmenter::new(TrackKind::Audio, 48_000, 2000, 1 << 20);
        let mut starts = Vec::new();
        for i in 0..300u64 {
            let mut x = s(i * 1024, false);
            x.duration = 1024;
            if let Some(f) = seg.push(x).expect("ok") {
                starts.push(f.start);
            }
        }
        // First frames at or after 96000, 192000 and 288000 ticks.
        assert_eq!(starts, vec![0, 96_256, 192_512]);
    }

    #[test]
    fn two_encoders_with_identical_timestamps_cut_identically() {
        // ms timestamps of 30 fps video (33/33/34 ms steps), keyframe every 60.
        let stream: Vec<(u64, bool)> = (0..900u64).map(|i| (i * 1000 / 30, i % 60 == 0)).collect();
        let cut = |from: usize| {
            let mut seg = Segmenter::new(TrackKind::Video, 1000, 2000, 1 << 20);
            let mut starts = Vec::new();
            for &(dts, key) in &stream[from..] {
                if let Some(f) = seg.push(s(dts, key)).expect("fits") {
                    starts.push(f.start);
                }
            }
            starts
        };
        // One encoder joined 7 s late: after its first fragment, every
        // boundary matches the other's.
        let early = cut(0);
        let late = cut(210);
        assert_eq!(&late[1..], &early[early.len() - (late.len() - 1)..]);
        assert_eq!(early[..4], [0, 2000, 4000, 6000]);
    }

    #[test]
    fn oversize_fragment_errors() {
        let mut seg = Segmenter::new(TrackKind::Video, 1000, 2000, 5);
        seg.push(s(0, true)).expect("ok");
        assert!(seg.push(s(40, false)).expect("3 bytes fit").is_none());
        assert_eq!(
            seg.push(s(80, false)).err(),
            Some(SegmentError::TooLarge(5))
        );
    }
}
