//! Where a request came from, and how many connections each source address holds before
//! any request on them has authenticated.

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

/// Open connections per source address that have not authenticated yet.
pub(crate) struct Sources {
    most: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl Sources {
    pub(crate) fn new(most: usize) -> Arc<Self> {
        Arc::new(Self {
            most,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Count a new connection from `source`, or `None` when that source already holds its
    /// allowance of unauthenticated connections (the new one is closed; authenticated ones
    /// never count).
    pub(crate) fn arrived(self: &Arc<Self>, source: IpAddr) -> Option<Peer> {
        let source = crate::rate::network(source);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(source).or_insert(0);
        if *count >= self.most {
            return None;
        }
        *count += 1;
        Some(Peer {
            source,
            standing: Arc::new(Standing {
                sources: self.clone(),
                source,
                settled: AtomicBool::new(false),
            }),
        })
    }

    fn release(&self, source: IpAddr) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&source) {
            *count -= 1;
            if *count == 0 {
                open.remove(&source);
            }
        }
    }
}

/// One connection's place in its source's count, given back once (on authentication or
/// when the connection ends, whichever comes first).
struct Standing {
    sources: Arc<Sources>,
    source: IpAddr,
    settled: AtomicBool,
}

impl Standing {
    fn settle(&self) {
        if !self.settled.swap(true, Ordering::AcqRel) {
            self.sources.release(self.source);
        }
    }
}

impl Drop for Standing {
    fn drop(&mut self) {
        self.settle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_holds_at_most_its_allowance_until_one_authenticates_or_ends() {
        let sources = Sources::new(2);
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
}
