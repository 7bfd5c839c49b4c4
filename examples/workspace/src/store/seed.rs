//! The sample data of DESIGN.md §5: two tenants, each with a few of everything. Owners are the
//! subjects of the demo's sample identities (`user-42`, `editor-a`, `hr-a`, ...).

use rusqlite::{Transaction, params};

const POLICIES: &[[&str; 6]] = &[
    // tenant, id, title, body, classification, owner
    [
        "tenant-a",
        "POL-A1",
        "Annual leave",
        "Employees get 25 days of annual leave; request leave two weeks ahead.",
        "internal",
        "editor-a",
    ],
    [
        "tenant-a",
        "POL-A2",
        "Salary bands",
        "Salary bands for 2026 and the rules for moving between them.",
        "confidential",
        "hr-a",
    ],
    [
        "tenant-a",
        "POL-A3",
        "Remote work",
        "Remote work is allowed up to three days a week; core hours are 10:00 to 15:00.",
        "internal",
        "editor-a",
    ],
    [
        "tenant-b",
        "POL-B1",
        "Annual leave",
        "Employees get 30 days of annual leave; carry-over is capped at five days.",
        "internal",
        "editor-b",
    ],
    [
        "tenant-b",
        "POL-B2",
        "Disciplinary procedure",
        "How misconduct is investigated and who decides on sanctions.",
        "confidential",
        "editor-b",
    ],
];

const TICKETS: &[[&str; 5]] = &[
    // tenant, id, title, status, owner
    [
        "tenant-a",
        "TCK-A1",
        "Laptop replacement",
        "open",
        "user-42",
    ],
    ["tenant-a", "TCK-A2", "VPN access", "closed", "editor-a"],
    ["tenant-b", "TCK-B1", "Printer jam", "open", "editor-b"],
];

const RECORDS: &[[&str; 3]] = &[
    // tenant, id, kind
    ["tenant-a", "REC-A1", "invoice"],
    ["tenant-a", "REC-A2", "contract"],
    ["tenant-b", "REC-B1", "invoice"],
];

const HR_REPORTS: &[[&str; 4]] = &[
    // tenant, id, title, body
    [
        "tenant-a",
        "HR-A1",
        "Performance review: user-42",
        "Meets expectations; promotion to be discussed next cycle.",
    ],
    [
        "tenant-a",
        "HR-A2",
        "Exit interview summary",
        "Two leavers cited workload; no complaints of misconduct.",
    ],
    [
        "tenant-b",
        "HR-B1",
        "Performance review: editor-b",
        "Exceeds expectations.",
    ],
];

/// Insert the sample rows into freshly created tables.
pub(super) fn insert(transaction: &Transaction<'_>) -> rusqlite::Result<()> {
    for [tenant, id, title, body, classification, owner] in POLICIES {
        transaction.execute(
            "INSERT INTO policies (tenant, id, title, body, classification, owner) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![tenant, id, title, body, classification, owner],
        )?;
    }
    for [tenant, id, title, status, owner] in TICKETS {
        transaction.execute(
            "INSERT INTO tickets (tenant, id, title, status, owner) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![tenant, id, title, status, owner],
        )?;
    }
    for [tenant, id, kind] in RECORDS {
        transaction.execute(
            "INSERT INTO records (tenant, id, kind) VALUES (?1, ?2, ?3)",
            params![tenant, id, kind],
        )?;
    }
    for [tenant, id, title, body] in HR_REPORTS {
        transaction.execute(
            "INSERT INTO hr_reports (tenant, id, title, body) VALUES (?1, ?2, ?3, ?4)",
            params![tenant, id, title, body],
        )?;
    }
    Ok(())
}
