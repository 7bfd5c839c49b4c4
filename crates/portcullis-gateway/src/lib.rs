//! The Portcullis gateway as a library: configuration, the HTTP app and the MCP proxy.
//!
//! What it is: everything between a listening socket and the upstream MCP servers. `main` and the
//! tests build the same app through [`http::run`]. What it is not: the CLI (the `portcullis`
//! binary) or the upstream transports (`portcullis-mcp`).

pub mod config;
mod consent;
pub mod entitlements;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod proxy;
mod redact;
pub mod trail;
pub mod verdict;
