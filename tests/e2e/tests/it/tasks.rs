//! A task belongs to the caller it was made for: another caller holding its id cannot read or
//! cancel it, and gets exactly the answer for a task that does not exist. Both paths: the
//! typed proxy (a stdio upstream) and the byte relay (an HTTP upstream).

use portcullis_e2e::{HttpFixture, TestGateway, stateless_rpc};
use serde_json::{Value, json};

use crate::{
    authn::{ISSUER, jwks},
    stdio_upstream,
};

const RESOURCE: &str = "http://127.0.0.1:8080/mcp";

async fn rpc(url: &str, token: &str, method: &str, params: Value) -> Value {
    let capabilities = json!({"extensions": {"io.modelcontextprotocol/tasks": {}}});
    let (_, message) = stateless_rpc(url, Some(token), method, params, capabilities).await;
    serde_json::from_str(&message).unwrap()
}

async fn a_task_is_its_callers_alone(upstream: &str) {
    let (issuer, jwks_uri) = jwks().await;
    let config = format!(
        "[auth]\npublic_url = \"{RESOURCE}\"\n\n\
         [policy]\ncedar = \"permit (principal, action, resource);\"\n\n\
         [[auth.issuer]]\nissuer = \"{ISSUER}\"\njwks_uri = \"{jwks_uri}\"\n\n{upstream}"
    );
    let gateway = TestGateway::spawn(&config).await;
    let alice = issuer.token_with(json!({"sub": "alice", "aud": RESOURCE}));
    let mallory = issuer.token_with(json!({"sub": "mallory", "aud": RESOURCE}));
    let created = rpc(
        &gateway.url,
        &alice,
        "tools/call",
        json!({"name": "failing_job", "arguments": {}}),
    )
    .await;
    let task_id = created["result"]["taskId"]
        .as_str()
        .unwrap_or_else(|| unreachable!("no task: {created}"))
        .to_owned();
    let own = rpc(
        &gateway.url,
        &alice,
        "tasks/get",
        json!({"taskId": task_id}),
    )
    .await;
    assert!(own.get("result").is_some(), "{own}");
    let missing = rpc(
        &gateway.url,
        &mallory,
        "tasks/get",
        json!({"taskId": "no-such-task"}),
    )
    .await;
    for method in ["tasks/get", "tasks/cancel"] {
        let stolen = rpc(&gateway.url, &mallory, method, json!({"taskId": task_id})).await;
        assert_eq!(stolen["error"], missing["error"], "{method}: {stolen}");
        assert!(stolen.get("result").is_none(), "{method}: {stolen}");
    }
    // The owner still has it: the thief's attempts changed nothing.
    let again = rpc(
        &gateway.url,
        &alice,
        "tasks/get",
        json!({"taskId": task_id}),
    )
    .await;
    assert!(again.get("result").is_some(), "{again}");
}

#[tokio::test]
async fn a_task_made_on_the_typed_path_is_its_callers_alone() {
    a_task_is_its_callers_alone(&stdio_upstream("fixture")).await;
}

#[tokio::test]
async fn a_task_made_through_the_byte_relay_is_its_callers_alone() {
    let fixture = HttpFixture::start().await;
    a_task_is_its_callers_alone(&crate::http_upstream("fixture", &fixture)).await;
}
