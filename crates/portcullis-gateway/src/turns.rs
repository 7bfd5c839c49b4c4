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

/// How long, in all, a request waiting outside keeps its turn before giving it back.
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
        // Made before waiting, so that a request dropped while it waits lets its line go.
        let turn = Turn {
            held: Some(Held {
                turns: self.clone(),
                caller: caller.clone(),
                line: line.clone(),
            }),
            state: Mutex::new(State {
                permit: None,
                away: 0,
                returning: false,
                allowance: KEPT_WHILE_WAITING,
            }),
        };
        // The semaphore is never closed.
        let permit = line.acquire_owned().await.ok();
        turn.state().permit = permit;
        turn
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

struct State {
    permit: Option<OwnedSemaphorePermit>,
    /// Waits outside under way that gave the turn back.
    away: usize,
    /// One of them is taking the turn back.
    returning: bool,
    /// What is left of the time the request may keep its turn while it waits.
    allowance: Duration,
}

/// One request's turn, given back when it is dropped.
pub(crate) struct Turn {
    held: Option<Held>,
    state: Mutex<State>,
}

impl Turn {
    /// No turn to keep: for callers without an identity.
    pub(crate) fn free() -> Self {
        Self {
            held: None,
            state: Mutex::new(State {
                permit: None,
                away: 0,
                returning: false,
                allowance: Duration::ZERO,
            }),
        }
    }

    /// Wait for `outside`, keeping the turn only while the request's allowance lasts (so a
    /// caller's burst of fast calls reaches the upstream a few at a time too, rather than all at
    /// once ahead of everyone else's); past it, without the turn, taken back before going on.
    /// The allowance is the request's, not each wait's: an upstream chattering every few
    /// milliseconds cannot keep a turn through a whole call.
    pub(crate) async fn away<T>(&self, outside: impl Future<Output = T>) -> T {
        let Some(held) = &self.held else {
            return outside.await;
        };
        let mut outside = std::pin::pin!(outside);
        let allowance = self.state().allowance;
        if !allowance.is_zero() {
            let started = tokio::time::Instant::now();
            let kept = tokio::time::timeout(allowance, &mut outside).await;
            let mut state = self.state();
            state.allowance = state.allowance.saturating_sub(started.elapsed());
            if let Ok(value) = kept {
                return value;
            }
        }
        {
            let mut state = self.state();
            state.away += 1;
            drop(state.permit.take());
        }
        let value = outside.await;
        // Waits of one request may overlap: the last to end takes the turn back, and only one
        // ever waits for it (two would wait on each other with one turn).
        let returning = {
            let mut state = self.state();
            state.away -= 1;
            let last = state.away == 0 && state.permit.is_none() && !state.returning;
            state.returning |= last;
            last
        };
        if returning {
            let permit = held.line.clone().acquire_owned().await.ok();
            let mut state = self.state();
            state.returning = false;
            if state.away == 0 && state.permit.is_none() {
                state.permit = permit;
            }
        }
        value
    }

    /// Give the turn back for good (the request waits on nothing the caller's others need).
    pub(crate) fn give_back(&self) {
        let mut state = self.state();
        drop(state.permit.take());
        state.allowance = Duration::ZERO;
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn holds(&self) -> bool {
        self.state().permit.is_some()
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        drop(self.state().permit.take());
        if let Some(Held {
            turns,
            caller,
            line,
        }) = self.held.take()
        {
            let mut lines = turns.lines.lock().unwrap_or_else(PoisonError::into_inner);
            // Every other handle on the line is made and let go under this lock: two (the
            // table's and this one) means nobody else holds or waits for a turn.
            if Arc::strong_count(&line) == 2 {
                lines.remove(&caller);
            }
            drop(line);
            drop(lines);
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
        assert!(working.holds(), "the turn was taken back");
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

    // Review: the allowance is the request's: an upstream sending progress every few
    // milliseconds used to keep a turn through a whole call.
    #[tokio::test]
    async fn many_short_waits_use_up_one_allowance() {
        let turns = Turns::new(1);
        let a = caller("a");
        let working = turns.take(Some(&a)).await;
        for _ in 0..4 {
            working
                .away(tokio::time::sleep(Duration::from_millis(4)))
                .await;
        }
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let away = working.away(async {
            let _ = released.await;
        });
        let next = async {
            let turn = tokio::time::timeout(Duration::from_millis(5), turns.take(Some(&a))).await;
            let _ = release.send(());
            turn.is_ok()
        };
        let ((), next) = tokio::join!(away, next);
        assert!(next, "the fifth wait gives the turn back at once");
    }

    // Review: two waits of one request ending together must not both wait for the one turn.
    #[tokio::test]
    async fn overlapping_waits_of_one_request_take_the_turn_back_once() {
        let turns = Turns::new(1);
        let a = caller("a");
        let working = turns.take(Some(&a)).await;
        let pause = || tokio::time::sleep(Duration::from_millis(30));
        tokio::time::timeout(Duration::from_secs(5), async {
            tokio::join!(working.away(pause()), working.away(pause()))
        })
        .await
        .expect("no wait on itself");
        assert!(working.holds(), "the turn was taken back");
        let next = tokio::time::timeout(Duration::from_millis(50), turns.take(Some(&a))).await;
        assert!(
            next.is_err(),
            "and only one turn: the caller's next request waits"
        );
    }
}
