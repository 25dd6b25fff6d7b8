//! The edge tier end to end: two ingest nodes, each fed by its own ffmpeg
//! pushing the same file in real time and configured alike through the
//! API; an nginx shield (`examples/deploy/shield.conf`) in front of each;
//! an edge pulling through both shields, and a second edge pulling over
//! QUIC (`quic://…?cert-sha256=…`, fragments pushed as they are cut)
//! directly from both ingest nodes. hls.js and dash.js play the locator
//! from both edges while one ingest node is killed with `kill -9`: playback goes on with no error and no
//! stall longer than one fragment. After the program stops, every manifest
//! and segment both edges serve is byte-identical to the surviving node's.

use std::time::Duration;

use serde_json::json;
use sluice_tests::shield::Shield;
use sluice_tests::{
    Player, Sluice, api, assert_same_bytes, encode_source, every_url, http_get,
    play_in_browser_with, push_file, start_recording, stop_program, wait_for,
};

const TOKEN: &str = "topology-t0ken";
const AUTH: (&str, &str) = ("Authorization", "Bearer topology-t0ken");
const FRAGMENT_MS: u64 = 2000;

/// The channel's cut (ms) on `s`, once it has one.
fn cut_ms(s: &Sluice) -> Option<i64> {
    let r = http_get(s.http, "/_tier/v1/channels/ch1/timeline?limit=1", &[AUTH]).ok()?;
    let doc: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    doc["cut_ms"].as_i64()
}

#[test]
fn edge_viewers_play_through_the_loss_of_an_ingest_node() -> anyhow::Result<()> {
    let work = sluice_tests::tempdir::TempDir::new("sluice-topology")?;
    let source = encode_source(work.path(), 60, "source.flv")?;
    let ingest_args = ["--tier-token", TOKEN, "--quic", "127.0.0.1:0"];
    let nodes = [
        Sluice::start("", &ingest_args)?,
        Sluice::start("", &ingest_args)?,
    ];
    // One epoch for both, a little after the pushes start (never before
    // media exists: DASH players compute availability from it).
    let now = chrono::Utc::now().timestamp() + 4;
    let epoch = chrono::DateTime::from_timestamp(now, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let channel = json!({"name": "ch1", "input": {"key": "key-one-1"}, "epoch": epoch});
    for s in &nodes {
        let (status, ch) = api(s.admin, "POST", "/api/v1/channels", Some(&channel))?;
        anyhow::ensure!(status == 201, "{ch}");
        let (status, _) = api(s.admin, "POST", "/api/v1/channels/ch1/start", None)?;
        anyhow::ensure!(status == 200);
        start_recording(s, "ch1", "show", "PT5M")?;
    }
    let shields = [Shield::start(nodes[0].http)?, Shield::start(nodes[1].http)?];
    let upstreams: Vec<String> = shields
        .iter()
        .map(|s| format!("http://{}", s.addr))
        .collect();
    let edge = Sluice::start(
        "",
        &[
            "--tier-token",
            TOKEN,
            "--upstream",
            &upstreams[0],
            "--upstream",
            &upstreams[1],
        ],
    )?;
    let mut quic_args = vec!["--tier-token".to_owned(), TOKEN.to_owned()];
    for s in &nodes {
        let addr = s.quic.ok_or_else(|| anyhow::anyhow!("no quic listener"))?;
        let sha = s.quic_cert_sha256.clone().unwrap_or_default();
        quic_args.extend([
            "--upstream".to_owned(),
            format!("quic://{addr}?cert-sha256={sha}"),
        ]);
    }
    let quic_args: Vec<&str> = quic_args.iter().map(String::as_str).collect();
    let quic_edge = Sluice::start("", &quic_args)?;
    let [victim, survivor] = &nodes;

    std::thread::scope(|scope| -> anyhow::Result<()> {
        let pushes: Vec<_> = nodes
            .iter()
            .map(|s| {
                let url = format!("rtmp://{}/live/ch1/key-one-1/main", s.rtmp);
                let source = source.clone();
                scope.spawn(move || push_file(&source, &url, true))
            })
            .collect();
        // A few fragments at both edges before the players start.
        for e in [&edge, &quic_edge] {
            wait_for(Duration::from_secs(60), || {
                let r = http_get(e.http, "/show/show.ism/m3u8-cmaf/t1/index.m3u8", &[]).ok()?;
                (r.text().matches("#EXTINF").count() >= 3).then_some(())
            })?;
        }
        let started = wait_for(Duration::from_secs(10), || cut_ms(survivor))?;
        let players: Vec<_> = [
            (&edge, Player::HlsJs, "Manifest(format=m3u8-cmaf)"),
            (&edge, Player::DashJs, "Manifest(format=mpd-time-cmaf)"),
            (&quic_edge, Player::HlsJs, "Manifest(format=m3u8-cmaf)"),
            (&quic_edge, Player::DashJs, "Manifest(format=mpd-time-cmaf)"),
        ]
        .into_iter()
        .map(|(e, player, manifest)| {
            let url = e.url(&format!("/show/show.ism/{manifest}"));
            scope.spawn(move || {
                play_in_browser_with(player, &url, &["--advance", "30", "--timeout", "120"])
                    .map(|r| (player, url, r))
            })
        })
        .collect();
        // Ten seconds of media into the playback, one node dies.
        wait_for(Duration::from_secs(60), || {
            (cut_ms(survivor)? >= started + 10_000).then_some(())
        })?;
        let status = std::process::Command::new("kill")
            .args(["-9", &victim.pid().to_string()])
            .status()?;
        anyhow::ensure!(status.success());
        for p in players {
            let (player, url, report) =
                p.join().map_err(|_| anyhow::anyhow!("player panicked"))??;
            eprintln!("{player:?} {url}: {report}");
            let stall = report["maxStallMs"].as_u64().unwrap_or(u64::MAX);
            if stall > FRAGMENT_MS {
                eprintln!("edge log:\n{}", edge.log());
                eprintln!("quic edge log:\n{}", quic_edge.log());
            }
            assert!(
                stall <= FRAGMENT_MS,
                "{player:?} {url} stalled {stall} ms: {report}"
            );
        }
        // The push to the dead node fails; the other completes.
        let mut outcomes = Vec::new();
        for p in pushes {
            outcomes.push(p.join().map_err(|_| anyhow::anyhow!("push panicked"))??);
        }
        anyhow::ensure!(outcomes[1].0, "push to the survivor: {}", outcomes[1].1);
        Ok(())
    })?;

    stop_program(survivor, "ch1", "show")?;
    // The edges see the program end, then serve what the survivor serves.
    for e in [&edge, &quic_edge] {
        wait_for(Duration::from_secs(30), || {
            let r = http_get(e.http, "/show/show.ism/m3u8-cmaf/t1/index.m3u8", &[]).ok()?;
            r.text().contains("#EXT-X-ENDLIST").then_some(())
        })?;
    }
    let urls = every_url(survivor.http, "/show/show.ism")?;
    assert!(urls.len() > 50, "{} URLs", urls.len());
    for e in [&edge, &quic_edge] {
        if let Err(err) = assert_same_bytes(&[e.http, survivor.http], &urls) {
            eprintln!("edge log:\n{}", e.log());
            return Err(err);
        }
    }
    eprintln!(
        "quic edge: {} fragments pushed to it",
        sluice_tests::http_get(quic_edge.admin, "/metrics", &[])?
            .text()
            .lines()
            .filter_map(|l| l.strip_prefix("sluice_edge_pushed_fragments_total"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
