//! What the events of an ingest session must satisfy, whatever the input.

use std::collections::HashMap;

use sluice_sdk::h264;
use sluice_sdk::plugin::{Event, TrackInfo};

/// Which promises of the adapter to check besides the common ones.
#[derive(Debug, Clone, Copy, Default)]
pub struct Promises {
    /// H.264 samples are framed as NAL units with 4-byte lengths (the FLV
    /// demuxer checks or rewrites the framing so that packagers can trust it).
    pub avc_framing: bool,
    /// A track's decode times never go back across `Samples` events (until
    /// the track is declared again).
    pub forward_dts: bool,
}

/// Checks `events`: every sample belongs to a declared track with a
/// non-zero timescale, decode times do not go back within one `Samples`
/// event (nor across events with [`Promises::forward_dts`]), and H.264
/// framing holds with [`Promises::avc_framing`].
pub fn check(events: &[Event], promises: Promises) {
    let mut tracks: HashMap<u32, &TrackInfo> = HashMap::new();
    let mut last_dts: HashMap<u32, i64> = HashMap::new();
    for e in events {
        match e {
            Event::Track(t) => {
                assert!(t.timescale > 0, "track {} declared with timescale 0", t.id);
                tracks.insert(t.id, t);
                last_dts.remove(&t.id);
            }
            Event::Samples(samples) => {
                let mut in_event: HashMap<u32, i64> = HashMap::new();
                for s in samples {
                    let Some(t) = tracks.get(&s.track) else {
                        panic!("sample for undeclared track {}", s.track);
                    };
                    if let Some(&prev) = in_event.get(&s.track) {
                        assert!(
                            s.dts >= prev,
                            "track {}: dts {} after {prev} in one Samples event",
                            s.track,
                            s.dts
                        );
                    }
                    in_event.insert(s.track, s.dts);
                    if promises.forward_dts {
                        if let Some(&prev) = last_dts.get(&s.track) {
                            assert!(
                                s.dts >= prev,
                                "track {}: dts {} after {prev}",
                                s.track,
                                s.dts
                            );
                        }
                        last_dts.insert(s.track, s.dts);
                    }
                    if promises.avc_framing && matches!(t.fourcc.as_str(), "avc1" | "avc3") {
                        for nal in h264::nal_units(&s.data, 4) {
                            assert!(
                                nal.is_ok(),
                                "track {}: sample at {} badly framed: {nal:?}",
                                s.track,
                                s.dts
                            );
                        }
                    }
                }
            }
            Event::Authorize(_) | Event::Send(_) | Event::EndOfStream(_) => {}
        }
    }
}
