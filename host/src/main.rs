//! The `sluice` command: `sluice serve`, `sluice plugin check` and
//! `sluice config default`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};
use sluice::config::{Config, LogFormat};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Sluice: a live-streaming edge origin"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the origin.
    Serve(Box<ServeArgs>),
    /// Plugin tools.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Prints every config-file key with its default, its documentation
    /// and the flag and variable that override it (a TOML file that loads
    /// as the defaults).
    Default,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Loads a plugin, prints what it declares, and runs it against a
    /// built-in fixture (call time, memory used).
    Check {
        /// The `.wasm` component.
        file: PathBuf,
    },
}

/// Flags override the config file; each has a `SLUICE_*` variable.
#[derive(Parser)]
struct ServeArgs {
    /// TOML config file.
    #[arg(long, env = "SLUICE_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (default ./sluice-data).
    #[arg(long, env = "SLUICE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Delivery and fMP4 ingest listener (default 0.0.0.0:8080).
    #[arg(long, env = "SLUICE_HTTP")]
    http: Option<SocketAddr>,
    /// RTMP ingest listener (default 0.0.0.0:1935).
    #[arg(long, env = "SLUICE_RTMP")]
    rtmp: Option<SocketAddr>,
    /// Management listener (default 127.0.0.1:8081).
    #[arg(long, env = "SLUICE_ADMIN")]
    admin: Option<SocketAddr>,
    /// HTTPS listener serving what --http serves, over TLS (default none).
    #[arg(long, env = "SLUICE_HTTPS")]
    https: Option<SocketAddr>,
    /// QUIC (UDP) listener serving delivery over HTTP/3, with the --https
    /// certificate (default none).
    #[arg(long, env = "SLUICE_QUIC")]
    quic: Option<SocketAddr>,
    /// PEM certificate chain for --https and --quic (default: self-signed, made once
    /// in {data-dir}/tls/).
    #[arg(long, env = "SLUICE_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "SLUICE_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Bearer token of the management API (required off loopback).
    #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Run as an edge pulling from this upstream (`http://HOST:PORT`,
    /// `https://HOST:PORT`); repeat for several (comma-separated in the
    /// variable).
    #[arg(long = "upstream", env = "SLUICE_UPSTREAM", value_delimiter = ',')]
    upstreams: Vec<String>,
    /// Token of the upstream interface (`Authorization: Bearer`).
    #[arg(long, env = "SLUICE_TIER_TOKEN", hide_env_values = true)]
    tier_token: Option<String>,
    /// Create channel `demo` fed by the built-in test source.
    #[arg(long, env = "SLUICE_DEMO")]
    demo: bool,
    /// Plugin directory (default {data-dir}/plugins).
    #[arg(long, env = "SLUICE_PLUGIN_DIR")]
    plugin_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// Log filter (tracing EnvFilter syntax), also `SLUICE_LOG`.
    #[arg(long, env = "SLUICE_LOG")]
    log: Option<String>,
}

fn main() -> ExitCode {
    fix_mmap_threshold();
    let cli = Cli::parse();
    match cli.command {
        Command::Plugin {
            command: PluginCommand::Check { file },
        } => match sluice::plugin_check::run(&file) {
            Ok(report) => {
                println!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sluice: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Config {
            command: ConfigCommand::Default,
        } => {
            print!("{}", sluice::config::reference(&overrides()));
            ExitCode::SUCCESS
        }
        Command::Serve(args) => match serve(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sluice: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// The config keys `sluice serve`'s flags set, with their variables.
fn overrides() -> Vec<sluice::config::Override> {
    ServeArgs::command()
        .get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?;
            let key = match arg.get_id().as_str() {
                // Not config keys: the file itself and the log filter.
                "config" | "log" => return None,
                "upstreams" => "edge.upstreams".to_owned(),
                "plugin_dir" => "plugins.dir".to_owned(),
                id => id.to_owned(),
            };
            Some(sluice::config::Override {
                key,
                flag: format!("--{long}"),
                env: arg.get_env().map(|e| e.to_string_lossy().into_owned()),
            })
        })
        .collect()
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(v) = args.data_dir {
        config.data_dir = v;
    }
    if let Some(v) = args.http {
        config.http = v;
    }
    if let Some(v) = args.rtmp {
        config.rtmp = v;
    }
    if let Some(v) = args.admin {
        config.admin = v;
    }
    if let Some(v) = args.https {
        config.https = Some(v);
    }
    if let Some(v) = args.quic {
        config.quic = Some(v);
    }
    if let Some(v) = args.tls_cert {
        config.tls_cert = Some(v);
    }
    if let Some(v) = args.tls_key {
        config.tls_key = Some(v);
    }
    if args.demo {
        config.demo = true;
    }
    if !args.upstreams.is_empty() {
        config.edge.upstreams = args.upstreams;
    }
    if let Some(v) = args.tier_token {
        config.tier_token = Some(v);
    }
    if let Some(v) = args.admin_token {
        config.admin_token = Some(v);
    }
    if let Some(v) = args.plugin_dir {
        config.plugins.dir = Some(v);
    }
    if let Some(v) = args.log_format {
        config.log_format = v;
    }
    init_logging(config.log_format, args.log.as_deref())?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sluice")
        .build()?;
    runtime.block_on(async move {
        let server = sluice::Server::start(config.clone()).await?;
        let stop = shutdown_signal();
        announce(
            config.log_format,
            &format!("listening http={}", server.http),
        );
        if let Some(rtmp) = server.rtmp {
            announce(config.log_format, &format!("listening rtmp={rtmp}"));
        }
        announce(
            config.log_format,
            &format!("listening admin={}", server.admin),
        );
        if let Some(https) = server.https {
            announce(config.log_format, &format!("listening https={https}"));
        }
        if let (Some(quic), Some((cert_sha256, spki_sha256))) = (server.quic, &server.tls) {
            announce(
                config.log_format,
                &format!(
                    "listening quic={quic} cert-sha256={cert_sha256} spki-sha256={spki_sha256}"
                ),
            );
        }
        if config.demo {
            let host = if server.http.ip().is_unspecified() {
                SocketAddr::from(([127, 0, 0, 1], server.http.port()))
            } else {
                server.http
            };
            announce(
                config.log_format,
                &format!(
                    "preview http://{host}/preview/demo/preview.isml/Manifest(format=m3u8-cmaf)"
                ),
            );
            announce(
                config.log_format,
                &format!("play http://{host}/demo/demo.ism/Manifest(format=m3u8-cmaf)"),
            );
            // The preview web page (CONTRACT: `--demo` prints it).
            announce(
                config.log_format,
                &format!("preview-page http://{host}/preview/demo/"),
            );
        }
        stop.await;
        tracing::info!("draining");
        server.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// glibc raises its mmap threshold to the size of the largest block freed
/// (up to 32 MiB): fragments and segments of a few MiB then come from the
/// heap, whose freed holes it seldom returns, and an edge's resident memory
/// drifts far above its cache caps (measured: +40 MiB serving 466 MiB
/// through 16 MiB of caches). A fixed 128 KiB threshold keeps large media
/// buffers in their own mappings, returned to the system when freed.
fn fix_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it runs first in
    // main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Prints a start-up line on stdout: plain text, or a JSON log object.
fn announce(format: LogFormat, line: &str) {
    match format {
        LogFormat::Text => println!("{line}"),
        LogFormat::Json => tracing::info!(target: "sluice", "{line}"),
    }
}

fn init_logging(format: LogFormat, filter: Option<&str>) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match filter {
        Some(f) => EnvFilter::try_new(f)?,
        None => EnvFilter::try_new("info")?,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        // Text logs go to stderr so stdout carries only the start-up lines.
        LogFormat::Text => builder.with_writer(std::io::stderr).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(false)
            .with_writer(std::io::stdout)
            .init(),
    }
    Ok(())
}

/// Completes on SIGTERM or SIGINT. The handlers are registered when this is
/// called, not when the future is first polled: call it before announcing
/// that the server listens, so a signal sent on that line drains instead of
/// killing the process.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let handlers = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        );
        async move {
            match handlers {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
