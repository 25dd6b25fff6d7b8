//! The QUIC listener (`--quic ADDR`): one UDP endpoint serving the
//! certificate of `--https` (`--tls-cert/--tls-key`, or the self-signed one
//! in `{data_dir}/tls/`), each connection dispatched by its negotiated ALPN.
//!
//! ```text
//!  UDP ─▶ quinn::Endpoint (rustls on ring, BBR) ─▶ a task per connection
//!           match ALPN:
//!             "h3" ─▶ http3: a task per request stream
//!                      GET/HEAD/OPTIONS ─▶ Route::of(path): delivery | tier (ingest: 405)
//!             "sluice-tier/1" ─▶ tier: edges' requests (Tier::handle) and
//!                      subscriptions (a pushed stream per fragment cut)
//! ```
//!
//! On shutdown the endpoint stops taking connections, each connection sends
//! GOAWAY and finishes the requests it accepted (10 s at most), then the
//! endpoint closes.

pub mod http3;
pub mod tier;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::delivery::Delivery;
use crate::tier::Tier;
use crate::tls::TlsMaterial;

/// ALPN of HTTP/3 (RFC 9114).
pub const ALPN_H3: &[u8] = b"h3";

/// The ALPN protocols the QUIC listener offers, in preference order. Each
/// has an arm in the dispatch of [`serve`]'s connections.
pub const ALPN: &[&[u8]] = &[ALPN_H3, tier::ALPN_TIER];

/// A connection with no packet for this long is closed. Players fetch a
/// segment every fragment (≤ 20 s); 30 s keeps a paused player's connection
/// over one fragment gap without holding dead ones long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Time a client gets to finish the QUIC (TLS 1.3) handshake, as on TCP.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Requests a client may have open at once on one connection (HTTP/2's
/// customary `SETTINGS_MAX_CONCURRENT_STREAMS`); further streams wait for
/// credit, they are not refused.
const MAX_CONCURRENT_REQUESTS: u32 = 100;

/// Unidirectional streams a client may open: HTTP/3 needs three (control,
/// QPACK encoder and decoder); the rest leaves room for reserved (grease)
/// stream types clients send.
const MAX_CONCURRENT_UNI_STREAMS: u32 = 16;

/// Per-stream receive window. Delivery requests carry no body: this only
/// has to hold a request's header section (at most
/// [`http3::MAX_FIELD_SECTION_SIZE`], 16 KiB) and the client's control
/// stream.
const STREAM_RECEIVE_WINDOW: u32 = 64 * 1024;

/// Receive window of a whole connection.
const RECEIVE_WINDOW: u32 = 1024 * 1024;

/// Time in-flight responses get to finish on shutdown, as on TCP.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The `Alt-Svc` value that advertises HTTP/3 on UDP `port` for a day.
pub fn alt_svc(port: u16) -> http::HeaderValue {
    http::HeaderValue::from_str(&format!("h3=\":{port}\"; ma=86400"))
        .expect("digits and ASCII punctuation are a valid header value")
}

/// Binds the listener's UDP socket (before the certificate is read, as the
/// TCP listeners are).
pub fn bind(addr: SocketAddr) -> anyhow::Result<UdpSocket> {
    crate::wire::udp_socket(addr).with_context(|| format!("cannot listen on quic={addr}"))
}

/// A QUIC server endpoint on `socket` serving `material` with the
/// [`ALPN`] protocols. Needs a Tokio runtime.
pub fn endpoint(socket: UdpSocket, material: &TlsMaterial) -> anyhow::Result<quinn::Endpoint> {
    let tls = crate::tls::server_config(material, ALPN)?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .context("the TLS configuration cannot serve QUIC")?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport()));
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .context("cannot start the QUIC endpoint")
}

/// Transport parameters: BBR congestion control (paces segment bursts and
/// keeps queues short on lossy last miles), and the limits above.
fn transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()))
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(IDLE_TIMEOUT).expect("30 s is a valid QUIC idle timeout"),
        ))
        .max_concurrent_bidi_streams(MAX_CONCURRENT_REQUESTS.into())
        .max_concurrent_uni_streams(MAX_CONCURRENT_UNI_STREAMS.into())
        .stream_receive_window(STREAM_RECEIVE_WINDOW.into())
        .receive_window(RECEIVE_WINDOW.into());
    t
}

/// What the QUIC listener's applications serve.
pub struct Services {
    /// Delivery URLs.
    pub delivery: Arc<Delivery>,
    /// The upstream interface (`/_tier/`).
    pub tier: Arc<Tier>,
}

/// Accepts connections on `endpoint` until `shutdown`, each in its own
/// task; then drains them and closes the endpoint.
pub async fn serve(
    endpoint: quinn::Endpoint,
    services: Arc<Services>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                let peer = incoming.remote_address();
                let span = tracing::debug_span!("quic", %peer);
                connections.spawn(
                    connection(incoming, services.clone(), shutdown.clone()).instrument(span),
                );
            }
            // Reap finished connections as they go.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    // No new connections; the open ones send GOAWAY and finish.
    endpoint.set_server_config(None);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!(
            left = connections.len(),
            "quic connections still busy at shutdown"
        );
        connections.shutdown().await;
    }
    endpoint.close(quinn::VarInt::from_u32(0), b"shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
}

/// One connection: the handshake, then the application its ALPN names.
async fn connection(
    incoming: quinn::Incoming,
    services: Arc<Services>,
    shutdown: watch::Receiver<bool>,
) {
    let conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, incoming).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "quic handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("quic handshake timed out");
            return;
        }
    };
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    match alpn.as_deref() {
        Some(ALPN_H3) => http3::serve_connection(conn, &services, shutdown).await,
        Some(tier::ALPN_TIER) => tier::serve_connection(conn, &services, shutdown).await,
        // rustls refuses a handshake offering none of `ALPN`: not reached.
        other => {
            tracing::debug!(alpn = ?other, "quic connection without a known ALPN");
            conn.close(quinn::VarInt::from_u32(0), b"no application protocol");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alt_svc_names_the_port_for_a_day() {
        assert_eq!(alt_svc(8443), "h3=\":8443\"; ma=86400");
    }

    #[tokio::test]
    async fn endpoint_serves_the_tls_material_on_the_bound_socket() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let material = crate::tls::load_or_create(None, None, dir.path())?;
        let socket = bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let bound = socket.local_addr()?;
        let endpoint = endpoint(socket, &material)?;
        assert_eq!(endpoint.local_addr()?, bound);
        // The port is taken: a second bind says which listener failed.
        let e = bind(bound).expect_err("port in use");
        assert!(e.to_string().contains(&format!("quic={bound}")), "{e}");
        endpoint.close(quinn::VarInt::from_u32(0), b"");
        Ok(())
    }
}
