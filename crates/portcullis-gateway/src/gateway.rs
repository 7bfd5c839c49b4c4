//! The gateway as one value: its access part, its upstreams and its downstream sessions.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use portcullis_mcp::UpstreamStatus;
use portcullis_policy::PolicyEngine;
use tokio_util::sync::CancellationToken;

use crate::{
    access::Access, config::Config, entitlements::Entitlements, mcp::Sessions, trail::Trail,
    upstreams::Upstreams,
};

/// Built once per process.
pub struct Gateway {
    /// Who may do what, and the records of it.
    pub access: Arc<Access>,
    /// The servers behind the gateway.
    pub upstreams: Arc<Upstreams>,
    /// Live 2025-11-25 sessions.
    pub(crate) sessions: Arc<Sessions>,
    /// 2026-07-28 calls whose upstream asked a question, waiting for the caller's answer.
    pub(crate) bridge: crate::mcp::Bridge,
}

impl Gateway {
    /// Start supervising every configured upstream and following live entitlements. Returns at
    /// once; upstreams connect in the background and [`Gateway::wait_ready`] waits for them.
    pub fn start(config: &Config, shutdown: &CancellationToken) -> Arc<Self> {
        let gateway = Arc::new(Self {
            access: Arc::new(Access::new(config)),
            upstreams: Arc::new(Upstreams::start(config, shutdown)),
            sessions: Arc::new(Sessions::new(
                config.session_idle_timeout,
                config.cluster.replica.as_deref(),
            )),
            bridge: crate::mcp::Bridge::default(),
        });
        if let Some(entitlements) = gateway.access.entitlements().cloned() {
            tokio::spawn(watch_entitlements(
                Arc::downgrade(&gateway.access),
                entitlements,
                shutdown.child_token(),
            ));
        }
        tokio::spawn(forget_changed_tools(
            Arc::downgrade(&gateway.upstreams),
            gateway.upstreams.changes(),
            shutdown.child_token(),
        ));
        if gateway.upstreams.pins.stored() {
            tokio::spawn(reread_pins(
                Arc::downgrade(&gateway.upstreams),
                shutdown.child_token(),
            ));
        }
        tokio::spawn(sweep_parked(
            Arc::downgrade(&gateway),
            shutdown.child_token(),
        ));
        tokio::spawn(sweep_sessions(
            Arc::downgrade(&gateway.sessions),
            config.session_idle_timeout,
            shutdown.child_token(),
        ));
        gateway
    }

    /// Wait up to `timeout` for every upstream's first connection; report each one's status.
    pub async fn wait_ready(&self, timeout: Duration) -> Vec<(String, UpstreamStatus)> {
        self.upstreams.wait_ready(timeout).await
    }

    /// Each upstream's name and status.
    pub fn status(&self) -> Vec<(String, UpstreamStatus)> {
        self.upstreams.status()
    }

    /// Put `engine` in force for every decision from now on; every connected caller's view is
    /// recomputed.
    pub fn reload_policy(&self, engine: Arc<PolicyEngine>, shadow: Option<Arc<PolicyEngine>>) {
        self.access.reload_policy(engine, shadow);
    }

    /// How many per-session upstream connections are held now.
    pub fn session_connections_in_use(&self) -> usize {
        self.upstreams.session_connections_in_use()
    }

    /// How many 2025-11-25 sessions are live.
    pub fn sessions_open(&self) -> usize {
        self.sessions.len()
    }

    /// Record decisions to `trail`.
    pub fn attach_trail(&self, trail: Trail) {
        self.upstreams.pins.attach_trail(trail.clone());
        self.access.attach_trail(trail);
    }
}

/// Re-read the entitlements file every `refresh` while the gateway lives.
async fn watch_entitlements(
    access: Weak<Access>,
    entitlements: Arc<Entitlements>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(entitlements.refresh()) => {}
        }
        let Some(access) = access.upgrade() else {
            return;
        };
        let metrics = access.trail().metrics();
        match entitlements.reload() {
            Ok(true) => {
                tracing::info!("entitlements changed");
                metrics.entitlements(true);
                access.changed();
            }
            Ok(false) => {}
            Err(error) => {
                // Loud: a disable or a role removal in this change is not in effect.
                tracing::error!(%error, "entitlements file rejected; the previous reading is still enforced");
                metrics.entitlements(false);
            }
        }
    }
}

/// Forget the learned tool definitions when an upstream says its tools changed, so that the
/// next call decides on annotations read again, never on ones the upstream withdrew.
async fn forget_changed_tools(
    upstreams: Weak<crate::upstreams::Upstreams>,
    mut changes: tokio::sync::broadcast::Receiver<portcullis_mcp::Change>,
    stop: CancellationToken,
) {
    loop {
        let change = tokio::select! {
            () = stop.cancelled() => return,
            change = changes.recv() => change,
        };
        let forget = match change {
            Ok(change) => change.kind == portcullis_mcp::ChangeKind::Tools,
            // Missed changes may have been tool changes.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let Some(upstreams) = upstreams.upgrade() else {
            return;
        };
        if forget {
            upstreams.forget_tools().await;
        }
    }
}

/// Read the operator's approvals of changed definitions (`portcullis pins approve`) every
/// two seconds while the gateway lives.
async fn reread_pins(upstreams: Weak<crate::upstreams::Upstreams>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        let Some(upstreams) = upstreams.upgrade() else {
            return;
        };
        upstreams.reread_pins().await;
    }
}

/// Let go of parked 2026-07-28 requests nobody came back for, even when no new one is parked.
async fn sweep_parked(gateway: Weak<Gateway>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(10)) => {}
        }
        let Some(gateway) = gateway.upgrade() else {
            return;
        };
        gateway.bridge.sweep();
    }
}

/// End idle sessions (and their upstream connections) while the gateway lives.
async fn sweep_sessions(sessions: Weak<Sessions>, idle: Duration, stop: CancellationToken) {
    let every = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                if let Some(sessions) = sessions.upgrade() {
                    sessions.close_all();
                }
                return;
            }
            () = tokio::time::sleep(every) => {}
        }
        let Some(sessions) = sessions.upgrade() else {
            return;
        };
        sessions.sweep();
    }
}
