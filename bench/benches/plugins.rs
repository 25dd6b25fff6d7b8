//! `cargo bench -p sluice-bench [-- FILTER]`: plugin figures, printed.
//!
//! - `lifecycle`: one packager request through `PackagerPlugin::handle`
//!   on the testbed's trivial path with a tiny view: instantiate from the
//!   `InstancePre`, call, drop the store.
//! - `package`: per format (HLS fMP4 and TS, DASH, Smooth, HDS), one 2 s,
//!   3 Mbit/s fragment and the manifest through the packager in Wasm and
//!   natively (the same crate); prints both and the ratio.
//!
//! Asserts nothing; timing is `std::time::Instant` per iteration.

use std::path::PathBuf;
use std::sync::Arc;

use sluice::plugins::{PackagerPlugin, PluginConfig, PluginHost, testing};
use sluice_bench::{Summary, dvr_timeline, fragment_start, live_video, measure, tiny_view};
use sluice_sdk::plugin::{Packager, Request, Response, View};

fn main() {
    // `cargo bench` passes `--bench`; any other word filters by name.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f));

    let data = tempfile::tempdir().expect("temp dir");
    let plugin_dir = data.path().join("plugins");
    std::fs::create_dir_all(&plugin_dir).expect("plugin dir");
    std::fs::copy(testing::TESTBED_WASM, plugin_dir.join("testbed.wasm")).expect("copy testbed");
    let started = std::time::Instant::now();
    let host = PluginHost::new(
        &PluginConfig {
            cache_dir: Some(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache")),
            ..PluginConfig::default()
        },
        data.path(),
    )
    .expect("plugin host");
    println!(
        "start      PluginHost::new (engine, built-ins + testbed, cache warm after the first run): {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );

    let floor = wanted("lifecycle").then(|| lifecycle(&host));
    for format in FORMATS {
        if wanted(format.name) || wanted("package") {
            package(&host, format, floor.as_ref());
        }
    }
    dvr(&host, &wanted);
}

/// Fragments per track in a 25 h window of 2 s fragments.
const DVR_FRAGMENTS: u32 = 45_000;

/// Manifests over a 25 h DVR window (45,000 fragments per track, video and
/// audio) held in the host's own timeline, Wasm and native: the media playlists of both HLS flavours, the
/// DASH MPD, the Smooth manifest and the HDS bootstrap.
fn dvr(host: &PluginHost, wanted: &dyn Fn(&str) -> bool) {
    let cases: [(&str, &Format, &str); 6] = [
        ("dvr-hls-cmaf-video", &FORMATS[0], "m3u8-cmaf/t1/index.m3u8"),
        ("dvr-hls-cmaf-audio", &FORMATS[0], "m3u8-cmaf/t2/index.m3u8"),
        ("dvr-hls-ts-video  ", &FORMATS[1], "m3u8-aapl/t1/index.m3u8"),
        (
            "dvr-dash-mpd      ",
            &FORMATS[2],
            "Manifest(format=mpd-time-csf)",
        ),
        ("dvr-smooth        ", &FORMATS[3], "Manifest"),
        (
            "dvr-hds-bootstrap ",
            &FORMATS[4],
            "f4m-f4f/t1/bootstrap.abst",
        ),
    ];
    if !cases.iter().any(|(label, ..)| wanted(label.trim_end())) {
        return;
    }
    let built = std::time::Instant::now();
    let view = dvr_timeline(DVR_FRAGMENTS);
    println!(
        "dvr        built the host timeline in {:.0} ms",
        built.elapsed().as_secs_f64() * 1e3
    );
    let shared: Arc<dyn View + Send + Sync> = Arc::new(view.clone());
    println!("dvr        25 h window: {DVR_FRAGMENTS} fragments per track, video + audio");
    for (label, f, path) in cases {
        if !wanted(label.trim_end()) {
            continue;
        }
        let Some(plugin) = host.packager(f.format) else {
            println!("{label} skipped: no packager for {}", f.format);
            continue;
        };
        let case = Case {
            label: label.trim_end(),
            plugin: &plugin,
            format: f,
            path: path.into(),
            shared: &shared,
            view: &view,
        };
        case.run((3, 30), None);
    }
}

/// One request measured in Wasm and natively over the same view.
struct Case<'a> {
    label: &'a str,
    plugin: &'a PackagerPlugin,
    format: &'a Format,
    path: String,
    shared: &'a Arc<dyn View + Send + Sync>,
    view: &'a dyn View,
}

impl Case<'_> {
    /// Checks that both give the same response, prints its size, times
    /// `(warmup, iterations)` of each and reports the ratio.
    fn run(&self, (warmup, iterations): (usize, usize), floor: Option<&Summary>) {
        let label = self.label;
        let request = Request {
            format: self.format.format.into(),
            path: self.path.clone(),
            ..Request::default()
        };
        let wasm = match self.plugin.handle(&request, self.shared.clone()) {
            Ok(r) => r,
            Err(e) => {
                println!("{label} skipped: {e}");
                return;
            }
        };
        if wasm != (self.format.native)(&request, self.view) {
            println!("{label} WARNING: Wasm and native responses differ");
        }
        println!(
            "{label} {}: status {} body {} bytes in {} parts",
            request.path,
            wasm.status,
            wasm.body_len(),
            wasm.body.len()
        );
        let w = measure(warmup, iterations, || {
            std::hint::black_box(self.plugin.handle(&request, self.shared.clone()).ok());
        });
        let n = measure(warmup, iterations, || {
            std::hint::black_box((self.format.native)(&request, self.view));
        });
        report(label, &w, &n, floor);
    }
}

/// One format to measure: its name, the paths of a fragment (the third of
/// [`live_video`]) and of a manifest, and the packager run natively.
struct Format {
    name: &'static str,
    format: &'static str,
    segment: fn(u64) -> String,
    manifest: &'static str,
    native: fn(&Request, &dyn View) -> Response,
}

const FORMATS: &[Format] = &[
    Format {
        name: "hls-cmaf",
        format: "m3u8-cmaf",
        segment: |start| format!("m3u8-cmaf/t1/{start}.m4s"),
        manifest: "m3u8-cmaf/t1/index.m3u8",
        native: |r, v| <sluice_plugin_hls::Hls as Packager>::handle(r, v),
    },
    Format {
        name: "hls-ts",
        format: "m3u8-aapl",
        segment: |start| format!("m3u8-aapl/t1/{start}.ts"),
        manifest: "m3u8-aapl/t1/index.m3u8",
        native: |r, v| <sluice_plugin_hls::Hls as Packager>::handle(r, v),
    },
    Format {
        name: "dash",
        format: "mpd-time-csf",
        segment: |start| format!("mpd-time-csf/t1/{start}.m4s"),
        manifest: "Manifest(format=mpd-time-csf)",
        native: |r, v| <sluice_plugin_dash::Dash as Packager>::handle(r, v),
    },
    Format {
        name: "smooth",
        format: "mss",
        segment: |start| format!("QualityLevels(3000000)/Fragments(video={start})"),
        manifest: "Manifest",
        native: |r, v| <sluice_plugin_smooth::Smooth as Packager>::handle(r, v),
    },
    Format {
        name: "hds",
        format: "f4m-f4f",
        // Fragment numbers: round(start / 2 s) + 1.
        segment: |start| format!("f4m-f4f/t1/Seg1-Frag{}", start / 180_000 + 1),
        manifest: "Manifest(format=f4m-f4f)",
        native: |r, v| <sluice_plugin_hds::Hds as Packager>::handle(r, v),
    },
];

fn lifecycle(host: &PluginHost) -> Summary {
    let plugin = host.packager("testbed").expect("testbed loaded");
    let request = Request {
        format: "testbed".into(),
        path: "testbed/ok".into(),
        ..Request::default()
    };
    let view: Arc<dyn View + Send + Sync> = Arc::new(tiny_view());
    let s = measure(2_000, 20_000, || {
        let r = plugin
            .handle(&request, view.clone())
            .expect("testbed answers");
        std::hint::black_box(r);
    });
    println!("lifecycle  instantiate + handle + drop (testbed, tiny view)");
    println!("           {s}");
    s
}

/// `floor`: the lifecycle figure, to split fixed cost from the call itself.
fn package(host: &PluginHost, f: &Format, floor: Option<&Summary>) {
    let name = f.name;
    let Some(plugin) = host.packager(f.format) else {
        println!("{name:10} skipped: no packager for {} is loaded", f.format);
        return;
    };
    let view = live_video(5);
    let start = fragment_start(2);
    let shared: Arc<dyn View + Send + Sync> = Arc::new(view.clone());
    for (label, path) in [
        ("segment ", (f.segment)(start)),
        ("manifest", f.manifest.to_owned()),
    ] {
        let case = Case {
            label: &format!("{name} {label}"),
            plugin: &plugin,
            format: f,
            path,
            shared: &shared,
            view: &view,
        };
        case.run((200, 3_000), floor);
    }
}

fn report(label: &str, wasm: &Summary, native: &Summary, floor: Option<&Summary>) {
    println!("           wasm    {wasm}");
    println!("           native  {native}");
    println!(
        "           {label} ratio wasm/native (medians) {:.2}x",
        wasm.median_us() / native.median_us()
    );
    if let Some(floor) = floor {
        // The testbed's lifecycle includes its own (small) call, so this
        // slightly understates the marginal cost.
        let marginal = (wasm.median_us() - floor.median_us()).max(0.0);
        println!(
            "           {label} beyond the lifecycle floor {marginal:.2} µs: {:.2}x native",
            marginal / native.median_us()
        );
    }
}
