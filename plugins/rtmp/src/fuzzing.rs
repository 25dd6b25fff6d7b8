//! Entry points for fuzz targets and a scripted RTMP client for tests.
//! Not part of the API.

use sluice_sdk::amf0::{self, Value};
use sluice_sdk::plugin::{Event, IngestAdapter, SessionConfig, SessionError};

use crate::RtmpSession;
use crate::chunk::{ChunkDecoder, ChunkEncoder, Message};
use crate::handshake::{HANDSHAKE_SIZE, RTMP_VERSION};
use crate::message::{Command, ProtocolControl, type_id};

/// Builds the bytes an encoder would send (client side), with the crate's
/// own chunk encoder.
#[derive(Debug, Default)]
pub struct Client {
    encoder: ChunkEncoder,
    /// Bytes so far.
    pub bytes: Vec<u8>,
}

impl Client {
    /// A client with nothing sent.
    pub fn new() -> Self {
        Self::default()
    }

    /// C0 + C1 (with Flash Player version bytes, as ffmpeg sends) and C2.
    pub fn handshake(&mut self) -> &mut Self {
        self.bytes.push(RTMP_VERSION);
        let mut c1 = vec![0, 0, 0, 0, 9, 0, 124, 2];
        c1.extend((0..HANDSHAKE_SIZE - 8).map(|i| (i * 7) as u8));
        self.bytes.extend_from_slice(&c1);
        // C2 would echo S1; the server does not check it.
        self.bytes.extend_from_slice(&[0x5a; HANDSHAKE_SIZE]);
        self
    }

    /// Any message.
    pub fn message(&mut self, m: &Message) -> &mut Self {
        self.encoder.write(&mut self.bytes, m);
        self
    }

    /// Set Chunk Size, then chunks at that size.
    pub fn set_chunk_size(&mut self, size: u32) -> &mut Self {
        let m = ProtocolControl::SetChunkSize(size).to_message();
        self.message(&m);
        self.encoder.set_chunk_size(size);
        self
    }

    /// A command on chunk stream 3 (message stream 0) or 8 (others).
    pub fn command(
        &mut self,
        stream_id: u32,
        name: &str,
        txn: f64,
        object: Value,
        args: Vec<Value>,
    ) -> &mut Self {
        let csid = if stream_id == 0 { 3 } else { 8 };
        let m = Command::new(name, txn, object, args).to_message(csid, stream_id);
        self.message(&m)
    }

    /// `connect` to `app`, as ffmpeg sends it.
    pub fn connect(&mut self, app: &str) -> &mut Self {
        let object = Value::object([
            ("app", Value::string(app)),
            ("type", Value::string("nonprivate")),
            ("flashVer", Value::string("FMLE/3.0 (compatible; Lavf)")),
            ("tcUrl", Value::string(format!("rtmp://127.0.0.1/{app}"))),
        ]);
        self.command(0, "connect", 1.0, object, Vec::new())
    }

    /// `releaseStream`, `FCPublish`, `createStream` and `publish` on stream 1.
    pub fn publish(&mut self, name: &str) -> &mut Self {
        self.command(
            0,
            "releaseStream",
            2.0,
            Value::Null,
            vec![Value::string(name)],
        )
        .command(0, "FCPublish", 3.0, Value::Null, vec![Value::string(name)])
        .command(0, "createStream", 4.0, Value::Null, Vec::new())
        .command(
            1,
            "publish",
            5.0,
            Value::Null,
            vec![Value::string(name), Value::string("live")],
        )
    }

    /// `@setDataFrame onMetaData` with the given properties.
    pub fn metadata(&mut self, props: Vec<(String, Value)>) -> &mut Self {
        let mut payload = Vec::new();
        amf0::encode(&Value::string("@setDataFrame"), &mut payload);
        amf0::encode(&Value::string("onMetaData"), &mut payload);
        amf0::encode(&Value::EcmaArray(props), &mut payload);
        self.message(&Message {
            csid: 4,
            timestamp: 0,
            type_id: type_id::DATA_AMF0,
            stream_id: 1,
            payload,
        })
    }

    /// A video message (an FLV video tag body) on chunk stream 6.
    pub fn video(&mut self, timestamp: u32, body: Vec<u8>) -> &mut Self {
        self.message(&Message {
            csid: 6,
            timestamp,
            type_id: type_id::VIDEO,
            stream_id: 1,
            payload: body,
        })
    }

    /// An audio message (an FLV audio tag body) on chunk stream 4.
    pub fn audio(&mut self, timestamp: u32, body: Vec<u8>) -> &mut Self {
        self.message(&Message {
            csid: 4,
            timestamp,
            type_id: type_id::AUDIO,
            stream_id: 1,
            payload: body,
        })
    }
}

/// Feeds `input` to `session` in pieces ending at `splits` (and the end),
/// answering every authorisation request with `Ok`. Returns all events,
/// authorisation replies included, in order.
pub fn drive(
    session: &mut RtmpSession,
    input: &[u8],
    splits: &[usize],
) -> Result<Vec<Event>, SessionError> {
    let mut events = Vec::new();
    let mut at = 0;
    for &end in splits.iter().chain(std::iter::once(&input.len())) {
        let end = end.clamp(at, input.len());
        let mut produced = session.feed(&input[at..end])?;
        at = end;
        while let Some(id) = produced.iter().find_map(|e| match e {
            Event::Authorize(a) => Some(a.id),
            _ => None,
        }) {
            let more = session.authorize(id, Ok(()))?;
            // Keep order: events up to and including the request, then the
            // answer's events.
            let pos = produced
                .iter()
                .position(|e| matches!(e, Event::Authorize(a) if a.id == id))
                .expect("found above");
            events.extend(produced.drain(..=pos));
            produced = more.into_iter().chain(produced).collect();
        }
        events.append(&mut produced);
    }
    Ok(events)
}

fn config() -> SessionConfig {
    SessionConfig {
        max_message_size: 1 << 20,
        ..SessionConfig::default()
    }
}

/// Feeds arbitrary bytes to a fresh session, cut in pieces chosen by the
/// first byte.
pub fn session(data: &[u8]) {
    let Some((&k, data)) = data.split_first() else {
        return;
    };
    let step = usize::from(k).max(1);
    let splits: Vec<usize> = (step..data.len()).step_by(step).collect();
    let mut s = RtmpSession::new(config());
    let _ = drive(&mut s, data, &splits);
    let _ = s.close();
}

/// Feeds arbitrary bytes to a session that has completed the handshake,
/// `connect` and `publish`, so that the bytes reach the chunk and media
/// layers.
pub fn session_publishing(data: &[u8]) {
    let mut c = Client::new();
    c.handshake().connect("live/ch1/key").publish("720p");
    let mut s = RtmpSession::new(config());
    if drive(&mut s, &c.bytes, &[]).is_ok() {
        let _ = drive(&mut s, data, &[]);
    }
    let _ = s.close();
}

/// Feeds arbitrary bytes to a chunk decoder.
pub fn chunk_decoder(data: &[u8]) {
    let mut d = ChunkDecoder::new(1 << 16);
    let mut rest = data;
    while !rest.is_empty() {
        match d.decode(rest) {
            Ok((n, m)) => {
                if let Some(m) = m
                    && m.type_id == type_id::SET_CHUNK_SIZE
                    && let Ok(Some(ProtocolControl::SetChunkSize(n))) =
                        ProtocolControl::parse(m.type_id, &m.payload)
                {
                    let _ = d.set_chunk_size(n);
                }
                if n == 0 {
                    break;
                }
                rest = &rest[n..];
            }
            Err(_) => break,
        }
    }
}

/// Feeds arbitrary bytes to the SDK parsers the adapter uses.
pub fn sdk_parsers(data: &[u8]) {
    use sluice_sdk::{aac, flv, h264};
    let _ = amf0::decode_all(data);
    let _ = flv::tags(data).count();
    let _ = flv::read_file(data).map(|(_, t)| t.count());
    let _ = h264::AvcDecoderConfig::parse(data);
    let _ = h264::Sps::parse(data);
    let _ = aac::AudioSpecificConfig::parse(data);
    let mut d = flv::MediaDemuxer::new("s", 1, 2);
    let half = data.len() / 2;
    let _ = d.push_video(0, &data[..half]);
    let _ = d.push_audio(0, &data[half..]);
}
