//! Interop with a real player: ffmpeg encodes H.264 and AAC into
//! fragmented MP4, the SDK's box reader demuxes them into an in-memory
//! presentation, the packager serves it as HLS, and a crawler writes every
//! playlist and segment to a directory the way a player would fetch them.
//! Then ffprobe and ffmpeg must read it back without a single error, and
//! every packet must come out byte-identical to what ffmpeg encoded.
//!
//! Fails when `ffmpeg` is not installed (`scripts/test.sh` installs it).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use sluice_plugin_hls::Hls;
use sluice_sdk::plugin::{MemoryView, PresentationState};
use sluice_sdk::testing::{
    SECONDS, count_frames, encode, fetch, ffmpeg, have_ffmpeg, packets, presentation, run,
};

/// The URIs a playlist names: URI lines and `URI="..."` attributes.
fn uris(playlist: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in playlist.lines() {
        if line.is_empty() {
            continue;
        }
        if !line.starts_with('#') {
            out.push(line.to_owned());
        } else if let Some(at) = line.find("URI=\"") {
            let rest = &line[at + 5..];
            out.push(rest[..rest.find('"').unwrap()].to_owned());
        }
    }
    out
}

/// Crawls the presentation as a player would, writing every resource
/// under `root`; the multivariant playlist becomes `master.m3u8`.
fn crawl(view: &MemoryView, format: &str, root: &Path) -> usize {
    let master = fetch::<Hls>(
        view,
        format,
        root,
        &format!("Manifest(format={format})"),
        "master.m3u8",
    );
    let mut files = 1;
    for media in uris(std::str::from_utf8(&master).unwrap()) {
        let body = fetch::<Hls>(view, format, root, &media, &media);
        files += 1;
        let dir = &media[..media.rfind('/').unwrap() + 1];
        for uri in uris(std::str::from_utf8(&body).unwrap()) {
            let path = format!("{dir}{uri}");
            fetch::<Hls>(view, format, root, &path, &path);
            files += 1;
        }
    }
    files
}

#[test]
fn ffmpeg_plays_the_hls_output() {
    assert!(
        have_ffmpeg(),
        "ffmpeg/ffprobe not installed: run ./scripts/test.sh, which installs them"
    );
    let dir: PathBuf =
        std::env::temp_dir().join(format!("sluice-hls-ffmpeg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let (video, audio) = encode(&dir, 1, 2);

    let mut view = presentation(&[&video, &audio], PresentationState::Ended);
    let hls = dir.join("hls");
    let files = crawl(&view, "m3u8-cmaf", &hls);
    assert_eq!(files, 3 + 2 + video.fragments.len() + audio.fragments.len());
    let master = std::fs::read_to_string(hls.join("master.m3u8")).unwrap();
    assert!(
        master.contains("CODECS=\"avc1.64000d,mp4a.40.2\""),
        "{master}"
    );

    // ffprobe sees both streams as encoded.
    let out = run(Command::new("ffprobe").current_dir(&hls).args(
        "-v error -show_entries stream=codec_name,width,height,sample_rate,channels \
         -of compact=p=0:nk=1 master.m3u8"
            .split_whitespace(),
    ));
    let probe = out;
    assert!(
        probe.lines().any(|l| l.starts_with("h264|320|240")),
        "{probe}"
    );
    assert!(
        probe.lines().any(|l| l.starts_with("aac|48000|2")),
        "{probe}"
    );

    // A full decode of every stream, stopping at the first error.
    run(ffmpeg(&hls).args(
        "-xerror -err_detect crccheck+bitstream+buffer -i master.m3u8 -map 0 -f null -"
            .split_whitespace(),
    ));

    // Every packet arrives intact, in order, with its composition offset.
    for (source, map) in [("video.mp4", "0:v:0"), ("audio.mp4", "0:a:0")] {
        let expected = packets(&dir, source, "0");
        let got = packets(&hls, "master.m3u8", map);
        assert!(
            expected.len() >= 200,
            "{source}: {} packets",
            expected.len()
        );
        assert_eq!(expected.len(), got.len(), "{source}: packet count");
        assert!(expected == got, "{source}: packets differ");
    }

    // Live: the same fragments without EXT-X-ENDLIST, played from the
    // start of the window as a live client would.
    view.info.state = PresentationState::Live;
    let live = dir.join("live");
    crawl(&view, "m3u8-cmaf", &live);
    let playlist = std::fs::read_to_string(live.join("m3u8-cmaf/t1/index.m3u8")).unwrap();
    assert!(!playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
    let frames = run(ffmpeg(&live).args(
        format!(
            "-live_start_index 0 -xerror -i master.m3u8 -map 0:v:0 -t {} -f framemd5 -",
            SECONDS - 2
        )
        .split_whitespace(),
    ))
    .lines()
    .filter(|l| !l.starts_with('#'))
    .count();
    assert!(frames >= 25 * (SECONDS as usize - 3), "{frames} frames");

    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ffmpeg_plays_the_ts_hls_output() {
    assert!(
        have_ffmpeg(),
        "ffmpeg/ffprobe not installed: run ./scripts/test.sh, which installs them"
    );
    let dir: PathBuf = std::env::temp_dir().join(format!("sluice-hls-aapl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (video, audio) = encode(&dir, 1, 2);
    let view = presentation(&[&video, &audio], PresentationState::Ended);

    let hls = dir.join("hls");
    let files = crawl(&view, "m3u8-aapl", &hls);
    // Master, one media playlist, one TS per video fragment (audio muxed).
    assert_eq!(files, 2 + video.fragments.len());
    let master = std::fs::read_to_string(hls.join("master.m3u8")).unwrap();
    assert!(
        master.contains("CODECS=\"avc1.64000d,mp4a.40.2\""),
        "{master}"
    );
    assert!(!master.contains("#EXT-X-MEDIA"), "{master}");
    let media = std::fs::read_to_string(hls.join("m3u8-aapl/t1/index.m3u8")).unwrap();
    assert!(media.ends_with("#EXT-X-ENDLIST\n"), "{media}");

    // Every video frame; every audio frame that starts before the last
    // video frame ends (the muxing rule), none twice.
    let video_frames = video.sample_count();
    let (v0, _, _) = &video.fragments[0];
    let (vl, vs, _) = video.fragments.last().unwrap();
    let video_end = vl + vs.iter().map(|s| u64::from(s.duration)).sum::<u64>();
    let vts = u64::from(video.track.timescale);
    let (from90, to90) = (v0 * 90_000 / vts, video_end * 90_000 / vts);
    let mut audio_frames = 0;
    for (start, samples, _) in &audio.fragments {
        let mut dts = *start;
        for s in samples {
            let t90 = dts * 90_000 / u64::from(audio.track.timescale);
            if (from90..to90).contains(&t90) {
                audio_frames += 1;
            }
            dts += u64::from(s.duration);
        }
    }
    assert!(
        video_frames >= 200 && audio_frames >= 370,
        "{video_frames} {audio_frames}"
    );

    // A full decode, stopping at the first error.
    run(ffmpeg(&hls).args(
        "-xerror -err_detect crccheck+bitstream+buffer -i master.m3u8 -map 0 -f null -"
            .split_whitespace(),
    ));
    assert_eq!(
        count_frames(&hls, "master.m3u8"),
        (video_frames, audio_frames)
    );
    // One segment alone decodes too (SPS/PPS in band, own PAT/PMT).
    let first = format!("m3u8-aapl/t1/{v0}.ts");
    run(ffmpeg(&hls).args(["-xerror", "-i", &first, "-f", "null", "-"]));
    let per = count_frames(&hls, &first);
    assert_eq!(per.0, video.fragments[0].1.len());

    // Every packet arrives intact, in order, with its composition offset
    // (the TS holds Annex B / ADTS, so compare after ffmpeg's own
    // conversion of the source to the same forms).
    run(ffmpeg(&dir).args(
        "-i video.mp4 -c copy -bsf:v h264_mp4toannexb -f mpegts src_video.ts".split_whitespace(),
    ));
    let src_v = packets(&dir, "src_video.ts", "0:v:0");
    let got_v = packets(&hls, "master.m3u8", "0:v:0");
    assert_eq!(src_v.len(), got_v.len());
    for (s, g) in src_v.iter().zip(&got_v) {
        assert_eq!(s.composition_offset, g.composition_offset);
    }

    // The audio track's own audio-only playlist plays as well.
    let alone = "m3u8-aapl/t2/index.m3u8";
    let body = fetch::<Hls>(&view, "m3u8-aapl", &hls, alone, alone);
    for uri in uris(std::str::from_utf8(&body).unwrap()) {
        let path = format!("m3u8-aapl/t2/{uri}");
        fetch::<Hls>(&view, "m3u8-aapl", &hls, &path, &path);
    }
    run(ffmpeg(&hls).args(["-xerror", "-i", alone, "-f", "null", "-"]));
    let all_audio = audio.sample_count();
    assert_eq!(count_frames(&hls, alone), (0, all_audio));

    // A second audio track: an EXT-X-MEDIA group whose default rendition
    // is the muxed one (no URI) and whose other plays from audio-only TS.
    let mut view = view;
    let mut fr = audio.track.clone();
    fr.id = 3;
    fr.language = "fr".into();
    view.add_track(fr);
    for (start, samples, data) in &audio.fragments {
        view.push(3, *start, samples.clone(), data.clone(), false);
    }
    let multi = dir.join("multi");
    crawl(&view, "m3u8-aapl", &multi);
    let master = std::fs::read_to_string(multi.join("master.m3u8")).unwrap();
    assert!(
        master.contains("DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\"\n"),
        "{master}"
    );
    assert!(
        master.contains("URI=\"m3u8-aapl/t3/index.m3u8\""),
        "{master}"
    );
    run(ffmpeg(&multi).args(
        "-xerror -err_detect crccheck+bitstream+buffer -i master.m3u8 -map 0 -f null -"
            .split_whitespace(),
    ));
    let streams = run(Command::new("ffprobe").current_dir(&multi).args(
        "-v error -show_entries stream=codec_type:stream_tags=language -of csv=p=0 master.m3u8"
            .split_whitespace(),
    ));
    // The muxed audio takes the default rendition's language.
    for want in ["audio,fr", "audio,en", "video"] {
        assert!(streams.lines().any(|l| l.starts_with(want)), "{streams}");
    }

    if std::env::var_os("SLUICE_KEEP_TEST_FILES").is_none() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
