//! Programs, assets, locators and streaming endpoints through the REST API
//! (CONTRACT.md): every rule, bad input answered 400 with a message and
//! nothing changed, and the records surviving a restart.

use serde_json::{Value, json};
use sluice_tests::{Sluice, api, http_get, http_request, tempdir::TempDir};

/// Lists everything the API holds, to compare before and after a refused change.
fn state(s: &Sluice) -> anyhow::Result<Value> {
    let a = s.admin;
    let mut out = json!({});
    for path in [
        "/api/v1/channels/ch1/programs",
        "/api/v1/assets",
        "/api/v1/locators",
    ] {
        let (status, v) = api(a, "GET", path, None)?;
        assert_eq!(status, 200, "{path}: {v}");
        out[path] = v;
    }
    let (_, ch) = api(a, "GET", "/api/v1/channels/ch1", None)?;
    out["state"] = ch["state"].clone();
    Ok(out)
}

fn raw(s: &Sluice, method: &str, path: &str, body: &str) -> anyhow::Result<(u16, Value)> {
    let r = http_request(
        s.admin,
        method,
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )?;
    Ok((r.status, serde_json::from_slice(&r.body)?))
}

/// Asserts a 400 (or `status`) with a message and no change.
fn refused(
    s: &Sluice,
    status: u16,
    method: &str,
    path: &str,
    body: &str,
    needle: &str,
) -> anyhow::Result<()> {
    let before = state(s)?;
    let (got, e) = raw(s, method, path, body)?;
    assert_eq!(got, status, "{method} {path} {body}: {e}");
    let message = e["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(needle),
        "{method} {path} {body}: message {message:?} lacks {needle:?}"
    );
    assert_eq!(
        state(s)?,
        before,
        "{method} {path} {body} changed something"
    );
    Ok(())
}

#[test]
fn program_asset_and_locator_rules() -> anyhow::Result<()> {
    let dir = TempDir::new("sluice-programs")?;
    let s = Sluice::start_in(dir.path(), "", &[])?;
    let a = s.admin;
    let (status, _) = api(a, "POST", "/api/v1/channels", Some(&json!({"name": "ch1"})))?;
    assert_eq!(status, 201);
    for n in ["a1", "a2", "a3", "a4", "a5"] {
        let (status, v) = api(a, "POST", "/api/v1/assets", Some(&json!({"name": n})))?;
        assert_eq!(status, 201, "{v}");
        assert_eq!(v["name"], n);
        assert_eq!(v["state"], "empty");
    }
    let programs = "/api/v1/channels/ch1/programs";

    // Bad input: 400 with a message, nothing changed.
    refused(
        &s,
        409,
        "POST",
        "/api/v1/assets",
        r#"{"name":"a1"}"#,
        "exists",
    )?;
    refused(
        &s,
        400,
        "POST",
        "/api/v1/assets",
        r#"{"name":"A1"}"#,
        "bad asset name",
    )?;
    refused(&s, 400, "POST", "/api/v1/assets", "{", "bad asset")?;
    refused(
        &s,
        400,
        "POST",
        "/api/v1/assets",
        r#"{"name":"x","size":1}"#,
        "unknown field",
    )?;
    let p = |window: &str| format!(r#"{{"name":"p1","asset":"a1","archive_window":"{window}"}}"#);
    for (window, needle) in [
        ("PT4M59S", "outside PT5M..PT25H"),
        ("PT25H0M1S", "outside PT5M..PT25H"),
        ("P2D", "outside PT5M..PT25H"),
        ("5m", "starts with P"),
        ("P1M", "no fixed length"),
        ("PT", "nothing after T"),
        ("garbage", "starts with P"),
        ("", "starts with P"),
    ] {
        refused(&s, 400, "POST", programs, &p(window), needle)?;
    }
    refused(&s, 400, "POST", programs, "[1,2]", "bad program")?;
    refused(
        &s,
        400,
        "POST",
        programs,
        r#"{"name":"p1","asset":"a1"}"#,
        "missing field",
    )?;
    refused(
        &s,
        400,
        "POST",
        programs,
        r#"{"name":"p1","asset":"a1","archive_window":"PT5M","color":"red"}"#,
        "unknown field",
    )?;
    refused(
        &s,
        400,
        "POST",
        programs,
        r#"{"name":"P 1","asset":"a1","archive_window":"PT5M"}"#,
        "bad program name",
    )?;
    refused(
        &s,
        400,
        "POST",
        programs,
        r#"{"name":"p1","asset":"a1","archive_window":"PT5M","manifest_name":"../x"}"#,
        "bad manifest_name",
    )?;
    refused(
        &s,
        404,
        "POST",
        programs,
        r#"{"name":"p1","asset":"nope","archive_window":"PT5M"}"#,
        "asset nope not found",
    )?;
    refused(
        &s,
        404,
        "POST",
        "/api/v1/channels/nope/programs",
        &p("PT5M"),
        "channel not found",
    )?;

    // Create: windows at both ends of the range are fine.
    for (name, asset, window) in [
        ("p1", "a1", "PT5M"),
        ("p2", "a2", "PT25H"),
        ("p3", "a3", "PT1H"),
        ("p4", "a4", "P1D"),
    ] {
        let (status, v) = api(
            a,
            "POST",
            programs,
            Some(&json!({"name": name, "asset": asset, "archive_window": window})),
        )?;
        assert_eq!(status, 201, "{v}");
        assert_eq!(v["state"], "created");
        assert_eq!(v["manifest_name"], name);
    }
    let (_, v) = api(a, "GET", &format!("{programs}/p4"), None)?;
    assert_eq!(v["archive_window"], "PT24H");
    assert_eq!(v["archive_window_ms"], 86_400_000);
    refused(&s, 409, "POST", programs, &p("PT5M"), "exists")?;
    refused(
        &s,
        409,
        "POST",
        programs,
        r#"{"name":"p9","asset":"a1","archive_window":"PT5M"}"#,
        "already holds a recording",
    )?;

    // Start needs a running channel; at most three run; never reused.
    refused(
        &s,
        409,
        "POST",
        &format!("{programs}/p1/start"),
        "",
        "not running",
    )?;
    let (status, _) = api(a, "POST", "/api/v1/channels/ch1/start", None)?;
    assert_eq!(status, 200);
    for name in ["p1", "p2", "p3"] {
        let (status, v) = api(a, "POST", &format!("{programs}/{name}/start"), None)?;
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["state"], "running");
        assert!(v["started"].is_string(), "{v}");
    }
    refused(
        &s,
        409,
        "POST",
        &format!("{programs}/p1/start"),
        "",
        "is running",
    )?;
    refused(
        &s,
        409,
        "POST",
        &format!("{programs}/p4/start"),
        "",
        "at most 3",
    )?;
    // What running programs block.
    refused(
        &s,
        409,
        "POST",
        "/api/v1/channels/ch1/stop",
        "",
        "running program",
    )?;
    refused(
        &s,
        409,
        "POST",
        "/api/v1/channels/ch1/reset",
        "",
        "running program",
    )?;
    refused(&s, 409, "DELETE", "/api/v1/channels/ch1", "", "")?;
    refused(
        &s,
        409,
        "DELETE",
        &format!("{programs}/p1"),
        "",
        "stop it first",
    )?;
    refused(
        &s,
        409,
        "DELETE",
        "/api/v1/assets/a1",
        "",
        "delete the program first",
    )?;

    let (status, v) = api(a, "POST", &format!("{programs}/p1/stop"), None)?;
    assert_eq!((status, v["state"].as_str()), (200, Some("stopped")), "{v}");
    refused(
        &s,
        409,
        "POST",
        &format!("{programs}/p1/stop"),
        "",
        "not running",
    )?;
    refused(
        &s,
        409,
        "POST",
        &format!("{programs}/p1/start"),
        "",
        "never reused",
    )?;
    let (status, v) = api(a, "POST", &format!("{programs}/p4/start"), None)?;
    assert_eq!(status, 200, "a slot freed: {v}");

    // A stopped program blocks deleting its asset; deleted, the asset stays.
    refused(
        &s,
        409,
        "DELETE",
        "/api/v1/assets/a1",
        "",
        "delete the program first",
    )?;
    let (status, _) = api(a, "DELETE", &format!("{programs}/p1"), None)?;
    assert_eq!(status, 204);
    let (status, v) = api(a, "GET", "/api/v1/assets/a1", None)?;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["manifest_name"], "p1");
    refused(
        &s,
        409,
        "POST",
        programs,
        r#"{"name":"p5","asset":"a1","archive_window":"PT5M"}"#,
        "already holds a recording",
    )?;

    // Locators.
    let locators = "/api/v1/locators";
    refused(
        &s,
        404,
        "POST",
        locators,
        r#"{"asset":"nope"}"#,
        "asset nope not found",
    )?;
    refused(
        &s,
        400,
        "POST",
        locators,
        r#"{"id":"Bad!","asset":"a2"}"#,
        "bad locator id",
    )?;
    refused(
        &s,
        400,
        "POST",
        locators,
        r#"{"asset":"a2","start":"tomorrow"}"#,
        "RFC 3339",
    )?;
    refused(
        &s,
        400,
        "POST",
        locators,
        r#"{"asset":"a2","start":"2030-01-01T00:00:00Z","expiry":"2029-01-01T00:00:00Z"}"#,
        "before expiry",
    )?;
    refused(
        &s,
        400,
        "POST",
        locators,
        r#"{"asset":"a2","ttl":5}"#,
        "unknown field",
    )?;
    let (status, l) = api(
        a,
        "POST",
        locators,
        Some(&json!({"id": "live2", "asset": "a2"})),
    )?;
    assert_eq!(status, 201, "{l}");
    let port = s.http.port();
    assert_eq!(
        l["urls"]["hls"],
        format!("http://127.0.0.1:{port}/live2/p2.ism/Manifest(format=m3u8-aapl)")
    );
    for (k, suffix) in [
        ("smooth", "Manifest"),
        ("hls_cmaf", "Manifest(format=m3u8-cmaf)"),
        ("dash", "Manifest(format=mpd-time-csf)"),
        ("dash_cmaf", "Manifest(format=mpd-time-cmaf)"),
        ("hds", "Manifest(format=f4m-f4f)"),
    ] {
        assert_eq!(
            l["urls"][k],
            format!("http://127.0.0.1:{port}/live2/p2.ism/{suffix}")
        );
    }
    refused(
        &s,
        409,
        "POST",
        locators,
        r#"{"id":"live2","asset":"a3"}"#,
        "exists",
    )?;
    let (status, generated) = api(a, "POST", locators, Some(&json!({"asset": "a3"})))?;
    assert_eq!(status, 201);
    let generated = generated["id"].as_str().expect("id").to_owned();
    let (status, l) = api(
        a,
        "POST",
        locators,
        Some(&json!({"id": "later", "asset": "a2", "start": "2999-01-01T00:00:00Z"})),
    )?;
    assert_eq!(status, 201, "{l}");
    assert_eq!(l["start"], "2999-01-01T00:00:00Z");
    let (status, _) = api(
        a,
        "POST",
        locators,
        Some(&json!({"id": "gone", "asset": "a2", "expiry": "2001-01-01T00:00:00+02:00"})),
    )?;
    assert_eq!(status, 201);
    // Before start: 404; after expiry: 410; unknown: 404.
    let r = http_get(s.http, "/later/p2.ism/Manifest(format=m3u8-aapl)", &[])?;
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("not yet started"));
    let r = http_get(s.http, "/gone/p2.ism/Manifest(format=m3u8-aapl)", &[])?;
    assert_eq!(r.status, 410, "{}", r.text());
    let r = http_get(s.http, "/nothing/p2.ism/Manifest", &[])?;
    assert_eq!(r.status, 404);
    // Locator delete unpublishes.
    let (status, _) = api(a, "DELETE", &format!("{locators}/{generated}"), None)?;
    assert_eq!(status, 204);
    let (status, _) = api(a, "GET", &format!("{locators}/{generated}"), None)?;
    assert_eq!(status, 404);

    // Channel with programs: delete refused even once none runs.
    for name in ["p2", "p3", "p4"] {
        let (status, _) = api(a, "POST", &format!("{programs}/{name}/stop"), None)?;
        assert_eq!(status, 200);
    }
    let (status, _) = api(a, "POST", "/api/v1/channels/ch1/stop", None)?;
    assert_eq!(status, 200);
    refused(
        &s,
        409,
        "DELETE",
        "/api/v1/channels/ch1",
        "",
        "delete them first",
    )?;

    // Streaming endpoints list the delivery listener.
    let (status, eps) = api(a, "GET", "/api/v1/streaming-endpoints", None)?;
    assert_eq!(status, 200);
    assert_eq!(eps[0]["port"], port);
    assert_eq!(eps[0]["cors_origins"][0], "*");

    let log = s.log();
    for line in [
        "program created",
        "program started",
        "program stopped",
        "locator created",
    ] {
        assert!(log.contains(line), "log lacks {line:?}");
    }

    // Everything survives a restart.
    let before = state(&s)?.to_string();
    let old_port = format!(":{port}/");
    let status = s.terminate()?;
    assert!(status.success());
    let s = Sluice::start_in(dir.path(), "", &[])?;
    let after = state(&s)?.to_string();
    assert_eq!(
        after.replace(&format!(":{}/", s.http.port()), &old_port),
        before
    );
    refused(
        &s,
        409,
        "POST",
        &format!("{programs}/p2/start"),
        "",
        "never reused",
    )?;
    let r = http_get(s.http, "/gone/p2.ism/Manifest(format=m3u8-aapl)", &[])?;
    assert_eq!(r.status, 410);
    Ok(())
}

#[test]
fn streaming_endpoint_settings_are_listed_and_enforced() -> anyhow::Result<()> {
    let s = Sluice::start(
        "[delivery]\nallow = [\"192.0.2.0/24\"]\nhost_names = [\"cdn.example\"]\ncors_origin = \"https://player.example\"\n",
        &[],
    )?;
    let (status, eps) = api(s.admin, "GET", "/api/v1/streaming-endpoints", None)?;
    assert_eq!(status, 200);
    assert_eq!(eps[0]["allow"], json!(["192.0.2.0/24"]));
    assert_eq!(eps[0]["host_names"], json!(["cdn.example"]));
    assert_eq!(eps[0]["cors_origins"], json!(["https://player.example"]));
    // 127.0.0.1 is outside the delivery allowlist: refused before routing.
    let r = http_get(s.http, "/loc/show.ism/Manifest", &[])?;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://player.example")
    );
    Ok(())
}
