//! Loading a policy file: parse, name each policy by its `@id`, validate strictly against the
//! schema generated from the catalog. Every problem is reported with its file and line.

use std::{fmt::Write, str::FromStr};

use cedar_policy::{PolicyId, PolicySet, Schema, ValidationMode, Validator};
use miette::Diagnostic;

/// Why a policy set cannot be used. Nothing is half-loaded: the caller keeps what it had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The policies do not parse, or do not validate against the schema.
    #[error("{file}: the policies are invalid:\n{problems}")]
    Invalid {
        /// The file, as given.
        file: String,
        /// One line per problem: `file:line: message`.
        problems: String,
    },
    /// The schema generated from the catalog is rejected (a bug, or a name Cedar cannot hold).
    #[error("the capability catalog cannot be expressed as a Cedar schema: {0}")]
    Schema(String),
}

pub(crate) fn schema(text: &str) -> Result<Schema, PolicyError> {
    Schema::from_cedarschema_str(text)
        .map(|(schema, _warnings)| schema)
        .map_err(|error| PolicyError::Schema(render(&error, text, "<generated schema>")))
}

/// Parse and validate `text` (from `file`) against `schema`.
pub(crate) fn policies(file: &str, text: &str, schema: &Schema) -> Result<PolicySet, PolicyError> {
    let invalid = |problems: String| PolicyError::Invalid {
        file: file.to_owned(),
        problems,
    };
    let parsed = PolicySet::from_str(text).map_err(|errors| {
        let mut problems = String::new();
        for error in errors.iter() {
            let _ = writeln!(problems, "{}", render(error, text, file));
        }
        invalid(problems)
    })?;
    if parsed.templates().next().is_some() {
        return Err(invalid(format!(
            "{file}: policy templates (with ?principal or ?resource) are not supported\n"
        )));
    }
    let mut named = PolicySet::new();
    for policy in parsed.policies() {
        // `@id("...")` names a policy in decisions and audit records; Cedar's own numbering
        // (`policy0`, ...) is the fallback.
        let id = policy
            .annotation("id")
            .map_or_else(|| policy.id().clone(), PolicyId::new);
        // A misspelt approval would silently ask for nothing: refused.
        if let Some(approval) = policy.annotation("approval")
            && !matches!(approval, "required" | "none" | "out_of_band")
        {
            return Err(invalid(format!(
                "{file}: policy `{id}`: @approval(\"{approval}\") must be \"required\", \"none\" or \"out_of_band\"\n"
            )));
        }
        if named.policy(&id).is_some() {
            return Err(invalid(format!(
                "{file}: two policies have the id `{id}`\n"
            )));
        }
        named
            .add(policy.new_id(id.clone()))
            .map_err(|error| invalid(format!("{file}: policy `{id}`: {error}\n")))?;
    }
    let result = Validator::new(schema.clone()).validate(&named, ValidationMode::Strict);
    if !result.validation_passed() {
        let mut problems = String::new();
        for error in result.validation_errors() {
            let _ = writeln!(problems, "{}", render(error, text, file));
        }
        return Err(invalid(problems));
    }
    Ok(named)
}

/// `file:line: message (help)`, the line taken from the error's first labelled span.
fn render(error: &(dyn Diagnostic + Send + Sync + 'static), text: &str, file: &str) -> String {
    let line = error
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| {
            let offset = label.offset().min(text.len());
            text.get(..offset)
                .map_or(1, |before| before.matches('\n').count() + 1)
        });
    let mut out = match line {
        Some(line) => format!("{file}:{line}: {error}"),
        None => format!("{file}: {error}"),
    };
    if let Some(help) = error.help() {
        let _ = write!(out, " ({help})");
    }
    out
}
