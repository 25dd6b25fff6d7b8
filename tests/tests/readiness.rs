//! `GET /readyz`: 200 `ready` when the node can do its job, 503 with the
//! reasons when not (storage on an ingest node, upstreams on an edge);
//! `/healthz` stays 200 (the process is alive).

use std::time::Duration;

use sluice_tests::faultproxy::{FaultProxy, Mode};
use sluice_tests::{Sluice, http_get, metric, wait_for};

/// Polls `/readyz` until its status is `status`; returns the body.
fn readyz_becomes(s: &Sluice, status: u16) -> anyhow::Result<String> {
    wait_for(Duration::from_secs(30), || {
        let r = http_get(s.admin, "/readyz", &[]).ok()?;
        (r.status == status).then(|| r.text())
    })
}

#[test]
fn an_ingest_node_is_not_ready_while_its_storage_takes_no_writes() -> anyhow::Result<()> {
    let s = Sluice::start("", &[])?;
    let r = http_get(s.admin, "/readyz", &[])?;
    assert_eq!((r.status, r.text().as_str()), (200, "ready\n"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    // The asset directory becomes a file: no object can be written below
    // it (whoever the tests run as).
    let assets = s.data_dir.join("assets");
    std::fs::remove_dir_all(&assets)?;
    std::fs::write(&assets, b"not a directory")?;
    let body = readyz_becomes(&s, 503)?;
    assert!(body.starts_with("not ready\n"), "{body}");
    assert!(
        body.contains("storage:") && body.contains("not writable"),
        "{body}"
    );
    assert_eq!(http_get(s.admin, "/healthz", &[])?.status, 200);
    // Writable again: ready again.
    std::fs::remove_file(&assets)?;
    std::fs::create_dir(&assets)?;
    readyz_becomes(&s, 200)?;
    Ok(())
}

#[test]
fn an_edge_is_ready_while_an_upstream_answers() -> anyhow::Result<()> {
    let node = Sluice::start("", &[])?;
    let proxy = FaultProxy::start(node.http)?;
    let edge = Sluice::start("", &["--upstream", &format!("http://{}", proxy.addr)])?;
    assert_eq!(http_get(edge.admin, "/readyz", &[])?.status, 200);
    let up = r#"sluice_edge_upstream_up{upstream="0"}"#;
    assert_eq!(metric(edge.admin, up)?, 1);
    assert!(
        metric(
            edge.admin,
            r#"sluice_edge_upstream_seconds_count{upstream="0"}"#
        )? > 0
    );
    proxy.set(Mode::Refuse);
    let body = readyz_becomes(&edge, 503)?;
    assert!(body.contains("upstreams: none reachable"), "{body}");
    assert!(body.contains(&proxy.addr.to_string()), "{body}");
    // The metrics say which upstream is in use: none now.
    wait_for(Duration::from_secs(30), || {
        (metric(edge.admin, up).ok()? == 0).then_some(())
    })?;
    proxy.set(Mode::Pass);
    readyz_becomes(&edge, 200)?;
    Ok(())
}
