//! The MCP endpoint, both eras, as one linear path per request:
//!
//! 1. who is calling (`Access::caller`: the `Authorization` header, nothing else);
//! 2. the body, parsed once, strictly (`McpMessage::parse`); a body that is not one strictly
//!    valid message is refused and recorded;
//! 3. its era and session, its headers checked against it (`wire::lifecycle`);
//! 4. the decision (`access::decide`), every method included;
//! 5. the answer: the gateway's own (`lifecycle`), a refusal, or the request forwarded with
//!    its proof (`serve`), its outcome recorded.
//!
//! Nothing after step 2 reads the body again: every step reads the one parsed value.

mod bridge;
mod call;
mod consent;
mod lifecycle;
mod list;
mod listen;
mod live;
mod reply;
mod resume;
mod serve;
mod sessions;
mod shape;
mod who;
mod wire;

pub(crate) use bridge::Bridge;
pub(crate) use live::reintrospect;

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    response::{IntoResponse, Response},
};
use http::StatusCode;
use portcullis_audit::{AuditDecision, Durability};
use portcullis_core::{McpMessage, McpNotification, McpResponse, NotificationMethod};
use tokio_util::sync::CancellationToken;

pub(crate) use sessions::Sessions;
use who::{held_back, who};

use crate::{
    access::{Reason, record},
    gateway::Gateway,
};

/// The endpoint's state.
pub(crate) struct Endpoint {
    pub(crate) gateway: Arc<Gateway>,
    /// The endpoint's path, for records of requests refused before they are read.
    pub(crate) path: String,
    pub(crate) max_body_bytes: usize,
    pub(crate) style: reply::Style,
    /// Ends every open stream (shutdown).
    pub(crate) streams: CancellationToken,
    /// Fires when shutdown begins (before the calls in progress have finished).
    pub(crate) draining: CancellationToken,
    /// How long a session client has to answer an approval request.
    pub(crate) consent_wait: std::time::Duration,
    /// How long a refusal for a rate is held back.
    pub(crate) refusal_delay: std::time::Duration,
    /// How many of one caller's requests are worked on at once.
    pub(crate) turns: Arc<crate::turns::Turns>,
}

impl Endpoint {
    /// The endpoint of `gateway`, with `config`'s answer settings.
    pub(crate) fn new(
        gateway: Arc<Gateway>,
        config: &crate::config::Config,
        (streams, draining): (CancellationToken, CancellationToken),
    ) -> Self {
        Self {
            gateway,
            path: config.path.clone(),
            max_body_bytes: config.max_body_bytes,
            refusal_delay: config.limits.refusal_delay,
            turns: crate::turns::Turns::new(config.limits.concurrent_per_caller),
            style: reply::Style {
                json: config.json_response,
                keep_alive: config.sse_keep_alive,
            },
            streams,
            draining,
            consent_wait: config.consent.wait,
        }
    }
}

/// `POST`: one message.
pub(crate) async fn post(State(endpoint): State<Arc<Endpoint>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    // Every log line of the request's handling carries its correlation id (a field of the
    // span, in both log formats), and its trace continues the caller's.
    // At error level: a span is kept whenever any line is, so `PORTCULLIS_LOG=warn` keeps it.
    let span = tracing::error_span!(
        target: crate::trace::TARGET,
        "request",
        correlation = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        "mcp.method" = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    // The authentication's span is made a child of the request once the request's own parent
    // is known (a 2026-07-28 body may name it); until then it stays open.
    let authenticating = tracing::error_span!(
        target: crate::trace::TARGET,
        parent: None,
        "authenticate",
        outcome = tracing::field::Empty,
    );
    let work = async move {
        // 1. Who is calling.
        let caller =
            tracing::Instrument::instrument(who(&endpoint, &parts, "POST"), authenticating.clone())
                .await;
        authenticating.record("outcome", if caller.is_ok() { "ok" } else { "refused" });
        let caller = match caller {
            Ok(caller) => caller,
            Err(response) => {
                crate::trace::adopt(authenticating);
                return response;
            }
        };
        let current = tracing::Span::current();
        current.record("correlation", tracing::field::display(&caller.correlation));
        // SECURITY: only a caller that authenticated joins a trace of its choosing; a refused
        // one's request starts its own.
        crate::trace::continue_from(&current, crate::trace::header(&parts.headers));
        posted(endpoint, parts, body, (caller, authenticating)).await
    };
    tracing::Instrument::instrument(work, span).await
}

/// The rest of a `POST`, once its caller is known.
async fn posted(
    endpoint: Arc<Endpoint>,
    parts: http::request::Parts,
    body: axum::body::Body,
    (caller, authenticating): (crate::access::Caller, tracing::Span),
) -> Response {
    let access = &endpoint.gateway.access;
    if let Some(response) = wire::refuse_post(&parts.headers) {
        crate::trace::adopt(authenticating);
        return response;
    }
    // A 2026-07-28 request says in its headers that it is one (checked against its body in
    // step 3): it takes its turn before its body is read and parsed, work a burst of large
    // ones would otherwise do all at once. Anything else takes its turn once parsed.
    let mut turn = if wire::declares_request(&parts.headers) {
        Some(endpoint.turns.take(caller.id()).await)
    } else {
        None
    };
    // Only the body limit can fail a read here: the layer outside already bounds it. A body
    // still arriving after the turn's allowance (a slow upload) waits without it.
    let read = axum::body::to_bytes(body, endpoint.max_body_bytes);
    let read = match &turn {
        Some(turn) => turn.away(read).await,
        None => read.await,
    };
    let Ok(bytes) = read else {
        crate::trace::adopt(authenticating);
        return (StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large\n").into_response();
    };
    // 2. The body, parsed once.
    let message = McpMessage::parse(&bytes);
    if let Ok(McpMessage::Request(request)) = &message {
        let span = tracing::Span::current();
        // Only the names of known methods: the caller writes the rest.
        let method = match &request.method {
            portcullis_core::McpMethod::Other(_) => "other",
            method => method.as_str(),
        };
        span.record("mcp.method", method);
        // A 2026-07-28 request carries its trace context in `_meta`, which wins.
        let meta = request
            .meta()
            .and_then(|meta| meta.get("traceparent"))
            .and_then(serde_json::Value::as_str);
        crate::trace::continue_from(&span, meta);
    }
    crate::trace::adopt(authenticating);
    // The log's lines of this request name its trace (traces exported only).
    if let Some(trace) = crate::trace::trace_id() {
        tracing::Span::current().record("trace_id", trace);
    }
    let message = match message {
        Ok(message) => message,
        Err(error) => {
            tracing::info!(correlation = %caller.correlation, reason = %error.detail(), "malformed request refused");
            let mut record = record::of_caller(&caller, "(malformed)", AuditDecision::Deny);
            record.reasons = vec![Reason::Malformed.as_str().to_owned()];
            record.status = Some(400);
            let _ = access.record(record, Durability::Queued).await;
            return wire::rpc_error(
                StatusCode::BAD_REQUEST,
                error.id(),
                error.code(),
                error.text(),
                None,
            );
        }
    };
    // 3. Its era and session, its headers checked against it.
    let upstreams = &endpoint.gateway.upstreams;
    let lifecycle = match wire::lifecycle(&parts.headers, &message, |name| upstreams.tool(name)) {
        Ok(lifecycle) => lifecycle,
        Err(refusal) => {
            if refusal.mismatch {
                let method = match &message {
                    McpMessage::Request(request) => request.method.as_str(),
                    McpMessage::Notification(notification) => notification.method.as_str(),
                    McpMessage::Response(_) => "(response)",
                };
                let mut record = record::of_caller(&caller, method, AuditDecision::Deny);
                record.reasons = vec![Reason::HeaderMismatch.as_str().to_owned()];
                record.status = Some(400);
                let _ = access.record(record, Durability::Queued).await;
            }
            return *refusal.response;
        }
    };
    let session = match &lifecycle {
        wire::Lifecycle::Session(id) => {
            match lifecycle::session(&endpoint, &caller, id, "POST").await {
                Ok(session) => Some(session),
                Err(response) => return response,
            }
        }
        wire::Lifecycle::Opening | wire::Lifecycle::Stateless => None,
    };
    if let Some(session) = &session {
        session.used(caller.identity.as_ref().and_then(|i| i.opaque.as_ref()));
    }
    // 4 and 5: decided and answered.
    match message {
        McpMessage::Request(request) => {
            // Its turn among the caller's own requests. Answers and notifications take none:
            // they are cheap, and what a waiting request of the same caller may need.
            let turn = match turn.take() {
                Some(turn) => turn,
                None => endpoint.turns.take(caller.id()).await,
            };
            serve::request(
                endpoint.clone(),
                caller,
                lifecycle,
                session,
                request,
                (turn, parts.extensions.get::<crate::http::Peer>().cloned()),
            )
            .await
        }
        McpMessage::Notification(notification) => notified(session.as_deref(), notification).await,
        McpMessage::Response(response) => answered(session.as_deref(), response),
    }
}

/// A client's notification: taken (202), whatever it is; what it means is acted on only for
/// the caller's own session and requests.
async fn notified(session: Option<&sessions::Session>, notification: McpNotification) -> Response {
    match (&notification.method, session) {
        (NotificationMethod::Cancelled, Some(session)) => {
            if let Some(id) = notification.params.get("requestId") {
                session.cancel(id);
            }
        }
        (NotificationMethod::RootsListChanged, Some(session)) => {
            for (_, connection) in session.links.open().await {
                let _ = connection
                    .notify("notifications/roots/list_changed", serde_json::Map::new())
                    .await;
            }
        }
        // Stateless cancellation is the client closing the stream; the rest needs no action.
        _ => {}
    }
    wire::accepted_response()
}

/// A client's answer to a question its session asked.
fn answered(session: Option<&sessions::Session>, response: McpResponse) -> Response {
    match session {
        Some(session) => {
            if !session.answer(response.id.as_value(), response.outcome) {
                tracing::debug!(session = %session.id, "an answer to no question");
            }
            wire::accepted_response()
        }
        None => wire::rpc_error(
            StatusCode::BAD_REQUEST,
            None,
            -32600,
            "Invalid Request: an answer without a session",
            None,
        ),
    }
}

/// `GET`: a session's standalone stream (2025-11-25); nothing in the stateless era.
pub(crate) async fn get(State(endpoint): State<Arc<Endpoint>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let caller = match who(&endpoint, &parts, "GET").await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    if !wire::accepts_events(&parts.headers) {
        return wire::text_response(
            StatusCode::NOT_ACCEPTABLE,
            "Not Acceptable: Client must accept text/event-stream",
        );
    }
    let Some(id) = wire::session_id(&parts.headers) else {
        return method_not_allowed();
    };
    let session = match lifecycle::session(&endpoint, &caller, id, "GET").await {
        Ok(session) => session,
        Err(response) => return response,
    };
    // The rest of a request stream the client lost, if it names one.
    let resumed = parts
        .headers
        .get("last-event-id")
        .and_then(|id| id.to_str().ok())
        .map_or(resume::Found::NotOurs, |id| session.streams.find(id));
    let (keep_alive, stop) = (endpoint.style.keep_alive, endpoint.streams.clone());
    let replayed = match resumed {
        resume::Found::NotOurs => return lifecycle::standalone(&endpoint, &session),
        resume::Found::Stream(log, from) => resume::replay(log, from, keep_alive, stop),
        resume::Found::Forgotten => None,
    };
    replayed.unwrap_or_else(|| {
        wire::text_response(
            StatusCode::BAD_REQUEST,
            "Bad Request: the events after Last-Event-ID are no longer kept",
        )
    })
}

/// `DELETE`: end a session.
pub(crate) async fn delete(State(endpoint): State<Arc<Endpoint>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let caller = match who(&endpoint, &parts, "DELETE").await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    let Some(id) = wire::session_id(&parts.headers) else {
        return method_not_allowed();
    };
    match lifecycle::session(&endpoint, &caller, id, "DELETE").await {
        Ok(session) => {
            endpoint.gateway.sessions.close(&session.id);
            // 200, not 202: SDKs read anything else as the end having failed.
            wire::text_response(StatusCode::OK, "")
        }
        Err(response) => response,
    }
}

fn method_not_allowed() -> Response {
    let mut response = wire::text_response(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    response
        .headers_mut()
        .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
    response
}
