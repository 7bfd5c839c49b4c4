//! Strict JSON: I-JSON (RFC 7493) as a gateway must read it.
//!
//! Two readers of one body must never see two meanings. serde_json alone keeps the last of two
//! members with the same name, where another parser keeps the first: a request carrying `name`
//! twice could be decided on one tool and executed as another. Here a duplicate member name at
//! any depth is refused, as are invalid UTF-8, unpaired surrogate escapes, control characters
//! in strings, numbers out of the double range and anything after the value (serde_json refuses
//! those already; the tests pin it). Nesting is bounded by serde_json's recursion limit.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Why bytes are not strict JSON. The text is safe to show: it never quotes the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// Not JSON at all (syntax, encoding, a number out of range, nesting too deep).
    Syntax {
        /// serde_json's description, for logs (it names a position, never the input).
        detail: String,
    },
    /// An object names the same member twice.
    DuplicateMember,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax { detail } => write!(f, "not valid JSON: {detail}"),
            Self::DuplicateMember => f.write_str("an object names the same member twice"),
        }
    }
}

impl std::error::Error for JsonError {}

// The custom error that marks a duplicate inside serde's error type; never shown.
const DUPLICATE: &str = "\u{0}duplicate member";

/// Parse `bytes` as one strict JSON value.
pub fn parse(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = Strict.deserialize(&mut deserializer).map_err(classify)?;
    deserializer.end().map_err(classify)?;
    Ok(value)
}

/// Check that `bytes` are one strict JSON value, without building it.
pub fn validate(bytes: &[u8]) -> Result<(), JsonError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    Check.deserialize(&mut deserializer).map_err(classify)?;
    deserializer.end().map_err(classify)
}

fn classify(error: serde_json::Error) -> JsonError {
    if error.to_string().starts_with(DUPLICATE) {
        JsonError::DuplicateMember
    } else {
        JsonError::Syntax {
            detail: error.to_string(),
        }
    }
}

/// Builds a [`Value`], refusing duplicate members.
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        // JSON text cannot spell NaN or infinity; serde_json refuses out-of-range numbers.
        Number::from_f64(value)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(Self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            // SECURITY: the member another parser would keep may not be the one we keep.
            if object.contains_key(&key) {
                return Err(de::Error::custom(DUPLICATE));
            }
            let value = map.next_value_seed(Self)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Walks a value, refusing duplicate members, keeping nothing but each object's names.
struct Check;

impl<'de> DeserializeSeed<'de> for Check {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // A set, not a list: a list makes an object of n members cost n² to check.
        let mut names = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !names.insert(key) {
                return Err(de::Error::custom(DUPLICATE));
            }
            map.next_value_seed(Self)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(text: &str) -> (Result<Value, JsonError>, Result<(), JsonError>) {
        (parse(text.as_bytes()), validate(text.as_bytes()))
    }

    #[test]
    fn duplicate_members_are_refused_at_any_depth() {
        for text in [
            r#"{"a":1,"a":1}"#,
            r#"{"params":{"name":"x","name":"y"}}"#,
            r#"[{"x":{"y":[{"z":1,"z":2}]}}]"#,
            // The same name spelled with an escape is the same name.
            r#"{"name":"a","na\u006de":"b"}"#,
        ] {
            let (parsed, validated) = both(text);
            assert_eq!(parsed, Err(JsonError::DuplicateMember), "{text}");
            assert_eq!(validated, Err(JsonError::DuplicateMember), "{text}");
        }
    }

    #[test]
    fn what_is_not_i_json_is_refused() {
        let unpaired = br#""\ud800""#.to_vec();
        let lone_low = br#""\udc00x""#.to_vec();
        let bad_utf8 = b"\"\xff\"".to_vec();
        let control = b"\"a\x01\"".to_vec();
        let big = b"1e400".to_vec();
        let trailing = b"{} {}".to_vec();
        let deep = "[".repeat(200) + &"]".repeat(200);
        for bytes in [
            unpaired,
            lone_low,
            bad_utf8,
            control,
            big,
            trailing,
            deep.into_bytes(),
        ] {
            assert!(
                matches!(parse(&bytes), Err(JsonError::Syntax { .. })),
                "{bytes:?}"
            );
            assert!(
                matches!(validate(&bytes), Err(JsonError::Syntax { .. })),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn strict_json_parses_as_serde_json_would() {
        let text = r#"{"a":[1,-2,3.5,true,null,"\ud83d\ude00"],"b":{"c":{}}}"#;
        let (parsed, validated) = both(text);
        assert_eq!(
            parsed,
            Ok(serde_json::from_str::<Value>(text).unwrap_or_default())
        );
        assert_eq!(validated, Ok(()));
    }

    #[test]
    fn errors_never_quote_the_input() {
        let secret = br#"{"token-like-secret":1,"token-like-secret":2}"#;
        let shown = parse(secret).map(|_| ()).unwrap_err().to_string();
        assert!(!shown.contains("secret"), "{shown}");
        let shown = parse(br#"{"secret-key": tru}"#).unwrap_err().to_string();
        assert!(!shown.contains("secret"), "{shown}");
    }
}
