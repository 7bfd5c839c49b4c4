//! What the engine remembers per principal, bounded in bytes: each principal within its own
//! allowance, all of them within a total. SECURITY: names and arguments come from callers, so
//! a caller filling its allowance starts its own memory over, and one caller alone can never
//! reach the total. Past the total (many principals at once), the heaviest of the others are
//! let go; what is lost is only time (their answers are computed again), never a decision.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard, PoisonError},
};

/// Bytes one principal's memory may hold.
pub(crate) const PRINCIPAL_BYTES: usize = 1024 * 1024;
/// Bytes all principals' memory may hold together.
pub(crate) const TOTAL_BYTES: usize = 32 * 1024 * 1024;
/// What an entry costs beside the bytes of its key (hash table slot, allocation headers).
pub(crate) const ENTRY_OVERHEAD: usize = 64;

/// Per principal (by fingerprint): its memory `T` and what it weighs.
pub(crate) struct Budget<T> {
    state: Mutex<State<T>>,
    principal_bytes: usize,
    total_bytes: usize,
}

struct State<T> {
    principals: HashMap<String, (usize, T)>,
    bytes: usize,
}

impl<T: Default> Budget<T> {
    pub(crate) fn new() -> Self {
        Self::with_bounds(PRINCIPAL_BYTES, TOTAL_BYTES)
    }

    pub(crate) fn with_bounds(principal_bytes: usize, total_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State {
                principals: HashMap::new(),
                bytes: 0,
            }),
            principal_bytes,
            total_bytes,
        }
    }

    /// Read `principal`'s memory, if it has any.
    pub(crate) fn read<R>(&self, principal: &str, read: impl FnOnce(&T) -> R) -> Option<R> {
        self.lock()
            .principals
            .get(principal)
            .map(|(_, memory)| read(memory))
    }

    /// Add to `principal`'s memory: `add` returns the bytes it added. Past the principal's
    /// allowance its memory starts over (empty); past the total, the heaviest others go.
    pub(crate) fn add(&self, principal: &str, add: impl FnOnce(&mut T) -> usize) {
        let mut state = self.lock();
        let state = &mut *state;
        let entry = match state.principals.get_mut(principal) {
            Some(entry) => entry,
            None => {
                state.bytes += principal.len() + ENTRY_OVERHEAD;
                state
                    .principals
                    .entry(principal.to_owned())
                    .or_insert((principal.len() + ENTRY_OVERHEAD, T::default()))
            }
        };
        let added = add(&mut entry.1);
        entry.0 += added;
        state.bytes += added;
        if entry.0 > self.principal_bytes {
            let freed = entry.0 - principal.len() - ENTRY_OVERHEAD;
            *entry = (principal.len() + ENTRY_OVERHEAD, T::default());
            state.bytes -= freed;
        }
        while state.bytes > self.total_bytes {
            let heaviest = state
                .principals
                .iter()
                .filter(|(name, _)| name.as_str() != principal)
                .max_by_key(|(_, (bytes, _))| *bytes)
                .map(|(name, _)| name.clone());
            let Some(heaviest) = heaviest else { break };
            if let Some((bytes, _)) = state.principals.remove(&heaviest) {
                state.bytes -= bytes;
            }
        }
    }

    /// Every principal's memory, for counting.
    pub(crate) fn fold<R>(&self, start: R, fold: impl Fn(R, &T) -> R) -> R {
        self.lock()
            .principals
            .values()
            .fold(start, |acc, (_, memory)| fold(acc, memory))
    }

    /// Bytes held in all.
    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(budget: &Budget<HashMap<String, ()>>, principal: &str, key: &str) {
        budget.add(principal, |memory| {
            memory.insert(key.to_owned(), ());
            key.len()
        });
    }

    fn has(budget: &Budget<HashMap<String, ()>>, principal: &str, key: &str) -> bool {
        budget
            .read(principal, |memory| memory.contains_key(key))
            .unwrap_or(false)
    }

    // See: issue 15. A caller whose names fill its allowance forgets its own, never another's.
    #[test]
    fn a_principal_past_its_allowance_starts_over_and_others_keep_theirs() {
        let budget = Budget::with_bounds(1000, 100_000);
        add(&budget, "victim", "tool");
        for n in 0..100 {
            add(&budget, "flooder", &format!("{n:0>100}"));
        }
        assert!(has(&budget, "victim", "tool"));
        assert!(budget.read("flooder", HashMap::len).unwrap() < 10);
        assert!(budget.bytes() < 1000 + 200 + 2 * ENTRY_OVERHEAD);
    }

    #[test]
    fn past_the_total_the_heaviest_other_principal_goes() {
        let budget = Budget::with_bounds(1000, 2000);
        add(&budget, "light", "a");
        add(&budget, "heavy", &"x".repeat(900));
        add(&budget, "middle", &"y".repeat(500));
        add(&budget, "new", &"z".repeat(500));
        assert!(budget.bytes() <= 2000);
        assert!(has(&budget, "light", "a"));
        assert!(budget.read("heavy", HashMap::len).is_none());
        assert!(has(&budget, "new", &"z".repeat(500)));
    }
}
