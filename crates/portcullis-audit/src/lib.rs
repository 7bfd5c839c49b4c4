//! The audit trail: what happened, who did it, and why it was allowed or denied.
//!
//! One versioned [`AuditRecord`] per decision (and per request refused before a decision, such
//! as a 401), chained by hash: each stored record carries the SHA-256 of the one before it, so
//! [`verify`] finds the first record that was altered, removed or inserted. Records go to
//! SQLite ([`SqliteSink`]: WAL, `synchronous = FULL`, one writer thread committing in groups).
//! A state-changing call waits until its record is durable ([`Durability::Durable`]); if the
//! sink cannot write, the caller refuses the call. Never a token, a secret or a raw header.

mod lines;
mod queue;
mod record;
mod sqlite;

pub use lines::{LineSink, LineTarget, verify_lines};
pub use record::{AuditRecord, Decision as AuditDecision, arguments_digest};
pub use sqlite::{AuditError, Durability, Filter, SqliteSink, Stats, VerifyReport, query, verify};
