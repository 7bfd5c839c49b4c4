//! What `authorize()` answers, always with reasons: the determining policies and reason codes.

/// The verified caller, as policies see it (built by the gateway from a verified token).
/// Serialized only to be kept for a signed-in browser of the approval page (replicas share it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Principal {
    /// `sub`.
    pub subject: String,
    /// `iss`.
    pub issuer: String,
    /// The caller's tenant, if the token names one.
    pub tenant: Option<String>,
    /// Roles: the principal's parents in policies (`principal in Role::"editor"`).
    pub roles: Vec<String>,
    /// Scopes granted to the token.
    pub scopes: Vec<String>,
    /// The OAuth client the token was issued to.
    pub client_id: Option<String>,
}

/// Which of a principal's attributes the policies can read, beyond its roles (which they
/// always can): decided once per policy set, so that list decisions are shared by every
/// principal who looks the same to the policies.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Reads {
    pub(crate) identity: bool,
    pub(crate) tenant: bool,
    pub(crate) scopes: bool,
    /// Whether any policy can read the time (`context.time`): if none can, equal principals
    /// making equal calls (target, declared arguments, era) get equal verdicts, and may share
    /// them.
    pub(crate) time: bool,
    /// Whether any policy reads `context.connected` (which costs the gateway a lookup).
    pub(crate) connected: bool,
}

impl Principal {
    /// Everything the policies can read of this principal, as one key: equal keys, equal
    /// decisions (for list decisions, which Cedar alone makes).
    pub(crate) fn fingerprint(&self, reads: Reads) -> String {
        let mut roles = self.roles.clone();
        roles.sort();
        let mut key = roles.join("\0\0");
        // NUL cannot occur in a JSON string from a token, so fields cannot run together.
        if reads.identity {
            for part in [&self.issuer, &self.subject] {
                key.push_str("\0\u{2}");
                key.push_str(part);
            }
            key.push_str("\0\u{2}");
            key.push_str(self.client_id.as_deref().unwrap_or("\u{1}"));
        }
        if reads.tenant {
            key.push_str("\0\u{3}");
            key.push_str(self.tenant.as_deref().unwrap_or("\u{1}"));
        }
        if reads.scopes {
            let mut scopes = self.scopes.clone();
            scopes.sort();
            key.push_str("\0\u{4}");
            key.push_str(&scopes.join("\0\0"));
        }
        key
    }
}

/// Why a decision came out as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    /// A policy permits it.
    Permitted,
    /// No policy permits it (default deny).
    NoPermit,
    /// A policy forbids it.
    Forbidden,
    /// A policy could not be evaluated: denied, whatever the others say.
    PolicyError,
    /// The target belongs to another tenant and no permitting policy allows crossing tenants.
    TenantMismatch,
    /// The token lacks a scope the capability needs.
    MissingScope,
    /// An argument a policy reads has the wrong type.
    ArgumentInvalid,
    /// A human must approve it first.
    ApprovalRequired,
    /// A person approved this exact call.
    Approved,
}

impl ReasonCode {
    /// The code as audit records and logs write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Permitted => "permitted",
            Self::NoPermit => "no_permit",
            Self::Forbidden => "forbidden",
            Self::PolicyError => "policy_error",
            Self::TenantMismatch => "tenant_mismatch",
            Self::MissingScope => "missing_scope",
            Self::ArgumentInvalid => "argument_invalid",
            Self::ApprovalRequired => "approval_required",
            Self::Approved => "approved",
        }
    }
}

/// The determining policies and the reason codes of one decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reasons {
    /// Ids of the policies that determined it (their `@id`).
    pub policies: Vec<String>,
    /// Why.
    pub codes: Vec<ReasonCode>,
    /// The policy set version it was made under.
    pub policy_version: String,
}

/// Whether a denied caller may learn that the capability (or object) exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Answer exactly as for something that does not exist.
    Hidden,
    /// The caller can see it: say it was denied, in plain words, nothing more.
    Visible,
}

/// Proof that a call was allowed. Only [`crate::PolicyEngine::authorize`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    reasons: Reasons,
}

impl Authorized {
    pub(crate) fn new(reasons: Reasons) -> Self {
        Self { reasons }
    }

    /// Why it was allowed.
    pub fn reasons(&self) -> &Reasons {
        &self.reasons
    }
}

/// The answer of `authorize()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow(Authorized),
    /// No.
    Deny {
        /// What the caller may learn.
        visibility: Visibility,
        /// Why.
        reasons: Reasons,
    },
    /// The caller would be allowed with a token holding `scopes` (all the call needs).
    StepUp {
        /// Every scope the call needs.
        scopes: Vec<String>,
        /// Why.
        reasons: Reasons,
    },
    /// Allowed once a human approves.
    AskApproval(Pending),
}

/// A call allowed once a person approves it. Only [`crate::PolicyEngine::authorize`] makes
/// one, and only [`Pending::approve`] turns it into an [`Authorized`]: whoever holds it decides
/// whether the approval it was given is genuine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    reasons: Reasons,
    tier: crate::RiskTier,
    out_of_band: bool,
}

impl Pending {
    pub(crate) fn new(reasons: Reasons, tier: crate::RiskTier, out_of_band: bool) -> Self {
        Self {
            reasons,
            tier,
            out_of_band,
        }
    }

    /// Whether a policy says only the approval page may approve it (`@approval("out_of_band")`).
    pub fn out_of_band(&self) -> bool {
        self.out_of_band
    }

    /// Why approval is needed.
    pub fn reasons(&self) -> &Reasons {
        &self.reasons
    }

    /// The call's risk tier.
    pub fn tier(&self) -> crate::RiskTier {
        self.tier
    }

    /// The call, allowed: a person approved exactly this call.
    pub fn approve(self) -> Authorized {
        let mut reasons = self.reasons;
        reasons.codes.push(ReasonCode::Approved);
        Authorized::new(reasons)
    }
}

impl Decision {
    /// The reasons, whatever the outcome.
    pub fn reasons(&self) -> &Reasons {
        match self {
            Self::Allow(authorized) => authorized.reasons(),
            Self::Deny { reasons, .. } | Self::StepUp { reasons, .. } => reasons,
            Self::AskApproval(pending) => pending.reasons(),
        }
    }

    /// The outcome as audit records write it.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Allow(_) => "allow",
            Self::Deny { .. } => "deny",
            Self::StepUp { .. } => "step-up",
            Self::AskApproval(_) => "ask-approval",
        }
    }
}
