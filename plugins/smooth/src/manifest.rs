//! The client manifest: the presentation's tracks grouped into
//! `StreamIndex` elements, each with its `QualityLevel`s and the `c`
//! chunk list of its first quality level.
//!
//! ```text
//! View::tracks() ─▶ streams(): [Stream { name, kind, language, levels: [Level { bitrate, track }] }]
//!                       │                      (also used to resolve fragment URLs)
//!                       ▼
//! View::fragments() ─▶ chunks(): c t/d/r runs ─▶ sdk xml::Element ─▶ text
//! ```
//!
//! Times: every `StreamIndex` carries its track's own `TimeScale`, so `t`
//! and `d` are the fragments' exact start times and durations in track
//! ticks, equal to the `tfxd` of each fragment and to the start in its URL,
//! with no rounding. The top-level `TimeScale` is the customary 10 MHz and
//! applies only to `Duration` and `DVRWindowLength`.
//!
//! Quality levels: the `{bitrate}` in a fragment URL must name one track of
//! its `StreamIndex`, so within one `StreamIndex` each track's declared
//! bitrate (or a default when it declares none) is raised by 1 bit/s until
//! it differs from every earlier one (tracks taken in view order, which
//! every node shares). Audio tracks are grouped per language into
//! `StreamIndex`es named `audio` (language unknown) or `audio_{lang}`.

use sluice_sdk::h264::AvcDecoderConfig;
use sluice_sdk::packaging::runs;
use sluice_sdk::plugin::{Fragment, PresentationState, TrackInfo, TrackKind, View};
use sluice_sdk::time::mul_div_round;
use sluice_sdk::xml::{Element, Style};

use crate::{Error, paths, timeline};

/// The manifest's own timescale (for `Duration` and `DVRWindowLength`).
pub const TIMESCALE: u64 = 10_000_000;

/// How the manifest spells its declaration and empty elements.
const XML_STYLE: Style = Style {
    encoding: "utf-8",
    empty_end: " />",
};

/// Fragments announced ahead in live `tfrf` boxes (`LookaheadCount`).
pub const LOOKAHEAD: usize = 2;

/// Bitrate assumed for a video track that declares none.
const DEFAULT_VIDEO_BITRATE: u32 = 1_000_000;
/// Bitrate assumed for an audio track that declares none.
const DEFAULT_AUDIO_BITRATE: u32 = 128_000;

/// One `QualityLevel`.
#[derive(Debug, Clone)]
pub struct Level {
    /// The `Bitrate` attribute, unique in its stream.
    pub bitrate: u32,
    /// The track.
    pub track: TrackInfo,
}

/// One `StreamIndex`.
#[derive(Debug, Clone)]
pub struct Stream {
    /// `Name`, also the key in fragment URLs.
    pub name: String,
    /// Video or audio.
    pub kind: TrackKind,
    /// BCP 47 language (audio), `und` when unknown.
    pub language: String,
    /// Quality levels, in view order.
    pub levels: Vec<Level>,
}

/// The `Name` of the audio `StreamIndex` for `language`: `audio`, or
/// `audio_` and the language lowercased with anything outside `[a-z0-9-]`
/// dropped.
fn audio_name(language: &str) -> String {
    let lang: String = language
        .chars()
        .filter_map(|c| {
            let c = c.to_ascii_lowercase();
            (c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-').then_some(c)
        })
        .take(32)
        .collect();
    if lang.is_empty() || lang == "und" {
        "audio".into()
    } else {
        format!("audio_{lang}")
    }
}

/// Whether the packager can describe this track in a manifest.
fn supported(t: &TrackInfo) -> bool {
    match t.kind {
        TrackKind::Video => t.fourcc == "avc1" || t.fourcc == "avc3",
        TrackKind::Audio => t.fourcc == "mp4a",
        _ => false,
    }
}

/// The presentation's streams: one video `StreamIndex`, one audio
/// `StreamIndex` per language; unsupported tracks are left out.
pub fn streams(view: &dyn View) -> Vec<Stream> {
    let mut out: Vec<Stream> = Vec::new();
    for track in view.tracks().into_iter().filter(supported) {
        let name = match track.kind {
            TrackKind::Video => "video".to_owned(),
            _ => audio_name(&track.language),
        };
        let at = match out.iter().position(|s| s.name == name) {
            Some(at) => at,
            None => {
                out.push(Stream {
                    name,
                    kind: track.kind,
                    language: track.language.clone(),
                    levels: Vec::new(),
                });
                out.len() - 1
            }
        };
        let stream = &mut out[at];
        let mut bitrate = match (track.bitrate, track.kind) {
            (0, TrackKind::Video) => DEFAULT_VIDEO_BITRATE,
            (0, _) => DEFAULT_AUDIO_BITRATE,
            (b, _) => b,
        };
        while stream.levels.iter().any(|l| l.bitrate == bitrate) {
            bitrate = bitrate.wrapping_add(1).max(1);
        }
        stream.levels.push(Level { bitrate, track });
    }
    out
}

/// The track a fragment URL names.
pub fn find_level(view: &dyn View, stream: &str, bitrate: u32) -> Result<TrackInfo, Error> {
    streams(view)
        .into_iter()
        .find(|s| s.name == stream)
        .and_then(|s| s.levels.into_iter().find(|l| l.bitrate == bitrate))
        .map(|l| l.track)
        .ok_or_else(|| Error::NotFound(format!("no quality level {bitrate} in stream {stream}")))
}

/// Upper-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// `CodecPrivateData` of a video track (its SPS and PPS in Annex B form)
/// and its NAL unit length size.
fn video_private(track: &TrackInfo) -> Result<(String, u8), Error> {
    let config = AvcDecoderConfig::parse(&track.codec_private)
        .map_err(|e| Error::Codec(format!("track {}: avcC: {e}", track.id)))?;
    let mut out = Vec::new();
    config.write_parameter_sets_annex_b(&mut out);
    Ok((hex(&out), config.nal_length_size))
}

/// `c` elements for a list of fragments: `t` on the first and after every
/// gap or discontinuity, runs of equal durations folded into `r`
/// (MS-SSTR 2.2.2.6: `r` counts the fragments of the run, this one
/// included, so it is written only when above 1).
pub fn chunks(fragments: &[Fragment]) -> Vec<Element> {
    runs(fragments)
        .into_iter()
        .map(|run| {
            Element::new("c")
                .number_opt("t", run.t)
                .number("d", run.d)
                .number_opt("r", (run.r > 0).then_some(run.r + 1))
        })
        .collect()
}

/// The client manifest.
pub fn manifest(view: &dyn View) -> Result<String, Error> {
    let info = view.info();
    let live = info.state == PresentationState::Live;
    let streams = streams(view);
    if streams.is_empty() {
        return Err(Error::NotFound("no tracks yet".into()));
    }
    let mut duration = 0u64;
    let mut children = Vec::new();
    for stream in &streams {
        let Some(first) = stream.levels.first() else {
            continue;
        };
        let timescale = u64::from(first.track.timescale.max(1));
        let fragments = timeline::fragments(view, first.track.id);
        if let (Some(a), Some(b)) = (fragments.first(), fragments.last()) {
            let span = b.start.saturating_add(b.duration).saturating_sub(a.start);
            duration = duration.max(mul_div_round(span, TIMESCALE, timescale)?);
        }
        let kind = match stream.kind {
            TrackKind::Video => "video",
            _ => "audio",
        };
        let max_w = stream.levels.iter().map(|l| l.track.width).max();
        let max_h = stream.levels.iter().map(|l| l.track.height).max();
        let video = stream.kind == TrackKind::Video;
        let mut index = Element::new("StreamIndex")
            .attr("Type", kind)
            .attr("Name", &stream.name)
            .attr_opt(
                "Language",
                (!video && stream.language != "und" && !stream.language.is_empty())
                    .then_some(&stream.language),
            )
            .attr("Chunks", fragments.len())
            .attr("QualityLevels", stream.levels.len())
            .attr("TimeScale", timescale)
            .attr("Url", paths::url_template(&stream.name));
        if video {
            index = index
                .attr_opt("MaxWidth", max_w)
                .attr_opt("MaxHeight", max_h)
                .attr_opt("DisplayWidth", max_w)
                .attr_opt("DisplayHeight", max_h);
        }
        for (i, level) in stream.levels.iter().enumerate() {
            let t = &level.track;
            let q = Element::new("QualityLevel")
                .attr("Index", i)
                .attr("Bitrate", level.bitrate);
            let q = if video {
                let (private, nal_length) = video_private(t)?;
                // Smooth assumes 4-byte NAL unit lengths unless told.
                q.attr("FourCC", "AVC1")
                    .attr("MaxWidth", t.width)
                    .attr("MaxHeight", t.height)
                    .attr("CodecPrivateData", private)
                    .attr_opt(
                        "NALUnitLengthField",
                        (nal_length != 4).then_some(nal_length),
                    )
            } else {
                let channels = t.channels.max(1);
                q.attr("FourCC", "AACL")
                    .attr("SamplingRate", t.sample_rate)
                    .attr("Channels", channels)
                    .attr("BitsPerSample", 16)
                    .attr("PacketSize", u32::from(channels) * 2)
                    .attr("AudioTag", 255)
                    .attr("CodecPrivateData", hex(&t.codec_private))
            };
            index = index.child(q);
        }
        for c in chunks(&fragments) {
            index = index.child(c);
        }
        children.push(index);
    }
    let mut root = Element::new("SmoothStreamingMedia")
        .attr("MajorVersion", 2)
        .attr("MinorVersion", 2)
        .attr("TimeScale", TIMESCALE);
    root = if live {
        root.attr("Duration", 0)
            .attr("IsLive", "TRUE")
            .attr("LookaheadCount", LOOKAHEAD)
            .attr(
                "DVRWindowLength",
                info.window_ms.saturating_mul(TIMESCALE / 1000),
            )
    } else {
        root.attr("Duration", duration)
    };
    for c in children {
        root = root.child(c);
    }
    Ok(root.document(XML_STYLE))
}

#[cfg(test)]
mod tests {
    use super::*;

    use sluice_sdk::testing::fragment as f;

    fn text(cs: &[Element]) -> String {
        cs.iter()
            .map(|c| {
                c.document(XML_STYLE)
                    .lines()
                    .nth(1)
                    .unwrap_or("")
                    .to_owned()
            })
            .collect::<Vec<_>>()
            .join("")
    }

    #[test]
    fn chunk_runs() {
        let frags = [
            f(100, 10, false),
            f(110, 10, false),
            f(120, 10, false),
            f(130, 5, false),
            f(200, 10, false), // gap
            f(210, 10, true),  // discontinuity without a gap
            f(220, 10, false),
        ];
        assert_eq!(
            text(&chunks(&frags)),
            "<c t=\"100\" d=\"10\" r=\"3\" /><c d=\"5\" /><c t=\"200\" d=\"10\" />\
             <c t=\"210\" d=\"10\" r=\"2\" />"
        );
        assert!(chunks(&[]).is_empty());
    }

    #[test]
    fn audio_names() {
        assert_eq!(audio_name("und"), "audio");
        assert_eq!(audio_name(""), "audio");
        assert_eq!(audio_name("en"), "audio_en");
        assert_eq!(audio_name("pt-BR"), "audio_pt-br");
        assert_eq!(audio_name("x\"<>y"), "audio_xy");
    }
}
