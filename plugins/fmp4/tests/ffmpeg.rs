//! Interop with a real encoder: ffmpeg pushes H.264 (with B-frames) and
//! AAC as Smooth Streaming ingest (`-f ismv -movflags isml+frag_keyframe`)
//! to a minimal HTTP/1.1 server on 127.0.0.1 that de-chunks the POST body
//! and feeds it to an `Fmp4Session`.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sluice_plugin_fmp4::Fmp4Session;
use sluice_sdk::bmff::smooth::{self, LIVE_SERVER_MANIFEST, TFXD};
use sluice_sdk::bmff::{BoxRef, FourCC, Reader};
use sluice_sdk::plugin::{Event, IngestAdapter, Sample, SessionConfig, TrackInfo};

const FFMPEG: &str = "/usr/bin/ffmpeg";

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// An incremental `Transfer-Encoding: chunked` decoder.
#[derive(Debug)]
enum Dechunk {
    /// Reading a chunk-size line.
    Size(Vec<u8>),
    /// This many data bytes left in the chunk.
    Data(usize),
    /// The CRLF after a chunk's data; bytes of it still to skip.
    DataEnd(usize),
    /// Trailer lines after the last chunk.
    Trailers(Vec<u8>),
    /// The body is complete.
    Done,
}

impl Dechunk {
    /// Decodes `input`, appending body bytes to `out`; returns the number
    /// of chunks whose size line completed.
    fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> TestResult<usize> {
        let mut chunks = 0;
        while !input.is_empty() {
            match self {
                Dechunk::Size(line) => {
                    let (b, rest) = input.split_first().expect("not empty");
                    input = rest;
                    line.push(*b);
                    if line.ends_with(b"\r\n") {
                        let text = std::str::from_utf8(&line[..line.len() - 2])?;
                        let size = text.split(';').next().unwrap_or("").trim();
                        let size = usize::from_str_radix(size, 16)?;
                        chunks += 1;
                        *self = if size == 0 {
                            Dechunk::Trailers(Vec::new())
                        } else {
                            Dechunk::Data(size)
                        };
                    } else if line.len() > 1024 {
                        return Err("chunk size line too long".into());
                    }
                }
                Dechunk::Data(left) => {
                    let n = (*left).min(input.len());
                    out.extend_from_slice(&input[..n]);
                    input = &input[n..];
                    *left -= n;
                    if *left == 0 {
                        *self = Dechunk::DataEnd(2);
                    }
                }
                Dechunk::DataEnd(left) => {
                    let n = (*left).min(input.len());
                    input = &input[n..];
                    *left -= n;
                    if *left == 0 {
                        *self = Dechunk::Size(Vec::new());
                    }
                }
                Dechunk::Trailers(line) => {
                    let (b, rest) = input.split_first().expect("not empty");
                    input = rest;
                    line.push(*b);
                    if line.ends_with(b"\r\n") {
                        if line.len() == 2 {
                            *self = Dechunk::Done;
                        } else {
                            line.clear();
                        }
                    }
                }
                Dechunk::Done => return Err("bytes after the end of the body".into()),
            }
        }
        Ok(chunks)
    }
}

/// What one POST carried.
#[derive(Default)]
struct Post {
    request_line: String,
    headers: Vec<(String, String)>,
    chunks: usize,
    body: Vec<u8>,
    tracks: Vec<TrackInfo>,
    samples: Vec<Sample>,
    batches: Vec<(u32, usize)>,
}

impl Post {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Serves one request on `sock`: headers, `100 Continue` when asked, the
/// body de-chunked and fed to a session as it arrives, then `200 OK`.
fn serve(mut sock: TcpStream) -> TestResult<Post> {
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut post = Post::default();
    let mut buf = vec![0u8; 16 << 10];
    let mut head = Vec::new();
    let body_start = loop {
        let n = sock.read(&mut buf)?;
        if n == 0 {
            return Err("connection closed in the request head".into());
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > 64 << 10 {
            return Err("request head too long".into());
        }
    };
    let text = std::str::from_utf8(&head[..body_start - 4])?;
    let mut lines = text.split("\r\n");
    post.request_line = lines.next().unwrap_or("").to_owned();
    for line in lines {
        let (k, v) = line.split_once(':').ok_or("header without a colon")?;
        post.headers
            .push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let path = post
        .request_line
        .strip_prefix("POST ")
        .and_then(|r| r.strip_suffix(" HTTP/1.1"))
        .ok_or("not a POST over HTTP/1.1")?
        .to_owned();
    let stream = path
        .rsplit_once("/Streams(")
        .and_then(|(_, s)| s.strip_suffix(')'))
        .ok_or("no Streams(...) in the path")?
        .to_owned();
    if post
        .header("Expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        sock.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let chunked = post
        .header("Transfer-Encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let mut content_length: Option<usize> = match post.header("Content-Length") {
        Some(v) => Some(v.parse()?),
        None => None,
    };
    if !chunked && content_length.is_none() {
        return Err("neither chunked nor Content-Length".into());
    }

    let mut session = Fmp4Session::new(SessionConfig {
        remote_addr: sock.peer_addr()?.to_string(),
        stream,
        ..SessionConfig::default()
    });
    let mut dechunk = Dechunk::Size(Vec::new());
    let mut handle = |post: &mut Post, raw: &[u8]| -> TestResult<bool> {
        let mut body = Vec::new();
        if chunked {
            post.chunks += dechunk.feed(raw, &mut body)?;
        } else if let Some(left) = content_length.as_mut() {
            let n = (*left).min(raw.len());
            body.extend_from_slice(&raw[..n]);
            *left -= n;
        }
        post.body.extend_from_slice(&body);
        for e in session.feed(&body)? {
            match e {
                Event::Track(t) => post.tracks.push(t),
                Event::Samples(s) => {
                    post.batches.push((s[0].track, s.len()));
                    post.samples.extend(s);
                }
                other => return Err(format!("unexpected event {other:?}").into()),
            }
        }
        Ok(if chunked {
            matches!(dechunk, Dechunk::Done)
        } else {
            content_length == Some(0)
        })
    };
    let mut done = handle(&mut post, &head[body_start..])?;
    while !done {
        let n = sock.read(&mut buf)?;
        if n == 0 {
            return Err("connection closed before the end of the body".into());
        }
        done = handle(&mut post, &buf[..n])?;
    }
    assert!(session.close().is_empty());
    sock.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
    Ok(post)
}

/// The top-level box names of a body (runs of `moof`/`mdat` pairs
/// included), and per `traf` whether it has a `tfdt` and a `tfxd`.
type BoxSummary = (Vec<String>, Vec<(bool, bool)>);

/// Summarises the boxes of a body.
fn box_summary(body: &[u8]) -> TestResult<BoxSummary> {
    let mut top = Vec::new();
    let mut trafs = Vec::new();
    let mut r = Reader::new(body);
    while let Some(b) = r.next_box()? {
        let name = if smooth::is_uuid(&b, &LIVE_SERVER_MANIFEST) {
            "uuid(live server manifest)".to_owned()
        } else {
            b.fourcc().to_string()
        };
        top.push(name);
        if b.fourcc() == FourCC::new(b"moof") {
            for traf in b.children() {
                let traf: BoxRef<'_> = traf?;
                if traf.fourcc() != FourCC::new(b"traf") {
                    continue;
                }
                let kids: Vec<BoxRef<'_>> = traf.children().collect::<Result<_, _>>()?;
                trafs.push((
                    kids.iter().any(|k| k.fourcc() == FourCC::new(b"tfdt")),
                    kids.iter().any(|k| smooth::is_uuid(k, &TFXD)),
                ));
            }
        }
    }
    Ok((top, trafs))
}

/// Runs ffmpeg pushing 4 s of H.264 (B-frames, GOP 50 at 25 fps) and AAC
/// as Smooth ingest with `-movflags isml+frag_keyframe` and `extra` flags,
/// serving every connection until it exits; returns the POSTs it made.
fn ffmpeg_push(extra: &[&str]) -> TestResult<Vec<Post>> {
    assert!(
        Path::new(FFMPEG).exists(),
        "{FFMPEG} not found: run ./scripts/test.sh, which installs it"
    );
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let url = format!("http://127.0.0.1:{port}/ingest/ch1/KEY.isml/Streams(720p)");
    let mut ffmpeg = Command::new(FFMPEG)
        .args(["-hide_banner", "-loglevel", "warning", "-nostdin"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "4", "-c:v", "libx264", "-bf", "2", "-g", "50"])
        .args([
            "-c:a",
            "aac",
            "-f",
            "ismv",
            "-movflags",
            "isml+frag_keyframe",
        ])
        .args(extra)
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;

    // Serve every connection until ffmpeg exits.
    listener.set_nonblocking(true)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut posts = Vec::new();
    let status = loop {
        match listener.accept() {
            Ok((sock, _)) => {
                sock.set_nonblocking(false)?;
                match serve(sock) {
                    Ok(p) => posts.push(p),
                    Err(e) => {
                        let _ = ffmpeg.kill();
                        return Err(e);
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if let Some(status) = ffmpeg.try_wait()? {
                    break status;
                }
                if Instant::now() > deadline {
                    let _ = ffmpeg.kill();
                    return Err("ffmpeg did not finish in time".into());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    };
    let mut stderr = String::new();
    if let Some(mut e) = ffmpeg.stderr.take() {
        e.read_to_string(&mut stderr)?;
    }
    assert!(status.success(), "ffmpeg failed ({status}): {stderr}");
    Ok(posts)
}

/// The video samples of a POST: all of them, 25 fps decode times with no
/// gap and no repeat, each a well-formed run of NAL units.
fn check_video(post: &Post, video: &TrackInfo) -> TestResult<Vec<Sample>> {
    let vs: Vec<Sample> = post
        .samples
        .iter()
        .filter(|s| s.track == video.id)
        .cloned()
        .collect();
    assert!((98..=102).contains(&vs.len()), "{} video samples", vs.len());
    let keys: Vec<usize> = (0..vs.len()).filter(|&i| vs[i].keyframe).collect();
    assert_eq!(keys, vec![0, 50]);
    let frame = i64::from(video.timescale) / 25;
    let steps: Vec<i64> = vs.windows(2).map(|w| w[1].dts - w[0].dts).collect();
    assert!(
        steps.iter().all(|&d| d == frame),
        "25 fps decode times: steps {steps:?}"
    );
    assert!(vs.iter().all(|s| i64::from(s.duration) == frame));
    for s in &vs {
        for nal in sluice_sdk::h264::nal_units(&s.data, 4) {
            nal?;
        }
    }
    Ok(vs)
}

/// `-frag_duration` cuts fragments at any picture, and ffmpeg's `tfxd`
/// then carries a presentation time whose offset from the decode time
/// changes from fragment to fragment: no sample may be lost to that.
#[test]
fn ffmpeg_smooth_ingest_with_frag_duration_loses_nothing() -> TestResult {
    let posts = ffmpeg_push(&["-frag_duration", "500000"])?;
    assert_eq!(posts.len(), 1, "one POST per stream");
    let post = &posts[0];
    let video = post
        .tracks
        .iter()
        .find(|t| t.fourcc == "avc1")
        .expect("avc1");
    let vs = check_video(post, video)?;
    let fragments = post.batches.iter().filter(|b| b.0 == video.id).count();
    assert!(fragments >= 7, "half-second fragments: {:?}", post.batches);
    // Some fragment starts at a picture that is not a keyframe.
    let mut starts = Vec::new();
    let mut at = 0;
    for (track, n) in &post.batches {
        if *track == video.id {
            starts.push(&vs[at]);
            at += n;
        }
    }
    assert!(
        starts
            .iter()
            .any(|s| !s.keyframe && s.composition_offset != 0)
    );
    Ok(())
}

#[test]
fn ffmpeg_pushes_smooth_ingest() -> TestResult {
    let posts = ffmpeg_push(&[])?;

    // What ffmpeg sends: one chunked POST carrying both tracks.
    assert_eq!(posts.len(), 1, "one POST per stream");
    let post = &posts[0];
    let (top, trafs) = box_summary(&post.body)?;
    eprintln!(
        "ffmpeg: {:?}, headers {:?}, {} chunks, {} body bytes; boxes {:?}; \
         {} trafs, with tfdt {}, with tfxd {}",
        post.request_line,
        post.headers,
        post.chunks,
        post.body.len(),
        top,
        trafs.len(),
        trafs.iter().filter(|t| t.0).count(),
        trafs.iter().filter(|t| t.1).count(),
    );
    assert_eq!(
        post.request_line,
        "POST /ingest/ch1/KEY.isml/Streams(720p) HTTP/1.1"
    );
    assert_eq!(post.header("Transfer-Encoding"), Some("chunked"));
    assert!(trafs.iter().all(|(tfdt, tfxd)| *tfdt || *tfxd));

    // Tracks.
    assert_eq!(post.tracks.len(), 2, "{:?}", post.tracks);
    let video = post
        .tracks
        .iter()
        .find(|t| t.fourcc == "avc1")
        .expect("avc1");
    let audio = post
        .tracks
        .iter()
        .find(|t| t.fourcc == "mp4a")
        .expect("mp4a");
    eprintln!(
        "video {} id {} {}x{} timescale {}; audio {} id {} {} Hz {} ch timescale {} {} bit/s",
        video.codec,
        video.id,
        video.width,
        video.height,
        video.timescale,
        audio.codec,
        audio.id,
        audio.sample_rate,
        audio.channels,
        audio.timescale,
        audio.bitrate
    );
    assert_eq!(video.codec, "avc1.64000d", "x264 High profile, level 1.3");
    assert_eq!((video.width, video.height), (320, 240));
    assert_eq!(video.stream, "720p");
    assert_eq!(audio.codec, "mp4a.40.2");
    assert_eq!((audio.sample_rate, audio.channels), (48_000, 1));
    assert_eq!(audio.timescale, 48_000);
    assert_eq!(audio.stream, "720p");

    // Video: 4 s at 25 fps, keyframes every 50, B-frame offsets.
    let vs = check_video(post, video)?;
    let mut offsets: Vec<i32> = vs.iter().map(|s| s.composition_offset).collect();
    offsets.sort_unstable();
    offsets.dedup();
    assert!(
        offsets.len() >= 3,
        "B-frames give varied offsets: {offsets:?}"
    );
    eprintln!(
        "first video dts {}, composition offsets {offsets:?}; batches {:?}",
        vs[0].dts, post.batches
    );

    // Audio: AAC frames of 1024 at 48 kHz, about 4 s worth, from the
    // priming offset.
    let aus: Vec<&Sample> = post
        .samples
        .iter()
        .filter(|s| s.track == audio.id)
        .collect();
    assert!(
        (185..=192).contains(&aus.len()),
        "{} audio frames",
        aus.len()
    );
    assert!(aus.iter().all(|s| s.keyframe));
    // ffmpeg estimates the duration of the stream's very last frame (512).
    let (last, rest) = aus.split_last().expect("audio frames");
    assert!(
        rest.iter().all(|s| s.duration == 1024),
        "AAC frames of 1024"
    );
    assert!(
        (1..=1024).contains(&last.duration),
        "last {}",
        last.duration
    );
    assert!(aus.windows(2).all(|w| w[1].dts - w[0].dts == 1024));
    eprintln!("first audio dts {}", aus[0].dts);

    // The encoder's fragmentation is kept: one batch per track and moof.
    assert_eq!(post.batches.iter().filter(|b| b.0 == video.id).count(), 2);
    Ok(())
}
