//! RTMP messages (RTMP specification sections 5.4, 6 and 7): protocol
//! control messages, user control events and AMF0 commands.
//!
//! ```text
//!   chunk::Message { type_id, payload } ─▶ ProtocolControl | UserControl | Command | media
//! ```

pub mod command;
pub mod control;
pub mod user_control;

pub use command::Command;
pub use control::ProtocolControl;
pub use user_control::UserControl;

/// Message type ids.
pub mod type_id {
    /// Set Chunk Size (protocol control).
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Abort Message (protocol control).
    pub const ABORT: u8 = 2;
    /// Acknowledgement (protocol control).
    pub const ACKNOWLEDGEMENT: u8 = 3;
    /// User Control Message.
    pub const USER_CONTROL: u8 = 4;
    /// Window Acknowledgement Size (protocol control).
    pub const WINDOW_ACK_SIZE: u8 = 5;
    /// Set Peer Bandwidth (protocol control).
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    /// Audio data (an FLV audio tag body).
    pub const AUDIO: u8 = 8;
    /// Video data (an FLV video tag body).
    pub const VIDEO: u8 = 9;
    /// Data message, AMF3.
    pub const DATA_AMF3: u8 = 15;
    /// Shared object message, AMF3.
    pub const SHARED_OBJECT_AMF3: u8 = 16;
    /// Command message, AMF3.
    pub const COMMAND_AMF3: u8 = 17;
    /// Data message, AMF0 (`@setDataFrame`).
    pub const DATA_AMF0: u8 = 18;
    /// Shared object message, AMF0.
    pub const SHARED_OBJECT_AMF0: u8 = 19;
    /// Command message, AMF0.
    pub const COMMAND_AMF0: u8 = 20;
    /// Aggregate message (FLV tags back to back).
    pub const AGGREGATE: u8 = 22;
}

/// Chunk stream ids this server sends on.
pub mod csid {
    /// Protocol control and user control messages.
    pub const CONTROL: u32 = 2;
    /// NetConnection command replies.
    pub const COMMAND: u32 = 3;
    /// NetStream status messages.
    pub const STREAM: u32 = 5;
}

use sluice_sdk::plugin::SessionError;

/// Reads a big-endian `u32` at `at`, or reports which message was short.
pub(crate) fn be_u32(payload: &[u8], at: usize, what: &str) -> Result<u32, SessionError> {
    payload
        .get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| SessionError::Malformed(format!("{what} message truncated")))
}
