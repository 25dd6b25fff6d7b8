//! HTTP/3 (RFC 9114) on a QUIC connection of the `--quic` listener:
//! delivery and the upstream interface, read-only.
//!
//! ```text
//!  request stream ─▶ header section (≤ MAX_FIELD_SECTION_SIZE, within REQUEST_HEAD_TIMEOUT)
//!    GET | HEAD | OPTIONS, else 405
//!    Route::of(path): /ingest/… 405 (ingest stays on TCP) | /_tier/… Tier | else Delivery
//!  ─▶ HEADERS, then one DATA frame per shared body chunk (none for HEAD)
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h3::error::{Code, StreamError};
use http::{HeaderMap, Method, StatusCode, Uri, header};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use super::Services;
use crate::delivery::Body;
use crate::delivery::Route;

/// Largest request header section accepted (the decoded size, as
/// `SETTINGS_MAX_FIELD_SECTION_SIZE` counts it); h3 refuses a larger one
/// before decoding it. Delivery requests are a path and a few headers.
pub const MAX_FIELD_SECTION_SIZE: u64 = 16 * 1024;

/// Time a client gets to send a request's header section once it opened
/// the stream.
const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(10);

type Resolver = h3::server::RequestResolver<h3_quinn::Connection, Bytes>;
type Stream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// What the connection loop waits for.
enum Event {
    /// A request stream (boxed: the resolver is large), the client's
    /// GOAWAY (`None`), or the connection's end.
    Accepted(Result<Option<Box<Resolver>>, h3::error::ConnectionError>),
    /// A request task ended.
    Finished,
    /// The server is shutting down.
    Shutdown,
}

/// Serves HTTP/3 on `conn` until the client leaves or, after `shutdown`,
/// until the requests accepted before the GOAWAY are answered. Each request
/// runs in its own task.
pub(super) async fn serve_connection(
    conn: quinn::Connection,
    services: &Arc<Services>,
    mut shutdown: watch::Receiver<bool>,
) {
    let peer = conn.remote_address();
    let built = h3::server::builder()
        .max_field_section_size(MAX_FIELD_SECTION_SIZE)
        .build(h3_quinn::Connection::new(conn))
        .await;
    let mut h3_conn: h3::server::Connection<h3_quinn::Connection, Bytes> = match built {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "http/3 connection setup failed");
            return;
        }
    };
    let mut requests = JoinSet::new();
    let mut closing = false;
    loop {
        let event = tokio::select! {
            accepted = h3_conn.accept() => Event::Accepted(accepted.map(|r| r.map(Box::new))),
            Some(_) = requests.join_next(), if !requests.is_empty() => Event::Finished,
            _ = shutdown.wait_for(|stop| *stop), if !closing => Event::Shutdown,
        };
        match event {
            Event::Accepted(Ok(Some(resolver))) => {
                requests.spawn(request(*resolver, services.clone(), peer).in_current_span());
            }
            // The client sent GOAWAY and its requests are answered.
            Event::Accepted(Ok(None)) => break,
            Event::Accepted(Err(e)) => {
                if !e.is_h3_no_error() {
                    tracing::debug!(error = %e, "http/3 connection ended");
                }
                break;
            }
            Event::Finished => {
                if closing && requests.is_empty() {
                    break;
                }
            }
            Event::Shutdown => {
                closing = true;
                // GOAWAY naming the stream after the last accepted: requests
                // already accepted are answered, later ones refused.
                if let Err(e) = h3_conn.shutdown(1).await {
                    tracing::debug!(error = %e, "http/3 GOAWAY not sent");
                }
                if requests.is_empty() {
                    break;
                }
            }
        }
    }
    while requests.join_next().await.is_some() {}
    // Dropping `h3_conn` closes the connection with H3_NO_ERROR.
}

/// One request stream: its header section, the answer, the response.
async fn request(resolver: Resolver, services: Arc<Services>, peer: SocketAddr) {
    let (req, mut stream) =
        match tokio::time::timeout(REQUEST_HEAD_TIMEOUT, resolver.resolve_request()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "bad http/3 request");
                return;
            }
            Err(_) => {
                tracing::debug!("http/3 request header timed out");
                return;
            }
        };
    let span = tracing::debug_span!(
        "h3",
        %peer,
        method = %req.method(),
        path = %req.uri().path()
    );
    async move {
        let resp = answer(&services, req.method(), req.uri(), req.headers(), peer).await;
        if let Err(e) = respond(&mut stream, resp, req.method() == Method::HEAD).await {
            tracing::debug!(error = %e, "http/3 response not sent");
        }
        // A request body, if any, is not read (RFC 9114 §4.1).
        stream.stop_sending(Code::H3_NO_ERROR);
    }
    .instrument(span)
    .await;
}

/// The response to one HTTP/3 request: GET, HEAD and OPTIONS, routed as on
/// the TCP listeners except that ingest is refused.
async fn answer(
    services: &Services,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> http::Response<Body> {
    if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return method_not_allowed("method not allowed\n");
    }
    match Route::of(uri.path()) {
        Route::Ingest => method_not_allowed(
            "ingest is not served over HTTP/3: push to the http or https listener\n",
        ),
        Route::Tier => services.tier.handle(uri, headers).await,
        Route::Delivery => services.delivery.handle(method, uri, headers, peer).await,
    }
}

/// 405, not cacheable.
fn method_not_allowed(text: &str) -> http::Response<Body> {
    http::Response::builder()
        .status(StatusCode::METHOD_NOT_ALLOWED)
        .header(header::ALLOW, "GET, HEAD, OPTIONS")
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::text(text))
        .unwrap_or_default()
}

/// Sends `resp`: its header section, then each body chunk as a DATA frame
/// (the shared `Bytes`, not a copy); no body for HEAD.
async fn respond(
    stream: &mut Stream,
    resp: http::Response<Body>,
    head: bool,
) -> Result<(), StreamError> {
    let (mut parts, body) = resp.into_parts();
    // Connection-specific fields are malformed in HTTP/3 (RFC 9114 §4.2).
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        parts.headers.remove(name);
    }
    parts.headers.remove("keep-alive");
    parts.headers.remove("proxy-connection");
    stream
        .send_response(http::Response::from_parts(parts, ()))
        .await?;
    if !head {
        for chunk in body.into_chunks() {
            stream.send_data(chunk).await?;
        }
    }
    stream.finish().await
}
