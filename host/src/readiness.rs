//! `GET /readyz` on the admin listener: ready (200) when the node can do
//! its job, else 503 with one reason per line.
//!
//! - plugins: every built-in plugin loaded;
//! - an ingest node: its asset storage takes a probe object (written and
//!   deleted);
//! - an edge: at least one upstream answers `/_tier/v1/health`.
//!
//! Probes touch storage and upstreams, so their verdict is kept for
//! [`PROBE_TTL`]: a load balancer polling every second costs one probe in
//! five seconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::edge::Edge;
use crate::plugins::PluginHost;
use crate::storage::AssetStore;

/// How long a probe's verdict is kept.
pub const PROBE_TTL: Duration = Duration::from_secs(5);

/// What `/readyz` checks.
pub struct Readiness {
    plugins: Arc<PluginHost>,
    storage: Option<Arc<AssetStore>>,
    edge: Option<Arc<Edge>>,
    probed: tokio::sync::Mutex<Option<(Instant, Vec<String>)>>,
}

impl Readiness {
    /// An ingest node's: plugins and asset storage.
    pub fn ingest(plugins: Arc<PluginHost>, storage: Arc<AssetStore>) -> Self {
        Readiness {
            plugins,
            storage: Some(storage),
            edge: None,
            probed: tokio::sync::Mutex::new(None),
        }
    }

    /// An edge's: plugins and upstreams.
    pub fn edge(plugins: Arc<PluginHost>, edge: Arc<Edge>) -> Self {
        Readiness {
            plugins,
            storage: None,
            edge: Some(edge),
            probed: tokio::sync::Mutex::new(None),
        }
    }

    /// Why the node is not ready; empty when it is.
    pub async fn reasons(&self) -> Vec<String> {
        let mut reasons: Vec<String> = self
            .plugins
            .builtin_failures()
            .into_iter()
            .map(|f| format!("plugins: {f}"))
            .collect();
        // One probe at a time; its verdict serves everyone for a while.
        let mut probed = self.probed.lock().await;
        let fresh = probed
            .as_ref()
            .filter(|(at, _)| at.elapsed() < PROBE_TTL)
            .map(|(_, r)| r.clone());
        let probes = match fresh {
            Some(r) => r,
            None => {
                let r = self.probe().await;
                *probed = Some((Instant::now(), r.clone()));
                r
            }
        };
        reasons.extend(probes);
        reasons
    }

    async fn probe(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        if let Some(storage) = &self.storage
            && let Err(e) = storage.check_writable().await
        {
            reasons.push(format!(
                "storage: {} is not writable: {e}",
                storage.describe()
            ));
        }
        if let Some(edge) = &self.edge {
            let errors = edge.probe_upstreams().await;
            if errors.len() == edge.upstream_urls().len() {
                reasons.push(format!("upstreams: none reachable ({})", errors.join("; ")));
            }
        }
        reasons
    }

    /// The `/readyz` answer.
    pub async fn response(&self) -> http::Response<crate::delivery::Body> {
        let reasons = self.reasons().await;
        let (status, body) = if reasons.is_empty() {
            (http::StatusCode::OK, "ready\n".to_owned())
        } else {
            (
                http::StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready\n{}\n", reasons.join("\n")),
            )
        };
        http::Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header(http::header::CACHE_CONTROL, "no-store")
            .body(crate::delivery::Body::text(body))
            .unwrap_or_default()
    }
}
