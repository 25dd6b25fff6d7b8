//! What a plugin's `Store` holds: the WASI context that grants nothing, the
//! memory limiter, the captured stdout/stderr, and the presentation view of
//! the current call; plus the host side of the `log` and `presentation`
//! imports.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use sluice_sdk::plugin::{self as sdk, View};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView};

use super::bindings::packager::sluice::plugin::{log, presentation, types};

/// Bytes of plugin stdout + stderr kept per store; the rest is counted and dropped.
pub(crate) const OUTPUT_CAPACITY: usize = 16 * 1024;
/// Log lines a plugin may emit per store; the rest are counted and dropped.
const LOG_LINES: u32 = 64;
/// Longest log line kept, in bytes.
const LOG_LINE_BYTES: usize = 4096;
/// Largest `sample-data` copy a plugin may ask for in one call.
const MAX_SAMPLE_DATA: u32 = 64 << 20;
/// Most fragments returned by one `fragments` call.
const MAX_FRAGMENTS: u32 = 100_000;

/// Per-store state of a plugin instance.
pub(crate) struct PluginState {
    /// Plugin name, for log lines.
    pub name: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    /// The memory cap and whether the plugin ran into it.
    pub limiter: MemoryLimiter,
    /// The presentation of the current packager call.
    pub view: Option<Arc<dyn View + Send + Sync>>,
    /// What the plugin wrote to stdout and stderr.
    pub output: CapturedOutput,
    log_lines: u32,
}

impl PluginState {
    /// Fresh state for one store.
    pub fn new(name: Arc<str>, memory_cap: usize) -> Self {
        let output = CapturedOutput::default();
        PluginState {
            name,
            wasi: pure_wasi_ctx(&output),
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                cap: memory_cap,
                hit: false,
                peak: 0,
            },
            view: None,
            output,
            log_lines: 0,
        }
    }

    /// Logs what the plugin wrote to stdout/stderr, if anything, and clears it.
    pub fn flush_output(&mut self) {
        let text = self.output.take();
        if !text.is_empty() {
            tracing::info!(plugin = %self.name, output = %text.trim_end(), "plugin output");
        }
    }
}

impl wasmtime_wasi::WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A WASI context that grants nothing: no preopens, environment, arguments
/// or network; stdin closed; stdout and stderr captured; clocks fixed at the
/// Unix epoch and randomness a fixed sequence, so a plugin stays a pure
/// function of its inputs.
fn pure_wasi_ctx(output: &CapturedOutput) -> WasiCtx {
    /// The bytes `wasi:random` returns, cycled.
    const RANDOM: [u8; 32] = *b"sluice:plugin deterministic rng!";
    let mut b = WasiCtxBuilder::new();
    b.stdout(output.clone())
        .stderr(output.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .wall_clock(FixedClock)
        .monotonic_clock(FixedClock)
        .secure_random(wasmtime_wasi::Deterministic::new(RANDOM.to_vec()))
        .insecure_random(wasmtime_wasi::Deterministic::new(RANDOM.to_vec()))
        .insecure_random_seed(0);
    b.build()
}

/// A clock that always reads zero.
struct FixedClock;

impl HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        0
    }
}

/// The memory cap of one store; records that a plugin ran into it so the
/// trap that usually follows (Rust aborts on allocation failure) is reported
/// as [`PluginError::Memory`](super::PluginError::Memory).
pub(crate) struct MemoryLimiter {
    cap: usize,
    /// A growth past the cap was refused.
    pub hit: bool,
    /// The largest linear memory granted, bytes.
    pub peak: usize,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.hit = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|m| desired <= m))
    }
}

/// Plugin stdout + stderr: the first [`OUTPUT_CAPACITY`] bytes are kept,
/// the rest counted. Unlike wasmtime's `MemoryOutputPipe` a full buffer
/// drops output instead of trapping the plugin.
#[derive(Clone, Default)]
pub(crate) struct CapturedOutput(Arc<Mutex<Captured>>);

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    dropped: usize,
}

impl CapturedOutput {
    fn write(&self, data: &[u8]) {
        let mut c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let room = OUTPUT_CAPACITY.saturating_sub(c.bytes.len());
        let keep = room.min(data.len());
        c.bytes.extend_from_slice(&data[..keep]);
        c.dropped += data.len() - keep;
    }

    /// Takes what was written so far, as lossy UTF-8.
    pub fn take(&self) -> String {
        let mut c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if c.bytes.is_empty() && c.dropped == 0 {
            return String::new();
        }
        let mut text = String::from_utf8_lossy(&c.bytes).into_owned();
        if c.dropped > 0 {
            text.push_str(&format!("\n[{} more bytes dropped]", c.dropped));
        }
        c.bytes.clear();
        c.dropped = 0;
        text
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        CapturedOutput::write(self, &bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        CapturedOutput::write(&self, buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

// ---- imports ------------------------------------------------------------

impl types::Host for PluginState {}

impl log::Host for PluginState {
    fn log(&mut self, level: types::LogLevel, mut message: String) -> wasmtime::Result<()> {
        self.log_lines += 1;
        if self.log_lines > LOG_LINES {
            if self.log_lines == LOG_LINES + 1 {
                tracing::warn!(plugin = %self.name, "plugin log limit reached; further lines dropped");
            }
            return Ok(());
        }
        if message.len() > LOG_LINE_BYTES {
            let mut end = LOG_LINE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        let plugin = &*self.name;
        match level {
            types::LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            types::LogLevel::Info => tracing::info!(plugin, "{message}"),
            types::LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            types::LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
        Ok(())
    }
}

impl PluginState {
    fn view(&self) -> wasmtime::Result<&Arc<dyn View + Send + Sync>> {
        self.view
            .as_ref()
            .ok_or_else(|| wasmtime::format_err!("no presentation outside a packager call"))
    }
}

impl presentation::Host for PluginState {
    fn info(&mut self) -> wasmtime::Result<presentation::PresentationInfo> {
        let i = self.view()?.info();
        Ok(presentation::PresentationInfo {
            state: match i.state {
                sdk::PresentationState::Live => presentation::PresentationState::Live,
                sdk::PresentationState::Ended => presentation::PresentationState::Ended,
            },
            fragment_duration_ms: i.fragment_duration_ms,
            epoch_ms: i.epoch_ms,
            window_ms: i.window_ms,
        })
    }

    fn tracks(&mut self) -> wasmtime::Result<Vec<types::TrackInfo>> {
        Ok(self.view()?.tracks().into_iter().map(track_to).collect())
    }

    fn fragments(
        &mut self,
        track: u32,
        from: u64,
        limit: u32,
    ) -> wasmtime::Result<Vec<presentation::Fragment>> {
        let limit = limit.min(MAX_FRAGMENTS);
        Ok(self
            .view()?
            .fragments(track, from, limit)
            .into_iter()
            .take(limit as usize)
            .map(|f| presentation::Fragment {
                start: f.start,
                duration: f.duration,
                sample_count: f.sample_count,
                size: f.size,
                discontinuity: f.discontinuity,
            })
            .collect())
    }

    fn timeline(
        &mut self,
        track: u32,
        from: u64,
        limit: u32,
    ) -> wasmtime::Result<presentation::FragmentPage> {
        let limit = limit.min(MAX_FRAGMENTS);
        let fragments = self.view()?.fragments(track, from, limit);
        let n = fragments.len().min(limit as usize);
        let mut page = presentation::FragmentPage {
            starts: Vec::with_capacity(n),
            durations: Vec::with_capacity(n),
            sample_counts: Vec::with_capacity(n),
            sizes: Vec::with_capacity(n),
            discontinuity_sequences: Vec::with_capacity(n),
            flags: Vec::with_capacity(n),
        };
        for f in &fragments[..n] {
            page.starts.push(f.start);
            page.durations.push(f.duration);
            page.sample_counts.push(f.sample_count);
            page.sizes.push(f.size);
            page.discontinuity_sequences.push(f.discontinuity_sequence);
            page.flags.push(u8::from(f.discontinuity));
        }
        Ok(page)
    }

    fn samples(
        &mut self,
        track: u32,
        start: u64,
    ) -> wasmtime::Result<Option<Vec<presentation::SampleEntry>>> {
        Ok(self.view()?.samples(track, start).map(|v| {
            v.into_iter()
                .map(|s| presentation::SampleEntry {
                    duration: s.duration,
                    size: s.size,
                    composition_offset: s.composition_offset,
                    keyframe: s.keyframe,
                })
                .collect()
        }))
    }

    fn sample_data(
        &mut self,
        track: u32,
        start: u64,
        offset: u32,
        length: u32,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        if length > MAX_SAMPLE_DATA {
            wasmtime::bail!("sample-data of {length} bytes asked (at most {MAX_SAMPLE_DATA})");
        }
        Ok(self.view()?.sample_data(track, start, offset, length))
    }
}

// ---- conversions ----------------------------------------------------------

/// SDK track → WIT track.
pub(crate) fn track_to(t: sdk::TrackInfo) -> types::TrackInfo {
    types::TrackInfo {
        id: t.id,
        kind: match t.kind {
            sdk::TrackKind::Video => types::TrackKind::Video,
            sdk::TrackKind::Audio => types::TrackKind::Audio,
            sdk::TrackKind::Subtitle => types::TrackKind::Subtitle,
            sdk::TrackKind::Data => types::TrackKind::Data,
        },
        fourcc: t.fourcc,
        codec: t.codec,
        timescale: t.timescale,
        codec_private: t.codec_private,
        stream: t.stream,
        bitrate: t.bitrate,
        language: t.language,
        width: t.width,
        height: t.height,
        sample_rate: t.sample_rate,
        channels: t.channels,
    }
}

/// WIT track → SDK track.
pub(crate) fn track_from(t: types::TrackInfo) -> sdk::TrackInfo {
    sdk::TrackInfo {
        id: t.id,
        kind: match t.kind {
            types::TrackKind::Video => sdk::TrackKind::Video,
            types::TrackKind::Audio => sdk::TrackKind::Audio,
            types::TrackKind::Subtitle => sdk::TrackKind::Subtitle,
            types::TrackKind::Data => sdk::TrackKind::Data,
        },
        fourcc: t.fourcc,
        codec: t.codec,
        timescale: t.timescale,
        codec_private: t.codec_private,
        stream: t.stream,
        bitrate: t.bitrate,
        language: t.language,
        width: t.width,
        height: t.height,
        sample_rate: t.sample_rate,
        channels: t.channels,
    }
}
