//! What the authorization layer decided about one call, carried in the request's extensions to
//! the relay and to the typed proxy, which act on it: only `Allowed` reaches an upstream.

use portcullis_core::CorrelationId;
use portcullis_policy::{Authorized, Pending};
use rmcp::{ErrorData as McpError, model::ErrorCode};

/// A call's verdict. (A step-up never gets here: it is answered with HTTP 403.)
#[derive(Debug, Clone)]
pub enum CallVerdict {
    /// Go ahead; the decision's record has this correlation id, as its outcome's will.
    Allowed(Authorized, CorrelationId),
    /// Answer exactly as for something that does not exist.
    Hidden,
    /// Denied by policy, on something the caller can see.
    Denied(CorrelationId),
    /// A human must approve first, and this gateway cannot ask yet.
    ApprovalRequired(Pending, CorrelationId),
    /// The call's object does not exist for this caller, or may not be seen: answered with
    /// the capability's own "not found" tool error, the same text for both.
    ObjectHidden(String),
    /// Something the decision needed failed (the object's resolver): refused, never allowed.
    Malfunction(CorrelationId),
}

/// JSON-RPC codes Portcullis defines, outside the range the spec reserves (-32768..-32000).
pub(crate) const DENIED_BY_POLICY: i32 = -31001;
pub(crate) const APPROVAL_REQUIRED: i32 = -31002;

impl CallVerdict {
    /// The error a refused call answers with; `not_found` is what the caller would get for a
    /// name that does not exist.
    pub(crate) fn refusal(&self, not_found: impl FnOnce() -> McpError) -> Option<McpError> {
        match self {
            Self::Allowed(..) => None,
            Self::Hidden => Some(not_found()),
            Self::Denied(correlation) => Some(McpError::new(
                ErrorCode(DENIED_BY_POLICY),
                format!(
                    "This request was denied by policy. If you need this access, ask your \
                     administrator and quote reference {correlation}."
                ),
                Some(serde_json::json!({ "correlationId": correlation.as_str() })),
            )),
            // The typed proxy answers this with the capability's own tool error before it asks
            // here (`hidden_object`); should it ever get here, "not found" is still no pass.
            Self::ObjectHidden(_) => Some(not_found()),
            Self::Malfunction(correlation) => Some(McpError::internal_error(
                format!("internal error; reference {correlation}"),
                Some(serde_json::json!({ "correlationId": correlation.as_str() })),
            )),
            // The typed proxy asks for approval before it asks here; a path that cannot ask
            // (or a client that cannot answer) gets this.
            Self::ApprovalRequired(_, correlation) => {
                Some(approval_refusal(ApprovalAnswer::Unsupported, correlation))
            }
        }
    }
}

impl CallVerdict {
    /// The correlation id of an allowed call.
    pub(crate) fn allowed(&self) -> Option<&CorrelationId> {
        match self {
            Self::Allowed(_, correlation) => Some(correlation),
            _ => None,
        }
    }

    /// The "not found" text of a hidden object, if that is the verdict.
    pub(crate) fn hidden_object(&self) -> Option<&str> {
        match self {
            Self::ObjectHidden(text) => Some(text),
            _ => None,
        }
    }
}

/// A call that reached the proxy without a verdict while policies are on: a wiring fault,
/// answered as a malfunction, never as an allow.
pub(crate) fn missing() -> McpError {
    let correlation = CorrelationId::fresh();
    tracing::error!(%correlation, "call without an authorization verdict refused");
    McpError::internal_error(
        format!("internal error; reference {correlation}"),
        Some(serde_json::json!({ "correlationId": correlation.as_str() })),
    )
}

/// Why a call that needs approval did not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApprovalAnswer {
    /// The client cannot show an approval request (it declared no elicitation).
    Unsupported,
    /// The tier is approved only on the gateway's own page, at this link (once served).
    OutOfBand(Option<String>),
    /// The person declined, cancelled, or did not answer in time.
    Declined,
    /// The approval brought back is not for this call, expired, or was used.
    Invalid,
}

/// The answer to a call that needs approval and did not get it: code -31002, distinct from a
/// policy denial (-31001) and a malfunction (-32603), saying what happened and what to do.
pub(crate) fn approval_refusal(answer: ApprovalAnswer, correlation: &CorrelationId) -> McpError {
    let (word, text) = match answer {
        ApprovalAnswer::Unsupported => (
            "unsupported",
            "This action needs a person's approval before it runs, and this client cannot \
             show an approval request (it did not declare elicitation). Use a client that \
             supports elicitation, or ask an administrator.",
        ),
        ApprovalAnswer::OutOfBand(Some(link)) => {
            let text = format!(
                "This action needs a person's approval on the approval page: open {link} , sign \
                 in as the person who asked, approve, then make the same call again. Reference \
                 {correlation}."
            );
            let data = serde_json::json!({
                "correlationId": correlation.as_str(),
                "approval": "out-of-band",
                "url": link,
            });
            return McpError::new(ErrorCode(APPROVAL_REQUIRED), text, Some(data));
        }
        ApprovalAnswer::OutOfBand(None) => (
            "out-of-band",
            "This action needs a person's approval on the gateway's approval page, which this \
             gateway does not serve (it needs `[auth]`), so the action cannot run here.",
        ),
        ApprovalAnswer::Declined => (
            "declined",
            "The approval request was declined or not answered, so the action did not run.",
        ),
        ApprovalAnswer::Invalid => (
            "invalid",
            "This approval is not valid for this call: it was for another call or caller, it \
             expired, or it was already used. Call again without it to be asked anew.",
        ),
    };
    McpError::new(
        ErrorCode(APPROVAL_REQUIRED),
        format!("{text} Reference {correlation}."),
        Some(serde_json::json!({ "correlationId": correlation.as_str(), "approval": word })),
    )
}
