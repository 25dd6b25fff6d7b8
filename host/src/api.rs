//! The management API (admin listener, JSON): channels, programs, assets,
//! locators and streaming endpoints, as CONTRACT.md fixes them. Errors are `{"error": {"code", "message"}}` with
//! 400, 401, 404 or 409; bodies are bounded; unknown fields are refused;
//! every change is logged with who (peer) and what.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode, header};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::archive::Archive;
use crate::channel::{Channel, ChannelState, Channels};
use crate::config::{DeliveryConfig, IngestLimits, valid_name};
use crate::delivery::Body;
use crate::store::{
    AssetRecord, ChannelRecord, LocatorRecord, ProgramRecord, ProgramState, RecordingStart, Store,
    StoreError,
};
use crate::timefmt::{format_iso_duration, parse_iso_duration_ms, parse_rfc3339_ms};

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

/// The management API.
pub struct Api {
    channels: Arc<Channels>,
    store: Arc<Store>,
    archive: Arc<Archive>,
    limits: IngestLimits,
    delivery: DeliveryConfig,
    /// Bound delivery port (for URLs in responses).
    pub http_port: u16,
    /// Bound RTMP port.
    pub rtmp_port: u16,
    /// What `/readyz` checks (none: always ready).
    pub readiness: Option<Arc<crate::readiness::Readiness>>,
    token: Option<String>,
}

/// An API failure.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn bad(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
        }
    }

    fn not_found(what: &str) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: format!("{what} not found"),
        }
    }

    fn conflict(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::CONFLICT,
            code: "conflict",
            message: message.into(),
        }
    }

    fn store(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => ApiError::conflict(m),
            StoreError::NotFound(what) => ApiError {
                status: StatusCode::NOT_FOUND,
                code: "not_found",
                message: format!("{what} not found"),
            },
            e => ApiError::internal(e),
        }
    }

    fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!(error = %message, "api internal error");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "internal error".into(),
        }
    }
}

type ApiResult = Result<(StatusCode, Option<Value>), ApiError>;

/// `POST /api/v1/channels` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateChannel {
    name: String,
    #[serde(default)]
    input: InputSpec,
    #[serde(default)]
    preview: PreviewSpec,
    fragment_ms: Option<u32>,
    window_ms: Option<u64>,
    epoch: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSpec {
    key: Option<String>,
    allow: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewSpec {
    allow: Option<Vec<String>>,
}

/// `POST /api/v1/assets` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAsset {
    name: String,
}

/// `POST /api/v1/channels/{name}/programs` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateProgram {
    name: String,
    asset: String,
    archive_window: String,
    manifest_name: Option<String>,
}

/// `POST /api/v1/locators` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateLocator {
    id: Option<String>,
    asset: String,
    start: Option<String>,
    expiry: Option<String>,
}

/// Shortest and longest archive window (CONTRACT: PT5M..PT25H).
const ARCHIVE_WINDOW_MS: std::ops::RangeInclusive<u64> = 300_000..=90_000_000;

impl Api {
    /// The API over `channels`, persisted in `store`. `token`, when set, is
    /// required as `Authorization: Bearer TOKEN`.
    pub fn new(
        channels: Arc<Channels>,
        store: Arc<Store>,
        archive: Arc<Archive>,
        limits: IngestLimits,
        delivery: DeliveryConfig,
        token: Option<String>,
    ) -> Self {
        Api {
            channels,
            store,
            archive,
            limits,
            delivery,
            http_port: 0,
            rtmp_port: 0,
            readiness: None,
            token,
        }
    }

    /// Answers one request.
    pub async fn handle(
        &self,
        req: http::Request<hyper::body::Incoming>,
        peer: SocketAddr,
    ) -> http::Response<Body> {
        let path = req.uri().path().to_owned();
        if path == "/healthz" {
            return text(StatusCode::OK, "ok\n");
        }
        if path == "/readyz" {
            return match &self.readiness {
                Some(r) => r.response().await,
                None => text(StatusCode::OK, "ready\n"),
            };
        }
        if path == "/metrics" {
            return http::Response::builder()
                .header(
                    header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
                .header(header::CACHE_CONTROL, "no-store")
                .body(Body::text(crate::metrics::metrics().encode()))
                .unwrap_or_default();
        }
        if let Some(token) = &self.token {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if given.is_none_or(|g| !constant_time_eq(g.as_bytes(), token.as_bytes())) {
                return error(ApiError {
                    status: StatusCode::UNAUTHORIZED,
                    code: "unauthorized",
                    message: "missing or invalid bearer token".into(),
                });
            }
        }
        let host = request_host(&req);
        let method = req.method().clone();
        let body = match read_body(req).await {
            Ok(b) => b,
            Err(e) => return error(e),
        };
        let result = self.route(&method, &path, &body, peer, &host).await;
        match result {
            Ok((status, Some(v))) => json_response(status, &v),
            Ok((status, None)) => http::Response::builder()
                .status(status)
                .body(Body::empty())
                .unwrap_or_default(),
            Err(e) => error(e),
        }
    }

    async fn route(
        &self,
        method: &Method,
        path: &str,
        body: &Bytes,
        peer: SocketAddr,
        host: &str,
    ) -> ApiResult {
        let Some(rest) = path.strip_prefix("/api/v1/") else {
            return Err(ApiError::not_found("resource"));
        };
        let parts: Vec<&str> = rest.split('/').collect();
        match (method, parts.as_slice()) {
            (&Method::GET, ["channels"]) => Ok((
                StatusCode::OK,
                Some(Value::Array(
                    self.channels
                        .list()
                        .iter()
                        .map(|c| self.channel_json(c, host))
                        .collect(),
                )),
            )),
            (&Method::POST, ["channels"]) => self.create_channel(body, peer, host),
            (&Method::GET, ["channels", name]) => {
                let c = self.channel(name)?;
                Ok((StatusCode::OK, Some(self.channel_json(&c, host))))
            }
            (&Method::DELETE, ["channels", name]) => self.delete_channel(name, peer),
            (&Method::GET, ["channels", name, "programs"]) => {
                let c = self.channel(name)?;
                let list = self
                    .store
                    .programs(Some(&c.name))
                    .map_err(ApiError::store)?;
                Ok((
                    StatusCode::OK,
                    Some(Value::Array(
                        list.iter().map(|p| self.program_json(p, host)).collect(),
                    )),
                ))
            }
            (&Method::POST, ["channels", name, "programs"]) => {
                self.create_program(name, body, peer, host)
            }
            (&Method::GET, ["channels", c, "programs", p]) => {
                let p = self.program(c, p)?;
                Ok((StatusCode::OK, Some(self.program_json(&p, host))))
            }
            (&Method::DELETE, ["channels", c, "programs", p]) => {
                let p = self.program(c, p)?;
                self.store
                    .delete_program(&p.channel, &p.name)
                    .map_err(ApiError::store)?;
                tracing::info!(%peer, channel = %p.channel, program = %p.name, "program deleted");
                Ok((StatusCode::NO_CONTENT, None))
            }
            (&Method::POST, ["channels", c, "programs", p, action]) => {
                let p = self.program(c, p)?;
                let p = match *action {
                    "start" => self.start_program(&p, peer)?,
                    "stop" => self.stop_program(&p, peer).await?,
                    _ => return Err(ApiError::not_found("action")),
                };
                Ok((StatusCode::OK, Some(self.program_json(&p, host))))
            }
            (&Method::POST, ["channels", name, action]) => {
                let c = self.channel(name)?;
                match *action {
                    "start" => self.set_state(&c, ChannelState::Running, peer)?,
                    "stop" => self.set_state(&c, ChannelState::Stopped, peer)?,
                    "reset" => {
                        let incarnation = crate::store::new_incarnation();
                        self.store
                            .reset_channel(&c.name, incarnation)
                            .map_err(ApiError::store)?;
                        c.reset(incarnation);
                        tracing::info!(%peer, channel = %c.name, "channel reset");
                    }
                    _ => return Err(ApiError::not_found("action")),
                }
                Ok((StatusCode::OK, Some(self.channel_json(&c, host))))
            }
            (&Method::GET, ["assets"]) => {
                let list = self.store.assets().map_err(ApiError::store)?;
                Ok((
                    StatusCode::OK,
                    Some(Value::Array(
                        list.iter()
                            .filter(|a| !a.deleting)
                            .map(|a| self.asset_json(a))
                            .collect(),
                    )),
                ))
            }
            (&Method::POST, ["assets"]) => {
                let req: CreateAsset = parse_body(body, "asset")?;
                check_name("asset name", &req.name)?;
                let a = self
                    .store
                    .insert_asset(&req.name, crate::channel::now_ms())
                    .map_err(ApiError::store)?;
                tracing::info!(%peer, asset = %a.name, "asset created");
                Ok((StatusCode::CREATED, Some(self.asset_json(&a))))
            }
            (&Method::GET, ["assets", name]) => {
                let a = self.asset(name)?;
                Ok((StatusCode::OK, Some(self.asset_json(&a))))
            }
            (&Method::DELETE, ["assets", name]) => {
                let a = self.asset(name)?;
                self.store
                    .begin_delete_asset(&a.name)
                    .map_err(ApiError::store)?;
                self.archive
                    .delete_asset_content(&a.name)
                    .await
                    .map_err(ApiError::internal)?;
                tracing::info!(%peer, asset = %a.name, "asset deleted");
                Ok((StatusCode::NO_CONTENT, None))
            }
            (&Method::GET, ["locators"]) => {
                let list = self.store.locators().map_err(ApiError::store)?;
                Ok((
                    StatusCode::OK,
                    Some(Value::Array(
                        list.iter().map(|l| self.locator_json(l, host)).collect(),
                    )),
                ))
            }
            (&Method::POST, ["locators"]) => self.create_locator(body, peer, host),
            (&Method::GET, ["locators", id]) => {
                let l = self.locator(id)?;
                Ok((StatusCode::OK, Some(self.locator_json(&l, host))))
            }
            (&Method::DELETE, ["locators", id]) => {
                let l = self.locator(id)?;
                if !self.store.delete_locator(&l.id).map_err(ApiError::store)? {
                    return Err(ApiError::not_found("locator"));
                }
                self.archive.locator_removed(&l.id);
                tracing::info!(%peer, locator = %l.id, "locator deleted");
                Ok((StatusCode::NO_CONTENT, None))
            }
            (&Method::GET, ["streaming-endpoints"]) => {
                Ok((StatusCode::OK, Some(self.streaming_endpoints_json())))
            }
            _ => Err(ApiError::not_found("resource")),
        }
    }

    fn program(&self, channel: &str, name: &str) -> Result<ProgramRecord, ApiError> {
        let c = self.channel(channel)?;
        if !valid_name(name) {
            return Err(ApiError::not_found("program"));
        }
        self.store
            .program(&c.name, name)
            .map_err(ApiError::store)?
            .ok_or_else(|| ApiError::not_found("program"))
    }

    fn asset(&self, name: &str) -> Result<AssetRecord, ApiError> {
        if !valid_name(name) {
            return Err(ApiError::not_found("asset"));
        }
        self.store
            .asset(name)
            .map_err(ApiError::store)?
            .filter(|a| !a.deleting)
            .ok_or_else(|| ApiError::not_found("asset"))
    }

    fn locator(&self, id: &str) -> Result<LocatorRecord, ApiError> {
        if !valid_name(id) {
            return Err(ApiError::not_found("locator"));
        }
        self.archive
            .locator(id)
            .ok_or_else(|| ApiError::not_found("locator"))
    }

    fn create_program(
        &self,
        channel: &str,
        body: &Bytes,
        peer: SocketAddr,
        host: &str,
    ) -> ApiResult {
        let c = self.channel(channel)?;
        let req: CreateProgram = parse_body(body, "program")?;
        check_name("program name", &req.name)?;
        check_name("asset name", &req.asset)?;
        let manifest_name = req.manifest_name.unwrap_or_else(|| req.name.clone());
        check_name("manifest_name", &manifest_name)?;
        let window = parse_iso_duration_ms(&req.archive_window).map_err(|e| {
            ApiError::bad(format!("bad archive_window {:?}: {e}", req.archive_window))
        })?;
        if !ARCHIVE_WINDOW_MS.contains(&window) {
            return Err(ApiError::bad(format!(
                "archive_window {} is outside PT5M..PT25H",
                req.archive_window
            )));
        }
        let p = ProgramRecord {
            channel: c.name.clone(),
            name: req.name,
            asset: req.asset,
            manifest_name,
            archive_window_ms: window,
            state: ProgramState::Created,
            created_ms: crate::channel::now_ms(),
            started_ms: None,
            stopped_ms: None,
        };
        self.store.insert_program(&p).map_err(ApiError::store)?;
        tracing::info!(%peer, channel = %p.channel, program = %p.name, asset = %p.asset, window_ms = window, "program created");
        Ok((StatusCode::CREATED, Some(self.program_json(&p, host))))
    }

    fn start_program(
        &self,
        p: &ProgramRecord,
        peer: SocketAddr,
    ) -> Result<ProgramRecord, ApiError> {
        let c = self.channel(&p.channel)?;
        let start = RecordingStart {
            incarnation: c.incarnation(),
            fragment_ms: c.fragment_ms,
            from_ms: c.recording_start_ms(),
            epoch_ms: c.epoch_ms(),
        };
        let now = crate::channel::now_ms();
        let started = self
            .store
            .start_program(&p.channel, &p.name, now, &start)
            .map_err(ApiError::store)?;
        let asset = self
            .store
            .asset(&p.asset)
            .map_err(ApiError::store)?
            .ok_or_else(|| ApiError::not_found("asset"))?;
        self.archive.program_started(&asset);
        tracing::info!(%peer, channel = %p.channel, program = %p.name, from_ms = start.from_ms, "program started");
        Ok(started)
    }

    async fn stop_program(
        &self,
        p: &ProgramRecord,
        peer: SocketAddr,
    ) -> Result<ProgramRecord, ApiError> {
        let c = self.channel(&p.channel)?;
        if p.state != ProgramState::Running {
            return Err(ApiError::conflict(format!(
                "program {} is {}, not running",
                p.name,
                p.state.as_str()
            )));
        }
        let (from, to) = self.archive.stop_range(&p.asset, &c).unwrap_or((0, 0));
        let stopped = self
            .store
            .stop_program(&p.channel, &p.name, crate::channel::now_ms(), from, to)
            .map_err(ApiError::store)?;
        self.archive.program_stopped(&p.asset, from, to).await;
        tracing::info!(%peer, channel = %p.channel, program = %p.name, from_ms = from, to_ms = to, "program stopped");
        Ok(stopped)
    }

    fn create_locator(&self, body: &Bytes, peer: SocketAddr, host: &str) -> ApiResult {
        let req: CreateLocator = parse_body(body, "locator")?;
        let id = match req.id {
            Some(id) => {
                check_name("locator id", &id)?;
                id
            }
            None => generate_key().map_err(ApiError::internal)?,
        };
        check_name("asset name", &req.asset)?;
        let time = |field: &str, v: Option<String>| -> Result<Option<i64>, ApiError> {
            v.map(|s| {
                parse_rfc3339_ms(&s).ok_or_else(|| {
                    ApiError::bad(format!("bad {field} {s:?}: not an RFC 3339 time"))
                })
            })
            .transpose()
        };
        let start_ms = time("start", req.start)?;
        let expiry_ms = time("expiry", req.expiry)?;
        if let (Some(a), Some(b)) = (start_ms, expiry_ms)
            && a >= b
        {
            return Err(ApiError::bad("start must be before expiry"));
        }
        let l = LocatorRecord {
            id,
            asset: req.asset,
            start_ms,
            expiry_ms,
            created_ms: crate::channel::now_ms(),
        };
        self.store.insert_locator(&l).map_err(ApiError::store)?;
        self.archive.locator_added(l.clone());
        tracing::info!(%peer, locator = %l.id, asset = %l.asset, "locator created");
        Ok((StatusCode::CREATED, Some(self.locator_json(&l, host))))
    }

    fn program_json(&self, p: &ProgramRecord, _host: &str) -> Value {
        json!({
            "name": p.name,
            "channel": p.channel,
            "asset": p.asset,
            "manifest_name": p.manifest_name,
            "archive_window": format_iso_duration(p.archive_window_ms),
            "archive_window_ms": p.archive_window_ms,
            "state": p.state,
            "created": format_rfc3339(Some(p.created_ms)),
            "started": format_rfc3339(p.started_ms),
            "stopped": format_rfc3339(p.stopped_ms),
        })
    }

    fn asset_json(&self, a: &AssetRecord) -> Value {
        let (state, duration_ms, fragments, pending) = match self.archive.asset_summary(&a.name) {
            Some((true, d, n, p)) => ("recording", d, n, p),
            Some((false, d, n, p)) => ("recorded", d, n, p),
            None => ("empty", 0, 0, 0),
        };
        let rec = a.recording.as_ref();
        json!({
            "name": a.name,
            "created": format_rfc3339(Some(a.created_ms)),
            "state": state,
            "channel": rec.map(|r| r.channel.clone()),
            "manifest_name": rec.map(|r| r.manifest_name.clone()),
            "duration_ms": duration_ms,
            "fragments": fragments,
            "pending": pending,
        })
    }

    fn locator_json(&self, l: &LocatorRecord, host: &str) -> Value {
        let manifest = self
            .archive
            .manifest_name(&l.asset)
            .unwrap_or_else(|| l.asset.clone());
        let base = format!("http://{host}:{}/{}/{manifest}.ism", self.http_port, l.id);
        json!({
            "id": l.id,
            "asset": l.asset,
            "start": format_rfc3339(l.start_ms),
            "expiry": format_rfc3339(l.expiry_ms),
            "urls": format_urls(&base),
        })
    }

    fn streaming_endpoints_json(&self) -> Value {
        json!([{
            "name": "http",
            "scheme": "http",
            "port": self.http_port,
            "cors_origins": [self.delivery.cors_origin],
            "allow": self.delivery.allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "host_names": self.delivery.host_names,
            "cache": {
                "segments": "public, max-age=31536000, immutable",
                "live_manifests": "public, max-age=(half a fragment)",
                "errors": "no-store or public, max-age=5",
            },
            "cache_mib": self.delivery.cache_mib,
        }])
    }

    fn channel(&self, name: &str) -> Result<Arc<Channel>, ApiError> {
        if !valid_name(name) {
            return Err(ApiError::not_found("channel"));
        }
        self.channels
            .get(name)
            .ok_or_else(|| ApiError::not_found("channel"))
    }

    fn create_channel(&self, body: &Bytes, peer: SocketAddr, host: &str) -> ApiResult {
        let req: CreateChannel = parse_body(body, "channel")?;
        check_name("channel name", &req.name)?;
        let key = match req.input.key {
            Some(k) if valid_key(&k) => k,
            Some(_) => return Err(ApiError::bad("bad key: 8 to 64 of [A-Za-z0-9-]")),
            None => generate_key().map_err(ApiError::internal)?,
        };
        let fragment_ms = req.fragment_ms.unwrap_or(2000);
        if !(500..=20_000).contains(&fragment_ms) {
            return Err(ApiError::bad("fragment_ms must be 500..=20000"));
        }
        let window_ms = req.window_ms.unwrap_or(120_000);
        if !(10_000..=3_600_000).contains(&window_ms) {
            return Err(ApiError::bad("window_ms must be 10000..=3600000"));
        }
        let record = ChannelRecord {
            name: req.name,
            key,
            input_allow: parse_allow(req.input.allow.as_deref())?,
            preview_allow: parse_allow(req.preview.allow.as_deref())?,
            fragment_ms,
            window_ms,
            state: ChannelState::Stopped.as_str().to_owned(),
            created_ms: crate::channel::now_ms(),
            incarnation: 0,
            epoch_ms: req
                .epoch
                .as_deref()
                .map(|e| {
                    parse_rfc3339_ms(e).ok_or_else(|| {
                        ApiError::bad(format!("bad epoch {e:?}: not an RFC 3339 time"))
                    })
                })
                .transpose()?,
        };
        let record = ChannelRecord {
            incarnation: crate::store::new_incarnation(),
            ..record
        };
        if self.channels.get(&record.name).is_some()
            || !self
                .store
                .insert_channel(&record)
                .map_err(ApiError::internal)?
        {
            return Err(ApiError::conflict(format!(
                "channel {} exists",
                record.name
            )));
        }
        let channel = self
            .channels
            .insert(Channel::from_record(&record, &self.limits));
        self.archive.attach(&channel);
        tracing::info!(%peer, channel = %channel.name, "channel created");
        Ok((StatusCode::CREATED, Some(self.channel_json(&channel, host))))
    }

    fn delete_channel(&self, name: &str, peer: SocketAddr) -> ApiResult {
        let c = self.channel(name)?;
        if c.state() != ChannelState::Stopped {
            return Err(ApiError::conflict(format!(
                "channel {name} is {}: stop it first",
                c.state().as_str()
            )));
        }
        self.store.delete_channel(name).map_err(ApiError::store)?;
        self.channels.remove(name);
        tracing::info!(%peer, channel = %name, "channel deleted");
        Ok((StatusCode::NO_CONTENT, None))
    }

    fn set_state(
        &self,
        c: &Channel,
        state: ChannelState,
        peer: SocketAddr,
    ) -> Result<(), ApiError> {
        self.store
            .set_channel_state_checked(&c.name, state.as_str())
            .map_err(ApiError::store)?;
        c.set_state(state);
        tracing::info!(%peer, channel = %c.name, state = state.as_str(), "channel state");
        Ok(())
    }

    /// The channel object of CONTRACT.md.
    fn channel_json(&self, c: &Channel, host: &str) -> Value {
        let http = format!("http://{host}:{}", self.http_port);
        let preview = format!("{http}/preview/{}/preview.isml", c.name);
        let mut preview_urls = format_urls(&preview);
        preview_urls["page"] = json!(format!("{http}/preview/{}/", c.name));
        json!({
            "name": c.name,
            "state": c.state(),
            "fragment_ms": c.fragment_ms,
            "window_ms": c.window_ms,
            "epoch": format_rfc3339(c.record().epoch_ms),
            "input": {
                "key": c.key,
                "allow": c.input_allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
            },
            "preview": {
                "allow": c.preview_allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "urls": preview_urls,
            },
            "ingest": {
                "rtmp": format!("rtmp://{host}:{}/live/{}/{}", self.rtmp_port, c.name, c.key),
                "fmp4": format!("{http}/ingest/{}/{}.isml", c.name, c.key),
            },
            "publishing": c.publishing(),
            "stats": c.stats.json(),
        })
    }
}

/// The delivery URLs of every format below a manifest root (`.../X.ism`).
fn format_urls(base: &str) -> Value {
    json!({
        "smooth": format!("{base}/Manifest"),
        "hls": format!("{base}/Manifest(format=m3u8-aapl)"),
        "hls_cmaf": format!("{base}/Manifest(format=m3u8-cmaf)"),
        "dash": format!("{base}/Manifest(format=mpd-time-csf)"),
        "dash_cmaf": format!("{base}/Manifest(format=mpd-time-cmaf)"),
        "hds": format!("{base}/Manifest(format=f4m-f4f)"),
    })
}

/// A JSON body, unknown fields refused, as a 400 naming the problem.
fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes, what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("bad {what}: {e}")))
}

fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad(format!(
            "bad {what} {name:?}: names are [a-z0-9][a-z0-9-]{{0,62}}"
        )))
    }
}

fn format_rfc3339(ms: Option<i64>) -> Value {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)))
        .unwrap_or(Value::Null)
}

/// The host name the client used (for URLs in responses), else loopback.
fn request_host(req: &http::Request<hyper::body::Incoming>) -> String {
    let raw = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or("127.0.0.1");
    // Strip the port; keep IPv6 brackets.
    let host = if raw.starts_with('[') {
        raw.split_once(']').map(|(h, _)| format!("{h}]"))
    } else {
        raw.split(':').next().map(str::to_owned)
    };
    match host {
        Some(h)
            if !h.is_empty()
                && h.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':')
                }) =>
        {
            h
        }
        _ => "127.0.0.1".to_owned(),
    }
}

async fn read_body(req: http::Request<hyper::body::Incoming>) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    limited
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| ApiError::bad(format!("cannot read body (at most {MAX_BODY} bytes): {e}")))
}

fn parse_allow(list: Option<&[String]>) -> Result<Vec<ipnet::IpNet>, ApiError> {
    let list = list.unwrap_or_default();
    if list.len() > 256 {
        return Err(ApiError::bad("at most 256 allowlist entries"));
    }
    list.iter()
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| ApiError::bad(format!("bad CIDR {s:?}")))
        })
        .collect()
}

fn valid_key(k: &str) -> bool {
    (8..=64).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// 128 random bits, hex.
fn generate_key() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Compares secrets in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json_response(status: StatusCode, v: &Value) -> http::Response<Body> {
    http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::text(v.to_string()))
        .unwrap_or_default()
}

fn text(status: StatusCode, s: &str) -> http::Response<Body> {
    http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::text(s))
        .unwrap_or_default()
}

fn error(e: ApiError) -> http::Response<Body> {
    json_response(
        e.status,
        &json!({"error": {"code": e.code, "message": e.message}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlists_parse_cidrs_and_plain_addresses() {
        let v = parse_allow(Some(&["10.1.2.3/8".into(), "::1".into()])).expect("valid");
        assert_eq!(v[0].to_string(), "10.0.0.0/8");
        assert_eq!(v[1].to_string(), "::1/128");
        assert!(parse_allow(Some(&["10.0.0.0/33".into()])).is_err());
        assert!(parse_allow(Some(&["example.com".into()])).is_err());
    }

    #[test]
    fn times_format_as_rfc3339() {
        assert_eq!(
            format_rfc3339(Some(1500)),
            Value::String("1970-01-01T00:00:01.500Z".into())
        );
    }

    #[test]
    fn keys() {
        assert!(valid_key("abcdefgh"));
        assert!(!valid_key("short"));
        assert!(!valid_key("with/slash1"));
        let k = generate_key().expect("random");
        assert_eq!(k.len(), 32);
        assert!(valid_key(&k));
        assert_ne!(k, generate_key().expect("random"));
    }
}
