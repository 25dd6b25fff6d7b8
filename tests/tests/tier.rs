//! The upstream interface (`/_tier/v1/`): token, locator records, timeline
//! pages, blocking timeline requests, immutable fragment objects named by
//! content; real encoders.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use sluice_tests::{
    Sluice, http_get, push_file, record_clip, running_channel, stop_program, wait_for,
};

const AUTH: (&str, &str) = ("Authorization", "Bearer s3cret-t13r");

fn get(s: &Sluice, path: &str) -> anyhow::Result<(u16, Value, sluice_tests::HttpResponse)> {
    let r = http_get(s.http, path, &[AUTH])?;
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    Ok((r.status, v, r))
}

/// Every fragment listed by a timeline document: (track, start, sample
/// count, size, checksum).
fn listed(doc: &Value) -> Vec<(u64, u64, u64, u64, String)> {
    let mut out = Vec::new();
    for t in doc["tracks"].as_array().into_iter().flatten() {
        for f in t["fragments"].as_array().into_iter().flatten() {
            out.push((
                t["id"].as_u64().unwrap_or(0),
                f[0].as_u64().unwrap_or(0),
                f[2].as_u64().unwrap_or(0),
                f[3].as_u64().unwrap_or(0),
                f[6].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    out
}

#[test]
fn upstream_interface_serves_what_an_edge_needs() -> anyhow::Result<()> {
    let s = Sluice::start("", &["--tier-token", "s3cret-t13r"])?;
    record_clip(&s, 10)?;
    stop_program(&s, "ch1", "show")?;

    // The token.
    for headers in [vec![], vec![("Authorization", "Bearer wrong")]] {
        let r = http_get(s.http, "/_tier/v1/health", &headers)?;
        assert_eq!(r.status, 401);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
    let (status, v, _) = get(&s, "/_tier/v1/health")?;
    assert_eq!((status, v["v"].as_u64()), (200, Some(1)));

    // Locator records.
    let (status, l, r) = get(&s, "/_tier/v1/locators/show")?;
    assert_eq!(status, 200);
    assert_eq!(
        (l["asset"].as_str(), l["manifest_name"].as_str()),
        (Some("show"), Some("show"))
    );
    assert_eq!(r.header("cache-control"), Some("public, max-age=2"));
    let (status, _, r) = get(&s, "/_tier/v1/locators/nope")?;
    assert_eq!(status, 404);
    assert_eq!(r.header("cache-control"), Some("public, max-age=2"));

    // The asset's timeline, whole, then in pages.
    let (status, doc, r) = get(&s, "/_tier/v1/assets/show/timeline")?;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["info"]["state"], "ended");
    assert_eq!(r.header("cache-control"), Some("public, max-age=30"));
    assert!(r.header("etag").is_some());
    let all = listed(&doc);
    let tracks = doc["tracks"].as_array().map_or(0, Vec::len);
    assert_eq!(tracks, 2, "{doc}");
    assert!(all.len() >= 10, "{doc}");
    assert!(
        doc["tracks"][0]["codec_private"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );
    let mut paged = Vec::new();
    let mut from = 0;
    loop {
        let (_, page, _) = get(
            &s,
            &format!("/_tier/v1/assets/show/timeline?from={from}&limit=2"),
        )?;
        paged.extend(listed(&page));
        match page["next"].as_i64() {
            Some(n) => from = n,
            None => break,
        }
    }
    paged.sort();
    paged.dedup();
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(paged, sorted);

    // Every fragment: immutable, named by its content, whole.
    for (track, start, samples, size, sum) in &all {
        let path = format!("/_tier/v1/channels/ch1/f/{track}/{start}.{sum}.slf");
        let (status, _, r) = get(&s, &path)?;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            r.header("cache-control"),
            Some("public, max-age=31536000, immutable")
        );
        assert_eq!(r.header("etag"), Some(format!("\"{sum}\"").as_str()));
        // A stopped asset keeps it: no end of life to announce.
        assert_eq!(r.header("expires"), None);
        let f = sluice::storage::decode_fragment(Bytes::from(r.body.clone()))?;
        assert_eq!(
            (f.start, f.samples.len() as u64, f.data.len() as u64),
            (*start, *samples, *size)
        );
        assert_eq!(format!("{:016x}", sluice::storage::checksum(&f)), *sum);
    }
    let (track, start, ..) = &all[0];
    let (status, _, r) = get(
        &s,
        &format!("/_tier/v1/channels/ch1/f/{track}/{start}.0000000000000001.slf"),
    )?;
    assert_eq!(status, 404);
    assert_eq!(r.header("cache-control"), Some("public, max-age=60"));
    let (status, _, _) = get(&s, "/_tier/v1/assets/show/timeline?colour=red")?;
    assert_eq!(status, 400);

    // Blocking on an ended presentation answers at once.
    let cut = doc["cut_ms"].as_i64().unwrap_or(0);
    let (status, _, _) = get(&s, &format!("/_tier/v1/assets/show/timeline?after={cut}"))?;
    assert_eq!(status, 200);
    Ok(())
}

#[test]
fn blocking_timeline_requests_wait_for_media_or_give_up() -> anyhow::Result<()> {
    let s = Sluice::start("", &[])?;
    // Nothing comes: held about three fragments, then 503 no-store.
    running_channel(&s, "quiet")?;
    let t = Instant::now();
    let (status, _, r) = get(&s, "/_tier/v1/channels/quiet/timeline?after=0")?;
    assert_eq!(status, 503);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(t.elapsed() >= Duration::from_secs(5), "{:?}", t.elapsed());

    // Media in real time: a request for "after the cut" answers with the
    // next fragments once they are cut.
    let ch = running_channel(&s, "live")?;
    let rtmp = format!("{}/main", ch["ingest"]["rtmp"].as_str().unwrap_or_default());
    let work = sluice_tests::tempdir::TempDir::new("sluice-tier")?;
    let source = sluice_tests::encode_source(work.path(), 12, "source.flv")?;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let push = scope.spawn(|| push_file(&source, &rtmp, true));
        let (cut, before) = wait_for(Duration::from_secs(30), || {
            let (_, doc, _) = get(&s, "/_tier/v1/channels/live/timeline").ok()?;
            Some((doc["cut_ms"].as_i64()?, doc))
        })?;
        let (status, doc, r) = get(&s, &format!("/_tier/v1/channels/live/timeline?after={cut}"))?;
        // Everything that ends after the cut (in the track's own ticks: an
        // audio fragment may end at 2000.3 ms after a cut of 2000) is in
        // the answer, so an edge asking after the cut misses nothing.
        let ends_after = |t: &serde_json::Value, f: &serde_json::Value| {
            let ts = t["timescale"].as_i64().unwrap_or(1);
            (f[0].as_i64().unwrap_or(0) + f[1].as_i64().unwrap_or(0)) * 1000 > cut * ts
        };
        for t in before["tracks"].as_array().into_iter().flatten() {
            for f in t["fragments"].as_array().into_iter().flatten() {
                if ends_after(t, f) {
                    let listed = doc["tracks"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|u| u["id"] == t["id"])
                        .flat_map(|u| u["fragments"].as_array().into_iter().flatten())
                        .any(|g| g[0] == f[0]);
                    assert!(
                        listed,
                        "fragment {f} of track {} ends after {cut} but is not listed: {doc}",
                        t["id"]
                    );
                }
            }
        }
        assert_eq!(status, 200, "{doc}");
        assert_eq!(doc["info"]["state"], "live");
        assert_eq!(r.header("cache-control"), Some("public, max-age=1"));
        assert!(doc["cut_ms"].as_i64().unwrap_or(0) > cut, "{doc}");
        for t in doc["tracks"].as_array().into_iter().flatten() {
            let ts = t["timescale"].as_u64().unwrap_or(1) as i64;
            for f in t["fragments"].as_array().into_iter().flatten() {
                let end = (f[0].as_i64().unwrap_or(0) + f[1].as_i64().unwrap_or(0)) * 1000 / ts;
                assert!(
                    ends_after(t, f),
                    "listed fragment ends at {end} ms, not after {cut}"
                );
                // A live fragment expires when it leaves the channel's
                // window (120 s, no program): after now, within 120 s.
                let path = format!(
                    "/_tier/v1/channels/live/f/{}/{}.{}.slf",
                    t["id"],
                    f[0],
                    f[6].as_str().unwrap_or_default()
                );
                let (status, _, r) = get(&s, &path)?;
                assert_eq!(status, 200, "{path}");
                let expires = r.header("expires").unwrap_or_default();
                let at = chrono::DateTime::parse_from_rfc2822(expires)
                    .map_err(|e| anyhow::anyhow!("Expires {expires:?}: {e}"))?;
                let left = at.timestamp() - chrono::Utc::now().timestamp();
                assert!(
                    (0..=121).contains(&left),
                    "Expires {expires} is {left} s away"
                );
            }
        }
        let (ok, err) = push
            .join()
            .map_err(|_| anyhow::anyhow!("push panicked"))??;
        anyhow::ensure!(ok, "{err}");
        Ok(())
    })?;
    Ok(())
}
