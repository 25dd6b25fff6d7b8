//! Plugin bindings: plain Rust mirrors of the `sluice:plugin@0.1.0` WIT
//! types, one trait per world, and the [`export!`](crate::export) macro.
//!
//! A plugin crate implements [`Packager`] or [`IngestAdapter`] on a type and
//! calls `sluice_sdk::export!(packager: MyType)` (or `ingest_adapter:`). The
//! same crate builds natively (its logic is unit-tested against the traits
//! with an in-memory [`View`]) and for `wasm32-wasip2` (the macro then emits
//! the component glue). The host uses these types too, so a presentation
//! view is written once and serves native and Wasm callers alike.
//!
//! ```text
//!  host ──feed(bytes)──▶ IngestAdapter ──Event::{Authorize,Track,Samples,Send}──▶ host
//!  host ──Request + &dyn View──▶ Packager ──Response{body: [Bytes | SampleData]}──▶ host
//! ```

mod ingest;
mod memory;
mod packager;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod guest;

pub use ingest::{
    AdapterInfo, AuthRequest, AuthStage, Event, IngestAdapter, Sample, SessionConfig, SessionError,
};
pub use memory::{MemoryFragment, MemoryView};
pub use packager::{
    BodyPart, CachePolicy, DataRef, FORMATS_HEADER, Fragment, Packager, PackagerInfo,
    PresentationInfo, PresentationState, Request, Response, SampleEntry, View,
};

/// What a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackKind {
    /// Pictures.
    Video,
    /// Sound.
    Audio,
    /// Timed text.
    Subtitle,
    /// Anything else.
    Data,
}

/// Everything a packager needs to describe and initialise one track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackInfo {
    /// Track id (unique per ingest session, or per presentation).
    pub id: u32,
    /// What the track carries.
    pub kind: TrackKind,
    /// ISO BMFF sample entry code (`avc1`, `mp4a`).
    pub fourcc: String,
    /// RFC 6381 codecs parameter.
    pub codec: String,
    /// Ticks per second.
    pub timescale: u32,
    /// `avcC` payload (H.264) or AudioSpecificConfig (AAC).
    pub codec_private: Vec<u8>,
    /// Stream (rendition) name.
    pub stream: String,
    /// Declared average bitrate in bit/s, 0 when unknown.
    pub bitrate: u32,
    /// BCP 47 language, `und` when unknown.
    pub language: String,
    /// Width in pixels (video).
    pub width: u32,
    /// Height in pixels (video).
    pub height: u32,
    /// Sample rate (audio).
    pub sample_rate: u32,
    /// Channel count (audio).
    pub channels: u16,
}

impl TrackInfo {
    /// A track with the given id, kind and timescale and everything else empty.
    pub fn new(id: u32, kind: TrackKind, timescale: u32) -> Self {
        TrackInfo {
            id,
            kind,
            fourcc: String::new(),
            codec: String::new(),
            timescale,
            codec_private: Vec::new(),
            stream: String::new(),
            bitrate: 0,
            language: "und".to_owned(),
            width: 0,
            height: 0,
            sample_rate: 0,
            channels: 0,
        }
    }
}

/// Severity of a plugin log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Detail for plugin authors.
    Debug,
    /// Normal operation worth noting.
    Info,
    /// Something odd that was worked around.
    Warn,
    /// Something failed.
    Error,
}

/// Writes a line to the host's log (a no-op in native builds).
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    guest::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (level, message);
}

/// Emits the component glue for a plugin type.
///
/// `export!(packager: T)` for a `T: Packager`, or `export!(ingest_adapter: T)`
/// for a `T: IngestAdapter`. In native builds it expands to nothing, so the
/// same crate is an ordinary library there. Call it once per plugin crate,
/// at its root; the crate enables the SDK feature of its world (`packager`
/// or `ingest-adapter`) and is a `cdylib` for `wasm32-wasip2`.
///
/// An ingest adapter that declares one track and turns every byte it is
/// fed into one sample:
///
/// ```
/// use sluice_sdk::plugin::{
///     AdapterInfo, Event, IngestAdapter, Sample, SessionConfig, SessionError, TrackInfo,
///     TrackKind,
/// };
///
/// struct Bytes {
///     next: i64,
///     declared: bool,
/// }
///
/// impl IngestAdapter for Bytes {
///     fn info() -> AdapterInfo {
///         AdapterInfo {
///             name: "bytes".into(),
///             version: "0.1.0".into(),
///             description: "one sample per byte (an example)".into(),
///             extension: "bytes".into(),
///         }
///     }
///
///     fn new(_config: SessionConfig) -> Self {
///         Bytes { next: 0, declared: false }
///     }
///
///     fn feed(&mut self, data: &[u8]) -> Result<Vec<Event>, SessionError> {
///         let mut events = Vec::new();
///         if !std::mem::replace(&mut self.declared, true) {
///             events.push(Event::Track(TrackInfo::new(1, TrackKind::Data, 1000)));
///         }
///         let samples = data
///             .iter()
///             .map(|b| {
///                 self.next += 1;
///                 Sample {
///                     track: 1,
///                     dts: self.next,
///                     composition_offset: 0,
///                     duration: 1,
///                     keyframe: true,
///                     data: vec![*b],
///                 }
///             })
///             .collect();
///         events.push(Event::Samples(samples));
///         Ok(events)
///     }
/// }
///
/// sluice_sdk::export!(ingest_adapter: Bytes);
///
/// let mut session = Bytes::new(SessionConfig::default());
/// let events = session.feed(b"ab").expect("any bytes do");
/// assert!(matches!(&events[1], Event::Samples(s) if s.len() == 2));
/// ```
#[macro_export]
macro_rules! export {
    (packager: $t:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct SluiceExport;
            impl $crate::plugin::guest::packager_world::exports::sluice::plugin::packaging::Guest
                for SluiceExport
            {
                fn info() -> $crate::plugin::guest::packager_world::exports::sluice::plugin::packaging::PackagerInfo {
                    $crate::plugin::guest::packager_info::<$t>()
                }
                fn handle(
                    req: $crate::plugin::guest::packager_world::exports::sluice::plugin::packaging::Request,
                ) -> $crate::plugin::guest::packager_world::exports::sluice::plugin::packaging::Response {
                    $crate::plugin::guest::packager_handle::<$t>(req)
                }
            }
            $crate::plugin::guest::packager_world::__export_packager_world!(SluiceExport with_types_in $crate::plugin::guest::packager_world);
        };
    };
    (ingest_adapter: $t:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::plugin::guest::ingest_world::exports::sluice::plugin::ingest as wit;
            struct SluiceExport;
            struct SluiceSession(::core::cell::RefCell<$t>);
            impl wit::Guest for SluiceExport {
                type Session = SluiceSession;
                fn info() -> wit::AdapterInfo {
                    $crate::plugin::guest::adapter_info::<$t>()
                }
            }
            impl wit::GuestSession for SluiceSession {
                fn new(config: wit::SessionConfig) -> Self {
                    SluiceSession(::core::cell::RefCell::new($crate::plugin::guest::session_new::<$t>(config)))
                }
                fn feed(&self, data: Vec<u8>) -> Result<Vec<wit::Event>, wit::SessionError> {
                    $crate::plugin::guest::session_feed(&mut *self.0.borrow_mut(), data)
                }
                fn authorize(
                    &self,
                    id: u32,
                    verdict: Result<(), String>,
                ) -> Result<Vec<wit::Event>, wit::SessionError> {
                    $crate::plugin::guest::session_authorize(&mut *self.0.borrow_mut(), id, verdict)
                }
                fn close(&self) -> Vec<wit::Event> {
                    $crate::plugin::guest::session_close(&mut *self.0.borrow_mut())
                }
            }
            $crate::plugin::guest::ingest_world::__export_ingest_world!(SluiceExport with_types_in $crate::plugin::guest::ingest_world);
        };
    };
}
