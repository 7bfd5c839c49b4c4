//! The W3C trace context of a request: read from the caller (its `traceparent` header, or in a
//! 2026-07-28 request `params._meta.traceparent`), and written to the upstream (its
//! `traceparent` header and `_meta`), so that a trace crosses the gateway. Spans of target
//! [`TARGET`] are the ones the binary exports (`[telemetry]`); with no exporter, none of this
//! does anything. Only `traceparent` is read, and only an authenticated caller's: a caller's
//! trace context is never passed on as it came (`upstreams::forward` drops it from `_meta`).

use std::collections::HashMap;

use opentelemetry::trace::TraceContextExt as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The target of the spans that are exported (under the crate's own, so that a log filter
/// naming the crate keeps the request's span, and its correlation id, in the log).
pub const TARGET: &str = "portcullis_gateway::trace";
/// Longer than any `traceparent` a version of the format writes; longer ones are not read.
const MAX_TRACEPARENT: usize = 128;

/// Make `span` a child of the trace `traceparent` names, if it is a valid one.
pub(crate) fn continue_from(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent.filter(|t| t.len() <= MAX_TRACEPARENT) else {
        return;
    };
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let parent =
        opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&carrier));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Make `step` (a span opened before its request's trace context was known) a child of the
/// current span, and close it.
pub(crate) fn adopt(step: tracing::Span) {
    let _ = step.set_parent(tracing::Span::current().context());
    drop(step);
}

/// The `traceparent` naming the current span, for what is sent upstream on its behalf; `None`
/// when nothing is traced.
pub(crate) fn traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut carrier);
    });
    carrier.remove("traceparent")
}

/// The current span's trace id (hex), when it is traced.
pub(crate) fn trace_id() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// The caller's `traceparent` header (version 00 writes 55 characters); one longer than any
/// version writes is not looked at.
pub(crate) fn header(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .filter(|value| value.len() <= MAX_TRACEPARENT)
}
