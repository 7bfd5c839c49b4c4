//! The admin listener: `/metrics` for Prometheus, and for load balancers and orchestrators
//! `/healthz` (the process answers: restart it if not) and `/readyz` (send it traffic: every
//! upstream up, a policy in force, every audit sink writable, the shared approval state
//! reachable, and not draining). Apart from the MCP endpoint, so never where callers are.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{Router, routing::get};
use http::StatusCode;

use crate::{gateway::Gateway, trail::Trail};

/// Set once shutdown began: `/readyz` answers 503 `draining` while calls still run, so that a
/// load balancer stops sending before the listener closes.
#[derive(Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    /// From now on, not ready.
    pub fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn started(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The admin app for `gateway`, whose records go to `trail`.
pub fn admin_app(trail: Trail, gateway: Arc<Gateway>, draining: Draining) -> Router {
    let metrics = trail.clone();
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let trail = metrics.clone();
                async move {
                    (
                        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        trail.render_metrics(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "alive\n" }))
        .route(
            "/readyz",
            get(move || {
                let (trail, gateway, draining) = (trail.clone(), gateway.clone(), draining.clone());
                async move { ready(&trail, &gateway, &draining).await }
            }),
        )
}

/// 200 with the policy version in force, or 503 with what is wrong, a line each.
async fn ready(trail: &Trail, gateway: &Gateway, draining: &Draining) -> (StatusCode, String) {
    let mut wrong: Vec<String> = Vec::new();
    if draining.started() {
        wrong.push("draining: shutting down".to_owned());
    }
    for (name, status) in gateway.status() {
        if !matches!(status, portcullis_mcp::UpstreamStatus::Up { .. }) {
            wrong.push(format!("upstream {name}: not connected"));
        }
    }
    for sink in trail.failing() {
        wrong.push(format!("audit {sink}: the last write failed"));
    }
    if !gateway.access.consent().reachable().await {
        wrong.push("approvals: the shared state cannot be reached".to_owned());
    }
    wrong.extend(trail.metrics().degraded().into_iter().map(str::to_owned));
    let policy = gateway
        .access
        .policy()
        .map(|engine| engine.version().to_owned());
    let mut versions = format!(
        "policy {}\n",
        policy.as_deref().unwrap_or("none (no [auth])")
    );
    if let Some(entitlements) = gateway.access.entitlements() {
        versions.push_str(&format!("entitlements {}\n", entitlements.version()));
    }
    if wrong.is_empty() {
        (StatusCode::OK, format!("ready\n{versions}"))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready\n{versions}{}\n", wrong.join("\n")),
        )
    }
}
