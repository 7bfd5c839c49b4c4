//! State: [`Shared`] by every session of one process, and [`Session`] for one client session.
//!
//! Over HTTP the service factory builds one handler per legacy session and one per stateless
//! request, so anything two requests must both see (a list change announced on one request and
//! delivered on another's `subscriptions/listen` stream) lives in [`Shared`].
#![expect(
    deprecated,
    reason = "logging/setLevel is SEP-2577-deprecated but still in the suite"
)]

use std::{
    collections::{BTreeSet, hash_map::RandomState},
    hash::{BuildHasher as _, Hasher as _},
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use rmcp::{
    ErrorData,
    model::{LoggingLevel, RequestStateCodec, RequestStateError, SealOptions},
    task_manager::TaskManager,
};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// How long a sealed `requestState` stays valid; a conformance round trip takes milliseconds.
const STATE_TTL: Duration = Duration::from_secs(600);

/// Pending change announcements per subscriber before the slowest one starts missing some.
const CHANGE_BACKLOG: usize = 64;

/// A list whose contents a client may be told changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListChange {
    /// `notifications/tools/list_changed`.
    Tools,
    /// `notifications/prompts/list_changed`.
    Prompts,
}

/// Process-wide state, shared by every session and stateless request.
pub(crate) struct Shared {
    changes: broadcast::Sender<ListChange>,
    seal: StateSeal,
    /// Tasks outlive the request that created them; `tasks/get` may come from anywhere.
    tasks: TaskManager,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("seal", &self.seal)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn new() -> Result<Self, RequestStateError> {
        let (changes, _) = broadcast::channel(CHANGE_BACKLOG);
        Ok(Self {
            changes,
            seal: StateSeal::new()?,
            tasks: TaskManager::new(),
        })
    }

    /// Tell every open `subscriptions/listen` stream that `change` happened.
    pub(crate) fn announce(&self, change: ListChange) {
        // An error only means nobody is listening right now, which is fine.
        let _ = self.changes.send(change);
    }

    /// Receive the changes announced from now on.
    pub(crate) fn watch(&self) -> broadcast::Receiver<ListChange> {
        self.changes.subscribe()
    }

    pub(crate) fn seal(&self) -> &StateSeal {
        &self.seal
    }

    pub(crate) fn tasks(&self) -> &TaskManager {
        &self.tasks
    }
}

/// State of one client session (one stdio connection, one legacy HTTP session, or one stateless
/// request, where it lives only as long as the request).
#[derive(Debug, Default)]
pub(crate) struct Session {
    log_level: Mutex<Option<LoggingLevel>>,
    subscriptions: Mutex<BTreeSet<String>>,
}

impl Session {
    /// The level set by `logging/setLevel`, if the client sent one.
    pub(crate) fn log_level(&self) -> Option<LoggingLevel> {
        *lock(&self.log_level)
    }

    pub(crate) fn set_log_level(&self, level: LoggingLevel) {
        *lock(&self.log_level) = Some(level);
    }

    pub(crate) fn subscribe(&self, uri: String) {
        lock(&self.subscriptions).insert(uri);
    }

    pub(crate) fn unsubscribe(&self, uri: &str) {
        lock(&self.subscriptions).remove(uri);
    }
}

/// Lock a mutex whose data stays consistent even if a holder panicked (plain value swaps).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a sealed `requestState` carries: where the round trip is, and what it learned so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RoundState {
    /// Rounds completed before the one this state was issued for.
    pub(crate) round: u32,
    /// Answers carried forward from earlier rounds, so the server itself keeps nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) carried: Vec<String>,
}

/// Integrity protection for `requestState`, which the client echoes back and could forge.
pub(crate) struct StateSeal {
    codec: RequestStateCodec,
}

impl std::fmt::Debug for StateSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateSeal { .. }")
    }
}

impl StateSeal {
    fn new() -> Result<Self, RequestStateError> {
        Ok(Self {
            codec: RequestStateCodec::try_new(process_key())?,
        })
    }

    /// Seal `state` for `scope` (a tool or prompt name), so it cannot be replayed elsewhere.
    pub(crate) fn seal(&self, scope: &str, state: &RoundState) -> Result<String, ErrorData> {
        let options = SealOptions::new()
            .associated_data(scope.as_bytes())
            .ttl(STATE_TTL);
        self.codec
            .seal_json_with(state, &options)
            .map_err(|error| ErrorData::internal_error(format!("cannot seal state: {error}"), None))
    }

    /// Open a state sealed for `scope`; a forged, tampered, expired or misplaced one is an
    /// invalid-params error.
    pub(crate) fn open(&self, scope: &str, sealed: &str) -> Result<RoundState, ErrorData> {
        self.codec
            .open_json_with(sealed, scope.as_bytes())
            .map_err(|error| {
                // One fixed message for every failure: which check failed is a hint to a forger.
                tracing::debug!(%error, scope, "rejected requestState");
                ErrorData::invalid_params("requestState failed integrity verification", None)
            })
    }
}

/// A per-process HMAC key: state sealed by one fixture process is worthless to any other.
///
/// The standard library's `RandomState` is seeded from the OS random source, which is all a test
/// fixture needs without adding a random-number crate.
fn process_key() -> Vec<u8> {
    let seed = RandomState::new();
    (0u64..4)
        .flat_map(|index| {
            let mut hasher = seed.build_hasher();
            hasher.write_u64(index);
            hasher.finish().to_le_bytes()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_state_opens_only_in_its_scope() {
        let seal = StateSeal::new().unwrap();
        let state = RoundState {
            round: 1,
            carried: vec!["Alice".into()],
        };
        let sealed = seal.seal("tool_a", &state).unwrap();
        assert_eq!(seal.open("tool_a", &sealed).unwrap(), state);
        assert!(seal.open("tool_b", &sealed).is_err());
    }

    #[test]
    fn tampered_state_is_rejected() {
        let seal = StateSeal::new().unwrap();
        let sealed = seal.seal("tool", &RoundState::default()).unwrap();
        assert!(seal.open("tool", &format!("{sealed}-TAMPERED")).is_err());
    }

    #[test]
    fn process_key_is_long_enough_for_the_codec() {
        assert!(process_key().len() >= RequestStateCodec::MIN_KEY_LENGTH);
    }
}
