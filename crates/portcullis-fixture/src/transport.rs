//! Hosting: MCP over stdio, or streamable HTTP at `/mcp` through axum.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use axum::{Router, serve::ListenerExt as _};
use rmcp::{
    ServiceExt as _,
    transport::{
        stdio,
        streamable_http_server::{
            StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
        },
    },
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{server::FixtureServer, state::Shared};

/// The only HTTP path the fixture serves.
const MCP_PATH: &str = "/mcp";

/// Serve one MCP session over stdin/stdout until the client closes it.
pub(crate) async fn serve_stdio() -> anyhow::Result<()> {
    let server = FixtureServer::new(Arc::new(shared()?));
    let running = server
        .serve(stdio())
        .await
        .context("failed to start the stdio MCP session")?;
    running
        .waiting()
        .await
        .context("stdio MCP session ended abnormally")?;
    Ok(())
}

/// Serve streamable HTTP on `addr` until SIGTERM or ctrl-c.
///
/// Both eras share one endpoint: `initialize` opens a legacy (2025-11-25) session, while requests
/// carrying 2026-07-28 `_meta` are served statelessly, one request at a time.
pub(crate) async fn serve_http(addr: SocketAddr) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let shared = Arc::new(shared()?);
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(true)
        .with_cancellation_token(shutdown.child_token())
        // SECURITY: the fixture runs unauthenticated on loopback; Host and Origin checks are what
        // stop a DNS-rebinding page from driving it (the suite's dns-rebinding-protection).
        .with_allowed_hosts(["localhost", "127.0.0.1", "::1"])
        .with_allowed_origins(["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"]);
    let service = StreamableHttpService::new(
        move || Ok(FixtureServer::new(shared.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let router = Router::new().route_service(MCP_PATH, service);

    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("failed to bind `{addr}`"))?;
    let bound = listener
        .local_addr()
        .context("failed to read the bound address")?;
    announce(bound);

    let listener = listener.tap_io(|tcp| {
        // Small JSON-RPC frames must not wait for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
    });
    let signal_shutdown = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        signal_shutdown.cancel();
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("HTTP server failed")
}

fn shared() -> anyhow::Result<Shared> {
    Shared::new().context("failed to set up the requestState seal")
}

/// Print the one line tests read to learn the bound port.
#[expect(
    clippy::print_stdout,
    reason = "the listening line on stdout is the fixture's startup contract with tests"
)]
fn announce(bound: SocketAddr) {
    println!("listening http://{bound}{MCP_PATH}");
}

/// Resolve on ctrl-c or SIGTERM, whichever comes first.
async fn wait_for_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
