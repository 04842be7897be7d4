//! TLS for the streaming server (`streaming.tls_cert` / `streaming.tls_key`)
//! and for the client that dials `https://` streaming URLs.
//!
//! Both sides use rustls with the ring provider named explicitly, so nothing
//! depends on a process-wide default provider being installed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::error::{Error, Result};

/// Where the system CA bundle lives on the distributions we run on (Debian
/// and Ubuntu first); `SSL_CERT_FILE` overrides, as for OpenSSL.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| Error::InvalidArgument(format!("{what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{what} {}: no PEM certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}

/// The server side: the certificate chain in `cert` (PEM, leaf first) and
/// the private key in `key` (PEM: PKCS#8, PKCS#1 or SEC1).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let chain = read_certs(cert, "streaming.tls_cert")?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::InvalidArgument(format!("streaming.tls_key {}: {e}", key.display())))?;
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("streaming: TLS versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            Error::InvalidArgument(format!(
                "streaming.tls_cert/tls_key: the key does not fit the certificate or is unusable: {e}"
            ))
        })?;
    Ok(Arc::new(config))
}

/// Which certificate authorities the client trusts for `https://` URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TlsTrust {
    /// The system CA bundle (`SSL_CERT_FILE`, else the distribution's).
    #[default]
    System,
    /// Only the CA certificates in this PEM file (e.g. the CA that signed
    /// berthd's `streaming.tls_cert`, or that certificate itself).
    CaFile(PathBuf),
}

impl TlsTrust {
    /// `--tls-ca`: a file when given, the system bundle otherwise.
    pub fn from_ca_file(path: Option<PathBuf>) -> TlsTrust {
        path.map_or(TlsTrust::System, TlsTrust::CaFile)
    }

    fn bundle(&self) -> Result<(PathBuf, &'static str)> {
        match self {
            TlsTrust::CaFile(p) => Ok((p.clone(), "--tls-ca")),
            TlsTrust::System => {
                if let Some(p) = std::env::var_os("SSL_CERT_FILE") {
                    return Ok((PathBuf::from(p), "SSL_CERT_FILE"));
                }
                SYSTEM_BUNDLES
                    .iter()
                    .map(PathBuf::from)
                    .find(|p| p.is_file())
                    .map(|p| (p, "system CA bundle"))
                    .ok_or_else(|| {
                        Error::FailedPrecondition(format!(
                            "https streaming URL: no system CA bundle ({}); pass the server's CA with --tls-ca",
                            SYSTEM_BUNDLES.join(", ")
                        ))
                    })
            }
        }
    }

    /// The rustls client configuration trusting these CAs.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>> {
        let (path, what) = self.bundle()?;
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(read_certs(&path, what)?);
        if added == 0 {
            return Err(Error::InvalidArgument(format!(
                "{what} {}: no usable CA certificate",
                path.display()
            )));
        }
        let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Internal(format!("streaming: TLS versions: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}
