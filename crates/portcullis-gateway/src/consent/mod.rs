//! Consent: a person's approval of one exact call, which the client and the model cannot forge.
//!
//! An approval is bound to the caller (issuer and subject), the capability, the digest of the
//! exact arguments, the policy set version, an expiry, and a one-time id. For a 2026-07-28
//! caller that binding travels as the `requestState` of an input-required result, sealed with
//! an HMAC under a key only this gateway holds; it comes back with the answer and is redeemed
//! once. A 2025-11-25 session caller is asked on the call's own stream, so the binding never
//! leaves the gateway.

mod ledger;
mod render;
pub(crate) mod shared;

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::hmac;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use portcullis_policy::Principal;
use serde::{Deserialize, Serialize};

pub(crate) use ledger::{Answer, Claim, Ledger, PageRefusal, Shown};
pub(crate) use render::{fits_a_form, fits_approval, render};

/// Unanswered requests one caller may have waiting on the page.
pub(crate) const MAX_WAITING: usize = 64;
/// Unused one-time form tokens one signed-in browser keeps (the newest).
pub(crate) const MAX_FORMS_PER_BROWSER: usize = 32;

/// Whether `id` has the shape of the gateway's approval request ids (`ap-` and 22 characters).
pub(crate) fn looks_like_request(id: &str) -> bool {
    id.strip_prefix("ap-").is_some_and(|rest| {
        rest.len() == 22
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// Whether `state` (a call's `requestState`) is an approval the gateway sealed.
pub(crate) fn is_sealed(state: Option<&serde_json::Value>) -> bool {
    state
        .and_then(serde_json::Value::as_str)
        .is_some_and(|state| state.starts_with(PREFIX))
}

/// A person's approval of one call, under an approval reference (`ap-…`). Made only from a
/// sealed state redeemed, an approval given on the page and claimed, an answer on the call's
/// own stream, or (see [`Granted::resumed`]) the approval a parked call went upstream under;
/// only [`crate::access::Pending::approve`] takes it.
#[derive(Debug)]
pub struct Granted {
    reference: String,
}

impl Granted {
    fn new(reference: String) -> Self {
        Self { reference }
    }

    /// The approval `reference` a call parked on its upstream's question went upstream
    /// under, for the retry that resumes that same call (`mcp::bridge` checks caller and call).
    pub(crate) fn resumed(reference: String) -> Self {
        Self { reference }
    }

    /// The approval reference.
    pub(crate) fn reference(&self) -> &str {
        &self.reference
    }
}

/// Sealed states start with this, so a foreign state is refused before anything else.
const PREFIX: &str = "pc1.";

/// What an approval is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Binding {
    /// The consent reference: one approval, used once.
    pub(crate) id: String,
    iss: String,
    sub: String,
    cap: String,
    digest: String,
    pv: String,
    /// Unix seconds.
    exp: u64,
}

/// Why a returned approval does not let the call run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not sealed by this gateway, or altered.
    Forged,
    /// Past its expiry.
    Expired,
    /// For another caller.
    OtherSubject,
    /// For another capability, other arguments, or under other policies.
    OtherCall,
    /// Already used.
    Spent,
    /// The shared state cannot be reached: whether it was used cannot be known.
    Unavailable,
}

impl Binding {
    /// Whether `other` binds the same caller to the same call (its id and expiry aside).
    fn same_call(&self, other: &Self) -> bool {
        (&self.iss, &self.sub, &self.cap, &self.digest, &self.pv)
            == (&other.iss, &other.sub, &other.cap, &other.digest, &other.pv)
    }
}

impl Refusal {
    /// The reason code audit records carry.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Forged => "approval_forged",
            Self::Expired => "approval_expired",
            Self::OtherSubject => "approval_other_subject",
            Self::OtherCall => "approval_other_call",
            Self::Spent => "approval_spent",
            Self::Unavailable => "approval_state_unavailable",
        }
    }
}

/// The gateway's consent state: the sealing key and the approvals already used.
pub(crate) struct Consent {
    /// Approvals asked for on the gateway's page.
    pub(crate) ledger: Ledger,
    /// The sealing key first; every one opens (rotation).
    keys: Vec<hmac::Key>,
    /// One-time ids used, in this process (without a shared store).
    spent: Mutex<HashMap<String, u64>>,
    /// The state replicas share, if configured: then the ledger and spent ids live there.
    shared: Option<std::sync::Arc<shared::Shared>>,
    ttl: Duration,
    wait: Duration,
    /// The lowest tier approved only on the page.
    out_of_band: portcullis_policy::RiskTier,
    /// The page's address (`<origin>/approvals`), once the HTTP app knows it.
    page: std::sync::OnceLock<String>,
}

impl std::fmt::Debug for Consent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consent").finish_non_exhaustive()
    }
}

impl Default for Consent {
    fn default() -> Self {
        Self::new(Duration::from_secs(600), Duration::from_secs(300))
    }
}

impl Consent {
    /// A fresh key: states sealed by an earlier process (or another instance) are refused.
    /// Requests stay answerable for `ttl`; a session client has `wait` to answer on its stream.
    pub(crate) fn new(ttl: Duration, wait: Duration) -> Self {
        let secret = portcullis_authn::signing::random_token();
        Self {
            ledger: Ledger::default(),
            keys: vec![hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes())],
            spent: Mutex::new(HashMap::new()),
            shared: None,
            ttl,
            wait,
            out_of_band: portcullis_policy::RiskTier::Admin,
            page: std::sync::OnceLock::new(),
        }
    }

    /// As `[consent]` says, with the state replicas share in `shared` if given.
    pub(crate) fn from_config(
        config: &crate::config::ConsentConfig,
        shared: Option<std::sync::Arc<shared::Shared>>,
    ) -> Self {
        let mut consent = Self::new(config.ttl, config.wait);
        consent.out_of_band = config.out_of_band;
        match config.read_keys() {
            Ok(keys) if !keys.is_empty() => {
                consent.keys = keys
                    .iter()
                    .map(|key| hmac::Key::new(hmac::HMAC_SHA256, key))
                    .collect();
            }
            Ok(_) => {}
            // `serve` read them before starting; gone since, this process seals with a key of
            // its own: other replicas' approvals are refused here, never accepted unchecked.
            Err(error) => {
                tracing::error!(%error, "approval keys unreadable: a key of this process's own seals")
            }
        }
        consent.ledger = Ledger::new(shared.clone());
        consent.shared = shared;
        consent
    }

    /// The state replicas share, if configured.
    pub(crate) fn shared(&self) -> Option<&std::sync::Arc<shared::Shared>> {
        self.shared.as_ref()
    }

    /// Whether the shared state answers (always, without one).
    pub(crate) async fn reachable(&self) -> bool {
        match &self.shared {
            Some(shared) => shared.reachable().await,
            None => true,
        }
    }

    /// Whether a call of `tier` is approved only on the page.
    pub(crate) fn out_of_band(&self, tier: portcullis_policy::RiskTier) -> bool {
        tier >= self.out_of_band
    }

    /// Where the approval page is served.
    pub(crate) fn set_page(&self, url: String) {
        let _ = self.page.set(url);
    }

    /// The link to request `id` on the approval page, if the page is served.
    pub(crate) fn link(&self, id: &str) -> Option<String> {
        self.page.get().map(|page| format!("{page}?request={id}"))
    }

    /// How long a session client has to answer on the call's stream.
    pub(crate) fn wait(&self) -> Duration {
        self.wait
    }

    /// A new approval request for `principal`'s call of `capability` with arguments whose
    /// digest is `digest`, under policy set `policy_version`.
    pub(crate) fn bind(
        &self,
        principal: &Principal,
        capability: &str,
        digest: &str,
        policy_version: &str,
    ) -> Binding {
        Binding {
            id: format!("ap-{}", &portcullis_authn::signing::random_token()[..22]),
            iss: principal.issuer.clone(),
            sub: principal.subject.clone(),
            cap: capability.to_owned(),
            digest: digest.to_owned(),
            pv: policy_version.to_owned(),
            exp: now() + self.ttl.as_secs(),
        }
    }

    /// `binding` as an opaque, integrity-protected `requestState`.
    pub(crate) fn seal(&self, binding: &Binding) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(binding).unwrap_or_default());
        let Some(key) = self.keys.first() else {
            return String::new();
        };
        let tag = hmac::sign(key, payload.as_bytes());
        format!("{PREFIX}{payload}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// Check a returned `state` against the call it came back with, and use it up (once
    /// across every replica sharing the state).
    pub(crate) async fn redeem(
        &self,
        state: &str,
        principal: &Principal,
        capability: &str,
        digest: &str,
        policy_version: &str,
    ) -> Result<Binding, Refusal> {
        let binding = self.open(state).ok_or(Refusal::Forged)?;
        if binding.iss != principal.issuer || binding.sub != principal.subject {
            return Err(Refusal::OtherSubject);
        }
        if binding.cap != capability || binding.digest != digest || binding.pv != policy_version {
            return Err(Refusal::OtherCall);
        }
        let now = now();
        if binding.exp <= now {
            return Err(Refusal::Expired);
        }
        if let Some(shared) = &self.shared {
            return match shared.spend(&binding.id, binding.exp).await {
                Ok(true) => Ok(binding),
                Ok(false) => Err(Refusal::Spent),
                Err(shared::Unavailable) => Err(Refusal::Unavailable),
            };
        }
        let mut spent = self
            .spent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Expired ids can go: an expired state is refused before it gets here.
        spent.retain(|_, exp| *exp > now);
        if spent.insert(binding.id.clone(), binding.exp).is_some() {
            return Err(Refusal::Spent);
        }
        Ok(binding)
    }

    /// A person's answer to the approval form for `binding`: an approval only when the form
    /// was accepted with `approve` ticked; anything else (declined, cancelled, another shape)
    /// approves nothing.
    pub(crate) fn answered(
        &self,
        binding: &Binding,
        answer: Option<&serde_json::Value>,
    ) -> Option<Granted> {
        let answer = answer?;
        (answer["action"] == "accept"
            && answer["content"]["approve"] == serde_json::Value::Bool(true))
        .then(|| Granted::new(binding.id.clone()))
    }

    fn open(&self, state: &str) -> Option<Binding> {
        let (payload, tag) = state.strip_prefix(PREFIX)?.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.keys
            .iter()
            .find(|key| hmac::verify(key, payload.as_bytes(), &tag).is_ok())?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// A caller with nothing but a subject, for the tests of this module and its parts.
#[cfg(test)]
pub(crate) fn principal(subject: &str) -> Principal {
    Principal {
        subject: subject.to_owned(),
        issuer: "https://issuer.example".to_owned(),
        tenant: None,
        roles: Vec::new(),
        scopes: Vec::new(),
        client_id: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sealed_approval_is_redeemed_once_for_exactly_its_call() {
        let consent = Consent::default();
        let ada = principal("ada");
        let state = consent.seal(&consent.bind(&ada, "send_email", "d1", "v1"));
        let redeem = async |state: &str, who: &Principal, cap: &str, digest: &str, pv: &str| {
            consent
                .redeem(state, who, cap, digest, pv)
                .await
                .map(|_| ())
        };
        assert_eq!(
            redeem(&state, &principal("bob"), "send_email", "d1", "v1").await,
            Err(Refusal::OtherSubject)
        );
        assert_eq!(
            redeem(&state, &ada, "send_email", "d2", "v1").await,
            Err(Refusal::OtherCall)
        );
        assert_eq!(
            redeem(&state, &ada, "delete_record", "d1", "v1").await,
            Err(Refusal::OtherCall)
        );
        assert_eq!(
            redeem(&state, &ada, "send_email", "d1", "v2").await,
            Err(Refusal::OtherCall)
        );
        assert_eq!(redeem(&state, &ada, "send_email", "d1", "v1").await, Ok(()));
        assert_eq!(
            redeem(&state, &ada, "send_email", "d1", "v1").await,
            Err(Refusal::Spent)
        );
        // One character changed anywhere, or another gateway's key: forged.
        let mut altered = state.clone().into_bytes();
        altered[10] = if altered[10] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap_or_default();
        assert_eq!(
            redeem(&altered, &ada, "send_email", "d1", "v1").await,
            Err(Refusal::Forged)
        );
        let other = Consent::default();
        let foreign = other.seal(&other.bind(&ada, "send_email", "d1", "v1"));
        assert_eq!(
            redeem(&foreign, &ada, "send_email", "d1", "v1").await,
            Err(Refusal::Forged)
        );
        assert_eq!(
            redeem("not a state", &ada, "send_email", "d1", "v1").await,
            Err(Refusal::Forged)
        );
    }

    #[tokio::test]
    async fn an_expired_approval_is_refused() {
        let consent = Consent::new(Duration::ZERO, Duration::ZERO);
        let ada = principal("ada");
        let state = consent.seal(&consent.bind(&ada, "send_email", "d1", "v1"));
        assert_eq!(
            consent
                .redeem(&state, &ada, "send_email", "d1", "v1")
                .await
                .map(|_| ()),
            Err(Refusal::Expired)
        );
    }
}
