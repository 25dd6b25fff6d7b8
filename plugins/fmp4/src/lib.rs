//! Fragmented-MP4 / Smooth Streaming ingest adapter: one long HTTP POST
//! per stream (`POST /ingest/{channel}/{key}.isml/Streams({stream})`), as
//! `ffmpeg -f ismv -movflags isml+frag_keyframe` and Smooth encoders
//! (Elemental, Envivio, Cisco) send it.
//!
//! Sans-IO: the host de-chunks the request body and feeds the bytes, in
//! whatever pieces they arrive, into an [`Fmp4Session`]; it gets back
//! track declarations and one batch of samples per track and fragment.
//!
//! ```text
//!   body bytes ─▶ framing::Framer (whole top-level boxes, size limit)
//!     ─▶ ftyp | uuid live server manifest (manifest) | moov (moov) | moof (moof) + mdat
//!     ─▶ session: Track per published track, Samples per moof/mdat and track,
//!        resent duplicate fragments dropped
//! ```
//!
//! The module tree follows the container: [`framing`] (top-level boxes),
//! [`manifest`] (the SMIL live server manifest, [MS-SSTR] 2.2.2),
//! [`moov`] (tracks and sample entries), [`moof`] (track fragments and
//! runs, ISO/IEC 14496-12 8.8), [`session`] (the state machine).

pub mod error;
pub mod framing;
pub mod manifest;
pub mod moof;
pub mod moov;
pub mod session;

pub use error::{Error, Result};
pub use session::{Fmp4Session, Stats};

#[doc(hidden)]
pub mod fuzzing;

#[cfg(test)]
mod tests;

sluice_sdk::export!(ingest_adapter: Fmp4Session);
