//! MCP upstream connections for Portcullis.
//!
//! What it is: how the gateway talks to the MCP servers behind it. An [`UpstreamSpec`] names a
//! server reached over a stdio child process or streamable HTTP; [`connect`] opens one
//! connection to it in either protocol era; [`Connection::send`] sends a request and returns
//! its [`Exchange`], which yields what the upstream sends about that request (progress, log
//! lines, its own requests) and then the answer, kept as the upstream wrote it; a
//! [`SharedUpstream`] keeps one long-lived connection alive, restarting it with backoff.
//! Every frame an upstream sends is read strictly (no duplicate member names), like every
//! message a caller sends.
//!
//! What it is not: the downstream side (that is `portcullis-gateway`), and nothing here decides
//! who may call what. There is no parameter through which a caller's bearer token could reach
//! an upstream: the gateway cannot pass a token on even by mistake.

mod announce;
mod connection;
mod error;
pub mod frame;
mod handshake;
mod http;
mod shared;
mod spec;
mod sse;
mod stdio;

pub use announce::Announcer;
pub use connection::{Attribution, Connection, Event, Exchange, Negotiated, Outbound};
pub use error::UpstreamError;
pub use frame::{Outcome, RpcError};
pub use handshake::{SESSION_VERSION, STATELESS_VERSION, connect};
pub use http::{HttpClient, http_client};
pub use shared::{Change, ChangeKind, SharedUpstream, UpstreamStatus};
pub use spec::{
    ClientIdentity, Credential, EraPreference, TokenSource, UpstreamSpec, UpstreamTransport, bearer,
};
pub use sse::{header_text, header_value_text, param_headers};
