//! Determinism across nodes (DESIGN §4.3): two ingest nodes, configured
//! alike through the API (same channel, epoch, asset, program, locator),
//! each fed by its own ffmpeg pushing the same file with `-c copy`, serve
//! byte-identical manifests and segments for every URL.

use std::collections::BTreeSet;

use serde_json::json;
use sluice_tests::{
    Sluice, api, encode_source, http_get, push_file, start_recording, stop_program, wait_recorded,
};

/// Every URL below `base` an HLS client would fetch: the multivariant
/// playlist, media playlists, init segments and media segments.
fn hls_urls(s: &Sluice, base: &str, format: &str) -> anyhow::Result<BTreeSet<String>> {
    let mut urls = BTreeSet::new();
    let master = format!("{base}/Manifest(format={format})");
    let text = http_get(s.http, &master, &[])?.text();
    urls.insert(master);
    let playlists: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.ends_with(".m3u8"))
        .map(str::to_owned)
        .chain(
            text.lines()
                .filter_map(|l| l.split("URI=\"").nth(1))
                .filter_map(|l| l.split('"').next())
                .map(str::to_owned),
        )
        .collect();
    anyhow::ensure!(!playlists.is_empty(), "{text}");
    for p in playlists {
        let url = format!("{base}/{p}");
        let media = http_get(s.http, &url, &[])?.text();
        anyhow::ensure!(media.contains("#EXT-X-ENDLIST"), "{url}: {media}");
        urls.insert(url);
        let dir = p.rsplit_once('/').map_or("", |(d, _)| d);
        for line in media.lines() {
            let uri = if let Some(rest) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
                rest.split('"').next().unwrap_or_default()
            } else if !line.starts_with('#') && !line.is_empty() {
                line
            } else {
                continue;
            };
            urls.insert(format!("{base}/{dir}/{uri}"));
        }
    }
    Ok(urls)
}

#[test]
fn two_ingest_nodes_fed_alike_serve_identical_bytes() -> anyhow::Result<()> {
    let work = sluice_tests::tempdir::TempDir::new("sluice-redundant")?;
    let source = encode_source(work.path(), 12, "source.flv")?;
    let nodes = [Sluice::start("", &[])?, Sluice::start("", &[])?];
    // The same epoch on both: program date-times and DASH availability
    // times derive from it, not from each node's clock.
    let channel = json!({
        "name": "ch1",
        "input": {"key": "same-key-1"},
        "epoch": "2026-01-01T00:00:00Z",
    });
    for s in &nodes {
        let (status, ch) = api(s.admin, "POST", "/api/v1/channels", Some(&channel))?;
        anyhow::ensure!(status == 201, "{ch}");
        assert_eq!(ch["epoch"], "2026-01-01T00:00:00Z");
        let (status, _) = api(s.admin, "POST", "/api/v1/channels/ch1/start", None)?;
        anyhow::ensure!(status == 200);
        start_recording(s, "ch1", "show", "PT5M")?;
    }
    // Both encoders at once, each to its node.
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let pushes: Vec<_> = nodes
            .iter()
            .map(|s| {
                let url = format!("rtmp://{}/live/ch1/same-key-1/main", s.rtmp);
                let source = source.clone();
                scope.spawn(move || push_file(&source, &url, false))
            })
            .collect();
        for p in pushes {
            let (ok, err) = p.join().map_err(|_| anyhow::anyhow!("push panicked"))??;
            anyhow::ensure!(ok, "{err}");
        }
        Ok(())
    })?;
    for s in &nodes {
        wait_recorded(s, "show", 10_000)?;
        stop_program(s, "ch1", "show")?;
    }

    let base = "/show/show.ism";
    let mut urls = BTreeSet::new();
    for format in [
        "Manifest",
        "Manifest(format=mpd-time-csf)",
        "Manifest(format=mpd-time-cmaf)",
        "Manifest(format=f4m-f4f)",
    ] {
        urls.insert(format!("{base}/{format}"));
    }
    for format in ["m3u8-cmaf", "m3u8-aapl"] {
        let a = hls_urls(&nodes[0], base, format)?;
        let b = hls_urls(&nodes[1], base, format)?;
        assert_eq!(a, b, "{format}: the nodes list different URLs");
        urls.extend(a);
    }
    // Preview too: the channel's own presentation, ended.
    urls.extend(hls_urls(
        &nodes[0],
        "/preview/ch1/preview.isml",
        "m3u8-cmaf",
    )?);
    assert!(urls.len() > 30, "{} URLs", urls.len());
    for url in &urls {
        let a = http_get(nodes[0].http, url, &[])?;
        let b = http_get(nodes[1].http, url, &[])?;
        assert_eq!(a.status, 200, "{url}: {}", a.text());
        assert_eq!(b.status, a.status, "{url}");
        assert!(a.body == b.body, "{url} differs between the nodes");
        assert_eq!(a.header("etag"), b.header("etag"), "{url}");
    }
    Ok(())
}
