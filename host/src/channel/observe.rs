//! What an operator watches of a channel's ingest: the encoder sessions
//! connected now, and per stream name its counters and a bitrate history.
//!
//! ```text
//!  StreamIngest::on_samples ─ bytes, one clock read per batch ─▶ Encoder (1 s buckets)
//!                                                          └──▶ StreamMeter (2 s buckets, 10 min)
//!  Channel::publish_fragment ─ outcome ─▶ StreamMeter counters, last fragment time
//!  preview state.json, scrape-time metrics ◀─ read
//! ```
//!
//! Writes on the ingest path cost an atomic add and an uncontended lock per
//! batch of samples (one adapter call); the clock is the one the bitrate cap
//! reads anyway. Buckets are tagged with their slot number, so a slot
//! nobody wrote reads as zero and nothing runs on a timer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// Bucket length of a stream's bitrate history, ms.
pub const HISTORY_INTERVAL_MS: u64 = 2000;
/// Samples a stream's bitrate history keeps: ten minutes of 2 s buckets.
pub const HISTORY_SAMPLES: usize = 300;
/// Bucket length of an encoder's bitrate meter, ms.
const ENCODER_BUCKET_MS: u64 = 1000;
/// The span an encoder's current bitrate is measured over, in buckets (5 s).
const ENCODER_SPAN: u64 = 5;

/// Milliseconds since a process-wide origin: the buckets of every meter
/// share one grid, so histories of different streams line up.
pub fn ticks_ms(now: Instant) -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    u64::try_from(now.saturating_duration_since(origin).as_millis()).unwrap_or(u64::MAX)
}

/// Bytes counted in fixed buckets of `bucket_ms`, the newest `len` kept;
/// each bucket remembers which slot it holds, so stale ones read as zero.
#[derive(Debug)]
struct Buckets {
    bucket_ms: u64,
    /// (slot number, bytes).
    slots: Box<[(u64, u64)]>,
}

impl Buckets {
    fn new(bucket_ms: u64, len: usize) -> Self {
        Buckets {
            bucket_ms: bucket_ms.max(1),
            slots: vec![(u64::MAX, 0); len.max(1)].into_boxed_slice(),
        }
    }

    fn slot_of(&self, t_ms: u64) -> u64 {
        t_ms / self.bucket_ms
    }

    fn index(&self, slot: u64) -> usize {
        // The remainder is below the length, a usize.
        (slot % self.slots.len() as u64) as usize
    }

    fn add(&mut self, t_ms: u64, bytes: u64) {
        let slot = self.slot_of(t_ms);
        let i = self.index(slot);
        let e = &mut self.slots[i];
        if e.0 != slot {
            *e = (slot, 0);
        }
        e.1 = e.1.saturating_add(bytes);
    }

    fn get(&self, slot: u64) -> u64 {
        let (s, bytes) = self.slots[self.index(slot)];
        if s == slot { bytes } else { 0 }
    }
}

/// Where an ingest session's media comes from.
#[derive(Debug, Clone)]
pub struct Source {
    /// The encoder's address (`None` for sources inside the process).
    pub remote: Option<SocketAddr>,
    /// `rtmp`, the HTTP ingest extension (`isml`), or `demo`/`internal`.
    pub protocol: String,
}

impl Source {
    /// A source inside the process (the demo clip, tools, tests).
    pub fn internal(protocol: &str) -> Self {
        Source {
            remote: None,
            protocol: protocol.to_owned(),
        }
    }

    /// An encoder connected from `remote` over `protocol`.
    pub fn remote(remote: SocketAddr, protocol: &str) -> Self {
        Source {
            remote: Some(remote),
            protocol: protocol.to_owned(),
        }
    }
}

/// One connected encoder session, listed in its channel's registry from
/// publish to the end of the session.
#[derive(Debug)]
pub struct Encoder {
    source: Source,
    stream: String,
    connected_ms: i64,
    connected_tick: u64,
    bytes: AtomicU64,
    meter: Mutex<Buckets>,
}

/// What the preview state shows of an encoder.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EncoderState {
    /// Remote address (`ip:port`), or `null` for a source inside the process.
    pub address: Option<String>,
    /// Stream (rendition) name it publishes.
    pub stream: String,
    /// `rtmp`, the HTTP ingest extension, or `demo`.
    pub protocol: String,
    /// When it was accepted, Unix ms.
    pub connected_ms: i64,
    /// Sample payload bytes received.
    pub bytes: u64,
    /// Bit/s over about the last 5 s.
    pub bitrate: u64,
}

impl Encoder {
    pub(crate) fn new(source: Source, stream: &str, now_unix_ms: i64, now: Instant) -> Self {
        Encoder {
            source,
            stream: stream.to_owned(),
            connected_ms: now_unix_ms,
            connected_tick: ticks_ms(now),
            bytes: AtomicU64::new(0),
            meter: Mutex::new(Buckets::new(ENCODER_BUCKET_MS, (ENCODER_SPAN + 2) as usize)),
        }
    }

    /// The stream it publishes.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Counts `bytes` received at `t_ms` ([`ticks_ms`]).
    pub(crate) fn add(&self, t_ms: u64, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.meter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(t_ms, bytes);
    }

    /// Bit/s from the start of the bucket five buckets back (or the
    /// connection, if later) to `t_ms`.
    pub fn bitrate(&self, t_ms: u64) -> u64 {
        let meter = self.meter.lock().unwrap_or_else(|e| e.into_inner());
        let now_slot = meter.slot_of(t_ms);
        let from_slot = now_slot.saturating_sub(ENCODER_SPAN);
        let bytes: u64 = (from_slot..=now_slot).map(|s| meter.get(s)).sum();
        let from_ms = (from_slot * meter.bucket_ms).max(self.connected_tick);
        let span_ms = t_ms.saturating_sub(from_ms);
        if span_ms < 500 {
            return 0;
        }
        bytes.saturating_mul(8000) / span_ms
    }

    /// Its state at `t_ms`.
    pub fn state(&self, t_ms: u64) -> EncoderState {
        EncoderState {
            address: self.source.remote.map(|a| a.to_string()),
            stream: self.stream.clone(),
            protocol: self.source.protocol.clone(),
            connected_ms: self.connected_ms,
            bytes: self.bytes.load(Ordering::Relaxed),
            bitrate: self.bitrate(t_ms),
        }
    }
}

/// The counters and bitrate history of one stream name of a channel (all
/// sessions publishing it together; a redundant copy's bytes count too).
#[derive(Debug)]
pub struct StreamMeter {
    name: String,
    first_tick: u64,
    history: Mutex<Buckets>,
    /// Fragments of the stream added to the timeline.
    pub fragments: AtomicU64,
    /// Duplicates dropped whose content matched.
    pub duplicates_matching: AtomicU64,
    /// Duplicates dropped whose content differed.
    pub duplicates_mismatching: AtomicU64,
    /// Overlapping fragments and truncated tails dropped.
    pub overlapping: AtomicU64,
    /// Discontinuities recorded.
    pub discontinuities: AtomicU64,
    /// When its newest fragment was added, Unix ms (`i64::MIN`: never).
    last_fragment_ms: AtomicI64,
}

/// What the preview state shows of a stream.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamState {
    /// Stream (rendition) name.
    pub name: String,
    /// Encoder sessions publishing it now.
    pub encoders: usize,
    /// Fragments added.
    pub fragments: u64,
    /// Duplicates dropped, content matching.
    pub duplicates_matching: u64,
    /// Duplicates dropped, content differing.
    pub duplicates_mismatching: u64,
    /// Overlapping fragments and truncated tails dropped.
    pub overlapping: u64,
    /// Discontinuities.
    pub discontinuities: u64,
    /// Ms since its newest fragment was added; `null` before the first.
    pub fragment_age_ms: Option<i64>,
    /// Ingest bitrate history.
    pub history: History,
}

/// A stream's ingest bitrate, one sample per [`HISTORY_INTERVAL_MS`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct History {
    /// Sample length, ms.
    pub interval_ms: u64,
    /// End of the newest sample, Unix ms.
    pub end_ms: i64,
    /// Bit/s per sample, oldest first, complete samples only (at most
    /// [`HISTORY_SAMPLES`], since the stream was first seen).
    pub bitrate: Vec<u64>,
}

impl StreamMeter {
    pub(crate) fn new(name: &str, now: Instant) -> Self {
        StreamMeter {
            name: name.to_owned(),
            first_tick: ticks_ms(now),
            history: Mutex::new(Buckets::new(HISTORY_INTERVAL_MS, HISTORY_SAMPLES + 1)),
            fragments: AtomicU64::new(0),
            duplicates_matching: AtomicU64::new(0),
            duplicates_mismatching: AtomicU64::new(0),
            overlapping: AtomicU64::new(0),
            discontinuities: AtomicU64::new(0),
            last_fragment_ms: AtomicI64::new(i64::MIN),
        }
    }

    /// The stream name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Counts `bytes` received at `t_ms` ([`ticks_ms`]).
    pub(crate) fn add(&self, t_ms: u64, bytes: u64) {
        self.history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(t_ms, bytes);
    }

    /// A fragment of the stream was added at `now_ms` (Unix).
    pub(crate) fn fragment_added(&self, now_ms: i64) {
        self.fragments.fetch_add(1, Ordering::Relaxed);
        self.last_fragment_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    /// Ms from its newest fragment to `now_ms` (Unix); `None` before the first.
    pub fn fragment_age_ms(&self, now_ms: i64) -> Option<i64> {
        let last = self.last_fragment_ms.load(Ordering::Relaxed);
        (last != i64::MIN).then(|| now_ms.saturating_sub(last).max(0))
    }

    /// The complete samples up to `t_ms` ([`ticks_ms`]), `now_ms` being the
    /// same instant in Unix ms.
    pub fn history(&self, t_ms: u64, now_ms: i64) -> History {
        let h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let now_slot = h.slot_of(t_ms);
        // The slot the stream was first seen in is partial: left out.
        let first =
            (h.slot_of(self.first_tick) + 1).max(now_slot.saturating_sub(HISTORY_SAMPLES as u64));
        let bitrate = (first..now_slot)
            .map(|s| h.get(s).saturating_mul(8000) / HISTORY_INTERVAL_MS)
            .collect();
        let into_slot = i64::try_from(t_ms - now_slot * h.bucket_ms).unwrap_or(0);
        History {
            interval_ms: HISTORY_INTERVAL_MS,
            end_ms: now_ms - into_slot,
            bitrate,
        }
    }

    /// Its state at `t_ms` / `now_ms`, with `encoders` publishing it.
    pub fn state(&self, encoders: usize, t_ms: u64, now_ms: i64) -> StreamState {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StreamState {
            name: self.name.clone(),
            encoders,
            fragments: g(&self.fragments),
            duplicates_matching: g(&self.duplicates_matching),
            duplicates_mismatching: g(&self.duplicates_mismatching),
            overlapping: g(&self.overlapping),
            discontinuities: g(&self.discontinuities),
            fragment_age_ms: self.fragment_age_ms(now_ms),
            history: self.history(t_ms, now_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn buckets_forget_stale_slots() {
        let mut b = Buckets::new(1000, 3);
        b.add(500, 10);
        b.add(900, 5);
        b.add(1500, 7);
        assert_eq!(b.get(0), 15);
        assert_eq!(b.get(1), 7);
        // Slot 3 reuses slot 0's place.
        b.add(3100, 1);
        assert_eq!(b.get(0), 0);
        assert_eq!(b.get(3), 1);
        assert_eq!(b.get(2), 0);
    }

    #[test]
    fn encoder_bitrate_covers_the_last_seconds() {
        let t0 = Instant::now();
        let e = Encoder::new(Source::internal("test"), "s", 0, t0);
        let start = ticks_ms(t0);
        // 125,000 bytes a second = 1 Mbit/s, for 8 s.
        for i in 0..80 {
            e.add(start + i * 100, 12_500);
        }
        let rate = e.bitrate(start + 8000);
        assert!((900_000..=1_100_000).contains(&rate), "{rate}");
        // Silence for 10 s: nothing left in the span.
        assert_eq!(e.bitrate(start + 18_000), 0);
        assert_eq!(e.state(start + 8000).bytes, 1_000_000);
    }

    #[test]
    fn history_keeps_ten_minutes_of_complete_samples() {
        let t0 = Instant::now() + Duration::from_millis(1);
        let m = StreamMeter::new("s", t0);
        let start = ticks_ms(t0);
        assert!(m.history(start, 0).bitrate.is_empty());
        // 250 bytes every 100 ms = 20 kbit/s, for 30 minutes.
        for i in 0..18_000u64 {
            m.add(start + i * 100, 250);
        }
        let end = start + 1_800_000;
        let h = m.history(end, 1_000_000);
        assert_eq!(h.bitrate.len(), HISTORY_SAMPLES);
        assert!(h.bitrate.iter().all(|b| *b == 20_000), "{:?}", h.bitrate);
        assert!(h.end_ms <= 1_000_000 && h.end_ms > 1_000_000 - 2000);
        // A gap reads as zero.
        let h = m.history(end + 10_000, 1_000_000);
        assert_eq!(h.bitrate.len(), HISTORY_SAMPLES);
        assert_eq!(h.bitrate.last(), Some(&0));
        assert_eq!(m.fragment_age_ms(5), None);
        m.fragment_added(1000);
        assert_eq!(m.fragment_age_ms(1500), Some(500));
    }
}
