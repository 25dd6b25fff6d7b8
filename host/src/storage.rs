//! Asset storage: fragments as immutable objects on local disk, S3 or
//! Azure Blob, behind the `object_store` crate.
//!
//! # Layout
//!
//! Keys are built from validated parts only: channel names pass
//! [`valid_name`], numbers are formatted here, the prefix is checked when
//! the store opens. Nothing comes from a request path.
//!
//! ```text
//! {prefix}/ch/{channel}/{incarnation:016x}/t/{track}/f/{start:020}   one fragment object
//! {prefix}/probe/{random:016x}                                       readiness probe (put, then deleted)
//! ```
//!
//! The start is zero-padded to 20 digits, so a listing in key order is
//! time order. A channel's incarnation changes on reset, when media times
//! restart, so keys never collide across resets. [`AssetStore::delete_incarnation`]
//! removes everything under `{prefix}/ch/{channel}/{incarnation:016x}/`.
//!
//! # Object format
//!
//! See [`codec`] (the bytes of [`encode_fragment`]): magic `SLF1`, version,
//! a fixed 48-byte header (start, duration, discontinuity, sample count,
//! payload length, xxh3-64), 16-byte sample records, the payload. A read
//! checks length, checksum, and that the sample sizes add up to the payload
//! and the start matches the key; otherwise it is [`StorageError::Corrupt`].
//!
//! # Durability
//!
//! - A fragment is written once, whole, with one `put` to its own key.
//!   Locally that is a staging file renamed into place, so a reader never
//!   sees half an object under its final name; S3 and Azure make a PUT
//!   visible atomically.
//! - `kill -9` ends the process, not the kernel: what was written before it
//!   is in the page cache and survives without any fsync. After a restart
//!   every object whose `put` returned is there, whole.
//! - Power loss or an OS crash: with `fsync = true` (the default), the local
//!   backend flushes the staging file's data before the rename and fsyncs
//!   the parent directory (and every directory it had to create) after it,
//!   before `put_fragment` returns (`LocalFileSystem::with_fsync`). So an
//!   object whose `put` returned is durable, and an object that is not
//!   durable is absent rather than torn. With `fsync = false` the last
//!   seconds of objects may be lost or torn by a power loss; a torn object
//!   fails its checksum and reads as [`StorageError::Corrupt`], which
//!   recovery deletes. Deletes are not fsynced (a deleted fragment that
//!   comes back after a power loss is deleted again by the next trim).
//! - S3 and Azure acknowledge a PUT once it is durable; no extra step.
//!
//! # Reads
//!
//! [`AssetStore::get_fragment`] keeps what it read in a byte-weighed cache
//! (`read_cache_mib`); concurrent reads of one key make one request. Writes
//! do not fill the cache: live fragments are served from memory already.

pub mod codec;

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};
use serde::{Deserialize, Serialize};

pub use crate::media::segmenter::Fragment;
use crate::names::valid_name;
pub use codec::{
    CodecError, ObjectHeader, checksum, decode_fragment, decode_header, encode_fragment,
    encode_head,
};

/// Which object store holds the assets.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// A directory on local disk.
    #[default]
    Local,
    /// Amazon S3 or an S3-compatible service.
    S3,
    /// Azure Blob Storage (or Azurite).
    Azure,
}

/// The `[storage]` section of the config.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `local`, `s3` or `azure` (default `local`).
    pub backend: Backend,
    /// Local backend: the directory (default `{data_dir}/assets`); created
    /// if missing.
    pub dir: Option<PathBuf>,
    /// Key prefix inside the bucket, container or directory: `/`-separated
    /// segments of `[a-z0-9-]` (default empty: keys start at the root).
    pub prefix: String,
    /// Cache of fragments read back from storage, MiB (default 256).
    pub read_cache_mib: u64,
    /// Local backend: flush each object's data before it is renamed into
    /// place and fsync its directory after (default true). See the module
    /// docs for what this buys.
    pub fsync: bool,
    /// S3 settings (`backend = "s3"`).
    pub s3: S3Config,
    /// Azure Blob settings (`backend = "azure"`).
    pub azure: AzureConfig,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: Backend::Local,
            dir: None,
            prefix: String::new(),
            read_cache_mib: 256,
            fsync: true,
            s3: S3Config::default(),
            azure: AzureConfig::default(),
        }
    }
}

impl StorageConfig {
    /// Checks what serde cannot: the prefix, and the settings the chosen
    /// backend needs.
    pub fn validate(&self) -> Result<(), StorageError> {
        prefix_parts(&self.prefix)?;
        match self.backend {
            Backend::Local => {}
            Backend::S3 => {
                if self.s3.bucket.is_empty() {
                    return Err(StorageError::Config("storage.s3.bucket is required".into()));
                }
            }
            Backend::Azure => {
                let a = &self.azure;
                if a.container.is_empty() {
                    return Err(StorageError::Config(
                        "storage.azure.container is required".into(),
                    ));
                }
                if a.use_emulator && a.endpoint.is_some() {
                    return Err(StorageError::Config(
                        "storage.azure: set either use_emulator or endpoint, not both".into(),
                    ));
                }
                if !a.use_emulator && a.account.is_empty() {
                    return Err(StorageError::Config(
                        "storage.azure.account is required".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// S3 settings. Credentials not set here come from the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, …,
/// then instance metadata).
#[derive(Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Bucket name (required with `backend = "s3"`; default empty).
    pub bucket: String,
    /// Region (default `us-east-1`).
    pub region: String,
    /// Endpoint URL of an S3-compatible service, e.g. `http://minio:9000`
    /// (default none: AWS).
    pub endpoint: Option<String>,
    /// Access key id (default none: from the environment).
    pub access_key_id: Option<String>,
    /// Secret access key (default none: from the environment).
    pub secret_access_key: Option<String>,
    /// Allow `http://` endpoints (default false).
    pub allow_http: bool,
    /// Virtual-hosted-style requests (`bucket.host`); the endpoint must
    /// then include the bucket (default false: path style).
    pub virtual_hosted_style: bool,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: String::new(),
            region: "us-east-1".to_owned(),
            endpoint: None,
            access_key_id: None,
            secret_access_key: None,
            allow_http: false,
            virtual_hosted_style: false,
        }
    }
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "…"),
            )
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .finish()
    }
}

/// Azure Blob settings. Credentials not set here come from the environment
/// (`AZURE_STORAGE_ACCOUNT_KEY`, …).
#[derive(Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AzureConfig {
    /// Storage account (required unless `use_emulator`; default empty).
    pub account: String,
    /// Account access key (default none: from the environment).
    pub access_key: Option<String>,
    /// Container (required with `backend = "azure"`; default empty).
    pub container: String,
    /// Account URL, e.g. `http://127.0.0.1:10000/devstoreaccount1` for
    /// Azurite (default none: `https://{account}.blob.core.windows.net`).
    pub endpoint: Option<String>,
    /// Allow `http://` endpoints (default false).
    pub allow_http: bool,
    /// Azurite with its well-known account and key, at
    /// `AZURITE_BLOB_STORAGE_URL` (default `http://127.0.0.1:10000`);
    /// excludes `endpoint` (default false).
    pub use_emulator: bool,
}

impl std::fmt::Debug for AzureConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureConfig")
            .field("account", &self.account)
            .field("access_key", &self.access_key.as_ref().map(|_| "…"))
            .field("container", &self.container)
            .field("endpoint", &self.endpoint)
            .field("allow_http", &self.allow_http)
            .field("use_emulator", &self.use_emulator)
            .finish()
    }
}

/// Errors of the asset store. Cloneable: one failed read is reported to
/// every reader that waited for it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The object store failed (network, permissions, missing bucket…).
    #[error("storage backend: {0}")]
    Backend(#[source] Arc<object_store::Error>),
    /// An object exists but is not a valid fragment for its key.
    #[error("corrupt object {key}: {reason}")]
    Corrupt {
        /// The object's key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A key part is not a valid name.
    #[error("bad storage key: {0}")]
    BadKey(String),
    /// A fragment that cannot be stored (its sample sizes do not add up).
    #[error("bad fragment: {0}")]
    BadFragment(String),
    /// Invalid `[storage]` settings.
    #[error("storage config: {0}")]
    Config(String),
    /// Local file system error outside `object_store` (creating the
    /// directory).
    #[error("storage I/O on {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: Arc<std::io::Error>,
    },
}

impl From<object_store::Error> for StorageError {
    fn from(e: object_store::Error) -> Self {
        StorageError::Backend(Arc::new(e))
    }
}

/// The name of one fragment object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    /// Channel name (`[a-z0-9][a-z0-9-]{0,62}`).
    pub channel: String,
    /// Channel incarnation (changes on reset).
    pub incarnation: u64,
    /// Track id.
    pub track: u32,
    /// Decode time of the fragment's first sample.
    pub start: u64,
}

impl FragmentKey {
    /// A key; refuses a channel name that is not a valid name.
    pub fn new(
        channel: &str,
        incarnation: u64,
        track: u32,
        start: u64,
    ) -> Result<Self, StorageError> {
        check_channel(channel)?;
        Ok(FragmentKey {
            channel: channel.to_owned(),
            incarnation,
            track,
            start,
        })
    }
}

fn check_channel(channel: &str) -> Result<(), StorageError> {
    if valid_name(channel) {
        Ok(())
    } else {
        Err(StorageError::BadKey(format!("channel {channel:?}")))
    }
}

/// The segments of a `prefix` setting (empty for none).
fn prefix_parts(prefix: &str) -> Result<Vec<String>, StorageError> {
    if prefix.is_empty() {
        return Ok(Vec::new());
    }
    prefix
        .split('/')
        .map(|s| {
            if !s.is_empty()
                && s.len() <= 63
                && s.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            {
                Ok(s.to_owned())
            } else {
                Err(StorageError::Config(format!(
                    "storage.prefix {prefix:?}: segments are [a-z0-9-]{{1,63}} separated by '/'"
                )))
            }
        })
        .collect()
}

/// Installs rustls' ring crypto provider as the process default, which the
/// S3 and Azure clients need for HTTPS. Idempotent; [`AssetStore::open`]
/// calls it too.
pub fn install_crypto_provider() {
    // An error means a provider is installed already: fine either way.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The asset store: one object store, the key layout and a read cache.
/// Cheap to clone (shared state).
#[derive(Clone)]
pub struct AssetStore {
    store: Arc<dyn ObjectStore>,
    /// Key segments before `ch/…`.
    prefix: Vec<String>,
    description: String,
    cache: moka::future::Cache<FragmentKey, Arc<Fragment>>,
}

impl std::fmt::Debug for AssetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssetStore")
            .field("backend", &self.description)
            .finish_non_exhaustive()
    }
}

/// Why a cached read produced no fragment.
#[derive(Debug)]
enum Miss {
    Absent,
    Failed(StorageError),
}

impl AssetStore {
    /// Opens the store `cfg` describes (validating it); the local backend's
    /// directory is created. No request is made: see
    /// [`check_writable`](Self::check_writable).
    pub fn open(cfg: &StorageConfig, data_dir: &FsPath) -> Result<AssetStore, StorageError> {
        cfg.validate()?;
        let prefix = prefix_parts(&cfg.prefix)?;
        let shown_prefix = if cfg.prefix.is_empty() {
            String::new()
        } else {
            format!(" prefix={}", cfg.prefix)
        };
        let (store, description): (Arc<dyn ObjectStore>, String) = match cfg.backend {
            Backend::Local => {
                let dir = cfg.dir.clone().unwrap_or_else(|| data_dir.join("assets"));
                std::fs::create_dir_all(&dir).map_err(|e| StorageError::Io {
                    path: dir.clone(),
                    source: Arc::new(e),
                })?;
                let fs = LocalFileSystem::new_with_prefix(&dir)?
                    .with_automatic_cleanup(true)
                    .with_fsync(cfg.fsync);
                let shown = std::fs::canonicalize(&dir).unwrap_or(dir);
                (
                    Arc::new(fs),
                    format!(
                        "local {}{shown_prefix} fsync={}",
                        shown.display(),
                        cfg.fsync
                    ),
                )
            }
            Backend::S3 => {
                install_crypto_provider();
                let s = &cfg.s3;
                let mut b = AmazonS3Builder::from_env()
                    .with_bucket_name(&s.bucket)
                    .with_region(&s.region)
                    .with_allow_http(s.allow_http)
                    .with_virtual_hosted_style_request(s.virtual_hosted_style);
                if let Some(e) = &s.endpoint {
                    b = b.with_endpoint(e);
                }
                if let Some(k) = &s.access_key_id {
                    b = b.with_access_key_id(k);
                }
                if let Some(k) = &s.secret_access_key {
                    b = b.with_secret_access_key(k);
                }
                let endpoint = s.endpoint.as_deref().unwrap_or("aws");
                (
                    Arc::new(b.build()?),
                    format!(
                        "s3 bucket={} region={} endpoint={endpoint}{shown_prefix}",
                        s.bucket, s.region
                    ),
                )
            }
            Backend::Azure => {
                install_crypto_provider();
                let a = &cfg.azure;
                let mut b = MicrosoftAzureBuilder::from_env()
                    .with_container_name(&a.container)
                    .with_allow_http(a.allow_http)
                    .with_use_emulator(a.use_emulator);
                if !a.account.is_empty() {
                    b = b.with_account(&a.account);
                }
                if let Some(k) = &a.access_key {
                    b = b.with_access_key(k);
                }
                if let Some(e) = &a.endpoint {
                    b = b.with_endpoint(e.clone());
                }
                let endpoint = match (&a.endpoint, a.use_emulator) {
                    (Some(e), _) => e.clone(),
                    (None, true) => "emulator".to_owned(),
                    (None, false) => "azure".to_owned(),
                };
                (
                    Arc::new(b.build()?),
                    format!(
                        "azure account={} container={} endpoint={endpoint}{shown_prefix}",
                        if a.account.is_empty() {
                            "devstoreaccount1"
                        } else {
                            &a.account
                        },
                        a.container
                    ),
                )
            }
        };
        let cache = moka::future::Cache::builder()
            .max_capacity(cfg.read_cache_mib.saturating_mul(1 << 20))
            .weigher(|_k: &FragmentKey, f: &Arc<Fragment>| -> u32 {
                let bytes = f.data.len()
                    + f.samples.len() * size_of::<sluice_sdk::plugin::SampleEntry>()
                    + size_of::<Fragment>()
                    + 64;
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .support_invalidation_closures()
            .build();
        Ok(AssetStore {
            store,
            prefix,
            description,
            cache,
        })
    }

    /// The backend and where it points, for logs (no secrets).
    pub fn describe(&self) -> String {
        self.description.clone()
    }

    /// The object store underneath (for objects other than fragments).
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    fn path(&self, tail: &[&str]) -> Result<Path, StorageError> {
        let mut s = String::new();
        for part in self
            .prefix
            .iter()
            .map(String::as_str)
            .chain(tail.iter().copied())
        {
            if !s.is_empty() {
                s.push('/');
            }
            s.push_str(part);
        }
        Path::parse(&s).map_err(|e| StorageError::BadKey(e.to_string()))
    }

    fn incarnation_path(&self, channel: &str, incarnation: u64) -> Result<Path, StorageError> {
        check_channel(channel)?;
        self.path(&["ch", channel, &format!("{incarnation:016x}")])
    }

    /// The object key of a fragment:
    /// `{prefix}/ch/{channel}/{incarnation:016x}/t/{track}/f/{start:020}`.
    pub fn fragment_path(&self, key: &FragmentKey) -> Result<Path, StorageError> {
        check_channel(&key.channel)?;
        self.path(&[
            "ch",
            &key.channel,
            &format!("{:016x}", key.incarnation),
            "t",
            &key.track.to_string(),
            "f",
            &format!("{:020}", key.start),
        ])
    }

    /// Writes `fragment` under `key` (replacing an object already there).
    /// Returns once the object is durable (see the module docs).
    pub async fn put_fragment(
        &self,
        key: &FragmentKey,
        fragment: &Fragment,
    ) -> Result<(), StorageError> {
        if let Some(why) = codec::check_fragment(fragment) {
            return Err(StorageError::BadFragment(why));
        }
        if key.start != fragment.start {
            return Err(StorageError::BadFragment(format!(
                "key start {} differs from the fragment's {}",
                key.start, fragment.start
            )));
        }
        let path = self.fragment_path(key)?;
        let payload: PutPayload = [codec::encode_head(fragment), fragment.data.clone()]
            .into_iter()
            .collect();
        self.store.put(&path, payload).await?;
        self.cache.invalidate(key).await;
        Ok(())
    }

    /// Reads the fragment under `key`: `None` if there is none, the header,
    /// checksum and start checked ([`StorageError::Corrupt`] otherwise).
    /// Cached; concurrent reads of one key make one request.
    pub async fn get_fragment(
        &self,
        key: &FragmentKey,
    ) -> Result<Option<Arc<Fragment>>, StorageError> {
        let path = self.fragment_path(key)?;
        let store = Arc::clone(&self.store);
        let start = key.start;
        let loaded = self
            .cache
            .try_get_with(key.clone(), async move {
                let bytes = match store.get(&path).await {
                    Ok(r) => r.bytes().await,
                    Err(e) => Err(e),
                };
                let bytes = match bytes {
                    Ok(b) => b,
                    Err(object_store::Error::NotFound { .. }) => return Err(Miss::Absent),
                    Err(e) => return Err(Miss::Failed(e.into())),
                };
                let corrupt = |reason: String| {
                    Miss::Failed(StorageError::Corrupt {
                        key: path.to_string(),
                        reason,
                    })
                };
                let f = decode_fragment(bytes).map_err(|e| corrupt(e.to_string()))?;
                if f.start != start {
                    return Err(corrupt(format!("holds start {}", f.start)));
                }
                Ok(Arc::new(f))
            })
            .await;
        match loaded {
            Ok(f) => Ok(Some(f)),
            Err(miss) => match &*miss {
                Miss::Absent => Ok(None),
                Miss::Failed(e) => Err(e.clone()),
            },
        }
    }

    /// Deletes the fragments under `keys` (batched where the backend can);
    /// a missing object is not an error. Evicts them from the read cache.
    pub async fn delete_fragments(&self, keys: Vec<FragmentKey>) -> Result<(), StorageError> {
        let paths = keys
            .iter()
            .map(|k| self.fragment_path(k))
            .collect::<Result<Vec<_>, _>>()?;
        let result = self
            .delete_paths(futures_util::stream::iter(paths.into_iter().map(Ok)).boxed())
            .await;
        for k in &keys {
            self.cache.invalidate(k).await;
        }
        result
    }

    async fn delete_paths(
        &self,
        paths: futures_util::stream::BoxStream<'static, object_store::Result<Path>>,
    ) -> Result<(), StorageError> {
        let mut deleted = self.store.delete_stream(paths);
        while let Some(r) = deleted.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The fragments stored for one channel incarnation, as `(track,
    /// start)` sorted. Objects that are not fragments are left out.
    pub async fn list_fragments(
        &self,
        channel: &str,
        incarnation: u64,
    ) -> Result<Vec<(u32, u64)>, StorageError> {
        let base = self.incarnation_path(channel, incarnation)?;
        let depth = base.parts().count();
        let mut out: Vec<(u32, u64)> = self
            .store
            .list(Some(&base))
            .try_filter_map(|meta| async move {
                let parts: Vec<_> = meta.location.parts().skip(depth).collect();
                Ok(match parts.as_slice() {
                    [t, track, f, start] if t.as_ref() == "t" && f.as_ref() == "f" => {
                        parse_fragment_name(track.as_ref(), start.as_ref())
                    }
                    _ => None,
                })
            })
            .try_collect()
            .await?;
        out.sort_unstable();
        Ok(out)
    }

    /// Deletes every object of one channel incarnation (fragments and
    /// anything else under its prefix) and evicts its fragments from the
    /// read cache.
    pub async fn delete_incarnation(
        &self,
        channel: &str,
        incarnation: u64,
    ) -> Result<(), StorageError> {
        let base = self.incarnation_path(channel, incarnation)?;
        let listed = self.store.list(Some(&base)).map_ok(|m| m.location).boxed();
        let result = self.delete_paths(listed).await;
        let channel = channel.to_owned();
        // Only fails when invalidation closures are not enabled; they are.
        let _ = self.cache.invalidate_entries_if(move |k, _| {
            k.channel == channel && k.incarnation == incarnation
        });
        result
    }

    /// Writes and deletes a small probe object: the store is reachable and
    /// writable (readiness).
    pub async fn check_writable(&self) -> Result<(), StorageError> {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id)
            .map_err(|e| StorageError::Config(format!("no randomness for the probe name: {e}")))?;
        let path = self.path(&["probe", &format!("{:016x}", u64::from_le_bytes(id))])?;
        self.store
            .put(&path, PutPayload::from_static(b"sluice probe\n"))
            .await?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// `(track, start)` from the key segments of a fragment object, if they
/// are exactly as [`AssetStore::fragment_path`] writes them.
fn parse_fragment_name(track: &str, start: &str) -> Option<(u32, u64)> {
    let t: u32 = track.parse().ok()?;
    let s: u64 = start.parse().ok()?;
    (t.to_string() == track && start.len() == 20 && start.bytes().all(|b| b.is_ascii_digit()))
        .then_some((t, s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use sluice_sdk::plugin::SampleEntry;

    fn fragment(start: u64, sizes: &[u32], discontinuity: bool) -> Fragment {
        let total: u32 = sizes.iter().sum();
        let data: Vec<u8> = (0..total)
            .map(|i| i.wrapping_mul(7).wrapping_add(start as u32) as u8)
            .collect();
        Fragment {
            start,
            duration: 3000 * sizes.len() as u64,
            samples: sizes
                .iter()
                .enumerate()
                .map(|(i, &size)| SampleEntry {
                    duration: 3000,
                    size,
                    composition_offset: if i % 2 == 0 { -1500 } else { 6000 },
                    keyframe: i == 0,
                })
                .collect(),
            data: Bytes::from(data),
            discontinuity,
        }
    }

    fn same(a: &Fragment, b: &Fragment) {
        assert_eq!(a.start, b.start);
        assert_eq!(a.duration, b.duration);
        assert_eq!(a.samples, b.samples);
        assert_eq!(a.data, b.data);
        assert_eq!(a.discontinuity, b.discontinuity);
    }

    #[test]
    fn codec_round_trip() {
        for f in [
            fragment(0, &[], false),
            fragment(90_000, &[10, 0, 300, 5], true),
            fragment(u64::MAX, &[1], false),
        ] {
            let bytes = encode_fragment(&f);
            assert_eq!(
                bytes.len(),
                codec::HEADER_LEN + codec::RECORD_LEN * f.samples.len() + f.data.len()
            );
            assert_eq!(&bytes[..4], b"SLF1");
            let back = decode_fragment(bytes.clone()).expect("decodes");
            same(&f, &back);
            // The payload is a slice of the object, not a copy.
            if !back.data.is_empty() {
                let off = back.data.as_ptr() as usize - bytes.as_ptr() as usize;
                assert_eq!(off, bytes.len() - back.data.len());
            }
            let h = decode_header(&bytes).expect("header");
            assert_eq!(h.start, f.start);
            assert_eq!(h.sample_count as usize, f.samples.len());
            assert_eq!(h.discontinuity, f.discontinuity);
        }
    }

    #[test]
    fn every_truncation_and_flipped_bit_is_an_error() {
        let bytes = encode_fragment(&fragment(1234, &[3, 1, 4, 1, 5], true));
        for n in 0..bytes.len() {
            assert!(
                decode_fragment(bytes.slice(..n)).is_err(),
                "prefix of {n} bytes decoded"
            );
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(decode_fragment(Bytes::from(longer)).is_err());
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut v = bytes.to_vec();
                v[i] ^= 1 << bit;
                assert!(
                    decode_fragment(Bytes::from(v)).is_err(),
                    "bit {bit} of byte {i} flipped decoded"
                );
            }
        }
    }

    #[test]
    fn hostile_headers_are_bounded() {
        // A header claiming u32::MAX samples and a huge payload: refused on
        // length before anything is allocated.
        let mut v = encode_fragment(&fragment(0, &[], false)).to_vec();
        v[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_fragment(Bytes::from(v.clone())),
            Err(CodecError::Length { .. })
        ));
        v[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            decode_fragment(Bytes::from(v)),
            Err(CodecError::Length { expected: None, .. })
        ));
    }

    #[test]
    fn sizes_must_add_up() {
        // A consistent checksum over inconsistent sizes is still refused.
        let mut f = fragment(0, &[4, 4], false);
        f.samples[1].size = 5;
        assert!(codec::check_fragment(&f).is_some());
        let bytes = encode_fragment(&f);
        assert_eq!(
            decode_fragment(bytes).err(),
            Some(CodecError::Sizes { sum: 9, payload: 8 })
        );
    }

    #[test]
    fn keys_refuse_bad_names() {
        for bad in [
            "",
            "Ch1",
            "../x",
            "a/b",
            "-a",
            "a b",
            "ch1\n",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(FragmentKey::new(bad, 1, 1, 0), Err(StorageError::BadKey(_))),
                "{bad:?} accepted"
            );
        }
        assert!(FragmentKey::new("ch-1", 1, 1, 0).is_ok());
        for bad in ["/a", "a/", "a//b", "A", "a.b", ".."] {
            let cfg = StorageConfig {
                prefix: bad.into(),
                ..StorageConfig::default()
            };
            assert!(cfg.validate().is_err(), "prefix {bad:?} accepted");
        }
    }

    fn local(dir: &FsPath, prefix: &str) -> AssetStore {
        let cfg = StorageConfig {
            prefix: prefix.into(),
            ..StorageConfig::default()
        };
        AssetStore::open(&cfg, dir).expect("open")
    }

    #[tokio::test]
    async fn local_put_get_list_delete() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = local(tmp.path(), "sluice/test-1");
        assert!(
            store.describe().starts_with("local /"),
            "{}",
            store.describe()
        );
        store.check_writable().await.expect("writable");
        let key = |t, s| FragmentKey::new("ch1", 0xabc, t, s).expect("key");
        assert_eq!(
            store.fragment_path(&key(2, 90_000)).expect("path").as_ref(),
            "sluice/test-1/ch/ch1/0000000000000abc/t/2/f/00000000000000090000"
        );
        let frags = [(1, 0), (1, 180_000), (2, 90_000), (1, 90_000), (2, 0)];
        for &(t, s) in &frags {
            store
                .put_fragment(&key(t, s), &fragment(s, &[100, 20, 3], s == 0))
                .await
                .expect("put");
        }
        // On disk where the layout says.
        assert!(
            tmp.path()
                .join("assets/sluice/test-1/ch/ch1/0000000000000abc/t/1/f/00000000000000180000")
                .is_file()
        );
        for &(t, s) in &frags {
            let got = store
                .get_fragment(&key(t, s))
                .await
                .expect("get")
                .expect("present");
            same(&got, &fragment(s, &[100, 20, 3], s == 0));
            // Cached: the same Arc.
            let again = store
                .get_fragment(&key(t, s))
                .await
                .expect("get")
                .expect("present");
            assert!(Arc::ptr_eq(&got, &again));
        }
        assert!(store.get_fragment(&key(3, 0)).await.expect("get").is_none());
        assert_eq!(
            store.list_fragments("ch1", 0xabc).await.expect("list"),
            vec![(1, 0), (1, 90_000), (1, 180_000), (2, 0), (2, 90_000)]
        );
        assert!(
            store
                .list_fragments("ch1", 0xabd)
                .await
                .expect("list")
                .is_empty()
        );
        // A start that differs from the key, and bad sizes, are refused.
        assert!(matches!(
            store
                .put_fragment(&key(1, 5), &fragment(6, &[1], false))
                .await,
            Err(StorageError::BadFragment(_))
        ));
        let mut bad = fragment(7, &[1], false);
        bad.samples[0].size = 2;
        assert!(matches!(
            store.put_fragment(&key(1, 7), &bad).await,
            Err(StorageError::BadFragment(_))
        ));

        store
            .delete_fragments(vec![key(1, 0), key(2, 90_000), key(9, 9)])
            .await
            .expect("delete (a missing one is fine)");
        assert!(store.get_fragment(&key(1, 0)).await.expect("get").is_none());
        assert_eq!(
            store.list_fragments("ch1", 0xabc).await.expect("list"),
            vec![(1, 90_000), (1, 180_000), (2, 0)]
        );
        store
            .delete_incarnation("ch1", 0xabc)
            .await
            .expect("delete incarnation");
        assert!(
            store
                .list_fragments("ch1", 0xabc)
                .await
                .expect("list")
                .is_empty()
        );
        assert!(
            store
                .get_fragment(&key(1, 90_000))
                .await
                .expect("get")
                .is_none()
        );
        // Empty directories are cleaned up.
        assert!(
            !tmp.path()
                .join("assets/sluice/test-1/ch/ch1/0000000000000abc/t/1")
                .exists()
        );
        assert!(matches!(
            store.list_fragments("../etc", 1).await,
            Err(StorageError::BadKey(_))
        ));
    }

    #[tokio::test]
    async fn corrupt_object_on_disk() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = local(tmp.path(), "");
        let key = FragmentKey::new("ch1", 1, 1, 2000).expect("key");
        store
            .put_fragment(&key, &fragment(2000, &[50, 50], false))
            .await
            .expect("put");
        let file = tmp
            .path()
            .join("assets")
            .join(store.fragment_path(&key).expect("path").as_ref());
        let mut bytes = std::fs::read(&file).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&file, &bytes).expect("write");
        match store.get_fragment(&key).await {
            Err(StorageError::Corrupt { key: k, reason }) => {
                assert!(k.ends_with("/f/00000000000000002000"), "{k}");
                assert!(reason.contains("checksum"), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        // A torn (truncated) object, and one under the wrong start.
        std::fs::write(&file, &bytes[..30]).expect("write");
        assert!(matches!(
            store.get_fragment(&key).await,
            Err(StorageError::Corrupt { .. })
        ));
        std::fs::write(&file, encode_fragment(&fragment(4000, &[1], false))).expect("write");
        assert!(matches!(
            store.get_fragment(&key).await,
            Err(StorageError::Corrupt { .. })
        ));
        // A good object replaces it and reads.
        store
            .put_fragment(&key, &fragment(2000, &[50, 50], false))
            .await
            .expect("put");
        assert!(store.get_fragment(&key).await.expect("get").is_some());
    }

    #[tokio::test]
    async fn concurrent_reads_share_one_load() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = local(tmp.path(), "p");
        let key = FragmentKey::new("ch1", 1, 1, 0).expect("key");
        store
            .put_fragment(&key, &fragment(0, &[1000], true))
            .await
            .expect("put");
        let reads: Vec<_> = (0..8)
            .map(|_| {
                let s = store.clone();
                let k = key.clone();
                tokio::spawn(async move { s.get_fragment(&k).await })
            })
            .collect();
        let mut got = Vec::new();
        for r in reads {
            got.push(r.await.expect("join").expect("get").expect("present"));
        }
        assert!(got.iter().all(|f| Arc::ptr_eq(f, &got[0])));
    }
}
