//! What packager plugins share beyond the box writer: the errors a request
//! fails with, reading a track's fragments from the view, the media-time
//! arithmetic that numbers fragments, pieces of the URL grammar and the
//! cache lifetime of manifests.
//!
//! ```text
//!  Request ─▶ path grammar (decimal, track_path) ─▶ View::fragments (paged: fragments)
//!         ─▶ numbers from media time (ticks_to_ms, fragment_index, runs)
//!         ─▶ Response (manifest_cache)   or   Error::into_response (404 / 500)
//! ```
//!
//! Every number derives from media time, never from a counter or a clock,
//! so every node serving the same fragments serves the same bytes.

use crate::bmff;
use crate::plugin::{
    BodyPart, CachePolicy, DataRef, Fragment, PresentationInfo, PresentationState, Response,
    SampleEntry, TrackInfo, TrackKind, View,
};
use crate::time::{TimeError, mul_div_floor, mul_div_round};

/// Why a packager request fails; each maps to a status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such resource (yet): 404 with a short lifetime.
    #[error("{0}")]
    NotFound(String),
    /// Media time arithmetic overflowed: 500.
    #[error("media time: {0}")]
    Time(#[from] TimeError),
    /// A box could not be written: 500.
    #[error("ISO BMFF: {0}")]
    Bmff(#[from] bmff::Error),
    /// A derived value does not fit its field: 500.
    #[error("{0} does not fit")]
    Overflow(&'static str),
    /// Sample data or a codec configuration could not be transformed: 500.
    #[error("payload: {0}")]
    Payload(&'static str),
    /// A track's codec configuration is unusable: 500.
    #[error("{0}")]
    Codec(String),
}

impl Error {
    /// The 404 of a path that names nothing.
    pub fn no_such_resource(path: &str) -> Self {
        Error::NotFound(format!("no such resource: {path}"))
    }

    /// The response this error becomes.
    pub fn into_response(self) -> Response {
        match self {
            Error::NotFound(m) => Response::not_found(&m),
            e => Response::error(500, CachePolicy::NoStore, &e.to_string()),
        }
    }
}

/// The format of HLS I-frame-only playlists (trick play), served by a
/// plugin rather than a built-in (`examples/hls-iframes`). A packager that
/// serves it keeps to [`iframe_playlist_uri`]; the HLS packager lists
/// those playlists when the host serves the format
/// ([`crate::plugin::Request::serves_format`]).
pub const IFRAMES_FORMAT: &str = "m3u8-iframes";

/// The I-frame playlist of video track `track`, relative to the manifest
/// root: `m3u8-iframes/t{track}/iframes.m3u8`.
pub fn iframe_playlist_uri(track: u32) -> String {
    format!("{IFRAMES_FORMAT}/t{track}/iframes.m3u8")
}

/// The peak bit rate of `track`'s I-frame playlist, bit/s (an
/// `EXT-X-I-FRAME-STREAM-INF` `BANDWIDTH`), as an [`IFRAMES_FORMAT`]
/// packager lists it: one entry per fragment, its first keyframe, lasting
/// from there to the fragment's end, with a byte range of the keyframe
/// plus its boxes (`per_chunk` bytes, and `per_sample` for each sample of
/// the keyframe's `moof`: those up to the next keyframe). Rounded up, so
/// no entry is understated; 0 when no sample table is at hand.
pub fn iframe_peak_bandwidth(
    view: &dyn View,
    track: &TrackInfo,
    fragments: &[Fragment],
    per_chunk: u64,
    per_sample: u64,
) -> u64 {
    let ts = u64::from(track.timescale);
    let mut peak = 0u64;
    for f in fragments {
        let Some(samples) = view.samples(track.id, f.start) else {
            continue;
        };
        let Some(first) = samples.iter().position(|s| s.keyframe) else {
            continue;
        };
        let chunk = samples[first + 1..]
            .iter()
            .position(|s| s.keyframe)
            .map_or(samples.len() - first, |n| n + 1);
        let bytes = u64::from(samples[first].size)
            .saturating_add(per_chunk)
            .saturating_add(per_sample.saturating_mul(chunk as u64));
        let ticks: u64 = samples[first..].iter().map(|s| u64::from(s.duration)).sum();
        if ticks > 0 {
            let rate = bytes.saturating_mul(8).saturating_mul(ts).div_ceil(ticks);
            peak = peak.max(rate);
        }
    }
    peak
}

/// Whether an ISO BMFF packager can serve `track`: video or audio with a
/// sample entry the SDK's box writer can describe.
pub fn bmff_servable(track: &TrackInfo) -> bool {
    matches!(track.kind, TrackKind::Video | TrackKind::Audio) && bmff::is_supported(&track.fourcc)
}

/// The track with this id, if `servable` accepts it; [`Error::NotFound`]
/// otherwise.
pub fn find_track(
    view: &dyn View,
    id: u32,
    servable: fn(&TrackInfo) -> bool,
) -> Result<TrackInfo, Error> {
    view.tracks()
        .into_iter()
        .find(|t| t.id == id && servable(t))
        .ok_or_else(|| Error::NotFound(format!("no track {id}")))
}

/// The sample table of `track`'s fragment starting at `start` and the
/// length of its payload in bytes; [`Error::NotFound`] when the view has no
/// such fragment.
pub fn fragment_samples(
    view: &dyn View,
    track: u32,
    start: u64,
) -> Result<(Vec<SampleEntry>, u32), Error> {
    let samples = view
        .samples(track, start)
        .ok_or_else(|| Error::NotFound(format!("no fragment {start} in track {track}")))?;
    let length = samples
        .iter()
        .try_fold(0u32, |n, s| n.checked_add(s.size))
        .ok_or(Error::Overflow("fragment payload size"))?;
    Ok((samples, length))
}

/// A 200 response for one fragment: `head` (boxes up to the `mdat`
/// header), then `length` bytes of `track`'s sample data from the fragment
/// at `start`, by reference for the host to splice (nothing when empty).
pub fn fragment_response(
    head: Vec<u8>,
    track: u32,
    start: u64,
    length: u32,
    content_type: &str,
    cache: CachePolicy,
) -> Response {
    let mut body = vec![BodyPart::Bytes(head)];
    if length > 0 {
        body.push(BodyPart::SampleData(DataRef {
            track,
            start,
            offset: 0,
            length,
        }));
    }
    Response {
        status: 200,
        content_type: content_type.into(),
        cache,
        headers: Vec::new(),
        body,
    }
}

/// Fragments asked of the view by the first call; each further call asks
/// for twice as many, up to [`FRAGMENT_PAGE_MAX`], so a short live window
/// costs one small call and a 25 h one (45,000 fragments) a dozen.
pub const FRAGMENT_PAGE: u32 = 512;

/// The largest page asked for.
pub const FRAGMENT_PAGE_MAX: u32 = 8192;

/// Every fragment of `track` the view holds, oldest first (the host bounds
/// the window).
pub fn fragments(view: &dyn View, track: u32) -> Vec<Fragment> {
    fragments_at_most(view, track, usize::MAX)
}

/// The fragments of `track` the view holds, oldest first, asking for no
/// more pages once `max` have been read (bounded work on any view).
pub fn fragments_at_most(view: &dyn View, track: u32, max: usize) -> Vec<Fragment> {
    let mut out: Vec<Fragment> = Vec::new();
    let mut from = 0u64;
    let mut size = FRAGMENT_PAGE;
    loop {
        let page = view.fragments(track, from, size);
        let full = page.len() >= size as usize;
        size = size.saturating_mul(2).min(FRAGMENT_PAGE_MAX);
        // Keep only what moves forward, so a misbehaving view cannot make
        // this loop forever or list a fragment twice.
        out.extend(page.into_iter().filter(|f| f.start >= from));
        let Some(next) = out.last().and_then(|f| f.start.checked_add(1)) else {
            break;
        };
        if !full || next <= from || out.len() >= max {
            break;
        }
        from = next;
    }
    out.truncate(max);
    out
}

/// `ticks` at `timescale` as milliseconds, rounded down (an error for a
/// zero timescale).
pub fn ticks_to_ms(ticks: u64, timescale: u32) -> Result<u64, TimeError> {
    mul_div_floor(ticks, 1000, u64::from(timescale))
}

/// `ticks` at `timescale` as milliseconds, rounded to nearest.
pub fn ticks_to_ms_round(ticks: u64, timescale: u32) -> Result<u64, TimeError> {
    mul_div_round(ticks, 1000, u64::from(timescale))
}

/// The media-time index of a fragment starting at `start` ticks of
/// `timescale` on a grid of `fragment_ms`: `round(floor(start_ms) /
/// fragment_ms)`, a zero grid counting as 1 ms. Rounding absorbs the
/// jitter of audio starts around the grid.
pub fn fragment_index(start: u64, timescale: u32, fragment_ms: u32) -> Result<u64, TimeError> {
    let start_ms = ticks_to_ms(start, timescale)?;
    mul_div_round(start_ms, 1, u64::from(fragment_ms.max(1)))
}

/// The most common non-zero sample duration, ties going to the shorter;
/// `None` without such samples (the base of a frame rate).
pub fn most_common_duration(samples: &[SampleEntry]) -> Option<u32> {
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
    best.map(|(_, d)| d)
}

/// A run of fragments in a segment timeline (DASH `<S>`, Smooth `<c>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Explicit start, media time in track ticks: present when the run
    /// does not continue the previous one (first run, gap, or a flagged
    /// discontinuity).
    pub t: Option<u64>,
    /// Duration of each fragment.
    pub d: u64,
    /// Repeats after the first fragment.
    pub r: u64,
}

/// The timeline of a list of fragments: equal, contiguous durations
/// compressed into one run.
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

/// A canonical unsigned decimal: digits only, no leading zero (but `0`),
/// within `u64`.
pub fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// Splits a path of exactly the shape `{format}/t{track}/{leaf}` into the
/// track id (canonical decimal, within `u32`) and the leaf; `None` for any
/// other shape or format.
pub fn track_path<'a>(path: &'a str, format: &str) -> Option<(u32, &'a str)> {
    let mut parts = path.split('/');
    let (Some(first), Some(track), Some(leaf), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if first != format {
        return None;
    }
    let track = u32::try_from(decimal(track.strip_prefix('t')?)?).ok()?;
    Some((track, leaf))
}

/// How long an ended presentation's manifests may be cached, in seconds.
pub const ENDED_MAX_AGE: u32 = 3600;

/// Half a fragment in whole seconds, rounded down, at least 1: how long a
/// live manifest may be cached.
pub fn half_fragment_s(fragment_ms: u32) -> u32 {
    (fragment_ms / 2000).max(1)
}

/// The cache lifetime of a manifest (or anything that changes with it):
/// `live_max_age(fragment_ms)` seconds while live, [`ENDED_MAX_AGE`] once
/// ended.
pub fn manifest_cache(info: &PresentationInfo, live_max_age: fn(u32) -> u32) -> CachePolicy {
    CachePolicy::MaxAge(match info.state {
        PresentationState::Live => live_max_age(info.fragment_duration_ms),
        PresentationState::Ended => ENDED_MAX_AGE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::MemoryView;

    use crate::testing::fragment as f;

    #[test]
    fn iframe_bandwidth_is_each_fragments_first_keyframe_over_its_time() {
        let track = TrackInfo::new(1, TrackKind::Video, 1000);
        let sample = |size, keyframe| SampleEntry {
            duration: 100,
            size,
            composition_offset: 0,
            keyframe,
        };
        let mut view = MemoryView::new(PresentationState::Live, 2000, None);
        view.add_track(track.clone());
        // Fragment 1: its first keyframe (1000 bytes, a 4-sample chunk)
        // for the whole 600 ms; fragment 2: 600 bytes, 1 sample, 100 ms
        // after a leading sample that is not a keyframe.
        let first = vec![
            sample(1000, true),
            sample(10, false),
            sample(10, false),
            sample(10, false),
            sample(600, true),
            sample(10, false),
        ];
        let second = vec![sample(10, false), sample(600, true)];
        for (start, samples) in [(0, first), (600, second)] {
            let size: u32 = samples.iter().map(|s| s.size).sum();
            view.push(1, start, samples, vec![0; size as usize], false);
        }
        let fragments = fragments(&view, 1);
        // (1000 + 40 + 4 * 16) * 8 bit / 0.6 s = 14720;
        // (600 + 40 + 16) * 8 bit / 0.1 s = 52480.
        assert_eq!(
            iframe_peak_bandwidth(&view, &track, &fragments[..1], 40, 16),
            14_720
        );
        assert_eq!(
            iframe_peak_bandwidth(&view, &track, &fragments, 40, 16),
            52_480
        );
        assert_eq!(iframe_peak_bandwidth(&view, &track, &[], 40, 16), 0);
        assert_eq!(iframe_playlist_uri(7), "m3u8-iframes/t7/iframes.m3u8");
    }

    #[test]
    fn fragment_indices_come_from_media_time() {
        assert_eq!(fragment_index(0, 90_000, 2000).ok(), Some(0));
        assert_eq!(fragment_index(180_000, 90_000, 2000).ok(), Some(1));
        assert_eq!(fragment_index(90_000_000, 90_000, 2000).ok(), Some(500));
        // Audio starts jitter around the grid; rounding absorbs it.
        assert_eq!(fragment_index(95_232, 48_000, 2000).ok(), Some(1)); // 1984 ms
        assert_eq!(fragment_index(96_256, 48_000, 2000).ok(), Some(1)); // 2005 ms
        // A zero grid does not divide by zero; a zero timescale is an error.
        assert_eq!(fragment_index(90_000, 90_000, 0).ok(), Some(1000));
        assert!(fragment_index(1, 0, 2000).is_err());
        // Overflow is an error, not a wrap.
        assert!(fragment_index(u64::MAX, 1, 2000).is_err());
        assert_eq!(ticks_to_ms_round(1023, 48_000).ok(), Some(21));
        assert_eq!(ticks_to_ms(1023, 48_000).ok(), Some(21));
        assert_eq!(ticks_to_ms(1055, 48_000).ok(), Some(21));
        assert_eq!(ticks_to_ms_round(1055, 48_000).ok(), Some(22));
    }

    #[test]
    fn most_common_durations() {
        let s = |duration| SampleEntry {
            duration,
            size: 1,
            composition_offset: 0,
            keyframe: false,
        };
        let mut samples = vec![s(3600); 49];
        samples.push(s(1800));
        assert_eq!(most_common_duration(&samples), Some(3600));
        assert_eq!(most_common_duration(&[s(2), s(1)]), Some(1));
        assert_eq!(most_common_duration(&[]), None);
        assert_eq!(most_common_duration(&[s(0)]), None);
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
        let run = |t, d, r| Run { t, d, r };
        assert_eq!(
            r,
            vec![
                run(Some(100), 10, 2),
                run(None, 5, 0),
                run(Some(150), 5, 0),
                run(Some(155), 5, 0),
            ]
        );
        assert!(runs(&[]).is_empty());
    }

    #[test]
    fn track_paths() {
        assert_eq!(track_path("f/t0/x", "f"), Some((0, "x")));
        assert_eq!(
            track_path("f/t4294967295/", "f"),
            Some((u32::MAX, "")),
            "an empty leaf is the caller's to reject"
        );
        for bad in [
            "",
            "f",
            "f/t1",
            "g/t1/x",
            "f/1/x",
            "f/t/x",
            "f/t01/x",
            "f/t+1/x",
            "f/t1/x/",
            "/f/t1/x",
            "f/t4294967296/x",
        ] {
            assert_eq!(track_path(bad, "f"), None, "{bad:?}");
        }
        assert_eq!(decimal("0"), Some(0));
        assert_eq!(decimal("18446744073709551615"), Some(u64::MAX));
        for bad in ["", "01", "1e3", "-1", "+1", "18446744073709551616"] {
            assert_eq!(decimal(bad), None, "{bad:?}");
        }
    }

    /// A live view of track 1 with `n` fragments of 10 ticks from 1000.
    fn paged(n: u64) -> MemoryView {
        let mut view = MemoryView::new(PresentationState::Live, 2000, None);
        view.add_track(TrackInfo::new(1, TrackKind::Video, 90_000));
        let sample = SampleEntry {
            duration: 10,
            size: 1,
            composition_offset: 0,
            keyframe: true,
        };
        for i in 0..n {
            view.push(1, 1000 + i * 10, vec![sample], vec![0], false);
        }
        view
    }

    #[test]
    fn pages_through_the_whole_window() {
        let starts = |v: Vec<Fragment>| v.iter().map(|f| f.start).collect::<Vec<_>>();
        let page = u64::from(FRAGMENT_PAGE);
        // Pages grow 512, 1024, 2048, ...: end inside a page, exactly at the
        // end of one page and of two, and past the largest page size.
        let max = u64::from(FRAGMENT_PAGE_MAX);
        for n in [0, 1, page, page + 1, 3 * page, 3 * page + 7, 4 * max + 3] {
            let all: Vec<u64> = (0..n).map(|i| 1000 + i * 10).collect();
            assert_eq!(starts(fragments(&paged(n), 1)), all, "{n} fragments");
        }
        // A bound stops reading and cuts to the bound.
        assert_eq!(fragments_at_most(&paged(3 * page), 1, 1).len(), 1);
        assert_eq!(fragments_at_most(&paged(3 * page), 1, 600).len(), 600);
    }

    #[test]
    fn manifest_lifetimes() {
        let mut info = paged(0).info();
        assert_eq!(
            manifest_cache(&info, half_fragment_s),
            CachePolicy::MaxAge(1)
        );
        info.fragment_duration_ms = 6000;
        assert_eq!(
            manifest_cache(&info, half_fragment_s),
            CachePolicy::MaxAge(3)
        );
        info.state = PresentationState::Ended;
        assert_eq!(
            manifest_cache(&info, half_fragment_s),
            CachePolicy::MaxAge(ENDED_MAX_AGE)
        );
        assert_eq!(
            Error::no_such_resource("x").into_response().status,
            Response::not_found("no such resource: x").status
        );
    }
}
