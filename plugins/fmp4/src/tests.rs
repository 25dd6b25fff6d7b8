//! Session-level tests: synthetic streams written with the SDK's box
//! writer, fed whole, split at every byte boundary and byte by byte.

use sluice_sdk::bmff::{Tfhd, TrunSample};
use sluice_sdk::h264::AvcDecoderConfig;
use sluice_sdk::plugin::{Event, IngestAdapter, Sample, SessionConfig, SessionError, TrackKind};

use crate::Fmp4Session;
use crate::fuzzing::synth::{
    self, AUDIO, Base, RunSpec, TEXT, TrafSpec, VIDEO, VideoEntry, audio_sample, video_sample,
};
use crate::fuzzing::{self, drive};

const SYNC: u32 = 0x0200_0000;
const NON_SYNC: u32 = 0x0101_0000;

fn config() -> SessionConfig {
    SessionConfig {
        remote_addr: "127.0.0.1:5000".into(),
        max_message_size: 1 << 20,
        max_tracks: 4,
        stream: "720p".into(),
    }
}

fn run(samples: Vec<TrunSample>, payloads: Vec<Vec<u8>>) -> RunSpec {
    RunSpec {
        version0: false,
        data_offset: true,
        first_sample_flags: None,
        samples,
        payloads,
    }
}

fn tfhd(track_id: u32) -> Tfhd {
    Tfhd {
        track_id,
        ..Tfhd::default()
    }
}

fn sized(payloads: &[Vec<u8>]) -> Vec<TrunSample> {
    payloads
        .iter()
        .map(|p| TrunSample {
            size: Some(p.len() as u32),
            ..TrunSample::default()
        })
        .collect()
}

/// Video decode order I P B B (25 fps at 90 kHz, 3600 ticks from `trex`),
/// signed composition offsets; first-sample flags mark the keyframe.
fn video_traf_1() -> TrafSpec {
    let payloads: Vec<Vec<u8>> = (0..4)
        .map(|i| video_sample(i == 0, 40 + i, i as u8, 4))
        .collect();
    let ctos = [3600, 10_800, -3600, 0];
    let samples = payloads
        .iter()
        .zip(ctos)
        .map(|(p, c)| TrunSample {
            size: Some(p.len() as u32),
            composition_offset: Some(c),
            ..TrunSample::default()
        })
        .collect();
    TrafSpec {
        tfhd: Tfhd {
            default_sample_flags: Some(NON_SYNC),
            ..tfhd(VIDEO)
        },
        base: Base::Moof,
        tfdt: Some(0),
        tfxd: None,
        runs: vec![RunSpec {
            first_sample_flags: Some(SYNC),
            ..run(samples, payloads)
        }],
    }
}

/// AAC at 10 MHz: 1024 samples at 48 kHz are 213333.33 ticks.
fn audio_traf(start: i64, base: Base, seed: u8, tfxd: bool) -> TrafSpec {
    let payloads: Vec<Vec<u8>> = (0..3)
        .map(|i| audio_sample(10 + i, seed + i as u8))
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
    let time = Some(start as u64);
    TrafSpec {
        tfhd: tfhd(AUDIO),
        base,
        tfdt: if tfxd { None } else { time },
        tfxd: if tfxd { time } else { None },
        runs: vec![RunSpec {
            data_offset: base != Base::Implicit,
            ..run(samples, payloads)
        }],
    }
}

/// Two runs, explicit base data offset; the second run has no data offset.
fn video_traf_2() -> TrafSpec {
    let first: Vec<Vec<u8>> = (0..3)
        .map(|i| video_sample(i == 0, 30 + i, 10 + i as u8, 4))
        .collect();
    let second: Vec<Vec<u8>> = (0..2)
        .map(|i| video_sample(false, 20 + i, 20 + i as u8, 4))
        .collect();
    let first_samples = first
        .iter()
        .enumerate()
        .map(|(i, p)| TrunSample {
            duration: Some(3600),
            size: Some(p.len() as u32),
            flags: Some(if i == 0 { SYNC } else { NON_SYNC }),
            composition_offset: Some(-1800),
        })
        .collect();
    TrafSpec {
        tfhd: Tfhd {
            default_sample_flags: Some(NON_SYNC),
            ..tfhd(VIDEO)
        },
        base: Base::Explicit,
        tfdt: Some(4 * 3600),
        tfxd: None,
        runs: vec![
            run(first_samples, first),
            RunSpec {
                data_offset: false,
                ..run(sized(&second), second)
            },
        ],
    }
}

/// Smooth style: no tfdt, only tfxd; version 0 run with unsigned offsets;
/// sizes, durations and flags from the tfhd.
fn video_traf_3() -> TrafSpec {
    let payloads: Vec<Vec<u8>> = (0..3)
        .map(|i| video_sample(i == 0, 25, 30 + i as u8, 4))
        .collect();
    let samples = [7200, 0, 3600]
        .into_iter()
        .map(|c| TrunSample {
            composition_offset: Some(c),
            ..TrunSample::default()
        })
        .collect();
    TrafSpec {
        tfhd: Tfhd {
            default_sample_duration: Some(3600),
            default_sample_size: Some(payloads[0].len() as u32),
            default_sample_flags: Some(NON_SYNC),
            ..tfhd(VIDEO)
        },
        base: Base::Implicit,
        tfdt: None,
        tfxd: Some(9 * 3600),
        runs: vec![RunSpec {
            version0: true,
            first_sample_flags: Some(SYNC),
            ..run(samples, payloads)
        }],
    }
}

/// Samples of the unpublished subtitle track (sizes from `trex`).
fn text_traf() -> TrafSpec {
    TrafSpec {
        tfhd: tfhd(TEXT),
        base: Base::Moof,
        tfdt: Some(0),
        tfxd: None,
        runs: vec![run(
            vec![TrunSample::default(); 2],
            vec![b"hello".to_vec(), b"world".to_vec()],
        )],
    }
}

/// No time at all: continues from the end of the previous fragment.
fn video_traf_untimed() -> TrafSpec {
    let payloads = vec![video_sample(true, 12, 99, 4)];
    TrafSpec {
        tfhd: tfhd(VIDEO),
        base: Base::Moof,
        tfdt: None,
        tfxd: None,
        runs: vec![run(sized(&payloads), payloads)],
    }
}

/// The whole synthetic stream: init, three fragments (the second resent
/// as a duplicate), a fragment without times.
fn stream() -> Vec<u8> {
    let mut s = synth::init();
    synth::fragment(
        &mut s,
        1,
        &[
            video_traf_1(),
            audio_traf(-213_333, Base::Moof, 1, false),
            text_traf(),
        ],
    );
    let second = [
        video_traf_2(),
        audio_traf(-213_333 + 640_000, Base::Implicit, 2, false),
    ];
    synth::fragment(&mut s, 2, &second);
    synth::fragment(
        &mut s,
        3,
        &[
            video_traf_3(),
            audio_traf(-213_333 + 1_280_000, Base::Moof, 3, true),
        ],
    );
    // The encoder resends the second fragment.
    synth::fragment(&mut s, 2, &second);
    synth::fragment(&mut s, 4, &[video_traf_untimed()]);
    s
}

fn samples(events: &[Event], track: u32) -> Vec<Sample> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Samples(s) => Some(s.iter().filter(|s| s.track == track).cloned()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn batches(events: &[Event]) -> Vec<(u32, usize)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Samples(s) => Some((s[0].track, s.len())),
            _ => None,
        })
        .collect()
}

#[test]
fn whole_stream() {
    let input = stream();
    let mut session = Fmp4Session::new(config());
    let events = drive(&mut session, &input, &[]).unwrap();

    // Tracks: video and audio; the subtitle track is kept but unpublished.
    let tracks: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Track(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(tracks.len(), 2, "{tracks:?}");
    let (video, audio) = (&tracks[0], &tracks[1]);
    assert_eq!(video.id, VIDEO);
    assert_eq!(video.kind, TrackKind::Video);
    assert_eq!(video.fourcc, "avc1");
    assert_eq!(video.codec, "avc1.64001e");
    assert_eq!(video.codec_private, synth::avcc(4));
    assert_eq!((video.width, video.height), (640, 360));
    assert_eq!(video.timescale, 90_000);
    assert_eq!(video.bitrate, 2_500_000);
    assert_eq!(video.stream, "720p");
    assert_eq!(audio.id, AUDIO);
    assert_eq!(audio.kind, TrackKind::Audio);
    assert_eq!(
        (audio.fourcc.as_str(), audio.codec.as_str()),
        ("mp4a", "mp4a.40.2")
    );
    assert_eq!(audio.codec_private, synth::ASC);
    assert_eq!(audio.timescale, 48_000);
    assert_eq!((audio.sample_rate, audio.channels), (48_000, 2));
    assert_eq!(audio.language, "en");
    assert_eq!(session.unpublished_tracks().len(), 1);
    assert!(matches!(events[0], Event::Track(_)));
    assert!(matches!(events[1], Event::Track(_)));

    // One batch per track and fragment; the duplicate is gone.
    assert_eq!(
        batches(&events),
        vec![
            (VIDEO, 4),
            (AUDIO, 3),
            (VIDEO, 5),
            (AUDIO, 3),
            (VIDEO, 3),
            (AUDIO, 3),
            (VIDEO, 1)
        ]
    );

    let v = samples(&events, VIDEO);
    let dts: Vec<i64> = v.iter().map(|s| s.dts).collect();
    let expected: Vec<i64> = (0..13).map(|i| i * 3600).collect();
    assert_eq!(dts, expected);
    assert!(v.iter().all(|s| s.duration == 3600));
    let ctos: Vec<i32> = v.iter().map(|s| s.composition_offset).collect();
    assert_eq!(
        ctos,
        vec![
            3600, 10_800, -3600, 0, -1800, -1800, -1800, 0, 0, 7200, 0, 3600, 0
        ]
    );
    let keys: Vec<usize> = (0..v.len()).filter(|&i| v[i].keyframe).collect();
    assert_eq!(keys, vec![0, 4, 9, 12]);
    // The bytes are the payloads written, in order.
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    for t in [
        video_traf_1(),
        video_traf_2(),
        video_traf_3(),
        video_traf_untimed(),
    ] {
        payloads.extend(t.runs.into_iter().flat_map(|r| r.payloads));
    }
    assert_eq!(
        v.iter().map(|s| s.data.clone()).collect::<Vec<_>>(),
        payloads
    );

    // Audio: 10 MHz rescaled to 48 kHz, exactly 1024 per frame, from the
    // priming offset of -1024.
    let a = samples(&events, AUDIO);
    let dts: Vec<i64> = a.iter().map(|s| s.dts).collect();
    let expected: Vec<i64> = (0..9).map(|i| -1024 + i * 1024).collect();
    assert_eq!(dts, expected);
    assert!(a.iter().all(|s| s.duration == 1024 && s.keyframe));
    assert!(a.iter().all(|s| s.composition_offset == 0));
    assert_eq!(a[4].data, audio_sample(11, 3));

    let stats = session.stats();
    assert_eq!(stats.fragments, 5);
    assert_eq!(stats.samples, 13 + 9);
    assert_eq!(stats.duplicate_fragments, 2);
    assert_eq!(stats.dropped_samples, 2 + 5 + 3);
}

#[test]
fn every_split_point_gives_the_same_events() {
    let input = stream();
    let whole = drive(&mut Fmp4Session::new(config()), &input, &[]).unwrap();
    for at in 0..=input.len() {
        let split = drive(&mut Fmp4Session::new(config()), &input, &[at]).unwrap();
        assert_eq!(split, whole, "split at {at}");
    }
    let bytewise: Vec<usize> = (1..input.len()).collect();
    let split = drive(&mut Fmp4Session::new(config()), &input, &bytewise).unwrap();
    assert_eq!(split, whole, "byte by byte");
    let uneven: Vec<usize> = (0..input.len()).step_by(7).chain([5, 6, 7]).collect();
    let mut uneven = uneven;
    uneven.sort_unstable();
    let split = drive(&mut Fmp4Session::new(config()), &input, &uneven).unwrap();
    assert_eq!(split, whole, "uneven pieces");
}

#[test]
fn oversize_box_is_a_limit_error_before_its_body() {
    let mut session = Fmp4Session::new(SessionConfig {
        max_message_size: 4096,
        ..config()
    });
    // The init fits; a 1 MB mdat header does not.
    session.feed(&synth::init()).unwrap();
    let err = session
        .feed(&[0, 0x10, 0, 0, b'm', b'd', b'a', b't'])
        .unwrap_err();
    assert!(
        matches!(&err, SessionError::Limit(m) if m.contains("mdat")),
        "{err:?}"
    );
    // The session stays failed.
    assert_eq!(session.feed(&[0; 4]), Err(err));
}

#[test]
fn two_byte_nal_lengths_become_four() {
    let mut input = synth::init_with(VideoEntry::Avc1Length2, 48_000);
    let payloads = vec![video_sample(true, 50, 1, 2), video_sample(false, 9, 2, 2)];
    synth::fragment(
        &mut input,
        1,
        &[TrafSpec {
            tfhd: tfhd(VIDEO),
            base: Base::Moof,
            tfdt: Some(1000),
            tfxd: None,
            runs: vec![run(sized(&payloads), payloads)],
        }],
    );
    let events = drive(&mut Fmp4Session::new(config()), &input, &[]).unwrap();
    let Event::Track(video) = &events[0] else {
        panic!("{events:?}")
    };
    let cfg = AvcDecoderConfig::parse(&video.codec_private).unwrap();
    assert_eq!(cfg.nal_length_size, 4);
    assert_eq!(cfg.sps, vec![synth::SPS.to_vec()]);
    let v = samples(&events, VIDEO);
    assert_eq!(v[0].data, video_sample(true, 50, 1, 4));
    assert_eq!(v[1].data, video_sample(false, 9, 2, 4));
    assert_eq!((v[0].dts, v[1].dts), (1000, 4600));
    // Audio at its sample rate already: no rescaling.
    let Event::Track(audio) = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(audio.timescale, 48_000);
}

#[test]
fn avc3_is_declared_from_in_band_parameter_sets() {
    let mut input = synth::init_with(VideoEntry::Avc3Empty, 48_000);
    let payloads = vec![
        video_sample(false, 10, 1, 4),
        synth::video_sample_with_parameter_sets(20, 2),
        video_sample(false, 10, 3, 4),
    ];
    let samples_in = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| TrunSample {
            size: Some(p.len() as u32),
            flags: Some(if i == 1 { SYNC } else { NON_SYNC }),
            ..TrunSample::default()
        })
        .collect();
    synth::fragment(
        &mut input,
        1,
        &[TrafSpec {
            tfhd: tfhd(VIDEO),
            base: Base::Moof,
            tfdt: Some(0),
            tfxd: None,
            runs: vec![run(samples_in, payloads.clone())],
        }],
    );
    let mut session = Fmp4Session::new(config());
    let events = drive(&mut session, &input, &[]).unwrap();
    // Audio is declared at once; video when its parameter sets arrive,
    // before its samples.
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e {
            Event::Track(t) => format!("track {}", t.id),
            Event::Samples(s) => format!("samples {} x{}", s[0].track, s.len()),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, vec!["track 2", "track 1", "samples 1 x2"]);
    let Event::Track(video) = &events[1] else {
        panic!()
    };
    assert_eq!(video.fourcc, "avc1");
    assert_eq!(video.codec, "avc1.64001e");
    assert_eq!(video.codec_private, synth::avcc(4));
    let v = samples(&events, VIDEO);
    assert_eq!(v[0].data, payloads[1]);
    assert_eq!((v[0].dts, v[1].dts), (3600, 7200));
    assert!(v[0].keyframe && !v[1].keyframe);
    assert_eq!(session.stats().dropped_samples, 1);
}

#[test]
fn moov_again_identical_is_ignored_and_changed_redeclares() {
    let init = synth::init();
    let mut session = Fmp4Session::new(config());
    let first = session.feed(&init).unwrap();
    assert_eq!(first.len(), 2);
    // ftyp, manifest and moov again: nothing.
    assert_eq!(session.feed(&init).unwrap(), vec![]);
    // The same movie with 2-byte NAL lengths: video re-declared, audio not.
    let changed = synth::init_with(VideoEntry::Avc1Length2, 10_000_000);
    let events = session.feed(&changed).unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let Event::Track(t) = &events[0] else {
        panic!()
    };
    assert_eq!(t.id, VIDEO);
    assert_eq!(
        t.bitrate, 2_000_000,
        "from the manifest now that btrt is gone"
    );
}

#[test]
fn duplicate_and_backward_fragments_are_dropped() {
    let mut input = synth::init();
    let traf = |start: u64, n: usize| {
        let payloads: Vec<Vec<u8>> = (0..n)
            .map(|i| video_sample(i == 0, 8, i as u8, 4))
            .collect();
        TrafSpec {
            tfhd: tfhd(VIDEO),
            base: Base::Moof,
            tfdt: Some(start),
            tfxd: None,
            runs: vec![run(sized(&payloads), payloads)],
        }
    };
    synth::fragment(&mut input, 1, &[traf(36_000, 4)]);
    synth::fragment(&mut input, 2, &[traf(36_000, 4)]); // same start: duplicate
    synth::fragment(&mut input, 3, &[traf(0, 4)]); // back in time
    synth::fragment(&mut input, 4, &[traf(36_000 + 3 * 3600, 2)]); // before the last sample
    synth::fragment(&mut input, 5, &[traf(36_000 + 4 * 3600, 2)]); // follows on
    let mut session = Fmp4Session::new(config());
    let events = drive(&mut session, &input, &[]).unwrap();
    assert_eq!(batches(&events), vec![(VIDEO, 4), (VIDEO, 2)]);
    let dts: Vec<i64> = samples(&events, VIDEO).iter().map(|s| s.dts).collect();
    assert!(dts.windows(2).all(|w| w[0] < w[1]), "{dts:?}");
    assert_eq!(session.stats().duplicate_fragments, 3);
}

/// ffmpeg's `ismv` muxer with `-frag_duration` cuts fragments at any
/// picture and writes `tfxd` = the first sample's presentation time. Each
/// fragment must continue the previous one (no sample dropped as a resend),
/// and a second session that starts at a resent fragment must give that
/// fragment the same decode times as the first session did.
#[test]
fn tfxd_presentation_times_continue_across_cuts_at_any_picture() {
    // Decode order I P B B P B B ..., 3600 ticks each; offsets as a
    // B-frame encoder with signed offsets writes them.
    let offsets = [0, 7200, -3600, -3600, 7200, -3600, -3600, 7200, -3600];
    let traf = |first: usize, n: usize| {
        let payloads: Vec<Vec<u8>> = (first..first + n)
            .map(|i| video_sample(i == 0, 8, i as u8, 4))
            .collect();
        let samples = payloads
            .iter()
            .enumerate()
            .map(|(k, p)| TrunSample {
                size: Some(p.len() as u32),
                duration: Some(3600),
                flags: Some(if first + k == 0 { SYNC } else { NON_SYNC }),
                composition_offset: Some(offsets[first + k]),
            })
            .collect();
        let dts = first as i64 * 3600;
        TrafSpec {
            tfhd: tfhd(VIDEO),
            base: Base::Moof,
            tfdt: None,
            tfxd: Some((dts + i64::from(offsets[first])) as u64),
            runs: vec![run(samples, payloads)],
        }
    };
    // Cuts land on a P (offset +7200), then on B pictures (offset -3600).
    let cuts = [(0, 4), (4, 2), (6, 3)];
    let mut input = synth::init();
    for (k, &(first, n)) in cuts.iter().enumerate() {
        synth::fragment(&mut input, k as u32 + 1, &[traf(first, n)]);
    }
    let mut session = Fmp4Session::new(config());
    let events = drive(&mut session, &input, &[]).unwrap();
    let dts: Vec<i64> = samples(&events, VIDEO).iter().map(|s| s.dts).collect();
    assert_eq!(dts, (0..9).map(|i| i * 3600).collect::<Vec<_>>());
    assert_eq!(session.stats().duplicate_fragments, 0);

    // Reconnect: the encoder resends from the second fragment on.
    let mut resent = synth::init();
    for (k, &(first, n)) in cuts.iter().enumerate().skip(1) {
        synth::fragment(&mut resent, k as u32 + 1, &[traf(first, n)]);
    }
    let mut session = Fmp4Session::new(config());
    let events = drive(&mut session, &resent, &[]).unwrap();
    let again: Vec<i64> = samples(&events, VIDEO).iter().map(|s| s.dts).collect();
    assert_eq!(again, dts[4..]);
}

#[test]
fn out_of_order_and_out_of_bounds_input_is_malformed() {
    // A moof before the moov.
    let mut input = Vec::new();
    synth::fragment(&mut input, 1, &[video_traf_1()]);
    let err = drive(&mut Fmp4Session::new(config()), &input, &[]).unwrap_err();
    assert!(matches!(&err, SessionError::Malformed(m) if m.contains("before any moov")));

    // Sample data past the end of the mdat: shrink the mdat.
    let mut input = synth::init();
    synth::fragment(&mut input, 1, &[video_traf_1()]);
    let mdat = input.windows(4).rposition(|w| w == b"mdat").unwrap() - 4;
    let size = u32::from_be_bytes(input[mdat..mdat + 4].try_into().unwrap());
    input[mdat..mdat + 4].copy_from_slice(&(size - 1).to_be_bytes());
    input.pop();
    let err = drive(&mut Fmp4Session::new(config()), &input, &[]).unwrap_err();
    assert!(
        matches!(&err, SessionError::Malformed(m) if m.contains("outside the mdat")),
        "{err:?}"
    );

    // Two moofs in a row.
    let mut input = synth::init();
    let mut frag = Vec::new();
    synth::fragment(&mut frag, 1, &[video_traf_1()]);
    let moof_len = u32::from_be_bytes(frag[..4].try_into().unwrap()) as usize;
    input.extend_from_slice(&frag[..moof_len]);
    input.extend_from_slice(&frag[..moof_len]);
    let err = drive(&mut Fmp4Session::new(config()), &input, &[]).unwrap_err();
    assert!(matches!(&err, SessionError::Malformed(m) if m.contains("without an mdat")));

    // A box of size 0 (to the end of the stream).
    let err = drive(
        &mut Fmp4Session::new(config()),
        &[0, 0, 0, 0, b'm', b'd', b'a', b't', 1, 2, 3],
        &[],
    )
    .unwrap_err();
    assert!(matches!(err, SessionError::Unsupported(_)));
}

#[test]
fn track_limit() {
    let mut session = Fmp4Session::new(SessionConfig {
        max_tracks: 1,
        ..config()
    });
    let err = session.feed(&synth::init()).unwrap_err();
    assert!(matches!(err, SessionError::Limit(_)), "{err:?}");
}

#[test]
fn close_mid_stream_emits_nothing_more() {
    let input = stream();
    let mut session = Fmp4Session::new(config());
    session.feed(&input[..input.len() - 10]).unwrap();
    assert_eq!(session.close(), vec![]);
}

#[test]
fn info_names_the_isml_extension() {
    let info = Fmp4Session::info();
    assert_eq!(info.name, "fmp4");
    assert_eq!(info.extension, "isml");
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
    let mut rng = Rng(0x0f4d_5eed_0000_0001);
    for _ in 0..2000 {
        let len = rng.below(400);
        let mut v: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if len >= 9 && rng.below(2) == 0 {
            let names: [&[u8; 4]; 7] = [
                b"moov", b"moof", b"mdat", b"uuid", b"ftyp", b"traf", b"trun",
            ];
            let size = (rng.below(len) as u32).to_be_bytes();
            v[1..5].copy_from_slice(&size);
            v[5..9].copy_from_slice(names[rng.below(names.len())]);
        }
        fuzzing::session(&v);
        fuzzing::session_after_init(&v);
        fuzzing::parsers(&v);
    }
    let seed = stream();
    let init_len = synth::init().len();
    for n in (0..seed.len()).step_by(3) {
        let mut v = vec![rng.next() as u8];
        v.extend_from_slice(&seed[..n]);
        fuzzing::session(&v);
    }
    for _ in 0..1500 {
        let mut v = seed.clone();
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(v.len());
            v[i] = match rng.below(3) {
                0 => rng.next() as u8,
                1 => v[i].wrapping_add(1),
                _ => 0xff,
            };
        }
        let mut input = vec![rng.next() as u8];
        input.extend_from_slice(&v);
        fuzzing::session(&input);
        let mut after = vec![rng.next() as u8];
        after.extend_from_slice(&v[init_len..]);
        fuzzing::session_after_init(&after);
        fuzzing::parsers(&v);
    }
}
