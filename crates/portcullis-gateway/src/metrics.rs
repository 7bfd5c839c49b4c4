//! Counters for `/metrics` (Prometheus text format), served on the admin listener only.
//!
//! Label values come from the gateway's own vocabulary (outcomes, reason codes, upstream
//! names); capability names are kept to a bounded set, so a caller inventing tool names cannot
//! grow the series without bound. Counting happens on every request, so it only looks up and
//! adds; the text is written when `/metrics` is read.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

/// One process's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<Series>,
    shadow_disagreements: AtomicU64,
    audit_refusals: AtomicU64,
    entitlements_rejected: AtomicU64,
    /// The entitlements file's last change was rejected: an older reading is enforced.
    entitlements_stale: std::sync::atomic::AtomicBool,
}

/// Counts by label values: a label value is looked up as a `&str`, and copied only the first
/// time it is seen.
type Counts = HashMap<String, u64>;

#[derive(Debug, Default)]
struct Series {
    /// By capability, then outcome.
    decisions: HashMap<String, Counts>,
    /// By list method.
    lists: Counts,
    /// By reason.
    authentication_failures: Counts,
    /// By upstream, then outcome.
    upstream_requests: HashMap<String, Counts>,
    /// By upstream: seconds, and how many.
    upstream_seconds: HashMap<String, (f64, u64)>,
}

/// Distinct capability labels kept; later names count as `other`. A denied call may name a
/// tool that does not exist, and callers choose those names.
const MAX_CAPABILITY_LABELS: usize = 500;

fn count(counts: &mut Counts, key: &str) {
    match counts.get_mut(key) {
        Some(value) => *value += 1,
        None => {
            counts.insert(key.to_owned(), 1);
        }
    }
}

/// The entry for a key seen for the first time.
fn nested<'a, V: Default>(map: &'a mut HashMap<String, V>, key: &str) -> &'a mut V {
    map.entry(key.to_owned()).or_default()
}

impl Metrics {
    fn series(&self) -> std::sync::MutexGuard<'_, Series> {
        self.series.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A decision on a call.
    pub(crate) fn decision(&self, outcome: &str, capability: &str) {
        let mut series = self.series();
        let capability = if series.decisions.contains_key(capability)
            || series.decisions.len() < MAX_CAPABILITY_LABELS
        {
            capability
        } else {
            "other"
        };
        match series.decisions.get_mut(capability) {
            Some(outcomes) => count(outcomes, outcome),
            None => count(nested(&mut series.decisions, capability), outcome),
        }
    }

    /// A call the shadow policies would have decided differently.
    pub(crate) fn shadow_disagreement(&self) {
        self.shadow_disagreements.fetch_add(1, Ordering::Relaxed);
    }

    /// A list filtered for a caller.
    pub(crate) fn list(&self, method: &str) {
        count(&mut self.series().lists, method);
    }

    /// A request refused before any decision.
    pub(crate) fn authentication_failure(&self, reason: &str) {
        count(&mut self.series().authentication_failures, reason);
    }

    /// The entitlements file was read (`Ok`) or rejected (`Err`), its previous reading kept.
    pub(crate) fn entitlements(&self, read: bool) {
        if !read {
            self.entitlements_rejected.fetch_add(1, Ordering::Relaxed);
        }
        self.entitlements_stale.store(!read, Ordering::Relaxed);
    }

    /// Why this gateway is not fully ready, if it is not: each reason one line.
    pub fn degraded(&self) -> Vec<&'static str> {
        let mut reasons = Vec::new();
        if self.entitlements_stale.load(Ordering::Relaxed) {
            reasons.push(
                "entitlements: the file's last change was rejected; an older reading is enforced",
            );
        }
        reasons
    }

    /// A state-changing call refused because its record could not be made durable.
    pub(crate) fn audit_refusal(&self) {
        self.audit_refusals.fetch_add(1, Ordering::Relaxed);
    }

    /// An allowed call's trip to its upstream.
    pub(crate) fn upstream(&self, upstream: &str, outcome: &str, latency: Duration) {
        let mut series = self.series();
        match series.upstream_requests.get_mut(upstream) {
            Some(outcomes) => count(outcomes, outcome),
            None => count(nested(&mut series.upstream_requests, upstream), outcome),
        }
        let seconds = match series.upstream_seconds.get_mut(upstream) {
            Some(seconds) => seconds,
            None => nested(&mut series.upstream_seconds, upstream),
        };
        seconds.0 += latency.as_secs_f64();
        seconds.1 += 1;
    }

    /// The exposition text, with the audit writer's figures appended.
    pub fn render(&self, audit: &[portcullis_audit::Sink]) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let mut out = String::new();
        // Sorted, so the text reads the same from scrape to scrape.
        let mut lines: BTreeMap<(&str, String), String> = BTreeMap::new();
        {
            let series = self.series();
            for (capability, outcomes) in &series.decisions {
                for (outcome, value) in outcomes {
                    let labels = format!(
                        "outcome=\"{}\",capability=\"{}\"",
                        escape(outcome),
                        escape(capability)
                    );
                    lines.insert(("portcullis_decisions_total", labels), value.to_string());
                }
            }
            for (method, value) in &series.lists {
                let labels = format!("method=\"{}\"", escape(method));
                lines.insert(
                    ("portcullis_lists_filtered_total", labels),
                    value.to_string(),
                );
            }
            for (reason, value) in &series.authentication_failures {
                let labels = format!("reason=\"{}\"", escape(reason));
                lines.insert(
                    ("portcullis_authentication_failures_total", labels),
                    value.to_string(),
                );
            }
            for (upstream, outcomes) in &series.upstream_requests {
                for (outcome, value) in outcomes {
                    let labels = format!(
                        "upstream=\"{}\",outcome=\"{}\"",
                        escape(upstream),
                        escape(outcome)
                    );
                    lines.insert(
                        ("portcullis_upstream_requests_total", labels),
                        value.to_string(),
                    );
                }
            }
            for (upstream, (sum, count)) in &series.upstream_seconds {
                let labels = format!("upstream=\"{}\"", escape(upstream));
                lines.insert(
                    ("portcullis_upstream_seconds_sum", labels.clone()),
                    sum.to_string(),
                );
                lines.insert(
                    ("portcullis_upstream_seconds_count", labels),
                    count.to_string(),
                );
            }
        }
        let shadow = self.shadow_disagreements.load(Relaxed);
        if shadow > 0 {
            lines.insert(
                ("portcullis_shadow_disagreements_total", String::new()),
                shadow.to_string(),
            );
        }
        let refusals = self.audit_refusals.load(Relaxed);
        if refusals > 0 {
            lines.insert(
                ("portcullis_audit_refused_calls_total", String::new()),
                refusals.to_string(),
            );
        }
        let rejected = self.entitlements_rejected.load(Relaxed);
        if rejected > 0 {
            lines.insert(
                ("portcullis_entitlements_rejected_total", String::new()),
                rejected.to_string(),
            );
            let stale = self.entitlements_stale.load(Relaxed);
            lines.insert(
                ("portcullis_entitlements_stale", String::new()),
                u8::from(stale).to_string(),
            );
        }
        let mut last = "";
        for ((name, labels), value) in &lines {
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

#[cfg(test)]
mod tests {
    use super::*;

    // See: issue 14. A rejected entitlements file kept the previous reading silently: a disable
    // that did not take effect looked like one that did.
    #[test]
    fn a_rejected_entitlements_file_shows_in_metrics_and_readiness_until_one_is_read() {
        let metrics = Metrics::default();
        assert!(metrics.degraded().is_empty());
        metrics.entitlements(false);
        assert_eq!(metrics.degraded().len(), 1);
        let text = metrics.render(&[]);
        assert!(text.contains("portcullis_entitlements_stale 1"), "{text}");
        assert!(
            text.contains("portcullis_entitlements_rejected_total 1"),
            "{text}"
        );
        metrics.entitlements(true);
        assert!(metrics.degraded().is_empty());
        assert!(
            metrics
                .render(&[])
                .contains("portcullis_entitlements_stale 0")
        );
    }
}
