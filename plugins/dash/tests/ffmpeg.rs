//! Interop with a real decoder: ffmpeg encodes H.264 (with B-frames) and
//! AAC into fragmented MP4 with 2 s fragments, the SDK's box reader
//! demuxes them into an in-memory ended presentation, the packager serves
//! it as DASH (both flavours), and every resource the static MPD names is
//! written to a directory under the same relative names. Then ffmpeg must
//! decode it without a single error and ffprobe must count every frame.
//!
//! Fails when `ffmpeg` is not installed (`scripts/test.sh` installs it).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use sluice_plugin_dash::Dash;
use sluice_sdk::plugin::{MemoryView, PresentationState};
use sluice_sdk::testing::{SECONDS, attr, encode, fetch, ffmpeg, have_ffmpeg, presentation, run};

/// Writes the MPD as `manifest.mpd` and every init and media segment it
/// names (expanding each SegmentTimeline as a player does) under `root`;
/// returns the number of media segments.
fn crawl(view: &MemoryView, format: &str, root: &Path) -> usize {
    let mpd = fetch::<Dash>(
        view,
        format,
        root,
        &format!("Manifest(format={format})"),
        "manifest.mpd",
    );
    let mpd = String::from_utf8(mpd).unwrap();
    let (mut rep, mut media) = (String::new(), String::new());
    let (mut time, mut segments) = (0u64, 0usize);
    for line in mpd.lines().map(str::trim) {
        if line.starts_with("<Representation ") {
            rep = attr(line, "id").unwrap().to_owned();
        } else if line.starts_with("<SegmentTemplate ") {
            let init = attr(line, "initialization")
                .unwrap()
                .replace("$RepresentationID$", &rep);
            media = attr(line, "media")
                .unwrap()
                .replace("$RepresentationID$", &rep);
            fetch::<Dash>(view, format, root, &init, &init);
        } else if line.starts_with("<S ") {
            if let Some(t) = attr(line, "t") {
                time = t.parse().unwrap();
            }
            let d: u64 = attr(line, "d").unwrap().parse().unwrap();
            let r: u64 = attr(line, "r").map_or(0, |r| r.parse().unwrap());
            for _ in 0..=r {
                let path = media.replace("$Time$", &time.to_string());
                fetch::<Dash>(view, format, root, &path, &path);
                time += d;
                segments += 1;
            }
        }
    }
    segments
}

/// Frames ffprobe decodes of the first stream of one type (`v`, `a`),
/// reading that stream alone.
///
/// Alone, because ffmpeg 5.1's DASH demuxer ends the whole input at the
/// first stream's end of file, reading streams in order of their newest
/// timestamp: video whose B-frames start at a positive composition offset
/// (the source's edit list is not carried, see the report) is 80 ms
/// "ahead", so reading both streams loses its last two packets.
fn frame_count(dir: &Path, input: &str, stream: &str) -> u64 {
    let out = run(Command::new("ffprobe").current_dir(dir).args(
        format!(
            "-v error -count_frames -select_streams {stream}:0 \
             -show_entries stream=nb_read_frames -of csv=p=0 {input}"
        )
        .split_whitespace(),
    ));
    // Listed once per program and once per stream: all must agree.
    let counts: Vec<u64> = out
        .lines()
        .map(|l| l.trim().trim_end_matches(','))
        .filter(|l| !l.is_empty())
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(
        !counts.is_empty() && counts.iter().all(|&n| n == counts[0]),
        "{out}"
    );
    counts[0]
}

#[test]
fn ffmpeg_decodes_the_static_mpd_of_both_flavours() {
    assert!(
        have_ffmpeg(),
        "ffmpeg/ffprobe not installed: run ./scripts/test.sh, which installs them"
    );
    let dir: PathBuf =
        std::env::temp_dir().join(format!("sluice-dash-ffmpeg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // Track ids 0 and 7: 0 is valid in the presentation, never in a file.
    let (video, audio) = encode(&dir, 0, 7);
    let (video_frames, audio_frames) = (video.sample_count(), audio.sample_count());
    assert_eq!(video_frames, 25 * SECONDS as usize);
    assert!(audio_frames >= 48_000 * SECONDS as usize / 1024);

    let view = presentation(&[&video, &audio], PresentationState::Ended);

    for format in ["mpd-time-csf", "mpd-time-cmaf"] {
        let root = dir.join(format);
        let segments = crawl(&view, format, &root);
        assert_eq!(segments, video.fragments.len() + audio.fragments.len());
        let mpd = std::fs::read_to_string(root.join("manifest.mpd")).unwrap();
        assert!(mpd.contains("type=\"static\""), "{mpd}");

        // A full decode of every stream, stopping at the first error.
        run(ffmpeg(&root).args("-xerror -i manifest.mpd -map 0 -f null -".split_whitespace()));
        // Every frame is there.
        assert_eq!(
            frame_count(&root, "manifest.mpd", "v"),
            video_frames as u64,
            "{format}"
        );
        assert_eq!(
            frame_count(&root, "manifest.mpd", "a"),
            audio_frames as u64,
            "{format}"
        );
        // And ffprobe reads the declared stream parameters.
        let probe = run(Command::new("ffprobe").current_dir(&root).args(
            "-v error -show_entries stream=codec_name,width,height,sample_rate,channels \
             -of compact=p=0:nk=1 manifest.mpd"
                .split_whitespace(),
        ));
        assert!(
            probe.lines().any(|l| l.starts_with("h264|320|240")),
            "{probe}"
        );
        assert!(
            probe.lines().any(|l| l.starts_with("aac|48000|2")),
            "{probe}"
        );
    }

    std::fs::remove_dir_all(&dir).unwrap();
}
