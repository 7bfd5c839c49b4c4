//! The HTTP side: the router, its layers, and the listener loop.
//!
//! Layers, outermost first (the first sees the request first):
//! 1. `track`: counts in-flight MCP POSTs, so shutdown can wait for calls to finish;
//! 2. `hygiene::check`: Host and Origin allow-lists (403), body size by Content-Length (413);
//! 3. `RequestBodyLimitLayer`: the same size limit for bodies without a Content-Length (413);
//! 4. the router: `/.well-known/oauth-protected-resource[path]` (open), `/approvals` (the
//!    approval page, with `[auth]`), and `path`, where `crate::mcp` serves POST, GET and
//!    DELETE: each request authenticated, parsed once, decided, answered.

mod approvals;
mod connection;
mod health;
mod hygiene;
mod peer;
pub mod proxy;
mod serve;
mod tls;

use std::sync::Arc;

use axum::{Json, Router, middleware, routing::get};
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;

use crate::{config::Config, gateway::Gateway, mcp, trail::Trail};

pub use health::{Draining, admin_app};
pub(crate) use peer::Peer;
pub(crate) use serve::LongLived;
pub use serve::{Inflight, Listening, run};
pub use tls::Tls;

/// Build the gateway's HTTP app. `streams` ends every open SSE stream when cancelled. `beside`
/// holds routes served on the same listener behind the same hygiene layers (the demo's
/// authorization server); usually empty.
pub fn app(
    config: &Config,
    gateway: Arc<Gateway>,
    inflight: Inflight,
    streams: CancellationToken,
    beside: Router,
    trail: Trail,
) -> Router {
    gateway.attach_trail(trail.clone());
    // Counted refusals (see `Trail::refused_counted`) reach the trail once their window
    // ends, and all of them at shutdown.
    let (flushing, stop) = (trail.clone(), streams.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return flushing.flush_floods(true),
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {
                    flushing.flush_floods(false);
                }
            }
        }
    });
    let endpoint = Arc::new(mcp::Endpoint::new(
        gateway.clone(),
        config,
        (streams.clone(), inflight.draining()),
    ));
    let policy = Arc::new(hygiene::Policy::from_config(config, trail.clone()));
    let mut app = Router::new()
        .route(
            &config.path,
            axum::routing::post(mcp::post)
                .get(mcp::get)
                .delete(mcp::delete),
        )
        .with_state(endpoint);
    if let Some(auth) = &config.auth
        && let Some(authenticator) = gateway.access.authenticator()
    {
        // RFC 9728 §3.1: at the path-inserted location, and at the root for clients that
        // look there first.
        const ROOT: &str = "/.well-known/oauth-protected-resource";
        let document = authenticator.metadata.clone();
        let serve_metadata = move || {
            let document = document.clone();
            async move { Json(document) }
        };
        let mut metadata =
            Router::new().route(&auth.resource.metadata_path(), get(serve_metadata.clone()));
        if auth.resource.metadata_path() != ROOT {
            metadata = metadata.route(ROOT, get(serve_metadata));
        }
        app = app.merge(metadata);
        let issuer = config
            .consent
            .issuer
            .clone()
            .or_else(|| auth.issuers.first().map(|issuer| issuer.issuer.clone()))
            .unwrap_or_default();
        let approvals = approvals::Approvals::new(
            gateway.access.consent().clone(),
            gateway.access.clone(),
            trail,
            (
                auth.resource.identifier(),
                &config.path,
                &issuer,
                config.consent.client_id.as_deref(),
            ),
            (
                (!auth.scopes.is_empty()).then(|| auth.scopes.joined()),
                config.limits.unauthenticated_connections,
            ),
            gateway.upstreams.connections.clone(),
        );
        app = app.merge(approvals::router(Arc::new(approvals)));
        // Callers with opaque tokens: their introspection answers are asked again while their
        // sessions live, so a role taken away reaches their view (and list_changed).
        if let Some(every) = authenticator.reintrospect_every {
            tokio::spawn(mcp::reintrospect(gateway.clone(), every, streams.clone()));
        }
    }
    app.merge(beside)
        .layer(RequestBodyLimitLayer::new(config.max_body_bytes))
        .layer(middleware::from_fn_with_state(policy, hygiene::check))
        .layer(middleware::from_fn_with_state(inflight, serve::track))
}
