//! Turning the work of answering one request into its HTTP answer. Work that ends without
//! sending anything first is answered in one piece (one SSE event, or plain JSON when
//! configured); work that sends messages first (progress, log lines, questions for the client)
//! gets an SSE stream from its first message on, its answer last. A client that goes away
//! stops the work: the request upstream is cancelled with it.

use std::{convert::Infallible, future::Future, time::Duration};

use axum::{body::Body, response::Response};
use bytes::Bytes;
use http::StatusCode;
use http_body_util::StreamBody;
use tokio::sync::mpsc;

use super::{sessions::Outlet, wire};

/// Messages a request's work may send before its answer, unread, before it waits.
const BACKLOG: usize = 64;

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

/// Run `work`, giving it the outlet for messages before its answer, and answer with what it
/// sends. `stop` ends an open stream (shutdown).
pub(crate) async fn respond<F>(
    style: Style,
    stop: tokio_util::sync::CancellationToken,
    work: impl FnOnce(Outlet) -> F,
) -> Response
where
    F: Future<Output = Final> + Send + 'static,
{
    let (outlet, mut inbox) = mpsc::channel::<String>(BACKLOG);
    let mut work = Box::pin(work(outlet));
    tokio::select! {
        biased;
        done = &mut work => {
            let mut sent = Vec::new();
            while let Ok(message) = inbox.try_recv() {
                sent.push(message);
            }
            if sent.is_empty() {
                return whole(style, done);
            }
            // Sent messages and the answer, all at once.
            let mut body = Vec::new();
            for message in sent.iter().chain(std::iter::once(&done.message)) {
                body.extend_from_slice(&wire::sse_event(message));
            }
            sse(Body::from(body))
        }
        Some(first) = inbox.recv() => {
            let (chunks, body) = mpsc::channel::<Result<Bytes, Infallible>>(16);
            tokio::spawn(pump(first, inbox, work, chunks, (style.keep_alive, stop)));
            stream(body)
        }
    }
}

/// The answer in one piece.
fn whole(style: Style, done: Final) -> Response {
    if style.json || done.status != StatusCode::OK {
        return wire::json_response(done.status, done.message);
    }
    sse(Body::from(wire::sse_event(&done.message)))
}

fn sse(body: Body) -> Response {
    let mut response = Response::new(body);
    wire::sse_headers(&mut response);
    response
}

/// Forward what the work sends, then its answer, to an open SSE body.
async fn pump<F>(
    first: String,
    mut inbox: mpsc::Receiver<String>,
    mut work: std::pin::Pin<Box<F>>,
    chunks: mpsc::Sender<Result<Bytes, Infallible>>,
    (keep_alive, stop): (Duration, tokio_util::sync::CancellationToken),
) where
    F: Future<Output = Final> + Send,
{
    if chunks.send(Ok(wire::sse_event(&first))).await.is_err() {
        return;
    }
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
    loop {
        tokio::select! {
            biased;
            Some(message) = inbox.recv() => {
                if chunks.send(Ok(wire::sse_event(&message))).await.is_err() {
                    return;
                }
            }
            done = &mut work => {
                while let Ok(message) = inbox.try_recv() {
                    if chunks.send(Ok(wire::sse_event(&message))).await.is_err() {
                        return;
                    }
                }
                let _ = chunks.send(Ok(wire::sse_event(&done.message))).await;
                return;
            }
            _ = tick.tick() => {
                if chunks.send(Ok(Bytes::from_static(b": keep-alive\n\n"))).await.is_err() {
                    return;
                }
            }
            () = chunks.closed() => return,
            () = stop.cancelled() => return,
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
