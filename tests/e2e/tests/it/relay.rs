use portcullis_e2e::{Era, HttpFixture, TestClient, TestGateway, connect};
use rmcp::model::CallToolRequestParams;
use serde_json::json;

use crate::{first_text, http_upstream, stdio_upstream};

fn call(name: &str, arguments: serde_json::Value) -> CallToolRequestParams {
    let mut params = CallToolRequestParams::new(name.to_owned());
    params.arguments = arguments.as_object().cloned();
    params
}

async fn echo_round_trip(gateway: &TestGateway, era: Era) {
    let client = connect(&gateway.url, era, TestClient::default()).await;
    let tools = client
        .list_all_tools()
        .await
        .expect("tools/list through the gateway");
    let names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    assert!(
        names.contains(&"fixture_echo".to_owned()),
        "{era:?}: {names:?}"
    );
    assert!(
        names.contains(&"test_simple_text".to_owned()),
        "{era:?}: {names:?}"
    );
    let result = client
        .call_tool(call("fixture_echo", json!({"text": "through the gate"})))
        .await
        .expect("call");
    assert_eq!(first_text(&result), "through the gate", "{era:?}");
    let simple = client
        .call_tool(call("test_simple_text", json!({})))
        .await
        .expect("call");
    assert_eq!(
        first_text(&simple),
        "This is a simple text response for testing.",
        "{era:?}"
    );
    client.cancel().await.expect("close client");
}

#[tokio::test]
async fn clients_of_both_eras_reach_a_stdio_upstream() {
    let gateway = TestGateway::spawn(&stdio_upstream("fixture")).await;
    for era in [Era::Sessions, Era::Stateless] {
        echo_round_trip(&gateway, era).await;
    }
}

#[tokio::test]
async fn clients_of_both_eras_reach_an_http_upstream() {
    let fixture = HttpFixture::start().await;
    let gateway = TestGateway::spawn(&http_upstream("fixture", &fixture)).await;
    for era in [Era::Sessions, Era::Stateless] {
        echo_round_trip(&gateway, era).await;
    }
}

#[tokio::test]
async fn clients_of_both_eras_reach_a_session_era_upstream() {
    let fixture = HttpFixture::start().await;
    let toml = format!(
        "{}era = \"2025-11-25\"\n",
        http_upstream("fixture", &fixture)
    );
    let gateway = TestGateway::spawn(&toml).await;
    for era in [Era::Sessions, Era::Stateless] {
        echo_round_trip(&gateway, era).await;
    }
}

async fn elicitation_and_sampling(upstream: &str) {
    let gateway = TestGateway::spawn(upstream).await;
    for era in [Era::Sessions, Era::Stateless] {
        let client = TestClient::default();
        let asked = client.elicitations.clone();
        let running = connect(&gateway.url, era, client).await;
        let result = running
            .call_tool(call(
                "test_elicitation",
                json!({"message": "Please confirm through the gate"}),
            ))
            .await
            .expect("elicitation call");
        let text = serde_json::to_string(&result).expect("json");
        assert!(
            text.contains("accept"),
            "{era:?} elicitation result: {text}"
        );
        assert_eq!(
            asked.lock().expect("lock").as_slice(),
            ["Please confirm through the gate"],
            "{era:?}"
        );
        let sampled = running
            .call_tool(call("test_sampling", json!({"prompt": "say hi"})))
            .await
            .expect("sampling call");
        let text = serde_json::to_string(&sampled).expect("json");
        assert!(
            text.contains("sampled by e2e"),
            "{era:?} sampling result: {text}"
        );
        running.cancel().await.expect("close client");
    }
}

#[tokio::test]
async fn elicitation_and_sampling_round_trip_over_stdio() {
    elicitation_and_sampling(&stdio_upstream("fixture")).await;
}

#[tokio::test]
async fn elicitation_and_sampling_round_trip_over_http() {
    let fixture = HttpFixture::start().await;
    elicitation_and_sampling(&http_upstream("fixture", &fixture)).await;
}

#[tokio::test]
async fn progress_and_logs_reach_the_calling_session() {
    let gateway = TestGateway::spawn(&stdio_upstream("fixture")).await;
    let client = TestClient::default();
    let progress = client.progress.clone();
    let logs = client.logs.clone();
    let running = connect(&gateway.url, Era::Sessions, client).await;
    running
        .peer()
        .call_tool(call("test_tool_with_progress", json!({})))
        .await
        .expect("progress call");
    running
        .call_tool(call("test_tool_with_logging", json!({})))
        .await
        .expect("logging call");
    // Notifications may trail the response on another stream; give them a moment.
    for _ in 0..50 {
        if progress.lock().expect("lock").len() >= 3 && logs.lock().expect("lock").len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let progress: Vec<f64> = progress
        .lock()
        .expect("lock")
        .iter()
        .map(|p| p.progress)
        .collect();
    assert_eq!(progress, [0.0, 50.0, 100.0], "progress relayed in order");
    assert!(
        logs.lock().expect("lock").len() >= 3,
        "log notifications relayed"
    );
    running.cancel().await.expect("close client");
}

const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"raw","version":"0"},"io.modelcontextprotocol/clientCapabilities":{}}"#;

fn stateless_post(
    http: &reqwest::Client,
    url: &str,
    method: &str,
    name: Option<&str>,
    body: String,
) -> reqwest::RequestBuilder {
    let mut request = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    if let Some(name) = name {
        request = request.header("mcp-name", name);
    }
    request.body(body)
}

#[tokio::test]
async fn stateless_requests_are_relayed_and_contradicting_headers_are_still_rejected() {
    let fixture = HttpFixture::start().await;
    let gateway = TestGateway::spawn(&http_upstream("fixture", &fixture)).await;
    let http = reqwest::Client::new();
    let call = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"fixture_echo","arguments":{{"text":"relayed"}},{META}}}}}"#
    );
    let response = stateless_post(
        &http,
        &gateway.url,
        "tools/call",
        Some("fixture_echo"),
        call.clone(),
    )
    .send()
    .await
    .expect("send");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("body");
    assert!(
        text.contains(r#""text":"relayed""#) && text.contains(r#""id":7"#),
        "{text}"
    );

    // The header names another tool than the body: rmcp's validation answers, as without relay.
    let response = stateless_post(
        &http,
        &gateway.url,
        "tools/call",
        Some("test_simple_text"),
        call,
    )
    .send()
    .await
    .expect("send");
    assert_eq!(
        response.status(),
        400,
        "a header that contradicts the body is rejected"
    );
}
