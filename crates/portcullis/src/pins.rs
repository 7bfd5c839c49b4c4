//! `portcullis pins`: the upstream definitions held back because they changed since they were
//! pinned, and their approval. The running gateway reads approvals from the store within two
//! seconds.

use std::{fmt::Write as _, path::Path};

use anyhow::{Context, bail};
use portcullis_gateway::{config::Config, upstreams::pins};

/// The pin store `config` names, and the definitions it pins itself (`upstream/kind:name`
/// to digest): those only the config changes.
fn store(
    config: &Path,
) -> anyhow::Result<(
    std::path::PathBuf,
    std::collections::BTreeMap<String, String>,
)> {
    let loaded = Config::load(config)?;
    let fixed = loaded
        .pins
        .fixed
        .iter()
        .map(|pin| {
            (
                format!("{}/{}:{}", pin.upstream, pin.kind.as_str(), pin.name),
                pin.digest.clone(),
            )
        })
        .collect();
    match loaded.pins.store {
        Some(store) => Ok((store, fixed)),
        None => bail!(
            "{}: no `[pins] store`: without one, pins last as long as the gateway and changes \
             cannot be approved from here",
            config.display()
        ),
    }
}

/// Every pin in the store, by upstream, in the form `[[upstream]] pins` takes.
pub(crate) fn list(config: &Path) -> anyhow::Result<String> {
    let (store, fixed) = store(config)?;
    let pinned = pins::pinned(&store).map_err(anyhow::Error::msg)?;
    let mut out = String::new();
    let mut upstream = None;
    // As TOML takes it (quotes, backslashes and control characters escaped).
    let quoted = |id: &str, digest: &str| toml::Value::String(format!("{id}@sha256:{digest}"));
    for pin in &pinned {
        if upstream != Some(&pin.upstream) {
            let _ = writeln!(out, "{}:", clean(&pin.upstream));
            upstream = Some(&pin.upstream);
        }
        if let Some(digest) = fixed.get(&format!("{}/{}", pin.upstream, pin.id)) {
            let _ = writeln!(
                out,
                "  {}  (pinned in the config; only the config changes it)",
                quoted(&pin.id, digest)
            );
            continue;
        }
        let _ = match (&pin.digest, &pin.pending) {
            (Some(digest), None) => writeln!(out, "  {}", quoted(&pin.id, digest)),
            (Some(digest), Some(_)) => writeln!(
                out,
                "  {}  (a change waits: see `pins diff`)",
                quoted(&pin.id, digest)
            ),
            (None, _) => writeln!(
                out,
                "  {}  (first seen, waiting for approval: see `pins diff`)",
                clean(&pin.id)
            ),
        };
    }
    let _ = writeln!(
        out,
        "{} pinned in {}. To pin ahead of time, copy the quoted lines into that upstream's \
         `pins = [...]`; with `[pins] on_new = \"hold\"` nothing else of it is served unapproved.",
        pinned.iter().filter(|pin| pin.digest.is_some()).count(),
        store.display()
    );
    Ok(out)
}

/// Every change waiting for approval, the pinned and the offered definition side by side.
pub(crate) fn diff(config: &Path) -> anyhow::Result<String> {
    let (store, fixed) = store(config)?;
    // A pin of the config's is not approved here: its change is not offered.
    let waiting: Vec<_> = pins::pending(&store)
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .filter(|change| !fixed.contains_key(&change.id))
        .collect();
    if waiting.is_empty() {
        return Ok("No changed definition is waiting for approval.\n".to_owned());
    }
    let mut out = String::new();
    for change in &waiting {
        // SECURITY: the name is the upstream's: no control character reaches the terminal.
        let _ = writeln!(
            out,
            "{}@sha256:{} (changed{}):",
            clean(&change.id),
            change.offered_digest,
            change
                .since
                .as_deref()
                .map(|since| format!(" {since}"))
                .unwrap_or_default()
        );
        if change.pinned_digest.is_empty() {
            let _ = writeln!(
                out,
                "  pinned  (nothing: first seen, held back until approved)"
            );
        } else {
            let _ = writeln!(out, "  pinned  sha256:{}", change.pinned_digest);
        }
        let _ = writeln!(out, "  offered sha256:{}", change.offered_digest);
        match (&change.pinned, &change.offered) {
            (Some(pinned), Some(offered)) => out.push_str(&lines_diff(pinned, offered)),
            (None, Some(offered)) if change.pinned_digest.is_empty() => {
                out.push_str(&lines_diff("", offered));
            }
            _ => out.push_str("  (a definition too large to keep: compare the digests)\n"),
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "{} waiting. Approve with: portcullis pins approve --config {} <id>@sha256:<digest>... \
         (as shown above; --all approves whatever waits when it runs)",
        waiting.len(),
        config.display()
    );
    Ok(out)
}

/// Approve the changes named (or all of them).
pub(crate) fn approve(config: &Path, ids: &[String], all: bool) -> anyhow::Result<String> {
    if ids.is_empty() && !all {
        bail!("name the changes to approve (as `pins diff` shows them), or pass --all");
    }
    let (store, fixed) = store(config)?;
    if let Some(id) = ids
        .iter()
        .find(|id| fixed.contains_key(id.split("@sha256:").next().unwrap_or_default()))
    {
        bail!(
            "`{}` is pinned in the config: change its `[[upstream]] pins` entry instead",
            clean(id)
        );
    }
    // `--all`: whatever waits, except what the config pins.
    let everything: Vec<String>;
    let chosen = if all {
        everything = pins::pending(&store)
            .map_err(anyhow::Error::msg)?
            .into_iter()
            .map(|change| change.id)
            .filter(|id| !fixed.contains_key(id))
            .collect();
        everything.as_slice()
    } else {
        ids
    };
    if chosen.is_empty() {
        return Ok("Nothing waits for approval.\n".to_owned());
    }
    let approved = pins::approve(&store, Some(chosen))
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("approving in {}", store.display()))?;
    let mut out = String::new();
    for id in &approved {
        let _ = writeln!(out, "approved {}", clean(id));
    }
    let _ = writeln!(
        out,
        "{} approved; a running gateway shows them within 2 s.",
        approved.len()
    );
    Ok(out)
}

/// `text` with its control characters escaped: names and definitions are the upstream's, and
/// no escape sequence of theirs reaches the operator's terminal.
pub(crate) fn clean(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// The lines of `before` and `after` that differ, as `-` and `+`, with the common ones as
/// context (a longest-common-subsequence diff: definitions are a few hundred lines at most).
fn lines_diff(before: &str, after: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (before.lines().collect(), after.lines().collect());
    // Past a few million cells the table would not fit: the two whole, one after the other.
    if a.len().saturating_mul(b.len()) > 4_000_000 {
        let mut out = String::new();
        for line in &a {
            let _ = writeln!(out, "  - {}", clean(line));
        }
        for line in &b {
            let _ = writeln!(out, "  + {}", clean(line));
        }
        return out;
    }
    let mut common = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            common[i][j] = if a[i] == b[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            let _ = writeln!(out, "    {}", clean(a[i]));
            i += 1;
            j += 1;
        } else if j < b.len() && (i == a.len() || common[i][j + 1] > common[i + 1][j]) {
            let _ = writeln!(out, "  + {}", clean(b[j]));
            j += 1;
        } else {
            let _ = writeln!(out, "  - {}", clean(a[i]));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_from_an_upstream_are_shown_escaped() {
        assert_eq!(clean("ok\u{1b}[2J\nfake"), "ok\\u{1b}[2J\\nfake");
    }

    #[test]
    fn a_diff_marks_what_went_and_what_came() {
        let diff = lines_diff(
            "{\n  \"a\": 1,\n  \"b\": 2\n}",
            "{\n  \"a\": 1,\n  \"b\": 3\n}",
        );
        assert_eq!(
            diff,
            "    {\n      \"a\": 1,\n  -   \"b\": 2\n  +   \"b\": 3\n    }\n"
        );
    }
}
