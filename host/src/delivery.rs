//! Delivery: routes a request to a presentation and a packager, caches the
//! response (moka, one packaging call per key however many ask at once),
//! splices sample payloads the plugin referenced, and answers with cache
//! headers, a content ETag, conditional and HEAD handling and CORS.
//!
//! ```text
//!  GET /preview/{channel}/preview.isml/{rest}   the channel's live timeline
//!  GET /preview/{channel}/[…]                    the preview page (preview_page)
//!  GET /{locator}/{manifest}.ism/{rest}         the locator's asset: live
//!      archive window while its program runs, the whole asset after
//!      rest = Manifest[(format=F)]      → packager for F (default `mss`)
//!           | {F}/...                   → packager for F (sub-resource)
//!  cache key: immutable responses by path; others by path + timeline generation
//! ```
//!
//! An asset's payloads older than the channel's hot timeline live in
//! storage. Packagers read synchronously, so a payload not at hand is
//! recorded as a miss: delivery reads the misses from storage (single flight
//! through the store's read cache) and runs the packager again, at most
//! twice. The host stays format-agnostic; a segment costs one storage read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use moka::Expiry;
use sluice_sdk::plugin::{BodyPart, CachePolicy, Request as PluginRequest};

use crate::archive::AssetView;
pub use crate::body::Body;
use crate::config::DeliveryConfig;
use crate::edge::{Edge, PresKey};
use crate::media::timeline::Snapshot;
pub use crate::origin::Origin;
use crate::plugins::{PluginError, PluginHost};

/// A presentation packagers read (through the SDK's [`View`](sluice_sdk::plugin::View)) and the host
/// splices payloads from.
pub trait Presentation: sluice_sdk::plugin::View + Send + Sync + 'static {
    /// Payload bytes of a fragment, by reference, when at hand.
    fn data(&self, track: u32, start: u64, offset: u32, length: u32) -> Option<Bytes>;

    /// Fragments asked for that were not at hand (cleared).
    fn take_misses(&self) -> Vec<(u32, u64)> {
        Vec::new()
    }

    /// Brings `misses` at hand.
    fn refill(
        &self,
        misses: Vec<(u32, u64)>,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send {
        let _ = misses;
        async { Err("nothing to read".to_owned()) }
    }
}

impl Presentation for Snapshot {
    fn data(&self, track: u32, start: u64, offset: u32, length: u32) -> Option<Bytes> {
        Snapshot::data(self, track, start, offset, length)
    }
}

impl Presentation for crate::edge::EdgeView {
    fn data(&self, track: u32, start: u64, offset: u32, length: u32) -> Option<Bytes> {
        crate::edge::EdgeView::data(self, track, start, offset, length)
    }

    fn take_misses(&self) -> Vec<(u32, u64)> {
        crate::edge::EdgeView::take_misses(self)
    }

    async fn refill(&self, misses: Vec<(u32, u64)>) -> Result<(), String> {
        self.fetch(misses).await
    }
}

impl Presentation for AssetView {
    fn data(&self, track: u32, start: u64, offset: u32, length: u32) -> Option<Bytes> {
        AssetView::data(self, track, start, offset, length)
    }

    fn take_misses(&self) -> Vec<(u32, u64)> {
        AssetView::take_misses(self)
    }

    async fn refill(&self, misses: Vec<(u32, u64)>) -> Result<(), String> {
        self.fetch(misses).await.map_err(|e| e.to_string())
    }
}

/// A finished response, as cached.
#[derive(Debug)]
pub struct Cached {
    status: StatusCode,
    content_type: String,
    cache: CachePolicy,
    headers: Vec<(String, String)>,
    parts: Vec<Bytes>,
    etag: String,
    len: u64,
}

impl Cached {
    fn ttl(&self) -> Option<Duration> {
        match self.cache {
            CachePolicy::Immutable => None,
            CachePolicy::MaxAge(s) => Some(Duration::from_secs(u64::from(s))),
            CachePolicy::NoStore => Some(Duration::ZERO),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    presentation: String,
    path: String,
    /// `None` for immutable responses, else the timeline generation.
    generation: Option<u64>,
    /// The plugin registry generation: a plugin added, replaced or
    /// removed is not hidden behind responses packaged before.
    plugins: u64,
}

struct TtlExpiry;

impl Expiry<CacheKey, Arc<Cached>> for TtlExpiry {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Arc<Cached>,
        _created_at: Instant,
    ) -> Option<Duration> {
        value.ttl()
    }
}

/// Why a request could not be answered by a packager.
#[derive(Debug, Clone)]
struct Failure {
    status: StatusCode,
    message: String,
}

/// What a request path on the delivery listeners (http, https, quic) is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/ingest/…`: HTTP ingest (TCP listeners only).
    Ingest,
    /// `/_tier/…`: the upstream interface.
    Tier,
    /// Everything else: delivery.
    Delivery,
}

impl Route {
    /// The route of `path`.
    pub(crate) fn of(path: &str) -> Route {
        if path.starts_with("/ingest/") {
            Route::Ingest
        } else if path.starts_with("/_tier/") {
            Route::Tier
        } else {
            Route::Delivery
        }
    }
}

/// The delivery service.
pub struct Delivery {
    plugins: Arc<PluginHost>,
    origin: Origin,
    cache: moka::future::Cache<CacheKey, Arc<Cached>>,
    config: DeliveryConfig,
}

impl Delivery {
    /// A delivery service over `origin`, packaging with `plugins`.
    pub fn new(plugins: Arc<PluginHost>, origin: Origin, config: DeliveryConfig) -> Self {
        let cache = moka::future::Cache::builder()
            .max_capacity(config.cache_mib.saturating_mul(1 << 20))
            .weigher(|_k: &CacheKey, v: &Arc<Cached>| -> u32 {
                u32::try_from(v.len + 256).unwrap_or(u32::MAX)
            })
            .expire_after(TtlExpiry)
            .eviction_listener(|_k, _v, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    crate::metrics::metrics().delivery_cache_evictions.inc();
                }
            })
            .build();
        Delivery {
            plugins,
            origin,
            cache,
            config,
        }
    }

    /// Answers one HTTP request.
    pub async fn handle(
        &self,
        method: &Method,
        uri: &http::Uri,
        headers: &HeaderMap,
        peer: std::net::SocketAddr,
    ) -> http::Response<Body> {
        let mut resp = self.route(method, uri, headers, peer).await;
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.config.cors_origin) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        }
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("etag, content-length, content-range, accept-ranges, date"),
        );
        resp
    }

    async fn route(
        &self,
        method: &Method,
        uri: &http::Uri,
        headers: &HeaderMap,
        peer: std::net::SocketAddr,
    ) -> http::Response<Body> {
        if method == Method::OPTIONS {
            return http::Response::builder()
                .status(StatusCode::NO_CONTENT)
                .header(header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD, OPTIONS")
                .header(header::ACCESS_CONTROL_ALLOW_HEADERS, "range, if-none-match")
                .header(header::ACCESS_CONTROL_MAX_AGE, "86400")
                .body(Body::empty())
                .unwrap_or_default();
        }
        let path = uri.path();
        if path == "/healthz" {
            return plain(StatusCode::OK, "ok\n", "no-store");
        }
        if method != Method::GET && method != Method::HEAD {
            return plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed\n",
                "no-store",
            );
        }
        if !self.config.allow.is_empty() && !crate::channel::allowed(&self.config.allow, peer.ip())
        {
            tracing::info!(%peer, "delivery refused: address not allowed");
            return plain(StatusCode::FORBIDDEN, "address not allowed\n", "no-store");
        }
        if let Some((channel, page)) = crate::preview_page::parse(path) {
            return crate::preview_page::serve(&self.origin, channel, page, method, headers, peer)
                .await;
        }
        if let Some((channel, rest)) = parse_preview(path) {
            return self
                .preview(channel, rest, method, uri, headers, peer)
                .await;
        }
        if let Some((locator, manifest, rest)) = parse_locator(path) {
            return self
                .locator(locator, manifest, rest, method, uri, headers)
                .await;
        }
        plain(StatusCode::NOT_FOUND, "not found\n", "public, max-age=5")
    }

    async fn preview(
        &self,
        channel: &str,
        rest: &str,
        method: &Method,
        uri: &http::Uri,
        headers: &HeaderMap,
        peer: std::net::SocketAddr,
    ) -> http::Response<Body> {
        let channels = match &self.origin {
            Origin::Ingest { channels, .. } => channels,
            Origin::Edge(edge) => {
                let key = PresKey::Channel(channel.to_owned());
                return self
                    .serve_edge(edge, key, rest, method, uri, headers, Some(peer))
                    .await;
            }
        };
        let Some(channel) = channels.get(channel) else {
            return plain(
                StatusCode::NOT_FOUND,
                "no such channel\n",
                "public, max-age=5",
            );
        };
        if !channel.preview_allowed(peer.ip()) {
            tracing::info!(%peer, channel = %channel.name, "preview refused: address not allowed");
            return plain(StatusCode::FORBIDDEN, "address not allowed\n", "no-store");
        }
        let presentation = format!("preview/{}", channel.name);
        self.serve(presentation, rest, method, uri, headers, || {
            let s = channel.snapshot();
            let generation = s.generation();
            Some((s, generation))
        })
        .await
    }

    async fn locator(
        &self,
        id: &str,
        manifest: &str,
        rest: &str,
        method: &Method,
        uri: &http::Uri,
        headers: &HeaderMap,
    ) -> http::Response<Body> {
        let (channels, archive) = match &self.origin {
            Origin::Ingest { channels, archive } => (channels, archive),
            Origin::Edge(edge) => {
                return self
                    .edge_locator(edge, id, manifest, rest, method, uri, headers)
                    .await;
            }
        };
        let Some(locator) = archive.locator(id) else {
            return no_locator();
        };
        if let Some(r) = locator_closed(locator.start_ms, locator.expiry_ms) {
            return r;
        }
        let Some((view, manifest_name)) = archive.view(&locator.asset, channels) else {
            return plain(
                StatusCode::NOT_FOUND,
                "nothing recorded yet\n",
                "public, max-age=1",
            );
        };
        if manifest != manifest_name {
            return no_manifest();
        }
        let presentation = format!("asset/{}/{:016x}", locator.asset, view.incarnation());
        let mut view = Some(view);
        self.serve(presentation, rest, method, uri, headers, move || {
            let v = view.take()?;
            let generation = v.generation();
            Some((v, generation))
        })
        .await
    }

    /// A locator's asset on an edge: the record from upstream, the same
    /// start/expiry rules, the view from the edge.
    #[allow(clippy::too_many_arguments)]
    async fn edge_locator(
        &self,
        edge: &Edge,
        id: &str,
        manifest: &str,
        rest: &str,
        method: &Method,
        uri: &http::Uri,
        headers: &HeaderMap,
    ) -> http::Response<Body> {
        let locator = match edge.locator(id).await {
            Ok(Some(l)) => l,
            Ok(None) => return no_locator(),
            Err(e) => {
                tracing::warn!(locator = id, error = %e, "locator unavailable upstream");
                return upstream_unavailable();
            }
        };
        if let Some(r) = locator_closed(locator.start_ms, locator.expiry_ms) {
            return r;
        }
        if locator.manifest_name.as_deref() != Some(manifest) {
            return no_manifest();
        }
        let key = PresKey::Asset(locator.asset);
        self.serve_edge(edge, key, rest, method, uri, headers, None)
            .await
    }

    /// Serves `rest` of an edge presentation. A live presentation's
    /// resource that is not there yet (404 from the packager: a segment
    /// after the newest) waits for the timeline's next change, once.
    /// A presentation at an edge; `preview_peer`: a preview's viewer,
    /// checked against the channel's preview allow list (which the
    /// upstream's channel timeline carries).
    #[allow(clippy::too_many_arguments)]
    async fn serve_edge(
        &self,
        edge: &Edge,
        key: PresKey,
        rest: &str,
        method: &Method,
        uri: &http::Uri,
        headers: &HeaderMap,
        preview_peer: Option<std::net::SocketAddr>,
    ) -> http::Response<Body> {
        let mut waited = false;
        loop {
            let view = match edge.view(key.clone()).await {
                Ok(Some(v)) => v,
                Ok(None) => {
                    return plain(StatusCode::NOT_FOUND, "not found\n", "public, max-age=1");
                }
                Err(e) => {
                    tracing::warn!(?key, error = %e, "presentation unavailable upstream");
                    return upstream_unavailable();
                }
            };
            if let Some(peer) = preview_peer
                && !view.preview_allowed(peer.ip())
            {
                tracing::info!(%peer, ?key, "preview refused: address not allowed");
                return plain(StatusCode::FORBIDDEN, "address not allowed\n", "no-store");
            }
            let presentation = match &key {
                PresKey::Channel(c) => format!("edge/preview/{c}/{:016x}", view.identity()),
                PresKey::Asset(a) => format!("edge/asset/{a}/{:016x}", view.identity()),
            };
            let generation = view.generation();
            let live = view.is_live();
            let newer = live.then(|| edge.watch(&key)).flatten();
            let mut view = Some(view);
            let resp = self
                .serve(presentation, rest, method, uri, headers, move || {
                    Some((view.take()?, generation))
                })
                .await;
            if resp.status() != StatusCode::NOT_FOUND || waited {
                return resp;
            }
            let Some(newer) = newer else { return resp };
            waited = true;
            if !newer.wait_newer(generation).await {
                return resp;
            }
        }
    }

    /// Answers from the cache or packages `rest` of a presentation made by
    /// `make` (only called on a cache miss of an immutable response).
    async fn serve<P: Presentation>(
        &self,
        presentation: String,
        rest: &str,
        method: &Method,
        uri: &http::Uri,
        headers: &HeaderMap,
        make: impl FnOnce() -> Option<(P, u64)>,
    ) -> http::Response<Body> {
        let Some(format) = format_of(rest) else {
            return plain(
                StatusCode::NOT_FOUND,
                "unknown resource\n",
                "public, max-age=5",
            );
        };
        let (plugins, formats) = self.plugins.formats();
        let counting = crate::metrics::enabled();
        // A label only ever names a format a packager serves.
        let format_label = crate::metrics::FormatLabels {
            format: if !counting {
                String::new()
            } else if formats.split(',').any(|f| f == format) {
                format.to_owned()
            } else {
                "other".to_owned()
            },
        };
        let m = crate::metrics::metrics();
        let immutable_key = CacheKey {
            presentation: presentation.clone(),
            path: rest.to_owned(),
            generation: None,
            plugins,
        };
        let cached = match self.cache.get(&immutable_key).await {
            Some(hit) => {
                if counting {
                    m.delivery_cache_hits.get_or_create(&format_label).inc();
                }
                Ok(hit)
            }
            None => {
                let Some((view, generation)) = make() else {
                    return plain(StatusCode::NOT_FOUND, "not found\n", "public, max-age=1");
                };
                let key = CacheKey {
                    presentation,
                    path: rest.to_owned(),
                    generation: Some(generation),
                    plugins,
                };
                let request = PluginRequest {
                    format: format.to_owned(),
                    path: rest.to_owned(),
                    query: parse_query(uri.query().unwrap_or("")),
                    // What the host adds: the formats served beside this
                    // one, so a manifest can list another plugin's
                    // resources (HLS lists I-frame playlists when a
                    // packager serves `m3u8-iframes`).
                    headers: vec![(
                        sluice_sdk::plugin::FORMATS_HEADER.to_owned(),
                        formats.to_string(),
                    )],
                };
                let present = self.cache.contains_key(&key);
                let packaged = std::sync::atomic::AtomicBool::new(false);
                let package = async {
                    packaged.store(true, std::sync::atomic::Ordering::Relaxed);
                    self.package(request, view, immutable_key).await
                };
                let result = self
                    .cache
                    .try_get_with(key, package)
                    .await
                    .map_err(|e: Arc<Failure>| (*e).clone());
                if counting {
                    let counter = if packaged.load(std::sync::atomic::Ordering::Relaxed) {
                        m.delivery_cache_bytes
                            .set(i64::try_from(self.cache.weighted_size()).unwrap_or(i64::MAX));
                        &m.delivery_cache_misses
                    } else if present {
                        &m.delivery_cache_hits
                    } else {
                        &m.delivery_coalesced
                    };
                    counter.get_or_create(&format_label).inc();
                }
                result
            }
        };
        let resp = match cached {
            Ok(c) => respond(&c, method, headers),
            Err(f) => plain(f.status, &format!("{}\n", f.message), "no-store"),
        };
        if !counting {
            return resp;
        }
        let status = match resp.status().as_u16() {
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        m.delivery_requests
            .get_or_create(&crate::metrics::DeliveryLabels {
                format: format_label.format.clone(),
                status,
            })
            .inc();
        if let Some(len) = hyper::body::Body::size_hint(resp.body()).exact() {
            m.delivery_bytes.get_or_create(&format_label).inc_by(len);
        }
        resp
    }

    async fn package<P: Presentation>(
        &self,
        request: PluginRequest,
        view: P,
        immutable_key: CacheKey,
    ) -> Result<Arc<Cached>, Failure> {
        let Some(plugin) = self.plugins.packager(&request.format) else {
            return Err(Failure {
                status: StatusCode::NOT_FOUND,
                message: format!("unknown format {}", request.format),
            });
        };
        let view = Arc::new(view);
        let request = Arc::new(request);
        let path = request.path.clone();
        // Rounds: the packager runs, payloads it asked for that were not at
        // hand are read from storage, and it runs again.
        let mut round = 0;
        let (response, parts) = loop {
            round += 1;
            let (plugin, request, shared) = (plugin.clone(), request.clone(), view.clone());
            let result = tokio::task::spawn_blocking(move || {
                plugin.handle(
                    &request,
                    shared as Arc<dyn sluice_sdk::plugin::View + Send + Sync>,
                )
            })
            .await
            .map_err(|e| Failure {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: format!("packaging task failed: {e}"),
            })?;
            let response = result.map_err(|e: PluginError| {
                tracing::warn!(path = %path, error = %e, "packager failed");
                Failure {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    message: "packager failed".to_owned(),
                }
            })?;
            let mut parts = Vec::with_capacity(response.body.len());
            let mut unresolved = None;
            for part in &response.body {
                match part {
                    BodyPart::Bytes(b) => parts.push(Bytes::from(b.clone())),
                    BodyPart::SampleData(r) => {
                        match view.data(r.track, r.start, r.offset, r.length) {
                            Some(b) => parts.push(b),
                            None => {
                                unresolved = Some(*r);
                                break;
                            }
                        }
                    }
                }
            }
            let misses = view.take_misses();
            if misses.is_empty() {
                if let Some(r) = unresolved {
                    tracing::warn!(path = %path, ?r, "packager referenced data it was not given");
                    return Err(Failure {
                        status: StatusCode::SERVICE_UNAVAILABLE,
                        message: "packager referenced unknown sample data".to_owned(),
                    });
                }
                break (response, parts);
            }
            if round >= 3 {
                return Err(Failure {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    message: "media not at hand after reading storage".to_owned(),
                });
            }
            if let Err(e) = view.refill(misses).await {
                tracing::warn!(path = %path, error = %e, "cannot read stored media");
                return Err(Failure {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    message: "stored media unavailable".to_owned(),
                });
            }
        };
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for p in &parts {
            hasher.update(p);
        }
        let len = parts.iter().map(|p| p.len() as u64).sum();
        let status =
            StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let cached = Arc::new(Cached {
            status,
            content_type: response.content_type,
            cache: response.cache,
            headers: response.headers,
            etag: format!("\"{:032x}\"", hasher.digest128()),
            parts,
            len,
        });
        if cached.cache == CachePolicy::Immutable && status.is_success() {
            self.cache.insert(immutable_key, cached.clone()).await;
        }
        Ok(cached)
    }
}

fn no_manifest() -> http::Response<Body> {
    plain(
        StatusCode::NOT_FOUND,
        "no such manifest\n",
        "public, max-age=5",
    )
}

/// An edge whose upstreams did not answer: never cached.
fn upstream_unavailable() -> http::Response<Body> {
    plain(
        StatusCode::BAD_GATEWAY,
        "upstream unavailable\n",
        "no-store",
    )
}

fn no_locator() -> http::Response<Body> {
    plain(
        StatusCode::NOT_FOUND,
        "no such locator\n",
        "public, max-age=5",
    )
}

/// The answer of a locator before its start (404, cacheable until then)
/// or after its expiry (410); `None` while it is open.
fn locator_closed(start_ms: Option<i64>, expiry_ms: Option<i64>) -> Option<http::Response<Body>> {
    let now = crate::channel::now_ms();
    if let Some(start) = start_ms
        && now < start
    {
        let wait = ((start - now) / 1000).clamp(0, 5);
        return Some(plain(
            StatusCode::NOT_FOUND,
            "locator not yet started\n",
            &format!("public, max-age={wait}"),
        ));
    }
    if expiry_ms.is_some_and(|e| now >= e) {
        return Some(plain(
            StatusCode::GONE,
            "locator expired\n",
            "public, max-age=5",
        ));
    }
    None
}

fn cache_control(policy: CachePolicy) -> String {
    match policy {
        CachePolicy::Immutable => "public, max-age=31536000, immutable".to_owned(),
        CachePolicy::MaxAge(s) => format!("public, max-age={s}"),
        CachePolicy::NoStore => "no-store".to_owned(),
    }
}

fn respond(c: &Cached, method: &Method, req_headers: &HeaderMap) -> http::Response<Body> {
    let mut b = http::Response::builder()
        .header(header::CACHE_CONTROL, cache_control(c.cache))
        .header(header::ETAG, &c.etag);
    for (name, value) in &c.headers {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            b = b.header(n, v);
        }
    }
    let not_modified = c.status.is_success()
        && req_headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim() == c.etag || t.trim() == "*");
    if not_modified {
        return b
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_default();
    }
    let b = b.header(header::CONTENT_TYPE, &c.content_type);
    if !c.status.is_success() {
        let body = if method == Method::HEAD {
            Body::empty()
        } else {
            Body::from_parts(c.parts.iter().cloned())
        };
        return b
            .status(c.status)
            .header(header::CONTENT_LENGTH, c.len)
            .body(body)
            .unwrap_or_default();
    }
    let b = b.header(header::ACCEPT_RANGES, "bytes");
    let (status, from, to) = match requested_range(req_headers, &c.etag, c.len) {
        RangeAnswer::Whole => (c.status, 0, c.len),
        RangeAnswer::Part { first, last } => (StatusCode::PARTIAL_CONTENT, first, last + 1),
        RangeAnswer::Unsatisfiable => {
            return b
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{}", c.len))
                .header(header::CONTENT_LENGTH, 0)
                .body(Body::empty())
                .unwrap_or_default();
        }
    };
    let mut b = b.status(status).header(header::CONTENT_LENGTH, to - from);
    if status == StatusCode::PARTIAL_CONTENT {
        b = b.header(
            header::CONTENT_RANGE,
            format!("bytes {from}-{}/{}", to - 1, c.len),
        );
    }
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from_parts(slice_parts(&c.parts, from, to))
    };
    b.body(body).unwrap_or_default()
}

/// What a `Range` request header asks of a body of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeAnswer {
    /// No (usable) range: the whole body, 200.
    Whole,
    /// Bytes `first..=last`, 206.
    Part { first: u64, last: u64 },
    /// A range that lies outside the body: 416.
    Unsatisfiable,
}

/// Reads a single-range `Range: bytes=...` header (RFC 9110 §14). Several
/// ranges, other units, a syntax error or an `If-Range` that does not
/// match `etag` give the whole body, as the RFC allows.
fn requested_range(headers: &HeaderMap, etag: &str, len: u64) -> RangeAnswer {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeAnswer::Whole;
    };
    if let Some(if_range) = headers.get(header::IF_RANGE)
        && if_range.to_str().map(str::trim).ok() != Some(etag)
    {
        return RangeAnswer::Whole;
    }
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Whole;
    };
    if spec.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Whole;
    };
    let parse = |t: &str| -> Option<u64> {
        let t = t.trim();
        (!t.is_empty() && t.len() <= 19 && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    match (parse(first), parse(last), last.trim().is_empty()) {
        // bytes=-N: the last N bytes.
        (None, Some(n), _) if first.trim().is_empty() => {
            if n == 0 || len == 0 {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Part {
                    first: len.saturating_sub(n),
                    last: len - 1,
                }
            }
        }
        // bytes=A- : from A to the end.
        (Some(a), None, true) => {
            if a >= len {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Part {
                    first: a,
                    last: len - 1,
                }
            }
        }
        (Some(a), Some(b), _) if a <= b => {
            if a >= len {
                RangeAnswer::Unsatisfiable
            } else {
                RangeAnswer::Part {
                    first: a,
                    last: b.min(len - 1),
                }
            }
        }
        _ => RangeAnswer::Whole,
    }
}

/// The bytes `from..to` of a body made of `parts`, as slices of them.
fn slice_parts(parts: &[Bytes], from: u64, to: u64) -> Vec<Bytes> {
    let mut out = Vec::new();
    if from >= to {
        return out;
    }
    let mut at = 0u64;
    for p in parts {
        let (start, end) = (at, at + p.len() as u64);
        at = end;
        if end <= from || start >= to {
            continue;
        }
        let a = (from.max(start) - start) as usize;
        let b = (to.min(end) - start) as usize;
        out.push(p.slice(a..b));
    }
    out
}

fn plain(status: StatusCode, text: &str, cache: &str) -> http::Response<Body> {
    http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, cache)
        .body(Body::text(text))
        .unwrap_or_default()
}

/// `/preview/{channel}/preview.isml/{rest}` → (channel, rest).
fn parse_preview(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/preview/")?;
    let (channel, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("preview.isml/")?;
    (crate::config::valid_name(channel) && !rest.is_empty()).then_some((channel, rest))
}

/// `/{locator}/{manifest}.ism/{rest}` → (locator, manifest, rest).
fn parse_locator(path: &str) -> Option<(&str, &str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (locator, rest) = rest.split_once('/')?;
    let (manifest, rest) = rest.split_once('/')?;
    let manifest = manifest.strip_suffix(".ism")?;
    (crate::config::valid_name(locator) && crate::config::valid_name(manifest) && !rest.is_empty())
        .then_some((locator, manifest, rest))
}

/// The format a path below the manifest root belongs to.
fn format_of(rest: &str) -> Option<&str> {
    // Smooth: the manifest, and fragments at the conventional
    // `QualityLevels({bitrate})/Fragments({type}={time})` relative URLs.
    if rest == "Manifest" || rest.starts_with("QualityLevels(") {
        return Some("mss");
    }
    if let Some(inner) = rest.strip_prefix("Manifest(") {
        let inner = inner.strip_suffix(')')?;
        let format = inner.strip_prefix("format=")?;
        return valid_format(format).then_some(format);
    }
    let (first, _) = rest.split_once('/')?;
    valid_format(first).then_some(first)
}

fn valid_format(f: &str) -> bool {
    !f.is_empty()
        && f.len() <= 32
        && f.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Splits and percent-decodes a query string.
fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .take(64)
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            parse_preview("/preview/ch1/preview.isml/Manifest(format=m3u8-cmaf)"),
            Some(("ch1", "Manifest(format=m3u8-cmaf)"))
        );
        assert_eq!(parse_preview("/preview/../preview.isml/Manifest"), None);
        assert_eq!(parse_preview("/preview/ch1/other.isml/Manifest"), None);
        assert_eq!(
            parse_locator("/loc1/show.ism/Manifest(format=mpd-time-csf)"),
            Some(("loc1", "show", "Manifest(format=mpd-time-csf)"))
        );
        assert_eq!(parse_locator("/loc1/show.isml/Manifest"), None);
        assert_eq!(parse_locator("/../show.ism/Manifest"), None);
        assert_eq!(parse_locator("/loc1/show.ism/"), None);
        assert_eq!(format_of("Manifest"), Some("mss"));
        assert_eq!(
            format_of("QualityLevels(128000)/Fragments(audio=0)"),
            Some("mss")
        );
        assert_eq!(format_of("Manifest(format=m3u8-cmaf)"), Some("m3u8-cmaf"));
        assert_eq!(format_of("m3u8-cmaf/t1/index.m3u8"), Some("m3u8-cmaf"));
        assert_eq!(format_of("Manifest(format=../x)"), None);
        assert_eq!(format_of("nothing"), None);
    }

    #[test]
    fn query() {
        assert_eq!(
            parse_query("a=1&b=x%20y&c&d=%zz%4"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("c".into(), "".into()),
                ("d".into(), "%zz%4".into())
            ]
        );
    }

    fn range(value: &str, if_range: Option<&str>) -> RangeAnswer {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(value).unwrap());
        if let Some(v) = if_range {
            h.insert(header::IF_RANGE, HeaderValue::from_str(v).unwrap());
        }
        requested_range(&h, "\"e\"", 100)
    }

    #[test]
    fn byte_ranges() {
        use RangeAnswer::*;
        assert_eq!(range("bytes=0-9", None), Part { first: 0, last: 9 });
        assert_eq!(
            range("bytes=90-", None),
            Part {
                first: 90,
                last: 99
            }
        );
        assert_eq!(
            range("bytes=-10", None),
            Part {
                first: 90,
                last: 99
            }
        );
        assert_eq!(range("bytes=-500", None), Part { first: 0, last: 99 });
        assert_eq!(
            range("bytes=50-500", None),
            Part {
                first: 50,
                last: 99
            }
        );
        assert_eq!(range("bytes=100-", None), Unsatisfiable);
        assert_eq!(range("bytes=-0", None), Unsatisfiable);
        assert_eq!(range("bytes=9-0", None), Whole);
        assert_eq!(range("bytes=0-1,5-6", None), Whole);
        assert_eq!(range("items=0-1", None), Whole);
        assert_eq!(range("bytes=x-1", None), Whole);
        assert_eq!(
            range("bytes=0-9", Some("\"e\"")),
            Part { first: 0, last: 9 }
        );
        assert_eq!(range("bytes=0-9", Some("\"other\"")), Whole);
        assert_eq!(requested_range(&HeaderMap::new(), "\"e\"", 100), Whole);
    }

    #[test]
    fn slices_across_parts() {
        let parts = [
            Bytes::from_static(b"abc"),
            Bytes::from_static(b"defg"),
            Bytes::from_static(b"hi"),
        ];
        let join = |v: Vec<Bytes>| v.iter().flat_map(|b| b.to_vec()).collect::<Vec<u8>>();
        assert_eq!(join(slice_parts(&parts, 0, 9)), b"abcdefghi");
        assert_eq!(join(slice_parts(&parts, 2, 8)), b"cdefgh");
        assert_eq!(join(slice_parts(&parts, 3, 7)), b"defg");
        assert_eq!(join(slice_parts(&parts, 8, 9)), b"i");
        assert!(slice_parts(&parts, 4, 4).is_empty());
    }
}
