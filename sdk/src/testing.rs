//! Native test support for packager crates (feature `testing`; enable it
//! in `[dev-dependencies]` only, so it never enters a Wasm plugin).
//!
//! ```text
//!  encode(dir) ─ ffmpeg ─▶ video.mp4, audio.mp4 ─ demux() (SDK box reader) ─▶ Demuxed
//!  presentation([&Demuxed]) ─▶ MemoryView ─ get::<P>() / fetch::<P>() ─▶ bytes on disk
//!  run(ffmpeg / ffprobe) ─▶ packets(), count_frames(): what a real decoder reads back
//!  golden(), text(): unit tests' golden files and text bodies
//! ```
//!
//! Everything here panics on failure: it is test code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::bmff::{BmffBox, Moof, Moov, Reader, SampleDescription};
use crate::plugin::{
    BodyPart, Fragment, MemoryView, Packager, PresentationState, Request, Response, SampleEntry,
    TrackInfo, TrackKind,
};

/// A timeline entry of one 1-byte sample, for tests of timeline logic
/// (its discontinuity sequence number is 1 when flagged, else 0).
pub fn fragment(start: u64, duration: u64, discontinuity: bool) -> Fragment {
    Fragment {
        start,
        duration,
        sample_count: 1,
        size: 1,
        discontinuity,
        discontinuity_sequence: u32::from(discontinuity),
    }
}

/// Length of the encoded test clip, in seconds (2 s fragments).
pub const SECONDS: u32 = 8;

/// How long any one tool may run.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// The presentations' epoch: 2024-03-01T00:00:00Z.
pub const EPOCH_MS: i64 = 1_709_251_200_000;

/// A real `avcC` from x264 (High profile, level 1.3, 320x240).
pub const AVCC: [u8; 46] = [
    0x01, 0x64, 0x00, 0x0d, 0xff, 0xe1, 0x00, 0x19, 0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41,
    0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99,
    0x60, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfd, 0xf8, 0xf8, 0x00,
];

/// AudioSpecificConfig: AAC LC, 48 kHz, stereo.
pub const ASC: [u8; 2] = [0x11, 0x90];

/// Whether `ffmpeg` and `ffprobe` can be run.
pub fn have_ffmpeg() -> bool {
    ["ffmpeg", "ffprobe"].iter().all(|tool| {
        Command::new(tool)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Runs a command and returns (success, stdout, stderr); fails the test
/// unless it ends within [`TIMEOUT`].
pub fn run_raw(cmd: &mut Command) -> (bool, String, String) {
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
    (
        status.success(),
        stdout.join().unwrap(),
        stderr.join().unwrap(),
    )
}

/// Runs a command and returns its stdout; fails the test unless it
/// succeeds within [`TIMEOUT`] without printing anything on stderr (every
/// command runs with `-v error`, so any line there is an error).
pub fn run(cmd: &mut Command) -> String {
    let (ok, stdout, stderr) = run_raw(cmd);
    assert!(ok && stderr.trim().is_empty(), "{cmd:?} failed:\n{stderr}");
    stdout
}

/// `ffmpeg` in `dir`, quiet but for errors, never asking.
pub fn ffmpeg(dir: &Path) -> Command {
    let mut c = Command::new("ffmpeg");
    c.current_dir(dir)
        .args(["-nostdin", "-hide_banner", "-v", "error", "-y"]);
    c
}

/// One track demuxed from a fragmented MP4 written by ffmpeg: its
/// description and its fragments as (start, sample table, payload).
#[derive(Debug, Clone)]
pub struct Demuxed {
    /// The track (codec strings left empty: packagers derive them).
    pub track: TrackInfo,
    /// Fragments as (start in track ticks, sample table, payload).
    pub fragments: Vec<(u64, Vec<SampleEntry>, Vec<u8>)>,
}

impl Demuxed {
    /// Samples in all fragments.
    pub fn sample_count(&self) -> usize {
        self.fragments.iter().map(|(_, s, _)| s.len()).sum()
    }
}

/// Demuxes a single-track fragmented MP4 with the SDK's reader, as track
/// `id`: video labelled stream `240p`, audio language `en`.
pub fn demux(file: &[u8], id: u32) -> Demuxed {
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
                // default-base-is-moof, or the first traf
                let base = tfhd.base_data_offset.map_or(offset, |b| b as usize);
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
    Demuxed { track, fragments }
}

/// Encodes the test clip in `dir` (`video.mp4`, `audio.mp4`) and demuxes
/// it as tracks `video_id` and `audio_id`: [`SECONDS`] of 25 fps H.264
/// with B-frames and a keyframe every 2 s, and AAC cut in 2 s fragments.
pub fn encode(dir: &Path, video_id: u32, audio_id: u32) -> (Demuxed, Demuxed) {
    run(ffmpeg(dir).args(
        format!(
            "-f lavfi -i testsrc2=s=320x240:r=25 -t {SECONDS} \
             -c:v libx264 -preset veryfast -g 50 -keyint_min 50 -sc_threshold 0 -bf 2 \
             -pix_fmt yuv420p -video_track_timescale 90000 \
             -movflags frag_keyframe+empty_moov+default_base_moof video.mp4"
        )
        .split_whitespace(),
    ));
    run(ffmpeg(dir).args(
        format!(
            "-f lavfi -i sine=f=440:r=48000 -t {SECONDS} -c:a aac -b:a 96k -ac 2 \
             -frag_duration 2000000 -movflags empty_moov+default_base_moof audio.mp4"
        )
        .split_whitespace(),
    ));
    let video = demux(&std::fs::read(dir.join("video.mp4")).unwrap(), video_id);
    let audio = demux(&std::fs::read(dir.join("audio.mp4")).unwrap(), audio_id);
    assert_eq!(video.fragments.len(), (SECONDS / 2) as usize);
    assert!(video.fragments.iter().all(|(_, s, _)| s[0].keyframe));
    assert!(
        video.fragments[0]
            .1
            .iter()
            .any(|s| s.composition_offset != 0),
        "B-frames expected"
    );
    (video, audio)
}

/// The demuxed tracks as a presentation in `state` with 2 s fragments.
pub fn presentation(tracks: &[&Demuxed], state: PresentationState) -> MemoryView {
    let mut view = MemoryView::new(state, 2000, Some(EPOCH_MS));
    for d in tracks {
        view.add_track(d.track.clone());
        for (start, samples, data) in &d.fragments {
            view.push(d.track.id, *start, samples.clone(), data.clone(), false);
        }
    }
    view
}

/// Asks packager `P` for `path` in `format`; fails the test unless the
/// answer is 200.
pub fn get<P: Packager>(view: &MemoryView, format: &str, path: &str) -> Response {
    let req = Request {
        format: format.into(),
        path: path.into(),
        ..Request::default()
    };
    let r = P::handle(&req, view);
    assert_eq!(r.status, 200, "{path}: {r:?}");
    r
}

/// The body of [`get`], referenced sample data spliced in as the host
/// does.
pub fn get_body<P: Packager>(view: &MemoryView, format: &str, path: &str) -> Vec<u8> {
    view.assemble(&get::<P>(view, format, path))
        .expect("references resolve")
}

/// Fetches `path` (below the manifest root) and writes it as `file` under
/// `root`.
pub fn fetch<P: Packager>(
    view: &MemoryView,
    format: &str,
    root: &Path,
    path: &str,
    file: &str,
) -> Vec<u8> {
    let body = get_body::<P>(view, format, path);
    let dest = root.join(file);
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::write(&dest, &body).unwrap();
    body
}

/// One packet as ffmpeg's `framemd5` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// pts - dts, in the stream's time base.
    pub composition_offset: i64,
    /// Size in bytes.
    pub size: u64,
    /// MD5 of the data.
    pub md5: String,
}

/// Per packet of stream `map` of `input`, by stream copy (no decoding).
pub fn packets(dir: &Path, input: &str, map: &str) -> Vec<Packet> {
    run(ffmpeg(dir)
        .args(["-i", input, "-map", map])
        .args("-c copy -f framemd5 -".split_whitespace()))
    .lines()
    .filter(|l| !l.starts_with('#'))
    .map(|l| {
        // stream, dts, pts, duration, size, hash
        let f: Vec<&str> = l.split(',').map(str::trim).collect();
        let (dts, pts): (i64, i64) = (f[1].parse().unwrap(), f[2].parse().unwrap());
        Packet {
            composition_offset: pts - dts,
            size: f[4].parse().unwrap(),
            md5: f[5].to_owned(),
        }
    })
    .collect()
}

/// [`packets`] without composition offsets (size and MD5), for containers
/// whose time base differs from the source's.
pub fn packet_digests(dir: &Path, input: &str, map: &str) -> Vec<(u64, String)> {
    packets(dir, input, map)
        .into_iter()
        .map(|p| (p.size, p.md5))
        .collect()
}

/// Frames ffprobe decodes per stream type: (video, audio), one stream of
/// each kind at most.
pub fn count_frames(dir: &Path, input: &str) -> (usize, usize) {
    let out = run(Command::new("ffprobe").current_dir(dir).args(
        format!(
            "-v error -count_frames -show_entries stream=codec_type,nb_read_frames \
             -of csv=p=0 {input}"
        )
        .split_whitespace(),
    ));
    let (mut v, mut a) = (0, 0);
    // A TS input lists its streams twice (in the program, then alone):
    // one stream per kind here, so keep the largest count of each.
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let mut f = line.split(',');
        let (kind, n) = (f.next().unwrap(), f.next().unwrap().trim());
        let n: usize = n.parse().unwrap();
        match kind {
            "video" => v = n.max(v),
            "audio" => a = n.max(a),
            other => panic!("unexpected stream {other}"),
        }
    }
    (v, a)
}

/// The value of attribute `name` in one element's text (one line of a
/// manifest).
pub fn attr<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    let pat = format!(" {name}=\"");
    let from = element.find(&pat)? + pat.len();
    Some(&element[from..from + element[from..].find('"')?])
}

/// The text between the first `<tag ...>` of `xml` and its `</tag>`.
pub fn element_text<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = xml.find(&format!("<{tag}")).unwrap();
    let start = open + xml[open..].find('>').unwrap() + 1;
    let end = start + xml[start..].find(&format!("</{tag}>")).unwrap();
    &xml[start..end]
}

/// The text of a 200 response with one bytes part.
pub fn text(r: &Response) -> String {
    assert_eq!(r.status, 200, "{r:?}");
    let [BodyPart::Bytes(b)] = r.body.as_slice() else {
        panic!("one bytes part expected: {r:?}");
    };
    String::from_utf8(b.clone()).unwrap()
}

/// Compares `actual` with the golden file `name` in `dir` (a crate's
/// `tests/golden`); with `BLESS=1` in the environment, rewrites it.
pub fn golden(dir: &Path, name: &str, actual: &str) {
    let path = dir.join(name);
    if std::env::var_os("BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing {}: run with BLESS=1", path.display()));
    assert!(
        expected == actual,
        "{name} differs from its golden file (BLESS=1 rewrites it)\n--- expected\n{expected}\n--- actual\n{actual}"
    );
}

/// Deterministic filler bytes.
pub fn payload(seed: u64, len: u32) -> Vec<u8> {
    (0..u64::from(len))
        .map(|i| (seed.wrapping_mul(31).wrapping_add(i * 7) % 251) as u8)
        .collect()
}

/// 2 s of 25 fps video at 90 kHz: a keyframe, then P/B frames with signed
/// composition offsets; sizes vary with `k` and are multiplied by `scale`.
pub fn video_fragment(k: u64, scale: u32) -> Vec<SampleEntry> {
    (0..50u32)
        .map(|i| SampleEntry {
            duration: 3600,
            size: scale
                * if i == 0 {
                    4000
                } else {
                    400 + (i * 37 + k as u32) % 300
                },
            composition_offset: (i % 3) as i32 * 3600 - 3600,
            keyframe: i == 0,
        })
        .collect()
}

/// First AAC frame of fragment `k` (1024-sample frames at 48 kHz cut on
/// the 2 s grid).
pub fn audio_frame_at(k: u64) -> u64 {
    (k * 96_000).div_ceil(1024)
}

/// The AAC frames of fragment `k` (see [`audio_frame_at`]).
pub fn audio_fragment(k: u64) -> Vec<SampleEntry> {
    let n = audio_frame_at(k + 1) - audio_frame_at(k);
    (0..n)
        .map(|i| SampleEntry {
            duration: 1024,
            size: 300 + ((i + k) % 50) as u32,
            composition_offset: 0,
            keyframe: true,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_fragments_tile_the_grid() {
        let audio: u64 = (0..10)
            .flat_map(audio_fragment)
            .map(|s| u64::from(s.duration))
            .sum();
        assert_eq!(audio, audio_frame_at(10) * 1024);
        let v = video_fragment(3, 2);
        assert_eq!(v.len(), 50);
        assert_eq!(v[0].size, 8000);
        assert!(v[0].keyframe && !v[1].keyframe);
        assert_eq!(payload(1, 3), vec![31, 38, 45]);
    }

    #[test]
    fn reads_attributes_and_texts() {
        let line = "<S t=\"10\" d=\"5\"/>";
        assert_eq!(attr(line, "t"), Some("10"));
        assert_eq!(attr(line, "d"), Some("5"));
        assert_eq!(attr(line, "r"), None);
        assert_eq!(element_text("<a><b x=\"1\">hi</b></a>", "b"), "hi");
        let r = Response::ok(
            "text/plain",
            crate::plugin::CachePolicy::NoStore,
            b"hi".to_vec(),
        );
        assert_eq!(text(&r), "hi");
    }
}
