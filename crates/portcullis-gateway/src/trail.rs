//! The gateway's audit trail: where records go (every configured sink), and the counters
//! `/metrics` shows. The records themselves are built by `access::record`.

use std::time::Duration;

use portcullis_audit::{AuditError, AuditRecord, Durability, LineTarget, Sink};

/// How long refusals before authentication of one kind are counted into one record.
const FLOOD_WINDOW: Duration = Duration::from_secs(10);

/// A kind of counted refusal.
#[derive(Clone, PartialEq, Eq, Hash)]
struct FloodKind {
    reason: String,
    status: u16,
    /// Issuer and subject, if known.
    caller: Option<(String, String)>,
    capability: Option<String>,
    source: Option<String>,
}

/// Kinds counted at once. SECURITY: past it (a flood from very many addresses), a new kind is
/// counted without its source, so the records per window stay few (a thousand in ten seconds).
const MAX_FLOOD_KINDS: usize = 1000;

/// The record standing for a window's counted refusals: its first, now, with the count and a
/// correlation id of its own.
fn summary(flood: Flood) -> AuditRecord {
    let mut record = flood.last;
    record.time = portcullis_audit::now_rfc3339();
    record.correlation = portcullis_core::CorrelationId::fresh().as_str().to_owned();
    record.repeats = Some(flood.repeats);
    record
}

/// Refusals of one kind in the current window.
struct Flood {
    since: std::time::Instant,
    repeats: u64,
    /// The first of the window, standing for the rest.
    last: AuditRecord,
}

/// Where records go (with no `[audit]` configured, nowhere), and the counters `/metrics`
/// shows.
#[derive(Clone, Default)]
pub struct Trail {
    sinks: Vec<Sink>,
    /// Refusals before authentication, counted per kind and window.
    floods: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<FloodKind, Flood>>>,
    /// With `raw_arguments`, how arguments are redacted; without, records keep only digests.
    arguments: Option<crate::redact::Redaction>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl Trail {
    /// The trail `config` names (`[audit] sqlite`), opened; none without one.
    pub fn open(config: &crate::config::Config) -> Result<Self, AuditError> {
        let Some(audit) = &config.audit else {
            return Ok(Self::default());
        };
        let mut sinks = Vec::new();
        if let Some(path) = &audit.sqlite {
            sinks.push(portcullis_audit::sqlite(path)?);
        }
        if let Some(url) = &audit.postgres {
            sinks.push(portcullis_audit::postgres(url)?);
        }
        if let Some(path) = &audit.jsonl {
            sinks.push(portcullis_audit::lines(LineTarget::File {
                path: path.clone(),
                max_bytes: audit.jsonl_max_bytes,
            })?);
        }
        if audit.stdout {
            sinks.push(portcullis_audit::lines(LineTarget::Stdout)?);
        }
        Ok(Self {
            sinks,
            floods: std::sync::Arc::default(),
            arguments: audit
                .raw_arguments
                .then(|| crate::redact::Redaction::new(&audit.redact)),
            metrics: std::sync::Arc::default(),
        })
    }

    /// Whether records are kept anywhere (the counters are kept in any case).
    pub(crate) fn keeps_records(&self) -> bool {
        !self.sinks.is_empty()
    }

    /// The kinds of the sinks whose last write failed, within the last 30 seconds.
    pub fn failing(&self) -> Vec<&'static str> {
        self.sinks
            .iter()
            .filter(|sink| sink.stats().failing_within(Duration::from_secs(30)))
            .map(Sink::kind)
            .collect()
    }

    /// The counters.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// The `/metrics` text.
    pub fn render_metrics(&self) -> String {
        self.metrics.render(&self.sinks)
    }

    /// Record `record`. A failure is returned to callers that must fail closed (a durable
    /// record before a state-changing call) and logged for the others.
    pub async fn record(
        &self,
        record: AuditRecord,
        durability: Durability,
    ) -> Result<(), AuditError> {
        let record = self.prepare(record);
        let span = tracing::error_span!(
            target: crate::trace::TARGET,
            "audit",
            decision = record.decision.as_str(),
            durable = matches!(durability, Durability::Durable),
        );
        // Every sink gets every record; a durable record is durable only once all have it.
        let mut outcome = Ok(());
        for sink in &self.sinks {
            let written = tracing::Instrument::instrument(
                sink.record(record.clone(), durability),
                span.clone(),
            );
            if let Err(error) = written.await {
                outcome = Err(error);
            }
        }
        if let Err(error) = &outcome {
            tracing::error!(%error, "audit record not written");
        }
        outcome
    }

    /// Queue `record` for every sink and go on: for records nothing waits on.
    pub fn record_later(&self, record: AuditRecord) {
        let record = self.prepare(record);
        self.write_later(record);
    }

    /// Queue `record` on every sink as it is (counted already).
    fn write_later(&self, record: AuditRecord) {
        if let Some((last, others)) = self.sinks.split_last() {
            for sink in others {
                sink.record_later(record.clone());
            }
            last.record_later(record);
        }
    }

    /// Record a refusal that can come as fast as anyone likes to send it (before
    /// authentication, or past a caller's rate). SECURITY: written one by one they would
    /// drown, or rotate away, everyone else's records. The first of a kind (reason, status and
    /// caller, if known) in each `FLOOD_WINDOW` is written; the rest are counted and written
    /// as one record with `repeats` once the window ends.
    pub fn refused_counted(&self, record: AuditRecord) {
        let mut record = record;
        let mut key = FloodKind {
            reason: record.reasons.first().cloned().unwrap_or_default(),
            status: record.status.unwrap_or(0),
            caller: record.issuer.clone().zip(record.subject.clone()),
            capability: record.capability.clone(),
            source: record.source.clone(),
        };
        let now = std::time::Instant::now();
        let summary = {
            let mut floods = self
                .floods
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if floods.len() >= MAX_FLOOD_KINDS && !floods.contains_key(&key) {
                key.source = None;
                record.source = None;
            }
            match floods.get_mut(&key) {
                Some(flood) if now.duration_since(flood.since) < FLOOD_WINDOW => {
                    flood.repeats += 1;
                    self.count(&record);
                    return;
                }
                _ => {}
            }
            let ended = floods.insert(
                key,
                Flood {
                    since: now,
                    repeats: 0,
                    last: record.clone(),
                },
            );
            ended.filter(|flood| flood.repeats > 0).map(summary)
        };
        if let Some(summary) = summary {
            self.write_later(summary);
        }
        self.record_later(record);
    }

    /// Write the counts of refusal windows that have ended (`all`: of every window, at
    /// shutdown; see `refused_counted`), so a flood that stops is on record too.
    pub fn flush_floods(&self, all: bool) {
        let now = std::time::Instant::now();
        let ended: Vec<AuditRecord> = {
            let mut floods = self
                .floods
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let done: Vec<FloodKind> = floods
                .iter()
                .filter(|(_, flood)| all || now.duration_since(flood.since) >= FLOOD_WINDOW)
                .map(|(key, _)| key.clone())
                .collect();
            done.into_iter()
                .filter_map(|key| floods.remove(&key))
                .filter(|flood| flood.repeats > 0)
                .map(summary)
                .collect()
        };
        for summary in ended {
            self.write_later(summary);
        }
    }

    /// Count `record`, and keep or redact its raw arguments as configured.
    fn prepare(&self, record: AuditRecord) -> AuditRecord {
        self.count(&record);
        let mut record = record;
        record.arguments = match (&self.arguments, record.arguments.take()) {
            (Some(redaction), Some(arguments)) => Some(redaction.apply(arguments)),
            _ => None,
        };
        record
    }

    /// Count `record` in the metric it belongs to.
    fn count(&self, record: &AuditRecord) {
        match (record.outcome.as_deref(), &record.upstream) {
            (Some(outcome), Some(upstream)) => self.metrics.upstream(
                upstream,
                outcome,
                Duration::from_millis(record.latency_ms.unwrap_or(0)),
            ),
            _ if record.listed.is_some() => self.metrics.list(&record.method),
            _ if record.shadow => self.metrics.shadow_disagreement(),
            _ if record.capability.is_some() => self.metrics.decision(
                record.decision.as_str(),
                record.capability.as_deref().unwrap_or("-"),
            ),
            _ => self
                .metrics
                .authentication_failure(record.reasons.first().map_or("-", String::as_str)),
        }
    }
}
