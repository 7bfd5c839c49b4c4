//! Asking a person before a call that needs approval, in the caller's era: a 2025-11-25
//! session caller is asked on the call's own stream (`elicitation/create`); a 2026-07-28 caller
//! gets an input-required result whose sealed `requestState` comes back with the answer. Only
//! an approval of this exact call turns the request's verdict into `Allowed`.

use portcullis_audit::{AuditDecision, Durability};
use portcullis_core::CorrelationId;
use portcullis_policy::{Pending, Principal};
use rmcp::{
    ErrorData as McpError, RoleServer,
    model::{
        CallToolRequestParams, CallToolResponse, ClientResult, CustomNotification, GetExtensions,
        InputRequiredResult, ServerNotification, ServerRequest,
    },
    service::{OriginatingRequestId, RequestContext},
};
use serde_json::{Value, json};

use super::handler::GatewayHandler;
use crate::{
    consent::{Binding, Claim, render},
    trail::{self, Decided},
    verdict::{ApprovalAnswer, CallVerdict, approval_refusal},
};

/// The key of the approval question in an input-required result.
const QUESTION: &str = "approval";

/// What the person (or the client on their behalf) answered.
enum Answer {
    Approved,
    Declined,
}

impl GatewayHandler {
    /// For a call whose verdict asks for approval: ask, or take the answer the caller brought
    /// back. `Ok(None)` once approved (the verdict is now `Allowed`, and the approval's fields
    /// are gone from `request`); `Ok(Some(..))` is the question for a 2026-07-28 caller.
    pub(super) async fn seek_approval(
        &self,
        request: &mut CallToolRequestParams,
        context: &mut RequestContext<RoleServer>,
    ) -> Result<Option<CallToolResponse>, McpError> {
        let Some(parts) = context.extensions.get::<http::request::Parts>() else {
            return Ok(None);
        };
        let Some(CallVerdict::ApprovalRequired(pending, correlation)) =
            parts.extensions.get::<CallVerdict>().cloned()
        else {
            return Ok(None);
        };
        let Some(principal) = parts.extensions.get::<Principal>().cloned() else {
            return Err(crate::verdict::missing());
        };
        let era = parts
            .headers
            .get("mcp-protocol-version")
            .and_then(|value| value.to_str().ok())
            .unwrap_or(portcullis_core::Era::Sessions.as_str())
            .to_owned();
        let session = parts
            .headers
            .get("mcp-session-id")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let capability = request.name.to_string();
        let arguments = request.arguments.clone();
        let digest = portcullis_audit::arguments_digest(&Value::Object(
            arguments.clone().unwrap_or_default(),
        ));
        let policy_version = self
            .gateway
            .policy()
            .map(|policy| policy.version().to_owned())
            .unwrap_or_default();
        let call = Decided {
            correlation: correlation.as_str(),
            method: "tools/call",
            capability: &capability,
            target: None,
            arguments: arguments.as_ref(),
            era: &era,
            session: session.as_deref(),
        };
        let refuse = |answer, reason: &str, consent: Option<&str>| {
            let decision = match answer {
                ApprovalAnswer::Declined => AuditDecision::Declined,
                _ => AuditDecision::Deny,
            };
            (
                answer,
                self.consent_record(&principal, &call, decision, reason, consent),
            )
        };

        let consent = self.gateway.consent();
        if consent.out_of_band(pending.tier()) {
            let binding = consent.bind(&principal, &capability, &digest, &policy_version);
            let question = || self.question(&pending, &capability, arguments.as_ref());
            return match consent.ledger.claim(binding, question) {
                Claim::Approved(binding) => {
                    self.approved(
                        &principal,
                        &call,
                        &binding,
                        pending,
                        correlation.clone(),
                        context,
                    )
                    .await?;
                    Ok(None)
                }
                Claim::Declined(binding) => {
                    let (answer, record) =
                        refuse(ApprovalAnswer::Declined, "declined", Some(&binding.id));
                    Err(self.refused(answer, record, &correlation).await)
                }
                Claim::Waiting { binding, new } => {
                    if new {
                        self.requested(&principal, &call, &binding).await;
                    }
                    let link = consent.link(&binding.id);
                    // A session client that can open a URL is sent to the page, and the call
                    // waits there for the person's answer.
                    if let Some(link) = &link
                        && self.session.is_session()
                        && client_opens_urls(context)
                    {
                        let question = self.question(&pending, &capability, arguments.as_ref());
                        if ask_by_url(context, &question, link, &binding.id, &consent).await
                            && let Claim::Approved(binding) =
                                consent.ledger.claim(binding.clone(), String::new)
                        {
                            self.approved(
                                &principal,
                                &call,
                                &binding,
                                pending,
                                correlation.clone(),
                                context,
                            )
                            .await?;
                            return Ok(None);
                        }
                        let (answer, record) =
                            refuse(ApprovalAnswer::Declined, "declined", Some(&binding.id));
                        return Err(self.refused(answer, record, &correlation).await);
                    }
                    let (answer, record) = refuse(
                        ApprovalAnswer::OutOfBand(link),
                        "approval_out_of_band",
                        Some(&binding.id),
                    );
                    Err(self.refused(answer, record, &correlation).await)
                }
            };
        }
        let (binding, answer) = if self.session.is_session() {
            if !client_elicits(context) {
                let (answer, record) =
                    refuse(ApprovalAnswer::Unsupported, "approval_unsupported", None);
                return Err(self.refused(answer, record, &correlation).await);
            }
            let binding = consent.bind(&principal, &capability, &digest, &policy_version);
            self.requested(&principal, &call, &binding).await;
            let question = self.question(&pending, &capability, arguments.as_ref());
            (
                binding,
                ask_on_stream(context, &question, consent.wait()).await,
            )
        } else if let Some(state) = request.request_state.take() {
            let responses = request.input_responses.take().unwrap_or_default();
            match consent.redeem(&state, &principal, &capability, &digest, &policy_version) {
                Ok(binding) => (binding, read_answer(responses.get(QUESTION))),
                Err(refusal) => {
                    let (answer, record) = refuse(ApprovalAnswer::Invalid, refusal.as_str(), None);
                    return Err(self.refused(answer, record, &correlation).await);
                }
            }
        } else {
            if !client_elicits(context) {
                let (answer, record) =
                    refuse(ApprovalAnswer::Unsupported, "approval_unsupported", None);
                return Err(self.refused(answer, record, &correlation).await);
            }
            let binding = consent.bind(&principal, &capability, &digest, &policy_version);
            self.requested(&principal, &call, &binding).await;
            let question = self.question(&pending, &capability, arguments.as_ref());
            return Ok(Some(input_required(&question, consent.seal(&binding))?));
        };
        match answer {
            Answer::Declined => {
                let (answer, record) =
                    refuse(ApprovalAnswer::Declined, "declined", Some(&binding.id));
                Err(self.refused(answer, record, &correlation).await)
            }
            Answer::Approved => {
                self.approved(
                    &principal,
                    &call,
                    &binding,
                    pending,
                    correlation.clone(),
                    context,
                )
                .await?;
                Ok(None)
            }
        }
    }

    /// The plain-language request for this call.
    fn question(
        &self,
        pending: &Pending,
        capability: &str,
        arguments: Option<&serde_json::Map<String, Value>>,
    ) -> String {
        let policy = self.gateway.policy();
        let entry = policy
            .as_ref()
            .and_then(|policy| {
                policy
                    .catalog()
                    .find(portcullis_policy::CapabilityKind::Tool, capability)
            })
            .map(|(entry, _)| entry);
        let upstream = self
            .gateway
            .route_name(capability)
            .map(|(index, _)| self.gateway.upstream_name(index).to_owned())
            .unwrap_or_default();
        render(entry, capability, &upstream, arguments, pending.tier())
    }

    fn consent_record(
        &self,
        principal: &Principal,
        call: &Decided<'_>,
        decision: AuditDecision,
        reason: &str,
        consent: Option<&str>,
    ) -> portcullis_audit::AuditRecord {
        let mut record = trail::called(principal, call, decision);
        record.reasons = vec![reason.to_owned()];
        record.consent = consent.map(str::to_owned);
        record
    }

    /// Record the refusal and give the caller its answer.
    async fn refused(
        &self,
        answer: ApprovalAnswer,
        record: portcullis_audit::AuditRecord,
        correlation: &CorrelationId,
    ) -> McpError {
        if let Some(trail) = self.gateway.trail() {
            let _ = trail.record(record, Durability::Queued).await;
        }
        approval_refusal(answer, correlation)
    }

    async fn requested(&self, principal: &Principal, call: &Decided<'_>, binding: &Binding) {
        let record = self.consent_record(
            principal,
            call,
            AuditDecision::AskApproval,
            "approval_requested",
            Some(&binding.id),
        );
        if let Some(trail) = self.gateway.trail() {
            let _ = trail.record(record, Durability::Queued).await;
        }
    }

    /// The approval is recorded durably before the call goes anywhere, then the verdict
    /// becomes `Allowed`.
    async fn approved(
        &self,
        principal: &Principal,
        call: &Decided<'_>,
        binding: &Binding,
        pending: Pending,
        correlation: CorrelationId,
        context: &mut RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let record = self.consent_record(
            principal,
            call,
            AuditDecision::Approved,
            "approved",
            Some(&binding.id),
        );
        if let Some(trail) = self.gateway.trail()
            && trail.record(record, Durability::Durable).await.is_err()
        {
            trail.metrics().audit_refusal();
            return Err(McpError::internal_error(
                format!("internal error; reference {correlation}"),
                Some(json!({ "correlationId": correlation.as_str() })),
            ));
        }
        tracing::info!(%correlation, subject = %principal.subject, capability = call.capability, consent = %binding.id, "approved");
        if let Some(parts) = context.extensions.get_mut::<http::request::Parts>() {
            parts
                .extensions
                .insert(CallVerdict::Allowed(pending.approve(), correlation));
        }
        Ok(())
    }
}

/// Whether the caller's client can show an approval request: a session client says so when it
/// initializes, a 2026-07-28 request in its `_meta`.
fn client_elicits(context: &RequestContext<RoleServer>) -> bool {
    context
        .client_capabilities()
        .is_some_and(|capabilities| capabilities.elicitation.is_some())
}

/// Whether a session client declared URL-mode elicitation.
fn client_opens_urls(context: &RequestContext<RoleServer>) -> bool {
    context
        .client_capabilities()
        .and_then(|capabilities| capabilities.elicitation)
        .is_some_and(|elicitation| elicitation.url.is_some())
}

/// Send the person to the approval page (URL-mode elicitation on the call's stream), then wait
/// for their answer there. True only once the page recorded an approval; a client that
/// declines to open the page, a decline on the page, the request expiring and the wait running
/// out are all false.
async fn ask_by_url(
    context: &RequestContext<RoleServer>,
    question: &str,
    link: &str,
    id: &str,
    consent: &crate::consent::Consent,
) -> bool {
    let request = json!({
        "method": "elicitation/create",
        "params": {"mode": "url", "message": question, "url": link, "elicitationId": id},
    });
    let Ok(mut request) = serde_json::from_value::<ServerRequest>(request) else {
        return false;
    };
    request
        .extensions_mut()
        .insert(OriginatingRequestId(context.id.clone()));
    let wait = consent.wait();
    let opened = tokio::time::timeout(wait, context.peer.send_request(request)).await;
    let accepted = matches!(
        opened,
        Ok(Ok(ClientResult::ElicitResult(ref result)))
            if serde_json::to_value(result).is_ok_and(|answer| answer["action"] == "accept")
    );
    if !accepted {
        return false;
    }
    let waited = tokio::time::timeout(wait, async {
        loop {
            match consent.ledger.answer(id) {
                Some(crate::consent::Answer::Waiting) => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                answer => return answer == Some(crate::consent::Answer::Approved),
            }
        }
    })
    .await
    .unwrap_or(false);
    // Tell the client the page is done with, whatever the answer (2025-11-25 URL mode).
    let done = CustomNotification::new(
        "notifications/elicitation/complete",
        Some(json!({"elicitationId": id})),
    );
    let _ = context
        .peer
        .send_notification(ServerNotification::CustomNotification(done))
        .await;
    waited
}

/// The form: one field, which must be ticked.
fn form(question: &str) -> Value {
    json!({
        "mode": "form",
        "message": question,
        "requestedSchema": {
            "type": "object",
            "properties": {
                "approve": {
                    "type": "boolean",
                    "title": "Approve",
                    "description": "Tick to let this action run once.",
                }
            },
            "required": ["approve"],
        },
    })
}

async fn ask_on_stream(
    context: &RequestContext<RoleServer>,
    question: &str,
    wait: std::time::Duration,
) -> Answer {
    let request = json!({"method": "elicitation/create", "params": form(question)});
    let Ok(mut request) = serde_json::from_value::<ServerRequest>(request) else {
        return Answer::Declined;
    };
    request
        .extensions_mut()
        .insert(OriginatingRequestId(context.id.clone()));
    match tokio::time::timeout(wait, context.peer.send_request(request)).await {
        Ok(Ok(ClientResult::ElicitResult(result))) => {
            read_answer(serde_json::to_value(result).ok().as_ref())
        }
        _ => Answer::Declined,
    }
}

/// Approved only by an accepted form with `approve: true`.
fn read_answer(answer: Option<&Value>) -> Answer {
    match answer {
        Some(answer)
            if answer["action"] == "accept"
                && answer["content"]["approve"] == Value::Bool(true) =>
        {
            Answer::Approved
        }
        _ => Answer::Declined,
    }
}

fn input_required(question: &str, state: String) -> Result<CallToolResponse, McpError> {
    let result = json!({
        "resultType": "input_required",
        "inputRequests": {
            QUESTION: {"method": "elicitation/create", "params": form(question)},
        },
        "requestState": state,
    });
    serde_json::from_value::<InputRequiredResult>(result)
        .map(CallToolResponse::InputRequired)
        .map_err(|error| McpError::internal_error(error.to_string(), None))
}
