//! Step-up: a call to a capability that needs a scope the caller's token lacks is answered
//! with HTTP 403 and `error="insufficient_scope"`, naming every scope the call needs, so the
//! client re-authorizes once and retries (MCP authorization, scope challenge handling).
//!
//! It runs after authentication and before the relay and rmcp, on the request body's own
//! method and target: what would be executed is what is judged. An HTTP status can only be
//! given before a response starts, so this is the one check that must sit here.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{Method, StatusCode};
use portcullis_authn::{Challenge, Scopes, VerifiedPrincipal};
use portcullis_mcp::envelope::Envelope;
use portcullis_policy::{CapabilityKind, Catalog};

pub(super) struct StepUp {
    pub(super) catalog: Catalog,
    pub(super) metadata_url: String,
    pub(super) max_body_bytes: usize,
}

pub(super) async fn require_scopes(
    State(step_up): State<Arc<StepUp>>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    // Only the body limit can fail a read here: the layer outside already bounds it.
    let Ok(bytes) = axum::body::to_bytes(body, step_up.max_body_bytes).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large\n").into_response();
    };
    // Authentication ran first and put the principal here; without one nothing is granted.
    let granted = parts
        .extensions
        .get::<VerifiedPrincipal>()
        .map_or(&[][..], VerifiedPrincipal::scopes);
    let needed = Envelope::parse(&bytes).ok().and_then(|envelope| {
        let kind = CapabilityKind::of_method(envelope.method)?;
        let name = envelope.name?;
        step_up.catalog.missing_scopes(kind, &name, granted)
    });
    if let Some(needed) = needed
        && let Ok(scopes) = Scopes::new(needed.iter().cloned())
    {
        tracing::info!(scope = %scopes.joined(), "call needs more scope: step-up challenge");
        return super::authn::challenge_response(
            &step_up.metadata_url,
            &Challenge::InsufficientScope { scopes },
        );
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
