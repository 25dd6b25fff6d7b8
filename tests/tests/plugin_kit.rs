//! The plugin kit's example plugins (`examples/`), built for
//! `wasm32-wasip2` from their own crates, hot-added to a running server's
//! plugin directory and used with real peers.

use std::time::Duration;

use anyhow::Context as _;
use sluice_tests::{
    Sluice, build_component, encode_source, example_plugin, ffmpeg_copy_realtime, ffprobe_frames,
    http_get, http_request, record_clip, run, running_channel, sluice_bin, stop_program,
    tempdir::TempDir, wait_for, wait_until_ended,
};

/// One `EXT-X-BYTERANGE` entry of an I-frame playlist: length, offset, URI.
fn byte_ranges(playlist: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut lines = playlist.lines();
    while let Some(line) = lines.next() {
        if let Some(range) = line.strip_prefix("#EXT-X-BYTERANGE:")
            && let Some((len, off)) = range.split_once('@')
            && let (Ok(len), Ok(off)) = (len.parse(), off.parse())
            && let Some(uri) = lines.next()
        {
            out.push((len, off, uri.to_owned()));
        }
    }
    out
}

#[test]
fn the_iframe_packager_hot_added_serves_ranges_that_decode_as_one_picture_each()
-> anyhow::Result<()> {
    let wasm = example_plugin("hls-iframes")?;
    // `sluice plugin check` accepts it and says what it declares.
    let (ok, out, err) = run(std::process::Command::new(sluice_bin())
        .args(["plugin", "check"])
        .arg(&wasm))?;
    assert!(ok, "{err}");
    assert!(
        out.contains("hls-iframes") && out.contains("m3u8-iframes"),
        "{out}"
    );

    let plugins = TempDir::new("sluice-kit-plugins")?;
    let dir = plugins.path().to_str().context("utf-8 path")?;
    let s = Sluice::start("", &["--plugin-dir", dir])?;
    record_clip(&s, 8)?;
    stop_program(&s, "ch1", "show")?;
    let base = "/show/show.ism";
    let master = format!("{base}/Manifest(format=m3u8-cmaf)");
    let before = http_get(s.http, &master, &[])?;
    assert_eq!(before.status, 200);
    assert!(!before.text().contains("#EXT-X-I-FRAME-STREAM-INF"));
    let iframes = format!("{base}/Manifest(format=m3u8-iframes)");
    assert_eq!(http_get(s.http, &iframes, &[])?.status, 404);

    // Hot-added: served, and listed from the HLS multivariant playlist
    // (which was answered and cached before).
    std::fs::copy(&wasm, plugins.path().join("hls-iframes.wasm"))?;
    wait_for(Duration::from_secs(30), || {
        (http_get(s.http, &iframes, &[]).ok()?.status == 200).then_some(())
    })?;
    let m = http_get(s.http, &master, &[])?.text();
    let inf = m
        .lines()
        .find(|l| l.starts_with("#EXT-X-I-FRAME-STREAM-INF:"))
        .with_context(|| format!("no I-frame stream listed:\n{m}"))?;
    assert!(
        inf.contains("URI=\"m3u8-iframes/t1/iframes.m3u8\""),
        "{inf}"
    );

    let playlist_path = format!("{base}/m3u8-iframes/t1/iframes.m3u8");
    let playlist = http_get(s.http, &playlist_path, &[])?;
    assert_eq!(playlist.status, 200);
    let text = playlist.text();
    assert!(text.contains("#EXT-X-I-FRAMES-ONLY"), "{text}");
    assert!(text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
    let ranges = byte_ranges(&text);
    // An 8 s recording in 2 s fragments: one I-frame each.
    assert_eq!(ranges.len(), 4, "{text}");
    let init = http_get(s.http, &format!("{base}/m3u8-iframes/t1/init.mp4"), &[])?;
    assert_eq!(init.status, 200);
    let work = TempDir::new("sluice-kit-iframes")?;
    for (i, (len, off, uri)) in ranges.iter().enumerate() {
        // The range as a player asks for it.
        let range = format!("bytes={off}-{}", off + len - 1);
        let part = http_get(
            s.http,
            &format!("{base}/m3u8-iframes/t1/{uri}"),
            &[("Range", &range)],
        )?;
        assert_eq!(part.status, 206, "{uri} {range}");
        assert_eq!(part.body.len(), *len);
        let file = work.path().join(format!("iframe-{i}.mp4"));
        std::fs::write(&file, [&init.body[..], &part.body[..]].concat())?;
        let (frames, err) = ffprobe_frames(file.to_str().context("utf-8 path")?, &[])?;
        let video = frames.iter().filter(|f| f.media_type == "video").count();
        assert_eq!(video, 1, "entry {i} ({uri} {range}): {err}");
    }
    Ok(())
}

#[test]
fn plugin_check_refuses_a_component_of_no_sluice_world() -> anyhow::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/wrong-world");
    let wasm = build_component(&dir, "wrong-world")?;
    let (ok, out, err) = run(std::process::Command::new(sluice_bin())
        .args(["plugin", "check"])
        .arg(&wasm))?;
    assert!(!ok, "{out}");
    assert!(
        err.contains("exports neither sluice:plugin/packaging@0.1.0"),
        "{err}"
    );
    // Dropped into a plugin directory, it is skipped with the same reason
    // and the server serves on.
    let plugins = TempDir::new("sluice-kit-wrong")?;
    std::fs::copy(&wasm, plugins.path().join("wrong.wasm"))?;
    let dir = plugins.path().to_str().context("utf-8 path")?;
    let s = Sluice::start("", &["--plugin-dir", dir, "--demo"])?;
    wait_for(Duration::from_secs(10), || {
        s.log().contains("exports neither").then_some(())
    })?;
    let r = http_get(
        s.http,
        "/preview/demo/preview.isml/Manifest(format=m3u8-cmaf)",
        &[],
    )?;
    assert_ne!(r.status, 503, "{}", r.text());
    Ok(())
}

#[test]
fn the_ts_ingest_adapter_hot_added_takes_ffmpeg_mpegts_posts() -> anyhow::Result<()> {
    let wasm = example_plugin("ts-ingest")?;
    // `sluice plugin check` feeds it the HLS packager's TS segments of the
    // fixture clip: it reads both tracks.
    let (ok, out, err) = run(std::process::Command::new(sluice_bin())
        .args(["plugin", "check"])
        .arg(&wasm))?;
    assert!(ok, "{err}");
    assert!(out.contains("extension: ts"), "{out}");
    assert!(out.contains("avc1.") && out.contains("mp4a.40.2"), "{out}");

    let plugins = TempDir::new("sluice-kit-ts")?;
    let dir = plugins.path().to_str().context("utf-8 path")?;
    let s = Sluice::start("", &["--plugin-dir", dir])?;
    let isml = running_channel(&s, "ts1")?["ingest"]["fmp4"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let url = format!("{}.ts/Streams(720p)", isml.trim_end_matches(".isml"));
    let path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(_, p)| format!("/{p}"))
        .context("ingest path")?;
    // No adapter claims `ts` yet.
    let r = http_request(s.http, "POST", &path, &[], b"")?;
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("no ingest adapter"), "{}", r.text());

    std::fs::copy(&wasm, plugins.path().join("ts-ingest.wasm"))?;
    wait_for(Duration::from_secs(30), || {
        let r = http_request(s.http, "POST", &path, &[], b"").ok()?;
        (r.status != 404).then_some(())
    })?;

    // ffmpeg posts MPEG-TS as a broadcast encoder or SRT gateway would.
    let work = TempDir::new("sluice-kit-ts-src")?;
    let source = encode_source(work.path(), 8, "source.mp4")?;
    let (ok, _, err) = run(&mut ffmpeg_copy_realtime(
        &source,
        "mpegts",
        &["-method", "POST"],
        &url,
    ))?;
    assert!(ok, "{err}\n{}", s.log());
    let base = "/preview/ts1/preview.isml";
    let master = wait_until_ended(s.http, base, 1)?;
    assert!(
        master.contains("avc1.") && master.contains("mp4a.40.2"),
        "{master}"
    );
    // The channel's HLS decodes: the 8 s the encoder sent.
    let (frames, errors) =
        ffprobe_frames(&s.url(&format!("{base}/Manifest(format=m3u8-cmaf)")), &[])?;
    assert!(errors.trim().is_empty(), "{errors}");
    let video = frames.iter().filter(|f| f.media_type == "video").count();
    let audio = frames.iter().filter(|f| f.media_type == "audio").count();
    assert!((190..=200).contains(&video), "{video} of 200 video frames");
    assert!(audio >= 350, "{audio} audio frames");
    Ok(())
}

#[test]
fn a_plugin_built_against_the_first_released_interface_keeps_loading() -> anyhow::Result<()> {
    // Built straight from wit/0.1.0 with wit-bindgen, not through the SDK:
    // what a plugin author's 0.1.0 build is, whatever the SDK moves to.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/wit-0-1-0");
    let wasm = build_component(&dir, "wit-0-1-0")?;
    let (ok, out, err) = run(std::process::Command::new(sluice_bin())
        .args(["plugin", "check"])
        .arg(&wasm))?;
    assert!(ok, "{err}");
    assert!(out.contains("world: packager"), "{out}");
    assert!(out.contains("Manifest(format=wit-0-1-0): 200"), "{out}");
    // Loaded from the plugin directory, it packages with the 0.1.0
    // presentation imports (`fragments` as records) on today's host.
    let plugins = TempDir::new("sluice-kit-v010")?;
    std::fs::copy(&wasm, plugins.path().join("wit-0-1-0.wasm"))?;
    let dir = plugins.path().to_str().context("utf-8 path")?;
    let s = Sluice::start("", &["--plugin-dir", dir])?;
    record_clip(&s, 6)?;
    let r = http_get(s.http, "/show/show.ism/Manifest(format=wit-0-1-0)", &[])?;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(
        text.starts_with("sluice:plugin@0.1.0 fragment_ms=2000\n"),
        "{text}"
    );
    assert!(
        text.contains(" video avc1.") && text.contains(" audio mp4a.40.2"),
        "{text}"
    );
    assert!(!text.contains("fragments=0"), "{text}");
    Ok(())
}
