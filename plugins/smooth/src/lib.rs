//! The Smooth Streaming packager: format `mss` ([MS-SSTR]).
//!
//! ```text
//!  Request.path ─▶ paths::Resource ─┬─ Manifest ─▶ manifest::manifest ─▶ xml::Element ─▶ text
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
mod xml;

#[cfg(test)]
mod tests;

pub use fragment::Tfrf;

use sluice_sdk::bmff;
use sluice_sdk::plugin::{
    CachePolicy, Packager, PackagerInfo, PresentationState, Request, Response, View,
};
use sluice_sdk::time::TimeError;

use paths::{FORMAT, Resource};

/// Content type of the client manifest.
const MANIFEST_CONTENT_TYPE: &str = "text/xml; charset=utf-8";

/// How long an ended presentation's manifest may be cached, in seconds.
const ENDED_MAX_AGE: u32 = 3600;

/// Why a request fails; each maps to a status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// No such resource (yet): 404 with a short lifetime.
    #[error("{0}")]
    NotFound(String),
    /// Media time arithmetic overflowed: 500.
    #[error("media time: {0}")]
    Time(#[from] TimeError),
    /// A box could not be written: 500.
    #[error("ISO BMFF: {0}")]
    Bmff(#[from] bmff::Error),
    /// A track's codec configuration is unusable: 500.
    #[error("{0}")]
    Codec(String),
    /// A derived value does not fit its field: 500.
    #[error("{0} does not fit")]
    Overflow(&'static str),
}

impl Error {
    /// The response this error becomes.
    fn into_response(self) -> Response {
        match self {
            Error::NotFound(m) => Response::not_found(&m),
            e => Response::error(500, CachePolicy::NoStore, &e.to_string()),
        }
    }
}

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
    let not_found = || Error::NotFound(format!("no such resource: {}", request.path));
    if request.format != FORMAT {
        return Err(not_found());
    }
    match Resource::parse(&request.path).ok_or_else(not_found)? {
        Resource::Manifest => {
            let text = manifest::manifest(view)?;
            let info = view.info();
            let max_age = match info.state {
                PresentationState::Live => (info.fragment_duration_ms / 2000).max(1),
                PresentationState::Ended => ENDED_MAX_AGE,
            };
            Ok(Response::ok(
                MANIFEST_CONTENT_TYPE,
                CachePolicy::MaxAge(max_age),
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
