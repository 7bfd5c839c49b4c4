//! Step-up through the gateway, with the embedded authorization server as the issuer: a call
//! needing a scope the token lacks gets one 403 naming every scope it needs, in both eras, and
//! the same caller with a wider token carries on (in its session, for 2025-11-25).

use portcullis_e2e::{DevIssuer, TestGateway};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::stdio_upstream;

const RESOURCE: &str = "http://127.0.0.1:8080/mcp";
const METADATA_URL: &str = "http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp";
const STATELESS: &str = "2026-07-28";

struct Setup {
    gateway: TestGateway,
    issuer: DevIssuer,
    http: reqwest::Client,
}

async fn setup(label: &str) -> Setup {
    let issuer = DevIssuer::start(&format!("stepup-{label}"), RESOURCE, &["policies:read"]).await;
    // Found by RFC 8414 discovery from the issuer, as in the demo.
    let config = format!(
        "[auth]\npublic_url = \"{RESOURCE}\"\nscopes = [\"policies:read\"]\n\n\
         [[auth.issuer]]\nissuer = \"{}\"\n\n\
         [auth.scope_hierarchy]\n\"policies:write\" = [\"policies:read\"]\n\n\
         [[capability]]\ntool = \"fixture_echo\"\nscopes = [\"policies:write\"]\n\n\
         [[capability]]\ntool = \"greet\"\nscopes = [\"policies:read\"]\n\n\
         [policy]\ncedar = \"permit (principal, action, resource);\"\n\n{}",
        issuer.issuer,
        stdio_upstream("fixture")
    );
    Setup {
        gateway: TestGateway::spawn(&config).await,
        issuer,
        http: reqwest::Client::new(),
    }
}

impl Setup {
    fn token(&self, subject: &str, scope: &str) -> String {
        self.issuer
            .auth
            .mint(subject, Some(&[scope.to_owned()]))
            .unwrap()
    }

    fn post(&self, token: &str, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .post(&self.gateway.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .bearer_auth(token)
            .body(body.to_string())
    }

    fn stateless(&self, token: &str, method: &str, params: Value) -> reqwest::RequestBuilder {
        let mut params = params;
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": STATELESS,
            "io.modelcontextprotocol/clientCapabilities": {},
        });
        let request = self
            .post(
                token,
                &json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}),
            )
            .header("mcp-protocol-version", STATELESS)
            .header("mcp-method", method);
        match params.get("name").and_then(Value::as_str) {
            Some(name) => request.header("mcp-name", name),
            None => request,
        }
    }
}

fn challenge(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
}

fn echo(text: &str) -> Value {
    json!({"name": "fixture_echo", "arguments": {"text": text}})
}

const STEP_UP: &str = "Bearer error=\"insufficient_scope\", scope=\"policies:write\", resource_metadata=\"http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp\"";

#[tokio::test]
async fn a_stateless_call_without_the_scope_is_challenged_and_passes_after_step_up() {
    let setup = setup("stateless").await;
    let narrow = setup.token("editor-a", "policies:read");
    let refused = setup
        .stateless(&narrow, "tools/call", echo("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(challenge(&refused).as_deref(), Some(STEP_UP));
    assert!(STEP_UP.contains(METADATA_URL));
    // Step-up means visible: the list still offers what a wider token could call.
    let listed = setup
        .stateless(&narrow, "tools/list", json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    assert!(listed.text().await.unwrap().contains("fixture_echo"));
    // A scope that implies the needed one is enough (`policies:write` implies `:read`).
    let wide = setup.token("editor-a", "policies:write");
    for (label, params) in [
        ("the challenged call", echo("after step-up")),
        (
            "an implied scope",
            json!({"name": "greet", "arguments": {"name": "x"}}),
        ),
    ] {
        let passed = setup
            .stateless(&wide, "tools/call", params)
            .send()
            .await
            .unwrap();
        assert_eq!(passed.status(), StatusCode::OK, "{label}");
        assert!(challenge(&passed).is_none(), "{label}");
        let body = passed.text().await.unwrap();
        assert!(!body.contains("\"error\""), "{label}: {body}");
    }
}

#[tokio::test]
async fn a_session_call_is_challenged_and_the_same_caller_continues_with_a_wider_token() {
    let setup = setup("session").await;
    let narrow = setup.token("editor-a", "policies:read");
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}});
    let opened = setup.post(&narrow, &init).send().await.unwrap();
    assert_eq!(opened.status(), StatusCode::OK);
    let session = opened.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = opened.text().await;
    let in_session = |token: &str, body: Value| {
        setup
            .post(token, &body)
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
    };
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let ack = in_session(&narrow, initialized).send().await.unwrap();
    assert!(ack.status().is_success());
    let call =
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": echo("in session")});
    let refused = in_session(&narrow, call.clone()).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(challenge(&refused).as_deref(), Some(STEP_UP));
    let wide = setup.token("editor-a", "policies:write");
    let passed = in_session(&wide, call.clone()).send().await.unwrap();
    assert_eq!(passed.status(), StatusCode::OK);
    assert!(passed.text().await.unwrap().contains("in session"));
    // Another person's wide token does not continue this session: it is not theirs.
    let other = setup.token("admin-a", "policies:write");
    let stolen = in_session(&other, call).send().await.unwrap();
    assert_eq!(stolen.status(), StatusCode::NOT_FOUND);
}
