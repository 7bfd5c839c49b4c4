//! The byte relay: stateless requests that need no translation go straight to their upstream.
//!
//! Serving a stateless call through rmcp on both sides costs a typed decode and encode and a
//! service per side; for a request the gateway would forward unchanged that is most of the hop
//! (see BENCHMARKS.md). Here the body is parsed once into an `Envelope`, its headers are checked
//! against it, and if `Gateway::relay_target` names an upstream the bytes go there and the
//! answer's bytes come back, streamed. A request this layer does not take, including every
//! request with a header that contradicts its body, continues to rmcp unchanged, which answers
//! it or rejects it exactly as before.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use portcullis_core::{CorrelationId, Era};
use portcullis_mcp::envelope::Envelope;

use crate::{
    proxy::{Gateway, RelayTarget},
    verdict::CallVerdict,
};

const PROTOCOL_VERSION: &str = "mcp-protocol-version";
const METHOD: &str = "mcp-method";
const NAME: &str = "mcp-name";
const PARAM_PREFIX: &str = "mcp-param-";

pub(super) struct Relay {
    pub(super) gateway: Arc<Gateway>,
    /// Policies are on: only calls with an `Allowed` verdict may skip the typed proxy, which
    /// filters lists and answers refusals.
    pub(super) authorizing: bool,
    /// Identity assertions are on: each upstream request gets one in its `_meta`, which the
    /// typed proxy adds; bytes relayed unchanged would arrive without it and be refused.
    pub(super) asserting: bool,
    pub(super) max_body_bytes: usize,
    pub(super) plain: Plain,
}

pub(super) type Plain = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
>;

pub(super) fn plain_client() -> Plain {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(connector)
}

pub(super) async fn relay(
    State(relay): State<Arc<Relay>>,
    request: Request,
    next: Next,
) -> Response {
    let stateless = request.method() == Method::POST
        && header_is(request.headers(), PROTOCOL_VERSION, Era::Stateless.as_str());
    let allowed = !relay.authorizing
        || matches!(
            request.extensions().get::<CallVerdict>(),
            Some(CallVerdict::Allowed(..))
        );
    if !stateless || !allowed || relay.asserting {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    // Only the body limit can fail a read here: the layer outside already bounds it.
    let Ok(bytes) = axum::body::to_bytes(body, relay.max_body_bytes).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large\n").into_response();
    };
    let target = Envelope::parse(&bytes)
        .ok()
        .filter(|envelope| consistent(&parts.headers, envelope))
        .and_then(|envelope| {
            let called = (
                envelope.method.to_owned(),
                envelope.name.clone().unwrap_or_default(),
            );
            Some((
                relay.gateway.relay_target(&envelope)?,
                raw_id(&envelope),
                called,
            ))
        });
    match target {
        Some((target, id, (method, capability))) => {
            let started = std::time::Instant::now();
            let upstream = target.upstream.clone();
            let index = target.index;
            let response = forward(&relay.plain, target, &parts.headers, bytes, &id).await;
            // A call can answer with a task; the task is its caller's, so the gateway must
            // learn its id from the relayed bytes as the typed path does from the result.
            let response = match parts.extensions.get::<portcullis_policy::Principal>() {
                Some(principal) if method == "tools/call" => {
                    let owner = (principal.issuer.clone(), principal.subject.clone());
                    learn_tasks(response, relay.gateway.clone(), index, owner)
                }
                _ => response,
            };
            // The body is still streaming: the outcome relayed bytes can give is the status.
            let outcome = if response.status().is_success() {
                "ok"
            } else {
                "error"
            };
            relay
                .gateway
                .record_outcome(
                    &parts.extensions,
                    (&method, &capability),
                    &upstream,
                    outcome,
                    started.elapsed(),
                )
                .await;
            response
        }
        None => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    }
}

/// Watch a relayed answer for a task result and learn its id for `owner`. Only the first
/// 64 KiB are looked at: a task result is small, and an answer too large to be one is passed
/// on untouched.
fn learn_tasks(
    response: Response,
    gateway: Arc<Gateway>,
    index: usize,
    owner: (String, String),
) -> Response {
    const WATCHED: usize = 64 * 1024;
    let (parts, body) = response.into_parts();
    // Bytes, not text: a character split across two frames must not be lost to the watch.
    let mut seen: Vec<u8> = Vec::new();
    let mut owner = Some(owner);
    let body = http_body_util::BodyExt::map_frame(body, move |frame| {
        if let Some(data) = frame.data_ref()
            && owner.is_some()
            && seen.len() < WATCHED
        {
            seen.extend_from_slice(data);
            if let Some(task_id) = task_id(&String::from_utf8_lossy(&seen))
                && let Some(owner) = owner.take()
            {
                gateway.learn_task(&task_id, index, Some(owner));
            }
        }
        frame
    });
    Response::from_parts(parts, Body::new(body))
}

/// The `taskId` of a task result in `text` (JSON or SSE `data:` lines), if it holds one.
fn task_id(text: &str) -> Option<String> {
    text.lines()
        .map(|line| line.strip_prefix("data:").unwrap_or(line).trim())
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|message| {
            let result = message.get("result")?;
            (result.get("resultType")?.as_str()? == "task")
                .then(|| result.get("taskId")?.as_str().map(str::to_owned))
                .flatten()
        })
}

/// Whether the headers say what the body says. Anything unusual (a missing or contradicting
/// header, a base64-wrapped name) is left to rmcp, which validates and answers it.
fn consistent(headers: &HeaderMap, envelope: &Envelope<'_>) -> bool {
    if envelope.declared_version.as_deref() != Some(Era::Stateless.as_str())
        || !header_is(headers, METHOD, envelope.method)
    {
        return false;
    }
    match &envelope.name {
        Some(name) => headers
            .get(NAME)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.trim() == name && !value.trim().starts_with("=?base64?")),
        None => true,
    }
}

fn header_is(headers: &HeaderMap, name: &str, expected: &str) -> bool {
    let mut values = headers.get_all(name).iter();
    matches!((values.next(), values.next()), (Some(value), None) if value == expected)
}

fn raw_id(envelope: &Envelope<'_>) -> String {
    envelope
        .id
        .map_or_else(|| "null".to_owned(), |id| id.get().to_owned())
}

/// Send the request's bytes to `target` and stream its answer back. Plain-HTTP upstreams (the
/// common sidecar case) go through a bare hyper client, which measured about 20 µs cheaper per
/// call than reqwest; HTTPS upstreams use the upstream's reqwest client and its TLS setup.
async fn forward(
    plain: &Plain,
    target: RelayTarget,
    headers: &HeaderMap,
    body: bytes::Bytes,
    id: &str,
) -> Response {
    // SECURITY: only the protocol's own headers travel on; never Authorization or cookies.
    let relayed = headers.iter().filter(|(name, _)| {
        let name = name.as_str();
        matches!(
            name,
            PROTOCOL_VERSION | METHOD | NAME | "content-type" | "accept"
        ) || name.starts_with(PARAM_PREFIX)
    });
    let answer = if target.url.scheme() == "http" {
        let mut request = http::Request::post(target.url.as_str());
        for (name, value) in relayed {
            request = request.header(name, value);
        }
        // The gateway's own credential (the reqwest path has it as a default header).
        if let Some(credential) = &target.credential {
            request = request.header(header::AUTHORIZATION, credential);
        }
        match request.body(http_body_util::Full::new(body)) {
            Ok(request) => plain
                .request(request)
                .await
                .map(|response| response.map(Body::new))
                .map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        }
    } else {
        let mut request = target.http.post(target.url.clone()).body(body);
        for (name, value) in relayed {
            request = request.header(name.as_str(), value.as_bytes());
        }
        match request.send().await {
            Ok(response) => {
                let mut answer = Response::builder().status(response.status().as_u16());
                for (name, value) in response.headers() {
                    answer = answer.header(name.as_str(), value.as_bytes());
                }
                answer
                    .body(Body::from_stream(response.bytes_stream()))
                    .map_err(|error| error.to_string())
            }
            Err(error) => Err(error.to_string()),
        }
    };
    match answer {
        Ok(answer) => {
            let (upstream, body) = answer.into_parts();
            let mut response = Response::new(body);
            *response.status_mut() = upstream.status;
            // The upstream's framing and connection headers are its own; only what describes
            // the body is passed on.
            for name in [header::CONTENT_TYPE, header::CACHE_CONTROL] {
                if let Some(value) = upstream.headers.get(&name) {
                    response.headers_mut().insert(name, value.clone());
                }
            }
            response
        }
        Err(error) => {
            let correlation = CorrelationId::fresh();
            tracing::warn!(%correlation, upstream = %target.upstream, %error, "upstream unreachable");
            unavailable(id, &correlation)
        }
    }
}

fn unavailable(id: &str, correlation: &CorrelationId) -> Response {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32603,"message":"upstream unavailable","data":{{"correlationId":"{correlation}"}}}}}}"#
    );
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
