//! The on-disk cache of precompiled components.
//!
//! A component is compiled by Cranelift once; the machine code is written
//! to `{cache_dir}/{wasm hash}-{engine hash}.cwasm` and later loaded with
//! [`Component::deserialize_file`] (an `mmap`, no compilation). The key
//! combines a 128-bit hash of the Wasm bytes with the engine's
//! [`precompile_compatibility_hash`](Engine::precompile_compatibility_hash)
//! (wasmtime version, target, and every setting that changes code), so a
//! different plugin build or engine configuration never reads a stale entry.
//!
//! Entries are written to a unique temporary file in the same directory and
//! renamed into place, so processes sharing the directory (parallel test
//! binaries, a restart while another instance runs) never see a partial file;
//! a finished entry is never written to again.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::Engine;
use wasmtime::component::Component;

/// The cache key of `wasm` for `engine`: a file name.
pub(crate) fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    key_from(xxhash_rust::xxh3::xxh3_128(wasm), h.finish())
}

/// The file name for a Wasm content hash and an engine hash.
fn key_from(wasm_hash: u128, engine_hash: u64) -> String {
    format!("{wasm_hash:032x}-{engine_hash:016x}.cwasm")
}

/// Compiles `wasm` for `engine`, or loads it from `cache_dir` when it was
/// compiled before. Without a cache directory (or when it cannot be written)
/// the component is compiled in memory.
pub(crate) fn component(
    engine: &Engine,
    cache_dir: Option<&Path>,
    wasm: &[u8],
) -> wasmtime::Result<Component> {
    let Some(dir) = cache_dir else {
        return Component::from_binary(engine, wasm);
    };
    let path = dir.join(cache_key(engine, wasm));
    if path.is_file() {
        // SAFETY: `deserialize_file` runs the file's machine code, so the
        // file must be what `Engine::precompile_component` wrote and must not
        // change while mapped. Files in the cache directory are written only
        // by this function (in this or another Sluice process): complete
        // before they are renamed into place, never modified afterwards (a
        // rewrite is a new file renamed over the name, which leaves mapped
        // inodes intact), and named by the hash of the Wasm they were
        // compiled from and of the engine settings. wasmtime checks the
        // header, version and settings again on load. The cache directory is
        // therefore as trusted as the binary itself and must be writable
        // only by the operator.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => return Ok(c),
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = %e,
                "unusable precompiled plugin in cache; compiling again"
            ),
        }
    }
    let compiled = engine.precompile_component(wasm)?;
    match write_atomically(dir, &path, &compiled) {
        // SAFETY: as above; the file was just written by this function.
        Ok(()) => unsafe { Component::deserialize_file(engine, &path) },
        Err(e) => {
            tracing::warn!(
                dir = %dir.display(),
                error = %e,
                "cannot write the plugin cache; using the compiled plugin from memory"
            );
            // SAFETY: the bytes come from `precompile_component` of this engine.
            unsafe { Component::deserialize(engine, &compiled) }
        }
    }
}

/// Writes `bytes` to `path` through a temporary file in `dir` and a rename.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("entry");
    let tmp: PathBuf = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_both_hashes() {
        let k = key_from(0xabc, 0x12);
        assert_eq!(k, "00000000000000000000000000000abc-0000000000000012.cwasm");
        assert_ne!(key_from(1, 2), key_from(2, 1));
    }

    #[test]
    fn key_depends_on_content_and_engine() {
        let a = Engine::default();
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let b = Engine::new(&config).expect("engine");
        let wasm = b"\0asm\x0d\0\x01\0";
        // Stable for the same inputs (also across processes: no random state).
        assert_eq!(cache_key(&a, wasm), cache_key(&a, wasm));
        assert_eq!(cache_key(&a, wasm), cache_key(&Engine::default(), wasm));
        // A different plugin or a code-changing setting is another entry.
        assert_ne!(cache_key(&a, wasm), cache_key(&a, b"\0asm\x0d\0\x01\x01"));
        assert_ne!(cache_key(&a, wasm), cache_key(&b, wasm));
        // Same Wasm: same first half.
        assert_eq!(cache_key(&a, wasm)[..32], cache_key(&b, wasm)[..32]);
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("sluice-cache-test-{}", std::process::id()));
        let path = dir.join("x.cwasm");
        write_atomically(&dir, &path, b"one").expect("write");
        write_atomically(&dir, &path, b"two").expect("rewrite");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x.cwasm")]);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
