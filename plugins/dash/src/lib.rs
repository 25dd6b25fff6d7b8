//! The DASH packager: formats `mpd-time-csf` (ISO BMFF live profile) and
//! `mpd-time-cmaf` (CMAF profile), SegmentTemplate + SegmentTimeline with
//! `$Time$` addressing.
//!
//! ```text
//!  Request{format, path} ─▶ paths::Resource ─┬─ Manifest ─▶ mpd::mpd ─▶ sdk xml::Xml ─▶ MPD text
//!                                            ├─ Init ─────▶ segments::init (ftyp + moov)
//!                                            └─ Segment ──▶ segments::media (styp + moof + mdat
//!                                                            header + SampleData reference)
//! ```
//!
//! URLs below the manifest root (`paths.rs`): `Manifest(format=F)`,
//! `F/t{track}/init.mp4`, `F/t{track}/{start}.m4s` with `start` the
//! fragment's decode time in track ticks, which is the `$Time$` of the
//! SegmentTimeline. Every value in an MPD derives from media time and the
//! presentation's epoch (no clock), so identical inputs give identical
//! bytes on every node.

mod mpd;
mod paths;
mod segments;
mod timeline;

#[cfg(test)]
mod tests;

use sluice_sdk::packaging::{Error, manifest_cache};
use sluice_sdk::plugin::{Packager, PackagerInfo, Request, Response, View};

use paths::{Flavour, Resource};

/// Content type of the MPD.
const MPD_CONTENT_TYPE: &str = "application/dash+xml";

/// The DASH packager.
pub struct Dash;

impl Packager for Dash {
    fn info() -> PackagerInfo {
        PackagerInfo {
            name: "dash".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "DASH, ISO BMFF live profile and CMAF (mpd-time-csf, mpd-time-cmaf)"
                .into(),
            formats: Flavour::ALL.iter().map(|f| f.format().into()).collect(),
        }
    }

    fn handle(request: &Request, view: &dyn View) -> Response {
        route(request, view).unwrap_or_else(Error::into_response)
    }
}

fn route(request: &Request, view: &dyn View) -> Result<Response, Error> {
    let not_found = || Error::no_such_resource(&request.path);
    let flavour = Flavour::from_format(&request.format).ok_or_else(not_found)?;
    match Resource::parse(flavour, &request.path).ok_or_else(not_found)? {
        Resource::Manifest => {
            let text = mpd::mpd(view, flavour)?;
            let cache = manifest_cache(&view.info(), mpd::live_max_age);
            Ok(Response::ok(MPD_CONTENT_TYPE, cache, text.into_bytes()))
        }
        Resource::Init { track } => segments::init(flavour, &mpd::find_track(view, track)?),
        Resource::Segment { track, start } => {
            let track = mpd::find_track(view, track)?;
            segments::media(flavour, view, &view.info(), &track, start)
        }
    }
}

sluice_sdk::export!(packager: Dash);
