//! The gateway as an OAuth client of an upstream's authorization server, found the MCP way:
//! the upstream's 401 names its protected resource metadata (RFC 9728), which names the
//! authorization server, whose metadata (RFC 8414) names its endpoints. The gateway is known
//! there by a client registered by hand, by its client ID metadata document, or by dynamic
//! registration (RFC 7591), in that order of preference.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

/// A metadata document or registration answer is a few kilobytes.
const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);

/// An upstream's authorization server, as its metadata describes it.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    pub(crate) issuer: String,
    pub(crate) authorization_endpoint: Url,
    pub(crate) token_endpoint: Url,
    pub(crate) registration_endpoint: Option<Url>,
    /// It takes a URL as `client_id`, fetching the client's metadata document there.
    pub(crate) metadata_documents: bool,
    /// It names itself in its authorization responses (RFC 9207): one without `iss` is refused.
    pub(crate) names_itself: bool,
    /// The scopes the upstream's metadata lists, asked for when none are configured.
    pub(crate) scopes: Vec<String>,
}

#[derive(Deserialize)]
struct ResourceMetadata {
    resource: String,
    #[serde(default)]
    authorization_servers: Vec<String>,
    #[serde(default)]
    scopes_supported: Vec<String>,
}

#[derive(Deserialize)]
struct ServerMetadata {
    issuer: String,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    registration_endpoint: Option<String>,
    #[serde(default)]
    code_challenge_methods_supported: Vec<String>,
    #[serde(default)]
    client_id_metadata_document_supported: bool,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}

/// The authorization server of the upstream at `resource` (or `issuer`, when configured).
pub(crate) async fn discover(
    http: &reqwest::Client,
    resource: &Url,
    issuer: Option<&str>,
    insecure: bool,
) -> Result<Server, String> {
    let (issuer, scopes) = match issuer {
        Some(issuer) => (issuer.to_owned(), Vec::new()),
        None => {
            let metadata = resource_metadata(http, resource, insecure).await?;
            let issuer = metadata
                .authorization_servers
                .into_iter()
                .next()
                .ok_or("the upstream's resource metadata names no authorization server")?;
            (issuer, metadata.scopes_supported)
        }
    };
    let mut server = server_metadata(http, &issuer, (resource, insecure)).await?;
    server.scopes = scopes;
    Ok(server)
}

/// RFC 9728: the document the upstream's 401 points to, else its well-known places.
async fn resource_metadata(
    http: &reqwest::Client,
    resource: &Url,
    insecure: bool,
) -> Result<ResourceMetadata, String> {
    let probe = http
        .post(resource.clone())
        .timeout(TIMEOUT)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":"portcullis-discovery","method":"ping"}"#)
        .send()
        .await
        .map_err(|error| {
            format!(
                "the upstream cannot be reached: {}",
                portcullis_core::error_chain(&error)
            )
        })?;
    let pointed = (probe.status() == reqwest::StatusCode::UNAUTHORIZED)
        .then(|| {
            probe
                .headers()
                .get_all("www-authenticate")
                .iter()
                .filter_map(|value| value.to_str().ok())
                .find_map(|value| parameter(value, "resource_metadata"))
        })
        .flatten()
        .and_then(|url| Url::parse(&url).ok())
        // SECURITY: the document is the resource's own, on its origin: a 401 pointing the
        // gateway elsewhere (an internal address) is not followed.
        .filter(|url| url.origin() == resource.origin());
    let mut candidates: Vec<Url> = pointed.into_iter().collect();
    // RFC 9728 §3.1: the well-known name goes between the host and the path.
    let mut at_path = resource.clone();
    at_path.set_query(None);
    let path = resource.path().trim_end_matches('/').to_owned();
    at_path.set_path(&format!("/.well-known/oauth-protected-resource{path}"));
    candidates.push(at_path.clone());
    at_path.set_path("/.well-known/oauth-protected-resource");
    candidates.push(at_path);
    let mut last = String::from("no protected resource metadata");
    for url in candidates {
        if !safe(&url, (resource, insecure)) {
            last = format!("{url}: not https");
            continue;
        }
        match portcullis_authn::fetch_document::<ResourceMetadata>(http, &url).await {
            // RFC 9728 §3.3: a document for another resource is not this one's.
            Ok(metadata) if same_resource(&metadata.resource, resource) => return Ok(metadata),
            Ok(metadata) => {
                last = format!("{url} is for another resource (`{}`)", metadata.resource)
            }
            Err(error) => last = format!("{url}: {error}"),
        }
    }
    Err(last)
}

/// Whether a discovered address may be used: https; plain http only with `[danger]
/// insecure_issuers`, or on loopback for an upstream itself on loopback (a test or a
/// developer's machine). SECURITY: what an upstream's metadata names is where people's codes,
/// refresh tokens and the gateway's client secret go; a remote upstream naming a plain-http
/// service on the gateway's own host is refused.
fn safe(url: &Url, (resource, insecure): (&Url, bool)) -> bool {
    let local =
        |url: &Url| url.scheme() == "http" && portcullis_authn::trusted_transport(url, false);
    url.scheme() == "https"
        || (url.scheme() == "http" && insecure)
        || (local(url) && local(resource))
}

fn same_resource(named: &str, resource: &Url) -> bool {
    named.trim_end_matches('/') == resource.as_str().trim_end_matches('/')
}

/// RFC 8414: the server's metadata, refused when it names another issuer, an endpoint a
/// person's sign-in could not safely go to, or no PKCE with S256 (the MCP authorization spec
/// requires it).
async fn server_metadata(
    http: &reqwest::Client,
    issuer: &str,
    (resource, insecure): (&Url, bool),
) -> Result<Server, String> {
    let issuer_url = Url::parse(issuer).map_err(|error| format!("issuer `{issuer}`: {error}"))?;
    if !safe(&issuer_url, (resource, insecure)) {
        return Err(format!("issuer `{issuer}` is not https"));
    }
    portcullis_authn::issuer_metadata(http, issuer, |metadata: ServerMetadata| {
        let endpoint = |name: &str, value: Option<String>| -> Result<Url, String> {
            let value = value.ok_or(format!("names no {name}"))?;
            let parsed = Url::parse(&value).map_err(|error| format!("{name}: {error}"))?;
            if !safe(&parsed, (resource, insecure)) {
                return Err(format!("the {name} is not https"));
            }
            Ok(parsed)
        };
        if !metadata
            .code_challenge_methods_supported
            .iter()
            .any(|m| m == "S256")
        {
            return Err("the server does not say it supports PKCE with S256".to_owned());
        }
        Ok(Server {
            authorization_endpoint: endpoint(
                "authorization_endpoint",
                metadata.authorization_endpoint,
            )?,
            token_endpoint: endpoint("token_endpoint", metadata.token_endpoint)?,
            registration_endpoint: metadata
                .registration_endpoint
                .map(|value| endpoint("registration_endpoint", Some(value)))
                .transpose()?,
            metadata_documents: metadata.client_id_metadata_document_supported,
            names_itself: metadata.authorization_response_iss_parameter_supported,
            issuer: metadata.issuer,
            scopes: Vec::new(),
        })
    })
    .await
}

/// A registration the gateway made, as kept (sealed: it may hold a secret).
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
pub(crate) struct Registered {
    pub(crate) client_id: String,
    pub(crate) client_secret: Option<String>,
    /// `client_secret_basic`, `client_secret_post` or `none`.
    pub(crate) method: String,
}

impl Registered {
    pub(crate) fn client(&self) -> portcullis_authn::ClientAuth {
        use portcullis_authn::{ClientAuth, ClientSecret};
        match (&self.client_secret, self.method.as_str()) {
            (Some(secret), "client_secret_post") => ClientAuth::Post {
                id: self.client_id.clone(),
                secret: ClientSecret::new(secret.clone()),
            },
            (Some(secret), _) => ClientAuth::Basic {
                id: self.client_id.clone(),
                secret: ClientSecret::new(secret.clone()),
            },
            (None, _) => ClientAuth::Public {
                id: self.client_id.clone(),
            },
        }
    }
}

/// RFC 7591: register the gateway at `endpoint`, to be sent back to `redirect_uri`.
pub(crate) async fn register(
    http: &reqwest::Client,
    endpoint: &Url,
    redirect_uri: &str,
) -> Result<Registered, String> {
    #[derive(Deserialize)]
    struct Answer {
        client_id: String,
        client_secret: Option<String>,
        token_endpoint_auth_method: Option<String>,
    }
    let body = serde_json::json!({
        "client_name": "Portcullis",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_basic",
    });
    let response = http
        .post(endpoint.clone())
        .timeout(TIMEOUT)
        .json(&body)
        .send()
        .await
        .map_err(|error| portcullis_core::error_chain(&error))?;
    let status = response.status();
    let body = portcullis_authn::read_bounded(response, MAX_DOCUMENT_BYTES)
        .await
        .ok_or("the answer is too large or broke off")?;
    if !status.is_success() {
        return Err(format!(
            "the registration endpoint answered HTTP {}",
            status.as_u16()
        ));
    }
    let answer: Answer =
        serde_json::from_slice(&body).map_err(|_| "the registration answer is not one")?;
    Ok(Registered {
        method: answer
            .token_endpoint_auth_method
            .unwrap_or_else(|| "client_secret_basic".to_owned()),
        client_id: answer.client_id,
        client_secret: answer.client_secret.filter(|secret| !secret.is_empty()),
    })
}

/// The value of auth-param `name` in a `WWW-Authenticate` header value (RFC 9110 §11.6.1),
/// quoted or not: read parameter by parameter, so a name written inside another parameter's
/// quoted value (an `error_description`) is not taken for one.
fn parameter(header: &str, name: &str) -> Option<String> {
    let mut rest = header.trim_start();
    while !rest.is_empty() {
        // A token: a scheme, or a parameter's name.
        let end = rest
            .find(|c: char| c == '=' || c == ',' || c.is_whitespace())
            .unwrap_or(rest.len());
        let token = &rest[..end];
        rest = rest[end..].trim_start();
        let Some(after) = rest.strip_prefix('=') else {
            // After a scheme, a comma between parameters, or (never, as `find` stops only at
            // these) a character that is neither: step over it.
            rest = match rest.strip_prefix(',') {
                Some(next) => next.trim_start(),
                None if end == 0 => rest.get(1..).unwrap_or_default(),
                None => rest,
            };
            continue;
        };
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut close = None;
            while let Some((at, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        close = Some(at);
                        break;
                    }
                    other => value.push(other),
                }
            }
            (value, &quoted[close? + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        if token.eq_ignore_ascii_case(name) {
            return Some(value);
        }
        rest = remaining.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resource_metadata_parameter_is_read_from_a_challenge() {
        let header = r#"Bearer error="invalid_token", resource_metadata="https://t.example/.well-known/oauth-protected-resource/mcp""#;
        assert_eq!(
            parameter(header, "resource_metadata").as_deref(),
            Some("https://t.example/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(
            parameter(
                "Bearer resource_metadata=https://x.example/m, scope=a",
                "resource_metadata"
            )
            .as_deref(),
            Some("https://x.example/m")
        );
        assert_eq!(
            parameter(r#"Bearer not_resource_metadata="x""#, "resource_metadata"),
            None
        );
        assert_eq!(parameter("Bearer realm=\"x\"", "resource_metadata"), None);
        // Inside another parameter's quoted value it is no parameter.
        assert_eq!(
            parameter(
                r#"Bearer error_description="see resource_metadata=\"http://evil/\"", resource_metadata="https://t.example/m""#,
                "resource_metadata"
            )
            .as_deref(),
            Some("https://t.example/m")
        );
        assert_eq!(
            parameter(
                r#"Bearer error_description="resource_metadata=http://evil/""#,
                "resource_metadata"
            ),
            None
        );
        assert_eq!(parameter(r#"Bearer error="x"#, "resource_metadata"), None);
        assert_eq!(parameter("", "resource_metadata"), None);
        assert_eq!(parameter(",,= =,", "resource_metadata"), None);
        assert_eq!(
            parameter(
                "Bearer ,resource_metadata=https://t.example/m",
                "resource_metadata"
            )
            .as_deref(),
            Some("https://t.example/m")
        );
    }

    #[test]
    fn a_resource_is_the_same_with_or_without_a_trailing_slash_only() {
        let url = Url::parse("https://t.example/mcp").unwrap();
        assert!(same_resource("https://t.example/mcp/", &url));
        assert!(same_resource("https://t.example/mcp", &url));
        assert!(!same_resource("https://t.example/other", &url));
        assert!(!same_resource("https://evil.example/mcp", &url));
    }

    #[test]
    fn discovered_addresses_are_https_or_loopback_beside_a_loopback_upstream() {
        let url = |text| Url::parse(text).unwrap();
        let remote = url("https://t.example/mcp");
        let local = url("http://127.0.0.1:8080/mcp");
        assert!(safe(&url("https://as.example/token"), (&remote, false)));
        assert!(!safe(&url("http://127.0.0.1:9000/token"), (&remote, false)));
        assert!(!safe(&url("http://as.example/token"), (&remote, false)));
        assert!(safe(&url("http://as.example/token"), (&remote, true)));
        assert!(safe(&url("http://127.0.0.2:9000/token"), (&local, false)));
        assert!(!safe(&url("http://as.example/token"), (&local, false)));
    }
}
