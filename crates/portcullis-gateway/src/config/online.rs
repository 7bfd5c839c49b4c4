//! `portcullis check --online`: what a configuration names out there, reached as `serve`
//! would reach it, without changing anything: each issuer's metadata and keys, each
//! PostgreSQL database, each HTTP upstream's address and the token endpoint it is asked
//! tokens from.

use std::time::Duration;

use super::Config;

/// How long one look may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Each thing looked at, and what was found: `Ok` with a word on it, or why not.
pub async fn probe(config: &Config) -> Vec<(String, Result<String, String>)> {
    let mut found = Vec::new();
    if let Some(auth) = &config.auth {
        let http = crate::access::issuer_client(auth.insecure_issuers);
        for issuer in &auth.issuers {
            found.push((
                format!("issuer {}", issuer.issuer),
                issuer_keys(
                    &http,
                    &issuer.issuer,
                    issuer.jwks_uri.as_ref(),
                    auth.insecure_issuers,
                )
                .await,
            ));
        }
    }
    let databases = [
        (
            "audit trail",
            config
                .audit
                .as_ref()
                .and_then(|audit| audit.postgres.clone()),
        ),
        ("shared approval state", config.cluster.postgres.clone()),
    ];
    for (what, url) in databases {
        if let Some(url) = url {
            found.push((format!("PostgreSQL ({what})"), database(&url).await));
        }
    }
    for (index, (spec, _)) in config.upstreams.iter().enumerate() {
        if let portcullis_mcp::UpstreamTransport::Http { url, .. } = &spec.transport {
            found.push((format!("upstream {}", spec.name), address(url).await));
        }
        if let Some(super::UpstreamCredentials::TokenExchange(exchange)) =
            config.upstream_credentials.get(index)
        {
            found.push((
                format!("token endpoint of upstream {}", spec.name),
                token_endpoint(exchange).await,
            ));
        }
    }
    found
}

/// The token endpoint a token exchange uses, found as `serve` finds it, and reachable; no
/// token is asked for.
async fn token_endpoint(exchange: &super::TokenExchange) -> Result<String, String> {
    let endpoint = match &exchange.endpoint {
        super::TokenEndpoint::Url(url) => url.clone(),
        super::TokenEndpoint::Issuer(issuer) => {
            let http = crate::access::issuer_client(exchange.insecure);
            portcullis_authn::token_endpoint(&http, issuer, exchange.insecure)
                .await
                .ok_or("no usable metadata document (the issuer's own, naming an https token_endpoint)")?
        }
    };
    // Shown without what a URL may carry besides where it is (userinfo, a query).
    let shown = format!(
        "{}{}",
        endpoint.origin().ascii_serialization(),
        endpoint.path()
    );
    address(&endpoint)
        .await
        .map(|reached| format!("{shown}: {reached}"))
}

async fn issuer_keys(
    http: &reqwest::Client,
    issuer: &str,
    jwks_uri: Option<&url::Url>,
    insecure: bool,
) -> Result<String, String> {
    // Discovered exactly as `serve` discovers it (issuer named, https endpoints).
    let jwks = match jwks_uri {
        Some(uri) => uri.clone(),
        None => portcullis_authn::jwks_uri(http, issuer, insecure)
            .await
            .ok_or("no usable metadata document (the issuer's own, naming an https jwks_uri)")?,
    };
    let keys = get_json(http, jwks.as_str()).await?;
    let count = keys["keys"].as_array().map_or(0, Vec::len);
    if count == 0 {
        return Err(format!("{jwks}: no keys"));
    }
    Ok(format!("{count} key(s) at {jwks}"))
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<serde_json::Value, String> {
    let answer = http
        .get(url)
        .send()
        .await
        .map_err(|error| format!("{url}: {error}"))?;
    if !answer.status().is_success() {
        return Err(format!("{url}: HTTP {}", answer.status()));
    }
    answer
        .json()
        .await
        .map_err(|error| format!("{url}: {error}"))
}

async fn database(url: &str) -> Result<String, String> {
    // A server that takes the login and then never answers must not hold the check forever.
    tokio::time::timeout(TIMEOUT * 2, reach_database(url))
        .await
        .map_err(|_| "no answer in time".to_owned())?
}

async fn reach_database(url: &str) -> Result<String, String> {
    let mut config: tokio_postgres::Config = url.parse().map_err(|error| format!("{error}"))?;
    let transport = portcullis_audit::pg_tls::transport(url, true)?;
    config
        .ssl_mode(portcullis_audit::pg_tls::ssl_mode(
            config.get_ssl_mode(),
            transport,
        ))
        .connect_timeout(TIMEOUT);
    let tls = portcullis_audit::pg_tls::Tls::new()?;
    let (client, connection) = tokio::time::timeout(TIMEOUT, config.connect(tls))
        .await
        .map_err(|_| "no answer in time".to_owned())?
        // The error names the host, never the password.
        .map_err(|error| error.to_string())?;
    let running = tokio::spawn(connection);
    let answered = client
        .simple_query("SELECT 1")
        .await
        .map(|_| "answers".to_owned())
        .map_err(|error| error.to_string());
    drop(client);
    let _ = running.await;
    answered
}

async fn address(url: &url::Url) -> Result<String, String> {
    let host = url.host_str().ok_or("no host")?.to_owned();
    let port = url.port_or_known_default().ok_or("no port")?;
    tokio::time::timeout(
        TIMEOUT,
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| format!("{host}:{port}: no answer in time"))?
    .map(|_| format!("{host}:{port} accepts connections"))
    .map_err(|error| format!("{host}:{port}: {error}"))
}
