//! Authorization for Portcullis: what each MCP operation requires of its caller.
//!
//! Today this is the scope layer of the decision: a [`Catalog`] of capabilities (tools,
//! prompts, resources) and the scopes each needs, read through a [`ScopeHierarchy`]
//! (`policies:write` implies `policies:read`). A caller whose token lacks a needed scope is
//! told every scope the operation needs, in one answer, so that one re-authorization is enough.
//! It knows no HTTP and no JSON-RPC: the gateway names the operation, this crate judges it.

mod catalog;
mod scopes;

pub use catalog::{Capability, CapabilityKind, Catalog};
pub use scopes::ScopeHierarchy;
