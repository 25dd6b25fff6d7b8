//! Interop with real decoders: ffmpeg encodes H.264 (with B-frames) and
//! AAC into fragmented MP4 cut every 2 s, the SDK's box reader demuxes them
//! into an in-memory presentation, the packager serves it as a Smooth VOD
//! presentation, and the manifest and every fragment it names are written
//! to a directory under their resolved URL names. Then:
//!
//! - GStreamer's `mssdemux` plays the manifest from that directory and
//!   decodes every video frame and audio buffer (skipped, with a note on
//!   stderr, when `gst-launch-1.0` or its `mssdemux` element is missing);
//! - for each quality level, an init segment built only from the manifest
//!   (`CodecPrivateData`, `TimeScale`, sizes) is put before its fragments,
//!   and ffmpeg decodes the result without error, every packet
//!   byte-identical to what ffmpeg encoded.
//!
//! Fails when `ffmpeg` is not installed (`scripts/test.sh` installs it).

#![allow(clippy::unwrap_used)]

use std::process::Command;

use sluice_plugin_smooth::Smooth;
use sluice_sdk::bmff::{self, FourCC};
use sluice_sdk::h264::{AvcDecoderConfig, annex_b_units};
use sluice_sdk::plugin::{MemoryView, PresentationState, TrackInfo, TrackKind};
use sluice_sdk::testing::{
    SECONDS, attr, encode, ffmpeg, get_body, packet_digests, presentation, run, run_raw,
};

/// The body of `path`, which must be served.
fn get(view: &MemoryView, path: &str) -> Vec<u8> {
    get_body::<Smooth>(view, "mss", path)
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// One quality level as a client sees it in the manifest.
#[derive(Debug)]
struct Level {
    kind: String,
    timescale: u32,
    line: String,
    urls: Vec<String>,
}

/// Reads the manifest the way a client does: per StreamIndex, its
/// quality levels and the fragment URLs its `c` list and `Url` imply.
fn levels(manifest: &str) -> Vec<Level> {
    let mut out = Vec::new();
    let (mut kind, mut url, mut timescale) = (String::new(), String::new(), 0);
    let mut here: Vec<Level> = Vec::new();
    let mut t = 0u64;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with("<StreamIndex ") {
            kind = attr(line, "Type").unwrap().to_owned();
            url = attr(line, "Url").unwrap().to_owned();
            timescale = attr(line, "TimeScale").unwrap().parse().unwrap();
        } else if line.starts_with("<QualityLevel ") {
            here.push(Level {
                kind: kind.clone(),
                timescale,
                line: line.to_owned(),
                urls: Vec::new(),
            });
        } else if line.starts_with("<c ") {
            if let Some(x) = attr(line, "t") {
                t = x.parse().unwrap();
            }
            let d: u64 = attr(line, "d").unwrap().parse().unwrap();
            let r: u64 = attr(line, "r").map_or(1, |r| r.parse().unwrap());
            for _ in 0..r {
                for l in &mut here {
                    let bitrate = attr(&l.line, "Bitrate").unwrap();
                    l.urls.push(
                        url.replace("{bitrate}", bitrate)
                            .replace("{start time}", &t.to_string()),
                    );
                }
                t += d;
            }
        } else if line.starts_with("</StreamIndex") {
            out.append(&mut here);
        }
    }
    out
}

/// An init segment for one quality level, from the manifest alone.
fn init_from_manifest(level: &Level) -> Vec<u8> {
    let private = unhex(attr(&level.line, "CodecPrivateData").unwrap());
    let num = |k: &str| -> u32 { attr(&level.line, k).unwrap().parse().unwrap() };
    let track = if level.kind == "video" {
        let (mut sps, mut pps) = (Vec::new(), Vec::new());
        for nal in annex_b_units(&private) {
            match nal[0] & 0x1f {
                7 => sps.push(nal.to_vec()),
                8 => pps.push(nal.to_vec()),
                other => panic!("NAL type {other} in CodecPrivateData"),
            }
        }
        TrackInfo {
            fourcc: "avc1".into(),
            codec_private: AvcDecoderConfig::from_parameter_sets(sps, pps)
                .unwrap()
                .to_bytes(),
            width: num("MaxWidth"),
            height: num("MaxHeight"),
            ..TrackInfo::new(1, TrackKind::Video, level.timescale)
        }
    } else {
        assert_eq!(attr(&level.line, "FourCC"), Some("AACL"));
        TrackInfo {
            fourcc: "mp4a".into(),
            codec_private: private,
            sample_rate: num("SamplingRate"),
            channels: num("Channels") as u16,
            ..TrackInfo::new(1, TrackKind::Audio, level.timescale)
        }
    };
    bmff::init_segment(
        &[&track],
        FourCC::new(b"iso6"),
        &[FourCC::new(b"iso6"), FourCC::new(b"piff")],
    )
    .unwrap()
}

/// Whether GStreamer with the Smooth demuxer can be run.
fn have_gstreamer() -> bool {
    Command::new("gst-inspect-1.0")
        .arg("mssdemux")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn real_decoders_play_the_smooth_output() {
    let dir = std::env::temp_dir().join(format!("sluice-mss-decoders-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let (mut video, mut audio) = encode(&dir, 0, 1);
    video.track.bitrate = 400_000;
    audio.track.bitrate = 96_000;
    let view = presentation(&[&video, &audio], PresentationState::Ended);

    // Write the presentation as a client would fetch it.
    let mss = dir.join("mss");
    std::fs::create_dir_all(&mss).unwrap();
    let manifest = String::from_utf8(get(&view, "Manifest")).unwrap();
    std::fs::write(mss.join("Manifest"), &manifest).unwrap();
    let parsed = levels(&manifest);
    assert_eq!(parsed.len(), 2, "{manifest}");
    for level in &parsed {
        assert_eq!(
            level.urls.len(),
            if level.kind == "video" {
                video.fragments.len()
            } else {
                audio.fragments.len()
            }
        );
        for url in &level.urls {
            let dest = mss.join(url);
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::write(dest, get(&view, url)).unwrap();
        }
    }

    let audio_packets = audio.sample_count();

    // ffmpeg: each quality level re-muxed behind an init built from the
    // manifest decodes cleanly and every packet is the one encoded.
    for (level, source) in parsed.iter().zip(["video.mp4", "audio.mp4"]) {
        let mut file = init_from_manifest(level);
        for url in &level.urls {
            file.extend(std::fs::read(mss.join(url)).unwrap());
        }
        let name = format!("{}.mp4", level.kind);
        std::fs::write(mss.join(&name), file).unwrap();
        run(ffmpeg(&mss).args(
            format!("-xerror -err_detect crccheck+bitstream+buffer -i {name} -map 0 -f null -")
                .split_whitespace(),
        ));
        let expected = packet_digests(&dir, source, "0");
        let got = packet_digests(&mss, &name, "0");
        assert!(expected.len() >= 200, "{source}: {}", expected.len());
        assert_eq!(expected.len(), got.len(), "{source}: packet count");
        assert!(expected == got, "{source}: packets differ");
    }

    // Live fragments (with tfrf boxes) decode the same way.
    let mut live = view.clone();
    live.info.state = PresentationState::Live;
    let live_manifest = String::from_utf8(get(&live, "Manifest")).unwrap();
    assert!(live_manifest.contains("IsLive=\"TRUE\""));
    for level in &levels(&live_manifest) {
        let mut file = init_from_manifest(level);
        for url in &level.urls {
            file.extend(get(&live, url));
        }
        let name = format!("live-{}.mp4", level.kind);
        std::fs::write(mss.join(&name), file).unwrap();
        let n =
            run(ffmpeg(&mss)
                .args(format!("-xerror -i {name} -map 0 -f framemd5 -").split_whitespace()))
            .lines()
            .filter(|l| !l.starts_with('#'))
            .count();
        assert!(n >= 200, "{name}: {n} frames");
    }

    // GStreamer's Smooth demuxer plays the manifest from the directory.
    if have_gstreamer() {
        let (ok, out, err) = run_raw(
            Command::new("gst-launch-1.0").current_dir(&mss).args(
                "-q filesrc location=Manifest ! mssdemux name=d \
             d.video_00 ! queue ! qtdemux ! h264parse ! avdec_h264 ! videoconvert \
             ! y4menc ! filesink location=gst-video.y4m \
             d.audio_00 ! queue ! qtdemux ! aacparse ! avdec_aac ! audioconvert \
             ! audio/x-raw,format=S16LE,channels=2 ! filesink location=gst-audio.raw"
                    .split_whitespace(),
            ),
        );
        assert!(
            ok && !err.contains("ERROR"),
            "gst-launch failed:\n{err}\n{out}"
        );
        // Decoded pictures: one FRAME header each in the YUV4MPEG stream.
        let y4m = std::fs::read(mss.join("gst-video.y4m")).unwrap();
        let frames = y4m.windows(6).filter(|w| w == b"FRAME\n").count();
        // Smooth has no edit list: the B-frame delay (2 frames) shifts
        // presentation times, and mssdemux may clip the frames that then
        // fall past the manifest's Duration.
        let all = 25 * SECONDS as usize;
        eprintln!("GStreamer mssdemux decoded {frames} pictures");
        assert!(
            frames + 2 >= all && frames <= all,
            "{frames} of {all} frames"
        );
        // Decoded audio: SECONDS of 48 kHz stereo, give or take the AAC
        // priming and the last frame.
        let samples = std::fs::metadata(mss.join("gst-audio.raw")).unwrap().len() / 4;
        let want = 48_000 * u64::from(SECONDS);
        eprintln!("GStreamer mssdemux decoded {samples} audio samples");
        assert!(
            samples + 2 * 1024 >= want && samples <= want + 2 * 1024,
            "{samples} of {want} audio samples (from {audio_packets} packets)"
        );
    } else {
        eprintln!("GStreamer mssdemux not installed: skipped the GStreamer check");
    }

    std::fs::remove_dir_all(&dir).unwrap();
}
