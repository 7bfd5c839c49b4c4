//! No token passthrough: an HTTP upstream sees the gateway's own credential on every request
//! (relayed bytes and the typed proxy alike), and never the caller's token.

use std::sync::{Arc, Mutex};

use axum::{Router, body::Body, extract::State, response::Response};
use portcullis_e2e::{Carried, HttpFixture, TestGateway, recording_proxy, stateless_rpc};
use serde_json::json;

use crate::authn::{ISSUER, jwks};

/// The `Authorization` of every request the proxy carried (`<none>` when it had none).
fn authorizations(carried: &Carried) -> Vec<String> {
    carried
        .lock()
        .unwrap()
        .iter()
        .map(|(headers, _)| authorization(headers))
        .collect()
}

/// The `Authorization` of every POST that carried an answer (to a question the upstream asked).
fn answers(carried: &Carried) -> Vec<String> {
    carried
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, body)| {
            let message: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            message.get("method").is_none()
                && (message.get("result").is_some() || message.get("error").is_some())
        })
        .map(|(headers, _)| authorization(headers))
        .collect()
}

fn authorization(headers: &http::HeaderMap) -> String {
    headers
        .get("authorization")
        .map_or_else(|| "<none>".to_owned(), |v| v.to_str().unwrap().to_owned())
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
    let seen = authorizations(&seen);
    assert!(seen.len() >= 3, "{seen:?}");
    for authorization in &seen {
        assert_eq!(authorization, "Bearer gateway-secret-123");
        assert!(!authorization.contains(&token));
    }
    let _ = std::fs::remove_file(secret);
}

/// A token endpoint: the gateway's own token for client credentials; for a token exchange, a
/// token naming the subject of the (unverified, test) subject token and a serial number;
/// `refused` is refused (`invalid_grant`), `outage` gets a 503.
async fn token_endpoint() -> (String, Arc<Mutex<Vec<String>>>) {
    let issued: Arc<Mutex<Vec<String>>> = Arc::default();
    let app = Router::new()
        .route(
            "/token",
            axum::routing::post(|State(issued): State<Arc<Mutex<Vec<String>>>>, body: String| async move {
                let form: std::collections::HashMap<String, String> = body
                    .split('&')
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(key, value)| (key.to_owned(), percent_decode(value)))
                    .collect();
                let json = |status: u16, body: serde_json::Value| {
                    Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(Body::from(body.to_string()))
                        .unwrap()
                };
                if form.get("grant_type").map(String::as_str) == Some("client_credentials") {
                    return json(200, json!({"access_token": "own-token", "token_type": "Bearer", "expires_in": 600}));
                }
                assert_eq!(form["resource"], "https://upstream.example/mcp");
                let payload = form["subject_token"].split('.').nth(1).unwrap().to_owned();
                let payload: serde_json::Value = serde_json::from_slice(
                    &base64_url_decode(&payload),
                )
                .unwrap();
                let subject = payload["sub"].as_str().unwrap().to_owned();
                match subject.as_str() {
                    "refused" => json(400, json!({"error": "invalid_grant"})),
                    "outage" => json(503, json!({})),
                    _ => {
                        let mut issued = issued.lock().unwrap();
                        let token = format!("exchanged-{subject}-{}", issued.len() + 1);
                        issued.push(token.clone());
                        json(200, json!({"access_token": token, "token_type": "Bearer",
                            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                            "expires_in": 600}))
                    }
                }
            }),
        )
        .with_state(issued.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, issued)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

fn base64_url_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

/// A gateway in front of `proxy` with `credentials = "token-exchange"` at `token_url`,
/// recording to `dir/audit.jsonl`; `upstream` adds lines to the upstream's table.
fn exchange_config(
    dir: &std::path::Path,
    jwks_uri: &str,
    proxy: &str,
    token_url: &str,
    upstream: &str,
) -> String {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("secret"), "exchange-secret\n").unwrap();
    let audit = dir.join("audit.jsonl");
    let _ = std::fs::remove_file(&audit);
    format!(
        "[auth]\npublic_url = \"http://127.0.0.1:8080/mcp\"\n\n\
         [policy]\ncedar = \"permit (principal, action, resource);\"\n\n\
         [[auth.issuer]]\nissuer = \"{ISSUER}\"\njwks_uri = \"{jwks_uri}\"\n\n\
         [audit]\njsonl = {audit:?}\n\n\
         [[upstream]]\nname = \"fixture\"\nurl = \"{proxy}\"\ncredentials = \"token-exchange\"\n{upstream}\n\
         [upstream.token_exchange]\ntoken_endpoint = \"{token_url}\"\nclient_id = \"portcullis\"\n\
         client_secret_file = {:?}\nresource = \"https://upstream.example/mcp\"\n\
         subject_issuers = [\"{ISSUER}\"]\n",
        dir.join("secret")
    )
}

// An exchanged token is for its upstream only: another upstream behind the same gateway,
// called by the same caller in the same breath, sees none.
#[tokio::test]
async fn an_exchanged_token_never_reaches_another_upstream() {
    let (exchanging, plain) = (HttpFixture::start().await, HttpFixture::start().await);
    let (proxy, seen) = recording_proxy(exchanging.url.clone()).await;
    let (other, other_seen) = recording_proxy(plain.url.clone()).await;
    let (token_url, _) = token_endpoint().await;
    let (issuer, jwks_uri) = jwks().await;
    let dir = std::env::temp_dir().join(format!("token-exchange-two-{}", std::process::id()));
    let config = format!(
        "{}\n[[upstream]]\nname = \"plain\"\nurl = \"{other}\"\n",
        exchange_config(&dir, &jwks_uri, &proxy, &token_url, "")
    );
    let gateway = TestGateway::spawn(&config).await;
    let token = issuer.token_with(json!({"sub": "user-42", "aud": "http://127.0.0.1:8080/mcp"}));
    for name in [
        "fixture__fixture_echo",
        "plain__fixture_echo",
        "fixture__fixture_echo",
    ] {
        let echo = json!({"name": name, "arguments": {"text": "hi"}});
        let (status, text) =
            stateless_rpc(&gateway.url, Some(&token), "tools/call", echo, json!({})).await;
        assert!(
            status == 200 && text.contains("\"hi\""),
            "{name}: {status} {text}"
        );
    }
    let seen = authorizations(&seen);
    assert!(
        seen.iter().any(|a| a == "Bearer exchanged-user-42-1"),
        "{seen:?}"
    );
    let other_seen = authorizations(&other_seen);
    assert!(!other_seen.is_empty());
    assert!(other_seen.iter().all(|a| a == "<none>"), "{other_seen:?}");
    let _ = std::fs::remove_dir_all(dir);
}

// See: the review of token exchange. What the gateway sends about a caller's request on its
// own (its answer to the upstream's question) carried the gateway's token, not the caller's.
#[tokio::test]
async fn an_answer_to_the_upstreams_question_carries_the_callers_exchanged_token() {
    let fixture = HttpFixture::start().await;
    let (proxy, recorded) = recording_proxy(fixture.url.clone()).await;
    let (token_url, _) = token_endpoint().await;
    let (issuer, jwks_uri) = jwks().await;
    let dir = std::env::temp_dir().join(format!("token-exchange-answer-{}", std::process::id()));
    let config = exchange_config(&dir, &jwks_uri, &proxy, &token_url, "era = \"2025-11-25\"");
    let gateway = TestGateway::spawn(&config).await;
    let token = issuer.token_with(json!({"sub": "user-42", "aud": "http://127.0.0.1:8080/mcp"}));
    let capable = json!({"elicitation": {"form": {}}});
    let asked = json!({"name": "test_elicitation", "arguments": {"message": "Who are you?"}});
    let (_, first) = stateless_rpc(
        &gateway.url,
        Some(&token),
        "tools/call",
        asked.clone(),
        capable.clone(),
    )
    .await;
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    let mut answered = asked;
    answered["requestState"] = first["result"]["requestState"].clone();
    answered["inputResponses"] = json!({"upstream": {"action": "accept",
        "content": {"username": "ada", "email": "ada@example.com"}}});
    let (_, done) =
        stateless_rpc(&gateway.url, Some(&token), "tools/call", answered, capable).await;
    assert!(done.contains("ada@example.com"), "{done}");
    let answers = answers(&recorded);
    assert!(!answers.is_empty(), "the answer went upstream");
    assert!(
        answers.iter().all(|a| a == "Bearer exchanged-user-42-1"),
        "{answers:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn token_exchange_gives_each_caller_its_own_token_and_refusals_are_denials() {
    let fixture = HttpFixture::start().await;
    let (proxy, seen) = recording_proxy(fixture.url.clone()).await;
    let (token_url, issued) = token_endpoint().await;
    let (issuer, jwks_uri) = jwks().await;
    let dir = std::env::temp_dir().join(format!("token-exchange-{}", std::process::id()));
    let audit = dir.join("audit.jsonl");
    let config = exchange_config(&dir, &jwks_uri, &proxy, &token_url, "");
    let gateway = TestGateway::spawn(&config).await;
    let tokens: std::collections::HashMap<&str, String> =
        ["user-42", "user-7", "refused", "outage"]
            .into_iter()
            .map(|subject| {
                let claims = json!({"sub": subject, "aud": "http://127.0.0.1:8080/mcp"});
                (subject, issuer.token_with(claims))
            })
            .collect();
    let call = |subject: &str| {
        let echo = json!({"name": "fixture_echo", "arguments": {"text": "hi"}});
        stateless_rpc(
            &gateway.url,
            Some(&tokens[subject]),
            "tools/call",
            echo,
            json!({}),
        )
    };
    let seen_now = || authorizations(&seen);
    assert!(
        seen_now().iter().all(|a| a == "Bearer own-token") && !seen_now().is_empty(),
        "the gateway's own requests carry its own token: {:?}",
        seen_now()
    );
    let before = seen_now().len();
    for subject in ["user-42", "user-7", "user-42"] {
        let (status, text) = call(subject).await;
        assert_eq!(status, 200);
        assert!(text.contains("\"hi\""), "{text}");
    }
    // The gateway's own requests (learning the tool list) may come in between.
    let sent: Vec<String> = seen_now()[before..]
        .iter()
        .filter(|a| *a != "Bearer own-token")
        .cloned()
        .collect();
    assert_eq!(
        sent,
        [
            "Bearer exchanged-user-42-1",
            "Bearer exchanged-user-7-2",
            "Bearer exchanged-user-42-1"
        ],
        "each caller's calls carry its own exchanged token, kept between calls"
    );
    assert_eq!(issued.lock().unwrap().len(), 2);

    let (status, text) = call("refused").await;
    assert_eq!(status, 200);
    assert!(text.contains("-31001") && text.contains("denied"), "{text}");
    let (status, text) = call("outage").await;
    assert_eq!(status, 503, "an unreachable token service is 503-class");
    assert!(
        text.contains("-32603") && !text.contains("outage"),
        "{text}"
    );
    assert!(
        seen_now()
            .iter()
            .all(|a| a == "Bearer own-token" || a.starts_with("Bearer exchanged-user-")),
        "nothing was sent for the refused callers: {:?}",
        seen_now()
    );

    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&audit)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["record"].clone())
        .collect();
    let of = |subject: &str| {
        records
            .iter()
            .filter(|r| r["subject"] == subject && r["outcome"].is_string())
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(of("refused")[0]["decision"], "deny");
    assert_eq!(
        of("refused")[0]["reasons"],
        json!(["upstream_credential_refused"])
    );
    assert_eq!(of("outage")[0]["decision"], "error");
    assert_eq!(
        of("outage")[0]["reasons"],
        json!(["upstream_credential_unavailable"])
    );
    assert!(
        of("user-42")
            .iter()
            .all(|r| r["credential"] == "token-exchange" && r["outcome"] == "ok")
    );
    let written = std::fs::read_to_string(&audit).unwrap();
    assert!(!written.contains("exchanged-") && !written.contains("own-token"));
    let _ = std::fs::remove_dir_all(dir);
}
