//! The SQLite trail: one writer thread, group commit, and the hash chain.
//!
//! Every record is a row `(seq, record, prev_hash, hash)` where `hash` is the SHA-256 of
//! `prev_hash` followed by the record's canonical JSON, and the first `prev_hash` is 64 zeros.
//! The writer takes whatever is queued (up to a batch) into one transaction and one fsync
//! (`synchronous = FULL`), then tells each waiting caller.

use std::path::Path;

use crate::{
    AuditError, AuditRecord, Filter, Sink, VerifyReport,
    chain::{GENESIS, Walk, chain},
    queue::Queue,
};
use rusqlite::{Connection, OpenFlags, params};

/// Open (or create) the SQLite trail at `path` and start its writer.
pub(crate) fn open(path: &Path) -> Result<Sink, AuditError> {
    let open_error = |error: rusqlite::Error| AuditError::open(path.display(), error);
    // Created private to the gateway's user: records name callers and what they did. SQLite
    // gives the -wal and -shm files the database's own permissions.
    let mut create = std::fs::OpenOptions::new();
    create.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut create, 0o600);
    create
        .open(path)
        .map_err(|error| AuditError::open(path.display(), error))?;
    let mut connection = Connection::open(path).map_err(open_error)?;
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
    let mut last: String = connection
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
    let queue = Queue::start("audit-sqlite", move |records| {
        write(&mut connection, records, &mut last).map_err(|error| error.to_string())
    })
    .map_err(|error| AuditError::open(path.display(), error))?;
    Ok(Sink::new("sqlite", queue))
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

fn read_only(path: &Path) -> Result<Connection, AuditError> {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|error| AuditError::open(path.display(), error))
}

/// Check the chain of the trail at `path`, record by record.
pub fn verify(path: &Path) -> Result<VerifyReport, AuditError> {
    let connection = read_only(path)?;
    let read = |error: rusqlite::Error| AuditError::open(path.display(), error);
    let mut rows = connection
        .prepare("SELECT seq, record, prev_hash, hash FROM audit ORDER BY seq")
        .map_err(read)?;
    let mut rows = rows.query([]).map_err(read)?;
    let mut walk = Walk::from_genesis();
    while let Some(row) = rows.next().map_err(read)? {
        let seq: i64 = row.get(0).map_err(read)?;
        let record: String = row.get(1).map_err(read)?;
        let prev_hash: String = row.get(2).map_err(read)?;
        let hash: String = row.get(3).map_err(read)?;
        if let Err(broken) = walk.step(seq, &record, &prev_hash, &hash) {
            return Ok(broken);
        }
    }
    Ok(walk.finish())
}

/// The records of the trail at `path` that `filter` matches, in order, with their sequence
/// numbers.
pub fn query(path: &Path, filter: &Filter) -> Result<Vec<(i64, AuditRecord)>, AuditError> {
    let connection = read_only(path)?;
    let read = |error: rusqlite::Error| AuditError::open(path.display(), error);
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
