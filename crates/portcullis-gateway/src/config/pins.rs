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

/// Resolved `[pins]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PinsConfig {
    /// What a changed definition gets.
    pub on_change: OnChange,
    /// Where pins are kept, if anywhere.
    pub store: Option<PathBuf>,
}

impl Default for PinsConfig {
    fn default() -> Self {
        Self {
            on_change: OnChange::Hold,
            store: None,
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
    Ok(PinsConfig {
        on_change,
        store: raw.store.map(|store| base.join(store)),
    })
}
