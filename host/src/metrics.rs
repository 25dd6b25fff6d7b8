//! Prometheus metrics (`GET /metrics` on the admin listener), through
//! `prometheus-client`. Names start `sluice_`; labels are bounded (channel,
//! stream, reason, kind): never a raw URL or client address.
//!
//! One process-wide registry: the counters are reached from the ingest path
//! without threading a handle through every call.

use std::sync::{Arc, Mutex, OnceLock, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels naming a channel.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    /// Channel name (validated).
    pub channel: String,
}

/// Labels naming a channel's stream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabels {
    /// Channel name (validated).
    pub channel: String,
    /// Stream name (validated).
    pub stream: String,
}

/// Labels of a dropped duplicate fragment.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DuplicateLabels {
    /// Channel name.
    pub channel: String,
    /// `matching`, `mismatching` or `overlapping`.
    pub kind: &'static str,
}

/// Labels of a dropped duplicate fragment of a stream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamDuplicateLabels {
    /// Channel name.
    pub channel: String,
    /// Stream name.
    pub stream: String,
    /// `matching`, `mismatching` or `overlapping`.
    pub kind: &'static str,
}

/// Labels of a refused or ended ingest session.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// `rtmp` or the HTTP ingest extension family (`http`).
    pub protocol: &'static str,
    /// A bounded reason (see [`reason_label`]).
    pub reason: &'static str,
}

/// The metrics of this process.
pub struct Metrics {
    registry: Registry,
    /// Ingest sessions refused or ended by an error, by reason.
    pub ingest_refusals: Family<ReasonLabels, Counter>,
    /// Sample payload bytes received, per stream.
    pub ingest_bytes: Family<StreamLabels, Counter>,
    /// Fragments added to channel timelines.
    pub fragments: Family<ChannelLabels, Counter>,
    /// Fragments dropped as duplicates, by kind.
    pub duplicates: Family<DuplicateLabels, Counter>,
    /// Discontinuities recorded.
    pub discontinuities: Family<ChannelLabels, Counter>,
    /// Fragments added to channel timelines, per stream.
    pub ingest_fragments: Family<StreamLabels, Counter>,
    /// Fragments dropped as duplicates, per stream and kind.
    pub ingest_duplicates: Family<StreamDuplicateLabels, Counter>,
    /// Discontinuities recorded, per stream.
    pub ingest_discontinuities: Family<StreamLabels, Counter>,
    /// The channels the scrape-time ingest gauges read.
    ingest_gauges: Arc<IngestGauges>,
    /// Fragments written to asset storage.
    pub storage_writes: Counter,
    /// Bytes of fragment payload written to asset storage.
    pub storage_bytes: Counter,
    /// Fragments the archive could not record (storage failing or behind).
    pub storage_failures: Counter,
    /// Fragments removed from storage because no asset range reaches them.
    pub storage_trimmed: Counter,
    /// Upstream interface requests answered, by kind.
    pub tier_requests: Family<KindLabels, Counter>,
    /// Edge: requests sent to each upstream.
    pub edge_upstream_requests: Family<UpstreamLabels, Counter>,
    /// Edge: body bytes received from each upstream.
    pub edge_upstream_bytes: Family<UpstreamLabels, Counter>,
    /// Edge: failed requests (transport errors, 5xx, 401) per upstream.
    pub edge_upstream_failures: Family<UpstreamLabels, Counter>,
    /// Edge: requests that joined a fetch already in flight.
    pub edge_coalesced: Counter,
    /// Edge: fragments an upstream pushed over QUIC, checked and cached.
    pub edge_pushed: Family<UpstreamLabels, Counter>,
    /// Edge: pushed fragments listed as they arrived, ahead of the
    /// timeline answer.
    pub edge_pushed_listed: Family<UpstreamLabels, Counter>,
    /// QUIC tier: fragments pushed to subscribed edges (all of it
    /// acknowledged), per channel.
    pub tier_quic_pushed: Family<ChannelLabels, Counter>,
    /// QUIC tier: fragments not pushed or reset because the subscriber was
    /// behind, per channel.
    pub tier_quic_skipped: Family<ChannelLabels, Counter>,
    /// Plugin calls (packager requests; ingest feeds, authorisations and
    /// closes).
    pub plugin_calls: Family<PluginLabels, Counter>,
    /// Plugin call duration, instantiation included.
    pub plugin_call_seconds: Family<PluginLabels, Histogram, fn() -> Histogram>,
    /// Plugin calls that trapped, ran past their deadline or memory.
    pub plugin_failures: Family<PluginFailureLabels, Counter>,
    /// The largest linear memory an instance of the plugin had, bytes.
    pub plugin_memory_peak: Family<PluginLabels, Gauge>,
    /// Plugin registry reloads (the plugin directory changed).
    pub plugin_reloads: Counter,
    /// Delivery responses of packaged resources, by format and status class.
    pub delivery_requests: Family<DeliveryLabels, Counter>,
    /// Delivery body bytes sent, by format.
    pub delivery_bytes: Family<FormatLabels, Counter>,
    /// Delivery responses found in the response cache.
    pub delivery_cache_hits: Family<FormatLabels, Counter>,
    /// Delivery responses packaged for the request.
    pub delivery_cache_misses: Family<FormatLabels, Counter>,
    /// Delivery requests that waited for a response another request was
    /// packaging.
    pub delivery_coalesced: Family<FormatLabels, Counter>,
    /// Edge: upstream request duration (headers and body).
    pub edge_upstream_seconds: Family<UpstreamLabels, Histogram, fn() -> Histogram>,
    /// Edge: 1 while an upstream is in use (not backing off), else 0.
    pub edge_upstream_up: Family<UpstreamLabels, Gauge>,
    /// Storage: fragment object write duration (a put, retries apart).
    pub storage_write_seconds: Histogram,
    /// Response cache size, bytes (weighed).
    pub delivery_cache_bytes: Gauge,
    /// Responses evicted from the response cache for size.
    pub delivery_cache_evictions: Counter,
}

/// Labels naming an edge's upstream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// Position of the upstream on the command line (0, 1, ...).
    pub upstream: String,
}

/// Labels of an upstream interface request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `health`, `locator`, `timeline`, `blocking`, `fragment`, `other`.
    pub kind: &'static str,
}

/// Labels naming a plugin and its world.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    /// Plugin name (as it declares it; bounded by the plugins loaded).
    pub plugin: String,
    /// `packager` or `ingest-adapter`.
    pub world: &'static str,
}

/// Labels of a plugin failure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginFailureLabels {
    /// Plugin name.
    pub plugin: String,
    /// `packager` or `ingest-adapter`.
    pub world: &'static str,
    /// `trap`, `deadline` or `memory`.
    pub kind: &'static str,
}

/// Labels of a delivery response.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// A format a packager serves, or `other` (never the raw request).
    pub format: String,
    /// `2xx`, `3xx`, `4xx` or `5xx`.
    pub status: &'static str,
}

/// Labels naming a delivery format.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FormatLabels {
    /// A format a packager serves, or `other`.
    pub format: String,
}

/// Buckets of the plugin call histogram, seconds: 50 µs to 1 s.
const CALL_BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.25, 1.0,
];

fn call_histogram() -> Histogram {
    Histogram::new(CALL_BUCKETS)
}

/// Buckets of upstream fetches and storage writes, seconds: 1 ms to 10 s.
const FETCH_BUCKETS: [f64; 12] = [
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

fn fetch_histogram() -> Histogram {
    Histogram::new(FETCH_BUCKETS)
}

/// Whether the delivery and plugin metrics are counted (`metrics` in the
/// config; on by default).
static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turns the delivery and plugin metrics on or off (the `metrics` key).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether the delivery and plugin metrics are counted.
pub fn enabled() -> bool {
    ENABLED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::with_prefix("sluice");
        let m = Metrics {
            ingest_refusals: Family::default(),
            ingest_bytes: Family::default(),
            fragments: Family::default(),
            duplicates: Family::default(),
            discontinuities: Family::default(),
            ingest_fragments: Family::default(),
            ingest_duplicates: Family::default(),
            ingest_discontinuities: Family::default(),
            ingest_gauges: Arc::default(),
            storage_writes: Counter::default(),
            storage_bytes: Counter::default(),
            storage_failures: Counter::default(),
            storage_trimmed: Counter::default(),
            tier_requests: Family::default(),
            edge_upstream_requests: Family::default(),
            edge_upstream_bytes: Family::default(),
            edge_upstream_failures: Family::default(),
            edge_coalesced: Counter::default(),
            edge_pushed: Family::default(),
            edge_pushed_listed: Family::default(),
            tier_quic_pushed: Family::default(),
            tier_quic_skipped: Family::default(),
            plugin_calls: Family::default(),
            plugin_call_seconds: Family::new_with_constructor(call_histogram),
            plugin_failures: Family::default(),
            plugin_memory_peak: Family::default(),
            plugin_reloads: Counter::default(),
            delivery_requests: Family::default(),
            delivery_bytes: Family::default(),
            delivery_cache_hits: Family::default(),
            delivery_cache_misses: Family::default(),
            delivery_coalesced: Family::default(),
            edge_upstream_seconds: Family::new_with_constructor(fetch_histogram),
            edge_upstream_up: Family::default(),
            storage_write_seconds: fetch_histogram(),
            delivery_cache_bytes: Gauge::default(),
            delivery_cache_evictions: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "plugin_calls",
            "Plugin calls (packager requests; ingest feeds, authorisations, closes)",
            m.plugin_calls.clone(),
        );
        registry.register(
            "plugin_call_seconds",
            "Plugin call duration, instantiation included",
            m.plugin_call_seconds.clone(),
        );
        registry.register(
            "plugin_failures",
            "Plugin calls that trapped, ran past their deadline or their memory cap",
            m.plugin_failures.clone(),
        );
        registry.register(
            "plugin_memory_peak_bytes",
            "The largest linear memory an instance of the plugin had",
            m.plugin_memory_peak.clone(),
        );
        registry.register(
            "plugin_reloads",
            "Plugin registry reloads (the plugin directory changed)",
            m.plugin_reloads.clone(),
        );
        registry.register(
            "delivery_requests",
            "Delivery responses of packaged resources, by format and status class",
            m.delivery_requests.clone(),
        );
        registry.register(
            "delivery_bytes",
            "Delivery body bytes sent, by format",
            m.delivery_bytes.clone(),
        );
        registry.register(
            "delivery_cache_hits",
            "Delivery responses found in the response cache",
            m.delivery_cache_hits.clone(),
        );
        registry.register(
            "delivery_cache_misses",
            "Delivery responses packaged for the request",
            m.delivery_cache_misses.clone(),
        );
        registry.register(
            "delivery_coalesced",
            "Delivery requests that waited for a response another request was packaging",
            m.delivery_coalesced.clone(),
        );
        registry.register(
            "edge_upstream_seconds",
            "Edge: upstream request duration (blocking timeline requests included)",
            m.edge_upstream_seconds.clone(),
        );
        registry.register(
            "edge_upstream_up",
            "Edge: 1 while the upstream is in use (not backing off), else 0",
            m.edge_upstream_up.clone(),
        );
        registry.register(
            "storage_write_seconds",
            "Storage: fragment object write duration",
            m.storage_write_seconds.clone(),
        );
        registry.register(
            "delivery_cache_bytes",
            "Response cache size (weighed bytes)",
            m.delivery_cache_bytes.clone(),
        );
        registry.register(
            "delivery_cache_evictions",
            "Responses evicted from the response cache for size",
            m.delivery_cache_evictions.clone(),
        );
        registry.register(
            "edge_upstream_requests",
            "Edge: requests sent to each upstream (by position)",
            m.edge_upstream_requests.clone(),
        );
        registry.register(
            "edge_upstream_bytes",
            "Edge: body bytes received from each upstream",
            m.edge_upstream_bytes.clone(),
        );
        registry.register(
            "edge_upstream_failures",
            "Edge: failed upstream requests (transport errors, 5xx, 401)",
            m.edge_upstream_failures.clone(),
        );
        registry.register(
            "edge_coalesced",
            "Edge: requests that joined an upstream fetch already in flight",
            m.edge_coalesced.clone(),
        );
        registry.register(
            "edge_pushed_fragments",
            "Edge: fragments an upstream pushed over QUIC, checked and cached",
            m.edge_pushed.clone(),
        );
        registry.register(
            "edge_pushed_listed",
            "Edge: pushed fragments listed as they arrived, ahead of the timeline answer",
            m.edge_pushed_listed.clone(),
        );
        registry.register(
            "tier_quic_fragments_pushed",
            "QUIC tier: fragments pushed to subscribed edges and acknowledged",
            m.tier_quic_pushed.clone(),
        );
        registry.register(
            "tier_quic_fragments_skipped",
            "QUIC tier: fragments skipped (not pushed, or reset) for subscribers that fell behind",
            m.tier_quic_skipped.clone(),
        );
        registry.register(
            "tier_requests",
            "Upstream interface requests answered, by kind",
            m.tier_requests.clone(),
        );
        registry.register(
            "storage_writes",
            "Fragments written to asset storage",
            m.storage_writes.clone(),
        );
        registry.register(
            "storage_bytes",
            "Fragment payload bytes written to asset storage",
            m.storage_bytes.clone(),
        );
        registry.register(
            "storage_failures",
            "Fragments the archive could not record (storage failing or behind)",
            m.storage_failures.clone(),
        );
        registry.register(
            "storage_trimmed",
            "Fragments removed from storage because no asset range reaches them",
            m.storage_trimmed.clone(),
        );
        registry.register(
            "ingest_refusals",
            "Ingest sessions refused or ended by an error, by reason",
            m.ingest_refusals.clone(),
        );
        registry.register(
            "ingest_bytes",
            "Sample payload bytes received",
            m.ingest_bytes.clone(),
        );
        registry.register(
            "fragments",
            "Fragments added to channel timelines",
            m.fragments.clone(),
        );
        registry.register(
            "duplicate_fragments",
            "Fragments dropped as duplicates (matching, mismatching, overlapping)",
            m.duplicates.clone(),
        );
        registry.register(
            "discontinuities",
            "Discontinuities recorded in channel timelines",
            m.discontinuities.clone(),
        );
        registry.register(
            "ingest_fragments",
            "Fragments added to channel timelines, per stream",
            m.ingest_fragments.clone(),
        );
        registry.register(
            "ingest_duplicate_fragments",
            "Fragments dropped as duplicates, per stream (matching, mismatching, overlapping)",
            m.ingest_duplicates.clone(),
        );
        registry.register(
            "ingest_discontinuities",
            "Discontinuities recorded, per stream",
            m.ingest_discontinuities.clone(),
        );
        registry.register_collector(Box::new(m.ingest_gauges.clone()));
        Metrics { registry, ..m }
    })
}

/// Where the scrape-time ingest gauges come from (a node's channels):
/// per channel and stream, the encoder sessions publishing now and the
/// seconds since the stream's newest fragment.
pub trait IngestGaugeSource: Send + Sync {
    /// One row per channel and stream.
    fn ingest_gauges(&self) -> Vec<(StreamLabels, i64, Option<f64>)>;
}

/// The ingest gauges computed at scrape time from the sources of this
/// process: encoders connected and seconds since the newest fragment, per
/// channel and stream.
#[derive(Default)]
struct IngestGauges {
    sources: Mutex<Vec<Weak<dyn IngestGaugeSource>>>,
}

impl std::fmt::Debug for IngestGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestGauges").finish_non_exhaustive()
    }
}

impl Collector for IngestGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sources: Vec<Arc<dyn IngestGaugeSource>> = {
            let mut list = self.sources.lock().unwrap_or_else(|e| e.into_inner());
            list.retain(|w| w.strong_count() > 0);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        // (labels, encoders, seconds since the newest fragment)
        let rows: Vec<_> = sources.iter().flat_map(|s| s.ingest_gauges()).collect();
        let gauge = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "ingest_encoders",
            "Encoder sessions publishing now, per stream.",
            None,
            gauge.metric_type(),
        )?;
        for (labels, active, _) in &rows {
            ConstGauge::new(*active).encode(family.encode_family(labels)?)?;
        }
        let gauge = ConstGauge::new(0f64);
        let mut family = encoder.encode_descriptor(
            "ingest_last_fragment_age_seconds",
            "Seconds since the stream's newest fragment was added (at scrape time).",
            None,
            gauge.metric_type(),
        )?;
        for (labels, _, age) in &rows {
            if let Some(age) = age {
                ConstGauge::new(*age).encode(family.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Exposes the scrape-time ingest gauges of `source` (held weakly).
    pub fn observe_ingest(&self, source: &Arc<dyn IngestGaugeSource>) {
        self.ingest_gauges
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(source));
    }

    /// Counts one plugin call of `elapsed` whose instance reached
    /// `memory_peak` bytes, and its failure if it failed.
    pub fn plugin_call(
        &self,
        labels: &PluginLabels,
        elapsed: std::time::Duration,
        memory_peak: usize,
        failure: Option<&'static str>,
    ) {
        if !enabled() {
            return;
        }
        self.plugin_calls.get_or_create(labels).inc();
        self.plugin_call_seconds
            .get_or_create(labels)
            .observe(elapsed.as_secs_f64());
        let peak = i64::try_from(memory_peak).unwrap_or(i64::MAX);
        self.plugin_memory_peak
            .get_or_create(labels)
            .inner()
            .fetch_max(peak, std::sync::atomic::Ordering::Relaxed);
        if let Some(kind) = failure {
            self.plugin_failures
                .get_or_create(&PluginFailureLabels {
                    plugin: labels.plugin.clone(),
                    world: labels.world,
                    kind,
                })
                .inc();
        }
    }

    /// Counts a refusal or error end of an ingest session.
    pub fn refused(&self, protocol: &'static str, reason: &str) {
        self.ingest_refusals
            .get_or_create(&ReasonLabels {
                protocol,
                reason: reason_label(reason),
            })
            .inc();
    }
}

/// Maps a refusal message to a bounded label.
pub fn reason_label(reason: &str) -> &'static str {
    const KNOWN: &[(&str, &str)] = &[
        ("wrong ingest key", "wrong_key"),
        ("no ingest key", "wrong_key"),
        ("not allowed", "address_not_allowed"),
        ("not running", "channel_not_running"),
        ("channel stopped", "channel_not_running"),
        ("no channel", "unknown_channel"),
        ("no such channel", "unknown_channel"),
        ("per-address connection limit", "per_address_limit"),
        ("connection limit", "connection_limit"),
        ("handshake timeout", "handshake_timeout"),
        ("idle timeout", "idle_timeout"),
        ("too many tracks", "too_many_tracks"),
        ("without a keyframe", "fragment_too_large"),
        ("kbit/s", "bitrate"),
        ("limit exceeded", "message_too_large"),
        ("bad ingest URL", "bad_name"),
        ("bad channel name", "bad_name"),
        ("bad stream name", "bad_name"),
        ("ingest path", "bad_name"),
        ("malformed", "malformed"),
        ("unsupported", "unsupported"),
        ("trapped", "plugin_failure"),
        ("deadline", "plugin_failure"),
        ("memory cap", "plugin_failure"),
        ("read:", "io"),
        ("write:", "io"),
    ];
    KNOWN
        .iter()
        .find(|(needle, _)| reason.contains(needle))
        .map(|(_, label)| *label)
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_bounded_and_exposed() {
        assert_eq!(reason_label("wrong ingest key"), "wrong_key");
        assert_eq!(
            reason_label("per-address connection limit reached"),
            "per_address_limit"
        );
        assert_eq!(reason_label("connection limit reached"), "connection_limit");
        assert_eq!(reason_label("something new"), "other");
        metrics().refused("rtmp", "wrong ingest key");
        let text = metrics().encode();
        assert!(
            text.contains("sluice_ingest_refusals_total{protocol=\"rtmp\",reason=\"wrong_key\"}"),
            "{text}"
        );
    }
}
