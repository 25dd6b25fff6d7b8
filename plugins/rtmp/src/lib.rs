//! RTMP ingest adapter: the server side of RTMP as OBS, ffmpeg and other
//! encoders publish it, carrying FLV-framed H.264 and AAC.
//!
//! Sans-IO: the host feeds the bytes it reads from the encoder's socket
//! into an [`RtmpSession`] and gets back events: bytes to write back
//! ([`Event::Send`](sluice_sdk::plugin::Event::Send)), authorisation
//! requests for `connect` and `publish`, track declarations and samples.
//!
//! ```text
//!   socket bytes ─▶ handshake ─▶ chunk::ChunkDecoder ─▶ chunk::Message
//!        ─▶ message::{ProtocolControl, UserControl, Command} ─▶ session
//!        ─▶ audio/video ─▶ sluice_sdk::flv::MediaDemuxer ─▶ Track / Samples
//!   session replies ─▶ chunk::ChunkEncoder ─▶ Event::Send
//! ```
//!
//! The module tree follows the RTMP specification: [`handshake`] (5.2),
//! [`chunk`] (5.3), [`message`] (5.4, 6, 7) and [`session`] (7.2, 7.3).

pub mod chunk;
pub mod handshake;
pub mod message;
pub mod session;

pub use session::RtmpSession;

#[doc(hidden)]
pub mod fuzzing;

#[cfg(test)]
mod tests;

sluice_sdk::export!(ingest_adapter: RtmpSession);
