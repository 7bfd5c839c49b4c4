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

use crate::proxy::{Gateway, RelayTarget};

const PROTOCOL_VERSION: &str = "mcp-protocol-version";
const METHOD: &str = "mcp-method";
const NAME: &str = "mcp-name";
const PARAM_PREFIX: &str = "mcp-param-";

pub(super) struct Relay {
    pub(super) gateway: Arc<Gateway>,
    pub(super) max_body_bytes: usize,
}

pub(super) async fn relay(
    State(relay): State<Arc<Relay>>,
    request: Request,
    next: Next,
) -> Response {
    let stateless = request.method() == Method::POST
        && header_is(request.headers(), PROTOCOL_VERSION, Era::Stateless.as_str());
    if !stateless {
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
        .and_then(|envelope| Some((relay.gateway.relay_target(&envelope)?, raw_id(&envelope))));
    match target {
        Some((target, id)) => forward(target, &parts.headers, bytes, &id).await,
        None => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    }
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

async fn forward(
    target: RelayTarget,
    headers: &HeaderMap,
    body: bytes::Bytes,
    id: &str,
) -> Response {
    let mut upstream = reqwest::header::HeaderMap::new();
    // SECURITY: only the protocol's own headers travel on; never Authorization or cookies.
    for (name, value) in headers {
        let name = name.as_str();
        let keep = matches!(
            name,
            PROTOCOL_VERSION | METHOD | NAME | "content-type" | "accept"
        ) || name.starts_with(PARAM_PREFIX);
        if keep && let Ok(name) = reqwest::header::HeaderName::from_bytes(name.as_bytes()) {
            upstream.append(name, value.clone());
        }
    }
    let sent = target
        .http
        .post(target.url)
        .headers(upstream)
        .body(body)
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(error) => {
            let correlation = CorrelationId::fresh();
            tracing::warn!(%correlation, upstream = %target.upstream, %error, "upstream unreachable");
            return unavailable(id, &correlation);
        }
    };
    let mut answer = Response::builder().status(response.status().as_u16());
    for name in [header::CONTENT_TYPE, header::CACHE_CONTROL] {
        if let Some(value) = response.headers().get(name.as_str()) {
            answer = answer.header(name, value.as_bytes());
        }
    }
    answer
        .body(Body::from_stream(response.bytes_stream()))
        .unwrap_or_else(|_| unavailable(id, &CorrelationId::fresh()))
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
