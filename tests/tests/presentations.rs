//! Presentations other than one video and one audio track, end to end:
//! audio-only and video-only channels (RTMP), and one video with two audio
//! languages (fMP4 ingest). Each is checked in every format's manifest and
//! decoded on demand by ffmpeg with the expected frame counts.

use std::process::Command;

use sluice_tests::{
    Player, Sluice, X264, ffmpeg_push_rtmp, ffprobe_frames, http_get, play_in_browser, run,
    running_channel, tempdir::TempDir, wait_until_ended,
};

/// Seconds of media each encoder sends.
const SECONDS: u32 = 6;
/// Video frames sent (25 fps).
const VIDEO_FRAMES: i64 = SECONDS as i64 * 25;
/// AAC frames sent at 48 kHz (46.875 per second).
const AUDIO_FRAMES: f64 = SECONDS as f64 * 46.875;

/// Video and audio frames ffprobe decodes from `url`, failing on any
/// decode error.
fn decode(url: &str) -> anyhow::Result<(i64, f64)> {
    let (frames, errors) = ffprobe_frames(url, &[])?;
    anyhow::ensure!(errors.trim().is_empty(), "{url}: {errors}");
    let count = |kind: &str| frames.iter().filter(|f| f.media_type == kind).count();
    Ok((count("video") as i64, count("audio") as f64))
}

/// `(codec_type, language)` of every stream ffprobe sees in `url`.
fn streams(url: &str) -> anyhow::Result<Vec<(String, String)>> {
    let (ok, out, err) = run(Command::new("ffprobe")
        .args(["-v", "error", "-show_entries"])
        .args(["stream=codec_type:stream_tags=language", "-of", "json"])
        .arg(url))?;
    anyhow::ensure!(ok, "ffprobe {url}: {err}");
    let doc: serde_json::Value = serde_json::from_str(&out)?;
    let field = |s: &serde_json::Value, p: &str| {
        s.pointer(p)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    Ok(doc["streams"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| (field(s, "/codec_type"), field(s, "/tags/language")))
                .collect()
        })
        .unwrap_or_default())
}

fn text(server: &Sluice, path: &str) -> anyhow::Result<String> {
    let r = http_get(server.http, path, &[])?;
    anyhow::ensure!(r.status == 200, "{path}: {}", r.status);
    Ok(r.text())
}

#[test]
fn audio_only_and_video_only_channels_play_in_every_format() -> anyhow::Result<()> {
    let server = Sluice::start("", &[])?;
    for (channel, drop, kind) in [("aonly", "-vn", "audio"), ("vonly", "-an", "video")] {
        let rtmp = running_channel(&server, channel)?["ingest"]["rtmp"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let (ok, err) = ffmpeg_push_rtmp(&format!("{rtmp}/main"), SECONDS, &[drop])?;
        assert!(ok, "{channel}: {err}\n{}", server.log());
        let base = format!("/preview/{channel}/preview.isml");
        let master = wait_until_ended(server.http, &base, 1)?;

        // Codecs, and resolution for video only.
        let audio = kind == "audio";
        assert_eq!(master.contains("mp4a.40.2"), audio, "{master}");
        assert_eq!(master.contains("avc1."), !audio, "{master}");
        assert_eq!(master.contains("RESOLUTION=320x240"), !audio, "{master}");
        assert!(!master.contains("EXT-X-MEDIA:"), "{master}");
        let mpd = text(&server, &format!("{base}/Manifest(format=mpd-time-csf)"))?;
        assert_eq!(mpd.matches("<AdaptationSet").count(), 1, "{mpd}");
        assert!(mpd.contains(&format!("contentType=\"{kind}\"")), "{mpd}");
        let smooth = text(&server, &format!("{base}/Manifest"))?;
        assert_eq!(smooth.matches("<StreamIndex").count(), 1, "{smooth}");
        assert!(smooth.contains(&format!("Type=\"{kind}\"")), "{smooth}");
        let f4m = text(&server, &format!("{base}/Manifest(format=f4m-f4f)"))?;
        assert_eq!(f4m.matches("<media ").count(), 1, "{f4m}");

        for manifest in [
            "Manifest(format=m3u8-cmaf)",
            "Manifest(format=m3u8-aapl)",
            "Manifest(format=mpd-time-csf)",
            "Manifest(format=mpd-time-cmaf)",
        ] {
            let (video, audio_frames) = decode(&server.url(&format!("{base}/{manifest}")))?;
            eprintln!("{channel} {manifest}: {video} video, {audio_frames} audio frames");
            if audio {
                assert_eq!(video, 0, "{channel} {manifest}");
                assert!(
                    (audio_frames - AUDIO_FRAMES).abs() <= 6.0,
                    "{channel} {manifest}: {audio_frames} of {AUDIO_FRAMES} audio frames"
                );
            } else {
                assert_eq!(audio_frames, 0.0, "{channel} {manifest}");
                assert!(
                    (video - VIDEO_FRAMES).abs() <= 3,
                    "{channel} {manifest}: {video} of {VIDEO_FRAMES} video frames"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn two_audio_languages_become_two_renditions_in_every_format() -> anyhow::Result<()> {
    let dir = TempDir::new("sluice-languages")?;
    let file = dir.path().join("source.mp4");
    // Video, English audio (440 Hz) and French audio (660 Hz).
    let (ok, _, err) = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-f", "lavfi", "-i", "sine=frequency=660:sample_rate=48000"])
        .args(["-map", "0:v", "-map", "1:a", "-map", "2:a"])
        .args(["-t", &SECONDS.to_string()])
        .args(X264)
        .args(["-c:a", "aac", "-b:a", "64k"])
        .args(["-metadata:s:a:0", "language=eng"])
        .args(["-metadata:s:a:1", "language=fra"])
        .arg(&file))?;
    anyhow::ensure!(ok, "{err}");

    let server = Sluice::start("", &[])?;
    let url = running_channel(&server, "langs")?["ingest"]["fmp4"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (ok, _, err) = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
        .arg(&file)
        .args(["-map", "0", "-c", "copy", "-f", "ismv"])
        .args(["-movflags", "isml+frag_keyframe"])
        .arg(format!("{url}/Streams(main)")))?;
    assert!(ok, "{err}\n{}", server.log());
    let base = "/preview/langs/preview.isml";
    let master = wait_until_ended(server.http, base, 1)?;

    // HLS: two audio renditions in one group, each with its language.
    let renditions: Vec<&str> = master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-MEDIA:TYPE=AUDIO"))
        .collect();
    assert_eq!(renditions.len(), 2, "{master}");
    assert!(
        renditions.iter().any(|r| r.contains("LANGUAGE=\"en")),
        "{master}"
    );
    assert!(
        renditions.iter().any(|r| r.contains("LANGUAGE=\"fr")),
        "{master}"
    );
    assert_eq!(
        renditions
            .iter()
            .filter(|r| r.contains("DEFAULT=YES"))
            .count(),
        1,
        "{master}"
    );
    // DASH: one audio adaptation set per language.
    let mpd = text(&server, &format!("{base}/Manifest(format=mpd-time-csf)"))?;
    assert_eq!(mpd.matches("contentType=\"audio\"").count(), 2, "{mpd}");
    assert!(
        mpd.contains("lang=\"en") && mpd.contains("lang=\"fr"),
        "{mpd}"
    );
    // Smooth: one audio stream per language.
    let smooth = text(&server, &format!("{base}/Manifest"))?;
    assert_eq!(smooth.matches("Type=\"audio\"").count(), 2, "{smooth}");
    assert!(
        smooth.contains("Language=\"en") && smooth.contains("Language=\"fr"),
        "{smooth}"
    );

    // ffmpeg sees both languages and decodes every frame of each.
    for manifest in [
        "Manifest(format=m3u8-cmaf)",
        "Manifest(format=m3u8-aapl)",
        "Manifest(format=mpd-time-csf)",
    ] {
        let url = server.url(&format!("{base}/{manifest}"));
        let langs: Vec<String> = streams(&url)?
            .into_iter()
            .filter(|(kind, _)| kind == "audio")
            .map(|(_, lang)| lang)
            .collect();
        eprintln!("{manifest}: audio languages {langs:?}");
        assert_eq!(langs.len(), 2, "{manifest}: {langs:?}");
        assert!(
            langs.iter().any(|l| l.starts_with("en")) && langs.iter().any(|l| l.starts_with("fr")),
            "{manifest}: {langs:?}"
        );
        let (video, audio) = decode(&url)?;
        eprintln!("{manifest}: {video} video, {audio} audio frames");
        assert!(
            (video - VIDEO_FRAMES).abs() <= 3,
            "{manifest}: {video} video"
        );
        assert!(
            (audio - 2.0 * AUDIO_FRAMES).abs() <= 12.0,
            "{manifest}: {audio} audio frames, two languages"
        );
    }
    Ok(())
}

#[test]
fn audio_bitrate_tiers_become_hls_groups_that_players_follow() -> anyhow::Result<()> {
    let dir = TempDir::new("sluice-audio-tiers")?;
    let file = dir.path().join("source.mp4");
    // Video; English at 128 and 48 kbit/s; French at 64 kbit/s.
    let seconds = 8;
    let (ok, _, err) = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-f", "lavfi", "-i", "sine=frequency=660:sample_rate=48000"])
        .args(["-map", "0:v", "-map", "1:a", "-map", "1:a", "-map", "2:a"])
        .args(["-t", &seconds.to_string()])
        .args(X264)
        .args([
            "-c:a", "aac", "-b:a:0", "128k", "-b:a:1", "48k", "-b:a:2", "64k",
        ])
        .args(["-metadata:s:a:0", "language=eng"])
        .args(["-metadata:s:a:1", "language=eng"])
        .args(["-metadata:s:a:2", "language=fra"])
        .arg(&file))?;
    anyhow::ensure!(ok, "{err}");

    let server = Sluice::start("", &[])?;
    let url = running_channel(&server, "tiers")?["ingest"]["fmp4"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (ok, _, err) = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
        .arg(&file)
        .args(["-map", "0", "-c", "copy", "-f", "ismv"])
        .args(["-movflags", "isml+frag_keyframe"])
        .arg(format!("{url}/Streams(main)")))?;
    assert!(ok, "{err}\n{}", server.log());
    let base = "/preview/tiers/preview.isml";
    // The one video is listed once per audio group.
    let master = wait_until_ended(server.http, base, 2)?;
    let group_of = |tier: &str| {
        master
            .lines()
            .filter(|l| {
                l.starts_with("#EXT-X-MEDIA:") && l.contains(&format!("GROUP-ID=\"{tier}\""))
            })
            .count()
    };
    assert_eq!(
        (group_of("audio-1"), group_of("audio-2")),
        (2, 2),
        "{master}"
    );
    let bandwidths: Vec<u64> = master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-STREAM-INF:"))
        .filter_map(|l| {
            l.split("BANDWIDTH=")
                .nth(1)?
                .split(',')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        master.contains("AUDIO=\"audio-1\"") && master.contains("AUDIO=\"audio-2\""),
        "{master}"
    );
    assert!(
        bandwidths.len() == 2 && bandwidths[0] > bandwidths[1],
        "{bandwidths:?}\n{master}"
    );

    // ffmpeg reads every group without an error; hls.js plays it.
    let url = server.url(&format!("{base}/Manifest(format=m3u8-cmaf)"));
    let (video, audio) = decode(&url)?;
    eprintln!("audio tiers: {video} video, {audio} audio frames");
    assert!(video >= i64::from(seconds) * 25 - 3 && audio > 0.0);
    let report = play_in_browser(Player::HlsJs, &url, false)?;
    eprintln!("hls.js: {report}");
    Ok(())
}
