//! The management API (admin listener, JSON): channels for now, as
//! CONTRACT.md fixes them. Errors are `{"error": {"code", "message"}}` with
//! 400, 401, 404 or 409; bodies are bounded; unknown fields are refused;
//! every change is logged with who (peer) and what.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode, header};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::channel::{Channel, ChannelState, Channels};
use crate::config::{IngestLimits, valid_name};
use crate::delivery::Body;
use crate::store::{ChannelRecord, Store};

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

/// The management API.
pub struct Api {
    channels: Arc<Channels>,
    store: Arc<Store>,
    limits: IngestLimits,
    /// Bound delivery port (for URLs in responses).
    pub http_port: u16,
    /// Bound RTMP port.
    pub rtmp_port: u16,
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

impl Api {
    /// The API over `channels`, persisted in `store`. `token`, when set, is
    /// required as `Authorization: Bearer TOKEN`.
    pub fn new(
        channels: Arc<Channels>,
        store: Arc<Store>,
        limits: IngestLimits,
        token: Option<String>,
    ) -> Self {
        Api {
            channels,
            store,
            limits,
            http_port: 0,
            rtmp_port: 0,
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
        if path == "/healthz" || path == "/readyz" {
            return text(StatusCode::OK, "ok\n");
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
        let result = self.route(&method, &path, &body, peer, &host);
        match result {
            Ok((status, Some(v))) => json_response(status, &v),
            Ok((status, None)) => http::Response::builder()
                .status(status)
                .body(Body::empty())
                .unwrap_or_default(),
            Err(e) => error(e),
        }
    }

    fn route(
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
            (&Method::POST, ["channels", name, action]) => {
                let c = self.channel(name)?;
                match *action {
                    "start" => self.set_state(&c, ChannelState::Running, peer)?,
                    "stop" => self.set_state(&c, ChannelState::Stopped, peer)?,
                    "reset" => {
                        c.reset();
                        tracing::info!(%peer, channel = %c.name, "channel reset");
                    }
                    _ => return Err(ApiError::not_found("action")),
                }
                Ok((StatusCode::OK, Some(self.channel_json(&c, host))))
            }
            _ => Err(ApiError::not_found("resource")),
        }
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
        let req: CreateChannel =
            serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("bad channel: {e}")))?;
        if !valid_name(&req.name) {
            return Err(ApiError::bad(format!(
                "bad name {:?}: names are [a-z0-9][a-z0-9-]{{0,62}}",
                req.name
            )));
        }
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
        self.store
            .delete_channel(name)
            .map_err(ApiError::internal)?;
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
            .set_channel_state(&c.name, state.as_str())
            .map_err(ApiError::internal)?;
        c.set_state(state);
        tracing::info!(%peer, channel = %c.name, state = state.as_str(), "channel state");
        Ok(())
    }

    /// The channel object of CONTRACT.md.
    fn channel_json(&self, c: &Channel, host: &str) -> Value {
        let http = format!("http://{host}:{}", self.http_port);
        let preview = format!("{http}/preview/{}/preview.isml", c.name);
        json!({
            "name": c.name,
            "state": c.state(),
            "fragment_ms": c.fragment_ms,
            "window_ms": c.window_ms,
            "input": {
                "key": c.key,
                "allow": c.input_allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
            },
            "preview": {
                "allow": c.preview_allow.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "urls": {
                    "smooth": format!("{preview}/Manifest"),
                    "hls": format!("{preview}/Manifest(format=m3u8-aapl)"),
                    "hls_cmaf": format!("{preview}/Manifest(format=m3u8-cmaf)"),
                    "dash": format!("{preview}/Manifest(format=mpd-time-csf)"),
                    "dash_cmaf": format!("{preview}/Manifest(format=mpd-time-cmaf)"),
                    "hds": format!("{preview}/Manifest(format=f4m-f4f)"),
                    "page": format!("{http}/preview/{}/", c.name),
                },
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

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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
