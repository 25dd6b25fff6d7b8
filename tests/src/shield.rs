//! An nginx shield (`examples/deploy/shield.conf`) in front of an ingest
//! node, started by a test in its own prefix on a free loopback port.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::tempdir::TempDir;

/// A running nginx shield; killed on drop.
pub struct Shield {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    prefix: TempDir,
}

impl Shield {
    /// Starts nginx in front of `upstream` (an ingest node's http listener).
    pub fn start(upstream: SocketAddr) -> Result<Shield> {
        let prefix = TempDir::new("sluice-shield")?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let template = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/deploy/shield.conf"),
        )?;
        let conf = template
            .replace("@LISTEN@", &addr.to_string())
            .replace("@UPSTREAM@", &upstream.to_string());
        for d in ["logs", "tmp", "cache"] {
            std::fs::create_dir_all(prefix.path().join(d))?;
        }
        // Workers drop to `nobody` when nginx starts as root.
        open_up(prefix.path())?;
        let conf_path = prefix.path().join("shield.conf");
        std::fs::write(&conf_path, conf)?;
        let child = Command::new("nginx")
            .arg("-p")
            .arg(prefix.path())
            .args(["-e", "stderr", "-c"])
            .arg(&conf_path)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(prefix.path().join("stderr.log"))?)
            .spawn()
            .context("cannot start nginx (apt-get install nginx; ./scripts/test.sh does)")?;
        let shield = Shield {
            addr,
            child,
            prefix,
        };
        crate::wait_for(Duration::from_secs(20), || {
            std::net::TcpStream::connect(addr).ok().map(|_| ())
        })
        .with_context(|| format!("nginx did not listen: {}", shield.log()))?;
        Ok(shield)
    }

    /// nginx's error output.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.prefix.path().join("stderr.log")).unwrap_or_default()
    }

    /// The requests nginx sent upstream (cache MISS, EXPIRED, BYPASS…), by URI.
    pub fn upstream_requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.prefix.path().join("logs/upstream.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                let status = l.split(' ').nth(1).unwrap_or("");
                status != "HIT" && status != "UPDATING" && status != "STALE"
            })
            .map(|l| l.split(' ').next().unwrap_or("").to_owned())
            .collect()
    }
}

fn open_up(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            open_up(&p)?;
        }
    }
    Ok(())
}

impl Drop for Shield {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers (SIGKILL would leave them
        // running, orphaned); SIGKILL only if it does not exit.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let stopped = crate::wait_for(Duration::from_secs(10), || {
            self.child.try_wait().ok().flatten().map(|_| ())
        });
        if stopped.is_err() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
