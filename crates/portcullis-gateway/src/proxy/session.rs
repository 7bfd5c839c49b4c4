//! Per-session upstream connections for session-era upstreams.

use std::{collections::HashMap, sync::OnceLock};

use portcullis_core::Era;
use portcullis_mcp::{Connection, Downstream, EraPreference, Live, Relay, connect};
use rmcp::{
    ErrorData as McpError, RoleServer,
    model::{InitializeRequestParams, ProtocolVersion},
    service::Peer,
};
use tokio::sync::Mutex;

use super::{Gateway, READY_WAIT, forward::unavailable};

/// What one downstream session (2025-11-25) owns. Stateless requests have an empty one.
#[derive(Default)]
pub(super) struct Session {
    /// Set by `initialize`: the session's client and what it declared.
    downstream: OnceLock<(Peer<RoleServer>, InitializeRequestParams)>,
    /// Connections of this session, by upstream index; dropped (and children killed) with it.
    connections: Mutex<HashMap<usize, Connection>>,
}

impl Session {
    pub(super) fn begin(&self, peer: Peer<RoleServer>, params: InitializeRequestParams) {
        // A second initialize on one session is a client bug; the first one stays in force.
        let _ = self.downstream.set((peer, params));
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
        let shared = upstream.shared.ready(READY_WAIT).await.map_err(|e| unavailable(&e))?;
        let Some((peer, params)) = self.downstream.get() else { return Ok(shared) };
        if shared.era == Era::Stateless {
            return Ok(shared);
        }
        let mut connections = self.connections.lock().await;
        if let Some(connection) = connections.get(&index) {
            if !connection.is_closed() {
                return Ok(live(connection, &shared));
            }
        }
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
        let connection = connect(upstream.shared.spec(), EraPreference::Sessions, relay)
            .await
            .map_err(|e| unavailable(&e))?;
        let live = live(&connection, &shared);
        connections.insert(index, connection);
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
