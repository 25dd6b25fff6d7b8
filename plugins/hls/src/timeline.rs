//! A track's fragments as the view holds them, and the media-time
//! arithmetic that names them. Every number a playlist or segment carries
//! derives from media time, never from a counter, so every node serving
//! the same fragments says the same thing.

use sluice_sdk::plugin::{Fragment, SampleEntry, TrackInfo, View};
use sluice_sdk::time::{mul_div_floor, mul_div_round};

use crate::Error;

/// Fragments asked of the view per call.
const PAGE: u32 = 512;

/// Every fragment of `track` the view holds, oldest first (the host bounds
/// the window).
pub fn fragments(view: &dyn View, track: u32) -> Vec<Fragment> {
    let mut out: Vec<Fragment> = Vec::new();
    let mut from = 0u64;
    loop {
        let page = view.fragments(track, from, PAGE);
        let full = page.len() >= PAGE as usize;
        // Keep only what moves forward, so a misbehaving view cannot make
        // this loop forever or list a fragment twice.
        out.extend(page.into_iter().filter(|f| f.start >= from));
        let Some(next) = out.last().and_then(|f| f.start.checked_add(1)) else {
            break;
        };
        if !full || next <= from {
            break;
        }
        from = next;
    }
    out
}

/// Ticks of `track` as milliseconds, rounded down.
pub fn ticks_to_ms(ticks: u64, track: &TrackInfo) -> Result<u64, Error> {
    Ok(mul_div_floor(ticks, 1000, u64::from(track.timescale))?)
}

/// Ticks of `track` as milliseconds, rounded to nearest.
pub fn ticks_to_ms_round(ticks: u64, track: &TrackInfo) -> Result<u64, Error> {
    Ok(mul_div_round(ticks, 1000, u64::from(track.timescale))?)
}

/// The media-time index of a fragment: `round(start_ms / fragment_ms)`.
/// It is the HLS media sequence number of the segment and its `mfhd`
/// sequence number.
pub fn sequence_number(start: u64, track: &TrackInfo, fragment_ms: u32) -> Result<u64, Error> {
    let start_ms = ticks_to_ms(start, track)?;
    Ok(mul_div_round(start_ms, 1, u64::from(fragment_ms.max(1)))?)
}

/// `ticks` of `track` in whole seconds, rounded to nearest (halves up):
/// the rounding RFC 8216 applies when it compares `EXTINF` with
/// `EXT-X-TARGETDURATION`.
pub fn round_seconds(ticks: u64, track: &TrackInfo) -> Result<u64, Error> {
    Ok(mul_div_round(ticks, 1, u64::from(track.timescale))?)
}

/// Frame rate in thousandths of a frame per second, from the most common
/// sample duration of a fragment; `None` without samples.
pub fn frame_rate_milli(samples: &[SampleEntry], track: &TrackInfo) -> Option<u64> {
    let mut durations: Vec<u32> = samples
        .iter()
        .map(|s| s.duration)
        .filter(|&d| d > 0)
        .collect();
    durations.sort_unstable();
    // The longest run of equal durations; ties go to the shorter duration.
    let mut best: Option<(usize, u32)> = None;
    for run in durations.chunk_by(|a, b| a == b) {
        if best.is_none_or(|(n, _)| run.len() > n) {
            best = Some((run.len(), run[0]));
        }
    }
    let (_, duration) = best?;
    mul_div_round(u64::from(track.timescale), 1000, u64::from(duration)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::plugin::{PresentationInfo, TrackKind};

    fn track(timescale: u32) -> TrackInfo {
        TrackInfo::new(1, TrackKind::Video, timescale)
    }

    #[test]
    fn sequence_numbers_come_from_media_time() {
        let v = track(90_000);
        assert_eq!(sequence_number(0, &v, 2000).ok(), Some(0));
        assert_eq!(sequence_number(180_000, &v, 2000).ok(), Some(1));
        assert_eq!(sequence_number(90_000_000, &v, 2000).ok(), Some(500));
        // Audio starts jitter around the grid; rounding absorbs it.
        let a = track(48_000);
        assert_eq!(sequence_number(95_232, &a, 2000).ok(), Some(1)); // 1984 ms
        assert_eq!(sequence_number(96_256, &a, 2000).ok(), Some(1)); // 2005 ms
        // A zero grid does not divide by zero.
        assert_eq!(sequence_number(90_000, &v, 0).ok(), Some(1000));
        // Overflow is an error, not a wrap.
        assert!(sequence_number(u64::MAX, &track(1), 2000).is_err());
    }

    #[test]
    fn frame_rates() {
        let s = |duration| SampleEntry {
            duration,
            size: 1,
            composition_offset: 0,
            keyframe: false,
        };
        let v = track(90_000);
        let mut samples = vec![s(3600); 49];
        samples.push(s(1800)); // a short last sample does not matter
        assert_eq!(frame_rate_milli(&samples, &v), Some(25_000));
        assert_eq!(frame_rate_milli(&[s(3003); 10], &v), Some(29_970));
        assert_eq!(frame_rate_milli(&[], &v), None);
        assert_eq!(frame_rate_milli(&[s(0)], &v), None);
    }

    struct Paged(Vec<Fragment>);

    impl View for Paged {
        fn info(&self) -> PresentationInfo {
            PresentationInfo {
                state: sluice_sdk::plugin::PresentationState::Live,
                fragment_duration_ms: 2000,
                epoch_ms: None,
                window_ms: 0,
            }
        }
        fn tracks(&self) -> Vec<TrackInfo> {
            Vec::new()
        }
        fn fragments(&self, _track: u32, from: u64, limit: u32) -> Vec<Fragment> {
            self.0
                .iter()
                .filter(|f| f.start >= from)
                .take(limit as usize)
                .copied()
                .collect()
        }
        fn samples(&self, _: u32, _: u64) -> Option<Vec<SampleEntry>> {
            None
        }
        fn sample_data(&self, _: u32, _: u64, _: u32, _: u32) -> Option<Vec<u8>> {
            None
        }
    }

    #[test]
    fn pages_through_the_whole_window() {
        let all: Vec<Fragment> = (0..(PAGE as u64 * 2 + 7))
            .map(|i| Fragment {
                start: 1000 + i * 10,
                duration: 10,
                sample_count: 1,
                size: 1,
                discontinuity: false,
                discontinuity_sequence: 0,
            })
            .collect();
        let got = fragments(&Paged(all.clone()), 1);
        assert_eq!(got, all);
        assert!(fragments(&Paged(Vec::new()), 1).is_empty());
        // Exactly one page.
        let one: Vec<Fragment> = all[..PAGE as usize].to_vec();
        assert_eq!(fragments(&Paged(one.clone()), 1), one);
    }
}
