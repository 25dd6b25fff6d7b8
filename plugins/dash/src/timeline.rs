//! A track's fragments as the view holds them, and the media-time
//! arithmetic and time formats the MPD needs. Every number derives from
//! media time, never from a counter or a clock.
//!
//! ```text
//!  view.fragments (paged) ─▶ Vec<Fragment> ─▶ runs() ─▶ <S t d r>
//!  epoch_ms + media ms ─▶ date_time() ─▶ 2024-03-01T00:16:40Z
//!  ms ─▶ duration() ─▶ PT12.5S
//! ```

use sluice_sdk::plugin::{Fragment, SampleEntry, TrackInfo, View};
use sluice_sdk::time::{mul_div_floor, mul_div_round};

use crate::Error;

/// Fragments asked of the view per call.
const PAGE: u32 = 512;
/// Fragments read per track at most (bounded work on any view).
const MAX_FRAGMENTS: usize = 1 << 16;

/// Every fragment of `track` the view holds, oldest first.
pub fn fragments(view: &dyn View, track: u32) -> Vec<Fragment> {
    let mut out: Vec<Fragment> = Vec::new();
    let mut from = 0u64;
    loop {
        let page = view.fragments(track, from, PAGE);
        let full = page.len() >= PAGE as usize;
        // Only what moves forward: a misbehaving view cannot loop this.
        out.extend(page.into_iter().filter(|f| f.start >= from));
        let Some(next) = out.last().and_then(|f| f.start.checked_add(1)) else {
            break;
        };
        if !full || next <= from || out.len() >= MAX_FRAGMENTS {
            break;
        }
        from = next;
    }
    out
}

/// Ticks of `track` as milliseconds, rounded down.
pub fn ticks_to_ms(ticks: u64, track: &TrackInfo) -> Result<u64, Error> {
    Ok(mul_div_floor(
        ticks,
        1000,
        u64::from(track.timescale.max(1)),
    )?)
}

/// Milliseconds as ticks of `track`, rounded down.
pub fn ms_to_ticks(ms: u64, track: &TrackInfo) -> Result<u64, Error> {
    Ok(mul_div_floor(ms, u64::from(track.timescale), 1000)?)
}

/// The media-time index of a fragment, `round(start_ms / fragment_ms)`:
/// its `mfhd` sequence number.
pub fn sequence_number(start: u64, track: &TrackInfo, fragment_ms: u32) -> Result<u64, Error> {
    let start_ms = ticks_to_ms(start, track)?;
    Ok(mul_div_round(start_ms, 1, u64::from(fragment_ms.max(1)))?)
}

/// One `<S>` element: `t` present when it does not continue the previous
/// run (first entry, gap, or a flagged discontinuity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Explicit start, media time in track ticks.
    pub t: Option<u64>,
    /// Duration of each segment.
    pub d: u64,
    /// Repeats after the first.
    pub r: u64,
}

/// The SegmentTimeline of a list of fragments: equal, contiguous durations
/// compressed into one run with `r`.
pub fn runs(fragments: &[Fragment]) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    let mut end: Option<u64> = None;
    for f in fragments {
        let contiguous = end == Some(f.start);
        match out.last_mut() {
            Some(run) if contiguous && !f.discontinuity && run.d == f.duration => run.r += 1,
            _ => out.push(Run {
                t: (!contiguous || f.discontinuity).then_some(f.start),
                d: f.duration,
                r: 0,
            }),
        }
        end = f.start.checked_add(f.duration);
    }
    out
}

/// Frame rate as a DASH `FrameRate` (`25`, `30000/1001`-like `29970/1000`)
/// from the most common sample duration; `None` without samples.
pub fn frame_rate(samples: &[SampleEntry], track: &TrackInfo) -> Option<String> {
    let mut durations: Vec<u32> = samples
        .iter()
        .map(|s| s.duration)
        .filter(|&d| d > 0)
        .collect();
    durations.sort_unstable();
    let mut best: Option<(usize, u32)> = None;
    for run in durations.chunk_by(|a, b| a == b) {
        if best.is_none_or(|(n, _)| run.len() > n) {
            best = Some((run.len(), run[0]));
        }
    }
    let (_, duration) = best?;
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

    fn f(start: u64, duration: u64, discontinuity: bool) -> Fragment {
        Fragment {
            start,
            duration,
            sample_count: 1,
            size: 1,
            discontinuity,
        }
    }

    #[test]
    fn runs_compress_and_break() {
        let r = runs(&[
            f(100, 10, false),
            f(110, 10, false),
            f(120, 10, false),
            f(130, 5, false),
            f(150, 5, false), // gap
            f(155, 5, true),  // flagged, contiguous
        ]);
        assert_eq!(
            r,
            vec![
                Run {
                    t: Some(100),
                    d: 10,
                    r: 2
                },
                Run {
                    t: None,
                    d: 5,
                    r: 0
                },
                Run {
                    t: Some(150),
                    d: 5,
                    r: 0
                },
                Run {
                    t: Some(155),
                    d: 5,
                    r: 0
                },
            ]
        );
        assert!(runs(&[]).is_empty());
    }

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
