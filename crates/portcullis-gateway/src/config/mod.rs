//! Configuration in two tiers: [`Raw`] mirrors the TOML file and rejects unknown keys; [`Config`]
//! is resolved (socket addresses, durations, upstream specs) and is the only form the rest of the
//! gateway sees. [`Config::resolve`] is its only constructor.

mod error;
mod raw;
mod resolve;

pub use error::ConfigError;
pub use raw::Raw;
pub use resolve::{Auth, Config, Introspection, Issuer, Naming, PrefixMode};
