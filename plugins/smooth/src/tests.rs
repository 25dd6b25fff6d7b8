//! Behaviour of the packager against an in-memory presentation: manifests
//! compared with golden files in `tests/golden/` (rewrite them with
//! `BLESS=1`), fragments parsed back with the SDK's box reader, errors.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use sluice_sdk::bmff::{BmffBox, Mfhd, Reader, Tfhd, Tfxd, Trun, smooth};
use sluice_sdk::plugin::{
    BodyPart, CachePolicy, MemoryView, Packager, PresentationState, Request, Response, SampleEntry,
    TrackInfo, TrackKind,
};
use sluice_sdk::testing::{self, ASC, AVCC, EPOCH_MS, text};

use crate::{Smooth, Tfrf};

/// The first fragment starts at media time 1000 s.
const FIRST: u64 = 500;
const COUNT: u64 = 6;

fn video_track(id: u32, bitrate: u32, height: u32) -> TrackInfo {
    TrackInfo {
        fourcc: "avc1".into(),
        codec: "avc1.64000d".into(),
        codec_private: AVCC.to_vec(),
        stream: format!("{height}p"),
        width: height * 4 / 3,
        height,
        bitrate,
        ..TrackInfo::new(id, TrackKind::Video, 90_000)
    }
}

fn audio_track(id: u32, language: &str) -> TrackInfo {
    TrackInfo {
        fourcc: "mp4a".into(),
        codec: "mp4a.40.2".into(),
        codec_private: ASC.to_vec(),
        language: language.into(),
        sample_rate: 48_000,
        channels: 2,
        bitrate: 128_000,
        ..TrackInfo::new(id, TrackKind::Audio, 48_000)
    }
}

/// 2 s of 25 fps video: a keyframe, then frames with composition offsets.
fn video_samples() -> Vec<SampleEntry> {
    (0..50u32)
        .map(|i| SampleEntry {
            duration: 3600,
            size: if i == 0 { 400 } else { 40 + i },
            composition_offset: (i % 3) as i32 * 3600,
            keyframe: i == 0,
        })
        .collect()
}

/// 2 s of AAC at 48 kHz (the last frame short so it totals 96 000 ticks).
fn audio_samples() -> Vec<SampleEntry> {
    let mut v: Vec<SampleEntry> = (0..93)
        .map(|_| SampleEntry {
            duration: 1024,
            size: 20,
            composition_offset: 0,
            keyframe: true,
        })
        .collect();
    v.push(SampleEntry {
        duration: 96_000 - 93 * 1024,
        size: 20,
        composition_offset: 0,
        keyframe: true,
    });
    v
}

fn push(view: &mut MemoryView, track: &TrackInfo, start: u64, disc: bool) {
    let samples = match track.kind {
        TrackKind::Video => video_samples(),
        _ => audio_samples(),
    };
    let len: u32 = samples.iter().map(|s| s.size).sum();
    let data = (0..len).map(|i| (i % 251) as u8).collect();
    view.push(track.id, start, samples, data, disc);
}

/// A presentation with these tracks and fragment indices (2 s each).
fn view(state: PresentationState, tracks: &[TrackInfo], indices: &[(u64, bool)]) -> MemoryView {
    let mut v = MemoryView::new(state, 2000, Some(EPOCH_MS));
    v.info.window_ms = 30_000;
    for t in tracks {
        v.add_track(t.clone());
        let per = u64::from(t.timescale) * 2;
        for &(k, disc) in indices {
            push(&mut v, t, k * per, disc);
        }
    }
    v
}

fn contiguous() -> Vec<(u64, bool)> {
    (FIRST..FIRST + COUNT).map(|k| (k, false)).collect()
}

fn get(view: &MemoryView, path: &str) -> Response {
    Smooth::handle(
        &Request {
            format: "mss".into(),
            path: path.into(),
            ..Request::default()
        },
        view,
    )
}

/// Compares with `tests/golden/{name}`; `BLESS=1` rewrites the file.
fn golden(name: &str, actual: &str) {
    testing::golden(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden"),
        name,
        actual,
    );
}

#[test]
fn live_manifest_with_window_and_lookahead() {
    let v = view(
        PresentationState::Live,
        &[video_track(1, 800_000, 240), audio_track(2, "und")],
        &contiguous(),
    );
    let r = get(&v, "Manifest");
    assert_eq!(r.cache, CachePolicy::MaxAge(1));
    assert_eq!(r.content_type, "text/xml; charset=utf-8");
    let m = text(&r);
    assert!(m.contains("IsLive=\"TRUE\""), "{m}");
    assert!(m.contains("DVRWindowLength=\"300000000\""), "{m}");
    assert!(
        m.contains("<c t=\"90000000\" d=\"180000\" r=\"6\" />"),
        "{m}"
    );
    // Annex B parameter sets: start code, SPS, start code, PPS.
    assert!(m.contains("CodecPrivateData=\"0000000167640"), "{m}");
    assert_eq!(text(&get(&v, "Manifest(format=mss)")), m);
    golden("live.xml", &m);
}

#[test]
fn vod_manifest() {
    let v = view(
        PresentationState::Ended,
        &[video_track(1, 800_000, 240), audio_track(2, "und")],
        &contiguous(),
    );
    let r = get(&v, "Manifest");
    assert_eq!(r.cache, CachePolicy::MaxAge(3600));
    let m = text(&r);
    assert!(!m.contains("IsLive"), "{m}");
    assert!(m.contains("Duration=\"120000000\""), "{m}");
    golden("vod.xml", &m);
}

#[test]
fn discontinuity_is_a_jump_in_t() {
    // 500, 501, gap, 504 (discontinuity), 505.
    let v = view(
        PresentationState::Live,
        &[video_track(1, 800_000, 240)],
        &[(500, false), (501, false), (504, true), (505, false)],
    );
    let m = text(&get(&v, "Manifest"));
    assert!(
        m.contains(
            "<c t=\"90000000\" d=\"180000\" r=\"2\" />\n    <c t=\"90720000\" d=\"180000\" r=\"2\" />"
        ),
        "{m}"
    );
    golden("discontinuity.xml", &m);
}

#[test]
fn multi_bitrate_and_two_languages() {
    let tracks = [
        video_track(0, 800_000, 240),
        video_track(1, 1_500_000, 480),
        // Same bitrate as track 0: told apart by a bumped Bitrate.
        video_track(2, 800_000, 360),
        audio_track(3, "en"),
        audio_track(4, "fr"),
    ];
    let v = view(PresentationState::Ended, &tracks, &contiguous());
    let m = text(&get(&v, "Manifest"));
    assert!(m.contains("Bitrate=\"800001\""), "{m}");
    assert!(m.contains("Name=\"audio_en\""), "{m}");
    assert!(m.contains("Name=\"audio_fr\""), "{m}");
    golden("multi.xml", &m);

    // Each URL names exactly one track.
    let t = FIRST * 180_000;
    for (url, track) in [
        (format!("QualityLevels(800000)/Fragments(video={t})"), 0),
        (format!("QualityLevels(1500000)/Fragments(video={t})"), 1),
        (format!("mss/QualityLevels(800001)/Fragments(video={t})"), 2),
        (
            format!(
                "QualityLevels(128000)/Fragments(audio_en={})",
                FIRST * 96_000
            ),
            3,
        ),
        (
            format!(
                "QualityLevels(128000)/Fragments(audio_fr={})",
                FIRST * 96_000
            ),
            4,
        ),
    ] {
        let r = get(&v, &url);
        assert_eq!(r.status, 200, "{url}");
        assert_eq!(r.cache, CachePolicy::Immutable, "{url}");
        let Some(BodyPart::SampleData(d)) = r.body.last() else {
            panic!("{url}: no sample data");
        };
        assert_eq!(d.track, track, "{url}");
    }
}

#[test]
fn audio_only() {
    let v = view(
        PresentationState::Ended,
        &[audio_track(7, "de")],
        &contiguous(),
    );
    let m = text(&get(&v, "Manifest"));
    assert!(!m.contains("video"), "{m}");
    golden("audio_only.xml", &m);
}

/// The boxes of a fragment: (mfhd, tfhd, trun, tfxd, tfrf, mdat payload
/// length).
fn parse_fragment(bytes: &[u8]) -> (Mfhd, Tfhd, Trun, Tfxd, Option<Tfrf>, usize) {
    let mut r = Reader::new(bytes);
    let moof = r.next_box().unwrap().unwrap();
    assert_eq!(&moof.fourcc().0, b"moof");
    let mut children = moof.reader();
    let mfhd = Mfhd::from_box(&children.next_box().unwrap().unwrap()).unwrap();
    let traf = children.next_box().unwrap().unwrap();
    assert_eq!(&traf.fourcc().0, b"traf");
    assert!(children.next_box().unwrap().is_none());
    let mut t = traf.reader();
    let tfhd = Tfhd::from_box(&t.next_box().unwrap().unwrap()).unwrap();
    let trun = Trun::from_box(&t.next_box().unwrap().unwrap()).unwrap();
    let tfxd = Tfxd::from_box(&t.next_box().unwrap().unwrap()).unwrap();
    let tfrf = t.next_box().unwrap().map(|b| {
        assert!(smooth::is_uuid(&b, &smooth::TFRF));
        Tfrf::from_box(&b).unwrap()
    });
    assert!(t.next_box().unwrap().is_none());
    let mdat = r.next_box().unwrap().unwrap();
    assert_eq!(&mdat.fourcc().0, b"mdat");
    assert_eq!(
        trun.data_offset,
        Some((bytes.len() - mdat.body.len()) as i32)
    );
    (mfhd, tfhd, trun, tfxd, tfrf, mdat.body.len())
}

#[test]
fn fragments_carry_tfxd_and_live_tfrf() {
    let mut v = view(
        PresentationState::Live,
        &[video_track(1, 800_000, 240), audio_track(2, "und")],
        &contiguous(),
    );
    let at = |k: u64| k * 180_000;
    // Two fragments ahead in the view: full lookahead, immutable.
    let r = get(
        &v,
        &format!("QualityLevels(800000)/Fragments(video={})", at(502)),
    );
    assert_eq!(r.cache, CachePolicy::Immutable);
    let bytes = v.assemble(&r).unwrap();
    let (mfhd, tfhd, trun, tfxd, tfrf, payload) = parse_fragment(&bytes);
    assert_eq!(mfhd.sequence_number, 502);
    assert_eq!(tfhd.track_id, 1);
    assert!(!tfhd.default_base_is_moof);
    assert_eq!(trun.samples.len(), 50);
    assert_eq!(trun.samples[1].composition_offset, Some(3600));
    assert_eq!(
        payload,
        video_samples()
            .iter()
            .map(|s| s.size as usize)
            .sum::<usize>()
    );
    assert_eq!(
        tfxd,
        Tfxd {
            fragment_absolute_time: at(502),
            fragment_duration: 180_000
        }
    );
    assert_eq!(
        tfrf.unwrap().entries,
        vec![(at(503), 180_000), (at(504), 180_000)]
    );
    // The live edge: an empty tfrf, cached briefly.
    let r = get(
        &v,
        &format!("QualityLevels(800000)/Fragments(video={})", at(505)),
    );
    assert_eq!(r.cache, CachePolicy::MaxAge(1));
    let (.., tfrf, _) = parse_fragment(&v.assemble(&r).unwrap());
    assert_eq!(tfrf.unwrap().entries, vec![]);
    // Audio: tfxd in the audio track's ticks.
    let r = get(
        &v,
        &format!("QualityLevels(128000)/Fragments(audio={})", 500 * 96_000),
    );
    let (_, _, trun, tfxd, tfrf, _) = parse_fragment(&v.assemble(&r).unwrap());
    assert_eq!(tfxd.fragment_absolute_time, 48_000_000);
    assert_eq!(tfxd.fragment_duration, 96_000);
    assert_eq!(trun.samples.len(), 94);
    assert_eq!(tfrf.unwrap().entries.len(), 2);
    // Ended: no tfrf.
    v.info.state = PresentationState::Ended;
    let r = get(
        &v,
        &format!("QualityLevels(800000)/Fragments(video={})", at(505)),
    );
    assert_eq!(r.cache, CachePolicy::Immutable);
    let (.., tfrf, _) = parse_fragment(&v.assemble(&r).unwrap());
    assert!(tfrf.is_none());
}

#[test]
fn manifest_t_equals_fragment_tfxd() {
    let v = view(
        PresentationState::Live,
        &[video_track(1, 800_000, 240)],
        &[(500, false), (503, true), (504, false)],
    );
    let m = text(&get(&v, "Manifest"));
    // Walk the c list and fetch each fragment it implies.
    let mut t = 0u64;
    let mut n = 0;
    for line in m.lines().filter(|l| l.trim_start().starts_with("<c ")) {
        let attr = |k: &str| -> Option<u64> {
            let at = line.find(&format!(" {k}=\""))? + k.len() + 3;
            line[at..].split('"').next()?.parse().ok()
        };
        if let Some(x) = attr("t") {
            t = x;
        }
        let d = attr("d").unwrap();
        for _ in 0..attr("r").unwrap_or(1) {
            let r = get(&v, &crate::paths::fragment_url("video", 800_000, t));
            let (.., tfxd, _, _) = parse_fragment(&v.assemble(&r).unwrap());
            assert_eq!(
                (tfxd.fragment_absolute_time, tfxd.fragment_duration),
                (t, d)
            );
            t += d;
            n += 1;
        }
    }
    assert_eq!(n, 3);
}

#[test]
fn errors() {
    let v = view(
        PresentationState::Live,
        &[video_track(1, 800_000, 240)],
        &contiguous(),
    );
    for path in [
        "Manifest(format=m3u8-cmaf)",
        "QualityLevels(800000)/Fragments(video=1)",
        "QualityLevels(800001)/Fragments(video=90000000)",
        "QualityLevels(800000)/Fragments(audio=90000000)",
        "QualityLevels(800000)/Fragments(video=0900)",
        "nonsense",
    ] {
        assert_eq!(get(&v, path).status, 404, "{path}");
    }
    // Another format is not ours.
    let r = Smooth::handle(
        &Request {
            format: "m3u8-cmaf".into(),
            path: "Manifest".into(),
            ..Request::default()
        },
        &v,
    );
    assert_eq!(r.status, 404);
    // No tracks yet.
    let empty = MemoryView::new(PresentationState::Live, 2000, None);
    assert_eq!(get(&empty, "Manifest").status, 404);
    // A broken avcC is a server error, not a panic.
    let mut bad = video_track(1, 1, 240);
    bad.codec_private = vec![1, 2];
    let v = view(PresentationState::Live, &[bad], &contiguous());
    assert_eq!(get(&v, "Manifest").status, 500);
}
