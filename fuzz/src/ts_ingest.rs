//! `ts_ingest`: the MPEG-TS ingest session of the example plugin
//! (`examples/ts-ingest`) and the parsers under it (packets, PSI
//! sections, PAT, PMT, PES headers, ADTS headers, H.264 access units).
//!
//! Input: `[mode][split control][data]`. `mode & 1` puts a valid PAT and
//! PMT (H.264 on PID 0x100, AAC on 0x101, private data on 0x102) before
//! the data, so that the data reaches the PES and codec layers at once;
//! `(mode >> 1) & 3` chooses the PES buffer limit (`max_message_size`)
//! and `(mode >> 3) & 3` the track limit. Every decision of the session
//! depends on the bytes alone (packets are taken once the next sync byte
//! is seen, one event per PES), so whole and split runs must agree on
//! everything: events, the error, statistics, the streams noted as
//! ignored. The events must keep the adapter's promises: samples of
//! declared tracks only, non-zero timescales, H.264 samples framed with
//! 4-byte lengths, decode times that never go back within a declaration,
//! nothing to authorise or send (it is HTTP ingest), an end of stream
//! only as the last event.

use sluice_example_ts_ingest::fuzzing::{self, drive, synth};
use sluice_example_ts_ingest::{Stats, TsSession};
use sluice_sdk::plugin::{Event, IngestAdapter, SessionConfig, SessionError};

use crate::events::{self, Promises};
use crate::{Input, split};

/// PES buffer limits a mode byte chooses from.
const PES_LIMITS: [u32; 4] = [1 << 20, 1 << 12, 300, 1 << 16];
/// Track limits a mode byte chooses from.
const TRACK_LIMITS: [u32; 4] = [8, 1, 2, 16];

/// The session's configuration for a mode byte.
pub fn config(mode: u8) -> SessionConfig {
    SessionConfig {
        remote_addr: "fuzz".into(),
        max_message_size: PES_LIMITS[usize::from((mode >> 1) & 3)],
        max_tracks: TRACK_LIMITS[usize::from((mode >> 3) & 3)],
        stream: "fuzz".into(),
    }
}

/// The mode byte with the default limits and with or without the PAT
/// and PMT before the data.
pub fn mode(with_tables: bool) -> u8 {
    u8::from(with_tables)
}

/// The mode byte with the 300-byte PES limit.
pub fn mode_small_limit(with_tables: bool) -> u8 {
    mode(with_tables) | (2 << 1)
}

/// What the mode byte puts before the data.
pub fn prelude(mode: u8) -> Vec<u8> {
    if mode & 1 == 1 {
        synth::prelude()
    } else {
        Vec::new()
    }
}

/// What one run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Every event (those of `close` included), or the error that ended
    /// the session.
    pub result: Result<Vec<Event>, SessionError>,
    /// The session's counters.
    pub stats: Stats,
    /// Streams the PMTs listed that are not taken.
    pub ignored: Vec<(u16, u8)>,
}

/// Feeds `bytes` to a fresh session in pieces ending at `cuts`.
pub fn run(config: &SessionConfig, bytes: &[u8], cuts: &[usize]) -> Outcome {
    let mut s = TsSession::new(config.clone());
    let result = drive(&mut s, bytes, cuts);
    if let Ok(events) = &result {
        events::check(
            events,
            Promises {
                avc_framing: true,
                forward_dts: true,
            },
        );
        check_http(events);
    }
    let stats = s.stats();
    if let Ok(events) = &result {
        let samples: usize = events
            .iter()
            .map(|e| match e {
                Event::Samples(s) => s.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(stats.samples, samples as u64, "sample count");
    }
    Outcome {
        result,
        stats,
        ignored: s.ignored_streams(),
    }
}

/// An HTTP ingest session never asks for authorisation or sends bytes;
/// an end of stream, if any, is the last event. (There is none when what
/// `close` finishes, the last packet and PES, ends in an error: `close`
/// can only log it.)
fn check_http(events: &[Event]) {
    for (i, e) in events.iter().enumerate() {
        match e {
            Event::Authorize(_) | Event::Send(_) => panic!("{e:?} from an HTTP ingest adapter"),
            Event::EndOfStream(_) => {
                assert_eq!(i + 1, events.len(), "end of stream before the end")
            }
            Event::Track(_) | Event::Samples(_) => {}
        }
    }
}

/// The `ts_ingest` target.
pub fn fuzz(input: &[u8]) {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let Some(Input { data, cuts }) = split(rest) else {
        return;
    };
    let config = config(mode);
    let mut bytes = prelude(mode);
    let start = bytes.len();
    bytes.extend_from_slice(data);
    let cuts: Vec<usize> = std::iter::once(start)
        .chain(cuts.iter().map(|c| c + start))
        .collect();
    let whole = run(&config, &bytes, &[]);
    let pieces = run(&config, &bytes, &cuts);
    assert_eq!(whole, pieces, "whole and split runs differ (cuts {cuts:?})");
    fuzzing::parsers(data);
}
