//! Operator tools over a configuration's live catalog and policies: `matrix` (what each
//! capability needs and which checks apply), `review` (sample identities through every
//! capability) and `explain` (one decision and why).

use std::{fmt::Write, path::Path};

use anyhow::{Context, bail};
use portcullis_gateway::config::Config;
use portcullis_policy::{
    Approval, Call, CapabilityKind, Decision, MatrixRow, PolicyEngine, Principal, ReviewRow,
    Visibility,
};

/// How `matrix` writes its table.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Format {
    /// Markdown.
    Md,
    /// Comma-separated values (RFC 4180).
    Csv,
    /// An HTML page.
    Html,
    /// A JSON object: `policy_version`, and `rows`, one object per row keyed by the column
    /// names, each value the cell as the table shows it.
    Json,
}

fn engine(config: &Path) -> anyhow::Result<std::sync::Arc<PolicyEngine>> {
    let config = Config::load(config)?;
    match config.auth {
        Some(auth) => Ok(auth.policy),
        None => bail!("this configuration has no `[auth]`, so no policies decide anything"),
    }
}

/// The policies in force of `config` and the sample identities: `identities`, or else the
/// configuration's `[entitlements] file`.
pub(crate) fn policies_and_people(
    config: &Path,
    identities: Option<&Path>,
) -> anyhow::Result<(std::sync::Arc<PolicyEngine>, Vec<Principal>)> {
    let (engine, (people, _)) = policies_and_sample(config, identities)?;
    Ok((engine, people))
}

/// The sample: the people, and apart the subjects it disables.
type Sample = (Vec<Principal>, Vec<String>);

/// As [`policies_and_people`], with the subjects the sample disables.
fn policies_and_sample(
    config: &Path,
    identities: Option<&Path>,
) -> anyhow::Result<(std::sync::Arc<PolicyEngine>, Sample)> {
    let loaded = Config::load(config)?;
    let Some(auth) = loaded.auth else {
        bail!("this configuration has no `[auth]`, so no policies decide anything");
    };
    if let Some(path) = identities {
        return Ok((auth.policy, people_of(path)?));
    }
    // The configuration's own entitlements, read as the gateway reads them (issuers checked,
    // roles required, scopes narrowing a token's), each person holding every scope the
    // catalog names where the file does not narrow them.
    let entitlements = loaded
        .entitlements
        .as_ref()
        .context("give --identities FILE (the configuration has no [entitlements] file)")?;
    let mut every_scope: Vec<String> = auth
        .policy
        .catalog()
        .capabilities()
        .iter()
        .flat_map(|capability| capability.scopes.iter().cloned())
        .collect();
    every_scope.sort();
    every_scope.dedup();
    let sample = entitlements.sample(&every_scope);
    Ok((auth.policy, sample))
}

/// People from an identities file in the demo's format (`--identities`), as policies see them
/// holding every scope they may be granted; and apart, the subjects it disables.
fn people_of(path: &Path) -> anyhow::Result<Sample> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not TOML", path.display()))?;
    let strings = |table: &toml::Table, key: &str| -> Vec<String> {
        table
            .get(key)
            .and_then(toml::Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| item.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (mut people, mut disabled) = (Vec::new(), Vec::new());
    let entries = file
        .get("identity")
        .and_then(toml::Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (index, entry) in entries.iter().enumerate() {
        let Some(table) = entry.as_table() else {
            bail!("{}: identity[{index}] is not a table", path.display());
        };
        let Some(subject) = table.get("subject").and_then(toml::Value::as_str) else {
            bail!("{}: identity[{index}] has no `subject`", path.display());
        };
        if table.get("disabled").and_then(toml::Value::as_bool) == Some(true) {
            disabled.push(subject.to_owned());
            continue;
        }
        people.push(Principal {
            subject: subject.to_owned(),
            issuer: "review".to_owned(),
            tenant: table
                .get("tenant")
                .and_then(toml::Value::as_str)
                .map(str::to_owned),
            roles: strings(table, "roles"),
            scopes: strings(table, "scopes"),
            client_id: None,
        });
    }
    Ok((people, disabled))
}

pub(crate) fn matrix(config: &Path, format: Format) -> anyhow::Result<String> {
    let engine = engine(config)?;
    let header = [
        "Capability",
        "Kind",
        "Family",
        "Scopes",
        "Risk",
        "Tenant check",
        "Object check",
        "Approval",
        "Permitted by",
        "Forbidden by",
        "Audit",
    ];
    let loaded = Config::load(config)?;
    let out_of_band = loaded.consent.out_of_band;
    // What the trail keeps, as configured: nothing without `[audit]`.
    let sinks: Vec<&str> = loaded
        .audit
        .iter()
        .flat_map(|audit| {
            [
                audit.sqlite.as_ref().map(|_| "sqlite"),
                audit.postgres.as_ref().map(|_| "postgres"),
                audit.jsonl.as_ref().map(|_| "jsonl"),
                audit.stdout.then_some("stdout"),
            ]
        })
        .flatten()
        .collect();
    let rows: Vec<[String; 11]> = engine
        .matrix()
        .iter()
        .map(|row| matrix_cells(row, out_of_band, &sinks))
        .collect();
    Ok(table(format, &header, &rows, engine.version()))
}

/// `out_of_band`: the lowest tier approved only on the approval page; `sinks`: where records
/// go (none: not recorded).
fn matrix_cells(
    row: &MatrixRow,
    out_of_band: portcullis_policy::RiskTier,
    sinks: &[&str],
) -> [String; 11] {
    let capability = &row.capability;
    let venue = if capability.risk >= out_of_band {
        "on the approval page"
    } else {
        "in the client"
    };
    let list = |items: &[String], empty: &str| {
        if items.is_empty() {
            empty.to_owned()
        } else {
            items.join(", ")
        }
    };
    [
        capability.name.clone(),
        capability.kind.as_str().to_owned(),
        capability.family.clone(),
        list(&row.scopes, "-"),
        capability.risk.as_str().to_owned(),
        match (&row.tenant_check, &capability.resolver) {
            (Some(field), _) => format!("gateway pins `{field}`"),
            (None, Some(_)) => "gateway pins the resolved tenant".to_owned(),
            (None, None) => "backend only".to_owned(),
        },
        match (&row.object_check, &capability.resolver) {
            (None, _) => "-".to_owned(),
            (Some(field), None) => format!("`{field}` (backend only)"),
            (Some(field), Some(resolver)) => {
                format!("`{field}` resolved by `{}`", resolver.tool)
            }
        },
        match &row.approval {
            Approval::No => "no".to_owned(),
            Approval::RiskTier => format!("yes (risk tier), {venue}"),
            Approval::Policies(ids) => format!("yes ({}), {venue}", ids.join(", ")),
        },
        list(&row.permits, "nobody (default deny)"),
        list(&row.forbids, "-"),
        if sinks.is_empty() {
            "not recorded (no [audit]; counted at /metrics)".to_owned()
        } else if capability.risk >= portcullis_policy::RiskTier::Write {
            // A state-changing call waits for its record (`Durability::Durable`).
            format!("recorded ({}) before it runs", sinks.join(", "))
        } else {
            format!("every decision recorded ({})", sinks.join(", "))
        },
    ]
}

pub(crate) fn review(
    config: &Path,
    identities: Option<&Path>,
    format: Format,
) -> anyhow::Result<String> {
    let (engine, (people, disabled)) = policies_and_sample(config, identities)?;
    let header = [
        "Identity",
        "Capability",
        "Target",
        "Listed",
        "Decision",
        "Policies",
        "Reasons",
    ];
    let forbids = forbidding(&engine);
    let mut rows: Vec<[String; 7]> = engine
        .review(&people)
        .iter()
        .map(|row| review_cells(row, &forbids))
        .collect();
    // Every identity is in the review: a disabled one is refused everything, before any policy.
    for subject in &disabled {
        for capability in engine.catalog().capabilities() {
            rows.push([
                subject.clone(),
                capability.name.clone(),
                "-".to_owned(),
                "no".to_owned(),
                "deny (disabled)".to_owned(),
                "-".to_owned(),
                "subject_disabled".to_owned(),
            ]);
        }
    }
    Ok(table(format, &header, &rows, engine.version()))
}

/// The forbidding policies of `engine`, by id.
fn forbidding(engine: &PolicyEngine) -> std::collections::HashSet<String> {
    engine
        .matrix()
        .into_iter()
        .flat_map(|row| row.forbids)
        .collect()
}

/// The policies that decided `decision`: on a deny only those that forbid (the permit that a
/// gateway check, a tenant or an object, overruled did not decide it).
fn deciding_policies(
    decision: &Decision,
    forbids: &std::collections::HashSet<String>,
) -> Vec<String> {
    let policies = &decision.reasons().policies;
    match decision {
        Decision::Deny { .. } => policies
            .iter()
            .filter(|id| forbids.contains(*id))
            .cloned()
            .collect(),
        _ => policies.clone(),
    }
}

fn review_cells(row: &ReviewRow, forbids: &std::collections::HashSet<String>) -> [String; 7] {
    let reasons = row.decision.reasons();
    let policies = deciding_policies(&row.decision, forbids);
    [
        row.subject.clone(),
        row.capability.clone(),
        row.target.clone(),
        if row.listed { "yes" } else { "no" }.to_owned(),
        outcome(&row.decision),
        if policies.is_empty() {
            "-".to_owned()
        } else {
            policies.join(", ")
        },
        reasons
            .codes
            .iter()
            .map(|code| code.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    ]
}

pub(crate) fn outcome(decision: &Decision) -> String {
    match decision {
        Decision::Allow(_) => "allow".to_owned(),
        // The target is answered as one that does not exist (its capability may still be
        // listed: a template whose object belongs to another tenant).
        Decision::Deny {
            visibility: Visibility::Hidden,
            ..
        } => "deny (answered as not found)".to_owned(),
        Decision::Deny { .. } => "deny (denied by policy)".to_owned(),
        Decision::StepUp { scopes, .. } => format!("step-up ({})", scopes.join(" ")),
        Decision::AskApproval(_) => "ask approval".to_owned(),
    }
}

pub(crate) struct Explain<'a> {
    pub(crate) config: &'a Path,
    pub(crate) identities: Option<&'a Path>,
    pub(crate) subject: &'a str,
    pub(crate) scopes: &'a [String],
    pub(crate) method: &'a str,
    pub(crate) name: &'a str,
    pub(crate) arguments: Option<&'a str>,
}

pub(crate) fn explain(request: &Explain<'_>) -> anyhow::Result<String> {
    let (engine, people) = policies_and_people(request.config, request.identities)?;
    let Some(mut principal) = people.into_iter().find(|p| p.subject == request.subject) else {
        bail!(
            "no identity `{}` among the sample identities",
            request.subject
        );
    };
    if !request.scopes.is_empty() {
        principal.scopes = request.scopes.to_vec();
    }
    let Some(kind) = CapabilityKind::of_method(request.method) else {
        bail!(
            "`{}` is not decided per capability; use tools/call, prompts/get or resources/read",
            request.method
        );
    };
    let arguments = match request.arguments {
        Some(text) => Some(
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
                .context("ARGS-JSON must be a JSON object")?,
        ),
        None => None,
    };
    let call = Call {
        kind,
        name: request.name,
        arguments: arguments.as_ref(),
        era: "2026-07-28",
        object: None,
        risk_hint: None,
        credential: Default::default(),
    };
    let decision = engine.authorize(&principal, &call);
    let listed = engine.visible(&principal, kind, request.name);
    let capability = engine.catalog().find(kind, request.name).map(|(c, _)| c);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "identity:    {} (tenant {}; roles {}; scopes {})",
        principal.subject,
        principal.tenant.as_deref().unwrap_or("none"),
        principal.roles.join(", "),
        principal.scopes.join(" ")
    );
    let _ = writeln!(
        out,
        "request:     {} {} {}",
        request.method,
        request.name,
        request.arguments.unwrap_or("{}")
    );
    let _ = match capability {
        Some(c) => writeln!(
            out,
            "capability:  {} {} (family {}, risk {}, needs {})",
            c.kind.as_str(),
            c.name,
            c.family,
            c.risk.as_str(),
            if c.scopes.is_empty() {
                "no scope".to_owned()
            } else {
                c.scopes.join(" ")
            }
        ),
        None => writeln!(
            out,
            "capability:  not in the catalog (decided as `Action::\"{}\"`)",
            kind.as_str()
        ),
    };
    let _ = writeln!(out, "listed:      {}", if listed { "yes" } else { "no" });
    // The gateway resolves the target object with the backend before it decides; this
    // command reaches no backend, so it says that it did not.
    let unresolved = capability.and_then(|c| c.resolver.as_ref());
    if let Some(resolver) = unresolved {
        let _ = writeln!(
            out,
            "object:      NOT RESOLVED here: the gateway asks `{}` about the target first and \
             decides with its tenant and attributes; a missing object, or one of another \
             tenant, is answered `{}`",
            resolver.tool, resolver.not_found
        );
    }
    let _ = writeln!(
        out,
        "decision:    {}{}",
        outcome(&decision),
        if unresolved.is_some() {
            " (without the object: the gateway may still refuse)"
        } else {
            ""
        }
    );
    let reasons = decision.reasons();
    // As in `review`: a deny names the policies that forbid, not a permit a check overruled.
    let determining = deciding_policies(&decision, &forbidding(&engine));
    let _ = writeln!(
        out,
        "policies:    {}",
        if determining.is_empty() {
            "none determined it".to_owned()
        } else {
            determining.join(", ")
        }
    );
    let codes: Vec<&str> = reasons.codes.iter().map(|code| code.as_str()).collect();
    let _ = writeln!(out, "reasons:     {}", codes.join(", "));
    let _ = writeln!(out, "policy set:  {}", reasons.policy_version);
    Ok(out)
}

fn table<const N: usize>(
    format: Format,
    header: &[&str; N],
    rows: &[[String; N]],
    version: &str,
) -> String {
    let mut out = String::new();
    match format {
        Format::Json => {
            let rows: Vec<serde_json::Map<String, serde_json::Value>> = rows
                .iter()
                .map(|row| {
                    header
                        .iter()
                        .zip(row.iter())
                        .map(|(name, cell)| ((*name).to_owned(), cell.clone().into()))
                        .collect()
                })
                .collect();
            let document = serde_json::json!({"policy_version": version, "rows": rows});
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&document).unwrap_or_default()
            );
        }
        Format::Md => {
            let _ = writeln!(out, "| {} |", header.join(" | "));
            let _ = writeln!(out, "|{}", "---|".repeat(N));
            for row in rows {
                let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
                let _ = writeln!(out, "| {} |", cells.join(" | "));
            }
            let _ = writeln!(out, "\nPolicy set version {version}.");
        }
        Format::Csv => {
            let quote = |c: &str| format!("\"{}\"", c.replace('"', "\"\""));
            let _ = writeln!(out, "{}", header.map(quote).join(","));
            for row in rows {
                let cells: Vec<String> = row.iter().map(|c| quote(c)).collect();
                let _ = writeln!(out, "{}", cells.join(","));
            }
        }
        Format::Html => {
            let escape = |c: &str| {
                c.replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
                    .replace('"', "&quot;")
            };
            let _ = writeln!(
                out,
                "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Authorization matrix</title></head><body>\n<table>\n<tr>{}</tr>",
                header.map(|h| format!("<th>{}</th>", escape(h))).join("")
            );
            for row in rows {
                let cells: Vec<String> = row
                    .iter()
                    .map(|c| format!("<td>{}</td>", escape(c)))
                    .collect();
                let _ = writeln!(out, "<tr>{}</tr>", cells.join(""));
            }
            let _ = writeln!(
                out,
                "</table>\n<p>Policy set version {}.</p>\n</body></html>",
                escape(version)
            );
        }
    }
    out
}
