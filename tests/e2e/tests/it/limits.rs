//! Issue 15: no caller, signed in or not, can crowd out another.

use portcullis_e2e::{DevIssuer, TestGateway, fixture_bin};
use serde_json::json;

use crate::{open_session, stdio_upstream};

const RESOURCE: &str = "http://127.0.0.1/mcp";
/// `MAX_SESSIONS_PER_CALLER` in the gateway.
const PER_CALLER: usize = 64;

/// The HTTP status of a `ping` in `session` as the holder of `token`.
async fn ping(http: &reqwest::Client, url: &str, token: &str, session: &str) -> u16 {
    http.post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-11-25")
        .body(json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string())
        .send()
        .await
        .expect("ping")
        .status()
        .as_u16()
}

// See: issue 15. One caller opened 2,000 sessions in 0.6 s with no per-caller cap. Past its cap
// a caller's own least recently used session ends; another caller's never does.
#[tokio::test]
async fn a_caller_that_opens_sessions_in_a_loop_ends_only_its_own_oldest() {
    let _ = fixture_bin();
    let issuer = DevIssuer::start("limits-sessions", RESOURCE, &[]).await;
    let config = format!(
        "[auth]\npublic_url = \"{RESOURCE}\"\n\n[[auth.issuer]]\nissuer = \"{}\"\n\n\
         [policy]\ncedar = \"permit (principal, action, resource);\"\n\n{}",
        issuer.issuer,
        stdio_upstream("fixture"),
    );
    let gateway = TestGateway::spawn(&config).await;
    let http = reqwest::Client::new();
    let victim = issuer.auth.mint("user-42", None).expect("token");
    let flooder = issuer.auth.mint("admin-a", None).expect("token");
    let kept = open_session(&http, &gateway.url, Some(&victim)).await;
    let first = open_session(&http, &gateway.url, Some(&flooder)).await;
    let mut last = String::new();
    for _ in 0..PER_CALLER + 5 {
        last = open_session(&http, &gateway.url, Some(&flooder)).await;
    }
    assert_eq!(
        ping(&http, &gateway.url, &flooder, &first).await,
        404,
        "its oldest ended"
    );
    assert_eq!(
        ping(&http, &gateway.url, &flooder, &last).await,
        200,
        "its newest lives"
    );
    assert_eq!(
        ping(&http, &gateway.url, &victim, &kept).await,
        200,
        "another caller's session is untouched"
    );
}

// See: issue 15. A TCP connection that sent nothing (or only an HTTP/2 preface) stayed open
// long after `header_timeout`: each one a descriptor and a task nobody could reclaim.
#[tokio::test]
async fn a_connection_that_sends_nothing_or_only_a_preface_is_closed_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = fixture_bin();
    let gateway = TestGateway::spawn(&format!(
        "[server]\nheader_timeout = \"300ms\"\n\n{}",
        stdio_upstream("fixture")
    ))
    .await;
    let address = gateway.base.trim_start_matches("http://").to_owned();
    for preface in [
        &b""[..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET / HTTP/1.1\r\n",
    ] {
        let mut socket = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connect");
        socket.write_all(preface).await.expect("write");
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            socket.read_to_end(&mut rest),
        )
        .await;
        assert!(
            closed.is_ok(),
            "{:?}: still open 3 s after a 300 ms header timeout; it answered {:?}",
            String::from_utf8_lossy(preface),
            String::from_utf8_lossy(&rest)
        );
    }
}

// See: issue 15. Each unauthenticated request wrote a chained record: a burst rotated a
// signed-in caller's records out of a JSON lines trail. Refusals before authentication are now
// counted per kind and window: one record, then one with the count.
#[tokio::test]
async fn a_flood_of_unauthenticated_requests_cannot_rotate_a_callers_records_away() {
    let _ = fixture_bin();
    let issuer = DevIssuer::start("limits-flood", RESOURCE, &[]).await;
    let dir = std::env::temp_dir().join(format!("limits-flood-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let trail = dir.join("audit.jsonl");
    let config = format!(
        "[auth]\npublic_url = \"{RESOURCE}\"\n\n[[auth.issuer]]\nissuer = \"{}\"\n\n\
         [policy]\ncedar = \"permit (principal, action, resource);\"\n\n\
         [audit]\njsonl = {trail:?}\njsonl_max_bytes = 20000\n\n{}",
        issuer.issuer,
        stdio_upstream("fixture"),
    );
    let gateway = TestGateway::spawn(&config).await;
    let http = reqwest::Client::new();
    let token = issuer.auth.mint("user-42", None).expect("token");
    let (status, _) = portcullis_e2e::stateless_rpc(
        &gateway.url,
        Some(&token),
        "tools/list",
        json!({}),
        json!({}),
    )
    .await;
    assert!(status.is_success());
    let flood = 1000;
    for _ in 0..flood {
        let _ = http
            .post(&gateway.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
            .send()
            .await
            .expect("post");
    }
    gateway.trail.flush_floods(true);
    let mut records = Vec::new();
    for _ in 0..100 {
        records = portcullis_audit::Store::Lines(trail.clone())
            .query(&portcullis_audit::Filter::default())
            .expect("the trail reads");
        if records.iter().any(|(_, r)| r.repeats.is_some()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        records
            .iter()
            .any(|(_, r)| r.subject.as_deref() == Some("user-42")),
        "the signed-in caller's record is still there"
    );
    let refusals: Vec<_> = records
        .iter()
        .filter(|(_, r)| r.subject.is_none())
        .collect();
    assert!(refusals.len() <= 3, "{} refusal records", refusals.len());
    let counted: u64 = refusals.iter().map(|(_, r)| r.repeats.unwrap_or(1)).sum();
    // A counted record stands for its `repeats`; the first of its window for itself.
    assert_eq!(counted, flood, "every refusal is counted");
    let _ = std::fs::remove_dir_all(&dir);
}

// See: issue 15. Nothing bounded how fast one signed-in caller could send. Past its rate it
// gets 429 with Retry-After, counted in the trail; another caller is not slowed.
#[tokio::test]
async fn a_caller_past_its_rate_gets_429_with_retry_after_and_another_does_not() {
    let _ = fixture_bin();
    let issuer = DevIssuer::start("limits-rate", RESOURCE, &[]).await;
    let config = format!(
        "[server]\ncaller_rate = 5\n\n[auth]\npublic_url = \"{RESOURCE}\"\n\n\
         [[auth.issuer]]\nissuer = \"{}\"\n\n\
         [policy]\ncedar = \"permit (principal, action, resource);\"\n\n{}",
        issuer.issuer,
        stdio_upstream("fixture"),
    );
    let gateway = TestGateway::spawn(&config).await;
    let flooder = issuer.auth.mint("admin-a", None).expect("token");
    let other = issuer.auth.mint("user-42", None).expect("token");
    let http = reqwest::Client::new();
    let list = |token: String| {
        let http = http.clone();
        let url = gateway.url.clone();
        async move {
            http.post(&url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", "tools/list")
                .body(
                    json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {
                        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                        "io.modelcontextprotocol/clientCapabilities": {}}}})
                    .to_string(),
                )
                .send()
                .await
                .expect("post")
        }
    };
    let mut limited = None;
    for _ in 0..30 {
        let answer = list(flooder.clone()).await;
        if answer.status().as_u16() == 429 {
            limited = Some(answer);
            break;
        }
    }
    let limited = limited.expect("the flooder is limited within 30 requests (rate 5, burst 10)");
    let retry = limited
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(retry.is_some_and(|s| (1..=2).contains(&s)), "{retry:?}");
    assert_eq!(
        list(other).await.status().as_u16(),
        200,
        "another caller is not slowed"
    );
}
