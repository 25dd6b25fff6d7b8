//! Determinism across nodes (DESIGN §4.3): two ingest nodes, configured
//! alike through the API (same channel, epoch, asset, program, locator),
//! each fed by its own ffmpeg pushing the same file with `-c copy`, serve
//! byte-identical manifests and segments for every URL.

use serde_json::json;
use sluice_tests::{
    Sluice, api, assert_same_bytes, encode_source, every_url, hls_urls, push_file, start_recording,
    stop_program, wait_recorded,
};

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
    let mut urls = every_url(nodes[0].http, base)?;
    for format in ["m3u8-cmaf", "m3u8-aapl"] {
        assert_eq!(
            hls_urls(nodes[0].http, base, format, true)?,
            hls_urls(nodes[1].http, base, format, true)?,
            "{format}: the nodes list different URLs"
        );
    }
    // Preview too: the channel's own presentation, ended.
    urls.extend(hls_urls(
        nodes[0].http,
        "/preview/ch1/preview.isml",
        "m3u8-cmaf",
        true,
    )?);
    assert!(urls.len() > 30, "{} URLs", urls.len());
    assert_same_bytes(&[nodes[0].http, nodes[1].http], &urls)?;
    Ok(())
}
