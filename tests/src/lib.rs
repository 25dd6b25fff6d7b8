//! Shared harness for the integration tests: starts the real `sluice`
//! binary on port 0 (reading the bound addresses from its `listening` lines),
//! and runs real peers (ffmpeg, ffprobe) against it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub mod faultproxy;
pub mod h3client;
pub mod objstore;
pub mod shield;

/// The `sluice` binary built beside the tests (`cargo test --workspace`
/// builds it into the same target directory).
pub fn sluice_bin() -> PathBuf {
    if let Ok(p) = std::env::var("SLUICE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/{profile}/deps/test-HASH → target/{profile}/sluice
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    dir.join("sluice")
}

/// The target directory (for caches shared between tests).
pub fn target_dir() -> PathBuf {
    sluice_bin()
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .expect("target directory")
}

/// Builds the example plugin `examples/{name}` for `wasm32-wasip2` (its
/// own crate, against `sdk/` and `wit/` only) into `{target}/examples`,
/// and returns the component's path. Cargo's lock serialises concurrent
/// builds and a built plugin is not built again.
pub fn example_plugin(name: &str) -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the repository root")?;
    build_component(&root.join("examples").join(name), name)
}

/// Builds the crate in `dir` (package `sluice-example-{name}`) for
/// `wasm32-wasip2` as [`example_plugin`] does; `tests/fixtures/` holds
/// such crates that are not plugins.
pub fn build_component(dir: &Path, name: &str) -> Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    let target = target_dir().join("examples");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let (ok, _, err) = run(Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        // What the test's own build set for the host must not leak in.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET"))?;
    if !ok {
        bail!("cannot build {}: {err}", dir.display());
    }
    let file = format!("sluice_example_{}.wasm", name.replace('-', "_"));
    let wasm = target.join("wasm32-wasip2").join("release").join(file);
    anyhow::ensure!(wasm.is_file(), "no {}", wasm.display());
    Ok(wasm)
}

/// A running `sluice serve`, stopped (SIGTERM, then kill) on drop.
pub struct Sluice {
    child: Child,
    /// Delivery address.
    pub http: SocketAddr,
    /// RTMP address (unspecified, port 0, on an edge: it has none).
    pub rtmp: SocketAddr,
    /// Management address.
    pub admin: SocketAddr,
    /// HTTPS address, when started with `--https` (its line follows admin's).
    pub https: Option<SocketAddr>,
    /// QUIC (HTTP/3) address, when started with `--quic`.
    pub quic: Option<SocketAddr>,
    /// With `--quic`: the certificate's SHA-256 (hex) from its listening line.
    pub quic_cert_sha256: Option<String>,
    /// With `--quic`: the SHA-256 (base64) of the certificate's public key
    /// from its listening line (`spki-sha256=`), as Chromium's
    /// `--ignore-certificate-errors-spki-list` takes it.
    pub quic_spki_sha256: Option<String>,
    /// Lines printed on stdout after the listening lines (e.g. the preview URL).
    pub stdout: mpsc::Receiver<String>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Removes a data directory the harness made, on drop.
    _owned_dir: Option<tempdir::TempDir>,
    stderr_log: PathBuf,
}

/// A temporary directory removed on drop (no extra crate needed).
pub mod tempdir {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// The directory.
    #[derive(Debug)]
    pub struct TempDir(PathBuf);

    impl TempDir {
        /// Creates a fresh directory under the system temp dir.
        pub fn new(prefix: &str) -> std::io::Result<TempDir> {
            static N: AtomicU64 = AtomicU64::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!(
                "{prefix}-{}-{n}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0)
            ));
            std::fs::create_dir_all(&p)?;
            Ok(TempDir(p))
        }

        /// Its path.
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Sluice {
    /// Starts `sluice serve` with `config` (TOML appended to the test
    /// defaults) and extra arguments.
    pub fn start(config: &str, args: &[&str]) -> Result<Sluice> {
        let dir = tempdir::TempDir::new("sluice-test")?;
        let mut s = Self::start_in(dir.path(), config, args)?;
        s._owned_dir = Some(dir);
        Ok(s)
    }

    /// Like [`Sluice::start`] with a data directory the caller keeps (to
    /// restart on the same state).
    pub fn start_in(data_dir: &Path, config: &str, args: &[&str]) -> Result<Sluice> {
        let cache = target_dir().join("test-plugin-cache");
        let config_path = data_dir.join("sluice.toml");
        // Every test shares one precompiled-plugin cache, so Cranelift runs
        // once per plugin build, not once per test.
        let cache_line = format!("cache_dir = {:?}\n", cache.display().to_string());
        let text = if config.contains("[plugins]\n") {
            config.replacen("[plugins]\n", &format!("[plugins]\n{cache_line}"), 1)
        } else {
            format!("[plugins]\n{cache_line}\n{config}\n")
        };
        std::fs::write(&config_path, text)?;
        let stderr_log = data_dir.join("stderr.log");
        let mut child = Command::new(sluice_bin())
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .arg("--data-dir")
            .arg(data_dir)
            .args([
                "--http",
                "127.0.0.1:0",
                "--rtmp",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
            ])
            .args(args)
            .env("SLUICE_LOG", "info,sluice=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", sluice_bin().display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut http, mut rtmp, mut admin, mut https) = (None, None, None, None);
        let (mut quic, mut quic_cert_sha256, mut quic_spki_sha256) = (None, None, None);
        let wants_https = args.contains(&"--https");
        // An edge opens no RTMP listener.
        let edge = args.contains(&"--upstream");
        let wants_quic = args.contains(&"--quic");
        let deadline = Instant::now() + Duration::from_secs(120);
        while http.is_none()
            || (rtmp.is_none() && !edge)
            || admin.is_none()
            || (wants_https && https.is_none())
            || (wants_quic && quic.is_none())
        {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(_) => {
                    let _ = child.kill();
                    let log = std::fs::read_to_string(&stderr_log).unwrap_or_default();
                    bail!("sluice did not report its listeners; stderr:\n{log}");
                }
            };
            if let Some(a) = line.strip_prefix("listening http=") {
                http = Some(a.parse()?);
            } else if let Some(a) = line.strip_prefix("listening rtmp=") {
                rtmp = Some(a.parse()?);
            } else if let Some(a) = line.strip_prefix("listening admin=") {
                admin = Some(a.parse()?);
            } else if let Some(a) = line.strip_prefix("listening https=") {
                https = Some(a.parse()?);
            } else if let Some(rest) = line.strip_prefix("listening quic=") {
                // `listening quic=ADDR cert-sha256=HEX [spki-sha256=B64]`
                let mut fields = rest.split_whitespace();
                let addr = fields.next().context("quic address")?;
                for field in fields {
                    match field.split_once('=') {
                        Some(("cert-sha256", v)) => quic_cert_sha256 = Some(v.to_owned()),
                        Some(("spki-sha256", v)) => quic_spki_sha256 = Some(v.to_owned()),
                        _ => {}
                    }
                }
                quic = Some(addr.parse()?);
            }
        }
        Ok(Sluice {
            child,
            http: http.context("http")?,
            rtmp: rtmp.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
            admin: admin.context("admin")?,
            https,
            quic,
            quic_cert_sha256,
            quic_spki_sha256,
            stdout: rx,
            data_dir: data_dir.to_path_buf(),
            _owned_dir: None,
            stderr_log,
        })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A URL on the delivery listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let status = self.child.wait()?;
        Ok(status)
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 GET (no client crate needed): status, headers, body.
pub fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<HttpResponse> {
    http_request(addr, "GET", path, headers, b"")
}

/// A JSON request to the management API; the body parsed as JSON (Null when empty).
pub fn api(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<(u16, serde_json::Value)> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let r = http_request(
        addr,
        method,
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )?;
    let v = if r.body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&r.body).with_context(|| format!("not JSON: {}", r.text()))?
    };
    Ok((r.status, v))
}

/// A minimal HTTP/1.1 request with `Connection: close`.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no header end")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .context("no status")?
        .parse()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// A response from [`http_get`].
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Polls `f` every 100 ms until it returns `Some` or `timeout` passes.
/// (Polling an HTTP resource is the readiness signal for media appearing.)
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("condition not met within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs a command to completion, returning (status ok, stdout, stderr).
pub fn run(cmd: &mut Command) -> Result<(bool, String, String)> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// x264 settings every test encoder uses: two B-frames, a 2 s GOP with no
/// scene-cut keyframes (so fragments cut on the 2 s grid), 4:2:0.
pub const X264: &[&str] = &[
    "-c:v",
    "libx264",
    "-preset",
    "veryfast",
    "-bf",
    "2",
    "-g",
    "50",
    "-keyint_min",
    "50",
    "-sc_threshold",
    "0",
    "-pix_fmt",
    "yuv420p",
];

/// Encodes a `seconds` long H.264 ([`X264`]) + AAC 440 Hz file named
/// `name` in `dir` (the container follows the extension) for encoders that
/// push a file with `-c copy`.
pub fn encode_source(dir: &Path, seconds: u32, name: &str) -> Result<PathBuf> {
    let file = dir.join(name);
    let (ok, _, err) = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args(X264)
        .args(["-c:a", "aac", "-b:a", "64k"])
        .arg(&file))?;
    anyhow::ensure!(ok, "{err}");
    Ok(file)
}

/// Pushes a synthetic H.264 (B-frames) + AAC stream with ffmpeg over RTMP,
/// as fast as ffmpeg can encode it. Returns ffmpeg's success and stderr.
pub fn ffmpeg_push_rtmp(url: &str, seconds: u32, extra: &[&str]) -> Result<(bool, String)> {
    let (ok, _, err) = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args(X264)
        .args(["-c:a", "aac", "-b:a", "64k", "-ac", "2"])
        .args(extra)
        .args(["-f", "flv", url]))?;
    Ok((ok, err))
}

/// One decoded frame as ffprobe reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedFrame {
    /// `video` or `audio`.
    pub media_type: String,
    /// Presentation time in seconds.
    pub pts_time: f64,
}

/// Decodes every frame of `url` with ffprobe; returns the frames and
/// ffprobe's stderr (decode errors appear there at `-v error`).
pub fn ffprobe_frames(url: &str, extra: &[&str]) -> Result<(Vec<DecodedFrame>, String)> {
    let (ok, out, err) = run(Command::new("ffprobe")
        .args(["-v", "error"])
        .args(extra)
        .args([
            "-show_entries",
            "frame=media_type,pts_time",
            "-of",
            "csv=p=0",
        ])
        .arg(url))?;
    if !ok {
        bail!("ffprobe failed: {err}");
    }
    let frames = out
        .lines()
        .filter_map(|l| {
            let mut it = l.split(',');
            let media_type = it.next()?.to_owned();
            let pts_time = it.next()?.parse().ok()?;
            Some(DecodedFrame {
                media_type,
                pts_time,
            })
        })
        .collect();
    Ok((frames, err))
}

/// Waits until the HLS presentation at `base` (`/preview/{channel}/preview.isml`)
/// lists `variants` variants and every media playlist carries
/// `#EXT-X-ENDLIST` (the encoders finished and everything was cut); returns
/// the multivariant playlist.
pub fn wait_until_ended(addr: SocketAddr, base: &str, variants: usize) -> Result<String> {
    wait_for(Duration::from_secs(30), || {
        let master = http_get(addr, &format!("{base}/Manifest(format=m3u8-cmaf)"), &[]).ok()?;
        let text = master.text();
        if master.status != 200 || text.matches("#EXT-X-STREAM-INF").count() != variants {
            return None;
        }
        // Variant URIs, and the rendition URIs of EXT-X-MEDIA lines.
        let variants = text
            .lines()
            .filter(|l| !l.starts_with('#') && l.ends_with(".m3u8"));
        let renditions = text
            .lines()
            .filter_map(|l| l.split("URI=\"").nth(1))
            .filter_map(|l| l.split('"').next());
        let ended = variants.chain(renditions).all(|uri| {
            http_get(addr, &format!("{base}/{uri}"), &[])
                .map(|r| r.text().contains("#EXT-X-ENDLIST"))
                .unwrap_or(false)
        });
        ended.then_some(text)
    })
}

/// Creates channel `name` through the API and starts it; returns the
/// channel object (with its `ingest.rtmp` and `ingest.fmp4` URLs).
pub fn running_channel(server: &Sluice, name: &str) -> Result<serde_json::Value> {
    let body = serde_json::json!({ "name": name });
    let (status, ch) = api(server.admin, "POST", "/api/v1/channels", Some(&body))?;
    anyhow::ensure!(status == 201, "create {name}: {ch}");
    let (status, started) = api(
        server.admin,
        "POST",
        &format!("/api/v1/channels/{name}/start"),
        None,
    )?;
    anyhow::ensure!(status == 200, "start {name}: {started}");
    Ok(ch)
}

/// Creates asset `name`, program `name` on `channel` with `window`, starts
/// it, and publishes locator `name`; returns the locator object.
pub fn start_recording(
    s: &Sluice,
    channel: &str,
    name: &str,
    window: &str,
) -> Result<serde_json::Value> {
    let a = s.admin;
    let (status, v) = api(
        a,
        "POST",
        "/api/v1/assets",
        Some(&serde_json::json!({"name": name})),
    )?;
    anyhow::ensure!(status == 201, "{v}");
    let programs = format!("/api/v1/channels/{channel}/programs");
    let body = serde_json::json!({"name": name, "asset": name, "archive_window": window});
    let (status, v) = api(a, "POST", &programs, Some(&body))?;
    anyhow::ensure!(status == 201, "{v}");
    let (status, v) = api(a, "POST", &format!("{programs}/{name}/start"), None)?;
    anyhow::ensure!(status == 200, "{v}");
    let (status, l) = api(
        a,
        "POST",
        "/api/v1/locators",
        Some(&serde_json::json!({"id": name, "asset": name})),
    )?;
    anyhow::ensure!(status == 201, "{l}");
    Ok(l)
}

/// Runs `sluice serve` once in a fresh data directory, its listeners on
/// loopback port 0 unless `args` names them, expecting it to fail with one
/// clear line: returns its stdout and that line.
pub fn serve_fails(args: &[&str]) -> Result<(String, String)> {
    let data = tempdir::TempDir::new("sluice-serve-fails")?;
    let mut cmd = Command::new(sluice_bin());
    cmd.arg("serve").arg("--data-dir").arg(data.path());
    for flag in ["--http", "--rtmp", "--admin"] {
        if !args.contains(&flag) {
            cmd.args([flag, "127.0.0.1:0"]);
        }
    }
    let (ok, out, err) = run(cmd.args(args))?;
    anyhow::ensure!(!ok, "sluice serve {args:?} did not fail: {err}");
    anyhow::ensure!(err.trim().lines().count() == 1, "not one line: {err}");
    Ok((out, err))
}

/// Channel `ch1` with asset, program (PT5M) and locator `show` recording
/// it, fed `seconds` of synthetic media over RTMP (faster than real time)
/// until all but the last two seconds are written; returns the asset.
pub fn record_clip(server: &Sluice, seconds: u32) -> Result<serde_json::Value> {
    let ch = running_channel(server, "ch1")?;
    start_recording(server, "ch1", "show", "PT5M")?;
    let rtmp = format!("{}/main", ch["ingest"]["rtmp"].as_str().unwrap_or_default());
    let (ok, err) = ffmpeg_push_rtmp(&rtmp, seconds, &[])?;
    anyhow::ensure!(ok, "{err}");
    wait_recorded(server, "show", u64::from(seconds.saturating_sub(2)) * 1000)
}

/// `ffmpeg -re -i SOURCE -c copy -f FORMAT [OUTPUT_ARGS…] URL`: an encoder
/// sending a file in real time without re-encoding (run it, or spawn it).
pub fn ffmpeg_copy_realtime(
    source: &Path,
    format: &str,
    output_args: &[&str],
    url: &str,
) -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-re",
        "-i",
    ])
    .arg(source)
    .args(["-c", "copy", "-f", format])
    .args(output_args)
    .arg(url)
    .stdin(Stdio::null());
    cmd
}

/// Pushes a file with `ffmpeg -c copy` over RTMP to `url`, in real time
/// (`-re`) or as fast as the server reads. Returns success and stderr.
pub fn push_file(source: &Path, url: &str, realtime: bool) -> Result<(bool, String)> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin"]);
    if realtime {
        cmd.arg("-re");
    }
    let (ok, _, err) = run(cmd
        .arg("-i")
        .arg(source)
        .args(["-c", "copy", "-f", "flv", url]))?;
    Ok((ok, err))
}

/// Waits until asset `asset` holds at least `min_ms` of media, all of it
/// written to storage.
pub fn wait_recorded(server: &Sluice, asset: &str, min_ms: u64) -> Result<serde_json::Value> {
    wait_for(Duration::from_secs(60), || {
        let (_, a) = api(
            server.admin,
            "GET",
            &format!("/api/v1/assets/{asset}"),
            None,
        )
        .ok()?;
        (a["duration_ms"].as_u64()? >= min_ms && a["pending"] == 0).then_some(a)
    })
}

/// Stops program `program` of `channel` (200 expected).
pub fn stop_program(server: &Sluice, channel: &str, program: &str) -> Result<()> {
    let path = format!("/api/v1/channels/{channel}/programs/{program}/stop");
    let (status, v) = api(server.admin, "POST", &path, None)?;
    anyhow::ensure!(status == 200, "stop {channel}/{program}: {v}");
    Ok(())
}

/// The segment URIs of a media playlist and the sum of their durations.
pub fn media_segments(playlist: &str) -> (Vec<String>, f64) {
    let names = playlist
        .lines()
        .filter(|l| l.ends_with(".m4s"))
        .map(str::to_owned)
        .collect();
    let total = playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|l| l.trim_end_matches(',').parse::<f64>().ok())
        .sum();
    (names, total)
}

/// Encodes 8 s of test video at 640x360 (800 kbit/s, rendition `360p`) and
/// 320x180 (300 kbit/s, `180p`) with AAC in one ffmpeg run (B-frames, 2 s
/// GOP); `output(name)` gives each rendition's muxer arguments and URL.
pub fn ffmpeg_two_renditions(output: impl Fn(&str) -> Vec<String>) -> Result<(bool, String)> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        // Durations on the inputs: an output `-t` would bind to one output only.
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=25:duration=8",
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000:duration=8",
        ]);
    for (size, rate, name) in [("640x360", "800k", "360p"), ("320x180", "300k", "180p")] {
        cmd.args(["-map", "0:v", "-map", "1:a", "-s", size, "-b:v", rate])
            .args(X264)
            .args(["-c:a", "aac", "-b:a", "64k"])
            .args(output(name));
    }
    let (ok, _, err) = run(&mut cmd)?;
    Ok((ok, err))
}

/// Waits for the two variants of [`ffmpeg_two_renditions`] at `base` and
/// decodes each: no error and 200 video frames, give or take a fragment.
pub fn assert_two_variants_decode(server: &Sluice, base: &str) -> Result<()> {
    let master = wait_until_ended(server.http, base, 2)?;
    anyhow::ensure!(master.contains("RESOLUTION=640x360"), "{master}");
    anyhow::ensure!(master.contains("RESOLUTION=320x180"), "{master}");
    let variants: Vec<&str> = master
        .lines()
        .filter(|l| !l.starts_with('#') && l.ends_with(".m3u8"))
        .collect();
    anyhow::ensure!(variants.len() == 2, "{master}");
    for v in variants {
        let (frames, errors) = ffprobe_frames(&server.url(&format!("{base}/{v}")), &[])?;
        anyhow::ensure!(errors.trim().is_empty(), "{v}: {errors}");
        let video = frames.iter().filter(|f| f.media_type == "video").count();
        anyhow::ensure!(
            (video as i64 - 200).abs() <= 50,
            "{v}: {video} of 200 frames"
        );
    }
    Ok(())
}

/// A browser player for [`play_in_browser`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Player {
    /// hls.js.
    HlsJs,
    /// dash.js.
    DashJs,
    /// shaka-player.
    Shaka,
    /// dash.js with its Smooth Streaming module.
    DashJsMss,
}

/// Plays `url` in headless Chromium with `player` (`tests/browser/play.mjs`)
/// and returns its report; fails unless `currentTime` advanced 5 s with no
/// player or media error and no request off loopback, and, with
/// `seek_back`, a seek to the start of the seekable range played on.
pub fn play_in_browser(player: Player, url: &str, seek_back: bool) -> Result<serde_json::Value> {
    let extra: &[&str] = if seek_back { &["--seek-back"] } else { &[] };
    play_in_browser_with(player, url, extra)
}

/// [`play_in_browser`] with more `play.mjs` arguments (`--advance 30`,
/// `--timeout 120`, ...).
pub fn play_in_browser_with(
    player: Player,
    url: &str,
    extra: &[&str],
) -> Result<serde_json::Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    anyhow::ensure!(
        dir.join("node_modules/playwright-core").is_dir()
            && Path::new("/usr/bin/chromium").exists(),
        "browser players not installed: run ./scripts/test.sh (apt chromium, npm ci in tests/browser)"
    );
    let name = match player {
        Player::HlsJs => "hls",
        Player::DashJs => "dash",
        Player::Shaka => "shaka",
        Player::DashJsMss => "mss",
    };
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("play.mjs"))
        .args(["--player", name, "--url", url])
        .args(extra);
    let (ok, out, err) = run(&mut cmd)?;
    let report: serde_json::Value =
        serde_json::from_str(out.trim()).with_context(|| format!("player output: {out}\n{err}"))?;
    anyhow::ensure!(ok, "{name} did not play {url}: {report}\n{err}");
    Ok(report)
}

/// Every URL below `base` an HLS client of `format` would fetch from
/// `addr`: the multivariant playlist, media playlists, init segments and
/// media segments. With `ended`, every media playlist must be complete.
pub fn hls_urls(
    addr: SocketAddr,
    base: &str,
    format: &str,
    ended: bool,
) -> Result<std::collections::BTreeSet<String>> {
    let mut urls = std::collections::BTreeSet::new();
    let master = format!("{base}/Manifest(format={format})");
    let text = http_get(addr, &master, &[])?.text();
    urls.insert(master);
    let playlists: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.ends_with(".m3u8"))
        .map(str::to_owned)
        .chain(
            text.lines()
                .filter_map(|l| l.split("URI=\"").nth(1))
                .filter_map(|l| l.split('"').next())
                .map(str::to_owned),
        )
        .collect();
    anyhow::ensure!(!playlists.is_empty(), "{text}");
    for p in playlists {
        let url = format!("{base}/{p}");
        let media = http_get(addr, &url, &[])?.text();
        anyhow::ensure!(!ended || media.contains("#EXT-X-ENDLIST"), "{url}: {media}");
        urls.insert(url);
        let dir = p.rsplit_once('/').map_or("", |(d, _)| d);
        for line in media.lines() {
            let uri = if let Some(rest) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
                rest.split('"').next().unwrap_or_default()
            } else if !line.starts_with('#') && !line.is_empty() {
                line
            } else {
                continue;
            };
            urls.insert(format!("{base}/{dir}/{uri}"));
        }
    }
    Ok(urls)
}

/// The manifests of every format below `base` (Smooth, both DASH
/// profiles, HDS) and every URL of both HLS flavours, of an ended
/// presentation on `addr`.
pub fn every_url(addr: SocketAddr, base: &str) -> Result<std::collections::BTreeSet<String>> {
    let mut urls = std::collections::BTreeSet::new();
    for format in [
        "Manifest",
        "Manifest(format=mpd-time-csf)",
        "Manifest(format=mpd-time-cmaf)",
        "Manifest(format=f4m-f4f)",
    ] {
        urls.insert(format!("{base}/{format}"));
    }
    for format in ["m3u8-cmaf", "m3u8-aapl"] {
        urls.extend(hls_urls(addr, base, format, true)?);
    }
    Ok(urls)
}

/// Fetches every URL of `urls` from each of `addrs` and checks that all
/// answer 200 with the same bytes and ETag.
pub fn assert_same_bytes(
    addrs: &[SocketAddr],
    urls: &std::collections::BTreeSet<String>,
) -> Result<()> {
    for url in urls {
        let first = http_get(addrs[0], url, &[])?;
        anyhow::ensure!(
            first.status == 200,
            "{url}: {} {}",
            first.status,
            first.text()
        );
        for addr in &addrs[1..] {
            let other = http_get(*addr, url, &[])?;
            anyhow::ensure!(
                other.status == 200,
                "{url} from {addr}: {} {}",
                other.status,
                other.text()
            );
            anyhow::ensure!(
                other.body == first.body,
                "{url} differs between {} and {addr} from byte {}",
                addrs[0],
                first
                    .body
                    .iter()
                    .zip(&other.body)
                    .position(|(a, b)| a != b)
                    .unwrap_or(first.body.len().min(other.body.len()))
            );
            anyhow::ensure!(
                other.header("etag") == first.header("etag"),
                "{url}: ETags differ"
            );
        }
    }
    Ok(())
}

/// A counter of the `/metrics` on `admin`, by its name and labels as
/// printed (`sluice_tier_requests_total{kind="fragment"}`); 0 when absent.
pub fn metric(admin: SocketAddr, name_and_labels: &str) -> Result<u64> {
    let r = http_get(admin, "/metrics", &[])?;
    let needle = format!("{name_and_labels} ");
    Ok(r.text()
        .lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

/// `n` concurrent GETs of `path` from `addr` with `headers`: every status
/// and body.
pub fn burst(
    addr: SocketAddr,
    path: &str,
    n: usize,
    headers: &[(&str, &str)],
) -> Result<Vec<(u16, Vec<u8>)>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|_| scope.spawn(|| http_get(addr, path, headers)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let r = h
                    .join()
                    .map_err(|_| anyhow::anyhow!("request panicked"))??;
                Ok((r.status, r.body))
            })
            .collect()
    })
}

/// `sluice_tier_requests_total{kind="fragment"}` on `s`: fragment objects
/// its upstream interface answered (over HTTP and QUIC).
pub fn fragment_requests(s: &Sluice) -> Result<u64> {
    metric(s.admin, "sluice_tier_requests_total{kind=\"fragment\"}")
}

/// The distinct fragment names (`track/start.checksum`) the upstream
/// interface of `s` lists in the timeline documents at `paths`, fetched
/// with `headers` (the tier token).
pub fn fragment_names(
    s: &Sluice,
    paths: &[&str],
    headers: &[(&str, &str)],
) -> Result<std::collections::BTreeSet<String>> {
    let mut names = std::collections::BTreeSet::new();
    for p in paths {
        let r = http_get(s.http, p, headers)?;
        anyhow::ensure!(r.status == 200, "{p}: {}", r.text());
        let doc: serde_json::Value = serde_json::from_slice(&r.body)?;
        for t in doc["tracks"].as_array().into_iter().flatten() {
            for f in t["fragments"].as_array().into_iter().flatten() {
                names.insert(format!("{}/{}.{}", t["id"], f[0], f[6]));
            }
        }
    }
    Ok(names)
}

/// Records `seconds` of media pushed in real time into a new program
/// `show` (locator `show`) of channel `ch1` on `node`, while `edge`
/// follows it: waits until the edge's live HLS playlist has grown three
/// times, then decodes the edge's live HLS with ffprobe to the end.
/// Returns the video frames decoded and ffprobe's stderr.
pub fn play_live_through_edge(
    node: &Sluice,
    edge: &Sluice,
    seconds: u32,
) -> Result<(usize, String)> {
    let ch = running_channel(node, "ch1")?;
    start_recording(node, "ch1", "show", "PT5M")?;
    let rtmp = format!("{}/main", ch["ingest"]["rtmp"].as_str().unwrap_or_default());
    let work = tempdir::TempDir::new("sluice-edge-live")?;
    let source = encode_source(work.path(), seconds, "source.flv")?;
    let playlist = "/show/show.ism/m3u8-cmaf/t1/index.m3u8";
    std::thread::scope(|scope| {
        let push = scope.spawn(|| push_file(&source, &rtmp, true));
        let mut seen = std::collections::BTreeSet::new();
        wait_for(Duration::from_secs(60), || {
            let r = http_get(edge.http, playlist, &[]).ok()?;
            (r.status == 200).then(|| seen.insert(r.text().matches("#EXTINF").count()));
            (seen.len() >= 3).then_some(())
        })?;
        let url = edge.url("/show/show.ism/Manifest(format=m3u8-cmaf)");
        let (frames, err) = ffprobe_frames(
            &url,
            &["-live_start_index", "0", "-m3u8_hold_counters", "2"],
        )?;
        let video = frames.iter().filter(|f| f.media_type == "video").count();
        let (ok, push_err) = push
            .join()
            .map_err(|_| anyhow::anyhow!("push panicked"))??;
        anyhow::ensure!(ok, "{push_err}");
        Ok((video, err))
    })
}
