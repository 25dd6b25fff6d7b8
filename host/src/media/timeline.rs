//! A channel's live timeline: tracks and their fragments, bounded by a
//! window of media time, and immutable snapshots of it that packagers read
//! through the SDK's [`View`].

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use sluice_sdk::plugin::{
    Fragment as FragmentInfo, PresentationInfo, PresentationState, SampleEntry, TrackInfo, View,
};

use super::segmenter::{Fragment, ms_to_ticks};

/// What became of a pushed fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Appended.
    Added,
    /// Same start and identical content as a fragment held: dropped.
    DuplicateMatching,
    /// Same start as a fragment held but different content: dropped.
    DuplicateMismatching,
    /// Starts inside the timeline without matching a fragment start: dropped.
    Overlapping,
    /// The track is not declared.
    UnknownTrack,
}

/// A fragment held by a track: its timeline entry inline, so that paging
/// through a long window reads one contiguous array instead of chasing a
/// pointer per fragment, and the fragment itself (samples and payload).
#[derive(Debug, Clone)]
pub struct Entry {
    /// What packagers see of the fragment in the timeline.
    pub info: FragmentInfo,
    /// The fragment.
    pub fragment: Arc<Fragment>,
    /// Its content checksum (`storage::checksum`): its name across nodes.
    pub checksum: u64,
}

/// A track of the timeline.
#[derive(Debug, Clone)]
pub struct Track {
    /// Description (the id is the channel's track id).
    pub info: Arc<TrackInfo>,
    /// Fragments in time order: the window, preceded by those that left
    /// it less than the grace period ago (still servable, no longer listed).
    /// Shared with snapshots: taking one costs nothing per fragment; the
    /// next push copies the index if a snapshot still holds it.
    pub fragments: Arc<VecDeque<Entry>>,
    /// Start of the first fragment inside the window (listed to packagers).
    pub window_start: u64,
}

/// How long a fragment that slid out of the window stays servable, in ms:
/// the longest playlist listing it (the window, capped at ten minutes of
/// memory) plus two fragments, after RFC 8216 §6.2.2, so a player that
/// loaded a manifest just before the slide can still fetch what it lists.
fn grace_ms(window_ms: u64, fragment_ms: u32) -> u64 {
    window_ms.min(600_000) + 2 * u64::from(fragment_ms)
}

/// The live timeline of one channel.
#[derive(Debug)]
pub struct Timeline {
    fragment_ms: u32,
    window_ms: u64,
    epoch_ms: Option<i64>,
    /// Configured epoch: kept across resets, never replaced by the clock.
    fixed_epoch_ms: Option<i64>,
    tracks: Vec<Track>,
    generation: u64,
    ended: bool,
}

impl Timeline {
    /// An empty timeline.
    pub fn new(fragment_ms: u32, window_ms: u64) -> Self {
        Timeline {
            fragment_ms,
            window_ms,
            epoch_ms: None,
            fixed_epoch_ms: None,
            tracks: Vec::new(),
            generation: 0,
            ended: false,
        }
    }

    /// Fixes the wall-clock time of media time zero (redundant nodes given
    /// the same epoch write identical program date-times and DASH
    /// availability times); without it, the clock at the first fragment.
    pub fn with_epoch(mut self, epoch_ms: Option<i64>) -> Self {
        self.fixed_epoch_ms = epoch_ms;
        self.epoch_ms = epoch_ms;
        self
    }

    /// Changes every time a fragment or track is added.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Declares or re-declares a track (same id: new codec data).
    pub fn set_track(&mut self, info: TrackInfo) {
        self.generation += 1;
        self.ended = false;
        let info = Arc::new(info);
        match self.tracks.iter_mut().find(|t| t.info.id == info.id) {
            Some(t) => t.info = info,
            None => self.tracks.push(Track {
                info,
                fragments: Arc::default(),
                window_start: 0,
            }),
        }
    }

    /// Appends a finished fragment and trims what left the window.
    /// `now_ms` anchors the wall clock the first time (for PROGRAM-DATE-TIME).
    ///
    /// The first fragment per (track, start) wins: a fragment that does not
    /// start after the newest one is a duplicate (a redundant encoder's copy,
    /// or a resend) and is dropped; the outcome says whether it matched the
    /// copy held.
    pub fn push(&mut self, track: u32, fragment: Fragment, now_ms: i64) -> PushOutcome {
        let Some(t) = self.tracks.iter_mut().find(|t| t.info.id == track) else {
            return PushOutcome::UnknownTrack;
        };
        let timescale = t.info.timescale.max(1);
        if self.epoch_ms.is_none() {
            let start_ms =
                i64::try_from(fragment.start.saturating_mul(1000) / u64::from(timescale))
                    .unwrap_or(0);
            self.epoch_ms = Some(now_ms - start_ms);
        }
        // Timelines never go backward: a fragment not after the newest is dropped.
        if let Some(last) = t.fragments.back()
            && fragment.start < last.info.start + last.info.duration
        {
            let held = t
                .fragments
                .binary_search_by_key(&fragment.start, |e| e.info.start)
                .ok()
                .and_then(|i| t.fragments.get(i));
            return match held.map(|e| &e.fragment) {
                Some(h) if h.samples == fragment.samples && h.data == fragment.data => {
                    PushOutcome::DuplicateMatching
                }
                Some(_) => PushOutcome::DuplicateMismatching,
                None => PushOutcome::Overlapping,
            };
        }
        let info = FragmentInfo {
            start: fragment.start,
            duration: fragment.duration,
            sample_count: u32::try_from(fragment.samples.len()).unwrap_or(u32::MAX),
            size: u32::try_from(fragment.data.len()).unwrap_or(u32::MAX),
            discontinuity: fragment.discontinuity,
            discontinuity_sequence: t
                .fragments
                .back()
                .map_or(0, |e| e.info.discontinuity_sequence)
                .saturating_add(u32::from(fragment.discontinuity)),
        };
        let newest_end = info.start + info.duration;
        let fragments = Arc::make_mut(&mut t.fragments);
        let checksum = crate::storage::checksum(&fragment);
        fragments.push_back(Entry {
            info,
            fragment: Arc::new(fragment),
            checksum,
        });
        let window = ms_to_ticks(self.window_ms, timescale);
        let grace = ms_to_ticks(grace_ms(self.window_ms, self.fragment_ms), timescale);
        while let Some(first) = fragments.front() {
            if first.info.start + first.info.duration + window + grace < newest_end {
                fragments.pop_front();
            } else {
                break;
            }
        }
        // Fragments are in time order: the first one ending inside the window.
        let inside =
            fragments.partition_point(|e| e.info.start + e.info.duration + window < newest_end);
        t.window_start = fragments.get(inside).map_or(0, |e| e.info.start);
        self.ended = false;
        self.generation += 1;
        PushOutcome::Added
    }

    /// Marks the presentation complete (nothing more will be added) or live again.
    pub fn set_ended(&mut self, ended: bool) {
        if self.ended != ended {
            self.ended = ended;
            self.generation += 1;
        }
    }

    /// Forgets every fragment (tracks stay declared): the channel reset.
    pub fn clear(&mut self) {
        for t in &mut self.tracks {
            t.fragments = Arc::default();
        }
        self.epoch_ms = self.fixed_epoch_ms;
        self.generation += 1;
    }

    /// The newest fragment of `track`: its entry and the fragment.
    pub fn newest(&self, track: u32) -> Option<(Arc<TrackInfo>, Entry)> {
        let t = self.tracks.iter().find(|t| t.info.id == track)?;
        Some((t.info.clone(), t.fragments.back()?.clone()))
    }

    /// Wall-clock time of media time zero, once the first fragment came.
    pub fn epoch_ms(&self) -> Option<i64> {
        self.epoch_ms
    }

    /// Tracks and fragments held.
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// An immutable view of the current state.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            info: PresentationInfo {
                state: if self.ended {
                    PresentationState::Ended
                } else {
                    PresentationState::Live
                },
                fragment_duration_ms: self.fragment_ms,
                epoch_ms: self.epoch_ms,
                window_ms: self.window_ms,
            },
            tracks: self.tracks.clone(),
            generation: self.generation,
        }
    }
}

/// A point-in-time copy of a timeline (fragments shared, not copied).
#[derive(Debug, Clone)]
pub struct Snapshot {
    info: PresentationInfo,
    tracks: Vec<Track>,
    generation: u64,
}

impl Snapshot {
    /// The timeline generation the snapshot was taken at.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The listed fragments of `track` starting at or after `from` (ticks),
    /// at most `limit`, with their content checksums.
    pub fn entries(&self, track: u32, from: u64, limit: usize) -> Vec<(FragmentInfo, u64)> {
        self.listed(track, from, limit)
            .map(|e| (e.info, e.checksum))
            .collect()
    }

    /// Up to `limit` listed entries of `track` starting at or after `from`
    /// (`range` slices in O(1); `iter().skip(n)` would walk the skipped part).
    fn listed(&self, track: u32, from: u64, limit: usize) -> impl Iterator<Item = &Entry> {
        let t = self.tracks.iter().find(|t| t.info.id == track);
        let range = t.map_or(0..0, |t| {
            let from = from.max(t.window_start);
            let first = t.fragments.partition_point(|e| e.info.start < from);
            first..first.saturating_add(limit).min(t.fragments.len())
        });
        t.into_iter()
            .flat_map(move |t| t.fragments.range(range.clone()))
    }

    /// The number of listed fragments of `track` and the newest `n` of
    /// them, oldest first.
    pub fn tail(&self, track: u32, n: usize) -> (usize, Vec<FragmentInfo>) {
        let Some(t) = self.tracks.iter().find(|t| t.info.id == track) else {
            return (0, Vec::new());
        };
        let first = t
            .fragments
            .partition_point(|e| e.info.start < t.window_start);
        let listed = t.fragments.len() - first;
        let from = t.fragments.len() - listed.min(n);
        (listed, t.fragments.range(from..).map(|e| e.info).collect())
    }

    /// The newest fragment of `track`.
    pub fn last(&self, track: u32) -> Option<FragmentInfo> {
        let t = self.tracks.iter().find(|t| t.info.id == track)?;
        t.fragments.back().map(|e| e.info)
    }

    /// The fragment of `track` starting at `start` with content `checksum`.
    pub fn fragment_named(&self, track: u32, start: u64, checksum: u64) -> Option<&Arc<Fragment>> {
        let t = self.tracks.iter().find(|t| t.info.id == track)?;
        let i = t
            .fragments
            .binary_search_by_key(&start, |e| e.info.start)
            .ok()?;
        t.fragments
            .get(i)
            .filter(|e| e.checksum == checksum)
            .map(|e| &e.fragment)
    }

    /// The fragment of `track` starting at `start`.
    pub fn fragment(&self, track: u32, start: u64) -> Option<&Arc<Fragment>> {
        let t = self.tracks.iter().find(|t| t.info.id == track)?;
        let i = t
            .fragments
            .binary_search_by_key(&start, |e| e.info.start)
            .ok()?;
        t.fragments.get(i).map(|e| &e.fragment)
    }

    /// Payload bytes of a fragment, by reference, if the range is valid.
    pub fn data(&self, track: u32, start: u64, offset: u32, length: u32) -> Option<Bytes> {
        self.fragment(track, start)?.payload(offset, length)
    }
}

impl View for Snapshot {
    fn info(&self) -> PresentationInfo {
        self.info.clone()
    }

    fn tracks(&self) -> Vec<TrackInfo> {
        self.tracks.iter().map(|t| (*t.info).clone()).collect()
    }

    fn fragments(&self, track: u32, from: u64, limit: u32) -> Vec<FragmentInfo> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        self.listed(track, from, limit).map(|e| e.info).collect()
    }

    fn samples(&self, track: u32, start: u64) -> Option<Vec<SampleEntry>> {
        self.fragment(track, start).map(|f| f.samples.clone())
    }

    fn sample_data(&self, track: u32, start: u64, offset: u32, length: u32) -> Option<Vec<u8>> {
        self.data(track, start, offset, length).map(|b| b.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sdk::plugin::TrackKind;

    fn frag(start: u64, duration: u64) -> Fragment {
        Fragment {
            start,
            duration,
            samples: vec![SampleEntry {
                duration: u32::try_from(duration).expect("small"),
                size: 4,
                composition_offset: 0,
                keyframe: true,
            }],
            data: Bytes::from_static(b"abcd"),
            discontinuity: false,
        }
    }

    #[test]
    fn window_slides_and_never_goes_back() {
        let mut tl = Timeline::new(2000, 6000);
        tl.set_track(TrackInfo::new(1, TrackKind::Video, 1000));
        for i in 0..10 {
            tl.push(1, frag(i * 2000, 2000), 1_000_000);
        }
        assert_eq!(
            tl.push(1, frag(5000, 2000), 1_000_000),
            PushOutcome::Overlapping
        );
        assert_eq!(
            tl.push(1, frag(18_000, 2000), 1_000_000),
            PushOutcome::DuplicateMatching
        );
        let mut other = frag(18_000, 2000);
        other.data = Bytes::from_static(b"abce");
        assert_eq!(
            tl.push(1, other, 1_000_000),
            PushOutcome::DuplicateMismatching
        );
        let snap = tl.snapshot();
        let starts: Vec<u64> = snap.fragments(1, 0, 100).iter().map(|f| f.start).collect();
        assert_eq!(starts, vec![12_000, 14_000, 16_000, 18_000]);
        // Left the window less than the grace period (6 s + 2 fragments)
        // ago: servable, not listed; older ones are gone.
        assert!(snap.fragment(1, 2_000).is_some());
        assert!(snap.fragment(1, 0).is_none());
        assert_eq!(snap.fragments(1, 15_000, 1)[0].start, 16_000);
        assert_eq!(snap.info().epoch_ms, Some(1_000_000));
        assert_eq!(snap.data(1, 12_000, 1, 2).as_deref(), Some(&b"bc"[..]));
        assert_eq!(snap.data(1, 12_000, 3, 2), None);
        assert_eq!(snap.data(1, 13_000, 0, 1), None);
    }
}
