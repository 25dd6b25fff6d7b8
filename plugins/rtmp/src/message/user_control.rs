//! User control messages (message type 4): stream events and pings.

use sluice_sdk::plugin::SessionError;

use super::{be_u32, type_id};
use crate::chunk::Message;

/// A user control event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserControl {
    /// A stream became functional (stream id).
    StreamBegin(u32),
    /// Playback of a stream ended (stream id).
    StreamEof(u32),
    /// No more data on a stream for now (stream id).
    StreamDry(u32),
    /// The client's buffer length for a stream (stream id, milliseconds).
    SetBufferLength(u32, u32),
    /// A stream is recorded (stream id).
    StreamIsRecorded(u32),
    /// A ping with the sender's timestamp.
    PingRequest(u32),
    /// The answer to a ping, echoing its timestamp.
    PingResponse(u32),
    /// Any other event: type and data.
    Other(u16, Vec<u8>),
}

impl UserControl {
    /// Parses the payload of a user control message.
    pub fn parse(payload: &[u8]) -> Result<Self, SessionError> {
        let event = payload
            .get(..2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| SessionError::Malformed("User Control message truncated".into()))?;
        let arg = || be_u32(payload, 2, "User Control");
        Ok(match event {
            0 => UserControl::StreamBegin(arg()?),
            1 => UserControl::StreamEof(arg()?),
            2 => UserControl::StreamDry(arg()?),
            3 => UserControl::SetBufferLength(arg()?, be_u32(payload, 6, "User Control")?),
            4 => UserControl::StreamIsRecorded(arg()?),
            6 => UserControl::PingRequest(arg()?),
            7 => UserControl::PingResponse(arg()?),
            other => UserControl::Other(other, payload[2..].to_vec()),
        })
    }

    /// The message, on chunk stream 2 and message stream 0.
    pub fn to_message(&self) -> Message {
        let (event, a, b): (u16, u32, Option<u32>) = match self {
            UserControl::StreamBegin(s) => (0, *s, None),
            UserControl::StreamEof(s) => (1, *s, None),
            UserControl::StreamDry(s) => (2, *s, None),
            UserControl::SetBufferLength(s, ms) => (3, *s, Some(*ms)),
            UserControl::StreamIsRecorded(s) => (4, *s, None),
            UserControl::PingRequest(t) => (6, *t, None),
            UserControl::PingResponse(t) => (7, *t, None),
            UserControl::Other(event, data) => {
                let mut payload = event.to_be_bytes().to_vec();
                payload.extend_from_slice(data);
                return control_message(payload);
            }
        };
        let mut payload = event.to_be_bytes().to_vec();
        payload.extend_from_slice(&a.to_be_bytes());
        if let Some(b) = b {
            payload.extend_from_slice(&b.to_be_bytes());
        }
        control_message(payload)
    }
}

fn control_message(payload: Vec<u8>) -> Message {
    Message {
        csid: super::csid::CONTROL,
        timestamp: 0,
        type_id: type_id::USER_CONTROL,
        stream_id: 0,
        payload,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for e in [
            UserControl::StreamBegin(1),
            UserControl::StreamEof(1),
            UserControl::StreamDry(1),
            UserControl::SetBufferLength(1, 3000),
            UserControl::StreamIsRecorded(1),
            UserControl::PingRequest(77),
            UserControl::PingResponse(77),
            UserControl::Other(31, vec![1, 2, 3]),
        ] {
            let m = e.to_message();
            assert_eq!(UserControl::parse(&m.payload), Ok(e));
        }
        assert!(UserControl::parse(&[0]).is_err());
        assert!(UserControl::parse(&[0, 0, 1]).is_err());
    }
}
