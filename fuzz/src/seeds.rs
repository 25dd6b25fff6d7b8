//! The seed corpora, written by code: `fuzz/seeds/<target>/gen-*`.
//!
//! Real encoder output comes from `host/assets/demo.flv` (ffmpeg, x264
//! with B-frames, AAC-LC): its first tags feed the FLV and RTMP seeds.
//! `fuzz/seeds/fmp4/ffmpeg-*` are ffmpeg's own `ismv` output, committed as
//! made (see `fuzz/README.md`). The `ts_ingest` seeds are transport
//! streams written by the example adapter's `fuzzing::synth` (PAT, PMT, PES
//! with H.264 parameter sets and slices, ADTS frames). `cargo test` in
//! `fuzz/` checks that the generated files are current; `BLESS=1` rewrites
//! them.

use sluice_example_ts_ingest::fuzzing::synth as ts;
use sluice_plugin_fmp4::fuzzing::synth::{self, AUDIO, Base, RunSpec, TEXT, TrafSpec, VIDEO};
use sluice_plugin_rtmp::chunk::Message;
use sluice_plugin_rtmp::fuzzing::Client;
use sluice_plugin_rtmp::message::{ProtocolControl, type_id};
use sluice_sdk::amf0::{self, Value};
use sluice_sdk::bmff::{Tfhd, TrunSample};
use sluice_sdk::flv::{self, FileHeader, TagType};

use crate::rtmp::Prelude;
use crate::{WHOLE, at, every};

/// The demo clip the host plays with `--demo`.
const DEMO_FLV: &[u8] = include_bytes!("../../host/assets/demo.flv");

/// One seed file: its name and bytes.
pub type Seed = (&'static str, Vec<u8>);

/// The fuzz targets, in the order the smoke script runs them.
pub const TARGETS: [&str; 7] = [
    "rtmp_chunk",
    "amf0",
    "flv_tags",
    "fmp4",
    "fragment_object",
    "tier_frame",
    "ts_ingest",
];

/// The generated seeds of `target`.
pub fn for_target(target: &str) -> Vec<Seed> {
    match target {
        "rtmp_chunk" => rtmp_chunk(),
        "amf0" => amf0(),
        "flv_tags" => flv_tags(),
        "fmp4" => fmp4(),
        "fragment_object" => crate::fragment::seeds(),
        "tier_frame" => crate::tier_frame::seeds(),
        "ts_ingest" => ts_ingest(),
        other => panic!("no target {other}"),
    }
}

fn with_control(control: &[u8], data: &[u8]) -> Vec<u8> {
    let mut v = control.to_vec();
    v.extend_from_slice(data);
    v
}

/// The first `n` tags of the demo clip (its script tag, both sequence
/// headers, a keyframe, B-frames, AAC frames).
fn demo_tags(n: usize) -> Vec<(TagType, u32, Vec<u8>)> {
    let (_, tags) = flv::read_file(DEMO_FLV).expect("demo.flv parses");
    tags.take(n)
        .map(|t| {
            let t = t.expect("demo.flv tags parse");
            (t.header.tag_type, t.header.timestamp, t.body.to_vec())
        })
        .collect()
}

fn flv_file(tags: &[(TagType, u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    FileHeader {
        version: 1,
        has_audio: true,
        has_video: true,
        data_offset: 9,
    }
    .write(&mut out);
    for (t, ts, body) in tags {
        flv::write_tag(&mut out, *t, *ts, body).expect("small tag");
    }
    out
}

/// The demo clip's `onMetaData` properties.
fn demo_metadata() -> Vec<(String, Value)> {
    demo_tags(1)
        .into_iter()
        .filter(|(t, _, _)| *t == TagType::Script)
        .find_map(|(_, _, body)| {
            let values = flv::parse_script_data(&body).ok()?;
            flv::find_metadata(&values)?.properties().map(<[_]>::to_vec)
        })
        .expect("demo.flv starts with onMetaData")
}

fn rtmp_media(c: &mut Client, tags: &[(TagType, u32, Vec<u8>)], offset: u32) {
    for (t, ts, body) in tags {
        match t {
            TagType::Video => {
                c.video(ts.wrapping_add(offset), body.clone());
            }
            TagType::Audio => {
                c.audio(ts.wrapping_add(offset), body.clone());
            }
            TagType::Script | TagType::Other(_) => {}
        }
    }
}

fn rtmp_chunk() -> Vec<Seed> {
    let tags = demo_tags(16);
    let mut seeds = Vec::new();

    // A whole publish as ffmpeg sends it: handshake, connect, publish,
    // metadata, media, unpublish.
    let mut c = Client::new();
    c.handshake()
        .connect("live/ch1/key")
        .publish("ch1/key/720p")
        .metadata(demo_metadata());
    rtmp_media(&mut c, &tags, 0);
    c.command(
        0,
        "FCUnpublish",
        6.0,
        Value::Null,
        vec![Value::string("720p")],
    )
    .command(
        0,
        "deleteStream",
        7.0,
        Value::Null,
        vec![Value::Number(1.0)],
    );
    seeds.push((
        "gen-publish-demo",
        with_control(&[Prelude::None.mode(), WHOLE], &c.bytes),
    ));

    // After the publishing prelude: a small Window Acknowledgement Size, a
    // ping, chunk size changes, extended timestamps and an aggregate
    // message; read in 7-byte pieces.
    let mut c = Client::new();
    c.message(&ProtocolControl::WindowAckSize(100).to_message())
        .message(&Message {
            csid: 2,
            timestamp: 0,
            type_id: type_id::USER_CONTROL,
            stream_id: 0,
            payload: vec![0, 6, 0, 0, 0x12, 0x34],
        })
        .set_chunk_size(64);
    rtmp_media(&mut c, &tags[1..6], 0x00ff_fff0);
    c.set_chunk_size(4096);
    let mut aggregate = Vec::new();
    for (t, ts, body) in &tags[6..10] {
        flv::write_tag(&mut aggregate, *t, *ts, body).expect("small tag");
    }
    c.message(&Message {
        csid: 6,
        timestamp: 0x0100_0400,
        type_id: type_id::AGGREGATE,
        stream_id: 1,
        payload: aggregate,
    });
    seeds.push((
        "gen-controls-extended-aggregate",
        with_control(&[Prelude::Publishing.mode(), every(7)], &c.bytes),
    ));

    // The handshake and connect, byte by byte.
    let mut c = Client::new();
    c.handshake().connect("live/ch1/key");
    seeds.push((
        "gen-connect-bytewise",
        with_control(&[Prelude::None.mode(), every(1)], &c.bytes),
    ));

    // A message over a 300-byte limit, after the handshake prelude.
    let mut c = Client::new();
    c.connect("live/ch1/key").publish("720p");
    rtmp_media(&mut c, &tags[1..4], 0);
    seeds.push((
        "gen-message-over-limit",
        with_control(&[Prelude::Handshake.mode() | (2 << 2), WHOLE], &c.bytes),
    ));
    seeds
}

fn amf0() -> Vec<Seed> {
    let mut seeds = Vec::new();
    let connect = amf0::encode_all(&[
        Value::string("connect"),
        Value::Number(1.0),
        Value::object([
            ("app", Value::string("live/ch1/key")),
            ("type", Value::string("nonprivate")),
            (
                "flashVer",
                Value::string("FMLE/3.0 (compatible; Lavf61.7.100)"),
            ),
            ("tcUrl", Value::string("rtmp://127.0.0.1:1935/live/ch1/key")),
        ]),
    ]);
    seeds.push(("gen-connect", with_control(&[WHOLE], &connect)));

    let (_, _, meta) = demo_tags(1).remove(0);
    seeds.push(("gen-demo-metadata", with_control(&at(&[13, 60]), &meta)));

    let every_type = amf0::encode_all(&[
        Value::string("onStatus"),
        Value::Number(f64::NAN),
        Value::Null,
        Value::object([
            ("undefined", Value::Undefined),
            ("unsupported", Value::Unsupported),
            ("reference", Value::Reference(1)),
            ("flag", Value::Boolean(true)),
            (
                "date",
                Value::Date {
                    millis: 1.7e12,
                    timezone: 60,
                },
            ),
            ("long", Value::LongString("ü".repeat(5))),
            ("xml", Value::XmlDocument("<a b='c'/>".into())),
            (
                "list",
                Value::StrictArray(vec![
                    Value::Number(-0.0),
                    Value::StrictArray(vec![Value::EcmaArray(Vec::new())]),
                ]),
            ),
            (
                "typed",
                Value::TypedObject {
                    class: "flex.Message".into(),
                    properties: vec![("id".into(), Value::Number(7.0))],
                },
            ),
        ]),
    ]);
    seeds.push(("gen-every-type", with_control(&[every(3)], &every_type)));

    // An ECMA array whose end marker is missing at the end of the input.
    let mut lenient = vec![0x08, 0, 0, 0, 2, 0, 1, b'w'];
    amf0::encode(&Value::Number(640.0), &mut lenient);
    seeds.push(("gen-ecma-without-end", with_control(&[WHOLE], &lenient)));
    seeds
}

fn flv_tags() -> Vec<Seed> {
    let demo = flv_file(&demo_tags(24));
    let mut seeds = vec![
        ("gen-demo-head", with_control(&[WHOLE], &demo)),
        (
            "gen-demo-head-cut",
            with_control(&at(&[3, 9, 13, 24, 30, 500, 4000, 4012]), &demo),
        ),
    ];

    // Odd tags: a filtered tag, an unknown type, an extended timestamp,
    // other codecs, enhanced RTMP, 2-byte NAL lengths, end of sequence, a
    // missing last PreviousTagSize.
    let demo = demo_tags(4);
    let avcc = demo
        .iter()
        .find(|(t, _, b)| *t == TagType::Video && b.get(1) == Some(&0))
        .map(|(_, _, b)| b.clone())
        .expect("demo.flv has an AVC sequence header");
    let mut short_lengths = avcc.clone();
    short_lengths[9] = 0xfd; // lengthSizeMinusOne = 1
    let mut out = Vec::new();
    FileHeader {
        version: 1,
        has_audio: true,
        has_video: true,
        data_offset: 9,
    }
    .write(&mut out);
    let mut tag = |t: u8, ts: u32, body: &[u8]| {
        flv::write_tag(&mut out, TagType::from_u8(t), ts, body).expect("small tag");
    };
    tag(18, 0, &amf0::encode_all(&[Value::string("onCuePoint")]));
    tag(31, 5, &[1, 2, 3]);
    tag(8, 10, &[0x2f, 0xff, 0xfb]);
    tag(9, 20, &[0x24, 0, 0]);
    tag(9, 30, &[0x90, b'h', b'v', b'c', b'1']);
    tag(9, 40, &short_lengths);
    tag(9, 0xff00_0000, &[0x17, 1, 0, 0, 0, 0, 3, 0x65, 0x88, 0x84]);
    tag(
        9,
        0xff00_0028,
        &[0x27, 1, 0xff, 0xff, 0xd8, 0, 2, 0x41, 0x9a],
    );
    tag(9, 0xff00_0050, &[0x17, 2, 0, 0, 0]);
    tag(8, 0xff00_0050, &[0xaf, 0, 0x11, 0x90]);
    tag(8, 0xff00_0060, &[0xaf, 1, 0x21, 0x10, 0x04]);
    let end = out.len() - 4;
    out.truncate(end);
    // The first tag (after the header and PreviousTagSize0) is filtered.
    out[FileHeader::SIZE + 4] |= 0x20;
    seeds.push(("gen-odd-tags", with_control(&[every(2)], &out)));
    seeds
}

fn video_traf(start: u64, seed: u8) -> TrafSpec {
    let payloads: Vec<Vec<u8>> = (0..4)
        .map(|i| synth::video_sample(i == 0, 30 + i, seed + i as u8, 4))
        .collect();
    let samples = payloads
        .iter()
        .zip([3600, 10_800, -3600, 0])
        .map(|(p, c)| TrunSample {
            size: Some(p.len() as u32),
            composition_offset: Some(c),
            ..TrunSample::default()
        })
        .collect();
    TrafSpec {
        tfhd: Tfhd {
            track_id: VIDEO,
            default_sample_flags: Some(0x0101_0000),
            ..Tfhd::default()
        },
        base: Base::Moof,
        tfdt: Some(start),
        tfxd: None,
        runs: vec![RunSpec {
            version0: false,
            data_offset: true,
            first_sample_flags: Some(0x0200_0000),
            samples,
            payloads,
        }],
    }
}

fn audio_traf(start: u64, seed: u8, base: Base, tfxd: bool) -> TrafSpec {
    let payloads: Vec<Vec<u8>> = (0..3)
        .map(|i| synth::audio_sample(8 + i, seed + i as u8))
        .collect();
    let samples = payloads
        .iter()
        .zip([213_333, 213_334, 213_333])
        .map(|(p, d)| TrunSample {
            size: Some(p.len() as u32),
            duration: Some(d),
            ..TrunSample::default()
        })
        .collect();
    TrafSpec {
        tfhd: Tfhd {
            track_id: AUDIO,
            ..Tfhd::default()
        },
        base,
        tfdt: (!tfxd).then_some(start),
        tfxd: tfxd.then_some(start),
        runs: vec![RunSpec {
            version0: false,
            data_offset: base != Base::Implicit,
            first_sample_flags: None,
            samples,
            payloads,
        }],
    }
}

fn text_traf() -> TrafSpec {
    TrafSpec {
        tfhd: Tfhd {
            track_id: TEXT,
            ..Tfhd::default()
        },
        base: Base::Explicit,
        tfdt: Some(0),
        tfxd: None,
        runs: vec![RunSpec {
            version0: true,
            data_offset: true,
            first_sample_flags: None,
            samples: vec![TrunSample::default()],
            payloads: vec![b"hello".to_vec()],
        }],
    }
}

fn fmp4() -> Vec<Seed> {
    let mut seeds = Vec::new();
    let mut s = synth::init();
    synth::fragment(
        &mut s,
        1,
        &[video_traf(0, 1), audio_traf(0, 2, Base::Moof, false)],
    );
    synth::fragment(
        &mut s,
        2,
        &[
            video_traf(14_400, 3),
            audio_traf(640_000, 4, Base::Moof, false),
        ],
    );
    seeds.push((
        "gen-synth-stream",
        with_control(&[crate::fmp4::mode(false), WHOLE], &s),
    ));

    // After the init prelude: implicit bases, tfxd times, an unpublished
    // track, a resent (duplicate) fragment; read in 9-byte pieces.
    let init = synth::init();
    let mut s = init.clone();
    synth::fragment(
        &mut s,
        1,
        &[
            video_traf(0, 5),
            audio_traf(0, 6, Base::Implicit, true),
            text_traf(),
        ],
    );
    let resent = s[init.len()..].to_vec();
    s.extend_from_slice(&resent);
    synth::fragment(&mut s, 2, &[audio_traf(640_000, 7, Base::Explicit, true)]);
    seeds.push((
        "gen-fragments-after-init",
        with_control(&[crate::fmp4::mode(true), every(9)], &s[init.len()..]),
    ));
    seeds
}

fn ts_ingest() -> Vec<Seed> {
    use crate::ts_ingest::{mode, mode_small_limit};
    const PACKET: usize = 188;
    let mut seeds = Vec::new();

    // A whole short stream: PAT, PMT (H.264, AAC, private data), one GOP
    // with B-frames, AAC in PES of three frames.
    seeds.push((
        "gen-synth-stream",
        with_control(&[mode(false), WHOLE], &ts::stream()),
    ));

    // After the PAT and PMT prelude: two GOPs of media, in 7-byte pieces.
    let mut m = ts::Mux::new();
    ts::media(&mut m, 90_000, 14);
    seeds.push((
        "gen-media-after-tables",
        with_control(&[mode(true), every(7)], m.bytes()),
    ));

    // Odd but valid: garbage before the first packet and between two,
    // times across the 33-bit wrap, a repeated packet, a continuity gap,
    // a new PMT moving the audio to another PID, CRC-protected ADTS frames
    // cut across two PES, new parameter sets; cut at a few points.
    let mut m = ts::Mux::new();
    ts::tables(&mut m, 0);
    ts::media(&mut m, (1 << 33) - 3 * ts::FRAME_TICKS, 7);
    m.psi(
        ts::PMT_PID,
        &ts::pmt_section(
            ts::PROGRAM,
            1,
            &[
                ts::Es::new(0x1b, ts::VIDEO_PID),
                ts::Es::new(0x0f, 0x103).language(*b"deu"),
            ],
        ),
    );
    let frames: Vec<u8> = (0..4)
        .flat_map(|i| ts::adts_frame(2, 4, 1, 30 + i, i % 2 == 0, i as u8))
        .collect();
    let t = 3 * ts::FRAME_TICKS;
    m.pes(0x103, &ts::pes(0xc0, Some(t), None, &frames[..70], true));
    m.pes(
        0x103,
        &ts::pes(0xc0, Some(t + 2 * 2090), None, &frames[70..], true),
    );
    let (sps, pps) = (ts::sps(640, 360), ts::pps(1));
    let au = ts::annex_b(&[&sps, &pps, &ts::slice(true, 120, 9)]);
    m.pes(
        ts::VIDEO_PID,
        &ts::pes(
            0xe0,
            Some(8 * ts::FRAME_TICKS),
            Some(7 * ts::FRAME_TICKS),
            &au,
            false,
        ),
    );
    m.pes(
        ts::VIDEO_PID,
        &ts::pes(
            0xe0,
            Some(9 * ts::FRAME_TICKS),
            None,
            &ts::access_unit(false, 40, 1),
            false,
        ),
    );
    let clean = m.into_bytes();
    let mut odd = vec![0x47, 0x00, 0x47, 0x13];
    odd.extend_from_slice(&clean[..8 * PACKET]);
    odd.extend_from_slice(&[0x47, 0x00, 0x55]);
    odd.extend_from_slice(&clean[8 * PACKET..9 * PACKET]);
    odd.extend_from_slice(&clean[8 * PACKET..9 * PACKET]);
    odd.extend_from_slice(&clean[10 * PACKET..]);
    let mut control = vec![mode(false)];
    control.extend_from_slice(&at(&[1, 190, 1500, 2999, 3000, 4100]));
    seeds.push(("gen-odd-stream", with_control(&control, &odd)));

    // A PES over a 300-byte limit, after the prelude.
    let mut m = ts::Mux::new();
    ts::media(&mut m, 0, 2);
    seeds.push((
        "gen-pes-over-limit",
        with_control(&[mode_small_limit(true), every(188)], m.bytes()),
    ));
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_run_clean() {
        for target in TARGETS {
            for (name, bytes) in for_target(target) {
                assert!(bytes.len() < 32 << 10, "{target}/{name} is large");
                match target {
                    "rtmp_chunk" => crate::rtmp::fuzz(&bytes),
                    "amf0" => crate::amf0::fuzz(&bytes),
                    "flv_tags" => crate::flv::fuzz(&bytes),
                    "fragment_object" => crate::fragment::fuzz(&bytes),
                    "tier_frame" => crate::tier_frame::fuzz(&bytes),
                    "ts_ingest" => crate::ts_ingest::fuzz(&bytes),
                    _ => crate::fmp4::fuzz(&bytes),
                }
            }
        }
    }
}

#[cfg(test)]
mod reach {
    //! The seeds reach the media layers, not just the error paths.

    use sluice_sdk::plugin::Event;

    use super::*;

    fn count(events: &[Event]) -> (usize, usize) {
        let tracks = events
            .iter()
            .filter(|e| matches!(e, Event::Track(_)))
            .count();
        let samples = events
            .iter()
            .map(|e| match e {
                Event::Samples(s) => s.len(),
                _ => 0,
            })
            .sum();
        (tracks, samples)
    }

    fn seed(target: &str, name: &str) -> Vec<u8> {
        for_target(target)
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b)
            .expect("seed exists")
    }

    #[test]
    fn rtmp_seeds_publish_media() {
        for (name, min_samples) in [
            ("gen-publish-demo", 10),
            ("gen-controls-extended-aggregate", 6),
        ] {
            let bytes = seed("rtmp_chunk", name);
            let mode = bytes[0];
            let input = crate::split(&bytes[1..]).expect("control");
            let mut data = crate::rtmp::Prelude::from_mode(mode).bytes();
            data.extend_from_slice(input.data);
            let out = crate::rtmp::run(&crate::rtmp::config(mode), &data, &input.cuts);
            let seen = out.result.expect("valid session");
            let events: Vec<Event> = seen
                .into_iter()
                .filter_map(|s| match s {
                    crate::rtmp::Seen::Event(e) => Some(e),
                    _ => None,
                })
                .collect();
            let (tracks, samples) = count(&events);
            assert_eq!(tracks, 2, "{name}");
            assert!(samples >= min_samples, "{name}: {samples} samples");
        }
        let bytes = seed("rtmp_chunk", "gen-message-over-limit");
        let mut data = crate::rtmp::Prelude::from_mode(bytes[0]).bytes();
        data.extend_from_slice(&bytes[2..]);
        let out = crate::rtmp::run(&crate::rtmp::config(bytes[0]), &data, &[]);
        assert!(matches!(
            out.result,
            Err(sluice_sdk::plugin::SessionError::Limit(_))
        ));
    }

    #[test]
    fn flv_seeds_demux() {
        let bytes = seed("flv_tags", "gen-demo-head");
        let file = crate::flv::read_whole(&bytes[1..]);
        assert_eq!(file.tags.len(), 24);
        let events: Vec<Event> = crate::flv::demux(&file)
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        assert_eq!(count(&events).0, 2);
        assert!(count(&events).1 >= 20);
        let bytes = seed("flv_tags", "gen-odd-tags");
        let file = crate::flv::read_whole(&bytes[1..]);
        assert_eq!(file.tags.len(), 11);
        let results = crate::flv::demux(&file);
        assert!(results.iter().any(|r| r.is_err()));
        let events: Vec<Event> = results.into_iter().flatten().flatten().collect();
        assert_eq!(count(&events), (2, 3));
    }

    #[test]
    fn fmp4_seeds_give_samples() {
        for (name, samples) in [("gen-synth-stream", 14), ("gen-fragments-after-init", 10)] {
            let bytes = seed("fmp4", name);
            let mut data = if bytes[0] & 1 == 1 {
                synth::init()
            } else {
                Vec::new()
            };
            data.extend_from_slice(&bytes[2..]);
            let out = crate::fmp4::run(&crate::fmp4::config(bytes[0]), &data, &[]);
            let events = out.result.expect("valid stream");
            assert_eq!(count(&events), (2, samples), "{name}");
        }
    }
}

#[cfg(test)]
mod ts_reach {
    //! The `ts_ingest` seeds reach tracks and samples (or the limit).

    use sluice_sdk::plugin::{Event, SessionError};

    use super::*;
    use crate::ts_ingest::{config, prelude, run};

    fn outcome(name: &str) -> crate::ts_ingest::Outcome {
        let bytes = for_target("ts_ingest")
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b)
            .expect("seed exists");
        let input = crate::split(&bytes[1..]).expect("control");
        let mut data = prelude(bytes[0]);
        data.extend_from_slice(input.data);
        run(&config(bytes[0]), &data, &[])
    }

    fn count(events: &[Event]) -> (usize, usize) {
        let tracks = events
            .iter()
            .filter(|e| matches!(e, Event::Track(_)))
            .count();
        let samples = events
            .iter()
            .map(|e| match e {
                Event::Samples(s) => s.len(),
                _ => 0,
            })
            .sum();
        (tracks, samples)
    }

    #[test]
    fn ts_seeds_give_tracks_and_samples() {
        let out = outcome("gen-synth-stream");
        assert_eq!(count(&out.result.expect("valid")), (2, 19));
        let out = outcome("gen-media-after-tables");
        assert_eq!(count(&out.result.expect("valid")), (2, 14 + 21));
        let out = outcome("gen-odd-stream");
        let events = out.result.expect("valid");
        let (tracks, samples) = count(&events);
        // Video, audio, audio on its new PID, video with new parameter sets.
        assert_eq!(tracks, 4, "{:?}", out.stats);
        assert!(samples >= 12, "{samples} samples; {:?}", out.stats);
        assert_eq!((out.stats.resyncs, out.stats.skipped_bytes), (2, 7));
        assert_eq!(out.stats.cc_gaps, 1);
        let out = outcome("gen-pes-over-limit");
        assert!(
            matches!(out.result, Err(SessionError::Limit(_))),
            "{:?}",
            out.result
        );
    }
}

#[cfg(test)]
mod ffmpeg {
    use sluice_sdk::plugin::Event;

    #[test]
    fn ffmpeg_ismv_seed_gives_samples() {
        let bytes = include_bytes!("../seeds/fmp4/ffmpeg-ismv");
        let out = crate::fmp4::run(&crate::fmp4::config(bytes[0]), &bytes[2..], &[]);
        let events = out.result.expect("ffmpeg's ismv is accepted");
        let tracks = events
            .iter()
            .filter(|e| matches!(e, Event::Track(_)))
            .count();
        assert_eq!(tracks, 2);
        assert!(out.stats.samples > 20, "{:?}", out.stats);
        crate::fmp4::fuzz(bytes);
    }
}
