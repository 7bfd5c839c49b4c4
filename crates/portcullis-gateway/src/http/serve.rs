//! The listener loop: admission per address, TCP_NODELAY, the deadline for a first byte and a
//! TLS handshake, and graceful shutdown that lets calls finish (each connection is served by
//! `connection`).

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::Request, extract::State, middleware::Next, response::Response};
use http::Method;
use tokio::{net::TcpListener, sync::Notify};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Counts MCP calls in progress (POSTs), so shutdown can wait for them and only for them: SSE
/// streams stay open forever and must not hold shutdown up.
#[derive(Clone, Default)]
pub struct Inflight(Arc<(AtomicUsize, Notify, CancellationToken)>);

impl Inflight {
    /// Fires when shutdown begins: what waits on purpose (a held-back refusal) stops waiting.
    pub(crate) fn draining(&self) -> CancellationToken {
        self.0.2.clone()
    }

    async fn drained(&self) {
        loop {
            let notified = self.0.1.notified();
            if self.0.0.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

struct Ticket(Inflight);

/// Marks an answer that stays open until the client leaves: not a call shutdown waits for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LongLived;

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.0.0.0.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.0.1.notify_waiters();
        }
    }
}

pub(super) async fn track(
    State(inflight): State<Inflight>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    inflight.0.0.fetch_add(1, Ordering::SeqCst);
    let ticket = Ticket(inflight);
    let response = next.run(request).await;
    // A stream that lasts until the client leaves (`subscriptions/listen`) is no call in
    // progress: shutdown ends it instead of waiting for it.
    if response.extensions().get::<LongLived>().is_some() {
        return response;
    }
    // An SSE answer to a call is still in progress until its body ends; keep the ticket alive
    // as long as the body.
    holding(response, ticket)
}

/// `response`, with `held` kept until its body has ended or been dropped.
pub(super) fn holding<T: Send + Sync + 'static>(response: Response, held: T) -> Response {
    let (parts, body) = response.into_parts();
    let body = axum::body::Body::new(http_body_util::BodyExt::map_frame(body, move |frame| {
        let _ = &held;
        frame
    }));
    Response::from_parts(parts, body)
}

/// What the listener loop needs from the configuration.
#[derive(Debug, Clone)]
pub struct Listening {
    /// TLS, if the listener serves it.
    pub tls: Option<super::Tls>,
    /// Sources that open each connection with a PROXY header (trusted load balancers).
    pub proxy_from: Vec<super::proxy::Net>,
    /// Time allowed to send request headers (and the first byte).
    pub header_timeout: Duration,
    /// Time in-flight calls get to finish on shutdown.
    pub grace: Duration,
    /// Connections one source address may hold before any request on them authenticated.
    pub unauthenticated_connections: usize,
    /// Connections one source address may hold at all.
    pub connections_per_address: usize,
}

impl Listening {
    /// These settings, serving `tls` (see [`crate::config::Config::load_tls`]).
    #[must_use]
    pub fn with_tls(self, tls: Option<super::Tls>) -> Self {
        Self { tls, ..self }
    }

    /// The listener settings of `config`.
    pub fn of(config: &crate::config::Config) -> Self {
        Self {
            tls: None,
            proxy_from: config.proxy_protocol.clone(),
            header_timeout: config.header_timeout,
            grace: config.shutdown_grace,
            unauthenticated_connections: config.limits.unauthenticated_connections,
            connections_per_address: config.limits.connections_per_address,
        }
    }
}

/// Connections refused, told in one warning a second at most (a flood of them must not
/// become a flood of log lines).
#[derive(Default)]
struct Refusals {
    since: Option<std::time::Instant>,
    count: u64,
}

/// The listener's refusals, noted by the accept loop and by connection tasks (whose clients
/// are known only once a PROXY header is read).
#[derive(Clone, Default)]
struct Refused(std::sync::Arc<std::sync::Mutex<Refusals>>);

impl Refused {
    fn note(&self, why: &'static str) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .note(why);
    }
}

impl Refusals {
    fn note(&mut self, why: &'static str) {
        self.count += 1;
        if self
            .since
            .is_none_or(|since| since.elapsed() >= Duration::from_secs(1))
        {
            tracing::warn!(
                refused = self.count,
                max = MAX_CONNECTIONS,
                "connections refused: {why}"
            );
            self.since = Some(std::time::Instant::now());
            self.count = 0;
        }
    }
}

/// Connections open at once; past it, new ones are closed as they come.
const MAX_CONNECTIONS: usize = 8192;

/// Serve `app` on `listener` until `shutdown` fires; then stop accepting, let in-flight calls
/// finish (at most `grace`), end the SSE streams through `streams`, and return.
pub async fn run(
    listener: TcpListener,
    app: Router,
    listening: Listening,
    inflight: Inflight,
    streams: CancellationToken,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let Listening {
        tls,
        proxy_from,
        header_timeout,
        grace,
        unauthenticated_connections,
        connections_per_address,
    } = listening;
    let sources = super::peer::Sources::new(connections_per_address, unauthenticated_connections);
    if let Some(tls) = &tls {
        tls.watch(shutdown.clone());
    }
    // Every connection's task, and the signal for them to finish what they have open and end.
    let (connections, closing) = (TaskTracker::new(), CancellationToken::new());
    let builders = super::connection::Builders::new(header_timeout);
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let refused = Refused::default();
    loop {
        let (stream, from) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or similar: back off briefly rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Full: this connection is closed at once, the ones open are served.
            refused.note("the gateway holds its most connections");
            continue;
        };
        // From a trusted balancer the client's address comes in a PROXY header, read in the
        // connection's own task; it is admitted per address once known.
        let proxied = proxy_from.iter().any(|net| net.contains(from.ip()));
        let admitted = if proxied {
            None
        } else {
            let Some(peer) = sources.arrived(from.ip()) else {
                // SECURITY: one address cannot hold every slot, signed in or not, and fewer
                // still with connections that never sign in.
                refused.note("one address holds its most connections");
                continue;
            };
            Some(peer)
        };
        let app = app.clone();
        let builders = builders.clone();
        let closing = closing.clone();
        let tls = tls.clone();
        let sources = sources.clone();
        let refused = refused.clone();
        connections.spawn(async move {
            let _slot = slot;
            // One deadline for the PROXY header, the first byte and, with TLS, the whole
            // handshake: a connection that sends nothing, or stalls in any of them, is closed
            // after the same time (hyper's header timeout starts with the first byte).
            let deadline = tokio::time::Instant::now() + header_timeout;
            let mut stream = stream;
            let peer = match admitted {
                Some(peer) => peer,
                None => {
                    let read = tokio::time::timeout_at(
                        deadline,
                        super::proxy::read_header(&mut stream, from),
                    )
                    .await;
                    let client = match read {
                        Ok(Ok(client)) => client,
                        Ok(Err(why)) => {
                            tracing::debug!(%from, why, "a connection from a PROXY source refused");
                            refused.note("a PROXY source sent no valid header");
                            return;
                        }
                        Err(_) => return,
                    };
                    let Some(peer) = sources.arrived(client.ip()) else {
                        refused.note("one address holds its most connections");
                        return;
                    };
                    peer
                }
            };
            // Without it, small SSE frames wait for delayed ACKs: about 40 ms per reply.
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, "cannot set TCP_NODELAY");
            }
            let mut first = [0u8; 1];
            let sent = tokio::time::timeout_at(deadline, stream.peek(&mut first)).await;
            if !matches!(sent, Ok(Ok(read)) if read > 0) {
                return;
            }
            // HTTP/1.1 in the clear: HTTP/2 there needs prior knowledge, which no MCP client
            // uses.
            let served = match tls {
                None => builders.serve(stream, false, (app, peer), closing).await,
                Some(tls) => {
                    // Within the deadline the first byte had: a client that starts a handshake
                    // and stalls holds its connection no longer than one that sends nothing.
                    let accepted =
                        tokio::time::timeout_at(deadline, tls.acceptor().accept(stream)).await;
                    let stream = match accepted {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            tracing::debug!(%error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake timed out");
                            return;
                        }
                    };
                    let http2 = super::Tls::chose_http2(&stream);
                    builders.serve(stream, http2, (app, peer), closing).await
                }
            };
            if let Err(error) = served {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    // Connections take no new request from here (HTTP/2: GOAWAY; HTTP/1.1: closed after the
    // answer in progress), while the calls in progress finish.
    closing.cancel();
    inflight.draining().cancel();
    connections.close();
    tracing::info!("shutting down: waiting for in-flight calls");
    if tokio::time::timeout(grace, inflight.drained())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "calls still running after the grace period; closing anyway"
        );
    }
    streams.cancel();
    if tokio::time::timeout(Duration::from_secs(2), connections.wait())
        .await
        .is_err()
    {
        tracing::debug!("some connections did not close in time");
    }
    Ok(())
}
