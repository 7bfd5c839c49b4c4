//! The audit trail through the gateway: every refusal and decision leaves exactly the expected
//! record, the chain verifies, and a state-changing call is refused when its record cannot be
//! made durable.

use portcullis_audit::{AuditDecision, Filter, VerifyReport};
use portcullis_e2e::{TestGateway, stateless_rpc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    authn::{ISSUER, jwks},
    stdio_upstream,
};

const RESOURCE: &str = "http://127.0.0.1:8080/mcp";

pub(crate) fn config(jwks_uri: &str, audit: &std::path::Path) -> String {
    format!(
        "[auth]\npublic_url = \"{RESOURCE}\"\nscopes = [\"tools:read\"]\n\n\
         [audit]\nsqlite = {audit:?}\n\n\
         [policy]\ncedar = '''\n\
         @id(\"viewers-echo\")\npermit (principal in Role::\"viewer\", action == Action::\"tool:fixture_echo\", resource);\n\
         @id(\"editors-greet\")\npermit (principal in Role::\"editor\", action == Action::\"tool:greet\", resource);\n\
         @id(\"no-shouting\")\nforbid (principal, action == Action::\"tool:fixture_echo\", resource) when {{ context.arguments has text && context.arguments.text == \"SHOUT\" }};\n'''\n\n\
         [[capability]]\ntool = \"fixture_echo\"\nrisk = \"read\"\narguments = {{ text = \"string\" }}\n\n\
         [[capability]]\ntool = \"greet\"\nrisk = \"write\"\nscopes = [\"greet:write\"]\n\n\
         [[auth.issuer]]\nissuer = \"{ISSUER}\"\njwks_uri = \"{jwks_uri}\"\n\n{}",
        stdio_upstream("fixture")
    )
}

pub(crate) async fn call(
    url: &str,
    token: Option<&str>,
    tool: &str,
    arguments: Value,
) -> (StatusCode, String) {
    let params = json!({"name": tool, "arguments": arguments});
    stateless_rpc(url, token, "tools/call", params, json!({})).await
}

#[tokio::test]
async fn every_refusal_and_decision_leaves_its_record_and_the_chain_verifies() {
    let dir = std::env::temp_dir().join(format!("audit-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trail = dir.join("audit.db");
    let (issuer, jwks_uri) = jwks().await;
    let gateway = TestGateway::spawn(&config(&jwks_uri, &trail)).await;
    let token = |roles: &[&str], scope: &str| {
        issuer.token_with(json!({"sub": "user-42", "aud": RESOURCE, "tenant": "tenant-a", "roles": roles, "scope": scope}))
    };
    let viewer = token(&["viewer"], "tools:read");
    let editor = token(&["editor"], "tools:read");
    let wide = token(&["editor"], "tools:read greet:write");
    let steps = [
        (
            None,
            "fixture_echo",
            json!({"text": "hi"}),
            StatusCode::UNAUTHORIZED,
        ),
        (
            Some(viewer.as_str()),
            "fixture_echo",
            json!({"text": "hi"}),
            StatusCode::OK,
        ),
        (
            Some(viewer.as_str()),
            "fixture_echo",
            json!({"text": "SHOUT"}),
            StatusCode::OK,
        ),
        (
            Some(viewer.as_str()),
            "greet",
            json!({"name": "x"}),
            StatusCode::OK,
        ),
        (
            Some(editor.as_str()),
            "greet",
            json!({"name": "x"}),
            StatusCode::FORBIDDEN,
        ),
        (
            Some(wide.as_str()),
            "greet",
            json!({"name": "x"}),
            StatusCode::OK,
        ),
    ];
    for (token, tool, arguments, status) in steps {
        assert_eq!(
            call(&gateway.url, token, tool, arguments).await.0,
            status,
            "{tool}"
        );
    }
    // The last call was durable before it was forwarded; the ones before it were queued
    // first, so all are in the trail now.
    // Outcomes are queued after the answer is sent: give the writer a moment.
    let mut all_records = Vec::new();
    for _ in 0..100 {
        all_records = portcullis_audit::query(&trail, &Filter::default()).unwrap();
        if all_records.len() >= 8 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Each allowed call also has the record of its outcome, under the same correlation id.
    let (outcomes, records): (Vec<_>, Vec<_>) = all_records
        .iter()
        .cloned()
        .partition(|(_, r)| r.outcome.is_some());
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    for (_, outcome) in &outcomes {
        assert_eq!(outcome.outcome.as_deref(), Some("ok"));
        assert_eq!(outcome.upstream.as_deref(), Some("fixture"));
        assert!(
            records
                .iter()
                .any(|(_, decision)| decision.correlation == outcome.correlation
                    && decision.decision == AuditDecision::Allow)
        );
    }
    let seen: Vec<Seen<'_>> = records
        .iter()
        .map(|(_, r)| {
            (
                r.decision,
                r.capability.as_deref(),
                r.reasons.iter().map(String::as_str).collect(),
                r.status,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (AuditDecision::Deny, None, vec!["missing_token"], Some(401)),
            (
                AuditDecision::Allow,
                Some("fixture_echo"),
                vec!["permitted"],
                None
            ),
            (
                AuditDecision::Deny,
                Some("fixture_echo"),
                vec!["forbidden"],
                None
            ),
            (AuditDecision::Deny, Some("greet"), vec!["no_permit"], None),
            (
                AuditDecision::StepUp,
                Some("greet"),
                vec!["missing_scope"],
                Some(403)
            ),
            (AuditDecision::Allow, Some("greet"), vec!["permitted"], None),
        ]
    );
    let forbidden = &records[2].1;
    assert_eq!(forbidden.policies, ["no-shouting"]);
    assert_eq!(forbidden.subject.as_deref(), Some("user-42"));
    assert!(
        forbidden
            .arguments_digest
            .as_ref()
            .is_some_and(|d| d.len() == 64)
    );
    let all = serde_json::to_string(&records.iter().map(|(_, r)| r).collect::<Vec<_>>()).unwrap();
    assert!(
        !all.contains(&viewer) && !all.contains("SHOUT"),
        "no tokens, no raw arguments"
    );
    assert_eq!(
        portcullis_audit::verify(&trail).unwrap(),
        VerifyReport::Intact { records: 8 }
    );

    // The same story in /metrics, on the admin app.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = format!("http://{}/metrics", listener.local_addr().unwrap());
    let app = portcullis_gateway::http::admin_app(
        gateway.trail.clone(),
        gateway.gateway.clone(),
        portcullis_gateway::http::Draining::default(),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let metrics = reqwest::get(&admin).await.unwrap().text().await.unwrap();
    for line in [
        "portcullis_authentication_failures_total{reason=\"missing_token\"} 1",
        "portcullis_decisions_total{outcome=\"allow\",capability=\"greet\"} 1",
        "portcullis_decisions_total{outcome=\"deny\",capability=\"fixture_echo\"} 1",
        "portcullis_decisions_total{outcome=\"step-up\",capability=\"greet\"} 1",
        "portcullis_upstream_requests_total{upstream=\"fixture\",outcome=\"ok\"} 2",
        "portcullis_audit_records_total{sink=\"sqlite\"} 8",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }

    // A trail that cannot take the record: the state-changing call is refused, the read still
    // answers.
    let blocker = rusqlite_lock(&trail);
    let (_, refused) = call(&gateway.url, Some(&wide), "greet", json!({"name": "y"})).await;
    assert!(
        refused.contains("-32603") && refused.contains("pc-"),
        "{refused}"
    );
    drop(blocker);
    let (_, read) = call(
        &gateway.url,
        Some(&viewer),
        "fixture_echo",
        json!({"text": "ok"}),
    )
    .await;
    assert!(read.contains("\"ok\""), "{read}");
    // Refused before anything is parsed (DNS rebinding guard): recorded too.
    let rebound = reqwest::Client::new()
        .post(&gateway.url)
        .header("host", "evil.example")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), StatusCode::FORBIDDEN);
    let mut found = false;
    for _ in 0..100 {
        let records = portcullis_audit::query(&trail, &Filter::default()).unwrap();
        found = records
            .iter()
            .any(|(_, r)| r.reasons == ["host_not_allowed"] && r.status == Some(403));
        if found {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(found, "the Host refusal has its record");

    // A filtered list is a decision too: how many shown, how many withheld, never which.
    let (_, listed) = stateless_rpc(
        &gateway.url,
        Some(&viewer),
        "tools/list",
        json!({}),
        json!({}),
    )
    .await;
    assert!(
        listed.contains("fixture_echo") && !listed.contains("\"greet\""),
        "{listed}"
    );
    let mut list_record = None;
    for _ in 0..100 {
        let records = portcullis_audit::query(&trail, &Filter::default()).unwrap();
        // A list has two records: its decision (allowed to all: `list`) and what it showed.
        list_record = records
            .into_iter()
            .find(|(_, r)| r.method == "tools/list" && r.listed.is_some());
        if list_record.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (_, list_record) = list_record.expect("the list has its record");
    assert_eq!(list_record.subject.as_deref(), Some("user-42"));
    assert_eq!(list_record.reasons, ["filtered"]);
    assert!(
        list_record.listed.is_some_and(|n| n >= 1),
        "{list_record:?}"
    );
    assert!(
        list_record.withheld.is_some_and(|n| n >= 1),
        "{list_record:?}"
    );
    assert!(
        !serde_json::to_string(&list_record)
            .unwrap()
            .contains("greet")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the test reads off a record: decision, capability, reasons, HTTP status.
type Seen<'a> = (AuditDecision, Option<&'a str>, Vec<&'a str>, Option<u16>);

/// Another writer holding the database's write lock, as a stuck disk would.
fn rusqlite_lock(path: &std::path::Path) -> rusqlite::Connection {
    let connection = rusqlite::Connection::open(path).unwrap();
    connection.execute_batch("BEGIN EXCLUSIVE;").unwrap();
    connection
}

#[tokio::test]
async fn several_sinks_get_every_record() {
    let dir = std::env::temp_dir().join(format!("audit-sinks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trail = dir.join("audit.db");
    let lines = dir.join("audit.jsonl");
    let (issuer, jwks_uri) = jwks().await;
    let config =
        config(&jwks_uri, &trail).replace("[audit]\n", &format!("[audit]\njsonl = {lines:?}\n"));
    let gateway = TestGateway::spawn(&config).await;
    let viewer = issuer.token_with(json!({"sub": "user-42", "aud": RESOURCE, "roles": ["viewer"]}));
    for text in ["a", "SHOUT", "b"] {
        call(
            &gateway.url,
            Some(&viewer),
            "fixture_echo",
            json!({"text": text}),
        )
        .await;
    }
    call(&gateway.url, None, "fixture_echo", json!({})).await;
    let mut counts = (0, 0);
    for _ in 0..100 {
        let sqlite = portcullis_audit::verify(&trail).unwrap();
        let jsonl = portcullis_audit::verify_lines(&lines).unwrap();
        if let (VerifyReport::Intact { records: a }, VerifyReport::Intact { records: b }) =
            (sqlite, jsonl)
        {
            counts = (a, b);
            if a >= 6 && a == b {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Three decisions, two outcomes (the allowed calls), one 401: in both sinks.
    assert_eq!(counts, (6, 6));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn raw_arguments_are_kept_only_when_configured_and_redacted_field_by_field() {
    let dir = std::env::temp_dir().join(format!("audit-raw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let trail = dir.join("audit.db");
    let (issuer, jwks_uri) = jwks().await;
    let config = config(&jwks_uri, &trail).replace(
        "[audit]\n",
        "[audit]\nraw_arguments = true\nredact = [\"Name\"]\n",
    );
    let gateway = TestGateway::spawn(&config).await;
    let token = issuer.token_with(json!({"sub": "user-42", "aud": RESOURCE, "roles": ["viewer", "editor"], "scope": "tools:read greet:write"}));
    let greeting = json!({"name": "Ada", "session_token": "s3cr3t"});
    let (_, answer) = call(&gateway.url, Some(&token), "greet", greeting).await;
    assert!(answer.contains("Hello, Ada"), "{answer}");
    let echo = json!({"text": "visible"});
    call(&gateway.url, Some(&token), "fixture_echo", echo).await;
    let mut records = Vec::new();
    for _ in 0..100 {
        records = portcullis_audit::query(&trail, &Filter::default()).unwrap();
        if records.len() >= 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let kept = |tool: &str| {
        records
            .iter()
            .find(|(_, r)| r.capability.as_deref() == Some(tool) && r.outcome.is_none())
            .and_then(|(_, r)| r.arguments.clone())
    };
    assert_eq!(
        kept("greet"),
        Some(json!({"name": "[redacted]", "session_token": "[redacted]"}))
    );
    assert_eq!(kept("fixture_echo"), Some(json!({"text": "visible"})));
    let text = std::fs::read(&trail).unwrap();
    assert!(!String::from_utf8_lossy(&text).contains("s3cr3t"));
    assert!(matches!(
        portcullis_audit::verify(&trail).unwrap(),
        VerifyReport::Intact { .. }
    ));
    let _ = std::fs::remove_dir_all(&dir);
}
