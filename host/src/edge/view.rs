//! What packagers see at an edge: the merged timeline, with payloads from
//! the edge's fragment cache. A payload not at hand is recorded as a miss;
//! delivery has the edge fetch the misses (single flight) and runs the
//! packager again, as it does with stored assets on an ingest node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sluice_sdk::plugin::{
    Fragment as FragmentInfo, PresentationInfo, PresentationState, SampleEntry, TrackInfo, View,
};

use super::follow::{Entry, State};
use super::{EdgeCore, FragKey};
use crate::archive::Misses;
use crate::storage::Fragment;

/// A point-in-time view of a followed presentation.
pub struct EdgeView {
    state: State,
    core: Arc<EdgeCore>,
    resident: Mutex<HashMap<(u32, u64), Arc<Fragment>>>,
    misses: Misses,
}

impl EdgeView {
    pub(super) fn new(state: State, core: Arc<EdgeCore>) -> Self {
        EdgeView {
            state,
            core,
            resident: Mutex::new(HashMap::new()),
            misses: Misses::default(),
        }
    }

    /// Changes whenever what the view lists changes.
    pub fn generation(&self) -> u64 {
        self.state.generation
    }

    /// Stable for one recording (see [`State::identity`]).
    pub fn identity(&self) -> u64 {
        self.state.identity
    }

    /// Whether the presentation is still growing.
    pub fn is_live(&self) -> bool {
        self.state.info.state == PresentationState::Live
    }

    /// Whether `ip` may watch this (a channel preview's allow list).
    pub fn preview_allowed(&self, ip: std::net::IpAddr) -> bool {
        crate::channel::allowed(&self.state.preview_allow, ip)
    }

    /// The preview allow list (CIDRs; empty: anyone).
    pub fn preview_allow(&self) -> &[ipnet::IpNet] {
        &self.state.preview_allow
    }

    /// The channel its fragments are named under.
    pub fn channel(&self) -> &str {
        &self.state.channel
    }

    /// Up to `limit` listed fragments of `track` from `from` (ticks), with
    /// their content checksums.
    pub fn entries(&self, track: u32, from: u64, limit: usize) -> Vec<(FragmentInfo, u64)> {
        let Some(i) = self.state.tracks.iter().position(|t| t.id == track) else {
            return Vec::new();
        };
        let list = &self.state.lists[i];
        let first = list.partition_point(|e| e.info.start < from);
        list[first..]
            .iter()
            .take(limit)
            .map(|e| (e.info, e.sum))
            .collect()
    }

    /// The newest listed fragment of `track`.
    pub fn last(&self, track: u32) -> Option<FragmentInfo> {
        let i = self.state.tracks.iter().position(|t| t.id == track)?;
        self.state.lists[i].last().map(|e| e.info)
    }

    fn entry(&self, track: u32, start: u64) -> Option<Entry> {
        let i = self.state.tracks.iter().position(|t| t.id == track)?;
        let list = &self.state.lists[i];
        let pos = list.binary_search_by_key(&start, |e| e.info.start).ok()?;
        list.get(pos).copied()
    }

    fn fragment(&self, track: u32, start: u64) -> Option<Arc<Fragment>> {
        let e = self.entry(track, start)?;
        let mut resident = self.resident.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = resident.get(&(track, start)) {
            return Some(f.clone());
        }
        let key = FragKey {
            channel: self.state.channel.clone(),
            track,
            start,
            sum: e.sum,
        };
        match self.core.frags.get(&key) {
            Some(f) => {
                resident.insert((track, start), f.clone());
                Some(f)
            }
            None => {
                self.misses.push(track, start);
                None
            }
        }
    }

    /// Payload bytes by reference, when at hand.
    pub fn data(&self, track: u32, start: u64, offset: u32, length: u32) -> Option<Bytes> {
        self.fragment(track, start)?.payload(offset, length)
    }

    /// The fragments asked for that were not at hand (cleared).
    pub fn take_misses(&self) -> Vec<(u32, u64)> {
        self.misses.take()
    }

    /// Fetches `misses` (concurrently, each through the edge's single
    /// flight) and keeps them at hand.
    pub async fn fetch(&self, misses: Vec<(u32, u64)>) -> Result<(), String> {
        let jobs = misses.into_iter().filter_map(|(track, start)| {
            let e = self.entry(track, start)?;
            let core = self.core.clone();
            let channel = self.state.channel.clone();
            Some(async move { (track, start, core.fragment(&channel, track, e).await) })
        });
        for (track, start, result) in futures_util::future::join_all(jobs).await {
            let f = result?;
            self.resident
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((track, start), f);
        }
        Ok(())
    }
}

impl View for EdgeView {
    fn info(&self) -> PresentationInfo {
        self.state.info.clone()
    }

    fn tracks(&self) -> Vec<TrackInfo> {
        self.state.tracks.clone()
    }

    fn fragments(&self, track: u32, from: u64, limit: u32) -> Vec<FragmentInfo> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        self.entries(track, from, limit)
            .into_iter()
            .map(|(info, _)| info)
            .collect()
    }

    fn samples(&self, track: u32, start: u64) -> Option<Vec<SampleEntry>> {
        self.fragment(track, start).map(|f| f.samples.clone())
    }

    fn sample_data(&self, track: u32, start: u64, offset: u32, length: u32) -> Option<Vec<u8>> {
        self.data(track, start, offset, length).map(|b| b.to_vec())
    }
}
