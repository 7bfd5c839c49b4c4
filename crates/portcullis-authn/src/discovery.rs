//! Finding an issuer's keys from its identifier: RFC 8414 authorization server metadata first,
//! then OpenID Connect discovery, in the order the MCP authorization spec gives.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

/// The metadata URLs to try for `issuer`, in order.
///
/// For `https://as.example/tenant1`: RFC 8414 with path insertion, OIDC with path insertion,
/// then OIDC with the path appended. For an issuer without a path: RFC 8414, then OIDC.
pub fn metadata_urls(issuer: &Url) -> Vec<Url> {
    let path = issuer.path().trim_end_matches('/');
    let at = |suffix: String| {
        let mut url = issuer.clone();
        url.set_path(&suffix);
        url.set_query(None);
        url.set_fragment(None);
        url
    };
    if path.is_empty() {
        vec![
            at("/.well-known/oauth-authorization-server".to_owned()),
            at("/.well-known/openid-configuration".to_owned()),
        ]
    } else {
        vec![
            at(format!("/.well-known/oauth-authorization-server{path}")),
            at(format!("/.well-known/openid-configuration{path}")),
            at(format!("{path}/.well-known/openid-configuration")),
        ]
    }
}

/// Whether keys, metadata and introspection may be fetched from `url`: over https, or plain
/// http on loopback, or plain http anywhere when `insecure` (`[danger] insecure_issuers`).
///
/// SECURITY: keys fetched over plain http from the network can be swapped in transit, and then
/// any token verifies.
pub fn trusted_transport(url: &Url, insecure: bool) -> bool {
    let loopback = matches!(
        url.host(),
        Some(url::Host::Ipv4(ip)) if ip.is_loopback()
    ) || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
        || url.host_str() == Some("localhost");
    match url.scheme() {
        "https" => true,
        "http" => loopback || insecure,
        _ => false,
    }
}

/// The redirect policy of the client that talks to issuers: at most 5 hops, each to a
/// [`trusted_transport`] address, so a redirect cannot downgrade a fetch to plain http.
pub fn redirect_policy(insecure: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 5 {
            attempt.error("too many redirects")
        } else if trusted_transport(attempt.url(), insecure) {
            attempt.follow()
        } else {
            attempt.error("redirect to an address that is not https")
        }
    })
}

#[derive(Deserialize)]
struct Metadata {
    jwks_uri: Option<String>,
    token_endpoint: Option<String>,
}

/// The `jwks_uri` the issuer publishes, from the first metadata document that answers and names
/// the same issuer (RFC 8414 §3.3: a document for another issuer is ignored, not trusted).
pub async fn jwks_uri(http: &reqwest::Client, issuer: &str, insecure: bool) -> Option<Url> {
    endpoint(http, issuer, insecure, |metadata| metadata.jwks_uri).await
}

/// The `token_endpoint` the issuer publishes, found as [`jwks_uri`] is.
pub async fn token_endpoint(http: &reqwest::Client, issuer: &str, insecure: bool) -> Option<Url> {
    endpoint(http, issuer, insecure, |metadata| metadata.token_endpoint).await
}

async fn endpoint(
    http: &reqwest::Client,
    issuer: &str,
    insecure: bool,
    field: fn(Metadata) -> Option<String>,
) -> Option<Url> {
    issuer_metadata(http, issuer, |metadata: Metadata| {
        let endpoint = field(metadata)
            .and_then(|uri| Url::parse(&uri).ok())
            .ok_or("names no such endpoint")?;
        if !trusted_transport(&endpoint, insecure) {
            tracing::warn!(%endpoint, "an endpoint in issuer metadata is not https; ignored");
            return Err("names an endpoint that is not https".to_owned());
        }
        Ok(endpoint)
    })
    .await
    .ok()
}

/// A metadata document is a few kilobytes; anything much larger is not one.
const MAX_METADATA_BYTES: usize = 64 * 1024;

/// The JSON document at `url`: asked for as JSON, within 5 s, answered with success, at most
/// 64 KiB; else why not.
pub async fn fetch_document<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &Url,
) -> Result<T, String> {
    let response = http
        .get(url.clone())
        .timeout(Duration::from_secs(5))
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|error| portcullis_core::error_chain(&error))?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status().as_u16()));
    }
    let body = crate::introspect::read_bounded(response, MAX_METADATA_BYTES)
        .await
        .ok_or("the document is too large or broke off")?;
    serde_json::from_slice(&body).map_err(|error| format!("not the expected document: {error}"))
}

/// What `usable` makes of `issuer`'s metadata: the first document of [`metadata_urls`] that
/// answers (64 KiB at most), names `issuer` itself (RFC 8414 §3.3: a document for another
/// issuer is ignored, not trusted) and that `usable` accepts; else why none was.
pub async fn issuer_metadata<T: serde::de::DeserializeOwned, U>(
    http: &reqwest::Client,
    issuer: &str,
    usable: impl Fn(T) -> Result<U, String>,
) -> Result<U, String> {
    let issuer_url = Url::parse(issuer).map_err(|error| format!("issuer `{issuer}`: {error}"))?;
    let mut last = String::from("no metadata document");
    for url in metadata_urls(&issuer_url) {
        let document: serde_json::Value = match fetch_document(http, &url).await {
            Ok(document) => document,
            Err(reason) => {
                last = format!("{url}: {reason}");
                continue;
            }
        };
        if document.get("issuer").and_then(serde_json::Value::as_str) != Some(issuer) {
            tracing::warn!(%url, "authorization server metadata names another issuer; ignored");
            last = format!("{url} names another issuer");
            continue;
        }
        match serde_json::from_value(document)
            .map_err(|error| error.to_string())
            .and_then(&usable)
        {
            Ok(used) => return Ok(used),
            Err(reason) => last = format!("{url}: {reason}"),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(issuer: &str) -> Vec<String> {
        metadata_urls(&Url::parse(issuer).unwrap())
            .iter()
            .map(Url::to_string)
            .collect()
    }

    #[test]
    fn keys_come_over_https_or_from_loopback() {
        let trusted = |url: &str, insecure| trusted_transport(&Url::parse(url).unwrap(), insecure);
        assert!(trusted("https://as.example/jwks", false));
        assert!(trusted("http://127.0.0.1:8080/jwks", false));
        assert!(trusted("http://[::1]/jwks", false));
        assert!(trusted("http://localhost/jwks", false));
        assert!(!trusted("http://as.example/jwks", false));
        assert!(!trusted("http://127.0.0.1.evil.example/jwks", false));
        assert!(!trusted("ftp://as.example/jwks", true));
        assert!(trusted("http://as.example/jwks", true));
    }

    #[test]
    fn issuers_without_a_path_try_oauth_then_oidc() {
        assert_eq!(
            urls("https://as.example"),
            [
                "https://as.example/.well-known/oauth-authorization-server",
                "https://as.example/.well-known/openid-configuration"
            ]
        );
    }

    #[test]
    fn issuers_with_a_path_insert_it_then_append_it() {
        assert_eq!(
            urls("https://as.example/tenant1/"),
            [
                "https://as.example/.well-known/oauth-authorization-server/tenant1",
                "https://as.example/.well-known/openid-configuration/tenant1",
                "https://as.example/tenant1/.well-known/openid-configuration"
            ]
        );
    }
}
