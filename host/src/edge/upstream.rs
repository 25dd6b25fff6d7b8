//! The upstreams of an edge: ordering by rendezvous hashing, health with
//! jittered back-off, and bounded requests to the upstream interface: over
//! HTTP (reqwest) for `http://` and `https://`, over the QUIC tier protocol
//! ([`super::quic`]) for `quic://HOST:PORT?cert-sha256=HEX`.
//!
//! ```text
//!  ordered(key):  healthy upstreams by score xxh3(url, key) descending,
//!                 then those backing off (same order): every edge sends a
//!                 channel to the same shield, and a dead one is tried last
//!  failure:       back-off 250 ms · 2^(n-1), at most 8 s, ±25 % jitter;
//!                 a probe of /_tier/v1/health ends it early
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use http::StatusCode;

pub use super::answer::{Answer, UpstreamError};
use super::quic::{Pushes, QuicUpstream, Subscription, Subscriptions};
use crate::config::parse_upstream;
use crate::storage::Fragment;

/// Longest back-off of a failing upstream.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// First back-off of a failing upstream.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// One upstream: an ingest node, a shield in front of one, or another edge.
#[derive(Debug)]
pub struct Upstream {
    /// Base URL without a trailing slash (`http://host:port`,
    /// `quic://host:port`).
    pub url: String,
    /// Position on the command line (a bounded metric label).
    pub index: usize,
    health: Mutex<Health>,
    /// The QUIC transport of a `quic://` upstream (else HTTP).
    quic: Option<Arc<QuicUpstream>>,
}

#[derive(Debug, Default)]
struct Health {
    failures: u32,
    down_until: Option<Instant>,
}

impl Upstream {
    /// Whether the upstream is backing off after failures.
    pub fn is_down(&self) -> bool {
        self.down_until().is_some_and(|t| t > Instant::now())
    }

    /// When its back-off ends, if it failed last.
    pub fn down_until(&self) -> Option<Instant> {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .down_until
    }

    /// Records a failure and starts (or lengthens) the back-off.
    pub fn failed(&self, why: &str) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        h.failures = h.failures.saturating_add(1);
        let exp = FIRST_BACKOFF.saturating_mul(1 << h.failures.saturating_sub(1).min(6));
        let backoff = jitter(exp.min(MAX_BACKOFF));
        if h.failures == 1 {
            tracing::warn!(upstream = %self.url, error = why, "upstream failing; backing off");
        } else {
            tracing::debug!(upstream = %self.url, error = why, failures = h.failures, ?backoff, "upstream still failing");
        }
        h.down_until = Some(Instant::now() + backoff);
        let m = crate::metrics::metrics();
        let label = self.labels();
        m.edge_upstream_failures.get_or_create(&label).inc();
        m.edge_upstream_up.get_or_create(&label).set(0);
    }

    fn labels(&self) -> crate::metrics::UpstreamLabels {
        crate::metrics::UpstreamLabels {
            upstream: self.index.to_string(),
        }
    }

    /// Records a success: the back-off ends.
    pub fn succeeded(&self) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        // Only a change moves the gauge: successes are the common case.
        if h.failures > 0 {
            tracing::info!(upstream = %self.url, "upstream answers again");
            crate::metrics::metrics()
                .edge_upstream_up
                .get_or_create(&self.labels())
                .set(1);
        }
        *h = Health::default();
    }
}

/// ±25 % of `d`, so edges that lost an upstream together do not retry in
/// step.
fn jitter(d: Duration) -> Duration {
    let r = getrandom::u64().unwrap_or(0) % 501;
    // 750..=1250 per mille.
    d.saturating_mul(750 + u32::try_from(r).unwrap_or(0)) / 1000
}

/// Every upstream of the edge and the clients that reach them.
pub struct Upstreams {
    list: Vec<std::sync::Arc<Upstream>>,
    client: reqwest::Client,
    token: Option<String>,
    pushes: Arc<Pushes>,
    subscriptions: Subscriptions,
}

impl Upstreams {
    /// Upstreams from their URLs (`http://`, `https://` or
    /// `quic://…?cert-sha256=HEX`, no path).
    pub fn new(urls: &[String], token: Option<String>) -> anyhow::Result<Upstreams> {
        let mut list = Vec::new();
        let pushes = Arc::new(Pushes::default());
        for (index, u) in urls.iter().enumerate() {
            let parsed = parse_upstream(u)?;
            let quic = match parsed.cert_sha256 {
                Some(pin) => Some(Arc::new(QuicUpstream::new(
                    parsed.base.clone(),
                    index,
                    &parsed.authority,
                    pin,
                    pushes.clone(),
                )?)),
                None => None,
            };
            let up = Upstream {
                url: parsed.base,
                index,
                health: Mutex::new(Health::default()),
                quic,
            };
            // In use until it fails.
            crate::metrics::metrics()
                .edge_upstream_up
                .get_or_create(&up.labels())
                .set(1);
            list.push(std::sync::Arc::new(up));
        }
        anyhow::ensure!(!list.is_empty(), "an edge needs at least one upstream");
        crate::storage::install_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the upstream client: {e}"))?;
        Ok(Upstreams {
            list,
            client,
            token,
            pushes,
            subscriptions: Subscriptions::default(),
        })
    }

    /// Fragments `quic://` upstreams push go into `frags`, then to
    /// `on_pushed`.
    pub fn deliver_pushes_to(
        &self,
        frags: moka::sync::Cache<super::FragKey, Arc<Fragment>>,
        on_pushed: super::quic::OnPushed,
    ) {
        self.pushes.deliver_to(frags, on_pushed);
    }

    /// With a `quic://` upstream at position `up`: its subscription to
    /// `channel` (new fragments pushed as they are cut), held until the
    /// last holder drops it. `None` for other upstreams.
    pub fn subscribe(
        &self,
        up: usize,
        channel: &str,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Option<Arc<Subscription>> {
        let quic = self.list.get(up)?.quic.as_ref()?;
        Some(
            self.subscriptions
                .hold(quic, channel, self.token.clone(), shutdown),
        )
    }

    /// `key`, if a subscription is to push it and does so soon (briefly
    /// awaited); `None`: fetch it.
    pub async fn pushed(&self, key: &super::FragKey) -> Option<Arc<Fragment>> {
        let expected = self
            .list
            .iter()
            .filter_map(|u| u.quic.as_ref())
            .any(|q| q.expects(key));
        if !expected {
            return None;
        }
        self.pushes.wait(key).await
    }

    /// Every upstream, in command-line order.
    pub fn all(&self) -> &[std::sync::Arc<Upstream>] {
        &self.list
    }

    /// The upstreams for `key` (a channel or locator name): healthy ones by
    /// rendezvous score, then the ones backing off in the same order.
    pub fn ordered(&self, key: &str) -> Vec<std::sync::Arc<Upstream>> {
        let mut v: Vec<_> = self
            .list
            .iter()
            .map(|u| {
                (
                    u.is_down(),
                    std::cmp::Reverse(score(&u.url, key)),
                    u.clone(),
                )
            })
            .collect();
        v.sort_by_key(|a| (a.0, a.1));
        v.into_iter().map(|(_, _, u)| u).collect()
    }

    /// `GET {upstream}{path}`, with the tier token, within `timeout`, reading
    /// at most `max_len` bytes of body.
    pub async fn get(
        &self,
        up: &Upstream,
        path: &str,
        timeout: Duration,
        max_len: usize,
    ) -> Result<Answer, UpstreamError> {
        let work = async {
            if let Some(quic) = &up.quic {
                return quic.get(path, self.token.as_deref(), max_len).await;
            }
            let mut req = self.client.get(format!("{}{path}", up.url));
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            let mut resp = req
                .send()
                .await
                .map_err(|e| UpstreamError::Transport(error_chain(&e)))?;
            let status = resp.status();
            let expected = resp.content_length().unwrap_or(0);
            if expected > max_len as u64 {
                return Err(UpstreamError::TooLarge(max_len));
            }
            // Sized once when the length is known: a grown buffer keeps its
            // slack for as long as the cached fragment lives.
            let mut body = BytesMut::with_capacity(usize::try_from(expected).unwrap_or(0));
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| UpstreamError::Transport(error_chain(&e)))?
            {
                if body.len() + chunk.len() > max_len {
                    return Err(UpstreamError::TooLarge(max_len));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Answer {
                status,
                body: body.freeze(),
            })
        };
        let began = std::time::Instant::now();
        let answer = tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| UpstreamError::Transport(format!("no answer within {timeout:?}")))?;
        let m = crate::metrics::metrics();
        let label = up.labels();
        m.edge_upstream_requests.get_or_create(&label).inc();
        m.edge_upstream_seconds
            .get_or_create(&label)
            .observe(began.elapsed().as_secs_f64());
        if let Ok(a) = &answer {
            m.edge_upstream_bytes
                .get_or_create(&label)
                .inc_by(a.body.len() as u64);
            if a.status == StatusCode::UNAUTHORIZED {
                tracing::error!(
                    upstream = %up.url,
                    "upstream refused the tier token (401): set the same --tier-token on this edge as on the ingest node"
                );
            }
        }
        answer
    }
}

/// The rendezvous score of `url` for `key`.
fn score(url: &str, key: &str) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(url.as_bytes());
    h.update(&[0]);
    h.update(key.as_bytes());
    h.digest()
}

/// An error with its sources, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls() {
        let base = |u: &str| parse_upstream(u).ok().map(|p| p.base);
        assert_eq!(
            base("http://127.0.0.1:8080").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            base("https://shield.example:443/").as_deref(),
            Some("https://shield.example:443")
        );
        assert!(parse_upstream("ftp://x").is_err());
        assert!(parse_upstream("http://x/path").is_err());
        assert!(parse_upstream("http://x:1?cert-sha256=00").is_err());
        assert!(parse_upstream("nonsense").is_err());
        // quic:// needs a port and the pin, and nothing else.
        let pin = "ab".repeat(32);
        let q = parse_upstream(&format!("quic://127.0.0.1:4433?cert-sha256={pin}"))
            .expect("valid quic upstream");
        assert_eq!(q.base, "quic://127.0.0.1:4433");
        assert_eq!(q.authority, "127.0.0.1:4433");
        assert_eq!(q.cert_sha256, Some([0xab; 32]));
        let e = parse_upstream("quic://x:1").expect_err("no pin");
        assert!(e.to_string().contains("needs ?cert-sha256="), "{e}");
        assert!(parse_upstream(&format!("quic://x?cert-sha256={pin}")).is_err());
        assert!(parse_upstream("quic://x:1?cert-sha256=abc").is_err());
        assert!(parse_upstream(&format!("quic://x:1?cert-sha256={pin}&y=1")).is_err());
        assert!(parse_upstream(&format!("quic://x:1/p?cert-sha256={pin}")).is_err());
    }

    #[test]
    fn rendezvous_is_stable_and_spreads() {
        let urls: Vec<String> = (0..4).map(|i| format!("http://10.0.0.{i}:80")).collect();
        let ups = Upstreams::new(&urls, None).expect("valid");
        let first = |k: &str| ups.ordered(k)[0].url.clone();
        // The same key always goes to the same upstream...
        assert_eq!(first("ch1"), first("ch1"));
        // ...and keys spread over the upstreams.
        let picked: std::collections::HashSet<String> =
            (0..64).map(|i| first(&format!("ch{i}"))).collect();
        assert!(picked.len() >= 3, "{picked:?}");
        // A failing upstream goes last, the others keep their order.
        let order: Vec<String> = ups.ordered("ch1").iter().map(|u| u.url.clone()).collect();
        ups.ordered("ch1")[0].failed("test");
        let after: Vec<String> = ups.ordered("ch1").iter().map(|u| u.url.clone()).collect();
        assert_eq!(after[3], order[0]);
        assert_eq!(after[..3], order[1..]);
    }
}
