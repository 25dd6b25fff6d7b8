//! `sluice plugin check FILE.wasm`: loads a plugin, prints what it
//! declares, and runs it against a built-in fixture — the demo clip as a
//! presentation (two tracks, four 2 s fragments each) for a packager, or
//! bytes of that clip in the adapter's own container for an ingest
//! adapter — reporting each call's time and the memory its instance
//! used. Fails (non-zero exit) with the reason when the plugin cannot be
//! loaded, traps, runs past its deadline or memory, answers a manifest
//! with a 5xx, or refuses well-formed input.
//!
//! ```text
//!  FILE.wasm ─▶ plugins::check (load, world, version, info)
//!     packager ─▶ Manifest(format=F) per declared format ─▶ status, bytes, time, memory
//!     adapter  ─▶ fixture bytes (rtmp: a handshake; ts: HLS TS segments; else fMP4)
//!              ─▶ feed in 64 KiB pieces, close ─▶ tracks, samples, time, memory
//! ```

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_sdk::plugin::{BodyPart, Event, Request, SessionConfig, View};

use crate::channel::Channel;
use crate::config::{ChannelConfig, IngestLimits};
use crate::media::timeline::Snapshot;
use crate::plugins::{CheckedPlugin, PackagerPlugin, PluginError};

/// Runs the check; `Ok` is the report, `Err` the reason it failed (after
/// what was learnt before the failure).
pub fn run(path: &Path) -> Result<String, String> {
    let checked = crate::plugins::check(path).map_err(|e| e.to_string())?;
    let mut report = checked.description.clone();
    let fixture = fixture().map_err(|e| format!("{report}\nfixture unusable: {e}"))?;
    let outcome = match &checked.plugin {
        CheckedPlugin::Packager(p) => packager(p, &fixture, &mut report),
        CheckedPlugin::Ingest(p) => {
            let hls = checked
                .builtin_packager("sluice-plugin-hls")
                .map_err(|e| e.to_string());
            hls.and_then(|hls| adapter(p, &hls, &fixture, &mut report))
        }
    };
    match outcome {
        Ok(()) => Ok(report),
        Err(e) => Err(format!("{report}\n{e}")),
    }
}

/// The demo clip as a presentation.
fn fixture() -> Result<Snapshot, String> {
    let limits = IngestLimits::default();
    let config = ChannelConfig {
        name: "check".to_owned(),
        key: "check".to_owned(),
        fragment_ms: 2000,
        window_ms: 120_000,
        epoch: None,
    };
    let channel = Arc::new(Channel::new(&config, &limits));
    crate::demo::feed_once(channel.clone(), &limits)?;
    Ok(channel.snapshot())
}

/// The body of `response`, sample data spliced in from `view`.
fn body(response: &sluice_sdk::plugin::Response, view: &dyn View) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for part in &response.body {
        match part {
            BodyPart::Bytes(b) => out.extend_from_slice(b),
            BodyPart::SampleData(r) => out.extend(
                view.sample_data(r.track, r.start, r.offset, r.length)
                    .ok_or("the response names sample data the presentation does not hold")?,
            ),
        }
    }
    Ok(out)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

/// One request to `plugin` about `view`.
fn call(
    plugin: &PackagerPlugin,
    view: &Snapshot,
    format: &str,
    path: &str,
) -> Result<(sluice_sdk::plugin::Response, crate::plugins::CallCost), PluginError> {
    let request = Request {
        format: format.to_owned(),
        path: path.to_owned(),
        ..Request::default()
    };
    plugin.handle_measured(&request, Arc::new(view.clone()))
}

/// Each declared format's manifest.
fn packager(plugin: &PackagerPlugin, view: &Snapshot, report: &mut String) -> Result<(), String> {
    let _ = write!(
        report,
        "\nfixture: the demo clip, {} tracks, {} fragments",
        view.tracks().len(),
        view.tracks()
            .iter()
            .map(|t| view.fragments(t.id, 0, u32::MAX).len())
            .sum::<usize>()
    );
    for format in &plugin.info().formats {
        let path = if format == "mss" {
            "Manifest".to_owned()
        } else {
            format!("Manifest(format={format})")
        };
        let (response, cost) = call(plugin, view, format, &path)
            .map_err(|e| format!("{path}: the plugin failed: {e}"))?;
        let bytes = body(&response, view).map_err(|e| format!("{path}: {e}"))?;
        let _ = write!(
            report,
            "\n{path}: {} {}, {} bytes, {:.1} ms, memory {:.1} MiB",
            response.status,
            response.content_type,
            bytes.len(),
            ms(cost.elapsed),
            mib(cost.memory_peak)
        );
        if response.status >= 500 {
            return Err(format!("{path}: answered {}", response.status));
        }
    }
    Ok(())
}

/// The bytes an encoder would send an adapter claiming `extension`, made
/// from the fixture; `None` when there is no fixture for it.
fn fixture_bytes(
    extension: &str,
    hls: &PackagerPlugin,
    view: &Snapshot,
) -> Result<Option<Vec<u8>>, String> {
    let hls_get = |format: &str, path: &str| -> Result<Vec<u8>, String> {
        let (r, _) = call(hls, view, format, path).map_err(|e| e.to_string())?;
        if r.status != 200 {
            return Err(format!("{path}: {}", r.status));
        }
        body(&r, view)
    };
    // The media playlist of the first variant, and the URIs it lists
    // (relative to the manifest root).
    let playlist = |format: &str| -> Result<(String, String), String> {
        let master = hls_get(format, &format!("Manifest(format={format})"))?;
        let master = String::from_utf8_lossy(&master).into_owned();
        let media = master
            .lines()
            .find(|l| !l.starts_with('#') && !l.is_empty())
            .ok_or("no variant")?
            .to_owned();
        let text = String::from_utf8_lossy(&hls_get(format, &media)?).into_owned();
        let dir = media.rsplit_once('/').map_or("", |(d, _)| d).to_owned();
        Ok((dir, text))
    };
    let uris = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    match extension {
        // The client's first handshake message: C0 (version 3) and C1.
        "rtmp" => {
            let mut c = vec![3u8];
            c.extend((0..1536u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
            c[1..9].fill(0);
            Ok(Some(c))
        }
        // MPEG-TS: the TS segments of the HLS packager's first variant.
        "ts" => {
            let (dir, text) = playlist("m3u8-aapl")?;
            let mut out = Vec::new();
            for uri in uris(&text) {
                out.extend(hls_get("m3u8-aapl", &format!("{dir}/{uri}"))?);
            }
            Ok(Some(out))
        }
        // Fragmented MP4 (Smooth/CMAF ingest): the init segment and the
        // media segments of the first CMAF variant.
        "isml" | "ismv" | "mp4" | "cmfv" | "cmfa" | "m4s" => {
            let (dir, text) = playlist("m3u8-cmaf")?;
            let init = text
                .lines()
                .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
                .and_then(|r| r.strip_suffix('"'))
                .ok_or("no EXT-X-MAP")?
                .to_owned();
            let mut out = hls_get("m3u8-cmaf", &format!("{dir}/{init}"))?;
            for uri in uris(&text) {
                out.extend(hls_get("m3u8-cmaf", &format!("{dir}/{uri}"))?);
            }
            Ok(Some(out))
        }
        _ => Ok(None),
    }
}

/// A session fed the fixture bytes of the adapter's extension.
fn adapter(
    plugin: &crate::plugins::IngestPlugin,
    hls: &PackagerPlugin,
    view: &Snapshot,
    report: &mut String,
) -> Result<(), String> {
    let extension = plugin.info().extension.clone();
    let Some(bytes) = fixture_bytes(&extension, hls, view)? else {
        let _ = write!(
            report,
            "\nno fixture for extension {extension:?} (fixtures: rtmp, ts, isml, ismv, mp4, cmfv, cmfa, m4s): loaded, not run"
        );
        return Ok(());
    };
    let config = SessionConfig {
        remote_addr: "127.0.0.1:0".to_owned(),
        stream: "check".to_owned(),
        ..SessionConfig::default()
    };
    let began = Instant::now();
    let mut session = plugin
        .open(config)
        .map_err(|e| format!("the session did not open: {e}"))?;
    let (mut tracks, mut samples, mut sent, mut authorize) = (Vec::new(), 0usize, 0usize, 0usize);
    let mut events = Vec::new();
    for piece in bytes.chunks(64 << 10) {
        let mut out = session
            .feed(piece)
            .map_err(|e| format!("the adapter refused the fixture: {e}"))?;
        // Answer authorisation at once, as the host does for a good key.
        while let Some(id) = out.iter().find_map(|e| match e {
            Event::Authorize(a) => Some(a.id),
            _ => None,
        }) {
            authorize += 1;
            events.append(&mut out);
            out = session
                .authorize(id, Ok(()))
                .map_err(|e| format!("the adapter failed after authorisation: {e}"))?;
        }
        events.extend(out);
    }
    events.extend(
        session
            .close()
            .map_err(|e| format!("the adapter failed on close: {e}"))?,
    );
    let elapsed = began.elapsed();
    for e in &events {
        match e {
            Event::Track(t) => tracks.push(format!("{} {}", t.id, t.codec)),
            Event::Samples(s) => samples += s.len(),
            Event::Send(b) => sent += b.len(),
            _ => {}
        }
    }
    let _ = write!(
        report,
        "\nfixture: {} bytes of {extension}; tracks: [{}], samples: {samples}, bytes sent back: {sent}, authorisations: {authorize}; {:.1} ms, memory {:.1} MiB",
        bytes.len(),
        tracks.join(", "),
        ms(elapsed),
        mib(session.memory_peak())
    );
    if extension == "rtmp" {
        if sent == 0 {
            return Err("the adapter did not answer the RTMP handshake".to_owned());
        }
    } else if tracks.is_empty() || samples == 0 {
        return Err("the adapter declared no track or no sample from the fixture".to_owned());
    }
    Ok(())
}
