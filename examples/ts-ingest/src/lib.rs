//! MPEG-TS ingest adapter, an example plugin: H.264 and AAC (ADTS) in a
//! transport stream, posted over HTTP as ffmpeg sends it:
//!
//! ```text
//! ffmpeg -re -i IN -c copy -f mpegts -method POST \
//!     "http://HOST:PORT/ingest/{channel}/{key}.ts/Streams({stream})"
//! ```
//!
//! The host routes `POST /ingest/{channel}/{key}.{extension}/Streams(…)` to
//! the adapter that claims the extension (`ts` here), checks the key,
//! address and channel from the URL, then feeds the body's bytes, in
//! whatever pieces they arrive, to a [`TsSession`]. The session is sans-IO:
//! bytes in, track declarations and samples out.
//!
//! ```text
//!   body bytes ─▶ packet::Framer (188-byte packets, resync on 0x47)
//!     ─▶ psi (PAT ─▶ first program's PMT, CRC-checked)
//!     ─▶ pes (per-PID reassembly, PTS/DTS) ─▶ clock (33-bit unwrap)
//!     ─▶ avc (Annex B ─▶ length-prefixed, avcC) │ adts (frames ─▶ AudioSpecificConfig)
//!     ─▶ session: Track, Samples, EndOfStream
//! ```
//!
//! The module tree follows ISO/IEC 13818-1: [`packet`] (transport packets
//! and the adaptation field, 2.4.3.2–4), [`psi`] (sections, PAT, PMT,
//! 2.4.4), [`pes`] (PES packets, 2.4.3.6), [`clock`] (the 33-bit time
//! stamps), then the codecs: [`avc`] (H.264 Annex B) and [`adts`] (AAC in
//! ADTS), and [`session`] (the state machine).
//!
//! The crate builds natively too (an `rlib`), so its tests and the fuzz
//! target run without Wasm; for `wasm32` the [`export!`](sluice_sdk::export)
//! line below emits the component glue.

pub mod adts;
pub mod avc;
pub mod clock;
pub mod error;
pub mod packet;
pub mod pes;
pub mod psi;
pub mod session;

pub use error::{Error, Result};
pub use session::{Stats, TsSession};

#[doc(hidden)]
pub mod fuzzing;

#[cfg(test)]
mod tests;

sluice_sdk::export!(ingest_adapter: TsSession);
