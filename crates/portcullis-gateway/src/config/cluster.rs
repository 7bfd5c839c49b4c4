//! `[cluster]`: what replicas behind one load balancer share, and how each is told apart.

use serde::Deserialize;

use super::ConfigError;

/// `[cluster]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// This replica's name, the start of every session id it makes (`PORTCULLIS_REPLICA` in
    /// the environment wins: one config file serves every replica).
    pub replica: Option<String>,
    /// PostgreSQL holding the approval state every replica shares (requests on the approval
    /// page, their answers, the one-time approvals used), so that an approval made through
    /// one replica is honoured once by any, and a restart loses none.
    pub postgres: Option<String>,
}

/// Resolved `[cluster]`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Cluster {
    /// This replica's name, if it has one.
    pub replica: Option<String>,
    /// The shared approval state's PostgreSQL URL.
    pub postgres: Option<String>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("Cluster")
            .field("replica", &self.replica)
            .field("postgres", &self.postgres.as_ref().map(|_| "…"))
            .finish()
    }
}

/// The environment variable naming the replica (read by `portcullis serve`).
pub const REPLICA_ENV: &str = "PORTCULLIS_REPLICA";

impl Cluster {
    /// Name this replica `replica` (from the environment, say), checked as the file's is.
    pub fn name_replica(&mut self, replica: String) -> Result<(), ConfigError> {
        check_replica(&replica)?;
        self.replica = Some(replica);
        Ok(())
    }

    /// Whether this gateway runs as one of several replicas.
    pub fn clustered(&self) -> bool {
        self.replica.is_some() || self.postgres.is_some()
    }
}

/// SECURITY: a replica's name starts session ids and a load balancer matches on it: nothing
/// that could end the id's first field or a header.
fn check_replica(replica: &str) -> Result<(), ConfigError> {
    if replica.is_empty()
        || replica.len() > 63
        || !replica
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ConfigError::invalid(
            "cluster.replica",
            format!(
                "`{}` (or {REPLICA_ENV}): 1 to 63 letters, digits, `-` and `_`",
                replica.escape_debug()
            ),
        ));
    }
    Ok(())
}

pub(super) fn resolve_cluster(raw: RawCluster) -> Result<Cluster, ConfigError> {
    let replica = raw.replica;
    if let Some(replica) = &replica {
        check_replica(replica)?;
    }
    if let Some(url) = &raw.postgres
        && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
    {
        return Err(ConfigError::invalid(
            "cluster.postgres",
            "a `postgres://` URL",
        ));
    }
    Ok(Cluster {
        replica,
        postgres: raw.postgres,
    })
}
