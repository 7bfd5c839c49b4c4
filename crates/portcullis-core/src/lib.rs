//! Shared vocabulary of Portcullis.
//!
//! What it is: the small set of types every other crate speaks: the MCP protocol era of a
//! request, the methods of both eras, one client message parsed strictly
//! ([`McpMessage::parse`]), a caller's identity, correlation ids. What it is not: anything that
//! performs I/O or knows HTTP. It sits at the centre of the dependency graph; every other crate
//! depends on it and it depends on none of them.

mod caller;
mod correlation;
mod era;
pub mod json;
pub mod message;
mod method;

pub use caller::CallerId;
pub use correlation::CorrelationId;
pub use era::{Era, UnknownEra};
pub use message::{
    CompletionRef, McpMessage, McpNotification, McpRequest, McpResponse, MessageError, RequestId,
};
pub use method::{McpMethod, NotificationMethod, TargetField};

/// An error with its causes, joined with `: `, for one log line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
