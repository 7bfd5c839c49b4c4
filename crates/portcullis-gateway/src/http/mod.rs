//! The HTTP side: the router, its layers, and the listener loop.
//!
//! Layers, outermost first (the first sees the request first):
//! 1. `track`: counts in-flight MCP POSTs, so shutdown can wait for calls to finish;
//! 2. `hygiene::check`: Host and Origin allow-lists (403), body size by Content-Length (413);
//! 3. `RequestBodyLimitLayer`: the same size limit for bodies without a Content-Length (413);
//! 4. the router: `/.well-known/oauth-protected-resource[path]` (open), and
//!    `path` -> `authn::authenticate` (401/503 without a verified token; session owner check) ->
//!    `authz::authorize` (one decision per call from the Cedar policies: 403
//!    `insufficient_scope` for a step-up, else a verdict in the request's extensions) ->
//!    `relay` (only allowed calls, stateless requests that need no translation, as bytes to
//!    their upstream) -> rmcp's streamable HTTP service running the typed MCP proxy.

mod approvals;
mod authn;
mod authz;
mod hygiene;
mod relay;
mod serve;

use std::sync::Arc;

use axum::{Router, middleware, routing::get};
use rmcp::transport::{
    StreamableHttpServerConfig, StreamableHttpService,
    streamable_http_server::session::local::LocalSessionManager,
};
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;

use crate::{
    config::Config,
    proxy::{Gateway, GatewayHandler},
    trail::Trail,
};

pub use serve::{Inflight, run};

/// The admin app: `GET /metrics` (Prometheus text). Served on its own listener, apart from
/// the MCP endpoint, so that it is never reachable where callers are.
pub fn admin_app(trail: Trail) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let trail = trail.clone();
            async move {
                (
                    [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    trail.render_metrics(),
                )
            }
        }),
    )
}

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
    let mut mcp = StreamableHttpServerConfig::default()
        .with_allowed_hosts(config.allowed_hosts.clone())
        .with_allowed_origins(config.allowed_origins.clone())
        .with_sse_keep_alive(Some(config.sse_keep_alive))
        .with_json_response(config.json_response)
        .with_max_request_body_bytes(config.max_body_bytes)
        .with_cancellation_token(streams.clone());
    let streams_for_tasks = streams;
    mcp.legacy_session_mode = true;
    gateway.attach_trail(trail.clone());
    let trail_for_pages = trail.clone();
    let gateway_for_authz = gateway.clone();
    let relay = Arc::new(relay::Relay {
        gateway: gateway.clone(),
        authorizing: config.auth.is_some(),
        asserting: config.identity.is_some(),
        max_body_bytes: config.max_body_bytes,
        plain: relay::plain_client(),
    });
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(config.session_idle_timeout);
    let service = StreamableHttpService::new(
        move || Ok(GatewayHandler::new(gateway.clone())),
        Arc::new(sessions),
        mcp,
    );
    let policy = Arc::new(hygiene::Policy::from_config(config, trail.clone()));
    let mut mcp = Router::new()
        .route_service(&config.path, service)
        .route_layer(middleware::from_fn_with_state(relay, relay::relay));
    if let Some(auth) = &config.auth {
        let authz = Arc::new(authz::Authz {
            trail: trail.clone(),
            gateway: gateway_for_authz.clone(),
            metadata_url: auth.resource.metadata_url(),
            max_body_bytes: config.max_body_bytes,
        });
        mcp = mcp.route_layer(middleware::from_fn_with_state(authz, authz::authorize));
        let authn = Arc::new(authn::Authn::new(
            auth,
            config.session_idle_timeout,
            (trail, config.entitlements.clone()),
            config.path.clone(),
        ));
        mcp = mcp.route_layer(middleware::from_fn_with_state(
            authn.clone(),
            authn::authenticate,
        ));
        // RFC 9728 §3.1: at the path-inserted location, and at the root for clients that
        // look there first.
        const ROOT: &str = "/.well-known/oauth-protected-resource";
        let mut metadata =
            Router::new().route(&auth.resource.metadata_path(), get(authn::metadata));
        if auth.resource.metadata_path() != ROOT {
            metadata = metadata.route(ROOT, get(authn::metadata));
        }
        let issuer = config
            .consent
            .issuer
            .clone()
            .or_else(|| auth.issuers.first().map(|issuer| issuer.issuer.clone()))
            .unwrap_or_default();
        let approvals = approvals::Approvals::new(
            gateway_for_authz.consent(),
            authn.clone(),
            trail_for_pages,
            (
                auth.resource.identifier(),
                &issuer,
                config.consent.client_id.as_deref(),
            ),
        );
        // Callers with opaque tokens: their introspection answers are asked again while their
        // sessions live, so a role taken away reaches their view (and list_changed).
        if let Some(every) = auth
            .issuers
            .iter()
            .find_map(|issuer| issuer.introspection.as_ref())
            .map(|introspection| introspection.cache_ttl)
        {
            tokio::spawn(authn.clone().reintrospect(
                gateway_for_authz.clone(),
                every.max(std::time::Duration::from_millis(100)),
                streams_for_tasks.clone(),
            ));
        }
        mcp = mcp.merge(metadata.with_state(authn));
        mcp = mcp.merge(approvals::router(Arc::new(approvals)));
    }
    mcp.merge(beside)
        .layer(RequestBodyLimitLayer::new(config.max_body_bytes))
        .layer(middleware::from_fn_with_state(policy, hygiene::check))
        .layer(middleware::from_fn_with_state(inflight, serve::track))
}
