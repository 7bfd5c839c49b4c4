//! Arguments kept in audit records, where `[audit] raw_arguments` allows: secret-looking and
//! configured fields replaced at any depth, long strings cut, so a trail never becomes a copy
//! of every password or document a model passed through.

use serde_json::Value;

const REDACTED: &str = "[redacted]";
/// Field names that always hide their value: any name containing one of these.
const ALWAYS: [&str; 5] = ["password", "secret", "token", "key", "credential"];
/// Strings longer than this keep only their start.
const LONGEST: usize = 1024;

/// Which fields to hide.
#[derive(Debug, Clone, Default)]
pub(crate) struct Redaction {
    fields: Vec<String>,
}

impl Redaction {
    pub(crate) fn new(fields: &[String]) -> Self {
        Self {
            fields: fields.iter().map(|field| field.to_lowercase()).collect(),
        }
    }

    /// `arguments` with every hidden field's value replaced.
    pub(crate) fn apply(&self, arguments: Value) -> Value {
        match arguments {
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(name, value)| {
                        let value = if self.hides(&name) {
                            Value::String(REDACTED.to_owned())
                        } else {
                            self.apply(value)
                        };
                        (name, value)
                    })
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.apply(v)).collect()),
            Value::String(text) if text.len() > LONGEST => {
                let mut end = LONGEST;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                Value::String(format!("{}… ({} bytes)", &text[..end], text.len()))
            }
            other => other,
        }
    }

    fn hides(&self, name: &str) -> bool {
        let name = name.to_lowercase();
        ALWAYS.iter().any(|word| name.contains(word)) || self.fields.contains(&name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hides_configured_and_secret_looking_fields_at_any_depth() {
        let redaction = Redaction::new(&["Body".to_owned()]);
        let kept = redaction.apply(json!({
            "to": "a@example.com",
            "body": "private",
            "options": {"apiKey": "k", "retries": 2, "items": [{"password": "p", "x": 1}]},
            "long": "é".repeat(2000),
        }));
        assert_eq!(kept["to"], "a@example.com");
        assert_eq!(kept["body"], REDACTED);
        assert_eq!(kept["options"]["apiKey"], REDACTED);
        assert_eq!(kept["options"]["retries"], 2);
        assert_eq!(kept["options"]["items"][0]["password"], REDACTED);
        assert_eq!(kept["options"]["items"][0]["x"], 1);
        let long = kept["long"].as_str().unwrap_or_default();
        assert!(
            long.len() < 1100 && long.ends_with("(4000 bytes)"),
            "{long}"
        );
    }
}
