//! The HDS packager: format `f4m-f4f`, Adobe HTTP Dynamic Streaming with
//! an F4M manifest, `abst` bootstraps and F4F fragments carrying FLV tags.
//!
//! ```text
//!  Request.path ─▶ paths::Resource ─┬─ Manifest ──▶ manifest::manifest (F4M 1.0 XML; bootstrap
//!                                   │                inline when ended, by URL when live)
//!                                   ├─ Bootstrap ─▶ manifest::bootstrap ─▶ abst::write (abst/asrt/afrt)
//!                                   └─ Fragment ──▶ fragment::fragment (mdat of FLV tags: headers
//!                                                    written here + SampleData the host splices)
//! ```
//!
//! URLs below the manifest root (see `paths.rs`): `Manifest(format=f4m-f4f)`,
//! `f4m-f4f/t{track}/bootstrap.abst`, `f4m-f4f/t{track}/Seg1-Frag{N}`.
//! Each video track is one `media` with the default (first) audio track's
//! frames muxed into its fragments; without video, each audio track is a
//! media of its own. Fragment numbers derive from media time
//! (`timeline.rs`), so every node serves the same bytes under the same
//! names. Sample data never enters the plugin.

mod abst;
mod fragment;
mod manifest;
mod paths;
mod timeline;

#[cfg(test)]
mod tests;

use sluice_sdk::plugin::{
    CachePolicy, Packager, PackagerInfo, PresentationState, Request, Response, View,
};
use sluice_sdk::time::TimeError;

use paths::{FORMAT, Resource};

/// Content type of the manifest.
const MANIFEST_CONTENT_TYPE: &str = "application/f4m+xml";
/// Content type of a bootstrap.
const BOOTSTRAP_CONTENT_TYPE: &str = "application/octet-stream";

/// How long an ended presentation's manifest and bootstraps may be cached,
/// in seconds.
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
    /// A derived value does not fit its field: 500.
    #[error("{0} does not fit")]
    Overflow(&'static str),
    /// Media that cannot be carried: 500.
    #[error("payload: {0}")]
    Payload(&'static str),
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

/// The HDS packager.
pub struct Hds;

impl Packager for Hds {
    fn info() -> PackagerInfo {
        PackagerInfo {
            name: "hds".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "Adobe HDS: F4M manifest, abst bootstrap, F4F fragments of FLV tags (f4m-f4f)"
                    .into(),
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
        Resource::Manifest => Ok(changing(
            view,
            MANIFEST_CONTENT_TYPE,
            manifest::manifest(view)?.into_bytes(),
        )),
        Resource::Bootstrap { track } => {
            let media = manifest::find_media(view, track)?;
            Ok(changing(
                view,
                BOOTSTRAP_CONTENT_TYPE,
                manifest::bootstrap(view, &media)?,
            ))
        }
        Resource::Fragment { track, number } => {
            let media = manifest::find_media(view, track)?;
            fragment::fragment(view, &media, number)
        }
    }
}

/// A manifest or bootstrap response: live ones may be cached about half a
/// fragment, ended ones for an hour.
fn changing(view: &dyn View, content_type: &str, body: Vec<u8>) -> Response {
    let info = view.info();
    let max_age = match info.state {
        PresentationState::Live => (info.fragment_duration_ms / 2000).max(1),
        PresentationState::Ended => ENDED_MAX_AGE,
    };
    Response::ok(content_type, CachePolicy::MaxAge(max_age), body)
}

sluice_sdk::export!(packager: Hds);
