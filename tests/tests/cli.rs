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

#[test]
fn config_default_is_the_reference_and_loads_as_the_defaults() -> anyhow::Result<()> {
    let (ok, out, err) = run(Command::new(sluice_bin()).args(["config", "default"]))?;
    assert!(ok, "{err}");
    // It loads, and as exactly the defaults.
    let parsed: sluice::config::Config = toml::from_str(&out)?;
    assert_eq!(
        serde_json::to_value(&parsed)?,
        serde_json::to_value(sluice::config::Config::default())?
    );
    // Every key is there, set or (without a default) commented out, in
    // its table.
    fn keys(v: &serde_json::Value, table: &str, out: &mut Vec<(String, String)>) {
        for (k, v) in v.as_object().into_iter().flatten() {
            match v {
                serde_json::Value::Object(_) => {
                    let t = if table.is_empty() {
                        k.clone()
                    } else {
                        format!("{table}.{k}")
                    };
                    keys(v, &t, out);
                }
                _ => out.push((table.to_owned(), k.clone())),
            }
        }
    }
    let mut all = Vec::new();
    keys(
        &serde_json::to_value(sluice::config::Config::default())?,
        "",
        &mut all,
    );
    assert!(all.len() > 40, "{} keys", all.len());
    let mut table = String::new();
    let mut seen = std::collections::BTreeSet::new();
    for line in out.lines() {
        if let Some(a) = line.strip_prefix("# [[").and_then(|l| l.strip_suffix("]]")) {
            // An array of tables (none by default): its key.
            let (t, k) = a.rsplit_once('.').unwrap_or(("", a));
            seen.insert((t.to_owned(), k.to_owned()));
        } else if let Some(t) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = t.to_owned();
        } else if let Some((k, _)) = line.trim_start_matches("# ").split_once(" =") {
            seen.insert((table.clone(), k.to_owned()));
        }
    }
    for (t, k) in &all {
        assert!(
            seen.contains(&(t.clone(), k.clone())),
            "[{t}] {k} missing:\n{out}"
        );
    }
    // Each is documented (a comment right above it), and the keys flags
    // set name their flag and variable.
    assert!(out.contains("# (flag --plugin-dir, variable SLUICE_PLUGIN_DIR)\n# dir ="));
    assert!(out.contains("# (flag --upstream, variable SLUICE_UPSTREAM)\nupstreams = []"));
    assert!(out.contains("# (flag --http, variable SLUICE_HTTP)\nhttp = \"0.0.0.0:8080\""));
    assert!(
        out.contains("# Linear memory cap per instance, in MiB (default 64).\nmemory_mib = 64")
    );
    // The reference in the repository is this output.
    let committed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"),
    )?;
    assert!(
        committed.contains(&out),
        "docs/configuration.md is stale: regenerate it with `sluice config default`"
    );
    Ok(())
}

#[test]
fn the_systemd_unit_verifies() -> anyhow::Result<()> {
    // examples/deploy/sluice.service, pointed at this build.
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/deploy/sluice.service"),
    )?;
    let dir = TempDir::new("sluice-unit")?;
    let path = dir.path().join("sluice.service");
    let bin = sluice_bin();
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/sluice", &bin.display().to_string()),
    )?;
    let (ok, out, err) = run(Command::new("systemd-analyze").arg("verify").arg(&path))?;
    assert!(ok && err.trim().is_empty(), "{out}{err}");
    // What it runs is a valid command line of this binary.
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart=/usr/local/bin/sluice "))
        .ok_or_else(|| anyhow::anyhow!("no ExecStart"))?;
    let (ok, _, err) = run(Command::new(&bin)
        .args(exec.split_whitespace())
        .arg("--help"))?;
    assert!(ok, "{err}");
    Ok(())
}
