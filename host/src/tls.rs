//! TLS certificates and server configuration (`--https`).
//!
//! The certificate comes from `--tls-cert`/`--tls-key` (PEM), or else from
//! `{data_dir}/tls/cert.pem` and `key.pem`: a self-signed certificate for
//! `localhost`, `127.0.0.1` and `::1`, made once and reused on every later
//! start (the key file is mode 0600). Everything runs on the ring provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate chain, its private key, and the hashes clients pin.
#[derive(Debug)]
pub struct TlsMaterial {
    /// DER certificates, end entity first.
    cert_chain: Vec<CertificateDer<'static>>,
    /// DER private key.
    key: PrivateKeyDer<'static>,
    /// SHA-256 of the end-entity certificate DER, lowercase hex.
    pub cert_sha256_hex: String,
    /// SHA-256 of the end-entity certificate's SubjectPublicKeyInfo DER,
    /// standard base64 (Chromium's `--ignore-certificate-errors-spki-list`).
    pub spki_sha256_b64: String,
}

impl TlsMaterial {
    /// The DER certificates, end entity first.
    pub fn cert_chain(&self) -> &[CertificateDer<'static>] {
        &self.cert_chain
    }
}

/// The self-signed certificate's directory under the data directory.
pub fn default_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tls")
}

/// Loads `cert` and `key` (PEM), both or neither. With neither, uses
/// `{data_dir}/tls/cert.pem` and `key.pem`, making them first if they do
/// not exist yet.
pub fn load_or_create(
    cert: Option<&Path>,
    key: Option<&Path>,
    data_dir: &Path,
) -> anyhow::Result<TlsMaterial> {
    match (cert, key) {
        (Some(cert), Some(key)) => load(cert, key),
        (Some(_), None) => anyhow::bail!("--tls-cert needs --tls-key (tls_key) too"),
        (None, Some(_)) => anyhow::bail!("--tls-key needs --tls-cert (tls_cert) too"),
        (None, None) => {
            let dir = default_dir(data_dir);
            let cert = dir.join("cert.pem");
            let key = dir.join("key.pem");
            if !cert.exists() || !key.exists() {
                create(&dir, &cert, &key)?;
            }
            load(&cert, &key)
        }
    }
}

/// Makes a self-signed certificate for `localhost`, `127.0.0.1` and `::1`.
/// The key is written first (mode 0600), the certificate last, so a
/// certificate file implies its key.
fn create(dir: &Path, cert: &Path, key: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create TLS directory {}", dir.display()))?;
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let made = rcgen::generate_simple_self_signed(names)
        .context("cannot make a self-signed certificate")?;
    write_private(key, made.signing_key.serialize_pem().as_bytes())
        .with_context(|| format!("cannot write TLS key {}", key.display()))?;
    std::fs::write(cert, made.cert.pem())
        .with_context(|| format!("cannot write TLS certificate {}", cert.display()))?;
    tracing::info!(cert = %cert.display(), "made a self-signed TLS certificate");
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn load(cert: &Path, key: &Path) -> anyhow::Result<TlsMaterial> {
    let bad_cert =
        |e: &dyn std::fmt::Display| anyhow::anyhow!("bad TLS certificate {}: {e}", cert.display());
    let cert_chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad_cert(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_cert(&e))?;
    let Some(end_entity) = cert_chain.first() else {
        return Err(bad_cert(&"no CERTIFICATE in the file"));
    };
    let parsed = webpki::EndEntityCert::try_from(end_entity).map_err(|e| bad_cert(&e))?;
    let spki = parsed.subject_public_key_info();
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("bad TLS key {}: {e}", key.display()))?;
    let cert_sha256_hex = ring::digest::digest(&ring::digest::SHA256, end_entity)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let spki_sha256_b64 = base64::engine::general_purpose::STANDARD
        .encode(ring::digest::digest(&ring::digest::SHA256, spki.as_ref()));
    let material = TlsMaterial {
        cert_chain,
        key: key_der,
        cert_sha256_hex,
        spki_sha256_b64,
    };
    // Catch a key that does not match the certificate now, not at the first
    // handshake.
    server_config(&material, &[]).with_context(|| {
        format!(
            "TLS key {} does not fit certificate {}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(material)
}

/// A rustls server configuration (ring provider, TLS 1.2 and 1.3) serving
/// `material` with the ALPN protocols `alpn`, in preference order.
pub fn server_config(
    material: &TlsMaterial,
    alpn: &[&[u8]],
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(material.cert_chain.clone(), material.key.clone_key())?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_made_once_and_reused() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let first = load_or_create(None, None, dir.path())?;
        assert_eq!(first.cert_sha256_hex.len(), 64);
        assert_eq!(first.spki_sha256_b64.len(), 44);
        let second = load_or_create(None, None, dir.path())?;
        assert_eq!(first.cert_sha256_hex, second.cert_sha256_hex);
        assert_eq!(first.spki_sha256_b64, second.spki_sha256_b64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("tls/key.pem"))?
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // The files load as explicit paths too, with the same hashes.
        let explicit = load_or_create(
            Some(&dir.path().join("tls/cert.pem")),
            Some(&dir.path().join("tls/key.pem")),
            Path::new("/nonexistent"),
        )?;
        assert_eq!(explicit.cert_sha256_hex, first.cert_sha256_hex);
        server_config(&explicit, &[b"h2", b"http/1.1"])?;
        Ok(())
    }

    #[test]
    fn bad_pem_and_half_pairs_are_refused() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let good = load_or_create(None, None, dir.path())?;
        assert!(!good.cert_chain().is_empty());
        let cert = dir.path().join("tls/cert.pem");
        let key = dir.path().join("tls/key.pem");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n")?;

        let e = load_or_create(Some(&junk), Some(&key), dir.path()).expect_err("junk certificate");
        assert!(format!("{e:#}").contains("junk.pem"), "{e:#}");
        let e = load_or_create(Some(&cert), Some(&junk), dir.path()).expect_err("junk key");
        assert!(format!("{e:#}").contains("junk.pem"), "{e:#}");
        let missing = dir.path().join("missing.pem");
        let e = load_or_create(Some(&missing), Some(&key), dir.path()).expect_err("missing");
        assert!(format!("{e:#}").contains("missing.pem"), "{e:#}");

        let e = load_or_create(Some(&cert), None, dir.path()).expect_err("half");
        assert!(e.to_string().contains("--tls-key"), "{e}");
        let e = load_or_create(None, Some(&key), dir.path()).expect_err("half");
        assert!(e.to_string().contains("--tls-cert"), "{e}");

        // A key of another certificate is refused.
        let other = tempfile::tempdir()?;
        load_or_create(None, None, other.path())?;
        let e = load_or_create(
            Some(&cert),
            Some(&other.path().join("tls/key.pem")),
            dir.path(),
        )
        .expect_err("mismatched key");
        assert!(format!("{e:#}").contains("does not fit"), "{e:#}");
        Ok(())
    }
}
