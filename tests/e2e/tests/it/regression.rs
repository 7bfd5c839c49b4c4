// See: issue 12. Against the real `portcullis demo`, signed in as user-42 (a tenant-a viewer),
// a `tools/call` naming `delete_record` twice deleted a tenant-a record: the authorization
// layer and the server behind it read the same body differently, and what one could not type
// went upstream undecided. Each body below is refused (or decided and denied), recorded, and
// deletes nothing, in both eras.

use std::time::Duration;

use portcullis_e2e::{last_message, workspace_bin};
use serde_json::Value;

use crate::binary::start_demo;
use crate::open_session;

/// Requests that must not delete REC-A2, each with the JSON-RPC code its answer carries.
fn attempts() -> Vec<(&'static str, String, i64)> {
    let call = |params: &str| {
        format!(r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{params}}}"#)
    };
    vec![
        (
            "the name twice",
            call(r#"{"name":"delete_record","name":"delete_record","arguments":{"id":"REC-A2"}}"#),
            -32700,
        ),
        (
            "the name twice, spelled with an escape",
            call(r#"{"name":"delete_record","na\u006de":"delete_record","arguments":{"id":"REC-A2"}}"#),
            -32700,
        ),
        (
            "the arguments twice",
            call(r#"{"name":"search_policies","arguments":{"query":"x"},"arguments":{"id":"REC-A2"}}"#),
            -32700,
        ),
        (
            "the method twice",
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/list","method":"tools/call","params":{"name":"delete_record","arguments":{"id":"REC-A2"}}}"#.to_owned(),
            -32700,
        ),
        (
            "another casing of the method",
            r#"{"jsonrpc":"2.0","id":7,"method":"Tools/Call","params":{"name":"delete_record","arguments":{"id":"REC-A2"}}}"#.to_owned(),
            -32601,
        ),
        (
            "a name of the wrong type",
            call(r#"{"name":["delete_record"],"arguments":{"id":"REC-A2"}}"#),
            -32602,
        ),
        (
            "the plain call, as a viewer",
            call(r#"{"name":"delete_record","arguments":{"id":"REC-A2"}}"#),
            -32602,
        ),
    ]
}

#[tokio::test]
async fn a_viewer_naming_delete_record_twice_deletes_nothing_and_is_recorded() {
    let data_dir =
        std::env::temp_dir().join(format!("portcullis-regression-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let data = data_dir.to_str().expect("utf-8 temp dir");
    let (_demo, url) = start_demo(data).await;
    let token = cli_token(data, "user-42");
    let records = data_dir.join("workspace.db");
    assert_eq!(
        count(&records, "REC-A2"),
        1,
        "the record exists to begin with"
    );
    let http = reqwest::Client::new();
    for era in ["2025-11-25", "2026-07-28"] {
        let session = match era {
            "2025-11-25" => Some(open_session(&http, &url, Some(&token)).await),
            _ => None,
        };
        for (what, body, code) in attempts() {
            let mut request = http
                .post(&url)
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", era);
            match &session {
                Some(session) => request = request.header("mcp-session-id", session),
                None => {
                    // A stateless request: its headers say what a lenient reader of the body
                    // (one that keeps the last of two members) takes it for.
                    let lenient: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    let method = lenient["method"]
                        .as_str()
                        .unwrap_or("tools/call")
                        .to_owned();
                    request = request
                        .header("mcp-method", method)
                        .header("mcp-name", "delete_record");
                }
            }
            let body = match era {
                "2026-07-28" => with_meta(&body),
                _ => body,
            };
            let answer = request.body(body).send().await.expect("post");
            let status = answer.status();
            let text = answer.text().await.expect("body");
            let message: Value = serde_json::from_str(&last_message(&text)).unwrap_or(Value::Null);
            assert_eq!(
                message["error"]["code"], code,
                "{era}, {what}: {status} {text}"
            );
            assert_eq!(
                count(&records, "REC-A2"),
                1,
                "{era}, {what}: nothing deleted"
            );
        }
    }
    // Every refusal is on record, as this caller's, and nothing ran.
    let mut refused = 0;
    for _ in 0..100 {
        let trail = portcullis_audit::query(
            &data_dir.join("audit.db"),
            &portcullis_audit::Filter::default(),
        )
        .expect("the demo's trail reads");
        let mine: Vec<_> = trail
            .iter()
            .filter(|(_, r)| r.subject.as_deref() == Some("user-42"))
            .collect();
        assert!(
            !mine
                .iter()
                .any(|(_, r)| r.outcome.is_some()
                    && r.capability.as_deref() == Some("delete_record")),
            "nothing reached the backend"
        );
        refused = mine
            .iter()
            .filter(|(_, r)| r.decision == portcullis_audit::AuditDecision::Deny)
            .count();
        if refused >= 2 * attempts().len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        refused,
        2 * attempts().len(),
        "each refusal, in both eras, has its record"
    );
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// A 2026-07-28 body: the same message with the `_meta` the era requires.
fn with_meta(body: &str) -> String {
    let meta = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}},"#;
    body.replacen(r#""params":{"#, &format!(r#""params":{{{meta}"#), 1)
}

pub(crate) fn cli_token(data: &str, subject: &str) -> String {
    let token = std::process::Command::new(workspace_bin("portcullis", "portcullis"))
        .args(["token", "--as", subject, "--data-dir", data])
        .output()
        .expect("portcullis token");
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    String::from_utf8(token.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// How many records with `id` the demo's backend holds.
fn count(db: &std::path::Path, id: &str) -> i64 {
    let connection =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the backend's database");
    connection
        .query_row("SELECT count(*) FROM records WHERE id = ?1", [id], |row| {
            row.get(0)
        })
        .expect("count")
}
