//! TLS to PostgreSQL (rustls, certificates checked against the system's trust store, which
//! `SSL_CERT_FILE` can name), for the shared audit trail and the replicas' shared approval
//! state. Off loopback TLS is required: a URL without `sslmode` gets `require` (with the
//! certificate and host name verified), and `sslmode=disable` there is refused unless the
//! operator's `[danger] postgres_without_tls` says otherwise. On loopback or a Unix socket
//! the connection is plain unless the URL asks for `sslmode=require`.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::{
    config::{Host, SslMode},
    tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream},
};

/// What a PostgreSQL URL's hosts need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Every host is loopback or a Unix socket, and the URL names no `sslmode`: plain.
    Local,
    /// As the URL's `sslmode` says (verified TLS for `require`).
    AsWritten,
    /// Some host is off loopback: TLS, verified.
    Remote,
}

/// Check `url` (its hosts and `sslmode`) and say what it needs. A remote host with
/// `sslmode=disable` is an error unless `plaintext_allowed`.
pub fn transport(url: &str, plaintext_allowed: bool) -> Result<Transport, String> {
    let config: tokio_postgres::Config = url.parse().map_err(|error| format!("{error}"))?;
    // SECURITY: where the connection goes is `hostaddr` when given (the host name then only
    // names the certificate): both must be loopback. No host at all is not taken as local.
    let local = !config.get_hosts().is_empty()
        && config
            .get_hostaddrs()
            .iter()
            .all(std::net::IpAddr::is_loopback)
        && config.get_hosts().iter().all(|host| match host {
            Host::Unix(_) => true,
            Host::Tcp(name) => {
                name == "localhost"
                    || name
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
        });
    if local {
        // Read from the parsed URL (text could hold `sslmode=` in a password): `prefer`, the
        // default, is taken as not named.
        let named = config.get_ssl_mode() != SslMode::Prefer;
        return Ok(if named {
            Transport::AsWritten
        } else {
            Transport::Local
        });
    }
    if config.get_ssl_mode() == SslMode::Disable && !plaintext_allowed {
        return Err(
            "`sslmode=disable` to a host off loopback: approvals and records would cross the \
             network in the clear (set `[danger] postgres_without_tls = true` to allow it)"
                .to_owned(),
        );
    }
    Ok(Transport::Remote)
}

/// The `sslmode` to connect with under `transport`, given the URL's.
pub fn ssl_mode(written: SslMode, transport: Transport) -> SslMode {
    match transport {
        Transport::Local => SslMode::Disable,
        Transport::AsWritten => written,
        Transport::Remote if written == SslMode::Disable => SslMode::Disable,
        Transport::Remote => SslMode::Require,
    }
}

/// `url` as every PostgreSQL connection of the gateway's opens it: the transport `transport`
/// says (checked against `[danger]` when the configuration was read; here only applied), its
/// own options kept and statements bounded by `timeout`, commits durable, keepalives on,
/// named `application`; and the connector.
pub fn configure(
    url: &str,
    application: &str,
    timeout: std::time::Duration,
) -> Result<(tokio_postgres::Config, Tls), String> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|error| format!("{error}"))?;
    let transport = transport(url, true)?;
    config.ssl_mode(ssl_mode(config.get_ssl_mode(), transport));
    let options = format!(
        "{} -c statement_timeout={} -c synchronous_commit=on",
        config.get_options().unwrap_or_default(),
        timeout.as_millis()
    );
    config
        .connect_timeout(timeout)
        .options(options.trim_start())
        .keepalives(true)
        .keepalives_idle(std::time::Duration::from_secs(10))
        .application_name(application);
    Ok((config, Tls::shared()?))
}

/// The connector: rustls with the system's trust store.
#[derive(Clone)]
pub struct Tls(Arc<rustls::ClientConfig>);

impl Tls {
    /// The process's connector, built (the trust store read) on first use; a failure is not
    /// kept, the next use tries again.
    pub fn shared() -> Result<Self, String> {
        static SHARED: std::sync::OnceLock<Tls> = std::sync::OnceLock::new();
        if let Some(tls) = SHARED.get() {
            return Ok(tls.clone());
        }
        let tls = Self::new()?;
        Ok(SHARED.get_or_init(|| tls).clone())
    }

    /// Build it (reads the system's trust store).
    pub fn new() -> Result<Self, String> {
        use rustls_platform_verifier::BuilderVerifierExt;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?
            .with_platform_verifier()
            .map_err(|error| error.to_string())?
            .with_no_client_auth();
        Ok(Self(Arc::new(config)))
    }
}

impl<S> MakeTlsConnect<S> for Tls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type TlsConnect = Connect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Connect, Self::Error> {
        Ok(Connect {
            config: self.0.clone(),
            name: ServerName::try_from(domain.to_owned())?,
        })
    }
}

/// One handshake with one server.
pub struct Connect {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for Connect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = Stream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Stream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let connector = tokio_rustls::TlsConnector::from(self.config);
            Ok(Stream(connector.connect(self.name, stream).await?))
        })
    }
}

/// A TLS connection to the server.
pub struct Stream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for Stream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM without channel binding: the certificate check is what binds the server.
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_loopback_plaintext_is_refused_unless_allowed() {
        let local = "postgres://u@127.0.0.1:5432/db?sslmode=disable";
        assert_eq!(transport(local, false), Ok(Transport::AsWritten));
        assert_eq!(
            transport("postgres://u@localhost/db", false),
            Ok(Transport::Local)
        );
        assert_eq!(
            transport("postgres://u@db.internal/db", false),
            Ok(Transport::Remote)
        );
        let elsewhere = "postgres://u@localhost/db?hostaddr=10.0.0.5&sslmode=disable";
        assert!(
            transport(elsewhere, false).is_err(),
            "hostaddr is where it goes"
        );
        assert_eq!(
            transport("postgres://u@localhost/db?hostaddr=10.0.0.5", false),
            Ok(Transport::Remote)
        );
        assert_eq!(
            transport("postgres://u:sslmode=x@localhost/db", false),
            Ok(Transport::Local)
        );
        let plain = "postgres://u@db.internal/db?sslmode=disable";
        assert!(transport(plain, false).is_err());
        assert_eq!(transport(plain, true), Ok(Transport::Remote));
        assert_eq!(
            ssl_mode(SslMode::Prefer, Transport::Remote),
            SslMode::Require
        );
        assert_eq!(
            ssl_mode(SslMode::Prefer, Transport::Local),
            SslMode::Disable
        );
        assert!(Tls::new().is_ok());
    }
}
