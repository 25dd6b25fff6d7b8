//! Behaviour of the packager against an in-memory presentation: playlists,
//! init and media segments, errors. Playlists and box dumps are compared
//! with golden files in `tests/golden/` (rewrite them with `BLESS=1`).

#![allow(clippy::unwrap_used)]

use std::path::Path;

use sluice_sdk::bmff::{self, BmffBox, Ftyp, Moof, Moov, Reader, SampleDescription, Styp};
use sluice_sdk::plugin::{
    BodyPart, CachePolicy, DataRef, MemoryView, Packager, PresentationState, Request, Response,
    SampleEntry, TrackInfo, TrackKind,
};
use sluice_sdk::testing::{
    self, ASC, AVCC, EPOCH_MS, audio_fragment, audio_frame_at, payload, text, video_fragment,
};

use crate::Hls;

/// The window starts at media time 1000 s: fragment index 500.
const FIRST: u64 = 500;
const COUNT: u64 = 6;
/// Fragment index after which a discontinuity is flagged.
const DISCONTINUITY_AT: u64 = 503;

fn video_track() -> TrackInfo {
    TrackInfo {
        fourcc: "avc1".into(),
        codec: "avc1.64000d".into(),
        codec_private: AVCC.to_vec(),
        stream: "240p".into(),
        width: 320,
        height: 240,
        ..TrackInfo::new(1, TrackKind::Video, 90_000)
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

/// Adds fragments `first..first+count` of the given tracks.
fn fill(view: &mut MemoryView, video: Option<u32>, audio: &[u32], first: u64, count: u64) {
    for k in first..first + count {
        let disc = k == DISCONTINUITY_AT;
        if let Some(id) = video {
            let s = video_fragment(k, 1);
            let len = s.iter().map(|s| s.size).sum();
            view.push(id, k * 180_000, s, payload(k, len), disc);
        }
        for &id in audio {
            let s = audio_fragment(k);
            let len = s.iter().map(|s| s.size).sum();
            let data = payload(k + u64::from(id), len);
            view.push(id, audio_frame_at(k) * 1024, s, data, disc);
        }
    }
}

/// Video, English and French audio, and a data track that HLS skips.
fn presentation(state: PresentationState) -> MemoryView {
    let mut v = MemoryView::new(state, 2000, Some(EPOCH_MS));
    v.add_track(video_track());
    v.add_track(audio_track(2, "en"));
    v.add_track(audio_track(3, "fr"));
    let mut data = TrackInfo::new(4, TrackKind::Data, 1000);
    data.fourcc = "mett".into();
    v.add_track(data);
    fill(&mut v, Some(1), &[2, 3], FIRST, COUNT);
    v.push(4, FIRST * 2000, vec![], vec![], false);
    v
}

fn get(view: &MemoryView, path: &str) -> Response {
    let req = Request {
        format: "m3u8-cmaf".into(),
        path: path.into(),
        ..Request::default()
    };
    Hls::handle(&req, view)
}

/// Compares with `tests/golden/{name}`; `BLESS=1` rewrites the file.
fn golden(name: &str, actual: &str) {
    testing::golden(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden"),
        name,
        actual,
    );
}

/// The attribute `name` of the first line starting with `tag`.
fn attribute<'a>(playlist: &'a str, tag: &str, name: &str) -> Option<&'a str> {
    let line = playlist.lines().find(|l| l.starts_with(tag))?;
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    let rest = &line[at..];
    Some(match rest.strip_prefix('"') {
        Some(q) => &q[..q.find('"')?],
        None => rest.split(',').next()?,
    })
}

#[test]
fn info_names_the_format() {
    let i = Hls::info();
    assert_eq!(i.name, "hls");
    assert_eq!(i.formats, ["m3u8-cmaf", "m3u8-aapl"]);
}

#[test]
fn multivariant_playlist() {
    let view = presentation(PresentationState::Live);
    let r = get(&view, "Manifest(format=m3u8-cmaf)");
    assert_eq!(r.content_type, "application/vnd.apple.mpegurl");
    assert_eq!(r.cache, CachePolicy::MaxAge(1));
    let m = text(&r);
    golden("multivariant.m3u8", &m);

    assert!(m.starts_with("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n"));
    assert!(m.contains(
        "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"en\",LANGUAGE=\"en\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"m3u8-cmaf/t2/index.m3u8\"\n"
    ));
    assert!(m.contains("NAME=\"fr\",LANGUAGE=\"fr\",DEFAULT=NO,"));
    assert!(!m.contains("t4/"), "the data track is not listed");
    assert_eq!(m.matches("#EXT-X-STREAM-INF").count(), 1);
    let inf = "#EXT-X-STREAM-INF";
    assert_eq!(attribute(&m, inf, "CODECS"), Some("avc1.64000d,mp4a.40.2"));
    assert_eq!(attribute(&m, inf, "RESOLUTION"), Some("320x240"));
    assert_eq!(attribute(&m, inf, "FRAME-RATE"), Some("25.000"));
    assert_eq!(attribute(&m, inf, "AUDIO"), Some("audio"));
    assert!(m.ends_with("\nm3u8-cmaf/t1/index.m3u8\n"));

    // BANDWIDTH covers the fattest video segment plus the fattest audio
    // segment as actually served, without overstating them by much.
    let peak = |track: u32, timescale: u64| -> u64 {
        view.fragments[&track]
            .values()
            .map(|f| {
                let r = get(
                    &view,
                    &format!("m3u8-cmaf/t{track}/{}.m4s", f.fragment.start),
                );
                (r.body_len() * 8 * timescale).div_ceil(f.fragment.duration)
            })
            .max()
            .unwrap()
    };
    let actual = peak(1, 90_000) + peak(2, 48_000).max(peak(3, 48_000));
    let bandwidth: u64 = attribute(&m, inf, "BANDWIDTH").unwrap().parse().unwrap();
    let average: u64 = attribute(&m, inf, "AVERAGE-BANDWIDTH")
        .unwrap()
        .parse()
        .unwrap();
    assert!(bandwidth >= actual, "{bandwidth} < {actual}");
    assert!(bandwidth <= actual + actual / 50, "{bandwidth} ≫ {actual}");
    assert!(average <= bandwidth && average > actual / 2);
}

#[test]
fn multivariant_lists_iframe_playlists_when_the_host_serves_them() {
    let view = presentation(PresentationState::Live);
    let plain = text(&get(&view, "Manifest(format=m3u8-cmaf)"));
    assert!(!plain.contains("#EXT-X-I-FRAME-STREAM-INF"), "{plain}");
    let req = Request {
        format: "m3u8-cmaf".into(),
        path: "Manifest(format=m3u8-cmaf)".into(),
        headers: vec![(
            sluice_sdk::plugin::FORMATS_HEADER.into(),
            "hds,m3u8-aapl,m3u8-cmaf,m3u8-iframes,mpd,mss".into(),
        )],
        ..Request::default()
    };
    let m = text(&Hls::handle(&req, &view));
    // Everything as before, plus one I-frame playlist per video track.
    assert!(m.starts_with(&plain), "{m}");
    let inf = "#EXT-X-I-FRAME-STREAM-INF";
    assert_eq!(m.matches(inf).count(), 1, "{m}");
    assert_eq!(attribute(&m, inf, "CODECS"), Some("avc1.64000d"));
    assert_eq!(attribute(&m, inf, "RESOLUTION"), Some("320x240"));
    assert_eq!(
        attribute(&m, inf, "URI"),
        Some("m3u8-iframes/t1/iframes.m3u8")
    );
    let bandwidth: u64 = attribute(&m, inf, "BANDWIDTH").unwrap().parse().unwrap();
    assert!(bandwidth > 0, "{m}");
    // The TS format's playlists do not list fMP4 I-frame playlists.
    let req = Request {
        format: "m3u8-aapl".into(),
        path: "Manifest(format=m3u8-aapl)".into(),
        ..req
    };
    assert!(!text(&Hls::handle(&req, &view)).contains(inf));
}

#[test]
fn audio_only_and_video_only_presentations() {
    let mut v = MemoryView::new(PresentationState::Live, 2000, None);
    v.add_track(audio_track(2, "und"));
    v.add_track(audio_track(3, "de"));
    fill(&mut v, None, &[2, 3], 0, 2);
    let m = text(&get(&v, "Manifest(format=m3u8-cmaf)"));
    assert!(!m.contains("#EXT-X-MEDIA"), "{m}");
    assert_eq!(m.matches("#EXT-X-STREAM-INF").count(), 2);
    assert!(!m.contains("AUDIO="), "{m}");
    assert!(!m.contains("RESOLUTION="), "{m}");
    assert_eq!(
        attribute(&m, "#EXT-X-STREAM-INF", "CODECS"),
        Some("mp4a.40.2")
    );
    assert!(m.contains("\nm3u8-cmaf/t2/index.m3u8\n") && m.contains("\nm3u8-cmaf/t3/index.m3u8\n"));

    let mut v = MemoryView::new(PresentationState::Live, 2000, None);
    v.add_track(video_track());
    fill(&mut v, Some(1), &[], 0, 2);
    let m = text(&get(&v, "Manifest(format=m3u8-cmaf)"));
    assert!(!m.contains("#EXT-X-MEDIA"), "{m}");
    assert!(!m.contains("AUDIO="), "{m}");
    assert_eq!(
        attribute(&m, "#EXT-X-STREAM-INF", "CODECS"),
        Some("avc1.64000d")
    );
}

#[test]
fn empty_presentation_is_not_found_briefly() {
    let mut v = MemoryView::new(PresentationState::Live, 2000, None);
    v.add_track(video_track());
    v.add_track(audio_track(2, "en"));
    for path in ["Manifest(format=m3u8-cmaf)", "m3u8-cmaf/t1/index.m3u8"] {
        let r = get(&v, path);
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.cache, CachePolicy::MaxAge(1));
    }
}

#[test]
fn live_media_playlist() {
    let view = presentation(PresentationState::Live);
    let r = get(&view, "m3u8-cmaf/t1/index.m3u8");
    assert_eq!(r.content_type, "application/vnd.apple.mpegurl");
    assert_eq!(r.cache, CachePolicy::MaxAge(1));
    let p = text(&r);
    golden("media_live_video.m3u8", &p);
    assert!(p.starts_with(
        "#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:500
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI=\"init.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2024-03-01T00:16:40.000Z
#EXTINF:2.000,
90000000.m4s
"
    ));
    assert_eq!(p.matches("#EXTINF:2.000,\n").count(), COUNT as usize);
    assert!(p.contains(
        "#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2024-03-01T00:16:46.000Z\n#EXTINF:2.000,\n90540000.m4s\n"
    ));
    assert!(!p.contains("#EXT-X-ENDLIST"));

    // Audio: starts off the grid by a fraction of a frame; the sequence
    // number still comes out of media time.
    let a = text(&get(&view, "m3u8-cmaf/t2/index.m3u8"));
    golden("media_live_audio.m3u8", &a);
    assert!(a.contains("#EXT-X-MEDIA-SEQUENCE:500\n"));
    assert!(a.contains("#EXT-X-TARGETDURATION:2\n"), "{a}");
    assert!(a.contains("#EXTINF:2.005,\n48096256.m4s\n"), "{a}");
    // The date is written on the first segment and carried by EXTINF after.
    assert!(a.contains("#EXT-X-PROGRAM-DATE-TIME:2024-03-01T00:16:40.000Z\n"));
    assert_eq!(a.matches("#EXT-X-PROGRAM-DATE-TIME:").count(), 2, "{a}");

    // The same fragments give the same bytes.
    assert_eq!(get(&view, "m3u8-cmaf/t1/index.m3u8"), r);
}

#[test]
fn sliding_window_moves_the_media_sequence_with_media_time() {
    let mut view = presentation(PresentationState::Live);
    fill(&mut view, Some(1), &[2, 3], FIRST + COUNT, 2);
    view.trim_before_ms((FIRST + 3) * 2000);
    for track in [1, 2, 3] {
        let p = text(&get(&view, &format!("m3u8-cmaf/t{track}/index.m3u8")));
        assert!(
            p.contains("#EXT-X-MEDIA-SEQUENCE:503\n"),
            "track {track}: {p}"
        );
        assert_eq!(p.matches("#EXTINF").count(), 5);
        // The discontinuity was on the first listed fragment: nothing to
        // be discontinuous with, but it is counted.
        assert!(!p.contains("#EXT-X-DISCONTINUITY\n"), "{p}");
        assert!(p.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{p}");
    }
    // Once it slid out, the count stays (RFC 8216bis 6.2.1), for TS too.
    view.trim_before_ms((FIRST + 5) * 2000);
    for r in [
        get(&view, "m3u8-cmaf/t1/index.m3u8"),
        get_aapl(&view, "m3u8-aapl/t1/index.m3u8"),
    ] {
        let p = text(&r);
        assert!(p.contains("#EXT-X-MEDIA-SEQUENCE:505\n"), "{p}");
        assert!(p.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{p}");
    }
}

#[test]
fn ended_media_playlist_and_no_program_date_time() {
    let mut view = presentation(PresentationState::Ended);
    view.info.epoch_ms = None;
    let r = get(&view, "m3u8-cmaf/t1/index.m3u8");
    assert_eq!(r.cache, CachePolicy::MaxAge(3600));
    let p = text(&r);
    golden("media_ended_video.m3u8", &p);
    assert!(p.ends_with("90900000.m4s\n#EXT-X-ENDLIST\n"));
    assert!(!p.contains("PROGRAM-DATE-TIME"));
    let m = get(&view, "Manifest(format=m3u8-cmaf)");
    assert_eq!(m.cache, CachePolicy::MaxAge(3600));
}

#[test]
fn target_duration_covers_the_longest_segment_and_the_grid() {
    let mut v = MemoryView::new(PresentationState::Live, 4000, None);
    v.add_track(video_track());
    fill(&mut v, Some(1), &[], 0, 2); // 2 s fragments on a 4 s grid
    let p = text(&get(&v, "m3u8-cmaf/t1/index.m3u8"));
    assert!(p.contains("#EXT-X-TARGETDURATION:4\n"), "{p}");
    assert_eq!(
        get(&v, "m3u8-cmaf/t1/index.m3u8").cache,
        CachePolicy::MaxAge(2)
    );
    // A 5.04 s fragment.
    let long: Vec<_> = (0..126).map(|_| video_fragment(9, 1)[1]).collect();
    let len = long.iter().map(|s| s.size).sum();
    v.push(1, 360_000, long, payload(0, len), false);
    let p = text(&get(&v, "m3u8-cmaf/t1/index.m3u8"));
    // 5.04 s rounds to 5, as RFC 8216 compares them.
    assert!(p.contains("#EXT-X-TARGETDURATION:5\n"), "{p}");
    assert!(p.contains("#EXTINF:5.040,\n360000.m4s\n"), "{p}");
}

#[test]
fn init_segments_parse() {
    let view = presentation(PresentationState::Live);
    let r = get(&view, "m3u8-cmaf/t1/init.mp4");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "video/mp4");
    assert_eq!(r.cache, CachePolicy::Immutable);
    let body = view.assemble(&r).expect("references resolve");
    golden("init_video.dump", &bmff::dump(&body));

    let mut rd = Reader::new(&body);
    let ftyp = Ftyp::from_box(&rd.next_box().unwrap().unwrap()).unwrap();
    assert_eq!(ftyp.major_brand.to_string(), "iso6");
    let brands: Vec<String> = ftyp
        .compatible_brands
        .iter()
        .map(|b| b.to_string())
        .collect();
    assert_eq!(brands, ["iso6", "cmfc"]);
    let moov = Moov::from_box(&rd.next_box().unwrap().unwrap()).unwrap();
    rd.finish().unwrap();
    assert_eq!(moov.traks.len(), 1);
    let trak = &moov.traks[0];
    assert_eq!(trak.tkhd.track_id, 1);
    assert_eq!(trak.mdia.mdhd.timescale, 90_000);
    let SampleDescription::Avc1(avc1) = &trak.mdia.minf.stbl.stsd.entries[0] else {
        panic!("avc1 expected");
    };
    assert_eq!(avc1.avcc, AVCC);
    assert_eq!(moov.mvex.unwrap().trex[0].track_id, 1);

    let r = get(&view, "m3u8-cmaf/t3/init.mp4");
    assert_eq!(r.content_type, "audio/mp4");
    let body = view.assemble(&r).expect("references resolve");
    golden("init_audio_fr.dump", &bmff::dump(&body));
    let moov = Moov::decode(&body[24..]).unwrap();
    let trak = &moov.traks[0];
    assert_eq!(trak.mdia.mdhd.language, *b"fra");
    let SampleDescription::Mp4a(mp4a) = &trak.mdia.minf.stbl.stsd.entries[0] else {
        panic!("mp4a expected");
    };
    assert_eq!(mp4a.esds.decoder_specific_info, ASC);
    assert_eq!((mp4a.channel_count, mp4a.sample_rate), (2, 48_000));
}

#[test]
fn media_segment_references_the_payload() {
    let view = presentation(PresentationState::Live);
    let start = 501 * 180_000;
    let r = get(&view, &format!("m3u8-cmaf/t1/{start}.m4s"));
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "video/mp4");
    assert_eq!(r.cache, CachePolicy::Immutable);
    let stored = &view.fragments[&1][&start];
    let [BodyPart::Bytes(head), BodyPart::SampleData(data)] = r.body.as_slice() else {
        panic!("header and one data reference expected: {r:?}");
    };
    assert_eq!(
        *data,
        DataRef {
            track: 1,
            start,
            offset: 0,
            length: stored.fragment.size
        }
    );
    golden("segment_video_header.dump", &bmff::dump(head));

    let body = view.assemble(&r).expect("references resolve");
    let mut rd = Reader::new(&body);
    let styp = Styp::from_box(&rd.next_box().unwrap().unwrap()).unwrap();
    assert_eq!(styp.major_brand.to_string(), "cmfs");
    let moof_box = rd.next_box().unwrap().unwrap();
    let moof_at = body.len() - rd.remaining() - moof_box.len();
    let moof = Moof::from_box(&moof_box).unwrap();
    let mdat = rd.next_box().unwrap().unwrap();
    rd.finish().unwrap();
    assert_eq!(mdat.body, stored.data.as_slice());

    assert_eq!(moof.mfhd.sequence_number, 501);
    let traf = &moof.trafs[0];
    assert_eq!(traf.tfhd.track_id, 1);
    assert!(traf.tfhd.default_base_is_moof);
    assert_eq!(traf.tfdt.unwrap().base_media_decode_time, start);
    let trun = &traf.truns[0];
    // The data offset, from the moof, lands on the first payload byte.
    let first = moof_at + trun.data_offset.unwrap() as usize;
    assert_eq!(&body[first..], stored.data.as_slice());
    assert_eq!(trun.samples.len(), 50);
    for (t, s) in trun.samples.iter().zip(&stored.samples) {
        assert_eq!(t.duration, Some(s.duration));
        assert_eq!(t.size, Some(s.size));
        assert_eq!(t.composition_offset, Some(s.composition_offset));
        assert_eq!(t.flags, Some(bmff::sample_flags(s.keyframe)));
    }

    // Audio: no composition offsets, all sync samples.
    let a = &view.fragments[&2];
    let (&start, stored) = a.iter().nth(1).unwrap();
    let r = get(&view, &format!("m3u8-cmaf/t2/{start}.m4s"));
    assert_eq!(r.content_type, "audio/mp4");
    let body = view.assemble(&r).expect("references resolve");
    let moof =
        Moof::decode(&body[24..24 + u32::from_be_bytes(body[24..28].try_into().unwrap()) as usize])
            .unwrap();
    let trun = &moof.trafs[0].truns[0];
    assert_eq!(trun.samples.len(), stored.samples.len());
    assert!(
        trun.samples
            .iter()
            .all(|s| s.composition_offset.is_none() && s.flags == Some(bmff::SAMPLE_FLAGS_SYNC))
    );
    assert!(body.ends_with(&stored.data));
}

#[test]
fn not_found() {
    let view = presentation(PresentationState::Live);
    let newest = (FIRST + COUNT - 1) * 180_000;
    for path in [
        "",
        "Manifest",
        "Manifest(format=m3u8-aapl)",
        "m3u8-cmaf/t9/index.m3u8",
        "m3u8-cmaf/t9/init.mp4",
        "m3u8-cmaf/t4/index.m3u8", // a data track
        "m3u8-cmaf/t4/init.mp4",
        "m3u8-cmaf/t1/index.m3u8x",
        "m3u8-cmaf/t01/index.m3u8",
        "m3u8-cmaf/t1/0180000.m4s",
        "m3u8-cmaf/t1/90000001.m4s", // inside the timeline, not a start
        &format!("m3u8-cmaf/t1/{}.m4s", 100 * 180_000), // before the window
        &format!("m3u8-cmaf/t1/{}.m4s", newest + 180_000), // beyond the live edge
        "m3u8-cmaf/t1/99999999999999999999999.m4s",
    ] {
        let r = get(&view, path);
        assert_eq!(r.status, 404, "{path:?}");
        assert_eq!(r.cache, CachePolicy::MaxAge(1), "{path:?}");
    }
    // Another format routed here by mistake.
    let req = Request {
        format: "mpd-time-cmaf".into(),
        path: "Manifest(format=m3u8-cmaf)".into(),
        ..Request::default()
    };
    assert_eq!(Hls::handle(&req, &view).status, 404);
}

// ---------------------------------------------------------------------------
// m3u8-aapl: playlists and TS segments.

fn get_aapl(view: &MemoryView, path: &str) -> Response {
    let req = Request {
        format: "m3u8-aapl".into(),
        path: path.into(),
        ..Request::default()
    };
    Hls::handle(&req, view)
}

/// Length-prefixed NAL units: one slice per sample (IDR on keyframes).
fn nal_payload(samples: &[SampleEntry], seed: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        let body = payload(seed + i as u64, s.size - 5);
        out.extend_from_slice(&(s.size - 4).to_be_bytes());
        out.push(if s.keyframe { 0x65 } else { 0x41 });
        out.extend_from_slice(&body);
    }
    out
}

/// Like [`presentation`], with video payloads that are real NAL framing.
fn ts_presentation(state: PresentationState) -> MemoryView {
    let mut v = MemoryView::new(state, 2000, Some(EPOCH_MS));
    v.add_track(video_track());
    v.add_track(audio_track(2, "en"));
    v.add_track(audio_track(3, "fr"));
    for k in FIRST..FIRST + COUNT {
        let disc = k == DISCONTINUITY_AT;
        let s = video_fragment(k, 1);
        let data = nal_payload(&s, k);
        v.push(1, k * 180_000, s, data, disc);
        for id in [2, 3] {
            let s = audio_fragment(k);
            let len = s.iter().map(|s| s.size).sum();
            v.push(
                id,
                audio_frame_at(k) * 1024,
                s,
                payload(k + id as u64, len),
                disc,
            );
        }
    }
    v
}

#[test]
fn aapl_playlists() {
    let view = ts_presentation(PresentationState::Live);
    let m = text(&get_aapl(&view, "Manifest(format=m3u8-aapl)"));
    golden("aapl_multivariant.m3u8", &m);
    assert!(m.starts_with("#EXTM3U\n#EXT-X-VERSION:3\n"));
    // The default (muxed) rendition has no URI; the other is audio-only TS.
    assert!(m.contains(
        "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"en\",LANGUAGE=\"en\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\"\n"
    ));
    assert!(m.contains("NAME=\"fr\",LANGUAGE=\"fr\",DEFAULT=NO,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"m3u8-aapl/t3/index.m3u8\"\n"));
    let inf = "#EXT-X-STREAM-INF";
    assert_eq!(attribute(&m, inf, "CODECS"), Some("avc1.64000d,mp4a.40.2"));
    assert!(m.ends_with("\nm3u8-aapl/t1/index.m3u8\n"));
    // BANDWIDTH covers the largest segment actually served.
    let bandwidth: u64 = attribute(&m, inf, "BANDWIDTH").unwrap().parse().unwrap();
    for k in FIRST..FIRST + COUNT {
        let r = get_aapl(&view, &format!("m3u8-aapl/t1/{}.ts", k * 180_000));
        let audio = get_aapl(
            &view,
            &format!("m3u8-aapl/t3/{}.ts", audio_frame_at(k) * 1024),
        );
        let bits = (r.body_len() + audio.body_len()) * 8 / 2;
        assert!(bits <= bandwidth, "{bits} > {bandwidth}");
    }

    let p = text(&get_aapl(&view, "m3u8-aapl/t1/index.m3u8"));
    golden("aapl_media_live_video.m3u8", &p);
    assert!(p.starts_with(
        "#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:500
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-PROGRAM-DATE-TIME:2024-03-01T00:16:40.000Z
#EXTINF:2.000,
90000000.ts
"
    ));
    assert!(!p.contains("EXT-X-MAP"));
    assert!(p.contains("#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2024-03-01T00:16:46.000Z\n#EXTINF:2.000,\n90540000.ts\n"));
    assert!(!p.contains("#EXT-X-ENDLIST"));

    let ended = ts_presentation(PresentationState::Ended);
    let a = text(&get_aapl(&ended, "m3u8-aapl/t3/index.m3u8"));
    golden("aapl_media_ended_audio.m3u8", &a);
    assert!(a.contains("#EXTINF:2.005,\n48096256.ts\n"), "{a}");
    assert!(a.ends_with("#EXT-X-ENDLIST\n"));

    // Audio only: one audio-only variant per track, no groups.
    let mut v = MemoryView::new(PresentationState::Live, 2000, None);
    v.add_track(audio_track(2, "und"));
    v.add_track(audio_track(3, "de"));
    fill(&mut v, None, &[2, 3], 0, 2);
    let m = text(&get_aapl(&v, "Manifest(format=m3u8-aapl)"));
    assert!(!m.contains("#EXT-X-MEDIA"), "{m}");
    assert_eq!(m.matches(inf).count(), 2);
    assert!(m.contains("\nm3u8-aapl/t2/index.m3u8\n"));

    // One audio track: muxed, no group at all.
    let mut v = MemoryView::new(PresentationState::Live, 2000, None);
    v.add_track(video_track());
    v.add_track(audio_track(2, "en"));
    for k in 0..2 {
        let s = video_fragment(k, 1);
        let data = nal_payload(&s, k);
        v.push(1, k * 180_000, s, data, false);
    }
    fill(&mut v, None, &[2], 0, 2);
    let m = text(&get_aapl(&v, "Manifest(format=m3u8-aapl)"));
    assert!(!m.contains("#EXT-X-MEDIA") && !m.contains("AUDIO="), "{m}");
    assert_eq!(attribute(&m, inf, "CODECS"), Some("avc1.64000d,mp4a.40.2"));

    for bad in [
        "m3u8-aapl/t4/index.m3u8",
        "m3u8-aapl/t1/12.ts",
        "m3u8-aapl/t1/init.mp4",
    ] {
        assert_eq!(get_aapl(&view, bad).status, 404, "{bad}");
    }
}

#[test]
fn aapl_segments_carry_every_frame_once() {
    use crate::ts::tests::{parse, pes, section};
    let view = ts_presentation(PresentationState::Live);
    let mut audio_dts: Vec<u64> = Vec::new();
    let mut video_count = 0;
    for k in FIRST..FIRST + COUNT {
        let start = k * 180_000;
        let r = get_aapl(&view, &format!("m3u8-aapl/t1/{start}.ts"));
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type, "video/mp2t");
        assert_eq!(r.cache, CachePolicy::Immutable);
        let ts = view.assemble(&r).unwrap();
        // Reproducible.
        assert_eq!(
            view.assemble(&get_aapl(&view, &format!("m3u8-aapl/t1/{start}.ts")))
                .unwrap(),
            ts
        );
        let packets = parse(&ts);
        assert_eq!(packets[0].pid, 0);
        assert_eq!(packets[1].pid, 0x1000);
        section(&packets[0]);
        let pmt = section(&packets[1]);
        assert_eq!(
            &pmt[12..22],
            &[0x1b, 0xe1, 0x00, 0xf0, 0x00, 0x0f, 0xe1, 0x01, 0xf0, 0x00]
        );
        // Tables count from the sequence number; elementary streams from
        // 0, closing on 0 so the next segment continues them.
        for pid in [0, 0x1000] {
            let p: Vec<_> = packets.iter().filter(|p| p.pid == pid).collect();
            assert_eq!(p.len(), 1);
            assert_eq!(u64::from(p[0].cc), k % 16);
        }
        for pid in [0x100, 0x101] {
            let p: Vec<_> = packets.iter().filter(|p| p.pid == pid).collect();
            assert_eq!(p.len() % 16, 0, "pid {pid:#x}");
            for (i, p) in p.iter().enumerate() {
                assert_eq!(p.cc as usize, i % 16, "pid {pid:#x}");
            }
        }
        // PCR at most 100 ms apart, never ahead of any DTS.
        let pcrs: Vec<u64> = packets.iter().filter_map(|p| p.pcr).collect();
        assert_eq!(pcrs.first(), Some(&(start)));
        assert!(pcrs.windows(2).all(|w| w[1] > w[0] && w[1] - w[0] <= 9000));
        let units = pes(&packets);
        let video: Vec<_> = units.iter().filter(|u| u.pid == 0x100).collect();
        assert_eq!(video.len(), 50);
        video_count += video.len();
        let stored = &view.fragments[&1][&start].samples;
        let mut dts = start;
        for (i, (u, s)) in video.iter().zip(stored).enumerate() {
            assert_eq!(u.dts.unwrap_or(u.pts), dts + 63_000);
            assert_eq!(
                u.pts as i64,
                (dts + 63_000) as i64 + i64::from(s.composition_offset)
            );
            // AUD, then SPS+PPS on the keyframe, then the slice.
            assert_eq!(&u.data[..6], &[0, 0, 0, 1, 9, 0xf0]);
            let sps_pps = if i == 0 { 8 + 0x19 + 6 } else { 0 };
            assert_eq!(&u.data[6 + sps_pps..10 + sps_pps], &[0, 0, 0, 1]);
            assert_eq!(u.data.len(), 6 + sps_pps + s.size as usize);
            if i == 0 {
                assert_eq!(u.data[10], 0x67);
            }
            dts += u64::from(s.duration);
        }
        // Audio in the video segment: ADTS frames with DTS in the segment.
        for u in units.iter().filter(|u| u.pid == 0x101) {
            assert_eq!(u.stream_id, 0xc0);
            assert_eq!(&u.data[..2], &[0xff, 0xf1]);
            let t = u.pts - 63_000;
            assert!((start..start + 180_000).contains(&t), "{t}");
            audio_dts.push(t);
        }
        // Interleaved by DTS.
        let keys: Vec<u64> = units.iter().map(|u| u.dts.unwrap_or(u.pts)).collect();
        assert!(keys.windows(2).all(|w| w[0] <= w[1]));
    }
    assert_eq!(video_count, 50 * COUNT as usize);
    // Every audio frame of the window's span, once, in order.
    let expected: Vec<u64> = (audio_frame_at(FIRST)..audio_frame_at(FIRST + COUNT))
        .map(|f| f * 1024 * 90_000 / 48_000)
        .filter(|&t| t < (FIRST + COUNT) * 180_000)
        .collect();
    assert_eq!(audio_dts, expected);

    // Audio-only segment: PCR on the audio PID, every frame of the fragment.
    let start = audio_frame_at(FIRST + 1) * 1024;
    let r = get_aapl(&view, &format!("m3u8-aapl/t3/{start}.ts"));
    let packets = parse(&view.assemble(&r).unwrap());
    let pmt = section(&packets[1]);
    assert_eq!(&pmt[8..10], &[0xe1, 0x01], "PCR on audio");
    let units = pes(&packets);
    assert_eq!(units.len(), audio_fragment(FIRST + 1).len());
    assert!(units.iter().all(|u| u.pid == 0x101));
    assert!(
        packets
            .iter()
            .filter(|p| p.pid == 0x101 && p.start)
            .all(|p| p.pcr.is_some())
    );
}

#[test]
fn aapl_video_waits_for_its_audio_while_live() {
    let mut view = ts_presentation(PresentationState::Live);
    // Video runs one fragment ahead of audio.
    let k = FIRST + COUNT;
    let s = video_fragment(k, 1);
    let data = nal_payload(&s, k);
    view.push(1, k * 180_000, s, data, false);
    let newest = format!("m3u8-aapl/t1/{}.ts", k * 180_000);
    let p = text(&get_aapl(&view, "m3u8-aapl/t1/index.m3u8"));
    assert_eq!(p.matches("#EXTINF").count(), COUNT as usize, "{p}");
    assert!(!p.contains(&format!("{}.ts", k * 180_000)));
    let r = get_aapl(&view, &newest);
    assert_eq!((r.status, r.cache), (404, CachePolicy::MaxAge(1)));
    // The one before is complete and served.
    let r = get_aapl(&view, &format!("m3u8-aapl/t1/{}.ts", (k - 1) * 180_000));
    assert_eq!(r.status, 200);
    // Three fragments ahead: audio is not waited for beyond two.
    for k in [k + 1, k + 2] {
        let s = video_fragment(k, 1);
        let data = nal_payload(&s, k);
        view.push(1, k * 180_000, s, data, false);
    }
    let p = text(&get_aapl(&view, "m3u8-aapl/t1/index.m3u8"));
    assert_eq!(p.matches("#EXTINF").count(), COUNT as usize + 1, "{p}");
    assert_eq!(get_aapl(&view, &newest).status, 200);
    // Ended: everything is listed.
    view.info.state = PresentationState::Ended;
    let p = text(&get_aapl(&view, "m3u8-aapl/t1/index.m3u8"));
    assert_eq!(p.matches("#EXTINF").count(), COUNT as usize + 3, "{p}");
    // The cmaf format never waits.
    view.info.state = PresentationState::Live;
    let p = text(&get(&view, "m3u8-cmaf/t1/index.m3u8"));
    assert_eq!(p.matches("#EXTINF").count(), COUNT as usize + 3, "{p}");
}
