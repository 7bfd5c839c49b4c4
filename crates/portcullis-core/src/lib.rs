//! Shared vocabulary of Portcullis.
//!
//! What it is: the small set of types every other crate speaks (the MCP protocol era of a request,
//! correlation ids). What it is not: anything that performs I/O, parses HTTP or knows rmcp. It sits
//! at the centre of the dependency graph; every other crate depends on it and it depends on none.

mod correlation;
mod era;

pub use correlation::CorrelationId;
pub use era::{Era, UnknownEra};

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
