//! Several RTMP streams into one channel: renditions become variants;
//! the same stream pushed twice (active-active) merges with no gap and no
//! duplicate, also when one encoder dies and comes back.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sluice_tests::{
    Sluice, api, assert_two_variants_decode, ffmpeg_two_renditions, ffprobe_frames, http_get,
    media_segments, run, running_channel, tempdir::TempDir, wait_for,
};

#[test]
fn two_renditions_become_two_variants() -> anyhow::Result<()> {
    let server = Sluice::start("", &[])?;
    let rtmp = running_channel(&server, "abr")?["ingest"]["rtmp"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (ok, err) =
        ffmpeg_two_renditions(|name| vec!["-f".into(), "flv".into(), format!("{rtmp}/{name}")])?;
    assert!(ok, "{err}");
    assert_two_variants_decode(&server, "/preview/abr/preview.isml")
}

fn push_copy(file: &std::path::Path, url: &str, extra: &[&str]) -> anyhow::Result<Child> {
    Ok(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(extra)
        .arg("-i")
        .arg(file)
        .args(["-c", "copy", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

#[test]
fn redundant_rtmp_encoders_merge_without_gap_or_duplicate() -> anyhow::Result<()> {
    let dir = TempDir::new("sluice-redundant")?;
    let file = dir.path().join("source.flv");
    let (ok, _, err) = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t", "10", "-c:v", "libx264", "-preset", "veryfast", "-bf", "2",
        ])
        .args([
            "-g",
            "50",
            "-keyint_min",
            "50",
            "-sc_threshold",
            "0",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv"])
        .arg(&file))?;
    assert!(ok, "{err}");

    let server = Sluice::start("", &[])?;
    let rtmp = running_channel(&server, "red")?["ingest"]["rtmp"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let url = format!("{rtmp}/main");
    let mut a = push_copy(&file, &url, &[])?;
    let mut b = push_copy(&file, &url, &[])?;
    let base = "/preview/red/preview.isml";
    let media = format!("{base}/m3u8-cmaf/t1/index.m3u8");
    // Kill A once two fragments are out.
    wait_for(Duration::from_secs(30), || {
        let r = http_get(server.http, &media, &[]).ok()?;
        (media_segments(&r.text()).0.len() >= 2).then_some(())
    })?;
    a.kill()?;
    a.wait()?;
    // A comes back, starting its file over while B is live: everything it
    // sends is old and must be dropped, not appended.
    let mut a2 = push_copy(&file, &url, &["-t", "4"])?;
    assert!(b.wait()?.success(), "encoder B");
    let _ = a2.wait()?;

    let playlist = wait_for(Duration::from_secs(20), || {
        let r = http_get(server.http, &media, &[]).ok()?;
        r.text().contains("#EXT-X-ENDLIST").then(|| r.text())
    })?;
    let (names, total) = media_segments(&playlist);
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(unique, names, "no duplicate segment: {playlist}");
    assert!(!playlist.contains("#EXT-X-DISCONTINUITY"), "{playlist}");
    assert!(
        (total - 10.0).abs() < 0.2,
        "the full 10 s, no gap: {total} s\n{playlist}"
    );
    let starts: Vec<u64> = names
        .iter()
        .filter_map(|n| n.trim_end_matches(".m4s").parse().ok())
        .collect();
    assert!(starts.windows(2).all(|w| w[1] > w[0]), "{starts:?}");

    let (status, ch) = api(server.admin, "GET", "/api/v1/channels/red", None)?;
    assert_eq!(status, 200);
    assert!(
        ch["stats"]["duplicates_matching"].as_u64() > Some(0),
        "{ch}"
    );
    assert_eq!(ch["stats"]["duplicates_mismatching"], 0, "{ch}");

    let (frames, errors) = ffprobe_frames(
        &server.url(&format!("{base}/Manifest(format=m3u8-cmaf)")),
        &[],
    )?;
    assert!(errors.trim().is_empty(), "{errors}");
    let video = frames.iter().filter(|f| f.media_type == "video").count();
    assert!((video as i64 - 250).abs() <= 50, "{video} of 250 frames");
    Ok(())
}
