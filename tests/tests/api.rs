//! Channels through the REST API (CONTRACT.md): create, get, list, start,
//! stop, reset, delete; validation; state rules; ingest through the URLs the
//! API returns; persistence across restarts.

use std::time::Duration;

use serde_json::json;
use sluice_tests::{Sluice, api, ffmpeg_push_rtmp, http_get, tempdir::TempDir, wait_for};

#[test]
fn channel_lifecycle_through_the_api() -> anyhow::Result<()> {
    let server = Sluice::start("", &[])?;
    let a = server.admin;

    let (status, ch) = api(a, "POST", "/api/v1/channels", Some(&json!({"name": "ch1"})))?;
    assert_eq!(status, 201, "{ch}");
    assert_eq!(ch["state"], "stopped");
    let key = ch["input"]["key"]
        .as_str()
        .expect("generated key")
        .to_owned();
    assert_eq!(key.len(), 32);
    let rtmp = ch["ingest"]["rtmp"].as_str().expect("rtmp URL").to_owned();
    assert_eq!(
        rtmp,
        format!("rtmp://127.0.0.1:{}/live/ch1/{key}", server.rtmp.port())
    );
    assert_eq!(
        ch["ingest"]["fmp4"],
        format!(
            "http://127.0.0.1:{}/ingest/ch1/{key}.isml",
            server.http.port()
        )
    );
    let preview = ch["preview"]["urls"]["hls_cmaf"]
        .as_str()
        .expect("url")
        .to_owned();

    // Stopped: ingest refused before any media.
    let (pushed, _) = ffmpeg_push_rtmp(&format!("{rtmp}/720p"), 2, &[])?;
    assert!(!pushed, "a stopped channel refuses ingest");
    assert!(server.log().contains("is not running"));

    let (status, ch) = api(a, "POST", "/api/v1/channels/ch1/start", None)?;
    assert_eq!((status, ch["state"].as_str()), (200, Some("running")));
    let (pushed, err) = ffmpeg_push_rtmp(&format!("{rtmp}/720p"), 4, &[])?;
    assert!(pushed, "{err}");
    let path = preview
        .split_once(&server.http.port().to_string())
        .expect("url")
        .1;
    wait_for(Duration::from_secs(20), || {
        (http_get(server.http, path, &[]).ok()?.status == 200).then_some(())
    })?;

    // Delete while running: 409, nothing changed.
    let (status, e) = api(a, "DELETE", "/api/v1/channels/ch1", None)?;
    assert_eq!(status, 409, "{e}");
    assert_eq!(e["error"]["code"], "conflict");

    // Reset clears the live timeline.
    let (status, _) = api(a, "POST", "/api/v1/channels/ch1/reset", None)?;
    assert_eq!(status, 200);
    assert_eq!(http_get(server.http, path, &[])?.status, 404);

    let (status, _) = api(a, "POST", "/api/v1/channels/ch1/stop", None)?;
    assert_eq!(status, 200);
    let (status, body) = api(a, "DELETE", "/api/v1/channels/ch1", None)?;
    assert_eq!((status, body), (204, serde_json::Value::Null));
    let (status, e) = api(a, "GET", "/api/v1/channels/ch1", None)?;
    assert_eq!(status, 404);
    assert_eq!(e["error"]["code"], "not_found");
    Ok(())
}

#[test]
fn bad_requests_are_400_and_change_nothing() -> anyhow::Result<()> {
    let server = Sluice::start("", &[])?;
    let a = server.admin;
    let bad: &[(&str, serde_json::Value)] = &[
        ("bad name", json!({"name": "Bad_Name"})),
        ("path trick", json!({"name": "../x"})),
        ("long name", json!({"name": "a".repeat(64)})),
        ("unknown field", json!({"name": "ok", "colour": "red"})),
        (
            "unknown nested field",
            json!({"name": "ok", "input": {"keyy": "x"}}),
        ),
        (
            "short key",
            json!({"name": "ok", "input": {"key": "short"}}),
        ),
        (
            "bad CIDR",
            json!({"name": "ok", "input": {"allow": ["10.0.0.0/33"]}}),
        ),
        ("bad fragment", json!({"name": "ok", "fragment_ms": 5})),
        ("wrong type", json!({"name": 7})),
    ];
    for (what, body) in bad {
        let (status, e) = api(a, "POST", "/api/v1/channels", Some(body))?;
        assert_eq!(status, 400, "{what}: {e}");
        assert_eq!(e["error"]["code"], "bad_request", "{what}");
        assert!(!e["error"]["message"].as_str().unwrap_or("").is_empty());
    }
    let r = sluice_tests::http_request(a, "POST", "/api/v1/channels", &[], b"{not json")?;
    assert_eq!(r.status, 400);
    let (status, list) = api(a, "GET", "/api/v1/channels", None)?;
    assert_eq!((status, list), (200, json!([])), "nothing was created");

    let (status, _) = api(a, "POST", "/api/v1/channels", Some(&json!({"name": "ok"})))?;
    assert_eq!(status, 201);
    let (status, e) = api(a, "POST", "/api/v1/channels", Some(&json!({"name": "ok"})))?;
    assert_eq!(status, 409, "{e}");
    let (status, _) = api(a, "POST", "/api/v1/channels/ok/fly", None)?;
    assert_eq!(status, 404);
    Ok(())
}

#[test]
fn allowlists_are_enforced() -> anyhow::Result<()> {
    let server = Sluice::start("", &[])?;
    let a = server.admin;
    let body = json!({
        "name": "locked",
        "input": {"key": "k3y-k3y-k3y", "allow": ["192.0.2.0/24"]},
        "preview": {"allow": ["192.0.2.1"]},
    });
    let (status, ch) = api(a, "POST", "/api/v1/channels", Some(&body))?;
    assert_eq!(status, 201, "{ch}");
    assert_eq!(ch["input"]["allow"], json!(["192.0.2.0/24"]));
    api(a, "POST", "/api/v1/channels/locked/start", None)?;
    let rtmp = ch["ingest"]["rtmp"].as_str().expect("url");
    let (pushed, _) = ffmpeg_push_rtmp(&format!("{rtmp}/720p"), 2, &[])?;
    assert!(!pushed, "127.0.0.1 is outside the input allowlist");
    assert!(server.log().contains("not allowed"));
    let r = http_get(
        server.http,
        "/preview/locked/preview.isml/Manifest(format=m3u8-cmaf)",
        &[],
    )?;
    assert_eq!(r.status, 403);
    Ok(())
}

#[test]
fn channels_survive_a_restart() -> anyhow::Result<()> {
    let dir = TempDir::new("sluice-restart")?;
    let server = Sluice::start_in(dir.path(), "", &[])?;
    let (status, ch) = api(
        server.admin,
        "POST",
        "/api/v1/channels",
        Some(&json!({"name": "keep", "fragment_ms": 4000})),
    )?;
    assert_eq!(status, 201);
    api(server.admin, "POST", "/api/v1/channels/keep/start", None)?;
    assert!(server.terminate()?.success());

    let server = Sluice::start_in(dir.path(), "", &[])?;
    let (status, again) = api(server.admin, "GET", "/api/v1/channels/keep", None)?;
    assert_eq!(status, 200);
    assert_eq!(again["input"]["key"], ch["input"]["key"]);
    assert_eq!(again["fragment_ms"], 4000);
    assert_eq!(again["state"], "running");
    Ok(())
}
