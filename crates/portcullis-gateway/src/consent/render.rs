//! The approval request a person reads: plain language from the capability's template, what
//! approving means, and then every argument exactly as the backend will receive it.
//!
//! In the sentence, argument text is flattened to one line and cut, so an argument cannot
//! write its own paragraph ("this is safe, approve") into the request. The complete view below
//! it is JSON: every value whole, each string quoted and escaped, so what is data reads as
//! data. What a person did not see, they did not approve: a question too long for a form in
//! the client is asked on the approval page, which shows it all.

use portcullis_policy::{Capability, RiskTier};
use serde_json::{Map, Value};

/// Longest argument value shown in the sentence, in characters (the complete view shows all).
const LONGEST: usize = 200;
/// Longest question asked in a client's form, in bytes; a longer one goes to the page.
const FORM_LIMIT: usize = 4096;

/// Longest question asked at all, in bytes. SECURITY: a question is kept while it waits (up to
/// 64 per caller), and a person cannot read more than this anyway.
const QUESTION_LIMIT: usize = 64 * 1024;

/// Whether `question` is short enough to be asked (and so the call approved) at all.
pub(crate) fn fits_approval(question: &str) -> bool {
    question.len() <= QUESTION_LIMIT
}

/// Whether `question` is short enough to be shown whole in a client's form.
pub(crate) fn fits_a_form(question: &str) -> bool {
    question.len() <= FORM_LIMIT
}

/// The request for a call of `name` (served by `upstream`) with `arguments`.
pub(crate) fn render(
    capability: Option<&Capability>,
    name: &str,
    upstream: &str,
    arguments: Option<&Map<String, Value>>,
    tier: RiskTier,
) -> String {
    let empty = Map::new();
    let arguments = arguments.unwrap_or(&empty);
    let action = match capability.and_then(|c| c.consent.as_deref()) {
        Some(template) => fill(template, arguments),
        None => {
            let mut text = format!("Run {name} on {upstream}");
            if !arguments.is_empty() {
                text.push_str(" with:");
                for (key, value) in arguments {
                    text.push_str(&format!("\n- {key}: {}", plain(value)));
                }
            }
            text
        }
    };
    let consequence = match tier {
        RiskTier::Read => "It only reads.".to_owned(),
        RiskTier::Write => format!("It changes data in {upstream}."),
        RiskTier::Destructive => format!("It changes or deletes data in {upstream} for good."),
        RiskTier::Admin => "It changes who may do what.".to_owned(),
        RiskTier::Spend => "It spends money.".to_owned(),
    };
    let mut text = format!(
        "Approve this action?\n\n{action}\n\n{consequence} It runs once, only if you approve."
    );
    if !arguments.is_empty() {
        text.push_str("\n\nExactly what it sends:");
        for (key, value) in arguments {
            // Compact: indentation would make deep nesting hundreds of times larger.
            let whole = serde_json::to_string(value).unwrap_or_default();
            text.push_str(&format!("\n{}: {whole}", Value::String(key.clone())));
        }
    }
    text
}

/// `template` with each `{argument}` replaced by that argument's plain value.
fn fill(template: &str, arguments: &Map<String, Value>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let key = &after[..close];
                out.push_str(&arguments.get(key).map_or("(not given)".to_owned(), plain));
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A value as one short line of text.
fn plain(value: &Value) -> String {
    let text = match value {
        Value::Null => "(empty)".to_owned(),
        Value::String(text) => text.clone(),
        Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(", "),
        Value::Object(map) => map
            .iter()
            .map(|(key, value)| format!("{key}: {}", plain(value)))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    };
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(LONGEST) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn arguments(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    /// `send_email` with the approval request `consent`.
    fn send_email(consent: &str) -> Capability {
        Capability {
            kind: portcullis_policy::CapabilityKind::Tool,
            name: "send_email".to_owned(),
            family: "email".to_owned(),
            scopes: Vec::new(),
            risk: RiskTier::Write,
            object: None,
            tenant: None,
            arguments: Vec::new(),
            resolver: None,
            consent: Some(consent.to_owned()),
        }
    }

    #[test]
    fn a_template_reads_as_a_sentence_with_flattened_arguments() {
        let capability = send_email("Send an email to {to} with the subject \"{subject}\"{cc}.");
        let text = render(
            Some(&capability),
            "send_email",
            "workspace",
            Some(&arguments(json!({
                "to": "ada@example.com",
                "subject": "Q3\n\nThis is routine, approve it",
            }))),
            RiskTier::Write,
        );
        assert_eq!(
            text,
            "Approve this action?\n\nSend an email to ada@example.com with the subject \
             \"Q3 This is routine, approve it\"(not given).\n\nIt changes data in workspace. \
             It runs once, only if you approve.\n\nExactly what it sends:\n\
             \"to\": \"ada@example.com\"\n\"subject\": \"Q3\\n\\nThis is routine, approve it\""
        );
    }

    #[test]
    fn without_a_template_each_argument_is_a_line_and_long_values_are_cut() {
        let text = render(
            None,
            "delete_record",
            "workspace",
            Some(&arguments(json!({"id": "REC-1", "note": "x".repeat(500)}))),
            RiskTier::Destructive,
        );
        assert!(text.contains("Run delete_record on workspace with:\n- id: REC-1\n- note: xxx"));
        assert!(text.contains("…\n\nIt changes or deletes data in workspace for good."));
        // See: issue 14. The sentence cuts; the complete view below it does not.
        assert!(text.contains(&format!("\"note\": \"{}\"", "x".repeat(500))));
        assert!(!fits_a_form(
            &text.replace(&"x".repeat(500), &"x".repeat(5000))
        ));
    }

    // See: issue 14. An email's body and a 13th recipient, which no template named, were
    // approved unseen.
    #[test]
    fn every_argument_is_shown_whole_even_those_the_template_leaves_out() {
        let capability = send_email("Send an email to {to}.");
        let recipients: Vec<String> = (1..=13).map(|n| format!("r{n}@example.com")).collect();
        let body = format!("Hello.{}Wire the money to account 666.", " ".repeat(300));
        let text = render(
            Some(&capability),
            "send_email",
            "workspace",
            Some(&arguments(json!({"to": recipients, "body": body}))),
            RiskTier::Write,
        );
        assert!(text.contains("r13@example.com"), "{text}");
        assert!(text.contains("Wire the money to account 666."), "{text}");
    }
}
