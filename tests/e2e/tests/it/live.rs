//! Live entitlements and policy reload: when a connected caller's view changes, that caller,
//! and only it, is told `tools/list_changed`; its next list and its next call are decided on
//! what it holds now, even with a token issued before; a disabled subject is refused at once.

use std::time::{Duration, Instant};

use portcullis_e2e::{Era, TestClient, TestGateway, connect_as};
use rmcp::model::CallToolRequestParams;
use serde_json::json;

use crate::{
    authn::{Issuer, jwks},
    stdio_upstream,
};

const RESOURCE: &str = "http://127.0.0.1:8080/mcp";
const REFRESH_MS: u64 = 200;

const POLICIES: &str = "@id(\"editors-greet\")\n\
    permit (principal in Role::\"editor\", action == Action::\"tool:greet\", resource);\n\
    @id(\"editors-prompt\")\n\
    permit (principal in Role::\"editor\", action == Action::\"prompt:test_simple_prompt\", resource);\n\
    @id(\"everyone-echoes\")\n\
    permit (principal, action == Action::\"tool:fixture_echo\", resource);\n\
    @id(\"everyone-listens\")\n\
    permit (principal, action == Action::\"rpc:subscriptions/listen\", resource);\n";

fn config(jwks_uri: &str, entitlements: &std::path::Path, policies: &str) -> String {
    format!(
        "[auth]\npublic_url = \"{RESOURCE}\"\n\n\
         [entitlements]\nfile = {entitlements:?}\nrefresh = \"{REFRESH_MS}ms\"\n\n\
         [policy]\ncedar = '''\n{policies}'''\n\n\
         [[capability]]\ntool = \"greet\"\nrisk = \"read\"\n\n\
         [[capability]]\ntool = \"fixture_echo\"\nrisk = \"read\"\n\n\
         [[capability]]\nprompt = \"test_simple_prompt\"\n\n\
         [[auth.issuer]]\nissuer = \"{}\"\njwks_uri = \"{jwks_uri}\"\n\n{}",
        crate::authn::ISSUER,
        stdio_upstream("fixture")
    )
}

fn identities(editor_a: &str, disabled_b: bool) -> String {
    format!(
        "[[identity]]\nsubject = \"ann\"\nroles = [{editor_a}]\n\n\
         [[identity]]\nsubject = \"bob\"\nroles = [\"editor\"]\ndisabled = {disabled_b}\n"
    )
}

fn token(issuer: &Issuer, subject: &str) -> String {
    // The token says editor; the entitlements file says what holds now.
    issuer.token_with(json!({"sub": subject, "aud": RESOURCE, "roles": ["editor"]}))
}

async fn tool_names(
    service: &rmcp::service::RunningService<rmcp::RoleClient, TestClient>,
) -> Vec<String> {
    service
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|tool| tool.name.to_string())
        .collect()
}

/// Wait until `changes` holds `n` notifications (or give up after `limit`).
async fn until(
    changes: &std::sync::Arc<std::sync::Mutex<Vec<Instant>>>,
    n: usize,
    limit: Duration,
) {
    let start = Instant::now();
    while changes.lock().unwrap().len() < n && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_role_removed_mid_session_notifies_that_caller_only_and_is_enforced_at_once() {
    let dir = std::env::temp_dir().join(format!("live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("identities.toml");
    replace(&file, &identities("\"editor\"", false));
    let (issuer, jwks_uri) = jwks().await;
    let gateway = TestGateway::spawn(&config(&jwks_uri, &file, POLICIES)).await;

    let mut sessions = Vec::new();
    for subject in ["ann", "bob"] {
        let client = TestClient::default();
        let changes = client.tools_changed.clone();
        let token = token(&issuer, subject);
        let service = connect_as(&gateway.url, Era::Sessions, client, Some(&token)).await;
        assert!(
            tool_names(&service).await.contains(&"greet".to_owned()),
            "{subject}"
        );
        sessions.push((service, changes));
    }

    // ann loses the editor role; bob keeps it.
    let changed = Instant::now();
    replace(&file, &identities("", false));
    let (ann, ann_changes) = &sessions[0];
    until(ann_changes, 1, Duration::from_secs(5)).await;
    let heard = ann_changes.lock().unwrap().first().copied();
    let latency = heard.map(|at| at.duration_since(changed));
    assert!(
        latency.is_some_and(|l| l < Duration::from_millis(REFRESH_MS * 5)),
        "ann told within the bound: {latency:?}"
    );
    eprintln!("entitlement change to list_changed: {latency:?}");
    let names = tool_names(ann).await;
    assert!(
        !names.contains(&"greet".to_owned()) && names.contains(&"fixture_echo".to_owned()),
        "{names:?}"
    );
    let mut greet = CallToolRequestParams::new("greet");
    greet.arguments = json!({"name": "x"}).as_object().cloned();
    let refused = format!("{:?}", ann.call_tool(greet.clone()).await);
    assert!(refused.contains("tool not found"), "{refused}");
    // bob's view did not change: nothing was sent to him.
    tokio::time::sleep(Duration::from_millis(REFRESH_MS * 3)).await;
    let (bob, bob_changes) = &sessions[1];
    assert!(bob_changes.lock().unwrap().is_empty(), "bob heard nothing");
    assert!(format!("{:?}", bob.call_tool(greet.clone()).await).contains("Hello, x"));

    // bob is disabled: his still-valid token is refused at once.
    replace(&file, &identities("", true));
    tokio::time::sleep(Duration::from_millis(REFRESH_MS * 3)).await;
    let (status, _) = portcullis_e2e::stateless_rpc(
        &gateway.url,
        Some(&token(&issuer, "bob")),
        "tools/list",
        json!({}),
        json!({}),
    )
    .await;
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);
    for (service, _) in sessions {
        let _ = service.cancel().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_policy_reload_notifies_exactly_the_callers_whose_view_changed() {
    let dir = std::env::temp_dir().join(format!("reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("identities.toml");
    std::fs::write(&file, "").unwrap();
    let (issuer, jwks_uri) = jwks().await;
    let gateway = TestGateway::spawn(&config(&jwks_uri, &file, POLICIES)).await;
    let mut sessions = Vec::new();
    let mut prompts = Vec::new();
    for (subject, roles) in [("ed", vec!["editor"]), ("vi", vec!["viewer"])] {
        let client = TestClient::default();
        let changes = client.tools_changed.clone();
        prompts.push(client.prompts_changed.clone());
        let token = issuer.token_with(json!({"sub": subject, "aud": RESOURCE, "roles": roles}));
        let service = connect_as(&gateway.url, Era::Sessions, client, Some(&token)).await;
        tool_names(&service).await;
        sessions.push((service, changes));
    }
    // The new set takes greet from editors; viewers' view is the same.
    let without_greet = config(
        &jwks_uri,
        &file,
        &POLICIES.replace("Role::\"editor\"", "Role::\"nobody\""),
    );
    let engine =
        portcullis_gateway::config::Config::parse(&without_greet, std::path::Path::new("<test>"))
            .unwrap()
            .auth
            .unwrap()
            .policy;
    gateway.gateway.reload_policy(engine, None);
    until(&sessions[0].1, 1, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sessions[0].1.lock().unwrap().len(),
        1,
        "the editor was told"
    );
    assert!(
        sessions[1].1.lock().unwrap().is_empty(),
        "the viewer was not"
    );
    // The prompt it lost too, in its own notification; nothing for the viewer.
    assert_eq!(prompts[0].lock().unwrap().len(), 1, "the editor's prompts");
    assert!(
        prompts[1].lock().unwrap().is_empty(),
        "the viewer's prompts"
    );
    assert!(
        !tool_names(&sessions[0].0)
            .await
            .contains(&"greet".to_owned())
    );
    for (service, _) in sessions {
        let _ = service.cancel().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `portcullis serve` reloads its policy file when it changes or on SIGHUP; a file that does not validate
/// is refused and the policies in force stay, and a later good file is taken again.
#[tokio::test]
async fn the_binary_reloads_on_a_changed_policy_file_or_sighup_and_refuses_a_broken_one() {
    let dir = std::env::temp_dir().join(format!("reload-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policies = dir.join("policies.cedar");
    let allow = "@id(\"everyone-echoes\")\npermit (principal, action == Action::\"tool:fixture_echo\", resource);\n";
    let deny = format!(
        "{allow}@id(\"no-echo-today\")\nforbid (principal, action == Action::\"tool:fixture_echo\", resource);\n"
    );
    std::fs::write(&policies, allow).unwrap();
    let (issuer, jwks_uri) = jwks().await;
    let config = dir.join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[auth]\npublic_url = \"{RESOURCE}\"\n\n\
             [policy]\nfile = \"policies.cedar\"\n\n\
             [[capability]]\ntool = \"fixture_echo\"\nrisk = \"read\"\n\n\
             [[auth.issuer]]\nissuer = \"{}\"\njwks_uri = \"{jwks_uri}\"\n\n{}",
            crate::authn::ISSUER,
            stdio_upstream("fixture")
        ),
    )
    .unwrap();
    let gateway = portcullis_e2e::HttpFixture::start_program(
        portcullis_e2e::workspace_bin("portcullis", "portcullis"),
        &["serve", "--config", config.to_str().unwrap()],
    )
    .await;
    let token = issuer.token_with(json!({"sub": "ann", "aud": RESOURCE}));
    let echo = || async {
        let params = json!({"name": "fixture_echo", "arguments": {"text": "hi"}});
        let (_, body) = portcullis_e2e::stateless_rpc(
            &gateway.url,
            Some(&token),
            "tools/call",
            params,
            json!({}),
        )
        .await;
        body
    };
    // Until `ok` says the answer is the expected one, or 10 s.
    let eventually = |ok: fn(&str) -> bool| async move {
        let mut last = String::new();
        for _ in 0..100 {
            last = echo().await;
            if ok(&last) {
                return (true, last);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (false, last)
    };
    assert!(echo().await.contains("\"hi\""));
    std::fs::write(&policies, &deny).unwrap();
    // Forbidden to everyone, the tool is hidden: it answers as missing.
    let (denied, last) = eventually(|body| body.contains("tool not found")).await;
    assert!(denied, "the forbid took effect: {last}");
    std::fs::write(
        &policies,
        "permit (principal, action == Action::\"tool:nope\", resource);",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let still = echo().await;
    assert!(
        still.contains("tool not found"),
        "the broken file was refused, the forbid stays: {still}"
    );
    std::fs::write(&policies, allow).unwrap();
    let (allowed, last) = eventually(|body| body.contains("\"hi\"")).await;
    assert!(
        allowed,
        "a good file is taken again after a refused one: {last}"
    );
    // SIGHUP: a change the file check cannot see (same size, the old modification time put
    // back) is taken on the signal.
    let stamp = std::fs::metadata(&policies).unwrap().modified().unwrap();
    let forbid_same_size = allow.replace("permit (", "forbid (");
    assert_eq!(forbid_same_size.len(), allow.len());
    std::fs::write(&policies, &forbid_same_size).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&policies)
        .unwrap()
        .set_modified(stamp)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(
        echo().await.contains("\"hi\""),
        "the file check saw no change"
    );
    let pid = gateway.pid().unwrap().to_string();
    let hung_up = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(hung_up.success());
    let (forbidden, last) = eventually(|body| body.contains("tool not found")).await;
    assert!(forbidden, "SIGHUP reloaded the policies: {last}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A candidate set in shadow decides every call beside the set in force, is never enforced,
/// and each disagreement is audited.
#[tokio::test]
async fn shadow_policies_are_audited_where_they_disagree_and_never_enforced() {
    let dir = std::env::temp_dir().join(format!("shadow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("identities.toml");
    std::fs::write(&file, "").unwrap();
    let candidate = dir.join("candidate.cedar");
    std::fs::write(
        &candidate,
        POLICIES.replace("Role::\"editor\"", "Role::\"nobody\""),
    )
    .unwrap();
    let trail = dir.join("audit.db");
    let (issuer, jwks_uri) = jwks().await;
    let text = config(&jwks_uri, &file, POLICIES).replace(
        "[policy]\n",
        &format!("[audit]\nsqlite = {trail:?}\n\n[policy]\nshadow = {candidate:?}\n"),
    );
    let gateway = TestGateway::spawn(&text).await;
    let token = token(&issuer, "ann");
    for tool in ["greet", "fixture_echo"] {
        let params = json!({"name": tool, "arguments": {"name": "x", "text": "x"}});
        let (_, body) = portcullis_e2e::stateless_rpc(
            &gateway.url,
            Some(&token),
            "tools/call",
            params,
            json!({}),
        )
        .await;
        assert!(
            !body.contains("\"error\""),
            "the set in force decides: {body}"
        );
    }
    let mut shadows = Vec::new();
    for _ in 0..100 {
        shadows = portcullis_audit::query(&trail, &portcullis_audit::Filter::default())
            .unwrap()
            .into_iter()
            .filter(|(_, r)| r.shadow)
            .map(|(_, r)| r)
            .collect();
        if !shadows.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(shadows.len(), 1, "only greet disagrees: {shadows:?}");
    assert_eq!(shadows[0].capability.as_deref(), Some("greet"));
    assert_eq!(shadows[0].decision, portcullis_audit::AuditDecision::Deny);
    assert_eq!(shadows[0].reasons[0], "shadow_disagrees");
    assert!(
        gateway
            .trail
            .render_metrics()
            .contains("portcullis_shadow_disagreements_total 1")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Replace `path` whole (write beside it, then rename), as an operator's tools should.
fn replace(path: &std::path::Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, path).unwrap();
}

/// 2026-07-28: a caller's `subscriptions/listen` stream hears its own view change, and only
/// that caller's stream does.
#[tokio::test]
async fn a_listen_stream_hears_its_own_callers_view_change() {
    let dir = std::env::temp_dir().join(format!("listen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("identities.toml");
    replace(&file, &identities("\"editor\"", false));
    let (issuer, jwks_uri) = jwks().await;
    let gateway = TestGateway::spawn(&config(&jwks_uri, &file, POLICIES)).await;
    // Someone has listed the tools, so the gateway knows their names.
    let (_, listed) = portcullis_e2e::stateless_rpc(
        &gateway.url,
        Some(&token(&issuer, "ann")),
        "tools/list",
        json!({}),
        json!({}),
    )
    .await;
    assert!(listed.contains("greet"), "{listed}");
    let listen = |subject: &str| {
        let body = json!({
            "jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen",
            "params": {
                "notifications": {"toolsListChanged": true},
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "0"},
                    "io.modelcontextprotocol/clientCapabilities": {},
                },
            },
        });
        reqwest::Client::new()
            .post(&gateway.url)
            .bearer_auth(token(&issuer, subject))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "subscriptions/listen")
            .body(body.to_string())
            .send()
    };
    let mut ann = listen("ann").await.unwrap();
    let mut bob = listen("bob").await.unwrap();
    assert!(ann.status().is_success() && bob.status().is_success());
    // Both streams are open (acknowledged) before anything changes.
    let mut heard = (String::new(), String::new());
    for (stream, text) in [(&mut ann, &mut heard.0), (&mut bob, &mut heard.1)] {
        while !text.contains("acknowledged") {
            let chunk = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    replace(&file, &identities("", false));
    while !heard.0.contains("notifications/tools/list_changed") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), ann.chunk())
            .await
            .expect("ann's stream hears its view change")
            .unwrap()
            .unwrap();
        heard.0.push_str(&String::from_utf8_lossy(&chunk));
    }
    let quiet = tokio::time::timeout(Duration::from_millis(REFRESH_MS * 4), bob.chunk()).await;
    let more = match quiet {
        Ok(Ok(Some(chunk))) => String::from_utf8_lossy(&chunk).into_owned(),
        _ => String::new(),
    };
    assert!(
        !more.contains("list_changed"),
        "bob's stream heard nothing of ann: {more}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
