//! The `ingest-adapter` world: a sans-IO session per encoder connection.

use super::TrackInfo;

/// What an adapter declares about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterInfo {
    /// Plugin name (a plugin-directory file with the same name overrides a built-in).
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// One line for operators.
    pub description: String,
    /// `rtmp` for the RTMP listener, else the ingest URL extension (`isml`).
    pub extension: String,
}

/// Limits and facts the host gives a new session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Peer address (for log lines).
    pub remote_addr: String,
    /// Largest message the session may buffer, in bytes.
    pub max_message_size: u32,
    /// Most tracks the session may declare.
    pub max_tracks: u32,
    /// Stream name from the URL (HTTP ingest); empty for RTMP.
    pub stream: String,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            remote_addr: String::new(),
            max_message_size: 16 << 20,
            max_tracks: 16,
            stream: String::new(),
        }
    }
}

/// Which step asks to be authorised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStage {
    /// Connection to an application: carries the key.
    Connect,
    /// Start of a stream.
    Publish,
}

/// A request for the host to decide; the session buffers input until
/// [`IngestAdapter::authorize`] answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    /// Identifies the request.
    pub id: u32,
    /// Connect or publish.
    pub stage: AuthStage,
    /// Application path as sent (`live/ch1/KEY`).
    pub app: String,
    /// Stream name (empty at connect).
    pub stream: String,
    /// The URL the encoder says it connected to.
    pub tc_url: String,
}

/// One sample with its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Track id from a [`Event::Track`] of this session.
    pub track: u32,
    /// Decode time in the track timescale.
    pub dts: i64,
    /// Presentation minus decode time, in ticks.
    pub composition_offset: i32,
    /// Duration in ticks, 0 when unknown.
    pub duration: u32,
    /// Random access point.
    pub keyframe: bool,
    /// Payload in ISO BMFF form.
    pub data: Vec<u8>,
}

/// What feeding bytes produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The host must decide before the session goes on.
    Authorize(AuthRequest),
    /// A track is declared (or re-declared).
    Track(TrackInfo),
    /// Samples in decode order per track.
    Samples(Vec<Sample>),
    /// Bytes to write back to the encoder.
    Send(Vec<u8>),
    /// The stream ended cleanly.
    EndOfStream(String),
}

/// Why a session cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The bytes do not follow the format.
    #[error("malformed input: {0}")]
    Malformed(String),
    /// A configured limit would be exceeded.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// Valid but not supported.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// An ingest adapter: one value per encoder connection.
pub trait IngestAdapter: Sized + 'static {
    /// Describes the adapter.
    fn info() -> AdapterInfo;
    /// Starts a session.
    fn new(config: SessionConfig) -> Self;
    /// Feeds bytes from the encoder.
    fn feed(&mut self, data: &[u8]) -> Result<Vec<Event>, SessionError>;
    /// Answers an [`Event::Authorize`]; by default nothing follows.
    fn authorize(
        &mut self,
        id: u32,
        verdict: Result<(), String>,
    ) -> Result<Vec<Event>, SessionError> {
        let _ = (id, verdict);
        Ok(Vec::new())
    }
    /// The encoder closed the connection; by default nothing follows.
    fn close(&mut self) -> Vec<Event> {
        Vec::new()
    }
}
