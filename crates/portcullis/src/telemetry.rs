//! Traces to an OpenTelemetry collector (`[telemetry] otlp_endpoint`, off by default): the
//! gateway's spans (target `portcullis_gateway::trace`: a request and its steps) go out over OTLP/HTTP
//! in batches, on the exporter's own thread. Only those spans: log events and every other
//! span stay in the log, so what the log says about a caller (names, subjects) never reaches
//! a collector. The W3C trace context is what the gateway reads from callers and writes to
//! upstreams.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use tracing_subscriber::{Layer, filter::filter_fn};

use portcullis_gateway::trace::TARGET;

/// The exporter, flushed and stopped when dropped (at exit).
pub(crate) struct Telemetry {
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("portcullis: the last traces could not be sent: {error}");
        }
    }
}

/// The layer that sends the gateway's spans to `endpoint` (the traces URL) as `service`, and
/// what must live until exit for the last of them to be sent.
pub(crate) fn start<S>(endpoint: &str, service: &str) -> Result<(impl Layer<S>, Telemetry), String>
where
    S: tracing::Subscriber
        + for<'span> tracing_subscriber::registry::LookupSpan<'span>
        + Send
        + Sync,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .with_timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|error| format!("telemetry.otlp_endpoint: {error}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service.to_owned())
        .build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let tracer = provider.tracer("portcullis");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        // A span starts when a child needs it or it closes, not when entered: a request's
        // parent can then still be set once its body (a 2026-07-28 `_meta`) has been read.
        .with_context_activation(false)
        .with_location(false)
        .with_threads(false)
        // Spans only, and only the gateway's own: no event (a log line) becomes a span event.
        .with_filter(filter_fn(|meta| meta.is_span() && meta.target() == TARGET));
    Ok((layer, Telemetry { provider }))
}
