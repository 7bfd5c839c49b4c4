//! One connection, served to its end: HTTP/1.1, or HTTP/2 where TLS negotiated it (ALPN).
//!
//! SECURITY: each protocol gets its own builder, chosen by what the handshake said, so nothing
//! reads the connection to guess its version (a guess that waits on the client has no
//! deadline). HTTP/1.1 bounds a silent or slow client with hyper's header timeout, which also
//! covers the wait between requests. HTTP/2 has no such timeout in hyper, so a connection is
//! closed here once it has had no request open for as long (the first request included): a
//! client answering pings but asking nothing holds its connection no longer than an idle
//! HTTP/1.1 one. A connection asked to close (idle, or shutdown) that still holds nothing open
//! a period later is dropped, whether or not its client finished the goodbye. Until one of
//! its requests authenticates, an HTTP/2 connection has few requests worked on at once and a
//! bounded life, since a client that does not read its answers keeps them open.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{Router, body::Body, extract::Request, response::Response};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::graceful::GracefulConnection,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::watch,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::Peer;

/// HTTP/2: requests one connection may have open at once. Every bound that HTTP/1.1 gives per
/// connection is also kept per connection here (see `Peer`), and per caller and per address
/// elsewhere, so this bounds memory rather than admission.
const MAX_STREAMS: u32 = 16;
/// HTTP/2: the largest header block, decoded (hyper's default).
const MAX_HEADER_LIST: u32 = 16 * 1024;
/// HTTP/2: streams a client may open and reset before the server has accepted them (the
/// rapid reset attack).
const MAX_PENDING_RESETS: usize = 20;
/// HTTP/2: request body a stream may send before it is read, and all streams together: what
/// unread requests (waiting for their places, or not authenticated yet) can make the gateway
/// hold. The connection's window holds every stream's whole: were it smaller, the bodies of
/// streams waiting for a place could fill it and stop the streams holding places from reading
/// theirs, and so from ever giving them back.
const STREAM_WINDOW: u32 = 64 * 1024;
const CONNECTION_WINDOW: u32 = MAX_STREAMS * STREAM_WINDOW;
/// HTTP/2: answer bytes buffered per stream for a client that does not read them.
const SEND_BUFFER: usize = 64 * 1024;
/// HTTP/2: header timeouts a connection may live without any of its requests authenticating.
const UNAUTHENTICATED_PERIODS: u32 = 6;
/// HTTP/2: a peer that stops answering pings is gone.
const PING_EVERY: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// The builders for both protocols, made once.
#[derive(Clone)]
pub(super) struct Builders {
    http1: hyper::server::conn::http1::Builder,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
    /// How long a connection may go without a request (HTTP/1.1: to send one's headers).
    idle: Duration,
}

impl Builders {
    pub(super) fn new(header_timeout: Duration) -> Self {
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout);
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_STREAMS)
            .max_header_list_size(MAX_HEADER_LIST)
            .max_pending_accept_reset_streams(Some(MAX_PENDING_RESETS))
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_send_buf_size(SEND_BUFFER)
            .keep_alive_interval(Some(PING_EVERY))
            .keep_alive_timeout(PING_TIMEOUT);
        Self {
            http1,
            http2,
            idle: header_timeout,
        }
    }

    /// Serve `app` on `io` until the connection ends; from `closing` on, finish what is open
    /// and end it. `http2`: the TLS handshake chose HTTP/2.
    pub(super) async fn serve<I>(
        &self,
        io: I,
        http2: bool,
        (app, peer): (Router, Peer),
        closing: CancellationToken,
    ) -> Result<(), hyper::Error>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = TokioIo::new(io);
        if !http2 {
            let service = service(app, peer, None);
            return drive(self.http1.serve_connection(io, service), closing, None).await;
        }
        let (activity, watched) = watch::channel(Activity::default());
        let service = service(app, peer.clone(), Some((activity, closing.clone())));
        let connection = self.http2.serve_connection(io, service);
        let watch = Watch {
            activity: watched,
            peer,
            period: self.idle,
        };
        drive(connection, closing, Some(watch)).await
    }
}

/// What an HTTP/2 connection's requests tell its driver: how many are open (until their
/// answer's body has ended or been dropped), and how many have ever opened, so that a request
/// that opened and ended between two looks still counts as activity.
#[derive(Debug, Default, Clone, Copy)]
struct Activity {
    open: usize,
    opened: u64,
}

/// An HTTP/2 connection's driver's view of it.
struct Watch {
    activity: watch::Receiver<Activity>,
    peer: Peer,
    /// The header timeout: how long it may have nothing open.
    period: Duration,
}

/// The app as one connection's service: each request carries its `peer`. With `http2` (its
/// activity, and shutdown's signal), each request counts as open until its answer's body has
/// ended or been dropped, and waits for the places an open request holds (`Peer::opening`);
/// a request still waiting when the gateway shuts down is answered 503.
fn service(
    app: Router,
    peer: Peer,
    http2: Option<(watch::Sender<Activity>, CancellationToken)>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response,
    Error = Infallible,
    Future = impl Future<Output = Result<Response, Infallible>> + Send,
> + Clone {
    let http2 = http2.map(|(activity, closing)| (Arc::new(activity), closing));
    hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(peer.clone());
        let answer = tower::ServiceExt::oneshot(app.clone(), request);
        let http2 = http2
            .clone()
            .map(|(activity, closing)| (Open::new(activity), closing));
        let peer = peer.clone();
        async move {
            let Some((open, closing)) = http2 else {
                return answer.await;
            };
            // Held until the answer's body has ended: a client that does not read its answers
            // keeps them open, and with them its places.
            let opened = tokio::select! {
                opened = peer.opening() => opened,
                () = closing.cancelled() => return Ok(closing_answer()),
            };
            Ok(super::serve::holding(answer.await?, (open, opened)))
        }
    })
}

/// 503 for a request that waited until its connection was asked to close.
fn closing_answer() -> Response {
    let mut response = Response::new(Body::from("Service Unavailable: closing\n"));
    *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    response
}

/// One request open on an HTTP/2 connection, until dropped.
struct Open(Arc<watch::Sender<Activity>>);

impl Open {
    fn new(activity: Arc<watch::Sender<Activity>>) -> Self {
        activity.send_modify(|now| {
            now.open += 1;
            now.opened += 1;
        });
        Self(activity)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0
            .send_modify(|now| now.open = now.open.saturating_sub(1));
    }
}

/// Poll `connection` to its end. It is asked to close (and finishes what it has open) when
/// `closing` fires; with a `watch` (HTTP/2), also once it has had nothing open for the period,
/// after which it is dropped if it still has nothing open a period later; and once it has
/// lived [`UNAUTHENTICATED_PERIODS`] periods without a request authenticating, after which it
/// is dropped a period later whatever it holds (a client that never reads its answers keeps
/// them open forever).
async fn drive<C>(
    connection: C,
    closing: CancellationToken,
    mut watch: Option<Watch>,
) -> Result<(), C::Error>
where
    C: GracefulConnection,
{
    let mut connection = std::pin::pin!(connection);
    let mut ending = false;
    let mut deadline = watch.as_ref().and_then(|watch| {
        Instant::now().checked_add(watch.period.saturating_mul(UNAUTHENTICATED_PERIODS))
    });
    let mut cut_off = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => return served,
            () = closing.cancelled(), if !ending => {
                connection.as_mut().graceful_shutdown();
                ending = true;
            }
            () = quiet(watch.as_mut()) => {
                if ending {
                    tracing::debug!("an idle connection did not close when asked; dropped");
                    return Ok(());
                }
                connection.as_mut().graceful_shutdown();
                ending = true;
            }
            () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                let (authenticated, period) = watch
                    .as_ref()
                    .map_or((true, Duration::ZERO), |watch| (watch.peer.has_authenticated(), watch.period));
                if authenticated {
                    deadline = None;
                    continue;
                }
                if cut_off {
                    tracing::debug!("a connection that never authenticated did not close; dropped");
                    return Ok(());
                }
                connection.as_mut().graceful_shutdown();
                (ending, cut_off) = (true, true);
                deadline = Instant::now().checked_add(period);
            }
        }
    }
}

/// Resolves once nothing has been open for the whole period (never without a `watch`).
async fn quiet(watch: Option<&mut Watch>) {
    let Some(Watch {
        activity, period, ..
    }) = watch
    else {
        return std::future::pending().await;
    };
    loop {
        // The service is gone with the connection: nothing can open any more.
        let Ok(seen) = activity
            .wait_for(|now| now.open == 0)
            .await
            .map(|now| now.opened)
        else {
            return;
        };
        let busy = activity.wait_for(|now| now.open > 0 || now.opened != seen);
        if tokio::time::timeout(*period, busy).await.is_err() {
            return;
        }
    }
}
