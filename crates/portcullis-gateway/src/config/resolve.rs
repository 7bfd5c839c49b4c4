use std::{net::SocketAddr, path::Path, time::Duration};

use portcullis_authn::signing::SigningKey;
use portcullis_mcp::{Credential, EraPreference, UpstreamSpec, UpstreamTransport};
use url::Url;

use super::{
    ConfigError,
    auth::{Auth, resolve_auth},
    raw::{Raw, RawIdentity, RawNaming, RawServer, RawUpstream},
};
use crate::identity::IdentityConfig;

/// A resolved configuration: every value parsed, checked and defaulted.
#[derive(Debug, Clone)]
pub struct Config {
    /// Socket address to bind.
    pub listen: SocketAddr,
    /// Path of the MCP endpoint.
    pub path: String,
    /// Host header values accepted (lowercase, optional port).
    pub allowed_hosts: Vec<String>,
    /// Origin header values accepted; a port of `*` matches any port.
    pub allowed_origins: Vec<String>,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Time allowed to send request headers.
    pub header_timeout: Duration,
    /// Time an upstream has to answer one request.
    pub request_timeout: Duration,
    /// Time in-flight calls get to finish on shutdown.
    pub shutdown_grace: Duration,
    /// Load balancers whose connections open with a PROXY header.
    pub proxy_protocol: Vec<crate::http::proxy::Net>,
    /// TLS on the listener, if configured: the certificate chain and key files, loaded by
    /// `serve` and `check` only (the operator commands and policy reloads read this
    /// configuration too, and need not read the private key).
    pub tls_files: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// On SIGTERM, time served while `/readyz` says draining, before the listener closes, if
    /// set; see [`Config::drain_delay`].
    pub drain_delay: Option<Duration>,
    /// Keep-alive comment interval on SSE streams.
    pub sse_keep_alive: Duration,
    /// Answer POSTs with plain JSON instead of SSE where possible.
    pub json_response: bool,
    /// A session idle this long is closed with its upstream connections.
    pub session_idle_timeout: Duration,
    /// Most upstream connections held for sessions at once.
    pub max_session_connections: usize,
    /// Request rates and connection counts.
    pub limits: super::Limits,
    /// Pinned upstream definitions.
    pub pins: super::PinsConfig,
    /// Replicas behind one load balancer.
    pub cluster: super::Cluster,
    /// How aggregated names are formed.
    pub naming: Naming,
    /// The resource URI prefixes each upstream owns, in the order of `upstreams` (empty: it
    /// declared none, and owns what it lists that nobody declared).
    pub resource_namespaces: Vec<Vec<String>>,
    /// Which token callers' requests carry to each upstream, in the order of `upstreams`.
    pub upstream_credentials: Vec<super::UpstreamCredentials>,
    /// Where people's upstream sign-ins are kept, when an upstream has `user-oauth`.
    pub connections: Option<super::ConnectionsConfig>,
    /// The upstreams, in routing order, each with its resolved prefix.
    pub upstreams: Vec<(UpstreamSpec, Option<String>)>,
    /// Authentication; `None` only when `[danger] unauthenticated = true`.
    pub auth: Option<Auth>,
    /// Signed identity assertions for upstreams, if configured.
    pub identity: Option<IdentityConfig>,
    /// The audit trail's sinks, if configured.
    pub audit: Option<AuditConfig>,
    /// Where `/metrics` is served, if anywhere.
    pub admin: Option<SocketAddr>,
    /// How approvals are asked for.
    pub consent: ConsentConfig,
    /// Live entitlements (read once here; re-read by the gateway when the file changes).
    pub entitlements: Option<std::sync::Arc<crate::entitlements::Entitlements>>,
}

/// Resolved `[consent]`.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsentConfig {
    /// How long an approval request stays answerable.
    pub ttl: Duration,
    /// How long a session client has to answer one.
    pub wait: Duration,
    /// The file of keys sealing approvals (read by the gateway and `check` only, see
    /// [`ConsentConfig::read_keys`]); none: one key made per process.
    pub keys_file: Option<std::path::PathBuf>,
    /// The lowest tier approved only on the approval page.
    pub out_of_band: portcullis_policy::RiskTier,
    /// The approval page's OAuth client, if not its own metadata document.
    pub client_id: Option<String>,
    /// The issuer the approval page signs people in with, if not the first.
    pub issuer: Option<String>,
}

impl std::fmt::Debug for ConsentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsentConfig")
            .field("ttl", &self.ttl)
            .field("wait", &self.wait)
            .field("keys_file", &self.keys_file)
            .field("out_of_band", &self.out_of_band)
            .field("client_id", &self.client_id)
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// A file the configuration makes, written by [`Config::write_files`].
#[derive(Clone, PartialEq, Eq)]
pub struct PendingFile {
    key: &'static str,
    path: std::path::PathBuf,
    bytes: Vec<u8>,
    /// Readable by its owner only, and never overwritten.
    private: bool,
}

impl std::fmt::Debug for PendingFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // It may hold a private key.
        f.debug_struct("PendingFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Resolved `[audit]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// The SQLite trail.
    pub sqlite: Option<std::path::PathBuf>,
    /// The PostgreSQL trail's connection URL.
    pub postgres: Option<String>,
    /// The JSON lines trail.
    pub jsonl: Option<std::path::PathBuf>,
    /// Its rotation size.
    pub jsonl_max_bytes: u64,
    /// JSON lines on standard output.
    pub stdout: bool,
    /// Arguments kept in records (redacted), not only their digest.
    pub raw_arguments: bool,
    /// Argument fields redacted beside the always-redacted ones.
    pub redact: Vec<String>,
}

/// How aggregated capability names are formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    /// When names get prefixes.
    pub prefix: PrefixMode,
    /// Between prefix and name.
    pub separator: String,
}

/// When names get prefixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixMode {
    /// Only when there are several upstreams.
    Auto,
    /// Always.
    Always,
    /// Never: names must not collide across upstreams.
    Never,
}

const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];
const LOOPBACK_ORIGINS: [&str; 3] = ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"];

impl Config {
    /// The listener's TLS, loaded from its files (`None` without `[server] tls_cert`).
    pub fn load_tls(&self) -> Result<Option<crate::http::Tls>, ConfigError> {
        self.tls_files
            .as_ref()
            .map(|(cert, key)| {
                crate::http::Tls::load(cert, key)
                    .map_err(|error| ConfigError::invalid("server.tls_cert", error))
            })
            .transpose()
    }

    /// The files [`Config::write_files`] would write.
    pub fn files_to_write(&self) -> Vec<&Path> {
        self.identity
            .iter()
            .flat_map(|identity| identity.files.iter().map(|file| file.path.as_path()))
            .collect()
    }

    /// Write the files the configuration makes (a new identity key, the public key set): what
    /// `serve` does once everything in it was read without error, and `check` never does.
    pub fn write_files(&self) -> Result<(), ConfigError> {
        let Some(identity) = &self.identity else {
            return Ok(());
        };
        for file in &identity.files {
            // Another process (a replica, the same gateway started twice) made the key first:
            // the one on disk is the one every process must use from now on.
            if file.private && file.path.exists() {
                return Err(ConfigError::invalid(
                    file.key,
                    format!(
                        "`{}` appeared while the gateway started: start it again to use it",
                        file.path.display()
                    ),
                ));
            }
            let written = if file.private {
                portcullis_authn::signing::write_private(&file.path, &file.bytes)
                    .map_err(|error| error.to_string())
            } else {
                std::fs::write(&file.path, &file.bytes)
                    .map_err(|error| format!("`{}`: {error}", file.path.display()))
            };
            if let Err(error) = written {
                // Half a key would stop every later start: none is better. Only ours goes
                // (what is there is the start of what was being written), never a key another
                // process wrote meanwhile.
                if file.private
                    && std::fs::read(&file.path).is_ok_and(|there| file.bytes.starts_with(&there))
                {
                    let _ = std::fs::remove_file(&file.path);
                }
                return Err(ConfigError::invalid(file.key, error));
            }
            if file.private {
                tracing::info!(path = %file.path.display(), "generated a signing key");
            }
        }
        Ok(())
    }

    /// On SIGTERM, how long to serve while `/readyz` says draining: as set, else 5 s for a
    /// replica (its load balancer must see it go first) and nothing for a lone gateway.
    pub fn drain_delay(&self) -> Duration {
        self.drain_delay.unwrap_or(if self.cluster.clustered() {
            Duration::from_secs(5)
        } else {
            Duration::ZERO
        })
    }

    /// The `[log] format` the file at `path` asks for (`json`), read before anything else so
    /// that the log can be set up before the configuration is resolved (which logs); `None`
    /// for text, or a file that cannot be read (its error comes when it is loaded).
    pub fn log_format(path: &Path) -> Option<String> {
        let text = std::fs::read_to_string(path).ok()?;
        let value: toml::Table = toml::from_str(&text).ok()?;
        value.get("log")?.get("format")?.as_str().map(str::to_owned)
    }

    /// `[telemetry]` of the file at `path`, read before anything else (the binary sets up
    /// tracing first): the OTLP/HTTP traces URL and the service name. `None` when absent or
    /// unreadable; `load` then says what is wrong with it.
    pub fn telemetry(path: &Path) -> Option<(String, String)> {
        let text = std::fs::read_to_string(path).ok()?;
        let raw: Raw = toml::from_str(&text).ok()?;
        let telemetry = raw.telemetry?;
        let endpoint = traces_url(&telemetry.otlp_endpoint).ok()?;
        Some((
            endpoint,
            telemetry
                .service_name
                .unwrap_or_else(|| "portcullis".to_owned()),
        ))
    }

    /// Read and resolve a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Resolve TOML text; `origin` names it in error messages.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        let raw: Raw = toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: origin.to_owned(),
            // The parser quotes the line: a database URL's password is not repeated.
            message: without_passwords(error.to_string().trim_end()),
        })?;
        // Paths in the file are its folder's; made absolute here, so that what they name does
        // not change with the directory a child process starts in.
        let folder = origin.parent().unwrap_or(Path::new("."));
        let base = if folder.as_os_str().is_empty() || folder.is_absolute() {
            folder.to_path_buf()
        } else {
            std::path::absolute(folder).unwrap_or_else(|_| folder.to_path_buf())
        };
        Self::resolve(raw, &base).map_err(|error| error.located(text, origin))
    }

    /// Resolve a parsed file: the only way to build a `Config`. Relative paths in it (the policy
    /// file) are taken from `base`, the configuration file's directory.
    pub fn resolve(raw: Raw, base: &Path) -> Result<Self, ConfigError> {
        let Raw {
            server,
            naming,
            upstreams,
            auth,
            capabilities,
            policy,
            identity,
            audit,
            admin,
            consent,
            entitlements,
            limits,
            pins,
            cluster,
            connections,
            log,
            telemetry,
            danger,
        } = raw;
        if !matches!(log.format.as_deref(), None | Some("text" | "json")) {
            return Err(ConfigError::invalid("log.format", "`text` or `json`"));
        }
        let auth = match (auth, danger.unauthenticated) {
            (Some(auth), _) => Some(resolve_auth(
                auth,
                capabilities,
                policy,
                danger.insecure_issuers,
                base,
            )?),
            (None, true) if !capabilities.is_empty() || policy.is_some() => {
                return Err(ConfigError::invalid(
                    "policy",
                    "`[policy]` and `[[capability]]` decide for authenticated callers: add `[auth]`",
                ));
            }
            (None, true) => {
                tracing::warn!(
                    "[danger] unauthenticated = true: anyone who reaches the port may call every upstream"
                );
                None
            }
            (None, false) => {
                return Err(ConfigError::invalid(
                    "auth",
                    "an `[auth]` section is required (or `[danger] unauthenticated = true`)",
                ));
            }
        };
        let identity = match (identity, &auth) {
            (None, _) => None,
            (Some(identity), Some(auth)) => Some(resolve_identity(identity, auth, base)?),
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "identity",
                    "identity assertions speak for authenticated callers: add `[auth]`",
                ));
            }
        };
        let RawServer {
            listen,
            path,
            allowed_hosts,
            tls_cert,
            tls_key,
            proxy_protocol,
            allowed_origins,
            max_body_bytes,
            header_timeout,
            request_timeout,
            shutdown_grace,
            drain_delay,
            sse_keep_alive,
            json_response,
            session_idle_timeout,
            max_session_connections,
        } = server;
        let listen = listen.as_deref().unwrap_or("127.0.0.1:8080");
        let listen = listen.parse().map_err(|_| {
            ConfigError::invalid(
                "server.listen",
                format!("`{listen}` is not a socket address"),
            )
        })?;
        let path = path.unwrap_or_else(|| "/mcp".to_owned());
        if !path.starts_with('/') || path.contains(['?', '#', '{', '}', '*']) {
            return Err(ConfigError::invalid(
                "server.path",
                "must be a plain path starting with `/`",
            ));
        }
        let naming = resolve_naming(naming)?;
        if upstreams.is_empty() {
            return Err(ConfigError::invalid(
                "upstream",
                "at least one `[[upstream]]` is required",
            ));
        }
        let several = upstreams.len() > 1;
        let mut resolved = Vec::with_capacity(upstreams.len());
        let mut resource_namespaces: Vec<Vec<String>> = Vec::with_capacity(upstreams.len());
        let mut pins = super::pins::resolve_pins(pins, base)?;
        let mut upstream_credentials = Vec::with_capacity(upstreams.len());
        for (index, mut upstream) in upstreams.into_iter().enumerate() {
            let key = format!("upstream[{index}]");
            let credentials = super::credentials::resolve_credentials(
                &key,
                (
                    upstream.credentials.take(),
                    upstream.token_exchange.take(),
                    upstream.user_oauth.take(),
                ),
                upstream.url.as_deref(),
                base,
                danger.insecure_issuers,
            )?;
            if matches!(credentials, super::UpstreamCredentials::TokenExchange(_))
                && upstream.credential_file.is_some()
            {
                return Err(ConfigError::invalid(
                    format!("{key}.credential_file"),
                    "with `credentials = \"token-exchange\"` the gateway asks for its own token there with the same client",
                ));
            }
            if !matches!(credentials, super::UpstreamCredentials::Gateway) && auth.is_none() {
                return Err(ConfigError::invalid(
                    format!("{key}.credentials"),
                    "a token on a caller's behalf needs an authenticated caller: add `[auth]`",
                ));
            }
            upstream_credentials.push(credentials);
            let namespaces = upstream.resources.clone().unwrap_or_default();
            check_namespaces(&key, &namespaces, &resource_namespaces)?;
            resource_namespaces.push(namespaces);
            pins.fixed.extend(super::pins::resolve_fixed(
                &key,
                &upstream.name,
                upstream.pins.as_deref().unwrap_or_default(),
            )?);
            let (spec, prefix) = resolve_upstream(&key, upstream, &naming, base, several)?;
            if resolved
                .iter()
                .any(|(other, _): &(UpstreamSpec, _)| other.name == spec.name)
            {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    format!("`{}` is used twice", spec.name),
                ));
            }
            resolved.push((spec, prefix));
        }
        // Without prefixes, two upstreams listing one name would each claim it.
        if naming.prefix == PrefixMode::Never && several {
            return Err(ConfigError::invalid(
                "naming.prefix",
                "`never` needs a single upstream: with several, one name could mean tools of two",
            ));
        }
        check_prefixes(&resolved, &naming.separator)?;
        let cluster = super::cluster::resolve_cluster(cluster)?;
        if let Some(telemetry) = &telemetry {
            traces_url(&telemetry.otlp_endpoint)
                .map_err(|error| ConfigError::invalid("telemetry.otlp_endpoint", error))?;
            if telemetry.service_name.as_deref().is_some_and(str::is_empty) {
                return Err(ConfigError::invalid(
                    "telemetry.service_name",
                    "must not be empty",
                ));
            }
        }
        let connections = super::credentials::resolve_connections(
            connections,
            upstream_credentials
                .iter()
                .any(|c| matches!(c, super::UpstreamCredentials::UserOauth(_))),
            base,
            cluster.postgres.as_deref(),
        )?;
        // SECURITY: approvals and records cross the network only over TLS, unless the
        // operator says otherwise under [danger].
        let urls = [
            ("cluster.postgres", cluster.postgres.as_deref()),
            (
                "audit.postgres",
                audit.as_ref().and_then(|audit| audit.postgres.as_deref()),
            ),
        ];
        for (key, url) in urls {
            if let Some(url) = url {
                portcullis_audit::pg_tls::transport(url, danger.postgres_without_tls)
                    .map_err(|error| ConfigError::invalid(key, error))?;
            }
        }
        if danger.postgres_without_tls {
            tracing::warn!(
                "[danger] postgres_without_tls = true: approvals and audit records may cross the network unencrypted"
            );
        }
        let issuers: Vec<String> = auth
            .as_ref()
            .map(|auth| auth.issuers.iter().map(|i| i.issuer.clone()).collect())
            .unwrap_or_default();
        Ok(Self {
            listen,
            path,
            allowed_hosts: allowed_hosts
                .unwrap_or_else(|| LOOPBACK_HOSTS.map(str::to_owned).to_vec())
                .into_iter()
                .map(|host| host.to_ascii_lowercase())
                .collect(),
            allowed_origins: allowed_origins
                .unwrap_or_else(|| LOOPBACK_ORIGINS.map(str::to_owned).to_vec()),
            max_body_bytes: max_body_bytes.unwrap_or(4 * 1024 * 1024),
            header_timeout: match duration("server.header_timeout", header_timeout, 10_000)? {
                // Every connection's deadlines are counted from it: a value too large for a
                // clock would be no deadline at all.
                timeout if timeout.is_zero() || timeout > Duration::from_secs(3600) => {
                    return Err(ConfigError::invalid(
                        "server.header_timeout",
                        "from 1ms to 60m",
                    ));
                }
                timeout => timeout,
            },
            request_timeout: duration("server.request_timeout", request_timeout, 300_000)?,
            shutdown_grace: duration("server.shutdown_grace", shutdown_grace, 30_000)?,
            proxy_protocol: proxy_protocol
                .unwrap_or_default()
                .iter()
                .map(|text| {
                    crate::http::proxy::Net::parse(text).ok_or_else(|| {
                        ConfigError::invalid(
                            "server.proxy_protocol",
                            format!("`{text}`: an address or a CIDR range (`10.0.0.0/8`)"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
            tls_files: match (tls_cert, tls_key) {
                (None, None) => None,
                (Some(cert), Some(key)) => Some((base.join(cert), base.join(key))),
                (Some(_), None) => {
                    return Err(ConfigError::invalid(
                        "server.tls_key",
                        "required with tls_cert",
                    ));
                }
                (None, Some(_)) => {
                    return Err(ConfigError::invalid(
                        "server.tls_cert",
                        "required with tls_key",
                    ));
                }
            },
            drain_delay: match drain_delay {
                None => None,
                Some(text) => {
                    let delay = duration("server.drain_delay", Some(text), 0)?;
                    if delay > Duration::from_secs(300) {
                        return Err(ConfigError::invalid("server.drain_delay", "at most 5m"));
                    }
                    Some(delay)
                }
            },
            sse_keep_alive: duration("server.sse_keep_alive", sse_keep_alive, 15_000)?,
            json_response: json_response.unwrap_or(false),
            session_idle_timeout: duration(
                "server.session_idle_timeout",
                session_idle_timeout,
                300_000,
            )?,
            max_session_connections: max_session_connections.unwrap_or(256),
            limits: super::limits::resolve_limits(limits)?,
            pins,
            cluster: cluster.clone(),
            naming,
            upstreams: resolved,
            resource_namespaces,
            upstream_credentials,
            connections,
            auth,
            identity,
            audit: match audit {
                None => None,
                Some(audit)
                    if audit.sqlite.is_none()
                        && audit.postgres.is_none()
                        && audit.jsonl.is_none()
                        && !audit.stdout =>
                {
                    return Err(ConfigError::invalid(
                        "audit",
                        "name at least one sink: `sqlite`, `postgres`, `jsonl` or `stdout = true`",
                    ));
                }
                Some(audit) => Some(AuditConfig {
                    sqlite: audit.sqlite.map(|path| base.join(path)),
                    postgres: audit.postgres,
                    jsonl: audit.jsonl.map(|path| base.join(path)),
                    jsonl_max_bytes: audit.jsonl_max_bytes.unwrap_or(64 * 1024 * 1024),
                    stdout: audit.stdout,
                    raw_arguments: audit.raw_arguments,
                    redact: audit.redact,
                }),
            },
            entitlements: match entitlements {
                None => None,
                Some(raw) => {
                    let refresh = duration("entitlements.refresh", raw.refresh, 1_000)?;
                    if refresh.is_zero() || refresh > Duration::from_secs(60) {
                        return Err(ConfigError::invalid(
                            "entitlements.refresh",
                            "between 1ms and 60s",
                        ));
                    }
                    let path = base.join(raw.file);
                    let source =
                        crate::entitlements::Entitlements::open(&path, refresh, issuers)
                            .map_err(|error| ConfigError::invalid("entitlements.file", error))?;
                    Some(std::sync::Arc::new(source))
                }
            },
            consent: {
                let ttl = duration("consent.ttl", consent.ttl, 600_000)?;
                if ttl > Duration::from_secs(3600) {
                    return Err(ConfigError::invalid("consent.ttl", "at most 1h"));
                }
                let out_of_band = match consent.out_of_band.as_deref() {
                    None => portcullis_policy::RiskTier::Admin,
                    Some(word) => portcullis_policy::RiskTier::parse(word).ok_or_else(|| {
                        ConfigError::invalid(
                            "consent.out_of_band",
                            "use read, write, destructive, admin or spend",
                        )
                    })?,
                };
                let keys_file = consent.keys.map(|file| base.join(file));
                if keys_file.is_none() && cluster.postgres.is_some() {
                    return Err(ConfigError::invalid(
                        "consent.keys",
                        "required with `[cluster] postgres`: every replica must open the \
                         approvals the others sealed",
                    ));
                }
                // SECURITY: a key that outlives the process opens states after a restart, and
                // one shared by replicas opens them on each: only the shared record of used
                // approvals keeps each to one use.
                if keys_file.is_some() && cluster.postgres.is_none() {
                    return Err(ConfigError::invalid(
                        "consent.keys",
                        "needs `[cluster] postgres`, where used approvals are recorded for \
                         every process that holds the key (without it, an approval could be \
                         used again after a restart or on another replica)",
                    ));
                }
                ConsentConfig {
                    ttl,
                    wait: duration("consent.wait", consent.wait, 300_000)?,
                    keys_file,
                    out_of_band,
                    client_id: consent.client_id,
                    issuer: consent.issuer,
                }
            },
            admin: match admin {
                None => None,
                Some(admin) => Some(admin.listen.parse().map_err(|_| {
                    ConfigError::invalid(
                        "admin.listen",
                        format!("`{}` is not a socket address", admin.listen),
                    )
                })?),
            },
        })
    }
}

impl ConsentConfig {
    /// The sealing keys, the sealing one first; empty without a file. Read when needed, not
    /// with the configuration: the operator commands read it too, and need not read secrets.
    pub fn read_keys(&self) -> Result<Vec<Vec<u8>>, ConfigError> {
        self.keys_file
            .as_deref()
            .map_or_else(|| Ok(Vec::new()), read_keys)
    }
}

/// The keys in `path`, one a line, the sealing one first.
fn read_keys(path: &Path) -> Result<Vec<Vec<u8>>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigError::invalid("consent.keys", format!("{}: {error}", path.display()))
    })?;
    // An editor's byte-order mark is not part of the first key; `#` lines are comments.
    let keys: Vec<Vec<u8>> = text
        .trim_start_matches('\u{feff}')
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.as_bytes().to_vec())
        .collect();
    let unique: std::collections::HashSet<&Vec<u8>> = keys.iter().collect();
    if unique.len() != keys.len() {
        return Err(ConfigError::invalid(
            "consent.keys",
            format!("{}: a key is there twice", path.display()),
        ));
    }
    if keys.is_empty() || keys.iter().any(|key| key.len() < 32) {
        return Err(ConfigError::invalid(
            "consent.keys",
            format!(
                "{}: one key a line, each at least 32 characters (`openssl rand -base64 32`)",
                path.display()
            ),
        ));
    }
    Ok(keys)
}

fn resolve_identity(
    raw: RawIdentity,
    auth: &Auth,
    base: &Path,
) -> Result<IdentityConfig, ConfigError> {
    let key_path = base.join(&raw.key_file);
    // Nothing is written while the configuration is read: `check` and the operator commands
    // read it too, and a configuration that fails further on must leave nothing behind.
    let (key, new) = SigningKey::load_or_generate(&key_path)
        .map_err(|error| ConfigError::invalid("identity.key_file", error.to_string()))?;
    let mut files = Vec::new();
    if let Some(pem) = new {
        files.push(PendingFile {
            key: "identity.key_file",
            path: key_path,
            bytes: pem,
            private: true,
        });
    }
    if let Some(jwks_file) = &raw.jwks_file {
        files.push(PendingFile {
            key: "identity.jwks_file",
            path: base.join(jwks_file),
            bytes: serde_json::to_string_pretty(&key.jwks())
                .unwrap_or_default()
                .into_bytes(),
            private: false,
        });
    }
    let lifetime = duration("identity.lifetime", raw.lifetime, 60_000)?;
    if lifetime > Duration::from_secs(300) {
        return Err(ConfigError::invalid(
            "identity.lifetime",
            "at most 5m: an assertion is for one request",
        ));
    }
    Ok(IdentityConfig {
        key: std::sync::Arc::new(key),
        issuer: auth.resource.identifier().to_owned(),
        lifetime,
        files,
    })
}

fn resolve_naming(raw: RawNaming) -> Result<Naming, ConfigError> {
    let prefix = match raw.prefix.as_deref().unwrap_or("auto") {
        "auto" => PrefixMode::Auto,
        "always" => PrefixMode::Always,
        "never" => PrefixMode::Never,
        other => {
            return Err(ConfigError::invalid(
                "naming.prefix",
                format!("`{other}`: expected `auto`, `always` or `never`"),
            ));
        }
    };
    let separator = raw.separator.unwrap_or_else(|| "__".to_owned());
    if separator.is_empty() {
        return Err(ConfigError::invalid(
            "naming.separator",
            "must not be empty",
        ));
    }
    Ok(Naming { prefix, separator })
}

/// SECURITY: a public name must route one way only. Two prefixes where one, with the
/// separator, begins the other (`a` and `a__b`) let `a__b__x` mean either upstream's tool.
fn check_prefixes(
    upstreams: &[(UpstreamSpec, Option<String>)],
    separator: &str,
) -> Result<(), ConfigError> {
    for (index, (_, prefix)) in upstreams.iter().enumerate() {
        let Some(prefix) = prefix else { continue };
        let mine = format!("{prefix}{separator}");
        let overlapping = upstreams[..index]
            .iter()
            .filter_map(|(spec, p)| Some((spec, p.as_ref()?)))
            .find(|(_, p)| {
                let theirs = format!("{p}{separator}");
                mine.starts_with(&theirs) || theirs.starts_with(&mine)
            });
        if let Some((other, _)) = overlapping {
            return Err(ConfigError::invalid(
                format!("upstream[{index}].prefix"),
                format!(
                    "`{prefix}` overlaps the prefix of upstream `{}`: a name could route to either",
                    other.name
                ),
            ));
        }
    }
    Ok(())
}

/// SECURITY: a URI must have one owner. A namespace is a URI prefix with a scheme; one that
/// overlaps another upstream's (either starts with the other) is refused.
fn check_namespaces(
    key: &str,
    namespaces: &[String],
    others: &[Vec<String>],
) -> Result<(), ConfigError> {
    for namespace in namespaces {
        if !namespace.contains(':') || namespace.chars().any(char::is_whitespace) {
            return Err(ConfigError::invalid(
                format!("{key}.resources"),
                format!(
                    "`{namespace}`: a URI prefix with its scheme, like `hr://` or `file:///srv/hr/`"
                ),
            ));
        }
        for (index, theirs) in others.iter().enumerate() {
            let mine = crate::upstreams::route::folded(namespace);
            if let Some(overlap) = theirs.iter().find(|their| {
                let their = crate::upstreams::route::folded(their);
                their.starts_with(mine.as_str()) || mine.starts_with(their.as_str())
            }) {
                return Err(ConfigError::invalid(
                    format!("{key}.resources"),
                    format!(
                        "`{namespace}` overlaps `{overlap}` of upstream[{index}]: a URI could belong to either"
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn resolve_upstream(
    key: &str,
    raw: RawUpstream,
    naming: &Naming,
    base: &Path,
    several: bool,
) -> Result<(UpstreamSpec, Option<String>), ConfigError> {
    let RawUpstream {
        name,
        command,
        args,
        env,
        cwd,
        url,
        credential_file,
        era,
        prefix,
        resources: _,
        pins: _,
        credentials: _,
        token_exchange: _,
        user_oauth: _,
    } = raw;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ConfigError::invalid(
            format!("{key}.name"),
            "use letters, digits, `-` and `_` only",
        ));
    }
    if command.is_some() && credential_file.is_some() {
        return Err(ConfigError::invalid(
            format!("{key}.credential_file"),
            "a stdio upstream is a child process: give it credentials with `env`",
        ));
    }
    let transport = match (command, url) {
        (Some(command), None) => {
            // Relative paths are the config file's folder's, as every other path here: the
            // child starts there (so relative `args` are found), and a `command` written as a
            // path (`./server`, `bin/server`) is taken from there; a bare name is looked up
            // on PATH as usual.
            let here = (!base.as_os_str().is_empty()).then_some(base);
            let command = match here {
                Some(base) if command.contains('/') && Path::new(&command).is_relative() => {
                    base.join(&command).to_string_lossy().into_owned()
                }
                _ => command,
            };
            let cwd = match (cwd, here) {
                (Some(cwd), Some(base)) => Some(base.join(cwd)),
                (None, Some(base)) => Some(base.to_path_buf()),
                (cwd, None) => cwd,
            };
            UpstreamTransport::Stdio {
                command,
                args,
                env,
                cwd,
            }
        }
        (None, Some(url)) => {
            let parsed = Url::parse(&url).map_err(|error| {
                ConfigError::invalid(format!("{key}.url"), format!("`{url}`: {error}"))
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(ConfigError::invalid(
                    format!("{key}.url"),
                    "must be http or https",
                ));
            }
            if !args.is_empty() || !env.is_empty() || cwd.is_some() {
                return Err(ConfigError::invalid(
                    key,
                    "`args`, `env` and `cwd` belong to stdio upstreams (`command`)",
                ));
            }
            let credential = match credential_file {
                None => None,
                Some(file) => {
                    let path = base.join(file);
                    let text = std::fs::read_to_string(&path).map_err(|error| {
                        ConfigError::invalid(
                            format!("{key}.credential_file"),
                            format!("`{}`: {error}", path.display()),
                        )
                    })?;
                    let credential = Credential::new(&text);
                    if credential.header_value().is_none() {
                        return Err(ConfigError::invalid(
                            format!("{key}.credential_file"),
                            "the credential cannot be sent in a header (control characters?)",
                        ));
                    }
                    Some(credential)
                }
            };
            UpstreamTransport::Http {
                url: parsed,
                credential,
            }
        }
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                key,
                "give either `command` or `url`, not both",
            ));
        }
        (None, None) => {
            return Err(ConfigError::invalid(
                key,
                "give `command` (stdio) or `url` (HTTP)",
            ));
        }
    };
    let era = match era.as_deref().unwrap_or("auto") {
        "auto" => EraPreference::Auto,
        "2025-11-25" => EraPreference::Sessions,
        "2026-07-28" => EraPreference::Stateless,
        other => {
            return Err(ConfigError::invalid(
                format!("{key}.era"),
                format!("`{other}`: expected `auto`, `2025-11-25` or `2026-07-28`"),
            ));
        }
    };
    let prefix = match naming.prefix {
        PrefixMode::Never => None,
        PrefixMode::Auto if !several => None,
        PrefixMode::Auto | PrefixMode::Always => Some(prefix.unwrap_or_else(|| name.clone())),
    };
    Ok((
        UpstreamSpec {
            name,
            transport,
            era,
        },
        prefix,
    ))
}

/// Parse `500ms`, `10s` or `5m`; absent means `default_ms`.
pub(super) fn duration(
    key: &str,
    value: Option<String>,
    default_ms: u64,
) -> Result<Duration, ConfigError> {
    let Some(text) = value else {
        return Ok(Duration::from_millis(default_ms));
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || {
        ConfigError::invalid(
            key,
            format!("`{text}`: expected a whole number with ms, s or m"),
        )
    };
    let number: u64 = number.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number.saturating_mul(60))),
        _ => Err(bad()),
    }
}

/// `text` with the password of every `scheme://user:password@` in it masked.
fn without_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority_end = tail
            .find(['/', '?', '#', '"', '\'', '\n', ' '])
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(userinfo_end), Some(colon)) if colon < userinfo_end => {
                out.push_str(&authority[..=colon]);
                out.push_str("***");
                out.push_str(&authority[userinfo_end..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

/// The OTLP/HTTP traces URL for collector base URL `base` (`/v1/traces` added, as the
/// OpenTelemetry exporter specification says for a base endpoint).
fn traces_url(base: &str) -> Result<String, String> {
    if base.trim() != base {
        return Err(format!("`{base}`: no spaces around it"));
    }
    let url = url::Url::parse(base).map_err(|error| format!("`{base}`: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "`{base}`: an http(s) URL of the collector is expected"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(format!("`{base}`: no query, fragment or credentials in it"));
    }
    // A URL already naming the traces path is taken as it is.
    if url.path().trim_end_matches('/').ends_with("/v1/traces") {
        return Ok(base.trim_end_matches('/').to_owned());
    }
    Ok(format!("{}/v1/traces", base.trim_end_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        let text = format!("{text}\n[danger]\nunauthenticated = true\n");
        let raw: Raw = toml::from_str(&text).map_err(|e| e.to_string())?;
        Config::resolve(raw, Path::new(".")).map_err(|e| e.to_string())
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let error = parse("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
        assert!(error.contains("unknown field `lisen`"), "{error}");
        assert!(error.contains("line 3"), "{error}");
    }

    #[test]
    fn single_upstream_gets_no_prefix_and_loopback_defaults() {
        let config = parse("[[upstream]]\nname = \"a\"\ncommand = \"x\"\n").unwrap();
        assert_eq!(config.upstreams[0].1, None);
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert!(config.allowed_hosts.contains(&"localhost".to_owned()));
    }

    #[test]
    fn prefixes_that_could_route_one_name_two_ways_are_refused() {
        let text = "[[upstream]]\nname = \"a\"\ncommand = \"x\"\n[[upstream]]\nname = \"b\"\ncommand = \"y\"\nprefix = \"a__b\"\n";
        let error = parse(text).map(|_| ()).unwrap_err().to_string();
        assert!(error.contains("upstream[1].prefix"), "{error}");
        let text = "[[upstream]]\nname = \"a\"\ncommand = \"x\"\nprefix = \"t\"\n[[upstream]]\nname = \"b\"\ncommand = \"y\"\nprefix = \"t\"\n";
        assert!(parse(text).is_err(), "the same prefix twice");
        let text = "[[upstream]]\nname = \"a\"\ncommand = \"x\"\nprefix = \"ab\"\n[[upstream]]\nname = \"b\"\ncommand = \"y\"\nprefix = \"a\"\n";
        assert!(parse(text).is_ok(), "`ab__` and `a__` cannot be confused");
    }

    #[test]
    fn resource_namespaces_need_a_scheme_and_one_owner() {
        let two = |a: &str, b: &str| {
            format!(
                "[[upstream]]\nname = \"a\"\ncommand = \"x\"\nresources = [{a:?}]\n\
                 [[upstream]]\nname = \"b\"\ncommand = \"y\"\nresources = [{b:?}]\n"
            )
        };
        let config = parse(&two("hr://", "tickets://")).unwrap();
        assert_eq!(
            config.resource_namespaces,
            [vec!["hr://".to_owned()], vec!["tickets://".to_owned()]]
        );
        let error = parse(&two("hr://", "hr://salaries/")).unwrap_err();
        assert!(
            error.contains("upstream[1].resources") && error.contains("overlaps"),
            "{error}"
        );
        let error = parse(&two("hr", "x://")).unwrap_err();
        assert!(error.contains("upstream[0].resources"), "{error}");
    }

    #[test]
    fn a_stdio_upstreams_relative_paths_are_the_config_files_folders() {
        let stdio = |text: &str| {
            let config = Config::parse(text, Path::new("/etc/portcullis/gateway.toml")).unwrap();
            match config.upstreams[0].0.transport.clone() {
                UpstreamTransport::Stdio { command, cwd, .. } => (command, cwd),
                UpstreamTransport::Http { .. } => unreachable!("a stdio upstream"),
            }
        };
        let danger = "[danger]\nunauthenticated = true\n";
        let (command, cwd) = stdio(&format!(
            "[[upstream]]\nname = \"a\"\ncommand = \"./bin/server\"\n{danger}"
        ));
        assert_eq!(command, "/etc/portcullis/./bin/server");
        assert_eq!(cwd.as_deref(), Some(Path::new("/etc/portcullis")));
        let (command, cwd) = stdio(&format!(
            "[[upstream]]\nname = \"a\"\ncommand = \"node\"\ncwd = \"servers\"\n{danger}"
        ));
        assert_eq!(command, "node", "a bare name is PATH's");
        assert_eq!(cwd.as_deref(), Some(Path::new("/etc/portcullis/servers")));
        let (command, cwd) = stdio(&format!(
            "[[upstream]]\nname = \"a\"\ncommand = \"/usr/bin/x\"\ncwd = \"/srv\"\n{danger}"
        ));
        assert_eq!(
            (command.as_str(), cwd.as_deref()),
            ("/usr/bin/x", Some(Path::new("/srv")))
        );
    }

    #[test]
    fn pins_in_the_config_name_a_kind_a_name_and_a_whole_digest() {
        let digest = "ab".repeat(32);
        let with = |pins: &str| {
            parse(&format!(
                "[pins]\non_new = \"hold\"\n[[upstream]]\nname = \"a\"\ncommand = \"x\"\npins = [{pins}]\n"
            ))
        };
        let config = with(&format!(
            "\"tool:get@sha256:{digest}\", \"template:n://{{id}}@sha256:{digest}\""
        ))
        .unwrap();
        assert!(config.pins.hold_new);
        assert_eq!(config.pins.fixed.len(), 2);
        assert_eq!(config.pins.fixed[1].name, "n://{id}");
        for bad in [
            format!("\"get@sha256:{digest}\""),
            format!("\"tool:get@sha256:{}\"", &digest[..10]),
            format!("\"resource:get@sha256:{digest}\""),
            format!("\"tool:get@sha256:{}\"", "AB".repeat(32)),
            format!("\"tool:get@sha256:{digest}\", \"tool:get@sha256:{digest}\""),
        ] {
            let error = with(&bad).unwrap_err();
            assert!(error.contains("upstream[0].pins["), "{bad}: {error}");
        }
        let error =
            parse("[pins]\non_new = \"trust\"\n[[upstream]]\nname = \"a\"\ncommand = \"x\"\n")
                .unwrap_err();
        assert!(error.contains("pins.on_new"), "{error}");
    }

    #[test]
    fn several_upstreams_are_prefixed_by_name() {
        let config = parse(
            "[[upstream]]\nname = \"a\"\ncommand = \"x\"\n[[upstream]]\nname = \"b\"\nurl = \"http://127.0.0.1:1/mcp\"\nprefix = \"bee\"\n",
        )
        .unwrap();
        assert_eq!(config.upstreams[0].1.as_deref(), Some("a"));
        assert_eq!(config.upstreams[1].1.as_deref(), Some("bee"));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("[[upstream]]\nname = \"a\"\n", "upstream[0]"),
            (
                "[[upstream]]\nname = \"a\"\nurl = \"ftp://x\"\n",
                "upstream[0].url",
            ),
            (
                "[server]\nheader_timeout = \"ten\"\n[[upstream]]\nname = \"a\"\ncommand = \"x\"\n",
                "server.header_timeout",
            ),
            (
                "[server]\nheader_timeout = \"61m\"\n[[upstream]]\nname = \"a\"\ncommand = \"x\"\n",
                "server.header_timeout",
            ),
            (
                "[limits]\nconnections_per_address = 2000000\n[[upstream]]\nname = \"a\"\ncommand = \"x\"\n",
                "limits.connections_per_address",
            ),
            (
                "[[upstream]]\nname = \"a b\"\ncommand = \"x\"\n",
                "upstream[0].name",
            ),
            ("", "upstream"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(&format!("`{key}`")), "{key}: {error}");
        }
    }

    #[test]
    fn claim_paths_override_the_preset_and_must_be_pointers() {
        let base = "[auth]\npublic_url = \"http://127.0.0.1/mcp\"\n[[auth.issuer]]\nissuer = \"http://127.0.0.1:1\"\nclaims = \"keycloak\"\n[policy]\ncedar = \"\"\n";
        let ok = format!(
            "{base}[auth.issuer.claim_paths]\ntenant = [\"/org/id\"]\n[[upstream]]\nname = \"a\"\ncommand = \"x\"\n"
        );
        let config = parse(&ok).unwrap();
        let mapping = &config.auth.unwrap().issuers[0].mapping;
        assert_eq!(mapping.tenant, ["/org/id"]);
        assert_eq!(
            mapping.roles[0], "/realm_access/roles",
            "the preset keeps what is not overridden"
        );
        let bad = format!(
            "{base}[auth.issuer.claim_paths]\nsubject = [\"sub\"]\n[[upstream]]\nname = \"a\"\ncommand = \"x\"\n"
        );
        assert!(parse(&bad).unwrap_err().contains("claim_paths.subject"));
    }

    #[test]
    fn a_parse_error_does_not_repeat_a_database_password() {
        let text = "[cluster]\npostgres = \"postgres://app:hunter2@db.internal/x\" junk\n";
        let quoted = toml::from_str::<Raw>(text).unwrap_err().to_string();
        assert!(
            quoted.contains("hunter2"),
            "the parser quotes the line: {quoted}"
        );
        let error = Config::parse(text, Path::new("/etc/portcullis.toml"))
            .unwrap_err()
            .to_string();
        assert!(!error.contains("hunter2"), "{error}");
        assert!(error.contains("app:***@db.internal"), "{error}");
        assert_eq!(
            without_passwords("a postgres://app:pw@db/x and https://h/p?q and u://x@y"),
            "a postgres://app:***@db/x and https://h/p?q and u://x@y"
        );
    }

    #[test]
    fn durations_accept_units() {
        assert_eq!(
            duration("k", Some("250ms".into()), 0).unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            duration("k", Some("2m".into()), 0).unwrap(),
            Duration::from_secs(120)
        );
        assert!(duration("k", Some("5h".into()), 0).is_err());
    }

    #[test]
    fn the_traces_url_is_the_collectors_base_and_v1_traces() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://otel.example/base/").unwrap(),
            "https://otel.example/base/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/v1/traces").unwrap(),
            "http://c:4318/v1/traces"
        );
        assert!(traces_url(" http://c:4318").is_err());
        for bad in [
            "grpc://x:4317",
            "not a url",
            "https://u:p@x.example",
            "http://x.example/?a=b",
        ] {
            assert!(traces_url(bad).is_err(), "{bad}");
        }
    }
}
