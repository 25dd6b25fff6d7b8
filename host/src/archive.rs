//! Programs record channels into assets; assets play back live and on demand.
//!
//! ```text
//!  Channel::publish_fragment ─▶ ChannelArchive::on_fragment
//!      │ covered by a running program's range?  index entry (pending: the
//!      │ fragment itself, so live manifests list it at once)
//!      ▼
//!  writer task (one per channel) ─▶ AssetStore::put_fragment ─▶ SQLite index row
//!      └─▶ trim: fragments no asset range reaches any more leave the index,
//!          then the metadata, then storage
//! ```
//!
//! Store once, programs are views (DESIGN §4.9): a channel incarnation's
//! fragments are written once, named by track and media time; an asset is a
//! range of media time over them (`from_ms`, and `to_ms` once its program
//! stopped), and a running program's range also ends its archive window
//! before the newest fragment. A fragment leaves storage when no asset range
//! reaches it, so content behind every archive window is discarded
//! continuously, and three programs on one channel cost one copy.
//!
//! Memory: the index (40 bytes per fragment per track) is held for every
//! asset; payloads only while a fragment is in the channel's hot timeline or
//! not yet written. Older payloads are read back from storage on demand
//! (through the store's read cache): a 25 h archive costs disk, not RAM.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use sluice_sdk::plugin::{
    Fragment as FragmentInfo, PresentationInfo, PresentationState, SampleEntry, TrackInfo,
    TrackKind, View,
};
use tokio::sync::mpsc;

use crate::channel::{Channel, Channels, Recorder};
use crate::media::segmenter::Fragment;
use crate::media::timeline::{Entry, Snapshot};
use crate::storage::{AssetStore, FragmentKey};
use crate::store::{AssetRecord, LocatorRecord, Store, StoredFragment};

/// Fragments waiting for storage per channel; past this the archive drops
/// (and logs) rather than hold ingest or memory.
const QUEUE: usize = 512;

/// One stored fragment in the in-memory index.
#[derive(Debug, Clone)]
struct IndexEntry {
    info: FragmentInfo,
    /// Content checksum (the fragment's name across nodes).
    checksum: u64,
    /// The fragment until it is written (then it is read back on demand).
    pending: Option<Arc<Fragment>>,
}

/// A track of a stored channel incarnation.
#[derive(Debug, Clone)]
struct StoredTrack {
    info: Arc<TrackInfo>,
    index: Arc<VecDeque<IndexEntry>>,
}

impl StoredTrack {
    fn start_ms(&self, ticks: u64) -> i64 {
        ticks_to_ms(ticks, self.info.timescale)
    }

    /// End of the newest fragment, ms.
    fn newest_end_ms(&self) -> Option<i64> {
        let e = self.index.back()?;
        Some(self.start_ms(e.info.start + e.info.duration))
    }
}

/// Ticks of a timescale in milliseconds (floor).
pub(crate) fn ticks_to_ms(ticks: u64, timescale: u32) -> i64 {
    let ms = match ticks.checked_mul(1000) {
        Some(t) => t / u64::from(timescale.max(1)),
        None => u64::try_from(u128::from(ticks) * 1000 / u128::from(timescale.max(1)))
            .unwrap_or(u64::MAX),
    };
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// What one channel incarnation has stored.
#[derive(Debug)]
pub struct Stored {
    channel: String,
    incarnation: u64,
    inner: RwLock<StoredInner>,
}

#[derive(Debug, Default)]
struct StoredInner {
    tracks: Vec<StoredTrack>,
    generation: u64,
}

impl Stored {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, StoredInner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, StoredInner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    fn key(&self, track: u32, start: u64) -> FragmentKey {
        FragmentKey {
            channel: self.channel.clone(),
            incarnation: self.incarnation,
            track,
            start,
        }
    }

    /// End of the newest stored fragment of any track, ms.
    fn end_ms(&self) -> Option<i64> {
        self.read()
            .tracks
            .iter()
            .filter_map(StoredTrack::newest_end_ms)
            .max()
    }
}

/// An asset as playback and trimming see it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AssetRange {
    channel: String,
    manifest_name: String,
    window_ms: u64,
    incarnation: u64,
    fragment_ms: u32,
    from_ms: i64,
    /// `None` while its program runs.
    to_ms: Option<i64>,
    epoch_ms: Option<i64>,
}

impl AssetRange {
    fn from_record(r: &AssetRecord) -> Option<AssetRange> {
        let rec = r.recording.as_ref()?;
        Some(AssetRange {
            channel: rec.channel.clone(),
            manifest_name: rec.manifest_name.clone(),
            window_ms: rec.window_ms,
            incarnation: rec.incarnation?,
            fragment_ms: rec.fragment_ms.unwrap_or(2000),
            from_ms: rec.from_ms.unwrap_or(0),
            to_ms: rec.to_ms,
            epoch_ms: rec.epoch_ms,
        })
    }

    fn live(&self) -> bool {
        self.to_ms.is_none()
    }

    /// The index positions `first..end` of `t` the range reaches (`None`
    /// when empty): one interval, found by binary search (starts and ends
    /// grow along the index).
    fn span(&self, t: &StoredTrack) -> Option<(usize, usize)> {
        let newest = t.newest_end_ms()?;
        let ts = t.info.timescale;
        let window = i64::try_from(self.window_ms).unwrap_or(i64::MAX);
        // Before the range: before its start, or (live) out of the window.
        let first = t.index.partition_point(|e| {
            let start = ticks_to_ms(e.info.start, ts);
            let end = ticks_to_ms(e.info.start + e.info.duration, ts);
            start < self.from_ms || (self.live() && end.saturating_add(window) < newest)
        });
        let end = match self.to_ms {
            None => t.index.len(),
            Some(to) => t
                .index
                .partition_point(|e| ticks_to_ms(e.info.start, ts) < to),
        };
        (first < end).then_some((first, end))
    }

    /// Whether the range reaches a fragment `[start_ms, end_ms)` of a track
    /// whose newest fragment ends at `newest_end_ms`.
    fn covers(&self, start_ms: i64, end_ms: i64, newest_end_ms: i64) -> bool {
        if start_ms < self.from_ms {
            return false;
        }
        match self.to_ms {
            Some(to) => start_ms < to,
            // Listed while it ends inside the window (as the live timeline).
            None => {
                end_ms.saturating_add(i64::try_from(self.window_ms).unwrap_or(i64::MAX))
                    >= newest_end_ms
            }
        }
    }
}

/// A job for a channel's writer task.
enum Job {
    Track {
        stored: Arc<Stored>,
        info: Arc<TrackInfo>,
    },
    Fragment {
        stored: Arc<Stored>,
        track: u32,
        info: FragmentInfo,
        checksum: u64,
        fragment: Arc<Fragment>,
    },
    /// Replies once everything queued before it is written.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Programs, assets, locators and what they stored.
pub struct Archive {
    store: Arc<Store>,
    objects: Arc<AssetStore>,
    stored: RwLock<HashMap<(String, u64), Arc<Stored>>>,
    assets: RwLock<HashMap<String, AssetRange>>,
    locators: RwLock<HashMap<String, LocatorRecord>>,
    /// Every channel's writer queue (weak: a deleted channel's writer ends).
    writers: Mutex<Vec<mpsc::WeakSender<Job>>>,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive")
            .field("objects", &self.objects.describe())
            .finish_non_exhaustive()
    }
}

/// A channel's link to the archive: stable track ids, and the writer task
/// its recorded fragments go through.
pub struct ChannelArchive {
    archive: Arc<Archive>,
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for ChannelArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelArchive").finish_non_exhaustive()
    }
}

impl Archive {
    /// Loads what the metadata store holds (assets, their indexes and
    /// tracks, locators) and finishes deletions a crash interrupted.
    pub async fn open(store: Arc<Store>, objects: Arc<AssetStore>) -> anyhow::Result<Arc<Archive>> {
        let archive = Arc::new(Archive {
            store: store.clone(),
            objects,
            stored: RwLock::default(),
            assets: RwLock::default(),
            locators: RwLock::default(),
            writers: Mutex::default(),
        });
        let mut deleting = Vec::new();
        for a in store.assets()? {
            if a.deleting {
                deleting.push(a.name.clone());
            }
            if let Some(range) = AssetRange::from_record(&a) {
                archive.load_stored(&range.channel, range.incarnation)?;
                archive
                    .assets
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(a.name.clone(), range);
            }
        }
        for l in store.locators()? {
            archive
                .locators
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(l.id.clone(), l);
        }
        for name in deleting {
            archive.delete_asset_content(&name).await?;
        }
        let stored: Vec<Arc<Stored>> = archive
            .stored
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for s in stored {
            archive.reconcile(&s).await?;
        }
        Ok(archive)
    }

    /// Makes storage and the index agree after a crash: an object written
    /// after the newest indexed fragment of its track (the process died
    /// between the write and the index row) is indexed if it reads back
    /// whole; any other object the index lacks (a trim interrupted between
    /// the index and the delete) is deleted.
    async fn reconcile(&self, stored: &Arc<Stored>) -> anyhow::Result<()> {
        let listed = self
            .objects
            .list_fragments(&stored.channel, stored.incarnation)
            .await?;
        let mut orphans = Vec::new();
        let mut adopted = 0usize;
        for (track, start) in listed {
            let newest = {
                let inner = stored.read();
                let Some(t) = inner.tracks.iter().find(|t| t.info.id == track) else {
                    orphans.push(stored.key(track, start));
                    continue;
                };
                if t.index
                    .binary_search_by_key(&start, |e| e.info.start)
                    .is_ok()
                {
                    continue;
                }
                t.index.back().map(|e| e.info.start + e.info.duration)
            };
            if newest.is_some_and(|end| start < end) {
                orphans.push(stored.key(track, start));
                continue;
            }
            let key = stored.key(track, start);
            let fragment = match self.objects.get_fragment(&key).await {
                Ok(Some(f)) => f,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(channel = %stored.channel, track, start, error = %e, "unreadable fragment after a crash: deleted");
                    orphans.push(key);
                    continue;
                }
            };
            let checksum = crate::storage::checksum(&fragment);
            let info = {
                let mut inner = stored.write();
                let Some(t) = inner.tracks.iter_mut().find(|t| t.info.id == track) else {
                    continue;
                };
                let info = FragmentInfo {
                    start,
                    duration: fragment.duration,
                    sample_count: u32::try_from(fragment.samples.len()).unwrap_or(u32::MAX),
                    size: u32::try_from(fragment.data.len()).unwrap_or(u32::MAX),
                    discontinuity: fragment.discontinuity,
                    discontinuity_sequence: t
                        .index
                        .back()
                        .map_or(0, |e| e.info.discontinuity_sequence)
                        .saturating_add(u32::from(fragment.discontinuity)),
                };
                Arc::make_mut(&mut t.index).push_back(IndexEntry {
                    info,
                    checksum,
                    pending: None,
                });
                inner.generation += 1;
                info
            };
            self.store.put_stored_fragment(
                &stored.channel,
                stored.incarnation,
                &StoredFragment {
                    track,
                    info,
                    checksum,
                },
            )?;
            adopted += 1;
        }
        if adopted > 0 || !orphans.is_empty() {
            tracing::info!(channel = %stored.channel, adopted, deleted = orphans.len(), "storage reconciled with the index");
        }
        if !orphans.is_empty() {
            self.objects.delete_fragments(orphans).await?;
        }
        Ok(())
    }

    /// The stored index of a channel incarnation, loaded from the metadata
    /// store the first time.
    fn load_stored(&self, channel: &str, incarnation: u64) -> anyhow::Result<Arc<Stored>> {
        let key = (channel.to_owned(), incarnation);
        if let Some(s) = self.stored_of(channel, incarnation) {
            return Ok(s);
        }
        let mut tracks: Vec<StoredTrack> = Vec::new();
        for (id, json) in self.store.stored_tracks(channel, incarnation)? {
            match track_from_json(id, &json) {
                Some(info) => tracks.push(StoredTrack {
                    info: Arc::new(info),
                    index: Arc::default(),
                }),
                None => tracing::warn!(channel, track = id, "stored track unreadable: skipped"),
            }
        }
        for f in self.store.stored_fragments(channel, incarnation)? {
            if let Some(t) = tracks.iter_mut().find(|t| t.info.id == f.track) {
                Arc::make_mut(&mut t.index).push_back(IndexEntry {
                    info: f.info,
                    checksum: f.checksum,
                    pending: None,
                });
            }
        }
        let stored = Arc::new(Stored {
            channel: channel.to_owned(),
            incarnation,
            inner: RwLock::new(StoredInner {
                tracks,
                generation: 1,
            }),
        });
        Ok(self
            .stored
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_insert(stored)
            .clone())
    }

    fn stored_of(&self, channel: &str, incarnation: u64) -> Option<Arc<Stored>> {
        self.stored
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(channel.to_owned(), incarnation))
            .cloned()
    }

    /// Connects a channel: its writer task, and the floor its new streams
    /// continue after (the end of what it stored before a restart).
    pub fn attach(self: &Arc<Self>, channel: &Channel) {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(self.clone().writer(rx));
        {
            let mut writers = self.writers.lock().unwrap_or_else(|e| e.into_inner());
            writers.retain(|w| w.strong_count() > 0);
            writers.push(tx.downgrade());
        }
        if let Some(end) = self
            .stored_of(&channel.name, channel.incarnation())
            .and_then(|s| s.end_ms())
        {
            channel.set_floor_ms(end);
        }
        channel.attach_archive(Arc::new(ChannelArchive {
            archive: self.clone(),
            tx,
        }));
    }

    /// Jobs queued for the writers and not yet taken.
    pub fn backlog(&self) -> usize {
        self.writers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(mpsc::WeakSender::upgrade)
            .map(|w| w.max_capacity() - w.capacity())
            .sum()
    }

    /// Waits until every fragment queued so far is written (SIGTERM drain).
    pub async fn flush(&self) {
        let writers: Vec<_> = self
            .writers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(mpsc::WeakSender::upgrade)
            .collect();
        for w in writers {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if w.send(Job::Flush(tx)).await.is_ok() {
                let _ = rx.await;
            }
        }
    }

    async fn writer(self: Arc<Self>, mut rx: mpsc::Receiver<Job>) {
        while let Some(job) = rx.recv().await {
            match job {
                Job::Track { stored, info } => {
                    let json = track_to_json(&info);
                    if let Err(e) = self.store.put_stored_track(
                        &stored.channel,
                        stored.incarnation,
                        info.id,
                        &json,
                    ) {
                        tracing::error!(channel = %stored.channel, error = %e, "cannot store track");
                    }
                }
                Job::Fragment {
                    stored,
                    track,
                    info,
                    checksum,
                    fragment,
                } => {
                    let row = StoredFragment {
                        track,
                        info,
                        checksum,
                    };
                    self.write_fragment(&stored, row, &fragment).await;
                }
                Job::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    async fn write_fragment(&self, stored: &Arc<Stored>, row: StoredFragment, fragment: &Fragment) {
        let (track, info) = (row.track, row.info);
        let key = stored.key(track, info.start);
        let mut attempt = 0u32;
        let written = loop {
            let began = std::time::Instant::now();
            match self.objects.put_fragment(&key, fragment).await {
                Ok(()) => {
                    let m = crate::metrics::metrics();
                    m.storage_write_seconds
                        .observe(began.elapsed().as_secs_f64());
                    m.storage_writes.inc();
                    m.storage_bytes.inc_by(fragment.data.len() as u64);
                    break true;
                }
                Err(e) if attempt < 3 => {
                    attempt += 1;
                    tracing::warn!(channel = %stored.channel, track, start = info.start, error = %e, attempt, "storage write failed: retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
                }
                Err(e) => {
                    tracing::error!(channel = %stored.channel, track, start = info.start, error = %e, "storage write failed: fragment dropped from the archive");
                    crate::metrics::metrics().storage_failures.inc();
                    break false;
                }
            }
        };
        let indexed = written
            && match self
                .store
                .put_stored_fragment(&stored.channel, stored.incarnation, &row)
            {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(channel = %stored.channel, error = %e, "cannot index stored fragment");
                    false
                }
            };
        {
            let mut inner = stored.write();
            if let Some(t) = inner.tracks.iter_mut().find(|t| t.info.id == track) {
                let index = Arc::make_mut(&mut t.index);
                if let Ok(i) = index.binary_search_by_key(&info.start, |e| e.info.start) {
                    if indexed {
                        index[i].pending = None;
                    } else {
                        index.remove(i);
                    }
                }
            }
            inner.generation += 1;
        }
        self.trim(stored).await;
    }

    /// Removes from the index, the metadata and storage every fragment of
    /// `stored` that no asset range reaches.
    async fn trim(&self, stored: &Arc<Stored>) {
        let ranges: Vec<AssetRange> = self
            .assets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|a| a.channel == stored.channel && a.incarnation == stored.incarnation)
            .cloned()
            .collect();
        let mut doomed: Vec<(u32, u64)> = Vec::new();
        {
            let mut inner = stored.write();
            for t in &mut inner.tracks {
                let Some(newest) = t.newest_end_ms() else {
                    continue;
                };
                let timescale = t.info.timescale;
                let bounds = |e: &IndexEntry| {
                    (
                        ticks_to_ms(e.info.start, timescale),
                        ticks_to_ms(e.info.start + e.info.duration, timescale),
                    )
                };
                // From the oldest fragment: an entry inside a live window
                // ends the scan (every later one is inside it too); a block
                // a stopped asset keeps is skipped by binary search; the
                // rest no range reaches.
                let mut gone = Vec::new();
                let mut i = 0;
                while let Some(e) = t.index.get(i) {
                    let (start, end) = bounds(e);
                    if e.pending.is_some()
                        || ranges
                            .iter()
                            .any(|r| r.live() && r.covers(start, end, newest))
                    {
                        break;
                    }
                    if let Some(to) = ranges
                        .iter()
                        .filter(|r| r.covers(start, end, newest))
                        .filter_map(|r| r.to_ms)
                        .max()
                    {
                        let skip = t
                            .index
                            .partition_point(|e| ticks_to_ms(e.info.start, timescale) < to);
                        i = skip.max(i + 1);
                        continue;
                    }
                    gone.push(i);
                    i += 1;
                }
                if gone.is_empty() {
                    continue;
                }
                let id = t.info.id;
                let index = Arc::make_mut(&mut t.index);
                doomed.extend(
                    gone.iter()
                        .filter_map(|&i| Some((id, index.get(i)?.info.start))),
                );
                if gone.last().is_some_and(|&l| l + 1 == gone.len()) {
                    // The usual case: a prefix.
                    index.drain(..gone.len());
                } else {
                    let mut n = 0;
                    index.retain(|_| {
                        let keep = gone.binary_search(&n).is_err();
                        n += 1;
                        keep
                    });
                }
            }
            if !doomed.is_empty() {
                inner.generation += 1;
            }
        }
        if doomed.is_empty() {
            return;
        }
        if let Err(e) =
            self.store
                .delete_stored_fragments(&stored.channel, stored.incarnation, &doomed)
        {
            tracing::error!(channel = %stored.channel, error = %e, "cannot unindex trimmed fragments");
        }
        let keys = doomed.iter().map(|(t, s)| stored.key(*t, *s)).collect();
        if let Err(e) = self.objects.delete_fragments(keys).await {
            tracing::error!(channel = %stored.channel, error = %e, "cannot delete trimmed fragments");
        }
        tracing::debug!(channel = %stored.channel, count = doomed.len(), "trimmed");
        crate::metrics::metrics()
            .storage_trimmed
            .inc_by(doomed.len() as u64);
    }

    /// A program started: its asset's range opens.
    pub fn program_started(&self, asset: &AssetRecord) {
        let Some(range) = AssetRange::from_record(asset) else {
            return;
        };
        if let Err(e) = self.load_stored(&range.channel, range.incarnation) {
            tracing::error!(error = %e, "cannot load stored index");
        }
        self.assets
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(asset.name.clone(), range);
    }

    /// The range a stopping program's asset keeps: `(from_ms, to_ms)`,
    /// what its archive window holds now.
    pub fn stop_range(&self, asset: &str, channel: &Channel) -> Option<(i64, i64)> {
        let range = self.asset_range(asset)?;
        let to = channel
            .cut_ms()
            .or_else(|| self.stored_of(&range.channel, range.incarnation)?.end_ms())
            .unwrap_or(range.from_ms)
            .max(range.from_ms);
        // The oldest fragment still listed, over every track.
        let from = self
            .stored_of(&range.channel, range.incarnation)
            .and_then(|s| {
                let inner = s.read();
                inner
                    .tracks
                    .iter()
                    .filter_map(|t| {
                        let newest = t.newest_end_ms()?;
                        t.index.iter().find_map(|e| {
                            let start = t.start_ms(e.info.start);
                            let end = t.start_ms(e.info.start + e.info.duration);
                            range.covers(start, end, newest).then_some(start)
                        })
                    })
                    .min()
            })
            .unwrap_or(range.from_ms)
            .max(range.from_ms);
        Some((from, to))
    }

    /// A program stopped: its asset's range closes (and trimming stops).
    pub async fn program_stopped(&self, asset: &str, from_ms: i64, to_ms: i64) {
        let stored = {
            let mut assets = self.assets.write().unwrap_or_else(|e| e.into_inner());
            let Some(a) = assets.get_mut(asset) else {
                return;
            };
            a.from_ms = from_ms;
            a.to_ms = Some(to_ms);
            self.stored_of(&a.channel, a.incarnation)
        };
        if let Some(s) = stored {
            s.write().generation += 1;
            self.trim(&s).await;
        }
    }

    fn asset_range(&self, asset: &str) -> Option<AssetRange> {
        self.assets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(asset)
            .cloned()
    }

    /// Deletes what only `asset` reaches from storage, then its record.
    pub async fn delete_asset_content(&self, asset: &str) -> anyhow::Result<()> {
        let range = self
            .assets
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(asset);
        self.locators
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, l| l.asset != asset);
        if let Some(range) = range
            && let Some(stored) = self.stored_of(&range.channel, range.incarnation)
        {
            self.trim(&stored).await;
            let orphan = !self
                .assets
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .any(|a| a.channel == range.channel && a.incarnation == range.incarnation);
            if orphan {
                // Nothing else reaches this incarnation: remove its prefix
                // whole (objects a crash left unindexed included).
                self.objects
                    .delete_incarnation(&range.channel, range.incarnation)
                    .await?;
                self.store
                    .delete_stored_incarnation(&range.channel, range.incarnation)?;
                self.stored
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&(range.channel.clone(), range.incarnation));
            }
        }
        self.store.finish_delete_asset(asset)?;
        Ok(())
    }

    /// Publishes a locator.
    pub fn locator_added(&self, l: LocatorRecord) {
        self.locators
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(l.id.clone(), l);
    }

    /// Unpublishes a locator.
    pub fn locator_removed(&self, id: &str) {
        self.locators
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// A locator by id.
    pub fn locator(&self, id: &str) -> Option<LocatorRecord> {
        self.locators
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Content summary of an asset: `(live, duration_ms, fragments,
    /// pending)`, pending = fragments not yet in storage.
    pub fn asset_summary(&self, asset: &str) -> Option<(bool, u64, usize, usize)> {
        let range = self.asset_range(asset)?;
        let stored = self.stored_of(&range.channel, range.incarnation)?;
        let inner = stored.read();
        let mut duration = 0u64;
        let mut count = 0usize;
        let mut pending = 0usize;
        for t in &inner.tracks {
            let Some((first, end)) = range.span(t) else {
                continue;
            };
            let (Some(a), Some(b)) = (t.index.get(first), t.index.get(end - 1)) else {
                continue;
            };
            let span = t.start_ms(b.info.start + b.info.duration) - t.start_ms(a.info.start);
            duration = duration.max(u64::try_from(span).unwrap_or(0));
            count += end - first;
            pending += t
                .index
                .range(first..end)
                .filter(|e| e.pending.is_some())
                .count();
        }
        Some((range.live(), duration, count, pending))
    }

    /// The channel an asset records (or recorded).
    pub fn asset_channel(&self, asset: &str) -> Option<String> {
        self.asset_range(asset).map(|r| r.channel)
    }

    /// The manifest name an asset is published under, once a program
    /// records into it.
    pub fn manifest_name(&self, asset: &str) -> Option<String> {
        self.asset_range(asset).map(|r| r.manifest_name)
    }

    /// A view of an asset for packagers: the live archive window while its
    /// program runs, everything it holds after; `None` before anything was
    /// recorded. Returns the view and the manifest name it is served under.
    pub fn view(&self, asset: &str, channels: &Channels) -> Option<(AssetView, String)> {
        let range = self.asset_range(asset)?;
        let stored = self.stored_of(&range.channel, range.incarnation)?;
        let hot = channels
            .get(&range.channel)
            .filter(|c| c.incarnation() == range.incarnation)
            .map(|c| c.snapshot());
        let inner = stored.read();
        let mut tracks = Vec::new();
        for t in &inner.tracks {
            let Some((first, end)) = range.span(t) else {
                continue;
            };
            tracks.push(ViewTrack {
                info: t.info.clone(),
                index: t.index.clone(),
                first,
                end,
            });
        }
        let live = range.live();
        let view = AssetView {
            info: PresentationInfo {
                state: if live {
                    PresentationState::Live
                } else {
                    PresentationState::Ended
                },
                fragment_duration_ms: range.fragment_ms,
                epoch_ms: range.epoch_ms.or_else(|| hot.as_ref()?.info().epoch_ms),
                window_ms: if live { range.window_ms } else { 0 },
            },
            tracks,
            hot,
            generation: inner.generation * 2 + u64::from(!live),
            channel: range.channel.clone(),
            incarnation: range.incarnation,
            objects: self.objects.clone(),
            resident: Mutex::default(),
            misses: Misses::default(),
        };
        Some((view, range.manifest_name))
    }

    /// A stored fragment of any incarnation of `channel` by its name across
    /// nodes (track, start, content checksum), read back if need be.
    pub async fn fragment_named(
        &self,
        channel: &str,
        track: u32,
        start: u64,
        checksum: u64,
    ) -> anyhow::Result<Option<Arc<Fragment>>> {
        let stored: Vec<Arc<Stored>> = self
            .stored
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|s| s.channel == channel)
            .cloned()
            .collect();
        for s in stored {
            let pending = {
                let inner = s.read();
                let Some(t) = inner.tracks.iter().find(|t| t.info.id == track) else {
                    continue;
                };
                let Ok(i) = t.index.binary_search_by_key(&start, |e| e.info.start) else {
                    continue;
                };
                if t.index[i].checksum != checksum {
                    continue;
                }
                t.index[i].pending.clone()
            };
            if let Some(f) = pending {
                return Ok(Some(f));
            }
            return Ok(self.objects.get_fragment(&s.key(track, start)).await?);
        }
        Ok(None)
    }

    /// How long (ms from now) the fragment of `channel` spanning
    /// `start_ms..end_ms` stays listed by some asset, the newest fragment of
    /// its track ending at `newest_end_ms`: the longest of the running
    /// programs' archive windows that reach it. `None` when a stopped asset
    /// keeps it (for as long as the asset lives), `Some(0)` when none
    /// reaches it.
    pub fn fragment_lifetime_ms(
        &self,
        channel: &str,
        start_ms: i64,
        end_ms: i64,
        newest_end_ms: i64,
    ) -> Option<i64> {
        let assets = self.assets.read().unwrap_or_else(|e| e.into_inner());
        let mut longest = 0i64;
        for r in assets.values().filter(|a| a.channel == channel) {
            if !r.covers(start_ms, end_ms, newest_end_ms) {
                continue;
            }
            if !r.live() {
                return None;
            }
            let window = i64::try_from(r.window_ms).unwrap_or(i64::MAX);
            longest = longest.max(end_ms.saturating_add(window) - newest_end_ms);
        }
        Some(longest.max(0))
    }

    /// The storage backend.
    pub fn objects(&self) -> &Arc<AssetStore> {
        &self.objects
    }
}

impl ChannelArchive {
    /// Running programs' asset ranges over the channel's current incarnation.
    fn live_ranges(&self, channel: &Channel) -> Vec<AssetRange> {
        let incarnation = channel.incarnation();
        self.archive
            .assets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|a| a.live() && a.channel == channel.name && a.incarnation == incarnation)
            .cloned()
            .collect()
    }

    fn set_track(tx: &mpsc::Sender<Job>, stored: &Arc<Stored>, info: Arc<TrackInfo>) {
        {
            let mut inner = stored.write();
            match inner.tracks.iter_mut().find(|t| t.info.id == info.id) {
                Some(t) if *t.info == *info => return,
                Some(t) => t.info = info.clone(),
                None => inner.tracks.push(StoredTrack {
                    info: info.clone(),
                    index: Arc::default(),
                }),
            }
            inner.generation += 1;
        }
        if tx
            .try_send(Job::Track {
                stored: stored.clone(),
                info,
            })
            .is_err()
        {
            tracing::error!(channel = %stored.channel, "archive queue full: track not stored");
        }
    }

    fn set_epoch(&self, ranges: &[AssetRange], epoch: i64) {
        let missing: Vec<String> = {
            let assets = self
                .archive
                .assets
                .read()
                .unwrap_or_else(|e| e.into_inner());
            assets
                .iter()
                .filter(|(_, a)| a.epoch_ms.is_none() && ranges.contains(a))
                .map(|(n, _)| n.clone())
                .collect()
        };
        for name in missing {
            if let Err(e) = self.archive.store.set_asset_epoch(&name, epoch) {
                tracing::error!(asset = %name, error = %e, "cannot store asset epoch");
            }
            if let Some(a) = self
                .archive
                .assets
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(&name)
            {
                a.epoch_ms = Some(epoch);
            }
        }
    }
}

impl Recorder for ChannelArchive {
    /// The stable id of (stream, adapter track) in `channel`.
    fn track_id(&self, channel: &str, stream: &str, adapter_track: u32, max: u32) -> Option<u32> {
        match self
            .archive
            .store
            .track_id(channel, stream, adapter_track, max)
        {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(channel, error = %e, "cannot store track id");
                None
            }
        }
    }

    /// A track was declared or re-declared: stored with the next fragment.
    fn on_track(&self, channel: &Channel, info: &TrackInfo) {
        let Some(stored) = self.archive.stored_of(&channel.name, channel.incarnation()) else {
            return;
        };
        Self::set_track(&self.tx, &stored, Arc::new(info.clone()));
    }

    /// A fragment entered the channel's timeline: recorded when a running
    /// program's range reaches it.
    fn on_fragment(&self, channel: &Channel, track: &Arc<TrackInfo>, entry: Entry) {
        let ranges = self.live_ranges(channel);
        if ranges.is_empty() {
            return;
        }
        let start_ms = ticks_to_ms(entry.info.start, track.timescale);
        if !ranges.iter().any(|r| start_ms >= r.from_ms) {
            return;
        }
        let stored = match self
            .archive
            .load_stored(&channel.name, channel.incarnation())
        {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(channel = %channel.name, error = %e, "cannot load stored index");
                return;
            }
        };
        if let Some(epoch) = channel.epoch_ms() {
            self.set_epoch(&ranges, epoch);
        }
        Self::set_track(&self.tx, &stored, track.clone());
        let info = {
            let mut inner = stored.write();
            let Some(t) = inner.tracks.iter_mut().find(|t| t.info.id == track.id) else {
                return;
            };
            // Never name a stored fragment twice: only after the newest.
            if let Some(last) = t.index.back()
                && entry.info.start < last.info.start + last.info.duration
            {
                return;
            }
            let mut info = entry.info;
            info.discontinuity_sequence = t
                .index
                .back()
                .map_or(0, |e| e.info.discontinuity_sequence)
                .saturating_add(u32::from(info.discontinuity));
            Arc::make_mut(&mut t.index).push_back(IndexEntry {
                info,
                checksum: entry.checksum,
                pending: Some(entry.fragment.clone()),
            });
            inner.generation += 1;
            info
        };
        let job = Job::Fragment {
            stored: stored.clone(),
            track: track.id,
            info,
            checksum: entry.checksum,
            fragment: entry.fragment,
        };
        if self.tx.try_send(job).is_err() {
            tracing::error!(channel = %channel.name, track = track.id, "archive queue full: fragment not recorded");
            crate::metrics::metrics().storage_failures.inc();
            let mut inner = stored.write();
            if let Some(t) = inner.tracks.iter_mut().find(|t| t.info.id == track.id) {
                Arc::make_mut(&mut t.index).pop_back();
            }
            inner.generation += 1;
        }
    }
}

#[derive(Debug)]
struct ViewTrack {
    info: Arc<TrackInfo>,
    index: Arc<VecDeque<IndexEntry>>,
    /// Index range visible through this view.
    first: usize,
    end: usize,
}

/// Fragments a packager asked for that were not at hand (the views that
/// read payloads on demand record them; delivery reads them and refills).
#[derive(Debug, Default)]
pub struct Misses(std::sync::Mutex<Vec<(u32, u64)>>);

impl Misses {
    /// Records that `(track, start)` was not at hand.
    pub fn push(&self, track: u32, start: u64) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((track, start));
    }

    /// The recorded misses, sorted and without repeats (cleared).
    pub fn take(&self) -> Vec<(u32, u64)> {
        let mut m = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        m.sort_unstable();
        m.dedup();
        m
    }
}

/// What packagers see of an asset: its stored index over the range, with
/// payloads from the channel's hot timeline, the fragments not yet written,
/// or fragments read back from storage. A payload not at hand is recorded
/// as a miss; delivery reads the misses and runs the packager again.
#[derive(Debug)]
pub struct AssetView {
    info: PresentationInfo,
    tracks: Vec<ViewTrack>,
    hot: Option<Snapshot>,
    generation: u64,
    channel: String,
    incarnation: u64,
    objects: Arc<AssetStore>,
    resident: Mutex<HashMap<(u32, u64), Arc<Fragment>>>,
    misses: Misses,
}

impl AssetView {
    /// The channel the asset recorded.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The channel incarnation the asset recorded.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The listed fragments of `track` starting at or after `from` (ticks),
    /// at most `limit`, with their content checksums.
    pub fn entries(&self, track: u32, from: u64, limit: usize) -> Vec<(FragmentInfo, u64)> {
        self.listed(track, from, limit)
            .map(|e| (e.info, e.checksum))
            .collect()
    }

    /// Up to `limit` entries of `track` inside the view starting at or after
    /// `from`.
    fn listed(&self, track: u32, from: u64, limit: usize) -> impl Iterator<Item = &IndexEntry> {
        let t = self.tracks.iter().find(|t| t.info.id == track);
        let range = t.map_or(0..0, |t| {
            let first = t
                .index
                .partition_point(|e| e.info.start < from)
                .clamp(t.first, t.end);
            first..first.saturating_add(limit).min(t.end)
        });
        t.into_iter()
            .flat_map(move |t| t.index.range(range.clone()))
    }

    /// The newest listed fragment of `track`.
    pub fn last(&self, track: u32) -> Option<FragmentInfo> {
        let t = self.tracks.iter().find(|t| t.info.id == track)?;
        t.index.get(t.end.checked_sub(1)?).map(|e| e.info)
    }

    /// Reads fragments the view missed from storage (single flight
    /// through the store's read cache).
    pub async fn fetch(&self, keys: Vec<(u32, u64)>) -> anyhow::Result<()> {
        for (track, start) in keys {
            let key = FragmentKey {
                channel: self.channel.clone(),
                incarnation: self.incarnation,
                track,
                start,
            };
            match self.objects.get_fragment(&key).await? {
                Some(f) => {
                    self.resident
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert((track, start), f);
                }
                None => anyhow::bail!("fragment {track}/{start} is not in storage"),
            }
        }
        Ok(())
    }

    /// Changes whenever what the view lists may have changed.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The payloads asked for that were not at hand (cleared).
    pub fn take_misses(&self) -> Vec<(u32, u64)> {
        self.misses.take()
    }

    fn fragment(&self, track: u32, start: u64) -> Option<Arc<Fragment>> {
        let t = self.tracks.iter().find(|t| t.info.id == track)?;
        let pos = t
            .index
            .binary_search_by_key(&start, |e| e.info.start)
            .ok()?;
        if !(t.first..t.end).contains(&pos) {
            return None;
        }
        if let Some(f) = &t.index[pos].pending {
            return Some(f.clone());
        }
        if let Some(f) = self.hot.as_ref().and_then(|h| h.fragment(track, start)) {
            return Some(f.clone());
        }
        if let Some(f) = self
            .resident
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(track, start))
        {
            return Some(f.clone());
        }
        self.misses.push(track, start);
        None
    }

    /// Payload bytes of a fragment, by reference, if the range is valid and
    /// the fragment at hand.
    pub fn data(&self, track: u32, start: u64, offset: u32, length: u32) -> Option<Bytes> {
        self.fragment(track, start)?.payload(offset, length)
    }
}

impl View for AssetView {
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

/// A track description as stored (JSON; the codec data in hex).
fn track_to_json(t: &TrackInfo) -> String {
    track_json(t).to_string()
}

/// A track description as JSON (everything but the id; the codec data in
/// hex), as stored and as the upstream interface sends it.
pub(crate) fn track_json(t: &TrackInfo) -> serde_json::Value {
    let kind = match t.kind {
        TrackKind::Video => "video",
        TrackKind::Audio => "audio",
        TrackKind::Subtitle => "subtitle",
        TrackKind::Data => "data",
    };
    let hex: String = t.codec_private.iter().map(|b| format!("{b:02x}")).collect();
    serde_json::json!({
        "kind": kind,
        "fourcc": t.fourcc,
        "codec": t.codec,
        "timescale": t.timescale,
        "codec_private": hex,
        "stream": t.stream,
        "bitrate": t.bitrate,
        "language": t.language,
        "width": t.width,
        "height": t.height,
        "sample_rate": t.sample_rate,
        "channels": t.channels,
    })
}

fn track_from_json(id: u32, json: &str) -> Option<TrackInfo> {
    track_from_value(id, &serde_json::from_str(json).ok()?)
}

/// A track description from its [`track_json`] form (extra keys ignored).
pub(crate) fn track_from_value(id: u32, v: &serde_json::Value) -> Option<TrackInfo> {
    let s = |k: &str| v.get(k)?.as_str().map(str::to_owned);
    let n = |k: &str| -> Option<u32> { u32::try_from(v.get(k)?.as_u64()?).ok() };
    let kind = match v.get("kind")?.as_str()? {
        "video" => TrackKind::Video,
        "audio" => TrackKind::Audio,
        "subtitle" => TrackKind::Subtitle,
        _ => TrackKind::Data,
    };
    let hex = s("codec_private")?;
    let codec_private = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    let mut t = TrackInfo::new(id, kind, n("timescale")?);
    t.fourcc = s("fourcc")?;
    t.codec = s("codec")?;
    t.codec_private = codec_private;
    t.stream = s("stream")?;
    t.bitrate = n("bitrate")?;
    t.language = s("language")?;
    t.width = n("width")?;
    t.height = n("height")?;
    t.sample_rate = n("sample_rate")?;
    t.channels = u16::try_from(n("channels")?).ok()?;
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_round_trip_through_json() {
        let mut t = TrackInfo::new(3, TrackKind::Audio, 48_000);
        t.fourcc = "mp4a".into();
        t.codec = "mp4a.40.2".into();
        t.codec_private = vec![0x11, 0x90, 0xff];
        t.stream = "main".into();
        t.bitrate = 128_000;
        t.language = "fr".into();
        t.sample_rate = 48_000;
        t.channels = 2;
        assert_eq!(track_from_json(3, &track_to_json(&t)), Some(t));
        assert_eq!(track_from_json(3, "{}"), None);
        assert_eq!(track_from_json(3, "not json"), None);
    }

    /// A metadata store and local asset storage in a fresh directory.
    fn local() -> anyhow::Result<(tempfile::TempDir, Arc<Store>, Arc<AssetStore>)> {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(Store::open(dir.path())?);
        let objects = Arc::new(AssetStore::open(
            &crate::storage::StorageConfig::default(),
            dir.path(),
        )?);
        Ok((dir, store, objects))
    }

    fn fragment(start: u64, discontinuity: bool) -> Fragment {
        Fragment {
            start,
            duration: 2000,
            samples: vec![SampleEntry {
                duration: 2000,
                size: 3,
                composition_offset: 0,
                keyframe: true,
            }],
            data: Bytes::from_static(b"abc"),
            discontinuity,
        }
    }

    #[tokio::test]
    async fn a_restart_reconciles_storage_with_the_index() -> anyhow::Result<()> {
        let (dir, store, objects) = local()?;
        let key = |start| FragmentKey {
            channel: "ch1".into(),
            incarnation: 5,
            track: 1,
            start,
        };
        let info = TrackInfo::new(1, TrackKind::Video, 1000);
        store.put_stored_track("ch1", 5, 1, &track_to_json(&info))?;
        // Indexed and written: 0 and 2000. Written, not indexed (a crash
        // before the row): 4000 (whole, adopted) and 6000 (torn: deleted).
        // Not indexed, older than the index end (an interrupted trim): 1000.
        for start in [0, 2000, 4000] {
            objects
                .put_fragment(&key(start), &fragment(start, start == 4000))
                .await?;
        }
        for start in [0, 2000] {
            let f = fragment(start, false);
            store.put_stored_fragment(
                "ch1",
                5,
                &StoredFragment {
                    track: 1,
                    checksum: crate::storage::checksum(&f),
                    info: FragmentInfo {
                        start,
                        duration: f.duration,
                        sample_count: 1,
                        size: 3,
                        discontinuity: false,
                        discontinuity_sequence: 0,
                    },
                },
            )?;
        }
        let bad = dir.path().join("assets/ch/ch1/0000000000000005/t/1/f");
        std::fs::write(bad.join(format!("{:020}", 6000)), b"SLF1torn")?;
        std::fs::copy(
            bad.join(format!("{:020}", 0)),
            bad.join(format!("{:020}", 1000)),
        )?;
        store.insert_asset("a", 0)?;
        store.insert_channel(&crate::store::ChannelRecord {
            name: "ch1".into(),
            key: "k".into(),
            input_allow: Vec::new(),
            preview_allow: Vec::new(),
            fragment_ms: 2000,
            window_ms: 120_000,
            state: "running".into(),
            created_ms: 0,
            incarnation: 5,
            epoch_ms: None,
        })?;
        store.insert_program(&crate::store::ProgramRecord {
            channel: "ch1".into(),
            name: "p".into(),
            asset: "a".into(),
            manifest_name: "p".into(),
            archive_window_ms: 300_000,
            state: crate::store::ProgramState::Created,
            created_ms: 0,
            started_ms: None,
            stopped_ms: None,
        })?;
        store.start_program(
            "ch1",
            "p",
            0,
            &crate::store::RecordingStart {
                incarnation: 5,
                fragment_ms: 2000,
                from_ms: 0,
                epoch_ms: None,
            },
        )?;
        let archive = Archive::open(store.clone(), objects.clone()).await?;
        assert_eq!(
            objects.list_fragments("ch1", 5).await?,
            vec![(1, 0), (1, 2000), (1, 4000)]
        );
        let indexed: Vec<(u64, u32)> = store
            .stored_fragments("ch1", 5)?
            .iter()
            .map(|f| (f.info.start, f.info.discontinuity_sequence))
            .collect();
        assert_eq!(indexed, vec![(0, 0), (2000, 0), (4000, 1)]);
        let (live, duration, count, pending) = archive.asset_summary("a").unwrap_or_default();
        assert_eq!((live, duration, count, pending), (true, 6000, 3, 0));
        Ok(())
    }

    #[tokio::test]
    async fn trimming_keeps_what_any_range_reaches() -> anyhow::Result<()> {
        let (_dir, store, objects) = local()?;
        let archive = Archive::open(store, objects).await?;
        let stored = archive.load_stored("ch1", 9)?;
        {
            let mut inner = stored.write();
            let mut index = VecDeque::new();
            for i in 0..50u64 {
                index.push_back(IndexEntry {
                    checksum: 0,
                    info: FragmentInfo {
                        start: i * 2000,
                        duration: 2000,
                        sample_count: 1,
                        size: 3,
                        discontinuity: false,
                        discontinuity_sequence: 0,
                    },
                    pending: None,
                });
            }
            inner.tracks.push(StoredTrack {
                info: Arc::new(TrackInfo::new(1, TrackKind::Video, 1000)),
                index: Arc::new(index),
            });
        }
        let range = |from_ms, to_ms, window_ms| AssetRange {
            channel: "ch1".into(),
            manifest_name: "m".into(),
            window_ms,
            incarnation: 9,
            fragment_ms: 2000,
            from_ms,
            to_ms,
            epoch_ms: None,
        };
        let starts = |s: &Stored| -> Vec<u64> {
            s.read().tracks[0]
                .index
                .iter()
                .map(|e| e.info.start / 1000)
                .collect()
        };
        {
            let mut assets = archive.assets.write().unwrap_or_else(|e| e.into_inner());
            assets.insert("stopped".into(), range(0, Some(20_000), 300_000));
            assets.insert("live".into(), range(40_000, None, 300_000));
        }
        archive.trim(&stored).await;
        let kept: Vec<u64> = (0..20).step_by(2).chain((40..100).step_by(2)).collect();
        assert_eq!(starts(&stored), kept);
        // The live window shrinks to 10 s: it keeps fragments ending at or
        // after 90 s; the stopped asset keeps its block.
        archive
            .assets
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert("live".into(), range(40_000, None, 10_000));
        archive.trim(&stored).await;
        let kept: Vec<u64> = (0..20).step_by(2).chain((88..100).step_by(2)).collect();
        assert_eq!(starts(&stored), kept);
        // Views see one interval each.
        let t = stored.read().tracks[0].clone();
        assert_eq!(range(0, Some(20_000), 1).span(&t), Some((0, 10)));
        assert_eq!(range(40_000, None, 10_000).span(&t), Some((10, 16)));
        assert_eq!(range(20_000, Some(30_000), 1).span(&t), None);
        Ok(())
    }

    #[test]
    fn ranges_cover_the_live_window_or_the_stopped_range() {
        let mut r = AssetRange {
            channel: "c".into(),
            manifest_name: "m".into(),
            window_ms: 300_000,
            incarnation: 1,
            fragment_ms: 2000,
            from_ms: 10_000,
            to_ms: None,
            epoch_ms: None,
        };
        // Live: from the start, while the fragment ends inside the window.
        assert!(!r.covers(8_000, 10_000, 20_000));
        assert!(r.covers(10_000, 12_000, 20_000));
        assert!(r.covers(10_000, 12_000, 312_000));
        assert!(!r.covers(10_000, 12_000, 312_001));
        r.to_ms = Some(20_000);
        assert!(r.covers(18_000, 20_000, 1_000_000));
        assert!(!r.covers(20_000, 22_000, 1_000_000));
    }
}
