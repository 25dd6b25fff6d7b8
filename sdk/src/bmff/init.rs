//! Initialisation segments: `ftyp` + `moov` built from the plugin
//! interface's [`TrackInfo`], for fragmented (CMAF-style) delivery.

use super::esds::{Esds, OBJECT_TYPE_MPEG4_AUDIO, STREAM_TYPE_AUDIO};
use super::moov::{Moov, Mvex, Mvhd, Trex};
use super::stbl::{Avc1, Mp4a, SampleDescription, Stbl, Stsd};
use super::trak::{Dinf, Hdlr, Mdhd, Mdia, MediaHeader, Minf, Smhd, Tkhd, Trak, Vmhd};
use super::{BmffBox, Error, FourCC, Ftyp, Result};
use crate::plugin::TrackInfo;

/// Timescale of `mvhd` (the movie itself has no media time here).
const MOVIE_TIMESCALE: u32 = 1000;

/// `tkhd` flags: enabled, in movie.
const TRACK_ENABLED_IN_MOVIE: u32 = 0x3;

/// Whether [`init_segment`] can describe tracks with this sample entry
/// type (`avc1`, `mp4a`).
pub fn is_supported(fourcc: &str) -> bool {
    matches!(fourcc, "avc1" | "mp4a")
}

/// An initialisation segment: `ftyp` with the given brands, then `moov`
/// with one `trak` per track (ids from [`TrackInfo::id`], which must not be
/// 0), empty sample tables and `mvex` with one `trex` per track.
///
/// Errors for a track this module cannot describe (see [`trak_for`]).
pub fn init_segment(
    tracks: &[&TrackInfo],
    major_brand: FourCC,
    compatible_brands: &[FourCC],
) -> Result<Vec<u8>> {
    let traks = tracks
        .iter()
        .map(|t| trak_for(t))
        .collect::<Result<Vec<_>>>()?;
    let max_id = tracks.iter().map(|t| t.id).max().unwrap_or(0);
    let moov = Moov {
        mvhd: Mvhd {
            timescale: MOVIE_TIMESCALE,
            next_track_id: max_id
                .checked_add(1)
                .ok_or(Error::Overflow("next track id"))?,
            ..Mvhd::default()
        },
        traks,
        mvex: Some(Mvex {
            trex: tracks
                .iter()
                .map(|t| Trex {
                    track_id: t.id,
                    default_sample_description_index: 1,
                    ..Trex::default()
                })
                .collect(),
        }),
    };
    let mut buf = Vec::with_capacity(1024);
    Ftyp {
        major_brand,
        minor_version: 0,
        compatible_brands: compatible_brands.to_vec(),
    }
    .encode(&mut buf)?;
    moov.encode(&mut buf)?;
    Ok(buf)
}

/// The `trak` describing one track, for a fragmented file.
///
/// Errors: track id or timescale 0; a sample entry type other than `avc1`
/// or `mp4a` ([`Error::Unsupported`]); missing codec configuration; video
/// dimensions over 65535.
pub fn trak_for(track: &TrackInfo) -> Result<Trak> {
    if track.id == 0 {
        return Err(Error::Invalid("track id 0".into()));
    }
    if track.timescale == 0 {
        return Err(Error::Invalid(format!("track {} timescale 0", track.id)));
    }
    if track.codec_private.is_empty() {
        return Err(Error::Invalid(format!(
            "track {} ({}) has no codec configuration",
            track.id, track.fourcc
        )));
    }
    let (handler, name, media_header, entry, tkhd) = match track.fourcc.as_str() {
        "avc1" => {
            let too_big = || Error::Overflow("video dimensions (65535 at most)");
            let width = u16::try_from(track.width).map_err(|_| too_big())?;
            let height = u16::try_from(track.height).map_err(|_| too_big())?;
            (
                FourCC::new(b"vide"),
                "VideoHandler",
                MediaHeader::Video(Vmhd::default()),
                SampleDescription::Avc1(Avc1 {
                    data_reference_index: 1,
                    width,
                    height,
                    compressor_name: String::new(),
                    depth: 0x18,
                    avcc: track.codec_private.clone(),
                }),
                Tkhd {
                    width: u32::from(width) << 16,
                    height: u32::from(height) << 16,
                    ..Tkhd::default()
                },
            )
        }
        "mp4a" => (
            FourCC::new(b"soun"),
            "SoundHandler",
            MediaHeader::Sound(Smhd::default()),
            SampleDescription::Mp4a(Mp4a {
                data_reference_index: 1,
                channel_count: if track.channels == 0 {
                    2
                } else {
                    track.channels
                },
                sample_size: 16,
                sample_rate: if track.sample_rate == 0 {
                    track.timescale
                } else {
                    track.sample_rate
                },
                esds: Esds {
                    es_id: 0,
                    object_type_indication: OBJECT_TYPE_MPEG4_AUDIO,
                    stream_type: STREAM_TYPE_AUDIO,
                    buffer_size_db: 0,
                    max_bitrate: track.bitrate,
                    avg_bitrate: track.bitrate,
                    decoder_specific_info: track.codec_private.clone(),
                },
            }),
            Tkhd {
                volume: 0x0100,
                ..Tkhd::default()
            },
        ),
        other => {
            return Err(Error::Unsupported(format!(
                "sample entry {other:?} (track {})",
                track.id
            )));
        }
    };
    Ok(Trak {
        tkhd: Tkhd {
            flags: TRACK_ENABLED_IN_MOVIE,
            track_id: track.id,
            ..tkhd
        },
        mdia: Mdia {
            mdhd: Mdhd {
                timescale: track.timescale,
                language: language_code(&track.language),
                ..Mdhd::default()
            },
            hdlr: Hdlr {
                handler_type: handler,
                name: name.into(),
            },
            minf: Minf {
                media_header: Some(media_header),
                dinf: Dinf::default(),
                stbl: Stbl {
                    stsd: Stsd {
                        entries: vec![entry],
                    },
                    ..Stbl::default()
                },
            },
        },
    })
}

/// ISO 639-1 two-letter codes and their ISO 639-2/T equivalents.
const ISO_639_1_TO_2T: &[(&str, &[u8; 3])] = &[
    ("ar", b"ara"),
    ("bg", b"bul"),
    ("bn", b"ben"),
    ("ca", b"cat"),
    ("cs", b"ces"),
    ("cy", b"cym"),
    ("da", b"dan"),
    ("de", b"deu"),
    ("el", b"ell"),
    ("en", b"eng"),
    ("es", b"spa"),
    ("et", b"est"),
    ("eu", b"eus"),
    ("fa", b"fas"),
    ("fi", b"fin"),
    ("fr", b"fra"),
    ("ga", b"gle"),
    ("gl", b"glg"),
    ("he", b"heb"),
    ("hi", b"hin"),
    ("hr", b"hrv"),
    ("hu", b"hun"),
    ("hy", b"hye"),
    ("id", b"ind"),
    ("is", b"isl"),
    ("it", b"ita"),
    ("ja", b"jpn"),
    ("ka", b"kat"),
    ("ko", b"kor"),
    ("lt", b"lit"),
    ("lv", b"lav"),
    ("mk", b"mkd"),
    ("ms", b"msa"),
    ("mt", b"mlt"),
    ("nb", b"nob"),
    ("nl", b"nld"),
    ("nn", b"nno"),
    ("no", b"nor"),
    ("pl", b"pol"),
    ("pt", b"por"),
    ("ro", b"ron"),
    ("ru", b"rus"),
    ("sk", b"slk"),
    ("sl", b"slv"),
    ("sq", b"sqi"),
    ("sr", b"srp"),
    ("sv", b"swe"),
    ("sw", b"swa"),
    ("ta", b"tam"),
    ("th", b"tha"),
    ("tr", b"tur"),
    ("uk", b"ukr"),
    ("ur", b"urd"),
    ("vi", b"vie"),
    ("zh", b"zho"),
];

/// The ISO 639-2/T code `mdhd` wants for a BCP 47 tag: a three-letter
/// primary subtag as is, a known two-letter one mapped, anything else
/// `und`.
pub fn language_code(bcp47: &str) -> [u8; 3] {
    let primary = bcp47
        .split(['-', '_'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    match primary.len() {
        3 => {
            let mut code = *b"und";
            if primary.bytes().all(|b| b.is_ascii_lowercase()) {
                code.copy_from_slice(primary.as_bytes());
            }
            code
        }
        2 => ISO_639_1_TO_2T
            .iter()
            .find(|(two, _)| *two == primary)
            .map_or(*b"und", |(_, three)| **three),
        _ => *b"und",
    }
}

/// The BCP 47 tag for an `mdhd` ISO 639-2/T code: the two-letter code
/// where one is known (`eng` → `en`), else the three-letter code as is;
/// `und` for anything that is not three lower-case letters.
pub fn language_tag(code: [u8; 3]) -> String {
    if !code.iter().all(u8::is_ascii_lowercase) {
        return "und".to_owned();
    }
    match ISO_639_1_TO_2T.iter().find(|(_, three)| **three == code) {
        Some((two, _)) => (*two).to_owned(),
        None => String::from_utf8_lossy(&code).into_owned(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bmff::stbl::tests::AVCC;
    use crate::bmff::{Reader, Trex};
    use crate::plugin::TrackKind;

    pub(crate) fn video_track() -> TrackInfo {
        TrackInfo {
            fourcc: "avc1".into(),
            codec: "avc1.64000d".into(),
            codec_private: AVCC.to_vec(),
            width: 320,
            height: 240,
            ..TrackInfo::new(1, TrackKind::Video, 90_000)
        }
    }

    pub(crate) fn audio_track() -> TrackInfo {
        TrackInfo {
            fourcc: "mp4a".into(),
            codec: "mp4a.40.2".into(),
            codec_private: vec![0x11, 0x90],
            sample_rate: 48_000,
            channels: 2,
            bitrate: 128_000,
            language: "en-GB".into(),
            ..TrackInfo::new(2, TrackKind::Audio, 48_000)
        }
    }

    pub(crate) fn sample_init() -> Vec<u8> {
        init_segment(
            &[&video_track(), &audio_track()],
            FourCC::new(b"iso6"),
            &[FourCC::new(b"iso6"), FourCC::new(b"cmfc")],
        )
        .unwrap()
    }

    #[test]
    fn init_segment_parses_back() {
        let b = sample_init();
        let mut r = Reader::new(&b);
        let ftyp = Ftyp::from_box(&r.next_box().unwrap().unwrap()).unwrap();
        assert_eq!(ftyp.major_brand, FourCC::new(b"iso6"));
        assert_eq!(ftyp.compatible_brands.len(), 2);
        let moov = Moov::from_box(&r.next_box().unwrap().unwrap()).unwrap();
        r.finish().unwrap();
        assert_eq!(moov.mvhd.next_track_id, 3);
        assert_eq!(moov.traks.len(), 2);

        let v = &moov.traks[0];
        assert_eq!(v.tkhd.track_id, 1);
        assert_eq!(v.tkhd.width, 320 << 16);
        assert_eq!(v.mdia.mdhd.timescale, 90_000);
        assert_eq!(v.mdia.hdlr.handler_type, FourCC::new(b"vide"));
        let SampleDescription::Avc1(avc1) = &v.mdia.minf.stbl.stsd.entries[0] else {
            panic!("not avc1");
        };
        assert_eq!(avc1.avcc, AVCC);
        assert_eq!((avc1.width, avc1.height), (320, 240));
        assert!(v.mdia.minf.stbl.stts.entries.is_empty());

        let a = &moov.traks[1];
        assert_eq!(a.mdia.mdhd.language, *b"eng");
        assert_eq!(a.tkhd.volume, 0x0100);
        let SampleDescription::Mp4a(mp4a) = &a.mdia.minf.stbl.stsd.entries[0] else {
            panic!("not mp4a");
        };
        assert_eq!(mp4a.sample_rate, 48_000);
        assert_eq!(mp4a.esds.object_type_indication, 0x40);
        assert_eq!(mp4a.esds.stream_type, 5);
        assert_eq!(mp4a.esds.avg_bitrate, 128_000);
        assert_eq!(mp4a.esds.decoder_specific_info, [0x11, 0x90]);

        let trex = &moov.mvex.as_ref().unwrap().trex;
        assert_eq!(
            trex.iter().map(|t: &Trex| t.track_id).collect::<Vec<_>>(),
            [1, 2]
        );
        // The whole moov round-trips through the typed boxes.
        assert_eq!(Moov::decode(&moov.to_bytes().unwrap()).unwrap(), moov);
    }

    #[test]
    fn unsupported_and_invalid_tracks() {
        let mut t = video_track();
        t.fourcc = "hvc1".into();
        assert!(matches!(trak_for(&t), Err(Error::Unsupported(_))));
        assert!(!is_supported("hvc1"));
        assert!(is_supported("avc1") && is_supported("mp4a"));
        let mut t = video_track();
        t.codec_private.clear();
        assert!(matches!(trak_for(&t), Err(Error::Invalid(_))));
        let mut t = video_track();
        t.width = 70_000;
        assert!(matches!(trak_for(&t), Err(Error::Overflow(_))));
        let mut t = audio_track();
        t.id = 0;
        assert!(trak_for(&t).is_err());
    }

    #[test]
    fn language_codes() {
        assert_eq!(&language_code("en"), b"eng");
        assert_eq!(&language_code("en-US"), b"eng");
        assert_eq!(&language_code("FR"), b"fra");
        assert_eq!(&language_code("fil"), b"fil");
        assert_eq!(&language_code("und"), b"und");
        assert_eq!(&language_code(""), b"und");
        assert_eq!(&language_code("x1z"), b"und");
        assert_eq!(&language_code("qq"), b"und");
    }

    #[test]
    fn language_tags() {
        assert_eq!(language_tag(*b"eng"), "en");
        assert_eq!(language_tag(*b"fra"), "fr");
        assert_eq!(language_tag(*b"fil"), "fil");
        assert_eq!(language_tag(*b"und"), "und");
        assert_eq!(language_tag([0x60; 3]), "und");
        assert_eq!(language_tag(*b"EN1"), "und");
        for two in ["de", "ja", "zh"] {
            assert_eq!(language_tag(language_code(two)), two);
        }
    }
}
