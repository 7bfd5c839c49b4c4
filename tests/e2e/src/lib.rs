//! Test kit for end-to-end tests: a gateway on an ephemeral loopback port, fixture upstreams over
//! stdio and HTTP, and rmcp clients of either era. Never compiled into the product.

#![expect(clippy::expect_used, reason = "test support fails loudly")]

mod client;
mod fixture;
mod gateway;
mod issuer;
pub mod load;
mod pinned;
mod proxy;
mod recorder;

pub use client::{Era, TestClient, connect, connect_as};
pub use fixture::{HttpFixture, fixture_bin, workspace_bin};
pub use gateway::TestGateway;
pub use issuer::{DevIssuer, last_message, stateless_rpc};
pub use pinned::{Pinned, pin_this_process};
pub use proxy::{Carried, recording_proxy};
pub use recorder::{Hostility, Received, Recorder};
