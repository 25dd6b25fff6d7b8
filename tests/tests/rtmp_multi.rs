//! Several RTMP streams into one channel: renditions become variants;
//! the same stream pushed twice (active-active) merges with no gap and no
//! duplicate, also when one encoder dies and comes back.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_tests::{
    Sluice, api, assert_two_variants_decode, encode_source, ffmpeg_two_renditions, ffprobe_frames,
    http_get, media_segments, run, running_channel, tempdir::TempDir, wait_for, wait_until_ended,
};

#[test]
fn two_renditions_become_two_variants() -> anyhow::Result<()> {
    let server = Sluice::start("", &[])?;
    let rtmp = running_channel(&server, "abr")?["ingest"]["rtmp"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (ok, err) =
        ffmpeg_two_renditions(|name| vec!["-f".into(), "flv".into(), format!("{rtmp}/{name}")])?;
    assert!(ok, "{err}");
    assert_two_variants_decode(&server, "/preview/abr/preview.isml")
}

fn push_copy(file: &std::path::Path, url: &str, extra: &[&str]) -> anyhow::Result<Child> {
    Ok(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(extra)
        .arg("-i")
        .arg(file)
        .args(["-c", "copy", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

/// The file the encoders push.
fn source(dir: &Path, seconds: u32) -> anyhow::Result<PathBuf> {
    encode_source(dir, seconds, "source.flv")
}

#[test]
fn redundant_rtmp_encoders_merge_without_gap_or_duplicate() -> anyhow::Result<()> {
    let dir = TempDir::new("sluice-redundant")?;
    let file = source(dir.path(), 10)?;

    let server = Sluice::start("", &[])?;
    let rtmp = running_channel(&server, "red")?["ingest"]["rtmp"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let url = format!("{rtmp}/main");
    let mut a = push_copy(&file, &url, &[])?;
    let mut b = push_copy(&file, &url, &[])?;
    let base = "/preview/red/preview.isml";
    let media = format!("{base}/m3u8-cmaf/t1/index.m3u8");
    // Kill A once two fragments are out.
    wait_for(Duration::from_secs(30), || {
        let r = http_get(server.http, &media, &[]).ok()?;
        (media_segments(&r.text()).0.len() >= 2).then_some(())
    })?;
    a.kill()?;
    a.wait()?;
    // A comes back, starting its file over while B is live: everything it
    // sends is old and must be dropped, not appended.
    let mut a2 = push_copy(&file, &url, &["-t", "4"])?;
    assert!(b.wait()?.success(), "encoder B");
    let _ = a2.wait()?;

    let playlist = wait_for(Duration::from_secs(20), || {
        let r = http_get(server.http, &media, &[]).ok()?;
        r.text().contains("#EXT-X-ENDLIST").then(|| r.text())
    })?;
    let (names, total) = media_segments(&playlist);
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(unique, names, "no duplicate segment: {playlist}");
    assert!(!playlist.contains("#EXT-X-DISCONTINUITY"), "{playlist}");
    assert!(
        (total - 10.0).abs() < 0.2,
        "the full 10 s, no gap: {total} s\n{playlist}"
    );
    let starts: Vec<u64> = names
        .iter()
        .filter_map(|n| n.trim_end_matches(".m4s").parse().ok())
        .collect();
    assert!(starts.windows(2).all(|w| w[1] > w[0]), "{starts:?}");

    let (status, ch) = api(server.admin, "GET", "/api/v1/channels/red", None)?;
    assert_eq!(status, 200);
    assert!(
        ch["stats"]["duplicates_matching"].as_u64() > Some(0),
        "{ch}"
    );
    assert_eq!(ch["stats"]["duplicates_mismatching"], 0, "{ch}");

    let (frames, errors) = ffprobe_frames(
        &server.url(&format!("{base}/Manifest(format=m3u8-cmaf)")),
        &[],
    )?;
    assert!(errors.trim().is_empty(), "{errors}");
    let video = frames.iter().filter(|f| f.media_type == "video").count();
    assert!((video as i64 - 250).abs() <= 50, "{video} of 250 frames");
    Ok(())
}

/// A TCP relay to an upstream address that can be frozen: it then stops
/// relaying and holds its sockets open, like a network path that died
/// without a FIN. Dropping it closes them.
struct FreezableRelay {
    addr: SocketAddr,
    frozen: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl FreezableRelay {
    fn start(upstream: SocketAddr) -> anyhow::Result<FreezableRelay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let relay = FreezableRelay {
            addr: listener.local_addr()?,
            frozen: Arc::new(AtomicBool::new(false)),
            held: Arc::new(Mutex::new(Vec::new())),
        };
        let (frozen, held) = (relay.frozen.clone(), relay.held.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(upstream) else {
                    return;
                };
                let pair = |a: &TcpStream, b: &TcpStream| {
                    Ok::<_, std::io::Error>((a.try_clone()?, b.try_clone()?))
                };
                let Ok((c1, s1)) = pair(&client, &server) else {
                    return;
                };
                for (from, to) in [(client, server), (s1, c1)] {
                    let (frozen, held) = (frozen.clone(), held.clone());
                    std::thread::spawn(move || pump(from, to, &frozen, &held));
                }
            }
        });
        Ok(relay)
    }

    /// Freezes the relay and waits until both pumps of its one connection
    /// hold their sockets (a read in flight could still see an EOF).
    fn freeze(&self) -> anyhow::Result<()> {
        self.frozen.store(true, Ordering::SeqCst);
        wait_for(Duration::from_secs(10), || {
            let held = self.held.lock().unwrap_or_else(|e| e.into_inner()).len();
            (held >= 4).then_some(())
        })
    }
}

impl Drop for FreezableRelay {
    fn drop(&mut self) {
        for s in self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// Copies `from` to `to` until the end, an error, or the freeze (then
/// both sockets are handed to `held`, still open).
fn pump(mut from: TcpStream, mut to: TcpStream, frozen: &AtomicBool, held: &Mutex<Vec<TcpStream>>) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buf = vec![0u8; 16 << 10];
    loop {
        if frozen.load(Ordering::SeqCst) {
            held.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend([from, to]);
            return;
        }
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// An encoder's path dies silently (no FIN): the server still counts that
/// connection as publishing when the encoder reconnects directly, sends
/// the rest and unpublishes cleanly. Once the dead connection times out,
/// the presentation must end (ENDLIST), complete and without duplicates.
#[test]
fn a_reconnect_before_the_dead_connection_is_noticed_still_ends() -> anyhow::Result<()> {
    let dir = TempDir::new("sluice-deadpath")?;
    let file = source(dir.path(), 6)?;
    // Longer than the direct push below takes, so the clean unpublish
    // comes while the dead connection still counts.
    let server = Sluice::start("[ingest]\nidle_timeout_ms = 8000\n", &[])?;
    let rtmp = running_channel(&server, "dead")?["ingest"]["rtmp"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let relay = FreezableRelay::start(server.rtmp)?;
    let through_relay = rtmp.replace(&server.rtmp.to_string(), &relay.addr.to_string());
    let mut a = push_copy(&file, &format!("{through_relay}/main"), &[])?;
    let media = "/preview/dead/preview.isml/m3u8-cmaf/t1/index.m3u8";
    wait_for(Duration::from_secs(30), || {
        let r = http_get(server.http, media, &[]).ok()?;
        (!media_segments(&r.text()).0.is_empty()).then_some(())
    })?;
    relay.freeze()?;
    a.kill()?;
    a.wait()?;
    // The encoder reconnects directly and sends its file again, as fast as
    // it can, then unpublishes.
    let (ok, _, err) = run(Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
        .arg(&file)
        .args(["-c", "copy", "-f", "flv", &format!("{rtmp}/main")]))?;
    assert!(ok, "{err}");
    let (_, ch) = api(server.admin, "GET", "/api/v1/channels/dead", None)?;
    assert_eq!(
        ch["publishing"], 1,
        "the dead connection still counts: {ch}"
    );

    wait_until_ended(server.http, "/preview/dead/preview.isml", 1)?;
    let playlist = http_get(server.http, media, &[])?.text();
    let (names, total) = media_segments(&playlist);
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(unique, names, "no duplicate segment: {playlist}");
    assert!(
        (total - 6.0).abs() < 0.2,
        "the full 6 s: {total} s\n{playlist}\n{}",
        server.log()
    );
    Ok(())
}
