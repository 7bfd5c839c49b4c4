//! Reading a trail back: which stored trail, and which of its records.

use std::path::PathBuf;

use crate::{AuditError, AuditRecord, VerifyReport};

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
    pub(crate) fn matches(&self, record: &AuditRecord) -> bool {
        let same = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|want| have == Some(want))
        };
        same(&self.subject, record.subject.as_deref())
            && same(&self.tenant, record.tenant.as_deref())
            && same(&self.capability, record.capability.as_deref())
            && same(&self.decision, Some(record.decision.as_str()))
            && same(&self.correlation, Some(&record.correlation))
            // Times, not text: `…+01:00` and `…Z` of one moment are one moment. A time that does
            // not parse matches nothing.
            && self.since.as_deref().is_none_or(|since| {
                crate::rfc3339_millis(&record.time)
                    .zip(crate::rfc3339_millis(since))
                    .is_some_and(|(time, since)| time >= since)
            })
            && self.until.as_deref().is_none_or(|until| {
                crate::rfc3339_millis(&record.time)
                    .zip(crate::rfc3339_millis(until))
                    .is_some_and(|(time, until)| time < until)
            })
    }
}

/// A stored trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A JSON lines file, with its rotated files beside it.
    Lines(PathBuf),
    /// A PostgreSQL database, by connection URL.
    Postgres(String),
}

impl Store {
    /// Check the whole chain and name the first broken record.
    pub fn verify(&self) -> Result<VerifyReport, AuditError> {
        match self {
            Self::Sqlite(path) => crate::sqlite::verify(path),
            Self::Lines(path) => crate::lines::verify_lines(path),
            Self::Postgres(url) => crate::pg::verify(url),
        }
    }

    /// The records `filter` matches, in order, with their sequence numbers.
    pub fn query(&self, filter: &Filter) -> Result<Vec<(i64, AuditRecord)>, AuditError> {
        match self {
            Self::Sqlite(path) => crate::sqlite::query(path, filter),
            Self::Lines(path) => crate::lines::query_lines(path, filter),
            Self::Postgres(url) => crate::pg::query(url, filter),
        }
    }

    /// Whether there is anything to read yet (a trail not yet created is empty, not an error).
    pub fn exists(&self) -> bool {
        match self {
            Self::Sqlite(path) | Self::Lines(path) => path.exists(),
            Self::Postgres(_) => true,
        }
    }
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) | Self::Lines(path) => write!(f, "{}", path.display()),
            Self::Postgres(url) => f.write_str(&crate::pg::redacted(url)),
        }
    }
}
