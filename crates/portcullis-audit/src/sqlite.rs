//! The SQLite trail: one writer thread, group commit, and the hash chain.
//!
//! Every record is a row `(seq, record, prev_hash, hash)` where `hash` is the SHA-256 of
//! `prev_hash` followed by the record's canonical JSON, and the first `prev_hash` is 64 zeros.
//! The writer takes whatever is queued (up to a batch) into one transaction and one fsync
//! (`synchronous = FULL`), then tells each waiting caller. The queue is bounded: when it is full,
//! callers wait (backpressure), nothing is dropped.

use std::path::{Path, PathBuf};

use crate::{
    queue::Queue,
    record::{AuditRecord, hex},
};
use rusqlite::{Connection, OpenFlags, params};

pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How long a caller waits for its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Until it is committed to disk: for state-changing calls, before they are forwarded.
    Durable,
    /// Until it is queued (waiting only while the queue is full).
    Queued,
}

/// Why the trail cannot be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// The database cannot be opened or set up.
    #[error("audit trail {}: {reason}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A write failed (disk full, read-only file, ...).
    #[error("audit write failed: {0}")]
    Write(String),
    /// The writer is gone.
    #[error("the audit writer has stopped")]
    Closed,
}

/// A handle on the trail; clones share one writer.
#[derive(Clone)]
pub struct SqliteSink {
    queue: Queue,
    stats: std::sync::Arc<Stats>,
}

/// What the writer has done, for metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Batches committed.
    pub commits: std::sync::atomic::AtomicU64,
    /// Records committed.
    pub records: std::sync::atomic::AtomicU64,
    /// Total time spent committing, in microseconds.
    pub commit_micros: std::sync::atomic::AtomicU64,
    /// Batches that failed.
    pub failures: std::sync::atomic::AtomicU64,
}

impl SqliteSink {
    /// Open (or create) the trail at `path` and start its writer.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let open_error = |error: rusqlite::Error| AuditError::Open {
            path: path.to_owned(),
            reason: error.to_string(),
        };
        let connection = Connection::open(path).map_err(open_error)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 CREATE TABLE IF NOT EXISTS audit (
                     seq INTEGER PRIMARY KEY,
                     record TEXT NOT NULL,
                     prev_hash TEXT NOT NULL,
                     hash TEXT NOT NULL
                 );",
            )
            .map_err(open_error)?;
        let last: String = connection
            .query_row(
                "SELECT hash FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |row| row.get(0),
            )
            .or_else(|error| match error {
                rusqlite::Error::QueryReturnedNoRows => Ok(GENESIS.to_owned()),
                other => Err(other),
            })
            .map_err(open_error)?;
        let stats = std::sync::Arc::new(Stats::default());
        let writer_stats = stats.clone();
        let mut connection = connection;
        let mut last = last;
        let queue = Queue::start("audit-writer", move |records| {
            let started = std::time::Instant::now();
            let outcome =
                write(&mut connection, records, &mut last).map_err(|error| error.to_string());
            writer_stats.count(records.len(), started.elapsed(), outcome.is_ok());
            outcome
        })
        .map_err(|error| AuditError::Open {
            path: path.to_owned(),
            reason: error.to_string(),
        })?;
        Ok(Self { queue, stats })
    }

    /// Records waiting to be written.
    pub fn queued(&self) -> usize {
        self.queue.queued()
    }

    /// What the writer has done.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Record `record`; with [`Durability::Durable`], return only once it is on disk.
    pub async fn record(
        &self,
        record: AuditRecord,
        durability: Durability,
    ) -> Result<(), AuditError> {
        self.queue.record(record, durability).await
    }
}

impl Stats {
    fn count(&self, records: usize, took: std::time::Duration, committed: bool) {
        use std::sync::atomic::Ordering::Relaxed;
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

fn write(
    connection: &mut Connection,
    records: &[&AuditRecord],
    last: &mut String,
) -> rusqlite::Result<()> {
    let transaction = connection.transaction()?;
    let mut previous = last.clone();
    {
        let mut insert = transaction
            .prepare_cached("INSERT INTO audit (record, prev_hash, hash) VALUES (?1, ?2, ?3)")?;
        for record in records {
            let record = record.canonical();
            let hash = chain(&previous, &record);
            insert.execute(params![record, previous, hash])?;
            previous = hash;
        }
    }
    transaction.commit()?;
    *last = previous;
    Ok(())
}

pub(crate) fn chain(previous: &str, record: &str) -> String {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    context.update(previous.as_bytes());
    context.update(record.as_bytes());
    hex(context.finish().as_ref())
}

/// A whole trail checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyReport {
    /// Every record links to the one before it.
    Intact {
        /// How many records.
        records: u64,
    },
    /// The first record that does not.
    Broken {
        /// Its sequence number.
        seq: i64,
        /// What is wrong.
        reason: String,
    },
}

fn read_only(path: &Path) -> Result<Connection, AuditError> {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|error| {
        AuditError::Open {
            path: path.to_owned(),
            reason: error.to_string(),
        }
    })
}

/// Check the chain of the trail at `path`, record by record.
pub fn verify(path: &Path) -> Result<VerifyReport, AuditError> {
    let connection = read_only(path)?;
    let read = |error: rusqlite::Error| AuditError::Open {
        path: path.to_owned(),
        reason: error.to_string(),
    };
    let mut rows = connection
        .prepare("SELECT seq, record, prev_hash, hash FROM audit ORDER BY seq")
        .map_err(read)?;
    let mut rows = rows.query([]).map_err(read)?;
    let (mut previous, mut expected_seq, mut count) = (GENESIS.to_owned(), None::<i64>, 0u64);
    while let Some(row) = rows.next().map_err(read)? {
        let seq: i64 = row.get(0).map_err(read)?;
        let record: String = row.get(1).map_err(read)?;
        let prev_hash: String = row.get(2).map_err(read)?;
        let hash: String = row.get(3).map_err(read)?;
        let broken = |reason: &str| {
            Ok(VerifyReport::Broken {
                seq,
                reason: reason.to_owned(),
            })
        };
        if expected_seq.is_some_and(|expected| expected != seq) {
            return broken("a record before it is missing");
        }
        if prev_hash != previous {
            return broken("it does not link to the record before it");
        }
        if chain(&prev_hash, &record) != hash {
            return broken("its content does not match its hash");
        }
        if serde_json::from_str::<AuditRecord>(&record).is_err() {
            return broken("it is not an audit record");
        }
        previous = hash;
        expected_seq = Some(seq + 1);
        count += 1;
    }
    Ok(VerifyReport::Intact { records: count })
}

/// Which records `query` returns; `None` matches anything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Subject.
    pub subject: Option<String>,
    /// Tenant.
    pub tenant: Option<String>,
    /// Capability.
    pub capability: Option<String>,
    /// Decision (`allow`, `deny`, ...).
    pub decision: Option<String>,
    /// Correlation id.
    pub correlation: Option<String>,
    /// Records at or after this RFC 3339 time.
    pub since: Option<String>,
    /// Records before this RFC 3339 time.
    pub until: Option<String>,
    /// Only records after this sequence number (for following a trail).
    pub after: Option<i64>,
}

impl Filter {
    fn matches(&self, record: &AuditRecord) -> bool {
        let same = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|want| have == Some(want))
        };
        same(&self.subject, record.subject.as_deref())
            && same(&self.tenant, record.tenant.as_deref())
            && same(&self.capability, record.capability.as_deref())
            && same(&self.decision, Some(record.decision.as_str()))
            && same(&self.correlation, Some(&record.correlation))
            // RFC 3339 UTC strings of one format order as their times do.
            && self.since.as_deref().is_none_or(|since| record.time.as_str() >= since)
            && self.until.as_deref().is_none_or(|until| record.time.as_str() < until)
    }
}

/// The records of the trail at `path` that `filter` matches, in order, with their sequence
/// numbers.
pub fn query(path: &Path, filter: &Filter) -> Result<Vec<(i64, AuditRecord)>, AuditError> {
    let connection = read_only(path)?;
    let read = |error: rusqlite::Error| AuditError::Open {
        path: path.to_owned(),
        reason: error.to_string(),
    };
    let mut statement = connection
        .prepare("SELECT seq, record FROM audit WHERE seq > ?1 ORDER BY seq")
        .map_err(read)?;
    let rows = statement
        .query_map([filter.after.unwrap_or(0)], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(read)?;
    let mut found = Vec::new();
    for row in rows {
        let (seq, text) = row.map_err(read)?;
        if let Ok(record) = serde_json::from_str::<AuditRecord>(&text)
            && filter.matches(&record)
        {
            found.push((seq, record));
        }
    }
    Ok(found)
}
