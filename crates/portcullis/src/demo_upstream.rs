//! The demo's upstream: the reference multi-tenant backend (`examples/workspace`) on stdio,
//! started by `portcullis demo` with the gateway's identity key set, so that it checks every
//! request's signed identity assertion and keeps each tenant to its own data.

use std::path::PathBuf;

use anyhow::Context;
use portcullis_core::error_chain;
use portcullis_workspace::{Workspace, identity::IdentityVerifier, store::Store};
use rmcp::ServiceExt;

pub(crate) async fn run(db: PathBuf, identity_jwks: PathBuf, issuer: String) -> anyhow::Result<()> {
    let jwks = std::fs::read_to_string(&identity_jwks)
        .with_context(|| format!("cannot read {}", identity_jwks.display()))?;
    let verifier = IdentityVerifier::new(&jwks, &issuer, "demo")
        .map_err(|error| anyhow::anyhow!("{}: {}", identity_jwks.display(), error_chain(&error)))?;
    let store = Store::open(&db)
        .map_err(|error| anyhow::anyhow!("database {}: {}", db.display(), error_chain(&error)))?;
    let service = Workspace::new(store, verifier)
        .serve(rmcp::transport::stdio())
        .await?;
    service.waiting().await?;
    Ok(())
}
