//! Approvals given out of band, on the gateway's own page: a call that needs one leaves a
//! request here; the person signs in on the page and answers it; the same call, made again,
//! finds the answer and uses it up. Requests are matched on the whole binding (caller,
//! capability, argument digest, policy version), so an altered call finds nothing.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use portcullis_policy::Principal;

use super::{
    Binding, now,
    shared::{Shared, Unavailable},
};

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Not answered yet.
    Waiting,
    /// Approved on the page.
    Approved,
    /// Declined on the page.
    Declined,
}

/// What a call finds when it asks the ledger.
#[derive(Debug)]
pub(crate) enum Claim {
    /// Approved: used up now; the call may run once.
    Approved(super::Granted),
    /// Declined: used up now.
    Declined(Binding),
    /// Not answered yet; `new` when this call just made the request.
    Waiting { binding: Binding, new: bool },
}

/// Why the page refuses an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageRefusal {
    /// No such request, or it expired.
    Gone,
    /// The request belongs to someone else.
    NotYours,
    /// Already answered.
    Answered,
    /// The shared state cannot be reached now.
    Unavailable,
}

/// Unanswered requests kept per caller.
const MAX_WAITING_PER_CALLER: usize = super::MAX_WAITING;

struct Entry {
    binding: Binding,
    question: String,
    answer: Answer,
}

/// The requests waiting for, or holding, an answer: in this process, or in the state replicas
/// share (`[cluster] postgres`).
#[derive(Default)]
pub(crate) struct Ledger {
    entries: Mutex<HashMap<String, Entry>>,
    shared: Option<Arc<Shared>>,
}

/// One request as the page shows it.
#[derive(Debug, Clone)]
pub(crate) struct Shown {
    pub(crate) id: String,
    pub(crate) question: String,
    /// Seconds until it expires.
    pub(crate) expires_in: u64,
}

impl Ledger {
    /// Kept in `shared` if given, else here.
    pub(crate) fn new(shared: Option<Arc<Shared>>) -> Self {
        Self {
            entries: Mutex::default(),
            shared,
        }
    }

    /// The answer for this exact call, using it up; or the request waiting for one (made now
    /// from `binding` and `question` if there is none).
    pub(crate) async fn claim(
        &self,
        binding: Binding,
        question: impl FnOnce() -> String,
    ) -> Result<Claim, Unavailable> {
        match &self.shared {
            Some(shared) => shared.claim(binding, question()).await,
            None => Ok(self.claim_here(binding, question)),
        }
    }

    /// Where request `id` stands, if it is still there.
    pub(crate) async fn answer(&self, id: &str) -> Result<Option<Answer>, Unavailable> {
        match &self.shared {
            Some(shared) => shared.answer(id).await,
            None => Ok(self.lock().get(id).map(|entry| entry.answer)),
        }
    }

    /// The unanswered requests of `principal`, oldest first.
    pub(crate) async fn waiting_for(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Vec<Shown>, Unavailable> {
        match &self.shared {
            Some(shared) => shared.waiting_for(issuer, subject).await,
            None => Ok(self.waiting_here(issuer, subject)),
        }
    }

    /// Whether request `id` exists and belongs to (`issuer`, `subject`).
    pub(crate) async fn check(
        &self,
        id: &str,
        issuer: &str,
        subject: &str,
    ) -> Result<(), PageRefusal> {
        let Some(shared) = &self.shared else {
            return self.check_here(id, issuer, subject);
        };
        match shared.request(id).await {
            Err(Unavailable) => Err(PageRefusal::Unavailable),
            Ok(None) => Err(PageRefusal::Gone),
            Ok(Some((iss, sub, _))) if (iss.as_str(), sub.as_str()) != (issuer, subject) => {
                Err(PageRefusal::NotYours)
            }
            Ok(Some(_)) => Ok(()),
        }
    }

    /// The person (`principal`, signed in on the page) answers request `id`. Returns the
    /// request's capability, for the record.
    pub(crate) async fn decide(
        &self,
        id: &str,
        principal: &Principal,
        approve: bool,
    ) -> Result<String, PageRefusal> {
        let Some(shared) = &self.shared else {
            return self.decide_here(id, principal, approve);
        };
        shared
            .decide(id, (&principal.issuer, &principal.subject), approve)
            .await
            .unwrap_or(Err(PageRefusal::Unavailable))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = now();
        entries.retain(|_, entry| entry.binding.exp > now);
        entries
    }

    fn claim_here(&self, binding: Binding, question: impl FnOnce() -> String) -> Claim {
        let mut entries = self.lock();
        let same = entries
            .iter()
            .find(|(_, entry)| entry.binding.same_call(&binding))
            .map(|(id, entry)| (id.clone(), entry.answer));
        match same {
            Some((id, Answer::Approved)) => match entries.remove(&id) {
                Some(entry) => Claim::Approved(super::Granted::new(entry.binding.id)),
                None => Claim::Declined(binding),
            },
            Some((id, Answer::Declined)) => match entries.remove(&id) {
                Some(entry) => Claim::Declined(entry.binding),
                None => Claim::Declined(binding),
            },
            Some((id, Answer::Waiting)) => Claim::Waiting {
                binding: entries
                    .get(&id)
                    .map_or(binding, |entry| entry.binding.clone()),
                new: false,
            },
            None => {
                // A caller cannot pile up requests without bound, answered or not (declining
                // on the page and asking anew would otherwise keep growing them): past the
                // cap, its oldest goes (it is simply asked again if made again).
                let theirs: Vec<(&String, u64)> = entries
                    .iter()
                    .filter(|(_, entry)| {
                        (&entry.binding.iss, &entry.binding.sub) == (&binding.iss, &binding.sub)
                    })
                    .map(|(id, entry)| (id, entry.binding.exp))
                    .collect();
                if theirs.len() >= MAX_WAITING_PER_CALLER
                    && let Some(oldest) = theirs
                        .iter()
                        .min_by_key(|(_, exp)| *exp)
                        .map(|(id, _)| (*id).clone())
                {
                    entries.remove(&oldest);
                }
                let entry = Entry {
                    binding: binding.clone(),
                    question: question(),
                    answer: Answer::Waiting,
                };
                entries.insert(binding.id.clone(), entry);
                Claim::Waiting { binding, new: true }
            }
        }
    }

    fn waiting_here(&self, issuer: &str, subject: &str) -> Vec<Shown> {
        let now = now();
        let mut shown: Vec<(u64, Shown)> = self
            .lock()
            .values()
            .filter(|entry| {
                entry.answer == Answer::Waiting
                    && entry.binding.iss == issuer
                    && entry.binding.sub == subject
            })
            .map(|entry| {
                let shown = Shown {
                    id: entry.binding.id.clone(),
                    question: entry.question.clone(),
                    expires_in: entry.binding.exp.saturating_sub(now),
                };
                (entry.binding.exp, shown)
            })
            .collect();
        shown.sort_by_key(|(exp, _)| *exp);
        shown.into_iter().map(|(_, shown)| shown).collect()
    }

    fn check_here(&self, id: &str, issuer: &str, subject: &str) -> Result<(), PageRefusal> {
        let entries = self.lock();
        let entry = entries.get(id).ok_or(PageRefusal::Gone)?;
        if entry.binding.iss != issuer || entry.binding.sub != subject {
            return Err(PageRefusal::NotYours);
        }
        Ok(())
    }

    fn decide_here(
        &self,
        id: &str,
        principal: &Principal,
        approve: bool,
    ) -> Result<String, PageRefusal> {
        let mut entries = self.lock();
        let entry = entries.get_mut(id).ok_or(PageRefusal::Gone)?;
        if entry.binding.iss != principal.issuer || entry.binding.sub != principal.subject {
            return Err(PageRefusal::NotYours);
        }
        if entry.answer != Answer::Waiting {
            return Err(PageRefusal::Answered);
        }
        entry.answer = if approve {
            Answer::Approved
        } else {
            Answer::Declined
        };
        Ok(entry.binding.cap.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::{Consent, principal};

    #[test]
    fn an_answer_is_found_by_the_same_call_only_and_used_once() {
        let consent = Consent::default();
        let ledger = Ledger::default();
        let ada = principal("ada");
        let ask = |digest: &str| consent.bind(&ada, "grant_access", digest, "v1");
        let Claim::Waiting { binding, new: true } = ledger.claim_here(ask("d1"), || "q".to_owned())
        else {
            panic!("a new request");
        };
        assert!(matches!(
            ledger.claim_here(ask("d1"), String::new),
            Claim::Waiting { new: false, .. }
        ));
        assert_eq!(
            ledger.decide_here(&binding.id, &principal("bob"), true),
            Err(PageRefusal::NotYours)
        );
        assert_eq!(
            ledger.waiting_here("https://issuer.example", "bob").len(),
            0
        );
        assert_eq!(
            ledger.waiting_here("https://issuer.example", "ada").len(),
            1
        );
        assert!(ledger.decide_here(&binding.id, &ada, true).is_ok());
        assert_eq!(
            ledger.decide_here(&binding.id, &ada, false),
            Err(PageRefusal::Answered)
        );
        // Other arguments: a request of their own, not this approval.
        assert!(matches!(
            ledger.claim_here(ask("d2"), String::new),
            Claim::Waiting { new: true, .. }
        ));
        assert!(matches!(
            ledger.claim_here(ask("d1"), String::new),
            Claim::Approved(..)
        ));
        // Used: the same call again starts over.
        assert!(matches!(
            ledger.claim_here(ask("d1"), String::new),
            Claim::Waiting { new: true, .. }
        ));
    }

    #[test]
    fn a_caller_keeps_at_most_its_cap_of_unanswered_requests() {
        let consent = Consent::default();
        let ledger = Ledger::default();
        let ada = principal("ada");
        for n in 0..=MAX_WAITING_PER_CALLER {
            let binding = consent.bind(&ada, "grant_access", &format!("d{n}"), "v1");
            ledger.claim_here(binding, String::new);
        }
        let kept = ledger.waiting_here("https://issuer.example", "ada").len();
        assert_eq!(kept, MAX_WAITING_PER_CALLER);
        let bob = consent.bind(&principal("bob"), "grant_access", "d0", "v1");
        assert!(matches!(
            ledger.claim_here(bob, String::new),
            Claim::Waiting { new: true, .. }
        ));
    }

    // See: review of the shared approval state. Only unanswered requests counted toward the
    // cap: declining each on the page and asking anew kept growing a caller's entries.
    #[test]
    fn answered_requests_count_toward_the_cap_too() {
        let consent = Consent::default();
        let ledger = Ledger::default();
        let ada = principal("ada");
        for n in 0..MAX_WAITING_PER_CALLER * 3 {
            let binding = consent.bind(&ada, "grant_access", &format!("d{n}"), "v1");
            if let Claim::Waiting { binding, new: true } = ledger.claim_here(binding, String::new) {
                assert!(ledger.decide_here(&binding.id, &ada, false).is_ok());
            }
        }
        assert!(
            ledger.lock().len() <= MAX_WAITING_PER_CALLER,
            "{}",
            ledger.lock().len()
        );
    }
}
