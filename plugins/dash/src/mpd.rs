//! The MPD: one Period starting at media time 0, one AdaptationSet per
//! kind/language, one Representation per track, each with its own
//! SegmentTemplate + SegmentTimeline (`$Time$`).
//!
//! ```text
//!  MPD (dynamic: availabilityStartTime = epoch, publishTime = epoch + live edge,
//!       timeShiftBufferDepth = window, minimumUpdatePeriod = fragment,
//!       maxSegmentDuration = longest listed segment;
//!       static: mediaPresentationDuration = edge - earliest)
//!   └─ Period id="0" start="PT0S"
//!       ├─ AdaptationSet video  └─ Representation id={track} ─ SegmentTemplate ─ SegmentTimeline ─ S..
//!       ├─ AdaptationSet audio lang=en  └─ Representation ..
//!       └─ AdaptationSet audio lang=fr  └─ Representation ..
//!   └─ UTCTiming (dynamic only)
//! ```
//!
//! Discontinuities stay inside the one Period as a gap in the
//! SegmentTimeline (an `<S>` with an explicit `t`). The host moves a
//! restarted stream to the end of the timeline, so media time stays
//! monotonic and a gap (or an explicit `t` at the flagged fragment) tells
//! the whole story. A new Period per discontinuity would need Period ids
//! and starts derived from media time, repeated AdaptationSets, and a
//! Period boundary every player must splice across (dash.js and shaka
//! both re-create their source buffers or seek there, and ffmpeg's DASH
//! demuxer reads only the first Period), while both dash.js and shaka
//! jump timeline gaps within a Period.
//!
//! UTCTiming: the plugin has no clock, so `urn:mpeg:dash:utc:direct:2014`
//! (the time written into the MPD) is impossible. It uses
//! `urn:mpeg:dash:utc:http-head:2014` pointing at the MPD itself (its own
//! relative name): every response of the host carries a `Date` header,
//! and the host answers `HEAD`; no new host endpoint is needed.

use sluice_sdk::packaging::{self, bmff_servable};
use sluice_sdk::plugin::{Fragment, PresentationState, TrackInfo, TrackKind, View};
use sluice_sdk::time::{mul_div_ceil, mul_div_round};
use sluice_sdk::xml::{Attr, Xml};

use crate::paths::Flavour;
use crate::{Error, segments, timeline};

/// Bytes a segment adds to its payload at most (`styp`, `moof` without
/// its sample table, `mdat` header), plus [`OVERHEAD_PER_SAMPLE`] a sample.
const OVERHEAD_PER_SEGMENT: u64 = 160;
/// `trun` bytes per sample.
const OVERHEAD_PER_SAMPLE: u64 = 16;

/// The track with this id, if this format can serve it (video or audio
/// with a sample entry the SDK can describe).
pub fn find_track(view: &dyn View, id: u32) -> Result<TrackInfo, Error> {
    packaging::find_track(view, id, bmff_servable)
}

/// The RFC 6381 codec string: the track's own, or derived from its
/// configuration.
fn codec(track: &TrackInfo) -> Option<String> {
    if !track.codec.is_empty() {
        return Some(track.codec.clone());
    }
    let c = &track.codec_private;
    match track.fourcc.as_str() {
        "avc1" | "avc3" if c.len() >= 4 => Some(format!(
            "{}.{:02x}{:02x}{:02x}",
            track.fourcc, c[1], c[2], c[3]
        )),
        "mp4a" if !c.is_empty() => {
            let aot = match c[0] >> 3 {
                31 if c.len() >= 2 => 32 + (((c[0] & 7) << 3) | (c[1] >> 5)),
                aot => aot,
            };
            Some(format!("mp4a.40.{aot}"))
        }
        _ => None,
    }
}

/// A track with its fragments.
struct Rep {
    track: TrackInfo,
    fragments: Vec<Fragment>,
    /// Peak segment bit rate, bit/s (`@bandwidth` must not understate).
    bandwidth: u64,
}

impl Rep {
    fn new(view: &dyn View, track: TrackInfo) -> Result<Option<Rep>, Error> {
        let fragments = timeline::fragments(view, track.id);
        if fragments.is_empty() {
            return Ok(None);
        }
        let ts = u64::from(track.timescale);
        // The densest fragment (most bytes per tick), found by comparing
        // cross products so that only the winner is divided.
        let mut densest: Option<(u64, u64)> = None;
        for f in &fragments {
            let bytes = u64::from(f.size)
                + OVERHEAD_PER_SEGMENT
                + OVERHEAD_PER_SAMPLE * u64::from(f.sample_count);
            let denser = |(b, d): (u64, u64)| {
                u128::from(bytes) * u128::from(d) > u128::from(b) * u128::from(f.duration)
            };
            if f.duration > 0 && densest.is_none_or(denser) {
                densest = Some((bytes, f.duration));
            }
        }
        let peak = match densest {
            Some((bytes, duration)) => {
                mul_div_ceil(bytes * 8, ts, duration).map_err(|_| Error::Overflow("bandwidth"))?
            }
            None => 0,
        };
        let bandwidth = if track.bitrate > 0 && fragments.iter().all(|f| f.duration == 0) {
            u64::from(track.bitrate)
        } else {
            peak.max(1)
        };
        Ok(Some(Rep {
            track,
            fragments,
            bandwidth,
        }))
    }

    fn first_ms(&self) -> Result<u64, Error> {
        let first = self.fragments.first().map_or(0, |f| f.start);
        timeline::ticks_to_ms(first, &self.track)
    }

    fn end_ms(&self) -> Result<u64, Error> {
        let end = self.fragments.last().map_or(Ok(0), |f| {
            f.start
                .checked_add(f.duration)
                .ok_or(Error::Overflow("end"))
        })?;
        timeline::ticks_to_ms(end, &self.track)
    }
}

/// Tracks grouped into AdaptationSets: video first, then audio per
/// language in order of appearance.
fn adaptation_sets(reps: Vec<Rep>) -> Vec<Vec<Rep>> {
    let mut video: Vec<Rep> = Vec::new();
    let mut audio: Vec<(String, Vec<Rep>)> = Vec::new();
    for r in reps {
        match r.track.kind {
            TrackKind::Video => video.push(r),
            _ => {
                let lang = r.track.language.clone();
                match audio.iter_mut().find(|(l, _)| *l == lang) {
                    Some((_, v)) => v.push(r),
                    None => audio.push((lang, vec![r])),
                }
            }
        }
    }
    let mut out = Vec::new();
    if !video.is_empty() {
        out.push(video);
    }
    out.extend(audio.into_iter().map(|(_, v)| v));
    out
}

/// The MPD text; [`Error::NotFound`] while no track has a fragment.
pub fn mpd(view: &dyn View, flavour: Flavour) -> Result<String, Error> {
    let info = view.info();
    let mut reps = Vec::new();
    for t in view.tracks().into_iter().filter(bmff_servable) {
        if let Some(r) = Rep::new(view, t)? {
            reps.push(r);
        }
    }
    if reps.is_empty() {
        return Err(Error::NotFound("no fragments yet".into()));
    }
    // Media time of the earliest listed start and of the live edge (the
    // end of the newest fragment of any track), in milliseconds.
    let mut first_ms = u64::MAX;
    let mut edge_ms = 0u64;
    // The longest segment, in milliseconds rounded up.
    let mut longest_ms = 0u64;
    for r in &reps {
        first_ms = first_ms.min(r.first_ms()?);
        edge_ms = edge_ms.max(r.end_ms()?);
        let ts = u64::from(r.track.timescale.max(1));
        let longest = r.fragments.iter().map(|f| f.duration).max().unwrap_or(0);
        let ms =
            mul_div_ceil(longest, 1000, ts).map_err(|_| Error::Overflow("segment duration"))?;
        longest_ms = longest_ms.max(ms);
    }
    let fragment_ms = u64::from(info.fragment_duration_ms.max(1));
    let live = info.state == PresentationState::Live;
    // Without an epoch, media time 0 is taken as the Unix epoch.
    let epoch = info.epoch_ms.unwrap_or(0);
    let at = |ms: u64| -> Result<String, Error> {
        let ms = i64::try_from(ms).map_err(|_| Error::Overflow("media time"))?;
        let unix = epoch.checked_add(ms).ok_or(Error::Overflow("wall clock"))?;
        Ok(timeline::date_time(unix))
    };

    let profiles = match flavour {
        Flavour::Csf => "urn:mpeg:dash:profile:isoff-live:2011",
        // The segments are live-profile conformant too; players that look
        // for a profile they know find one.
        Flavour::Cmaf => "urn:mpeg:dash:profile:cmaf:2019,urn:mpeg:dash:profile:isoff-live:2011",
    };
    let mut attrs: Vec<Attr> = vec![
        ("xmlns", "urn:mpeg:dash:schema:mpd:2011".into()),
        ("profiles", profiles.into()),
    ];
    if live {
        // The span held when the host keeps everything (window 0).
        let depth = if info.window_ms > 0 {
            info.window_ms
        } else {
            edge_ms.saturating_sub(first_ms)
        };
        attrs.extend([
            ("type", "dynamic".into()),
            ("availabilityStartTime", at(0)?),
            ("publishTime", at(edge_ms)?),
            ("minimumUpdatePeriod", timeline::duration(fragment_ms)),
            ("timeShiftBufferDepth", timeline::duration(depth)),
            ("maxSegmentDuration", timeline::duration(longest_ms)),
            ("minBufferTime", timeline::duration(fragment_ms)),
        ]);
    } else {
        attrs.extend([
            ("type", "static".into()),
            (
                "mediaPresentationDuration",
                timeline::duration(edge_ms.saturating_sub(first_ms)),
            ),
            ("minBufferTime", timeline::duration(fragment_ms)),
        ]);
    }

    let mut x = Xml::new();
    x.open("MPD", &attrs);
    x.open("Period", &[("id", "0".into()), ("start", "PT0S".into())]);
    for (i, set) in adaptation_sets(reps).into_iter().enumerate() {
        let Some(head) = set.first() else { continue };
        let kind = head.track.kind;
        let mut a: Vec<Attr> = vec![
            ("id", i.to_string()),
            (
                "contentType",
                if kind == TrackKind::Video {
                    "video"
                } else {
                    "audio"
                }
                .into(),
            ),
            ("mimeType", segments::mime_type(&head.track).into()),
        ];
        if kind == TrackKind::Audio && !head.track.language.is_empty() {
            a.push(("lang", head.track.language.clone()));
        }
        a.push(("segmentAlignment", "true".into()));
        a.push(("startWithSAP", "1".into()));
        x.open("AdaptationSet", &a);
        if kind == TrackKind::Audio {
            x.empty(
                "Role",
                &[
                    ("schemeIdUri", "urn:mpeg:dash:role:2011".into()),
                    ("value", "main".into()),
                ],
            );
        }
        for r in &set {
            representation(&mut x, view, flavour, r, live, first_ms)?;
        }
        x.close();
    }
    x.close();
    if live {
        x.empty(
            "UTCTiming",
            &[
                ("schemeIdUri", "urn:mpeg:dash:utc:http-head:2014".into()),
                ("value", flavour.manifest()),
            ],
        );
    }
    Ok(x.finish())
}

fn representation(
    x: &mut Xml,
    view: &dyn View,
    flavour: Flavour,
    r: &Rep,
    live: bool,
    first_ms: u64,
) -> Result<(), Error> {
    let t = &r.track;
    let mut a: Vec<Attr> = vec![("id", t.id.to_string())];
    if let Some(c) = codec(t) {
        a.push(("codecs", c));
    }
    a.push(("bandwidth", r.bandwidth.to_string()));
    match t.kind {
        TrackKind::Video => {
            if t.width > 0 && t.height > 0 {
                a.push(("width", t.width.to_string()));
                a.push(("height", t.height.to_string()));
            }
            let samples = r
                .fragments
                .first()
                .and_then(|f| view.samples(t.id, f.start))
                .unwrap_or_default();
            if let Some(fr) = timeline::frame_rate(&samples, t) {
                a.push(("frameRate", fr));
            }
            a.push(("sar", "1:1".into()));
        }
        _ => {
            if t.sample_rate > 0 {
                a.push(("audioSamplingRate", t.sample_rate.to_string()));
            }
        }
    }
    x.open("Representation", &a);
    if t.kind == TrackKind::Audio && t.channels > 0 {
        x.empty(
            "AudioChannelConfiguration",
            &[
                (
                    "schemeIdUri",
                    "urn:mpeg:dash:23003:3:audio_channel_configuration:2011".into(),
                ),
                ("value", t.channels.to_string()),
            ],
        );
    }
    // Live: t values are media time from availabilityStartTime (offset 0).
    // Static: the presentation starts at the earliest listed fragment.
    let pto = if live {
        0
    } else {
        timeline::ms_to_ticks(first_ms, t)?
    };
    let mut st: Vec<Attr> = vec![("timescale", t.timescale.to_string())];
    if pto > 0 {
        st.push(("presentationTimeOffset", pto.to_string()));
    }
    st.push(("initialization", flavour.init_template()));
    st.push(("media", flavour.media_template()));
    x.open("SegmentTemplate", &st);
    x.open("SegmentTimeline", &[]);
    for run in timeline::runs(&r.fragments) {
        let attrs = [
            ("t", run.t),
            ("d", Some(run.d)),
            ("r", (run.r > 0).then_some(run.r)),
        ];
        let mut present = [("", 0); 3];
        let mut n = 0;
        for (key, value) in attrs {
            if let Some(v) = value {
                present[n] = (key, v);
                n += 1;
            }
        }
        x.empty_numbers("S", &present[..n]);
    }
    x.close();
    x.close();
    x.close();
    Ok(())
}

/// Milliseconds of cache lifetime for a live MPD: half a fragment, at
/// least one second.
pub fn live_max_age(fragment_ms: u32) -> u32 {
    u32::try_from(mul_div_round(u64::from(fragment_ms), 1, 2000).unwrap_or(1))
        .unwrap_or(u32::MAX)
        .max(1)
}
