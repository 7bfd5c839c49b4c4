//! The gateway's audit trail: a record for every decision and every refusal, built from what
//! the request path knows. Tokens, secrets and headers never go in; arguments only as a digest.

use std::time::Duration;

use portcullis_audit::{AuditDecision, AuditError, AuditRecord, Durability, LineTarget, Sink};
use portcullis_policy::{Decision, Principal};

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
}

/// A record of a request refused before any decision (401, 404 for a stolen session, 503).
pub(crate) fn refusal(
    correlation: &str,
    request: &str,
    decision: AuditDecision,
    status: u16,
    reason: &str,
    principal: Option<&portcullis_authn::VerifiedPrincipal>,
) -> AuditRecord {
    let mut record = AuditRecord::new(correlation, request, decision);
    record.status = Some(status);
    record.reasons = vec![reason.to_owned()];
    if let Some(principal) = principal {
        record.issuer = Some(principal.issuer().to_owned());
        record.subject = Some(principal.subject().to_owned());
        record.tenant = principal.tenant().map(str::to_owned);
        record.client_id = principal.client_id().map(str::to_owned);
    }
    record
}

/// The parts of a decided call a record keeps.
pub(crate) struct Decided<'a> {
    pub(crate) correlation: &'a str,
    pub(crate) method: &'a str,
    pub(crate) capability: &'a str,
    pub(crate) target: Option<&'a str>,
    pub(crate) arguments: Option<&'a serde_json::Map<String, serde_json::Value>>,
    pub(crate) era: &'a str,
    pub(crate) session: Option<&'a str>,
}

/// A record of a decision on a call by `principal`.
pub(crate) fn decision(
    principal: &Principal,
    call: &Decided<'_>,
    decision: &Decision,
) -> AuditRecord {
    let outcome = match decision {
        Decision::Allow(_) => AuditDecision::Allow,
        Decision::Deny { .. } => AuditDecision::Deny,
        Decision::StepUp { .. } => AuditDecision::StepUp,
        Decision::AskApproval(_) => AuditDecision::AskApproval,
    };
    let reasons = decision.reasons();
    let mut record = called(principal, call, outcome);
    record.policies.clone_from(&reasons.policies);
    record.reasons = reasons
        .codes
        .iter()
        .map(|code| code.as_str().to_owned())
        .collect();
    record.policy_version = Some(reasons.policy_version.clone());
    if matches!(decision, Decision::StepUp { .. }) {
        record.status = Some(403);
    }
    record
}

/// A record of what became of an allowed call: the upstream's answer, and how long it took.
pub(crate) fn outcome(
    principal: &Principal,
    correlation: &str,
    method: &str,
    capability: &str,
    upstream: &str,
    outcome: &str,
    latency: std::time::Duration,
) -> AuditRecord {
    let mut record = AuditRecord::new(correlation, method, AuditDecision::Allow);
    record.issuer = Some(principal.issuer.clone());
    record.subject = Some(principal.subject.clone());
    record.tenant.clone_from(&principal.tenant);
    record.client_id.clone_from(&principal.client_id);
    record.capability = Some(capability.to_owned());
    record.upstream = Some(upstream.to_owned());
    record.outcome = Some(outcome.to_owned());
    record.latency_ms = Some(u64::try_from(latency.as_millis()).unwrap_or(u64::MAX));
    record
}

/// A record of a list filtered for `principal`: how many items it was shown and how many
/// policy withheld (never which).
pub(crate) fn listed(
    principal: &Principal,
    (method, era, session): (&str, &str, Option<&str>),
    listed: usize,
    withheld: usize,
    policy_version: &str,
) -> AuditRecord {
    let correlation = portcullis_core::CorrelationId::fresh();
    let mut record = AuditRecord::new(correlation.as_str(), method, AuditDecision::Allow);
    record.era = Some(era.to_owned());
    record.session = session.map(str::to_owned);
    record.issuer = Some(principal.issuer.clone());
    record.subject = Some(principal.subject.clone());
    record.tenant.clone_from(&principal.tenant);
    record.client_id.clone_from(&principal.client_id);
    record.reasons = vec!["filtered".to_owned()];
    record.policy_version = Some(policy_version.to_owned());
    record.listed = Some(u32::try_from(listed).unwrap_or(u32::MAX));
    record.withheld = Some(u32::try_from(withheld).unwrap_or(u32::MAX));
    record
}

/// A record of a request the proxy refused for `principal` without a call decision (a
/// completion on a reference it cannot see).
pub(crate) fn refused_request(
    principal: &Principal,
    method: &str,
    capability: &str,
    reason: &str,
) -> AuditRecord {
    let correlation = portcullis_core::CorrelationId::fresh();
    let mut record = AuditRecord::new(correlation.as_str(), method, AuditDecision::Deny);
    record.issuer = Some(principal.issuer.clone());
    record.subject = Some(principal.subject.clone());
    record.tenant.clone_from(&principal.tenant);
    record.client_id.clone_from(&principal.client_id);
    record.capability = Some(capability.to_owned());
    record.reasons = vec![reason.to_owned()];
    record
}

/// A record of a call on `principal`'s behalf with `outcome` and no policy decision (the
/// object did not resolve).
pub(crate) fn called(
    principal: &Principal,
    call: &Decided<'_>,
    outcome: AuditDecision,
) -> AuditRecord {
    let mut record = AuditRecord::new(call.correlation, call.method, outcome);
    record.era = Some(call.era.to_owned());
    record.session = call.session.map(str::to_owned);
    record.issuer = Some(principal.issuer.clone());
    record.subject = Some(principal.subject.clone());
    record.tenant.clone_from(&principal.tenant);
    record.client_id.clone_from(&principal.client_id);
    record.capability = Some(call.capability.to_owned());
    record.target = call.target.map(str::to_owned);
    let arguments = call
        .arguments
        .map(|arguments| serde_json::Value::Object(arguments.clone()));
    record.arguments_digest = arguments.as_ref().map(portcullis_audit::arguments_digest);
    // Kept only if `[audit] raw_arguments` allows; [`Trail::record`] redacts or drops it.
    record.arguments = arguments;
    record
}
