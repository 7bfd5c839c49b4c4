//! A dev-grade OAuth 2.1 authorization server, for `portcullis demo` and tests. Loopback only.
//!
//! What it is: enough of a real authorization server for the official MCP clients to complete
//! their whole flow by themselves. RFC 8414 metadata, authorization code with PKCE (S256 only)
//! behind a login page that lists the sample identities (`login_hint` skips the page, so
//! tests run headless), refresh tokens (rotated), client credentials for service accounts,
//! dynamic client registration (RFC 7591), client ID metadata documents, resource indicators
//! (RFC 8707: `aud` is the requested resource; unknown resources are refused) and the RFC 9207
//! `iss` response parameter. Tokens are ES256 JWTs (RFC 9068) signed by a key generated on
//! first start and kept in the data dir, so `portcullis token` can mint tokens the running
//! demo accepts.
//!
//! What it is not: a production identity provider. There are no passwords (anyone who can reach
//! the loopback port can pick any identity), registrations and grants live in memory, and
//! nothing is rate-limited. It refuses to serve a non-loopback issuer.
//!
//! It is an HTTP server of its own, so unlike the other library crates it knows axum; the
//! gateway only mounts its router beside the MCP endpoint.

mod authorize;
mod clients;
mod error;
mod identities;
mod keys;
mod params;
mod token;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::IntoResponse,
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;

pub use error::DevAuthError;
pub use identities::{Directory, Identity};

use crate::{clients::Clients, keys::SigningKey};

/// Access tokens live 15 minutes: long enough for a demo, short enough that refresh is used.
const ACCESS_TOKEN_SECONDS: u64 = 15 * 60;
const REFRESH_TOKEN_SECONDS: u64 = 8 * 60 * 60;
const CODE_SECONDS: u64 = 60;
const KEY_FILE: &str = "signing-key.pem";
const IDENTITIES_FILE: &str = "identities.toml";
const STATE_FILE: &str = "authorization-server.json";

/// Where the server lives and what it issues tokens for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevAuthConfig {
    /// The issuer: a loopback http(s) URL; its endpoints are paths under it.
    pub issuer: String,
    /// The resources (RFC 8707) tokens may be requested for; anything else is `invalid_target`.
    pub resources: Vec<String>,
    /// Scopes granted when a client asks for none (still only those the identity may hold).
    pub default_scopes: Vec<String>,
}

/// The running server's state; clone it freely.
#[derive(Clone)]
pub struct DevAuth(Arc<Inner>);

struct Inner {
    config: DevAuthConfig,
    key: SigningKey,
    directory: Directory,
    clients: Clients,
    codes: Mutex<HashMap<String, Code>>,
    refresh: Mutex<HashMap<String, Refresh>>,
}

/// What an authorization code stands for, until it is redeemed (once) or expires.
struct Code {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    grant: Grant,
    expires: u64,
}

/// What a refresh token stands for, kept under the token's hash.
struct Refresh {
    client_id: String,
    grant: Grant,
    expires: u64,
}

/// A subject's consent to a client: the scopes granted and the one resource they are for.
#[derive(Clone)]
struct Grant {
    subject: String,
    scopes: Vec<String>,
    resource: String,
}

impl DevAuth {
    /// Open the server on `data_dir`: load or create its key and identities, and record
    /// `config` there for `portcullis token`.
    pub fn open(data_dir: &Path, config: DevAuthConfig) -> Result<Self, DevAuthError> {
        let issuer = Url::parse(&config.issuer)
            .map_err(|_| DevAuthError::NotLoopback(config.issuer.clone()))?;
        let loopback = match issuer.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name == "localhost",
            None => false,
        };
        if !loopback || !matches!(issuer.scheme(), "http" | "https") {
            return Err(DevAuthError::NotLoopback(config.issuer));
        }
        let state = data_dir.join(STATE_FILE);
        let text = serde_json::to_string_pretty(&config).unwrap_or_default();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options
            .open(&state)
            .and_then(|mut file| std::io::Write::write_all(&mut file, text.as_bytes()))
            .map_err(|error| DevAuthError::io(&state, &error))?;
        Self::load(data_dir, config)
    }

    /// Open the server recorded in `data_dir` by the last [`DevAuth::open`], to mint tokens
    /// offline.
    pub fn open_recorded(data_dir: &Path) -> Result<Self, DevAuthError> {
        let state = data_dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&state).map_err(|error| DevAuthError::File {
            path: state.clone(),
            reason: format!("{error} (start `portcullis demo` with this data dir first)"),
        })?;
        let config = serde_json::from_str(&text).map_err(|error| DevAuthError::File {
            path: state,
            reason: error.to_string(),
        })?;
        Self::load(data_dir, config)
    }

    fn load(data_dir: &Path, config: DevAuthConfig) -> Result<Self, DevAuthError> {
        let key = SigningKey::load_or_create(&data_dir.join(KEY_FILE)).map_err(|error| {
            DevAuthError::File {
                path: error.path,
                reason: error.reason,
            }
        })?;
        let directory = Directory::load_or_create(&data_dir.join(IDENTITIES_FILE))?;
        Ok(Self(Arc::new(Inner {
            config,
            key,
            directory,
            clients: Clients::new(),
            codes: Mutex::new(HashMap::new()),
            refresh: Mutex::new(HashMap::new()),
        })))
    }

    /// The identities file this server reads.
    pub fn identities_path(data_dir: &Path) -> PathBuf {
        data_dir.join(IDENTITIES_FILE)
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.0.config.issuer
    }

    /// The people who can sign in.
    pub fn directory(&self) -> &Directory {
        &self.0.directory
    }

    /// The endpoints, as routes relative to the issuer (which has no path).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/.well-known/oauth-authorization-server", get(metadata))
            .route("/jwks", get(jwks))
            .route("/register", post(register))
            .route("/authorize", get(authorize::page).post(authorize::sign_in))
            .route("/token", post(token::exchange))
            .with_state(self.clone())
    }

    /// An access token for `subject`, for the first recorded resource, as `portcullis token`
    /// prints it: with `scopes`, or with every scope the identity may hold.
    pub fn mint(&self, subject: &str, scopes: Option<&[String]>) -> Result<String, DevAuthError> {
        let identity = self.0.directory.identity(subject).ok_or_else(|| {
            let known: Vec<_> = self
                .0
                .directory
                .identities
                .iter()
                .map(|i| i.subject.as_str())
                .collect();
            DevAuthError::Mint(format!(
                "no identity `{subject}`; known: {}",
                known.join(", ")
            ))
        })?;
        let Some(resource) = self.0.config.resources.first() else {
            return Err(DevAuthError::Mint("no resource is recorded".to_owned()));
        };
        let scopes = match scopes {
            None => identity.scopes.clone(),
            Some(asked) => {
                if let Some(missing) = asked.iter().find(|s| !identity.scopes.contains(s)) {
                    return Err(DevAuthError::Mint(format!(
                        "`{subject}` may not hold `{missing}`; see the identities file"
                    )));
                }
                asked.to_vec()
            }
        };
        let grant = Grant {
            subject: subject.to_owned(),
            scopes,
            resource: resource.clone(),
        };
        self.access_token(&grant, "portcullis-cli")
    }

    /// Sign an access token for `grant`. Claims follow RFC 9068, plus `tenant` and `roles`
    /// where the subject has them.
    fn access_token(&self, grant: &Grant, client_id: &str) -> Result<String, DevAuthError> {
        let now = now();
        let (tenant, roles) = match self.0.directory.identity(&grant.subject) {
            Some(identity) => (identity.tenant.clone(), identity.roles.clone()),
            None => match self.0.directory.service(&grant.subject) {
                Some(service) => (service.tenant.clone(), service.roles.clone()),
                None => {
                    return Err(DevAuthError::Mint(
                        "the subject no longer exists".to_owned(),
                    ));
                }
            },
        };
        let mut claims = json!({
            "iss": self.0.config.issuer,
            "sub": grant.subject,
            "aud": grant.resource,
            "client_id": client_id,
            "scope": grant.scopes.join(" "),
            "iat": now,
            "nbf": now,
            "exp": now + ACCESS_TOKEN_SECONDS,
            "jti": keys::random_token(),
            "roles": roles,
        });
        if let Some(tenant) = tenant {
            claims["tenant"] = json!(tenant);
        }
        self.0
            .key
            .sign("at+jwt", &claims)
            .map_err(DevAuthError::Sign)
    }

    /// The scopes to grant: those asked for (or the defaults) that the subject may hold.
    fn grantable(&self, asked: Option<&str>, allowed: &[String]) -> Vec<String> {
        let asked: Vec<&str> = match asked {
            Some(text) if !text.trim().is_empty() => text.split_whitespace().collect(),
            _ => self
                .0
                .config
                .default_scopes
                .iter()
                .map(String::as_str)
                .collect(),
        };
        let mut granted: Vec<String> = Vec::new();
        for scope in asked {
            if allowed.iter().any(|a| a == scope) && !granted.iter().any(|g| g == scope) {
                granted.push(scope.to_owned());
            }
        }
        granted
    }

    /// RFC 8707: exactly one resource, and one this server issues tokens for.
    fn resource(&self, asked: &[&str]) -> Result<String, error::OAuthError> {
        match asked {
            [] => Err(error::OAuthError::invalid_target(
                "the `resource` parameter is required (RFC 8707)",
            )),
            [one] if self.0.config.resources.iter().any(|r| r == one) => Ok((*one).to_owned()),
            [_] => Err(error::OAuthError::invalid_target(
                "tokens for that resource are not issued here",
            )),
            _ => Err(error::OAuthError::invalid_target(
                "one `resource` per request",
            )),
        }
    }
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// RFC 8414 §2.
async fn metadata(State(auth): State<DevAuth>) -> impl IntoResponse {
    let issuer = &auth.0.config.issuer;
    let mut scopes: Vec<&str> = Vec::new();
    let all = auth.0.directory.identities.iter().flat_map(|i| &i.scopes);
    for scope in all.chain(auth.0.directory.services.iter().flat_map(|s| &s.scopes)) {
        if !scopes.contains(&scope.as_str()) {
            scopes.push(scope);
        }
    }
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "registration_endpoint": format!("{issuer}/register"),
        "jwks_uri": format!("{issuer}/jwks"),
        "scopes_supported": scopes,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": true,
    }))
}

async fn jwks(State(auth): State<DevAuth>) -> impl IntoResponse {
    Json(auth.0.key.jwks())
}

/// RFC 7591 §3.
async fn register(
    State(auth): State<DevAuth>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return error::OAuthError::metadata(format!(
                "the body is not client metadata: {error}"
            ))
            .into_response();
        }
    };
    match auth.0.clients.register(request) {
        Ok(body) => {
            let mut response = (StatusCode::CREATED, Json::<Value>(body)).into_response();
            error::no_store(&mut response);
            response
        }
        Err(error) => error.into_response(),
    }
}
