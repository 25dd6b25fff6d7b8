//! [`MemoryView`]: a presentation held in memory, for plugin authors' native
//! tests and benchmarks (a packager runs against it exactly as against the
//! host's timeline), with [`MemoryView::assemble`] doing the host's splice
//! of referenced sample data into a response body.

use std::collections::BTreeMap;

use super::{
    BodyPart, Fragment, PresentationInfo, PresentationState, Response, SampleEntry, TrackInfo, View,
};

/// One stored fragment: its timeline entry, sample table and payload.
#[derive(Debug, Clone)]
pub struct MemoryFragment {
    /// The timeline entry.
    pub fragment: Fragment,
    /// The sample table.
    pub samples: Vec<SampleEntry>,
    /// The payload (all samples, in order).
    pub data: Vec<u8>,
}

/// A presentation held in memory.
#[derive(Debug, Clone)]
pub struct MemoryView {
    /// What `info()` answers.
    pub info: PresentationInfo,
    /// The tracks, in order.
    pub tracks: Vec<TrackInfo>,
    /// Fragments per track, by start.
    pub fragments: BTreeMap<u32, BTreeMap<u64, MemoryFragment>>,
}

impl MemoryView {
    /// An empty presentation.
    pub fn new(state: PresentationState, fragment_duration_ms: u32, epoch_ms: Option<i64>) -> Self {
        MemoryView {
            info: PresentationInfo {
                state,
                fragment_duration_ms,
                epoch_ms,
                window_ms: 0,
            },
            tracks: Vec::new(),
            fragments: BTreeMap::new(),
        }
    }

    /// Adds a track.
    pub fn add_track(&mut self, track: TrackInfo) {
        self.fragments.entry(track.id).or_default();
        self.tracks.push(track);
    }

    /// Adds a fragment of `track` at `start` with these samples and payload.
    /// Its discontinuity sequence number is that of the fragment before it,
    /// plus one when `discontinuity` (push in time order).
    ///
    /// # Panics
    /// When `data` is not exactly the sum of the sample sizes long (a
    /// mistake in the test that builds the view).
    pub fn push(
        &mut self,
        track: u32,
        start: u64,
        samples: Vec<SampleEntry>,
        data: Vec<u8>,
        discontinuity: bool,
    ) {
        let size: u32 = samples.iter().map(|s| s.size).sum();
        assert_eq!(size as usize, data.len(), "payload length");
        let timeline = self.fragments.entry(track).or_default();
        let before = timeline
            .range(..start)
            .next_back()
            .map_or(0, |(_, f)| f.fragment.discontinuity_sequence);
        let fragment = Fragment {
            start,
            duration: samples.iter().map(|s| u64::from(s.duration)).sum(),
            sample_count: samples.len() as u32,
            size,
            discontinuity,
            discontinuity_sequence: before + u32::from(discontinuity),
        };
        timeline.insert(
            start,
            MemoryFragment {
                fragment,
                samples,
                data,
            },
        );
    }

    /// Drops the oldest fragments of every track that start before `start`
    /// in milliseconds (a sliding window).
    pub fn trim_before_ms(&mut self, start_ms: u64) {
        for t in &self.tracks {
            if let Some(f) = self.fragments.get_mut(&t.id) {
                let ts = u64::from(t.timescale);
                f.retain(|&start, _| start * 1000 / ts >= start_ms);
            }
        }
    }

    /// The body of a response with every sample-data reference replaced by
    /// the bytes it names, as the host splices them; `None` when a reference
    /// names data the view does not hold (the host answers 503 then).
    pub fn assemble(&self, response: &Response) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        for part in &response.body {
            match part {
                BodyPart::Bytes(b) => out.extend_from_slice(b),
                BodyPart::SampleData(r) => {
                    let data = &self.fragments.get(&r.track)?.get(&r.start)?.data;
                    let from = usize::try_from(r.offset).ok()?;
                    let to = from.checked_add(usize::try_from(r.length).ok()?)?;
                    out.extend_from_slice(data.get(from..to)?);
                }
            }
        }
        Some(out)
    }
}

impl View for MemoryView {
    fn info(&self) -> PresentationInfo {
        self.info.clone()
    }

    fn tracks(&self) -> Vec<TrackInfo> {
        self.tracks.clone()
    }

    fn fragments(&self, track: u32, from: u64, limit: u32) -> Vec<Fragment> {
        self.fragments
            .get(&track)
            .map(|f| {
                f.range(from..)
                    .take(limit as usize)
                    .map(|(_, m)| m.fragment)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn samples(&self, track: u32, start: u64) -> Option<Vec<SampleEntry>> {
        Some(self.fragments.get(&track)?.get(&start)?.samples.clone())
    }

    fn sample_data(&self, track: u32, start: u64, offset: u32, length: u32) -> Option<Vec<u8>> {
        let f = self.fragments.get(&track)?.get(&start)?;
        let from = offset as usize;
        f.data
            .get(from..from.checked_add(length as usize)?)
            .map(<[u8]>::to_vec)
    }
}
