//! A track's fragments as the view holds them, and the media-time
//! arithmetic that names them. Every number a playlist or segment carries
//! derives from media time, never from a counter, so every node serving
//! the same fragments says the same thing.

use sluice_sdk::packaging::{self, fragment_index, most_common_duration};
use sluice_sdk::plugin::{SampleEntry, TrackInfo};
use sluice_sdk::time::mul_div_round;

pub use sluice_sdk::packaging::fragments;

use crate::Error;

/// Ticks of `track` as milliseconds, rounded down.
pub fn ticks_to_ms(ticks: u64, track: &TrackInfo) -> Result<u64, Error> {
    Ok(packaging::ticks_to_ms(ticks, track.timescale)?)
}

/// Ticks of `track` as milliseconds, rounded to nearest.
pub fn ticks_to_ms_round(ticks: u64, track: &TrackInfo) -> Result<u64, Error> {
    Ok(packaging::ticks_to_ms_round(ticks, track.timescale)?)
}

/// The media-time index of a fragment: `round(start_ms / fragment_ms)`.
/// It is the HLS media sequence number of the segment and its `mfhd`
/// sequence number.
pub fn sequence_number(start: u64, track: &TrackInfo, fragment_ms: u32) -> Result<u64, Error> {
    Ok(fragment_index(start, track.timescale, fragment_ms)?)
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
    let duration = most_common_duration(samples)?;
    mul_div_round(u64::from(track.timescale), 1000, u64::from(duration)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::plugin::TrackKind;

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
}
