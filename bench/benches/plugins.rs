//! `cargo bench -p sluice-bench [-- FILTER]`: plugin figures, printed.
//!
//! - `lifecycle`: one packager request through `PackagerPlugin::handle`
//!   on the testbed's trivial path with a tiny view: instantiate from the
//!   `InstancePre`, call, drop the store.
//! - `hls`: one 2 s, 3 Mbit/s fragment and the media playlist through the
//!   HLS packager in Wasm and natively; prints both and the ratio.
//!
//! Asserts nothing; timing is `std::time::Instant` per iteration.

use std::path::PathBuf;
use std::sync::Arc;

use sluice::plugins::{PluginConfig, PluginHost, testing};
use sluice_bench::{Summary, fragment_start, live_video, measure, tiny_view};
use sluice_sdk::plugin::MemoryView;
use sluice_sdk::plugin::{Request, View};

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
    if wanted("hls") {
        hls(&host, floor);
    }
}

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
fn hls(host: &PluginHost, floor: Option<Summary>) {
    let Some(plugin) = host.packager("m3u8-cmaf") else {
        println!("hls        skipped: no packager for m3u8-cmaf is loaded");
        return;
    };
    let view = live_video(5);
    let start = fragment_start(2);
    let shared: Arc<dyn View + Send + Sync> = Arc::new(view.clone());
    for (label, path) in [
        ("segment ", format!("m3u8-cmaf/t1/{start}.m4s")),
        ("playlist", "m3u8-cmaf/t1/index.m3u8".to_owned()),
    ] {
        let request = Request {
            format: "m3u8-cmaf".into(),
            path,
            ..Request::default()
        };
        let wasm = plugin
            .handle(&request, shared.clone())
            .expect("hls answers");
        let native = native_hls(&request, &view);
        if wasm != native {
            println!("hls        WARNING: Wasm and native responses differ for {label}");
        }
        println!(
            "hls {label} status {} body {} bytes in {} parts",
            wasm.status,
            wasm.body_len(),
            wasm.body.len()
        );
        let w = measure(200, 3_000, || {
            std::hint::black_box(
                plugin
                    .handle(&request, shared.clone())
                    .expect("hls answers"),
            );
        });
        let n = measure(200, 3_000, || {
            std::hint::black_box(native_hls(&request, &view));
        });
        report(label, &w, &n, floor.as_ref());
    }
}

fn native_hls(request: &Request, view: &MemoryView) -> sluice_sdk::plugin::Response {
    <sluice_plugin_hls::Hls as sluice_sdk::plugin::Packager>::handle(request, view)
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
