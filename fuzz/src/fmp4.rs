//! `fmp4`: the fMP4 / Smooth ingest session and the SDK's ISO BMFF
//! parser.
//!
//! Input: `[mode][split control][data]`. `mode & 1` puts a valid `ftyp`,
//! live server manifest and `moov` (two published tracks, one
//! unpublished) before the data, so that the data reaches the fragment
//! layer; `(mode >> 1) & 3` chooses the box size limit and `(mode >> 3) &
//! 3` the track limit. The session buffers whole top-level boxes, so
//! whole and split runs must agree on everything: events, the error,
//! statistics. The bytes also go through every typed box of the SDK,
//! whose decode → encode → decode must be lossless, and through the
//! incremental header parser, which may only say "need more" on a prefix
//! of what it parses whole.

use sluice_plugin_fmp4::fuzzing::{self, drive, synth};
use sluice_plugin_fmp4::{Fmp4Session, Stats};
use sluice_sdk::bmff::{
    self, Avc1, BmffBox, BoxRef, Dinf, Dref, Esds, Ftyp, Hdlr, Header, Mdhd, Mdia, Mfhd, Minf,
    Moof, Moov, Mp4a, Mvex, Mvhd, Reader, Smhd, Stbl, Stco, Stsc, Stsd, Stsz, Stts, Styp, Tfdt,
    Tfhd, Tkhd, Traf, Trak, Trex, Trun, Url, Vmhd,
};
use sluice_sdk::plugin::{Event, IngestAdapter, SessionConfig, SessionError};

use crate::events::{self, Promises};
use crate::{Input, split};

/// Box size limits a mode byte chooses from.
const BOX_LIMITS: [u32; 4] = [1 << 20, 1 << 12, 300, 1 << 16];
/// Track limits a mode byte chooses from.
const TRACK_LIMITS: [u32; 4] = [8, 1, 2, 16];

/// The session's configuration for a mode byte.
pub fn config(mode: u8) -> SessionConfig {
    SessionConfig {
        remote_addr: "fuzz".into(),
        max_message_size: BOX_LIMITS[usize::from((mode >> 1) & 3)],
        max_tracks: TRACK_LIMITS[usize::from((mode >> 3) & 3)],
        stream: "fuzz".into(),
    }
}

/// The mode byte of the default limits, with or without the valid
/// `ftyp` + manifest + `moov` before the data.
pub fn mode(with_init: bool) -> u8 {
    u8::from(with_init)
}

/// What one run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Every event (those of `close` included), or the error that ended
    /// the session.
    pub result: Result<Vec<Event>, SessionError>,
    /// The session's counters.
    pub stats: Stats,
    /// Declared tracks that are not published, with the reason.
    pub unpublished: Vec<(u32, String)>,
}

/// Feeds `bytes` to a fresh session in pieces ending at `cuts`.
pub fn run(config: &SessionConfig, bytes: &[u8], cuts: &[usize]) -> Outcome {
    let mut s = Fmp4Session::new(config.clone());
    let result = drive(&mut s, bytes, cuts);
    if let Ok(events) = &result {
        events::check(
            events,
            Promises {
                avc_framing: false,
                forward_dts: true,
            },
        );
    }
    Outcome {
        result,
        stats: s.stats(),
        unpublished: s.unpublished_tracks(),
    }
}

/// `T` decoded from `b`, encoded, decoded again: the same value.
fn round_trip<T: BmffBox + PartialEq + std::fmt::Debug>(b: &BoxRef<'_>) {
    let Ok(v) = T::from_box(b) else {
        return;
    };
    let bytes = v
        .to_bytes()
        .unwrap_or_else(|e| panic!("decoded {} does not encode: {e}; {v:?}", b.fourcc()));
    let back = T::decode(&bytes)
        .unwrap_or_else(|e| panic!("encoded {} does not decode: {e}; {v:?}", b.fourcc()));
    assert_eq!(back, v, "{} changed in a round trip", b.fourcc());
}

/// Round trips of every typed box in the tree under `r`.
fn round_trips(r: &mut Reader<'_>, depth: usize) {
    if depth > 16 {
        return;
    }
    while let Ok(Some(b)) = r.next_box() {
        match &b.fourcc().0 {
            b"ftyp" => round_trip::<Ftyp>(&b),
            b"styp" => round_trip::<Styp>(&b),
            b"moov" => round_trip::<Moov>(&b),
            b"mvhd" => round_trip::<Mvhd>(&b),
            b"mvex" => round_trip::<Mvex>(&b),
            b"trex" => round_trip::<Trex>(&b),
            b"trak" => round_trip::<Trak>(&b),
            b"tkhd" => round_trip::<Tkhd>(&b),
            b"mdia" => round_trip::<Mdia>(&b),
            b"mdhd" => round_trip::<Mdhd>(&b),
            b"hdlr" => round_trip::<Hdlr>(&b),
            b"minf" => round_trip::<Minf>(&b),
            b"vmhd" => round_trip::<Vmhd>(&b),
            b"smhd" => round_trip::<Smhd>(&b),
            b"dinf" => round_trip::<Dinf>(&b),
            b"dref" => round_trip::<Dref>(&b),
            b"url " => round_trip::<Url>(&b),
            b"stbl" => round_trip::<Stbl>(&b),
            b"stsd" => round_trip::<Stsd>(&b),
            b"avc1" => round_trip::<Avc1>(&b),
            b"mp4a" => round_trip::<Mp4a>(&b),
            b"esds" => round_trip::<Esds>(&b),
            b"stts" => round_trip::<Stts>(&b),
            b"stsc" => round_trip::<Stsc>(&b),
            b"stsz" => round_trip::<Stsz>(&b),
            b"stco" => round_trip::<Stco>(&b),
            b"moof" => round_trip::<Moof>(&b),
            b"mfhd" => round_trip::<Mfhd>(&b),
            b"traf" => round_trip::<Traf>(&b),
            b"tfhd" => round_trip::<Tfhd>(&b),
            b"tfdt" => round_trip::<Tfdt>(&b),
            b"trun" => round_trip::<Trun>(&b),
            _ => {}
        }
        if matches!(
            &b.fourcc().0,
            b"moov" | b"trak" | b"mdia" | b"minf" | b"stbl" | b"dinf" | b"mvex" | b"moof" | b"traf"
        ) {
            round_trips(&mut b.reader(), depth + 1);
        }
    }
}

/// The header parser on prefixes of `data`: "need more" or what it says
/// on the whole.
fn header_prefixes(data: &[u8], cuts: &[usize], limit: u64) {
    let whole = Header::parse(data, limit);
    for &c in cuts {
        match Header::parse(&data[..c.min(data.len())], limit) {
            Ok(None) => {}
            prefix => assert_eq!(prefix, whole, "header on {c} bytes"),
        }
    }
}

/// The `fmp4` target.
pub fn fuzz(input: &[u8]) {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let Some(Input { data, cuts }) = split(rest) else {
        return;
    };
    let config = config(mode);
    let mut bytes = if mode & 1 == 1 {
        synth::init()
    } else {
        Vec::new()
    };
    let start = bytes.len();
    bytes.extend_from_slice(data);
    let cuts: Vec<usize> = std::iter::once(start)
        .chain(cuts.iter().map(|c| c + start))
        .collect();
    let whole = run(&config, &bytes, &[]);
    let pieces = run(&config, &bytes, &cuts);
    assert_eq!(whole, pieces, "whole and split runs differ (cuts {cuts:?})");

    header_prefixes(
        data,
        &cuts[1..].iter().map(|c| c - start).collect::<Vec<_>>(),
        1 << 20,
    );
    fuzzing::parsers(data);
    bmff::fuzzing::parse(data);
    round_trips(&mut Reader::new(data), 0);
}
