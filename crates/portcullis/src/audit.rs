//! `portcullis audit verify|query|tail`: read a trail, of a configuration (`--config`) or of a
//! demo's data dir (`--data-dir`), while the gateway runs (SQLite readers do not block it).

use std::{
    fmt::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use portcullis_audit::{AuditRecord, Filter, VerifyReport};
use portcullis_gateway::config::Config;

/// Which trail.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub(crate) struct Source {
    /// The gateway's configuration file (its `[audit] sqlite`).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// A `portcullis demo` data dir.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl Source {
    fn path(&self) -> anyhow::Result<PathBuf> {
        match (&self.config, &self.data_dir) {
            (Some(config), _) => Config::load(config)?
                .audit
                .and_then(|audit| audit.sqlite)
                .context("this configuration has no `[audit] sqlite` trail to read"),
            (None, Some(dir)) => Ok(dir.join(crate::demo::AUDIT_FILE)),
            (None, None) => bail!("give --config or --data-dir"),
        }
    }
}

/// Record filters.
#[derive(Debug, clap::Args)]
pub(crate) struct Filters {
    /// Only this subject.
    #[arg(long)]
    subject: Option<String>,
    /// Only this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Only this capability.
    #[arg(long)]
    capability: Option<String>,
    /// Only this decision: allow, deny, step-up, ask-approval, error.
    #[arg(long)]
    decision: Option<String>,
    /// Only this correlation id.
    #[arg(long)]
    correlation: Option<String>,
    /// From this time on (RFC 3339 UTC, e.g. 2026-11-26T13:00:00Z).
    #[arg(long)]
    since: Option<String>,
    /// Before this time.
    #[arg(long)]
    until: Option<String>,
    /// `table` or `json` (one record per line).
    #[arg(long, default_value = "table")]
    format: String,
}

impl Filters {
    fn filter(&self) -> Filter {
        Filter {
            subject: self.subject.clone(),
            tenant: self.tenant.clone(),
            capability: self.capability.clone(),
            decision: self.decision.clone(),
            correlation: self.correlation.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
            after: None,
        }
    }
}

pub(crate) fn verify(source: &Source) -> anyhow::Result<String> {
    // A configuration may name a JSON lines trail instead of (or beside) SQLite.
    if let Some(config) = &source.config
        && let Some(audit) = Config::load(config)?.audit
        && let Some(jsonl) = audit.jsonl
        && audit.sqlite.is_none()
    {
        return match portcullis_audit::verify_lines(&jsonl)? {
            VerifyReport::Intact { records } => Ok(format!(
                "{}: intact, {records} records, every one linked to the one before\n",
                jsonl.display()
            )),
            VerifyReport::Broken { seq, reason } => {
                bail!("{}: broken at record {seq}: {reason}", jsonl.display())
            }
        };
    }
    let path = source.path()?;
    match portcullis_audit::verify(&path)? {
        VerifyReport::Intact { records } => Ok(format!(
            "{}: intact, {records} records, every one linked to the one before\n",
            path.display()
        )),
        VerifyReport::Broken { seq, reason } => {
            bail!("{}: broken at record {seq}: {reason}", path.display())
        }
    }
}

pub(crate) fn query(source: &Source, filters: &Filters) -> anyhow::Result<String> {
    let path = source.path()?;
    let records = portcullis_audit::query(&path, &filters.filter())?;
    render(&records, &filters.format, true)
}

pub(crate) async fn tail(source: &Source, filters: &Filters) -> anyhow::Result<()> {
    let path = source.path()?;
    let mut filter = filters.filter();
    let mut header = true;
    loop {
        if Path::new(&path).exists() {
            let records = portcullis_audit::query(&path, &filter)?;
            if let Some((seq, _)) = records.last() {
                filter.after = Some(*seq);
            }
            if !records.is_empty() || header {
                let text = render(&records, &filters.format, header)?;
                header = false;
                #[expect(clippy::print_stdout, reason = "following the trail is the output")]
                {
                    print!("{text}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn render(records: &[(i64, AuditRecord)], format: &str, header: bool) -> anyhow::Result<String> {
    let mut out = String::new();
    match format {
        "json" => {
            for (_, record) in records {
                let _ = writeln!(out, "{}", serde_json::to_string(record)?);
            }
        }
        "table" => {
            if header {
                let _ = writeln!(
                    out,
                    "{:>6}  {:24}  {:12}  {:10}  {:12}  {:18}  {:13}  {:28}  reasons",
                    "seq",
                    "time",
                    "subject",
                    "tenant",
                    "method",
                    "capability",
                    "decision",
                    "policies"
                );
            }
            for (seq, r) in records {
                let _ = writeln!(
                    out,
                    "{seq:>6}  {:24}  {:12}  {:10}  {:12}  {:18}  {:13}  {:28}  {}",
                    r.time,
                    r.subject.as_deref().unwrap_or("-"),
                    r.tenant.as_deref().unwrap_or("-"),
                    r.method,
                    r.capability.as_deref().unwrap_or("-"),
                    r.decision.as_str(),
                    if r.policies.is_empty() {
                        "-".to_owned()
                    } else {
                        r.policies.join(",")
                    },
                    r.reasons.join(","),
                );
            }
        }
        other => bail!("--format `{other}`: use table or json"),
    }
    Ok(out)
}
