//! An example packager plugin: HLS I-frame-only playlists (trick play),
//! format `m3u8-iframes`, over fMP4 segments whose sample data the host
//! splices in by reference.
//!
//! ```text
//!  Request.path ─▶ paths::Resource ─┬─ Multivariant ─▶ manifest::multivariant ─▶ playlist model ─▶ text
//!                                   ├─ Playlist ─────▶ manifest::iframe_playlist ┘
//!                                   │                        │ byte ranges
//!                                   │                        ▼
//!                                   ├─ Segment ──────▶ segment::Layout ─▶ styp + per keyframe:
//!                                   │                    moof + mdat header | SampleData(track, start, range)
//!                                   └─ Init ─────────▶ segment::init (ftyp + moov)
//! ```
//!
//! URLs below the manifest root (see [`paths`]):
//! `Manifest(format=m3u8-iframes)` lists one `EXT-X-I-FRAME-STREAM-INF`
//! per video track, pointing at `m3u8-iframes/t{track}/iframes.m3u8`; that
//! playlist lists each fragment's first keyframe as a byte range of a segment
//! `m3u8-iframes/t{track}/{start}.m4s` (one per fragment, `start` its
//! decode time in track ticks), with `m3u8-iframes/t{track}/init.mp4` as
//! its `EXT-X-MAP`.
//!
//! A segment puts each keyframe at the start of its own `moof` + `mdat`
//! chunk, so an I-frame's byte range is that chunk's `moof`, its `mdat`
//! header and the keyframe: init segment + range decode as one picture,
//! and the whole segment plays as ordinary fMP4. The playlist's ranges and
//! the segment's bytes come from the same [`segment::Layout`].
//!
//! Build it for the host with
//! `cargo build --target wasm32-wasip2 --release` and drop
//! `sluice_example_hls_iframes.wasm` into the host's plugin directory.

pub mod manifest;
pub mod paths;
pub mod playlist;
pub mod segment;

use sluice_sdk::packaging::{Error, fragment_samples, half_fragment_s, manifest_cache};
use sluice_sdk::plugin::{Packager, PackagerInfo, Request, Response, View};

use paths::{FORMAT, Resource};

/// Content type of both playlists.
pub const PLAYLIST_CONTENT_TYPE: &str = "application/vnd.apple.mpegurl";

/// The I-frame playlist packager.
pub struct HlsIFrames;

impl Packager for HlsIFrames {
    fn info() -> PackagerInfo {
        PackagerInfo {
            name: "hls-iframes".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "HLS I-frame-only playlists (trick play) over fMP4 (m3u8-iframes)".into(),
            formats: vec![FORMAT.into()],
        }
    }

    fn handle(request: &Request, view: &dyn View) -> Response {
        route(request, view).unwrap_or_else(Error::into_response)
    }
}

/// Answers one request; a path that names nothing is [`Error::NotFound`]
/// (404, cached one second).
fn route(request: &Request, view: &dyn View) -> Result<Response, Error> {
    let not_found = || Error::no_such_resource(&request.path);
    if request.format != FORMAT {
        return Err(not_found());
    }
    match Resource::parse(&request.path).ok_or_else(not_found)? {
        Resource::Multivariant => {
            let text = manifest::multivariant(view)?.serialize();
            Ok(playlist_response(view, text))
        }
        Resource::Playlist { track } => {
            let text = manifest::iframe_playlist(view, track)?.serialize();
            Ok(playlist_response(view, text))
        }
        Resource::Init { track } => segment::init(&manifest::find_track(view, track)?),
        Resource::Segment { track, start } => {
            let track = manifest::find_track(view, track)?;
            let (samples, _) = fragment_samples(view, track.id, start)?;
            segment::media(&track, start, &samples)
        }
    }
}

/// A playlist response: live ones may be cached about half a fragment,
/// ended ones for an hour (as the built-in HLS packager does).
fn playlist_response(view: &dyn View, text: String) -> Response {
    let cache = manifest_cache(&view.info(), half_fragment_s);
    Response::ok(PLAYLIST_CONTENT_TYPE, cache, text.into_bytes())
}

sluice_sdk::export!(packager: HlsIFrames);
