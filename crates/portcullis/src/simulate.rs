//! `portcullis simulate role-change --config FILE --as IDENTITY --remove ROLE`: the seed's
//! exercise, decided by the configuration's own policies and nothing else (no sockets, no
//! tokens): the identity lists its tools, loses ROLE mid-session, is told `list_changed` with
//! what it lost (and no one else is), lists again, and calls a lost tool with its unexpired
//! token; each step with the decision and the audit record the gateway would write.

use std::{fmt::Write, path::Path, time::Instant};

use anyhow::bail;
use portcullis_policy::{Call, CapabilityKind, PolicyEngine, Principal};

pub(crate) fn role_change(
    config: &Path,
    identities: Option<&Path>,
    subject: &str,
    remove: &str,
) -> anyhow::Result<String> {
    let (engine, people) = crate::operator::policies_and_people(config, identities)?;
    let Some(before) = people.iter().find(|p| p.subject == subject).cloned() else {
        bail!("no identity `{subject}` among the sample identities");
    };
    if !before.roles.iter().any(|role| role == remove) {
        bail!(
            "`{subject}` does not hold role `{remove}` (roles: {})",
            before.roles.join(", ")
        );
    }
    let mut after = before.clone();
    after.roles.retain(|role| role != remove);
    let engine = &*engine;
    let started = Instant::now();
    let mut out = String::new();
    let mut step = |text: String| {
        let _ = writeln!(
            out,
            "{:>8.3} ms  {text}",
            started.elapsed().as_secs_f64() * 1e3
        );
    };
    let tools = |principal: &Principal| visible_tools(engine, principal);
    let listed = tools(&before);
    step(format!(
        "{subject} (roles {}) lists its tools: {}",
        before.roles.join(", "),
        listed.join(", ")
    ));
    step(format!(
        "the entitlements source removes role `{remove}` from {subject}"
    ));
    let now = tools(&after);
    let lost: Vec<&String> = listed.iter().filter(|name| !now.contains(name)).collect();
    let others: Vec<&str> = people
        .iter()
        .filter(|p| p.subject != subject)
        .map(|p| p.subject.as_str())
        .collect();
    if lost.is_empty() {
        step(format!(
            "{subject}'s view is unchanged: no list_changed is sent to anyone"
        ));
    } else {
        step(format!(
            "notifications/tools/list_changed to {subject}'s sessions only (lost: {}); {} other identities hear nothing",
            join(&lost),
            others.len()
        ));
    }
    step(format!("{subject} lists again: {}", now.join(", ")));
    let Some(target) = lost.first() else {
        return Ok(out);
    };
    let call = Call {
        kind: CapabilityKind::Tool,
        name: target,
        arguments: None,
        era: "2025-11-25",
        object: None,
        risk_hint: None,
        credential: Default::default(),
    };
    let decision = engine.authorize(&after, &call);
    let reasons = decision.reasons();
    step(format!(
        "{subject} calls {target} with its still-unexpired token: {}",
        crate::operator::outcome(&decision)
    ));
    let codes: Vec<&str> = reasons.codes.iter().map(|code| code.as_str()).collect();
    step(format!(
        "audit: decision={} subject={subject} capability={target} reasons={} policies={} policy_version={}",
        decision.outcome(),
        codes.join(","),
        if reasons.policies.is_empty() {
            "-".to_owned()
        } else {
            reasons.policies.join(",")
        },
        reasons.policy_version
    ));
    Ok(out)
}

fn visible_tools(engine: &PolicyEngine, principal: &Principal) -> Vec<String> {
    let names: Vec<&str> = engine
        .catalog()
        .capabilities()
        .iter()
        .filter(|capability| capability.kind == CapabilityKind::Tool)
        .map(|capability| capability.name.as_str())
        .collect();
    let visible = engine.visible_all(principal, CapabilityKind::Tool, &names);
    names
        .into_iter()
        .zip(visible)
        .filter(|(_, visible)| *visible)
        .map(|(name, _)| name.to_owned())
        .collect()
}

fn join(names: &[&String]) -> String {
    names
        .iter()
        .map(|name| name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
