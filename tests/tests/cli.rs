//! The command line as CONTRACT.md fixes it: clear one-line failures,
//! JSON logs, `sluice plugin check`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use sluice_tests::{run, serve_fails, sluice_bin, tempdir::TempDir};

#[test]
fn bad_config_busy_port_and_bad_data_dir_fail_with_one_line() -> anyhow::Result<()> {
    let dir = TempDir::new("sluice-cli-config")?;
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "no_such_key = 1\n")?;
    let (_, err) = serve_fails(&["--config", config.to_str().unwrap()])?;
    assert!(
        err.contains("bad config") && err.contains("no_such_key"),
        "{err}"
    );

    let busy = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = busy.local_addr()?.to_string();
    let (_, err) = serve_fails(&["--http", &addr])?;
    assert!(
        err.contains(&format!("cannot listen on http={addr}")),
        "{err}"
    );

    let (ok, _, err) = run(Command::new(sluice_bin()).args([
        "serve",
        "--data-dir",
        "/dev/null/sluice",
        "--http",
        "127.0.0.1:0",
    ]))?;
    assert!(!ok);
    assert!(err.contains("data directory"), "{err}");

    // Edge flags: what an edge cannot be is refused with one line.
    let (_, err) = serve_fails(&["--upstream", "http://127.0.0.1:1", "--demo"])?;
    assert!(
        err.contains("an edge (--upstream) holds no channels"),
        "{err}"
    );
    let (_, err) = serve_fails(&["--upstream", "ftp://127.0.0.1:1"])?;
    assert!(
        err.contains("the scheme must be http://, https:// or quic://"),
        "{err}"
    );
    let (_, err) = serve_fails(&["--upstream", "http://127.0.0.1:1/some/path"])?;
    assert!(err.contains("no path"), "{err}");
    Ok(())
}

#[test]
fn json_logs_are_one_object_per_line() -> anyhow::Result<()> {
    let data = TempDir::new("sluice-cli-json")?;
    let mut child = Command::new(sluice_bin())
        .arg("serve")
        .arg("--data-dir")
        .arg(data.path())
        .args([
            "--http",
            "127.0.0.1:0",
            "--rtmp",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ])
        .args(["--log-format", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let mut listening = Vec::new();
    let mut lines = 0;
    // Read to the end: after the listening lines, SIGTERM; the drain's own
    // log lines must be JSON too.
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        lines += 1;
        let v: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| anyhow::anyhow!("not JSON: {line:?}: {e}"))?;
        if let Some(m) = v["fields"]["message"].as_str()
            && m.starts_with("listening ")
        {
            listening.push(m.to_owned());
            if listening.len() == 3 {
                Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status()?;
            }
        }
    }
    assert!(lines > 3, "the drain is logged too");
    let status = child.wait()?;
    assert!(status.success(), "SIGTERM exits 0: {status}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("piped"), &mut stderr)?;
    assert!(stderr.trim().is_empty(), "nothing but JSON: {stderr}");
    assert!(listening[0].starts_with("listening http=127.0.0.1:"));
    assert!(listening[1].starts_with("listening rtmp=127.0.0.1:"));
    assert!(listening[2].starts_with("listening admin=127.0.0.1:"));
    Ok(())
}

#[test]
fn plugin_check_describes_or_refuses() -> anyhow::Result<()> {
    let (ok, out, err) = run(Command::new(sluice_bin()).args([
        "plugin",
        "check",
        sluice::plugins::testing::TESTBED_WASM,
    ]))?;
    assert!(ok, "{err}");
    assert!(out.contains("testbed") && out.contains("packager"), "{out}");
    // It ran against the built-in fixture and reports time and memory.
    assert!(
        out.contains("fixture: the demo clip") && out.contains("Manifest(format=testbed): 200"),
        "{out}"
    );
    assert!(out.contains(" ms, memory "), "{out}");
    // An ingest adapter gets bytes of its own container: the built-in
    // fMP4 adapter reads tracks and samples from the fixture.
    let dir = TempDir::new("sluice-cli-check")?;
    let fmp4 = dir.path().join("fmp4.wasm");
    std::fs::write(
        &fmp4,
        sluice::plugins::testing::builtin("sluice-plugin-fmp4").unwrap_or_default(),
    )?;
    let (ok, out, err) = run(Command::new(sluice_bin())
        .args(["plugin", "check"])
        .arg(&fmp4))?;
    assert!(ok, "{err}");
    assert!(
        out.contains("tracks: [1 avc1.") && out.contains("samples: 200"),
        "{out}"
    );

    let bogus = dir.path().join("bogus.wasm");
    std::fs::write(&bogus, b"not a component")?;
    let (ok, _, err) = run(Command::new(sluice_bin())
        .args(["plugin", "check"])
        .arg(&bogus))?;
    assert!(!ok);
    assert!(err.contains("bogus.wasm"), "{err}");
    Ok(())
}
