//! The packager against real H.264 and a real decoder: ffmpeg encodes a
//! 6 s clip with a keyframe every second, the SDK's box reader demuxes it
//! into an in-memory presentation of 2 s fragments (two keyframes each),
//! and every I-frame byte range the playlist names, cut out of the served
//! segment and put after the init segment, must decode as exactly one
//! picture; every whole segment must decode as all its frames, and carry
//! every packet byte-identical to what ffmpeg encoded.
//!
//! Fails when `ffmpeg` is not installed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use sluice_example_hls_iframes::HlsIFrames;
use sluice_sdk::plugin::{
    BodyPart, CachePolicy, MemoryView, Packager, PresentationState, Request, SampleEntry,
    TrackInfo, TrackKind,
};
use sluice_sdk::testing::{
    ASC, Demuxed, EPOCH_MS, audio_fragment, demux, ffmpeg, get, get_body, have_ffmpeg, packets,
    payload, run, run_raw, text,
};

const FORMAT: &str = "m3u8-iframes";
const MULTIVARIANT: &str = "Manifest(format=m3u8-iframes)";
const VIDEO: u32 = 1;
const AUDIO: u32 = 2;
const SUBTITLES: u32 = 3;
/// Clip length, keyframe interval and fragment length.
const SECONDS: u64 = 6;
const FPS: u64 = 25;
const FRAGMENT_S: u64 = 2;

/// A scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("sluice-hls-iframes-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Encodes the clip in `dir` (`video.mp4`: one `moof` per 1 s GOP) and
/// demuxes it with the SDK's reader into 2 s fragments.
fn encode(dir: &Path) -> Demuxed {
    run(ffmpeg(dir).args(
        format!(
            "-f lavfi -i testsrc2=size=320x240:rate={FPS} -t {SECONDS} \
             -c:v libx264 -preset veryfast -g {FPS} -keyint_min {FPS} -sc_threshold 0 -bf 2 \
             -pix_fmt yuv420p -video_track_timescale 90000 \
             -movflags frag_keyframe+empty_moov+default_base_moof video.mp4"
        )
        .split_whitespace(),
    ));
    let gops = demux(&std::fs::read(dir.join("video.mp4")).unwrap(), VIDEO);
    assert_eq!(gops.fragments.len() as u64, SECONDS, "one moof per GOP");
    // Two GOPs per fragment, as the host's segmenter would cut them on a
    // 2 s grid.
    let fragments = gops
        .fragments
        .chunks(FRAGMENT_S as usize)
        .map(|pair| {
            let (mut samples, mut data) = (Vec::new(), Vec::new());
            for (_, s, d) in pair {
                samples.extend_from_slice(s);
                data.extend_from_slice(d);
            }
            (pair[0].0, samples, data)
        })
        .collect::<Vec<_>>();
    let video = Demuxed {
        track: gops.track,
        fragments,
    };
    for (_, samples, _) in &video.fragments {
        assert_eq!(samples.len() as u64, FPS * FRAGMENT_S);
        assert_eq!(samples.iter().filter(|s| s.keyframe).count(), 2);
    }
    assert!(
        video.fragments[0]
            .1
            .iter()
            .any(|s| s.composition_offset != 0),
        "B-frames expected"
    );
    video
}

/// The clip as a presentation in `state`, beside an audio and a subtitle
/// track that must not be listed.
fn presentation(video: &Demuxed, state: PresentationState) -> MemoryView {
    let mut view = MemoryView::new(state, (FRAGMENT_S * 1000) as u32, Some(EPOCH_MS));
    view.add_track(video.track.clone());
    for (start, samples, data) in &video.fragments {
        view.push(VIDEO, *start, samples.clone(), data.clone(), false);
    }
    view.add_track(TrackInfo {
        fourcc: "mp4a".into(),
        codec_private: ASC.to_vec(),
        sample_rate: 48_000,
        channels: 2,
        ..TrackInfo::new(AUDIO, TrackKind::Audio, 48_000)
    });
    view.add_track(TrackInfo {
        fourcc: "wvtt".into(),
        ..TrackInfo::new(SUBTITLES, TrackKind::Subtitle, 1000)
    });
    for k in 0..SECONDS / FRAGMENT_S {
        let samples = audio_fragment(k);
        let size = samples.iter().map(|s| s.size).sum();
        let start = sluice_sdk::testing::audio_frame_at(k) * 1024;
        view.push(AUDIO, start, samples, payload(k, size), false);
        let cue = SampleEntry {
            duration: 2000,
            size: 4,
            composition_offset: 0,
            keyframe: true,
        };
        view.push(SUBTITLES, k * 2000, vec![cue], vec![0; 4], false);
    }
    view
}

/// An I-frame playlist entry: segment URI and byte range.
#[derive(Debug)]
struct Entry {
    duration_ms: u64,
    uri: String,
    length: usize,
    offset: usize,
}

/// The entries of an I-frame playlist, checking the shape around them.
fn entries(playlist: &str) -> Vec<Entry> {
    let lines: Vec<&str> = playlist.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(extinf) = line.strip_prefix("#EXTINF:") else {
            continue;
        };
        let (s, ms) = extinf.trim_end_matches(',').split_once('.').unwrap();
        let range = lines[i + 1].strip_prefix("#EXT-X-BYTERANGE:").unwrap();
        let (length, offset) = range.split_once('@').unwrap();
        out.push(Entry {
            duration_ms: s.parse::<u64>().unwrap() * 1000 + ms.parse::<u64>().unwrap(),
            uri: lines[i + 2].to_owned(),
            length: length.parse().unwrap(),
            offset: offset.parse().unwrap(),
        });
    }
    out
}

/// The value of attribute `name` in an attribute list.
fn attribute<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    let rest = &line[at..];
    Some(match rest.strip_prefix('"') {
        Some(quoted) => &quoted[..quoted.find('"')?],
        None => rest.split(',').next()?,
    })
}

/// Video frames ffprobe decodes from `file` in `dir`, and what it printed
/// on stderr.
fn decoded_frames(dir: &Path, file: &str) -> (usize, String) {
    let (ok, out, err) = run_raw(
        Command::new("ffprobe").current_dir(dir).args(
            format!(
                "-v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames \
             -of csv=p=0 {file}"
            )
            .split_whitespace(),
        ),
    );
    assert!(ok, "ffprobe {file}: {err}");
    (out.trim().parse().unwrap(), err)
}

/// `key_frame` and `pict_type` of every frame ffprobe decodes from `file`.
fn frame_types(dir: &Path, file: &str) -> Vec<String> {
    let (ok, out, err) = run_raw(
        Command::new("ffprobe").current_dir(dir).args(
            format!(
                "-v error -select_streams v:0 -show_entries frame=key_frame,pict_type \
             -of csv=p=0 {file}"
            )
            .split_whitespace(),
        ),
    );
    assert!(ok, "ffprobe {file}: {err}");
    out.lines()
        // ffprobe may end a line with an empty side-data column.
        .map(|l| l.trim().trim_end_matches(','))
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_iframe_range_decodes_as_one_picture() {
    assert!(have_ffmpeg(), "ffmpeg/ffprobe not installed");
    let dir = scratch("decode");
    let video = encode(&dir);
    let view = presentation(&video, PresentationState::Ended);

    let playlist = text(&get::<HlsIFrames>(
        &view,
        FORMAT,
        "m3u8-iframes/t1/iframes.m3u8",
    ));
    std::fs::write(dir.join("iframes.m3u8"), &playlist).unwrap();
    assert!(playlist.contains("#EXT-X-I-FRAMES-ONLY\n"), "{playlist}");
    assert!(playlist.contains("#EXT-X-MAP:URI=\"init.mp4\"\n"));
    assert!(playlist.contains("#EXT-X-MEDIA-SEQUENCE:0\n"));
    assert!(playlist.contains("#EXT-X-TARGETDURATION:2\n"));
    assert!(playlist.ends_with("#EXT-X-ENDLIST\n"));
    let entries = entries(&playlist);
    // One entry per 2 s fragment (the keyframe that begins it; the clip's
    // 1 s GOPs put a second keyframe in each), lasting the fragment.
    assert_eq!(entries.len() as u64, SECONDS / 2, "one entry per fragment");
    assert!(entries.iter().all(|e| e.duration_ms == 2000), "{entries:?}");

    let init = get_body::<HlsIFrames>(&view, FORMAT, "m3u8-iframes/t1/init.mp4");
    let mut whole = init.clone();
    let mut summary = Vec::new();
    for (k, (start, samples, data)) in video.fragments.iter().enumerate() {
        let uri = format!("{start}.m4s");
        let response = get::<HlsIFrames>(&view, FORMAT, &format!("m3u8-iframes/t1/{uri}"));
        assert_eq!(response.cache, CachePolicy::Immutable);
        // Sample data by reference: every payload byte named once, in
        // order, and nothing but headers written by the plugin.
        let (mut referenced, mut written) = (0u64, 0usize);
        for part in &response.body {
            match part {
                BodyPart::SampleData(r) => {
                    assert_eq!((r.track, r.start), (VIDEO, *start));
                    assert_eq!(u64::from(r.offset), referenced, "contiguous references");
                    referenced += u64::from(r.length);
                }
                BodyPart::Bytes(b) => written += b.len(),
            }
        }
        assert_eq!(referenced, data.len() as u64);
        assert!(written < 2048, "{written} bytes written for {uri}");
        let segment = view.assemble(&response).unwrap();
        whole.extend_from_slice(&segment);

        // The whole segment, after the init segment, plays every frame.
        let file = format!("segment-{k}.mp4");
        std::fs::write(dir.join(&file), [&init[..], &segment[..]].concat()).unwrap();
        let (frames, err) = decoded_frames(&dir, &file);
        assert!(err.trim().is_empty(), "{file}: {err}");
        assert_eq!(frames, samples.len(), "{file}");

        // Each of its I-frame entries decodes as one key picture.
        let mine: Vec<&Entry> = entries.iter().filter(|e| e.uri == uri).collect();
        assert_eq!(mine.len(), 1, "one entry for {uri}");
        for (j, e) in mine.iter().enumerate() {
            assert!(e.offset + e.length <= segment.len(), "{e:?} inside {uri}");
            let range = &segment[e.offset..e.offset + e.length];
            assert_eq!(&range[4..8], b"moof", "{e:?} starts at a moof");
            // The range ends exactly at the end of the keyframe: its last
            // bytes are the keyframe's last bytes.
            let key = samples
                .iter()
                .scan(0usize, |at, s| {
                    let from = *at;
                    *at += s.size as usize;
                    Some((s, from))
                })
                .filter(|(s, _)| s.keyframe)
                .nth(j)
                .map(|(s, from)| &data[from..from + s.size as usize])
                .unwrap();
            assert!(range.ends_with(key), "{e:?} ends with keyframe {j}");
            let file = format!("iframe-{k}-{j}.mp4");
            std::fs::write(dir.join(&file), [&init[..], range].concat()).unwrap();
            let (frames, err) = decoded_frames(&dir, &file);
            assert_eq!(frames, 1, "{file}: {err}");
            // The `trun` names the whole GOP and the range holds only its
            // keyframe: ffmpeg's demuxer notes that the rest is missing,
            // and nothing else.
            assert!(
                err.lines().all(|l| l.ends_with("partial file")),
                "{file}: {err}"
            );
            assert_eq!(frame_types(&dir, &file), ["1,I"], "{file}");
            summary.push(format!(
                "{uri} {}@{} ({} key bytes): 1 picture{}",
                e.length,
                e.offset,
                key.len(),
                if err.trim().is_empty() {
                    String::new()
                } else {
                    format!(" (ffprobe: {})", err.trim().replace('\n', " | "))
                }
            ));
        }
    }
    eprintln!("{playlist}");
    eprintln!("{}", summary.join("\n"));

    // All segments in order carry every packet as ffmpeg wrote it.
    std::fs::write(dir.join("whole.mp4"), &whole).unwrap();
    let expected = packets(&dir, "video.mp4", "0");
    let got = packets(&dir, "whole.mp4", "0");
    assert_eq!(expected.len() as u64, SECONDS * FPS);
    assert!(expected == got, "packets differ");
    let (frames, err) = decoded_frames(&dir, "whole.mp4");
    assert!(err.trim().is_empty(), "{err}");
    assert_eq!(frames as u64, SECONDS * FPS);

    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn multivariant_lists_the_video_track_only() {
    assert!(have_ffmpeg(), "ffmpeg/ffprobe not installed");
    let dir = scratch("multivariant");
    let video = encode(&dir);
    let view = presentation(&video, PresentationState::Ended);

    let master = text(&get::<HlsIFrames>(&view, FORMAT, MULTIVARIANT));
    eprintln!("{master}");
    let streams: Vec<&str> = master
        .lines()
        .filter(|l| l.starts_with("#EXT-X-I-FRAME-STREAM-INF:"))
        .collect();
    let [stream] = streams.as_slice() else {
        panic!("one I-frame stream expected:\n{master}");
    };
    assert!(!master.contains("#EXT-X-STREAM-INF"), "{master}");
    assert!(!master.contains("#EXT-X-MEDIA"), "{master}");
    assert_eq!(
        attribute(stream, "URI"),
        Some("m3u8-iframes/t1/iframes.m3u8")
    );
    assert_eq!(attribute(stream, "CODECS"), Some("avc1.64000d"));
    assert_eq!(attribute(stream, "RESOLUTION"), Some("320x240"));

    // BANDWIDTH is the peak of the I-frame ranges over their durations,
    // AVERAGE-BANDWIDTH their bytes over the window.
    let playlist = text(&get::<HlsIFrames>(
        &view,
        FORMAT,
        "m3u8-iframes/t1/iframes.m3u8",
    ));
    let entries = entries(&playlist);
    let bits = |e: &Entry| e.length as u64 * 8;
    let peak = entries
        .iter()
        .map(|e| (bits(e) * 1000).div_ceil(e.duration_ms))
        .max()
        .unwrap();
    let total: u64 = entries.iter().map(bits).sum();
    let bandwidth: u64 = attribute(stream, "BANDWIDTH").unwrap().parse().unwrap();
    let average: u64 = attribute(stream, "AVERAGE-BANDWIDTH")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(bandwidth, peak);
    assert_eq!(average, (total + SECONDS / 2) / SECONDS);
    assert!(bandwidth >= average);
    eprintln!("I-frames: {total} bits in {SECONDS} s, peak {bandwidth} bit/s");

    // The audio and subtitle tracks have no I-frame resources.
    for path in [
        "m3u8-iframes/t2/iframes.m3u8",
        "m3u8-iframes/t2/init.mp4",
        "m3u8-iframes/t2/0.m4s",
        "m3u8-iframes/t3/iframes.m3u8",
        "m3u8-iframes/t3/0.m4s",
    ] {
        let r = HlsIFrames::handle(&request(path), &view);
        assert_eq!(r.status, 404, "{path}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn request(path: &str) -> Request {
    Request {
        format: FORMAT.into(),
        path: path.into(),
        ..Request::default()
    }
}

#[test]
fn endlist_only_once_ended_and_live_windows_slide() {
    assert!(have_ffmpeg(), "ffmpeg/ffprobe not installed");
    let dir = scratch("live");
    let video = encode(&dir);

    let mut view = presentation(&video, PresentationState::Live);
    let live = get::<HlsIFrames>(&view, FORMAT, "m3u8-iframes/t1/iframes.m3u8");
    assert_eq!(live.cache, CachePolicy::MaxAge(1), "half a fragment");
    let text_live = text(&live);
    assert!(!text_live.contains("#EXT-X-ENDLIST"), "{text_live}");
    assert_eq!(entries(&text_live).len(), 3);
    let master = get::<HlsIFrames>(&view, FORMAT, MULTIVARIANT);
    assert_eq!(master.cache, CachePolicy::MaxAge(1));
    assert_eq!(
        get::<HlsIFrames>(&view, FORMAT, "m3u8-iframes/t1/init.mp4").cache,
        CachePolicy::Immutable
    );

    // The window slides past the first fragment: its entries go, and the
    // media sequence follows the first listed fragment's media time.
    view.trim_before_ms(2000);
    let slid = text(&get::<HlsIFrames>(
        &view,
        FORMAT,
        "m3u8-iframes/t1/iframes.m3u8",
    ));
    assert!(slid.contains("#EXT-X-MEDIA-SEQUENCE:1\n"), "{slid}");
    let e = entries(&slid);
    assert_eq!(e.len(), 2);
    assert_eq!(e[0].uri, "180000.m4s");
    // A fragment that slid out is gone.
    let gone = HlsIFrames::handle(&request("m3u8-iframes/t1/0.m4s"), &view);
    assert_eq!((gone.status, gone.cache), (404, CachePolicy::MaxAge(1)));

    view.info.state = PresentationState::Ended;
    let ended = get::<HlsIFrames>(&view, FORMAT, "m3u8-iframes/t1/iframes.m3u8");
    assert_eq!(ended.cache, CachePolicy::MaxAge(3600));
    assert!(text(&ended).ends_with("#EXT-X-ENDLIST\n"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn hostile_paths_get_404() {
    // Synthetic data suffices: none of these reaches a segment.
    let mut view = MemoryView::new(PresentationState::Live, 2000, None);
    view.add_track(TrackInfo {
        fourcc: "avc1".into(),
        codec_private: sluice_sdk::testing::AVCC.to_vec(),
        width: 320,
        height: 240,
        ..TrackInfo::new(VIDEO, TrackKind::Video, 90_000)
    });
    view.push(
        VIDEO,
        0,
        sluice_sdk::testing::video_fragment(0, 1),
        payload(
            0,
            sluice_sdk::testing::video_fragment(0, 1)
                .iter()
                .map(|s| s.size)
                .sum(),
        ),
        false,
    );
    let long = format!("m3u8-iframes/t1/{}.m4s", "1".repeat(100_000));
    for path in [
        "",
        "/",
        "Manifest",
        "Manifest(format=m3u8-cmaf)",
        "m3u8-iframes",
        "m3u8-iframes/",
        "m3u8-iframes/1",
        "m3u8-iframes/t1/",
        "m3u8-iframes/t1/index.m3u8",
        "m3u8-iframes/1/iframes.m3u8",
        "m3u8-iframes/t01/iframes.m3u8",
        "m3u8-iframes/t-1/iframes.m3u8",
        "m3u8-iframes/t99/iframes.m3u8",
        "m3u8-iframes/t99/init.mp4",
        "m3u8-iframes/t4294967296/iframes.m3u8",
        "m3u8-iframes/t1/1.m4s",
        "m3u8-iframes/t1/00.m4s",
        "m3u8-iframes/t1/18446744073709551616.m4s",
        "m3u8-iframes/t1/0.m4s/x",
        "m3u8-iframes/t1/../../etc/passwd",
        "m3u8-iframes/t1/%30.m4s",
        "m3u8-iframes/t1/0.m4s\n#EXT-X-ENDLIST",
        &long,
    ] {
        let r = HlsIFrames::handle(&request(path), &view);
        assert_eq!(
            (r.status, r.cache),
            (404, CachePolicy::MaxAge(1)),
            "{path:?}"
        );
    }
    // The right path in another format's request is not ours either.
    let mut other = request(MULTIVARIANT);
    other.format = "m3u8-cmaf".into();
    assert_eq!(HlsIFrames::handle(&other, &view).status, 404);
    // The same view serves the real paths.
    for path in [
        MULTIVARIANT,
        "m3u8-iframes/t1/iframes.m3u8",
        "m3u8-iframes/t1/init.mp4",
        "m3u8-iframes/t1/0.m4s",
    ] {
        get::<HlsIFrames>(&view, FORMAT, path);
    }
    // Nothing to list yet: 404, not an empty playlist.
    let empty = MemoryView::new(PresentationState::Live, 2000, None);
    assert_eq!(
        HlsIFrames::handle(&request(MULTIVARIANT), &empty).status,
        404
    );
}
