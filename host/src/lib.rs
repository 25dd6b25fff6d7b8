//! Sluice: a live-streaming edge origin.
//!
//! ```text
//!  encoder ─RTMP─▶ ingest (listener, auth, limits)
//!                    │ bytes
//!                    ▼
//!                  plugins::IngestSession (Wasm adapter) ─ tracks, samples ─▶ channel::StreamIngest
//!                                                                  │
//!                                       media::segmenter (time grid) ─▶ media::timeline
//!                                                                  │ Snapshot (View)
//!  player ─HTTP─▶ delivery (route, moka cache, coalescing) ─▶ plugins::PackagerPlugin (Wasm)
//!                    ◀── body: plugin bytes + spliced sample slices
//! ```

pub mod api;
pub mod archive;
pub mod body;
pub mod channel;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod edge;
pub mod ingest;
pub mod media;
pub mod metrics;
pub mod names;
pub mod origin;
pub mod plugin_check;
pub mod plugins;
pub mod preview_page;
pub mod quic;
pub mod readiness;
pub mod server;
pub mod storage;
pub mod store;
pub mod tier;
pub mod timefmt;
pub mod tls;
pub mod wire;

pub use server::Server;
