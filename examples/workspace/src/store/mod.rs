//! The data layer: SQLite, where every statement is constrained to the caller's tenant.
//!
//! Every operation takes a [`Caller`], the proof that an identity assertion verified, and binds
//! `caller.tenant()` into its `WHERE tenant = ?` clause; rows of other tenants are never read and
//! then filtered out. Confidentiality is decided in SQL the same way. So the backend keeps its
//! tenants apart even if the gateway in front of it were misconfigured.

mod objects;
mod policies;
mod seed;

use std::{
    path::Path,
    sync::{Mutex, MutexGuard, PoisonError},
};

use rusqlite::Connection;

use crate::identity::Caller;

pub use objects::{Description, ObjectKind, Ticket};
pub use policies::{HrReport, Policy};

/// The role that may see confidential documents and HR reports.
pub const HR_ROLE: &str = "hr";

/// Why the data layer failed: a malfunction, never a denial.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused or failed a statement.
    #[error("database error")]
    Sqlite(#[from] rusqlite::Error),
}

/// The backend's database.
pub struct Store {
    // One connection: statements are tiny and local, so serialising them costs nothing worth a
    // pool, and a single writer keeps SQLite free of busy errors.
    connection: Mutex<Connection>,
}

impl Store {
    /// Open the database at `path` (`:memory:` for a private in-memory one), creating its tables
    /// and seeding the two sample tenants when it is new.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut connection = if path.as_os_str() == ":memory:" {
            Connection::open_in_memory()?
        } else {
            Connection::open(path)?
        };
        let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version == 0 {
            let transaction = connection.transaction()?;
            transaction.execute_batch(SCHEMA)?;
            seed::insert(&transaction)?;
            transaction.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            transaction.commit()?;
        }
        Ok(Self {
            connection: Mutex::new(connection),
        })
    }

    fn connection(&self) -> MutexGuard<'_, Connection> {
        // No transaction outlives a call and SQLite rolls back a failed statement, so a panic
        // while the lock was held leaves nothing half-applied: the connection stays usable.
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// Whether `caller` may see confidential rows, as an SQL parameter.
fn sees_confidential(caller: &Caller) -> bool {
    caller.has_role(HR_ROLE)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

const SCHEMA_VERSION: i64 = 1;

// Every table is keyed by (tenant, id): an id means nothing outside its tenant, so two tenants
// may hold the same id and no lookup can reach across.
const SCHEMA: &str = "
CREATE TABLE policies (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    classification TEXT NOT NULL CHECK (classification IN ('internal', 'confidential')),
    owner TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE tickets (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    title TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    owner TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE records (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    kind TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE hr_reports (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE grants (
    seq INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    subject TEXT NOT NULL,
    role TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    granted_at INTEGER NOT NULL
);
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    queued_at INTEGER NOT NULL
);
";
