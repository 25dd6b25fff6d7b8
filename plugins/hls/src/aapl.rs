//! Format `m3u8-aapl`: HLS with MPEG-2 transport stream segments.
//!
//! ```text
//! Manifest(format=m3u8-aapl)      multivariant: one variant per video track, its
//!                                 segments carrying the default audio track too
//! m3u8-aapl/t{track}/index.m3u8   media playlist (segments = fragments of that track)
//! m3u8-aapl/t{track}/{start}.ts   TS segment, start in track ticks
//!
//!  video segment (t{video}/{start}.ts):
//!    PAT PMT │ video AU (AUD [SPS PPS] NALs, PCR) │ audio AU (ADTS) │ video AU │ ...  by DTS
//!            └ pid 0x100, H.264 ┘                 └ pid 0x101, AAC ┘
//!  audio segment (t{audio}/{start}.ts): PAT PMT │ audio AU (PCR) │ audio AU │ ...
//! ```
//!
//! How audio is carried: the first audio track (the default, as in
//! `m3u8-cmaf`) is muxed into every video variant's segments, one program
//! with PIDs 0x100 (video) and 0x101 (audio), PMT on 0x1000. When there
//! are other audio tracks, they are `EXT-X-MEDIA` renditions of one group
//! with audio-only TS playlists of their own; the default rendition has no
//! URI (it is in the variant). A presentation without video gets one
//! audio-only variant per audio track.
//!
//! A video segment is one fragment of the video track, `[start, end)`.
//! Audio fragments are cut on the same grid but at frame boundaries, so
//! they straddle video segment edges: a video segment takes exactly the
//! audio frames whose DTS, floored to 90 kHz, lies in `[start, end)` of the
//! video fragment in 90 kHz. Consecutive video fragments tile the
//! timeline, so every audio frame lands in exactly one segment.
//!
//! Timestamps: PTS/DTS are media time in 90 kHz plus [`TS_DELAY`], wrapped
//! to 33 bits; the PCR is media time (so the PCR runs `TS_DELAY` ahead of
//! decoding). The PCR rides on the first packet of every video access unit
//! (audio, for audio-only segments): every 100 ms or less for video of 10
//! fps and up; every AAC frame (about 21 ms) for audio. Continuity
//! counters (see `ts.rs`): PAT/PMT from the segment's media sequence
//! number, elementary PIDs from 0 and padded back to 0 at the segment's
//! end, so each segment is reproducible on its own and consecutive
//! segments continue each other's counts.

use sluice_sdk::aac::AudioSpecificConfig;
use sluice_sdk::h264::{self, AvcDecoderConfig};
use sluice_sdk::packaging::{self, decimal, track_path};
use sluice_sdk::plugin::{
    CachePolicy, Fragment, PresentationState, Response, SampleEntry, TrackInfo, TrackKind, View,
};
use sluice_sdk::time::{mul_div_ceil, mul_div_round};

use crate::manifest::{self, AUDIO_GROUP, Layout, audio_renditions};
use crate::playlist::{MediaPlaylist, MultivariantPlaylist, VERSION_TS, VariantStream};
use crate::ts::{self, Muxer, Stream};
use crate::{Error, timeline};

/// The format this module serves.
pub const FORMAT: &str = "m3u8-aapl";

const MULTIVARIANT: &str = "Manifest(format=m3u8-aapl)";
const MEDIA_PLAYLIST: &str = "index.m3u8";
const SEGMENT_SUFFIX: &str = ".ts";

/// Content type of TS segments.
pub const CONTENT_TYPE: &str = "video/mp2t";

/// How far PTS/DTS run ahead of the PCR, 90 kHz (0.7 s). It also keeps
/// PTS positive for pictures whose composition offset is negative.
pub const TS_DELAY: u64 = 63_000;

/// Video PES.
const VIDEO: Stream = Stream {
    pid: 0x100,
    stream_type: ts::STREAM_TYPE_H264,
    stream_id: ts::STREAM_ID_VIDEO,
};
/// Audio PES.
const AUDIO: Stream = Stream {
    pid: 0x101,
    stream_type: ts::STREAM_TYPE_ADTS,
    stream_id: ts::STREAM_ID_AUDIO,
};

/// Bytes a TS segment adds per sample, at most: PES header (19), AUD (6),
/// ADTS header (7), PCR adaptation field (8), last packet's stuffing (183).
const OVERHEAD_PER_SAMPLE: u64 = 223;
/// Bytes per segment: PAT and PMT packets.
const OVERHEAD_PER_SEGMENT: u64 = 2 * ts::PACKET as u64;

/// Audio fragments asked of the view for one video segment.
const AUDIO_FRAGMENTS: u32 = 8;

/// What a request path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// The multivariant playlist.
    Multivariant,
    /// A track's media playlist.
    MediaPlaylist {
        /// Track id.
        track: u32,
    },
    /// A TS segment: one fragment of a track (and muxed audio).
    Segment {
        /// Track id.
        track: u32,
        /// The fragment's start in track ticks.
        start: u64,
    },
}

impl Resource {
    /// Parses a path below the manifest root, strictly.
    pub fn parse(path: &str) -> Option<Resource> {
        if path == MULTIVARIANT {
            return Some(Resource::Multivariant);
        }
        let (track, leaf) = track_path(path, FORMAT)?;
        if leaf == MEDIA_PLAYLIST {
            return Some(Resource::MediaPlaylist { track });
        }
        let start = decimal(leaf.strip_suffix(SEGMENT_SUFFIX)?)?;
        Some(Resource::Segment { track, start })
    }
}

/// A track's media playlist, relative to the multivariant playlist.
pub fn media_playlist_uri(track: u32) -> String {
    format!("{FORMAT}/t{track}/{MEDIA_PLAYLIST}")
}

/// A segment, relative to its media playlist.
#[cfg(test)]
pub fn segment_uri(start: u64) -> String {
    format!("{start}{SEGMENT_SUFFIX}")
}

/// Serves one request of this format.
pub fn route(path: &str, view: &dyn View) -> Result<Response, Error> {
    let not_found = || Error::no_such_resource(path);
    match Resource::parse(path).ok_or_else(not_found)? {
        Resource::Multivariant => Ok(crate::playlist_response(
            view,
            multivariant(view)?.serialize(),
        )),
        Resource::MediaPlaylist { track } => Ok(crate::playlist_response(
            view,
            media(view, track)?.serialize(),
        )),
        Resource::Segment { track, start } => segment(view, &find_track(view, track)?, start),
    }
}

/// A track TS can carry: H.264 video, AAC audio.
pub fn servable(track: &TrackInfo) -> bool {
    match track.kind {
        TrackKind::Video => matches!(track.fourcc.as_str(), "avc1" | "avc3"),
        TrackKind::Audio => track.fourcc == "mp4a",
        _ => false,
    }
}

fn find_track(view: &dyn View, id: u32) -> Result<TrackInfo, Error> {
    packaging::find_track(view, id, servable)
}

/// The audio track muxed into video segments: the first servable one.
fn default_audio(view: &dyn View) -> Option<TrackInfo> {
    view.tracks()
        .into_iter()
        .find(|t| t.kind == TrackKind::Audio && servable(t))
}

/// A track with its peak and average TS bit rates.
struct Summary {
    track: TrackInfo,
    fragments: Vec<Fragment>,
    peak: u64,
    average: u64,
}

impl Summary {
    fn new(view: &dyn View, track: TrackInfo) -> Result<Option<Summary>, Error> {
        let fragments = timeline::fragments(view, track.id);
        if fragments.is_empty() {
            return Ok(None);
        }
        let ts = u64::from(track.timescale);
        // SPS and PPS before every keyframe: at most the configuration.
        let per_segment = OVERHEAD_PER_SEGMENT + track.codec_private.len() as u64;
        let (mut peak, mut bits, mut ticks) = (0u64, 0u64, 0u64);
        for f in &fragments {
            let payload =
                u64::from(f.size) + per_segment + OVERHEAD_PER_SAMPLE * u64::from(f.sample_count);
            // 4 header bytes per 184 of payload.
            let b = payload
                .saturating_add(payload.div_ceil(46))
                .saturating_mul(8);
            if f.duration > 0 {
                let rate =
                    mul_div_ceil(b, ts, f.duration).map_err(|_| Error::Overflow("bandwidth"))?;
                peak = peak.max(rate);
            }
            bits = bits.saturating_add(b);
            ticks = ticks.saturating_add(f.duration);
        }
        let average = if ticks > 0 {
            mul_div_round(bits, ts, ticks)?
        } else {
            peak
        };
        Ok(Some(Summary {
            track,
            fragments,
            peak,
            average,
        }))
    }
}

/// The multivariant playlist (see the module docs for the layout).
pub fn multivariant(view: &dyn View) -> Result<MultivariantPlaylist, Error> {
    let mut videos = Vec::new();
    let mut audios = Vec::new();
    for t in view.tracks().into_iter().filter(servable) {
        let kind = t.kind;
        if let Some(s) = Summary::new(view, t)? {
            match kind {
                TrackKind::Video => videos.push(s),
                _ => audios.push(s),
            }
        }
    }
    if videos.is_empty() && audios.is_empty() {
        return Err(Error::NotFound("no fragments yet".into()));
    }
    if videos.is_empty() {
        let variants = audios
            .iter()
            .map(|a| VariantStream {
                bandwidth: a.peak,
                average_bandwidth: Some(a.average),
                codecs: manifest::codec(&a.track).into_iter().collect(),
                resolution: None,
                frame_rate_milli: None,
                audio_group: None,
                uri: media_playlist_uri(a.track.id),
            })
            .collect();
        return Ok(MultivariantPlaylist {
            iframe_streams: Vec::new(),
            version: VERSION_TS,
            renditions: Vec::new(),
            variants,
        });
    }

    // The muxed audio is the default track; it must be the first audio
    // summary too (a default track still without fragments is not muxed
    // into anything yet, so no rendition group then).
    let default = default_audio(view).map(|t| t.id);
    let muxed = audios.first().filter(|a| Some(a.track.id) == default);
    let mut renditions = Vec::new();
    if audios.len() > 1 && muxed.is_some() {
        renditions = audio_renditions(audios.iter().map(|a| &a.track));
        for (i, (r, a)) in renditions.iter_mut().zip(&audios).enumerate() {
            r.uri = (i > 0).then(|| media_playlist_uri(a.track.id));
        }
    }
    let group: &[Summary] = if renditions.is_empty() {
        muxed.map(std::slice::from_ref).unwrap_or(&[])
    } else {
        &audios
    };
    // The muxed track always travels in the variant's segments; choosing
    // another rendition adds its own playlist's segments on top.
    let alternate = |f: fn(&Summary) -> u64| -> u64 {
        let muxed = muxed.map(f).unwrap_or(0);
        let other = audios.iter().skip(1).map(f).max().unwrap_or(0);
        muxed.saturating_add(if renditions.is_empty() { 0 } else { other })
    };
    let audio_peak = alternate(|a| a.peak);
    let audio_average = alternate(|a| a.average);
    let mut audio_codecs: Vec<String> = Vec::new();
    for c in group.iter().filter_map(|a| manifest::codec(&a.track)) {
        if !audio_codecs.contains(&c) {
            audio_codecs.push(c);
        }
    }
    let variants = videos
        .iter()
        .map(|v| {
            let t = &v.track;
            let frame_rate_milli = v
                .fragments
                .last()
                .and_then(|f| view.samples(t.id, f.start))
                .and_then(|s| timeline::frame_rate_milli(&s, t));
            VariantStream {
                bandwidth: v.peak.saturating_add(audio_peak),
                average_bandwidth: Some(v.average.saturating_add(audio_average)),
                codecs: manifest::codec(t)
                    .into_iter()
                    .chain(audio_codecs.clone())
                    .collect(),
                resolution: (t.width > 0 && t.height > 0).then_some((t.width, t.height)),
                frame_rate_milli,
                audio_group: (!renditions.is_empty()).then(|| AUDIO_GROUP.into()),
                uri: media_playlist_uri(t.id),
            }
        })
        .collect();
    Ok(MultivariantPlaylist {
        iframe_streams: Vec::new(),
        version: VERSION_TS,
        renditions,
        variants,
    })
}

/// The media playlist of one track: every fragment the view holds, as
/// `.ts` segments; no `EXT-X-MAP`.
pub fn media(view: &dyn View, id: u32) -> Result<MediaPlaylist, Error> {
    let track = find_track(view, id)?;
    manifest::media_of(
        view,
        &track,
        &Layout {
            version: VERSION_TS,
            map_uri: None,
            segment_suffix: SEGMENT_SUFFIX,
            discontinuity_sequence: true,
            hold_back: &|fragments| held_back(view, &track, fragments),
        },
    )
}

/// Newest video fragments that a live presentation does not list yet: at
/// most [`HOLD_BACK`] whose end lies past the end of the muxed audio track
/// (its frames for them have not all arrived, and a served segment is
/// immutable). Audio further behind than that is not waited for.
fn held_back(view: &dyn View, track: &TrackInfo, fragments: &[Fragment]) -> usize {
    if track.kind != TrackKind::Video || view.info().state != PresentationState::Live {
        return 0;
    }
    let Some(audio) = default_audio(view) else {
        return 0;
    };
    let audio_end = audio_end_90k(view, &audio);
    fragments
        .iter()
        .rev()
        .take(HOLD_BACK)
        .take_while(|f| {
            to_90k(
                i128::from(f.start) + i128::from(f.duration),
                track.timescale,
            ) > audio_end
        })
        .count()
}

/// How many of the newest video fragments may wait for audio.
const HOLD_BACK: usize = 2;

/// The end of a track's newest fragment in 90 kHz (`i128::MIN` without
/// fragments, so the newest video fragments wait, within [`HOLD_BACK`]).
fn audio_end_90k(view: &dyn View, audio: &TrackInfo) -> i128 {
    timeline::fragments(view, audio.id)
        .last()
        .map_or(i128::MIN, |f| {
            to_90k(
                i128::from(f.start) + i128::from(f.duration),
                audio.timescale,
            )
        })
}

/// Ticks of `timescale` (possibly negative) in 90 kHz, rounded down.
fn to_90k(ticks: i128, timescale: u32) -> i128 {
    (ticks * 90_000).div_euclid(i128::from(timescale.max(1)))
}

/// A 90 kHz time (media time plus [`TS_DELAY`]) as a TS timestamp.
fn ts_time(t90: i128) -> u64 {
    (t90 + i128::from(TS_DELAY)).max(0) as u64 & ts::TIMESTAMP_MASK
}

/// One access unit ready for the muxer.
struct Unit {
    stream: Stream,
    /// DTS in 90 kHz media time (no delay), the interleaving key.
    dts90: i128,
    pts90: i128,
    keyframe: bool,
    data: Vec<u8>,
}

/// Walks a fragment's samples with their decode times and payloads.
fn each_sample(
    view: &dyn View,
    track: &TrackInfo,
    start: u64,
    samples: &[SampleEntry],
    mut f: impl FnMut(i128, &SampleEntry, &[u8]) -> Result<(), Error>,
) -> Result<(), Error> {
    let total = samples
        .iter()
        .try_fold(0u32, |n, s| n.checked_add(s.size))
        .ok_or(Error::Overflow("fragment payload size"))?;
    let data = if total == 0 {
        Vec::new()
    } else {
        view.sample_data(track.id, start, 0, total)
            .ok_or_else(|| Error::NotFound(format!("no data for fragment {start}")))?
    };
    let (mut dts, mut at) = (i128::from(start), 0usize);
    for s in samples {
        let end = at + s.size as usize;
        let payload = data
            .get(at..end)
            .ok_or(Error::Payload("short sample data"))?;
        f(dts, s, payload)?;
        dts += i128::from(s.duration);
        at = end;
    }
    Ok(())
}

/// H.264 samples (length-prefixed NAL units) as Annex B access units:
/// an AUD first, SPS and PPS before every keyframe.
fn video_units(
    view: &dyn View,
    track: &TrackInfo,
    start: u64,
    samples: &[SampleEntry],
    out: &mut Vec<Unit>,
) -> Result<(), Error> {
    let config =
        AvcDecoderConfig::parse(&track.codec_private).map_err(|_| Error::Payload("avcC"))?;
    each_sample(view, track, start, samples, |dts, s, payload| {
        let mut data = Vec::with_capacity(payload.len() + 64);
        data.extend_from_slice(&[0, 0, 0, 1, 0x09, 0xf0]);
        if s.keyframe {
            config.write_parameter_sets_annex_b(&mut data);
        }
        for nal in h264::nal_units(payload, config.nal_length_size) {
            let nal = nal.map_err(|_| Error::Payload("NAL unit lengths"))?;
            if h264::nal_unit_type(nal) == Some(9) {
                continue; // our own AUD is already there
            }
            data.extend_from_slice(&[0, 0, 0, 1]);
            data.extend_from_slice(nal);
        }
        out.push(Unit {
            stream: VIDEO,
            dts90: to_90k(dts, track.timescale),
            pts90: to_90k(dts + i128::from(s.composition_offset), track.timescale),
            keyframe: s.keyframe,
            data,
        });
        Ok(())
    })
}

/// Raw AAC frames as ADTS access units, keeping those whose DTS in 90 kHz
/// falls in `range`.
fn audio_units(
    view: &dyn View,
    track: &TrackInfo,
    start: u64,
    samples: &[SampleEntry],
    range: std::ops::Range<i128>,
    out: &mut Vec<Unit>,
) -> Result<(), Error> {
    let config =
        AudioSpecificConfig::parse(&track.codec_private).map_err(|_| Error::Payload("ASC"))?;
    each_sample(view, track, start, samples, |dts, _, payload| {
        let dts90 = to_90k(dts, track.timescale);
        if !range.contains(&dts90) {
            return Ok(());
        }
        let mut data = Vec::with_capacity(payload.len() + 7);
        config
            .write_adts_header(payload.len(), &mut data)
            .map_err(|_| Error::Payload("AAC frame not expressible in ADTS"))?;
        data.extend_from_slice(payload);
        out.push(Unit {
            stream: AUDIO,
            dts90,
            pts90: dts90,
            keyframe: true,
            data,
        });
        Ok(())
    })
}

/// The TS segment of the fragment of `track` starting at `start`.
fn segment(view: &dyn View, track: &TrackInfo, start: u64) -> Result<Response, Error> {
    let info = view.info();
    let samples = view
        .samples(track.id, start)
        .ok_or_else(|| Error::NotFound(format!("no fragment {start} in track {}", track.id)))?;
    let sequence = timeline::sequence_number(start, track, info.fragment_duration_ms)?;
    // Not listed yet (waiting for its audio): not served either, briefly.
    if track.kind == TrackKind::Video && info.state == PresentationState::Live {
        let newest = view.fragments(track.id, start, HOLD_BACK as u32 + 1);
        if held_back(view, track, &newest) >= newest.len() && !newest.is_empty() {
            return Err(Error::NotFound(format!("segment {start} waits for audio")));
        }
    }
    let mut units = Vec::with_capacity(samples.len() * 2);
    let streams: Vec<Stream>;
    let pcr_pid;
    if track.kind == TrackKind::Video {
        video_units(view, track, start, &samples, &mut units)?;
        let duration: u64 = samples.iter().map(|s| u64::from(s.duration)).sum();
        let from90 = to_90k(i128::from(start), track.timescale);
        let to90 = to_90k(i128::from(start) + i128::from(duration), track.timescale);
        streams = match default_audio(view) {
            Some(a) => {
                // Audio fragments overlapping [from90, to90): start from
                // two grid steps before the video start.
                let grid = u128::from(info.fragment_duration_ms) * u128::from(a.timescale) / 1000;
                let a_start = (from90.max(0) as u128 * u128::from(a.timescale) / 90_000)
                    .saturating_sub(2 * grid);
                let a_start = u64::try_from(a_start).unwrap_or(u64::MAX);
                for f in view.fragments(a.id, a_start, AUDIO_FRAGMENTS) {
                    let f_from = to_90k(i128::from(f.start), a.timescale);
                    let f_to = to_90k(i128::from(f.start) + i128::from(f.duration), a.timescale);
                    if f_from >= to90 || f_to <= from90 {
                        continue;
                    }
                    if let Some(s) = view.samples(a.id, f.start) {
                        audio_units(view, &a, f.start, &s, from90..to90, &mut units)?;
                    }
                }
                vec![VIDEO, AUDIO]
            }
            None => vec![VIDEO],
        };
        pcr_pid = VIDEO.pid;
    } else {
        audio_units(
            view,
            track,
            start,
            &samples,
            i128::MIN..i128::MAX,
            &mut units,
        )?;
        streams = vec![AUDIO];
        pcr_pid = AUDIO.pid;
    }
    // Interleave by decode time; video first on a tie (stable sort).
    units.sort_by_key(|u| u.dts90);

    let mut mux = Muxer::new(&streams, pcr_pid, sequence);
    mux.reserve(units.iter().map(|u| u.data.len() + 40).sum());
    mux.write_tables();
    for (i, u) in units.iter().enumerate() {
        let pcr = (u.stream.pid == pcr_pid).then(|| u.dts90.max(0) as u64);
        let last = !units[i + 1..].iter().any(|v| v.stream.pid == u.stream.pid);
        mux.write_pes(
            u.stream,
            ts_time(u.pts90),
            ts_time(u.dts90),
            u.keyframe && u.stream.pid == VIDEO.pid,
            pcr,
            &u.data,
            last,
        );
    }
    Ok(Response::ok(
        CONTENT_TYPE,
        CachePolicy::Immutable,
        mux.finish(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_shape_and_nothing_else() {
        assert_eq!(
            Resource::parse("Manifest(format=m3u8-aapl)"),
            Some(Resource::Multivariant)
        );
        assert_eq!(
            Resource::parse("m3u8-aapl/t0/index.m3u8"),
            Some(Resource::MediaPlaylist { track: 0 })
        );
        assert_eq!(
            Resource::parse("m3u8-aapl/t4294967295/18446744073709551615.ts"),
            Some(Resource::Segment {
                track: u32::MAX,
                start: u64::MAX
            })
        );
        let dir = media_playlist_uri(7);
        let dir = dir.trim_end_matches(MEDIA_PLAYLIST);
        assert_eq!(
            Resource::parse(&format!("{dir}{}", segment_uri(90))),
            Some(Resource::Segment {
                track: 7,
                start: 90
            })
        );
        for bad in [
            "",
            "Manifest(format=m3u8-cmaf)",
            "m3u8-aapl/t1/init.mp4",
            "m3u8-aapl/t1/12.m4s",
            "m3u8-aapl/t1/012.ts",
            "m3u8-aapl/t1/.ts",
            "m3u8-aapl/t01/index.m3u8",
            "m3u8-aapl/t1/index.m3u8/",
            "m3u8-cmaf/t1/12.ts",
            "m3u8-aapl/t1/18446744073709551616.ts",
        ] {
            assert_eq!(Resource::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ninety_khz_floors_and_wraps() {
        assert_eq!(to_90k(48_000, 48_000), 90_000);
        assert_eq!(to_90k(1, 48_000), 1);
        assert_eq!(to_90k(-1, 48_000), -2);
        assert_eq!(ts_time(-i128::from(TS_DELAY) - 5), 0);
        assert_eq!(ts_time(1 << 33), TS_DELAY);
    }
}
