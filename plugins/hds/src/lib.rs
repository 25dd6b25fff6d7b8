//! The Hds packager (work in progress): formats f4m-f4f.

use sluice_sdk::plugin::{Packager, PackagerInfo, Request, Response, View};

/// The Hds packager.
pub struct Hds;

impl Packager for Hds {
    fn info() -> PackagerInfo {
        PackagerInfo {
            name: "hds".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Hds packager".into(),
            formats: Vec::new(),
        }
    }

    fn handle(request: &Request, _view: &dyn View) -> Response {
        Response::not_found(&format!("no such resource: {}", request.path))
    }
}

sluice_sdk::export!(packager: Hds);
