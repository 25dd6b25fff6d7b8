//! Real browser players in headless Chromium play every format of the
//! preview, live (with a seek back into the DVR window) and on demand after
//! the encoder stopped: hls.js and shaka-player play HLS (fMP4 and
//! MPEG-TS), dash.js and shaka-player play DASH (both profiles), dash.js
//! with its Smooth Streaming module plays Smooth.

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

/// Every (player, manifest) pair the tests play.
const MATRIX: &[(Player, &str)] = &[
    (Player::HlsJs, "Manifest(format=m3u8-cmaf)"),
    (Player::HlsJs, "Manifest(format=m3u8-aapl)"),
    (Player::Shaka, "Manifest(format=m3u8-cmaf)"),
    (Player::DashJs, "Manifest(format=mpd-time-csf)"),
    (Player::DashJs, "Manifest(format=mpd-time-cmaf)"),
    (Player::Shaka, "Manifest(format=mpd-time-csf)"),
    (Player::Shaka, "Manifest(format=mpd-time-cmaf)"),
    (Player::DashJsMss, "Manifest"),
];

/// Plays every pair of [`MATRIX`] on `channel`'s preview, each with a seek
/// back to the start of the seekable range.
fn play_every_format(server: &Sluice, channel: &str, what: &str) -> anyhow::Result<()> {
    for (player, manifest) in MATRIX {
        let url = server.url(&format!("/preview/{channel}/preview.isml/{manifest}"));
        let report = play_in_browser(*player, &url, true)?;
        eprintln!("{player:?} {manifest} {what}: {report}");
    }
    Ok(())
}

#[test]
fn live_preview_plays_and_seeks_back_in_browsers() -> anyhow::Result<()> {
    let server = Sluice::start("", &["--demo"])?;
    // A DVR window of at least 12 s before playing, so a seek back has room.
    wait_segments(&server, "demo", 6)?;
    play_every_format(&server, "demo", "live")
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
    play_every_format(&server, "vod", "on demand")
}
