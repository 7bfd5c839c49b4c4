//! Which protocol era a request belongs to.

use rmcp::{RoleServer, service::RequestContext};

/// The two MCP protocol eras the fixture serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Era {
    /// 2025-11-25 and earlier: an `initialize` handshake opens a session, and the server may send
    /// requests (sampling, elicitation, roots) to the client mid-call.
    Session,
    /// 2026-07-28 and later: every request carries its own `_meta`, and the server asks the client
    /// for input only by returning an input-required (MRTR) result.
    Stateless,
}

impl Era {
    /// The era of the request behind `context`.
    pub(crate) fn of(context: &RequestContext<RoleServer>) -> Self {
        match context.protocol_version() {
            Some(version) if !version.has_initialize() => Self::Stateless,
            _ => Self::Session,
        }
    }
}
