//! The golden authorization cases of `tests/authz/*.yaml`, each run through the gateway (with
//! the demo's catalog and policies and the reference backend) in both protocol eras, and its
//! decision checked on the same policy engine.

use std::path::PathBuf;

use portcullis_e2e::{DevIssuer, TestGateway, last_message, workspace_bin};
use portcullis_gateway::config::Config;
use portcullis_policy::{Call, CapabilityKind, Decision, ObjectAttributes, Principal, Visibility};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

const RESOURCE: &str = "http://127.0.0.1:8080/mcp";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    identity: String,
    scopes: Option<Vec<String>>,
    request: Request,
    object: Option<Object>,
    expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Object {
    tenant: Option<String>,
    owner: Option<String>,
    classification: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    method: String,
    name: Option<String>,
    arguments: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    decision: Option<String>,
    visibility: Option<String>,
    policies: Option<Vec<String>>,
    reasons: Option<Vec<String>>,
    status: u16,
    challenge_scope: Option<String>,
    error_code: Option<i64>,
    tool_error: Option<bool>,
    same_as: Option<Request>,
    listed: Option<Vec<String>>,
    not_listed: Option<Vec<String>>,
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

struct Harness {
    gateway: TestGateway,
    issuer: DevIssuer,
    config: Config,
    http: reqwest::Client,
}

async fn harness() -> Harness {
    let issuer = DevIssuer::start("golden-authz", RESOURCE, &[]).await;
    let dir = issuer.dir();
    let jwks = dir.join("identity-jwks.json");
    let catalog = std::fs::read_to_string(repo("crates/portcullis/demo/catalog.toml")).unwrap();
    let text = format!(
        "[auth]\npublic_url = \"{RESOURCE}\"\n\n[[auth.issuer]]\nissuer = \"{}\"\n\n\
         [auth.scope_hierarchy]\n\"policies:write\" = [\"policies:read\"]\n\n\
         [identity]\nkey_file = {key:?}\njwks_file = {jwks:?}\n\n\
         [policy]\nfile = {policies:?}\n\n\
         [[upstream]]\nname = \"workspace\"\ncommand = {backend:?}\n\
         args = [\"--db\", \":memory:\", \"--identity-jwks\", {jwks:?}, \"--issuer\", \"{RESOURCE}\"]\n\n{catalog}",
        issuer.issuer,
        key = dir.join("identity-key.pem"),
        policies = repo("crates/portcullis/demo/policies.cedar"),
        backend = workspace_bin("portcullis-workspace", "portcullis-workspace"),
    );
    let config = Config::parse(&text, std::path::Path::new("<golden>")).unwrap();
    Harness {
        gateway: TestGateway::spawn(&text).await,
        issuer,
        config,
        http: reqwest::Client::new(),
    }
}

impl Harness {
    /// Send `request` in `era` (a session id for 2025-11-25); the status, the challenge, and
    /// the JSON-RPC message of the answer.
    async fn send(
        &self,
        token: &str,
        session: Option<&str>,
        request: &Request,
    ) -> (StatusCode, Option<String>, String) {
        let mut params = json!({});
        match request.method.as_str() {
            "resources/read" => params["uri"] = json!(request.name),
            _ if request.name.is_some() => params["name"] = json!(request.name),
            _ => {}
        }
        if let Some(arguments) = &request.arguments {
            params["arguments"] = arguments.clone();
        }
        let mut builder = self
            .http
            .post(&self.gateway.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .bearer_auth(token);
        match session {
            Some(session) => {
                builder = builder
                    .header("mcp-session-id", session)
                    .header("mcp-protocol-version", "2025-11-25");
            }
            None => {
                params["_meta"] = json!({
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {},
                });
                builder = builder
                    .header("mcp-protocol-version", "2026-07-28")
                    .header("mcp-method", &request.method);
                if let Some(name) = &request.name {
                    builder = builder.header("mcp-name", name);
                }
            }
        }
        let body = json!({"jsonrpc": "2.0", "id": 7, "method": request.method, "params": params});
        let response = builder.body(body.to_string()).send().await.unwrap();
        let status = response.status();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        let message = last_message(&text);
        (status, challenge, message)
    }

    async fn open_session(&self, token: &str) -> String {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "golden", "version": "1"}}});
        let post = |body: Value| {
            self.http
                .post(&self.gateway.url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .bearer_auth(token)
                .body(body.to_string())
        };
        let opened = post(init).send().await.unwrap();
        let session = opened.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let _ = opened.text().await;
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let ack = post(initialized)
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .send()
            .await
            .unwrap();
        assert!(ack.status().is_success());
        session
    }

    fn decide(&self, case: &Case, scopes: &[String]) -> Option<Decision> {
        let kind = CapabilityKind::of_method(&case.request.method)?;
        let identity = self.issuer.auth.directory().identity(&case.identity)?;
        let principal = Principal {
            subject: identity.subject.clone(),
            issuer: "golden".into(),
            tenant: identity.tenant.clone(),
            roles: identity.roles.clone(),
            scopes: scopes.to_vec(),
            client_id: None,
        };
        let arguments = case.request.arguments.as_ref().and_then(Value::as_object);
        let object = case.object.as_ref().map(|o| ObjectAttributes {
            tenant: o.tenant.clone(),
            owner: o.owner.clone(),
            classification: o.classification.clone(),
        });
        let call = Call {
            kind,
            name: case.request.name.as_deref()?,
            arguments,
            era: "2026-07-28",
            object: object.as_ref(),
            risk_hint: None,
            credential: Default::default(),
        };
        let policy = &self.config.auth.as_ref()?.policy;
        Some(policy.authorize(&principal, &call))
    }
}

fn check_decision(case: &Case, decision: Option<Decision>) {
    let expect = &case.expect;
    let name = &case.name;
    if let Some(expected) = &expect.decision {
        let decision = decision
            .as_ref()
            .unwrap_or_else(|| unreachable!("{name}: no decision"));
        assert_eq!(decision.outcome(), expected, "{name}");
        if let Some(visibility) = &expect.visibility {
            let actual = match decision {
                Decision::Deny {
                    visibility: Visibility::Hidden,
                    ..
                } => "hidden",
                Decision::Deny { .. } => "visible",
                _ => "not a denial",
            };
            assert_eq!(actual, visibility, "{name}");
        }
        if let Some(policies) = &expect.policies {
            assert_eq!(&decision.reasons().policies, policies, "{name}");
        }
        if let Some(reasons) = &expect.reasons {
            let codes: Vec<&str> = decision
                .reasons()
                .codes
                .iter()
                .map(|c| c.as_str())
                .collect();
            assert_eq!(&codes, reasons, "{name}");
        }
    }
}

fn check_answer(
    case: &Case,
    era: &str,
    status: StatusCode,
    challenge: Option<&str>,
    message: &str,
) {
    let expect = &case.expect;
    let name = format!("{} ({era})", case.name);
    assert_eq!(status.as_u16(), expect.status, "{name}: {message}");
    if let Some(scope) = &expect.challenge_scope {
        let challenge = challenge.unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer error=\"insufficient_scope\""),
            "{name}: {challenge}"
        );
        assert!(
            challenge.contains(&format!("scope=\"{scope}\"")),
            "{name}: {challenge}"
        );
    }
    if status != StatusCode::OK {
        return;
    }
    let message: Value =
        serde_json::from_str(message).unwrap_or_else(|_| unreachable!("{name}: {message}"));
    if let Some(code) = expect.error_code {
        assert_eq!(message["error"]["code"], json!(code), "{name}: {message}");
    }
    if let Some(tool_error) = expect.tool_error {
        assert!(message.get("error").is_none(), "{name}: {message}");
        assert_eq!(
            message["result"]["isError"],
            json!(tool_error),
            "{name}: {message}"
        );
    }
    let names: Vec<&str> = message["result"]["tools"]
        .as_array()
        .map(|tools| tools.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    for listed in expect.listed.iter().flatten() {
        assert!(
            names.contains(&listed.as_str()),
            "{name}: {listed} missing from {names:?}"
        );
    }
    for hidden in expect.not_listed.iter().flatten() {
        assert!(
            !names.contains(&hidden.as_str()),
            "{name}: {hidden} listed in {names:?}"
        );
    }
}

#[tokio::test]
async fn golden_authorization_cases_hold_in_both_eras() {
    let harness = harness().await;
    let mut ran = 0;
    for entry in std::fs::read_dir(repo("tests/authz")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "yaml") {
            continue;
        }
        let cases: Vec<Case> =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for case in &cases {
            let allowed = &harness
                .issuer
                .auth
                .directory()
                .identity(&case.identity)
                .unwrap()
                .scopes;
            let scopes = case.scopes.clone().unwrap_or_else(|| allowed.clone());
            let token = harness
                .issuer
                .auth
                .mint(&case.identity, Some(&scopes))
                .unwrap();
            check_decision(case, harness.decide(case, &scopes));
            let session = harness.open_session(&token).await;
            for (era, session) in [("2026-07-28", None), ("2025-11-25", Some(session.as_str()))] {
                let (status, challenge, message) =
                    harness.send(&token, session, &case.request).await;
                check_answer(case, era, status, challenge.as_deref(), &message);
                if let Some(other) = &case.expect.same_as {
                    let (_, _, twin) = harness.send(&token, session, other).await;
                    assert_eq!(message, twin, "{} ({era}): not the same answer", case.name);
                }
                ran += 1;
            }
        }
    }
    assert!(ran >= 24, "only {ran} runs: were the case files found?");
}
