//! The durability contract under a crash: a load of state-changing calls against the real
//! `portcullis serve`, the process killed with SIGKILL mid-load, and restarted. Every call the
//! client saw succeed has its record, and the trail verifies.
//!
//! What this can and cannot catch: SIGKILL loses what is still in the process (a queued record
//! not yet handed to SQLite), not what the OS holds, so it catches records lost in the queue,
//! and a trail corrupted by a torn write. That a state-changing call waits for its record before
//! it is forwarded is proven by `audit.rs` (a trail that cannot write refuses the call), which
//! fails if that record were only queued; here, on a fast disk, the writer usually wins the
//! race anyway.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use portcullis_audit::{AuditDecision, Filter, VerifyReport, arguments_digest};
use portcullis_e2e::{HttpFixture, fixture_bin, workspace_bin};
use serde_json::json;

use crate::authn::{ISSUER, jwks};

const RESOURCE: &str = "http://127.0.0.1:8080/mcp";

async fn start(config: &std::path::Path) -> HttpFixture {
    HttpFixture::start_program(
        workspace_bin("portcullis", "portcullis"),
        &["serve", "--config", config.to_str().unwrap()],
    )
    .await
}

#[tokio::test]
async fn every_call_seen_to_succeed_before_a_sigkill_has_its_durable_record() {
    let dir = std::env::temp_dir().join(format!("crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let trail = dir.join("audit.db");
    let (issuer, jwks_uri) = jwks().await;
    let config = dir.join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[auth]\npublic_url = \"{RESOURCE}\"\n\n\
             [audit]\nsqlite = {trail:?}\n\n\
             [policy]\ncedar = \"permit (principal, action, resource);\"\n\n\
             [[capability]]\ntool = \"fixture_echo\"\nrisk = \"write\"\n\n\
             [[auth.issuer]]\nissuer = \"{ISSUER}\"\njwks_uri = \"{jwks_uri}\"\n\n\
             [[upstream]]\nname = \"fixture\"\ncommand = {:?}\nargs = [\"--stdio\"]\n",
            fixture_bin()
        ),
    )
    .unwrap();
    let token = issuer.token_with(json!({"sub": "loader", "aud": RESOURCE}));
    let mut gateway = start(&config).await;
    let succeeded: Arc<Mutex<Vec<String>>> = Arc::default();
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let url = gateway.url.clone();
            let token = token.clone();
            let succeeded = succeeded.clone();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for i in 0.. {
                    let text = format!("w{worker}-{i}");
                    let body = json!({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {
                        "name": "fixture_echo", "arguments": {"text": text},
                        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                  "io.modelcontextprotocol/clientCapabilities": {}}}});
                    let answer = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("accept", "application/json, text/event-stream")
                        .header("mcp-protocol-version", "2026-07-28")
                        .header("mcp-method", "tools/call")
                        .header("mcp-name", "fixture_echo")
                        .bearer_auth(&token)
                        .body(body.to_string())
                        .send()
                        .await;
                    let Ok(answer) = answer else { break };
                    let Ok(text_back) = answer.text().await else {
                        break;
                    };
                    // Success as the client sees it: the upstream's answer came back.
                    if text_back.contains(&format!("\"{text}\"")) {
                        succeeded.lock().unwrap().push(text);
                    }
                }
            })
        })
        .collect();
    // Let the load run, then kill the gateway without warning.
    while succeeded.lock().unwrap().len() < 200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gateway.kill().await;
    for worker in workers {
        let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
    }
    let succeeded = succeeded.lock().unwrap().clone();
    // Restarted on the same trail: it continues the chain.
    let restarted = start(&config).await;
    drop(restarted);
    let records = portcullis_audit::query(
        &trail,
        &Filter {
            decision: Some(AuditDecision::Allow.as_str().to_owned()),
            ..Filter::default()
        },
    )
    .unwrap();
    let recorded: HashSet<&str> = records
        .iter()
        .filter_map(|(_, r)| r.arguments_digest.as_deref())
        .collect();
    let missing: Vec<&String> = succeeded
        .iter()
        .filter(|text| !recorded.contains(arguments_digest(&json!({"text": text})).as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} successes unrecorded: {missing:?}",
        missing.len(),
        succeeded.len()
    );
    assert!(matches!(
        portcullis_audit::verify(&trail).unwrap(),
        VerifyReport::Intact { .. }
    ));
    let _ = std::fs::remove_dir_all(&dir);
}
