//! A misbehaving packager plugin fails only its own requests: the server
//! answers 503 and keeps serving everything else.

use std::time::Duration;

use sluice_tests::{Sluice, ffmpeg_push_rtmp, http_get, wait_for};

#[test]
fn runaway_and_crashing_plugins_fail_alone() -> anyhow::Result<()> {
    let plugins = sluice_tests::tempdir::TempDir::new("sluice-plugins")?;
    std::fs::copy(
        sluice::plugins::testing::TESTBED_WASM,
        plugins.path().join("testbed.wasm"),
    )?;
    let config = "[plugins]\ndeadline_ms = 200\nmemory_mib = 32\n\n\
                  [[channels]]\nname = \"ch1\"\nkey = \"k\"\n";
    let plugin_dir = plugins.path().to_str().expect("utf-8 path");
    let server = Sluice::start(config, &["--plugin-dir", plugin_dir])?;
    let base = "/preview/ch1/preview.isml";
    let ok = http_get(server.http, &format!("{base}/testbed/hello"), &[])?;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert!(ok.text().starts_with("SLUICE-TESTBED-MARK-"));

    for bad in ["loop", "alloc", "panic"] {
        let r = http_get(server.http, &format!("{base}/testbed/{bad}"), &[])?;
        assert_eq!(r.status, 503, "testbed/{bad}: {}", r.text());
        assert_eq!(r.header("cache-control"), Some("no-store"));
        // The server keeps serving, the same plugin included.
        let again = http_get(server.http, &format!("{base}/testbed/hello"), &[])?;
        assert_eq!(again.status, 200);
    }
    let log = server.log();
    assert!(log.contains("deadline"), "deadline cause logged: {log}");
    assert!(
        log.contains("testbed asked to panic"),
        "panic message logged"
    );

    // And media still flows end to end.
    let url = format!("rtmp://{}/live/ch1/k/720p", server.rtmp);
    let (pushed, err) = ffmpeg_push_rtmp(&url, 3, &[])?;
    assert!(pushed, "{err}");
    wait_for(Duration::from_secs(20), || {
        let r = http_get(
            server.http,
            &format!("{base}/Manifest(format=m3u8-cmaf)"),
            &[],
        )
        .ok()?;
        (r.status == 200).then_some(())
    })?;
    Ok(())
}
