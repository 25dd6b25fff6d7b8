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

use sluice_sdk::packaging::{Error, half_fragment_s, manifest_cache};
use sluice_sdk::plugin::{Packager, PackagerInfo, Request, Response, View};

use paths::{FORMAT, Resource};

/// Content type of the manifest.
const MANIFEST_CONTENT_TYPE: &str = "application/f4m+xml";
/// Content type of a bootstrap.
const BOOTSTRAP_CONTENT_TYPE: &str = "application/octet-stream";

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
    let not_found = || Error::no_such_resource(&request.path);
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
    let cache = manifest_cache(&view.info(), half_fragment_s);
    Response::ok(content_type, cache, body)
}

sluice_sdk::export!(packager: Hds);
