//! The `packager` world: a request plus a read-only view of a presentation
//! in, a response plan out.

use super::TrackInfo;

/// Live or on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresentationState {
    /// Still growing; the window slides.
    Live,
    /// Complete.
    Ended,
}

/// Facts about the whole presentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentationInfo {
    /// Live or ended.
    pub state: PresentationState,
    /// The channel's fragment grid in milliseconds of media time.
    pub fragment_duration_ms: u32,
    /// Unix milliseconds of media time 0, when known.
    pub epoch_ms: Option<i64>,
    /// Length of the seekable window in milliseconds (0: everything held).
    pub window_ms: u64,
}

/// One fragment of a track's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    /// Decode time of the first sample (the fragment's name).
    pub start: u64,
    /// Duration in ticks.
    pub duration: u64,
    /// Number of samples.
    pub sample_count: u32,
    /// Payload size in bytes.
    pub size: u32,
    /// A discontinuity precedes this fragment.
    pub discontinuity: bool,
    /// Discontinuities of the track's timeline up to and including this
    /// fragment (HLS `EXT-X-DISCONTINUITY-SEQUENCE` of the first listed).
    pub discontinuity_sequence: u32,
}

/// One entry of a fragment's sample table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleEntry {
    /// Duration in ticks.
    pub duration: u32,
    /// Payload size in bytes.
    pub size: u32,
    /// Presentation minus decode time.
    pub composition_offset: i32,
    /// Random access point.
    pub keyframe: bool,
}

/// The read-only presentation view a packager queries.
pub trait View {
    /// Facts about the presentation.
    fn info(&self) -> PresentationInfo;
    /// All tracks.
    fn tracks(&self) -> Vec<TrackInfo>;
    /// Up to `limit` fragments of `track` starting at or after `from`.
    fn fragments(&self, track: u32, from: u64, limit: u32) -> Vec<Fragment>;
    /// The sample table of the fragment of `track` starting at `start`.
    fn samples(&self, track: u32, start: u64) -> Option<Vec<SampleEntry>>;
    /// A copy of payload bytes (for plugins that transform them).
    fn sample_data(&self, track: u32, start: u64, offset: u32, length: u32) -> Option<Vec<u8>>;
}

/// What a packager declares about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackagerInfo {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// One line for operators.
    pub description: String,
    /// Formats served (`m3u8-cmaf`, `mss`, ...).
    pub formats: Vec<String>,
}

/// The request as routed by the host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// The resolved format.
    pub format: String,
    /// Path below the manifest root.
    pub path: String,
    /// Decoded query parameters.
    pub query: Vec<(String, String)>,
    /// Relevant request headers (lower-case names), and what the host adds
    /// ([`FORMATS_HEADER`]).
    pub headers: Vec<(String, String)>,
}

/// The header the host adds to every request: the formats its packagers
/// serve now, sorted, comma-separated (`hds,m3u8-aapl,m3u8-cmaf,…`). A
/// manifest may list another plugin's resources by it (the HLS packager
/// lists I-frame playlists when `m3u8-iframes` is served). The host keeps
/// responses packaged under one set of plugins apart from another's.
pub const FORMATS_HEADER: &str = "sluice-formats";

impl Request {
    /// The value of header `name` (lower-case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the host serves `format` now (by [`FORMATS_HEADER`]).
    ///
    /// ```
    /// use sluice_sdk::plugin::{FORMATS_HEADER, Request};
    /// let request = Request {
    ///     headers: vec![(FORMATS_HEADER.into(), "m3u8-cmaf,m3u8-iframes".into())],
    ///     ..Request::default()
    /// };
    /// assert!(request.serves_format("m3u8-iframes"));
    /// assert!(!request.serves_format("m3u8"));
    /// ```
    pub fn serves_format(&self, format: &str) -> bool {
        self.header(FORMATS_HEADER)
            .is_some_and(|v| v.split(',').any(|f| f == format))
    }
}

/// Cache lifetime of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachePolicy {
    /// Do not store.
    NoStore,
    /// May change; keep at most this many seconds.
    MaxAge(u32),
    /// Never changes.
    Immutable,
}

/// A range of sample payload for the host to splice in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRef {
    /// Track id.
    pub track: u32,
    /// Fragment start.
    pub start: u64,
    /// Offset within the fragment payload.
    pub offset: u32,
    /// Length in bytes.
    pub length: u32,
}

/// A piece of the response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyPart {
    /// Bytes the plugin wrote.
    Bytes(Vec<u8>),
    /// Sample data the host holds.
    SampleData(DataRef),
}

/// The response plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: String,
    /// Cache lifetime.
    pub cache: CachePolicy,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// Body parts in order.
    pub body: Vec<BodyPart>,
}

impl Response {
    /// A plain-text error response with the given status and cache policy.
    pub fn error(status: u16, cache: CachePolicy, message: &str) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8".to_owned(),
            cache,
            headers: Vec::new(),
            body: vec![BodyPart::Bytes(message.as_bytes().to_vec())],
        }
    }

    /// 404 for something that may appear later (short cache lifetime).
    pub fn not_found(message: &str) -> Self {
        Self::error(404, CachePolicy::MaxAge(1), message)
    }

    /// A successful response with one body part written by the plugin.
    pub fn ok(content_type: &str, cache: CachePolicy, body: Vec<u8>) -> Self {
        Response {
            status: 200,
            content_type: content_type.to_owned(),
            cache,
            headers: Vec::new(),
            body: vec![BodyPart::Bytes(body)],
        }
    }

    /// Total body length in bytes.
    pub fn body_len(&self) -> u64 {
        self.body
            .iter()
            .map(|p| match p {
                BodyPart::Bytes(b) => b.len() as u64,
                BodyPart::SampleData(r) => u64::from(r.length),
            })
            .sum()
    }
}

/// A packager: stateless, one call per request.
///
/// A whole packager: it declares its format, answers its manifest from
/// the view, and is tested natively against an in-memory presentation
/// (the same crate builds for `wasm32-wasip2`, where
/// [`export!`](crate::export) emits the component glue):
///
/// ```
/// use sluice_sdk::plugin::{
///     CachePolicy, MemoryView, Packager, PackagerInfo, PresentationState, Request, Response,
///     TrackInfo, TrackKind, View,
/// };
///
/// /// Lists the tracks, one per line.
/// struct TrackList;
///
/// impl Packager for TrackList {
///     fn info() -> PackagerInfo {
///         PackagerInfo {
///             name: "track-list".into(),
///             version: "0.1.0".into(),
///             description: "the tracks, one per line".into(),
///             formats: vec!["tracks".into()],
///         }
///     }
///
///     fn handle(request: &Request, view: &dyn View) -> Response {
///         if request.path != "Manifest(format=tracks)" {
///             return Response::not_found("no such resource");
///         }
///         let lines: String = view
///             .tracks()
///             .iter()
///             .map(|t| format!("{} {}\n", t.id, t.codec))
///             .collect();
///         Response::ok("text/plain", CachePolicy::MaxAge(1), lines.into_bytes())
///     }
/// }
///
/// sluice_sdk::export!(packager: TrackList);
///
/// let mut view = MemoryView::new(PresentationState::Live, 2000, None);
/// view.add_track(TrackInfo {
///     codec: "avc1.64001f".into(),
///     ..TrackInfo::new(1, TrackKind::Video, 90_000)
/// });
/// let request = Request {
///     format: "tracks".into(),
///     path: "Manifest(format=tracks)".into(),
///     ..Request::default()
/// };
/// let response = TrackList::handle(&request, &view);
/// assert_eq!(response.status, 200);
/// ```
pub trait Packager: 'static {
    /// Describes the packager.
    fn info() -> PackagerInfo;
    /// Answers one request; by default 404.
    fn handle(request: &Request, view: &dyn View) -> Response {
        let _ = view;
        Response::not_found(&format!("no such resource: {}", request.path))
    }
}
