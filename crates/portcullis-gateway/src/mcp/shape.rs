//! Results as the caller's era reads them. An answer from an upstream of the caller's own era
//! passes as the upstream wrote it, byte for byte; across eras only what differs changes: a
//! stateless caller gets `resultType` (required since 2026-07-28), a session caller gets
//! none of the stateless era's result fields.

use std::borrow::Cow;

use portcullis_core::Era;
use serde::Deserialize;
use serde_json::{Value, value::RawValue};

/// The top-level fields of a result the gateway looks at, read without building the result.
#[derive(Deserialize, Default)]
pub(crate) struct Glance<'a> {
    #[serde(rename = "resultType", borrow, default)]
    pub(crate) result_type: Option<Cow<'a, str>>,
    #[serde(rename = "isError", default)]
    pub(crate) is_error: Option<bool>,
}

/// A glance at `raw` (nothing if it is not an object).
pub(crate) fn glance(raw: &RawValue) -> Glance<'_> {
    serde_json::from_str(raw.get()).unwrap_or_default()
}

/// Fields of the stateless era a session caller never asked for.
const STATELESS_FIELDS: [&str; 2] = ["ttlMs", "cacheScope"];

/// `result` for a caller of `era`.
pub(crate) fn complete(era: Era, mut result: Value) -> Value {
    if let Value::Object(fields) = &mut result {
        match era {
            Era::Stateless => {
                fields
                    .entry("resultType")
                    .or_insert_with(|| Value::from("complete"));
            }
            Era::Sessions => {
                if fields.get("resultType").is_some_and(|t| t == "complete") {
                    fields.remove("resultType");
                }
                for field in STATELESS_FIELDS {
                    fields.remove(field);
                }
            }
        }
    }
    result
}

/// The text of `raw` for a caller of `era`: unchanged unless the eras differ in what it holds.
pub(crate) fn raw_for<'a>(era: Era, raw: &'a RawValue, glance: &Glance<'_>) -> Cow<'a, str> {
    let text = raw.get();
    match era {
        Era::Stateless if glance.result_type.is_none() => {
            let trimmed = text.trim_start();
            match trimmed.strip_prefix('{') {
                Some(rest) if rest.trim_start().starts_with('}') => {
                    Cow::Borrowed(r#"{"resultType":"complete"}"#)
                }
                Some(rest) => Cow::Owned(format!(r#"{{"resultType":"complete",{rest}"#)),
                None => Cow::Borrowed(text),
            }
        }
        Era::Sessions
            if glance.result_type.as_deref() == Some("complete")
                || STATELESS_FIELDS.iter().any(|field| text.contains(field)) =>
        {
            match portcullis_core::json::parse(text.as_bytes()) {
                Ok(value) => Cow::Owned(complete(era, value).to_string()),
                Err(_) => Cow::Borrowed(text),
            }
        }
        _ => Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn a_result_of_the_callers_own_era_passes_byte_for_byte() {
        let result = raw(r#"{"resultType":"complete","content":[],"temperature":0.7}"#);
        let glance = glance(&result);
        assert_eq!(raw_for(Era::Stateless, &result, &glance), result.get());
        let result = raw(r#"{ "content": [ ], "x": 1e3 }"#);
        assert_eq!(
            raw_for(Era::Sessions, &result, &super::glance(&result)),
            result.get()
        );
    }

    #[test]
    fn across_eras_only_the_result_type_changes() {
        let result = raw(r#"{"content":[],"isError":true}"#);
        let shaped = raw_for(Era::Stateless, &result, &glance(&result));
        assert_eq!(
            shaped,
            r#"{"resultType":"complete","content":[],"isError":true}"#
        );
        let empty = raw("{ }");
        assert_eq!(
            raw_for(Era::Stateless, &empty, &glance(&empty)),
            r#"{"resultType":"complete"}"#
        );
        let result = raw(r#"{"resultType":"complete","tools":[],"ttlMs":5,"cacheScope":"public"}"#);
        let shaped: Value =
            serde_json::from_str(&raw_for(Era::Sessions, &result, &glance(&result))).unwrap();
        assert_eq!(shaped, serde_json::json!({"tools": []}));
    }
}
