//! The client side of an upstream connection: what the upstream sends on its own.
//!
//! An upstream may, while the gateway waits for an answer, report progress, log, ask the user
//! (elicitation), ask the model (sampling), or say its lists changed. The relay delivers each to
//! the downstream client it belongs to. Attribution, most precise first: the HTTP response stream
//! the message arrived on (SEP-2260), the progress token the gateway minted, the downstream
//! session that owns the connection. What cannot be attributed is dropped, never broadcast or
//! guessed: one caller's upstream chatter must not reach another caller.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use rmcp::{
    ErrorData as McpError, RoleClient, RoleServer,
    model::{
        ClientConfig, ClientResult, ErrorCode, GetExtensions, ProgressToken, RequestId,
        ServerNotification, ServerRequest,
    },
    service::{
        InboundStreamOrigin, NotificationContext, OriginatingRequestId, Peer, RequestContext,
        RequestHandle, Service,
    },
};
use tokio::sync::{Notify, broadcast};

/// Who receives what an upstream connection sends on its own.
#[derive(Clone)]
pub enum Downstream {
    /// The connection belongs to one downstream session: unattributed messages go to it.
    Session(Peer<RoleServer>),
    /// The connection is shared by many callers: only attributable messages are delivered.
    Shared,
}

/// Receives upstream-initiated traffic for one connection.
#[derive(Clone)]
pub struct Relay {
    upstream: Arc<str>,
    downstream: Downstream,
    inflight: Inflight,
    info: ClientConfig,
    changes: broadcast::Sender<ServerNotification>,
}

impl Relay {
    /// A relay for a connection to `upstream`, announcing `info` (client identity and
    /// capabilities) in the handshake. List changes and resource updates a shared connection
    /// cannot attribute are published on `changes`.
    pub fn new(
        upstream: &str,
        downstream: Downstream,
        info: ClientConfig,
        changes: broadcast::Sender<ServerNotification>,
    ) -> Self {
        Self {
            upstream: upstream.into(),
            downstream,
            inflight: Inflight::default(),
            info,
            changes,
        }
    }

    /// The table of requests this connection is forwarding right now.
    pub fn inflight(&self) -> &Inflight {
        &self.inflight
    }

    fn route(&self, extensions: &rmcp::model::Extensions) -> Option<Route> {
        if let Some(InboundStreamOrigin::OutboundRequest(id)) = extensions.get()
            && let Some(entry) = self.inflight.by_request(id)
        {
            return Some(Route::Request(entry));
        }
        match &self.downstream {
            Downstream::Session(peer) => Some(Route::Session(peer.clone())),
            // SECURITY: guessing ("the only request in flight") would hand one caller's late or
            // background upstream messages to another caller; unattributable means dropped.
            Downstream::Shared => None,
        }
    }
}

enum Route {
    Request(Arc<Entry>),
    Session(Peer<RoleServer>),
}

impl Route {
    fn peer(&self) -> &Peer<RoleServer> {
        match self {
            Self::Request(entry) => &entry.peer,
            Self::Session(peer) => peer,
        }
    }
}

impl Service<RoleClient> for Relay {
    async fn handle_request(
        &self,
        mut request: ServerRequest,
        context: RequestContext<RoleClient>,
    ) -> Result<ClientResult, McpError> {
        if let ServerRequest::PingRequest(_) = request {
            return Ok(ClientResult::empty(()));
        }
        let Some(route) = self.route(&context.extensions) else {
            tracing::debug!(upstream = %self.upstream, "upstream request with no downstream to ask");
            return Err(McpError::new(
                ErrorCode::INTERNAL_ERROR,
                "no client is waiting on this request",
                None,
            ));
        };
        if let Route::Request(entry) = &route {
            // Deliver on the originating call's response stream, as the upstream did.
            request
                .extensions_mut()
                .insert(OriginatingRequestId(entry.downstream_id.clone()));
        }
        route
            .peer()
            .send_request(request)
            .await
            .map_err(|error| match error {
                rmcp::service::ServiceError::McpError(error) => error,
                other => McpError::internal_error(format!("downstream client: {other}"), None),
            })
    }

    async fn handle_notification(
        &self,
        mut notification: ServerNotification,
        context: NotificationContext<RoleClient>,
    ) -> Result<(), McpError> {
        let route = match &mut notification {
            ServerNotification::ProgressNotification(progress) => {
                let Some(entry) = self
                    .inflight
                    .by_progress(&progress.params.progress_token)
                    .await
                else {
                    return Ok(());
                };
                // The caller named its own token, or asked for no progress at all.
                let Some(token) = entry.progress.clone() else {
                    return Ok(());
                };
                progress.params.progress_token = token;
                Route::Request(entry)
            }
            ServerNotification::ToolListChangedNotification(_)
            | ServerNotification::PromptListChangedNotification(_)
            | ServerNotification::ResourceListChangedNotification(_)
            | ServerNotification::ResourceUpdatedNotification(_) => {
                match &self.downstream {
                    Downstream::Session(peer) => Route::Session(peer.clone()),
                    Downstream::Shared => {
                        // Nobody listening is fine: the next list call sees the change anyway.
                        let _ = self.changes.send(notification);
                        return Ok(());
                    }
                }
            }
            ServerNotification::SubscriptionsAcknowledgedNotification(_) => return Ok(()),
            // Logging, cancellation, task status, custom and future kinds: whoever we can
            // attribute them to, else nobody.
            _ => {
                let Some(route) = self.route(&context.extensions) else {
                    return Ok(());
                };
                route
            }
        };
        let entry = match &route {
            Route::Request(entry) => Some(entry.clone()),
            Route::Session(_) => None,
        };
        if let Some(entry) = &entry {
            entry.delivering.fetch_add(1, Ordering::SeqCst);
            entry.seen.fetch_add(1, Ordering::SeqCst);
        }
        if let Err(error) = route.peer().send_notification(notification).await {
            tracing::debug!(upstream = %self.upstream, %error, "downstream gone; notification dropped");
        }
        if let Some(entry) = entry
            && entry.delivering.fetch_sub(1, Ordering::SeqCst) == 1
        {
            entry.delivered.notify_waiters();
        }
        Ok(())
    }

    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }
}

/// The downstream end of one forwarded request.
struct Entry {
    peer: Peer<RoleServer>,
    downstream_id: RequestId,
    progress: Option<ProgressToken>,
    /// Notifications for this request being delivered right now. rmcp hands each notification
    /// to its own task, so the answer can overtake them; the forwarder waits for these to land
    /// before it answers, so the caller sees progress and logs before the result, as sent.
    delivering: AtomicUsize,
    delivered: Notify,
    /// Notifications for this request whose delivery has started, ever.
    seen: AtomicUsize,
}

/// Requests a connection is forwarding now, by upstream request id and upstream progress token.
#[derive(Clone, Default)]
pub struct Inflight(Arc<Mutex<Maps>>);

#[derive(Default)]
struct Maps {
    by_request: HashMap<RequestId, Arc<Entry>>,
    by_progress: HashMap<ProgressToken, Arc<Entry>>,
}

impl Inflight {
    /// Remember that `handle` forwards the downstream request of `context` until the guard drops.
    pub fn register(
        &self,
        handle: &RequestHandle<RoleClient>,
        context: &RequestContext<RoleServer>,
    ) -> InflightGuard {
        let entry = Arc::new(Entry {
            peer: context.peer.clone(),
            downstream_id: context.id.clone(),
            progress: context.meta.get_progress_token(),
            delivering: AtomicUsize::new(0),
            delivered: Notify::new(),
            seen: AtomicUsize::new(0),
        });
        let mut maps = self.lock();
        maps.by_request.insert(handle.id.clone(), entry.clone());
        maps.by_progress
            .insert(handle.progress_token.clone(), entry.clone());
        InflightGuard {
            entry,
            inflight: self.clone(),
            request: handle.id.clone(),
            progress: handle.progress_token.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        // A panic elsewhere while holding the lock leaves plain maps behind: still usable.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn by_request(&self, id: &RequestId) -> Option<Arc<Entry>> {
        self.lock().by_request.get(id).cloned()
    }

    async fn by_progress(&self, token: &ProgressToken) -> Option<Arc<Entry>> {
        // The upstream can report progress before `register` ran: the request is on the wire
        // a moment before its handle comes back. Wait briefly rather than lose the report.
        for _ in 0..20 {
            if let Some(entry) = self.lock().by_progress.get(token).cloned() {
                return Some(entry);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        None
    }
}

/// Removes a forwarded request from the in-flight table when the forwarding ends, however it ends.
pub struct InflightGuard {
    entry: Arc<Entry>,
    inflight: Inflight,
    request: RequestId,
    progress: ProgressToken,
}

impl InflightGuard {
    /// Wait, briefly, until notifications that arrived before the answer have been delivered.
    pub async fn settled(&self) {
        let wait = async {
            let mut last_seen = None;
            loop {
                // Let notification tasks rmcp spawned before it handed over the answer start.
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                loop {
                    let delivered = self.entry.delivered.notified();
                    if self.entry.delivering.load(Ordering::SeqCst) == 0 {
                        break;
                    }
                    delivered.await;
                }
                // A caller that asked for progress also waits out a short quiet spell: a
                // notification task that had not started yet would otherwise lose the race to
                // the answer (seen under load), and the caller would drop what came late.
                let seen = self.entry.seen.load(Ordering::SeqCst);
                if self.entry.progress.is_none() || last_seen == Some(seen) {
                    return;
                }
                last_seen = Some(seen);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        // A stuck downstream must not hold the answer forever.
        let _ = tokio::time::timeout(Duration::from_secs(1), wait).await;
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let mut maps = self.inflight.lock();
        maps.by_request.remove(&self.request);
        maps.by_progress.remove(&self.progress);
    }
}
