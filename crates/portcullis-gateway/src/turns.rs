//! Turns: how many of one caller's requests the gateway works on at once.
//!
//! Rates bound how many requests a caller sends in a second, not how many arrive together: a
//! caller's whole burst lands at once and, queued ahead of everyone else's, it was the victim
//! of the noisy-neighbour benchmark that waited (p99 10x quiet with 64 KiB arguments). With
//! turns, a caller's requests past `[limits] concurrent_per_caller` wait in their own line
//! (first come, first served), not in everyone's. A turn is given back while its request waits
//! on something outside the gateway (an upstream, the caller's client, a person) for longer than
//! a quick answer takes, so slow tools called in parallel do not queue behind one another.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use portcullis_core::CallerId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a request waiting outside keeps its turn before giving it back.
const KEPT_WHILE_WAITING: Duration = Duration::from_millis(10);

/// Every caller's line, while it has requests.
pub(crate) struct Turns {
    each: usize,
    lines: Mutex<HashMap<CallerId, Arc<Semaphore>>>,
}

impl Turns {
    pub(crate) fn new(each: usize) -> Arc<Self> {
        Arc::new(Self {
            each: each.clamp(1, Semaphore::MAX_PERMITS),
            lines: Mutex::new(HashMap::new()),
        })
    }

    /// Wait for one of `caller`'s turns. A caller without an identity (no authentication
    /// configured) is not held back.
    pub(crate) async fn take(self: &Arc<Self>, caller: Option<&CallerId>) -> Turn {
        let Some(caller) = caller else {
            return Turn::free();
        };
        let line = {
            let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
            lines
                .entry(caller.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(self.each)))
                .clone()
        };
        // The semaphore is never closed.
        let permit = line.clone().acquire_owned().await.ok();
        Turn {
            held: Some(Held {
                turns: self.clone(),
                caller: caller.clone(),
                line,
            }),
            permit: Mutex::new(permit),
        }
    }

    /// Callers with a line now (tests).
    #[cfg(test)]
    fn lines(&self) -> usize {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

struct Held {
    turns: Arc<Turns>,
    caller: CallerId,
    line: Arc<Semaphore>,
}

/// One request's turn, given back when it is dropped.
pub(crate) struct Turn {
    held: Option<Held>,
    permit: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Turn {
    /// No turn to keep: for callers without an identity.
    pub(crate) fn free() -> Self {
        Self {
            held: None,
            permit: Mutex::new(None),
        }
    }

    /// Wait for `outside`; past a moment, without holding the turn (taken back before going
    /// on). A quick answer keeps it: a caller's burst of fast calls then reaches the upstream a
    /// few at a time too, rather than all at once ahead of everyone else's.
    pub(crate) async fn away<T>(&self, outside: impl Future<Output = T>) -> T {
        let Some(held) = &self.held else {
            return outside.await;
        };
        let mut outside = std::pin::pin!(outside);
        if let Ok(value) = tokio::time::timeout(KEPT_WHILE_WAITING, &mut outside).await {
            return value;
        }
        drop(self.slot().take());
        let value = outside.await;
        // Two waits of one request may overlap (a list gathered from several upstreams):
        // whichever ends first takes the turn back, for both.
        if self.slot().is_none() {
            let permit = held.line.clone().acquire_owned().await.ok();
            let mut slot = self.slot();
            if slot.is_none() {
                *slot = permit;
            }
        }
        value
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<OwnedSemaphorePermit>> {
        self.permit.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        drop(self.slot().take());
        if let Some(held) = self.held.take() {
            let mut lines = held
                .turns
                .lines
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Every other handle on the line was cloned under this lock: two (the table's
            // and this one) means nobody else holds or waits for a turn.
            if Arc::strong_count(&held.line) == 2 {
                lines.remove(&held.caller);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(subject: &str) -> CallerId {
        CallerId::new("https://issuer.example", subject)
    }

    #[tokio::test]
    async fn a_caller_past_its_turns_waits_and_others_do_not() {
        let turns = Turns::new(2);
        let (a, b) = (caller("a"), caller("b"));
        let first = turns.take(Some(&a)).await;
        let _second = turns.take(Some(&a)).await;
        let third = tokio::time::timeout(Duration::from_millis(50), turns.take(Some(&a))).await;
        assert!(third.is_err(), "a third request of a waits");
        let other = tokio::time::timeout(Duration::from_millis(50), turns.take(Some(&b))).await;
        assert!(other.is_ok(), "b is not held back by a");
        drop(first);
        let third = tokio::time::timeout(Duration::from_millis(50), turns.take(Some(&a))).await;
        assert!(third.is_ok(), "a's next request gets the turn given back");
    }

    #[tokio::test]
    async fn a_turn_is_given_back_while_its_request_waits_outside() {
        let turns = Turns::new(1);
        let a = caller("a");
        let working = turns.take(Some(&a)).await;
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let away = working.away(async {
            let _ = released.await;
        });
        let next = async {
            let turn = turns.take(Some(&a)).await;
            let _ = release.send(());
            // Back from its wait, the first request needs the turn this one holds.
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(turn);
        };
        tokio::time::timeout(Duration::from_secs(5), async { tokio::join!(away, next) })
            .await
            .expect("the waiting request lets the next one work");
        assert!(working.slot().is_some(), "the turn was taken back");
    }

    #[tokio::test]
    async fn lines_are_let_go_when_their_last_request_ends() {
        let turns = Turns::new(1);
        let a = caller("a");
        let first = turns.take(Some(&a)).await;
        let waiting = tokio::spawn({
            let turns = turns.clone();
            let a = a.clone();
            async move { drop(turns.take(Some(&a)).await) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(turns.lines(), 1);
        drop(first);
        waiting.await.expect("the waiting request ran");
        assert_eq!(
            turns.lines(),
            0,
            "no line kept for a caller with no requests"
        );
        drop(turns.take(None).await);
        assert_eq!(turns.lines(), 0, "no line for a caller without an identity");
    }
}
