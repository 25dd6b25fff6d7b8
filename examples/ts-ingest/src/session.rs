//! The session: one POST body of MPEG-TS, from the first packet to the
//! end of the body.
//!
//! ```text
//!   bytes ─▶ Framer ─▶ packet ─┬─ PID 0: PAT ─▶ first program ─▶ its PMT PID
//!                              ├─ PMT PID: PMT ─▶ streams taken (0x1B H.264, 0x0F AAC), others noted
//!                              └─ stream PID: continuity ─▶ PesAssembler ─▶ PES ─▶ PTS/DTS (Clock)
//!                                   ├─ H.264: access unit ─▶ Track (avcC) once SPS+PPS, Samples
//!                                   └─ AAC: ADTS frames ─▶ Track (AudioSpecificConfig), Samples
//! ```
//!
//! Track ids are the streams' PIDs. Each PES gives one [`Event::Samples`]
//! (one video access unit, or the ADTS frames of one audio PES), so the
//! events depend on the bytes alone, never on how the body was cut. A
//! track is declared before its first sample and declared again when its
//! codec configuration changes, when a PMT replaces its stream, or when
//! its decode time goes back (the host then starts a new period of the
//! track, as for a discontinuity).
//!
//! Authorisation: the host checks the channel, the key in the URL, the
//! peer address and the channel state before it opens an HTTP ingest
//! session, and ends a session whose adapter asks for authorisation over
//! HTTP. So, like the fMP4 adapter, this one never emits
//! [`Event::Authorize`] (nor [`Event::Send`]: nothing can be written back
//! in the middle of a request body).

use std::collections::{BTreeMap, BTreeSet};

use sluice_sdk::bmff::language_tag;
use sluice_sdk::plugin::{
    self, AdapterInfo, Event, IngestAdapter, LogLevel, Sample, SessionConfig, SessionError,
    TrackInfo, TrackKind,
};

use crate::adts::{self, AdtsStream};
use crate::avc::{self, AvcStream};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::packet::{Framer, NULL_PID, PACKET_SIZE, Packet, pid_of};
use crate::pes::{Assembled, PesAssembler, PesHeader};
use crate::psi::{self, PAT_PID, Pat, Pmt, PmtStream, SectionBuffer, crc32};

/// `stream_type` of H.264 video (ITU-T H.222.0 table 2-34).
pub const STREAM_TYPE_H264: u8 = 0x1b;
/// `stream_type` of AAC audio in ADTS (ISO/IEC 13818-7).
pub const STREAM_TYPE_AAC_ADTS: u8 = 0x0f;

/// Packets read without a usable PAT and PMT before the session gives up
/// (about 6 MB; encoders repeat both every 100 ms or so).
pub const MAX_PACKETS_WITHOUT_PROGRAM: u64 = 1 << 15;

/// Occurrences of each kind of damage that are logged.
const MAX_LOGGED: u64 = 8;

/// Streams of other types noted in the log (each once).
const MAX_NOTED_STREAMS: usize = 64;

/// What a session has seen, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Packets read.
    pub packets: u64,
    /// Bytes skipped while searching for sync.
    pub skipped_bytes: u64,
    /// Times sync was found again after being lost.
    pub resyncs: u64,
    /// Packets dropped as damaged (transport error indicator, reserved
    /// adaptation field control, adaptation field too long).
    pub damaged_packets: u64,
    /// Continuity counter gaps.
    pub cc_gaps: u64,
    /// PSI sections dropped for a bad CRC.
    pub crc_errors: u64,
    /// PSI sections cut short by the next one, or declaring more than a
    /// section may hold.
    pub sections_dropped: u64,
    /// PES packets dropped: cut by a gap or a damaged packet, cut short,
    /// or with a header that does not parse.
    pub pes_dropped: u64,
    /// Access units and audio frames dropped: before their track's
    /// configuration was known, or without a time stamp.
    pub units_dropped: u64,
    /// Samples emitted.
    pub samples: u64,
    /// Times a track's decode time went back (the track was declared again).
    pub time_resets: u64,
    /// Streams of other types noted and ignored.
    pub ignored_streams: u64,
    /// Bytes of audio PES payloads skipped looking for an ADTS syncword.
    pub adts_skipped_bytes: u64,
}

/// Continuity counter checking for one PID (ISO/IEC 13818-1 2.4.3.3).
#[derive(Debug, Default)]
struct Continuity {
    last: Option<u8>,
    repeated: bool,
}

/// What a packet's continuity counter says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cc {
    /// In order.
    Next,
    /// The previous packet again (allowed once): drop it.
    Repeat,
    /// Packets are missing.
    Gap,
}

impl Continuity {
    fn check(&mut self, p: &Packet<'_>) -> Cc {
        if !p.has_payload {
            // The counter only counts packets with payload.
            if p.discontinuity {
                self.last = None;
            }
            return Cc::Next;
        }
        let cc = p.continuity_counter;
        let verdict = match self.last {
            _ if p.discontinuity => Cc::Next,
            None => Cc::Next,
            Some(last) if cc == last && !self.repeated => Cc::Repeat,
            Some(last) if cc == (last + 1) & 0x0f => Cc::Next,
            Some(_) => Cc::Gap,
        };
        self.repeated = verdict == Cc::Repeat;
        self.last = Some(cc);
        verdict
    }
}

/// A PSI PID: its continuity and its sections in progress.
#[derive(Debug, Default)]
struct Psi {
    cc: Continuity,
    sections: SectionBuffer,
}

/// The program being read.
#[derive(Debug)]
struct Program {
    number: u16,
    pmt_pid: u16,
    psi: Psi,
    /// The PMT section last applied, byte for byte.
    pmt: Option<Vec<u8>>,
}

/// What an elementary stream is decoded as.
#[derive(Debug)]
enum Codec {
    Avc(AvcStream),
    Aac {
        frames: AdtsStream,
        /// The header fields the declaration was made from (profile,
        /// sampling frequency index, channel configuration).
        declared_from: Option<(u8, u8, u8)>,
    },
}

/// One elementary stream taken from the PMT.
#[derive(Debug)]
struct Stream {
    pid: u16,
    stream_type: u8,
    /// BCP 47 language from the PMT's ISO 639 descriptor, `und` without.
    language: String,
    cc: Continuity,
    pes: PesAssembler,
    codec: Codec,
    declared: Option<TrackInfo>,
    last_dts: Option<i64>,
    /// Dropping access units while waiting for parameter sets was logged.
    waiting_logged: bool,
}

impl Stream {
    /// The BCP 47 language of `es`: its ISO 639 descriptor's, or `und`.
    fn language_of(es: &PmtStream) -> String {
        es.language.map_or_else(
            || "und".to_owned(),
            |mut code| {
                code.make_ascii_lowercase();
                language_tag(code)
            },
        )
    }

    fn new(es: &PmtStream) -> Stream {
        let codec = if es.stream_type == STREAM_TYPE_H264 {
            Codec::Avc(AvcStream::new())
        } else {
            Codec::Aac {
                frames: AdtsStream::new(),
                declared_from: None,
            }
        };
        Stream {
            pid: es.pid,
            stream_type: es.stream_type,
            language: Stream::language_of(es),
            cc: Continuity::default(),
            pes: PesAssembler::new(),
            codec,
            declared: None,
            last_dts: None,
            waiting_logged: false,
        }
    }

    /// Whether this stream is what `es` describes.
    fn is(&self, es: &PmtStream) -> bool {
        self.pid == es.pid
            && self.stream_type == es.stream_type
            && self.language == Stream::language_of(es)
    }

    /// Forgets data in progress (a gap, a damaged packet); whether a PES
    /// was in progress.
    fn drop_in_progress(&mut self) -> bool {
        let active = self.pes.active();
        self.pes.reset();
        if let Codec::Aac { frames, .. } = &mut self.codec {
            frames.reset();
        }
        active
    }
}

/// What every stream shares: the clock, the declared tracks, the counters.
#[derive(Debug)]
struct Shared {
    stream_name: String,
    max_tracks: u32,
    clock: Clock,
    /// Every track id declared in this session.
    track_ids: BTreeSet<u32>,
    stats: Stats,
}

impl Shared {
    /// Declares `info` for `stream` unless it is what was declared last.
    fn declare(
        &mut self,
        stream: &mut Stream,
        info: TrackInfo,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        if stream.declared.as_ref() == Some(&info) {
            return Ok(());
        }
        if !self.track_ids.contains(&info.id) {
            if self.track_ids.len() >= self.max_tracks as usize {
                return Err(Error::TooManyTracks {
                    wanted: self.track_ids.len() + 1,
                    limit: self.max_tracks,
                });
            }
            self.track_ids.insert(info.id);
        }
        plugin::log(
            LogLevel::Info,
            &format!(
                "PID {:#06x}: track {} {} ({}), timescale {}",
                stream.pid, info.id, info.codec, info.fourcc, info.timescale
            ),
        );
        events.push(Event::Track(info.clone()));
        stream.declared = Some(info);
        Ok(())
    }

    /// Emits `samples` of `stream` as one event; a sample whose decode
    /// time goes back first declares the track again (a discontinuity).
    fn emit(&mut self, stream: &mut Stream, samples: Vec<Sample>, events: &mut Vec<Event>) {
        self.stats.samples += samples.len() as u64;
        let mut batch = Vec::with_capacity(samples.len());
        for s in samples {
            if stream.last_dts.is_some_and(|last| s.dts < last)
                && let Some(info) = stream.declared.clone()
            {
                self.stats.time_resets += 1;
                log_counted(
                    LogLevel::Warn,
                    self.stats.time_resets,
                    &format!(
                        "PID {:#06x}: decode time goes back from {:?} to {}; track declared \
                         again",
                        stream.pid, stream.last_dts, s.dts
                    ),
                );
                if !batch.is_empty() {
                    events.push(Event::Samples(std::mem::take(&mut batch)));
                }
                events.push(Event::Track(info));
            }
            stream.last_dts = Some(s.dts);
            batch.push(s);
        }
        if !batch.is_empty() {
            events.push(Event::Samples(batch));
        }
    }

    /// One complete PES of `stream`.
    fn on_pes(&mut self, stream: &mut Stream, pes: &[u8], events: &mut Vec<Event>) -> Result<()> {
        let header = match PesHeader::parse(pes) {
            Ok(h) => h,
            Err(e) => {
                self.stats.pes_dropped += 1;
                log_counted(
                    LogLevel::Warn,
                    self.stats.pes_dropped,
                    &format!("PID {:#06x}: PES dropped: {e}", stream.pid),
                );
                return Ok(());
            }
        };
        let payload = pes.get(header.payload_offset..).unwrap_or_default();
        let dts = header.dts.map(|t| self.clock.unwrap(t));
        let pts = header.pts.map(|t| self.clock.unwrap(t));
        match stream.codec {
            Codec::Avc(_) => self.on_access_unit(stream, pts, dts, payload, events),
            Codec::Aac { .. } => self.on_audio(stream, pts, payload, events),
        }
    }

    fn on_access_unit(
        &mut self,
        stream: &mut Stream,
        pts: Option<i64>,
        dts: Option<i64>,
        payload: &[u8],
        events: &mut Vec<Event>,
    ) -> Result<()> {
        let pid = stream.pid;
        let Codec::Avc(avc) = &mut stream.codec else {
            return Ok(());
        };
        let codec = |message| Error::Codec { pid, message };
        let unit = avc.access_unit(payload).map_err(codec)?;
        if unit.parameter_sets_changed
            && let Some(config) = avc.config()
        {
            let config = config.map_err(codec)?;
            let mut info =
                avc::track_info(u32::from(pid), &self.stream_name, &config).map_err(codec)?;
            info.language = stream.language.clone();
            self.declare(stream, info, events)?;
        }
        if unit.data.is_empty() {
            return Ok(());
        }
        if stream.declared.is_none() {
            self.stats.units_dropped += 1;
            if !stream.waiting_logged {
                stream.waiting_logged = true;
                plugin::log(
                    LogLevel::Info,
                    &format!(
                        "PID {pid:#06x}: H.264 access units dropped until an SPS and a PPS arrive"
                    ),
                );
            }
            return Ok(());
        }
        let Some(pts) = pts else {
            self.stats.units_dropped += 1;
            log_counted(
                LogLevel::Warn,
                self.stats.units_dropped,
                &format!("PID {pid:#06x}: access unit without a PTS dropped"),
            );
            return Ok(());
        };
        let dts = dts.unwrap_or(pts);
        let composition_offset = pts
            .checked_sub(dts)
            .and_then(|o| i32::try_from(o).ok())
            .ok_or(Error::Overflow {
                pid,
                what: "composition offset (PTS - DTS)",
            })?;
        let sample = Sample {
            track: u32::from(pid),
            dts,
            composition_offset,
            duration: 0,
            keyframe: unit.keyframe,
            data: unit.data,
        };
        self.emit(stream, vec![sample], events);
        Ok(())
    }

    fn on_audio(
        &mut self,
        stream: &mut Stream,
        pts: Option<i64>,
        payload: &[u8],
        events: &mut Vec<Event>,
    ) -> Result<()> {
        let pid = stream.pid;
        let Codec::Aac { frames, .. } = &mut stream.codec else {
            return Ok(());
        };
        let skipped = frames.skipped();
        let unsupported = |message| Error::Unsupported { pid, message };
        let taken = frames.frames(pts, payload).map_err(unsupported)?;
        self.stats.adts_skipped_bytes += frames.skipped() - skipped;
        let mut batch = Vec::with_capacity(taken.len());
        for frame in taken {
            let h = frame.header;
            let key = (
                h.profile,
                h.sampling_frequency_index,
                h.channel_configuration,
            );
            if let Codec::Aac { declared_from, .. } = &mut stream.codec
                && *declared_from != Some(key)
            {
                *declared_from = Some(key);
                let config = h.config().map_err(unsupported)?;
                let info = TrackInfo {
                    fourcc: "mp4a".into(),
                    codec: config.codec_string(),
                    codec_private: config
                        .to_bytes()
                        .map_err(|e| unsupported(format!("AudioSpecificConfig: {e}")))?,
                    stream: self.stream_name.clone(),
                    language: stream.language.clone(),
                    sample_rate: config.sampling_frequency,
                    channels: config.channels,
                    ..TrackInfo::new(u32::from(pid), TrackKind::Audio, config.sampling_frequency)
                };
                if stream.declared.as_ref() != Some(&info) {
                    self.emit(stream, std::mem::take(&mut batch), events);
                    self.declare(stream, info, events)?;
                }
            }
            let Some(dts) = frame.time else {
                self.stats.units_dropped += 1;
                log_counted(
                    LogLevel::Warn,
                    self.stats.units_dropped,
                    &format!("PID {pid:#06x}: AAC frame before any PTS dropped"),
                );
                continue;
            };
            batch.push(Sample {
                track: u32::from(pid),
                dts,
                composition_offset: 0,
                duration: adts::FRAME_SAMPLES,
                keyframe: true,
                data: frame.data,
            });
        }
        self.emit(stream, batch, events);
        Ok(())
    }

    /// Ends the PES in progress of `stream` (another starts, the stream
    /// ends or leaves the PMT): processed when complete, else dropped.
    fn finish_pes(&mut self, stream: &mut Stream, events: &mut Vec<Event>) -> Result<()> {
        match stream.pes.finish() {
            Ok(Some(pes)) => self.on_pes(stream, &pes, events),
            Ok(None) => Ok(()),
            Err(bytes) => {
                self.stats.pes_dropped += 1;
                log_counted(
                    LogLevel::Warn,
                    self.stats.pes_dropped,
                    &format!(
                        "PID {:#06x}: PES cut short after {bytes} bytes; dropped",
                        stream.pid
                    ),
                );
                Ok(())
            }
        }
    }
}

/// Logs the `count`th occurrence of something: the first few only.
fn log_counted(level: LogLevel, count: u64, message: &str) {
    if count <= MAX_LOGGED {
        plugin::log(level, message);
    }
    if count == MAX_LOGGED {
        plugin::log(level, "(further ones of this kind are not logged)");
    }
}

/// One MPEG-TS ingest POST, sans-IO.
///
/// Feed it the entity body as it arrives (already de-chunked), in any
/// pieces; it returns [`Event::Track`] and [`Event::Samples`], and
/// [`Event::EndOfStream`] from [`IngestAdapter::close`].
#[derive(Debug)]
pub struct TsSession {
    max_message_size: u32,
    framer: Framer,
    /// The error that ended the session, returned again on later feeds.
    failed: Option<SessionError>,
    closed: bool,
    pat: Psi,
    program: Option<Program>,
    /// Whether a PMT was applied (the stream has a program).
    has_program: bool,
    streams: BTreeMap<u16, Stream>,
    /// Streams of other types, noted once each.
    noted: BTreeSet<(u16, u8)>,
    shared: Shared,
}

impl TsSession {
    /// What the session has seen so far.
    pub fn stats(&self) -> Stats {
        Stats {
            skipped_bytes: self.framer.skipped_total(),
            resyncs: self.framer.resyncs(),
            ..self.shared.stats
        }
    }

    /// Streams the PMTs listed that are not taken: `(PID, stream_type)`.
    pub fn ignored_streams(&self) -> Vec<(u16, u8)> {
        self.noted.iter().copied().collect()
    }

    fn process(&mut self, data: &[u8], events: &mut Vec<Event>) -> Result<()> {
        for step in data.chunks(Framer::STEP) {
            self.framer.push(step);
            while let Some((packet, offset)) = self.framer.next_packet()? {
                self.on_packet(&packet, offset, events)?;
            }
        }
        Ok(())
    }

    fn on_packet(
        &mut self,
        bytes: &[u8; PACKET_SIZE],
        offset: u64,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        self.shared.stats.packets += 1;
        match Packet::parse(bytes) {
            Ok(p) if p.pid == NULL_PID => {}
            Ok(p) if p.transport_error => {
                self.damaged(p.pid, offset, "transport_error_indicator set");
            }
            Ok(p) => self.route(&p, events)?,
            Err(e) => self.damaged(pid_of(bytes), offset, &e.to_string()),
        }
        if !self.has_program && self.shared.stats.packets >= MAX_PACKETS_WITHOUT_PROGRAM {
            return Err(Error::NoProgram {
                packets: self.shared.stats.packets,
                crc_errors: self.shared.stats.crc_errors,
            });
        }
        Ok(())
    }

    fn route(&mut self, p: &Packet<'_>, events: &mut Vec<Event>) -> Result<()> {
        if p.pid == PAT_PID {
            let sections = take_sections(&mut self.pat, p, &mut self.shared.stats);
            for s in sections {
                self.on_pat(&s)?;
            }
        } else if let Some(program) = self.program.as_mut().filter(|g| g.pmt_pid == p.pid) {
            let sections = take_sections(&mut program.psi, p, &mut self.shared.stats);
            for s in sections {
                self.on_pmt(&s, events)?;
            }
        } else if self.streams.contains_key(&p.pid) {
            let others = self.streams_buffered(p.pid);
            if let Some(stream) = self.streams.get_mut(&p.pid) {
                on_stream_packet(
                    stream,
                    &mut self.shared,
                    p,
                    events,
                    self.max_message_size,
                    others,
                )?;
            }
        }
        Ok(())
    }

    /// PES bytes buffered by streams other than `pid`.
    fn streams_buffered(&self, pid: u16) -> u64 {
        self.streams
            .values()
            .filter(|s| s.pid != pid)
            .map(|s| s.pes.buffered() as u64)
            .sum()
    }

    fn damaged(&mut self, pid: u16, offset: u64, what: &str) {
        let stats = &mut self.shared.stats;
        stats.damaged_packets += 1;
        log_counted(
            LogLevel::Warn,
            stats.damaged_packets,
            &format!("packet at stream offset {offset} (PID {pid:#06x}) dropped: {what}"),
        );
        if pid == PAT_PID {
            self.pat = Psi::default();
        } else if let Some(program) = self.program.as_mut().filter(|g| g.pmt_pid == pid) {
            program.psi = Psi::default();
        } else if let Some(stream) = self.streams.get_mut(&pid) {
            if stream.drop_in_progress() {
                stats.pes_dropped += 1;
            }
            stream.cc = Continuity::default();
        }
    }

    fn on_pat(&mut self, section: &[u8]) -> Result<()> {
        if !self.crc_ok(PAT_PID, section) || section.first() != Some(&psi::TABLE_PAT) {
            return Ok(());
        }
        let table = |message: String| Error::Table {
            pid: PAT_PID,
            message: format!("PAT: {message}"),
        };
        let pat = Pat::parse(section).map_err(table)?;
        if !pat.current_next || pat.section_number != 0 {
            return Ok(());
        }
        let Some(entry) = pat.first_program() else {
            plugin::log(LogLevel::Warn, "PAT lists no program");
            return Ok(());
        };
        if entry.pid == PAT_PID || entry.pid == NULL_PID {
            return Err(table(format!(
                "program {} has its PMT on PID {:#06x}",
                entry.program_number, entry.pid
            )));
        }
        if self
            .program
            .as_ref()
            .is_some_and(|g| g.number == entry.program_number && g.pmt_pid == entry.pid)
        {
            return Ok(());
        }
        plugin::log(
            LogLevel::Info,
            &format!(
                "PAT version {}: program {}, PMT on PID {:#06x}",
                pat.version, entry.program_number, entry.pid
            ),
        );
        self.program = Some(Program {
            number: entry.program_number,
            pmt_pid: entry.pid,
            psi: Psi::default(),
            pmt: None,
        });
        Ok(())
    }

    fn on_pmt(&mut self, section: &[u8], events: &mut Vec<Event>) -> Result<()> {
        let Some(program) = &self.program else {
            return Ok(());
        };
        let pid = program.pmt_pid;
        if !self.crc_ok(pid, section) || section.first() != Some(&psi::TABLE_PMT) {
            return Ok(());
        }
        let pmt = Pmt::parse(section).map_err(|message| Error::Table {
            pid,
            message: format!("PMT: {message}"),
        })?;
        let Some(program) = self.program.as_mut() else {
            return Ok(());
        };
        if pmt.program_number != program.number
            || !pmt.current_next
            || program.pmt.as_deref() == Some(section)
        {
            return Ok(());
        }
        program.pmt = Some(section.to_vec());
        self.apply_pmt(pid, &pmt, events)
    }

    /// Takes the streams of a new PMT: streams that left or changed are
    /// finished and forgotten, new ones start (and declare their tracks
    /// when their configuration arrives).
    fn apply_pmt(&mut self, pmt_pid: u16, pmt: &Pmt, events: &mut Vec<Event>) -> Result<()> {
        let mut taken: Vec<&PmtStream> = Vec::new();
        for es in &pmt.streams {
            if !matches!(es.stream_type, STREAM_TYPE_H264 | STREAM_TYPE_AAC_ADTS) {
                if self.noted.len() < MAX_NOTED_STREAMS
                    && self.noted.insert((es.pid, es.stream_type))
                {
                    self.shared.stats.ignored_streams += 1;
                    plugin::log(
                        LogLevel::Info,
                        &format!(
                            "PID {:#06x}: stream_type {:#04x} is neither H.264 (0x1b) nor AAC in \
                             ADTS (0x0f); ignored",
                            es.pid, es.stream_type
                        ),
                    );
                }
                continue;
            }
            if matches!(es.pid, 0x0000..=0x000f | NULL_PID)
                || es.pid == pmt_pid
                || taken.iter().any(|t| t.pid == es.pid)
            {
                return Err(Error::Table {
                    pid: pmt_pid,
                    message: format!(
                        "PMT: elementary stream on PID {:#06x}, which is reserved, the PMT's or \
                         listed twice",
                        es.pid
                    ),
                });
            }
            taken.push(es);
        }
        if taken.is_empty() {
            let types: Vec<String> = pmt
                .streams
                .iter()
                .map(|s| format!("{:#04x} on PID {:#06x}", s.stream_type, s.pid))
                .collect();
            return Err(Error::Unsupported {
                pid: pmt_pid,
                message: format!(
                    "program {} carries no H.264 (0x1b) or AAC ADTS (0x0f) stream (it has: {})",
                    pmt.program_number,
                    if types.is_empty() {
                        "nothing".to_owned()
                    } else {
                        types.join(", ")
                    }
                ),
            });
        }
        if taken.len() > self.shared.max_tracks as usize {
            return Err(Error::TooManyTracks {
                wanted: taken.len(),
                limit: self.shared.max_tracks,
            });
        }
        let gone: Vec<u16> = self
            .streams
            .values()
            .filter(|s| !taken.iter().any(|es| s.is(es)))
            .map(|s| s.pid)
            .collect();
        for pid in gone {
            if let Some(mut stream) = self.streams.remove(&pid) {
                plugin::log(
                    LogLevel::Info,
                    &format!("PID {pid:#06x}: stream left or changed in the PMT"),
                );
                self.shared.finish_pes(&mut stream, events)?;
            }
        }
        for es in taken {
            self.streams
                .entry(es.pid)
                .or_insert_with(|| Stream::new(es));
        }
        self.has_program = true;
        plugin::log(
            LogLevel::Info,
            &format!(
                "program {} (PMT version {}): {}",
                pmt.program_number,
                pmt.version,
                self.streams
                    .values()
                    .map(|s| format!("{:#04x} on PID {:#06x}", s.stream_type, s.pid))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        Ok(())
    }

    /// At the end of the body: the last packet, then every PES in progress.
    fn finish(&mut self, events: &mut Vec<Event>) -> Result<()> {
        if let Some((packet, offset)) = self.framer.last_packet() {
            self.on_packet(&packet, offset, events)?;
        }
        for stream in self.streams.values_mut() {
            self.shared.finish_pes(stream, events)?;
        }
        Ok(())
    }

    /// Whether a section's CRC checks; counts and logs when not.
    fn crc_ok(&mut self, pid: u16, section: &[u8]) -> bool {
        if crc32(section) == 0 {
            return true;
        }
        let stats = &mut self.shared.stats;
        stats.crc_errors += 1;
        log_counted(
            LogLevel::Warn,
            stats.crc_errors,
            &format!("PID {pid:#06x}: section with a bad CRC dropped"),
        );
        false
    }
}

/// Complete sections from one packet of a PSI PID.
fn take_sections(psi: &mut Psi, p: &Packet<'_>, stats: &mut Stats) -> Vec<Vec<u8>> {
    let mut sections = Vec::new();
    match psi.cc.check(p) {
        Cc::Repeat => return sections,
        Cc::Gap => {
            stats.cc_gaps += 1;
            psi.sections.reset();
        }
        Cc::Next => {}
    }
    if p.has_payload {
        let dropped = psi.sections.push(p.unit_start, p.payload, &mut sections);
        stats.sections_dropped += u64::from(dropped.truncated) + u64::from(dropped.invalid);
    }
    sections
}

/// One packet of an elementary stream.
fn on_stream_packet(
    stream: &mut Stream,
    shared: &mut Shared,
    p: &Packet<'_>,
    events: &mut Vec<Event>,
    limit: u32,
    others_buffered: u64,
) -> Result<()> {
    match stream.cc.check(p) {
        Cc::Repeat => return Ok(()),
        Cc::Gap => {
            shared.stats.cc_gaps += 1;
            let dropped = stream.drop_in_progress();
            if dropped {
                shared.stats.pes_dropped += 1;
            }
            log_counted(
                LogLevel::Warn,
                shared.stats.cc_gaps,
                &format!(
                    "PID {:#06x}: continuity gap{}",
                    stream.pid,
                    if dropped {
                        "; the PES in progress is dropped"
                    } else {
                        ""
                    }
                ),
            );
        }
        Cc::Next => {}
    }
    if !p.has_payload {
        return Ok(());
    }
    if p.scrambling != 0 {
        return Err(Error::Unsupported {
            pid: stream.pid,
            message: "scrambled packets (transport_scrambling_control set)".into(),
        });
    }
    if p.unit_start {
        shared.finish_pes(stream, events)?;
    } else if !stream.pes.active() {
        return Ok(());
    }
    let size = others_buffered + stream.pes.buffered() as u64 + p.payload.len() as u64;
    if size > u64::from(limit) {
        return Err(Error::PesTooLarge {
            pid: stream.pid,
            size,
            limit,
        });
    }
    if let Assembled::Complete(pes) = stream.pes.push(p.unit_start, p.payload) {
        shared.on_pes(stream, &pes, events)?;
    }
    Ok(())
}

impl IngestAdapter for TsSession {
    fn info() -> AdapterInfo {
        AdapterInfo {
            name: "ts".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "MPEG-TS ingest (HTTP POST), H.264 + AAC in ADTS (example plugin)".into(),
            extension: "ts".into(),
        }
    }

    fn new(config: SessionConfig) -> Self {
        TsSession {
            max_message_size: config.max_message_size,
            framer: Framer::new(),
            failed: None,
            closed: false,
            pat: Psi::default(),
            program: None,
            has_program: false,
            streams: BTreeMap::new(),
            noted: BTreeSet::new(),
            shared: Shared {
                stream_name: config.stream,
                max_tracks: config.max_tracks,
                clock: Clock::new(),
                track_ids: BTreeSet::new(),
                stats: Stats::default(),
            },
        }
    }

    fn feed(&mut self, data: &[u8]) -> Result<Vec<Event>, SessionError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.closed {
            return Err(SessionError::Malformed(
                "bytes after the end of the stream".into(),
            ));
        }
        let mut events = Vec::new();
        match self.process(data, &mut events) {
            Ok(()) => Ok(events),
            Err(e) => {
                plugin::log(LogLevel::Error, &format!("session ends: {e}"));
                let e = SessionError::from(e);
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    fn close(&mut self) -> Vec<Event> {
        if self.failed.is_some() || self.closed {
            return Vec::new();
        }
        self.closed = true;
        let mut events = Vec::new();
        if let Err(e) = self.finish(&mut events) {
            plugin::log(LogLevel::Error, &format!("the stream's end: {e}"));
            self.failed = Some(SessionError::from(e));
            return events;
        }
        if self.framer.buffered() > 0 {
            plugin::log(
                LogLevel::Warn,
                &format!(
                    "stream ended inside a packet; {} bytes dropped",
                    self.framer.buffered()
                ),
            );
        }
        for stream in self.streams.values() {
            if let Codec::Aac { frames, .. } = &stream.codec
                && frames.carried() > 0
            {
                plugin::log(
                    LogLevel::Warn,
                    &format!(
                        "PID {:#06x}: stream ended inside an ADTS frame; {} bytes dropped",
                        stream.pid,
                        frames.carried()
                    ),
                );
            }
        }
        let s = self.stats();
        plugin::log(
            LogLevel::Info,
            &format!(
                "closed after {} bytes: {} packets, {} samples, {} continuity gaps, {} PES \
                 dropped, {} bytes skipped for sync",
                self.framer.position() + self.framer.buffered() as u64,
                s.packets,
                s.samples,
                s.cc_gaps,
                s.pes_dropped,
                s.skipped_bytes
            ),
        );
        events.push(Event::EndOfStream(format!(
            "end of the POST body after {} packets",
            s.packets
        )));
        events
    }
}
