//! Asking a person before a call that needs approval, in one of three places: the gateway's
//! approval page (from the out-of-band tier up), the call's own stream (a 2025-11-25 session:
//! `elicitation/create`), or the result (2026-07-28: an input-required result whose sealed
//! `requestState` comes back with the answer). Each place returns a [`Step`]; one place records
//! it and answers. Only an approval of this exact call, recorded durably first, turns the
//! pending call into an authorized one.

use portcullis_audit::{AuditDecision, Durability};
use portcullis_core::{McpRequest, message};
use serde_json::{Map, Value, json};

use super::{
    reply::Final,
    serve::{APPROVAL_REQUIRED, Context},
};
use crate::{
    access::{Authorized, Granted, Pending, Reason, record},
    consent::{Binding, Claim, Consent, render},
};

/// The key of the approval question in an input-required result.
const QUESTION: &str = "approval";

/// Where asking got to.
enum Step {
    /// Approved: the call runs, once.
    Approved(Granted),
    /// The call does not run: the answer, the reason, the approval it concerns.
    Refused(Refusal, Reason, Option<String>),
    /// The question, for a 2026-07-28 caller to answer and bring back with the call.
    Ask(Final),
}

/// Why an approval did not let the call run, as the caller is told (`data.approval`).
#[derive(Debug, Clone)]
enum Refusal {
    /// The client cannot show an approval request.
    Unsupported,
    /// Only the approval page can approve it; the link, if the page is served.
    OutOfBand(Option<String>),
    /// Declined, cancelled or not answered.
    Declined,
    /// An approval for another call or caller, altered, expired or used.
    Invalid,
    /// What the call sends is too large to show a person whole.
    TooLarge,
    /// The approval state replicas share cannot be reached: nothing can be approved now.
    Unavailable,
}

/// The shared approval state cannot be reached: the call does not run (fail closed).
fn unavailable() -> Step {
    Step::Refused(
        Refusal::Unavailable,
        Reason::Approval("approval_state_unavailable"),
        None,
    )
}

/// Ask for approval of `pending`, or take the answer its caller brought back: the call,
/// authorized, or the answer to give instead (the question, or a refusal).
pub(crate) async fn settle(context: &Context, pending: Pending) -> Result<Authorized, Final> {
    let consent = context.gateway().access.consent().clone();
    let asking = Asking::of(context, &pending, &consent);
    // Unseen is unapproved: a question too long for a form is shown whole on the page.
    let on_page = pending.out_of_band()
        || consent.out_of_band(pending.tier())
        || !crate::consent::fits_a_form(&asking.question);
    // A retry resuming a call parked on its upstream's question continues the call that was
    // approved (the bridge checks caller and call): no second approval, nothing redeemed.
    let resumed = super::bridge::resumes(pending.request())
        .then(|| {
            let owner = super::bridge::owner(context);
            context.gateway().bridge.approval(&owner, pending.request())
        })
        .flatten();
    let step = if let Some(reference) = resumed {
        Step::Approved(Granted::resumed(reference))
    } else if !crate::consent::fits_approval(&asking.question) {
        Step::Refused(
            Refusal::TooLarge,
            Reason::Approval("approval_too_large"),
            None,
        )
    } else if on_page {
        on_the_page(context, &asking, &consent).await
    } else if context.session.is_some() {
        on_the_stream(context, &asking, &consent).await
    } else {
        in_the_result(context, &asking, &consent).await
    };
    let request = pending.request();
    match step {
        Step::Approved(granted) => {
            // The approval is on record before the call goes anywhere.
            let durable = asking
                .record(
                    context,
                    AuditDecision::Approved,
                    Reason::Approved,
                    Some(granted.reference()),
                    Durability::Durable,
                )
                .await;
            if durable.is_err() {
                context.gateway().access.trail().metrics().audit_refusal();
                return Err(super::serve::internal(request, pending.correlation()));
            }
            tracing::info!(correlation = %pending.correlation(), capability = %asking.capability, consent = %granted.reference(), "approved");
            Ok(pending.approve(granted))
        }
        Step::Refused(refusal, reason, id) => {
            let decision = match refusal {
                Refusal::Declined => AuditDecision::Declined,
                _ => AuditDecision::Deny,
            };
            let _ = asking
                .record(context, decision, reason, id.as_deref(), Durability::Queued)
                .await;
            Err(refused(request, refusal, pending.correlation()))
        }
        Step::Ask(question) => Err(question),
    }
}

/// One call waiting for approval: what every place needs to know of it.
struct Asking<'a> {
    request: &'a McpRequest,
    capability: String,
    digest: String,
    policy_version: String,
    question: String,
    binding: Binding,
}

impl<'a> Asking<'a> {
    fn of(context: &Context, pending: &'a Pending, consent: &Consent) -> Self {
        let request = pending.request();
        let capability = request.target().unwrap_or_default().to_owned();
        let arguments = request.arguments().cloned();
        // SECURITY: the method is bound too, so approving a prompt or a read never lets a tool
        // of the same name run; other methods bind their params, not an empty `arguments`.
        let digest = portcullis_audit::arguments_digest(&serde_json::json!({
            "method": request.method.as_str(),
            "input": request.bound_input(),
        }));
        let policy = context.caller.policy.clone();
        let policy_version = policy
            .as_ref()
            .map(|p| p.version().to_owned())
            .unwrap_or_default();
        let entry = policy.as_ref().and_then(|policy| {
            policy
                .catalog()
                .find(portcullis_policy::CapabilityKind::Tool, &capability)
                .map(|(entry, _)| entry.clone())
        });
        let upstreams = &context.gateway().upstreams;
        let upstream = upstreams
            .route_name(&capability)
            .map(|(index, _)| upstreams.name(index).to_owned())
            .unwrap_or_default();
        let question = render(
            entry.as_ref(),
            &capability,
            &upstream,
            arguments.as_ref(),
            pending.tier(),
        );
        let principal = context.caller.principal().cloned().unwrap_or_else(nobody);
        let binding = consent.bind(&principal, &capability, &digest, &policy_version);
        Self {
            request,
            capability,
            digest,
            policy_version,
            question,
            binding,
        }
    }

    /// Record a step; `Err` only when a durable record could not be written.
    async fn record(
        &self,
        context: &Context,
        decision: AuditDecision,
        reason: Reason,
        consent: Option<&str>,
        durability: Durability,
    ) -> Result<(), ()> {
        let keep = context.gateway().access.trail().keeps_records();
        let mut record = record::about(context.scene(), self.request, decision, &[reason], keep);
        record.consent = consent.map(str::to_owned);
        context
            .gateway()
            .access
            .record(record, durability)
            .await
            .map_err(|_| ())
    }
}

fn nobody() -> portcullis_policy::Principal {
    portcullis_policy::Principal {
        subject: String::new(),
        issuer: String::new(),
        tenant: None,
        roles: Vec::new(),
        scopes: Vec::new(),
        client_id: None,
    }
}

/// From the out-of-band tier up: the answer given on the approval page, used up; until there is
/// one, a URL-mode session client is sent there and waits, any other gets the link.
async fn on_the_page(context: &Context, asking: &Asking<'_>, consent: &Consent) -> Step {
    let (binding, new) = match consent
        .ledger
        .claim(asking.binding.clone(), || asking.question.clone())
        .await
    {
        Ok(Claim::Approved(granted)) => return Step::Approved(granted),
        Ok(Claim::Declined(binding)) => return declined(&binding),
        Ok(Claim::Waiting { binding, new }) => (binding, new),
        Err(_) => return unavailable(),
    };
    if new {
        requested(context, asking, &binding).await;
    }
    let link = consent.link(&binding.id);
    match (&link, &context.session) {
        (Some(link), Some(session)) if client_declares(context, asking.request, "url") => {
            let approved = ask_by_url(context, session, asking, link, &binding.id, consent).await;
            if !approved {
                return declined(&binding);
            }
            match consent.ledger.claim(binding.clone(), String::new).await {
                Ok(Claim::Approved(granted)) => Step::Approved(granted),
                // The approval stays for the same call made again.
                Err(_) => unavailable(),
                Ok(_) => declined(&binding),
            }
        }
        _ => Step::Refused(
            Refusal::OutOfBand(link),
            Reason::ApprovalOutOfBand,
            Some(binding.id.clone()),
        ),
    }
}

/// 2025-11-25: asked on the call's own stream, answered before the call goes on.
async fn on_the_stream(context: &Context, asking: &Asking<'_>, consent: &Consent) -> Step {
    let Some(session) = &context.session else {
        return Step::Refused(Refusal::Unsupported, Reason::ApprovalUnsupported, None);
    };
    if !client_declares(context, asking.request, "form") {
        return Step::Refused(Refusal::Unsupported, Reason::ApprovalUnsupported, None);
    }
    let binding = asking.binding.clone();
    requested(context, asking, &binding).await;
    let answer = session
        .ask(
            &context.outlet,
            "elicitation/create",
            form(&asking.question),
            consent.wait(),
        )
        .await;
    match consent.answered(&binding, answer.ok().as_ref()) {
        Some(granted) => Step::Approved(granted),
        None => declined(&binding),
    }
}

/// 2026-07-28: the question goes back as an input-required result with a sealed state; the
/// call made again brings the answer and the state, redeemed once.
async fn in_the_result(context: &Context, asking: &Asking<'_>, consent: &Consent) -> Step {
    let request = asking.request;
    // A bridge state (a resumed call without an approval of its own) is asked about anew.
    if !super::bridge::resumes(request)
        && let Some(state) = request.params.get("requestState").and_then(Value::as_str)
    {
        let principal = context.caller.principal().cloned().unwrap_or_else(nobody);
        let redeemed = consent
            .redeem(
                state,
                &principal,
                &asking.capability,
                &asking.digest,
                &asking.policy_version,
            )
            .await;
        return match redeemed {
            Ok(binding) => {
                let answer = request
                    .params
                    .get("inputResponses")
                    .and_then(|responses| responses.get(QUESTION));
                match consent.answered(&binding, answer) {
                    Some(granted) => Step::Approved(granted),
                    None => declined(&binding),
                }
            }
            Err(crate::consent::Refusal::Unavailable) => unavailable(),
            Err(refusal) => {
                Step::Refused(Refusal::Invalid, Reason::Approval(refusal.as_str()), None)
            }
        };
    }
    if !client_declares(context, request, "form") {
        return Step::Refused(Refusal::Unsupported, Reason::ApprovalUnsupported, None);
    }
    let binding = asking.binding.clone();
    requested(context, asking, &binding).await;
    let state = consent.seal(&binding);
    let result = json!({
        "resultType": "input_required",
        "inputRequests": {
            QUESTION: {"method": "elicitation/create", "params": form(&asking.question)},
        },
        "requestState": state,
    });
    Step::Ask(Final::ok(message::result_message(
        Some(&request.id),
        &result.to_string(),
    )))
}

fn declined(binding: &Binding) -> Step {
    Step::Refused(
        Refusal::Declined,
        Reason::Declined,
        Some(binding.id.clone()),
    )
}

async fn requested(context: &Context, asking: &Asking<'_>, binding: &Binding) {
    let _ = asking
        .record(
            context,
            AuditDecision::AskApproval,
            Reason::ApprovalRequested,
            Some(&binding.id),
            Durability::Queued,
        )
        .await;
}

/// Whether the caller's client declared elicitation (`mode`: `form` or `url`): a session
/// client when it initialized, a 2026-07-28 request in its `_meta`.
pub(crate) fn client_declares(context: &Context, request: &McpRequest, mode: &str) -> bool {
    let capabilities = match &context.session {
        Some(session) => Some(Value::Object(session.links.identity().capabilities.clone())),
        None => request
            .meta()
            .and_then(|meta| meta.get("io.modelcontextprotocol/clientCapabilities"))
            .cloned(),
    };
    let Some(elicitation) = capabilities.as_ref().and_then(|c| c.get("elicitation")) else {
        return false;
    };
    match mode {
        // A client that declares elicitation at all takes forms (the 2025-06-18 shape `{}`).
        "form" => true,
        _ => elicitation.get(mode).is_some(),
    }
}

/// Send the person to the approval page (URL-mode elicitation on the call's stream), then wait
/// for their answer there. True only once the page recorded an approval.
async fn ask_by_url(
    context: &Context,
    session: &super::sessions::Session,
    asking: &Asking<'_>,
    link: &str,
    id: &str,
    consent: &Consent,
) -> bool {
    let mut params = Map::new();
    params.insert("mode".to_owned(), "url".into());
    params.insert("message".to_owned(), asking.question.clone().into());
    params.insert("url".to_owned(), link.into());
    params.insert("elicitationId".to_owned(), id.into());
    let wait = consent.wait();
    let opened = session
        .ask(&context.outlet, "elicitation/create", params, wait)
        .await;
    if !opened.is_ok_and(|answer| answer["action"] == "accept") {
        return false;
    }
    let waited = tokio::time::timeout(wait, async {
        loop {
            match consent.ledger.answer(id).await {
                // Unreachable for a moment: the person may still be answering.
                Ok(Some(crate::consent::Answer::Waiting)) | Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Ok(answer) => return answer == Some(crate::consent::Answer::Approved),
            }
        }
    })
    .await
    .unwrap_or(false);
    // Tell the client the page is done with, whatever the answer (2025-11-25 URL mode).
    let done = json!({
        "jsonrpc": "2.0",
        "method": "notifications/elicitation/complete",
        "params": {"elicitationId": id},
    });
    let _ = context.outlet.send(done.to_string()).await;
    waited
}

/// The form: one field, which must be ticked.
fn form(question: &str) -> Map<String, Value> {
    let form = json!({
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
    });
    form.as_object().cloned().unwrap_or_default()
}

/// The answer to a call that needs approval and did not get it: code -31002, distinct from a
/// policy denial (-31001) and a malfunction (-32603), saying what happened and what to do.
fn refused(
    request: &McpRequest,
    refusal: Refusal,
    correlation: &portcullis_core::CorrelationId,
) -> Final {
    let (word, text) = match refusal {
        Refusal::Unsupported => (
            "unsupported",
            "This action needs a person's approval before it runs, and this client cannot \
             show an approval request (it did not declare elicitation). Use a client that \
             supports elicitation, or ask an administrator.",
        ),
        Refusal::OutOfBand(Some(link)) => {
            let text = format!(
                "This action needs a person's approval on the approval page: open {link} , sign \
                 in as the person who asked, approve, then make the same call again. Reference \
                 {correlation}."
            );
            let data = json!({
                "correlationId": correlation.as_str(),
                "approval": "out-of-band",
                "url": link,
            });
            return Final::ok(message::error_message(
                Some(&request.id),
                APPROVAL_REQUIRED,
                &text,
                Some(&data),
            ));
        }
        Refusal::OutOfBand(None) => (
            "out-of-band",
            "This action needs a person's approval on the gateway's approval page, which this \
             gateway does not serve (it needs `[auth]`), so the action cannot run here.",
        ),
        Refusal::Declined => (
            "declined",
            "The approval request was declined or not answered, so the action did not run.",
        ),
        Refusal::Invalid => (
            "invalid",
            "This approval is not valid for this call: it was for another call or caller, it \
             expired, or it was already used. Call again without it to be asked anew.",
        ),
        Refusal::TooLarge => (
            "too-large",
            "This action needs a person's approval, and what it would send is too large to \
             show a person in full (over 64 KiB), so it cannot be approved. Send less.",
        ),
        Refusal::Unavailable => (
            "unavailable",
            "This action needs a person's approval, and approvals cannot be checked right now, \
             so the action did not run. Try again shortly.",
        ),
    };
    let data = json!({ "correlationId": correlation.as_str(), "approval": word });
    Final::ok(message::error_message(
        Some(&request.id),
        APPROVAL_REQUIRED,
        &format!("{text} Reference {correlation}."),
        Some(&data),
    ))
}
