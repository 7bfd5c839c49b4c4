//! Announcing an upstream's changes, coalesced. SECURITY: an upstream can send
//! `list_changed` in a loop; passed on one for one, a burst reached every idle session
//! thousands of times and had each caller's client list again. Each kind of change is
//! announced at once, then at most once more per window: a burst becomes two announcements,
//! and the last change is never lost.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::time::Instant;

use crate::ChangeKind;

/// How often one upstream's changes of one kind are announced at most.
const WINDOW: Duration = Duration::from_secs(1);
/// Resource updates followed at once (one kind per URI); past it, URIs quiet for a window are
/// let go, and if none is, an update of a new URI is dropped. The three lists always have
/// their own.
const MAX_KINDS: usize = 1024;

/// Where announcements go.
type Sink = Arc<dyn Fn(ChangeKind) + Send + Sync>;

/// One upstream's announcements (to everyone, or to one session's client).
#[derive(Clone)]
pub struct Announcer {
    sink: Sink,
    kinds: Arc<Mutex<HashMap<ChangeKind, Slot>>>,
}

#[derive(Clone, Copy)]
enum Slot {
    /// Announced at this moment, nothing waiting.
    Sent(Instant),
    /// An announcement is due at the end of the window.
    Due,
}

impl Announcer {
    /// Announcements that `sink` makes.
    pub fn new(sink: impl Fn(ChangeKind) + Send + Sync + 'static) -> Self {
        Self {
            sink: Arc::new(sink),
            kinds: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Announce `kind`, now or at the end of its window.
    pub fn announce(&self, kind: ChangeKind) {
        let now = Instant::now();
        let due = {
            let mut kinds = self.kinds.lock().unwrap_or_else(PoisonError::into_inner);
            match kinds.get(&kind).copied() {
                Some(Slot::Due) => return,
                Some(Slot::Sent(at)) if now < at + WINDOW => {
                    kinds.insert(kind.clone(), Slot::Due);
                    Some(at + WINDOW)
                }
                _ => {
                    let list = !matches!(kind, ChangeKind::ResourceUpdated(_));
                    if !list && kinds.len() >= MAX_KINDS {
                        kinds.retain(|kind, slot| {
                            !matches!(kind, ChangeKind::ResourceUpdated(_))
                                || matches!(slot, Slot::Sent(at) if now < *at + WINDOW)
                                || matches!(slot, Slot::Due)
                        });
                        // SECURITY: updates of ever new URIs cannot crowd the lists' own slots
                        // out (and with them their coalescing): past the bound, an update of a
                        // URI not followed yet is dropped.
                        if kinds.len() >= MAX_KINDS {
                            return;
                        }
                    }
                    kinds.insert(kind.clone(), Slot::Sent(now));
                    None
                }
            }
        };
        match due {
            None => self.send(kind),
            Some(at) => {
                let announcer = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    announcer
                        .kinds
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(kind.clone(), Slot::Sent(Instant::now()));
                    announcer.send(kind);
                });
            }
        }
    }

    fn send(&self, kind: ChangeKind) {
        (self.sink)(kind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_is_announced_at_once_and_once_more_at_the_end_of_its_window() {
        let (changes, mut heard) = tokio::sync::mpsc::unbounded_channel();
        let announcer = Announcer::new(move |kind| {
            let _ = changes.send(kind);
        });
        for _ in 0..1000 {
            announcer.announce(ChangeKind::Tools);
            announcer.announce(ChangeKind::ResourceUpdated("a://1".to_owned()));
        }
        let mut now = Vec::new();
        while let Ok(kind) = heard.try_recv() {
            now.push(kind);
        }
        assert_eq!(
            now,
            [
                ChangeKind::Tools,
                ChangeKind::ResourceUpdated("a://1".to_owned())
            ]
        );
        tokio::time::sleep(WINDOW + Duration::from_millis(10)).await;
        let mut later = Vec::new();
        while let Ok(kind) = heard.try_recv() {
            later.push(kind);
        }
        later.sort_by_key(|kind| matches!(kind, ChangeKind::ResourceUpdated(_)));
        assert_eq!(
            later,
            [
                ChangeKind::Tools,
                ChangeKind::ResourceUpdated("a://1".to_owned())
            ],
            "the burst's last change is announced once more"
        );
        tokio::time::sleep(WINDOW + Duration::from_millis(100)).await;
        assert!(heard.try_recv().is_err(), "and nothing after it");
        announcer.announce(ChangeKind::Tools);
        assert!(
            heard.try_recv().is_ok(),
            "a change after a quiet window goes at once"
        );
    }
}
