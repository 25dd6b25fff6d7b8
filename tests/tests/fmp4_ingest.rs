//! Smooth Streaming / fMP4 ingest: ffmpeg's `-f ismv` POSTs into channels
//! made through the API; renditions become variants; redundant encoders
//! merge with no gap and no duplicate.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sluice_tests::{
    Sluice, api, assert_two_variants_decode, encode_source, ffmpeg_two_renditions, ffprobe_frames,
    http_get, media_segments, run, running_channel, tempdir::TempDir, wait_for, wait_until_ended,
};

/// The file the encoders push.
fn source(dir: &Path, seconds: u32) -> anyhow::Result<PathBuf> {
    encode_source(dir, seconds, "source.mp4")
}

fn push(file: &Path, url: &str, realtime: bool, extra: &[&str]) -> anyhow::Result<Child> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin"]);
    if realtime {
        cmd.arg("-re");
    }
    Ok(cmd
        .args(extra)
        .arg("-i")
        .arg(file)
        .args([
            "-c",
            "copy",
            "-f",
            "ismv",
            "-movflags",
            "isml+frag_keyframe",
            url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?)
}

#[test]
fn ffmpeg_ismv_push_plays_back() -> anyhow::Result<()> {
    let dir = TempDir::new("sluice-fmp4")?;
    let file = source(dir.path(), 8)?;
    let server = Sluice::start("", &[])?;
    let url = running_channel(&server, "smooth")?["ingest"]["fmp4"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let out = push(&file, &format!("{url}/Streams(720p)"), false, &[])?.wait_with_output()?;
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let base = "/preview/smooth/preview.isml";
    let master = wait_until_ended(server.http, base, 1)?;
    assert!(
        master.contains("avc1.") && master.contains("mp4a.40.2"),
        "{master}"
    );
    assert!(master.contains("EXT-X-MEDIA:TYPE=AUDIO"), "{master}");
    let (frames, errors) = ffprobe_frames(
        &server.url(&format!("{base}/Manifest(format=m3u8-cmaf)")),
        &[],
    )?;
    assert!(errors.trim().is_empty(), "{errors}");
    let video = frames.iter().filter(|f| f.media_type == "video").count();
    let audio: Vec<f64> = frames
        .iter()
        .filter(|f| f.media_type == "audio")
        .map(|f| f.pts_time)
        .collect();
    assert!((video as i64 - 200).abs() <= 50, "{video} of 200 frames");
    let span = audio.last().copied().unwrap_or(0.0) - audio.first().copied().unwrap_or(0.0);
    assert!(span > 7.0, "audio spans {span} s");

    // A wrong key is refused before the body is read.
    let r = sluice_tests::http_request(
        server.http,
        "POST",
        "/ingest/smooth/wrongkey-123.isml/Streams(720p)",
        &[],
        b"\0\0\0\x08ftyp",
    )?;
    assert_eq!(r.status, 403, "{}", r.text());
    Ok(())
}

#[test]
fn two_fmp4_renditions_become_two_variants() -> anyhow::Result<()> {
    let server = Sluice::start("", &[])?;
    let url = running_channel(&server, "abr")?["ingest"]["fmp4"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (ok, err) = ffmpeg_two_renditions(|name| {
        ["-f", "ismv", "-movflags", "isml+frag_keyframe"]
            .map(String::from)
            .into_iter()
            .chain([format!("{url}/Streams({name})")])
            .collect()
    })?;
    assert!(ok, "{err}\n{}", server.log());
    assert_two_variants_decode(&server, "/preview/abr/preview.isml")
}

#[test]
fn redundant_fmp4_encoders_merge_without_gap_or_duplicate() -> anyhow::Result<()> {
    let dir = TempDir::new("sluice-fmp4-red")?;
    let file = source(dir.path(), 10)?;
    let server = Sluice::start("", &[])?;
    let url = format!(
        "{}/Streams(main)",
        running_channel(&server, "red")?["ingest"]["fmp4"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    );
    let mut a = push(&file, &url, true, &[])?;
    let b = push(&file, &url, true, &[])?;
    let base = "/preview/red/preview.isml";
    let media = format!("{base}/m3u8-cmaf/t1/index.m3u8");
    wait_for(Duration::from_secs(30), || {
        let r = http_get(server.http, &media, &[]).ok()?;
        (media_segments(&r.text()).0.len() >= 2).then_some(())
    })?;
    a.kill()?;
    a.wait()?;
    let mut a2 = push(&file, &url, true, &["-t", "4"])?;
    let b_out = b.wait_with_output()?;
    assert!(
        b_out.status.success(),
        "{}",
        String::from_utf8_lossy(&b_out.stderr)
    );
    let _ = a2.wait()?;
    let playlist = wait_for(Duration::from_secs(20), || {
        let r = http_get(server.http, &media, &[]).ok()?;
        r.text().contains("#EXT-X-ENDLIST").then(|| r.text())
    })?;
    let (names, total) = media_segments(&playlist);
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(unique, names, "no duplicate segment: {playlist}");
    assert!(!playlist.contains("#EXT-X-DISCONTINUITY"), "{playlist}");
    assert!(
        (total - 10.0).abs() < 0.2,
        "the full 10 s, no gap: {total} s\n{playlist}\n{}",
        server.log()
    );
    let (_, ch) = api(server.admin, "GET", "/api/v1/channels/red", None)?;
    assert!(
        ch["stats"]["duplicates_matching"].as_u64() > Some(0),
        "{ch}"
    );
    assert_eq!(ch["stats"]["duplicates_mismatching"], 0, "{ch}");
    let (frames, errors) = ffprobe_frames(
        &server.url(&format!("{base}/Manifest(format=m3u8-cmaf)")),
        &[],
    )?;
    assert!(errors.trim().is_empty(), "{errors}");
    let video = frames.iter().filter(|f| f.media_type == "video").count();
    assert!((video as i64 - 250).abs() <= 50, "{video} of 250 frames");
    Ok(())
}

/// Top-level boxes of an ISO BMFF byte string: (offset, length, type).
fn boxes(data: &[u8]) -> Vec<(usize, usize, [u8; 4])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= data.len() {
        let size =
            u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]) as usize;
        let kind = [data[at + 4], data[at + 5], data[at + 6], data[at + 7]];
        if size < 8 || at + size > data.len() {
            break;
        }
        out.push((at, size, kind));
        at += size;
    }
    out
}

/// Starts a chunked ingest POST on a raw socket.
fn open_post(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<std::net::TcpStream> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n"
    )?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    Ok(s)
}

fn send_chunk(s: &mut std::net::TcpStream, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    for piece in data.chunks(16 * 1024) {
        write!(s, "{:x}\r\n", piece.len())?;
        s.write_all(piece)?;
        s.write_all(b"\r\n")?;
    }
    Ok(())
}

/// A fault proxy's view: the encoder's POST is cut in the middle of a
/// fragment; the encoder reconnects, resends its headers and its recent
/// fragments, and goes on. Nothing is lost or doubled.
#[test]
fn a_cut_post_and_a_resend_lose_and_double_nothing() -> anyhow::Result<()> {
    cut_and_resend("cut", &[])
}

/// The same with fragments cut every second at whatever picture is there
/// (`-frag_duration`), so fragments start with composition offsets that
/// vary, and ffmpeg's `tfxd` times with them.
#[test]
fn a_cut_post_with_frag_duration_loses_and_doubles_nothing() -> anyhow::Result<()> {
    cut_and_resend("cutfd", &["-frag_duration", "1000000"])
}

/// Cuts a POST of an 8 s `ismv` (written with `frag` flags besides
/// `frag_keyframe`) into channel `channel` mid-fragment, reconnects,
/// resends from the first fragment and checks the result.
fn cut_and_resend(channel: &str, frag: &[&str]) -> anyhow::Result<()> {
    use std::io::Read;
    let dir = TempDir::new("sluice-fmp4-cut")?;
    let file = source(dir.path(), 8)?;
    let ismv = dir.path().join("stream.ismv");
    let (ok, _, err) = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
        .arg(&file)
        .args([
            "-c",
            "copy",
            "-f",
            "ismv",
            "-movflags",
            "isml+frag_keyframe",
        ])
        .args(frag)
        .arg(&ismv))?;
    assert!(ok, "{err}");
    let data = std::fs::read(&ismv)?;
    let all = boxes(&data);
    let moov_end = all
        .iter()
        .find(|b| &b.2 == b"moov")
        .map(|b| b.0 + b.1)
        .expect("moov");
    let moofs: Vec<usize> = all
        .iter()
        .filter(|b| &b.2 == b"moof")
        .map(|b| b.0)
        .collect();
    assert!(moofs.len() >= 6, "fragments: {}", moofs.len());
    let headers = &data[..moov_end];

    let server = Sluice::start("", &[])?;
    let url = running_channel(&server, channel)?["ingest"]["fmp4"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let path = format!(
        "{}/Streams(main)",
        url.split_once(&server.http.port().to_string())
            .expect("url")
            .1
    );
    // First connection: headers and fragments up to the middle of the
    // moof/mdat pair at half time (the host has cut whole fragments by
    // then), then the connection drops.
    let half = moofs.len() / 2;
    let cut_pair = moofs[half];
    let cut_at = cut_pair + (moofs[half + 1] - cut_pair) / 2;
    let mut first = open_post(server.http, &path)?;
    send_chunk(&mut first, &data[..cut_at])?;
    first.shutdown(std::net::Shutdown::Both)?;
    drop(first);
    // The server has seen the connection go (its encoder count drops to 0).
    wait_for(Duration::from_secs(20), || {
        let (_, ch) = api(
            server.admin,
            "GET",
            &format!("/api/v1/channels/{channel}"),
            None,
        )
        .ok()?;
        (ch["publishing"] == 0).then_some(())
    })?;
    // The encoder reconnects: headers again, then its recent fragments (the
    // first ones were delivered and cut already) and on to the end.
    let mut second = open_post(server.http, &path)?;
    send_chunk(&mut second, headers)?;
    send_chunk(&mut second, &data[moofs[0]..])?;
    std::io::Write::write_all(&mut second, b"0\r\n\r\n")?;
    let mut answer = String::new();
    second.read_to_string(&mut answer)?;
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{answer}\n{}",
        server.log()
    );

    let base = &format!("/preview/{channel}/preview.isml");
    wait_until_ended(server.http, base, 1)?;
    let media = http_get(server.http, &format!("{base}/m3u8-cmaf/t1/index.m3u8"), &[])?.text();
    let (names, total) = media_segments(&media);
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(unique, names, "{media}");
    assert!(!media.contains("#EXT-X-DISCONTINUITY"), "{media}");
    assert!(
        (total - 8.0).abs() < 0.2,
        "nothing lost: {total} s\n{media}\n{}",
        server.log()
    );
    let (_, ch) = api(
        server.admin,
        "GET",
        &format!("/api/v1/channels/{channel}"),
        None,
    )?;
    assert!(
        ch["stats"]["duplicates_matching"].as_u64() > Some(0),
        "{ch}"
    );
    assert_eq!(ch["stats"]["duplicates_mismatching"], 0, "{ch}");
    let (frames, errors) = ffprobe_frames(
        &server.url(&format!("{base}/Manifest(format=m3u8-cmaf)")),
        &[],
    )?;
    assert!(errors.trim().is_empty(), "{errors}");
    let video = frames.iter().filter(|f| f.media_type == "video").count();
    assert!((video as i64 - 200).abs() <= 50, "{video} of 200 frames");
    Ok(())
}
