//! TLS for `serve` (rustls): a certificate chain and its private key read from PEM files, served
//! to every new connection, and read again on [`Tls::reload`] (SIGHUP) without dropping the
//! connections already open. A reload that fails keeps the certificate in use, and says why.
//!
//! The key file holds a secret: it is refused, as the master key file is, when anyone but its
//! owner may read or write it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::ring::{default_provider, sign::any_supported_type};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// Why a certificate or key was not loaded: one line naming the file.
#[derive(Debug)]
pub enum TlsError {
    /// The key file may be read or written by someone else.
    Unsafe(String),
    /// A file is missing, unreadable or not what it should be.
    Invalid(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Unsafe(why) | TlsError::Invalid(why) => f.write_str(why),
        }
    }
}

/// The certificate and key files, and what was last read from them.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: Arc<Current>,
    config: Arc<ServerConfig>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("cert", &self.cert).field("key", &self.key).finish()
    }
}

/// The certificate new connections get.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

impl Tls {
    /// Reads `cert` (a PEM chain, the server's certificate first) and `key` (a PEM private key:
    /// PKCS#8, PKCS#1 or SEC1).
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        let certified = read(cert, key)?;
        let current = Arc::new(Current(RwLock::new(Arc::new(certified))));
        let config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Invalid(format!("TLS: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        let mut config = config;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls { cert: cert.to_owned(), key: key.to_owned(), current, config: Arc::new(config) })
    }

    /// Reads both files again; on an error the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let certified = read(&self.cert, &self.key)?;
        *self.current.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(certified);
        Ok(())
    }

    /// The certificate file.
    pub fn cert_file(&self) -> &Path {
        &self.cert
    }

    /// What accepts connections with the current certificate.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}

fn read(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    authplug_store::check_private_file(key, authplug_store::Holds::Secret)
        .map_err(|e| TlsError::Unsafe(e.to_string()))?;
    let invalid = |path: &Path, why: String| {
        TlsError::Invalid(format!("TLS {}: {}: {why}", kind(path, cert), path.display()))
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| invalid(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(invalid(cert, "no PEM CERTIFICATE block in it".into()));
    }
    // The key's own error text never quotes the key.
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|_| invalid(key, "no PEM private key (PKCS#8, PKCS#1 or SEC1) in it".into()))?;
    let signing = any_supported_type(&private)
        .map_err(|_| invalid(key, "a private key of a type TLS cannot sign with".into()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| {
        invalid(key, format!("it is not the key of the certificate in {}", cert.display()))
    })?;
    Ok(certified)
}

fn kind(path: &Path, cert: &Path) -> &'static str {
    if path == cert {
        "certificate"
    } else {
        "key"
    }
}
