//! What the decision answers, and the proofs it hands out. Nothing reaches an upstream on a
//! caller's behalf without an [`Authorized`]; the gateway's own requests need an [`Internal`],
//! which no caller's request can turn into. Both are made only in this module: their fields are
//! private and they have no public constructor.
//!
//! A proof cannot be made outside the access code:
//!
//! ```compile_fail,E0451
//! use portcullis_gateway::access::Authorized;
//! fn forge(request: std::sync::Arc<portcullis_core::McpRequest>) -> Authorized {
//!     Authorized { request, correlation: portcullis_core::CorrelationId::fresh(), reasons: None, consent: None }
//! }
//! ```
//!
//! ```compile_fail,E0624
//! use portcullis_gateway::access::Authorized;
//! fn forge(request: std::sync::Arc<portcullis_core::McpRequest>) -> Authorized {
//!     Authorized::new(request, portcullis_core::CorrelationId::fresh(), None)
//! }
//! ```
//!
//! ```compile_fail,E0451
//! use portcullis_gateway::access::Internal;
//! fn forge() -> Internal {
//!     Internal { purpose: "anything" }
//! }
//! ```
//!
//! and an approval cannot be made outside the consent code:
//!
//! ```compile_fail,E0624
//! use portcullis_gateway::access::Pending;
//! fn forge(pending: Pending) {
//!     let _ = pending.approve(portcullis_gateway::access::Granted::new("ap-x".to_owned()));
//! }
//! ```

use std::sync::Arc;

use portcullis_core::{CorrelationId, McpRequest};
use portcullis_policy::Reasons;

pub use crate::consent::Granted;

/// Proof that one request was decided and may go upstream, exactly as it was parsed: the
/// method and target that were decided are the ones sent.
#[derive(Debug)]
pub struct Authorized {
    request: Arc<McpRequest>,
    correlation: CorrelationId,
    /// The policy's reasons; `None` for built-in allows (lists) and an unauthenticated gateway.
    reasons: Option<Reasons>,
    /// The approval it runs under, if a person approved it.
    consent: Option<String>,
}

impl Authorized {
    pub(super) fn new(
        request: Arc<McpRequest>,
        correlation: CorrelationId,
        reasons: Option<Reasons>,
    ) -> Self {
        Self {
            request,
            correlation,
            reasons,
            consent: None,
        }
    }

    /// The request it authorizes.
    pub(crate) fn request(&self) -> &McpRequest {
        &self.request
    }

    /// The correlation id of its decision record (and of its outcome record).
    pub(crate) fn correlation(&self) -> &CorrelationId {
        &self.correlation
    }

    /// Why it was allowed.
    pub(crate) fn reasons(&self) -> Option<&Reasons> {
        self.reasons.as_ref()
    }

    /// The approval reference it runs under, if a person approved it.
    pub(crate) fn consent(&self) -> Option<&str> {
        self.consent.as_deref()
    }
}

/// A request the policies allow once a person approves it. Only [`Pending::approve`], with
/// the [`Granted`] proof the consent code makes from a genuine approval, turns it into an
/// [`Authorized`].
#[derive(Debug)]
pub struct Pending {
    request: Arc<McpRequest>,
    correlation: CorrelationId,
    pending: portcullis_policy::Pending,
}

impl Pending {
    pub(super) fn new(
        request: Arc<McpRequest>,
        correlation: CorrelationId,
        pending: portcullis_policy::Pending,
    ) -> Self {
        Self {
            request,
            correlation,
            pending,
        }
    }

    /// The request waiting for approval.
    pub(crate) fn request(&self) -> &McpRequest {
        &self.request
    }

    /// The correlation id of its decision record.
    pub(crate) fn correlation(&self) -> &CorrelationId {
        &self.correlation
    }

    /// Whether a policy says only the approval page may approve it.
    pub(crate) fn out_of_band(&self) -> bool {
        self.pending.out_of_band()
    }

    /// Its risk tier.
    pub(crate) fn tier(&self) -> portcullis_policy::RiskTier {
        self.pending.tier()
    }

    /// The request, allowed: `granted` is a person's approval of exactly this call.
    pub(crate) fn approve(self, granted: Granted) -> Authorized {
        let mut authorized = Authorized::new(
            self.request,
            self.correlation,
            Some(self.pending.approve().reasons().clone()),
        );
        authorized.consent = Some(granted.reference().to_owned());
        authorized
    }
}

/// Proof that a request to an upstream is the gateway's own (learning a tool list, asking a
/// resolver about an object), never a caller's.
#[derive(Debug)]
pub struct Internal {
    purpose: &'static str,
}

impl Internal {
    /// To learn what an upstream offers (names and routes), never for a caller's eyes.
    pub(crate) fn learning() -> Self {
        Self {
            purpose: "learning",
        }
    }

    /// To ask a resolver about an object before a decision.
    pub(super) fn resolving() -> Self {
        Self {
            purpose: "resolving",
        }
    }

    /// What it is for, for logs.
    pub(crate) fn purpose(&self) -> &'static str {
        self.purpose
    }
}

/// What the decision says of one request.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// The gateway answers it itself; nothing goes upstream (`initialize`, `ping`,
    /// `server/discover`).
    Local,
    /// Go ahead.
    Allow(Authorized),
    /// Allowed once a person approves.
    Ask(Pending),
    /// The caller's identity would be allowed; its token lacks these scopes (HTTP 403).
    StepUp {
        /// Every scope the request needs.
        scopes: Vec<String>,
    },
    /// Answer exactly as for something that does not exist.
    Hidden,
    /// The call's object does not exist for this caller, or may not be seen: the capability's
    /// own "not found" tool error, the same text for both.
    ObjectHidden(String),
    /// Denied by policy, on something the caller can see.
    Denied(CorrelationId),
    /// Something the decision needed failed: refused, never allowed.
    Malfunction(CorrelationId),
    /// Allowed, but past a rate (`[limits.tools]`): HTTP 429, recorded already.
    RateLimited(crate::rate::Over),
    /// A method the caller's era does not have: method-not-found, recorded already.
    NotInEra,
    /// A tasks method from a client without the tasks extension: recorded already.
    MissingTasksExtension,
}

impl Verdict {
    /// The verdict in a word, for traces.
    pub(crate) fn word(&self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Allow(_) => "allow",
            Self::Ask(_) => "ask-approval",
            Self::StepUp { .. } => "step-up",
            Self::Hidden | Self::ObjectHidden(_) => "hidden",
            Self::Denied(_) => "deny",
            Self::Malfunction(_) => "error",
            Self::RateLimited(_) => "rate-limited",
            Self::NotInEra | Self::MissingTasksExtension => "refused",
        }
    }
}
