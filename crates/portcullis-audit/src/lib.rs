//! The audit trail: what happened, who did it, and why it was allowed or denied.
//!
//! One versioned [`AuditRecord`] per decision (and per request refused before a decision, such
//! as a 401), chained by hash: each stored record carries the SHA-256 of the one before it, so
//! [`Store::verify`] finds the first record that was altered, removed or inserted. Records go to
//! one or more [`Sink`]s, each behind its own bounded queue and writer thread: SQLite (WAL,
//! `synchronous = FULL`, group commit), JSON lines (a rotated file, or stdout), and PostgreSQL
//! (several gateway instances sharing one trail). A state-changing call waits until its record
//! is durable ([`Durability::Durable`]); if a sink cannot write, the caller refuses the call.
//! Never a token, a secret or a raw header.

mod chain;
mod lines;
mod pg;
pub mod pg_tls;
mod queue;
mod read;
mod record;
mod sink;
mod sqlite;

pub use chain::VerifyReport;
pub use lines::{LineTarget, verify_lines};
pub use read::{Filter, Store};
pub use record::{
    AuditRecord, Decision as AuditDecision, arguments_digest, now_rfc3339, rfc3339_from_millis,
    rfc3339_millis,
};
pub use sink::{AuditError, Durability, Sink, Stats};
pub use sqlite::{query, verify};

/// Open the SQLite trail at `path` (created when absent).
pub fn sqlite(path: &std::path::Path) -> Result<Sink, AuditError> {
    sqlite::open(path)
}

/// Open a JSON lines sink, continuing the chain of a file that already has lines.
pub fn lines(target: LineTarget) -> Result<Sink, AuditError> {
    lines::open(target)
}

/// Open the PostgreSQL trail at `url` (its table created when absent).
pub fn postgres(url: &str) -> Result<Sink, AuditError> {
    pg::open(url)
}
