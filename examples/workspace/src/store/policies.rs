//! Policy documents and HR reports: the readable, classified content.

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use super::{Store, StoreError, sees_confidential};
use crate::identity::Caller;

/// A policy document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Its id, unique within its tenant.
    pub id: String,
    /// The tenant it belongs to.
    pub tenant: String,
    /// Its title.
    pub title: String,
    /// Its text.
    pub body: String,
    /// `internal` or `confidential`.
    pub classification: String,
    /// The subject responsible for it.
    pub owner: String,
}

/// An HR report; always confidential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HrReport {
    /// Its id, unique within its tenant.
    pub id: String,
    /// The tenant it belongs to.
    pub tenant: String,
    /// Its title.
    pub title: String,
    /// Its text.
    pub body: String,
}

// The visibility rule, in one place: the caller's tenant, and confidential rows only for `hr`.
// ?1 is the caller's tenant, ?2 whether it sees confidential rows.
const VISIBLE_POLICY: &str = "tenant = ?1 AND (classification = 'internal' OR ?2)";

impl Store {
    /// The policies `caller` may see whose title or text contains `query` (case-insensitively;
    /// an empty query matches all), by id.
    pub fn search_policies(&self, caller: &Caller, query: &str) -> Result<Vec<Policy>, StoreError> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT id, tenant, title, body, classification, owner FROM policies \
             WHERE {VISIBLE_POLICY} AND (instr(lower(title), lower(?3)) > 0 \
             OR instr(lower(body), lower(?3)) > 0) ORDER BY id"
        ))?;
        let rows = statement.query_map(
            params![caller.tenant(), sees_confidential(caller), query],
            policy_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Policy `id`, if `caller` may see it. One not visible to `caller` is `None`, exactly as a
    /// missing one is.
    pub fn policy(&self, caller: &Caller, id: &str) -> Result<Option<Policy>, StoreError> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT id, tenant, title, body, classification, owner FROM policies \
             WHERE {VISIBLE_POLICY} AND id = ?3"
        ))?;
        Ok(statement
            .query_row(
                params![caller.tenant(), sees_confidential(caller), id],
                policy_row,
            )
            .optional()?)
    }

    /// Replace the text of policy `id`; `None` when `caller` may not see it (or it is missing).
    pub fn update_policy(
        &self,
        caller: &Caller,
        id: &str,
        body: &str,
    ) -> Result<Option<Policy>, StoreError> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached(&format!(
            "UPDATE policies SET body = ?4 WHERE {VISIBLE_POLICY} AND id = ?3 \
             RETURNING id, tenant, title, body, classification, owner"
        ))?;
        Ok(statement
            .query_row(
                params![caller.tenant(), sees_confidential(caller), id, body],
                policy_row,
            )
            .optional()?)
    }

    /// The HR reports `caller` may see: its tenant's, and only with the `hr` role.
    pub fn hr_reports(&self, caller: &Caller) -> Result<Vec<HrReport>, StoreError> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached(
            "SELECT id, tenant, title, body FROM hr_reports WHERE tenant = ?1 AND ?2 ORDER BY id",
        )?;
        let rows = statement.query_map(
            params![caller.tenant(), sees_confidential(caller)],
            report_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// HR report `id`, if `caller` may see it; otherwise `None`, as for a missing one.
    pub fn hr_report(&self, caller: &Caller, id: &str) -> Result<Option<HrReport>, StoreError> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached(
            "SELECT id, tenant, title, body FROM hr_reports WHERE tenant = ?1 AND ?2 AND id = ?3",
        )?;
        Ok(statement
            .query_row(
                params![caller.tenant(), sees_confidential(caller), id],
                report_row,
            )
            .optional()?)
    }
}

fn policy_row(row: &Row<'_>) -> rusqlite::Result<Policy> {
    Ok(Policy {
        id: row.get(0)?,
        tenant: row.get(1)?,
        title: row.get(2)?,
        body: row.get(3)?,
        classification: row.get(4)?,
        owner: row.get(5)?,
    })
}

fn report_row(row: &Row<'_>) -> rusqlite::Result<HrReport> {
    Ok(HrReport {
        id: row.get(0)?,
        tenant: row.get(1)?,
        title: row.get(2)?,
        body: row.get(3)?,
    })
}
