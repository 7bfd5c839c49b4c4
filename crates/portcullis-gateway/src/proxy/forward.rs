//! Forwarding one request to one upstream connection, and bridging input-required rounds.

use std::time::Duration;

use portcullis_core::{CorrelationId, Era, error_chain};
use portcullis_mcp::{Live, TRANSPORT_FAILURE, UpstreamError};
use rmcp::{
    ErrorData as McpError, RoleServer,
    model::{
        CancelledNotification, CancelledNotificationParam, ClientNotification, ClientRequest,
        ClientResult, ErrorCode, GetExtensions, GetMeta, InputRequest, InputRequiredResult,
        InputResponses, ServerRequest, ServerResult,
    },
    service::{OriginatingRequestId, PeerRequestOptions, RequestContext, ServiceError},
};

// Keys of the per-request protocol metadata (2026-07-28). The upstream connection adds its own.
const PROTOCOL_VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";
const PROTOCOL_KEY_PREFIX: &str = "io.modelcontextprotocol/";
const LOG_LEVEL_KEY: &str = "io.modelcontextprotocol/logLevel";
const PROGRESS_TOKEN_KEY: &str = "progressToken";
/// Where the gateway's signed identity assertion travels (see `crate::identity`).
pub(crate) const IDENTITY_KEY: &str = "io.portcullis/identity";
/// Rounds of input-required a bridged call may take before it is abandoned.
const MAX_INPUT_ROUNDS: usize = 10;

/// Send `request` on `live` as the downstream request `context`, and wait for its answer.
///
/// The downstream request's `_meta` travels on, less what belongs to the downstream hop: its
/// progress token (the connection mints its own and the relay maps it back) and protocol keys the
/// upstream's era does not use. Cancelling the downstream request cancels the upstream one.
///
/// `session_log_level` is the level a downstream session chose (or `debug` if it never chose, as
/// a session-era server logs everything then); a stateless upstream learns it per request.
///
/// `assertion` is the gateway's signed statement of who the caller is, for this upstream; a
/// value of that key from the caller never travels on.
pub(super) async fn forward(
    live: &Live,
    mut request: ClientRequest,
    context: &RequestContext<RoleServer>,
    timeout: Duration,
    session_log_level: Option<&str>,
    assertion: Option<String>,
) -> Result<ServerResult, McpError> {
    let mut meta = context.meta.clone();
    meta.0.0.retain(|key, _| {
        key != IDENTITY_KEY
            && match live.era {
                Era::Sessions => key != PROGRESS_TOKEN_KEY && !key.starts_with(PROTOCOL_KEY_PREFIX),
                Era::Stateless => key != PROGRESS_TOKEN_KEY && key != PROTOCOL_VERSION_KEY,
            }
    });
    if let Some(assertion) = assertion {
        meta.0.0.insert(IDENTITY_KEY.to_owned(), assertion.into());
    }
    if let (Era::Stateless, Some(level)) = (live.era, session_log_level) {
        meta.0.0.insert(LOG_LEVEL_KEY.to_owned(), level.into());
    }
    // Applied after the connection's own per-request metadata, so the caller's declared
    // capabilities and client info win: the upstream must not assume more than the caller has.
    *request.get_meta_mut() = Default::default();
    let options = PeerRequestOptions::with_timeout(timeout).with_meta(meta);
    let handle = live
        .peer
        .send_request_with_option(request, options)
        .await
        .map_err(|error| upstream_failure(&error))?;
    let _inflight = live.inflight.register(&handle, context);
    let upstream_id = handle.id.clone();
    tokio::select! {
        answer = handle.await_response() => {
            _inflight.settled().await;
            answer.map_err(|error| upstream_failure(&error))
        }
        () = context.ct.cancelled() => {
            let cancel = CancelledNotificationParam::new(
                Some(upstream_id),
                Some("cancelled by the client".to_owned()),
            );
            let notification = CancelledNotification::new(cancel);
            // The upstream may be gone already; the caller is not waiting either way.
            let _ = live
                .peer
                .send_notification(ClientNotification::CancelledNotification(notification))
                .await;
            Err(McpError::new(ErrorCode::INTERNAL_ERROR, "request cancelled", None))
        }
    }
}

/// Ask the downstream session client each question of an input-required result and collect the
/// answers, so a session-era client can use a stateless upstream that asks for input.
pub(super) async fn fulfil(
    input: InputRequiredResult,
    context: &RequestContext<RoleServer>,
) -> Result<(Option<InputResponses>, Option<String>), McpError> {
    let mut responses = InputResponses::new();
    for (key, question) in input.input_requests.unwrap_or_default() {
        let mut request = match question {
            InputRequest::CreateMessage(request) => ServerRequest::CreateMessageRequest(request),
            InputRequest::Elicitation(request) => ServerRequest::ElicitRequest(request),
            InputRequest::ListRoots(request) => ServerRequest::ListRootsRequest(request),
            _ => {
                return Err(McpError::invalid_request("unsupported input request", None));
            }
        };
        request
            .extensions_mut()
            .insert(OriginatingRequestId(context.id.clone()));
        let answer = context
            .peer
            .send_request(request)
            .await
            .map_err(|error| match error {
                ServiceError::McpError(error) => error,
                other => McpError::internal_error(format!("client did not answer: {other}"), None),
            })?;
        let value = match answer {
            ClientResult::CreateMessageResult(result) => serde_json::to_value(result),
            ClientResult::ElicitResult(result) => serde_json::to_value(result),
            ClientResult::ListRootsResult(result) => serde_json::to_value(result),
            _ => {
                return Err(McpError::internal_error(
                    "client answered out of turn",
                    None,
                ));
            }
        }
        .map_err(|error| McpError::internal_error(error.to_string(), None))?;
        responses.insert(key, value);
    }
    Ok((Some(responses), input.request_state))
}

/// How many input-required rounds the gateway drives for one call.
pub(super) fn max_input_rounds() -> usize {
    MAX_INPUT_ROUNDS
}

/// The error a caller sees when an upstream is down: a malfunction with a correlation id, never a
/// denial and never "not found".
pub(super) fn unavailable(error: &UpstreamError) -> McpError {
    let correlation = CorrelationId::fresh();
    tracing::warn!(%correlation, error = %error_chain(error), "upstream unavailable");
    McpError::new(
        ErrorCode::INTERNAL_ERROR,
        "upstream unavailable",
        Some(serde_json::json!({ "correlationId": correlation.as_str() })),
    )
}

fn upstream_failure(error: &ServiceError) -> McpError {
    match error {
        // The HTTP transport could not reach the upstream: a malfunction, like a closed pipe.
        ServiceError::McpError(error)
            if error
                .data
                .as_ref()
                .is_some_and(|data| data.get(TRANSPORT_FAILURE).is_some()) =>
        {
            let correlation = CorrelationId::fresh();
            let reason = error
                .data
                .as_ref()
                .and_then(|d| d.get(TRANSPORT_FAILURE))
                .cloned();
            tracing::warn!(%correlation, ?reason, "upstream failed mid-request");
            McpError::new(
                ErrorCode::INTERNAL_ERROR,
                "upstream unavailable",
                Some(serde_json::json!({ "correlationId": correlation.as_str() })),
            )
        }
        // The upstream answered with an error: it is the upstream's answer, pass it on intact.
        ServiceError::McpError(error) => error.clone(),
        ServiceError::Timeout { .. } => {
            let correlation = CorrelationId::fresh();
            tracing::warn!(%correlation, "upstream timed out");
            McpError::new(
                ErrorCode::INTERNAL_ERROR,
                "upstream timed out",
                Some(serde_json::json!({ "correlationId": correlation.as_str() })),
            )
        }
        other => {
            let correlation = CorrelationId::fresh();
            tracing::warn!(%correlation, error = %other, "upstream failed mid-request");
            McpError::new(
                ErrorCode::INTERNAL_ERROR,
                "upstream unavailable",
                Some(serde_json::json!({ "correlationId": correlation.as_str() })),
            )
        }
    }
}
