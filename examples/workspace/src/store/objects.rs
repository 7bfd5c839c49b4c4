//! Tickets, records, access grants, the outbox, and object descriptions for the gateway's
//! attribute resolver.

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use super::{Store, StoreError, unix_now};
use crate::identity::Caller;

/// A ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ticket {
    /// Its id, unique within its tenant.
    pub id: String,
    /// The tenant it belongs to.
    pub tenant: String,
    /// Its title.
    pub title: String,
    /// `open` or `closed`.
    pub status: String,
    /// The subject that opened it.
    pub owner: String,
}

/// The kinds of object `describe_object` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A policy document (`policy://{tenant}/{id}`).
    Policy,
    /// A ticket.
    Ticket,
    /// A record.
    Record,
    /// An HR report (`hr-report://{tenant}/{id}`).
    HrReport,
}

impl ObjectKind {
    /// The kind named `name` (`policy`, `ticket`, `record`, `hr-report`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "policy" => Some(Self::Policy),
            "ticket" => Some(Self::Ticket),
            "record" => Some(Self::Record),
            "hr-report" => Some(Self::HrReport),
            _ => None,
        }
    }
}

/// What the gateway's attribute resolver learns about an object: the attributes its policies
/// test. An object outside the caller's tenant is described exactly as a missing one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Description {
    /// Whether the object exists in the caller's tenant.
    pub exists: bool,
    /// Its tenant (always the caller's, when it exists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The subject that owns it, for kinds that have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// `internal` or `confidential`, for kinds that are classified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classification: Option<String>,
}

impl Store {
    /// Open a ticket titled `title` in the caller's tenant, owned by the caller.
    pub fn create_ticket(&self, caller: &Caller, title: &str) -> Result<Ticket, StoreError> {
        let connection = self.connection();
        // Tickets are never deleted, so one more than the tenant's count is a fresh id; it is
        // per tenant so that ids reveal nothing about other tenants' activity.
        let mut statement = connection.prepare_cached(
            "INSERT INTO tickets (tenant, id, title, status, owner) \
             SELECT ?1, 'TCK-' || (COUNT(*) + 1), ?2, 'open', ?3 FROM tickets WHERE tenant = ?1 \
             RETURNING id, tenant, title, status, owner",
        )?;
        Ok(statement.query_row(
            params![caller.tenant(), title, caller.subject()],
            ticket_row,
        )?)
    }

    /// Close ticket `id`; `None` when the caller's tenant has no such ticket.
    pub fn close_ticket(&self, caller: &Caller, id: &str) -> Result<Option<Ticket>, StoreError> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached(
            "UPDATE tickets SET status = 'closed' WHERE tenant = ?1 AND id = ?2 \
             RETURNING id, tenant, title, status, owner",
        )?;
        Ok(statement
            .query_row(params![caller.tenant(), id], ticket_row)
            .optional()?)
    }

    /// Delete record `id`; whether the caller's tenant had it.
    pub fn delete_record(&self, caller: &Caller, id: &str) -> Result<bool, StoreError> {
        let deleted = self.connection().execute(
            "DELETE FROM records WHERE tenant = ?1 AND id = ?2",
            params![caller.tenant(), id],
        )?;
        Ok(deleted > 0)
    }

    /// Record that the caller granted `role` to `subject` in its tenant. Nothing else happens:
    /// this backend has no accounts to change.
    pub fn grant_access(
        &self,
        caller: &Caller,
        subject: &str,
        role: &str,
    ) -> Result<(), StoreError> {
        self.connection().execute(
            "INSERT INTO grants (tenant, subject, role, granted_by, granted_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![caller.tenant(), subject, role, caller.subject(), unix_now()],
        )?;
        Ok(())
    }

    /// Queue a message from the caller in its tenant's outbox; nothing is sent anywhere.
    pub fn send_email(
        &self,
        caller: &Caller,
        to: &str,
        subject: &str,
        body: &str,
    ) -> Result<(), StoreError> {
        self.connection().execute(
            "INSERT INTO outbox (tenant, sender, recipient, subject, body, queued_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                caller.tenant(),
                caller.subject(),
                to,
                subject,
                body,
                unix_now()
            ],
        )?;
        Ok(())
    }

    /// The resolver's view of object `id` of `kind`, within the caller's tenant.
    ///
    /// Confidential objects of the caller's tenant are described whatever the caller's roles:
    /// the gateway needs their classification to decide. The gateway must therefore not offer
    /// `describe_object` to its own callers.
    pub fn describe(
        &self,
        caller: &Caller,
        kind: ObjectKind,
        id: &str,
    ) -> Result<Description, StoreError> {
        let sql = match kind {
            ObjectKind::Policy => {
                "SELECT tenant, owner, classification FROM policies WHERE tenant = ?1 AND id = ?2"
            }
            ObjectKind::Ticket => {
                "SELECT tenant, owner, NULL FROM tickets WHERE tenant = ?1 AND id = ?2"
            }
            ObjectKind::Record => {
                "SELECT tenant, NULL, NULL FROM records WHERE tenant = ?1 AND id = ?2"
            }
            ObjectKind::HrReport => {
                "SELECT tenant, NULL, 'confidential' FROM hr_reports WHERE tenant = ?1 AND id = ?2"
            }
        };
        let connection = self.connection();
        let mut statement = connection.prepare_cached(sql)?;
        let found = statement
            .query_row(params![caller.tenant(), id], |row| {
                Ok(Description {
                    exists: true,
                    tenant: row.get(0)?,
                    owner: row.get(1)?,
                    classification: row.get(2)?,
                })
            })
            .optional()?;
        Ok(found.unwrap_or_default())
    }
}

fn ticket_row(row: &Row<'_>) -> rusqlite::Result<Ticket> {
    Ok(Ticket {
        id: row.get(0)?,
        tenant: row.get(1)?,
        title: row.get(2)?,
        status: row.get(3)?,
        owner: row.get(4)?,
    })
}
