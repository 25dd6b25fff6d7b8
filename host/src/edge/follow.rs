//! A presentation an edge follows: its merged timeline, and one follower
//! task per upstream holding one blocking timeline request at a time.
//!
//! ```text
//!  follower(u):  page ?from=0 (… next)  ─▶ merge ─▶ ?after=cut ─▶ merge ─▶ ?after=cut …
//!                503 (nothing new in 3 fragments): ask again
//!                404: not there (yet); error: back off (the upstream's health)
//!  merge:        first fragment per (track, start) wins; one overlapping a
//!                listed one is dropped; each track is trimmed to the
//!                newest window start an upstream reported ("first")
//! ```

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Deserialize;
use sluice_sdk::plugin::{
    Fragment as FragmentInfo, PresentationInfo, PresentationState, TrackInfo,
};
use tokio::sync::watch;

use super::{EdgeCore, FragKey, PresKey};
use crate::storage::Fragment;

/// Largest timeline document read from an upstream.
const MAX_DOCUMENT: usize = 32 << 20;

/// Most tracks a presentation may have at the edge.
const MAX_TRACKS: usize = 64;

/// Most preview allow list entries a channel document may carry.
const MAX_ALLOW: usize = 1024;

/// One listed fragment: its facts, content checksum and which upstreams
/// listed it (bit = upstream position).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The fragment.
    pub info: FragmentInfo,
    /// xxh3-64 of its object (part of its upstream name).
    pub sum: u64,
    /// Upstreams that listed it.
    pub from: u64,
}

/// The merged state.
#[derive(Debug, Clone)]
pub struct State {
    /// Channel the fragments are named under.
    pub channel: String,
    /// Presentation facts (the newest an upstream sent).
    pub info: PresentationInfo,
    /// Tracks in upstream order.
    pub tracks: Vec<TrackInfo>,
    /// Listed fragments per track (same index as `tracks`).
    pub lists: Vec<Arc<Vec<Entry>>>,
    /// Changes with every change of what is listed.
    pub generation: u64,
    /// Stable for one recording (channel, epoch, tracks): part of the
    /// response cache key, so a re-created presentation of the same name
    /// never hits the old one's immutable responses.
    pub identity: u64,
    /// A channel's preview allow list (CIDRs; empty: anyone), as its
    /// upstream's newest timeline document gave it.
    pub preview_allow: Vec<ipnet::IpNet>,
}

/// What the followers found so far.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    /// A timeline was merged.
    pub synced: bool,
    /// Upstreams that answered 404.
    pub missing: u64,
    /// Upstreams that failed (bit set), with the last error.
    pub failed: u64,
    /// The last error.
    pub error: String,
}

/// A followed presentation.
pub struct Followed {
    /// What it is.
    pub key: PresKey,
    state: RwLock<Option<State>>,
    /// The generation, for live-edge waits.
    pub changed: watch::Sender<u64>,
    /// Readiness, for the first request.
    pub ready: watch::Sender<Readiness>,
    last_used_ms: AtomicI64,
    stopped: AtomicBool,
    prefetched: Mutex<()>,
}

impl Followed {
    /// A presentation nobody follows yet.
    pub fn new(key: PresKey) -> Self {
        Followed {
            key,
            state: RwLock::new(None),
            changed: watch::channel(0).0,
            ready: watch::channel(Readiness::default()).0,
            last_used_ms: AtomicI64::new(crate::channel::now_ms()),
            stopped: AtomicBool::new(false),
            prefetched: Mutex::new(()),
        }
    }

    /// A copy of the merged state (fragment lists shared).
    pub fn state(&self) -> Option<State> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Marks it used now.
    pub fn touch(&self) {
        self.last_used_ms
            .store(crate::channel::now_ms(), Ordering::Relaxed);
    }

    /// Milliseconds since the last use.
    pub fn idle_ms(&self) -> i64 {
        crate::channel::now_ms() - self.last_used_ms.load(Ordering::Relaxed)
    }

    /// Waits (at most one and a half fragments) for the timeline to list
    /// more than generation `seen`; returns whether it did.
    pub async fn wait_newer(&self, seen: u64) -> bool {
        let fragment_ms = self
            .state()
            .map_or(2000, |s| u64::from(s.info.fragment_duration_ms));
        let mut rx = self.changed.subscribe();
        tokio::time::timeout(
            Duration::from_millis(fragment_ms * 3 / 2),
            rx.wait_for(|g| *g > seen),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }

    /// Tells the followers to end.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    fn ended(&self) -> bool {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|s| s.info.state == PresentationState::Ended)
    }

    /// Lists `fragment`, pushed by upstream `up` as `key`, if this is a
    /// live presentation of its channel whose listing of the track it
    /// directly continues: then nothing can lie between and its
    /// discontinuity sequence is the previous one's. Anything else (a
    /// discontinuity, a gap, a skipped push before it) waits for the
    /// timeline answer. Returns whether it listed it.
    ///
    /// An asset's listing may briefly hold a fragment cut as its program
    /// stopped; the final read of the ended asset replaces it.
    pub fn list_pushed(&self, key: &FragKey, fragment: &Fragment, up: usize) -> bool {
        if fragment.discontinuity || self.stopped() {
            return false;
        }
        let mut guard = self.state.write().unwrap_or_else(|e| e.into_inner());
        let Some(state) = guard.as_mut() else {
            return false;
        };
        if state.channel != key.channel || state.info.state != PresentationState::Live {
            return false;
        }
        let Some(i) = state.tracks.iter().position(|t| t.id == key.track) else {
            return false;
        };
        let list = &state.lists[i];
        let Some(last) = list.last() else {
            return false;
        };
        if last.info.start.saturating_add(last.info.duration) != key.start {
            return false;
        }
        let entry = Entry {
            info: FragmentInfo {
                start: key.start,
                duration: fragment.duration,
                sample_count: u32::try_from(fragment.samples.len()).unwrap_or(u32::MAX),
                size: u32::try_from(fragment.data.len()).unwrap_or(u32::MAX),
                discontinuity: false,
                discontinuity_sequence: last.info.discontinuity_sequence,
            },
            sum: key.sum,
            from: upstream_bit(up),
        };
        if entry.info.duration == 0 {
            return false;
        }
        Arc::make_mut(&mut state.lists[i]).push(entry);
        state.generation += 1;
        self.changed.send_replace(state.generation);
        true
    }

    /// Merges timeline documents from upstream `up`; returns the entries
    /// they added (track id, entry).
    ///
    /// An asset that ended is frozen. With `replace` (an ended asset read
    /// whole, every page), the documents' listing replaces what is held
    /// and the asset ends; without, an "ended" document only adds what it
    /// lists, so the end shows only once the whole listing is in.
    fn merge(&self, docs: &[Doc], up: usize, replace: bool) -> Result<Vec<(u32, Entry)>, String> {
        let bit = upstream_bit(up);
        let asset = !matches!(self.key, PresKey::Channel(_));
        let mut parsed = Vec::with_capacity(docs.len());
        for doc in docs {
            let info = doc.info()?;
            let mut tracks = Vec::with_capacity(doc.tracks.len());
            for t in &doc.tracks {
                tracks.push(parse_track(t)?);
            }
            parsed.push((doc, info, tracks));
        }
        let Some((first_doc, first_info, first_tracks)) = parsed.first() else {
            return Ok(Vec::new());
        };
        let mut guard = self.state.write().unwrap_or_else(|e| e.into_inner());
        let state = guard.get_or_insert_with(|| {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            h.update(first_doc.channel.as_bytes());
            h.update(&first_info.epoch_ms.unwrap_or(0).to_le_bytes());
            for (t, _, _) in first_tracks {
                h.update(crate::archive::track_json(t).to_string().as_bytes());
            }
            let mut info = first_info.clone();
            info.state = PresentationState::Live;
            State {
                channel: first_doc.channel.clone(),
                info,
                tracks: Vec::new(),
                lists: Vec::new(),
                generation: 0,
                identity: h.digest(),
                preview_allow: Vec::new(),
            }
        });
        if asset && state.info.state == PresentationState::Ended {
            return Ok(Vec::new());
        }
        let mut changed = false;
        if replace {
            for list in &mut state.lists {
                if !list.is_empty() {
                    *list = Arc::new(Vec::new());
                    changed = true;
                }
            }
        }
        let mut added = Vec::new();
        for (doc, mut info, tracks) in parsed {
            if doc.channel != state.channel {
                return Err(format!(
                    "upstream names channel {:?}, another upstream {:?}",
                    doc.channel, state.channel
                ));
            }
            if asset && !replace {
                info.state = PresentationState::Live;
            }
            if state.info != info {
                state.info = info;
                changed = true;
            }
            let allow = doc.preview_allow()?;
            if state.preview_allow != allow {
                state.preview_allow = allow;
                changed = true;
            }
            for (track, first, fragments) in tracks {
                let i = match state.tracks.iter().position(|t| t.id == track.id) {
                    Some(i) => i,
                    None => {
                        if state.tracks.len() >= MAX_TRACKS {
                            return Err(format!("more than {MAX_TRACKS} tracks"));
                        }
                        state.tracks.push(track.clone());
                        state.lists.push(Arc::new(Vec::new()));
                        changed = true;
                        state.tracks.len() - 1
                    }
                };
                let list = Arc::make_mut(&mut state.lists[i]);
                for (info, sum) in fragments {
                    let end = info.start.saturating_add(info.duration);
                    let pos = list.partition_point(|e| e.info.start < info.start);
                    if let Some(e) = list.get_mut(pos)
                        && e.info.start == info.start
                    {
                        e.from |= bit;
                        continue;
                    }
                    let fits_before = pos == 0 || {
                        let p = &list[pos - 1].info;
                        p.start.saturating_add(p.duration) <= info.start
                    };
                    let fits_after = list.get(pos).is_none_or(|n| end <= n.info.start);
                    if !(fits_before && fits_after) {
                        continue;
                    }
                    let e = Entry {
                        info,
                        sum,
                        from: bit,
                    };
                    list.insert(pos, e);
                    added.push((track.id, e));
                    changed = true;
                }
                if let Some(first) = first {
                    let cut = list.partition_point(|e| e.info.start < first);
                    if cut > 0 {
                        list.drain(..cut);
                        changed = true;
                    }
                }
            }
        }
        if changed {
            state.generation += 1;
            self.changed.send_replace(state.generation);
        }
        Ok(added)
    }
}

/// The bit of upstream position `up` in [`Entry::from`] (none past 63).
fn upstream_bit(up: usize) -> u64 {
    1u64.checked_shl(u32::try_from(up).unwrap_or(64))
        .unwrap_or(0)
}

/// A timeline document of the upstream interface.
#[derive(Debug, Deserialize)]
pub struct Doc {
    v: u32,
    channel: String,
    info: DocInfo,
    tracks: Vec<serde_json::Value>,
    cut_ms: Option<i64>,
    next: Option<i64>,
    /// A channel's preview allow list (absent from asset documents).
    #[serde(default)]
    preview_allow: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct DocInfo {
    state: String,
    fragment_ms: u32,
    epoch_ms: Option<i64>,
    window_ms: u64,
}

impl Doc {
    /// Parses (and bounds) a document.
    pub fn parse(body: &[u8]) -> Result<Doc, String> {
        let doc: Doc =
            serde_json::from_slice(body).map_err(|e| format!("bad timeline document: {e}"))?;
        if doc.v != 1 {
            return Err(format!("timeline document version {} (want 1)", doc.v));
        }
        if !crate::names::valid_name(&doc.channel) {
            return Err("timeline document names a bad channel".into());
        }
        if doc.tracks.len() > MAX_TRACKS {
            return Err(format!("more than {MAX_TRACKS} tracks"));
        }
        if doc.preview_allow.len() > MAX_ALLOW {
            return Err(format!("more than {MAX_ALLOW} preview allow entries"));
        }
        Ok(doc)
    }

    fn preview_allow(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.preview_allow
            .iter()
            .map(|n| {
                n.parse::<ipnet::IpNet>()
                    .map_err(|_| format!("bad preview allow entry {n:?}"))
            })
            .collect()
    }

    fn info(&self) -> Result<PresentationInfo, String> {
        let state = match self.info.state.as_str() {
            "live" => PresentationState::Live,
            "ended" => PresentationState::Ended,
            s => return Err(format!("unknown presentation state {s:?}")),
        };
        if self.info.fragment_ms == 0 {
            return Err("fragment_ms is 0".into());
        }
        Ok(PresentationInfo {
            state,
            fragment_duration_ms: self.info.fragment_ms,
            epoch_ms: self.info.epoch_ms,
            window_ms: self.info.window_ms,
        })
    }
}

type ParsedTrack = (TrackInfo, Option<u64>, Vec<(FragmentInfo, u64)>);

fn parse_track(v: &serde_json::Value) -> Result<ParsedTrack, String> {
    let id = v
        .get("id")
        .and_then(serde_json::Value::as_u64)
        .and_then(|i| u32::try_from(i).ok())
        .ok_or("track without an id")?;
    let track = crate::archive::track_from_value(id, v).ok_or("bad track description")?;
    let first = v.get("first").and_then(serde_json::Value::as_u64);
    type Tuple = (u64, u64, u32, u32, u8, u32, String);
    let tuples: Vec<Tuple> = match v.get("fragments") {
        Some(f) => {
            serde_json::from_value(f.clone()).map_err(|e| format!("bad fragment list: {e}"))?
        }
        None => Vec::new(),
    };
    let mut fragments = Vec::with_capacity(tuples.len());
    for (start, duration, sample_count, size, disc, disc_seq, sum) in tuples {
        if sum.len() != 16 || duration == 0 {
            return Err("bad fragment entry".into());
        }
        let sum = u64::from_str_radix(&sum, 16).map_err(|_| "bad fragment checksum")?;
        fragments.push((
            FragmentInfo {
                start,
                duration,
                sample_count,
                size,
                discontinuity: disc != 0,
                discontinuity_sequence: disc_seq,
            },
            sum,
        ));
    }
    Ok((track, first, fragments))
}

/// The upstream path of a presentation's timeline.
fn timeline_path(key: &PresKey) -> String {
    match key {
        PresKey::Channel(c) => format!("/_tier/v1/channels/{c}/timeline"),
        PresKey::Asset(a) => format!("/_tier/v1/assets/{a}/timeline"),
    }
}

/// Follows `pres` on upstream `up` until it is stopped, goes idle, or (an
/// asset) ended and was read whole.
pub async fn follow(core: Arc<EdgeCore>, pres: Arc<Followed>, up: usize) {
    let Some(upstream) = core.upstreams.all().get(up).cloned() else {
        return;
    };
    let base = timeline_path(&pres.key);
    let asset = matches!(pres.key, PresKey::Asset(_));
    let fetch_timeout = Duration::from_millis(core.config.fetch_timeout_ms);
    let idle_ms = i64::try_from(core.config.idle_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    let mut shutdown = core.shutdown.clone();
    // This upstream's cut, once its timeline was read whole.
    let mut cut: Option<i64> = None;
    let mut from: i64 = 0;
    // Once an asset ended, it is read whole once more (every page), and
    // that listing replaces what was merged while it was live: a live
    // listing may hold a last fragment the finished asset leaves out.
    let mut final_pages: Option<Vec<Doc>> = None;
    // A quic:// upstream pushes the channel's new fragments while held.
    let mut subscription = None;
    loop {
        if pres.stopped()
            || pres.idle_ms() > idle_ms
            || *shutdown.borrow()
            || (asset && pres.ended())
        {
            break;
        }
        if let Some(until) = upstream.down_until() {
            let until = tokio::time::Instant::from_std(until);
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = shutdown.changed() => break,
            }
        }
        let fragment_ms = pres
            .state()
            .map_or(2000, |s| u64::from(s.info.fragment_duration_ms));
        let (path, timeout) = match cut {
            None => (format!("{base}?from={from}"), fetch_timeout),
            Some(c) => (
                format!("{base}?after={c}"),
                fetch_timeout + Duration::from_millis(3 * fragment_ms),
            ),
        };
        let answer = tokio::select! {
            a = core.upstreams.get(&upstream, &path, timeout, MAX_DOCUMENT) => a,
            _ = shutdown.changed() => break,
        };
        let failed = |e: String| {
            upstream.failed(&e);
            pres.ready.send_modify(|r| {
                r.failed |= 1 << up.min(63);
                r.error = e;
            });
        };
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                failed(format!("{}: {e}", upstream.url));
                continue;
            }
        };
        match answer.status.as_u16() {
            200 => {}
            503 if cut.is_some() => {
                // Nothing new within the hold: ask again.
                upstream.succeeded();
                continue;
            }
            404 => {
                upstream.succeeded();
                pres.ready.send_modify(|r| r.missing |= 1 << up.min(63));
                (cut, from, final_pages) = (None, 0, None);
                sleep_or_stop(&mut shutdown, Duration::from_millis(1000)).await;
                continue;
            }
            status => {
                failed(format!("{}: status {status}", upstream.url));
                continue;
            }
        }
        let doc = match Doc::parse(&answer.body) {
            Ok(d) => d,
            Err(e) => {
                failed(format!("{}: {e}", upstream.url));
                (cut, from, final_pages) = (None, 0, None);
                continue;
            }
        };
        upstream.succeeded();
        let (next, doc_cut, ended) = (doc.next, doc.cut_ms, doc.info.state == "ended");
        if asset && ended && final_pages.is_none() {
            if cut.is_some() || from != 0 {
                // Ended since the last answer: read it whole from the start.
                (cut, from, final_pages) = (None, 0, Some(Vec::new()));
                continue;
            }
            // The first page of a read is already the final read's.
            final_pages = Some(Vec::new());
        }
        // The final read of an ended asset: collect every page, then
        // replace at once (or, if a page was stale, read again shortly).
        if let Some(pages) = final_pages.as_mut() {
            pages.push(doc);
            if let Some(n) = next.filter(|n| *n > from) {
                from = n;
                continue;
            }
            let pages = final_pages.take().unwrap_or_default();
            if pages.iter().all(|d| d.info.state == "ended") {
                match pres.merge(&pages, up, true) {
                    Ok(_) => {
                        tracing::debug!(upstream = %upstream.url, %path, pages = pages.len(), "ended asset read whole");
                        pres.ready.send_modify(|r| {
                            r.synced = true;
                            r.failed &= !(1 << up.min(63));
                        });
                        break;
                    }
                    Err(e) => failed(format!("{}: {e}", upstream.url)),
                }
            } else {
                sleep_or_stop(&mut shutdown, Duration::from_millis(1000)).await;
            }
            (cut, from, final_pages) = (None, 0, Some(Vec::new()));
            continue;
        }
        let added = match pres.merge(std::slice::from_ref(&doc), up, false) {
            Ok(a) => a,
            Err(e) => {
                failed(format!("{}: {e}", upstream.url));
                (cut, from) = (None, 0);
                continue;
            }
        };
        tracing::debug!(upstream = %upstream.url, %path, ended, added = added.len(), "timeline merged");
        match (cut, next) {
            // More pages of the first read.
            (None, Some(n)) if n > from => {
                from = n;
                continue;
            }
            (None, _) => {
                cut = Some(doc_cut.unwrap_or(0));
                from = 0;
                pres.ready.send_modify(|r| {
                    r.synced = true;
                    r.failed &= !(1 << up.min(63));
                });
                // Before viewers ask: the newest fragment of each track.
                prefetch_newest(&core, &pres);
                if let (None, Some(s)) = (&subscription, pres.state()) {
                    subscription = core.upstreams.subscribe(up, &s.channel, shutdown.clone());
                }
            }
            (Some(_), _) => {
                if let Some(c) = doc_cut {
                    cut = Some(c);
                }
                prefetch(&core, &pres, &added);
            }
        }
        if ended {
            // A channel whose encoders stopped may start again.
            sleep_or_stop(&mut shutdown, Duration::from_millis(fragment_ms)).await;
        }
    }
}

async fn sleep_or_stop(shutdown: &mut watch::Receiver<bool>, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shutdown.changed() => {}
    }
}

/// Fetches the fragments a live timeline just listed (once: the flights
/// and the cache see to that), before viewers ask.
fn prefetch(core: &Arc<EdgeCore>, pres: &Followed, added: &[(u32, Entry)]) {
    let Some(state) = pres.state() else { return };
    if state.info.state != PresentationState::Live {
        return;
    }
    let _one_at_a_time = pres.prefetched.lock();
    for (track, e) in added {
        let core = core.clone();
        let channel = state.channel.clone();
        let (track, e) = (*track, *e);
        tokio::spawn(async move {
            match core.fragment(&channel, track, e).await {
                Ok(_) => {
                    tracing::debug!(target: "sluice::timing", %channel, track, start = e.info.start, "fragment servable");
                }
                Err(err) => {
                    tracing::debug!(%channel, track, start = e.info.start, error = %err, "prefetch failed");
                }
            }
        });
    }
}

fn prefetch_newest(core: &Arc<EdgeCore>, pres: &Followed) {
    let Some(state) = pres.state() else { return };
    let newest: Vec<(u32, Entry)> = state
        .tracks
        .iter()
        .zip(&state.lists)
        .filter_map(|(t, l)| Some((t.id, *l.last()?)))
        .collect();
    prefetch(core, pres, &newest);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(first: u64, frags: &[(u64, &str)]) -> Doc {
        let fragments: Vec<serde_json::Value> = frags
            .iter()
            .map(|(s, sum)| json!([s, 2000, 50, 1000, 0, 0, sum]))
            .collect();
        let v = json!({
            "v": 1, "channel": "ch1",
            "info": {"state": "live", "fragment_ms": 2000, "epoch_ms": 0, "window_ms": 0},
            "tracks": [{
                "id": 1, "kind": "video", "fourcc": "avc1", "codec": "avc1.64001f",
                "timescale": 1000, "codec_private": "01", "stream": "main", "bitrate": 0,
                "language": "und", "width": 640, "height": 360, "sample_rate": 0,
                "channels": 0, "first": first, "fragments": fragments
            }],
            "cut_ms": null, "next": null
        });
        Doc::parse(v.to_string().as_bytes()).expect("valid document")
    }

    #[test]
    fn first_fragment_per_start_wins_and_windows_trim() {
        let f = Followed::new(PresKey::Channel("ch1".into()));
        let a = "00000000000000aa";
        let b = "00000000000000bb";
        let added = f
            .merge(&[doc(0, &[(0, a), (2000, a)])], 0, false)
            .expect("merges");
        assert_eq!(added.len(), 2);
        // The second upstream has the same two (other bytes for one: the
        // first listed wins) and one more; a fragment overlapping a listed
        // one is dropped.
        let added = f
            .merge(
                &[doc(0, &[(0, b), (2000, a), (3000, b), (4000, b)])],
                1,
                false,
            )
            .expect("merges");
        assert_eq!(
            added.iter().map(|(_, e)| e.info.start).collect::<Vec<_>>(),
            [4000]
        );
        let s = f.state().expect("state");
        let list = &s.lists[0];
        assert_eq!(
            list.iter().map(|e| e.info.start).collect::<Vec<_>>(),
            [0, 2000, 4000]
        );
        assert_eq!(list[0].sum, 0xaa);
        assert_eq!(list[0].from, 0b11);
        assert_eq!(list[2].from, 0b10);
        // A window start trims.
        f.merge(&[doc(2000, &[])], 0, false).expect("merges");
        let s = f.state().expect("state");
        assert_eq!(
            s.lists[0].iter().map(|e| e.info.start).collect::<Vec<_>>(),
            [2000, 4000]
        );
        assert!(s.generation >= 3);
        // A replacing listing of an ended presentation drops the rest; a
        // live listing after that is stale and changes nothing.
        let f = Followed::new(PresKey::Asset("show".into()));
        f.merge(&[doc(0, &[(0, a), (2000, a)])], 0, false)
            .expect("merges");
        let ended = || {
            let mut d = doc(0, &[(2000, a)]);
            d.info.state = "ended".into();
            d
        };
        // An ended document alone does not end it: the end shows once the
        // whole listing is in.
        f.merge(&[ended()], 1, false).expect("merges");
        let live = f.state().expect("state");
        assert_eq!(live.info.state, PresentationState::Live);
        assert_eq!(live.lists[0].len(), 2);
        f.merge(&[ended()], 1, true).expect("merges");
        f.merge(&[doc(0, &[(0, a), (4000, a)])], 0, false)
            .expect("merges");
        let s = f.state().expect("state");
        assert_eq!(
            s.lists[0].iter().map(|e| e.info.start).collect::<Vec<_>>(),
            [2000]
        );
        assert_eq!(s.info.state, PresentationState::Ended);
    }

    #[test]
    fn a_push_is_listed_only_where_it_continues_a_live_listing() {
        let f = Followed::new(PresKey::Channel("ch1".into()));
        let pushed = |start: u64, discontinuity: bool| {
            let fragment = Fragment {
                start,
                duration: 2000,
                discontinuity,
                samples: vec![
                    sluice_sdk::plugin::SampleEntry {
                        duration: 1000,
                        size: 2,
                        composition_offset: 0,
                        keyframe: true,
                    };
                    2
                ],
                data: bytes::Bytes::from_static(b"abcd"),
            };
            let key = FragKey {
                channel: "ch1".into(),
                track: 1,
                start,
                sum: 0xcc,
            };
            (key, fragment)
        };
        // Nothing listed yet: nothing to continue.
        let (k, p) = pushed(0, false);
        assert!(!f.list_pushed(&k, &p, 1));
        f.merge(&[doc(0, &[(0, "00000000000000aa")])], 0, false)
            .expect("merges");
        let g = f.state().expect("state").generation;
        // A gap, a discontinuity, another channel, an unknown track: no.
        let (k, p) = pushed(4000, false);
        assert!(!f.list_pushed(&k, &p, 1));
        let (k, p) = pushed(2000, true);
        assert!(!f.list_pushed(&k, &p, 1));
        let (mut k, p) = pushed(2000, false);
        k.channel = "ch2".into();
        assert!(!f.list_pushed(&k, &p, 1));
        k.channel = "ch1".into();
        k.track = 2;
        assert!(!f.list_pushed(&k, &p, 1));
        assert_eq!(f.state().expect("state").generation, g);
        // The next one: listed from the object's own facts.
        k.track = 1;
        assert!(f.list_pushed(&k, &p, 1));
        let s = f.state().expect("state");
        assert!(s.generation > g);
        let e = s.lists[0][1];
        assert_eq!(
            (
                e.info.start,
                e.info.duration,
                e.info.sample_count,
                e.info.size
            ),
            (2000, 2000, 2, 4)
        );
        assert_eq!((e.sum, e.from), (0xcc, 0b10));
        // The timeline answer listing it too changes only who listed it.
        let added = f
            .merge(
                &[doc(
                    0,
                    &[(0, "00000000000000aa"), (2000, "00000000000000cc")],
                )],
                0,
                false,
            )
            .expect("merges");
        assert!(added.is_empty());
        assert_eq!(f.state().expect("state").lists[0][1].from, 0b11);
        // Not twice, and not once ended.
        assert!(!f.list_pushed(&k, &p, 1));
        let mut ended = doc(0, &[(0, "00000000000000aa")]);
        ended.info.state = "ended".into();
        let a = Followed::new(PresKey::Asset("show".into()));
        a.merge(&[doc(0, &[(0, "00000000000000aa")])], 0, false)
            .expect("merges");
        a.merge(&[ended], 0, true).expect("merges");
        assert!(!a.list_pushed(&k, &p, 1));
    }

    #[test]
    fn hostile_documents_are_refused() {
        assert!(Doc::parse(b"{").is_err());
        assert!(Doc::parse(br#"{"v":2,"channel":"a","info":{"state":"live","fragment_ms":1,"epoch_ms":null,"window_ms":0},"tracks":[],"cut_ms":null,"next":null}"#).is_err());
        assert!(Doc::parse(br#"{"v":1,"channel":"../x","info":{"state":"live","fragment_ms":1,"epoch_ms":null,"window_ms":0},"tracks":[],"cut_ms":null,"next":null}"#).is_err());
        let f = Followed::new(PresKey::Channel("ch1".into()));
        assert!(f.merge(&[doc(0, &[(0, "xyz")])], 0, false).is_err());
    }
}
