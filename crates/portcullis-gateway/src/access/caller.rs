//! Who is calling: read once per request, from its `Authorization` header and nothing else.

use std::sync::Arc;

use portcullis_authn::{BearerToken, VerifiedPrincipal};
use portcullis_core::{CallerId, CorrelationId};
use portcullis_policy::{PolicyEngine, Principal};

/// One request's caller, and the policy set every decision of that request is made under.
pub(crate) struct Caller {
    /// The verified identity; `None` only on an unauthenticated gateway (`[danger]`).
    pub(crate) identity: Option<Identity>,
    /// Ties the caller's answer to the gateway's log lines and records.
    pub(crate) correlation: CorrelationId,
    /// The policies in force when the request arrived, used for all of it (a reload while it
    /// runs does not split one request between two sets); `None` without policies.
    pub(crate) policy: Option<Arc<PolicyEngine>>,
}

/// A verified caller.
pub(crate) struct Identity {
    /// Issuer and subject.
    pub(crate) id: CallerId,
    /// What the token proved.
    pub(crate) verified: VerifiedPrincipal,
    /// The caller as its token says, before entitlements: what a view is recomputed from.
    pub(crate) token: Principal,
    /// The caller as policies see it now: its token, then its live entitlements.
    pub(crate) principal: Principal,
    /// An opaque token, kept (in memory only) so its answer can be introspected again while the
    /// caller's session lives.
    pub(crate) opaque: Option<BearerToken>,
    /// The token as presented, for this request only: the `subject_token` when an upstream's
    /// token is exchanged for the caller's (never sent upstream itself).
    pub(crate) presented: BearerToken,
}

impl Caller {
    /// The caller's id, on an authenticated gateway.
    pub(crate) fn id(&self) -> Option<&CallerId> {
        self.identity.as_ref().map(|identity| &identity.id)
    }

    /// The caller as policies see it, on an authenticated gateway.
    pub(crate) fn principal(&self) -> Option<&Principal> {
        self.identity.as_ref().map(|identity| &identity.principal)
    }
}

/// The verified caller as policies see it.
pub(crate) fn principal(verified: &VerifiedPrincipal) -> Principal {
    Principal {
        subject: verified.subject().to_owned(),
        issuer: verified.issuer().to_owned(),
        tenant: verified.tenant().map(str::to_owned),
        roles: verified.roles().to_vec(),
        scopes: verified.scopes().to_vec(),
        client_id: verified.client_id().map(str::to_owned),
    }
}
