//! Edge mode (`--upstream URL`, repeatable): no ingest, no management; the
//! same delivery URLs as an ingest node, filled from upstream on demand and
//! packaged here by the same plugins.
//!
//! ```text
//!  viewer ─▶ delivery ─▶ Edge::view(presentation) ─▶ Followed (merged timeline)
//!                 │                                   ▲ one follower per upstream:
//!                 │                                   │ blocking ?after=cut requests
//!                 └─ packager misses ─▶ EdgeCore::fragment ─▶ cache (moka, bytes)
//!                                        └▶ Flights (one detached fetch per key)
//!                                           └▶ upstreams in rendezvous order
//! ```
//!
//! Fragments are fetched from the upstreams that listed them first, in
//! rendezvous order for their channel (so every edge sends a channel to the
//! same shield), failing over in that order; a backing-off upstream is
//! tried last. Locator records are kept 2 s, and the last known one is
//! used for up to 5 minutes while no upstream answers.

pub mod answer;
pub mod flight;
pub mod follow;
pub mod quic;
pub mod upstream;
pub mod view;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::watch;

use self::flight::{Flights, Joined};
use self::follow::{Entry, Followed};
use self::upstream::Upstreams;
pub use self::view::EdgeView;
pub use crate::config::EdgeConfig;
use crate::storage::Fragment;

/// Largest fragment object read from an upstream.
const MAX_OBJECT: usize = 256 << 20;

/// How long a locator record is trusted, and how long the last known one
/// is used while no upstream answers.
const LOCATOR_TTL: Duration = Duration::from_secs(2);
const LOCATOR_STALE: Duration = Duration::from_secs(300);

/// A followed presentation: a channel's preview or an asset.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PresKey {
    /// `/preview/{channel}/...`.
    Channel(String),
    /// An asset, reached through a locator.
    Asset(String),
}

/// A fragment's upstream name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FragKey {
    /// Channel.
    pub channel: String,
    /// Track id.
    pub track: u32,
    /// Start, ticks.
    pub start: u64,
    /// Content checksum.
    pub sum: u64,
}

/// A locator as an upstream describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EdgeLocator {
    /// The asset it publishes.
    pub asset: String,
    /// The manifest name, once a program recorded into the asset.
    pub manifest_name: Option<String>,
    /// Unix ms before which it answers 404.
    pub start_ms: Option<i64>,
    /// Unix ms from which it answers 410.
    pub expiry_ms: Option<i64>,
}

/// The parts followers and views share.
pub struct EdgeCore {
    upstreams: Upstreams,
    frags: moka::sync::Cache<FragKey, Arc<Fragment>>,
    flights: Arc<Flights<FragKey, Option<Arc<Fragment>>>>,
    config: EdgeConfig,
    shutdown: watch::Receiver<bool>,
}

impl EdgeCore {
    /// The fragment `e` of `channel`'s `track`: from the cache, or fetched
    /// once however many ask. A failed fetch is retried (by a new leader)
    /// while the follower wait lasts.
    pub async fn fragment(
        self: &Arc<Self>,
        channel: &str,
        track: u32,
        e: Entry,
    ) -> Result<Arc<Fragment>, String> {
        let key = FragKey {
            channel: channel.to_owned(),
            track,
            start: e.info.start,
            sum: e.sum,
        };
        self.find(key, e.from).await?.ok_or_else(|| {
            format!(
                "no upstream has fragment {track}/{} of {channel}",
                e.info.start
            )
        })
    }

    /// The fragment `key`, preferring the upstreams in `listed_by`:
    /// `Ok(None)` when every upstream that answered lacks it.
    async fn find(
        self: &Arc<Self>,
        key: FragKey,
        listed_by: u64,
    ) -> Result<Option<Arc<Fragment>>, String> {
        let deadline = Instant::now() + Duration::from_millis(self.config.follower_wait_ms);
        let mut last = String::new();
        for _ in 0..3 {
            if let Some(f) = self.frags.get(&key) {
                return Ok(Some(f));
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                break;
            }
            let core = self.clone();
            let k = key.clone();
            let (joined, _) = self
                .flights
                .join(key.clone(), wait, move || async move {
                    core.fetch_fragment(k, listed_by).await
                })
                .await;
            match joined {
                Joined::Done(Ok(f)) => return Ok(f),
                Joined::Done(Err(err)) => last = err,
                Joined::TimedOut => {
                    return Err(format!(
                        "upstream slower than the follower wait ({} ms); the fetch goes on",
                        self.config.follower_wait_ms
                    ));
                }
            }
        }
        Err(if last.is_empty() {
            "no upstream answered in time".to_owned()
        } else {
            last
        })
    }

    /// Fetches one fragment object (the flight's work), checks it and
    /// caches it; `Ok(None)` when every upstream answered that it lacks it.
    async fn fetch_fragment(
        &self,
        key: FragKey,
        listed_by: u64,
    ) -> Result<Option<Arc<Fragment>>, String> {
        let path = format!(
            "/_tier/v1/channels/{}/f/{}/{}.{:016x}.slf",
            key.channel, key.track, key.start, key.sum
        );
        let mut order = self.upstreams.ordered(&key.channel);
        // Those that listed it first (stable: rendezvous order within).
        order.sort_by_key(|u| listed_by & (1u64 << u.index.min(63)) == 0);
        // A subscription pushing it: no request.
        if let Some(f) = self.upstreams.pushed(&key).await {
            return Ok(Some(f));
        }
        let timeout = Duration::from_millis(self.config.fetch_timeout_ms);
        let mut last = format!("no upstream has {path}");
        // Whether an upstream failed (rather than answer that it lacks it).
        let mut failed = false;
        for up in order {
            let answer = match self.upstreams.get(&up, &path, timeout, MAX_OBJECT).await {
                Ok(a) => a,
                Err(e) => {
                    up.failed(&e.to_string());
                    last = format!("{}: {e}", up.url);
                    failed = true;
                    continue;
                }
            };
            match answer.status.as_u16() {
                200 => {}
                404 => {
                    last = format!("{}: no such fragment", up.url);
                    continue;
                }
                s => {
                    last = format!("{}: status {s}", up.url);
                    up.failed(&last);
                    failed = true;
                    continue;
                }
            }
            let sum = crate::storage::decode_header(&answer.body).map(|h| h.checksum);
            let fragment = crate::storage::decode_fragment(answer.body);
            match (sum, fragment) {
                (Ok(sum), Ok(f)) if sum == key.sum && f.start == key.start => {
                    up.succeeded();
                    let f = Arc::new(f);
                    self.frags.insert(key, f.clone());
                    return Ok(Some(f));
                }
                (_, Err(e)) | (Err(e), _) => {
                    last = format!("{}: bad fragment object: {e}", up.url);
                    up.failed(&last);
                    failed = true;
                }
                _ => {
                    last = format!("{}: fragment object is not {path}", up.url);
                    up.failed(&last);
                    failed = true;
                }
            }
        }
        if failed { Err(last) } else { Ok(None) }
    }
}

/// The edge.
pub struct Edge {
    core: Arc<EdgeCore>,
    presentations: Mutex<HashMap<PresKey, Arc<Followed>>>,
    locators: moka::future::Cache<String, Option<EdgeLocator>>,
    stale_locators: Mutex<HashMap<String, (EdgeLocator, Instant)>>,
}

impl Edge {
    /// An edge over `config.upstreams`, sending `token` to them; its tasks
    /// end when `shutdown` turns true.
    pub fn new(
        config: EdgeConfig,
        token: Option<String>,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<Arc<Edge>> {
        let upstreams = Upstreams::new(&config.upstreams, token)?;
        let frags = moka::sync::Cache::builder()
            .max_capacity(config.cache_mib.saturating_mul(1 << 20))
            .weigher(|_k: &FragKey, f: &Arc<Fragment>| -> u32 {
                let bytes = f.data.len() + f.samples.len() * 16 + 256;
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .build();
        let edge = Arc::new_cyclic(|weak: &std::sync::Weak<Edge>| {
            let weak = weak.clone();
            upstreams.deliver_pushes_to(
                frags.clone(),
                Box::new(move |key, fragment, up| {
                    if let Some(edge) = weak.upgrade() {
                        edge.list_pushed(key, fragment, up);
                    }
                }),
            );
            Edge {
                core: Arc::new(EdgeCore {
                    upstreams,
                    frags,
                    flights: Arc::default(),
                    config,
                    shutdown,
                }),
                presentations: Mutex::new(HashMap::new()),
                locators: moka::future::Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(LOCATOR_TTL)
                    .build(),
                stale_locators: Mutex::new(HashMap::new()),
            }
        });
        tokio::spawn(reap(Arc::downgrade(&edge), edge.core.shutdown.clone()));
        Ok(edge)
    }

    /// Asks every upstream for `/_tier/v1/health` (at once, 2 s each), a
    /// health check that starts or ends its back-off; returns the
    /// failures, `url: why`.
    pub async fn probe_upstreams(&self) -> Vec<String> {
        let probes = self.core.upstreams.all().iter().map(|up| async move {
            let answer = self
                .core
                .upstreams
                .get(up, "/_tier/v1/health", Duration::from_secs(2), 4096)
                .await;
            // A health check: its outcome moves the upstream's back-off.
            let failure = match answer {
                Ok(a) if a.status == http::StatusCode::OK => None,
                Ok(a) => Some(format!("{}: status {}", up.url, a.status)),
                Err(e) => Some(format!("{}: {e}", up.url)),
            };
            match &failure {
                None => up.succeeded(),
                Some(why) => up.failed(why),
            }
            failure
        });
        futures_util::future::join_all(probes)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// The upstreams' base URLs.
    pub fn upstream_urls(&self) -> Vec<String> {
        self.core
            .upstreams
            .all()
            .iter()
            .map(|u| u.url.clone())
            .collect()
    }

    /// A view of `key`, following it from now on. `Ok(None)`: every
    /// upstream that answered says it does not exist (yet).
    pub async fn view(&self, key: PresKey) -> Result<Option<EdgeView>, String> {
        let pres = {
            let mut map = self.presentations.lock().unwrap_or_else(|e| e.into_inner());
            match map.get(&key) {
                Some(p) => p.clone(),
                None => {
                    let p = Arc::new(Followed::new(key.clone()));
                    for up in 0..self.core.upstreams.all().len() {
                        tokio::spawn(follow::follow(self.core.clone(), p.clone(), up));
                    }
                    map.insert(key, p.clone());
                    p
                }
            }
        };
        pres.touch();
        if let Some(state) = pres.state() {
            return Ok(Some(EdgeView::new(state, self.core.clone())));
        }
        // Not read yet: wait for a follower (or for every upstream to say no).
        let n = self.core.upstreams.all().len().min(64);
        let all = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        let mut rx = pres.ready.subscribe();
        let wait = Duration::from_millis(self.core.config.fetch_timeout_ms);
        let done = tokio::time::timeout(
            wait,
            rx.wait_for(|r| r.synced || (r.missing | r.failed) == all),
        )
        .await;
        let readiness = pres.ready.borrow().clone();
        if let Some(state) = pres.state() {
            return Ok(Some(EdgeView::new(state, self.core.clone())));
        }
        if readiness.missing != 0 && readiness.missing | readiness.failed == all {
            // Nobody follows what does not exist.
            pres.stop();
            self.forget(&pres);
            return Ok(None);
        }
        match done {
            Ok(_) => Err(format!("no upstream answered: {}", readiness.error)),
            Err(_) => Err("no upstream answered in time".to_owned()),
        }
    }

    /// Lists a fragment upstream `up` pushed in every followed
    /// presentation of its channel it continues, ahead of the timeline
    /// answer that lists it too: servable the moment it arrives.
    fn list_pushed(&self, key: &FragKey, fragment: &Fragment, up: usize) {
        let presentations: Vec<Arc<Followed>> = self
            .presentations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let mut listed = false;
        for pres in presentations {
            listed |= pres.list_pushed(key, fragment, up);
        }
        if listed {
            tracing::debug!(target: "sluice::timing", channel = %key.channel, track = key.track, start = key.start, "fragment servable");
            crate::metrics::metrics()
                .edge_pushed_listed
                .get_or_create(&crate::metrics::UpstreamLabels {
                    upstream: up.to_string(),
                })
                .inc();
        }
    }

    /// The fragment object `channel`/`track`/`start` with checksum `sum`,
    /// for this edge's own upstream interface: from the cache, or fetched
    /// once. `Ok(None)`: every upstream that answered lacks it.
    pub async fn find_fragment(
        &self,
        channel: &str,
        track: u32,
        start: u64,
        sum: u64,
    ) -> Result<Option<Arc<Fragment>>, String> {
        let key = FragKey {
            channel: channel.to_owned(),
            track,
            start,
            sum,
        };
        self.core.find(key, 0).await
    }

    /// A view of `key` as it is now, if it is followed and was read.
    pub fn snapshot(&self, key: &PresKey) -> Option<EdgeView> {
        let state = self.watch(key)?.state()?;
        Some(EdgeView::new(state, self.core.clone()))
    }

    /// The followed presentation `key`, for live-edge waits.
    pub fn watch(&self, key: &PresKey) -> Option<Arc<Followed>> {
        self.presentations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    fn forget(&self, pres: &Arc<Followed>) {
        let mut map = self.presentations.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(&pres.key).is_some_and(|p| Arc::ptr_eq(p, pres)) {
            map.remove(&pres.key);
        }
    }

    /// The locator `id`, from the upstreams (kept 2 s; the last known one
    /// while none answers). `Ok(None)`: no such locator.
    pub async fn locator(&self, id: &str) -> Result<Option<EdgeLocator>, String> {
        let fetched = self
            .locators
            .try_get_with(id.to_owned(), self.fetch_locator(id))
            .await;
        match fetched {
            Ok(l) => {
                let mut stale = self
                    .stale_locators
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                match &l {
                    Some(l) => {
                        stale.insert(id.to_owned(), (l.clone(), Instant::now()));
                    }
                    None => {
                        stale.remove(id);
                    }
                }
                Ok(l)
            }
            Err(e) => {
                let stale = self
                    .stale_locators
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                match stale.get(id) {
                    Some((l, at)) if at.elapsed() < LOCATOR_STALE => Ok(Some(l.clone())),
                    _ => Err((*e).clone()),
                }
            }
        }
    }

    async fn fetch_locator(&self, id: &str) -> Result<Option<EdgeLocator>, String> {
        let path = format!("/_tier/v1/locators/{id}");
        let timeout = Duration::from_millis(self.core.config.fetch_timeout_ms);
        let mut last = String::from("no upstream");
        let mut missing = false;
        for up in self.core.upstreams.ordered(id) {
            match self.core.upstreams.get(&up, &path, timeout, 64 << 10).await {
                Ok(a) if a.status == http::StatusCode::OK => {
                    up.succeeded();
                    return serde_json::from_slice::<EdgeLocator>(&a.body)
                        .map(Some)
                        .map_err(|e| format!("{}: bad locator record: {e}", up.url));
                }
                Ok(a) if a.status == http::StatusCode::NOT_FOUND => {
                    up.succeeded();
                    missing = true;
                }
                Ok(a) => {
                    last = format!("{}: status {}", up.url, a.status);
                    up.failed(&last);
                }
                Err(e) => {
                    last = format!("{}: {e}", up.url);
                    up.failed(&last);
                }
            }
        }
        if missing { Ok(None) } else { Err(last) }
    }
}

/// Stops following presentations nobody asked for in `idle_s`.
async fn reap(edge: std::sync::Weak<Edge>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.changed() => return,
        }
        let Some(edge) = edge.upgrade() else { return };
        let idle_ms =
            i64::try_from(edge.core.config.idle_s.saturating_mul(1000)).unwrap_or(i64::MAX);
        let mut map = edge.presentations.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, p| {
            let keep = p.idle_ms() <= idle_ms;
            if !keep {
                p.stop();
            }
            keep
        });
    }
}
