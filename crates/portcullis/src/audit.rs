//! `portcullis audit verify|query|tail`: read a trail, of a configuration (`--config`) or of a
//! demo's data dir (`--data-dir`), while the gateway runs (SQLite readers do not block it).

use std::{fmt::Write, path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use portcullis_audit::{AuditRecord, Filter, Store, VerifyReport};
use portcullis_gateway::config::Config;

/// Which trail.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub(crate) struct Source {
    /// The gateway's configuration file (its `[audit]` trails).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// A `portcullis demo` data dir.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl Source {
    /// Every trail the source names: a configuration's SQLite, PostgreSQL and JSON lines
    /// trails, in that order (the first is the one `query` and `tail` read).
    fn stores(&self) -> anyhow::Result<Vec<Store>> {
        let Some(config) = &self.config else {
            let dir = self
                .data_dir
                .as_deref()
                .context("give --config or --data-dir")?;
            return Ok(vec![Store::Sqlite(dir.join(crate::demo::AUDIT_FILE))]);
        };
        let audit = Config::load(config)?.audit;
        let stores: Vec<Store> = audit
            .map(|audit| {
                let sqlite = audit.sqlite.map(Store::Sqlite);
                let postgres = audit.postgres.map(Store::Postgres);
                let jsonl = audit.jsonl.map(Store::Lines);
                [sqlite, postgres, jsonl].into_iter().flatten().collect()
            })
            .unwrap_or_default();
        if stores.is_empty() {
            bail!(
                "this configuration keeps no trail to read: give `[audit]` a sqlite, postgres or jsonl sink"
            );
        }
        Ok(stores)
    }

    fn store(&self) -> anyhow::Result<Store> {
        let mut stores = self.stores()?;
        Ok(stores.remove(0))
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
    /// Only this decision: allow, deny, step-up, ask-approval, approved, declined, error.
    #[arg(long, value_parser = ["allow", "deny", "step-up", "ask-approval", "approved", "declined", "error"])]
    decision: Option<String>,
    /// Only this correlation id.
    #[arg(long)]
    correlation: Option<String>,
    /// From this time on: RFC 3339 (2026-11-26T13:00:00Z, offsets allowed) or a time back
    /// from now (90s, 10m, 2h, 1d).
    #[arg(long, value_parser = parse_time)]
    since: Option<String>,
    /// Before this time (as --since).
    #[arg(long, value_parser = parse_time)]
    until: Option<String>,
    /// `table` or `json` (one record per line).
    #[arg(long, default_value = "table")]
    format: String,
}

/// `text` as an RFC 3339 UTC time: an RFC 3339 time, or a duration back from now.
fn parse_time(text: &str) -> Result<String, String> {
    if let Some(millis) = portcullis_audit::rfc3339_millis(text) {
        return Ok(portcullis_audit::rfc3339_from_millis(millis));
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let seconds_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    let back = number
        .parse::<i64>()
        .ok()
        .filter(|_| seconds_per > 0)
        .and_then(|n| n.checked_mul(seconds_per * 1000));
    let now = portcullis_audit::rfc3339_millis(&portcullis_audit::now_rfc3339());
    match (back, now) {
        // Not before the year 1: further back than any record, and not a time records compare
        // with.
        (Some(back), Some(now)) if now.saturating_sub(back) >= -62_135_596_800_000 => Ok(
            portcullis_audit::rfc3339_from_millis(now.saturating_sub(back)),
        ),
        _ => Err(format!(
            "`{text}`: an RFC 3339 time (2026-11-26T13:00:00Z) or a time back from now (90s, \
             10m, 2h, 1d)"
        )),
    }
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
    let mut out = String::new();
    let mut broken = Vec::new();
    for store in source.stores()? {
        match store.verify()? {
            VerifyReport::Intact { records } => {
                let _ = writeln!(
                    out,
                    "{store}: intact, {records} records, every one linked to the one before"
                );
            }
            VerifyReport::IntactSince { first, records } => {
                let _ = writeln!(
                    out,
                    "{store}: intact from record {first} ({records} records, every one linked to \
                     the one before); the {} before it are no longer kept (rotated away) and \
                     cannot be verified",
                    first - 1
                );
            }
            VerifyReport::Broken { seq, reason } => {
                broken.push(format!("{store}: broken at record {seq}: {reason}"));
            }
        }
    }
    if !broken.is_empty() {
        bail!("{out}{}", broken.join("\n"));
    }
    Ok(out)
}

pub(crate) fn query(source: &Source, filters: &Filters) -> anyhow::Result<String> {
    let records = source.store()?.query(&filters.filter())?;
    render(&records, &filters.format, true)
}

pub(crate) async fn tail(source: &Source, filters: &Filters) -> anyhow::Result<()> {
    let store = source.store()?;
    let mut filter = filters.filter();
    let mut header = true;
    loop {
        if store.exists() {
            let records = store.query(&filter)?;
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
                    "{:>6}  {:24}  {:8}  {:12}  {:10}  {:12}  {:18}  {:18}  {:13}  {:10}  {:28}  {:28}  reasons",
                    "seq",
                    "time",
                    "kind",
                    "subject",
                    "tenant",
                    "method",
                    "capability",
                    "target",
                    "decision",
                    "outcome",
                    "policies",
                    "correlation"
                );
            }
            for (seq, r) in records {
                // An outcome record (what the upstream did with an allowed call) carries its
                // outcome; a decision record does not.
                let kind = if r.outcome.is_some() {
                    "outcome"
                } else {
                    "decision"
                };
                // SECURITY: names, subjects and targets are the callers' and upstreams': no
                // control character of theirs reaches the terminal.
                let clean = |text: &str| crate::pins::clean(text);
                let _ = writeln!(
                    out,
                    "{seq:>6}  {:24}  {kind:8}  {:12}  {:10}  {:12}  {:18}  {:18}  {:13}  {:10}  {:28}  {:28}  {}",
                    clean(&r.time),
                    clean(r.subject.as_deref().unwrap_or("-")),
                    clean(r.tenant.as_deref().unwrap_or("-")),
                    clean(&r.method),
                    clean(r.capability.as_deref().unwrap_or("-")),
                    clean(r.target.as_deref().unwrap_or("-")),
                    r.decision.as_str(),
                    clean(r.outcome.as_deref().unwrap_or("-")),
                    if r.policies.is_empty() {
                        "-".to_owned()
                    } else {
                        clean(&r.policies.join(","))
                    },
                    clean(&r.correlation),
                    clean(&r.reasons.join(",")),
                );
            }
        }
        other => bail!("--format `{other}`: use table or json"),
    }
    Ok(out)
}
