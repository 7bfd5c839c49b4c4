//! Consent through the gateway: a call that policy allows only with a person's approval asks
//! for it in the caller's era (an elicitation on the call's stream; an input-required result
//! with a sealed requestState), runs once when approved, not at all when declined, and every
//! attempt to forge or reuse an approval is refused and recorded.

use portcullis_audit::{AuditDecision, AuditRecord, Filter};
use portcullis_e2e::{Era, TestClient, TestGateway, connect_as, stateless_rpc};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

use crate::{
    authn::{Issuer, jwks},
    stdio_upstream,
};

const RESOURCE: &str = "http://127.0.0.1:8080/mcp";

fn config(jwks_uri: &str, trail: &std::path::Path, ttl: &str) -> String {
    format!(
        "[auth]\npublic_url = \"{RESOURCE}\"\n\n\
         [audit]\nsqlite = {trail:?}\n\n\
         [consent]\nttl = \"{ttl}\"\n\n\
         [policy]\ncedar = '''\n\
         @id(\"editors-greet-with-approval\")\n@approval(\"required\")\n\
         permit (principal in Role::\"editor\", action == Action::\"tool:greet\", resource);\n\
         @id(\"admins-grant\")\n\
         permit (principal in Role::\"admin\", action == Action::\"tool:test_simple_text\", resource);\n'''\n\n\
         [[capability]]\ntool = \"greet\"\nrisk = \"write\"\n\
         consent = \"Send a greeting to {{name}}.\"\n\n\
         [[capability]]\ntool = \"test_simple_text\"\nrisk = \"admin\"\n\n\
         [[auth.issuer]]\nissuer = \"{}\"\njwks_uri = \"{jwks_uri}\"\n\n{}",
        crate::authn::ISSUER,
        stdio_upstream("fixture")
    )
}

fn token(issuer: &Issuer, subject: &str, roles: &[&str]) -> String {
    issuer.token_with(json!({"sub": subject, "aud": RESOURCE, "roles": roles}))
}

struct Setup {
    gateway: TestGateway,
    issuer: Issuer,
    trail: std::path::PathBuf,
    dir: std::path::PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn setup(label: &str, ttl: &str) -> Setup {
    let dir = std::env::temp_dir().join(format!("consent-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let trail = dir.join("audit.db");
    let (issuer, jwks_uri) = jwks().await;
    let gateway = TestGateway::spawn(&config(&jwks_uri, &trail, ttl)).await;
    Setup {
        gateway,
        issuer,
        trail,
        dir,
    }
}

/// The records of `subject`, once at least `want` of them are in the trail.
async fn records_of(trail: &std::path::Path, subject: &str, want: usize) -> Vec<AuditRecord> {
    let filter = Filter {
        subject: Some(subject.to_owned()),
        ..Filter::default()
    };
    let mut records = Vec::new();
    for _ in 0..100 {
        records = portcullis_audit::query(trail, &filter)
            .unwrap()
            .into_iter()
            .map(|(_, record)| record)
            .collect();
        if records.len() >= want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    records
}

/// (decision, first reason, whether it names an approval, whether it is an outcome)
fn story(records: &[AuditRecord]) -> Vec<(AuditDecision, String, bool, bool)> {
    records
        .iter()
        .map(|r| {
            (
                r.decision,
                r.reasons.first().cloned().unwrap_or_default(),
                r.consent.is_some(),
                r.outcome.is_some(),
            )
        })
        .collect()
}

#[tokio::test]
async fn approved_runs_once_and_declined_does_not_in_both_eras() {
    let setup = setup("eras", "10m").await;
    for (era, label) in [(Era::Sessions, "s"), (Era::Stateless, "t")] {
        for approves in [true, false] {
            let subject = format!("editor-{label}-{approves}");
            let token = token(&setup.issuer, &subject, &["editor"]);
            let client = TestClient {
                approves: Some(approves),
                ..TestClient::default()
            };
            let asked = client.elicitations.clone();
            let service = connect_as(&setup.gateway.url, era, client, Some(&token)).await;
            let mut call = CallToolRequestParams::new("greet");
            call.arguments = json!({"name": "Ada"}).as_object().cloned();
            let answer = service.call_tool(call).await;
            let questions = asked.lock().unwrap().clone();
            assert_eq!(questions.len(), 1, "{subject}: {questions:?}");
            assert!(
                questions[0].starts_with("Approve this action?\n\nSend a greeting to Ada."),
                "{}",
                questions[0]
            );
            let ask = (
                AuditDecision::AskApproval,
                "approval_required".to_owned(),
                false,
                false,
            );
            let requested = (
                AuditDecision::AskApproval,
                "approval_requested".to_owned(),
                true,
                false,
            );
            let mut expected = vec![ask.clone(), requested];
            if era == Era::Sessions {
                // Opening the session is recorded too.
                let opened = (
                    AuditDecision::Allow,
                    "session_opened".to_owned(),
                    false,
                    false,
                );
                expected.insert(0, opened);
            }
            if era == Era::Stateless {
                // The retry that brings the answer back is decided again.
                expected.push(ask);
            }
            if approves {
                let text = serde_json::to_string(&answer.unwrap()).unwrap();
                assert!(text.contains("Hello, Ada"), "{text}");
                expected.push((AuditDecision::Approved, "approved".to_owned(), true, false));
                // The outcome names the approval it ran under.
                expected.push((AuditDecision::Allow, String::new(), true, true));
            } else {
                let error = format!("{:?}", answer.unwrap_err());
                assert!(
                    error.contains("-31002") && error.contains("declined"),
                    "{error}"
                );
                expected.push((AuditDecision::Declined, "declined".to_owned(), true, false));
            }
            let records = records_of(&setup.trail, &subject, expected.len()).await;
            let seen = story(&records);
            // Outcome records carry no reasons; compare them on decision and kind only.
            let seen: Vec<_> = seen
                .into_iter()
                .map(|(d, r, c, o)| (d, if o { String::new() } else { r }, c, o))
                .collect();
            assert_eq!(seen, expected, "{subject}");
            // The approval's reference is the same from request to answer.
            let references: Vec<_> = records.iter().filter_map(|r| r.consent.clone()).collect();
            assert!(
                references.windows(2).all(|pair| pair[0] == pair[1]),
                "{references:?}"
            );
            service.cancel().await.unwrap();
        }
    }
}

/// A 2026-07-28 call of greet with `arguments`, carrying `state` and `answer` when given.
async fn greet(
    url: &str,
    token: &str,
    arguments: Value,
    state: Option<&str>,
    answer: Option<Value>,
) -> Value {
    let mut params = json!({"name": "greet", "arguments": arguments});
    if let Some(state) = state {
        params["requestState"] = json!(state);
        params["inputResponses"] = json!({"approval": answer.unwrap_or(json!({"action": "accept", "content": {"approve": true}}))});
    }
    let capabilities = json!({"elicitation": {"form": {}}});
    let (_, body) = stateless_rpc(url, Some(token), "tools/call", params, capabilities).await;
    let line = portcullis_e2e::last_message(&body);
    serde_json::from_str(&line).unwrap()
}

fn state_of(answer: &Value) -> String {
    assert_eq!(answer["result"]["resultType"], "input_required", "{answer}");
    answer["result"]["requestState"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn refused(answer: &Value, word: &str) {
    assert_eq!(answer["error"]["code"], -31002, "{answer}");
    assert_eq!(answer["error"]["data"]["approval"], word, "{answer}");
}

#[tokio::test]
async fn forged_replayed_and_expired_approvals_are_refused_and_recorded() {
    // Long enough for the steps before the expiry check on a loaded machine; that check waits it out.
    let setup = setup("forge", "4s").await;
    let url = &setup.gateway.url;
    let ada = token(&setup.issuer, "ada", &["editor"]);
    let bob = token(&setup.issuer, "bob", &["editor"]);
    let asked = greet(url, &ada, json!({"name": "A"}), None, None).await;
    let message = &asked["result"]["inputRequests"]["approval"]["params"]["message"];
    assert!(
        message.as_str().unwrap().contains("Send a greeting to A."),
        "{asked}"
    );
    let state = state_of(&asked);

    // For other arguments, by another subject, altered: refused, and the state is not spent.
    refused(
        &greet(url, &ada, json!({"name": "B"}), Some(&state), None).await,
        "invalid",
    );
    refused(
        &greet(url, &bob, json!({"name": "A"}), Some(&state), None).await,
        "invalid",
    );
    let mut altered = state.clone();
    altered.insert(8, 'x');
    refused(
        &greet(url, &ada, json!({"name": "A"}), Some(&altered), None).await,
        "invalid",
    );
    // Declined in the answer: not run, and the approval is used up.
    let declined = json!({"action": "decline"});
    let other = state_of(&greet(url, &ada, json!({"name": "C"}), None, None).await);
    refused(
        &greet(
            url,
            &ada,
            json!({"name": "C"}),
            Some(&other),
            Some(declined),
        )
        .await,
        "declined",
    );
    refused(
        &greet(url, &ada, json!({"name": "C"}), Some(&other), None).await,
        "invalid",
    );
    // Accepted: runs once; the same state again is refused.
    let ran = greet(url, &ada, json!({"name": "A"}), Some(&state), None).await;
    assert!(ran.to_string().contains("Hello, A"), "{ran}");
    refused(
        &greet(url, &ada, json!({"name": "A"}), Some(&state), None).await,
        "invalid",
    );
    // Past its expiry.
    let late = state_of(&greet(url, &ada, json!({"name": "D"}), None, None).await);
    tokio::time::sleep(std::time::Duration::from_millis(4_100)).await;
    refused(
        &greet(url, &ada, json!({"name": "D"}), Some(&late), None).await,
        "invalid",
    );

    let records = records_of(&setup.trail, "ada", 21).await;
    let reasons: Vec<String> = records
        .iter()
        .filter(|r| r.decision != AuditDecision::AskApproval)
        .map(|r| format!("{}:{}", r.decision.as_str(), r.reasons.join(",")))
        .collect();
    assert_eq!(
        reasons,
        [
            "deny:approval_other_call",
            "deny:approval_forged",
            "declined:declined",
            "deny:approval_spent",
            "approved:approved",
            "allow:",
            "deny:approval_spent",
            "deny:approval_expired",
        ]
    );
    let bob_records = records_of(&setup.trail, "bob", 2).await;
    assert!(
        bob_records
            .iter()
            .any(|r| r.reasons == ["approval_other_subject"]),
        "{bob_records:?}"
    );
    let outcomes = records.iter().filter(|r| r.outcome.is_some()).count();
    assert_eq!(outcomes, 1, "greet ran exactly once");
}

#[tokio::test]
async fn approval_that_cannot_be_asked_is_a_clear_refusal() {
    let setup = setup("cannot", "10m").await;
    let url = &setup.gateway.url;
    // A client that declared no elicitation.
    let ada = token(&setup.issuer, "ada", &["editor"]);
    let params = json!({"name": "greet", "arguments": {"name": "A"}});
    let (_, body) = stateless_rpc(url, Some(&ada), "tools/call", params, json!({})).await;
    let answer: Value = serde_json::from_str(&portcullis_e2e::last_message(&body)).unwrap();
    refused(&answer, "unsupported");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot show an approval request"),
        "{answer}"
    );
    // A high-risk tier: answering a form is not enough, whatever the client supports.
    let admin = token(&setup.issuer, "root", &["admin"]);
    let params = json!({"name": "test_simple_text", "arguments": {}});
    let capabilities = json!({"elicitation": {"form": {}}});
    let (_, body) = stateless_rpc(url, Some(&admin), "tools/call", params, capabilities).await;
    let answer: Value = serde_json::from_str(&portcullis_e2e::last_message(&body)).unwrap();
    refused(&answer, "out-of-band");
    let ada_records = records_of(&setup.trail, "ada", 2).await;
    assert!(
        ada_records
            .iter()
            .any(|r| r.reasons == ["approval_unsupported"])
    );
    let root_records = records_of(&setup.trail, "root", 2).await;
    assert!(
        root_records
            .iter()
            .any(|r| r.reasons == ["approval_out_of_band"])
    );
}

// See: review of issue 14. The approval question showed every argument pretty-printed: deep
// nesting made a 4 MiB call a question of hundreds of megabytes, kept while it waited. A call
// whose arguments are too large to show a person whole is refused (and recorded), never asked.
#[tokio::test]
async fn a_call_too_large_to_show_a_person_is_refused_not_asked() {
    let setup = setup("too-large", "60s").await;
    let ada = token(&setup.issuer, "ada", &["editor"]);
    let nested = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let answer = greet(
        &setup.gateway.url,
        &ada,
        json!({"name": "x".repeat(70 * 1024), "deep": serde_json::from_str::<Value>(&nested).unwrap()}),
        None,
        None,
    )
    .await;
    refused(&answer, "too-large");
    let records = records_of(&setup.trail, "ada", 2).await;
    assert!(
        records.iter().any(|r| r
            .reasons
            .iter()
            .any(|reason| reason == "approval_too_large")),
        "{records:?}"
    );
    // A small call is still asked about.
    let small = greet(&setup.gateway.url, &ada, json!({"name": "Ada"}), None, None).await;
    assert_eq!(small["result"]["resultType"], "input_required", "{small}");
}
