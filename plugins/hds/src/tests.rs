//! Packager tests over synthetic presentations: golden F4M manifests in
//! `tests/golden/` (rewrite them with `BLESS=1`), bootstraps parsed back
//! with a small reader written here, and fragments walked tag by tag.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use sluice_sdk::amf0::{self, Value};
use sluice_sdk::flv::{self, AudioTagHeader, TagType, VideoTagHeader};
use sluice_sdk::plugin::{
    BodyPart, CachePolicy, MemoryView, Packager, PresentationState, Request, Response, SampleEntry,
    TrackInfo, TrackKind,
};

use sluice_sdk::testing::{self, element_text, text};

use crate::Hds;

const AVCC: [u8; 11] = [1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 0, 0xe1, 0, 0];
const ASC: [u8; 2] = [0x12, 0x10];

fn video_track(id: u32, width: u32, height: u32, bitrate: u32) -> TrackInfo {
    TrackInfo {
        fourcc: "avc1".into(),
        codec: "avc1.64001f".into(),
        codec_private: AVCC.to_vec(),
        stream: "cam".into(),
        bitrate,
        width,
        height,
        ..TrackInfo::new(id, TrackKind::Video, 90_000)
    }
}

fn audio_track(id: u32) -> TrackInfo {
    TrackInfo {
        fourcc: "mp4a".into(),
        codec: "mp4a.40.2".into(),
        codec_private: ASC.to_vec(),
        stream: "cam".into(),
        bitrate: 128_000,
        sample_rate: 48_000,
        channels: 2,
        ..TrackInfo::new(id, TrackKind::Audio, 48_000)
    }
}

/// 2 s of 25 fps video: a keyframe, then B/P-like frames with offsets.
fn video_samples() -> Vec<SampleEntry> {
    (0..50)
        .map(|i| SampleEntry {
            duration: 3600,
            size: 100 + i,
            composition_offset: if i % 2 == 0 { 7200 } else { 0 },
            keyframe: i == 0,
        })
        .collect()
}

/// Audio frames of fragment `k`: frames whose 1024-sample grid position
/// falls in [2k s, 2(k+1) s).
fn audio_range(k: u64) -> (u64, u64) {
    let first = (k * 96_000).div_ceil(1024);
    let end = ((k + 1) * 96_000).div_ceil(1024);
    (first, end)
}

fn audio_samples(k: u64) -> Vec<SampleEntry> {
    let (first, end) = audio_range(k);
    (first..end)
        .map(|_| SampleEntry {
            duration: 1024,
            size: 10,
            composition_offset: 0,
            keyframe: true,
        })
        .collect()
}

fn fill(view: &mut MemoryView, videos: &[u32], audio: Option<u32>, ks: impl Iterator<Item = u64>) {
    for k in ks {
        for &v in videos {
            let s = video_samples();
            let len: u32 = s.iter().map(|s| s.size).sum();
            view.push(v, k * 180_000, s, vec![k as u8; len as usize], false);
        }
        if let Some(a) = audio {
            let s = audio_samples(k);
            let len: u32 = s.iter().map(|s| s.size).sum();
            view.push(
                a,
                audio_range(k).0 * 1024,
                s,
                vec![0xa0; len as usize],
                false,
            );
        }
    }
}

fn presentation(state: PresentationState, videos: &[(u32, u32, u32, u32)]) -> MemoryView {
    let mut view = MemoryView::new(state, 2000, Some(1_700_000_000_000));
    for &(id, w, h, b) in videos {
        view.add_track(video_track(id, w, h, b));
    }
    view.add_track(audio_track(9));
    let ids: Vec<u32> = videos.iter().map(|v| v.0).collect();
    fill(&mut view, &ids, Some(9), 0..5);
    view
}

fn get(view: &MemoryView, path: &str) -> Response {
    let request = Request {
        format: "f4m-f4f".into(),
        path: path.into(),
        ..Request::default()
    };
    Hds::handle(&request, view)
}

/// Compares with `tests/golden/{name}`; `BLESS=1` rewrites the file.
fn golden(name: &str, actual: &str) {
    testing::golden(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden"),
        name,
        actual,
    );
}

// ---- A small bootstrap reader, independent of the writer ----

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take(8).try_into().unwrap())
    }
    fn string(&mut self) -> String {
        let end = self.0.iter().position(|&b| b == 0).unwrap();
        let s = String::from_utf8(self.take(end).to_vec()).unwrap();
        self.take(1);
        s
    }
    /// A box: (type, body after the 8-byte header).
    fn boxed(&mut self) -> ([u8; 4], &'a [u8]) {
        let size = self.u32() as usize;
        let kind: [u8; 4] = self.take(4).try_into().unwrap();
        (kind, self.take(size - 8))
    }
}

#[derive(Debug, PartialEq)]
struct Bootstrap {
    version: u32,
    live: bool,
    timescale: u32,
    current_media_time: u64,
    /// (FirstSegment, FragmentsPerSegment)
    segments: Vec<(u32, u32)>,
    afrt_timescale: u32,
    /// (first, timestamp, duration, discontinuity)
    fragments: Vec<(u32, u64, u32, Option<u8>)>,
}

fn parse_abst(data: &[u8]) -> Bootstrap {
    let mut c = Cursor(data);
    let (kind, body) = c.boxed();
    assert_eq!(&kind, b"abst");
    assert!(c.0.is_empty(), "bytes after abst");
    let mut c = Cursor(body);
    assert_eq!(c.u32(), 0, "version and flags");
    let version = c.u32();
    let flags = c.u8();
    assert_eq!(flags & 0xc0, 0, "profile named");
    assert_eq!(flags & 0x10, 0, "no update");
    let timescale = c.u32();
    let current_media_time = c.u64();
    assert_eq!(c.u64(), 0, "SMPTE offset");
    assert_eq!(c.string(), "", "movie identifier");
    assert_eq!(c.u8(), 0, "servers");
    assert_eq!(c.u8(), 0, "qualities");
    assert_eq!(c.string(), "", "drm");
    assert_eq!(c.string(), "", "metadata");
    assert_eq!(c.u8(), 1, "one segment run table");
    let (kind, asrt) = c.boxed();
    assert_eq!(&kind, b"asrt");
    let mut a = Cursor(asrt);
    assert_eq!(a.u32(), 0);
    assert_eq!(a.u8(), 0, "asrt qualities");
    let n = a.u32();
    let segments = (0..n).map(|_| (a.u32(), a.u32())).collect();
    assert!(a.0.is_empty(), "bytes after asrt entries");
    assert_eq!(c.u8(), 1, "one fragment run table");
    let (kind, afrt) = c.boxed();
    assert_eq!(&kind, b"afrt");
    assert!(c.0.is_empty(), "bytes after afrt");
    let mut f = Cursor(afrt);
    assert_eq!(f.u32(), 0);
    let afrt_timescale = f.u32();
    assert_eq!(f.u8(), 0, "afrt qualities");
    let n = f.u32();
    let fragments = (0..n)
        .map(|_| {
            let first = f.u32();
            let ts = f.u64();
            let d = f.u32();
            (first, ts, d, (d == 0).then(|| f.u8()))
        })
        .collect();
    assert!(f.0.is_empty(), "bytes after afrt entries");
    Bootstrap {
        version,
        live: flags & 0x20 != 0,
        timescale,
        current_media_time,
        segments,
        afrt_timescale,
        fragments,
    }
}

// ---- Tests ----

#[test]
fn info_names_the_format() {
    assert_eq!(Hds::info().formats, vec!["f4m-f4f".to_owned()]);
}

#[test]
fn live_manifest() {
    let view = presentation(PresentationState::Live, &[(1, 1280, 720, 2_500_000)]);
    let r = get(&view, "Manifest(format=f4m-f4f)");
    assert_eq!(r.content_type, "application/f4m+xml");
    assert_eq!(r.cache, CachePolicy::MaxAge(1));
    golden("live.f4m", &text(&r));
}

#[test]
fn recorded_manifest_has_inline_bootstrap_and_metadata() {
    let view = presentation(PresentationState::Ended, &[(1, 1280, 720, 2_500_000)]);
    let r = get(&view, "Manifest(format=f4m-f4f)");
    assert_eq!(r.cache, CachePolicy::MaxAge(3600));
    let xml = text(&r);
    golden("recorded.f4m", &xml);
    // The inline bootstrap is the one served by URL.
    let inline = BASE64.decode(element_text(&xml, "bootstrapInfo")).unwrap();
    let served = get(&view, "f4m-f4f/t1/bootstrap.abst");
    assert_eq!(inline, view.assemble(&served).unwrap());
    let b = parse_abst(&inline);
    assert!(!b.live);
    assert_eq!(b.current_media_time, 10_000);
    assert_eq!(b.segments, vec![(1, 5)]);
    assert_eq!(
        b.fragments,
        vec![(1, 0, 2000, None), (6, 10_000, 0, Some(0))]
    );
    // onMetaData
    let meta = BASE64.decode(element_text(&xml, "metadata")).unwrap();
    let values = amf0::decode_all(&meta).unwrap();
    assert_eq!(values[0], Value::string("onMetaData"));
    assert_eq!(
        values[1].get("width").and_then(Value::as_number),
        Some(1280.0)
    );
    assert_eq!(
        values[1].get("height").and_then(Value::as_number),
        Some(720.0)
    );
    assert_eq!(
        values[1].get("duration").and_then(Value::as_number),
        Some(10.0)
    );
    assert_eq!(
        values[1].get("videocodecid").and_then(Value::as_number),
        Some(7.0)
    );
    assert_eq!(
        values[1].get("audiocodecid").and_then(Value::as_number),
        Some(10.0)
    );
}

#[test]
fn multi_bitrate_manifest() {
    let view = presentation(
        PresentationState::Live,
        &[(1, 1280, 720, 2_500_000), (2, 640, 360, 800_000)],
    );
    let xml = text(&get(&view, "Manifest(format=f4m-f4f)"));
    golden("multi_bitrate.f4m", &xml);
    assert_eq!(xml.matches("<media ").count(), 2);
    assert_eq!(xml.matches("<bootstrapInfo ").count(), 2);
}

#[test]
fn audio_only_presentation() {
    let mut view = MemoryView::new(PresentationState::Ended, 2000, None);
    view.add_track(audio_track(0));
    fill(&mut view, &[], Some(0), 0..2);
    let xml = text(&get(&view, "Manifest(format=f4m-f4f)"));
    golden("audio_only.f4m", &xml);
    let r = get(&view, "f4m-f4f/t0/Seg1-Frag2");
    let tags = walk(&view.assemble(&r).unwrap());
    assert!(tags.iter().all(|t| t.0 == TagType::Audio));
    assert_eq!(tags.len(), 1 + audio_samples(1).len());
}

#[test]
fn live_bootstrap_updates_and_slides() {
    let mut view = presentation(PresentationState::Live, &[(1, 1280, 720, 0)]);
    let r = get(&view, "f4m-f4f/t1/bootstrap.abst");
    assert_eq!(r.cache, CachePolicy::MaxAge(1));
    let b = parse_abst(&view.assemble(&r).unwrap());
    assert!(b.live);
    assert_eq!(b.timescale, 1000);
    assert_eq!(b.afrt_timescale, 1000);
    assert_eq!(b.version, 5);
    assert_eq!(b.current_media_time, 10_000);
    assert_eq!(b.segments, vec![(1, 5)]);
    assert_eq!(b.fragments, vec![(1, 0, 2000, None)]);

    // Two more fragments, the oldest three dropped: numbers follow media time.
    fill(&mut view, &[1], Some(9), 5..7);
    view.trim_before_ms(6000);
    let b = parse_abst(
        &view
            .assemble(&get(&view, "f4m-f4f/t1/bootstrap.abst"))
            .unwrap(),
    );
    assert_eq!(b.version, 7);
    assert_eq!(b.current_media_time, 14_000);
    assert_eq!(b.segments, vec![(1, 4)]);
    assert_eq!(b.fragments, vec![(4, 6000, 2000, None)]);
    assert_eq!(get(&view, "f4m-f4f/t1/Seg1-Frag3").status, 404);
    assert_eq!(get(&view, "f4m-f4f/t1/Seg1-Frag7").status, 200);
    assert_eq!(get(&view, "f4m-f4f/t1/Seg1-Frag8").status, 404);
}

#[test]
fn video_ahead_of_audio_waits_for_it() {
    let mut view = presentation(PresentationState::Live, &[(1, 1280, 720, 0)]);
    // Video fragment 6 arrives before its audio.
    let s = video_samples();
    let len: u32 = s.iter().map(|s| s.size).sum();
    view.push(1, 5 * 180_000, s, vec![0; len as usize], false);
    let b = parse_abst(
        &view
            .assemble(&get(&view, "f4m-f4f/t1/bootstrap.abst"))
            .unwrap(),
    );
    assert_eq!(b.segments, vec![(1, 5)], "fragment 6 not listed yet");
    let r = get(&view, "f4m-f4f/t1/Seg1-Frag6");
    assert_eq!(r.status, 404);
    assert_eq!(r.cache, CachePolicy::MaxAge(1));

    // Ended, audio will not come: the fragment is listed and served
    // with video alone.
    view.info.state = PresentationState::Ended;
    let b = parse_abst(
        &view
            .assemble(&get(&view, "f4m-f4f/t1/bootstrap.abst"))
            .unwrap(),
    );
    assert_eq!(b.segments, vec![(1, 6)]);
    let tags = walk(&view.assemble(&get(&view, "f4m-f4f/t1/Seg1-Frag6")).unwrap());
    assert_eq!(tags.len(), 1 + 50);
    assert!(tags.iter().all(|t| t.0 == TagType::Video));
}

#[test]
fn gaps_become_discontinuity_entries() {
    let mut view = MemoryView::new(PresentationState::Live, 2000, None);
    view.add_track(video_track(1, 640, 360, 0));
    fill(&mut view, &[1], None, [0u64, 1, 4, 5].into_iter());
    // A restart at fragment 7, a fragment of 1 s only, then a hole to 8.
    let mut s = video_samples();
    s.truncate(25);
    let len: u32 = s.iter().map(|s| s.size).sum();
    view.push(1, 6 * 180_000, s, vec![0; len as usize], true);
    fill(&mut view, &[1], None, 7..8);
    let b = parse_abst(
        &view
            .assemble(&get(&view, "f4m-f4f/t1/bootstrap.abst"))
            .unwrap(),
    );
    assert_eq!(b.segments, vec![(1, 8)]);
    assert_eq!(
        b.fragments,
        vec![
            (1, 0, 2000, None),
            (3, 4000, 0, Some(3)), // numbers and time skip
            (5, 8000, 2000, None),
            (7, 12_000, 0, Some(2)), // flagged discontinuity, numbers go on
            (7, 12_000, 1000, None),
            (8, 13_000, 0, Some(2)), // the short fragment leaves a hole
            (8, 14_000, 2000, None),
        ]
    );
}

/// Walks an F4F fragment: one `mdat` of FLV tags; returns (type,
/// timestamp, body) per tag, checking every PreviousTagSize.
fn walk(data: &[u8]) -> Vec<(TagType, u32, Vec<u8>)> {
    let size = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
    assert_eq!(&data[4..8], b"mdat");
    assert_eq!(size, data.len(), "one box");
    let mut p = &data[8..];
    let mut out = Vec::new();
    while !p.is_empty() {
        let h = flv::TagHeader::parse(p).unwrap();
        let end = 11 + h.data_size as usize;
        let prev = u32::from_be_bytes(p[end..end + 4].try_into().unwrap());
        assert_eq!(prev as usize, end, "PreviousTagSize");
        out.push((h.tag_type, h.timestamp, p[11..end].to_vec()));
        p = &p[end + 4..];
    }
    out
}

#[test]
fn fragment_carries_headers_then_interleaved_samples() {
    let view = presentation(PresentationState::Ended, &[(1, 1280, 720, 0)]);
    let r = get(&view, "f4m-f4f/t1/Seg1-Frag2");
    assert_eq!(r.content_type, "video/f4f");
    assert_eq!(r.cache, CachePolicy::Immutable);
    // Payload is referenced, never copied.
    let refs = r
        .body
        .iter()
        .filter(|p| matches!(p, BodyPart::SampleData(_)))
        .count();
    assert_eq!(refs, 50 + audio_samples(1).len());
    let data = view.assemble(&r).unwrap();
    let tags = walk(&data);
    assert_eq!(tags.len(), 2 + 50 + audio_samples(1).len());

    let (v, body) = VideoTagHeader::parse(&tags[0].2).unwrap();
    assert_eq!(tags[0].0, TagType::Video);
    assert_eq!(v.avc_packet_type, Some(flv::AvcPacketType::SequenceHeader));
    assert_eq!(body, AVCC);
    let (a, body) = AudioTagHeader::parse(&tags[1].2).unwrap();
    assert_eq!(tags[1].0, TagType::Audio);
    assert_eq!(a.aac_packet_type, Some(flv::AacPacketType::SequenceHeader));
    assert_eq!(body, ASC);
    assert_eq!(tags[0].1, 2000);

    // Timestamps never go back; video carries CTS and payload.
    let mut last = 0;
    let mut video = 0;
    for (kind, ts, body) in &tags[2..] {
        assert!(*ts >= last);
        last = *ts;
        if *kind == TagType::Video {
            let (h, payload) = VideoTagHeader::parse(body).unwrap();
            assert_eq!(ts.checked_sub(2000).unwrap(), video as u32 * 40);
            assert_eq!(h.composition_time, if video % 2 == 0 { 80 } else { 0 });
            assert_eq!(h.frame_type == flv::FrameType::Key, video == 0);
            assert_eq!(payload.len(), 100 + video);
            assert!(payload.iter().all(|&b| b == 1));
            video += 1;
        } else {
            let (h, payload) = AudioTagHeader::parse(body).unwrap();
            assert_eq!(h.aac_packet_type, Some(flv::AacPacketType::Raw));
            assert_eq!(payload, [0xa0; 10]);
        }
    }
    assert_eq!(video, 50);
}

#[test]
fn not_found() {
    let view = presentation(PresentationState::Live, &[(1, 1280, 720, 0)]);
    for path in [
        "f4m-f4f/t1/Seg1-Frag6",
        "f4m-f4f/t9/Seg1-Frag1", // audio is muxed, not a media of its own
        "f4m-f4f/t2/Seg1-Frag1",
        "f4m-f4f/t2/bootstrap.abst",
        "f4m-f4f/t1/Seg1-Frag0",
        "f4m-f4f/t1/x",
        "Manifest(format=m3u8-cmaf)",
    ] {
        let r = get(&view, path);
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.cache, CachePolicy::MaxAge(1), "{path}");
    }
    let other = Request {
        format: "mss".into(),
        path: "Manifest(format=f4m-f4f)".into(),
        ..Request::default()
    };
    assert_eq!(Hds::handle(&other, &view).status, 404);
    let empty = MemoryView::new(PresentationState::Live, 2000, None);
    assert_eq!(get(&empty, "Manifest(format=f4m-f4f)").status, 404);
}
