//! What an operator configures about an upstream, and what the gateway announces to it.

use std::{collections::BTreeMap, future::Future, path::PathBuf, pin::Pin, sync::Arc};

use serde_json::{Map, Value};
use url::Url;

/// An MCP server behind the gateway, as the operator configured it.
#[derive(Debug, Clone)]
pub struct UpstreamSpec {
    /// Name used in logs, in prefixed capability names and in routing.
    pub name: String,
    /// How to reach it.
    pub transport: UpstreamTransport,
    /// Which protocol era to speak to it.
    pub era: EraPreference,
}

/// How an upstream is reached.
#[derive(Debug, Clone)]
pub enum UpstreamTransport {
    /// A child process speaking MCP over stdin/stdout.
    Stdio {
        /// Program to run.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Extra environment variables; the gateway's own environment is not passed on.
        env: BTreeMap<String, String>,
        /// Working directory, if not the gateway's.
        cwd: Option<PathBuf>,
    },
    /// A streamable HTTP endpoint.
    Http {
        /// The MCP endpoint URL.
        url: Url,
        /// The gateway's own credential there, sent as a bearer token on every request (never
        /// a caller's token).
        credential: Option<Credential>,
    },
}

/// The gateway's own credential at an upstream: a token from a file, or one the gateway asks an
/// authorization server for (and asks again before it expires). Its `Debug` never shows it.
#[derive(Clone)]
pub struct Credential(Source);

#[derive(Clone)]
enum Source {
    Fixed(String),
    Fetched(Arc<dyn TokenSource>),
}

/// Where a credential that changes comes from.
pub trait TokenSource: Send + Sync {
    /// The `Authorization` value to send now; `Err` says why there is none (never the token).
    fn authorization(
        &self,
    ) -> Pin<Box<dyn Future<Output = Result<http::HeaderValue, String>> + Send + '_>>;
}

impl Credential {
    /// A credential from its text (surrounding whitespace removed).
    pub fn new(text: &str) -> Self {
        Self(Source::Fixed(text.trim().to_owned()))
    }

    /// A credential asked of `source` for every request.
    pub fn fetched(source: Arc<dyn TokenSource>) -> Self {
        Self(Source::Fetched(source))
    }

    /// The `Authorization` header value carrying a fixed credential; `None` for one that is
    /// fetched, or text a header cannot carry.
    pub fn header_value(&self) -> Option<http::HeaderValue> {
        match &self.0 {
            Source::Fixed(text) => bearer(text),
            Source::Fetched(_) => None,
        }
    }

    /// The `Authorization` header value to send now.
    pub(crate) async fn current(&self) -> Result<http::HeaderValue, String> {
        match &self.0 {
            Source::Fixed(text) => {
                bearer(text).ok_or_else(|| "the credential cannot be sent in a header".to_owned())
            }
            Source::Fetched(source) => source.authorization().await,
        }
    }
}

/// `Bearer <token>`, marked sensitive (kept out of HTTP/2 header tables and debug output).
pub fn bearer(token: &str) -> Option<http::HeaderValue> {
    let mut value = http::HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

impl PartialEq for Credential {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Source::Fixed(a), Source::Fixed(b)) => a == b,
            (Source::Fetched(a), Source::Fetched(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Credential {}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(..)")
    }
}

/// Which protocol era the gateway speaks to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EraPreference {
    /// Probe with `server/discover`, fall back to `initialize` for older servers.
    #[default]
    Auto,
    /// Always the session era (`initialize`, 2025-11-25).
    Sessions,
    /// Always the stateless era (`server/discover`, 2026-07-28).
    Stateless,
}

impl UpstreamSpec {
    /// Spelled-out transport for logs: the program or URL, never credentials.
    pub fn describe(&self) -> String {
        match &self.transport {
            UpstreamTransport::Stdio { command, .. } => format!("stdio `{command}`"),
            UpstreamTransport::Http { url, .. } => format!("http {}", url.as_str()),
        }
    }
}

/// Who the gateway says it is to an upstream, and what its client can do: the gateway's own
/// capabilities on shared connections, a session client's own on that session's connections.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    /// `capabilities` (2025-11-25) or `io.modelcontextprotocol/clientCapabilities`.
    pub capabilities: Map<String, Value>,
    /// `clientInfo`: name and version.
    pub info: Value,
}

impl ClientIdentity {
    /// The gateway itself, able to relay elicitation (form and URL), sampling and roots.
    pub fn gateway() -> Self {
        let capabilities = serde_json::json!({
            "elicitation": { "form": {}, "url": {} },
            "sampling": {},
            "roots": {},
        });
        Self {
            capabilities: capabilities.as_object().cloned().unwrap_or_default(),
            info: serde_json::json!({"name": "portcullis", "version": env!("CARGO_PKG_VERSION")}),
        }
    }
}
