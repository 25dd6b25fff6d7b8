//! Resident memory of a channel recording into a program with a 1 h versus
//! a 25 h archive window, holding the same hot window (issue 5: a long
//! archive costs disk, not RAM).
//!
//! Each configuration runs in its own process (this binary, re-executed),
//! so one's allocations cannot flatter the other. Both push the same 25 h
//! of synthetic H.264-sized and AAC-sized samples through the real ingest
//! path (segmenter, timeline, archive, SQLite index, local storage) faster
//! than real time: 25 h − 2 min at a trickle (small payloads keep the
//! bench's disk use near 1 GiB), then the last 2 min (the channel's hot
//! window) at 3 Mbit/s video + 128 kbit/s audio, as a live channel holds.
//! Prints resident memory after the push and the 25 h / 1 h ratio;
//! asserts nothing. `cargo bench -p sluice-bench --bench archive_memory`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::archive::Archive;
use sluice::channel::{Channel, Channels, StreamIngest};
use sluice::config::IngestLimits;
use sluice::storage::{AssetStore, StorageConfig};
use sluice::store::{ChannelRecord, ProgramRecord, ProgramState, RecordingStart, Store};
use sluice_sdk::plugin::{Sample, TrackInfo, TrackKind};

const ENV: &str = "SLUICE_BENCH_ARCHIVE_WINDOW_H";
const HOURS: u64 = 25;
const HOT_S: u64 = 120;

fn main() {
    if let Ok(h) = std::env::var(ENV) {
        let hours: u64 = h.parse().unwrap_or(1);
        if let Err(e) = child(hours) {
            eprintln!("archive_memory: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    let Ok(me) = std::env::current_exe() else {
        eprintln!("archive_memory: cannot find this binary");
        return;
    };
    println!(
        "archive memory: {HOURS} h of media pushed into a program; channel hot window {HOT_S} s"
    );
    let mut rss = Vec::new();
    for hours in [1u64, 25] {
        let out = std::process::Command::new(&me)
            .env(ENV, hours.to_string())
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout);
                print!("{text}");
                let kib = text
                    .lines()
                    .find_map(|l| l.split("rss_kib=").nth(1))
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| v.parse::<f64>().ok());
                rss.push(kib);
            }
            Ok(o) => {
                eprintln!("{}", String::from_utf8_lossy(&o.stderr));
                rss.push(None);
            }
            Err(e) => {
                eprintln!("archive_memory: {e}");
                rss.push(None);
            }
        }
    }
    if let [Some(one), Some(long)] = rss[..] {
        println!(
            "resident 25 h / 1 h window: {:.3} ({:+.1} %, {:+.1} MiB)",
            long / one,
            (long / one - 1.0) * 100.0,
            (long - one) / 1024.0
        );
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn child(hours: u64) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run(hours))
}

async fn run(hours: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(Store::open(dir.path())?);
    let storage = StorageConfig {
        // Memory is measured here, not disk: no fsync per object.
        fsync: false,
        ..StorageConfig::default()
    };
    let objects = Arc::new(AssetStore::open(&storage, dir.path())?);
    let archive = Archive::open(store.clone(), objects).await?;
    let limits = IngestLimits {
        max_bitrate_kbps: u64::MAX / 8000,
        ..IngestLimits::default()
    };
    let record = ChannelRecord {
        name: "ch1".into(),
        key: "k".into(),
        input_allow: Vec::new(),
        preview_allow: Vec::new(),
        fragment_ms: 2000,
        window_ms: HOT_S * 1000,
        state: "running".into(),
        created_ms: 0,
        incarnation: 1,
        epoch_ms: None,
    };
    store.insert_channel(&record)?;
    let channels = Channels::default();
    let channel = channels.insert(Channel::from_record(&record, &limits));
    archive.attach(&channel);
    store.insert_asset("show", 0)?;
    store.insert_program(&ProgramRecord {
        channel: "ch1".into(),
        name: "show".into(),
        asset: "show".into(),
        manifest_name: "show".into(),
        archive_window_ms: hours * 3_600_000,
        state: ProgramState::Created,
        created_ms: 0,
        started_ms: None,
        stopped_ms: None,
    })?;
    store.start_program(
        "ch1",
        "show",
        0,
        &RecordingStart {
            incarnation: 1,
            fragment_ms: 2000,
            from_ms: 0,
            epoch_ms: None,
        },
    )?;
    let asset = store
        .asset("show")?
        .ok_or_else(|| anyhow::anyhow!("asset lost"))?;
    archive.program_started(&asset);

    let mut ingest = StreamIngest::new(channel.clone(), "main", &limits);
    let mut video = TrackInfo::new(1, TrackKind::Video, 90_000);
    video.codec = "avc1.64001f".into();
    let mut audio = TrackInfo::new(2, TrackKind::Audio, 48_000);
    audio.codec = "mp4a.40.2".into();
    ingest.on_track(video)?;
    ingest.on_track(audio)?;

    let began = Instant::now();
    let total_s = HOURS * 3600;
    let (mut v, mut a) = (0i64, 0i64);
    for second in 0..total_s {
        let hot = second >= total_s - HOT_S;
        let (vsize, asize) = if hot { (15_000, 340) } else { (60, 8) };
        let mut batch = Vec::with_capacity(80);
        for i in 0..25 {
            batch.push(Sample {
                track: 1,
                dts: v,
                composition_offset: 0,
                duration: 3600,
                keyframe: (second * 25 + i) % 50 == 0,
                data: vec![0x42; vsize],
            });
            v += 3600;
        }
        while a < (second as i64 + 1) * 48_000 {
            batch.push(Sample {
                track: 2,
                dts: a,
                composition_offset: 0,
                duration: 1024,
                keyframe: true,
                data: vec![0x21; asize],
            });
            a += 1024;
        }
        ingest.on_samples(batch)?;
        // Keep the writer's queue short: the archive drops (and counts)
        // rather than block ingest, and this push is far faster than life.
        while archive.backlog() > 64 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    ingest.end_of_stream();
    archive.flush().await;
    let pushed = began.elapsed();
    let summary = archive.asset_summary("show");
    let (_, duration_ms, fragments, _) = summary.unwrap_or_default();
    println!(
        "window {hours:>2} h: pushed {HOURS} h in {:.0} s; asset holds {:.2} h in {fragments} fragments; rss_kib={}",
        pushed.as_secs_f64(),
        duration_ms as f64 / 3_600_000.0,
        rss_kib()
    );
    Ok(())
}
