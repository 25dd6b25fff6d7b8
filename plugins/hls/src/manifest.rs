//! Playlist models built from the presentation view.

use sluice_sdk::packaging::{self, bmff_servable, iframe_peak_bandwidth, iframe_playlist_uri};
use sluice_sdk::plugin::{Fragment, PresentationState, TrackInfo, TrackKind, View};
use sluice_sdk::time::{mul_div_ceil, mul_div_round};

use crate::paths::{SEGMENT_SUFFIX, init_uri, media_playlist_uri};
use crate::playlist::{
    AudioRendition, IFrameStream, MediaPlaylist, MultivariantPlaylist, Segment, VERSION,
    VariantStream,
};
use crate::{Error, timeline};

/// The one audio group.
pub(crate) const AUDIO_GROUP: &str = "audio";

/// Bytes a segment adds to its payload, at most: `styp`, `moof` without
/// its sample table, `mdat` header (see `segments.rs`); plus
/// [`OVERHEAD_PER_SAMPLE`] per sample.
const OVERHEAD_PER_SEGMENT: u64 = 160;
/// `trun` bytes per sample.
const OVERHEAD_PER_SAMPLE: u64 = 16;

/// The track with this id, if this format can serve it (video or audio
/// with a sample entry the SDK can describe).
pub fn find_track(view: &dyn View, id: u32) -> Result<TrackInfo, Error> {
    packaging::find_track(view, id, bmff_servable)
}

/// A track with its fragments and bit rates.
struct Summary {
    track: TrackInfo,
    fragments: Vec<Fragment>,
    /// Peak segment bit rate, bit/s.
    peak: u64,
    /// Average bit rate over the window, bit/s.
    average: u64,
}

impl Summary {
    fn new(view: &dyn View, track: TrackInfo) -> Result<Option<Summary>, Error> {
        let fragments = timeline::fragments(view, track.id);
        if fragments.is_empty() {
            return Ok(None);
        }
        let ts = u64::from(track.timescale);
        let (mut peak, mut bits, mut ticks) = (0u64, 0u64, 0u64);
        for f in &fragments {
            let bytes = u64::from(f.size)
                + OVERHEAD_PER_SEGMENT
                + OVERHEAD_PER_SAMPLE * u64::from(f.sample_count);
            let b = bytes * 8;
            if f.duration > 0 {
                // Round up: BANDWIDTH must not understate any segment.
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

/// The RFC 6381 codec string: the track's own, or derived from its
/// configuration when the track has none.
pub(crate) fn codec(track: &TrackInfo) -> Option<String> {
    if !track.codec.is_empty() {
        return Some(track.codec.clone());
    }
    let c = &track.codec_private;
    match track.fourcc.as_str() {
        // avcC: version, profile, compatibility, level.
        "avc1" if c.len() >= 4 => Some(format!("avc1.{:02x}{:02x}{:02x}", c[1], c[2], c[3])),
        // AudioSpecificConfig: 5-bit object type, 31 escapes to 6 more bits.
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

/// The multivariant playlist: audio tracks as one rendition group, one
/// variant per video track (or per audio track when there is no video),
/// and with `iframes` (the host serves [`packaging::IFRAMES_FORMAT`]) each video
/// track's I-frame playlist. [`Error::NotFound`] while no track has a
/// fragment.
pub fn multivariant(view: &dyn View, iframes: bool) -> Result<MultivariantPlaylist, Error> {
    let mut videos = Vec::new();
    let mut audios = Vec::new();
    for t in view.tracks().into_iter().filter(bmff_servable) {
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
                codecs: codec(&a.track).into_iter().collect(),
                resolution: None,
                frame_rate_milli: None,
                audio_group: None,
                uri: media_playlist_uri(a.track.id),
            })
            .collect();
        return Ok(MultivariantPlaylist {
            version: VERSION,
            renditions: Vec::new(),
            variants,
            iframe_streams: Vec::new(),
        });
    }

    let groups = audio_groups(&audios);
    let mut renditions = Vec::new();
    for (id, members) in &groups {
        let tracks = members.iter().map(|a| &a.track);
        for (mut r, a) in audio_renditions(tracks).into_iter().zip(members) {
            r.group_id = id.clone();
            r.uri = Some(media_playlist_uri(a.track.id));
            renditions.push(r);
        }
    }

    let mut variants = Vec::new();
    for v in &videos {
        let t = &v.track;
        let newest = v.fragments.last().map(|f| f.start);
        let frame_rate_milli = newest
            .and_then(|start| view.samples(t.id, start))
            .and_then(|s| timeline::frame_rate_milli(&s, t));
        // One variant per audio group (or one without audio). A variant may
        // play with any rendition of its group: count the largest, list
        // every codec.
        let no_audio = [(String::new(), Vec::new())];
        let pairs = if groups.is_empty() {
            &no_audio[..]
        } else {
            &groups[..]
        };
        for (id, members) in pairs {
            let audio_peak = members.iter().map(|a| a.peak).max().unwrap_or(0);
            let audio_average = members.iter().map(|a| a.average).max().unwrap_or(0);
            let mut codecs: Vec<String> = codec(t).into_iter().collect();
            for c in members.iter().filter_map(|a| codec(&a.track)) {
                if !codecs.contains(&c) {
                    codecs.push(c);
                }
            }
            variants.push(VariantStream {
                bandwidth: v.peak.saturating_add(audio_peak),
                average_bandwidth: Some(v.average.saturating_add(audio_average)),
                codecs,
                resolution: (t.width > 0 && t.height > 0).then_some((t.width, t.height)),
                frame_rate_milli,
                audio_group: (!members.is_empty()).then(|| id.clone()),
                uri: media_playlist_uri(t.id),
            });
        }
    }
    let iframe_streams = if iframes {
        videos.iter().map(|v| iframe_stream(view, v)).collect()
    } else {
        Vec::new()
    };
    Ok(MultivariantPlaylist {
        version: VERSION,
        renditions,
        variants,
        iframe_streams,
    })
}

/// Fragments the I-frame bandwidth is measured over (the newest).
const IFRAME_WINDOW: usize = 3;

/// The I-frame playlist of video track `v`, as another plugin serves it.
fn iframe_stream(view: &dyn View, v: &Summary) -> IFrameStream {
    let t = &v.track;
    let newest = &v.fragments[v.fragments.len().saturating_sub(IFRAME_WINDOW)..];
    // A keyframe's own moof and mdat headers ride along with it.
    let bandwidth =
        iframe_peak_bandwidth(view, t, newest, OVERHEAD_PER_SEGMENT, OVERHEAD_PER_SAMPLE);
    IFrameStream {
        // Without sample tables at hand, no more than the whole stream.
        bandwidth: if bandwidth > 0 { bandwidth } else { v.peak },
        codecs: codec(t).into_iter().collect(),
        resolution: (t.width > 0 && t.height > 0).then_some((t.width, t.height)),
        uri: iframe_playlist_uri(t.id),
    }
}

/// The media playlist of one track: every fragment the view holds.
/// [`Error::NotFound`] for an unknown track or one without fragments.
pub fn media(view: &dyn View, id: u32) -> Result<MediaPlaylist, Error> {
    let track = find_track(view, id)?;
    media_of(
        view,
        &track,
        &Layout {
            version: VERSION,
            map_uri: Some(init_uri().into()),
            segment_suffix: SEGMENT_SUFFIX,
            discontinuity_sequence: false,
            hold_back: &|_| 0,
        },
    )
}

/// The audio rendition groups: one group `audio` when no language has
/// audio at distinct bitrates; otherwise one group per bitrate tier, as the
/// HLS authoring guidelines ask (a group must not mix bitrates of one
/// language, or a player cannot adapt audio): group `audio-1` holds each
/// language's highest tier, `audio-2` the next, and so on; a language with
/// fewer tiers repeats its lowest. Within a language, a track starts a new
/// tier when its peak is under [`TIER_STEP_PERCENT`] of the tier's highest;
/// tracks closer than that (the same audio sent with each video rendition)
/// share a tier. Languages keep the order of their first track.
fn audio_groups(audios: &[Summary]) -> Vec<(String, Vec<&Summary>)> {
    let mut languages: Vec<(&str, Vec<&Summary>)> = Vec::new();
    for a in audios {
        let l = a.track.language.as_str();
        match languages.iter_mut().find(|(k, _)| *k == l) {
            Some((_, v)) => v.push(a),
            None => languages.push((l, vec![a])),
        }
    }
    let tiers: Vec<Vec<Vec<&Summary>>> = languages
        .into_iter()
        .map(|(_, mut tracks)| {
            // Highest peak first; the track id breaks ties, so the order is stable.
            tracks.sort_by(|a, b| b.peak.cmp(&a.peak).then(a.track.id.cmp(&b.track.id)));
            let mut tiers: Vec<Vec<&Summary>> = Vec::new();
            for t in tracks {
                match tiers.last_mut() {
                    Some(tier)
                        if u128::from(t.peak) * 100
                            >= u128::from(tier[0].peak) * u128::from(TIER_STEP_PERCENT) =>
                    {
                        tier.push(t)
                    }
                    _ => tiers.push(vec![t]),
                }
            }
            tiers
        })
        .collect();
    let count = tiers.iter().map(Vec::len).max().unwrap_or(0);
    match count {
        0 => Vec::new(),
        1 => vec![(AUDIO_GROUP.to_owned(), audios.iter().collect())],
        _ => (0..count)
            .map(|k| {
                let members = tiers
                    .iter()
                    .filter_map(|t| t.get(k).or(t.last()))
                    .flatten()
                    .copied()
                    .collect();
                (format!("{AUDIO_GROUP}-{}", k + 1), members)
            })
            .collect(),
    }
}

/// A track whose peak bit rate is at least this share (percent) of a
/// tier's highest belongs to that tier.
const TIER_STEP_PERCENT: u64 = 80;

/// The `EXT-X-MEDIA` audio renditions of `tracks`, first one default,
/// without URIs (the caller knows where each is carried). `NAME` is the
/// stream name, or the language, or `audio {id}`; names must be unique in
/// a group, so a repeated one gains the language (`main (fr)`), or else
/// the track id.
pub(crate) fn audio_renditions<'a>(
    tracks: impl IntoIterator<Item = &'a TrackInfo>,
) -> Vec<AudioRendition> {
    let mut out: Vec<AudioRendition> = Vec::new();
    for (i, t) in tracks.into_iter().enumerate() {
        let language = (!t.language.is_empty() && t.language != "und").then(|| t.language.clone());
        let mut name = match (&language, t.stream.is_empty()) {
            (_, false) => t.stream.clone(),
            (Some(l), true) => l.clone(),
            (None, true) => format!("audio {}", t.id),
        };
        let taken = |n: &str| out.iter().any(|r| r.name == n);
        if taken(&name)
            && let Some(l) = &language
        {
            name = format!("{name} ({l})");
        }
        if taken(&name) {
            name = format!("{name} ({})", t.id);
        }
        out.push(AudioRendition {
            group_id: AUDIO_GROUP.into(),
            name,
            language,
            default: i == 0,
            autoselect: true,
            channels: (t.channels > 0).then_some(t.channels),
            uri: None,
        });
    }
    out
}

/// What differs between the formats' media playlists.
pub(crate) struct Layout<'a> {
    /// `EXT-X-VERSION`.
    pub version: u32,
    /// `EXT-X-MAP`, if any.
    pub map_uri: Option<String>,
    /// What follows a segment's start in its URI.
    pub segment_suffix: &'static str,
    /// Whether to write `EXT-X-DISCONTINUITY-SEQUENCE` when it is 0 (it is
    /// always written when not).
    pub discontinuity_sequence: bool,
    /// Fragments not to list yet: given the fragment list, how many of the
    /// newest to leave out.
    pub hold_back: &'a dyn Fn(&[Fragment]) -> usize,
}

/// The media playlist of `track`, laid out as `layout` says.
pub(crate) fn media_of(
    view: &dyn View,
    track: &TrackInfo,
    layout: &Layout<'_>,
) -> Result<MediaPlaylist, Error> {
    let (id, track) = (track.id, track.clone());
    let info = view.info();
    let mut fragments = timeline::fragments(view, id);
    let held = (layout.hold_back)(&fragments).min(fragments.len());
    fragments.truncate(fragments.len() - held);
    let first = fragments
        .first()
        .ok_or_else(|| Error::NotFound(format!("no fragments in track {id} yet")))?;
    let media_sequence = timeline::sequence_number(first.start, &track, info.fragment_duration_ms)?;

    // RFC 8216: every EXTINF, rounded to the nearest integer, is at most
    // the target duration. Rounding (not ceiling) keeps audio, whose
    // fragments overshoot the grid by part of a frame, on the same target
    // as video. Never below the fragment grid.
    let mut target_duration = u64::from(info.fragment_duration_ms).div_ceil(1000).max(1);
    let mut segments = Vec::with_capacity(fragments.len());
    for (i, f) in fragments.iter().enumerate() {
        target_duration = target_duration.max(timeline::round_seconds(f.duration, &track)?);
        let program_date_time_ms = match info.epoch_ms {
            Some(epoch) => {
                let offset = i64::try_from(timeline::ticks_to_ms(f.start, &track)?)
                    .map_err(|_| Error::Overflow("program date time"))?;
                Some(
                    epoch
                        .checked_add(offset)
                        .ok_or(Error::Overflow("program date time"))?,
                )
            }
            None => None,
        };
        segments.push(Segment {
            duration_ms: timeline::ticks_to_ms_round(f.duration, &track)?,
            program_date_time_ms,
            // Nothing listed precedes the first segment to be discontinuous with.
            discontinuity: f.discontinuity && i > 0,
            start: f.start,
        });
    }
    // EXT-X-DISCONTINUITY-SEQUENCE: the host numbers discontinuities per
    // track, so the first listed fragment's number stays right after older
    // discontinuities slide out, on every node.
    let first_sequence = fragments.first().map_or(0, |f| f.discontinuity_sequence);
    let discontinuity_sequence =
        (layout.discontinuity_sequence || first_sequence > 0).then_some(u64::from(first_sequence));
    Ok(MediaPlaylist {
        version: layout.version,
        target_duration,
        media_sequence,
        discontinuity_sequence,
        map_uri: layout.map_uri.clone(),
        segment_suffix: layout.segment_suffix,
        segments,
        end_list: info.state == PresentationState::Ended,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::plugin::{MemoryView, SampleEntry};

    #[test]
    fn audio_bitrates_of_one_language_go_to_groups_by_tier() {
        // Video and audio tracks (id, language, bytes per 2 s fragment).
        let build = |audio: &[(u32, &str, u32)]| {
            let mut view = MemoryView::new(PresentationState::Ended, 2000, None);
            let mut video = TrackInfo::new(1, TrackKind::Video, 90_000);
            video.fourcc = "avc1".into();
            video.codec = "avc1.64001f".into();
            view.add_track(video);
            let sample = |duration, size| SampleEntry {
                duration,
                size,
                composition_offset: 0,
                keyframe: true,
            };
            view.push(
                1,
                0,
                vec![sample(180_000, 250_000)],
                vec![0; 250_000],
                false,
            );
            for &(id, language, size) in audio {
                let mut t = TrackInfo::new(id, TrackKind::Audio, 48_000);
                t.fourcc = "mp4a".into();
                t.codec = "mp4a.40.2".into();
                t.language = language.into();
                t.stream = format!("a{id}");
                view.add_track(t);
                view.push(
                    id,
                    0,
                    vec![sample(96_000, size)],
                    vec![0; size as usize],
                    false,
                );
            }
            multivariant(&view, false).expect("multivariant")
        };
        // English at 128 and 64 kbit/s, French at 96 kbit/s.
        let m = build(&[(2, "en", 32_000), (3, "en", 16_000), (4, "fr", 24_000)]);
        let groups: Vec<(&str, &str)> = m
            .renditions
            .iter()
            .map(|r| (r.group_id.as_str(), r.name.as_str()))
            .collect();
        assert_eq!(
            groups,
            [
                ("audio-1", "a2"),
                ("audio-1", "a4"),
                ("audio-2", "a3"),
                ("audio-2", "a4")
            ]
        );
        // One variant per group, each counting its own group's peak.
        let variants: Vec<(Option<&str>, u64)> = m
            .variants
            .iter()
            .map(|v| (v.audio_group.as_deref(), v.bandwidth))
            .collect();
        assert_eq!(variants.len(), 2);
        assert_eq!(variants[0].0, Some("audio-1"));
        assert_eq!(variants[1].0, Some("audio-2"));
        assert!(variants[0].1 > variants[1].1, "{variants:?}");
        assert!(m.variants.iter().all(|v| v.uri == m.variants[0].uri));
        // One track per language, or tracks of one language within 20 % of
        // each other (the same audio sent with each video rendition): one
        // group, as before.
        for audio in [
            &[(2, "en", 32_000), (4, "fr", 24_000)][..],
            &[(2, "und", 16_000), (3, "und", 15_000)][..],
        ] {
            let m = build(audio);
            assert!(
                m.renditions.iter().all(|r| r.group_id == AUDIO_GROUP),
                "{m:?}"
            );
            assert_eq!(m.variants.len(), 1);
        }
    }

    #[test]
    fn rendition_names_are_unique_and_say_the_language() {
        let audio = |id, stream: &str, language: &str| {
            let mut t = TrackInfo::new(id, TrackKind::Audio, 48_000);
            t.stream = stream.into();
            t.language = language.into();
            t
        };
        let tracks = [
            audio(2, "main", "en"),
            audio(3, "main", "fr"),
            audio(4, "main", "fr"),
            audio(5, "", "de"),
            audio(6, "", "und"),
        ];
        let r = audio_renditions(&tracks);
        let names: Vec<&str> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["main", "main (fr)", "main (fr) (4)", "de", "audio 6"]
        );
        assert_eq!(r[1].language.as_deref(), Some("fr"));
        assert_eq!(r[4].language, None);
        assert!(r[0].default && !r[1].default);
    }

    #[test]
    fn codec_strings_fall_back_to_the_configuration() {
        let mut v = TrackInfo::new(1, TrackKind::Video, 90_000);
        v.fourcc = "avc1".into();
        v.codec_private = vec![1, 0x64, 0x00, 0x1f, 0xff];
        assert_eq!(codec(&v).as_deref(), Some("avc1.64001f"));
        v.codec = "avc1.4d401e".into();
        assert_eq!(codec(&v).as_deref(), Some("avc1.4d401e"));
        let mut a = TrackInfo::new(2, TrackKind::Audio, 48_000);
        a.fourcc = "mp4a".into();
        a.codec_private = vec![0x11, 0x90];
        assert_eq!(codec(&a).as_deref(), Some("mp4a.40.2"));
        a.codec_private = vec![0x2b, 0x92, 0x08, 0x00]; // HE-AAC (5)
        assert_eq!(codec(&a).as_deref(), Some("mp4a.40.5"));
        a.codec_private = vec![0xf8, 0x40]; // escape: 32 + 2 = 34
        assert_eq!(codec(&a).as_deref(), Some("mp4a.40.34"));
        a.codec_private.clear();
        assert_eq!(codec(&a), None);
    }
}
