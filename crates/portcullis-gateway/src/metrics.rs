//! Counters for `/metrics` (Prometheus text format), served on the admin listener only.
//!
//! Label values come from the gateway's own vocabulary (outcomes, reason codes, upstream
//! names); capability names are kept to a bounded set, so a caller inventing tool names cannot
//! grow the series without bound.

use std::{
    collections::BTreeMap,
    fmt::Write,
    sync::{Mutex, PoisonError},
    time::Duration,
};

/// One process's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, String), f64>>,
    capabilities: Mutex<std::collections::BTreeSet<String>>,
}

/// Distinct capability labels kept; later names count as `other`. A denied call may name a
/// tool that does not exist, and callers choose those names.
const MAX_CAPABILITY_LABELS: usize = 500;

impl Metrics {
    fn add(&self, name: &'static str, labels: String, value: f64) {
        *self
            .counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((name, labels))
            .or_default() += value;
    }

    /// A decision on a call.
    pub(crate) fn decision(&self, outcome: &str, capability: &str) {
        let capability = {
            let mut seen = self
                .capabilities
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if seen.contains(capability) || seen.len() < MAX_CAPABILITY_LABELS {
                seen.insert(capability.to_owned());
                capability
            } else {
                "other"
            }
        };
        self.add(
            "portcullis_decisions_total",
            format!(
                "outcome=\"{}\",capability=\"{}\"",
                escape(outcome),
                escape(capability)
            ),
            1.0,
        );
    }

    /// A call the shadow policies would have decided differently.
    pub(crate) fn shadow_disagreement(&self) {
        self.add("portcullis_shadow_disagreements_total", String::new(), 1.0);
    }

    /// A list filtered for a caller.
    pub(crate) fn list(&self, method: &str) {
        let labels = format!("method=\"{}\"", escape(method));
        self.add("portcullis_lists_filtered_total", labels, 1.0);
    }

    /// A request refused before any decision.
    pub(crate) fn authentication_failure(&self, reason: &str) {
        self.add(
            "portcullis_authentication_failures_total",
            format!("reason=\"{}\"", escape(reason)),
            1.0,
        );
    }

    /// A state-changing call refused because its record could not be made durable.
    pub(crate) fn audit_refusal(&self) {
        self.add("portcullis_audit_refused_calls_total", String::new(), 1.0);
    }

    /// An allowed call's trip to its upstream.
    pub(crate) fn upstream(&self, upstream: &str, outcome: &str, latency: Duration) {
        let labels = format!(
            "upstream=\"{}\",outcome=\"{}\"",
            escape(upstream),
            escape(outcome)
        );
        self.add("portcullis_upstream_requests_total", labels, 1.0);
        let labels = format!("upstream=\"{}\"", escape(upstream));
        self.add(
            "portcullis_upstream_seconds_sum",
            labels.clone(),
            latency.as_secs_f64(),
        );
        self.add("portcullis_upstream_seconds_count", labels, 1.0);
    }

    /// The exposition text, with the audit writer's figures appended.
    pub fn render(&self, audit: &[portcullis_audit::Sink]) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let mut out = String::new();
        let counters = self
            .counters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut last = "";
        for ((name, labels), value) in &counters {
            if *name != last {
                let kind = if name.ends_with("_total") {
                    "counter"
                } else {
                    "untyped"
                };
                let _ = writeln!(out, "# TYPE {name} {kind}");
                last = name;
            }
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {value}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
        let series: [(&str, &str, SinkReading); 5] = [
            ("portcullis_audit_queue_depth", "gauge", |s| {
                s.queued() as f64
            }),
            ("portcullis_audit_records_total", "counter", |s| {
                s.stats().records.load(Relaxed) as f64
            }),
            ("portcullis_audit_write_failures_total", "counter", |s| {
                s.stats().failures.load(Relaxed) as f64
            }),
            ("portcullis_audit_commit_seconds_sum", "untyped", |s| {
                s.stats().commit_micros.load(Relaxed) as f64 / 1e6
            }),
            ("portcullis_audit_commit_seconds_count", "untyped", |s| {
                s.stats().commits.load(Relaxed) as f64
            }),
        ];
        for (name, kind, value) in series.iter().filter(|_| !audit.is_empty()) {
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for sink in audit {
                let _ = writeln!(out, "{name}{{sink=\"{}\"}} {}", sink.kind(), value(sink));
            }
        }
        out
    }
}

/// One figure of an audit sink.
type SinkReading = fn(&portcullis_audit::Sink) -> f64;

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
