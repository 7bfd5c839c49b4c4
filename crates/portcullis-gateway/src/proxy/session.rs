//! Per-session upstream connections for session-era upstreams.

use std::{collections::HashMap, sync::OnceLock};

use portcullis_core::Era;
use portcullis_mcp::{Connection, Downstream, EraPreference, Live, Relay, UpstreamError, connect};
use rmcp::{
    ErrorData as McpError, RoleServer,
    model::{InitializeRequestParams, ProtocolVersion},
    service::Peer,
};
use tokio::sync::{Mutex, OwnedSemaphorePermit};

use super::{Gateway, READY_WAIT, forward::unavailable};

/// What one downstream session (2025-11-25) owns. Stateless requests have an empty one.
#[derive(Default)]
pub(super) struct Session {
    /// Set by `initialize`: the session's client and what it declared.
    downstream: OnceLock<(Peer<RoleServer>, InitializeRequestParams)>,
    /// Connections of this session, by upstream index, each with the permit it holds; dropped
    /// (and children killed) with the session.
    connections: Mutex<HashMap<usize, (Connection, OwnedSemaphorePermit)>>,
    /// The level from the session's last `logging/setLevel`.
    log_level: std::sync::Mutex<Option<String>>,
    /// The tools its caller was last shown, for per-caller `list_changed`.
    pub(super) shown: super::live::Shown,
}

impl Session {
    pub(super) fn begin(&self, peer: Peer<RoleServer>, params: InitializeRequestParams) {
        // A second initialize on one session is a client bug; the first one stays in force.
        let _ = self.downstream.set((peer, params));
    }

    pub(super) fn set_log_level(&self, level: String) {
        *self
            .log_level
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(level);
    }

    /// The log level to ask stateless upstreams for on this session's behalf: what it chose, or
    /// everything if it never chose (session-era servers log everything until told otherwise).
    /// Stateless callers carry their own level in each request.
    pub(super) fn log_level(&self) -> Option<String> {
        if !self.is_session() {
            return None;
        }
        let chosen = self
            .log_level
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(chosen.clone().unwrap_or_else(|| "debug".to_owned()))
    }

    /// Whether this handler serves a downstream session (rather than one stateless request).
    pub(super) fn is_session(&self) -> bool {
        self.downstream.get().is_some()
    }

    /// The connection to use for upstream `index`: the session's own when both the session and
    /// the upstream are session-era, else the shared one.
    pub(super) async fn connection(
        &self,
        gateway: &Gateway,
        index: usize,
    ) -> Result<Live, McpError> {
        let upstream = &gateway.upstreams[index];
        let shared = upstream
            .shared
            .ready(READY_WAIT)
            .await
            .map_err(|e| unavailable(&e))?;
        let Some((peer, params)) = self.downstream.get() else {
            return Ok(shared);
        };
        // A session client is best served by a session of its own upstream-side, in the same
        // era, even when the upstream also speaks the stateless one: subscriptions, log levels
        // and server-to-client requests then mean exactly what they meant to the client.
        if upstream
            .stateless_only
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(shared);
        }
        let mut connections = self.connections.lock().await;
        if let Some((connection, _)) = connections.get(&index)
            && !connection.is_closed()
        {
            return Ok(live(connection, &shared));
        }
        // A closed connection gives its permit back before a new one is taken.
        connections.remove(&index);
        let Ok(permit) = gateway.session_connections.clone().try_acquire_owned() else {
            tracing::warn!(
                upstream = %upstream.shared.spec().name,
                "session connection limit reached; this session shares the gateway's connection"
            );
            return Ok(shared);
        };
        // The upstream sees the downstream client's own identity and capabilities, so it offers
        // exactly what that client can handle.
        let mut info = params.clone();
        info.protocol_version = ProtocolVersion::V_2025_11_25;
        info.meta = None;
        let relay = Relay::new(
            &upstream.shared.spec().name,
            Downstream::Session(peer.clone()),
            info,
            gateway.changes.clone(),
        );
        let connection = match connect(
            upstream.shared.spec(),
            EraPreference::Sessions,
            relay,
            upstream.shared.http(),
        )
        .await
        {
            Ok(connection) => connection,
            // It answers the stateless era but refuses `initialize`: share the stateless
            // connection from now on and bridge in the gateway.
            Err(UpstreamError::Handshake { .. }) if shared.era == Era::Stateless => {
                upstream
                    .stateless_only
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                return Ok(shared);
            }
            Err(error) => return Err(unavailable(&error)),
        };
        let live = live(&connection, &shared);
        connections.insert(index, (connection, permit));
        Ok(live)
    }
}

fn live(connection: &Connection, shared: &Live) -> Live {
    Live {
        peer: connection.peer().clone(),
        inflight: connection.service().inflight().clone(),
        era: Era::Sessions,
        capabilities: shared.capabilities.clone(),
    }
}
