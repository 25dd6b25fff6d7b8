//! `--https`: the delivery listener over TLS (HTTP/2 and HTTP/1.1 by ALPN),
//! with the self-signed certificate made once in `{data_dir}/tls/`, or a
//! certificate given with `--tls-cert/--tls-key`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use sluice_tests::{
    Sluice, ffmpeg_push_rtmp, ffprobe_frames, run, running_channel, serve_fails, tempdir::TempDir,
    wait_until_ended,
};

const MANIFEST: &str = "/preview/ch1/preview.isml/Manifest(format=m3u8-cmaf)";
const HTTPS: &[&str] = &["--https", "127.0.0.1:0"];

/// GETs `path` on `addr` as `https://localhost:PORT`, verifying the
/// certificate against `ca`; returns (status, HTTP version, body).
fn curl(
    addr: SocketAddr,
    ca: &Path,
    version_flag: &str,
    path: &str,
) -> anyhow::Result<(u16, String, String)> {
    let dir = TempDir::new("sluice-https-curl")?;
    let body = dir.path().join("body");
    let port = addr.port();
    let (ok, out, err) = run(Command::new("curl")
        .args(["-sS", "-g", version_flag, "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("localhost:{port}:{}", addr.ip())])
        .args(["-w", "%{http_code} %{http_version}", "-o"])
        .arg(&body)
        .arg(format!("https://localhost:{port}{path}")))?;
    anyhow::ensure!(ok, "curl {version_flag} {path}: {err}");
    let (code, version) = out
        .trim()
        .split_once(' ')
        .ok_or_else(|| anyhow::anyhow!("curl printed {out:?}"))?;
    Ok((
        code.parse()?,
        version.to_owned(),
        std::fs::read_to_string(&body)?,
    ))
}

/// SHA-256 (hex) of the first certificate of a PEM file.
fn pem_cert_sha256(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)?;
    let b64: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64)?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &der);
    Ok(digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

#[test]
fn preview_plays_over_https_h1_and_h2_with_a_self_signed_cert_made_once() -> anyhow::Result<()> {
    let dir = TempDir::new("sluice-https")?;
    let s = Sluice::start_in(dir.path(), "", HTTPS)?;
    let https = s.https.expect("listening https= line");
    assert!(https.ip().is_loopback() && https.port() != 0);
    let cert = dir.path().join("tls/cert.pem");
    let key = dir.path().join("tls/key.pem");
    assert!(cert.is_file() && key.is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&key)?.permissions().mode() & 0o777, 0o600);
    }
    let sha = pem_cert_sha256(&cert)?;
    assert!(
        s.log().contains(&sha),
        "the log names the certificate's SHA-256 {sha}:\n{}",
        s.log()
    );

    let ch = running_channel(&s, "ch1")?;
    let rtmp = format!("{}/main", ch["ingest"]["rtmp"].as_str().unwrap_or_default());
    let (ok, err) = ffmpeg_push_rtmp(&rtmp, 4, &[])?;
    assert!(ok, "ffmpeg push failed: {err}\nserver log:\n{}", s.log());
    wait_until_ended(s.http, "/preview/ch1/preview.isml", 1)?;

    for (flag, want) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let (status, version, body) = curl(https, &cert, flag, MANIFEST)?;
        assert_eq!((status, version.as_str()), (200, want), "curl {flag}");
        assert!(body.starts_with("#EXTM3U"), "{body}");
        assert!(
            body.contains("avc1.") && body.contains("mp4a.40.2"),
            "{body}"
        );
    }

    // ffmpeg's own TLS client (no ALPN, HTTP/1.1) decodes the whole thing.
    let url = format!("https://{https}{MANIFEST}");
    let (frames, errors) = ffprobe_frames(&url, &["-live_start_index", "0"])?;
    assert!(
        errors.trim().is_empty(),
        "decode errors: {errors}\nserver log:\n{}",
        s.log()
    );
    let video = frames.iter().filter(|f| f.media_type == "video").count();
    let audio = frames.iter().filter(|f| f.media_type == "audio").count();
    assert!(
        video >= 50 && audio >= 50,
        "decoded {video} video, {audio} audio frames"
    );

    let status = s.terminate()?;
    assert!(status.success(), "exit status {status}");

    // The second start reuses the certificate.
    let s = Sluice::start_in(dir.path(), "", HTTPS)?;
    assert!(s.https.is_some());
    assert_eq!(
        pem_cert_sha256(&cert)?,
        sha,
        "the certificate was made again"
    );
    assert!(s.log().contains(&sha), "{}", s.log());
    let (status, version, _) = curl(s.https.expect("https"), &cert, "--http2", "/no/such/thing")?;
    assert_eq!((status, version.as_str()), (404, "2"));
    Ok(())
}

#[test]
fn explicit_cert_and_key_are_served() -> anyhow::Result<()> {
    let dir = TempDir::new("sluice-https-own")?;
    let cert = dir.path().join("c.pem");
    let key = dir.path().join("k.pem");
    let made = run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-days", "2"]));
    match made {
        Ok((true, _, _)) => {}
        Ok((false, _, err)) => anyhow::bail!("openssl req failed: {err}"),
        Err(e) => {
            println!("note: openssl not available ({e:#}); explicit certificate check skipped");
            return Ok(());
        }
    }
    let (cert_s, key_s) = (cert.to_string_lossy(), key.to_string_lossy());
    let mut args = HTTPS.to_vec();
    args.extend(["--tls-cert", &cert_s, "--tls-key", &key_s]);
    let s = Sluice::start("", &args)?;
    let https = s.https.expect("https");
    let sha = pem_cert_sha256(&cert)?;
    assert!(s.log().contains(&sha), "{}", s.log());
    assert!(
        !s.data_dir.join("tls").exists(),
        "no self-signed certificate is made when one is given"
    );
    for (flag, want) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let (status, version, _) = curl(https, &cert, flag, MANIFEST)?;
        // No channel ch1: TLS and HTTP answer, delivery says 404.
        assert_eq!((status, version.as_str()), (404, want), "curl {flag}");
    }
    Ok(())
}

#[test]
fn half_pairs_bad_pem_and_busy_port_fail_with_one_line() -> anyhow::Result<()> {
    let dir = TempDir::new("sluice-https-bad")?;
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not PEM\n")?;
    let junk_s = junk.to_string_lossy();

    let (out, err) = serve_fails(&["--https", "127.0.0.1:0", "--tls-cert", &junk_s])?;
    assert!(!out.contains("listening"), "{out}");
    assert!(err.contains("--tls-key"), "{err}");

    let (_, err) = serve_fails(&[
        "--https",
        "127.0.0.1:0",
        "--tls-cert",
        &junk_s,
        "--tls-key",
        &junk_s,
    ])?;
    assert!(
        err.contains("bad TLS certificate") && err.contains("junk.pem"),
        "{err}"
    );

    let busy = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = busy.local_addr()?.to_string();
    let (_, err) = serve_fails(&["--https", &addr])?;
    assert!(
        err.contains(&format!("cannot listen on https={addr}")),
        "{err}"
    );
    Ok(())
}
