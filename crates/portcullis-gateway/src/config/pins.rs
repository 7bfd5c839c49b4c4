//! `[pins]`: what happens when an upstream's tool, prompt or template definition changes after
//! it was first shown, and where pins are kept.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

/// `[pins]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPins {
    /// `hold` (default): a changed definition is not listed or callable until an operator
    /// approves it; `flag`: it is shown, marked as changed, and the change recorded.
    pub on_change: Option<String>,
    /// `pin` (default): a definition seen for the first time is pinned as it is; `hold`: it is
    /// held back until an operator approves it (or the config pins it), so nothing an upstream
    /// adds or renames is served unreviewed.
    pub on_new: Option<String>,
    /// A SQLite file for pins and changes waiting for approval, shared with `portcullis pins`;
    /// without it pins last as long as the process.
    pub store: Option<PathBuf>,
}

/// What a changed definition gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnChange {
    /// Held back until approved.
    Hold,
    /// Shown, flagged and recorded.
    Flag,
}

/// A definition pinned in the config (`[[upstream]] pins`): its digest is the one served,
/// whatever the store says, and only the config changes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedPin {
    /// The upstream's name.
    pub upstream: String,
    /// `tool`, `prompt` or `template`.
    pub kind: crate::upstreams::pins::Kind,
    /// The definition's name as the upstream lists it.
    pub name: String,
    /// Its digest (hex SHA-256), as `portcullis pins diff | list` shows it.
    pub digest: String,
}

/// Resolved `[pins]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PinsConfig {
    /// What a changed definition gets.
    pub on_change: OnChange,
    /// Whether a definition seen for the first time is held back until approved.
    pub hold_new: bool,
    /// Where pins are kept, if anywhere.
    pub store: Option<PathBuf>,
    /// Definitions pinned in the config.
    pub fixed: Vec<FixedPin>,
}

impl Default for PinsConfig {
    fn default() -> Self {
        Self {
            on_change: OnChange::Hold,
            hold_new: false,
            store: None,
            fixed: Vec::new(),
        }
    }
}

pub(super) fn resolve_pins(raw: RawPins, base: &Path) -> Result<PinsConfig, ConfigError> {
    let on_change = match raw.on_change.as_deref() {
        None | Some("hold") => OnChange::Hold,
        Some("flag") => OnChange::Flag,
        Some(_) => {
            return Err(ConfigError::invalid(
                "pins.on_change",
                "`hold` (held back until approved) or `flag` (shown, marked as changed)",
            ));
        }
    };
    let hold_new = match raw.on_new.as_deref() {
        None | Some("pin") => false,
        Some("hold") => true,
        Some(_) => {
            return Err(ConfigError::invalid(
                "pins.on_new",
                "`pin` (pinned as first seen) or `hold` (held back until approved)",
            ));
        }
    };
    Ok(PinsConfig {
        on_change,
        hold_new,
        store: raw.store.map(|store| base.join(store)),
        fixed: Vec::new(),
    })
}

/// `[[upstream]] pins` of the upstream `upstream`, each `kind:name@sha256:<hex>`.
pub(super) fn resolve_fixed(
    key: &str,
    upstream: &str,
    pins: &[String],
) -> Result<Vec<FixedPin>, ConfigError> {
    let mut fixed: Vec<FixedPin> = Vec::with_capacity(pins.len());
    for (index, pin) in pins.iter().enumerate() {
        let parsed = pin.rsplit_once("@sha256:").and_then(|(id, digest)| {
            let (kind, name) = id.split_once(':')?;
            let kind = crate::upstreams::pins::Kind::parse(kind)?;
            let hex = digest.len() == 64
                && digest
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            (hex && !name.is_empty()).then(|| FixedPin {
                upstream: upstream.to_owned(),
                kind,
                name: name.to_owned(),
                digest: digest.to_owned(),
            })
        });
        let Some(parsed) = parsed else {
            return Err(ConfigError::invalid(
                format!("{key}.pins[{index}]"),
                "`tool:<name>@sha256:<64 hex digits>` (or `prompt:` or `template:`), as \
                 `portcullis pins list` shows it",
            ));
        };
        if fixed
            .iter()
            .any(|other| other.kind == parsed.kind && other.name == parsed.name)
        {
            return Err(ConfigError::invalid(
                format!("{key}.pins[{index}]"),
                "this definition is pinned twice",
            ));
        }
        fixed.push(parsed);
    }
    Ok(fixed)
}
