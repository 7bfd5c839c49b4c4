//! A sink: one place records go, behind its own queue and writer thread.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::{AuditRecord, queue::Queue};

/// How long a caller waits for its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Until it is committed: for state-changing calls, before they are forwarded.
    Durable,
    /// Until it is queued (waiting only while the queue is full).
    Queued,
}

/// Why a trail cannot be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// The trail cannot be opened or set up.
    #[error("audit trail {trail}: {reason}")]
    Open {
        /// The file, or the database (never with its password).
        trail: String,
        /// What failed.
        reason: String,
    },
    /// A write failed (disk full, read-only file, database gone, ...).
    #[error("audit write failed: {0}")]
    Write(String),
    /// The writer is gone.
    #[error("the audit writer has stopped")]
    Closed,
}

impl AuditError {
    pub(crate) fn open(trail: impl std::fmt::Display, reason: impl std::fmt::Display) -> Self {
        Self::Open {
            trail: trail.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// What a sink's writer has done, for metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Batches committed.
    pub commits: AtomicU64,
    /// Records committed.
    pub records: AtomicU64,
    /// Total time spent committing, in microseconds.
    pub commit_micros: AtomicU64,
    /// Batches that failed.
    pub failures: AtomicU64,
    /// When the last batch failed, in seconds since the Unix epoch; 0 when it was written.
    pub failed_at: AtomicU64,
}

impl Stats {
    /// Whether the last batch failed within `recent` (a failed batch is not written again, so
    /// with no traffic nothing would clear an old failure: evidence this old no longer counts).
    pub fn failing_within(&self, recent: std::time::Duration) -> bool {
        let at = self.failed_at.load(Relaxed);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        at != 0 && now.saturating_sub(at) <= recent.as_secs()
    }

    pub(crate) fn count(&self, records: usize, took: std::time::Duration, committed: bool) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |since| since.as_secs().max(1));
        self.failed_at
            .store(if committed { 0 } else { now }, Relaxed);
        if committed {
            self.commits.fetch_add(1, Relaxed);
            self.records.fetch_add(records as u64, Relaxed);
            let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
            self.commit_micros.fetch_add(micros, Relaxed);
        } else {
            self.failures.fetch_add(1, Relaxed);
        }
    }
}

/// A handle on one sink; clones share its writer.
#[derive(Clone)]
pub struct Sink {
    kind: &'static str,
    queue: Queue,
}

impl Sink {
    pub(crate) fn new(kind: &'static str, queue: Queue) -> Self {
        Self { kind, queue }
    }

    /// `sqlite`, `jsonl`, `stdout` or `postgres`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Record `record`; with [`Durability::Durable`], return only once it is committed.
    pub async fn record(
        &self,
        record: AuditRecord,
        durability: Durability,
    ) -> Result<(), AuditError> {
        self.queue.record(record, durability).await
    }

    /// Queue `record` and go on without waiting, even for room in the queue (a full queue is
    /// waited on by a task of its own). For records nothing waits on.
    pub fn record_later(&self, record: AuditRecord) {
        self.queue.record_later(record);
    }

    /// Records waiting to be written.
    pub fn queued(&self) -> usize {
        self.queue.queued()
    }

    /// What the writer has done.
    pub fn stats(&self) -> &Stats {
        self.queue.stats()
    }
}
