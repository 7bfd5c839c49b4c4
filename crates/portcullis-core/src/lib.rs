//! Shared vocabulary of Portcullis.
//!
//! What it is: the small set of types every other crate speaks (the MCP protocol era of a request,
//! correlation ids). What it is not: anything that performs I/O, parses HTTP or knows rmcp. It sits
//! at the centre of the dependency graph; every other crate depends on it and it depends on none.

mod correlation;
mod era;

pub use correlation::CorrelationId;
pub use era::{Era, UnknownEra};
