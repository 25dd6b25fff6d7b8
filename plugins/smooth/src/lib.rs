//! The Smooth Streaming packager: format `mss` ([MS-SSTR]).
//!
//! ```text
//!  Request.path ─▶ paths::Resource ─┬─ Manifest ─▶ manifest::manifest ─▶ sdk xml::Element ─▶ text
//!                                   └─ Fragment ─▶ manifest::find_level (StreamIndex Name + Bitrate
//!                                                  → track) ─▶ fragment::response (moof with tfxd,
//!                                                  tfrf when live + mdat header + SampleData
//!                                                  reference the host splices)
//! ```
//!
//! URLs below the manifest root (see `paths.rs`): `Manifest` (the host maps
//! it to `mss`), `Manifest(format=mss)`, and fragments at the conventional
//! `QualityLevels({bitrate})/Fragments({name}={start})` (the host routes
//! paths starting with `QualityLevels(` to `mss`) or the same under `mss/`.
//! `{start}` is the fragment's decode time in track ticks (each
//! `StreamIndex` carries its track's `TimeScale`), equal to the manifest's
//! `t` and the fragment's `tfxd`, so every node serves the same bytes.
//! Sample data never enters the plugin.

mod fragment;
mod manifest;
mod paths;
mod timeline;

#[cfg(test)]
mod tests;

pub use fragment::Tfrf;

use sluice_sdk::packaging::{Error, half_fragment_s, manifest_cache};
use sluice_sdk::plugin::{Packager, PackagerInfo, Request, Response, View};

use paths::{FORMAT, Resource};

/// Content type of the client manifest.
const MANIFEST_CONTENT_TYPE: &str = "text/xml; charset=utf-8";

/// The Smooth Streaming packager.
pub struct Smooth;

impl Packager for Smooth {
    fn info() -> PackagerInfo {
        PackagerInfo {
            name: "smooth".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Smooth Streaming (mss)".into(),
            formats: vec![FORMAT.into()],
        }
    }

    fn handle(request: &Request, view: &dyn View) -> Response {
        route(request, view).unwrap_or_else(Error::into_response)
    }
}

fn route(request: &Request, view: &dyn View) -> Result<Response, Error> {
    let not_found = || Error::no_such_resource(&request.path);
    if request.format != FORMAT {
        return Err(not_found());
    }
    match Resource::parse(&request.path).ok_or_else(not_found)? {
        Resource::Manifest => {
            let text = manifest::manifest(view)?;
            let cache = manifest_cache(&view.info(), half_fragment_s);
            Ok(Response::ok(
                MANIFEST_CONTENT_TYPE,
                cache,
                text.into_bytes(),
            ))
        }
        Resource::Fragment {
            stream,
            bitrate,
            start,
        } => {
            let track = manifest::find_level(view, &stream, bitrate)?;
            fragment::response(view, &view.info(), &track, start)
        }
    }
}

sluice_sdk::export!(packager: Smooth);
