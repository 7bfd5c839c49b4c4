use std::time::Duration;

use portcullis_e2e::{Era, HttpFixture, TestClient, TestGateway, connect};
use rmcp::model::CallToolRequestParams;
use serde_json::json;

use crate::{first_text, http_upstream};

#[tokio::test]
async fn an_upstream_killed_mid_call_gives_a_clean_error_and_is_restarted() {
    let mut fixture = HttpFixture::start().await;
    let gateway = TestGateway::spawn(&http_upstream("fixture", &fixture)).await;
    let client = connect(&gateway.url, Era::Stateless, TestClient::default()).await;
    let mut slow = CallToolRequestParams::new("fixture_slow");
    slow.arguments = json!({"ms": 5000}).as_object().cloned();
    let call = tokio::spawn({
        let peer = client.peer().clone();
        async move { peer.call_tool(slow).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    fixture.kill().await;
    let outcome = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("answer in time")
        .expect("join");
    let error = outcome.expect_err("a call whose upstream died fails");
    let text = error.to_string();
    assert!(
        text.contains("upstream unavailable"),
        "clean JSON-RPC error expected, got: {text}"
    );
    client.cancel().await.expect("close");
    drop(gateway);
}

#[tokio::test]
async fn a_stdio_upstream_that_exits_is_restarted_and_serves_again() {
    let toml = format!(
        "[[upstream]]\nname = \"fixture\"\ncommand = {:?}\nargs = [\"--stdio\"]\n",
        portcullis_e2e::fixture_bin().to_string_lossy()
    );
    let gateway = TestGateway::spawn(&toml).await;
    let client = connect(&gateway.url, Era::Stateless, TestClient::default()).await;
    let crash = client
        .call_tool(CallToolRequestParams::new("fixture_crash"))
        .await;
    assert!(
        crash.is_err(),
        "the call that killed the upstream fails cleanly"
    );
    let mut echo = CallToolRequestParams::new("fixture_echo");
    echo.arguments = json!({"text": "back"}).as_object().cloned();
    let mut answer = None;
    for _ in 0..50 {
        if let Ok(result) = client.call_tool(echo.clone()).await {
            answer = Some(first_text(&result));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        answer.as_deref(),
        Some("back"),
        "restarted upstream answers"
    );
    client.cancel().await.expect("close");
}
