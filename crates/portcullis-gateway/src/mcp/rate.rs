//! Each caller's request rate: a token bucket per caller (issuer and subject), so that one
//! caller sending as fast as it can slows only itself.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use portcullis_core::CallerId;

/// Callers followed at once; past it, buckets that have refilled (and so say nothing a new
/// one would not) are let go.
const MAX_CALLERS: usize = 100_000;

/// Every caller's bucket.
pub(crate) struct Rates {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<CallerId, (f64, Instant)>>,
}

impl Rates {
    /// `per_second` requests a second per caller, sustained, and twice that in a burst.
    pub(crate) fn new(per_second: u32) -> Self {
        Self {
            per_second: f64::from(per_second),
            burst: 2.0 * f64::from(per_second),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one request from `caller`'s bucket, or say how long until one is there.
    pub(crate) fn admit(&self, caller: &CallerId) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_CALLERS && !buckets.contains_key(caller) {
            let (per_second, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_second < burst
            });
        }
        let (tokens, at) = buckets.entry(caller.clone()).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - *tokens) / self.per_second))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // See: issue 15. One caller can send a burst, then only its rate; another caller is not
    // slowed by it.
    #[test]
    fn a_caller_past_its_burst_waits_and_another_does_not() {
        let rates = Rates::new(10);
        let flooder = CallerId::new("https://issuer.example", "flooder");
        let other = CallerId::new("https://issuer.example", "other");
        let admitted = (0..100).filter(|_| rates.admit(&flooder).is_ok()).count();
        assert_eq!(admitted, 20, "a burst of twice the rate");
        let wait = rates.admit(&flooder).unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(rates.admit(&other).is_ok());
    }
}
