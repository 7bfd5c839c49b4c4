//! No token passthrough: an HTTP upstream sees the gateway's own credential on every request
//! (relayed bytes and the typed proxy alike), and never the caller's token.

use std::sync::{Arc, Mutex};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    response::Response,
};
use portcullis_e2e::{HttpFixture, TestGateway};
use serde_json::json;

use crate::authn::{ISSUER, jwks};

type Seen = Arc<Mutex<Vec<String>>>;

/// A pass-through in front of the fixture that writes down each request's `Authorization`.
async fn recording_proxy(upstream: String) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new().fallback(forward).with_state((
        upstream,
        seen.clone(),
        reqwest::Client::new(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

async fn forward(
    State((upstream, seen, http)): State<(String, Seen, reqwest::Client)>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let authorization = parts
        .headers
        .get("authorization")
        .map_or_else(|| "<none>".to_owned(), |v| v.to_str().unwrap().to_owned());
    seen.lock().unwrap().push(authorization);
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let mut outgoing = http.request(parts.method, &upstream).body(body);
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "host" | "content-length" | "authorization") {
            outgoing = outgoing.header(name.as_str(), value.as_bytes());
        }
    }
    let answer = outgoing.send().await.unwrap();
    let mut response = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        response = response.header(name.as_str(), value.as_bytes());
    }
    response
        .body(Body::from_stream(answer.bytes_stream()))
        .unwrap()
}

#[tokio::test]
async fn an_http_upstream_sees_the_gateways_credential_never_the_callers_token() {
    let fixture = HttpFixture::start().await;
    let (proxy, seen) = recording_proxy(fixture.url.clone()).await;
    let (issuer, jwks_uri) = jwks().await;
    let secret = std::env::temp_dir().join(format!("upstream-credential-{}", std::process::id()));
    std::fs::write(&secret, "gateway-secret-123\n").unwrap();
    let config = format!(
        "[auth]\npublic_url = \"http://127.0.0.1:8080/mcp\"\n\n\
         [policy]\ncedar = \"permit (principal, action, resource);\"\n\n\
         [[auth.issuer]]\nissuer = \"{ISSUER}\"\njwks_uri = \"{jwks_uri}\"\n\n\
         [[upstream]]\nname = \"fixture\"\nurl = \"{proxy}\"\ncredential_file = {secret:?}\n"
    );
    let gateway = TestGateway::spawn(&config).await;
    let token = issuer.token_with(json!({"sub": "user-42", "aud": "http://127.0.0.1:8080/mcp"}));
    let http = reqwest::Client::new();
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "fixture_echo", "arguments": {"text": "hi"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}}});
    // Stateless: the byte relay's plain-HTTP client.
    let answer = http
        .post(&gateway.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "fixture_echo")
        .bearer_auth(&token)
        .body(call.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(answer.contains("\"hi\""), "{answer}");
    // A session: the typed proxy's upstream session over reqwest.
    let client = portcullis_e2e::connect_as(
        &gateway.url,
        portcullis_e2e::Era::Sessions,
        portcullis_e2e::TestClient::default(),
        Some(&token),
    )
    .await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|tool| tool.name == "fixture_echo"));
    client.cancel().await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 3, "{seen:?}");
    for authorization in &seen {
        assert_eq!(authorization, "Bearer gateway-secret-123");
        assert!(!authorization.contains(&token));
    }
    let _ = std::fs::remove_file(secret);
}
