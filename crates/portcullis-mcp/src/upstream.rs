use std::{collections::BTreeMap, path::PathBuf, process::Stdio};

use rmcp::{
    model::ProtocolVersion,
    service::{ClientLifecycleMode, RunningService, serve_client_with_lifecycle},
    transport::{
        StreamableHttpClientTransport, TokioChildProcess,
        streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use url::Url;

use crate::{UpstreamError, relay::Relay};

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
    },
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
            UpstreamTransport::Http { url } => format!("http {}", url.as_str()),
        }
    }
}

/// Open one MCP connection to `spec`, handing everything the upstream sends on its own to `relay`.
///
/// `era` overrides the spec's preference; per-session connections pass `Sessions` because they
/// exist only for upstreams that already turned out to be session-era servers.
pub async fn connect(
    spec: &UpstreamSpec,
    era: EraPreference,
    relay: Relay,
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
        UpstreamTransport::Http { url } => {
            let config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
            let transport = StreamableHttpClientTransport::from_config(config);
            serve_client_with_lifecycle(relay, transport, lifecycle)
                .await
                .map_err(handshake)
        }
    }
}

// SECURITY: a child gets only what it needs to run (PATH, HOME, locale), never the gateway's
// secrets from its environment; the operator passes anything else explicitly with `env`.
fn inherited_env() -> Vec<(String, String)> {
    const KEEP: [&str; 5] = ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"];
    std::env::vars()
        .filter(|(key, _)| KEEP.contains(&key.as_str()))
        .collect()
}
