//! The Smooth packager (work in progress): formats mss.

use sluice_sdk::plugin::{Packager, PackagerInfo, Request, Response, View};

/// The Smooth packager.
pub struct Smooth;

impl Packager for Smooth {
    fn info() -> PackagerInfo {
        PackagerInfo {
            name: "smooth".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Smooth packager".into(),
            formats: Vec::new(),
        }
    }

    fn handle(request: &Request, _view: &dyn View) -> Response {
        Response::not_found(&format!("no such resource: {}", request.path))
    }
}

sluice_sdk::export!(packager: Smooth);
