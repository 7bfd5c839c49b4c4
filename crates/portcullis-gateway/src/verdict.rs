//! What the authorization layer decided about one call, carried in the request's extensions to
//! the relay and to the typed proxy, which act on it: only `Allowed` reaches an upstream.

use portcullis_core::CorrelationId;
use portcullis_policy::Authorized;
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
    ApprovalRequired(CorrelationId),
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
            Self::ApprovalRequired(correlation) => Some(McpError::new(
                ErrorCode(APPROVAL_REQUIRED),
                format!(
                    "This action needs a person's approval before it runs, and approval cannot \
                     be requested here yet. Reference {correlation}."
                ),
                Some(serde_json::json!({ "correlationId": correlation.as_str() })),
            )),
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
