//! The plugin host against a real misbehaving plugin (`plugins/testbed`,
//! built for wasm32-wasip2 by `host/build.rs`): deadlines, memory caps,
//! traps, reloads. No mocks, no sleeps where a signal exists, no timing
//! assertions (the tests run in parallel on small machines).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use sluice::plugins::{Origin, PluginConfig, PluginError, PluginHost, World, testing};
use sluice_sdk::plugin::{
    BodyPart, Event, Fragment, PresentationInfo, PresentationState, Request, Response, SampleEntry,
    SessionConfig, TrackInfo, TrackKind, View,
};

const MARK_A: &[u8] = b"SLUICE-TESTBED-MARK-AAAAAAAA";
const MARK_B: &[u8] = b"SLUICE-TESTBED-MARK-BBBBBBBB";

/// Precompiled components shared by every test (Cranelift runs once).
fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache")
}

fn init_log() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("sluice=debug")
        .try_init();
}

fn testbed_wasm() -> Vec<u8> {
    std::fs::read(testing::TESTBED_WASM).expect("testbed plugin built by host/build.rs")
}

/// A data dir with the testbed in its plugin directory, and a host on it.
fn host_with_testbed(config: PluginConfig) -> (tempfile::TempDir, Arc<PluginHost>) {
    init_log();
    let data = tempfile::tempdir().expect("temp dir");
    let dir = data.path().join("plugins");
    std::fs::create_dir_all(&dir).expect("plugin dir");
    std::fs::write(dir.join("testbed.wasm"), testbed_wasm()).expect("copy testbed");
    let host = PluginHost::new(
        &PluginConfig {
            cache_dir: Some(cache_dir()),
            max_instances: 16,
            ..config
        },
        data.path(),
    )
    .expect("plugin host");
    (data, host)
}

fn request(path: &str) -> Request {
    Request {
        format: "testbed".into(),
        path: path.into(),
        ..Request::default()
    }
}

/// One video track, no fragments.
struct TinyView;

impl View for TinyView {
    fn info(&self) -> PresentationInfo {
        PresentationInfo {
            state: PresentationState::Live,
            fragment_duration_ms: 2000,
            epoch_ms: None,
            window_ms: 0,
        }
    }
    fn tracks(&self) -> Vec<TrackInfo> {
        vec![TrackInfo::new(1, TrackKind::Video, 90_000)]
    }
    fn fragments(&self, _: u32, _: u64, _: u32) -> Vec<Fragment> {
        Vec::new()
    }
    fn samples(&self, _: u32, _: u64) -> Option<Vec<SampleEntry>> {
        None
    }
    fn sample_data(&self, _: u32, _: u64, _: u32, _: u32) -> Option<Vec<u8>> {
        None
    }
}

fn body(r: &Response) -> Vec<u8> {
    let mut out = Vec::new();
    for part in &r.body {
        match part {
            BodyPart::Bytes(b) => out.extend_from_slice(b),
            BodyPart::SampleData(_) => panic!("testbed references no samples"),
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn ok_body(host: &PluginHost) -> Vec<u8> {
    let plugin = host.packager("testbed").expect("testbed loaded");
    let r = plugin
        .handle(&request("testbed/ok"), Arc::new(TinyView))
        .expect("trivial path succeeds");
    assert_eq!(r.status, 200);
    body(&r)
}

#[test]
fn trivial_path_answers_with_the_mark() {
    let (_data, host) = host_with_testbed(PluginConfig::default());
    let b = ok_body(&host);
    assert!(contains(&b, MARK_A), "{}", String::from_utf8_lossy(&b));
    assert!(contains(&b, b"tracks=1"), "{}", String::from_utf8_lossy(&b));
    // Pure function: same input, same bytes.
    assert_eq!(ok_body(&host), b);
}

#[test]
fn endless_loop_is_cut_at_the_deadline() {
    let (_data, host) = host_with_testbed(PluginConfig {
        deadline_ms: 100,
        ..PluginConfig::default()
    });
    let plugin = host.packager("testbed").expect("testbed loaded");
    match plugin.handle(&request("testbed/loop"), Arc::new(TinyView)) {
        Err(PluginError::Deadline {
            plugin,
            deadline_ms,
        }) => {
            assert_eq!(plugin, "testbed");
            assert_eq!(deadline_ms, 100);
        }
        other => panic!("expected a deadline error, got {other:?}"),
    }
    // The host and the plugin are unharmed.
    assert!(contains(&ok_body(&host), MARK_A));
}

/// The epoch thread parks when no plugin runs; the first call after that
/// must wake it, or a runaway call would never be cut.
#[test]
fn endless_loop_is_cut_after_the_host_was_idle() {
    let (_data, host) = host_with_testbed(PluginConfig {
        deadline_ms: 20,
        ..PluginConfig::default()
    });
    let start = std::time::Instant::now();
    while !host.epoch_idle() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the epoch thread never parked"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let plugin = host.packager("testbed").expect("testbed loaded");
    let outcome = plugin.handle(&request("testbed/loop"), Arc::new(TinyView));
    assert!(
        matches!(outcome, Err(PluginError::Deadline { .. })),
        "expected a deadline error, got {outcome:?}"
    );
}

#[test]
fn memory_hoarder_fails_alone() {
    let (_data, host) = host_with_testbed(PluginConfig {
        memory_mib: 16,
        ..PluginConfig::default()
    });
    let plugin = host.packager("testbed").expect("testbed loaded");
    match plugin.handle(&request("testbed/alloc"), Arc::new(TinyView)) {
        Err(PluginError::Memory { plugin }) => assert_eq!(plugin, "testbed"),
        other => panic!("expected a memory error, got {other:?}"),
    }
    assert!(contains(&ok_body(&host), MARK_A));
}

#[test]
fn panic_is_a_trap_carrying_the_message() {
    let (_data, host) = host_with_testbed(PluginConfig::default());
    let plugin = host.packager("testbed").expect("testbed loaded");
    match plugin.handle(&request("testbed/panic"), Arc::new(TinyView)) {
        Err(e @ PluginError::Trap { .. }) => {
            let text = e.to_string();
            assert!(text.contains("testbed asked to panic"), "{text}");
            assert!(text.starts_with("plugin testbed trapped"), "{text}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    assert!(contains(&ok_body(&host), MARK_A));
}

#[test]
fn unknown_format_has_no_packager() {
    let (_data, host) = host_with_testbed(PluginConfig::default());
    assert!(host.packager("no-such-format").is_none());
    assert!(host.ingest("no-such-extension").is_none());
    let listed = host.plugins();
    let testbed = listed
        .iter()
        .find(|p| p.name == "testbed")
        .expect("testbed listed");
    assert_eq!(testbed.world, World::Packager);
    assert_eq!(testbed.keys, vec!["testbed".to_owned()]);
}

#[test]
fn bad_file_is_skipped_and_the_rest_loads() {
    init_log();
    let data = tempfile::tempdir().expect("temp dir");
    let dir = data.path().join("plugins");
    std::fs::create_dir_all(&dir).expect("plugin dir");
    std::fs::write(dir.join("a-garbage.wasm"), b"not wasm at all").expect("write");
    // A core module, not a component.
    std::fs::write(dir.join("b-core.wasm"), b"\0asm\x01\0\0\0").expect("write");
    std::fs::write(dir.join("c-testbed.wasm"), testbed_wasm()).expect("copy");
    std::fs::write(dir.join("ignored.txt"), b"not a plugin").expect("write");
    let host = PluginHost::new(
        &PluginConfig {
            cache_dir: Some(cache_dir()),
            max_instances: 16,
            ..PluginConfig::default()
        },
        data.path(),
    )
    .expect("host starts despite bad files");
    assert!(contains(&ok_body(&host), MARK_A));
}

#[test]
fn check_describes_a_plugin_and_rejects_junk() {
    let text = sluice::plugins::check(Path::new(testing::TESTBED_WASM))
        .expect("testbed is valid")
        .description;
    assert!(text.contains("name: testbed"), "{text}");
    assert!(text.contains("version: 0.1.0"), "{text}");
    assert!(text.contains("world: packager"), "{text}");
    assert!(text.contains("formats: testbed"), "{text}");

    let junk = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(junk.path(), b"\0asm\x01\0\0\0").expect("write");
    match sluice::plugins::check(junk.path()) {
        Err(PluginError::Load { message, .. }) => assert!(!message.is_empty()),
        other => panic!("expected a load error, got {other:?}"),
    }
    match sluice::plugins::check(Path::new("/nonexistent/plugin.wasm")) {
        Err(PluginError::Load { .. }) => {}
        other => panic!("expected a load error, got {other:?}"),
    }
}

/// A view whose `tracks` blocks until released: holds a call in flight.
struct GateView {
    entered: Mutex<Option<mpsc::Sender<()>>>,
    release: Mutex<mpsc::Receiver<()>>,
}

impl View for GateView {
    fn info(&self) -> PresentationInfo {
        TinyView.info()
    }
    fn tracks(&self) -> Vec<TrackInfo> {
        if let Some(tx) = self.entered.lock().expect("lock").take() {
            tx.send(()).expect("test waits");
        }
        self.release
            .lock()
            .expect("lock")
            .recv()
            .expect("test releases");
        TinyView.tracks()
    }
    fn fragments(&self, t: u32, f: u64, l: u32) -> Vec<Fragment> {
        TinyView.fragments(t, f, l)
    }
    fn samples(&self, t: u32, s: u64) -> Option<Vec<SampleEntry>> {
        TinyView.samples(t, s)
    }
    fn sample_data(&self, t: u32, s: u64, o: u32, l: u32) -> Option<Vec<u8>> {
        TinyView.sample_data(t, s, o, l)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_the_file_reloads_without_dropping_calls_in_flight() {
    // A long deadline: the in-flight call waits for the reload.
    let (data, host) = host_with_testbed(PluginConfig {
        deadline_ms: 600_000,
        ..PluginConfig::default()
    });
    assert!(contains(&ok_body(&host), MARK_A));

    // Start a call on the current plugin and hold it inside the host's view.
    let old = host.packager("testbed").expect("testbed loaded");
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel();
    let view = Arc::new(GateView {
        entered: Mutex::new(Some(entered_tx)),
        release: Mutex::new(release_rx),
    });
    let in_flight =
        std::thread::spawn(move || old.handle(&request("testbed/ok"), view).map(|r| body(&r)));
    entered_rx.recv().expect("call entered the view");

    // Replace the file atomically with a build carrying another mark.
    let patched = {
        let mut wasm = testbed_wasm();
        let at = wasm
            .windows(MARK_A.len())
            .position(|w| w == MARK_A)
            .expect("mark in the data section");
        wasm[at..at + MARK_B.len()].copy_from_slice(MARK_B);
        wasm
    };
    let dir = data.path().join("plugins");
    let before = host.generation();
    std::fs::write(dir.join("testbed.wasm.new"), &patched).expect("write");
    std::fs::rename(dir.join("testbed.wasm.new"), dir.join("testbed.wasm")).expect("rename");

    // Wait for the watcher's reload signal (a guard against hanging, not a
    // timing assertion).
    let mut seen = before;
    tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            seen = host.reloaded(seen).await;
            let h = host.clone();
            let b = tokio::task::spawn_blocking(move || ok_body(&h))
                .await
                .expect("call");
            if contains(&b, MARK_B) {
                break;
            }
        }
    })
    .await
    .expect("the watcher reloads the replaced file");
    assert!(host.generation() > before);

    // The call that started on the old plugin completes on it.
    release_tx.send(()).expect("release");
    let old_body = in_flight
        .join()
        .expect("thread")
        .expect("in-flight call completes");
    assert!(
        contains(&old_body, MARK_A),
        "{}",
        String::from_utf8_lossy(&old_body)
    );
}

#[test]
fn reload_now_sees_added_broken_and_removed_files() {
    init_log();
    let data = tempfile::tempdir().expect("temp dir");
    let host = PluginHost::new(
        &PluginConfig {
            cache_dir: Some(cache_dir()),
            max_instances: 16,
            ..PluginConfig::default()
        },
        data.path(),
    )
    .expect("host");
    assert!(host.packager("testbed").is_none());
    let g = host.generation();
    std::fs::write(host.dir().join("testbed.wasm"), testbed_wasm()).expect("copy");
    assert!(host.reload_now() > g);
    assert!(contains(&ok_body(&host), MARK_A));
    // A broken (say half-written) replacement keeps the last good version.
    std::fs::write(host.dir().join("testbed.wasm"), &testbed_wasm()[..1000]).expect("truncate");
    host.reload_now();
    assert!(contains(&ok_body(&host), MARK_A));
    std::fs::remove_file(host.dir().join("testbed.wasm")).expect("remove");
    host.reload_now();
    assert!(host.packager("testbed").is_none());
}

#[test]
fn builtins_are_embedded() {
    let (_data, host) = host_with_testbed(PluginConfig::default());
    let hls = host.packager("m3u8-cmaf").expect("built-in HLS packager");
    assert_eq!(hls.origin(), &Origin::Builtin("sluice-plugin-hls"));
    let rtmp = host.ingest("rtmp").expect("built-in RTMP adapter");
    assert_eq!(rtmp.origin(), &Origin::Builtin("sluice-plugin-rtmp"));
    assert_eq!(rtmp.info().extension, "rtmp");
}

#[test]
fn a_file_with_a_builtins_name_overrides_it() {
    let (data, host) = host_with_testbed(PluginConfig::default());
    let builtin_name = host
        .packager("m3u8-cmaf")
        .expect("built-in HLS")
        .info()
        .name
        .clone();
    let file = data.path().join("plugins").join("my-hls.wasm");
    std::fs::write(
        &file,
        testing::builtin("sluice-plugin-hls").expect("embedded"),
    )
    .expect("write");
    host.reload_now();
    let hls = host.packager("m3u8-cmaf").expect("HLS packager");
    assert_eq!(hls.info().name, builtin_name);
    assert_eq!(hls.origin(), &Origin::File(file.clone()));
    // One plugin of that name is in effect, the file's.
    let active: Vec<_> = host
        .plugins()
        .into_iter()
        .filter(|p| p.name == builtin_name)
        .collect();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].origin, Origin::File(file));
}

#[test]
fn ingest_session_answers_the_rtmp_handshake() {
    let (_data, host) = host_with_testbed(PluginConfig::default());
    let rtmp = host.ingest("rtmp").expect("built-in RTMP adapter");
    let mut session = rtmp
        .open(SessionConfig {
            remote_addr: "127.0.0.1:50000".into(),
            ..SessionConfig::default()
        })
        .expect("session opens");
    // C0 (version 3) + C1 (time, zero, 1528 arbitrary bytes).
    let c1: Vec<u8> = (0..1536u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut input = vec![3u8];
    input.extend_from_slice(&c1);
    // Fed in two pieces: the session buffers across calls.
    let mut sent = Vec::new();
    for piece in [&input[..100], &input[100..]] {
        for event in session.feed(piece).expect("handshake accepted") {
            if let Event::Send(bytes) = event {
                sent.extend_from_slice(&bytes);
            }
        }
    }
    // S0 + S1 + S2, S2 echoing C1.
    assert_eq!(sent.len(), 1 + 1536 + 1536);
    assert_eq!(sent[0], 3);
    assert_eq!(&sent[1 + 1536..], &c1[..]);
    session.close().expect("close");
}

#[test]
fn a_full_pool_fails_with_a_host_error_and_recovers() {
    init_log();
    // Room for two instances.
    let data = tempfile::tempdir().expect("temp dir");
    let small = PluginHost::new(
        &PluginConfig {
            cache_dir: Some(cache_dir()),
            max_instances: 2,
            ..PluginConfig::default()
        },
        data.path(),
    )
    .expect("plugin host");
    let rtmp = small.ingest("rtmp").expect("built-in RTMP adapter");
    let first = rtmp.open(SessionConfig::default()).expect("first session");
    let _second = rtmp.open(SessionConfig::default()).expect("second session");
    match rtmp.open(SessionConfig::default()) {
        Err(PluginError::Host(message)) => assert!(message.contains("rtmp"), "{message}"),
        Err(other) => panic!("expected a host error, got {other:?}"),
        Ok(_) => panic!("expected a host error, got a third session"),
    }
    drop(first);
    rtmp.open(SessionConfig::default())
        .expect("a slot is free again");
}
