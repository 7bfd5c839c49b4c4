//! One decision per request, whatever its method.
//!
//! `initialize`, `ping` and `server/discover` are the gateway's own to answer: nothing goes
//! upstream. Lists are allowed to every caller and filtered per caller, item by item, by the
//! same policies. Everything else is a Cedar decision: `tools/call`, `prompts/get` and
//! `resources/*` on their capability; the protocol's utility methods and every other method,
//! known or not, as `Action::"rpc:<method>"` (or `Action::"rpc"` itself), default deny. Before
//! Cedar, what answers as "does not exist" is settled (another caller's task, a completion on a
//! reference the caller cannot see, an object its backend does not know for this caller).

use std::sync::Arc;

use portcullis_audit::{AuditDecision, Durability};
use portcullis_core::{CallerId, CompletionRef, McpMethod, McpRequest};
use portcullis_policy::{
    Call, CapabilityKind, Decision, ObjectAttributes, PolicyEngine, Principal, Resolver, RiskTier,
    Visibility,
};
use serde_json::{Map, Value};

use super::{
    Access, Authorized, Internal, Pending, Reason, Scene, Verdict,
    record::{self, about},
};

/// Where a task lives, for a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskRoute {
    /// Made by this caller, on this upstream.
    Owned(usize),
    /// Made by someone else.
    Foreign,
    /// Never seen here.
    Unknown,
}

/// What the decision asks of the upstream side, which it does not otherwise know.
pub(crate) trait Objects: Sync {
    /// `object`'s attributes as the backend of capability `target` (a tool or prompt name, a
    /// resource URI) reports them to `principal`; `Ok(None)` when it does not exist (for
    /// this caller).
    fn resolve(
        &self,
        proof: &Internal,
        principal: &Principal,
        target: (CapabilityKind, &str),
        resolver: &Resolver,
        object: &str,
    ) -> impl Future<Output = Result<Option<ObjectAttributes>, String>> + Send;

    /// Where task `task` lives for `caller`.
    fn task(&self, task: &str, caller: Option<&CallerId>) -> TaskRoute;

    /// Whether a method the gateway does not know can be sent anywhere (only with one
    /// upstream: nothing says which of several would take it).
    fn routes_other_methods(&self) -> bool;

    /// Whether the tool or prompt `name` is held back: its upstream changed its definition
    /// since it was pinned, and no operator approved the change.
    fn held(&self, kind: CapabilityKind, name: &str) -> bool;

    /// The credential a call of `target` would travel with to its upstream, for `caller`;
    /// whether the caller's own exists is looked up only when `connected` is asked for.
    /// `Err` when it cannot be told.
    fn credential(
        &self,
        target: (CapabilityKind, &str),
        caller: Option<&CallerId>,
        connected: bool,
    ) -> impl Future<Output = Result<portcullis_policy::Credential, String>> + Send;

    /// The tier a tool's own annotations suggest (`destructiveHint`), learning them first
    /// if nobody has listed the tool yet.
    fn risk_hint(
        &self,
        tool: &str,
        on_behalf: &Principal,
    ) -> impl Future<Output = Option<RiskTier>> + Send;
}

/// Decide `request` from `scene`.
pub(crate) async fn decide(
    access: &Access,
    objects: &impl Objects,
    scene: Scene<'_>,
    request: Arc<McpRequest>,
) -> Verdict {
    let correlation = scene.caller.correlation.clone();
    // Methods the caller's era does not have, and tasks methods without the extension: the
    // gateway refuses them itself (recorded), nothing forwarded.
    let refused = if !request.method.exists_in(scene.era) {
        Some((Reason::MethodNotInEra, Verdict::NotInEra))
    } else if request.lacks_tasks_extension() {
        Some((
            Reason::MissingClientCapability,
            Verdict::MissingTasksExtension,
        ))
    } else {
        None
    };
    if let Some((reason, verdict)) = refused {
        let record = about(scene, &request, AuditDecision::Deny, &[reason], false);
        let _ = access.record(record, Durability::Queued).await;
        return verdict;
    }
    // The lifecycle: the gateway's own answer, nothing forwarded.
    if matches!(
        request.method,
        McpMethod::Initialize | McpMethod::Ping | McpMethod::Discover
    ) {
        return Verdict::Local;
    }
    // SECURITY: a definition changed since it was pinned is not the one anybody reviewed; it
    // answers as one that does not exist until an operator approves it, whoever calls.
    let pinned = match (&request.method, request.completion_ref()) {
        (McpMethod::ToolsCall, _) => Some((CapabilityKind::Tool, name_of(&request))),
        (McpMethod::PromptsGet, _) => Some((CapabilityKind::Prompt, name_of(&request))),
        (McpMethod::Complete, Some(portcullis_core::CompletionRef::Prompt(name))) => {
            Some((CapabilityKind::Prompt, name))
        }
        (McpMethod::Complete, Some(portcullis_core::CompletionRef::Resource(uri))) => {
            Some((CapabilityKind::Resource, uri))
        }
        _ => None,
    };
    if let Some((kind, name)) = pinned
        && objects.held(kind, name)
    {
        let record = about(
            scene,
            &request,
            AuditDecision::Deny,
            &[Reason::DefinitionHeld],
            false,
        );
        let _ = access.record(record, Durability::Queued).await;
        return Verdict::Hidden;
    }
    let (Some(policy), Some(principal)) = (&scene.caller.policy, scene.caller.principal()) else {
        // `[danger] unauthenticated`: nothing is decided, everything goes.
        return Verdict::Allow(Authorized::new(request, correlation, None));
    };
    let keep_arguments = access.trail().keeps_records();
    if request.method.is_list() {
        let record = about(
            scene,
            &request,
            AuditDecision::Allow,
            &[Reason::List],
            false,
        );
        let _ = access.record(record, Durability::Queued).await;
        return Verdict::Allow(Authorized::new(request, correlation, None));
    }
    let (kind, name) = subject(&request);
    let settled = match &request.method {
        McpMethod::TasksGet
        | McpMethod::TasksResult
        | McpMethod::TasksCancel
        | McpMethod::TasksUpdate => {
            let owned = matches!(
                objects.task(name_of(&request), scene.caller.id()),
                TaskRoute::Owned(_)
            );
            (!owned).then_some(Reason::TaskNotFound)
        }
        McpMethod::Complete => {
            (!reference_visible(policy, principal, &request)).then_some(Reason::NotVisible)
        }
        McpMethod::Other(_) => (!objects.routes_other_methods()).then_some(Reason::NoRoute),
        _ => None,
    };
    if let Some(reason) = settled {
        let record = about(
            scene,
            &request,
            AuditDecision::Deny,
            &[reason],
            keep_arguments,
        );
        let _ = access.record(record, Durability::Queued).await;
        return Verdict::Hidden;
    }
    let arguments = match (&request.method, kind) {
        (McpMethod::Complete, _) => Some(completed_arguments(&request.params)),
        (_, CapabilityKind::Tool | CapabilityKind::Prompt) => request.arguments().cloned(),
        (_, CapabilityKind::Method) => Some(without_meta(&request.params)),
        (_, CapabilityKind::Resource) => None,
    };
    let target = object_named(policy, (kind, name), arguments.as_ref());
    // A completion names no object yet, only the start of one: nothing to resolve.
    let resolving = match request.method {
        McpMethod::Complete => Ok(None),
        _ => resolve(objects, policy, principal, (kind, name), arguments.as_ref()).await,
    };
    let resolved = match resolving {
        Ok(resolved) => resolved,
        Err(unresolved) => {
            let (verdict, decision, reason) = match unresolved {
                Unresolved::Missing(text) => (
                    Verdict::ObjectHidden(text),
                    AuditDecision::Deny,
                    Reason::ObjectNotFound,
                ),
                Unresolved::Failed => (
                    Verdict::Malfunction(correlation.clone()),
                    AuditDecision::Error,
                    Reason::ObjectUnresolved,
                ),
            };
            let mut record = about(scene, &request, decision, &[reason], keep_arguments);
            record.target = target;
            let _ = access.record(record, Durability::Queued).await;
            return verdict;
        }
    };
    // Policies may read how the call would reach its upstream (`context.credential`) and
    // whether the caller connected it (`context.connected`). SECURITY: not knowing is not
    // "not connected": the call does not run.
    // A candidate set in shadow that reads it gets it too, or it would disagree for nothing.
    let reads_connected = policy.reads_connected()
        || access
            .shadow()
            .is_some_and(|shadow| shadow.reads_connected());
    let credential = match objects
        .credential((kind, name), scene.caller.id(), reads_connected)
        .await
    {
        Ok(credential) => credential,
        Err(error) => {
            tracing::warn!(%correlation, %error, "cannot tell whether the caller connected the upstream");
            let mut record = about(
                scene,
                &request,
                AuditDecision::Error,
                &[Reason::ConnectionUnknown],
                keep_arguments,
            );
            record.target = target;
            let _ = access.record(record, Durability::Queued).await;
            return Verdict::Malfunction(correlation);
        }
    };
    let call = Call {
        kind,
        name,
        arguments: arguments.as_ref(),
        era: scene.era.as_str(),
        object: resolved.as_ref().map(|(attributes, _)| attributes),
        risk_hint: match kind {
            CapabilityKind::Tool => objects.risk_hint(name, principal).await,
            _ => None,
        },
        credential,
    };
    let decision = policy.authorize(principal, &call);
    // A candidate set in shadow decides the same call; only a disagreement is recorded.
    if let Some(shadow) = access.shadow() {
        let candidate = shadow.authorize(principal, &call);
        if candidate.outcome() != decision.outcome() {
            let mut record = record::decision(
                scene,
                &request,
                &candidate,
                target.as_deref(),
                keep_arguments,
            );
            record.shadow = true;
            record
                .reasons
                .insert(0, Reason::ShadowDisagrees.as_str().to_owned());
            tracing::info!(%correlation, capability = name, live = decision.outcome(), shadow = candidate.outcome(), "shadow policies disagree");
            let _ = access.record(record, Durability::Queued).await;
        }
    }
    // A call its caller may make, but not this often (`[limits.tools]`): checked once the
    // decision says the caller may see and make it, so a limit reveals nothing hidden; the
    // refusal is its record (counted), so no "allow" is recorded for a call that never ran.
    if kind == CapabilityKind::Tool
        && matches!(decision, Decision::Allow(_) | Decision::AskApproval(_))
        && let Some(id) = scene.caller.id()
        && let Err(over) = access.rates().admit_tool(id, name)
    {
        let mut record = about(scene, &request, AuditDecision::Deny, &[], false);
        record.capability = Some(name.to_owned());
        crate::rate::counted(access, record);
        return Verdict::RateLimited(over);
    }
    // A request that may change something is recorded durably before it is forwarded; if the
    // trail cannot take it, it does not happen.
    let state_changing =
        matches!(decision, Decision::Allow(_)) && policy.risk(&call) > RiskTier::Read;
    let durability = if state_changing {
        Durability::Durable
    } else {
        Durability::Queued
    };
    let record = record::decision(
        scene,
        &request,
        &decision,
        target.as_deref(),
        keep_arguments,
    );
    if access.record(record, durability).await.is_err() && state_changing {
        tracing::error!(%correlation, capability = name, "audit trail unavailable: state-changing request refused");
        access.trail().metrics().audit_refusal();
        return Verdict::Malfunction(correlation);
    }
    tracing::debug!(
        %correlation,
        subject = %principal.subject,
        method = %request.method,
        capability = name,
        outcome = decision.outcome(),
        policies = ?decision.reasons().policies,
        "authorization decision"
    );
    match decision {
        Decision::StepUp { scopes, .. } => Verdict::StepUp { scopes },
        Decision::Allow(allowed) => Verdict::Allow(Authorized::new(
            request,
            correlation,
            Some(allowed.reasons().clone()),
        )),
        // An object of another tenant, on a capability the caller can see: it answers as the
        // object not existing, in the capability's own words.
        Decision::Deny {
            visibility: Visibility::Hidden,
            ..
        } if resolved.is_some() && policy.visible(principal, kind, name) => {
            Verdict::ObjectHidden(resolved.map(|(_, text)| text).unwrap_or_default())
        }
        Decision::Deny {
            visibility: Visibility::Hidden,
            ..
        } => Verdict::Hidden,
        Decision::Deny { .. } => Verdict::Denied(correlation),
        Decision::AskApproval(pending) => Verdict::Ask(Pending::new(request, correlation, pending)),
    }
}

/// Whether `principal` could read resource `uri` now, decided as a `resources/read` of it would
/// be, its object resolved: what a `subscriptions/listen` filter may name.
pub(crate) async fn readable(
    objects: &impl Objects,
    policy: &PolicyEngine,
    (principal, caller): (&Principal, Option<&CallerId>),
    era: &str,
    uri: &str,
) -> bool {
    let target = (CapabilityKind::Resource, uri);
    let Ok(resolved) = resolve(objects, policy, principal, target, None).await else {
        return false;
    };
    // As a read would be decided: a policy on how it would reach its upstream applies here
    // too, and not knowing whether the caller connected it is not being allowed.
    let Ok(credential) = objects
        .credential(target, caller, policy.reads_connected())
        .await
    else {
        return false;
    };
    let call = Call {
        kind: CapabilityKind::Resource,
        name: uri,
        arguments: None,
        era,
        object: resolved.as_ref().map(|(attributes, _)| attributes),
        risk_hint: None,
        credential,
    };
    matches!(policy.authorize(principal, &call), Decision::Allow(_))
}

/// What kind of capability a request acts on, and its name (a resource's URI; a method's own
/// name for everything that is not a call, a prompt or a resource). A completion is decided
/// as the read it completes: it reveals that prompt's or resource's argument values.
fn subject(request: &McpRequest) -> (CapabilityKind, &str) {
    match &request.method {
        McpMethod::Complete => match request.completion_ref() {
            Some(CompletionRef::Prompt(name)) => (CapabilityKind::Prompt, name),
            Some(CompletionRef::Resource(uri)) => (CapabilityKind::Resource, uri),
            None => (CapabilityKind::Method, request.method.as_str()),
        },
        McpMethod::ToolsCall => (CapabilityKind::Tool, name_of(request)),
        McpMethod::PromptsGet => (CapabilityKind::Prompt, name_of(request)),
        McpMethod::ResourcesRead
        | McpMethod::ResourcesSubscribe
        | McpMethod::ResourcesUnsubscribe => (CapabilityKind::Resource, name_of(request)),
        method => (CapabilityKind::Method, method.as_str()),
    }
}

/// The request's target; parsing made sure a method that names one has it.
fn name_of(request: &McpRequest) -> &str {
    request.target().unwrap_or_default()
}

/// The arguments a completion shows the read it completes with: those already given
/// (`context.arguments`) and the one being completed, as far as it is typed.
fn completed_arguments(params: &Map<String, Value>) -> Map<String, Value> {
    let mut arguments = params
        .get("context")
        .and_then(|context| context.get("arguments"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let argument = params.get("argument");
    if let (Some(name), Some(value)) = (
        argument.and_then(|a| a.get("name")).and_then(Value::as_str),
        argument.and_then(|a| a.get("value")),
    ) {
        arguments.insert(name.to_owned(), value.clone());
    }
    arguments
}

fn without_meta(params: &Map<String, Value>) -> Map<String, Value> {
    params
        .iter()
        .filter(|(key, _)| *key != "_meta")
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// A completion reveals values of a prompt's or a resource template's arguments: only for a
/// reference the caller could use.
fn reference_visible(policy: &PolicyEngine, principal: &Principal, request: &McpRequest) -> bool {
    match request.completion_ref() {
        Some(CompletionRef::Prompt(name)) => {
            policy.visible(principal, CapabilityKind::Prompt, name)
        }
        Some(CompletionRef::Resource(uri)) => {
            policy.visible(principal, CapabilityKind::Resource, uri)
        }
        None => false,
    }
}

/// The object a request names: a segment of the resource URI's template, or the argument the
/// capability says names it.
fn object_named(
    policy: &PolicyEngine,
    (kind, name): (CapabilityKind, &str),
    arguments: Option<&Map<String, Value>>,
) -> Option<String> {
    let (capability, segments) = policy.catalog().find(kind, name)?;
    let field = capability.object.as_ref()?;
    segments
        .into_iter()
        .find(|(segment, _)| segment == field)
        .map(|(_, value)| value)
        .or_else(|| Some(arguments?.get(field)?.as_str()?.to_owned()))
}

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
    objects: &impl Objects,
    policy: &PolicyEngine,
    principal: &Principal,
    (kind, name): (CapabilityKind, &str),
    arguments: Option<&Map<String, Value>>,
) -> Result<Option<(ObjectAttributes, String)>, Unresolved> {
    let Some((capability, _)) = policy.catalog().find(kind, name) else {
        return Ok(None);
    };
    let Some(resolver) = &capability.resolver else {
        return Ok(None);
    };
    // A capability the caller cannot see is decided (and answered) as not existing: asking its
    // backend first would answer in the capability's words, and give it away.
    if !policy.visible(principal, kind, name) {
        return Ok(None);
    }
    // A call that names no object has nothing to resolve; the backend answers it as it
    // would. (One naming it as anything but a string is refused by `authorize`.)
    let Some(object) = object_named(policy, (kind, name), arguments) else {
        return Ok(None);
    };
    match objects
        .resolve(
            &Internal::resolving(),
            principal,
            (kind, name),
            resolver,
            &object,
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream side where every capability travels with the credential `0`, the caller
    /// connected or not as `1` says, or where that cannot be told (`None`).
    struct Routed(Option<(&'static str, bool)>);

    impl Objects for Routed {
        async fn resolve(
            &self,
            _: &Internal,
            _: &Principal,
            _: (CapabilityKind, &str),
            _: &Resolver,
            _: &str,
        ) -> Result<Option<ObjectAttributes>, String> {
            Ok(None)
        }

        fn task(&self, _: &str, _: Option<&CallerId>) -> TaskRoute {
            TaskRoute::Unknown
        }

        fn routes_other_methods(&self) -> bool {
            false
        }

        fn held(&self, _: CapabilityKind, _: &str) -> bool {
            false
        }

        async fn credential(
            &self,
            _: (CapabilityKind, &str),
            _: Option<&CallerId>,
            _: bool,
        ) -> Result<portcullis_policy::Credential, String> {
            let (kind, connected) = self.0.ok_or("the store cannot be read")?;
            Ok(portcullis_policy::Credential { kind, connected })
        }

        async fn risk_hint(&self, _: &str, _: &Principal) -> Option<RiskTier> {
            None
        }
    }

    // See: review of issue 17/18. What a subscription may hear of was decided with no
    // credential at all, so a forbid on `context.credential` or `context.connected` let its
    // caller hear of resources it may not read.
    #[tokio::test]
    async fn what_a_subscription_hears_of_is_decided_with_the_read_credential() {
        let engine = PolicyEngine::new(
            portcullis_policy::Catalog::default(),
            "p.cedar",
            "permit (principal, action, resource);\n\
             forbid (principal, action, resource)\n\
             when { context.credential == \"user-oauth\" && !context.connected };",
        )
        .unwrap();
        let principal = Principal {
            subject: "alice".to_owned(),
            issuer: "https://issuer.example".to_owned(),
            tenant: None,
            roles: Vec::new(),
            scopes: Vec::new(),
            client_id: None,
        };
        let caller = CallerId::new("https://issuer.example", "alice");
        let heard = |routed| {
            let (engine, principal, caller) = (&engine, &principal, &caller);
            async move {
                readable(
                    &routed,
                    engine,
                    (principal, Some(caller)),
                    "2026-07-28",
                    "tickets://1",
                )
                .await
            }
        };
        assert!(heard(Routed(Some(("gateway", false)))).await);
        assert!(heard(Routed(Some(("user-oauth", true)))).await);
        assert!(!heard(Routed(Some(("user-oauth", false)))).await);
        assert!(!heard(Routed(None)).await, "not knowing is not allowed");
    }
}
