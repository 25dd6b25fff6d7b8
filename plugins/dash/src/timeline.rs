//! A track's fragments as the view holds them, and the media-time
//! arithmetic and time formats the MPD needs. Every number derives from
//! media time, never from a counter or a clock.
//!
//! ```text
//!  view.fragments (paged, SDK) ─▶ Vec<Fragment> ─▶ runs() (SDK) ─▶ <S t d r>
//!  epoch_ms + media ms ─▶ date_time() ─▶ 2024-03-01T00:16:40Z
//!  ms ─▶ duration() ─▶ PT12.5S
//! ```

use sluice_sdk::packaging::{self, fragment_index, most_common_duration};
use sluice_sdk::plugin::{Fragment, SampleEntry, TrackInfo, View};
use sluice_sdk::time::mul_div_floor;

pub use sluice_sdk::packaging::runs;

use crate::Error;

/// Fragments read per track at most (bounded work on any view).
const MAX_FRAGMENTS: usize = 1 << 16;

/// Every fragment of `track` the view holds, oldest first.
pub fn fragments(view: &dyn View, track: u32) -> Vec<Fragment> {
    packaging::fragments_at_most(view, track, MAX_FRAGMENTS)
}

/// Ticks of `track` as milliseconds, rounded down.
pub fn ticks_to_ms(ticks: u64, track: &TrackInfo) -> Result<u64, Error> {
    Ok(packaging::ticks_to_ms(ticks, track.timescale.max(1))?)
}

/// Milliseconds as ticks of `track`, rounded down.
pub fn ms_to_ticks(ms: u64, track: &TrackInfo) -> Result<u64, Error> {
    Ok(mul_div_floor(ms, u64::from(track.timescale), 1000)?)
}

/// The media-time index of a fragment, `round(start_ms / fragment_ms)`:
/// its `mfhd` sequence number.
pub fn sequence_number(start: u64, track: &TrackInfo, fragment_ms: u32) -> Result<u64, Error> {
    Ok(fragment_index(start, track.timescale.max(1), fragment_ms)?)
}

/// Frame rate as a DASH `FrameRate` (`25`, `30000/1001`-like `29970/1000`)
/// from the most common sample duration; `None` without samples.
pub fn frame_rate(samples: &[SampleEntry], track: &TrackInfo) -> Option<String> {
    let duration = most_common_duration(samples)?;
    let ts = track.timescale;
    if ts.is_multiple_of(duration) {
        Some((ts / duration).to_string())
    } else {
        Some(format!("{ts}/{duration}"))
    }
}

/// Unix milliseconds as `xs:dateTime` in UTC (milliseconds only when not
/// zero).
pub fn date_time(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let ms = unix_ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (sod / 3600, sod / 60 % 60, sod % 60);
    let frac = if ms == 0 {
        String::new()
    } else {
        format!(".{ms:03}")
    };
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}{frac}Z")
}

/// Milliseconds as `xs:duration` (`PT120S`, `PT1.5S`).
pub fn duration(ms: u64) -> String {
    let (s, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        format!("PT{s}S")
    } else {
        let f = format!("{frac:03}");
        format!("PT{s}.{}S", f.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times() {
        assert_eq!(date_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(date_time(1_709_251_200_000), "2024-03-01T00:00:00Z");
        assert_eq!(
            date_time(1_709_251_200_000 + 1_000_500),
            "2024-03-01T00:16:40.500Z"
        );
        assert_eq!(date_time(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(date_time(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(duration(120_000), "PT120S");
        assert_eq!(duration(1_500), "PT1.5S");
        assert_eq!(duration(1_024), "PT1.024S");
        assert_eq!(duration(0), "PT0S");
    }

    #[test]
    fn frame_rates() {
        let s = |duration| SampleEntry {
            duration,
            size: 1,
            composition_offset: 0,
            keyframe: false,
        };
        let v = TrackInfo::new(1, sluice_sdk::plugin::TrackKind::Video, 90_000);
        assert_eq!(frame_rate(&[s(3600); 5], &v).as_deref(), Some("25"));
        assert_eq!(frame_rate(&[s(3003); 5], &v).as_deref(), Some("90000/3003"));
        assert_eq!(frame_rate(&[], &v), None);
    }
}
