//! The preview page (`/preview/{channel}/`): headless Chromium plays it
//! while ffmpeg pushes two renditions, switches rendition and watches the
//! state panel update, with no request leaving the server; `state.json`
//! describes the encoders, tracks and counters; the ingest metrics follow
//! the encoder; the preview allow list covers page, assets and state; an
//! edge serves the page but not the state.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sluice_tests::{
    HttpResponse, Sluice, X264, api, ffmpeg_push_rtmp, http_get, metric, run, running_channel,
    wait_for,
};

/// An ffmpeg pushing two renditions (`360p`, 640x360, and `180p`,
/// 320x180) of a synthetic clip in real time over RTMP to `{base}/360p` and
/// `{base}/180p`; killed on drop.
struct Push(Child);

impl Push {
    fn start(base: &str, seconds: u32) -> anyhow::Result<Push> {
        let lavfi = |source: &str| format!("{source}:duration={seconds}");
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
            .args(["-f", "lavfi", "-i", &lavfi("testsrc2=size=640x360:rate=25")])
            .args([
                "-f",
                "lavfi",
                "-i",
                &lavfi("sine=frequency=440:sample_rate=48000"),
            ]);
        for (size, rate, name) in [("640x360", "800k", "360p"), ("320x180", "300k", "180p")] {
            cmd.args(["-map", "0:v", "-map", "1:a", "-s", size, "-b:v", rate])
                .args(X264)
                .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv"])
                .arg(format!("{base}/{name}"));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        Ok(Push(child))
    }

    /// Waits for ffmpeg to finish: its success.
    fn wait(mut self) -> anyhow::Result<bool> {
        Ok(self.0.wait()?.success())
    }
}

impl Drop for Push {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The RTMP ingest URL of a new running channel `name` on `server`.
fn rtmp_of(server: &Sluice, name: &str) -> anyhow::Result<String> {
    let ch = running_channel(server, name)?;
    Ok(ch["ingest"]["rtmp"].as_str().unwrap_or_default().to_owned())
}

/// Waits until the preview of `channel` lists `variants` variants, each
/// with at least `segments` segments.
fn wait_live(
    server: &Sluice,
    channel: &str,
    variants: usize,
    segments: usize,
) -> anyhow::Result<()> {
    let base = format!("/preview/{channel}/preview.isml");
    wait_for(Duration::from_secs(60), || {
        let master = http_get(
            server.http,
            &format!("{base}/Manifest(format=m3u8-cmaf)"),
            &[],
        )
        .ok()?;
        let text = master.text();
        let uris: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && l.ends_with(".m3u8"))
            .collect();
        if uris.len() < variants {
            return None;
        }
        uris.iter()
            .all(|u| {
                http_get(server.http, &format!("{base}/{u}"), &[])
                    .map(|r| r.text().matches("#EXTINF").count() >= segments)
                    .unwrap_or(false)
            })
            .then_some(())
    })
}

/// Runs `tests/browser/preview_page.mjs` on `url`: its report.
fn page_in_browser(url: &str, extra: &[&str]) -> anyhow::Result<serde_json::Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    anyhow::ensure!(
        dir.join("node_modules/playwright-core").is_dir()
            && Path::new("/usr/bin/chromium").exists(),
        "browser not installed: run ./scripts/test.sh (apt chromium, npm ci in tests/browser)"
    );
    let (ok, out, err) = run(Command::new("node")
        .arg(dir.join("preview_page.mjs"))
        .args(["--url", url])
        .args(extra))?;
    let report: serde_json::Value = serde_json::from_str(out.trim())
        .map_err(|e| anyhow::anyhow!("report {e}: {out}\n{err}"))?;
    anyhow::ensure!(ok, "preview page checks failed: {report}\n{err}");
    Ok(report)
}

fn state(server: &Sluice, channel: &str) -> anyhow::Result<(HttpResponse, serde_json::Value)> {
    let r = http_get(server.http, &format!("/preview/{channel}/state.json"), &[])?;
    let v = if r.status == 200 {
        serde_json::from_slice(&r.body)?
    } else {
        serde_json::Value::Null
    };
    Ok((r, v))
}

/// The asset paths (`page/{hash}/{file}`) the page at `path` names.
fn page_assets(server: &Sluice, path: &str) -> anyhow::Result<Vec<String>> {
    let r = http_get(server.http, path, &[])?;
    anyhow::ensure!(r.status == 200, "{path}: {} {}", r.status, r.text());
    let assets: Vec<String> = r
        .text()
        .split('"')
        .filter(|s| s.starts_with("page/"))
        .map(str::to_owned)
        .collect();
    anyhow::ensure!(assets.len() == 3, "{assets:?}");
    Ok(assets)
}

#[test]
fn the_page_plays_switches_renditions_and_shows_live_state_in_a_browser() -> anyhow::Result<()> {
    let server = Sluice::start("", &[])?;
    let rtmp = rtmp_of(&server, "ch1")?;
    let _push = Push::start(&rtmp, 120)?;
    wait_live(&server, "ch1", 2, 2)?;
    let report = page_in_browser(&server.url("/preview/ch1/"), &["--levels", "2"])?;
    eprintln!("{report}");
    // Every request went to the server (the script refuses and reports any
    // other origin), and to this channel's URLs.
    assert!(report["requests"].as_u64().unwrap_or(0) > 10, "{report}");
    assert_eq!(report["foreign"], serde_json::json!([]), "{report}");
    for p in report["paths"].as_array().into_iter().flatten() {
        let p = p.as_str().unwrap_or_default();
        assert!(p.starts_with("/preview/ch1/"), "{p}");
    }
    let checks = &report["checks"];
    assert!(checks["encoders"]["count"].as_u64() >= Some(1), "{report}");
    assert!(
        checks["chartGrows"]["later"].as_u64() > checks["chartGrows"]["first"].as_u64(),
        "{report}"
    );
    Ok(())
}

#[test]
fn state_and_ingest_metrics_follow_the_encoders() -> anyhow::Result<()> {
    let server = Sluice::start("", &[])?;
    let rtmp = rtmp_of(&server, "ch1")?;
    let push = Push::start(&rtmp, 10)?;

    // While pushing: both encoders, from loopback, with a bitrate, and
    // their tracks with codecs.
    let s = wait_for(Duration::from_secs(30), || {
        let (_, s) = state(&server, "ch1").ok()?;
        let encoders = s["encoders"].as_array()?;
        let ready = encoders.len() == 2
            && encoders.iter().all(|e| e["bitrate"].as_u64() > Some(0))
            && s["tracks"].as_array()?.len() == 4
            && s["streams"].as_array()?.iter().all(|x| {
                x["history"]["bitrate"]
                    .as_array()
                    .is_some_and(|h| !h.is_empty())
            });
        ready.then_some(s)
    })?;
    let (r, _) = state(&server, "ch1")?;
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let mut streams: Vec<&str> = s["encoders"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["stream"].as_str().unwrap_or_default())
        .collect();
    streams.sort_unstable();
    assert_eq!(streams, ["180p", "360p"], "{s}");
    for e in s["encoders"].as_array().into_iter().flatten() {
        let address = e["address"].as_str().unwrap_or_default();
        assert!(address.starts_with("127.0.0.1:"), "{e}");
        assert_eq!(e["protocol"], "rtmp", "{e}");
        assert!(e["bytes"].as_u64() > Some(0), "{e}");
        assert!(e["connected_ms"].as_i64() > Some(0), "{e}");
    }
    for t in s["tracks"].as_array().into_iter().flatten() {
        let codec = t["codec"].as_str().unwrap_or_default();
        match t["kind"].as_str() {
            Some("video") => {
                assert!(codec.starts_with("avc1."), "{t}");
                assert!(t["width"].as_u64() > Some(0), "{t}");
            }
            Some("audio") => {
                assert_eq!(codec, "mp4a.40.2", "{t}");
                assert_eq!(t["sample_rate"], 48000, "{t}");
            }
            _ => panic!("unexpected track {t}"),
        }
        assert!(t["stream"] == "360p" || t["stream"] == "180p", "{t}");
    }
    assert_eq!(s["state"], "running");
    assert_eq!(s["presentation"], "live");
    assert!(s["fragment_age_ms"].as_i64().is_some(), "{s}");
    assert_eq!(s["streams"][0]["history"]["interval_ms"], 2000, "{s}");

    // The ingest metrics rise while the encoders push.
    let labels = r#"{channel="ch1",stream="360p"}"#;
    let fragments = format!("sluice_ingest_fragments_total{labels}");
    let bytes = format!("sluice_ingest_bytes_total{labels}");
    let encoders = format!("sluice_ingest_encoders{labels}");
    assert_eq!(metric(server.admin, &encoders)?, 1);
    let (f0, b0) = (
        metric(server.admin, &fragments)?,
        metric(server.admin, &bytes)?,
    );
    wait_for(Duration::from_secs(30), || {
        let f = metric(server.admin, &fragments).ok()?;
        let b = metric(server.admin, &bytes).ok()?;
        (f > f0 && b > b0).then_some(())
    })?;
    let text = http_get(server.admin, "/metrics", &[])?.text();
    assert!(
        text.contains(&format!("sluice_ingest_last_fragment_age_seconds{labels} ")),
        "{text}"
    );
    assert!(!text.contains("127.0.0.1"), "no client address in metrics");

    // The encoders stop: they leave the registry and the gauge drops to 0.
    assert!(push.wait()?, "ffmpeg failed");
    wait_for(Duration::from_secs(30), || {
        let (_, s) = state(&server, "ch1").ok()?;
        let gone = s["encoders"].as_array()?.is_empty()
            && metric(server.admin, &encoders).ok()? == 0
            && text_has(&server, &encoders);
        gone.then_some(())
    })?;
    let (_, s) = state(&server, "ch1")?;
    assert_eq!(s["streams"].as_array().map(Vec::len), Some(2), "{s}");
    Ok(())
}

/// Whether `/metrics` of `server` prints the series `series`.
fn text_has(server: &Sluice, series: &str) -> bool {
    http_get(server.admin, "/metrics", &[])
        .map(|r| r.text().contains(&format!("{series} ")))
        .unwrap_or(false)
}

#[test]
fn the_allow_list_covers_page_assets_and_state() -> anyhow::Result<()> {
    let server = Sluice::start("", &[])?;
    running_channel(&server, "open")?;
    let body = serde_json::json!({"name": "closed", "preview": {"allow": ["10.1.0.0/16"]}});
    let (status, v) = api(server.admin, "POST", "/api/v1/channels", Some(&body))?;
    assert_eq!(status, 201, "{v}");

    // The page, its assets (immutable, content-hash ETags) and state.
    let r = http_get(server.http, "/preview/open", &[])?;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/preview/open/"));
    let page = http_get(server.http, "/preview/open/", &[])?;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        page.header("content-security-policy")
            .is_some_and(|c| c.contains("default-src 'none'")),
        "{:?}",
        page.headers
    );
    let assets = page_assets(&server, "/preview/open/")?;
    for a in &assets {
        let r = http_get(server.http, &format!("/preview/open/{a}"), &[])?;
        assert_eq!(r.status, 200, "{a}");
        assert_eq!(
            r.header("cache-control"),
            Some("public, max-age=31536000, immutable"),
            "{a}"
        );
        let etag = r.header("etag").unwrap_or_default().to_owned();
        let hash = a.split('/').nth(1).unwrap_or_default();
        assert!(etag.starts_with(&format!("\"{hash}")), "{a}: {etag}");
        let again = http_get(
            server.http,
            &format!("/preview/open/{a}"),
            &[("If-None-Match", &etag)],
        )?;
        assert_eq!(again.status, 304, "{a}");
    }
    let hls = assets
        .iter()
        .find(|a| a.ends_with("/hls.min.js"))
        .expect("hls.js");
    let stale = hls.replacen("page/", "page/0000", 1);
    assert_eq!(
        http_get(server.http, &format!("/preview/open/{stale}"), &[])?.status,
        404
    );
    let (r, s) = state(&server, "open")?;
    assert_eq!(r.status, 200);
    assert_eq!(s["presentation"], "empty", "{s}");
    assert_eq!(s["encoders"], serde_json::json!([]), "{s}");
    assert_eq!(
        http_get(server.http, "/preview/nope/", &[])?.status,
        404,
        "unknown channel"
    );

    // 127.0.0.1 is outside the closed channel's preview allow list.
    let mut refused = vec![
        "/preview/closed/".to_owned(),
        "/preview/closed/state.json".to_owned(),
        "/preview/closed/preview.isml/Manifest(format=m3u8-cmaf)".to_owned(),
    ];
    refused.extend(assets.iter().map(|a| format!("/preview/closed/{a}")));
    for path in refused {
        let r = http_get(server.http, &path, &[])?;
        assert_eq!(r.status, 403, "{path}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
    }
    Ok(())
}

#[test]
fn an_edge_serves_the_page_and_plays_but_keeps_no_state() -> anyhow::Result<()> {
    let node = Sluice::start("", &[])?;
    let closed = serde_json::json!({"name": "closed", "preview": {"allow": ["10.1.0.0/16"]}});
    let (status, v) = api(node.admin, "POST", "/api/v1/channels", Some(&closed))?;
    assert_eq!(status, 201, "{v}");
    let (status, v) = api(node.admin, "POST", "/api/v1/channels/closed/start", None)?;
    assert_eq!(status, 200, "{v}");
    let key = v["input"]["key"].as_str().unwrap_or_default();
    let (ok, err) = ffmpeg_push_rtmp(
        &format!("rtmp://{}/live/closed/{key}/main", node.rtmp),
        3,
        &[],
    )?;
    assert!(ok, "{err}");
    let rtmp = rtmp_of(&node, "ch1")?;
    let _push = Push::start(&rtmp, 120)?;
    let edge = Sluice::start("", &["--upstream", &format!("http://{}", node.http)])?;
    wait_live(&node, "ch1", 2, 2)?;

    let assets = page_assets(&edge, "/preview/ch1/")?;
    for a in &assets {
        let r = http_get(edge.http, &format!("/preview/ch1/{a}"), &[])?;
        assert_eq!(r.status, 200, "{a}");
    }
    let (r, _) = state(&edge, "ch1")?;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let body: serde_json::Value = serde_json::from_slice(&r.body)?;
    assert_eq!(body["error"]["code"], "edge", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("ingest node")),
        "{body}"
    );
    // The upstream's preview allow list holds on the edge too.
    for path in ["/preview/closed/", "/preview/closed/state.json"] {
        let r = http_get(edge.http, path, &[])?;
        assert_eq!(r.status, 403, "{path}: {}", r.text());
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
    }

    // In a browser: playback through the edge, the edge note instead of
    // the state panel, nothing fetched from anywhere but the edge.
    let report = page_in_browser(&edge.url("/preview/ch1/"), &["--edge"])?;
    eprintln!("{report}");
    assert_eq!(report["foreign"], serde_json::json!([]), "{report}");
    Ok(())
}

#[test]
fn http_ingest_encoders_are_listed_with_their_extension() -> anyhow::Result<()> {
    let server = Sluice::start("", &[])?;
    let ch = running_channel(&server, "ch1")?;
    let url = format!(
        "{}/Streams(main)",
        ch["ingest"]["fmp4"].as_str().unwrap_or_default()
    );
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25:duration=8",
        ])
        .args(X264)
        .args(["-f", "ismv", "-movflags", "isml+frag_keyframe"])
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let push = Push(cmd.spawn()?);
    let e = wait_for(Duration::from_secs(30), || {
        let (_, s) = state(&server, "ch1").ok()?;
        let e = s["encoders"].as_array()?.first()?.clone();
        (e["bitrate"].as_u64()? > 0).then_some(e)
    })?;
    assert_eq!(e["protocol"], "isml", "{e}");
    assert_eq!(e["stream"], "main", "{e}");
    assert!(
        e["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{e}"
    );
    assert!(push.wait()?, "ffmpeg failed");
    wait_for(Duration::from_secs(30), || {
        let (_, s) = state(&server, "ch1").ok()?;
        s["encoders"].as_array()?.is_empty().then_some(())
    })?;
    Ok(())
}
