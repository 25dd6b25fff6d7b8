//! Real clients decode every format end to end through the server, live
//! (while an encoder pushes in real time) and on demand (after it stopped):
//! ffmpeg decodes HLS (MPEG-TS and fMP4) and DASH (both profiles);
//! GStreamer's `playbin` (with `mssdemux`) decodes Smooth; yt-dlp downloads
//! Smooth and HDS and each result decodes for the full duration.

use std::process::{Command, Stdio};
use std::time::Duration;

use sluice_tests::{
    Sluice, X264, ffprobe_frames, http_get, run, running_channel, tempdir::TempDir, wait_for,
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
        .args(X264)
        .args(["-c:a", "aac", "-b:a", "64k", "-ac", "2", "-f", "flv"])
        .arg(format!("{rtmp}/main"))
        .stdin(Stdio::null())
        .spawn()?;
    let base = "/preview/clients/preview.isml";
    wait_for(Duration::from_secs(30), || {
        let r = http_get(server.http, &format!("{base}/m3u8-cmaf/t1/index.m3u8"), &[]).ok()?;
        (r.text().matches("#EXTINF").count() >= 2).then_some(())
    })?;
    // Live: every client starts while the encoder pushes. ffmpeg reads
    // each live manifest from its window to its end; GStreamer follows the
    // live Smooth manifest (mssdemux reloads it); yt-dlp follows the live
    // HDS bootstrap. (yt-dlp refuses live Smooth manifests outright.)
    let dir = TempDir::new("sluice-clients")?;
    let mut readers = Vec::new();
    for (i, manifest) in FFMPEG_FORMATS.iter().enumerate() {
        let (out, err) = (
            dir.path().join(format!("live-{i}.csv")),
            dir.path().join(format!("live-{i}.err")),
        );
        let child = Command::new("ffprobe")
            .args(["-v", "error", "-show_entries", "frame=media_type,pts_time"])
            .args(["-of", "csv=p=0"])
            .arg(server.url(&format!("{base}/{manifest}")))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out)?)
            .stderr(std::fs::File::create(&err)?)
            .spawn()?;
        readers.push((manifest, child, out, err));
    }
    let gst_log = dir.path().join("gst.log");
    let mut gst = Command::new("gst-launch-1.0")
        .args([
            "playbin",
            &format!("uri={}", server.url(&format!("{base}/Manifest"))),
        ])
        .args(["video-sink=fakesink", "audio-sink=fakesink"])
        // Errors and warnings of every element, and mssdemux's fragments.
        .env("GST_DEBUG", "*:2,mssdemux:5")
        .env("GST_DEBUG_NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&gst_log)?)
        .spawn()?;
    let hds_file = dir.path().join("live-hds.flv");
    let mut hds = Command::new("python3")
        .args(["-m", "yt_dlp", "--no-progress", "--no-part", "-o"])
        .arg(&hds_file)
        .arg(server.url(&format!("{base}/Manifest(format=f4m-f4f)")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;

    assert!(encoder.wait()?.success(), "encoder");
    wait_until_ended(server.http, base, 1)?;
    let half = i64::from(SECONDS) * 25 / 2;
    let expected = i64::from(SECONDS) * 25;
    // Presentation time of the newest video frame a reader wrote.
    let newest_video = |file: &std::path::Path| {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("video,")?.trim().parse::<f64>().ok())
            .reduce(f64::max)
    };
    for (manifest, mut child, out, err) in readers {
        // ffmpeg ends a live HLS playlist at EXT-X-ENDLIST; its DASH reader
        // does not notice a dynamic MPD turning static and keeps asking for
        // the segment after the last: it is stopped once it has decoded the
        // last second of the presentation.
        let end = f64::from(SECONDS) - 1.0;
        let done = wait_for(Duration::from_secs(30), || {
            let exited = child.try_wait().ok().flatten().is_some();
            (exited || newest_video(&out).is_some_and(|t| t >= end)).then_some(())
        });
        let _ = child.kill();
        child.wait()?;
        done.map_err(|e| anyhow::anyhow!("live {manifest}: {e}"))?;
        let frames = std::fs::read_to_string(&out)?;
        let video = frames.lines().filter(|l| l.starts_with("video,")).count() as i64;
        let audio = frames.lines().filter(|l| l.starts_with("audio,")).count();
        // Decoder errors (not the reader's 404s past the end of DASH).
        let errors = std::fs::read_to_string(&err)?;
        let decoder_errors: Vec<&str> = errors
            .lines()
            .filter(|l| l.contains("[h264") || l.contains("[aac"))
            .collect();
        eprintln!("live {manifest}: {video} video, {audio} audio frames");
        assert!(
            decoder_errors.is_empty(),
            "live {manifest}: {decoder_errors:#?}"
        );
        assert!(
            video >= half && audio > 0,
            "live {manifest}: {video} video, {audio} audio\n{errors}"
        );
    }
    // mssdemux does not end a live presentation by itself: once it has
    // played fragments of both streams, it is stopped.
    let fragments = |kind: &str| {
        std::fs::read_to_string(&gst_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.contains("Advanced to fragment") && l.ends_with(&format!("on {kind} stream"))
            })
            .count()
    };
    let played = wait_for(Duration::from_secs(30), || {
        (fragments("video") >= 3 && fragments("audio") >= 3).then_some(())
    });
    gst.kill()?;
    gst.wait()?;
    let log = std::fs::read_to_string(&gst_log)?;
    played.map_err(|e| anyhow::anyhow!("GStreamer live Smooth: {e}\n{log}"))?;
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert!(errors.is_empty(), "GStreamer live Smooth: {errors:#?}");
    eprintln!(
        "live Smooth (GStreamer): {} video, {} audio fragments",
        fragments("video"),
        fragments("audio")
    );
    // yt-dlp keeps polling an HDS bootstrap after the end: once the file
    // reaches the end of the presentation, it is stopped.
    let last_video_pts = || -> Option<f64> {
        let (frames, _) = ffprobe_frames(&hds_file.to_string_lossy(), &[]).ok()?;
        frames
            .iter()
            .filter(|f| f.media_type == "video")
            .map(|f| f.pts_time)
            .reduce(f64::max)
    };
    let reached = wait_for(Duration::from_secs(30), || {
        last_video_pts().filter(|&t| t >= f64::from(SECONDS) - 2.5)
    });
    hds.kill()?;
    let out = hds.wait_with_output()?;
    reached.map_err(|e| {
        anyhow::anyhow!(
            "yt-dlp live HDS: {e}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let (video, audio) = decode(&hds_file.to_string_lossy())?;
    eprintln!("live HDS (yt-dlp): {video} video, {audio} audio frames");
    assert!(
        video as i64 >= half && audio > 0,
        "live HDS: {video} video, {audio} audio"
    );

    // On demand: the whole presentation, every frame.
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
