//! Which media the manifest offers, what each lists, and the F4M text.
//!
//! ```text
//! tracks ─▶ medias: one per video track (+ the default audio track muxed in),
//!                   or one per audio track when there is no video
//!        ─▶ listed: the primary track's fragments, numbered from media time
//!                   (live: only up to the last number the muxed audio has too)
//!        ─▶ <manifest> id, streamType, deliveryType, [duration],
//!             <bootstrapInfo id=bootstrap{t}> inline abst (ended) | url= (live)
//!             <media url=f4m-f4f/t{t}/ bitrate width height bootstrapInfoId>
//!               <metadata> base64 AMF0 onMetaData
//! ```

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sluice_sdk::amf0::{self, Value};
use sluice_sdk::plugin::{PresentationState, TrackInfo, TrackKind, View};

use crate::{Error, abst, paths, timeline};

/// A media element: one FLV stream.
#[derive(Debug, Clone)]
pub struct Media {
    /// The track that names the media and numbers its fragments.
    pub primary: TrackInfo,
    /// The audio track muxed into a video media.
    pub audio: Option<TrackInfo>,
}

/// The media of a presentation, in track order.
pub fn medias(view: &dyn View) -> Vec<Media> {
    let tracks = view.tracks();
    let audio = tracks.iter().find(|t| t.kind == TrackKind::Audio).cloned();
    let videos: Vec<&TrackInfo> = tracks
        .iter()
        .filter(|t| t.kind == TrackKind::Video)
        .collect();
    if videos.is_empty() {
        return tracks
            .iter()
            .filter(|t| t.kind == TrackKind::Audio)
            .map(|t| Media {
                primary: t.clone(),
                audio: None,
            })
            .collect();
    }
    videos
        .into_iter()
        .map(|v| Media {
            primary: v.clone(),
            audio: audio.clone(),
        })
        .collect()
}

/// The media whose primary track is `track`.
pub fn find_media(view: &dyn View, track: u32) -> Result<Media, Error> {
    medias(view)
        .into_iter()
        .find(|m| m.primary.id == track)
        .ok_or_else(|| Error::NotFound(format!("no media t{track}")))
}

/// The fragments a media's bootstrap lists, oldest first.
pub fn listed(view: &dyn View, media: &Media) -> Result<Vec<abst::Listed>, Error> {
    let grid = view.info().fragment_duration_ms;
    let track = &media.primary;
    // Live, a video fragment is only complete once its audio fragment is
    // there: never list a number the muxed audio has not reached. Ended,
    // what is there is all there will be.
    let live = view.info().state == PresentationState::Live;
    let limit = match media.audio.as_ref().filter(|_| live) {
        Some(a) => match timeline::fragments(view, a.id).last() {
            Some(f) => Some(timeline::fragment_number(f.start, a, grid)?),
            None => None,
        },
        None => None,
    };
    let mut out = Vec::new();
    for f in timeline::fragments(view, track.id) {
        let number = timeline::fragment_number(f.start, track, grid)?;
        if limit.is_some_and(|l| number > l) {
            break;
        }
        let end = f
            .start
            .checked_add(f.duration)
            .ok_or(Error::Overflow("fragment end"))?;
        let start_ms = timeline::ticks_to_ms(f.start, track)?;
        let end_ms = timeline::ticks_to_ms(end, track)?;
        out.push(abst::Listed {
            number,
            start_ms,
            duration_ms: end_ms.saturating_sub(start_ms),
            discontinuity: f.discontinuity,
        });
    }
    Ok(out)
}

/// A media's bootstrap box.
pub fn bootstrap(view: &dyn View, media: &Media) -> Result<Vec<u8>, Error> {
    let info = view.info();
    let listed = listed(view, media)?;
    let last = listed.last();
    abst::write(
        &abst::Header {
            live: info.state == PresentationState::Live,
            version: last.map_or(0, |l| l.number),
            current_media_time: last.map_or(0, |l| l.start_ms + l.duration_ms),
        },
        &listed,
        info.state == PresentationState::Ended,
    )
}

/// Average bitrate in kbit/s of a track: declared, or estimated from the
/// fragments the view holds.
fn kbps(view: &dyn View, track: &TrackInfo) -> u64 {
    if track.bitrate > 0 {
        return u64::from(track.bitrate).div_ceil(1000);
    }
    let (bytes, ticks) =
        timeline::fragments(view, track.id)
            .iter()
            .fold((0u64, 0u64), |(b, t), f| {
                (
                    b.saturating_add(u64::from(f.size)),
                    t.saturating_add(f.duration),
                )
            });
    if ticks == 0 {
        return 0;
    }
    sluice_sdk::time::mul_div_round(bytes, 8 * u64::from(track.timescale), ticks * 1000)
        .unwrap_or(0)
}

/// The AMF0 `onMetaData` script data of a media.
pub fn metadata(
    media: &Media,
    duration_s: Option<f64>,
    video_kbps: u64,
    audio_kbps: u64,
) -> Vec<u8> {
    let mut props: Vec<(String, Value)> = Vec::new();
    let mut put = |k: &str, v: f64| props.push((k.to_owned(), Value::Number(v)));
    if let Some(d) = duration_s {
        put("duration", d);
    }
    let audio = match media.primary.kind {
        TrackKind::Video => {
            put("width", f64::from(media.primary.width));
            put("height", f64::from(media.primary.height));
            put("videocodecid", 7.0);
            put("videodatarate", video_kbps as f64);
            media.audio.as_ref()
        }
        _ => Some(&media.primary),
    };
    if let Some(a) = audio {
        put("audiocodecid", 10.0);
        put("audiosamplerate", f64::from(a.sample_rate));
        put("audiochannels", f64::from(a.channels));
        put("audiodatarate", audio_kbps as f64);
    }
    let name = Value::string("onMetaData");
    let array = Value::EcmaArray(props);
    amf0::encode_all([&name, &array])
}

/// The F4M manifest.
pub fn manifest(view: &dyn View) -> Result<String, Error> {
    let info = view.info();
    let live = info.state == PresentationState::Live;
    let medias = medias(view);
    let first = medias
        .first()
        .ok_or_else(|| Error::NotFound("no media yet".into()))?;
    let id = if first.primary.stream.is_empty() {
        "live"
    } else {
        first.primary.stream.as_str()
    };

    let mut out = String::new();
    let _ = writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(out, r#"<manifest xmlns="http://ns.adobe.com/f4m/1.0">"#);
    let _ = writeln!(out, "  <id>{}</id>", xml_escape(id));
    let _ = writeln!(
        out,
        "  <streamType>{}</streamType>",
        if live { "live" } else { "recorded" }
    );
    let _ = writeln!(out, "  <deliveryType>streaming</deliveryType>");

    let mut duration_s = None;
    if !live {
        let listed = listed(view, first)?;
        if let (Some(a), Some(b)) = (listed.first(), listed.last()) {
            let ms = (b.start_ms + b.duration_ms).saturating_sub(a.start_ms);
            let _ = writeln!(out, "  <duration>{}.{:03}</duration>", ms / 1000, ms % 1000);
            duration_s = Some(ms as f64 / 1000.0);
        }
    }

    let mut elements = String::new();
    for media in &medias {
        let t = media.primary.id;
        let bootstrap_id = format!("bootstrap{t}");
        if live {
            // Live clients re-read the bootstrap from its URL.
            let _ = writeln!(
                out,
                r#"  <bootstrapInfo profile="named" id="{bootstrap_id}" url="{}"/>"#,
                paths::bootstrap_url(t)
            );
        } else {
            let _ = writeln!(
                out,
                r#"  <bootstrapInfo profile="named" id="{bootstrap_id}">{}</bootstrapInfo>"#,
                BASE64.encode(bootstrap(view, media)?)
            );
        }
        let primary_kbps = kbps(view, &media.primary);
        let audio_kbps = media.audio.as_ref().map_or(0, |a| kbps(view, a));
        let (video_kbps, audio_kbps) = match media.primary.kind {
            TrackKind::Video => (primary_kbps, audio_kbps),
            _ => (0, primary_kbps),
        };
        let _ = write!(
            elements,
            r#"  <media streamId="t{t}" url="{}" bitrate="{}""#,
            paths::media_url(t),
            video_kbps + audio_kbps
        );
        if media.primary.kind == TrackKind::Video {
            let _ = write!(
                elements,
                r#" width="{}" height="{}""#,
                media.primary.width, media.primary.height
            );
        }
        let _ = writeln!(elements, r#" bootstrapInfoId="{bootstrap_id}">"#);
        let _ = writeln!(
            elements,
            "    <metadata>{}</metadata>",
            BASE64.encode(metadata(media, duration_s, video_kbps, audio_kbps))
        );
        let _ = writeln!(elements, "  </media>");
    }
    out.push_str(&elements);
    out.push_str("</manifest>\n");
    Ok(out)
}

/// Escapes text for an XML element or attribute.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_xml() {
        assert_eq!(xml_escape("a<b>&\"'\n"), "a&lt;b&gt;&amp;&quot;&apos;");
    }
}
