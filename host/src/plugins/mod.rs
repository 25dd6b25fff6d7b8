//! The plugin host: runs packager and ingest-adapter plugins (Wasm
//! components of `sluice:plugin@0.1.0`) in wasmtime.
//!
//! ```text
//!  built-ins (embedded) ─┐                        ┌─▶ packager(format) ─▶ PackagerPlugin::handle
//!  {plugin-dir}/*.wasm ──┴▶ load ─▶ Registry ─────┤      (new Store + instance per request)
//!        ▲ polled every second   (Arc snapshot,   └─▶ ingest(ext) ─▶ IngestPlugin::open ─▶ IngestSession
//!        └──── reload_now() ◀─── swapped whole)            (one Store + instance per connection)
//! ```
//!
//! - One [`wasmtime::Engine`] per host with the pooling allocator, so a
//!   request's instance costs microseconds (`InstancePre` made once per
//!   plugin; a fresh `Store` per call).
//! - Components are compiled once and cached precompiled on disk
//!   (`{cache_dir}/{wasm hash}-{engine hash}.cwasm`).
//! - Every call runs under an epoch deadline ([`PluginConfig::deadline_ms`])
//!   and a memory cap ([`PluginConfig::memory_mib`]); a plugin that traps,
//!   loops or hoards memory fails only its own request (or ingest session)
//!   with [`PluginError::Trap`], [`PluginError::Deadline`] or
//!   [`PluginError::Memory`].
//! - WASI is linked because Rust's std for `wasm32-wasip2` imports it, but it
//!   grants nothing: no files, environment, arguments or network; stdout and
//!   stderr are captured (and logged, or put in the trap message); clocks
//!   read zero and randomness is a fixed sequence, so plugins stay pure
//!   functions; waiting (`wasi:io/poll`) traps.
//! - The plugin directory adds or overrides built-ins by declared name: a
//!   file declaring a built-in's name replaces that built-in entirely; a
//!   format or extension claimed twice goes to directory plugins first (by
//!   file name), then built-ins; a file that cannot be loaded is logged and
//!   skipped (a file that loaded before and is now broken keeps its last
//!   good version). The directory is polled every second (size, mtime,
//!   inode: robust on any file system, unlike inotify on bind mounts and
//!   NFS); on a change a new registry snapshot replaces the old one
//!   atomically. Requests in flight keep the `Arc<PackagerPlugin>` they
//!   started with.

mod bindings;
mod cache;
mod convert;
mod registry;
mod runtime;
mod state;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

use sluice_sdk::plugin::{
    AdapterInfo, Event, PackagerInfo, Request, Response, SessionConfig, SessionError, View,
};
use wasmtime::Store;
use wasmtime::component::ResourceAny;

pub use registry::{Origin, World};

use bindings::{ingest, packager};
use registry::Candidate;
use runtime::{Loaded, Runtime};
use state::PluginState;

/// How often the plugin directory is checked for changes.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Plugin host settings (part of the config file: `[plugins]`).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PluginConfig {
    /// Directory scanned for `*.wasm` plugins (default `{data-dir}/plugins`).
    pub dir: Option<PathBuf>,
    /// Where precompiled components are cached (default `{data-dir}/cache/plugins`).
    pub cache_dir: Option<PathBuf>,
    /// Wall-clock budget of one plugin call, in milliseconds (default 250).
    pub deadline_ms: u64,
    /// Linear memory cap per instance, in MiB (default 64).
    pub memory_mib: u32,
    /// Instances alive at once across all plugins (default 1000).
    pub max_instances: u32,
}

impl Default for PluginConfig {
    fn default() -> Self {
        PluginConfig {
            dir: None,
            cache_dir: None,
            deadline_ms: 250,
            memory_mib: 64,
            max_instances: 1000,
        }
    }
}

/// Errors of the plugin host.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The plugin trapped (panic, out of bounds, unreachable).
    #[error("plugin {plugin} trapped: {message}")]
    Trap {
        /// Plugin name.
        plugin: String,
        /// Trap description (and captured stderr).
        message: String,
    },
    /// The plugin ran past its deadline.
    #[error("plugin {plugin} exceeded its {deadline_ms} ms deadline")]
    Deadline {
        /// Plugin name.
        plugin: String,
        /// The deadline.
        deadline_ms: u64,
    },
    /// The plugin tried to grow memory past its cap.
    #[error("plugin {plugin} exceeded its memory cap")]
    Memory {
        /// Plugin name.
        plugin: String,
    },
    /// The ingest adapter refused the input.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The file cannot be used as a plugin (not a component, wrong world, ...).
    #[error("cannot load plugin {path}: {message}")]
    Load {
        /// File or built-in name.
        path: String,
        /// Why.
        message: String,
    },
    /// No instance could be had (pool exhausted) or another host-side failure.
    #[error("plugin host: {0}")]
    Host(String),
}

/// Result of plugin host operations.
pub type Result<T, E = PluginError> = std::result::Result<T, E>;

/// The built-in plugins, embedded by `build.rs`: (crate, component).
const BUILTINS: &[(&str, &[u8])] = &[
    (
        "sluice-plugin-rtmp",
        include_bytes!(concat!(env!("OUT_DIR"), "/sluice_plugin_rtmp.wasm")),
    ),
    (
        "sluice-plugin-fmp4",
        include_bytes!(concat!(env!("OUT_DIR"), "/sluice_plugin_fmp4.wasm")),
    ),
    (
        "sluice-plugin-hls",
        include_bytes!(concat!(env!("OUT_DIR"), "/sluice_plugin_hls.wasm")),
    ),
    (
        "sluice-plugin-smooth",
        include_bytes!(concat!(env!("OUT_DIR"), "/sluice_plugin_smooth.wasm")),
    ),
    (
        "sluice-plugin-dash",
        include_bytes!(concat!(env!("OUT_DIR"), "/sluice_plugin_dash.wasm")),
    ),
    (
        "sluice-plugin-hds",
        include_bytes!(concat!(env!("OUT_DIR"), "/sluice_plugin_hds.wasm")),
    ),
];

/// The embedded built-in `crate_name` (`sluice-plugin-hls`): its name and
/// component.
fn builtin(crate_name: &str) -> Option<(&'static str, &'static [u8])> {
    BUILTINS
        .iter()
        .find(|(name, _)| *name == crate_name)
        .copied()
}

/// Test support: the misbehaving `testbed` plugin, built but never embedded,
/// and the embedded built-ins' bytes (to test overrides with real plugins).
#[doc(hidden)]
pub mod testing {
    /// Path of the built `testbed` component (format `testbed`).
    pub const TESTBED_WASM: &str = env!("SLUICE_TESTBED_WASM");

    /// The embedded component of a built-in, by crate name
    /// (`sluice-plugin-hls`).
    pub fn builtin(crate_name: &str) -> Option<&'static [u8]> {
        super::builtin(crate_name).map(|(_, wasm)| wasm)
    }
}

impl PluginError {
    /// `trap`, `deadline` or `memory` for a plugin that failed while
    /// running (the metrics' label); `None` otherwise.
    pub fn failure_kind(&self) -> Option<&'static str> {
        match self {
            PluginError::Trap { .. } => Some("trap"),
            PluginError::Deadline { .. } => Some("deadline"),
            PluginError::Memory { .. } => Some("memory"),
            _ => None,
        }
    }
}

/// What a loaded plugin declares and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSummary {
    /// Declared name.
    pub name: String,
    /// Declared version.
    pub version: String,
    /// Declared description.
    pub description: String,
    /// Which world it implements.
    pub world: World,
    /// Formats (packager) or the extension (ingest adapter) it serves.
    pub keys: Vec<String>,
    /// Built-in or file.
    pub origin: Origin,
}

/// Either kind of loaded plugin.
#[derive(Clone)]
enum AnyPlugin {
    Packager(Arc<PackagerPlugin>),
    Ingest(Arc<IngestPlugin>),
}

/// One snapshot of who serves what.
#[derive(Default)]
struct Registry {
    packagers: BTreeMap<String, Arc<PackagerPlugin>>,
    ingest: BTreeMap<String, Arc<IngestPlugin>>,
    active: Vec<PluginSummary>,
    /// Which install this is (1 after start).
    generation: u64,
    /// The packagers' formats, sorted, comma-separated.
    formats: Arc<str>,
}

/// A `*.wasm` file as last seen: enough to tell that it changed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64),
}

/// The last outcome of loading one file.
struct FileState {
    fingerprint: Fingerprint,
    hash: u128,
    /// The last version that loaded (kept when a newer version fails).
    loaded: Option<Candidate<AnyPlugin>>,
}

/// Reload state, behind a mutex so reloads do not overlap.
struct Loader {
    builtins: Vec<Candidate<AnyPlugin>>,
    files: BTreeMap<PathBuf, FileState>,
}

/// The plugin host.
pub struct PluginHost {
    runtime: Arc<Runtime>,
    dir: PathBuf,
    registry: RwLock<Arc<Registry>>,
    loader: Mutex<Loader>,
    generation: tokio::sync::watch::Sender<u64>,
    builtin_failures: Vec<String>,
}

impl PluginHost {
    /// Whether the epoch thread that enforces call deadlines is parked:
    /// true once no plugin has run for a while (it wakes with the next
    /// call). For diagnostics and tests.
    pub fn epoch_idle(&self) -> bool {
        self.runtime.idle()
    }

    /// Starts the host: builds the engine, loads built-ins and the plugin
    /// directory, and starts a background thread that polls the directory
    /// every second and reloads on change (the thread ends with the host).
    ///
    /// A built-in or a file that cannot be loaded is logged and skipped.
    pub fn new(config: &PluginConfig, data_dir: &Path) -> Result<Arc<Self>> {
        let dir = config
            .dir
            .clone()
            .unwrap_or_else(|| data_dir.join("plugins"));
        let cache_dir = config
            .cache_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("cache").join("plugins"));
        let runtime = Runtime::new(config, Some(cache_dir))?;
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot create the plugin directory");
        }

        let mut builtins = Vec::new();
        let mut builtin_failures = Vec::new();
        for (crate_name, wasm) in BUILTINS {
            let origin = Origin::Builtin(crate_name);
            match load_candidate(&runtime, crate_name, wasm, origin) {
                Ok(c) => builtins.push(c),
                Err(e) => {
                    tracing::error!(error = %e, "built-in plugin unusable; skipped");
                    builtin_failures.push(format!("built-in {crate_name} did not load: {e}"));
                }
            }
        }

        let host = Arc::new(PluginHost {
            runtime,
            dir,
            registry: RwLock::new(Arc::default()),
            loader: Mutex::new(Loader {
                builtins,
                files: BTreeMap::new(),
            }),
            generation: tokio::sync::watch::Sender::new(0),
            builtin_failures,
        });
        host.reload_now();
        spawn_watcher(Arc::downgrade(&host))
            .map_err(|e| PluginError::Host(format!("cannot start the plugin watcher: {e}")))?;
        Ok(host)
    }

    /// Why built-in plugins did not load (readiness); empty normally.
    pub fn builtin_failures(&self) -> Vec<String> {
        self.builtin_failures.clone()
    }

    /// The packager serving `format`, if any.
    pub fn packager(&self, format: &str) -> Option<Arc<PackagerPlugin>> {
        self.snapshot().packagers.get(format).cloned()
    }

    /// The ingest adapter for `extension` (`rtmp`, `isml`), if any.
    pub fn ingest(&self, extension: &str) -> Option<Arc<IngestPlugin>> {
        self.snapshot().ingest.get(extension).cloned()
    }

    /// The formats packagers serve now (sorted, comma-separated), and the
    /// registry generation they belong to: responses packaged under one
    /// generation are not served under another (a plugin added, replaced
    /// or removed changes what packagers answer).
    pub fn formats(&self) -> (u64, Arc<str>) {
        let r = self.snapshot();
        (r.generation, r.formats.clone())
    }

    /// The plugins in effect (after overrides), directory ones first.
    pub fn plugins(&self) -> Vec<PluginSummary> {
        self.snapshot().active.clone()
    }

    /// The plugin directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many registry snapshots were installed so far (1 after start).
    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// Waits until a snapshot newer than `after` is installed; returns its
    /// generation.
    pub async fn reloaded(&self, after: u64) -> u64 {
        let mut rx = self.generation.subscribe();
        // The sender lives in `self`, so the channel cannot close here.
        match rx.wait_for(|g| *g > after).await {
            Ok(g) => *g,
            Err(_) => self.generation(),
        }
    }

    /// Rescans the plugin directory now and installs a new snapshot
    /// (blocking: may compile). Returns the new generation. The watcher
    /// calls this on a change; callers may too.
    pub fn reload_now(&self) -> u64 {
        let mut loader = self.loader.lock().unwrap_or_else(|e| e.into_inner());
        let listing = scan(&self.dir);
        let mut files = BTreeMap::new();
        for (path, fingerprint) in listing {
            let prev = loader.files.remove(&path);
            let state = match prev {
                Some(prev) if prev.fingerprint == fingerprint => prev,
                prev => self.load_file(&path, fingerprint, prev),
            };
            files.insert(path, state);
        }
        loader.files = files;

        let candidates: Vec<_> = loader
            .builtins
            .iter()
            .cloned()
            .chain(loader.files.values().filter_map(|f| f.loaded.clone()))
            .collect();
        let resolved = registry::resolve(candidates);
        for note in &resolved.notes {
            tracing::info!("{note}");
        }
        let registry = Registry {
            packagers: resolved
                .packagers
                .into_iter()
                .filter_map(|(k, p)| match p {
                    AnyPlugin::Packager(p) => Some((k, p)),
                    AnyPlugin::Ingest(_) => None,
                })
                .collect(),
            ingest: resolved
                .ingest
                .into_iter()
                .filter_map(|(k, p)| match p {
                    AnyPlugin::Ingest(p) => Some((k, p)),
                    AnyPlugin::Packager(_) => None,
                })
                .collect(),
            active: resolved.active.iter().map(summary).collect(),
            // Installs are serialised by the loader lock held here.
            generation: *self.generation.borrow() + 1,
            formats: Arc::from(""),
        };
        let registry = Registry {
            formats: registry
                .packagers
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(",")
                .into(),
            ..registry
        };
        let generation = registry.generation;
        *self.registry.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(registry);
        self.generation.send_replace(generation);
        drop(loader);
        generation
    }

    /// Loads a new or changed file. A file that loaded before and is now
    /// unreadable or unusable keeps its last good version (a half-written
    /// file is seen again, complete, at the next poll).
    fn load_file(
        &self,
        path: &Path,
        fingerprint: Fingerprint,
        prev: Option<FileState>,
    ) -> FileState {
        let last_good = prev.and_then(|p| p.loaded.map(|c| (p.hash, c)));
        let wasm = match std::fs::read(path) {
            Ok(w) => w,
            Err(e) => {
                // Remembered with its fingerprint: logged once, not every poll.
                tracing::error!(path = %path.display(), error = %e, "cannot read plugin file");
                return FileState {
                    fingerprint,
                    hash: 0,
                    loaded: last_good.map(|(_, c)| c),
                };
            }
        };
        let hash = xxhash_rust::xxh3::xxh3_128(&wasm);
        let loaded = match last_good {
            // Touched, not changed.
            Some((h, c)) if h == hash => Some(c),
            last_good => {
                let label = path.display().to_string();
                match load_candidate(&self.runtime, &label, &wasm, Origin::File(path.to_owned())) {
                    Ok(c) => {
                        tracing::info!(path = %path.display(), plugin = %c.name, "plugin loaded");
                        Some(c)
                    }
                    Err(e) => match last_good {
                        Some((_, c)) => {
                            tracing::error!(error = %e, "plugin file unusable; keeping the version loaded before");
                            Some(c)
                        }
                        None => {
                            tracing::error!(error = %e, "plugin file unusable; skipped");
                            None
                        }
                    },
                }
            }
        };
        FileState {
            fingerprint,
            hash,
            loaded,
        }
    }

    /// Whether the directory differs from what was loaded last.
    fn dir_changed(&self) -> bool {
        let listing = scan(&self.dir);
        let loader = self.loader.lock().unwrap_or_else(|e| e.into_inner());
        listing.len() != loader.files.len()
            || listing
                .iter()
                .zip(loader.files.iter())
                .any(|((p, f), (q, s))| p != q || *f != s.fingerprint)
    }

    fn snapshot(&self) -> Arc<Registry> {
        self.registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Polls the plugin directory; ends when the host is dropped.
fn spawn_watcher(host: Weak<PluginHost>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("sluice-plugin-watch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(POLL_INTERVAL);
                let Some(host) = host.upgrade() else { break };
                if host.dir_changed() {
                    crate::metrics::metrics().plugin_reloads.inc();
                    let generation = host.reload_now();
                    tracing::info!(generation, dir = %host.dir.display(), "plugins reloaded");
                }
            }
        })?;
    Ok(())
}

/// The `*.wasm` regular files of `dir` (symlinks followed), by path.
fn scan(dir: &Path) -> BTreeMap<PathBuf, Fingerprint> {
    let mut files = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.filter_map(std::result::Result::ok) {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "wasm") {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        #[cfg(unix)]
        let inode = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        files.insert(
            path,
            Fingerprint {
                len: meta.len(),
                modified: meta.modified().ok(),
                #[cfg(unix)]
                inode,
            },
        );
    }
    files
}

/// Loads one component and wraps it for the registry.
fn load_candidate(
    runtime: &Arc<Runtime>,
    label: &str,
    wasm: &[u8],
    origin: Origin,
) -> Result<Candidate<AnyPlugin>> {
    let invalid = |message: String| PluginError::Load {
        path: label.to_owned(),
        message,
    };
    match runtime.load(label, wasm)? {
        Loaded::Packager { pre, info } => {
            let info = convert::packager_info(info);
            check_name(&info.name).map_err(invalid)?;
            if info.formats.is_empty() || info.formats.iter().any(|f| f.is_empty()) {
                return Err(invalid("declares no format (or an empty one)".into()));
            }
            let plugin = Arc::new(PackagerPlugin {
                runtime: runtime.clone(),
                name: Arc::from(info.name.as_str()),
                labels: crate::metrics::PluginLabels {
                    plugin: info.name.clone(),
                    world: "packager",
                },
                origin: origin.clone(),
                info,
                pre,
            });
            Ok(Candidate {
                origin,
                world: World::Packager,
                name: plugin.info.name.clone(),
                keys: plugin.info.formats.clone(),
                plugin: AnyPlugin::Packager(plugin),
            })
        }
        Loaded::Ingest { pre, info } => {
            let info = convert::adapter_info(info);
            check_name(&info.name).map_err(invalid)?;
            if info.extension.is_empty() {
                return Err(invalid("declares no extension".into()));
            }
            let plugin = Arc::new(IngestPlugin {
                runtime: runtime.clone(),
                name: Arc::from(info.name.as_str()),
                labels: crate::metrics::PluginLabels {
                    plugin: info.name.clone(),
                    world: "ingest-adapter",
                },
                origin: origin.clone(),
                info,
                pre,
            });
            Ok(Candidate {
                origin,
                world: World::IngestAdapter,
                name: plugin.info.name.clone(),
                keys: vec![plugin.info.extension.clone()],
                plugin: AnyPlugin::Ingest(plugin),
            })
        }
    }
}

/// A plugin name is a short printable identifier.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "declares the name {name:?} (1 to 64 of A-Z a-z 0-9 - _ .)"
        ))
    }
}

fn summary(c: &Candidate<AnyPlugin>) -> PluginSummary {
    let (version, description) = match &c.plugin {
        AnyPlugin::Packager(p) => (&p.info.version, &p.info.description),
        AnyPlugin::Ingest(p) => (&p.info.version, &p.info.description),
    };
    PluginSummary {
        name: c.name.clone(),
        version: version.clone(),
        description: description.clone(),
        world: c.world,
        keys: c.keys.clone(),
        origin: c.origin.clone(),
    }
}

/// A loaded packager.
pub struct PackagerPlugin {
    runtime: Arc<Runtime>,
    name: Arc<str>,
    /// Its metrics' labels, made once.
    labels: crate::metrics::PluginLabels,
    origin: Origin,
    info: PackagerInfo,
    pre: packager::PackagerPre<PluginState>,
}

impl PackagerPlugin {
    /// What it declares.
    pub fn info(&self) -> &PackagerInfo {
        &self.info
    }

    /// Where it was loaded from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Runs one request in a fresh instance (blocking; call from `spawn_blocking`).
    pub fn handle(
        &self,
        request: &Request,
        view: Arc<dyn View + Send + Sync>,
    ) -> Result<Response, PluginError> {
        self.handle_measured(request, view).map(|(r, _)| r)
    }

    /// [`PackagerPlugin::handle`], with what the call cost.
    pub fn handle_measured(
        &self,
        request: &Request,
        view: Arc<dyn View + Send + Sync>,
    ) -> Result<(Response, CallCost), PluginError> {
        let began = std::time::Instant::now();
        let _busy = self.runtime.busy();
        let mut store = self.runtime.store(&self.name);
        store.data_mut().view = Some(view);
        let req = convert::request(request);
        let result = self
            .pre
            .instantiate(&mut store)
            .and_then(|b| b.sluice_plugin_packaging().call_handle(&mut store, &req));
        let labels = &self.labels;
        let cost = CallCost {
            elapsed: began.elapsed(),
            memory_peak: store.data().limiter.peak,
        };
        match result {
            Ok(response) => {
                store.data_mut().flush_output();
                crate::metrics::metrics().plugin_call(labels, cost.elapsed, cost.memory_peak, None);
                Ok((convert::response(response), cost))
            }
            Err(e) => {
                let err = self.runtime.failure(&self.name, e, &mut store);
                crate::metrics::metrics().plugin_call(
                    labels,
                    cost.elapsed,
                    cost.memory_peak,
                    err.failure_kind(),
                );
                Err(err)
            }
        }
    }
}

/// What one plugin call cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallCost {
    /// Wall-clock time, instantiation included.
    pub elapsed: std::time::Duration,
    /// The largest linear memory the instance had, bytes.
    pub memory_peak: usize,
}

/// A loaded ingest adapter.
pub struct IngestPlugin {
    runtime: Arc<Runtime>,
    name: Arc<str>,
    /// Its metrics' labels, made once (sessions share them).
    labels: crate::metrics::PluginLabels,
    origin: Origin,
    info: AdapterInfo,
    pre: ingest::IngestAdapterPre<PluginState>,
}

impl IngestPlugin {
    /// What it declares.
    pub fn info(&self) -> &AdapterInfo {
        &self.info
    }

    /// Where it was loaded from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Opens a session (one instance for the connection's lifetime).
    pub fn open(&self, config: SessionConfig) -> Result<IngestSession, PluginError> {
        let _busy = self.runtime.busy();
        let mut store = self.runtime.store(&self.name);
        let config = convert::session_config(config);
        let opened = self.pre.instantiate(&mut store).and_then(|bindings| {
            let session = bindings
                .sluice_plugin_ingest()
                .session()
                .call_constructor(&mut store, &config)?;
            Ok((bindings, session))
        });
        match opened {
            Ok((bindings, session)) => Ok(IngestSession {
                runtime: self.runtime.clone(),
                name: self.name.clone(),
                labels: self.labels.clone(),
                store,
                bindings,
                session,
                failed: None,
            }),
            Err(e) => Err(self.runtime.failure(&self.name, e, &mut store)),
        }
    }
}

/// One ingest session: a live instance owned by one connection.
///
/// A trap, deadline or memory failure ends the session: the instance may
/// be inconsistent, so every later call fails with the same error.
pub struct IngestSession {
    runtime: Arc<Runtime>,
    name: Arc<str>,
    labels: crate::metrics::PluginLabels,
    store: Store<PluginState>,
    bindings: ingest::IngestAdapter,
    session: ResourceAny,
    failed: Option<String>,
}

/// A session call's raw outcome.
type Call<T> = wasmtime::Result<T>;

impl IngestSession {
    /// Runs `f` under a fresh deadline, poisoning the session on failure.
    fn call<T>(
        &mut self,
        f: impl FnOnce(
            &ingest::IngestAdapter,
            &mut Store<PluginState>,
            ResourceAny,
        ) -> Call<std::result::Result<T, SessionError>>,
    ) -> Result<T> {
        if let Some(failed) = &self.failed {
            return Err(PluginError::Trap {
                plugin: self.name.to_string(),
                message: format!("session unusable after an earlier failure: {failed}"),
            });
        }
        let began = std::time::Instant::now();
        let busy = self.runtime.arm(&mut self.store);
        let outcome = f(&self.bindings, &mut self.store, self.session);
        drop(busy);
        let (elapsed, peak) = (began.elapsed(), self.store.data().limiter.peak);
        let labels = &self.labels;
        let m = crate::metrics::metrics();
        match outcome {
            Ok(Ok(v)) => {
                self.store.data_mut().flush_output();
                m.plugin_call(labels, elapsed, peak, None);
                Ok(v)
            }
            Ok(Err(e)) => {
                self.store.data_mut().flush_output();
                m.plugin_call(labels, elapsed, peak, None);
                Err(PluginError::Session(e))
            }
            Err(e) => {
                let err = self.runtime.failure(&self.name, e, &mut self.store);
                m.plugin_call(labels, elapsed, peak, err.failure_kind());
                self.failed = Some(err.to_string());
                Err(err)
            }
        }
    }

    /// Feeds bytes; see the WIT `session.feed`.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<Event>, PluginError> {
        self.call(|b, store, session| {
            let r = b
                .sluice_plugin_ingest()
                .session()
                .call_feed(store, session, data)?;
            Ok(r.map(convert::events).map_err(convert::session_error))
        })
    }

    /// Answers an authorisation request.
    pub fn authorize(
        &mut self,
        id: u32,
        verdict: Result<(), String>,
    ) -> Result<Vec<Event>, PluginError> {
        self.call(|b, store, session| {
            let verdict = verdict.as_ref().map(|_| ()).map_err(String::as_str);
            let r = b
                .sluice_plugin_ingest()
                .session()
                .call_authorize(store, session, id, verdict)?;
            Ok(r.map(convert::events).map_err(convert::session_error))
        })
    }

    /// The largest linear memory the session's instance had so far, bytes.
    pub fn memory_peak(&self) -> usize {
        self.store.data().limiter.peak
    }

    /// The peer closed.
    pub fn close(&mut self) -> Result<Vec<Event>, PluginError> {
        self.call(|b, store, session| {
            let r = b
                .sluice_plugin_ingest()
                .session()
                .call_close(store, session)?;
            Ok(Ok(convert::events(r)))
        })
    }
}

impl Drop for IngestSession {
    fn drop(&mut self) {
        self.store.data_mut().flush_output();
    }
}

/// A plugin `sluice plugin check` loaded: what it declares, and the
/// plugin, ready to run.
pub struct Checked {
    /// Name, version, world and version of the interface, formats or
    /// extension, description: one `key: value` per line.
    pub description: String,
    /// The plugin.
    pub plugin: CheckedPlugin,
    runtime: Arc<Runtime>,
}

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checked")
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

impl Checked {
    /// The built-in packager `crate_name` (`sluice-plugin-hls`), loaded
    /// beside the checked plugin (to make fixtures for ingest adapters).
    pub fn builtin_packager(&self, crate_name: &str) -> Result<Arc<PackagerPlugin>, PluginError> {
        let (name, wasm) = builtin(crate_name)
            .ok_or_else(|| PluginError::Host(format!("no built-in plugin {crate_name}")))?;
        let origin = Origin::Builtin(name);
        match load_candidate(&self.runtime, crate_name, wasm, origin)?.plugin {
            AnyPlugin::Packager(p) => Ok(p),
            AnyPlugin::Ingest(_) => {
                Err(PluginError::Host(format!("{crate_name} is not a packager")))
            }
        }
    }
}

/// The plugin a check loaded.
pub enum CheckedPlugin {
    /// A packager.
    Packager(Arc<PackagerPlugin>),
    /// An ingest adapter.
    Ingest(Arc<IngestPlugin>),
}

/// Loads one file and describes it, for `sluice plugin check`.
///
/// Compiles without touching any cache; the error says why the file is
/// unusable (not a component, wrong world or version, missing export,
/// an import the host does not provide, a trap in `info`).
pub fn check(path: &Path) -> Result<Checked, PluginError> {
    let label = path.display().to_string();
    let wasm = std::fs::read(path).map_err(|e| PluginError::Load {
        path: label.clone(),
        message: e.to_string(),
    })?;
    let config = PluginConfig {
        max_instances: 4,
        ..PluginConfig::default()
    };
    let runtime = Runtime::new(&config, None)?;
    let c = load_candidate(&runtime, &label, &wasm, Origin::File(path.to_owned()))?;
    let s = summary(&c);
    let keys = match s.world {
        World::Packager => format!("formats: {}", s.keys.join(", ")),
        World::IngestAdapter => format!("extension: {}", s.keys.join(", ")),
    };
    let description = format!(
        "name: {}\nversion: {}\nworld: {} (sluice:plugin@{})\n{keys}\ndescription: {}",
        s.name,
        s.version,
        s.world,
        runtime::WIT_VERSION,
        s.description
    );
    let plugin = match c.plugin {
        AnyPlugin::Packager(p) => CheckedPlugin::Packager(p),
        AnyPlugin::Ingest(p) => CheckedPlugin::Ingest(p),
    };
    Ok(Checked {
        description,
        plugin,
        runtime,
    })
}
