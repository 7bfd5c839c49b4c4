//! The hash chain every sink keeps: each stored record carries the SHA-256 of the record before
//! it, so one walk over a trail finds the first record altered, removed or inserted.

use crate::{AuditRecord, record::hex};

/// The `prev_hash` of a trail's first record.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of `record` (canonical JSON) following the record whose hash is `previous`.
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
    /// Every record kept links to the one before it, but the trail no longer begins at its
    /// first record: the ones before `first` were rotated away (or removed), and nothing here
    /// can vouch for them.
    IntactSince {
        /// The oldest record kept.
        first: i64,
        /// How many records are kept.
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

/// A walk over a trail in sequence order.
pub(crate) struct Walk {
    previous: Option<String>,
    expected: Option<i64>,
    count: u64,
    /// The first record stepped over did not begin the chain: its number.
    since: Option<i64>,
}

impl Walk {
    /// A walk from the first record ever written.
    pub(crate) fn from_genesis() -> Self {
        Self {
            previous: Some(GENESIS.to_owned()),
            expected: None,
            count: 0,
            since: None,
        }
    }

    /// A walk over a trail whose oldest records may be gone (rotated away): its first link is
    /// taken on trust.
    pub(crate) fn from_oldest_kept() -> Self {
        Self {
            previous: None,
            expected: None,
            count: 0,
            since: None,
        }
    }

    /// Check the next stored record; the first broken one ends the walk.
    pub(crate) fn step(
        &mut self,
        seq: i64,
        record: &str,
        prev_hash: &str,
        hash: &str,
    ) -> Result<(), VerifyReport> {
        let broken = |reason: &str| VerifyReport::Broken {
            seq,
            reason: reason.to_owned(),
        };
        if self.expected.is_some_and(|expected| expected != seq) {
            return Err(broken("a record before it is missing"));
        }
        if self.previous.as_deref().is_some_and(|p| p != prev_hash) {
            return Err(broken("it does not link to the record before it"));
        }
        if chain(prev_hash, record) != hash {
            return Err(broken("its content does not match its hash"));
        }
        if serde_json::from_str::<AuditRecord>(record).is_err() {
            return Err(broken("it is not an audit record"));
        }
        if self.count == 0 && prev_hash != GENESIS {
            self.since = Some(seq);
        }
        self.previous = Some(hash.to_owned());
        self.expected = Some(seq + 1);
        self.count += 1;
        Ok(())
    }

    /// The walk's verdict once every record has been stepped over.
    pub(crate) fn finish(self) -> VerifyReport {
        match self.since {
            Some(first) => VerifyReport::IntactSince {
                first,
                records: self.count,
            },
            None => VerifyReport::Intact {
                records: self.count,
            },
        }
    }
}
