//! Asking a person before a call that needs approval, in the caller's era: a 2025-11-25
//! session caller is asked on the call's own stream (`elicitation/create`); a 2026-07-28 caller
//! gets an input-required result whose sealed `requestState` comes back with the answer. Only
//! an approval of this exact call turns the request's verdict into `Allowed`.

use portcullis_audit::{AuditDecision, Durability};
use portcullis_core::CorrelationId;
use portcullis_policy::{Pending, Principal};
use rmcp::model::JsonObject;
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
    consent::{Binding, Claim, Consent, render},
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

/// One call waiting for approval: what every step below needs to know of it.
struct Asking {
    principal: Principal,
    pending: Pending,
    correlation: CorrelationId,
    capability: String,
    arguments: Option<JsonObject>,
    digest: String,
    policy_version: String,
    era: String,
    session: Option<String>,
}

impl Asking {
    /// The call as audit records describe it.
    fn call(&self) -> Decided<'_> {
        Decided {
            correlation: self.correlation.as_str(),
            method: "tools/call",
            capability: &self.capability,
            target: None,
            arguments: self.arguments.as_ref(),
            era: &self.era,
            session: self.session.as_deref(),
        }
    }

    fn bind(&self, consent: &Consent) -> Binding {
        consent.bind(
            &self.principal,
            &self.capability,
            &self.digest,
            &self.policy_version,
        )
    }
}

/// Where asking got to.
enum Step {
    /// Approved under this binding: the call runs, once.
    Approved(Binding),
    /// The call does not run: the answer, the reason code, the approval it concerns.
    Refused(ApprovalAnswer, &'static str, Option<String>),
    /// The question, for a 2026-07-28 caller to answer and bring back with the call.
    Ask(CallToolResponse),
}

impl Step {
    fn declined(binding: &Binding) -> Self {
        Self::Refused(
            ApprovalAnswer::Declined,
            "declined",
            Some(binding.id.clone()),
        )
    }
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
        let Some(asking) = self.asking(request, context)? else {
            return Ok(None);
        };
        let consent = self.gateway.consent();
        let step = if consent.out_of_band(asking.pending.tier()) {
            self.on_the_page(&asking, &consent, context).await
        } else if self.session.is_session() {
            self.on_the_stream(&asking, &consent, context).await
        } else {
            self.in_the_result(&asking, &consent, request, context)
                .await?
        };
        match step {
            Step::Approved(binding) => {
                self.approved(asking, &binding, context).await?;
                Ok(None)
            }
            Step::Refused(answer, reason, id) => {
                let decision = match answer {
                    ApprovalAnswer::Declined => AuditDecision::Declined,
                    _ => AuditDecision::Deny,
                };
                // A queued record's failure is logged by the trail; the refusal stands anyway.
                let _ = self
                    .record(&asking, decision, reason, id.as_deref(), Durability::Queued)
                    .await;
                Err(approval_refusal(answer, &asking.correlation))
            }
            Step::Ask(question) => Ok(Some(question)),
        }
    }

    /// The call, if its verdict asks for approval.
    fn asking(
        &self,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<Option<Asking>, McpError> {
        let Some(parts) = context.extensions.get::<http::request::Parts>() else {
            return Ok(None);
        };
        let Some(CallVerdict::ApprovalRequired(pending, correlation)) =
            parts.extensions.get::<CallVerdict>().cloned()
        else {
            return Ok(None);
        };
        let principal = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(crate::verdict::missing)?;
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let arguments = request.arguments.clone();
        Ok(Some(Asking {
            principal,
            pending,
            correlation,
            capability: request.name.to_string(),
            digest: portcullis_audit::arguments_digest(&Value::Object(
                arguments.clone().unwrap_or_default(),
            )),
            arguments,
            policy_version: self
                .gateway
                .policy()
                .map(|policy| policy.version().to_owned())
                .unwrap_or_default(),
            era: header("mcp-protocol-version")
                .unwrap_or_else(|| portcullis_core::Era::Sessions.as_str().to_owned()),
            session: header("mcp-session-id"),
        }))
    }

    /// From the out-of-band tier up: the answer given on the approval page, used up; until
    /// there is one, a URL-mode client is sent there and waits, any other gets the link.
    async fn on_the_page(
        &self,
        asking: &Asking,
        consent: &Consent,
        context: &RequestContext<RoleServer>,
    ) -> Step {
        let question = || self.question(asking);
        let (binding, new) = match consent.ledger.claim(asking.bind(consent), question) {
            Claim::Approved(binding) => return Step::Approved(binding),
            Claim::Declined(binding) => return Step::declined(&binding),
            Claim::Waiting { binding, new } => (binding, new),
        };
        if new {
            self.requested(asking, &binding).await;
        }
        let link = consent.link(&binding.id);
        match &link {
            Some(link) if self.session.is_session() && client_opens_urls(context) => {
                let question = self.question(asking);
                if ask_by_url(context, &question, link, &binding.id, consent).await
                    && let Claim::Approved(binding) =
                        consent.ledger.claim(binding.clone(), String::new)
                {
                    return Step::Approved(binding);
                }
                Step::declined(&binding)
            }
            _ => Step::Refused(
                ApprovalAnswer::OutOfBand(link),
                "approval_out_of_band",
                Some(binding.id.clone()),
            ),
        }
    }

    /// 2025-11-25: asked on the call's own stream, answered before the call goes on.
    async fn on_the_stream(
        &self,
        asking: &Asking,
        consent: &Consent,
        context: &RequestContext<RoleServer>,
    ) -> Step {
        if !client_elicits(context) {
            return Step::Refused(ApprovalAnswer::Unsupported, "approval_unsupported", None);
        }
        let binding = asking.bind(consent);
        self.requested(asking, &binding).await;
        match ask_on_stream(context, &self.question(asking), consent.wait()).await {
            Answer::Approved => Step::Approved(binding),
            Answer::Declined => Step::declined(&binding),
        }
    }

    /// 2026-07-28: the question goes back as an input-required result with a sealed state;
    /// the call made again brings the answer and the state, redeemed once.
    async fn in_the_result(
        &self,
        asking: &Asking,
        consent: &Consent,
        request: &mut CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<Step, McpError> {
        if let Some(state) = request.request_state.take() {
            let responses = request.input_responses.take().unwrap_or_default();
            let principal = &asking.principal;
            let redeemed = consent.redeem(
                &state,
                principal,
                &asking.capability,
                &asking.digest,
                &asking.policy_version,
            );
            return Ok(match redeemed {
                Ok(binding) => match read_answer(responses.get(QUESTION)) {
                    Answer::Approved => Step::Approved(binding),
                    Answer::Declined => Step::declined(&binding),
                },
                Err(refusal) => Step::Refused(ApprovalAnswer::Invalid, refusal.as_str(), None),
            });
        }
        if !client_elicits(context) {
            return Ok(Step::Refused(
                ApprovalAnswer::Unsupported,
                "approval_unsupported",
                None,
            ));
        }
        let binding = asking.bind(consent);
        self.requested(asking, &binding).await;
        let question = input_required(&self.question(asking), consent.seal(&binding))?;
        Ok(Step::Ask(question))
    }

    /// The plain-language request for this call.
    fn question(&self, asking: &Asking) -> String {
        let policy = self.gateway.policy();
        let entry = policy
            .as_ref()
            .and_then(|policy| {
                policy
                    .catalog()
                    .find(portcullis_policy::CapabilityKind::Tool, &asking.capability)
            })
            .map(|(entry, _)| entry);
        let upstream = self
            .gateway
            .route_name(&asking.capability)
            .map(|(index, _)| self.gateway.upstream_name(index).to_owned())
            .unwrap_or_default();
        render(
            entry,
            &asking.capability,
            &upstream,
            asking.arguments.as_ref(),
            asking.pending.tier(),
        )
    }

    /// Record a step of `asking`; `Err` only when a durable record could not be written.
    async fn record(
        &self,
        asking: &Asking,
        decision: AuditDecision,
        reason: &str,
        consent: Option<&str>,
        durability: Durability,
    ) -> Result<(), ()> {
        let Some(trail) = self.gateway.trail() else {
            return Ok(());
        };
        let mut record = trail::called(&asking.principal, &asking.call(), decision);
        record.reasons = vec![reason.to_owned()];
        record.consent = consent.map(str::to_owned);
        match trail.record(record, durability).await {
            Err(_) if durability == Durability::Durable => {
                trail.metrics().audit_refusal();
                Err(())
            }
            _ => Ok(()),
        }
    }

    async fn requested(&self, asking: &Asking, binding: &Binding) {
        let _ = self
            .record(
                asking,
                AuditDecision::AskApproval,
                "approval_requested",
                Some(&binding.id),
                Durability::Queued,
            )
            .await;
    }

    /// The approval is recorded durably before the call goes anywhere, then the verdict
    /// becomes `Allowed`.
    async fn approved(
        &self,
        asking: Asking,
        binding: &Binding,
        context: &mut RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let correlation = asking.correlation.clone();
        let durable = self
            .record(
                &asking,
                AuditDecision::Approved,
                "approved",
                Some(&binding.id),
                Durability::Durable,
            )
            .await;
        if durable.is_err() {
            return Err(McpError::internal_error(
                format!("internal error; reference {correlation}"),
                Some(json!({ "correlationId": correlation.as_str() })),
            ));
        }
        tracing::info!(%correlation, subject = %asking.principal.subject, capability = %asking.capability, consent = %binding.id, "approved");
        if let Some(parts) = context.extensions.get_mut::<http::request::Parts>() {
            parts
                .extensions
                .insert(CallVerdict::Allowed(asking.pending.approve(), correlation));
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
