//! Interop with a real player: ffmpeg encodes H.264 and AAC into
//! fragmented MP4, the SDK's box reader demuxes them into an in-memory
//! presentation, the packager serves it as HLS, and a crawler writes every
//! playlist and segment to a directory the way a player would fetch them.
//! Then ffprobe and ffmpeg must read it back without a single error, and
//! every packet must come out byte-identical to what ffmpeg encoded.
//!
//! Fails when `ffmpeg` is not installed (`scripts/test.sh` installs it).

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice_plugin_hls::Hls;
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
    let r = Hls::handle(&req, view);
    assert_eq!(r.status, 200, "{path}: {r:?}");
    r
}

/// Fetches `path` (below the manifest root) and writes it under `root`.
fn fetch(view: &MemoryView, format: &str, root: &Path, path: &str, file: &str) -> Vec<u8> {
    let body = view
        .assemble(&get(view, format, path))
        .expect("references resolve");
    let dest = root.join(file);
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::write(&dest, &body).unwrap();
    body
}

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
    let master = fetch(
        view,
        format,
        root,
        &format!("Manifest(format={format})"),
        "master.m3u8",
    );
    let mut files = 1;
    for media in uris(std::str::from_utf8(&master).unwrap()) {
        let body = fetch(view, format, root, &media, &media);
        files += 1;
        let dir = &media[..media.rfind('/').unwrap() + 1];
        for uri in uris(std::str::from_utf8(&body).unwrap()) {
            let path = format!("{dir}{uri}");
            fetch(view, format, root, &path, &path);
            files += 1;
        }
    }
    files
}

/// Per packet of one stream, by stream copy (no decoding): composition
/// offset (pts - dts), size and MD5 of the data.
fn packets(dir: &Path, input: &str, map: &str) -> Vec<(i64, u64, String)> {
    run(ffmpeg(dir)
        .args(["-i", input, "-map", map])
        .args("-c copy -f framemd5 -".split_whitespace()))
    .lines()
    .filter(|l| !l.starts_with('#'))
    .map(|l| {
        // stream, dts, pts, duration, size, hash
        let f: Vec<&str> = l.split(',').map(str::trim).collect();
        let (dts, pts): (i64, i64) = (f[1].parse().unwrap(), f[2].parse().unwrap());
        (pts - dts, f[4].parse().unwrap(), f[5].to_owned())
    })
    .collect()
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

#[test]
fn ffmpeg_plays_the_hls_output() {
    assert!(
        have_ffmpeg(),
        "ffmpeg/ffprobe not installed: run ./scripts/test.sh, which installs them"
    );
    let dir: PathBuf =
        std::env::temp_dir().join(format!("sluice-hls-ffmpeg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let (video, audio) = encode(&dir);

    let mut view = MemoryView::new(PresentationState::Ended, 2000, Some(1_709_251_200_000));
    for d in [&video, &audio] {
        view.add_track(d.track.clone());
        for (start, samples, data) in &d.fragments {
            view.push(d.track.id, *start, samples.clone(), data.clone(), false);
        }
    }
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

/// The clip as a presentation with 2 s fragments.
fn presentation(video: &Demuxed, audio: &Demuxed, state: PresentationState) -> MemoryView {
    let mut view = MemoryView::new(state, 2000, Some(1_709_251_200_000));
    for d in [video, audio] {
        view.add_track(d.track.clone());
        for (start, samples, data) in &d.fragments {
            view.push(d.track.id, *start, samples.clone(), data.clone(), false);
        }
    }
    view
}

/// Frames ffprobe decodes per stream type: (video, audio), one stream
/// of each kind at most.
fn count_frames(dir: &Path, input: &str) -> (usize, usize) {
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

#[test]
fn ffmpeg_plays_the_ts_hls_output() {
    assert!(
        have_ffmpeg(),
        "ffmpeg/ffprobe not installed: run ./scripts/test.sh, which installs them"
    );
    let dir: PathBuf = std::env::temp_dir().join(format!("sluice-hls-aapl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (video, audio) = encode(&dir);
    let view = presentation(&video, &audio, PresentationState::Ended);

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
    let video_frames: usize = video.fragments.iter().map(|(_, s, _)| s.len()).sum();
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
        assert_eq!(s.0, g.0, "composition offset");
    }

    // The audio track's own audio-only playlist plays as well.
    let alone = "m3u8-aapl/t2/index.m3u8";
    let body = fetch(&view, "m3u8-aapl", &hls, alone, alone);
    for uri in uris(std::str::from_utf8(&body).unwrap()) {
        let path = format!("m3u8-aapl/t2/{uri}");
        fetch(&view, "m3u8-aapl", &hls, &path, &path);
    }
    run(ffmpeg(&hls).args(["-xerror", "-i", alone, "-f", "null", "-"]));
    let all_audio: usize = audio.fragments.iter().map(|(_, s, _)| s.len()).sum();
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
