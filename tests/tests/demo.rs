//! `sluice serve --demo` feeds channel `demo` from the built-in clip,
//! records it with program `demo` into asset `demo` published by locator
//! `demo`, and prints the preview and play URLs; ffmpeg decodes both.

use std::time::Duration;

use sluice_tests::{Sluice, ffprobe_frames, http_get, wait_for};

#[test]
fn demo_preview_decodes() -> anyhow::Result<()> {
    let server = Sluice::start("", &["--demo"])?;
    let line = server.stdout.recv_timeout(Duration::from_secs(30))?;
    let url = line
        .strip_prefix("preview ")
        .ok_or_else(|| anyhow::anyhow!("expected the preview URL, got {line:?}"))?
        .to_owned();
    let path = url
        .split_once(&server.http.port().to_string())
        .map(|(_, p)| p.to_owned())
        .expect("URL on the http port");
    assert_eq!(
        path,
        "/preview/demo/preview.isml/Manifest(format=m3u8-cmaf)"
    );

    // The source runs in real time: wait until three fragments (6 s) are listed.
    let media_uri = wait_for(Duration::from_secs(60), || {
        let r = http_get(server.http, &path, &[]).ok()?;
        let text = r.text();
        let uri = text.lines().find(|l| l.ends_with(".m3u8"))?.to_owned();
        let media = http_get(
            server.http,
            &format!("/preview/demo/preview.isml/{uri}"),
            &[],
        )
        .ok()?;
        (media.text().matches("#EXTINF").count() >= 3).then_some(uri)
    })?;
    assert!(media_uri.starts_with("m3u8-cmaf/"), "{media_uri}");

    let (frames, errors) =
        ffprobe_frames(&url, &["-live_start_index", "0", "-read_intervals", "%+5"])?;
    assert!(errors.trim().is_empty(), "decode errors: {errors}");
    let video = frames.iter().filter(|f| f.media_type == "video").count();
    let audio = frames.iter().filter(|f| f.media_type == "audio").count();
    // At least 4 s of each (25 fps video, 46.875 AAC frames per second).
    assert!(video >= 100, "decoded {video} video frames");
    assert!(audio >= 180, "decoded {audio} audio frames");

    // The recording, published by the demo locator.
    let line = server.stdout.recv_timeout(Duration::from_secs(5))?;
    let play = line
        .strip_prefix("play ")
        .ok_or_else(|| anyhow::anyhow!("expected the play URL, got {line:?}"))?
        .to_owned();
    assert!(
        play.ends_with("/demo/demo.ism/Manifest(format=m3u8-cmaf)"),
        "{play}"
    );
    let (frames, errors) =
        ffprobe_frames(&play, &["-live_start_index", "0", "-read_intervals", "%+5"])?;
    assert!(errors.trim().is_empty(), "decode errors: {errors}");
    let video = frames.iter().filter(|f| f.media_type == "video").count();
    assert!(
        video >= 100,
        "decoded {video} video frames of the recording"
    );
    Ok(())
}
