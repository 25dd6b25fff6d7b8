//! An nginx `proxy_cache` shield (`examples/deploy/shield.conf`) in front of
//! the upstream interface: concurrent requests for the same cold object
//! reach the ingest node once, blocking timeline answers included; the
//! tier token passes through and is never answered from cache.

use std::time::Duration;

use sluice_tests::shield::Shield;
use sluice_tests::{
    Sluice, burst, encode_source, http_get, metric, push_file, record_clip, running_channel,
    stop_program, wait_for,
};

const AUTH: (&str, &str) = ("Authorization", "Bearer t0ken-t0ken");

/// `sluice_tier_requests_total{kind}` on the ingest node.
fn tier_requests(s: &Sluice, kind: &str) -> anyhow::Result<u64> {
    metric(
        s.admin,
        &format!("sluice_tier_requests_total{{kind=\"{kind}\"}}"),
    )
}

fn all_same(answers: &[(u16, Vec<u8>)]) -> bool {
    answers.iter().all(|a| a == &answers[0]) && answers[0].0 == 200
}

#[test]
fn a_shield_collapses_concurrent_requests_into_one() -> anyhow::Result<()> {
    let s = Sluice::start("", &["--tier-token", "t0ken-t0ken"])?;
    let shield = Shield::start(s.http)?;
    record_clip(&s, 8)?;
    stop_program(&s, "ch1", "show")?;

    // No token, through the shield: the ingest node's 401, never cached.
    for _ in 0..2 {
        let r = http_get(shield.addr, "/_tier/v1/assets/show/timeline", &[])?;
        assert_eq!(r.status, 401, "{}", shield.log());
    }

    // 200 at once for the cold timeline, then for a cold fragment.
    let before = tier_requests(&s, "timeline")?;
    let answers = burst(shield.addr, "/_tier/v1/assets/show/timeline", 200, &[AUTH])?;
    assert!(all_same(&answers), "timeline answers differ");
    assert_eq!(
        tier_requests(&s, "timeline")? - before,
        1,
        "{:?}",
        shield.upstream_requests()
    );
    let doc: serde_json::Value = serde_json::from_slice(&answers[0].1)?;
    let t = &doc["tracks"][0];
    let f = &t["fragments"][0];
    let path = format!(
        "/_tier/v1/channels/ch1/f/{}/{}.{}.slf",
        t["id"],
        f[0],
        f[6].as_str().unwrap_or_default()
    );
    let before = tier_requests(&s, "fragment")?;
    let answers = burst(shield.addr, &path, 200, &[AUTH])?;
    assert!(all_same(&answers), "fragment answers differ");
    assert_eq!(tier_requests(&s, "fragment")? - before, 1);

    // Blocking answers too: 100 edges ask for "after the cut" of a live
    // channel at once; one request reaches the ingest node.
    let live = running_channel(&s, "live")?;
    let rtmp = format!(
        "{}/main",
        live["ingest"]["rtmp"].as_str().unwrap_or_default()
    );
    let work = sluice_tests::tempdir::TempDir::new("sluice-shield-src")?;
    let source = encode_source(work.path(), 10, "source.flv")?;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let push = scope.spawn(|| push_file(&source, &rtmp, true));
        let cut = wait_for(Duration::from_secs(30), || {
            let r = http_get(s.http, "/_tier/v1/channels/live/timeline", &[AUTH]).ok()?;
            let doc: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
            doc["cut_ms"].as_i64()
        })?;
        let before = tier_requests(&s, "blocking")?;
        let answers = burst(
            shield.addr,
            &format!("/_tier/v1/channels/live/timeline?after={cut}"),
            100,
            &[AUTH],
        )?;
        assert!(all_same(&answers), "blocking answers differ");
        assert_eq!(tier_requests(&s, "blocking")? - before, 1);
        let (ok, err) = push
            .join()
            .map_err(|_| anyhow::anyhow!("push panicked"))??;
        anyhow::ensure!(ok, "{err}");
        Ok(())
    })?;
    Ok(())
}
