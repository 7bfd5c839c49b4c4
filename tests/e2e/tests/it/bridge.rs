//! A 2026-07-28 caller in front of a 2025-11-25 upstream: what the upstream asks during a call
//! (here an elicitation) reaches the caller as an `input_required` result, and the caller's
//! retry with the answer resumes the same upstream request, over stdio and over HTTP.

use portcullis_e2e::{HttpFixture, TestGateway, fixture_bin, stateless_rpc};
use serde_json::{Value, json};

use crate::{http_upstream, stdio_upstream};

const CAPABLE: &str = r#"{"elicitation": {"form": {}}}"#;

async fn call(url: &str, params: Value, capabilities: &str) -> Value {
    let capabilities: Value = serde_json::from_str(capabilities).expect("capabilities");
    let (_, text) = stateless_rpc(url, None, "tools/call", params, capabilities).await;
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn an_upstream_question_is_asked_in_a_result_and_answered_by_the_retry(upstream: &str) {
    let gateway = TestGateway::spawn(&format!("{upstream}era = \"2025-11-25\"\n")).await;
    let asked = json!({"name": "test_elicitation", "arguments": {"message": "Who are you?"}});
    let first = call(&gateway.url, asked.clone(), CAPABLE).await;
    let result = &first["result"];
    assert_eq!(result["resultType"], "input_required", "{first}");
    let question = &result["inputRequests"]["upstream"];
    assert_eq!(question["method"], "elicitation/create", "{first}");
    assert_eq!(question["params"]["message"], "Who are you?", "{first}");
    let state = result["requestState"].as_str().expect("a request state");

    let mut answered = asked.clone();
    answered["requestState"] = json!(state);
    answered["inputResponses"] = json!({"upstream": {"action": "accept",
        "content": {"username": "ada", "email": "ada@example.com"}}});
    let done = call(&gateway.url, answered.clone(), CAPABLE).await;
    let text = done["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("ada@example.com"), "{done}");
    assert_eq!(done["result"]["resultType"], "complete", "{done}");

    // Answered once: the same state again, or with another call, finds nothing.
    let again = call(&gateway.url, answered, CAPABLE).await;
    assert_eq!(again["error"]["code"], -32602, "{again}");
    let second = call(&gateway.url, asked.clone(), CAPABLE).await;
    let mut other = json!({"name": "test_elicitation", "arguments": {"message": "Something else"}});
    other["requestState"] = second["result"]["requestState"].clone();
    other["inputResponses"] = json!({"upstream": {"action": "decline"}});
    let crossed = call(&gateway.url, other, CAPABLE).await;
    assert_eq!(crossed["error"]["code"], -32602, "{crossed}");

    // A caller that cannot be asked is never handed a question.
    let incapable = call(&gateway.url, asked, "{}").await;
    assert_ne!(
        incapable["result"]["resultType"], "input_required",
        "{incapable}"
    );
}

#[tokio::test]
async fn over_stdio() {
    let _ = fixture_bin();
    an_upstream_question_is_asked_in_a_result_and_answered_by_the_retry(&stdio_upstream("fixture"))
        .await;
}

#[tokio::test]
async fn over_http() {
    let fixture = HttpFixture::start().await;
    an_upstream_question_is_asked_in_a_result_and_answered_by_the_retry(&http_upstream(
        "fixture", &fixture,
    ))
    .await;
}

// See: review of issue 13/14. A call that needs approval and whose upstream then asks a
// question could not finish: the retry carrying the upstream's question state was taken for a
// forged approval and refused, and the parked call expired. The resume continues the approved
// call, with no second approval.
#[tokio::test]
async fn an_approved_call_whose_upstream_asks_a_question_is_resumed_without_a_second_approval() {
    let _ = fixture_bin();
    let resource = "http://127.0.0.1/mcp";
    let issuer = portcullis_e2e::DevIssuer::start("bridge-approval", resource, &[]).await;
    let config = format!(
        "[auth]\npublic_url = \"{resource}\"\n\n[[auth.issuer]]\nissuer = \"{}\"\n\n\
         [policy]\ncedar = '''\n\
         @approval(\"required\")\n\
         permit (principal, action == Action::\"tool:test_elicitation\", resource);\n\
         permit (principal, action, resource) unless {{ action == Action::\"tool:test_elicitation\" }};\n'''\n\n\
         [[capability]]\ntool = \"test_elicitation\"\nrisk = \"write\"\n\n\
         {}era = \"2025-11-25\"\n",
        issuer.issuer,
        stdio_upstream("fixture"),
    );
    let gateway = TestGateway::spawn(&config).await;
    let token = issuer.auth.mint("admin-a", None).expect("token");
    let capabilities: Value = serde_json::from_str(CAPABLE).expect("capabilities");
    let send = |params: Value| {
        let (url, token, capabilities) = (gateway.url.clone(), token.clone(), capabilities.clone());
        async move {
            let (_, text) =
                stateless_rpc(&url, Some(&token), "tools/call", params, capabilities).await;
            serde_json::from_str::<Value>(&portcullis_e2e::last_message(&text))
                .unwrap_or(Value::Null)
        }
    };
    let asked = json!({"name": "test_elicitation", "arguments": {"message": "Who are you?"}});
    let approval = send(asked.clone()).await;
    assert!(
        approval["result"]["inputRequests"]["approval"].is_object(),
        "the gateway asks for approval first: {approval}"
    );
    let mut approved = asked.clone();
    approved["requestState"] = approval["result"]["requestState"].clone();
    approved["inputResponses"] =
        json!({"approval": {"action": "accept", "content": {"approve": true}}});
    let question = send(approved).await;
    assert_eq!(
        question["result"]["inputRequests"]["upstream"]["method"], "elicitation/create",
        "then the upstream's question: {question}"
    );
    let mut answered = asked;
    answered["requestState"] = question["result"]["requestState"].clone();
    answered["inputResponses"] = json!({"upstream": {"action": "accept",
        "content": {"username": "ada", "email": "ada@example.com"}}});
    let done = send(answered).await;
    let text = done["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.contains("ada@example.com"),
        "the call completes: {done}"
    );
}
