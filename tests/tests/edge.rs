//! Edge mode (`--upstream`): an edge serves the delivery URLs of its
//! upstream byte for byte, fetches each fragment once however many formats
//! and viewers ask, follows live presentations, collapses concurrent
//! requests (directly and through an nginx shield), keeps serving what it
//! holds when the upstream is gone, and recovers when it returns.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use sluice_tests::faultproxy::{FaultProxy, Mode};
use sluice_tests::shield::Shield;
use sluice_tests::{
    Sluice, assert_same_bytes, burst, every_url, fragment_names, fragment_requests, hls_urls,
    http_get, metric, play_live_through_edge, push_file, record_clip, running_channel,
    start_recording, stop_program, wait_for,
};

const TOKEN: &str = "edge-t0ken";
const AUTH: (&str, &str) = ("Authorization", "Bearer edge-t0ken");

/// An ingest node with the token, holding the ended 8 s asset `show`
/// (locator `show`) of channel `ch1`.
fn recorded_node() -> anyhow::Result<Sluice> {
    let s = Sluice::start("", &["--tier-token", TOKEN])?;
    record_clip(&s, 8)?;
    stop_program(&s, "ch1", "show")?;
    Ok(s)
}

fn edge_of(upstreams: &[String], config: &str) -> anyhow::Result<Sluice> {
    let mut args = vec!["--tier-token", TOKEN];
    for u in upstreams {
        args.extend(["--upstream", u.as_str()]);
    }
    Sluice::start(config, &args)
}

#[test]
fn an_edge_serves_the_same_bytes_and_fetches_each_fragment_once() -> anyhow::Result<()> {
    let s = recorded_node()?;
    let edge = edge_of(&[format!("http://{}", s.http)], "")?;

    let mut urls = every_url(s.http, "/show/show.ism")?;
    urls.extend(hls_urls(
        s.http,
        "/preview/ch1/preview.isml",
        "m3u8-cmaf",
        true,
    )?);
    assert!(urls.len() > 30, "{} URLs", urls.len());
    let before = fragment_requests(&s)?;
    // The edge first: everything it answers comes from upstream.
    assert_same_bytes(&[edge.http, s.http], &urls)?;
    // Every format of the asset and of the preview, one upstream copy of
    // each fragment.
    let names = fragment_names(
        &s,
        &[
            "/_tier/v1/assets/show/timeline",
            "/_tier/v1/channels/ch1/timeline",
        ],
        &[AUTH],
    )?;
    assert_eq!(fragment_requests(&s)? - before, names.len() as u64);

    // What an edge does not have.
    assert_eq!(
        http_get(edge.http, "/nope/nope.ism/Manifest", &[])?.status,
        404
    );
    assert_eq!(
        http_get(edge.http, "/preview/nope/preview.isml/Manifest", &[])?.status,
        404
    );
    assert_eq!(
        http_get(edge.http, "/show/other.ism/Manifest", &[])?.status,
        404
    );
    assert_eq!(
        http_get(edge.http, "/ingest/ch1/k/x.ismv/Streams(main)", &[])?.status,
        404
    );
    // Its own upstream interface wants the token too.
    assert_eq!(http_get(edge.http, "/_tier/v1/health", &[])?.status, 401);
    assert_eq!(
        http_get(edge.http, "/_tier/v1/health", &[AUTH])?.status,
        200
    );
    assert_eq!(http_get(edge.admin, "/api/v1/channels", &[])?.status, 404);
    assert!(
        metric(
            edge.admin,
            "sluice_edge_upstream_requests_total{upstream=\"0\"}"
        )? > 0
    );

    // A wrong or missing token: 401 from the ingest node, a 502 that no
    // cache keeps at the edge, and one clear line in the edge's log.
    let r = http_get(
        s.http,
        "/_tier/v1/locators/show",
        &[("Authorization", "Bearer nope")],
    )?;
    assert_eq!(r.status, 401);
    for token in [Some("nope"), None] {
        let mut args = vec!["--upstream".to_owned(), format!("http://{}", s.http)];
        if let Some(t) = token {
            args.extend(["--tier-token".to_owned(), t.to_owned()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let bad = Sluice::start("", &args)?;
        let r = http_get(bad.http, "/show/show.ism/Manifest", &[])?;
        assert_eq!(r.status, 502, "{}", r.text());
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert!(
            bad.log().contains("refused the tier token (401)"),
            "{}",
            bad.log()
        );
    }
    Ok(())
}

#[test]
fn edges_chain_with_the_same_bytes_and_one_upstream_copy() -> anyhow::Result<()> {
    let s = recorded_node()?;
    let near = edge_of(&[format!("http://{}", s.http)], "")?;
    let far = edge_of(&[format!("http://{}", near.http)], "")?;

    let urls = every_url(s.http, "/show/show.ism")?;
    let before = fragment_requests(&s)?;
    // The far edge first: everything it answers came through the near one.
    assert_same_bytes(&[far.http, near.http, s.http], &urls)?;
    let names = fragment_names(&s, &["/_tier/v1/assets/show/timeline"], &[AUTH])?;
    assert_eq!(fragment_requests(&s)? - before, names.len() as u64);

    // The near edge's upstream interface answers as the ingest node's
    // does: the same locator record and, the asset having ended and been
    // read whole, the same timeline document, byte for byte.
    for path in [
        "/_tier/v1/locators/show",
        "/_tier/v1/assets/show/timeline",
        "/_tier/v1/assets/show/timeline?from=4000&limit=1",
    ] {
        let (a, b) = (
            http_get(s.http, path, &[AUTH])?,
            http_get(near.http, path, &[AUTH])?,
        );
        assert_eq!((a.status, b.status), (200, 200), "{path}");
        assert_eq!(a.text(), b.text(), "{path}");
        assert_eq!(a.header("etag"), b.header("etag"), "{path}");
    }
    // A fragment object: the same bytes and validators; one it lacks is
    // a short-lived 404, not a failure.
    let doc: serde_json::Value =
        serde_json::from_slice(&http_get(s.http, "/_tier/v1/assets/show/timeline", &[AUTH])?.body)?;
    let track = &doc["tracks"][0];
    let first = &track["fragments"][0];
    let path = format!(
        "/_tier/v1/channels/ch1/f/{}/{}.{}.slf",
        track["id"],
        first[0],
        first[6].as_str().unwrap_or_default()
    );
    let (a, b) = (
        http_get(s.http, &path, &[AUTH])?,
        http_get(near.http, &path, &[AUTH])?,
    );
    assert_eq!((a.status, b.status), (200, 200), "{path}");
    assert_eq!(a.body, b.body);
    assert_eq!(a.header("etag"), b.header("etag"));
    assert_eq!(b.header("cache-control"), a.header("cache-control"));
    let r = http_get(
        near.http,
        "/_tier/v1/channels/ch1/f/1/1.0123456789abcdef.slf",
        &[AUTH],
    )?;
    assert_eq!(
        (r.status, r.header("cache-control")),
        (404, Some("public, max-age=1"))
    );
    let r = http_get(near.http, "/_tier/v1/locators/nope", &[AUTH])?;
    assert_eq!(r.status, 404);
    Ok(())
}

#[test]
fn edges_enforce_the_channel_preview_allow_list() -> anyhow::Result<()> {
    let s = Sluice::start("", &["--tier-token", TOKEN])?;
    for (name, allow) in [("locked", "192.0.2.1"), ("open", "127.0.0.0/8")] {
        let body = serde_json::json!({"name": name, "preview": {"allow": [allow]}});
        let (status, ch) = sluice_tests::api(s.admin, "POST", "/api/v1/channels", Some(&body))?;
        assert_eq!(status, 201, "{ch}");
        let start = format!("/api/v1/channels/{name}/start");
        assert_eq!(sluice_tests::api(s.admin, "POST", &start, None)?.0, 200);
    }
    // The channel timeline carries the list, so edges (and edges of
    // edges) refuse a preview where the ingest node does.
    let doc: serde_json::Value = serde_json::from_slice(
        &http_get(s.http, "/_tier/v1/channels/locked/timeline", &[AUTH])?.body,
    )?;
    assert_eq!(doc["preview_allow"], serde_json::json!(["192.0.2.1/32"]));
    let near = edge_of(&[format!("http://{}", s.http)], "")?;
    let far = edge_of(&[format!("http://{}", near.http)], "")?;
    for node in [&s, &near, &far] {
        let r = http_get(
            node.http,
            "/preview/locked/preview.isml/Manifest(format=m3u8-cmaf)",
            &[],
        )?;
        assert_eq!(
            (r.status, r.header("cache-control")),
            (403, Some("no-store"))
        );
        let r = http_get(
            node.http,
            "/preview/open/preview.isml/Manifest(format=m3u8-cmaf)",
            &[],
        )?;
        assert_ne!(r.status, 403, "{}", r.text());
    }
    assert!(near.log().contains("preview refused: address not allowed"));
    Ok(())
}

#[test]
fn a_live_edge_chain_follows_with_blocking_requests() -> anyhow::Result<()> {
    let s = Sluice::start("", &["--tier-token", TOKEN])?;
    let near = edge_of(&[format!("http://{}", s.http)], "")?;
    let far = edge_of(&[format!("http://{}", near.http)], "")?;
    let (video, err) = play_live_through_edge(&s, &far, 12)?;
    assert!(
        video >= 200,
        "{video} video frames from the far edge: {err}"
    );
    // The near edge answered the far one's blocking timeline requests.
    assert!(metric(near.admin, "sluice_tier_requests_total{kind=\"blocking\"}")? > 0);
    Ok(())
}

#[test]
fn a_live_edge_follows_the_timeline_and_ffmpeg_plays_it() -> anyhow::Result<()> {
    let s = Sluice::start("", &["--tier-token", TOKEN])?;
    let edge = edge_of(&[format!("http://{}", s.http)], "")?;
    // The edge's live playlist grows while the encoder pushes, and
    // ffprobe decodes the edge's live HLS.
    let (video, err) = play_live_through_edge(&s, &edge, 12)?;
    assert!(
        video >= 200,
        "{video} video frames from the live edge: {err}"
    );
    // The edge followed with blocking requests, not polling.
    assert!(metric(s.admin, "sluice_tier_requests_total{kind=\"blocking\"}")? > 0);
    Ok(())
}

#[test]
fn concurrent_viewers_cost_one_shield_request_per_object() -> anyhow::Result<()> {
    let s = recorded_node()?;
    let shield = Shield::start(s.http)?;
    let edge = edge_of(&[format!("http://{}", shield.addr)], "")?;
    let cmaf = hls_urls(s.http, "/show/show.ism", "m3u8-cmaf", true)?;
    let aapl = hls_urls(s.http, "/show/show.ism", "m3u8-aapl", true)?;
    let first = |urls: &BTreeSet<String>, ext: &str| {
        urls.iter()
            .find(|u| u.ends_with(ext))
            .cloned()
            .unwrap_or_default()
    };
    // Cold objects, 200 viewers each at once: the MPD, an fMP4 segment and
    // a TS segment (the same fragments as the fMP4 one: no new fetch).
    for path in [
        "/show/show.ism/Manifest(format=mpd-time-csf)".to_owned(),
        first(&cmaf, ".m4s"),
        first(&aapl, ".ts"),
    ] {
        let answers = burst(edge.http, &path, 200, &[])?;
        assert!(
            answers.iter().all(|a| a == &answers[0] && a.0 == 200),
            "{path}: answers differ or failed"
        );
    }
    let mut per_uri: HashMap<String, usize> = HashMap::new();
    for uri in shield.upstream_requests() {
        *per_uri.entry(uri).or_default() += 1;
    }
    assert!(!per_uri.is_empty());
    for (uri, n) in &per_uri {
        assert_eq!(
            *n, 1,
            "{uri} reached the ingest node {n} times: {per_uri:?}"
        );
    }
    assert!(
        per_uri.keys().any(|u| u.contains("/f/")),
        "no fragment went through the shield: {per_uri:?}"
    );
    Ok(())
}

#[test]
fn a_slow_upstream_is_fetched_once_and_cached_for_followers_that_gave_up() -> anyhow::Result<()> {
    let s = recorded_node()?;
    let proxy = FaultProxy::start(s.http)?;
    let edge = edge_of(
        &[format!("http://{}", proxy.addr)],
        "[edge]\nfollower_wait_ms = 300\n",
    )?;
    let cmaf = hls_urls(edge.http, "/show/show.ism", "m3u8-cmaf", true)?;
    let segment = cmaf
        .iter()
        .find(|u| u.ends_with(".m4s"))
        .cloned()
        .unwrap_or_default();
    let before = fragment_requests(&s)?;
    // The upstream now answers in 1.5 s, the followers wait 0.3 s: every
    // viewer gets a 5xx no cache keeps...
    proxy.set(Mode::Delay(Duration::from_millis(1500)));
    let answers = burst(edge.http, &segment, 20, &[])?;
    assert!(
        answers.iter().all(|a| a.0 >= 500),
        "{:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    // ...and the one fetch goes on and is cached: a later request gets
    // the segment without another upstream fetch.
    let r = wait_for(Duration::from_secs(20), || {
        let r = http_get(edge.http, &segment, &[]).ok()?;
        (r.status == 200).then_some(r)
    })?;
    assert_eq!(r.body, http_get(s.http, &segment, &[])?.body);
    let fetched = fragment_requests(&s)? - before;
    // One fragment per track of the segment (video: one).
    assert_eq!(fetched, 1, "{fetched} upstream fetches");
    Ok(())
}

#[test]
fn an_edge_serves_what_it_holds_while_the_upstream_is_gone_and_recovers() -> anyhow::Result<()> {
    let s = recorded_node()?;
    let proxy = FaultProxy::start(s.http)?;
    let edge = edge_of(&[format!("http://{}", proxy.addr)], "")?;
    let playlist = "/show/show.ism/m3u8-cmaf/t1/index.m3u8";
    let r = http_get(edge.http, playlist, &[])?;
    assert_eq!(r.status, 200);
    let segments: Vec<String> = r
        .text()
        .lines()
        .filter(|l| l.ends_with(".m4s"))
        .map(|l| format!("/show/show.ism/m3u8-cmaf/t1/{l}"))
        .collect();
    assert!(segments.len() >= 3, "{}", r.text());
    let held = http_get(edge.http, &segments[0], &[])?;
    assert_eq!(held.status, 200);

    for mode in [Mode::Refuse, Mode::Blackhole] {
        proxy.set(mode);
        // What the edge holds plays on.
        for path in [playlist, segments[0].as_str()] {
            let r = http_get(edge.http, path, &[])?;
            assert_eq!(r.status, 200, "{mode:?} {path}");
        }
        assert_eq!(http_get(edge.http, &segments[0], &[])?.body, held.body);
        // What it does not hold fails, and no cache keeps the failure.
        let r = http_get(edge.http, &segments[1], &[])?;
        assert!(r.status >= 500, "{mode:?}: {}", r.status);
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
    // The upstream returns: within seconds the edge serves the rest.
    proxy.set(Mode::Pass);
    for path in &segments[1..] {
        let r = wait_for(Duration::from_secs(15), || {
            let r = http_get(edge.http, path, &[]).ok()?;
            (r.status == 200).then_some(r)
        })?;
        assert_eq!(r.body, http_get(s.http, path, &[])?.body, "{path}");
    }
    Ok(())
}

/// Resident memory of process `pid`, bytes.
fn rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/{pid}/status"))
}

#[test]
fn an_edge_stays_within_its_cache_caps() -> anyhow::Result<()> {
    // 40 s at 16 Mbit/s: about 80 MB of fragments, served as HLS fMP4 and
    // TS, three times over, through an edge whose caches hold 8 + 8 MiB.
    let work = sluice_tests::tempdir::TempDir::new("sluice-edge-memory")?;
    let source = work.path().join("heavy.flv");
    let (ok, _, err) = sluice_tests::run(
        std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
            .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args(["-t", "40", "-c:v", "libx264", "-preset", "ultrafast"])
            .args(["-g", "50", "-keyint_min", "50", "-sc_threshold", "0"])
            .args([
                "-b:v", "16M", "-minrate", "16M", "-maxrate", "16M", "-bufsize", "4M",
            ])
            .args(["-x264-params", "nal-hrd=cbr:force-cfr=1"])
            .args(["-c:a", "aac", "-b:a", "64k"])
            .arg(&source),
    )?;
    anyhow::ensure!(ok, "{err}");
    // Pushed as fast as the node reads: far above the default ingest
    // bitrate limit.
    let s = Sluice::start(
        "[ingest]\nmax_bitrate_kbps = 100000000\n",
        &["--tier-token", TOKEN],
    )?;
    let ch = running_channel(&s, "ch1")?;
    start_recording(&s, "ch1", "show", "PT5M")?;
    let rtmp = format!("{}/main", ch["ingest"]["rtmp"].as_str().unwrap_or_default());
    let (ok, err) = push_file(&source, &rtmp, false)?;
    anyhow::ensure!(ok, "{err}");
    sluice_tests::wait_recorded(&s, "show", 36_000)?;
    stop_program(&s, "ch1", "show")?;

    let edge = edge_of(
        &[format!("http://{}", s.http)],
        "[edge]\ncache_mib = 8\n[delivery]\ncache_mib = 8\n",
    )?;
    let urls: Vec<String> = every_url(edge.http, "/show/show.ism")?
        .into_iter()
        .collect();
    let segments: Vec<&String> = urls
        .iter()
        .filter(|u| u.ends_with(".m4s") || u.ends_with(".ts"))
        .collect();
    assert!(segments.len() >= 40, "{} segments", segments.len());
    // Before any segment: the manifests of every format.
    for u in urls.iter().filter(|u| !segments.contains(u)) {
        assert_eq!(http_get(edge.http, u, &[])?.status, 200, "{u}");
    }
    let start = rss(edge.pid())?;
    // A long run: every segment of both HLS flavours, three times over
    // (each pass evicts and fetches everything again).
    let mut served = 0u64;
    let mut peak = start;
    for _ in 0..3 {
        for u in &segments {
            let r = http_get(edge.http, u, &[])?;
            assert_eq!(r.status, 200, "{u}");
            served += r.body.len() as u64;
        }
        peak = peak.max(rss(edge.pid())?);
    }
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    eprintln!(
        "served {:.0} MiB; RSS {:.1} MiB before, {:.1} MiB at the highest",
        mib(served),
        mib(start),
        mib(peak)
    );
    assert!(served > 300 << 20, "only {:.0} MiB served", mib(served));
    // The caps (8 + 8 MiB) plus the documented overhead (README, "Edge
    // mode": 128 MiB for plugin instance slots, which keep up to 8 MiB
    // resident each, and allocator slack; measured 74-94 MiB here). With
    // 512 + 512 MiB caps the same run grows by 164 MiB.
    let bound = (8 + 8 + 128) << 20;
    assert!(
        peak.saturating_sub(start) <= bound,
        "RSS grew {:.1} MiB (bound {:.0} MiB) serving {:.0} MiB",
        mib(peak.saturating_sub(start)),
        mib(bound),
        mib(served)
    );
    Ok(())
}
