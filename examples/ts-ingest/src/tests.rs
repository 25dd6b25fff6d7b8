//! Session tests on synthetic streams (`fuzzing::synth`).

use sluice_sdk::h264::{self, nal_type};
use sluice_sdk::plugin::{Event, IngestAdapter, Sample, SessionConfig, SessionError, TrackInfo};

use crate::fuzzing::synth::{self, AUDIO_PID, DATA_PID, Es, Mux, PMT_PID, VIDEO_PID};
use crate::fuzzing::{self, drive};
use crate::packet::{MAX_RESYNC_BYTES, NULL_PID, PACKET_SIZE};
use crate::session::MAX_PACKETS_WITHOUT_PROGRAM;
use crate::{Stats, TsSession};

fn run_with(
    config: SessionConfig,
    bytes: &[u8],
    cuts: &[usize],
) -> (Result<Vec<Event>, SessionError>, Stats) {
    let mut s = TsSession::new(config);
    let r = drive(&mut s, bytes, cuts);
    (r, s.stats())
}

fn run(bytes: &[u8]) -> (Vec<Event>, Stats) {
    let (r, stats) = run_with(fuzzing::config(), bytes, &[]);
    (r.expect("valid stream"), stats)
}

fn tracks(events: &[Event]) -> Vec<TrackInfo> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Track(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

fn samples(events: &[Event], track: u16) -> Vec<Sample> {
    events
        .iter()
        .flat_map(|e| match e {
            Event::Samples(s) => s.clone(),
            _ => Vec::new(),
        })
        .filter(|s| s.track == u32::from(track))
        .collect()
}

fn nal_types(sample: &Sample) -> Vec<u8> {
    h264::nal_units(&sample.data, 4)
        .map(|n| h264::nal_unit_type(n.expect("4-byte lengths")).expect("not empty"))
        .collect()
}

#[test]
fn whole_stream() {
    let (events, stats) = run(&synth::stream());
    let t = tracks(&events);
    assert_eq!(t.len(), 2, "{t:?}");
    // Audio PES declare their length and complete at once; a video PES
    // (length 0) completes when the next one starts.
    let (audio, video) = (&t[0], &t[1]);
    assert_eq!(video.id, u32::from(VIDEO_PID));
    assert_eq!(video.fourcc, "avc1");
    assert_eq!(video.codec, "avc1.42c01e");
    assert_eq!((video.width, video.height), (320, 240));
    assert_eq!(video.timescale, 90_000);
    assert_eq!(video.stream, "fuzz");
    assert_eq!(audio.id, u32::from(AUDIO_PID));
    assert_eq!(audio.fourcc, "mp4a");
    assert_eq!(audio.codec, "mp4a.40.2");
    assert_eq!(audio.codec_private, vec![0x11, 0x90]);
    assert_eq!((audio.sample_rate, audio.channels), (48_000, 2));
    assert_eq!(audio.timescale, 48_000);
    assert_eq!(audio.language, "en");

    let vs = samples(&events, VIDEO_PID);
    assert_eq!(vs.len(), 7);
    let dts: Vec<i64> = vs.iter().map(|s| s.dts).collect();
    assert_eq!(dts, (0..7).map(|i| 90_000 + i * 3600).collect::<Vec<_>>());
    let offsets: Vec<i32> = vs.iter().map(|s| s.composition_offset).collect();
    assert_eq!(offsets, vec![3600, 10_800, 0, 0, 10_800, 0, 0]);
    assert_eq!(
        vs.iter().map(|s| s.keyframe).collect::<Vec<_>>(),
        vec![true, false, false, false, false, false, false]
    );
    // AUD, SPS and PPS are out; the SEI and the slice stay.
    assert_eq!(nal_types(&vs[0]), vec![nal_type::SEI, nal_type::IDR]);
    assert_eq!(nal_types(&vs[1]), vec![nal_type::SLICE]);

    let aus = samples(&events, AUDIO_PID);
    assert_eq!(aus.len(), 12);
    for (i, s) in aus.iter().enumerate() {
        assert_eq!(s.dts, 48_000 + 1920 + 1024 * i as i64);
        assert_eq!(s.duration, 1024);
        assert!(s.keyframe);
        assert_eq!(s.data.len(), 20 + 3 * (i % 3));
    }

    let packets = synth::stream().len() / PACKET_SIZE;
    assert_eq!(
        events.last(),
        Some(&Event::EndOfStream(format!(
            "end of the POST body after {packets} packets"
        )))
    );
    assert_eq!(stats.samples, 19);
    assert_eq!(stats.ignored_streams, 1);
    assert_eq!(stats.cc_gaps + stats.pes_dropped + stats.crc_errors, 0);
}

#[test]
fn track_events_come_before_their_samples_and_nothing_asks_for_authorisation() {
    let (events, _) = run(&synth::stream());
    let mut declared = std::collections::BTreeSet::new();
    for e in &events {
        match e {
            Event::Track(t) => {
                declared.insert(t.id);
            }
            Event::Samples(s) => {
                for s in s {
                    assert!(declared.contains(&s.track));
                }
            }
            Event::EndOfStream(_) => {}
            Event::Authorize(_) | Event::Send(_) => panic!("{e:?} over HTTP"),
        }
    }
}

#[test]
fn every_split_gives_the_same_events() {
    let stream = synth::stream();
    let (whole, _) = run(&stream);
    for cut in 0..=stream.len() {
        let (r, _) = run_with(fuzzing::config(), &stream, &[cut]);
        assert_eq!(r.as_ref(), Ok(&whole), "cut at {cut}");
    }
    for step in [1, 2, 7, 187, 188, 189, 1000] {
        let cuts: Vec<usize> = (step..stream.len()).step_by(step).collect();
        let (r, _) = run_with(fuzzing::config(), &stream, &cuts);
        assert_eq!(r.as_ref(), Ok(&whole), "every {step} bytes");
    }
}

#[test]
fn garbage_before_and_between_packets_is_skipped() {
    let stream = synth::stream();
    let (clean, _) = run(&stream);
    let mut dirty = vec![0x47, 0x00, 0x11, 0x47];
    dirty.extend_from_slice(&stream[..PACKET_SIZE * 5]);
    dirty.extend_from_slice(&[0x47; 3]);
    dirty.extend_from_slice(&stream[PACKET_SIZE * 5..]);
    let (events, stats) = run(&dirty);
    assert_eq!(events, clean);
    assert_eq!(stats.skipped_bytes, 7);
    assert_eq!(stats.resyncs, 2);
    // Too much garbage is not a transport stream.
    let mut junk = vec![0x55u8; MAX_RESYNC_BYTES + 1];
    junk.extend_from_slice(&stream);
    let (r, _) = run_with(fuzzing::config(), &junk, &[]);
    assert!(
        matches!(&r, Err(SessionError::Malformed(m)) if m.contains("sync")),
        "{r:?}"
    );
}

#[test]
fn a_continuity_gap_drops_the_pes_in_progress_only() {
    let stream = synth::stream();
    let (clean, _) = run(&stream);
    // Find the second packet of the first video PES and drop it.
    let packets: Vec<&[u8]> = stream.chunks(PACKET_SIZE).collect();
    let victim = packets
        .iter()
        .position(|p| {
            crate::packet::pid_of(p.first_chunk().expect("188")) == VIDEO_PID && p[1] & 0x40 == 0
        })
        .expect("a continuation packet");
    let mut cut = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        if i != victim {
            cut.extend_from_slice(p);
        }
    }
    let (events, stats) = run(&cut);
    assert_eq!(stats.cc_gaps, 1);
    assert_eq!(stats.pes_dropped, 1);
    // The first access unit carried the parameter sets: the video track
    // is declared at the next keyframe only, none here; audio is intact.
    assert_eq!(samples(&events, AUDIO_PID), samples(&clean, AUDIO_PID));
    assert!(samples(&events, VIDEO_PID).is_empty());
    assert_eq!(stats.units_dropped, 6);

    // A repeated packet is dropped silently.
    let mut doubled = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        doubled.extend_from_slice(p);
        if i == victim {
            doubled.extend_from_slice(p);
        }
    }
    let (events, stats) = run(&doubled);
    assert_eq!(events[..events.len() - 1], clean[..clean.len() - 1]);
    assert_eq!(stats.cc_gaps, 0);
}

#[test]
fn damaged_packets_are_dropped() {
    let stream = synth::stream();
    let mut v = stream.clone();
    // Transport error indicator on the second packet of the first video PES.
    let at = (2..v.len() / PACKET_SIZE)
        .map(|i| i * PACKET_SIZE)
        .find(|&o| {
            crate::packet::pid_of(v[o..].first_chunk().expect("188")) == VIDEO_PID
                && v[o + 1] & 0x40 == 0
        })
        .expect("video");
    v[at + 1] |= 0x80;
    let (events, stats) = run(&v);
    assert_eq!(stats.damaged_packets, 1);
    assert_eq!(stats.pes_dropped, 1);
    assert_eq!(tracks(&events).len(), 1);
}

#[test]
fn a_bad_pat_crc_means_no_program_and_no_events() {
    let mut v = synth::stream();
    // The PAT section starts at byte 5 of the first packet; flip its CRC.
    let pat_len = synth::pat_section(1, PMT_PID, 0).len();
    v[5 + pat_len - 1] ^= 0x01;
    let (events, stats) = run(&v);
    let packets = v.len() / PACKET_SIZE;
    assert_eq!(
        events,
        vec![Event::EndOfStream(format!(
            "end of the POST body after {packets} packets"
        ))]
    );
    assert_eq!(stats.crc_errors, 1);
    assert_eq!(stats.samples, 0);
    // Long enough without a program is an error.
    let mut m = Mux::new();
    for _ in 0..MAX_PACKETS_WITHOUT_PROGRAM {
        m.packet(VIDEO_PID, false, &[0; 184]);
    }
    m.packet(NULL_PID, false, &[]);
    let (r, _) = run_with(fuzzing::config(), m.bytes(), &[]);
    assert!(
        matches!(&r, Err(SessionError::Malformed(m)) if m.contains("no valid PAT")),
        "{r:?}"
    );
}

#[test]
fn an_oversized_pes_is_a_limit_error() {
    let mut m = Mux::new();
    synth::tables(&mut m, 0);
    let big = synth::access_unit(true, 5000, 1);
    m.pes(VIDEO_PID, &synth::pes(0xe0, Some(0), None, &big, false));
    let config = SessionConfig {
        max_message_size: 4096,
        ..fuzzing::config()
    };
    let (r, _) = run_with(config.clone(), m.bytes(), &[]);
    assert!(
        matches!(&r, Err(SessionError::Limit(m)) if m.contains("4096")),
        "{r:?}"
    );
    // The same session with room for it.
    let (r, _) = run_with(fuzzing::config(), m.bytes(), &[]);
    assert_eq!(samples(&r.expect("fits"), VIDEO_PID).len(), 1);
    // After an error, every feed gives it again and close adds nothing.
    let mut s = TsSession::new(config);
    let e = s.feed(m.bytes()).expect_err("over the limit");
    assert_eq!(s.feed(&[]), Err(e));
    assert_eq!(s.close(), vec![]);
}

#[test]
fn track_limit() {
    let config = SessionConfig {
        max_tracks: 1,
        ..fuzzing::config()
    };
    let (r, _) = run_with(config, &synth::stream(), &[]);
    assert!(
        matches!(&r, Err(SessionError::Limit(m)) if m.contains("limit of 1")),
        "{r:?}"
    );
}

#[test]
fn pmt_changes_redeclare_the_streams_that_changed() {
    let mut m = Mux::new();
    synth::tables(&mut m, 0);
    synth::media(&mut m, 90_000, 7);
    // The same PMT again: nothing happens.
    synth::tables(&mut m, 0);
    // Version 1: audio moves to PID 0x103.
    m.psi(
        PMT_PID,
        &synth::pmt_section(
            1,
            1,
            &[
                Es::new(0x1b, VIDEO_PID),
                Es::new(0x0f, 0x103).language(*b"eng"),
            ],
        ),
    );
    let mut payload = Vec::new();
    for _ in 0..2 {
        payload.extend_from_slice(&synth::adts_frame(2, 3, 2, 30, false, 9));
    }
    m.pes(
        0x103,
        &synth::pes(0xc0, Some(200_000), None, &payload, true),
    );
    // Old audio PID data is no longer taken.
    m.pes(
        AUDIO_PID,
        &synth::pes(0xc0, Some(200_000), None, &payload, true),
    );
    let (events, _) = run(m.bytes());
    let t = tracks(&events);
    assert_eq!(
        t.iter().map(|t| t.id).collect::<Vec<_>>(),
        vec![0x101, 0x100, 0x103]
    );
    assert_eq!(samples(&events, 0x103).len(), 2);
    assert_eq!(samples(&events, AUDIO_PID).len(), 12);
}

#[test]
fn parameter_set_changes_redeclare_video() {
    let mut m = Mux::new();
    synth::tables(&mut m, 0);
    synth::media(&mut m, 0, 7);
    let sps = synth::sps(640, 360);
    let au = synth::annex_b(&[&sps, &synth::pps(0), &synth::slice(true, 80, 3)]);
    m.pes(
        VIDEO_PID,
        &synth::pes(0xe0, Some(50_000), Some(46_400), &au, false),
    );
    let (events, _) = run(m.bytes());
    let video: Vec<TrackInfo> = tracks(&events)
        .into_iter()
        .filter(|t| t.id == u32::from(VIDEO_PID))
        .collect();
    assert_eq!(video.len(), 2);
    assert_eq!((video[1].width, video[1].height), (640, 360));
    // The re-declaration comes right before the sample that needs it.
    let i = events
        .iter()
        .rposition(|e| matches!(e, Event::Track(t) if t.width == 640))
        .expect("declared");
    assert!(matches!(&events[i + 1], Event::Samples(s) if s[0].keyframe && s[0].dts == 46_400));
}

#[test]
fn times_unwrap_across_the_33_bit_wrap() {
    let base = (1u64 << 33) - 5 * synth::FRAME_TICKS;
    let (events, _) = run(&synth::stream_at(base, 14));
    for pid in [VIDEO_PID, AUDIO_PID] {
        let s = samples(&events, pid);
        assert!(s.windows(2).all(|w| w[1].dts > w[0].dts), "PID {pid:#x}");
    }
    let vs = samples(&events, VIDEO_PID);
    assert_eq!(vs.len(), 14);
    assert_eq!(vs[0].dts, base as i64);
    assert_eq!(vs[13].dts, base as i64 + 13 * 3600);
    assert!(vs.iter().all(|s| s.composition_offset >= 0));
    let aus = samples(&events, AUDIO_PID);
    assert!(aus.windows(2).all(|w| w[1].dts - w[0].dts == 1024));
}

#[test]
fn decode_time_going_back_redeclares_the_track() {
    let mut m = Mux::new();
    synth::tables(&mut m, 0);
    synth::media(&mut m, 900_000, 7);
    synth::media(&mut m, 90_000, 7);
    let (events, stats) = run(m.bytes());
    assert_eq!(stats.time_resets, 2);
    let video: Vec<_> = tracks(&events)
        .into_iter()
        .filter(|t| t.id == u32::from(VIDEO_PID))
        .collect();
    assert_eq!(video.len(), 2);
    assert_eq!(video[0], video[1]);
}

#[test]
fn crc_protected_and_split_adts_frames() {
    let mut m = Mux::new();
    synth::tables(&mut m, 0);
    let frames: Vec<Vec<u8>> = (0..4)
        .map(|i| synth::adts_frame(2, 4, 1, 40 + i, i % 2 == 1, i as u8))
        .collect();
    let all = frames.concat();
    // Two PES cutting the third frame in the middle.
    let cut = frames[0].len() + frames[1].len() + 10;
    m.pes(
        AUDIO_PID,
        &synth::pes(0xc0, Some(90_000), None, &all[..cut], true),
    );
    let t2 = 90_000 + 3 * 90_000 * 1024 / 44_100;
    m.pes(
        AUDIO_PID,
        &synth::pes(0xc0, Some(t2), None, &all[cut..], true),
    );
    let (events, _) = run(m.bytes());
    let t = tracks(&events);
    assert_eq!(t.len(), 1);
    assert_eq!(
        (t[0].sample_rate, t[0].channels, t[0].timescale),
        (44_100, 1, 44_100)
    );
    let aus = samples(&events, AUDIO_PID);
    assert_eq!(aus.len(), 4);
    for (s, f) in aus.iter().zip(&frames) {
        let header = if f[1] & 1 == 1 { 7 } else { 9 };
        assert_eq!(s.data, f[header..]);
    }
    let dts: Vec<i64> = aus.iter().map(|s| s.dts).collect();
    assert_eq!(dts, vec![44_100, 45_124, 46_148, 47_172]);
}

#[test]
fn video_without_parameter_sets_is_never_declared() {
    let mut m = Mux::new();
    synth::tables(&mut m, 0);
    for i in 0..5u64 {
        let au = synth::annex_b(&[&synth::slice(i == 0, 50, 1)]);
        m.pes(
            VIDEO_PID,
            &synth::pes(0xe0, Some(i * 3600), None, &au, false),
        );
    }
    let (events, stats) = run(m.bytes());
    assert!(tracks(&events).is_empty());
    assert_eq!(stats.units_dropped, 5);
}

#[test]
fn close_flushes_the_last_access_unit() {
    let stream = synth::stream();
    let mut s = TsSession::new(fuzzing::config());
    let events = s.feed(&stream).expect("valid");
    // The last video PES (length 0) waits for the end of the stream.
    assert_eq!(samples(&events, VIDEO_PID).len(), 6);
    let end = s.close();
    assert_eq!(samples(&end, VIDEO_PID).len(), 1);
    assert!(matches!(end.last(), Some(Event::EndOfStream(_))));
    assert_eq!(s.close(), vec![]);
    assert!(s.feed(&[0x47]).is_err());
}

#[test]
fn a_truncated_stream_keeps_what_is_complete() {
    let stream = synth::stream();
    let (whole, _) = run(&stream);
    let whole_video = samples(&whole, VIDEO_PID);
    for n in (0..stream.len()).step_by(61) {
        let (events, _) = run(&stream[..n]);
        let video = samples(&events, VIDEO_PID);
        assert!(video.len() <= whole_video.len());
        // Whatever comes out is a prefix of the whole stream's samples,
        // except the last access unit, which may be cut.
        for (a, b) in video.iter().zip(&whole_video).rev().skip(1) {
            assert_eq!(a, b);
        }
    }
}

#[test]
fn other_streams_are_noted_once_and_scrambling_is_refused() {
    let mut m = Mux::new();
    synth::tables(&mut m, 0);
    synth::tables(&mut m, 0);
    m.pes(DATA_PID, &synth::pes(0xbd, Some(0), None, &[1, 2, 3], true));
    let mut s = TsSession::new(fuzzing::config());
    s.feed(m.bytes()).expect("valid");
    assert_eq!(s.ignored_streams(), vec![(DATA_PID, 0x06)]);
    assert_eq!(s.stats().ignored_streams, 1);

    let mut m = Mux::new();
    synth::tables(&mut m, 0);
    m.packet(AUDIO_PID, true, &[0; 184]);
    m.packet(NULL_PID, false, &[]);
    let mut v = m.into_bytes();
    let last = v.len() - 2 * PACKET_SIZE;
    v[last + 3] |= 0x80;
    let (r, _) = run_with(fuzzing::config(), &v, &[]);
    assert!(
        matches!(&r, Err(SessionError::Unsupported(m)) if m.contains("scrambled")),
        "{r:?}"
    );
}

#[test]
fn a_program_without_h264_or_aac_is_unsupported() {
    let mut m = Mux::new();
    m.psi(0, &synth::pat_section(1, PMT_PID, 0));
    m.psi(
        PMT_PID,
        &synth::pmt_section(1, 0, &[Es::new(0x24, 0x100), Es::new(0x03, 0x101)]),
    );
    // (The last packet is read at close, where errors can only be logged.)
    m.packet(NULL_PID, false, &[]);
    let (r, _) = run_with(fuzzing::config(), m.bytes(), &[]);
    assert!(
        matches!(&r, Err(SessionError::Unsupported(m)) if m.contains("0x24 on PID 0x0100")),
        "{r:?}"
    );
}

#[test]
fn info_names_the_ts_extension() {
    let info = TsSession::info();
    assert_eq!(info.name, "ts");
    assert_eq!(info.extension, "ts");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
}

/// A tiny deterministic PRNG (xorshift64*), so the test needs no crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn garbage_truncation_and_mutation_never_panic() {
    let mut rng = Rng(0x7515_eed0_0000_0001);
    for _ in 0..500 {
        let len = rng.below(3000);
        let mut v: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Sync bytes where packets would start, so the packet layer is reached.
        if rng.below(2) == 0 {
            for at in (1..v.len()).step_by(PACKET_SIZE) {
                v[at] = 0x47;
            }
        }
        fuzzing::session(&v);
        fuzzing::parsers(&v);
    }
    let seed = synth::stream();
    let prelude = synth::prelude().len();
    for _ in 0..1500 {
        let mut v = seed.clone();
        for _ in 0..1 + rng.below(6) {
            let i = prelude / 2 + rng.below(v.len() - prelude / 2);
            v[i] = match rng.below(4) {
                0 => rng.next() as u8,
                1 => v[i].wrapping_add(1),
                2 => 0x47,
                _ => 0xff,
            };
        }
        let mut input = vec![rng.next() as u8];
        input.extend_from_slice(&v);
        fuzzing::session(&input);
        fuzzing::parsers(&v);
    }
}

#[test]
fn an_error_in_what_close_finishes_is_logged_without_end_of_stream() {
    // Found by the ts_ingest fuzz target: the last access unit (complete
    // only at the end of the body) carries a truncated PPS. `close` cannot
    // return an error; it gives what came before, and no end of stream.
    let mut m = Mux::new();
    synth::tables(&mut m, 0);
    synth::media(&mut m, 0, 2);
    let au = synth::annex_b(&[&synth::sps(320, 240), &[0x68]]);
    m.pes(VIDEO_PID, &synth::pes(0xe0, Some(9000), None, &au, false));
    let mut s = TsSession::new(fuzzing::config());
    let events = s.feed(m.bytes()).expect("fine until the end");
    assert_eq!(samples(&events, VIDEO_PID).len(), 1);
    // The last packet starts the bad access unit, which completes the one
    // before it.
    let end = s.close();
    assert_eq!(samples(&end, VIDEO_PID).len(), 1);
    assert!(
        !end.iter().any(|e| matches!(e, Event::EndOfStream(_))),
        "{end:?}"
    );
    assert!(s.feed(&[]).is_err());
}
