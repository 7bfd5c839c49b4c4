use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

/// An id that ties one response a caller sees to the log lines and records an operator reads.
///
/// Safe to show to a caller: it carries no identity, no token and no policy internals.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CorrelationId(String);

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl CorrelationId {
    /// A fresh id, unique within this process and unlikely to repeat across restarts: the start
    /// of the current second joined with a process-wide sequence number.
    pub fn fresh() -> Self {
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        Self(format!("pc-{seconds:x}-{sequence:06x}"))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_differ() {
        assert_ne!(CorrelationId::fresh(), CorrelationId::fresh());
    }
}
