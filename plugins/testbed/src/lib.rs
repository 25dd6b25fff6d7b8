//! A packager that misbehaves on request, for the host's isolation tests.
//!
//! Format `testbed`. Paths:
//! - `testbed/loop`: spins forever (cut by the epoch deadline);
//! - `testbed/alloc`: allocates until the memory cap stops it;
//! - `testbed/panic`: panics (a trap);
//! - anything else: 200 with a body naming the build [`MARK`], which tests
//!   patch in the `.wasm` file to tell two builds apart on reload.

use sluice_sdk::plugin::{CachePolicy, Packager, PackagerInfo, Request, Response, View};

/// A marker the reload test rewrites in the built file (same length).
pub const MARK: &str = "SLUICE-TESTBED-MARK-AAAAAAAA";

/// The misbehaving packager.
pub struct Testbed;

impl Packager for Testbed {
    fn info() -> PackagerInfo {
        PackagerInfo {
            name: "testbed".into(),
            version: "0.1.0".into(),
            description: "misbehaves on request (tests only)".into(),
            formats: vec!["testbed".into()],
        }
    }

    fn handle(request: &Request, view: &dyn View) -> Response {
        match request.path.as_str() {
            "testbed/loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "testbed/alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "testbed/panic" => panic!("testbed asked to panic"),
            _ => {
                let tracks = view.tracks().len();
                let body = format!("{} tracks={tracks}\n", std::hint::black_box(MARK));
                Response::ok("text/plain", CachePolicy::NoStore, body.into_bytes())
            }
        }
    }
}

sluice_sdk::export!(packager: Testbed);
