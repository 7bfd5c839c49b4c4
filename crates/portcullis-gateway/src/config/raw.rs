use std::{collections::BTreeMap, path::PathBuf};

use serde::Deserialize;

/// The configuration file as written. Every table rejects keys it does not know.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    /// The downstream listener and HTTP hygiene.
    #[serde(default)]
    pub server: RawServer,
    /// How aggregated capability names are formed.
    #[serde(default)]
    pub naming: RawNaming,
    /// The MCP servers behind the gateway, in routing order.
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<RawUpstream>,
    /// Who may call: the OAuth resource server settings.
    pub auth: Option<RawAuth>,
    /// What each capability requires.
    #[serde(default, rename = "capability")]
    pub capabilities: Vec<RawCapability>,
    /// The Cedar policies that decide who may see and do what.
    pub policy: Option<RawPolicy>,
    /// Signed identity assertions for upstreams.
    pub identity: Option<RawIdentity>,
    /// The audit trail.
    pub audit: Option<RawAudit>,
    /// The admin listener (`/metrics`).
    pub admin: Option<RawAdmin>,
    /// How approvals are asked for.
    #[serde(default)]
    pub consent: RawConsent,
    /// Live entitlements beside the tokens' claims.
    pub entitlements: Option<RawEntitlements>,
    /// Request rates and connection counts.
    #[serde(default)]
    pub limits: super::limits::RawLimits,
    /// Pinned upstream definitions.
    #[serde(default)]
    pub pins: super::pins::RawPins,
    /// Replicas behind one load balancer.
    #[serde(default)]
    pub cluster: super::cluster::RawCluster,
    /// Where people's upstream sign-ins (`credentials = "user-oauth"`) are kept.
    pub connections: Option<super::credentials::RawConnections>,
    /// How the log is written (read by the binary before anything else, see `log_format`).
    #[serde(default)]
    pub log: RawLog,
    /// Traces to an OpenTelemetry collector (read by the binary before anything else, see
    /// `telemetry`).
    pub telemetry: Option<RawTelemetry>,
    /// Settings that weaken a check. Each one logs a warning at start-up.
    #[serde(default)]
    pub danger: RawDanger,
}

/// `[auth]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// The URL clients use for the MCP endpoint; the resource identifier tokens must name.
    pub public_url: String,
    /// A human-readable name for the metadata document.
    pub resource_name: Option<String>,
    /// Scopes advertised and asked for in challenges to tokenless callers: the minimal set.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`, default `30s`.
    pub leeway: Option<String>,
    /// The issuers whose tokens are accepted.
    #[serde(default, rename = "issuer")]
    pub issuers: Vec<RawIssuer>,
    /// Scopes that imply others: `"policies:write" = ["policies:read"]`.
    #[serde(default)]
    pub scope_hierarchy: BTreeMap<String, Vec<String>>,
}

/// `[admin]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Socket address for `/metrics`; keep it off the network callers reach.
    pub listen: String,
}

/// `[audit]`: one or more sinks, all written for every record.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// The SQLite trail, relative to the configuration file; created when absent.
    pub sqlite: Option<PathBuf>,
    /// A PostgreSQL trail (`postgres://user@host/db`), which several gateways may share.
    pub postgres: Option<String>,
    /// A JSON lines trail, relative to the configuration file, rotated by size.
    pub jsonl: Option<PathBuf>,
    /// Size that rotates the JSON lines file, default 64 MiB.
    pub jsonl_max_bytes: Option<u64>,
    /// Also write JSON lines to standard output (for log shippers), default false.
    #[serde(default)]
    pub stdout: bool,
    /// Keep each call's arguments in its record (redacted), not only their digest; default
    /// false.
    #[serde(default)]
    pub raw_arguments: bool,
    /// Argument fields (at any depth) whose values are replaced by `"[redacted]"`, beside the
    /// ones always redacted (names containing password, secret, token, key or credential).
    #[serde(default)]
    pub redact: Vec<String>,
}

/// `[entitlements]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEntitlements {
    /// The file (the demo's `identities.toml` format), relative to the configuration file.
    pub file: PathBuf,
    /// How often it is checked for changes, default `1s`: the bound on how long a removed role
    /// or a disabled subject still works.
    pub refresh: Option<String>,
}

/// `[consent]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsent {
    /// How long an approval request stays answerable, default `10m`, at most `1h`.
    pub ttl: Option<String>,
    /// How long a session client has to answer one on the call's stream, default `5m`.
    pub wait: Option<String>,
    /// The lowest risk tier approved only on the gateway's approval page, after signing in
    /// (never by answering a form in the client), default `admin`.
    pub out_of_band: Option<String>,
    /// The OAuth client the approval page signs people in as; default: the page's own client
    /// ID metadata document (`<origin>/approvals/client.json`).
    pub client_id: Option<String>,
    /// The issuer the page signs people in with; default: the first `[[auth.issuer]]`.
    pub issuer: Option<String>,
    /// A file of keys sealing 2026-07-28 approvals, one a line (at least 32 characters): the
    /// first seals, every one opens (rotation: put the new one first, remove the old one after
    /// `ttl`). Replicas share it; without it each process makes its own, and forgets it.
    pub keys: Option<PathBuf>,
}

/// `[identity]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    /// The ES256 signing key (PKCS#8 PEM), created readable by its owner only when absent;
    /// relative to the configuration file.
    pub key_file: PathBuf,
    /// Where to write the public key set for upstreams to verify with (rewritten at start).
    pub jwks_file: Option<PathBuf>,
    /// How long an assertion is valid, default `60s`.
    pub lifetime: Option<String>,
}

/// `[policy]`: exactly one of `file` or `cedar`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// A Cedar policy file, relative to the configuration file.
    pub file: Option<PathBuf>,
    /// Cedar policies written inline.
    pub cedar: Option<String>,
    /// A candidate policy file evaluated beside the policies in force, never enforced: every
    /// call where it would decide differently is audited (`shadow_disagrees`).
    pub shadow: Option<PathBuf>,
}

/// `[[capability]]`: exactly one of `tool`, `prompt` or `resource` names it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCapability {
    /// A tool's name, as clients see it.
    pub tool: Option<String>,
    /// A prompt's name, as clients see it.
    pub prompt: Option<String>,
    /// A resource's URI, or a URI template such as `policy://{tenant}/{id}`.
    pub resource: Option<String>,
    /// A method other than calls, prompts and resources: a utility method
    /// (`completion/complete`, `logging/setLevel`, `tasks/get`, ...) or an extension method.
    pub method: Option<String>,
    /// Its family (an action group in policies), default `default`.
    pub family: Option<String>,
    /// Every scope a call needs.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `read`, `write`, `destructive`, `admin` or `spend`; default `write` for tools, `read`
    /// otherwise.
    pub risk: Option<String>,
    /// The argument (or URI template segment) naming the target object.
    pub object: Option<String>,
    /// The argument (or URI template segment) naming the target's tenant.
    pub tenant: Option<String>,
    /// Arguments policies may read: name = `string`, `long` or `bool`.
    #[serde(default)]
    pub arguments: BTreeMap<String, String>,
    /// How the target object's attributes are learned from the backend before deciding.
    pub resolve: Option<RawResolve>,
    /// The approval request a person reads, with `{argument}` placeholders.
    pub consent: Option<String>,
}

/// `resolve = { tool = "...", arguments = { ... }, not_found = "..." }`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResolve {
    /// The backend tool describing objects.
    pub tool: String,
    /// Its arguments; the string `{object}` stands for the call's object id.
    #[serde(default)]
    pub arguments: BTreeMap<String, toml::Value>,
    /// The tool error text answered for an object that does not exist (or may not be seen).
    pub not_found: String,
}

/// `[[auth.issuer]]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    /// The exact `iss` of its tokens, also its identifier in the metadata document.
    pub issuer: String,
    /// Where its signing keys are published; default: found through the issuer's metadata
    /// (RFC 8414, then OpenID Connect discovery).
    pub jwks_uri: Option<String>,
    /// Claim layout: `standard`, `keycloak` or `entra`.
    pub claims: Option<String>,
    /// JSON pointers that override the layout's, attribute by attribute.
    pub claim_paths: Option<RawClaimPaths>,
    /// RFC 7662 endpoint for opaque tokens of this issuer.
    pub introspection_endpoint: Option<String>,
    /// The gateway's client id at the introspection endpoint.
    pub client_id: Option<String>,
    /// A file holding the gateway's client secret there (kept out of the config itself).
    pub client_secret_file: Option<std::path::PathBuf>,
    /// `basic` (default) or `post`.
    pub client_auth: Option<String>,
    /// Longest time an introspection answer is reused, default `5s`: the bound on a revoked
    /// token or a changed role taking effect.
    pub introspection_cache: Option<String>,
    /// The JWT header `typ` values its access tokens carry; default `["at+jwt"]` (RFC 9068),
    /// `["at+jwt", "JWT"]` for the keycloak and entra layouts.
    pub token_types: Option<Vec<String>>,
}

/// `[auth.issuer.claim_paths]`: JSON pointers into the token's claims, tried in order.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaimPaths {
    /// Where the subject is, e.g. `["/sub"]`.
    pub subject: Option<Vec<String>>,
    /// Where the tenant is.
    pub tenant: Option<Vec<String>>,
    /// Where roles are (all pointers contribute).
    pub roles: Option<Vec<String>>,
    /// Where scopes are (all pointers contribute).
    pub scopes: Option<Vec<String>>,
    /// Where the client id is.
    pub client_id: Option<Vec<String>>,
}

/// `[danger]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDanger {
    /// Serve MCP without authentication (no `[auth]`): anyone who reaches the port may call.
    #[serde(default)]
    pub unauthenticated: bool,
    /// Accept issuers and JWKS over plain http (not only https) for non-loopback hosts.
    #[serde(default)]
    pub insecure_issuers: bool,
    /// Allow `sslmode=disable` in a PostgreSQL URL whose host is off loopback.
    #[serde(default)]
    pub postgres_without_tls: bool,
}

/// `[server]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Socket address to bind, default `127.0.0.1:8080`.
    pub listen: Option<String>,
    /// Path of the MCP endpoint, default `/mcp`.
    pub path: Option<String>,
    /// Host header values accepted, default loopback names.
    pub allowed_hosts: Option<Vec<String>>,
    /// Serve TLS with this certificate chain (PEM), reloaded when it changes.
    pub tls_cert: Option<PathBuf>,
    /// The key of `tls_cert` (PEM).
    pub tls_key: Option<PathBuf>,
    /// Load balancers (addresses or CIDR ranges) that open every connection with a PROXY
    /// protocol header (v1 or v2) naming the client.
    pub proxy_protocol: Option<Vec<String>>,
    /// Origin header values accepted, default loopback origins on any port.
    pub allowed_origins: Option<Vec<String>>,
    /// Largest request body, default 4 MiB.
    pub max_body_bytes: Option<usize>,
    /// Time allowed to send request headers, default `10s`.
    pub header_timeout: Option<String>,
    /// Time an upstream has to answer one request, default `300s`.
    pub request_timeout: Option<String>,
    /// Time in-flight calls get to finish on SIGTERM, default `30s`.
    pub shutdown_grace: Option<String>,
    /// On SIGTERM, how long the gateway keeps serving while `/readyz` says it is draining, so
    /// a load balancer stops sending first; default `5s` with `[cluster]`, else `0s`.
    pub drain_delay: Option<String>,
    /// Keep-alive comment interval on SSE streams, default `15s`.
    pub sse_keep_alive: Option<String>,
    /// Answer POSTs with plain JSON instead of SSE where possible, default false.
    pub json_response: Option<bool>,
    /// A session idle this long is closed with its upstream connections, default `5m`.
    pub session_idle_timeout: Option<String>,
    /// Most upstream connections held for sessions at once (each may be a child process),
    /// default 256; past it, sessions share the gateway's connection.
    pub max_session_connections: Option<usize>,
}

/// `[naming]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNaming {
    /// `auto` (prefix only with several upstreams), `always` or `never`.
    pub prefix: Option<String>,
    /// Between prefix and name, default `__`.
    pub separator: Option<String>,
}

/// `[log]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// `text` (default) or `json`: one JSON object per line, with each event's span fields
    /// (the correlation id among them).
    pub format: Option<String>,
}

/// `[telemetry]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// The collector's OTLP/HTTP base URL (`http://127.0.0.1:4318`); spans go to `/v1/traces`.
    pub otlp_endpoint: String,
    /// The `service.name` of the spans (default `portcullis`).
    pub service_name: Option<String>,
}

/// `[[upstream]]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// Unique name.
    pub name: String,
    /// Program to run for a stdio upstream.
    pub command: Option<String>,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment for the child.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory of the child.
    pub cwd: Option<PathBuf>,
    /// Endpoint of a streamable HTTP upstream.
    pub url: Option<String>,
    /// A file holding the gateway's own credential at an HTTP upstream, sent as a bearer token
    /// on every request to it (the caller's token never is).
    pub credential_file: Option<PathBuf>,
    /// `auto`, `2025-11-25` or `2026-07-28`.
    pub era: Option<String>,
    /// Prefix for this upstream's names, default its `name`.
    pub prefix: Option<String>,
    /// The resource URI prefixes this upstream owns (`["hr://"]`): reads of URIs under them go
    /// to it alone, and a URI or template it lists outside them is refused.
    pub resources: Option<Vec<String>>,
    /// Definitions pinned ahead of time (`"tool:get@sha256:<hex>"`): served only as pinned.
    pub pins: Option<Vec<String>>,
    /// Which token callers' requests carry there: `gateway` (default: `credential_file`, if
    /// any), `token-exchange` (one issued for the upstream on the caller's behalf) or
    /// `user-oauth` (each person's own, from signing in to the upstream's server).
    pub credentials: Option<String>,
    /// `[upstream.token_exchange]`: where and how those tokens are asked for.
    pub token_exchange: Option<super::credentials::RawTokenExchange>,
    /// `[upstream.user_oauth]`: how people sign in to the upstream's authorization server.
    pub user_oauth: Option<super::credentials::RawUserOauth>,
}
