//! Interop with a real decoder: ffmpeg encodes H.264 (with B-frames) and
//! AAC into fragmented MP4 with 2 s fragments, the SDK's box reader
//! demuxes them into an in-memory ended presentation, the packager serves
//! it as DASH (both flavours), and every resource the static MPD names is
//! written to a directory under the same relative names. Then ffmpeg must
//! decode it without a single error and ffprobe must count every frame.
//!
//! Fails when `ffmpeg` is not installed (`scripts/test.sh` installs it).

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice_plugin_dash::Dash;
use sluice_sdk::bmff::{BmffBox, Moof, Moov, Reader, SampleDescription};
use sluice_sdk::plugin::MemoryView;
use sluice_sdk::plugin::{
    Packager, PresentationState, Request, Response, SampleEntry, TrackInfo, TrackKind,
};

const SECONDS: u32 = 8;

fn have_ffmpeg() -> bool {
    ["ffmpeg", "ffprobe"].iter().all(|tool| {
        Command::new(tool)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// How long any one tool may run.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Runs a command and returns its stdout; fails the test unless it
/// succeeds within [`TIMEOUT`] without printing anything on stderr (every
/// command runs with `-v error`, so any line there is an error).
fn run(cmd: &mut Command) -> String {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            pipe.read_to_end(&mut v).unwrap();
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("{cmd:?} timed out");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(
        status.success() && stderr.trim().is_empty(),
        "{cmd:?} failed ({status}):\n{stderr}"
    );
    stdout
}

fn ffmpeg(dir: &Path) -> Command {
    let mut c = Command::new("ffmpeg");
    c.current_dir(dir)
        .args(["-nostdin", "-hide_banner", "-v", "error", "-y"]);
    c
}

/// One track demuxed from a fragmented MP4 written by ffmpeg: its
/// description and its fragments as (start, sample table, payload).
struct Demuxed {
    track: TrackInfo,
    fragments: Vec<(u64, Vec<SampleEntry>, Vec<u8>)>,
}

/// Demuxes a single-track fragmented MP4 with the SDK's reader.
fn demux(file: &[u8], id: u32) -> Demuxed {
    let mut r = Reader::new(file);
    let mut moov: Option<Moov> = None;
    let mut fragments = Vec::new();
    while let Some(b) = r.next_box().unwrap() {
        let offset = file.len() - r.remaining() - b.len();
        match &b.fourcc().0 {
            b"moov" => moov = Some(Moov::from_box(&b).unwrap()),
            b"moof" => {
                let moov = moov.as_ref().unwrap();
                let trex = moov.mvex.as_ref().unwrap().trex[0];
                let moof = Moof::from_box(&b).unwrap();
                let [traf] = moof.trafs.as_slice() else {
                    panic!("one traf per moof expected");
                };
                let tfhd = traf.tfhd;
                let base = match tfhd.base_data_offset {
                    Some(b) => b as usize,
                    None => offset, // default-base-is-moof, or the first traf
                };
                let (mut samples, mut data) = (Vec::new(), Vec::new());
                for trun in &traf.truns {
                    let mut at = base + trun.data_offset.unwrap_or(0) as usize;
                    for (i, s) in trun.samples.iter().enumerate() {
                        let flags = match (i, trun.first_sample_flags) {
                            (0, Some(f)) => f,
                            _ => s
                                .flags
                                .or(tfhd.default_sample_flags)
                                .unwrap_or(trex.default_sample_flags),
                        };
                        let size = s
                            .size
                            .or(tfhd.default_sample_size)
                            .unwrap_or(trex.default_sample_size);
                        samples.push(SampleEntry {
                            duration: s
                                .duration
                                .or(tfhd.default_sample_duration)
                                .unwrap_or(trex.default_sample_duration),
                            size,
                            composition_offset: s.composition_offset.unwrap_or(0),
                            keyframe: flags & 0x0001_0000 == 0,
                        });
                        data.extend_from_slice(&file[at..at + size as usize]);
                        at += size as usize;
                    }
                }
                let start = traf.tfdt.unwrap().base_media_decode_time;
                fragments.push((start, samples, data));
            }
            _ => {}
        }
    }
    let moov = moov.unwrap();
    let trak = &moov.traks[0];
    let timescale = trak.mdia.mdhd.timescale;
    let track = match &trak.mdia.minf.stbl.stsd.entries[0] {
        SampleDescription::Avc1(a) => TrackInfo {
            fourcc: "avc1".into(),
            codec_private: a.avcc.clone(),
            stream: "240p".into(),
            width: a.width.into(),
            height: a.height.into(),
            ..TrackInfo::new(id, TrackKind::Video, timescale)
        },
        SampleDescription::Mp4a(m) => TrackInfo {
            fourcc: "mp4a".into(),
            codec_private: m.esds.decoder_specific_info.clone(),
            sample_rate: m.sample_rate,
            channels: m.channel_count,
            language: "en".into(),
            ..TrackInfo::new(id, TrackKind::Audio, timescale)
        },
        other => panic!("unexpected sample entry {other:?}"),
    };
    // The codec strings are left empty: the packager derives them.
    Demuxed { track, fragments }
}

fn get(view: &MemoryView, format: &str, path: &str) -> Response {
    let req = Request {
        format: format.into(),
        path: path.into(),
        ..Request::default()
    };
    let r = Dash::handle(&req, view);
    assert_eq!(r.status, 200, "{path}: {r:?}");
    r
}

/// Fetches `path` (below the manifest root) and writes it as `file`
/// under `root`.
fn fetch(view: &MemoryView, format: &str, root: &Path, path: &str, file: &str) -> Vec<u8> {
    let body = view
        .assemble(&get(view, format, path))
        .expect("references resolve");
    let dest = root.join(file);
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::write(&dest, &body).unwrap();
    body
}

/// The value of attribute `name` in one element's text.
fn attr<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    let pat = format!(" {name}=\"");
    let from = element.find(&pat)? + pat.len();
    Some(&element[from..from + element[from..].find('"')?])
}

/// Writes the MPD as `manifest.mpd` and every init and media segment it
/// names (expanding each SegmentTimeline as a player does) under `root`;
/// returns the number of media segments.
fn crawl(view: &MemoryView, format: &str, root: &Path) -> usize {
    let mpd = fetch(
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
            fetch(view, format, root, &init, &init);
        } else if line.starts_with("<S ") {
            if let Some(t) = attr(line, "t") {
                time = t.parse().unwrap();
            }
            let d: u64 = attr(line, "d").unwrap().parse().unwrap();
            let r: u64 = attr(line, "r").map_or(0, |r| r.parse().unwrap());
            for _ in 0..=r {
                let path = media.replace("$Time$", &time.to_string());
                fetch(view, format, root, &path, &path);
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

    // 25 fps H.264 with B-frames and a keyframe every 2 s; AAC cut in 2 s
    // fragments. Both fragmented, one track per file.
    run(ffmpeg(&dir).args(
        format!(
            "-f lavfi -i testsrc2=s=320x240:r=25 -t {SECONDS} \
             -c:v libx264 -preset veryfast -g 50 -keyint_min 50 -sc_threshold 0 -bf 2 \
             -pix_fmt yuv420p -video_track_timescale 90000 \
             -movflags frag_keyframe+empty_moov+default_base_moof video.mp4"
        )
        .split_whitespace(),
    ));
    run(ffmpeg(&dir).args(
        format!(
            "-f lavfi -i sine=f=440:r=48000 -t {SECONDS} -c:a aac -b:a 96k -ac 2 \
             -frag_duration 2000000 -movflags empty_moov+default_base_moof audio.mp4"
        )
        .split_whitespace(),
    ));
    // Track ids 0 and 7: 0 is valid in the presentation, never in a file.
    let video = demux(&std::fs::read(dir.join("video.mp4")).unwrap(), 0);
    let audio = demux(&std::fs::read(dir.join("audio.mp4")).unwrap(), 7);
    assert_eq!(video.fragments.len(), (SECONDS / 2) as usize);
    assert!(video.fragments.iter().all(|(_, s, _)| s[0].keyframe));
    assert!(
        video.fragments[0]
            .1
            .iter()
            .any(|s| s.composition_offset != 0),
        "B-frames expected"
    );
    let video_frames: usize = video.fragments.iter().map(|(_, s, _)| s.len()).sum();
    let audio_frames: usize = audio.fragments.iter().map(|(_, s, _)| s.len()).sum();
    assert_eq!(video_frames, 25 * SECONDS as usize);
    assert!(audio_frames >= 48_000 * SECONDS as usize / 1024);

    let mut view = MemoryView::new(PresentationState::Ended, 2000, Some(1_709_251_200_000));
    for d in [&video, &audio] {
        view.add_track(d.track.clone());
        for (start, samples, data) in &d.fragments {
            view.push(d.track.id, *start, samples.clone(), data.clone(), false);
        }
    }

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
