//! The committed seed corpora match what `sluice_fuzz::seeds` writes.
//! `BLESS=1 cargo +nightly test --manifest-path fuzz/Cargo.toml` rewrites
//! them; review the diff.

use std::fs;
use std::path::Path;

use sluice_fuzz::seeds::{TARGETS, for_target};

#[test]
fn seeds_are_current() {
    let bless = std::env::var_os("BLESS").is_some_and(|v| v == "1");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let mut stale = Vec::new();
    for target in TARGETS {
        let dir = root.join(target);
        let seeds = for_target(target);
        if bless {
            fs::create_dir_all(&dir).expect("create the seed directory");
            for entry in fs::read_dir(&dir).expect("list seeds") {
                let path = entry.expect("seed entry").path();
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if name.starts_with("gen-") && !seeds.iter().any(|(n, _)| *n == name) {
                    fs::remove_file(&path).expect("remove a stale seed");
                }
            }
        }
        let mut total = 0;
        for (name, bytes) in &seeds {
            let path = dir.join(name);
            if bless {
                fs::write(&path, bytes).expect("write a seed");
            } else if fs::read(&path).ok().as_ref() != Some(bytes) {
                stale.push(format!("{target}/{name}"));
            }
            total += bytes.len();
        }
        for entry in fs::read_dir(&dir).expect("list seeds") {
            let path = entry.expect("seed entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with("gen-") && !seeds.iter().any(|(n, _)| *n == name) {
                stale.push(format!("{target}/{name} (no longer generated)"));
            } else if !name.starts_with("gen-") {
                total += fs::metadata(&path).expect("seed size").len() as usize;
            }
        }
        assert!(total < 100 << 10, "{target}: seeds total {total} bytes");
    }
    assert!(
        stale.is_empty(),
        "seed files out of date (rerun with BLESS=1): {stale:?}"
    );
}
