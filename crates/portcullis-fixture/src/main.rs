//! `portcullis-fixture`: the upstream MCP server behind the gateway when CI runs the official MCP
//! conformance suite (`@modelcontextprotocol/conformance`) through it.
//!
//! It implements the suite's server fixture contract (the `test_*` tools, `test://` resources,
//! `test_*` prompts, completion, logging and subscriptions) on both protocol eras: 2025-11-25
//! sessions and 2026-07-28 stateless requests, where sampling, elicitation and roots become
//! input-required (MRTR) results. Two extra tools, `fixture_echo` and `fixture_slow`, serve the
//! gateway's own tests.
//!
//! It is *not* part of the product: nothing here is shipped in the `portcullis` binary, and its
//! behaviour follows the suite, not any Portcullis policy.
//!
//! # Layout
//!
//! - `main.rs`: CLI.
//! - `transport`: stdio and streamable HTTP (axum) hosting.
//! - `server`: the [`rmcp::ServerHandler`], which routes each request to the modules below.
//! - `state`: state shared by every session (list-change fan-out, `requestState` sealing) and
//!   per-session state (log level, resource subscriptions).
//! - `era`, `logging`: protocol-era detection and level-gated log notifications.
//! - `exchange`: one server-to-client question, asked in-band (2025-11-25) or by MRTR (2026-07-28).
//! - `tools`, `resources`, `prompts`, `completion`: the fixture contract itself.

mod assets;
mod completion;
mod era;
mod exchange;
mod logging;
mod prompts;
mod resources;
mod server;
mod state;
mod tools;
mod transport;

use std::net::SocketAddr;

use clap::{ArgGroup, Parser};
use tracing_subscriber::EnvFilter;

/// Command line of `portcullis-fixture`.
#[derive(Debug, Parser)]
#[command(
    name = "portcullis-fixture",
    version,
    about = "MCP conformance fixture server (upstream for the Portcullis gateway)"
)]
#[command(group(ArgGroup::new("transport").required(true).args(["stdio", "http"])))]
struct Cli {
    /// Serve MCP over stdin/stdout; logs go to stderr.
    #[arg(long)]
    stdio: bool,
    /// Serve streamable HTTP at `/mcp` on this address (e.g. `127.0.0.1:0`).
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Stdout carries the MCP stream (stdio) or the one `listening` line (HTTP), so every log line
    // goes to stderr.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();

    match cli.http {
        Some(addr) => transport::serve_http(addr).await,
        None => transport::serve_stdio().await,
    }
}
