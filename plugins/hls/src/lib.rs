//! The HLS packager: format `m3u8-cmaf`, HLS with fMP4 (CMAF) segments,
//! and format `m3u8-aapl`, HLS with MPEG-2 TS segments (`aapl.rs`, muxed
//! by `ts.rs`; see there for how audio is carried).
//!
//! ```text
//!  Request.path ─▶ paths::Resource ─┬─ Multivariant ─▶ manifest::multivariant ─▶ playlist model ─▶ text
//!                                   ├─ MediaPlaylist ─▶ manifest::media ───────▶ playlist model ─▶ text
//!                                   ├─ Init ─────────▶ segments::init (ftyp + moov)
//!                                   └─ Segment ──────▶ segments::media (styp + moof + mdat header
//!                                                       + SampleData reference the host splices)
//!
//!  format m3u8-aapl ─▶ aapl::Resource ─┬─ Multivariant / MediaPlaylist ─▶ aapl (+ manifest::media_of)
//!                                      └─ Segment ─▶ sample_data ─▶ Annex B / ADTS ─▶ ts::Muxer
//! ```
//!
//! URLs below the manifest root (see `paths.rs` for the
//! grammar): `Manifest(format=m3u8-cmaf)`, `m3u8-cmaf/t{track}/index.m3u8`,
//! `m3u8-cmaf/t{track}/init.mp4`, `m3u8-cmaf/t{track}/{start}.m4s` with
//! `start` the fragment's decode time in track ticks.
//!
//! Media sequence numbers, segment names, `tfdt` and program date times all
//! derive from media time, so every node serving the same fragments serves
//! the same bytes. In `m3u8-cmaf` sample data never enters the plugin;
//! `m3u8-aapl` must copy it in (`View::sample_data`) to rewrite it as
//! Annex B and ADTS inside TS packets.

mod aapl;
mod manifest;
mod paths;
mod playlist;
mod segments;
mod timeline;
mod ts;

#[cfg(test)]
mod tests;

use sluice_sdk::packaging::{Error, IFRAMES_FORMAT, half_fragment_s, manifest_cache};
use sluice_sdk::plugin::{Packager, PackagerInfo, Request, Response, View};

use paths::{FORMAT, Resource};

/// Content type of both playlist kinds.
const PLAYLIST_CONTENT_TYPE: &str = "application/vnd.apple.mpegurl";

/// The HLS packager (fMP4/CMAF and MPEG-2 TS).
pub struct Hls;

impl Packager for Hls {
    fn info() -> PackagerInfo {
        PackagerInfo {
            name: "hls".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "HLS with fMP4/CMAF segments (m3u8-cmaf) and MPEG-2 TS segments (m3u8-aapl)".into(),
            formats: vec![FORMAT.into(), aapl::FORMAT.into()],
        }
    }

    fn handle(request: &Request, view: &dyn View) -> Response {
        route(request, view).unwrap_or_else(Error::into_response)
    }
}

fn route(request: &Request, view: &dyn View) -> Result<Response, Error> {
    let not_found = || Error::no_such_resource(&request.path);
    if request.format == aapl::FORMAT {
        return aapl::route(&request.path, view);
    }
    if request.format != FORMAT {
        return Err(not_found());
    }
    match Resource::parse(&request.path).ok_or_else(not_found)? {
        Resource::Multivariant => {
            let iframes = request.serves_format(IFRAMES_FORMAT);
            let text = manifest::multivariant(view, iframes)?.serialize();
            Ok(playlist_response(view, text))
        }
        Resource::MediaPlaylist { track } => {
            let text = manifest::media(view, track)?.serialize();
            Ok(playlist_response(view, text))
        }
        Resource::Init { track } => segments::init(&manifest::find_track(view, track)?),
        Resource::Segment { track, start } => {
            let track = manifest::find_track(view, track)?;
            segments::media(view, &view.info(), &track, start)
        }
    }
}

/// A playlist response: live ones may be cached about half a fragment,
/// ended ones for an hour.
pub(crate) fn playlist_response(view: &dyn View, text: String) -> Response {
    let cache = manifest_cache(&view.info(), half_fragment_s);
    Response::ok(PLAYLIST_CONTENT_TYPE, cache, text.into_bytes())
}

sluice_sdk::export!(packager: Hls);
