//! The PostgreSQL trail, for several gateway instances sharing one trail.
//!
//! Each instance has its own writer thread. A batch is one transaction: take the trail's
//! advisory lock, read the last record's `seq` and hash, insert the batch in one multi-row
//! statement, commit. The lock makes the instances take turns, so the chain stays one line with
//! no gaps; the commit is durable (`synchronous_commit` is forced on for the session) before
//! any caller is told. A lost connection fails the batch and is reopened for the next one.

use std::time::Duration;

use postgres::{Client, Config};

use crate::{
    AuditError, AuditRecord, Filter, Sink, VerifyReport,
    chain::{GENESIS, Walk, chain},
    queue::Queue,
};

/// The advisory lock key that serialises writers of one trail ("portcull" in ASCII).
const LOCK: i64 = 0x706f_7274_6375_6c6c;
/// How long connecting, and any one statement, may take before the batch fails.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Tries to open the trail at start before giving up.
const OPEN_ATTEMPTS: u32 = 3;
/// Rows read per round trip when reading a trail back.
const PAGE: i64 = 5_000;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS portcullis_audit (
    seq BIGINT PRIMARY KEY,
    record TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
)";

/// Open the trail in the database at `url` (creating its table) and start a writer.
pub(crate) fn open(url: &str) -> Result<Sink, AuditError> {
    let config = config(url)?;
    // SECURITY: the URL as shown in errors has no password.
    let shown = redacted(url);
    // Connected and its table made on a thread of its own: a client that fails there is
    // dropped there too (dropping one on a runtime's thread would start a runtime in it).
    // A database busy at that moment (a replica restarting under load, say) is tried again a
    // few times before the gateway gives up starting.
    let client = blocking(|| {
        let mut attempt = 1;
        loop {
            let opened = config
                .0
                .connect(config.1.clone())
                .and_then(|mut client| client.batch_execute(SCHEMA).map(|()| client))
                .map_err(|error| AuditError::open(&shown, error));
            match opened {
                Err(error) if attempt < OPEN_ATTEMPTS => {
                    tracing::warn!(%error, attempt, "the audit trail's database did not open; trying again");
                    std::thread::sleep(Duration::from_secs(1));
                    attempt += 1;
                }
                opened => return opened,
            }
        }
    })?;
    let mut client = Some(client);
    let queue = Queue::start("audit-postgres", move |records| {
        let live = match client.take() {
            Some(live) if !live.is_closed() => live,
            _ => connect(&config, &shown).map_err(|error| error.to_string())?,
        };
        let mut live = live;
        let outcome = write(&mut live, records).map_err(|error| error.to_string());
        client = Some(live);
        outcome
    })
    .map_err(|error| AuditError::open(redacted(url), error))?;
    Ok(Sink::new("postgres", queue))
}

fn config(url: &str) -> Result<(Config, crate::pg_tls::Tls), AuditError> {
    let (config, tls) = crate::pg_tls::configure(url, "portcullis-audit", TIMEOUT)
        .map_err(|error| AuditError::open(redacted(url), error))?;
    Ok((config.into(), tls))
}

fn connect(
    (config, tls): &(Config, crate::pg_tls::Tls),
    shown: &str,
) -> Result<Client, AuditError> {
    blocking(|| {
        config
            .connect(tls.clone())
            .map_err(|error| AuditError::open(shown, error))
    })
}

/// Run `work` on a thread of its own: the synchronous client starts a runtime of its own,
/// which must not nest inside a caller's.
fn blocking<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| match scope.spawn(work).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

fn write(client: &mut Client, records: &[&AuditRecord]) -> Result<(), postgres::Error> {
    let mut transaction = client.transaction()?;
    transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])?;
    let last = transaction.query_opt(
        "SELECT seq, hash FROM portcullis_audit ORDER BY seq DESC LIMIT 1",
        &[],
    )?;
    let (mut seq, mut previous) = last.map_or((0, GENESIS.to_owned()), |row| {
        (row.get::<_, i64>(0), row.get::<_, String>(1))
    });
    let mut rows = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for record in records {
        let record = record.canonical();
        let hash = chain(&previous, &record);
        seq += 1;
        rows.0.push(seq);
        rows.1.push(record);
        rows.2.push(std::mem::replace(&mut previous, hash.clone()));
        rows.3.push(hash);
    }
    transaction.execute(
        "INSERT INTO portcullis_audit (seq, record, prev_hash, hash)
         SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[])",
        &[&rows.0, &rows.1, &rows.2, &rows.3],
    )?;
    transaction.commit()
}

/// Every stored row after `after`, in order, a page at a time.
fn rows(
    url: &str,
    after: i64,
    mut each: impl FnMut(i64, String, String, String) -> bool + Send,
) -> Result<(), AuditError> {
    let (config, tls) = config(url)?;
    let shown = redacted(url);
    // Opened, used and dropped on the thread of its own (see `blocking`).
    blocking(|| {
        let mut client = config
            .connect(tls)
            .map_err(|error| AuditError::open(&shown, error))?;
        let mut after = after;
        loop {
            let page = client
                .query(
                    "SELECT seq, record, prev_hash, hash FROM portcullis_audit
                     WHERE seq > $1 ORDER BY seq LIMIT $2",
                    &[&after, &PAGE],
                )
                .map_err(|error| AuditError::open(&shown, error))?;
            let full = page.len() as i64 == PAGE;
            for row in page {
                after = row.get(0);
                if !each(after, row.get(1), row.get(2), row.get(3)) {
                    return Ok(());
                }
            }
            if !full {
                return Ok(());
            }
        }
    })
}

/// Check the chain of the trail at `url`, record by record.
pub(crate) fn verify(url: &str) -> Result<VerifyReport, AuditError> {
    let mut walk = Walk::from_genesis();
    let mut broken = None;
    rows(url, 0, |seq, record, prev_hash, hash| {
        broken = walk.step(seq, &record, &prev_hash, &hash).err();
        broken.is_none()
    })?;
    Ok(broken.unwrap_or_else(|| walk.finish()))
}

/// The records of the trail at `url` that `filter` matches, in order.
pub(crate) fn query(url: &str, filter: &Filter) -> Result<Vec<(i64, AuditRecord)>, AuditError> {
    let mut found = Vec::new();
    rows(url, filter.after.unwrap_or(0), |seq, record, _, _| {
        if let Ok(record) = serde_json::from_str::<AuditRecord>(&record)
            && filter.matches(&record)
        {
            found.push((seq, record));
        }
        true
    })?;
    Ok(found)
}

/// `url` without its password, for messages and logs.
pub(crate) fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "postgres (connection string)".to_owned();
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let user = authority
        .rsplit_once('@')
        .map(|(user, _)| user.split(':').next().unwrap_or_default());
    let path = path.split('?').next().unwrap_or_default();
    match user {
        Some(user) => format!("{scheme}://{user}@{host}/{path}"),
        None => format!("{scheme}://{host}/{path}"),
    }
}

#[cfg(test)]
mod tests {
    // See: the review of the PostgreSQL configuration. The first connection's error carried
    // the URL as written, password and all.
    #[test]
    fn a_failed_first_connection_does_not_show_the_password() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let Err(error) = super::open(&format!("postgres://audit:s3cret@127.0.0.1:{port}/trail"))
        else {
            panic!("nothing listens there");
        };
        let said = error.to_string();
        assert!(
            !said.contains("s3cret") && said.contains("audit@127.0.0.1"),
            "{said}"
        );
    }

    #[test]
    fn messages_never_show_the_password() {
        assert_eq!(
            super::redacted("postgres://audit:s3cret@db.internal:5432/trail?sslmode=disable"),
            "postgres://audit@db.internal:5432/trail"
        );
        assert_eq!(
            super::redacted("postgresql://db.internal/trail"),
            "postgresql://db.internal/trail"
        );
        assert_eq!(
            super::redacted("host=db password=s3cret"),
            "postgres (connection string)"
        );
    }
}
