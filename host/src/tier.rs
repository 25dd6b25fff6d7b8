//! The upstream interface (`/_tier/v1/...`): what an edge, directly or
//! through any HTTP cache acting as shield, needs to serve the delivery
//! URLs itself. Ingest nodes answer it from their channels and assets;
//! edges answer it from what they follow and cache, so that edges chain.
//!
//! ```text
//! GET /_tier/v1/health                                   {"v":1}                          no-store
//! GET /_tier/v1/locators/{id}                            locator record                   max-age=2
//! GET /_tier/v1/assets/{asset}/timeline[?from=MS&limit=N] presentation + fragment listing  live: ~half a fragment
//! GET /_tier/v1/assets/{asset}/timeline?after=MS          blocking: once media ends after MS (≤ 3 fragments, else 503 no-store)
//! GET /_tier/v1/channels/{ch}/timeline[...]               the channel's preview presentation, same forms
//! GET /_tier/v1/channels/{ch}/f/{track}/{start}.{sum:016x}.slf
//!                                                        one fragment object (SLF1), immutable
//! ```
//!
//! Fragments are named by channel, track, start (ticks) and content
//! checksum (xxh3-64 of the object): redundant ingest nodes fed alike name
//! them alike, and a name never changes meaning (a reset or a new channel of
//! the same name gives other checksums). Timeline documents hold nothing
//! node-local, so shields can cache each blocking answer under its URL and
//! collapse concurrent ones. With `tier_token` set, every request needs
//! `Authorization: Bearer TOKEN`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use sluice_sdk::plugin::{Fragment as FragmentInfo, PresentationState, View};
use tokio::sync::watch;

use crate::archive::{Archive, AssetView, ticks_to_ms};
use crate::channel::{Channel, Channels};
use crate::delivery::Body;
use crate::edge::{Edge, EdgeLocator, EdgeView, PresKey};
use crate::media::timeline::Snapshot;
use crate::names::valid_name;

/// Most fragments per track in one timeline page.
const MAX_PAGE: usize = 2000;

/// The upstream interface.
pub struct Tier {
    backend: Backend,
    token: Option<String>,
}

/// What a node serves its upstream interface from.
enum Backend {
    /// An ingest node: its channels, and the assets it recorded.
    Ingest {
        channels: Arc<Channels>,
        archive: Arc<Archive>,
    },
    /// An edge: what it follows and caches from its own upstreams, so
    /// that edges chain (an edge's upstream may be another edge).
    Edge(Arc<Edge>),
}

/// A timeline answer in the making: the document, the presentation's
/// fragment duration, whether it ended, and its cut.
type Answer = (Value, u32, bool, Option<i64>);

/// What the timeline documents are made from: a channel snapshot or an
/// asset view.
trait Listed: View {
    fn entries(&self, track: u32, from: u64, limit: usize) -> Vec<(FragmentInfo, u64)>;
    fn last(&self, track: u32) -> Option<FragmentInfo>;
}

impl Listed for Snapshot {
    fn entries(&self, track: u32, from: u64, limit: usize) -> Vec<(FragmentInfo, u64)> {
        Snapshot::entries(self, track, from, limit)
    }
    fn last(&self, track: u32) -> Option<FragmentInfo> {
        Snapshot::last(self, track)
    }
}

impl Listed for EdgeView {
    fn entries(&self, track: u32, from: u64, limit: usize) -> Vec<(FragmentInfo, u64)> {
        EdgeView::entries(self, track, from, limit)
    }
    fn last(&self, track: u32) -> Option<FragmentInfo> {
        EdgeView::last(self, track)
    }
}

impl Listed for AssetView {
    fn entries(&self, track: u32, from: u64, limit: usize) -> Vec<(FragmentInfo, u64)> {
        AssetView::entries(self, track, from, limit)
    }
    fn last(&self, track: u32) -> Option<FragmentInfo> {
        AssetView::last(self, track)
    }
}

/// How a timeline request reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// A page from `from` ms.
    Page { from_ms: i64, limit: usize },
    /// Blocking: once the timeline holds media ending after `after` ms.
    After(i64),
}

/// Milliseconds (negative: 0) in a track's timescale.
fn ms_to_ticks(ms: i64, timescale: u32) -> u64 {
    crate::media::segmenter::ms_to_ticks(u64::try_from(ms).unwrap_or(0), timescale)
}

/// Where every track's newest fragment has ended, ms (the smallest).
fn cut_ms<L: Listed>(v: &L) -> Option<i64> {
    v.tracks()
        .iter()
        .filter_map(|t| {
            let f = v.last(t.id)?;
            Some(ticks_to_ms(f.start + f.duration, t.timescale))
        })
        .min()
}

/// The timeline document of `v` (recorded from `channel`) for `ask`,
/// deterministic (keys sorted, no node-local value); `cut` is [`cut_ms`] of
/// `v`.
fn document<L: Listed>(v: &L, channel: &str, ask: Ask, cut: Option<i64>) -> Value {
    let info = v.info();
    let mut next: Option<i64> = None;
    let tracks: Vec<Value> = v
        .tracks()
        .iter()
        .map(|t| {
            let ts = t.timescale;
            let list = match ask {
                Ask::Page { from_ms, limit } => {
                    let list = v.entries(t.id, ms_to_ticks(from_ms, ts), limit);
                    if list.len() == limit
                        && let Some((last, _)) = list.last()
                    {
                        let after_last = ticks_to_ms(last.start, ts) + 1;
                        next = Some(next.map_or(after_last, |n| n.min(after_last)));
                    }
                    list
                }
                Ask::After(after) => {
                    // From a few fragments back; keep those ending after,
                    // compared in ticks: an audio fragment ending at
                    // 2000.3 ms ends after a cut of 2000 (in whole ms it
                    // would not, and an edge asking after=2000 would
                    // never see it).
                    let back = after - 3 * i64::from(info.fragment_duration_ms);
                    let after_ticks = ms_to_ticks(after, ts);
                    v.entries(t.id, ms_to_ticks(back, ts), MAX_PAGE)
                        .into_iter()
                        .filter(|(f, _)| f.start + f.duration > after_ticks)
                        .collect()
                }
            };
            let fragments: Vec<Value> = list
                .iter()
                .map(|(f, sum)| {
                    json!([
                        f.start,
                        f.duration,
                        f.sample_count,
                        f.size,
                        u8::from(f.discontinuity),
                        f.discontinuity_sequence,
                        format!("{sum:016x}")
                    ])
                })
                .collect();
            let mut track = crate::archive::track_json(t);
            track["id"] = json!(t.id);
            // The first fragment listed at all (the window's start), so an
            // edge trims its copy where this node does.
            track["first"] = json!(v.entries(t.id, 0, 1).first().map(|(f, _)| f.start));
            track["fragments"] = Value::Array(fragments);
            track
        })
        .collect();
    json!({
        "v": 1,
        "channel": channel,
        "info": {
            "state": if info.state == PresentationState::Ended { "ended" } else { "live" },
            "fragment_ms": info.fragment_duration_ms,
            "epoch_ms": info.epoch_ms,
            "window_ms": info.window_ms,
        },
        "tracks": tracks,
        "cut_ms": cut,
        "next": next,
    })
}

impl Tier {
    /// The upstream interface over this node's channels and assets.
    pub fn new(channels: Arc<Channels>, archive: Arc<Archive>, token: Option<String>) -> Self {
        Tier {
            backend: Backend::Ingest { channels, archive },
            token,
        }
    }

    /// The upstream interface of an edge, over what it follows: another
    /// edge (or a shield in front of this one) pulls from it as from an
    /// ingest node. Fragments come from its cache or, once, from its own
    /// upstreams.
    pub fn edge(edge: Arc<Edge>, token: Option<String>) -> Self {
        Tier {
            backend: Backend::Edge(edge),
            token,
        }
    }

    /// Whether `given` is the tier token (anything is, without one).
    pub fn token_ok(&self, given: Option<&str>) -> bool {
        match &self.token {
            None => true,
            Some(token) => {
                given.is_some_and(|g| crate::api::constant_time_eq(g.as_bytes(), token.as_bytes()))
            }
        }
    }

    /// Whether this node takes QUIC tier subscriptions (an ingest node;
    /// an edge cuts nothing to push).
    pub fn takes_subscriptions(&self) -> bool {
        matches!(self.backend, Backend::Ingest { .. })
    }

    /// The live channel `name`, for QUIC tier subscriptions (an ingest
    /// node's only: an edge cuts nothing to push).
    pub fn channel(&self, name: &str) -> Option<Arc<Channel>> {
        match &self.backend {
            Backend::Ingest { channels, .. } => channels.get(name),
            Backend::Edge(_) => None,
        }
    }

    /// Answers one request below `/_tier/`.
    pub async fn handle(&self, uri: &http::Uri, headers: &HeaderMap) -> http::Response<Body> {
        {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if !self.token_ok(given) {
                let mut r = text(
                    StatusCode::UNAUTHORIZED,
                    "missing or wrong tier token\n",
                    "no-store",
                );
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return r;
            }
        }
        let Some(rest) = uri.path().strip_prefix("/_tier/v1/") else {
            return text(
                StatusCode::NOT_FOUND,
                "unknown tier version\n",
                "public, max-age=60",
            );
        };
        let ask = match parse_ask(uri.query().unwrap_or("")) {
            Ok(a) => a,
            Err(m) => return text(StatusCode::BAD_REQUEST, &format!("{m}\n"), "no-store"),
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let kind = match (parts.first(), parts.last(), ask) {
            (Some(&"health"), ..) => "health",
            (Some(&"locators"), ..) => "locator",
            (_, Some(&"timeline"), Ask::After(_)) => "blocking",
            (_, Some(&"timeline"), _) => "timeline",
            (Some(&"channels"), ..) if parts.get(2) == Some(&"f") => "fragment",
            _ => "other",
        };
        crate::metrics::metrics()
            .tier_requests
            .get_or_create(&crate::metrics::KindLabels { kind })
            .inc();
        match parts.as_slice() {
            ["health"] => json_response(&json!({"v": 1}), "no-store"),
            ["locators", id] if valid_name(id) => self.locator(id).await,
            ["assets", asset, "timeline"] if valid_name(asset) => {
                self.timeline(Source::Asset(asset), ask).await
            }
            ["channels", ch, "timeline"] if valid_name(ch) => {
                self.timeline(Source::Channel(ch), ask).await
            }
            ["channels", ch, "f", track, name] if valid_name(ch) => {
                match parse_fragment_name(track, name) {
                    Some((track, start, sum)) => self.fragment(ch, track, start, sum).await,
                    None => text(
                        StatusCode::NOT_FOUND,
                        "bad fragment name\n",
                        "public, max-age=60",
                    ),
                }
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n", "public, max-age=60"),
        }
    }

    async fn locator(&self, id: &str) -> http::Response<Body> {
        // The record an edge parses back (`EdgeLocator`), whichever
        // backend answers.
        let record = match &self.backend {
            Backend::Ingest { archive, .. } => archive.locator(id).map(|l| EdgeLocator {
                manifest_name: archive.manifest_name(&l.asset),
                asset: l.asset,
                start_ms: l.start_ms,
                expiry_ms: l.expiry_ms,
            }),
            Backend::Edge(edge) => match edge.locator(id).await {
                Ok(l) => l,
                Err(e) => return upstream_unavailable(&e),
            },
        };
        let record = record.map(|l| {
            json!({
                "id": id,
                "asset": l.asset,
                "manifest_name": l.manifest_name,
                "start_ms": l.start_ms,
                "expiry_ms": l.expiry_ms,
            })
        });
        match record {
            Some(r) => json_response(&r, "public, max-age=2"),
            None => text(
                StatusCode::NOT_FOUND,
                "no such locator\n",
                "public, max-age=2",
            ),
        }
    }

    async fn timeline(&self, source: Source<'_>, ask: Ask) -> http::Response<Body> {
        let (channels, archive) = match &self.backend {
            Backend::Ingest { channels, archive } => (channels, archive),
            Backend::Edge(edge) => return edge_timeline(edge, source, ask).await,
        };
        let channel = match source {
            Source::Channel(ch) => channels.get(ch),
            Source::Asset(a) => archive.asset_channel(a).and_then(|c| channels.get(&c)),
        };
        let changes = channel.as_ref().map(|c| c.changes());
        hold(ask, changes, || match source {
            Source::Channel(ch) => {
                let channel = channel.as_deref()?;
                let mut a = answer(&channel.snapshot(), ch, ask);
                with_preview_allow(&mut a.0, &channel.preview_allow);
                Some(a)
            }
            Source::Asset(a) => {
                let (view, _) = archive.view(a, channels)?;
                Some(answer(&view, view.channel(), ask))
            }
        })
        .await
    }

    async fn fragment(
        &self,
        channel: &str,
        track: u32,
        start: u64,
        sum: u64,
    ) -> http::Response<Body> {
        let (channels, archive) = match &self.backend {
            Backend::Ingest { channels, archive } => (channels, archive),
            Backend::Edge(edge) => {
                return match edge.find_fragment(channel, track, start, sum).await {
                    Ok(Some(f)) => object_response(&f, sum),
                    // Every upstream that answered lacks it: it may still
                    // appear (a lagging upstream), so not for long.
                    Ok(None) => text(
                        StatusCode::NOT_FOUND,
                        "no such fragment\n",
                        "public, max-age=1",
                    ),
                    Err(e) => upstream_unavailable(&e),
                };
            }
        };
        let hot = channels
            .get(channel)
            .and_then(|c| c.snapshot().fragment_named(track, start, sum).cloned());
        let fragment = match hot {
            Some(f) => Some(f),
            None => match archive.fragment_named(channel, track, start, sum).await {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(channel, track, start, error = %e, "tier fragment unreadable");
                    return text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "fragment unreadable\n",
                        "no-store",
                    );
                }
            },
        };
        let Some(f) = fragment else {
            // Ahead of this node (a lagging redundant node) it may still
            // appear: a short lifetime; anything else never will.
            let ahead = channels
                .get(channel)
                .and_then(|c| c.snapshot().last(track))
                .is_none_or(|last| start >= last.start + last.duration);
            let cache = if ahead {
                "public, max-age=1"
            } else {
                "public, max-age=60"
            };
            return text(StatusCode::NOT_FOUND, "no such fragment\n", cache);
        };
        let mut resp = object_response(&f, sum);
        if let Some(expires) = expires(channels, archive, channel, track, &f) {
            resp.headers_mut().insert(header::EXPIRES, expires);
        }
        resp
    }
}

/// A fragment object answer (SLF1, immutable, its checksum as ETag).
fn object_response(f: &crate::storage::Fragment, sum: u64) -> http::Response<Body> {
    let head = crate::storage::encode_head(f);
    let len = head.len() + f.data.len();
    http::Response::builder()
        .header(header::CONTENT_TYPE, "application/vnd.sluice.slf1")
        .header(header::CACHE_CONTROL, "public, max-age=31536000, immutable")
        .header(header::ETAG, format!("\"{sum:016x}\""))
        .header(header::CONTENT_LENGTH, len)
        .body(Body::from_parts([head, f.data.clone()]))
        .unwrap_or_default()
}

/// `Expires` of a fragment object: when it leaves the last window that
/// lists it (the channel's live window, running programs' archive
/// windows); none while a stopped asset keeps it. Caches keep the
/// object by its `max-age`; this tells them (and edges) when nobody
/// will ask for it any more.
fn expires(
    channels: &Channels,
    archive: &Archive,
    channel: &str,
    track: u32,
    f: &crate::storage::Fragment,
) -> Option<HeaderValue> {
    let ch = channels.get(channel)?;
    let snapshot = ch.snapshot();
    let timescale = snapshot.tracks().iter().find(|t| t.id == track)?.timescale;
    let newest = snapshot.last(track)?;
    let newest_end = ticks_to_ms(newest.start + newest.duration, timescale);
    let (start, end) = (
        ticks_to_ms(f.start, timescale),
        ticks_to_ms(f.start + f.duration, timescale),
    );
    let window = i64::try_from(ch.window_ms).unwrap_or(i64::MAX);
    let hot = end.saturating_add(window) - newest_end;
    let archived = archive.fragment_lifetime_ms(channel, start, end, newest_end)?;
    let at = crate::channel::now_ms() + hot.max(archived).max(0);
    let t = chrono::DateTime::from_timestamp_millis(at)?;
    HeaderValue::from_str(&t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()).ok()
}

/// The answer for `ask` from `v` (recorded from `channel`).
fn answer<L: Listed>(v: &L, channel: &str, ask: Ask) -> Answer {
    let info = v.info();
    let cut = cut_ms(v);
    (
        document(v, channel, ask, cut),
        info.fragment_duration_ms,
        info.state == PresentationState::Ended,
        cut,
    )
}

/// Answers a timeline request with `document` (`None`: 404): a page at
/// once; a blocking request once the presentation ended or its cut passed
/// the asked time, waking on `changes`, held at most three fragments
/// (then 503 `no-store`).
async fn hold(
    ask: Ask,
    mut changes: Option<watch::Receiver<u64>>,
    mut document: impl FnMut() -> Option<Answer>,
) -> http::Response<Body> {
    let mut deadline = None;
    loop {
        let Some((doc, fragment_ms, ended, cut)) = document() else {
            return text(
                StatusCode::NOT_FOUND,
                "not found (yet)\n",
                "public, max-age=2",
            );
        };
        let ready = match ask {
            Ask::Page { .. } => true,
            Ask::After(after) => ended || cut.is_some_and(|c| c > after),
        };
        let max_age = if ended {
            30
        } else {
            (fragment_ms / 2000).max(1)
        };
        if ready {
            return json_response(&doc, &format!("public, max-age={max_age}"));
        }
        let deadline = *deadline.get_or_insert_with(|| {
            tokio::time::Instant::now() + Duration::from_millis(3 * u64::from(fragment_ms))
        });
        let Some(rx) = changes.as_mut() else {
            return unavailable();
        };
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            _ => return unavailable(),
        }
    }
}

/// A timeline request at an edge: from the presentation it follows
/// (following it from now on), waking on its merges.
async fn edge_timeline(edge: &Edge, source: Source<'_>, ask: Ask) -> http::Response<Body> {
    let key = match source {
        Source::Channel(ch) => PresKey::Channel(ch.to_owned()),
        Source::Asset(a) => PresKey::Asset(a.to_owned()),
    };
    match edge.view(key.clone()).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return text(
                StatusCode::NOT_FOUND,
                "not found (yet)\n",
                "public, max-age=2",
            );
        }
        Err(e) => return upstream_unavailable(&e),
    }
    let changes = edge.watch(&key).map(|p| p.changed.subscribe());
    let channel = matches!(source, Source::Channel(_));
    hold(ask, changes, || {
        let view = edge.snapshot(&key)?;
        let mut a = answer(&view, view.channel(), ask);
        if channel {
            with_preview_allow(&mut a.0, view.preview_allow());
        }
        Some(a)
    })
    .await
}

/// Adds a channel's preview allow list to its timeline document, so that
/// edges refuse its preview where the ingest node would.
fn with_preview_allow(doc: &mut Value, allow: &[ipnet::IpNet]) {
    doc["preview_allow"] =
        Value::Array(allow.iter().map(|n| Value::String(n.to_string())).collect());
}

/// An edge whose own upstreams failed: 503, never cached.
fn upstream_unavailable(error: &str) -> http::Response<Body> {
    tracing::debug!(error, "tier request: upstream unavailable");
    let mut r = text(
        StatusCode::SERVICE_UNAVAILABLE,
        "upstream unavailable\n",
        "no-store",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// `{track}` and `{start}.{sum:016x}.slf` of a fragment object's path.
fn parse_fragment_name(track: &str, name: &str) -> Option<(u32, u64, u64)> {
    let track: u32 = digits(track)?.parse().ok()?;
    let name = name.strip_suffix(".slf")?;
    let (start, sum) = name.split_once('.')?;
    let start: u64 = digits(start)?.parse().ok()?;
    (sum.len() == 16).then_some(())?;
    let sum = u64::from_str_radix(sum, 16).ok()?;
    Some((track, start, sum))
}

#[derive(Debug, Clone, Copy)]
enum Source<'a> {
    Channel(&'a str),
    Asset(&'a str),
}

fn digits(s: &str) -> Option<&str> {
    (!s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
}

fn parse_ask(query: &str) -> Result<Ask, String> {
    let mut from_ms = 0i64;
    let mut limit = MAX_PAGE;
    let mut after = None;
    for pair in query.split('&').filter(|p| !p.is_empty()).take(8) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let n: i64 = digits(v)
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| format!("bad {k}: a number"))?;
        match k {
            "from" => from_ms = n,
            "limit" => limit = usize::try_from(n).unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE),
            "after" => after = Some(n),
            _ => return Err(format!("unknown parameter {k:?}")),
        }
    }
    Ok(match after {
        Some(a) => Ask::After(a),
        None => Ask::Page { from_ms, limit },
    })
}

fn unavailable() -> http::Response<Body> {
    let mut r = text(
        StatusCode::SERVICE_UNAVAILABLE,
        "nothing new yet\n",
        "no-store",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn text(status: StatusCode, body: &str, cache: &str) -> http::Response<Body> {
    http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, cache)
        .body(Body::text(body))
        .unwrap_or_default()
}

fn json_response(v: &Value, cache: &str) -> http::Response<Body> {
    let body = Bytes::from(v.to_string());
    let etag = format!("\"{:032x}\"", xxhash_rust::xxh3::xxh3_128(&body));
    http::Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, cache)
        .header(header::ETAG, etag)
        .body(Body::from_parts([body]))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        assert_eq!(
            parse_ask(""),
            Ok(Ask::Page {
                from_ms: 0,
                limit: MAX_PAGE
            })
        );
        assert_eq!(
            parse_ask("from=4000&limit=5"),
            Ok(Ask::Page {
                from_ms: 4000,
                limit: 5
            })
        );
        assert_eq!(parse_ask("after=12000"), Ok(Ask::After(12000)));
        assert!(parse_ask("after=-1").is_err());
        assert!(parse_ask("colour=red").is_err());
        assert!(parse_ask(&format!("from={}", "9".repeat(30))).is_err());
    }
}
