//! Turning the work of answering one request into its HTTP answer. Work that ends without
//! sending anything first is answered in one piece (one SSE event, or plain JSON when
//! configured); work that sends messages first (progress, log lines, questions for the client)
//! gets an SSE stream from its first message on, its answer last. A stateless client that
//! goes away stops the work (the request upstream is cancelled with it); a session's stream is
//! resumable (`resume`), and its work goes on.

use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};

use axum::{body::Body, response::Response};
use bytes::Bytes;
use http::StatusCode;
use http_body_util::StreamBody;
use tokio::sync::{mpsc, oneshot};

use super::{resume::Log, sessions::Outlet, wire};

/// Messages a request's work may send before its answer, unread, before it waits.
const BACKLOG: usize = 64;
/// How long a session request's answer may take before its stream opens with the priming
/// event alone.
const PRIME_AFTER: Duration = Duration::from_millis(100);

/// The answer that ends a request, and the HTTP status it goes with.
pub(crate) struct Final {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl Final {
    /// A 200 answer.
    pub(crate) fn ok(message: String) -> Self {
        Self {
            status: StatusCode::OK,
            message,
        }
    }
}

/// How answers are written.
#[derive(Clone, Copy)]
pub(crate) struct Style {
    /// Plain JSON for answers in one piece, instead of one SSE event.
    pub(crate) json: bool,
    /// Keep-alive comments on open streams.
    pub(crate) keep_alive: Duration,
}

/// How a request's events are framed: plainly, or numbered and kept so a session client can
/// resume the stream (`resume`).
enum Frames {
    Plain,
    Kept(Arc<Log>),
}

impl Frames {
    fn event(&self, message: &str) -> Bytes {
        match self {
            Self::Plain => wire::sse_event(message),
            Self::Kept(log) => log.push(message),
        }
    }

    fn finish(&self) {
        if let Self::Kept(log) = self {
            log.finish();
        }
    }
}

/// Run `work`, giving it the outlet for messages before its answer, and answer with what it
/// sends. `stop` ends an open stream (shutdown). With `resumable` (a session's SSE stream),
/// every event is numbered and kept, and the client going away does not stop the work.
pub(crate) async fn respond<F>(
    style: Style,
    stop: tokio_util::sync::CancellationToken,
    resumable: Option<Arc<Log>>,
    work: impl FnOnce(Outlet) -> F,
) -> Response
where
    F: Future<Output = Final> + Send + 'static,
{
    let (outlet, inbox) = mpsc::channel::<String>(BACKLOG);
    // The work runs in the request's span wherever it is polled (a task of its own, a
    // stream's pump): its log lines and its trace stay the request's.
    let work = Box::pin(tracing::Instrument::in_current_span(work(outlet)));
    match resumable {
        Some(log) if !style.json => {
            // On a task of its own: the client going away drops this future, not the work.
            let (answer, answered) = oneshot::channel();
            tokio::spawn(async move {
                let response = first(style, stop, Frames::Kept(log), inbox, work).await;
                let _ = answer.send(response);
            });
            answered.await.unwrap_or_else(|_| {
                wire::text_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            })
        }
        _ => first(style, stop, Frames::Plain, inbox, work).await,
    }
}

/// The answer as soon as there is one: whole, if the work ends before it says anything, else
/// a stream from its first message on.
async fn first<F>(
    style: Style,
    stop: tokio_util::sync::CancellationToken,
    frames: Frames,
    mut inbox: mpsc::Receiver<String>,
    mut work: std::pin::Pin<Box<F>>,
) -> Response
where
    F: Future<Output = Final> + Send + 'static,
{
    tokio::select! {
        biased;
        done = &mut work => {
            let mut sent = Vec::new();
            while let Ok(message) = inbox.try_recv() {
                sent.push(message);
            }
            if sent.is_empty() && (style.json || done.status != StatusCode::OK) {
                frames.finish();
                return wire::json_response(done.status, done.message);
            }
            // Sent messages and the answer, all at once.
            let mut body = Vec::new();
            if let Frames::Kept(log) = &frames {
                body.extend_from_slice(&log.priming());
            }
            for message in sent.iter().chain(std::iter::once(&done.message)) {
                body.extend_from_slice(&frames.event(message));
            }
            frames.finish();
            sse(Body::from(body))
        }
        Some(first) = inbox.recv() => {
            let (chunks, body) = mpsc::channel::<Result<Bytes, Infallible>>(16);
            let first = Some(first);
            tokio::spawn(pump(frames, first, inbox, work, chunks, (style.keep_alive, stop)));
            stream(body)
        }
        // Work that takes a while opens its stream with the priming event alone, so a client
        // that loses the connection has an id to resume from.
        () = tokio::time::sleep(PRIME_AFTER), if matches!(frames, Frames::Kept(_)) => {
            let (chunks, body) = mpsc::channel::<Result<Bytes, Infallible>>(16);
            tokio::spawn(pump(frames, None, inbox, work, chunks, (style.keep_alive, stop)));
            stream(body)
        }
    }
}

fn sse(body: Body) -> Response {
    let mut response = Response::new(body);
    wire::sse_headers(&mut response);
    response
}

/// Forward what the work sends, then its answer, to an open SSE body. A plain stream stops
/// the work when the client goes away; a kept one lets it finish into the log.
async fn pump<F>(
    frames: Frames,
    first: Option<String>,
    mut inbox: mpsc::Receiver<String>,
    mut work: std::pin::Pin<Box<F>>,
    chunks: mpsc::Sender<Result<Bytes, Infallible>>,
    (keep_alive, stop): (Duration, tokio_util::sync::CancellationToken),
) where
    F: Future<Output = Final> + Send,
{
    let kept = matches!(frames, Frames::Kept(_));
    // Whether the client is still reading; once not, a plain stream ends here.
    let mut reading = true;
    if let Frames::Kept(log) = &frames
        && chunks.send(Ok(log.priming())).await.is_err()
    {
        reading = false;
    }
    if let Some(first) = first {
        let first = frames.event(&first);
        if reading && chunks.send(Ok(first)).await.is_err() {
            reading = false;
        }
    }
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
    loop {
        if !reading && !kept {
            return;
        }
        tokio::select! {
            biased;
            Some(message) = inbox.recv() => {
                let event = frames.event(&message);
                if reading && chunks.send(Ok(event)).await.is_err() {
                    reading = false;
                }
            }
            done = &mut work => {
                while let Ok(message) = inbox.try_recv() {
                    let event = frames.event(&message);
                    if reading && chunks.send(Ok(event)).await.is_err() {
                        reading = false;
                    }
                }
                let last = frames.event(&done.message);
                frames.finish();
                if reading {
                    let _ = chunks.send(Ok(last)).await;
                }
                return;
            }
            _ = tick.tick(), if reading => {
                if chunks.send(Ok(Bytes::from_static(b": keep-alive\n\n"))).await.is_err() {
                    reading = false;
                }
            }
            () = chunks.closed(), if reading => reading = false,
            () = stop.cancelled() => {
                frames.finish();
                return;
            }
        }
    }
}

/// An SSE answer fed by `chunks` until it closes.
pub(crate) fn stream(chunks: mpsc::Receiver<Result<Bytes, Infallible>>) -> Response {
    let frames = futures::stream::unfold(chunks, |mut chunks| async move {
        let chunk = chunks.recv().await?;
        Some((chunk.map(hyper::body::Frame::data), chunks))
    });
    sse(Body::new(StreamBody::new(frames)))
}
