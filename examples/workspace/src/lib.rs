//! `portcullis-workspace`: the reference multi-tenant backend behind Portcullis.
//!
//! An MCP server (stdio) holding policy documents, tickets, records and HR reports for two
//! tenants in SQLite. It sits *behind* the gateway and trusts only the gateway's signed identity
//! assertion (see [`identity`]), never the caller's token, and it enforces the tenant and object
//! rules again in its own queries (see [`store`]): the gateway decides what a caller may attempt,
//! this backend decides what the data permits.
//!
//! It is an example, not part of the product: the gateway never links it.

pub mod identity;
mod resources;
mod server;
pub mod store;
mod tools;

use portcullis_core::error_chain;
use rmcp::ErrorData as McpError;

pub use server::Workspace;

/// A malfunction's answer: a fixed message on the wire, the detail in the log.
fn internal(error: &dyn std::error::Error) -> McpError {
    tracing::error!(error = %error_chain(error), "request failed");
    McpError::internal_error("internal error", None)
}
