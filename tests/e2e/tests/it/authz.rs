//! Authorization through the gateway, in both eras: lists show what a caller could call, a
//! hidden capability answers exactly like one that does not exist, a visible one denied by
//! policy answers a fixed message, a missing scope is a step-up, and every call is decided on
//! the identity of the request that makes it.

use portcullis_e2e::TestGateway;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    authn::{ISSUER, Issuer, jwks},
    stdio_upstream,
};

const RESOURCE: &str = "http://127.0.0.1:8080/mcp";

const POLICIES: &str = r#"
@id("viewers-echo")
permit (principal in Role::"viewer", action == Action::"tool:fixture_echo", resource);

@id("editors-echo-and-greet")
permit (principal in Role::"editor", action in Action::"family:demo", resource);

@id("no-shouting")
forbid (principal, action == Action::"tool:fixture_echo", resource)
when { context.arguments has text && context.arguments.text == "SHOUT" };
"#;

fn config(jwks_uri: &str) -> String {
    format!(
        "[auth]\npublic_url = \"{RESOURCE}\"\nscopes = [\"tools:read\"]\n\n\
         [policy]\ncedar = '''{POLICIES}'''\n\n\
         [[capability]]\ntool = \"fixture_echo\"\nfamily = \"demo\"\nrisk = \"read\"\narguments = {{ text = \"string\" }}\n\n\
         [[capability]]\ntool = \"greet\"\nfamily = \"demo\"\nrisk = \"write\"\nscopes = [\"greet:write\"]\n\n\
         [[auth.issuer]]\nissuer = \"{ISSUER}\"\njwks_uri = \"{jwks_uri}\"\n\n{}",
        stdio_upstream("fixture")
    )
}

fn token(issuer: &Issuer, subject: &str, roles: &[&str], scope: &str) -> String {
    issuer.token_with(json!({"sub": subject, "aud": RESOURCE, "roles": roles, "scope": scope}))
}

/// One caller speaking one era over raw HTTP, so that answers can be compared byte for byte.
struct Caller<'a> {
    http: reqwest::Client,
    url: &'a str,
    sessions: bool,
    session: Option<String>,
}

impl<'a> Caller<'a> {
    async fn stateless(url: &'a str) -> Self {
        Self {
            http: reqwest::Client::new(),
            url,
            sessions: false,
            session: None,
        }
    }

    async fn session(url: &'a str, token: &str) -> Self {
        let mut caller = Self::stateless(url).await;
        caller.sessions = true;
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}});
        let response = caller.post(token, &init).await;
        assert_eq!(response.status(), StatusCode::OK);
        caller.session = Some(
            response.headers()["mcp-session-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
        let _ = response.text().await;
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        assert!(caller.post(token, &initialized).await.status().is_success());
        caller
    }

    async fn post(&self, token: &str, body: &Value) -> reqwest::Response {
        let mut request = self
            .http
            .post(self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .bearer_auth(token);
        let mut body = body.clone();
        match &self.session {
            Some(session) => {
                request = request
                    .header("mcp-session-id", session)
                    .header("mcp-protocol-version", "2025-11-25");
            }
            None if !self.sessions => {
                let method = body["method"].as_str().unwrap().to_owned();
                body["params"]["_meta"] = json!({
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {},
                });
                request = request
                    .header("mcp-protocol-version", "2026-07-28")
                    .header("mcp-method", &method);
                if let Some(name) = body["params"]["name"].as_str() {
                    request = request.header("mcp-name", name);
                }
            }
            None => {}
        }
        request.body(body.to_string()).send().await.unwrap()
    }

    /// The JSON-RPC message of an answer (plain JSON, or the last SSE `data:` line).
    async fn rpc(&self, token: &str, body: &Value) -> (StatusCode, String) {
        let response = self.post(token, body).await;
        let status = response.status();
        let text = response.text().await.unwrap();
        let message = portcullis_e2e::last_message(&text);
        (status, message)
    }

    async fn tool_names(&self, token: &str) -> Vec<String> {
        let (_, message) = self
            .rpc(
                token,
                &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}),
            )
            .await;
        let message: Value = serde_json::from_str(&message).unwrap();
        message["result"]["tools"]
            .as_array()
            .expect("a tools/list result")
            .iter()
            .map(|tool| tool["name"].as_str().unwrap().to_owned())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

fn call(name: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
}

async fn each_era(run: impl AsyncFn(Caller<'_>, &Issuer, &str)) {
    let (issuer, jwks_uri) = jwks().await;
    let gateway = TestGateway::spawn(&config(&jwks_uri)).await;
    let viewer = token(&issuer, "user-42", &["viewer"], "tools:read");
    run(Caller::stateless(&gateway.url).await, &issuer, "2026-07-28").await;
    run(
        Caller::session(&gateway.url, &viewer).await,
        &issuer,
        "2025-11-25",
    )
    .await;
}

#[tokio::test]
async fn a_viewer_lists_only_what_it_could_call_and_hidden_equals_nonexistent() {
    each_era(async |caller, issuer, era| {
        let viewer = token(issuer, "user-42", &["viewer"], "tools:read");
        let names = caller.tool_names(&viewer).await;
        assert_eq!(
            names,
            ["fixture_echo"],
            "{era}: listed iff possibly callable"
        );
        let hidden = caller
            .rpc(&viewer, &call("greet", json!({"name": "x"})))
            .await;
        let missing = caller
            .rpc(&viewer, &call("no_such_tool", json!({"name": "x"})))
            .await;
        assert_eq!(
            hidden, missing,
            "{era}: a hidden tool answers like a missing one"
        );
        assert!(hidden.1.contains("-32602"), "{era}: {}", hidden.1);
        let allowed = caller
            .rpc(&viewer, &call("fixture_echo", json!({"text": "hi"})))
            .await;
        assert!(
            allowed.1.contains("\"hi\"") && !allowed.1.contains("error"),
            "{era}: {}",
            allowed.1
        );
    })
    .await;
}

#[tokio::test]
async fn a_visible_capability_denied_by_policy_answers_a_fixed_plain_message() {
    each_era(async |caller, issuer, era| {
        let viewer = token(issuer, "user-42", &["viewer"], "tools:read");
        let (status, message) = caller
            .rpc(&viewer, &call("fixture_echo", json!({"text": "SHOUT"})))
            .await;
        assert_eq!(status, StatusCode::OK, "{era}");
        let message: Value = serde_json::from_str(&message).unwrap();
        assert_eq!(message["error"]["code"], -31001, "{era}: {message}");
        let text = message["error"]["message"].as_str().unwrap();
        assert!(
            text.starts_with("This request was denied by policy."),
            "{era}: {text}"
        );
        let correlation = message["error"]["data"]["correlationId"].as_str().unwrap();
        assert!(
            correlation.starts_with("pc-") && text.contains(correlation),
            "{era}: {text}"
        );
        for secret in ["no-shouting", "viewers-echo", "forbid", "tenant", "greet"] {
            assert!(
                !message.to_string().contains(secret),
                "{era}: leaks {secret}: {message}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn an_editor_without_the_scope_sees_the_tool_and_gets_the_step_up_challenge() {
    each_era(async |caller, issuer, era| {
        let editor = token(issuer, "user-42", &["editor"], "tools:read");
        assert_eq!(caller.tool_names(&editor).await, ["fixture_echo", "greet"], "{era}");
        let response = caller.post(&editor, &call("greet", json!({"name": "x"}))).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{era}");
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer error=\"insufficient_scope\", scope=\"greet:write\", resource_metadata=\"http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp\"",
            "{era}"
        );
        let wider = token(issuer, "user-42", &["editor"], "tools:read greet:write");
        let (_, message) = caller.rpc(&wider, &call("greet", json!({"name": "x"}))).await;
        assert!(!message.contains("\"error\""), "{era}: {message}");
    })
    .await;
}

#[tokio::test]
async fn a_role_change_between_list_and_call_is_decided_on_the_new_identity() {
    let (issuer, jwks_uri) = jwks().await;
    let gateway = TestGateway::spawn(&config(&jwks_uri)).await;
    let before = token(&issuer, "alice", &["editor"], "tools:read greet:write");
    let session = Caller::session(&gateway.url, &before).await;
    assert_eq!(session.tool_names(&before).await, ["fixture_echo", "greet"]);
    // Same subject, same session, a new token: the editor role is gone.
    let after = token(&issuer, "alice", &["viewer"], "tools:read greet:write");
    let (_, called) = session
        .rpc(&after, &call("greet", json!({"name": "x"})))
        .await;
    let (_, missing) = session
        .rpc(&after, &call("no_such_tool", json!({"name": "x"})))
        .await;
    assert_eq!(
        called, missing,
        "greet is now hidden: it answers like a missing tool"
    );
    assert_eq!(session.tool_names(&after).await, ["fixture_echo"]);
}
