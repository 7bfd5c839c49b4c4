//! Resumable request streams (2025-11-25). Each event on a session's POST stream carries an id
//! `<stream>-<n>`, after a priming event `<stream>-0` with a retry hint; a client whose stream
//! broke asks for the rest with `GET` and `Last-Event-ID`. Losing the connection does not
//! cancel the request (only `notifications/cancelled` does, as the revision says): its work
//! goes on and what it says is kept for the client to fetch.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::response::Response;
use bytes::Bytes;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

// Bounds: a session keeps the events of its last few streams, a stream its last events, and
// the process all of them within a total; what falls out can no longer be resumed.
const KEPT_STREAMS: usize = 8;
const KEPT_BYTES: usize = 1 << 20;
const KEPT_TOTAL: usize = 64 << 20;
/// Bytes of events kept by every log of the process. SECURITY: without it a caller's 64
/// sessions could keep 512 MiB. Past it, the log being pushed to lets its own oldest go.
static KEPT_ALL: AtomicUsize = AtomicUsize::new(0);
/// How long a client waits before it reconnects (the SSE `retry` field).
const RETRY: Duration = Duration::from_secs(1);

/// A session's recent request streams.
#[derive(Default)]
pub(crate) struct Streams {
    next: AtomicU64,
    kept: Mutex<VecDeque<(u64, Arc<Log>)>>,
}

impl Streams {
    /// A new stream's log, kept in place of the oldest one beyond the bound.
    pub(crate) fn open(&self) -> Arc<Log> {
        let stream = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let log = Arc::new(Log {
            stream,
            state: Mutex::new(State::default()),
            changed: Notify::new(),
        });
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() >= KEPT_STREAMS {
            kept.pop_front();
        }
        kept.push_back((stream, log.clone()));
        log
    }

    /// What a `Last-Event-ID` names.
    pub(crate) fn find(&self, last_event_id: &str) -> Found {
        let parsed = last_event_id.split_once('-').and_then(|(stream, seen)| {
            let seen = seen.parse::<u64>().ok()?.checked_add(1)?;
            Some((stream.parse::<u64>().ok()?, seen))
        });
        let Some((stream, from)) = parsed else {
            return Found::NotOurs;
        };
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        match kept.iter().find(|(id, _)| *id == stream) {
            Some((_, log)) => Found::Stream(log.clone(), from),
            None => Found::Forgotten,
        }
    }
}

/// What a `Last-Event-ID` names.
pub(crate) enum Found {
    /// A kept stream, and the number of the first event the client has not seen.
    Stream(Arc<Log>, u64),
    /// A stream of ours no longer kept.
    Forgotten,
    /// Not an id the gateway gave.
    NotOurs,
}

/// The events of one stream, as framed.
pub(crate) struct Log {
    stream: u64,
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Default)]
struct State {
    /// The number of `events[0]`; events are numbered from 1 (0 is the priming event).
    first: u64,
    events: VecDeque<Bytes>,
    bytes: usize,
    done: bool,
}

/// What a resuming client gets from a log.
pub(crate) enum Next {
    /// Events it has not seen.
    Events(Vec<Bytes>, u64),
    /// Nothing yet; the stream goes on.
    Wait,
    /// The stream is over and it has everything.
    Over,
    /// What it has not seen is no longer kept.
    Lost,
}

impl Log {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The priming event: an id and no data, with the retry hint.
    pub(crate) fn priming(&self) -> Bytes {
        Bytes::from(format!(
            "id: {}-0\nretry: {}\ndata: \n\n",
            self.stream,
            RETRY.as_millis()
        ))
    }

    /// Frame `message` as the stream's next event and keep it.
    pub(crate) fn push(&self, message: &str) -> Bytes {
        let frame = {
            let mut state = self.lock();
            if state.first == 0 {
                state.first = 1;
            }
            let number = state.first + state.events.len() as u64;
            let frame = Bytes::from(format!("id: {}-{number}\ndata: {message}\n\n", self.stream));
            state.bytes += frame.len();
            KEPT_ALL.fetch_add(frame.len(), Ordering::Relaxed);
            state.events.push_back(frame.clone());
            // An event larger than a stream's bound is sent, not kept.
            while state.bytes > KEPT_BYTES || KEPT_ALL.load(Ordering::Relaxed) > KEPT_TOTAL {
                let Some(old) = state.events.pop_front() else {
                    break;
                };
                state.bytes -= old.len();
                KEPT_ALL.fetch_sub(old.len(), Ordering::Relaxed);
                state.first += 1;
            }
            frame
        };
        self.changed.notify_waiters();
        frame
    }

    /// The stream's last event was pushed.
    pub(crate) fn finish(&self) {
        self.lock().done = true;
        self.changed.notify_waiters();
    }

    /// What a client that has seen everything before event `from` gets now.
    pub(crate) fn next(&self, from: u64) -> Next {
        let state = self.lock();
        let first = state.first.max(1);
        if from < first {
            return Next::Lost;
        }
        let skip = usize::try_from(from.saturating_sub(first)).unwrap_or(usize::MAX);
        let events: Vec<Bytes> = state.events.iter().skip(skip).cloned().collect();
        if !events.is_empty() {
            let after = from + events.len() as u64;
            return Next::Events(events, after);
        }
        if state.done { Next::Over } else { Next::Wait }
    }

    /// Wait for the next push or the end; made before reading, so nothing between is missed.
    pub(crate) fn watch(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        KEPT_ALL.fetch_sub(self.lock().bytes, Ordering::Relaxed);
    }
}

/// `GET` with a `Last-Event-ID` this session can answer: the events of that stream the client
/// has not seen, then the rest as they come, until the stream ends. `None` when the events are
/// no longer kept.
pub(crate) fn replay(
    log: Arc<Log>,
    mut from: u64,
    keep_alive: Duration,
    stop: CancellationToken,
) -> Option<Response> {
    if matches!(log.next(from), Next::Lost) {
        return None;
    }
    let (chunks, body) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
        loop {
            let changed = log.watch();
            match log.next(from) {
                Next::Events(events, after) => {
                    for event in events {
                        if chunks.send(Ok(event)).await.is_err() {
                            return;
                        }
                    }
                    from = after;
                    continue;
                }
                Next::Over | Next::Lost => return,
                Next::Wait => {}
            }
            let chunk = tokio::select! {
                () = changed => continue,
                _ = tick.tick() => Bytes::from_static(b": keep-alive\n\n"),
                () = chunks.closed() => return,
                () = stop.cancelled() => return,
            };
            if chunks.send(Ok(chunk)).await.is_err() {
                return;
            }
        }
    });
    Some(super::reply::stream(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(next: Next) -> (Vec<String>, u64) {
        match next {
            Next::Events(events, after) => (
                events
                    .iter()
                    .map(|e| String::from_utf8_lossy(e).into_owned())
                    .collect(),
                after,
            ),
            _ => panic!("expected events"),
        }
    }

    #[test]
    fn a_resuming_client_gets_exactly_what_it_has_not_seen() {
        let streams = Streams::default();
        let log = streams.open();
        assert!(log.priming().starts_with(b"id: 1-0\nretry: 1000\n"));
        log.push("{\"a\":1}");
        log.push("{\"b\":2}");
        let Found::Stream(found, from) = streams.find("1-1") else {
            panic!("stream 1 is kept");
        };
        let (sent, after) = events(found.next(from));
        assert_eq!(sent, vec!["id: 1-2\ndata: {\"b\":2}\n\n".to_owned()]);
        assert!(matches!(found.next(after), Next::Wait));
        log.finish();
        assert!(matches!(found.next(after), Next::Over));
        // From the priming event: everything.
        let Found::Stream(_, from) = streams.find("1-0") else {
            panic!("stream 1 is kept");
        };
        let (all, _) = events(found.next(from));
        assert_eq!(all.len(), 2);
    }

    #[test]
    fn ids_that_name_nothing_kept_find_nothing() {
        let streams = Streams::default();
        for _ in 0..KEPT_STREAMS + 1 {
            streams.open();
        }
        assert!(
            matches!(streams.find("1-0"), Found::Forgotten),
            "the oldest was dropped"
        );
        let newest = format!("{}-0", KEPT_STREAMS + 1);
        assert!(matches!(streams.find(&newest), Found::Stream(..)));
        for id in [
            "",
            "-",
            "x-1",
            "2",
            "2-",
            "2-x",
            "18446744073709551615-18446744073709551615",
        ] {
            assert!(matches!(streams.find(id), Found::NotOurs), "{id}");
        }
    }

    #[test]
    fn events_past_the_bound_are_lost_not_replayed_wrongly() {
        let streams = Streams::default();
        let log = streams.open();
        let big = "x".repeat(KEPT_BYTES / 2);
        for _ in 0..4 {
            log.push(&big);
        }
        assert!(matches!(log.next(1), Next::Lost));
        let (kept, _) = events(log.next(4));
        assert_eq!(kept.len(), 1);
        assert!(kept[0].starts_with("id: 1-4\n"));
    }

    // See: review of issue 12. One event larger than a stream's bound was kept whatever its
    // size; it is sent, not kept, and a client that missed it is told so.
    #[test]
    fn an_event_larger_than_the_bound_is_not_kept() {
        let streams = Streams::default();
        let log = streams.open();
        log.push("{}");
        log.push(&"x".repeat(KEPT_BYTES + 1));
        assert!(matches!(log.next(2), Next::Lost));
        assert!(matches!(log.next(3), Next::Wait));
        assert_eq!(log.lock().bytes, 0);
    }
}
