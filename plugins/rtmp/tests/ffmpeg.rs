//! Interop with a real publisher: ffmpeg pushes H.264 (with B-frames) and
//! AAC over RTMP to a socket driven by an `RtmpSession`.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice_plugin_rtmp::RtmpSession;
use sluice_sdk::plugin::{
    AuthRequest, AuthStage, Event, IngestAdapter, Sample, SessionConfig, TrackInfo,
};

const FFMPEG: &str = "/usr/bin/ffmpeg";

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Default)]
struct Seen {
    auths: Vec<AuthRequest>,
    tracks: Vec<TrackInfo>,
    samples: Vec<Sample>,
    ends: Vec<String>,
}

/// Handles events, answering authorisation requests with `Ok`.
fn handle(
    session: &mut RtmpSession,
    sock: &mut TcpStream,
    events: Vec<Event>,
    seen: &mut Seen,
) -> TestResult {
    for e in events {
        match e {
            Event::Send(bytes) => sock.write_all(&bytes)?,
            Event::Authorize(a) => {
                let id = a.id;
                seen.auths.push(a);
                let more = session.authorize(id, Ok(()))?;
                handle(session, sock, more, seen)?;
            }
            Event::Track(t) => seen.tracks.push(t),
            Event::Samples(s) => seen.samples.extend(s),
            Event::EndOfStream(r) => seen.ends.push(r),
        }
    }
    Ok(())
}

#[test]
fn ffmpeg_publishes_h264_and_aac() -> TestResult {
    assert!(
        Path::new(FFMPEG).exists(),
        "{FFMPEG} not found: run ./scripts/test.sh, which installs it"
    );
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let url = format!("rtmp://127.0.0.1:{port}/live/ch1/KEY/720p");
    let mut ffmpeg = Command::new(FFMPEG)
        .args(["-hide_banner", "-loglevel", "warning", "-nostdin"])
        .args(["-f", "lavfi", "-i", "testsrc2=s=320x240:r=25"])
        .args(["-f", "lavfi", "-i", "sine=f=440:sample_rate=48000"])
        .args(["-t", "4", "-c:v", "libx264", "-bf", "2", "-g", "50"])
        .args(["-c:a", "aac", "-f", "flv", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;

    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sock = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if Instant::now() > deadline || ffmpeg.try_wait()?.is_some() {
                    let _ = ffmpeg.kill();
                    return Err("ffmpeg did not connect".into());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    };
    sock.set_nonblocking(false)?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;

    let mut session = RtmpSession::new(SessionConfig {
        remote_addr: sock.peer_addr()?.to_string(),
        ..SessionConfig::default()
    });
    let mut seen = Seen::default();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match sock.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => return Err(e.into()),
        };
        let events = session.feed(&buf[..n])?;
        handle(&mut session, &mut sock, events, &mut seen)?;
    }
    let last = session.close();
    handle(&mut session, &mut sock, last, &mut seen)?;

    let out = ffmpeg.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg failed: {stderr}");

    // How ffmpeg splits the URL path.
    assert_eq!(seen.auths.len(), 2, "{:?}", seen.auths);
    let (connect, publish) = (&seen.auths[0], &seen.auths[1]);
    eprintln!(
        "ffmpeg: connect app={:?} tcUrl={:?}; publish app={:?} stream={:?}",
        connect.app, connect.tc_url, publish.app, publish.stream
    );
    assert_eq!(connect.stage, AuthStage::Connect);
    assert_eq!(publish.stage, AuthStage::Publish);
    assert_eq!(
        format!("{}/{}", publish.app, publish.stream),
        "live/ch1/KEY/720p"
    );
    // ffmpeg takes the first two path segments as the app (libavformat
    // rtmpproto.c), and the rest as the stream name.
    assert_eq!(connect.app, "live/ch1");
    assert_eq!(publish.stream, "KEY/720p");

    // Tracks.
    assert_eq!(seen.tracks.len(), 2, "{:?}", seen.tracks);
    let video = seen.tracks.iter().find(|t| t.id == 1).expect("video track");
    let audio = seen.tracks.iter().find(|t| t.id == 2).expect("audio track");
    eprintln!(
        "video {} {}x{}, audio {} {} Hz {} ch",
        video.codec, video.width, video.height, audio.codec, audio.sample_rate, audio.channels
    );
    assert_eq!(video.fourcc, "avc1");
    assert!(video.codec.starts_with("avc1.64"), "{}", video.codec);
    assert_eq!(video.codec.len(), "avc1.64000d".len());
    assert_eq!((video.width, video.height), (320, 240));
    assert_eq!(video.timescale, 90_000);
    assert_eq!(video.stream, "720p");
    assert_eq!(audio.fourcc, "mp4a");
    assert_eq!(audio.codec, "mp4a.40.2");
    assert_eq!(
        (audio.timescale, audio.sample_rate, audio.channels),
        (48_000, 48_000, 1)
    );

    // Video: 100 frames, keyframes every 50, B-frame composition offsets.
    let vs: Vec<&Sample> = seen.samples.iter().filter(|s| s.track == 1).collect();
    assert_eq!(vs.len(), 100);
    let keys: Vec<usize> = vs
        .iter()
        .enumerate()
        .filter(|(_, s)| s.keyframe)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(keys, vec![0, 50]);
    assert!(
        vs.windows(2).all(|w| w[1].dts - w[0].dts == 3600),
        "25 fps decode times"
    );
    let mut offsets: Vec<i32> = vs.iter().map(|s| s.composition_offset).collect();
    offsets.sort_unstable();
    offsets.dedup();
    assert!(
        offsets.len() >= 3,
        "B-frames give varied offsets: {offsets:?}"
    );
    eprintln!(
        "composition offsets (ticks): {offsets:?}; first dts {}",
        vs[0].dts
    );
    // Samples are 4-byte length-prefixed NAL units.
    for s in &vs {
        for nal in sluice_sdk::h264::nal_units(&s.data, 4) {
            nal?;
        }
    }

    // Audio: 1024-tick steps, about 4 s worth.
    let aus: Vec<&Sample> = seen.samples.iter().filter(|s| s.track == 2).collect();
    assert!(
        (185..=190).contains(&aus.len()),
        "{} audio frames",
        aus.len()
    );
    assert!(aus.windows(2).all(|w| w[1].dts - w[0].dts == 1024));
    assert!(aus.iter().all(|s| s.duration == 1024 && s.keyframe));

    // ffmpeg unpublishes before closing.
    assert_eq!(seen.ends.len(), 1, "{:?}", seen.ends);
    Ok(())
}
