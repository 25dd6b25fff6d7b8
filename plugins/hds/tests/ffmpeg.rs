//! Interop with a real decoder: ffmpeg encodes H.264 (with B-frames) and
//! AAC into fragmented MP4, the SDK's box reader demuxes them into an
//! in-memory presentation with 2 s fragments, the packager serves it as
//! HDS, and the test downloads it the way yt-dlp's HDS downloader does:
//! read the F4M, decode the inline bootstrap, fetch `Seg1-Frag{N}` for
//! every fragment the bootstrap lists, and write an FLV header, the
//! `onMetaData` tag from the manifest and each fragment's `mdat` payload.
//! Then ffmpeg must decode that FLV without a single error, ffprobe must
//! count every video and audio frame, and every packet must come out
//! byte-identical to what ffmpeg encoded.
//!
//! Fails when `ffmpeg` is not installed (`scripts/test.sh` installs it).

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice_plugin_hds::Hds;
use sluice_sdk::bmff::{BmffBox, Moof, Moov, Reader, SampleDescription};
use sluice_sdk::flv::{self, FileHeader, TagType};
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

/// Encodes the test clip in `dir` and demuxes it: video track 1, audio
/// track 2.
fn encode(dir: &Path) -> (Demuxed, Demuxed) {
    // 25 fps H.264 with B-frames and a keyframe every 2 s; AAC cut in 2 s
    // fragments. Both fragmented, one track per file.
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
    let video = demux(&std::fs::read(dir.join("video.mp4")).unwrap(), 1);
    let audio = demux(&std::fs::read(dir.join("audio.mp4")).unwrap(), 2);
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

fn get(view: &MemoryView, path: &str) -> Response {
    let req = Request {
        format: "f4m-f4f".into(),
        path: path.into(),
        ..Request::default()
    };
    let r = Hds::handle(&req, view);
    assert_eq!(r.status, 200, "{path}: {r:?}");
    r
}

/// The text of the first `<tag ...>BODY</tag>` element in `xml`.
fn element<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = xml.find(&format!("<{tag}")).unwrap();
    let start = open + xml[open..].find('>').unwrap() + 1;
    let end = start + xml[start..].find(&format!("</{tag}>")).unwrap();
    &xml[start..end]
}

/// The value of `name="..."` in the first `<tag ...>` of `xml`.
fn attribute<'a>(xml: &'a str, tag: &str, name: &str) -> &'a str {
    let open = xml.find(&format!("<{tag} ")).unwrap();
    let end = open + xml[open..].find('>').unwrap();
    let at = open + xml[open..end].find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
    &xml[at..at + xml[at..].find('"').unwrap()]
}

fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let mut out = Vec::new();
    for chunk in s.trim().as_bytes().chunks(4) {
        let pad = chunk.iter().filter(|&&c| c == b'=').count();
        let n = chunk
            .iter()
            .take(4 - pad)
            .fold(0u32, |n, &c| (n << 6) | val(c))
            << (6 * pad);
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    out
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap())
}

/// The fragment numbers a bootstrap lists, read as yt-dlp's
/// `build_fragments_list` reads them: the afrt's first number, then as
/// many as the asrt's one segment holds.
fn fragment_numbers(abst: &[u8]) -> Vec<u32> {
    assert_eq!(&abst[4..8], b"abst");
    // Header: FullBox 4, version 4, flags 1, timescale 4, times 16, then
    // five empty strings/counts (no servers, qualities, DRM, metadata).
    let mut p = 8 + 4 + 4 + 1 + 4 + 16;
    assert_eq!(&abst[p..p + 5], [0, 0, 0, 0, 0]);
    p += 5;
    assert_eq!(abst[p], 1);
    p += 1;
    let asrt_size = be32(&abst[p..]) as usize;
    assert_eq!(&abst[p + 4..p + 8], b"asrt");
    let asrt = &abst[p + 8..p + asrt_size];
    assert_eq!(asrt[4], 0);
    assert_eq!(be32(&asrt[5..]), 1);
    let count = be32(&asrt[13..]);
    p += asrt_size;
    assert_eq!(abst[p], 1);
    p += 1;
    assert_eq!(&abst[p + 4..p + 8], b"afrt");
    let afrt = &abst[p + 8..];
    // FullBox 4, timescale 4, qualities 1, entry count 4, first entry.
    let first = be32(&afrt[13..]);
    (first..first + count).collect()
}

/// The FLV yt-dlp would write: header, `onMetaData`, each fragment's
/// `mdat` payload.
fn download(view: &MemoryView) -> (Vec<u8>, usize) {
    let xml = String::from_utf8(
        view.assemble(&get(view, "Manifest(format=f4m-f4f)"))
            .unwrap(),
    )
    .unwrap();
    let abst = decode_base64(element(&xml, "bootstrapInfo"));
    let base = attribute(&xml, "media", "url");
    let metadata = decode_base64(element(&xml, "metadata"));
    let mut out = Vec::new();
    FileHeader {
        version: 1,
        has_audio: true,
        has_video: true,
        data_offset: 9,
    }
    .write(&mut out);
    flv::write_tag(&mut out, TagType::Script, 0, &metadata).unwrap();
    let numbers = fragment_numbers(&abst);
    for n in &numbers {
        let frag = view
            .assemble(&get(view, &format!("{base}Seg1-Frag{n}")))
            .unwrap();
        // Boxes up to the mdat; its payload is the FLV tags.
        let mut p = 0;
        loop {
            let size = be32(&frag[p..]) as usize;
            if &frag[p + 4..p + 8] == b"mdat" {
                out.extend_from_slice(&frag[p + 8..p + size]);
                break;
            }
            p += size;
        }
    }
    (out, numbers.len())
}

/// Writes the manifest (as `manifest.f4m`), bootstrap and fragments of
/// track 1 below `root`, as a static HTTP server would serve them.
fn write_site(view: &MemoryView, root: &Path, fragments: usize) {
    let put = |path: &str, name: &str| {
        let file = root.join(name);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, view.assemble(&get(view, path)).unwrap()).unwrap();
    };
    put("Manifest(format=f4m-f4f)", "manifest.f4m");
    put("f4m-f4f/t1/bootstrap.abst", "f4m-f4f/t1/bootstrap.abst");
    for n in 1..=fragments {
        let path = format!("f4m-f4f/t1/Seg1-Frag{n}");
        put(&path, &path);
    }
}

/// Per packet of one stream, by stream copy (no decoding): size and MD5.
fn packets(dir: &Path, input: &str, map: &str) -> Vec<(u64, String)> {
    run(ffmpeg(dir)
        .args(["-i", input, "-map", map])
        .args("-c copy -f framemd5 -".split_whitespace()))
    .lines()
    .filter(|l| !l.starts_with('#'))
    .map(|l| {
        // stream, dts, pts, duration, size, hash
        let f: Vec<&str> = l.split(',').map(str::trim).collect();
        (f[4].parse().unwrap(), f[5].to_owned())
    })
    .collect()
}

/// Frames ffprobe decodes per stream type: (video, audio).
fn count_frames(dir: &Path, input: &str) -> (usize, usize) {
    let out = run(Command::new("ffprobe").current_dir(dir).args(
        format!(
            "-v error -count_frames -show_entries stream=codec_type,nb_read_frames \
             -of csv=p=0 {input}"
        )
        .split_whitespace(),
    ));
    let (mut v, mut a) = (0, 0);
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

#[test]
fn ffmpeg_decodes_the_hds_download() {
    assert!(
        have_ffmpeg(),
        "ffmpeg/ffprobe not installed: run ./scripts/test.sh, which installs them"
    );
    let dir: PathBuf =
        std::env::temp_dir().join(format!("sluice-hds-ffmpeg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (video, audio) = encode(&dir);

    let mut view = MemoryView::new(PresentationState::Ended, 2000, Some(1_709_251_200_000));
    for d in [&video, &audio] {
        view.add_track(d.track.clone());
        for (start, samples, data) in &d.fragments {
            view.push(d.track.id, *start, samples.clone(), data.clone(), false);
        }
    }
    let (flv, fragments) = download(&view);
    if let Some(site) = std::env::var_os("HDS_SITE") {
        // For a manual check with a real HDS client over HTTP (see the
        // crate README notes in the report): every resource as a file.
        write_site(&view, Path::new(&site), fragments);
        let mut live = view.clone();
        live.info.state = PresentationState::Live;
        write_site(&live, &Path::new(&site).join("live"), fragments);
    }
    assert_eq!(fragments, video.fragments.len());
    std::fs::write(dir.join("out.flv"), &flv).unwrap();

    // ffprobe sees both streams as encoded.
    let probe = run(Command::new("ffprobe").current_dir(&dir).args(
        "-v error -show_entries stream=codec_name,width,height,sample_rate,channels \
         -of compact=p=0:nk=1 out.flv"
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

    // A full decode, stopping at the first error.
    run(ffmpeg(&dir).args(
        "-xerror -err_detect crccheck+bitstream+buffer -i out.flv -map 0 -f null -"
            .split_whitespace(),
    ));

    // Every frame decodes.
    let video_samples: usize = video.fragments.iter().map(|f| f.1.len()).sum();
    let audio_samples: usize = audio.fragments.iter().map(|f| f.1.len()).sum();
    assert_eq!(video_samples, 25 * SECONDS as usize);
    assert_eq!(
        count_frames(&dir, "out.flv"),
        (video_samples, audio_samples)
    );

    // Every packet arrives intact and in order.
    for (source, map) in [("video.mp4", "0:v:0"), ("audio.mp4", "0:a:0")] {
        let expected = packets(&dir, source, "0");
        let got = packets(&dir, "out.flv", map);
        assert_eq!(expected.len(), got.len(), "{source}: packet count");
        assert!(expected == got, "{source}: packets differ");
    }

    // Presentation times survive: the FLV's video pts (ms) match the
    // source's, so B-frame composition offsets are carried.
    let pts = |input: &str| -> Vec<i64> {
        let mut v: Vec<i64> = run(Command::new("ffprobe").current_dir(&dir).args(
            format!(
                "-v error -select_streams v:0 -show_entries packet=pts_time -of csv=p=0 {input}"
            )
            .split_whitespace(),
        ))
        .lines()
        .filter(|l| !l.trim().is_empty())
        // Packets after a repeated sequence header carry side data: a
        // trailing empty field.
        .map(|l| l.split(',').next().unwrap().trim().parse::<f64>().unwrap())
        .map(|t| (t * 1000.0).round() as i64)
        .collect();
        v.sort_unstable();
        v
    };
    let (src, got) = (pts("video.mp4"), pts("out.flv"));
    assert_eq!(src.len(), got.len());
    // Both relative to the first frame (the MP4 may carry an edit list).
    assert!(
        src.iter()
            .zip(&got)
            .all(|(a, b)| (a - src[0]) == (b - got[0])),
        "presentation times differ"
    );

    std::fs::remove_dir_all(&dir).unwrap();
}
