use portcullis_e2e::TestGateway;
use reqwest::StatusCode;

use crate::stdio_upstream;

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

fn post(http: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
    http.post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
}

#[tokio::test]
async fn a_foreign_origin_is_refused() {
    let gateway = TestGateway::spawn(&stdio_upstream("fixture")).await;
    let http = reqwest::Client::new();
    let response = post(&http, &gateway.url)
        .header("origin", "https://evil.example")
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = post(&http, &gateway.url)
        .header("origin", "http://localhost:5173")
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "a loopback origin is fine"
    );
}

#[tokio::test]
async fn a_foreign_host_is_refused() {
    let gateway = TestGateway::spawn(&stdio_upstream("fixture")).await;
    let http = reqwest::Client::new();
    let response = post(&http, &gateway.url)
        .header("host", "rebind.evil.example")
        .body(INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

// See: issue 18. An absolute request line names a host too (RFC 9112 §3.2.2 says it wins over
// `Host`); only `Host` was checked, so a request could pass as one host and name another.
#[tokio::test]
async fn an_absolute_request_line_naming_another_host_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gateway = TestGateway::spawn(&stdio_upstream("fixture")).await;
    let address = gateway.base.trim_start_matches("http://").to_owned();
    let send = |target: String| {
        let address = address.clone();
        async move {
            let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
            let request = format!(
                "POST {target} HTTP/1.1\r\nHost: {address}\r\ncontent-type: application/json\r\n\
                 accept: application/json, text/event-stream\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{INIT}",
                INIT.len()
            );
            socket.write_all(request.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            socket.read_to_end(&mut answer).await.unwrap();
            String::from_utf8_lossy(&answer)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        }
    };
    let ours = send(format!("http://{address}/mcp")).await;
    assert!(ours.contains(" 200 "), "{ours}");
    let theirs = send("http://rebind.evil.example/mcp".to_owned()).await;
    assert!(theirs.contains(" 403 "), "{theirs}");
}

#[tokio::test]
async fn an_oversized_body_gets_413() {
    let toml = format!(
        "[server]\nmax_body_bytes = 1024\n{}",
        stdio_upstream("fixture")
    );
    let gateway = TestGateway::spawn(&toml).await;
    let http = reqwest::Client::new();
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#,
        "x".repeat(4096)
    );
    let response = post(&http, &gateway.url).body(big).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_terminated_session_gets_404() {
    let gateway = TestGateway::spawn(&stdio_upstream("fixture")).await;
    let http = reqwest::Client::new();
    let response = post(&http, &gateway.url).body(INIT).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let session = response
        .headers()
        .get("mcp-session-id")
        .expect("session id")
        .to_str()
        .unwrap()
        .to_owned();
    let _ = response.text().await;
    let deleted = http
        .delete(&gateway.url)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert!(
        deleted.status().is_success(),
        "DELETE ends the session: {}",
        deleted.status()
    );
    let after = post(&http, &gateway.url)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .body(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn shutdown_lets_an_inflight_call_finish() {
    let gateway = TestGateway::spawn(&stdio_upstream("fixture")).await;
    let client = portcullis_e2e::connect(
        &gateway.url,
        portcullis_e2e::Era::Stateless,
        Default::default(),
    )
    .await;
    let mut slow = rmcp::model::CallToolRequestParams::new("fixture_slow");
    slow.arguments = serde_json::json!({"ms": 800}).as_object().cloned();
    let peer = client.peer().clone();
    let call = tokio::spawn(async move { peer.call_tool(slow).await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    gateway.shutdown().await;
    let result = call
        .await
        .expect("join")
        .expect("the in-flight call completes during shutdown");
    assert_eq!(crate::first_text(&result), "done");
}

#[tokio::test]
async fn sessions_beyond_the_connection_limit_share_and_closed_sessions_give_theirs_back() {
    let toml = format!(
        "[server]\nmax_session_connections = 1\n{}",
        stdio_upstream("fixture")
    );
    let gateway = TestGateway::spawn(&toml).await;
    let first = portcullis_e2e::connect(
        &gateway.url,
        portcullis_e2e::Era::Sessions,
        Default::default(),
    )
    .await;
    let second = portcullis_e2e::connect(
        &gateway.url,
        portcullis_e2e::Era::Sessions,
        Default::default(),
    )
    .await;
    for client in [&first, &second] {
        let tools = client
            .list_all_tools()
            .await
            .expect("both sessions are served");
        assert!(tools.iter().any(|t| t.name == "fixture_echo"));
    }
    assert_eq!(
        gateway.gateway.session_connections_in_use(),
        1,
        "only one session got its own connection"
    );
    first.cancel().await.expect("close first");
    second.cancel().await.expect("close second");
    let mut in_use = 1;
    for _ in 0..100 {
        in_use = gateway.gateway.session_connections_in_use();
        if in_use == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        in_use, 0,
        "a closed session releases its upstream connection"
    );
}
