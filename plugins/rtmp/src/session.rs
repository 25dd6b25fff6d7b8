//! The session state machine: handshake, chunk stream, NetConnection and
//! NetStream commands, media.
//!
//! ```text
//!   Handshake ─▶ connect ─(Authorize: Connect)─▶ Connected ─▶ createStream
//!     ─▶ publish ─(Authorize: Publish)─▶ Publishing ─▶ audio / video / @setDataFrame
//!     ─▶ FCUnpublish / deleteStream / closeStream ─▶ EndOfStream ─▶ Connected
//! ```
//!
//! While an [`Event::Authorize`] is outstanding the session consumes no
//! input: later bytes are held (up to a bound) and processed after
//! [`IngestAdapter::authorize`] answers.

use sluice_sdk::amf0::Value;
use sluice_sdk::flv::{self, MediaDemuxer, TagType};
use sluice_sdk::plugin::{
    self, AdapterInfo, AuthRequest, AuthStage, Event, IngestAdapter, LogLevel, SessionConfig,
    SessionError,
};
use sluice_sdk::time::RtmpClock;

use crate::chunk::{ChunkDecoder, ChunkEncoder, Message};
use crate::handshake::ServerHandshake;
use crate::message::{Command, ProtocolControl, UserControl, csid, type_id};

type Result<T> = std::result::Result<T, SessionError>;

/// Our chunk size, announced right after `connect` is accepted.
pub const OUT_CHUNK_SIZE: u32 = 4096;

/// Window Acknowledgement Size and Set Peer Bandwidth we announce.
pub const WINDOW_ACK_SIZE: u32 = 2_500_000;

/// Track id of the video track of a publish.
pub const VIDEO_TRACK: u32 = 1;
/// Track id of the audio track of a publish.
pub const AUDIO_TRACK: u32 = 2;

/// Bounds of the input held while an authorisation is outstanding.
const MIN_HELD_INPUT: usize = 64 << 10;
const MAX_HELD_INPUT: usize = 4 << 20;

#[derive(Debug, Clone)]
enum Pending {
    Connect {
        id: u32,
        transaction_id: f64,
    },
    Publish {
        id: u32,
        stream_id: u32,
        name: String,
    },
}

impl Pending {
    fn id(&self) -> u32 {
        match self {
            Pending::Connect { id, .. } | Pending::Publish { id, .. } => *id,
        }
    }
}

#[derive(Debug)]
struct Publish {
    stream_id: u32,
    demuxer: MediaDemuxer,
    clock: RtmpClock,
}

/// One RTMP connection from an encoder, server side, sans-IO.
///
/// Feed it the bytes read from the socket; write back the bytes of every
/// [`Event::Send`]; answer every [`Event::Authorize`] with
/// [`IngestAdapter::authorize`].
#[derive(Debug)]
pub struct RtmpSession {
    config: SessionConfig,
    handshake: ServerHandshake,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    /// An authorisation the host has not answered yet.
    pending: Option<Pending>,
    /// Input received while `pending` was outstanding.
    held: Vec<u8>,
    next_auth_id: u32,
    /// Bytes received, and at the last Acknowledgement we sent.
    received: u64,
    acknowledged: u64,
    /// The peer's Window Acknowledgement Size.
    peer_window: Option<u32>,
    /// `connect` accepted.
    connected: bool,
    /// A refusal was sent: input is ignored until the host closes.
    refused: bool,
    app: String,
    tc_url: String,
    next_stream_id: u32,
    publish: Option<Publish>,
    /// A publish ended on this connection (late media is ignored, not an error).
    unpublished: bool,
    /// `onMetaData` that arrived before the publish was authorised.
    early_metadata: Option<Value>,
    /// Track ids declared so far (bounded by `max_tracks`).
    declared: Vec<u32>,
}

impl RtmpSession {
    fn held_limit(&self) -> usize {
        (self.config.max_message_size as usize).clamp(MIN_HELD_INPUT, MAX_HELD_INPUT)
    }

    fn send(&mut self, events: &mut Vec<Event>, messages: &[Message]) {
        let mut out = Vec::new();
        for m in messages {
            self.encoder.write(&mut out, m);
            if m.type_id == type_id::SET_CHUNK_SIZE
                && let Ok(Some(ProtocolControl::SetChunkSize(n))) =
                    ProtocolControl::parse(m.type_id, &m.payload)
            {
                self.encoder.set_chunk_size(n);
            }
        }
        events.push(Event::Send(out));
    }

    /// Processes `input` until it is used up or an authorisation is pending
    /// (the rest is then held).
    fn process(&mut self, mut input: &[u8], events: &mut Vec<Event>) -> Result<()> {
        while !input.is_empty() {
            if self.refused {
                return Ok(());
            }
            if self.pending.is_some() {
                if self.held.len() + input.len() > self.held_limit() {
                    return Err(SessionError::Limit(format!(
                        "more than {} bytes received while waiting for authorisation",
                        self.held_limit()
                    )));
                }
                self.held.extend_from_slice(input);
                return Ok(());
            }
            let (n, progressed) = if !self.handshake.is_done() {
                let (n, reply) = self.handshake.feed(input)?;
                let replied = reply.is_some();
                if let Some(reply) = reply {
                    events.push(Event::Send(reply));
                }
                (n, replied)
            } else {
                let (n, message) = self.decoder.decode(input)?;
                let decoded = message.is_some();
                if let Some(m) = message {
                    self.on_message(m, events)?;
                }
                (n, decoded)
            };
            input = &input[n..];
            if n == 0 && !progressed {
                break;
            }
        }
        Ok(())
    }

    fn maybe_acknowledge(&mut self, events: &mut Vec<Event>) {
        if let Some(window) = self.peer_window
            && self.received - self.acknowledged >= u64::from(window)
        {
            self.acknowledged = self.received;
            // The sequence number wraps at 32 bits.
            let seq = self.received as u32;
            self.send(
                events,
                &[ProtocolControl::Acknowledgement(seq).to_message()],
            );
        }
    }

    fn on_message(&mut self, m: Message, events: &mut Vec<Event>) -> Result<()> {
        if let Some(control) = ProtocolControl::parse(m.type_id, &m.payload)? {
            match control {
                ProtocolControl::SetChunkSize(n) => self.decoder.set_chunk_size(n)?,
                ProtocolControl::Abort(c) => self.decoder.abort(c),
                ProtocolControl::WindowAckSize(w) => {
                    self.peer_window = (w > 0).then_some(w);
                }
                ProtocolControl::Acknowledgement(_) | ProtocolControl::SetPeerBandwidth(..) => {}
            }
            return Ok(());
        }
        match m.type_id {
            type_id::USER_CONTROL => {
                if let UserControl::PingRequest(t) = UserControl::parse(&m.payload)? {
                    self.send(events, &[UserControl::PingResponse(t).to_message()]);
                }
                Ok(())
            }
            type_id::COMMAND_AMF0 | type_id::COMMAND_AMF3 => {
                let c = Command::parse(m.type_id, &m.payload)?;
                self.on_command(c, &m, events)
            }
            type_id::DATA_AMF0 | type_id::DATA_AMF3 => {
                self.on_data(&m);
                Ok(())
            }
            type_id::AUDIO | type_id::VIDEO => {
                self.on_media(m.type_id, m.stream_id, m.timestamp, &m.payload, events)
            }
            type_id::AGGREGATE => self.on_aggregate(&m, events),
            _ => Ok(()),
        }
    }

    fn on_command(&mut self, c: Command, m: &Message, events: &mut Vec<Event>) -> Result<()> {
        let txn = c.transaction_id;
        match c.name.as_str() {
            "connect" => {
                if self.connected {
                    return Err(SessionError::Malformed("second connect".into()));
                }
                let text = |k: &str| {
                    c.object
                        .get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                self.app = text("app");
                self.tc_url = text("tcUrl");
                let id = self.next_auth_id();
                self.pending = Some(Pending::Connect {
                    id,
                    transaction_id: txn,
                });
                events.push(Event::Authorize(AuthRequest {
                    id,
                    stage: AuthStage::Connect,
                    app: self.app.clone(),
                    stream: String::new(),
                    tc_url: self.tc_url.clone(),
                }));
            }
            "releaseStream" => {
                self.require_connected(&c.name)?;
                let reply = Command::new("_result", txn, Value::Null, vec![Value::Undefined]);
                self.send(events, &[reply.to_message(csid::COMMAND, 0)]);
            }
            "FCPublish" => {
                self.require_connected(&c.name)?;
                let name = c.arg_str(0).unwrap_or_default().to_owned();
                let reply = Command::new(
                    "onFCPublish",
                    0.0,
                    Value::Null,
                    vec![Value::object([
                        ("code", Value::string("NetStream.Publish.Start")),
                        ("description", Value::string(name)),
                    ])],
                );
                self.send(events, &[reply.to_message(csid::COMMAND, 0)]);
            }
            "createStream" => {
                self.require_connected(&c.name)?;
                if self.next_stream_id > 64 {
                    return Err(SessionError::Limit(
                        "more than 64 createStream calls".into(),
                    ));
                }
                let sid = self.next_stream_id;
                self.next_stream_id += 1;
                let reply =
                    Command::new("_result", txn, Value::Null, vec![Value::Number(sid.into())]);
                self.send(events, &[reply.to_message(csid::COMMAND, 0)]);
            }
            "publish" => {
                self.require_connected(&c.name)?;
                if self.publish.is_some() {
                    return Err(SessionError::Unsupported(
                        "a second publish on one connection while the first is live".into(),
                    ));
                }
                let raw = c.arg_str(0).unwrap_or_default();
                let name = raw.split('?').next().unwrap_or_default().to_owned();
                let id = self.next_auth_id();
                self.pending = Some(Pending::Publish {
                    id,
                    stream_id: m.stream_id,
                    name: name.clone(),
                });
                events.push(Event::Authorize(AuthRequest {
                    id,
                    stage: AuthStage::Publish,
                    app: self.app.clone(),
                    stream: name,
                    tc_url: self.tc_url.clone(),
                }));
            }
            "FCUnpublish" | "deleteStream" | "closeStream" => {
                if self.publish.take().is_some() {
                    self.unpublished = true;
                    events.push(Event::EndOfStream(format!("{} from the encoder", c.name)));
                }
            }
            other => {
                // _checkbw, getStreamLength, _result of our own calls, ...
                plugin::log(LogLevel::Debug, &format!("ignoring RTMP command {other}"));
            }
        }
        Ok(())
    }

    fn require_connected(&self, what: &str) -> Result<()> {
        if self.connected {
            Ok(())
        } else {
            Err(SessionError::Malformed(format!("{what} before connect")))
        }
    }

    fn next_auth_id(&mut self) -> u32 {
        self.next_auth_id = self.next_auth_id.wrapping_add(1);
        self.next_auth_id
    }

    fn on_data(&mut self, m: &Message) {
        let payload = if m.type_id == type_id::DATA_AMF3 {
            m.payload.strip_prefix(&[0]).unwrap_or(&m.payload)
        } else {
            &m.payload
        };
        let Ok(values) = flv::parse_script_data(payload) else {
            plugin::log(LogLevel::Warn, "undecodable RTMP data message ignored");
            return;
        };
        if let Some(meta) = flv::find_metadata(&values) {
            match &mut self.publish {
                Some(p) => p.demuxer.set_metadata(meta),
                None => self.early_metadata = Some(meta.clone()),
            }
        }
    }

    fn on_media(
        &mut self,
        type_id: u8,
        stream_id: u32,
        timestamp: u32,
        payload: &[u8],
        events: &mut Vec<Event>,
    ) -> Result<()> {
        let Some(p) = &mut self.publish else {
            if self.unpublished {
                return Ok(());
            }
            return Err(SessionError::Malformed(
                "media message before publish was authorised".into(),
            ));
        };
        if stream_id != p.stream_id {
            return Ok(());
        }
        let ms = p.clock.unwrap(timestamp);
        let produced = if type_id == type_id::VIDEO {
            p.demuxer.push_video(ms, payload)?
        } else {
            p.demuxer.push_audio(ms, payload)?
        };
        for e in &produced {
            if let Event::Track(t) = e
                && !self.declared.contains(&t.id)
            {
                if self.declared.len() >= self.config.max_tracks as usize {
                    return Err(SessionError::Limit(format!(
                        "more than {} tracks",
                        self.config.max_tracks
                    )));
                }
                self.declared.push(t.id);
            }
        }
        events.extend(produced);
        Ok(())
    }

    /// An aggregate message: FLV tags back to back; their timestamps are
    /// shifted so that the first equals the message's.
    fn on_aggregate(&mut self, m: &Message, events: &mut Vec<Event>) -> Result<()> {
        let mut base: Option<u32> = None;
        for tag in flv::tags(&m.payload) {
            let tag = tag?;
            let first = *base.get_or_insert(tag.header.timestamp);
            let ts = m
                .timestamp
                .wrapping_add(tag.header.timestamp.wrapping_sub(first));
            match tag.header.tag_type {
                TagType::Audio => {
                    self.on_media(type_id::AUDIO, m.stream_id, ts, tag.body, events)?;
                }
                TagType::Video => {
                    self.on_media(type_id::VIDEO, m.stream_id, ts, tag.body, events)?;
                }
                TagType::Script => {
                    let sub = Message {
                        csid: m.csid,
                        timestamp: ts,
                        type_id: type_id::DATA_AMF0,
                        stream_id: m.stream_id,
                        payload: tag.body.to_vec(),
                    };
                    self.on_data(&sub);
                }
                TagType::Other(_) => {}
            }
        }
        Ok(())
    }

    fn connect_reply(
        &mut self,
        transaction_id: f64,
        verdict: std::result::Result<(), String>,
        events: &mut Vec<Event>,
    ) {
        match verdict {
            Ok(()) => {
                self.connected = true;
                let result = Command::new(
                    "_result",
                    transaction_id,
                    Value::object([
                        ("fmsVer", Value::string("FMS/3,5,7,7009")),
                        ("capabilities", Value::Number(31.0)),
                        ("mode", Value::Number(1.0)),
                    ]),
                    vec![Value::object([
                        ("level", Value::string("status")),
                        ("code", Value::string("NetConnection.Connect.Success")),
                        ("description", Value::string("Connection succeeded.")),
                        ("objectEncoding", Value::Number(0.0)),
                    ])],
                );
                self.send(
                    events,
                    &[
                        ProtocolControl::WindowAckSize(WINDOW_ACK_SIZE).to_message(),
                        ProtocolControl::SetPeerBandwidth(WINDOW_ACK_SIZE, 2).to_message(),
                        ProtocolControl::SetChunkSize(OUT_CHUNK_SIZE).to_message(),
                        result.to_message(csid::COMMAND, 0),
                    ],
                );
            }
            Err(reason) => {
                self.refused = true;
                let error = Command::new(
                    "_error",
                    transaction_id,
                    Value::Null,
                    vec![Value::object([
                        ("level", Value::string("error")),
                        ("code", Value::string("NetConnection.Connect.Rejected")),
                        ("description", Value::string(reason)),
                    ])],
                );
                self.send(events, &[error.to_message(csid::COMMAND, 0)]);
            }
        }
    }

    fn publish_reply(
        &mut self,
        stream_id: u32,
        name: String,
        verdict: std::result::Result<(), String>,
        events: &mut Vec<Event>,
    ) {
        let status = |level: &str, code: &str, description: String| {
            Command::new(
                "onStatus",
                0.0,
                Value::Null,
                vec![Value::object([
                    ("level", Value::string(level)),
                    ("code", Value::string(code)),
                    ("description", Value::string(description)),
                    ("details", Value::string(name.clone())),
                ])],
            )
            .to_message(csid::STREAM, stream_id)
        };
        match verdict {
            Ok(()) => {
                let mut demuxer = MediaDemuxer::new(rendition(&name), VIDEO_TRACK, AUDIO_TRACK);
                if let Some(meta) = self.early_metadata.take() {
                    demuxer.set_metadata(&meta);
                }
                self.publish = Some(Publish {
                    stream_id,
                    demuxer,
                    clock: RtmpClock::new(),
                });
                self.unpublished = false;
                let start = status(
                    "status",
                    "NetStream.Publish.Start",
                    format!("{name} is now published."),
                );
                self.send(
                    events,
                    &[UserControl::StreamBegin(stream_id).to_message(), start],
                );
            }
            Err(reason) => {
                let bad = status("error", "NetStream.Publish.BadName", reason);
                self.send(events, &[bad]);
            }
        }
    }
}

/// The rendition name: the last path segment of the publishing name
/// (ffmpeg sends `ch1/KEY/720p` for `rtmp://host/live/ch1/KEY/720p`; the
/// key must not end up in track metadata).
fn rendition(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

impl IngestAdapter for RtmpSession {
    fn info() -> AdapterInfo {
        AdapterInfo {
            name: "rtmp".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "RTMP ingest (server side), FLV H.264 + AAC".into(),
            extension: "rtmp".into(),
        }
    }

    fn new(config: SessionConfig) -> Self {
        RtmpSession {
            decoder: ChunkDecoder::new(config.max_message_size),
            config,
            handshake: ServerHandshake::new(),
            encoder: ChunkEncoder::new(),
            pending: None,
            held: Vec::new(),
            next_auth_id: 0,
            received: 0,
            acknowledged: 0,
            peer_window: None,
            connected: false,
            refused: false,
            app: String::new(),
            tc_url: String::new(),
            next_stream_id: 1,
            publish: None,
            unpublished: false,
            early_metadata: None,
            declared: Vec::new(),
        }
    }

    fn feed(&mut self, data: &[u8]) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        self.received += data.len() as u64;
        self.maybe_acknowledge(&mut events);
        self.process(data, &mut events)?;
        Ok(events)
    }

    fn authorize(
        &mut self,
        id: u32,
        verdict: std::result::Result<(), String>,
    ) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        let Some(pending) = self.pending.take_if(|p| p.id() == id) else {
            plugin::log(
                LogLevel::Warn,
                &format!("authorize: no outstanding request {id}"),
            );
            return Ok(events);
        };
        match pending {
            Pending::Connect { transaction_id, .. } => {
                self.connect_reply(transaction_id, verdict, &mut events);
            }
            Pending::Publish {
                stream_id, name, ..
            } => self.publish_reply(stream_id, name, verdict, &mut events),
        }
        let held = std::mem::take(&mut self.held);
        self.process(&held, &mut events)?;
        Ok(events)
    }

    fn close(&mut self) -> Vec<Event> {
        if self.publish.take().is_some() {
            vec![Event::EndOfStream("connection closed".into())]
        } else {
            Vec::new()
        }
    }
}
