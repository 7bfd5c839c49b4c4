//! Tools that exercise notifications, capabilities and cancellation rather than content.
#![expect(
    deprecated,
    reason = "MCP logging is SEP-2577-deprecated but still in the suite"
)]

use std::time::Duration;

use rmcp::{
    ErrorData,
    model::{
        CallToolResponse, ClientCapabilities, LoggingLevel, ProgressNotificationParam,
        SamplingCapability,
    },
};

use super::{Call, text};
use crate::{era::Era, state::ListChange};

/// Pause between the notifications of one call, so clients see them arrive over time.
const STEP: Duration = Duration::from_millis(50);

/// Exit status of `fixture_crash`: EX_SOFTWARE, distinct from a clean shutdown.
const CRASH_EXIT_CODE: i32 = 70;

/// Upper bound for `fixture_slow`, so a typo cannot park a request for hours.
const MAX_SLOW_MS: u64 = 10 * 60 * 1000;

/// Three info messages, 50 ms apart, each sent only if the request's log level allows it.
pub(super) async fn with_logging(call: &Call<'_>) -> Result<CallToolResponse, ErrorData> {
    let log = call.log();
    log.send(LoggingLevel::Info, "Tool execution started").await;
    tokio::time::sleep(STEP).await;
    log.send(LoggingLevel::Info, "Tool processing data").await;
    tokio::time::sleep(STEP).await;
    log.send(LoggingLevel::Info, "Tool execution completed")
        .await;
    Ok(text("Logging test completed"))
}

/// Progress 0, 50 and 100 of 100 against the request's progress token, if it sent one.
pub(super) async fn with_progress(call: &Call<'_>) -> Result<CallToolResponse, ErrorData> {
    let token = call.context.meta.get_progress_token();
    for (step, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
        if step > 0 {
            tokio::time::sleep(STEP).await;
        }
        let Some(token) = token.clone() else {
            continue;
        };
        let param = ProgressNotificationParam::new(token, progress)
            .with_total(100.0)
            .with_message(format!("Step {}", step + 1));
        if let Err(error) = call.context.peer.notify_progress(param).await {
            tracing::debug!(%error, "progress notification not delivered");
        }
    }
    Ok(text("Progress test completed"))
}

/// Completes after a pause long enough for a client to observe the open SSE stream.
pub(super) async fn reconnection(call: &Call<'_>) -> Result<CallToolResponse, ErrorData> {
    tokio::select! {
        () = tokio::time::sleep(STEP * 2) => Ok(text("Reconnection test completed")),
        () = call.context.ct.cancelled() => Err(cancelled()),
    }
}

/// Announce a list change to every `subscriptions/listen` stream (2026-07-28) and, on a session,
/// to the calling client itself (2025-11-25 has no listen streams).
pub(super) async fn trigger(
    call: &Call<'_>,
    change: ListChange,
) -> Result<CallToolResponse, ErrorData> {
    call.shared.announce(change);
    if Era::of(call.context) == Era::Session {
        let peer = &call.context.peer;
        let sent = match change {
            ListChange::Tools => peer.notify_tool_list_changed().await,
            ListChange::Prompts => peer.notify_prompt_list_changed().await,
        };
        if let Err(error) = sent {
            tracing::debug!(%error, "list-changed notification not delivered");
        }
    }
    Ok(text(match change {
        ListChange::Tools => "Tool list change announced",
        ListChange::Prompts => "Prompt list change announced",
    }))
}

/// Fails with -32021 unless the client declared sampling.
///
/// See: SEP-2575, a server MUST NOT rely on a capability the client did not declare.
pub(super) fn missing_capability(call: &Call<'_>) -> Result<CallToolResponse, ErrorData> {
    let declared = call.context.client_capabilities().unwrap_or_default();
    if declared.sampling.is_none() {
        let mut required = ClientCapabilities::default();
        required.sampling = Some(SamplingCapability::default());
        return Err(ErrorData::missing_required_client_capability(required));
    }
    Ok(text("The client declared the sampling capability"))
}

pub(super) fn echo(call: &Call<'_>) -> Result<CallToolResponse, ErrorData> {
    Ok(text(call.string_argument("text")?))
}

pub(super) fn header_echo(call: &Call<'_>) -> Result<CallToolResponse, ErrorData> {
    Ok(text(call.string_argument("region")?))
}

/// Sleep for `ms`, unless the client cancels the request first.
pub(super) async fn slow(call: &Call<'_>) -> Result<CallToolResponse, ErrorData> {
    let ms = call
        .params
        .arguments
        .as_ref()
        .and_then(|arguments| arguments.get("ms"))
        .and_then(|value| value.as_u64())
        .ok_or_else(|| {
            ErrorData::invalid_params("missing non-negative integer argument `ms`", None)
        })?;
    if ms > MAX_SLOW_MS {
        return Err(ErrorData::invalid_params(
            format!("`ms` must be at most {MAX_SLOW_MS}"),
            None,
        ));
    }
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(ms)) => Ok(text("done")),
        () = call.context.ct.cancelled() => Err(cancelled()),
    }
}

/// Exit the whole process without answering, so gateway tests can watch an upstream die
/// mid-call and be restarted.
pub(super) fn crash() -> ! {
    tracing::warn!("fixture_crash called: exiting");
    std::process::exit(CRASH_EXIT_CODE)
}

/// The error of a cancelled call; rmcp drops it, since a cancelled request gets no response.
fn cancelled() -> ErrorData {
    ErrorData::internal_error("request cancelled", None)
}
