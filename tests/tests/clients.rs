//! Real clients decode every format end to end through the server, live
//! (while an encoder pushes in real time) and on demand (after it stopped):
//! ffmpeg decodes HLS (MPEG-TS and fMP4) and DASH (both profiles);
//! GStreamer's `playbin` (with `mssdemux`) decodes Smooth; yt-dlp downloads
//! Smooth and HDS and each result decodes for the full duration.

use std::process::{Command, Stdio};
use std::time::Duration;

use sluice_tests::{
    Sluice, ffprobe_frames, http_get, run, running_channel, tempdir::TempDir, wait_for,
    wait_until_ended,
};

/// Seconds of media the encoder sends.
const SECONDS: u32 = 10;

/// Manifests ffmpeg can read, by format.
const FFMPEG_FORMATS: &[&str] = &[
    "Manifest(format=m3u8-cmaf)",
    "Manifest(format=m3u8-aapl)",
    "Manifest(format=mpd-time-csf)",
    "Manifest(format=mpd-time-cmaf)",
];

/// Counts decoded video and audio frames of `url`, failing on any decode
/// error ffprobe reports.
fn decode(url: &str) -> anyhow::Result<(usize, usize)> {
    let (frames, errors) = ffprobe_frames(url, &[])?;
    anyhow::ensure!(errors.trim().is_empty(), "{url}: {errors}");
    let video = frames.iter().filter(|f| f.media_type == "video").count();
    let audio = frames.iter().filter(|f| f.media_type == "audio").count();
    Ok((video, audio))
}

#[test]
fn every_format_decodes_live_and_on_demand() -> anyhow::Result<()> {
    let server = Sluice::start("", &[])?;
    let rtmp = running_channel(&server, "clients")?["ingest"]["rtmp"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // In real time, so the first reads below see a live presentation.
    let mut encoder = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args([
            "-re",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
        ])
        .args(["-t", &SECONDS.to_string()])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "50",
        ])
        .args([
            "-keyint_min",
            "50",
            "-sc_threshold",
            "0",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac", "-b:a", "64k", "-ac", "2", "-f", "flv"])
        .arg(format!("{rtmp}/main"))
        .stdin(Stdio::null())
        .spawn()?;
    let base = "/preview/clients/preview.isml";
    wait_for(Duration::from_secs(30), || {
        let r = http_get(server.http, &format!("{base}/m3u8-cmaf/t1/index.m3u8"), &[]).ok()?;
        (r.text().matches("#EXTINF").count() >= 2).then_some(())
    })?;
    // Live: a live manifest is read from its window to its end (the
    // encoder finishes meanwhile); every frame read decodes.
    for manifest in [
        "Manifest(format=m3u8-aapl)",
        "Manifest(format=mpd-time-csf)",
    ] {
        let url = server.url(&format!("{base}/{manifest}"));
        let (video, audio) = decode(&url)?;
        eprintln!("live {manifest}: {video} video, {audio} audio frames");
        assert!(
            video > 0 && audio > 0,
            "{manifest}: {video} video, {audio} audio"
        );
    }
    assert!(encoder.wait()?.success(), "encoder");
    wait_until_ended(server.http, base, 1)?;

    // On demand: the whole presentation, every frame.
    let expected = (SECONDS * 25) as i64;
    for manifest in FFMPEG_FORMATS {
        let url = server.url(&format!("{base}/{manifest}"));
        let (video, audio) = decode(&url)?;
        eprintln!("on demand {manifest}: {video} video, {audio} audio frames");
        assert!(
            (video as i64 - expected).abs() <= 3,
            "{manifest}: {video} of {expected} video frames"
        );
        // AAC at 48 kHz: 46.875 frames per second.
        assert!(
            (audio as f64 - f64::from(SECONDS) * 46.875).abs() <= 6.0,
            "{manifest}: {audio} audio frames"
        );
    }

    // Smooth through GStreamer's playbin (souphttpsrc ! mssdemux ! ...).
    let smooth = server.url(&format!("{base}/Manifest"));
    let (ok, out, err) = run(Command::new("gst-launch-1.0")
        .args(["-q", "playbin", &format!("uri={smooth}")])
        .args(["video-sink=fakesink", "audio-sink=fakesink"]))?;
    assert!(ok, "gst-launch playbin failed: {out}\n{err}");
    assert!(
        !err.contains("ERROR") && !out.contains("ERROR"),
        "{out}\n{err}"
    );

    // Smooth and HDS through yt-dlp; each download decodes for the full
    // duration.
    let dir = TempDir::new("sluice-ytdlp")?;
    for (name, manifest) in [("smooth", "Manifest"), ("hds", "Manifest(format=f4m-f4f)")] {
        let url = server.url(&format!("{base}/{manifest}"));
        let (ok, out, err) = run(Command::new("python3")
            .args(["-m", "yt_dlp", "--no-progress", "--no-part", "-o"])
            .arg(dir.path().join(format!("{name}.%(ext)s")))
            .arg(&url))?;
        assert!(ok, "yt-dlp {name} failed: {out}\n{err}");
        let file = std::fs::read_dir(dir.path())?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(name))
            })
            .ok_or_else(|| anyhow::anyhow!("yt-dlp wrote nothing for {name}: {out}"))?;
        let (video, audio) = decode(&file.to_string_lossy())?;
        eprintln!(
            "yt-dlp {name} {}: {video} video, {audio} audio frames",
            file.display()
        );
        assert!(
            (video as i64 - expected).abs() <= 3,
            "yt-dlp {name}: {video} of {expected} video frames"
        );
        assert!(audio > 0, "yt-dlp {name}: no audio");
    }
    Ok(())
}
