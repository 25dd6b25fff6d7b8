//! Behaviour of the packager against an in-memory presentation: MPDs
//! (compared with golden files in `tests/golden/`, `BLESS=1` rewrites
//! them), init and media segments parsed back with the SDK, errors.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use sluice_sdk::bmff::{self, BmffBox, Ftyp, Moof, Moov, Reader, SampleDescription, Styp};
use sluice_sdk::plugin::{
    BodyPart, CachePolicy, DataRef, MemoryView, Packager, PresentationState, Request, Response,
    TrackInfo, TrackKind,
};
use sluice_sdk::testing::{
    self, ASC, AVCC, EPOCH_MS, audio_fragment, audio_frame_at, payload, text, video_fragment,
};

use crate::Dash;
use crate::paths::{Flavour, segment_path};

/// The window starts at media time 1000 s: fragment index 500.
const FIRST: u64 = 500;
const COUNT: u64 = 6;

fn video_track(id: u32, height: u32, codec: bool) -> TrackInfo {
    TrackInfo {
        fourcc: "avc1".into(),
        codec: if codec {
            "avc1.64000d".into()
        } else {
            String::new()
        },
        codec_private: AVCC.to_vec(),
        stream: format!("{height}p"),
        width: height * 4 / 3,
        height,
        ..TrackInfo::new(id, TrackKind::Video, 90_000)
    }
}

fn audio_track(id: u32, language: &str) -> TrackInfo {
    TrackInfo {
        fourcc: "mp4a".into(),
        codec_private: ASC.to_vec(),
        language: language.into(),
        sample_rate: 48_000,
        channels: 2,
        bitrate: 128_000,
        ..TrackInfo::new(id, TrackKind::Audio, 48_000)
    }
}

/// Adds fragments `first..first+count` of every track of the view; the
/// fragment at `discontinuity` is flagged.
fn fill(view: &mut MemoryView, first: u64, count: u64, discontinuity: Option<u64>) {
    for t in view.tracks.clone() {
        for k in first..first + count {
            let disc = discontinuity == Some(k);
            let (start, s) = match t.kind {
                TrackKind::Video => (k * 180_000, video_fragment(k, t.height / 240)),
                _ => (audio_frame_at(k) * 1024, audio_fragment(k)),
            };
            let len = s.iter().map(|s| s.size).sum();
            view.push(t.id, start, s, payload(k + u64::from(t.id), len), disc);
        }
    }
}

/// Video and English audio, 6 fragments from media time 1000 s.
fn presentation(state: PresentationState) -> MemoryView {
    let mut v = MemoryView::new(state, 2000, Some(EPOCH_MS));
    v.info.window_ms = 120_000;
    v.add_track(video_track(1, 240, true));
    v.add_track(audio_track(2, "en"));
    let mut data = TrackInfo::new(4, TrackKind::Data, 1000);
    data.fourcc = "mett".into();
    v.add_track(data);
    fill(&mut v, FIRST, COUNT, None);
    v
}

fn get_as(view: &MemoryView, flavour: Flavour, path: &str) -> Response {
    let req = Request {
        format: flavour.format().into(),
        path: path.into(),
        ..Request::default()
    };
    Dash::handle(&req, view)
}

fn get(view: &MemoryView, path: &str) -> Response {
    get_as(view, Flavour::Csf, path)
}

fn mpd(view: &MemoryView, flavour: Flavour) -> String {
    let r = get_as(view, flavour, &flavour.manifest());
    assert_eq!(r.content_type, "application/dash+xml");
    text(&r)
}

/// Compares with `tests/golden/{name}`; `BLESS=1` rewrites the file.
fn golden(name: &str, actual: &str) {
    testing::golden(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden"),
        name,
        actual,
    );
}

/// The value of attribute `name` on the first element `<tag ` of `xml`.
fn attr<'a>(xml: &'a str, tag: &str, name: &str) -> Option<&'a str> {
    let at = xml.find(&format!("<{tag} "))?;
    let element = &xml[at..at + xml[at..].find('>')?];
    let pat = format!(" {name}=\"");
    let from = element.find(&pat)? + pat.len();
    Some(&element[from..from + element[from..].find('"')?])
}

#[test]
fn info_names_both_formats() {
    let i = Dash::info();
    assert_eq!(i.name, "dash");
    assert_eq!(i.formats, ["mpd-time-csf", "mpd-time-cmaf"]);
}

#[test]
fn live_mpd() {
    let view = presentation(PresentationState::Live);
    let r = get(&view, "Manifest(format=mpd-time-csf)");
    assert_eq!(r.cache, CachePolicy::MaxAge(1));
    let m = text(&r);
    golden("live.mpd", &m);
    assert_eq!(attr(&m, "MPD", "type"), Some("dynamic"));
    assert_eq!(
        attr(&m, "MPD", "profiles"),
        Some("urn:mpeg:dash:profile:isoff-live:2011")
    );
    assert_eq!(
        attr(&m, "MPD", "availabilityStartTime"),
        Some("2024-03-01T00:00:00Z")
    );
    // The live edge: the end of the newest fragment of any track (audio's
    // fragment 505 ends at media time 1012.010 s).
    assert_eq!(
        attr(&m, "MPD", "publishTime"),
        Some("2024-03-01T00:16:52.010Z")
    );
    assert_eq!(attr(&m, "MPD", "timeShiftBufferDepth"), Some("PT120S"));
    assert_eq!(attr(&m, "MPD", "minimumUpdatePeriod"), Some("PT2S"));
    // Audio's 2.005 s segments are the longest.
    assert_eq!(attr(&m, "MPD", "maxSegmentDuration"), Some("PT2.006S"));
    assert!(m.contains(
        "<UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-head:2014\" value=\"Manifest(format=mpd-time-csf)\"/>"
    ));
    assert!(!m.contains("mediaPresentationDuration"));
    assert!(!m.contains("presentationTimeOffset"), "media time from AST");
    assert!(
        m.contains("<S t=\"90000000\" d=\"180000\" r=\"5\"/>"),
        "{m}"
    );
    assert_eq!(m.matches("<AdaptationSet ").count(), 2, "no data track");
    assert_eq!(attr(&m, "Representation", "codecs"), Some("avc1.64000d"));
    assert_eq!(attr(&m, "Representation", "frameRate"), Some("25"));
    assert!(m.contains("<Representation id=\"2\" codecs=\"mp4a.40.2\""));
    assert!(m.contains("audioSamplingRate=\"48000\""));
    assert!(m.contains("<AudioChannelConfiguration schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\"2\"/>"));
    assert!(m.contains("lang=\"en\""));
    assert!(m.contains(
        "initialization=\"mpd-time-csf/t$RepresentationID$/init.mp4\" media=\"mpd-time-csf/t$RepresentationID$/$Time$.m4s\""
    ));
    // Audio durations vary by a frame: runs break where they change.
    assert!(
        m.contains("<S t=\"48000000\" d=\"96256\" r=\"2\"/>\n            <S d=\"95232\"/>"),
        "{m}"
    );

    // Identical input, identical bytes; the CMAF flavour differs only in
    // profile and names.
    assert_eq!(get(&view, "Manifest(format=mpd-time-csf)"), r);
    let c = mpd(&view, Flavour::Cmaf);
    golden("live_cmaf.mpd", &c);
    assert_eq!(
        c.replace("mpd-time-cmaf", "mpd-time-csf").replace(
            "urn:mpeg:dash:profile:cmaf:2019,urn:mpeg:dash:profile:isoff-live:2011",
            "urn:mpeg:dash:profile:isoff-live:2011"
        ),
        m
    );

    // Bandwidth covers the fattest segment as served.
    let peak = view.fragments[&1]
        .values()
        .map(|f| {
            let r = get(&view, &segment_path(Flavour::Csf, 1, f.fragment.start));
            (r.body_len() * 8 * 90_000).div_ceil(f.fragment.duration)
        })
        .max()
        .unwrap();
    let bw: u64 = attr(&m, "Representation", "bandwidth")
        .unwrap()
        .parse()
        .unwrap();
    assert!(bw >= peak && bw <= peak + peak / 50, "{bw} vs {peak}");
}

#[test]
fn live_mpd_with_a_discontinuity_has_a_timeline_gap() {
    let mut view = presentation(PresentationState::Live);
    // Fragments 506..507 missing; 508 follows a discontinuity.
    fill(&mut view, FIRST + COUNT + 2, 3, Some(FIRST + COUNT + 2));
    let m = mpd(&view, Flavour::Csf);
    golden("live_discontinuity.mpd", &m);
    assert!(m.contains(
        "<S t=\"90000000\" d=\"180000\" r=\"5\"/>\n            <S t=\"91440000\" d=\"180000\" r=\"2\"/>"
    ), "{m}");
    assert_eq!(m.matches("<Period ").count(), 1);
    assert_eq!(
        attr(&m, "MPD", "publishTime"),
        Some("2024-03-01T00:17:02.016Z")
    );

    // A flagged discontinuity without a gap restarts the run with `t`.
    let mut view = presentation(PresentationState::Live);
    fill(&mut view, FIRST + COUNT, 1, Some(FIRST + COUNT));
    let m = mpd(&view, Flavour::Csf);
    assert!(
        m.contains(
            "<S t=\"90000000\" d=\"180000\" r=\"5\"/>\n            <S t=\"91080000\" d=\"180000\"/>"
        ),
        "{m}"
    );
}

#[test]
fn ended_mpd_is_static() {
    let view = presentation(PresentationState::Ended);
    let r = get(&view, "Manifest(format=mpd-time-csf)");
    assert_eq!(r.cache, CachePolicy::MaxAge(3600));
    let m = text(&r);
    golden("ended.mpd", &m);
    assert_eq!(attr(&m, "MPD", "type"), Some("static"));
    assert_eq!(
        attr(&m, "MPD", "mediaPresentationDuration"),
        Some("PT12.01S")
    );
    for gone in [
        "availabilityStartTime",
        "minimumUpdatePeriod",
        "UTCTiming",
        "timeShiftBufferDepth",
    ] {
        assert!(!m.contains(gone), "{gone}: {m}");
    }
    // The presentation starts at its first fragment.
    assert!(m.contains("timescale=\"90000\" presentationTimeOffset=\"90000000\""));
    assert!(m.contains("timescale=\"48000\" presentationTimeOffset=\"48000000\""));
}

#[test]
fn audio_only_mpd() {
    let mut v = MemoryView::new(PresentationState::Live, 2000, None);
    v.add_track(audio_track(0, ""));
    fill(&mut v, 0, 3, None);
    let m = mpd(&v, Flavour::Cmaf);
    golden("audio_only.mpd", &m);
    assert_eq!(m.matches("<AdaptationSet ").count(), 1);
    assert!(!m.contains("lang="));
    assert!(!m.contains("video"));
    // No epoch: media time 0 is the Unix epoch.
    assert_eq!(
        attr(&m, "MPD", "availabilityStartTime"),
        Some("1970-01-01T00:00:00Z")
    );
    // Window 0 (everything held): the span held.
    assert_eq!(attr(&m, "MPD", "timeShiftBufferDepth"), Some("PT6.016S"));
    assert!(m.contains("<Representation id=\"0\""));
    assert_eq!(
        get_as(&v, Flavour::Cmaf, "mpd-time-cmaf/t0/init.mp4").status,
        200
    );
}

#[test]
fn multi_bitrate_and_two_languages() {
    let mut v = MemoryView::new(PresentationState::Live, 2000, Some(EPOCH_MS));
    v.info.window_ms = 60_000;
    v.add_track(video_track(1, 240, false));
    v.add_track(audio_track(2, "en"));
    v.add_track(video_track(3, 480, false));
    v.add_track(audio_track(4, "fr"));
    v.add_track(video_track(5, 720, false));
    fill(&mut v, FIRST, 3, None);
    let m = mpd(&v, Flavour::Csf);
    golden("multi.mpd", &m);
    let sets: Vec<&str> = m.split("<AdaptationSet ").skip(1).collect();
    assert_eq!(sets.len(), 3);
    assert!(sets[0].starts_with("id=\"0\" contentType=\"video\""));
    assert_eq!(sets[0].matches("<Representation ").count(), 3);
    assert!(sets[1].contains("lang=\"en\"") && sets[1].contains("<Representation id=\"2\""));
    assert!(sets[2].contains("lang=\"fr\"") && sets[2].contains("<Representation id=\"4\""));
    // Codec strings derived from avcC.
    assert!(sets[0].contains("codecs=\"avc1.64000d\" bandwidth="));
    let bw = |id: &str| -> u64 {
        let at = m.find(&format!("<Representation id=\"{id}\"")).unwrap();
        attr(&m[at..], "Representation", "bandwidth")
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(bw("1") < bw("3") && bw("3") < bw("5"));
    assert!(m.contains("width=\"960\" height=\"720\""));
}

#[test]
fn values_are_escaped() {
    let mut v = MemoryView::new(PresentationState::Live, 2000, None);
    v.add_track(audio_track(2, "x\"><evil a='1'&"));
    fill(&mut v, 0, 1, None);
    let m = mpd(&v, Flavour::Csf);
    assert!(
        m.contains("lang=\"x&quot;&gt;&lt;evil a=&apos;1&apos;&amp;\""),
        "{m}"
    );
    assert!(!m.contains("<evil"));
}

#[test]
fn empty_presentation_is_not_found_briefly() {
    let mut v = MemoryView::new(PresentationState::Live, 2000, None);
    v.add_track(video_track(1, 240, true));
    let r = get(&v, "Manifest(format=mpd-time-csf)");
    assert_eq!((r.status, r.cache), (404, CachePolicy::MaxAge(1)));
}

fn brands(b: &[bmff::FourCC]) -> Vec<String> {
    b.iter().map(|b| b.to_string()).collect()
}

#[test]
fn init_segments_parse() {
    let view = presentation(PresentationState::Live);
    for (flavour, major, compatible) in [
        (Flavour::Csf, "iso6", ["iso6", "dash", "msdh"]),
        (Flavour::Cmaf, "cmf2", ["iso6", "cmfc", "cmf2"]),
    ] {
        let f = flavour.format();
        let r = get_as(&view, flavour, &format!("{f}/t1/init.mp4"));
        assert_eq!((r.status, r.cache), (200, CachePolicy::Immutable));
        assert_eq!(r.content_type, "video/mp4");
        let body = view.assemble(&r).unwrap();
        golden(&format!("init_video_{f}.dump"), &bmff::dump(&body));
        let mut rd = Reader::new(&body);
        let ftyp = Ftyp::from_box(&rd.next_box().unwrap().unwrap()).unwrap();
        assert_eq!(ftyp.major_brand.to_string(), major);
        assert_eq!(brands(&ftyp.compatible_brands), compatible);
        let moov = Moov::from_box(&rd.next_box().unwrap().unwrap()).unwrap();
        rd.finish().unwrap();
        let trak = &moov.traks[0];
        assert_eq!(trak.tkhd.track_id, 1);
        assert_eq!(trak.mdia.mdhd.timescale, 90_000);
        let SampleDescription::Avc1(avc1) = &trak.mdia.minf.stbl.stsd.entries[0] else {
            panic!("avc1 expected");
        };
        assert_eq!(avc1.avcc, AVCC);
        assert_eq!(moov.mvex.unwrap().trex[0].track_id, 1);

        let r = get_as(&view, flavour, &format!("{f}/t2/init.mp4"));
        assert_eq!(r.content_type, "audio/mp4");
        let body = view.assemble(&r).unwrap();
        let mut rd = Reader::new(&body);
        rd.next_box().unwrap().unwrap();
        let moov = Moov::from_box(&rd.next_box().unwrap().unwrap()).unwrap();
        let trak = &moov.traks[0];
        assert_eq!(trak.mdia.mdhd.language, *b"eng");
        let SampleDescription::Mp4a(mp4a) = &trak.mdia.minf.stbl.stsd.entries[0] else {
            panic!("mp4a expected");
        };
        assert_eq!(mp4a.esds.decoder_specific_info, ASC);
        assert_eq!((mp4a.channel_count, mp4a.sample_rate), (2, 48_000));
    }
}

#[test]
fn media_segments_reference_the_payload() {
    let view = presentation(PresentationState::Live);
    let start = 501 * 180_000;
    for (flavour, major, compatible) in [
        (Flavour::Csf, "msdh", ["msdh", "dash"]),
        (Flavour::Cmaf, "cmfs", ["cmfs", "msdh"]),
    ] {
        let r = get_as(&view, flavour, &segment_path(flavour, 1, start));
        assert_eq!((r.status, r.cache), (200, CachePolicy::Immutable));
        assert_eq!(r.content_type, "video/mp4");
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
        golden(
            &format!("segment_video_header_{}.dump", flavour.format()),
            &bmff::dump(head),
        );
        let body = view.assemble(&r).unwrap();
        let mut rd = Reader::new(&body);
        let styp = Styp::from_box(&rd.next_box().unwrap().unwrap()).unwrap();
        assert_eq!(styp.major_brand.to_string(), major);
        assert_eq!(brands(&styp.compatible_brands), compatible);
        let moof_box = rd.next_box().unwrap().unwrap();
        let moof_at = body.len() - rd.remaining() - moof_box.len();
        let moof = Moof::from_box(&moof_box).unwrap();
        let mdat = rd.next_box().unwrap().unwrap();
        rd.finish().unwrap();
        assert_eq!(mdat.fourcc().to_string(), "mdat");
        assert_eq!(mdat.body, stored.data.as_slice());
        assert_eq!(moof.mfhd.sequence_number, 501);
        let traf = &moof.trafs[0];
        assert_eq!(traf.tfhd.track_id, 1);
        assert_eq!(traf.tfdt.unwrap().base_media_decode_time, start);
        let trun = &traf.truns[0];
        let first = moof_at + trun.data_offset.unwrap() as usize;
        assert_eq!(&body[first..], stored.data.as_slice());
        assert_eq!(trun.samples.len(), 50);
        for (t, s) in trun.samples.iter().zip(&stored.samples) {
            assert_eq!(t.duration, Some(s.duration));
            assert_eq!(t.size, Some(s.size));
            assert_eq!(t.composition_offset, Some(s.composition_offset));
            assert_eq!(t.flags, Some(bmff::sample_flags(s.keyframe)));
        }
    }
}

#[test]
fn not_found() {
    let view = presentation(PresentationState::Live);
    let newest = (FIRST + COUNT - 1) * 180_000;
    for path in [
        "",
        "Manifest",
        "Manifest(format=mpd-time-cmaf)",
        "mpd-time-csf/t9/init.mp4",
        "mpd-time-csf/t4/init.mp4", // a data track
        "mpd-time-csf/t01/init.mp4",
        "mpd-time-csf/t1/90000001.m4s", // inside the timeline, not a start
        &format!("mpd-time-csf/t1/{}.m4s", 100 * 180_000),
        &format!("mpd-time-csf/t1/{}.m4s", newest + 180_000), // beyond the live edge
        "mpd-time-csf/t1/99999999999999999999999.m4s",
        "mpd-time-cmaf/t1/init.mp4", // the other format's tree
    ] {
        let r = get(&view, path);
        assert_eq!(
            (r.status, r.cache),
            (404, CachePolicy::MaxAge(1)),
            "{path:?}"
        );
    }
    let req = Request {
        format: "m3u8-cmaf".into(),
        path: "Manifest(format=mpd-time-csf)".into(),
        ..Request::default()
    };
    assert_eq!(Dash::handle(&req, &view).status, 404);
}

#[test]
fn sliding_window_starts_the_timeline_at_the_oldest_held_fragment() {
    let mut view = presentation(PresentationState::Live);
    fill(&mut view, FIRST + COUNT, 2, None);
    view.trim_before_ms((FIRST + 3) * 2000);
    let m = mpd(&view, Flavour::Csf);
    // Video: 503..507, one run from media time 1006 s.
    assert!(
        m.contains("<S t=\"90540000\" d=\"180000\" r=\"4\"/>"),
        "{m}"
    );
    // Availability start and period never move with the window.
    assert_eq!(
        attr(&m, "MPD", "availabilityStartTime"),
        Some("2024-03-01T00:00:00Z")
    );
    assert_eq!(attr(&m, "Period", "start"), Some("PT0S"));
    // A fragment that left the listing is still served while the view
    // holds it, and 404 once it does not.
    let gone = segment_path(Flavour::Csf, 1, 502 * 180_000);
    assert_eq!(get(&view, &gone).status, 404);
    let held = segment_path(Flavour::Csf, 1, 503 * 180_000);
    assert_eq!(get(&view, &held).status, 200);
}
