//! The Sluice SDK: what the host and plugins share.
//!
//! ```text
//!   encoder bytes ─▶ [flv, amf0, h264, aac]  (ingest adapters)
//!                      │ samples, tracks (time: Timescale/Ticks)
//!                      ▼
//!   host timeline ─▶ [bmff writer]            (packagers)
//! ```
//!
//! - [`time`]: typed media time, checked rescaling, RTMP clock unwrap.
//! - [`bmff`]: ISO BMFF box reader and writer (init and media segments).
//! - [`flv`], [`amf0`]: FLV tags and AMF0 values (RTMP and HDS).
//! - [`h264`], [`aac`]: codec configuration parsing and codec strings.
//! - [`plugin`]: plugin-side traits and the [`export!`] macro.
//! - [`packaging`]: what packagers share: errors, fragment paging,
//!   media-time numbering, path grammar pieces, manifest cache lifetimes.
//! - [`xml`]: a small XML writer with escaped attribute values.
//! - `testing` (feature `testing`): native test support for packager
//!   crates: the ffmpeg harness and golden files.

pub mod aac;
pub mod amf0;
pub mod bmff;
pub mod flv;
pub mod h264;
pub mod packaging;
pub mod plugin;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod time;
pub mod xml;
