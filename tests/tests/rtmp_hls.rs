//! First light: ffmpeg pushes RTMP (H.264 with B-frames + AAC) into a
//! channel; ffmpeg/ffprobe read the preview HLS (fMP4) and decode it.

use std::time::Duration;

use sluice_tests::{
    DecodedFrame, Sluice, ffmpeg_push_rtmp, ffprobe_frames, http_get, wait_for, wait_until_ended,
};

const CONFIG: &str = "[[channels]]\nname = \"ch1\"\nkey = \"s3cret\"\nfragment_ms = 2000\n";
const MANIFEST: &str = "/preview/ch1/preview.isml/Manifest(format=m3u8-cmaf)";

#[test]
fn ffmpeg_rtmp_push_plays_back_as_hls() -> anyhow::Result<()> {
    let server = Sluice::start(CONFIG, &[])?;
    let seconds = 12;
    let url = format!("rtmp://{}/live/ch1/s3cret/720p", server.rtmp);
    let (ok, err) = ffmpeg_push_rtmp(&url, seconds, &[])?;
    assert!(
        ok,
        "ffmpeg push failed: {err}\nserver log:\n{}",
        server.log()
    );

    // The encoder unpublished cleanly, so the presentation is complete.
    let playlist = wait_until_ended(server.http, "/preview/ch1/preview.isml", 1)?;
    assert!(playlist.starts_with("#EXTM3U"), "{playlist}");
    assert!(
        playlist.contains("avc1.") && playlist.contains("mp4a.40.2"),
        "{playlist}"
    );

    let (frames, errors) = ffprobe_frames(&server.url(MANIFEST), &["-live_start_index", "0"])?;
    assert!(
        errors.trim().is_empty(),
        "decode errors: {errors}\nserver log:\n{}",
        server.log()
    );
    let video: Vec<&DecodedFrame> = frames.iter().filter(|f| f.media_type == "video").collect();
    let audio: Vec<&DecodedFrame> = frames.iter().filter(|f| f.media_type == "audio").collect();

    // Every pushed frame comes back, give or take one fragment (2 s at 25 fps).
    let pushed = (seconds * 25) as i64;
    let decoded = video.len() as i64;
    assert!(
        (decoded - pushed).abs() <= 50,
        "decoded {decoded} video frames, pushed {pushed}"
    );
    // At least 10 s of audio and video decoded.
    let span = |v: &[&DecodedFrame]| v.last().map(|l| l.pts_time - v[0].pts_time).unwrap_or(0.0);
    assert!(span(&video) >= 10.0, "video spans {}", span(&video));
    assert!(span(&audio) >= 10.0, "audio spans {}", span(&audio));
    // Presentation times only move forward (decode order is output order here).
    for pair in video.windows(2) {
        assert!(
            pair[1].pts_time > pair[0].pts_time,
            "video pts not monotonic: {pair:?}"
        );
    }
    for pair in audio.windows(2) {
        assert!(
            pair[1].pts_time > pair[0].pts_time,
            "audio pts not monotonic: {pair:?}"
        );
    }
    // Audio and video start together.
    let skew = (video[0].pts_time - audio[0].pts_time).abs();
    assert!(skew <= 0.100, "audio/video start skew {skew} s");

    // SIGTERM drains and exits 0.
    let status = server.terminate()?;
    assert!(status.success(), "exit status {status}");
    Ok(())
}

#[test]
fn wrong_key_is_refused_before_media() -> anyhow::Result<()> {
    let server = Sluice::start(CONFIG, &[])?;
    let url = format!("rtmp://{}/live/ch1/wrong/720p", server.rtmp);
    let (ok, _) = ffmpeg_push_rtmp(&url, 2, &[])?;
    assert!(!ok, "a push with the wrong key must fail");
    let log = server.log();
    assert!(log.contains("wrong ingest key"), "{log}");
    let r = http_get(server.http, MANIFEST, &[])?;
    assert_eq!(r.status, 404, "nothing was published");
    // Unknown channel too.
    let url = format!("rtmp://{}/live/nope/s3cret/720p", server.rtmp);
    let (ok, _) = ffmpeg_push_rtmp(&url, 2, &[])?;
    assert!(!ok);
    Ok(())
}

#[test]
fn delivery_headers_etag_and_conditional_requests() -> anyhow::Result<()> {
    let server = Sluice::start(CONFIG, &[])?;
    let url = format!("rtmp://{}/live/ch1/s3cret/720p", server.rtmp);
    let (ok, err) = ffmpeg_push_rtmp(&url, 5, &[])?;
    assert!(ok, "{err}");
    let master = wait_for(Duration::from_secs(20), || {
        let r = http_get(server.http, MANIFEST, &[]).ok()?;
        (r.status == 200).then_some(r)
    })?;
    assert_eq!(
        master.header("content-type"),
        Some("application/vnd.apple.mpegurl")
    );
    assert_eq!(master.header("access-control-allow-origin"), Some("*"));
    let media_uri = master
        .text()
        .lines()
        .find(|l| !l.starts_with('#') && l.ends_with(".m3u8"))
        .map(str::to_owned)
        .expect("a media playlist URI");
    let base = "/preview/ch1/preview.isml/";
    let media = http_get(server.http, &format!("{base}{media_uri}"), &[])?;
    assert_eq!(media.status, 200);
    let dir = media_uri.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    let segment = media
        .text()
        .lines()
        .find(|l| l.ends_with(".m4s"))
        .map(|s| format!("{base}{dir}/{s}"))
        .expect("a segment");
    let seg = http_get(server.http, &segment, &[])?;
    assert_eq!(seg.status, 200);
    assert_eq!(
        seg.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(
        seg.header("content-length")
            .and_then(|v| v.parse::<usize>().ok()),
        Some(seg.body.len())
    );
    assert_eq!(&seg.body[4..8], b"styp", "fMP4 segment");
    let etag = seg.header("etag").expect("etag").to_owned();
    let again = http_get(server.http, &segment, &[("If-None-Match", &etag)])?;
    assert_eq!(again.status, 304);
    let head = sluice_tests::http_request(server.http, "HEAD", &segment, &[], b"")?;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("etag"), Some(etag.as_str()));
    // Byte ranges: a slice of the same bytes, 206 with Content-Range.
    let len = seg.body.len();
    let part = http_get(server.http, &segment, &[("Range", "bytes=4-103")])?;
    assert_eq!(part.status, 206);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 4-103/{len}").as_str())
    );
    assert_eq!(part.body, seg.body[4..104]);
    let tail = http_get(server.http, &segment, &[("Range", "bytes=-10")])?;
    assert_eq!(tail.body, seg.body[len - 10..]);
    let beyond = http_get(
        server.http,
        &segment,
        &[("Range", &format!("bytes={len}-"))],
    )?;
    assert_eq!(beyond.status, 416);
    assert_eq!(
        beyond.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );
    let stale = http_get(
        server.http,
        &segment,
        &[("Range", "bytes=0-9"), ("If-Range", "\"stale\"")],
    )?;
    assert_eq!((stale.status, stale.body.len()), (200, len));
    // Beyond the live edge: 404 with a short lifetime.
    let edge = http_get(server.http, &format!("{base}{dir}/99999999999.m4s"), &[])?;
    assert_eq!(edge.status, 404);
    assert_eq!(edge.header("cache-control"), Some("public, max-age=1"));
    Ok(())
}

/// ffmpeg pushes a stream whose timestamps start just before a clock wrap:
/// 2^31 ms (ffmpeg's FLV muxer keeps 31 bits) and 2^32 ms (the RTMP clock).
#[test]
fn timestamps_play_across_the_wrap() -> anyhow::Result<()> {
    for (name, offset_s) in [("wrap31", "2147480"), ("wrap32", "4294963")] {
        let config = format!("[[channels]]\nname = \"{name}\"\nkey = \"k\"\n");
        let server = Sluice::start(&config, &[])?;
        let url = format!("rtmp://{}/live/{name}/k/main", server.rtmp);
        let (ok, err) = ffmpeg_push_rtmp(&url, 8, &["-output_ts_offset", offset_s])?;
        assert!(ok, "{err}");
        let base = format!("/preview/{name}/preview.isml");
        wait_until_ended(server.http, &base, 1)?;
        let media = http_get(server.http, &format!("{base}/m3u8-cmaf/t1/index.m3u8"), &[])?.text();
        assert!(!media.contains("#EXT-X-DISCONTINUITY"), "{name}: {media}");
        let total: f64 = media
            .lines()
            .filter_map(|l| l.strip_prefix("#EXTINF:"))
            .filter_map(|l| l.trim_end_matches(',').parse::<f64>().ok())
            .sum();
        assert!((total - 8.0).abs() < 0.2, "{name}: {total} s\n{media}");
        let (frames, errors) = ffprobe_frames(
            &server.url(&format!("{base}/Manifest(format=m3u8-cmaf)")),
            &[],
        )?;
        assert!(errors.trim().is_empty(), "{name}: {errors}");
        let video = frames.iter().filter(|f| f.media_type == "video").count();
        assert!(
            (video as i64 - 200).abs() <= 50,
            "{name}: {video} of 200 frames"
        );
    }
    Ok(())
}
