//! Authentication at the gateway: every request carries a token that is verified, tokenless
//! callers learn where to get one, and a session belongs to whoever opened it.

use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{Json, Router, routing::get};
use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
use portcullis_e2e::TestGateway;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::stdio_upstream;

pub(crate) const ISSUER: &str = "https://issuer.example";
const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;
const LIST: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;

pub(crate) struct Issuer {
    key: EncodingKey,
}

impl Issuer {
    fn token(&self, subject: &str, audience: &str) -> String {
        self.token_with(json!({"sub": subject, "aud": audience, "scope": "tools:read"}))
    }

    /// A token with `claims`, plus `iss` and a near `exp`.
    pub(crate) fn token_with(&self, mut claims: Value) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        claims["iss"] = json!(ISSUER);
        claims["exp"] = json!(now + 300);
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("at+jwt".into());
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

/// A JWKS on a loopback socket, and the issuer whose key it publishes (`ISSUER`).
pub(crate) async fn jwks() -> (Issuer, String) {
    let key = EncodingKey::from_ec_pem(include_bytes!(
        "../../../../crates/portcullis-authn/tests/keys/es256.pem"
    ))
    .unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some("k1".into());
    let set = Arc::new(json!({ "keys": [jwk] }));
    let app = Router::new().route(
        "/jwks",
        get(move || {
            let set = set.clone();
            async move { Json((*set).clone()) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (Issuer { key }, format!("http://{address}/jwks"))
}

fn auth_config(jwks_uri: &str) -> String {
    format!(
        "[auth]\npublic_url = \"http://127.0.0.1:8080/mcp\"\nresource_name = \"e2e\"\nscopes = [\"tools:read\"]\n\n[policy]\ncedar = \"permit (principal, action, resource);\"\n\n[[auth.issuer]]\nissuer = \"{ISSUER}\"\njwks_uri = \"{jwks_uri}\"\n\n{}",
        stdio_upstream("fixture")
    )
}

fn post(http: &reqwest::Client, url: &str, token: Option<&str>) -> reqwest::RequestBuilder {
    let request = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    match token {
        Some(token) => request.header("authorization", format!("Bearer {token}")),
        None => request,
    }
}

const METADATA_URL: &str = "http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp";

#[tokio::test]
async fn the_metadata_document_is_served_at_the_path_inserted_url_and_the_root() {
    let (_, jwks_uri) = jwks().await;
    let gateway = TestGateway::spawn(&auth_config(&jwks_uri)).await;
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let document: Value = reqwest::get(format!("{}{path}", gateway.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(document["resource"], "http://127.0.0.1:8080/mcp", "{path}");
        assert_eq!(document["authorization_servers"], json!([ISSUER]));
        assert_eq!(document["bearer_methods_supported"], json!(["header"]));
        assert_eq!(document["scopes_supported"], json!(["tools:read"]));
    }
}

#[tokio::test]
async fn requests_without_a_valid_token_get_the_right_challenge_and_never_pass() {
    let (issuer, jwks_uri) = jwks().await;
    let gateway = TestGateway::spawn(&auth_config(&jwks_uri)).await;
    let http = reqwest::Client::new();
    let missing = format!(r#"Bearer resource_metadata="{METADATA_URL}", scope="tools:read""#);
    let invalid = format!(r#"Bearer error="invalid_token", resource_metadata="{METADATA_URL}""#);
    let wrong_audience = issuer.token("user-42", "https://other.example/mcp");
    let huge = "a".repeat(64 * 1024);
    let cases: Vec<(&str, reqwest::RequestBuilder, &str)> = vec![
        ("no token", post(&http, &gateway.url, None), &missing),
        (
            "token in the query string only",
            post(
                &http,
                &format!(
                    "{}?access_token={}",
                    gateway.url,
                    issuer.token("user-42", "http://127.0.0.1:8080/mcp")
                ),
                None,
            ),
            &missing,
        ),
        (
            "malformed",
            post(&http, &gateway.url, Some("not-a-jwt")),
            &invalid,
        ),
        (
            "another resource's token",
            post(&http, &gateway.url, Some(&wrong_audience)),
            &invalid,
        ),
        (
            "basic credentials",
            post(&http, &gateway.url, None).header("authorization", "Basic dXNlcjpwYXNz"),
            &invalid,
        ),
        (
            "64 KiB token",
            post(&http, &gateway.url, Some(&huge)),
            &invalid,
        ),
    ];
    for (label, request, challenge) in cases {
        let response = request.body(INIT).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{label}");
        let header = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(header.as_deref(), Some(challenge), "{label}");
        assert!(
            response.headers().get("mcp-session-id").is_none(),
            "{label}: no session for a refused caller"
        );
    }
}

#[tokio::test]
async fn a_session_answers_only_the_caller_who_opened_it() {
    let (issuer, jwks_uri) = jwks().await;
    let gateway = TestGateway::spawn(&auth_config(&jwks_uri)).await;
    let http = reqwest::Client::new();
    let alice = issuer.token("alice", "http://127.0.0.1:8080/mcp");
    let mallory = issuer.token("mallory", "http://127.0.0.1:8080/mcp");
    let opened = post(&http, &gateway.url, Some(&alice))
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), StatusCode::OK);
    let session = opened.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = opened.text().await;
    let with_session = |token: &str| {
        post(&http, &gateway.url, Some(token))
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .body(LIST)
    };
    let stolen = with_session(&mallory).send().await.unwrap();
    assert_eq!(
        stolen.status(),
        StatusCode::NOT_FOUND,
        "another caller's session id is not found"
    );
    // Byte for byte what rmcp itself answers for a session that never existed (asked of an
    // open gateway, where nothing but rmcp decides), so a thief learns nothing.
    let open = TestGateway::spawn(&stdio_upstream("fixture")).await;
    let never = post(&http, &open.url, None)
        .header("mcp-session-id", "never-existed")
        .header("mcp-protocol-version", "2025-11-25")
        .body(LIST)
        .send()
        .await
        .unwrap();
    assert_eq!(never.status(), StatusCode::NOT_FOUND);
    let names = |response: &reqwest::Response| -> Vec<String> {
        let mut names: Vec<String> = response.headers().keys().map(|k| k.to_string()).collect();
        names.retain(|name| name != "date");
        names.sort();
        names
    };
    assert_eq!(
        names(&stolen),
        names(&never),
        "same headers as a session that never existed"
    );
    assert_eq!(
        stolen.text().await.unwrap(),
        never.text().await.unwrap(),
        "same body"
    );
    let own = with_session(&alice).send().await.unwrap();
    assert_eq!(own.status(), StatusCode::OK, "the owner keeps using it");
    assert!(own.text().await.unwrap().contains("fixture_echo"));
    let no_token = post(&http, &gateway.url, None)
        .header("mcp-session-id", &session)
        .body(LIST)
        .send()
        .await
        .unwrap();
    assert_eq!(
        no_token.status(),
        StatusCode::UNAUTHORIZED,
        "a session id is not a credential"
    );
}

#[tokio::test]
async fn an_unreachable_identity_provider_is_a_503_not_a_denial() {
    let (issuer, _) = jwks().await;
    let gateway = TestGateway::spawn(&auth_config("http://127.0.0.1:9/jwks")).await;
    let response = post(
        &reqwest::Client::new(),
        &gateway.url,
        Some(&issuer.token("alice", "http://127.0.0.1:8080/mcp")),
    )
    .body(INIT)
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["correlationId"]
            .as_str()
            .is_some_and(|id| id.starts_with("pc-")),
        "{body}"
    );
}

#[tokio::test]
async fn opaque_tokens_are_checked_by_introspection() {
    let (_, jwks_uri) = jwks().await;
    let app = Router::new().route(
        "/introspect",
        axum::routing::post(|body: String| async move {
            let active = body.contains("token=opaque-good");
            Json(if active {
                json!({"active": true, "aud": "http://127.0.0.1:8080/mcp", "sub": "svc-1", "client_id": "svc"})
            } else {
                json!({"active": false})
            })
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/introspect", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let secret = std::env::temp_dir().join(format!("portcullis-e2e-secret-{}", std::process::id()));
    std::fs::write(&secret, "s3cret\n").unwrap();
    let config = auth_config(&jwks_uri).replacen(
        "\n\n[[upstream]]",
        &format!(
            "\nintrospection_endpoint = \"{endpoint}\"\nclient_id = \"gateway\"\nclient_secret_file = {:?}\n\n[[upstream]]",
            secret.to_string_lossy()
        ),
        1,
    );
    let gateway = TestGateway::spawn(&config).await;
    let http = reqwest::Client::new();
    let good = post(&http, &gateway.url, Some("opaque-good"))
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(
        good.status(),
        StatusCode::OK,
        "an active opaque token for this resource passes"
    );
    let bad = post(&http, &gateway.url, Some("opaque-revoked"))
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(
        bad.status(),
        StatusCode::UNAUTHORIZED,
        "an inactive one is refused"
    );
    let _ = std::fs::remove_file(&secret);
}

#[tokio::test]
async fn tokens_never_reach_the_logs_even_at_trace_level() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

    let (issuer, jwks_uri) = jwks().await;
    let config =
        std::env::temp_dir().join(format!("portcullis-e2e-logs-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{}",
            auth_config(&jwks_uri)
        ),
    )
    .unwrap();
    let mut gateway =
        tokio::process::Command::new(portcullis_e2e::workspace_bin("portcullis", "portcullis"))
            .args(["serve", "--config", &config.to_string_lossy()])
            .env("PORTCULLIS_LOG", "trace")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
    let mut stdout = BufReader::new(gateway.stdout.take().unwrap()).lines();
    let url = stdout
        .next_line()
        .await
        .unwrap()
        .unwrap()
        .strip_prefix("listening ")
        .unwrap()
        .to_owned();
    let mut stderr = gateway.stderr.take().unwrap();
    let logs = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let http = reqwest::Client::new();
    let good = issuer.token("alice", "http://127.0.0.1:8080/mcp");
    let foreign = issuer.token("alice", "https://other.example/mcp");
    let tokens = [good.as_str(), foreign.as_str(), "opaque-and-secret-value"];
    for token in tokens {
        let _ = post(&http, &url, Some(token))
            .body(INIT)
            .send()
            .await
            .unwrap()
            .text()
            .await;
    }
    let pid = gateway.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(20), gateway.wait()).await;
    let logs = logs.await.unwrap();
    let _ = std::fs::remove_file(&config);
    assert!(
        logs.contains("token refused"),
        "the refusal is logged (with its reason)"
    );
    for token in tokens {
        // The signature part is what makes a token a credential; check each part anyway.
        for part in token.split('.').filter(|part| part.len() > 8) {
            assert!(!logs.contains(part), "a token part reached the logs");
        }
    }
}
