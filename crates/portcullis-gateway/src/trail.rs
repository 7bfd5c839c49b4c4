//! The gateway's audit trail: where records go (every configured sink), and the counters
//! `/metrics` shows. The records themselves are built by `access::record`.

use std::time::Duration;

use portcullis_audit::{AuditError, AuditRecord, Durability, LineTarget, Sink};

/// Where records go (with no `[audit]` configured, nowhere), and the counters `/metrics`
/// shows.
#[derive(Clone, Default)]
pub struct Trail {
    sinks: Vec<Sink>,
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
        // Every sink gets every record; a durable record is durable only once all have it.
        let mut outcome = Ok(());
        for sink in &self.sinks {
            if let Err(error) = sink.record(record.clone(), durability).await {
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
        if let Some((last, others)) = self.sinks.split_last() {
            for sink in others {
                sink.record_later(record.clone());
            }
            last.record_later(record);
        }
    }

    /// Count `record`, and keep or redact its raw arguments as configured.
    fn prepare(&self, record: AuditRecord) -> AuditRecord {
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
        let mut record = record;
        record.arguments = match (&self.arguments, record.arguments.take()) {
            (Some(redaction), Some(arguments)) => Some(redaction.apply(arguments)),
            _ => None,
        };
        record
    }
}
