//! Where people's connections are kept: in PostgreSQL when replicas share state (`[cluster]
//! postgres`), else in a SQLite file. Rows hold sealed values only (`super::seal`); who, which
//! upstream and since when are in the clear, so a person's list and an operator's command can
//! be answered without the key.

use std::{path::Path, sync::Arc};

use crate::consent::shared::{Shared, Unavailable};

/// Whose connection, to which upstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub(crate) iss: String,
    pub(crate) sub: String,
    pub(crate) upstream: String,
}

impl Key {
    /// `caller`'s connection to `upstream`.
    pub(crate) fn of(caller: &portcullis_core::CallerId, upstream: &str) -> Self {
        Self {
            iss: caller.issuer().to_owned(),
            sub: caller.subject().to_owned(),
            upstream: upstream.to_owned(),
        }
    }

    /// What a sealed row is bound to: opened under another key, it is nothing.
    pub(crate) fn context(&self) -> String {
        format!("connection\0{}\0{}\0{}", self.iss, self.sub, self.upstream)
    }
}

/// One connection as listed: whose, where, since when (seconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub(crate) key: Key,
    pub(crate) connected: i64,
}

pub(crate) enum Store {
    Sqlite(Arc<std::sync::Mutex<rusqlite::Connection>>),
    Postgres(Arc<Shared>),
}

const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS connections (
    iss TEXT NOT NULL, sub TEXT NOT NULL, upstream TEXT NOT NULL,
    sealed TEXT NOT NULL, connected INTEGER NOT NULL,
    PRIMARY KEY (iss, sub, upstream)
);
CREATE TABLE IF NOT EXISTS registrations (
    upstream TEXT NOT NULL, issuer TEXT NOT NULL, sealed TEXT NOT NULL,
    PRIMARY KEY (upstream, issuer)
);";

impl Store {
    /// The SQLite file at `path`, made if missing (readable by its owner only).
    pub(crate) fn sqlite(path: &Path) -> Result<Self, String> {
        if !path.exists() {
            portcullis_authn::signing::write_private(path, b"").map_err(|e| e.to_string())?;
        }
        let connection = rusqlite::Connection::open(path)
            .map_err(|error| format!("`{}`: {error}", path.display()))?;
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .and_then(|()| connection.execute_batch(SQLITE_SCHEMA))
            .map_err(|error| format!("`{}`: {error}", path.display()))?;
        Ok(Self::Sqlite(Arc::new(std::sync::Mutex::new(connection))))
    }

    async fn sqlite_do<T: Send + 'static>(
        connection: &Arc<std::sync::Mutex<rusqlite::Connection>>,
        work: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, Unavailable> {
        let connection = connection.clone();
        tokio::task::spawn_blocking(move || {
            let connection = connection
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            work(&connection)
        })
        .await
        .map_err(|_| Unavailable)?
        .map_err(|error| {
            tracing::warn!(%error, "the connections database refused a statement");
            Unavailable
        })
    }

    /// The sealed connection under `key`, if any.
    pub(crate) async fn get(&self, key: &Key) -> Result<Option<String>, Unavailable> {
        match self {
            Self::Sqlite(db) => {
                let key = key.clone();
                Self::sqlite_do(db, move |db| {
                    use rusqlite::OptionalExtension;
                    db.query_row(
                        "SELECT sealed FROM connections WHERE iss = ?1 AND sub = ?2 AND upstream = ?3",
                        rusqlite::params![key.iss, key.sub, key.upstream],
                        |row| row.get(0),
                    )
                    .optional()
                })
                .await
            }
            Self::Postgres(shared) => {
                let client = shared.client().await?;
                let row = shared
                    .exec(client.query_opt(
                        "SELECT sealed FROM portcullis_connections \
                         WHERE iss = $1 AND sub = $2 AND upstream = $3",
                        &[&key.iss, &key.sub, &key.upstream],
                    ))
                    .await?;
                Ok(row.map(|row| row.get(0)))
            }
        }
    }

    /// Keep `sealed` under `key`, replacing what was there (a person connecting again).
    pub(crate) async fn put(&self, key: &Key, sealed: String) -> Result<(), Unavailable> {
        let now = now();
        match self {
            Self::Sqlite(db) => {
                let key = key.clone();
                Self::sqlite_do(db, move |db| {
                    db.execute(
                        "INSERT INTO connections (iss, sub, upstream, sealed, connected) \
                         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (iss, sub, upstream) \
                         DO UPDATE SET sealed = excluded.sealed, connected = excluded.connected",
                        rusqlite::params![key.iss, key.sub, key.upstream, sealed, now],
                    )
                })
                .await
                .map(drop)
            }
            Self::Postgres(shared) => {
                let client = shared.client().await?;
                shared
                    .exec(client.execute(
                        "INSERT INTO portcullis_connections (iss, sub, upstream, sealed, connected) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (iss, sub, upstream) \
                         DO UPDATE SET sealed = excluded.sealed, connected = excluded.connected",
                        &[&key.iss, &key.sub, &key.upstream, &sealed, &now],
                    ))
                    .await
                    .map(drop)
            }
        }
    }

    /// Replace `old` under `key` by `new` (refreshed tokens), unless someone replaced or
    /// removed it meanwhile (another replica refreshed, the person disconnected): whether it
    /// was replaced.
    pub(crate) async fn swap(
        &self,
        key: &Key,
        old: &str,
        new: String,
    ) -> Result<bool, Unavailable> {
        match self {
            Self::Sqlite(db) => {
                let (key, old) = (key.clone(), old.to_owned());
                Self::sqlite_do(db, move |db| {
                    db.execute(
                        "UPDATE connections SET sealed = ?5 \
                         WHERE iss = ?1 AND sub = ?2 AND upstream = ?3 AND sealed = ?4",
                        rusqlite::params![key.iss, key.sub, key.upstream, old, new],
                    )
                })
                .await
                .map(|changed| changed == 1)
            }
            Self::Postgres(shared) => {
                let client = shared.client().await?;
                shared
                    .exec(client.execute(
                        "UPDATE portcullis_connections SET sealed = $5 \
                         WHERE iss = $1 AND sub = $2 AND upstream = $3 AND sealed = $4",
                        &[&key.iss, &key.sub, &key.upstream, &old, &new],
                    ))
                    .await
                    .map(|changed| changed == 1)
            }
        }
    }

    /// Forget the connection under `key` (only if it still holds `only`, when given): whether
    /// there was one.
    pub(crate) async fn remove(&self, key: &Key, only: Option<&str>) -> Result<bool, Unavailable> {
        let only = only.map(str::to_owned);
        match self {
            Self::Sqlite(db) => {
                let key = key.clone();
                Self::sqlite_do(db, move |db| {
                    db.execute(
                        "DELETE FROM connections WHERE iss = ?1 AND sub = ?2 AND upstream = ?3 \
                         AND (?4 IS NULL OR sealed = ?4)",
                        rusqlite::params![key.iss, key.sub, key.upstream, only],
                    )
                })
                .await
                .map(|gone| gone > 0)
            }
            Self::Postgres(shared) => {
                let client = shared.client().await?;
                shared
                    .exec(client.execute(
                        "DELETE FROM portcullis_connections WHERE iss = $1 AND sub = $2 \
                         AND upstream = $3 AND ($4::TEXT IS NULL OR sealed = $4)",
                        &[&key.iss, &key.sub, &key.upstream, &only],
                    ))
                    .await
                    .map(|gone| gone > 0)
            }
        }
    }

    /// The connections of one person (`Some((iss, sub))`), or everyone's, oldest first.
    pub(crate) async fn list(
        &self,
        whose: Option<(&str, &str)>,
    ) -> Result<Vec<Listed>, Unavailable> {
        let (iss, sub) = whose.map_or((None, None), |(iss, sub)| {
            (Some(iss.to_owned()), Some(sub.to_owned()))
        });
        let read = |iss: String, sub: String, upstream: String, connected: i64| Listed {
            key: Key { iss, sub, upstream },
            connected,
        };
        match self {
            Self::Sqlite(db) => {
                Self::sqlite_do(db, move |db| {
                    let mut statement = db.prepare(
                        "SELECT iss, sub, upstream, connected FROM connections \
                         WHERE (?1 IS NULL OR iss = ?1) AND (?2 IS NULL OR sub = ?2) \
                         ORDER BY connected, upstream",
                    )?;
                    let rows = statement.query_map(rusqlite::params![iss, sub], |row| {
                        Ok(read(row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                    })?;
                    rows.collect()
                })
                .await
            }
            Self::Postgres(shared) => {
                let client = shared.client().await?;
                let rows = shared
                    .exec(client.query(
                        "SELECT iss, sub, upstream, connected FROM portcullis_connections \
                         WHERE ($1::TEXT IS NULL OR iss = $1) AND ($2::TEXT IS NULL OR sub = $2) \
                         ORDER BY connected, upstream",
                        &[&iss, &sub],
                    ))
                    .await?;
                Ok(rows
                    .iter()
                    .map(|row| read(row.get(0), row.get(1), row.get(2), row.get(3)))
                    .collect())
            }
        }
    }

    /// The gateway's registration at `issuer` for `upstream`, kept the first time: if another
    /// replica kept one first, that one (every replica must use the same client).
    pub(crate) async fn registration(
        &self,
        (upstream, issuer): (&str, &str),
        made: Option<String>,
    ) -> Result<Option<String>, Unavailable> {
        let (upstream, issuer) = (upstream.to_owned(), issuer.to_owned());
        match self {
            Self::Sqlite(db) => {
                Self::sqlite_do(db, move |db| {
                    use rusqlite::OptionalExtension;
                    if let Some(made) = made {
                        db.execute(
                            "INSERT INTO registrations (upstream, issuer, sealed) \
                             VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                            rusqlite::params![upstream, issuer, made],
                        )?;
                    }
                    db.query_row(
                        "SELECT sealed FROM registrations WHERE upstream = ?1 AND issuer = ?2",
                        rusqlite::params![upstream, issuer],
                        |row| row.get(0),
                    )
                    .optional()
                })
                .await
            }
            Self::Postgres(shared) => {
                let client = shared.client().await?;
                if let Some(made) = made {
                    shared
                        .exec(client.execute(
                            "INSERT INTO portcullis_registrations (upstream, issuer, sealed) \
                             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                            &[&upstream, &issuer, &made],
                        ))
                        .await?;
                }
                let row = shared
                    .exec(client.query_opt(
                        "SELECT sealed FROM portcullis_registrations \
                         WHERE upstream = $1 AND issuer = $2",
                        &[&upstream, &issuer],
                    ))
                    .await?;
                Ok(row.map(|row| row.get(0)))
            }
        }
    }
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keep, swap, list and forget connections of issuer `iss` (unique per run: a shared
    /// database holds other runs' rows).
    async fn exercise(store: &Store, iss: &str) {
        let key = |sub: &str, upstream: &str| Key {
            iss: iss.into(),
            sub: sub.into(),
            upstream: upstream.into(),
        };
        let alice = key("alice", "tickets");
        assert_eq!(store.get(&alice).await.unwrap(), None);
        store.put(&alice, "one".into()).await.unwrap();
        store.put(&key("bob", "tickets"), "b".into()).await.unwrap();
        assert_eq!(store.get(&alice).await.unwrap().as_deref(), Some("one"));
        assert_eq!(store.get(&key("alice", "other")).await.unwrap(), None);
        assert!(!store.swap(&alice, "stale", "two".into()).await.unwrap());
        assert!(store.swap(&alice, "one", "two".into()).await.unwrap());
        assert_eq!(store.get(&alice).await.unwrap().as_deref(), Some("two"));
        let mine = store.list(Some((iss, "alice"))).await.unwrap();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].key, alice);
        let everyone = store.list(None).await.unwrap();
        assert_eq!(everyone.iter().filter(|l| l.key.iss == iss).count(), 2);
        assert!(!store.remove(&alice, Some("one")).await.unwrap());
        assert!(store.remove(&alice, None).await.unwrap());
        assert_eq!(store.get(&alice).await.unwrap(), None);
        let upstream = format!("t-{iss}");
        assert_eq!(
            store
                .registration((&upstream, "i"), Some("first".into()))
                .await
                .unwrap()
                .as_deref(),
            Some("first")
        );
        assert_eq!(
            store
                .registration((&upstream, "i"), Some("second".into()))
                .await
                .unwrap()
                .as_deref(),
            Some("first"),
            "the first registration kept is the one used"
        );
    }

    #[tokio::test]
    async fn sqlite_keeps_swaps_lists_and_forgets_connections() {
        let dir = std::env::temp_dir().join(format!(
            "pc-conn-{}",
            portcullis_authn::signing::random_token()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::sqlite(&dir.join("c.db")).unwrap();
        exercise(&store, "https://as.example").await;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("c.db"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "the test server comes from the environment .ci/run sets"
    )]
    #[tokio::test]
    async fn postgres_keeps_swaps_lists_and_forgets_connections() {
        let Ok(server) = std::env::var("PORTCULLIS_TEST_POSTGRES") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "PORTCULLIS_TEST_POSTGRES is not set: .ci/run starts PostgreSQL"
            );
            eprintln!(
                "SKIPPED: no PostgreSQL (eval \"$(tests/postgres/start.sh)\" to run this test)"
            );
            return;
        };
        let store = Store::Postgres(Arc::new(Shared::new(&server).unwrap()));
        let iss = format!(
            "https://as-{}.example",
            portcullis_authn::signing::random_token()
        );
        exercise(&store, &iss).await;
    }
}
