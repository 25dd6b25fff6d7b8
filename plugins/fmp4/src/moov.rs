//! The movie box: which tracks the stream carries and how each is
//! published.
//!
//! ```text
//!   moov ─┬─ trak ─ tkhd (track_ID) ─ mdia ─┬─ mdhd (timescale, language)
//!         │                                 ├─ hdlr (vide, soun, ...)
//!         │                                 └─ minf ─ stbl ─ stsd ─ avc1 | avc3 (avcC, btrt)
//!         │                                                       mp4a (esds → AudioSpecificConfig)
//!         └─ mvex ─ trex (per-track sample defaults)
//! ```
//!
//! H.264 (`avc1`, `avc3`) and AAC (`mp4a` with an MPEG-4 audio `esds`)
//! tracks are published; any other track is kept as [`Publication::Unpublished`]
//! so its fragments are recognised and dropped. `avc3` is published as
//! `avc1`: its parameter sets may travel in-band only, in which case the
//! track is declared once the first sample carrying an SPS and a PPS
//! arrives ([`Output::needs_parameter_sets`]).
//!
//! AAC is published in a timescale equal to its (core) sample rate, as the
//! RTMP adapter does, so AAC frames step by exactly 1024 ticks; a stream
//! whose `mdhd` says otherwise (Smooth encoders use 10 MHz for every track)
//! is rescaled by the session.

use sluice_sdk::aac::AudioSpecificConfig;
use sluice_sdk::bmff::esds::OBJECT_TYPE_MPEG4_AUDIO;
use sluice_sdk::bmff::{
    self, Avc1, BmffBox, BoxRef, FourCC, Mp4a, Mvex, Reader, SampleDescription, Trak, Trex,
    language_code, language_tag,
};
use sluice_sdk::h264::AvcDecoderConfig;
use sluice_sdk::plugin::{TrackInfo, TrackKind};

use crate::error::{Error, Result};
use crate::manifest::LiveManifest;

const MOOV: FourCC = FourCC::new(b"moov");

/// Most `trak`s read from one `moov`, published or not.
pub const MAX_TRAKS: usize = 256;
const AVC3: FourCC = FourCC::new(b"avc3");
const BTRT: FourCC = FourCC::new(b"btrt");

/// One track of the movie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovieTrack {
    /// `tkhd` track id; the id of the published track too.
    pub id: u32,
    /// `mdhd` timescale: the unit of every time in the track's fragments.
    pub media_timescale: u32,
    /// Sample defaults from `mvex/trex` (all zero when absent).
    pub trex: Trex,
    /// Whether and how the track is published.
    pub publication: Publication,
}

/// Whether a track is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publication {
    /// Published with these facts.
    Publish(Output),
    /// Kept (its fragments are recognised) but not published.
    Unpublished {
        /// What the track carries, from its handler.
        kind: TrackKind,
        /// Why it is not published (for the log).
        reason: String,
    },
}

/// How a published track is declared and how its samples are rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The declaration. Its timescale may differ from the `mdhd` one (AAC
    /// is published at its sample rate); times are rescaled then.
    pub info: TrackInfo,
    /// H.264: the NAL unit length size of the samples; others are rewritten
    /// to 4-byte lengths, the form Sluice samples use.
    pub nal_length_size: Option<u8>,
    /// `avc3` whose `avcC` lacks an SPS or a PPS: the track is declared
    /// when the first sample carrying both arrives; earlier samples are
    /// dropped.
    pub needs_parameter_sets: bool,
}

/// Reads the tracks of a `moov`. Tracks this adapter does not publish are
/// returned as [`Publication::Unpublished`]; a `trak` that does not parse
/// at all is unpublished too when its track id can be read, else skipped.
///
/// Errors: a `trak` with track id 0, two `trak`s with one id, more than
/// [`MAX_TRAKS`] of them, an `mvex` that does not parse.
pub fn read_moov(
    moov: &BoxRef<'_>,
    stream: &str,
    manifest: Option<&LiveManifest>,
) -> Result<Vec<MovieTrack>> {
    let bad = |e| Error::bmff(MOOV, e);
    let mut tracks: Vec<MovieTrack> = Vec::new();
    let mut trex: Vec<Trex> = Vec::new();
    for child in moov.children() {
        let child = child.map_err(bad)?;
        match &child.fourcc().0 {
            b"trak" => {
                let Some(track) = read_trak(&child, stream, manifest) else {
                    continue;
                };
                if track.id == 0 {
                    return Err(Error::bmff(
                        MOOV,
                        bmff::Error::Invalid("trak with track id 0".into()),
                    ));
                }
                if tracks.len() == MAX_TRAKS {
                    return Err(Error::Limit(format!(
                        "moov with more than {MAX_TRAKS} traks"
                    )));
                }
                if tracks.iter().any(|t| t.id == track.id) {
                    return Err(Error::bmff(
                        MOOV,
                        bmff::Error::Invalid(format!("two traks with track id {}", track.id)),
                    ));
                }
                tracks.push(track);
            }
            b"mvex" => trex = Mvex::from_box(&child).map_err(bad)?.trex,
            _ => {}
        }
    }
    for t in &mut tracks {
        if let Some(x) = trex.iter().find(|x| x.track_id == t.id) {
            t.trex = *x;
        }
    }
    Ok(tracks)
}

/// Reads one `trak`; `None` when not even its track id can be read.
fn read_trak(b: &BoxRef<'_>, stream: &str, manifest: Option<&LiveManifest>) -> Option<MovieTrack> {
    let trak = match Trak::from_box(b) {
        Ok(t) => t,
        Err(e) => {
            let id = track_id_of(b)?;
            return Some(MovieTrack {
                id,
                media_timescale: 0,
                trex: Trex {
                    track_id: id,
                    ..Trex::default()
                },
                publication: Publication::Unpublished {
                    kind: TrackKind::Data,
                    reason: format!("trak does not parse: {e}"),
                },
            });
        }
    };
    let id = trak.tkhd.track_id;
    let mdhd = &trak.mdia.mdhd;
    let kind = match &trak.mdia.hdlr.handler_type.0 {
        b"vide" => TrackKind::Video,
        b"soun" => TrackKind::Audio,
        b"subt" | b"text" | b"sbtl" => TrackKind::Subtitle,
        _ => TrackKind::Data,
    };
    let unpublished = |reason: String| Publication::Unpublished { kind, reason };
    let publication = if mdhd.timescale == 0 {
        unpublished("mdhd timescale 0".into())
    } else {
        let manifest_track = manifest.and_then(|m| m.track(id));
        let mut info = TrackInfo::new(id, kind, mdhd.timescale);
        info.stream = stream.to_owned();
        info.language = language_tag(mdhd.language);
        if info.language == "und"
            && let Some(lang) = manifest_track.and_then(|t| t.language.as_deref())
        {
            info.language = language_tag(language_code(lang));
        }
        info.bitrate = btrt_avg_bitrate(b).unwrap_or(0);
        let entry = trak.mdia.minf.stbl.stsd.entries.first();
        let publication = match (kind, entry) {
            (TrackKind::Video, Some(SampleDescription::Avc1(avc1))) => avc(info, avc1, false),
            (TrackKind::Video, Some(SampleDescription::Other { fourcc, body }))
                if *fourcc == AVC3 =>
            {
                match Avc1::decode_body(&mut Reader::new(body)) {
                    Ok(avc3) => avc(info, &avc3, true),
                    Err(e) => Err(format!("avc3 sample entry does not parse: {e}")),
                }
            }
            (TrackKind::Audio, Some(SampleDescription::Mp4a(mp4a))) => aac(info, mp4a),
            (_, Some(SampleDescription::Avc1(_))) => Err("avc1 outside a video track".into()),
            (_, Some(SampleDescription::Mp4a(_))) => Err("mp4a outside an audio track".into()),
            (_, Some(SampleDescription::Other { fourcc, .. })) => {
                Err(format!("sample entry {fourcc} is not supported"))
            }
            (_, None) => Err("no sample description".into()),
        };
        match publication {
            Ok(mut out) => {
                if out.info.bitrate == 0
                    && let Some(b) = manifest_track.and_then(|t| t.bitrate)
                {
                    out.info.bitrate = b;
                }
                Publication::Publish(out)
            }
            Err(reason) => unpublished(reason),
        }
    };
    Some(MovieTrack {
        id,
        media_timescale: mdhd.timescale,
        trex: Trex {
            track_id: id,
            ..Trex::default()
        },
        publication,
    })
}

/// H.264 from an `avc1` or `avc3` entry.
fn avc(mut info: TrackInfo, entry: &Avc1, in_band: bool) -> Result<Output, String> {
    let config = AvcDecoderConfig::parse(&entry.avcc).map_err(|e| format!("avcC: {e}"))?;
    let complete = !config.sps.is_empty() && !config.pps.is_empty();
    if !complete && !in_band {
        return Err("avc1 whose avcC has no SPS or no PPS".into());
    }
    info.fourcc = "avc1".into();
    info.width = u32::from(entry.width);
    info.height = u32::from(entry.height);
    if complete {
        info.codec = config.codec_string();
        info.codec_private = if config.nal_length_size == 4 {
            entry.avcc.clone()
        } else {
            let mut c = config.clone();
            c.nal_length_size = 4;
            c.to_bytes()
        };
        if (info.width == 0 || info.height == 0)
            && let Ok(sps) = config.parse_sps()
        {
            info.width = sps.width;
            info.height = sps.height;
        }
    }
    Ok(Output {
        info,
        nal_length_size: Some(config.nal_length_size),
        needs_parameter_sets: !complete,
    })
}

/// Completes an `avc3` declaration from in-band parameter sets.
pub fn complete_avc(info: &TrackInfo, sps: Vec<Vec<u8>>, pps: Vec<Vec<u8>>) -> Option<TrackInfo> {
    let config = AvcDecoderConfig::from_parameter_sets(sps, pps).ok()?;
    let mut info = info.clone();
    info.codec = config.codec_string();
    info.codec_private = config.to_bytes();
    if (info.width == 0 || info.height == 0)
        && let Ok(sps) = config.parse_sps()
    {
        info.width = sps.width;
        info.height = sps.height;
    }
    Some(info)
}

/// AAC from an `mp4a` entry.
fn aac(mut info: TrackInfo, entry: &Mp4a) -> Result<Output, String> {
    let esds = &entry.esds;
    if esds.object_type_indication != OBJECT_TYPE_MPEG4_AUDIO {
        return Err(format!(
            "mp4a object type {:#04x} is not MPEG-4 audio",
            esds.object_type_indication
        ));
    }
    let asc = AudioSpecificConfig::parse(&esds.decoder_specific_info)
        .map_err(|e| format!("AudioSpecificConfig: {e}"))?;
    info.fourcc = "mp4a".into();
    info.codec = asc.codec_string();
    info.codec_private = esds.decoder_specific_info.clone();
    info.sample_rate = asc.sampling_frequency;
    info.timescale = asc.sampling_frequency;
    info.channels = if asc.channels == 0 {
        entry.channel_count
    } else {
        asc.channels
    };
    if esds.avg_bitrate != 0 {
        info.bitrate = esds.avg_bitrate;
    }
    Ok(Output {
        info,
        nal_length_size: None,
        needs_parameter_sets: false,
    })
}

/// The track id from the `tkhd` of a `trak` that does not parse as a whole.
fn track_id_of(trak: &BoxRef<'_>) -> Option<u32> {
    let tkhd = trak
        .children()
        .map_while(|c| c.ok())
        .find(|c| c.fourcc() == FourCC::new(b"tkhd"))?;
    let mut r = tkhd.reader();
    let (v, _) = r.version_flags().ok()?;
    r.skip(if v == 1 { 16 } else { 8 }).ok()?;
    r.u32().ok().filter(|&id| id != 0)
}

/// `avgBitrate` of a `btrt` box in the first sample entry, when non-zero.
fn btrt_avg_bitrate(trak: &BoxRef<'_>) -> Option<u32> {
    fn child<'a>(b: &BoxRef<'a>, t: &[u8; 4]) -> Option<BoxRef<'a>> {
        b.children()
            .map_while(|c| c.ok())
            .find(|c| c.fourcc() == FourCC::new(t))
    }
    let mdia = child(trak, b"mdia")?;
    let minf = child(&mdia, b"minf")?;
    let stbl = child(&minf, b"stbl")?;
    let stsd = child(&stbl, b"stsd")?;
    let mut r = stsd.reader();
    r.skip(8).ok()?; // version, flags, entry count
    let entry = r.next_box().ok()??;
    // The fixed part of a visual (78 bytes) or audio (28 bytes) sample entry.
    let fixed = match &entry.fourcc().0 {
        b"avc1" | b"avc3" => 78,
        b"mp4a" => 28,
        _ => return None,
    };
    let mut r = entry.reader();
    r.skip(fixed).ok()?;
    let btrt = r
        .children()
        .map_while(|c| c.ok())
        .find(|c| c.fourcc() == BTRT)?;
    let mut r = btrt.reader();
    r.skip(8).ok()?; // bufferSizeDB, maxBitrate
    r.u32().ok().filter(|&b| b != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::synth;

    fn moov_of(init: &[u8]) -> Vec<MovieTrack> {
        let mut r = Reader::new(init);
        while let Some(b) = r.next_box().unwrap() {
            if b.fourcc() == MOOV {
                return read_moov(&b, "720p", None).unwrap();
            }
        }
        panic!("no moov");
    }

    #[test]
    fn reads_video_audio_and_keeps_unknown_tracks() {
        let tracks = moov_of(&synth::init());
        assert_eq!(tracks.len(), 3);
        let Publication::Publish(v) = &tracks[0].publication else {
            panic!("video unpublished: {:?}", tracks[0]);
        };
        assert_eq!(v.info.id, synth::VIDEO);
        assert_eq!(v.info.fourcc, "avc1");
        assert_eq!(v.info.codec, "avc1.64001e");
        assert_eq!(v.info.timescale, 90_000);
        assert_eq!((v.info.width, v.info.height), (640, 360));
        assert_eq!(v.info.bitrate, 2_500_000, "from btrt");
        assert_eq!(v.info.language, "und");
        assert_eq!(v.info.stream, "720p");
        assert_eq!(v.nal_length_size, Some(4));
        assert!(!v.needs_parameter_sets);
        assert_eq!(tracks[0].trex.default_sample_duration, 3600);

        let Publication::Publish(a) = &tracks[1].publication else {
            panic!("audio unpublished: {:?}", tracks[1]);
        };
        assert_eq!(a.info.codec, "mp4a.40.2");
        assert_eq!(a.info.codec_private, synth::ASC);
        assert_eq!(tracks[1].media_timescale, 10_000_000);
        assert_eq!(
            a.info.timescale, 48_000,
            "AAC is published at its sample rate"
        );
        assert_eq!((a.info.sample_rate, a.info.channels), (48_000, 2));
        assert_eq!(a.info.bitrate, 128_000);
        assert_eq!(a.info.language, "en");

        assert!(matches!(
            &tracks[2].publication,
            Publication::Unpublished { kind: TrackKind::Subtitle, reason } if reason.contains("stpp")
        ));
    }

    #[test]
    fn broken_traks_are_unpublished_and_counted() {
        use sluice_sdk::bmff::{Mvhd, Tkhd, write_box};
        let moov = |n: u32| {
            let mut b = Vec::new();
            write_box(&mut b, MOOV, |b| {
                Mvhd::default().encode(b)?;
                for id in 1..=n {
                    write_box(b, FourCC::new(b"trak"), |b| {
                        Tkhd {
                            track_id: id,
                            ..Tkhd::default()
                        }
                        .encode(b)
                    })?;
                }
                Ok(())
            })
            .unwrap();
            b
        };
        let read = |bytes: &[u8]| {
            let b = Reader::new(bytes).next_box().unwrap().unwrap();
            read_moov(&b, "s", None)
        };
        let tracks = read(&moov(MAX_TRAKS as u32)).unwrap();
        assert_eq!(tracks.len(), MAX_TRAKS);
        assert!(matches!(
            &tracks[0].publication,
            Publication::Unpublished { reason, .. } if reason.contains("does not parse")
        ));
        assert!(matches!(
            read(&moov(MAX_TRAKS as u32 + 1)),
            Err(Error::Limit(_))
        ));
    }

    #[test]
    fn avc3_without_parameter_sets_waits_for_them() {
        let init = synth::init_with(synth::VideoEntry::Avc3Empty, 10_000_000);
        let tracks = moov_of(&init);
        let Publication::Publish(v) = &tracks[0].publication else {
            panic!("{:?}", tracks[0]);
        };
        assert_eq!(v.info.fourcc, "avc1");
        assert!(v.needs_parameter_sets);
        assert!(v.info.codec.is_empty());
        let done = complete_avc(
            &v.info,
            vec![synth::SPS.to_vec()],
            vec![synth::PPS.to_vec()],
        )
        .expect("valid parameter sets");
        assert_eq!(done.codec, "avc1.64001e");
        assert_eq!((done.width, done.height), (640, 360));
    }

    #[test]
    fn manifest_fills_bitrate_and_language() {
        let init = synth::init_with(synth::VideoEntry::Avc1NoBtrt, 90_000);
        let manifest = LiveManifest::parse(
            r#"<video systemBitrate="1500000"><param name="trackID" value="1"/></video>
               <audio systemBitrate="96000" systemLanguage="deu" trackID="2"/>"#,
        );
        let mut r = Reader::new(&init);
        while let Some(b) = r.next_box().unwrap() {
            if b.fourcc() == MOOV {
                let tracks = read_moov(&b, "s", Some(&manifest)).unwrap();
                let Publication::Publish(v) = &tracks[0].publication else {
                    panic!()
                };
                assert_eq!(v.info.bitrate, 1_500_000);
                let Publication::Publish(a) = &tracks[1].publication else {
                    panic!()
                };
                assert_eq!(a.info.bitrate, 128_000, "esds wins over the manifest");
                assert_eq!(a.info.language, "en", "mdhd wins over the manifest");
                return;
            }
        }
        panic!("no moov");
    }
}
