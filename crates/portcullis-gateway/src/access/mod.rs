//! The access part of the gateway: who is calling, what the policies decide of each request,
//! the proofs a decision hands out, and the records it leaves.
//!
//! A request's path through it, in order: [`Access::caller`] authenticates the request (its
//! `Authorization` header, nothing else) and takes one snapshot of the policies for all of it;
//! [`decide`] decides the parsed request, every method of both eras, the unknown ones included
//! (`Action::"rpc:<method>"`, default deny), records the decision (durably before anything
//! state-changing) and returns a [`Verdict`]. Only an allowing verdict carries an
//! [`Authorized`], and nothing sends a caller's request upstream without one. This module never
//! imports the upstream side: it asks about objects and tasks through [`Objects`].

mod authenticate;
mod caller;
mod decide;
pub(crate) mod record;
mod verdict;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock, PoisonError, RwLock},
};

use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
use portcullis_audit::{AuditDecision, AuditError, AuditRecord, Durability};
use portcullis_authn::Challenge;
use portcullis_core::{CallerId, CorrelationId};
use portcullis_policy::{PolicyEngine, Principal};

pub(crate) use authenticate::{Authenticator, Unauthenticated, issuer_client};
pub(crate) use caller::{Caller, Identity, principal};
pub(crate) use decide::{Objects, TaskRoute, decide, readable};
pub(crate) use record::{Reason, Scene};
pub(crate) use verdict::Verdict;
pub use verdict::{Authorized, Granted, Internal, Pending};

use crate::{config::Config, consent::Consent, entitlements::Entitlements, trail::Trail};

/// Everything a decision needs, shared by every request.
pub struct Access {
    authenticator: Option<Authenticator>,
    /// The policies every request goes through, swapped whole on reload; `None` only on an
    /// unauthenticated gateway.
    policy: Option<RwLock<Arc<PolicyEngine>>>,
    /// Candidate policies decided beside the ones in force, only to audit disagreements.
    shadow: RwLock<Option<Arc<PolicyEngine>>>,
    /// Live entitlements beside the tokens' claims, if configured.
    entitlements: Option<Arc<Entitlements>>,
    /// What introspection last said of each connected caller with an opaque token, asked again
    /// while its session lives (`None`: its token is no longer active).
    reintrospected: Mutex<HashMap<CallerId, Option<Principal>>>,
    /// Bumped whenever what callers may see can have changed (entitlements, policies,
    /// introspection): each connected caller's view is then recomputed.
    generation: tokio::sync::watch::Sender<u64>,
    /// Approvals asked for and used.
    consent: Arc<Consent>,
    /// Where records go (set once the HTTP app is built).
    trail: OnceLock<Trail>,
    /// How often each caller, tenant, limited tool and source address may ask.
    rates: crate::rate::Rates,
}

/// Why a request is refused before it is read.
#[derive(Debug)]
pub(crate) enum Refused {
    /// 401 with this challenge.
    Challenge(Challenge),
    /// 503: the identity provider cannot be reached.
    Unavailable(CorrelationId),
}

impl Access {
    /// The access part of `config`.
    pub fn new(config: &Config) -> Self {
        Self {
            authenticator: config.auth.as_ref().map(Authenticator::new),
            policy: config
                .auth
                .as_ref()
                .map(|auth| RwLock::new(auth.policy.clone())),
            shadow: RwLock::new(config.auth.as_ref().and_then(|auth| auth.shadow.clone())),
            entitlements: config.entitlements.clone(),
            reintrospected: Mutex::new(HashMap::new()),
            generation: tokio::sync::watch::Sender::new(0),
            consent: Arc::new(Consent::from_config(
                &config.consent,
                crate::consent::shared::from_config(config),
            )),
            trail: OnceLock::new(),
            rates: crate::rate::Rates::new(&config.limits),
        }
    }

    /// The request rates (`[limits]`).
    pub(crate) fn rates(&self) -> &crate::rate::Rates {
        &self.rates
    }

    /// Record decisions to `trail` (the first trail attached stays).
    pub fn attach_trail(&self, trail: Trail) {
        let _ = self.trail.set(trail);
    }

    /// The trail records go to (none yet: a trail that keeps nothing).
    pub(crate) fn trail(&self) -> &Trail {
        static NONE: OnceLock<Trail> = OnceLock::new();
        self.trail
            .get()
            .unwrap_or_else(|| NONE.get_or_init(Trail::default))
    }

    /// Record `record`: a durable record is written before this returns (an error: the
    /// caller fails closed); a queued one is handed over and nothing waits for it.
    pub(crate) async fn record(
        &self,
        record: AuditRecord,
        durability: Durability,
    ) -> Result<(), AuditError> {
        match durability {
            Durability::Durable => self.trail().record(record, durability).await,
            Durability::Queued => {
                self.trail().record_later(record);
                Ok(())
            }
        }
    }

    /// The authenticator, on an authenticated gateway.
    pub(crate) fn authenticator(&self) -> Option<&Authenticator> {
        self.authenticator.as_ref()
    }

    /// Approvals asked for and used (shared with the approval page).
    pub(crate) fn consent(&self) -> &Arc<Consent> {
        &self.consent
    }

    /// The policy set in force now.
    pub(crate) fn policy(&self) -> Option<Arc<PolicyEngine>> {
        self.policy
            .as_ref()
            .map(|slot| slot.read().unwrap_or_else(PoisonError::into_inner).clone())
    }

    /// The candidate policies in shadow, if any.
    pub(crate) fn shadow(&self) -> Option<Arc<PolicyEngine>> {
        self.shadow
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Put `engine` in force for every decision from now on, and have every connected caller's
    /// view recomputed. (Nothing on an unauthenticated gateway, which has no policies.)
    pub fn reload_policy(&self, engine: Arc<PolicyEngine>, shadow: Option<Arc<PolicyEngine>>) {
        if let Some(slot) = &self.policy {
            *slot.write().unwrap_or_else(PoisonError::into_inner) = engine;
            *self.shadow.write().unwrap_or_else(PoisonError::into_inner) = shadow;
            self.changed();
        }
    }

    /// `principal` (as its token says) as its entitlements say it is now.
    pub(crate) fn entitled(
        &self,
        principal: Principal,
    ) -> Result<Principal, crate::entitlements::Disabled> {
        match &self.entitlements {
            Some(entitlements) => entitlements.apply(principal),
            None => Ok(principal),
        }
    }

    /// The live entitlements, if configured.
    pub(crate) fn entitlements(&self) -> Option<&Arc<Entitlements>> {
        self.entitlements.as_ref()
    }

    /// Who is calling, from the `Authorization` header of `headers` and nothing else. A
    /// refusal is recorded (`request_line` names the HTTP method and path).
    pub(crate) async fn caller(
        &self,
        headers: &HeaderMap,
        request_line: &str,
        source: Option<std::net::IpAddr>,
    ) -> Result<Caller, Refused> {
        let request_line = (request_line, source);
        let correlation = CorrelationId::fresh();
        let policy = self.policy();
        let Some(authenticator) = &self.authenticator else {
            return Ok(Caller {
                identity: None,
                correlation,
                policy,
            });
        };
        let values = headers
            .get_all(AUTHORIZATION)
            .iter()
            .map(HeaderValue::as_bytes);
        let (verified, presented, opaque) = match authenticator.authenticate(values).await {
            Ok(verified) => verified,
            Err(Unauthenticated::Challenge(challenge)) => {
                let reason = match challenge {
                    Challenge::Missing { .. } => Reason::MissingToken,
                    _ => Reason::InvalidToken,
                };
                self.refused(
                    &correlation,
                    request_line,
                    (AuditDecision::Deny, 401),
                    reason,
                    None,
                )
                .await;
                return Err(Refused::Challenge(challenge));
            }
            Err(Unauthenticated::Unavailable) => {
                self.refused(
                    &correlation,
                    request_line,
                    (AuditDecision::Error, 503),
                    Reason::IdentityProviderUnavailable,
                    None,
                )
                .await;
                tracing::warn!(%correlation, "token could not be verified: issuer keys unavailable");
                return Err(Refused::Unavailable(correlation));
            }
        };
        let token_principal = principal(&verified);
        // A subject its entitlements disable is refused at once, whatever its token says.
        let Ok(entitled) = self.entitled(token_principal.clone()) else {
            self.refused(
                &correlation,
                request_line,
                (AuditDecision::Deny, 401),
                Reason::SubjectDisabled,
                Some(&verified),
            )
            .await;
            tracing::info!(subject = %verified.subject(), "token of a disabled subject refused");
            return Err(Refused::Challenge(Challenge::InvalidToken));
        };
        Ok(Caller {
            identity: Some(Identity {
                id: CallerId::new(verified.issuer(), verified.subject()),
                verified,
                token: token_principal,
                principal: entitled,
                opaque: opaque.then(|| presented.clone()),
                presented,
            }),
            correlation,
            policy,
        })
    }

    /// Whether `headers` carry a token verified moments ago (see
    /// `Authenticator::recognizes`).
    pub(crate) fn recognizes(&self, headers: &HeaderMap) -> bool {
        self.authenticator.as_ref().is_some_and(|authenticator| {
            authenticator.recognizes(
                headers
                    .get_all(AUTHORIZATION)
                    .iter()
                    .map(HeaderValue::as_bytes),
            )
        })
    }

    /// Record a request refused before it was read.
    pub(crate) async fn refused(
        &self,
        correlation: &CorrelationId,
        (request_line, source): (&str, Option<std::net::IpAddr>),
        (decision, status): (AuditDecision, u16),
        reason: Reason,
        principal: Option<&portcullis_authn::VerifiedPrincipal>,
    ) {
        let mut record = record::refused_early(
            correlation.as_str(),
            request_line,
            decision,
            status,
            reason,
            principal,
        );
        record.source = source.map(|source| source.to_string());
        if principal.is_none() {
            self.trail().refused_counted(record);
            return;
        }
        let _ = self.record(record, Durability::Queued).await;
    }

    /// Wake every connected caller's view to be recomputed.
    pub(crate) fn changed(&self) {
        self.generation.send_modify(|generation| *generation += 1);
    }

    /// A receiver that wakes on every [`Access::changed`].
    pub(crate) fn generations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The generation of entitlements, policies and introspection answers in force.
    pub(crate) fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// Introspection's latest answer about a connected caller (`None`: no longer active);
    /// every view is recomputed when it changed.
    pub(crate) fn reintrospected(&self, caller: CallerId, answer: Option<Principal>) {
        let changed = {
            let mut answers = self.answers();
            answers.insert(caller, answer.clone()) != Some(answer)
        };
        if changed {
            self.changed();
        }
    }

    /// Drop introspection answers about callers no longer connected.
    pub(crate) fn forget_reintrospected_except(
        &self,
        live: &HashMap<CallerId, portcullis_authn::BearerToken>,
    ) {
        self.answers().retain(|caller, _| live.contains_key(caller));
    }

    /// The caller whose token said `principal`, as a view is computed for it now: what
    /// introspection last said of it (for opaque tokens), then its entitlements.
    pub(crate) fn viewed_as(
        &self,
        principal: &Principal,
    ) -> Result<Principal, crate::entitlements::Disabled> {
        let caller = CallerId::new(principal.issuer.as_str(), principal.subject.as_str());
        let answer = self.answers().get(&caller).cloned();
        match answer {
            Some(None) => Err(crate::entitlements::Disabled),
            Some(Some(now)) => self.entitled(now),
            None => self.entitled(principal.clone()),
        }
    }

    fn answers(&self) -> std::sync::MutexGuard<'_, HashMap<CallerId, Option<Principal>>> {
        self.reintrospected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
