//! `GET /metrics`, read by a real Prometheus text parser (PyPI
//! `prometheus-client`'s OpenMetrics parser) while encoders push: ingest
//! bytes rise with what is pushed, the plugin call histogram counts,
//! delivery cache hits rise on repeated requests, and a killed redundant
//! encoder shows in the encoder gauge while its duplicates were counted.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use sluice_tests::{
    Sluice, encode_source, ffmpeg_copy_realtime, http_get, running_channel, tempdir::TempDir,
    wait_for,
};

/// Parses an exposition with `prometheus_client.openmetrics.parser` and
/// returns every sample as `name{label="value",…}` → value (labels sorted).
fn parse(text: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    const PY: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        print(json.dumps([f"{s.name}{{{labels}}}", s.value]))
"#;
    let mut child = Command::new("python3")
        .args(["-c", PY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        stdin.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "the parser refused the exposition: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut samples = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (name, value): (String, f64) = serde_json::from_str(line)?;
        samples.insert(name, value);
    }
    Ok(samples)
}

fn scrape(s: &Sluice) -> anyhow::Result<BTreeMap<String, f64>> {
    let r = http_get(s.admin, "/metrics", &[])?;
    anyhow::ensure!(r.status == 200, "{}", r.text());
    parse(&r.text())
}

fn value(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    samples.get(key).copied().unwrap_or(0.0)
}

#[test]
fn metrics_parse_and_follow_ingest_plugins_delivery_and_redundant_encoders() -> anyhow::Result<()> {
    let s = Sluice::start("", &[])?;
    let ch = running_channel(&s, "ch1")?;
    let rtmp = format!("{}/main", ch["ingest"]["rtmp"].as_str().unwrap_or_default());
    let work = TempDir::new("sluice-metrics")?;
    let source = encode_source(work.path(), 20, "source.flv")?;
    // Two redundant encoders: the same stream, the same file, in real time.
    let push = || {
        ffmpeg_copy_realtime(&source, "flv", &[], &rtmp)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    };
    let mut first = push()?;
    let mut second = push()?;
    let encoders = r#"sluice_ingest_encoders{channel="ch1",stream="main"}"#;
    let bytes = r#"sluice_ingest_bytes_total{channel="ch1",stream="main"}"#;
    let duplicates = |m: &BTreeMap<String, f64>| -> f64 {
        m.iter()
            .filter(|(k, _)| {
                k.starts_with("sluice_ingest_duplicate_fragments_total{")
                    && k.contains(r#"channel="ch1""#)
            })
            .map(|(_, v)| v)
            .sum()
    };
    let before = wait_for(Duration::from_secs(30), || {
        let m = scrape(&s).ok()?;
        (value(&m, encoders) == 2.0 && value(&m, bytes) > 0.0 && duplicates(&m) > 0.0).then_some(m)
    })?;
    // Ingest bytes rise with what is pushed.
    wait_for(Duration::from_secs(30), || {
        let m = scrape(&s).ok()?;
        (value(&m, bytes) > value(&before, bytes)).then_some(())
    })?;

    // Delivery: a packaged manifest, then the same from the cache; the
    // plugin that packaged it shows in the call histogram.
    let manifest = "/preview/ch1/preview.isml/Manifest(format=mpd-time-cmaf)";
    let hits = r#"sluice_delivery_cache_hits_total{format="mpd-time-cmaf"}"#;
    let m0 = scrape(&s)?;
    for _ in 0..3 {
        assert_eq!(http_get(s.http, manifest, &[])?.status, 200);
    }
    let m1 = scrape(&s)?;
    assert!(
        value(&m1, hits) >= value(&m0, hits) + 1.0,
        "cache hits did not rise"
    );
    assert!(
        value(
            &m1,
            r#"sluice_delivery_requests_total{format="mpd-time-cmaf",status="2xx"}"#
        ) >= 3.0
    );
    let calls = r#"sluice_plugin_call_seconds_count{plugin="dash",world="packager"}"#;
    assert!(value(&m1, calls) >= 1.0, "no dash calls in the histogram");
    assert!(
        value(
            &m1,
            r#"sluice_plugin_call_seconds_count{plugin="rtmp",world="ingest-adapter"}"#
        ) > 0.0
    );
    assert!(
        value(
            &m1,
            r#"sluice_plugin_memory_peak_bytes{plugin="dash",world="packager"}"#
        ) > 0.0
    );
    // A format nobody serves is not a label.
    let _ = http_get(
        s.http,
        "/preview/ch1/preview.isml/Manifest(format=evil-label)",
        &[],
    )?;
    assert!(
        !http_get(s.admin, "/metrics", &[])?
            .text()
            .contains("evil-label")
    );

    // One redundant encoder dies: the gauge says so.
    first.kill()?;
    first.wait()?;
    wait_for(Duration::from_secs(30), || {
        let m = scrape(&s).ok()?;
        (value(&m, encoders) == 1.0).then_some(())
    })?;
    second.kill()?;
    second.wait()?;
    wait_for(Duration::from_secs(30), || {
        let m = scrape(&s).ok()?;
        (value(&m, encoders) == 0.0).then_some(())
    })?;
    Ok(())
}

#[test]
fn metrics_off_counts_no_delivery_or_plugin_calls() -> anyhow::Result<()> {
    // `metrics = false` (bench/metrics-cost.sh measures what they cost).
    // (Top-level keys go before the harness's own [plugins] table.)
    let s = Sluice::start("metrics = false\n[plugins]\n", &["--demo"])?;
    let manifest = "/preview/demo/preview.isml/Manifest(format=m3u8-cmaf)";
    wait_for(Duration::from_secs(30), || {
        (http_get(s.http, manifest, &[]).ok()?.status == 200).then_some(())
    })?;
    assert_eq!(http_get(s.http, manifest, &[])?.status, 200);
    let m = scrape(&s)?;
    assert!(
        !m.keys()
            .any(|k| k.starts_with("sluice_delivery_requests_total{")
                || k.starts_with("sluice_plugin_calls_total{")),
        "{m:?}"
    );
    // Ingest is counted regardless.
    assert!(
        value(
            &m,
            r#"sluice_ingest_bytes_total{channel="demo",stream="demo"}"#
        ) > 0.0
    );
    Ok(())
}
