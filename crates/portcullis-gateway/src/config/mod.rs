//! Configuration in two tiers: [`Raw`] mirrors the TOML file and rejects unknown keys; [`Config`]
//! is resolved (socket addresses, durations, upstream specs) and is the only form the rest of the
//! gateway sees. [`Config::resolve`] is its only constructor.

mod auth;
mod cluster;
mod credentials;
mod error;
mod limits;
mod locate;
pub mod online;
mod pins;
mod policy;
mod raw;
mod resolve;

pub use auth::{Auth, Introspection, Issuer};
pub use cluster::{Cluster, REPLICA_ENV};
pub use credentials::{
    ConnectionsConfig, TokenEndpoint, TokenExchange, UpstreamCredentials, UserOauth,
};
pub use error::ConfigError;
pub use limits::{Limits, Rate};
pub use pins::{FixedPin, OnChange, PinsConfig};
pub use raw::Raw;
pub use resolve::{AuditConfig, Config, ConsentConfig, Naming, PendingFile, PrefixMode};
