use std::{collections::BTreeMap, path::PathBuf, process::Stdio};

use rmcp::{
    model::ProtocolVersion,
    service::{ClientLifecycleMode, RunningService, serve_client_with_lifecycle},
    transport::TokioChildProcess,
};
use url::Url;

use crate::{UpstreamError, http::HttpTransport, relay::Relay};

/// One live MCP connection to an upstream, with the relay that receives its traffic.
pub type Connection = RunningService<rmcp::RoleClient, Relay>;

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

/// The gateway's credential at an upstream. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential(String);

impl Credential {
    /// A credential from its text (surrounding whitespace removed).
    pub fn new(text: &str) -> Self {
        Self(text.trim().to_owned())
    }

    /// The `Authorization` header value carrying it.
    pub fn header_value(&self) -> Option<reqwest::header::HeaderValue> {
        let mut value =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", self.0)).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

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

/// Open one MCP connection to `spec`, handing everything the upstream sends on its own to `relay`.
///
/// `era` overrides the spec's preference; per-session connections pass `Sessions` because they
/// exist only for upstreams that already turned out to be session-era servers.
///
/// `http` is the client HTTP upstreams are reached with; share one so connections are pooled.
pub async fn connect(
    spec: &UpstreamSpec,
    era: EraPreference,
    relay: Relay,
    http: &reqwest::Client,
) -> Result<Connection, UpstreamError> {
    let lifecycle = match era {
        EraPreference::Sessions => ClientLifecycleMode::Initialize,
        EraPreference::Stateless => ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
        EraPreference::Auto => ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            legacy_version: Some(ProtocolVersion::V_2025_11_25),
        },
    };
    let handshake = |source: rmcp::service::ClientInitializeError| UpstreamError::Handshake {
        upstream: spec.name.clone(),
        source: Box::new(source),
    };
    match &spec.transport {
        UpstreamTransport::Stdio {
            command,
            args,
            env,
            cwd,
        } => {
            let mut cmd = tokio::process::Command::new(command);
            cmd.args(args)
                .env_clear()
                .envs(inherited_env())
                .envs(env)
                .kill_on_drop(true);
            if let Some(cwd) = cwd {
                cmd.current_dir(cwd);
            }
            let (child, _stderr) = TokioChildProcess::builder(cmd)
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|source| UpstreamError::Spawn {
                    upstream: spec.name.clone(),
                    command: command.clone(),
                    source,
                })?;
            serve_client_with_lifecycle(relay, child, lifecycle)
                .await
                .map_err(handshake)
        }
        UpstreamTransport::Http { url, .. } => {
            let transport = HttpTransport::new(http.clone(), url.clone());
            serve_client_with_lifecycle(relay, transport, lifecycle)
                .await
                .map_err(handshake)
        }
    }
}

/// The HTTP client for upstreams: pooled, no Nagle delay, bounded connect time, and no overall
/// timeout (SSE answers and listen streams legitimately stay open).
pub fn http_client() -> reqwest::Client {
    client_with(None)
}

/// The HTTP client for one upstream: as [`http_client`], sending `credential` on every request.
pub(crate) fn upstream_client(credential: Option<&Credential>) -> reqwest::Client {
    client_with(credential.and_then(Credential::header_value))
}

fn client_with(authorization: Option<reqwest::header::HeaderValue>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(value) = authorization {
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .tcp_nodelay(true)
        .connect_timeout(std::time::Duration::from_secs(10))
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .build()
        // Building fails only when the TLS backend cannot initialise; the default client then
        // reports that failure on each request instead of at start.
        .unwrap_or_default()
}

// SECURITY: a child gets only what it needs to run (PATH, HOME, locale), never the gateway's
// secrets from its environment; the operator passes anything else explicitly with `env`.
fn inherited_env() -> Vec<(String, String)> {
    const KEEP: [&str; 5] = ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"];
    std::env::vars()
        .filter(|(key, _)| KEEP.contains(&key.as_str()))
        .collect()
}
