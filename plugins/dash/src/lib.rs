//! The DASH packager (work in progress): formats mpd-time-csf, mpd-time-cmaf.

use sluice_sdk::plugin::{Packager, PackagerInfo, Request, Response, View};

/// The DASH packager.
pub struct Dash;

impl Packager for Dash {
    fn info() -> PackagerInfo {
        PackagerInfo {
            name: "dash".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "DASH packager".into(),
            formats: Vec::new(),
        }
    }

    fn handle(request: &Request, _view: &dyn View) -> Response {
        Response::not_found(&format!("no such resource: {}", request.path))
    }
}

sluice_sdk::export!(packager: Dash);
