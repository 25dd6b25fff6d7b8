//! Session-level tests: whole publish transcripts built with the crate's own
//! chunk encoder, fed whole, split at every byte boundary and byte by byte.

use sluice_sdk::amf0::Value;
use sluice_sdk::flv::{AacPacketType, AudioTagHeader, AvcPacketType, FrameType, VideoTagHeader};
use sluice_sdk::h264::AvcDecoderConfig;
use sluice_sdk::plugin::{AuthStage, Event, IngestAdapter, Sample, SessionConfig, SessionError};

use crate::RtmpSession;
use crate::chunk::{ChunkDecoder, Message};
use crate::fuzzing::{self, Client, drive};
use crate::message::{Command, ProtocolControl, UserControl, type_id};

const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x1e, 0xac, 0xd9, 0x40, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
    0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2d, 0x96,
];
const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];
/// AAC-LC, 48 kHz, stereo.
const ASC: &[u8] = &[0x11, 0x90];

fn config(max_message_size: u32) -> SessionConfig {
    SessionConfig {
        max_message_size,
        ..SessionConfig::default()
    }
}

fn video_body(frame_type: FrameType, packet: AvcPacketType, cts: i32, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    VideoTagHeader {
        frame_type,
        codec_id: 7,
        avc_packet_type: Some(packet),
        composition_time: cts,
    }
    .write(&mut b);
    b.extend_from_slice(payload);
    b
}

fn avc_sequence_header() -> Vec<u8> {
    let cfg = AvcDecoderConfig::from_parameter_sets(vec![SPS.to_vec()], vec![PPS.to_vec()])
        .expect("valid parameter sets");
    video_body(
        FrameType::Key,
        AvcPacketType::SequenceHeader,
        0,
        &cfg.to_bytes(),
    )
}

/// One access unit of `size` bytes of slice data in one NAL unit.
fn nalu(idr: bool, size: usize, seed: u8) -> Vec<u8> {
    let mut b = (size as u32 + 1).to_be_bytes().to_vec();
    b.push(if idr { 0x65 } else { 0x41 });
    b.extend((0..size).map(|i| (i as u8).wrapping_mul(seed)));
    b
}

fn audio_body(packet: AacPacketType, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    AudioTagHeader::aac(packet).write(&mut b);
    b.extend_from_slice(payload);
    b
}

/// A publish transcript: handshake, connect, publish, metadata, sequence
/// headers, `frames` video frames in I P B B order (25 fps, B-frames with
/// negative composition offsets relative to their decode order),
/// interleaved AAC frames, unpublish. `chunk_sizes` are applied in turn
/// (a Set Chunk Size before the connect and one after each sequence header).
fn transcript(frames: u32, frame_size: usize, start_ms: u32, chunk_sizes: [u32; 3]) -> Vec<u8> {
    let mut c = Client::new();
    c.handshake()
        .set_chunk_size(chunk_sizes[0])
        .connect("live/ch1/KEY")
        .publish("720p?token=abc")
        .metadata(vec![
            ("videodatarate".into(), Value::Number(2500.0)),
            ("audiodatarate".into(), Value::Number(128.0)),
            ("width".into(), Value::Number(640.0)),
            ("height".into(), Value::Number(360.0)),
        ])
        .video(start_ms, avc_sequence_header())
        .set_chunk_size(chunk_sizes[1])
        .audio(start_ms, audio_body(AacPacketType::SequenceHeader, ASC))
        .set_chunk_size(chunk_sizes[2]);
    let mut audio_n: u32 = 0;
    for i in 0..frames {
        // Decode order I0 P3 B1 B2 P6 B4 B5 ...: dts = i * 40 ms - 80 ms
        // (decode starts two frames early), pts from the display index.
        let display = match i {
            0 => 0,
            _ => {
                let (g, r) = ((i - 1) / 3, (i - 1) % 3);
                if r == 0 { 3 * g + 3 } else { 3 * g + r }
            }
        };
        let dts = start_ms.wrapping_add(i * 40);
        let pts = start_ms.wrapping_add(display * 40 + 80);
        let cts = pts.wrapping_sub(dts) as i32;
        let key = i % 12 == 0;
        let ft = if key {
            FrameType::Key
        } else {
            FrameType::Inter
        };
        c.video(
            dts,
            video_body(
                ft,
                AvcPacketType::Nalu,
                cts,
                &nalu(key, frame_size, i as u8 | 1),
            ),
        );
        // Audio up to this video time (1024 samples at 48 kHz = 21.33 ms).
        while u64::from(audio_n) * 1024 * 1000 / 48_000 <= u64::from(i * 40) {
            let ms = (u64::from(audio_n) * 1024 * 1000 / 48_000) as u32;
            c.audio(
                start_ms.wrapping_add(ms),
                audio_body(AacPacketType::Raw, &[0x21, 0x1b, audio_n as u8]),
            );
            audio_n += 1;
        }
    }
    c.command(
        1,
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
    c.bytes
}

/// Decodes the server's replies (after S0 S1 S2) into messages.
fn replies(events: &[Event]) -> Vec<Message> {
    let mut sent: Vec<u8> = Vec::new();
    for e in events {
        if let Event::Send(b) = e {
            sent.extend_from_slice(b);
        }
    }
    let mut d = ChunkDecoder::new(1 << 20);
    let mut rest = &sent[1 + 2 * 1536..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (n, m) = d.decode(rest).expect("our replies decode");
        rest = &rest[n..];
        if let Some(m) = m {
            if let Ok(Some(ProtocolControl::SetChunkSize(s))) =
                ProtocolControl::parse(m.type_id, &m.payload)
            {
                d.set_chunk_size(s).expect("valid");
            }
            out.push(m);
        }
    }
    out
}

fn samples(events: &[Event], track: u32) -> Vec<Sample> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Samples(s) => Some(s),
            _ => None,
        })
        .flatten()
        .filter(|s| s.track == track)
        .cloned()
        .collect()
}

#[test]
fn whole_publish_session() {
    let input = transcript(36, 300, 0, [4096, 100, 1000]);
    let mut s = RtmpSession::new(config(1 << 20));
    let events = drive(&mut s, &input, &[]).expect("valid session");

    // Handshake reply first.
    let Event::Send(s0s1s2) = &events[0] else {
        panic!("S0S1S2 first: {:?}", events[0])
    };
    assert_eq!(s0s1s2.len(), 1 + 2 * 1536);

    // Authorisation requests, in order.
    let auths: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Authorize(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(auths.len(), 2);
    assert_eq!(auths[0].stage, AuthStage::Connect);
    assert_eq!(auths[0].app, "live/ch1/KEY");
    assert_eq!(auths[0].stream, "");
    assert_eq!(auths[0].tc_url, "rtmp://127.0.0.1/live/ch1/KEY");
    assert_eq!(auths[1].stage, AuthStage::Publish);
    assert_eq!(auths[1].app, "live/ch1/KEY");
    assert_eq!(auths[1].stream, "720p");

    // Replies: control messages, _result for connect, releaseStream,
    // onFCPublish, createStream's stream id, StreamBegin, Publish.Start.
    let r = replies(&events);
    let controls: Vec<_> = r
        .iter()
        .filter_map(|m| ProtocolControl::parse(m.type_id, &m.payload).expect("valid"))
        .collect();
    assert_eq!(
        controls,
        vec![
            ProtocolControl::WindowAckSize(2_500_000),
            ProtocolControl::SetPeerBandwidth(2_500_000, 2),
            ProtocolControl::SetChunkSize(4096),
        ]
    );
    let commands: Vec<_> = r
        .iter()
        .filter(|m| m.type_id == type_id::COMMAND_AMF0)
        .map(|m| Command::parse(m.type_id, &m.payload).expect("valid"))
        .collect();
    let names: Vec<_> = commands.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["_result", "_result", "onFCPublish", "_result", "onStatus"]
    );
    let info = &commands[0].args[0];
    assert_eq!(
        info.get("code").and_then(Value::as_str),
        Some("NetConnection.Connect.Success")
    );
    assert_eq!(commands[0].transaction_id, 1.0);
    assert_eq!(commands[3].transaction_id, 4.0);
    assert_eq!(commands[3].args, vec![Value::Number(1.0)]);
    let status = &commands[4].args[0];
    assert_eq!(
        status.get("code").and_then(Value::as_str),
        Some("NetStream.Publish.Start")
    );
    assert!(r.iter().any(|m| m.type_id == type_id::USER_CONTROL
        && UserControl::parse(&m.payload) == Ok(UserControl::StreamBegin(1))));

    // Tracks.
    let tracks: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Track(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(tracks.len(), 2);
    let v = tracks[0];
    assert_eq!(
        (v.id, v.fourcc.as_str(), v.codec.as_str()),
        (1, "avc1", "avc1.64001e")
    );
    assert_eq!((v.width, v.height, v.timescale), (640, 360, 90_000));
    assert_eq!(v.bitrate, 2_500_000);
    assert_eq!(v.stream, "720p");
    let a = tracks[1];
    assert_eq!(
        (a.id, a.fourcc.as_str(), a.codec.as_str()),
        (2, "mp4a", "mp4a.40.2")
    );
    assert_eq!(
        (a.timescale, a.sample_rate, a.channels),
        (48_000, 48_000, 2)
    );
    assert_eq!(a.bitrate, 128_000);
    assert_eq!(a.codec_private, ASC);

    // Video samples.
    let vs = samples(&events, 1);
    assert_eq!(vs.len(), 36);
    for (i, s) in vs.iter().enumerate() {
        assert_eq!(s.dts, i as i64 * 40 * 90);
        assert_eq!(s.keyframe, i % 12 == 0);
        assert_eq!(s.data, nalu(i % 12 == 0, 300, i as u8 | 1));
    }
    assert!(vs.iter().any(|s| s.composition_offset < 80 * 90));
    assert!(vs.iter().any(|s| s.composition_offset > 80 * 90));
    // Presentation times are all distinct (a valid reordering).
    let mut pts: Vec<i64> = vs
        .iter()
        .map(|s| s.dts + i64::from(s.composition_offset))
        .collect();
    pts.sort_unstable();
    pts.dedup();
    assert_eq!(pts.len(), 36);

    // Audio samples, 1024 ticks apart.
    let aus = samples(&events, 2);
    assert!(aus.len() > 60);
    assert_eq!(aus[0].dts, 0);
    assert!(aus.windows(2).all(|w| w[1].dts - w[0].dts == 1024));
    assert!(aus.iter().all(|s| s.duration == 1024 && s.keyframe));

    // One end of stream, last.
    assert!(matches!(events.last(), Some(Event::EndOfStream(_))));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::EndOfStream(_)))
            .count(),
        1
    );
    assert!(s.close().is_empty());
}

#[test]
fn every_split_point_gives_the_same_events() {
    // Small chunk sizes so that every header form and split lands somewhere.
    let input = transcript(6, 40, 0x00ff_fff0, [60, 37, 128]);
    let reference = drive(&mut RtmpSession::new(config(1 << 20)), &input, &[]).expect("valid");
    assert!(samples(&reference, 1).len() == 6);
    for split in 1..input.len() {
        let mut s = RtmpSession::new(config(1 << 20));
        let events = drive(&mut s, &input, &[split]).expect("valid");
        assert_eq!(events, reference, "split at {split}");
    }
    let all: Vec<usize> = (1..input.len()).collect();
    let events = drive(&mut RtmpSession::new(config(1 << 20)), &input, &all).expect("valid");
    assert_eq!(events, reference, "byte by byte");
}

#[test]
fn timestamps_across_the_32_bit_wrap() {
    // Starts 200 ms before 2^32 ms: extended timestamps, then small ones.
    let start = u32::MAX - 199;
    let input = transcript(12, 50, start, [4096, 4096, 4096]);
    let events = drive(&mut RtmpSession::new(config(1 << 20)), &input, &[]).expect("valid");
    let vs = samples(&events, 1);
    assert_eq!(vs.len(), 12);
    for (i, s) in vs.iter().enumerate() {
        assert_eq!(s.dts, (i64::from(start) + i as i64 * 40) * 90, "frame {i}");
    }
    assert!(vs.last().expect("frames").dts > (1i64 << 32) * 90);
    let aus = samples(&events, 2);
    assert!(aus.windows(2).all(|w| w[1].dts - w[0].dts == 1024));
}

#[test]
fn oversize_message_is_a_limit_error() {
    let mut c = Client::new();
    c.handshake()
        .connect("live/ch1/KEY")
        .publish("720p")
        .video(0, avc_sequence_header())
        .video(
            40,
            video_body(FrameType::Key, AvcPacketType::Nalu, 0, &nalu(true, 5000, 3)),
        );
    let mut s = RtmpSession::new(config(4096));
    match drive(&mut s, &c.bytes, &[]) {
        Err(SessionError::Limit(m)) => assert!(m.contains("4096"), "{m}"),
        other => panic!("expected a limit error: {other:?}"),
    }
}

#[test]
fn media_before_publish_is_an_error() {
    let mut c = Client::new();
    c.handshake()
        .connect("live/ch1/KEY")
        .video(0, avc_sequence_header());
    let mut s = RtmpSession::new(config(1 << 20));
    assert!(matches!(
        drive(&mut s, &c.bytes, &[]),
        Err(SessionError::Malformed(_))
    ));
}

#[test]
fn input_is_held_until_authorised() {
    let mut c = Client::new();
    c.handshake().connect("live/ch1/KEY").publish("720p");
    let mut s = RtmpSession::new(config(1 << 20));
    let events = s.feed(&c.bytes).expect("valid");
    // S0S1S2, then the connect request and nothing after it.
    assert_eq!(events.len(), 2);
    let Event::Authorize(a) = &events[1] else {
        panic!("authorize: {events:?}")
    };
    assert_eq!(a.stage, AuthStage::Connect);
    // More input while paused produces nothing.
    assert!(s.feed(&[]).expect("valid").is_empty());
    // An unknown id changes nothing.
    assert!(s.authorize(a.id + 100, Ok(())).expect("ignored").is_empty());
    let after = s.authorize(a.id, Ok(())).expect("valid");
    // Connect replies, releaseStream, FCPublish, createStream, then the
    // publish request.
    assert!(matches!(after.last(), Some(Event::Authorize(p)) if p.stage == AuthStage::Publish));
    assert_eq!(after.len(), 5);

    // Holding is bounded.
    let mut s = RtmpSession::new(config(1 << 20));
    s.feed(&c.bytes).expect("valid");
    let flood = vec![0u8; 8 << 20];
    assert!(matches!(s.feed(&flood), Err(SessionError::Limit(_))));
}

#[test]
fn refusals() {
    // Connect refused: _error with the reason, later input ignored.
    let mut c = Client::new();
    c.handshake().connect("live/ch1/WRONG").publish("720p");
    let mut s = RtmpSession::new(config(1 << 20));
    let events = s.feed(&c.bytes).expect("valid");
    let Some(Event::Authorize(a)) = events.last() else {
        panic!("authorize")
    };
    let mut out = events.clone();
    let refusal = s
        .authorize(a.id, Err("invalid stream key".into()))
        .expect("valid");
    assert_eq!(refusal.len(), 1);
    out.extend(refusal);
    let r = replies(&out);
    let c = Command::parse(r[0].type_id, &r[0].payload).expect("valid");
    assert_eq!(c.name, "_error");
    assert_eq!(c.transaction_id, 1.0);
    assert_eq!(
        c.args[0].get("code").and_then(Value::as_str),
        Some("NetConnection.Connect.Rejected")
    );
    assert_eq!(
        c.args[0].get("description").and_then(Value::as_str),
        Some("invalid stream key")
    );
    assert!(s.feed(&[1, 2, 3]).expect("ignored").is_empty());

    // Publish refused: onStatus BadName, level error.
    let mut c = Client::new();
    c.handshake().connect("live/ch1/KEY").publish("720p");
    let mut s = RtmpSession::new(config(1 << 20));
    let mut out = s.feed(&c.bytes).expect("valid");
    let Some(Event::Authorize(a)) = out.last().cloned() else {
        panic!("authorize")
    };
    out.extend(s.authorize(a.id, Ok(())).expect("valid"));
    let Some(Event::Authorize(p)) = out.last().cloned() else {
        panic!("publish authorize")
    };
    out.extend(
        s.authorize(p.id, Err("channel not running".into()))
            .expect("valid"),
    );
    let r = replies(&out);
    let last = r.last().expect("replies");
    let c = Command::parse(last.type_id, &last.payload).expect("valid");
    assert_eq!(c.name, "onStatus");
    assert_eq!(
        c.args[0].get("code").and_then(Value::as_str),
        Some("NetStream.Publish.BadName")
    );
    assert_eq!(
        c.args[0].get("level").and_then(Value::as_str),
        Some("error")
    );
    assert!(s.close().is_empty());
}

#[test]
fn close_while_publishing_ends_the_stream() {
    let mut c = Client::new();
    c.handshake().connect("live/ch1/KEY").publish("720p");
    let mut s = RtmpSession::new(config(1 << 20));
    drive(&mut s, &c.bytes, &[]).expect("valid");
    assert!(matches!(s.close().as_slice(), [Event::EndOfStream(_)]));
}

#[test]
fn acknowledgements_follow_the_peer_window() {
    let mut c = Client::new();
    c.handshake()
        .message(&ProtocolControl::WindowAckSize(5000).to_message())
        .connect("live/ch1/KEY")
        .publish("720p")
        .video(0, avc_sequence_header());
    for i in 0..20 {
        c.video(
            40 * i,
            video_body(
                FrameType::Inter,
                AvcPacketType::Nalu,
                0,
                &nalu(false, 1000, 5),
            ),
        );
    }
    let total = c.bytes.len() as u64;
    let mut s = RtmpSession::new(config(1 << 20));
    let splits: Vec<usize> = (1..c.bytes.len()).step_by(700).collect();
    let events = drive(&mut s, &c.bytes, &splits).expect("valid");
    let acks: Vec<u32> = replies(&events)
        .iter()
        .filter_map(|m| match ProtocolControl::parse(m.type_id, &m.payload) {
            Ok(Some(ProtocolControl::Acknowledgement(n))) => Some(n),
            _ => None,
        })
        .collect();
    // The window is learnt after the handshake; then one ack per 5000 bytes.
    assert!(acks.len() as u64 >= (total - 3073) / 5000 - 1, "{acks:?}");
    assert!(acks.windows(2).all(|w| w[1] - w[0] >= 5000));
    assert!(acks.iter().all(|&a| u64::from(a) <= total));
}

#[test]
fn ping_is_answered() {
    let mut c = Client::new();
    c.handshake()
        .message(&UserControl::PingRequest(1234).to_message());
    let events = drive(&mut RtmpSession::new(config(1 << 20)), &c.bytes, &[]).expect("valid");
    let r = replies(&events);
    assert_eq!(
        UserControl::parse(&r[0].payload),
        Ok(UserControl::PingResponse(1234))
    );
}

#[test]
fn aggregate_messages_are_unpacked() {
    let mut c = Client::new();
    c.handshake().connect("live/ch1/KEY").publish("720p");
    let mut agg = Vec::new();
    sluice_sdk::flv::write_tag(
        &mut agg,
        sluice_sdk::flv::TagType::Video,
        5000,
        &avc_sequence_header(),
    )
    .expect("fits");
    for i in 0..3u32 {
        sluice_sdk::flv::write_tag(
            &mut agg,
            sluice_sdk::flv::TagType::Video,
            5000 + 40 * i,
            &video_body(FrameType::Key, AvcPacketType::Nalu, 0, &nalu(true, 10, 1)),
        )
        .expect("fits");
    }
    c.message(&Message {
        csid: 6,
        timestamp: 100,
        type_id: type_id::AGGREGATE,
        stream_id: 1,
        payload: agg,
    });
    let events = drive(&mut RtmpSession::new(config(1 << 20)), &c.bytes, &[]).expect("valid");
    let vs = samples(&events, 1);
    let dts: Vec<i64> = vs.iter().map(|s| s.dts).collect();
    assert_eq!(dts, vec![9000, 12600, 16200]);
}

#[test]
fn unsupported_codec_is_reported() {
    let mut c = Client::new();
    c.handshake()
        .connect("live/ch1/KEY")
        .publish("720p")
        .audio(0, vec![0x2f, 0xff, 0xfb, 0x90]);
    assert!(matches!(
        drive(&mut RtmpSession::new(config(1 << 20)), &c.bytes, &[]),
        Err(SessionError::Unsupported(_))
    ));
}

/// xorshift64*, enough for garbage.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn garbage_never_panics() {
    let mut rng = Rng(0x1234_5678);
    let valid = transcript(6, 40, 1000, [60, 37, 128]);
    for round in 0..3000 {
        let n = (rng.next() % 512) as usize;
        let noise = rng.bytes(n);
        fuzzing::session(&noise);
        fuzzing::session_publishing(&noise);
        fuzzing::chunk_decoder(&noise);
        fuzzing::sdk_parsers(&noise);
        // Mutations of a valid session: flipped bytes and truncation.
        let mut m = valid.clone();
        for _ in 0..1 + round % 8 {
            let at = (rng.next() as usize) % m.len();
            m[at] ^= 1 << (rng.next() % 8);
        }
        m.truncate((rng.next() as usize) % (m.len() + 1));
        let mut with_k = vec![(rng.next() % 200) as u8 + 1];
        with_k.extend_from_slice(&m);
        fuzzing::session(&with_k);
        fuzzing::chunk_decoder(&m[m.len().min(3073)..]);
    }
}
