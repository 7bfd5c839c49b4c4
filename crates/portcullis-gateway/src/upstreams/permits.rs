//! Upstream connections held for callers (a session's own, a request's own): at most so many
//! in all; a caller past its share (an eighth) takes more only while a quarter of them stays
//! free for the others. SECURITY: past the bound a caller shares the gateway's connection,
//! where questions from the upstream cannot reach it; one caller opening sessions or asking
//! requests in a loop must not push everyone else there.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use portcullis_core::CallerId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many each caller holds.
type Held = Arc<Mutex<HashMap<CallerId, usize>>>;

/// The connections held, in all and per caller.
pub(crate) struct Permits {
    all: Arc<Semaphore>,
    most: usize,
    per_caller: usize,
    /// Kept free for callers within their share.
    reserve: usize,
    held: Held,
}

/// One connection's place; given back when dropped.
pub(crate) struct Permit {
    _all: OwnedSemaphorePermit,
    caller: Option<(CallerId, Held)>,
}

impl Permits {
    /// `most` in all; a caller's share is an eighth of them (at least 4).
    pub(crate) fn new(most: usize) -> Self {
        Self {
            all: Arc::new(Semaphore::new(most)),
            most,
            per_caller: (most / 8).max(4).min(most),
            reserve: most / 4,
            held: Arc::default(),
        }
    }

    /// A place for `caller`'s connection (`None` for nobody known, under `[danger]
    /// unauthenticated`: only the bound in all applies), or `None` when there is none.
    pub(crate) fn take(&self, caller: Option<&CallerId>) -> Option<Permit> {
        let Some(caller) = caller else {
            let all = self.all.clone().try_acquire_owned().ok()?;
            return Some(Permit {
                _all: all,
                caller: None,
            });
        };
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = held.entry(caller.clone()).or_insert(0);
        if *mine >= self.per_caller && self.all.available_permits() <= self.reserve {
            return None;
        }
        let all = self.all.clone().try_acquire_owned().ok()?;
        *mine += 1;
        Some(Permit {
            _all: all,
            caller: Some((caller.clone(), self.held.clone())),
        })
    }

    /// How many are held now.
    pub(crate) fn in_use(&self) -> usize {
        self.most.saturating_sub(self.all.available_permits())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some((caller, held)) = &self.caller {
            let mut held = held.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(mine) = held.get_mut(caller) {
                *mine = mine.saturating_sub(1);
                if *mine == 0 {
                    held.remove(caller);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // See: review of issue 15. Sessions and requests of one caller took every connection held
    // for callers; everyone else then shared the gateway's.
    #[test]
    fn one_caller_past_its_share_leaves_a_quarter_for_the_others() {
        let permits = Permits::new(16);
        let hog = CallerId::new("https://issuer.example", "hog");
        let held: Vec<Permit> = (0..100).filter_map(|_| permits.take(Some(&hog))).collect();
        assert_eq!(held.len(), 12, "all but the quarter kept for others");
        let other = CallerId::new("https://issuer.example", "other");
        let theirs: Vec<Permit> = (0..100)
            .filter_map(|_| permits.take(Some(&other)))
            .collect();
        assert_eq!(theirs.len(), 4, "another caller still gets its share");
        drop((held, theirs));
        assert_eq!(permits.in_use(), 0);
        assert!(permits.take(Some(&hog)).is_some());
    }
}
