//! Interop with a real encoder: ffmpeg writes 4 s of H.264 (B-frames,
//! a keyframe every 25 frames) and AAC as MPEG-TS, which is fed to a
//! session whole and in odd pieces, checked against what ffprobe reads
//! from the same file, and posted by ffmpeg itself over HTTP
//! (`-f mpegts -method POST …/{key}.ts/Streams(720p)`) to a minimal
//! server that de-chunks the body and feeds it as it arrives.
//!
//! Skipped (with a message) when ffmpeg is not on the `PATH`.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice_example_ts_ingest::TsSession;
use sluice_example_ts_ingest::fuzzing::drive;
use sluice_sdk::h264::{self, AvcDecoderConfig, nal_type};
use sluice_sdk::plugin::{Event, IngestAdapter, Sample, SessionConfig, TrackInfo, TrackKind};

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// The encoder settings of every run (after the inputs, before the output).
const ENCODE: &[&str] = &[
    "-t", "4", "-c:v", "libx264", "-g", "25", "-bf", "2", "-c:a", "aac", "-f", "mpegts",
];

fn inputs() -> [&'static str; 6] {
    [
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=25",
        "-f",
        "lavfi",
    ]
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn config() -> SessionConfig {
    SessionConfig {
        remote_addr: "127.0.0.1:9".into(),
        max_message_size: 16 << 20,
        max_tracks: 16,
        stream: "720p".into(),
    }
}

/// Writes the test clip (once per test binary run) and returns its path.
fn clip() -> TestResult<PathBuf> {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ts-ingest-ffmpeg.ts");
    let out = Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error", "-nostdin"])
        .args(inputs())
        .args(["-i", "sine=frequency=440:sample_rate=48000"])
        .args(ENCODE)
        .arg(&path)
        .output()?;
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(path)
}

/// Feeds `bytes` in pieces of `step` (0: whole); the session's counters
/// with the events.
fn feed_counted(bytes: &[u8], step: usize) -> (Vec<Event>, sluice_example_ts_ingest::Stats) {
    let cuts: Vec<usize> = if step == 0 {
        Vec::new()
    } else {
        (step..bytes.len()).step_by(step).collect()
    };
    let mut s = TsSession::new(config());
    let events = drive(&mut s, bytes, &cuts).expect("ffmpeg's stream is accepted");
    (events, s.stats())
}

/// Feeds `bytes` in pieces of `step` (0: whole); nothing may be damaged.
fn feed(bytes: &[u8], step: usize) -> Vec<Event> {
    let (events, stats) = feed_counted(bytes, step);
    assert_eq!(
        (
            stats.cc_gaps,
            stats.pes_dropped,
            stats.crc_errors,
            stats.damaged_packets
        ),
        (0, 0, 0, 0),
        "{stats:?}"
    );
    events
}

/// What a run gave, split up.
struct Run {
    video: TrackInfo,
    audio: TrackInfo,
    video_samples: Vec<Sample>,
    audio_samples: Vec<Sample>,
}

/// Checks the events of one run and returns them split up.
fn check(events: &[Event]) -> Run {
    let tracks: Vec<&TrackInfo> = events
        .iter()
        .filter_map(|e| match e {
            Event::Track(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(tracks.len(), 2, "each track declared once: {tracks:?}");
    let video = (*tracks
        .iter()
        .find(|t| t.kind == TrackKind::Video)
        .expect("a video track"))
    .clone();
    let audio = (*tracks
        .iter()
        .find(|t| t.kind == TrackKind::Audio)
        .expect("an audio track"))
    .clone();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Authorize(_) | Event::Send(_))),
        "nothing to authorise or send over HTTP"
    );
    assert!(matches!(events.last(), Some(Event::EndOfStream(_))));

    // Tracks.
    assert_eq!(video.fourcc, "avc1");
    assert_eq!((video.width, video.height), (320, 240));
    assert_eq!(video.timescale, 90_000);
    assert_eq!(video.stream, "720p");
    let avcc = AvcDecoderConfig::parse(&video.codec_private).expect("avcC");
    assert_eq!(video.codec, avcc.codec_string());
    assert!(video.codec.starts_with("avc1.64"), "{}", video.codec);
    assert_eq!(avcc.nal_length_size, 4);
    assert_eq!((avcc.sps.len(), avcc.pps.len()), (1, 1));
    assert_eq!(audio.fourcc, "mp4a");
    assert_eq!(audio.codec, "mp4a.40.2");
    assert_eq!((audio.sample_rate, audio.channels), (48_000, 1));
    assert_eq!(audio.timescale, 48_000);
    assert_eq!(audio.codec_private, vec![0x11, 0x88]);

    // Every sample follows its track's declaration.
    let mut seen = BTreeMap::new();
    let mut video_samples = Vec::new();
    let mut audio_samples = Vec::new();
    for (i, e) in events.iter().enumerate() {
        match e {
            Event::Track(t) => {
                seen.insert(t.id, i);
            }
            Event::Samples(s) => {
                for s in s {
                    assert!(seen.contains_key(&s.track), "sample before its track");
                    if s.track == video.id {
                        video_samples.push(s.clone());
                    } else {
                        assert_eq!(s.track, audio.id);
                        audio_samples.push(s.clone());
                    }
                }
            }
            _ => {}
        }
    }

    // Video: 100 frames, a keyframe every 25, B-frames, strictly
    // increasing decode times, length-prefixed NAL units without AUD,
    // SPS or PPS.
    assert_eq!(video_samples.len(), 100);
    let keys: Vec<usize> = (0..video_samples.len())
        .filter(|&i| video_samples[i].keyframe)
        .collect();
    assert_eq!(keys, vec![0, 25, 50, 75]);
    assert!(
        video_samples
            .windows(2)
            .all(|w| w[1].dts > w[0].dts && w[1].dts - w[0].dts == 3600),
        "25 fps decode times"
    );
    assert!(video_samples.iter().all(|s| s.composition_offset >= 0));
    let pts: Vec<i64> = video_samples
        .iter()
        .map(|s| s.dts + i64::from(s.composition_offset))
        .collect();
    assert!(
        pts.windows(2).any(|w| w[1] < w[0]),
        "B-frames: presentation order differs from decode order"
    );
    let offsets: std::collections::BTreeSet<i32> =
        video_samples.iter().map(|s| s.composition_offset).collect();
    assert!(
        offsets.len() >= 3 && offsets.iter().any(|&o| o > 0),
        "{offsets:?}"
    );
    for s in &video_samples {
        let types: Vec<u8> = h264::nal_units(&s.data, 4)
            .map(|n| {
                h264::nal_unit_type(n.expect("4-byte lengths, no overrun")).expect("non-empty")
            })
            .collect();
        assert!(!types.is_empty());
        assert!(
            !types
                .iter()
                .any(|t| matches!(*t, nal_type::AUD | nal_type::SPS | nal_type::PPS)),
            "{types:?}"
        );
        assert_eq!(s.keyframe, types.contains(&nal_type::IDR), "{types:?}");
        assert_eq!(s.duration, 0);
    }

    // Audio: one sample per AAC frame, 1024 ticks apart, about 4 s.
    assert!(
        (185..=192).contains(&audio_samples.len()),
        "{} AAC frames",
        audio_samples.len()
    );
    assert!(
        audio_samples
            .windows(2)
            .all(|w| w[1].dts - w[0].dts == 1024),
        "contiguous AAC frames"
    );
    assert!(
        audio_samples
            .iter()
            .all(|s| s.keyframe && s.duration == 1024)
    );
    // Audio and video start within a frame or two of each other.
    let v0 = video_samples[0].dts as f64 / 90_000.0;
    let a0 = audio_samples[0].dts as f64 / 48_000.0;
    assert!((v0 - a0).abs() < 0.2, "video at {v0} s, audio at {a0} s");
    Run {
        video,
        audio,
        video_samples,
        audio_samples,
    }
}

/// `(pts, dts, keyframe)` of each packet of one stream, as ffprobe reads them.
fn ffprobe(path: &Path, select: &str) -> TestResult<Vec<(i64, i64, bool)>> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", select, "-show_entries"])
        .args(["packet=pts,dts,flags", "-of", "csv=p=0"])
        .arg(path)
        .output()?;
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout)?;
    let mut packets = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        let pts: i64 = f.first().ok_or("pts")?.parse()?;
        let dts: i64 = f.get(1).ok_or("dts")?.parse()?;
        let key = f.get(2).is_some_and(|flags| flags.starts_with('K'));
        packets.push((pts, dts, key));
    }
    Ok(packets)
}

#[test]
fn ffmpeg_clip_whole_and_in_pieces() -> TestResult {
    if !have("ffmpeg") {
        eprintln!("SKIPPED: ffmpeg is not on the PATH (apt-get install ffmpeg to run this test)");
        return Ok(());
    }
    let path = clip()?;
    let bytes = std::fs::read(&path)?;
    let whole = feed(&bytes, 0);
    for step in [1, 7, 188, 1000] {
        assert!(
            feed(&bytes, step) == whole,
            "pieces of {step} bytes give other events"
        );
    }
    let run = check(&whole);
    eprintln!(
        "{} bytes: video {} ({}x{}) {} samples, audio {} {} Hz {} ch {} samples",
        bytes.len(),
        run.video.codec,
        run.video.width,
        run.video.height,
        run.video_samples.len(),
        run.audio.codec,
        run.audio.sample_rate,
        run.audio.channels,
        run.audio_samples.len()
    );

    // Cut anywhere: what comes out is what the whole clip gives up to
    // there (the last access unit before the cut may be short of a packet).
    for k in 1..16 {
        let n = bytes.len() * k / 16 + k;
        let (events, stats) = feed_counted(&bytes[..n], 4096);
        // At most the PES the cut falls in is lost.
        assert!(stats.pes_dropped <= 1, "{stats:?}");
        let samples: Vec<&Sample> = events
            .iter()
            .flat_map(|e| match e {
                Event::Samples(s) => s.iter().collect(),
                _ => Vec::new(),
            })
            .collect();
        let all: Vec<&Sample> = whole
            .iter()
            .flat_map(|e| match e {
                Event::Samples(s) => s.iter().collect(),
                _ => Vec::new(),
            })
            .collect();
        assert!(samples.len() < all.len());
        let same = samples.iter().zip(&all).filter(|(a, b)| a == b).count();
        assert!(
            same + 1 >= samples.len(),
            "cut at {n}: {same} of {}",
            samples.len()
        );
    }

    // The same times and keyframes as ffprobe reads.
    if have("ffprobe") {
        let probed = ffprobe(&path, "v")?;
        let ours: Vec<(i64, i64, bool)> = run
            .video_samples
            .iter()
            .map(|s| (s.dts + i64::from(s.composition_offset), s.dts, s.keyframe))
            .collect();
        assert_eq!(ours, probed);
        let probed = ffprobe(&path, "a")?;
        assert_eq!(run.audio_samples.len(), probed.len());
        for (s, (pts, _, _)) in run.audio_samples.iter().zip(&probed) {
            let ours = s.dts as f64 * 90_000.0 / 48_000.0;
            assert!(
                (ours - *pts as f64).abs() <= 2.0,
                "AAC frame at {ours} (90 kHz), ffprobe {pts}"
            );
        }
    } else {
        eprintln!("ffprobe is not on the PATH: cross-check skipped");
    }
    Ok(())
}

/// An incremental `Transfer-Encoding: chunked` decoder.
#[derive(Debug)]
enum Chunked {
    /// In a chunk-size line (bytes so far).
    Size(Vec<u8>),
    /// In chunk data: bytes left.
    Data(usize),
    /// The CRLF after chunk data: bytes left.
    Crlf(usize),
    /// After the last chunk: trailer lines until an empty one.
    Trailer(Vec<u8>),
    /// Done.
    End,
}

impl Chunked {
    /// Decodes `input`, passing data bytes to `body`.
    fn push(&mut self, mut input: &[u8], body: &mut impl FnMut(&[u8])) -> TestResult {
        while let Some((&b, rest)) = input.split_first() {
            match self {
                Chunked::Size(line) | Chunked::Trailer(line) => {
                    line.push(b);
                    input = rest;
                    if line.len() > 256 {
                        return Err("chunk line too long".into());
                    }
                    if !line.ends_with(b"\r\n") {
                        continue;
                    }
                    let text = std::str::from_utf8(&line[..line.len() - 2])?.to_owned();
                    *self = match self {
                        Chunked::Size(_) => {
                            let hex = text.split(';').next().unwrap_or("").trim();
                            match usize::from_str_radix(hex, 16)? {
                                0 => Chunked::Trailer(Vec::new()),
                                n => Chunked::Data(n),
                            }
                        }
                        _ if text.is_empty() => Chunked::End,
                        _ => Chunked::Trailer(Vec::new()),
                    };
                }
                Chunked::Data(left) => {
                    let n = (*left).min(input.len());
                    body(&input[..n]);
                    input = &input[n..];
                    *left -= n;
                    if *left == 0 {
                        *self = Chunked::Crlf(2);
                    }
                }
                Chunked::Crlf(left) => {
                    input = rest;
                    *left -= 1;
                    if *left == 0 {
                        *self = Chunked::Size(Vec::new());
                    }
                }
                Chunked::End => return Err("bytes after the chunked body".into()),
            }
        }
        Ok(())
    }
}

/// What the one POST carried.
struct Post {
    request_line: String,
    chunked: bool,
    pieces: usize,
    events: Vec<Event>,
}

/// Serves one POST: reads the head, then feeds the de-chunked body to a
/// session piece by piece as it arrives, then answers 200.
fn serve(mut sock: TcpStream) -> TestResult<Post> {
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut buf = vec![0u8; 8192];
    let mut head = Vec::new();
    let body_start = loop {
        let n = sock.read(&mut buf)?;
        if n == 0 {
            return Err("closed in the request head".into());
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > 16 << 10 {
            return Err("request head too long".into());
        }
    };
    let text = String::from_utf8_lossy(&head[..body_start]).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    if header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        sock.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let chunked = header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let mut session = TsSession::new(config());
    let mut events = Vec::new();
    let mut failure = None;
    let mut pieces = 0;
    let mut on_body = |piece: &[u8]| {
        if piece.is_empty() || failure.is_some() {
            return;
        }
        pieces += 1;
        match session.feed(piece) {
            Ok(e) => events.extend(e),
            Err(e) => failure = Some(e),
        }
    };
    let mut decoder = Chunked::Size(Vec::new());
    let mut input = head[body_start..].to_vec();
    loop {
        if chunked {
            decoder.push(&input, &mut on_body)?;
            if matches!(decoder, Chunked::End) {
                break;
            }
        } else {
            on_body(&input);
        }
        let n = sock.read(&mut buf)?;
        if n == 0 {
            break;
        }
        input = buf[..n].to_vec();
    }
    if let Some(e) = failure {
        return Err(format!("session failed: {e}").into());
    }
    events.extend(session.close());
    sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")?;
    Ok(Post {
        request_line,
        chunked,
        pieces,
        events,
    })
}

#[test]
fn ffmpeg_posts_mpegts_over_http() -> TestResult {
    if !have("ffmpeg") {
        eprintln!("SKIPPED: ffmpeg is not on the PATH (apt-get install ffmpeg to run this test)");
        return Ok(());
    }
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let url = format!("http://127.0.0.1:{port}/ingest/ch1/KEY-1.ts/Streams(720p)");
    let mut ffmpeg = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-nostdin"])
        .args(inputs())
        .args(["-i", "sine=frequency=440:sample_rate=48000"])
        .args(ENCODE)
        .args(["-method", "POST"])
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let sock = loop {
        match listener.accept() {
            Ok((sock, _)) => break sock,
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
    let post = serve(sock);
    let status = ffmpeg.wait()?;
    let mut stderr = String::new();
    if let Some(mut e) = ffmpeg.stderr.take() {
        e.read_to_string(&mut stderr)?;
    }
    let post = post?;
    assert!(status.success(), "ffmpeg failed ({status}): {stderr}");
    assert_eq!(
        post.request_line,
        "POST /ingest/ch1/KEY-1.ts/Streams(720p) HTTP/1.1"
    );
    assert!(post.chunked, "ffmpeg posts with chunked transfer encoding");
    let run = check(&post.events);
    eprintln!(
        "POST in {} pieces: {} video samples, {} audio samples",
        post.pieces,
        run.video_samples.len(),
        run.audio_samples.len()
    );
    Ok(())
}
