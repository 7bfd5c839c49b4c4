//! 2025-11-25 request streams are resumable: a client that loses a call's stream gets the rest
//! with `GET` and `Last-Event-ID`, and losing the connection does not cancel the call.

use std::time::Duration;

use portcullis_e2e::{TestGateway, fixture_bin};
use serde_json::json;

use crate::{open_session, stdio_upstream};

const SSE: &str = "application/json, text/event-stream";

/// The `id:` of each event in `text`, in order.
fn event_ids(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("id: "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_call_whose_stream_broke_is_finished_and_its_answer_fetched_with_last_event_id() {
    let _ = fixture_bin();
    let gateway = TestGateway::spawn(&stdio_upstream("fixture")).await;
    let http = reqwest::Client::new();
    let session = open_session(&http, &gateway.url, None).await;
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "fixture_slow", "arguments": {"ms": 700}}});
    let mut response = http
        .post(&gateway.url)
        .header("content-type", "application/json")
        .header("accept", SSE)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .body(call.to_string())
        .send()
        .await
        .expect("call");
    assert_eq!(response.status(), 200);
    // The slow call's stream opens with the priming event: an id, a retry hint, no data.
    let priming = tokio::time::timeout(Duration::from_secs(5), response.chunk())
        .await
        .expect("the stream opens before the call ends")
        .expect("a chunk")
        .expect("not the end");
    let priming = String::from_utf8_lossy(&priming).into_owned();
    assert!(priming.contains("retry: "), "{priming}");
    assert!(
        !priming.contains("\"result\""),
        "only the priming event: {priming}"
    );
    let seen = event_ids(&priming)
        .pop()
        .expect("the priming event has an id");
    // The connection breaks.
    drop(response);
    // The rest, asked for with the last id seen: the call ran to its end.
    let resumed = http
        .get(&gateway.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-11-25")
        .header("last-event-id", &seen)
        .send()
        .await
        .expect("resume");
    assert_eq!(resumed.status(), 200);
    let rest = tokio::time::timeout(Duration::from_secs(10), resumed.text())
        .await
        .expect("the resumed stream ends with the answer")
        .expect("body");
    let answer = rest
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .find(|data| data.contains("\"id\":7"))
        .unwrap_or_else(|| panic!("the call's answer on the resumed stream: {rest}"));
    assert!(answer.contains("done"), "{answer}");
    let ids = event_ids(&rest);
    assert!(
        !ids.is_empty() && !ids.contains(&seen),
        "only unseen events: {ids:?}"
    );

    // Asked again from the same point, the same events (a client may lose a resumed stream too).
    let again = http
        .get(&gateway.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("last-event-id", &seen)
        .send()
        .await
        .expect("resume again")
        .text()
        .await
        .expect("body");
    assert_eq!(event_ids(&again), ids);

    // An id of a stream the session never had, or no longer keeps, is refused, not ignored.
    let forgotten = http
        .get(&gateway.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("last-event-id", "999-0")
        .send()
        .await
        .expect("resume forgotten");
    assert_eq!(forgotten.status(), 400);

    // Another session cannot resume this one's stream: stream ids are per session, and that
    // session has had no stream of that number.
    let other = open_session(&http, &gateway.url, None).await;
    let stranger = http
        .get(&gateway.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &other)
        .header("last-event-id", &seen)
        .send()
        .await
        .expect("resume from another session");
    assert_eq!(stranger.status(), 400);
    gateway.shutdown().await;
}
