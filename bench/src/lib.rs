//! Benchmark support: in-memory presentation views shared by the native and
//! the Wasm runs of a packager, synthetic live fragments, and a tiny timer
//! that reports medians and percentiles.
//!
//! ```text
//!  MemoryView (tracks, fragments, sample tables, payload)
//!     ├─▶ sluice_plugin_hls::Hls::handle(&req, &view)           native
//!     └─▶ PackagerPlugin::handle(&req, Arc<view>) ─▶ Wasm ─▶ view imports
//! ```

use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice::media::segmenter::Fragment;
use sluice::media::timeline::{Snapshot, Timeline};
use sluice_sdk::plugin::{MemoryView, PresentationState, SampleEntry, TrackInfo, TrackKind};

/// One video track and no fragments: the cheapest useful view.
pub fn tiny_view() -> MemoryView {
    let mut v = live_view();
    v.add_track(TrackInfo::new(1, TrackKind::Video, 90_000));
    v
}

/// A live H.264 track (id 1, 90 kHz, 1280x720) with `count` fragments of
/// 2 s at 3 Mbit/s: 50 samples at 25 fps, about 750 KB each, the first
/// sample a keyframe. Fragment `i` starts at [`fragment_start`]`(i)`.
pub fn live_video(count: u32) -> MemoryView {
    let mut track = TrackInfo::new(1, TrackKind::Video, 90_000);
    track.fourcc = "avc1".into();
    track.codec = "avc1.64001f".into();
    track.codec_private = AVCC.to_vec();
    track.stream = "720p".into();
    track.bitrate = 3_000_000;
    track.width = 1280;
    track.height = 720;
    let mut v = live_view();
    v.add_track(track);
    for i in 0..count {
        let samples = fragment_samples();
        let data = nal_payload(&samples);
        v.push(1, fragment_start(i), samples, data, false);
    }
    v
}

/// A live presentation with a deep DVR window, held as the host holds it
/// (its [`Timeline`], as a [`Snapshot`]): the video track of
/// [`live_video`] and a 128 kbit/s AAC track (id 2, 48 kHz), each with
/// `count` 2 s fragments (45,000 is a 25 h window). Every fragment has its
/// full sample table; payloads share one buffer.
pub fn dvr_timeline(count: u32) -> Snapshot {
    let window_ms = u64::from(count) * 2000;
    let mut timeline = Timeline::new(2000, window_ms);
    let video = live_video(0).tracks.remove(0);
    let mut audio = TrackInfo::new(2, TrackKind::Audio, 48_000);
    audio.fourcc = "mp4a".into();
    audio.codec = "mp4a.40.2".into();
    audio.codec_private = vec![0x11, 0x90];
    audio.stream = "720p".into();
    audio.bitrate = 128_000;
    audio.sample_rate = 48_000;
    audio.channels = 2;
    audio.language = "eng".into();
    timeline.set_track(video);
    timeline.set_track(audio);
    let video_samples = fragment_samples();
    let payload = Bytes::from(vec![0u8; FRAGMENT_BYTES as usize]);
    let aac = SampleEntry {
        duration: 1024,
        size: 341, // 128 kbit/s at 48 kHz
        composition_offset: 0,
        keyframe: true,
    };
    let mut audio_start = 0;
    for i in 0..u64::from(count) {
        let video = Fragment {
            start: i * FRAGMENT_TICKS,
            duration: FRAGMENT_TICKS,
            samples: video_samples.clone(),
            data: payload.clone(),
            discontinuity: false,
        };
        // AAC frames are 1024 samples: 2 s at 48 kHz is 93.75 frames, so
        // audio fragments run 94, 94, 94, 93 frames, as an encoder cuts them.
        let frames: u32 = if i % 4 == 3 { 93 } else { 94 };
        let audio = Fragment {
            start: audio_start,
            duration: u64::from(frames) * 1024,
            samples: vec![aac; frames as usize],
            data: payload.slice(..(frames * aac.size) as usize),
            discontinuity: false,
        };
        audio_start += audio.duration;
        timeline.push(1, video, 1_700_000_000_000);
        timeline.push(2, audio, 1_700_000_000_000);
    }
    timeline.snapshot()
}

/// Each sample one 4-byte-length-prefixed NAL unit (IDR for keyframes,
/// else a non-IDR slice) of zeros, so packagers that rewrite NAL units
/// (MPEG-TS) see well-formed input.
fn nal_payload(samples: &[SampleEntry]) -> Vec<u8> {
    let mut data = Vec::with_capacity(FRAGMENT_BYTES as usize);
    for s in samples {
        let size = s.size.max(5);
        data.extend_from_slice(&(size - 4).to_be_bytes());
        data.push(if s.keyframe { 0x65 } else { 0x41 });
        data.resize(data.len() + (size - 5) as usize, 0);
    }
    data
}

/// Start of the `i`-th fragment of [`live_video`].
pub fn fragment_start(i: u32) -> u64 {
    u64::from(i) * FRAGMENT_TICKS
}

fn live_view() -> MemoryView {
    MemoryView::new(PresentationState::Live, 2000, Some(1_700_000_000_000))
}

/// Ticks of one 2 s fragment at 90 kHz.
const FRAGMENT_TICKS: u64 = 180_000;
/// Bytes of sample payload per fragment (3 Mbit/s for 2 s).
pub const FRAGMENT_BYTES: u32 = 750_000;
/// Video samples per fragment (25 fps for 2 s).
pub const FRAGMENT_SAMPLES: u32 = 50;

/// 50 samples: a 120 KB keyframe, the rest share the remaining bytes; a
/// B-frame pattern in the composition offsets.
fn fragment_samples() -> Vec<SampleEntry> {
    let key = 120_000;
    let rest = (FRAGMENT_BYTES - key) / (FRAGMENT_SAMPLES - 1);
    (0..FRAGMENT_SAMPLES)
        .map(|i| SampleEntry {
            duration: 3600,
            size: if i == 0 {
                key + (FRAGMENT_BYTES - key) % (FRAGMENT_SAMPLES - 1)
            } else {
                rest
            },
            composition_offset: if i % 2 == 0 { 7200 } else { 0 },
            keyframe: i == 0,
        })
        .collect()
}

/// An `avcC` record (High profile, level 3.1) with one SPS and one PPS.
const AVCC: &[u8] = &[
    0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x1c, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50,
    0x05, 0xbb, 0x01, 0x6a, 0x02, 0x02, 0x02, 0x80, 0x00, 0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x19,
    0x07, 0x8c, 0x18, 0xcb, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0,
];

/// Timing figures of one benchmark.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Timed iterations.
    pub iterations: usize,
    /// Median of the iterations.
    pub median: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// Fastest iteration.
    pub min: Duration,
}

impl Summary {
    /// Median in microseconds.
    pub fn median_us(&self) -> f64 {
        self.median.as_secs_f64() * 1e6
    }

    /// 90th percentile in microseconds.
    pub fn p90_us(&self) -> f64 {
        self.p90.as_secs_f64() * 1e6
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "median {:>9.2} µs   p90 {:>9.2} µs   min {:>9.2} µs   ({} iterations)",
            self.median_us(),
            self.p90_us(),
            self.min.as_secs_f64() * 1e6,
            self.iterations
        )
    }
}

/// Runs `f` `warmup` times untimed, then `iterations` times timing each run.
pub fn measure(warmup: usize, iterations: usize, mut f: impl FnMut()) -> Summary {
    for _ in 0..warmup {
        f();
    }
    let mut times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    summarize(&mut times)
}

/// Median, p90 and minimum of `times` (sorted in place).
pub fn summarize(times: &mut [Duration]) -> Summary {
    assert!(!times.is_empty(), "no iterations timed");
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Summary {
        iterations: times.len(),
        median: at(0.5),
        p90: at(0.9),
        min: times[0],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_is_two_seconds_at_three_megabits() {
        use sluice_sdk::plugin::View;
        let v = live_video(3);
        let frags = v.fragments(1, 0, 10);
        assert_eq!(frags.len(), 3);
        assert_eq!(frags[1].start, 180_000);
        assert_eq!(frags[0].size, FRAGMENT_BYTES);
        assert_eq!(frags[0].sample_count, FRAGMENT_SAMPLES);
        let samples = v.samples(1, 180_000).expect("samples");
        assert_eq!(samples.iter().map(|s| s.size).sum::<u32>(), FRAGMENT_BYTES);
        assert_eq!(
            samples.iter().map(|s| u64::from(s.duration)).sum::<u64>(),
            180_000
        );
        assert!(v.sample_data(1, 0, FRAGMENT_BYTES - 4, 4).is_some());
        assert!(v.sample_data(1, 0, FRAGMENT_BYTES - 4, 5).is_none());
    }

    #[test]
    fn percentiles() {
        let mut t: Vec<_> = (1..=10).map(Duration::from_micros).collect();
        let s = summarize(&mut t);
        assert_eq!(s.min, Duration::from_micros(1));
        assert_eq!(s.median, Duration::from_micros(6));
        assert_eq!(s.p90, Duration::from_micros(9));
    }
}
