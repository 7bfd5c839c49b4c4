//! Traces: the gateway, run as the binary with `[telemetry]`, sends its spans to an OTLP/HTTP
//! receiver (decoded with the OpenTelemetry project's own message definitions), continues the
//! caller's trace (its `traceparent` header, or a 2026-07-28 request's `_meta.traceparent`),
//! and passes the trace on to the upstream, whose parent is a span the gateway exported. No
//! token or argument value is in any span.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Body, extract::State, response::Response};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, common::v1::any_value,
};
use portcullis_e2e::{Carried, HttpFixture, recording_proxy};
use prost::Message as _;
use serde_json::json;
use tokio::io::AsyncBufReadExt as _;

use crate::authn::{ISSUER, jwks};

/// One exported span: trace, id, parent (hex), name, and its attributes as text.
#[derive(Debug, Clone)]
struct Exported {
    trace: String,
    id: String,
    parent: String,
    name: String,
    attributes: Vec<(String, String)>,
    service: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// An OTLP/HTTP traces receiver: every span of every export, decoded.
async fn receiver() -> (String, Arc<Mutex<Vec<Exported>>>) {
    let spans: Arc<Mutex<Vec<Exported>>> = Arc::default();
    let app = Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(
                |State(spans): State<Arc<Mutex<Vec<Exported>>>>, body: axum::body::Bytes| async move {
                    let request = ExportTraceServiceRequest::decode(body).unwrap();
                    for resource in request.resource_spans {
                        let service = resource
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .find(|kv| kv.key == "service.name")
                            .map(|kv| text(kv.value.as_ref()))
                            .unwrap_or_default();
                        for scope in resource.scope_spans {
                            for span in scope.spans {
                                spans.lock().unwrap().push(Exported {
                                    trace: hex(&span.trace_id),
                                    id: hex(&span.span_id),
                                    parent: hex(&span.parent_span_id),
                                    name: span.name,
                                    attributes: span
                                        .attributes
                                        .iter()
                                        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                                        .collect(),
                                    service: service.clone(),
                                });
                            }
                        }
                    }
                    Response::builder()
                        .status(200)
                        .header("content-type", "application/x-protobuf")
                        .body(Body::empty())
                        .unwrap()
                },
            ),
        )
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, spans)
}

/// What the upstream was sent, request by request: (method, `traceparent` header,
/// `_meta.traceparent`, the body).
fn sent_upstream(carried: &Carried) -> Vec<(String, Option<String>, Option<String>, String)> {
    carried
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(headers, body)| {
            let message: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let method = message.get("method")?.as_str()?.to_owned();
            Some((
                method,
                headers
                    .get("traceparent")
                    .map(|v| v.to_str().unwrap().to_owned()),
                message
                    .pointer("/params/_meta/traceparent")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned),
                String::from_utf8_lossy(body).into_owned(),
            ))
        })
        .collect()
}

#[tokio::test]
async fn spans_reach_an_otlp_receiver_and_the_trace_crosses_the_gateway_to_the_upstream() {
    let (collector, spans) = receiver().await;
    let fixture = HttpFixture::start().await;
    let (proxy, sent) = recording_proxy(fixture.url.clone()).await;
    let (issuer, jwks_uri) = jwks().await;
    let config =
        std::env::temp_dir().join(format!("portcullis-traces-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n\
             [auth]\npublic_url = \"http://127.0.0.1:8080/mcp\"\n\n\
             [policy]\ncedar = \"permit (principal, action, resource);\"\n\n\
             [[auth.issuer]]\nissuer = \"{ISSUER}\"\njwks_uri = \"{jwks_uri}\"\n\n\
             [telemetry]\notlp_endpoint = \"{collector}\"\nservice_name = \"gw-under-test\"\n\n\
             [[upstream]]\nname = \"fixture\"\nurl = \"{proxy}\"\n"
        ),
    )
    .unwrap();
    let mut gateway =
        tokio::process::Command::new(portcullis_e2e::workspace_bin("portcullis", "portcullis"))
            .args(["serve", "--config", &config.to_string_lossy()])
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
    let mut stdout = tokio::io::BufReader::new(gateway.stdout.take().unwrap()).lines();
    let url = loop {
        let line = stdout.next_line().await.unwrap().unwrap();
        if let Some(url) = line.strip_prefix("listening ") {
            break url.to_owned();
        }
    };
    let token = issuer.token_with(json!({"sub": "user-42", "aud": "http://127.0.0.1:8080/mcp"}));
    let secret = "argument-value-nobody-may-see";
    let call = |meta: serde_json::Value| {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "fixture_echo", "arguments": {"text": secret},
            "_meta": meta}})
    };
    let base_meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                           "io.modelcontextprotocol/clientCapabilities": {}});
    let (trace_a, parent_a) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let (trace_b, parent_b) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let http = reqwest::Client::new();
    let post = |body: serde_json::Value, traceparent: Option<String>| {
        let mut request = http
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "fixture_echo")
            .bearer_auth(&token)
            .body(body.to_string());
        if let Some(traceparent) = traceparent {
            request = request.header("traceparent", traceparent);
        }
        request.send()
    };
    // A: the trace context in the HTTP header.
    let a = post(
        call(base_meta.clone()),
        Some(format!("00-{trace_a}-{parent_a}-01")),
    )
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(a.contains(secret), "{a}");
    // B: in `_meta`, as a 2026-07-28 request carries it.
    let mut meta_b = base_meta.clone();
    meta_b["traceparent"] = json!(format!("00-{trace_b}-{parent_b}-01"));
    meta_b["tracestate"] = json!("caller=state-of-its-own");
    let b = post(call(meta_b), None)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(b.contains(secret), "{b}");

    // C: a 2025-11-25 session (its call answered on a stream, worked on in a task of its own).
    let (trace_c, parent_c) = ("5bf92f3577b34da6a3ce929d0e0e4736", "10f067aa0ba902b7");
    let session_post =
        |body: serde_json::Value, session: Option<&str>, traceparent: Option<String>| {
            let mut request = http
                .post(&url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .bearer_auth(&token)
                .body(body.to_string());
            if let Some(session) = session {
                request = request
                    .header("mcp-session-id", session)
                    .header("mcp-protocol-version", "2025-11-25");
            }
            if let Some(traceparent) = traceparent {
                request = request.header("traceparent", traceparent);
            }
            request.send()
        };
    let opened = session_post(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "traces", "version": "1"}}}),
        None,
        None,
    )
    .await
    .unwrap();
    let session = opened.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let _ = opened.text().await;
    let _ = session_post(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        Some(&session),
        None,
    )
    .await
    .unwrap()
    .text()
    .await;
    let c = session_post(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "fixture_echo", "arguments": {"text": secret}}}),
        Some(&session),
        Some(format!("00-{trace_c}-{parent_c}-01")),
    )
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(c.contains(secret), "{c}");
    // D: a caller that does not authenticate joins no trace.
    let trace_d = "6bf92f3577b34da6a3ce929d0e0e4736";
    let _ = http
        .post(&url)
        .header("content-type", "application/json")
        .header("traceparent", format!("00-{trace_d}-20f067aa0ba902b7-01"))
        .body(call(base_meta.clone()).to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await;

    let named = |trace: &str, name: &str| {
        spans
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.trace == trace && s.name == name)
            .cloned()
    };
    // A request's span is exported when it closes, which for a streamed answer is a moment
    // after the client read the answer: wait for every span expected.
    for _ in 0..200 {
        let complete = [trace_a, trace_b, trace_c].iter().all(|trace| {
            ["request", "authenticate", "decide", "forward", "audit"]
                .iter()
                .all(|name| named(trace, name).is_some())
        });
        // D's refusal exported too (its authentication refused), wherever it went.
        let refused = spans.lock().unwrap().iter().any(|s| {
            s.name == "authenticate"
                && s.attributes
                    .iter()
                    .any(|(k, v)| k == "outcome" && v == "refused")
        });
        if complete && refused {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = spans.lock().unwrap().clone();
    for (trace, parent) in [
        (trace_a, parent_a),
        (trace_b, parent_b),
        (trace_c, parent_c),
    ] {
        let request = named(trace, "request")
            .unwrap_or_else(|| panic!("no request span in {trace}: {all:#?}"));
        assert_eq!(
            request.parent, parent,
            "the request continues the caller's span"
        );
        assert_eq!(request.service, "gw-under-test");
        for step in ["authenticate", "decide", "forward", "audit"] {
            let span =
                named(trace, step).unwrap_or_else(|| panic!("no {step} span in {trace}: {all:#?}"));
            assert_ne!(span.id, request.id);
        }
        let forward = named(trace, "forward").unwrap();
        let decide = named(trace, "decide").unwrap();
        assert_eq!(
            decide.parent, request.id,
            "a step is a child of its request"
        );
        assert!(
            decide
                .attributes
                .iter()
                .any(|(k, v)| k == "outcome" && v == "allow"),
            "{decide:?}"
        );
        // The hop: what the upstream was sent names this trace and the forward span.
        let expected = format!("00-{trace}-{}-01", forward.id);
        let sent = sent_upstream(&sent);
        let call = sent
            .iter()
            .find(|(method, header, _, _)| {
                method == "tools/call" && header.as_deref().is_some_and(|h| h.contains(trace))
            })
            .unwrap_or_else(|| panic!("the upstream saw no call in {trace}: {sent:?}"));
        assert_eq!(call.1.as_deref(), Some(expected.as_str()), "header");
        assert_eq!(call.2.as_deref(), Some(expected.as_str()), "_meta");
    }
    let refused = all
        .iter()
        .find(|s| {
            s.name == "authenticate"
                && s.attributes
                    .iter()
                    .any(|(k, v)| k == "outcome" && v == "refused")
        })
        .expect("the refused caller's authentication was exported");
    assert_ne!(refused.trace, trace_d);
    assert!(
        !all.iter().any(|s| s.trace == trace_d),
        "an unauthenticated caller's request joined its trace"
    );
    let sent = sent_upstream(&sent);
    assert!(
        !sent
            .iter()
            .any(|(_, _, _, body)| body.contains("state-of-its-own")),
        "the caller's tracestate went upstream"
    );
    // Nothing of the caller's in any span: its token, its arguments.
    let everything = format!("{all:?}");
    assert!(
        !everything.contains(secret),
        "an argument value reached a span"
    );
    assert!(!everything.contains(&token), "a token reached a span");
    assert!(
        !everything.contains("user-42"),
        "the subject reached a span"
    );
    let _ = gateway.kill().await;
    let _ = std::fs::remove_file(config);
}
