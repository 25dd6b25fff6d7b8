//! The plugin host (OWNED BY THE PLUGIN-HOST HELPER; this stub fixes the API).
//!
//! One wasmtime `Engine`; components compiled once and cached precompiled on
//! disk; `InstancePre` + pooling allocator; epoch deadline and memory cap per
//! instance; a plugin directory that adds/overrides built-ins and reloads.

use std::path::PathBuf;
use std::sync::Arc;

use sluice_sdk::plugin::{
    AdapterInfo, Event, PackagerInfo, Request, Response, SessionConfig, SessionError, View,
};

/// Plugin host settings (part of the config file: `[plugins]`).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
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

/// The plugin host.
pub struct PluginHost {}

impl PluginHost {
    /// Starts the host: builds the engine, loads built-ins and the plugin
    /// directory, and (when a tokio runtime is present) watches the directory.
    pub fn new(
        config: &PluginConfig,
        data_dir: &std::path::Path,
    ) -> Result<Arc<Self>, PluginError> {
        let _ = (config, data_dir);
        todo!()
    }

    /// The packager serving `format`, if any.
    pub fn packager(&self, format: &str) -> Option<Arc<PackagerPlugin>> {
        let _ = format;
        todo!()
    }

    /// The ingest adapter for `extension` (`rtmp`, `isml`), if any.
    pub fn ingest(&self, extension: &str) -> Option<Arc<IngestPlugin>> {
        let _ = extension;
        todo!()
    }
}

/// A loaded packager.
pub struct PackagerPlugin {}

impl PackagerPlugin {
    /// What it declares.
    pub fn info(&self) -> &PackagerInfo {
        todo!()
    }

    /// Runs one request in a fresh instance (blocking; call from `spawn_blocking`).
    pub fn handle(
        &self,
        request: &Request,
        view: Arc<dyn View + Send + Sync>,
    ) -> Result<Response, PluginError> {
        let _ = (request, view);
        todo!()
    }
}

/// A loaded ingest adapter.
pub struct IngestPlugin {}

impl IngestPlugin {
    /// What it declares.
    pub fn info(&self) -> &AdapterInfo {
        todo!()
    }

    /// Opens a session (one instance for the connection's lifetime).
    pub fn open(&self, config: SessionConfig) -> Result<IngestSession, PluginError> {
        let _ = config;
        todo!()
    }
}

/// One ingest session: a live instance owned by one connection.
pub struct IngestSession {}

impl IngestSession {
    /// Feeds bytes; see the WIT `session.feed`.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<Event>, PluginError> {
        let _ = data;
        todo!()
    }

    /// Answers an authorisation request.
    pub fn authorize(
        &mut self,
        id: u32,
        verdict: Result<(), String>,
    ) -> Result<Vec<Event>, PluginError> {
        let _ = (id, verdict);
        todo!()
    }

    /// The peer closed.
    pub fn close(&mut self) -> Result<Vec<Event>, PluginError> {
        todo!()
    }
}

/// Loads one file and describes it, for `sluice plugin check`.
pub fn check(path: &std::path::Path) -> Result<String, PluginError> {
    let _ = path;
    todo!()
}
