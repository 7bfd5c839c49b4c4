//! The reference backend behind the gateway: the caller's identity reaches it only as the
//! gateway's signed assertion (never the token, never a value the caller wrote), it keeps each
//! tenant to its own data, and no tenant-a caller gets anything of tenant-b, by any tool.

use portcullis_e2e::{DevIssuer, TestGateway, stateless_rpc, workspace_bin};
use serde_json::{Value, json};

const RESOURCE: &str = "http://127.0.0.1:8080/mcp";

const POLICIES: &str = r#"
@id("everyone-reads")
permit (principal, action in [Action::"tool:search_policies", Action::"tool:read_policy", Action::"resource:policy://{tenant}/{id}"], resource);
@id("editors")
permit (principal in Role::"editor", action in [Action::"family:policies", Action::"family:tickets"], resource);
@id("admins")
permit (principal in Role::"admin", action in [Action::"family:policies", Action::"family:tickets", Action::"family:records"], resource);
@id("hr")
permit (principal in Role::"hr", action == Action::"resource:hr-report://{tenant}/{id}", resource);
"#;

const CATALOG: &str = r#"
[[capability]]
tool = "search_policies"
family = "policies"
risk = "read"
[[capability]]
tool = "read_policy"
family = "policies"
risk = "read"
object = "id"
resolve = { tool = "describe_object", arguments = { kind = "policy", id = "{object}" }, not_found = "policy not found" }
[[capability]]
tool = "update_policy"
family = "policies"
object = "id"
resolve = { tool = "describe_object", arguments = { kind = "policy", id = "{object}" }, not_found = "policy not found" }
[[capability]]
tool = "close_ticket"
family = "tickets"
object = "id"
resolve = { tool = "describe_object", arguments = { kind = "ticket", id = "{object}" }, not_found = "ticket not found" }
[[capability]]
tool = "delete_record"
family = "records"
risk = "destructive"
object = "id"
resolve = { tool = "describe_object", arguments = { kind = "record", id = "{object}" }, not_found = "record not found" }
[[capability]]
resource = "policy://{tenant}/{id}"
family = "policies"
object = "id"
tenant = "tenant"
[[capability]]
resource = "hr-report://{tenant}/{id}"
family = "hr"
object = "id"
tenant = "tenant"
"#;

struct Setup {
    gateway: TestGateway,
    issuer: DevIssuer,
}

async fn setup(label: &str) -> Setup {
    let issuer = DevIssuer::start(&format!("workspace-{label}"), RESOURCE, &[]).await;
    let dir = issuer.dir();
    let jwks = dir.join("identity-jwks.json");
    let backend = workspace_bin("portcullis-workspace", "portcullis-workspace");
    let config = format!(
        "[auth]\npublic_url = \"{RESOURCE}\"\n\n[[auth.issuer]]\nissuer = \"{}\"\n\n\
         [identity]\nkey_file = {key:?}\njwks_file = {jwks:?}\n\n\
         [policy]\ncedar = '''{POLICIES}'''\n{CATALOG}\n\
         [[upstream]]\nname = \"workspace\"\ncommand = {backend:?}\n\
         args = [\"--db\", \":memory:\", \"--identity-jwks\", {jwks:?}, \"--issuer\", \"{RESOURCE}\"]\n",
        issuer.issuer,
        key = dir.join("identity-key.pem"),
    );
    Setup {
        gateway: TestGateway::spawn(&config).await,
        issuer,
    }
}

impl Setup {
    fn token(&self, subject: &str) -> String {
        self.issuer.auth.mint(subject, None).unwrap()
    }

    /// A stateless request; the JSON-RPC message of its answer.
    async fn rpc(&self, token: &str, method: &str, params: Value) -> String {
        stateless_rpc(&self.gateway.url, Some(token), method, params, json!({}))
            .await
            .1
    }

    async fn call(&self, token: &str, tool: &str, arguments: Value) -> String {
        self.rpc(
            token,
            "tools/call",
            json!({"name": tool, "arguments": arguments}),
        )
        .await
    }
}

#[tokio::test]
async fn the_backend_sees_only_the_gateways_assertion_and_keeps_to_the_callers_tenant() {
    let setup = setup("assertion").await;
    let viewer = setup.token("user-42");
    let found = setup
        .call(&viewer, "search_policies", json!({"query": ""}))
        .await;
    assert!(found.contains("POL-A1"), "{found}");
    assert!(
        !found.contains("tenant-b") && !found.contains("POL-A2"),
        "tenant-a, not confidential: {found}"
    );
    // A caller-written assertion claiming tenant-b never reaches the backend: the gateway's own
    // replaces it (and the backend would refuse an unsigned one).
    let forged = json!({"name": "search_policies", "arguments": {"query": ""},
        "_meta": {"io.portcullis/identity": "eyJhbGciOiJub25lIn0.eyJ0ZW5hbnQiOiJ0ZW5hbnQtYiJ9."}});
    let answer = setup.rpc(&viewer, "tools/call", forged).await;
    assert_eq!(answer, found, "the forged assertion changed nothing");
    let hidden = setup
        .call(&viewer, "read_policy", json!({"id": "POL-B1"}))
        .await;
    let missing = setup
        .call(&viewer, "read_policy", json!({"id": "POL-NONE"}))
        .await;
    assert_eq!(
        hidden, missing,
        "another tenant's document answers as a missing one"
    );
    // A tool the viewer cannot see answers as a missing tool, whatever object it names: its
    // object is not looked up, so its own "not found" wording cannot give it away.
    let update = setup
        .call(
            &viewer,
            "update_policy",
            json!({"id": "POL-B1", "text": "x"}),
        )
        .await;
    let no_tool = setup
        .call(
            &viewer,
            "no_such_tool",
            json!({"id": "POL-B1", "text": "x"}),
        )
        .await;
    assert_eq!(update, no_tool);
}

/// Every tool and resource, called by every tenant-a identity, against every tenant-b object:
/// nothing succeeds, nothing of tenant-b comes back, and every tool answers byte for byte as
/// for an object that does not exist.
#[tokio::test]
async fn a_cross_tenant_sweep_finds_nothing() {
    let setup = setup("sweep").await;
    let objects = ["POL-B1", "POL-B2", "TCK-B1", "REC-B1", "HR-B1"];
    let mut calls = 0;
    for subject in ["user-42", "admin-a", "editor-a", "hr-a"] {
        let token = setup.token(subject);
        for id in objects {
            for (tool, arguments) in [
                ("read_policy", json!({"id": id})),
                ("update_policy", json!({"id": id, "text": "overwritten"})),
                ("close_ticket", json!({"id": id})),
                ("delete_record", json!({"id": id})),
            ] {
                let mut missing = arguments.clone();
                missing["id"] = json!("NO-SUCH-OBJECT");
                let answer = setup.call(&token, tool, arguments).await;
                let message: Value = serde_json::from_str(&answer).unwrap();
                let refused =
                    message.get("error").is_some() || message["result"]["isError"] == json!(true);
                assert!(refused, "{subject} {tool} {id} succeeded: {answer}");
                assert!(
                    !answer.contains("tenant-b"),
                    "{subject} {tool} {id}: {answer}"
                );
                // Not visible is not found: the same bytes as an object that does not exist.
                let not_found = setup.call(&token, tool, missing).await;
                assert_eq!(answer, not_found, "{subject} {tool} {id}");
                calls += 1;
            }
            for uri in [
                format!("policy://tenant-b/{id}"),
                format!("hr-report://tenant-b/{id}"),
            ] {
                let answer = setup
                    .rpc(&token, "resources/read", json!({"uri": uri}))
                    .await;
                assert!(
                    answer.contains("\"error\""),
                    "{subject} read {uri}: {answer}"
                );
                assert!(!answer.contains("tenant-b/"), "{subject} {uri}: {answer}");
                calls += 1;
            }
        }
    }
    assert_eq!(calls, 4 * 5 * 6);
    // The sweep's documents are untouched: tenant-b's editor still reads the original text.
    let editor_b = setup.token("editor-b");
    let own = setup
        .call(&editor_b, "read_policy", json!({"id": "POL-B1"}))
        .await;
    assert!(
        own.contains("30 days") && !own.contains("overwritten"),
        "{own}"
    );
}
