//! Protocol control messages (message types 1, 2, 3, 5, 6; chunk stream 2,
//! message stream 0).

use sluice_sdk::plugin::SessionError;

use super::{be_u32, type_id};
use crate::chunk::Message;

/// A protocol control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolControl {
    /// The sender's new chunk size.
    SetChunkSize(u32),
    /// Discard the partial message of this chunk stream.
    Abort(u32),
    /// Bytes received so far (sequence number).
    Acknowledgement(u32),
    /// Send an Acknowledgement after this many bytes.
    WindowAckSize(u32),
    /// Limit the peer's output bandwidth (size, limit type 0 hard, 1 soft, 2 dynamic).
    SetPeerBandwidth(u32, u8),
}

impl ProtocolControl {
    /// Parses a protocol control message; `None` for other message types.
    pub fn parse(type_id: u8, payload: &[u8]) -> Result<Option<Self>, SessionError> {
        Ok(Some(match type_id {
            type_id::SET_CHUNK_SIZE => {
                ProtocolControl::SetChunkSize(be_u32(payload, 0, "Set Chunk Size")?)
            }
            type_id::ABORT => ProtocolControl::Abort(be_u32(payload, 0, "Abort")?),
            type_id::ACKNOWLEDGEMENT => {
                ProtocolControl::Acknowledgement(be_u32(payload, 0, "Acknowledgement")?)
            }
            type_id::WINDOW_ACK_SIZE => {
                ProtocolControl::WindowAckSize(be_u32(payload, 0, "Window Acknowledgement Size")?)
            }
            type_id::SET_PEER_BANDWIDTH => {
                let size = be_u32(payload, 0, "Set Peer Bandwidth")?;
                let limit = *payload.get(4).ok_or_else(|| {
                    SessionError::Malformed("Set Peer Bandwidth message truncated".into())
                })?;
                ProtocolControl::SetPeerBandwidth(size, limit)
            }
            _ => return Ok(None),
        }))
    }

    /// The message, on chunk stream 2 and message stream 0.
    pub fn to_message(self) -> Message {
        let (type_id, payload) = match self {
            ProtocolControl::SetChunkSize(v) => (
                type_id::SET_CHUNK_SIZE,
                (v & 0x7fff_ffff).to_be_bytes().to_vec(),
            ),
            ProtocolControl::Abort(v) => (type_id::ABORT, v.to_be_bytes().to_vec()),
            ProtocolControl::Acknowledgement(v) => {
                (type_id::ACKNOWLEDGEMENT, v.to_be_bytes().to_vec())
            }
            ProtocolControl::WindowAckSize(v) => {
                (type_id::WINDOW_ACK_SIZE, v.to_be_bytes().to_vec())
            }
            ProtocolControl::SetPeerBandwidth(v, limit) => {
                let mut p = v.to_be_bytes().to_vec();
                p.push(limit);
                (type_id::SET_PEER_BANDWIDTH, p)
            }
        };
        Message {
            csid: super::csid::CONTROL,
            timestamp: 0,
            type_id,
            stream_id: 0,
            payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for c in [
            ProtocolControl::SetChunkSize(4096),
            ProtocolControl::Abort(6),
            ProtocolControl::Acknowledgement(123_456),
            ProtocolControl::WindowAckSize(2_500_000),
            ProtocolControl::SetPeerBandwidth(2_500_000, 2),
        ] {
            let m = c.to_message();
            assert_eq!(ProtocolControl::parse(m.type_id, &m.payload), Ok(Some(c)));
            assert!(ProtocolControl::parse(m.type_id, &m.payload[..3]).is_err());
        }
        assert_eq!(ProtocolControl::parse(type_id::AUDIO, &[]), Ok(None));
    }
}
