//! The session: one POST body, from `ftyp` to the last `mdat`.
//!
//! ```text
//!   ftyp ─▶ [uuid live server manifest] ─▶ moov ─(Track per published track)─▶
//!     ( moof ─▶ mdat ─(Samples per track)─▶ )*      moov again: ignored if identical,
//!                                                   else tracks re-declared
//! ```
//!
//! Every `moof`/`mdat` pair becomes one [`Event::Samples`] per track, so
//! the encoder's fragmentation is kept. A fragment's first decode time
//! is its `tfdt`, or its `tfxd` less the first sample's composition offset
//! (`tfxd` is a presentation time as ffmpeg writes it; see
//! `TrackState::decode_start`). Within a session, a track
//! fragment whose start is not after the previous one's (nor
//! after that one's last sample) is a resent duplicate and is dropped, so a
//! track's decode times only move forward. Across sessions (an encoder that
//! reconnects and resends its recent fragments in a new POST) duplicates
//! are the host's business.

use std::collections::{BTreeMap, BTreeSet};

use sluice_sdk::bmff::smooth::{self, LIVE_SERVER_MANIFEST};
use sluice_sdk::h264::{self, nal_type};
use sluice_sdk::plugin::{
    self, AdapterInfo, Event, IngestAdapter, LogLevel, Sample, SessionConfig, SessionError,
    TrackInfo, TrackKind,
};
use sluice_sdk::time::mul_div_round_signed;

use crate::error::{Error, Result};
use crate::framing::{Framer, TopBox};
use crate::manifest::LiveManifest;
use crate::moof::{self, Fragment, SampleRef, TrackRun};
use crate::moov::{self, MovieTrack, Output, Publication};

/// Most samples one `moof` may describe (every track together).
pub const MAX_SAMPLES_PER_FRAGMENT: usize = 1 << 18;

/// Most distinct unknown track ids that are logged.
const MAX_LOGGED_UNKNOWN: usize = 16;

/// What a session has seen, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// `moof`/`mdat` pairs read.
    pub fragments: u64,
    /// Samples emitted.
    pub samples: u64,
    /// Track fragments dropped because their start was not after the
    /// previous one's (resent duplicates).
    pub duplicate_fragments: u64,
    /// Samples dropped: of duplicates, of unpublished or unknown tracks,
    /// and of `avc3` tracks before their first in-band parameter sets.
    pub dropped_samples: u64,
}

/// Per-track state.
#[derive(Debug)]
struct TrackState {
    /// The track as the latest `moov` describes it.
    movie: MovieTrack,
    /// What was last declared with an [`Event::Track`].
    declared: Option<TrackInfo>,
    /// Start of the last track fragment with an explicit time (media ticks).
    last_start: Option<i64>,
    /// Decode time of the last sample taken (media ticks).
    last_dts: Option<i64>,
    /// End of the last fragment taken: the start of one without a time.
    next_dts: Option<i64>,
    /// Whether waiting for in-band parameter sets (`avc3`) was logged.
    drop_logged: bool,
}

/// A `moof` waiting for its `mdat`.
#[derive(Debug)]
struct PendingFragment {
    fragment: Fragment,
    moof_offset: u64,
}

/// One fMP4 / Smooth ingest POST, sans-IO.
///
/// Feed it the entity body as it arrives (already de-chunked); it returns
/// [`Event::Track`] for each published track and [`Event::Samples`] for
/// each fragment. It never asks for authorisation (the host authorises
/// the URL before it opens the session) and never sends bytes back.
#[derive(Debug)]
pub struct Fmp4Session {
    config: SessionConfig,
    framer: Framer,
    /// The error that ended the session, returned again on later feeds.
    failed: Option<SessionError>,
    manifest: Option<LiveManifest>,
    /// The last `moov`, byte for byte.
    moov: Option<Vec<u8>>,
    tracks: BTreeMap<u32, TrackState>,
    pending: Option<PendingFragment>,
    unknown_logged: BTreeSet<u32>,
    stray_mdat_logged: bool,
    duplicate_logged: bool,
    stats: Stats,
}

impl Fmp4Session {
    /// What the session has seen so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Tracks read from the `moov` that are not published (kept so their
    /// fragments are recognised), with the reason.
    pub fn unpublished_tracks(&self) -> Vec<(u32, String)> {
        self.tracks
            .values()
            .filter_map(|t| match &t.movie.publication {
                Publication::Unpublished { reason, .. } => Some((t.movie.id, reason.clone())),
                Publication::Publish(_) => None,
            })
            .collect()
    }

    /// Logs a line (the host adds the plugin and session to it).
    fn log(&self, level: LogLevel, message: &str) {
        plugin::log(level, message);
    }

    /// Reads every complete box buffered.
    fn process(&mut self, events: &mut Vec<Event>) -> Result<()> {
        while let Some(b) = self.framer.next_box()? {
            self.on_box(b, events)?;
        }
        Ok(())
    }

    fn on_box(&mut self, b: TopBox, events: &mut Vec<Event>) -> Result<()> {
        match &b.header.fourcc.0 {
            b"moov" => self.on_moov(&b, events),
            b"moof" => self.on_moof(&b),
            b"mdat" => self.on_mdat(&b, events),
            b"uuid" if smooth::is_uuid(&b.as_box_ref(), &LIVE_SERVER_MANIFEST) => {
                let m = LiveManifest::from_box(&b.as_box_ref());
                self.log(
                    LogLevel::Debug,
                    &format!("live server manifest lists {} tracks", m.tracks.len()),
                );
                self.manifest = Some(m);
                Ok(())
            }
            // ftyp, styp, free, skip, sidx, mfra, other uuid boxes: nothing
            // to publish.
            _ => Ok(()),
        }
    }

    fn on_moov(&mut self, b: &TopBox, events: &mut Vec<Event>) -> Result<()> {
        if self.moov.as_deref() == Some(&b.bytes[..]) {
            self.log(LogLevel::Debug, "identical moov again; ignored");
            return Ok(());
        }
        let movie = moov::read_moov(&b.as_box_ref(), &self.config.stream, self.manifest.as_ref())?;
        for mt in movie {
            let published = matches!(mt.publication, Publication::Publish(_));
            if published
                && !self
                    .tracks
                    .get(&mt.id)
                    .is_some_and(|t| matches!(t.movie.publication, Publication::Publish(_)))
            {
                let count = self
                    .tracks
                    .values()
                    .filter(|t| matches!(t.movie.publication, Publication::Publish(_)))
                    .count();
                if count >= self.config.max_tracks as usize {
                    return Err(Error::Limit(format!(
                        "more than {} tracks",
                        self.config.max_tracks
                    )));
                }
            }
            if let Publication::Unpublished { kind, reason } = &mt.publication
                && self.tracks.get(&mt.id).map(|t| &t.movie) != Some(&mt)
            {
                self.log(
                    LogLevel::Warn,
                    &format!(
                        "track {} ({kind:?}) is not published: {reason}; its samples are dropped",
                        mt.id
                    ),
                );
            }
            let id = mt.id;
            let state = match self.tracks.get_mut(&id) {
                Some(state) => {
                    if state.movie == mt {
                        continue;
                    }
                    if state.movie.media_timescale != mt.media_timescale {
                        // Times in another unit: duplicate detection starts over.
                        state.last_start = None;
                        state.last_dts = None;
                        state.next_dts = None;
                    }
                    state.movie = mt;
                    state
                }
                None => self.tracks.entry(id).or_insert(TrackState {
                    movie: mt,
                    declared: None,
                    last_start: None,
                    last_dts: None,
                    next_dts: None,
                    drop_logged: false,
                }),
            };
            if let Publication::Publish(out) = &state.movie.publication
                && !out.needs_parameter_sets
                && state.declared.as_ref() != Some(&out.info)
            {
                state.declared = Some(out.info.clone());
                events.push(Event::Track(out.info.clone()));
            }
        }
        self.moov = Some(b.bytes.clone());
        Ok(())
    }

    fn on_moof(&mut self, b: &TopBox) -> Result<()> {
        if self.moov.is_none() {
            return Err(Error::Sequence(format!(
                "moof at stream offset {} before any moov",
                b.offset
            )));
        }
        if let Some(p) = &self.pending
            && p.fragment.sample_count() > 0
        {
            return Err(Error::Sequence(format!(
                "moof at stream offset {} follows the moof at {} without an mdat",
                b.offset, p.moof_offset
            )));
        }
        let tracks = &self.tracks;
        let trex = |id: u32| tracks.get(&id).map(|t| t.movie.trex);
        let fragment = moof::read_moof(&b.as_box_ref(), b.offset, &trex, MAX_SAMPLES_PER_FRAGMENT)?;
        self.pending = Some(PendingFragment {
            fragment,
            moof_offset: b.offset,
        });
        Ok(())
    }

    fn on_mdat(&mut self, mdat: &TopBox, events: &mut Vec<Event>) -> Result<()> {
        let Some(pending) = self.pending.take() else {
            if !self.stray_mdat_logged {
                self.stray_mdat_logged = true;
                self.log(LogLevel::Warn, "mdat without a moof before it; ignored");
            }
            return Ok(());
        };
        self.stats.fragments += 1;
        // One batch per track, in the order the tracks first appear.
        let mut batches: Vec<(u32, Vec<Sample>)> = Vec::new();
        for run in &pending.fragment.runs {
            let mut samples = self.take_run(run, mdat, events)?;
            if samples.is_empty() {
                continue;
            }
            self.stats.samples += samples.len() as u64;
            match batches.iter_mut().find(|(id, _)| *id == run.track_id) {
                Some((_, batch)) => batch.append(&mut samples),
                None => batches.push((run.track_id, samples)),
            }
        }
        events.extend(batches.into_iter().map(|(_, s)| Event::Samples(s)));
        Ok(())
    }

    /// The samples of one track fragment, with their bytes cut from `mdat`;
    /// none for an unknown, unpublished or duplicate track fragment. An
    /// `avc3` track declared by this run gets its [`Event::Track`] pushed.
    fn take_run(
        &mut self,
        run: &TrackRun,
        mdat: &TopBox,
        events: &mut Vec<Event>,
    ) -> Result<Vec<Sample>> {
        let n = run.samples.len() as u64;
        if n == 0 {
            return Ok(Vec::new());
        }
        let Some(state) = self.tracks.get_mut(&run.track_id) else {
            self.stats.dropped_samples += n;
            if self.unknown_logged.len() < MAX_LOGGED_UNKNOWN
                && self.unknown_logged.insert(run.track_id)
            {
                self.log(
                    LogLevel::Warn,
                    &format!(
                        "fragment for track {} which the moov does not declare; dropped",
                        run.track_id
                    ),
                );
            }
            return Ok(Vec::new());
        };
        let Publication::Publish(out) = &state.movie.publication else {
            self.stats.dropped_samples += n;
            return Ok(Vec::new());
        };
        let out = out.clone();
        let explicit = run.start.map(|(time, source)| {
            let first_offset = run.samples.first().map_or(0, |s| s.composition_offset);
            (state.decode_start(time, source, first_offset), source)
        });
        if let Some((start, source)) = explicit
            && state.is_duplicate(start)
        {
            self.stats.duplicate_fragments += 1;
            self.stats.dropped_samples += n;
            let message = format!(
                "track {}: fragment starting at {start} ({source:?}) is not after the previous \
                 one (start {:?}, last sample {:?}); dropped as a duplicate",
                run.track_id, state.last_start, state.last_dts
            );
            let level = if self.duplicate_logged {
                LogLevel::Debug
            } else {
                LogLevel::Info
            };
            self.duplicate_logged = true;
            self.log(level, &message);
            return Ok(Vec::new());
        }

        let track = run.track_id;
        let start = explicit.map(|(t, _)| t).or(state.next_dts).unwrap_or(0);
        let awaiting_parameter_sets = out.needs_parameter_sets && state.declared.is_none();
        let mut declared = None;
        let mut samples = Vec::with_capacity(run.samples.len());
        let mut dts = start;
        let mut last_dts = start;
        for s in &run.samples {
            last_dts = dts;
            dts = dts
                .checked_add(i64::from(s.duration))
                .ok_or_else(|| Error::Overflow(format!("track {track} decode time")))?;
            let data = slice(mdat, track, s)?;
            let data = match out.nal_length_size {
                Some(4) | None => data.to_vec(),
                Some(n) => {
                    let mut v = Vec::new();
                    h264::to_length_size_4(data, n, &mut v).map_err(|e| Error::Codec {
                        track,
                        message: e.to_string(),
                    })?;
                    v
                }
            };
            if awaiting_parameter_sets && declared.is_none() {
                declared = in_band_declaration(&out, &data);
                if declared.is_none() {
                    self.stats.dropped_samples += 1;
                    continue;
                }
            }
            let keyframe = out.info.kind == TrackKind::Audio || s.is_sync();
            samples.push(output_sample(
                &state.movie,
                &out,
                last_dts,
                s,
                keyframe,
                data,
            )?);
        }
        if explicit.is_some() {
            state.last_start = Some(start);
        }
        state.last_dts = Some(last_dts);
        state.next_dts = Some(dts);
        if let Some(info) = declared {
            state.declared = Some(info.clone());
            events.push(Event::Track(info));
        } else if awaiting_parameter_sets && !state.drop_logged {
            state.drop_logged = true;
            plugin::log(
                LogLevel::Info,
                &format!(
                    "track {track}: avc3 without parameter sets yet; samples are dropped until \
                     an SPS and a PPS arrive in-band"
                ),
            );
        }
        Ok(samples)
    }
}

impl TrackState {
    /// The decode time of a track fragment's first sample, from its explicit
    /// time. `tfdt` is that decode time. `tfxd` is read as the first
    /// sample's *presentation* time, as ffmpeg's `ismv` muxer writes it
    /// (decode time plus composition offset), so the decode time is `tfxd`
    /// minus the first sample's composition offset. Encoders that write the
    /// decode time into `tfxd` instead are recognised within a session:
    /// when `tfxd` itself, not the derived time, continues the previous
    /// fragment exactly, the continuation is taken. Either way a fragment
    /// cut at a picture with another composition offset (ffmpeg's
    /// `-frag_duration`) continues the timeline instead of looking like a
    /// resend.
    fn decode_start(&self, time: i64, source: moof::TimeSource, first_offset: i32) -> i64 {
        if source != moof::TimeSource::Tfxd {
            return time;
        }
        let derived = time.saturating_sub(i64::from(first_offset));
        match self.next_dts {
            Some(next) if time == next => time,
            _ => derived,
        }
    }

    /// Whether a track fragment starting at `start` (an explicit `tfdt` or
    /// `tfxd` time) is a resend: not after the previous fragment's start,
    /// or not after its last sample (its samples would go backward).
    fn is_duplicate(&self, start: i64) -> bool {
        self.last_start.is_some_and(|last| start <= last)
            || self.last_dts.is_some_and(|last| start <= last)
    }
}

/// The bytes of sample `s`, which must lie inside the `mdat`'s payload.
fn slice<'a>(mdat: &'a TopBox, track: u32, s: &SampleRef) -> Result<&'a [u8]> {
    let out_of_bounds = || Error::DataOutOfBounds {
        track,
        offset: s.offset,
        size: s.size,
        mdat_start: mdat.body_offset(),
        mdat_end: mdat.end_offset(),
    };
    let end = s
        .offset
        .checked_add(u64::from(s.size))
        .ok_or_else(out_of_bounds)?;
    if s.offset < mdat.body_offset() || end > mdat.end_offset() {
        return Err(out_of_bounds());
    }
    // Both bounds lie inside `mdat.bytes`, so they fit a usize.
    let from = (s.offset - mdat.offset) as usize;
    let to = (end - mdat.offset) as usize;
    mdat.bytes.get(from..to).ok_or_else(out_of_bounds)
}

/// The declaration of an `avc3` track whose parameter sets come in-band,
/// if `sample` (4-byte lengths) carries an SPS and a PPS.
fn in_band_declaration(out: &Output, sample: &[u8]) -> Option<TrackInfo> {
    let (mut sps, mut pps) = (Vec::new(), Vec::new());
    for nal in h264::nal_units(sample, 4) {
        let Ok(nal) = nal else { break };
        match h264::nal_unit_type(nal) {
            Some(nal_type::SPS) => sps.push(nal.to_vec()),
            Some(nal_type::PPS) => pps.push(nal.to_vec()),
            _ => {}
        }
    }
    if sps.is_empty() || pps.is_empty() {
        return None;
    }
    moov::complete_avc(&out.info, sps, pps)
}

/// A sample in the published timescale.
fn output_sample(
    movie: &MovieTrack,
    out: &Output,
    dts: i64,
    s: &SampleRef,
    keyframe: bool,
    data: Vec<u8>,
) -> Result<Sample> {
    let track = movie.id;
    let overflow = || Error::Overflow(format!("track {track} time"));
    let (dts, duration, composition_offset) = if out.info.timescale == movie.media_timescale {
        (dts, s.duration, s.composition_offset)
    } else {
        // Rescale round-to-nearest from absolute times, so that durations
        // add up with no drift (10 MHz AAC frames of 213333.33 ticks become
        // exactly 1024).
        let from = u64::from(movie.media_timescale);
        let to = u64::from(out.info.timescale);
        let map = |t: i64| mul_div_round_signed(t, to, from).map_err(|_| overflow());
        let end = dts
            .checked_add(i64::from(s.duration))
            .ok_or_else(overflow)?;
        let pts = dts
            .checked_add(i64::from(s.composition_offset))
            .ok_or_else(overflow)?;
        let mapped = map(dts)?;
        let duration = u32::try_from(map(end)? - mapped).map_err(|_| overflow())?;
        let cto = i32::try_from(map(pts)? - mapped).map_err(|_| overflow())?;
        (mapped, duration, cto)
    };
    Ok(Sample {
        track,
        dts,
        composition_offset,
        duration,
        keyframe,
        data,
    })
}

impl IngestAdapter for Fmp4Session {
    fn info() -> AdapterInfo {
        AdapterInfo {
            name: "fmp4".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Fragmented MP4 / Smooth Streaming ingest (HTTP POST), H.264 + AAC".into(),
            extension: "isml".into(),
        }
    }

    fn new(config: SessionConfig) -> Self {
        Fmp4Session {
            framer: Framer::new(config.max_message_size),
            config,
            failed: None,
            manifest: None,
            moov: None,
            tracks: BTreeMap::new(),
            pending: None,
            unknown_logged: BTreeSet::new(),
            stray_mdat_logged: false,
            duplicate_logged: false,
            stats: Stats::default(),
        }
    }

    fn feed(&mut self, data: &[u8]) -> Result<Vec<Event>, SessionError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.framer.push(data);
        let mut events = Vec::new();
        match self.process(&mut events) {
            Ok(()) => Ok(events),
            Err(e) => {
                self.log(LogLevel::Error, &format!("session ends: {e}"));
                let e = SessionError::from(e);
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    fn close(&mut self) -> Vec<Event> {
        if self
            .pending
            .as_ref()
            .is_some_and(|p| p.fragment.sample_count() > 0)
        {
            self.log(
                LogLevel::Warn,
                "stream ended between a moof and its mdat; that fragment is lost",
            );
        }
        if self.framer.buffered() > 0 {
            self.log(
                LogLevel::Warn,
                &format!(
                    "stream ended inside a box; {} bytes dropped",
                    self.framer.buffered()
                ),
            );
        }
        self.log(
            LogLevel::Info,
            &format!(
                "closed after {} bytes: {} fragments, {} samples, {} duplicate fragments dropped, \
                 {} samples dropped",
                self.framer.position() + self.framer.buffered() as u64,
                self.stats.fragments,
                self.stats.samples,
                self.stats.duplicate_fragments,
                self.stats.dropped_samples
            ),
        );
        Vec::new()
    }
}
