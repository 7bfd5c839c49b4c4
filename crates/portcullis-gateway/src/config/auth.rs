//! `[auth]` resolved: the protected resource, its issuers and how each one's tokens are checked.

use std::{path::Path, sync::Arc, time::Duration};

use portcullis_authn::{ClaimMapping, ClientAuth, ClientSecret, ProtectedResource, Scopes};
use portcullis_policy::PolicyEngine;
use url::Url;

use super::{
    ConfigError,
    raw::{RawAuth, RawCapability, RawIssuer, RawPolicy},
    resolve::duration,
};

/// Resolved `[auth]`.
#[derive(Debug, Clone)]
pub struct Auth {
    /// This endpoint as a protected resource.
    pub resource: ProtectedResource,
    /// Its human-readable name.
    pub resource_name: String,
    /// Scopes advertised and challenged for.
    pub scopes: Scopes,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// The accepted issuers.
    pub issuers: Vec<Issuer>,
    /// What callers may see and do: the catalog, its scopes and the Cedar policies.
    pub policy: Arc<PolicyEngine>,
    /// The file the policies came from (`[policy] file`), watched for reloads.
    pub policy_file: Option<std::path::PathBuf>,
    /// A candidate set evaluated beside `policy` and audited where it disagrees, never enforced.
    pub shadow: Option<Arc<PolicyEngine>>,
    /// `[danger] insecure_issuers`: issuers' keys, metadata and introspection over plain http.
    pub insecure_issuers: bool,
}

/// One accepted token issuer.
#[derive(Debug, Clone)]
pub struct Issuer {
    /// Its exact `iss`.
    pub issuer: String,
    /// Where its keys are published; `None`: discovered from the issuer.
    pub jwks_uri: Option<Url>,
    /// Where its tokens keep the caller's attributes.
    pub mapping: ClaimMapping,
    /// How its opaque tokens are checked, if it issues any.
    pub introspection: Option<Introspection>,
    /// The header `typ` values its access tokens carry (lower case, no `application/`).
    pub token_types: Vec<String>,
}

/// An issuer's RFC 7662 endpoint and the gateway's credentials there.
#[derive(Debug, Clone)]
pub struct Introspection {
    /// The endpoint.
    pub endpoint: Url,
    /// The gateway's client authentication.
    pub client: ClientAuth,
    /// Longest reuse of one answer.
    pub cache_ttl: Duration,
}

pub(super) fn resolve_auth(
    raw: RawAuth,
    capabilities: Vec<RawCapability>,
    raw_policy: Option<RawPolicy>,
    insecure_issuers: bool,
    base: &Path,
) -> Result<Auth, ConfigError> {
    let resource = ProtectedResource::new(&raw.public_url)
        .map_err(|error| ConfigError::invalid("auth.public_url", error.to_string()))?;
    let scopes = Scopes::new(raw.scopes)
        .map_err(|error| ConfigError::invalid("auth.scopes", error.to_string()))?;
    if raw.issuers.is_empty() {
        return Err(ConfigError::invalid(
            "auth.issuer",
            "at least one `[[auth.issuer]]` is required",
        ));
    }
    if insecure_issuers {
        tracing::warn!(
            "[danger] insecure_issuers = true: issuer keys may be fetched over plain http"
        );
    }
    let mut issuers = Vec::new();
    for (index, issuer) in raw.issuers.into_iter().enumerate() {
        let key = format!("auth.issuer[{index}]");
        let issuer_url = Url::parse(&issuer.issuer).map_err(|error| {
            ConfigError::invalid(
                format!("{key}.issuer"),
                format!("`{}`: {error}", issuer.issuer),
            )
        })?;
        check_transport(&format!("{key}.issuer"), &issuer_url, insecure_issuers)?;
        let jwks_uri = match &issuer.jwks_uri {
            Some(text) => {
                let url = Url::parse(text).map_err(|error| {
                    ConfigError::invalid(format!("{key}.jwks_uri"), format!("`{text}`: {error}"))
                })?;
                check_transport(&format!("{key}.jwks_uri"), &url, insecure_issuers)?;
                Some(url)
            }
            None => None,
        };
        let preset = issuer.claims.as_deref().unwrap_or("standard");
        let mut mapping = match preset {
            "standard" => ClaimMapping::standard(),
            "keycloak" => ClaimMapping::keycloak(),
            "entra" => ClaimMapping::entra(),
            other => {
                return Err(ConfigError::invalid(
                    format!("{key}.claims"),
                    format!("`{other}`: expected `standard`, `keycloak` or `entra`"),
                ));
            }
        };
        if let Some(paths) = &issuer.claim_paths {
            let key = format!("{key}.claim_paths");
            let fields = [
                (&paths.subject, &mut mapping.subject, "subject"),
                (&paths.tenant, &mut mapping.tenant, "tenant"),
                (&paths.roles, &mut mapping.roles, "roles"),
                (&paths.scopes, &mut mapping.scopes, "scopes"),
                (&paths.client_id, &mut mapping.client_id, "client_id"),
            ];
            for (given, field, name) in fields {
                let Some(given) = given else { continue };
                if let Some(bad) = given.iter().find(|p| !p.starts_with('/')) {
                    return Err(ConfigError::invalid(
                        format!("{key}.{name}"),
                        format!("`{bad}` is not a JSON pointer (it must start with `/`)"),
                    ));
                }
                field.clone_from(given);
            }
        }
        let introspection = resolve_introspection(&key, &issuer, insecure_issuers, base)?;
        let token_types = token_types(&key, preset, issuer.token_types.as_deref())?;
        issuers.push(Issuer {
            issuer: issuer.issuer,
            jwks_uri,
            mapping,
            introspection,
            token_types,
        });
    }
    let policy_file = raw_policy
        .as_ref()
        .and_then(|policy| policy.file.as_ref())
        .map(|file| base.join(file));
    let (policy, shadow) =
        super::policy::resolve_policy(raw_policy, capabilities, raw.scope_hierarchy, base)?;
    Ok(Auth {
        resource,
        resource_name: raw.resource_name.unwrap_or_else(|| "Portcullis".to_owned()),
        scopes,
        leeway: duration("auth.leeway", raw.leeway, 30_000)?,
        issuers,
        policy_file,
        policy,
        shadow,
        insecure_issuers,
    })
}

/// The `typ` values an issuer's access tokens may carry: RFC 9068's `at+jwt`, plus plain `JWT`
/// for the IdPs whose access tokens say that (Keycloak, Entra), unless the config says.
fn token_types(
    key: &str,
    preset: &str,
    given: Option<&[String]>,
) -> Result<Vec<String>, ConfigError> {
    let defaults: &[&str] = match preset {
        "standard" => &["at+jwt"],
        _ => &["at+jwt", "jwt"],
    };
    let Some(given) = given else {
        return Ok(defaults.iter().map(|typ| (*typ).to_owned()).collect());
    };
    if given.is_empty() {
        return Err(ConfigError::invalid(
            format!("{key}.token_types"),
            "name at least one `typ` (e.g. \"at+jwt\")",
        ));
    }
    Ok(given
        .iter()
        .map(|typ| {
            let typ = typ.to_ascii_lowercase();
            typ.strip_prefix("application/").unwrap_or(&typ).to_owned()
        })
        .collect())
}

fn resolve_introspection(
    key: &str,
    issuer: &RawIssuer,
    insecure: bool,
    base: &Path,
) -> Result<Option<Introspection>, ConfigError> {
    let Some(endpoint) = &issuer.introspection_endpoint else {
        if issuer.client_id.is_some() || issuer.client_secret_file.is_some() {
            return Err(ConfigError::invalid(
                key,
                "`client_id` and `client_secret_file` need `introspection_endpoint`",
            ));
        }
        return Ok(None);
    };
    let endpoint = Url::parse(endpoint).map_err(|error| {
        ConfigError::invalid(
            format!("{key}.introspection_endpoint"),
            format!("`{endpoint}`: {error}"),
        )
    })?;
    check_transport(
        &format!("{key}.introspection_endpoint"),
        &endpoint,
        insecure,
    )?;
    let (Some(id), Some(path)) = (&issuer.client_id, &issuer.client_secret_file) else {
        return Err(ConfigError::invalid(
            key,
            "introspection needs `client_id` and `client_secret_file` (RFC 7662 §2.1)",
        ));
    };
    let client = client(key, (id.clone(), path), issuer.client_auth.as_deref(), base)?;
    let cache_ttl = duration(
        &format!("{key}.introspection_cache"),
        issuer.introspection_cache.clone(),
        5_000,
    )?;
    Ok(Some(Introspection {
        endpoint,
        client,
        cache_ttl,
    }))
}

/// The gateway as a client of an authorization server (`key` names the table): its id, its
/// secret read from a file (relative to the config file's folder), and how it sends them.
pub(super) fn client(
    key: &str,
    (id, secret_file): (String, &Path),
    method: Option<&str>,
    base: &Path,
) -> Result<ClientAuth, ConfigError> {
    let path = base.join(secret_file);
    let secret = std::fs::read_to_string(&path)
        .map_err(|error| {
            ConfigError::invalid(
                format!("{key}.client_secret_file"),
                format!("`{}`: {error}", path.display()),
            )
        })?
        .trim()
        .to_owned();
    if secret.is_empty() {
        return Err(ConfigError::invalid(
            format!("{key}.client_secret_file"),
            "the file is empty",
        ));
    }
    let secret = ClientSecret::new(secret);
    match method.unwrap_or("basic") {
        "basic" => Ok(ClientAuth::Basic { id, secret }),
        "post" => Ok(ClientAuth::Post { id, secret }),
        other => Err(ConfigError::invalid(
            format!("{key}.client_auth"),
            format!("`{other}`: expected `basic` or `post`"),
        )),
    }
}

fn check_transport(key: &str, url: &Url, insecure: bool) -> Result<(), ConfigError> {
    if portcullis_authn::trusted_transport(url, insecure) {
        return Ok(());
    }
    Err(ConfigError::invalid(
        key,
        "must be https (plain http only on loopback, or with `[danger] insecure_issuers`)",
    ))
}
