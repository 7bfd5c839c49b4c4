//! The audit records of the request path, and the reason codes they carry. Tokens, secrets and
//! headers never go in; arguments only as a digest (raw only with `[audit] raw_arguments`,
//! redacted by the trail).

use portcullis_audit::{AuditDecision, AuditRecord};
use portcullis_core::{Era, McpMethod, McpRequest};
use portcullis_policy::{Decision, ReasonCode};

use super::caller::Caller;

/// Why something was decided or refused, as records and logs write it. Policy reasons come
/// from the policy crate; the rest are the gateway's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The policy set's reason.
    Policy(ReasonCode),
    /// The Host header is not one the gateway serves.
    HostNotAllowed,
    /// The Origin header is not one the gateway accepts.
    OriginNotAllowed,
    /// The body is larger than the limit.
    BodyTooLarge,
    /// The body did not arrive in the time allowed.
    BodyTooSlow,
    /// The caller sent more requests than its rate allows.
    RateLimited,
    /// No token.
    MissingToken,
    /// A token that does not verify.
    InvalidToken,
    /// The issuer's keys or introspection endpoint cannot be reached.
    IdentityProviderUnavailable,
    /// The caller's entitlements disable it.
    SubjectDisabled,
    /// A session id of another caller, or one the gateway does not know.
    SessionNotOwned,
    /// A 2025-11-25 session was opened.
    SessionOpened,
    /// The tool or prompt's definition changed since it was pinned; not approved yet.
    DefinitionHeld,
    /// A session was refused: the gateway holds as many as it may.
    TooManySessions,
    /// The body is not one strictly valid JSON-RPC message.
    Malformed,
    /// The request's headers contradict its body, or miss what its era requires.
    HeaderMismatch,
    /// The named object does not exist for this caller.
    ObjectNotFound,
    /// The object's resolver failed.
    ObjectUnresolved,
    /// Whether the caller connected the call's upstream could not be told (policies read it).
    ConnectionUnknown,
    /// The caller cannot see what it names.
    NotVisible,
    /// The task is not this caller's, or does not exist.
    TaskNotFound,
    /// No upstream can take it.
    NoRoute,
    /// A method the caller's era does not have.
    MethodNotInEra,
    /// A tasks method from a client that did not negotiate the tasks extension.
    MissingClientCapability,
    /// Candidate policies would decide otherwise.
    ShadowDisagrees,
    /// A list: allowed to every caller, filtered per caller.
    List,
    /// How many items a list showed and withheld.
    Filtered,
    /// A person was asked to approve.
    ApprovalRequested,
    /// A person approved this exact call.
    Approved,
    /// A person declined, cancelled or did not answer.
    Declined,
    /// The client cannot show an approval request.
    ApprovalUnsupported,
    /// Only the approval page can approve it.
    ApprovalOutOfBand,
    /// An approval brought back that is not valid for this call (forged, expired, another
    /// caller's or call's, spent): the consent code's own reason.
    Approval(&'static str),
}

impl Reason {
    /// The code as records write it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Policy(code) => code.as_str(),
            Self::HostNotAllowed => "host_not_allowed",
            Self::OriginNotAllowed => "origin_not_allowed",
            Self::BodyTooLarge => "body_too_large",
            Self::BodyTooSlow => "body_too_slow",
            Self::RateLimited => "rate_limited",
            Self::MissingToken => "missing_token",
            Self::InvalidToken => "invalid_token",
            Self::IdentityProviderUnavailable => "identity_provider_unavailable",
            Self::SubjectDisabled => "subject_disabled",
            Self::SessionNotOwned => "session_not_owned",
            Self::SessionOpened => "session_opened",
            Self::DefinitionHeld => "definition_held",
            Self::TooManySessions => "too_many_sessions",
            Self::Malformed => "malformed_request",
            Self::HeaderMismatch => "header_mismatch",
            Self::ObjectNotFound => "object_not_found",
            Self::ObjectUnresolved => "object_unresolved",
            Self::ConnectionUnknown => "upstream_connection_unknown",
            Self::NotVisible => "not_visible",
            Self::TaskNotFound => "task_not_found",
            Self::NoRoute => "no_route",
            Self::MethodNotInEra => "method_not_in_era",
            Self::MissingClientCapability => "missing_client_capability",
            Self::ShadowDisagrees => "shadow_disagrees",
            Self::List => "list",
            Self::Filtered => "filtered",
            Self::ApprovalRequested => "approval_requested",
            Self::Approved => "approved",
            Self::Declined => "declined",
            Self::ApprovalUnsupported => "approval_unsupported",
            Self::ApprovalOutOfBand => "approval_out_of_band",
            Self::Approval(code) => code,
        }
    }
}

/// Where a request came from, as records say it.
#[derive(Clone, Copy)]
pub(crate) struct Scene<'a> {
    /// Who.
    pub(crate) caller: &'a Caller,
    /// In which era.
    pub(crate) era: Era,
    /// In which 2025-11-25 session.
    pub(crate) session: Option<&'a str>,
}

/// A record of `caller` with nothing about the request yet.
pub(crate) fn of_caller(caller: &Caller, method: &str, decision: AuditDecision) -> AuditRecord {
    let mut record = AuditRecord::new(caller.correlation.as_str(), method, decision);
    if let Some(identity) = &caller.identity {
        let verified = &identity.verified;
        record.issuer = Some(verified.issuer().to_owned());
        record.subject = Some(verified.subject().to_owned());
        record.tenant = identity.principal.tenant.clone();
        record.client_id = verified.client_id().map(str::to_owned);
    }
    record
}

/// A record of a request refused before it was read (no or a bad token, a disabled subject,
/// a stolen session): `request_line` is the HTTP method and path.
pub(crate) fn refused_early(
    correlation: &str,
    request_line: &str,
    decision: AuditDecision,
    status: u16,
    reason: Reason,
    principal: Option<&portcullis_authn::VerifiedPrincipal>,
) -> AuditRecord {
    let mut record = AuditRecord::new(correlation, request_line, decision);
    record.status = Some(status);
    record.reasons = vec![reason.as_str().to_owned()];
    if let Some(principal) = principal {
        record.issuer = Some(principal.issuer().to_owned());
        record.subject = Some(principal.subject().to_owned());
        record.tenant = principal.tenant().map(str::to_owned);
        record.client_id = principal.client_id().map(str::to_owned);
    }
    record
}

/// A record about `request` in `scene`, with `decision` and `reasons`.
pub(crate) fn about(
    scene: Scene<'_>,
    request: &McpRequest,
    decision: AuditDecision,
    reasons: &[Reason],
    keep_arguments: bool,
) -> AuditRecord {
    let mut record = of_caller(scene.caller, request.method.as_str(), decision);
    record.era = Some(scene.era.as_str().to_owned());
    record.session = scene.session.map(str::to_owned);
    record.capability = Some(
        request
            .target()
            .map_or_else(|| request.method.as_str().to_owned(), str::to_owned),
    );
    record.reasons = reasons.iter().map(|r| r.as_str().to_owned()).collect();
    if keep_arguments {
        let arguments = match &request.method {
            McpMethod::ToolsCall | McpMethod::PromptsGet => request.arguments().cloned(),
            _ => None,
        };
        if let Some(arguments) = arguments {
            let value = serde_json::Value::Object(arguments);
            record.arguments_digest = Some(portcullis_audit::arguments_digest(&value));
            // Kept only if `[audit] raw_arguments` allows; the trail redacts or drops it.
            record.arguments = Some(value);
        }
    }
    record
}

/// A record of a policy decision on `request`.
pub(crate) fn decision(
    scene: Scene<'_>,
    request: &McpRequest,
    decision: &Decision,
    target: Option<&str>,
    keep_arguments: bool,
) -> AuditRecord {
    let outcome = match decision {
        Decision::Allow(_) => AuditDecision::Allow,
        Decision::Deny { .. } => AuditDecision::Deny,
        Decision::StepUp { .. } => AuditDecision::StepUp,
        Decision::AskApproval(_) => AuditDecision::AskApproval,
    };
    let reasons = decision.reasons();
    let codes: Vec<Reason> = reasons.codes.iter().map(|c| Reason::Policy(*c)).collect();
    let mut record = about(scene, request, outcome, &codes, keep_arguments);
    record.target = target.map(str::to_owned);
    record.policies.clone_from(&reasons.policies);
    record.policy_version = Some(reasons.policy_version.clone());
    if matches!(decision, Decision::StepUp { .. }) {
        record.status = Some(403);
    }
    record
}

/// The record of what becomes of a forwarded request, under its decision's correlation id and
/// naming the policies (and the approval) that let it through; the upstream fills in the
/// upstream, the outcome (`ok`, `tool-error`, `error`, ...) and the latency when it ends.
pub(crate) fn outcome(scene: Scene<'_>, proof: &super::Authorized) -> AuditRecord {
    let mut record = about(scene, proof.request(), AuditDecision::Allow, &[], false);
    record.correlation = proof.correlation().as_str().to_owned();
    if let Some(reasons) = proof.reasons() {
        record.policies.clone_from(&reasons.policies);
        record.policy_version = Some(reasons.policy_version.clone());
    }
    record.consent = proof.consent().map(str::to_owned);
    record
}

/// A record of a list filtered for the caller: how many items it was shown and how many
/// policy withheld (never which).
pub(crate) fn listed(
    scene: Scene<'_>,
    request: &McpRequest,
    (listed, withheld): (usize, usize),
    policy_version: Option<&str>,
) -> AuditRecord {
    let mut record = about(
        scene,
        request,
        AuditDecision::Allow,
        &[Reason::Filtered],
        false,
    );
    record.capability = None;
    record.policy_version = policy_version.map(str::to_owned);
    record.listed = Some(u32::try_from(listed).unwrap_or(u32::MAX));
    record.withheld = Some(u32::try_from(withheld).unwrap_or(u32::MAX));
    record
}
