//! A small HTTP/3 client for the tests (quinn + h3 + h3-quinn on ring),
//! pinning the server certificate by the SHA-256 of its DER, as
//! `listening quic=ADDR cert-sha256=HEX` prints it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::{Buf as _, Bytes};
use http::{HeaderMap, Method, StatusCode};
pub use sluice::edge::quic::PinnedCert;

/// Time one request (connection included) may take before it fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The host's verifier for a certificate pinned by the SHA-256 of its DER
/// (what an edge uses for `quic://` upstreams); panics on a malformed pin,
/// which only a test can give.
pub fn pinned(sha256_hex: &str) -> Arc<PinnedCert> {
    Arc::new(PinnedCert::from_hex("test", sha256_hex).expect("64 hex digits"))
}

/// A response read over HTTP/3.
#[derive(Debug)]
pub struct H3Response {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Vec<u8>,
}

impl H3Response {
    /// The header `name` as text, when present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A GET of `path` on the HTTP/3 server at `addr` (certificate pinned by
/// `cert_sha256`), on a connection of its own.
pub fn h3_get(addr: SocketAddr, cert_sha256: &str, path: &str) -> Result<H3Response> {
    h3_request(addr, cert_sha256, Method::GET, path, &[])
}

/// One request over a fresh HTTP/3 connection, from a blocking caller.
pub fn h3_request(
    addr: SocketAddr,
    cert_sha256: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<H3Response> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        tokio::time::timeout(
            REQUEST_TIMEOUT,
            h3_request_async(addr, cert_sha256, method, path, headers),
        )
        .await
        .context("HTTP/3 request timed out")?
    })
}

/// One request over a fresh HTTP/3 connection (server name `localhost`).
pub async fn h3_request_async(
    addr: SocketAddr,
    cert_sha256: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<H3Response> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(pinned(cert_sha256))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let local: SocketAddr = if addr.is_ipv6() {
        "[::1]:0".parse()?
    } else {
        "127.0.0.1:0".parse()?
    };
    let endpoint = quinn::Endpoint::client(local)?;
    let conn = endpoint
        .connect_with(
            quinn::ClientConfig::new(Arc::new(crypto)),
            addr,
            "localhost",
        )?
        .await
        .context("QUIC handshake")?;
    let result = exchange(conn.clone(), addr, method, path, headers).await;
    conn.close(quinn::VarInt::from_u32(0), b"done");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    result
}

async fn exchange(
    conn: quinn::Connection,
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<H3Response> {
    let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(conn)).await?;
    let drive = tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("https://localhost:{}{path}", addr.port()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut stream = send.send_request(req.body(())?).await?;
    stream.finish().await?;
    let resp = stream.recv_response().await?;
    let mut body = Vec::new();
    while let Some(mut chunk) = stream.recv_data().await? {
        let bytes: Bytes = chunk.copy_to_bytes(chunk.remaining());
        body.extend_from_slice(&bytes);
    }
    drop(stream);
    drop(send);
    drive.abort();
    Ok(H3Response {
        status: resp.status(),
        headers: resp.headers().clone(),
        body,
    })
}
