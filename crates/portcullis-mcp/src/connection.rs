//! One MCP connection to an upstream, whatever carries it: requests go out, and each comes back
//! as an [`Exchange`] that yields what relates to it (progress, log lines, the upstream's own
//! requests) and then its answer. What belongs to no request goes to the connection's owner.
//!
//! Attribution, most precise first: the HTTP response stream a message arrived on (that POST's
//! exchange), the progress token the connection minted, and, on a connection that serves one
//! downstream session, the only request in flight. SECURITY: on a connection shared by many
//! callers nothing is guessed: a message that names no request of its own is handed to the
//! owner, which passes on only list changes, never one caller's traffic to another.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use http::{HeaderName, HeaderValue};
use portcullis_core::Era;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    ClientIdentity, UpstreamError,
    frame::{self, Frame, Outcome, RpcError},
    http::{Endpoint, HttpBody},
    stdio::Pipe,
};

const PROTOCOL_KEY_PREFIX: &str = "io.modelcontextprotocol/";
const PROTOCOL_VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";
const CAPABILITIES_KEY: &str = "io.modelcontextprotocol/clientCapabilities";
const CLIENT_INFO_KEY: &str = "io.modelcontextprotocol/clientInfo";
const PROGRESS_TOKEN_KEY: &str = "progressToken";
const SUBSCRIPTION_KEY: &str = "io.modelcontextprotocol/subscriptionId";
// Messages an exchange may hold unread before more are dropped (a caller that stopped
// reading must not make the gateway buffer an upstream's chatter without bound).
const EXCHANGE_BACKLOG: usize = 256;

/// What the upstream said about itself in the handshake.
#[derive(Debug, Clone)]
pub struct Negotiated {
    /// The era it speaks.
    pub era: Era,
    /// The protocol version agreed.
    pub version: String,
    /// What it can do.
    pub capabilities: Map<String, Value>,
    /// Who it says it is.
    pub server_info: Value,
    /// Its instructions for the model, if any.
    pub instructions: Option<String>,
}

/// Something an upstream sent.
#[derive(Debug)]
pub enum Event {
    /// A notification.
    Notification {
        /// Its method.
        method: String,
        /// Its params.
        params: Map<String, Value>,
    },
    /// A request of the upstream's own; answer it with [`Connection::reply`].
    Request {
        /// Its id, to answer with.
        id: Value,
        /// Its method.
        method: String,
        /// Its params.
        params: Map<String, Value>,
    },
    /// The answer that ends an exchange.
    Response(Outcome),
}

/// A request for an upstream.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// The method.
    pub method: String,
    /// Its params, `_meta` included; the connection adapts `_meta` to the upstream's era.
    pub params: Map<String, Value>,
    /// Whether the caller asked for progress: the connection then sets a token of its own.
    pub progress: bool,
    /// `Mcp-Param-*` headers for a stateless HTTP upstream (see [`crate::param_headers`]).
    pub param_headers: Vec<(HeaderName, HeaderValue)>,
    /// The `Authorization` this request carries instead of the gateway's own at an HTTP
    /// upstream: a token issued for this upstream on the caller's behalf.
    pub authorization: Option<HeaderValue>,
}

impl Outbound {
    /// A request with `params` and nothing else.
    pub fn new(method: &str, params: Map<String, Value>) -> Self {
        Self {
            method: method.to_owned(),
            params,
            progress: false,
            param_headers: Vec::new(),
            authorization: None,
        }
    }
}

/// Who a connection's unattributed traffic belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribution {
    /// One downstream session: what names no request may go to the only one in flight.
    Owned,
    /// Many callers: only what names its request is delivered to it.
    Shared,
}

/// A live connection. Clones share it; it closes when the last one drops.
#[derive(Clone)]
pub struct Connection(pub(crate) Arc<Inner>);

pub(crate) enum Wire {
    Stdio(Pipe),
    Http(Box<Endpoint>),
}

pub(crate) struct Inner {
    pub(crate) upstream: Arc<str>,
    pub(crate) wire: Wire,
    identity: ClientIdentity,
    attribution: Attribution,
    next_id: AtomicU64,
    routes: Mutex<Routes>,
    unattributed: mpsc::Sender<Event>,
    negotiated: OnceLock<Negotiated>,
    pub(crate) closed: CancellationToken,
}

#[derive(Default)]
struct Routes {
    by_id: HashMap<u64, mpsc::Sender<Event>>,
    by_token: HashMap<u64, u64>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.closed.cancel();
        if let Wire::Http(endpoint) = &self.wire {
            endpoint.end_session();
        }
    }
}

impl Connection {
    pub(crate) fn new(
        upstream: &str,
        wire: Wire,
        identity: ClientIdentity,
        attribution: Attribution,
    ) -> (Self, mpsc::Receiver<Event>) {
        let (unattributed, receiver) = mpsc::channel(EXCHANGE_BACKLOG);
        let inner = Inner {
            upstream: upstream.into(),
            wire,
            identity,
            attribution,
            next_id: AtomicU64::new(1),
            routes: Mutex::new(Routes::default()),
            unattributed,
            negotiated: OnceLock::new(),
            closed: CancellationToken::new(),
        };
        (Self(Arc::new(inner)), receiver)
    }

    /// The upstream's configured name.
    pub fn upstream(&self) -> &str {
        &self.0.upstream
    }

    /// What the handshake agreed. (Set once the connection is handed out.)
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.0.negotiated.get()
    }

    pub(crate) fn set_negotiated(&self, negotiated: Negotiated) {
        let _ = self.0.negotiated.set(negotiated);
    }

    /// The era the upstream speaks (the session era until the handshake says otherwise).
    pub fn era(&self) -> Era {
        self.negotiated().map_or(Era::Sessions, |n| n.era)
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.0.closed.is_cancelled()
    }

    /// Wait until the connection ends.
    pub async fn closed(&self) {
        self.0.closed.cancelled().await;
    }

    /// End the connection now (a session upstream is told with DELETE; a child is killed).
    pub fn close(&self) {
        self.0.closed.cancel();
        self.0.routes().by_id.clear();
    }

    /// Send `request` and return its exchange.
    pub async fn send(&self, mut request: Outbound) -> Result<Exchange, UpstreamError> {
        if self.is_closed() {
            return Err(self.closed_error());
        }
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        self.adapt_meta(&mut request, id);
        let body = frame::request(id, &request.method, &request.params);
        match &self.0.wire {
            Wire::Stdio(pipe) => {
                let (sender, receiver) = mpsc::channel(EXCHANGE_BACKLOG);
                {
                    let mut routes = self.0.routes();
                    routes.by_id.insert(id, sender);
                    if request.progress {
                        routes.by_token.insert(id, id);
                    }
                }
                let exchange = Exchange {
                    id,
                    connection: self.clone(),
                    source: Source::Channel(receiver),
                    finished: false,
                    authorization: None,
                };
                pipe.write(body).await.map_err(|error| {
                    self.close();
                    UpstreamError::Transport {
                        upstream: self.0.upstream.to_string(),
                        reason: format!("cannot write to the child: {error}"),
                    }
                })?;
                Ok(exchange)
            }
            Wire::Http(endpoint) => {
                let body = endpoint.request(self, &request, body).await?;
                Ok(Exchange {
                    id,
                    connection: self.clone(),
                    source: Source::Http(body),
                    finished: false,
                    authorization: request.authorization,
                })
            }
        }
    }

    /// Send a notification.
    pub async fn notify(
        &self,
        method: &str,
        params: Map<String, Value>,
    ) -> Result<(), UpstreamError> {
        let mut notification = Outbound::new(method, params);
        self.adapt_notification_meta(&mut notification);
        let body = frame::notification(method, &notification.params);
        self.deliver(body, Some(method), None).await
    }

    /// Answer a request the upstream sent.
    pub async fn reply(
        &self,
        id: &Value,
        outcome: Result<Value, RpcError>,
    ) -> Result<(), UpstreamError> {
        self.deliver(frame::response(id, outcome), None, None).await
    }

    /// Send a one-way message; over HTTP with `authorization` instead of the gateway's own
    /// credential (the caller's, for what is sent about its request).
    async fn deliver(
        &self,
        body: Vec<u8>,
        method: Option<&str>,
        authorization: Option<&HeaderValue>,
    ) -> Result<(), UpstreamError> {
        if self.is_closed() {
            return Err(self.closed_error());
        }
        match &self.0.wire {
            Wire::Stdio(pipe) => pipe.write(body).await.map_err(|error| {
                self.close();
                UpstreamError::Transport {
                    upstream: self.0.upstream.to_string(),
                    reason: format!("cannot write to the child: {error}"),
                }
            }),
            Wire::Http(endpoint) => {
                endpoint
                    .send_one_way(self, body, method, authorization)
                    .await
            }
        }
    }

    fn closed_error(&self) -> UpstreamError {
        UpstreamError::Unavailable {
            upstream: self.0.upstream.to_string(),
        }
    }

    /// `_meta` as the upstream's era wants it: a session-era upstream gets none of the
    /// stateless era's keys; a stateless one gets the version agreed and the client's
    /// capabilities on every request. The caller's progress token never travels: the
    /// connection mints its own (the request id) when the caller asked for progress.
    fn adapt_meta(&self, request: &mut Outbound, id: u64) {
        let mut meta = match request.params.remove("_meta") {
            Some(Value::Object(meta)) => meta,
            _ => Map::new(),
        };
        meta.remove(PROGRESS_TOKEN_KEY);
        self.adapt_era_keys(&mut meta);
        if request.progress {
            meta.insert(PROGRESS_TOKEN_KEY.to_owned(), id.into());
        }
        if !meta.is_empty() {
            request
                .params
                .insert("_meta".to_owned(), Value::Object(meta));
        }
    }

    fn adapt_notification_meta(&self, notification: &mut Outbound) {
        if let Some(Value::Object(meta)) = notification.params.get_mut("_meta") {
            if self.era() == Era::Sessions {
                meta.retain(|key, _| !key.starts_with(PROTOCOL_KEY_PREFIX));
            }
            if meta.is_empty() {
                notification.params.remove("_meta");
            }
        }
    }

    fn adapt_era_keys(&self, meta: &mut Map<String, Value>) {
        match self.negotiated() {
            Some(negotiated) if negotiated.era == Era::Stateless => {
                meta.insert(
                    PROTOCOL_VERSION_KEY.to_owned(),
                    negotiated.version.clone().into(),
                );
                if !meta.contains_key(CAPABILITIES_KEY) {
                    meta.insert(
                        CAPABILITIES_KEY.to_owned(),
                        Value::Object(self.0.identity.capabilities.clone()),
                    );
                }
                if !meta.contains_key(CLIENT_INFO_KEY) {
                    meta.insert(CLIENT_INFO_KEY.to_owned(), self.0.identity.info.clone());
                }
            }
            // During the handshake the handshake writes its own `_meta`.
            None => {}
            Some(_) => meta.retain(|key, _| !key.starts_with(PROTOCOL_KEY_PREFIX)),
        }
    }

    /// Route one message the upstream sent outside any HTTP response stream (stdio, or a
    /// session's GET stream).
    pub(crate) fn dispatch(&self, frame: Frame) {
        let event = match frame {
            Frame::Response { id, outcome } => {
                let sender = id
                    .as_ref()
                    .and_then(Value::as_u64)
                    .and_then(|id| self.0.routes().by_id.remove(&id));
                if let Some(sender) = sender {
                    let _ = sender.try_send(Event::Response(outcome));
                } else {
                    tracing::debug!(upstream = %self.0.upstream, "answer to no request in flight dropped");
                }
                return;
            }
            Frame::Request { id, method, params } => Event::Request { id, method, params },
            Frame::Notification { method, params } => Event::Notification { method, params },
        };
        let routed = {
            let routes = self.0.routes();
            let by_token = match &event {
                Event::Notification { params, .. } => params
                    .get(PROGRESS_TOKEN_KEY)
                    .and_then(Value::as_u64)
                    .and_then(|token| routes.by_token.get(&token))
                    .and_then(|id| routes.by_id.get(id))
                    .or_else(|| {
                        // A `subscriptions/listen` stream's notifications name it.
                        let subscription = params.get("_meta")?.get(SUBSCRIPTION_KEY)?.as_u64()?;
                        routes.by_id.get(&subscription)
                    }),
                _ => None,
            };
            by_token
                .or_else(|| match (self.0.attribution, routes.by_id.len()) {
                    (Attribution::Owned, 1) => routes.by_id.values().next(),
                    _ => None,
                })
                .cloned()
        };
        match routed {
            Some(sender) => self.hand(&sender, event),
            None => self.hand(&self.0.unattributed, event),
        }
    }

    fn hand(&self, to: &mpsc::Sender<Event>, event: Event) {
        if let Err(error) = to.try_send(event) {
            let event = error.into_inner();
            if let Event::Request { id, .. } = event {
                // Nobody can answer it: tell the upstream rather than leave it waiting.
                let connection = self.clone();
                tokio::spawn(async move {
                    let refusal = RpcError {
                        code: -32603,
                        message: "no client is waiting on this request".to_owned(),
                        data: None,
                    };
                    let _ = connection.reply(&id, Err(refusal)).await;
                });
            } else {
                tracing::debug!(upstream = %self.0.upstream, "upstream message dropped: nobody reads it");
            }
        }
    }

    pub(crate) fn forget(&self, id: u64) {
        let mut routes = self.0.routes();
        routes.by_id.remove(&id);
        routes.by_token.remove(&id);
    }
}

impl Inner {
    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One request in flight: what relates to it, then its answer.
pub struct Exchange {
    id: u64,
    connection: Connection,
    source: Source,
    finished: bool,
    /// What the request carried instead of the gateway's credential: what is sent about it
    /// (answers to the upstream's questions, its cancellation) carries it too.
    authorization: Option<HeaderValue>,
}

enum Source {
    Channel(mpsc::Receiver<Event>),
    Http(HttpBody),
}

impl Exchange {
    /// The id the request carries upstream (also its progress token, if it has one).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The connection it runs on.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Answer a question the upstream asked during this request, as the request was sent
    /// (with its own credential, if it had one).
    pub async fn reply(
        &self,
        id: &Value,
        outcome: Result<Value, RpcError>,
    ) -> Result<(), UpstreamError> {
        let body = frame::response(id, outcome);
        self.connection
            .deliver(body, None, self.authorization.as_ref())
            .await
    }

    /// The next thing the upstream sent about this request; after a [`Event::Response`] the
    /// exchange is over. An error means it will not be answered (the connection or its stream
    /// ended, or the upstream broke the protocol).
    pub async fn next(&mut self) -> Result<Event, UpstreamError> {
        if self.finished {
            return Err(self.ended("the exchange is over"));
        }
        let event = match &mut self.source {
            Source::Channel(receiver) => tokio::select! {
                event = receiver.recv() => event.ok_or_else(|| self.connection.closed_error())?,
                () = self.connection.0.closed.cancelled() => return Err(self.connection.closed_error()),
            },
            Source::Http(body) => body.next(&self.connection).await?,
        };
        if matches!(event, Event::Response(_)) {
            self.finished = true;
        }
        Ok(event)
    }

    /// Wait for the answer, answering whatever the upstream asks meanwhile with an error
    /// (for the gateway's own requests, which no client waits on).
    pub async fn answer(mut self) -> Result<Outcome, UpstreamError> {
        loop {
            match self.next().await? {
                Event::Response(outcome) => return Ok(outcome),
                Event::Request { id, .. } => {
                    let refusal = RpcError {
                        code: -32603,
                        message: "no client is waiting on this request".to_owned(),
                        data: None,
                    };
                    let _ = self.reply(&id, Err(refusal)).await;
                }
                Event::Notification { .. } => {}
            }
        }
    }

    fn ended(&self, reason: &str) -> UpstreamError {
        UpstreamError::Transport {
            upstream: self.connection.0.upstream.to_string(),
            reason: reason.to_owned(),
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.connection.forget(self.id);
        if self.finished || self.connection.is_closed() {
            return;
        }
        // Abandoned before its answer (the caller went away, or timed out): the upstream may
        // stop working on it.
        let connection = self.connection.clone();
        let id = self.id;
        let authorization = self.authorization.take();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let mut params = Map::new();
                params.insert("requestId".to_owned(), id.into());
                params.insert("reason".to_owned(), "cancelled by the client".into());
                let mut notification = Outbound::new("notifications/cancelled", params);
                connection.adapt_notification_meta(&mut notification);
                let body = frame::notification(&notification.method, &notification.params);
                let _ = connection
                    .deliver(
                        body,
                        Some("notifications/cancelled"),
                        authorization.as_ref(),
                    )
                    .await;
            });
        }
    }
}
