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

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sluice_plugin_hds::Hds;
use sluice_sdk::flv::{self, FileHeader, TagType};
use sluice_sdk::plugin::{MemoryView, PresentationState};
use sluice_sdk::testing::{
    SECONDS, count_frames, element_text, encode, ffmpeg, get_body, have_ffmpeg, packet_digests,
    presentation, run,
};

/// The body of `path`, which must be served.
fn get(view: &MemoryView, path: &str) -> Vec<u8> {
    get_body::<Hds>(view, "f4m-f4f", path)
}

/// The value of `name="..."` in the first `<tag ...>` of `xml`.
fn attribute<'a>(xml: &'a str, tag: &str, name: &str) -> &'a str {
    let open = xml.find(&format!("<{tag} ")).unwrap();
    let end = open + xml[open..].find('>').unwrap();
    let at = open + xml[open..end].find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
    &xml[at..at + xml[at..].find('"').unwrap()]
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
    let xml = String::from_utf8(get(view, "Manifest(format=f4m-f4f)")).unwrap();
    let abst = BASE64
        .decode(element_text(&xml, "bootstrapInfo").trim())
        .unwrap();
    let base = attribute(&xml, "media", "url");
    let metadata = BASE64
        .decode(element_text(&xml, "metadata").trim())
        .unwrap();
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
        let frag = get(view, &format!("{base}Seg1-Frag{n}"));
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
        std::fs::write(file, get(view, path)).unwrap();
    };
    put("Manifest(format=f4m-f4f)", "manifest.f4m");
    put("f4m-f4f/t1/bootstrap.abst", "f4m-f4f/t1/bootstrap.abst");
    for n in 1..=fragments {
        let path = format!("f4m-f4f/t1/Seg1-Frag{n}");
        put(&path, &path);
    }
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
    let (video, audio) = encode(&dir, 1, 2);

    let view = presentation(&[&video, &audio], PresentationState::Ended);
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
    let (video_samples, audio_samples) = (video.sample_count(), audio.sample_count());
    assert_eq!(video_samples, 25 * SECONDS as usize);
    assert_eq!(
        count_frames(&dir, "out.flv"),
        (video_samples, audio_samples)
    );

    // Every packet arrives intact and in order.
    for (source, map) in [("video.mp4", "0:v:0"), ("audio.mp4", "0:a:0")] {
        let expected = packet_digests(&dir, source, "0");
        let got = packet_digests(&dir, "out.flv", map);
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
