//! Hostile input ends only its own session, each refusal with its reason,
//! memory stays bounded, and another channel keeps streaming meanwhile.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use sluice_tests::{Sluice, http_request, wait_until_ended};

const CONFIG: &str = "[ingest]\n\
    handshake_timeout_ms = 1000\n\
    idle_timeout_ms = 2000\n\
    max_message_size = 1048576\n\
    max_connections_per_ip = 64\n\
    [[channels]]\nname = \"good\"\nkey = \"k\"\n\
    [[channels]]\nname = \"bad\"\nkey = \"k\"\n";

/// Reads until the server closes the connection; errors if it does not
/// within `limit` (a bound for a hung test, not a timing assertion).
fn closed_by_server(mut s: TcpStream, limit: Duration) -> anyhow::Result<()> {
    s.set_read_timeout(Some(limit))?;
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => anyhow::bail!("server kept the connection open: {e}"),
        }
    }
}

/// An RTMP connection past the handshake.
fn handshaken(addr: std::net::SocketAddr) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(addr)?;
    let mut c0c1 = vec![3u8];
    c0c1.extend((0..1536u32).map(|i| (i * 7 + 3) as u8));
    c0c1[1..9].fill(0);
    s.write_all(&c0c1)?;
    let mut s0s1s2 = vec![0u8; 1 + 1536 + 1536];
    s.read_exact(&mut s0s1s2)?;
    s.write_all(&s0s1s2[1..1537])?;
    Ok(s)
}

/// A type-0 chunk header on chunk stream `csid` for a message of `len`
/// bytes and type `kind` on stream 0.
fn chunk_header(csid: u8, len: u32, kind: u8) -> Vec<u8> {
    let mut h = vec![csid & 0x3f, 0, 0, 0];
    h.extend_from_slice(&len.to_be_bytes()[1..]);
    h.push(kind);
    h.extend_from_slice(&[0, 0, 0, 0]);
    h
}

/// AMF0 string, number and null values.
fn amf_string(out: &mut Vec<u8>, v: &str) {
    out.push(2);
    out.extend_from_slice(&(v.len() as u16).to_be_bytes());
    out.extend_from_slice(v.as_bytes());
}
fn amf_number(out: &mut Vec<u8>, v: f64) {
    out.push(0);
    out.extend_from_slice(&v.to_be_bytes());
}

/// A whole command message (AMF0, type 20) on chunk stream 3 for message
/// stream `stream_id`, in one chunk (the chunk size was raised first).
fn command(stream_id: u32, body: &[u8]) -> Vec<u8> {
    let mut m = chunk_header(3, body.len() as u32, 20);
    m[8..12].copy_from_slice(&stream_id.to_le_bytes());
    m.extend_from_slice(body);
    m
}

/// Connects to app `app` and publishes `stream`, as an encoder would,
/// without waiting for answers; returns the socket.
fn publish(addr: std::net::SocketAddr, app: &str, stream: &str) -> anyhow::Result<TcpStream> {
    let mut s = handshaken(addr)?;
    let mut size = chunk_header(2, 4, 1);
    size.extend_from_slice(&65_536u32.to_be_bytes());
    s.write_all(&size)?;
    let mut connect = Vec::new();
    amf_string(&mut connect, "connect");
    amf_number(&mut connect, 1.0);
    connect.push(3);
    for (k, v) in [("app", app), ("tcUrl", &format!("rtmp://{addr}/{app}"))] {
        connect.extend_from_slice(&(k.len() as u16).to_be_bytes());
        connect.extend_from_slice(k.as_bytes());
        amf_string(&mut connect, v);
    }
    connect.extend_from_slice(&[0, 0, 9]);
    s.write_all(&command(0, &connect))?;
    let mut create = Vec::new();
    amf_string(&mut create, "createStream");
    amf_number(&mut create, 2.0);
    create.push(5);
    s.write_all(&command(0, &create))?;
    let mut publish = Vec::new();
    amf_string(&mut publish, "publish");
    amf_number(&mut publish, 0.0);
    publish.push(5);
    amf_string(&mut publish, stream);
    amf_string(&mut publish, "live");
    s.write_all(&command(1, &publish))?;
    Ok(s)
}

#[test]
fn hostile_input_is_refused_and_others_keep_streaming() -> anyhow::Result<()> {
    let server = Sluice::start(CONFIG, &[])?;
    let limit = Duration::from_secs(20);
    // A well-behaved encoder on another channel, in real time.
    let mut good = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25:duration=8",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000:duration=8",
        ])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-g", "50", "-bf", "2",
        ])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "flv"])
        .arg(format!("rtmp://{}/live/good/k/main", server.rtmp))
        .stdin(Stdio::null())
        .spawn()?;

    // Random bytes instead of a handshake.
    let mut s = TcpStream::connect(server.rtmp)?;
    let mut x: u32 = 0x9e37_79b9;
    let noise: Vec<u8> = (0..65_536)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let _ = s.write_all(&noise);
    closed_by_server(s, limit)?;

    // A 2 GB chunk size.
    let mut s = handshaken(server.rtmp)?;
    let mut m = chunk_header(2, 4, 1);
    m.extend_from_slice(&0x8000_0000u32.to_be_bytes());
    s.write_all(&m)?;
    closed_by_server(s, limit)?;

    // A 16 MB message declared, no body (the cap here is 1 MiB).
    let mut s = handshaken(server.rtmp)?;
    s.write_all(&chunk_header(3, 16_000_000, 20))?;
    closed_by_server(s, limit)?;

    // An idle socket, and one that stops after the handshake.
    closed_by_server(TcpStream::connect(server.rtmp)?, limit)?;
    closed_by_server(handshaken(server.rtmp)?, limit)?;

    // Bad names over RTMP: a 10 KB stream name, `..` in the app path or
    // the stream name; each publish refused and the connection closed.
    let refusals_before = server.log().matches("ingest refused").count();
    let long_name = "a".repeat(10 * 1024);
    for (app, stream) in [
        ("live/bad/k", long_name.as_str()),
        ("live/../k", "main"),
        ("live/bad/k", "../main"),
        ("live/bad/k", "a/../../b"),
    ] {
        closed_by_server(publish(server.rtmp, app, stream)?, limit)?;
    }
    let refused = server.log().matches("ingest refused").count() - refusals_before;
    assert_eq!(refused, 4, "each bad RTMP name refused:\n{}", server.log());

    // Bad names over HTTP ingest: refused before any body is read.
    let long = format!("/ingest/bad/k.isml/Streams({})", "a".repeat(10 * 1024));
    for path in [
        long.as_str(),
        "/ingest/../k.isml/Streams(a)",
        "/ingest/bad/k.isml/Streams(..)",
        "/ingest/bad/k.isml/Streams(a%2F..%2Fb)",
    ] {
        let r = http_request(server.http, "POST", path, &[], b"garbage")?;
        assert_eq!(
            r.status,
            404,
            "{}: {}",
            &path[..path.len().min(60)],
            r.text()
        );
    }
    // Garbage body on a valid URL: 400 with the reason.
    let r = http_request(
        server.http,
        "POST",
        "/ingest/bad/k.isml/Streams(a)",
        &[],
        &noise[..4096],
    )?;
    assert_eq!(r.status, 400, "{}", r.text());

    let log = server.log();
    for reason in [
        "Set Chunk Size",
        "limit",
        "handshake timeout",
        "ingest refused",
    ] {
        assert!(log.contains(reason), "the log names {reason:?}:\n{log}");
    }

    // Each refusal is counted under a bounded reason.
    let metrics = sluice_tests::http_get(server.admin, "/metrics", &[])?.text();
    for reason in [
        "malformed",
        "message_too_large",
        "handshake_timeout",
        "bad_name",
    ] {
        assert!(
            metrics.contains(&format!("reason=\"{reason}\"")),
            "{reason} counted:\n{metrics}"
        );
    }

    // The good channel never noticed.
    assert!(good.wait()?.success());
    let base = "/preview/good/preview.isml";
    wait_until_ended(server.http, base, 1)?;
    let media =
        sluice_tests::http_get(server.http, &format!("{base}/m3u8-cmaf/t1/index.m3u8"), &[])?
            .text();
    assert!(!media.contains("#EXT-X-DISCONTINUITY"), "{media}");
    let total: f64 = media
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|l| l.trim_end_matches(',').parse::<f64>().ok())
        .sum();
    assert!((total - 8.0).abs() < 0.2, "{total} s\n{media}");
    let metrics = sluice_tests::http_get(server.admin, "/metrics", &[])?.text();
    assert!(
        metrics.contains("sluice_fragments_total{channel=\"good\"}"),
        "{metrics}"
    );

    // Peak memory stayed bounded (no 2 GB or 16 MiB buffers).
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))?;
    let hwm_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX);
    assert!(hwm_kb < 512 * 1024, "peak RSS {hwm_kb} kB");
    Ok(())
}
