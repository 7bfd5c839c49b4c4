//! TLS on the listener (rustls): a certificate chain and key from PEM files, read again when
//! either changes, so a renewed certificate is served without a restart. A renewal that does
//! not load (half-written, a key that does not match) keeps the one in force, loudly.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tokio_util::sync::CancellationToken;

/// How often the files are looked at.
const CHECK: Duration = Duration::from_secs(2);

/// The listener's TLS: the acceptor, and the files it serves.
#[derive(Clone)]
pub struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    current: Arc<Current>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.current.files.0)
            .finish_non_exhaustive()
    }
}

/// The certified key in force, and where it comes from.
#[derive(Debug)]
struct Current {
    files: (PathBuf, PathBuf),
    key: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.key
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        )
    }
}

impl Tls {
    /// TLS with the chain in `cert` and the key in `key` (PEM), loaded now.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, String> {
        let current = Arc::new(Current {
            key: RwLock::new(Arc::new(certified(cert, key)?)),
            files: (cert.to_owned(), key.to_owned()),
        });
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        // HTTP/2 to a client that offers it, else HTTP/1.1; the connection is served by the
        // protocol chosen here, never by a guess from its first bytes (`http::connection`).
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            current,
        })
    }

    /// The acceptor for new connections.
    pub(crate) fn acceptor(&self) -> &tokio_rustls::TlsAcceptor {
        &self.acceptor
    }

    /// Whether the handshake of `stream` chose HTTP/2.
    pub(crate) fn chose_http2<S>(stream: &tokio_rustls::server::TlsStream<S>) -> bool {
        stream.get_ref().1.alpn_protocol() == Some(b"h2")
    }

    /// Read the files again whenever they change, until `stop`.
    pub fn watch(&self, stop: CancellationToken) {
        let current = self.current.clone();
        tokio::spawn(async move {
            let mut last = stamps(&current.files);
            // A change that did not load is said once, not every look.
            let mut refused = None;
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(CHECK) => {}
                }
                let now = stamps(&current.files);
                if now == last || refused == Some(now) {
                    continue;
                }
                match certified(&current.files.0, &current.files.1) {
                    Ok(key) => {
                        *current
                            .key
                            .write()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(key);
                        last = now;
                        tracing::info!(cert = %current.files.0.display(), "TLS certificate reloaded");
                    }
                    // Perhaps half-written: tried again at the next look, the old one served.
                    Err(error) => {
                        refused = Some(now);
                        tracing::error!(%error, "TLS certificate not reloaded; the one in force stays");
                    }
                }
            }
        });
    }
}

fn stamps((cert, key): &(PathBuf, PathBuf)) -> [Option<(SystemTime, u64)>; 2] {
    [crate::file_stamp(cert), crate::file_stamp(key)]
}

/// The chain in `cert` with the key in `key`, checked to belong together.
fn certified(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|error| format!("{}: {error}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|error| format!("{}: {error}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate", cert.display()));
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|error| format!("{}: {error}", key.display()))?;
    let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&private)
        .map_err(|error| format!("{}: {error}", key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|error| format!("{} and {}: {error}", cert.display(), key.display()))?;
    Ok(certified)
}
