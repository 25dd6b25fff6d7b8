//! The built-in test source behind `sluice serve --demo`: an 8 s H.264 +
//! AAC clip kept in the repository (`assets/demo.flv`, made by
//! `assets/make-demo-clip.sh`), looped with continuous timestamps and paced
//! in real time, fed through the same path as an encoder's stream.

use std::sync::Arc;
use std::time::Duration;

use sluice_sdk::flv::{self, MediaDemuxer, TagType};
use sluice_sdk::plugin::Event;
use tokio::sync::watch;

use crate::channel::{Channel, Source, StreamIngest};
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
    // Each kind loops over one clip length from its own first timestamp:
    // the AAC encoder's priming delay starts audio about 60 ms after video,
    // and cutting both at 8 s would leave a gap in the audio at every loop
    // (a player stalls on a gap in the buffered range).
    let mut first = [None::<i64>; 2];
    for tag in tags {
        let tag = tag?;
        let timestamp_ms = i64::from(tag.header.timestamp);
        let slot = match tag.header.tag_type {
            TagType::Video => Some(0),
            TagType::Audio => Some(1),
            _ => None,
        };
        // Byte 1 of an AVC or AAC tag is its packet type: 0 is the
        // decoder configuration, sent once at time 0 and not a frame.
        let config = tag.body.get(1) == Some(&0);
        if let Some(slot) = slot
            && !config
        {
            let start = *first[slot].get_or_insert(timestamp_ms);
            // Media past one loop (the encoder's last frames) would
            // overlap the next loop.
            if timestamp_ms - start >= CLIP_MS {
                continue;
            }
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
    let mut ingest = StreamIngest::open(channel, "demo", &limits, Source::internal("demo"));
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
            if let Err(e) = feed_tag(&mut demux, &mut ingest, tag, ts) {
                tracing::error!(error = %e, "demo source stopped");
                return;
            }
        }
    }
}

/// One loop of the clip fed to `channel` at once, not paced: a fixture
/// presentation of two tracks and four 2 s fragments each (`sluice plugin
/// check` runs plugins against it).
pub fn feed_once(channel: Arc<Channel>, limits: &IngestLimits) -> Result<(), String> {
    let tags = clip_tags().map_err(|e| e.to_string())?;
    let mut ingest = StreamIngest::new(channel, "demo", limits);
    let mut demux = MediaDemuxer::new("demo", 1, 2);
    for tag in &tags {
        feed_tag(&mut demux, &mut ingest, tag, tag.timestamp_ms)?;
    }
    ingest.finish();
    Ok(())
}

/// Demuxes one tag (at `ts` ms) into `ingest`.
fn feed_tag(
    demux: &mut MediaDemuxer,
    ingest: &mut StreamIngest,
    tag: &ClipTag,
    ts: i64,
) -> Result<(), String> {
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
    let events: Vec<Event> = events.map_err(|e| e.to_string())?;
    for event in events {
        ingest.on_media(event).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each kind's frames fill exactly one loop: the next loop's first
    /// frame follows the last one without a gap.
    #[test]
    fn clip_loops_without_gaps() {
        let tags = clip_tags().expect("clip parses");
        for kind in [TagType::Video, TagType::Audio] {
            let times: Vec<i64> = tags
                .iter()
                .filter(|t| t.kind == kind && t.body.get(1) != Some(&0))
                .map(|t| t.timestamp_ms)
                .collect();
            let (first, last) = (times[0], times[times.len() - 1]);
            let step = (last - first) as f64 / (times.len() - 1) as f64;
            let next_loop = first + CLIP_MS;
            let gap = (next_loop - last) as f64;
            assert!(
                (gap - step).abs() <= 1.0,
                "{kind:?}: last frame at {last} ms, next loop at {next_loop} ms, frame step {step:.1} ms"
            );
        }
    }
}
