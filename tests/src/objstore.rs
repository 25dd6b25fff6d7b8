//! Real object stores for the storage tests: `moto_server` (S3, PyPI
//! `moto[server]`) and Azurite (Azure Blob, npm `azurite` in
//! `tests/objstore/`), each started on a free loopback port and killed (by
//! its PID) on drop. `scripts/test.sh` installs both; a test that needs one
//! that is missing fails and names the install command.
//!
//! Neither `object_store` nor the servers create buckets or containers on
//! first use, so [`ObjectServer::create_bucket`] sends moto a plain `PUT`
//! (moto checks no signatures) and [`ObjectServer::create_container`] signs
//! Azurite's `PUT ?restype=container` with the emulator's well-known
//! SharedKey.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine as _;
use sluice::storage::{Backend, StorageConfig};

use crate::tempdir::TempDir;

/// The pip requirement `scripts/test.sh` installs.
pub const MOTO_REQUIREMENT: &str = "moto[server]==5.2.5";
/// Azurite's well-known development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known development account key.
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// How long a server may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `moto_server` (S3).
    Moto,
    /// `azurite-blob` (Azure Blob).
    Azurite,
}

/// A running object store server on 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct ObjectServer {
    child: Child,
    kind: Kind,
    /// Its address.
    pub addr: SocketAddr,
    log: PathBuf,
    _dir: TempDir,
}

/// The Azurite launcher installed by `npm ci` in `tests/objstore`.
fn azurite_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("objstore/node_modules/.bin/azurite-blob")
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

impl ObjectServer {
    /// Starts `moto_server` (S3).
    pub fn moto() -> Result<ObjectServer> {
        Self::start(Kind::Moto)
    }

    /// Starts Azurite's blob service (its files go to a temporary
    /// directory removed on drop).
    pub fn azurite() -> Result<ObjectServer> {
        Self::start(Kind::Azurite)
    }

    fn start(kind: Kind) -> Result<ObjectServer> {
        // Another process may take the port between our probe and the
        // server's bind: then the server exits and we try another port.
        let mut last = None;
        for _ in 0..3 {
            match Self::start_once(kind) {
                Ok(s) => return Ok(s),
                Err(e) if e.to_string().contains("not installed") => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("{kind:?} did not start")))
    }

    fn start_once(kind: Kind) -> Result<ObjectServer> {
        let dir = TempDir::new(match kind {
            Kind::Moto => "sluice-moto",
            Kind::Azurite => "sluice-azurite",
        })?;
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = dir.path().join("server.log");
        let mut cmd = match kind {
            Kind::Moto => {
                let mut c = Command::new("moto_server");
                c.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
                c
            }
            Kind::Azurite => {
                let bin = azurite_bin();
                ensure!(
                    bin.exists(),
                    "Azurite not installed ({} missing): run `npm ci` in tests/objstore \
                     (./scripts/test.sh does)",
                    bin.display()
                );
                let mut c = Command::new(bin);
                c.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
                    .arg("--location")
                    .arg(dir.path().join("data"))
                    .args(["--silent", "--skipApiVersionCheck"]);
                c
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(dir.path().join("stderr.log"))?)
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "moto_server not installed: run python3 -m pip install \"{MOTO_REQUIREMENT}\" \
                 (./scripts/test.sh does)"
            ),
            Err(e) => return Err(e).context(format!("cannot start {kind:?}")),
        };
        let mut server = ObjectServer {
            child,
            kind,
            addr,
            log,
            _dir: dir,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Polls until the server answers any HTTP request (bounded), failing
    /// early when it exits.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut pause = Duration::from_millis(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                let hint = match self.kind {
                    Kind::Moto => {
                        format!(" (is it installed? python3 -m pip install \"{MOTO_REQUIREMENT}\")")
                    }
                    Kind::Azurite => String::new(),
                };
                bail!(
                    "{:?} exited ({status}) before answering on {}{hint}:\n{}",
                    self.kind,
                    self.addr,
                    self.output()
                );
            }
            if crate::http_request(self.addr, "GET", "/", &[], b"").is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{:?} did not answer on {} within {READY_TIMEOUT:?}:\n{}",
                    self.kind,
                    self.addr,
                    self.output()
                );
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// What the server printed.
    pub fn output(&self) -> String {
        let err = self.log.with_file_name("stderr.log");
        format!(
            "{}{}",
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            std::fs::read_to_string(err).unwrap_or_default()
        )
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates an S3 bucket on moto.
    pub fn create_bucket(&self, bucket: &str) -> Result<()> {
        ensure!(self.kind == Kind::Moto, "buckets are for moto");
        let r = crate::http_request(self.addr, "PUT", &format!("/{bucket}"), &[], b"")?;
        ensure!(
            r.status == 200,
            "create bucket {bucket}: {} {}",
            r.status,
            r.text()
        );
        Ok(())
    }

    /// Creates a blob container on Azurite (a SharedKey-signed
    /// `PUT /{account}/{container}?restype=container`).
    pub fn create_container(&self, container: &str) -> Result<()> {
        ensure!(self.kind == Kind::Azurite, "containers are for Azurite");
        let date = http_date(SystemTime::now());
        let version = "2021-08-06";
        let resource =
            format!("/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{container}\nrestype:container");
        // Verb, then 11 standard headers (all empty: Content-Length 0 is
        // signed as empty), then the x-ms-* headers and the resource.
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n{resource}"
        );
        let key = base64::engine::general_purpose::STANDARD.decode(AZURITE_KEY)?;
        let mac = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
            to_sign.as_bytes(),
        );
        let auth = format!(
            "SharedKey {AZURITE_ACCOUNT}:{}",
            base64::engine::general_purpose::STANDARD.encode(mac.as_ref())
        );
        let r = crate::http_request(
            self.addr,
            "PUT",
            &format!("/{AZURITE_ACCOUNT}/{container}?restype=container"),
            &[
                ("x-ms-date", &date),
                ("x-ms-version", version),
                ("Authorization", &auth),
            ],
            b"",
        )?;
        ensure!(
            r.status == 201,
            "create container {container}: {} {}",
            r.status,
            r.text()
        );
        Ok(())
    }

    /// `[storage]` for this moto server: `bucket`, path style, dummy keys.
    pub fn s3_config(&self, bucket: &str, prefix: &str) -> StorageConfig {
        let mut cfg = StorageConfig {
            backend: Backend::S3,
            prefix: prefix.to_owned(),
            ..StorageConfig::default()
        };
        cfg.s3.bucket = bucket.to_owned();
        cfg.s3.endpoint = Some(self.endpoint());
        cfg.s3.allow_http = true;
        cfg.s3.access_key_id = Some("test".to_owned());
        cfg.s3.secret_access_key = Some("test".to_owned());
        cfg
    }

    /// `[storage]` for this Azurite: the well-known account through an
    /// explicit endpoint (`http://127.0.0.1:PORT/devstoreaccount1`).
    pub fn azure_config(&self, container: &str, prefix: &str) -> StorageConfig {
        let mut cfg = StorageConfig {
            backend: Backend::Azure,
            prefix: prefix.to_owned(),
            ..StorageConfig::default()
        };
        cfg.azure.account = AZURITE_ACCOUNT.to_owned();
        cfg.azure.access_key = Some(AZURITE_KEY.to_owned());
        cfg.azure.container = container.to_owned();
        cfg.azure.endpoint = Some(format!("{}/{AZURITE_ACCOUNT}", self.endpoint()));
        cfg.azure.allow_http = true;
        cfg
    }
}

impl Drop for ObjectServer {
    fn drop(&mut self) {
        // Child::kill signals this child's PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An RFC 1123 date (`Sun, 06 Nov 1994 08:49:37 GMT`), as SharedKey wants.
pub fn http_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates() {
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(http_date(at(0)), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(at(784_111_777)), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(at(951_782_400)), "Tue, 29 Feb 2000 00:00:00 GMT");
    }
}
