//! `sluice-tier/1`: the upstream interface over one QUIC connection per
//! edge, with fragments pushed as they are cut.
//!
//! Every frame is a 4-byte big-endian length and that many bytes of JSON
//! (at most [`MAX_FRAME`]); binary bodies follow their frame up to the
//! stream's FIN.
//!
//! ```text
//!  edge (client)                                   ingest node (server)
//!  ── request: one bidirectional stream each ───────────────────────────
//!  [len]{"get":"/_tier/v1/…?…","token":"T"} FIN ─▶ Tier::handle(uri, Bearer T)
//!                 ◀─ [len]{"status":200,"headers":{"cache-control":…,"etag":…,"content-type":…}}
//!                 ◀─ body … FIN
//!  ── subscription: one bidirectional stream per channel ───────────────
//!  [len]{"subscribe":"ch1","token":"T"}           ─▶ token, channel checked
//!                 ◀─ [len]{"status":200,"after":{"1":START,…}}   (newest start per track now)
//!  (held open; FIN or STOP from the edge ends it)
//!  ── push: one unidirectional stream per fragment cut after that ─────
//!                 ◀─ [len]{"channel":"ch1","track":1,"start":S,"sum":"016x","len":N}
//!                 ◀─ SLF1 object (encode_head + payload, shared, not copied) FIN
//! ```
//!
//! Newest first, never queued: the subscription wakes on the channel's
//! change watch (which keeps only the latest value, so a slow task
//! coalesces), opens a push per new fragment, newest first and with a
//! higher stream priority than every earlier push. It bounds what is in
//! flight (fragments and bytes) and skips what is stale: a push still
//! unacknowledged when a fragment two fragment durations newer is cut, or
//! the oldest ones beyond the bounds, is reset ([`STALE`]). The ingest path
//! never waits on an edge: the only link is the watch. A skipped fragment
//! costs the edge one ordinary request when a viewer needs it.
//!
//! A malformed frame closes its connection ([`BAD_FRAME`]); nothing else
//! is affected.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sluice_sdk::plugin::View as _;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinSet;
use tracing::Instrument as _;

use super::Services;
use crate::channel::Channel;
pub use crate::wire::frame::{
    FrameError, Head, MAX_FRAME, PushHead, Request, decode, encode_frame, frame_len,
};
pub use crate::wire::{ALPN_TIER, BAD_FRAME, BUSY, DUPLICATE, SILENT, STALE, read_frame};

/// Tier connections a node holds at once (edges hold one per upstream).
const MAX_CONNECTIONS: usize = 1024;

/// Subscriptions one connection may hold.
const MAX_SUBSCRIPTIONS: usize = 64;

/// Time a client gets to send its request frame once it opened a stream.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Pushes one subscription has in flight at most; the oldest beyond are
/// skipped.
const MAX_INFLIGHT: usize = 16;

/// Bytes one subscription has in flight at most; the oldest beyond are
/// skipped (the newest push is always sent).
const MAX_INFLIGHT_BYTES: u64 = 32 << 20;

/// New fragments per track one wake-up pushes; older ones are skipped.
const MAX_NEW_PER_TRACK: usize = 4;

/// Tier connections open now.
static CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

/// One of [`MAX_CONNECTIONS`], given back on drop.
struct ConnectionSlot;

impl ConnectionSlot {
    fn take() -> Option<ConnectionSlot> {
        CONNECTIONS
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < MAX_CONNECTIONS).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnectionSlot)
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        CONNECTIONS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `sluice-tier/1` on `conn` until the edge leaves or the node
/// shuts down (then the connection closes at once: edges go elsewhere).
pub(super) async fn serve_connection(
    conn: quinn::Connection,
    services: &Arc<Services>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(_slot) = ConnectionSlot::take() else {
        conn.close(BUSY, b"too many tier connections");
        return;
    };
    let subscriptions = Arc::new(Semaphore::new(MAX_SUBSCRIPTIONS));
    let mut streams = JoinSet::new();
    loop {
        tokio::select! {
            accepted = conn.accept_bi() => match accepted {
                Ok((send, recv)) => {
                    streams.spawn(
                        stream(conn.clone(), send, recv, services.clone(), subscriptions.clone())
                            .in_current_span(),
                    );
                }
                Err(e) => {
                    tracing::debug!(error = %e, "tier connection ended");
                    break;
                }
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
            _ = shutdown.wait_for(|stop| *stop) => {
                conn.close(quinn::VarInt::from_u32(0), b"shutting down");
                break;
            }
        }
    }
    streams.shutdown().await;
}

/// One client stream: a request or a subscription.
async fn stream(
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    services: Arc<Services>,
    subscriptions: Arc<Semaphore>,
) {
    let frame = match tokio::time::timeout(REQUEST_TIMEOUT, read_frame(&mut recv, MAX_FRAME)).await
    {
        Ok(Ok(Some(f))) => f,
        // Opened and closed without a request: nothing to answer.
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "bad tier request frame");
            conn.close(BAD_FRAME, b"bad request frame");
            return;
        }
        Err(_) => {
            let _ = send.reset(BAD_FRAME);
            return;
        }
    };
    let request: Request = match decode(&frame) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "bad tier request");
            conn.close(BAD_FRAME, b"bad request");
            return;
        }
    };
    match (request.get, request.subscribe) {
        (Some(path), None) => {
            let span = tracing::debug_span!("tier_get", %path);
            get(&services, &path, request.token.as_deref(), &mut send)
                .instrument(span)
                .await;
        }
        (None, Some(channel)) => {
            let span = tracing::debug_span!("tier_subscribe", %channel);
            subscribe(
                &services,
                conn,
                &channel,
                request.token.as_deref(),
                send,
                recv,
                subscriptions,
            )
            .instrument(span)
            .await;
        }
        _ => conn.close(BAD_FRAME, b"a request has either get or subscribe"),
    }
}

/// Answers one `get` through the same [`crate::tier::Tier::handle`] as
/// the HTTP listeners, token check included.
async fn get(services: &Services, path: &str, token: Option<&str>, send: &mut quinn::SendStream) {
    let uri = path
        .parse::<http::Uri>()
        .ok()
        .filter(|u| u.scheme().is_none() && u.path().starts_with("/_tier/"));
    let Some(uri) = uri else {
        let head = Head {
            status: StatusCode::BAD_REQUEST.as_u16(),
            ..Head::default()
        };
        let _ = send.write_chunk(encode_frame(&head)).await;
        let _ = send.finish();
        return;
    };
    let mut headers = HeaderMap::new();
    if let Some(value) = token.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok()) {
        headers.insert(header::AUTHORIZATION, value);
    }
    let resp = services.tier.handle(&uri, &headers).await;
    let (parts, body) = resp.into_parts();
    let mut head = Head {
        status: parts.status.as_u16(),
        ..Head::default()
    };
    for name in [
        header::CACHE_CONTROL,
        header::ETAG,
        header::CONTENT_TYPE,
        header::RETRY_AFTER,
        header::WWW_AUTHENTICATE,
    ] {
        if let Some(v) = parts.headers.get(&name).and_then(|v| v.to_str().ok()) {
            head.headers.insert(name.as_str().to_owned(), v.to_owned());
        }
    }
    let mut chunks: Vec<Bytes> = std::iter::once(encode_frame(&head))
        .chain(body.into_chunks())
        .collect();
    if let Err(e) = send.write_all_chunks(&mut chunks).await {
        tracing::debug!(error = %e, "tier answer not sent");
        return;
    }
    let _ = send.finish();
}

/// Writes a head-only answer and ends the stream.
async fn refuse(send: &mut quinn::SendStream, status: StatusCode) {
    let head = Head {
        status: status.as_u16(),
        ..Head::default()
    };
    let _ = send.write_chunk(encode_frame(&head)).await;
    let _ = send.finish();
}

/// A subscription: checks it, answers, then pushes until the edge ends it
/// or the channel goes.
async fn subscribe(
    services: &Services,
    conn: quinn::Connection,
    name: &str,
    token: Option<&str>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    subscriptions: Arc<Semaphore>,
) {
    if !services.tier.token_ok(token) {
        refuse(&mut send, StatusCode::UNAUTHORIZED).await;
        return;
    }
    if !services.tier.takes_subscriptions() {
        refuse(&mut send, StatusCode::NOT_IMPLEMENTED).await;
        return;
    }
    let channel = crate::names::valid_name(name)
        .then(|| services.tier.channel(name))
        .flatten();
    let Some(channel) = channel else {
        refuse(&mut send, StatusCode::NOT_FOUND).await;
        return;
    };
    let Ok(_permit) = subscriptions.try_acquire_owned() else {
        refuse(&mut send, StatusCode::TOO_MANY_REQUESTS).await;
        return;
    };
    // Subscribe to changes before reading the baseline: nothing cut in
    // between is missed.
    let changes = channel.changes();
    let mut pusher = Pusher::new(conn, channel, name.to_owned());
    let head = Head {
        status: 200,
        after: Some(pusher.sent.clone()),
        ..Head::default()
    };
    if send.write_chunk(encode_frame(&head)).await.is_err() {
        return;
    }
    tracing::debug!("tier subscription");
    pusher.run(changes, &mut recv).await;
    let _ = send.finish();
}

/// One push in flight.
struct Inflight {
    id: u64,
    /// Media end of the fragment, ms.
    end_ms: i64,
    bytes: u64,
    /// Dropping it resets the push.
    _cancel: oneshot::Sender<()>,
}

/// How a push ended.
enum Outcome {
    /// The edge received all of it.
    Delivered,
    /// The edge stopped it (it held the fragment) or the connection went.
    Declined,
    /// Reset before it was delivered.
    Skipped,
}

/// The push side of one subscription.
struct Pusher {
    conn: quinn::Connection,
    channel: Arc<Channel>,
    name: String,
    /// Per track, the start of the newest fragment pushed or skipped.
    sent: BTreeMap<u32, u64>,
    inflight: VecDeque<Inflight>,
    tasks: JoinSet<(u64, Outcome)>,
    next_id: u64,
}

impl Pusher {
    fn new(conn: quinn::Connection, channel: Arc<Channel>, name: String) -> Pusher {
        let snapshot = channel.snapshot();
        let sent = snapshot
            .tracks()
            .iter()
            .filter_map(|t| Some((t.id, snapshot.last(t.id)?.start)))
            .collect();
        Pusher {
            conn,
            channel,
            name,
            sent,
            inflight: VecDeque::new(),
            tasks: JoinSet::new(),
            next_id: 0,
        }
    }

    fn labels(&self) -> crate::metrics::ChannelLabels {
        crate::metrics::ChannelLabels {
            channel: self.name.clone(),
        }
    }

    fn skipped(&self, n: u64) {
        if n > 0 {
            crate::metrics::metrics()
                .tier_quic_skipped
                .get_or_create(&self.labels())
                .inc_by(n);
        }
    }

    async fn run(&mut self, mut changes: watch::Receiver<u64>, recv: &mut quinn::RecvStream) {
        let mut scratch = [0u8; 256];
        loop {
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The channel was removed.
                        break;
                    }
                    self.push_new();
                }
                Some(done) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Ok((id, outcome)) = done {
                        self.finished(id, outcome);
                    }
                }
                // The edge ends the subscription with FIN (or STOP, or by
                // leaving); anything it sends meanwhile is ignored.
                read = recv.read(&mut scratch) => {
                    if !matches!(read, Ok(Some(_))) {
                        break;
                    }
                }
            }
        }
        // Reset what is still in flight.
        self.inflight.clear();
        while self.tasks.join_next().await.is_some() {}
    }

    fn finished(&mut self, id: u64, outcome: Outcome) {
        self.inflight.retain(|p| p.id != id);
        match outcome {
            Outcome::Delivered => {
                crate::metrics::metrics()
                    .tier_quic_pushed
                    .get_or_create(&self.labels())
                    .inc();
            }
            Outcome::Skipped => self.skipped(1),
            Outcome::Declined => {}
        }
    }

    /// Opens a push per fragment cut since the last wake-up, newest first.
    fn push_new(&mut self) {
        let snapshot = self.channel.snapshot();
        let fragment_ms = i64::from(snapshot.info().fragment_duration_ms);
        let mut new = Vec::new();
        let mut skipped = 0u64;
        for t in snapshot.tracks() {
            let Some(last) = snapshot.last(t.id) else {
                continue;
            };
            let from = match self.sent.get(&t.id) {
                // A reset channel starts again below what was sent.
                Some(&s) if last.start >= s => s.saturating_add(1),
                _ => 0,
            };
            if self.sent.get(&t.id) == Some(&last.start) {
                continue;
            }
            let list = snapshot.entries(t.id, from, usize::MAX);
            let keep = list.len().saturating_sub(MAX_NEW_PER_TRACK);
            skipped += keep as u64;
            for (info, sum) in &list[keep..] {
                let end_ms = crate::archive::ticks_to_ms(
                    info.start.saturating_add(info.duration),
                    t.timescale,
                );
                new.push((end_ms, t.id, info.start, *sum));
            }
            self.sent.insert(t.id, last.start);
        }
        self.skipped(skipped);
        if new.is_empty() {
            return;
        }
        // Newest first.
        new.sort_by_key(|p| std::cmp::Reverse(p.0));
        let newest_end = new[0].0;
        // Stale: still unacknowledged two fragments after it ended.
        let before = self.inflight.len();
        self.inflight
            .retain(|p| p.end_ms > newest_end.saturating_sub(2 * fragment_ms));
        let n = new.len();
        // Every push of this batch outranks the earlier ones (which are
        // numbered below `base`); its newest outranks the rest of it.
        let base = self.next_id;
        for (i, (end_ms, track, start, sum)) in new.into_iter().enumerate() {
            let Some(f) = snapshot.fragment_named(track, start, sum).cloned() else {
                continue;
            };
            let head = PushHead {
                channel: self.name.clone(),
                track,
                start,
                sum: format!("{sum:016x}"),
                len: 0,
            };
            let object = crate::storage::encode_head(&f);
            let len = (object.len() + f.data.len()) as u64;
            let chunks = [
                encode_frame(&PushHead { len, ..head }),
                object,
                f.data.clone(),
            ];
            tracing::debug!(target: "sluice::timing", channel = %self.name, track, start, "fragment push");
            let id = self.next_id;
            self.next_id += 1;
            let priority = i32::try_from((base + (n - i) as u64) & 0x3fff_ffff).unwrap_or(0);
            let (cancel, cancelled) = oneshot::channel();
            self.tasks
                .spawn(push(self.conn.clone(), chunks, priority, cancelled, id));
            self.inflight.push_back(Inflight {
                id,
                end_ms,
                bytes: len,
                _cancel: cancel,
            });
        }
        // Bounds: the oldest go first; the newest push always stays.
        while self.inflight.len() > MAX_INFLIGHT
            || (self.inflight.len() > 1
                && self.inflight.iter().map(|p| p.bytes).sum::<u64>() > MAX_INFLIGHT_BYTES)
        {
            let Some(oldest) = self
                .inflight
                .iter()
                .enumerate()
                .min_by_key(|(_, p)| (p.end_ms, p.id))
                .map(|(i, _)| i)
            else {
                break;
            };
            self.inflight.remove(oldest);
        }
        let dropped = before + n - self.inflight.len();
        if dropped > 0 {
            tracing::debug!(dropped, "slow subscriber: skipping stale pushes");
        }
    }
}

/// One push: a unidirectional stream carrying `chunks`, until the edge
/// acknowledged all of it or `cancel` fires (then the stream is reset).
async fn push(
    conn: quinn::Connection,
    mut chunks: [Bytes; 3],
    priority: i32,
    mut cancel: oneshot::Receiver<()>,
    id: u64,
) -> (u64, Outcome) {
    let mut send = tokio::select! {
        opened = conn.open_uni() => match opened {
            Ok(s) => s,
            Err(_) => return (id, Outcome::Declined),
        },
        _ = &mut cancel => return (id, Outcome::Skipped),
    };
    let _ = send.set_priority(priority);
    let sent = tokio::select! {
        r = async {
            send.write_all_chunks(&mut chunks).await.map_err(|_| ())?;
            send.finish().map_err(|_| ())?;
            send.stopped().await.map_err(|_| ())
        } => Some(r),
        _ = &mut cancel => None,
    };
    match sent {
        Some(Ok(None)) => (id, Outcome::Delivered),
        Some(_) => (id, Outcome::Declined),
        None => {
            let _ = send.reset(STALE);
            (id, Outcome::Skipped)
        }
    }
}
