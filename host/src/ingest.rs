//! Ingest listeners: all I/O, authorisation and limits for encoder
//! connections; the protocol itself lives in an ingest-adapter plugin.
//!
//! ```text
//!  TCP ─read─▶ IngestSession::feed (Wasm) ─events─▶ Connection::apply
//!                                   Send ◀─┘  Authorize → check key → authorize()
//!                                             Track/Samples → StreamIngest
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sluice_sdk::plugin::{AuthRequest, AuthStage, Event, SessionConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tracing::Instrument;

use crate::channel::{Channel, Channels, Source, StreamIngest};
use crate::config::IngestLimits;
use crate::metrics::metrics;
use crate::plugins::{IngestSession, PluginHost};

/// What every ingest connection needs.
pub struct IngestContext {
    /// Plugins (the adapter comes from here).
    pub plugins: Arc<PluginHost>,
    /// Channels to publish into.
    pub channels: Arc<Channels>,
    /// Limits.
    pub limits: IngestLimits,
    connections: Arc<Semaphore>,
    per_ip: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
}

/// An admitted encoder connection; its slots are released on drop.
pub struct Admission {
    _permit: tokio::sync::OwnedSemaphorePermit,
    ip: std::net::IpAddr,
    per_ip: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl IngestContext {
    /// A context with `limits.max_connections` connection slots.
    pub fn new(plugins: Arc<PluginHost>, channels: Arc<Channels>, limits: IngestLimits) -> Self {
        IngestContext {
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            per_ip: Arc::default(),
            plugins,
            channels,
            limits,
        }
    }
}

impl IngestContext {
    /// Admits a connection from `ip` under the global and per-address caps.
    pub fn admit(&self, ip: std::net::IpAddr) -> Result<Admission, &'static str> {
        let permit = self
            .connections
            .clone()
            .try_acquire_owned()
            .map_err(|_| "connection limit reached")?;
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= self.limits.max_connections_per_ip {
            return Err("per-address connection limit reached");
        }
        *n += 1;
        Ok(Admission {
            _permit: permit,
            ip,
            per_ip: self.per_ip.clone(),
        })
    }
}

/// Accepts RTMP connections until `shutdown` turns true.
pub async fn serve_rtmp(
    listener: TcpListener,
    ctx: Arc<IngestContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "rtmp accept failed");
                continue;
            }
        };
        let permit = match ctx.admit(peer.ip()) {
            Ok(p) => p,
            Err(reason) => {
                tracing::warn!(%peer, %reason, "rtmp connection refused");
                metrics().refused("rtmp", reason);
                continue;
            }
        };
        let ctx = ctx.clone();
        let span = tracing::info_span!(
            "rtmp",
            %peer,
            channel = tracing::field::Empty,
            stream = tracing::field::Empty
        );
        tokio::spawn(
            async move {
                match rtmp_connection(stream, peer, &ctx).await {
                    Ok(()) => tracing::info!("rtmp session ended"),
                    Err(e) => {
                        tracing::warn!(reason = %e, "rtmp session closed");
                        metrics().refused("rtmp", &e);
                    }
                }
                drop(permit);
            }
            .instrument(span),
        );
    }
}

async fn rtmp_connection(
    mut socket: TcpStream,
    peer: SocketAddr,
    ctx: &IngestContext,
) -> Result<(), String> {
    let _ = socket.set_nodelay(true);
    let plugin = ctx
        .plugins
        .ingest("rtmp")
        .ok_or("no ingest adapter for rtmp")?;
    let session = plugin
        .open(SessionConfig {
            remote_addr: peer.to_string(),
            max_message_size: ctx.limits.max_message_size,
            max_tracks: ctx.limits.max_tracks_per_channel,
            stream: String::new(),
        })
        .map_err(|e| e.to_string())?;
    let mut conn = Connection {
        session,
        peer,
        ctx,
        channel: None,
        ingest: None,
        out: Vec::new(),
        close: false,
        closing: false,
    };
    let handshake_deadline =
        tokio::time::Instant::now() + Duration::from_millis(ctx.limits.handshake_timeout_ms);
    let mut timer = ReadTimer::new(
        Duration::from_millis(ctx.limits.idle_timeout_ms),
        Some(handshake_deadline),
    );
    let mut buf = vec![0u8; 64 * 1024];
    let result = loop {
        if conn.ingest.is_some() {
            timer.hard = None;
        }
        let n = match timer.run(socket.read(&mut buf)).await {
            Err(Expired::Hard) => break Err("handshake timeout".to_owned()),
            Err(Expired::Idle) => break Err("idle timeout".to_owned()),
            Ok(Err(e)) => break Err(format!("read: {e}")),
            Ok(Ok(0)) => {
                // The peer closed the socket: whatever the adapter says now,
                // the stream did not end with an unpublish.
                conn.closing = true;
                let events = conn.session.close();
                let r = events
                    .map_err(|e| e.to_string())
                    .and_then(|ev| conn.apply(ev));
                let _ = socket.write_all(&conn.out).await;
                break r;
            }
            Ok(Ok(n)) => n,
        };
        let data = &buf[..n];
        // Plugin calls run on the async worker, not in `block_in_place`:
        // they are bounded by the plugin deadline, and handing the worker
        // over for every few kilobytes of input cost more CPU than parsing.
        let fed = conn.session.feed(data);
        let r = fed.map_err(|e| e.to_string()).and_then(|ev| conn.apply(ev));
        if !conn.out.is_empty() {
            if let Err(e) = socket.write_all(&conn.out).await {
                break Err(format!("write: {e}"));
            }
            conn.out.clear();
        }
        if let Err(e) = r {
            break Err(e);
        }
        if conn.close {
            break Err("refused".to_owned());
        }
        if conn.channel.as_ref().is_some_and(|c| !c.is_running()) {
            break Err("channel stopped".to_owned());
        }
    };
    if let Some(mut ingest) = conn.ingest.take() {
        ingest.finish();
    }
    result
}

/// One connection's state beside its adapter session.
struct Connection<'a> {
    session: IngestSession,
    peer: SocketAddr,
    ctx: &'a IngestContext,
    channel: Option<Arc<Channel>>,
    ingest: Option<StreamIngest>,
    out: Vec<u8>,
    close: bool,
    /// The socket is closed: an end of stream now is not a clean unpublish.
    closing: bool,
}

impl Connection<'_> {
    /// Applies adapter events (answering authorisations, which may produce more).
    fn apply(&mut self, events: Vec<Event>) -> Result<(), String> {
        let mut queue: VecDeque<Event> = events.into();
        while let Some(event) = queue.pop_front() {
            match event {
                Event::Send(bytes) => self.out.extend_from_slice(&bytes),
                Event::Authorize(req) => {
                    let verdict = self.authorize(&req);
                    if let Err(reason) = &verdict {
                        tracing::warn!(app = %req.app, stream = %req.stream, %reason, "ingest refused");
                        self.close = true;
                    }
                    let more = self
                        .session
                        .authorize(req.id, verdict)
                        .map_err(|e| e.to_string())?;
                    queue.extend(more);
                }
                Event::Track(_) | Event::Samples(_) => {
                    let ingest = self.ingest.as_mut().ok_or("media before publish")?;
                    ingest.on_media(event).map_err(|e| e.to_string())?;
                }
                Event::EndOfStream(reason) => {
                    if let Some(mut ingest) = self.ingest.take() {
                        tracing::info!(%reason, stream = ingest.stream(), "end of stream");
                        if self.closing {
                            ingest.finish();
                        } else {
                            ingest.end_of_stream();
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn authorize(&mut self, req: &AuthRequest) -> Result<(), String> {
        let path = match req.stage {
            AuthStage::Connect => req.app.clone(),
            AuthStage::Publish => format!("{}/{}", req.app, req.stream),
        };
        let target = parse_ingest_path(&path)?;
        let Some(name) = target.channel else {
            // `connect` to plain `live`: the rest comes with `publish`.
            return if req.stage == AuthStage::Connect {
                Ok(())
            } else {
                Err("no channel in the ingest path".to_owned())
            };
        };
        let channel = self
            .ctx
            .channels
            .get(name)
            .ok_or_else(|| format!("no channel {name}"))?;
        if !channel.input_allowed(self.peer.ip()) {
            return Err(format!("address {} not allowed", self.peer.ip()));
        }
        if !channel.is_running() {
            return Err(format!("channel {name} is not running"));
        }
        match target.key {
            Some(key) if constant_time_eq(key.as_bytes(), channel.key.as_bytes()) => {}
            Some(_) => return Err("wrong ingest key".to_owned()),
            None if req.stage == AuthStage::Connect => {}
            None => return Err("no ingest key".to_owned()),
        }
        let span = tracing::Span::current();
        if self.channel.is_none() {
            span.record("channel", name);
        }
        if req.stage == AuthStage::Publish {
            let stream = target.stream.ok_or("no stream name")?;
            span.record("stream", stream);
            if self.ingest.is_some() {
                return Err("already publishing on this connection".to_owned());
            }
            self.ingest = Some(StreamIngest::open(
                channel.clone(),
                stream,
                &self.ctx.limits,
                Source::remote(self.peer, "rtmp"),
            ));
            tracing::info!("publish accepted");
        }
        self.channel = Some(channel);
        Ok(())
    }
}

/// The parts of `live/{channel}/{key}/{stream}` present in an ingest path.
#[derive(Debug, PartialEq, Eq)]
struct IngestTarget<'a> {
    channel: Option<&'a str>,
    key: Option<&'a str>,
    stream: Option<&'a str>,
}

/// Parses the joined RTMP app and stream path; encoders split it in
/// different places, so only the joined form is meaningful.
fn parse_ingest_path(path: &str) -> Result<IngestTarget<'_>, String> {
    let path = path.split('?').next().unwrap_or("");
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let (first, rest) = parts.split_first().ok_or("empty ingest path")?;
    if *first != "live" {
        return Err(format!("ingest path must start with live/, got {path:?}"));
    }
    if rest.len() > 3 {
        return Err("ingest path has too many parts".to_owned());
    }
    let channel = rest.first().copied();
    if let Some(c) = channel
        && !crate::config::valid_name(c)
    {
        return Err(format!("bad channel name {c:?}"));
    }
    let stream = rest.get(2).copied();
    if let Some(s) = stream
        && !valid_stream_name(s)
    {
        return Err(format!("bad stream name {s:?}"));
    }
    Ok(IngestTarget {
        channel,
        key: rest.get(1).copied(),
        stream,
    })
}

/// Stream names: 1..=64 of `[A-Za-z0-9_.-]`, not starting with a dot.
pub fn valid_stream_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_paths() {
        let t = parse_ingest_path("live/ch1/KEY/720p").expect("valid");
        assert_eq!(
            t,
            IngestTarget {
                channel: Some("ch1"),
                key: Some("KEY"),
                stream: Some("720p")
            }
        );
        assert_eq!(parse_ingest_path("live").expect("valid").channel, None);
        assert_eq!(
            parse_ingest_path("/live/ch1/KEY/720p?x=1")
                .expect("valid")
                .stream,
            Some("720p")
        );
        assert!(parse_ingest_path("vod/ch1/KEY/720p").is_err());
        assert!(parse_ingest_path("live/../KEY/720p").is_err());
        assert!(parse_ingest_path("live/ch1/KEY/..").is_err());
        assert!(parse_ingest_path("live/ch1/KEY/a/b").is_err());
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}

/// `/ingest/{channel}/{key}.{ext}/Streams({stream})` → its parts.
#[derive(Debug, PartialEq, Eq)]
struct HttpIngestPath<'a> {
    channel: &'a str,
    key: &'a str,
    extension: &'a str,
    stream: &'a str,
}

fn parse_http_ingest_path(path: &str) -> Option<HttpIngestPath<'_>> {
    let rest = path.strip_prefix("/ingest/")?;
    let (channel, rest) = rest.split_once('/')?;
    let (file, rest) = rest.split_once('/')?;
    let (key, extension) = file.rsplit_once('.')?;
    let stream = rest.strip_prefix("Streams(")?.strip_suffix(')')?;
    let ok = crate::config::valid_name(channel)
        && !key.is_empty()
        && key.len() <= 64
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && (1..=16).contains(&extension.len())
        && extension
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && valid_stream_name(stream);
    ok.then_some(HttpIngestPath {
        channel,
        key,
        extension,
        stream,
    })
}

/// One long HTTP POST of an ingest format (fMP4/Smooth for `isml`): the
/// channel, key, address and state are checked from the URL before the body
/// is read; then the body's bytes drive an adapter session.
pub async fn http_ingest(
    ctx: &IngestContext,
    req: http::Request<hyper::body::Incoming>,
    peer: SocketAddr,
) -> http::Response<crate::delivery::Body> {
    use http::StatusCode;
    let path = req.uri().path().to_owned();
    let Some(target) = parse_http_ingest_path(&path) else {
        // Bounded: the path may be hostile and long.
        let shown: String = path.chars().take(80).collect();
        tracing::warn!(%peer, path = %shown, reason = "bad ingest URL", "ingest refused");
        metrics().refused("http", "bad ingest URL");
        return ingest_reply(StatusCode::NOT_FOUND, "bad ingest URL");
    };
    if req.method() != http::Method::POST {
        return ingest_reply(StatusCode::METHOD_NOT_ALLOWED, "ingest takes POST");
    }
    let span = tracing::info_span!(
        "http-ingest",
        %peer,
        channel = target.channel,
        stream = target.stream
    );
    let refuse = |status: StatusCode, reason: &str| {
        tracing::warn!(parent: &span, %reason, "ingest refused");
        metrics().refused("http", reason);
        ingest_reply(status, reason)
    };
    let Some(channel) = ctx.channels.get(target.channel) else {
        return refuse(StatusCode::NOT_FOUND, "no such channel");
    };
    if !channel.input_allowed(peer.ip()) {
        return refuse(StatusCode::FORBIDDEN, "address not allowed");
    }
    if !constant_time_eq(target.key.as_bytes(), channel.key.as_bytes()) {
        return refuse(StatusCode::FORBIDDEN, "wrong ingest key");
    }
    if !channel.is_running() {
        return refuse(StatusCode::NOT_FOUND, "channel is not running");
    }
    let Some(plugin) = ctx.plugins.ingest(target.extension) else {
        return refuse(
            StatusCode::NOT_FOUND,
            "no ingest adapter for this extension",
        );
    };
    let permit = match ctx.admit(peer.ip()) {
        Ok(p) => p,
        Err(reason) => return refuse(StatusCode::SERVICE_UNAVAILABLE, reason),
    };
    let session = plugin.open(SessionConfig {
        remote_addr: peer.to_string(),
        max_message_size: ctx.limits.max_message_size,
        max_tracks: ctx.limits.max_tracks_per_channel,
        stream: target.stream.to_owned(),
    });
    let mut session = match session {
        Ok(s) => s,
        Err(e) => return refuse(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let ingest = StreamIngest::open(
        channel.clone(),
        target.stream,
        &ctx.limits,
        Source::remote(peer, target.extension),
    );
    // The body is driven by a task of its own: if the client goes away and
    // the server drops this request's future, the stream still ends properly
    // (what was cut is published, the session closed).
    let body = req.into_body();
    let limits = ctx.limits.clone();
    let task = tokio::spawn(
        async move {
            let _permit = permit;
            drive_http_body(&limits, &mut session, ingest, &channel, body).await
        }
        .instrument(span.clone()),
    );
    let result = task
        .await
        .unwrap_or_else(|e| Err(format!("ingest task failed: {e}")));
    match result {
        Ok(()) => {
            tracing::info!(parent: &span, "http ingest ended");
            ingest_reply(StatusCode::OK, "ok")
        }
        Err(reason) => {
            tracing::warn!(parent: &span, %reason, "http ingest closed");
            metrics().refused("http", &reason);
            ingest_reply(StatusCode::BAD_REQUEST, &reason)
        }
    }
}

async fn drive_http_body(
    limits: &IngestLimits,
    session: &mut IngestSession,
    mut ingest: StreamIngest,
    channel: &Channel,
    mut body: hyper::body::Incoming,
) -> Result<(), String> {
    use http_body_util::BodyExt;
    let mut timer = ReadTimer::new(Duration::from_millis(limits.idle_timeout_ms), None);
    loop {
        let frame = match timer.run(body.frame()).await {
            Err(_) => {
                ingest.finish();
                return Err("idle timeout".to_owned());
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                ingest.finish();
                return Err(format!("read: {e}"));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let fed = session.feed(&data);
        let applied = fed
            .map_err(|e| e.to_string())
            .and_then(|events| apply_http_events(&mut ingest, events));
        if let Err(e) = applied {
            ingest.finish();
            return Err(e);
        }
        if !channel.is_running() {
            ingest.finish();
            return Err("channel stopped".to_owned());
        }
    }
    // The body ended properly (the terminating chunk, or all of its
    // declared length): the encoder finished the stream.
    let events = session.close().map_err(|e| e.to_string())?;
    apply_http_events(&mut ingest, events)?;
    ingest.end_of_stream();
    Ok(())
}

fn apply_http_events(ingest: &mut StreamIngest, events: Vec<Event>) -> Result<(), String> {
    for event in events {
        match event {
            Event::Authorize(_) => {
                return Err("the adapter asked for authorisation over HTTP".to_owned());
            }
            // Nothing can be sent back in the middle of a request body.
            Event::Send(_) | Event::EndOfStream(_) => {}
            media => ingest.on_media(media).map_err(|e| e.to_string())?,
        }
    }
    Ok(())
}

fn ingest_reply(status: http::StatusCode, text: &str) -> http::Response<crate::delivery::Body> {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(crate::delivery::Body::text(format!("{text}\n")))
        .unwrap_or_default()
}

#[cfg(test)]
mod http_tests {
    use super::*;

    #[test]
    fn http_ingest_paths() {
        assert_eq!(
            parse_http_ingest_path("/ingest/ch1/KEY-1.isml/Streams(720p)"),
            Some(HttpIngestPath {
                channel: "ch1",
                key: "KEY-1",
                extension: "isml",
                stream: "720p"
            })
        );
        assert_eq!(
            parse_http_ingest_path("/ingest/ch1/KEY.isml/Streams(../x)"),
            None
        );
        assert_eq!(
            parse_http_ingest_path("/ingest/../KEY.isml/Streams(a)"),
            None
        );
        assert_eq!(
            parse_http_ingest_path("/ingest/ch1/KEY.ISML/Streams(a)"),
            None
        );
        assert_eq!(
            parse_http_ingest_path("/ingest/ch1/KEY.isml/Stream(a)"),
            None
        );
        assert_eq!(parse_http_ingest_path("/ingest/ch1/KEY/Streams(a)"), None);
        let long = format!("/ingest/ch1/KEY.isml/Streams({})", "a".repeat(10_000));
        assert_eq!(parse_http_ingest_path(&long), None);
    }
}

/// Which limit of a [`ReadTimer`] passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    /// No input for the idle timeout.
    Idle,
    /// The hard deadline (the handshake's).
    Hard,
}

/// The idle timeout (and an optional hard deadline) of a loop of reads.
///
/// One timer is armed and re-armed only when it fires (then from the time
/// of the last read): a `tokio::time::timeout` per read would add and
/// remove a timer-wheel entry for every few kilobytes of a stream.
struct ReadTimer {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    idle: Duration,
    last: tokio::time::Instant,
    /// A deadline that reads do not push back; `None` when past it.
    hard: Option<tokio::time::Instant>,
}

impl ReadTimer {
    fn new(idle: Duration, hard: Option<tokio::time::Instant>) -> Self {
        let last = tokio::time::Instant::now();
        let mut timer = ReadTimer {
            sleep: Box::pin(tokio::time::sleep_until(last + idle)),
            idle,
            last,
            hard,
        };
        let due = timer.due();
        timer.sleep.as_mut().reset(due);
        timer
    }

    fn due(&self) -> tokio::time::Instant {
        let idle = self.last + self.idle;
        self.hard.map_or(idle, |h| h.min(idle))
    }

    /// Runs `read` to completion unless a limit passes first.
    async fn run<F: std::future::Future>(&mut self, read: F) -> Result<F::Output, Expired> {
        tokio::pin!(read);
        loop {
            tokio::select! {
                biased;
                out = &mut read => {
                    self.last = tokio::time::Instant::now();
                    return Ok(out);
                }
                () = self.sleep.as_mut() => {
                    let now = tokio::time::Instant::now();
                    if self.hard.is_some_and(|h| now >= h) {
                        return Err(Expired::Hard);
                    }
                    let due = self.due();
                    if now >= due {
                        return Err(Expired::Idle);
                    }
                    self.sleep.as_mut().reset(due);
                }
            }
        }
    }
}
