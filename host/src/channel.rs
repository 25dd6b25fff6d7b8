//! Channels and the ingest path into them.
//!
//! ```text
//!  adapter events ─▶ StreamIngest (per published stream)
//!                      │ track ids: (stream, adapter track) → channel track
//!                      │ time: adapter dts → media time (offset, discontinuities)
//!                      ▼
//!                    Segmenter per track ─▶ Timeline (per channel, bounded)
//! ```
//!
//! Timestamp policy: media time is the encoder's decode time plus an offset
//! chosen when a stream starts. A stream whose first timestamp continues the
//! channel's timeline (within three fragments of its end) keeps offset 0;
//! one that restarts from zero or jumps is moved to the timeline's end and
//! its first fragment is flagged as a discontinuity. Within a stream a
//! backward step or a forward jump of more than five fragments is handled
//! the same way. Output timelines never go backward.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_sdk::plugin::{Event, Sample, TrackInfo};
use sluice_sdk::time::mul_div_round_signed;

use crate::config::{ChannelConfig, IngestLimits};
use crate::media::segmenter::{Fragment, InputSample, SegmentError, Segmenter};
use crate::media::timeline::{Entry, PushOutcome, Snapshot, Timeline};
use crate::metrics::{
    ChannelLabels, DuplicateLabels, StreamDuplicateLabels, StreamLabels, metrics,
};
use crate::store::ChannelRecord;

pub mod observe;

use observe::{Encoder, ticks_ms};
pub use observe::{EncoderState, Source, StreamMeter, StreamState};

/// Why ingest into a channel stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// The channel already has its maximum number of tracks.
    #[error("channel {0} has too many tracks")]
    TooManyTracks(String),
    /// A sample names a track that was never declared.
    #[error("sample for undeclared track {0}")]
    UnknownTrack(u32),
    /// A track declaration is unusable.
    #[error("bad track: {0}")]
    BadTrack(String),
    /// The segmenter refused the input.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// The channel receives more than its bitrate cap.
    #[error("channel {channel} ingest exceeds {limit_kbps} kbit/s")]
    Bitrate {
        /// Channel name.
        channel: String,
        /// The cap.
        limit_kbps: u64,
    },
}

/// What records a channel (the archive): told of every track and every
/// fragment added to the timeline, and the keeper of stable track ids.
/// Implemented by `archive::ChannelArchive`; channels know only this.
pub trait Recorder: Send + Sync + std::fmt::Debug {
    /// The stable id of (stream, adapter track) in `channel`, at most `max`
    /// tracks; `None` when the channel is full or the id cannot be kept.
    fn track_id(&self, channel: &str, stream: &str, adapter_track: u32, max: u32) -> Option<u32>;

    /// A track was declared or re-declared.
    fn on_track(&self, channel: &Channel, info: &TrackInfo);

    /// A fragment entered the timeline (called outside the timeline lock).
    fn on_fragment(&self, channel: &Channel, track: &Arc<TrackInfo>, entry: Entry);
}

/// Where a channel is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelState {
    /// Ingest refused.
    Stopped,
    /// Coming up.
    Starting,
    /// Ingest accepted.
    Running,
    /// Going down.
    Stopping,
}

impl ChannelState {
    /// The stored form (transitional states are stored as their target).
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelState::Stopped | ChannelState::Stopping => "stopped",
            ChannelState::Running | ChannelState::Starting => "running",
        }
    }
}

/// One channel.
#[derive(Debug)]
pub struct Channel {
    /// Name.
    pub name: String,
    /// Ingest key.
    pub key: String,
    /// Fragment grid, ms.
    pub fragment_ms: u32,
    /// Live window, ms.
    pub window_ms: u64,
    /// Input IP allowlist; empty = any.
    pub input_allow: Vec<ipnet::IpNet>,
    /// Preview IP allowlist; empty = any.
    pub preview_allow: Vec<ipnet::IpNet>,
    /// Creation time, Unix ms.
    pub created_ms: i64,
    state: Mutex<ChannelState>,
    timeline: RwLock<Timeline>,
    track_ids: Mutex<Vec<(String, u32, u32)>>,
    max_tracks: u32,
    publishing: AtomicUsize,
    /// An encoder ended cleanly while other sessions still counted (a
    /// redundant copy, or a dead connection not yet timed out), and no media
    /// came since: the presentation ends when the last session goes.
    end_pending: AtomicBool,
    /// Per stream name: sessions publishing it now, their shared offset,
    /// and the stream's counters and bitrate history.
    streams: Mutex<HashMap<String, SharedStream>>,
    /// Encoder sessions publishing now, in the order they came.
    encoders: Mutex<Vec<Arc<Encoder>>>,
    /// Last fragments of redundant copies that stopped while another copy
    /// of their stream was publishing, by channel track: published only if
    /// no copy publishes the same start (see [`StreamIngest::finish`]).
    parked: Mutex<Vec<Parked>>,
    /// Ingest bytes in the current rate window and when it began.
    rate: Mutex<(std::time::Instant, u64)>,
    /// Counters.
    pub stats: ChannelStats,
    /// Names what the channel stores until its next reset.
    incarnation: AtomicU64,
    /// Configured epoch, if any.
    configured_epoch_ms: Option<i64>,
    /// The timeline generation, for waiters.
    changes: tokio::sync::watch::Sender<u64>,
    /// Where running programs record the channel (absent in bare tests).
    archive: OnceLock<Arc<dyn Recorder>>,
    /// End of what the channel stored before a restart, ms: new streams
    /// continue after it, so stored fragments are never named twice.
    floor_ms: AtomicI64,
}

/// The last, possibly truncated fragment of a stopped session, waiting to
/// see whether another session of its stream supersedes it.
#[derive(Debug)]
struct Parked {
    stream: String,
    track: u32,
    fragment: Fragment,
}

/// What the sessions publishing one stream name share: redundant encoders
/// must map their identical timestamps to identical media times.
#[derive(Debug)]
struct SharedStream {
    active: usize,
    offset_ms: Option<i64>,
    meter: Arc<StreamMeter>,
}

impl SharedStream {
    fn new(name: &str) -> Self {
        SharedStream {
            active: 0,
            offset_ms: None,
            meter: Arc::new(StreamMeter::new(name, std::time::Instant::now())),
        }
    }
}

/// Ingest counters of a channel.
#[derive(Debug, Default)]
pub struct ChannelStats {
    /// Fragments added to the timeline.
    pub fragments: AtomicU64,
    /// Duplicate fragments dropped whose content matched the copy held.
    pub duplicates_matching: AtomicU64,
    /// Duplicate fragments dropped whose content differed from the copy held.
    pub duplicates_mismatching: AtomicU64,
    /// Fragments dropped because they started inside the timeline, and
    /// truncated last fragments of a stopped copy that lost to a complete one.
    pub overlapping: AtomicU64,
    /// Discontinuities recorded.
    pub discontinuities: AtomicU64,
}

impl ChannelStats {
    /// The counters as JSON.
    pub fn json(&self) -> serde_json::Value {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "fragments": g(&self.fragments),
            "duplicates_matching": g(&self.duplicates_matching),
            "duplicates_mismatching": g(&self.duplicates_mismatching),
            "overlapping": g(&self.overlapping),
            "discontinuities": g(&self.discontinuities),
        })
    }
}

impl Channel {
    /// A channel from its configuration (running).
    pub fn new(config: &ChannelConfig, limits: &IngestLimits) -> Self {
        Self::from_record(&config.record(), limits)
    }

    /// A channel from its stored record.
    pub fn from_record(r: &ChannelRecord, limits: &IngestLimits) -> Self {
        let state = if r.state == "running" {
            ChannelState::Running
        } else {
            ChannelState::Stopped
        };
        Channel {
            name: r.name.clone(),
            key: r.key.clone(),
            fragment_ms: r.fragment_ms,
            window_ms: r.window_ms,
            input_allow: r.input_allow.clone(),
            preview_allow: r.preview_allow.clone(),
            created_ms: r.created_ms,
            state: Mutex::new(state),
            timeline: RwLock::new(Timeline::new(r.fragment_ms, r.window_ms).with_epoch(r.epoch_ms)),
            configured_epoch_ms: r.epoch_ms,
            changes: tokio::sync::watch::Sender::new(0),
            track_ids: Mutex::new(Vec::new()),
            max_tracks: limits.max_tracks_per_channel,
            publishing: AtomicUsize::new(0),
            end_pending: AtomicBool::new(false),
            streams: Mutex::new(HashMap::new()),
            encoders: Mutex::new(Vec::new()),
            parked: Mutex::new(Vec::new()),
            rate: Mutex::new((std::time::Instant::now(), 0)),
            stats: ChannelStats::default(),
            incarnation: AtomicU64::new(r.incarnation),
            archive: OnceLock::new(),
            floor_ms: AtomicI64::new(i64::MIN),
        }
    }

    /// What the channel stores is named by this until its next reset.
    pub fn incarnation(&self) -> u64 {
        self.incarnation.load(Ordering::SeqCst)
    }

    /// Connects the channel to what records it (once).
    pub fn attach_archive(&self, archive: Arc<dyn Recorder>) {
        let _ = self.archive.set(archive);
    }

    /// Media time new streams must continue after (the end of what was
    /// stored before a restart), ms.
    pub fn set_floor_ms(&self, floor_ms: i64) {
        self.floor_ms.fetch_max(floor_ms, Ordering::SeqCst);
    }

    /// The smallest end of the newest fragment over the tracks that hold
    /// one, ms: where a recording started or stopped now cuts (a fragment
    /// of any track that starts at or after it is not yet published).
    pub fn cut_ms(&self) -> Option<i64> {
        let tl = self.timeline.read().unwrap_or_else(|e| e.into_inner());
        tl.tracks()
            .iter()
            .filter_map(|t| {
                let f = t.fragments.back()?;
                let end = f.info.start + f.info.duration;
                i64::try_from(end.saturating_mul(1000) / u64::from(t.info.timescale.max(1))).ok()
            })
            .min()
    }

    /// Where a recording started now begins, ms: the next fragment of
    /// every track (or where the channel will continue after a restart).
    pub fn recording_start_ms(&self) -> i64 {
        self.cut_ms()
            .or_else(|| {
                let floor = self.floor_ms.load(Ordering::SeqCst);
                (floor != i64::MIN).then_some(floor)
            })
            .unwrap_or(0)
    }

    /// Wall-clock time of media time zero, once the first fragment came.
    pub fn epoch_ms(&self) -> Option<i64> {
        self.timeline
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .epoch_ms()
    }

    /// The stored form.
    pub fn record(&self) -> ChannelRecord {
        ChannelRecord {
            name: self.name.clone(),
            key: self.key.clone(),
            input_allow: self.input_allow.clone(),
            preview_allow: self.preview_allow.clone(),
            fragment_ms: self.fragment_ms,
            window_ms: self.window_ms,
            state: self.state().as_str().to_owned(),
            created_ms: self.created_ms,
            incarnation: self.incarnation(),
            epoch_ms: self.configured_epoch_ms,
        }
    }

    /// The current state.
    pub fn state(&self) -> ChannelState {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the state.
    pub fn set_state(&self, state: ChannelState) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// Whether ingest is accepted.
    pub fn is_running(&self) -> bool {
        self.state() == ChannelState::Running
    }

    /// Encoders publishing now.
    pub fn publishing(&self) -> usize {
        self.publishing.load(Ordering::SeqCst)
    }

    /// Whether `ip` may push to this channel.
    pub fn input_allowed(&self, ip: std::net::IpAddr) -> bool {
        allowed(&self.input_allow, ip)
    }

    /// Whether `ip` may watch the preview.
    pub fn preview_allowed(&self, ip: std::net::IpAddr) -> bool {
        allowed(&self.preview_allow, ip)
    }

    /// Counts `bytes` of ingest received `now` against the bitrate cap (5 s windows).
    fn account(
        &self,
        bytes: u64,
        limit_kbps: u64,
        now: std::time::Instant,
    ) -> Result<(), IngestError> {
        const WINDOW: std::time::Duration = std::time::Duration::from_secs(5);
        let mut rate = self.rate.lock().unwrap_or_else(|e| e.into_inner());
        if now.duration_since(rate.0) >= WINDOW {
            *rate = (now, 0);
        }
        rate.1 = rate.1.saturating_add(bytes);
        // bytes * 8 / 1000 per 5 s, against kbit/s.
        if rate.1.saturating_mul(8) > limit_kbps.saturating_mul(1000).saturating_mul(5) {
            return Err(IngestError::Bitrate {
                channel: self.name.clone(),
                limit_kbps,
            });
        }
        Ok(())
    }

    /// Publishes a fragment of `stream`; a `tail` (the last, possibly truncated fragment
    /// of a stream that stopped) that loses to a complete copy is not a
    /// content mismatch.
    pub(crate) fn publish_fragment(
        &self,
        stream: &str,
        track: u32,
        fragment: Fragment,
        tail: bool,
    ) {
        tracing::debug!(
            channel = %self.name,
            stream = %stream,
            track,
            start = fragment.start,
            duration = fragment.duration,
            samples = fragment.samples.len(),
            "fragment"
        );
        let now = now_ms();
        let discontinuity = fragment.discontinuity;
        let start = fragment.start;
        let (outcome, added) = self.with_timeline(|tl| {
            let outcome = tl.push(track, fragment, now);
            if outcome == PushOutcome::Added {
                // Before blocking upstream requests are woken.
                tracing::debug!(target: "sluice::timing", channel = %self.name, track, start, "fragment cut");
            }
            let added = (outcome == PushOutcome::Added && self.archive.get().is_some())
                .then(|| tl.newest(track))
                .flatten();
            (outcome, added)
        });
        if let (Some(archive), Some((info, entry))) = (self.archive.get(), added) {
            archive.on_fragment(self, &info, entry);
        }
        let stats = &self.stats;
        let m = metrics();
        let labels = ChannelLabels {
            channel: self.name.clone(),
        };
        let stream_labels = StreamLabels {
            channel: self.name.clone(),
            stream: stream.to_owned(),
        };
        let meter = self.stream_meter(stream);
        let duplicate = |kind, per_stream: fn(&StreamMeter) -> &AtomicU64| {
            m.duplicates
                .get_or_create(&DuplicateLabels {
                    channel: self.name.clone(),
                    kind,
                })
                .inc();
            m.ingest_duplicates
                .get_or_create(&StreamDuplicateLabels {
                    channel: self.name.clone(),
                    stream: stream.to_owned(),
                    kind,
                })
                .inc();
            per_stream(&meter).fetch_add(1, Ordering::Relaxed);
        };
        let counter = match outcome {
            PushOutcome::Added => {
                m.fragments.get_or_create(&labels).inc();
                m.ingest_fragments.get_or_create(&stream_labels).inc();
                meter.fragment_added(now);
                if discontinuity {
                    stats.discontinuities.fetch_add(1, Ordering::Relaxed);
                    m.discontinuities.get_or_create(&labels).inc();
                    m.ingest_discontinuities.get_or_create(&stream_labels).inc();
                    meter.discontinuities.fetch_add(1, Ordering::Relaxed);
                }
                // A parked tail this fragment reaches is superseded.
                self.parked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|p| p.track != track || p.fragment.start > start);
                &stats.fragments
            }
            PushOutcome::DuplicateMatching => {
                duplicate("matching", |s| &s.duplicates_matching);
                &stats.duplicates_matching
            }
            PushOutcome::DuplicateMismatching if tail => {
                duplicate("overlapping", |s| &s.overlapping);
                &stats.overlapping
            }
            PushOutcome::DuplicateMismatching => {
                duplicate("mismatching", |s| &s.duplicates_mismatching);
                tracing::warn!(
                    channel = %self.name,
                    stream = %stream,
                    track,
                    "duplicate fragment differs from the copy held"
                );
                &stats.duplicates_mismatching
            }
            PushOutcome::Overlapping | PushOutcome::UnknownTrack => {
                duplicate("overlapping", |s| &s.overlapping);
                &stats.overlapping
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The meter of `stream` (made on first use).
    fn stream_meter(&self, stream: &str) -> Arc<StreamMeter> {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        match streams.get(stream) {
            Some(s) => s.meter.clone(),
            None => streams
                .entry(stream.to_owned())
                .or_insert_with(|| SharedStream::new(stream))
                .meter
                .clone(),
        }
    }

    /// The encoder sessions publishing now, in the order they came.
    pub fn encoders(&self) -> Vec<EncoderState> {
        let t = ticks_ms(std::time::Instant::now());
        self.encoders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|e| e.state(t))
            .collect()
    }

    /// Every stream name seen since start-up, by name, with the sessions
    /// publishing it now.
    pub fn stream_meters(&self) -> Vec<(Arc<StreamMeter>, usize)> {
        let mut v: Vec<_> = self
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|s| (s.meter.clone(), s.active))
            .collect();
        v.sort_by(|a, b| a.0.name().cmp(b.0.name()));
        v
    }

    /// The state of every stream that publishes now or received media in
    /// the history window, by name.
    pub fn streams(&self) -> Vec<StreamState> {
        let t = ticks_ms(std::time::Instant::now());
        let now = now_ms();
        self.stream_meters()
            .into_iter()
            .map(|(m, active)| m.state(active, t, now))
            .filter(|s| s.encoders > 0 || s.history.bitrate.iter().any(|b| *b > 0))
            .collect()
    }

    /// Publishes the parked tails of `stream` unless a session publishes it
    /// again (then its fragments supersede them, or its own end releases them).
    pub(crate) fn release_parked(&self, stream: &str) {
        let active = self
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(stream)
            .is_some_and(|s| s.active > 0);
        if !active {
            self.release_parked_now(stream);
        }
    }

    /// Publishes the parked tails of `stream`.
    pub(crate) fn release_parked_now(&self, stream: &str) {
        let tails: Vec<Parked> = {
            let mut parked = self.parked.lock().unwrap_or_else(|e| e.into_inner());
            let (mine, rest) = std::mem::take(&mut *parked)
                .into_iter()
                .partition(|p| p.stream == stream);
            *parked = rest;
            mine
        };
        for p in tails {
            self.publish_fragment(stream, p.track, p.fragment, true);
        }
    }

    /// Clears the live timeline (tracks stay declared) and starts a new
    /// incarnation: what is stored from now on never collides with what
    /// was stored before.
    pub fn reset(&self, incarnation: u64) {
        self.incarnation.store(incarnation, Ordering::SeqCst);
        self.floor_ms.store(i64::MIN, Ordering::SeqCst);
        self.with_timeline(Timeline::clear);
    }

    /// A snapshot of the live timeline.
    pub fn snapshot(&self) -> Snapshot {
        self.timeline
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .snapshot()
    }

    /// The timeline's generation (changes with every fragment).
    pub fn generation(&self) -> u64 {
        self.timeline
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .generation()
    }

    fn with_timeline<R>(&self, f: impl FnOnce(&mut Timeline) -> R) -> R {
        let (r, generation) = {
            let mut tl = self.timeline.write().unwrap_or_else(|e| e.into_inner());
            let r = f(&mut tl);
            (r, tl.generation())
        };
        self.changes
            .send_if_modified(|g| std::mem::replace(g, generation) != generation);
        r
    }

    /// Wakes when the timeline changes (its generation): what blocking
    /// upstream requests wait on.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The channel track id for (stream, adapter track), assigned on first
    /// use; stored when the channel has an archive, so a restart or a
    /// reconnection in another order keeps every track's id.
    fn track_id(&self, stream: &str, adapter_track: u32) -> Result<u32, IngestError> {
        let mut ids = self.track_ids.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, id)) = ids
            .iter()
            .find(|(s, t, _)| s == stream && *t == adapter_track)
        {
            return Ok(*id);
        }
        if ids.len() >= self.max_tracks as usize {
            return Err(IngestError::TooManyTracks(self.name.clone()));
        }
        let id = match self.archive.get() {
            Some(archive) => archive
                .track_id(&self.name, stream, adapter_track, self.max_tracks)
                .ok_or_else(|| IngestError::TooManyTracks(self.name.clone()))?,
            None => u32::try_from(ids.len() + 1)
                .map_err(|_| IngestError::TooManyTracks(self.name.clone()))?,
        };
        ids.push((stream.to_owned(), adapter_track, id));
        Ok(id)
    }

    /// End of the newest fragment of any track (or of what was stored
    /// before a restart), in milliseconds.
    fn end_ms(&self) -> Option<i64> {
        let tl = self.timeline.read().unwrap_or_else(|e| e.into_inner());
        let live = tl
            .tracks()
            .iter()
            .filter_map(|t| {
                let f = t.fragments.back()?;
                let end = f.info.start + f.info.duration;
                i64::try_from(end.saturating_mul(1000) / u64::from(t.info.timescale.max(1))).ok()
            })
            .max();
        let floor = self.floor_ms.load(Ordering::SeqCst);
        match live {
            Some(end) => Some(end.max(floor)),
            None => (floor != i64::MIN).then_some(floor),
        }
    }
}

/// An empty list allows everything; IPv4-mapped IPv6 addresses match IPv4 nets.
pub fn allowed(list: &[ipnet::IpNet], ip: std::net::IpAddr) -> bool {
    let ip = match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    list.is_empty() || list.iter().any(|n| n.contains(&ip))
}

/// All channels of this node.
#[derive(Debug, Default)]
pub struct Channels {
    map: RwLock<HashMap<String, Arc<Channel>>>,
}

impl crate::metrics::IngestGaugeSource for Channels {
    fn ingest_gauges(&self) -> Vec<(StreamLabels, i64, Option<f64>)> {
        let now = now_ms();
        let mut rows = Vec::new();
        for channel in self.list() {
            for (meter, active) in channel.stream_meters() {
                let labels = StreamLabels {
                    channel: channel.name.clone(),
                    stream: meter.name().to_owned(),
                };
                let age = meter.fragment_age_ms(now).map(|ms| ms as f64 / 1000.0);
                rows.push((labels, i64::try_from(active).unwrap_or(i64::MAX), age));
            }
        }
        rows
    }
}

impl Channels {
    /// Adds a channel (replacing one with the same name).
    pub fn insert(&self, channel: Channel) -> Arc<Channel> {
        let channel = Arc::new(channel);
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(channel.name.clone(), channel.clone());
        channel
    }

    /// Removes the channel named `name`.
    pub fn remove(&self, name: &str) -> Option<Arc<Channel>> {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
    }

    /// Every channel, by name.
    pub fn list(&self) -> Vec<Arc<Channel>> {
        let mut v: Vec<_> = self
            .map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The channel named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Channel>> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }
}

/// Per-track ingest state.
#[derive(Debug)]
struct TrackState {
    id: u32,
    timescale: u32,
    segmenter: Segmenter,
    last_dts: Option<i64>,
}

/// The ingest of one published stream into a channel.
#[derive(Debug)]
pub struct StreamIngest {
    channel: Arc<Channel>,
    stream: String,
    tracks: HashMap<u32, TrackState>,
    /// Milliseconds added to the encoder's timestamps; fixed at the first sample.
    offset_ms: Option<i64>,
    discontinuity_next: bool,
    max_fragment_bytes: usize,
    max_tracks: u32,
    max_bitrate_kbps: u64,
    /// `sluice_ingest_bytes` of this channel and stream (looked up once).
    bytes_counter: prometheus_client::metrics::counter::Counter,
    /// This session in the channel's encoder registry.
    encoder: Arc<Encoder>,
    /// The stream's counters and bitrate history.
    meter: Arc<StreamMeter>,
}

impl StreamIngest {
    /// Starts ingest of `stream` into `channel` from a source inside the
    /// process (listed as an encoder of protocol `internal`).
    pub fn new(channel: Arc<Channel>, stream: &str, limits: &IngestLimits) -> Self {
        Self::open(channel, stream, limits, Source::internal("internal"))
    }

    /// Starts ingest of `stream` into `channel` from `source`, listed in the
    /// channel's encoder registry until the session ends.
    pub fn open(
        channel: Arc<Channel>,
        stream: &str,
        limits: &IngestLimits,
        source: Source,
    ) -> Self {
        channel.publishing.fetch_add(1, Ordering::SeqCst);
        let meter = {
            let mut streams = channel.streams.lock().unwrap_or_else(|e| e.into_inner());
            let shared = streams
                .entry(stream.to_owned())
                .or_insert_with(|| SharedStream::new(stream));
            shared.active += 1;
            shared.meter.clone()
        };
        let encoder = Arc::new(Encoder::new(
            source,
            stream,
            now_ms(),
            std::time::Instant::now(),
        ));
        channel
            .encoders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(encoder.clone());
        let bytes_counter = metrics()
            .ingest_bytes
            .get_or_create(&StreamLabels {
                channel: channel.name.clone(),
                stream: stream.to_owned(),
            })
            .clone();
        StreamIngest {
            bytes_counter,
            encoder,
            meter,
            channel,
            stream: stream.to_owned(),
            tracks: HashMap::new(),
            offset_ms: None,
            discontinuity_next: false,
            max_fragment_bytes: limits.max_fragment_bytes,
            max_tracks: limits.max_tracks_per_channel,
            max_bitrate_kbps: limits.max_bitrate_kbps,
        }
    }

    /// The stream name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The channel.
    pub fn channel(&self) -> &Arc<Channel> {
        &self.channel
    }

    /// A track was declared by the adapter.
    pub fn on_track(&mut self, mut info: TrackInfo) -> Result<(), IngestError> {
        if info.timescale == 0 {
            return Err(IngestError::BadTrack("timescale 0".into()));
        }
        if !self.tracks.contains_key(&info.id) && self.tracks.len() >= self.max_tracks as usize {
            return Err(IngestError::TooManyTracks(self.channel.name.clone()));
        }
        let adapter_id = info.id;
        let id = self.channel.track_id(&self.stream, adapter_id)?;
        info.id = id;
        if info.stream.is_empty() {
            info.stream = self.stream.clone();
        }
        let mut segmenter = Segmenter::new(
            info.kind,
            info.timescale,
            self.channel.fragment_ms,
            self.max_fragment_bytes,
        );
        if let Some(old) = self.tracks.get_mut(&adapter_id) {
            // Re-declared (new codec data): what was cut so far is published
            // under the old description; the next fragment follows a
            // discontinuity.
            if let Some(f) = old.segmenter.discontinuity() {
                let id = old.id;
                self.publish(id, f);
            }
            let _ = segmenter.discontinuity();
        }
        let state = TrackState {
            id,
            timescale: info.timescale,
            segmenter,
            last_dts: None,
        };
        if let Some(archive) = self.channel.archive.get() {
            archive.on_track(&self.channel, &info);
        }
        self.channel.with_timeline(|tl| tl.set_track(info));
        self.tracks.insert(adapter_id, state);
        Ok(())
    }

    /// Applies a media event from an adapter (`Track`, `Samples`); the
    /// others concern the connection and are ignored here.
    pub fn on_media(&mut self, event: Event) -> Result<(), IngestError> {
        match event {
            Event::Track(info) => {
                tracing::info!(
                    channel = %self.channel.name,
                    stream = %self.stream,
                    track = info.id,
                    codec = %info.codec,
                    timescale = info.timescale,
                    "track"
                );
                self.on_track(info)
            }
            Event::Samples(samples) => self.on_samples(samples),
            _ => Ok(()),
        }
    }

    /// Samples arrived from the adapter.
    pub fn on_samples(&mut self, samples: Vec<Sample>) -> Result<(), IngestError> {
        let bytes = samples.iter().map(|s| s.data.len() as u64).sum();
        self.bytes_counter.inc_by(bytes);
        // One clock read per batch, shared by the cap and the meters.
        let now = std::time::Instant::now();
        let t = ticks_ms(now);
        self.encoder.add(t, bytes);
        self.meter.add(t, bytes);
        self.channel.account(bytes, self.max_bitrate_kbps, now)?;
        if self.channel.end_pending.load(Ordering::Relaxed) {
            self.channel.end_pending.store(false, Ordering::SeqCst);
        }
        for s in samples {
            self.on_sample(s)?;
        }
        Ok(())
    }

    fn on_sample(&mut self, s: Sample) -> Result<(), IngestError> {
        let fragment_ms = i64::from(self.channel.fragment_ms);
        let (timescale, last_dts) = {
            let t = self
                .tracks
                .get(&s.track)
                .ok_or(IngestError::UnknownTrack(s.track))?;
            (t.timescale, t.last_dts)
        };
        let dts_ms = mul_div_round_signed(s.dts, 1000, u64::from(timescale)).unwrap_or(0);
        let offset = match self.offset_ms {
            Some(o) => o,
            None => {
                // A redundant copy of a stream already publishing takes that
                // stream's offset: identical timestamps land on identical
                // media times and its fragments merge (first copy wins).
                let o = match self.peer_offset() {
                    Some(o) => o,
                    None => self.initial_offset(dts_ms),
                };
                self.offset_ms = Some(o);
                self.share_offset(o);
                o
            }
        };
        // Within the stream: a step back, or a jump of more than five
        // fragments, moves the stream to the end of the timeline.
        let mut offset = offset;
        if let Some(last) = last_dts {
            let step_ms =
                mul_div_round_signed(s.dts.saturating_sub(last), 1000, u64::from(timescale))
                    .unwrap_or(i64::MAX);
            if (step_ms < 0 || step_ms > 5 * fragment_ms) && self.peer_offset().is_none() {
                // What was cut so far is published first, so the new offset
                // starts after it.
                self.flush_for_discontinuity();
                let end = self.channel.end_ms().unwrap_or(0);
                offset = (end + fragment_ms.min(100)).saturating_sub(dts_ms);
                self.offset_ms = Some(offset);
                self.share_offset(offset);
                // The other tracks jumped with this one: their next sample
                // is measured against the new offset, not their old clock.
                for t in self.tracks.values_mut() {
                    t.last_dts = None;
                }
                tracing::warn!(
                    channel = %self.channel.name,
                    stream = %self.stream,
                    step_ms,
                    "timestamp jump: discontinuity"
                );
            }
        }
        if std::mem::take(&mut self.discontinuity_next) {
            self.flush_for_discontinuity();
        }
        let offset_ticks = mul_div_round_signed(offset, u64::from(timescale), 1000).unwrap_or(0);
        let media = s.dts.saturating_add(offset_ticks);
        let Ok(media) = u64::try_from(media) else {
            // Before media time zero (a negative start): dropped.
            return Ok(());
        };
        let Some(t) = self.tracks.get_mut(&s.track) else {
            return Err(IngestError::UnknownTrack(s.track));
        };
        t.last_dts = Some(s.dts);
        let id = t.id;
        let done = t.segmenter.push(InputSample {
            dts: media,
            composition_offset: s.composition_offset,
            duration: s.duration,
            keyframe: s.keyframe,
            data: s.data,
        })?;
        if let Some(f) = done {
            self.publish(id, f);
        }
        Ok(())
    }

    /// The offset of another session publishing the same stream now.
    fn peer_offset(&self) -> Option<i64> {
        let streams = self
            .channel
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        streams
            .get(&self.stream)
            .filter(|s| s.active > 1)
            .and_then(|s| s.offset_ms)
    }

    fn share_offset(&self, offset_ms: i64) {
        if let Some(s) = self
            .channel
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&self.stream)
        {
            s.offset_ms = Some(offset_ms);
        }
    }

    /// Publishes every track's fragment in progress and flags the next
    /// fragment of each as following a discontinuity.
    fn flush_for_discontinuity(&mut self) {
        let mut done = Vec::new();
        for t in self.tracks.values_mut() {
            if let Some(f) = t.segmenter.discontinuity() {
                done.push((t.id, f));
            }
        }
        for (id, f) in done {
            self.publish(id, f);
        }
    }

    fn initial_offset(&mut self, first_dts_ms: i64) -> i64 {
        let fragment_ms = i64::from(self.channel.fragment_ms);
        match self.channel.end_ms() {
            None => first_dts_ms.saturating_neg().max(0),
            Some(end)
                if first_dts_ms >= end - 3 * fragment_ms
                    && first_dts_ms <= end + 3 * fragment_ms =>
            {
                0
            }
            Some(end) => {
                self.discontinuity_next = true;
                tracing::info!(
                    channel = %self.channel.name,
                    stream = %self.stream,
                    first_dts_ms,
                    end_ms = end,
                    "stream does not continue the timeline: discontinuity"
                );
                (end + fragment_ms.min(100)).saturating_sub(first_dts_ms)
            }
        }
    }

    fn publish(&self, track: u32, fragment: Fragment) {
        self.publish_as(track, fragment, false);
    }

    fn publish_as(&self, track: u32, fragment: Fragment, tail: bool) {
        self.channel
            .publish_fragment(&self.stream, track, fragment, tail);
    }

    /// The encoder ended the stream cleanly (unpublish): its last fragments
    /// are complete and published (parked instead while a redundant copy is
    /// still publishing, see [`StreamIngest::finish`]); when no other stream
    /// is publishing the presentation is complete (players see its end)
    /// until a stream starts again.
    pub fn end_of_stream(mut self) {
        if self.peer_offset().is_some() {
            self.park_tails();
        } else {
            self.flush_all();
            self.channel.release_parked_now(&self.stream);
        }
        if self.channel.publishing.load(Ordering::SeqCst) == 1 {
            self.channel.with_timeline(|tl| tl.set_ended(true));
        } else {
            // Another session still counts. If it is alive it sends media
            // (which cancels this) and ends by itself; if it is a dead
            // connection, the end comes when it times out (see `Drop`).
            self.channel.end_pending.store(true, Ordering::SeqCst);
        }
    }

    /// The stream stopped abruptly (connection lost, error). Its last
    /// fragments may be truncated, and a copy that completes them may come:
    /// a redundant encoder still publishing, or this encoder reconnecting and
    /// resending. A truncated fragment published first would win over the
    /// complete one and leave a gap, so they are parked; they are published
    /// when the stream's last session ends, or after a grace period of two
    /// fragments plus a second without any session of the stream.
    pub fn finish(&mut self) {
        self.park_tails();
        if self.peer_offset().is_some() {
            return;
        }
        let channel = self.channel.clone();
        let stream = self.stream.clone();
        let grace = Duration::from_millis(u64::from(channel.fragment_ms) * 2 + 1000);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    tokio::time::sleep(grace).await;
                    channel.release_parked(&stream);
                });
            }
            // Outside a runtime (tools, unit tests): nothing can wait.
            Err(_) => self.channel.release_parked_now(&self.stream),
        }
    }

    fn park_tails(&mut self) {
        let mut tails = Vec::new();
        for t in self.tracks.values_mut() {
            if let Some(fragment) = t.segmenter.flush() {
                tails.push(Parked {
                    stream: self.stream.clone(),
                    track: t.id,
                    fragment,
                });
            }
        }
        self.channel
            .parked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(tails);
    }

    fn flush_all(&mut self) {
        let mut done = Vec::new();
        for t in self.tracks.values_mut() {
            if let Some(f) = t.segmenter.flush() {
                done.push((t.id, f));
            }
        }
        for (id, f) in done {
            self.publish_as(id, f, true);
        }
    }
}

impl Drop for StreamIngest {
    fn drop(&mut self) {
        self.channel
            .encoders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|e| !Arc::ptr_eq(e, &self.encoder));
        let before = self.channel.publishing.fetch_sub(1, Ordering::SeqCst);
        {
            let mut streams = self
                .channel
                .streams
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(s) = streams.get_mut(&self.stream) {
                s.active = s.active.saturating_sub(1);
            }
        }
        // The last session of a presentation that an encoder ended cleanly
        // (while this one still counted, sending nothing): the end stands.
        // Tails this session parked cannot be completed by anyone now, so
        // they go out before the end is marked.
        if before == 1 && self.channel.end_pending.swap(false, Ordering::SeqCst) {
            self.channel.release_parked_now(&self.stream);
            self.channel.with_timeline(|tl| tl.set_ended(true));
        }
    }
}

/// Wall-clock Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::plugin::{TrackKind, View};

    fn channel() -> Arc<Channel> {
        let config = ChannelConfig {
            name: "ch1".into(),
            key: "k".into(),
            fragment_ms: 2000,
            window_ms: 600_000,
            epoch: None,
        };
        Arc::new(Channel::new(&config, &IngestLimits::default()))
    }

    fn sample(track: u32, dts: i64, keyframe: bool) -> Sample {
        Sample {
            track,
            dts,
            composition_offset: 0,
            duration: 0,
            keyframe,
            data: vec![0; 10],
        }
    }

    /// Feeds `seconds` of 25 fps video (1 kHz) and 50 Hz "audio" (1 kHz)
    /// from encoder time `from_ms`.
    fn feed(ingest: &mut StreamIngest, from_ms: i64, seconds: i64) {
        for i in 0..seconds * 50 {
            let t = from_ms + i * 20;
            let mut batch = vec![sample(2, t, true)];
            if i % 2 == 0 {
                batch.push(sample(1, t, (i / 2) % 50 == 0));
            }
            ingest.on_samples(batch).expect("accepted");
        }
    }

    fn declare(ingest: &mut StreamIngest) {
        ingest
            .on_track(TrackInfo::new(1, TrackKind::Video, 1000))
            .expect("video");
        ingest
            .on_track(TrackInfo::new(2, TrackKind::Audio, 1000))
            .expect("audio");
    }

    #[test]
    fn a_timestamp_jump_back_is_one_discontinuity_and_time_moves_on() {
        let ch = channel();
        let mut ingest = StreamIngest::new(ch.clone(), "720p", &IngestLimits::default());
        declare(&mut ingest);
        feed(&mut ingest, 0, 6);
        // The encoder's clock restarts from zero mid-stream.
        feed(&mut ingest, 0, 6);
        ingest.finish();
        let snap = ch.snapshot();
        for track in [1, 2] {
            let frags = snap.fragments(track, 0, 100);
            let flagged = frags.iter().filter(|f| f.discontinuity).count();
            assert_eq!(flagged, 1, "track {track}: {frags:?}");
            for pair in frags.windows(2) {
                assert!(
                    pair[1].start >= pair[0].start + pair[0].duration,
                    "{pair:?}"
                );
            }
            let last = frags.last().expect("fragments");
            assert!(last.start + last.duration >= 11_900, "{frags:?}");
        }
    }

    #[test]
    fn the_bitrate_cap_ends_a_stream_that_exceeds_it() {
        let limits = IngestLimits {
            max_bitrate_kbps: 8, // 5000 bytes per 5 s
            ..IngestLimits::default()
        };
        let ch = Arc::new(Channel::new(
            &ChannelConfig {
                name: "slow".into(),
                key: "k".into(),
                fragment_ms: 2000,
                window_ms: 60_000,
                epoch: None,
            },
            &limits,
        ));
        let mut ingest = StreamIngest::new(ch, "s", &limits);
        declare(&mut ingest);
        let big = |t| Sample {
            data: vec![0; 3000],
            ..sample(2, t, true)
        };
        ingest.on_samples(vec![big(0)]).expect("3000 bytes fit");
        assert!(matches!(
            ingest.on_samples(vec![big(20)]),
            Err(IngestError::Bitrate { limit_kbps: 8, .. })
        ));
    }

    #[test]
    fn a_new_stream_continuing_the_timeline_joins_without_discontinuity() {
        let ch = channel();
        let mut first = StreamIngest::new(ch.clone(), "720p", &IngestLimits::default());
        declare(&mut first);
        feed(&mut first, 0, 4);
        first.finish();
        drop(first);
        let mut again = StreamIngest::new(ch.clone(), "720p", &IngestLimits::default());
        declare(&mut again);
        feed(&mut again, 4000, 4);
        again.finish();
        let snap = ch.snapshot();
        let frags = snap.fragments(1, 0, 100);
        assert!(frags.iter().all(|f| !f.discontinuity), "{frags:?}");
        assert_eq!(
            frags.iter().map(|f| f.start).collect::<Vec<_>>(),
            [0, 2000, 4000, 6000]
        );
    }

    #[test]
    fn redundant_encoders_merge_without_gap_or_duplicate() {
        let ch = channel();
        let limits = IngestLimits::default();
        let mut a = StreamIngest::new(ch.clone(), "720p", &limits);
        let mut b = StreamIngest::new(ch.clone(), "720p", &limits);
        declare(&mut a);
        declare(&mut b);
        // Both push the same 0..6 s; then A dies and B goes on to 12 s.
        feed(&mut a, 0, 6);
        feed(&mut b, 0, 6);
        // A's connection drops mid-fragment: its truncated fragment must not
        // win over B's complete one.
        a.finish();
        drop(a);
        feed(&mut b, 6000, 6);
        // A comes back, restarting its file from zero while B is live.
        let mut a = StreamIngest::new(ch.clone(), "720p", &limits);
        declare(&mut a);
        feed(&mut a, 0, 6);
        a.end_of_stream();
        // B, the last copy, ends: it publishes its last fragment.
        b.end_of_stream();
        let snap = ch.snapshot();
        for track in [1, 2] {
            let frags = snap.fragments(track, 0, 100);
            for pair in frags.windows(2) {
                assert_eq!(
                    pair[1].start,
                    pair[0].start + pair[0].duration,
                    "no gap: {pair:?}"
                );
            }
            assert!(frags.iter().all(|f| !f.discontinuity), "{frags:?}");
            assert_eq!(frags.first().map(|f| f.start), Some(0));
        }
        let video = snap.fragments(1, 0, 100);
        assert_eq!(video.len(), 6, "{video:?}");
        let stats = &ch.stats;
        // B repeats A's first two fragments per track, and so does A's restart.
        assert_eq!(stats.duplicates_matching.load(Ordering::Relaxed), 8);
        assert_eq!(stats.duplicates_mismatching.load(Ordering::Relaxed), 0);
        assert_eq!(stats.discontinuities.load(Ordering::Relaxed), 0);
    }
}
