//! `rtmp_chunk`: the RTMP session (handshake, chunk stream, commands,
//! media), every authorisation answered with `Ok`.
//!
//! Input: `[mode][split control][data]`. `mode & 3` chooses what comes
//! before the data: nothing, a client handshake, or a handshake with
//! `connect` and `publish` (so that the data reaches the chunk and media
//! layers at once); `(mode >> 2) & 3` the maximum message size. Whole and
//! split runs must give the same events once the server's output is
//! compared as messages, Acknowledgements left out: an Acknowledgement
//! reports the bytes received so far when a read brings the count past the
//! window, so when it is sent depends on how the input is read.

use sluice_plugin_rtmp::RtmpSession;
use sluice_plugin_rtmp::chunk::{ChunkDecoder, Message};
use sluice_plugin_rtmp::fuzzing::{Client, drive};
use sluice_plugin_rtmp::handshake::HANDSHAKE_SIZE;
use sluice_plugin_rtmp::message::{ProtocolControl, type_id};
use sluice_sdk::plugin::{Event, IngestAdapter, SessionConfig, SessionError};

use crate::events::{self, Promises};
use crate::{Input, split};

/// What precedes the fuzzer's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prelude {
    /// Nothing: the data starts with C0.
    None,
    /// C0, C1 and C2.
    Handshake,
    /// The handshake, `connect` to `live/ch1/key` and `publish` of `720p`
    /// on message stream 1.
    Publishing,
}

impl Prelude {
    /// The prelude a mode byte selects.
    pub fn from_mode(mode: u8) -> Self {
        match mode & 3 {
            0 => Prelude::None,
            1 => Prelude::Handshake,
            _ => Prelude::Publishing,
        }
    }

    /// The mode byte bits that select this prelude.
    pub fn mode(self) -> u8 {
        match self {
            Prelude::None => 0,
            Prelude::Handshake => 1,
            Prelude::Publishing => 2,
        }
    }

    /// Its bytes.
    pub fn bytes(self) -> Vec<u8> {
        let mut c = Client::new();
        match self {
            Prelude::None => {}
            Prelude::Handshake => {
                c.handshake();
            }
            Prelude::Publishing => {
                c.handshake().connect("live/ch1/key").publish("720p");
            }
        }
        c.bytes
    }
}

/// Maximum message sizes a mode byte chooses from.
const MAX_MESSAGE_SIZES: [u32; 4] = [1 << 20, 4096, 300, 1 << 16];

/// Input held while an authorisation is outstanding is bounded by
/// `clamp(max_message_size, 64 KiB, 4 MiB)`; whole and split runs hold
/// different amounts, so beyond this they may legitimately differ.
const COMPARABLE_LEN: usize = 64 << 10;

/// The session's configuration for a mode byte.
pub fn config(mode: u8) -> SessionConfig {
    SessionConfig {
        remote_addr: "fuzz".into(),
        max_message_size: MAX_MESSAGE_SIZES[usize::from((mode >> 2) & 3)],
        max_tracks: 4,
        stream: String::new(),
    }
}

/// An event with the server's output decoded into messages.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// Any event but [`Event::Send`].
    Event(Event),
    /// S0 + S1 + S2.
    HandshakeReply(Vec<u8>),
    /// A message the server sent (Acknowledgements are left out).
    Sent(Message),
}

/// Turns the server's output back into messages, as a client would.
struct Peer {
    handshake: Vec<u8>,
    decoder: ChunkDecoder,
}

impl Peer {
    fn new() -> Self {
        Peer {
            handshake: Vec::new(),
            decoder: ChunkDecoder::new(u32::MAX),
        }
    }

    fn receive(&mut self, mut bytes: &[u8], out: &mut Vec<Seen>) {
        let reply_len = 1 + 2 * HANDSHAKE_SIZE;
        if self.handshake.len() < reply_len {
            let n = (reply_len - self.handshake.len()).min(bytes.len());
            self.handshake.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.handshake.len() == reply_len {
                out.push(Seen::HandshakeReply(self.handshake.clone()));
            }
        }
        while !bytes.is_empty() {
            let (n, m) = self
                .decoder
                .decode(bytes)
                .expect("the server's chunk stream decodes");
            bytes = &bytes[n..];
            let Some(m) = m else { continue };
            if m.type_id == type_id::SET_CHUNK_SIZE {
                let Ok(Some(ProtocolControl::SetChunkSize(size))) =
                    ProtocolControl::parse(m.type_id, &m.payload)
                else {
                    panic!("the server sent a bad Set Chunk Size: {m:?}");
                };
                self.decoder
                    .set_chunk_size(size)
                    .expect("the server's chunk size is valid");
            }
            if m.type_id != type_id::ACKNOWLEDGEMENT {
                out.push(Seen::Sent(m));
            }
        }
    }
}

/// What one run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The events (server output decoded), or the error that ended the
    /// session.
    pub result: Result<Vec<Seen>, SessionError>,
    /// The events of `close`.
    pub close: Vec<Event>,
}

/// Feeds `bytes` to a fresh session in pieces ending at `cuts`.
pub fn run(config: &SessionConfig, bytes: &[u8], cuts: &[usize]) -> Outcome {
    let mut session = RtmpSession::new(config.clone());
    let result = drive(&mut session, bytes, cuts).map(|events| {
        events::check(
            &events,
            Promises {
                avc_framing: true,
                forward_dts: false,
            },
        );
        let mut peer = Peer::new();
        let mut seen = Vec::new();
        for e in events {
            match e {
                Event::Send(b) => peer.receive(&b, &mut seen),
                other => seen.push(Seen::Event(other)),
            }
        }
        seen
    });
    let close = session.close();
    Outcome { result, close }
}

/// The `rtmp_chunk` target.
pub fn fuzz(input: &[u8]) {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let Some(Input { data, cuts }) = split(rest) else {
        return;
    };
    let mut bytes = Prelude::from_mode(mode).bytes();
    let start = bytes.len();
    bytes.extend_from_slice(data);
    let config = config(mode);
    let whole = run(&config, &bytes, &[]);
    if bytes.len() > COMPARABLE_LEN {
        return;
    }
    let cuts: Vec<usize> = std::iter::once(start)
        .chain(cuts.iter().map(|c| c + start))
        .collect();
    let pieces = run(&config, &bytes, &cuts);
    assert_eq!(whole, pieces, "whole and split runs differ (cuts {cuts:?})");
}
