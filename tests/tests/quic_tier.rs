//! The QUIC tier: an edge with `--upstream quic://ADDR?cert-sha256=HEX`
//! reaches an ingest node's `--quic` listener over `sluice-tier/1`: every
//! tier request on one pinned connection, and new fragments pushed as they
//! are cut (one stream each, newest first). A subscriber that does not
//! keep up is skipped, never waited for.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sluice_tests::h3client::pinned;
use sluice_tests::{
    Sluice, assert_same_bytes, every_url, fragment_names, fragment_requests, hls_urls, http_get,
    metric, play_live_through_edge, push_file, record_clip, running_channel, serve_fails,
    start_recording, stop_program, wait_for,
};

const TOKEN: &str = "quic-t0ken";
const AUTH: (&str, &str) = ("Authorization", "Bearer quic-t0ken");

/// An ingest node with `--quic` and the token.
fn quic_node() -> anyhow::Result<Sluice> {
    Sluice::start("", &["--quic", "127.0.0.1:0", "--tier-token", TOKEN])
}

/// The `quic://` upstream URL of `s`, pinned to `sha` (default: its own).
fn quic_url(s: &Sluice, sha: Option<&str>) -> anyhow::Result<String> {
    let addr = s.quic.context("no `listening quic=` line")?;
    let own = s.quic_cert_sha256.clone().context("no cert-sha256")?;
    Ok(format!("quic://{addr}?cert-sha256={}", sha.unwrap_or(&own)))
}

fn edge_of(upstream: &str, token: Option<&str>) -> anyhow::Result<Sluice> {
    let mut args = vec!["--upstream", upstream];
    if let Some(t) = token {
        args.extend(["--tier-token", t]);
    }
    Sluice::start("", &args)
}

/// VmRSS of process `pid`, KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

#[test]
fn a_quic_edge_serves_the_same_bytes_and_fetches_each_fragment_once() -> anyhow::Result<()> {
    let s = quic_node()?;
    record_clip(&s, 8)?;
    stop_program(&s, "ch1", "show")?;
    let edge = edge_of(&quic_url(&s, None)?, Some(TOKEN))?;

    let mut urls = every_url(s.http, "/show/show.ism")?;
    urls.extend(hls_urls(
        s.http,
        "/preview/ch1/preview.isml",
        "m3u8-cmaf",
        true,
    )?);
    assert!(urls.len() > 30, "{} URLs", urls.len());
    let before = fragment_requests(&s)?;
    let upstream_before = metric(s.admin, "sluice_tier_requests_total{kind=\"timeline\"}")?;
    // The edge first: everything it answers comes over QUIC.
    if let Err(e) = assert_same_bytes(&[edge.http, s.http], &urls) {
        eprintln!("edge log:\n{}", edge.log());
        return Err(e);
    }
    let names = fragment_names(
        &s,
        &[
            "/_tier/v1/assets/show/timeline",
            "/_tier/v1/channels/ch1/timeline",
        ],
        &[AUTH],
    )?;
    // Each fragment once, through the same Tier::handle as HTTP requests.
    assert_eq!(fragment_requests(&s)? - before, names.len() as u64);
    assert!(metric(s.admin, "sluice_tier_requests_total{kind=\"timeline\"}")? > upstream_before);
    assert!(
        metric(
            edge.admin,
            "sluice_edge_upstream_requests_total{upstream=\"0\"}"
        )? > 0
    );

    // A quic:// upstream without its pin is refused at start-up.
    let (_, line) = serve_fails(&["--upstream", "quic://127.0.0.1:4433"])?;
    assert!(line.contains("needs ?cert-sha256="), "{line}");

    // A wrong pin: no connection, a 502 no cache keeps, one clear line.
    let bad = edge_of(&quic_url(&s, Some(&"00".repeat(32)))?, Some(TOKEN))?;
    let r = http_get(bad.http, "/show/show.ism/Manifest", &[])?;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(
        bad.log().contains("does not match the pinned cert-sha256"),
        "{}",
        bad.log()
    );
    // A wrong token: 401 over QUIC, as over HTTP.
    let bad = edge_of(&quic_url(&s, None)?, Some("nope"))?;
    let r = http_get(bad.http, "/show/show.ism/Manifest", &[])?;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        bad.log().contains("refused the tier token (401)"),
        "{}",
        bad.log()
    );
    Ok(())
}

#[test]
fn a_live_quic_edge_gets_new_fragments_pushed_and_ffmpeg_plays_it() -> anyhow::Result<()> {
    let s = quic_node()?;
    let edge = edge_of(&quic_url(&s, None)?, Some(TOKEN))?;
    let (video, err) = play_live_through_edge(&s, &edge, 16)?;
    assert!(
        video >= 200,
        "{video} video frames from the live QUIC edge: {err}"
    );
    let pushed = metric(
        s.admin,
        "sluice_tier_quic_fragments_pushed_total{channel=\"ch1\"}",
    )?;
    let received = metric(
        edge.admin,
        "sluice_edge_pushed_fragments_total{upstream=\"0\"}",
    )?;
    let requested = fragment_requests(&s)?;
    let listed = fragment_names(
        &s,
        &[
            "/_tier/v1/assets/show/timeline",
            "/_tier/v1/channels/ch1/timeline",
        ],
        &[AUTH],
    )?
    .len() as u64;
    let on_arrival = metric(
        edge.admin,
        "sluice_edge_pushed_listed_total{upstream=\"0\"}",
    )?;
    eprintln!(
        "pushed {pushed}, received {received}, listed on arrival {on_arrival}, requested {requested}, listed {listed}"
    );
    assert!(pushed > 0 && received > 0, "{}", edge.log());
    // Pushed fragments were listed as they arrived, not only once the
    // blocking timeline answer named them.
    assert!(on_arrival > 0, "{}", edge.log());
    // Most fragments came by push, not by request.
    assert!(
        requested < listed,
        "{requested} fragment requests for {listed} fragments"
    );
    // The edge followed with blocking requests over QUIC, too.
    assert!(metric(s.admin, "sluice_tier_requests_total{kind=\"blocking\"}")? > 0);
    Ok(())
}

/// One `sluice-tier/1` frame: length, JSON.
fn frame(v: &serde_json::Value) -> Vec<u8> {
    let json = v.to_string().into_bytes();
    let mut out = u32::try_from(json.len())
        .unwrap_or(0)
        .to_be_bytes()
        .to_vec();
    out.extend(json);
    out
}

/// A subscriber that never reads a pushed stream and grants almost no
/// flow-control credit: a raw quinn client subscribing to `channel`.
/// Returns the connection and the subscription stream (held open).
async fn stalled_subscriber(
    addr: SocketAddr,
    sha: &str,
    channel: &str,
) -> anyhow::Result<(
    quinn::Endpoint,
    quinn::Connection,
    quinn::SendStream,
    String,
)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(pinned(sha))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"sluice-tier/1".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_uni_streams(2u32.into())
        .stream_receive_window((16u32 * 1024).into())
        .receive_window((32u32 * 1024).into());
    config.transport_config(Arc::new(transport));
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    let conn = endpoint.connect_with(config, addr, "localhost")?.await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&frame(
        &serde_json::json!({"subscribe": channel, "token": TOKEN}),
    ))
    .await?;
    let mut len = [0u8; 4];
    recv.read_exact(&mut len).await?;
    let len = usize::try_from(u32::from_be_bytes(len))?;
    anyhow::ensure!(len <= 16 * 1024, "answer head of {len} bytes");
    let mut head = vec![0u8; len];
    recv.read_exact(&mut head).await?;
    Ok((
        endpoint,
        conn,
        send,
        String::from_utf8_lossy(&head).into_owned(),
    ))
}

#[test]
fn a_stalled_subscriber_is_skipped_and_costs_the_ingest_node_nothing() -> anyhow::Result<()> {
    let s = quic_node()?;
    let ch = running_channel(&s, "ch1")?;
    start_recording(&s, "ch1", "show", "PT5M")?;
    let http_edge = edge_of(&format!("http://{}", s.http), Some(TOKEN))?;
    let rtmp = format!("{}/main", ch["ingest"]["rtmp"].as_str().unwrap_or_default());
    let work = sluice_tests::tempdir::TempDir::new("sluice-quic-slow")?;
    let source = sluice_tests::encode_source(work.path(), 20, "source.flv")?;
    let quic = s.quic.context("no quic")?;
    let sha = s.quic_cert_sha256.clone().context("no cert-sha256")?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (_endpoint, conn, _send, head) = runtime.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(20),
            stalled_subscriber(quic, &sha, "ch1"),
        )
        .await
        .context("subscription timed out")?
    })?;
    let head: serde_json::Value = serde_json::from_str(&head)?;
    assert_eq!(head["status"], 200, "{head}");
    let rss_before = rss_kib(s.pid())?;
    let playlist = "/show/show.ism/m3u8-cmaf/t1/index.m3u8";

    std::thread::scope(|scope| -> anyhow::Result<()> {
        let push = scope.spawn(|| push_file(&source, &rtmp, true));
        // The HTTP edge follows live as if nobody else were there.
        let mut seen = BTreeSet::new();
        wait_for(Duration::from_secs(60), || {
            let r = http_get(http_edge.http, playlist, &[]).ok()?;
            (r.status == 200).then(|| seen.insert(r.text().matches("#EXTINF").count()));
            (seen.len() >= 4).then_some(())
        })?;
        let r = http_get(http_edge.http, playlist, &[])?;
        let segment = r
            .text()
            .lines()
            .rfind(|l| l.ends_with(".m4s"))
            .map(|l| format!("/show/show.ism/m3u8-cmaf/t1/{l}"))
            .context("no segment")?;
        assert_eq!(http_get(http_edge.http, &segment, &[])?.status, 200);
        // The stalled subscriber is skipped.
        wait_for(Duration::from_secs(60), || {
            let n = metric(
                s.admin,
                "sluice_tier_quic_fragments_skipped_total{channel=\"ch1\"}",
            )
            .ok()?;
            (n >= 4).then_some(())
        })?;
        let (ok, err) = push
            .join()
            .map_err(|_| anyhow::anyhow!("push panicked"))??;
        anyhow::ensure!(ok, "{err}");
        Ok(())
    })?;
    // Still connected: skipping is not hanging up.
    assert!(conn.close_reason().is_none(), "{:?}", conn.close_reason());
    let rss_after = rss_kib(s.pid())?;
    let skipped = metric(
        s.admin,
        "sluice_tier_quic_fragments_skipped_total{channel=\"ch1\"}",
    )?;
    eprintln!("RSS {rss_before} KiB -> {rss_after} KiB, skipped {skipped}");
    assert!(
        rss_after.saturating_sub(rss_before) < 64 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    conn.close(quinn::VarInt::from_u32(0), b"done");
    Ok(())
}
