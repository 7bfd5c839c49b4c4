//! MCP upstream connections for Portcullis.
//!
//! What it is: how the gateway talks to the MCP servers behind it. An [`UpstreamSpec`] names a
//! server reached over a stdio child process or streamable HTTP; [`connect`] opens one MCP
//! connection to it in either protocol era; a [`Relay`] carries what that server sends on its own
//! (progress, logging, elicitation and sampling requests, list changes) back to the right
//! downstream client; a [`SharedUpstream`] keeps one long-lived connection alive, restarting it
//! with backoff when it dies.
//!
//! What it is not: the downstream HTTP side (that is `portcullis-gateway`), and nothing here
//! decides who may call what. The upstream API has no parameter that could carry a caller's
//! bearer token: the gateway cannot pass a token on even by mistake.

pub mod envelope;
mod error;
mod http;
mod relay;
mod shared;
mod upstream;

pub use error::UpstreamError;
pub use http::{HttpTransport, HttpTransportError, TRANSPORT_FAILURE};
pub use relay::{Downstream, Inflight, InflightGuard, Relay};
pub use shared::{Live, SharedUpstream, UpstreamStatus};
pub use upstream::{
    Connection, Credential, EraPreference, UpstreamSpec, UpstreamTransport, connect, http_client,
};
