//! One long-lived connection per upstream, restarted with backoff when it dies.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use portcullis_core::{Era, error_chain};
use rmcp::{
    RoleClient,
    model::{ClientConfig, ServerCapabilities, ServerNotification, SubscriptionFilter},
    service::Peer,
};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    Inflight, UpstreamError,
    relay::{Downstream, Relay},
    upstream::{UpstreamSpec, connect},
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

/// A connection usable right now.
#[derive(Clone)]
pub struct Live {
    /// Where requests go.
    pub peer: Peer<RoleClient>,
    /// The requests this connection forwards now.
    pub inflight: Inflight,
    /// The era the upstream speaks.
    pub era: Era,
    /// What the upstream said it can do.
    pub capabilities: Arc<ServerCapabilities>,
}

/// An upstream with one shared, supervised connection.
pub struct SharedUpstream {
    spec: UpstreamSpec,
    http: reqwest::Client,
    live: Mutex<Option<Live>>,
    status: watch::Sender<UpstreamStatus>,
}

impl SharedUpstream {
    /// Start supervising `spec`: connect now, and again with backoff whenever the connection
    /// ends, until `shutdown` fires.
    pub fn start(
        spec: UpstreamSpec,
        info: ClientConfig,
        changes: broadcast::Sender<ServerNotification>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let (status, _) = watch::channel(UpstreamStatus::Starting);
        let credential = match &spec.transport {
            crate::UpstreamTransport::Http { credential, .. } => credential.as_ref(),
            crate::UpstreamTransport::Stdio { .. } => None,
        };
        let http = crate::upstream::upstream_client(credential);
        let shared = Arc::new(Self {
            spec,
            http,
            live: Mutex::new(None),
            status,
        });
        tokio::spawn(supervise(shared.clone(), info, changes, shutdown));
        shared
    }

    /// The upstream as configured.
    pub fn spec(&self) -> &UpstreamSpec {
        &self.spec
    }

    /// The pooled HTTP client for this upstream; per-session connections use it too.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The current connection, or `Unavailable` while the upstream is down.
    pub fn live(&self) -> Result<Live, UpstreamError> {
        self.lock()
            .clone()
            .ok_or_else(|| UpstreamError::Unavailable {
                upstream: self.spec.name.clone(),
            })
    }

    /// The era of the current connection, without cloning it; `None` while down.
    pub fn era(&self) -> Option<Era> {
        self.lock().as_ref().map(|live| live.era)
    }

    /// The current connection, waiting up to `timeout` for a first or restarted one.
    pub async fn ready(&self, timeout: Duration) -> Result<Live, UpstreamError> {
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Live>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn supervise(
    shared: Arc<SharedUpstream>,
    info: ClientConfig,
    changes: broadcast::Sender<ServerNotification>,
    shutdown: CancellationToken,
) {
    let name = shared.spec.name.clone();
    let mut backoff = FIRST_BACKOFF;
    let mut failures = 0u32;
    loop {
        let relay = Relay::new(&name, Downstream::Shared, info.clone(), changes.clone());
        let inflight = relay.inflight().clone();
        let attempt = tokio::select! {
            attempt = connect(&shared.spec, shared.spec.era, relay, &shared.http) => attempt,
            () = shutdown.cancelled() => return,
        };
        let reason = match attempt {
            Ok(connection) => {
                let peer = connection.peer().clone();
                let (era, capabilities) = peer.peer_info().map_or_else(
                    || (Era::Sessions, ServerCapabilities::default()),
                    |info| {
                        (
                            Era::of_version(info.protocol_version.as_str()),
                            info.capabilities.clone(),
                        )
                    },
                );
                tracing::info!(upstream = %name, %era, transport = %shared.spec.describe(), "upstream connected");
                *shared.lock() = Some(Live {
                    peer,
                    inflight,
                    era,
                    capabilities: Arc::new(capabilities),
                });
                shared.status.send_replace(UpstreamStatus::Up { era });
                let listening = CancellationToken::new();
                let _stop_listening = listening.clone().drop_guard();
                if era == Era::Stateless {
                    tokio::spawn(listen(
                        name.clone(),
                        peer_of(&shared),
                        changes.clone(),
                        listening,
                    ));
                }
                let since = Instant::now();
                let stop = connection.cancellation_token();
                let waiting = connection.waiting();
                tokio::pin!(waiting);
                let quit = tokio::select! {
                    quit = &mut waiting => format!("{quit:?}"),
                    () = shutdown.cancelled() => {
                        *shared.lock() = None;
                        stop.cancel();
                        let _ = waiting.await;
                        return;
                    }
                };
                *shared.lock() = None;
                if since.elapsed() >= STABLE_AFTER {
                    backoff = FIRST_BACKOFF;
                    failures = 0;
                }
                format!("connection ended: {quit}")
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

fn peer_of(shared: &SharedUpstream) -> Option<Peer<RoleClient>> {
    shared.lock().as_ref().map(|live| live.peer.clone())
}

/// A stateless upstream tells of list changes only on a `subscriptions/listen` stream: keep one
/// open for as long as the connection lives, and publish what arrives.
async fn listen(
    name: String,
    peer: Option<Peer<RoleClient>>,
    changes: broadcast::Sender<ServerNotification>,
    stop: CancellationToken,
) {
    let Some(peer) = peer else { return };
    let filter = SubscriptionFilter::builder()
        .tools_list_changed()
        .prompts_list_changed()
        .resources_list_changed()
        .build();
    while !stop.is_cancelled() {
        let mut subscription = tokio::select! {
            () = stop.cancelled() => return,
            opened = peer.listen(filter.clone()) => match opened {
                Ok(subscription) => subscription,
                Err(error) => {
                    tracing::debug!(upstream = %name, %error, "upstream offers no listen stream");
                    return;
                }
            },
        };
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => {
                    let _ = subscription.cancel().await;
                    return;
                }
                next = subscription.next() => next,
            };
            match next {
                Ok(Some(notification)) => {
                    let _ = changes.send(notification);
                }
                Ok(None) | Err(_) => break,
            }
        }
        // The upstream ended the stream; open another after a pause.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
