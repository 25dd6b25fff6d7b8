//! Programs record channels into assets (real encoders, real storage on
//! disk): the archive window bounds live manifests and storage; a stopped
//! program plays on demand, also after it is deleted; deleting the asset
//! empties storage; `kill -9` loses nothing written, and a running program
//! resumes when its encoder comes back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sluice_tests::{
    Sluice, api, encode_source, ffmpeg_push_rtmp, ffprobe_frames, http_get, media_segments, run,
    running_channel, start_recording, stop_program, tempdir::TempDir, wait_for,
};

/// The path part of a URL the API returned (whichever port it named).
fn path_of(url: &Value) -> String {
    let url = url.as_str().unwrap_or_default();
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    after_scheme
        .find('/')
        .map(|i| after_scheme[i..].to_owned())
        .unwrap_or_default()
}

/// Every fragment object stored under `dir`, as (track, start in ticks).
fn stored_objects(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p: PathBuf = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.parent().and_then(Path::file_name) == Some("f".as_ref()) {
                let start = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.parse().ok());
                let track = p
                    .parent()
                    .and_then(Path::parent)
                    .and_then(Path::file_name)
                    .and_then(|n| n.to_str())
                    .map(str::to_owned);
                if let (Some(t), Some(s)) = (track, start) {
                    out.push((t, s));
                }
            }
        }
    }
    out
}

/// The multivariant HLS (fMP4) playlist of a locator and its first media
/// playlist with its URL.
fn hls(s: &Sluice, locator: &Value) -> anyhow::Result<(String, String, String)> {
    let master_path = path_of(&locator["urls"]["hls_cmaf"]);
    let master = http_get(s.http, &master_path, &[])?;
    anyhow::ensure!(master.status == 200, "{}", master.text());
    let master = master.text();
    let variant = master
        .lines()
        .find(|l| !l.starts_with('#') && l.ends_with(".m3u8"))
        .ok_or_else(|| anyhow::anyhow!("no variant: {master}"))?;
    let base = master_path.rsplit_once('/').map_or("", |(b, _)| b);
    let media_path = format!("{base}/{variant}");
    let media = http_get(s.http, &media_path, &[])?.text();
    Ok((master, media, media_path))
}

/// Video frames ffprobe decodes from a media playlist: from its first
/// segment, and, for a live playlist that no longer grows (the encoder is
/// gone, the program runs), stopping after two reloads without news.
fn video_frames(url: &str) -> anyhow::Result<usize> {
    let (frames, errors) =
        ffprobe_frames(url, &["-live_start_index", "0", "-m3u8_hold_counters", "2"])?;
    anyhow::ensure!(errors.trim().is_empty(), "{url}: {errors}");
    Ok(frames.iter().filter(|f| f.media_type == "video").count())
}

#[test]
fn archive_window_bounds_live_and_storage_then_plays_on_demand() -> anyhow::Result<()> {
    let work = TempDir::new("sluice-archive-src")?;
    // About 7 minutes, pushed faster than real time (no -re).
    let source = encode_source(work.path(), 420, "source.flv")?;
    let s = Sluice::start("", &[])?;
    let ch = running_channel(&s, "ch1")?;
    let locator = start_recording(&s, "ch1", "show", "PT5M")?;
    let rtmp = ch["ingest"]["rtmp"].as_str().unwrap_or_default();
    let (ok, _, err) = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
        .arg(&source)
        .args(["-c", "copy", "-f", "flv", &format!("{rtmp}/main")]))?;
    anyhow::ensure!(ok, "{err}");
    // Everything cut is written (the encoder's end flushes the last
    // fragment; the push ran faster than storage writes).
    let asset = wait_for(Duration::from_secs(60), || {
        let (_, a) = api(s.admin, "GET", "/api/v1/assets/show", None).ok()?;
        (a["state"] == "recording" && a["duration_ms"].as_u64()? >= 290_000 && a["pending"] == 0)
            .then_some(a)
    })?;

    // Live (the program runs): the manifests span the window, plus at most one fragment.
    let (_, media, _) = hls(&s, &locator)?;
    assert!(!media.contains("#EXT-X-ENDLIST"), "{media}");
    let (segments, span) = media_segments(&media);
    assert!(
        (296.0..=302.0).contains(&span),
        "live span {span} s: {media}"
    );
    assert!(segments.len() >= 148, "{}", segments.len());
    let dash = http_get(s.http, &path_of(&locator["urls"]["dash_cmaf"]), &[])?.text();
    assert!(dash.contains("type=\"dynamic\""), "{dash}");
    assert!(dash.contains("timeShiftBufferDepth=\"PT300S\""), "{dash}");

    // Storage holds nothing older than the window: per track, the oldest
    // stored fragment is within 5 minutes and a fragment of the newest end.
    let assets = s.data_dir.join("assets");
    let objects = stored_objects(&assets);
    let mut tracks: Vec<&String> = objects.iter().map(|(t, _)| t).collect();
    tracks.sort();
    tracks.dedup();
    assert_eq!(tracks.len(), 2, "{objects:?}");
    for t in tracks {
        let starts: Vec<u64> = objects
            .iter()
            .filter(|(x, _)| x == t)
            .map(|(_, s)| *s)
            .collect();
        let (min, max) = (starts.iter().min(), starts.iter().max());
        let (Some(min), Some(max)) = (min, max) else {
            continue;
        };
        // Timescales: video 90 kHz or 1 kHz, audio 48 kHz; the span in
        // seconds follows from the count (2 s fragments).
        let count = starts.len();
        assert!(
            (148..=152).contains(&count),
            "track {t}: {count} fragments stored ({min}..{max}), window is 150"
        );
    }
    assert!(
        asset["fragments"].as_u64().unwrap_or(0) <= 2 * 152,
        "{asset}"
    );

    // Players: the live window decodes (old fragments come back from storage).
    let (_, _, media_path) = hls(&s, &locator)?;
    let frames = video_frames(&s.url(&media_path))?;
    assert!((7400..=7550).contains(&frames), "{frames} live frames");

    // Stop: VOD of what the window held, whole.
    stop_program(&s, "ch1", "show")?;
    let (_, media, media_path) = hls(&s, &locator)?;
    assert!(media.contains("#EXT-X-ENDLIST"), "{media}");
    let (_, vod_span) = media_segments(&media);
    assert!((296.0..=302.0).contains(&vod_span), "VOD span {vod_span}");
    let frames = video_frames(&s.url(&media_path))?;
    assert!((7400..=7550).contains(&frames), "{frames} VOD frames");
    let dash = http_get(s.http, &path_of(&locator["urls"]["dash"]), &[])?.text();
    assert!(dash.contains("type=\"static\""), "{dash}");
    let frames = video_frames(&s.url(&path_of(&locator["urls"]["dash"])))?;
    assert!((7400..=7550).contains(&frames), "{frames} DASH VOD frames");
    for format in ["smooth", "hls", "hds"] {
        let r = http_get(s.http, &path_of(&locator["urls"][format]), &[])?;
        assert_eq!(r.status, 200, "{format}: {}", r.text());
    }

    // Program deleted: the asset still plays.
    let (status, _) = api(
        s.admin,
        "DELETE",
        "/api/v1/channels/ch1/programs/show",
        None,
    )?;
    assert_eq!(status, 204);
    let (_, media_after, _) = hls(&s, &locator)?;
    assert_eq!(media_after, media);
    let first = media_segments(&media).0[0].clone();
    let base = media_path.rsplit_once('/').map_or("", |(b, _)| b);
    let r = http_get(s.http, &format!("{base}/{first}"), &[])?;
    assert_eq!(r.status, 200);

    // Asset deleted: 404, storage emptied.
    let (status, _) = api(s.admin, "DELETE", "/api/v1/assets/show", None)?;
    assert_eq!(status, 204);
    let r = http_get(s.http, &path_of(&locator["urls"]["hls_cmaf"]), &[])?;
    assert_eq!(r.status, 404);
    assert_eq!(stored_objects(&assets), Vec::new());
    Ok(())
}

#[test]
fn kill_9_loses_nothing_written_and_recording_resumes() -> anyhow::Result<()> {
    let dir = TempDir::new("sluice-archive-crash")?;
    let s = Sluice::start_in(dir.path(), "", &[])?;
    let ch = running_channel(&s, "ch1")?;
    let locator = start_recording(&s, "ch1", "show", "PT1H")?;
    let rtmp = format!("{}/main", ch["ingest"]["rtmp"].as_str().unwrap_or_default());
    let (ok, err) = ffmpeg_push_rtmp(&rtmp, 20, &[])?;
    anyhow::ensure!(ok, "{err}");
    // Written (not only cut): what kill -9 cannot take away.
    let recorded = wait_for(Duration::from_secs(30), || {
        let (_, a) = api(s.admin, "GET", "/api/v1/assets/show", None).ok()?;
        let d = a["duration_ms"].as_u64()?;
        (d >= 18_000 && a["pending"] == 0).then_some(d)
    })?;
    // No goodbye: no flush, no clean shutdown.
    let (ok, _, err) = run(Command::new("kill").args(["-KILL", &s.pid().to_string()]))?;
    anyhow::ensure!(ok, "{err}");
    drop(s);

    let s = Sluice::start_in(dir.path(), "", &[])?;
    let (_, p) = api(s.admin, "GET", "/api/v1/channels/ch1/programs/show", None)?;
    assert_eq!(p["state"], "running", "{p}");
    let (_, a) = api(s.admin, "GET", "/api/v1/assets/show", None)?;
    assert_eq!(a["duration_ms"].as_u64(), Some(recorded), "{a}");
    // What was recorded plays (live, still).
    let (_, media, media_path) = hls(&s, &locator)?;
    let (_, span) = media_segments(&media);
    assert!(span * 1000.0 >= recorded as f64 - 2500.0, "{span}: {media}");
    let before = video_frames(&s.url(&media_path))?;
    assert!(before >= 450, "{before} frames after the crash");

    // The encoder comes back (to the new port) with its clock at zero:
    // recording goes on after what is stored, behind a discontinuity.
    let (_, ch) = api(s.admin, "GET", "/api/v1/channels/ch1", None)?;
    let rtmp = format!("{}/main", ch["ingest"]["rtmp"].as_str().unwrap_or_default());
    let (ok, err) = ffmpeg_push_rtmp(&rtmp, 10, &[])?;
    anyhow::ensure!(ok, "{err}");
    wait_for(Duration::from_secs(30), || {
        let (_, a) = api(s.admin, "GET", "/api/v1/assets/show", None).ok()?;
        (a["duration_ms"].as_u64()? >= recorded + 9_000).then_some(())
    })?;
    stop_program(&s, "ch1", "show")?;
    let (_, media, media_path) = hls(&s, &locator)?;
    assert!(media.contains("#EXT-X-ENDLIST"), "{media}");
    assert_eq!(
        media.matches("#EXT-X-DISCONTINUITY\n").count(),
        1,
        "{media}"
    );
    let after = video_frames(&s.url(&media_path))?;
    assert!(after >= before + 225, "{before} then {after} frames");

    // And after a clean restart, the VOD is unchanged.
    let status = s.terminate()?;
    assert!(status.success());
    let s = Sluice::start_in(dir.path(), "", &[])?;
    let (_, again, _) = hls(&s, &locator)?;
    assert_eq!(again, media);
    Ok(())
}
