//! The proxy's side of authorization: a call goes upstream only with an `Allowed` verdict, a
//! refused one is answered as the verdict says, and lists show only what the caller could call.

use std::time::{Duration, Instant};

use portcullis_core::Era;
use portcullis_policy::{Call, CapabilityKind, Decision, PolicyEngine, Principal};
use rmcp::{
    ErrorData as McpError, RoleServer,
    model::{ListToolsResult, Reference},
    service::RequestContext,
};

use super::{Gateway, GatewayHandler, list::Listing};
use crate::verdict::{self, CallVerdict};

// An unknown tool name makes the gateway re-learn the tool list, at most this often: often
// enough for a new upstream tool to be found, rarely enough that random names cannot make the
// gateway hammer its upstreams.
const RELEARN_INTERVAL: Duration = Duration::from_secs(1);

fn parts(context: &RequestContext<RoleServer>) -> Option<&http::request::Parts> {
    context.extensions.get::<http::request::Parts>()
}

/// Refuse the call unless its verdict allows it; `not_found` is the answer for a name that does
/// not exist. Without policies (an unauthenticated gateway, under `[danger]`) everything passes.
pub(super) fn admit(
    gateway: &Gateway,
    context: &RequestContext<RoleServer>,
    not_found: impl FnOnce() -> McpError,
) -> Result<(), McpError> {
    if gateway.policy().is_none() {
        return Ok(());
    }
    match parts(context).and_then(|parts| parts.extensions.get::<CallVerdict>()) {
        Some(verdict) => verdict.refusal(not_found).map_or(Ok(()), Err),
        None => Err(verdict::missing()),
    }
}

/// The capability's own "not found" answer, when the call's object is hidden or missing.
pub(super) fn hidden_object(context: &RequestContext<RoleServer>) -> Option<String> {
    parts(context)?
        .extensions
        .get::<CallVerdict>()?
        .hidden_object()
        .map(str::to_owned)
}

/// A completion reveals values of a prompt's or a resource template's arguments: only for a
/// reference the caller could use.
pub(super) async fn admit_reference(
    gateway: &Gateway,
    context: &RequestContext<RoleServer>,
    reference: &Reference,
) -> Result<(), McpError> {
    let Some(policy) = gateway.policy() else {
        return Ok(());
    };
    let Some(principal) = parts(context).and_then(|parts| parts.extensions.get::<Principal>())
    else {
        return Err(verdict::missing());
    };
    let (kind, name, not_found) = match reference {
        Reference::Prompt(prompt) => (
            CapabilityKind::Prompt,
            prompt.name.as_str(),
            "prompt not found",
        ),
        Reference::Resource(resource) => (
            CapabilityKind::Resource,
            resource.uri.as_str(),
            "resource not found",
        ),
        _ => return Ok(()),
    };
    if policy.visible(principal, kind, name) {
        return Ok(());
    }
    if let Some(trail) = gateway.trail.get() {
        let record =
            crate::trail::refused_request(principal, "completion/complete", name, "not_visible");
        let _ = trail
            .record(record, portcullis_audit::Durability::Queued)
            .await;
    }
    Err(McpError::invalid_params(not_found, None))
}

/// Keep the items `principal` could use; mark the page private to this caller. Returns the
/// audit record of the filtering (none on an unauthenticated gateway).
pub(super) fn filter<L: Listing>(
    gateway: &Gateway,
    context: &RequestContext<RoleServer>,
    method: &str,
    page: &mut L,
) -> Result<Option<portcullis_audit::AuditRecord>, McpError> {
    let Some(policy) = gateway.policy() else {
        return Ok(None);
    };
    let parts = parts(context);
    let Some(principal) = parts.and_then(|parts| parts.extensions.get::<Principal>()) else {
        return Err(verdict::missing());
    };
    let era = parts
        .and_then(|parts| parts.headers.get("mcp-protocol-version"))
        .and_then(|value| value.to_str().ok())
        .unwrap_or(Era::Sessions.as_str());
    let before = page.parts().0.len();
    let keep = L::visible(&policy, principal, era, page.parts().0);
    let mut keep = keep.into_iter();
    page.parts().0.retain(|_| keep.next().unwrap_or(false));
    page.mark_private();
    let listed = page.parts().0.len();
    let session = parts
        .and_then(|parts| parts.headers.get("mcp-session-id"))
        .and_then(|value| value.to_str().ok());
    Ok(Some(crate::trail::listed(
        principal,
        (method, era, session),
        listed,
        before - listed,
        policy.version(),
    )))
}

/// A resource is listed when reading it could be allowed (its URI may name its tenant and
/// object); tools, prompts and templates when some call could be.
pub(super) fn resource_listed(
    policy: &PolicyEngine,
    principal: &Principal,
    era: &str,
    uri: &str,
) -> bool {
    let call = Call {
        kind: CapabilityKind::Resource,
        name: uri,
        arguments: None,
        era,
        object: None,
        risk_hint: None,
    };
    !matches!(policy.authorize(principal, &call), Decision::Deny { .. })
}

impl GatewayHandler {
    /// Record what became of an allowed call on the typed path.
    pub(super) async fn record_outcome(
        &self,
        context: &RequestContext<RoleServer>,
        called: (&str, &str),
        index: usize,
        started: Instant,
        outcome: &str,
    ) {
        let Some(parts) = parts(context) else {
            return;
        };
        self.gateway
            .record_outcome(
                &parts.extensions,
                called,
                self.gateway.upstream_name(index),
                outcome,
                started.elapsed(),
            )
            .await;
    }

    /// Whether a tool of this name exists upstream, re-learning the list (rate-limited) when it
    /// is not known: a hidden tool and a tool that does not exist must get the same answer,
    /// so with policies on the gateway answers both itself.
    pub(super) async fn knows_tool(
        &self,
        name: &str,
        context: &RequestContext<RoleServer>,
    ) -> bool {
        if self.gateway.tool(name).is_some() {
            return true;
        }
        // Callers that arrive while the list is being learned wait for it, rather than
        // answering "not found" for a tool the upstream has.
        let mut last = self.gateway.tools_learned.lock().await;
        if self.gateway.tool(name).is_some() {
            return true;
        }
        if last.is_none_or(|at| at.elapsed() >= RELEARN_INTERVAL) {
            let _ = self.list_unfiltered::<ListToolsResult>(context).await;
            *last = Some(Instant::now());
        }
        self.gateway.tool(name).is_some()
    }
}
