//! Authorization of every call, after authentication and before the relay and rmcp.
//!
//! A POST naming a capability (`tools/call`, `prompts/get`, `resources/read`, subscribe) is
//! decided here, once, on the body's own method, target and arguments: what would be executed
//! is what is judged. A step-up is answered here (only HTTP can carry the 403 challenge); every
//! other verdict travels on in the request's extensions (`CallVerdict`), where the relay
//! forwards only `Allowed` calls and the typed proxy answers the rest exactly as it answers a
//! name that does not exist, or with the fixed denial. The caller, as policies see it, travels
//! on too, for list filtering.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{Method, StatusCode};
use portcullis_audit::{AuditDecision, Durability};
use portcullis_authn::{Challenge, Scopes, VerifiedPrincipal};
use portcullis_core::{CorrelationId, Era};
use portcullis_mcp::envelope::Envelope;
use portcullis_policy::{
    Call, CapabilityKind, Decision, ObjectAttributes, PolicyEngine, Principal, RiskTier, Visibility,
};

use crate::{
    proxy::Gateway,
    trail::{self, Decided, Trail},
    verdict::CallVerdict,
};

/// Why a call's object has no attributes to decide on.
enum Unresolved {
    /// It does not exist for this caller: the capability's "not found" text.
    Missing(String),
    /// The resolver failed.
    Failed,
}

/// The call's object, resolved from its backend when the capability says how, with the
/// capability's "not found" text; `Ok(None)` when there is nothing to resolve.
async fn resolve(
    authz: &Authz,
    policy: &PolicyEngine,
    principal: &Principal,
    kind: CapabilityKind,
    name: &str,
    arguments: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<Option<(ObjectAttributes, String)>, Unresolved> {
    let Some((capability, _)) = policy.catalog().find(kind, name) else {
        return Ok(None);
    };
    let (Some(resolver), Some(field)) = (&capability.resolver, &capability.object) else {
        return Ok(None);
    };
    // A capability the caller cannot see is decided (and answered) as not existing: asking
    // its backend first would answer in the capability's words, and give it away.
    if !policy.visible(principal, kind, name) {
        return Ok(None);
    }
    // A call that names no object, or not as a string, has nothing to resolve; the backend
    // answers it as it would.
    let Some(object) = arguments
        .and_then(|a| a.get(field))
        .and_then(|v| v.as_str())
    else {
        return Ok(None);
    };
    match authz
        .gateway
        .resolve_object(principal, name, resolver, object)
        .await
    {
        Ok(Some(attributes)) => Ok(Some((attributes, resolver.not_found.clone()))),
        Ok(None) => Err(Unresolved::Missing(resolver.not_found.clone())),
        Err(error) => {
            tracing::warn!(%error, "object resolution failed");
            Err(Unresolved::Failed)
        }
    }
}

pub(super) struct Authz {
    pub(super) trail: Trail,
    pub(super) gateway: Arc<Gateway>,
    pub(super) metadata_url: String,
    pub(super) max_body_bytes: usize,
}

/// The verified caller as policies see it.
pub(crate) fn principal(verified: &VerifiedPrincipal) -> Principal {
    Principal {
        subject: verified.subject().to_owned(),
        issuer: verified.issuer().to_owned(),
        tenant: verified.tenant().map(str::to_owned),
        roles: verified.roles().to_vec(),
        scopes: verified.scopes().to_vec(),
        client_id: verified.client_id().map(str::to_owned),
    }
}

pub(super) async fn authorize(
    State(authz): State<Arc<Authz>>,
    request: Request,
    next: Next,
) -> Response {
    // Authentication ran first; without its principal nothing is decided, nothing passes.
    let policy = authz.gateway.policy();
    let Some((token, policy)) = request
        .extensions()
        .get::<VerifiedPrincipal>()
        .map(principal)
        .zip(policy)
    else {
        let correlation = CorrelationId::fresh();
        tracing::error!(%correlation, "request reached authorization unauthenticated");
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error; reference {correlation}\n"),
        )
            .into_response();
    };
    // Decided on what the caller holds now, which its entitlements may have changed since its
    // token was issued (authn already refused a disabled subject).
    let Ok(principal) = authz.gateway.entitled(token.clone()) else {
        // Disabled between authentication and here: refused all the same, and recorded.
        let correlation = CorrelationId::fresh();
        let request_line = format!("{} {}", request.method(), request.uri().path());
        let mut record = trail::refusal(
            correlation.as_str(),
            &request_line,
            portcullis_audit::AuditDecision::Deny,
            403,
            "subject_disabled",
            None,
        );
        record.issuer = Some(token.issuer.clone());
        record.subject = Some(token.subject.clone());
        let _ = authz.trail.record(record, Durability::Queued).await;
        return (StatusCode::FORBIDDEN, "Forbidden\n").into_response();
    };
    let (mut parts, body) = request.into_parts();
    parts.extensions.insert(crate::proxy::TokenPrincipal(token));
    if parts.method != Method::POST {
        parts.extensions.insert(principal);
        return next.run(Request::from_parts(parts, body)).await;
    }
    // Only the body limit can fail a read here: the layer outside already bounds it.
    let Ok(bytes) = axum::body::to_bytes(body, authz.max_body_bytes).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large\n").into_response();
    };
    if let Ok(envelope) = Envelope::parse(&bytes)
        && let Some(kind) = CapabilityKind::of_method(envelope.method)
        && let Some(name) = envelope.name.as_deref()
    {
        let arguments = envelope
            .arguments
            .and_then(|raw| serde_json::from_str::<serde_json::Map<_, _>>(raw.get()).ok());
        let era = parts
            .headers
            .get("mcp-protocol-version")
            .and_then(|value| value.to_str().ok())
            .or(envelope.declared_version.as_deref())
            .unwrap_or(Era::Sessions.as_str());
        let correlation = CorrelationId::fresh();
        let session = parts
            .headers
            .get("mcp-session-id")
            .and_then(|value| value.to_str().ok());
        let object = policy
            .catalog()
            .find(kind, name)
            .and_then(|(capability, _)| capability.object.as_ref())
            .and_then(|field| arguments.as_ref()?.get(field)?.as_str());
        let decided = Decided {
            correlation: correlation.as_str(),
            method: envelope.method,
            capability: name,
            target: object,
            // The digest is work on every call: only when a sink keeps it.
            arguments: arguments.as_ref().filter(|_| authz.trail.keeps_records()),
            era,
            session,
        };
        let resolved = match resolve(&authz, &policy, &principal, kind, name, arguments.as_ref())
            .await
        {
            Ok(resolved) => resolved,
            Err(unresolved) => {
                let (verdict, outcome, reason) = match unresolved {
                    Unresolved::Missing(text) => {
                        tracing::info!(%correlation, subject = %principal.subject, method = envelope.method, capability = name, outcome = "deny", reasons = ?["object_not_found"], "authorization decision");
                        (
                            CallVerdict::ObjectHidden(text),
                            AuditDecision::Deny,
                            "object_not_found",
                        )
                    }
                    Unresolved::Failed => {
                        tracing::warn!(%correlation, subject = %principal.subject, capability = name, outcome = "error", "the call's object could not be resolved: refused");
                        (
                            CallVerdict::Malfunction(correlation.clone()),
                            AuditDecision::Error,
                            "object_unresolved",
                        )
                    }
                };
                let mut record = trail::called(&principal, &decided, outcome);
                record.reasons = vec![reason.to_owned()];
                let _ = authz.trail.record(record, Durability::Queued).await;
                parts.extensions.insert(verdict);
                parts.extensions.insert(principal);
                return next
                    .run(Request::from_parts(parts, Body::from(bytes)))
                    .await;
            }
        };
        let call = Call {
            kind,
            name,
            arguments: arguments.as_ref(),
            era,
            object: resolved.as_ref().map(|(attributes, _)| attributes),
            risk_hint: (kind == CapabilityKind::Tool)
                .then(|| authz.gateway.risk_hint(name))
                .flatten(),
        };
        let decision = policy.authorize(&principal, &call);
        // A candidate set in shadow decides the same call; only a disagreement is recorded.
        if let Some(shadow) = authz.gateway.shadow() {
            let candidate = shadow.authorize(&principal, &call);
            if candidate.outcome() != decision.outcome() {
                let mut record = trail::decision(&principal, &decided, &candidate);
                record.shadow = true;
                record.reasons.insert(0, "shadow_disagrees".to_owned());
                tracing::info!(%correlation, capability = name, live = decision.outcome(), shadow = candidate.outcome(), "shadow policies disagree");
                let _ = authz.trail.record(record, Durability::Queued).await;
            }
        }
        // A call that may change something is recorded durably before it is forwarded; if the
        // trail cannot take it, the call does not happen.
        let state_changing =
            matches!(decision, Decision::Allow(_)) && policy.risk(&call) > RiskTier::Read;
        let durability = if state_changing {
            Durability::Durable
        } else {
            Durability::Queued
        };
        let record = trail::decision(&principal, &decided, &decision);
        if authz.trail.record(record, durability).await.is_err() && state_changing {
            tracing::error!(%correlation, capability = name, "audit trail unavailable: state-changing call refused");
            authz.trail.metrics().audit_refusal();
            parts
                .extensions
                .insert(CallVerdict::Malfunction(correlation));
            parts.extensions.insert(principal);
            return next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
        }
        let reasons = decision.reasons();
        let codes: Vec<&str> = reasons.codes.iter().map(|code| code.as_str()).collect();
        tracing::info!(
            %correlation,
            subject = %principal.subject,
            method = envelope.method,
            capability = name,
            outcome = decision.outcome(),
            policies = ?reasons.policies,
            reasons = ?codes,
            policy_version = %reasons.policy_version,
            "authorization decision"
        );
        let verdict = match decision {
            Decision::StepUp { scopes, .. } => {
                return match Scopes::new(scopes) {
                    Ok(scopes) => super::authn::challenge_response(
                        &authz.metadata_url,
                        &Challenge::InsufficientScope { scopes },
                    ),
                    // Configuration checked every scope; an unwritable one cannot get here.
                    Err(_) => (StatusCode::FORBIDDEN, "Forbidden\n").into_response(),
                };
            }
            Decision::Allow(authorized) => CallVerdict::Allowed(authorized, correlation),
            // An object of another tenant, on a capability the caller can see: it answers as
            // the object not existing, in the capability's own words.
            Decision::Deny {
                visibility: Visibility::Hidden,
                ..
            } if resolved.is_some() && policy.visible(&principal, kind, name) => {
                CallVerdict::ObjectHidden(resolved.map(|(_, text)| text).unwrap_or_default())
            }
            Decision::Deny {
                visibility: Visibility::Hidden,
                ..
            } => CallVerdict::Hidden,
            Decision::Deny { .. } => CallVerdict::Denied(correlation),
            Decision::AskApproval(pending) => CallVerdict::ApprovalRequired(pending, correlation),
        };
        parts.extensions.insert(verdict);
    }
    parts.extensions.insert(principal);
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
