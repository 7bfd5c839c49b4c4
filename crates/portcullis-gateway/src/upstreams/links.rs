//! A downstream session's own upstream connections.
//!
//! A 2025-11-25 session talking to a session-era upstream gets a session of its own there, in
//! the same era, announcing the session client's own capabilities: what the upstream says in
//! that session (log lines, elicitation, resource updates) then reaches that caller and nobody
//! else. Connections are made on first use, bounded across the gateway (past the bound, a
//! session shares the gateway's connection), and closed with the session.

use std::{collections::HashMap, sync::atomic::Ordering};

use portcullis_core::CallerId;
use portcullis_core::Era;
use portcullis_mcp::{
    Attribution, ClientIdentity, Connection, EraPreference, Event, UpstreamError, connect,
};
use tokio::sync::{Mutex, mpsc};

use super::Upstreams;

/// What one downstream session holds upstream.
pub(crate) struct SessionLinks {
    identity: ClientIdentity,
    /// Whose session it is (`None`: nobody known, under `[danger] unauthenticated`).
    owner: Option<CallerId>,
    connections: Mutex<HashMap<usize, (Connection, super::permits::Permit)>>,
    /// Where what these connections say on their own goes, with the upstream's index.
    unattributed: mpsc::Sender<(usize, Event)>,
}

impl SessionLinks {
    /// Links for `owner`'s session, whose client declared `identity`.
    pub(crate) fn new(
        owner: Option<CallerId>,
        identity: ClientIdentity,
        unattributed: mpsc::Sender<(usize, Event)>,
    ) -> Self {
        Self {
            owner,
            identity,
            connections: Mutex::new(HashMap::new()),
            unattributed,
        }
    }

    /// The session client's capabilities and identity.
    pub(crate) fn identity(&self) -> &ClientIdentity {
        &self.identity
    }

    /// The connection to use for upstream `index`: the session's own when the upstream speaks
    /// the session era, else the shared one.
    pub(crate) async fn connection(
        &self,
        upstreams: &Upstreams,
        index: usize,
    ) -> Result<Connection, UpstreamError> {
        let upstream = &upstreams.upstreams[index];
        let shared = upstreams.shared(index).await?;
        // A session client is best served by a session of its own upstream-side, in the same
        // era, even when the upstream also speaks the stateless one: subscriptions, log levels
        // and server-to-client requests then mean exactly what they meant to the client.
        if upstream.stateless_only.load(Ordering::Relaxed) {
            return Ok(shared);
        }
        let mut connections = self.connections.lock().await;
        if let Some((connection, _)) = connections.get(&index)
            && !connection.is_closed()
        {
            return Ok(connection.clone());
        }
        // A closed connection gives its permit back before a new one is taken.
        connections.remove(&index);
        let Some(permit) = upstreams.session_connections.take(self.owner.as_ref()) else {
            tracing::warn!(
                upstream = %upstreams.name(index),
                "session connection limit reached (in all, or this caller's share); this session shares the gateway's connection"
            );
            return Ok(shared);
        };
        let spec = upstream.shared.spec();
        let (connection, mut unattributed) = match connect(
            spec,
            EraPreference::Sessions,
            self.identity.clone(),
            Attribution::Owned,
            upstream.shared.http(),
        )
        .await
        {
            Ok(opened) => opened,
            // It answers the stateless era but refuses `initialize`: share the stateless
            // connection from now on and bridge in the gateway.
            Err(UpstreamError::Handshake { .. }) if shared.era() == Era::Stateless => {
                upstream.stateless_only.store(true, Ordering::Relaxed);
                return Ok(shared);
            }
            Err(error) => return Err(error),
        };
        let forward = self.unattributed.clone();
        tokio::spawn(async move {
            while let Some(event) = unattributed.recv().await {
                if forward.send((index, event)).await.is_err() {
                    return;
                }
            }
        });
        connections.insert(index, (connection.clone(), permit));
        Ok(connection)
    }

    /// The session's own connections open now, with their upstream's index.
    pub(crate) async fn open(&self) -> Vec<(usize, Connection)> {
        self.connections
            .lock()
            .await
            .iter()
            .filter(|(_, (connection, _))| !connection.is_closed())
            .map(|(index, (connection, _))| (*index, connection.clone()))
            .collect()
    }

    /// Close every connection (with the session).
    pub(crate) async fn close(&self) {
        for (_, (connection, _)) in self.connections.lock().await.drain() {
            connection.close();
        }
    }
}
