//! Where a request came from, and how many connections each source address holds: in all,
//! and before any request on them has authenticated.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
};

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
}

/// Open connections per source address.
pub(crate) struct Sources {
    /// Most connections per address, and most of them unauthenticated.
    most: (usize, usize),
    /// Per address: open connections, and how many of them have not authenticated.
    open: Mutex<HashMap<IpAddr, (usize, usize)>>,
}

impl Sources {
    pub(crate) fn new(most: usize, most_unauthenticated: usize) -> Arc<Self> {
        Arc::new(Self {
            most: (most, most_unauthenticated),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Count a new connection from `source`, or `None` when that source already holds its
    /// allowance of connections, or of unauthenticated ones (the new one is closed).
    pub(crate) fn arrived(self: &Arc<Self>, source: IpAddr) -> Option<Peer> {
        let source = crate::rate::network(source);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let (all, unauthenticated) = open.entry(source).or_insert((0, 0));
        if *all >= self.most.0 || *unauthenticated >= self.most.1 {
            return None;
        }
        *all += 1;
        *unauthenticated += 1;
        Some(Peer {
            source,
            standing: Arc::new(Standing {
                sources: self.clone(),
                source,
                settled: AtomicBool::new(false),
            }),
        })
    }

    /// Give back a connection's place: `closed`, it is gone; else it authenticated.
    fn release(&self, source: IpAddr, settled: bool, closed: bool) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((all, unauthenticated)) = open.get_mut(&source) {
            if !settled {
                *unauthenticated = unauthenticated.saturating_sub(1);
            }
            if closed {
                *all = all.saturating_sub(1);
            }
            if *all == 0 {
                open.remove(&source);
            }
        }
    }
}

/// One connection's place in its source's counts: its unauthenticated place given back once
/// (on authentication or when the connection ends), its place in all when it ends.
struct Standing {
    sources: Arc<Sources>,
    source: IpAddr,
    settled: AtomicBool,
}

impl Standing {
    fn settle(&self) {
        if !self.settled.swap(true, Ordering::AcqRel) {
            self.sources.release(self.source, false, false);
        }
    }
}

impl Drop for Standing {
    fn drop(&mut self) {
        let settled = self.settled.swap(true, Ordering::AcqRel);
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
                .is_none_or(|(all, _)| *all <= 1)
        );
    }
}
