//! The Portcullis gateway as a library: configuration, the HTTP app, the access part (who is
//! calling, what the policies decide, the proofs and records) and both sides of MCP.
//!
//! What it is: everything between a listening socket and the upstream MCP servers. `main` and
//! the tests build the same app through [`http::run`]. What it is not: the CLI (the
//! `portcullis` binary) or the upstream transports (`portcullis-mcp`).
//!
//! Layout: [`http`] (router, layers, listener) hands each request on the MCP path to `mcp`
//! (the endpoint: parse, era, session, answer), which asks [`access`] (authenticate, decide,
//! record) and sends only what was decided through [`upstreams`] (routing, the upstream
//! connections). `access` never imports the upstream side.

pub mod access;
pub mod config;
pub mod connections;
mod consent;
pub mod entitlements;
mod gateway;
pub mod http;
pub mod identity;
mod mcp;
pub mod metrics;
mod rate;
mod redact;
pub mod trace;
pub mod trail;
mod turns;
pub mod upstreams;

pub use gateway::Gateway;
pub use portcullis_mcp::UpstreamStatus;

/// When a file was last changed and how long it is: what the watchers of files read live
/// (policies, entitlements, the TLS certificate) compare to see a change; `None` when it
/// cannot be read.
pub fn file_stamp(path: &std::path::Path) -> Option<(std::time::SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
