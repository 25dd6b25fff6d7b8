//! Entry points for fuzz targets, and a synthetic stream builder for tests
//! and fuzz seeds. Not part of the API.

use sluice_sdk::bmff::{self, BmffBox, FourCC, Reader};
use sluice_sdk::plugin::{Event, IngestAdapter, SessionConfig, SessionError};

use crate::Fmp4Session;
use crate::manifest::LiveManifest;

/// Feeds `input` to `session` in pieces ending at `splits` (and the end).
/// Returns every event, in order.
pub fn drive(
    session: &mut Fmp4Session,
    input: &[u8],
    splits: &[usize],
) -> Result<Vec<Event>, SessionError> {
    let mut events = Vec::new();
    let mut at = 0;
    for &end in splits.iter().chain(std::iter::once(&input.len())) {
        let end = end.clamp(at, input.len());
        events.extend(session.feed(&input[at..end])?);
        at = end;
    }
    events.extend(session.close());
    Ok(events)
}

fn config() -> SessionConfig {
    SessionConfig {
        max_message_size: 1 << 20,
        max_tracks: 8,
        stream: "fuzz".into(),
        ..SessionConfig::default()
    }
}

/// Splits at multiples of a step chosen by the first byte.
fn split(data: &[u8]) -> Option<(&[u8], Vec<usize>)> {
    let (&k, data) = data.split_first()?;
    let step = usize::from(k).max(1);
    Some((data, (step..data.len()).step_by(step).collect()))
}

/// Feeds arbitrary bytes to a fresh session, cut in pieces chosen by the
/// first byte.
pub fn session(data: &[u8]) {
    let Some((data, splits)) = split(data) else {
        return;
    };
    let mut s = Fmp4Session::new(config());
    let _ = drive(&mut s, data, &splits);
    let _ = s.close();
}

/// Feeds arbitrary bytes to a session that has read a valid `ftyp`,
/// manifest and `moov`, so that the bytes reach the fragment layer.
pub fn session_after_init(data: &[u8]) {
    let Some((data, splits)) = split(data) else {
        return;
    };
    let mut s = Fmp4Session::new(config());
    if s.feed(&synth::init()).is_ok() {
        let _ = drive(&mut s, data, &splits);
    }
    let _ = s.close();
}

/// Feeds arbitrary bytes to the parsers the session uses, as top-level
/// boxes and as a manifest.
pub fn parsers(data: &[u8]) {
    let _ = LiveManifest::parse(&String::from_utf8_lossy(data));
    let mut r = Reader::new(data);
    while let Ok(Some(b)) = r.next_box() {
        let _ = LiveManifest::from_box(&b);
        let _ = crate::moov::read_moov(&b, "fuzz", None);
        let _ = crate::moof::read_moof(&b, 0, &|_| None, 1 << 12);
    }
    bmff::fuzzing::parse(data);
}

/// Synthetic streams written with the SDK's box writer.
pub mod synth {
    use sluice_sdk::bmff::smooth::{LIVE_SERVER_MANIFEST, UUID};
    use sluice_sdk::bmff::{
        Avc1, Dinf, Esds, Ftyp, Hdlr, Mdhd, Mdia, MediaHeader, Mfhd, Minf, Moov, Mp4a, Mvex, Mvhd,
        SampleDescription, Smhd, Stbl, Stsd, Tfdt, Tfhd, Tfxd, Tkhd, Trak, Trex, Trun, TrunSample,
        Vmhd, write_box,
    };
    use sluice_sdk::h264::AvcDecoderConfig;

    use super::*;

    /// Video track id.
    pub const VIDEO: u32 = 1;
    /// Audio track id.
    pub const AUDIO: u32 = 2;
    /// Track id of a subtitle track (`stpp`) that is not published.
    pub const TEXT: u32 = 3;

    /// An SPS: High profile, level 3.0, 640x360.
    pub const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03,
        0x00, 0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2d, 0x96,
    ];
    /// A PPS.
    pub const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
    /// AAC-LC, 48 kHz, stereo.
    pub const ASC: &[u8] = &[0x11, 0x90];

    /// The video sample entry of [`init_with`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum VideoEntry {
        /// `avc1` with parameter sets and a `btrt` of 2.5 Mbit/s.
        Avc1,
        /// `avc1` without `btrt`.
        Avc1NoBtrt,
        /// `avc1` with 2-byte NAL unit lengths.
        Avc1Length2,
        /// `avc3` whose `avcC` has no parameter sets.
        Avc3Empty,
    }

    /// The `avcC` payload.
    pub fn avcc(nal_length_size: u8) -> Vec<u8> {
        let mut c = AvcDecoderConfig::from_parameter_sets(vec![SPS.to_vec()], vec![PPS.to_vec()])
            .expect("valid parameter sets");
        c.nal_length_size = nal_length_size;
        c.to_bytes()
    }

    fn trak(
        id: u32,
        handler: &[u8; 4],
        timescale: u32,
        lang: [u8; 3],
        entry: SampleDescription,
    ) -> Trak {
        let media_header = match handler {
            b"vide" => Some(MediaHeader::Video(Vmhd::default())),
            b"soun" => Some(MediaHeader::Sound(Smhd::default())),
            _ => Some(MediaHeader::Null),
        };
        Trak {
            tkhd: Tkhd {
                flags: 3,
                track_id: id,
                ..Tkhd::default()
            },
            mdia: Mdia {
                mdhd: Mdhd {
                    timescale,
                    language: lang,
                    ..Mdhd::default()
                },
                hdlr: Hdlr {
                    handler_type: FourCC::new(handler),
                    name: "handler".into(),
                },
                minf: Minf {
                    media_header,
                    dinf: Dinf::default(),
                    stbl: Stbl {
                        stsd: Stsd {
                            entries: vec![entry],
                        },
                        ..Stbl::default()
                    },
                },
            },
        }
    }

    /// `ftyp`, the live server manifest and a `moov` with video (90 kHz),
    /// audio (`audio_timescale`) and an unpublished subtitle track; `trex`
    /// defaults: video 3600 ticks, audio none, subtitles 1 s and 5 bytes.
    pub fn init_with(video: VideoEntry, audio_timescale: u32) -> Vec<u8> {
        let nal_length_size = if video == VideoEntry::Avc1Length2 {
            2
        } else {
            4
        };
        let avc1 = Avc1 {
            data_reference_index: 1,
            width: 640,
            height: 360,
            compressor_name: "synth".into(),
            depth: 0x18,
            avcc: avcc(nal_length_size),
        };
        let video_entry = match video {
            VideoEntry::Avc1NoBtrt | VideoEntry::Avc1Length2 => SampleDescription::Avc1(avc1),
            VideoEntry::Avc1 => {
                let mut body = Vec::new();
                avc1.encode_body(&mut body).expect("valid avc1");
                write_box(&mut body, FourCC::new(b"btrt"), |b| {
                    for v in [0u32, 3_000_000, 2_500_000] {
                        b.extend_from_slice(&v.to_be_bytes());
                    }
                    Ok(())
                })
                .expect("btrt");
                SampleDescription::Other {
                    fourcc: FourCC::new(b"avc1"),
                    body,
                }
            }
            VideoEntry::Avc3Empty => {
                let mut body = Vec::new();
                Avc1 {
                    avcc: vec![1, 0x64, 0, 0x1e, 0xff, 0xe0, 0],
                    ..avc1
                }
                .encode_body(&mut body)
                .expect("valid avc3");
                SampleDescription::Other {
                    fourcc: FourCC::new(b"avc3"),
                    body,
                }
            }
        };
        let mp4a = Mp4a {
            data_reference_index: 1,
            channel_count: 2,
            sample_size: 16,
            sample_rate: 48_000,
            esds: Esds {
                es_id: 0,
                object_type_indication: 0x40,
                stream_type: 5,
                buffer_size_db: 0,
                max_bitrate: 128_000,
                avg_bitrate: 128_000,
                decoder_specific_info: ASC.to_vec(),
            },
        };
        let moov = Moov {
            mvhd: Mvhd {
                timescale: 1000,
                next_track_id: 4,
                ..Mvhd::default()
            },
            traks: vec![
                trak(VIDEO, b"vide", 90_000, *b"und", video_entry),
                trak(
                    AUDIO,
                    b"soun",
                    audio_timescale,
                    *b"eng",
                    SampleDescription::Mp4a(mp4a),
                ),
                trak(
                    TEXT,
                    b"subt",
                    1000,
                    *b"eng",
                    SampleDescription::Other {
                        fourcc: FourCC::new(b"stpp"),
                        body: vec![0; 8],
                    },
                ),
            ],
            mvex: Some(Mvex {
                trex: vec![
                    Trex {
                        track_id: VIDEO,
                        default_sample_description_index: 1,
                        default_sample_duration: 3600,
                        ..Trex::default()
                    },
                    Trex {
                        track_id: AUDIO,
                        default_sample_description_index: 1,
                        ..Trex::default()
                    },
                    Trex {
                        track_id: TEXT,
                        default_sample_description_index: 1,
                        default_sample_duration: 1000,
                        default_sample_size: 5,
                        default_sample_flags: 0,
                    },
                ],
            }),
        };
        let mut b = Vec::new();
        Ftyp {
            major_brand: FourCC::new(b"isml"),
            minor_version: 1,
            compatible_brands: vec![FourCC::new(b"piff"), FourCC::new(b"iso2")],
        }
        .encode(&mut b)
        .expect("ftyp");
        write_box(&mut b, UUID, |b| {
            b.extend_from_slice(&LIVE_SERVER_MANIFEST);
            b.extend_from_slice(&[0; 4]);
            b.extend_from_slice(
                br#"<?xml version="1.0"?><smil><body><switch>
<video systemBitrate="2000000"><param name="trackID" value="1" valuetype="data"/></video>
<audio systemBitrate="128000"><param name="trackID" value="2" valuetype="data"/></audio>
</switch></body></smil>"#,
            );
            Ok(())
        })
        .expect("manifest");
        moov.encode(&mut b).expect("moov");
        b
    }

    /// [`init_with`] `avc1` (with `btrt`) and 10 MHz audio, as Smooth
    /// encoders time it.
    pub fn init() -> Vec<u8> {
        init_with(VideoEntry::Avc1, 10_000_000)
    }

    /// A video access unit: one NAL unit (IDR or not) with `len` bytes of
    /// slice data derived from `seed`, with a NAL length of
    /// `length_size` bytes.
    pub fn video_sample(idr: bool, len: usize, seed: u8, length_size: u8) -> Vec<u8> {
        let nal_len = (len + 1) as u32;
        let mut b = nal_len.to_be_bytes()[4 - usize::from(length_size)..].to_vec();
        b.push(if idr { 0x65 } else { 0x41 });
        b.extend((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
        b
    }

    /// A video access unit carrying the SPS and PPS in-band before an IDR
    /// slice (4-byte lengths), as `avc3` streams send them.
    pub fn video_sample_with_parameter_sets(len: usize, seed: u8) -> Vec<u8> {
        let mut b = Vec::new();
        for p in [SPS, PPS] {
            b.extend_from_slice(&(p.len() as u32).to_be_bytes());
            b.extend_from_slice(p);
        }
        b.extend(video_sample(true, len, seed, 4));
        b
    }

    /// An audio frame of `len` bytes derived from `seed`.
    pub fn audio_sample(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8) ^ seed).collect()
    }

    /// Where a `traf`'s data offsets count from.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Base {
        /// `default-base-is-moof`.
        Moof,
        /// An explicit `base_data_offset` (the traf's first data byte).
        Explicit,
        /// Neither flag: the moof for the first traf, else the end of the
        /// previous traf's data.
        Implicit,
    }

    /// One `trun` and the payloads of its samples.
    #[derive(Debug, Clone)]
    pub struct RunSpec {
        /// Write version 0 (unsigned composition offsets).
        pub version0: bool,
        /// Write a data offset (else the run follows the previous data).
        pub data_offset: bool,
        /// First-sample flags.
        pub first_sample_flags: Option<u32>,
        /// The entries (fields absent take defaults).
        pub samples: Vec<TrunSample>,
        /// Each sample's bytes, in order.
        pub payloads: Vec<Vec<u8>>,
    }

    /// One `traf`.
    #[derive(Debug, Clone)]
    pub struct TrafSpec {
        /// `tfhd` (its base fields are set from `base`).
        pub tfhd: Tfhd,
        /// How data offsets count.
        pub base: Base,
        /// `tfdt` time.
        pub tfdt: Option<u64>,
        /// `tfxd` time (duration 0).
        pub tfxd: Option<u64>,
        /// The runs.
        pub runs: Vec<RunSpec>,
    }

    /// Appends a `moof` with the given `traf`s and its `mdat` to `out`,
    /// which holds the stream so far (offsets count from its start).
    pub fn fragment(out: &mut Vec<u8>, sequence_number: u32, trafs: &[TrafSpec]) {
        let moof_start = out.len() as u64;
        let encode = |offsets: &[Vec<Option<i32>>], bases: &[Option<u64>]| -> Vec<u8> {
            let mut b = Vec::new();
            write_box(&mut b, FourCC::new(b"moof"), |b| {
                Mfhd { sequence_number }.encode(b)?;
                for (k, t) in trafs.iter().enumerate() {
                    write_box(b, FourCC::new(b"traf"), |b| {
                        Tfhd {
                            base_data_offset: bases[k],
                            default_base_is_moof: t.base == Base::Moof,
                            ..t.tfhd
                        }
                        .encode(b)?;
                        if let Some(d) = t.tfdt {
                            Tfdt {
                                base_media_decode_time: d,
                            }
                            .encode(b)?;
                        }
                        if let Some(x) = t.tfxd {
                            Tfxd {
                                fragment_absolute_time: x,
                                fragment_duration: 0,
                            }
                            .encode(b)?;
                        }
                        for (j, r) in t.runs.iter().enumerate() {
                            let mut run = Vec::new();
                            Trun {
                                data_offset: offsets[k][j],
                                first_sample_flags: r.first_sample_flags,
                                samples: r.samples.clone(),
                            }
                            .encode(&mut run)?;
                            if r.version0 {
                                run[8] = 0;
                            }
                            b.extend_from_slice(&run);
                        }
                        Ok(())
                    })?;
                }
                Ok(())
            })
            .expect("moof");
            b
        };
        let placeholder: Vec<Vec<Option<i32>>> = trafs
            .iter()
            .map(|t| t.runs.iter().map(|r| r.data_offset.then_some(0)).collect())
            .collect();
        let placeholder_bases: Vec<Option<u64>> = trafs
            .iter()
            .map(|t| (t.base == Base::Explicit).then_some(0))
            .collect();
        let moof_len = encode(&placeholder, &placeholder_bases).len() as u64;
        let payload_start = moof_start + moof_len + 8;
        let (mut offsets, mut bases) = (Vec::new(), Vec::new());
        let mut pos = payload_start;
        for (k, t) in trafs.iter().enumerate() {
            let base = match t.base {
                Base::Moof => moof_start,
                Base::Explicit => pos,
                Base::Implicit if k == 0 => moof_start,
                Base::Implicit => pos,
            };
            bases.push((t.base == Base::Explicit).then_some(pos));
            let mut runs = Vec::new();
            for r in &t.runs {
                runs.push(
                    r.data_offset
                        .then(|| i32::try_from(pos - base).expect("small offsets")),
                );
                pos += r.payloads.iter().map(|p| p.len() as u64).sum::<u64>();
            }
            offsets.push(runs);
        }
        let moof = encode(&offsets, &bases);
        assert_eq!(moof.len() as u64, moof_len);
        out.extend_from_slice(&moof);
        let payload: Vec<u8> = trafs
            .iter()
            .flat_map(|t| &t.runs)
            .flat_map(|r| &r.payloads)
            .flatten()
            .copied()
            .collect();
        out.extend_from_slice(&((payload.len() + 8) as u32).to_be_bytes());
        out.extend_from_slice(b"mdat");
        out.extend_from_slice(&payload);
    }
}
