//! Builds the built-in plugins for `wasm32-wasip2` and hands them to the
//! host crate: `rtmp`, `fmp4` and the packagers are embedded (`include_bytes!` of
//! copies in `OUT_DIR`), the `testbed` plugin's path is exported for tests
//! only.
//!
//! The plugins are built by a nested `cargo build --profile plugin` into
//! `{workspace}/target/plugins`: a separate target directory, because the
//! outer cargo holds the lock of its own one (a nested build there would
//! wait forever). The child environment is cleaned of what the outer build
//! put there for the host (flags, wrappers such as clippy-driver, target
//! directory, profile overrides), as wasmtime's
//! `crates/test-programs/artifacts/build.rs` does. The jobserver
//! (`CARGO_MAKEFLAGS`) is inherited so the nested build shares the outer
//! build's job slots.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Plugin crates built here: (package, embedded as a built-in).
const PLUGINS: &[(&str, bool)] = &[
    ("sluice-plugin-rtmp", true),
    ("sluice-plugin-fmp4", true),
    ("sluice-plugin-hls", true),
    ("sluice-plugin-smooth", true),
    ("sluice-plugin-dash", true),
    ("sluice-plugin-hds", true),
    ("sluice-plugin-testbed", false),
];

const WASM_TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "plugin";

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("host/ lives inside the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target_dir = workspace.join("target").join("plugins");

    // Anything the plugins are built from.
    for dir in ["sdk", "wit", "plugins"] {
        rerun_if_changed_recursive(&workspace.join(dir));
    }
    for file in ["Cargo.toml", "Cargo.lock", "rust-toolchain.toml"] {
        println!("cargo:rerun-if-changed={}", workspace.join(file).display());
    }

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--profile")
        .arg(PROFILE)
        .arg("--target")
        .arg(WASM_TARGET)
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"));
    for (package, _) in PLUGINS {
        cmd.arg("-p").arg(package);
    }
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_RUSTC_WRAPPER",
        "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    // Profile overrides meant for the host (the plugin profile inherits
    // `release`, so `CARGO_PROFILE_RELEASE_*` would leak in); the plugin
    // profile's own variables are kept as a deliberate knob.
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let target_flags = key.starts_with("CARGO_TARGET_") && key.ends_with("_RUSTFLAGS");
        let foreign_profile =
            key.starts_with("CARGO_PROFILE_") && !key.starts_with("CARGO_PROFILE_PLUGIN_");
        if target_flags || foreign_profile {
            cmd.env_remove(key);
        }
    }
    cmd.env("CARGO_TARGET_DIR", &target_dir)
        // The child's stdout would be parsed as build-script directives.
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::inherit());

    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the plugins: {e}"));
    if !status.success() {
        // Not a panic: the cargo output above is the message, a backtrace is noise.
        eprintln!(
            "error: building the plugins for {WASM_TARGET} failed ({status}); see the cargo output \
             above (rerun: cargo build --profile {PROFILE} --target {WASM_TARGET} -p \
             sluice-plugin-rtmp -p sluice-plugin-fmp4 -p sluice-plugin-hls -p sluice-plugin-smooth -p sluice-plugin-dash -p sluice-plugin-hds -p sluice-plugin-testbed)"
        );
        std::process::exit(1);
    }

    let built = target_dir.join(WASM_TARGET).join(PROFILE);
    for (package, embedded) in PLUGINS {
        let file = format!("{}.wasm", package.replace('-', "_"));
        let from = built.join(&file);
        let to = out_dir.join(&file);
        std::fs::copy(&from, &to)
            .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", from.display(), to.display()));
        if !embedded {
            let var = format!(
                "SLUICE_{}_WASM",
                package
                    .trim_start_matches("sluice-plugin-")
                    .to_uppercase()
                    .replace('-', "_")
            );
            println!("cargo:rustc-env={var}={}", to.display());
        }
    }
}

/// Emits `rerun-if-changed` for `path` and, for a directory, everything
/// below it (build output directories excepted).
fn rerun_if_changed_recursive(path: &Path) {
    println!("cargo:rerun-if-changed={}", path.display());
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if entry.file_name() == "target" || entry.file_name() == ".git" {
                continue;
            }
            rerun_if_changed_recursive(&entry.path());
        } else {
            println!("cargo:rerun-if-changed={}", entry.path().display());
        }
    }
}
