//! `quic://HOST:PORT?cert-sha256=HEX` upstreams: the tier protocol
//! (`sluice-tier/1`, see `crate::quic`) on one QUIC connection per upstream, made when
//! first needed and again after it is lost.
//!
//! ```text
//!  Upstreams::get ─▶ QuicUpstream::get: a bidirectional stream per request
//!  follower synced ─▶ Upstreams::subscribe(up, channel): one subscription
//!                     per (upstream, channel) while a follower holds it
//!  connection ─▶ accept_uni ─▶ push: head, SLF1 object ─▶ checked ─▶ fragment cache
//!  fetch_fragment ─▶ Pushes::wait: a fragment a subscription will push is
//!                    awaited briefly (its push, if it is under way), then fetched
//! ```
//!
//! The certificate is pinned: the SHA-256 of the end-entity DER must be
//! the URL's `cert-sha256`; the handshake signatures are still verified
//! against its key. ALPN `sluice-tier/1`, TLS 1.3, BBR.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::BytesMut;
use http::StatusCode;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::sync::watch;

use super::FragKey;
use super::answer::{Answer, UpstreamError};
use crate::storage::Fragment;
use crate::wire::frame::{Head, MAX_FRAME, PushHead, Request, encode_frame};
use crate::wire::{ALPN_TIER, DUPLICATE, read_frame};

/// Time a QUIC handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A connection with no packet for this long is lost (QUIC's own idle
/// timeout); keep-alives every [`KEEP_ALIVE`] keep an idle one open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const KEEP_ALIVE: Duration = Duration::from_millis(500);

/// A live peer acknowledges every keep-alive: one silent this long is
/// gone (a killed node sends nothing, not even a reset), and its
/// connection is closed so that requests fail over at once instead of
/// waiting out their timeouts.
const SILENT_LIMIT: Duration = Duration::from_secs(2);

/// Pushed streams the upstream may have open at once (bounds what the edge
/// reads concurrently).
const MAX_PUSH_STREAMS: u32 = 64;

/// Per-stream and per-connection receive windows: a fragment of a few
/// megabytes arrives without waiting for credit.
const STREAM_RECEIVE_WINDOW: u32 = 16 << 20;
const RECEIVE_WINDOW: u32 = 64 << 20;

/// Largest pushed object accepted.
const MAX_PUSH_OBJECT: u64 = 64 << 20;

/// How long a fetch waits for a fragment a subscription should push
/// before asking for it, and how long once its push is under way.
const PUSH_GRACE: Duration = Duration::from_millis(300);
const PUSH_UNDER_WAY: Duration = Duration::from_secs(3);

/// A subscription's error when the upstream takes none (an edge: 501).
const NO_SUBSCRIPTIONS: &str = "the upstream takes no subscriptions";

/// Time the upstream gets to answer a subscription.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts exactly the certificate whose DER has a given SHA-256; the
/// handshake signatures are still checked against its key.
#[derive(Debug)]
pub struct PinnedCert {
    url: String,
    sha256: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl PinnedCert {
    /// A verifier for the certificate of `url` (named in the log line of a
    /// mismatch) whose DER SHA-256 is `sha256_hex` (64 hex digits).
    pub fn from_hex(url: &str, sha256_hex: &str) -> Option<PinnedCert> {
        Some(PinnedCert {
            url: url.to_owned(),
            sha256: crate::config::parse_sha256(sha256_hex)?,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = ring::digest::digest(&ring::digest::SHA256, end_entity);
        if got.as_ref() == self.sha256 {
            return Ok(ServerCertVerified::assertion());
        }
        tracing::error!(
            upstream = %self.url,
            got = %hex(got.as_ref()),
            pinned = %hex(&self.sha256),
            "upstream certificate does not match the pinned cert-sha256: check the ?cert-sha256= of --upstream"
        );
        Err(rustls::Error::General(format!(
            "certificate SHA-256 {} is not the pinned cert-sha256",
            hex(got.as_ref())
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Called with each pushed fragment once it is cached, and the position of
/// the upstream that pushed it: lists it where it continues a timeline.
pub type OnPushed = Box<dyn Fn(&FragKey, &Fragment, usize) + Send + Sync>;

/// Where pushed fragments go, and who waits for them (shared by every
/// QUIC upstream of an edge).
#[derive(Default)]
pub struct Pushes {
    frags: OnceLock<moka::sync::Cache<FragKey, Arc<Fragment>>>,
    on_pushed: OnceLock<OnPushed>,
    /// Bumped whenever a push arrives, fails or starts.
    arrivals: watch::Sender<u64>,
    /// Pushes whose head was read and whose object is arriving.
    receiving: Mutex<HashSet<FragKey>>,
}

impl Pushes {
    /// Pushed fragments go into `frags` from now on, then to `on_pushed`.
    pub fn deliver_to(
        &self,
        frags: moka::sync::Cache<FragKey, Arc<Fragment>>,
        on_pushed: OnPushed,
    ) {
        let _ = self.frags.set(frags);
        let _ = self.on_pushed.set(on_pushed);
    }

    fn bump(&self) {
        self.arrivals.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn receiving(&self) -> std::sync::MutexGuard<'_, HashSet<FragKey>> {
        self.receiving.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for `key` to be pushed: `PUSH_GRACE`, or longer while its
    /// push is under way. `None`: it did not come (fetch it).
    pub async fn wait(&self, key: &FragKey) -> Option<Arc<Fragment>> {
        let frags = self.frags.get()?;
        let mut rx = self.arrivals.subscribe();
        let began = tokio::time::Instant::now();
        loop {
            if let Some(f) = frags.get(key) {
                return Some(f);
            }
            let until = if self.receiving().contains(key) {
                began + PUSH_UNDER_WAY
            } else {
                began + PUSH_GRACE
            };
            match tokio::time::timeout_at(until, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return frags.get(key),
            }
        }
    }
}

/// A `quic://` upstream.
pub struct QuicUpstream {
    url: String,
    index: usize,
    authority: String,
    server_name: String,
    client: quinn::ClientConfig,
    endpoint: Mutex<Option<(bool, quinn::Endpoint)>>,
    conn: tokio::sync::Mutex<ConnState>,
    pushes: Arc<Pushes>,
    /// Subscribed channels: per track, the newest start when the
    /// subscription began (later ones are pushed).
    subscribed: Mutex<HashMap<String, BTreeMap<u32, u64>>>,
}

impl std::fmt::Debug for QuicUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicUpstream")
            .field("url", &self.url)
            .finish()
    }
}

impl QuicUpstream {
    /// The upstream `url` (`quic://HOST:PORT`) at `authority`, pinned to
    /// `sha256`, delivering pushes to `pushes`.
    pub fn new(
        url: String,
        index: usize,
        authority: &str,
        sha256: [u8; 32],
        pushes: Arc<Pushes>,
    ) -> anyhow::Result<QuicUpstream> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = PinnedCert {
            url: url.clone(),
            sha256,
            provider: provider.clone(),
        };
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        tls.alpn_protocols = vec![ALPN_TIER.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| anyhow::anyhow!("the TLS configuration cannot serve QUIC: {e}"))?;
        let mut client = quinn::ClientConfig::new(Arc::new(crypto));
        let mut t = quinn::TransportConfig::default();
        t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()))
            .max_idle_timeout(Some(
                quinn::IdleTimeout::try_from(IDLE_TIMEOUT)
                    .expect("30 s is a valid QUIC idle timeout"),
            ))
            .keep_alive_interval(Some(KEEP_ALIVE))
            .max_concurrent_uni_streams(MAX_PUSH_STREAMS.into())
            .stream_receive_window(STREAM_RECEIVE_WINDOW.into())
            .receive_window(RECEIVE_WINDOW.into());
        client.transport_config(Arc::new(t));
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        Ok(QuicUpstream {
            url,
            index,
            authority: authority.to_owned(),
            server_name: host.to_owned(),
            client,
            endpoint: Mutex::new(None),
            conn: tokio::sync::Mutex::new(ConnState::default()),
            pushes,
            subscribed: Mutex::new(HashMap::new()),
        })
    }

    /// The client endpoint for `addr`'s address family (made once).
    fn endpoint(&self, addr: SocketAddr) -> Result<quinn::Endpoint, UpstreamError> {
        let mut slot = self.endpoint.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((v6, e)) = slot.as_ref()
            && *v6 == addr.is_ipv6()
        {
            return Ok(e.clone());
        }
        let local: SocketAddr = if addr.is_ipv6() {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let e = crate::wire::udp_socket(local)
            .and_then(|socket| {
                quinn::Endpoint::new(
                    quinn::EndpointConfig::default(),
                    None,
                    socket,
                    Arc::new(quinn::TokioRuntime),
                )
            })
            .map_err(|e| UpstreamError::Transport(format!("cannot open a UDP socket: {e}")))?;
        *slot = Some((addr.is_ipv6(), e.clone()));
        Ok(e)
    }

    /// The connection. The first one is made on first use; once one was
    /// lost or could not be made, it is made again in the background (with
    /// back-off) and requests fail at once meanwhile, as a refused TCP
    /// connection does: a dead node never holds a request for a handshake
    /// timeout.
    async fn connection(self: &Arc<Self>) -> Result<quinn::Connection, UpstreamError> {
        let mut state = self.conn.lock().await;
        if let Some(c) = state.conn.as_ref()
            && c.close_reason().is_none()
        {
            return Ok(c.clone());
        }
        if state.tried {
            if !state.reconnecting {
                state.reconnecting = true;
                tokio::spawn(reconnect(Arc::downgrade(self)));
            }
            return Err(UpstreamError::Transport(
                "not connected (reconnecting)".into(),
            ));
        }
        state.tried = true;
        match self.connect().await {
            Ok(c) => {
                state.conn = Some(c.clone());
                Ok(c)
            }
            Err(e) => {
                state.reconnecting = true;
                tokio::spawn(reconnect(Arc::downgrade(self)));
                Err(e)
            }
        }
    }

    /// One handshake; the connection's push acceptor and liveness check
    /// start with it.
    async fn connect(self: &Arc<Self>) -> Result<quinn::Connection, UpstreamError> {
        let addr = tokio::net::lookup_host(&self.authority)
            .await
            .map_err(|e| UpstreamError::Transport(format!("cannot resolve: {e}")))?
            .next()
            .ok_or_else(|| UpstreamError::Transport("no address".into()))?;
        let connecting = self
            .endpoint(addr)?
            .connect_with(self.client.clone(), addr, &self.server_name)
            .map_err(|e| UpstreamError::Transport(format!("cannot connect: {e}")))?;
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| UpstreamError::Transport("QUIC handshake timed out".into()))?
            .map_err(|e| UpstreamError::Transport(format!("QUIC handshake: {e}")))?;
        tracing::debug!(upstream = %self.url, "quic upstream connected");
        tokio::spawn(accept_pushes(conn.clone(), Arc::downgrade(self)));
        tokio::spawn(close_when_silent(conn.clone(), self.url.clone()));
        Ok(conn)
    }

    /// One request: `path` (below `/_tier/`) with `token`, reading at most
    /// `max_len` bytes of body. The caller bounds the time.
    pub async fn get(
        self: &Arc<Self>,
        path: &str,
        token: Option<&str>,
        max_len: usize,
    ) -> Result<Answer, UpstreamError> {
        let conn = self.connection().await?;
        let t = |e: &dyn std::fmt::Display| UpstreamError::Transport(e.to_string());
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| t(&e))?;
        let request = Request {
            get: Some(path.to_owned()),
            token: token.map(str::to_owned),
            ..Request::default()
        };
        send.write_chunk(encode_frame(&request))
            .await
            .map_err(|e| t(&e))?;
        let _ = send.finish();
        let head = read_head(&mut recv).await?;
        let mut body = BytesMut::new();
        while let Some(chunk) = recv.read_chunk(64 << 10, true).await.map_err(|e| t(&e))? {
            if body.len() + chunk.bytes.len() > max_len {
                let _ = recv.stop(quinn::VarInt::from_u32(0));
                return Err(UpstreamError::TooLarge(max_len));
            }
            body.extend_from_slice(&chunk.bytes);
        }
        Ok(Answer {
            status: head.0,
            body: body.freeze(),
        })
    }

    fn subscribed(&self) -> std::sync::MutexGuard<'_, HashMap<String, BTreeMap<u32, u64>>> {
        self.subscribed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a live subscription will push `key`.
    pub fn expects(&self, key: &FragKey) -> bool {
        self.subscribed()
            .get(&key.channel)
            .is_some_and(|after| after.get(&key.track).is_none_or(|a| key.start > *a))
    }

    /// Holds a subscription to `channel` until `stop` turns true (or the
    /// edge shuts down), subscribing again after a loss.
    async fn subscription(
        self: Arc<Self>,
        channel: String,
        token: Option<String>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut failures: u32 = 0;
        loop {
            if *stop.borrow() {
                break;
            }
            let ended = self
                .subscribe_once(&channel, token.as_deref(), &mut stop)
                .await;
            self.subscribed().remove(&channel);
            self.pushes.bump();
            match ended {
                Ok(()) => break,
                Err(e) if e == NO_SUBSCRIPTIONS => {
                    tracing::info!(upstream = %self.url, %channel, "upstream takes no subscriptions (another edge): following it by blocking requests only");
                    // Stays subscribed-to-nothing until the follower lets go.
                    let _ = stop.wait_for(|s| *s).await;
                    break;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 {
                        tracing::info!(upstream = %self.url, %channel, error = %e, "quic subscription lost; subscribing again");
                    }
                    let backoff = Duration::from_millis(250)
                        .saturating_mul(1 << failures.min(5))
                        .min(Duration::from_secs(8));
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                }
            }
        }
    }

    /// One subscription: `Ok` once stopped, `Err` when it failed or the
    /// upstream ended it.
    async fn subscribe_once(
        self: &Arc<Self>,
        channel: &str,
        token: Option<&str>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), String> {
        let conn = self.connection().await.map_err(|e| e.to_string())?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        let request = Request {
            subscribe: Some(channel.to_owned()),
            token: token.map(str::to_owned),
            ..Request::default()
        };
        send.write_chunk(encode_frame(&request))
            .await
            .map_err(|e| e.to_string())?;
        let (status, head) = tokio::time::timeout(SUBSCRIBE_TIMEOUT, read_head(&mut recv))
            .await
            .map_err(|_| "no answer to the subscription".to_owned())?
            .map_err(|e| e.to_string())?;
        if status == StatusCode::UNAUTHORIZED {
            tracing::error!(
                upstream = %self.url,
                "upstream refused the tier token (401): set the same --tier-token on this edge as on the ingest node"
            );
        }
        if status == StatusCode::NOT_IMPLEMENTED {
            return Err(NO_SUBSCRIPTIONS.to_owned());
        }
        if status != StatusCode::OK {
            return Err(format!("subscription answered {status}"));
        }
        self.subscribed()
            .insert(channel.to_owned(), head.after.unwrap_or_default());
        tracing::debug!(upstream = %self.url, %channel, "quic subscription");
        let mut scratch = [0u8; 64];
        loop {
            tokio::select! {
                read = recv.read(&mut scratch) => {
                    if !matches!(read, Ok(Some(_))) {
                        return Err("the upstream ended the subscription".into());
                    }
                }
                _ = stop.wait_for(|s| *s) => {
                    let _ = send.finish();
                    return Ok(());
                }
            }
        }
    }
}

/// Reads an answer head.
async fn read_head(recv: &mut quinn::RecvStream) -> Result<(StatusCode, Head), UpstreamError> {
    let frame = read_frame(recv, MAX_FRAME)
        .await
        .map_err(|e| UpstreamError::Transport(e.to_string()))?
        .ok_or_else(|| UpstreamError::Transport("stream ended before the answer".into()))?;
    let head: Head = crate::wire::frame::decode(&frame)
        .map_err(|e| UpstreamError::Transport(format!("bad answer head: {e}")))?;
    let status = StatusCode::from_u16(head.status)
        .map_err(|_| UpstreamError::Transport(format!("bad status {}", head.status)))?;
    Ok((status, head))
}

/// The connection of a `quic://` upstream.
#[derive(Default)]
struct ConnState {
    conn: Option<quinn::Connection>,
    /// A connection was made or attempted.
    tried: bool,
    /// [`reconnect`] runs.
    reconnecting: bool,
}

/// Makes the connection of `up` again: at once, then with back-off
/// (250 ms doubling to 8 s) until it succeeds or the edge is gone.
async fn reconnect(up: Weak<QuicUpstream>) {
    let mut delay = Duration::from_millis(250);
    loop {
        let Some(q) = up.upgrade() else { return };
        match q.connect().await {
            Ok(c) => {
                let mut state = q.conn.lock().await;
                state.conn = Some(c);
                state.reconnecting = false;
                tracing::info!(upstream = %q.url, "quic upstream connected again");
                return;
            }
            Err(e) => tracing::debug!(upstream = %q.url, error = %e, "quic reconnect failed"),
        }
        drop(q);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(8));
    }
}

/// Closes `conn` once the peer sent no datagram for [`SILENT_LIMIT`].
async fn close_when_silent(conn: quinn::Connection, url: String) {
    let mut seen = conn.stats().udp_rx.datagrams;
    let mut heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = conn.closed() => return,
            _ = tokio::time::sleep(KEEP_ALIVE / 2) => {}
        }
        let now = conn.stats().udp_rx.datagrams;
        if now != seen {
            (seen, heard) = (now, tokio::time::Instant::now());
        } else if heard.elapsed() >= SILENT_LIMIT {
            tracing::warn!(upstream = %url, silent = ?SILENT_LIMIT, "quic upstream went silent; closing its connection");
            conn.close(crate::wire::SILENT, b"peer silent");
            return;
        }
    }
}

/// Takes the pushed streams of `conn` until it closes, each in its own
/// task (the upstream may have [`MAX_PUSH_STREAMS`] open).
async fn accept_pushes(conn: quinn::Connection, up: Weak<QuicUpstream>) {
    while let Ok(recv) = conn.accept_uni().await {
        let Some(up) = up.upgrade() else { break };
        tokio::spawn(async move { up.receive_push(recv).await });
    }
}

impl QuicUpstream {
    /// One pushed fragment: checked against its head and its own checksum,
    /// then cached. A reset (skipped) push leaves nothing behind.
    async fn receive_push(&self, mut recv: quinn::RecvStream) {
        let head =
            match tokio::time::timeout(SUBSCRIBE_TIMEOUT, read_frame(&mut recv, MAX_FRAME)).await {
                Ok(Ok(Some(f))) => f,
                _ => return,
            };
        let checked = crate::wire::frame::decode::<PushHead>(&head)
            .and_then(|head| Ok((head.checked(MAX_PUSH_OBJECT)?, head)));
        let (sum, head) = match checked {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(upstream = %self.url, error = %e, "bad push head");
                let _ = recv.stop(crate::wire::BAD_FRAME);
                return;
            }
        };
        let wanted = self.subscribed().contains_key(&head.channel);
        let (true, Some(frags)) = (wanted, self.pushes.frags.get()) else {
            let _ = recv.stop(DUPLICATE);
            return;
        };
        let key = FragKey {
            channel: head.channel.clone(),
            track: head.track,
            start: head.start,
            sum,
        };
        if frags.contains_key(&key) {
            let _ = recv.stop(DUPLICATE);
            return;
        }
        self.pushes.receiving().insert(key.clone());
        self.pushes.bump();
        let object = read_object(&mut recv, head.len).await;
        self.pushes.receiving().remove(&key);
        match object.map(|o| check(o, &key)) {
            Some(Ok(f)) => {
                tracing::debug!(target: "sluice::timing", channel = %key.channel, track = key.track, start = key.start, "fragment pushed");
                let f = Arc::new(f);
                frags.insert(key.clone(), f.clone());
                if let Some(on_pushed) = self.pushes.on_pushed.get() {
                    on_pushed(&key, &f, self.index);
                }
                crate::metrics::metrics()
                    .edge_pushed
                    .get_or_create(&crate::metrics::UpstreamLabels {
                        upstream: self.index.to_string(),
                    })
                    .inc();
            }
            Some(Err(e)) => {
                tracing::warn!(upstream = %self.url, channel = %key.channel, track = key.track, start = key.start, error = %e, "pushed fragment refused");
            }
            // Skipped by the upstream (reset), or the connection went.
            None => {}
        }
        self.pushes.bump();
    }
}

/// Exactly `len` bytes up to the stream's end, or `None`.
async fn read_object(recv: &mut quinn::RecvStream, len: u64) -> Option<bytes::Bytes> {
    let len = usize::try_from(len).ok()?;
    let mut buf = BytesMut::with_capacity(len.min(4 << 20));
    while let Some(chunk) = recv.read_chunk(1 << 20, true).await.ok()? {
        if buf.len() + chunk.bytes.len() > len {
            return None;
        }
        buf.extend_from_slice(&chunk.bytes);
    }
    (buf.len() == len).then(|| buf.freeze())
}

/// The fragment in `object` if it is the one `key` names.
fn check(object: bytes::Bytes, key: &FragKey) -> Result<Fragment, String> {
    let header = crate::storage::decode_header(&object).map_err(|e| e.to_string())?;
    if header.checksum != key.sum || header.start != key.start {
        return Err("object is not the fragment its head names".into());
    }
    crate::storage::decode_fragment(object).map_err(|e| e.to_string())
}

/// Ends a subscription when the last follower using it lets go.
pub struct Subscription {
    stop: watch::Sender<bool>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// The subscriptions of an edge, one per (upstream, channel).
#[derive(Default)]
pub struct Subscriptions {
    held: Mutex<HashMap<(usize, String), Weak<Subscription>>>,
}

impl Subscriptions {
    /// The subscription of `up` to `channel`, started if none is held.
    pub fn hold(
        &self,
        up: &Arc<QuicUpstream>,
        channel: &str,
        token: Option<String>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Arc<Subscription> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|_, s| s.strong_count() > 0);
        let key = (up.index, channel.to_owned());
        if let Some(s) = held.get(&key).and_then(Weak::upgrade) {
            return s;
        }
        let (stop, stopped) = watch::channel(false);
        let sub = Arc::new(Subscription { stop });
        // Shutdown ends it too.
        let stop_tx = sub.stop.clone();
        let mut watching = stopped.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => { stop_tx.send_replace(true); }
                _ = watching.wait_for(|s| *s) => {}
            }
        });
        tokio::spawn(up.clone().subscription(channel.to_owned(), token, stopped));
        held.insert(key, Arc::downgrade(&sub));
        sub
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment() -> Fragment {
        Fragment {
            start: 9000,
            duration: 1000,
            discontinuity: false,
            samples: vec![sluice_sdk::plugin::SampleEntry {
                duration: 1000,
                size: 3,
                composition_offset: 0,
                keyframe: true,
            }],
            data: bytes::Bytes::from_static(b"abc"),
        }
    }

    #[test]
    fn pushed_objects_must_be_what_their_head_names() {
        let f = fragment();
        let object = crate::storage::encode_fragment(&f);
        let sum = crate::storage::checksum(&f);
        let key = |start, sum| FragKey {
            channel: "ch1".into(),
            track: 1,
            start,
            sum,
        };
        assert!(check(object.clone(), &key(9000, sum)).is_ok());
        assert!(check(object.clone(), &key(9000, sum ^ 1)).is_err());
        assert!(check(object.clone(), &key(0, sum)).is_err());
        let mut bad = object.to_vec();
        if let Some(b) = bad.last_mut() {
            *b ^= 1;
        }
        assert!(check(bad.into(), &key(9000, sum)).is_err());
        assert!(check(object.slice(..10), &key(9000, sum)).is_err());
    }
}
