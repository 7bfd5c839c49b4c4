//! Where a request came from, and what each source address holds: connections in all, those
//! on which no request has authenticated yet, HTTP/2 requests open and token checks in
//! progress. Per connection, one held-back refusal at a time, and until a request on it
//! authenticates, a few requests worked on at once.
//!
//! SECURITY: an HTTP/2 connection carries many requests at once, so nothing that bounds a
//! client may count connections as if each were one request: an address has no more requests
//! open than it may have connections (HTTP/1.1 has one each), the gateway no more than a few
//! times its connections, token checks are bounded per address whatever the connections, and
//! held-back refusals per connection whatever its streams.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// HTTP/2 requests open at once in all (each address has its own allowance too).
const MAX_OPEN_REQUESTS: usize = 32_768;
/// Requests worked on at once on a connection none of whose requests has authenticated (the
/// others wait): the allowance of such connections per address was made for HTTP/1.1, where
/// each has one at a time.
const UNAUTHENTICATED_AT_ONCE: usize = 8;

/// The connection a request arrived on (a request extension, set by the listener loop).
#[derive(Clone)]
pub(crate) struct Peer {
    /// The source address (IPv6: its /64, see `rate::network`).
    pub(crate) source: IpAddr,
    standing: Arc<Standing>,
}

impl Peer {
    /// A request on this connection authenticated: the connection no longer counts against
    /// its source's allowance of unauthenticated ones.
    pub(crate) fn authenticated(&self) {
        self.standing.settle();
    }

    /// Whether a request on this connection has authenticated.
    pub(crate) fn has_authenticated(&self) -> bool {
        self.standing.settled.load(Ordering::Acquire)
    }

    /// A place among the token checks its source address has in progress, waiting for one if
    /// they are all taken (as many as its allowance of unauthenticated connections). Held until
    /// the check has ended and been counted, even if the request is gone by then.
    pub(crate) async fn checking(&self) -> Place {
        self.place(&self.standing.checks).await
    }

    async fn place(&self, pool: &Arc<Semaphore>) -> Place {
        Place {
            permit: pool.clone().acquire_owned().await.ok(),
            sources: self.standing.sources.clone(),
            source: self.source,
        }
    }

    /// This connection's turn to hold back a refusal: one at a time, so that a connection
    /// gets at most one refusal per delay however many requests it has open.
    pub(crate) async fn refusing(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.standing.refusing.lock().await
    }

    /// The places one more HTTP/2 request holds while open (until its answer has ended),
    /// waiting for each: on a connection none of whose requests has authenticated, one of its
    /// few turns and one of its address's places for such requests (as many as its allowance
    /// of such connections, each of which HTTP/1.1 gives one request at a time); else one of
    /// its address's places for requests (as many as its connections); and one of the
    /// gateway's. Those waiting for a turn go on as soon as a request on the connection
    /// authenticates.
    pub(crate) async fn opening(&self) -> Opened {
        let turn = if self.has_authenticated() {
            None
        } else {
            self.standing.turns.clone().acquire_owned().await.ok()
        };
        let pool = match turn {
            Some(_) => &self.standing.unauthenticated_requests,
            None => &self.standing.requests,
        };
        let place = self.place(pool).await;
        let all = self
            .standing
            .sources
            .requests
            .clone()
            .acquire_owned()
            .await
            .ok();
        Opened {
            _held: (turn, place, all),
        }
    }
}

/// One place held among some of a source address's, given back when dropped (and the address
/// forgotten once it holds nothing, whenever its last place goes).
pub(crate) struct Place {
    permit: Option<OwnedSemaphorePermit>,
    sources: Arc<Sources>,
    source: IpAddr,
}

impl Drop for Place {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.sources.forget_if_unused(self.source);
    }
}

/// The places an open HTTP/2 request holds (see [`Peer::opening`]).
pub(crate) struct Opened {
    _held: (
        Option<OwnedSemaphorePermit>,
        Place,
        Option<OwnedSemaphorePermit>,
    ),
}

/// Per source address: open connections, how many of them have not authenticated, its
/// HTTP/2 requests open and its token checks in progress (kept while any lasts, so that
/// closing every connection does not free the places of checks still running).
struct Held {
    all: usize,
    unauthenticated: usize,
    requests: Arc<Semaphore>,
    unauthenticated_requests: Arc<Semaphore>,
    checks: Arc<Semaphore>,
}

impl Held {
    fn unused(&self) -> bool {
        self.all == 0
            && [&self.checks, &self.requests, &self.unauthenticated_requests]
                .into_iter()
                .all(|pool| Arc::strong_count(pool) == 1)
    }
}

/// What each source address holds.
pub(crate) struct Sources {
    /// Most connections per address (also its most HTTP/2 requests open), and most of them
    /// unauthenticated (also its most token checks in progress).
    most: (usize, usize),
    open: Mutex<HashMap<IpAddr, Held>>,
    /// HTTP/2 requests open in all.
    requests: Arc<Semaphore>,
}

impl Sources {
    pub(crate) fn new(most: usize, most_unauthenticated: usize) -> Arc<Self> {
        Arc::new(Self {
            most: (most, most_unauthenticated),
            open: Mutex::new(HashMap::new()),
            requests: Arc::new(Semaphore::new(MAX_OPEN_REQUESTS)),
        })
    }

    /// Count a new connection from `source`, or `None` when that source already holds its
    /// allowance of connections, or of unauthenticated ones (the new one is closed).
    pub(crate) fn arrived(self: &Arc<Self>, source: IpAddr) -> Option<Peer> {
        let source = crate::rate::network(source);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let held = open.entry(source).or_insert_with(|| Held {
            all: 0,
            unauthenticated: 0,
            requests: Arc::new(Semaphore::new(self.most.0.max(1))),
            unauthenticated_requests: Arc::new(Semaphore::new(self.most.1.max(1))),
            checks: Arc::new(Semaphore::new(self.most.1.max(1))),
        });
        if held.all >= self.most.0 || held.unauthenticated >= self.most.1 {
            return None;
        }
        held.all += 1;
        held.unauthenticated += 1;
        Some(Peer {
            source,
            standing: Arc::new(Standing {
                sources: self.clone(),
                source,
                settled: AtomicBool::new(false),
                checks: held.checks.clone(),
                requests: held.requests.clone(),
                unauthenticated_requests: held.unauthenticated_requests.clone(),
                refusing: tokio::sync::Mutex::new(()),
                turns: Arc::new(Semaphore::new(UNAUTHENTICATED_AT_ONCE)),
            }),
        })
    }

    /// Give back a connection's place: `closed`, it is gone; else it authenticated.
    fn release(&self, source: IpAddr, settled: bool, closed: bool) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = open.get_mut(&source) {
            if !settled {
                held.unauthenticated = held.unauthenticated.saturating_sub(1);
            }
            if closed {
                held.all = held.all.saturating_sub(1);
            }
        }
        forget_unused(&mut open, source);
    }

    fn forget_if_unused(&self, source: IpAddr) {
        forget_unused(
            &mut self.open.lock().unwrap_or_else(PoisonError::into_inner),
            source,
        );
    }
}

fn forget_unused(open: &mut HashMap<IpAddr, Held>, source: IpAddr) {
    if open.get(&source).is_some_and(Held::unused) {
        open.remove(&source);
    }
}

/// One connection's place in its source's counts: its unauthenticated place given back once
/// (on authentication or when the connection ends), its place in all when it ends.
struct Standing {
    sources: Arc<Sources>,
    source: IpAddr,
    settled: AtomicBool,
    /// Its source's token checks in progress, and HTTP/2 requests open.
    checks: Arc<Semaphore>,
    requests: Arc<Semaphore>,
    unauthenticated_requests: Arc<Semaphore>,
    refusing: tokio::sync::Mutex<()>,
    /// Requests worked on until one authenticates; closed when one does.
    turns: Arc<Semaphore>,
}

impl Standing {
    fn settle(&self) {
        if !self.settled.swap(true, Ordering::AcqRel) {
            self.turns.close();
            self.sources.release(self.source, false, false);
        }
    }
}

impl Drop for Standing {
    fn drop(&mut self) {
        let settled = self.settled.swap(true, Ordering::AcqRel);
        // Its hold on the checks first, so that a source with nothing left is forgotten.
        self.checks = Arc::new(Semaphore::new(0));
        self.requests = Arc::new(Semaphore::new(0));
        self.unauthenticated_requests = Arc::new(Semaphore::new(0));
        self.sources.release(self.source, settled, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_holds_at_most_its_allowance_until_one_authenticates_or_ends() {
        let sources = Sources::new(100, 2);
        let here: IpAddr = "192.0.2.1".parse().unwrap();
        let first = sources.arrived(here).unwrap();
        let second = sources.arrived(here).unwrap();
        assert!(sources.arrived(here).is_none());
        assert!(sources.arrived("192.0.2.2".parse().unwrap()).is_some());
        first.authenticated();
        first.authenticated();
        let third = sources.arrived(here).unwrap();
        assert!(sources.arrived(here).is_none());
        drop(second);
        drop(first);
        assert!(sources.arrived(here).is_some());
        drop(third);
    }

    // See: review of issue 15. Authenticated connections did not count at all: one signed-in
    // caller could hold every slot.
    #[test]
    fn a_source_holds_at_most_its_allowance_of_connections_signed_in_or_not() {
        let sources = Sources::new(3, 2);
        let here: IpAddr = "192.0.2.1".parse().unwrap();
        let held: Vec<Peer> = (0..3)
            .map(|_| {
                let peer = sources.arrived(here).unwrap();
                peer.authenticated();
                peer
            })
            .collect();
        assert!(sources.arrived(here).is_none());
        assert!(sources.arrived("192.0.2.2".parse().unwrap()).is_some());
        drop(held);
        assert!(sources.arrived(here).is_some());
        assert!(
            sources
                .open
                .lock()
                .unwrap()
                .get(&here)
                .is_none_or(|held| held.all <= 1)
        );
    }

    // See: issue 18. One HTTP/2 connection carries many requests at once: token checks are
    // bounded per address, not per connection, and their places outlast the connection.
    #[tokio::test]
    async fn a_source_has_at_most_its_allowance_of_token_checks_in_progress() {
        let sources = Sources::new(100, 2);
        let here: IpAddr = "192.0.2.1".parse().unwrap();
        let peer = sources.arrived(here).unwrap();
        let first = peer.checking().await;
        let second = peer.checking().await;
        let third = tokio::time::timeout(std::time::Duration::from_millis(50), peer.checking());
        assert!(third.await.is_err(), "a third waits");
        let elsewhere = sources.arrived("192.0.2.2".parse().unwrap()).unwrap();
        let _other = elsewhere.checking().await;
        // Its connection gone and back: the two checks still hold their places.
        drop(peer);
        let again = sources.arrived(here).unwrap();
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), again.checking());
        assert!(waiting.await.is_err(), "the places outlast the connection");
        drop(first);
        let third = again.checking().await;
        drop((second, again));
        assert!(sources.open.lock().unwrap().get(&here).is_some());
        drop(third);
        assert!(
            sources.open.lock().unwrap().get(&here).is_none(),
            "a source holding nothing is forgotten"
        );
    }

    // See: issue 18, second and third attacker's reads. An address has no more HTTP/2 requests
    // open than connections it may hold, and no more on connections where nothing has
    // authenticated than such connections it may hold; such a connection has a few at once,
    // and those waiting go on once one authenticates; an address is forgotten when its last
    // request ends, even after its connections.
    #[tokio::test]
    async fn an_address_has_its_allowance_of_requests_open_and_few_unauthenticated() {
        let wait = std::time::Duration::from_millis(50);
        let here: IpAddr = "192.0.2.1".parse().unwrap();
        let sources = Sources::new(100, 2);
        let (one, two) = (
            sources.arrived(here).unwrap(),
            sources.arrived(here).unwrap(),
        );
        let first = one.opening().await;
        let _second = two.opening().await;
        let third = tokio::time::timeout(wait, one.opening());
        assert!(
            third.await.is_err(),
            "a third unauthenticated request waits"
        );
        drop(first);
        let _third = one.opening().await;

        let sources = Sources::new(2, 100);
        let peer = sources.arrived(here).unwrap();
        peer.authenticated();
        let (first, _second) = (peer.opening().await, peer.opening().await);
        let third = tokio::time::timeout(wait, peer.opening());
        assert!(third.await.is_err(), "a third request waits");
        drop(first);
        let last = peer.opening().await;
        drop(peer);
        assert!(sources.open.lock().unwrap().get(&here).is_some());
        drop((last, _second));
        assert!(
            sources.open.lock().unwrap().get(&here).is_none(),
            "an address holding nothing is forgotten"
        );

        let sources = Sources::new(100, 100);
        let peer = sources.arrived(here).unwrap();
        let turns: Vec<_> =
            futures::future::join_all((0..UNAUTHENTICATED_AT_ONCE).map(|_| peer.opening())).await;
        let waiting = tokio::spawn({
            let peer = peer.clone();
            async move { peer.opening().await }
        });
        tokio::time::sleep(wait).await;
        assert!(!waiting.is_finished(), "one more than the turns waits");
        peer.authenticated();
        let _ninth = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("it goes on once the connection authenticated");
        drop(turns);
    }

    #[tokio::test]
    async fn a_connection_holds_back_one_refusal_at_a_time() {
        let sources = Sources::new(100, 2);
        let peer = sources.arrived("192.0.2.1".parse().unwrap()).unwrap();
        let other = sources.arrived("192.0.2.1".parse().unwrap()).unwrap();
        let turn = peer.refusing().await;
        let next = tokio::time::timeout(std::time::Duration::from_millis(50), peer.refusing());
        assert!(next.await.is_err(), "the same connection waits");
        let _theirs = other.refusing().await;
        drop(turn);
        let _next = peer.refusing().await;
    }
}
