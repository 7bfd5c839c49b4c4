//! `[[upstream]] credentials`: which token a caller's requests carry to an upstream that wants
//! one of its own. Never the caller's: either the gateway's own (`credential_file`), or one an
//! authorization server issues for that upstream on the caller's behalf (RFC 8693).

use std::path::{Path, PathBuf};

use portcullis_authn::{ClientAuth, TokenTarget};
use serde::Deserialize;
use url::Url;

use super::ConfigError;

/// `[upstream.token_exchange]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenExchange {
    /// The authorization server; its token endpoint is read from its metadata (RFC 8414,
    /// then OpenID discovery) unless `token_endpoint` is given.
    pub issuer: Option<String>,
    /// The token endpoint.
    pub token_endpoint: Option<String>,
    /// The gateway's client id there.
    pub client_id: Option<String>,
    /// A file holding the gateway's client secret there.
    pub client_secret_file: Option<PathBuf>,
    /// `basic` (default) or `post`.
    pub client_auth: Option<String>,
    /// The `audience` to ask tokens for.
    pub audience: Option<String>,
    /// The `resource` (RFC 8707) to ask tokens for.
    pub resource: Option<String>,
    /// The scopes to ask for.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The issuers whose callers' tokens are sent there as `subject_token`; default the
    /// `issuer` above (required with `token_endpoint`).
    pub subject_issuers: Option<Vec<String>>,
}

/// `[upstream.user_oauth]` as written: everything is optional; by default the authorization
/// server is found the MCP way (the upstream's 401, RFC 9728, RFC 8414) and the gateway
/// registers itself there.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUserOauth {
    /// The upstream's authorization server, if not discovered from the upstream.
    pub issuer: Option<String>,
    /// The gateway's client id there, registered by hand (else: its client ID metadata
    /// document where the server takes one, else dynamic registration).
    pub client_id: Option<String>,
    /// The secret of that client, if it is confidential.
    pub client_secret_file: Option<PathBuf>,
    /// `basic` (default) or `post`, with `client_secret_file`.
    pub client_auth: Option<String>,
    /// The scopes to ask for (default: those the upstream's metadata lists, if any).
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// `[connections]` as written: where people's upstream sign-ins are kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnections {
    /// A file of 32 random bytes in base64, the key tokens are sealed with.
    pub key_file: Option<PathBuf>,
    /// The SQLite file they are kept in (default `connections.db` beside the configuration);
    /// with `[cluster] postgres`, they are kept there instead.
    pub database: Option<PathBuf>,
}

/// Where people's upstream sign-ins are kept, and sealed with what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionsConfig {
    /// The sealing key's file (read by the gateway and `check` only).
    pub key_file: PathBuf,
    /// The SQLite file, when there is no `[cluster] postgres`.
    pub database: PathBuf,
    /// `[cluster] postgres`, shared by replicas.
    pub postgres: Option<String>,
}

/// `[connections]`, required when an upstream has `credentials = "user-oauth"`.
pub(super) fn resolve_connections(
    raw: Option<RawConnections>,
    used: bool,
    base: &Path,
    postgres: Option<&str>,
) -> Result<Option<ConnectionsConfig>, ConfigError> {
    match (raw, used) {
        (None, false) => Ok(None),
        (Some(_), false) => Err(ConfigError::invalid(
            "connections",
            "is used by upstreams with `credentials = \"user-oauth\"`, and none has it",
        )),
        (raw, true) => {
            let raw = raw.unwrap_or_default();
            let Some(key_file) = raw.key_file else {
                return Err(ConfigError::invalid(
                    "connections.key_file",
                    "people's upstream tokens are kept sealed: name a file of 32 random bytes in base64 (`head -c 32 /dev/urandom | base64 > connections.key`)",
                ));
            };
            Ok(Some(ConnectionsConfig {
                key_file: base.join(key_file),
                database: base.join(raw.database.unwrap_or_else(|| "connections.db".into())),
                postgres: postgres.map(str::to_owned),
            }))
        }
    }
}

/// Which token requests to an upstream carry.
#[derive(Debug, Clone, Default)]
pub enum UpstreamCredentials {
    /// The gateway's own credential (`credential_file`), or none.
    #[default]
    Gateway,
    /// A token exchanged for each caller; the gateway's own requests (its handshake, learning
    /// the upstream's lists) carry one it asks for itself with the same client.
    TokenExchange(Box<TokenExchange>),
    /// Each person's own token there, from signing in to the upstream's authorization server
    /// through the gateway's page; the gateway's own requests carry `credential_file`, if any.
    UserOauth(Box<UserOauth>),
}

/// How the gateway signs people in to one upstream's authorization server.
#[derive(Debug, Clone)]
pub struct UserOauth {
    /// The upstream's URL: the resource tokens are asked for (RFC 8707), and where its
    /// authorization server is discovered.
    pub resource: Url,
    /// The authorization server, if configured rather than discovered.
    pub issuer: Option<String>,
    /// The gateway's client there, if registered by hand.
    pub client: Option<ClientAuth>,
    /// The scopes to ask for; empty: those the upstream's metadata lists.
    pub scopes: Vec<String>,
    /// `[danger] insecure_issuers`: metadata and endpoints may be plain http.
    pub insecure: bool,
}

impl UpstreamCredentials {
    /// The name records and policies know it by.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::TokenExchange(_) => "token-exchange",
            Self::UserOauth(_) => "user-oauth",
        }
    }
}

/// Where and how tokens for one upstream are asked for.
#[derive(Debug, Clone)]
pub struct TokenExchange {
    /// The token endpoint, or the issuer whose metadata names it.
    pub endpoint: TokenEndpoint,
    /// The gateway's client there.
    pub client: ClientAuth,
    /// What tokens are asked for.
    pub target: TokenTarget,
    /// Whose callers' tokens may be sent there: a caller of another issuer is refused.
    pub subject_issuers: Vec<String>,
    /// `[danger] insecure_issuers`: the metadata may be read over plain http.
    pub insecure: bool,
}

/// How the token endpoint is known.
#[derive(Debug, Clone)]
pub enum TokenEndpoint {
    /// Given.
    Url(Url),
    /// Read from this issuer's metadata when first needed.
    Issuer(String),
}

/// `credentials` and `[upstream.token_exchange]` of upstream `key`.
pub(super) fn resolve_credentials(
    key: &str,
    (credentials, exchange, user): (
        Option<String>,
        Option<RawTokenExchange>,
        Option<RawUserOauth>,
    ),
    url: Option<&str>,
    base: &Path,
    insecure: bool,
) -> Result<UpstreamCredentials, ConfigError> {
    let http_upstream = url.is_some();
    let kind = credentials.as_deref().unwrap_or("gateway");
    if exchange.is_some() && kind != "token-exchange" {
        return Err(ConfigError::invalid(
            format!("{key}.token_exchange"),
            "is used with `credentials = \"token-exchange\"`",
        ));
    }
    if user.is_some() && kind != "user-oauth" {
        return Err(ConfigError::invalid(
            format!("{key}.user_oauth"),
            "is used with `credentials = \"user-oauth\"`",
        ));
    }
    match kind {
        "gateway" => Ok(UpstreamCredentials::Gateway),
        "user-oauth" => {
            let Some(url) = url else {
                return Err(ConfigError::invalid(
                    format!("{key}.credentials"),
                    "tokens travel in HTTP headers: `user-oauth` needs an HTTP upstream (`url`)",
                ));
            };
            resolve_user(
                &format!("{key}.user_oauth"),
                user.unwrap_or_default(),
                url,
                base,
                insecure,
            )
            .map(|user| UpstreamCredentials::UserOauth(Box::new(user)))
        }
        "token-exchange" => {
            if !http_upstream {
                return Err(ConfigError::invalid(
                    format!("{key}.credentials"),
                    "tokens travel in HTTP headers: `token-exchange` needs an HTTP upstream (`url`)",
                ));
            }
            let Some(exchange) = exchange else {
                return Err(ConfigError::invalid(
                    key,
                    "`credentials = \"token-exchange\"` needs an `[upstream.token_exchange]` table",
                ));
            };
            resolve_exchange(&format!("{key}.token_exchange"), exchange, base, insecure)
                .map(|exchange| UpstreamCredentials::TokenExchange(Box::new(exchange)))
        }
        other => Err(ConfigError::invalid(
            format!("{key}.credentials"),
            format!("`{other}`: expected `gateway`, `token-exchange` or `user-oauth`"),
        )),
    }
}

fn resolve_user(
    key: &str,
    raw: RawUserOauth,
    url: &str,
    base: &Path,
    insecure: bool,
) -> Result<UserOauth, ConfigError> {
    let RawUserOauth {
        issuer,
        client_id,
        client_secret_file,
        client_auth,
        scopes,
    } = raw;
    let resource = Url::parse(url)
        .map_err(|error| ConfigError::invalid(format!("{key}.url"), format!("`{url}`: {error}")))?;
    // SECURITY: a person's tokens for the upstream travel there; plain http only on loopback.
    if !portcullis_authn::trusted_transport(&resource, insecure) {
        return Err(ConfigError::invalid(
            key,
            "people's tokens go to this upstream: its `url` must be https (plain http only on loopback, or with `[danger] insecure_issuers`)",
        ));
    }
    if let Some(issuer) = &issuer {
        let parsed = Url::parse(issuer).map_err(|error| {
            ConfigError::invalid(format!("{key}.issuer"), format!("`{issuer}`: {error}"))
        })?;
        if !portcullis_authn::trusted_transport(&parsed, insecure) {
            return Err(ConfigError::invalid(
                format!("{key}.issuer"),
                "must be https (plain http only on loopback, or with `[danger] insecure_issuers`)",
            ));
        }
    }
    let client = match (client_id, client_secret_file) {
        (Some(id), Some(file)) => Some(super::auth::client(
            key,
            (id, &file),
            client_auth.as_deref(),
            base,
        )?),
        (Some(id), None) if client_auth.is_none() => Some(ClientAuth::Public { id }),
        (Some(_), None) => {
            return Err(ConfigError::invalid(
                format!("{key}.client_auth"),
                "is for a confidential client: give `client_secret_file` too",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::invalid(
                format!("{key}.client_secret_file"),
                "belongs to a `client_id`",
            ));
        }
        (None, None) => None,
    };
    check_scopes(key, &scopes)?;
    Ok(UserOauth {
        resource,
        issuer,
        client,
        scopes,
        insecure,
    })
}

fn check_scopes(key: &str, scopes: &[String]) -> Result<(), ConfigError> {
    match scopes
        .iter()
        .find(|scope| scope.is_empty() || !scope.chars().all(|c| c.is_ascii_graphic()))
    {
        Some(scope) => Err(ConfigError::invalid(
            format!("{key}.scopes"),
            format!("`{scope}` is not a scope token (RFC 6749 §3.3)"),
        )),
        None => Ok(()),
    }
}

fn resolve_exchange(
    key: &str,
    raw: RawTokenExchange,
    base: &Path,
    insecure: bool,
) -> Result<TokenExchange, ConfigError> {
    let RawTokenExchange {
        issuer,
        token_endpoint,
        client_id,
        client_secret_file,
        client_auth,
        audience,
        resource,
        scopes,
        subject_issuers,
    } = raw;
    let url = |field: &str, text: &str| {
        let url = Url::parse(text).map_err(|error| {
            ConfigError::invalid(format!("{key}.{field}"), format!("`{text}`: {error}"))
        })?;
        if !portcullis_authn::trusted_transport(&url, insecure) {
            return Err(ConfigError::invalid(
                format!("{key}.{field}"),
                "must be https (plain http only on loopback, or with `[danger] insecure_issuers`)",
            ));
        }
        Ok(url)
    };
    let subject_issuers = match (subject_issuers, &issuer) {
        (Some(issuers), _) if !issuers.is_empty() => issuers,
        (None, Some(issuer)) => vec![issuer.clone()],
        _ => {
            return Err(ConfigError::invalid(
                format!("{key}.subject_issuers"),
                "name the issuers whose callers' tokens may be sent to this token endpoint",
            ));
        }
    };
    let endpoint = match (token_endpoint, issuer) {
        (Some(endpoint), None) => TokenEndpoint::Url(url("token_endpoint", &endpoint)?),
        (None, Some(issuer)) => {
            url("issuer", &issuer)?;
            TokenEndpoint::Issuer(issuer)
        }
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                key,
                "give `token_endpoint` or `issuer` (whose metadata names it), not both",
            ));
        }
        (None, None) => {
            return Err(ConfigError::invalid(
                key,
                "give `token_endpoint`, or `issuer` to read it from the metadata",
            ));
        }
    };
    let (Some(id), Some(secret_file)) = (client_id, client_secret_file) else {
        return Err(ConfigError::invalid(
            key,
            "the gateway asks as a client: give `client_id` and `client_secret_file`",
        ));
    };
    let client = super::auth::client(key, (id, &secret_file), client_auth.as_deref(), base)?;
    // SECURITY: a token asked for no audience in particular may be good at every service
    // that trusts the server; one named service's token is good only there.
    if audience.is_none() && resource.is_none() {
        return Err(ConfigError::invalid(
            key,
            "name the upstream the tokens are for: `audience`, `resource` or both",
        ));
    }
    if let Some(resource) = &resource {
        let parsed = Url::parse(resource).map_err(|error| {
            ConfigError::invalid(format!("{key}.resource"), format!("`{resource}`: {error}"))
        })?;
        if parsed.fragment().is_some() {
            return Err(ConfigError::invalid(
                format!("{key}.resource"),
                "a resource indicator has no fragment (RFC 8707 §2)",
            ));
        }
    }
    check_scopes(key, &scopes)?;
    Ok(TokenExchange {
        endpoint,
        client,
        target: TokenTarget {
            audience,
            resource,
            scopes,
        },
        subject_issuers,
        insecure,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(extra: impl FnOnce(&mut RawTokenExchange)) -> Result<UpstreamCredentials, String> {
        let dir = std::env::temp_dir().join(format!("portcullis-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("secret"), "s3cret\n").unwrap();
        let mut raw = RawTokenExchange {
            token_endpoint: Some("https://as.example/token".into()),
            client_id: Some("portcullis".into()),
            client_secret_file: Some("secret".into()),
            audience: Some("tickets".into()),
            subject_issuers: Some(vec!["https://as.example".into()]),
            ..RawTokenExchange::default()
        };
        extra(&mut raw);
        resolve_credentials(
            "upstream[0]",
            (Some("token-exchange".into()), Some(raw), None),
            Some("https://t.example/mcp"),
            &dir,
            false,
        )
        .map_err(|error| error.to_string())
    }

    #[test]
    fn a_token_exchange_names_its_endpoint_client_and_audience() {
        let Ok(UpstreamCredentials::TokenExchange(resolved)) = exchange(|_| {}) else {
            panic!("refused");
        };
        assert_eq!(resolved.target.audience.as_deref(), Some("tickets"));
        assert!(!format!("{resolved:?}").contains("s3cret"));
        for (change, says) in [
            (
                Box::new(|raw: &mut RawTokenExchange| {
                    raw.audience = None;
                }) as Box<dyn FnOnce(&mut RawTokenExchange)>,
                "name the upstream",
            ),
            (
                Box::new(|raw| raw.token_endpoint = Some("http://as.example/token".into())),
                "must be https",
            ),
            (
                Box::new(|raw| raw.issuer = Some("https://as.example".into())),
                "not both",
            ),
            (Box::new(|raw| raw.client_id = None), "client_id"),
            (
                Box::new(|raw| raw.subject_issuers = None),
                "subject_issuers",
            ),
            (
                Box::new(|raw| raw.client_secret_file = Some("missing".into())),
                "client_secret_file",
            ),
            (
                Box::new(|raw| raw.scopes = vec!["a b".into()]),
                "not a scope token",
            ),
            (
                Box::new(|raw| raw.resource = Some("https://t.example/mcp#x".into())),
                "no fragment",
            ),
        ] {
            let error = exchange(change).err().unwrap_or_default();
            assert!(error.contains(says), "{error}");
        }
    }

    fn user(url: Option<&str>, raw: Option<RawUserOauth>) -> Result<UpstreamCredentials, String> {
        let dir = std::env::temp_dir().join(format!("portcullis-user-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("secret"), "s3cret\n").unwrap();
        resolve_credentials(
            "upstream[0]",
            (Some("user-oauth".into()), None, raw),
            url,
            &dir,
            false,
        )
        .map_err(|error| error.to_string())
    }

    #[test]
    fn user_oauth_needs_an_https_upstream_and_takes_a_static_client_or_none() {
        let Ok(UpstreamCredentials::UserOauth(found)) = user(Some("https://t.example/mcp"), None)
        else {
            panic!("refused");
        };
        assert_eq!(found.resource.as_str(), "https://t.example/mcp");
        assert!(found.client.is_none() && found.issuer.is_none());
        let public = user(
            Some("https://t.example/mcp"),
            Some(RawUserOauth {
                client_id: Some("gw".into()),
                ..RawUserOauth::default()
            }),
        );
        assert!(
            matches!(public, Ok(UpstreamCredentials::UserOauth(u)) if matches!(u.client, Some(ClientAuth::Public { .. })))
        );
        let confidential = user(
            Some("https://t.example/mcp"),
            Some(RawUserOauth {
                client_id: Some("gw".into()),
                client_secret_file: Some("secret".into()),
                ..RawUserOauth::default()
            }),
        );
        assert!(
            matches!(confidential, Ok(UpstreamCredentials::UserOauth(u)) if matches!(u.client, Some(ClientAuth::Basic { .. })))
        );
        for (url, raw, says) in [
            (None, None, "HTTP upstream"),
            (Some("http://t.example/mcp"), None, "must be https"),
            (
                Some("https://t.example/mcp"),
                Some(RawUserOauth {
                    issuer: Some("http://as.example".into()),
                    ..RawUserOauth::default()
                }),
                "must be https",
            ),
            (
                Some("https://t.example/mcp"),
                Some(RawUserOauth {
                    client_auth: Some("post".into()),
                    client_id: Some("gw".into()),
                    ..RawUserOauth::default()
                }),
                "client_secret_file",
            ),
            (
                Some("https://t.example/mcp"),
                Some(RawUserOauth {
                    client_secret_file: Some("secret".into()),
                    ..RawUserOauth::default()
                }),
                "client_id",
            ),
            (
                Some("https://t.example/mcp"),
                Some(RawUserOauth {
                    scopes: vec!["".into()],
                    ..RawUserOauth::default()
                }),
                "not a scope token",
            ),
        ] {
            let error = user(url, raw).err().unwrap_or_default();
            assert!(error.contains(says), "{says}: {error}");
        }
        let stray = resolve_credentials(
            "u",
            (None, None, Some(RawUserOauth::default())),
            Some("https://t.example/mcp"),
            Path::new("/"),
            false,
        );
        assert!(stray.unwrap_err().to_string().contains("user_oauth"));
    }

    #[test]
    fn connections_need_a_key_file_and_only_with_user_oauth() {
        let base = Path::new("/etc/portcullis");
        let missing = resolve_connections(None, true, base, None)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("key_file"), "{missing}");
        let stray = resolve_connections(Some(RawConnections::default()), false, base, None);
        assert!(stray.unwrap_err().to_string().contains("user-oauth"));
        let kept = resolve_connections(
            Some(RawConnections {
                key_file: Some("c.key".into()),
                database: None,
            }),
            true,
            base,
            None,
        )
        .unwrap()
        .unwrap();
        assert_eq!(kept.key_file, base.join("c.key"));
        assert_eq!(kept.database, base.join("connections.db"));
        assert_eq!(resolve_connections(None, false, base, None).unwrap(), None);
    }

    #[test]
    fn token_exchange_needs_an_http_upstream_and_its_table() {
        let base = Path::new("/");
        let stdio = resolve_credentials(
            "u",
            (
                Some("token-exchange".into()),
                Some(RawTokenExchange::default()),
                None,
            ),
            None,
            base,
            false,
        );
        assert!(stdio.unwrap_err().to_string().contains("HTTP upstream"));
        let missing = resolve_credentials(
            "u",
            (Some("token-exchange".into()), None, None),
            Some("https://t.example/mcp"),
            base,
            false,
        );
        assert!(missing.unwrap_err().to_string().contains("table"));
        let stray = resolve_credentials(
            "u",
            (None, Some(RawTokenExchange::default()), None),
            Some("https://t.example/mcp"),
            base,
            false,
        );
        assert!(stray.unwrap_err().to_string().contains("token_exchange"));
        let unknown = resolve_credentials(
            "u",
            (Some("pass-through".into()), None, None),
            Some("https://t.example/mcp"),
            base,
            false,
        );
        assert!(
            unknown
                .unwrap_err()
                .to_string()
                .contains("expected `gateway`")
        );
    }
}
