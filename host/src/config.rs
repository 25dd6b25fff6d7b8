//! Configuration: one serde struct tree (`deny_unknown_fields`), each
//! field's default documented where it is declared. The config file is
//! TOML; command-line flags and `SLUICE_*` variables override it (see
//! `main.rs`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::names::valid_name;
use crate::plugins::PluginConfig;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Data directory: plugin cache, plugins, metadata (default `./sluice-data`).
    pub data_dir: PathBuf,
    /// Delivery and fMP4 ingest listener (default `0.0.0.0:8080`).
    pub http: SocketAddr,
    /// RTMP ingest listener (default `0.0.0.0:1935`).
    pub rtmp: SocketAddr,
    /// Management listener (default `127.0.0.1:8081`).
    pub admin: SocketAddr,
    /// HTTPS delivery and fMP4 ingest listener, serving the same as `http`
    /// over TLS (HTTP/2 and HTTP/1.1 by ALPN; default none: off).
    pub https: Option<SocketAddr>,
    /// QUIC listener (UDP): HTTP/3 delivery, with the certificate of
    /// `https` (`tls_cert`/`tls_key` or the self-signed one); delivery
    /// responses over TCP then carry `Alt-Svc` (default none: off).
    pub quic: Option<SocketAddr>,
    /// PEM certificate chain for `https` and `quic`, end entity first; needs `tls_key`.
    /// Default none: a self-signed certificate made once in
    /// `{data_dir}/tls/cert.pem`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert` (default none: `{data_dir}/tls/key.pem`).
    pub tls_key: Option<PathBuf>,
    /// `text` or `json` (default `text`).
    pub log_format: LogFormat,
    /// Bearer token of the management API; required when `admin` is not on
    /// loopback (default none).
    pub admin_token: Option<String>,
    /// Bearer token the upstream interface (`/_tier/`) requires, and edges
    /// send (default none: open).
    pub tier_token: Option<String>,
    /// Create channel `demo` fed by the built-in test source (default false).
    pub demo: bool,
    /// Count the delivery and plugin metrics of `GET /metrics` (default
    /// true). Off only to measure what they cost on the hot path
    /// (`bench/metrics-cost.sh`); the other metrics are always counted.
    pub metrics: bool,
    /// Plugin host settings.
    pub plugins: PluginConfig,
    /// Ingest limits.
    pub ingest: IngestLimits,
    /// Delivery settings.
    pub delivery: DeliveryConfig,
    /// Asset storage.
    pub storage: crate::storage::StorageConfig,
    /// Channels defined in the config file.
    pub channels: Vec<ChannelConfig>,
    /// Edge mode: upstreams and the edge's caches (`--upstream`).
    pub edge: EdgeConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./sluice-data"),
            http: SocketAddr::from(([0, 0, 0, 0], 8080)),
            rtmp: SocketAddr::from(([0, 0, 0, 0], 1935)),
            admin: SocketAddr::from(([127, 0, 0, 1], 8081)),
            https: None,
            quic: None,
            tls_cert: None,
            tls_key: None,
            log_format: LogFormat::Text,
            admin_token: None,
            tier_token: None,
            demo: false,
            metrics: true,
            plugins: PluginConfig::default(),
            ingest: IngestLimits::default(),
            delivery: DeliveryConfig::default(),
            storage: crate::storage::StorageConfig::default(),
            channels: Vec::new(),
            edge: EdgeConfig::default(),
        }
    }
}

impl Config {
    /// Reads a TOML config file.
    pub fn from_file(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("bad config {}: {}", path.display(), e.message()))
    }

    /// Checks values that serde cannot (names, ranges).
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut seen = std::collections::HashSet::new();
        for c in &self.channels {
            if !valid_name(&c.name) {
                anyhow::bail!(
                    "bad channel name {:?}: names are [a-z0-9][a-z0-9-]{{0,62}}",
                    c.name
                );
            }
            if !seen.insert(c.name.as_str()) {
                anyhow::bail!("channel {:?} defined twice", c.name);
            }
            if c.key.is_empty()
                || !c
                    .key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                anyhow::bail!("channel {:?}: key must be non-empty [A-Za-z0-9-]", c.name);
            }
            if let Some(e) = &c.epoch
                && crate::timefmt::parse_rfc3339_ms(e).is_none()
            {
                anyhow::bail!("channel {:?}: epoch {e:?} is not an RFC 3339 time", c.name);
            }
            if !(500..=20_000).contains(&c.fragment_ms) {
                anyhow::bail!("channel {:?}: fragment_ms must be 500..=20000", c.name);
            }
        }
        self.storage
            .validate()
            .map_err(|e| anyhow::anyhow!("bad [storage]: {e}"))?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            anyhow::bail!(
                "tls_cert and tls_key (--tls-cert, --tls-key) go together: set both or neither"
            );
        }
        if !self.edge.upstreams.is_empty() {
            if !self.channels.is_empty() || self.demo {
                anyhow::bail!(
                    "an edge (--upstream) holds no channels: drop [[channels]] and --demo, or the upstreams"
                );
            }
            for u in &self.edge.upstreams {
                parse_upstream(u)?;
            }
            if self.edge.upstreams.len() > 64 {
                anyhow::bail!("at most 64 upstreams");
            }
            if self.edge.follower_wait_ms == 0 || self.edge.fetch_timeout_ms == 0 {
                anyhow::bail!("edge.follower_wait_ms and edge.fetch_timeout_ms must be positive");
            }
        }
        if self.plugins.deadline_ms == 0 || self.plugins.memory_mib == 0 {
            anyhow::bail!("plugins.deadline_ms and plugins.memory_mib must be positive");
        }
        Ok(())
    }
}

/// Log output format.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Limits on what an encoder may send.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct IngestLimits {
    /// Time allowed from TCP accept to an authorised publish, ms (default 10000).
    pub handshake_timeout_ms: u64,
    /// Time without any byte from the encoder before it is dropped, ms (default 30000).
    pub idle_timeout_ms: u64,
    /// Largest single message (RTMP message, MP4 box), bytes (default 16 MiB).
    pub max_message_size: u32,
    /// Most tracks per channel (default 32).
    pub max_tracks_per_channel: u32,
    /// Largest fragment (bytes accumulated without a cut), bytes (default 64 MiB).
    pub max_fragment_bytes: usize,
    /// Encoder connections (RTMP and HTTP ingest) open at once (default 256).
    pub max_connections: usize,
    /// Encoder connections open at once from one address (default 16).
    pub max_connections_per_ip: usize,
    /// Ingest bitrate of one channel, all streams together, in kbit/s
    /// averaged over 5 s (default 100000, i.e. 100 Mbit/s).
    pub max_bitrate_kbps: u64,
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            handshake_timeout_ms: 10_000,
            idle_timeout_ms: 30_000,
            max_message_size: 16 << 20,
            max_tracks_per_channel: 32,
            max_fragment_bytes: 64 << 20,
            max_connections: 256,
            max_connections_per_ip: 16,
            max_bitrate_kbps: 100_000,
        }
    }
}

/// Delivery settings.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Response cache size, MiB (default 512).
    pub cache_mib: u64,
    /// `Access-Control-Allow-Origin` value (default `*`).
    pub cors_origin: String,
    /// Addresses (CIDR) allowed to fetch delivery URLs; empty = any (default empty).
    #[schemars(with = "Vec<String>")]
    pub allow: Vec<ipnet::IpNet>,
    /// Host names this endpoint is reached by (listed by the streaming
    /// endpoints API; default none).
    pub host_names: Vec<String>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            cache_mib: 512,
            cors_origin: "*".to_owned(),
            allow: Vec::new(),
            host_names: Vec::new(),
        }
    }
}

/// Edge settings (`[edge]`).
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// Upstreams: `http://HOST:PORT` or `https://HOST:PORT` of ingest
    /// nodes or shields, or `quic://HOST:PORT?cert-sha256=HEX` of ingest
    /// nodes' `--quic` listeners (default none: this node ingests).
    pub upstreams: Vec<String>,
    /// Fragment cache size, MiB (default 512).
    pub cache_mib: u64,
    /// Longest a request waits on a fetch another request started, ms
    /// (default 3000); the fetch goes on and is cached.
    pub follower_wait_ms: u64,
    /// Longest one upstream request may take, ms (default 10000; blocking
    /// timeline requests get three fragment durations more).
    pub fetch_timeout_ms: u64,
    /// A presentation nobody asked for in this many seconds is no longer
    /// followed (default 60).
    pub idle_s: u64,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            upstreams: Vec::new(),
            cache_mib: 512,
            follower_wait_ms: 3000,
            fetch_timeout_ms: 10_000,
            idle_s: 60,
        }
    }
}

/// A checked `--upstream` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    /// Scheme and authority (`http://host:port`, `quic://host:port`).
    pub base: String,
    /// `host:port`.
    pub authority: String,
    /// `quic://`: the pinned SHA-256 of the certificate's DER.
    pub cert_sha256: Option<[u8; 32]>,
}

/// Checks an `--upstream` URL: `http://HOST:PORT`, `https://HOST:PORT` or
/// `quic://HOST:PORT?cert-sha256=HEX`.
pub fn parse_upstream(u: &str) -> anyhow::Result<UpstreamUrl> {
    let uri: http::Uri = u
        .parse()
        .map_err(|e| anyhow::anyhow!("bad upstream {u:?}: {e}"))?;
    let quic = match uri.scheme_str() {
        Some("http" | "https") => false,
        Some("quic") => true,
        _ => anyhow::bail!("upstream {u:?}: the scheme must be http://, https:// or quic://"),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| anyhow::anyhow!("upstream {u:?} has no host"))?;
    if !matches!(uri.path(), "" | "/") {
        anyhow::bail!("upstream {u:?}: give only scheme, host and port (no path)");
    }
    let cert_sha256 = match (quic, uri.query()) {
        (false, None) => None,
        (false, Some(_)) => {
            anyhow::bail!("upstream {u:?}: give only scheme, host and port (no query)")
        }
        (true, query) => {
            let hex = query
                .and_then(|q| q.strip_prefix("cert-sha256="))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "upstream {u:?}: a quic:// upstream needs ?cert-sha256=HEX (the SHA-256 of the ingest node's certificate, printed as `listening quic=ADDR cert-sha256=HEX`)"
                    )
                })?;
            Some(parse_sha256(hex).ok_or_else(|| {
                anyhow::anyhow!("upstream {u:?}: cert-sha256 must be 64 hex digits")
            })?)
        }
    };
    if quic && authority.port_u16().is_none() {
        anyhow::bail!("upstream {u:?}: a quic:// upstream needs a port");
    }
    Ok(UpstreamUrl {
        base: format!("{}://{}", uri.scheme_str().unwrap_or("http"), authority),
        authority: authority.as_str().to_owned(),
        cert_sha256,
    })
}

/// 64 hex digits as 32 bytes.
pub fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A channel defined in the config file.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Channel name, `[a-z0-9][a-z0-9-]{0,62}`.
    pub name: String,
    /// Ingest key (the secret in the ingest URL).
    pub key: String,
    /// Fragment grid in milliseconds of media time (default 2000).
    #[serde(default = "default_fragment_ms")]
    pub fragment_ms: u32,
    /// Live window kept in memory and listed in live manifests, ms (default 120000).
    #[serde(default = "default_window_ms")]
    pub window_ms: u64,
    /// Wall-clock time of media time zero, RFC 3339 (default: the clock
    /// when the first fragment is cut). Redundant ingest nodes given the
    /// same epoch serve byte-identical manifests.
    #[serde(default)]
    pub epoch: Option<String>,
}

impl ChannelConfig {
    /// The stored form of a config-defined channel (running).
    pub fn record(&self) -> crate::store::ChannelRecord {
        crate::store::ChannelRecord {
            name: self.name.clone(),
            key: self.key.clone(),
            input_allow: Vec::new(),
            preview_allow: Vec::new(),
            fragment_ms: self.fragment_ms,
            window_ms: self.window_ms,
            state: "running".to_owned(),
            created_ms: 0,
            incarnation: 0,
            epoch_ms: self
                .epoch
                .as_deref()
                .and_then(crate::timefmt::parse_rfc3339_ms),
        }
    }
}

fn default_fragment_ms() -> u32 {
    2000
}

fn default_window_ms() -> u64 {
    120_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_unknown_fields() {
        let c: Config =
            toml::from_str("http = \"127.0.0.1:0\"\n[[channels]]\nname = \"ch1\"\nkey = \"k\"\n")
                .expect("valid config");
        assert_eq!(c.channels[0].fragment_ms, 2000);
        c.validate().expect("valid");
        assert!(toml::from_str::<Config>("bogus = 1").is_err());
        let bad: Config =
            toml::from_str("[[channels]]\nname = \"Bad\"\nkey = \"k\"\n").expect("parses");
        assert!(bad.validate().is_err());
    }
}

/// A flag and variable that set a config key (for the reference).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// The key, dotted (`plugins.dir`).
    pub key: String,
    /// The command-line flag (`--plugin-dir`).
    pub flag: String,
    /// The environment variable (`SLUICE_PLUGIN_DIR`).
    pub env: Option<String>,
}

/// The configuration reference (`sluice config default`): every key of
/// the config file, commented with its doc comment from the config types
/// (read through their JSON schema) and the flag and variable that
/// override it, set to its default (keys without one are commented out).
/// It parses back as the default configuration, so it cannot drift from
/// the code: the tests check both.
pub fn reference(overrides: &[Override]) -> String {
    let schema = serde_json::to_value(schemars::schema_for!(Config)).unwrap_or_default();
    let defaults = serde_json::to_value(Config::default()).unwrap_or_default();
    let mut out = String::from(
        "# Sluice configuration: every key with its default (`sluice config default`).\n\
         # Flags win over SLUICE_* variables, which win over this file; unknown keys\n\
         # are refused. Keys commented out have no default (unset).\n",
    );
    let mut w = Reference {
        defs: schema.get("$defs").cloned().unwrap_or_default(),
        overrides,
        out: &mut out,
    };
    w.table("", &schema, &defaults);
    out
}

/// Walks a schema into commented TOML.
struct Reference<'a> {
    defs: serde_json::Value,
    overrides: &'a [Override],
    out: &'a mut String,
}

impl Reference<'_> {
    /// `schema` itself, or the definition it refers to.
    fn resolve<'s>(&'s self, schema: &'s serde_json::Value) -> &'s serde_json::Value {
        schema
            .get("$ref")
            .and_then(serde_json::Value::as_str)
            .and_then(|r| r.strip_prefix("#/$defs/"))
            .and_then(|name| self.defs.get(name))
            .unwrap_or(schema)
    }

    fn is_table(&self, schema: &serde_json::Value) -> bool {
        self.resolve(schema).get("properties").is_some()
    }

    /// The item schema of an array of tables, if `schema` is one.
    fn table_items<'s>(&'s self, schema: &'s serde_json::Value) -> Option<&'s serde_json::Value> {
        let items = self.resolve(schema).get("items")?;
        self.is_table(items).then(|| self.resolve(items))
    }

    fn comment(&mut self, text: &str, prefix: &str) {
        for line in text.lines() {
            let line = line.trim_end();
            if line.is_empty() {
                self.out.push_str(&format!("{prefix}#\n"));
            } else {
                self.out.push_str(&format!("{prefix}# {line}\n"));
            }
        }
    }

    fn description(&self, schema: &serde_json::Value, resolved: &serde_json::Value) -> String {
        schema
            .get("description")
            .or_else(|| resolved.get("description"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_owned()
    }

    /// The keys of table `path` (`schema`, with `defaults`): its values
    /// first, then its arrays of tables, then its sub-tables.
    fn table(&mut self, path: &str, schema: &serde_json::Value, defaults: &serde_json::Value) {
        let schema = self.resolve(schema).clone();
        let Some(props) = schema.get("properties").and_then(|p| p.as_object()) else {
            return;
        };
        let key_path = |k: &str| {
            if path.is_empty() {
                k.to_owned()
            } else {
                format!("{path}.{k}")
            }
        };
        for (key, prop) in props {
            if self.is_table(prop) || self.table_items(prop).is_some() {
                continue;
            }
            let value = defaults.get(key).unwrap_or(&serde_json::Value::Null);
            let description = self.description(prop, self.resolve(prop));
            self.out.push('\n');
            self.comment(&description, "");
            self.flag(&key_path(key));
            match toml_value(value) {
                Some(v) => self.out.push_str(&format!("{key} = {v}\n")),
                None => self.out.push_str(&format!("# {key} =\n")),
            }
        }
        for (key, prop) in props {
            let Some(items) = self.table_items(prop).cloned() else {
                continue;
            };
            let description = self.description(prop, &items);
            self.out.push('\n');
            self.comment(&description, "");
            self.comment("Each entry (none by default; uncomment and repeat):", "");
            self.out.push_str(&format!("# [[{}]]\n", key_path(key)));
            if let Some(item_props) = items.get("properties").and_then(|p| p.as_object()) {
                for (k, p) in item_props {
                    let d = self.description(p, self.resolve(p));
                    self.comment(&d, "");
                    self.out.push_str(&format!("# {k} =\n"));
                }
            }
        }
        for (key, prop) in props {
            if !self.is_table(prop) {
                continue;
            }
            let value = defaults.get(key).cloned().unwrap_or_default();
            let description = self.description(prop, self.resolve(prop));
            self.out.push('\n');
            self.comment(&description, "");
            self.out.push_str(&format!("[{}]\n", key_path(key)));
            self.table(&key_path(key), prop, &value);
        }
    }

    fn flag(&mut self, key: &str) {
        if let Some(o) = self.overrides.iter().find(|o| o.key == key) {
            let env = o
                .env
                .as_deref()
                .map(|e| format!(", variable {e}"))
                .unwrap_or_default();
            self.out.push_str(&format!("# (flag {}{env})\n", o.flag));
        }
    }
}

/// A default as a TOML value; `None` for no value (unset).
fn toml_value(v: &serde_json::Value) -> Option<String> {
    if v.is_null() {
        return None;
    }
    toml::Value::try_from(v).ok().map(|v| v.to_string())
}
