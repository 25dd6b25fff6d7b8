//! Starts the listeners and ties the parts together; drains on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context as _;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::api::Api;
use crate::archive::Archive;
use crate::channel::{Channel, Channels};
use crate::config::{ChannelConfig, Config};
use crate::delivery::{Body, Delivery, Origin, Route};
use crate::ingest::{IngestContext, http_ingest, serve_rtmp};
use crate::plugins::PluginHost;
use crate::storage::AssetStore;
use crate::store::Store;

/// A running server.
pub struct Server {
    /// Bound delivery address.
    pub http: SocketAddr,
    /// Bound RTMP address (none on an edge).
    pub rtmp: Option<SocketAddr>,
    /// Bound management address.
    pub admin: SocketAddr,
    /// Bound HTTPS address, when `https` is set.
    pub https: Option<SocketAddr>,
    /// Bound QUIC (HTTP/3) address, when `quic` is set.
    pub quic: Option<SocketAddr>,
    /// With `https` or `quic`: the certificate's SHA-256 (hex) and its
    /// SPKI's SHA-256 (base64).
    pub tls: Option<(String, String)>,
    /// Programs, assets and what they stored (none on an edge).
    archive: Option<Arc<Archive>>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Server {
    /// Binds every listener and starts serving.
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("cannot create data directory {}", config.data_dir.display())
        })?;
        let plugins = PluginHost::new(&config.plugins, &config.data_dir)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        crate::metrics::set_enabled(config.metrics);
        if !config.edge.upstreams.is_empty() {
            return Self::start_edge(config, plugins).await;
        }
        let store = Arc::new(Store::open(&config.data_dir).with_context(|| {
            format!(
                "cannot open the metadata store in {}",
                config.data_dir.display()
            )
        })?);
        let objects = Arc::new(
            AssetStore::open(&config.storage, &config.data_dir)
                .map_err(|e| anyhow::anyhow!("cannot open asset storage: {e}"))?,
        );
        objects.check_writable().await.map_err(|e| {
            anyhow::anyhow!("asset storage {} is not writable: {e}", objects.describe())
        })?;
        tracing::debug!(storage = %objects.describe(), "asset storage");
        let archive = Archive::open(store.clone(), objects.clone()).await?;
        let channels = Arc::new(Channels::default());
        let gauges: Arc<dyn crate::metrics::IngestGaugeSource> = channels.clone();
        crate::metrics::metrics().observe_ingest(&gauges);
        let mut channel_configs = config.channels.clone();
        if config.demo && !channel_configs.iter().any(|c| c.name == "demo") {
            channel_configs.push(ChannelConfig {
                name: "demo".to_owned(),
                key: "demo".to_owned(),
                fragment_ms: 2000,
                window_ms: 120_000,
                epoch: None,
            });
        }
        // Config-defined channels are created on first start and started on
        // every start; channels made through the API keep their stored state.
        for c in &channel_configs {
            store.insert_channel(&c.record())?;
            store.set_channel_state(&c.name, "running")?;
        }
        for record in store.channels()? {
            let channel = channels.insert(Channel::from_record(&record, &config.ingest));
            archive.attach(&channel);
        }
        if config.demo
            && let Some(ch) = channels.get("demo")
        {
            demo_program(&store, &archive, &ch)?;
        }
        let http = TcpListener::bind(config.http)
            .await
            .with_context(|| format!("cannot listen on http={}", config.http))?;
        let rtmp = TcpListener::bind(config.rtmp)
            .await
            .with_context(|| format!("cannot listen on rtmp={}", config.rtmp))?;
        let http_addr = http.local_addr()?;
        let rtmp_addr = rtmp.local_addr()?;
        let admin = TcpListener::bind(config.admin)
            .await
            .with_context(|| format!("cannot listen on admin={}", config.admin))?;
        let admin_addr = admin.local_addr()?;
        if !admin_addr.ip().is_loopback() && config.admin_token.is_none() {
            anyhow::bail!(
                "admin={admin_addr} is not on loopback: set admin_token (SLUICE_ADMIN_TOKEN)"
            );
        }
        let mut secure = Secure::bind(&config).await?;

        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let delivery = Arc::new(Delivery::new(
            plugins.clone(),
            Origin::Ingest {
                channels: channels.clone(),
                archive: archive.clone(),
            },
            config.delivery.clone(),
        ));
        let mut api = Api::new(
            channels.clone(),
            store,
            archive.clone(),
            config.ingest.clone(),
            config.delivery.clone(),
            config.admin_token.clone(),
        );
        api.http_port = http_addr.port();
        api.rtmp_port = rtmp_addr.port();
        api.readiness = Some(Arc::new(crate::readiness::Readiness::ingest(
            plugins.clone(),
            objects.clone(),
        )));
        tasks.spawn(serve_http(admin, None, Arc::new(api), shutdown_rx.clone()));
        let ingest = Arc::new(IngestContext::new(
            plugins.clone(),
            channels.clone(),
            config.ingest.clone(),
        ));
        let tier = Arc::new(crate::tier::Tier::new(
            channels.clone(),
            archive.clone(),
            config.tier_token.clone(),
        ));
        let quic_addr = secure.serve_quic(&mut tasks, &delivery, &tier, &shutdown_rx)?;
        let front: Arc<dyn Handler> = Arc::new(Front {
            delivery,
            ingest: Some(ingest.clone()),
            tier,
            alt_svc: quic_addr.map(|a| crate::quic::alt_svc(a.port())),
        });
        tasks.spawn(serve_http(http, None, front.clone(), shutdown_rx.clone()));
        let tls = secure.tls_hashes();
        let https_addr = secure.serve_https(&mut tasks, front, &shutdown_rx)?;
        tasks.spawn(serve_rtmp(rtmp, ingest, shutdown_rx.clone()));
        if config.demo
            && let Some(ch) = channels.get("demo")
        {
            tasks.spawn(crate::demo::run(ch, config.ingest.clone(), shutdown_rx));
        }
        Ok(Server {
            http: http_addr,
            rtmp: Some(rtmp_addr),
            admin: admin_addr,
            https: https_addr,
            quic: quic_addr,
            tls,
            archive: Some(archive),
            shutdown,
            tasks,
        })
    }

    /// An edge: delivery from upstreams, no ingest, no store, no archive;
    /// the admin listener serves health and metrics only. `--https` and
    /// `--quic` serve delivery (and its own upstream interface) as on an
    /// ingest node; its QUIC listener answers tier requests but takes no
    /// subscriptions (an edge cuts nothing to push).
    async fn start_edge(config: Config, plugins: Arc<PluginHost>) -> anyhow::Result<Server> {
        let http = TcpListener::bind(config.http)
            .await
            .with_context(|| format!("cannot listen on http={}", config.http))?;
        let admin = TcpListener::bind(config.admin)
            .await
            .with_context(|| format!("cannot listen on admin={}", config.admin))?;
        let (http_addr, admin_addr) = (http.local_addr()?, admin.local_addr()?);
        let mut secure = Secure::bind(&config).await?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let edge = crate::edge::Edge::new(
            config.edge.clone(),
            config.tier_token.clone(),
            shutdown_rx.clone(),
        )?;
        tracing::info!(upstreams = ?edge.upstream_urls(), "edge");
        // Its own upstream interface, so that edges chain.
        let tier = Arc::new(crate::tier::Tier::edge(
            edge.clone(),
            config.tier_token.clone(),
        ));
        let readiness = crate::readiness::Readiness::edge(plugins.clone(), edge.clone());
        let delivery = Arc::new(Delivery::new(
            plugins,
            Origin::Edge(edge),
            config.delivery.clone(),
        ));
        let mut tasks = JoinSet::new();
        let quic_addr = secure.serve_quic(&mut tasks, &delivery, &tier, &shutdown_rx)?;
        let front: Arc<dyn Handler> = Arc::new(Front {
            delivery,
            ingest: None,
            tier,
            alt_svc: quic_addr.map(|a| crate::quic::alt_svc(a.port())),
        });
        tasks.spawn(serve_http(
            admin,
            None,
            Arc::new(EdgeAdmin { readiness }),
            shutdown_rx.clone(),
        ));
        tasks.spawn(serve_http(http, None, front.clone(), shutdown_rx.clone()));
        let tls = secure.tls_hashes();
        let https_addr = secure.serve_https(&mut tasks, front, &shutdown_rx)?;
        Ok(Server {
            http: http_addr,
            rtmp: None,
            admin: admin_addr,
            https: https_addr,
            quic: quic_addr,
            tls,
            archive: None,
            shutdown,
            tasks,
        })
    }

    /// Stops accepting, lets in-flight responses finish, writes what the
    /// archive still holds, and returns.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        if let Some(archive) = &self.archive {
            archive.flush().await;
        }
    }
}

/// The `--https` and `--quic` listeners and the certificate they share.
struct Secure {
    https: Option<(TcpListener, SocketAddr)>,
    quic: Option<std::net::UdpSocket>,
    tls: Option<crate::tls::TlsMaterial>,
}

impl Secure {
    /// Binds what `config` asks for, then reads (or makes) the
    /// certificate: once every port is known to be free, so a failed
    /// start-up says only why it failed.
    async fn bind(config: &Config) -> anyhow::Result<Secure> {
        let https = match config.https {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on https={addr}"))?;
                let bound = listener.local_addr()?;
                Some((listener, bound))
            }
            None => None,
        };
        let quic = config.quic.map(crate::quic::bind).transpose()?;
        let tls = match config.https.or(config.quic) {
            Some(_) => Some(crate::tls::load_or_create(
                config.tls_cert.as_deref(),
                config.tls_key.as_deref(),
                &config.data_dir,
            )?),
            None => None,
        };
        Ok(Secure { https, quic, tls })
    }

    /// The certificate's SHA-256 (hex) and its key's (base64).
    fn tls_hashes(&self) -> Option<(String, String)> {
        self.tls
            .as_ref()
            .map(|m| (m.cert_sha256_hex.clone(), m.spki_sha256_b64.clone()))
    }

    /// `--quic`: HTTP/3 delivery and the QUIC tier on UDP (crate::quic);
    /// returns its address (the TCP listeners advertise it with Alt-Svc).
    fn serve_quic(
        &mut self,
        tasks: &mut JoinSet<()>,
        delivery: &Arc<Delivery>,
        tier: &Arc<crate::tier::Tier>,
        shutdown: &watch::Receiver<bool>,
    ) -> anyhow::Result<Option<SocketAddr>> {
        let (Some(socket), Some(material)) = (self.quic.take(), &self.tls) else {
            return Ok(None);
        };
        let addr = socket.local_addr()?;
        let endpoint = crate::quic::endpoint(socket, material)?;
        let services = crate::quic::Services {
            delivery: delivery.clone(),
            tier: tier.clone(),
        };
        tasks.spawn(crate::quic::serve(
            endpoint,
            Arc::new(services),
            shutdown.clone(),
        ));
        Ok(Some(addr))
    }

    /// `--https`: `front` over TLS (HTTP/2 or 1.1); returns its address.
    fn serve_https(
        self,
        tasks: &mut JoinSet<()>,
        front: Arc<dyn Handler>,
        shutdown: &watch::Receiver<bool>,
    ) -> anyhow::Result<Option<SocketAddr>> {
        let (Some((listener, addr)), Some(material)) = (self.https, &self.tls) else {
            return Ok(None);
        };
        let server_config = crate::tls::server_config(material, &[b"h2", b"http/1.1"])?;
        tracing::info!(
            https = %addr,
            cert_sha256 = %material.cert_sha256_hex,
            spki_sha256 = %material.spki_sha256_b64,
            "https certificate"
        );
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
        tasks.spawn(serve_http(
            listener,
            Some(acceptor),
            front,
            shutdown.clone(),
        ));
        Ok(Some(addr))
    }
}

/// `--demo`: asset `demo`, program `demo` (a five-minute archive window)
/// recording channel `demo`, running, and locator `demo` publishing it.
/// Whatever already exists from an earlier start is kept.
fn demo_program(store: &Store, archive: &Archive, channel: &Channel) -> anyhow::Result<()> {
    use crate::store::{LocatorRecord, ProgramRecord, ProgramState, RecordingStart, StoreError};
    let ok = |r: Result<(), StoreError>| match r {
        Ok(()) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e),
    };
    let now = crate::channel::now_ms();
    ok(store.insert_asset("demo", now).map(|_| ()))?;
    ok(store.insert_program(&ProgramRecord {
        channel: "demo".into(),
        name: "demo".into(),
        asset: "demo".into(),
        manifest_name: "demo".into(),
        archive_window_ms: 300_000,
        state: ProgramState::Created,
        created_ms: now,
        started_ms: None,
        stopped_ms: None,
    }))?;
    if store
        .program("demo", "demo")?
        .is_some_and(|p| p.state == ProgramState::Created)
    {
        let start = RecordingStart {
            incarnation: channel.incarnation(),
            fragment_ms: channel.fragment_ms,
            from_ms: channel.recording_start_ms(),
            epoch_ms: channel.epoch_ms(),
        };
        store.start_program("demo", "demo", now, &start)?;
        if let Some(asset) = store.asset("demo")? {
            archive.program_started(&asset);
        }
    }
    let locator = LocatorRecord {
        id: "demo".into(),
        asset: "demo".into(),
        start_ms: None,
        expiry_ms: None,
        created_ms: now,
    };
    if store.insert_locator(&locator).is_ok() {
        archive.locator_added(locator);
    }
    Ok(())
}

/// An HTTP request handler of one listener.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request from `peer`.
    fn handle(
        &self,
        req: http::Request<hyper::body::Incoming>,
        peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = http::Response<Body>> + Send + '_>>;
}

/// The http and https listeners: delivery, HTTP ingest under `/ingest/`
/// (none on an edge) and the upstream interface under `/_tier/` (an
/// edge's over what it follows).
struct Front {
    delivery: Arc<Delivery>,
    ingest: Option<Arc<IngestContext>>,
    tier: Arc<crate::tier::Tier>,
    /// With `quic`: `Alt-Svc` for delivery responses.
    alt_svc: Option<http::HeaderValue>,
}

impl Handler for Front {
    fn handle(
        &self,
        req: http::Request<hyper::body::Incoming>,
        peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = http::Response<Body>> + Send + '_>> {
        Box::pin(async move {
            match Route::of(req.uri().path()) {
                Route::Ingest => match &self.ingest {
                    Some(ingest) => http_ingest(ingest, req, peer).await,
                    None => edge_refusal("an edge takes no ingest\n"),
                },
                Route::Tier => self.tier.handle(req.uri(), req.headers()).await,
                Route::Delivery => {
                    let mut resp = self
                        .delivery
                        .handle(req.method(), req.uri(), req.headers(), peer)
                        .await;
                    if let Some(v) = &self.alt_svc {
                        resp.headers_mut().insert(http::header::ALT_SVC, v.clone());
                    }
                    resp
                }
            }
        })
    }
}

fn edge_refusal(message: &str) -> http::Response<Body> {
    http::Response::builder()
        .status(http::StatusCode::NOT_FOUND)
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(Body::text(message))
        .unwrap_or_default()
}

/// The admin listener of an edge: health, readiness and metrics; no
/// management API (an edge holds no channels, programs, assets or
/// locators).
struct EdgeAdmin {
    readiness: crate::readiness::Readiness,
}

impl Handler for EdgeAdmin {
    fn handle(
        &self,
        req: http::Request<hyper::body::Incoming>,
        _peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = http::Response<Body>> + Send + '_>> {
        Box::pin(async move {
            let (status, content_type, body) = match req.uri().path() {
                "/healthz" => (200, "text/plain", "ok\n".to_owned()),
                "/readyz" => return self.readiness.response().await,
                "/metrics" => (
                    200,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    crate::metrics::metrics().encode(),
                ),
                _ => (
                    404,
                    "application/json",
                    r#"{"error":{"code":"not_found","message":"an edge has no management API"}}"#
                        .to_owned(),
                ),
            };
            http::Response::builder()
                .status(status)
                .header(http::header::CONTENT_TYPE, content_type)
                .header(http::header::CACHE_CONTROL, "no-store")
                .body(Body::text(body))
                .unwrap_or_default()
        })
    }
}

impl Handler for Api {
    fn handle(
        &self,
        req: http::Request<hyper::body::Incoming>,
        peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = http::Response<Body>> + Send + '_>> {
        Box::pin(Api::handle(self, req, peer))
    }
}

/// Time a client gets to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `handler` on `listener`, over TLS when `tls` is set (the
/// handshake runs in the connection's own task, so accepting never waits on
/// a slow client).
async fn serve_http(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handler: Arc<dyn Handler>,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Encoders (ffmpeg's ismv over HTTP) half-close after the last chunk and
    // then wait for the answer: keep serving a half-closed connection.
    builder.http1().half_close(true);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "http accept failed");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let handler = handler.clone();
            let span = tracing::debug_span!(
                "http",
                %peer,
                method = %req.method(),
                path = %req.uri().path()
            );
            async move { Ok::<_, std::convert::Infallible>(handler.handle(req, peer).await) }
                .instrument(span)
        });
        // Subscribed now: a shutdown during the handshake still reaches
        // this connection, and the drain waits for it.
        let watcher = graceful.watcher();
        let Some(acceptor) = tls.clone() else {
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let conn = watcher.watch(conn.into_owned());
            tokio::spawn(async move {
                let _ = conn.await;
            });
            continue;
        };
        let builder = builder.clone();
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "tls handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "tls handshake timed out");
                        return;
                    }
                };
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let _ = watcher.watch(conn.into_owned()).await;
        });
    }
    drop(listener);
    // In-flight responses finish; idle keep-alive connections close.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), graceful.shutdown()).await;
}
