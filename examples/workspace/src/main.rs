//! `portcullis-workspace`: run the reference backend as an MCP server on stdin/stdout.
//!
//! Logs go to stderr; stdout carries the protocol.

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use portcullis_core::error_chain;
use portcullis_workspace::{Workspace, identity::IdentityVerifier, store::Store};
use rmcp::ServiceExt;

/// The reference multi-tenant backend behind Portcullis (an MCP server on stdio).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// SQLite database file; created and seeded when absent. `:memory:` keeps nothing.
    #[arg(long, value_name = "PATH")]
    db: PathBuf,
    /// JWK Set file holding the gateway's public key(s) for identity assertions (ES256).
    #[arg(long, value_name = "PATH")]
    identity_jwks: PathBuf,
    /// The `iss` the gateway's assertions carry.
    #[arg(long, value_name = "ISS")]
    issuer: String,
    /// This backend's name: the `aud` the assertions must carry.
    #[arg(long, value_name = "NAME", default_value = "workspace")]
    audience: String,
    /// Log filter (tracing syntax), written to stderr.
    #[arg(long, value_name = "FILTER", default_value = "info,rmcp=warn")]
    log: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let workspace = match open(&args) {
        Ok(workspace) => workspace,
        Err(message) => {
            eprintln!("portcullis-workspace: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("portcullis-workspace: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(workspace)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("portcullis-workspace: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The server the arguments describe; any error is fatal, so it is returned as its message.
fn open(args: &Args) -> Result<Workspace, String> {
    let jwks = std::fs::read_to_string(&args.identity_jwks)
        .map_err(|error| format!("cannot read `{}`: {error}", args.identity_jwks.display()))?;
    let verifier = IdentityVerifier::new(&jwks, &args.issuer, &args.audience).map_err(|error| {
        format!(
            "`{}`: {}",
            args.identity_jwks.display(),
            error_chain(&error)
        )
    })?;
    let store = Store::open(&args.db)
        .map_err(|error| format!("database `{}`: {}", args.db.display(), error_chain(&error)))?;
    tracing::info!(issuer = %args.issuer, audience = %args.audience, "serving on stdio");
    Ok(Workspace::new(store, verifier))
}

async fn serve(workspace: Workspace) -> Result<(), String> {
    let service = workspace
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|error| format!("handshake failed: {error}"))?;
    service
        .waiting()
        .await
        .map_err(|error| format!("server stopped: {error}"))?;
    Ok(())
}
