//! The preview page: what an operator opens to check a channel before
//! publishing it. Everything it loads is served from inside the binary
//! (`host/assets/preview/`), so it works on a network with no internet.
//!
//! ```text
//!  /preview/{channel}                      301 → /preview/{channel}/
//!  /preview/{channel}/                     the page (HTML; no-cache, ETag)
//!  /preview/{channel}/page/{hash}/{file}   hls.min.js, preview.js, preview.css
//!                                          (immutable; hash = content hash = ETag)
//!  /preview/{channel}/state.json           live channel state (no-store);
//!                                          on an edge 404: it lives on the ingest node
//!  the page plays preview.isml/Manifest(format=m3u8-cmaf) with hls.js and
//!  polls state.json every 2 s
//! ```
//!
//! The channel's preview allow list applies to every one of these, as to
//! the preview's manifests (403, `no-store`); on an edge the list comes
//! from the upstream's channel timeline.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::json;
use sluice_sdk::plugin::{PresentationState, TrackKind, View};

use crate::body::Body;
use crate::channel::{Channel, now_ms};
use crate::edge::PresKey;
use crate::origin::Origin;

/// The page's HTML, with `{{…}}` placeholders filled per channel.
static INDEX: &str = include_str!("../assets/preview/index.html");

/// An embedded file served below `page/{hash}/`.
struct Asset {
    file: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

static ASSETS: [Asset; 3] = [
    Asset {
        file: "hls.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/preview/hls.min.js"),
    },
    Asset {
        file: "preview.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/preview/preview.js"),
    },
    Asset {
        file: "preview.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/preview/preview.css"),
    },
];

/// What the page allows itself: nothing but this origin (and the `blob:`
/// URLs hls.js makes for media source buffers and its worker).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; media-src 'self' blob:; worker-src 'self' blob:; \
    connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'";

/// The content hashes of [`ASSETS`] (hex xxh3-128), computed once.
fn hashes() -> &'static [String] {
    static HASHES: OnceLock<Vec<String>> = OnceLock::new();
    HASHES.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("{:032x}", xxhash_rust::xxh3::xxh3_128(a.body)))
            .collect()
    })
}

/// The path of an asset below `/preview/{channel}/`.
fn asset_path(file: &str) -> String {
    let i = ASSETS.iter().position(|a| a.file == file).unwrap_or(0);
    format!("page/{}/{}", &hashes()[i][..16], ASSETS[i].file)
}

/// A request path the preview page answers.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PagePath<'a> {
    /// `/preview/{channel}`: redirected to the page.
    Redirect,
    /// `/preview/{channel}/`.
    Page,
    /// `/preview/{channel}/page/{hash}/{file}`.
    Asset {
        /// The hash the URL names.
        hash: &'a str,
        /// The file name.
        file: &'a str,
    },
    /// `/preview/{channel}/state.json`.
    State,
}

/// The channel and what of the page `path` asks for; `None` for every
/// other path (the preview's manifests and segments among them).
pub(crate) fn parse(path: &str) -> Option<(&str, PagePath<'_>)> {
    let rest = path.strip_prefix("/preview/")?;
    let (channel, rest) = match rest.split_once('/') {
        Some((c, r)) => (c, Some(r)),
        None => (rest, None),
    };
    if !crate::config::valid_name(channel) {
        return None;
    }
    let what = match rest {
        None => PagePath::Redirect,
        Some("") => PagePath::Page,
        Some("state.json") => PagePath::State,
        Some(r) => {
            let (hash, file) = r.strip_prefix("page/")?.split_once('/')?;
            PagePath::Asset { hash, file }
        }
    };
    Some((channel, what))
}

/// Answers `what` of `channel`'s preview page for `peer`.
pub(crate) async fn serve(
    origin: &Origin,
    channel: &str,
    what: PagePath<'_>,
    method: &Method,
    headers: &HeaderMap,
    peer: std::net::SocketAddr,
) -> http::Response<Body> {
    if what == PagePath::Redirect {
        return http::Response::builder()
            .status(StatusCode::MOVED_PERMANENTLY)
            .header(header::LOCATION, format!("/preview/{channel}/"))
            .header(header::CACHE_CONTROL, "public, max-age=3600")
            .body(Body::empty())
            .unwrap_or_default();
    }
    // The allow list first, for every part of the page.
    let local = match admit(origin, channel, peer).await {
        Ok(local) => local,
        Err(refusal) => return refusal,
    };
    match what {
        PagePath::Redirect | PagePath::Page => {
            let html = page(channel);
            let etag = etag(html.as_bytes());
            let mut resp = respond(
                method,
                headers,
                "text/html; charset=utf-8",
                "no-cache",
                Some(etag),
                Bytes::from(html),
            );
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            );
            h.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            resp
        }
        PagePath::Asset { hash, file } => {
            let found = ASSETS
                .iter()
                .zip(hashes())
                .find(|(a, h)| a.file == file && h.starts_with(hash) && hash.len() == 16);
            match found {
                Some((asset, full)) => respond(
                    method,
                    headers,
                    asset.content_type,
                    "public, max-age=31536000, immutable",
                    Some(format!("\"{full}\"")),
                    Bytes::from_static(asset.body),
                ),
                None => text(
                    StatusCode::NOT_FOUND,
                    "no such page asset\n",
                    "public, max-age=5",
                ),
            }
        }
        PagePath::State => match local {
            Some(channel) => {
                // Every poll gets the state of now: no validator.
                let body = Bytes::from(state(&channel).to_string());
                respond(method, headers, "application/json", "no-store", None, body)
            }
            None => json_error(
                StatusCode::NOT_FOUND,
                "edge",
                "this node is an edge: channel state lives on the ingest node",
            ),
        },
    }
}

/// Checks that `channel` exists and that `peer` may preview it: the
/// channel on an ingest node, `None` on an edge, or the refusal.
async fn admit(
    origin: &Origin,
    channel: &str,
    peer: std::net::SocketAddr,
) -> Result<Option<Arc<Channel>>, http::Response<Body>> {
    let allowed = match origin {
        Origin::Ingest { channels, .. } => {
            let Some(c) = channels.get(channel) else {
                return Err(text(
                    StatusCode::NOT_FOUND,
                    "no such channel\n",
                    "public, max-age=5",
                ));
            };
            if c.preview_allowed(peer.ip()) {
                return Ok(Some(c));
            }
            false
        }
        Origin::Edge(edge) => match edge.view(PresKey::Channel(channel.to_owned())).await {
            Ok(Some(view)) => view.preview_allowed(peer.ip()),
            Ok(None) => {
                return Err(text(
                    StatusCode::NOT_FOUND,
                    "no such channel\n",
                    "public, max-age=1",
                ));
            }
            Err(e) => {
                tracing::warn!(channel, error = %e, "preview page: channel unavailable upstream");
                return Err(text(
                    StatusCode::BAD_GATEWAY,
                    "upstream unavailable\n",
                    "no-store",
                ));
            }
        },
    };
    if allowed {
        return Ok(None);
    }
    tracing::info!(%peer, channel, "preview page refused: address not allowed");
    Err(text(
        StatusCode::FORBIDDEN,
        "address not allowed\n",
        "no-store",
    ))
}

/// The page of `channel` (a validated name: nothing to escape, escaped anyway).
fn page(channel: &str) -> String {
    let channel: String = channel
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    INDEX
        .replace("{{channel}}", &channel)
        .replace("{{hls.min.js}}", &asset_path("hls.min.js"))
        .replace("{{preview.js}}", &asset_path("preview.js"))
        .replace("{{preview.css}}", &asset_path("preview.css"))
}

/// The state of `channel` the page shows (see the README's "Preview page").
pub fn state(channel: &Channel) -> serde_json::Value {
    let snapshot = channel.snapshot();
    let info = View::info(&snapshot);
    let now = now_ms();
    let tracks: Vec<_> = View::tracks(&snapshot)
        .into_iter()
        .map(|t| {
            // Measured over the newest (up to) five fragments.
            let (listed, recent) = snapshot.tail(t.id, 5);
            let bytes: u64 = recent.iter().map(|f| u64::from(f.size)).sum();
            let ticks: u64 = recent.iter().map(|f| f.duration).sum();
            let bitrate = bytes
                .saturating_mul(8)
                .saturating_mul(u64::from(t.timescale))
                .checked_div(ticks)
                .unwrap_or(0);
            let kind = match t.kind {
                TrackKind::Video => "video",
                TrackKind::Audio => "audio",
                TrackKind::Subtitle => "subtitle",
                TrackKind::Data => "data",
            };
            json!({
                "id": t.id,
                "stream": t.stream,
                "kind": kind,
                "fourcc": t.fourcc,
                "codec": t.codec,
                "width": t.width,
                "height": t.height,
                "sample_rate": t.sample_rate,
                "channels": t.channels,
                "language": t.language,
                "fragments": listed,
                "bitrate": bitrate,
            })
        })
        .collect();
    let streams = channel.streams();
    let fragment_age_ms = streams.iter().filter_map(|s| s.fragment_age_ms).min();
    let presentation = match info.state {
        PresentationState::Ended => "ended",
        _ if tracks.is_empty() => "empty",
        _ => "live",
    };
    json!({
        "v": 1,
        "channel": channel.name,
        "state": channel.state(),
        "presentation": presentation,
        "now_ms": now,
        "fragment_ms": channel.fragment_ms,
        "window_ms": channel.window_ms,
        "fragment_age_ms": fragment_age_ms,
        "encoders": channel.encoders(),
        "tracks": tracks,
        "stats": channel.stats.json(),
        "streams": streams,
    })
}

fn etag(body: &[u8]) -> String {
    format!("\"{:032x}\"", xxhash_rust::xxh3::xxh3_128(body))
}

/// A 200 with `body` (304 when `If-None-Match` names `etag`; no body for HEAD).
fn respond(
    method: &Method,
    headers: &HeaderMap,
    content_type: &'static str,
    cache: &'static str,
    etag: Option<String>,
    body: Bytes,
) -> http::Response<Body> {
    let not_modified = etag.as_ref().is_some_and(|etag| {
        headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim() == etag)
    });
    let mut b = http::Response::builder()
        .header(header::CACHE_CONTROL, cache)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if let Some(etag) = etag {
        b = b.header(header::ETAG, etag);
    }
    if not_modified {
        return b
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_default();
    }
    let b = b
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, body.len());
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from_parts([body])
    };
    b.body(body).unwrap_or_default()
}

fn text(status: StatusCode, message: &str, cache: &'static str) -> http::Response<Body> {
    http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, cache)
        .body(Body::text(message))
        .unwrap_or_default()
}

fn json_error(status: StatusCode, code: &str, message: &str) -> http::Response<Body> {
    let body = json!({"error": {"code": code, "message": message}}).to_string();
    http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::text(body))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(parse("/preview/ch1"), Some(("ch1", PagePath::Redirect)));
        assert_eq!(parse("/preview/ch1/"), Some(("ch1", PagePath::Page)));
        assert_eq!(
            parse("/preview/ch1/state.json"),
            Some(("ch1", PagePath::State))
        );
        assert_eq!(
            parse("/preview/ch1/page/0123456789abcdef/hls.min.js"),
            Some((
                "ch1",
                PagePath::Asset {
                    hash: "0123456789abcdef",
                    file: "hls.min.js"
                }
            ))
        );
        assert_eq!(parse("/preview/ch1/preview.isml/Manifest"), None);
        assert_eq!(parse("/preview/ch1/page/x"), None);
        assert_eq!(parse("/preview/../"), None);
        assert_eq!(parse("/preview/"), None);
        assert_eq!(parse("/other/ch1/"), None);
    }

    #[test]
    fn the_page_names_its_assets_by_hash() {
        let html = page("ch1");
        for a in &ASSETS {
            let p = asset_path(a.file);
            assert!(html.contains(&p), "{p} not in the page");
            let (hash, file) = p
                .strip_prefix("page/")
                .and_then(|r| r.split_once('/'))
                .expect("page/{hash}/{file}");
            assert_eq!(file, a.file);
            assert_eq!(hash.len(), 16);
        }
        assert!(!html.contains("{{"), "{html}");
        assert!(html.contains("ch1"));
    }
}
