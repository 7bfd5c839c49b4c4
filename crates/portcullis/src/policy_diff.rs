//! `portcullis policy diff --config FILE --against NEW_POLICIES`: which sample identities would
//! gain or lose which capabilities if NEW_POLICIES replaced the configuration's policies, by
//! running both sets over the same identities and catalog (as `review` does) and printing only
//! what differs. The new set is validated against the catalog first, like a reload would be.

use std::{collections::BTreeMap, path::Path};

use anyhow::Context;
use portcullis_policy::PolicyEngine;

pub(crate) fn diff(
    config: &Path,
    against: &Path,
    identities: Option<&Path>,
) -> anyhow::Result<String> {
    let (policy, people) = crate::operator::policies_and_people(config, identities)?;
    let text = std::fs::read_to_string(against)
        .with_context(|| format!("cannot read {}", against.display()))?;
    let candidate = PolicyEngine::new(
        policy.catalog().clone(),
        &against.display().to_string(),
        &text,
    )?;
    let view = |engine: &PolicyEngine| -> BTreeMap<(String, String, String), (bool, String)> {
        engine
            .review(&people)
            .into_iter()
            .map(|row| {
                let outcome = crate::operator::outcome(&row.decision);
                (
                    (row.subject, row.capability, row.target),
                    (row.listed, outcome),
                )
            })
            .collect()
    };
    let (now, then) = (view(&policy), view(&candidate));
    let mut out = format!(
        "Policies {} (in force) against {} ({}), for {} identities:\n\n",
        policy.version(),
        against.display(),
        candidate.version(),
        people.len()
    );
    let mut changes = 0;
    for (key, before) in &now {
        let Some(after) = then.get(key) else {
            continue;
        };
        if before == after {
            continue;
        }
        changes += 1;
        let (subject, capability, target) = key;
        // Usable: allowed outright, or once the caller steps up or a person approves.
        let usable = |outcome: &str| !outcome.starts_with("deny");
        let verb = match (usable(&before.1), usable(&after.1)) {
            (true, false) => "loses",
            (false, true) => "gains",
            _ => "changes",
        };
        out.push_str(&format!(
            "{subject} {verb} {capability} [{target}]: listed {} -> {}, {} -> {}\n",
            yes(before.0),
            yes(after.0),
            before.1,
            after.1
        ));
    }
    if changes == 0 {
        out.push_str("No identity gains or loses anything.\n");
    } else {
        out.push_str(&format!("\n{changes} decisions change.\n"));
    }
    Ok(out)
}

fn yes(listed: bool) -> &'static str {
    if listed { "yes" } else { "no" }
}
