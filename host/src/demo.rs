//! The built-in test source behind `sluice serve --demo`: an 8 s H.264 +
//! AAC clip kept in the repository (`assets/demo.flv`, made by
//! `assets/make-demo-clip.sh`), looped with continuous timestamps and paced
//! in real time, fed through the same path as an encoder's stream.

use std::sync::Arc;
use std::time::Duration;

use sluice_sdk::flv::{self, MediaDemuxer, TagType};
use sluice_sdk::plugin::Event;
use tokio::sync::watch;

use crate::channel::{Channel, StreamIngest};
use crate::config::IngestLimits;

/// The clip.
static CLIP: &[u8] = include_bytes!("../assets/demo.flv");

/// Length of one loop: 200 frames at 25 fps, 375 AAC frames at 48 kHz.
const CLIP_MS: i64 = 8000;

/// One tag of the clip, parsed once.
struct ClipTag {
    kind: TagType,
    timestamp_ms: i64,
    body: &'static [u8],
}

fn clip_tags() -> Result<Vec<ClipTag>, flv::FlvError> {
    let (_, tags) = flv::read_file(CLIP)?;
    let mut out = Vec::new();
    for tag in tags {
        let tag = tag?;
        let timestamp_ms = i64::from(tag.header.timestamp);
        // The loop length is fixed: media past it (the encoder's last
        // audio frames) would overlap the next loop.
        if timestamp_ms >= CLIP_MS {
            continue;
        }
        out.push(ClipTag {
            kind: tag.header.tag_type,
            timestamp_ms,
            body: tag.body,
        });
    }
    Ok(out)
}

/// Feeds `channel` until `shutdown` turns true.
pub async fn run(channel: Arc<Channel>, limits: IngestLimits, mut shutdown: watch::Receiver<bool>) {
    let tags = match clip_tags() {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "demo clip unreadable");
            return;
        }
    };
    let mut ingest = StreamIngest::new(channel, "demo", &limits);
    let mut demux = MediaDemuxer::new("demo", 1, 2);
    let start = tokio::time::Instant::now();
    tracing::info!("demo source started");
    for round in 0i64.. {
        for tag in &tags {
            let ts = tag.timestamp_ms + round * CLIP_MS;
            let due = start + Duration::from_millis(u64::try_from(ts).unwrap_or(0));
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = shutdown.changed() => {
                    ingest.finish();
                    return;
                }
            }
            let events = match tag.kind {
                TagType::Video => demux.push_video(ts, tag.body),
                TagType::Audio => demux.push_audio(ts, tag.body),
                TagType::Script => {
                    if let Ok(values) = flv::parse_script_data(tag.body)
                        && let Some(meta) = flv::find_metadata(&values)
                    {
                        demux.set_metadata(meta);
                    }
                    Ok(Vec::new())
                }
                _ => Ok(Vec::new()),
            };
            let result = match events {
                Ok(events) => apply(&mut ingest, events),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "demo source stopped");
                return;
            }
        }
    }
}

fn apply(ingest: &mut StreamIngest, events: Vec<Event>) -> Result<(), String> {
    for event in events {
        ingest.on_media(event).map_err(|e| e.to_string())?;
    }
    Ok(())
}
