//! One long-lived connection per upstream, restarted with backoff when it dies.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use portcullis_core::{Era, error_chain};
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    ClientIdentity, UpstreamError, UpstreamSpec,
    announce::Announcer,
    connection::{Attribution, Connection, Event, Outbound},
    frame::RpcError,
    handshake::connect,
    http::{HttpClient, http_client},
};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
// A connection that stayed up this long earns a fresh backoff after it dies.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// What an operator or a health check can know about an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamStatus {
    /// The first connection attempt has not finished.
    Starting,
    /// Connected and answering.
    Up {
        /// The era the upstream speaks.
        era: Era,
    },
    /// Down; the supervisor retries after a backoff.
    Down {
        /// Why the last attempt failed or the connection ended.
        reason: String,
        /// How many restarts have failed in a row.
        failures: u32,
    },
}

/// A change an upstream announced: a list that changed, or a resource that was updated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The upstream's configured name.
    pub upstream: Arc<str>,
    /// What changed.
    pub kind: ChangeKind,
}

/// What kind of change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// `notifications/tools/list_changed`.
    Tools,
    /// `notifications/prompts/list_changed`.
    Prompts,
    /// `notifications/resources/list_changed`.
    Resources,
    /// `notifications/resources/updated` for this URI.
    ResourceUpdated(String),
}

impl ChangeKind {
    /// The change a notification announces, if it announces one.
    pub fn of(method: &str, params: &Map<String, Value>) -> Option<Self> {
        match method {
            "notifications/tools/list_changed" => Some(Self::Tools),
            "notifications/prompts/list_changed" => Some(Self::Prompts),
            "notifications/resources/list_changed" => Some(Self::Resources),
            "notifications/resources/updated" => params
                .get("uri")
                .and_then(Value::as_str)
                .map(|uri| Self::ResourceUpdated(uri.to_owned())),
            _ => None,
        }
    }

    /// The notification that announces it.
    pub fn notification(&self) -> (&'static str, Map<String, Value>) {
        match self {
            Self::Tools => ("notifications/tools/list_changed", Map::new()),
            Self::Prompts => ("notifications/prompts/list_changed", Map::new()),
            Self::Resources => ("notifications/resources/list_changed", Map::new()),
            Self::ResourceUpdated(uri) => {
                let mut params = Map::new();
                params.insert("uri".to_owned(), uri.clone().into());
                ("notifications/resources/updated", params)
            }
        }
    }
}

/// An upstream with one shared, supervised connection.
pub struct SharedUpstream {
    spec: UpstreamSpec,
    http: HttpClient,
    live: Mutex<Option<Connection>>,
    status: watch::Sender<UpstreamStatus>,
}

impl SharedUpstream {
    /// Start supervising `spec`: connect now, and again with backoff whenever the connection
    /// ends, until `shutdown` fires. Changes it announces go to `changes`.
    pub fn start(
        spec: UpstreamSpec,
        changes: broadcast::Sender<Change>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let (status, _) = watch::channel(UpstreamStatus::Starting);
        let shared = Arc::new(Self {
            spec,
            http: http_client(),
            live: Mutex::new(None),
            status,
        });
        tokio::spawn(supervise(shared.clone(), changes, shutdown));
        shared
    }

    /// The upstream as configured.
    pub fn spec(&self) -> &UpstreamSpec {
        &self.spec
    }

    /// The pooled HTTP client for this upstream; per-session connections use it too.
    pub fn http(&self) -> &HttpClient {
        &self.http
    }

    /// The current connection, or `Unavailable` while the upstream is down.
    pub fn live(&self) -> Result<Connection, UpstreamError> {
        self.lock()
            .clone()
            .filter(|connection| !connection.is_closed())
            .ok_or_else(|| UpstreamError::Unavailable {
                upstream: self.spec.name.clone(),
            })
    }

    /// The era of the current connection; `None` while down.
    pub fn era(&self) -> Option<Era> {
        self.lock().as_ref().map(Connection::era)
    }

    /// The current connection, waiting up to `timeout` for a first or restarted one.
    pub async fn ready(&self, timeout: Duration) -> Result<Connection, UpstreamError> {
        if let Ok(live) = self.live() {
            return Ok(live);
        }
        let mut status = self.status.subscribe();
        let wait = status.wait_for(|s| matches!(s, UpstreamStatus::Up { .. }));
        // A timeout or a closed channel both mean: not up; `live` says so below.
        let _ = tokio::time::timeout(timeout, wait).await;
        self.live()
    }

    /// What the supervisor knows now.
    pub fn status(&self) -> UpstreamStatus {
        self.status.borrow().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Connection>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn supervise(
    shared: Arc<SharedUpstream>,
    changes: broadcast::Sender<Change>,
    shutdown: CancellationToken,
) {
    let name: Arc<str> = shared.spec.name.as_str().into();
    // One for the upstream's life, so that reconnecting does not start its windows over.
    let announcer = {
        let name = name.clone();
        Announcer::new(move |kind| {
            let _ = changes.send(Change {
                upstream: name.clone(),
                kind,
            });
        })
    };
    let mut backoff = FIRST_BACKOFF;
    let mut failures = 0u32;
    loop {
        let attempt = tokio::select! {
            attempt = connect(
                &shared.spec,
                shared.spec.era,
                ClientIdentity::gateway(),
                Attribution::Shared,
                &shared.http,
            ) => attempt,
            () = shutdown.cancelled() => return,
        };
        let reason = match attempt {
            Ok((connection, unattributed)) => {
                let era = connection.era();
                tracing::info!(upstream = %name, %era, transport = %shared.spec.describe(), "upstream connected");
                *shared.lock() = Some(connection.clone());
                shared.status.send_replace(UpstreamStatus::Up { era });
                tokio::spawn(drain(connection.clone(), unattributed, announcer.clone()));
                if era == Era::Stateless {
                    tokio::spawn(listen(name.clone(), connection.clone(), announcer.clone()));
                }
                let since = Instant::now();
                tokio::select! {
                    () = connection.closed() => {}
                    () = shutdown.cancelled() => {
                        *shared.lock() = None;
                        connection.close();
                        return;
                    }
                }
                *shared.lock() = None;
                if since.elapsed() >= STABLE_AFTER {
                    backoff = FIRST_BACKOFF;
                    failures = 0;
                }
                "connection ended".to_owned()
            }
            Err(error) => error_chain(&error),
        };
        failures += 1;
        tracing::warn!(upstream = %name, %reason, retry_in = ?backoff, "upstream down; restarting");
        shared
            .status
            .send_replace(UpstreamStatus::Down { reason, failures });
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// What a shared connection receives that names no request: list changes are announced;
/// SECURITY: anything else may belong to any caller and reaches none of them. A request is
/// refused so the upstream does not wait.
async fn drain(
    connection: Connection,
    mut unattributed: mpsc::Receiver<Event>,
    changes: Announcer,
) {
    while let Some(event) = unattributed.recv().await {
        match event {
            Event::Notification { method, params } => {
                if let Some(kind) = ChangeKind::of(&method, &params) {
                    changes.announce(kind);
                }
            }
            Event::Request { id, .. } => {
                let refusal = RpcError {
                    code: -32603,
                    message: "no client is waiting on this request".to_owned(),
                    data: None,
                };
                let _ = connection.reply(&id, Err(refusal)).await;
            }
            Event::Response(_) => {}
        }
    }
}

/// A stateless upstream tells of list changes only on a `subscriptions/listen` stream: keep one
/// open for as long as the connection lives, and announce what arrives.
async fn listen(name: Arc<str>, connection: Connection, changes: Announcer) {
    let filter = json!({
        "toolsListChanged": true,
        "promptsListChanged": true,
        "resourcesListChanged": true,
    });
    while !connection.is_closed() {
        let mut params = Map::new();
        params.insert("notifications".to_owned(), filter.clone());
        let mut exchange = match connection
            .send(Outbound::new("subscriptions/listen", params))
            .await
        {
            Ok(exchange) => exchange,
            Err(error) => {
                tracing::debug!(upstream = %name, %error, "no listen stream");
                return;
            }
        };
        loop {
            match exchange.next().await {
                Ok(Event::Notification { method, params }) => {
                    if let Some(kind) = ChangeKind::of(&method, &params) {
                        changes.announce(kind);
                    }
                }
                Ok(Event::Request { id, .. }) => {
                    let refusal = RpcError {
                        code: -32603,
                        message: "no client is waiting on this request".to_owned(),
                        data: None,
                    };
                    let _ = connection.reply(&id, Err(refusal)).await;
                }
                Ok(Event::Response(outcome)) => {
                    if outcome.is_error() {
                        tracing::debug!(upstream = %name, "upstream offers no listen stream");
                        return;
                    }
                    break;
                }
                Err(_) => break,
            }
        }
        // The upstream ended the stream; open another after a pause.
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = connection.closed() => return,
        }
    }
}
