//! `--quic ADDR`: delivery over HTTP/3 on a UDP listener with the `--https`
//! certificate (here the self-signed one), printed as `listening quic=ADDR
//! cert-sha256=HEX`; the TCP listeners advertise it with `Alt-Svc`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use http::{Method, StatusCode};
use sluice_tests::h3client::{H3Response, h3_get, h3_request, sha256_hex};
use sluice_tests::{HttpResponse, Player, Sluice, http_get, play_in_browser_with, wait_for};

const MANIFEST: &str = "/preview/demo/preview.isml/Manifest(format=m3u8-cmaf)";
const QUIC: &[&str] = &["--demo", "--quic", "127.0.0.1:0"];

/// The quic address and certificate hash of its listening line.
fn quic_of(s: &Sluice) -> anyhow::Result<(SocketAddr, String)> {
    let addr = s.quic.context("no `listening quic=` line")?;
    let sha = s
        .quic_cert_sha256
        .clone()
        .context("no cert-sha256 on the quic line")?;
    Ok((addr, sha))
}

/// `uri` of a playlist at `base` (a path), resolved as a relative reference.
fn resolve(base: &str, uri: &str) -> String {
    if uri.starts_with('/') {
        return uri.to_owned();
    }
    let dir = base.rsplit_once('/').map_or("", |(d, _)| d);
    format!("{dir}/{uri}")
}

/// Fetches `path` over HTTP/1.1, HTTP/3, and HTTP/1.1 again until the two
/// HTTP/1.1 answers carry the same ETag (a live playlist may change between
/// fetches); returns that HTTP/1.1 answer and the HTTP/3 one.
fn both(
    s: &Sluice,
    quic: SocketAddr,
    sha: &str,
    path: &str,
) -> anyhow::Result<(HttpResponse, H3Response)> {
    for _ in 0..10 {
        let before = http_get(s.http, path, &[])?;
        let h3 = h3_get(quic, sha, path)?;
        let after = http_get(s.http, path, &[])?;
        if before.header("etag").is_some() && before.header("etag") == after.header("etag") {
            return Ok((before, h3));
        }
    }
    anyhow::bail!("{path} changed on every try")
}

/// Asserts the HTTP/1.1 and HTTP/3 answers for `path` are the same object.
fn assert_same(s: &Sluice, quic: SocketAddr, sha: &str, path: &str) -> anyhow::Result<Vec<u8>> {
    let (h1, h3) = both(s, quic, sha, path)?;
    assert_eq!(h1.status, 200, "{path} over HTTP/1.1: {}", h1.text());
    assert_eq!(h3.status, StatusCode::OK, "{path} over HTTP/3");
    assert_eq!(h3.header("etag"), h1.header("etag"), "{path}: ETag");
    assert!(
        h3.body == h1.body,
        "{path}: bodies differ ({} vs {} bytes)",
        h3.body.len(),
        h1.body.len()
    );
    assert_eq!(
        h3.header("content-length"),
        Some(h1.body.len().to_string().as_str()),
        "{path}: content-length over HTTP/3"
    );
    // HTTP/3 is not advertised over HTTP/3.
    assert_eq!(h3.header("alt-svc"), None, "{path}");
    Ok(h1.body)
}

#[test]
fn preview_over_http3_matches_http1_and_tcp_advertises_it() -> anyhow::Result<()> {
    let s = Sluice::start("", QUIC)?;
    let (quic, sha) = quic_of(&s)?;
    assert!(quic.ip().is_loopback() && quic.port() != 0, "{quic}");
    // The printed hash is the one of the self-signed certificate on disk.
    let pem = std::fs::read_to_string(s.data_dir.join("tls/cert.pem"))?;
    let der = pem_der(&pem)?;
    assert_eq!(sha256_hex(&der), sha);

    let (media_path, segment_path) = wait_for_segments(&s)?;

    let master = assert_same(&s, quic, &sha, MANIFEST)?;
    assert!(master.starts_with(b"#EXTM3U"));
    let media = assert_same(&s, quic, &sha, &media_path)?;
    assert!(String::from_utf8_lossy(&media).contains("#EXTINF"));
    let segment = assert_same(&s, quic, &sha, &segment_path)?;
    assert!(segment.len() > 1000, "segment of {} bytes", segment.len());

    // HEAD: the headers of GET, no body.
    let head = h3_request(quic, &sha, Method::HEAD, &segment_path, &[])?;
    assert_eq!(head.status, StatusCode::OK);
    assert!(
        head.body.is_empty(),
        "{} body bytes on HEAD",
        head.body.len()
    );
    assert_eq!(
        head.header("content-length"),
        Some(segment.len().to_string().as_str())
    );
    // A range, as players ask.
    let part = h3_request(
        quic,
        &sha,
        Method::GET,
        &segment_path,
        &[("range", "bytes=10-99")],
    )?;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body, segment[10..100]);

    // Unknown path, ingest, other methods.
    let r = h3_get(quic, &sha, "/no/such/thing")?;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h3_get(quic, &sha, "/ingest/x")?;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(String::from_utf8_lossy(&r.body).contains("ingest"), "{r:?}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let r = h3_request(quic, &sha, Method::POST, MANIFEST, &[])?;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // A header section over the 16 KiB limit is refused: 431 from the
    // server, or an error from the client once it has the server's
    // SETTINGS; the server goes on.
    let junk = "x".repeat(32 * 1024);
    let big = h3_request(quic, &sha, Method::GET, MANIFEST, &[("x-junk", &junk)]);
    assert!(
        big.as_ref().map_or(true, |r| r.status
            == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        "an oversized header section was served: {big:?}"
    );
    assert_eq!(h3_get(quic, &sha, MANIFEST)?.status, StatusCode::OK);
    // The upstream interface answers over HTTP/3 too.
    let r = h3_get(quic, &sha, "/_tier/v1/health")?;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");

    // Another certificate hash: the handshake fails.
    let wrong = "00".repeat(32);
    assert!(
        h3_get(quic, &wrong, MANIFEST).is_err(),
        "a wrong pin was accepted"
    );

    // Over TCP, delivery responses advertise HTTP/3; tier responses do not.
    let want = format!("h3=\":{}\"; ma=86400", quic.port());
    for path in [MANIFEST, segment_path.as_str(), "/no/such/thing"] {
        let r = http_get(s.http, path, &[])?;
        assert_eq!(r.header("alt-svc"), Some(want.as_str()), "{path}");
    }
    let r = http_get(s.http, "/_tier/v1/health", &[])?;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("alt-svc"), None);

    // Shutdown drains the QUIC listener too.
    let status = s.terminate()?;
    assert!(status.success(), "exit status {status}");

    // Without --quic, no Alt-Svc.
    let plain = Sluice::start("", &["--demo"])?;
    assert!(plain.quic.is_none());
    let r = http_get(plain.http, MANIFEST, &[])?;
    assert_eq!(r.header("alt-svc"), None, "{:?}", r.headers);
    Ok(())
}

#[test]
fn an_edge_serves_http3_and_edges_chain_over_quic() -> anyhow::Result<()> {
    let node = Sluice::start("", &["--demo"])?;
    let upstream = format!("http://{}", node.http);
    let edge = Sluice::start("", &["--upstream", &upstream, "--quic", "127.0.0.1:0"])?;
    let (quic, sha) = quic_of(&edge)?;
    let (media_path, segment_path) = wait_for_segments(&edge)?;
    // Delivery over HTTP/3 from the edge, the same objects as over TCP,
    // which advertises it.
    assert_same(&edge, quic, &sha, MANIFEST)?;
    assert_same(&edge, quic, &sha, &media_path)?;
    let segment = assert_same(&edge, quic, &sha, &segment_path)?;
    let want = format!("h3=\":{}\"; ma=86400", quic.port());
    let r = http_get(edge.http, &segment_path, &[])?;
    assert_eq!(r.header("alt-svc"), Some(want.as_str()));
    // Another edge pulls from this one over the QUIC tier: requests are
    // answered, subscriptions refused (an edge cuts nothing), so it
    // follows by blocking requests and serves the same segment.
    let far = Sluice::start(
        "",
        &["--upstream", &format!("quic://{quic}?cert-sha256={sha}")],
    )?;
    let r = wait_for(Duration::from_secs(30), || {
        let r = http_get(far.http, &segment_path, &[]).ok()?;
        (r.status == 200).then_some(r)
    })?;
    assert!(r.body == segment, "the far edge's segment differs");
    wait_for(Duration::from_secs(10), || {
        far.log()
            .contains("upstream takes no subscriptions")
            .then_some(())
    })?;
    Ok(())
}

/// Waits until the demo preview lists two segments (the source runs in
/// real time); returns the path of the first media playlist and of its
/// first segment.
fn wait_for_segments(s: &Sluice) -> anyhow::Result<(String, String)> {
    wait_for(Duration::from_secs(60), || {
        let master = http_get(s.http, MANIFEST, &[]).ok()?;
        let uri = master
            .text()
            .lines()
            .find(|l| l.ends_with(".m3u8"))?
            .to_owned();
        let media_path = resolve(MANIFEST, &uri);
        let media = http_get(s.http, &media_path, &[]).ok()?.text();
        let segments: Vec<&str> = media.lines().filter(|l| l.ends_with(".m4s")).collect();
        let first = segments.first()?;
        (segments.len() >= 2).then(|| (media_path.clone(), resolve(&media_path, first)))
    })
}

/// The DER of the first certificate of a PEM text.
fn pem_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine as _;
    let b64: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    Ok(base64::engine::general_purpose::STANDARD.decode(b64)?)
}

#[test]
fn chromium_plays_hls_over_http3() -> anyhow::Result<()> {
    let s = Sluice::start("", QUIC)?;
    let (quic, _) = quic_of(&s)?;
    let spki = s
        .quic_spki_sha256
        .clone()
        .context("no spki-sha256 on the quic line")?;
    // Chromium speaks QUIC to an IP-literal origin when forced to: no
    // `localhost` name or --host-resolver-rules needed. The self-signed
    // certificate (SANs localhost, 127.0.0.1, ::1) is trusted by its key's
    // hash; Playwright passes --user-data-dir, which that switch requires.
    wait_for_segments(&s)?;
    let url = format!("https://{quic}{MANIFEST}");
    let args = [
        "--chromium-arg".to_owned(),
        format!("--origin-to-force-quic-on={quic}"),
        "--chromium-arg".to_owned(),
        format!("--ignore-certificate-errors-spki-list={spki}"),
        "--protocols".to_owned(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = play_in_browser_with(Player::HlsJs, &url, &args)
        .with_context(|| format!("server log:\n{}", s.log()))?;
    println!("{report}");
    let protocols = report["protocols"]
        .as_object()
        .with_context(|| format!("no protocols in {report}"))?;
    let h3 = protocols.get("h3").and_then(|n| n.as_u64()).unwrap_or(0);
    // The multivariant playlist, media playlists, init and media segments.
    assert!(h3 >= 4, "{report}");
    assert!(
        protocols.keys().all(|p| p == "h3"),
        "media responses not over h3: {report}"
    );
    assert!(
        report["t"].as_f64().unwrap_or(0.0) > report["startedAt"].as_f64().unwrap_or(0.0),
        "{report}"
    );
    Ok(())
}

#[test]
fn busy_quic_port_fails_with_one_line() -> anyhow::Result<()> {
    let busy = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let addr = busy.local_addr()?.to_string();
    let (out, err) = sluice_tests::serve_fails(&["--quic", &addr])?;
    assert!(!out.contains("listening"), "{out}");
    assert!(
        err.contains(&format!("cannot listen on quic={addr}")),
        "{err}"
    );
    Ok(())
}
