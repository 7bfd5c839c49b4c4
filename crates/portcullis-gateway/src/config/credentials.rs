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

/// Which token requests to an upstream carry.
#[derive(Debug, Clone, Default)]
pub enum UpstreamCredentials {
    /// The gateway's own credential (`credential_file`), or none.
    #[default]
    Gateway,
    /// A token exchanged for each caller; the gateway's own requests (its handshake, learning
    /// the upstream's lists) carry one it asks for itself with the same client.
    TokenExchange(Box<TokenExchange>),
}

impl UpstreamCredentials {
    /// The name records and policies know it by.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::TokenExchange(_) => "token-exchange",
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
    (credentials, exchange): (Option<String>, Option<RawTokenExchange>),
    http_upstream: bool,
    base: &Path,
    insecure: bool,
) -> Result<UpstreamCredentials, ConfigError> {
    match credentials.as_deref().unwrap_or("gateway") {
        "gateway" => {
            if exchange.is_some() {
                return Err(ConfigError::invalid(
                    format!("{key}.token_exchange"),
                    "is used with `credentials = \"token-exchange\"`",
                ));
            }
            Ok(UpstreamCredentials::Gateway)
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
            format!("`{other}`: expected `gateway` or `token-exchange`"),
        )),
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
    if let Some(scope) = scopes
        .iter()
        .find(|scope| scope.is_empty() || !scope.chars().all(|c| c.is_ascii_graphic()))
    {
        return Err(ConfigError::invalid(
            format!("{key}.scopes"),
            format!("`{scope}` is not a scope token (RFC 6749 §3.3)"),
        ));
    }
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
            (Some("token-exchange".into()), Some(raw)),
            true,
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

    #[test]
    fn token_exchange_needs_an_http_upstream_and_its_table() {
        let base = Path::new("/");
        let stdio = resolve_credentials(
            "u",
            (
                Some("token-exchange".into()),
                Some(RawTokenExchange::default()),
            ),
            false,
            base,
            false,
        );
        assert!(stdio.unwrap_err().to_string().contains("HTTP upstream"));
        let missing = resolve_credentials(
            "u",
            (Some("token-exchange".into()), None),
            true,
            base,
            false,
        );
        assert!(missing.unwrap_err().to_string().contains("table"));
        let stray = resolve_credentials(
            "u",
            (None, Some(RawTokenExchange::default())),
            true,
            base,
            false,
        );
        assert!(stray.unwrap_err().to_string().contains("token_exchange"));
        let unknown =
            resolve_credentials("u", (Some("pass-through".into()), None), true, base, false);
        assert!(
            unknown
                .unwrap_err()
                .to_string()
                .contains("expected `gateway`")
        );
    }
}
