//! Real browser players in headless Chromium (hls.js, dash.js,
//! shaka-player) play the preview, live (with a seek back into the DVR
//! window) and on demand after the encoder stopped.

use std::time::Duration;

use sluice_tests::{
    Player, Sluice, ffmpeg_push_rtmp, http_get, play_in_browser, running_channel, wait_for,
    wait_until_ended,
};

/// Waits until the live HLS playlist of track 1 lists `n` segments.
fn wait_segments(server: &Sluice, channel: &str, n: usize) -> anyhow::Result<()> {
    let media = format!("/preview/{channel}/preview.isml/m3u8-cmaf/t1/index.m3u8");
    wait_for(Duration::from_secs(90), || {
        let r = http_get(server.http, &media, &[]).ok()?;
        (r.text().matches("#EXTINF").count() >= n).then_some(())
    })
}

#[test]
fn live_preview_plays_and_seeks_back_in_browsers() -> anyhow::Result<()> {
    let server = Sluice::start("", &["--demo"])?;
    // A DVR window of at least 12 s before playing, so a seek back has room.
    wait_segments(&server, "demo", 6)?;
    let hls = server.url("/preview/demo/preview.isml/Manifest(format=m3u8-cmaf)");
    for player in [Player::HlsJs, Player::Shaka] {
        let report = play_in_browser(player, &hls, true)?;
        eprintln!("{player:?} live: {report}");
    }
    Ok(())
}

#[test]
fn ended_preview_plays_on_demand_in_browsers() -> anyhow::Result<()> {
    let server = Sluice::start("", &[])?;
    let rtmp = running_channel(&server, "vod")?["ingest"]["rtmp"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (ok, err) = ffmpeg_push_rtmp(&format!("{rtmp}/main"), 12, &[])?;
    assert!(ok, "{err}");
    wait_until_ended(server.http, "/preview/vod/preview.isml", 1)?;
    let hls = server.url("/preview/vod/preview.isml/Manifest(format=m3u8-cmaf)");
    for player in [Player::HlsJs, Player::Shaka] {
        let report = play_in_browser(player, &hls, true)?;
        eprintln!("{player:?} on demand: {report}");
    }
    Ok(())
}
